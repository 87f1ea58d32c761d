//! `berth load`: imports docker-save and OCI archives
//! ([`berth_host::transfer::load`]).

use crate::placement::Isolation;
use anyhow::{Context, Result};
use berth_host::transfer::load::{is_gzip, load_archive, spool, tempdir, LoadEvent};
use berth_protocol::reference::Reference;
use std::io::{IsTerminal, Write};
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
    let spool_dir = tempdir()?;
    let result = (|| -> Result<i32> {
        let path = match &a.input {
            Some(p) if !is_gzip(p)? => p.clone(),
            Some(p) => spool(
                std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?,
                &spool_dir,
            )?,
            None => {
                if std::io::stdin().is_terminal() {
                    anyhow::bail!("requested load from stdin, but stdin is empty");
                }
                spool(std::io::stdin().lock(), &spool_dir)?
            }
        };
        load(iso, &path, a.quiet)
    })();
    let _ = std::fs::remove_dir_all(&spool_dir);
    result
}

fn load(iso: Isolation, path: &std::path::Path, quiet: bool) -> Result<i32> {
    let progress = !quiet && std::io::stderr().is_terminal();
    let mut mid_line = false;
    let mut out: Result<()> = Ok(());
    load_archive(iso, path, &mut |ev| match ev {
        LoadEvent::Layer { digest, size } if progress => {
            eprint!(
                "\r{}: Loading layer {} ",
                &digest[7..19.min(digest.len())],
                crate::fmt::human_size(size)
            );
            let _ = std::io::stderr().flush();
            mid_line = true;
        }
        LoadEvent::Layer { .. } => {}
        LoadEvent::Image { id, tags } => {
            if mid_line {
                eprintln!();
                mid_line = false;
            }
            if quiet {
                return;
            }
            if tags.is_empty() {
                println!("Loaded image ID: {id}");
            }
            for t in tags {
                match Reference::parse(t) {
                    Ok(r) => println!("Loaded image: {}", r.familiar()),
                    Err(e) => out = Err(e.into()),
                }
            }
        }
    })?;
    out?;
    Ok(0)
}
