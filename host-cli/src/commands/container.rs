//! Verbs on existing containers: logs, exec, start, stop, restart, kill,
//! wait, rename, pause, unpause, top, stats, update, port, commit, attach,
//! container prune. Each accepts a name, id or unique id prefix and prints
//! what docker prints.

use crate::client::ClientError;
use crate::commands::run::{attach, parse_bytes, parse_restart, Report};
use crate::commands::{connect, vm_verbs};
use crate::engine::Engine;
use crate::fmt::{binary_size, json_row_field, table};
use crate::placement::Isolation;
use crate::tty::window_size;
use anyhow::{bail, Result};
use berth_host::engine::ContainerUpdate;
use berth_protocol::mux::{self, Kind};
use berth_protocol::{ApiError, CommitOptions, ErrorKind, ExecConfig, LogsOptions, StatsSample};
use std::io::{IsTerminal, Write};

fn daemon_error(e: &ClientError) {
    eprintln!("Error response from daemon: {e}");
}

/// Runs `f` for each container; prints the key on success like docker.
fn each(
    iso: Isolation,
    keys: &[String],
    f: &dyn Fn(&mut Engine, &str) -> Result<(), ClientError>,
) -> Result<i32> {
    if iso.own_vm() {
        return each_own_vm(keys, false, f);
    }
    let mut c = connect(iso)?;
    let mut code = 0;
    for k in keys {
        match f(&mut c, k) {
            Ok(()) => println!("{k}"),
            Err(e) => {
                daemon_error(&e);
                code = 1;
            }
        }
    }
    Ok(code)
}

/// [`each`] for detached own-VM containers: each through its own VM's
/// engine, by id. One whose VM is off is not running: `stop` (`stopped`)
/// has nothing to do, anything else fails. After a request that may end
/// the container, waits for its keeper to record the exit and power the
/// VM off, so that `ps -a` shows it exited.
fn each_own_vm(
    keys: &[String],
    stop: bool,
    f: &dyn Fn(&mut Engine, &str) -> Result<(), ClientError>,
) -> Result<i32> {
    let mut code = 0;
    for k in keys {
        let entry = match berth_host::vm_fleet::find(k) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = 1;
                continue;
            }
        };
        if !entry.running() {
            if stop {
                println!("{k}");
            } else {
                eprintln!(
                    "Error response from daemon: container {} is not running",
                    entry.record.id
                );
                code = 1;
            }
            continue;
        }
        let result = entry
            .engine()
            .map_err(|e| ClientError::Unexpected(format!("{e:#}")))
            .and_then(|mut c| f(&mut c, &entry.record.id));
        match result {
            Ok(()) => {
                if stop {
                    entry.wait_keeper(std::time::Duration::from_secs(60));
                }
                println!("{k}");
            }
            Err(e) => {
                daemon_error(&e);
                code = 1;
            }
        }
    }
    Ok(code)
}

/// `rm [-f]` of detached own-VM containers: a running one only with
/// `force` (its keeper and VM are killed); the VM directory goes.
pub fn rm_own_vm(keys: &[String], force: bool) -> Result<i32> {
    let mut code = 0;
    for k in keys {
        match berth_host::vm_fleet::find(k) {
            Ok(e) if e.running() && !force => {
                eprintln!(
                    "Error response from daemon: cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    e.record.name
                );
                code = 1;
            }
            Ok(e) => {
                e.remove();
                println!("{k}");
            }
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                // docker's `rm -f` of a container already gone exits 0.
                if !(force && matches!(e, berth_host::vm_fleet::FindError::NotFound(_))) {
                    code = 1;
                }
            }
        }
    }
    Ok(code)
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", alias = "timeout")]
    time: Option<i64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn stop(iso: Isolation, a: &StopArgs) -> Result<i32> {
    if iso.own_vm() {
        return each_own_vm(&a.containers, true, &|c, k| c.container_stop(k, a.time));
    }
    each(iso, &a.containers, &|c, k| c.container_stop(k, a.time))
}

pub fn restart(iso: Isolation, a: &StopArgs) -> Result<i32> {
    if iso.own_vm() {
        return restart_own_vm(a);
    }
    each(iso, &a.containers, &|c, k| c.container_restart(k, a.time))
}

