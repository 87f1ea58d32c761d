//! `berth.exe` (x86_64-pc-windows-gnu, linked with mingw-w64) starts under
//! Wine and answers `--version` and `--help`.
//!
//! Input: `target/x86_64-pc-windows-gnu/{release,debug}/berth.exe`, built by
//! `scripts/check-cross.sh` (or `BERTH_EXE`). Prints `SKIPPED: <reason>`
//! without wine64, mingw-w64 or the binary. Wine 8 (Debian 12) lacks
//! bcryptprimitives.dll, which Rust's std imports, so the test builds a
//! stand-in from tests/wine/bcryptprimitives.c next to the copied binary.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::{have, skip, workspace};

fn wine64() -> Option<PathBuf> {
    // Debian keeps wine64 out of PATH (only the `wine` wrapper of wine32 is
    // linked there).
    if have("wine64") {
        return Some(PathBuf::from("wine64"));
    }
    let p = Path::new("/usr/lib/wine/wine64");
    p.is_file().then(|| p.to_path_buf())
}

fn berth_exe() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_EXE") {
        return Some(PathBuf::from(p));
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("x86_64-pc-windows-gnu");
    ["release", "debug"]
        .iter()
        .map(|p| dir.join(p).join("berth.exe"))
        .find(|p| p.is_file())
}

#[test]
fn berth_exe_runs_under_wine() {
    let Some(wine) = wine64() else {
        return skip("wine64 missing (apt install wine64)");
    };
    if !have("x86_64-w64-mingw32-gcc") {
        return skip("x86_64-w64-mingw32-gcc missing (apt install gcc-mingw-w64-x86-64)");
    }
    let Some(exe) = berth_exe() else {
        return skip("no berth.exe: run scripts/check-cross.sh");
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&exe, dir.path().join("berth.exe")).unwrap();
    let cc = Command::new("x86_64-w64-mingw32-gcc")
        .args(["-shared", "-O2", "-o"])
        .arg(dir.path().join("bcryptprimitives.dll"))
        .arg(workspace().join("tests/wine/bcryptprimitives.c"))
        .arg("-ladvapi32")
        .status()
        .unwrap();
    assert!(
        cc.success(),
        "building the bcryptprimitives stand-in failed"
    );
    // A prefix in the target dir: created once (~15 s), then reused.
    let prefix = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("wineprefix");
    let run = |arg: &str| {
        let out = Command::new(&wine)
            .arg(dir.path().join("berth.exe"))
            .arg(arg)
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "bcryptprimitives=n")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "wine berth.exe {arg}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let version = run("--version");
    assert_eq!(
        version.trim(),
        format!("berth {}", env!("CARGO_PKG_VERSION")),
        "--version"
    );
    let help = run("--help");
    assert!(help.contains("Usage: berth.exe"), "--help:\n{help}");
    assert!(help.contains("Commands:"), "--help:\n{help}");
    println!("berth.exe under wine: {}", version.trim());
}
