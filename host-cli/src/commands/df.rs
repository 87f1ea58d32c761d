//! `berth system df [-v] [--format]`: disk usage as docker's CLI prints
//! it: a summary per type, or (`-v`) images, containers, volumes and the
//! build cache one by one.
//!
//! Sizes: an image's unpacked size; a container's writable layer and a
//! volume as the engine measures them where the files live (inside the VM
//! for VM placements), counted as docker counts them. An image's SHARED SIZE is the size
//! of the largest other image its layer chain starts with, or its own
//! size when another image is built on it (docker sums shared layers;
//! the two agree for images stacked in one line).

use crate::commands::connect;
use crate::fmt::{
    ago, command_column, human_size, human_size4, json_field, table, Template, TemplateValue,
};
use crate::placement::Isolation;
use anyhow::Result;
use berth_protocol::reference::Reference;
use berth_protocol::ImageSummary;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
    /// Format output using a custom template ("json" for JSON)
    #[arg(long)]
    format: Option<String>,
}

fn diff_ids(i: &ImageSummary) -> Vec<&str> {
    i.config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn reclaim(reclaimable: u64, total: u64) -> String {
    match (reclaimable * 100).checked_div(total) {
        Some(pct) => format!("{} ({pct}%)", human_size4(reclaimable)),
        None => human_size4(reclaimable),
    }
}

pub fn run(iso: Isolation, a: &DfArgs) -> Result<i32> {
    let mut e = connect(iso)?;
    let images = e.image_list()?;
    let containers = e.container_list(true)?;
    let volumes = e.volume_list()?;
    let chains: Vec<Vec<&str>> = images.iter().map(diff_ids).collect();
    let shared: Vec<u64> = images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let mut s = 0;
            for (j, other) in images.iter().enumerate() {
                if i == j || chains[j].is_empty() {
                    continue;
                }
                if chains[i].starts_with(&chains[j]) {
                    s = s.max(other.size.min(img.size));
                } else if chains[j].starts_with(&chains[i]) && !chains[i].is_empty() {
                    s = img.size;
                }
            }
            s
        })
        .collect();
    let users = |id: &str| containers.iter().filter(|c| c.image_id == id).count();
    // Sizes measured by the engine where the files live (in the VM for VM
    // placements): writable layers and volumes.
    let usage = e.disk_usage(true, true)?;
    let rw =
        |c: &berth_protocol::ContainerSummary| usage.containers.get(&c.id).copied().unwrap_or(0);
    let vol_sizes: Vec<u64> = volumes
        .iter()
        .map(|v| usage.volumes.get(&v.name).copied().unwrap_or(0))
        .collect();

    // The summary rows.
    // Layers counted once: the images no other image is built on, each
    // layer chain once.
    let mut seen = std::collections::HashSet::new();
    let layers_size: u64 = images
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            !chains
                .iter()
                .enumerate()
                .any(|(j, c)| j != *i && c.len() > chains[*i].len() && c.starts_with(&chains[*i]))
        })
        .filter(|(i, _)| seen.insert(chains[*i].clone()))
        .map(|(_, img)| img.size)
        .sum();
    let used: u64 = images
        .iter()
        .enumerate()
        .filter(|(_, i)| users(&i.id) > 0)
        .map(|(k, i)| i.size - shared[k].min(i.size))
        .sum();
    let active_images = images.iter().filter(|i| users(&i.id) > 0).count();
    let running = |c: &berth_protocol::ContainerSummary| {
        matches!(
            c.status,
            berth_protocol::ContainerStatus::Running | berth_protocol::ContainerStatus::Paused
        )
    };
    let ctr_total: u64 = containers.iter().map(rw).sum();
    let ctr_idle: u64 = containers.iter().filter(|c| !running(c)).map(rw).sum();
    let vol_total: u64 = vol_sizes.iter().sum();
    let vol_unused: u64 = volumes
        .iter()
        .zip(&vol_sizes)
        .filter(|(v, _)| v.used_by.is_empty())
        .map(|(_, s)| *s)
        .sum();
    let summary = [
        json!({"Type": "Images", "TotalCount": images.len().to_string(),
               "Active": active_images.to_string(), "Size": human_size4(layers_size),
               "Reclaimable": reclaim(layers_size.saturating_sub(used), layers_size)}),
        json!({"Type": "Containers", "TotalCount": containers.len().to_string(),
               "Active": containers.iter().filter(|c| running(c)).count().to_string(),
               "Size": human_size4(ctr_total), "Reclaimable": reclaim(ctr_idle, ctr_total)}),
        json!({"Type": "Local Volumes", "TotalCount": volumes.len().to_string(),
               "Active": volumes.iter().filter(|v| !v.used_by.is_empty()).count().to_string(),
               "Size": human_size4(vol_total), "Reclaimable": reclaim(vol_unused, vol_total)}),
        json!({"Type": "Build Cache", "TotalCount": "0", "Active": "0",
               "Size": "0B", "Reclaimable": "0B"}),
    ];

    if !a.verbose {
        let format = a.format.as_deref().unwrap_or("table");
        if format == "json" {
            for row in &summary {
                println!("{row}");
            }
            return Ok(0);
        }
        let format = if format == "table" {
            "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
        } else {
            format
        };
        return render(format, &summary, "*formatter.diskUsageContext");
    }

    // -v: one section per type.
    let image_rows: Vec<Value> = images
        .iter()
        .enumerate()
        .flat_map(|(k, img)| {
            let mut names: Vec<(String, String)> = img
                .tags
                .iter()
                .filter_map(|t| Reference::parse(t).ok())
                .map(|r| {
                    let fam = r.familiar();
                    match fam.rsplit_once(':') {
                        Some((a, b)) => (a.to_string(), b.to_string()),
                        None => (fam.clone(), "<none>".into()),
                    }
                })
                .collect();
            if names.is_empty() {
                names.push(("<none>".into(), "<none>".into()));
            }
            let sh = shared[k].min(img.size);
            names
                .into_iter()
                .map(|(repo, tag)| {
                    json!({
                        "Repository": repo, "Tag": tag,
                        "ID": img.id.trim_start_matches("sha256:").chars().take(12).collect::<String>(),
                        "CreatedSince": ago(img.created.as_deref()),
                        "CreatedAt": crate::fmt::go_time_secs(img.created.as_deref().unwrap_or_default()),
                        "Digest": "", "VirtualSize": human_size(img.size),
                        "Size": human_size(img.size), "SharedSize": human_size(sh),
                        "UniqueSize": human_size(img.size - sh),
                        "Containers": users(&img.id).to_string(),
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let container_rows: Vec<Value> = containers
        .iter()
        .map(|c| {
            let local = volumes
                .iter()
                .filter(|v| v.used_by.iter().any(|u| u == &c.id || u == &c.name))
                .count();
            json!({
                "ID": c.id.chars().take(12).collect::<String>(),
                "Image": c.image, "Command": command_column(&c.command, true),
                "LocalVolumes": local.to_string(), "Size": human_size(rw(c)),
                "RunningFor": ago(Some(&c.created)),
                "Status": crate::commands::ps::status_text(c), "Names": c.name,
            })
        })
        .collect();
    let volume_rows: Vec<Value> = volumes
        .iter()
        .zip(&vol_sizes)
        .map(|(v, s)| {
            json!({"Name": v.name, "Links": v.used_by.len().to_string(), "Size": human_size4(*s)})
        })
        .collect();
    if let Some(f) = a.format.as_deref().filter(|f| *f != "table") {
        let whole = json!({
            "Images": image_rows, "Containers": container_rows,
            "Volumes": volume_rows, "BuildCache": [],
        });
        if f == "json" {
            println!("{whole}");
            return Ok(0);
        }
        return render(f, &[whole], "*formatter.diskUsageContext");
    }
    let cells = |rows: &[Value], keys: &[&str]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| {
                keys.iter()
                    .map(|k| r[*k].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .collect()
    };
    println!("Images space usage:\n");
    print!(
        "{}",
        table(
            &[
                "REPOSITORY",
                "TAG",
                "IMAGE ID",
                "CREATED",
                "SIZE",
                "SHARED SIZE",
                "UNIQUE SIZE",
                "CONTAINERS"
            ],
            &cells(
                &image_rows,
                &[
                    "Repository",
                    "Tag",
                    "ID",
                    "CreatedSince",
                    "Size",
                    "SharedSize",
                    "UniqueSize",
                    "Containers"
                ]
            )
        )
    );
    println!("\nContainers space usage:\n");
    print!(
        "{}",
        table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "LOCAL VOLUMES",
                "SIZE",
                "CREATED",
                "STATUS",
                "NAMES"
            ],
            &cells(
                &container_rows,
                &[
                    "ID",
                    "Image",
                    "Command",
                    "LocalVolumes",
                    "Size",
                    "RunningFor",
                    "Status",
                    "Names"
                ]
            )
        )
    );
    println!("\nLocal Volumes space usage:\n");
    print!(
        "{}",
        table(
            &["VOLUME NAME", "LINKS", "SIZE"],
            &cells(&volume_rows, &["Name", "Links", "Size"])
        )
    );
    println!("\nBuild cache usage: 0B\n");
    print!(
        "{}",
        table(
            &[
                "CACHE ID",
                "CACHE TYPE",
                "SIZE",
                "CREATED",
                "LAST USED",
                "USAGE",
                "SHARED"
            ],
            &[]
        )
    );
    Ok(0)
}

fn df_header(field: &str) -> String {
    match field {
        "TotalCount" => "TOTAL".into(),
        f => f.to_uppercase(),
    }
}

fn render(format: &str, rows: &[Value], type_name: &str) -> Result<i32> {
    let t = match Template::parse(format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("template parsing error: {e}");
            return Ok(1);
        }
    };
    let items: Vec<((), Value)> = rows.iter().map(|r| ((), r.clone())).collect();
    let lookup = |_: &(), row: &Value, f: &str, _: Option<&str>| match json_field(row, f) {
        TemplateValue::Missing => None,
        v => Some(v),
    };
    match t.render_list(&items, &df_header, type_name, &lookup) {
        Ok(out) => {
            print!("{out}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("template parsing error: {e}");
            Ok(1)
        }
    }
}
