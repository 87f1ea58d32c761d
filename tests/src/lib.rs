//! Shared helpers for the black-box tests: locate the built binaries, give
//! each test its own berth state directory and agent, and clean up after.
//!
//! Binaries are expected to be built by `scripts/test.sh` (or
//! `scripts/dev-build.sh`) before `cargo test -p berth-tests` runs.
// Drives the Linux builds of berth and berth-agent (native placement, KVM).
#![cfg(target_os = "linux")]

pub mod chaos;
pub mod dockerd;
pub mod own_vm;
pub mod parity;
pub mod registry;
pub mod seccomp_probe;
pub mod shop;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

fn profile() -> String {
    std::env::var("BERTH_TEST_PROFILE").unwrap_or_else(|_| "release".into())
}

/// Path of the `berth` binary under test.
pub fn berth_bin() -> PathBuf {
    let p = target_dir().join(profile()).join("berth");
    assert!(
        p.is_file(),
        "{} missing: run scripts/dev-build.sh first",
        p.display()
    );
    p
}

/// Path of the static `berth-agent` binary under test.
pub fn agent_bin() -> PathBuf {
    let p = target_dir()
        .join("x86_64-unknown-linux-gnu")
        .join(profile())
        .join("berth-agent");
    assert!(
        p.is_file(),
        "{} missing: run scripts/dev-build.sh first",
        p.display()
    );
    p
}

/// The test variant of [`agent_bin`], built by `scripts/dev-build.sh` with
/// the agent's `fault-injection` feature (the faults tests arm with files
/// in a container's directory).
pub fn fault_agent_bin() -> PathBuf {
    let p = agent_bin()
        .with_file_name("fault-injection")
        .join("berth-agent");
    assert!(
        p.is_file(),
        "{} missing: run scripts/dev-build.sh first",
        p.display()
    );
    p
}

/// Runs `f` while holding an exclusive lock on `name` in the target dir
/// (serialises work shared between test processes).
pub fn with_lock<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let file = hold_lock(name);
    let r = f();
    drop(file);
    r
}

