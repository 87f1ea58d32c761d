//! Healthchecks, as docker 28 runs them.
//!
//! The container's shim owns the schedule ([`Monitor`], driven from its
//! poll loop, so a container without a healthcheck costs nothing): at each
//! due time it starts `berth-agent health-probe`, a short-lived process
//! that execs the test in the container (libcontainer's tenant builder,
//! like `exec`), enforces the timeout, and prints one JSON result. The
//! shim folds results into `State.Health` ([`record_result`], docker's
//! `handleProbeResult`), writes it to `health.json` beside the record so
//! `inspect`/`ps` in other processes see it, and emits `health_status`
//! events on changes.

use super::files::ContainerPaths;
use super::record::ContainerRecord;

use super::{spec, user, Engine};
use crate::layout::{random_hex, read_json, write_json_atomic_unsynced, Layout};
use berth_protocol::health::{HEALTHY, STARTING, UNHEALTHY};
use berth_protocol::{Health, HealthConfig, HealthResult};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SECOND: i64 = 1_000_000_000;
/// docker's defaults.
pub const DEFAULT_INTERVAL: i64 = 30 * SECOND;
pub const DEFAULT_TIMEOUT: i64 = 30 * SECOND;
pub const DEFAULT_START_INTERVAL: i64 = 5 * SECOND;
pub const DEFAULT_RETRIES: i64 = 3;
/// Results kept in `Log`.
pub const MAX_LOG: usize = 5;
/// Probe output kept, in bytes ("..." marks a cut).
pub const MAX_OUTPUT: usize = 4096;
/// How long an exec may take to start before the probe counts as failed
/// (docker's, separate from the probe's own timeout).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Past start and timeout, how long the shim waits before it kills a
/// probe process that has not reported.
const WEDGED_MARGIN: Duration = Duration::from_secs(90);

/// docker's `timeoutWithDefault`; a negative value (an image's: the
/// engine refuses the user's) counts as unset too, so a hostile image
/// cannot make the shim probe back to back.
fn or_default(v: i64, d: i64) -> i64 {
    if v <= 0 {
        d
    } else {
        v
    }
}

/// docker's `validateHealthCheck` (daemon side): the CLI refuses negative
/// values itself, an API client may send anything.
pub fn validate(cfg: Option<&HealthConfig>) -> Result<(), String> {
    let Some(c) = cfg else { return Ok(()) };
    const MIN: i64 = 1_000_000;
    let short = |v: i64| v != 0 && v < MIN;
    if short(c.interval) {
        return Err("Interval in Healthcheck cannot be less than 1ms".into());
    }
    if short(c.timeout) {
        return Err("Timeout in Healthcheck cannot be less than 1ms".into());
    }
    if c.retries < 0 {
        return Err("Retries in Healthcheck cannot be negative".into());
    }
    if short(c.start_period) {
        return Err("StartPeriod in Healthcheck cannot be less than 1ms".into());
    }
    if short(c.start_interval) {
        return Err("StartInterval in Healthcheck cannot be less than 1ms".into());
    }
    Ok(())
}

/// docker's `handleProbeResult`: adds `result` to the log (the last
/// [`MAX_LOG`]) and moves status and failing streak. `since_start_ns` is
/// the time from the container's start to the probe's start. Returns
/// whether the status changed.
pub fn record_result(
    h: &mut Health,
    cfg: &HealthConfig,
    since_start_ns: i64,
    result: HealthResult,
) -> bool {
    let retries = if cfg.retries <= 0 {
        DEFAULT_RETRIES
    } else {
        cfg.retries
    };
    let old = h.status.clone();
    let passed = result.exit_code == 0;
    h.log.push(result);
    if h.log.len() > MAX_LOG {
        let cut = h.log.len() - MAX_LOG;
        h.log.drain(..cut);
    }
    if passed {
        h.failing_streak = 0;
        h.status = HEALTHY.into();
    } else {
        // Failures in the start period do not count until a first success.
        let in_start_period = h.status == STARTING && since_start_ns < cfg.start_period.max(0);
        if !in_start_period {
            h.failing_streak += 1;
            if h.failing_streak >= retries {
                h.status = UNHEALTHY.into();
            }
        }
    }
    old != h.status
}

