//! The focused VM smoke suite: the machine VM boots our kernel with the
//! agent as PID 1, loads an image over vsock, runs containers with the same
//! exit codes and streams as native placement, and keeps its images across
//! a clean stop and across SIGKILL of the VMM (with a named volume's
//! synced writes kept).
//!
//! Guest kernel code is emulated on kvm_pvm hosts (≈2 min boot, ≈1 min per
//! container run), so this is one sequential scenario. The whole container
//! suite runs in VM placement with `BERTH_TEST_ISOLATION=shared`.
// Drives the Linux builds of berth and berth-agent (native placement, KVM).
#![cfg(target_os = "linux")]

use berth_tests::{default_image, skip, timing, wait_status, Berth, DEFAULT_IMAGE};
use std::path::Path;
use std::time::Instant;

/// Fetches `/` from 127.0.0.1:`port` until the body holds `want` (the
/// server in the guest may still be starting); bounded.
fn wait_http(port: u16, want: &str) {
    wait_http_path(port, "/", want)
}

fn wait_http_path(port: u16, path: &str, want: &str) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(60)));
            let _ = s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes());
            last.clear();
            let _ = s.read_to_string(&mut last);
            if last.contains(want) {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    panic!("no {want:?} at {path} of the published port {port} in 300 s; last answer: {last:?}");
}

fn step(name: &str, t: Instant) {
    timing("vm_smoke", name, t);
}

