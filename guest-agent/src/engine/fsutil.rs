//! File system helpers the engine's layers share.

use std::path::Path;

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
    use std::os::unix::fs::MetadataExt;
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
