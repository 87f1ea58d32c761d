//! `berth compare`: the same image run natively, in the shared machine VM
//! and in an own microVM, measured side by side and explained.
//!
//! - [`target`]: drives one placement (containers, exec, timings) through
//!   the placement API, the same way `berth run` does.
//! - [`probe`]: isolation facts read from inside a container, and the
//!   host's own facts they are compared with.
//! - [`workloads`]: the timed workloads (startup, exec, syscall, fork+exec,
//!   CPU loop, page faults, file writes) and memory (PSS).
//! - [`report`]: the report model (serialized as the JSON schema in
//!   `docs/compare.schema.json`), the terminal table and the HTML page.

#[cfg(unix)]
pub mod docker;
pub mod probe;
pub mod report;
pub mod results;
pub mod seccomp;
#[cfg(unix)]
pub mod target;
#[cfg(unix)]
pub mod workloads;

pub use report::{Metric, PlacementReport, Report};

use std::fmt;
use std::str::FromStr;

/// The placements `compare` knows, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlacementKind {
    Native,
    Shared,
    Vm,
    /// The reference column: a docker daemon that answers here.
    Docker,
}

impl PlacementKind {
    pub const ALL: [PlacementKind; 3] = [
        PlacementKind::Native,
        PlacementKind::Shared,
        PlacementKind::Vm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlacementKind::Native => "native",
            PlacementKind::Shared => "shared",
            PlacementKind::Vm => "vm",
            PlacementKind::Docker => "docker",
        }
    }

    /// What the placement is, in a few words for the report.
    pub fn describe(self) -> &'static str {
        match self {
            PlacementKind::Native => {
                "container on this host's kernel (namespaces, cgroups, seccomp)"
            }
            PlacementKind::Shared => {
                "container in berth's long-lived machine VM, shared with other containers"
            }
            PlacementKind::Vm => {
                "container in a microVM of its own, cloned from the machine snapshot"
            }
            PlacementKind::Docker => {
                "reference: a container of the docker daemon that answers here (docker CLI)"
            }
        }
    }

    pub fn isolation(self) -> crate::placement::Isolation {
        match self {
            PlacementKind::Native => crate::placement::Isolation::Native,
            PlacementKind::Shared => crate::placement::Isolation::Shared,
            PlacementKind::Vm => crate::placement::Isolation::Vm,
            // Binds and the like as natively: host paths.
            PlacementKind::Docker => crate::placement::Isolation::Native,
        }
    }
}

impl fmt::Display for PlacementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown placement or workload name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("unknown placement {0:?} (expected native, shared, vm or docker)")]
    Placement(String),
    #[error("unknown workload {0:?} (expected startup, exec, syscall, fork, cpu, fault, memory, fs or net)")]
    Workload(String),
    #[error("empty list")]
    Empty,
}

impl FromStr for PlacementKind {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s.trim() {
            "native" => Ok(PlacementKind::Native),
            "shared" => Ok(PlacementKind::Shared),
            "vm" => Ok(PlacementKind::Vm),
            "docker" => Ok(PlacementKind::Docker),
            other => Err(ParseError::Placement(other.to_string())),
        }
    }
}

/// The workloads `--workload` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// Time to first output (cold and warm) and teardown.
    Startup,
    /// Latency of `exec` into a running container.
    Exec,
    /// Cost of one system call (read/write of one byte).
    Syscall,
    /// fork + exec of a small program.
    Fork,
    /// A CPU-bound shell loop.
    Cpu,
    /// Page-fault cost (touching fresh anonymous memory).
    Fault,
    /// Host memory (PSS) for one idle container and for each further one.
    Memory,
    /// File writes on the container's root file system.
    Fs,
    /// Published-port TCP throughput, container to host (not in the
    /// default set).
    Net,
}

impl Workload {
    pub const ALL: [Workload; 9] = [
        Workload::Startup,
        Workload::Exec,
        Workload::Syscall,
        Workload::Fork,
        Workload::Cpu,
        Workload::Fault,
        Workload::Memory,
        Workload::Fs,
        Workload::Net,
    ];

