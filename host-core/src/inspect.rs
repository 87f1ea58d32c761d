//! docker-shaped inspect objects (`docker inspect` of containers and
//! images, `volume inspect`, `network inspect`), built from what the
//! engine reports.

use crate::image_cache::ImageCache;
use crate::net_settings;
use crate::placement::Isolation;
use berth_protocol::reference::Reference;
use berth_protocol::{
    AgentInfo, ContainerDetails, ContainerStatus, ImageSummary, NetworkInfo, VolumeInfo,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The `repo@digest` names of an image, docker-style (familiar repository).
pub fn repo_digests(id: &str) -> Vec<String> {
    ImageCache::open()
        .map(|c| c.repo_digests(id))
        .unwrap_or_default()
        .iter()
        .filter_map(|rd| Reference::parse(rd).ok())
        .map(|r| r.familiar())
        .collect()
}

/// Docker's image inspect object for an agent image summary.
pub fn image_json(img: &ImageSummary) -> Value {
    let tags: Vec<String> = img
        .tags
        .iter()
        .filter_map(|t| Reference::parse(t).ok())
        .map(|r| r.familiar())
        .collect();
    let cfg = &img.config;
    let s = |k: &str| {
        cfg.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    json!({
        "Id": img.id,
        "RepoTags": tags,
        "RepoDigests": repo_digests(&img.id),
        "Parent": "",
        "Comment": s("comment"),
        "Created": img.created.clone().unwrap_or_default(),
        "DockerVersion": s("docker_version"),
        "Author": s("author"),
        "Config": cfg.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": img.architecture,
        "Variant": cfg.get("variant").cloned().unwrap_or(Value::Null),
        "Os": img.os,
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Name": "overlay2", "Data": null},
        "RootFS": {
            "Type": "layers",
            "Layers": cfg.pointer("/rootfs/diff_ids").cloned().unwrap_or(json!([])),
        },
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"}
    })
}

/// docker's container inspect object.
pub fn container_json(
    iso: Isolation,
    d: &ContainerDetails,
    image: Option<&Value>,
    info: Option<&AgentInfo>,
) -> Value {
    let s = &d.summary;
    let cfg = &d.config;
    let from_image = |k: &str| {
        image
            .and_then(|i| i.pointer(&format!("/config/{k}")))
            .cloned()
            .unwrap_or(Value::Null)
    };
    // Effective Entrypoint and Cmd: an --entrypoint drops the image's Cmd.
    let entrypoint = match &cfg.entrypoint {
        Some(e) if e.is_empty() => Value::Null,
        Some(e) => json!(e),
        None => from_image("Entrypoint"),
    };
    let cmd = match (&cfg.cmd, &cfg.entrypoint) {
        (Some(c), _) => json!(c),
        (None, Some(_)) => Value::Null,
        (None, None) => from_image("Cmd"),
    };
    let dir = info
        .map(|i| format!("{}/containers/{}", i.data_root, s.id))
        .unwrap_or_default();
    let path = |name: &str| {
        if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/{name}")
        }
    };
    let mut log_opts = serde_json::Map::new();
    if let Some(m) = cfg.log_max_size {
        log_opts.insert("max-size".into(), json!(m.to_string()));
    }
    if let Some(n) = cfg.log_max_files {
        log_opts.insert("max-file".into(), json!(n.to_string()));
    }
    let running = matches!(s.status, ContainerStatus::Running | ContainerStatus::Paused);
    let memory = cfg.memory.unwrap_or(0);
    let mut config = json!({
        "Hostname": d.hostname, "Domainname": cfg.domainname.clone().unwrap_or_default(),
        "User": cfg.user.clone().unwrap_or_default(),
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": cfg.tty, "OpenStdin": cfg.open_stdin, "StdinOnce": false,
        "Env": config_env(d, image), "Cmd": cmd, "Image": s.image,
        "Volumes": crate::mounts::config_volumes_json(&cfg.mounts),
        "WorkingDir": cfg.workdir.clone().unwrap_or_default(), "Entrypoint": entrypoint,
        "OnBuild": null, "Labels": s.labels
    });
    if let Some(p) = net_settings::exposed_ports(d) {
        config["ExposedPorts"] = p;
    }
    if let Some(sig) = &cfg.stop_signal {
        config["StopSignal"] = json!(sig);
    }
    if let Some(h) = &cfg.healthcheck {
        config["Healthcheck"] = json!(h);
    }
    // Set only when given, as docker (`omitempty`).
    if let Some(t) = cfg.stop_timeout {
        config["StopTimeout"] = json!(t);
    }
    let mut host = json!({
        "Binds": crate::mounts::binds_json(&cfg.mounts),
        "ContainerIDFile": cfg.container_id_file.clone().unwrap_or_default(),
        "LogConfig": {"Type": cfg.log_driver.as_deref().unwrap_or("json-file"), "Config": log_opts},
        "RestartPolicy": {
            "Name": if cfg.restart.name.is_empty() { "no" } else { cfg.restart.name.as_str() },
            "MaximumRetryCount": cfg.restart.maximum_retry_count
        },
        "AutoRemove": cfg.auto_remove, "VolumeDriver": "",
        "VolumesFrom": if cfg.volumes_from.is_empty() { Value::Null } else { json!(cfg.volumes_from) },
        "CapAdd": if cfg.cap_add.is_empty() { Value::Null } else { json!(cfg.cap_add) },
        "CapDrop": if cfg.cap_drop.is_empty() { Value::Null } else { json!(cfg.cap_drop) },
        "CgroupnsMode": match cfg.cgroupns_mode.as_deref() {
            Some(m) => m,
            None if info.is_some_and(|i| i.cgroup_version == 2) => "private",
            None => "host",
        },
        "GroupAdd": if cfg.group_add.is_empty() { Value::Null } else { json!(cfg.group_add) },
        "IpcMode": cfg.ipc_mode.as_deref().unwrap_or("private"),
        "Cgroup": "", "OomScoreAdj": 0, "PidMode": cfg.pid_mode.clone().unwrap_or_default(),
        "Privileged": cfg.privileged, "ReadonlyRootfs": cfg.read_only,
        "SecurityOpt": security_opt(cfg), "UTSMode": cfg.uts_mode.clone().unwrap_or_default(), "UsernsMode": "",
        "ShmSize": cfg.shm_size.filter(|s| *s > 0).unwrap_or(67_108_864),
        "Runtime": "berth", "ConsoleSize": [0, 0],
        "Isolation": format!("{iso:?}").to_lowercase()
    });
    // Resources (split in two: one json! this size exceeds the macro
    // recursion limit).
    let resources = json!({
        "CpuShares": cfg.cpu_shares.unwrap_or(0), "Memory": memory, "NanoCpus": cfg.nano_cpus.unwrap_or(0),
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": null, "BlkioDeviceWriteBps": null,
        "BlkioDeviceReadIOps": null, "BlkioDeviceWriteIOps": null,
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": cfg.cpuset_cpus.clone().unwrap_or_default(), "CpusetMems": "", "Devices": devices_json(&cfg.devices), "DeviceCgroupRules": null,
        "DeviceRequests": null, "KernelMemory": 0, "KernelMemoryTCP": 0,
        "MemoryReservation": cfg.memory_reservation.unwrap_or(0),
        "MemorySwap": match cfg.memory_swap { Some(s) if s != 0 => s, _ if memory > 0 => memory * 2, _ => 0 },
        "MemorySwappiness": null, "OomKillDisable": cfg.oom_kill_disable, "PidsLimit": cfg.pids_limit,
        "Ulimits": ulimits_json(&cfg.ulimits), "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        // A privileged container has none (docker: null).
        "MaskedPaths": if cfg.privileged { Value::Null } else { json!([
            "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
            "/sys/firmware", "/sys/devices/virtual/powercap"
        ]) },
        "ReadonlyPaths": if cfg.privileged { Value::Null } else {
            json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"])
        }
    });
    if let (Some(h), Value::Object(r)) = (host.as_object_mut(), resources) {
        h.extend(r);
        h.extend(net_settings::host_config(cfg, &s.name));
    }
    // Set only when given, as docker.
    if let Some(m) = crate::mounts::host_mounts_json(&cfg.mounts) {
        host["Mounts"] = m;
    }
    if cfg.init {
        host["Init"] = json!(true);
    }
    if !cfg.sysctls.is_empty() {
        host["Sysctls"] = json!(cfg.sysctls);
    }
    if !cfg.tmpfs.is_empty() {
        host["Tmpfs"] = json!(cfg
            .tmpfs
            .iter()
            .map(|t| {
                let (p, o) = t.split_once(':').unwrap_or((t, ""));
                (p.to_string(), o.to_string())
            })
            .collect::<std::collections::BTreeMap<_, _>>());
    }
    let network = net_settings::network_settings(d);
    let mut state = json!({
        "Status": s.status.as_str(), "Running": running,
        "Paused": s.status == ContainerStatus::Paused,
        "Restarting": s.status == ContainerStatus::Restarting,
        "OOMKilled": false, "Dead": s.status == ContainerStatus::Dead,
        "Pid": d.pid.unwrap_or(0), "ExitCode": s.exit_code.unwrap_or(0), "Error": "",
        "StartedAt": s.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        "FinishedAt": s.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
    });
    if let Some(h) = &s.health {
        state["Health"] = json!(h);
    }
    json!({
        "Id": s.id, "Created": s.created, "Path": d.path, "Args": d.args,
        "State": state,
        "Image": s.image_id,
        "ResolvConfPath": path("etc/resolv.conf"), "HostnamePath": path("etc/hostname"),
        "HostsPath": path("etc/hosts"), "LogPath": path("container.log"),
        "Name": format!("/{}", s.name), "RestartCount": s.restart_count,
        "Driver": "overlay2", "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "ExecIDs": null,
        "HostConfig": host,
        "GraphDriver": {"Data": null, "Name": "overlay2"},
        "Mounts": crate::mounts::mount_points_json(&d.mounts),
        "Config": config,
        "NetworkSettings": network
    })
}

/// Config.Env as docker shows it: the `run` environment first, then the
/// image's, without what the runtime adds (HOSTNAME, TERM for a tty).
/// `HostConfig.Ulimits` (docker's field order; null when none).
fn ulimits_json(u: &[berth_protocol::Ulimit]) -> Value {
    if u.is_empty() {
        return Value::Null;
    }
    json!(u
        .iter()
        .map(|u| json!({"Name": u.name, "Hard": u.hard, "Soft": u.soft}))
        .collect::<Vec<_>>())
}

/// `HostConfig.Devices` (an empty list when none, as docker).
fn devices_json(d: &[berth_protocol::DeviceMapping]) -> Value {
    json!(d
        .iter()
        .map(|d| json!({
            "PathOnHost": d.path_on_host,
            "PathInContainer": d.path_in_container,
            "CgroupPermissions": d.cgroup_permissions
        }))
        .collect::<Vec<_>>())
}

/// `HostConfig.SecurityOpt`: the options as given; docker's daemon adds
/// `label=disable` to a privileged container's.
fn security_opt(cfg: &berth_protocol::ContainerConfig) -> Value {
    let mut opts = cfg.security_opt.clone();
    if cfg.privileged && !opts.iter().any(|o| o == "label=disable") {
        opts.push("label=disable".into());
    }
    if opts.is_empty() {
        Value::Null
    } else {
        json!(opts)
    }
}

fn config_env(d: &ContainerDetails, image: Option<&Value>) -> Vec<String> {
    let key = |e: &str| e.split('=').next().unwrap_or(e).to_string();
    let user: Vec<String> = d.config.env.iter().map(|e| key(e)).collect();
    let image_keys: Vec<String> = image
        .and_then(|i| i.pointer("/config/Env"))
        .and_then(|e| e.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).map(key).collect())
        .unwrap_or_default();
    let added = |e: &String| {
        let k = key(e);
        (k == "HOSTNAME" || (k == "TERM" && d.config.tty))
            && !user.contains(&k)
            && !image_keys.contains(&k)
    };
    let (mut first, rest): (Vec<String>, Vec<String>) = d
        .env
        .iter()
        .filter(|e| !added(e))
        .cloned()
        .partition(|e| user.contains(&key(e)));
    first.sort_by_key(|e| user.iter().position(|k| *k == key(e)));
    first.extend(rest);
    first
}

