//! Pulling one image into the host cache: manifest (through an index when
//! there is one), config, then the layers concurrently. Each blob streams
//! into a temporary file beside its final place and is renamed only after
//! its size and digest check out, so an interrupted or corrupted pull
//! leaves nothing half-written visible, and a re-run fetches only what is
//! missing.

use super::client::RegistryClient;
use super::manifest::{self, Descriptor, Fetched, ImageManifest, Platform};
use super::RegistryError;
use crate::image_cache::ImageCache;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::sync::Mutex;

/// Parallel layer downloads.
const CONCURRENCY: usize = 3;

/// What a pull brought into the cache.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// Digest of what the reference resolved to (index or manifest): the
    /// digest docker shows as `Digest:` and in RepoDigests.
    pub top_digest: String,
    /// Digest of the single-platform manifest.
    pub manifest_digest: String,
    pub manifest: ImageManifest,
}

/// Per-blob progress callbacks.
pub trait PullProgress: Sync {
    /// A blob is about to be downloaded (`cached` when it is skipped).
    fn start(&self, digest: &str, size: u64, cached: bool);
    fn advance(&self, digest: &str, bytes: u64);
    fn done(&self, digest: &str);
    /// The reference resolved to an image manifest: its layers come next
    /// (docker prints `TAG: Pulling from REPO` here, after the registry
    /// answered).
    fn resolved(&self) {}
}

/// Resolves `reference` (tag or digest) in `repo` to a single-platform
/// manifest and fetches what the cache lacks.
pub fn pull_image(
    client: &RegistryClient,
    repo: &str,
    reference: &str,
    platform: &Platform,
    cache: &ImageCache,
    progress: &dyn PullProgress,
) -> Result<PulledImage, RegistryError> {
    let (fetched, mut body, top_digest) = client.get_manifest(repo, reference)?;
    let mut manifest_digest = top_digest.clone();
    let m = match fetched {
        Fetched::Image(m) => m,
        Fetched::Index(list) => {
            let entry = manifest::select(&list, platform)?;
            let (child, child_body, d) = client.get_manifest(repo, &entry.digest)?;
            if child_body.len() as u64 != entry.size {
                return Err(RegistryError::Invalid(format!(
                    "manifest {} is {} bytes but the index says {}",
                    entry.digest,
                    child_body.len(),
                    entry.size
                )));
            }
            body = child_body;
            manifest_digest = d;
            match child {
                Fetched::Image(m) => m,
                Fetched::Index(_) => {
                    return Err(RegistryError::Unsupported(
                        "an index nested in an index".into(),
                    ))
                }
            }
        }
    };
    progress.resolved();
    // Config first: it is small and tells whether the layers fit.
    let mut blobs: Vec<&Descriptor> = vec![&m.config];
    for l in &m.layers {
        if !blobs.iter().any(|b| b.digest == l.digest) {
            blobs.push(l);
        }
    }
    // An image whose every blob is here already gets no layer lines:
    // dockerd stops as soon as it finds the image's config in its store
    // ("Digest" and "Status" follow at once).
    let whole = blobs.iter().all(|b| cache.has_blob(&b.digest));
    let mut todo = Vec::new();
    for b in blobs {
        let have = cache.has_blob(&b.digest);
        // Progress is about layers, as docker shows it.
        if b.digest != m.config.digest && !whole {
            progress.start(&b.digest, b.size, have);
        }
        if !have {
            todo.push(b.clone());
        }
    }
    if let Some(pos) = todo.iter().position(|b| b.digest == m.config.digest) {
        let cfg = todo.remove(pos);
        download(client, repo, &cfg, cache, progress)?;
    }
    check_config(cache, &m)?;
    let queue = Mutex::new(todo);
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..CONCURRENCY {
            s.spawn(|| loop {
                if first_error.lock().unwrap().is_some() {
                    return;
                }
                let Some(b) = queue.lock().unwrap().pop() else {
                    return;
                };
                if let Err(e) = download(client, repo, &b, cache, progress) {
                    first_error.lock().unwrap().get_or_insert(e);
                    return;
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    // The manifest goes in last, so `push` can send it back unchanged.
    store_bytes(cache, &manifest_digest, &body)?;
    Ok(PulledImage {
        top_digest,
        manifest_digest,
        manifest: m,
    })
}

/// The config must be JSON with one diff_id per layer.
fn check_config(cache: &ImageCache, m: &ImageManifest) -> Result<(), RegistryError> {
    let data = cache
        .read_blob(&m.config.digest)
        .map_err(|e| RegistryError::Io(std::io::Error::other(e.to_string())))?;
    let v: serde_json::Value = serde_json::from_slice(&data)
        .map_err(|e| RegistryError::Invalid(format!("image config is not JSON: {e}")))?;
    let diff_ids = v
        .pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .map(|a| a.len())
        .unwrap_or(0);
    if diff_ids != m.layers.len() {
        return Err(RegistryError::Invalid(format!(
            "image config lists {diff_ids} layers but the manifest has {}",
            m.layers.len()
        )));
    }
    Ok(())
}

fn store_bytes(cache: &ImageCache, digest: &str, data: &[u8]) -> Result<(), RegistryError> {
    if cache.has_blob(digest) {
        return Ok(());
    }
    let tmp = temp(cache, digest)?;
    let r = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    cache.adopt(&tmp, digest).map_err(other)
}

fn other(e: anyhow::Error) -> RegistryError {
    RegistryError::Io(std::io::Error::other(format!("{e:#}")))
}

fn temp(cache: &ImageCache, digest: &str) -> Result<std::path::PathBuf, RegistryError> {
    cache.temp_path(digest).map_err(other)
}

/// Streams one blob into the cache, verifying size and digest.
fn download(
    client: &RegistryClient,
    repo: &str,
    d: &Descriptor,
    cache: &ImageCache,
    progress: &dyn PullProgress,
) -> Result<(), RegistryError> {
    let resp = client.get_blob(repo, &d.digest, d.size)?;
    let tmp = temp(cache, &d.digest)?;
    let result = (|| -> Result<(), RegistryError> {
        let mut f = std::fs::File::create(&tmp)?;
        let mut r = resp.into_reader().take(d.size + 1);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| RegistryError::Transport(format!("downloading {}: {e}", d.digest)))?;
            if n == 0 {
                break;
            }
            got += n as u64;
            if got > d.size {
                return Err(RegistryError::Invalid(format!(
                    "blob {} is larger than the {} bytes its descriptor says",
                    d.digest, d.size
                )));
            }
            h.update(&buf[..n]);
            f.write_all(&buf[..n])?;
            progress.advance(&d.digest, n as u64);
        }
        if got != d.size {
            return Err(RegistryError::Transport(format!(
                "blob {} truncated: got {got} of {} bytes",
                d.digest, d.size
            )));
        }
        let actual = format!("sha256:{}", hex::encode(h.finalize()));
        if actual != d.digest {
            return Err(RegistryError::DigestMismatch {
                digest: d.digest.clone(),
                actual,
            });
        }
        f.sync_all()?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    cache.adopt(&tmp, &d.digest).map_err(other)?;
    if d.media_type != super::manifest::DOCKER_CONFIG && d.media_type != super::manifest::OCI_CONFIG
    {
        progress.done(&d.digest);
    }
    Ok(())
}
