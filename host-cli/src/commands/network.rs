//! `berth network create|ls|inspect|rm|prune|connect|disconnect`, printed
//! as docker's CLI (28) prints them. What docker's CLI checks itself is
//! checked here with its words; so is what its daemon checks of a new
//! network's addresses and driver, worded as the daemon words it.

use crate::client::ClientError;
use crate::commands::connect;
use crate::fmt::{go_time, json_field, natural_less, Template, TemplateValue};
use crate::placement::Isolation;
use anyhow::Result;
use berth_host::engine::{NetworkConnect, NetworkCreate};
use berth_host::inspect::network_json as inspect_json;
use berth_protocol::{ErrorKind, NetworkInfo};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::IpAddr;

#[derive(clap::Subcommand)]
pub enum NetworkCommand {
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Create a network
    Create(CreateArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long, value_delimiter = ',')]
    subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long, value_delimiter = ',')]
    gateway: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Set metadata on a network
    #[arg(long, allow_hyphen_values = true)]
    label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long, allow_hyphen_values = true)]
    opt: Vec<String>,
    #[arg(value_name = "NETWORK")]
    names: Vec<String>,
}

#[derive(clap::Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate the output
    #[arg(long)]
    no_trunc: bool,
    /// Provide filter values (e.g. "driver=bridge")
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
    #[arg(required = true, value_name = "NETWORK")]
    networks: Vec<String>,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    force: bool,
    #[arg(required = true, value_name = "NETWORK")]
    networks: Vec<String>,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(clap::Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long, value_delimiter = ',')]
    alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    ip: Option<String>,
    #[arg(value_name = "NETWORK CONTAINER")]
    args: Vec<String>,
}

#[derive(clap::Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    force: bool,
    #[arg(value_name = "NETWORK CONTAINER")]
    args: Vec<String>,
}

pub fn run(iso: Isolation, c: &NetworkCommand) -> Result<i32> {
    match c {
        NetworkCommand::Connect(a) => connect_cmd(iso, a),
        NetworkCommand::Create(a) => create(iso, a),
        NetworkCommand::Disconnect(a) => disconnect(iso, a),
        NetworkCommand::Inspect(a) => inspect(iso, a),
        NetworkCommand::Ls(a) => list(iso, a),
        NetworkCommand::Prune(a) => prune(iso, a),
        NetworkCommand::Rm(a) => remove(iso, a),
    }
}

/// A verb that takes exactly `n` arguments, refused as berth's CLI
/// refuses the others (docker's text, first two lines).
fn exact_args(verb: &str, n: usize, args: &[String]) -> Option<i32> {
    if args.len() == n {
        return None;
    }
    let what = if n == 1 { "argument" } else { "arguments" };
    eprintln!(
        "\"berth network {verb}\" requires exactly {n} {what}.\nSee 'berth network {verb} --help'."
    );
    Some(1)
}

/// The engine refused: docker prints its error as it is, exit 1.
fn daemon_error(e: impl std::fmt::Display) -> i32 {
    eprintln!("Error response from daemon: {e}");
    1
}

