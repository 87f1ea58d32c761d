//! `run`/`create`'s networking flags (`--network`, `-p`, `--dns`,
//! `--add-host`, ...), checked as docker's CLI (28) checks them and worded
//! as it words its refusals; what only docker's daemon refuses is worded
//! as the daemon words it.

use crate::ports;
use berth_host::args::ArgError;
use berth_protocol::ContainerConfig;

/// The daemon's warning for `-p` with `--network host`.
pub const HOST_PORTS_WARNING: &str = "Published ports are discarded when using host network mode";

/// The networking flags of `run` and `create`.
#[derive(clap::Args, Debug, Default)]
pub struct NetworkArgs {
    /// Connect a container to a network
    #[arg(long, alias = "net", allow_hyphen_values = true)]
    network: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long, alias = "net-alias", allow_hyphen_values = true)]
    network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long, allow_hyphen_values = true)]
    ip: Option<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long, allow_hyphen_values = true)]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long, allow_hyphen_values = true)]
    expose: Vec<String>,
    /// Set custom DNS servers
    #[arg(long, allow_hyphen_values = true)]
    dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long, allow_hyphen_values = true)]
    dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long, alias = "dns-opt", allow_hyphen_values = true)]
    dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long, allow_hyphen_values = true)]
    add_host: Vec<String>,
    /// Container NIS domain name
    #[arg(long, allow_hyphen_values = true)]
    domainname: Option<String>,
    /// Add link to another container
    #[arg(long, allow_hyphen_values = true)]
    link: Vec<String>,
}

/// docker's `NetworkMode` kinds, by name.
fn is_user_defined(mode: &str) -> bool {
    !matches!(mode, "default" | "bridge" | "host" | "none") && !mode.starts_with("container:")
}

/// docker's `ValidateIPAddress`: the address in canonical form.
fn validate_ip(val: &str) -> Result<String, String> {
    match ports::parse_ip(val.trim()) {
        Some(std::net::IpAddr::V6(v6)) => Ok(v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string())),
        Some(ip) => Ok(ip.to_string()),
        None => Err(format!("IP address is not correctly formatted: {val}")),
    }
}

/// One label of docker's domain pattern: letters and digits, with
/// hyphens inside.
fn domain_label(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// docker's `ValidateDNSSearch` (its `domainRegexp`, whose `(:?` groups
/// let a colon precede a label): the domain without a trailing dot.
fn validate_dns_search(val: &str) -> Result<String, String> {
    let val = val.trim_matches(' ');
    if val == "." {
        return Ok(val.into());
    }
    let bad = || format!("{val} is not a valid domain");
    if !val.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Err(bad());
    }
    let body = val.trim_end_matches([' ', '\t', '\n', '\r', '\x0c']);
    let body = body.strip_suffix('.').unwrap_or(body);
    // Up to two colons before the first label (the pattern's `(:?`).
    let mut rest = body;
    for _ in 0..2 {
        rest = rest.strip_prefix(':').unwrap_or(rest);
    }
    if colon_dot_ok(rest) && body.len() < 255 {
        Ok(body.to_string())
    } else {
        Err(bad())
    }
}

/// The domain pattern with a colon allowed just before and just after
/// each dot (`a:.:b`).
fn colon_dot_ok(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.iter().enumerate().all(|(i, p)| {
        let p = if i > 0 {
            p.strip_prefix(':').unwrap_or(p)
        } else {
            p
        };
        let p = if i + 1 < parts.len() {
            p.strip_suffix(':').unwrap_or(p)
        } else {
            p
        };
        domain_label(p)
    })
}

/// docker's `ValidateExtraHost`: `NAME:IP`, `NAME=IP` or an address in
/// brackets, sent as `NAME:IP`.
fn validate_extra_host(val: &str) -> Result<String, String> {
    let split = val.split_once('=').or_else(|| val.split_once(':'));
    let Some((name, ip)) = split.filter(|(k, _)| !k.is_empty() && !k.contains(':')) else {
        return Err(format!("bad format for add-host: {val:?}"));
    };
    let mut ip = ip;
    if ip != "host-gateway" {
        if ip.len() > 2 && ip.starts_with('[') && ip.ends_with(']') {
            ip = &ip[1..ip.len() - 1];
        }
        if validate_ip(ip).is_err() {
            return Err(format!("invalid IP address in add-host: {ip:?}"));
        }
    }
    Ok(format!("{name}:{ip}"))
}

