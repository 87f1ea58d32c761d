//! Registry authentication: parsing `WWW-Authenticate` challenges (from an
//! untrusted server, so defensively) and the credential store that `berth
//! login` writes (`$BERTH_HOME/auth.json`, mode 0600).

use super::RegistryError;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `WWW-Authenticate`. Unknown schemes are skipped; a malformed
/// header yields no challenge rather than a panic.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    if header.len() > 8192 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        // scheme token
        let end = rest
            .find(|c: char| c.is_whitespace() || c == ',')
            .unwrap_or(rest.len());
        let scheme = rest[..end].to_ascii_lowercase();
        rest = rest[end..].trim_start_matches([' ', '\t', ',']);
        let mut params = BTreeMap::new();
        // auth-params: key=value or key="quoted", comma separated
        while let Some(eq) = rest.find('=') {
            let key = &rest[..eq];
            if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == ',' || c == '"') {
                break; // next token is a new scheme
            }
            let key = key.to_ascii_lowercase();
            let after = &rest[eq + 1..];
            let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
                let mut v = String::new();
                let mut chars = q.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                v.push(n);
                            }
                        }
                        '"' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => v.push(c),
                    }
                }
                match end {
                    Some(e) => (v, &q[e..]),
                    None => (v, ""),
                }
            } else {
                let e = after.find(',').unwrap_or(after.len());
                (after[..e].trim().to_string(), &after[e..])
            };
            params.insert(key, value);
            rest = remaining.trim_start_matches([' ', '\t', ',']);
        }
        match scheme.as_str() {
            "basic" => out.push(Challenge::Basic),
            "bearer" => {
                if let Some(realm) = params.remove("realm").filter(|r| !r.is_empty()) {
                    out.push(Challenge::Bearer {
                        realm,
                        service: params.remove("service"),
                        scope: params.remove("scope"),
                    });
                }
            }
            _ => {}
        }
        if scheme.is_empty() {
            break;
        }
    }
    out
}

/// The key credentials are kept under for a registry the user names:
/// `https://host:port/v1/` or `host:port` → `host:port` (lowercase);
/// Docker Hub's aliases and no name at all → `docker.io`.
pub fn registry_key(server: Option<&str>) -> Result<String, RegistryError> {
    let s = server.unwrap_or("docker.io").trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or("");
    if host.is_empty()
        || host.len() > 255
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return Err(RegistryError::Address(s.to_string()));
    }
    Ok(match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        h => h.to_ascii_lowercase(),
    })
}

/// A username and password (or identity token as password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    /// The `Authorization: Basic …` value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Serialize, Deserialize)]
struct AuthEntry {
    auth: String,
}

/// Credentials saved by `berth login`, keyed by registry host[:port].
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    pub fn open() -> CredentialStore {
        CredentialStore {
            path: crate::paths::state_dir().join("auth.json"),
        }
    }

    /// The file the credentials are kept in.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn load(&self) -> Result<AuthFile, RegistryError> {
        match std::fs::read(&self.path) {
            Ok(d) => serde_json::from_slice(&d).map_err(|e| {
                RegistryError::Credentials(format!("{} is corrupt: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AuthFile::default()),
            Err(e) => Err(RegistryError::Credentials(format!(
                "reading {}: {e}",
                self.path.display()
            ))),
        }
    }

    fn save(&self, f: &AuthFile) -> Result<(), RegistryError> {
        let err = |e: std::io::Error| {
            RegistryError::Credentials(format!("writing {}: {e}", self.path.display()))
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        // Owner-only: it holds passwords and tokens. (Windows: the per-user
        // profile directory's ACL.)
        #[cfg(unix)]
        opts.mode(0o600);
        let mut file = opts.open(&tmp).map_err(err)?;
        let data =
            serde_json::to_vec_pretty(f).map_err(|e| RegistryError::Credentials(e.to_string()))?;
        file.write_all(&data).map_err(err)?;
        file.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        Ok(())
    }

    /// Credentials for `registry`, if any were saved.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let f = self.load()?;
        let Some(e) = f.auths.get(registry) else {
            return Ok(None);
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(e.auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                RegistryError::Credentials(format!("saved credentials for {registry} are corrupt"))
            })?;
        let (u, p) = raw.split_once(':').ok_or_else(|| {
            RegistryError::Credentials(format!("saved credentials for {registry} are corrupt"))
        })?;
        Ok(Some(Credentials {
            username: u.into(),
            password: p.into(),
        }))
    }

    pub fn set(&self, registry: &str, c: &Credentials) -> Result<(), RegistryError> {
        let mut f = self.load()?;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.username, c.password));
        f.auths.insert(registry.into(), AuthEntry { auth });
        self.save(&f)
    }

    /// Removes saved credentials; false when there were none.
    pub fn remove(&self, registry: &str) -> Result<bool, RegistryError> {
        let mut f = self.load()?;
        let had = f.auths.remove(registry).is_some();
        if had {
            self.save(&f)?;
        }
        Ok(had)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic]
        );
        let two = parse_challenges(r#"Basic realm="x", Bearer realm="https://a/t",scope="a,b""#);
        assert_eq!(two.len(), 2);
        assert!(matches!(&two[1], Challenge::Bearer { scope: Some(s), .. } if s == "a,b"));
    }

    #[test]
    fn survives_garbage() {
        for h in [
            "",
            "Bearer",
            "Bearer realm",
            "Bearer realm=\"unterminated",
            "Bearer realm=\"\"",
            "=,=,=",
            "\"\"\"",
            "Negotiate abc==",
            "Bearer realm=\"a\\",
        ] {
            let c = parse_challenges(h);
            assert!(c
                .iter()
                .all(|c| matches!(c, Challenge::Bearer { realm, .. } if !realm.is_empty())));
        }
        assert!(parse_challenges(&"a=".repeat(10000)).is_empty());
    }
}