/// docker's `volume inspect` object, fields in its order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeJson<'a> {
    created_at: &'a str,
    driver: &'a str,
    labels: Option<&'a BTreeMap<String, String>>,
    mountpoint: &'a str,
    name: &'a str,
    options: Option<&'a BTreeMap<String, String>>,
    scope: &'a str,
}

pub fn volume_json(v: &VolumeInfo) -> VolumeJson<'_> {
    VolumeJson {
        created_at: &v.created_at,
        driver: &v.driver,
        labels: (!v.labels.is_empty()).then_some(&v.labels),
        mountpoint: &v.mountpoint,
        name: &v.name,
        options: (!v.options.is_empty()).then_some(&v.options),
        scope: "local",
    }
}

/// docker's `network inspect` object (API `network.Inspect`), fields in
/// its order.
#[derive(Serialize)]
pub struct NetworkJson<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Id")]
    id: &'a str,
    #[serde(rename = "Created")]
    created: &'a str,
    #[serde(rename = "Scope")]
    scope: &'static str,
    #[serde(rename = "Driver")]
    driver: &'a str,
    #[serde(rename = "EnableIPv4")]
    enable_ipv4: bool,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: IpamJson<'a>,
    #[serde(rename = "Internal")]
    internal: bool,
    #[serde(rename = "Attachable")]
    attachable: bool,
    #[serde(rename = "Ingress")]
    ingress: bool,
    #[serde(rename = "ConfigFrom")]
    config_from: ConfigFromJson,
    #[serde(rename = "ConfigOnly")]
    config_only: bool,
    #[serde(rename = "Containers")]
    containers: BTreeMap<&'a str, MemberJson<'a>>,
    #[serde(rename = "Options")]
    options: &'a BTreeMap<String, String>,
    #[serde(rename = "Labels")]
    labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