/// Takes the exclusive lock `name` (see [`with_lock`]); it is held until
/// the returned file is dropped.
pub fn hold_lock(name: &str) -> std::fs::File {
    let path = target_dir().join(format!(".{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: flock on a descriptor we own; the lock lives as long as it.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
    file
}

/// The offline default image archive (built on first use).
pub fn default_image() -> PathBuf {
    let out = workspace().join("out/images/busybox.oci.tar");
    with_lock("default-image", || {
        if !out.is_file() {
            let st = Command::new(workspace().join("images/build-default-image.sh"))
                .arg(&out)
                .status()
                .unwrap();
            assert!(st.success(), "building the default image failed");
        }
    });
    out
}

/// Name of the default image.
pub const DEFAULT_IMAGE: &str = "berth/busybox";

/// Now as unix seconds with nanoseconds (docker's `events --since` form).
pub fn events_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// Whether a command exists on PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Waits for `child` (stdout and stderr piped) and collects its output; if
/// it is still running after `limit`, SIGKILLs it and fails the test with
/// what it printed so far, so a hang costs minutes, not the CI run.
#[track_caller]
pub fn wait_output(mut child: Child, limit: Duration, what: &str) -> Out {
    fn drain(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_or_kill(&mut child, limit);
    // A grandchild may still hold the pipes open: don't wait for it forever.
    let collect = |h: std::thread::JoinHandle<Vec<u8>>| -> Vec<u8> {
        let until = Instant::now() + Duration::from_secs(10);
        while !h.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            h.join().unwrap_or_default()
        } else {
            b"<output still held open by a child process>".to_vec()
        }
    };
    let (stdout, stderr) = (collect(out), collect(err));
    let Some(status) = status else {
        panic!(
            "`{what}` did not finish within {} s (killed)\nstdout: {}\nstderr: {}",
            limit.as_secs(),
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
    .into()
}

/// Waits for `child` up to `limit`; SIGKILLs it and fails the test if it
/// is still running then.
#[track_caller]
pub fn wait_status(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    wait_or_kill(child, limit).unwrap_or_else(|| {
        panic!(
            "`{what}` did not finish within {} s (killed)",
            limit.as_secs()
        )
    })
}

/// Waits for `child` up to `limit`; `None` when it was still running then
/// (it has been SIGKILLed and reaped).
fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `berth compose ARGS` run in `dir` (the project directory).
#[track_caller]
pub fn compose(b: &Berth, dir: &Path, args: &[&str]) -> Out {
    let mut cmd = b.command();
    cmd.current_dir(dir).arg("compose").args(args);
    run_command(
        cmd,
        None,
        b.timeout,
        &format!("berth compose {}", args.join(" ")),
    )
}

/// Runs `cmd` (any CLI: berth with extra environment, docker) with `input`
/// on stdin, or none, and collects its output; fails the test, as
/// [`wait_output`] does, when it runs past `limit`.
#[track_caller]
pub fn run_command(mut cmd: Command, input: Option<&[u8]>, limit: Duration, what: &str) -> Out {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    wait_output(child, limit, what)
}

/// Runs a shell command; fails the test when it fails.
pub fn sh(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether a guest kernel is built: `$BERTH_KERNEL`, or one in the cache
/// (kernel-config/build-kernel.sh).
pub fn kernel_available() -> bool {
    if std::env::var_os("BERTH_KERNEL").is_some() {
        return true;
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cache = std::env::var("BERTH_CACHE_DIR").unwrap_or_else(|_| format!("{home}/.cache/berth"));
    std::fs::read_dir(format!("{cache}/kernel"))
        .map(|rd| rd.flatten().any(|e| e.path().join("vmlinux").is_file()))
        .unwrap_or(false)
}

/// Records how long a step of a slow test took: on stderr, and appended to
/// the file named by `BERTH_TEST_TIMINGS` (scripts/test.sh prints it at the
/// end, so CI logs show where the time went even when a test hangs).
pub fn timing(test: &str, step: &str, since: Instant) {
    let line = format!(
        "{test}: {step} done at {:.1} s",
        since.elapsed().as_secs_f64()
    );
    eprintln!("{line}");
    append_line("BERTH_TEST_TIMINGS", &line);
}

/// Appends `line` to the file the environment variable `var` names, if it
/// is set (scripts/test.sh prints those files in its summary).
fn append_line(var: &str, line: &str) {
    let Some(path) = std::env::var_os(var) else {
        return;
    };
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Prints the skip marker the suite uses, and appends it (with the test's
/// name) to the file named by `BERTH_TEST_SKIPS`, which scripts/test.sh
/// lists in its summary: cargo hides a passing test's output, so a skip
/// printed alone is never seen.
///
/// Under `CI=true` a skip fails the test: CI's machine has everything the
/// suite needs, so a skip there means something did not run that should
/// have. The one accepted opt-out is `BERTH_CROSS_ARM64=0`, named at the
/// start of the reason by the test it opts out.
#[track_caller]
pub fn skip(reason: &str) {
    println!("SKIPPED: {reason}");
    eprintln!("SKIPPED: {reason}");
    record_skip(reason);
    if skip_fails_here(reason) {
        panic!("a test skipped under CI=true: {reason}");
    }
}

/// Whether a skip with `reason` fails the test here (see [`skip`]).
pub fn skip_fails_here(reason: &str) -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true") && !reason.starts_with("BERTH_CROSS_ARM64=0")
}

/// Appends `<test binary> <test>: <reason>` to `$BERTH_TEST_SKIPS`.
pub fn record_skip(reason: &str) {
    let bin = std::env::args()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    // Test binaries are named <name>-<hash>.
    let bin = bin
        .rsplit_once('-')
        .map_or(bin.as_str(), |p| p.0)
        .to_string();
    let test = std::thread::current().name().unwrap_or("?").to_string();
    append_line("BERTH_TEST_SKIPS", &format!("{bin} {test}: {reason}"));
}

/// A private berth installation: its own state dir, agent and containers.
pub struct Berth {
    pub home: tempfile::TempDir,
    pub isolation: String,
    /// How long one berth command may take before the test fails (instead
    /// of hanging the suite). `BERTH_TEST_CMD_TIMEOUT` (seconds) sets the
    /// default; VM tests set their own.
    pub timeout: Duration,
}

/// Polls `f` every 50 ms until it holds; fails the test after 60 s.
#[track_caller]
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// Output of a berth command, with helpers.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    }
}

impl Out {
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Default for Berth {
    fn default() -> Self {
        Self::new()
    }
}

impl Berth {
    /// A fresh installation in the placement chosen by `BERTH_TEST_ISOLATION`
    /// (default native).
    pub fn new() -> Berth {
        let home = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir_in("/tmp")
            .unwrap();
        let timeout = std::env::var("BERTH_TEST_CMD_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1200);
        Berth {
            home,
            isolation: std::env::var("BERTH_TEST_ISOLATION").unwrap_or_else(|_| "native".into()),
            timeout: Duration::from_secs(timeout),
        }
    }

    /// Starts `berth system service` on `<home>/api/docker.sock`, its
    /// output discarded: the socket's path and the server process (the
    /// caller waits for the socket and stops the process).
    pub fn spawn_api_service(&self) -> (PathBuf, Child) {
        let sock = self.home.path().join("api").join("docker.sock");
        let child = self
            .command()
            .args(["system", "service", "--socket"])
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (sock, child)
    }

    /// A command with this installation's environment.
    pub fn command(&self) -> Command {
        let mut c = Command::new(berth_bin());
        c.env("BERTH_HOME", self.home.path())
            .env("BERTH_AGENT", agent_bin())
            .env("BERTH_ISOLATION", &self.isolation)
            // Tests compare stderr with docker's: no log lines unless a
            // test asks for them.
            .env_remove("BERTH_LOG");
        let vmm = berth_bin().with_file_name("berth-vmm");
        if vmm.is_file() {
            c.env("BERTH_VMM", vmm);
        }
        // Guests boot in ~50 s on an idle kvm_pvm host but took over 300 s
        // (berth's default limit) while other VMs loaded its two cores: the
        // tests check behaviour, so they give boots and restores longer.
        for (var, secs) in [
            ("BERTH_BOOT_TIMEOUT", "900"),
            ("BERTH_RESTORE_TIMEOUT", "600"),
        ] {
            if std::env::var_os(var).is_none() {
                c.env(var, secs);
            }
        }
        c
    }

    /// Runs berth with `args` and no stdin; fails the test if it takes
    /// longer than `self.timeout`.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, None)
    }

    /// Runs berth with `args`, feeding `input` on stdin.
    #[track_caller]
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Out {
        self.run_with(args, Some(input))
    }

    #[track_caller]
    fn run_with(&self, args: &[&str], input: Option<&[u8]>) -> Out {
        let mut cmd = self.command();
        cmd.args(args);
        run_command(
            cmd,
            input,
            self.timeout,
            &format!("berth {}", args.join(" ")),
        )
    }

    /// `inspect NAME` parsed: the first (only) object of docker's array.
    #[track_caller]
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.run(&["inspect", name]).ok().stdout;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// Loads the default image.
    pub fn with_default_image(self) -> Berth {
        let img = default_image();
        self.run(&["load", "-q", "-i", img.to_str().unwrap()]).ok();
        self
    }

    /// The native agent's data root.
    pub fn native_root(&self) -> PathBuf {
        self.home.path().join("native")
    }

    /// PID of the running native agent, if any.
    pub fn agent_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.native_root().join("agent.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains("(berth-agent)") && !s.contains(") Z "))
            .unwrap_or(false);
        alive.then_some(pid)
    }

    /// PID of this installation's machine VMM, if running.
    pub fn vmm_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.home.path().join("machine/vmm.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        (stat.contains("(berth-vmm)") && !stat.contains(") Z ")).then_some(pid)
    }

    /// SIGKILLs the machine's VMM (started by this test) and waits for it.
    pub fn kill_vmm(&self) {
        if let Some(pid) = self.vmm_pid() {
            // SAFETY: kill(2) of the VMM this test's berth started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            while self.vmm_pid().is_some() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }

    /// SIGKILLs the agent (started by this test) and waits until it is gone.
    pub fn kill_agent(&self) {
        if let Some(pid) = self.agent_pid() {
            // SAFETY: plain kill(2) of a process this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            for _ in 0..200 {
                if self.agent_pid().is_none() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

impl Berth {
    /// Kills the shims this installation's native engine started that are
    /// still alive (a test that killed the engine, or the CLI while a
    /// container waited for its attach, leaves them): found by their
    /// `--root` under this test's state dir, killed by PID.
    fn kill_leftover_shims(&self) {
        use std::os::unix::ffi::OsStrExt;
        let home = self.home.path();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let ours = args.windows(2).any(|w| {
                w[0] == b"--root"
                    && std::path::Path::new(std::ffi::OsStr::from_bytes(w[1])).starts_with(home)
            });
            if ours && args.contains(&&b"shim"[..]) && pid != std::process::id() as i32 {
                // SAFETY: plain kill(2) of a shim this test's engine started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    /// Removes the bridges and nftables tables this installation's native
    /// engine made on the host, so that tests leave no network state
    /// behind (berth itself keeps the default bridge, as docker keeps
    /// docker0).
    fn remove_host_networks(&self) {
        let Ok(rd) = std::fs::read_dir(self.native_root().join("networks")) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(text) = std::fs::read_to_string(e.path().join("network.json")) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            let Some(br) = v["bridge"].as_str().filter(|s| !s.is_empty()) else {
                continue;
            };
            let _ = Command::new("ip")
                .args(["link", "del", br])
                .stderr(std::process::Stdio::null())
                .status();
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", &format!("berth-{br}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failed VM test: show what the guest said (agent errors, slow
            // requests, kernel messages) before the state dir goes.
            let serial = self.home.path().join("machine/serial.log");
            if let Ok(text) = std::fs::read_to_string(&serial) {
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("--- last lines of {}:", serial.display());
                for l in &lines[lines.len().saturating_sub(60)..] {
                    eprintln!("{l}");
                }
            }
        }
        self.kill_vmm();
        if self.agent_pid().is_some() {
            let ids = self.run(&["ps", "-aq", "--no-trunc"]).stdout;
            for id in ids.split_whitespace() {
                let _ = self.run(&["rm", "-f", id]);
            }
        }
        self.kill_agent();
        self.kill_leftover_shims();
        self.remove_host_networks();
        // Unmount anything left below the state dir before deleting it.
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            let prefix = self.home.path().to_string_lossy().to_string();
            let mut mounts: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(&prefix))
                .collect();
            mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in mounts {
                let c = std::ffi::CString::new(m).unwrap();
                // SAFETY: umount2 of a path below our own temp dir.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// Issue 24's load step: `n` `run --rm` of [`DEFAULT_IMAGE`] at once, run
/// `i` printing `load-i` and exiting `i % 7`, each writing its ID with
/// `--cidfile`. Panics listing every run whose output or exit code was
/// not its own; returns the `n` container IDs (64 hex each), in order.
pub fn run_rm_concurrently(b: &std::sync::Arc<Berth>, n: usize) -> Vec<String> {
    let ids = tempfile::tempdir().unwrap();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let b = b.clone();
            let cid = ids.path().join(format!("{i}.cid"));
            std::thread::spawn(move || {
                b.run(&[
                    "run",
                    "--rm",
                    "--cidfile",
                    cid.to_str().unwrap(),
                    DEFAULT_IMAGE,
                    "sh",
                    "-c",
                    &format!("echo load-{i}; exit {}", i % 7),
                ])
            })
        })
        .collect();
    let mut failures = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        let o = h.join().unwrap();
        if o.code != (i % 7) as i32 || o.stdout != format!("load-{i}\n") {
            failures.push(format!(
                "run {i}: exit {} (want {}), stdout {:?}, stderr {:?}",
                o.code,
                i % 7,
                o.stdout,
                o.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    (0..n)
        .map(|i| {
            let id = std::fs::read_to_string(ids.path().join(format!("{i}.cid")))
                .unwrap_or_else(|e| panic!("run {i} wrote no --cidfile: {e}"));
            assert_eq!(id.len(), 64, "run {i}'s ID: {id:?}");
            id
        })
        .collect()
}
