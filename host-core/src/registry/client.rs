//! HTTP plumbing for one registry: scheme and TLS selection, the token
//! dance, and error bodies turned into messages.

use super::auth::{parse_challenges, Challenge, CredentialStore, Credentials};
use super::manifest::{self, sha256_digest, valid_digest, Fetched, ACCEPT_MANIFESTS, MAX_MANIFEST};
use super::RegistryError;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

/// Where `docker.io` references are served from.
const DOCKER_HUB: &str = "registry-1.docker.io";
const MAX_ERROR_BODY: u64 = 64 * 1024;
const MAX_TOKEN_BODY: u64 = 1024 * 1024;

/// A request body.
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Stream(&'a mut dyn Read, u64),
}

/// A connection to one registry, authorised for a set of scopes.
pub struct RegistryClient {
    agent: ureq::Agent,
    /// `https://host[:port]` or `http://…`.
    base: String,
    /// The registry's name in references and in the credential store.
    pub domain: String,
    creds: Option<Credentials>,
    authorization: Mutex<Option<String>>,
    scopes: Vec<String>,
}

fn host_of(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host_port
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(host_port)
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// Whether requests to `host[:port]` go through the proxy named by
/// `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`: not for loopback, nor for hosts
/// matching `NO_PROXY` (comma list of hosts, `.domain` suffixes, `*`).
fn use_env_proxy(host_port: &str) -> bool {
    let host = host_of(host_port);
    if is_loopback(host) {
        return false;
    }
    let no_proxy = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .unwrap_or_default();
    !no_proxy.split(',').map(str::trim).any(|e| {
        let bare = e.trim_start_matches('.');
        e == "*"
            || (!bare.is_empty()
                && (host == bare || host.ends_with(&format!(".{bare}")) || host_port == e))
    })
}

/// Whether plain HTTP may be used for `host[:port]`.
pub fn plain_http_allowed(host_port: &str) -> bool {
    let host = host_of(host_port);
    if is_loopback(host) {
        return true;
    }
    crate::env::text(crate::env::INSECURE_REGISTRIES)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .any(|r| !r.is_empty() && (r == host_port || r == host))
}

#[cfg(feature = "tls")]
fn tls_config(host_port: &str) -> Result<std::sync::Arc<rustls::ClientConfig>, RegistryError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    let mut files = Vec::new();
    if let Some(p) = crate::env::os(crate::env::REGISTRY_CA).filter(|p| !p.is_empty()) {
        files.push(std::path::PathBuf::from(p));
    }
    let per_host = crate::paths::state_dir()
        .join("certs.d")
        .join(host_port)
        .join("ca.crt");
    if per_host.is_file() {
        files.push(per_host);
    }
    for f in files {
        let data = std::fs::read(&f).map_err(|e| {
            RegistryError::Transport(format!("reading CA file {}: {e}", f.display()))
        })?;
        let mut n = 0;
        for c in rustls_pemfile::certs(&mut data.as_slice()) {
            let c =
                c.map_err(|e| RegistryError::Transport(format!("CA file {}: {e}", f.display())))?;
            roots
                .add(c)
                .map_err(|e| RegistryError::Transport(format!("CA file {}: {e}", f.display())))?;
            n += 1;
        }
        if n == 0 {
            return Err(RegistryError::Transport(format!(
                "CA file {} holds no PEM certificate",
                f.display()
            )));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Transport(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(cfg))
}

fn transport(e: ureq::Transport, url: &str) -> RegistryError {
    // ureq names the URL itself when it knows it.
    let msg = e.to_string();
    if msg.contains(url) {
        RegistryError::Transport(msg)
    } else {
        RegistryError::Transport(format!("{url}: {msg}"))
    }
}

/// Reads a registry error body into a short message.
fn error_message(resp: ureq::Response) -> String {
    let status = resp.status();
    let mut body = Vec::new();
    let _ = resp
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let errs = v.get("errors")?.as_array()?;
            let parts: Vec<String> = errs
                .iter()
                .take(4)
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    format!("{code}: {msg}")
                })
                .collect();
            Some(parts.join("; "))
        })
        .unwrap_or_default();
    let detail: String = detail
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    }
}