pub struct IpamJson<'a> {
    #[serde(rename = "Driver")]
    driver: &'static str,
    /// null for the predefined networks, `{}` for those `create` made.
    #[serde(rename = "Options")]
    options: Option<BTreeMap<String, String>>,
    #[serde(rename = "Config")]
    config: Vec<IpamConfigJson<'a>>,
}

#[derive(Serialize)]
pub struct IpamConfigJson<'a> {
    #[serde(rename = "Subnet", skip_serializing_if = "str::is_empty")]
    subnet: &'a str,
    #[serde(rename = "Gateway", skip_serializing_if = "str::is_empty")]
    gateway: &'a str,
}

#[derive(Serialize)]
pub struct ConfigFromJson {
    #[serde(rename = "Network")]
    network: &'static str,
}

#[derive(Serialize)]
pub struct MemberJson<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "EndpointID")]
    endpoint_id: &'a str,
    #[serde(rename = "MacAddress")]
    mac_address: &'a str,
    #[serde(rename = "IPv4Address")]
    ipv4_address: &'a str,
    #[serde(rename = "IPv6Address")]
    ipv6_address: &'static str,
}

pub fn network_json(n: &NetworkInfo) -> NetworkJson<'_> {
    let config = if n.subnet.is_empty() {
        Vec::new()
    } else {
        vec![IpamConfigJson {
            subnet: &n.subnet,
            gateway: &n.gateway,
        }]
    };
    NetworkJson {
        name: &n.name,
        id: &n.id,
        created: &n.created_at,
        scope: "local",
        driver: &n.driver,
        enable_ipv4: true,
        enable_ipv6: false,
        ipam: IpamJson {
            driver: "default",
            options: (!n.builtin).then(BTreeMap::new),
            config,
        },
        internal: n.internal,
        attachable: false,
        ingress: false,
        config_from: ConfigFromJson { network: "" },
        config_only: false,
        containers: n
            .containers
            .iter()
            .map(|(id, m)| {
                (
                    id.as_str(),
                    MemberJson {
                        name: &m.name,
                        endpoint_id: &m.endpoint_id,
                        mac_address: &m.mac_address,
                        ipv4_address: &m.ipv4_address,
                        ipv6_address: "",
                    },
                )
            })
            .collect(),
        options: &n.options,
        labels: &n.labels,
    }
}

