//! The parity sweep: a table of `run` invocations, and create/start/attach/
//! wait/kill sequences with signals, each run against a private dockerd
//! (Debian's docker.io) and against berth natively, with the same image.
//! stdout, stderr and exit codes must be equal after masking only what is
//! truly variable: container ids (and the hostnames made of them) and the
//! program name in messages. A difference kept on purpose is listed in
//! `DOCUMENTED` with its reason, and in the README's "Differences from
//! docker"; its exit code must still match.
//!
//! dockerd is a required peer here: when it does not start, the test fails
//! with its log instead of passing without comparing anything.
// Drives the Linux builds of berth and berth-agent (native placement).
#![cfg(target_os = "linux")]

use berth_tests::dockerd::Dockerd;
use berth_tests::parity::differences;
use berth_tests::{run_command, Berth, Out, DEFAULT_IMAGE};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Cases whose output differs from docker's on purpose (name, reason).
/// Each has a line in the README's "Differences from docker".
const DOCUMENTED: &[(&str, &str)] = &[(
    "no image",
    "a usage error prints the first two lines of docker's text, not its usage summary",
)];

/// One `run` invocation.
struct Case {
    name: &'static str,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
}

fn case(name: &'static str, args: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
    }
}

fn with_stdin(mut c: Case, input: &[u8]) -> Case {
    c.stdin = Some(input.to_vec());
    c
}

/// `run --rm IMAGE args…`
fn rm(name: &'static str, flags: &[&str], cmd: &[&str]) -> Case {
    let mut args = vec!["--rm"];
    args.extend_from_slice(flags);
    args.push(DEFAULT_IMAGE);
    args.extend_from_slice(cmd);
    case(name, &args)
}

