//! `berth ps` and `berth inspect`.

use crate::commands::{connect, net_settings};
use crate::fmt::{
    ago, command_column, human_duration, json_field, since, tab_lines, Template, TemplateValue,
};
use crate::placement::Isolation;
use anyhow::Result;
use berth_protocol::{
    AgentInfo, ContainerDetails, ContainerStatus, ContainerSummary, Request, Response,
};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Format output: "table" or "json"
    #[arg(long)]
    format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long)]
    last: Option<usize>,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    latest: bool,
    /// Filter output based on conditions provided (status=, name=, label=, ancestor=, id=, exited=)
    #[arg(short, long)]
    filter: Vec<String>,
}

/// One `--filter key=value`; values of the same key are ORed, keys ANDed.
fn matches(s: &ContainerSummary, filters: &[(String, String)]) -> bool {
    let keys: std::collections::BTreeSet<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.into_iter().all(|key| {
        filters
            .iter()
            .filter(|(k, _)| k == key)
            .any(|(_, v)| match key {
                "status" => s.status.as_str() == v,
                "name" => s.name.contains(v.trim_start_matches('/')),
                "id" => s.id.starts_with(v.as_str()),
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => s.labels.get(lk).is_some_and(|x| x == lv),
                    None => s.labels.contains_key(v.as_str()),
                },
                "ancestor" => {
                    let norm = berth_protocol::reference::Reference::parse(v)
                        .map(|r| r.to_string())
                        .unwrap_or_else(|_| v.clone());
                    s.image == *v
                        || berth_protocol::reference::Reference::parse(&s.image)
                            .map(|r| r.to_string())
                            .is_ok_and(|r| r == norm)
                        || s.image_id == *v
                        || s.image_id
                            .trim_start_matches("sha256:")
                            .starts_with(v.as_str())
                }
                "health" => {
                    let h = s.health.as_ref().map_or("none", |h| h.status.as_str());
                    h == v
                }
                "exited" => {
                    s.status == ContainerStatus::Exited
                        && s.exit_code.map(|c| c.to_string()).as_deref() == Some(v.as_str())
                }
                _ => false,
            })
    })
}

/// Docker's STATUS column.
pub fn status_text(s: &ContainerSummary) -> String {
    match s.status {
        ContainerStatus::Running | ContainerStatus::Paused => format!(
            "Up {}{}",
            s.started_at
                .as_deref()
                .and_then(since)
                .map(human_duration)
                .unwrap_or_default(),
            match (&s.status, &s.health) {
                (ContainerStatus::Paused, _) => " (Paused)".to_string(),
                (_, Some(h)) if h.status == berth_protocol::health::STARTING => {
                    " (health: starting)".to_string()
                }
                (_, Some(h)) => format!(" ({})", h.status),
                _ => String::new(),
            }
        ),
        ContainerStatus::Restarting => format!(
            "Restarting ({}) {}",
            s.exit_code.unwrap_or(0),
            ago(s.finished_at.as_deref())
        ),
        ContainerStatus::Exited | ContainerStatus::Dead => {
            format!(
                "Exited ({}) {}",
                s.exit_code.unwrap_or(0),
                ago(s.finished_at.as_deref())
            )
        }
        ContainerStatus::Created => "Created".into(),
    }
}

