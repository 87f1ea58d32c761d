//! `berth system service` (the Docker Engine API socket), `berth system
//! check` (an fsck of the store) and `berth docker-env` (how to point
//! docker at it).

use crate::commands::connect;
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
    /// Display system-wide information
    Info(InfoArgs),
    /// Remove unused data
    Prune(PruneArgs),
}

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Format output using a custom template: 'json', or a Go template
    #[arg(short, long)]
    format: Option<String>,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Prune volumes
    #[arg(long)]
    volumes: bool,
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
        SystemCommand::Info(a) => info(iso, a),
        SystemCommand::Prune(a) => prune(iso, a),
        #[cfg(unix)]
        SystemCommand::Service(a) => {
            let socket = a.socket.clone().unwrap_or_else(berth_api::default_socket);
            eprintln!(
                "berth: serving the Docker Engine API at unix://{} ({} placement)",
                socket.display(),
                format!("{iso:?}").to_lowercase()
            );
            // Its connections are requests, not commands: they must not keep
            // the machine from the idle suspend while the socket is up.
            crate::machine::commands_leave_no_use_mark();
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

/// `info` and `system info`: berth's facts, or docker's `types.Info`
/// through `--format` (`json`, `{{json .}}`, a Go template).
pub fn info(iso: Isolation, a: &InfoArgs) -> Result<i32> {
    let mut c = connect(iso)?;
    let i = c.info()?;
    let Some(format) = a.format.as_deref() else {
        println!("Isolation: {iso:?}");
        println!("Agent version: {}", i.agent_version);
        println!("Kernel Version: {}", i.kernel_release);
        println!("Architecture: {}", i.arch);
        println!("Cgroup Version: {}", i.cgroup_version);
        println!("Data Root: {}", i.data_root);
        println!("Images: {}", i.images);
        println!("Containers: {}", i.containers);
        if i.quirks.is_empty() {
            println!("Host workarounds: none");
        } else {
            println!("Host workarounds: {}", i.quirks.join(", "));
            for (what, n) in &i.workarounds {
                println!(" {what}: {n}");
            }
        }
        return Ok(0);
    };
    let list = c.container_list(true)?;
    let images = c.image_list()?.len();
    let v = berth_host::docker_info::info_value(iso, &i, &list, images);
    print_template(format, &v, "types.Info")
}

/// Prints `v` through a docker `--format`: `json` or a Go template. As
/// docker's: a template that does not parse is exit 64, one that fails on
/// a field `v` lacks (a struct field, in docker) exit 1.
pub fn print_template(format: &str, v: &serde_json::Value, type_name: &str) -> Result<i32> {
    use crate::fmt::{json_field, Template, TemplateValue};
    if format == "json" {
        println!("{v}");
        return Ok(0);
    }
    let t = match Template::parse(format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("template parsing error: {e}");
            return Ok(64);
        }
    };
    let lookup = |f: &str, _: Option<&str>| match json_field(v, f) {
        TemplateValue::Missing => None,
        x => Some(x),
    };
    match t.render(&lookup, v, type_name) {
        Ok(s) => {
            println!("{s}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(1)
        }
    }
}

/// docker's `system prune`: stopped containers, unused networks, with
/// `--volumes` unused anonymous volumes, and dangling images (`-a`: every
/// image no container uses), each section as its own prune prints it, then
/// the total.
fn prune(iso: Isolation, a: &PruneArgs) -> Result<i32> {
    if !a.force {
        let mut warning = String::from(
            "WARNING! This will remove:\n  - all stopped containers\n  - all networks not used by at least one container\n",
        );
        if a.volumes {
            warning.push_str("  - all volumes not used by at least one container\n");
        }
        warning.push_str(if a.all {
            "  - all images without at least one container associated to them\n  - all build cache\n"
        } else {
            "  - all dangling images\n  - all dangling build cache\n"
        });
        print!("{warning}\nAre you sure you want to continue? [y/N] ");
        std::io::Write::flush(&mut std::io::stdout())?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line)?;
        if !line.trim().eq_ignore_ascii_case("y") {
            return Ok(0);
        }
    }
    let mut c = connect(iso)?;
    let mut out = String::new();
    let section = |out: &mut String, title: &str, lines: &[String]| {
        if !lines.is_empty() {
            out.push_str(title);
            out.push('\n');
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
            out.push('\n');
        }
    };
    section(&mut out, "Deleted Containers:", &c.container_prune()?);
    section(&mut out, "Deleted Networks:", &c.network_prune()?);
    let mut reclaimed = 0;
    if a.volumes {
        let p = c.volume_prune(false)?;
        section(&mut out, "Deleted Volumes:", &p.names);
        reclaimed += p.reclaimed;
    }
    let (images, bytes) = crate::commands::image::prune_images(&mut c, a.all)?;
    // docker's image prune report words its lines in lower case.
    let images: Vec<String> = images
        .iter()
        .map(|l| match l.split_once(": ") {
            Some((k, v)) => format!("{}: {v}", k.to_lowercase()),
            None => l.clone(),
        })
        .collect();
    section(&mut out, "Deleted Images:", &images);
    reclaimed += bytes;
    print!("{out}");
    println!(
        "Total reclaimed space: {}",
        crate::fmt::human_size(reclaimed)
    );
    Ok(0)
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
