//! `berth compose`: the compose verbs with docker compose v2's semantics.
//! The project model is `berth_compose`; what the verbs do to the engine
//! is `berth_host::compose`. This module parses flags, loads the project
//! and prints.

use crate::commands::{build, container, pull, push, run};
use crate::placement::Isolation;
use anyhow::Result;
use berth_compose::{LoadOptions, Project, PullPolicy};
use berth_host::compose::{
    self as orch, spec, DownOptions, Orchestrator, Progress, RunOverrides, UpOptions,
};
use berth_protocol::mux::{self, Kind};
use berth_protocol::{ContainerStatus, ContainerSummary, ErrorKind, LogsOptions};
use clap::Parser;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

mod vm;

#[derive(clap::Args)]
pub struct ComposeArgs {
    /// Compose configuration files
    #[arg(short = 'f', long = "file")]
    file: Vec<PathBuf>,
    /// Project name
    #[arg(short = 'p', long = "project-name")]
    project_name: Option<String>,
    /// Specify a profile to enable
    #[arg(long)]
    profile: Vec<String>,
    /// Specify an alternate environment file
    #[arg(long)]
    env_file: Vec<PathBuf>,
    /// Specify an alternate working directory (default: the first file's)
    #[arg(long)]
    project_directory: Option<PathBuf>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(clap::Args)]
pub struct UpArgs {
    /// Detached mode: run containers in the background
    #[arg(short, long)]
    detach: bool,
    /// Build images before starting containers
    #[arg(long)]
    build: bool,
    /// Don't build an image, even if it's missing
    #[arg(long)]
    no_build: bool,
    /// Scale SERVICE to NUM instances (SERVICE=NUM)
    #[arg(long)]
    scale: Vec<String>,
    /// Don't start linked services
    #[arg(long)]
    no_deps: bool,
    /// Recreate containers even if their configuration hasn't changed
    #[arg(long)]
    force_recreate: bool,
    /// If containers already exist, don't recreate them
    #[arg(long)]
    no_recreate: bool,
    /// Remove containers for services not defined in the Compose file
    #[arg(long)]
    remove_orphans: bool,
    /// Wait for services to be running|healthy (implies detached mode)
    #[arg(long)]
    wait: bool,
    services: Vec<String>,
}

