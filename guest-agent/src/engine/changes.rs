//! `diff` / `GET /containers/{id}/changes`: what a container changed in its
//! filesystem, read from its overlay upper directory against the image's
//! layers, the way docker reports it:
//! - a whiteout (a 0/0 character device) is a deletion (`D`);
//! - an opaque directory that a layer also has was deleted and made again
//!   (`D`, and what it holds now is added);
//! - anything a layer also has is changed (`C`), except a directory whose
//!   type and mode are the same (it is in the upper directory only because
//!   something below it changed);
//! - anything else is added (`A`);
//! - the directory holding an addition or a deletion is changed, once.
//!
//! The mount points the engine itself makes (`/etc/hosts`, …) are not the
//! user's changes while they are still empty. Directories are compared
//! without their times: the engine's mount points change `/etc`'s.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_protocol::{ChangeKind, FileChange};

use super::fsutil::overlay_opaque as opaque;

/// The most entries one report lists; a bigger upper directory is cut
/// there (the walk is bounded whatever a container wrote).
pub const MAX_CHANGES: usize = 1_000_000;

/// The changes in `upper` (a container's overlay upper directory) over the
/// image layers `lowers` (topmost first), in docker's order: each
/// directory's entries by name, a directory before what it holds.
/// `engine_files` are paths (relative, as `etc/hosts`) the engine creates.
pub fn changes(
    upper: &Path,
    lowers: &[PathBuf],
    engine_files: &[&str],
) -> std::io::Result<Vec<FileChange>> {
    let mut out = Vec::new();
    let mut changed_dirs = HashSet::new();
    walk(
        upper,
        Path::new(""),
        lowers,
        engine_files,
        &mut changed_dirs,
        &mut out,
    )?;
    Ok(out)
}

fn walk(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    engine_files: &[&str],
    changed_dirs: &mut HashSet<PathBuf>,
    out: &mut Vec<FileChange>,
) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(upper.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort_by(|a, b| {
        use std::os::unix::ffi::OsStrExt;
        a.as_bytes().cmp(b.as_bytes())
    });
    for name in names {
        if out.len() >= MAX_CHANGES {
            return Ok(());
        }
        let path = rel.join(&name);
        let full = upper.join(&path);
        let meta = std::fs::symlink_metadata(&full)?;
        let ft = meta.file_type();
        if ft.is_file() && meta.len() == 0 && engine_files.iter().any(|f| Path::new(f) == path) {
            continue;
        }
        let in_lower = lowers.iter().find_map(|l| lower_meta(l, &path));
        let whiteout = ft.is_char_device() && meta.rdev() == 0;
        let remade = ft.is_dir() && in_lower.is_some() && opaque(&full);
        let kind = if whiteout || remade {
            ChangeKind::Deleted
        } else {
            match &in_lower {
                None => ChangeKind::Added,
                Some(l) if l.is_dir() && ft.is_dir() && l.mode() == meta.mode() => {
                    // Unchanged itself; what it holds may be.
                    walk(upper, &path, lowers, engine_files, changed_dirs, out)?;
                    continue;
                }
                Some(_) => ChangeKind::Modified,
            }
        };
        if ft.is_dir() {
            changed_dirs.insert(path.clone());
        }
        if matches!(kind, ChangeKind::Added | ChangeKind::Deleted) {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                if changed_dirs.insert(parent.to_path_buf()) {
                    out.push(change(parent, ChangeKind::Modified));
                }
            }
        }
        out.push(change(&path, kind));
        if ft.is_dir() {
            walk(upper, &path, lowers, engine_files, changed_dirs, out)?;
        }
    }
    Ok(())
}

fn change(rel: &Path, kind: ChangeKind) -> FileChange {
    FileChange {
        path: format!("/{}", rel.to_string_lossy()),
        kind,
    }
}

/// `rel`'s metadata in the layer `layer`, without following a symbolic
/// link anywhere on the way (a layer's links point into the container, not
/// into this machine's tree).
fn lower_meta(layer: &Path, rel: &Path) -> Option<std::fs::Metadata> {
    let mut at = layer.to_path_buf();
    let mut comps = rel.components().peekable();
    while let Some(c) = comps.next() {
        at.push(c);
        let m = std::fs::symlink_metadata(&at).ok()?;
        if comps.peek().is_none() {
            return Some(m);
        }
        if !m.is_dir() {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(v: &[FileChange]) -> Vec<String> {
        v.iter()
            .map(|c| format!("{} {}", c.kind.letter(), c.path))
            .collect()
    }

    #[test]
    fn reports_as_docker_does() {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        let upper = t.path().join("upper");
        for d in ["bin", "etc", "tmp", "usr/lib"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
        }
        std::fs::write(lower.join("bin/ls"), b"x").unwrap();
        std::fs::write(lower.join("etc/passwd"), b"root").unwrap();
        // A link in the image pointing out of it: not followed.
        std::os::unix::fs::symlink("/", lower.join("host")).unwrap();

        for d in ["bin", "etc", "tmp/a", "host"] {
            std::fs::create_dir_all(upper.join(d)).unwrap();
        }
        // Keep the modes of the copied-up directories.
        for d in ["bin", "etc", "tmp"] {
            let m = std::fs::metadata(lower.join(d)).unwrap().permissions();
            std::fs::set_permissions(upper.join(d), m).unwrap();
        }
        std::fs::write(upper.join("etc/passwd"), b"root\nx").unwrap();
        std::fs::write(upper.join("etc/hosts"), b"").unwrap();
        std::fs::write(upper.join("tmp/a/f"), b"hi").unwrap();
        std::fs::write(upper.join("x"), b"").unwrap();
        std::fs::write(upper.join("host/etc"), b"").unwrap();
        let dev = std::ffi::CString::new(upper.join("bin/ls").to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; mknod writes nothing into memory.
        let rc = unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        if rc != 0 {
            println!("SKIPPED: mknod needs root");
            return;
        }

        let got = changes(&upper, &[lower], &["etc/hosts"]).unwrap();
        assert_eq!(
            kinds(&got),
            [
                "C /bin",
                "D /bin/ls",
                "C /etc/passwd",
                // `host` is a link in the image and a directory here.
                "C /host",
                "A /host/etc",
                "C /tmp",
                "A /tmp/a",
                "A /tmp/a/f",
                "A /x",
            ]
        );
    }

    #[test]
    fn a_filled_engine_file_is_a_change() {
        let t = tempfile::tempdir().unwrap();
        let upper = t.path().join("upper");
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/hosts"), b"mine").unwrap();
        let got = changes(&upper, &[], &["etc/hosts"]).unwrap();
        assert_eq!(kinds(&got), ["A /etc", "A /etc/hosts"]);
    }
}
