//! `berth images`.

use crate::commands::connect;
use crate::fmt::{ago, go_time_secs, human_size, json_row_field, table, Template};
use crate::placement::Isolation;
use anyhow::Result;
use berth_protocol::reference::Reference;
use berth_protocol::ImageSummary;
use serde_json::json;

#[derive(clap::Args)]
pub struct ImagesArgs {
    /// Show all images
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Format output: "table" or "json"
    #[arg(long)]
    format: Option<String>,
    /// Filter output based on conditions provided (dangling, label,
    /// reference, before, since)
    #[arg(short, long)]
    filter: Vec<String>,
    /// Show only images of this repository
    repository: Option<String>,
}

pub fn list(iso: Isolation, a: &ImagesArgs) -> Result<i32> {
    let filters = match parse_filters(&a.filter) {
        Ok(f) => f,
        Err((m, code)) => {
            eprintln!("{m}");
            return Ok(code);
        }
    };
    let mut c = connect(iso)?;
    // before= and since= name an image: its creation time is the bound.
    let mut bounds = Vec::new();
    for (k, v) in filters
        .iter()
        .filter(|(k, _)| k == "before" || k == "since")
    {
        match c.image_inspect(v) {
            Ok(img) => bounds.push((k.clone(), img.created.unwrap_or_default())),
            Err(_) => {
                eprintln!("Error response from daemon: No such image: {v}");
                return Ok(1);
            }
        }
    }
    let images = c.image_list()?;
    // Intermediate images (untagged build steps that other images were
    // derived from, whether or not those pass the filters) are listed
    // only with -a, as docker does.
    let parents: std::collections::HashSet<&str> =
        images.iter().filter_map(|i| i.parent.as_deref()).collect();
    let images: Vec<&ImageSummary> = images
        .iter()
        .filter(|i| a.all || !i.tags.is_empty() || !parents.contains(i.id.as_str()))
        .filter(|i| image_matches(i, &filters, &bounds))
        .collect();
    let mut rows = Vec::new();
    let repo_digests: std::collections::HashMap<String, Vec<String>> = images
        .iter()
        .map(|i| (i.id.clone(), berth_host::inspect::repo_digests(&i.id)))
        .collect();
    // The digest a repository knows the image by, for --digests.
    let digest_of = |id: &str, repo: &str| -> String {
        repo_digests
            .get(id)
            .and_then(|l| {
                l.iter()
                    .find(|rd| rd.split('@').next() == Some(repo))
                    .and_then(|rd| rd.split('@').nth(1))
            })
            .unwrap_or("<none>")
            .to_string()
    };
    for img in images.iter().copied() {
        let short = img.id.trim_start_matches("sha256:")[..12].to_string();
        let mut names: Vec<(String, String)> = img
            .tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .map(|r| {
                let fam = r.familiar();
                let (repo, tag) = fam
                    .rsplit_once(':')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .unwrap_or((fam.clone(), "<none>".into()));
                (repo, tag)
            })
            .collect();
        // Pulled by digest only: docker lists the repository, tag <none>.
        if names.is_empty() {
            for rd in repo_digests.get(&img.id).into_iter().flatten() {
                if let Some((repo, _)) = rd.split_once('@') {
                    if !names.iter().any(|(r, _)| r == repo) {
                        names.push((repo.to_string(), "<none>".into()));
                    }
                }
            }
        }
        let references: Vec<&str> = filters
            .iter()
            .filter(|(k, _)| k == "reference")
            .map(|(_, v)| v.as_str())
            .collect();
        if !references.is_empty() {
            // Only the tags a reference filter matches are listed.
            names.retain(|(repo, tag)| references.iter().any(|p| reference_matches(p, repo, tag)));
            if names.is_empty() {
                continue;
            }
        }
        if names.is_empty() {
            names.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in names {
            if let Some(filter) = &a.repository {
                let want = Reference::parse(filter).ok().map(|r| r.familiar());
                let want_repo = want
                    .as_deref()
                    .and_then(|w| w.rsplit_once(':').map(|x| x.0.to_string()))
                    .unwrap_or_else(|| filter.clone());
                if repo != want_repo && repo != *filter {
                    continue;
                }
            }
            rows.push((repo, tag, short.clone(), img));
        }
    }
    let row_json = |repo: &String, tag: &String, short: &String, img: &ImageSummary| {
        json!({
            "Containers": "N/A", "CreatedAt": go_time_secs(img.created.as_deref().unwrap_or_default()),
            "CreatedSince": ago(img.created.as_deref()), "Digest": digest_of(&img.id, repo), "ID": short,
            "Repository": repo, "SharedSize": "N/A", "Size": human_size(img.size), "Tag": tag,
            "UniqueSize": "N/A", "VirtualSize": human_size(img.size)
        })
    };
    match a.format.as_deref() {
        Some("json") => {
            for (repo, tag, short, img) in &rows {
                println!("{}", row_json(repo, tag, short, img));
            }
        }
        // A Go template, as docker's `--format '{{.Repository}}:{{.Tag}}'`.
        Some(f) if f != "table" => {
            let t = match Template::parse(f) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("template parsing error: {e}");
                    return Ok(1);
                }
            };
            let items: Vec<((), serde_json::Value)> = rows
                .iter()
                .map(|(repo, tag, short, img)| ((), row_json(repo, tag, short, img)))
                .collect();
            let lookup = |_: &(), row: &serde_json::Value, f: &str, arg: Option<&str>| {
                json_row_field(row, f, arg, false)
            };
            match t.render_list(&items, &images_header, "*formatter.imageContext", &lookup) {
                Ok(out) => print!("{out}"),
                Err(e) => {
                    eprintln!("template parsing error: {e}");
                    return Ok(1);
                }
            }
        }
        _ if a.quiet => {
            let mut seen = Vec::new();
            for (_, _, short, _) in &rows {
                if !seen.contains(short) {
                    println!("{short}");
                    seen.push(short.clone());
                }
            }
        }
        _ => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|(repo, tag, short, img)| {
                    let mut row = vec![repo.clone(), tag.clone()];
                    if a.digests {
                        row.push(digest_of(&img.id, repo));
                    }
                    row.extend([
                        short.clone(),
                        ago(img.created.as_deref()),
                        human_size(img.size),
                    ]);
                    row
                })
                .collect();
            let headers: &[&str] = if a.digests {
                &["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
            } else {
                &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
            };
            print!("{}", table(headers, &cells));
        }
    }
    Ok(0)
}