/// `restart` of detached own-VM containers: a running one in place in
/// its VM (its keeper keeps the VM up across the stop); a stopped one's
/// VM is off and cannot be started again yet (see `start`).
fn restart_own_vm(a: &StopArgs) -> Result<i32> {
    let mut code = 0;
    for k in &a.containers {
        let e = match vm_verbs::find(k) {
            Ok(e) => e,
            Err(c) => {
                code = c;
                continue;
            }
        };
        if !e.running() {
            eprintln!(
                "Error response from daemon: Cannot restart container {k}: container {} has stopped and its VM is off; \
                 restarting a stopped --isolation vm container is not supported yet: remove it and run it again",
                e.record.id
            );
            code = 1;
            continue;
        }
        match vm_verbs::restart(&e, a.time) {
            Ok(()) => println!("{k}"),
            Err(m) => {
                eprintln!("Error response from daemon: Cannot restart container {k}: {m}");
                code = 1;
            }
        }
    }
    Ok(code)
}

#[derive(clap::Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn start(iso: Isolation, a: &StartArgs) -> Result<i32> {
    if iso.own_vm() {
        eprintln!(
            "Error response from daemon: starting a stopped --isolation vm container is not supported yet; \
             remove it and run it again (berth --isolation vm rm NAME; berth run --isolation vm -d ...)"
        );
        return Ok(1);
    }
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let k = &a.containers[0];
        let mut c = connect(iso)?;
        // docker's CLI looks the container up first: a client-side error.
        let (tty, id) = match c.container_inspect(k) {
            Ok(d) => (d.config.tty, d.summary.id.clone()),
            Err(ClientError::Unexpected(_)) => (false, k.clone()),
            Err(e) if e.kind() == Some(ErrorKind::NotFound) => {
                eprintln!("Error: {e}");
                return Ok(1);
            }
            Err(e) => {
                daemon_error(&e);
                return Ok(1);
            }
        };
        // docker's start -a always proxies signals without a tty.
        if !tty {
            crate::sig_proxy::forward(c, id);
        }
        return match attach(connect(iso)?, k, a.interactive, tty, true) {
            Ok(code) => Ok(code),
            Err(e) => {
                daemon_error(&e);
                Ok(1)
            }
        };
    }
    let mut c = connect(iso)?;
    let mut failed = Vec::new();
    for k in &a.containers {
        match c.container_start(k) {
            Ok(()) if iso.forwards_ports() => match crate::ports::publish_on_host(&mut c, k) {
                Ok(()) => println!("{k}"),
                Err(m) => {
                    eprintln!("Error response from daemon: {m}");
                    failed.push(k.as_str());
                }
            },
            Ok(_) => println!("{k}"),
            Err(e) => {
                daemon_error(&e);
                failed.push(k.as_str());
            }
        }
    }
    if failed.is_empty() {
        return Ok(0);
    }
    eprintln!("Error: failed to start containers: {}", failed.join(", "));
    Ok(1)
}

#[derive(clap::Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Parses a signal name or number (the guest's numbers).
pub use berth_host::platform::parse_linux_signal as parse_signal;

pub fn kill(iso: Isolation, a: &KillArgs) -> Result<i32> {
    let Some(sig) = parse_signal(&a.signal) else {
        eprintln!("Error response from daemon: Invalid signal: {}", a.signal);
        return Ok(1);
    };
    let kill = |c: &mut Engine, k: &str| {
        c.container_kill(k, sig).map_err(|e| match e {
            // The daemon's wording: "Cannot kill container: <key>: No such container: <key>".
            ClientError::Api(a) if a.kind == ErrorKind::NotFound => ClientError::Api(
                ApiError::new(a.kind, format!("Cannot kill container: {k}: {}", a.message)),
            ),
            e => e,
        })
    };
    if iso.own_vm() {
        // A KILL ends the container: wait for its keeper as stop does.
        return each_own_vm(&a.containers, sig == 9, &kill);
    }
    each(iso, &a.containers, &kill)
}

