//! `berth volume create|ls|inspect|rm|prune`, printed as docker's CLI
//! prints them.

use crate::client::ClientError;
use crate::commands::connect;
use crate::fmt::{human_size4, natural_less, Template, TemplateValue};
use crate::placement::Isolation;
use anyhow::Result;
use berth_host::engine::VolumeCreate;
use berth_host::inspect::{volume_json as inspect_json, VolumeJson as InspectJson};
use berth_host::vm_volumes::VolumeStore;
use berth_protocol::{ErrorKind, VolumeInfo};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

#[derive(clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
    /// Remove one or more volumes. You cannot remove a volume that is in use by a container.
    #[command(alias = "remove")]
    Rm(RmArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long)]
    opt: Vec<String>,
    /// Specify volume name
    #[arg(long, hide = true)]
    name: Option<String>,
    /// The volume's name (a random one when left out)
    volume: Option<String>,
}

#[derive(clap::Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output: "table", "json" or a Go template
    #[arg(long)]
    format: Option<String>,
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Format output: "json" or a Go template
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long)]
    filter: Vec<String>,
}

pub fn run(iso: Isolation, c: &VolumeCommand) -> Result<i32> {
    match c {
        VolumeCommand::Create(a) => create(iso, a),
        VolumeCommand::Inspect(a) => inspect(iso, a),
        VolumeCommand::Ls(a) => list(iso, a),
        VolumeCommand::Prune(a) => prune(iso, a),
        VolumeCommand::Rm(a) => remove(iso, a),
    }
}

/// Where a placement's volumes are: its engine, or for own VMs the host
/// folders they share ([`berth_host::vm_volumes`]).
enum Volumes {
    Engine(berth_host::engine::Engine),
    OwnVm(VolumeStore),
}

fn volumes(iso: Isolation) -> Result<Volumes> {
    Ok(if iso.own_vm() {
        Volumes::OwnVm(VolumeStore::open())
    } else {
        Volumes::Engine(connect(iso)?)
    })
}

impl Volumes {
    fn create(&mut self, v: VolumeCreate) -> Result<VolumeInfo, ClientError> {
        match self {
            Volumes::Engine(c) => c.volume_create(v),
            Volumes::OwnVm(s) => Ok(s.create(v.name.as_deref(), &v.labels, &v.options)?),
        }
    }

    fn list(&mut self) -> Result<Vec<VolumeInfo>, ClientError> {
        match self {
            Volumes::Engine(c) => c.volume_list(),
            Volumes::OwnVm(s) => Ok(s.list()),
        }
    }

    fn inspect(&mut self, name: &str) -> Result<VolumeInfo, ClientError> {
        match self {
            Volumes::Engine(c) => c.volume_inspect(name),
            Volumes::OwnVm(s) => Ok(s.inspect(name)?),
        }
    }

    fn remove(&mut self, name: &str, force: bool) -> Result<(), ClientError> {
        match self {
            Volumes::Engine(c) => c.volume_remove(name, force),
            Volumes::OwnVm(s) => Ok(s.remove(name, force)?),
        }
    }

    fn prune(&mut self, all: bool) -> Result<(Vec<String>, u64), ClientError> {
        match self {
            Volumes::Engine(c) => c.volume_prune(all).map(|p| (p.names, p.reclaimed)),
            Volumes::OwnVm(s) => Ok(s.prune(all)),
        }
    }
}

/// A usage error as docker's CLI prints one: the flag, then the hint.
fn flag_error(verb: &str, flag: &str, value: &str, reason: &str) -> i32 {
    eprintln!(
        "invalid argument {value:?} for \"{flag}\" flag: {reason}\nSee 'berth volume {verb} --help'."
    );
    crate::EXIT_ENGINE
}

