//! The measurements of one placement.
//!
//! Timed workloads run in a busybox-style shell inside an idle container,
//! started by `exec`, and time themselves there with the container
//! kernel's clock (/proc/uptime, 10 ms ticks): what an exec costs (engine
//! round trips, which take minutes in a loaded emulated guest) is not in
//! the numbers. The count grows inside the script until the work takes
//! `target_ms`; the same work at a baseline count is subtracted (the
//! shell's own loop and program start), and the difference is divided by
//! the extra work.

use super::probe::{self, HostFacts, Isolation};
use super::report::{Metric, PlacementReport};
use super::results::{BIND_TARGET, NET_PORT};
use super::target::{Running, Target};
use super::{Options, PlacementKind, Progress, Workload};
use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Measures everything `opts` asks for in one placement. Errors are kept
/// in the report (whole placement, or one metric).
pub fn measure_placement(
    kind: PlacementKind,
    opts: &Options,
    host: &HostFacts,
    progress: &dyn Progress,
) -> PlacementReport {
    let rep = PlacementReport::new(kind);
    progress.step(kind, "opening the placement");
    let t0 = Instant::now();
    let target = Target::open(kind, &opts.image);
    measure(target, t0, rep, opts, host, progress)
}

/// Measures the docker reference column with daemon `docker`.
pub fn measure_docker(
    docker: super::docker::Docker,
    opts: &Options,
    host: &HostFacts,
    progress: &dyn Progress,
) -> PlacementReport {
    let kind = PlacementKind::Docker;
    let mut rep = PlacementReport::new(kind);
    rep.description = format!(
        "{} (Docker Engine {} at {})",
        rep.description,
        docker.server_version,
        docker.host()
    );
    progress.step(kind, "loading the image");
    let t0 = Instant::now();
    let target = Target::open_docker(docker, &opts.image);
    measure(target, t0, rep, opts, host, progress)
}

