//! Where berth keeps its state and finds its other binaries.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// berth's per-user state directory.
pub fn state_dir() -> PathBuf {
    if let Some(p) = crate::env::os(crate::env::HOME) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(p).join("berth");
    }
    crate::platform::default_data_dir()
}

/// Finds the `berth-agent` binary: `$BERTH_AGENT`, cargo's static-target
/// output directory during development, or next to `berth` (an installed
/// layout). The static build comes first: a workspace build also leaves a
/// dynamically linked `berth-agent` next to `berth`, and that one cannot
/// be the guest's /init.
pub fn agent_binary() -> Result<PathBuf> {
    if let Some(p) = crate::env::os(crate::env::AGENT) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the berth binary")?;
    let dir = exe.parent().context("berth binary has no directory")?;
    let profile = dir.file_name().map(|s| s.to_owned()).unwrap_or_default();
    let candidates = [
        dir.parent()
            .map(|t| {
                t.join("x86_64-unknown-linux-gnu")
                    .join(&profile)
                    .join("berth-agent")
            })
            .unwrap_or_default(),
        dir.join("berth-agent"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "berth-agent not found (looked in {}); set BERTH_AGENT",
                dir.display()
            )
        })
}

/// `$BERTH_VMM`, or `berth-vmm` next to `berth`.
pub fn vmm_binary() -> Result<PathBuf> {
    if let Some(p) = crate::env::os(crate::env::VMM) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("berth-vmm");
    if p.is_file() {
        return Ok(p);
    }
    bail!(
        "berth-vmm not found next to {}; set BERTH_VMM",
        exe.display()
    )
}
