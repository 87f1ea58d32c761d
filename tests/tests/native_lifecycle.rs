#![cfg(target_os = "linux")]
//! The docker verbs on existing containers, in native placement: logs,
//! exec, start/stop/restart/kill/wait, rename, pause/unpause, top, stats,
//! update, port, commit, cp, attach, prune, ps filters, restart policies
//! and the extra `run` flags.
// Drives the Linux builds of berth and berth-agent (native placement, KVM).
#![cfg(target_os = "linux")]

use berth_tests::{have, skip, wait_for, Berth, DEFAULT_IMAGE};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A container script that prints `wait` until /go exists, then `late`,
/// and exits with `code`: an attached client sees `wait` once it is
/// connected, whatever the machine's load.
fn gated(code: i32) -> String {
    format!("while [ ! -e /go ]; do echo wait; sleep 0.1; done; echo late; exit {code}")
}

/// Runs `berth args` (an attach), waits until it relayed a `wait` line,
/// creates /go in `container`, and returns (exit code, stdout, stderr).
fn attach_then_release(b: &Berth, args: &[&str], container: &str) -> (i32, String, String) {
    let mut child = b
        .command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(out).lines() {
            let line = line.unwrap_or_default();
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let first = rx.recv_timeout(Duration::from_secs(120));
    assert_eq!(first.as_deref(), Ok("wait"), "{args:?} relayed nothing");
    b.run(&["exec", container, "touch", "/go"]).ok();
    let status = berth_tests::wait_status(&mut child, Duration::from_secs(120), "attach");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let stdout = reader.join().unwrap();
    assert!(
        stdout.lines().all(|l| l == "wait" || l == "late"),
        "{stdout}"
    );
    (status.code().unwrap_or(-1), stdout, err)
}

fn detached(b: &Berth, args: &[&str]) -> String {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    let id = b.run(&a).ok().stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    id
}

#[test]
fn logs_keep_streams_apart_and_follow_a_running_container() {
    let b = Berth::new().with_default_image();
    detached(
        &b,
        &[
            "--name",
            "talker",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "echo first; echo oops >&2; printf 'no newline'; sleep 1; echo; i=0; while [ $i -lt 5 ]; do echo tick $i; i=$((i+1)); sleep 0.2; done; touch /done; sleep 3",
        ],
    );
    // -f: lines arrive while the container is still running.
    let mut follow = b
        .command()
        .args(["logs", "-f", "talker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "first");
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push(l.clone());
        if l == "tick 2" {
            break;
        }
    }
    assert!(
        b.run(&["ps", "-q", "--filter", "name=talker"])
            .ok()
            .stdout
            .trim()
            .len()
            == 12,
        "container should still run while logs -f streams"
    );
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let st = follow.wait().unwrap();
    assert!(st.success());
    assert_eq!(seen[0], "no newline");
    assert_eq!(rest, ["tick 3", "tick 4"]);

    let o = b.run(&["logs", "talker"]).ok();
    assert!(
        o.stdout.starts_with("first\nno newline\ntick 0\n"),
        "{}",
        o.stdout
    );
    assert_eq!(o.stderr, "oops\n");
    let o = b.run(&["logs", "--tail", "2", "talker"]).ok();
    assert_eq!(o.stdout, "tick 3\ntick 4\n");
    let o = b.run(&["logs", "-n", "1", "-t", "talker"]).ok();
    let (ts, line) = o.stdout.trim_end().split_once(' ').unwrap();
    assert_eq!(line, "tick 4");
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
        "{ts}"
    );
    let o = b
        .run(&["logs", "--since", "2099-01-01T00:00:00Z", "talker"])
        .ok();
    assert_eq!(o.stdout, "");
    let o = b
        .run(&["logs", "--until", "2000-01-01T00:00:00Z", "talker"])
        .ok();
    assert_eq!(o.stdout, "");
    let o = b.run(&["logs", "--since", "1h", "talker"]).ok();
    assert!(o.stdout.contains("tick 4"));
    let o = b.run(&["logs", "--since", "yesterday-ish", "talker"]);
    assert_eq!(o.code, 1);
    let o = b.run(&["logs", "nope"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("No such container: nope"), "{}", o.stderr);
}

#[test]
fn logs_rotate_by_size() {
    let b = Berth::new().with_default_image();
    b.run(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=20k",
        "--log-opt",
        "max-file=2",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done",
    ])
    .ok();
    let dir = b.native_root().join("containers");
    let cdir = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let total: u64 = std::fs::read_dir(&cdir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("container.log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(total <= 2 * 20 * 1024 + 4096, "logs use {total} bytes");
    assert!(cdir.join("container.log.1").exists());
    assert!(!cdir.join("container.log.2").exists());
    let out = b.run(&["logs", "chatty"]).ok().stdout;
    let nums: Vec<u32> = out
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert_eq!(*nums.last().unwrap(), 1999);
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(nums.len() < 2000, "old lines were rotated away");
    let o = b.run(&["run", "--log-opt", "max-size=lots", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
}

#[test]
fn stop_sends_sigterm_then_sigkill_after_the_timeout() {
    let b = Berth::new().with_default_image();
    // PID 1 without a TERM handler ignores SIGTERM: stop must escalate.
    detached(&b, &["--name", "stubborn", DEFAULT_IMAGE, "sleep", "300"]);
    let t = Instant::now();
    let o = b.run(&["stop", "-t", "2", "stubborn"]).ok();
    let took = t.elapsed();
    assert_eq!(o.stdout, "stubborn\n");
    assert!(
        took >= Duration::from_secs(2),
        "stop returned after {took:?}"
    );
    assert_eq!(b.run(&["wait", "stubborn"]).ok().stdout, "137\n");
    let st = b.inspect("stubborn");
    assert_eq!(st["State"]["Status"], "exited");
    assert_eq!(st["State"]["ExitCode"], 137);
    // A process that handles SIGTERM exits with its own code.
    detached(
        &b,
        &[
            "--name",
            "polite",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.1; done",
        ],
    );
    b.run(&["stop", "polite"]).ok();
    assert_eq!(b.run(&["wait", "polite"]).ok().stdout, "7\n");
    // --stop-signal is used instead of SIGTERM.
    detached(
        &b,
        &[
            "--name",
            "usr1",
            "--stop-signal",
            "USR1",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "trap 'exit 9' USR1; while :; do sleep 0.1; done",
        ],
    );
    b.run(&["stop", "-t", "30", "usr1"]).ok();
    assert_eq!(b.run(&["wait", "usr1"]).ok().stdout, "9\n");
    // Stopping a stopped container is fine; an unknown one is not.
    b.run(&["stop", "polite"]).ok();
    let o = b.run(&["stop", "ghost"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stderr,
        "Error response from daemon: No such container: ghost\n"
    );
}

#[test]
fn start_restart_kill_wait() {
    let b = Berth::new().with_default_image();
    b.run(&[
        "run",
        "--name",
        "once",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "echo ran; exit 3",
    ]);
    assert_eq!(b.run(&["wait", "once"]).ok().stdout, "3\n");
    // start runs the same container again (same writable layer).
    assert_eq!(b.run(&["start", "once"]).ok().stdout, "once\n");
    assert_eq!(b.run(&["wait", "once"]).ok().stdout, "3\n");
    assert_eq!(b.run(&["logs", "once"]).ok().stdout, "ran\nran\n");
    let o = b.run(&["start", "-a", "once"]);
    assert_eq!(o.code, 3);
    assert_eq!(o.stdout, "ran\n");

    let id = detached(
        &b,
        &[
            "--name",
            "svc",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "trap 'echo got-hup' HUP; echo up; while :; do sleep 0.1; done",
        ],
    );
    wait_for("svc output", || {
        b.run(&["logs", "svc"]).stdout.contains("up")
    });
    b.run(&["kill", "-s", "HUP", "svc"]).ok();
    wait_for("the HUP trap", || {
        b.run(&["logs", "svc"]).stdout.contains("got-hup")
    });
    let pid_before = b.inspect("svc")["State"]["Pid"].as_i64().unwrap();
    assert_eq!(b.run(&["restart", "-t", "1", "svc"]).ok().stdout, "svc\n");
    let st = b.inspect(&id[..8]);
    assert_eq!(st["State"]["Status"], "running");
    assert_ne!(st["State"]["Pid"].as_i64().unwrap(), pid_before);
    assert_eq!(b.run(&["kill", "svc"]).ok().stdout, "svc\n");
    assert_eq!(b.run(&["wait", &id]).ok().stdout, "137\n");
    let o = b.run(&["kill", "svc"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is not running"), "{}", o.stderr);
    let o = b.run(&["kill", "-s", "NOPE", "svc"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("Invalid signal"), "{}", o.stderr);
    let o = b.run(&["start", "-a", "ghost"]);
    assert_eq!(o.code, 1);
    assert_eq!(o.stderr, "Error: No such container: ghost\n");
}

#[test]
fn start_attaches_stdin_and_output() {
    let b = Berth::new().with_default_image();
    // -i at run: `start -i` (and -ai) feeds stdin to the next run too.
    let o = b.run_stdin(
        &[
            "run",
            "-i",
            "--name",
            "upper",
            DEFAULT_IMAGE,
            "tr",
            "a-z",
            "A-Z",
        ],
        b"hello\n",
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, "HELLO\n"), "{}", o.stderr);
    let o = b.run_stdin(&["start", "-i", "upper"], b"again\n");
    assert_eq!((o.code, o.stdout.as_str()), (0, "AGAIN\n"), "{}", o.stderr);
    let o = b.run_stdin(&["start", "-ai", "upper"], b"third\n");
    assert_eq!((o.code, o.stdout.as_str()), (0, "THIRD\n"), "{}", o.stderr);
    assert_eq!(
        b.run(&["logs", "upper"]).ok().stdout,
        "HELLO\nAGAIN\nTHIRD\n"
    );
    // -a relays stdout and stderr apart and returns the exit code.
    b.run(&[
        "run",
        "--name",
        "both",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 4",
    ]);
    let o = b.run(&["start", "-a", "both"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (4, "out\n", "err\n")
    );
    // On a running container: start is a no-op, start -a attaches.
    detached(
        &b,
        &["--name", "late", DEFAULT_IMAGE, "sh", "-c", &gated(5)],
    );
    assert_eq!(b.run(&["start", "late"]).ok().stdout, "late\n");
    let (code, stdout, err) = attach_then_release(&b, &["start", "-a", "late"], "late");
    assert_eq!(code, 5, "{err}");
    assert!(stdout.ends_with("wait\nlate\n"), "{stdout}");
    // Right after it ended (its shim may still be tearing down): starts
    // anew, and /go is still there.
    let o = b.run(&["start", "-a", "late"]);
    assert_eq!((o.code, o.stdout.as_str()), (5, "late\n"), "{}", o.stderr);
    // A paused container is not started; several at once report failures.
    detached(&b, &["--name", "held", DEFAULT_IMAGE, "sleep", "300"]);
    b.run(&["pause", "held"]).ok();
    let o = b.run(&["start", "held"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("cannot start a paused container, try unpause instead"),
        "{}",
        o.stderr
    );
    b.run(&["unpause", "held"]).ok();
    let o = b.run(&["start", "held", "ghost", "both"]);
    assert_eq!((o.code, o.stdout.as_str()), (1, "held\nboth\n"));
    assert_eq!(
        o.stderr,
        "Error response from daemon: No such container: ghost\nError: failed to start containers: ghost\n"
    );
}

/// The CPU quota the container sees in its cgroup: `cpu.max` (v2) or
/// `cpu.cfs_quota_us` (v1), as "<quota> <period>" or "max".
fn cpu_quota(b: &Berth, c: &str) -> String {
    let o = b
        .run(&[
            "exec",
            c,
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us)",
        ])
        .ok();
    o.stdout.trim().replace("-1 100000", "max 100000")
}

#[test]
fn update_changes_cpu_memory_and_pids_limits_live() {
    let b = Berth::new().with_default_image();
    detached(
        &b,
        &[
            "--name",
            "tuned",
            "--cpus",
            "0.5",
            "-m",
            "64m",
            DEFAULT_IMAGE,
            "sleep",
            "300",
        ],
    );
    let pid = b.inspect("tuned")["State"]["Pid"].as_i64().unwrap();
    assert_eq!(cpu_quota(&b, "tuned"), "50000 100000");
    assert_eq!(
        b.run(&["update", "--cpus", "1.5", "tuned"]).ok().stdout,
        "tuned\n"
    );
    assert_eq!(cpu_quota(&b, "tuned"), "150000 100000");
    b.run(&[
        "update",
        "--cpus",
        "0.25",
        "-m",
        "96m",
        "--pids-limit",
        "33",
        "tuned",
    ])
    .ok();
    assert_eq!(cpu_quota(&b, "tuned"), "25000 100000");
    let o = b
        .run(&[
            "exec",
            "tuned",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max",
        ])
        .ok();
    assert_eq!(o.stdout, format!("{}\n33\n", 96 * 1024 * 1024));
    let st = b.inspect("tuned");
    assert_eq!(st["HostConfig"]["NanoCpus"], 250_000_000);
    assert_eq!(
        st["State"]["Pid"].as_i64().unwrap(),
        pid,
        "updated in place"
    );
    // Out of range, unparsable, or nothing to update.
    let o = b.run(&["update", "--cpus", "1000", "tuned"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("Range of CPUs is from 0.01 to"),
        "{}",
        o.stderr
    );
    let o = b.run(&["update", "--cpus", "-1", "tuned"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    let o = b.run(&["update", "--cpus", "lots", "tuned"]);
    assert_eq!(o.code, 125);
    let o = b.run(&["update", "tuned"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("must provide one or more flags"),
        "{}",
        o.stderr
    );
    assert_eq!(cpu_quota(&b, "tuned"), "25000 100000");
    // The new limits hold for the next run too.
    b.run(&["restart", "-t", "0", "tuned"]).ok();
    assert_eq!(cpu_quota(&b, "tuned"), "25000 100000");
    // --cpus 0 lifts the limit.
    b.run(&["update", "--cpus", "0", "tuned"]).ok();
    assert_eq!(cpu_quota(&b, "tuned"), "max 100000");
}

#[test]
fn exec_runs_processes_inside_a_running_container() {
    let b = Berth::new().with_default_image();
    detached(
        &b,
        &[
            "--name",
            "box",
            "-e",
            "FROM_RUN=1",
            "-w",
            "/srv",
            DEFAULT_IMAGE,
            "sleep",
            "300",
        ],
    );
    let o = b
        .run(&[
            "exec",
            "box",
            "sh",
            "-c",
            "echo $FROM_RUN; pwd; hostname; cat /proc/1/cmdline | tr '\\0' ' '",
        ])
        .ok();
    let host = b.inspect("box")["Config"]["Hostname"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(o.stdout, format!("1\n/srv\n{host}\nsleep 300 "));
    let o = b.run(&[
        "exec",
        "-e",
        "X=y",
        "-w",
        "/tmp",
        "-u",
        "65534",
        "box",
        "sh",
        "-c",
        "echo $X; pwd; id -u; echo err >&2; exit 5",
    ]);
    assert_eq!(o.code, 5);
    assert_eq!(o.stdout, "y\n/tmp\n65534\n");
    assert_eq!(o.stderr, "err\n");
    let o = b.run_stdin(
        &["exec", "-i", "box", "sh", "-c", "tr a-z A-Z"],
        b"piped input\n",
    );
    assert_eq!(o.ok().stdout, "PIPED INPUT\n");
    b.run(&[
        "exec",
        "-d",
        "box",
        "sh",
        "-c",
        "sleep 0.3; touch /tmp/later",
    ])
    .ok();
    wait_for("exec -d to finish", || {
        b.run(&["exec", "box", "test", "-e", "/tmp/later"]).code == 0
    });
    let o = b.run(&["exec", "box", "no-such-cmd"]);
    assert_eq!(o.code, 126, "{}", o.stderr);
    assert!(
        o.stderr.contains("executable file not found"),
        "{}",
        o.stderr
    );
    let o = b.run(&["exec", "-w", "/nope", "box", "true"]);
    assert_ne!(o.code, 0);
    // Exec output is not part of the container's log.
    assert_eq!(b.run(&["logs", "box"]).ok().stdout, "");
    b.run(&["pause", "box"]).ok();
    let o = b.run(&["exec", "box", "true"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is paused"), "{}", o.stderr);
    b.run(&["unpause", "box"]).ok();
    b.run(&["kill", "box"]).ok();
    b.run(&["wait", "box"]).ok();
    let o = b.run(&["exec", "box", "true"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is not running"), "{}", o.stderr);
}

fn script(b: &Berth, shell: &str) -> (Option<i32>, String) {
    let cmd = shell
        .replace("BERTH", &berth_tests::berth_bin().display().to_string())
        .replace(
            "ENVS",
            &format!(
                "BERTH_HOME={} BERTH_AGENT={} BERTH_ISOLATION={}",
                b.home.path().display(),
                berth_tests::agent_bin().display(),
                b.isolation
            ),
        );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn exec_tty_and_detach_keys() {
    if !have("script") {
        return skip("util-linux script not installed");
    }
    let b = Berth::new().with_default_image();
    detached(&b, &["--name", "ptybox", DEFAULT_IMAGE, "sleep", "300"]);
    let (code, text) = script(
        &b,
        "stty rows 21 cols 77; ENVS BERTH exec -it ptybox sh -c 'tty; stty size; echo $TERM; exit 6'",
    );
    assert_eq!(code, Some(6), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("21 77"), "{text}");
    assert!(text.contains("xterm"), "{text}");
    // ctrl-p ctrl-q leaves the container running.
    let cmd = format!(
        "BERTH_HOME={} BERTH_AGENT={} BERTH_ISOLATION={} {} run -it --name detachable {DEFAULT_IMAGE} sh",
        b.home.path().display(),
        berth_tests::agent_bin().display(),
        b.isolation,
        berth_tests::berth_bin().display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    wait_for("the interactive container", || {
        b.run(&["inspect", "detachable"])
            .stdout
            .contains("\"running\"")
    });
    std::thread::sleep(Duration::from_millis(300));
    use std::io::Write;
    stdin.write_all(b"echo typed\n\x10\x11").unwrap();
    stdin.flush().unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("read escape sequence"), "{text}");
    assert_eq!(b.inspect("detachable")["State"]["Status"], "running");
}

#[test]
fn pause_rename_top_stats_update_port() {
    let b = Berth::new().with_default_image();
    let id = detached(
        &b,
        &[
            "--name",
            "worker",
            "-m",
            "64m",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "sleep 300 & wait",
        ],
    );
    assert_eq!(b.run(&["pause", "worker"]).ok().stdout, "worker\n");
    let ps = b.run(&["ps"]).ok().stdout;
    assert!(ps.contains("(Paused)"), "{ps}");
    assert_eq!(b.inspect("worker")["State"]["Paused"], true);
    let o = b.run(&["pause", "worker"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("already paused"), "{}", o.stderr);
    b.run(&["unpause", "worker"]).ok();
    let o = b.run(&["unpause", "worker"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is not paused"), "{}", o.stderr);

    b.run(&["rename", "worker", "renamed"]).ok();
    assert_eq!(b.inspect(&id)["Name"], "/renamed");
    detached(&b, &["--name", "other", DEFAULT_IMAGE, "sleep", "300"]);
    let o = b.run(&["rename", "renamed", "other"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("is already in use"), "{}", o.stderr);
    let o = b.run(&["rename", "renamed", "bad/name"]);
    assert_eq!(o.code, 1);

    let top = b.run(&["top", "renamed"]).ok().stdout;
    let mut lines = top.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{top}");
    assert!(rows.iter().any(|r| r.ends_with("sleep 300")), "{top}");
    assert!(rows.iter().all(|r| r.starts_with("root")), "{top}");

    let stats = b.run(&["stats", "--no-stream", "renamed"]).ok().stdout;
    let mut lines = stats.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT"),
        "{stats}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&id[..12]) && row.contains("renamed"),
        "{stats}"
    );
    assert!(row.contains("/ 64MiB"), "{stats}");
    let json = b
        .run(&["stats", "--no-stream", "--format", "json", "renamed"])
        .ok()
        .stdout;
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["PIDs"], "2");

    b.run(&["update", "-m", "96m", "--pids-limit", "40", "renamed"])
        .ok();
    let st = b.inspect("renamed");
    assert_eq!(st["HostConfig"]["Memory"], 96 * 1024 * 1024);
    assert_eq!(st["HostConfig"]["PidsLimit"], 40);
    let stats = b.run(&["stats", "--no-stream", "renamed"]).ok().stdout;
    assert!(stats.contains("/ 96MiB"), "{stats}");
    let o = b.run(&["update", "-m", "1k", "renamed"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("Minimum memory limit"), "{}", o.stderr);

    assert_eq!(b.run(&["port", "renamed"]).ok().stdout, "");
    assert_eq!(b.run(&["port", "ghost"]).code, 1);
    b.run(&["kill", "renamed"]).ok();
    b.run(&["wait", "renamed"]).ok();
    let o = b.run(&["top", "renamed"]);
    assert_eq!(o.code, 1);
}

#[test]
fn commit_then_run_sees_the_changes() {
    let b = Berth::new().with_default_image();
    b.run(&[
        "run",
        "--name",
        "builder",
        "-e",
        "GREETING=hi",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "echo committed > /hello; mkdir -p /data/sub; echo deep > /data/sub/f; chmod 600 /data/sub/f; rm /etc/group",
    ])
    .ok();
    let o = b
        .run(&[
            "commit",
            "-m",
            "add hello",
            "-c",
            "CMD [\"cat\", \"/hello\"]",
            "-c",
            "ENV EXTRA=1",
            "builder",
            "mine/committed:v1",
        ])
        .ok();
    let image_id = o.stdout.trim().to_string();
    assert!(
        image_id.starts_with("sha256:") && image_id.len() == 71,
        "{image_id}"
    );
    assert_eq!(
        b.run(&["run", "--rm", "mine/committed:v1"]).ok().stdout,
        "committed\n"
    );
    let o = b
        .run(&[
            "run",
            "--rm",
            "mine/committed:v1",
            "sh",
            "-c",
            "cat /data/sub/f; stat -c %a /data/sub/f; test -e /etc/group || echo group-gone; echo $GREETING $EXTRA",
        ])
        .ok();
    assert_eq!(o.stdout, "deep\n600\ngroup-gone\nhi 1\n");
    let imgs = b.run(&["images"]).ok().stdout;
    assert!(
        imgs.contains("mine/committed") && imgs.contains("v1"),
        "{imgs}"
    );
    // The parent image is untouched.
    let o = b
        .run(&[
            "run",
            "--rm",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "test -e /hello || echo clean; test -e /etc/group && echo has-group",
        ])
        .ok();
    assert_eq!(o.stdout, "clean\nhas-group\n");
    // Untagged commit prints the id too; bad changes are refused.
    let o = b.run(&["commit", "builder"]).ok();
    assert!(o.stdout.starts_with("sha256:"));
    let o = b.run(&["commit", "-c", "RUN rm -rf /", "builder"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("not a valid change command"),
        "{}",
        o.stderr
    );
    let o = b.run(&["commit", "ghost"]);
    assert_eq!(o.code, 1);
}

fn tree_listing(root: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    fn walk(root: &std::path::Path, p: &std::path::Path, out: &mut Vec<String>) {
        let mut es: Vec<_> = std::fs::read_dir(p).unwrap().flatten().collect();
        es.sort_by_key(|e| e.file_name());
        for e in es {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if m.file_type().is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    std::fs::read_link(e.path()).unwrap().display()
                ));
            } else if m.is_dir() {
                out.push(format!("{rel}/ {:o}", m.permissions().mode() & 0o7777));
                walk(root, &e.path(), out);
            } else {
                let data = std::fs::read(e.path()).unwrap();
                out.push(format!(
                    "{rel} {:o} {}",
                    m.permissions().mode() & 0o7777,
                    String::from_utf8_lossy(&data)
                ));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

#[test]
fn cp_round_trips_a_tree_with_modes() {
    use std::os::unix::fs::PermissionsExt;
    let b = Berth::new().with_default_image();
    detached(&b, &["--name", "files", DEFAULT_IMAGE, "sleep", "300"]);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("top.txt"), "top").unwrap();
    std::fs::write(src.join("sub/secret"), "s3cret").unwrap();
    std::fs::write(src.join("sub/deeper/run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(
        src.join("sub/secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(
        src.join("sub/deeper/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(src.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("top.txt", src.join("link")).unwrap();
    let s = src.display().to_string();

    // Into an existing directory: lands inside it.
    b.run(&["cp", &s, "files:/tmp"]).ok();
    let o = b
        .run(&["exec", "files", "sh", "-c", "/tmp/tree/sub/deeper/run.sh; stat -c %a /tmp/tree/sub/secret /tmp/tree/sub; readlink /tmp/tree/link"])
        .ok();
    assert_eq!(o.stdout, "ran\n600\n750\ntop.txt\n");
    // Onto a new name: becomes that name.
    b.run(&["cp", &s, "files:/copied"]).ok();
    b.run(&["exec", "files", "test", "-f", "/copied/top.txt"])
        .ok();
    // A single file onto a new name.
    b.run(&["cp", &format!("{s}/top.txt"), "files:/etc/top.renamed"])
        .ok();
    assert_eq!(
        b.run(&["exec", "files", "cat", "/etc/top.renamed"])
            .ok()
            .stdout,
        "top"
    );
    // And back: the trees match.
    let back = dir.path().join("back");
    std::fs::create_dir(&back).unwrap();
    b.run(&["cp", "files:/tmp/tree", &back.display().to_string()])
        .ok();
    assert_eq!(tree_listing(&src), tree_listing(&back.join("tree")));
    b.run(&[
        "cp",
        "files:/copied",
        &dir.path().join("again").display().to_string(),
    ])
    .ok();
    assert_eq!(tree_listing(&src), tree_listing(&dir.path().join("again")));
    // Works on a stopped container too.
    b.run(&["kill", "files"]).ok();
    b.run(&["wait", "files"]).ok();
    let f = dir.path().join("single");
    b.run(&["cp", "files:/etc/top.renamed", &f.display().to_string()])
        .ok();
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "top");
    // Errors.
    let o = b.run(&["cp", "files:/no/such", &dir.path().display().to_string()]);
    assert_eq!(o.code, 1);
    assert_eq!(o.stderr, "Error: No such container:path: files:/no/such\n");
    let o = b.run(&["cp", "/no/such/host/file", "files:/tmp"]);
    assert_eq!(o.code, 1);
    let o = b.run(&["cp", "ghost:/etc", &dir.path().display().to_string()]);
    assert_eq!(o.code, 1);
}

#[test]
fn cp_cannot_escape_the_container_root() {
    let b = Berth::new().with_default_image();
    detached(
        &b,
        &[
            "--name",
            "evil",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "ln -s / /escape; ln -s /etc/passwd /pw; sleep 300",
        ],
    );
    wait_for("symlinks", || {
        b.run(&["exec", "evil", "test", "-L", "/escape"]).code == 0
    });
    let marker = format!("berth-cp-escape-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join(&marker);
    std::fs::write(&f, "x").unwrap();
    // Through a symlink to / inside the container: stays inside it.
    b.run(&["cp", &f.display().to_string(), "evil:/escape/tmp/"])
        .ok();
    assert!(!std::path::Path::new("/tmp").join(&marker).exists());
    b.run(&["exec", "evil", "test", "-f", &format!("/tmp/{marker}")])
        .ok();
    // Reading a symlink to /etc/passwd reads the container's file.
    let out = dir.path().join("pw");
    b.run(&["cp", "evil:/pw", &out.display().to_string()]).ok();
    let host = std::fs::read_to_string("/etc/passwd").unwrap();
    let got = std::fs::read(&out).unwrap();
    // docker copies the link itself; either way it is not the host's file.
    assert_ne!(String::from_utf8_lossy(&got), host);
    // A hostile tar with `..` is refused.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    {
        let name = b"../../../../tmp/escaped";
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
    }
    h.set_cksum();
    tar.append(&h, &b"x"[..]).unwrap();
    let data = tar.into_inner().unwrap();
    let o = b.run_stdin(&["cp", "-", "evil:/tmp"], &data);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(o.stderr.contains("refusing"), "{}", o.stderr);
    assert!(!std::path::Path::new("/tmp/escaped").exists());
}

#[test]
fn run_flags_init_read_only_tmpfs_env_file() {
    let b = Berth::new().with_default_image();
    let o = b
        .run(&["run", "--rm", "--init", DEFAULT_IMAGE, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; sh -c 'sleep 0.1 &' ; sleep 0.3; ps -o stat | grep -c Z || true"])
        .ok();
    let mut lines = o.stdout.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("/sbin/docker-init -- sh -c"),
        "{}",
        o.stdout
    );
    assert_eq!(
        lines.next(),
        Some("0"),
        "zombies were not reaped: {}",
        o.stdout
    );
    // --init forwards signals: stop ends it with the child's own handling.
    detached(
        &b,
        &["--name", "inited", "--init", DEFAULT_IMAGE, "sleep", "300"],
    );
    let t = Instant::now();
    b.run(&["stop", "-t", "20", "inited"]).ok();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "SIGTERM was not forwarded"
    );
    assert_eq!(b.run(&["wait", "inited"]).ok().stdout, "143\n");

    let o = b.run(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch:size=1m",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "touch /x 2>/dev/null || echo ro; touch /scratch/y && echo tmpfs-ok; grep ' /scratch ' /proc/mounts | cut -d' ' -f3",
    ]);
    assert_eq!(o.ok().stdout, "ro\ntmpfs-ok\ntmpfs\n");
    let o = b.run(&["run", "--rm", "--tmpfs", "relative", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125);

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("env.list");
    std::fs::write(&f, "# comment\nA=1\nB=two words\n\nFROM_HOST\n").unwrap();
    let o = b
        .command()
        .env("FROM_HOST", "hostval")
        .args([
            "run",
            "--rm",
            "--env-file",
            &f.display().to_string(),
            "-e",
            "A=override",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "echo $A/$B/$FROM_HOST",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "override/two words/hostval\n"
    );
    let o = b.run(&[
        "run",
        "--rm",
        "--env-file",
        "/no/such/file",
        DEFAULT_IMAGE,
        "true",
    ]);
    assert_eq!(o.code, 125);
    let o = b.run(&["run", "--rm", "--restart", "always", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("Conflicting options"), "{}", o.stderr);
    let o = b.run(&["run", "--restart", "sometimes", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125);
}

#[test]
fn restart_policies_survive_an_agent_restart() {
    let b = Berth::new().with_default_image();
    detached(
        &b,
        &[
            "--name",
            "flaky",
            "--restart",
            "on-failure:2",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "echo try; exit 3",
        ],
    );
    wait_for("two restarts", || {
        let s = b.inspect("flaky");
        s["RestartCount"] == 2 && s["State"]["Status"] == "exited"
    });
    std::thread::sleep(Duration::from_millis(800));
    let s = b.inspect("flaky");
    assert_eq!(s["RestartCount"], 2);
    assert_eq!(s["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(b.run(&["logs", "flaky"]).ok().stdout, "try\ntry\ntry\n");
    // on-failure does not restart a clean exit.
    detached(
        &b,
        &[
            "--name",
            "clean",
            "--restart",
            "on-failure",
            DEFAULT_IMAGE,
            "true",
        ],
    );
    // always: restarts after exits, also when the agent was restarted.
    detached(
        &b,
        &[
            "--name",
            "forever",
            "--restart",
            "always",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "sleep 0.5",
        ],
    );
    wait_for("a restart", || {
        b.inspect("forever")["RestartCount"].as_u64() >= Some(1)
    });
    b.kill_agent();
    let before = b.inspect("forever")["RestartCount"].as_u64().unwrap();
    wait_for("restarts after the agent restart", || {
        b.inspect("forever")["RestartCount"].as_u64().unwrap() > before
    });
    // A user stop wins over the policy.
    b.run(&["stop", "forever"]).ok();
    let n = b.inspect("forever")["RestartCount"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let s = b.inspect("forever");
    assert_eq!(s["State"]["Status"], "exited");
    assert_eq!(s["RestartCount"].as_u64().unwrap(), n);
    assert_eq!(b.inspect("clean")["RestartCount"], 0);
    // update can change the policy.
    b.run(&["update", "--restart", "no", "forever"]).ok();
    assert_eq!(
        b.inspect("forever")["HostConfig"]["RestartPolicy"]["Name"],
        "no"
    );
}

#[test]
fn unless_stopped_stays_stopped_across_an_agent_restart() {
    let b = Berth::new().with_default_image();
    for (name, policy) in [("keeper", "unless-stopped"), ("always", "always")] {
        detached(
            &b,
            &[
                "--name",
                name,
                "--restart",
                policy,
                DEFAULT_IMAGE,
                "sh",
                "-c",
                "sleep 0.3",
            ],
        );
    }
    // Both restart after their exits while nobody stopped them.
    wait_for("restarts of both", || {
        ["keeper", "always"]
            .iter()
            .all(|n| b.inspect(n)["RestartCount"].as_u64() >= Some(1))
    });
    assert_eq!(
        b.inspect("keeper")["HostConfig"]["RestartPolicy"]["Name"],
        "unless-stopped"
    );
    // Stopped by the user: neither comes back on its own...
    for n in ["keeper", "always"] {
        b.run(&["stop", "-t", "1", n]).ok();
    }
    let counts: Vec<u64> = ["keeper", "always"]
        .iter()
        .map(|n| b.inspect(n)["RestartCount"].as_u64().unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for (n, c) in ["keeper", "always"].iter().zip(&counts) {
        let s = b.inspect(n);
        assert_eq!(s["State"]["Status"], "exited", "{n}");
        assert_eq!(s["RestartCount"].as_u64().unwrap(), *c, "{n}");
    }
    // ...but when the agent (docker: the daemon) restarts, `always` is
    // started again and `unless-stopped` stays stopped.
    let old_agent = b.agent_pid().unwrap();
    b.kill_agent();
    b.run(&["ps"]).ok();
    assert_ne!(b.agent_pid(), Some(old_agent), "a new agent runs");
    wait_for("always to run again", || {
        b.inspect("always")["RestartCount"].as_u64().unwrap() > counts[1]
    });
    std::thread::sleep(Duration::from_millis(1500));
    let s = b.inspect("keeper");
    assert_eq!(s["State"]["Status"], "exited");
    assert_eq!(s["RestartCount"].as_u64().unwrap(), counts[0]);
    // An unless-stopped container started by hand restarts again.
    b.run(&["start", "keeper"]).ok();
    wait_for("keeper to restart after a start", || {
        b.inspect("keeper")["RestartCount"].as_u64().unwrap() > counts[0]
    });
}

#[test]
fn ps_filters_names_prefixes_and_prune() {
    let b = Berth::new().with_default_image();
    let a = detached(
        &b,
        &[
            "--name",
            "alpha",
            "-l",
            "tier=web",
            DEFAULT_IMAGE,
            "sleep",
            "300",
        ],
    );
    b.run(&[
        "run",
        "--name",
        "beta",
        "-l",
        "tier=db",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "exit 4",
    ]);
    b.run(&["tag", DEFAULT_IMAGE, "other/img:1"]).ok();
    b.run(&["run", "--name", "gamma", "other/img:1", "true"])
        .ok();
    let q = |args: &[&str]| -> Vec<String> {
        let mut v = vec!["ps", "--format", "json"];
        v.extend_from_slice(args);
        b.run(&v)
            .ok()
            .stdout
            .lines()
            .map(|l| {
                let j: serde_json::Value = serde_json::from_str(l).unwrap();
                j["Names"].as_str().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(q(&[]), ["alpha"]);
    assert_eq!(q(&["-a", "--filter", "label=tier=db"]), ["beta"]);
    assert_eq!(q(&["-a", "--filter", "label=tier"]).len(), 2);
    assert_eq!(q(&["--filter", "status=exited"]).len(), 2);
    assert_eq!(q(&["--filter", "exited=4"]), ["beta"]);
    assert_eq!(q(&["-a", "--filter", "name=amm"]), ["gamma"]);
    assert_eq!(q(&["-a", "--filter", "ancestor=other/img:1"]), ["gamma"]);
    assert_eq!(
        q(&[
            "-a",
            "--filter",
            "status=exited",
            "--filter",
            "label=tier=db"
        ]),
        ["beta"]
    );
    assert_eq!(q(&["-n", "2"]), ["gamma", "beta"]);
    assert_eq!(q(&["-l"]), ["gamma"]);
    let o = b.run(&["ps", "--filter", "status=sleepy"]);
    assert_eq!(o.code, 1);
    let o = b.run(&["ps", "--filter", "colour=red"]);
    assert_eq!(o.code, 1);
    // Names, full ids and unique prefixes all work.
    assert_eq!(b.inspect(&a[..5])["Name"], "/alpha");
    assert_eq!(b.inspect(&a)["Name"], "/alpha");
    assert_eq!(
        b.run(&["container", "ls", "-q"]).ok().stdout.trim(),
        &a[..12]
    );
    let o = b.run(&["container", "prune", "-f"]).ok();
    assert!(
        o.stdout.starts_with("Deleted Containers:\n"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.ends_with("\nTotal reclaimed space: 0B\n"),
        "{}",
        o.stdout
    );
    assert_eq!(o.stdout.lines().filter(|l| l.len() == 64).count(), 2);
    assert_eq!(q(&["-a"]), ["alpha"]);
    let o = b.run_stdin(&["container", "prune"], b"n\n").ok();
    assert!(o.stderr.contains("Are you sure"), "{}", o.stderr);
}

/// The agent keeps each container's parsed files for listings (issue 22,
/// `guest-agent/src/engine/record_cache.rs`). A shim is another process:
/// when it writes a container's exit behind the agent's back, the very
/// next listing shows it, as do a rename and an `rm`.
#[test]
fn ps_shows_what_the_shim_wrote_at_the_next_listing() {
    let b = Berth::new().with_default_image();
    let id = detached(&b, &["--name", "sleeper", DEFAULT_IMAGE, "sleep", "300"]);
    let row = |name: &str| -> Option<serde_json::Value> {
        b.run(&["ps", "-a", "--format", "json"])
            .ok()
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|j| j["Names"] == name)
    };
    assert_eq!(row("sleeper").unwrap()["State"], "running");
    // Let the directory go quiet (the cache serves only directories
    // unchanged for a second), then list twice: held in memory now.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(row("sleeper").unwrap()["State"], "running");
    assert_eq!(row("sleeper").unwrap()["State"], "running");
    assert_eq!(b.inspect("sleeper")["RestartCount"], 0);

    // Killed behind berth's back: only the shim knows, and it writes exit.json.
    let pid = b.inspect("sleeper")["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0, "{pid}");
    // SAFETY: kill(2) on the container's init, a process this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    let exit = b
        .native_root()
        .join("containers")
        .join(&id)
        .join("exit.json");
    wait_for("the shim's exit.json", || exit.exists());
    let r = row("sleeper").unwrap();
    assert_eq!(r["State"], "exited", "{r}");
    assert!(
        r["Status"].as_str().unwrap().starts_with("Exited (137)"),
        "{r}"
    );

    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(row("sleeper").unwrap()["State"], "exited");
    b.run(&["rename", "sleeper", "woken"]).ok();
    assert!(row("sleeper").is_none());
    assert_eq!(row("woken").unwrap()["State"], "exited");
    b.run(&["rm", "woken"]).ok();
    assert!(row("woken").is_none());
    assert_eq!(b.run(&["ps", "-aq"]).ok().stdout.trim(), "");
}

#[test]
fn attach_relays_a_running_containers_output() {
    let b = Berth::new().with_default_image();
    detached(
        &b,
        &["--name", "att", DEFAULT_IMAGE, "sh", "-c", &gated(12)],
    );
    let (code, stdout, _) = attach_then_release(&b, &["attach", "att"], "att");
    assert_eq!(code, 12);
    assert!(stdout.ends_with("wait\nlate\n"), "{stdout}");
    let o = b.run(&["attach", "att"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("start it first"), "{}", o.stderr);
}

/// berth commands whose agent works around an emulated guest kernel
/// (`Some("emulated-kernel")`) or explicitly none (`Some("none")`): the two
/// kinds of host, simulated through the agent's quirk override.
fn with_quirks(b: &Berth, quirks: &str, args: &[&str]) -> berth_tests::Out {
    let mut cmd = b.command();
    // The agent variant with fault injection (the release agent has none).
    cmd.env("BERTH_AGENT", berth_tests::fault_agent_bin());
    cmd.env("BERTH_AGENT_QUIRKS", quirks).args(args);
    berth_tests::run_command(cmd, None, Duration::from_secs(120), &args.join(" "))
}

/// A container "flaky" that ran `echo hello` once, under an agent with
/// `quirks`; returns its directory (where fault files go).
fn flaky_container(b: &Berth, quirks: &str) -> std::path::PathBuf {
    b.kill_agent();
    let o = with_quirks(
        b,
        quirks,
        &["run", "--name", "flaky", DEFAULT_IMAGE, "echo", "hello"],
    );
    assert_eq!((o.code, o.stdout.as_str()), (0, "hello\n"), "{}", o.stderr);
    let st: serde_json::Value =
        serde_json::from_str(&b.run(&["inspect", "flaky"]).ok().stdout).unwrap();
    let cdir = b
        .native_root()
        .join("containers")
        .join(st[0]["Id"].as_str().unwrap());
    assert!(cdir.is_dir(), "{}", cdir.display());
    cdir
}

/// The workaround counts `berth info` shows.
fn workarounds(b: &Berth, quirks: &str) -> String {
    let o = with_quirks(b, quirks, &["info"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    o.stdout
        .lines()
        .skip_while(|l| !l.starts_with("Host workarounds"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The release agent carries no fault injection: none of the file names
/// that arm a fault in the test variant is in its binary.
#[test]
fn the_release_agent_has_no_fault_injection() {
    let release = std::fs::read(berth_tests::agent_bin()).unwrap();
    let variant = std::fs::read(berth_tests::fault_agent_bin()).unwrap();
    for name in [
        "fault-shim-dies-once",
        "fault-state-without-pid-once",
        "fault-pause-after-start-event-once",
    ] {
        let has = |bin: &[u8]| bin.windows(name.len()).any(|w| w == name.as_bytes());
        assert!(has(&variant), "the test variant lacks {name}");
        assert!(!has(&release), "the release agent contains {name}");
    }
}

/// A shim that dies right after creating its container (fault injected
/// through the engine-owned container dir, as seen in emulated guests).
/// Where the host's guests are emulated, it is cleaned up after and the
/// start is tried once more: the container runs once more (one more output
/// line, not two), the agent logged the retry and `info` counts it.
#[test]
fn start_retries_once_after_the_shim_dies_without_reporting() {
    let b = Berth::new().with_default_image();
    let q = "emulated-kernel";
    let cdir = flaky_container(&b, q);
    std::fs::write(cdir.join("fault-shim-dies-once"), b"").unwrap();
    let o = with_quirks(&b, q, &["start", "-a", "flaky"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "hello\n"), "{}", o.stderr);
    assert!(!cdir.join("fault-shim-dies-once").exists());
    let agent_log = std::fs::read_to_string(b.native_root().join("agent.log")).unwrap_or_default();
    let shim_log = std::fs::read_to_string(cdir.join("shim.log")).unwrap_or_default();
    assert!(
        agent_log.contains("starting it once more"),
        "agent log:\n{agent_log}\nshim log:\n{shim_log}"
    );
    let st: serde_json::Value =
        serde_json::from_str(&b.run(&["inspect", "flaky"]).ok().stdout).unwrap();
    assert_eq!(st[0]["State"]["Status"], "exited");
    assert_eq!(st[0]["State"]["ExitCode"], 0);
    assert_eq!(b.run(&["logs", "flaky"]).ok().stdout, "hello\nhello\n");
    let w = workarounds(&b, q);
    assert!(
        w.contains("Host workarounds: emulated-kernel")
            && w.contains("shim restarted after dying without reporting: 1"),
        "{w}"
    );
    // ... and `events` shows it as berth's `workaround` event.
    let ev = with_quirks(
        &b,
        q,
        &[
            "events",
            "--since",
            "0",
            "--until=-1s",
            "--filter",
            "type=berth",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.container}}",
        ],
    );
    assert_eq!(
        ev.stdout,
        format!(
            "berth workaround shim restarted after dying without reporting {}\n",
            st[0]["Id"].as_str().unwrap()
        ),
        "{}",
        ev.stderr
    );

    // libcontainer's state without the init pid: the pid file stands in.
    std::fs::write(cdir.join("fault-state-without-pid-once"), b"").unwrap();
    let o = with_quirks(&b, q, &["start", "-a", "flaky"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "hello\n"), "{}", o.stderr);
    assert!(
        workarounds(&b, q).contains("init pid read from the pid file: 1"),
        "{}",
        workarounds(&b, q)
    );
}

/// On a host whose guests are not emulated, neither workaround runs: a
/// shim that dies is reported, and its container's process never ran
/// twice; a state without the init pid fails the start.
#[test]
fn without_the_quirk_a_dying_shim_is_reported_not_retried() {
    let b = Berth::new().with_default_image();
    let q = "none";
    let cdir = flaky_container(&b, q);
    std::fs::write(cdir.join("fault-shim-dies-once"), b"").unwrap();
    let o = with_quirks(&b, q, &["start", "-a", "flaky"]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert!(o.stderr.contains("died without reporting"), "{}", o.stderr);
    let agent_log = std::fs::read_to_string(b.native_root().join("agent.log")).unwrap_or_default();
    assert!(!agent_log.contains("starting it once more"), "{agent_log}");
    assert_eq!(b.run(&["logs", "flaky"]).ok().stdout, "hello\n");
    // The next start is a normal one.
    let o = with_quirks(&b, q, &["start", "-a", "flaky"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "hello\n"), "{}", o.stderr);

    std::fs::write(cdir.join("fault-state-without-pid-once"), b"").unwrap();
    let o = with_quirks(&b, q, &["start", "-a", "flaky"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("saved no init pid"), "{}", o.stderr);
    assert_eq!(workarounds(&b, q), "Host workarounds: none");
    let o = with_quirks(&b, q, &["start", "-a", "flaky"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "hello\n"), "{}", o.stderr);
}

/// `{{.NetIO}}` / `{{.BlockIO}}` of `stats` as (received, sent) or
/// (read, written) bytes, from docker's `1.45kB / 656B`.
fn io_pair(b: &Berth, field: &str, name: &str) -> (f64, f64) {
    let f = format!("{{{{.{field}}}}}");
    let out = b
        .run(&["stats", "--no-stream", "--format", &f, name])
        .ok()
        .stdout;
    let bytes = |s: &str| -> f64 {
        let s = s.trim();
        let at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
        let (n, unit) = s.split_at(at);
        let scale = match unit {
            "B" => 1.0,
            "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            _ => panic!("{field}: unit {unit:?} in {out:?}"),
        };
        n.parse::<f64>()
            .unwrap_or_else(|_| panic!("{field}: {out:?}"))
            * scale
    };
    let (a, c) = out.trim().split_once(" / ").expect(&out);
    (bytes(a), bytes(c))
}

/// `stats` counts the bytes a container moves on its own interfaces
/// (not loopback; none with `--network host`) and the bytes its cgroup
/// writes to disk, in docker's units.
#[test]
fn stats_counts_network_and_block_io() {
    let b = Berth::new().with_default_image();
    let id = b
        .run(&["run", "-d", "--name", "io", DEFAULT_IMAGE, "sleep", "300"])
        .ok()
        .stdout;
    let gw = b.inspect(id.trim())["NetworkSettings"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let (rx0, tx0) = io_pair(&b, "NetIO", "io");
    // Three echo requests and replies of 84 IP bytes (98 on the wire).
    b.run(&["exec", "io", "ping", "-c", "3", "-W", "2", &gw])
        .ok();
    let (rx1, tx1) = io_pair(&b, "NetIO", "io");
    assert!(rx1 - rx0 >= 3.0 * 98.0, "rx {rx0} -> {rx1}");
    assert!(tx1 - tx0 >= 3.0 * 98.0, "tx {tx0} -> {tx1}");
    // Loopback is not the container's network traffic.
    b.run(&[
        "exec",
        "io",
        "ping",
        "-c",
        "20",
        "-i",
        "0.2",
        "-s",
        "1000",
        "127.0.0.1",
    ])
    .ok();
    let (rx2, _) = io_pair(&b, "NetIO", "io");
    assert!(
        rx2 - rx1 < 20.0 * 1000.0,
        "rx {rx1} -> {rx2} after pinging 127.0.0.1"
    );
    // Block I/O: what the kernel counted for the container's cgroup (a
    // cgroup v1 host counts no buffered writes, and on this kind of
    // machine no direct ones either, for docker's containers as for
    // berth's: then both show 0B / 0B).
    b.run(&[
        "exec",
        "io",
        "dd",
        "if=/dev/zero",
        "of=/f",
        "bs=1M",
        "count=4",
        "oflag=direct",
    ])
    .ok();
    let v1 = format!(
        "/sys/fs/cgroup/blkio/berth/{}/blkio.throttle.io_service_bytes",
        id.trim()
    );
    if let Ok(text) = std::fs::read_to_string(&v1) {
        let sum = |op: &str| -> f64 {
            text.lines()
                .filter_map(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    (w.len() == 3 && w[1].eq_ignore_ascii_case(op))
                        .then(|| w[2].parse::<f64>().unwrap())
                })
                .sum()
        };
        let (r, w) = io_pair(&b, "BlockIO", "io");
        let near = |a: f64, k: f64| (a - k).abs() <= k * 0.01;
        assert!(
            near(r, sum("read")) && near(w, sum("write")),
            "BlockIO {r} / {w} vs {text}"
        );
    }
    // The host's network is not the container's to count.
    b.run(&[
        "run",
        "-d",
        "--name",
        "hostnet",
        "--network",
        "host",
        DEFAULT_IMAGE,
        "sleep",
        "300",
    ])
    .ok();
    b.run(&["exec", "hostnet", "ping", "-c", "2", "-W", "2", &gw])
        .ok();
    assert_eq!(io_pair(&b, "NetIO", "hostnet"), (0.0, 0.0));
    b.run(&["rm", "-f", "io", "hostnet"]).ok();
}