/// docker 28's wait before the next probe (from the end of the last):
/// the start interval while still `starting` within the start period, the
/// interval otherwise.
pub fn next_interval(cfg: &HealthConfig, since_start_ns: i64, status: &str) -> Duration {
    let interval = or_default(cfg.interval, DEFAULT_INTERVAL);
    let start_interval = or_default(cfg.start_interval, DEFAULT_START_INTERVAL);
    let ns = if since_start_ns < cfg.start_period.max(0) && status == STARTING {
        start_interval
    } else {
        interval
    };
    Duration::from_nanos(ns.max(1_000_000) as u64)
}

/// The argv a probe runs: `CMD args…` as is, `CMD-SHELL cmd` under the
/// image's `SHELL` or `/bin/sh -c`. `None` for `NONE`, empty and unknown
/// tests (docker runs no probe for those).
pub fn probe_argv(cfg: &HealthConfig, shell: Option<&[String]>) -> Option<Vec<String>> {
    if !cfg.probes() {
        return None;
    }
    let rest = cfg.test[1..].to_vec();
    if cfg.test[0] == "CMD-SHELL" {
        let mut argv: Vec<String> = match shell.filter(|s| !s.is_empty()) {
            Some(s) => s.to_vec(),
            None => vec!["/bin/sh".into(), "-c".into()],
        };
        argv.extend(rest);
        return Some(argv);
    }
    Some(rest)
}

/// Go's `time.Duration.String()` (`30s`, `1m0s`, `1.5s`, `500ms`).
pub fn go_duration_string(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let u = ns.unsigned_abs();
    let frac = |v: u64, digits: u32| -> String {
        let p = 10u64.pow(digits);
        let (int, f) = (v / p, v % p);
        if f == 0 {
            int.to_string()
        } else {
            let s = format!("{int}.{f:0width$}", width = digits as usize);
            s.trim_end_matches('0').to_string()
        }
    };
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", frac(u, 3))
    } else if u < 1_000_000_000 {
        format!("{}ms", frac(u, 6))
    } else {
        let minutes = u / 60_000_000_000;
        let mut out = String::new();
        if minutes > 0 {
            if minutes >= 60 {
                out.push_str(&format!("{}h", minutes / 60));
            }
            out.push_str(&format!("{}m", minutes % 60));
        }
        out.push_str(&format!("{}s", frac(u % 60_000_000_000, 9)));
        out
    };
    if ns < 0 {
        format!("-{body}")
    } else {
        body
    }
}

/// A container's `State.Health`, if it ever started with a healthcheck.
pub fn read(dir: &Path) -> Option<Health> {
    read_json(&dir.join(super::files::HEALTH_FILE))
        .ok()
        .flatten()
}

/// What `berth-agent health-probe` prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProbeOutcome {
    exit_code: i64,
    output: String,
}

/// docker's `limitedBuffer`: keeps [`MAX_OUTPUT`] bytes, then "...".
#[derive(Default)]
struct Limited {
    buf: Vec<u8>,
    truncated: bool,
}

impl Limited {
    fn write(&mut self, data: &[u8]) {
        let keep = (MAX_OUTPUT - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..keep]);
        if keep < data.len() {
            self.truncated = true;
        }
    }

    fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.buf).into_owned();
        if self.truncated {
            s.push_str("...");
        }
        s
    }
}

