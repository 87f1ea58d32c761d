//! Applies one layer tar to an empty snapshot directory, in the form
//! overlayfs expects of a lower layer: `.wh.NAME` whiteouts become 0:0
//! character devices, `.wh..wh..opq` marks its directory opaque with the
//! `trusted.overlay.opaque` xattr.
//!
//! Layers are untrusted. Every entry path is normalised and must stay inside
//! the snapshot: `..` components, absolute paths, and paths or hard-link
//! targets that pass through a symlink are refused. The caller unpacks into
//! a fresh temporary directory and only renames it into the store on
//! success, so a refused layer leaves nothing behind.

use sha2::{Digest, Sha256};
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Errors applying a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {0:?} escapes the layer root (contains '..')")]
    DotDot(String),
    #[error("layer entry {0:?} is an absolute path")]
    Absolute(String),
    #[error("layer entry {entry:?} passes through symlink {via:?}")]
    ThroughSymlink { entry: String, via: String },
    #[error("layer entry {entry:?}: parent {parent:?} is not a directory")]
    ParentNotDir { entry: String, parent: String },
    #[error("hard link {entry:?} points to {target:?}, which is not in this layer")]
    BadLinkTarget { entry: String, target: String },
    #[error("layer entry {0:?} has an unsupported type")]
    Unsupported(String),
    #[error("layer entry {0:?} has an empty or invalid name")]
    BadName(String),
    #[error("layer is not a valid tar archive: {0}")]
    Tar(io::Error),
    #[error("unsupported layer compression ({0})")]
    Compression(&'static str),
    #[error("i/o error applying layer at {path:?}: {source}")]
    Io { path: String, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What unpacking produced.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// `sha256:<hex>` of the uncompressed tar (the layer's diff id).
    pub diff_id: String,
    /// Sum of regular file sizes.
    pub size: u64,
}

/// A reader that hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Wraps `r` in a decompressor chosen by magic bytes (gzip or none).
pub fn decompress<'a, R: Read + 'a>(mut r: R) -> Result<Box<dyn Read + 'a>, UnpackError> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut magic[got..]).map_err(UnpackError::Tar)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = io::Cursor::new(magic[..got].to_vec());
    let chained = head.chain(r);
    if got >= 2 && magic[..2] == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(chained)))
    } else if got >= 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Err(UnpackError::Compression("zstd"))
    } else if got >= 3 && magic[..3] == [b'B', b'Z', b'h'] {
        Err(UnpackError::Compression("bzip2"))
    } else {
        Ok(Box::new(chained))
    }
}

/// Normalises a tar entry name into safe relative components.
pub fn clean_path(raw: &[u8]) -> Result<Vec<PathBuf>, UnpackError> {
    let display = String::from_utf8_lossy(raw).into_owned();
    if raw.contains(&0) {
        return Err(UnpackError::BadName(display));
    }
    if raw.first() == Some(&b'/') {
        return Err(UnpackError::Absolute(display));
    }
    let mut parts = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err(UnpackError::DotDot(display)),
            _ => parts.push(PathBuf::from(OsStr::from_bytes(c))),
        }
    }
    Ok(parts)
}

/// What this layer has put at a path so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Made {
    Dir,
    Symlink,
    Other,
}

/// The tree a layer builds, tracked in memory. The snapshot directory starts
/// empty and nothing else writes to it, so every question about what exists
/// (is this ancestor a real directory? is there something to replace?) is
/// answered here instead of by a system call, which matters where system
/// calls are emulated (a guest on kvm_pvm: ~1000x native cost).
struct Tree<'a> {
    root: &'a Path,
    made: std::collections::HashMap<PathBuf, Made>,
}

