//! `berth import`: a filesystem tarball becomes an image
//! ([`berth_host::transfer::import`]).

use crate::placement::Isolation;
use anyhow::Result;
use berth_host::transfer::import::{import, is_url, open_url, ImportOptions};
use std::io::Read;

#[derive(clap::Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change", value_name = "CHANGE")]
    changes: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    platform: Option<String>,
    /// A tarball file, an http(s) URL, or - for STDIN
    #[arg(value_name = "file|URL|-")]
    source: String,
    /// The name of the new image
    #[arg(value_name = "REPOSITORY[:TAG]")]
    reference: Option<String>,
}

pub fn run(iso: Isolation, a: &ImportArgs) -> Result<i32> {
    let mut opts = ImportOptions {
        source: "-".into(),
        message: a.message.clone(),
        changes: a.changes.clone(),
        reference: a.reference.clone(),
        platform: a.platform.clone(),
    };
    // docker's CLI checks the name and the changes' words before reading.
    if let Some(r) = &a.reference {
        berth_protocol::reference::Reference::parse(r)?;
    }
    let mut src: Box<dyn Read> = if a.source == "-" {
        Box::new(std::io::stdin().lock())
    } else if is_url(&a.source) {
        opts.source = a.source.clone();
        println!("Downloading from {}", a.source);
        match open_url(&a.source) {
            Ok((r, _)) => r,
            Err(e) => {
                eprintln!("Error response from daemon: {e:#}");
                return Ok(1);
            }
        }
    } else {
        match std::fs::File::open(&a.source) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("open {}: {}", a.source, crate::fmt::io_error(&e));
                return Ok(1);
            }
        }
    };
    match import(iso, &mut src, &opts) {
        Ok(commit) => {
            println!("{}", commit.config_digest);
            Ok(0)
        }
        // Where docker's daemon refuses, its CLI says so.
        Err(e) => {
            eprintln!("Error response from daemon: {e:#}");
            Ok(1)
        }
    }
}
