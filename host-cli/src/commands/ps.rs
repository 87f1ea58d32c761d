//! `berth ps` and `berth inspect`.

use crate::commands::{connect, net_settings};
use crate::fmt::{
    ago, command_column, go_time_secs, human_duration, json_field, since, Template, TemplateValue,
};
use crate::placement::Isolation;
use anyhow::Result;
use berth_host::inspect;
use berth_protocol::{ContainerDetails, ContainerStatus, ContainerSummary};
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
    /// Display total file sizes
    #[arg(short, long)]
    size: bool,
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
    // Own VMs have no engine in common: their keepers' records.
    let mut conn = if iso.own_vm() {
        None
    } else {
        Some(connect(iso)?)
    };
    let mut list = match conn.as_mut() {
        Some(c) => c.container_list(all)?,
        None => berth_host::vm_fleet::list()
            .iter()
            .map(|e| e.summary())
            .filter(|s| all || s.status == ContainerStatus::Running)
            .collect(),
    };
    list.retain(|s| matches(s, &filters));
    if let Some(n) = a.last.or(a.latest.then_some(1)) {
        list.truncate(n);
    }
    let format = match a.format.as_deref() {
        None | Some("") | Some("table") if a.quiet => "{{.ID}}",
        None | Some("") | Some("table") if a.size => SIZE_FORMAT,
        None | Some("") | Some("table") => DEFAULT_FORMAT,
        Some(f) => f,
    };
    let template = match crate::fmt::list_template(format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    // The summaries carry no ports or networks: ask for the details of
    // the containers whose columns need them.
    let whole = format == "json" || format.contains("{{json .}}");
    let wants = |field: &str| whole || format.contains(field);
    // docker measures sizes for -s and for any format that shows them.
    let sizes = if let (true, Some(conn)) = (a.size || wants(".Size"), conn.as_mut()) {
        let sizes = conn.container_sizes(&list)?;
        list.iter()
            .zip(sizes)
            .map(|(s, (rw, root))| (s.id.clone(), size_text(rw, root)))
            .collect()
    } else {
        std::collections::HashMap::new()
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|s| {
            let needed = (wants(".Ports")
                && matches!(s.status, ContainerStatus::Running | ContainerStatus::Paused))
                || wants(".Networks");
            let details = match conn.as_mut() {
                Some(conn) => needed.then(|| conn.container_inspect(&s.id).ok()).flatten(),
                None => None,
            };
            let mut row = ps_json(s, details.as_deref(), !a.no_trunc);
            if conn.is_none() {
                // The host side of an own VM's ports, from its record.
                row["Ports"] =
                    berth_host::ports::ps_column(s.ports.as_deref().unwrap_or_default(), &[])
                        .into();
            }
            if let Some(size) = sizes.get(&s.id) {
                row["Size"] = size.clone().into();
            }
            row
        })
        .collect();
    let Some(t) = template else {
        rows.iter().for_each(|r| println!("{r}"));
        return Ok(0);
    };
    let items: Vec<(&ContainerSummary, Value)> = list.iter().zip(rows).collect();
    match t.render_list(
        &items,
        &ps_header,
        "*formatter.ContainerContext",
        &|s, row, f, arg| ps_field(s, row, f, arg),
    ) {
        Ok(out) => print!("{out}"),
        Err(e) => {
            eprintln!("template parsing error: {e}");
            return Ok(1);
        }
    }
    Ok(0)
}

/// docker's default `ps` table.
const DEFAULT_FORMAT: &str =
    "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}";

/// docker's `ps -s` table: the default one and SIZE.
const SIZE_FORMAT: &str =
    "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}\\t{{.Size}}";

/// docker's SIZE cell: the writable layer, then the whole file system.
fn size_text(rw: u64, virtual_size: u64) -> String {
    use crate::fmt::human_size;
    if virtual_size > 0 {
        format!("{} (virtual {})", human_size(rw), human_size(virtual_size))
    } else {
        human_size(rw)
    }
}

