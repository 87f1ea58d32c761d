//! `berth cp`: copies files and directory trees between a container and
//! the host, with docker's rules — copying onto an existing directory puts
//! the source inside it, onto a new name creates that name, and a source
//! ending in `/.` copies the directory's contents. `-` reads or writes a
//! tar stream on stdin/stdout.

use crate::commands::connect;
use crate::placement::Isolation;
use anyhow::{bail, Context, Result};
use berth_protocol::frame::read_frame;
use berth_protocol::{ErrorKind, ResponseEnvelope};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

#[derive(clap::Args)]
pub struct CpArgs {
    /// Source: CONTAINER:SRC_PATH, a host path, or - (tar on stdin)
    src: String,
    /// Destination: CONTAINER:DEST_PATH, a host path, or - (tar on stdout)
    dest: String,
}

/// `CONTAINER:PATH` → (container, path); host paths (also `./a:b`) → None.
fn split(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

pub fn run(iso: Isolation, a: &CpArgs) -> Result<i32> {
    match (split(&a.src), split(&a.dest)) {
        (Some(_), Some(_)) => {
            eprintln!("copying between containers is not supported");
            Ok(1)
        }
        (None, None) => {
            eprintln!("must specify at least one container source");
            Ok(1)
        }
        (Some((c, p)), None) => from_container(iso, c, p, &a.dest),
        (None, Some((c, p))) => to_container(iso, &a.src, c, p),
    }
}

fn clean(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn from_container(iso: Isolation, container: &str, path: &str, dest: &str) -> Result<i32> {
    if path.is_empty() {
        eprintln!("no source path given");
        return Ok(1);
    }
    let contents = path.ends_with("/.");
    let mut stream = match connect(iso)?.copy_from(container, path) {
        Ok(s) => s,
        // docker's CLI words a missing container and a missing path alike.
        Err(e) if e.kind() == Some(ErrorKind::NotFound) => {
            eprintln!("Error: No such container:path: {container}:{path}");
            return Ok(1);
        }
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            return Ok(1);
        }
    };
    if dest == "-" {
        let mut out = std::io::stdout().lock();
        std::io::copy(&mut stream, &mut out)?;
        out.flush()?;
        return Ok(0);
    }
    let asserts_dir = dest.ends_with('/') || dest.ends_with("/.");
    let dest = Path::new(dest);
    let mut ar = tar::Archive::new(&mut stream);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    let mut entries = ar.entries()?.peekable();
    let src_is_dir = matches!(entries.peek(), Some(Ok(e)) if e.header().entry_type().is_dir());
    // Where entries go and whether the top entry is renamed or dropped.
    let (base, rename, strip) = if contents {
        std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
        (dest.to_path_buf(), None, true)
    } else if dest.is_dir() {
        (dest.to_path_buf(), None, false)
    } else if asserts_dir && !src_is_dir {
        // A file cannot become a directory (docker's ErrDirNotExists).
        eprintln!("no such directory");
        return Ok(1);
    } else {
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            eprintln!(
                "invalid output path: directory \"{}\" does not exist",
                parent.display()
            );
            return Ok(1);
        }
        let name = dest
            .file_name()
            .context("destination has no file name")?
            .to_owned();
        (parent.to_path_buf(), Some(PathBuf::from(name)), false)
    };
    let base_real = base.canonicalize()?;
    for entry in entries {
        let mut entry = entry.context("reading the archive from the container")?;
        let raw = entry.path()?.into_owned();
        let Some(rel) = clean(&raw) else {
            bail!("refusing archive entry {}", raw.display());
        };
        let mut comps = rel.components();
        let first = comps.next();
        let rest = comps.as_path().to_path_buf();
        let rel = match (&rename, strip, first) {
            (_, true, _) => rest,
            (Some(n), _, Some(_)) if rest.as_os_str().is_empty() => n.clone(),
            (Some(n), _, Some(_)) => n.join(rest),
            _ => rel,
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = base.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
            // A symlink from the archive must not lead the next entries out.
            if !parent.canonicalize()?.starts_with(&base_real) {
                bail!(
                    "refusing archive entry {} (leaves the destination)",
                    raw.display()
                );
            }
        }
        if entry.header().entry_type().is_dir() && target.is_dir() {
            continue;
        }
        entry
            .unpack(&target)
            .with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(0)
}

fn to_container(iso: Isolation, src: &str, container: &str, path: &str) -> Result<i32> {
    if path.is_empty() {
        eprintln!("no destination path given");
        return Ok(1);
    }
    let src_meta = if src == "-" {
        None
    } else {
        match std::fs::symlink_metadata(src) {
            Ok(m) => Some(m),
            Err(_) => {
                eprintln!("lstat {src}: no such file or directory");
                return Ok(1);
            }
        }
    };
    // A trailing `/` asks for a directory: a directory source creates it,
    // a file source needs it to exist (the agent checks).
    let mut path = path;
    if src_meta.as_ref().is_some_and(|m| m.is_dir()) {
        let trimmed = path.trim_end_matches('/');
        path = if trimmed.is_empty() { "/" } else { trimmed };
    }
    let stream = match connect(iso)?.copy_to(container, path, false) {
        Ok(s) => s,
        // docker's CLI names the directory it extracts into.
        Err(e) if e.kind() == Some(ErrorKind::NotFound) => {
            let p = Path::new(path.trim_end_matches('/'));
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("/"));
            eprintln!(
                "Error: No such container:path: {container}:{}",
                dir.display()
            );
            return Ok(1);
        }
        // Found out by the agent, reported by docker's CLI.
        Err(e) if e.to_string() == "no such directory" => {
            eprintln!("{e}");
            return Ok(1);
        }
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            return Ok(1);
        }
    };
    let mut w = stream.try_clone()?;
    let sent: Result<()> = (|| {
        if src == "-" {
            std::io::copy(&mut std::io::stdin().lock(), &mut w)?;
            return Ok(());
        }
        let p = Path::new(src);
        let Some(meta) = &src_meta else {
            bail!("lstat {src}: no such file or directory");
        };
        let mut b = tar::Builder::new(&mut w);
        b.follow_symlinks(false);
        if src.ends_with("/.") {
            b.append_dir_all(".", p)?;
        } else {
            let name = p
                .canonicalize()?
                .file_name()
                .map(PathBuf::from)
                .context("source has no file name")?;
            if meta.is_dir() {
                b.append_dir_all(&name, p)?;
            } else {
                b.append_path_with_name(p, &name)?;
            }
        }
        b.finish()?;
        Ok(())
    })();
    let _ = w.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut r = stream;
    let reply: Result<ResponseEnvelope, _> = read_frame(&mut r);
    if let Err(e) = sent {
        eprintln!("{e:#}");
        return Ok(1);
    }
    match reply {
        Ok(env) => match env.result {
            Ok(_) => Ok(0),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                Ok(1)
            }
        },
        Err(e) => bail!("copy failed: {e}"),
    }
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
    /// The container
    container: String,
}

/// `berth export`: the container's filesystem as one tar, as `docker
/// export` writes it (the engine's copy of `/`). A file is written under a
/// temporary name and renamed when complete.
pub fn export(iso: Isolation, a: &ExportArgs) -> Result<i32> {
    use std::io::IsTerminal;
    if a.output.is_none() && std::io::stdout().is_terminal() {
        anyhow::bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let mut tar = connect(iso)?.copy_from(&a.container, "/")?;
    let Some(out) = &a.output else {
        let mut stdout = std::io::stdout().lock();
        std::io::copy(&mut tar, &mut stdout)?;
        return Ok(0);
    };
    crate::out_file::write_atomically(out, |w| {
        std::io::copy(&mut tar, w)?;
        Ok(())
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn container_paths() {
        assert_eq!(split("web:/etc"), Some(("web", "/etc")));
        assert_eq!(split("/tmp/a:b"), None);
        assert_eq!(split("./x:y"), None);
        assert_eq!(split("-"), None);
        assert_eq!(split("dir/a:b"), None);
    }
}
