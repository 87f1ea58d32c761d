//! Seed 003, run for real (issue 21): the classic compose tutorial's
//! version-3 project, natively, on images built from Debian packages by
//! `images/build-debian-test-images.sh` (cached by their inputs).
//!
//! `product-service` is built from `./product` (a Flask app, its source
//! bind-mounted, `80` published) and `website` runs `php:apache` with
//! `./website` bind-mounted as the DocumentRoot, `depends_on:
//! product-service`. The only changes to the seed: the product's Dockerfile
//! starts `FROM berth-test/flask:bookworm` (the seed's `python:3-onbuild`
//! pip-installs Flask from PyPI), and the published ports are free loopback
//! ports instead of 5001 and 5000.
//!
//! Checked: `up -d` builds and starts both in dependency order; both answer
//! on their published ports; the PHP page shows the products it fetched from
//! `http://product-service/` by name; an edit of `./website/index.php` on the
//! host changes the page; `ps`, `stop`, `rm` and `down` print and do what
//! docker compose v2 does.
#![cfg(target_os = "linux")]

use berth_tests::registry::free_port;
use berth_tests::shop::{http_get, ps_rows, rm_keeps_the_network, stop_in_reverse_order};
use berth_tests::{compose, have, skip, timing, wait_for, with_lock, workspace, Berth};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Builds (first time) or finds the Debian test images; `None` after
/// printing the skip marker when the mirror cannot be reached.
fn debian_test_images() -> Option<PathBuf> {
    let started = Instant::now();
    let out = with_lock("debian-test-images", || {
        Command::new(workspace().join("images/build-debian-test-images.sh"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap()
    });
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            skip("the Debian mirror cannot be reached: images/build-debian-test-images.sh built nothing");
            return None;
        }
        _ => panic!(
            "images/build-debian-test-images.sh failed: {:?}",
            out.status
        ),
    }
    timing(
        "native_seed003",
        "Debian test images (built or cached)",
        started,
    );
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(dir.join("flask.oci.tar").is_file(), "{}", dir.display());
    Some(dir)
}

fn ready() -> bool {
    for tool in ["nft", "ip", "debootstrap", "umoci", "skopeo", "curl"] {
        if !have(tool) {
            skip(&format!("{tool} missing (scripts/deps.sh installs it)"));
            return false;
        }
    }
    true
}

