//! `berth load`: imports docker-save and OCI archives.

use crate::archive::Archive;
use crate::commands::connect;
use crate::image_cache::ImageCache;
use crate::placement::Isolation;
use anyhow::{Context, Result};
use berth_protocol::reference::Reference;
use berth_protocol::{ImageCommit, LayerRef};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(iso: Isolation, a: &LoadArgs) -> Result<i32> {
    // Archives are read with random access: spool stdin to a file first,
    // decompressing a gzip stream on the way.
    let spool_dir = tempdir()?;
    let path = match &a.input {
        Some(p) if !is_gzip(p)? => p.clone(),
        other => {
            let spooled = spool_dir.join("archive.tar");
            let mut src: Box<dyn Read> = match other {
                Some(p) => Box::new(
                    std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?,
                ),
                None => {
                    if std::io::stdin().is_terminal() {
                        anyhow::bail!("requested load from stdin, but stdin is empty");
                    }
                    Box::new(std::io::stdin().lock())
                }
            };
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
            spooled
        }
    };
    let result = load_path(iso, &path, a.quiet);
    let _ = std::fs::remove_dir_all(&spool_dir);
    result
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

fn is_gzip(p: &PathBuf) -> Result<bool> {
    let mut f = std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?;
    let mut h = [0u8; 2];
    Ok(read_full(&mut f, &mut h)? == 2 && h == [0x1f, 0x8b])
}

fn tempdir() -> Result<PathBuf> {
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

fn load_path(iso: Isolation, path: &std::path::Path, quiet: bool) -> Result<i32> {
    let mut ar = Archive::open(path).with_context(|| format!("loading {}", path.display()))?;
    let images = ar.images()?;
    if images.is_empty() {
        anyhow::bail!("the archive contains no images");
    }
    let cache = ImageCache::open()?;
    let progress = !quiet && std::io::stderr().is_terminal();
    for img in images {
        let tags: Vec<String> = img
            .tags
            .iter()
            .map(|t| Reference::parse(t).map(|r| r.to_string()))
            .collect::<Result<_, _>>()
            .context("archive has an invalid image name")?;
        // Every blob lands in the host cache first (verified), so any
        // placement can be fed from it later.
        for b in std::iter::once(&img.config).chain(img.layers.iter()) {
            if cache.has_blob(&b.digest) {
                continue;
            }
            if progress {
                eprint!(
                    "\r{}: Loading layer {} ",
                    &b.digest[7..19],
                    crate::fmt::human_size(b.size)
                );
                let _ = std::io::stderr().flush();
            }
            let mut r = ar.blob_reader(b)?;
            cache.put_blob(&b.digest, b.size, &mut r)?;
        }
        if progress {
            eprintln!();
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
        };
        if iso.has_engine() {
            // The agent verifies the config and layers before the host
            // cache records the image.
            cache.upload(&commit, &|| connect(iso))?;
        }
        cache.record(&commit)?;
        if !quiet {
            if tags.is_empty() {
                println!("Loaded image ID: {}", img.config.digest);
            }
            for t in &tags {
                println!("Loaded image: {}", Reference::parse(t)?.familiar());
            }
        }
    }
    Ok(0)
}