fn set_nonblocking(f: &File) {
    use std::os::fd::AsRawFd;
    let _ = nix::fcntl::fcntl(
        f.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
}

fn now_utc() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A probe in flight.
struct Running {
    pid: Pid,
    out: File,
    buf: Vec<u8>,
    start: chrono::DateTime<chrono::Utc>,
    kill_at: Instant,
}

/// The shim's side: the schedule and `State.Health` of one run.
pub(super) struct Monitor {
    root: PathBuf,
    dir: PathBuf,
    rec: ContainerRecord,
    cfg: HealthConfig,
    started: chrono::DateTime<chrono::Utc>,
    health: Health,
    next: Instant,
    probe: Option<Running>,
    paused: bool,
}

impl Monitor {
    /// Starts monitoring a container that just started (`None` when it has
    /// no healthcheck that probes). The log of an earlier run is kept, the
    /// status starts over, as docker's `initHealthMonitor`.
    pub fn new(root: &Path, rec: &ContainerRecord, started_at: &str) -> Option<Monitor> {
        let cfg = rec
            .config
            .healthcheck
            .clone()
            .filter(HealthConfig::probes)?;
        let dir = Layout::new(root).container(&rec.id);
        let mut health = read(&dir).unwrap_or_default();
        health.status = STARTING.into();
        health.failing_streak = 0;
        let started = chrono::DateTime::parse_from_rfc3339(started_at)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| now_utc());
        let m = Monitor {
            root: root.to_path_buf(),
            next: Instant::now() + next_interval(&cfg, 0, STARTING),
            dir,
            rec: rec.clone(),
            cfg,
            started,
            health,
            probe: None,
            paused: false,
        };
        m.save();
        Some(m)
    }

    fn save(&self) {
        let _ = write_json_atomic_unsynced(&self.dir.join(super::files::HEALTH_FILE), &self.health);
    }

    fn since_start(&self, t: chrono::DateTime<chrono::Utc>) -> i64 {
        (t - self.started).num_nanoseconds().unwrap_or(i64::MAX)
    }

    /// The running probe's output, to poll on.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.probe.as_ref().map(|p| p.out.as_fd())
    }

    /// How long the shim may sleep before [`Monitor::service`] has work.
    pub fn wait(&self) -> Duration {
        if self.paused {
            // Only the unpause to notice: the shim's usual tick.
            return Duration::from_secs(1);
        }
        let at = match &self.probe {
            Some(p) => p.kill_at,
            None => self.next,
        };
        at.saturating_duration_since(Instant::now())
    }

    /// Collects a finished probe and starts a due one.
    pub fn service(&mut self) {
        if let Some(p) = self.probe.as_mut() {
            let mut chunk = [0u8; 8192];
            let mut eof = false;
            loop {
                match p.out.read(&mut chunk) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        if p.buf.len() < 64 * 1024 {
                            p.buf.extend_from_slice(&chunk[..n]);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if eof {
                let outcome: ProbeOutcome =
                    serde_json::from_slice(&p.buf).unwrap_or(ProbeOutcome {
                        exit_code: -1,
                        output: "health check probe failed".into(),
                    });
                let start = p.start;
                self.probe = None;
                self.finish(start, outcome.exit_code, outcome.output);
            } else if Instant::now() >= p.kill_at {
                // Its whole process group (it is a session leader): a
                // runtime child half way into the container goes too.
                let _ = kill(Pid::from_raw(-p.pid.as_raw()), Signal::SIGKILL);
                let _ = kill(p.pid, Signal::SIGKILL);
                let start = p.start;
                self.probe = None;
                let msg = format!(
                    "timed out starting health check for container {}",
                    self.rec.id
                );
                self.finish(start, -1, msg);
            }
            return;
        }
        let paused = self.dir.join(super::files::PAUSED).exists();
        if paused {
            // docker stops the monitor of a paused container, which leaves
            // it unhealthy; it starts over (one interval) on unpause.
            if !self.paused {
                self.paused = true;
                self.health.status = UNHEALTHY.into();
                self.save();
            }
            return;
        }
        if self.paused {
            self.paused = false;
            let since = self.since_start(now_utc());
            self.next = Instant::now() + next_interval(&self.cfg, since, &self.health.status);
            return;
        }
        if Instant::now() >= self.next {
            self.start_probe();
        }
    }

    fn start_probe(&mut self) {
        use std::os::unix::process::CommandExt;
        let start = now_utc();
        let mut cmd = std::process::Command::new("/proc/self/exe");
        cmd.arg("health-probe")
            .arg("--root")
            .arg(&self.root)
            .arg("--id")
            .arg(&self.rec.id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        // SAFETY: setsid is async-signal-safe; the probe gets its own
        // session so signals meant for the shim do not reach it.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let out = child.stdout.take().map(OwnedFd::from).map(File::from);
                let Some(out) = out else {
                    self.finish(start, -1, "health check probe: no output pipe".into());
                    return;
                };
                set_nonblocking(&out);
                let timeout = or_default(self.cfg.timeout, DEFAULT_TIMEOUT).max(0) as u64;
                // The shim's reap loop collects the child; its verdict
                // comes through the pipe.
                self.probe = Some(Running {
                    pid: Pid::from_raw(child.id() as i32),
                    out,
                    buf: Vec::new(),
                    start,
                    // The probe enforces the timeout itself; this only
                    // catches a wedged one. Generous: where the guest
                    // kernel is emulated and busy, one probe took 80 s.
                    kill_at: Instant::now()
                        + START_TIMEOUT
                        + Duration::from_nanos(timeout)
                        + WEDGED_MARGIN,
                });
            }
            Err(e) => self.finish(start, -1, format!("health check probe: {e}")),
        }
    }

    fn finish(&mut self, start: chrono::DateTime<chrono::Utc>, exit_code: i64, output: String) {
        let end = now_utc();
        let since = self.since_start(start);
        let result = HealthResult {
            start: rfc3339(start),
            end: rfc3339(end),
            exit_code,
            output,
        };
        let changed = record_result(&mut self.health, &self.cfg, since, result);
        self.save();
        if changed {
            let action = format!("health_status: {}", self.health.status);
            super::events::container(&self.root, &self.rec, &action, &[]);
        }
        let since_now = self.since_start(now_utc());
        self.next = Instant::now() + next_interval(&self.cfg, since_now, &self.health.status);
    }

    /// The container stopped: no more probes; docker then reports it
    /// unhealthy (no event).
    pub fn stop(&mut self) {
        if let Some(p) = self.probe.take() {
            let _ = kill(Pid::from_raw(-p.pid.as_raw()), Signal::SIGKILL);
            let _ = kill(p.pid, Signal::SIGKILL);
        }
        self.health.status = UNHEALTHY.into();
        self.save();
    }
}

