#![cfg(target_os = "linux")]
//! `pull`, `push`, `login` against a real registry (Debian's
//! `docker-registry`, distribution 2.8) started by each test on
//! 127.0.0.1: plain HTTP, and TLS with htpasswd basic auth and a CA made
//! here. Images are seeded with skopeo and umoci. Also: a corrupting proxy
//! (digest mismatch), a pull killed mid-way and re-run, hostile registry
//! answers from a fake server, `save`, `image inspect/history/prune`.

use berth_tests::{default_image, have, run_command, skip, Berth, Out, DEFAULT_IMAGE};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_tests::registry::{sh, tools_missing, Registry, PASS, USER};

fn berth_env(b: &Berth, env: &[(&str, &str)], args: &[&str]) -> Out {
    let mut c = b.command();
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).stdin(Stdio::null()).output().unwrap().into()
}

fn image_id(b: &Berth, r: &str) -> String {
    let out = b.run(&["image", "inspect", r]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

/// Every cached blob hashes to its name; no temporary files remain.
fn assert_cache_clean(b: &Berth) {
    let dir = b.home.path().join("cache/blobs/sha256");
    // Every caller pulled or pushed first: the cache exists.
    let rd = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no blob cache at {}: {e}", dir.display()));
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains("tmp"),
            "temporary file {name} left in the cache"
        );
        let data = std::fs::read(e.path()).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&data)),
            name,
            "corrupt cached blob"
        );
    }
}

fn oci_archive() -> String {
    format!("oci-archive:{}", default_image().display())
}

