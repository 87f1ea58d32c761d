//! `berth compare`: the same image natively, in the shared machine VM and
//! in an own microVM, measured side by side. The work is in
//! `berth_host::compare`; this is the flags, the progress and the output.

#[cfg(unix)]
use anyhow::Context;
use anyhow::{bail, Result};
use berth_host::compare::{self, Options, PlacementKind, Workload};
use clap::{Args, ValueEnum};
use std::io::IsTerminal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Html,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Image to run in every placement (must be loaded or pulled already)
    #[arg(default_value = "busybox")]
    pub image: String,
    /// Placements to compare, comma-separated: native, shared, vm (a docker
    /// column is added whenever a docker daemon answers; naming docker makes
    /// a missing daemon an error in the report)
    #[arg(long, default_value = "native,shared,vm", value_delimiter = ',')]
    pub placements: Vec<PlacementKind>,
    /// Workloads, comma-separated: startup, exec, syscall, fork, cpu, fault, memory, fs, net
    #[arg(
        long,
        default_value = "startup,exec,syscall,fork,cpu,fault,memory,fs",
        value_delimiter = ','
    )]
    pub workload: Vec<Workload>,
    /// Repeats of each measurement (medians are reported)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Idle containers run at once for the per-container memory figure
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=50))]
    pub memory_containers: u32,
    /// Docker daemon for the reference column (default: DOCKER_HOST, else
    /// unix:///var/run/docker.sock when it exists); `none` leaves it out
    #[arg(long, value_name = "HOST")]
    pub docker_host: Option<String>,
    /// In an own VM (vm placement) only: force a guest-kernel panic from a
    /// privileged container and report whether it took down anything but
    /// that VM
    #[arg(long)]
    pub destructive: bool,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write the report to FILE instead of stdout
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

/// `list` in canonical order, each once.
fn canonical<T: Ord + Clone>(list: &[T]) -> Vec<T> {
    let mut v = list.to_vec();
    v.sort();
    v.dedup();
    v
}

/// A spinner with the current step on a terminal; nothing when piped.
struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    fn new() -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let pb =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {prefix}: {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        Spinner(Some(pb))
    }
}

impl compare::Progress for Spinner {
    fn step(&self, placement: PlacementKind, what: &str) {
        if let Some(pb) = &self.0 {
            pb.set_prefix(placement.name());
            pb.set_message(what.to_string());
        }
    }
}

pub fn run(a: &CompareArgs) -> Result<i32> {
    let opts = Options {
        image: a.image.clone(),
        placements: canonical(&a.placements),
        workloads: canonical(&a.workload),
        rounds: a.rounds,
        memory_containers: a.memory_containers,
        docker_host: a.docker_host.clone(),
        destructive: a.destructive,
        ..Options::default()
    };
    #[cfg(unix)]
    let report = {
        let spinner = Spinner::new();
        let r = compare::run(&opts, &spinner);
        if let Some(pb) = spinner.0 {
            pb.finish_and_clear();
        }
        r
    };
    #[cfg(not(unix))]
    {
        let _ = (&opts, Spinner::new);
        bail!("berth compare needs a Linux host");
    }
    #[cfg(unix)]
    {
        let text = match a.format {
            Format::Table => report.table(),
            Format::Json => serde_json::to_string_pretty(&report)? + "\n",
            Format::Html => report.html(),
        };
        match &a.output {
            Some(p) => {
                std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?
            }
            None => {
                use std::io::Write;
                std::io::stdout().write_all(text.as_bytes())?;
            }
        }
        if !report.placements.iter().any(|p| p.available) {
            for p in &report.placements {
                eprintln!(
                    "berth: {}: {}",
                    p.name,
                    p.error.as_deref().unwrap_or("not available")
                );
            }
            bail!("no placement could run {}", a.image);
        }
        Ok(0)
    }
}