#[derive(clap::Subcommand)]
enum Verb {
    /// Parse, resolve and render the compose file in canonical format
    Config {
        /// Print the service names, one per line
        #[arg(long)]
        services: bool,
        /// Print the volume names, one per line
        #[arg(long)]
        volumes: bool,
        /// Only validate the configuration, don't print anything
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create and start containers
    Up(UpArgs),
    /// Stop and remove containers, networks
    Down {
        /// Remove named volumes declared in the "volumes" section
        #[arg(short, long)]
        volumes: bool,
        /// Remove containers for services not defined in the Compose file
        #[arg(long)]
        remove_orphans: bool,
        /// Remove images used by services: "local" (no custom tag) or "all"
        #[arg(long)]
        rmi: Option<String>,
        /// Shutdown timeout in seconds
        #[arg(short, long)]
        timeout: Option<i64>,
    },
    /// List containers
    Ps {
        /// Show all stopped containers
        #[arg(short, long)]
        all: bool,
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        /// Format the output: table or json
        #[arg(long, default_value = "table")]
        format: String,
        /// Display services
        #[arg(long)]
        services: bool,
        #[arg(value_name = "SERVICE")]
        names: Vec<String>,
    },
    /// View output from containers
    Logs {
        /// Follow log output
        #[arg(short, long)]
        follow: bool,
        /// Show timestamps
        #[arg(short, long)]
        timestamps: bool,
        /// Number of lines to show from the end of the logs for each container
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        /// Don't print prefix in logs
        #[arg(long)]
        no_log_prefix: bool,
        services: Vec<String>,
    },
    /// Stop services
    Stop {
        /// Specify a shutdown timeout in seconds
        #[arg(short, long)]
        timeout: Option<i64>,
        services: Vec<String>,
    },
    /// Start services
    Start { services: Vec<String> },
    /// Restart service containers
    Restart {
        /// Specify a shutdown timeout in seconds
        #[arg(short, long)]
        timeout: Option<i64>,
        services: Vec<String>,
    },
    /// Force stop service containers
    Kill {
        /// SIGNAL to send to the container
        #[arg(short, long, default_value = "SIGKILL")]
        signal: String,
        services: Vec<String>,
    },
    /// Removes stopped service containers
    Rm {
        /// Don't ask to confirm removal
        #[arg(short, long)]
        force: bool,
        /// Stop the containers, if required, before removing
        #[arg(short, long)]
        stop: bool,
        /// Remove any anonymous volumes attached to containers
        #[arg(short, long)]
        volumes: bool,
        services: Vec<String>,
    },
    /// Pause services
    Pause { services: Vec<String> },
    /// Unpause services
    Unpause { services: Vec<String> },
    /// Build or rebuild services
    Build {
        /// Do not use cache when building the image
        #[arg(long)]
        no_cache: bool,
        /// Always attempt to pull a newer version of the image
        #[arg(long)]
        pull: bool,
        /// Don't print anything to STDOUT
        #[arg(short, long)]
        quiet: bool,
        services: Vec<String>,
    },
    /// Pull service images
    Pull {
        /// Pull without printing progress information
        #[arg(short, long)]
        quiet: bool,
        /// Pull what it can and ignores images with pull failures
        #[arg(long)]
        ignore_pull_failures: bool,
        services: Vec<String>,
    },
    /// Push service images (those of services with both `build` and `image`)
    Push {
        /// Push without printing progress information
        #[arg(short, long)]
        quiet: bool,
        /// Push what it can and ignores images with push failures
        #[arg(long)]
        ignore_push_failures: bool,
        /// Also push images of services declared as dependencies
        #[arg(long)]
        include_deps: bool,
        services: Vec<String>,
    },
    /// Execute a command in a running container
    #[command(trailing_var_arg = true)]
    Exec {
        /// Detached mode: Run command in the background
        #[arg(short, long)]
        detach: bool,
        /// Set environment variables
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Path to workdir directory for this command
        #[arg(short, long)]
        workdir: Option<String>,
        /// Run the command as this user
        #[arg(short, long)]
        user: Option<String>,
        /// Index of the container if service has multiple replicas
        #[arg(long, default_value_t = 1)]
        index: u64,
        /// Disable pseudo-TTY allocation
        #[arg(short = 'T', long = "no-TTY")]
        no_tty: bool,
        service: String,
        #[arg(required = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run a one-off command on a service
    #[command(trailing_var_arg = true)]
    Run {
        /// Automatically remove the container when it exits
        #[arg(long)]
        rm: bool,
        /// Run container in background and print container ID
        #[arg(short, long)]
        detach: bool,
        /// Set environment variables
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Don't start linked services
        #[arg(long)]
        no_deps: bool,
        /// Run command with the service's ports enabled and mapped to the host
        #[arg(long)]
        service_ports: bool,
        /// Disable pseudo-TTY allocation
        #[arg(short = 'T', long = "no-TTY")]
        no_tty: bool,
        /// Assign a name to the container
        #[arg(long)]
        name: Option<String>,
        /// Override the entrypoint of the image
        #[arg(long)]
        entrypoint: Option<String>,
        /// Run as specified username or uid
        #[arg(short, long)]
        user: Option<String>,
        /// Working directory inside the container
        #[arg(short, long)]
        workdir: Option<String>,
        /// Add or override a label
        #[arg(short, long = "label")]
        label: Vec<String>,
        /// Publish a container's port(s) to the host
        #[arg(short, long = "publish")]
        publish: Vec<String>,
        /// Bind mount a volume
        #[arg(short, long = "volume")]
        volume: Vec<String>,
        service: String,
        #[arg(allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Set the number of containers for a service (SERVICE=NUM)
    Scale {
        /// Don't start linked services
        #[arg(long)]
        no_deps: bool,
        #[arg(required = true)]
        specs: Vec<String>,
    },
    /// List running compose projects
    Ls {
        /// Show all stopped Compose projects
        #[arg(short, long)]
        all: bool,
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        /// Format the output: table or json
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// List images used by the created containers
    Images {
        /// Only display IDs
        #[arg(short, long)]
        quiet: bool,
        services: Vec<String>,
    },
    /// Print the public port for a port binding
    Port {
        /// Index of the container if service has multiple replicas
        #[arg(long, default_value_t = 1)]
        index: u64,
        /// tcp or udp
        #[arg(long, default_value = "tcp")]
        protocol: String,
        service: String,
        private_port: u16,
    },
    /// Display the running processes
    Top { services: Vec<String> },
}

/// `compose run`'s container flags, checked as docker compose does.
fn run_overrides(
    name: &Option<String>,
    entrypoint: &Option<String>,
    user: &Option<String>,
    workdir: &Option<String>,
    labels: &[String],
    publish: &[String],
    volumes: &[String],
) -> std::result::Result<RunOverrides, String> {
    let entrypoint = match entrypoint {
        None => None,
        Some(e) => Some(
            shlex::split(e)
                .ok_or_else(|| format!("invalid entrypoint {e:?}: unbalanced quotes"))?,
        ),
    };
    let mut label_map = std::collections::BTreeMap::new();
    for l in labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            return Err(format!("invalid label {l:?}: empty key"));
        }
        label_map.insert(k.to_string(), v.to_string());
    }
    let mut ports = Vec::new();
    for p in publish {
        ports.extend(berth_host::ports::parse_publish(p)?);
    }
    let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    let mut mounts = Vec::new();
    for v in volumes {
        mounts.push(berth_host::mounts::parse_volume(v, &cwd).map_err(|e| e.to_string())?);
    }
    Ok(RunOverrides {
        name: name.clone(),
        entrypoint,
        user: user.clone(),
        workdir: workdir.clone(),
        labels: label_map,
        publish: ports,
        volumes: mounts,
    })
}

/// Prints one progress step as docker compose's plain progress does.
fn print_progress(p: Progress) {
    eprintln!(" {} {}  {}", p.object, p.name, p.status);
}

fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("{e}");
    1
}

pub fn run(iso: Isolation, a: &ComposeArgs) -> Result<i32> {
    // `ls` needs no project.
    if let Verb::Ls { all, quiet, format } = &a.verb {
        return ls(iso, *all, *quiet, format);
    }
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let opts = LoadOptions {
        files: a.file.clone(),
        project_name: a.project_name.clone(),
        env,
        env_files: a.env_file.clone(),
        profiles: a.profile.clone(),
        working_dir: a.project_directory.clone(),
    };
    let project = match Project::load(&opts) {
        Ok((p, warnings)) => {
            for w in warnings {
                eprintln!("WARN[0000] {w}");
            }
            p
        }
        // `-p NAME` and no file: docker compose v2 acts on the project's
        // containers for the verbs that need no definition.
        Err(berth_compose::ComposeError::NoComposeFile { .. })
            if a.file.is_empty() && a.project_name.is_some() && a.verb.acts_on_containers() =>
        {
            match named_project(iso, a.project_name.as_deref().unwrap_or_default()) {
                Ok(p) => p,
                Err(e) => return Ok(fail(e)),
            }
        }
        Err(e) => return Ok(fail(e)),
    };
    if let Verb::Config {
        services,
        volumes,
        quiet,
    } = &a.verb
    {
        if let Err(e) = project.services_in_dependency_order() {
            return Ok(fail(e));
        }
        if *quiet {
        } else if *services {
            project.service_names().iter().for_each(|s| println!("{s}"));
        } else if *volumes {
            project.volume_names().iter().for_each(|v| println!("{v}"));
        } else {
            print!("{}", project.to_config_yaml());
        }
        return Ok(0);
    }
    if iso.own_vm() {
        // A VM of its own for each service container: no common engine.
        return match vm::run(&project, &a.verb) {
            Ok(code) => Ok(code),
            Err(e) => Ok(fail(format!("{e:#}"))),
        };
    }
    let mut o = match Orchestrator::new(&project, iso) {
        Ok(o) => o,
        Err(e) => return Ok(fail(e)),
    };
    match verb(&mut o, &a.verb) {
        Ok(code) => Ok(code),
        Err(e) => Ok(fail(e)),
    }
}

impl Verb {
    /// The verbs that act only on a project's existing containers, and so
    /// work with `-p NAME` and no compose file.
    fn acts_on_containers(&self) -> bool {
        matches!(
            self,
            Verb::Down { .. }
                | Verb::Ps { .. }
                | Verb::Logs { .. }
                | Verb::Stop { .. }
                | Verb::Start { .. }
                | Verb::Restart { .. }
                | Verb::Kill { .. }
                | Verb::Rm { .. }
                | Verb::Pause { .. }
                | Verb::Unpause { .. }
                | Verb::Top { .. }
        )
    }
}

/// The project `name` as the engine holds it: its services are those its
/// containers are labelled with.
fn named_project(iso: Isolation, name: &str) -> anyhow::Result<Project> {
    let cwd = std::env::current_dir()?;
    if iso.own_vm() {
        return Ok(Project::named(name, cwd, vm::service_names(name))?);
    }
    let bare = Project::named(name, cwd.clone(), [])?;
    let mut services: Vec<String> = Orchestrator::new(&bare, iso)?
        .containers(true, true)?
        .iter()
        .map(|c| orch::service_of(c).to_string())
        .collect();
    services.sort();
    services.dedup();
    Ok(Project::named(name, cwd, services)?)
}

fn parse_scale(specs: &[String]) -> std::result::Result<BTreeMap<String, u64>, String> {
    let mut m = BTreeMap::new();
    for s in specs {
        let parsed = s
            .split_once('=')
            .and_then(|(k, v)| Some((k.to_string(), v.parse::<u64>().ok()?)));
        match parsed {
            Some((k, v)) if !k.is_empty() => {
                m.insert(k, v);
            }
            _ => return Err(format!("invalid scale specifier: {s:?} (want SERVICE=NUM)")),
        }
    }
    Ok(m)
}

fn verb(o: &mut Orchestrator, v: &Verb) -> anyhow::Result<i32> {
    let report = &mut print_progress;
    match v {
        Verb::Config { .. } | Verb::Ls { .. } => unreachable!("handled before"),
        Verb::Up(u) => up(o, u),
        Verb::Down {
            volumes,
            remove_orphans,
            rmi,
            timeout,
        } => {
            let images: Vec<String> = match rmi.as_deref() {
                None => Vec::new(),
                Some(kind @ ("local" | "all")) => o
                    .project
                    .services
                    .values()
                    .filter(|s| kind == "all" || s.image.is_none())
                    .map(|s| spec::image_name(o.project, s))
                    .collect(),
                Some(other) => return Ok(fail(format!("invalid --rmi option {other:?}"))),
            };
            let orphans = o.orphans()?;
            if !orphans.is_empty() && !remove_orphans {
                warn_orphans(o.project, &orphans);
            }
            o.down(
                &DownOptions {
                    volumes: *volumes,
                    remove_orphans: *remove_orphans,
                    timeout: *timeout,
                },
                report,
            )?;
            for i in images {
                if o.engine().image_remove(&i, false).is_ok() {
                    print_progress(Progress {
                        object: "Image",
                        name: i,
                        status: "Removed",
                    });
                }
            }
            Ok(0)
        }
        Verb::Ps {
            all,
            quiet,
            format,
            services,
            names,
        } => ps(o, *all, *quiet, format, *services, names),
        Verb::Logs {
            follow,
            timestamps,
            tail,
            no_log_prefix,
            services,
        } => {
            let tail = match parse_tail(tail) {
                Ok(t) => t,
                Err(e) => return Ok(fail(e)),
            };
            let list = o.service_containers(services, true)?;
            follow_logs(o, &list, *follow, *timestamps, tail, !no_log_prefix, None)?;
            Ok(0)
        }
        Verb::Stop { timeout, services } => {
            o.stop(services, *timeout, report)?;
            Ok(0)
        }
        Verb::Start { services } => {
            o.start(services, report)?;
            Ok(0)
        }
        Verb::Restart { timeout, services } => {
            o.restart(services, *timeout, report)?;
            Ok(0)
        }
        Verb::Kill { signal, services } => {
            let Some(sig) = container::parse_signal(signal.trim_start_matches("SIG")) else {
                return Ok(fail(format!("invalid signal: {signal}")));
            };
            o.kill(services, sig, report)?;
            Ok(0)
        }
        Verb::Rm {
            force,
            stop,
            volumes,
            services,
        } => {
            let list = o.removable(services, *stop)?;
            let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
            if !confirm_removal(&names, *force)? {
                return Ok(0);
            }
            o.remove(&list, *volumes, report)?;
            Ok(0)
        }
        Verb::Pause { services } => {
            o.pause(services, true, report)?;
            Ok(0)
        }
        Verb::Unpause { services } => {
            o.pause(services, false, report)?;
            Ok(0)
        }
        Verb::Build {
            no_cache,
            pull,
            quiet,
            services,
        } => {
            o.check_services(services)?;
            for s in to_build(o.project, services) {
                let code = build_service(o.project, o.isolation(), s, *no_cache, *pull, *quiet)?;
                if code != 0 {
                    return Ok(code);
                }
            }
            Ok(0)
        }
        Verb::Pull {
            quiet,
            ignore_pull_failures,
            services,
        } => {
            o.check_services(services)?;
            pull_services(
                o.project,
                o.isolation(),
                services,
                *quiet,
                *ignore_pull_failures,
            )
        }
        Verb::Push {
            quiet,
            ignore_push_failures,
            include_deps,
            services,
        } => {
            // docker compose v2 pushes what the project builds and names:
            // a service without both `build` and `image` is skipped.
            let say = |name: &str, status: &str| {
                if !quiet {
                    eprintln!(" Service {name}  {status}");
                }
            };
            for s in o.selection(services, !include_deps)? {
                let (Some(image), Some(_)) = (&s.image, &s.build) else {
                    say(&s.name, "Skipped");
                    continue;
                };
                say(&s.name, "Pushing");
                let failed = match push::run_to(
                    o.isolation(),
                    image,
                    *quiet,
                    (!quiet).then_some(pull::Sink::Stderr),
                ) {
                    Ok(0) => None,
                    Ok(c) => Some(format!("exit status {c}")),
                    Err(e) => Some(format!("{e:#}")),
                };
                match failed {
                    None => say(&s.name, "Pushed"),
                    Some(e) if *ignore_push_failures => {
                        eprintln!("failed to push {image}, ignored: {e}")
                    }
                    Some(e) => return Ok(fail(format!("failed to push {image}: {e}"))),
                }
            }
            Ok(0)
        }
        Verb::Exec { index, service, .. } => {
            let name = replica(o, service, *index)?;
            exec_in(o.isolation(), name, v)
        }
        Verb::Run {
            rm,
            detach,
            env,
            no_deps,
            service_ports,
            no_tty,
            name,
            entrypoint,
            user,
            workdir,
            label,
            publish,
            volume,
            service,
            command,
        } => {
            let overrides =
                match run_overrides(name, entrypoint, user, workdir, label, publish, volume) {
                    Ok(o) => o,
                    Err(e) => return Ok(fail(e)),
                };
            let deps = o
                .project
                .services
                .get(service)
                .map(|s| s.dependencies())
                .unwrap_or_default();
            if !no_deps && !deps.is_empty() {
                o.up(
                    &UpOptions {
                        services: deps,
                        ..Default::default()
                    },
                    report,
                )?;
            }
            let env = match run::resolve_env(env) {
                Ok(e) => e,
                Err(e) => return Ok(fail(e)),
            };
            let mut cfg = o.run_config(
                service,
                command.clone(),
                env,
                *service_ports,
                &overrides,
                report,
            )?;
            let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
            cfg.tty = cfg.tty || (!no_tty && terminal && !detach);
            cfg.open_stdin = !detach;
            cfg.auto_remove = *rm;
            let name = cfg.name.clone().unwrap_or_default();
            let id = o.engine().container_create(cfg.clone())?.id;
            if *detach {
                o.engine().container_start(&id)?;
                println!("{name}");
                return Ok(0);
            }
            let conn = o.connect()?;
            Ok(run::attach(conn, &id, true, cfg.tty, true)?)
        }
        Verb::Scale { no_deps, specs } => {
            let scale = match parse_scale(specs) {
                Ok(s) => s,
                Err(e) => return Ok(fail(e)),
            };
            o.up(
                &UpOptions {
                    services: scale.keys().cloned().collect(),
                    no_deps: *no_deps,
                    scale,
                    ..Default::default()
                },
                report,
            )?;
            Ok(0)
        }
        Verb::Images { quiet, services } => {
            let list = o.service_containers(services, true)?;
            let mut rows = Vec::new();
            for c in &list {
                if let Ok(i) = o.engine().image_inspect(&c.image) {
                    rows.push((c.name.clone(), c.image.clone(), i.id, i.size));
                }
            }
            print_images(&rows, *quiet);
            Ok(0)
        }
        Verb::Port {
            index,
            protocol,
            service,
            private_port,
        } => {
            let name = replica(o, service, *index)?;
            let ports = o.engine().container_ports(&name)?;
            let found = ports.iter().find(|p| {
                p.container_port == *private_port && p.proto.as_str() == protocol.as_str()
            });
            Ok(print_port(found, *private_port, protocol, &name))
        }
        Verb::Top { services } => {
            let list = o.service_containers(services, false)?;
            for c in &list {
                let t = o.engine().container_top(&c.id)?;
                print_top(&c.name, &t);
            }
            Ok(0)
        }
    }
}

/// `compose exec` (`v`) in the container `name`, as `berth exec` runs it.
fn exec_in(iso: Isolation, name: String, v: &Verb) -> anyhow::Result<i32> {
    let Verb::Exec {
        detach,
        env,
        workdir,
        user,
        no_tty,
        command,
        ..
    } = v
    else {
        unreachable!("an exec verb");
    };
    let mut argv: Vec<String> = vec!["exec".into()];
    if *detach {
        argv.push("-d".into());
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if !no_tty && !detach && terminal {
        argv.push("-it".into());
    } else if !detach && terminal {
        argv.push("-i".into());
    }
    for e in env {
        argv.extend(["-e".into(), e.clone()]);
    }
    if let Some(w) = workdir {
        argv.extend(["-w".into(), w.clone()]);
    }
    if let Some(u) = user {
        argv.extend(["-u".into(), u.clone()]);
    }
    argv.push(name);
    argv.extend(command.iter().cloned());
    let w = ExecWrap::try_parse_from(argv)?;
    container::exec(iso, &w.a)
}

/// `compose pull`: each (or each named) service's `image`, through the
/// placement's pull.
fn pull_services(
    project: &Project,
    iso: Isolation,
    services: &[String],
    quiet: bool,
    ignore_pull_failures: bool,
) -> anyhow::Result<i32> {
    let mut code = 0;
    for s in project.services.values() {
        let Some(image) = &s.image else { continue };
        if services.is_empty() || services.contains(&s.name) {
            let platform = spec::run_keys::platform(s)?;
            let c = pull_image(iso, image, platform.as_deref(), quiet)?;
            if c != 0 && !ignore_pull_failures {
                code = c;
            }
        }
    }
    Ok(code)
}

#[derive(Parser)]
#[command(trailing_var_arg = true)]
struct ExecWrap {
    #[command(flatten)]
    a: container::ExecArgs,
}

#[derive(Parser)]
struct BuildWrap {
    #[command(flatten)]
    a: build::BuildArgs,
}

#[derive(Parser)]
struct PullWrap {
    #[command(flatten)]
    a: pull::PullArgs,
}

/// `compose images`' output for (container name, image reference, image
/// id `sha256:…`, size) rows: the ids alone with `quiet`, else docker
/// compose's table.
fn print_images(rows: &[(String, String, String, u64)], quiet: bool) {
    if quiet {
        for (_, _, id, _) in rows {
            println!("{id}");
        }
        return;
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, image, id, size)| {
            let (repo, tag) = split_tag(image);
            vec![
                name.clone(),
                repo,
                tag,
                id.trim_start_matches("sha256:").chars().take(12).collect(),
                crate::fmt::human_size(*size),
            ]
        })
        .collect();
    print!(
        "{}",
        crate::fmt::table(
            &["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"],
            &rows
        )
    );
}

/// `compose port`'s answer for container `name`: the host side of the
/// binding found, or the error (exit 1).
fn print_port(
    found: Option<&berth_protocol::PublishedPort>,
    private_port: u16,
    protocol: &str,
    name: &str,
) -> i32 {
    match found {
        Some(p) => {
            println!(
                "{}",
                crate::ports::join_host_port(&p.host_ip, &p.host_port.to_string())
            );
            0
        }
        None => fail(format!(
            "no port {private_port}/{protocol} for container {name}"
        )),
    }
}

/// `compose top`'s block for the container `name`.
fn print_top(name: &str, t: &berth_protocol::TopInfo) {
    println!("{name}");
    print!(
        "{}",
        crate::fmt::table(
            &t.titles.iter().map(String::as_str).collect::<Vec<_>>(),
            &t.processes
        )
    );
    println!();
}

/// docker compose's words before `rm` removes the containers `names`:
/// "No stopped containers" when there are none, else the list and, unless
/// `force`, the question. Whether to go on.
fn confirm_removal(names: &[&str], force: bool) -> anyhow::Result<bool> {
    if names.is_empty() {
        eprintln!("No stopped containers");
        return Ok(false);
    }
    if force {
        return Ok(true);
    }
    eprintln!("Going to remove {}", names.join(", "));
    confirm()
}

/// The services `compose build SERVICES` builds: those with a `build`
/// section, among `services` (none: all).
fn to_build<'p>(
    project: &'p Project,
    services: &'p [String],
) -> impl Iterator<Item = &'p berth_compose::Service> {
    project
        .services
        .values()
        .filter(|s| s.build.is_some() && (services.is_empty() || services.contains(&s.name)))
}