#[test]
fn machine_vm_boots_runs_containers_and_keeps_images() {
    if !Path::new("/dev/kvm").exists() {
        return skip("/dev/kvm not available");
    }
    if !berth_tests::kernel_available() {
        return skip("no guest kernel built (kernel-config/build-kernel.sh)");
    }
    let mut b = Berth::new();
    b.isolation = "shared".into();
    // One request has taken minutes on a loaded emulated guest; a command
    // still running after 20 min is a hang, and fails here instead of
    // running the CI out of time.
    b.timeout = std::time::Duration::from_secs(1200);
    let t = Instant::now();
    let o = b.run(&["machine", "start", "--timings"]).ok();
    assert!(o.stdout.contains("launch → agent ready:"), "{}", o.stdout);
    eprintln!("{}", o.stdout);
    step("boot", t);
    assert_eq!(
        b.run(&["machine", "status"]).ok().stdout,
        format!("running (pid {})\n", b.vmm_pid().unwrap())
    );

    b.run(&["load", "-i", default_image().to_str().unwrap()])
        .ok();
    step("load", t);
    let info = b.run(&["info"]).ok().stdout;
    assert!(
        info.contains("Kernel Version: 6.12") && info.contains("-berth"),
        "{info}"
    );
    assert!(info.contains("Cgroup Version: 2"), "{info}");

    // The guest kernel's work counters, read around the next run: it
    // forks (the shim, the container's init) and faults in the guest.
    let counters = |b: &Berth| -> serde_json::Value {
        let o = b.run(&["machine", "counters", "--format", "json"]).ok();
        eprintln!("guest counters: {}", o.stdout.trim());
        serde_json::from_str(&o.stdout).expect("machine counters JSON")
    };
    let before = counters(&b);
    let o = b.run(&[
        "run",
        "--rm",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "uname -r; echo $$; echo err >&2; exit 3",
    ]);
    assert_eq!(o.code, 3, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(
        lines[0].ends_with("-berth"),
        "not the guest kernel: {}",
        o.stdout
    );
    assert_eq!(lines[1], "1");
    assert_eq!(o.stderr, "err\n");
    let after = counters(&b);
    for k in ["forks", "context_switches", "interrupts", "page_faults"] {
        let (x, y) = (before[k].as_u64(), after[k].as_u64());
        assert!(
            matches!((x, y), (Some(x), Some(y)) if y > x),
            "{k}: {x:?} -> {y:?}"
        );
    }
    // The guest's disk counters are there too (a fsync per container
    // start used to show here as flushes).
    assert!(after["disk_writes"].as_u64().is_some(), "{after}");
    step("run", t);

    // Kept (no --rm): `container prune` removes it further down.
    let o = b.run(&["run", "--name", "failed", DEFAULT_IMAGE, "no-such-command"]);
    assert_eq!(o.code, 127, "{}", o.stderr);
    let o = b.run_stdin(
        &[
            "run",
            "--rm",
            "-i",
            "-m",
            "64m",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory.max; wc -c",
        ],
        b"12345",
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        o.stdout.split_whitespace().collect::<Vec<_>>(),
        ["67108864", "5"]
    );
    step("exit codes, stdin, cgroup v2 limit", t);

    // Lifecycle verbs in the guest: logs, exec, pause (cgroup v2 freezer).
    // svc also serves HTTP on a published port, through the machine's
    // host forwarder.
    let web_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let publish = format!("127.0.0.1:{web_port}:8080");
    // A service on the host's loopback, reached from the container as
    // host.docker.internal through the VMM's network stack (egress).
    let host_srv = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host_srv.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut c in host_srv.incoming().flatten() {
            let mut req = [0u8; 1024];
            let _ = c.read(&mut req);
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 15\r\n\r\nfrom-the-host!\n");
        }
    });
    let script = format!(
        "mkdir -p /www; echo svc-web > /www/index.html; \
         wget -q -O /www/host.txt http://host.docker.internal:{host_port}/ || echo egress-failed > /www/host.txt; \
         httpd -p 8080 -h /www; trap 'echo got-hup' HUP; echo started; while :; do sleep 1; done"
    );
    b.run(&[
        "run",
        "-d",
        "--name",
        "svc",
        "-p",
        &publish,
        DEFAULT_IMAGE,
        "sh",
        "-c",
        &script,
    ])
    .ok();
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    while !b.run(&["logs", "svc"]).stdout.contains("started") {
        assert!(Instant::now() < deadline, "no log output from svc");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let o = b.run(&["exec", "svc", "sh", "-c", "echo $((6*7))"]).ok();
    assert_eq!(o.stdout, "42\n");
    b.run(&["pause", "svc"]).ok();
    assert!(b.run(&["ps"]).ok().stdout.contains("(Paused)"));
    b.run(&["unpause", "svc"]).ok();
    step("logs, exec, pause in the guest", t);

    // The other verbs once each in the guest.
    let top = b.run(&["top", "svc"]).ok().stdout;
    assert!(top.starts_with("UID") && top.contains("sleep"), "{top}");
    let stats = b.run(&["stats", "--no-stream", "svc"]).ok().stdout;
    assert!(
        stats.lines().nth(1).is_some_and(|l| l.contains("svc")),
        "{stats}"
    );
    b.run(&["update", "--pids-limit", "50", "--cpus", "0.5", "svc"])
        .ok();
    let o = b
        .run(&[
            "exec",
            "svc",
            "cat",
            "/sys/fs/cgroup/pids.max",
            "/sys/fs/cgroup/cpu.max",
        ])
        .ok();
    assert_eq!(o.stdout, "50\n50000 100000\n");
    assert_eq!(
        b.run(&["port", "svc"]).ok().stdout,
        format!("8080/tcp -> 127.0.0.1:{web_port}\n")
    );
    wait_http(web_port, "svc-web");
    wait_http_path(web_port, "/host.txt", "from-the-host!");
    b.run(&["rename", "svc", "svc-renamed"]).ok();
    b.run(&["rename", "svc-renamed", "svc"]).ok();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("payload.txt");
    std::fs::write(&f, "through the guest\n").unwrap();
    b.run(&["cp", f.to_str().unwrap(), "svc:/tmp/"]).ok();
    let back = dir.path().join("back.txt");
    b.run(&["cp", "svc:/tmp/payload.txt", back.to_str().unwrap()])
        .ok();
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "through the guest\n"
    );
    let o = b
        .run(&[
            "commit",
            "-c",
            "CMD [\"cat\", \"/tmp/payload.txt\"]",
            "svc",
            "vm/committed:1",
        ])
        .ok();
    assert!(o.stdout.starts_with("sha256:"), "{}", o.stdout);
    // Kept small on purpose: every container created in this emulated
    // guest costs about a minute. A run of the committed image is covered
    // natively in native_lifecycle.rs.
    step("top, stats, update, port, rename, cp, commit", t);

    // Signals, attach, restart, start, inspect: on the running svc, one
    // container start in all (each costs a minute here).
    // Generous deadlines: on a loaded kvm_pvm host one request here has
    // taken over 20 s, and the trap runs only after the current `sleep 1`.
    b.run(&["kill", "-s", "HUP", "svc"]).ok();
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    while !b.run(&["logs", "svc"]).stdout.contains("got-hup") {
        assert!(Instant::now() < deadline, "kill -s HUP did not reach svc");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let mut attached = b
        .command()
        .args(["attach", "svc"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = attached.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // HUP until the attached stream relays the trap's line.
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    loop {
        b.run(&["kill", "-s", "HUP", "svc"]).ok();
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_secs(15)) {
            assert_eq!(l, "got-hup");
            break;
        }
        assert!(Instant::now() < deadline, "attach relayed nothing");
    }
    let inspect = |c: &str| -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&b.run(&["inspect", c]).ok().stdout).unwrap();
        v[0].clone()
    };
    let st = inspect("svc");
    assert_eq!(st["State"]["Status"], "running");
    assert_eq!(st["HostConfig"]["PidsLimit"], 50);
    assert_eq!(st["HostConfig"]["NanoCpus"], 500_000_000);
    assert_eq!(st["HostConfig"]["CgroupnsMode"], "private");
    assert_eq!(st["Config"]["Cmd"][0], "sh");
    let pid = st["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0);
    // PID 1 ignores SIGTERM without a handler: restart -t 1 kills it (the
    // attached client sees 137) and starts it again.
    assert_eq!(b.run(&["restart", "-t", "1", "svc"]).ok().stdout, "svc\n");
    assert_eq!(
        wait_status(&mut attached, b.timeout, "berth attach svc").code(),
        Some(137)
    );
    let st = inspect("svc");
    assert_eq!(st["State"]["Status"], "running");
    assert_ne!(st["State"]["Pid"].as_i64().unwrap(), pid);
    // start: a no-op on a running container; a container whose command
    // does not exist fails to start again.
    assert_eq!(b.run(&["start", "svc"]).ok().stdout, "svc\n");
    let o = b.run(&["start", "-a", "failed"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("executable file not found"),
        "{}",
        o.stderr
    );
    let o = b.run(&["rm", "svc"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("cannot remove a running container"),
        "{}",
        o.stderr
    );
    step("kill -s, attach, restart, start, inspect", t);

    // A clean stop and start keeps the image store, and brings back a
    // container whose restart policy says so (docker after a daemon
    // restart).
    b.run(&["update", "--restart", "always", "svc"]).ok();
    b.run(&["machine", "stop"]).ok();
    assert!(b.vmm_pid().is_none());
    assert_eq!(b.run(&["machine", "status"]).code, 1);
    b.run(&["machine", "start"]).ok();
    assert!(b.run(&["images"]).ok().stdout.contains("berth/busybox"));
    // The policy thread starts svc again in the new boot; bounded, so a
    // hang shows as a failure with the guest's log, not as a stuck suite.
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let st = inspect("svc");
        if st["State"]["Status"] == "running" {
            break;
        }
        if Instant::now() > deadline {
            let log = b.run(&["machine", "logs"]).stdout;
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "svc (--restart always) not running 600 s after the machine restart: {}\nguest log (last lines, newest first):\n{}",
                st["State"],
                tail.join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    // Its published port works again, with no berth command running.
    wait_http(web_port, "svc-web");
    assert_eq!(b.run(&["rm", "-f", "svc"]).ok().stdout, "svc\n");
    assert!(!b.run(&["ps", "-a"]).ok().stdout.contains("svc"));
    let failed = inspect("failed")["Id"].as_str().unwrap().to_string();
    let o = b.run(&["container", "prune", "-f"]).ok();
    assert_eq!(
        o.stdout,
        format!("Deleted Containers:\n{failed}\n\nTotal reclaimed space: 0B\n")
    );
    assert_eq!(b.run(&["ps", "-aq"]).ok().stdout, "");
    step("stop/start keeps images, rm, prune", t);

    // SIGKILL of the VMM while a container writes to a named volume: the
    // data disk stays usable and nothing that was synced is lost. The
    // writer reports a line only after `sync`, so every reported number
    // must be in the volume after the crash.
    b.run(&[
        "run",
        "-d",
        "--name",
        "writer",
        "-v",
        "kept:/d",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i >> /d/log; sync; echo synced $i; done",
    ])
    .ok();
    let synced = |b: &Berth| -> u64 {
        b.run(&["logs", "writer"])
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("synced ")?.parse().ok())
            .max()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    while synced(&b) < 3 {
        assert!(Instant::now() < deadline, "the writer reported nothing");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let before = synced(&b);
    b.kill_vmm();
    b.run(&["machine", "start"]).ok();
    assert!(b.run(&["images"]).ok().stdout.contains("berth/busybox"));
    let reported = synced(&b).max(before);
    let o = b
        .run(&[
            "run",
            "--rm",
            "-v",
            "kept:/d",
            DEFAULT_IMAGE,
            "cat",
            "/d/log",
        ])
        .ok();
    // Lines past the last sync may be lost or cut short; synced ones not.
    let kept = o
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        kept >= reported.max(3),
        "synced lines lost: the writer reported {reported}, the volume ends at {kept}"
    );
    step("SIGKILL recovery, synced volume data kept", t);
    b.run(&["machine", "stop"]).ok();

    // Its own throw-away microVM, fed from the host image cache; with a
    // warm pool of one standby VMM (BERTH_VM_POOL), which the run after
    // it restores through.
    let vm_run = |timings: bool, script: &str| {
        let mut c = b.command();
        c.env("BERTH_VM_POOL", "1")
            .env("BERTH_VM_POOL_IDLE", "300")
            .args([
                "--isolation",
                "vm",
                "run",
                "--rm",
                DEFAULT_IMAGE,
                "sh",
                "-c",
            ])
            .arg(script);
        if timings {
            c.env("BERTH_VM_TIMINGS", "1");
        }
        berth_tests::Out::from(c.output().unwrap())
    };
    let o = vm_run(false, "uname -r; echo $$; echo e >&2; exit 5");
    assert_eq!(o.code, 5, "{}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(
        lines[0].ends_with("-berth") && lines[1] == "1",
        "{}",
        o.stdout
    );
    assert_eq!(o.stderr, "e\n");
    assert!(
        b.vmm_pid().is_none(),
        "--isolation vm must not start the machine"
    );
    assert_eq!(
        std::fs::read_dir(b.home.path().join("vms"))
            .map(|d| d.count())
            .unwrap_or(0),
        0,
        "throw-away VM left behind"
    );
    // As root the image came on a read-only image disk made on the host
    // (a failed attach would have warned on stderr, checked above).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let disks: Vec<_> = std::fs::read_dir(b.home.path().join("cache/image-disks"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            disks.iter().any(|n| n.to_string_lossy().ends_with(".ext4")),
            "no image disk made: {disks:?}"
        );
    }
    let p = vm_run(true, "echo pooled");
    assert_eq!((p.code, p.stdout.as_str()), (0, "pooled\n"), "{}", p.stderr);
    assert!(
        p.stderr.contains("berth: vm: clone (warm pool standby)"),
        "{}",
        p.stderr
    );
    // The standby that refilled the pool: started by this test's runs.
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let pool = b.home.path().join("pool");
        if String::from_utf8_lossy(&cmdline).contains(&*pool.to_string_lossy()) {
            // SAFETY: kill only sends a signal to the standby found above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    step("--isolation vm", t);
}