/// docker's `ValidateLink`: `NAME` or `NAME:ALIAS`.
fn validate_link(val: &str) -> Result<(), String> {
    if val.is_empty() {
        return Err("empty string specified for links".into());
    }
    if val.splitn(3, ':').count() > 2 {
        return Err(format!("bad format for links: {val}"));
    }
    Ok(())
}

/// One `--network` value: a name, or docker's long syntax
/// (`name=NET,alias=A,ip=IP`).
#[derive(Debug, Default, PartialEq)]
struct Attachment {
    target: String,
    aliases: Vec<String>,
    ipv4: Option<String>,
}

/// Whether docker reads `value` as the long syntax: its `\w+=\w+` pattern
/// found anywhere in it.
fn long_syntax(value: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    value.char_indices().any(|(i, c)| {
        c == '='
            && value[..i].chars().next_back().is_some_and(word)
            && value[i + 1..].chars().next().is_some_and(word)
    })
}

/// docker's `NetworkOpt.Set`; the error is the flag's reason. berth's
/// engine takes a name, aliases and an IPv4 address per network.
fn parse_attachment(value: &str) -> Result<Attachment, String> {
    if !long_syntax(value) {
        return Ok(Attachment {
            target: value.into(),
            ..Default::default()
        });
    }
    let mut a = Attachment::default();
    for field in value.split(',') {
        // docker lower-cases the whole field, value included.
        let lower = field.to_lowercase();
        let Some((key, val)) = lower.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(format!("invalid field {field}"));
        };
        let (key, val) = (key.trim(), val.trim().to_string());
        match key {
            "name" => a.target = val,
            "alias" => a.aliases.push(val),
            "ip" => a.ipv4 = Some(val),
            "ip6" | "mac-address" | "link-local-ip" | "driver-opt" | "gw-priority" => {
                return Err(format!(
                    "berth does not support the network option {key} yet"
                ))
            }
            _ => return Err(format!("invalid field key {key}")),
        }
    }
    if a.target.is_empty() {
        return Err("network name/id is not specified".into());
    }
    Ok(a)
}

