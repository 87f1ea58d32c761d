//! `berth ps` and `berth inspect`.

use crate::commands::connect;
use crate::fmt::{ago, command_column, human_duration, since, table};
use crate::placement::Isolation;
use anyhow::Result;
use berth_protocol::{ContainerStatus, ContainerSummary, Request, Response};
use serde_json::json;

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
            if s.status == ContainerStatus::Paused {
                " (Paused)"
            } else {
                ""
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
                if ["status", "name", "label", "ancestor", "id", "exited"].contains(&k) =>
            {
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
    let Response::Containers(mut list) = connect(iso)?.call(Request::ContainerList { all })? else {
        anyhow::bail!("unexpected response")
    };
    list.retain(|s| matches(s, &filters));
    if let Some(n) = a.last.or(a.latest.then_some(1)) {
        list.truncate(n);
    }
    let id = |s: &ContainerSummary| {
        if a.no_trunc {
            s.id.clone()
        } else {
            s.id[..12].to_string()
        }
    };
    match a.format.as_deref() {
        Some("json") => {
            for s in &list {
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "{}",
                    json!({
                        "Command": command_column(&s.command, !a.no_trunc), "CreatedAt": s.created, "ID": id(s),
                        "Image": s.image, "Labels": labels.join(","), "LocalVolumes": "0", "Mounts": "",
                        "Names": s.name, "Networks": "", "Ports": "", "RunningFor": ago(Some(&s.created)),
                        "Size": "0B", "State": s.status.as_str(), "Status": status_text(s)
                    })
                );
            }
        }
        Some(f) if f != "table" => anyhow::bail!("unsupported --format {f:?} (use table or json)"),
        _ if a.quiet => list.iter().for_each(|s| println!("{}", id(s))),
        _ => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        id(s),
                        s.image.clone(),
                        command_column(&s.command, !a.no_trunc),
                        ago(Some(&s.created)),
                        status_text(s),
                        String::new(),
                        s.name.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "CONTAINER ID",
                        "IMAGE",
                        "COMMAND",
                        "CREATED",
                        "STATUS",
                        "PORTS",
                        "NAMES"
                    ],
                    &rows
                )
            );
        }
    }
    Ok(0)
}

/// `inspect`: containers first, then images, like docker.
pub fn inspect(iso: Isolation, names: &[String]) -> Result<i32> {
    let mut c = connect(iso)?;
    let mut out = Vec::new();
    let mut code = 0;
    for n in names {
        if let Ok(Response::Container(d)) = c.call(Request::ContainerInspect { id: n.clone() }) {
            let s = &d.summary;
            out.push(json!({
                "Id": s.id, "Created": s.created, "Path": d.path, "Args": d.args,
                "State": {
                    "Status": s.status.as_str(), "Running": matches!(s.status, ContainerStatus::Running | ContainerStatus::Paused),
                    "Paused": s.status == ContainerStatus::Paused, "Restarting": s.status == ContainerStatus::Restarting,
                    "OOMKilled": false, "Dead": s.status == ContainerStatus::Dead,
                    "Pid": d.pid.unwrap_or(0), "ExitCode": s.exit_code.unwrap_or(0),
                    "StartedAt": s.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                    "FinishedAt": s.finished_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
                },
                "Image": s.image_id, "Name": format!("/{}", s.name), "RestartCount": s.restart_count,
                "Config": {
                    "Hostname": d.hostname, "User": d.config.user.clone().unwrap_or_default(), "Tty": d.config.tty,
                    "OpenStdin": d.config.open_stdin, "Env": d.env, "Cmd": d.config.cmd, "Image": s.image,
                    "WorkingDir": d.config.workdir.clone().unwrap_or_default(), "Entrypoint": d.config.entrypoint,
                    "Labels": s.labels
                },
                "HostConfig": {
                    "Memory": d.config.memory.unwrap_or(0), "NanoCpus": d.config.nano_cpus.unwrap_or(0),
                    "PidsLimit": d.config.pids_limit, "AutoRemove": d.config.auto_remove,
                    "ReadonlyRootfs": d.config.read_only, "Init": d.config.init,
                    "Tmpfs": d.config.tmpfs.iter().map(|t| {
                        let (p, o) = t.split_once(':').unwrap_or((t, ""));
                        (p.to_string(), o.to_string())
                    }).collect::<std::collections::BTreeMap<_, _>>(),
                    "RestartPolicy": {"Name": if d.config.restart.name.is_empty() { "no" } else { d.config.restart.name.as_str() }, "MaximumRetryCount": d.config.restart.maximum_retry_count},
                    "LogConfig": {"Type": "json-file", "Config": {}},
                    "Isolation": format!("{iso:?}").to_lowercase()
                },
                "Mounts": [], "NetworkSettings": {"Networks": {}}
            }));
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
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(code)
}