#[test]
fn pull_oci_schema2_and_list_then_run() {
    if let Some(r) = tools_missing() {
        return skip(&r);
    }
    let reg = Registry::start(false);
    let h = reg.host();
    reg.seed(&oci_archive(), "t/oci:v1", "");
    reg.seed(&oci_archive(), "t/v2s2:v1", "--format v2s2");
    // A manifest list over an amd64 image and a (labelled) arm64 one.
    let lay = reg.dir.path().join("layout");
    sh(&format!(
        "mkdir -p {0} && tar -xf {1} -C {0} && umoci config --image {0}:latest --tag arm \
         --architecture arm64 --config.label which=arm",
        lay.display(),
        default_image().display()
    ));
    reg.seed(
        &format!("oci:{}:latest", lay.display()),
        "t/multi:amd64",
        "--format v2s2",
    );
    reg.seed(
        &format!("oci:{}:arm", lay.display()),
        "t/multi:arm64",
        "--format v2s2",
    );
    let entry = |tag: &str, arch: &str| {
        let d = reg.digest(&format!("t/multi:{tag}"));
        let raw = sh(&format!(
            "curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' http://{h}/v2/t/multi/manifests/{d}"
        ));
        serde_json::json!({
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": d, "size": raw.len(),
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [entry("arm64", "arm64"), entry("amd64", "amd64")]
    });
    let list_file = reg.dir.path().join("list.json");
    std::fs::write(&list_file, serde_json::to_vec(&list).unwrap()).unwrap();
    sh(&format!(
        "curl -sf -X PUT -H 'Content-Type: application/vnd.docker.distribution.manifest.list.v2+json' \
         --data-binary @{} http://{h}/v2/t/multi/manifests/list",
        list_file.display()
    ));

    let b = Berth::new();
    for (repo, media) in [
        ("t/oci:v1", "application/vnd.oci.image.manifest.v1+json"),
        (
            "t/v2s2:v1",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let raw = reg.raw_manifest(repo);
        assert_eq!(raw["mediaType"], media);
        let r = format!("{h}/{repo}");
        let o = b.run(&["pull", &r]).ok();
        // Same config and layers in both: the second pull finds the whole
        // image here and, as dockerd (which stops once it finds the
        // image's config), prints no layer lines.
        if media.contains("oci") {
            assert!(o.stdout.contains("Pull complete"), "{}", o.stdout);
        } else {
            assert!(!o.stdout.contains("Already exists"), "{}", o.stdout);
            assert!(!o.stdout.contains("Pull complete"), "{}", o.stdout);
            assert!(o.stdout.contains("Downloaded newer image"), "{}", o.stdout);
        }
        assert!(
            o.stdout.contains(&format!("Digest: {}", reg.digest(repo))),
            "{}",
            o.stdout
        );
        assert!(o.stdout.ends_with(&format!("{r}\n")), "{}", o.stdout);
        // Same image id as the registry's config digest.
        assert_eq!(image_id(&b, &r), raw["config"]["digest"].as_str().unwrap());
        let out = b
            .run(&[
                "run",
                "--rm",
                &r,
                "sh",
                "-c",
                "echo pulled-$(cat /etc/hostname | wc -c)",
            ])
            .ok()
            .stdout;
        assert!(out.starts_with("pulled-"), "{out}");
    }
    // A second pull of an image that is all here prints no layer lines,
    // as dockerd (it stops once it finds the image's config).
    let o = b.run(&["pull", &format!("{h}/t/oci:v1")]).ok();
    assert!(!o.stdout.contains("Already exists"), "{}", o.stdout);
    assert!(!o.stdout.contains("Pull complete"), "{}", o.stdout);
    assert!(o.stdout.contains("Image is up to date"), "{}", o.stdout);

    // Manifest list: the host's platform by default, --platform on request.
    let list_ref = format!("{h}/t/multi:list");
    let o = b.run(&["pull", "-q", &list_ref]).ok();
    let amd_cfg = reg.raw_manifest("t/multi:amd64")["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(o.stdout.trim(), amd_cfg);
    let out = b
        .run(&["run", "--rm", &list_ref, "echo", "multi-ok"])
        .ok()
        .stdout;
    assert_eq!(out, "multi-ok\n");
    let arm_cfg = reg.raw_manifest("t/multi:arm64")["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let o = b
        .run(&[
            "pull",
            "-q",
            "--platform",
            "linux/arm64",
            &format!("{h}/t/multi:list"),
        ])
        .ok();
    assert_eq!(o.stdout.trim(), arm_cfg);
    let o = b.run(&["pull", "--platform", "linux/s390x", &list_ref]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("no matching manifest for linux/s390x"),
        "{}",
        o.stderr
    );
    // RepoDigests and --digests show the list's digest.
    let list_digest = reg.digest("t/multi:list");
    let insp = b.run(&["image", "inspect", &list_ref]).ok().stdout;
    assert!(
        insp.contains(&format!("{h}/t/multi@{list_digest}")),
        "{insp}"
    );
    let imgs = b.run(&["images", "--digests"]).ok().stdout;
    assert!(imgs.contains("DIGEST"), "{imgs}");
    assert!(imgs.contains(&list_digest), "{imgs}");
    // Pull by digest.
    let by_digest = format!("{h}/t/v2s2@{}", reg.digest("t/v2s2:v1"));
    b.run(&["pull", &by_digest]).ok();
    // Unknown tags and repositories fail clearly.
    let o = b.run(&["pull", &format!("{h}/t/oci:nope")]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("not found"), "{}", o.stderr);
    assert_cache_clean(&b);
}

#[test]
fn whiteouts_survive_the_registry_round_trip() {
    if let Some(r) = tools_missing() {
        return skip(&r);
    }
    let reg = Registry::start(false);
    let d = reg.dir.path();
    sh(&format!(
        "set -e; cd {0}; mkdir lay; tar -xf {1} -C lay; umoci unpack --image lay:latest bundle >/dev/null; \
         rm bundle/rootfs/etc/group; mkdir -p bundle/rootfs/data/sub; echo one > bundle/rootfs/data/sub/f; \
         umoci repack --refresh-bundle --image lay:w1 bundle; \
         rm -r bundle/rootfs/data; echo two > bundle/rootfs/two.txt; \
         umoci repack --refresh-bundle --image lay:w2 bundle",
        d.display(),
        default_image().display()
    ));
    reg.seed(&format!("oci:{}/lay:w2", d.display()), "t/whiteout:v1", "");
    assert_eq!(
        reg.raw_manifest("t/whiteout:v1")["layers"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let b = Berth::new();
    let r = format!("{}/t/whiteout:v1", reg.host());
    b.run(&["pull", "-q", &r]).ok();
    let out = b
        .run(&[
            "run",
            "--rm",
            &r,
            "sh",
            "-c",
            "test ! -e /etc/group && test ! -e /data && test -e /etc/passwd && cat /two.txt",
        ])
        .ok()
        .stdout;
    assert_eq!(out, "two\n");
    let hist = b.run(&["history", &r]).ok().stdout;
    assert!(hist.starts_with("IMAGE"), "{hist}");
    assert!(hist.lines().count() >= 3, "{hist}");
}

#[test]
fn push_loaded_and_pulled_images() {
    if let Some(r) = tools_missing() {
        return skip(&r);
    }
    let reg = Registry::start(false);
    let h = reg.host();
    let b = Berth::new().with_default_image();
    let id = image_id(&b, "berth/busybox");
    // A loaded image: its OCI manifest goes up unchanged.
    let target = format!("{h}/pushed/busybox:v1");
    b.run(&["tag", "berth/busybox", &target]).ok();
    let o = b.run(&["push", &target]).ok();
    assert!(o.stdout.contains("Pushed"), "{}", o.stdout);
    let digest = reg.digest("pushed/busybox:v1");
    assert!(
        o.stdout.contains(&format!("v1: digest: {digest}")),
        "{}",
        o.stdout
    );
    assert_eq!(
        reg.raw_manifest("pushed/busybox:v1")["config"]["digest"],
        id
    );
    // Again: nothing to upload.
    let o = b.run(&["push", &target]).ok();
    assert!(o.stdout.contains("Layer already exists"), "{}", o.stdout);
    assert!(!o.stdout.contains("Pushed"), "{}", o.stdout);
    // Another repository of the same registry: blobs are mounted.
    let other = format!("{h}/other/busybox:v2");
    b.run(&["tag", "berth/busybox", &other]).ok();
    let o = b.run(&["push", &other]).ok();
    assert!(
        o.stdout.contains("Mounted from pushed/busybox"),
        "{}",
        o.stdout
    );
    assert_eq!(reg.digest("other/busybox:v2"), digest);
    // skopeo reads it back into an archive berth loads.
    let dir = tempfile::tempdir().unwrap();
    sh(&format!(
        "skopeo copy -q --src-tls-verify=false docker://{other} docker-archive:{}/x.tar:x/y:z",
        dir.path().display()
    ));
    // A docker-save archive (no manifest kept): pushed with a synthesized
    // schema2 manifest, pulled back by a fresh installation.
    let b2 = Berth::new();
    b2.run(&["load", "-i", &format!("{}/x.tar", dir.path().display())])
        .ok();
    let t2 = format!("{h}/fromsave/img:v1");
    b2.run(&["tag", "x/y:z", &t2]).ok();
    // Chunked (PATCH) upload: 64 KiB chunks for a ~1 MB layer.
    let o = berth_env(
        &b2,
        &[("BERTH_REGISTRY_CHUNK_SIZE", "65536")],
        &["push", &t2],
    )
    .ok();
    assert!(o.stdout.contains("Pushed"), "{}", o.stdout);
    let b3 = Berth::new();
    b3.run(&["pull", "-q", &t2]).ok();
    assert_eq!(image_id(&b3, &t2), id);
    let out = b3
        .run(&["run", "--rm", &t2, "echo", "round-trip"])
        .ok()
        .stdout;
    assert_eq!(out, "round-trip\n");
    // An image whose blobs left the host cache cannot be pushed.
    let layer = reg.raw_manifest("fromsave/img:v1")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let cached = b2.home.path().join("cache/blobs/sha256").join(&layer[7..]);
    std::fs::remove_file(&cached).unwrap();
    let o = b2.run(&["push", &t2]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("not in the host cache"), "{}", o.stderr);
    // Images made inside the agent (commit) are copied out of the engine
    // and pushed.
    b.run(&["run", "--name", "c1", "berth/busybox", "touch", "/made"])
        .ok();
    let committed = format!("{h}/mine/committed:v1");
    b.run(&["commit", "c1", &committed]).ok();
    let o = b.run(&["push", &committed]).ok();
    assert!(o.stdout.contains("Pushed"), "{}", o.stdout);
    // Missing images fail clearly.
    let o = b.run(&["push", &format!("{h}/nope/x:y")]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("does not exist locally"), "{}", o.stderr);

    // save: docker-save (default) and OCI archives that load elsewhere.
    let save = dir.path().join("s.tar");
    b.run(&["save", "-o", save.to_str().unwrap(), &target]).ok();
    let listing = sh(&format!("tar -tf {}", save.display()));
    assert!(
        listing.contains("manifest.json") && listing.contains("index.json"),
        "{listing}"
    );
    let oci = dir.path().join("o.tar");
    b.run(&[
        "save",
        "--format",
        "oci",
        "-o",
        oci.to_str().unwrap(),
        &target,
    ])
    .ok();
    assert!(!sh(&format!("tar -tf {}", oci.display())).contains("manifest.json"));
    sh(&format!(
        "skopeo inspect oci-archive:{} >/dev/null && skopeo inspect docker-archive:{} >/dev/null",
        oci.display(),
        save.display()
    ));
    let b4 = Berth::new();
    let o = b4.run(&["load", "-i", save.to_str().unwrap()]).ok();
    assert!(
        o.stdout.contains(&format!("Loaded image: {target}")),
        "{}",
        o.stdout
    );
    assert_eq!(image_id(&b4, &target), id);
    b4.run(&["load", "-i", oci.to_str().unwrap()]).ok();
    assert!(!dir.path().read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("berth-tmp")));

    // prune: only untagged images go (a pull by digest makes one).
    let b5 = Berth::new();
    b5.run(&["pull", "-q", &format!("{h}/pushed/busybox@{digest}")])
        .ok();
    let o = b5.run(&["images", "--digests"]).ok().stdout;
    assert!(
        o.contains(&format!("{h}/pushed/busybox   <none>    {digest}")),
        "{o}"
    );
    let o = b5.run(&["image", "prune", "-f"]).ok();
    assert!(o.stdout.contains("Deleted Images:"), "{}", o.stdout);
    assert!(o.stdout.contains("Total reclaimed space"), "{}", o.stdout);
    assert_eq!(b5.run(&["images", "-q"]).ok().stdout, "");
    // prune -a: tagged but unused images go too; used ones stay.
    b4.run(&["tag", &target, "keep/me:v1"]).ok();
    b4.run(&["run", "--name", "user", "keep/me:v1", "true"])
        .ok();
    let o = b4.run(&["image", "prune", "-a", "-f"]).ok();
    assert!(o.stdout.contains("Total reclaimed space"), "{}", o.stdout);
    let left = b4.run(&["images"]).ok().stdout;
    assert!(left.contains("keep/me"), "{left}");
    b4.run(&["rm", "user"]).ok();
    b4.run(&["image", "prune", "-a", "-f"]).ok();
    assert_eq!(b4.run(&["images", "-q"]).ok().stdout, "");
    // Removed images cannot be pushed from the cache's memory.
    let o = b4.run(&["push", &target]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("does not exist locally"), "{}", o.stderr);
}

#[test]
fn tls_basic_auth_login_logout() {
    if let Some(r) = tools_missing() {
        return skip(&r);
    }
    let reg = Registry::start(true);
    let h = reg.host();
    reg.seed(&oci_archive(), "secure/busybox:v1", "");
    let ca = reg.ca.clone().unwrap();
    let ca_env = [("BERTH_REGISTRY_CA", ca.to_str().unwrap())];
    let b = Berth::new();
    let r = format!("{h}/secure/busybox:v1");
    // Without the CA the certificate is not trusted.
    let o = b.run(&["pull", &r]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("HTTPS") && o.stderr.contains("certificate"),
        "{}",
        o.stderr
    );
    // Without credentials: told to log in.
    let o = berth_env(&b, &ca_env, &["pull", &r]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("berth login"), "{}", o.stderr);
    // Wrong password: refused, nothing saved.
    let mut login = b.command();
    login
        .env("BERTH_REGISTRY_CA", &ca)
        .args(["login", "-u", USER, "--password-stdin", &h]);
    let o = run_command(login, Some(b"wrong\n"), b.timeout, "login");
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("unauthorized"), "{}", o.stderr);
    assert!(!b.home.path().join("auth.json").exists());
    // The certs.d directory works like BERTH_REGISTRY_CA.
    let certs = b.home.path().join("certs.d").join(&h);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let mut c = b.command();
    c.args(["login", "-u", USER, "--password-stdin", &h]);
    let o = run_command(c, Some(format!("{PASS}\n").as_bytes()), b.timeout, "login").ok();
    assert!(o.stdout.contains("Login Succeeded"), "{}", o.stdout);
    let meta = std::fs::metadata(b.home.path().join("auth.json")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    b.run(&["pull", &r]).ok();
    let out = b.run(&["run", "--rm", &r, "echo", "secure-ok"]).ok().stdout;
    assert_eq!(out, "secure-ok\n");
    let pushed = format!("{h}/secure/again:v2");
    b.run(&["tag", &r, &pushed]).ok();
    b.run(&["push", &pushed]).ok();
    assert_eq!(
        reg.digest("secure/again:v2"),
        reg.digest("secure/busybox:v1")
    );
    let o = b.run(&["logout", &h]).ok();
    assert!(
        o.stdout.contains("Removing login credentials"),
        "{}",
        o.stdout
    );
    let o = b.run(&["pull", &r]);
    assert_ne!(o.code, 0);
}

/// A TCP proxy in front of the registry that flips a byte in every large
/// blob response, or just slows everything down.
struct Proxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16, corrupt: bool, slow: bool) -> Proxy {
        Self::start_mode(upstream, corrupt, slow, false)
    }

    /// `bearer`: demand a token from the proxy's own `/token` endpoint
    /// (scope `repository:auth/img:pull`) before forwarding anything.
    fn start_mode(upstream: u16, corrupt: bool, slow: bool, bearer: bool) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(c) = c else { return };
                std::thread::spawn(move || {
                    let _ = if bearer {
                        token_gate(c, upstream, port)
                    } else {
                        proxy_one(c, upstream, corrupt, slow, Vec::new(), String::new())
                    };
                });
            }
        });
        Proxy { port, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_head(s: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok((buf, rest));
        }
        let n = s.read(&mut b)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&b[..n]);
        // A TLS ClientHello (berth tries HTTPS first): hang up.
        if buf[0] == 0x16 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

/// One request per connection: the request goes up with `Connection:
/// close`, the response comes back (altered).
const TOKEN: &str = "good-token-123";

fn reply(c: &mut TcpStream, status: &str, headers: &str, body: &str) -> std::io::Result<()> {
    c.write_all(
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// A token server and a gate in front of the registry.
fn token_gate(mut c: TcpStream, upstream: u16, port: u16) -> std::io::Result<()> {
    let (head, body_start) = read_head(&mut c)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split(' ').nth(1).unwrap_or("").to_string();
    if path.starts_with("/token") {
        let q = path
            .replace("%3A", ":")
            .replace("%3a", ":")
            .replace("%2F", "/")
            .replace("%2f", "/");
        // Only auth/img may be pulled.
        let scopes: Vec<&str> = q
            .split(['?', '&'])
            .filter(|p| p.starts_with("scope="))
            .collect();
        if q.contains("service=fake-registry")
            && !scopes.is_empty()
            && scopes
                .iter()
                .all(|s| *s == "scope=repository:auth/img:pull")
        {
            return reply(
                &mut c,
                "200 OK",
                "Content-Type: application/json\r\n",
                &format!("{{\"token\":\"{TOKEN}\"}}"),
            );
        }
        return reply(&mut c, "403 Forbidden", "", "bad scope");
    }
    let authorised = text
        .lines()
        .any(|l| l.eq_ignore_ascii_case(&format!("authorization: bearer {TOKEN}")));
    if !authorised {
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake-registry\",scope=\"repository:auth/img:pull\"\r\n"
        );
        return reply(&mut c, "401 Unauthorized", &challenge, "{}");
    }
    proxy_one(
        c,
        upstream,
        false,
        false,
        head,
        String::from_utf8_lossy(&body_start).into(),
    )
}

fn proxy_one(
    mut c: TcpStream,
    upstream: u16,
    corrupt: bool,
    slow: bool,
    head: Vec<u8>,
    body_start: String,
) -> std::io::Result<()> {
    let (head, body_start) = if head.is_empty() {
        read_head(&mut c)?
    } else {
        (head, body_start.into_bytes())
    };
    let head = String::from_utf8_lossy(&head).into_owned();
    let is_blob_get =
        head.starts_with("GET ") && head.lines().next().unwrap_or("").contains("/blobs/");
    let mut lines: Vec<&str> = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    let mut u = TcpStream::connect(("127.0.0.1", upstream))?;
    u.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())?;
    u.write_all(&body_start)?;
    let mut up2 = u.try_clone()?;
    let mut c2 = c.try_clone()?;
    // Request bodies (none for pulls) flow up in the background.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut up2);
    });
    let (rhead, mut rest) = read_head(&mut u)?;
    let text = String::from_utf8_lossy(&rhead).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    c.write_all(&rhead)?;
    let mut flip = corrupt && is_blob_get && text.starts_with("http/1.1 200") && len > 4096;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !rest.is_empty() {
            if flip {
                rest[0] ^= 0xff;
                flip = false;
            }
            c.write_all(&rest)?;
            rest.clear();
        }
        let n = u.read(&mut buf)?;
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&buf[..n]);
        if slow {
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    Ok(())
}

