//! Seed 003's shape on berth's own busybox image (issue 21: "a busybox
//! stand-in of the same project runs in the machine VM"), one scenario for
//! every placement it runs in: native_seed003.rs natively, and
//! shared_placement.rs in the machine VM.
//!
//! The project, as the seed's: `product-service` is built from `./product`
//! (a Dockerfile `FROM berth/busybox`, its source bind-mounted) and answers
//! `GET /` with the product list as JSON (busybox `httpd` serving the
//! bind-mounted `index.html`); `website` runs the image as it is, with
//! `./website` bind-mounted as the document root, `depends_on:
//! product-service`, and its page (a CGI script standing in for the PHP
//! page) fetches the list from `http://product-service:80/` by name. Both
//! publish a free loopback port.

use crate::registry::free_port;
use crate::{compose, Berth};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const PRODUCTS: &str = r#"{"products": ["Ice cream", "Chocolate", "Fruit", "Eggs"]}"#;

/// The website's page: busybox httpd runs `cgi-bin/index.cgi` for `/` when
/// the document root has no index.html. (The image's busybox wget has no
/// timeout option, neither `-T` nor `--timeout`.)
const INDEX_CGI: &str = r#"#!/bin/sh
printf 'Content-Type: text/html\r\n\r\n'
echo '<h1>Welcome to my shop</h1>'
list=$(wget -q -O - http://product-service:80/ | sed -e 's/.*\[ *"//' -e 's/" *\].*//' -e 's|", *"|</li><li>|g')
echo "<ul><li>$list</li></ul>"
"#;

/// The body of `GET /` on 127.0.0.1:`port`, if it answered 200.
pub fn http_get(port: u16) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200")).then(|| body.to_string())
}

