//! docker-shaped inspect objects (`docker inspect` of containers and
//! images), built from what the engine reports.

use crate::image_cache::ImageCache;
use crate::net_settings;
use crate::placement::Isolation;
use berth_protocol::reference::Reference;
use berth_protocol::{AgentInfo, ContainerDetails, ContainerStatus, ImageSummary};
use serde_json::{json, Value};

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
    let mut host = json!({
        "Binds": crate::mounts::binds_json(&cfg.mounts), "ContainerIDFile": "",
        "LogConfig": {"Type": "json-file", "Config": log_opts},
        "RestartPolicy": {
            "Name": if cfg.restart.name.is_empty() { "no" } else { cfg.restart.name.as_str() },
            "MaximumRetryCount": cfg.restart.maximum_retry_count
        },
        "AutoRemove": cfg.auto_remove, "VolumeDriver": "",
        "VolumesFrom": if cfg.volumes_from.is_empty() { Value::Null } else { json!(cfg.volumes_from) },
        "CapAdd": null, "CapDrop": null,
        "CgroupnsMode": if info.is_some_and(|i| i.cgroup_version == 2) { "private" } else { "host" },
        "GroupAdd": null,
        "IpcMode": "private", "Cgroup": "", "OomScoreAdj": 0, "PidMode": "",
        "Privileged": false, "ReadonlyRootfs": cfg.read_only,
        "SecurityOpt": null, "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864,
        "Runtime": "berth", "ConsoleSize": [0, 0],
        "Isolation": format!("{iso:?}").to_lowercase()
    });
    // Resources (split in two: one json! this size exceeds the macro
    // recursion limit).
    let resources = json!({
        "CpuShares": 0, "Memory": memory, "NanoCpus": cfg.nano_cpus.unwrap_or(0),
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": null, "BlkioDeviceWriteBps": null,
        "BlkioDeviceReadIOps": null, "BlkioDeviceWriteIOps": null,
        "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": null,
        "DeviceRequests": null, "KernelMemory": 0, "KernelMemoryTCP": 0,
        "MemoryReservation": 0, "MemorySwap": if memory > 0 { memory * 2 } else { 0 },
        "MemorySwappiness": null, "OomKillDisable": false, "PidsLimit": cfg.pids_limit,
        "Ulimits": null, "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": [
            "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
            "/sys/firmware", "/sys/devices/virtual/powercap"
        ],
        "ReadonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
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