impl<'a> Tree<'a> {
    fn new(root: &'a Path) -> Result<Tree<'a>, UnpackError> {
        let empty = fs::read_dir(root).map_err(io_err(root))?.next().is_none();
        if !empty {
            return Err(UnpackError::Io {
                path: root.display().to_string(),
                source: io::Error::other("a layer must be applied to an empty directory"),
            });
        }
        Ok(Tree {
            root,
            made: std::collections::HashMap::new(),
        })
    }

    /// Makes sure every ancestor of `parts` exists as a real directory
    /// (creating missing ones) and returns the entry's path relative to the
    /// root.
    fn prepare_parents(&mut self, parts: &[PathBuf], entry: &str) -> Result<PathBuf, UnpackError> {
        let mut rel = PathBuf::new();
        for p in &parts[..parts.len().saturating_sub(1)] {
            rel.push(p);
            match self.made.get(&rel) {
                Some(Made::Dir) => {}
                Some(Made::Symlink) => {
                    return Err(UnpackError::ThroughSymlink {
                        entry: entry.to_string(),
                        via: rel.display().to_string(),
                    })
                }
                Some(Made::Other) => {
                    return Err(UnpackError::ParentNotDir {
                        entry: entry.to_string(),
                        parent: rel.display().to_string(),
                    })
                }
                None => {
                    let cur = self.root.join(&rel);
                    fs::create_dir(&cur).map_err(io_err(&cur))?;
                    fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                        .map_err(io_err(&cur))?;
                    self.made.insert(rel.clone(), Made::Dir);
                }
            }
        }
        if let Some(last) = parts.last() {
            rel.push(last);
        }
        Ok(rel)
    }

    /// Removes whatever is at `rel` unless it is a directory and `keep_dir`.
    fn clear(&mut self, rel: &Path, keep_dir: bool) -> Result<(), UnpackError> {
        let path = self.root.join(rel);
        match self.made.get(rel) {
            None => {}
            Some(Made::Dir) if keep_dir => {}
            Some(Made::Dir) => {
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
                self.made.retain(|k, _| !k.starts_with(rel));
            }
            Some(_) => {
                fs::remove_file(&path).map_err(io_err(&path))?;
                self.made.remove(rel);
            }
        }
        Ok(())
    }

    fn kind(&self, rel: &Path) -> Option<Made> {
        self.made.get(rel).copied()
    }

    fn record(&mut self, rel: PathBuf, kind: Made) {
        self.made.insert(rel, kind);
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths from tar have no NUL")
}

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> Result<(), UnpackError> {
    let c = cstr(path);
    // SAFETY: c is a valid NUL-terminated path; mknod does not retain it.
    let rc = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    if rc != 0 {
        return Err(io_err(path)(io::Error::last_os_error()));
    }
    Ok(())
}

fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c = cstr(path);
    let n = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both strings are NUL-terminated and value is a valid slice.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn lchown(path: &Path, uid: u64, gid: u64) -> Result<(), UnpackError> {
    if uid == 0 && gid == 0 {
        // What the (root) agent creates is root's already.
        return Ok(());
    }
    let c = cstr(path);
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::lchown(c.as_ptr(), uid as libc::uid_t, gid as libc::gid_t) };
    if rc != 0 {
        return Err(io_err(path)(io::Error::last_os_error()));
    }
    Ok(())
}

fn set_mtime(path: &Path, secs: u64) {
    let c = cstr(path);
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: c is NUL-terminated and times points to two timespecs. Failure
    // only loses the timestamp, which is not worth failing a layer for.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}

/// Xattrs a layer may set. `trusted.*` would let a layer forge overlayfs
/// metadata (opaque dirs, redirects), so it is never taken from a tar.
fn xattr_allowed(name: &str) -> bool {
    name.starts_with("user.") || name == "security.capability"
}

/// Applies the layer tar read from `reader` (already decompressed) to the
/// empty directory `root`.
pub fn apply_layer<R: Read>(reader: R, root: &Path) -> Result<Unpacked, UnpackError> {
    let mut hashing = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    let mut size = 0u64;
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    let mut tree = Tree::new(root)?;
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_ignore_zeros(false);
        for entry in archive.entries().map_err(UnpackError::Tar)? {
            let mut entry = entry.map_err(UnpackError::Tar)?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let parts = clean_path(&raw)?;
            if parts.is_empty() {
                // The root itself ("./"): take its mode for the snapshot root.
                if entry.header().entry_type().is_dir() {
                    let mode = entry.header().mode().unwrap_or(0o755);
                    dirs.push((
                        root.to_path_buf(),
                        mode & 0o7777,
                        entry.header().mtime().unwrap_or(0),
                    ));
                }
                continue;
            }
            let base = parts.last().unwrap().as_os_str().as_bytes().to_vec();
            let rel = tree.prepare_parents(&parts, &name)?;
            let target = root.join(&rel);
            // Whiteouts.
            if base == b".wh..wh..opq" {
                let dir = target.parent().unwrap();
                lsetxattr(dir, "trusted.overlay.opaque", b"y").map_err(io_err(dir))?;
                continue;
            }
            if let Some(hidden) = base.strip_prefix(b".wh.") {
                if hidden.is_empty() || hidden == b"." || hidden == b".." {
                    return Err(UnpackError::BadName(name));
                }
                let path = target.with_file_name(OsStr::from_bytes(hidden));
                let hidden_rel = rel.with_file_name(OsStr::from_bytes(hidden));
                tree.clear(&hidden_rel, false)?;
                mknod(&path, libc::S_IFCHR, 0)?;
                tree.record(hidden_rel, Made::Other);
                continue;
            }
            let header = entry.header().clone();
            // Numeric fields that are empty or garbled read as 0, as Go's
            // archive/tar (docker) reads them.
            let mode = header.mode().unwrap_or(0o644) & 0o7777;
            let uid = header.uid().unwrap_or(0);
            let gid = header.gid().unwrap_or(0);
            let mtime = header.mtime().unwrap_or(0);
            let kind = header.entry_type();
            use tar::EntryType as T;
            match kind {
                T::Directory => {
                    tree.clear(&rel, true)?;
                    if tree.kind(&rel) != Some(Made::Dir) {
                        fs::create_dir(&target).map_err(io_err(&target))?;
                        tree.record(rel.clone(), Made::Dir);
                    }
                    lchown(&target, uid, gid)?;
                    dirs.push((target.clone(), mode, mtime));
                }
                T::Regular | T::Continuous => {
                    tree.clear(&rel, false)?;
                    let mut f = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .mode(0o600)
                        .open(&target)
                        .map_err(io_err(&target))?;
                    tree.record(rel.clone(), Made::Other);
                    size += io::copy(&mut entry, &mut f).map_err(io_err(&target))?;
                    // Through the open file: no more path lookups.
                    if uid != 0 || gid != 0 {
                        std::os::unix::fs::fchown(&f, Some(uid as u32), Some(gid as u32))
                            .map_err(io_err(&target))?;
                    }
                    f.set_permissions(fs::Permissions::from_mode(mode))
                        .map_err(io_err(&target))?;
                    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
                    let _ = f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t));
                }
                T::Symlink => {
                    let link = entry
                        .link_name_bytes()
                        .ok_or_else(|| UnpackError::BadName(name.clone()))?
                        .into_owned();
                    tree.clear(&rel, false)?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                        .map_err(io_err(&target))?;
                    tree.record(rel.clone(), Made::Symlink);
                    lchown(&target, uid, gid)?;
                    set_mtime(&target, mtime);
                }
                T::Link => {
                    let link = entry
                        .link_name_bytes()
                        .ok_or_else(|| UnpackError::BadName(name.clone()))?
                        .into_owned();
                    let lparts = clean_path(&link)?;
                    let bad = || UnpackError::BadLinkTarget {
                        entry: name.clone(),
                        target: String::from_utf8_lossy(&link).into_owned(),
                    };
                    if lparts.is_empty() {
                        return Err(bad());
                    }
                    // The target's ancestors must be real directories too,
                    // and the target something this layer made, not a
                    // directory.
                    let mut src_rel = PathBuf::new();
                    for p in &lparts[..lparts.len() - 1] {
                        src_rel.push(p);
                        if tree.kind(&src_rel) != Some(Made::Dir) {
                            return Err(bad());
                        }
                    }
                    src_rel.push(lparts.last().unwrap());
                    let src_kind = match tree.kind(&src_rel) {
                        Some(k) if k != Made::Dir => k,
                        _ => return Err(bad()),
                    };
                    if src_rel == rel {
                        continue;
                    }
                    let src = root.join(&src_rel);
                    tree.clear(&rel, false)?;
                    fs::hard_link(&src, &target).map_err(io_err(&target))?;
                    tree.record(rel.clone(), src_kind);
                }
                T::Char | T::Block | T::Fifo => {
                    tree.clear(&rel, false)?;
                    let (ftype, dev) = match kind {
                        T::Char | T::Block => {
                            let major = header.device_major().ok().flatten().unwrap_or(0);
                            let minor = header.device_minor().ok().flatten().unwrap_or(0);
                            let ft = if kind == T::Char {
                                libc::S_IFCHR
                            } else {
                                libc::S_IFBLK
                            };
                            (ft, libc::makedev(major, minor))
                        }
                        _ => (libc::S_IFIFO, 0),
                    };
                    mknod(&target, ftype | (mode as libc::mode_t & 0o7777), dev)?;
                    tree.record(rel.clone(), Made::Other);
                    lchown(&target, uid, gid)?;
                    fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                        .map_err(io_err(&target))?;
                }
                T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
                _ => return Err(UnpackError::Unsupported(name)),
            }
            // Extended attributes from PAX headers.
            if let Ok(Some(exts)) = entry.pax_extensions() {
                for ext in exts.flatten() {
                    if let Some(xname) =
                        ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr."))
                    {
                        if xattr_allowed(xname) {
                            // Best effort: the filesystem may not support it.
                            let _ = lsetxattr(&target, xname, ext.value_bytes());
                        }
                    }
                }
            }
        }
    }
    // Drain trailing padding so the digest covers the whole stream.
    io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::Tar)?;
    // Directory modes and times last: adding entries changes mtimes, and a
    // read-only directory mode would stop us adding its children.
    for (dir, mode, mtime) in dirs.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(*mode)).map_err(io_err(dir))?;
        set_mtime(dir, *mtime);
    }
    Ok(Unpacked {
        diff_id: format!("sha256:{}", hex::encode(hashing.hasher.finalize())),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            h.set_uid(0);
            h.set_gid(0);
            // Bypass the builder's own path checks: we want hostile names.
            let raw = name.as_bytes();
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..raw.len()].copy_from_slice(raw);
            if let Some(l) = link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn apply(
        entries: &[(&str, tar::EntryType, &[u8], Option<&str>)],
    ) -> (tempfile::TempDir, Result<Unpacked, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fs");
        fs::create_dir(&root).unwrap();
        let data = tar_with(entries);
        let r = apply_layer(&data[..], &root);
        (dir, r)
    }

    use tar::EntryType as T;

    #[test]
    fn regular_tree_with_links_and_whiteouts() {
        let (dir, r) = apply(&[
            ("etc/", T::Directory, b"", None),
            (
                "etc/passwd",
                T::Regular,
                b"root:x:0:0::/root:/bin/sh\n",
                None,
            ),
            ("etc/pw-link", T::Link, b"", Some("etc/passwd")),
            ("etc/sym", T::Symlink, b"", Some("/etc/passwd")),
            ("etc/.wh.gone", T::Regular, b"", None),
            ("opaque/.wh..wh..opq", T::Regular, b"", None),
        ]);
        let u = r.unwrap();
        assert!(u.diff_id.starts_with("sha256:"));
        let root = dir.path().join("fs");
        let a = fs::metadata(root.join("etc/passwd")).unwrap();
        let b = fs::metadata(root.join("etc/pw-link")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(
            fs::read_link(root.join("etc/sym")).unwrap(),
            Path::new("/etc/passwd")
        );
        let wh = fs::symlink_metadata(root.join("etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    }

    #[test]
    fn escapes_are_refused() {
        let (_d, r) = apply(&[("../escape", T::Regular, b"x", None)]);
        assert!(matches!(r, Err(UnpackError::DotDot(_))), "{r:?}");
        let (_d, r) = apply(&[("/abs", T::Regular, b"x", None)]);
        assert!(matches!(r, Err(UnpackError::Absolute(_))), "{r:?}");
        let (d, r) = apply(&[
            ("evil", T::Symlink, b"", Some("/tmp")),
            ("evil/planted", T::Regular, b"x", None),
        ]);
        assert!(
            matches!(r, Err(UnpackError::ThroughSymlink { .. })),
            "{r:?}"
        );
        assert!(!d.path().join("fs/evil/planted").exists());
        let (_d, r) = apply(&[("l", T::Link, b"", Some("../../etc/shadow"))]);
        assert!(matches!(r, Err(UnpackError::DotDot(_))), "{r:?}");
        let (_d, r) = apply(&[
            ("s", T::Symlink, b"", Some("/")),
            ("l", T::Link, b"", Some("s/etc/shadow")),
        ]);
        assert!(matches!(r, Err(UnpackError::BadLinkTarget { .. })), "{r:?}");
        let (_d, r) = apply(&[(".wh...", T::Regular, b"", None)]);
        assert!(r.is_err());
    }

    #[test]
    fn gzip_is_detected() {
        let data = tar_with(&[("a", T::Regular, b"hello", None)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &data).unwrap();
        let gz = gz.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let u = apply_layer(decompress(&gz[..]).unwrap(), dir.path()).unwrap();
        assert_eq!(
            u.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&data)))
        );
        assert_eq!(fs::read(dir.path().join("a")).unwrap(), b"hello");
    }
}
