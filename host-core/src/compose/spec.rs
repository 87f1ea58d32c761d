//! A compose service as the engine's [`ContainerConfig`]: names, the
//! `com.docker.compose.*` labels, the config hash, and the conversion of
//! each service key berth runs (command, environment, mounts, ports,
//! networks, healthcheck, restart policy, ...; those of `run`'s resource,
//! namespace and logging flags in [`run_keys`]).

pub mod run_keys;

use berth_compose::{Command, Healthcheck, Mount, MountKind, Project, Service, Value};
use berth_protocol::{ContainerConfig, HealthConfig, RestartPolicy};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The `com.docker.compose.*` label keys.
pub mod label {
    pub const PROJECT: &str = "com.docker.compose.project";
    pub const SERVICE: &str = "com.docker.compose.service";
    pub const NUMBER: &str = "com.docker.compose.container-number";
    pub const HASH: &str = "com.docker.compose.config-hash";
    pub const ONEOFF: &str = "com.docker.compose.oneoff";
    pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
    pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
    pub const VERSION: &str = "com.docker.compose.version";
    pub const DEPENDS_ON: &str = "com.docker.compose.depends_on";
    pub const NETWORK: &str = "com.docker.compose.network";
    pub const VOLUME: &str = "com.docker.compose.volume";
}

/// Why a service cannot be turned into a container config.
#[derive(Debug, thiserror::Error)]
#[error("service {service:?}: {key}: {msg}")]
pub struct SpecError {
    pub service: String,
    pub key: &'static str,
    pub msg: String,
}

fn err(service: &Service, key: &'static str, msg: impl Into<String>) -> SpecError {
    SpecError {
        service: service.name.clone(),
        key,
        msg: msg.into(),
    }
}

/// `<project>-<service>-<n>`, docker compose v2's container name.
pub fn container_name(project: &str, service: &str, number: u64) -> String {
    format!("{project}-{service}-{number}")
}

/// The image a service runs: `image:`, else `<project>-<service>` (what
/// `build:` tags).
pub fn image_name(project: &Project, s: &Service) -> String {
    match &s.image {
        Some(i) => i.clone(),
        None => format!("{}-{}", project.name, s.name),
    }
}

/// A top-level volume's engine name: its `name:`, else `<project>_<key>`
/// (an external one: its `name:`, else the key).
pub fn volume_name(project: &Project, key: &str) -> String {
    match project.volumes.get(key) {
        Some(v) if v.external => v.name.clone().unwrap_or_else(|| key.to_string()),
        Some(v) => v
            .name
            .clone()
            .unwrap_or_else(|| format!("{}_{key}", project.name)),
        None => format!("{}_{key}", project.name),
    }
}

/// A network's engine name, as [`volume_name`] for volumes.
pub fn network_name(project: &Project, key: &str) -> String {
    match project.networks.get(key) {
        Some(n) if n.external => n.name.clone().unwrap_or_else(|| key.to_string()),
        Some(n) => n
            .name
            .clone()
            .unwrap_or_else(|| format!("{}_{key}", project.name)),
        None => format!("{}_{key}", project.name),
    }
}

/// `network_mode:` when it names no project network (`host`, `none`,
/// `bridge`, `container:...`).
pub fn network_mode(s: &Service) -> Option<String> {
    match s.other.get("network_mode") {
        Some(Value::Str(m)) => Some(m.clone()),
        _ => None,
    }
}

/// The project networks a service joins (keys of the top-level section),
/// `default` when it names none; empty with a `network_mode`.
pub fn service_networks(s: &Service) -> Vec<String> {
    if network_mode(s).is_some() {
        return Vec::new();
    }
    if s.networks.is_empty() {
        return vec!["default".into()];
    }
    s.networks.keys().cloned().collect()
}

/// The names a service is found by on `network`: its own name and the
/// aliases given there.
pub fn aliases(s: &Service, network: &str) -> Vec<String> {
    let mut a = vec![s.name.clone()];
    if let Some(Some(n)) = s.networks.get(network) {
        for x in &n.aliases {
            if !a.contains(x) {
                a.push(x.clone());
            }
        }
    }
    a
}

/// A shell-style string split into words, as compose splits `command:`.
fn split_words(s: &Service, key: &'static str, text: &str) -> Result<Vec<String>, SpecError> {
    shlex::split(text).ok_or_else(|| err(s, key, format!("cannot split {text:?} into words")))
}

fn argv(s: &Service, key: &'static str, c: &Command) -> Result<Vec<String>, SpecError> {
    match c {
        Command::Exec(v) => Ok(v.clone()),
        Command::Shell(t) => split_words(s, key, t),
    }
}