fn split_tag(image: &str) -> (String, String) {
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (
            image[..slash + i].to_string(),
            image[slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".into()),
    }
}

/// The running container `index` of a service.
fn replica(o: &mut Orchestrator, service: &str, index: u64) -> anyhow::Result<String> {
    let list = o.service_containers(&[service.to_string()], false)?;
    list.iter()
        .find(|c| orch::number(c) == index)
        .map(|c| c.name.clone())
        .ok_or_else(|| anyhow::anyhow!("service {service:?} is not running"))
}

fn confirm() -> anyhow::Result<bool> {
    eprint!("Are you sure? [yN] ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

fn warn_orphans(project: &Project, orphans: &[ContainerSummary]) {
    let names: Vec<&str> = orphans.iter().map(|c| c.name.as_str()).collect();
    eprintln!(
        "WARN[0000] Found orphan containers ([{}]) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
        names.join(" ")
    );
    let _ = project;
}

fn build_service(
    project: &Project,
    iso: Isolation,
    s: &berth_compose::Service,
    no_cache: bool,
    pull: bool,
    quiet: bool,
) -> anyhow::Result<i32> {
    let b = s.build.as_ref().expect("a build section");
    let mut argv: Vec<String> = vec!["build".into(), "-t".into(), spec::image_name(project, s)];
    if let Some(f) = &b.dockerfile {
        let p = PathBuf::from(&b.context).join(f);
        argv.extend(["-f".into(), p.display().to_string()]);
    }
    for (k, v) in &b.args {
        argv.extend(["--build-arg".into(), format!("{k}={v}")]);
    }
    if let Some(t) = &b.target {
        argv.extend(["--target".into(), t.clone()]);
    }
    if no_cache {
        argv.push("--no-cache".into());
    }
    if pull {
        argv.push("--pull".into());
    }
    if quiet {
        argv.push("-q".into());
    }
    argv.push(b.context.clone());
    eprintln!(" Service {}  Building", s.name);
    let w = BuildWrap::try_parse_from(argv)?;
    // The build's own output goes to stderr: stdout is the verb's.
    build::run_to(iso, &w.a, pull::Sink::Stderr)
}

fn pull_image(
    iso: Isolation,
    image: &str,
    platform: Option<&str>,
    quiet: bool,
) -> anyhow::Result<i32> {
    let mut argv = vec!["pull".to_string()];
    if quiet {
        argv.push("-q".into());
    }
    if let Some(p) = platform {
        argv.extend(["--platform".into(), p.to_string()]);
    }
    argv.push(image.into());
    let w = PullWrap::try_parse_from(argv)?;
    // As the build's: progress on stderr.
    pull::run_to(iso, &w.a, pull::Sink::Stderr)
}

/// Builds (or pulls) what `up` is about to run and is missing, as each
/// service's `pull_policy` says: `always` pulls anyway, `never` refuses
/// a missing image, `build` builds anyway.
fn images_for_up(o: &mut Orchestrator, u: &UpArgs) -> anyhow::Result<i32> {
    let services: Vec<berth_compose::Service> = o
        .selection(&u.services, u.no_deps)?
        .into_iter()
        .cloned()
        .collect();
    for s in &services {
        let image = spec::image_name(o.project, s);
        let present = match o.engine().image_inspect(&image) {
            Ok(_) => true,
            Err(e) if e.kind() == Some(ErrorKind::NotFound) => false,
            Err(e) => return Err(e.into()),
        };
        let policy = s.pull_policy();
        let platform = spec::run_keys::platform(s)?;
        let build_anyway = u.build || policy == Some(PullPolicy::Build);
        let code = if s.build.is_some() && !u.no_build && (build_anyway || !present) {
            build_service(o.project, o.isolation(), s, false, false, false)?
        } else if s.build.is_none() && policy == Some(PullPolicy::Always) {
            pull_image(o.isolation(), &image, platform.as_deref(), false)?
        } else if present {
            0
        } else if s.build.is_some() {
            return Ok(fail(format!(
                "service {:?} has neither an image nor a build context specified: image {image:?} is missing and --no-build was given",
                s.name
            )));
        } else if policy == Some(PullPolicy::Never) {
            return Ok(fail(format!(
                "Error response from daemon: No such image: {image} (service {:?} has pull_policy: never)",
                s.name
            )));
        } else {
            pull_image(o.isolation(), &image, platform.as_deref(), false)?
        };
        if code != 0 {
            return Ok(code);
        }
    }
    Ok(0)
}

fn up(o: &mut Orchestrator, u: &UpArgs) -> anyhow::Result<i32> {
    let scale = match parse_scale(&u.scale) {
        Ok(s) => s,
        Err(e) => return Ok(fail(e)),
    };
    let opts = UpOptions {
        services: u.services.clone(),
        no_deps: u.no_deps,
        force_recreate: u.force_recreate,
        no_recreate: u.no_recreate,
        remove_orphans: u.remove_orphans,
        scale,
        no_start: false,
    };
    o.check_up(&opts)?;
    let code = images_for_up(o, u)?;
    if code != 0 {
        return Ok(code);
    }
    let orphans = o.orphans()?;
    if !orphans.is_empty() && !u.remove_orphans {
        warn_orphans(o.project, &orphans);
    }
    o.up(&opts, &mut print_progress)?;
    if u.wait {
        for s in o.selection(&u.services, u.no_deps)? {
            let cond = if s.healthcheck.is_some() {
                berth_compose::Condition::Healthy
            } else {
                berth_compose::Condition::Started
            };
            o.wait_condition(&s.name, cond, &mut print_progress)?;
        }
    }
    if u.detach || u.wait {
        return Ok(0);
    }
    // Attached: follow every container's logs; Ctrl-C stops the project.
    let list = o.service_containers(&u.services, true)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    #[cfg(unix)]
    for sig in [libc::SIGINT, libc::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    follow_logs(o, &list, true, false, None, true, Some(stop.clone()))?;
    if stop.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
        o.stop(&u.services, None, &mut print_progress)?;
        return Ok(0);
    }
    for c in o.service_containers(&u.services, true)? {
        if matches!(c.status, ContainerStatus::Exited | ContainerStatus::Dead) {
            println!("{} exited with code {}", c.name, c.exit_code.unwrap_or(0));
        }
    }
    Ok(0)
}

/// Foreground colours for log prefixes on a terminal (cyan, yellow,
/// green, magenta, blue, then their bright forms).
const COLOURS: [&str; 10] = ["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];

/// `logs --tail`: a count, or `all`/`-1` for every line.
fn parse_tail(tail: &str) -> std::result::Result<Option<u64>, String> {
    match tail {
        "all" | "-1" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| format!("invalid value for --tail: {n:?}")),
    }
}

/// Prints the containers' logs, each line prefixed by the container's
/// name; with `follow`, until every stream ends or `stop` is set.
fn follow_logs(
    o: &Orchestrator,
    list: &[ContainerSummary],
    follow: bool,
    timestamps: bool,
    tail: Option<u64>,
    prefix: bool,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> anyhow::Result<()> {
    let open = |c: &ContainerSummary| -> anyhow::Result<Box<dyn Read + Send>> {
        let conn = o.connect()?;
        Ok(Box::new(conn.logs(LogsOptions {
            id: c.id.clone(),
            follow,
            tail,
            since: None,
            until: None,
            timestamps,
        })?))
    };
    print_logs(list, &open, prefix, stop)
}

/// Prints the log streams (`open`: a container's multiplexed output) of
/// the containers, each line prefixed by the container's name, until
/// every stream ends or `stop` is set.
pub(super) fn print_logs(
    list: &[ContainerSummary],
    open: &dyn Fn(&ContainerSummary) -> anyhow::Result<Box<dyn Read + Send>>,
    prefix: bool,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> anyhow::Result<()> {
    let width = list.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let out = Arc::new(Mutex::new(()));
    let mut threads = Vec::new();
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    for (i, c) in list.iter().enumerate() {
        let mut stream = open(c)?;
        let head = if !prefix {
            String::new()
        } else if colour {
            // docker compose's rotation of ANSI colours, one per container.
            let code = COLOURS[i % COLOURS.len()];
            format!("\x1b[{code}m{:width$} |\x1b[0m ", c.name)
        } else {
            format!("{:width$} | ", c.name)
        };
        let out = out.clone();
        threads.push(std::thread::spawn(move || {
            let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
            let emit = |which: usize, line: &[u8]| {
                let _g = out.lock().unwrap_or_else(|e| e.into_inner());
                let mut buf = head.clone().into_bytes();
                buf.extend_from_slice(line);
                if !buf.ends_with(b"\n") {
                    buf.push(b'\n');
                }
                if which == 0 {
                    let _ = std::io::stdout().write_all(&buf);
                    let _ = std::io::stdout().flush();
                } else {
                    let _ = std::io::stderr().write_all(&buf);
                }
            };
            loop {
                let (which, data) = match mux::read_frame(&mut stream) {
                    Ok(Some((Kind::Stdout, d))) => (0, d),
                    Ok(Some((Kind::Stderr, d))) => (1, d),
                    Ok(Some((Kind::Exit, _))) | Ok(None) | Err(_) => break,
                    Ok(Some(_)) => continue,
                };
                pending[which].extend_from_slice(&data);
                while let Some(i) = pending[which].iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending[which].drain(..=i).collect();
                    emit(which, &line);
                }
            }
            for (which, rest) in pending.iter().enumerate() {
                if !rest.is_empty() {
                    emit(which, rest);
                }
            }
        }));
    }
    match stop {
        None => {
            for t in threads {
                let _ = t.join();
            }
        }
        Some(flag) => {
            // Attached `up`: until every container's log ends or Ctrl-C.
            while !threads.iter().all(|t| t.is_finished()) {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    Ok(())
}

fn ps(
    o: &mut Orchestrator,
    all: bool,
    quiet: bool,
    format: &str,
    services: bool,
    names: &[String],
) -> anyhow::Result<i32> {
    let list = o.listing(names, all)?;
    let project = o.project.name.clone();
    let mut ports_of = |c: &ContainerSummary| {
        if c.status == ContainerStatus::Running {
            o.engine().container_ports(&c.id).unwrap_or_default()
        } else {
            Vec::new()
        }
    };
    print_ps(&project, &list, &mut ports_of, quiet, format, services)
}

/// Prints `compose ps`'s listing of `list` (`ports_of`: a container's
/// published ports).
pub(super) fn print_ps(
    project: &str,
    list: &[ContainerSummary],
    ports_of: &mut dyn FnMut(&ContainerSummary) -> Vec<berth_protocol::PublishedPort>,
    quiet: bool,
    format: &str,
    services: bool,
) -> anyhow::Result<i32> {
    if quiet {
        list.iter().for_each(|c| println!("{}", c.id));
        return Ok(0);
    }
    if services {
        let mut seen = Vec::new();
        for c in list {
            let s = orch::service_of(c).to_string();
            if !seen.contains(&s) {
                println!("{s}");
                seen.push(s);
            }
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for c in list {
        let ports = ports_of(c);
        if format == "json" {
            let publishers: Vec<serde_json::Value> = ports
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "URL": p.host_ip,
                        "TargetPort": p.container_port,
                        "PublishedPort": p.host_port,
                        "Protocol": p.proto.as_str(),
                    })
                })
                .collect();
            let v = serde_json::json!({
                "ID": c.id,
                "Name": c.name,
                "Image": c.image,
                "Command": c.command,
                "Project": project,
                "Service": orch::service_of(c),
                "State": c.status.as_str(),
                "Health": c.health.as_ref().map(|h| h.status.clone()).unwrap_or_default(),
                "ExitCode": c.exit_code.unwrap_or(0),
                "Status": super::ps::status_text(c),
                "CreatedAt": c.created,
                "Labels": c.labels,
                "Publishers": publishers,
            });
            println!("{v}");
            continue;
        }
        rows.push(vec![
            c.name.clone(),
            c.image.clone(),
            crate::fmt::command_column(&c.command, true),
            orch::service_of(c).to_string(),
            crate::fmt::ago(Some(&c.created)),
            super::ps::status_text(c),
            crate::ports::ps_column(&ports, &[]),
        ]);
    }
    if format != "json" {
        print!(
            "{}",
            crate::fmt::table(
                &["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"],
                &rows
            )
        );
    }
    Ok(0)
}

/// `compose ls`: projects found by their containers' labels.
fn ls(iso: Isolation, all: bool, quiet: bool, format: &str) -> Result<i32> {
    let list = if iso.own_vm() {
        // Each container in a VM of its own: the keepers' records.
        berth_host::vm_fleet::list()
            .iter()
            .map(|e| e.summary())
            .collect()
    } else {
        let mut engine = match iso.connect() {
            Ok(e) => e,
            Err(e) => return Ok(fail(format!("{e:#}"))),
        };
        engine.container_list(true)?
    };
    let mut projects: BTreeMap<String, (BTreeMap<&'static str, usize>, String)> = BTreeMap::new();
    for c in &list {
        let Some(p) = c.labels.get(spec::label::PROJECT) else {
            continue;
        };
        let e = projects.entry(p.clone()).or_default();
        *e.0.entry(c.status.as_str()).or_default() += 1;
        if let Some(f) = c.labels.get(spec::label::CONFIG_FILES) {
            e.1 = f.clone();
        }
    }
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for (name, (states, files)) in &projects {
        if !all && !states.contains_key("running") {
            continue;
        }
        if quiet {
            println!("{name}");
            continue;
        }
        let status: Vec<String> = states.iter().map(|(s, n)| format!("{s}({n})")).collect();
        json.push(serde_json::json!({
            "Name": name, "Status": status.join(", "), "ConfigFiles": files,
        }));
        rows.push(vec![name.clone(), status.join(", "), files.clone()]);
    }
    if quiet {
    } else if format == "json" {
        println!("{}", serde_json::Value::Array(json));
    } else {
        print!(
            "{}",
            crate::fmt::table(&["NAME", "STATUS", "CONFIG FILES"], &rows)
        );
    }
    Ok(0)
}
