//! Snapshot and restore of berth's real guest (kernel + agent root disk):
//! cold boot with `--snapshot-on-ready`, kill that VMM, `--restore` in a new
//! process and talk to the agent over the vsock muxer socket (protocol
//! handshake); the same through a warm-pool standby VMM (`--standby`).
//! A 2-vCPU snapshot restored with a disk in a slot that was empty; a
//! snapshot with an empty share slot restored with a folder in it.
//! Also: tampered and incompatible snapshots are refused.
// Boots guests with the KVM backend and an x86_64 kernel.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

mod common;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn skip(reason: &str) {
    common::skipped(reason);
}

fn vmm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth-vmm"))
}

fn spawn(mut cmd: Command, stderr: &Path) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(stderr).unwrap())
        .spawn()
        .expect("spawn berth-vmm")
}

fn report(serial: &Path, stderr: &Path) -> String {
    format!(
        "--- serial ---\n{}\n--- berth-vmm stderr ---\n{}",
        fs::read_to_string(serial).unwrap_or_default(),
        fs::read_to_string(stderr).unwrap_or_default()
    )
}

fn wait_for(child: &mut Child, file: &Path, text: &str, serial: &Path, stderr: &Path) -> Duration {
    let t0 = Instant::now();
    loop {
        if fs::read_to_string(file).unwrap_or_default().contains(text) {
            return t0.elapsed();
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "berth-vmm exited ({st}) before `{text}`\n{}",
                report(serial, stderr)
            );
        }
        if t0.elapsed() > common::TIMEOUT {
            let _ = child.kill();
            panic!("timed out waiting for `{text}`\n{}", report(serial, stderr));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `CONNECT 1024` through the muxer socket, then the protocol's Hello
/// (u32 BE length + JSON); returns the agent's HelloReply JSON.
fn handshake(uds: &Path) -> std::io::Result<String> {
    let mut s = UnixStream::connect(uds)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(b"CONNECT 1024\n")?;
    let ok = common::read_line(&mut s)?;
    if !ok.starts_with("OK ") {
        return Err(std::io::Error::other(format!("muxer answered {ok:?}")));
    }
    let hello = br#"{"version":1,"client":"berth-vmm snapshot test"}"#;
    s.write_all(&(hello.len() as u32).to_be_bytes())?;
    s.write_all(hello)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut reply)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Retries `CONNECT 1024` until the guest accepts it (the muxer's `OK`).
fn vsock_accepted(uds: &Path, child: &mut Child, log: &Path) {
    let t0 = Instant::now();
    loop {
        let ok = UnixStream::connect(uds).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            s.write_all(b"CONNECT 1024\n")?;
            common::read_line(&mut s)
        });
        match ok {
            Ok(l) if l.starts_with("OK ") => return,
            other => {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!(
                        "berth-vmm exited ({st}): {other:?}\n{}",
                        fs::read_to_string(log).unwrap_or_default()
                    );
                }
                assert!(t0.elapsed() < common::TIMEOUT, "no vsock accept: {other:?}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Retries the handshake until the agent answers.
fn handshake_until(uds: &Path, child: &mut Child, serial: &Path, stderr: &Path) -> String {
    let t0 = Instant::now();
    loop {
        match handshake(uds) {
            Ok(reply) => return reply,
            Err(e) => {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!("berth-vmm exited ({st}): {e}\n{}", report(serial, stderr));
                }
                if t0.elapsed() > common::TIMEOUT {
                    panic!("agent never answered: {e}\n{}", report(serial, stderr));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

#[test]
fn snapshot_at_ready_then_restore_in_a_new_process() {
    let _one = common::serialize();
    if !common::kvm_usable() {
        return skip("/dev/kvm is not available");
    }
    let Some(kernel) = common::find_kernel() else {
        return skip("no guest kernel (set BERTH_KERNEL or run kernel-config/build-kernel.sh)");
    };
    let Some(agent) = common::find_agent() else {
        return skip("no static berth-agent (run scripts/dev-build.sh)");
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vmm-snapshot");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let Some(rootfs) = common::write_agent_rootfs(&agent, &dir) else {
        return skip("mkfs.ext4 -d failed (install e2fsprogs)");
    };
    let snap = dir.join("snap");

    // Cold boot, snapshot when the agent logs "ready on vsock port".
    let serial1 = dir.join("serial-cold.log");
    let stderr1 = dir.join("vmm-cold.log");
    let mut cold = vmm();
    cold.arg("--kernel")
        .arg(&kernel)
        .arg("--disk")
        .arg(format!("{},ro", rootfs.display()))
        .args([
            "--cmdline",
            common::AGENT_CMDLINE,
            "--mem-mib",
            "256",
            "--rng",
            // The balloon's queues go through the snapshot too.
            "--balloon",
        ])
        .arg("--serial-log")
        .arg(&serial1)
        .arg("--vsock-uds")
        .arg(dir.join("cold.sock"))
        .arg("--snapshot-on-ready")
        .arg(&snap);
    let mut child = spawn(cold, &stderr1);
    let boot = wait_for(
        &mut child,
        &serial1,
        "ready on vsock port",
        &serial1,
        &stderr1,
    );
    wait_for(&mut child, &stderr1, "snapshot saved", &serial1, &stderr1);
    let saved_line = fs::read_to_string(&stderr1)
        .unwrap()
        .lines()
        .find(|l| l.contains("snapshot saved"))
        .unwrap()
        .to_string();
    let _ = child.kill();
    let _ = child.wait();
    let mem_file = snap.join("memory.bin");
    let apparent = fs::metadata(&mem_file).unwrap().len();
    let on_disk = Command::new("du")
        .args(["-k", mem_file.to_str().unwrap()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    println!("cold boot -> agent ready line: {:.2} s", boot.as_secs_f64());
    println!("{saved_line}");
    println!(
        "memory.bin: {} MiB apparent, {} KiB on disk; state.bin {} KiB",
        apparent >> 20,
        on_disk.split_whitespace().next().unwrap_or("?"),
        fs::metadata(snap.join("state.bin")).unwrap().len() / 1024
    );

    // Restore in a new process; the agent must answer the handshake.
    for run in 0..2 {
        let serial2 = dir.join(format!("serial-restore{run}.log"));
        let stderr2 = dir.join(format!("vmm-restore{run}.log"));
        let uds = dir.join(format!("restore{run}.sock"));
        let mut cmd = vmm();
        cmd.arg("--restore")
            .arg(&snap)
            .arg("--kernel")
            .arg(&kernel)
            .arg("--serial-log")
            .arg(&serial2)
            .arg("--vsock-uds")
            .arg(&uds);
        let t0 = Instant::now();
        let mut child = spawn(cmd, &stderr2);
        vsock_accepted(&uds, &mut child, &stderr2);
        let accepted = t0.elapsed();
        let reply = handshake_until(&uds, &mut child, &serial2, &stderr2);
        let answered = t0.elapsed();
        assert!(
            reply.contains("\"version\":1") && reply.contains("\"error\":null"),
            "HelloReply {reply}\n{}",
            report(&serial2, &stderr2)
        );
        println!(
            "restore #{run}: process start -> guest accepts vsock {:.1} ms, -> agent HelloReply {:.1} ms (cold boot {:.2} s)",
            accepted.as_secs_f64() * 1e3,
            answered.as_secs_f64() * 1e3,
            boot.as_secs_f64()
        );
        // A second connection works too (the muxer is live).
        handshake(&uds).expect("second handshake");
        let _ = child.kill();
        let _ = child.wait();
    }

    // Warm pool: a standby VMM made its VM and vCPUs ahead of time; the
    // request names the snapshot, and the agent must answer as above.
    for run in 0..2 {
        let serial3 = dir.join(format!("serial-standby{run}.log"));
        let stderr3 = dir.join(format!("vmm-standby{run}.log"));
        let log3 = dir.join(format!("vmm-standby{run}-after.log"));
        let uds = dir.join(format!("standby{run}.sock"));
        let ctl = dir.join(format!("standby{run}.ctl"));
        let mut cmd = vmm();
        cmd.arg("--standby")
            .arg(&ctl)
            .args(["--standby-idle", "120"]);
        let mut child = spawn(cmd, &stderr3);
        let t_ctl = Instant::now();
        let mut c = loop {
            match UnixStream::connect(&ctl) {
                Ok(c) => break c,
                Err(e) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        panic!("standby exited ({st}): {e}\n{}", report(&serial3, &stderr3));
                    }
                    assert!(t_ctl.elapsed() < common::TIMEOUT, "no standby socket: {e}");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        // Let the standby finish making its VM before the clock starts.
        std::thread::sleep(Duration::from_millis(200));
        let request = format!(
            "{{\"restore\":{:?},\"kernel\":{:?},\"serial_log\":{:?},\"vsock_uds\":{:?},\"log\":{:?}}}\n",
            snap, kernel, serial3, uds, log3
        );
        let t0 = Instant::now();
        c.write_all(request.as_bytes()).unwrap();
        c.set_read_timeout(Some(common::TIMEOUT)).unwrap();
        let ok = common::read_line(&mut c).unwrap();
        assert_eq!(ok, "OK\n", "{}", report(&serial3, &stderr3));
        assert!(!ctl.exists(), "the standby socket is gone once claimed");
        vsock_accepted(&uds, &mut child, &log3);
        let accepted = t0.elapsed();
        let reply = handshake_until(&uds, &mut child, &serial3, &log3);
        let answered = t0.elapsed();
        assert!(
            reply.contains("\"version\":1") && reply.contains("\"error\":null"),
            "HelloReply {reply}\n{}",
            report(&serial3, &log3)
        );
        println!(
            "warm-pool restore #{run}: request -> guest accepts vsock {:.1} ms, -> agent HelloReply {:.1} ms",
            accepted.as_secs_f64() * 1e3,
            answered.as_secs_f64() * 1e3
        );
        // The restored standby runs confined: every thread (the main one
        // under the standby filter, the VM's own under theirs stacked on
        // it; src/confine.rs).
        let mut threads = 0;
        for task in fs::read_dir(format!("/proc/{}/task", child.id()))
            .unwrap()
            .flatten()
        {
            let Ok(status) = fs::read_to_string(task.path().join("status")) else {
                continue; // the thread ended meanwhile
            };
            assert!(status.contains("Seccomp:\t2"), "not filtered:\n{status}");
            assert!(status.contains("NoNewPrivs:\t1"), "{status}");
            threads += 1;
        }
        assert!(threads >= 3, "main, vCPU and events threads: {threads}");
        let _ = child.kill();
        let _ = child.wait();
    }
    // A standby nobody claims exits by itself and removes its socket.
    let ctl = dir.join("idle.ctl");
    let mut cmd = vmm();
    cmd.arg("--standby").arg(&ctl).args(["--standby-idle", "1"]);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no request within 1 s"));
    assert!(!ctl.exists());

    // The real snapshot, tampered: the state checksum catches it.
    let bad = dir.join("tampered");
    fs::create_dir_all(&bad).unwrap();
    let mut state = fs::read(snap.join("state.bin")).unwrap();
    let n = state.len();
    state[n - 10] ^= 0x01;
    fs::write(bad.join("state.bin"), &state).unwrap();
    fs::hard_link(&mem_file, bad.join("memory.bin")).unwrap();
    let out = vmm()
        .arg("--restore")
        .arg(&bad)
        .args(["--serial-log", "/dev/null"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("checksum mismatch"), "{err}");

    // Another kernel than the one the guest booted.
    let out = vmm()
        .arg("--restore")
        .arg(&snap)
        .arg("--kernel")
        .arg(&rootfs)
        .args(["--serial-log", "/dev/null"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("booted kernel sha256"), "{err}");
}

/// One request to the agent after the handshake (`{"id":1,"request":…}`);
/// returns the response envelope's JSON.
fn agent_request(uds: &Path, request: &str) -> String {
    let mut s = UnixStream::connect(uds).unwrap();
    s.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    s.write_all(b"CONNECT 1024\n").unwrap();
    assert!(common::read_line(&mut s).unwrap().starts_with("OK "));
    let frame = |s: &mut UnixStream, body: &[u8]| {
        s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        s.write_all(body).unwrap();
    };
    let read = |s: &mut UnixStream| {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut reply).unwrap();
        String::from_utf8_lossy(&reply).into_owned()
    };
    frame(
        &mut s,
        br#"{"version":1,"client":"berth-vmm snapshot test"}"#,
    );
    read(&mut s);
    frame(
        &mut s,
        format!(r#"{{"id":1,"request":{request}}}"#).as_bytes(),
    );
    read(&mut s)
}

/// A snapshot of a 2-vCPU guest whose second disk is an empty slot,
/// restored with a real disk in the slot: both vCPUs come back, and the
/// guest learns the disk's capacity from the configuration-change
/// interrupt the VMM raises (berth's per-clone image disks).
#[test]
fn two_vcpu_snapshot_restored_with_a_disk_in_the_empty_slot() {
    let _one = common::serialize();
    if !common::kvm_usable() {
        return skip("/dev/kvm is not available");
    }
    let Some(kernel) = common::find_kernel() else {
        return skip("no guest kernel (set BERTH_KERNEL or run kernel-config/build-kernel.sh)");
    };
    let Some(agent) = common::find_agent() else {
        return skip("no static berth-agent (run scripts/dev-build.sh)");
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vmm-snapshot-smp");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let Some(rootfs) = common::write_agent_rootfs(&agent, &dir) else {
        return skip("mkfs.ext4 -d failed (install e2fsprogs)");
    };
    let empty = dir.join("empty.img");
    File::create(&empty).unwrap();
    // An image disk as the host makes them: an ext4 holding snapshots/.
    let tree = dir.join("image-tree");
    fs::create_dir_all(tree.join("snapshots")).unwrap();
    fs::create_dir_all(tree.join("blobs/sha256")).unwrap();
    let image = dir.join("image.ext4");
    File::create(&image).unwrap().set_len(8 << 20).unwrap();
    assert!(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-O", "^has_journal", "-d"])
        .arg(&tree)
        .arg(&image)
        .status()
        .unwrap()
        .success());
    let snap = dir.join("snap");
    let serial1 = dir.join("serial-cold.log");
    let stderr1 = dir.join("vmm-cold.log");
    let mut cold = vmm();
    cold.arg("--kernel")
        .arg(&kernel)
        .arg("--disk")
        .arg(format!("{},ro", rootfs.display()))
        .arg("--disk")
        .arg(format!("{},ro", empty.display()))
        .args([
            "--cmdline",
            common::AGENT_CMDLINE,
            "--mem-mib",
            "256",
            "--cpus",
            "2",
            "--rng",
        ])
        .arg("--serial-log")
        .arg(&serial1)
        .arg("--vsock-uds")
        .arg(dir.join("cold.sock"))
        .arg("--snapshot-on-ready")
        .arg(&snap);
    let mut child = spawn(cold, &stderr1);
    let boot = wait_for(
        &mut child,
        &serial1,
        "ready on vsock port",
        &serial1,
        &stderr1,
    );
    wait_for(&mut child, &stderr1, "snapshot saved", &serial1, &stderr1);
    let _ = child.kill();
    let _ = child.wait();

    let serial2 = dir.join("serial-restore.log");
    let stderr2 = dir.join("vmm-restore.log");
    let uds = dir.join("restore.sock");
    let mut cmd = vmm();
    cmd.arg("--restore")
        .arg(&snap)
        .arg("--kernel")
        .arg(&kernel)
        .arg("--disk")
        .arg(format!("{},ro", rootfs.display()))
        .arg("--disk")
        .arg(format!("{},ro", image.display()))
        .arg("--serial-log")
        .arg(&serial2)
        .arg("--vsock-uds")
        .arg(&uds);
    let t0 = Instant::now();
    let mut child = spawn(cmd, &stderr2);
    let reply = handshake_until(&uds, &mut child, &serial2, &stderr2);
    assert!(reply.contains("\"error\":null"), "{reply}");
    let info = agent_request(&uds, r#"{"type":"Info"}"#);
    assert!(
        info.contains("\"cpus\":2"),
        "{info}\n{}",
        report(&serial2, &stderr2)
    );
    let attach = agent_request(
        &uds,
        r#"{"type":"ImageDiskAttach","args":{"device":"/dev/vdb"}}"#,
    );
    assert!(
        attach.contains("\"Ok\"") && !attach.contains("\"Err\""),
        "{attach}\n{}",
        report(&serial2, &stderr2)
    );
    let refused = agent_request(
        &uds,
        r#"{"type":"ImageDiskAttach","args":{"device":"/dev/vda"}}"#,
    );
    assert!(refused.contains("is not a virtio disk"), "{refused}");
    println!(
        "2 vCPUs: cold boot -> ready {:.2} s; restore -> Info and image disk attached {:.2} s",
        boot.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// A snapshot taken with an empty, unmounted share slot (virtio-fs probed
/// by the guest driver, no FUSE session), restored with a host folder in
/// the slot under the same tag: the agent mounts it, which starts a FUSE
/// session with the restored VMM's own server (berth's own-VM `-v`). A
/// folder given under another tag is refused before the guest runs.
#[test]
fn a_snapshot_with_an_empty_share_slot_restores_with_a_folder() {
    let _one = common::serialize();
    if !common::kvm_usable() {
        return skip("/dev/kvm is not available");
    }
    let Some(kernel) = common::find_kernel() else {
        return skip("no guest kernel (set BERTH_KERNEL or run kernel-config/build-kernel.sh)");
    };
    let Some(agent) = common::find_agent() else {
        return skip("no static berth-agent (run scripts/dev-build.sh)");
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vmm-snapshot-share");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let Some(rootfs) = common::write_agent_rootfs(&agent, &dir) else {
        return skip("mkfs.ext4 -d failed (install e2fsprogs)");
    };
    let empty = dir.join("empty-share");
    let folder = dir.join("folder");
    fs::create_dir_all(&empty).unwrap();
    fs::create_dir_all(&folder).unwrap();
    fs::write(folder.join("hello.txt"), "from the host\n").unwrap();
    let snap = dir.join("snap");
    let serial1 = dir.join("serial-cold.log");
    let stderr1 = dir.join("vmm-cold.log");
    let mut cold = vmm();
    cold.arg("--kernel")
        .arg(&kernel)
        .arg("--disk")
        .arg(format!("{},ro", rootfs.display()))
        .arg("--fs")
        .arg(format!("tag=berth-vm-0,path={},ro", empty.display()))
        .args(["--cmdline", common::AGENT_CMDLINE, "--mem-mib", "256"])
        .arg("--serial-log")
        .arg(&serial1)
        .arg("--vsock-uds")
        .arg(dir.join("cold.sock"))
        .arg("--snapshot-on-ready")
        .arg(&snap);
    let mut child = spawn(cold, &stderr1);
    wait_for(&mut child, &stderr1, "snapshot saved", &serial1, &stderr1);
    let _ = child.kill();
    let _ = child.wait();

    let restore = |uds: &Path, serial: &Path, share: &str| {
        let mut cmd = vmm();
        cmd.arg("--restore")
            .arg(&snap)
            .arg("--kernel")
            .arg(&kernel)
            .arg("--disk")
            .arg(format!("{},ro", rootfs.display()))
            .arg("--fs")
            .arg(share)
            .arg("--serial-log")
            .arg(serial)
            .arg("--vsock-uds")
            .arg(uds);
        cmd
    };
    // The guest knows the slot by its tag: another one is refused.
    let o = restore(
        &dir.join("bad.sock"),
        &dir.join("serial-bad.log"),
        &format!("tag=other,path={}", folder.display()),
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("slot `berth-vm-0`"), "{err}");

    let serial2 = dir.join("serial-restore.log");
    let stderr2 = dir.join("vmm-restore.log");
    let uds = dir.join("restore.sock");
    let mut child = spawn(
        restore(
            &uds,
            &serial2,
            &format!("tag=berth-vm-0,path={}", folder.display()),
        ),
        &stderr2,
    );
    let reply = handshake_until(&uds, &mut child, &serial2, &stderr2);
    assert!(reply.contains("\"error\":null"), "{reply}");
    let mount = r#"{"type":"SharesMount","args":{"shares":[{"tag":"berth-vm-0","host_path":"/srv/folder","read_only":false}]}}"#;
    let mounted = agent_request(&uds, mount);
    assert!(
        mounted.contains("\"Ok\"") && !mounted.contains("\"Err\""),
        "{mounted}\n{}",
        report(&serial2, &stderr2)
    );
    let serial = fs::read_to_string(&serial2).unwrap_or_default();
    assert!(
        serial.contains("share berth-vm-0 at /host_mnt/srv/folder"),
        "{}",
        report(&serial2, &stderr2)
    );
    // Once per guest.
    let again = agent_request(&uds, mount);
    assert!(again.contains("already mounted"), "{again}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Refusals that need no guest: format version, VMM version, checksum.
#[test]
fn incompatible_snapshots_are_refused_with_a_clear_error() {
    if !common::kvm_usable() {
        return skip("/dev/kvm is not available");
    }
    use berth_vmm::snapshot::{encode, vmm_version, Header};
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("vmm-snapshot-refused");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let header = |version: String| Header {
        vmm_version: version,
        hypervisor: "kvm".into(),
        arch: "x86_64".into(),
        kernel_sha256: "00".repeat(32),
        tsc_khz: 1,
        mem_size: 1 << 20,
        memory_regions: vec![(0, 1 << 20)],
        state_len: 0,
        state_sha256: String::new(),
        created_unix: 0,
    };
    let restore = |bytes: &[u8]| -> String {
        fs::write(dir.join("state.bin"), bytes).unwrap();
        let out = vmm()
            .arg("--restore")
            .arg(&dir)
            .args(["--serial-log", "/dev/null"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let old = encode(header("berth-vmm 0.0.1".into()), &"state").unwrap();
    let err = restore(&old);
    assert!(
        err.contains("taken by berth-vmm 0.0.1") && err.contains("same VMM version"),
        "{err}"
    );

    let mut future = encode(header(vmm_version()), &"state").unwrap();
    future[8] = 99;
    let err = restore(&future);
    assert!(err.contains("format version 99 is not supported"), "{err}");

    let mut tampered = encode(header(vmm_version()), &"state").unwrap();
    let n = tampered.len();
    tampered[n - 2] = b'X';
    let err = restore(&tampered);
    assert!(err.contains("checksum mismatch"), "{err}");

    let err = restore(b"not a snapshot");
    assert!(err.contains("bad magic"), "{err}");
}