fn restart_policy(s: &Service) -> Result<RestartPolicy, SpecError> {
    let Some(r) = &s.restart else {
        return Ok(RestartPolicy::default());
    };
    let (name, count) = r.split_once(':').unwrap_or((r, ""));
    if !matches!(name, "no" | "always" | "on-failure" | "unless-stopped") {
        return Err(err(s, "restart", format!("invalid restart policy {r:?}")));
    }
    let maximum_retry_count = if count.is_empty() {
        0
    } else if name == "on-failure" {
        count
            .parse()
            .map_err(|_| err(s, "restart", format!("invalid retry count in {r:?}")))?
    } else {
        return Err(err(s, "restart", format!("invalid restart policy {r:?}")));
    };
    Ok(RestartPolicy {
        name: name.into(),
        maximum_retry_count,
    })
}

fn nanos(s: &Service, d: Option<berth_compose::Duration>) -> Result<i64, SpecError> {
    match d {
        None => Ok(0),
        Some(d) => i64::try_from(d.0).map_err(|_| err(s, "healthcheck", "duration too long")),
    }
}

fn healthcheck(s: &Service, h: &Healthcheck) -> Result<HealthConfig, SpecError> {
    let test = match &h.test {
        None => Vec::new(),
        Some(Command::Exec(v)) => v.clone(),
        Some(Command::Shell(t)) => vec!["CMD-SHELL".into(), t.clone()],
    };
    Ok(HealthConfig {
        test,
        interval: nanos(s, h.interval)?,
        timeout: nanos(s, h.timeout)?,
        start_period: nanos(s, h.start_period)?,
        start_interval: 0,
        retries: h
            .retries
            .map(|r| i64::try_from(r).unwrap_or(i64::MAX))
            .unwrap_or(0),
    })
}