pub fn run(iso: Isolation, a: &PsArgs) -> Result<i32> {
    let mut filters = Vec::new();
    for f in &a.filter {
        match f.split_once('=') {
            Some((k, v))
                if [
                    "status", "name", "label", "ancestor", "id", "exited", "health",
                ]
                .contains(&k) =>
            {
                if k == "health" && !["starting", "healthy", "unhealthy", "none"].contains(&v) {
                    eprintln!(
                        "Error response from daemon: Unrecognised filter value for health: {v}"
                    );
                    return Ok(1);
                }
                if k == "status"
                    && ![
                        "created",
                        "restarting",
                        "running",
                        "removing",
                        "paused",
                        "exited",
                        "dead",
                    ]
                    .contains(&v)
                {
                    eprintln!("Error response from daemon: Invalid filter 'status={v}'");
                    return Ok(1);
                }
                filters.push((k.to_string(), v.to_string()));
            }
            _ => {
                eprintln!("Error response from daemon: Invalid filter '{f}'");
                return Ok(1);
            }
        }
    }
    let all = a.all
        || a.last.is_some()
        || a.latest
        || filters.iter().any(|(k, _)| k == "status" || k == "exited");
    let mut conn = connect(iso)?;
    let Response::Containers(mut list) = conn.call(Request::ContainerList { all })? else {
        anyhow::bail!("unexpected response")
    };
    list.retain(|s| matches(s, &filters));
    if let Some(n) = a.last.or(a.latest.then_some(1)) {
        list.truncate(n);
    }
    let format = match a.format.as_deref() {
        None | Some("") | Some("table") if a.quiet => "{{.ID}}",
        None | Some("") | Some("table") => DEFAULT_FORMAT,
        Some(f) => f,
    };
    let template = match format {
        "json" => None,
        f => match Template::parse(f) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("template parsing error: {e}");
                return Ok(1);
            }
        },
    };
    // The summaries carry no ports or networks: ask for the details of
    // the containers whose columns need them.
    let whole = format == "json" || format.contains("{{json .}}");
    let wants = |field: &str| whole || format.contains(field);
    let rows: Vec<Value> = list
        .iter()
        .map(|s| {
            let needed = (wants(".Ports")
                && matches!(s.status, ContainerStatus::Running | ContainerStatus::Paused))
                || wants(".Networks");
            let details = needed
                .then(
                    || match conn.call(Request::ContainerInspect { id: s.id.clone() }) {
                        Ok(Response::Container(d)) => Some(d),
                        _ => None,
                    },
                )
                .flatten();
            ps_json(s, details.as_deref(), !a.no_trunc)
        })
        .collect();
    let Some(t) = template else {
        rows.iter().for_each(|r| println!("{r}"));
        return Ok(0);
    };
    let mut lines = Vec::new();
    if t.table {
        lines.push(t.header(&ps_header));
    }
    for (s, row) in list.iter().zip(&rows) {
        match t.render(
            &|f, arg| ps_field(s, row, f, arg),
            row,
            "*formatter.ContainerContext",
        ) {
            Ok(l) => lines.push(l),
            Err(e) => {
                eprintln!("template parsing error: {e}");
                return Ok(1);
            }
        }
    }
    if t.table {
        print!("{}", tab_lines(&lines));
    } else {
        lines.iter().for_each(|l| println!("{l}"));
    }
    Ok(0)
}

/// docker's default `ps` table.
const DEFAULT_FORMAT: &str =
    "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}";

/// docker's `ps --format json` object (its `ContainerContext` fields);
/// `details` gives the ports and networks.
fn ps_json(s: &ContainerSummary, details: Option<&ContainerDetails>, trunc: bool) -> Value {
    let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let id = if trunc { &s.id[..12] } else { s.id.as_str() };
    json!({
        "Command": command_column(&s.command, trunc), "CreatedAt": s.created, "ID": id,
        "Image": s.image, "Labels": labels.join(","), "LocalVolumes": "0", "Mounts": "",
        "Names": s.name,
        "Networks": details.map(net_settings::ps_networks).unwrap_or_default(),
        "Ports": details.map(net_settings::ps_ports).unwrap_or_default(),
        "RunningFor": ago(Some(&s.created)),
        "Size": "0B", "State": s.status.as_str(), "Status": status_text(s)
    })
}

/// A `ps` template field: the JSON object's, or a label.
fn ps_field(
    s: &ContainerSummary,
    row: &Value,
    field: &str,
    arg: Option<&str>,
) -> Option<TemplateValue> {
    match (field, arg) {
        ("Label", Some(k)) => Some(TemplateValue::Text(
            s.labels.get(k).cloned().unwrap_or_default(),
        )),
        (_, Some(_)) => None,
        (f, None) => row
            .get(f)
            .and_then(Value::as_str)
            .map(|t| TemplateValue::Text(t.to_string())),
    }
}

/// docker's table headers for the `ps` fields.
fn ps_header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "CreatedAt" => "CREATED AT".into(),
        "RunningFor" => "CREATED".into(),
        "LocalVolumes" => "LOCAL VOLUMES".into(),
        f => f.to_uppercase(),
    }
}

