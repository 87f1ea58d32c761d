//! A real registry for tests: Debian's `docker-registry` (distribution
//! 2.8) on 127.0.0.1, plain HTTP, or TLS with htpasswd basic auth and a CA
//! made here. Images are seeded with skopeo.

use crate::have;
pub use crate::sh;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The first tool the registry tests need that is missing.
pub fn tools_missing() -> Option<String> {
    for t in [
        "docker-registry",
        "skopeo",
        "umoci",
        "openssl",
        "htpasswd",
        "curl",
    ] {
        if !have(t) {
            return Some(format!("{t} not installed (scripts/deps.sh)"));
        }
    }
    None
}

/// A TCP port free on 127.0.0.1 just now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `docker-registry` process this test started (killed by PID on drop).
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// CA certificate when serving TLS.
    pub ca: Option<PathBuf>,
    /// Whether it asks for basic auth (USER, PASS).
    pub auth: bool,
}

/// The user of the TLS registry's htpasswd.
pub const USER: &str = "berthuser";
/// Its password.
pub const PASS: &str = "s3cret-pass";

impl Registry {
    /// Plain HTTP without auth, or (`secure`) TLS with basic auth.
    pub fn start(secure: bool) -> Registry {
        Registry::start_with(secure, secure)
    }

    /// `tls` and basic `auth` chosen separately (docker logs in over plain
    /// HTTP to 127.0.0.0/8 with no set-up, so login tests use that).
    pub fn start_with(tls: bool, auth: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}/data\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            d.display()
        );
        let mut ca = None;
        if tls {
            sh(&format!(
                "cd {} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                 -keyout ca.key -out ca.crt -days 2 -subj /CN=berth-test-ca 2>/dev/null && \
                 openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                 -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null && \
                 printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext && \
                 openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                 -out srv.crt -days 2 -extfile ext 2>/dev/null",
                d.display()
            ));
            cfg.push_str(&format!(
                "  tls:\n    certificate: {0}/srv.crt\n    key: {0}/srv.key\n",
                d.display()
            ));
            ca = Some(d.join("ca.crt"));
        }
        if auth {
            sh(&format!(
                "cd {} && htpasswd -Bbn {USER} {PASS} > htpasswd",
                d.display()
            ));
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}/htpasswd\n",
                d.display()
            ));
        }
        std::fs::write(d.join("config.yml"), cfg).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry {
            child,
            port,
            dir,
            ca,
            auth,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// skopeo flags for this registry: `side` is "dest-" for copy
    /// destinations, "" for inspect.
    pub fn skopeo_flags(&self, side: &str) -> String {
        let mut f = format!("--{side}tls-verify=false");
        if self.auth {
            f.push_str(&format!(" --{side}creds {USER}:{PASS}"));
        }
        f
    }

    /// Copies an image into the registry with skopeo.
    pub fn seed(&self, src: &str, repo_tag: &str, extra: &str) {
        sh(&format!(
            "skopeo copy -q {extra} {} {src} docker://{}/{repo_tag}",
            self.skopeo_flags("dest-"),
            self.host()
        ));
    }

    /// `skopeo inspect --raw`.
    pub fn raw_manifest(&self, repo_tag: &str) -> serde_json::Value {
        serde_json::from_str(&sh(&format!(
            "skopeo inspect --raw {} docker://{}/{repo_tag}",
            self.skopeo_flags(""),
            self.host()
        )))
        .unwrap()
    }

    pub fn digest(&self, repo_tag: &str) -> String {
        sh(&format!(
            "skopeo inspect --format '{{{{.Digest}}}}' {} docker://{}/{repo_tag}",
            self.skopeo_flags(""),
            self.host()
        ))
        .trim()
        .to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The registry process this test spawned, by its own handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