/// One `volumes:` entry as a `-v` or `--mount` spec, the named volume
/// replaced by its engine name.
fn mount_spec(
    project: &Project,
    s: &Service,
    m: &Mount,
    dir: &Path,
) -> Result<berth_protocol::MountSpec, SpecError> {
    let bad = |e: crate::args::ArgError| err(s, "volumes", e.to_string());
    match m {
        Mount::Short {
            source,
            target,
            mode,
        } => {
            let mut raw = match (source, m.named_volume()) {
                (_, Some(v)) => format!("{}:{target}", volume_name(project, v)),
                (Some(src), None) => format!("{src}:{target}"),
                (None, None) => target.clone(),
            };
            if !mode.is_empty() && source.is_some() {
                raw.push(':');
                raw.push_str(mode);
            }
            crate::mounts::parse_volume(&raw, dir).map_err(bad)
        }
        Mount::Long {
            kind,
            source,
            target,
            read_only,
            options,
            ..
        } => {
            let mut parts = vec![format!("type={}", kind.as_str())];
            match (kind, source) {
                (MountKind::Volume, Some(v)) => {
                    parts.push(format!("source={}", volume_name(project, v)))
                }
                (MountKind::Tmpfs, _) | (_, None) => {}
                (_, Some(src)) => parts.push(format!("source={src}")),
            }
            parts.push(format!("target={target}"));
            if *read_only {
                parts.push("readonly".into());
            }
            if let Some(Value::Map(o)) = options {
                match kind {
                    MountKind::Volume => {
                        if let Some(Value::Bool(true)) = o.get("nocopy") {
                            parts.push("volume-nocopy".into());
                        }
                    }
                    MountKind::Tmpfs => match o.get("size") {
                        Some(Value::Int(n)) => parts.push(format!("tmpfs-size={n}")),
                        Some(Value::Str(t)) => parts.push(format!("tmpfs-size={t}")),
                        _ => {}
                    },
                    MountKind::Bind => {
                        if let Some(Value::Str(p)) = o.get("propagation") {
                            parts.push(format!("bind-propagation={p}"));
                        }
                    }
                    MountKind::Npipe => {}
                }
            }
            if parts
                .iter()
                .any(|p| p[p.find('=').unwrap_or(0)..].contains(','))
            {
                return Err(err(s, "volumes", format!("a ',' in mount {target:?}")));
            }
            crate::mounts::parse_mount(&parts.join(","), dir).map_err(bad)
        }
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(|i| match i {
                Value::Str(s) => Some(s.clone()),
                Value::Int(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(Value::Str(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The container config a service asks for, without its name and per
/// container labels: what the config hash is taken over.
pub fn service_config(project: &Project, s: &Service) -> Result<ContainerConfig, SpecError> {
    let dir = project.working_dir.as_path();
    let mut env: Vec<String> = s
        .environment_strings()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.sort();
    let mut mounts = Vec::new();
    for m in &s.volumes {
        mounts.push(mount_spec(project, s, m, dir)?);
    }
    let mut ports = Vec::new();
    for p in &s.ports {
        let ip = match p.host_ip.as_deref() {
            Some(ip) if ip.contains(':') => format!("[{ip}]:"),
            Some(ip) => format!("{ip}:"),
            None => String::new(),
        };
        let published = p.published.map(|n| n.to_string()).unwrap_or_default();
        let proto = p.protocol.as_deref().unwrap_or("tcp");
        let spec = if ip.is_empty() && published.is_empty() {
            format!("{}/{proto}", p.target)
        } else {
            format!("{ip}{published}:{}/{proto}", p.target)
        };
        ports.extend(crate::ports::parse_publish(&spec).map_err(|e| err(s, "ports", e))?);
    }
    let mut expose = Vec::new();
    for e in strings(s.other.get("expose")) {
        expose.extend(crate::ports::parse_expose(&e).map_err(|m| err(s, "expose", m))?);
    }
    let (network_mode, network_aliases) = match network_mode(s) {
        Some(m) => (Some(m), Vec::new()),
        None => {
            let nets = service_networks(s);
            let first = &nets[0];
            (Some(network_name(project, first)), aliases(s, first))
        }
    };
    let mut labels = s.labels.clone();
    labels.insert(label::PROJECT.into(), project.name.clone());
    labels.insert(label::SERVICE.into(), s.name.clone());
    labels.insert(label::ONEOFF.into(), "False".into());
    labels.insert(
        label::WORKING_DIR.into(),
        project.working_dir.display().to_string(),
    );
    labels.insert(
        label::CONFIG_FILES.into(),
        project
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    labels.insert(label::VERSION.into(), env!("CARGO_PKG_VERSION").into());
    let depends: Vec<String> = s
        .depends_on
        .iter()
        .map(|(d, c)| format!("{d}:{}:false", c.condition.as_str()))
        .collect();
    labels.insert(label::DEPENDS_ON.into(), depends.join(","));
    let bool_key = |k: &str| matches!(s.other.get(k), Some(Value::Bool(true)));
    let mut cfg = ContainerConfig {
        image: image_name(project, s),
        name: None,
        cmd: s
            .command
            .as_ref()
            .map(|c| argv(s, "command", c))
            .transpose()?,
        entrypoint: s
            .entrypoint
            .as_ref()
            .map(|c| argv(s, "entrypoint", c))
            .transpose()?,
        env,
        workdir: s.working_dir.clone(),
        user: s.user.clone(),
        hostname: s.hostname.clone(),
        tty: s.tty.unwrap_or(false),
        open_stdin: s.stdin_open.unwrap_or(false),
        labels,
        read_only: bool_key("read_only"),
        tmpfs: s.tmpfs.clone(),
        restart: restart_policy(s)?,
        init: s.init.unwrap_or(false),
        stop_signal: s.stop_signal.clone(),
        mounts,
        network_mode,
        network_aliases,
        ports,
        expose,
        dns: strings(s.other.get("dns")),
        dns_search: strings(s.other.get("dns_search")),
        extra_hosts: strings(s.other.get("extra_hosts"))
            .into_iter()
            .map(|h| h.replacen('=', ":", 1))
            .collect(),
        healthcheck: s
            .healthcheck
            .as_ref()
            .map(|h| healthcheck(s, h))
            .transpose()?,
        ..Default::default()
    };
    run_keys::apply(project, s, &mut cfg)?;
    Ok(cfg)
}

/// The config hash: sha256 over the service's container config (which
/// holds its image, command, environment, mounts, ports, networks and
/// labels) and the extra networks it joins. A change to any recreates
/// the service's containers.
pub fn config_hash(project: &Project, s: &Service, cfg: &ContainerConfig) -> String {
    let mut h = Sha256::new();
    // ContainerConfig serializes deterministically (BTreeMaps, Vecs).
    h.update(serde_json::to_vec(cfg).unwrap_or_default());
    for n in service_networks(s).iter().skip(1) {
        h.update(b"\0net\0");
        h.update(network_name(project, n).as_bytes());
        for a in aliases(s, n) {
            h.update(b"\0");
            h.update(a.as_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// `stop_grace_period` in whole seconds (compose's default: 10).
pub fn stop_timeout(s: &Service) -> Option<i64> {
    s.stop_grace_period
        .as_deref()
        .and_then(berth_compose::Duration::parse)
        .map(|d| (d.0 / 1_000_000_000) as i64)
}

/// The labels a one-off (`run`) or a service container carries beyond
/// the service's: its number, its hash, whether it is a one-off.
pub fn container_labels(
    base: &BTreeMap<String, String>,
    number: u64,
    hash: &str,
    oneoff: bool,
) -> BTreeMap<String, String> {
    let mut l = base.clone();
    l.insert(label::NUMBER.into(), number.to_string());
    l.insert(label::HASH.into(), hash.into());
    l.insert(
        label::ONEOFF.into(),
        if oneoff { "True" } else { "False" }.into(),
    );
    l
}
