//! `cp`: tar streams out of and into a container's root filesystem.
//!
//! Paths are resolved inside the container root with [`secure_join`], so a
//! symlink the container planted can never lead outside it; entries of an
//! incoming tar are checked one by one the same way.

use super::files::ContainerPaths;
use super::rootfs_path::secure_join;
use super::shim;
use super::Engine;
use crate::engine::Error;
use berth_protocol::ContainerStatus;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Keeps the container's root mounted while a copy runs; unmounts on drop
/// when the container was not running (so it had not been mounted).
struct RootGuard<'a> {
    engine: &'a Engine,
    id: String,
    rootfs: PathBuf,
    mounted_here: bool,
}

impl Drop for RootGuard<'_> {
    fn drop(&mut self) {
        if self.mounted_here && !self.engine.containers.is_running(&self.id) {
            let _ = nix::mount::umount2(&self.rootfs, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn open_root<'a>(engine: &'a Engine, key: &str) -> Result<RootGuard<'a>, Error> {
    let rec = engine.containers.resolve(key)?;
    // A running container is copied through its own view of the files, so
    // volumes, bind mounts and tmpfs mounts are read and written as the
    // container sees them (as docker does).
    if let (ContainerStatus::Running | ContainerStatus::Paused, Some(run)) = {
        let (status, run, _) = engine.containers.status(&rec.id);
        (status, run)
    } {
        let root = PathBuf::from(format!("/proc/{}/root", run.pid));
        if root.join(".").exists() {
            return Ok(RootGuard {
                engine,
                id: rec.id,
                rootfs: root,
                mounted_here: false,
            });
        }
    }
    let paths = ContainerPaths::new(engine.layout(), &rec.id);
    let was = super::fsutil::is_mounted(&paths.rootfs);
    if !was {
        shim::mount_rootfs(engine, &rec, &paths)?;
    }
    Ok(RootGuard {
        engine,
        id: rec.id,
        rootfs: paths.rootfs,
        mounted_here: !was,
    })
}

/// What [`source`] found to send: `path` (a file or a directory tree) in
/// the container, to go out as a tar whose top entry is its base name.
pub struct Source<'a> {
    _root: RootGuard<'a>,
    src: PathBuf,
    name: PathBuf,
    dir: bool,
}

/// Resolves `path` in container `key` for `cp CONTAINER:PATH`; the caller
/// answers `Ready` and then calls [`Source::send`].
pub fn source<'a>(engine: &'a Engine, key: &str, path: &str) -> Result<Source<'a>, Error> {
    let root = open_root(engine, key)?;
    let not_found = || Error::missing(format!("Could not find the file {path} in container {key}"));
    let Ok(src) = secure_join(&root.rootfs, Path::new(path)) else {
        return Err(not_found());
    };
    let Ok(meta) = std::fs::symlink_metadata(&src) else {
        return Err(not_found());
    };
    let name = Path::new(path)
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Source {
        _root: root,
        src,
        name,
        dir: meta.is_dir(),
    })
}

impl Source<'_> {
    /// Writes the tar to `w` (symlinks as links, never followed).
    pub fn send(self, w: &mut dyn Write) -> std::io::Result<()> {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        if self.dir {
            b.append_dir_all(&self.name, &self.src)?;
        } else {
            b.append_path_with_name(&self.src, &self.name)?;
        }
        b.finish()
    }
}

/// Cleans a tar entry name into relative components; refuses `..` and
/// anything absolute.
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

/// Where [`target`] will extract a tar: `path` in the container, into it
/// when it is a directory, else as that name (the tar's top entry renamed).
pub struct Target<'a> {
    root: RootGuard<'a>,
    base: PathBuf,
    rename: Option<PathBuf>,
    build: bool,
}

/// Resolves `path` in container `key` for `cp SRC CONTAINER:PATH`; the
/// caller answers `Ready` and then calls [`Target::receive`].
///
/// In `build` mode (`COPY`/`ADD`) files get the owner in their headers and
/// directories that already exist keep their mode and owner.
pub fn target<'a>(
    engine: &'a Engine,
    key: &str,
    path: &str,
    build: bool,
) -> Result<Target<'a>, Error> {
    let root = open_root(engine, key)?;
    let dest = secure_join(&root.rootfs, Path::new(path)).map_err(Error::malformed)?;
    let (base, rename) = if dest.is_dir() {
        (dest, None)
    } else if path.ends_with('/') && !build {
        // `cp FILE ctr:/dir/` where /dir is not a directory (docker's
        // ErrDirNotExists); the CLI strips the slash for a directory source.
        return Err(Error::invalid("no such directory"));
    } else {
        match (dest.parent(), dest.file_name()) {
            (Some(p), Some(n)) if p.is_dir() => (p.to_path_buf(), Some(PathBuf::from(n))),
            _ => {
                return Err(Error::missing(format!(
                    "Could not find the file {path} in container {key}"
                )))
            }
        }
    };
    Ok(Target {
        root,
        base,
        rename,
        build,
    })
}

