//! `berth.exe` and `berth-vmm.exe` (x86_64-pc-windows-gnu, linked with
//! mingw-w64) start under Wine and answer `--version` and `--help`;
//! `berth-vmm.exe` refuses bad input and reports the missing Windows
//! Hypervisor Platform (Wine has none) instead of failing to load.
//!
//! Input: `target/x86_64-pc-windows-gnu/{release,debug}/{berth,berth-vmm}.exe`,
//! built by `scripts/check-cross.sh` (or `BERTH_EXE` for berth.exe). Prints `SKIPPED: <reason>`
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

/// `NAME.exe` of the mingw build (`BERTH_EXE` overrides `berth.exe`).
fn windows_exe(name: &str) -> Option<PathBuf> {
    if name == "berth" {
        if let Some(p) = std::env::var_os("BERTH_EXE") {
            return Some(PathBuf::from(p));
        }
    }
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("x86_64-pc-windows-gnu");
    ["release", "debug"]
        .iter()
        .map(|p| dir.join(p).join(format!("{name}.exe")))
        .find(|p| p.is_file())
}

/// Runs Windows executables under wine from a private directory.
struct Wine {
    wine: PathBuf,
    dir: tempfile::TempDir,
    prefix: PathBuf,
}

impl Wine {
    /// None (after printing SKIPPED) when wine64, mingw-w64 or the binaries
    /// are missing.
    fn new(exes: &[&str]) -> Option<Wine> {
        let Some(wine) = wine64() else {
            skip("wine64 missing (apt install wine64)");
            return None;
        };
        if !have("x86_64-w64-mingw32-gcc") {
            skip("x86_64-w64-mingw32-gcc missing (apt install gcc-mingw-w64-x86-64)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        for name in exes {
            let Some(exe) = windows_exe(name) else {
                skip(&format!("no {name}.exe: run scripts/check-cross.sh"));
                return None;
            };
            std::fs::copy(&exe, dir.path().join(format!("{name}.exe"))).unwrap();
        }
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
        Some(Wine { wine, dir, prefix })
    }

    /// One wine process at a time: two tests starting wine at once on a
    /// prefix that does not exist yet race while creating it (seen in CI:
    /// `wine: chdir to /tmp/wine-…/server-…: No such file or directory`).
    fn run(&self, exe: &str, args: &[&str]) -> std::process::Output {
        berth_tests::with_lock("wine", || {
            Command::new(&self.wine)
                .arg(self.dir.path().join(format!("{exe}.exe")))
                .args(args)
                .env("WINEPREFIX", &self.prefix)
                .env("WINEDEBUG", "-all")
                .env("WINEDLLOVERRIDES", "bcryptprimitives=n")
                .output()
                .unwrap()
        })
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, exe: &str, args: &[&str]) -> String {
        let out = self.run(exe, args);
        assert!(
            out.status.success(),
            "wine {exe}.exe {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn berth_exe_runs_under_wine() {
    let Some(wine) = Wine::new(&["berth"]) else {
        return;
    };
    let version = wine.ok("berth", &["--version"]);
    assert_eq!(
        version.trim(),
        format!("berth {}", env!("CARGO_PKG_VERSION")),
        "--version"
    );
    let help = wine.ok("berth", &["--help"]);
    assert!(help.contains("Usage: berth.exe"), "--help:\n{help}");
    assert!(help.contains("Commands:"), "--help:\n{help}");
    println!("berth.exe under wine: {}", version.trim());
}

/// `berth-vmm.exe` loads the Windows Hypervisor Platform at run time, so it
/// starts on a Windows without it (Wine has none) and says what is missing.
#[test]
fn berth_vmm_exe_starts_without_whp_and_says_what_is_missing() {
    let Some(wine) = Wine::new(&["berth-vmm"]) else {
        return;
    };
    let version = wine.ok("berth-vmm", &["--version"]);
    assert_eq!(
        version.trim(),
        format!("berth-vmm {}", env!("CARGO_PKG_VERSION")),
        "--version"
    );
    let help = wine.ok("berth-vmm", &["--help"]);
    assert!(help.contains("--kernel"), "--help:\n{help}");

    // Bad input: a clear message and exit code 2, before any hypervisor call.
    let out = wine.run("berth-vmm", &["--disk", "a.img,rx", "--kernel", "k"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown disk option `rx`"), "{stderr}");
    let out = wine.run("berth-vmm", &["--kernel", "k", "--vsock-uds", "v.sock"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no vsock device"), "{stderr}");

    // A boot: WinHvPlatform.dll is missing, which is reported as such.
    let out = wine.run("berth-vmm", &["--kernel", "vmlinux"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("WinHvPlatform.dll cannot be loaded")
            && stderr.contains("Windows Hypervisor Platform"),
        "{stderr}"
    );
    println!("berth-vmm.exe under wine: {}", stderr.trim());
}
