//! Moving images in and out of the host cache: `save` (an archive docker,
//! skopeo and berth load), `load` (docker-save and OCI archives) and `push`
//! (to a registry). The `berth` CLI and the Engine API server both call
//! these; they only print or stream what the callbacks report.

pub mod import;
pub mod load;
pub mod push;
pub mod save;

use crate::image_cache::ImageCache;
use crate::placement::Isolation;
use crate::registry::manifest::{self, Descriptor, Fetched, DOCKER_CONFIG, OCI_CONFIG};
use anyhow::{bail, Context, Result};

/// Finds an image's host-cache record by any name the agent knows it by
/// (tags live in the agent), falling back to the cache's own tags. An error
/// says whether the image is missing or only its blobs are (images made
/// inside the agent, e.g. by `commit`, never pass through the host cache).
/// docker's event for an image verb done here from the host cache, in
/// the engine's log when the placement has an engine (events never fail
/// the verb).
pub(crate) fn log_image_event(
    iso: Isolation,
    action: berth_protocol::ImageEventAction,
    reference: &str,
    name: &str,
) {
    if !iso.has_engine() {
        return;
    }
    if let Ok(mut c) = iso.connect() {
        if let Err(e) = c.image_event(action, reference, name) {
            log::debug!("logging the image {} event: {e}", action.as_str());
        }
    }
}

pub fn resolve_local(
    iso: Isolation,
    cache: &ImageCache,
    name: &str,
) -> Result<berth_protocol::ImageCommit> {
    if iso.has_engine() {
        if let Ok(mut c) = iso.connect() {
            // The agent owns tags: a name it does not know is not an image,
            // whatever the cache still remembers.
            return match c.image_inspect(name) {
                Ok(img) => match cache.resolve(&img.id) {
                    Some(c) => Ok(c),
                    // Made in the engine (build, commit): copy it out first.
                    None => cache
                        .import_from_engine(&img, &|| iso.connect())
                        .with_context(|| format!("reading image {name} from the engine")),
                },
                _ => bail!("An image does not exist locally with the tag: {name}"),
            };
        }
    }
    cache
        .resolve(name)
        .with_context(|| format!("An image does not exist locally with the tag: {name}"))
}

/// The manifest of a cached image, with the blobs it names (layers, then
/// the config), for `push` and `save`: the one it was pulled or loaded
/// with when cached, else one assembled from its record.
pub(crate) fn manifest_for(
    cache: &ImageCache,
    commit: &berth_protocol::ImageCommit,
) -> Result<(String, Vec<u8>, Vec<Descriptor>)> {
    if let Some(md) = &commit.manifest_digest {
        if cache.has_blob(md) {
            let body = cache.read_blob(md)?;
            if let Fetched::Image(m) = manifest::parse(&body, None)? {
                if m.config.digest == commit.config_digest
                    && m.layers.len() == commit.layers.len()
                    && m.layers
                        .iter()
                        .zip(&commit.layers)
                        .all(|(a, b)| a.digest == b.digest)
                {
                    let mut blobs = m.layers.clone();
                    blobs.push(m.config.clone());
                    return Ok((m.media_type, body, blobs));
                }
            }
        }
    }
    let config_size = std::fs::metadata(cache.blob_path(&commit.config_digest)?)
        .with_context(|| {
            format!(
                "the config {} of this image is not in the host cache; pull or load the image again",
                commit.config_digest
            )
        })?
        .len();
    let layers: Vec<Descriptor> = commit
        .layers
        .iter()
        .map(|l| Descriptor {
            media_type: l.media_type.clone(),
            digest: l.digest.clone(),
            size: l.size,
            platform: None,
            urls: None,
        })
        .collect();
    let docker = layers
        .iter()
        .all(|l| l.media_type.starts_with("application/vnd.docker."));
    let config = Descriptor {
        media_type: if docker { DOCKER_CONFIG } else { OCI_CONFIG }.into(),
        digest: commit.config_digest.clone(),
        size: config_size,
        platform: None,
        urls: None,
    };
    let (mt, body) = manifest::synthesize(&config, &layers);
    let mut blobs = layers;
    blobs.push(config);
    Ok((mt, body, blobs))
}
