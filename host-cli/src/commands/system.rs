//! `berth system service` (the Docker Engine API socket), `berth system
//! check` (an fsck of the store) and `berth docker-env` (how to point
//! docker at it).

use crate::placement::Isolation;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum SystemCommand {
    /// Serve the Docker Engine API on a Unix socket, in the foreground
    Service(ServiceArgs),
    /// Check the store: images complete and verified, no debris of
    /// interrupted commands, containers consistent (exit 1 on findings)
    Check(CheckArgs),
    /// Show docker disk usage
    Df(crate::commands::df::DfArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Remove the debris found (temporary files, unreferenced blobs and
    /// snapshots, stray mounts); never an image, container or volume
    #[arg(long)]
    repair: bool,
    /// Output format: "text" or "json"
    #[arg(long, default_value = "text")]
    format: String,
    /// Unreferenced files younger than this many seconds may belong to a
    /// command in progress and are left alone
    #[arg(long, default_value_t = 600)]
    min_age: u64,
}

#[derive(clap::Args)]
pub struct ServiceArgs {
    /// The socket to listen on (default: $BERTH_HOME/docker.sock)
    #[arg(long)]
    socket: Option<PathBuf>,
}

pub fn run(iso: Isolation, c: &SystemCommand) -> Result<i32> {
    match c {
        SystemCommand::Check(a) => check(a),
        SystemCommand::Df(a) => crate::commands::df::run(iso, a),
        #[cfg(unix)]
        SystemCommand::Service(a) => {
            let socket = a.socket.clone().unwrap_or_else(berth_api::default_socket);
            eprintln!(
                "berth: serving the Docker Engine API at unix://{} ({} placement)",
                socket.display(),
                format!("{iso:?}").to_lowercase()
            );
            berth_api::serve(&berth_api::ServeOptions {
                socket,
                isolation: iso,
            })?;
            Ok(0)
        }
        #[cfg(not(unix))]
        SystemCommand::Service(a) => {
            let _ = (iso, &a.socket);
            anyhow::bail!("the Docker Engine API socket needs a Unix host")
        }
    }
}

/// Prints the `DOCKER_HOST` to export for the default socket.
pub fn docker_env() -> Result<i32> {
    let socket = berth_host::paths::state_dir().join("docker.sock");
    println!("export DOCKER_HOST=unix://{}", socket.display());
    println!("# serve it with: berth system service");
    println!(
        "# or as a docker context: docker context create berth --docker host=unix://{}",
        socket.display()
    );
    Ok(0)
}

/// `berth system check [--repair]`: 0 when the store is clean (or all it
/// found was debris and `--repair` removed it), 1 otherwise.
fn check(a: &CheckArgs) -> Result<i32> {
    use berth_host::system_check::{self, Kind};
    let json = match a.format.as_str() {
        "text" => false,
        "json" => true,
        f => anyhow::bail!("unknown format {f:?}: use text or json"),
    };
    let home = berth_host::paths::state_dir();
    let mut opts = system_check::Options::for_home(&home);
    opts.min_age = std::time::Duration::from_secs(a.min_age);
    let report = system_check::check(&home, &opts);
    let repaired = if a.repair {
        system_check::repair(&report)
    } else {
        Vec::new()
    };
    let failed_repairs = repaired.iter().filter(|r| r.error.is_some()).count();
    let left = report
        .findings
        .iter()
        .filter(|f| !(a.repair && f.kind == Kind::Debris))
        .count();
    let code = i32::from(left > 0 || failed_repairs > 0);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "Findings": report.findings,
                "Notes": report.notes,
                "Repaired": repaired,
                "Images": report.images,
                "Containers": report.containers,
                "Volumes": report.volumes,
                "Clean": code == 0,
            }))?
        );
        return Ok(code);
    }
    for f in &report.findings {
        println!("{:<13} {}: {}", f.kind.to_string(), f.path.display(), f.why);
    }
    for n in &report.notes {
        println!("{:<13} {}: {}", "in-progress", n.path.display(), n.why);
    }
    for r in &repaired {
        match &r.error {
            None => println!("{:<13} {} ({:?})", "removed", r.path.display(), r.action),
            Some(e) => println!("{:<13} {}: {e}", "not-removed", r.path.display()),
        }
    }
    let debris = report
        .findings
        .iter()
        .filter(|f| f.kind == Kind::Debris)
        .count();
    eprintln!(
        "berth: checked {} image(s), {} container(s), {} volume(s) under {}: {} finding(s) ({} debris){}",
        report.images,
        report.containers,
        report.volumes,
        home.display(),
        report.findings.len(),
        debris,
        if a.repair {
            format!(", {} removed", repaired.len() - failed_repairs)
        } else if debris > 0 {
            "; `berth system check --repair` removes the debris".into()
        } else {
            String::new()
        }
    );
    Ok(code)
}
