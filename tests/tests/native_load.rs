#![cfg(target_os = "linux")]
//! Load (issue 24, item 4): 100 `run --rm` at once in the native engine,
//! every one with its own output and exit code, and afterwards nothing of
//! any of them left on the host: no cgroup, no mount, no veth, no process
//! (shim or container) and no record.
//!
//! Each run writes its container ID with `--cidfile`, so the leak check
//! looks for exactly these containers' traces, whatever else runs on the
//! host (other tests, other engines). A detached container checked first
//! shows that the check sees each kind of trace while a container lives.

use berth_tests::{run_rm_concurrently, Berth, DEFAULT_IMAGE};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The number of concurrent native runs.
const RUNS: usize = 100;

/// Where a container's traces could be left, as the paths or lines that
/// name it; empty when nothing is left.
fn traces(id: &str) -> Vec<String> {
    let mut left = Vec::new();
    // cgroups: v2 `/sys/fs/cgroup/berth/<id>`, v1 `<controller>/berth/<id>`.
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join("berth").join(id)];
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            dirs.push(e.path().join("berth").join(id));
        }
    }
    left.extend(
        dirs.into_iter()
            .filter(|d| d.exists())
            .map(|d| format!("cgroup {}", d.display())),
    );
    // Mounts (its rootfs overlay, its network namespace file).
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    left.extend(
        mountinfo
            .lines()
            .filter(|l| l.contains(id))
            .map(|l| format!("mount {l}")),
    );
    // Its veths: `vb` + the ID's first 10 characters + the endpoint.
    let veth = format!("vb{}", &id[..10]);
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&veth) {
                left.push(format!("link {name}"));
            }
        }
    }
    // Processes that name it (its shim: `shim --id <id>`).
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            if cmdline.split(|b| *b == 0).any(|a| a == id.as_bytes()) {
                left.push(format!(
                    "process {} {}",
                    e.file_name().to_string_lossy(),
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                ));
            }
        }
    }
    left
}

#[test]
fn a_hundred_concurrent_runs_all_succeed_and_leave_nothing() {
    let b = Arc::new(Berth::new().with_default_image());
    // The leak check sees a live container's traces (else it could not
    // fail): its cgroup, mounts, veth and shim, then none after `rm -f`.
    let live = b
        .run(&["run", "-d", DEFAULT_IMAGE, "sleep", "600"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let seen = traces(&live);
    for kind in ["cgroup ", "mount ", "link ", "process "] {
        assert!(
            seen.iter().any(|t| t.starts_with(kind)),
            "no {kind}trace of a running container:\n{}",
            seen.join("\n")
        );
    }
    b.run(&["rm", "-f", &live]).ok();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !traces(&live).is_empty() {
        assert!(
            Instant::now() < deadline,
            "rm -f left:\n{}",
            traces(&live).join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let t = Instant::now();
    let ids = run_rm_concurrently(&b, RUNS);
    eprintln!(
        "native_load: {RUNS} concurrent run --rm done in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // None of them left anything behind.
    let ps = b.run(&["ps", "-a", "-q", "--no-trunc"]).ok().stdout;
    for id in &ids {
        assert!(!ps.contains(id.as_str()), "{id} is still listed:\n{ps}");
    }
    // Teardown after the answer (a shim's last unmounts) may trail the
    // CLI's exit by a moment; a leak never goes.
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &ids {
        loop {
            let left = traces(id);
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{id} left:\n{}", left.join("\n"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The engine still serves: one more run after the load.
    let o = b.run(&["run", "--rm", DEFAULT_IMAGE, "echo", "after"]).ok();
    assert_eq!(o.stdout, "after\n");
}
