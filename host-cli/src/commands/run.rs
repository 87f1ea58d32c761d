//! `berth run`: create, attach, start, and relay the container's streams.

pub use super::run_values::parse_bytes;
pub(crate) use super::run_values::{error_code, go_parse_int, sentence};
use crate::client::ClientError;
use crate::commands::connect;
use crate::engine::Engine;
use crate::placement::Isolation;
use crate::platform::UnixStream;
use crate::tty::{window_size, RawMode};
use crate::EXIT_ENGINE;
use anyhow::Result;
pub use berth_host::args::ArgError;
use berth_host::engine::Created;
use berth_host::placement::OwnVm;
use berth_host::port_forward::RunPorts;
use berth_protocol::mux::{self, Kind};
use berth_protocol::{ContainerConfig, ErrorKind, RestartPolicy};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::sync::{Arc, Mutex};

/// `run`'s flags: `create`'s, and how to attach.
#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true, disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    detach: bool,
    /// Proxy received signals to the process (without a tty)
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    sig_proxy: bool,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short, long)]
    attach: Vec<String>,
    #[command(flatten)]
    create: CreateArgs,
}

impl std::ops::Deref for RunArgs {
    type Target = CreateArgs;
    fn deref(&self) -> &CreateArgs {
        &self.create
    }
}

/// `create`'s flags (docker's: `-h` is the hostname, help is `--help`).
#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true, disable_help_flag = true)]
pub struct CreateArgs {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Set meta data on a container
    #[arg(short, long = "label")]
    label: Vec<String>,
    /// Memory limit
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs
    #[arg(long, allow_negative_numbers = true)]
    cpus: Option<f64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    #[command(flatten)]
    resources: super::run_resources::ResourceArgs,
    /// Read in a file of environment variables
    #[arg(long)]
    env_file: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    read_only: bool,
    /// Mount a tmpfs directory (PATH[:OPTIONS])
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Restart policy to apply when a container exits (no, on-failure[:max-retries], always, unless-stopped)
    #[arg(long, default_value = "no")]
    restart: String,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// Signal to stop the container
    #[arg(long)]
    stop_signal: Option<String>,
    /// Log driver options (max-size=, max-file=)
    #[arg(long)]
    log_opt: Vec<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    mount: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long)]
    volumes_from: Vec<String>,
    /// Add Linux capabilities
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    privileged: bool,
    /// Security Options
    #[arg(long)]
    security_opt: Vec<String>,
    #[command(flatten)]
    net: crate::net_flags::NetworkArgs,
    #[command(flatten)]
    health: HealthArgs,
    #[command(flatten)]
    ns: crate::commands::run_namespaces::NamespaceArgs,
    /// The image to run
    image: String,
    /// Command and arguments
    #[arg(allow_hyphen_values = true)]
    command: Vec<String>,
}

/// docker's healthcheck flags.
#[derive(clap::Args, Debug, Default)]
pub struct HealthArgs {
    /// Command to run to check health
    #[arg(long)]
    health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long, allow_hyphen_values = true)]
    health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long, allow_hyphen_values = true)]
    health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long, allow_hyphen_values = true)]
    health_retries: Option<String>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long, allow_hyphen_values = true)]
    health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long, allow_hyphen_values = true)]
    health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    no_healthcheck: bool,
}

