//! Container endpoints answered with one engine call (or a few): list,
//! create, inspect, stop, kill, remove, …

use crate::error::{ApiError, ApiResult};
use crate::filters;
use crate::routes::{qbool, qint, query};
use crate::server::{read_json, AppState};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_protocol::{
    ChangeKind, ContainerConfig, ContainerStatus, ContainerSummary, MountSpec, MountType,
    PortBinding, PortProto, PublishedPort, RestartPolicy,
};
use bollard_stubs::models;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// `Cmd` and `Entrypoint`: a list, or one string (docker's StrSlice).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StrSlice {
    One(String),
    Many(Vec<String>),
}

impl StrSlice {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrSlice::One(s) => vec![s],
            StrSlice::Many(v) => v,
        }
    }
}

/// The fields of docker's create body berth uses (`container.Config`
/// with `HostConfig`); others are accepted and ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct CreateBody {
    hostname: Option<String>,
    domainname: Option<String>,
    user: Option<String>,
    tty: Option<bool>,
    open_stdin: Option<bool>,
    env: Option<Vec<String>>,
    cmd: Option<StrSlice>,
    entrypoint: Option<StrSlice>,
    image: Option<String>,
    working_dir: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    stop_signal: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    healthcheck: Option<berth_protocol::HealthConfig>,
    host_config: Option<HostConfigBody>,
    networking_config: Option<NetworkingConfigBody>,
    stop_timeout: Option<i64>,
}

/// `NetworkingConfig`: the endpoint settings per network.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct NetworkingConfigBody {
    endpoints_config: Option<BTreeMap<String, Option<EndpointBody>>>,
}

/// An `EndpointSettings` (the parts berth models): also the body of a
/// network connect.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct EndpointBody {
    pub aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpam>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: Option<String>,
}

impl EndpointBody {
    pub(crate) fn ipv4(&self) -> Option<String> {
        self.ipam_config
            .as_ref()
            .and_then(|i| i.ipv4_address.clone())
            .filter(|a| !a.is_empty())
    }
}