/// `--filter` as given: `(key, value)` pairs.
type Filters = Vec<(String, String)>;

/// Checks `--filter` entries as docker does: a bad shape exits 125 before
/// anything is asked, an unknown key or bad `dangling` value is the
/// daemon's error (exit 1).
fn parse_filters(list: &[String]) -> Result<Filters, (String, i32)> {
    let mut out = Vec::new();
    for f in list {
        let Some((k, v)) = f.split_once('=') else {
            return Err((
                format!(
                    "invalid argument {f:?} for \"-f, --filter\" flag: bad format of filter (expected name=value)\nSee 'berth images --help'."
                ),
                crate::EXIT_ENGINE,
            ));
        };
        match k {
            "dangling" if !matches!(v, "true" | "false" | "1" | "0") => {
                return Err((
                    format!("Error response from daemon: Invalid filter 'dangling=[{v}]'"),
                    1,
                ))
            }
            "dangling" | "label" | "reference" | "before" | "since" => {}
            _ => {
                return Err((
                    format!("Error response from daemon: Invalid filter '{k}'"),
                    1,
                ))
            }
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Whether an image passes the `dangling`, `label`, `before` and `since`
/// filters (`reference` is applied per tag). Every filter must hold.
fn image_matches(img: &ImageSummary, filters: &Filters, bounds: &[(String, String)]) -> bool {
    let labels = img
        .config
        .get("config")
        .and_then(|c| c.get("Labels"))
        .and_then(|l| l.as_object());
    let created = img
        .created
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let ok = filters.iter().all(|(k, v)| match k.as_str() {
        "dangling" => img.tags.is_empty() == matches!(v.as_str(), "true" | "1"),
        "label" => {
            let (key, want) = match v.split_once('=') {
                Some((k, w)) => (k, Some(w)),
                None => (v.as_str(), None),
            };
            match (labels.and_then(|l| l.get(key)), want) {
                (Some(have), Some(w)) => have.as_str() == Some(w),
                (Some(_), None) => true,
                (None, _) => false,
            }
        }
        _ => true,
    });
    ok && bounds.iter().all(|(k, bound)| {
        let Ok(bound) = chrono::DateTime::parse_from_rfc3339(bound) else {
            return false;
        };
        match created {
            Some(t) if k == "before" => t < bound,
            Some(t) => t > bound,
            None => false,
        }
    })
}

/// docker's `reference` filter: a glob (Go's `path.Match`, where `*`
/// stops at `/`) over `repo:tag`, or over the repository alone.
fn reference_matches(pattern: &str, repo: &str, tag: &str) -> bool {
    let glob = |name: &str| {
        let (p, n): (Vec<&str>, Vec<&str>) =
            (pattern.split('/').collect(), name.split('/').collect());
        p.len() == n.len()
            && p.iter()
                .zip(&n)
                .all(|(p, n)| berth_host::build::context::glob_match(p, n))
    };
    glob(&format!("{repo}:{tag}")) || glob(repo)
}

/// docker's column header for an image template field.
fn images_header(field: &str) -> String {
    match field {
        "ID" => "IMAGE ID".into(),
        "CreatedSince" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "SharedSize" => "SHARED SIZE".into(),
        "UniqueSize" => "UNIQUE SIZE".into(),
        "VirtualSize" => "VIRTUAL SIZE".into(),
        f => f.to_uppercase(),
    }
}