pub fn wait(iso: Isolation, containers: &[String]) -> Result<i32> {
    if iso.own_vm() {
        let mut code = 0;
        for k in containers {
            match vm_verbs::find(k).map(|e| vm_verbs::wait(&e)) {
                Ok(Ok(c)) => println!("{c}"),
                Ok(Err(m)) => {
                    eprintln!("Error response from daemon: {m}");
                    code = 1;
                }
                Err(c) => code = c,
            }
        }
        return Ok(code);
    }
    let mut c = connect(iso)?;
    let mut code = 0;
    for k in containers {
        match c.container_wait(k) {
            Ok(code) => println!("{code}"),
            Err(ClientError::Unexpected(_)) => {}
            Err(e) => {
                daemon_error(&e);
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn simple(
    iso: Isolation,
    keys: &[String],
    f: &dyn Fn(&mut Engine, &str) -> Result<(), ClientError>,
) -> Result<i32> {
    each(iso, keys, f)
}

pub fn rename(iso: Isolation, from: &str, to: &str) -> Result<i32> {
    match connect(iso)?.container_rename(from, to) {
        Ok(_) => Ok(0),
        Err(e) => {
            daemon_error(&e);
            Ok(1)
        }
    }
}

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for all)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp or relative time
    #[arg(long)]
    until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

/// Parses docker's time filters: RFC 3339, unix seconds (with fraction),
/// or a duration before now (`10m`, `1h30m`, `45s`).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return d
            .timestamp_nanos_opt()
            .ok_or_else(|| format!("time out of range: {s}"));
    }
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok((secs * 1e9) as i64);
        }
    }
    let mut total = 0f64;
    let mut num = String::new();
    let bytes: Vec<char> = t.chars().collect();
    let mut i = 0;
    if bytes.is_empty() {
        return Err(format!("invalid time: {s:?}"));
    }
    while i < bytes.len() {
        let ch = bytes[i];
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            i += 1;
            continue;
        }
        let (unit, len) = if t[i..].starts_with("ms") {
            (1e-3, 2)
        } else {
            match ch {
                'h' => (3600.0, 1),
                'm' => (60.0, 1),
                's' => (1.0, 1),
                _ => return Err(format!("invalid time: {s:?}")),
            }
        };
        let v: f64 = num.parse().map_err(|_| format!("invalid time: {s:?}"))?;
        total += v * unit;
        num.clear();
        i += len;
    }
    if !num.is_empty() {
        return Err(format!("invalid time: {s:?}"));
    }
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    Ok(now - (total * 1e9) as i64)
}

pub fn logs(iso: Isolation, a: &LogsArgs) -> Result<i32> {
    let tail = match a.tail.as_str() {
        "all" | "-1" => None,
        n => match n.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                eprintln!("invalid value for --tail: {n:?}");
                return Ok(1);
            }
        },
    };
    let parse = |o: &Option<String>| o.as_deref().map(parse_time).transpose();
    let (since, until) = match (parse(&a.since), parse(&a.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    let (conn, id) = if iso.own_vm() {
        let entry = match berth_host::vm_fleet::find(&a.container) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("Error: {e}");
                return Ok(1);
            }
        };
        if !entry.running() {
            // The keeper saved the output when the container exited.
            for (stderr, d) in entry.saved_logs() {
                if stderr {
                    let _ = std::io::stderr().write_all(&d);
                } else if std::io::stdout().write_all(&d).is_err() {
                    return Ok(0);
                }
            }
            return Ok(0);
        }
        (entry.engine()?, entry.record.id.clone())
    } else {
        (connect(iso)?, a.container.clone())
    };
    let mut stream = match conn.logs(LogsOptions {
        id,
        follow: a.follow,
        tail,
        since,
        until,
        timestamps: a.timestamps,
    }) {
        Ok(s) => s,
        Err(e) => {
            // docker's CLI looks the container up first: a client-side error.
            if e.kind() == Some(ErrorKind::NotFound) {
                eprintln!("Error: {e}");
            } else {
                daemon_error(&e);
            }
            return Ok(1);
        }
    };
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    loop {
        match mux::read_frame(&mut stream) {
            Ok(Some((Kind::Stdout, d))) => {
                if out.write_all(&d).and_then(|_| out.flush()).is_err() {
                    return Ok(0);
                }
            }
            Ok(Some((Kind::Stderr, d))) => {
                let _ = err.write_all(&d);
            }
            Ok(Some((Kind::Exit, _))) | Ok(None) => return Ok(0),
            Ok(Some(_)) => {}
            Err(e) => bail!("reading logs: {e}"),
        }
    }
}

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    detach: bool,
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
    container: String,
    #[arg(required = true)]
    command: Vec<String>,
}

