//! `berth image …` management verbs that have no top-level twin of their
//! own here: `inspect`, `history`, `prune` (plus aliases of the top-level
//! ones), and the docker-shaped image JSON `inspect` prints.

use crate::client::ClientError;
use crate::commands::connect;
use crate::engine::Engine;
use crate::fmt::{ago, human_size, json_row_field};
use crate::image_cache::ImageCache;
use crate::placement::Isolation;
use anyhow::{bail, Result};
use std::io::{BufRead, IsTerminal, Write};

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Display detailed information on one or more images
    Inspect {
        /// Format output using a custom template: 'json', or a Go template
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show the history of an image
    History(HistoryArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// List images
    Ls(crate::commands::images::ImagesArgs),
    /// Download an image from a registry
    Pull(crate::commands::pull::PullArgs),
    /// Upload an image to a registry
    Push(crate::commands::push::PushArgs),
    /// Save images to a tar archive
    Save(crate::commands::save::SaveArgs),
    /// Load images from a tar archive
    Load(crate::commands::load::LoadArgs),
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE',
    /// 'json', or a Go template
    #[arg(long)]
    format: Option<String>,
    image: String,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn run(iso: Isolation, c: &ImageCommand) -> Result<i32> {
    match c {
        ImageCommand::Inspect { format, images } => inspect(iso, images, format.as_deref()),
        ImageCommand::History(a) => history(iso, a),
        ImageCommand::Prune(a) => prune(iso, a),
        ImageCommand::Ls(a) => crate::commands::images::list(iso, a),
        ImageCommand::Pull(a) => crate::commands::pull::run(iso, a),
        ImageCommand::Push(a) => crate::commands::push::run(iso, a),
        ImageCommand::Save(a) => crate::commands::save::run(iso, a),
        ImageCommand::Load(a) => crate::commands::load::run(iso, a),
    }
}

fn inspect(iso: Isolation, names: &[String], format: Option<&str>) -> Result<i32> {
    let template = match format {
        None | Some("") | Some("json") => None,
        Some(f) => match crate::fmt::Template::parse(f) {
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
    for n in names {
        match c.image_inspect(n) {
            Ok(img) => out.push(berth_host::inspect::image_json(&img)),
            _ => {
                eprintln!("Error: No such image: {n}");
                code = 1;
            }
        }
    }
    let printed = crate::commands::ps::print_inspect(&out, template.as_ref(), format)?;
    Ok(if printed != 0 { printed } else { code })
}

pub fn history(iso: Isolation, a: &HistoryArgs) -> Result<i32> {
    let img = match connect(iso)?.image_inspect(&a.image) {
        Ok(img) => img,
        Err(e @ ClientError::Unexpected(_)) => return Err(e.into()),
        Err(e) => bail!("No such image: {} ({e})", a.image),
    };
    let format = match a.format.as_deref() {
        None | Some("") | Some("table") if a.quiet => "{{.ID}}",
        None | Some("") | Some("table") => {
            "table {{.ID}}\\t{{.CreatedSince}}\\t{{.CreatedBy}}\\t{{.Size}}\\t{{.Comment}}"
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
    let full_id = img.id.clone();
    let id = if a.no_trunc {
        full_id.clone()
    } else {
        full_id.trim_start_matches("sha256:")[..12].to_string()
    };
    let rows: Vec<((), serde_json::Value)> = berth_host::inspect::image_history(&img)
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let id = if i == 0 { &id } else { "<missing>" };
            ((), history_row(id, &h, a.human, !a.no_trunc))
        })
        .collect();
    let Some(t) = template else {
        for (_, j) in &rows {
            println!("{j}");
        }
        return Ok(0);
    };
    match t.render_list(
        &rows,
        &history_header,
        "*formatter.historyContext",
        &|_, row, f, arg| json_row_field(row, f, arg, true),
    ) {
        Ok(out) => print!("{out}"),
        Err(e) => {
            eprintln!("template parsing error: {e}");
            return Ok(1);
        }
    }
    Ok(0)
}

/// One row of `history` as its `{{json .}}` object: docker's history
/// formatter fields, as text (`--human` and truncation applied). The
/// template fields are read from it.
fn history_row(
    id: &str,
    h: &berth_host::inspect::HistoryEntry,
    human: bool,
    trunc: bool,
) -> serde_json::Value {
    let created_at = rfc3339_secs(&h.created);
    // docker replaces tabs, then cuts at 45 characters with an ellipsis.
    let by = h.created_by.replace('\t', " ");
    let created_by = if trunc && by.chars().count() > 45 {
        format!("{}…", by.chars().take(44).collect::<String>())
    } else {
        by
    };
    let created_since = if human {
        ago(Some(h.created.as_str()))
    } else {
        created_at.clone()
    };
    let size = if human {
        human_size(h.size)
    } else {
        h.size.to_string()
    };
    serde_json::json!({
        "Comment": h.comment, "CreatedAt": created_at, "CreatedBy": created_by,
        "CreatedSince": created_since, "ID": id, "Size": size,
    })
}

/// docker's table headers for the history fields.
fn history_header(field: &str) -> String {
    match field {
        "ID" => "IMAGE".into(),
        "CreatedSince" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "CreatedBy" => "CREATED BY".into(),
        f => f.to_uppercase(),
    }
}

/// An RFC 3339 time to the second in the local zone, as Go's
/// `time.Unix(s, 0).Format(time.RFC3339)` prints it (`Z` for UTC).
fn rfc3339_secs(ts: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => t
            .with_timezone(&chrono::Local)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        Err(_) => ts.to_string(),
    }
}

/// Removes the images no container uses: the dangling ones, or all of
/// them with `all` (`image prune`, `system prune`). The lines `rmi`
/// prints for each, and the bytes freed.
pub fn prune_images(c: &mut Engine, all: bool) -> Result<(Vec<String>, u64)> {
    let images = c.image_list()?;
    let used: Vec<String> = match c.container_list(true) {
        Ok(cs) => cs.into_iter().map(|c| c.image_id).collect(),
        Err(ClientError::Unexpected(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    // Intermediate build images (parents of other images) are not
    // dangling: they stay, as the build cache, unless -a.
    let parents: Vec<String> = images.iter().filter_map(|i| i.parent.clone()).collect();
    let cache = ImageCache::open()?;
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for img in images {
        let unused = !used.contains(&img.id);
        let dangling = img.tags.is_empty() && !parents.contains(&img.id);
        if !(unused && (dangling || all)) {
            continue;
        }
        // Only images no container uses get here; -a removes them whatever
        // their tags.
        match c.image_remove(&img.id, all) {
            Ok(lines) => {
                reclaimed += img.size;
                let _ = cache.forget(&img.id);
                deleted.extend(lines);
            }
            Err(ClientError::Unexpected(_)) => {}
            Err(e) => eprintln!("berth: could not remove {}: {e}", &img.id),
        }
    }
    Ok((deleted, reclaimed))
}

fn prune(iso: Isolation, a: &PruneArgs) -> Result<i32> {
    if !a.force {
        let what = if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut l = String::new();
        if std::io::stdin().is_terminal() {
            std::io::stdin().lock().read_line(&mut l)?;
        }
        if !matches!(l.trim(), "y" | "Y" | "yes") {
            eprintln!();
            return Ok(0);
        }
    }
    let mut c = connect(iso)?;
    let (deleted, reclaimed) = prune_images(&mut c, a.all)?;
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for d in &deleted {
            println!("{d}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(reclaimed));
    Ok(0)
}

/// `rmi`: the engine removes tags and images; the repository digests the
/// host cache keeps go with them as docker's do. When the last tag of a
/// repository leaves an image, that repository's digests are untagged too
/// (`Untagged: repo@sha256:…`), and a deleted image keeps none.
pub fn rmi(iso: Isolation, images: &[String], force: bool) -> Result<i32> {
    let mut c = connect(iso)?;
    let cache = crate::image_cache::ImageCache::open().ok();
    let mut code = 0;
    for i in images {
        let before = c.image_inspect(i).ok();
        match c.image_remove(i, force) {
            Ok(lines) => {
                let lines = match (&before, &cache) {
                    (Some(img), Some(cache)) => cache.with_digest_untags(img, i, lines),
                    _ => lines,
                };
                lines.iter().for_each(|l| println!("{l}"));
            }
            Err(ClientError::Unexpected(_)) => {}
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}