impl HealthArgs {
    /// docker's CLI: durations and retries as pflag parses them, then the
    /// conflict and sign checks, in docker's order.
    pub fn config(&self) -> Result<Option<berth_protocol::HealthConfig>, ArgError> {
        let dur = |flag: &'static str, v: &Option<String>| -> Result<i64, ArgError> {
            match v {
                None => Ok(0),
                Some(s) => {
                    berth_dockerfile::parse_go_duration(s).map_err(|reason| ArgError::Flag {
                        flag,
                        value: s.clone(),
                        reason,
                    })
                }
            }
        };
        let interval = dur("--health-interval", &self.health_interval)?;
        let timeout = dur("--health-timeout", &self.health_timeout)?;
        let start_period = dur("--health-start-period", &self.health_start_period)?;
        let start_interval = dur("--health-start-interval", &self.health_start_interval)?;
        let retries = match &self.health_retries {
            None => 0,
            Some(s) => go_parse_int(s).map_err(|why| ArgError::Flag {
                flag: "--health-retries",
                value: s.clone(),
                reason: format!("strconv.ParseInt: parsing {s:?}: {why}"),
            })?,
        };
        let cmd = self.health_cmd.clone().unwrap_or_default();
        let any = !cmd.is_empty()
            || interval != 0
            || timeout != 0
            || start_period != 0
            || retries != 0
            || start_interval != 0;
        if self.no_healthcheck {
            if any {
                return Err(ArgError::Other(
                    "--no-healthcheck conflicts with --health-* options".into(),
                ));
            }
            return Ok(Some(berth_protocol::HealthConfig {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
        }
        if !any {
            return Ok(None);
        }
        for (v, flag) in [
            (interval, "--health-interval"),
            (timeout, "--health-timeout"),
            (retries, "--health-retries"),
            (start_period, "--health-start-period"),
            (start_interval, "--health-start-interval"),
        ] {
            if v < 0 {
                return Err(ArgError::Other(format!("{flag} cannot be negative")));
            }
        }
        Ok(Some(berth_protocol::HealthConfig {
            test: if cmd.is_empty() {
                Vec::new()
            } else {
                vec!["CMD-SHELL".into(), cmd]
            },
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        }))
    }
}

/// Parses `--restart`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy, String> {
    let (name, count) = s.split_once(':').unwrap_or((s, ""));
    match name {
        "no" | "always" | "unless-stopped" if count.is_empty() => Ok(RestartPolicy {
            name: name.into(),
            maximum_retry_count: 0,
        }),
        "on-failure" => Ok(RestartPolicy {
            name: name.into(),
            maximum_retry_count: if count.is_empty() {
                0
            } else {
                count
                    .parse()
                    .map_err(|_| format!("invalid restart policy format: {s}"))?
            },
        }),
        "always" | "unless-stopped" | "no" => Err(format!(
            "invalid restart policy format: maximum retry count can only be used with 'on-failure': {s}"
        )),
        _ => Err(format!("invalid restart policy format: {s}")),
    }
}

/// Reads `--env-file` files: `KEY=VALUE` lines, `#` comments, a bare `KEY`
/// takes the value from this environment (and is left out when unset).
fn env_files(files: &[String]) -> Result<Vec<String>, ArgError> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| ArgError::Other(format!("open {f}: {}", crate::fmt::io_error(&e))))?;
        for line in text.lines() {
            let l = line.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (k, v) = match l.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (l.trim_end(), None),
            };
            if k.is_empty() {
                return Err(ArgError::Other(format!(
                    "poorly formatted environment: no variable name on line '{line}'"
                )));
            }
            if k.contains(char::is_whitespace) {
                return Err(ArgError::Other(format!(
                    "poorly formatted environment: variable '{k}' contains whitespaces"
                )));
            }
            match v {
                Some(v) => out.push(format!("{k}={v}")),
                None => {
                    if let Ok(v) = std::env::var(k) {
                        out.push(format!("{k}={v}"));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Prints an [`ArgError`] the way docker's CLI prints the same refusal.
pub trait Report {
    /// Prints the error for `verb` (`run`, `create`); returns the exit code.
    fn report(&self, verb: &str) -> i32;
}

impl Report for ArgError {
    fn report(&self, verb: &str) -> i32 {
        match self {
            ArgError::Flag {
                flag,
                value,
                reason,
            } => eprintln!(
                "invalid argument {value:?} for \"{flag}\" flag: {reason}\nSee 'berth {verb} --help'."
            ),
            ArgError::Other(m) => eprintln!(
                "berth: {}.\nSee 'berth {verb} --help'.",
                m.trim_end_matches('.')
            ),
            // docker's create prints the daemon's refusal as it is, exit 1.
            ArgError::Daemon(m) if verb == "create" => {
                eprintln!("Error response from daemon: {m}");
                return 1;
            }
            ArgError::Daemon(m) => eprintln!(
                "berth: Error response from daemon: {}.\nSee 'berth {verb} --help'.",
                m.trim_end_matches('.')
            ),
        }
        EXIT_ENGINE
    }
}

/// docker's `-e`: `NAME=VALUE` as given; a bare `NAME` takes this
/// environment's value, and stays bare when unset (the engine then leaves
/// the variable out, image default included).
pub fn resolve_env(list: &[String]) -> Result<Vec<String>, ArgError> {
    list.iter()
        .map(|e| {
            let name = e.split_once('=').map_or(e.as_str(), |p| p.0);
            if name.is_empty() {
                return Err(ArgError::Flag {
                    flag: "-e, --env",
                    value: e.clone(),
                    reason: format!("invalid environment variable: {e}"),
                });
            }
            Ok(match (e.contains('='), std::env::var_os(e)) {
                (false, Some(v)) => format!("{e}={}", v.to_string_lossy()),
                _ => e.clone(),
            })
        })
        .collect()
}

/// `--restart`, as docker's CLI reads it: NAME[:COUNT]. Which names and
/// counts are valid is the engine's to say.
fn restart_policy(s: &str) -> Result<RestartPolicy, ArgError> {
    let (name, count) = s.split_once(':').unwrap_or((s, ""));
    let maximum_retry_count = if count.is_empty() {
        0
    } else {
        count.parse().map_err(|_| {
            ArgError::Other(format!(
                "invalid restart policy format: maximum retry count must be an integer: {s}"
            ))
        })?
    };
    Ok(RestartPolicy {
        name: name.into(),
        maximum_retry_count,
    })
}

fn config(a: &CreateArgs) -> Result<ContainerConfig, ArgError> {
    let memory = a
        .memory
        .as_deref()
        .map(|m| {
            parse_bytes(m).map_err(|reason| ArgError::Flag {
                flag: "-m, --memory",
                value: m.into(),
                reason,
            })
        })
        .transpose()?;
    let nano_cpus = match a.cpus {
        Some(c) if !c.is_finite() => {
            return Err(ArgError::Flag {
                flag: "--cpus",
                value: c.to_string(),
                reason: "invalid number of CPUs".into(),
            })
        }
        Some(c) => Some((c * 1e9) as i64),
        None => None,
    };
    let mut labels = BTreeMap::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let entrypoint = a.entrypoint.as_ref().map(|e| {
        if e.is_empty() {
            Vec::new()
        } else {
            vec![e.clone()]
        }
    });
    let restart = restart_policy(&a.restart)?;
    if a.rm && !matches!(restart.name.as_str(), "no" | "") {
        return Err(ArgError::Other(
            "Conflicting options: --restart and --rm".into(),
        ));
    }
    a.ns.check_log_opts(&a.log_opt)?;
    let mut log_max_size = None;
    let mut log_max_files = None;
    for o in &a.log_opt {
        match o.split_once('=') {
            Some(("max-size", v)) => {
                log_max_size = Some(
                    parse_bytes(v)
                        .map_err(|e| ArgError::Daemon(format!("invalid value for max-size: {e}")))?
                        .max(0) as u64,
                );
            }
            Some(("max-file", v)) => {
                log_max_files =
                    Some(v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        ArgError::Daemon(format!("invalid value for max-file: {v}"))
                    })?);
            }
            Some((k, _)) => {
                return Err(ArgError::Daemon(format!(
                    "unknown log opt '{k}' for json-file log driver"
                )))
            }
            None => {
                return Err(ArgError::Flag {
                    flag: "--log-opt",
                    value: o.clone(),
                    reason: format!("invalid key value pair format: {o}"),
                })
            }
        }
    }
    let mut env = env_files(&a.env_file)?;
    env.extend(resolve_env(&a.env)?);
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let mut mounts = Vec::new();
    // --mount is a flag value docker's CLI checks as it reads the flags.
    for raw in &a.mount {
        mounts.push(crate::mounts::parse_mount(raw, &cwd)?);
    }
    let mut binds = Vec::new();
    for (i, raw) in a.volume.iter().enumerate() {
        // docker's CLI keeps -v in a set: a repeated spec counts once.
        if !a.volume[..i].contains(raw) {
            binds.push(crate::mounts::parse_volume(raw, &cwd)?);
        }
    }
    binds.extend(mounts);
    let mut cfg = ContainerConfig {
        image: a.image.clone(),
        name: a.name.clone(),
        cmd: if a.command.is_empty() {
            None
        } else {
            Some(a.command.clone())
        },
        entrypoint,
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        tty: a.tty,
        open_stdin: a.interactive,
        auto_remove: a.rm,
        labels,
        memory,
        nano_cpus,
        pids_limit: a.pids_limit,
        read_only: a.read_only,
        tmpfs: a.tmpfs.clone(),
        restart,
        init: a.init,
        stop_signal: a.stop_signal.clone(),
        log_max_size,
        log_max_files,
        mounts: binds,
        volumes_from: a.volumes_from.clone(),
        ..Default::default()
    };
    cfg.cap_add = berth_host::args::normalize_caps(&a.cap_add);
    cfg.cap_drop = berth_host::args::normalize_caps(&a.cap_drop);
    cfg.privileged = a.privileged;
    cfg.security_opt = security_opts(&a.security_opt)?;
    cfg.healthcheck = a.health.config()?;
    a.resources.apply(&mut cfg)?;
    a.net.apply(&mut cfg)?;
    a.ns.apply(&mut cfg)?;
    Ok(cfg)
}

/// The largest seccomp profile file `--security-opt seccomp=` reads.
const MAX_SECCOMP_PROFILE: u64 = 1 << 20;

/// docker's CLI (`parseSecurityOpts`): every option but
/// `no-new-privileges` needs a value; `seccomp=FILE` is replaced by the
/// file's JSON, compacted (`unconfined` and `builtin` name profiles).
/// What the options mean is the engine's to check.
fn security_opts(opts: &[String]) -> Result<Vec<String>, ArgError> {
    let mut out = Vec::with_capacity(opts.len());
    for opt in opts {
        let (mut k, mut v, mut ok) = match opt.split_once('=') {
            Some((k, v)) => (k, v, true),
            None => (opt.as_str(), "", false),
        };
        if !ok && k != "no-new-privileges" {
            if let Some((k2, v2)) = opt.split_once(':') {
                (k, v, ok) = (k2, v2, true);
            }
        }
        if (!ok || v.is_empty()) && k != "no-new-privileges" {
            return Err(ArgError::Other(format!("Invalid --security-opt: {opt:?}")));
        }
        if k == "seccomp" && v != "unconfined" && v != "builtin" {
            out.push(format!("seccomp={}", read_seccomp_profile(v)?));
        } else {
            out.push(opt.clone());
        }
    }
    Ok(out)
}

/// Reads a seccomp profile file (at most [`MAX_SECCOMP_PROFILE`] bytes)
/// and compacts its JSON as Go's `json.Compact` does: the text as
/// written, whitespace outside strings removed.
fn read_seccomp_profile(path: &str) -> Result<String, ArgError> {
    use std::io::Read as _;
    let opening = |e: &std::io::Error| {
        ArgError::Other(format!(
            "opening seccomp profile ({path}) failed: open {path}: {}",
            crate::fmt::io_error(e)
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| opening(&e))?;
    let mut text = Vec::new();
    file.take(MAX_SECCOMP_PROFILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| opening(&e))?;
    if text.len() as u64 > MAX_SECCOMP_PROFILE {
        return Err(ArgError::Other(format!(
            "seccomp profile ({path}) is larger than {MAX_SECCOMP_PROFILE} bytes"
        )));
    }
    let compacting = |why: String| {
        ArgError::Other(format!(
            "compacting json for seccomp profile ({path}) failed: {why}"
        ))
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(&text)
        .map_err(|e| compacting(e.to_string()))?;
    let text = String::from_utf8(text).map_err(|e| compacting(e.to_string()))?;
    Ok(compact_json(&text))
}

/// Removes the whitespace outside strings of valid JSON.
fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// What the placement cannot give the container: bind mounts outside the
/// shared folders, published ports, ... With an own VM, its named volumes
/// are held in use while the reservation lives.
fn check_placement(
    iso: Isolation,
    cfg: &mut ContainerConfig,
) -> Result<berth_host::vm_volumes::Reservation, String> {
    crate::mounts::check_placement(iso, cfg)
}

/// The engine refused to create the container: as docker's `run` prints it.
fn fail_create(e: &ClientError) -> i32 {
    eprintln!(
        "berth: Error response from daemon: {}\nSee 'berth run --help'.",
        sentence(e)
    );
    error_code(e)
}

/// The container could not be started (or attached to).
fn fail(e: &ClientError) -> i32 {
    eprintln!("berth: Error response from daemon: {}", sentence(e));
    error_code(e)
}

/// `berth create`: the container, made and not started; prints its id.
pub fn create(iso: Isolation, a: &CreateArgs) -> Result<i32> {
    let mut cfg = match config(a) {
        Ok(c) => c,
        Err(e) => return Ok(e.report("create")),
    };
    if iso.own_vm() {
        eprintln!("berth: --isolation vm runs a container only with run; use --isolation shared");
        return Ok(EXIT_ENGINE);
    }
    // Not an own VM (refused above): nothing is held.
    if let Err(m) = check_placement(iso, &mut cfg) {
        eprintln!("berth: {m}");
        return Ok(EXIT_ENGINE);
    }
    let mut ctl = match connect(iso) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e:#}");
            return Ok(EXIT_ENGINE);
        }
    };
    let mut cid = match open_cidfile(a, "create") {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // docker's create: the daemon's error as it is, exit 1.
    let refused = |e: &ClientError| {
        eprintln!("Error response from daemon: {e}");
        1
    };
    match create_pulling(&mut ctl, cfg, a, &|| connect(iso), &refused, "create")? {
        Ok(id) => {
            if let Some(code) = write_cidfile(&mut cid, &id) {
                return Ok(code);
            }
            println!("{id}");
            Ok(0)
        }
        Err(code) => Ok(code),
    }
}

/// `--cidfile`: the file made before the create (docker's CLI words and
/// codes when it exists or cannot be made).
fn open_cidfile(
    a: &CreateArgs,
    verb: &str,
) -> Result<Option<crate::commands::run_namespaces::CidFile>, i32> {
    match a.ns.cidfile() {
        None => Ok(None),
        Some(p) => crate::commands::run_namespaces::CidFile::create(p)
            .map(Some)
            .map_err(|(m, code)| {
                eprintln!("berth: {m}.\nSee 'berth {verb} --help'.");
                code
            }),
    }
}

/// Fills the `--cidfile`; `Some(exit code)` when that failed.
fn write_cidfile(
    cid: &mut Option<crate::commands::run_namespaces::CidFile>,
    id: &str,
) -> Option<i32> {
    let e = cid.as_mut()?.write(id).err()?;
    eprintln!("berth: {e}");
    Some(EXIT_ENGINE)
}

/// The create with `--pull`: `always` pulls first; `missing` (the
/// default, as docker's) pulls when the engine has no such image and asks
/// again; `never` never pulls. A refusal is printed by `refused`, a failed pull as
/// docker's `run` prints it; the error is the exit code.
fn create_pulling(
    ctl: &mut Engine,
    cfg: ContainerConfig,
    a: &CreateArgs,
    connect: &dyn Fn() -> Result<Engine>,
    refused: &dyn Fn(&ClientError) -> i32,
    verb: &str,
) -> Result<Result<String, i32>> {
    use crate::commands::run_namespaces::PullPolicy;
    // Both checked in config().
    let policy = a.ns.pull_policy().unwrap_or(PullPolicy::Missing);
    let platform = a.ns.platform().ok().flatten();
    let pull = || pull_for_run(Some(connect), a, verb);
    if policy == PullPolicy::Always {
        if let Some(code) = pull() {
            return Ok(Err(code));
        }
    }
    let missing_line = policy != PullPolicy::Never;
    let wanted = platform.as_deref();
    match create_container(ctl, cfg.clone(), &a.image, wanted, missing_line)? {
        Ok(id) => Ok(Ok(id)),
        Err(e) if policy == PullPolicy::Missing && no_such_image(&e) => {
            if let Some(code) = pull() {
                return Ok(Err(code));
            }
            Ok(create_container(ctl, cfg, &a.image, wanted, false)?.map_err(|e| refused(&e)))
        }
        Err(e) => Ok(Err(refused(&e))),
    }
}

/// An image as docker's `Unable to find image` line names it: with its
/// tag (`busybox:latest`).
fn familiar(image: &str) -> String {
    berth_protocol::reference::Reference::parse(image)
        .map_or_else(|_| image.to_string(), |r| r.familiar())
}

/// `--pull`'s pull (into the engine that `connect` reaches, or only into
/// the host cache); `Some(exit code)` when it failed, the error printed
/// as docker's `run` prints it.
fn pull_for_run(
    connect: Option<&dyn Fn() -> Result<Engine>>,
    a: &CreateArgs,
    verb: &str,
) -> Option<i32> {
    let platform = a.ns.platform().ok().flatten();
    match crate::commands::pull::pull_for_run(connect, &a.image, platform) {
        Ok(0) => None,
        Ok(code) => Some(code),
        // docker's create returns the pull's error as it is (exit 1); its
        // run wraps it with the usage hint and exit 125.
        Err(e) if verb == "create" => {
            eprintln!("Error response from daemon: {e:#}");
            Some(1)
        }
        Err(e) => {
            eprintln!(
                "berth: Error response from daemon: {}.\nSee 'berth {verb} --help'.",
                format!("{e:#}").trim_end_matches('.')
            );
            Some(EXIT_ENGINE)
        }
    }
}

/// The engine has no image by that name, or (`--platform`) none of that
/// platform: what makes `--pull missing` pull.
fn no_such_image(e: &ClientError) -> bool {
    let text = e.to_string();
    e.kind() == Some(ErrorKind::NotFound)
        && (text.starts_with("No such image") || text.contains(PLATFORM_MISMATCH))
}

const PLATFORM_MISMATCH: &str = "was found but does not match the specified platform";

/// docker 28's daemon refuses a create whose `--platform` the local
/// image does not match as "not found" (so its CLI pulls that platform,
/// and a pull that brings the same image fails the same way).
fn check_platform(ctl: &mut Engine, image: &str, wanted: Option<&str>) -> Result<(), ClientError> {
    use berth_host::registry::manifest::Platform;
    let Some(wanted) = wanted.and_then(|w| Platform::parse(w).ok()) else {
        return Ok(());
    };
    let img = match ctl.image_inspect(image) {
        Ok(img) => img,
        // No image at all: the create says so in its own words.
        Err(ClientError::Api(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let actual = Platform {
        os: img.os.clone(),
        architecture: img.architecture.clone(),
        variant: img.config["variant"].as_str().map(String::from),
    };
    if actual.matches(&wanted) {
        return Ok(());
    }
    Err(ClientError::Api(berth_protocol::ApiError::new(
        ErrorKind::NotFound,
        format!(
            "image with reference {image} {PLATFORM_MISMATCH}: wanted {wanted}, actual: {actual}"
        ),
    )))
}

/// Asks the engine for the container; prints its warnings, and docker's
/// `Unable to find image` line when the image is missing. The inner error
/// is the engine's refusal, which `run` and `create` word differently.
fn create_container(
    ctl: &mut Engine,
    cfg: ContainerConfig,
    image: &str,
    platform: Option<&str>,
    missing_line: bool,
) -> Result<Result<String, ClientError>> {
    let mut printed = crate::net_flags::warnings(&cfg);
    let created = check_platform(ctl, image, platform).and_then(|()| ctl.container_create(cfg));
    match created {
        Ok(Created { id, warnings }) => {
            // The daemon's warnings berth's CLI gives, then the engine's
            // (once each, should the engine give the same).
            for w in warnings {
                if !printed.contains(&w) {
                    printed.push(w);
                }
            }
            printed.iter().for_each(|w| eprintln!("WARNING: {w}"));
            Ok(Ok(id))
        }
        Err(e @ ClientError::Unexpected(_)) => Err(e.into()),
        Err(e) => {
            if missing_line && no_such_image(&e) {
                eprintln!("Unable to find image '{}' locally", familiar(image));
            }
            Ok(Err(e))
        }
    }
}

pub fn run(iso: Isolation, a: &RunArgs) -> Result<i32> {
    let streams = match crate::commands::run_namespaces::attach_streams(&a.attach) {
        Ok(s) => s,
        Err(e) => return Ok(e.report("run")),
    };
    let mut cfg = match config(a) {
        Ok(c) => c,
        Err(e) => return Ok(e.report("run")),
    };
    if let Some([_, out, err]) = streams {
        if a.detach {
            eprintln!("Conflicting options: -a and -d");
            return Ok(1);
        }
        DROP_STDOUT.store(!out, std::sync::atomic::Ordering::Relaxed);
        DROP_STDERR.store(!err, std::sync::atomic::Ordering::Relaxed);
    }
    // An own VM's named volumes are held for the whole run: its VM
    // directory (or a detached one's keeper) records them meanwhile.
    let _held = match check_placement(iso, &mut cfg) {
        Ok(held) => held,
        Err(m) => {
            eprintln!("berth: {m}");
            return Ok(EXIT_ENGINE);
        }
    };
    if a.interactive && a.tty && !std::io::stdin().is_terminal() {
        eprintln!("the input device is not a TTY");
        return Ok(1);
    }
    if iso.own_vm() {
        return run_in_own_vm(a, cfg);
    }
    run_with(&|| connect(iso), a, cfg, iso.forwards_ports())
}

/// `--isolation vm`: a throw-away microVM for this one container, fed the
/// image from the host cache over vsock, powered off when it exits.
fn run_in_own_vm(a: &RunArgs, cfg: ContainerConfig) -> Result<i32> {
    use crate::commands::run_namespaces::PullPolicy;
    let cache = crate::image_cache::ImageCache::open()?;
    // The host cache is this placement's image store: `--pull` fills it.
    let policy = a.ns.pull_policy().unwrap_or(PullPolicy::Missing);
    if policy == PullPolicy::Always {
        if let Some(code) = pull_for_run(None, a, "run") {
            return Ok(code);
        }
    }
    let mut found = cache.resolve(&a.image);
    if found.is_none() && policy == PullPolicy::Missing {
        eprintln!("Unable to find image '{}' locally", familiar(&a.image));
        if let Some(code) = pull_for_run(None, a, "run") {
            return Ok(code);
        }
        found = cache.resolve(&a.image);
    }
    let Some(image) = found else {
        eprintln!(
            "berth: Error response from daemon: No such image: {}.\nSee 'berth run --help'.",
            a.image
        );
        return Ok(EXIT_ENGINE);
    };
    if a.detach {
        // A keeper process owns the VM and the ports from here on.
        return crate::commands::vm_keeper::run_detached(&a.image, cfg);
    }
    // Published ports are bound on the host before anything starts: one
    // in use fails the run as docker's does, with nothing left behind.
    let mut cfg = cfg;
    let bindings = if cfg.ports.is_empty() && !cfg.publish_all {
        Vec::new()
    } else {
        let config = cache.read_blob(&image.config_digest).unwrap_or_default();
        crate::ports::run_bindings(&cfg, &crate::ports::image_exposed(&config))
    };
    let ports = match RunPorts::bind(&bindings) {
        Ok(p) => p,
        Err(e) => {
            let endpoint = a.name.as_deref().map(|n| format!(" on endpoint {n}"));
            eprintln!(
                "berth: Error response from daemon: driver failed programming external connectivity{}: {e}.",
                endpoint.unwrap_or_default()
            );
            return Ok(EXIT_ENGINE);
        }
    };
    if !bindings.is_empty() {
        // The guest publishes the host's ports on its own loopback, where
        // the agent joins each forwarded connection to them.
        cfg.ports = ports.guest_bindings().to_vec();
    }
    let timings = std::env::var_os("BERTH_VM_TIMINGS").is_some();
    let note = |line: &str| eprintln!("{line}");
    let mut vm = OwnVm::new(&cache, &image, &a.image, timings, &note)?;
    vm.set_mounts(&cfg)?;
    let result = vm.start(&cache, &image, timings, &note).and_then(|()| {
        // Forwarding for the life of the run; closed before the VM goes.
        let _forwarding = ports.serve(&vm.endpoint());
        run_with(&|| vm.connect(), a, cfg, false)
    });
    drop(vm);
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("berth: {e:#}");
            Ok(EXIT_ENGINE)
        }
    }
}

fn run_with(
    connect: &dyn Fn() -> Result<Engine>,
    a: &RunArgs,
    cfg: ContainerConfig,
    machine_vm: bool,
) -> Result<i32> {
    let publishes = !cfg.ports.is_empty() || cfg.publish_all;
    let mut ctl = match connect() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e:#}");
            return Ok(EXIT_ENGINE);
        }
    };
    let mut cid = match open_cidfile(a, "run") {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let id = match create_pulling(&mut ctl, cfg, a, connect, &fail_create, "run")? {
        Ok(id) => id,
        Err(code) => return Ok(code),
    };
    if let Some(code) = write_cidfile(&mut cid, &id) {
        return Ok(code);
    }
    if a.detach {
        return match ctl.container_start(&id) {
            Ok(()) => {
                if machine_vm && publishes {
                    if let Err(m) = crate::ports::publish_on_host(&mut ctl, &id) {
                        eprintln!("berth: Error response from daemon: {m}.");
                        return Ok(EXIT_ENGINE);
                    }
                }
                println!("{id}");
                Ok(0)
            }
            Err(e) => Ok(fail(&e)),
        };
    }
    // docker forwards signals only without a tty: with one, Ctrl-C is a
    // byte the container's terminal turns into SIGINT itself.
    if a.sig_proxy && !a.tty {
        crate::sig_proxy::forward(ctl, id.clone());
    }
    let conn = match connect() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e:#}");
            return Ok(EXIT_ENGINE);
        }
    };
    match attach(conn, &id, a.interactive, a.tty, true) {
        Ok(code) => Ok(code),
        Err(e) => Ok(fail(&e)),
    }
}

/// Attaches to a container (starting it when `start`) and relays streams
/// until it exits; returns its exit code.
pub fn attach(
    conn: Engine,
    id: &str,
    stdin: bool,
    tty: bool,
    start: bool,
) -> Result<i32, ClientError> {
    let stream = conn.attach(id, stdin, start, if tty { window_size() } else { None })?;
    relay(stream, stdin, tty)
}

/// `run -a` without `stdout` / without `stderr`: that stream is not shown.
static DROP_STDOUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static DROP_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set when the user typed the detach keys (ctrl-p ctrl-q).
static DETACHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Relays an attached stream (stdin, resize, output) until the exit frame.
pub fn relay(stream: UnixStream, stdin: bool, tty: bool) -> Result<i32, ClientError> {
    let writer = Arc::new(Mutex::new(stream.try_clone()?));
    let _raw = if tty && stdin && std::io::stdin().is_terminal() {
        RawMode::enable()
    } else {
        None
    };
    if tty {
        spawn_resize_watcher(writer.clone());
    }
    if stdin {
        let w = writer.clone();
        let detach_keys = tty && std::io::stdin().is_terminal();
        let s = stream.try_clone()?;
        std::thread::spawn(move || pump_stdin(w, detach_keys.then_some(s)));
    }
    match relay_output(stream) {
        Err(_) if DETACHED.load(std::sync::atomic::Ordering::SeqCst) => Ok(0),
        other => other,
    }
}

fn send(w: &Mutex<UnixStream>, kind: Kind, data: &[u8]) -> std::io::Result<()> {
    let mut s = w.lock().unwrap();
    mux::write_frame(&mut *s, kind, data)
}

/// Forwards stdin. With `detach` (a terminal), ctrl-p ctrl-q detaches
/// like docker: the stream is closed and the container keeps running.
fn pump_stdin(w: Arc<Mutex<UnixStream>>, detach: Option<UnixStream>) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 32 * 1024];
    let mut held_ctrl_p = false;
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = send(&w, Kind::StdinEof, &[]);
                return;
            }
            Ok(n) => {
                let mut data = buf[..n].to_vec();
                if let Some(s) = detach.as_ref() {
                    if held_ctrl_p {
                        data.insert(0, 0x10);
                        held_ctrl_p = false;
                    }
                    if let Some(i) = data.windows(2).position(|p| p == [0x10, 0x11]) {
                        let _ = send(&w, Kind::Stdin, &data[..i]);
                        DETACHED.store(true, std::sync::atomic::Ordering::SeqCst);
                        eprint!("\r\nread escape sequence\r\n");
                        let _ = s.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    if data.last() == Some(&0x10) {
                        data.pop();
                        held_ctrl_p = true;
                    }
                }
                if send(&w, Kind::Stdin, &data).is_err() {
                    return;
                }
            }
        }
    }
}