/// Entry point of `berth-agent health-probe`: runs the container's test
/// once and prints the outcome as one JSON line.
pub fn run_probe(root: &Path, id: &str) -> i32 {
    let outcome = probe(root, id).unwrap_or_else(|output| ProbeOutcome {
        exit_code: -1,
        output,
    });
    println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
    0
}

fn probe(root: &Path, id: &str) -> Result<ProbeOutcome, String> {
    let engine = Engine::open(Layout::new(root));
    let layout = engine.layout().clone();
    let paths = ContainerPaths::new(&layout, id);
    let rec: ContainerRecord = read_json(&paths.dir.join(super::files::RECORD))
        .ok()
        .flatten()
        .ok_or_else(|| format!("No such container: {id}"))?;
    let cfg = rec.config.healthcheck.clone().unwrap_or_default();
    let shell = engine
        .images
        .config(&rec.image_id)
        .ok()
        .and_then(|c| c.config)
        .and_then(|c| c.shell);
    let argv = probe_argv(&cfg, shell.as_deref()).ok_or("no healthcheck")?;
    let timeout_ns = or_default(cfg.timeout, DEFAULT_TIMEOUT);
    let identity = user::resolve(&paths.rootfs, &rec.user).map_err(|e| e.to_string())?;
    let mut env = rec.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", identity.home));
    }
    let exec_id = random_hex(32);
    let attrs = [("execID", exec_id.clone())];
    let events = |what: &str, extra: &[(&str, String)]| {
        super::events::container(root, &rec, what, extra);
    };
    events(&format!("exec_create: {}", argv.join(" ")), &attrs);
    if let Err(e) =
        super::launch::check_executable(&paths.rootfs, &rec.mounts, &argv, &env, &rec.workdir)
    {
        return Err(format!(
            "OCI runtime exec failed: exec failed: unable to start container process: {}: unknown",
            e.message
        ));
    }
    let privileges = super::security::Privileges::resolve(&rec.config)?;
    let mut process = spec::process(
        false,
        &identity,
        &argv,
        &env,
        &rec.workdir,
        super::launch::nofile_limit(),
        &privileges,
    );
    let seccomp =
        super::security::seccomp_executor(&privileges, &mut process, &layout.seccomp_cache())?;
    let dir = layout.container(id).join(super::files::EXEC_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let process_path = dir.join(format!("{exec_id}.probe.json"));
    write_json_atomic_unsynced(&process_path, &process).map_err(|e| e.to_string())?;
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer flag.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let wr2 = wr.try_clone().map_err(|e| e.to_string())?;
    let null = File::open("/dev/null").map_err(|e| e.to_string())?;
    let built = libcontainer::container::builder::ContainerBuilder::new(
        rec.id.clone(),
        libcontainer::syscall::syscall::SyscallType::Linux,
    )
    .with_root_path(layout.runtime())
    .map_err(|e| e.to_string())
    .map(|b| match seccomp {
        Some(x) => b.with_executor(x),
        None => b,
    })
    .and_then(|b| {
        b.with_stdin(OwnedFd::from(null))
            .with_stdout(wr)
            .with_stderr(wr2)
            .as_tenant()
            .with_process(Some(&process_path))
            .with_detach(true)
            .build()
            .map_err(|e| format!("exec failed: {e}"))
    });
    let _ = std::fs::remove_file(&process_path);
    let pid = built?;
    events(&format!("exec_start: {}", argv.join(" ")), &attrs);
    let out = File::from(rd);
    set_nonblocking(&out);
    let deadline = Instant::now() + Duration::from_nanos(timeout_ns.max(0) as u64);
    let mut output = Limited::default();
    let mut code: Option<i64> = None;
    let mut drain_until: Option<Instant> = None;
    let mut eof = false;
    loop {
        // The exit status first, then what is left in the pipe (a child
        // the test left behind may hold it open: a short drain only).
        if code.is_none() {
            loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(p, c)) if p == pid => code = Some(i64::from(c)),
                    Ok(WaitStatus::Signaled(p, s, _)) if p == pid => {
                        code = Some(128 + s as i64);
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            if code.is_some() {
                drain_until = Some(Instant::now() + Duration::from_millis(500));
            }
        }
        let mut chunk = [0u8; 8192];
        loop {
            match (&out).read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => output.write(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if code.is_some() && (eof || drain_until.is_some_and(|d| Instant::now() >= d)) {
            break;
        }
        if code.is_none() && Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            let status = waitpid(pid, None);
            let c = match status {
                Ok(WaitStatus::Signaled(_, s, _)) => 128 + s as i64,
                Ok(WaitStatus::Exited(_, c)) => i64::from(c),
                _ => 137,
            };
            events(
                "exec_die",
                &[("execID", exec_id), ("exitCode", c.to_string())],
            );
            return Ok(ProbeOutcome {
                exit_code: -1,
                output: format!(
                    "Health check exceeded timeout ({})",
                    go_duration_string(timeout_ns)
                ),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let wait_ms = if code.is_some() {
            50
        } else {
            left.as_millis().clamp(1, 200) as u16
        };
        let mut fds = [nix::poll::PollFd::new(
            out.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if !eof {
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(wait_ms));
        } else {
            std::thread::sleep(Duration::from_millis(u64::from(wait_ms)));
        }
    }
    let code = code.unwrap_or(-1);
    events(
        "exec_die",
        &[("execID", exec_id), ("exitCode", code.to_string())],
    );
    Ok(ProbeOutcome {
        exit_code: code,
        output: output.text(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(retries: i64, start_period: i64) -> HealthConfig {
        HealthConfig {
            test: vec!["CMD-SHELL".into(), "true".into()],
            retries,
            start_period,
            ..Default::default()
        }
    }

    fn result(code: i64) -> HealthResult {
        HealthResult {
            exit_code: code,
            ..Default::default()
        }
    }

    fn starting() -> Health {
        Health {
            status: STARTING.into(),
            ..Default::default()
        }
    }

    #[test]
    fn success_makes_healthy_and_resets_the_streak() {
        let c = cfg(0, 0);
        let mut h = starting();
        h.failing_streak = 2;
        assert!(record_result(&mut h, &c, 10, result(0)));
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 0));
        assert!(!record_result(&mut h, &c, 20, result(0)));
    }

    #[test]
    fn failures_count_up_to_retries_default_three() {
        let c = cfg(0, 0);
        let mut h = starting();
        assert!(!record_result(&mut h, &c, 1, result(1)));
        assert!(!record_result(&mut h, &c, 2, result(1)));
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 2));
        assert!(record_result(&mut h, &c, 3, result(1)));
        assert_eq!((h.status.as_str(), h.failing_streak), (UNHEALTHY, 3));
        // Stays unhealthy, the streak keeps growing; one success recovers.
        assert!(!record_result(&mut h, &c, 4, result(-1)));
        assert_eq!(h.failing_streak, 4);
        assert!(record_result(&mut h, &c, 5, result(0)));
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 0));
        // A healthy container needs `retries` failures again.
        let c1 = cfg(1, 0);
        assert!(record_result(&mut h, &c1, 6, result(2)));
        assert_eq!(h.status, UNHEALTHY);
    }

    #[test]
    fn start_period_failures_do_not_count_while_starting() {
        let c = cfg(1, 10 * SECOND);
        let mut h = starting();
        assert!(!record_result(&mut h, &c, SECOND, result(1)));
        assert_eq!((h.status.as_str(), h.failing_streak), (STARTING, 0));
        // Past the start period, they do.
        assert!(record_result(&mut h, &c, 11 * SECOND, result(1)));
        assert_eq!((h.status.as_str(), h.failing_streak), (UNHEALTHY, 1));
        // Within the period but after a success: they count.
        let mut h = starting();
        record_result(&mut h, &cfg(2, 10 * SECOND), SECOND, result(0));
        record_result(&mut h, &cfg(2, 10 * SECOND), 2 * SECOND, result(1));
        assert_eq!((h.status.as_str(), h.failing_streak), (HEALTHY, 1));
    }

    #[test]
    fn log_keeps_the_last_five() {
        let c = cfg(0, 0);
        let mut h = starting();
        for i in 0..8 {
            record_result(&mut h, &c, 0, result(i));
        }
        let codes: Vec<i64> = h.log.iter().map(|r| r.exit_code).collect();
        assert_eq!(codes, vec![3, 4, 5, 6, 7]);
    }

    #[test]
    fn intervals_follow_docker() {
        let mut c = cfg(0, 0);
        assert_eq!(next_interval(&c, 0, STARTING), Duration::from_secs(30));
        c.interval = 2 * SECOND;
        c.start_period = 60 * SECOND;
        assert_eq!(next_interval(&c, SECOND, STARTING), Duration::from_secs(5));
        c.start_interval = SECOND;
        assert_eq!(next_interval(&c, SECOND, STARTING), Duration::from_secs(1));
        c.start_interval = -SECOND;
        assert_eq!(next_interval(&c, SECOND, STARTING), Duration::from_secs(5));
        c.start_interval = SECOND;
        assert_eq!(next_interval(&c, SECOND, HEALTHY), Duration::from_secs(2));
        assert_eq!(
            next_interval(&c, 61 * SECOND, STARTING),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn argv_by_test_type() {
        let mut c = cfg(0, 0);
        c.test = vec!["CMD-SHELL".into(), "exit 1".into()];
        assert_eq!(
            probe_argv(&c, None).unwrap(),
            vec!["/bin/sh", "-c", "exit 1"]
        );
        let sh = vec!["/bin/bash".to_string(), "-xc".to_string()];
        assert_eq!(
            probe_argv(&c, Some(&sh)).unwrap(),
            vec!["/bin/bash", "-xc", "exit 1"]
        );
        c.test = vec!["CMD".into(), "true".into(), "a b".into()];
        assert_eq!(probe_argv(&c, None).unwrap(), vec!["true", "a b"]);
        for t in [vec!["NONE"], vec![], vec!["CMD"], vec!["HTTP", "x"]] {
            c.test = t.iter().map(|s| s.to_string()).collect();
            assert_eq!(probe_argv(&c, None), None, "{t:?}");
        }
    }

    #[test]
    fn go_durations() {
        for (ns, s) in [
            (0, "0s"),
            (30 * SECOND, "30s"),
            (60 * SECOND, "1m0s"),
            (3600 * SECOND, "1h0m0s"),
            (90 * SECOND + SECOND / 2, "1m30.5s"),
            (500_000_000, "500ms"),
            (1_500_000, "1.5ms"),
            (2_000, "2µs"),
            (7, "7ns"),
        ] {
            assert_eq!(go_duration_string(ns), s);
        }
    }

    #[test]
    fn output_is_cut_like_dockers() {
        let mut l = Limited::default();
        l.write(&[b'a'; 4000]);
        l.write(&[b'b'; 200]);
        let t = l.text();
        assert_eq!(t.len(), MAX_OUTPUT + 3);
        assert!(t.ends_with("bbb..."));
        let mut l = Limited::default();
        l.write(b"ok\n");
        assert_eq!(l.text(), "ok\n");
    }

    #[test]
    fn daemon_validation_messages() {
        let mut c = cfg(0, 0);
        assert!(validate(Some(&c)).is_ok());
        c.interval = 10;
        assert_eq!(
            validate(Some(&c)).unwrap_err(),
            "Interval in Healthcheck cannot be less than 1ms"
        );
        c.interval = 0;
        c.retries = -1;
        assert_eq!(
            validate(Some(&c)).unwrap_err(),
            "Retries in Healthcheck cannot be negative"
        );
        c.retries = 0;
        c.start_interval = -5;
        assert_eq!(
            validate(Some(&c)).unwrap_err(),
            "StartInterval in Healthcheck cannot be less than 1ms"
        );
    }

    #[test]
    fn merge_takes_unset_fields_from_the_image() {
        let image = HealthConfig {
            test: vec!["CMD".into(), "img".into()],
            interval: 5,
            retries: 7,
            ..Default::default()
        };
        let user = HealthConfig {
            interval: 9,
            ..Default::default()
        };
        let m = HealthConfig::merge(Some(user), Some(&image)).unwrap();
        assert_eq!(m.test, image.test);
        assert_eq!((m.interval, m.retries), (9, 7));
        let none = HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        let m = HealthConfig::merge(Some(none.clone()), Some(&image)).unwrap();
        assert_eq!(m.test, vec!["NONE"]);
        assert!(!m.probes());
        assert_eq!(HealthConfig::merge(None, None), None);
    }
}