/// A 404's first registry error as docker prints it: the code's words,
/// then the registry's message (`manifest unknown: manifest unknown`).
fn not_found_detail(resp: ureq::Response) -> String {
    let mut body = Vec::new();
    let _ = resp
        .into_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut body);
    let first = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("errors")?.as_array()?.first().cloned());
    let field = |k: &str| {
        first
            .as_ref()
            .and_then(|e| e.get(k)?.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let (code, message) = (field("code"), field("message"));
    // The distribution spec's descriptions of its codes, as docker's
    // errcode package words them.
    let words = match code.as_str() {
        "" => return "manifest unknown".into(),
        "NAME_UNKNOWN" => "repository name not known to registry".to_string(),
        "TAG_INVALID" => "manifest tag did not match URI".to_string(),
        other => other.to_ascii_lowercase().replace('_', " "),
    };
    let text = if message.is_empty() {
        words
    } else {
        format!("{words}: {message}")
    };
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

/// The HTTP agent berth speaks to `host` (`host[:port]`) with: the extra
/// CA certificates, the proxy settings, timeouts, same-host redirects.
pub(crate) fn http_agent(host: &str) -> Result<ureq::Agent, RegistryError> {
    let builder = ureq::AgentBuilder::new();
    #[cfg(feature = "tls")]
    let builder = builder.tls_config(tls_config(host)?);
    Ok(builder
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(60))
        .timeout_write(Duration::from_secs(60))
        .redirects(5)
        .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
        .try_proxy_from_env(use_env_proxy(host))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build())
}

impl RegistryClient {
    /// Connects to the registry of `domain` and authorises `scopes`
    /// (`repository:<path>:pull[,push]`).
    pub fn connect(domain: &str, scopes: Vec<String>) -> Result<RegistryClient, RegistryError> {
        let creds = CredentialStore::open().get(domain)?;
        Self::connect_with(domain, scopes, creds)
    }

    /// Like [`connect`](Self::connect) with explicit credentials.
    pub fn connect_with(
        domain: &str,
        scopes: Vec<String>,
        creds: Option<Credentials>,
    ) -> Result<RegistryClient, RegistryError> {
        let host = if domain == "docker.io" {
            DOCKER_HUB
        } else {
            domain
        };
        let agent = http_agent(host)?;
        let mut c = RegistryClient {
            agent,
            base: format!("https://{host}"),
            domain: domain.to_string(),
            creds,
            authorization: Mutex::new(None),
            scopes,
        };
        let ping = match c.raw("GET", "/v2/", &[], Body::Empty, None) {
            Ok(r) => r,
            Err(RegistryError::Transport(tls_err)) if plain_http_allowed(host) => {
                c.base = format!("http://{host}");
                let fail = |e: String| {
                    RegistryError::Transport(format!(
                        "cannot reach registry {domain} over HTTPS ({tls_err}) or HTTP ({e})"
                    ))
                };
                let r = c
                    .raw("GET", "/v2/", &[], Body::Empty, None)
                    .map_err(|e| fail(e.to_string()))?;
                if !matches!(r.status(), 200..=299 | 401) {
                    return Err(fail(format!("HTTP {}", r.status())));
                }
                r
            }
            Err(e) => return Err(e),
        };
        match ping.status() {
            200..=299 => {
                // Open registry; send basic credentials anyway if we have
                // them (some proxies want them without a challenge).
            }
            401 => {
                let header = ping.header("www-authenticate").unwrap_or("").to_string();
                c.authorise(&header)?;
            }
            404 => {
                return Err(RegistryError::Status(format!(
                    "{domain} does not serve the registry API v2 (/v2/ answered 404)"
                )))
            }
            _ => {
                return Err(RegistryError::Status(format!(
                    "registry {domain}: {}",
                    error_message(ping)
                )))
            }
        }
        Ok(c)
    }

    /// Checks that the current authorisation is accepted (`GET /v2/`).
    pub fn verify(&self) -> Result<(), RegistryError> {
        let resp = self.send("GET", "/v2/", &[], Body::Empty)?;
        match resp.status() {
            200..=299 => Ok(()),
            401 | 403 => Err(RegistryError::Auth(format!(
                "{}: unauthorized: incorrect username or password",
                self.domain
            ))),
            _ => self.check(resp, "/v2/").map(|_| ()),
        }
    }

    /// Answers a `WWW-Authenticate` challenge for this client's scopes.
    fn authorise(&self, header: &str) -> Result<(), RegistryError> {
        let challenges = parse_challenges(header);
        let domain = &self.domain;
        if let Some(Challenge::Bearer {
            realm,
            service,
            scope,
        }) = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }))
            .cloned()
        {
            let token = self.fetch_token(&realm, service.as_deref(), scope.as_deref())?;
            *self.authorization.lock().unwrap() = Some(format!("Bearer {token}"));
            return Ok(());
        }
        if challenges.contains(&Challenge::Basic) {
            let Some(c) = &self.creds else {
                return Err(RegistryError::Auth(format!(
                    "{domain} requires authentication: run `berth login {domain}`"
                )));
            };
            *self.authorization.lock().unwrap() = Some(c.basic_header());
            return Ok(());
        }
        Err(RegistryError::Auth(format!(
            "{domain} requires an authentication scheme berth does not support ({:?})",
            header.chars().take(100).collect::<String>()
        )))
    }

    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        extra_scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let realm_host = realm
            .strip_prefix("https://")
            .or_else(|| realm.strip_prefix("http://"))
            .map(|r| r.split(['/', '?']).next().unwrap_or(""));
        let Some(realm_host) = realm_host.filter(|h| !h.is_empty()) else {
            return Err(RegistryError::Auth(format!(
                "token realm {realm:?} is not an http(s) URL"
            )));
        };
        if realm.starts_with("http://") && !plain_http_allowed(realm_host) {
            return Err(RegistryError::Auth(format!(
                "refusing to send credentials to plain-HTTP token realm {realm}"
            )));
        }
        let mut req = self.agent.get(realm);
        if let Some(s) = service {
            req = req.query("service", s);
        }
        let mut scopes = self.scopes.clone();
        if let Some(s) = extra_scope {
            if !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_string());
            }
        }
        for s in &scopes {
            req = req.query("scope", s);
        }
        if let Some(c) = &self.creds {
            req = req.set("Authorization", &c.basic_header());
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(401 | 403, _)) => {
                return Err(RegistryError::Auth(format!(
                    "{}: unauthorized (check `berth login {}`)",
                    self.domain, self.domain
                )))
            }
            Err(ureq::Error::Status(_, r)) => {
                return Err(RegistryError::Auth(format!(
                    "token server {realm_host}: {}",
                    error_message(r)
                )))
            }
            Err(ureq::Error::Transport(t)) => return Err(transport(t, realm)),
        };
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_TOKEN_BODY)
            .read_to_end(&mut body)?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Auth(format!("token server sent invalid JSON: {e}")))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty() && t.len() < 64 * 1024)
            .ok_or_else(|| RegistryError::Auth("token server sent no token".into()))?;
        if token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(RegistryError::Auth(
                "token server sent a malformed token".into(),
            ));
        }
        Ok(token.to_string())
    }

    /// Absolute URL for a path or a `Location` header.
    pub fn url(&self, path_or_url: &str) -> Result<String, RegistryError> {
        if path_or_url.starts_with("https://") {
            return Ok(path_or_url.to_string());
        }
        if let Some(rest) = path_or_url.strip_prefix("http://") {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            if !self.base.starts_with("http://") && !plain_http_allowed(host) {
                return Err(RegistryError::Invalid(format!(
                    "registry redirected to plain HTTP URL {path_or_url}"
                )));
            }
            return Ok(path_or_url.to_string());
        }
        if path_or_url.starts_with('/') {
            return Ok(format!("{}{path_or_url}", self.base));
        }
        Ok(format!("{}/{path_or_url}", self.base))
    }

    fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
        auth: Option<&str>,
    ) -> Result<ureq::Response, RegistryError> {
        let url = self.url(path)?;
        let mut req = self.agent.request(method, &url);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        if let Some(a) = auth {
            req = req.set("Authorization", a);
        }
        let result = match body {
            Body::Empty => req.call(),
            Body::Bytes(b) => req.send_bytes(b),
            Body::Stream(r, len) => req.set("Content-Length", &len.to_string()).send(r),
        };
        match result {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(_, r)) => Ok(r),
            Err(ureq::Error::Transport(t)) => Err(transport(t, &url)),
        }
    }

    /// Sends an authorised request; a 401 on a replayable request triggers
    /// one re-authorisation and retry. Any status is returned.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<ureq::Response, RegistryError> {
        let auth = self.authorization.lock().unwrap().clone();
        let replay: Option<Vec<u8>> = match &body {
            Body::Empty => Some(Vec::new()),
            Body::Bytes(b) => Some(b.to_vec()),
            Body::Stream(..) => None,
        };
        let had_body = !matches!(body, Body::Empty);
        let resp = self.raw(method, path, headers, body, auth.as_deref())?;
        if resp.status() != 401 {
            return Ok(resp);
        }
        let Some(data) = replay else {
            return Ok(resp);
        };
        let header = resp.header("www-authenticate").unwrap_or("").to_string();
        self.authorise(&header)?;
        let auth = self.authorization.lock().unwrap().clone();
        let body = if had_body {
            Body::Bytes(&data)
        } else {
            Body::Empty
        };
        self.raw(method, path, headers, body, auth.as_deref())
    }

    /// Turns a non-success response into an error.
    pub fn check(&self, resp: ureq::Response, what: &str) -> Result<ureq::Response, RegistryError> {
        match resp.status() {
            200..=299 => Ok(resp),
            401 | 403 => Err(RegistryError::Auth(format!(
                "{what}: {} (not authorised; try `berth login {}`)",
                error_message(resp),
                self.domain
            ))),
            _ => Err(RegistryError::Status(format!(
                "{what}: {}",
                error_message(resp)
            ))),
        }
    }

    /// GETs a manifest or index by tag or digest. Returns the parsed
    /// content, its raw bytes and its digest (verified when `reference`
    /// is a digest).
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Fetched, Vec<u8>, String), RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let resp = self.send(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", ACCEPT_MANIFESTS)],
            Body::Empty,
        )?;
        if resp.status() == 404 {
            return Err(RegistryError::Status(format!(
                "manifest for {}/{repo}:{reference} not found: {}",
                self.domain,
                not_found_detail(resp)
            )));
        }
        let resp = self.check(resp, &what)?;
        if let Some(len) = resp
            .header("content-length")
            .and_then(|l| l.parse::<u64>().ok())
        {
            if len > MAX_MANIFEST {
                return Err(RegistryError::Invalid(format!(
                    "{what} is larger than 4 MiB"
                )));
            }
        }
        let content_type = resp.header("content-type").map(str::to_string);
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut body)?;
        let actual = sha256_digest(&body);
        if reference.contains(':') {
            if !valid_digest(reference) {
                return Err(RegistryError::Unsupported(format!("digest {reference}")));
            }
            if actual != reference {
                return Err(RegistryError::DigestMismatch {
                    digest: reference.to_string(),
                    actual,
                });
            }
        }
        let parsed = manifest::parse(&body, content_type.as_deref())?;
        Ok((parsed, body, actual))
    }

    /// GETs a blob; the caller streams and verifies it.
    pub fn get_blob(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
    ) -> Result<ureq::Response, RegistryError> {
        let resp = self.send(
            "GET",
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            Body::Empty,
        )?;
        let resp = self.check(resp, &format!("blob {digest}"))?;
        if let Some(len) = resp
            .header("content-length")
            .and_then(|l| l.parse::<u64>().ok())
        {
            if len != size {
                return Err(RegistryError::Invalid(format!(
                    "blob {digest} is {len} bytes but the manifest says {size}"
                )));
            }
        }
        Ok(resp)
    }

    /// Whether the repository has the blob (HEAD).
    pub fn has_blob(&self, repo: &str, digest: &str) -> Result<bool, RegistryError> {
        let resp = self.send(
            "HEAD",
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            Body::Empty,
        )?;
        match resp.status() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => self
                .check(resp, &format!("checking blob {digest}"))
                .map(|_| false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback() {
        for ok in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(plain_http_allowed(ok), "{ok}");
        }
        for no in [
            "docker.io",
            "example.com:5000",
            "128.0.0.1:80",
            "localhost.evil.com",
        ] {
            assert!(!plain_http_allowed(no), "{no}");
        }
        assert!(!use_env_proxy("127.0.0.1:5000"));
        assert!(!use_env_proxy("localhost:5000"));
    }

    #[test]
    fn insecure_registries_from_env() {
        // Only this test sets the variable.
        std::env::set_var(
            "BERTH_INSECURE_REGISTRIES",
            " myreg.example:5000 ,other.example",
        );
        assert!(plain_http_allowed("myreg.example:5000"));
        assert!(!plain_http_allowed("myreg.example:5001"));
        assert!(plain_http_allowed("other.example:443"));
        assert!(!plain_http_allowed("example"));
        std::env::remove_var("BERTH_INSECURE_REGISTRIES");
    }
}