fn spawn_resize_watcher(w: Arc<Mutex<UnixStream>>) {
    std::thread::spawn(move || {
        let mut last = None;
        loop {
            let now = window_size();
            if now != last {
                if let Some((r, c)) = now {
                    if send(&w, Kind::Resize, &mux::resize_payload(r, c)).is_err() {
                        return;
                    }
                }
                last = now;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
}

fn relay_output(mut stream: UnixStream) -> Result<i32, ClientError> {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    loop {
        match mux::read_frame(&mut stream) {
            Ok(Some((Kind::Stdout, d))) => {
                if !DROP_STDOUT.load(std::sync::atomic::Ordering::Relaxed) {
                    out.write_all(&d)?;
                    out.flush()?;
                }
            }
            Ok(Some((Kind::Stderr, d))) => {
                if !DROP_STDERR.load(std::sync::atomic::Ordering::Relaxed) {
                    err.write_all(&d)?;
                    err.flush()?;
                }
            }
            Ok(Some((Kind::Exit, p))) => return Ok(mux::parse_exit(&p).unwrap_or(255)),
            Ok(Some((Kind::Error, p))) => {
                return Err(ClientError::Api(berth_protocol::ApiError::new(
                    ErrorKind::Internal,
                    String::from_utf8_lossy(&p),
                )))
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(ClientError::Unexpected(
                    "the container's stream ended before it exited".into(),
                ))
            }
            Err(e) => return Err(ClientError::Unexpected(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{compact_json, parse_bytes, security_opts, ArgError};
    use berth_host::args::normalize_caps;

    #[test]
    fn capabilities_as_dockers_cli() {
        let v = |l: &[&str]| normalize_caps(l);
        assert_eq!(
            v(&["net_admin", "CAP_SYS_TIME", "Net_Admin"]),
            vec!["CAP_NET_ADMIN", "CAP_SYS_TIME"]
        );
        assert_eq!(v(&["chown", "all"]), vec!["ALL", "CAP_CHOWN"]);
    }

    #[test]
    fn security_opts_as_dockers_cli() {
        let p = |l: &[&str]| security_opts(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            p(&[
                "no-new-privileges",
                "seccomp=unconfined",
                "no-new-privileges:false"
            ])
            .unwrap(),
            vec![
                "no-new-privileges",
                "seccomp=unconfined",
                "no-new-privileges:false"
            ]
        );
        for bad in ["foo", "seccomp", "seccomp=", "label:"] {
            match p(&[bad]) {
                Err(ArgError::Other(m)) => {
                    assert_eq!(m, format!("Invalid --security-opt: {bad:?}"))
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(
            &f,
            "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n \"x\": \"a b\\\" c\"\n}\n",
        )
        .unwrap();
        let got = p(&[&format!("seccomp={}", f.display())]).unwrap();
        assert_eq!(
            got,
            vec![r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","x":"a b\" c"}"#]
        );
        std::fs::write(&f, "{\"defaultAction\":").unwrap();
        assert!(
            matches!(p(&[&format!("seccomp={}", f.display())]), Err(ArgError::Other(m)) if m.starts_with("compacting json for seccomp profile"))
        );
        std::fs::write(&f, vec![b' '; (1 << 20) + 1]).unwrap();
        assert!(
            matches!(p(&[&format!("seccomp={}", f.display())]), Err(ArgError::Other(m)) if m.contains("larger than"))
        );
        assert!(
            matches!(p(&["seccomp=/nonexistent/p.json"]), Err(ArgError::Other(m)) if m == "opening seccomp profile (/nonexistent/p.json) failed: open /nonexistent/p.json: no such file or directory")
        );
        assert_eq!(compact_json("[ 1 , \"\\\\\" ]"), "[1,\"\\\\\"]");
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_bytes("32m"), Ok(32 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("512kb"), Ok(512 << 10));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-5m").is_err());
    }
}

#[cfg(test)]
mod health_flag_tests {
    use super::*;

    fn flags(
        f: impl FnOnce(&mut HealthArgs),
    ) -> Result<Option<berth_protocol::HealthConfig>, String> {
        let mut a = HealthArgs::default();
        f(&mut a);
        a.config().map_err(|e| match e {
            ArgError::Flag {
                flag,
                value,
                reason,
            } => format!("{flag} {value} {reason}"),
            ArgError::Other(m) | ArgError::Daemon(m) => m,
        })
    }

    #[test]
    fn health_flags_as_dockers_cli() {
        assert_eq!(flags(|_| {}), Ok(None));
        let c = flags(|a| {
            a.health_cmd = Some("curl -f x".into());
            a.health_interval = Some("1m30s".into());
            a.health_retries = Some("0x10".into());
        })
        .unwrap()
        .unwrap();
        assert_eq!(c.test, vec!["CMD-SHELL", "curl -f x"]);
        assert_eq!((c.interval, c.retries), (90_000_000_000, 16));
        // Options without a command keep the image's test.
        let c = flags(|a| a.health_timeout = Some("2s".into()))
            .unwrap()
            .unwrap();
        assert!(c.test.is_empty());
        assert_eq!(
            flags(|a| a.no_healthcheck = true).unwrap().unwrap().test,
            vec!["NONE"]
        );
        assert_eq!(
            flags(|a| {
                a.no_healthcheck = true;
                a.health_retries = Some("1".into());
            }),
            Err("--no-healthcheck conflicts with --health-* options".into())
        );
        // Zero values are "not given", as docker's.
        assert_eq!(
            flags(|a| {
                a.no_healthcheck = true;
                a.health_interval = Some("0s".into());
            })
            .unwrap()
            .unwrap()
            .test,
            vec!["NONE"]
        );
        assert_eq!(
            flags(|a| {
                a.health_timeout = Some("-1s".into());
                a.health_interval = Some("-1s".into());
            }),
            Err("--health-interval cannot be negative".into())
        );
        assert_eq!(
            flags(|a| a.health_interval = Some("7".into())),
            Err("--health-interval 7 time: missing unit in duration \"7\"".into())
        );
        assert_eq!(
            flags(|a| a.health_retries = Some("1e3".into())),
            Err("--health-retries 1e3 strconv.ParseInt: parsing \"1e3\": invalid syntax".into())
        );
    }

    #[test]
    fn go_ints() {
        assert_eq!(go_parse_int("42"), Ok(42));
        assert_eq!(go_parse_int("-0x1f"), Ok(-31));
        assert_eq!(go_parse_int("010"), Ok(8));
        assert_eq!(go_parse_int("0b1_01"), Ok(5));
        assert_eq!(go_parse_int("1_0"), Err("invalid syntax"));
        assert_eq!(go_parse_int(""), Err("invalid syntax"));
        assert_eq!(
            go_parse_int("9223372036854775808"),
            Err("value out of range")
        );
        assert_eq!(go_parse_int("-9223372036854775808"), Ok(i64::MIN));
    }
}