/// docker's `ConvertKVStringsToMap`: `k=v`, or `k` with an empty value.
fn kv_map(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn create(iso: Isolation, a: &CreateArgs) -> Result<i32> {
    let name = match (&a.name, &a.volume) {
        (Some(_), Some(_)) => {
            eprintln!("conflicting options: cannot specify a volume-name through both --name and as a positional arg");
            return Ok(1);
        }
        (n, v) => n.clone().or_else(|| v.clone()).filter(|n| !n.is_empty()),
    };
    for l in &a.label {
        if l.split_once('=')
            .map_or(l.as_str(), |p| p.0)
            .trim()
            .is_empty()
        {
            return Ok(flag_error(
                "create",
                "--label",
                l,
                &format!("invalid label '{l}': empty name"),
            ));
        }
    }
    if a.driver != "local" {
        // docker's daemon, when no plugin of that name is installed
        // (berth has no volume plugins).
        let shown = name
            .clone()
            .unwrap_or_else(berth_host::vm_volumes::random_name);
        eprintln!(
            "Error response from daemon: create {shown}: error looking up volume plugin {d}: plugin \"{d}\" not found",
            d = a.driver
        );
        return Ok(1);
    }
    match volumes(iso)?.create(VolumeCreate {
        name,
        driver: Some(a.driver.clone()),
        labels: kv_map(&a.label),
        options: kv_map(&a.opt),
    }) {
        Ok(v) => {
            println!("{}", v.name);
            Ok(0)
        }
        Err(e @ ClientError::Unexpected(_)) => Err(e.into()),
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            Ok(1)
        }
    }
}

/// One `volume ls --filter`: its key and value.
type Filter = (String, String);

