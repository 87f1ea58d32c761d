//! `berth save`: write images from the host cache as an archive
//! ([`berth_host::transfer::save`]). The default format is docker-save's
//! (manifest.json) laid out over OCI blobs (index.json, oci-layout), which
//! `docker load`, `skopeo` and `berth load` all read; `--format oci` writes
//! a plain OCI image layout.

use crate::image_cache::ImageCache;
use anyhow::{bail, Result};
use berth_host::transfer::save::{collect, log_saved, write_archive, SaveFormat};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Archive format: docker (default) or oci
    #[arg(long, default_value = "docker")]
    format: String,
    /// Images to save
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(iso: crate::placement::Isolation, a: &SaveArgs) -> Result<i32> {
    let format = SaveFormat::parse(&a.format)?;
    let cache = ImageCache::open()?;
    let entries = collect(iso, &cache, &a.images)?;
    // A file is written under a temporary name and renamed when complete,
    // so a failed save never leaves a truncated archive under the name.
    let Some(out) = &a.output else {
        if std::io::stdout().is_terminal() {
            bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
        }
        let sink = std::io::BufWriter::new(std::io::stdout().lock());
        write_archive(&cache, &entries, format, sink)?;
        log_saved(iso, &entries);
        return Ok(0);
    };
    crate::out_file::write_atomically(out, |w| write_archive(&cache, &entries, format, w))?;
    log_saved(iso, &entries);
    Ok(0)
}