fn measure(
    target: Result<Target>,
    t0: Instant,
    mut rep: PlacementReport,
    opts: &Options,
    host: &HostFacts,
    progress: &dyn Progress,
) -> PlacementReport {
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            rep.error = Some(format!("{e:#}"));
            return rep;
        }
    };
    let kind = target.kind;
    rep.available = true;
    if kind != PlacementKind::Vm && kind != PlacementKind::Docker {
        rep.push(Metric::value("engine_ready_ms", ms(t0.elapsed())));
    }
    if opts.workloads.contains(&Workload::Startup) {
        startup(&target, opts, &mut rep, progress);
    }
    progress.step(kind, "starting an idle container");
    // With `fs`, the idle container gets a host folder bind-mounted (as
    // `-v`): where the placement cannot bind host folders, the bind row
    // says why and the container starts without it.
    let bind_dir = opts
        .workloads
        .contains(&Workload::Fs)
        .then(|| {
            tempfile::Builder::new()
                .prefix("berth-compare-")
                .tempdir_in(std::env::temp_dir())
        })
        .transpose();
    let mut bind_error = None;
    let bound = match &bind_dir {
        Ok(Some(d)) => match target.start_idle_bound(d.path()) {
            Ok(r) => Some(r),
            Err(e) => {
                bind_error = Some(format!("{e:#}"));
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            bind_error = Some(format!("a host folder to bind: {e}"));
            None
        }
    };
    let idle = match bound.map(Ok).unwrap_or_else(|| target.start_idle()) {
        Ok(r) => r,
        Err(e) => {
            rep.error = Some(format!("starting an idle container: {e:#}"));
            return rep;
        }
    };
    progress.step(kind, "probing isolation");
    match target.exec(&idle, &["sh", "-c", probe::SCRIPT]) {
        Ok(r) if r.stdout.contains("probe=done") => {
            let mut iso = Isolation::from_probe(&probe::parse(&r.stdout), host);
            iso.vmm_seccomp = target.vmm_pid(&idle).and_then(probe::process_seccomp);
            progress.step(kind, "reading seccomp filters");
            read_syscalls(&target, &idle, &mut iso);
            if opts.destructive {
                progress.step(kind, "forcing a guest-kernel panic (--destructive)");
                iso.panic_trial = Some(match kind {
                    PlacementKind::Vm => target.panic_trial(&idle, &host.boot_id),
                    PlacementKind::Shared => probe::PanicTrial::not_run(
                        "not run: it would end the machine VM and every container in it",
                    ),
                    PlacementKind::Native | PlacementKind::Docker => {
                        probe::PanicTrial::not_run("not run: it would panic the host's own kernel")
                    }
                });
            }
            rep.isolation = Some(iso);
        }
        Ok(r) => {
            rep.error = Some(format!(
            "the isolation probe did not finish (exit {}); does the image have sh and coreutils?",
            r.code
        ))
        }
        Err(e) => rep.error = Some(format!("isolation probe: {e:#}")),
    }
    if opts.workloads.contains(&Workload::Exec) {
        progress.step(kind, "exec latency");
        let n = opts.rounds.max(3);
        let r = (0..n)
            .map(|_| {
                let r = target.exec(&idle, &["true"])?;
                if r.code != 0 {
                    bail!("exec true exited {}", r.code);
                }
                Ok(ms(r.elapsed))
            })
            .collect::<Result<Vec<f64>>>();
        rep.push(Metric::from_samples("exec_ms", r));
    }
    let target_time = Duration::from_millis(opts.target_ms.max(10));
    for (w, spec) in DIFFERENTIAL {
        if !opts.workloads.contains(&w) {
            continue;
        }
        if spec.id == "bind_write_mib_s" {
            if let Some(why) = &bind_error {
                rep.push(Metric::failed(spec.id, why));
                continue;
            }
            if let Ok(Some(d)) = &bind_dir {
                if let Err(e) = check_bind(&target, &idle, d.path()) {
                    rep.push(Metric::failed(spec.id, &format!("{e:#}")));
                    continue;
                }
            }
        }
        progress.step(kind, spec.what);
        let r = differential(&target, &idle, &spec, target_time, opts.rounds.max(1));
        rep.push(Metric::from_samples(spec.id, r));
    }
    if opts.workloads.contains(&Workload::Net) {
        progress.step(kind, "published-port throughput");
        let id = "net_published_mib_s";
        rep.push(match net(&target, opts.rounds.max(1)) {
            Ok((samples, detail)) => Metric {
                detail: Some(detail),
                ..Metric::from_samples(id, Ok(samples))
            },
            Err(e) => Metric::failed(id, &format!("{e:#}")),
        });
    }
    let mut running = vec![idle];
    if opts.workloads.contains(&Workload::Memory) {
        memory(&target, opts, &mut running, &mut rep, progress);
    }
    progress.step(kind, "removing containers");
    for r in running {
        if let Err(e) = target.remove(r) {
            rep.notes.push(format!("removing a container: {e:#}"));
        }
    }
    rep
}

/// Fills the system call counts: the container's own filters where it
/// runs on the host's kernel, the VMM's threads' where a VMM stands
/// between it and the host; each missing count says why.
fn read_syscalls(target: &Target, idle: &Running, iso: &mut Isolation) {
    use super::seccomp;
    match target.kind {
        PlacementKind::Native | PlacementKind::Docker => match target.container_pid(idle) {
            Some(pid) => match seccomp::process_syscalls(pid, false) {
                Ok(p) => iso.syscalls = Some(p.count),
                Err(e) => iso
                    .syscalls_notes
                    .push(format!("the container's filter: {e}")),
            },
            None => iso
                .syscalls_notes
                .push("the container's filter: its host PID is not known".into()),
        },
        PlacementKind::Shared | PlacementKind::Vm => {
            iso.syscalls_notes.push(
                "the container's filter is in the guest's kernel, which the host cannot read; \
                 the host's kernel is reached only through the VMM"
                    .into(),
            );
            match target.vmm_pid(idle) {
                Some(pid) => {
                    match seccomp::process_syscalls(pid, true) {
                        Ok(p) => iso.vmm_syscalls = Some(p),
                        Err(e) => iso.syscalls_notes.push(format!("the VMM's filters: {e}")),
                    }
                    match probe::vmm_exits(pid) {
                        Ok(e) => iso.vmm_exits = e,
                        Err(e) => iso.syscalls_notes.push(format!("the VMM's exits: {e}")),
                    }
                }
                None => iso
                    .syscalls_notes
                    .push("the VMM's filters: its PID is not known".into()),
            }
        }
    }
}