/// Reads `volume ls` filters; the error is docker's message and exit code.
fn ls_filters(list: &[String]) -> Result<Vec<Filter>, (String, i32)> {
    let mut out = Vec::new();
    for f in list {
        let Some((k, v)) = f.split_once('=') else {
            return Err((
                format!(
                    "invalid argument {f:?} for \"-f, --filter\" flag: bad format of filter (expected name=value)\nSee 'berth volume ls --help'."
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
            "dangling" | "name" | "label" | "driver" => {}
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

/// Label filter `key` or `key=value` (docker's `MatchKVList`).
fn label_matches(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

/// Filters of one key are ORed, different keys ANDed, as docker's are.
/// `name` matches a substring (docker's is a regular expression; a plain
/// word matches the same names).
fn ls_matches(v: &VolumeInfo, filters: &[Filter]) -> bool {
    let keys: std::collections::BTreeSet<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.into_iter().all(|key| {
        filters
            .iter()
            .filter(|(k, _)| k == key)
            .any(|(_, want)| match key {
                "dangling" => v.used_by.is_empty() == matches!(want.as_str(), "true" | "1"),
                "name" => v.name.contains(want.as_str()),
                "driver" => v.driver == *want,
                "label" => label_matches(&v.labels, want),
                _ => false,
            })
    })
}

/// docker's volume `--format json` object (the formatter's fields).
fn ls_json(v: &VolumeInfo) -> Value {
    json!({
        "Availability": "N/A", "Driver": v.driver, "Group": "N/A",
        "Labels": labels_text(&v.labels), "Links": "N/A", "Mountpoint": v.mountpoint,
        "Name": v.name, "Scope": "local", "Size": "N/A", "Status": "N/A"
    })
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `volume ls` template field.
fn ls_field(v: &VolumeInfo, field: &str, arg: Option<&str>) -> Option<TemplateValue> {
    let text = |s: &str| Some(TemplateValue::Text(s.to_string()));
    match (field, arg) {
        ("Label", Some(k)) => text(v.labels.get(k).map_or("", String::as_str)),
        (_, Some(_)) => None,
        ("Name", _) => text(&v.name),
        ("Driver", _) => text(&v.driver),
        ("Scope", _) => text("local"),
        ("Mountpoint", _) => text(&v.mountpoint),
        ("Labels", _) => text(&labels_text(&v.labels)),
        ("Links" | "Size" | "Group" | "Availability" | "Status", _) => text("N/A"),
        _ => None,
    }
}

/// docker's table headers for the volume fields.
fn ls_header(field: &str) -> String {
    match field {
        "Name" => "VOLUME NAME".into(),
        f => f.to_uppercase(),
    }
}

fn list(iso: Isolation, a: &LsArgs) -> Result<i32> {
    let filters = match ls_filters(&a.filter) {
        Ok(f) => f,
        Err((m, code)) => {
            eprintln!("{m}");
            return Ok(code);
        }
    };
    let format = match a.format.as_deref() {
        None | Some("") | Some("table") if a.quiet => "{{.Name}}",
        None | Some("") | Some("table") => "table {{.Driver}}\\t{{.Name}}",
        Some(f) => f,
    };
    let template = match crate::fmt::list_template(format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    let mut vols = volumes(iso)?.list()?;
    vols.retain(|v| ls_matches(v, &filters));
    vols.sort_by(|x, y| {
        if natural_less(&x.name, &y.name) {
            std::cmp::Ordering::Less
        } else if natural_less(&y.name, &x.name) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    print_items(&vols, template.as_ref())
}

/// Prints volumes with `template` (each one's JSON when `None`); a table
/// template gets a header row and tabwriter columns.
fn print_items(items: &[VolumeInfo], template: Option<&Template>) -> Result<i32> {
    let Some(t) = template else {
        for v in items {
            println!("{}", ls_json(v));
        }
        return Ok(0);
    };
    let items: Vec<(&VolumeInfo, Value)> = items.iter().map(|v| (v, ls_json(v))).collect();
    match t.render_list(
        &items,
        &ls_header,
        "*formatter.volumeContext",
        &|v, _, f, arg| ls_field(v, f, arg),
    ) {
        Ok(out) => print!("{out}"),
        Err(e) => {
            eprintln!("template parsing error: {e}");
            return Ok(1);
        }
    }
    Ok(0)
}

/// A JSON array indented with four spaces, as docker prints inspect's.
pub fn indented<T: Serialize>(items: &[T]) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    items.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}

/// A `volume inspect` template field (the API's `volume.Volume`).
fn inspect_field(v: &VolumeInfo, field: &str, arg: Option<&str>) -> Option<TemplateValue> {
    if arg.is_some() {
        return None;
    }
    let value = serde_json::to_value(inspect_json(v)).ok()?;
    match value.get(field)? {
        Value::String(s) => Some(TemplateValue::Text(s.clone())),
        // A nil map prints as `map[]` in Go.
        Value::Null => Some(TemplateValue::Json(json!({}))),
        other => Some(TemplateValue::Json(other.clone())),
    }
}

fn inspect(iso: Isolation, a: &InspectArgs) -> Result<i32> {
    let template = match a.format.as_deref() {
        None | Some("") => None,
        Some("json") => Some(None),
        Some(f) => match Template::parse(f) {
            Ok(t) => Some(Some(t)),
            Err(e) => {
                eprintln!("template parsing error: {e}");
                return Ok(1);
            }
        },
    };
    let mut c = volumes(iso)?;
    let mut found = Vec::new();
    let mut code = 0;
    for n in &a.volumes {
        match c.inspect(n) {
            Ok(v) => found.push(v),
            Err(e @ ClientError::Unexpected(_)) => return Err(e.into()),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = 1;
            }
        }
    }
    match template {
        None => {
            let items: Vec<InspectJson> = found.iter().map(inspect_json).collect();
            println!("{}", indented(&items)?);
        }
        Some(None) => {
            let items: Vec<InspectJson> = found.iter().map(inspect_json).collect();
            println!("{}", serde_json::to_string(&items)?);
        }
        Some(Some(t)) => {
            for v in &found {
                let whole = serde_json::to_value(inspect_json(v))?;
                match t.render(&|f, arg| inspect_field(v, f, arg), &whole, "volume.Volume") {
                    Ok(l) => println!("{l}"),
                    Err(e) => {
                        eprintln!("template parsing error: {e}");
                        return Ok(1);
                    }
                }
            }
        }
    }
    Ok(code)
}

fn remove(iso: Isolation, a: &RmArgs) -> Result<i32> {
    let mut c = volumes(iso)?;
    let mut code = 0;
    for n in &a.volumes {
        match c.remove(n, a.force) {
            Ok(_) => println!("{n}"),
            // `-f` hides a missing volume (the engine does too).
            Err(e) if a.force && e.kind() == Some(ErrorKind::NotFound) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// docker's confirmation prompt (on stdout); true when the answer is yes.
fn confirm(warning: &str) -> Result<bool> {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}

/// The prune filters berth knows: `label=K[=V]` and `label!=K[=V]`.
fn prune_filters(list: &[String]) -> Result<Vec<Filter>, String> {
    list.iter()
        .map(|f| match f.split_once('=') {
            Some(("label", v)) => Ok(("label".to_string(), v.to_string())),
            Some(("label!", v)) => Ok(("label!".to_string(), v.to_string())),
            Some((k, _)) => Err(format!("Error response from daemon: Invalid filter '{k}'")),
            None => Err(format!(
                "invalid argument {f:?} for \"--filter\" flag: bad format of filter (expected name=value)"
            )),
        })
        .collect()
}

/// Whether prune may take `v`: unused, anonymous unless `all`, and
/// matching every `label` filter and no `label!` one.
fn prunable(v: &VolumeInfo, all: bool, filters: &[Filter]) -> bool {
    v.used_by.is_empty()
        && (all || v.anonymous)
        && filters.iter().all(|(k, want)| match k.as_str() {
            "label" => label_matches(&v.labels, want),
            "label!" => !label_matches(&v.labels, want),
            _ => true,
        })
}

fn prune(iso: Isolation, a: &PruneArgs) -> Result<i32> {
    let filters = match prune_filters(&a.filter) {
        Ok(f) => f,
        Err(m) => {
            eprintln!("{m}");
            return Ok(if m.starts_with("invalid argument") {
                crate::EXIT_ENGINE
            } else {
                1
            });
        }
    };
    let what = if a.all { "all" } else { "anonymous" };
    if !a.force
        && !confirm(&format!(
            "WARNING! This will remove {what} local volumes not used by at least one container."
        ))?
    {
        return Ok(0);
    }
    let mut c = volumes(iso)?;
    let (names, reclaimed) = if filters.is_empty() {
        c.prune(a.all)?
    } else {
        // The engine's prune takes no filters: choose here, remove each.
        let vols = c.list()?;
        let mut names = Vec::new();
        for v in vols.iter().filter(|v| prunable(v, a.all, &filters)) {
            match c.remove(&v.name, false) {
                Ok(_) => names.push(v.name.clone()),
                Err(e) => eprintln!("berth: could not remove volume {}: {e}", v.name),
            }
        }
        (names, 0)
    };
    print!("{}", prune_report(&names, reclaimed));
    Ok(0)
}

/// What docker prints after a prune.
fn prune_report(names: &[String], reclaimed: u64) -> String {
    let mut out = String::new();
    if !names.is_empty() {
        out.push_str("Deleted Volumes:\n");
        for n in names {
            out.push_str(n);
            out.push('\n');
        }
        out.push('\n');
    }
    let reclaimed = if names.is_empty() { 0 } else { reclaimed };
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size4(reclaimed)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: &str) -> VolumeInfo {
        VolumeInfo {
            name: name.into(),
            driver: "local".into(),
            mountpoint: format!("/var/lib/berth/volumes/{name}/_data"),
            created_at: "2026-12-05T19:45:47Z".into(),
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            anonymous: false,
            used_by: Vec::new(),
        }
    }

    #[test]
    fn inspect_like_docker() {
        let mut v = vol("lv1");
        let plain = vol("plain");
        v.labels.insert("a".into(), "b".into());
        v.labels.insert("c".into(), "".into());
        v.options.insert("type".into(), "tmpfs".into());
        let out = indented(&[inspect_json(&v), inspect_json(&plain)]).unwrap();
        let want = r#"[
    {
        "CreatedAt": "2026-12-05T19:45:47Z",
        "Driver": "local",
        "Labels": {
            "a": "b",
            "c": ""
        },
        "Mountpoint": "/var/lib/berth/volumes/lv1/_data",
        "Name": "lv1",
        "Options": {
            "type": "tmpfs"
        },
        "Scope": "local"
    },
    {
        "CreatedAt": "2026-12-05T19:45:47Z",
        "Driver": "local",
        "Labels": null,
        "Mountpoint": "/var/lib/berth/volumes/plain/_data",
        "Name": "plain",
        "Options": null,
        "Scope": "local"
    }
]"#;
        assert_eq!(out, want);
        assert_eq!(indented::<InspectJson>(&[]).unwrap(), "[]");
        let t = Template::parse("{{.Name}} {{json .Labels}} {{.Options}} {{.Labels}}").unwrap();
        let whole = serde_json::to_value(inspect_json(&v)).unwrap();
        let out = t
            .render(&|f, a| inspect_field(&v, f, a), &whole, "volume.Volume")
            .unwrap();
        assert_eq!(out, r#"lv1 {"a":"b","c":""} map[type:tmpfs] map[a:b c:]"#);
    }

    #[test]
    fn ls_json_like_docker() {
        let mut v = vol("lv1");
        v.labels.insert("a".into(), "b".into());
        v.labels.insert("c".into(), "".into());
        assert_eq!(
            ls_json(&v).to_string(),
            r#"{"Availability":"N/A","Driver":"local","Group":"N/A","Labels":"a=b,c=","Links":"N/A","Mountpoint":"/var/lib/berth/volumes/lv1/_data","Name":"lv1","Scope":"local","Size":"N/A","Status":"N/A"}"#
        );
    }

    #[test]
    fn ls_table_like_docker() {
        let t = Template::parse("table {{.Driver}}\\t{{.Name}}").unwrap();
        let v = vol("myvol");
        let items = [(&v, ls_json(&v))];
        let out = t
            .render_list(&items, &ls_header, "x", &|v, _, f, a| ls_field(v, f, a))
            .unwrap();
        assert_eq!(out, "DRIVER    VOLUME NAME\nlocal     myvol\n");
    }

    #[test]
    fn ls_filters_as_docker() {
        assert_eq!(
            ls_filters(&["dangling=maybe".into()]).unwrap_err(),
            (
                "Error response from daemon: Invalid filter 'dangling=[maybe]'".into(),
                1
            )
        );
        assert_eq!(
            ls_filters(&["bogus=1".into()]).unwrap_err(),
            (
                "Error response from daemon: Invalid filter 'bogus'".into(),
                1
            )
        );
        assert_eq!(ls_filters(&["bogus".into()]).unwrap_err().1, 125);
        let mut used = vol("used");
        used.used_by.push("abc".into());
        used.labels.insert("a".into(), "b".into());
        let free = vol("free");
        let f = ls_filters(&["dangling=true".into()]).unwrap();
        assert!(!ls_matches(&used, &f) && ls_matches(&free, &f));
        let f = ls_filters(&["dangling=0".into()]).unwrap();
        assert!(ls_matches(&used, &f) && !ls_matches(&free, &f));
        let f = ls_filters(&["label=a".into()]).unwrap();
        assert!(ls_matches(&used, &f) && !ls_matches(&free, &f));
        let f = ls_filters(&["label=a=c".into()]).unwrap();
        assert!(!ls_matches(&used, &f));
        // Same key ORed, different keys ANDed.
        let f = ls_filters(&["name=fr".into(), "name=us".into()]).unwrap();
        assert!(ls_matches(&used, &f) && ls_matches(&free, &f));
        let f = ls_filters(&["name=fr".into(), "label=a".into()]).unwrap();
        assert!(!ls_matches(&used, &f) && !ls_matches(&free, &f));
        let f = ls_filters(&["driver=loc".into()]).unwrap();
        assert!(!ls_matches(&free, &f));
    }

    #[test]
    fn prune_choice_and_report() {
        let mut anon = vol("0123abcd");
        anon.anonymous = true;
        let mut named = vol("keep");
        named.labels.insert("tier".into(), "db".into());
        let mut busy = vol("busy");
        busy.anonymous = true;
        busy.used_by.push("c1".into());
        let none: Vec<Filter> = Vec::new();
        assert!(prunable(&anon, false, &none));
        assert!(!prunable(&named, false, &none));
        assert!(prunable(&named, true, &none));
        assert!(!prunable(&busy, true, &none));
        let f = prune_filters(&["label=tier=db".into()]).unwrap();
        assert!(prunable(&named, true, &f) && !prunable(&anon, true, &f));
        let f = prune_filters(&["label!=tier".into()]).unwrap();
        assert!(!prunable(&named, true, &f) && prunable(&anon, true, &f));
        assert!(prune_filters(&["until=1h".into()]).is_err());
        assert_eq!(
            prune_report(&["a".into(), "b".into()], 12_345),
            "Deleted Volumes:\na\nb\n\nTotal reclaimed space: 12.35kB\n"
        );
        assert_eq!(prune_report(&[], 0), "Total reclaimed space: 0B\n");
    }

    #[test]
    fn key_value_lists() {
        let m = kv_map(&["a=b".into(), "c".into(), "d=e=f".into()]);
        assert_eq!(m.get("a").unwrap(), "b");
        assert_eq!(m.get("c").unwrap(), "");
        assert_eq!(m.get("d").unwrap(), "e=f");
        assert_eq!(berth_host::vm_volumes::random_name().len(), 64);
    }
}
