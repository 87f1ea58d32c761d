//! Pushing content: blobs the registry lacks (after a HEAD, or a
//! cross-repository mount), monolithic uploads for ordinary blobs and
//! chunked PATCH uploads for big ones, then the manifest.

use super::client::{Body, RegistryClient};
use super::manifest::Descriptor;
use super::RegistryError;
use std::io::Read;
use std::path::Path;

/// Blobs above this size go up in PATCH chunks of this size.
pub const CHUNK: u64 = 32 * 1024 * 1024;

/// The chunk size: [`CHUNK`], or `BERTH_REGISTRY_CHUNK_SIZE` bytes (at
/// least 64 KiB; for tests of the chunked path).
fn chunk_size() -> u64 {
    crate::env::parse::<u64>(crate::env::REGISTRY_CHUNK_SIZE)
        .map(|v| v.max(64 * 1024))
        .unwrap_or(CHUNK)
}

/// How a blob reached the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    AlreadyExists,
    Mounted(String),
    Pushed,
}

fn encode_digest(d: &str) -> String {
    d.replace(':', "%3A")
}

fn with_query(url: &str, q: &str) -> String {
    if url.contains('?') {
        format!("{url}&{q}")
    } else {
        format!("{url}?{q}")
    }
}

fn location(client: &RegistryClient, resp: &ureq::Response) -> Result<String, RegistryError> {
    let loc = resp
        .header("location")
        .filter(|l| !l.is_empty() && l.len() < 8192)
        .ok_or_else(|| RegistryError::Invalid("upload response has no Location".into()))?;
    client.url(loc)
}

/// Makes sure the registry's `repo` has blob `d`, whose bytes are in `path`.
/// `mount_from` names another repository of the same registry that has it.
pub fn push_blob(
    client: &RegistryClient,
    repo: &str,
    d: &Descriptor,
    path: &Path,
    mount_from: Option<&str>,
) -> Result<BlobOutcome, RegistryError> {
    if client.has_blob(repo, &d.digest)? {
        return Ok(BlobOutcome::AlreadyExists);
    }
    let start = match mount_from {
        Some(from) => format!(
            "/v2/{repo}/blobs/uploads/?mount={}&from={from}",
            encode_digest(&d.digest)
        ),
        None => format!("/v2/{repo}/blobs/uploads/"),
    };
    let resp = client.send("POST", &start, &[("Content-Length", "0")], Body::Empty)?;
    if resp.status() == 201 && mount_from.is_some() {
        return Ok(BlobOutcome::Mounted(
            mount_from.unwrap_or_default().to_string(),
        ));
    }
    let resp = client.check(resp, &format!("starting upload of {}", d.digest))?;
    let mut loc = location(client, &resp)?;
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size != d.size {
        return Err(RegistryError::Invalid(format!(
            "cached blob {} is {size} bytes, expected {}",
            d.digest, d.size
        )));
    }
    let octet = ("Content-Type", "application/octet-stream");
    let chunk = chunk_size();
    if size <= chunk {
        let url = with_query(&loc, &format!("digest={}", encode_digest(&d.digest)));
        let resp = client.send("PUT", &url, &[octet], Body::Stream(&mut file, size))?;
        client.check(resp, &format!("uploading {}", d.digest))?;
        return Ok(BlobOutcome::Pushed);
    }
    let mut offset = 0u64;
    while offset < size {
        let n = chunk.min(size - offset);
        let range = format!("{}-{}", offset, offset + n - 1);
        let mut part = (&mut file).take(n);
        let resp = client.send(
            "PATCH",
            &loc,
            &[octet, ("Content-Range", &range)],
            Body::Stream(&mut part, n),
        )?;
        let resp = client.check(resp, &format!("uploading {} ({range})", d.digest))?;
        loc = location(client, &resp)?;
        offset += n;
    }
    let url = with_query(&loc, &format!("digest={}", encode_digest(&d.digest)));
    let resp = client.send("PUT", &url, &[("Content-Length", "0")], Body::Empty)?;
    client.check(resp, &format!("finishing upload of {}", d.digest))?;
    Ok(BlobOutcome::Pushed)
}

/// PUTs a manifest under `tag`; returns the digest the registry reports
/// (which must be the content's).
pub fn put_manifest(
    client: &RegistryClient,
    repo: &str,
    tag: &str,
    media_type: &str,
    body: &[u8],
) -> Result<String, RegistryError> {
    let resp = client.send(
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", media_type)],
        Body::Bytes(body),
    )?;
    let resp = client.check(resp, &format!("pushing manifest {repo}:{tag}"))?;
    let ours = super::manifest::sha256_digest(body);
    if let Some(theirs) = resp.header("docker-content-digest") {
        if theirs != ours {
            return Err(RegistryError::DigestMismatch {
                digest: ours,
                actual: theirs.chars().take(100).collect(),
            });
        }
    }
    Ok(ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_urls() {
        assert_eq!(
            with_query("/v2/a/blobs/uploads/x", "digest=1"),
            "/v2/a/blobs/uploads/x?digest=1"
        );
        assert_eq!(
            with_query("http://h/u?_state=abc", "digest=1"),
            "http://h/u?_state=abc&digest=1"
        );
        assert_eq!(encode_digest("sha256:ab"), "sha256%3Aab");
    }
}