pub fn exec(iso: Isolation, a: &ExecArgs) -> Result<i32> {
    if a.interactive && a.tty && !std::io::stdin().is_terminal() {
        eprintln!("the input device is not a TTY");
        return Ok(1);
    }
    let env = match crate::commands::run::resolve_env(&a.env) {
        Ok(e) => e,
        Err(e) => return Ok(e.report("exec")),
    };
    let config = ExecConfig {
        cmd: a.command.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        tty: a.tty,
        stdin: a.interactive && !a.detach,
    };
    let fail = |e: &ClientError| -> i32 {
        daemon_error(e);
        // docker exec reports every failure to start the process as 126.
        match e.kind() {
            Some(ErrorKind::CommandNotFound)
            | Some(ErrorKind::CommandNotExecutable)
            | Some(ErrorKind::Internal) => 126,
            _ => 1,
        }
    };
    let tty_size = if a.tty { window_size() } else { None };
    // An own-VM container's exec goes to its VM's engine, by id.
    let (mut c, key) = if iso.own_vm() {
        match vm_verbs::running(&a.container) {
            Ok(t) => t,
            Err(code) => return Ok(code),
        }
    } else {
        (connect(iso)?, a.container.clone())
    };
    if a.detach {
        return match c.exec_detached(&key, config, tty_size) {
            Ok(()) => Ok(0),
            Err(e) => Ok(fail(&e)),
        };
    }
    let stream = match c.exec(&key, config, tty_size) {
        Ok(s) => s,
        Err(e) => return Ok(fail(&e)),
    };
    match crate::commands::run::relay(stream, a.interactive, a.tty) {
        Ok(code) => Ok(code),
        Err(e) => Ok(fail(&e)),
    }
}

#[derive(clap::Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long, default_value_t = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    sig_proxy: bool,
    container: String,
}

pub fn attach_cmd(iso: Isolation, a: &AttachArgs) -> Result<i32> {
    let (mut c, key) = if iso.own_vm() {
        match vm_verbs::find(&a.container) {
            Ok(e) if !e.running() => {
                eprintln!("You cannot attach to a stopped container, start it first");
                return Ok(1);
            }
            Ok(_) => match vm_verbs::running(&a.container) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            },
            Err(code) => return Ok(code),
        }
    } else {
        (connect(iso)?, a.container.clone())
    };
    let reconnect = || -> Result<Engine> {
        if iso.own_vm() {
            Ok(berth_host::vm_fleet::find(&key)?.engine()?)
        } else {
            connect(iso)
        }
    };
    let d = match c.container_inspect(&key) {
        Ok(d) => d,
        Err(e @ ClientError::Unexpected(_)) => return Err(e.into()),
        Err(e) => {
            daemon_error(&e);
            return Ok(1);
        }
    };
    if d.pid.is_none() {
        eprintln!("You cannot attach to a stopped container, start it first");
        return Ok(1);
    }
    let stdin = d.config.open_stdin && !a.no_stdin;
    if a.sig_proxy && !d.config.tty {
        crate::sig_proxy::forward(c, d.summary.id.clone());
    }
    match attach(reconnect()?, &key, stdin, d.config.tty, false) {
        Ok(code) => Ok(code),
        Err(e) => {
            daemon_error(&e);
            Ok(1)
        }
    }
}

/// The engine to ask about `key` and the key to give it: an own-VM
/// container's VM engine and id (it must run), or the placement's engine.
fn one(iso: Isolation, key: &str) -> Result<Result<(Engine, String), i32>> {
    if iso.own_vm() {
        return Ok(vm_verbs::running(key));
    }
    Ok(Ok((connect(iso)?, key.to_string())))
}

pub fn top(iso: Isolation, container: &str) -> Result<i32> {
    let (mut c, container) = match one(iso, container)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    match c.container_top(&container) {
        Ok(t) => {
            let titles: Vec<&str> = t.titles.iter().map(|s| s.as_str()).collect();
            print!("{}", table(&titles, &t.processes));
            Ok(0)
        }
        Err(e @ ClientError::Unexpected(_)) => Err(e.into()),
        Err(e) => {
            daemon_error(&e);
            Ok(1)
        }
    }
}

