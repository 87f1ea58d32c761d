//! File system helpers the engine's layers share.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What tells one version of a file or directory from another: its
/// identity (a file replaced by rename is a new inode) and its change
/// times, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sig {
    pub dev: u64,
    pub ino: u64,
    pub mtime: i128,
    pub ctime: i128,
}

impl Sig {
    pub fn of(md: &std::fs::Metadata) -> Sig {
        Sig {
            dev: md.dev(),
            ino: md.ino(),
            mtime: i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec()),
            ctime: i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()),
        }
    }
}

/// Whether `path` is a mount point (differs in device from its parent, or
/// is listed in /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let p = path.to_string_lossy();
    info.lines().any(|l| l.split(' ').nth(4) == Some(&p))
}

/// Deletes a tree but never descends into another filesystem (a mount left
/// behind must not have its contents deleted).
pub fn remove_tree_same_fs(root: &Path) -> std::io::Result<()> {
    let dev = std::fs::symlink_metadata(root)?.dev();
    fn walk(p: &Path, dev: u64) -> std::io::Result<()> {
        for e in std::fs::read_dir(p)? {
            let e = e?;
            let m = std::fs::symlink_metadata(e.path())?;
            if m.is_dir() {
                if m.dev() != dev {
                    return Err(std::io::Error::other(format!(
                        "refusing to delete across a mount at {}",
                        e.path().display()
                    )));
                }
                walk(&e.path(), dev)?;
                std::fs::remove_dir(e.path())?;
            } else {
                std::fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }
    walk(root, dev)?;
    std::fs::remove_dir(root)
}

/// Whether `p` is an overlay opaque directory (it hides what the layers
/// below hold at its path).
pub fn overlay_opaque(p: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| matches!(xattr_get(p, n), Ok(Some(v)) if v == b"y"))
}

/// The value of extended attribute `name` of `p` (not following a final
/// symbolic link); `None` when it has none or the file system keeps none.
pub fn xattr_get(p: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let cp = std::ffi::CString::new(p.as_os_str().as_bytes())?;
    let cn = std::ffi::CString::new(name)?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated, the buffer is valid for its length.
    let n =
        unsafe { libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}

/// Bytes under `root` as docker's `directory.Size` counts them: regular
/// files and symbolic links (their own length), each hard-linked inode
/// once, directories not counted. Never follows links and never crosses
/// into another file system. Looks at `budget` entries at most and counts
/// them down; a caller that finds it at 0 knows the sum is a lower bound
/// (a container can fill its layer with millions of empty files).
pub fn tree_size(root: &Path, budget: &mut usize) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return 0;
    };
    if !top.is_dir() {
        return if top.is_file() || top.file_type().is_symlink() {
            top.len()
        } else {
            0
        };
    }
    let dev = top.dev();
    let mut linked = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if *budget == 0 {
                return total;
            }
            *budget -= 1;
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                if m.dev() == dev {
                    stack.push(e.path());
                }
            } else if m.is_file() || m.file_type().is_symlink() {
                if m.nlink() > 1 && !linked.insert((m.dev(), m.ino())) {
                    continue;
                }
                total = total.saturating_add(m.len());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::tree_size;

    #[test]
    fn tree_size_counts_files_and_links_once_and_honours_the_budget() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::write(root.join("a/one"), vec![0u8; 1000]).unwrap();
        std::fs::write(root.join("a/b/c/two"), vec![0u8; 234]).unwrap();
        // A hard link is counted once; a symlink is its own length (3).
        std::fs::hard_link(root.join("a/one"), root.join("a/b/hard")).unwrap();
        std::os::unix::fs::symlink("one", root.join("a/sym")).unwrap();
        // A device-like entry (fifo) counts nothing.
        nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut budget = 1000;
        assert_eq!(tree_size(root, &mut budget), 1000 + 234 + 3);
        assert!(budget > 0);
        // Out of budget: a lower bound, and the budget reads 0.
        let mut budget = 2;
        assert!(tree_size(root, &mut budget) < 1237);
        assert_eq!(budget, 0);
        // A missing path is 0 bytes, not an error.
        let mut budget = 10;
        assert_eq!(tree_size(&root.join("missing"), &mut budget), 0);
    }
}