/// One row of `docker history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub created: String,
    pub created_by: String,
    /// Bytes of regular files in the layer this step made (0 for steps
    /// that made none).
    pub size: u64,
    pub comment: String,
}

/// The image's history (its config's `history`), newest first, with each
/// layer's size as docker shows it: the regular file bytes in the layer,
/// read from the host cache's blobs (the compressed size where a blob is
/// not there to read).
pub fn image_history(img: &ImageSummary) -> Vec<HistoryEntry> {
    let layer_sizes: Vec<u64> = ImageCache::open()
        .ok()
        .and_then(|c| {
            let rec = c.resolve(&img.id)?;
            Some(
                rec.layers
                    .iter()
                    .map(|l| {
                        c.blob_path(&l.digest)
                            .ok()
                            .and_then(|p| layer_content_size(&p).ok())
                            .unwrap_or(l.size)
                    })
                    .collect(),
            )
        })
        .unwrap_or_default();
    let empty = Vec::new();
    let hist = img
        .config
        .get("history")
        .and_then(|h| h.as_array())
        .unwrap_or(&empty);
    let mut rows = Vec::new();
    let mut layer = 0;
    for h in hist {
        let empty_layer = h
            .get("empty_layer")
            .and_then(|e| e.as_bool())
            .unwrap_or(false);
        let size = if empty_layer {
            0
        } else {
            let s = layer_sizes.get(layer).copied().unwrap_or(0);
            layer += 1;
            s
        };
        let field = |k: &str| h.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        rows.push(HistoryEntry {
            created: field("created"),
            created_by: field("created_by"),
            size,
            comment: field("comment"),
        });
    }
    rows.reverse();
    rows
}

/// Sum of the regular file sizes in a (possibly gzip-compressed) layer tar.
fn layer_content_size(path: &std::path::Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    f.seek(std::io::SeekFrom::Start(0))?;
    let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            f,
        )))
    } else {
        Box::new(std::io::BufReader::new(f))
    };
    let mut ar = tar::Archive::new(reader);
    let mut total = 0;
    for e in ar.entries()? {
        let e = e?;
        if matches!(
            e.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            total += e.size();
        }
    }
    Ok(total)
}