/// docker's `ps --format json` object (its `ContainerContext` fields);
/// `details` gives the ports and networks.
fn ps_json(s: &ContainerSummary, details: Option<&ContainerDetails>, trunc: bool) -> Value {
    let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let id = if trunc { &s.id[..12] } else { s.id.as_str() };
    json!({
        "Command": command_column(&s.command, trunc), "CreatedAt": go_time_secs(&s.created), "ID": id,
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
    if iso.own_vm() {
        return inspect_own_vm(names, template.as_ref(), format);
    }
    let mut c = connect(iso)?;
    let mut out = Vec::new();
    let mut code = 0;
    let mut info = None;
    // Several containers: their names to whole ids from one list, so that
    // the engine reads one record for each instead of finding each name
    // among all of them. Anything else (an id prefix, an image) is looked
    // up as given.
    let ids: std::collections::HashMap<String, String> = if names.len() > 1 {
        match c.container_list(true) {
            Ok(list) => list.into_iter().map(|s| (s.name, s.id)).collect(),
            Err(e @ crate::client::ClientError::Unexpected(_)) => return Err(e.into()),
            Err(_) => Default::default(),
        }
    } else {
        Default::default()
    };
    let mut images: std::collections::HashMap<String, Option<Value>> = Default::default();
    for n in names {
        let key = ids.get(n.trim_start_matches('/')).unwrap_or(n);
        if let Ok(mut d) = c.container_inspect(key) {
            if iso.shares_host_folders() {
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
                info = match c.info() {
                    Ok(i) => Some(i),
                    Err(crate::client::ClientError::Unexpected(_)) => None,
                    Err(e) => return Err(e.into()),
                };
            }
            let image = match images.get(&d.summary.image_id) {
                Some(i) => i.clone(),
                None => {
                    let i = c
                        .image_inspect(&d.summary.image_id)
                        .ok()
                        .map(|img| img.config);
                    images.insert(d.summary.image_id.clone(), i.clone());
                    i
                }
            };
            out.push(inspect::container_json(
                iso,
                &d,
                image.as_ref(),
                info.as_ref(),
            ));
            continue;
        }
        match c.image_inspect(n) {
            Ok(img) => out.push(inspect::image_json(&img)),
            _ => {
                eprintln!("Error: No such object: {n}");
                code = 1;
            }
        }
    }
    let printed = print_inspect(&out, template.as_ref(), format)?;
    Ok(if printed != 0 { printed } else { code })
}

/// `inspect` of detached own-VM containers: each from its VM's engine
/// while it runs, from the details its keeper saved once stopped; the
/// published ports' host side and bind sources' host paths
/// (`vm_fleet::for_host`).
fn inspect_own_vm(
    names: &[String],
    template: Option<&Template>,
    format: Option<&str>,
) -> Result<i32> {
    let mut out = Vec::new();
    let mut code = 0;
    for n in names {
        match berth_host::vm_fleet::find(n).map(|e| e.details()) {
            Ok(Some(s)) => out.push(inspect::container_json(
                Isolation::Vm,
                &s.details,
                s.image.as_ref(),
                s.info.as_ref(),
            )),
            Err(e @ berth_host::vm_fleet::FindError::Ambiguous(_)) => {
                eprintln!("Error response from daemon: {e}");
                code = 1;
            }
            Ok(None) | Err(_) => {
                eprintln!("Error: No such object: {n}");
                code = 1;
            }
        }
    }
    let printed = print_inspect(&out, template, format)?;
    Ok(if printed != 0 { printed } else { code })
}

/// Prints inspect objects as docker does: pretty JSON, one line of JSON
/// (`json`), or each through `template`. Returns the exit code.
pub fn print_inspect(
    out: &[Value],
    template: Option<&Template>,
    format: Option<&str>,
) -> Result<i32> {
    match (template, format) {
        (Some(t), _) => {
            for v in out {
                match t.render(&|f, arg| inspect_field(v, f, arg), v, "") {
                    Ok(l) => println!("{l}"),
                    Err(e) => {
                        eprintln!("template parsing error: {e}");
                        return Ok(1);
                    }
                }
            }
        }
        (None, Some("json")) => println!("{}", serde_json::to_string(out)?),
        (None, _) => println!("{}", serde_json::to_string_pretty(out)?),
    }
    Ok(0)
}

/// An `inspect -f` field: a path into the inspect object
/// (`State.Status`, `NetworkSettings.Networks`); a missing one prints as
/// docker's raw-JSON fallback prints it.
fn inspect_field(v: &Value, field: &str, arg: Option<&str>) -> Option<TemplateValue> {
    arg.is_none().then(|| json_field(v, field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_host::net_settings::sample_details;
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
        let v = inspect::container_json(Isolation::Native, &d, None, None);
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
        let v = inspect::container_json(Isolation::Native, &d, None, None);
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
