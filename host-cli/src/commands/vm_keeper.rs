//! `berth run --isolation vm -d`: the detached *keeper* of one container
//! in a VM of its own (`berth vm-keeper`, hidden). `run -d` starts it in
//! a session of its own, writes the request (image and container config,
//! JSON) on its stdin and reads one JSON line back from its stdout: the
//! container's id, or the error to print and the exit code. The keeper
//! binds the published ports, starts the VM (the VMM is its child and
//! dies with it), creates and starts the container, records it in the VM
//! directory (`host-core` `vm_fleet`), and serves the ports until the
//! container exits; then it saves the container's output, records the
//! exit and powers the VM off, keeping the directory for `ps -a`, `logs`
//! and `rm`.

use crate::client::ClientError;
use crate::EXIT_ENGINE;
use anyhow::{Context, Result};
use berth_host::placement::OwnVm;
use berth_host::port_forward::RunPorts;
use berth_host::vm_fleet::{self, Record};
use berth_protocol::mux::{self, Kind};
use berth_protocol::{ContainerConfig, ContainerStatus, LogsOptions, PublishedPort};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

/// What `run -d` asks the keeper for.
#[derive(Serialize, Deserialize)]
struct KeeperRequest {
    image: String,
    config: ContainerConfig,
    /// The VM's user-mode network peers (compose's other services).
    #[serde(default)]
    net_peers: Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
}

/// The keeper's one answer.
#[derive(Serialize, Deserialize, Default)]
struct KeeperReply {
    /// Lines for the user's stderr (warnings, timings).
    #[serde(default)]
    notes: Vec<String>,
    /// The container's id once it runs.
    #[serde(default)]
    id: Option<String>,
    /// Otherwise what to print (stderr) and the exit code.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    code: i32,
}

/// `run -d` with `--isolation vm`: starts a keeper and relays its answer.
pub fn run_detached(image: &str, config: ContainerConfig) -> Result<i32> {
    if let Some(name) = config.name.as_deref() {
        if let Some(e) = vm_fleet::list().into_iter().find(|e| e.record.name == name) {
            eprintln!(
                "berth: Error response from daemon: Conflict. The container name \"/{name}\" is already in use by container \"{}\". \
                 You have to remove (or rename) that container to be able to reuse that name.",
                e.record.id
            );
            return Ok(EXIT_ENGINE);
        }
    }
    let reply = launch(image, config, Vec::new())?;
    reply.notes.iter().for_each(|n| eprintln!("{n}"));
    match reply.started() {
        Ok(id) => {
            println!("{id}");
            Ok(0)
        }
        Err((error, code)) => {
            eprintln!("{error}");
            Ok(code)
        }
    }
}

/// What a keeper answered [`launch`].
pub struct Launched {
    /// Lines for the user's stderr (warnings, timings).
    pub notes: Vec<String>,
    reply: KeeperReply,
}

impl Launched {
    /// The container's id, or the error to print and the exit code.
    pub fn started(&self) -> std::result::Result<String, (String, i32)> {
        match (&self.reply.id, &self.reply.error) {
            (Some(id), None) => Ok(id.clone()),
            (_, error) => Err((
                error.clone().unwrap_or_default(),
                if self.reply.code == 0 {
                    EXIT_ENGINE
                } else {
                    self.reply.code
                },
            )),
        }
    }
}

/// Starts a keeper for `config` (its bind sources already pointed at
/// the VM's shares) in a VM whose user-mode network has `net_peers`, and
/// waits for its answer.
pub fn launch(
    image: &str,
    config: ContainerConfig,
    net_peers: Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
) -> Result<Launched> {
    let root = vm_fleet::root();
    std::fs::create_dir_all(&root)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("keeper.log"))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg(vm_fleet::KEEPER_ARG)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    berth_host::placement::detach(&mut cmd);
    let mut child = cmd.spawn().context("starting the VM's keeper")?;
    let request = serde_json::to_vec(&KeeperRequest {
        image: image.to_string(),
        config,
        net_peers,
    })?;
    {
        let mut stdin = child.stdin.take().context("keeper stdin")?;
        stdin.write_all(&request)?;
    }
    let mut line = String::new();
    let stdout = child.stdout.take().context("keeper stdout")?;
    // One line; the keeper keeps running (and is reaped by init).
    let _ = BufReader::new(stdout).take(1 << 20).read_line(&mut line);
    let reply: KeeperReply = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(_) => {
            let _ = child.wait();
            return Ok(Launched {
                notes: Vec::new(),
                reply: KeeperReply {
                    error: Some(format!(
                        "berth: the VM's keeper exited before the container started (see {})",
                        root.join("keeper.log").display()
                    )),
                    code: EXIT_ENGINE,
                    ..Default::default()
                },
            });
        }
    };
    std::mem::forget(child);
    Ok(Launched {
        notes: reply.notes.clone(),
        reply,
    })
}