/// `inspect`: containers first, then images, like docker; `-f` renders
/// each through a template (or as one line of JSON with `json`).
pub fn inspect(iso: Isolation, names: &[String], format: Option<&str>) -> Result<i32> {
    let template = match format {
        None | Some("") | Some("json") => None,
        Some(f) => match Template::parse(f) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("template parsing error: {e}");
                return Ok(64);
            }
        },
    };
    let mut c = connect(iso)?;
    let mut out = Vec::new();
    let mut code = 0;
    let mut info = None;
    for n in names {
        if let Ok(Response::Container(mut d)) = c.call(Request::ContainerInspect { id: n.clone() })
        {
            if iso == Isolation::Shared {
                // Shared folders are at /host_mnt + host path in the
                // machine: show the host path, as the user gave it.
                for s in d
                    .mounts
                    .iter_mut()
                    .filter(|m| m.kind == berth_protocol::MountType::Bind)
                    .map(|m| &mut m.source)
                    .chain(
                        d.config
                            .mounts
                            .iter_mut()
                            .filter(|m| m.kind == berth_protocol::MountType::Bind)
                            .map(|m| &mut m.source),
                    )
                {
                    if let Some(h) = crate::shares::host_path(s) {
                        *s = h.to_string();
                    }
                }
            }
            if info.is_none() {
                info = match c.call(Request::Info)? {
                    Response::Info(i) => Some(i),
                    _ => None,
                };
            }
            let image = match c.call(Request::ImageInspect {
                reference: d.summary.image_id.clone(),
            }) {
                Ok(Response::Image(img)) => Some(img.config),
                _ => None,
            };
            out.push(container_json(iso, &d, image.as_ref(), info.as_ref()));
            continue;
        }
        match c.call(Request::ImageInspect {
            reference: n.clone(),
        }) {
            Ok(Response::Image(img)) => out.push(crate::commands::image::inspect_json(&img)),
            _ => {
                eprintln!("Error: No such object: {n}");
                code = 1;
            }
        }
    }
    match (&template, format) {
        (Some(t), _) => {
            for v in &out {
                match t.render(&|f, arg| inspect_field(v, f, arg), v, "") {
                    Ok(l) => println!("{l}"),
                    Err(e) => {
                        eprintln!("template parsing error: {e}");
                        return Ok(1);
                    }
                }
            }
        }
        (None, Some("json")) => println!("{}", serde_json::to_string(&out)?),
        (None, _) => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(code)
}

