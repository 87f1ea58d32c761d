//! Live file events in the machine VM (issue 18, item 4): host changes
//! under a shared folder reach an inotify watcher in a container, each with
//! its event type, in order for each path, nested directories included,
//! without duplicates (see docs/file-events.md for how). Changes in a
//! shared folder no container bind-mounts are not sent to the guest.
//!
//! The watcher is `tests/probe/inotify_watch.c` (static; Debian's busybox
//! has no inotifyd), run from a second shared folder. One container, one
//! machine boot: the breadth of the translation is in the VMM's unit and
//! raw-FUSE tests.
#![cfg(target_os = "linux")]

use berth_tests::{skip, timing, Berth, DEFAULT_IMAGE};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Rounds of the host's operation mix: 7 operations each.
const ROUNDS: usize = 72;
/// The directories the files go to, in turn (nested).
const DIRS: [&str; 4] = ["", "a", "a/b", "a/b/c"];
/// Rounds between two operations on one path (a path lives a few rounds,
/// so the host watcher reads each object's identity while it exists).
const STAGE: usize = 3;

fn dir_of(i: usize) -> &'static str {
    DIRS[i % DIRS.len()]
}

fn rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[test]
fn host_changes_reach_a_containers_inotify_watcher() {
    if !Path::new("/dev/kvm").exists() {
        return skip("/dev/kvm not available");
    }
    if !berth_tests::kernel_available() {
        return skip("no guest kernel built (kernel-config/build-kernel.sh)");
    }
    if !berth_tests::have("gcc") {
        return skip("gcc (for the static watcher) not installed");
    }
    let t = Instant::now();
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = probe_dir.path().join("inotify_watch");
    let o = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&probe)
        .arg(berth_tests::workspace().join("tests/probe/inotify_watch.c"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The machine shares `shared`; the container bind-mounts only its
    // `bound/`, and the host also changes `other/` beside it all along.
    let shared = tempfile::tempdir().unwrap();
    let w = &shared.path().join("bound");
    let other = shared.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for d in DIRS.iter() {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    // Live events are on by default. The machine shares only this test's
    // two folders: the VMM watches only what containers bind-mount, but a
    // small share keeps the test's own setup out of the picture.
    std::env::remove_var("BERTH_SHARE_EVENTS");
    std::env::set_var(
        "BERTH_MACHINE_SHARES",
        std::env::join_paths([shared.path(), probe_dir.path()]).unwrap(),
    );
    let mut b = Berth::new();
    b.isolation = "shared".into();
    b.timeout = Duration::from_secs(1200);
    let b = b.with_default_image();
    timing("vm_share_events", "machine booted", t);

    let wmount = format!("{}:/w", w.display());
    let pmount = format!("{}:/p:ro", probe_dir.path().display());
    let mut expected: BTreeMap<String, Vec<char>> = BTreeMap::new();
    let mut ops = 0usize;
    let mut other_ops = 0usize;
    let out = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            b.run(&[
                "run",
                "--rm",
                "-v",
                &wmount,
                "-v",
                &pmount,
                DEFAULT_IMAGE,
                "/p/inotify_watch",
                "/w",
            ])
        });
        // The watcher says it is ready by creating .ready (through the
        // share: the host sees it).
        let deadline = Instant::now() + Duration::from_secs(900);
        while !w.join(".ready").exists() {
            assert!(
                Instant::now() < deadline && !watcher.is_finished(),
                "the watcher did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        timing("vm_share_events", "watcher ready", t);
        let f = |i: usize| rel(dir_of(i), &format!("f{i}"));
        let g = |i: usize| rel(dir_of(i), &format!("g{i}"));
        let sd = |i: usize| rel(dir_of(i), &format!("s{i}"));
        let mut exp = |p: String, k: char| expected.entry(p).or_default().push(k);
        // Round r: create f[r], modify f[r-S], chmod f[r-2S], rename
        // f[r-3S] -> g, delete g[r-4S], mkdir s[r], rmdir s[r-S].
        for r in 0..ROUNDS + 4 * STAGE {
            let at = |k: usize| r.checked_sub(k * STAGE).filter(|i| *i < ROUNDS);
            if let Some(i) = at(0) {
                std::fs::File::create(w.join(f(i))).unwrap();
                exp(f(i), 'n');
                ops += 1;
            }
            if let Some(i) = at(1) {
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(w.join(f(i)))
                    .unwrap();
                file.write_all(b"edit\n").unwrap();
                exp(f(i), 'c');
                ops += 1;
            }
            if let Some(i) = at(2) {
                std::fs::set_permissions(w.join(f(i)), std::fs::Permissions::from_mode(0o600))
                    .unwrap();
                exp(f(i), 'e');
                ops += 1;
            }
            if let Some(i) = at(3) {
                std::fs::rename(w.join(f(i)), w.join(g(i))).unwrap();
                exp(f(i), 'm');
                exp(g(i), 'y');
                ops += 1;
            }
            if let Some(i) = at(4) {
                std::fs::remove_file(w.join(g(i))).unwrap();
                exp(g(i), 'd');
                ops += 1;
            }
            if let Some(i) = at(0) {
                std::fs::create_dir(w.join(sd(i))).unwrap();
                exp(sd(i), 'n');
                ops += 1;
            }
            if let Some(i) = at(1) {
                std::fs::remove_dir(w.join(sd(i))).unwrap();
                exp(sd(i), 'd');
                ops += 1;
            }
            // Beside it, in the share but bound by no container.
            let o = other.join(format!("o{r}"));
            std::fs::write(&o, b"x").unwrap();
            std::fs::remove_file(&o).unwrap();
            other_ops += 2;
            // Paced like a fast editor, not a benchmark: each host object
            // lives a few milliseconds at least.
            std::thread::sleep(Duration::from_millis(2));
        }
        std::fs::File::create(w.join("END")).unwrap();
        watcher.join().unwrap()
    });
    timing("vm_share_events", "events seen", t);
    let out = out.ok();
    assert!(ops >= 500, "{ops} operations");
    let mut seen: BTreeMap<String, Vec<char>> = BTreeMap::new();
    for line in out.stdout.lines() {
        assert_ne!(line, "overflow", "the guest's inotify queue overflowed");
        let (k, p) = line.split_at(1);
        let p = p.trim_start();
        if p == ".ready" || p == "END" {
            continue;
        }
        seen.entry(p.to_string())
            .or_default()
            .push(k.chars().next().unwrap());
    }
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(p, e)| seen.get(*p) != Some(e))
        .map(|(p, e)| format!("{p}: expected {e:?}, saw {:?}", seen.get(p)))
        .collect();
    let extra: Vec<_> = seen.keys().filter(|p| !expected.contains_key(*p)).collect();
    assert!(
        wrong.is_empty() && extra.is_empty(),
        "{} of {} paths wrong, extra paths {extra:?}:\n{}",
        wrong.len(),
        expected.len(),
        wrong.join("\n")
    );
    // When the container has ended the agent asks the VMM to watch
    // nothing, and the VMM logs how many events it sent in all: those of
    // bound/ (each operation, and END), none of other/.
    let log = b.home.path().join("machine/vmm.log");
    let mut sent = None;
    berth_tests::wait_for("the VMM to stop watching", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("share events: watching ["))
            .collect();
        let watched = lines.iter().position(|l| !l.contains("watching [];"));
        let Some(last) = lines.last().filter(|l| l.contains("watching [];")) else {
            return false;
        };
        if watched.is_none() {
            return false;
        }
        sent = last
            .rsplit("; ")
            .next()
            .and_then(|t| t.strip_suffix(" sent"))
            .and_then(|n| n.parse::<usize>().ok());
        true
    });
    let sent = sent.expect("a count of events sent in vmm.log");
    assert!(
        sent >= ops && sent < ops + other_ops,
        "{sent} events sent for {ops} operations in the bound folder and {other_ops} beside it"
    );
    println!(
        "{ops} host operations, {} events, every path in order; {sent} events sent, \
         none of {other_ops} operations in a shared folder no container binds",
        expected.values().map(Vec::len).sum::<usize>()
    );
}
