//! Fast smoke test without the real guest kernel: a few instructions entered
//! like a Linux 64-bit kernel print on serial and reset through the i8042.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn tiny_kernel_prints_and_resets() {
    if OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        common::skipped("/dev/kvm is not available");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vmm-tiny");
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = dir.join("tiny_kernel");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/guest/tiny_kernel.S");
    let built = Command::new("gcc")
        .args([
            "-static",
            "-nostdlib",
            "-no-pie",
            "-Wl,-Ttext=0x200000",
            "-Wl,--build-id=none",
            "-o",
        ])
        .arg(&kernel)
        .arg(&src)
        .status();
    if !matches!(built, Ok(s) if s.success()) {
        common::skipped("cannot assemble tests/guest/tiny_kernel.S with gcc");
        return;
    }
    let serial = dir.join("serial.log");
    let out = Command::new(env!("CARGO_BIN_EXE_berth-vmm"))
        .arg("--kernel")
        .arg(&kernel)
        .arg("--serial-log")
        .arg(&serial)
        .arg("--timings")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "berth-vmm failed: {}\n{stderr}",
        out.status
    );
    assert_eq!(
        std::fs::read_to_string(&serial).unwrap(),
        "BERTH-TINY-KERNEL-OK\n"
    );
    assert!(stderr.contains("timings: setup"), "{stderr}");
    println!("{stderr}");
}
