//! The host folders the machine VM shares (virtio-fs), like Docker
//! Desktop's file-sharing list, and how a bind mount's host path becomes a
//! path in the guest.
//!
//! The setting: `$BERTH_MACHINE_SHARES` (paths separated by `:`; empty for
//! none) when set, else `<state>/machine-shares` (one path per line, written
//! by `berth machine shares --set`), else the user's home and the temp
//! directory. The machine reads it when it boots; changing it needs a
//! machine restart and keeps images, containers and volumes (they live on
//! the data disk, not in shares).
//!
//! In the guest each share is mounted at `/host_mnt` + its host path (the
//! agent's `berth.shares=` parameter), so `/root/proj` is
//! `/host_mnt/root/proj` there.

use anyhow::{bail, Context, Result};
use std::path::{Component, Path, PathBuf};

/// Where the guest mounts shares (`/host_mnt` + host path).
pub const GUEST_PREFIX: &str = "/host_mnt";

/// The environment variable that overrides the saved setting.
pub const ENV: &str = crate::env::MACHINE_SHARES;

fn settings_file() -> PathBuf {
    crate::paths::state_dir().join("machine-shares")
}

/// The folders as configured (not yet checked).
pub fn configured() -> Vec<PathBuf> {
    if let Some(v) = crate::env::os(ENV) {
        return std::env::split_paths(&v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
    }
    if let Ok(text) = std::fs::read_to_string(settings_file()) {
        return text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect();
    }
    let mut out = Vec::new();
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        out.push(PathBuf::from(h));
    }
    out.push(std::env::temp_dir());
    out
}

/// Saves the setting (`machine shares --set`); an empty list shares nothing.
pub fn save(paths: &[PathBuf]) -> Result<()> {
    for p in paths {
        check_path(p)?;
    }
    let text: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
    let f = settings_file();
    if let Some(d) = f.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = f.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &f)?;
    Ok(())
}

/// Forgets the saved setting (back to home and the temp directory).
pub fn reset() -> Result<()> {
    match std::fs::remove_file(settings_file()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// What the guest's `berth.shares=` can carry: absolute, no `.`/`..`, no
/// separators it uses (`,` `@` `:`) and no whitespace.
fn check_path(p: &Path) -> Result<()> {
    let s = p
        .to_str()
        .with_context(|| format!("shared folder {} is not UTF-8", p.display()))?;
    if !s.starts_with('/') {
        bail!("shared folder {s} is not an absolute path");
    }
    if p.components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        bail!("shared folder {s} has . or .. in it");
    }
    if s.chars()
        .any(|c| c.is_whitespace() || matches!(c, ',' | '@' | ':'))
    {
        bail!("shared folder {s}: paths with spaces, ',', '@' or ':' cannot be shared yet");
    }
    Ok(())
}

/// The configured folders that can be shared: resolved (symlinks, as
/// bind sources are), existing, and without one nested in another.
/// Unusable entries are reported on stderr and left out.
pub fn effective(configured: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in configured {
        let real = match std::fs::canonicalize(p) {
            Ok(r) if r.is_dir() => r,
            _ => {
                eprintln!(
                    "berth: shared folder {} does not exist or is not a directory; not shared",
                    p.display()
                );
                continue;
            }
        };
        if let Err(e) = check_path(&real) {
            eprintln!("berth: {e:#}; not shared");
            continue;
        }
        if out.iter().any(|o| real.starts_with(o)) {
            continue;
        }
        out.retain(|o| !o.starts_with(&real));
        out.push(real);
    }
    out
}

/// The VMM flags and the guest parameter for `shares`.
pub fn vmm_args(shares: &[PathBuf]) -> (Vec<String>, Option<String>) {
    let mut flags = Vec::new();
    let mut param = Vec::new();
    for (i, p) in shares.iter().enumerate() {
        flags.push("--fs".to_string());
        flags.push(format!("tag=s{i},path={}", p.display()));
        param.push(format!("s{i}@{}", p.display()));
    }
    let param = (!param.is_empty()).then(|| format!("berth.shares={}", param.join(",")));
    (flags, param)
}

/// `path` made absolute and free of `.`/`..` and symlinks, for the part
/// that exists (a missing tail is kept as given: `-v` creates it).
pub fn resolve_host_path(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut tail: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            for t in tail.iter().rev() {
                out.push(t);
            }
            return out;
        }
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(parent)) => {
                tail.push(n.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// The guest path of host `path` when it lies in one of `shares`.
pub fn guest_path(path: &Path, shares: &[PathBuf]) -> Option<String> {
    if path
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return None;
    }
    shares
        .iter()
        .any(|s| path.starts_with(s))
        .then(|| format!("{GUEST_PREFIX}{}", path.display()))
}

/// The host path of a guest path under [`GUEST_PREFIX`] (for inspect).
pub fn host_path(guest: &str) -> Option<&str> {
    guest
        .strip_prefix(GUEST_PREFIX)
        .filter(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmm_args_name_each_share() {
        let (flags, param) = vmm_args(&[PathBuf::from("/root"), PathBuf::from("/tmp")]);
        assert_eq!(
            flags,
            vec!["--fs", "tag=s0,path=/root", "--fs", "tag=s1,path=/tmp"]
        );
        assert_eq!(param.as_deref(), Some("berth.shares=s0@/root,s1@/tmp"));
        assert_eq!(vmm_args(&[]), (Vec::new(), None));
    }

    #[test]
    fn guest_paths_only_inside_shares() {
        let shares = [PathBuf::from("/root"), PathBuf::from("/tmp")];
        assert_eq!(
            guest_path(Path::new("/root/proj"), &shares).as_deref(),
            Some("/host_mnt/root/proj")
        );
        assert_eq!(
            guest_path(Path::new("/tmp"), &shares).as_deref(),
            Some("/host_mnt/tmp")
        );
        assert_eq!(guest_path(Path::new("/rootx/a"), &shares), None);
        assert_eq!(guest_path(Path::new("/etc"), &shares), None);
        assert_eq!(guest_path(Path::new("/root/../etc"), &shares), None);
        assert_eq!(host_path("/host_mnt/root/p"), Some("/root/p"));
        assert_eq!(host_path("/host_mntx/p"), None);
        assert_eq!(host_path("/var/lib/x"), None);
    }

    #[test]
    fn shares_are_resolved_and_deduplicated() {
        let d = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir(real.join("inner")).unwrap();
        let got = effective(&[
            real.join("inner"),
            real.clone(),
            real.join("missing"),
            real.clone(),
        ]);
        assert_eq!(got, vec![real.clone()]);
        assert!(check_path(Path::new("/a b")).is_err());
        assert!(check_path(Path::new("/a,b")).is_err());
        assert!(check_path(Path::new("rel")).is_err());
        assert!(check_path(Path::new("/ok/path")).is_ok());
    }

    #[test]
    fn host_paths_resolve_the_existing_part() {
        let d = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir(real.join("a")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(real.join("a"), real.join("link")).unwrap();
        assert_eq!(
            resolve_host_path(&real.join("a/new/x")),
            real.join("a/new/x")
        );
        #[cfg(unix)]
        assert_eq!(resolve_host_path(&real.join("link/y")), real.join("a/y"));
    }
}