/// `berth vm-keeper`: serves one detached own-VM container (see the
/// module's comment).
pub fn keeper() -> Result<i32> {
    let mut text = Vec::new();
    std::io::stdin().take(16 << 20).read_to_end(&mut text)?;
    let request: KeeperRequest = serde_json::from_slice(&text).context("keeper request")?;
    let auto_remove = request.config.auto_remove;
    let mut notes = Vec::new();
    let started = start(request, &mut notes);
    let (vm, forwarding, id) = match started {
        Ok(s) => s,
        Err((error, code)) => {
            answer(&KeeperReply {
                notes,
                error: Some(error),
                code,
                ..Default::default()
            });
            return Ok(code);
        }
    };
    answer(&KeeperReply {
        notes,
        id: Some(id.clone()),
        ..Default::default()
    });
    let dir = vm.dir().to_path_buf();
    let final_summary = watch(&vm, &dir, &id);
    // Ports close before the VM goes.
    drop(forwarding);
    if auto_remove {
        drop(vm);
        return Ok(0);
    }
    if let Some(mut record) = vm_fleet::read_record(&dir) {
        if let Ok(c) = vm.connect() {
            let _ = vm_fleet::write_logs(&dir.join(vm_fleet::LOG), &output(c, &id));
        }
        save_details(&vm, &dir, &id);
        if let Some(s) = final_summary {
            record.summary = s;
        }
        if record.summary.status != ContainerStatus::Exited {
            record.summary.status = ContainerStatus::Exited;
            record.summary.exit_code.get_or_insert(137);
        }
        record.stopped = true;
        vm_fleet::write_record(&dir, &record)?;
        vm.power_off_keeping_dir();
    }
    Ok(0)
}

/// Writes the one answer line on stdout.
fn answer(reply: &KeeperReply) {
    let mut out = std::io::stdout();
    if let Ok(line) = serde_json::to_string(reply) {
        let _ = writeln!(out, "{line}").and_then(|_| out.flush());
    }
}

/// Binds the ports, starts the VM and the container, writes the record;
/// or the error to show and the exit code.
fn start(
    request: KeeperRequest,
    notes: &mut Vec<String>,
) -> Result<(OwnVm, berth_host::port_forward::RunForwarding, String), (String, i32)> {
    let engine_err = |e: &dyn std::fmt::Display| (format!("berth: {e:#}"), EXIT_ENGINE);
    let cache = crate::image_cache::ImageCache::open().map_err(|e| engine_err(&e))?;
    let Some(image) = cache.resolve(&request.image) else {
        return Err((
            format!(
                "Unable to find image '{0}' locally\nberth: Error response from daemon: No such image: {0}",
                request.image
            ),
            EXIT_ENGINE,
        ));
    };
    let mut cfg = request.config;
    let net_peers = request.net_peers;
    let bindings = if cfg.ports.is_empty() && !cfg.publish_all {
        Vec::new()
    } else {
        let config = cache.read_blob(&image.config_digest).unwrap_or_default();
        crate::ports::run_bindings(&cfg, &crate::ports::image_exposed(&config))
    };
    let ports = RunPorts::bind(&bindings).map_err(|e| {
        let endpoint = cfg.name.as_deref().map(|n| format!(" on endpoint {n}"));
        (
            format!(
                "berth: Error response from daemon: driver failed programming external connectivity{}: {e}.",
                endpoint.unwrap_or_default()
            ),
            EXIT_ENGINE,
        )
    })?;
    if !bindings.is_empty() {
        cfg.ports = ports.guest_bindings().to_vec();
    }
    let host_ports: Vec<PublishedPort> = ports
        .host_addrs()
        .into_iter()
        .filter_map(|(proto, addr)| {
            let b = ports
                .guest_bindings()
                .iter()
                .find(|b| b.host_port == addr.port() && b.proto == proto)?;
            Some(PublishedPort {
                container_port: b.container_port,
                proto,
                host_ip: addr.ip().to_string(),
                host_port: addr.port(),
            })
        })
        .collect();
    let timings = std::env::var_os("BERTH_VM_TIMINGS").is_some();
    let collected = std::cell::RefCell::new(Vec::new());
    let note = |line: &str| collected.borrow_mut().push(line.to_string());
    let vm = OwnVm::new(&cache, &image, &request.image, timings, &note);
    let vm = vm.map_err(|e| engine_err(&e)).and_then(|mut vm| {
        // The config's bind sources and named volumes were pointed at the
        // VM's shares by the `run` that started this keeper.
        vm.set_mounts(&cfg).map_err(|e| engine_err(&e))?;
        vm.set_net_peers(net_peers);
        Ok(vm)
    });
    let started = vm.and_then(|vm| {
        vm.start(&cache, &image, timings, &note)
            .map_err(|e| engine_err(&e))?;
        let forwarding = ports.serve(&vm.endpoint());
        let mut ctl = vm.connect().map_err(|e| engine_err(&e))?;
        let created = ctl.container_create(cfg).map_err(|e| {
            (
                format!(
                    "berth: Error response from daemon: {}\nSee 'berth run --help'.",
                    crate::commands::run_values::sentence(&e)
                ),
                crate::commands::run_values::error_code(&e),
            )
        })?;
        for w in &created.warnings {
            collected.borrow_mut().push(format!("WARNING: {w}"));
        }
        let id = created.id;
        ctl.container_start(&id).map_err(|e: ClientError| {
            (
                format!(
                    "berth: Error response from daemon: {}",
                    crate::commands::run_values::sentence(&e)
                ),
                crate::commands::run_values::error_code(&e),
            )
        })?;
        let summary = ctl
            .container_list(true)
            .map_err(|e| engine_err(&e))?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| engine_err(&"the new container is not listed"))?;
        let record = Record {
            id: id.clone(),
            name: summary.name.trim_start_matches('/').to_string(),
            summary,
            ports: host_ports,
            keeper_pid: std::process::id() as i32,
            stopped: false,
        };
        vm_fleet::write_record(vm.dir(), &record).map_err(|e| engine_err(&e))?;
        save_details(&vm, vm.dir(), &id);
        Ok((vm, forwarding, id))
    });
    notes.extend(collected.into_inner());
    started
}

