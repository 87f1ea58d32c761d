//! `berth search TERM`: repositories whose names hold a term, from the
//! catalog of the registry the term names (`localhost:5000/busy`), or
//! Docker Hub's search for a bare term. See `berth_host::registry::search`
//! for how that differs from docker's.

use crate::fmt::{Template, TemplateValue};
use anyhow::Result;
use berth_host::registry::search::{search, SearchFilters, SearchHit, DEFAULT_LIMIT, MAX_LIMIT};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct SearchArgs {
    /// Max number of search results
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    limit: usize,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Pretty-print search using a Go template
    #[arg(long)]
    format: Option<String>,
    /// Filter output based on conditions provided (is-official=, is-automated=, stars=)
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    term: String,
}

const DEFAULT_FORMAT: &str =
    "table {{.Name}}\\t{{.Description}}\\t{{.StarCount}}\\t{{.IsOfficial}}\\t{{.IsAutomated}}";

pub fn run(a: &SearchArgs) -> Result<i32> {
    if a.limit == 0 || a.limit > MAX_LIMIT {
        eprintln!(
            "Error response from daemon: limit {} is outside the range of [1, 100]",
            a.limit
        );
        return Ok(1);
    }
    let mut filters = SearchFilters::default();
    for f in &a.filter {
        let (k, v) = f.split_once('=').unwrap_or((f.as_str(), ""));
        if !filters.add(k, v) {
            eprintln!("Error response from daemon: Invalid filter '{f}'");
            return Ok(1);
        }
    }
    let hits: Vec<SearchHit> = match search(&a.term, a.limit) {
        Ok(h) => h.into_iter().filter(|h| filters.keeps(h)).collect(),
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            return Ok(1);
        }
    };
    let format = match a.format.as_deref() {
        None | Some("") | Some("table") => DEFAULT_FORMAT,
        Some(f) => f,
    };
    let items: Vec<(&SearchHit, Value)> = hits.iter().map(|h| (h, row(h, a.no_trunc))).collect();
    if format == "json" {
        items.iter().for_each(|(_, v)| println!("{v}"));
        return Ok(0);
    }
    let t = match Template::parse(format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("template parsing error: {e}");
            return Ok(1);
        }
    };
    match t.render_list(
        &items,
        &header,
        "*formatter.searchContext",
        &|_, row, f, _| {
            row.get(f).map(|v| match v {
                Value::String(s) => TemplateValue::Text(s.clone()),
                other => TemplateValue::Text(other.to_string()),
            })
        },
    ) {
        Ok(out) => print!("{out}"),
        Err(e) => {
            eprintln!("template parsing error: {e}");
            return Ok(1);
        }
    }
    Ok(0)
}

/// docker's `searchContext` fields: `[OK]` marks, descriptions cut at 45
/// characters with `…` unless `--no-trunc`.
fn row(h: &SearchHit, no_trunc: bool) -> Value {
    let desc = h.description.replace(['\n', '\r'], " ");
    let desc = if !no_trunc && desc.chars().count() > 45 {
        let cut: String = desc.chars().take(44).collect();
        format!("{cut}…")
    } else {
        desc
    };
    let ok = |b: bool| if b { "[OK]" } else { "" };
    json!({
        "Name": h.name, "Description": desc, "StarCount": h.star_count.to_string(),
        "IsOfficial": ok(h.is_official), "IsAutomated": ok(h.is_automated),
    })
}

fn header(field: &str) -> String {
    match field {
        "StarCount" => "STARS".into(),
        "IsOfficial" => "OFFICIAL".into(),
        "IsAutomated" => "AUTOMATED".into(),
        f => f.to_uppercase(),
    }
}
