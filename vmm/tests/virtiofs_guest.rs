//! virtio-fs with berth's real guest: boot the kernel + agent root disk
//! with two shares (`--fs`, one read-only) and `berth.shares=` on the
//! command line; the agent mounts them under /host_mnt before its engine
//! opens and logs each with its entry count. Proves the guest sees the
//! host's files (the count), that a guest write reaches the host
//! (`berth.shares_check=1` writes `.berth-share-check` into writable
//! shares) and that the read-only share stays untouched.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[test]
fn guest_mounts_shares_and_writes_through() {
    let _one = common::serialize();
    if !common::kvm_usable() {
        return common::skipped("/dev/kvm is not available");
    }
    let Some(kernel) = common::find_kernel() else {
        return common::skipped(
            "no guest kernel (set BERTH_KERNEL or run kernel-config/build-kernel.sh)",
        );
    };
    let Some(agent) = common::find_agent() else {
        return common::skipped("no static berth-agent (run scripts/dev-build.sh)");
    };
    let agent_bytes = fs::read(&agent).unwrap();
    assert!(
        agent_bytes
            .windows(b"berth.shares".len())
            .any(|w| w == b"berth.shares"),
        "{} predates virtio-fs shares: rebuild it (scripts/dev-build.sh)",
        agent.display()
    );
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vmm-virtiofs");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let Some(rootfs) = common::write_agent_rootfs(&agent, &dir) else {
        return common::skipped("mkfs.ext4 -d failed (install e2fsprogs)");
    };
    let rw = dir.join("share-rw");
    let ro = dir.join("share-ro");
    fs::create_dir_all(rw.join("sub")).unwrap();
    fs::create_dir_all(&ro).unwrap();
    fs::write(rw.join("from-host.txt"), "hello").unwrap();
    fs::write(ro.join("only.txt"), "read me").unwrap();

    let serial = dir.join("serial.log");
    let stderr = dir.join("vmm.log");
    let cmdline = format!(
        "{} berth.shares=t1@{},t2@{}:ro berth.shares_check=1",
        common::AGENT_CMDLINE,
        rw.display(),
        ro.display()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth-vmm"))
        .arg("--kernel")
        .arg(&kernel)
        .arg("--disk")
        .arg(format!("{},ro", rootfs.display()))
        .args(["--cmdline", &cmdline, "--mem-mib", "256", "--rng"])
        .arg("--fs")
        .arg(format!("tag=t1,path={}", rw.display()))
        .arg("--fs")
        .arg(format!("tag=t2,path={},ro", ro.display()))
        .arg("--serial-log")
        .arg(&serial)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .expect("spawn berth-vmm");
    let report = || {
        format!(
            "--- serial ---\n{}\n--- berth-vmm stderr ---\n{}",
            fs::read_to_string(&serial).unwrap_or_default(),
            fs::read_to_string(&stderr).unwrap_or_default()
        )
    };
    // The ro share is mounted second: wait for its line (or the engine).
    let t0 = Instant::now();
    let text = loop {
        let text = fs::read_to_string(&serial).unwrap_or_default();
        if text.contains("share t2 at") || text.contains("engine open") {
            break text;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("berth-vmm exited ({st}) before mounting\n{}", report());
        }
        if t0.elapsed() > common::TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out waiting for the share lines\n{}", report());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    println!("shares mounted after {:.1} s", t0.elapsed().as_secs_f64());
    // from-host.txt, sub and the guest's check file.
    let want_rw = format!("share t1 at /host_mnt{}: 3 entries", rw.display());
    let want_ro = format!("share t2 at /host_mnt{} (ro): 1 entries", ro.display());
    assert!(text.contains(&want_rw), "no `{want_rw}`\n{}", report());
    assert!(text.contains(&want_ro), "no `{want_ro}`\n{}", report());
    let check = fs::read_to_string(rw.join(".berth-share-check")).unwrap_or_default();
    assert_eq!(check, "written by the guest through share t1\n");
    // The agent (root in the guest) made it: its owner as the guest sees
    // it is in the override xattr, the host file is the VMM user's.
    let over = override_xattr(&rw.join(".berth-share-check"));
    assert!(
        over.as_deref().is_some_and(|v| v.starts_with("0:0:0")),
        "override {over:?}"
    );
    assert!(!ro.join(".berth-share-check").exists());
    assert_eq!(fs::read_dir(&ro).unwrap().count(), 1);
}

/// `user.containers.override_stat` of a host file (berth-vmm's record of
/// the guest's owner and mode).
fn override_xattr(p: &Path) -> Option<String> {
    let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = [0u8; 128];
    // SAFETY: both names are NUL-terminated; the kernel writes at most
    // `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"user.containers.override_stat".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}