/// Saves the container's inspect details, its image's config and the
/// guest engine's facts into `dir` (for `inspect` once the VM is off).
fn save_details(vm: &OwnVm, dir: &std::path::Path, id: &str) {
    let Ok(mut c) = vm.connect() else { return };
    let Ok(details) = c.container_inspect(id) else {
        return;
    };
    let image = c
        .image_inspect(&details.summary.image_id)
        .ok()
        .map(|i| i.config);
    let info = c.info().ok();
    let _ = vm_fleet::write_details(
        dir,
        &vm_fleet::Saved {
            details: *details,
            image,
            info,
        },
    );
}

/// Waits until the container has exited for good (a restart policy
/// brings it back in place, and so does a `berth restart`: see
/// [`vm_fleet::RESTARTING`]); its last summary.
fn watch(vm: &OwnVm, dir: &std::path::Path, id: &str) -> Option<berth_protocol::ContainerSummary> {
    loop {
        // The VM is gone (killed): nothing more to see.
        vm.vmm_pid()?;
        let waited = vm.connect().ok().map(|mut c| c.container_wait(id));
        let summary = vm.connect().ok().and_then(|mut c| {
            c.container_list(true)
                .ok()?
                .into_iter()
                .find(|s| s.id == id)
        });
        match (waited, summary) {
            // Restarted in place: the stop is not the end.
            (Some(Ok(_)), Some(_)) if vm_fleet::restart_pending(dir) => {
                std::thread::sleep(Duration::from_millis(200))
            }
            (Some(Ok(_)), Some(s))
                if !matches!(
                    s.status,
                    ContainerStatus::Running
                        | ContainerStatus::Restarting
                        | ContainerStatus::Paused
                ) =>
            {
                return Some(s)
            }
            // Gone from the engine (removed inside): nothing more to see.
            (Some(Ok(_)), None) => return None,
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// The container's whole output, in order.
fn output(c: crate::engine::Engine, id: &str) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(mut stream) = c.logs(LogsOptions {
        id: id.to_string(),
        follow: false,
        tail: None,
        since: None,
        until: None,
        timestamps: false,
    }) else {
        return out;
    };
    while let Ok(Some((kind, d))) = mux::read_frame(&mut stream) {
        match kind {
            Kind::Stdout => out.push((false, d)),
            Kind::Stderr => out.push((true, d)),
            Kind::Exit => break,
            _ => {}
        }
    }
    out
}