fn cases(env_file: &str, bad_env_file: &str) -> Vec<Case> {
    let sh = |name, flags: &[&str], script: &str| rm(name, flags, &["sh", "-c", script]);
    let long = format!("LONG={}", "x".repeat(4000));
    let mut v = vec![
        // Exit codes and streams.
        rm("true", &[], &["true"]),
        rm("false", &[], &["false"]),
        sh("exit 3", &[], "exit 3"),
        sh("exit 255", &[], "exit 255"),
        sh("killed by SIGKILL", &[], "kill -9 $$"),
        sh("SIGTERM to pid 1 without a handler", &[], "kill -TERM $$; echo still-here"),
        sh("trap and exit", &[], "trap 'echo trapped; exit 9' USR1; kill -USR1 $$; sleep 5"),
        rm("echo args", &[], &["echo", "hello", "world"]),
        sh("stdout and stderr", &[], "echo out; echo err >&2; echo out2"),
        sh("empty output", &[], "printf ''"),
        sh("binary output", &[], "printf 'a\\000b\\377' | od -c"),
        sh("delayed exit", &[], "sleep 0.2; exit 4"),
        // Missing or bad commands.
        rm("command not found", &[], &["nosuchcmd"]),
        rm("not executable", &[], &["/etc/passwd"]),
        rm("missing path", &[], &["/no/such/bin"]),
        rm("directory as command", &[], &["/etc"]),
        // Working directory.
        rm("workdir", &["-w", "/tmp"], &["pwd"]),
        rm("workdir created", &["-w", "/new/dir"], &["pwd"]),
        rm("workdir relative", &["-w", "relative"], &["pwd"]),
        sh("workdir and relative path", &["--workdir", "/etc"], "ls passwd"),
        // Users and groups.
        rm("id as root", &[], &["id"]),
        rm("id as nobody", &["-u", "nobody"], &["id"]),
        rm("id as uid 1000", &["-u", "1000"], &["id"]),
        rm("id as uid:gid", &["-u", "1000:1000"], &["id"]),
        rm("id as user:group", &["-u", "nobody:root"], &["id"]),
        rm("id as 0:100", &["--user", "0:100"], &["id"]),
        rm("groups as nobody", &["-u", "nobody"], &["id", "-G"]),
        rm("unknown user", &["-u", "nosuchuser"], &["id"]),
        rm("unknown group", &["-u", "root:nosuchgroup"], &["id"]),
        sh("HOME as nobody", &["-u", "nobody"], "echo $HOME"),
        sh("HOME as root", &[], "echo $HOME"),
        sh(
            "capabilities as root",
            &[],
            "grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status",
        ),
        sh(
            "capabilities as nobody",
            &["-u", "nobody"],
            "grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status",
        ),
        // Environment.
        sh("env value", &["-e", "A=1"], "echo $A"),
        sh("env empty value", &["-e", "A="], "echo \"[$A]\"; env | grep -c '^A='"),
        sh("env from host", &["-e", "HOSTV"], "echo \"[$HOSTV]\""),
        sh("env unset on host", &["-e", "UNSETV"], "env | grep -c UNSETV"),
        sh("env overrides PATH", &["-e", "PATH=/bin"], "echo $PATH"),
        sh("env twice", &["-e", "A=1", "-e", "A=2"], "echo $A"),
        sh("env long value", &["-e", &long], "echo ${#LONG}"),
        rm("env without name", &["-e", "=x"], &["true"]),
        sh(
            "env file",
            &["--env-file", env_file],
            "env | grep -E '^(F_|HOSTV)' | sort",
        ),
        rm("env file missing", &["--env-file", "/no/such/file"], &["true"]),
        rm("env file bad key", &["--env-file", bad_env_file], &["true"]),
        sh("default environment", &[], "env | grep -v ^HOSTNAME= | sort"),
        sh("hostname variable", &[], "echo ${#HOSTNAME}"),
        // Entrypoint and command.
        rm(
            "entrypoint with args",
            &["--entrypoint", "echo"],
            &["a", "b"],
        ),
        rm("empty entrypoint", &["--entrypoint", ""], &["echo", "x"]),
        rm(
            "entrypoint sh",
            &["--entrypoint", "/bin/sh"],
            &["-c", "echo $0; exit 9"],
        ),
        rm("entrypoint not found", &["--entrypoint", "nosuch"], &[]),
        rm("image default command", &[], &[]),
        rm("dash args", &[], &["echo", "-n", "--", "-x"]),
        // stdin.
        with_stdin(rm("stdin cat", &["-i"], &["cat"]), b"abc\n"),
        with_stdin(rm("stdin not attached", &[], &["cat"]), b"ignored\n"),
        with_stdin(sh("stdin read", &["-i"], "read x; echo got $x"), b"line\n"),
        with_stdin(rm("stdin bytes", &["-i"], &["wc", "-c"]), &[b'z'; 100_000]),
        with_stdin(rm("stdin interactive with tty", &["-it"], &["true"]), b""),
        // A terminal (stdin is not one here).
        rm("tty output", &["-t"], &["echo", "hi"]),
        sh("tty test", &["-t"], "test -t 1 && echo tty; exit 2"),
        // Hostname and names.
        rm("hostname short flag", &["-h", "myhost"], &["hostname"]),
        sh("hostname of a named container", &["--name", "named"], "hostname | wc -c"),
        sh("hostname file", &["--hostname", "box"], "cat /etc/hostname"),
        rm("bad name", &["--name", "bad/name"], &["true"]),
        rm("label", &["-l", "a=b", "--label", "c"], &["true"]),
        // Filesystems.
        sh("read-only rootfs", &["--read-only"], "touch /x"),
        sh("read-only with tmpfs", &["--read-only", "--tmpfs", "/tmp"], "touch /tmp/x && ls /tmp"),
        sh("tmpfs", &["--tmpfs", "/data"], "touch /data/a && ls /data"),
        rm("tmpfs relative", &["--tmpfs", "data"], &["true"]),
        sh("dev entries", &[], "ls /dev | sort"),
        sh("nofile limit", &[], "ulimit -n"),
        // Resources.
        sh(
            "memory limit",
            &["-m", "64m"],
            "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        ),
        sh(
            "cpu limit",
            &["--cpus", "0.5"],
            "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        ),
        sh(
            "pids limit",
            &["--pids-limit", "10"],
            "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max",
        ),
        rm("memory too small", &["-m", "1k"], &["true"]),
        rm("memory not a size", &["-m", "lots"], &["true"]),
        rm("negative cpus", &["--cpus", "-1"], &["true"]),
        rm("pids unlimited", &["--pids-limit", "-1"], &["true"]),
        // Policies and options.
        rm("restart with rm", &["--restart", "always"], &["true"]),
        case(
            "restart bogus",
            &["--restart", "bogus", DEFAULT_IMAGE, "true"],
        ),
        case(
            "restart retries without on-failure",
            &["--restart", "always:3", DEFAULT_IMAGE, "true"],
        ),
        rm("stop signal bad", &["--stop-signal", "NOPE"], &["true"]),
        rm("log opt", &["--log-opt", "max-size=1k"], &["echo", "x"]),
        rm("log opt unknown", &["--log-opt", "bogus=1"], &["true"]),
        sh("init", &["--init"], "cat /proc/1/cmdline | tr '\\000' ' '; echo"),
        sh("no init", &[], "cat /proc/1/cmdline | tr '\\000' ' '; echo"),
        // Flags.
        rm("unknown flag", &["--bogus"], &["true"]),
        case("no image", &[]),
    ];
    v.retain(|c| !c.name.is_empty());
    v
}

struct Peers {
    docker: Dockerd,
    berth: Berth,
}

/// dockerd with the default image loaded, and berth with the same image.
/// Fails (never skips) when dockerd cannot start: this test exists to
/// compare with it.
fn peers() -> Peers {
    let docker = Dockerd::required();
    docker
        .load_default_image(&format!("{DEFAULT_IMAGE}:latest"))
        .unwrap_or_else(|e| panic!("docker load of the default image failed: {e}"));
    Peers {
        docker,
        berth: Berth::new().with_default_image(),
    }
}

impl Peers {
    fn command(&self, docker: bool) -> Command {
        let mut c = if docker {
            self.docker.command()
        } else {
            self.berth.command()
        };
        c.env("HOSTV", "hostval").env_remove("UNSETV");
        c
    }

    fn exec(&self, docker: bool, args: &[String], stdin: Option<&[u8]>) -> Out {
        let mut cmd = self.command(docker);
        cmd.args(args);
        let what = format!(
            "{} {}",
            if docker { "docker" } else { "berth" },
            args.join(" ")
        );
        run_command(cmd, stdin, Duration::from_secs(120), &what)
    }

    fn both(&self, args: &[&str]) -> (Out, Out) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        (self.exec(true, &args, None), self.exec(false, &args, None))
    }

    /// Runs `args` in both until `pred` holds for both outputs (10 s).
    fn both_until(&self, args: &[&str], pred: impl Fn(&Out) -> bool) -> (Out, Out) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (d, b) = self.both(args);
            if (pred(&d) && pred(&b)) || Instant::now() > deadline {
                return (d, b);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// The tests of this file take turns: a Dockerd holds the suite's one
// dockerd turn while it lives.
#[test]
fn run_invocations_and_sequences_match_docker() {
    let p = peers();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    std::fs::write(
        &env_file,
        "# a comment\nF_A=1\n\n  F_B=two words\nF_C=\nHOSTV\nUNSETV\nF_D=a=b\n",
    )
    .unwrap();
    let bad_env_file = dir.path().join("bad-env");
    std::fs::write(&bad_env_file, "GOOD=1\nBAD KEY=2\n").unwrap();
    let cases = cases(env_file.to_str().unwrap(), bad_env_file.to_str().unwrap());
    assert!(cases.len() >= 60, "the sweep has {} run cases", cases.len());
    let mut failures = Vec::new();
    let mut documented = 0;
    for c in &cases {
        let mut args = vec!["run".to_string()];
        args.extend(c.args.iter().cloned());
        let d = p.exec(true, &args, c.stdin.as_deref());
        let b = p.exec(false, &args, c.stdin.as_deref());
        let diffs = differences(&d, &b);
        if diffs.is_empty() {
            continue;
        }
        if let Some((_, why)) = DOCUMENTED.iter().find(|(n, _)| *n == c.name) {
            documented += 1;
            println!(
                "documented difference in {:?} ({why}):\n{}",
                c.name,
                diffs.join("\n")
            );
            if d.code == b.code {
                continue;
            }
        }
        failures.push(format!("{} ({args:?}):\n{}", c.name, diffs.join("\n")));
    }
    println!(
        "sweep: {} run cases, {} equal, {documented} documented differences, {} failures",
        cases.len(),
        cases.len() - documented - failures.len(),
        failures.len()
    );

    // Sequences: create, start -a, wait, rm.
    let mut step = |what: &str, (d, b): (Out, Out)| {
        let diffs = differences(&d, &b);
        if !diffs.is_empty() {
            failures.push(format!("{what}:\n{}", diffs.join("\n")));
        }
    };
    step(
        "create",
        p.both(&[
            "create",
            "--name",
            "seq",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "echo hi; echo err >&2; exit 3",
        ]),
    );
    step("ps -a after create", {
        let (d, b) = p.both(&["ps", "-a"]);
        // Status column only: "Created" in both.
        let st = |o: &Out| Out {
            code: o.code,
            stdout: o.stdout.contains("Created").to_string(),
            stderr: o.stderr.clone(),
        };
        (st(&d), st(&b))
    });
    step("start -a", p.both(&["start", "-a", "seq"]));
    step("wait", p.both(&["wait", "seq"]));
    step("start again", p.both(&["start", "seq"]));
    step("wait again", p.both(&["wait", "seq"]));
    step("logs", p.both(&["logs", "seq"]));
    step("rm", p.both(&["rm", "seq"]));
    step("create conflict", {
        p.both(&["create", "--name", "dup", DEFAULT_IMAGE, "true"]);
        p.both(&["create", "--name", "dup", DEFAULT_IMAGE, "true"])
    });
    step("rm dup", p.both(&["rm", "dup"]));

    // Signals to a detached container: kill -s, then wait's exit code.
    let script = "trap 'echo got-usr1' USR1; trap 'echo got-term; exit 9' TERM; echo ready; while true; do sleep 0.1; done";
    step(
        "run -d trapper",
        p.both(&[
            "run",
            "-d",
            "--name",
            "trap",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            script,
        ]),
    );
    let ready = |o: &Out| o.stdout.contains("ready");
    step("logs ready", p.both_until(&["logs", "trap"], ready));
    step("kill -s USR1", p.both(&["kill", "-s", "USR1", "trap"]));
    step(
        "logs got-usr1",
        p.both_until(&["logs", "trap"], |o| o.stdout.contains("got-usr1")),
    );
    step("kill -s TERM", p.both(&["kill", "-s", "TERM", "trap"]));
    step("wait after TERM", p.both(&["wait", "trap"]));
    step("logs after TERM", p.both(&["logs", "trap"]));
    step("kill of an exited container", p.both(&["kill", "trap"]));
    step("rm trap", p.both(&["rm", "trap"]));
    step("stop with stop-signal", {
        p.both(&[
            "run",
            "-d",
            "--name",
            "stopper",
            "--stop-signal",
            "USR1",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "trap 'echo usr1; exit 5' USR1; echo ready; while true; do sleep 0.1; done",
        ]);
        p.both_until(&["logs", "stopper"], ready);
        p.both(&["stop", "stopper"])
    });
    step("wait stopper", p.both(&["wait", "stopper"]));
    step("rm stopper", p.both(&["rm", "stopper"]));
    step("nothing left", p.both(&["ps", "-aq"]));

    assert!(
        failures.is_empty(),
        "{} differences from docker:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Reads `child`'s stdout until a line equal to `want` (or the stream
/// ends); returns what was read.
fn read_until(out: &mut impl std::io::BufRead, want: &str) -> String {
    let mut seen = String::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap_or(0) > 0 {
        seen.push_str(&line);
        if line.trim_end() == want {
            break;
        }
        line.clear();
    }
    seen
}

/// Starts `args` in one engine's CLI, waits for the line `ready`, sends
/// `sig` to the CLI and returns (exit code or -signal, all stdout).
fn signal_cli(p: &Peers, docker: bool, args: &[&str], sig: i32) -> (i32, String) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut child = p
        .command(docker)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = read_until(&mut out, "ready");
    assert!(seen.contains("ready"), "{args:?}: no ready line: {seen:?}");
    // SAFETY: a signal to the CLI process this test started.
    unsafe { libc::kill(child.id() as i32, sig) };
    out.read_to_string(&mut seen).unwrap();
    let st = berth_tests::wait_status(&mut child, Duration::from_secs(60), "signalled CLI");
    (st.code().unwrap_or_else(|| -st.signal().unwrap_or(0)), seen)
}

#[test]
fn signals_reach_the_container_as_with_docker() {
    let p = peers();
    let trap = "trap 'echo got-term; exit 7' TERM; echo ready; sleep 100 & wait";
    // run: SIGTERM to the CLI goes to the container, which exits 7; the
    // CLI exits 7 and --rm removes the container.
    let run = [
        "run",
        "--rm",
        "--name",
        "sigt",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        trap,
    ];
    let d = signal_cli(&p, true, &run, libc::SIGTERM);
    let b = signal_cli(&p, false, &run, libc::SIGTERM);
    assert_eq!(d, (7, "ready\ngot-term\n".to_string()), "docker");
    assert_eq!(b, d, "berth");
    let (dps, bps) = p.both(&["ps", "-aq"]);
    assert_eq!((dps.stdout.as_str(), bps.stdout.as_str()), ("", ""));

    // start -a: the same.
    p.both(&["create", "--name", "sa", DEFAULT_IMAGE, "sh", "-c", trap]);
    let d = signal_cli(&p, true, &["start", "-a", "sa"], libc::SIGTERM);
    let b = signal_cli(&p, false, &["start", "-a", "sa"], libc::SIGTERM);
    assert_eq!(d, (7, "ready\ngot-term\n".to_string()), "docker start -a");
    assert_eq!(b, d, "berth start -a");
    let (d, b) = p.both(&["wait", "sa"]);
    assert_eq!((d.stdout.as_str(), b.stdout.as_str()), ("7\n", "7\n"));
    p.both(&["rm", "sa"]);

    // attach: the container prints a tick while it runs, so a tick seen
    // by the attached CLI means it is attached (and forwarding).
    let ticker = "trap 'echo got-term; exit 7' TERM; while true; do echo ready; sleep 0.2; done";
    p.both(&[
        "run",
        "-d",
        "--name",
        "at",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        ticker,
    ]);
    let (dc, dout) = signal_cli(&p, true, &["attach", "at"], libc::SIGTERM);
    let (bc, bout) = signal_cli(&p, false, &["attach", "at"], libc::SIGTERM);
    assert_eq!(dc, 7, "docker attach: {dout}");
    assert_eq!(bc, 7, "berth attach: {bout}");
    assert!(
        dout.ends_with("got-term\n") && bout.ends_with("got-term\n"),
        "{dout:?} {bout:?}"
    );
    p.both(&["rm", "at"]);

    // --sig-proxy=false: the CLI dies of the signal, the container runs on.
    let off = [
        "run",
        "--sig-proxy=false",
        "--name",
        "off",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        trap,
    ];
    let d = signal_cli(&p, true, &off, libc::SIGTERM);
    let b = signal_cli(&p, false, &off, libc::SIGTERM);
    assert_eq!(d.0, -libc::SIGTERM, "docker: {d:?}");
    assert_eq!(b.0, d.0, "berth: {b:?}");
    let (d, b) = p.both(&["ps", "--filter", "name=off", "-q"]);
    assert!(
        !d.stdout.is_empty() && !b.stdout.is_empty(),
        "both still run"
    );
    let (d, b) = p.both(&["rm", "-f", "off"]);
    assert_eq!((d.code, b.code), (0, 0), "{}", b.stderr);
}

#[test]
fn init_survives_an_agent_upgrade_and_the_outdated_agent_is_restarted() {
    let p = peers();
    // berth with its own copy of the agent binary, replaced below as an
    // upgrade (or a rebuild) replaces it: a new file under the same name.
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("berth-agent");
    std::fs::copy(berth_tests::agent_bin(), &agent).unwrap();
    let berth = |args: &[&str]| -> Out {
        let mut cmd = p.berth.command();
        cmd.env("BERTH_AGENT", &agent).args(args);
        run_command(cmd, None, Duration::from_secs(120), &args.join(" "))
    };
    // Any agent from the shared peers() installation goes first.
    p.berth.kill_agent();
    let keep = berth(&["run", "-d", "--name", "keep", DEFAULT_IMAGE, "sleep", "300"]);
    assert_eq!(keep.code, 0, "{}", keep.stderr);
    let pid = p.berth.agent_pid().expect("agent running");
    let up = berth(&["version"]);
    assert!(up.stdout.contains("Up to date:       yes"), "{}", up.stdout);

    let new = dir.path().join("berth-agent.new");
    std::fs::copy(berth_tests::agent_bin(), &new).unwrap();
    std::fs::rename(&new, &agent).unwrap();

    // --init still works, as docker's: the running agent's init is a copy.
    let init = [
        "run",
        "--rm",
        "--init",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "tr '\\000' ' ' </proc/1/cmdline; echo",
    ];
    let d: Out = p.docker.docker(&init).unwrap().into();
    let b = berth(&init);
    assert_eq!(
        (d.code, d.stdout.as_str()),
        (
            0,
            "/sbin/docker-init -- sh -c tr '\\000' ' ' </proc/1/cmdline; echo \n"
        )
    );
    assert_eq!(
        (b.code, b.stdout.as_str()),
        (d.code, d.stdout.as_str()),
        "{}",
        b.stderr
    );
    // A running container keeps the old agent: a warning says so, once.
    assert!(
        b.stderr.contains("runs an older build") && b.stderr.matches("warning").count() == 1,
        "{}",
        b.stderr
    );
    assert_eq!(
        p.berth.agent_pid(),
        Some(pid),
        "restarted under a running container"
    );
    let v = berth(&["version"]);
    assert!(v.stdout.contains("Up to date:       no"), "{}", v.stdout);

    // Once nothing runs, the next command restarts it from the new binary.
    assert_eq!(berth(&["rm", "-f", "keep"]).code, 0);
    let ps = berth(&["ps", "-a"]);
    assert_eq!(ps.code, 0, "{}", ps.stderr);
    assert!(
        ps.stderr.contains("restarting the native engine"),
        "{}",
        ps.stderr
    );
    let new_pid = p.berth.agent_pid().expect("agent running again");
    assert_ne!(new_pid, pid);
    let v = berth(&["version"]);
    assert!(
        v.stdout.contains("Up to date:       yes") && v.stderr.is_empty(),
        "{}{}",
        v.stdout,
        v.stderr
    );
    // The restarted agent kept the image and serves containers.
    let o = berth(&["run", "--rm", DEFAULT_IMAGE, "echo", "after"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "after\n"), "{}", o.stderr);
}
