//! `search`: repositories of a registry whose names hold a term.
//!
//! A term naming a registry (`localhost:5000/busy`, `registry.example/x`)
//! searches that registry's catalog (`GET /v2/_catalog`, followed page by
//! page), which docker-registry and most self-hosted registries serve; a
//! match is a repository whose name contains the rest of the term, case
//! folded. dockerd asks such registries the v1 search API instead, which
//! none of them serves. A bare term (`busybox`) goes to Docker Hub's
//! search, as docker's does. A catalog has no descriptions, stars or
//! official marks: those fields stay empty.

use super::client::Body;
use super::{RegistryClient, RegistryError};
use serde::Deserialize;

/// Repositories one catalog page asks for.
const PAGE: usize = 1000;
/// Catalog pages followed at most (a hostile registry cannot keep us
/// reading for ever).
const MAX_PAGES: usize = 100;
/// The most hits one search returns, as docker caps `--limit`.
pub const MAX_LIMIT: usize = 100;
/// docker's default `--limit`.
pub const DEFAULT_LIMIT: usize = 25;

/// One search result, in the Engine API's `ImageSearchResponseItem` terms.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SearchHit {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub star_count: u64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub is_automated: bool,
}

/// docker's search filters: `is-official=BOOL`, `is-automated=BOOL`,
/// `stars=N` (at least N stars).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SearchFilters {
    pub official: Option<bool>,
    pub automated: Option<bool>,
    pub stars: u64,
}

impl SearchFilters {
    /// Adds the filter `key=value`; false when it is not one docker takes.
    pub fn add(&mut self, key: &str, value: &str) -> bool {
        let flag = match value {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        match (key, flag) {
            ("is-official", Some(b)) => self.official = Some(b),
            ("is-automated", Some(b)) => self.automated = Some(b),
            ("stars", _) => match value.parse() {
                Ok(n) => self.stars = n,
                Err(_) => return false,
            },
            _ => return false,
        }
        true
    }

    /// Whether `hit` passes every filter.
    pub fn keeps(&self, hit: &SearchHit) -> bool {
        self.official.is_none_or(|o| hit.is_official == o)
            && self.automated.is_none_or(|a| hit.is_automated == a)
            && hit.star_count >= self.stars
    }
}

/// Where a term is searched: the registry's domain and the text.
pub fn split_term(term: &str) -> Result<(String, String), RegistryError> {
    let term = term.trim();
    if term.is_empty() || term.len() > 1024 || term.chars().any(char::is_control) {
        return Err(RegistryError::Term(term.to_string()));
    }
    match term.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            Ok((super::auth::registry_key(Some(host))?, rest.to_string()))
        }
        _ => Ok(("docker.io".into(), term.to_string())),
    }
}

/// Searches for `term`, at most `limit` hits (1 to [`MAX_LIMIT`]).
pub fn search(term: &str, limit: usize) -> Result<Vec<SearchHit>, RegistryError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let (domain, text) = split_term(term)?;
    if domain == "docker.io" {
        return hub_search(&text, limit);
    }
    let client = RegistryClient::connect(&domain, vec!["registry:catalog:*".into()])?;
    let needle = text.to_lowercase();
    let mut hits = Vec::new();
    let mut next = Some(format!("/v2/_catalog?n={PAGE}"));
    for _ in 0..MAX_PAGES {
        let Some(path) = next.take() else { break };
        let resp = client.send("GET", &path, &[], Body::Empty)?;
        let resp = client.check(resp, &format!("searching {domain}"))?;
        next = resp.header("link").and_then(next_link);
        let page: Catalog =
            serde_json::from_reader(std::io::Read::take(resp.into_reader(), 16 << 20))
                .map_err(|e| RegistryError::Invalid(format!("catalog of {domain}: {e}")))?;
        for repo in page.repositories {
            if repo.to_lowercase().contains(&needle) {
                hits.push(SearchHit {
                    name: format!("{domain}/{repo}"),
                    description: String::new(),
                    star_count: 0,
                    is_official: false,
                    is_automated: false,
                });
                if hits.len() == limit {
                    return Ok(hits);
                }
            }
        }
    }
    Ok(hits)
}

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Vec<String>,
}

/// The path of a `Link: </v2/_catalog?last=x&n=1000>; rel="next"` header;
/// only a path on the same registry is followed.
fn next_link(header: &str) -> Option<String> {
    let (target, params) = header.split_once(';')?;
    if !params.contains("rel=\"next\"") {
        return None;
    }
    let path = target.trim().strip_prefix('<')?.strip_suffix('>')?;
    path.starts_with("/v2/_catalog?").then(|| path.to_string())
}

/// Docker Hub's search API (`index.docker.io/v1/search`).
fn hub_search(text: &str, limit: usize) -> Result<Vec<SearchHit>, RegistryError> {
    #[derive(Deserialize)]
    struct Results {
        #[serde(default)]
        results: Vec<SearchHit>,
    }
    let q: String = url_encode(text);
    let agent = super::client::http_agent("index.docker.io")?;
    let url = format!("https://index.docker.io/v1/search?q={q}&n={limit}");
    let resp = agent
        .get(&url)
        .call()
        .map_err(|e| RegistryError::Transport(format!("searching Docker Hub: {e}")))?;
    let r: Results = serde_json::from_reader(std::io::Read::take(resp.into_reader(), 16 << 20))
        .map_err(|e| RegistryError::Invalid(format!("Docker Hub search: {e}")))?;
    Ok(r.results.into_iter().take(limit).collect())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_name_their_registry() {
        assert_eq!(
            split_term("localhost:5000/busy").unwrap(),
            ("localhost:5000".into(), "busy".into())
        );
        assert_eq!(
            split_term("Reg.Example/a/b").unwrap(),
            ("reg.example".into(), "a/b".into())
        );
        assert_eq!(
            split_term("busybox").unwrap(),
            ("docker.io".into(), "busybox".into())
        );
        assert_eq!(
            split_term("library/busybox").unwrap(),
            ("docker.io".into(), "library/busybox".into())
        );
        assert!(split_term("").is_err());
        assert!(split_term("a\nb").is_err());
        assert!(split_term("bad!.host/x").is_err());
    }

    #[test]
    fn only_catalog_pages_of_the_same_registry_are_followed() {
        assert_eq!(
            next_link("</v2/_catalog?last=b&n=1000>; rel=\"next\"").as_deref(),
            Some("/v2/_catalog?last=b&n=1000")
        );
        assert_eq!(
            next_link("<https://evil/v2/_catalog?x>; rel=\"next\""),
            None
        );
        assert_eq!(next_link("</v2/_catalog?last=b>; rel=\"prev\""), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn filters_as_docker_takes_them() {
        let mut f = SearchFilters::default();
        assert!(f.add("stars", "3") && f.add("is-official", "true"));
        assert!(!f.add("stars", "x") && !f.add("is-automated", "yes") && !f.add("nope", "1"));
        let hit = SearchHit {
            name: "r/a".into(),
            description: String::new(),
            star_count: 5,
            is_official: true,
            is_automated: false,
        };
        assert!(f.keeps(&hit));
        f.stars = 6;
        assert!(!f.keeps(&hit));
    }

    #[test]
    fn terms_are_encoded_for_the_hub() {
        assert_eq!(url_encode("a b/c&d"), "a%20b%2Fc%26d");
    }
}