/// docker's `ValidateLabel`: the key, without leading blanks, must be
/// there and hold no blank.
fn validate_label(value: &str) -> Result<(), String> {
    let key = value.split_once('=').map_or(value, |p| p.0);
    let key = key.trim_start_matches([' ', '\t']);
    if key.is_empty() {
        return Err(format!("invalid label '{value}': empty name"));
    }
    if key.contains([' ', '\t']) {
        return Err(format!("label '{key}' contains whitespaces"));
    }
    Ok(())
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

/// An IPv4 or IPv6 prefix as Go's `net.ParseCIDR` reads it: the address
/// and the prefix length.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) || bits.len() > 3 {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

/// `addr` with the host bits of a `/bits` prefix cleared.
fn masked(addr: IpAddr, bits: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Whether the prefix `(net, bits)` holds `ip` (Go's `IPNet.Contains`:
/// an IPv4 address is also found in an IPv4-mapped IPv6 form).
fn contains(net: (IpAddr, u8), ip: IpAddr) -> bool {
    let v4 = |a: IpAddr| match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(a),
        a => a,
    };
    let (n, ip) = (v4(net.0), v4(ip));
    n.is_ipv4() == ip.is_ipv4() && masked(n, net.1) == masked(ip, net.1)
}

/// docker CLI's `subnetMatches`.
fn subnet_matches(subnet: &str, data: &str) -> Result<bool, String> {
    let net = parse_cidr(subnet)
        .ok_or_else(|| format!("invalid subnet: invalid CIDR address: {subnet}"))?;
    let ip = if data.contains('/') {
        parse_cidr(data)
            .ok_or_else(|| format!("invalid CIDR address: {data}"))?
            .0
    } else {
        match data.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => return Ok(false),
        }
    };
    Ok(contains(net, ip))
}

/// docker CLI's `createIPAMConfig` checks: every gateway in one subnet,
/// no overlapping subnets, one gateway per subnet. Returns the
/// (subnet, gateway) pairs.
fn ipam_config(subnets: &[String], gateways: &[String]) -> Result<Vec<(String, String)>, String> {
    if subnets.len() < gateways.len() {
        return Err("every ip-range or gateway must have a corresponding subnet".into());
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for s in subnets {
        for (k, _) in &out {
            if subnet_matches(s, k)? || subnet_matches(k, s)? {
                return Err("multiple overlapping subnet configuration is not supported".into());
            }
        }
        out.push((s.clone(), String::new()));
    }
    for g in gateways {
        let mut found = false;
        for s in subnets {
            if !subnet_matches(s, g)? {
                continue;
            }
            let entry = out.iter_mut().find(|(k, _)| k == s).expect("listed above");
            if !entry.1.is_empty() {
                return Err(format!(
                    "cannot configure multiple gateways ({g}, {}) for the same subnet ({s})",
                    entry.1
                ));
            }
            entry.1 = g.clone();
            found = true;
        }
        if !found {
            return Err(format!("no matching subnet for gateway {g}"));
        }
    }
    Ok(out)
}

/// Go's `netip.ParsePrefix`: strict `addr/bits`, no leading zeros in the
/// length.
fn parse_prefix(s: &str) -> Option<(IpAddr, u8)> {
    let (_, bits) = s.split_once('/')?;
    if bits.len() > 1 && bits.starts_with('0') {
        return None;
    }
    parse_cidr(s)
}

/// docker daemon's `ValidateIPAM` for one IPv4 subnet and its gateway;
/// the error is the daemon's.
fn validate_ipam(subnet: &str, gateway: &str) -> Result<(), String> {
    let mut errs = Vec::new();
    match parse_prefix(subnet) {
        None => errs.push(format!(
            "invalid subnet {subnet}: invalid CIDR block notation"
        )),
        Some((addr, bits)) => {
            let canonical = format!("{addr}/{bits}");
            if masked(addr, bits) != addr {
                errs.push(format!(
                    "invalid subnet {canonical}: it should be {}/{bits}",
                    masked(addr, bits)
                ));
            }
            if !gateway.is_empty() {
                match gateway.parse::<IpAddr>() {
                    Err(_) => errs.push(format!("invalid gateway {gateway}: invalid address")),
                    Ok(g) if g.is_ipv4() != addr.is_ipv4() => errs.push(format!(
                        "invalid gateway {gateway}: parent subnet is an {} block",
                        if addr.is_ipv4() { "IPv4" } else { "IPv6" }
                    )),
                    Ok(g) if masked(g, bits) != masked(addr, bits) => errs.push(format!(
                        "invalid gateway {gateway}: parent subnet {canonical} doesn't contain this address"
                    )),
                    Ok(_) => {}
                }
            }
        }
    }
    if errs.is_empty() {
        return Ok(());
    }
    let joined = if errs.len() == 1 {
        errs.remove(0)
    } else {
        format!("* {}", errs.join("\n* "))
    };
    Err(format!("invalid network config:\n{joined}"))
}

/// The predefined networks' names (docker's `IsPredefined`).
fn predefined(name: &str) -> bool {
    matches!(name, "bridge" | "host" | "none" | "default")
}

/// What docker's daemon refuses of a `network create` before making the
/// network, in its order (berth has one driver, `bridge`). `Err` is the
/// daemon's message.
fn daemon_checks(name: &str, driver: &str, ipam: &[(String, String)]) -> Result<(), String> {
    if predefined(name) {
        return Err(format!(
            "operation is not permitted on predefined {name} network "
        ));
    }
    if driver == "overlay" {
        return Err("This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into());
    }
    for (s, g) in ipam {
        validate_ipam(s, g)?;
    }
    match driver {
        "bridge" => Ok(()),
        "host" | "null" => Err(format!(
            "only one instance of \"{driver}\" network is allowed"
        )),
        d => Err(format!("plugin \"{d}\" not found")),
    }
}

fn create(iso: Isolation, a: &CreateArgs) -> Result<i32> {
    if let Some(code) = exact_args("create", 1, &a.names) {
        return Ok(code);
    }
    let name = &a.names[0];
    for l in &a.label {
        if let Err(reason) = validate_label(l) {
            eprintln!(
                "invalid argument {l:?} for \"--label\" flag: {reason}\nSee 'berth network create --help'."
            );
            return Ok(crate::EXIT_ENGINE);
        }
    }
    let ipam = match ipam_config(&a.subnet, &a.gateway) {
        Ok(c) => c,
        Err(m) => {
            eprintln!("{m}");
            return Ok(1);
        }
    };
    if ipam.len() > 1 {
        eprintln!("berth: a network has one subnet in berth; give one --subnet");
        return Ok(1);
    }
    if let Some((s, _)) = ipam.first() {
        if s.split('/').next().is_some_and(|a| a.contains(':')) {
            eprintln!(
                "berth: IPv6 subnets (--subnet {s}) are not supported yet; give an IPv4 subnet"
            );
            return Ok(1);
        }
    }
    if let Err(m) = daemon_checks(name, &a.driver, &ipam) {
        return Ok(daemon_error(m));
    }
    let (subnet, gateway) = ipam.into_iter().next().unzip();
    match connect(iso)?.network_create(NetworkCreate {
        name: name.clone(),
        driver: Some(a.driver.clone()),
        subnet,
        gateway: gateway.filter(|g| !g.is_empty()),
        internal: a.internal,
        labels: kv_map(&a.label),
        options: kv_map(&a.opt),
    }) {
        Ok(n) => {
            println!("{}", n.id);
            Ok(0)
        }
        Err(e @ ClientError::Unexpected(_)) => Err(e.into()),
        Err(e) => Ok(daemon_error(e)),
    }
}

/// docker's `stringid.TruncateID`.
fn short_id(id: &str) -> &str {
    let id = id.split_once(':').map_or(id, |p| p.1);
    &id[..id.len().min(12)]
}

/// One `network ls --filter`.
type Filter = (String, String);

/// Reads `network ls` filters as docker's daemon checks them; the error
/// is docker's message and exit code.
fn ls_filters(list: &[String]) -> Result<Vec<Filter>, (String, i32)> {
    let mut out = Vec::new();
    for f in list {
        let Some((k, v)) = f.split_once('=') else {
            return Err((
                format!(
                    "invalid argument {f:?} for \"-f, --filter\" flag: bad format of filter (expected name=value)\nSee 'berth network ls --help'."
                ),
                crate::EXIT_ENGINE,
            ));
        };
        out.push((k.to_string(), v.to_string()));
    }
    let daemon = |m: String| Err((format!("Error response from daemon: {m}"), 1));
    if let Some((k, _)) = out.iter().find(|(k, _)| {
        !["dangling", "driver", "id", "label", "name", "scope", "type"].contains(&k.as_str())
    }) {
        return daemon(format!("invalid filter '{k}'"));
    }
    let dangling: Vec<&Filter> = out.iter().filter(|(k, _)| k == "dangling").collect();
    if dangling.len() > 1 {
        return daemon("got more than one value for filter key \"dangling\"".into());
    }
    if dangling
        .first()
        .is_some_and(|(_, v)| !matches!(v.as_str(), "true" | "false" | "1" | "0"))
    {
        return daemon(
            "invalid value for filter 'dangling', must be \"true\" (or \"1\"), or \"false\" (or \"0\")"
                .into(),
        );
    }
    if let Some((_, v)) = out
        .iter()
        .find(|(k, v)| k == "type" && v != "custom" && v != "builtin")
    {
        return daemon(format!("invalid filter: 'type'='{v}'"));
    }
    Ok(out)
}

/// docker's `MatchKVList` for one value: `key` or `key=value`.
fn label_matches(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

/// docker's `FilterNetworks`: values of one key ORed, keys ANDed. `name`
/// and `id` match a substring (docker's match a regular expression; a
/// plain word matches the same networks).
fn ls_matches(n: &NetworkInfo, filters: &[Filter]) -> bool {
    let keys: std::collections::BTreeSet<&str> = filters.iter().map(|(k, _)| k.as_str()).collect();
    keys.into_iter().all(|key| {
        let mut values = filters.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
        match key {
            "driver" => values.any(|v| n.driver == *v),
            "name" => values.any(|v| n.name.contains(v.as_str())),
            "id" => values.any(|v| n.id.contains(v.as_str())),
            "label" => values.any(|v| label_matches(&n.labels, v)),
            "scope" => values.any(|v| v == "local"),
            "type" => values.any(|v| (v == "builtin") == n.builtin),
            "dangling" => values.any(|v| {
                let dangling = !n.builtin && n.containers.is_empty();
                dangling == matches!(v.as_str(), "true" | "1")
            }),
            _ => false,
        }
    })
}

/// A `network ls` template field (docker's `networkContext`).
fn ls_field(n: &NetworkInfo, trunc: bool, field: &str, arg: Option<&str>) -> Option<TemplateValue> {
    let text = |s: &str| Some(TemplateValue::Text(s.to_string()));
    match (field, arg) {
        ("Label", Some(k)) => text(n.labels.get(k).map_or("", String::as_str)),
        (_, Some(_)) => None,
        ("ID", _) => text(if trunc { short_id(&n.id) } else { &n.id }),
        ("Name", _) => text(&n.name),
        ("Driver", _) => text(&n.driver),
        ("Scope", _) => text("local"),
        ("IPv4", _) => text("true"),
        ("IPv6", _) => text("false"),
        ("Internal", _) => text(if n.internal { "true" } else { "false" }),
        ("Labels", _) => text(&labels_text(&n.labels)),
        ("CreatedAt", _) => text(&go_time(&n.created_at)),
        _ => None,
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// docker's `network ls --format json` object (the formatter's fields).
fn ls_json(n: &NetworkInfo, trunc: bool) -> Value {
    let mut m = serde_json::Map::new();
    for f in [
        "CreatedAt",
        "Driver",
        "ID",
        "IPv4",
        "IPv6",
        "Internal",
        "Labels",
        "Name",
        "Scope",
    ] {
        if let Some(TemplateValue::Text(t)) = ls_field(n, trunc, f, None) {
            m.insert(f.into(), Value::String(t));
        }
    }
    Value::Object(m)
}

/// docker's table headers for the network fields.
fn ls_header(field: &str) -> String {
    match field {
        "ID" => "NETWORK ID".into(),
        "IPv4" => "IPV4".into(),
        "IPv6" => "IPV6".into(),
        "CreatedAt" => "CREATED AT".into(),
        f => f.to_uppercase(),
    }
}

/// Renders networks as `network ls` does with `format` (already resolved
/// from `table`, `raw`, `-q`); `None` prints each one's JSON.
fn ls_render(
    items: &[NetworkInfo],
    template: Option<&Template>,
    trunc: bool,
) -> Result<String, String> {
    let Some(t) = template else {
        return Ok(items
            .iter()
            .map(|n| format!("{}\n", ls_json(n, trunc)))
            .collect());
    };
    let items: Vec<(&NetworkInfo, Value)> = items.iter().map(|n| (n, ls_json(n, trunc))).collect();
    t.render_list(
        &items,
        &ls_header,
        "*network.networkContext",
        &|n, _, f, arg| ls_field(n, trunc, f, arg),
    )
}

/// The template `network ls` uses for its `--format` and `-q`.
fn ls_format(format: Option<&str>, quiet: bool) -> &str {
    match format {
        None | Some("") | Some("table") if quiet => "{{.ID}}",
        None | Some("") | Some("table") => "table {{.ID}}\\t{{.Name}}\\t{{.Driver}}\\t{{.Scope}}",
        Some("raw") if quiet => "network_id: {{.ID}}",
        Some("raw") => {
            "network_id: {{.ID}}\\nname: {{.Name}}\\ndriver: {{.Driver}}\\nscope: {{.Scope}}\\n"
        }
        Some(f) => f,
    }
}

fn sort_by_name(list: &mut [NetworkInfo]) {
    list.sort_by(|x, y| {
        if natural_less(&x.name, &y.name) {
            std::cmp::Ordering::Less
        } else if natural_less(&y.name, &x.name) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
}

fn list(iso: Isolation, a: &LsArgs) -> Result<i32> {
    let filters = match ls_filters(&a.filter) {
        Ok(f) => f,
        Err((m, code)) => {
            eprintln!("{m}");
            return Ok(code);
        }
    };
    let template = match crate::fmt::list_template(ls_format(a.format.as_deref(), a.quiet)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    let mut nets = match connect(iso)?.network_list() {
        Ok(n) => n,
        Err(e @ ClientError::Unexpected(_)) => return Err(e.into()),
        Err(e) => return Ok(daemon_error(e)),
    };
    nets.retain(|n| ls_matches(n, &filters));
    sort_by_name(&mut nets);
    match ls_render(&nets, template.as_ref(), !a.no_trunc) {
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

/// A `network inspect` template field: a path into the inspect object
/// (`Name`, `IPAM.Config`), Go's field name `ID` too; a missing one
/// prints as docker's raw-JSON fallback prints it.
fn inspect_field(
    whole: &Value,
    n: &NetworkInfo,
    field: &str,
    arg: Option<&str>,
) -> Option<TemplateValue> {
    if arg.is_some() {
        return None;
    }
    if field == "Created" {
        return Some(TemplateValue::Text(go_time(&n.created_at)));
    }
    let path: Vec<&str> = field
        .split('.')
        .map(|p| if p == "ID" { "Id" } else { p })
        .collect();
    Some(json_field(whole, &path.join(".")))
}

/// `network inspect`'s output for what each name gave (a network, or the
/// daemon's error line): stdout, and the error lines in the order of the
/// names. Without a template, the networks as one JSON array (indented,
/// or on one line for `json`); with one, each network rendered on its own
/// line, and a network the template fails on an error line as docker's
/// template inspector words it (the other networks still printed); one
/// empty line when nothing was printed.
fn inspect_output(
    results: &[Result<NetworkInfo, String>],
    format: Option<&str>,
) -> (String, Vec<String>) {
    let mut errors = Vec::new();
    let template = match format {
        None | Some("") | Some("json") => None,
        Some(f) => match Template::parse(f) {
            Ok(t) => Some(t),
            Err(e) => return (String::new(), vec![format!("template parsing error: {e}")]),
        },
    };
    let Some(t) = template else {
        let mut items = Vec::new();
        for r in results {
            match r {
                Ok(n) => items.push(inspect_json(n)),
                Err(e) => errors.push(e.clone()),
            }
        }
        let text = if format == Some("json") {
            serde_json::to_string(&items).map_err(|e| e.to_string())
        } else {
            crate::commands::volume::indented(&items).map_err(|e| e.to_string())
        };
        return match text {
            Ok(text) => (format!("{text}\n"), errors),
            Err(e) => {
                errors.push(e);
                (String::new(), errors)
            }
        };
    };
    let mut out = String::new();
    for r in results {
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                errors.push(e.clone());
                continue;
            }
        };
        let rendered = serde_json::to_value(inspect_json(n))
            .map_err(|e| e.to_string())
            .and_then(|whole| {
                t.render(
                    &|f, arg| inspect_field(&whole, n, f, arg),
                    &whole,
                    "network.Inspect",
                )
            });
        match rendered {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
            }
            Err(e) => errors.push(format!("template parsing error: {e}")),
        }
    }
    // docker's template inspector prints one empty line for nothing.
    if out.is_empty() {
        out.push('\n');
    }
    (out, errors)
}

fn inspect(iso: Isolation, a: &InspectArgs) -> Result<i32> {
    if let Some(f) = a
        .format
        .as_deref()
        .filter(|f| !f.is_empty() && *f != "json")
    {
        if let Err(e) = Template::parse(f) {
            eprintln!("template parsing error: {e}");
            return Ok(64);
        }
    }
    let mut c = connect(iso)?;
    let mut results = Vec::new();
    for n in &a.networks {
        match c.network_inspect(n) {
            Ok(net) => results.push(Ok(net)),
            Err(e @ ClientError::Unexpected(_)) => return Err(e.into()),
            Err(e) => results.push(Err(format!("Error response from daemon: {e}"))),
        }
    }
    let (out, errors) = inspect_output(&results, a.format.as_deref());
    print!("{out}");
    if errors.is_empty() {
        return Ok(0);
    }
    eprintln!("{}", errors.join("\n"));
    Ok(1)
}

fn remove(iso: Isolation, a: &RmArgs) -> Result<i32> {
    let mut c = connect(iso)?;
    let mut code = 0;
    for n in &a.networks {
        match c.network_remove(n) {
            Ok(_) => println!("{n}"),
            // `-f`: a missing network is no error, and not printed.
            Err(e) if a.force && e.kind() == Some(ErrorKind::NotFound) => {}
            Err(e) => code = daemon_error(e),
        }
    }
    Ok(code)
}

/// docker 28's confirmation prompt (on stdout): only `y` or `Y` is yes.
fn confirm(warning: &str) -> Result<bool> {
    print!("{warning} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().eq_ignore_ascii_case("y"))
}

const PRUNE_WARNING: &str = "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?";

/// docker's `until` prune filter as a point in time (`GetTimestamp`: a
/// duration back from now, an RFC 3339 time or date, or Unix seconds).
fn until_time(value: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let ns = super::events::docker_timestamp(value, chrono::Utc::now())?;
    Ok(chrono::DateTime::from_timestamp_nanos(ns))
}

/// The prune filters docker's daemon takes: `label`, `label!`, `until`.
fn prune_filters(list: &[String]) -> Result<Vec<Filter>, (String, i32)> {
    let mut out = Vec::new();
    for f in list {
        match f.split_once('=') {
            Some((k @ ("label" | "label!" | "until"), v)) => out.push((k.to_string(), v.to_string())),
            Some((k, _)) => {
                return Err((format!("Error response from daemon: invalid filter '{k}'"), 1))
            }
            None => {
                return Err((
                    format!(
                        "invalid argument {f:?} for \"--filter\" flag: bad format of filter (expected name=value)\nSee 'berth network prune --help'."
                    ),
                    crate::EXIT_ENGINE,
                ))
            }
        }
    }
    if let Some((_, v)) = out.iter().find(|(k, _)| k == "until") {
        until_time(v).map_err(|m| (format!("Error response from daemon: {m}"), 1))?;
    }
    Ok(out)
}

/// Whether prune takes `n`: user-defined, unused, made before `until`,
/// with every `label` and not all of the `label!` ones (docker's
/// `matchLabels`).
fn prunable(n: &NetworkInfo, filters: &[Filter]) -> bool {
    let values = |key: &str| -> Vec<&String> {
        filters
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect()
    };
    let until = values("until").first().and_then(|v| until_time(v).ok());
    let created = chrono::DateTime::parse_from_rfc3339(&n.created_at).ok();
    let not_label = values("label!");
    !n.builtin
        && n.containers.is_empty()
        && !matches!((until, created), (Some(u), Some(c)) if c > u)
        && values("label").iter().all(|v| label_matches(&n.labels, v))
        && (not_label.is_empty() || !not_label.iter().all(|v| label_matches(&n.labels, v)))
}

/// What docker prints after a network prune.
fn prune_report(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let mut out = String::from("Deleted Networks:\n");
    for n in names {
        out.push_str(n);
        out.push('\n');
    }
    out.push('\n');
    out
}

fn prune(iso: Isolation, a: &PruneArgs) -> Result<i32> {
    let filters = match prune_filters(&a.filter) {
        Ok(f) => f,
        Err((m, code)) => {
            eprintln!("{m}");
            return Ok(code);
        }
    };
    if !a.force && !confirm(PRUNE_WARNING)? {
        return Ok(0);
    }
    let mut c = connect(iso)?;
    let names = if filters.is_empty() {
        match c.network_prune() {
            Ok(names) => names,
            Err(e @ ClientError::Unexpected(_)) => return Err(e.into()),
            Err(e) => return Ok(daemon_error(e)),
        }
    } else {
        // The engine's prune takes no filters: choose here, remove each.
        let nets = match c.network_list() {
            Ok(n) => n,
            Err(e @ ClientError::Unexpected(_)) => return Err(e.into()),
            Err(e) => return Ok(daemon_error(e)),
        };
        let mut names = Vec::new();
        for n in nets.iter().filter(|n| prunable(n, &filters)) {
            if c.network_remove(&n.id).is_ok() {
                names.push(n.name.clone());
            }
        }
        names
    };
    print!("{}", prune_report(&names));
    Ok(0)
}

fn connect_cmd(iso: Isolation, a: &ConnectArgs) -> Result<i32> {
    if let Some(code) = exact_args("connect", 2, &a.args) {
        return Ok(code);
    }
    match connect(iso)?.network_connect(NetworkConnect {
        network: a.args[0].clone(),
        container: a.args[1].clone(),
        aliases: a.alias.clone(),
        ipv4_address: a.ip.clone().filter(|ip| !ip.is_empty()),
    }) {
        Ok(_) => Ok(0),
        Err(e) => Ok(daemon_error(e)),
    }
}

fn disconnect(iso: Isolation, a: &DisconnectArgs) -> Result<i32> {
    if let Some(code) = exact_args("disconnect", 2, &a.args) {
        return Ok(code);
    }
    match connect(iso)?.network_disconnect(&a.args[0], &a.args[1], a.force) {
        Ok(_) => Ok(0),
        Err(e) => Ok(daemon_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::NetworkMember;

    fn net(name: &str, id: &str) -> NetworkInfo {
        NetworkInfo {
            id: id.into(),
            name: name.into(),
            driver: "bridge".into(),
            created_at: "2026-12-05T19:45:47.123456789Z".into(),
            subnet: "172.18.0.0/16".into(),
            gateway: "172.18.0.1".into(),
            internal: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            bridge: "br-0123".into(),
            builtin: false,
            containers: BTreeMap::new(),
        }
    }

    const ID: &str = "3c0a2a5a0c8e4ac1a2c0bfa1f8c5f7a8d9e0b1c2d3e4f5a6b7c8d9e0f1a2b3c4";

    fn builtin() -> Vec<NetworkInfo> {
        let mut bridge = net(
            "bridge",
            "aa11223344556677889900aabbccddeeff00112233445566778899aabbccddee",
        );
        bridge.builtin = true;
        bridge.subnet = "172.17.0.0/16".into();
        bridge.gateway = "172.17.0.1".into();
        bridge.options.insert(
            "com.docker.network.bridge.default_bridge".into(),
            "true".into(),
        );
        let mut host = net(
            "host",
            "bb11223344556677889900aabbccddeeff00112233445566778899aabbccddee",
        );
        host.builtin = true;
        host.driver = "host".into();
        host.subnet.clear();
        host.gateway.clear();
        let mut none = net(
            "none",
            "cc11223344556677889900aabbccddeeff00112233445566778899aabbccddee",
        );
        none.builtin = true;
        none.driver = "null".into();
        none.subnet.clear();
        none.gateway.clear();
        vec![bridge, host, none]
    }

    #[test]
    fn ls_table_like_docker() {
        let mut nets = builtin();
        nets.push(net("my-net", ID));
        sort_by_name(&mut nets);
        let t = Template::parse(ls_format(None, false)).unwrap();
        assert_eq!(
            ls_render(&nets, Some(&t), true).unwrap(),
            "NETWORK ID     NAME      DRIVER    SCOPE\n\
             aa1122334455   bridge    bridge    local\n\
             bb1122334455   host      host      local\n\
             3c0a2a5a0c8e   my-net    bridge    local\n\
             cc1122334455   none      null      local\n"
        );
        let q = Template::parse(ls_format(Some("table"), true)).unwrap();
        assert_eq!(
            ls_render(&nets[..1], Some(&q), false).unwrap(),
            format!("{}\n", nets[0].id)
        );
        let raw = Template::parse(ls_format(Some("raw"), false)).unwrap();
        assert_eq!(
            ls_render(&nets[..1], Some(&raw), true).unwrap(),
            "network_id: aa1122334455\nname: bridge\ndriver: bridge\nscope: local\n\n"
        );
        let custom =
            Template::parse("{{.Name}}: {{.Label \"a\"}} {{.Internal}} {{.CreatedAt}}").unwrap();
        let mut labelled = net("x", ID);
        labelled.labels.insert("a".into(), "b".into());
        labelled.internal = true;
        assert_eq!(
            ls_render(&[labelled.clone()], Some(&custom), true).unwrap(),
            "x: b true 2026-12-05 19:45:47.123456789 +0000 UTC\n"
        );
        assert_eq!(
            ls_render(&[labelled], None, true).unwrap(),
            "{\"CreatedAt\":\"2026-12-05 19:45:47.123456789 +0000 UTC\",\"Driver\":\"bridge\",\"ID\":\"3c0a2a5a0c8e\",\"IPv4\":\"true\",\"IPv6\":\"false\",\"Internal\":\"true\",\"Labels\":\"a=b\",\"Name\":\"x\",\"Scope\":\"local\"}\n"
        );
        let bad = Template::parse("{{.Nope}}").unwrap();
        assert_eq!(
            ls_render(&nets[..1], Some(&bad), true).unwrap_err(),
            "template: :1:2: executing \"\" at <.Nope>: can't evaluate field Nope in type *network.networkContext"
        );
    }

    #[test]
    fn ls_filters_as_docker() {
        let err = |f: &str| ls_filters(&[f.to_string()]).unwrap_err();
        assert_eq!(
            err("bogus=1"),
            (
                "Error response from daemon: invalid filter 'bogus'".into(),
                1
            )
        );
        assert_eq!(err("bogus").1, 125);
        assert_eq!(
            err("type=foo").0,
            "Error response from daemon: invalid filter: 'type'='foo'"
        );
        assert_eq!(
            err("dangling=maybe").0,
            "Error response from daemon: invalid value for filter 'dangling', must be \"true\" (or \"1\"), or \"false\" (or \"0\")"
        );
        assert_eq!(
            ls_filters(&["dangling=1".into(), "dangling=0".into()])
                .unwrap_err()
                .0,
            "Error response from daemon: got more than one value for filter key \"dangling\""
        );
        let mut nets = builtin();
        let mut used = net("used", ID);
        used.containers.insert(
            "c1".into(),
            NetworkMember {
                name: "web".into(),
                endpoint_id: "e1".into(),
                mac_address: "02:42:ac:12:00:02".into(),
                ipv4_address: "172.18.0.2/16".into(),
            },
        );
        used.labels.insert("team".into(), "a".into());
        nets.push(used);
        nets.push(net(
            "free",
            "dd11223344556677889900aabbccddeeff00112233445566778899aabbccddee",
        ));
        let names = |f: &[&str]| -> Vec<String> {
            let f: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            let f = ls_filters(&f).unwrap();
            nets.iter()
                .filter(|n| ls_matches(n, &f))
                .map(|n| n.name.clone())
                .collect()
        };
        assert_eq!(names(&["type=custom"]), ["used", "free"]);
        assert_eq!(names(&["type=builtin"]), ["bridge", "host", "none"]);
        assert_eq!(names(&["dangling=true"]), ["free"]);
        assert_eq!(
            names(&["dangling=false"]),
            ["bridge", "host", "none", "used"]
        );
        assert_eq!(names(&["driver=null", "driver=host"]), ["host", "none"]);
        assert_eq!(names(&["label=team=a"]), ["used"]);
        assert_eq!(names(&["name=e", "type=custom"]), ["used", "free"]);
        assert_eq!(names(&["id=3c0a2a"]), ["used"]);
        assert_eq!(names(&["scope=swarm"]), Vec::<String>::new());
    }

    #[test]
    fn inspect_like_docker() {
        let mut n = net("my-net", ID);
        n.labels.insert("team".into(), "a".into());
        n.containers.insert(
            "c0ffee".into(),
            NetworkMember {
                name: "web".into(),
                endpoint_id: "e1e1".into(),
                mac_address: "02:42:ac:12:00:02".into(),
                ipv4_address: "172.18.0.2/16".into(),
            },
        );
        let none = builtin().remove(2);
        let out = inspect_render(&[n.clone(), none], None).unwrap();
        let want = r#"[
    {
        "Name": "my-net",
        "Id": "3c0a2a5a0c8e4ac1a2c0bfa1f8c5f7a8d9e0b1c2d3e4f5a6b7c8d9e0f1a2b3c4",
        "Created": "2026-12-05T19:45:47.123456789Z",
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [
                {
                    "Subnet": "172.18.0.0/16",
                    "Gateway": "172.18.0.1"
                }
            ]
        },
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {
            "Network": ""
        },
        "ConfigOnly": false,
        "Containers": {
            "c0ffee": {
                "Name": "web",
                "EndpointID": "e1e1",
                "MacAddress": "02:42:ac:12:00:02",
                "IPv4Address": "172.18.0.2/16",
                "IPv6Address": ""
            }
        },
        "Options": {},
        "Labels": {
            "team": "a"
        }
    },
    {
        "Name": "none",
        "Id": "cc11223344556677889900aabbccddeeff00112233445566778899aabbccddee",
        "Created": "2026-12-05T19:45:47.123456789Z",
        "Scope": "local",
        "Driver": "null",
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": null,
            "Config": []
        },
        "Internal": false,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {
            "Network": ""
        },
        "ConfigOnly": false,
        "Containers": {},
        "Options": {},
        "Labels": {}
    }
]
"#;
        assert_eq!(out, want);
        assert_eq!(inspect_render(&[], None).unwrap(), "[]\n");
        assert!(inspect_render(&[n.clone()], Some("json"))
            .unwrap()
            .starts_with("[{\"Name\":\"my-net\",\"Id\":"));
        assert_eq!(
            inspect_render(
                &[n.clone()],
                Some("{{.Name}} {{.ID}} {{.Id}} {{json .IPAM.Config}} {{.Labels}} {{.Created}}")
            )
            .unwrap(),
            format!(
                "my-net {ID} {ID} [{{\"Gateway\":\"172.18.0.1\",\"Subnet\":\"172.18.0.0/16\"}}] map[team:a] 2026-12-05 19:45:47.123456789 +0000 UTC\n"
            )
        );
        assert_eq!(inspect_render(&[], Some("{{.Name}}")).unwrap(), "\n");
        assert_eq!(
            inspect_render(&[n], Some("{{.Nope}} {{json .IPAM.Nope}}")).unwrap(),
            "<no value> null\n"
        );
    }

    /// [`inspect_output`] for networks all found: stdout, or the error
    /// lines.
    fn inspect_render(found: &[NetworkInfo], format: Option<&str>) -> Result<String, String> {
        let results: Vec<_> = found.iter().cloned().map(Ok).collect();
        let (out, errors) = inspect_output(&results, format);
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors.join("\n"))
        }
    }

    /// The gateway idioms of docker's docs and scripts: a range over
    /// `IPAM.Config`, and `index` in parentheses with a field after it.
    /// Go's text/template on docker 28's `network.Inspect` gives the same:
    /// the gateway and a newline per network; for a network without
    /// subnets (`none`, `host`) an empty line from the range and
    /// `index`'s out-of-range error.
    #[test]
    fn inspect_gateway_templates() {
        let mut nets = builtin();
        let bridge = nets.remove(0);
        let none = nets.remove(1);
        assert_eq!(bridge.name, "bridge");
        assert_eq!(none.name, "none");
        let gw = bridge.gateway.clone();
        assert!(!gw.is_empty());
        let range = "{{range .IPAM.Config}}{{.Gateway}}{{end}}";
        let index = "{{(index .IPAM.Config 0).Gateway}}";
        for f in [range, index] {
            assert_eq!(
                inspect_render(std::slice::from_ref(&bridge), Some(f)).unwrap(),
                format!("{gw}\n"),
                "{f}"
            );
        }
        assert_eq!(
            inspect_render(&[bridge.clone(), none.clone()], Some(range)).unwrap(),
            format!("{gw}\n\n")
        );
        assert_eq!(
            inspect_render(
                std::slice::from_ref(&bridge),
                Some("{{range .IPAM.Config}}{{.Subnet}} via {{.Gateway}}{{end}}")
            )
            .unwrap(),
            format!("{} via {gw}\n", bridge.subnet)
        );
        assert_eq!(
            inspect_render(std::slice::from_ref(&none), Some(index)).unwrap_err(),
            "template parsing error: template: :1:3: executing \"\" at <index .IPAM.Config 0>: error calling index: index out of range: 0"
        );
        // As docker's inspect: the networks the template works on are
        // printed, each failure and each name not found is an error line,
        // in the order of the names.
        let results = [
            Ok(bridge.clone()),
            Err("Error response from daemon: network nope not found".to_string()),
            Ok(none.clone()),
        ];
        let (out, errors) = inspect_output(&results, Some(index));
        assert_eq!(out, format!("{gw}\n"));
        assert_eq!(errors.len(), 2);
        assert_eq!(
            errors[0],
            "Error response from daemon: network nope not found"
        );
        assert!(errors[1].starts_with("template parsing error: template: :1:3: "));
        let (out, errors) = inspect_output(&results[1..2], Some(index));
        assert_eq!((out.as_str(), errors.len()), ("\n", 1));
        let (out, errors) = inspect_output(&results[1..], None);
        assert!(out.starts_with("[\n    {\n        \"Name\": \"none\","));
        assert_eq!(errors.len(), 1);
    }

    /// As docker CLI 28.2.2 words them (it checks these itself).
    #[test]
    fn ipam_refusals_as_docker_cli() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        for (subnets, gateways, want) in [
            (
                &[][..],
                &["10.0.0.1"][..],
                "every ip-range or gateway must have a corresponding subnet",
            ),
            (
                &["10.1.0.0/16"][..],
                &["10.0.0.1"][..],
                "no matching subnet for gateway 10.0.0.1",
            ),
            (
                &["10.1.0.0/16"][..],
                &["foo"][..],
                "no matching subnet for gateway foo",
            ),
            (
                &["10.1.0.0/16"][..],
                &["1.2.3.4/x"][..],
                "invalid CIDR address: 1.2.3.4/x",
            ),
            (
                &["10.1.0.0/16", "10.1.2.0/24"][..],
                &[][..],
                "multiple overlapping subnet configuration is not supported",
            ),
            (
                &["10.1.0.0/16", "10.1.0.0/16"][..],
                &[][..],
                "multiple overlapping subnet configuration is not supported",
            ),
            (
                &["10.1.0.0/16"][..],
                &["10.1.0.1", "10.1.0.2"][..],
                "every ip-range or gateway must have a corresponding subnet",
            ),
            (
                &["foo"][..],
                &["10.1.0.1"][..],
                "invalid subnet: invalid CIDR address: foo",
            ),
        ] {
            assert_eq!(
                ipam_config(&s(subnets), &s(gateways)).unwrap_err(),
                want,
                "{subnets:?} {gateways:?}"
            );
        }
        assert_eq!(
            ipam_config(&s(&["10.1.0.0/16", "10.2.0.0/16"]), &s(&["10.2.0.1"])).unwrap(),
            [
                ("10.1.0.0/16".to_string(), String::new()),
                ("10.2.0.0/16".to_string(), "10.2.0.1".to_string())
            ]
        );
        assert!(ipam_config(&s(&["foo"]), &[]).is_ok());
    }

    /// As docker's daemon (28) words them.
    #[test]
    fn create_refusals_as_docker_daemon() {
        let ipam = |s: &str, g: &str| vec![(s.to_string(), g.to_string())];
        assert_eq!(
            daemon_checks("n", "bridge", &ipam("10.1.0.0/16", "10.1.0.1")),
            Ok(())
        );
        assert_eq!(
            daemon_checks("n", "bridge", &ipam("foo", "")).unwrap_err(),
            "invalid network config:\ninvalid subnet foo: invalid CIDR block notation"
        );
        assert_eq!(
            daemon_checks("n", "bridge", &ipam("10.1.0.1/16", "")).unwrap_err(),
            "invalid network config:\ninvalid subnet 10.1.0.1/16: it should be 10.1.0.0/16"
        );
        assert_eq!(
            daemon_checks("n", "bridge", &ipam("10.1.0.1/16", "10.2.0.1")).unwrap_err(),
            "invalid network config:\n* invalid subnet 10.1.0.1/16: it should be 10.1.0.0/16\n* invalid gateway 10.2.0.1: parent subnet 10.1.0.1/16 doesn't contain this address"
        );
        assert_eq!(
            daemon_checks("n", "bridge", &ipam("10.1.0.0/16", "10.1.0.1/24")).unwrap_err(),
            "invalid network config:\ninvalid gateway 10.1.0.1/24: invalid address"
        );
        assert_eq!(
            daemon_checks("n", "bridge", &ipam("10.1.0.0/16", "::1")).unwrap_err(),
            "invalid network config:\ninvalid gateway ::1: parent subnet is an IPv4 block"
        );
        assert_eq!(
            daemon_checks("n", "bridge", &ipam("10.1.0.0/016", "")).unwrap_err(),
            "invalid network config:\ninvalid subnet 10.1.0.0/016: invalid CIDR block notation"
        );
        assert_eq!(
            daemon_checks("bridge", "bridge", &[]).unwrap_err(),
            "operation is not permitted on predefined bridge network "
        );
        assert_eq!(
            daemon_checks("n", "foo", &[]).unwrap_err(),
            "plugin \"foo\" not found"
        );
        assert_eq!(
            daemon_checks("n", "host", &[]).unwrap_err(),
            "only one instance of \"host\" network is allowed"
        );
        assert!(daemon_checks("n", "overlay", &[])
            .unwrap_err()
            .starts_with("This node is not a swarm manager."));
        // The address checks come before the driver's.
        assert!(daemon_checks("n", "foo", &ipam("foo", ""))
            .unwrap_err()
            .starts_with("invalid network config"));
    }

    #[test]
    fn labels_and_options() {
        assert_eq!(
            validate_label("=x").unwrap_err(),
            "invalid label '=x': empty name"
        );
        assert_eq!(
            validate_label(" a b=1").unwrap_err(),
            "label 'a b' contains whitespaces"
        );
        assert!(validate_label("a=b").is_ok() && validate_label("a").is_ok());
        let m = kv_map(&["a=b".into(), "c".into(), "d=e=f".into()]);
        assert_eq!(m.get("c").unwrap(), "");
        assert_eq!(m.get("d").unwrap(), "e=f");
    }

    #[test]
    fn prune_choice_and_report() {
        let mut old = net("old", ID);
        old.created_at = "2020-01-01T00:00:00Z".into();
        old.labels.insert("tier".into(), "db".into());
        let new = net("new", ID);
        let mut busy = net("busy", ID);
        busy.containers.insert(
            "c".into(),
            NetworkMember {
                name: "w".into(),
                endpoint_id: String::new(),
                mac_address: String::new(),
                ipv4_address: String::new(),
            },
        );
        let bridge = builtin().remove(0);
        let f = |v: &[&str]| {
            prune_filters(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        let none = f(&[]);
        assert!(prunable(&old, &none) && prunable(&new, &none));
        assert!(!prunable(&busy, &none) && !prunable(&bridge, &none));
        let until = f(&["until=24h"]);
        assert!(prunable(&old, &until));
        // `net` makes its networks in 2026: after 2021.
        assert!(!prunable(&new, &f(&["until=2021-01-01T00:00:00Z"])));
        assert!(prunable(&old, &f(&["until=2021-01-01"])));
        assert!(prunable(&old, &f(&["label=tier=db"])) && !prunable(&new, &f(&["label=tier"])));
        assert!(!prunable(&old, &f(&["label!=tier"])) && prunable(&new, &f(&["label!=tier"])));
        assert_eq!(
            prune_filters(&["dangling=true".into()]).unwrap_err(),
            (
                "Error response from daemon: invalid filter 'dangling'".into(),
                1
            )
        );
        assert_eq!(
            prune_filters(&["until=soon".into()]).unwrap_err().0,
            "Error response from daemon: failed to parse value as time or duration: \"soon\""
        );
        assert_eq!(prune_filters(&["x".into()]).unwrap_err().1, 125);
        assert_eq!(
            prune_report(&["a".into(), "b".into()]),
            "Deleted Networks:\na\nb\n\n"
        );
        assert_eq!(prune_report(&[]), "");
        use super::super::events::go_duration;
        assert_eq!(go_duration("1h30m"), Some(5400 * 1_000_000_000));
        assert_eq!(go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(go_duration("10"), None);
        // Go's rules, which the old f64 parser did not keep: a sign only
        // in front, no empty unit, no overflow past i64, exact fractions.
        assert_eq!(go_duration("-1m"), Some(-60_000_000_000));
        assert_eq!(go_duration("1m-1s"), None);
        assert_eq!(go_duration("."), None);
        assert_eq!(go_duration("3000000h"), None);
        assert_eq!(go_duration("0.1s"), Some(100_000_000));
        assert_eq!(go_duration("1.000000001s"), Some(1_000_000_001));
    }

    #[test]
    fn ids() {
        assert_eq!(short_id(ID), "3c0a2a5a0c8e");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }
}