impl Target<'_> {
    /// Reads a tar from `r` and extracts it; every entry is checked.
    pub fn receive(self, r: &mut dyn Read) -> Result<(), Error> {
        extract(
            r,
            &self.root.rootfs,
            &self.base,
            self.rename.as_deref(),
            self.build,
        )
    }
}

fn extract(
    r: &mut dyn Read,
    rootfs: &Path,
    base: &Path,
    rename: Option<&Path>,
    build: bool,
) -> Result<(), Error> {
    let mut ar = tar::Archive::new(r);
    let entries = ar.entries().map_err(Error::malformed)?;
    // A tar of a directory's contents (`cp dir/. ctr:/new`) starts with
    // `.`: renaming then puts every entry below the new name.
    let mut contents = None;
    let rename_to = |rel: &Path, contents: bool, new: &Path| {
        if contents {
            new.join(rel)
        } else {
            renamed(rel, new)
        }
    };
    for entry in entries {
        let mut entry = entry.map_err(|source| Error::MalformedIn {
            context: "reading archive".into(),
            source: source.into(),
        })?;
        let raw = entry.path().map_err(Error::malformed)?.into_owned();
        let Some(mut rel) = clean(&raw) else {
            return Err(Error::invalid(format!(
                "refusing archive entry {}",
                raw.display()
            )));
        };
        let contents = *contents
            .get_or_insert(rel.as_os_str().is_empty() && entry.header().entry_type().is_dir());
        if let Some(new) = rename {
            rel = rename_to(&rel, contents, new);
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        // Resolve inside the container root: the parent may be a symlink
        // the container made.
        let inner = base
            .strip_prefix(rootfs)
            .map(|b| Path::new("/").join(b).join(&rel))
            .map_err(|_| Error::invalid("destination outside container"))?;
        let parent_inner = inner.parent().unwrap_or(Path::new("/"));
        let parent = secure_join(rootfs, parent_inner).map_err(Error::malformed)?;
        std::fs::create_dir_all(&parent).map_err(Error::malformed)?;
        let target = parent.join(inner.file_name().unwrap_or_default());
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let owner = build.then(|| {
            (
                entry.header().uid().unwrap_or(0) as u32,
                entry.header().gid().unwrap_or(0) as u32,
            )
        });
        let io = |source: std::io::Error| Error::MalformedIn {
            context: inner.display().to_string(),
            source: source.into(),
        };
        let chown = |p: &Path| -> Result<(), Error> {
            if let Some((u, g)) = owner {
                std::os::unix::fs::lchown(p, Some(u), Some(g)).map_err(io)?;
            }
            Ok(())
        };
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                if !target.is_dir() {
                    let _ = std::fs::remove_file(&target);
                    std::fs::create_dir(&target).map_err(io)?;
                } else if build {
                    continue;
                }
                set_mode(&target, mode).map_err(io)?;
                chown(&target)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if std::fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
                    std::fs::remove_file(&target).map_err(io)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(io)?;
                std::io::copy(&mut entry, &mut f).map_err(io)?;
                set_mode(&target, mode).map_err(io)?;
                chown(&target)?;
                if build {
                    if let Ok(t) = entry.header().mtime() {
                        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
                        let _ = f.set_modified(t);
                    }
                }
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(Error::malformed)?
                    .ok_or_else(|| Error::invalid("symlink without target"))?;
                if std::fs::symlink_metadata(&target).is_ok() {
                    std::fs::remove_file(&target).map_err(io)?;
                }
                std::os::unix::fs::symlink(&link, &target).map_err(io)?;
                chown(&target)?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(Error::malformed)?
                    .ok_or_else(|| Error::invalid("hard link without target"))?;
                let Some(mut lrel) = clean(&link) else {
                    return Err(Error::invalid(format!(
                        "refusing hard link to {}",
                        link.display()
                    )));
                };
                if let Some(new) = rename {
                    lrel = rename_to(&lrel, contents, new);
                }
                let linner = base
                    .strip_prefix(rootfs)
                    .map(|b| Path::new("/").join(b).join(&lrel))
                    .map_err(|_| Error::invalid("link outside container"))?;
                let src = secure_join(rootfs, &linner).map_err(Error::malformed)?;
                if std::fs::symlink_metadata(&src).is_ok_and(|m| m.is_file()) {
                    let _ = std::fs::remove_file(&target);
                    std::fs::hard_link(&src, &target).map_err(io)?;
                }
            }
            // Devices and fifos are not copied (as with docker cp as a user).
            _ => {}
        }
    }
    Ok(())
}

/// Replaces the first component of `rel` with `new`.
fn renamed(rel: &Path, new: &Path) -> PathBuf {
    let mut comps = rel.components();
    comps.next();
    let rest = comps.as_path();
    if rest.as_os_str().is_empty() {
        new.to_path_buf()
    } else {
        new.join(rest)
    }
}

fn set_mode(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}
