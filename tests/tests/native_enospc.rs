#![cfg(target_os = "linux")]
//! ENOSPC (issue 24, item 3): `BERTH_HOME` on a small loop-mounted ext4;
//! `build`, `load` and `pull` of an image larger than the space left each
//! fail with a clear error (non-zero exit, no panic), `berth system check`
//! finds no corruption (what debris there is, `--repair` removes), and once
//! a filler file is deleted the same command works.

use berth_tests::registry::{sh, tools_missing, Registry};
use berth_tests::{default_image, have, skip, Berth, Out, DEFAULT_IMAGE};
use std::path::Path;

/// The small filesystem, and the payload that does not fit in what is left.
const FS_MIB: u64 = 160;
const PAYLOAD_MIB: usize = 24;
const LEFT_MIB: u64 = 12;

fn free_bytes(p: &Path) -> u64 {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: statvfs fills the zeroed struct for a valid C string path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail * st.f_frsize
}

/// Fills `home` until about `LEFT_MIB` are free; the filler's path.
fn fill(home: &Path) -> std::path::PathBuf {
    let filler = home.join("filler");
    let free = free_bytes(home);
    let want = free.saturating_sub(LEFT_MIB << 20);
    let f = std::fs::File::create(&filler).unwrap();
    // SAFETY: fallocate on a file descriptor we own.
    let rc = unsafe {
        libc::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
            0,
            want as libc::off_t,
        )
    };
    assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
    filler
}

/// The store is not corrupted; debris goes with --repair.
#[track_caller]
fn assert_store_sound(b: &Berth, what: &str) {
    let o = b.run(&["system", "check", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: no JSON from system check ({e}): {}", o.stderr));
    let findings = v["Findings"].as_array().cloned().unwrap_or_default();
    let bad: Vec<_> = findings.iter().filter(|f| f["kind"] != "debris").collect();
    assert!(bad.is_empty(), "{what}: system check found damage: {bad:?}");
    if !findings.is_empty() {
        println!("{what}: debris after the failure: {findings:?}");
        assert_eq!(b.run(&["system", "check", "--repair"]).code, 0, "{what}");
    }
    assert_eq!(b.run(&["system", "check"]).code, 0, "{what}");
}

#[track_caller]
fn assert_clear_failure(o: &Out, what: &str) {
    assert_ne!(o.code, 0, "{what} succeeded on a full disk: {}", o.stdout);
    println!("{what} on a full disk: {}", o.stderr.trim());
    assert!(
        !o.stderr.contains("panicked"),
        "{what} panicked: {}",
        o.stderr
    );
    assert!(
        o.stderr.contains("No space left on device") || o.stderr.contains("no space"),
        "{what}: the error does not say the disk is full: {}",
        o.stderr
    );
}

#[test]
fn full_disk_fails_cleanly_and_recovers() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("needs root for a loop mount");
    }
    for t in ["mkfs.ext4", "mount", "umount"] {
        if !have(t) {
            return skip(&format!("{t} not installed"));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return skip("no loop devices (/dev/loop-control)");
    }
    let reg_missing = tools_missing();
    // Dropped last: the image file outlives the mount.
    let img_dir = tempfile::tempdir().unwrap();
    let img = img_dir.path().join("fs.img");
    let b = Berth::new();
    let home = b.home.path().to_path_buf();
    sh(&format!(
        "truncate -s {FS_MIB}M {0} && mkfs.ext4 -q -F -m 0 {0}",
        img.display()
    ));
    let mounted = std::process::Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&home)
        .status()
        .unwrap();
    if !mounted.success() {
        return skip("mount -o loop failed (no free loop device?)");
    }
    // Unmounted by Berth's drop (everything below its home, deepest first).
    println!("BERTH_HOME on a {FS_MIB} MiB ext4 at {}", home.display());

    b.run(&["load", "-q", "-i", default_image().to_str().unwrap()])
        .ok();
    // A build context with an incompressible payload larger than what the
    // filler leaves.
    let ctx = tempfile::tempdir().unwrap();
    let mut payload = vec![0u8; PAYLOAD_MIB << 20];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for chunk in payload.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(ctx.path().join("payload"), &payload).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {DEFAULT_IMAGE}\nCOPY payload /payload\n"),
    )
    .unwrap();
    let build = ["build", "-q", "-t", "big:1", ctx.path().to_str().unwrap()];

    // build
    let filler = fill(&home);
    let o = b.run(&build);
    assert_clear_failure(&o, "build");
    assert_store_sound(&b, "build on a full disk");
    std::fs::remove_file(&filler).unwrap();
    b.run(&build).ok();
    let o = b
        .run(&["run", "--rm", "big:1", "sh", "-c", "wc -c < /payload"])
        .ok();
    assert_eq!(o.stdout.trim(), (PAYLOAD_MIB << 20).to_string());

    // load: the image saved outside, removed, loaded onto a full disk.
    let archive = img_dir.path().join("big.tar");
    b.run(&["save", "-o", archive.to_str().unwrap(), "big:1"])
        .ok();
    b.run(&["rmi", "big:1"]).ok();
    b.run(&["image", "prune", "-a", "-f"]);
    let filler = fill(&home);
    let load = ["load", "-q", "-i", archive.to_str().unwrap()];
    let o = b.run(&load);
    assert_clear_failure(&o, "load");
    assert_store_sound(&b, "load on a full disk");
    std::fs::remove_file(&filler).unwrap();
    b.run(&load).ok();
    b.run(&["run", "--rm", "big:1", "true"]).ok();

    // pull
    match reg_missing {
        Some(why) => skip(&format!("the pull part: {why}")),
        None => {
            let reg = Registry::start(false);
            reg.seed(
                &format!("docker-archive:{}", archive.display()),
                "big/img:1",
                "",
            );
            b.run(&["rmi", "big:1"]).ok();
            b.run(&["image", "prune", "-a", "-f"]);
            let r = format!("{}/big/img:1", reg.host());
            let filler = fill(&home);
            let o = b.run(&["pull", "-q", &r]);
            assert_clear_failure(&o, "pull");
            assert_store_sound(&b, "pull on a full disk");
            std::fs::remove_file(&filler).unwrap();
            b.run(&["pull", "-q", &r]).ok();
            b.run(&["run", "--rm", &r, "true"]).ok();
        }
    }
    assert_store_sound(&b, "the end");
}
