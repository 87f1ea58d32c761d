//! Moving images in and out of the host cache: `save` (an archive docker,
//! skopeo and berth load), `load` (docker-save and OCI archives) and `push`
//! (to a registry). The `berth` CLI and the Engine API server both call
//! these; they only print or stream what the callbacks report.

pub mod load;
pub mod push;
pub mod save;

use crate::image_cache::ImageCache;
use crate::placement::Isolation;
use anyhow::{bail, Context, Result};

/// Finds an image's host-cache record by any name the agent knows it by
/// (tags live in the agent), falling back to the cache's own tags. An error
/// says whether the image is missing or only its blobs are (images made
/// inside the agent, e.g. by `commit`, never pass through the host cache).
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