/// One `HostConfig.Mounts` entry (docker's `mount.Mount`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct MountBody {
    #[serde(rename = "Type")]
    kind: String,
    source: String,
    target: String,
    read_only: bool,
    bind_options: Option<BindOptionsBody>,
    volume_options: Option<VolumeOptionsBody>,
    tmpfs_options: Option<TmpfsOptionsBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct BindOptionsBody {
    propagation: Option<String>,
    non_recursive: bool,
    create_mountpoint: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct VolumeOptionsBody {
    no_copy: bool,
    labels: Option<BTreeMap<String, String>>,
    driver_config: Option<DriverConfigBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct DriverConfigBody {
    name: Option<String>,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct TmpfsOptionsBody {
    size_bytes: Option<i64>,
    mode: Option<u32>,
}

/// berth's mount for a `HostConfig.Mounts` entry; docker's 400s.
fn mount_spec(m: MountBody) -> ApiResult<MountSpec> {
    let bad = |why: String| {
        ApiError::bad_request(format!(
            "invalid mount config for type \"{}\": {why}",
            m.kind
        ))
    };
    if !m.target.starts_with('/') {
        return Err(bad(format!(
            "invalid mount path: '{}' mount path must be absolute",
            m.target
        )));
    }
    let kind = match m.kind.as_str() {
        "bind" => MountType::Bind,
        "volume" => MountType::Volume,
        "tmpfs" => MountType::Tmpfs,
        k => {
            return Err(ApiError::bad_request(format!(
                "mount type unknown: \"{k}\""
            )))
        }
    };
    let mut spec = MountSpec::new(kind, &m.source, &m.target);
    spec.read_only = m.read_only;
    match kind {
        MountType::Bind => {
            if m.source.is_empty() {
                return Err(bad("field Source must not be empty".into()));
            }
            if !m.source.starts_with('/') {
                return Err(bad(format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                )));
            }
            if m.volume_options.is_some() || m.tmpfs_options.is_some() {
                return Err(bad(
                    "field VolumeOptions/TmpfsOptions must not be specified".into(),
                ));
            }
            if let Some(b) = m.bind_options {
                spec.propagation = b.propagation.filter(|p| !p.is_empty());
                spec.non_recursive = b.non_recursive;
                spec.create_host_path = b.create_mountpoint;
            }
        }
        MountType::Volume => {
            if m.bind_options.is_some() || m.tmpfs_options.is_some() {
                return Err(bad(
                    "field BindOptions/TmpfsOptions must not be specified".into()
                ));
            }
            if let Some(v) = m.volume_options {
                spec.no_copy = v.no_copy;
                spec.volume_labels = v.labels.unwrap_or_default();
                if let Some(d) = v.driver_config {
                    spec.volume_driver = d.name.filter(|n| !n.is_empty());
                    spec.volume_options = d.options.unwrap_or_default();
                }
            }
        }
        MountType::Tmpfs => {
            if !m.source.is_empty() {
                return Err(bad("field Source must not be specified".into()));
            }
            if let Some(t) = m.tmpfs_options {
                spec.tmpfs_size = t.size_bytes.filter(|s| *s > 0);
                spec.tmpfs_mode = t.mode.filter(|m| *m != 0);
            }
        }
    }
    Ok(spec)
}

/// The caps a create body names, spelled as docker's CLI would send them
/// (older clients send them as typed); empty names are dropped.
fn normalize_caps(list: Vec<String>) -> Vec<String> {
    berth_host::args::normalize_caps(list.into_iter().filter(|c| !c.is_empty()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct HostConfigBody {
    binds: Option<Vec<String>>,
    port_bindings: Option<BTreeMap<String, Option<Vec<PortBindingBody>>>>,
    publish_all_ports: Option<bool>,
    auto_remove: Option<bool>,
    restart_policy: Option<RestartBody>,
    network_mode: Option<String>,
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    pids_limit: Option<i64>,
    ulimits: Option<Vec<UlimitBody>>,
    shm_size: Option<i64>,
    sysctls: Option<BTreeMap<String, String>>,
    cpu_shares: Option<i64>,
    cpuset_cpus: Option<String>,
    memory_swap: Option<i64>,
    memory_reservation: Option<i64>,
    oom_kill_disable: Option<bool>,
    devices: Option<Vec<DeviceBody>>,
    group_add: Option<Vec<String>>,
    readonly_rootfs: Option<bool>,
    init: Option<bool>,
    dns: Option<Vec<String>>,
    dns_search: Option<Vec<String>>,
    dns_options: Option<Vec<String>>,
    extra_hosts: Option<Vec<String>>,
    volumes_from: Option<Vec<String>>,
    tmpfs: Option<BTreeMap<String, String>>,
    mounts: Option<Vec<MountBody>>,
    cap_add: Option<Vec<String>>,
    cap_drop: Option<Vec<String>>,
    privileged: Option<bool>,
    security_opt: Option<Vec<String>>,
    links: Option<Vec<String>>,
    ipc_mode: Option<String>,
    pid_mode: Option<String>,
    #[serde(rename = "UTSMode")]
    uts_mode: Option<String>,
    cgroupns_mode: Option<String>,
    #[serde(rename = "ContainerIDFile")]
    container_id_file: Option<String>,
    log_config: Option<LogConfigBody>,
}

/// `HostConfig.LogConfig`: the driver (its options are the CLI's).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct LogConfigBody {
    #[serde(rename = "Type")]
    kind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct UlimitBody {
    name: String,
    soft: i64,
    hard: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct DeviceBody {
    path_on_host: String,
    path_in_container: String,
    cgroup_permissions: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct PortBindingBody {
    host_ip: Option<String>,
    host_port: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct RestartBody {
    name: Option<String>,
    maximum_retry_count: Option<i64>,
}

/// berth's container config for a create body, and the further networks
/// its `NetworkingConfig` names (connected after the create); errors are
/// docker's 400s.
fn container_config(
    b: CreateBody,
    name: Option<String>,
) -> ApiResult<(ContainerConfig, Vec<(String, EndpointBody)>)> {
    let image = b
        .image
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::bad_request("no image specified"))?;
    let h = b.host_config.unwrap_or_default();
    let mut cfg = ContainerConfig {
        image,
        name,
        cmd: b.cmd.map(StrSlice::into_vec),
        entrypoint: b.entrypoint.map(|e| {
            let v = e.into_vec();
            // `[""]` resets the image's entrypoint.
            if v.iter().all(String::is_empty) {
                Vec::new()
            } else {
                v
            }
        }),
        env: b.env.unwrap_or_default(),
        workdir: b.working_dir.filter(|w| !w.is_empty()),
        user: b.user.filter(|u| !u.is_empty()),
        hostname: b.hostname.filter(|h| !h.is_empty()),
        domainname: b.domainname.filter(|d| !d.is_empty()),
        tty: b.tty.unwrap_or(false),
        open_stdin: b.open_stdin.unwrap_or(false),
        auto_remove: h.auto_remove.unwrap_or(false),
        labels: b.labels.unwrap_or_default(),
        memory: h.memory.filter(|m| *m > 0),
        nano_cpus: h.nano_cpus.filter(|n| *n > 0),
        pids_limit: h.pids_limit.filter(|p| *p > 0),
        ulimits: h
            .ulimits
            .unwrap_or_default()
            .into_iter()
            .map(|u| berth_protocol::Ulimit {
                name: u.name,
                soft: u.soft,
                hard: u.hard,
            })
            .collect(),
        shm_size: h.shm_size.filter(|s| *s != 0),
        sysctls: h.sysctls.unwrap_or_default(),
        cpu_shares: h.cpu_shares.filter(|s| *s != 0),
        cpuset_cpus: h.cpuset_cpus.filter(|s| !s.is_empty()),
        memory_swap: h.memory_swap.filter(|s| *s != 0),
        memory_reservation: h.memory_reservation.filter(|s| *s != 0),
        oom_kill_disable: h.oom_kill_disable.unwrap_or(false),
        devices: h
            .devices
            .unwrap_or_default()
            .into_iter()
            .map(|d| berth_protocol::DeviceMapping {
                // docker's daemon: an empty container path is the host's.
                path_in_container: if d.path_in_container.is_empty() {
                    d.path_on_host.clone()
                } else {
                    d.path_in_container
                },
                path_on_host: d.path_on_host,
                cgroup_permissions: if d.cgroup_permissions.is_empty() {
                    "rwm".into()
                } else {
                    d.cgroup_permissions
                },
            })
            .collect(),
        group_add: h.group_add.unwrap_or_default(),
        read_only: h.readonly_rootfs.unwrap_or(false),
        init: h.init.unwrap_or(false),
        stop_signal: b.stop_signal.filter(|s| !s.is_empty()),
        network_mode: h.network_mode.filter(|m| !m.is_empty() && m != "default"),
        publish_all: h.publish_all_ports.unwrap_or(false),
        dns: h.dns.unwrap_or_default(),
        dns_search: h.dns_search.unwrap_or_default(),
        dns_options: h.dns_options.unwrap_or_default(),
        extra_hosts: h.extra_hosts.unwrap_or_default(),
        volumes_from: h.volumes_from.unwrap_or_default(),
        cap_add: normalize_caps(h.cap_add.unwrap_or_default()),
        cap_drop: normalize_caps(h.cap_drop.unwrap_or_default()),
        privileged: h.privileged.unwrap_or(false),
        security_opt: h.security_opt.unwrap_or_default(),
        healthcheck: b.healthcheck,
        links: h.links.unwrap_or_default(),
        stop_timeout: b.stop_timeout,
        ..Default::default()
    };
    // Empty strings are docker's defaults.
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    cfg.ipc_mode = given(h.ipc_mode);
    cfg.pid_mode = given(h.pid_mode);
    cfg.uts_mode = given(h.uts_mode);
    cfg.cgroupns_mode = given(h.cgroupns_mode);
    cfg.container_id_file = given(h.container_id_file);
    cfg.log_driver = given(h.log_config.and_then(|l| l.kind));
    // The endpoint of the network the container starts on gives its
    // aliases and address; other endpoints are connected after the create.
    let mut extra = Vec::new();
    let mut endpoints: Vec<(String, EndpointBody)> = b
        .networking_config
        .and_then(|n| n.endpoints_config)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    if cfg.network_mode.is_none() && endpoints.len() == 1 {
        let net = endpoints[0].0.clone();
        if net != "bridge" {
            cfg.network_mode = Some(net);
        }
    }
    let primary = cfg.network_mode.clone().unwrap_or_else(|| "bridge".into());
    for (net, ep) in endpoints.drain(..) {
        if net == primary {
            cfg.network_aliases = ep.aliases.clone().unwrap_or_default();
            cfg.ipv4_address = ep.ipv4();
        } else {
            extra.push((net, ep));
        }
    }
    if let Some(r) = h.restart_policy {
        let name = r.name.unwrap_or_default();
        if !name.is_empty() && name != "no" {
            if !["always", "unless-stopped", "on-failure"].contains(&name.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
                )));
            }
            cfg.restart = RestartPolicy {
                name,
                maximum_retry_count: r.maximum_retry_count.unwrap_or(0).clamp(0, u32::MAX as i64)
                    as u32,
            };
        }
    }
    for (path, opts) in h.tmpfs.unwrap_or_default() {
        cfg.tmpfs.push(if opts.is_empty() {
            path
        } else {
            format!("{path}:{opts}")
        });
    }
    for m in h.mounts.unwrap_or_default() {
        let spec = mount_spec(m)?;
        if cfg.mounts.iter().any(|x| x.target == spec.target) {
            return Err(ApiError::bad_request(format!(
                "Duplicate mount point: {}",
                spec.target
            )));
        }
        cfg.mounts.push(spec);
    }
    for bind in h.binds.unwrap_or_default() {
        let m = berth_host::mounts::parse_volume(&bind, std::path::Path::new("/"))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        cfg.mounts.push(m);
    }
    for target in b.volumes.unwrap_or_default().into_keys() {
        if !cfg.mounts.iter().any(|m| m.target == target) {
            if !target.starts_with('/') {
                return Err(ApiError::bad_request(format!(
                    "invalid volume specification: '{target}': invalid mount config for type \"volume\": invalid mount path: '{target}' mount path must be absolute"
                )));
            }
            cfg.mounts
                .push(MountSpec::new(MountType::Volume, "", &target));
        }
    }
    for port in b.exposed_ports.unwrap_or_default().into_keys() {
        cfg.expose.push(port);
    }
    for (key, bindings) in h.port_bindings.unwrap_or_default() {
        let (proto, port) = berth_host::ports::split_proto_port(&key);
        let bad = || ApiError::bad_request(format!("invalid port specification: \"{key}\""));
        let container_port: u16 = port.parse().map_err(|_| bad())?;
        let proto = PortProto::parse(proto).ok_or_else(bad)?;
        for b in bindings.unwrap_or_default() {
            let (host_port, host_port_end) = match b.host_port.as_deref().unwrap_or("") {
                "" => (0, 0),
                hp => {
                    let (lo, hi) = berth_host::ports::parse_port_range(hp).map_err(|e| {
                        ApiError::bad_request(format!("invalid port specification: \"{hp}\": {e}"))
                    })?;
                    (lo, if hi == lo { 0 } else { hi })
                }
            };
            cfg.ports.push(PortBinding {
                host_ip: b.host_ip.unwrap_or_default(),
                host_port,
                host_port_end,
                container_port,
                proto,
            });
        }
    }
    Ok((cfg, extra))
}

/// The create endpoint's body handling up to the engine call (JSON, then
/// berth's config), for the fuzz targets and their replay test.
#[doc(hidden)]
pub fn config_from_body(body: &[u8], name: Option<String>) -> Result<ContainerConfig, String> {
    let b: CreateBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    container_config(b, name)
        .map(|(c, _)| c)
        .map_err(|e| e.message)
}

pub(crate) async fn create(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    let q = query(q);
    let b: CreateBody = read_json(body).await?.ok_or_else(|| {
        ApiError::bad_request("config cannot be empty in order to create a container")
    })?;
    let name = q.get("name").filter(|n| !n.is_empty()).cloned();
    let (mut cfg, extra) = container_config(b, name)?;
    let iso = st.iso();
    // Own VMs' named volumes stay held until the create is answered.
    let _held =
        berth_host::mounts::check_placement(iso, &mut cfg).map_err(ApiError::bad_request)?;
    let created = st
        .engine(move |e| {
            let created = e.container_create(cfg)?;
            for (network, ep) in extra {
                let c = berth_host::engine::NetworkConnect {
                    network,
                    container: created.id.clone(),
                    ipv4_address: ep.ipv4(),
                    aliases: ep.aliases.unwrap_or_default(),
                };
                if let Err(err) = e.network_connect(c) {
                    // As dockerd: a create that cannot be completed leaves nothing.
                    let _ = e.container_remove(&created.id, true, true);
                    return Err(err.into());
                }
            }
            Ok(created)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(models::ContainerCreateResponse {
            id: created.id,
            warnings: created.warnings,
        }),
    ))
}

/// `go-units`' HumanDuration, as docker's STATUS column words it.
pub(crate) fn human_duration(secs: i64) -> String {
    let (m, h) = (secs / 60, secs / 3600);
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

fn unix(t: Option<&str>) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t?)
        .ok()
        .map(|d| d.timestamp())
}

fn ago(t: Option<&str>, now: i64) -> String {
    unix(t).map_or(String::new(), |t| human_duration(now - t))
}

/// docker's `Status` text of a list entry.
pub(crate) fn status_text(s: &ContainerSummary, now: i64) -> String {
    match s.status {
        ContainerStatus::Running => format!("Up {}", ago(s.started_at.as_deref(), now)),
        ContainerStatus::Paused => {
            format!("Up {} (Paused)", ago(s.started_at.as_deref(), now))
        }
        ContainerStatus::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code.unwrap_or(0),
            ago(s.finished_at.as_deref(), now)
        ),
        ContainerStatus::Exited => format!(
            "Exited ({}) {} ago",
            s.exit_code.unwrap_or(0),
            ago(s.finished_at.as_deref(), now)
        ),
        ContainerStatus::Dead => "Dead".into(),
        ContainerStatus::Created => "Created".into(),
    }
}

const LIST_FILTERS: &[&str] = &[
    "status",
    "name",
    "id",
    "label",
    "ancestor",
    "exited",
    "health",
    "before",
    "since",
    "network",
    "volume",
    "publish",
    "expose",
    "isolation",
    "is-task",
];

/// Whether `s` passes the filters (values of one key ORed, keys ANDed).
pub(crate) fn matches(s: &ContainerSummary, f: &filters::Filters) -> bool {
    f.iter().filter(|(_, v)| !v.is_empty()).all(|(key, vals)| {
        crate::filters::key_matches(key, vals, |v| match key.as_str() {
            "status" => s.status.as_str() == v,
            "name" => s.name.contains(v.trim_start_matches('/')),
            "id" => s.id.starts_with(v.as_str()),
            "label" => match v.split_once('=') {
                Some((k, lv)) => s.labels.get(k).is_some_and(|x| x == lv),
                None => s.labels.contains_key(v.as_str()),
            },
            "ancestor" => {
                let norm = |x: &str| {
                    berth_protocol::reference::Reference::parse(x)
                        .map(|r| r.to_string())
                        .unwrap_or_else(|_| x.to_string())
                };
                norm(&s.image) == norm(v)
                    || s.image_id == *v
                    || s.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
            }
            "exited" => {
                s.status == ContainerStatus::Exited
                    && s.exit_code.map(|c| c.to_string()).as_deref() == Some(v.as_str())
            }
            "health" => s.health.as_ref().map_or("none", |h| h.status.as_str()) == v,
            // Filters berth does not model yet match everything.
            _ => true,
        })
    })
}

fn port_json(p: &PublishedPort) -> models::Port {
    models::Port {
        ip: Some(p.host_ip.clone()),
        private_port: p.container_port,
        public_port: Some(p.host_port),
        typ: Some(match p.proto {
            PortProto::Tcp => models::PortTypeEnum::TCP,
            PortProto::Udp => models::PortTypeEnum::UDP,
        }),
    }
}

/// A `/containers/json` entry.
pub(crate) fn summary_json(
    s: &ContainerSummary,
    ports: &[PublishedPort],
    now: i64,
) -> models::ContainerSummary {
    models::ContainerSummary {
        id: Some(s.id.clone()),
        names: Some(vec![format!("/{}", s.name)]),
        image: Some(s.image.clone()),
        image_id: Some(s.image_id.clone()),
        command: Some(s.command.clone()),
        created: unix(Some(&s.created)),
        ports: Some(ports.iter().map(port_json).collect()),
        labels: Some(
            s.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        state: Some(s.status.as_str().into()),
        status: Some(status_text(s, now)),
        host_config: Some(models::ContainerSummaryHostConfig {
            network_mode: Some("default".into()),
            annotations: None,
        }),
        network_settings: Some(models::ContainerSummaryNetworkSettings {
            networks: Some(HashMap::new()),
        }),
        mounts: Some(Vec::new()),
        ..Default::default()
    }
}

pub(crate) async fn list(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Vec<models::ContainerSummary>>> {
    let q = query(q);
    let f = filters::parse(q.get("filters").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    filters::check_keys(&f, LIST_FILTERS).map_err(ApiError::bad_request)?;
    let limit = qint(&q, "limit")?.filter(|l| *l > 0);
    let all = qbool(&q, "all") || limit.is_some();
    let size = qbool(&q, "size");
    let (rows, sizes) = st
        .engine_inline(move |e| {
            let mut list = e.container_list(all)?;
            list.retain(|s| matches(s, &f));
            // Newest first, as docker.
            list.sort_by(|a, b| b.created.cmp(&a.created));
            if let Some(l) = limit {
                list.truncate(l as usize);
            }
            let mut rows = Vec::with_capacity(list.len());
            for mut s in list {
                // The list carries each row's ports; an older agent's
                // does not, and each running row is asked for them.
                let ports = match s.ports.take() {
                    Some(p) => p,
                    None if s.status == ContainerStatus::Running => {
                        e.container_ports(&s.id).unwrap_or_default()
                    }
                    None => Vec::new(),
                };
                rows.push((s, ports));
            }
            // `size=1`: SizeRw and SizeRootFs, as `docker ps -s` asks.
            let sizes = if size {
                let list: Vec<_> = rows.iter().map(|(s, _)| s.clone()).collect();
                e.container_sizes(&list)?
                    .into_iter()
                    .map(|(rw, root)| Some((rw as i64, root as i64)))
                    .collect()
            } else {
                vec![None; rows.len()]
            };
            Ok((rows, sizes))
        })
        .await?;
    let now = chrono::Utc::now().timestamp();
    Ok(Json(
        rows.iter()
            .zip(sizes)
            .map(|((s, p), size)| {
                let mut j = summary_json(s, p, now);
                if let Some((rw, root)) = size {
                    j.size_rw = Some(rw);
                    j.size_root_fs = Some(root);
                }
                j
            })
            .collect(),
    ))
}

pub(crate) async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let iso = st.iso();
    let v = st
        .engine(move |e| {
            let d = e.container_inspect(&id)?;
            let info = e.info().ok();
            let image = e.image_inspect(&d.summary.image_id).ok().map(|i| i.config);
            Ok(berth_host::inspect::container_json(
                iso,
                &d,
                image.as_ref(),
                info.as_ref(),
            ))
        })
        .await?;
    Ok(Json(v))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn not_modified() -> Response {
    StatusCode::NOT_MODIFIED.into_response()
}

/// The stop timeout: `t` (`timeout` is a newer spelling).
fn stop_timeout(q: &crate::routes::Query) -> ApiResult<Option<i64>> {
    Ok(qint(q, "t")?.or(qint(q, "timeout")?))
}

pub(crate) async fn stop(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let t = stop_timeout(&q)?;
    st.engine(move |e| {
        let d = e.container_inspect(&id)?;
        if !matches!(
            d.summary.status,
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
        ) {
            return Ok(not_modified());
        }
        e.container_stop(&d.summary.id, t)?;
        Ok(no_content())
    })
    .await
}

pub(crate) async fn restart(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let t = stop_timeout(&q)?;
    st.engine(move |e| {
        e.container_restart(&id, t)?;
        Ok(no_content())
    })
    .await
}

/// A signal by name (`KILL`, `SIGKILL`) or number, as the guest numbers
/// it (not the host: the API also runs on macOS).
pub(crate) use berth_host::platform::parse_linux_signal as parse_signal;

pub(crate) async fn kill(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let sig = match q.get("signal").map(String::as_str) {
        None | Some("") => 9,
        Some(s) => {
            parse_signal(s).ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {s}")))?
        }
    };
    st.engine(move |e| {
        e.container_kill(&id, sig)?;
        // As dockerd: a SIGKILL answers once the container is down, so a
        // `kill` then `rm` does not race.
        if sig == 9 {
            e.container_wait(&id)?;
        }
        Ok(no_content())
    })
    .await
}

pub(crate) async fn pause(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    st.engine(move |e| {
        e.container_pause(&id)?;
        Ok(no_content())
    })
    .await
}

pub(crate) async fn unpause(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    st.engine(move |e| {
        e.container_unpause(&id)?;
        Ok(no_content())
    })
    .await
}

pub(crate) async fn rename(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let name = q
        .get("name")
        .filter(|n| !n.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    st.engine(move |e| {
        e.container_rename(&id, &name)?;
        Ok(no_content())
    })
    .await
}

/// A resize: sent to the container's attached stream when this server
/// relays one, otherwise accepted without effect.
pub(crate) async fn resize(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let (h, w) = (qint(&q, "h")?, qint(&q, "w")?);
    let (Some(h), Some(w)) = (h, w) else {
        return Err(ApiError::bad_request("h and w are required"));
    };
    crate::streams::resize(&st, &id, h, w).await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let (force, volumes) = (qbool(&q, "force"), qbool(&q, "v"));
    st.engine(move |e| {
        e.container_remove(&id, force, volumes)?;
        Ok(no_content())
    })
    .await
}

/// Refuses filters berth does not apply (a prune must not remove more
/// than the client asked for).
pub(crate) fn no_prune_filters(q: &crate::routes::Query, what: &str) -> ApiResult<()> {
    let f = filters::parse(q.get("filters").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    if f.values().any(|v| !v.is_empty()) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} prune filters are not supported by berth yet"),
        ));
    }
    Ok(())
}

/// `POST /containers/prune`: removes every stopped container.
pub(crate) async fn prune(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    no_prune_filters(&q, "container")?;
    let ids = st.engine(|e| Ok(e.container_prune()?)).await?;
    Ok(Json(serde_json::json!({ "ContainersDeleted": ids, "SpaceReclaimed": 0 })).into_response())
}

/// `GET /containers/{id}/top` (`ps_args` is not applied: the engine's
/// columns are fixed).
pub(crate) async fn top(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let t = st
        .engine(move |e| {
            let d = e.container_inspect(&id)?;
            if d.summary.status != ContainerStatus::Running {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("Container {} is not running", d.summary.id),
                ));
            }
            Ok(e.container_top(&d.summary.id)?)
        })
        .await?;
    Ok(Json(serde_json::json!({ "Titles": t.titles, "Processes": t.processes })).into_response())
}

/// `GET /containers/{id}/changes` (`docker diff`): the engine's list in
/// the API's `FilesystemChange` form; `null` when nothing changed, as
/// dockerd answers.
pub(crate) async fn changes(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let list = st.engine(move |e| Ok(e.container_changes(&id)?)).await?;
    let items: Vec<bollard_stubs::models::FilesystemChange> = list
        .into_iter()
        .map(|c| bollard_stubs::models::FilesystemChange {
            path: c.path,
            kind: match c.kind {
                ChangeKind::Modified => bollard_stubs::models::ChangeType::_0,
                ChangeKind::Added => bollard_stubs::models::ChangeType::_1,
                ChangeKind::Deleted => bollard_stubs::models::ChangeType::_2,
            },
        })
        .collect();
    if items.is_empty() {
        return Ok(Json(serde_json::Value::Null).into_response());
    }
    Ok(Json(items).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct UpdateBody {
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    pids_limit: Option<i64>,
    restart_policy: Option<RestartBody>,
}

/// `POST /containers/{id}/update`: memory, CPUs, pids and the restart
/// policy (what the engine can change on a live container).
pub(crate) async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let b: UpdateBody = read_json(body).await?.unwrap_or_default();
    let restart = match b.restart_policy {
        Some(r) if r.name.as_deref().is_some_and(|n| !n.is_empty()) => {
            let name = r.name.unwrap_or_default();
            if !["no", "always", "unless-stopped", "on-failure"].contains(&name.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
                )));
            }
            Some(RestartPolicy {
                name,
                maximum_retry_count: r.maximum_retry_count.unwrap_or(0).clamp(0, u32::MAX as i64)
                    as u32,
            })
        }
        _ => None,
    };
    let u = berth_host::engine::ContainerUpdate {
        memory: b.memory.filter(|m| *m > 0),
        nano_cpus: b.nano_cpus.filter(|n| *n > 0),
        pids_limit: b.pids_limit.filter(|p| *p != 0),
        restart,
    };
    st.engine(move |e| Ok(e.container_update(&id, u)?)).await?;
    Ok(Json(serde_json::json!({ "Warnings": [] })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_as_docker_cli_sends_it() {
        let raw = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,
            "AttachStdout":true,"AttachStderr":true,"ExposedPorts":{"80/tcp":{}},
            "Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["A=1"],
            "Cmd":["echo","hi"],"Image":"busybox","Volumes":{"/data":{}},
            "WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{"k":"v"},
            "HostConfig":{"Binds":["/tmp:/host:ro"],"ContainerIDFile":"",
              "LogConfig":{"Type":"","Config":{}},"NetworkMode":"default",
              "PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"8080"}]},
              "RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":true,
              "VolumeDriver":"","VolumesFrom":null,"CapAdd":null,"CapDrop":null,
              "CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,
              "Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"PidsLimit":null,
              "ConsoleSize":[0,0]},
            "NetworkingConfig":{"EndpointsConfig":{}}}"#;
        let b: CreateBody = serde_json::from_str(raw).unwrap();
        let (c, extra) = container_config(b, Some("web".into())).unwrap();
        assert!(extra.is_empty());
        assert_eq!(c.image, "busybox");
        assert_eq!(c.cmd, Some(vec!["echo".to_string(), "hi".to_string()]));
        assert_eq!(c.entrypoint, None);
        assert!(c.auto_remove);
        assert_eq!(c.network_mode, None);
        assert_eq!(c.restart, RestartPolicy::default());
        assert_eq!(c.mounts.len(), 2);
        assert_eq!(c.mounts[0].source, "/tmp");
        assert!(c.mounts[0].read_only);
        assert_eq!(c.mounts[1].target, "/data");
        assert_eq!(c.ports.len(), 1);
        assert_eq!(c.ports[0].host_port, 8080);
        assert_eq!(c.ports[0].container_port, 80);
        assert_eq!(c.expose, vec!["80/tcp"]);
        assert_eq!(c.memory, None);
    }

    #[test]
    fn namespace_and_lifecycle_fields_map_from_the_body() {
        let raw = r#"{"Image":"busybox","StopTimeout":3,
            "HostConfig":{"IpcMode":"shareable","PidMode":"container:web","UTSMode":"host",
              "CgroupnsMode":"private","ContainerIDFile":"/tmp/cid",
              "LogConfig":{"Type":"none","Config":{}}}}"#;
        let b: CreateBody = serde_json::from_str(raw).unwrap();
        let (c, _) = container_config(b, None).unwrap();
        assert_eq!(c.stop_timeout, Some(3));
        assert_eq!(c.ipc_mode.as_deref(), Some("shareable"));
        assert_eq!(c.pid_mode.as_deref(), Some("container:web"));
        assert_eq!(c.uts_mode.as_deref(), Some("host"));
        assert_eq!(c.cgroupns_mode.as_deref(), Some("private"));
        assert_eq!(c.container_id_file.as_deref(), Some("/tmp/cid"));
        assert_eq!(c.log_driver.as_deref(), Some("none"));
        // docker's CLI sends empty strings for what was not given.
        let raw = r#"{"Image":"busybox","HostConfig":{"IpcMode":"","PidMode":"",
            "UTSMode":"","CgroupnsMode":"","LogConfig":{"Type":"","Config":{}}}}"#;
        let b: CreateBody = serde_json::from_str(raw).unwrap();
        let (c, _) = container_config(b, None).unwrap();
        assert_eq!(
            (
                c.ipc_mode,
                c.pid_mode,
                c.uts_mode,
                c.cgroupns_mode,
                c.log_driver,
                c.stop_timeout
            ),
            (None, None, None, None, None, None)
        );
    }

    #[test]
    fn hostile_create_bodies_are_bad_requests() {
        let bad = |raw: &str| {
            let b: CreateBody = serde_json::from_str(raw).unwrap();
            container_config(b, None).unwrap_err().status
        };
        assert_eq!(bad(r#"{}"#), StatusCode::BAD_REQUEST);
        assert_eq!(
            bad(r#"{"Image":"x","HostConfig":{"PortBindings":{"http/tcp":[]}}}"#),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            bad(r#"{"Image":"x","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            bad(r#"{"Image":"x","Volumes":{"rel":{}}}"#),
            StatusCode::BAD_REQUEST
        );
        // A string Cmd is one argument, as docker's StrSlice.
        let b: CreateBody = serde_json::from_str(r#"{"Image":"x","Cmd":"true"}"#).unwrap();
        assert_eq!(
            container_config(b, None).unwrap().0.cmd,
            Some(vec!["true".into()])
        );
    }

    #[test]
    fn status_texts_and_signals() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(parse_signal("KILL"), Some(9));
        assert_eq!(parse_signal("sigterm"), Some(15));
        assert_eq!(parse_signal("10"), Some(10));
        assert_eq!(parse_signal("BOGUS"), None);
        assert_eq!(parse_signal("0"), None);
    }
}
