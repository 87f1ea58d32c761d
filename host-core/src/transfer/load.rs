//! Importing docker-save and OCI archives into the host cache and, where
//! the placement has an engine, into the engine.

use crate::archive::Archive;
use crate::image_cache::ImageCache;
use crate::placement::Isolation;
use anyhow::{Context, Result};
use berth_protocol::reference::Reference;
use berth_protocol::{ImageCommit, ImageOrigin, LayerRef};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a load reports as it goes.
pub enum LoadEvent<'a> {
    /// A blob not yet in the cache is being copied in.
    Layer { digest: &'a str, size: u64 },
    /// An image was loaded: its id and its names (full references).
    Image { id: &'a str, tags: &'a [String] },
}

/// Copies an archive stream to `dir/archive.tar` (archives are read with
/// random access), decompressing a gzip stream on the way.
pub fn spool(mut src: impl Read, dir: &Path) -> Result<PathBuf> {
    let spooled = dir.join("archive.tar");
    let mut head = [0u8; 2];
    let n = read_full(&mut src, &mut head)?;
    let chained = std::io::Cursor::new(head[..n].to_vec()).chain(src);
    let mut reader: Box<dyn Read> = if n == 2 && head == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(chained))
    } else {
        Box::new(chained)
    };
    let mut out = std::fs::File::create(&spooled)?;
    std::io::copy(&mut reader, &mut out).context("reading archive")?;
    Ok(spooled)
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = r.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Whether the file at `p` starts with gzip's magic.
pub fn is_gzip(p: &Path) -> Result<bool> {
    let mut f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
    let mut h = [0u8; 2];
    Ok(read_full(&mut f, &mut h)? == 2 && h == [0x1f, 0x8b])
}

/// A private temporary directory for a spooled archive; the caller removes it.
pub fn tempdir() -> Result<PathBuf> {
    let base = std::env::temp_dir().join(format!(
        "berth-load-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}

/// Loads every image of the (uncompressed) archive at `path`. Every blob
/// lands in the host cache first, verified, so any placement can be fed
/// from it later; the engine verifies the config and layers again before
/// the cache records the image.
pub fn load_archive(
    iso: Isolation,
    path: &Path,
    on: &mut dyn FnMut(LoadEvent<'_>),
) -> Result<Vec<ImageCommit>> {
    let mut ar = Archive::open(path).with_context(|| format!("loading {}", path.display()))?;
    let images = ar.images()?;
    if images.is_empty() {
        anyhow::bail!("the archive contains no images");
    }
    let cache = ImageCache::open()?;
    let mut loaded = Vec::new();
    for img in images {
        let tags: Vec<String> = img
            .tags
            .iter()
            .map(|t| Reference::parse(t).map(|r| r.to_string()))
            .collect::<Result<_, _>>()
            .context("archive has an invalid image name")?;
        for b in std::iter::once(&img.config).chain(img.layers.iter()) {
            if cache.has_blob(&b.digest) {
                continue;
            }
            on(LoadEvent::Layer {
                digest: &b.digest,
                size: b.size,
            });
            let mut r = ar.blob_reader(b)?;
            cache.put_blob(&b.digest, b.size, &mut r)?;
        }
        // Keep the image's manifest too, so `push` and `save` can send it
        // back unchanged.
        if let Some(md) = &img.manifest_digest {
            if !cache.has_blob(md) {
                let data = ar.read_oci_blob(md)?;
                cache.put_blob(md, data.len() as u64, &mut data.as_slice())?;
            }
        }
        let commit = ImageCommit {
            config_digest: img.config.digest.clone(),
            layers: img
                .layers
                .iter()
                .map(|l| LayerRef {
                    digest: l.digest.clone(),
                    media_type: l.media_type.clone(),
                    size: l.size,
                })
                .collect(),
            tags: tags.clone(),
            manifest_digest: img.manifest_digest.clone(),
            origin: None,
        };
        if iso.has_engine() {
            cache.upload(&commit.with_origin(ImageOrigin::Load), &|| iso.connect())?;
        }
        cache.record(&commit)?;
        on(LoadEvent::Image {
            id: &commit.config_digest,
            tags: &commit.tags,
        });
        loaded.push(commit);
    }
    Ok(loaded)
}