#[test]
fn corrupted_blobs_are_refused_and_killed_pulls_resume() {
    if let Some(r) = tools_missing() {
        return skip(&r);
    }
    let reg = Registry::start(false);
    reg.seed(&oci_archive(), "t/img:v1", "");
    let bad = Proxy::start(reg.port, true, false);
    let b = Berth::new();
    let r = format!("127.0.0.1:{}/t/img:v1", bad.port);
    let o = b.run(&["pull", &r]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert!(o.stderr.contains("digest mismatch"), "{}", o.stderr);
    assert!(!b.run(&["images"]).ok().stdout.contains("t/img"));
    assert_cache_clean(&b);
    let layer = reg.raw_manifest("t/img:v1")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!b
        .home
        .path()
        .join("cache/blobs/sha256")
        .join(&layer[7..])
        .exists());

    // A slow pull killed mid-way, then run again to completion.
    let slow = Proxy::start(reg.port, false, true);
    let r = format!("127.0.0.1:{}/t/img:v1", slow.port);
    let mut child = b
        .command()
        .args(["pull", &r])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let blobs = b.home.path().join("cache/blobs/sha256");
    let deadline = Instant::now() + Duration::from_secs(20);
    let partial = |p: &Path| {
        p.read_dir()
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            })
            .unwrap_or(false)
    };
    while !partial(&blobs) {
        assert!(Instant::now() < deadline, "no download started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "pull ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    // SIGKILL of the berth process this test started.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!b.run(&["images"]).ok().stdout.contains("t/img"));
    let o = b.run(&["pull", &r]).ok();
    assert!(o.stdout.contains("Downloaded newer image"), "{}", o.stdout);
    assert_cache_clean(&b);
    let out = b.run(&["run", "--rm", &r, "echo", "resumed"]).ok().stdout;
    assert_eq!(out, "resumed\n");
}

#[test]
fn bearer_token_challenge() {
    if let Some(r) = tools_missing() {
        return skip(&r);
    }
    let reg = Registry::start(false);
    reg.seed(&oci_archive(), "auth/img:v1", "");
    let gate = Proxy::start_mode(reg.port, false, false, true);
    let b = Berth::new();
    let r = format!("127.0.0.1:{}/auth/img:v1", gate.port);
    b.run(&["pull", "-q", &r]).ok();
    let out = b.run(&["run", "--rm", &r, "echo", "token-ok"]).ok().stdout;
    assert_eq!(out, "token-ok\n");
    // A token for another repository is refused by the token server.
    let o = b.run(&["pull", &format!("127.0.0.1:{}/auth/other:v1", gate.port)]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("unauthorized"), "{}", o.stderr);
}

/// A fake registry answering every request with `respond(method, path)`.
/// A canned answer: status, headers, body.
type Reply = (u16, Vec<(String, String)>, Vec<u8>);
/// Answers `(method, path)`.
type Responder = fn(&str, &str) -> Reply;

fn fake_registry(respond: Responder) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let Ok((head, _)) = read_head(&mut c) else {
                    return;
                };
                let head = String::from_utf8_lossy(&head).into_owned();
                let mut first = head.lines().next().unwrap_or("").split(' ');
                let (m, p) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
                let (status, headers, body) = respond(m, p);
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let _ = c.write_all(out.as_bytes());
                if m != "HEAD" {
                    let _ = c.write_all(&body);
                }
            });
        }
    });
    port
}