/// An `inspect -f` field: a path into the inspect object
/// (`State.Status`, `NetworkSettings.Networks`); a missing one prints as
/// docker's raw-JSON fallback prints it.
fn inspect_field(v: &Value, field: &str, arg: Option<&str>) -> Option<TemplateValue> {
    arg.is_none().then(|| json_field(v, field))
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

/// docker's container inspect object.
fn container_json(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::net_settings::sample_details;
    use berth_protocol::{EndpointInfo, PortProto, PublishedPort};

    fn running_web() -> ContainerDetails {
        let mut d = sample_details(ContainerStatus::Running);
        d.networks.insert(
            "bridge".into(),
            EndpointInfo {
                network_name: "bridge".into(),
                ..Default::default()
            },
        );
        d.exposed_ports = vec!["80/tcp".into()];
        d.ports = ["0.0.0.0", "::"]
            .iter()
            .map(|ip| PublishedPort {
                container_port: 80,
                proto: PortProto::Tcp,
                host_ip: ip.to_string(),
                host_port: 8080,
            })
            .collect();
        d
    }

    #[test]
    fn health_in_status_and_filter() {
        let mut d = sample_details(ContainerStatus::Running);
        let st = |d: &ContainerDetails| status_text(&d.summary);
        let f = |d: &ContainerDetails, v: &str| matches(&d.summary, &[("health".into(), v.into())]);
        assert!(!st(&d).contains('('));
        assert!(f(&d, "none") && !f(&d, "healthy"));
        for (status, suffix) in [
            ("starting", " (health: starting)"),
            ("healthy", " (healthy)"),
            ("unhealthy", " (unhealthy)"),
        ] {
            d.summary.health = Some(berth_protocol::Health {
                status: status.into(),
                ..Default::default()
            });
            assert!(
                st(&d).starts_with("Up ") && st(&d).ends_with(suffix),
                "{}",
                st(&d)
            );
            assert!(f(&d, status) && !f(&d, "none"));
        }
        // Paused wins; stopped containers show no health.
        d.summary.status = ContainerStatus::Paused;
        assert!(st(&d).ends_with(" (Paused)"));
        d.summary.status = ContainerStatus::Exited;
        assert!(st(&d).starts_with("Exited ("));
        // inspect: State.Health and Config.Healthcheck as docker's.
        d.config.healthcheck = Some(berth_protocol::HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            retries: 2,
            ..Default::default()
        });
        let v = container_json(Isolation::Native, &d, None, None);
        assert_eq!(v["State"]["Health"]["Status"], "unhealthy");
        assert_eq!(v["State"]["Health"]["FailingStreak"], 0);
        assert_eq!(
            v["Config"]["Healthcheck"],
            json!({"Test": ["CMD", "true"], "Retries": 2})
        );
    }

    #[test]
    fn ps_ports_and_networks() {
        let d = running_web();
        let row = ps_json(&d.summary, Some(&d), true);
        assert_eq!(row["Ports"], "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp");
        assert_eq!(row["Networks"], "bridge");
        assert_eq!(row["ID"], "0123456789ab");
        let t = Template::parse("{{.Names}} {{.Ports}} {{.Networks}} {{.Label \"x\"}}").unwrap();
        let out = t
            .render(&|f, a| ps_field(&d.summary, &row, f, a), &row, "x")
            .unwrap();
        assert_eq!(out, "web 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp bridge ");
        // Without details (a container not running): empty columns.
        let row = ps_json(&d.summary, None, false);
        assert_eq!(
            (row["Ports"].as_str(), row["Networks"].as_str()),
            (Some(""), Some(""))
        );
        let t = Template::parse(DEFAULT_FORMAT).unwrap();
        assert_eq!(
            t.header(&ps_header),
            "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES"
        );
        let t = Template::parse("table {{.Names}}\\t{{.Networks}}").unwrap();
        assert_eq!(t.header(&ps_header), "NAMES\tNETWORKS");
    }

    #[test]
    fn inspect_networking_like_docker_28() {
        let mut d = running_web();
        d.config.network_mode = None;
        d.config.domainname = Some("corp".into());
        d.config.dns = vec!["8.8.8.8".into()];
        let v = container_json(Isolation::Native, &d, None, None);
        assert_eq!(v["HostConfig"]["NetworkMode"], "bridge");
        assert_eq!(v["HostConfig"]["PortBindings"], json!({}));
        assert_eq!(v["HostConfig"]["Dns"], json!(["8.8.8.8"]));
        assert_eq!(v["HostConfig"]["ExtraHosts"], Value::Null);
        assert_eq!(v["Config"]["Domainname"], "corp");
        assert_eq!(v["Config"]["ExposedPorts"], json!({"80/tcp": {}}));
        assert!(v["Config"].get("NetworkDisabled").is_none());
        assert_eq!(
            v["NetworkSettings"]["Ports"]["80/tcp"][1],
            json!({"HostIp": "::", "HostPort": "8080"})
        );
        assert!(v["NetworkSettings"]["Networks"]["bridge"].is_object());
        let field = |f: &str| match inspect_field(&v, f, None) {
            Some(TemplateValue::Text(t)) => t,
            Some(TemplateValue::Json(j)) => j.to_string(),
            Some(TemplateValue::Missing) => "<no value>".into(),
            None => "?".into(),
        };
        assert_eq!(field("State.Status"), "running");
        assert_eq!(field("HostConfig.NetworkMode"), "bridge");
        assert_eq!(field("NetworkSettings.Nope"), "<no value>");
        let t = Template::parse("{{.Nope.X}} {{json .Nope}} {{json .Config.Domainname}}").unwrap();
        assert_eq!(
            t.render(&|f, a| inspect_field(&v, f, a), &v, "").unwrap(),
            "<no value> null \"corp\""
        );
    }
}
