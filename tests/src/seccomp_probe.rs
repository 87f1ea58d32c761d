//! The static seccomp probe (`tests/probe/seccomp_probe.c`) that the
//! security tests run in containers of every placement: how to build it,
//! how to read its answers, and the calls docker's default profile refuses.

use crate::{have, workspace};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The calls the probe makes that docker's default seccomp profile
/// refuses with EPERM (issue 20's list).
pub const BLOCKED: &[&str] = &[
    "unshare_bad",
    "unshare_user",
    "keyctl",
    "add_key",
    "mount_bad",
    "swapon",
    "reboot",
    "init_module",
    "bpf",
    "clone_ns",
    "personality",
];

/// The calls whose bad arguments the kernel itself rejects (not with the
/// filter's EPERM) once the filter is lifted (`seccomp=unconfined`).
pub const REJECTED_BY_THE_KERNEL: &[&str] = &[
    "unshare_bad",
    "keyctl",
    "add_key",
    "mount_bad",
    "clone_ns",
    "swapon",
];

/// Builds the probe, static, at `dir/seccomp_probe` with gcc. None when
/// gcc is not installed (the caller skips its step and says so); a
/// compile failure fails the test.
pub fn build(dir: &Path) -> Option<PathBuf> {
    if !have("gcc") {
        return None;
    }
    let out = dir.join("seccomp_probe");
    let o = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&out)
        .arg(workspace().join("tests/probe/seccomp_probe.c"))
        .output()
        .expect("gcc");
    assert!(
        o.status.success(),
        "gcc -static failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some(out)
}

/// The probe's `name=ERRNO` lines (other lines ignored) as a map.
pub fn answers(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|l| l.trim_end().split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Asserts the default profile's answers: every call in [`BLOCKED`] got
/// EPERM (under `prefix`, e.g. `"exec."`, or none) and `fork` worked.
pub fn assert_default_profile(m: &BTreeMap<String, String>, prefix: &str) {
    for k in BLOCKED {
        let k = format!("{prefix}{k}");
        assert_eq!(m.get(&k).map(String::as_str), Some("EPERM"), "{k}: {m:?}");
    }
    let k = format!("{prefix}fork");
    assert_eq!(m.get(&k).map(String::as_str), Some("OK"), "{k}: {m:?}");
}