/// Fetches `/` on `port` until the body holds `want`, for up to `limit`
/// (a service in an emulated guest kernel may take minutes to answer);
/// returns the body.
#[track_caller]
pub fn wait_body(port: u16, want: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        last = http_get(port);
        if let Some(body) = last.as_ref().filter(|b| b.contains(want)) {
            return body.clone();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("no {want:?} on port {port} in {limit:?}; last answer: {last:?}");
}

/// `compose ps` (or `ps -a`) rows as (NAME, IMAGE, COMMAND, SERVICE,
/// STATUS, PORTS), cut at the header's column starts.
pub fn ps_rows(b: &Berth, d: &Path, all: bool) -> Vec<Vec<String>> {
    let args: &[&str] = if all { &["ps", "-a"] } else { &["ps"] };
    let out = compose(b, d, args).ok().stdout;
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default().to_string();
    let cols = [
        "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS",
    ];
    let starts: Vec<usize> = cols
        .iter()
        .map(|c| {
            header
                .find(c)
                .unwrap_or_else(|| panic!("{c} in {header:?}"))
        })
        .collect();
    lines
        .map(|l| {
            (0..cols.len())
                .filter(|&i| i != 4)
                .map(|i| {
                    let end = starts.get(i + 1).copied().unwrap_or(l.len()).min(l.len());
                    l.get(starts[i]..end).unwrap_or_default().trim().to_string()
                })
                .collect()
        })
        .collect()
}

/// `compose stop ARGS` of a seed-003-shaped `project`: the website stops
/// before the product service (reverse dependency order), then `ps` lists
/// nothing, `ps -a` both exited with no ports, and `ports` are closed.
pub fn stop_in_reverse_order(b: &Berth, d: &Path, project: &str, args: &[&str], ports: [u16; 2]) {
    let out = compose(b, d, &[&["stop"], args].concat()).ok();
    let err = &out.stderr;
    let website_at = err
        .find(&format!("Container {project}-website-1  Stopped"))
        .unwrap_or_else(|| panic!("{err}"));
    let product_at = err
        .find(&format!("Container {project}-product-service-1  Stopped"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(website_at < product_at, "{err}");
    assert!(ps_rows(b, d, false).is_empty());
    let rows = ps_rows(b, d, true);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        assert!(r[4].starts_with("Exited ("), "{rows:?}");
        assert_eq!(r[5], "", "{rows:?}");
    }
    assert!(ports.iter().all(|p| http_get(*p).is_none()));
}

/// `compose rm -f` of a stopped seed-003-shaped `project` removes both
/// containers and keeps the project's network.
pub fn rm_keeps_the_network(b: &Berth, d: &Path, project: &str) {
    let out = compose(b, d, &["rm", "-f"]).ok();
    for c in ["website-1", "product-service-1"] {
        assert!(
            out.stderr
                .contains(&format!("Container {project}-{c}  Removed")),
            "{}",
            out.stderr
        );
    }
    assert!(ps_rows(b, d, true).is_empty());
    b.run(&["network", "inspect", &format!("{project}_default")])
        .ok();
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    // A new file renamed over the old: the script may be executing.
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Writes the project into `d` (its name is the project's), publishing
/// the product on `pp` and the website on `wp`.
fn write_project(d: &Path, pp: u16, wp: u16) {
    std::fs::create_dir_all(d.join("product")).unwrap();
    std::fs::create_dir_all(d.join("website/cgi-bin")).unwrap();
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
      - 127.0.0.1:{pp}:80

  website:
    image: berth/busybox
    command: httpd -f -p 80 -h /var/www/html
    volumes:
      - ./website:/var/www/html
    ports:
      - 127.0.0.1:{wp}:80
    depends_on:
      - product-service
"#
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("product/Dockerfile"),
        "FROM berth/busybox\n\nCOPY . /usr/src/app\nCMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/usr/src/app\"]\n",
    )
    .unwrap();
    std::fs::write(d.join("product/index.html"), PRODUCTS).unwrap();
    write_exec(&d.join("website/cgi-bin/index.cgi"), INDEX_CGI);
}

/// The whole scenario in `root` (a folder the placement can bind-mount):
/// `up -d` builds and starts both in dependency order; both answer on their
/// published ports; the website shows the list it fetched by name; host
/// edits of both bind-mounted folders are served; `ps`, `rm` (nothing
/// stopped), `stop`, `ps -a`, `rm` and `down` as docker compose v2.
/// `limit` bounds each wait for an answer. `step` is called after each
/// stage with its name.
pub fn run(b: &Berth, root: &Path, limit: Duration, step: &mut dyn FnMut(&str)) {
    let d = &root.join("shop");
    let (pp, wp) = (free_port(), free_port());
    write_project(d, pp, wp);

    let out = compose(b, d, &["up", "-d"]).ok();
    let err = &out.stderr;
    assert!(err.contains("Service product-service  Building"), "{err}");
    assert!(err.contains("Step 2/3 : COPY . /usr/src/app"), "{err}");
    assert_eq!(out.stdout, "");
    assert!(err.contains("Network shop_default  Created"), "{err}");
    let product_at = err
        .find("Container shop-product-service-1  Started")
        .unwrap_or_else(|| panic!("{err}"));
    let website_at = err
        .find("Container shop-website-1  Started")
        .unwrap_or_else(|| panic!("{err}"));
    assert!(product_at < website_at, "{err}");
    b.run(&["image", "inspect", "shop-product-service"]).ok();
    step("compose up -d (with the build)");

    // Both answer from the host; the page lists what it fetched by name.
    let body = wait_body(pp, "products", limit);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["products"],
        serde_json::json!(["Ice cream", "Chocolate", "Fruit", "Eggs"])
    );
    let page = wait_body(wp, "<li>Eggs</li>", limit);
    assert!(page.contains("<h1>Welcome to my shop</h1>"), "{page}");
    assert!(
        page.contains("<ul><li>Ice cream</li><li>Chocolate</li><li>Fruit</li><li>Eggs</li></ul>"),
        "{page}"
    );
    step("both services answer, the list fetched by name");

    // Host edits of the bind-mounted folders: the website's page, and the
    // product list it fetches.
    write_exec(
        &d.join("website/cgi-bin/index.cgi"),
        &INDEX_CGI.replace("Welcome to my shop", "Welcome to my edited shop"),
    );
    wait_body(wp, "Welcome to my edited shop", limit);
    std::fs::write(
        d.join("product/index.html"),
        PRODUCTS.replace("\"Eggs\"]", "\"Eggs\", \"Milk\"]"),
    )
    .unwrap();
    wait_body(wp, "<li>Eggs</li><li>Milk</li></ul>", limit);
    step("host edits served");

    let rows = ps_rows(b, d, false);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0][..4],
        [
            "shop-product-service-1",
            "shop-product-service",
            "\"httpd -f -p 80 -h /…\"",
            "product-service"
        ]
    );
    assert!(rows[0][4].starts_with("Up "), "{rows:?}");
    assert_eq!(rows[0][5], format!("127.0.0.1:{pp}->80/tcp"));
    assert_eq!(
        rows[1][..4],
        [
            "shop-website-1",
            "berth/busybox",
            "\"httpd -f -p 80 -h /…\"",
            "website"
        ]
    );
    assert_eq!(rows[1][5], format!("127.0.0.1:{wp}->80/tcp"));

    // rm leaves running containers alone.
    let out = compose(b, d, &["rm", "-f"]).ok();
    assert_eq!(out.stderr, "No stopped containers\n");

    // stop in reverse dependency order (httpd as PID 1 ignores SIGTERM:
    // -t 1 kills it after a second); the ports close.
    stop_in_reverse_order(b, d, "shop", &["-t", "1"], [wp, pp]);

    // rm removes the stopped containers and keeps the network; down takes
    // the network, and keeps the built image.
    rm_keeps_the_network(b, d, "shop");
    let out = compose(b, d, &["down"]).ok();
    assert!(
        out.stderr.contains("Network shop_default  Removed"),
        "{}",
        out.stderr
    );
    assert_ne!(b.run(&["network", "inspect", "shop_default"]).code, 0);
    b.run(&["image", "inspect", "shop-product-service"]).ok();
    step("ps, rm, stop, rm, down");
}