/// `diff`: one `C|A|D /path` line per change, as docker prints them.
pub fn diff(iso: Isolation, container: &str) -> Result<i32> {
    let (mut c, container) = match one(iso, container)? {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    match c.container_changes(&container) {
        Ok(changes) => {
            let mut out = String::new();
            for c in changes {
                out.push(c.kind.letter());
                out.push(' ');
                out.push_str(&c.path);
                out.push('\n');
            }
            print!("{out}");
            Ok(0)
        }
        Err(e @ ClientError::Unexpected(_)) => Err(e.into()),
        Err(e) => {
            daemon_error(&e);
            Ok(1)
        }
    }
}

#[derive(clap::Args)]
pub struct StatsArgs {
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    no_stream: bool,
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE',
    /// 'json', or a Go template
    #[arg(long)]
    format: Option<String>,
    containers: Vec<String>,
}

fn sample(c: &mut Engine, id: &str) -> Result<StatsSample, ClientError> {
    c.container_stats(id)
}

pub fn stats(iso: Isolation, a: &StatsArgs) -> Result<i32> {
    let format = match a.format.as_deref() {
        None | Some("") | Some("table") => {
            "table {{.ID}}\\t{{.Name}}\\t{{.CPUPerc}}\\t{{.MemUsage}}\\t{{.MemPerc}}\\t{{.NetIO}}\\t{{.BlockIO}}\\t{{.PIDs}}"
        }
        Some(f) => f,
    };
    let template = match crate::fmt::list_template(format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    let mut c = connect(iso)?;
    // docker's `.Container` is the name or id as given, or the short id
    // when every running container is listed.
    let keys: Vec<String> = if a.containers.is_empty() {
        c.container_list(false)?
            .into_iter()
            .map(|s| s.id[..12].to_string())
            .collect()
    } else {
        a.containers.clone()
    };
    loop {
        let mut first = Vec::new();
        let mut code = 0;
        for k in &keys {
            match sample(&mut c, k) {
                Ok(s) => first.push((k, s)),
                Err(e) => {
                    daemon_error(&e);
                    code = 1;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut rows = Vec::new();
        for (key, s0) in &first {
            let Ok(s1) = sample(&mut c, &s0.id) else {
                continue;
            };
            rows.push(((), stats_row(key, s0, &s1)));
        }
        match &template {
            None => rows.iter().for_each(|(_, j)| println!("{j}")),
            Some(t) => match t.render_list(
                &rows,
                &stats_header,
                "*formatter.statsContext",
                &|_, row, f, arg| json_row_field(row, f, arg, true),
            ) {
                Ok(out) => print!("{out}"),
                Err(e) => {
                    eprintln!("template parsing error: {e}");
                    return Ok(1);
                }
            },
        }
        if a.no_stream {
            return Ok(code);
        }
    }
}

/// One row of `stats`, from two samples of one container half a second
/// apart, as its `{{json .}}` object: docker's stats formatter fields, as
/// text. The template fields are read from it.
fn stats_row(key: &str, s0: &StatsSample, s1: &StatsSample) -> serde_json::Value {
    let dcpu = s1.cpu_usage_ns.saturating_sub(s0.cpu_usage_ns) as f64;
    let dsys = s1.system_ns.saturating_sub(s0.system_ns).max(1) as f64;
    let mem_pct = if s1.memory_limit > 0 {
        s1.memory_usage as f64 / s1.memory_limit as f64 * 100.0
    } else {
        0.0
    };
    let name = if s1.name.is_empty() {
        "--"
    } else {
        s1.name.trim_start_matches('/')
    };
    let mem_usage = format!(
        "{} / {}",
        binary_size(s1.memory_usage),
        binary_size(s1.memory_limit)
    );
    // docker's `units.HumanSizeWithPrecision(n, 3)` of the totals.
    let io = |a: u64, b: u64| {
        format!(
            "{} / {}",
            crate::fmt::human_size(a),
            crate::fmt::human_size(b)
        )
    };
    serde_json::json!({
        "BlockIO": io(s1.block_read_bytes, s1.block_write_bytes),
        "CPUPerc": format!("{:.2}%", dcpu / dsys * 100.0),
        "Container": key, "ID": s1.id.chars().take(12).collect::<String>(),
        "MemPerc": format!("{mem_pct:.2}%"), "MemUsage": mem_usage, "Name": name,
        "NetIO": io(s1.net_rx_bytes, s1.net_tx_bytes), "PIDs": s1.pids.to_string(),
    })
}

/// docker's table headers for the stats fields.
fn stats_header(field: &str) -> String {
    match field {
        "Container" => "CONTAINER",
        "ID" => "CONTAINER ID",
        "Name" => "NAME",
        "CPUPerc" => "CPU %",
        "MemUsage" => "MEM USAGE / LIMIT",
        "MemPerc" => "MEM %",
        "NetIO" => "NET I/O",
        "BlockIO" => "BLOCK I/O",
        "PIDs" => "PIDS",
        f => return f.to_uppercase(),
    }
    .into()
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Memory limit
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs
    #[arg(long, allow_negative_numbers = true)]
    cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    restart: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn update(iso: Isolation, a: &UpdateArgs) -> Result<i32> {
    if a.memory.is_none() && a.cpus.is_none() && a.pids_limit.is_none() && a.restart.is_none() {
        eprintln!("you must provide one or more flags when using this command");
        return Ok(1);
    }
    let memory = match a.memory.as_deref().map(parse_bytes).transpose() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    // The range (0.01 to the number of CPUs) is the agent's to check: it
    // knows how many CPUs the machine has.
    let nano_cpus = match a.cpus.as_deref().map(|c| (c, c.trim().parse::<f64>())) {
        Some((_, Ok(c))) if c.is_finite() => Some((c * 1e9).round() as i64),
        Some((c, _)) => {
            eprintln!(
                "invalid argument \"{c}\" for \"--cpus\" flag: failed to parse {c} as a rational number\nSee 'berth update --help'."
            );
            return Ok(125);
        }
        None => None,
    };
    let restart = match a.restart.as_deref().map(|r| (r, parse_restart(r))) {
        Some((_, Ok(r))) => Some(r),
        Some((r, Err(_))) => {
            eprintln!("Error response from daemon: invalid restart policy '{r}'");
            return Ok(1);
        }
        None => None,
    };
    each(iso, &a.containers, &|c, k| {
        c.container_update(
            k,
            ContainerUpdate {
                memory,
                nano_cpus,
                pids_limit: a.pids_limit,
                restart: restart.clone(),
            },
        )
    })
}

#[derive(clap::Args)]
pub struct PortArgs {
    container: String,
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    private_port: Option<String>,
}

/// `berth port`: the container's published ports, as docker 28 prints
/// them.
pub fn port(iso: Isolation, a: &PortArgs) -> Result<i32> {
    let published = if iso.own_vm() {
        // The host side, as the keeper bound it; none once stopped.
        match vm_verbs::find(&a.container) {
            Ok(e) => e.summary().ports.unwrap_or_default(),
            Err(code) => return Ok(code),
        }
    } else {
        match connect(iso)?.container_ports(&a.container) {
            Ok(p) => p,
            Err(e @ ClientError::Unexpected(_)) => return Err(e.into()),
            Err(e) => {
                daemon_error(&e);
                return Ok(1);
            }
        }
    };
    match crate::ports::port_lines(&published, a.private_port.as_deref()) {
        Ok(Some(lines)) => {
            lines.iter().for_each(|l| println!("{l}"));
            Ok(0)
        }
        Ok(None) => {
            eprintln!(
                "Error: No public port '{}' published for {}",
                a.private_port.as_deref().unwrap_or_default(),
                a.container
            );
            Ok(1)
        }
        Err(m) => {
            eprintln!("{m}");
            Ok(1)
        }
    }
}

#[derive(clap::Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
    container: String,
    repository: Option<String>,
}

pub fn commit(iso: Isolation, a: &CommitArgs) -> Result<i32> {
    let tag = match &a.repository {
        Some(r) => match berth_protocol::reference::Reference::parse(r) {
            Ok(r) => Some(r.to_string()),
            Err(e) => {
                eprintln!("invalid reference format: {e}");
                return Ok(1);
            }
        },
        None => None,
    };
    match connect(iso)?.container_commit(CommitOptions {
        id: a.container.clone(),
        tag,
        message: a.message.clone(),
        author: a.author.clone(),
        changes: a.change.clone(),
        pause: a.pause,
    }) {
        Ok(img) => {
            println!("{}", img.id);
            Ok(0)
        }
        Err(e @ ClientError::Unexpected(_)) => Err(e.into()),
        Err(e) => {
            daemon_error(&e);
            Ok(1)
        }
    }
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn prune(iso: Isolation, a: &PruneArgs) -> Result<i32> {
    if !a.force {
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let ids = connect(iso)?.container_prune()?;
    if !ids.is_empty() {
        println!("Deleted Containers:");
        ids.iter().for_each(|i| println!("{i}"));
        println!();
    }
    println!("Total reclaimed space: 0B");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_signals() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000_000_000
        );
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        let t = parse_time("1h30m").unwrap();
        assert!((now - t - 5_400_000_000_000).abs() < 5_000_000_000);
        assert!(parse_time("soon").is_err());
        assert!(parse_time("5x").is_err());
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("hup"), Some(1));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("0"), None);
    }
}