    /// What runs when `--workload` is not given.
    pub const DEFAULT: [Workload; 8] = [
        Workload::Startup,
        Workload::Exec,
        Workload::Syscall,
        Workload::Fork,
        Workload::Cpu,
        Workload::Fault,
        Workload::Memory,
        Workload::Fs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Startup => "startup",
            Workload::Exec => "exec",
            Workload::Syscall => "syscall",
            Workload::Fork => "fork",
            Workload::Cpu => "cpu",
            Workload::Fault => "fault",
            Workload::Memory => "memory",
            Workload::Fs => "fs",
            Workload::Net => "net",
        }
    }
}

impl FromStr for Workload {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s.trim())
            .ok_or_else(|| ParseError::Workload(s.trim().to_string()))
    }
}

/// Parses a comma-separated list, keeping the canonical order and
/// dropping repeats.
pub fn parse_list<T: FromStr<Err = ParseError> + Ord>(s: &str) -> Result<Vec<T>, ParseError> {
    let mut v = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let x: T = part.parse()?;
        if !v.contains(&x) {
            v.push(x);
        }
    }
    if v.is_empty() {
        return Err(ParseError::Empty);
    }
    v.sort();
    Ok(v)
}

/// What to compare.
#[derive(Debug, Clone)]
pub struct Options {
    /// Image reference; must be in the host's image cache (or the
    /// native engine) already.
    pub image: String,
    pub placements: Vec<PlacementKind>,
    pub workloads: Vec<Workload>,
    /// Repeats of each timed measurement (medians are reported).
    pub rounds: u32,
    /// Containers kept idle at once for the memory figure (N >= 2).
    pub memory_containers: u32,
    /// Each differential workload runs until its work takes this long.
    pub target_ms: u64,
    /// The docker daemon for the reference column: None tries
    /// `DOCKER_HOST`, then /var/run/docker.sock; `none` turns it off.
    pub docker_host: Option<String>,
    /// Force a guest-kernel panic in a throw-away placement (own VM) and
    /// record what it took down.
    pub destructive: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            image: "busybox".into(),
            placements: PlacementKind::ALL.to_vec(),
            workloads: Workload::DEFAULT.to_vec(),
            rounds: 3,
            memory_containers: 5,
            target_ms: 300,
            docker_host: None,
            destructive: false,
        }
    }
}

/// Progress a front end may show.
pub trait Progress {
    /// A new step starts (one line).
    fn step(&self, placement: PlacementKind, what: &str);
}

/// No progress display.
pub struct Quiet;

impl Progress for Quiet {
    fn step(&self, _: PlacementKind, _: &str) {}
}

/// Runs the comparison: every placement in turn, each failure recorded in
/// its placement's report rather than ending the run.
#[cfg(unix)]
pub fn run(opts: &Options, progress: &dyn Progress) -> Report {
    let host = probe::HostFacts::read();
    let mut placements = Vec::new();
    let mut notes = Vec::new();
    for &p in &opts.placements {
        if p != PlacementKind::Docker {
            placements.push(workloads::measure_placement(p, opts, &host, progress));
        }
    }
    // The docker column: whenever a daemon answers (asked for by name in
    // --placements, one that does not answer is reported as an error).
    let asked = opts.placements.contains(&PlacementKind::Docker);
    match docker::choose_host(opts.docker_host.as_deref()) {
        Some(h) => {
            progress.step(PlacementKind::Docker, "asking the docker daemon");
            match docker::Docker::connect(&h) {
                Ok(d) => placements.push(workloads::measure_docker(d, opts, &host, progress)),
                Err(e) if asked => {
                    let mut rep = PlacementReport::new(PlacementKind::Docker);
                    rep.error = Some(format!("{e:#}"));
                    placements.push(rep);
                }
                Err(e) => notes.push(format!("no docker column: {e:#}")),
            }
        }
        None if asked => {
            let mut rep = PlacementReport::new(PlacementKind::Docker);
            rep.error = Some("no docker daemon: DOCKER_HOST is unset and /var/run/docker.sock does not exist (see --docker-host)".into());
            placements.push(rep);
        }
        None => {}
    }
    Report::new(opts, host, placements, notes)
}
