//! A pull: an image from a registry into the host cache and, when the
//! placement has an engine, into the engine.

use super::fetch::{pull_image, PullProgress};
use super::manifest::Platform;
use super::RegistryClient;
use crate::engine::Engine;
use crate::image_cache::ImageCache;
use anyhow::Result;
use berth_protocol::reference::Reference;
use berth_protocol::{ImageCommit, ImageOrigin, LayerRef};

/// What a pull recorded.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image as the cache (and the engine) recorded it.
    pub commit: ImageCommit,
    /// The digest the reference resolved to (an index's, for a
    /// multi-platform image).
    pub top_digest: String,
    /// The image the reference named in the cache before the pull.
    pub before: Option<String>,
}

/// Pulls `r` for `platform` into the host cache; with `upload`, hands it
/// to the engine that connects (the agent verifies it before the cache
/// records it).
pub fn pull(
    r: &Reference,
    platform: &Platform,
    progress: &dyn PullProgress,
    upload: Option<&dyn Fn() -> Result<Engine>>,
) -> Result<Pulled> {
    let reference = r
        .digest
        .clone()
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    // The registry's errors as they are, as docker prints them.
    let client = RegistryClient::connect(&r.domain, vec![format!("repository:{}:pull", r.path)])?;
    let cache = ImageCache::open()?;
    cache.remove_stale_temps();
    // "Image is up to date" when the name already meant this image: the
    // engine's view when there is one (an `rmi` there leaves the host
    // cache's record of the tag), else the cache's.
    let before = match upload {
        Some(connect) => connect()
            .ok()
            .and_then(|mut e| e.image_inspect(&r.to_string()).ok())
            .map(|i| i.id),
        None => cache.resolve(&r.to_string()).map(|c| c.config_digest),
    };
    let pulled = pull_image(&client, &r.path, &reference, platform, &cache, progress)?;
    let m = &pulled.manifest;
    let tags = match (&r.tag, &r.digest) {
        (Some(_), None) => vec![r.to_string()],
        _ => Vec::new(),
    };
    let commit = ImageCommit {
        config_digest: m.config.digest.clone(),
        layers: m
            .layers
            .iter()
            .map(|l| LayerRef {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
            })
            .collect(),
        tags,
        manifest_digest: Some(pulled.manifest_digest.clone()),
        origin: None,
    };
    if let Some(connect) = upload {
        cache.upload(&commit.with_origin(pull_origin(r)), connect)?;
    }
    cache.record(&commit)?;
    cache.add_repo_digest(
        &commit.config_digest,
        &format!("{}@{}", r.repository(), pulled.top_digest),
    )?;
    Ok(Pulled {
        commit,
        top_digest: pulled.top_digest,
        before,
    })
}

/// docker's `pull` event names what the daemon was asked for: the digest
/// when the reference has one (a tag beside it is dropped, as docker's
/// CLI sends only the digest), else the tag.
fn pull_origin(r: &Reference) -> ImageOrigin {
    let name = r.familiar_name();
    let reference = match (&r.digest, &r.tag) {
        (Some(d), _) => format!("{name}@{d}"),
        (None, Some(t)) => format!("{name}:{t}"),
        (None, None) => name.clone(),
    };
    ImageOrigin::Pull { reference, name }
}