fn json_resp(body: String) -> Reply {
    (
        200,
        vec![(
            "Content-Type".into(),
            "application/vnd.oci.image.manifest.v1+json".into(),
        )],
        body.into_bytes(),
    )
}

#[test]
fn hostile_registries_are_refused() {
    let b = Berth::new();
    let cases: Vec<(Responder, &str)> = vec![
        (
            |_, p| {
                if p == "/v2/" {
                    return (200, vec![], b"{}".to_vec());
                }
                json_resp(format!(
                    r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:../../../../etc/passwd","size":3}}]}}"#,
                    "a".repeat(64)
                ))
            },
            "invalid digest",
        ),
        (
            |_, p| {
                if p == "/v2/" {
                    return (200, vec![], b"{}".to_vec());
                }
                json_resp(format!(
                    "{{\"schemaVersion\":2,\"x\":\"{}\"}}",
                    "a".repeat(5 << 20)
                ))
            },
            "larger than 4 MiB",
        ),
        (
            |_, p| {
                if p == "/v2/" {
                    return (200, vec![], b"{}".to_vec());
                }
                json_resp(r#"{"schemaVersion":1,"fsLayers":[]}"#.to_string())
            },
            "schema1",
        ),
        (
            |_, _| {
                (
                    401,
                    vec![("WWW-Authenticate".into(), "Bearer realm=\"\\\",,==".into())],
                    vec![],
                )
            },
            "realm",
        ),
        (
            |_, p| {
                if p == "/v2/" {
                    return (200, vec![], b"{}".to_vec());
                }
                json_resp(format!(
                    r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":99999999999}},"layers":[]}}"#,
                    "a".repeat(64)
                ))
            },
            "limit",
        ),
        (
            |_, p| {
                if p == "/v2/" {
                    return (200, vec![], b"{}".to_vec());
                }
                if p.contains("/blobs/") {
                    // Config blob bigger than declared.
                    return (200, vec![], vec![b'{'; 100]);
                }
                json_resp(format!(
                    r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":2}},"layers":[]}}"#,
                    "a".repeat(64)
                ))
            },
            "bytes but the manifest says",
        ),
    ];
    for (respond, want) in cases {
        let port = fake_registry(respond);
        let o = b.run(&["pull", &format!("127.0.0.1:{port}/evil/img:v1")]);
        assert_ne!(o.code, 0, "{}", o.stdout);
        assert!(o.stderr.contains(want), "want {want:?}: {}", o.stderr);
    }
    assert_cache_clean(&b);
    // Bad user input.
    let o = b.run(&["pull", "--platform", "linux", "busybox"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("invalid platform"), "{}", o.stderr);
    let o = b.run(&["pull", "UPPER/case"]);
    assert_ne!(o.code, 0);
}

#[test]
fn pull_and_push_interoperate_with_docker() {
    if let Some(r) = tools_missing() {
        return skip(&r);
    }
    if !have("dockerd") {
        return skip("dockerd (docker.io) not installed");
    }
    let docker = berth_tests::dockerd::Dockerd::required();
    let dk = |args: &[&str]| -> String {
        let o = docker.docker(args).unwrap();
        assert!(
            o.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let reg = Registry::start(false);
    let h = reg.host();
    reg.seed(&oci_archive(), "t/v2s2:v1", "--format v2s2");
    let r = format!("{h}/t/v2s2:v1");
    // Both pull the same image: same id, same RepoDigests, same summary.
    let dout = dk(&["pull", &r]);
    let b = Berth::new();
    let bout = b.run(&["pull", &r]).ok().stdout;
    let tail = |s: &str| {
        s.lines()
            .rev()
            .take(3)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(tail(&bout), tail(&dout), "berth:\n{bout}\ndocker:\n{dout}");
    let field = |json: &str, k: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(json).unwrap()[0][k].clone()
    };
    let dj = dk(&["image", "inspect", &r]);
    let bj = b.run(&["image", "inspect", &r]).ok().stdout;
    for k in ["Id", "RepoTags", "RepoDigests", "Architecture", "Os"] {
        assert_eq!(field(&bj, k), field(&dj, k), "{k}");
    }
    // images --digests and history print what docker prints.
    for args in [
        &["images", "--digests"][..],
        &["history", &r][..],
        &["history", "--no-trunc", &r][..],
    ] {
        let trim = |s: String| {
            s.lines()
                .map(|l| l.trim_end().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(trim(b.run(args).ok().stdout), trim(dk(args)), "{args:?}");
    }
    // push prints what docker prints (piped, so only the lines that say
    // what happened to each layer, and the digest line): the same image to
    // a repository of its own for each, twice.
    let outcome = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| {
                l.starts_with("The push refers to")
                    || l.contains(": Pushed")
                    || l.contains(": Layer already exists")
                    || l.contains(": Mounted from")
                    || l.contains(": digest: sha256:")
            })
            .map(|l| {
                l.replace("/by-docker", "/by-engine")
                    .replace("/by-berth", "/by-engine")
            })
            // docker re-serialises a pulled image's manifest when it pushes
            // it; berth pushes the manifest it pulled, so its digest stays
            // the source's (checked below). The line's shape is docker's.
            .map(|l| match l.split_once(": digest: sha256:") {
                Some((tag, rest)) => {
                    let (hex, size) = rest.split_once(" size: ").unwrap_or((rest, ""));
                    assert!(hex.len() == 64 && size.parse::<u64>().is_ok(), "{l}");
                    format!("{tag}: digest: sha256:<digest> size: <size>")
                }
                None => l,
            })
            .collect()
    };
    for round in ["first push", "second push"] {
        let (dt, bt) = (
            format!("{h}/by-docker/img:v1"),
            format!("{h}/by-berth/img:v1"),
        );
        dk(&["tag", &r, &dt]);
        b.run(&["tag", &r, &bt]).ok();
        let dp = dk(&["push", &dt]);
        let bp = b.run(&["push", &bt]).ok().stdout;
        assert_eq!(
            outcome(&bp),
            outcome(&dp),
            "{round}\nberth:\n{bp}\ndocker:\n{dp}"
        );
        assert!(!outcome(&dp).is_empty(), "{dp}");
        let source = field(&bj, "RepoDigests")[0]
            .as_str()
            .unwrap()
            .split_once('@')
            .unwrap()
            .1
            .to_string();
        assert!(bp.contains(&format!("v1: digest: {source} size: ")), "{bp}");
    }
    // rmi of a pushed tag: the same Untagged lines.
    let (dt, bt) = (
        format!("{h}/by-docker/img:v1"),
        format!("{h}/by-berth/img:v1"),
    );
    // (The digests differ as above: berth's is the source's.)
    let norm = |s: &str| {
        let s = s
            .replace("/by-docker/", "/by-engine/")
            .replace("/by-berth/", "/by-engine/");
        match s.split_once("@sha256:") {
            Some((a, b)) => format!("{a}@sha256:<digest>{}", &b[64.min(b.len())..]),
            None => s,
        }
    };
    let (dr, br) = (dk(&["rmi", &dt]), b.run(&["rmi", &bt]).ok().stdout);
    assert_eq!(norm(&br), norm(&dr), "rmi");
    assert_eq!(br.lines().count(), 2, "{br}");
    // Untagged means gone: RepoDigests no longer name that repository.
    let left = field(&b.run(&["image", "inspect", &r]).ok().stdout, "RepoDigests");
    assert!(!left.to_string().contains("/by-berth/"), "{left}");
    // The images header.
    let first = |s: String| s.lines().next().unwrap_or("").trim_end().to_string();
    assert_eq!(
        first(b.run(&["images"]).ok().stdout),
        first(dk(&["images"]))
    );

    // berth pushes, docker pulls what berth pushed.
    let pushed = format!("{h}/from/berth:v1");
    b.run(&["tag", &r, &pushed]).ok();
    b.run(&["push", &pushed]).ok();
    dk(&["pull", &pushed]);
    assert_eq!(
        field(&dk(&["image", "inspect", &pushed]), "Id"),
        field(&bj, "Id")
    );
    // docker pushes, berth pulls what docker pushed.
    let from_docker = format!("{h}/from/docker:v1");
    dk(&["tag", &r, &from_docker]);
    dk(&["push", &from_docker]);
    let b2 = Berth::new();
    b2.run(&["pull", "-q", &from_docker]).ok();
    let out = b2
        .run(&["run", "--rm", &from_docker, "echo", "from-docker"])
        .ok()
        .stdout;
    assert_eq!(out, "from-docker\n");
    assert_eq!(
        field(
            &b2.run(&["image", "inspect", &from_docker]).ok().stdout,
            "Id"
        ),
        field(&bj, "Id")
    );
}

#[test]
fn built_image_is_pushed_and_pulled_back() {
    if let Some(r) = tools_missing() {
        return skip(&r);
    }
    let reg = Registry::start(false);
    let h = reg.host();
    let b = Berth::new().with_default_image();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("msg"), "built and pushed\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {DEFAULT_IMAGE}\nCOPY msg /msg\nRUN cat /msg > /copy\nCMD [\"cat\", \"/copy\"]\n"
        ),
    )
    .unwrap();
    let target = format!("{h}/built/app:v1");
    b.run(&["build", "-t", &target, ctx.path().to_str().unwrap()])
        .ok();
    // The image exists only in the engine: push copies its blobs out.
    let o = b.run(&["push", &target]).ok();
    assert!(o.stdout.contains("Pushed"), "{}", o.stdout);
    let fresh = Berth::new();
    fresh.run(&["pull", "-q", &target]).ok();
    assert_eq!(image_id(&fresh, &target), image_id(&b, &target));
    let out = fresh.run(&["run", "--rm", &target]).ok().stdout;
    assert_eq!(out, "built and pushed\n");
}

/// login and logout print what docker prints, against a registry with basic
/// auth (plain HTTP on 127.0.0.1, which both allow without set-up).
#[test]
fn login_and_logout_print_what_docker_prints() {
    if let Some(r) = tools_missing() {
        return skip(&r);
    }
    let reg = Registry::start_with(false, true);
    let h = reg.host();
    let docker = berth_tests::dockerd::Dockerd::required();
    let cfg = tempfile::tempdir().unwrap();
    let b = Berth::new();
    // `engine` runs args with `stdin` in docker (its own config dir) or berth.
    let engine = |docker_side: bool, args: &[&str], stdin: &str| -> Out {
        let mut c = if docker_side {
            let mut c = docker.command();
            c.env("DOCKER_CONFIG", cfg.path());
            c
        } else {
            b.command()
        };
        c.args(args);
        run_command(c, Some(stdin.as_bytes()), b.timeout, &args.join(" "))
    };
    // The credentials file is each engine's own.
    let first = |s: &str| {
        let l = s.lines().next().unwrap_or("").to_string();
        match l.split_once(" unencrypted in ") {
            Some((a, _)) => format!("{a} unencrypted in <file>."),
            None => l,
        }
    };
    let login = ["login", "-u", USER, "--password-stdin", h.as_str()];
    let pass = format!("{PASS}\n");
    let (d, o) = (engine(true, &login, &pass), engine(false, &login, &pass));
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (d.code, d.stdout.as_str()),
        "{}",
        o.stderr
    );
    assert_eq!(
        (d.code, d.stdout.as_str()),
        (0, "Login Succeeded\n"),
        "{}",
        d.stderr
    );
    assert_eq!(first(&o.stderr), first(&d.stderr));
    for args in [&["logout", h.as_str()][..], &["logout", h.as_str()][..]] {
        let (d, o) = (engine(true, args, ""), engine(false, args, ""));
        assert_eq!(
            (o.code, &o.stdout, &o.stderr),
            (d.code, &d.stdout, &d.stderr),
            "{args:?}"
        );
    }
    // A wrong password: refused by both, nothing stored. (The wording
    // differs: docker's daemon reports the HTTP status, berth the reason;
    // README, differences from docker.)
    let (d, o) = (
        engine(true, &login, "wrong\n"),
        engine(false, &login, "wrong\n"),
    );
    assert_eq!((o.code, d.code), (1, 1), "{}\n{}", o.stderr, d.stderr);
    assert!(o.stderr.contains("unauthorized"), "{}", o.stderr);
    assert!(
        !b.home.path().join("auth.json").exists()
            || !std::fs::read_to_string(b.home.path().join("auth.json"))
                .unwrap()
                .contains(&h)
    );
}

/// `compose push` and `compose pull` (issue 21): the images of services with both `build` and
/// `image` go to their registry; the others are skipped, as docker compose
/// v2 does. A failed push fails the verb unless `--ignore-push-failures`.
#[test]
fn compose_push_sends_built_service_images() {
    if let Some(r) = tools_missing() {
        return skip(&r);
    }
    let reg = Registry::start(false);
    let h = reg.host();
    let b = Berth::new().with_default_image();
    let root = tempfile::tempdir().unwrap();
    let d = root.path().join("pushed");
    std::fs::create_dir_all(d.join("app")).unwrap();
    std::fs::write(d.join("app/msg"), "composed and pushed\n").unwrap();
    std::fs::write(
        d.join("app/Dockerfile"),
        format!("FROM {DEFAULT_IMAGE}\nCOPY msg /msg\nCMD [\"cat\", \"/msg\"]\n"),
    )
    .unwrap();
    // A closed port: nothing answers there.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        d.join("compose.yaml"),
        format!(
            "services:\n  app:\n    build: ./app\n    image: {h}/compose/app:v1\n  \
             local:\n    build: ./app\n  plain:\n    image: {DEFAULT_IMAGE}\n  \
             broken:\n    build: ./app\n    image: {dead}/compose/broken:v1\n    profiles: [broken]\n"
        ),
    )
    .unwrap();
    let target = format!("{h}/compose/app:v1");
    berth_tests::compose(&b, &d, &["build"]).ok();
    let o = berth_tests::compose(&b, &d, &["push"]).ok();
    assert_eq!(o.stdout, "");
    let err = &o.stderr;
    for line in [
        " Service app  Pushing\n",
        "The push refers to repository [",
        "v1: digest: sha256:",
        " Service app  Pushed\n",
        " Service local  Skipped\n",
        " Service plain  Skipped\n",
    ] {
        assert!(err.contains(line), "{line:?} in {err}");
    }
    assert!(!err.contains("broken"), "{err}");
    // `compose pull` brings it back into an empty cache.
    let fresh = Berth::new();
    let o = berth_tests::compose(&fresh, &d, &["pull", "app"]).ok();
    assert_eq!(o.stdout, "");
    assert_eq!(image_id(&fresh, &target), image_id(&b, &target));
    assert_eq!(
        fresh.run(&["run", "--rm", &target]).ok().stdout,
        "composed and pushed\n"
    );
    // -q: nothing printed; a second push finds the layers there.
    let o = berth_tests::compose(&b, &d, &["push", "-q", "app"]).ok();
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("", ""));

    // A registry that does not answer: the verb fails and names the image,
    // unless told to go on.
    let with_broken = |args: &[&str]| {
        let mut a = vec!["--profile", "broken"];
        a.extend_from_slice(args);
        berth_tests::compose(&b, &d, &a)
    };
    with_broken(&["build", "broken"]).ok();
    let o = with_broken(&["push", "broken"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr
            .contains(&format!("failed to push {dead}/compose/broken:v1")),
        "{}",
        o.stderr
    );
    let o = with_broken(&["push", "--ignore-push-failures", "broken", "app"]).ok();
    assert!(o.stderr.contains(" Service app  Pushed\n"), "{}", o.stderr);
    assert!(o.stderr.contains("ignored"), "{}", o.stderr);

    // pull_policy on `up`, in an engine that has not got the image.
    let user = Berth::new();
    let pp = root.path().join("policy");
    std::fs::create_dir_all(&pp).unwrap();
    let policy = |p: &str| {
        let f = format!(
            "services:\n  p:\n    image: {target}\n    pull_policy: {p}\n    platform: linux\n"
        );
        std::fs::write(pp.join("compose.yaml"), f).unwrap();
    };
    // never: a missing image is an error, nothing is pulled.
    policy("never");
    let o = berth_tests::compose(&user, &pp, &["up", "-d"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains(&format!("No such image: {target}")),
        "{}",
        o.stderr
    );
    assert_ne!(user.run(&["image", "inspect", &target]).code, 0);
    // missing: pulled once, then used as it is.
    policy("missing");
    berth_tests::compose(&user, &pp, &["up", "-d"]).ok();
    assert_eq!(image_id(&user, &target), image_id(&b, &target));
    // A new image under the same tag in the registry.
    std::fs::write(d.join("app/msg"), "pushed again\n").unwrap();
    berth_tests::compose(&b, &d, &["build", "app"]).ok();
    berth_tests::compose(&b, &d, &["push", "app"]).ok();
    let old = image_id(&user, &target);
    berth_tests::compose(&user, &pp, &["up", "-d"]).ok();
    assert_eq!(
        image_id(&user, &target),
        old,
        "missing pulls only what is missing"
    );
    // always: pulled on every up, and the container recreated on it.
    policy("always");
    berth_tests::compose(&user, &pp, &["up", "-d"]).ok();
    assert_eq!(image_id(&user, &target), image_id(&b, &target));
    assert_ne!(image_id(&user, &target), old);
    berth_tests::wait_for("the recreated container's output", || {
        berth_tests::compose(&user, &pp, &["logs", "--no-log-prefix", "p"])
            .stdout
            .contains("pushed again")
    });
    berth_tests::compose(&user, &pp, &["down"]).ok();
}
