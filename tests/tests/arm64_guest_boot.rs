//! The arm64 guest: the arm64 kernel (kernel-config/arm64.config) and an
//! initramfs holding only the cross-built aarch64 berth-agent as /init boot
//! under `qemu-system-aarch64 -M virt -cpu max` (TCG: no arm64 hardware
//! here), and the agent answers the protocol handshake.
//!
//! Transport: QEMU's virtio-vsock needs /dev/vhost-vsock, which this machine
//! lacks, so the agent serves on a virtio-console port instead
//! (`berth.serial=/dev/vport0p1`), which QEMU exposes as a Unix socket. The
//! protocol bytes are the same as over vsock.
//!
//! Inputs: `BERTH_KERNEL_ARM64` (default: newest
//! `~/.cache/berth/kernel/*/Image`, from `kernel-config/build-kernel.sh
//! arm64`), `BERTH_AGENT_ARM64` (default:
//! `target/aarch64-unknown-linux-gnu/{release,debug}/berth-agent`, from
//! `scripts/build-agent-arm64.sh`). Prints `SKIPPED: <reason>` when QEMU, the
//! kernel or the agent is missing. `BERTH_ARM64_BOOT_TIMEOUT` (seconds,
//! default 600) bounds the boot.
// Drives Linux host tools (QEMU).
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_protocol::frame::{read_frame, write_frame};
use berth_protocol::{Hello, HelloReply, PROTOCOL_VERSION};
use berth_tests::{have, skip, workspace};

fn newest(paths: impl Iterator<Item = PathBuf>) -> Option<PathBuf> {
    paths
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
}

fn arm64_kernel() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_KERNEL_ARM64") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("BERTH_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/berth")
        });
    let dirs = std::fs::read_dir(cache.join("kernel")).ok()?;
    newest(dirs.flatten().map(|e| e.path().join("Image")))
}

fn arm64_agent() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_AGENT_ARM64") {
        return Some(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("aarch64-unknown-linux-gnu");
    newest(
        ["release", "debug"]
            .iter()
            .map(|p| target.join(p).join("berth-agent")),
    )
}

/// A newc cpio archive: /dev, /dev/console (c 5:1) and /init.
fn initramfs(agent: &[u8]) -> Vec<u8> {
    fn entry(buf: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        buf.extend_from_slice(b"070701");
        for f in fields {
            buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        buf.extend_from_slice(name.as_bytes());
        buf.push(0);
        buf.resize(buf.len().next_multiple_of(4), 0);
        buf.extend_from_slice(data);
        buf.resize(buf.len().next_multiple_of(4), 0);
    }
    let mut buf = Vec::new();
    entry(&mut buf, 1, "dev", 0o040755, (0, 0), &[]);
    entry(&mut buf, 2, "dev/console", 0o020600, (5, 1), &[]);
    entry(&mut buf, 3, "init", 0o100755, (0, 0), agent);
    entry(&mut buf, 0, "TRAILER!!!", 0, (0, 0), &[]);
    buf
}

struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `log` contains `marker`; returns the log so far on timeout
/// or QEMU exit.
fn wait_for_marker(
    qemu: &mut Qemu,
    log: &Path,
    marker: &str,
    deadline: Instant,
) -> Result<(), String> {
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(marker) {
            return Ok(());
        }
        if let Ok(Some(status)) = qemu.0.try_wait() {
            return Err(format!("qemu exited ({status}); console:\n{text}"));
        }
        if Instant::now() > deadline {
            return Err(format!("timed out; console:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn arm64_guest_boots_and_agent_answers_handshake() {
    // The one accepted opt-out (see berth_tests::skip).
    if std::env::var("BERTH_CROSS_ARM64").is_ok_and(|v| v == "0") {
        return skip("BERTH_CROSS_ARM64=0: the arm64 guest was not built");
    }
    if !have("qemu-system-aarch64") {
        return skip("qemu-system-aarch64 missing (apt install qemu-system-arm)");
    }
    let Some(kernel) = arm64_kernel().filter(|p| p.is_file()) else {
        return skip("no arm64 kernel: run kernel-config/build-kernel.sh arm64");
    };
    let Some(agent) = arm64_agent().filter(|p| p.is_file()) else {
        return skip("no aarch64 berth-agent: run scripts/build-agent-arm64.sh");
    };
    let timeout = std::env::var("BERTH_ARM64_BOOT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);

    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initramfs.cpio");
    std::fs::write(&initrd, initramfs(&std::fs::read(&agent).unwrap())).unwrap();
    let console = dir.path().join("console.log");
    let sock = dir.path().join("agent.sock");
    let t0 = Instant::now();
    let mut qemu = Qemu(
        Command::new("qemu-system-aarch64")
            .args([
                "-M",
                "virt,gic-version=3",
                "-cpu",
                "max",
                "-smp",
                "1",
                "-m",
                "512",
            ])
            .args(["-nographic", "-nodefaults", "-no-user-config", "-no-reboot"])
            .arg("-chardev")
            .arg(format!("file,id=con,path={}", console.display()))
            .args(["-serial", "chardev:con"])
            .args(["-device", "virtio-serial-device"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=agent,path={},server=on,wait=off",
                sock.display()
            ))
            .args(["-device", "virtserialport,chardev=agent,name=berth"])
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args([
                "-append",
                "console=ttyAMA0 panic=-1 berth.serial=/dev/vport0p1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu-system-aarch64"),
    );
    let deadline = t0 + Duration::from_secs(timeout);
    if let Err(e) = wait_for_marker(&mut qemu, &console, "ready on serial", deadline) {
        let mut err = String::new();
        if let Some(mut s) = qemu.0.stderr.take() {
            let _ = qemu.0.kill();
            let _ = s.read_to_string(&mut err);
        }
        panic!("agent did not come up: {e}\nqemu stderr: {err}");
    }
    let ready = t0.elapsed();

    let mut stream = UnixStream::connect(&sock).expect("connect to the virtio-console socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write_frame(
        &mut stream,
        &Hello {
            version: PROTOCOL_VERSION,
            client: "berth-tests arm64".into(),
        },
    )
    .unwrap();
    stream.flush().unwrap();
    let reply: HelloReply = read_frame(&mut stream).expect("HelloReply from the arm64 agent");
    assert_eq!(reply.version, PROTOCOL_VERSION);
    assert!(reply.error.is_none(), "{:?}", reply.error);
    let lines: Vec<String> = BufReader::new(std::fs::File::open(&console).unwrap())
        .lines()
        .map_while(Result::ok)
        .collect();
    for l in lines.iter().filter(|l| l.contains("berth-agent")) {
        println!("  console: {}", l.trim_end());
    }
    let release = lines
        .iter()
        .find(|l| l.contains("Linux version"))
        .cloned()
        .unwrap_or_default();
    println!(
        "arm64 guest: agent {} ready after {:.1} s, handshake after {:.1} s ({})",
        reply.agent_version,
        ready.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        release.trim()
    );
}