impl NetworkArgs {
    /// Checks the flags as docker does and fills `cfg`'s networking
    /// fields.
    pub fn apply(&self, cfg: &mut ContainerConfig) -> Result<(), ArgError> {
        let flag = |flag: &'static str, value: &str, reason: String| ArgError::Flag {
            flag,
            value: value.to_string(),
            reason,
        };
        // What docker checks as it reads each flag.
        for h in &self.add_host {
            cfg.extra_hosts
                .push(validate_extra_host(h).map_err(|e| flag("--add-host", h, e))?);
        }
        for d in &self.dns {
            cfg.dns
                .push(validate_ip(d).map_err(|e| flag("--dns", d, e))?);
        }
        for s in &self.dns_search {
            cfg.dns_search
                .push(validate_dns_search(s).map_err(|e| flag("--dns-search", s, e))?);
        }
        for l in &self.link {
            validate_link(l).map_err(|e| flag("--link", l, e))?;
        }
        let mut nets = Vec::new();
        for n in &self.network {
            nets.push(parse_attachment(n).map_err(|e| flag("--network", n, e))?);
        }
        // Then what it checks of the whole command line.
        for p in &self.publish {
            cfg.ports
                .extend(ports::parse_publish(p).map_err(ArgError::Other)?);
        }
        for e in &self.expose {
            for p in ports::parse_expose(e).map_err(ArgError::Other)? {
                if !cfg.expose.contains(&p) {
                    cfg.expose.push(p);
                }
            }
        }
        let primary = self.attachments(nets)?;
        let mode = primary.target.as_str();
        if mode.starts_with("container:") || mode == "container" {
            return Err(ArgError::Other(format!(
                "--network {mode}: sharing another container's network is not supported by berth yet"
            )));
        }
        // What docker's daemon refuses.
        if mode == "host" && !self.link.is_empty() {
            return Err(ArgError::Daemon(
                "conflicting options: host type networking can't be used with links. This would result in undefined behavior".into(),
            ));
        }
        if let Some(ip) = &primary.ipv4 {
            let name = if mode == "default" { "bridge" } else { mode };
            let mut errs = Vec::new();
            if !is_user_defined(mode) {
                errs.push(
                    "user specified IP address is supported on user defined networks only"
                        .to_string(),
                );
            }
            let v4 = ports::parse_ip(ip).filter(|a| {
                !a.is_unspecified()
                    && (a.is_ipv4()
                        || matches!(a, std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()))
            });
            if v4.is_none() {
                errs.push(format!("invalid IPv4 address: {ip}"));
            }
            if !errs.is_empty() {
                let joined = if errs.len() == 1 {
                    errs.remove(0)
                } else {
                    format!("* {}", errs.join("\n* "))
                };
                return Err(ArgError::Daemon(format!(
                    "invalid config for network {name}: {joined}"
                )));
            }
        }
        cfg.network_mode = (mode != "default").then(|| primary.target.clone());
        cfg.network_aliases = primary.aliases;
        cfg.ipv4_address = primary.ipv4;
        cfg.publish_all = self.publish_all;
        cfg.dns_options = self.dns_option.clone();
        cfg.domainname = self.domainname.clone();
        cfg.links = self.link.clone();
        Ok(())
    }

    /// docker's `parseNetworkOpts`: the container options go to the first
    /// network; the result is the one network berth attaches at create.
    fn attachments(&self, nets: Vec<Attachment>) -> Result<Attachment, ArgError> {
        let other = |m: &str| ArgError::Other(m.to_string());
        let mut nets = if nets.is_empty() {
            vec![Attachment {
                target: "default".into(),
                ..Default::default()
            }]
        } else {
            nets
        };
        let first = &mut nets[0];
        if !first.aliases.is_empty() && !self.network_alias.is_empty() {
            return Err(other(
                "conflicting options: cannot specify both --network-alias and per-network alias",
            ));
        }
        if first.ipv4.is_some() && self.ip.is_some() {
            return Err(other(
                "conflicting options: cannot specify both --ip and per-network IPv4 address",
            ));
        }
        if !self.network_alias.is_empty() {
            first.aliases = self.network_alias.clone();
        }
        if self.ip.is_some() {
            first.ipv4 = self.ip.clone();
        }
        let (mut user, mut builtin) = (false, false);
        let mut seen: Vec<&str> = Vec::new();
        for n in &nets {
            if is_user_defined(&n.target) {
                user = true;
            } else {
                builtin = true;
            }
            if n.target.trim().is_empty() {
                return Err(other("no name set for network"));
            }
            if !is_user_defined(&n.target) && !n.aliases.is_empty() {
                return Err(other(
                    "network-scoped aliases are only supported for user-defined networks",
                ));
            }
            if seen.contains(&n.target.as_str()) {
                return Err(ArgError::Other(format!(
                    "network {:?} is specified multiple times",
                    n.target
                )));
            }
            seen.push(&n.target);
        }
        if user && builtin {
            return Err(other(
                "conflicting options: cannot attach both user-defined and non-user-defined network-modes",
            ));
        }
        if nets.len() > 1 {
            return Err(ArgError::Other(format!(
                "berth attaches a new container to one network (--network {}); connect it to the others with `berth network connect` before it starts",
                nets[0].target
            )));
        }
        Ok(nets.remove(0))
    }
}

