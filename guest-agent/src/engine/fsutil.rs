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