/// The seed's files, verbatim but for the two changes the module names.
fn write_seed(d: &Path, product_port: u16, website_port: u16) {
    std::fs::create_dir_all(d.join("product")).unwrap();
    std::fs::create_dir_all(d.join("website")).unwrap();
    std::fs::write(
        d.join("docker-compose.yml"),
        format!(
            r#"version: '3'

services:
  product-service:
    build: ./product
    volumes:
      - ./product:/usr/src/app
    ports:
      - 127.0.0.1:{product_port}:80

  website:
    image: php:apache
    volumes:
      - ./website:/var/www/html
    ports:
      - 127.0.0.1:{website_port}:80
    depends_on:
      - product-service
"#
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("product/Dockerfile"),
        "FROM berth-test/flask:bookworm\n\nCOPY . /usr/src/app\nCMD [\"python\", \"api.py\"]\n",
    )
    .unwrap();
    std::fs::write(d.join("product/requirements.txt"), "Flask\nflask-restful\n").unwrap();
    std::fs::write(
        d.join("product/api.py"),
        r#"# Product Service

# Import framework
from flask import Flask
from flask_restful import Resource, Api

# Instantiate the app
app = Flask(__name__)
api = Api(app)

class Product(Resource):
    def get(self):
        return {
            'products': ['Ice cream', 'Chocolate', 'Fruit', 'Eggs']
        }

# Create routes
api.add_resource(Product, '/')

# Run the application
if __name__ == '__main__':
    app.run(host='0.0.0.0', port=80, debug=True)
"#,
    )
    .unwrap();
    std::fs::write(d.join("website/index.php"), INDEX_PHP).unwrap();
}

const INDEX_PHP: &str = r#"<html>
    <head>
        <title>My Shop</title>
    </head>

    <body>
        <h1>Welcome to my shop</h1>
        <ul>
            <?php
            $json = file_get_contents('http://product-service/');
            $obj = json_decode($json);

            $products = $obj->products;
            foreach ($products as $product) {
                echo "<li>$product</li>";
            }
            ?>
        </ul>
    </body>
</html>
"#;

#[test]
fn seed_003_flask_and_php_apache() {
    if !ready() {
        return;
    }
    let Some(images) = debian_test_images() else {
        return;
    };
    let started = Instant::now();
    let b = Berth::new();
    for tar in ["flask.oci.tar", "php-apache.oci.tar"] {
        let out = b
            .run(&["load", "-i", images.join(tar).to_str().unwrap()])
            .ok();
        assert!(
            out.stdout.contains("Loaded image: berth-test/"),
            "{}",
            out.stdout
        );
    }
    b.run(&["tag", "berth-test/php:apache", "php:apache"]).ok();
    timing("native_seed003", "images loaded", started);

    let root = tempfile::tempdir().unwrap();
    let d = &root.path().join("seed003");
    let (pp, wp) = (free_port(), free_port());
    write_seed(d, pp, wp);

    // up -d: builds the product image, then starts both in dependency order.
    let out = compose(&b, d, &["up", "-d"]).ok();
    timing("native_seed003", "compose up -d (with the build)", started);
    let err = &out.stderr;
    assert!(err.contains("Service product-service  Building"), "{err}");
    // The build's steps are progress, on stderr as docker compose's.
    assert!(err.contains("Step 2/3 : COPY . /usr/src/app"), "{err}");
    assert_eq!(out.stdout, "");
    assert!(err.contains("Network seed003_default  Created"), "{err}");
    let product_at = err
        .find("Container seed003-product-service-1  Started")
        .unwrap_or_else(|| panic!("{err}"));
    let website_at = err
        .find("Container seed003-website-1  Started")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(product_at < website_at, "{err}");
    // docker compose v2 names a built image <project>-<service>.
    b.run(&["image", "inspect", "seed003-product-service"]).ok();

    // Both answer on their published ports.
    let mut products = String::new();
    wait_for("the product service on its published port", || {
        http_get(pp).is_some_and(|body| {
            products = body;
            true
        })
    });
    let v: serde_json::Value = serde_json::from_str(&products).unwrap();
    assert_eq!(
        v["products"],
        serde_json::json!(["Ice cream", "Chocolate", "Fruit", "Eggs"])
    );
    // The page lists what PHP fetched from http://product-service/.
    let mut page = String::new();
    wait_for("the website's page with the products", || {
        http_get(wp).is_some_and(|body| {
            page = body;
            page.contains("<li>Eggs</li>")
        })
    });
    assert!(page.contains("<h1>Welcome to my shop</h1>"), "{page}");
    assert!(
        page.contains("<li>Ice cream</li><li>Chocolate</li><li>Fruit</li><li>Eggs</li>"),
        "{page}"
    );
    timing("native_seed003", "both services answer", started);

    // An edit on the host is what the website serves next.
    std::fs::write(
        d.join("website/index.php"),
        INDEX_PHP.replace("Welcome to my shop", "Welcome to my edited shop"),
    )
    .unwrap();
    wait_for("the edited page", || {
        http_get(wp).is_some_and(|p| p.contains("Welcome to my edited shop"))
    });
    // The product's source is bind-mounted too: after an edit, `restart`
    // serves it. (Not Flask's reloader: Werkzeug watches no file under
    // sys.prefix, which is /usr for Debian's python3 and so covers the
    // seed's /usr/src/app; the official python image's is /usr/local.)
    let api = std::fs::read_to_string(d.join("product/api.py")).unwrap();
    std::fs::write(
        d.join("product/api.py"),
        api.replace("'Eggs']", "'Eggs', 'Milk']"),
    )
    .unwrap();
    let out = compose(&b, d, &["restart", "-t", "2", "product-service"]).ok();
    assert!(
        out.stderr
            .contains("Container seed003-product-service-1  Started"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("seed003-website-1"), "{}", out.stderr);
    wait_for("the edited product list on the website", || {
        http_get(wp).is_some_and(|p| p.contains("<li>Eggs</li><li>Milk</li>"))
    });

    // ps as docker compose v2 prints it.
    let rows = ps_rows(&b, d, false);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0][..4],
        [
            "seed003-product-service-1",
            "seed003-product-service",
            "\"python api.py\"",
            "product-service"
        ]
    );
    assert!(rows[0][4].starts_with("Up "), "{rows:?}");
    assert_eq!(rows[0][5], format!("127.0.0.1:{pp}->80/tcp"));
    assert_eq!(
        rows[1][..4],
        [
            "seed003-website-1",
            "php:apache",
            // Truncated as docker compose v2 does without --no-trunc.
            "\"docker-php-entrypoi…\"",
            "website"
        ]
    );
    assert_eq!(rows[1][5], format!("127.0.0.1:{wp}->80/tcp"));

    // rm leaves running containers alone.
    let out = compose(&b, d, &["rm", "-f"]).ok();
    assert_eq!(out.stderr, "No stopped containers\n");
    assert_eq!(ps_rows(&b, d, false).len(), 2);

    // stop: reverse dependency order; ps lists nothing, ps -a both exited,
    // and the ports are closed.
    stop_in_reverse_order(&b, d, "seed003", &[], [wp, pp]);

    // rm: removes the stopped containers, keeps the network.
    rm_keeps_the_network(&b, d, "seed003");

    // up again (the built image is reused), then down: containers and the
    // network go, the built image stays.
    let out = compose(&b, d, &["up", "-d"]).ok();
    assert!(!out.stderr.contains("Building"), "{}", out.stderr);
    wait_for("the website after the second up", || {
        http_get(wp).is_some_and(|p| p.contains("<li>Eggs</li>"))
    });
    let out = compose(&b, d, &["down"]).ok();
    let err = &out.stderr;
    let website_at = err
        .find("Container seed003-website-1  Removed")
        .unwrap_or_else(|| panic!("{err}"));
    let product_at = err
        .find("Container seed003-product-service-1  Removed")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(website_at < product_at, "{err}");
    assert!(err.contains("Network seed003_default  Removed"), "{err}");
    assert!(ps_rows(&b, d, true).is_empty());
    assert_ne!(b.run(&["network", "inspect", "seed003_default"]).code, 0);
    b.run(&["image", "inspect", "seed003-product-service"]).ok();
    assert!(b.run(&["ps", "-a", "-q"]).ok().stdout.is_empty());
    timing("native_seed003", "ps, stop, rm, up, down", started);
}

/// The busybox stand-in of the same project (`berth_tests::shop`), which
/// shared_placement.rs runs in the machine VM: natively here, so a change
/// that breaks the scenario shows in seconds rather than in the VM pass.
#[test]
fn seed_003_busybox_stand_in() {
    if !have("nft") || !have("ip") {
        return skip("nft or ip missing (scripts/deps.sh installs nftables and iproute2)");
    }
    let started = Instant::now();
    let b = Berth::new().with_default_image();
    let root = tempfile::tempdir().unwrap();
    berth_tests::shop::run(
        &b,
        root.path(),
        std::time::Duration::from_secs(60),
        &mut |s| timing("native_seed003", s, started),
    );
    assert!(b.run(&["ps", "-a", "-q"]).ok().stdout.is_empty());
}
