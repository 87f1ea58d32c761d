//! Resolving paths inside a container root filesystem without ever leaving
//! it: symlinks are followed component by component and clamped to the root,
//! as the kernel would resolve them after pivot_root.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

const MAX_SYMLINKS: usize = 40;

/// Resolves `path` (absolute, as seen inside the container) to a host path
/// under `root`. Missing trailing components are allowed and returned as is.
pub fn secure_join(root: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let mut pending: Vec<OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&c);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(std::io::Error::other("too many levels of symbolic links"));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for comp in target.components().rev() {
                    match comp {
                        Component::Normal(n) => pending.push(n.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => resolved.push(c),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc/loop")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/shadow", root.join("etc/passwd")).unwrap();
        assert_eq!(
            secure_join(root, Path::new("/etc/passwd")).unwrap(),
            root.join("etc/shadow")
        );
        assert_eq!(
            secure_join(root, Path::new("/../../x")).unwrap(),
            root.join("x")
        );
        assert_eq!(
            secure_join(root, Path::new("/etc/loop/loop/hosts")).unwrap(),
            root.join("etc/hosts")
        );
        std::os::unix::fs::symlink("self", root.join("self")).unwrap();
        assert!(secure_join(root, Path::new("/self")).is_err());
    }
}