/// Checks that [`BIND_TARGET`] in `r` is host folder `dir`: a file the
/// container writes there is read back on the host.
fn check_bind(target: &Target, r: &Running, dir: &std::path::Path) -> Result<()> {
    let token = format!("berth-compare-{}", std::process::id());
    let res = target.exec(
        r,
        &[
            "sh",
            "-c",
            &format!("echo {token} > {BIND_TARGET}/.berth-compare-check"),
        ],
    )?;
    let back = std::fs::read_to_string(dir.join(".berth-compare-check")).unwrap_or_default();
    if res.code != 0 || back.trim() != token {
        bail!(
            "the bind mount did not reach the host folder (exit {}, read back {:?})",
            res.code,
            back.trim()
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn startup(target: &Target, opts: &Options, rep: &mut PlacementReport, progress: &dyn Progress) {
    let kind = target.kind;
    let mut teardown = Vec::new();
    let mut first = |label: &str| -> Result<f64> {
        progress.step(kind, label);
        let r = target.run(&["echo", "ready"])?;
        if r.code != 0 || r.stdout.trim() != "ready" {
            bail!("echo ready exited {} with {:?}", r.code, r.stdout);
        }
        teardown.push(ms(r.teardown));
        Ok(ms(r.first_output.unwrap_or(r.exited)))
    };
    let cold = first("startup (cold)");
    let warm = (0..opts.rounds.max(1))
        .map(|i| first(&format!("startup (warm {}/{})", i + 1, opts.rounds.max(1))))
        .collect::<Result<Vec<f64>>>();
    rep.push(Metric::from_samples(
        "startup_cold_ms",
        cold.map(|v| vec![v]),
    ));
    rep.push(Metric::from_samples("startup_warm_ms", warm));
    if teardown.is_empty() {
        rep.push(Metric::failed("teardown_ms", "no container ran"));
    } else {
        rep.push(Metric::from_samples("teardown_ms", Ok(teardown)));
    }
}

/// A workload measured differentially.
pub struct Differential {
    pub id: &'static str,
    pub what: &'static str,
    /// The shell command for a count.
    pub command: fn(u64) -> String,
    /// The baseline count, the first count tried, the largest allowed.
    pub base: u64,
    pub start: u64,
    pub max: u64,
    /// Turns (seconds, extra count) into the metric's value.
    pub value: fn(f64, u64) -> f64,
}

const DIFFERENTIAL: [(Workload, Differential); 6] = [
    (
        Workload::Syscall,
        Differential {
            id: "syscall_ns",
            what: "syscall latency",
            // Each byte is one read(2) and one write(2).
            command: |n| format!("dd if=/dev/zero of=/dev/null bs=1 count={n} 2>/dev/null"),
            base: 1,
            start: 2000,
            max: 50_000_000,
            value: |s, n| s * 1e9 / (2.0 * n as f64),
        },
    ),
    (
        Workload::Fork,
        Differential {
            id: "fork_exec_us",
            what: "fork+exec",
            command: |n| format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done"),
            base: 0,
            start: 4,
            max: 200_000,
            value: |s, n| s * 1e6 / n as f64,
        },
    ),
    (
        Workload::Cpu,
        Differential {
            id: "cpu_loop_ns",
            what: "CPU loop",
            command: |n| format!("i=0; while [ $i -lt {n} ]; do i=$((i+1)); done"),
            base: 0,
            start: 10_000,
            max: 500_000_000,
            value: |s, n| s * 1e9 / n as f64,
        },
    ),
    (
        Workload::Fault,
        Differential {
            id: "page_fault_ns",
            what: "page faults",
            // dd's buffer of n KiB is fresh anonymous memory: each 4 KiB
            // page faults in once, and is filled from /dev/zero.
            command: |n| format!("dd if=/dev/zero of=/dev/null bs={n}k count=1 2>/dev/null"),
            base: 4,
            start: 1024,
            max: 256 * 1024,
            value: |s, n| s * 1e9 / (n as f64 / 4.0),
        },
    ),
    (
        Workload::Fs,
        Differential {
            id: "fs_write_mib_s",
            what: "rootfs writes",
            command: |n| {
                format!(
                    "dd if=/dev/zero of=/tmp/.berth-compare bs=64k count={n} conv=fsync 2>/dev/null; rm -f /tmp/.berth-compare"
                )
            },
            base: 1,
            start: 16,
            max: 4096,
            value: |s, n| (n as f64 / 16.0) / s,
        },
    ),
    (
        Workload::Fs,
        Differential {
            id: "bind_write_mib_s",
            what: "bind-mount writes",
            // The same writes as the rootfs row, to a host folder bind
            // mounted at BIND_TARGET (virtio-fs in the machine VM).
            command: |n| {
                format!(
                    "dd if=/dev/zero of=/berth-compare-bind/.berth-compare bs=64k count={n} conv=fsync 2>/dev/null; rm -f /berth-compare-bind/.berth-compare"
                )
            },
            base: 1,
            start: 16,
            max: 4096,
            value: |s, n| (n as f64 / 16.0) / s,
        },
    ),
];

/// The in-container script for `spec`: the clock is /proc/uptime
/// (centiseconds, read by the shell's builtin `read`, no fork), so the
/// cost of the exec itself is not measured. The count grows inside the
/// script until the work takes `want_cs`; then the baseline count is
/// timed. Prints `n=<count> d=<cs> b=<cs>`.
pub fn script(spec: &Differential, want_cs: u64) -> String {
    let body = (spec.command)(COUNT_MARK).replace(&COUNT_MARK.to_string(), "${n}");
    format!(
        r#"n={start}; want={want_cs}
while :; do
  read u _ < /proc/uptime; t0=$(( ${{u%.*}} * 100 + 1${{u#*.}} - 100 ))
  {body}
  read u _ < /proc/uptime; t1=$(( ${{u%.*}} * 100 + 1${{u#*.}} - 100 ))
  d=$((t1 - t0))
  if [ $d -ge $want ] || [ $n -ge {max} ]; then break; fi
  if [ $d -gt 0 ]; then f=$((want * 3 / 2 / d)); else f=16; fi
  [ $f -lt 2 ] && f=2; [ $f -gt 16 ] && f=16
  n=$((n * f)); [ $n -gt {max} ] && n={max}
done
m=$n; n={base}
read u _ < /proc/uptime; t0=$(( ${{u%.*}} * 100 + 1${{u#*.}} - 100 ))
{body}
read u _ < /proc/uptime; t1=$(( ${{u%.*}} * 100 + 1${{u#*.}} - 100 ))
echo "n=$m d=$d b=$((t1 - t0))"
"#,
        start = spec.start,
        max = spec.max,
        base = spec.base,
    )
}

/// A count no workload uses, replaced by `$n` in the script.
const COUNT_MARK: u64 = 987_654_321;

/// Parses the script's `n=.. d=.. b=..` line.
pub fn parse_result(out: &str) -> Option<(u64, u64, u64)> {
    let line = out.lines().rev().find(|l| l.starts_with("n="))?;
    if line.split_whitespace().count() != 3 {
        return None;
    }
    let mut v = [0u64; 3];
    for (i, (k, kv)) in ["n", "d", "b"]
        .iter()
        .zip(line.split_whitespace())
        .enumerate()
    {
        let (key, val) = kv.split_once('=')?;
        if key != *k {
            return None;
        }
        v[i] = val.parse().ok()?;
    }
    Some((v[0], v[1], v[2]))
}

/// Runs `spec` in `r`, `rounds` times, timed inside the container.
pub fn differential(
    t: &Target,
    r: &Running,
    spec: &Differential,
    target: Duration,
    rounds: u32,
) -> Result<Vec<f64>> {
    let want_cs = (target.as_millis() as u64 / 10).max(5);
    let script = script(spec, want_cs);
    let mut samples = Vec::new();
    for _ in 0..rounds {
        let res = t.exec(r, &["sh", "-c", &script])?;
        let Some((n, d, b)) = parse_result(&res.stdout).filter(|_| res.code == 0) else {
            bail!(
                "{} exited {} with {:?}",
                spec.what,
                res.code,
                res.stdout.trim()
            );
        };
        if n <= spec.base {
            bail!("{}: no work measured", spec.what);
        }
        // A floor of one clock tick keeps the value positive when the
        // baseline was as slow as the work (noise).
        let secs = (d.saturating_sub(b)).max(1) as f64 / 100.0;
        samples.push((spec.value)(secs, n - spec.base));
    }
    Ok(samples)
}

/// MiB one `net` round moves at most.
const NET_MIB: u64 = 64;
/// How long one `net` round reads after the first byte. A guest whose
/// kernel is emulated (kvm_pvm) moves well under 1 MiB/s through a
/// published port, so a round is bounded by time as well as by bytes:
/// what came in this window gives the rate.
const NET_READ: Duration = Duration::from_secs(20);
/// How long the host waits for the first byte of a round: the listener is
/// an exec, and on this project's loaded kvm_pvm machine (load 11-14) the
/// first byte through an own VM's published port came 163-176 s after
/// `berth run` started (by hand), while 150 s was too short for compare's
/// row in both VM placements.
const NET_FIRST_BYTE: Duration = Duration::from_secs(600);

/// Published-port throughput: a container on the default network with
/// [`NET_PORT`] published on 127.0.0.1 sends up to `NET_MIB` MiB of zeros
/// with `nc -l`; the host connects to the published port and times the
/// bytes from the first to the last (at most [`NET_READ`] of them).
fn net(target: &Target, rounds: u32) -> Result<(Vec<f64>, String)> {
    let (r, port) = target.start_net()?;
    let res: Result<Vec<Received>> = (0..rounds).map(|_| net_round(target, &r, port)).collect();
    if let Err(e) = target.remove(r) {
        bail!("removing the net container: {e:#}");
    }
    let res = res?;
    let detail = res
        .iter()
        .map(|g| {
            format!(
                "{:.2} MiB in {:.1} s",
                g.bytes as f64 / (1 << 20) as f64,
                g.secs
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok((res.iter().map(Received::mib_s).collect(), detail))
}

fn net_round(target: &Target, r: &Running, port: u16) -> Result<Received> {
    let bytes = NET_MIB << 20;
    // `timeout` ends a listener nobody reached, so the exec returns; the
    // host closing the connection early ends nc (and dd) with EPIPE.
    let listen_s = (NET_FIRST_BYTE + NET_READ).as_secs() + 30;
    let server = format!(
        "dd if=/dev/zero bs=64k count={} 2>/dev/null | timeout {listen_s} nc -l -p {NET_PORT}",
        NET_MIB * 16
    );
    std::thread::scope(|s| {
        let listener = s.spawn(|| target.exec(r, &["sh", "-c", &server]));
        let deadline = Instant::now() + NET_FIRST_BYTE;
        let got = loop {
            match receive(port, bytes, deadline, NET_READ) {
                Ok(Some(v)) => break Ok(v),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Ok(None) => {
                    break Err(anyhow::anyhow!(
                        "nothing came from 127.0.0.1:{port} in {} s",
                        NET_FIRST_BYTE.as_secs()
                    ))
                }
                Err(e) => break Err(e),
            }
        };
        let ran = listener.join();
        let v = got?;
        match ran {
            Ok(Ok(_)) => Ok(v),
            Ok(Err(e)) => Err(e),
            Err(_) => bail!("the listener's thread panicked"),
        }
    })
}

/// What one `net` round read.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Received {
    bytes: u64,
    /// From the first byte to the last.
    secs: f64,
}

impl Received {
    fn mib_s(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 / self.secs.max(1e-6)
    }
}

/// Reads up to `bytes` zeros from 127.0.0.1:`port`, for at most `window`
/// after the first one. None when the connection was refused or closed
/// with nothing (no listener yet: the forwarder closes a connection the
/// guest refused); a connection that stays open but silent is waited on
/// until `first_by` (nc accepts one connection: dropping it would leave
/// nothing to connect to).
fn receive(port: u16, bytes: u64, first_by: Instant, window: Duration) -> Result<Option<Received>> {
    let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return Ok(None);
    };
    // Reads wake up this often to look at the clock.
    c.set_read_timeout(Some(Duration::from_secs(1)))?;
    read_zeros(c, bytes, first_by, window)
}

fn read_zeros(
    mut c: impl std::io::Read,
    bytes: u64,
    first_by: Instant,
    window: Duration,
) -> Result<Option<Received>> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut first: Option<(Instant, Instant)> = None;
    while total < bytes {
        let now = Instant::now();
        match first {
            Some((t0, _)) if now >= t0 + window => break,
            None if now >= first_by => {
                bail!("connected, but nothing came from the published port")
            }
            _ => {}
        }
        let n = match c.read(&mut buf) {
            Ok(n) => n,
            // The socket's read timeout: look at the clock again.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) if total == 0 => return Ok(None),
            Err(e) => bail!("reading from the published port after {total} bytes: {e}"),
        };
        if n == 0 {
            if total == 0 {
                return Ok(None);
            }
            bail!("the published port closed after {total} of {bytes} bytes");
        }
        if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
            bail!(
                "byte {} from the published port is {:#04x}, not the zero sent",
                total + i as u64,
                buf[i]
            );
        }
        let t = Instant::now();
        first = Some((first.map_or(t, |(t0, _)| t0), t));
        total += n as u64;
    }
    let secs = first.map_or(0.0, |(t0, last)| (last - t0).as_secs_f64());
    Ok(Some(Received { bytes: total, secs }))
}

/// Host memory: PSS of the processes behind one idle container, then
/// what each further idle container adds.
fn memory(
    target: &Target,
    opts: &Options,
    running: &mut Vec<Running>,
    rep: &mut PlacementReport,
    progress: &dyn Progress,
) {
    let kind = target.kind;
    let n = opts.memory_containers.max(2) as usize;
    let settle = || std::thread::sleep(Duration::from_secs(1));
    settle();
    let one = pss_kib(&target.roots(&running[..1]));
    rep.push(Metric::value("memory_first_mib", one as f64 / 1024.0));
    while running.len() < n {
        progress.step(
            kind,
            &format!("memory: idle container {}/{n}", running.len() + 1),
        );
        match target.start_idle() {
            Ok(r) => running.push(r),
            Err(e) => {
                rep.push(Metric::failed(
                    "memory_additional_mib",
                    &format!("starting container {}: {e:#}", running.len() + 1),
                ));
                return;
            }
        }
    }
    settle();
    let all = pss_kib(&target.roots(running));
    let per = (all as f64 - one as f64) / (n as f64 - 1.0) / 1024.0;
    let mut m = Metric::value("memory_additional_mib", per);
    m.detail = Some(format!(
        "{n} idle containers: {:.1} MiB PSS in all",
        all as f64 / 1024.0
    ));
    rep.push(m);
}

/// Sum of the PSS (KiB) of `roots` and all their descendants.
pub fn pss_kib(roots: &[i32]) -> u64 {
    tree(roots)
        .iter()
        .map(|&p| process_pss_kib(p).unwrap_or(0))
        .sum()
}

/// `roots` and their descendants, from /proc/*/stat.
pub fn tree(roots: &[i32]) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    if let Ok(d) = std::fs::read_dir("/proc") {
        for e in d.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| probe::parent_of(&s))
            {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut todo: Vec<i32> = roots.to_vec();
    while let Some(p) = todo.pop() {
        if seen.insert(p) {
            todo.extend(children.get(&p).into_iter().flatten());
        }
    }
    seen
}

/// PSS of one process in KiB, from /proc/PID/smaps_rollup.
pub fn process_pss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    parse_pss(&s)
}

/// The `Pss:` line of smaps_rollup, in KiB.
pub fn parse_pss(rollup: &str) -> Option<u64> {
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A published port's connection as `read_zeros` sees it: each step a
    /// read's answer.
    struct Steps(std::collections::VecDeque<std::io::Result<Vec<u8>>>);

    impl std::io::Read for Steps {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.pop_front() {
                Some(Ok(b)) => {
                    buf[..b.len()].copy_from_slice(&b);
                    Ok(b.len())
                }
                Some(Err(e)) => Err(e),
                None => Ok(0),
            }
        }
    }

    fn steps(v: Vec<std::io::Result<Vec<u8>>>) -> Steps {
        Steps(v.into())
    }

    fn timed_out() -> std::io::Result<Vec<u8>> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }

    /// A slow guest: read timeouts before the first byte keep the
    /// connection (nc accepts only one) until the first-byte deadline; a
    /// connection closed with nothing is retried (None); the bytes are
    /// checked; the window ends a round that has not moved everything.
    #[test]
    fn net_reads_wait_for_a_slow_first_byte_and_check_the_bytes() {
        let later = Instant::now() + Duration::from_secs(60);
        let long = Duration::from_secs(60);
        let r = steps(vec![
            timed_out(),
            timed_out(),
            Ok(vec![0; 3]),
            Ok(vec![0; 5]),
        ]);
        let got = read_zeros(r, 8, later, long).unwrap().unwrap();
        assert_eq!(got.bytes, 8);
        assert!(read_zeros(steps(vec![]), 8, later, long).unwrap().is_none());
        let refused = steps(vec![Err(std::io::ErrorKind::ConnectionReset.into())]);
        assert!(read_zeros(refused, 8, later, long).unwrap().is_none());
        let e = read_zeros(steps(vec![Ok(vec![0, 0, 7])]), 8, later, long).unwrap_err();
        assert!(format!("{e}").contains("byte 2"), "{e}");
        let e = read_zeros(steps(vec![Ok(vec![0; 3])]), 8, later, long).unwrap_err();
        assert!(format!("{e}").contains("closed after 3 of 8"), "{e}");
        // Silent past the first-byte deadline: an error, not a retry.
        let past = Instant::now();
        let e = read_zeros(steps(vec![timed_out()]), 8, past, long).unwrap_err();
        assert!(format!("{e}").contains("nothing came"), "{e}");
        // A window of nothing: the first read's bytes are the round.
        let r = steps(vec![Ok(vec![0; 3]), Ok(vec![0; 5])]);
        let got = read_zeros(r, 8, later, Duration::ZERO).unwrap().unwrap();
        assert_eq!(got.bytes, 3);
    }

    #[test]
    fn pss_from_rollup() {
        let s = "00200000-7ffcd3ac3000 ---p 00000000 00:00 0 [rollup]\nRss:  6376 kB\nPss:  3680 kB\nPss_Dirty: 868 kB\n";
        assert_eq!(parse_pss(s), Some(3680));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
    }

    #[test]
    fn this_process_has_pss_and_is_in_its_tree() {
        let me = std::process::id() as i32;
        assert!(process_pss_kib(me).unwrap_or(0) > 0);
        assert!(tree(&[me]).contains(&me));
    }

    #[test]
    fn scripts_time_themselves_in_a_shell() {
        // The script runs in the host's sh here: it must finish, and say
        // how far it got.
        for (_, d) in DIFFERENTIAL.iter().filter(|(w, _)| *w == Workload::Cpu) {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script(d, 5))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let (n, dt, _) = parse_result(&text).unwrap_or_else(|| panic!("{text}"));
            assert!(n >= d.start && (dt >= 5 || n == d.max), "{text}");
        }
        assert_eq!(parse_result("junk\nn=4 d=30 b=1\n"), Some((4, 30, 1)));
        assert_eq!(parse_result("n=4 d=-3 b=1"), None);
        assert_eq!(parse_result("n=4 x=3 b=1"), None);
        assert_eq!(parse_result("n=4"), None);
    }

    #[test]
    fn differential_commands_take_counts() {
        for (_, d) in DIFFERENTIAL {
            assert!((d.command)(d.start).contains(&d.start.to_string()));
            assert!(d.base < d.start && d.start <= d.max);
            assert!((d.value)(1.0, d.start - d.base) > 0.0);
        }
        let bind = DIFFERENTIAL
            .iter()
            .find(|(_, d)| d.id == "bind_write_mib_s");
        assert!(bind.is_some_and(|(_, d)| (d.command)(2).contains(&format!("{BIND_TARGET}/"))));
    }
}