/// The warnings docker's daemon gives for `cfg`, printed before the
/// engine's own.
pub fn warnings(cfg: &ContainerConfig) -> Vec<String> {
    let mut out = Vec::new();
    if cfg.network_mode.as_deref() == Some("host") && !cfg.ports.is_empty() {
        out.push(HOST_PORTS_WARNING.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        net: NetworkArgs,
    }

    fn apply(args: &[&str]) -> Result<ContainerConfig, String> {
        let mut argv = vec!["x"];
        argv.extend_from_slice(args);
        let cmd = Cmd::try_parse_from(argv).map_err(|e| e.to_string())?;
        let mut cfg = ContainerConfig::default();
        cmd.net.apply(&mut cfg).map(|()| cfg).map_err(|e| match e {
            ArgError::Flag {
                flag,
                value,
                reason,
            } => format!("invalid argument {value:?} for \"{flag}\" flag: {reason}"),
            ArgError::Other(m) => m,
            ArgError::Daemon(m) => format!("Error response from daemon: {m}"),
        })
    }

    #[test]
    fn add_host_values() {
        let cfg = apply(&[
            "--add-host",
            "a:1.2.3.4",
            "--add-host",
            "b=10.0.0.1",
            "--add-host",
            "c:::1",
            "--add-host",
            "d=[::1]",
            "--add-host",
            "e:[1.2.3.4]",
            "--add-host",
            "gw:host-gateway",
        ])
        .unwrap();
        assert_eq!(
            cfg.extra_hosts,
            [
                "a:1.2.3.4",
                "b:10.0.0.1",
                "c:::1",
                "d:::1",
                "e:1.2.3.4",
                "gw:host-gateway"
            ]
        );
    }

    /// As docker CLI 28.2.2 words them.
    #[test]
    fn add_host_refusals_as_docker() {
        for (v, want) in [
            ("foo", "bad format for add-host: \"foo\""),
            (":1.2.3.4", "bad format for add-host: \":1.2.3.4\""),
            ("foo:", "invalid IP address in add-host: \"\""),
            ("foo:bad", "invalid IP address in add-host: \"bad\""),
            ("a:b:c", "invalid IP address in add-host: \"b:c\""),
            (
                "foo:1.2.3.4.5",
                "invalid IP address in add-host: \"1.2.3.4.5\"",
            ),
            ("foo:[]", "invalid IP address in add-host: \"[]\""),
        ] {
            assert_eq!(
                apply(&["--add-host", v]).unwrap_err(),
                format!("invalid argument {v:?} for \"--add-host\" flag: {want}")
            );
        }
    }

    #[test]
    fn dns_flags() {
        let cfg = apply(&[
            "--dns",
            "8.8.8.8",
            "--dns",
            " 0:0:0:0:0:0:0:1",
            "--dns-search",
            "example.com.",
            "--dns-search",
            ".",
            "--dns-opt",
            "ndots:2",
            "--dns-option",
            "rotate",
            "--domainname",
            "corp",
        ])
        .unwrap();
        assert_eq!(cfg.dns, ["8.8.8.8", "::1"]);
        assert_eq!(cfg.dns_search, ["example.com", "."]);
        assert_eq!(cfg.dns_options, ["ndots:2", "rotate"]);
        assert_eq!(cfg.domainname.as_deref(), Some("corp"));
        assert_eq!(
            apply(&["--dns", "foo"]).unwrap_err(),
            "invalid argument \"foo\" for \"--dns\" flag: IP address is not correctly formatted: foo"
        );
        for bad in ["-bad", "123", "a b", "foo..com", "a-.com"] {
            assert_eq!(
                apply(&["--dns-search", bad]).unwrap_err(),
                format!("invalid argument {bad:?} for \"--dns-search\" flag: {bad} is not a valid domain")
            );
        }
        // docker's pattern lets colons in around labels.
        assert_eq!(validate_dns_search("::a.b").unwrap(), "::a.b");
        assert_eq!(validate_dns_search("a:.:b").unwrap(), "a:.:b");
    }

    #[test]
    fn links_and_networks() {
        let cfg = apply(&[
            "--network",
            "mynet",
            "--network-alias",
            "web",
            "--net-alias",
            "www",
            "--ip",
            "172.20.0.5",
            "--link",
            "db:database",
        ])
        .unwrap();
        assert_eq!(cfg.network_mode.as_deref(), Some("mynet"));
        assert_eq!(cfg.network_aliases, ["web", "www"]);
        assert_eq!(cfg.ipv4_address.as_deref(), Some("172.20.0.5"));
        assert_eq!(cfg.links, ["db:database"]);
        let cfg = apply(&["--net", "name=MyNet,alias=a,ip=10.0.0.2"]).unwrap();
        assert_eq!(cfg.network_mode.as_deref(), Some("mynet"));
        assert_eq!(cfg.network_aliases, ["a"]);
        assert_eq!(apply(&[]).unwrap().network_mode, None);
        assert_eq!(apply(&["--network", "default"]).unwrap().network_mode, None);
        assert_eq!(
            apply(&["--network", "none"])
                .unwrap()
                .network_mode
                .as_deref(),
            Some("none")
        );
    }

    /// As docker CLI 28.2.2 and its daemon word them.
    #[test]
    fn network_refusals_as_docker() {
        for (args, want) in [
            (
                &["--network", "none", "--network-alias", "a"][..],
                "network-scoped aliases are only supported for user-defined networks",
            ),
            (
                &["--network-alias", "a"][..],
                "network-scoped aliases are only supported for user-defined networks",
            ),
            (
                &["--net", "host", "--net-alias", "a"][..],
                "network-scoped aliases are only supported for user-defined networks",
            ),
            (&["--network", ""][..], "no name set for network"),
            (
                &["--network", "host", "--network", "b"][..],
                "conflicting options: cannot attach both user-defined and non-user-defined network-modes",
            ),
            (
                &["--network", "a", "--network", "a"][..],
                "network \"a\" is specified multiple times",
            ),
            (
                &["--link", "a:b:c"][..],
                "invalid argument \"a:b:c\" for \"--link\" flag: bad format for links: a:b:c",
            ),
            (
                &["--link", ""][..],
                "invalid argument \"\" for \"--link\" flag: empty string specified for links",
            ),
            (
                &["--network", "host", "--link", "a:b"][..],
                "Error response from daemon: conflicting options: host type networking can't be used with links. This would result in undefined behavior",
            ),
            (
                &["--ip", "1.2.3.4"][..],
                "Error response from daemon: invalid config for network bridge: user specified IP address is supported on user defined networks only",
            ),
            (
                &["--network", "mynet", "--ip", "foo"][..],
                "Error response from daemon: invalid config for network mynet: invalid IPv4 address: foo",
            ),
            (
                &["--network", "none", "--ip", "::1"][..],
                "Error response from daemon: invalid config for network none: * user specified IP address is supported on user defined networks only\n* invalid IPv4 address: ::1",
            ),
            (
                &["--network", "name=a,bogus=1"][..],
                "invalid argument \"name=a,bogus=1\" for \"--network\" flag: invalid field key bogus",
            ),
            (
                &["--network", "alias=a"][..],
                "invalid argument \"alias=a\" for \"--network\" flag: network name/id is not specified",
            ),
        ] {
            assert_eq!(apply(args).unwrap_err(), want, "{args:?}");
        }
        // berth's own: one network at create; no container network mode.
        assert!(apply(&["--network", "a", "--network", "b"])
            .unwrap_err()
            .contains("network connect"));
        assert!(apply(&["--network", "container:web"])
            .unwrap_err()
            .contains("not supported"));
        // none with a link is accepted (docker ignores the link).
        assert!(apply(&["--network", "none", "--link", "a"]).is_ok());
    }

    #[test]
    fn ports_and_warnings() {
        let cfg = apply(&[
            "-p",
            "8080:80",
            "--publish",
            "[::1]:9000-9001:90-91/udp",
            "-P",
            "--expose",
            "443",
            "--expose",
            "7000-7001/udp",
            "--expose",
            "443/tcp",
        ])
        .unwrap();
        assert_eq!(cfg.ports.len(), 3);
        assert_eq!(cfg.ports[2].host_ip, "::1");
        assert_eq!(cfg.ports[2].host_port, 9001);
        assert!(cfg.publish_all);
        assert_eq!(cfg.expose, ["443/tcp", "7000/udp", "7001/udp"]);
        assert!(warnings(&cfg).is_empty());
        let cfg = apply(&["--network", "host", "-p", "80:80"]).unwrap();
        assert_eq!(warnings(&cfg), [HOST_PORTS_WARNING]);
        assert_eq!(
            apply(&["-p", "99999:80"]).unwrap_err(),
            "invalid hostPort: 99999"
        );
        assert_eq!(
            apply(&["--expose", "80:80"]).unwrap_err(),
            "invalid port format for --expose: 80:80"
        );
    }
}
