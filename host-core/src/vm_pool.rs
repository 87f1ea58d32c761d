//! The warm pool of `--isolation vm`: idle `berth-vmm --standby` processes
//! that made their VM (irqchip, PIT, vCPUs) ahead of time and wait on a
//! socket under `$BERTH_HOME/pool/cpus-<n>/` for the snapshot to restore
//! (vmm `standby.rs`). A clone claims one by connecting and sending the
//! restore request; the standby removes its socket when a request arrives,
//! so two clones never get the same one (the loser reads end of file and
//! tries the next). After each clone the pool is filled up again, and
//! standbys nobody claims exit after their idle time.
//!
//! Off by default: `BERTH_VM_POOL=<n>` keeps n standbys. On this project's
//! kvm_pvm test machine a standby saves nothing measurable (the guest, not
//! VM creation, is the cost there), and a pool means idle processes
//! outliving the command; on hardware KVM making the VM and vCPUs is a
//! part of a clone's start that the pool takes off the critical path.

use anyhow::Result;
use std::path::{Path, PathBuf};

/// Standbys to keep per vCPU count (`BERTH_VM_POOL`, default 0: no pool).
pub fn size() -> usize {
    crate::env::parse(crate::env::VM_POOL).unwrap_or(0).min(16)
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn dir(cpus: u32) -> PathBuf {
    crate::paths::state_dir()
        .join("pool")
        .join(format!("cpus-{cpus}"))
}

/// What a standby is asked to restore (vmm `standby::StandbyRequest`).
#[derive(serde::Serialize)]
pub struct Request<'a> {
    pub restore: &'a Path,
    pub kernel: &'a Path,
    pub serial_log: &'a Path,
    pub vsock_uds: &'a Path,
    pub disks: Vec<String>,
    pub log: &'a Path,
}

/// Hands `request` to an idle standby with `cpus` vCPUs; its PID when one
/// took it. Sockets of standbys that are gone are removed on the way.
#[cfg(not(target_os = "linux"))]
pub fn claim(_cpus: u32, _request: &Request) -> Option<i32> {
    None
}

/// Standbys are made on Linux (KVM) hosts only.
#[cfg(not(target_os = "linux"))]
pub fn refill(_cpus: u32) -> Result<()> {
    Ok(())
}

/// Hands `request` to an idle standby with `cpus` vCPUs; its PID when one
/// took it. Sockets of standbys that are gone are removed on the way.
#[cfg(target_os = "linux")]
pub fn claim(cpus: u32, request: &Request) -> Option<i32> {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    if size() == 0 {
        return None;
    }
    let body = serde_json::to_vec(request).ok()?;
    let entries = std::fs::read_dir(dir(cpus)).ok()?;
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("sock") {
            continue;
        }
        let Ok(mut s) = UnixStream::connect(&path) else {
            // Nobody listens: a standby that was killed.
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let pid = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
            .map(|c| c.pid())
            .ok();
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
        if s.write_all(&body).and_then(|_| s.write_all(b"\n")).is_err() {
            continue;
        }
        let mut line = String::new();
        match BufReader::new(&s).read_line(&mut line) {
            Ok(_) if line == "OK\n" => {
                if let Some(pid) = pid.filter(|p| *p > 0) {
                    return Some(pid);
                }
            }
            // Another clone was first (end of file), or the standby
            // refused the request (`ERROR …`, in its log): try the next.
            _ => continue,
        }
    }
    None
}

/// Starts standbys until `size()` wait for `cpus`-vCPU clones.
#[cfg(target_os = "linux")]
pub fn refill(cpus: u32) -> Result<()> {
    use anyhow::Context;
    let want = size();
    if want == 0 {
        return Ok(());
    }
    let dir = dir(cpus);
    std::fs::create_dir_all(&dir)?;
    let have = std::fs::read_dir(&dir)?
        .flatten()
        .filter(|e| e.path().extension().and_then(|x| x.to_str()) == Some("sock"))
        .count();
    let idle: u64 = crate::env::parse(crate::env::VM_POOL_IDLE).unwrap_or(600);
    for _ in have..want {
        let mut name = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut name))
            .context("reading /dev/urandom")?;
        let sock = dir.join(format!("{}.sock", hex::encode(name)));
        let mut cmd = std::process::Command::new(crate::paths::vmm_binary()?);
        cmd.arg("--standby")
            .arg(&sock)
            .arg("--cpus")
            .arg(cpus.to_string())
            .arg("--standby-idle")
            .arg(idle.to_string())
            .arg("--timings")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        crate::platform::detach(&mut cmd);
        // Reaped by init once it exits: it outlives this command.
        std::mem::forget(cmd.spawn().context("starting a standby berth-vmm")?);
    }
    Ok(())
}
