//! Ports: `-p`/`--publish` and `--expose` parsed as docker's CLI (28, with
//! go-connections' `nat` package) parses them and worded as it words its
//! refusals; which placements can publish; and published ports shown as
//! `ps`, `port` and `inspect` show them.
//!
//! The parsers return docker's message alone; the caller lays it out.

use berth_protocol::{ContainerConfig, PortBinding, PortProto, PublishedPort};
use serde_json::{json, Map, Value};

/// Go's `strconv.ParseUint(s, 10, 16)`, failing with Go's words.
fn parse_u16(s: &str) -> Result<u16, String> {
    let err = |why: &str| format!("strconv.ParseUint: parsing {s:?}: {why}");
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("invalid syntax"));
    }
    s.parse::<u64>()
        .ok()
        .and_then(|v| u16::try_from(v).ok())
        .ok_or_else(|| err("value out of range"))
}

/// go-connections' `ParsePortRange`: `80` or `8000-8010` (what follows a
/// second `-` is ignored, as there).
pub fn parse_port_range(ports: &str) -> Result<(u16, u16), String> {
    if ports.is_empty() {
        return Err("empty string specified for ports".into());
    }
    let Some((first, rest)) = ports.split_once('-') else {
        let p = parse_u16(ports)?;
        return Ok((p, p));
    };
    let start = parse_u16(first)?;
    let end = parse_u16(rest.split('-').next().unwrap_or(""))?;
    if end < start {
        return Err(format!("invalid range specified for port: {ports}"));
    }
    Ok((start, end))
}

/// go-connections' `SplitProtoPort`: `80/udp` is (`udp`, `80`); a missing
/// protocol is `tcp`; an empty port gives two empty strings.
pub fn split_proto_port(raw: &str) -> (&str, &str) {
    let parts: Vec<&str> = raw.split('/').collect();
    if raw.is_empty() || parts[0].is_empty() {
        return ("", "");
    }
    match parts.get(1) {
        None => ("tcp", raw),
        Some(&"") => ("tcp", parts[0]),
        Some(p) => (p, parts[0]),
    }
}

/// go-connections' `splitParts`: `[ip:][host:]container`, the address being
/// everything before the last two colons.
fn split_parts(raw: &str) -> (String, &str, &str) {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let container = parts[n - 1];
    match n {
        1 => (String::new(), "", container),
        2 => (String::new(), parts[0], container),
        _ => (parts[..n - 2].join(":"), parts[n - 2], container),
    }
}

/// Go's `net.SplitHostPort`, for its host part and its error text.
fn split_host_port(hostport: &str) -> Result<&str, String> {
    let err = |why: &str| format!("address {hostport}: {why}");
    let Some(i) = hostport.rfind(':') else {
        return Err(err("missing port in address"));
    };
    let (host, j, k) = if hostport.starts_with('[') {
        let Some(end) = hostport.find(']') else {
            return Err(err("missing ']' in address"));
        };
        if end + 1 == hostport.len() {
            return Err(err("missing port in address"));
        }
        if end + 1 != i {
            return Err(if hostport.as_bytes()[end + 1] == b':' {
                err("too many colons in address")
            } else {
                err("missing port in address")
            });
        }
        (&hostport[1..end], 1, end + 1)
    } else {
        let host = &hostport[..i];
        if host.contains(':') {
            return Err(err("too many colons in address"));
        }
        (host, 0, 0)
    };
    if hostport[j..].contains('[') {
        return Err(err("unexpected '[' in address"));
    }
    if hostport[k..].contains(']') {
        return Err(err("unexpected ']' in address"));
    }
    Ok(host)
}

/// Go's `net.ParseIP` (no zones, no leading zeros in IPv4).
pub fn parse_ip(s: &str) -> Option<std::net::IpAddr> {
    s.parse().ok()
}

/// docker's CLI `convertToStandardNotation`: the long `-p` syntax
/// (`published=8080,target=80,protocol=udp`) as `8080:80/udp`.
fn standard_notation(raw: &str) -> Result<String, String> {
    if !raw.contains('=') {
        return Ok(raw.to_string());
    }
    let (mut published, mut target, mut protocol) = ("", "", "tcp");
    for param in raw.split(',') {
        match param.split_once('=') {
            Some((k, v)) if !k.is_empty() => match k {
                "published" => published = v,
                "target" => target = v,
                "protocol" => protocol = v,
                _ => {}
            },
            _ => {
                return Err(format!(
                    "invalid publish opts format (should be name=value but got '{param}')"
                ))
            }
        }
    }
    Ok(format!("{published}:{target}/{protocol}"))
}

/// One `-p` spec as the bindings it asks for: go-connections'
/// `ParsePortSpec`, a container range expanded one port at a time, a host
/// range for one container port kept as a range for the engine to pick
/// from. The error is docker's message (berth's own for `sctp`, which
/// docker takes and berth cannot publish).
pub fn parse_publish(spec: &str) -> Result<Vec<PortBinding>, String> {
    let raw = standard_notation(spec)?;
    let (mut ip, host_port, container) = split_parts(&raw);
    let (proto, container) = split_proto_port(container);
    if ip.starts_with('[') {
        let with_port = format!("{ip}:");
        ip = split_host_port(&with_port)
            .map_err(|e| format!("invalid IP address {ip}: {e}"))?
            .to_string();
    }
    if !ip.is_empty() && parse_ip(&ip).is_none() {
        return Err(format!("invalid IP address: {ip}"));
    }
    if container.is_empty() {
        return Err(format!("no port specified: {raw}<empty>"));
    }
    let (start, end) =
        parse_port_range(container).map_err(|_| format!("invalid containerPort: {container}"))?;
    let (host_start, host_end) = if host_port.is_empty() {
        (0, 0)
    } else {
        parse_port_range(host_port).map_err(|_| format!("invalid hostPort: {host_port}"))?
    };
    if !host_port.is_empty() && end - start != host_end - host_start && end != start {
        return Err(format!(
            "invalid ranges specified for container and host Ports: {container} and {host_port}"
        ));
    }
    let proto = match proto.to_ascii_lowercase().as_str() {
        "sctp" => {
            return Err(format!(
                "sctp ports ({spec}) cannot be published by berth yet; publish tcp or udp ports"
            ))
        }
        p => PortProto::parse(p).ok_or_else(|| format!("invalid proto: {proto}"))?,
    };
    Ok((0..=end - start)
        .map(|i| {
            let (host_port, host_port_end) = if host_port.is_empty() {
                (0, 0)
            } else if start == end && host_start != host_end {
                (host_start, host_end)
            } else {
                (host_start + i, 0)
            };
            PortBinding {
                host_ip: ip.clone(),
                host_port,
                host_port_end,
                container_port: start + i,
                proto,
            }
        })
        .collect())
}

/// One `--expose` value as the ports it names (`80/tcp`, one per port of
/// a range). The error is docker's message (berth's own for a protocol
/// other than tcp and udp, which docker passes on unchecked).
pub fn parse_expose(e: &str) -> Result<Vec<String>, String> {
    if e.contains(':') {
        return Err(format!("invalid port format for --expose: {e}"));
    }
    let (proto, port) = split_proto_port(e);
    let (start, end) = parse_port_range(port)
        .map_err(|err| format!("invalid range format for --expose: {e}, error: {err}"))?;
    let proto = proto.to_ascii_lowercase();
    if PortProto::parse(&proto).is_none() {
        return Err(format!(
            "{proto} ports (--expose {e}) are not supported by berth; expose tcp or udp ports"
        ));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// The bindings a container publishes, as the engine makes them: `-p`
/// and, with `-P`, each port the image or `--expose` exposes that `-p`
/// does not publish, on every address and a free port. `image_exposed`
/// is the image config's `ExposedPorts` keys (`80/tcp`, `53/udp`, `8080`).
pub fn run_bindings(cfg: &ContainerConfig, image_exposed: &[String]) -> Vec<PortBinding> {
    let mut out = cfg.ports.clone();
    if !cfg.publish_all {
        return out;
    }
    for p in image_exposed.iter().chain(&cfg.expose) {
        let (proto, port) = split_proto_port(p);
        let (Ok(port), Some(proto)) = (port.parse::<u16>(), PortProto::parse(proto)) else {
            continue;
        };
        if !out
            .iter()
            .any(|b| b.container_port == port && b.proto == proto)
        {
            out.push(PortBinding {
                host_ip: String::new(),
                host_port: 0,
                host_port_end: 0,
                container_port: port,
                proto,
            });
        }
    }
    out
}

/// The `ExposedPorts` keys of an image config (JSON); none when it
/// cannot be read (the image is checked elsewhere).
pub fn image_exposed(config: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<Value>(config) else {
        return Vec::new();
    };
    v["config"]["ExposedPorts"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// In the machine VM: has the host forwarder bind this container's ports
/// now. On failure the container is stopped and docker's error returned.
pub fn publish_on_host(conn: &mut crate::engine::Engine, id: &str) -> Result<(), String> {
    let Ok(ports) = conn.container_ports(id) else {
        return Ok(());
    };
    if ports.is_empty() {
        return Ok(());
    }
    let failed = crate::machine::Machine::default_machine().sync_ports();
    for p in &ports {
        let addr = join_host_port(&p.host_ip, &p.host_port.to_string());
        let proto = p.proto.as_str();
        // The forwarder names its sockets `ADDR/PROTO` (one of an older
        // build `ADDR`, TCP only).
        let named = format!("{addr}/{proto}");
        let found = failed
            .iter()
            .find(|(a, _)| *a == named || (p.proto == PortProto::Tcp && *a == addr));
        if let Some((_, e)) = found {
            let _ = conn.container_kill(id, 9);
            return Err(format!(
                "driver failed programming external connectivity on endpoint {id}: failed to bind host port for {addr}:{}/{proto}: {}",
                p.container_port,
                e.split(" (os error").next().unwrap_or(e).to_lowercase()
            ));
        }
    }
    Ok(())
}

/// Go's `net.JoinHostPort`.
pub fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `80/tcp` for a published port.
fn port_key(port: u16, proto: PortProto) -> String {
    format!("{port}/{}", proto.as_str())
}

/// One entry of docker's container summary `Ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SummaryPort {
    private: u16,
    public: u16,
    proto: String,
    ip: String,
}

/// The summary ports of a running container: its published ports, and
/// its exposed ports that are not published (without an address).
fn summary_ports(published: &[PublishedPort], exposed: &[String]) -> Vec<SummaryPort> {
    let mut out: Vec<SummaryPort> = published
        .iter()
        .map(|p| SummaryPort {
            private: p.container_port,
            public: p.host_port,
            proto: p.proto.as_str().to_string(),
            ip: p.host_ip.clone(),
        })
        .collect();
    for e in exposed {
        let (proto, port) = split_proto_port(e);
        let Ok(private) = port.parse::<u16>() else {
            continue;
        };
        if !out.iter().any(|p| p.private == private && p.proto == proto) {
            out.push(SummaryPort {
                private,
                public: 0,
                proto: proto.to_string(),
                ip: String::new(),
            });
        }
    }
    out
}

/// docker's `formGroup`.
fn form_group(key: &str, start: u16, last: u16) -> String {
    let (ip, kind) = match key.split_once('/') {
        Some((ip, kind)) => (ip, kind),
        None => ("", key),
    };
    let mut group = start.to_string();
    if start != last {
        group = format!("{group}-{last}");
    }
    if !ip.is_empty() {
        group = format!("{}->{group}", join_host_port(ip, &group));
    }
    format!("{group}/{kind}")
}

/// `ps`'s PORTS column: docker 28's `DisplayablePorts` (consecutive ports
/// published on the same port number grouped, IPv6 addresses bracketed).
pub fn ps_column(published: &[PublishedPort], exposed: &[String]) -> String {
    let mut ports = summary_ports(published, exposed);
    ports.sort_by(|a, b| {
        (a.private, &a.ip, a.public, &a.proto).cmp(&(b.private, &b.ip, b.public, &b.proto))
    });
    let mut groups: Vec<(String, u16, u16)> = Vec::new();
    let mut result = Vec::new();
    let mut mappings = Vec::new();
    for p in &ports {
        let mut key = p.proto.clone();
        if !p.ip.is_empty() {
            if p.public != p.private {
                mappings.push(format!(
                    "{}->{}/{}",
                    join_host_port(&p.ip, &p.public.to_string()),
                    p.private,
                    p.proto
                ));
                continue;
            }
            key = format!("{}/{}", p.ip, p.proto);
        }
        match groups.iter_mut().find(|g| g.0 == key) {
            None => groups.push((key, p.private, p.private)),
            Some(g) if u32::from(p.private) == u32::from(g.2) + 1 => g.2 = p.private,
            Some(g) => {
                result.push(form_group(&g.0, g.1, g.2));
                g.1 = p.private;
                g.2 = p.private;
            }
        }
    }
    result.extend(groups.iter().map(|g| form_group(&g.0, g.1, g.2)));
    result.extend(mappings);
    result.join(", ")
}

/// `berth port`'s lines: every published port (`80/tcp -> 0.0.0.0:8080`),
/// or the addresses of one (`0.0.0.0:8080`), in docker's natural order.
/// `None` when `private` (`80`, `80/udp`) is not published; `Err` with
/// docker's message when it is not a port number.
pub fn port_lines(
    published: &[PublishedPort],
    private: Option<&str>,
) -> Result<Option<Vec<String>>, String> {
    let mut out: Vec<String> = match private {
        Some(arg) => {
            let (port, proto) = arg.split_once('/').unwrap_or((arg, ""));
            let proto = if proto.is_empty() { "tcp" } else { proto };
            if let Err(e) = parse_u16(port) {
                return Err(format!("Error: invalid port ({port}): {e}"));
            }
            let want = format!("{port}/{proto}");
            let found: Vec<String> = published
                .iter()
                .filter(|p| port_key(p.container_port, p.proto) == want)
                .map(|p| join_host_port(&p.host_ip, &p.host_port.to_string()))
                .collect();
            if found.is_empty() {
                return Ok(None);
            }
            found
        }
        None => published
            .iter()
            .map(|p| {
                format!(
                    "{} -> {}",
                    port_key(p.container_port, p.proto),
                    join_host_port(&p.host_ip, &p.host_port.to_string())
                )
            })
            .collect(),
    };
    out.sort_by(|a, b| {
        if natural_less(a, b) {
            std::cmp::Ordering::Less
        } else if natural_less(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    Ok(Some(out))
}

/// A binding's `HostPort` as docker keeps it: the port, a range, or empty
/// for one the engine picks.
fn host_port_text(b: &PortBinding) -> String {
    match (b.host_port, b.host_port_end) {
        (0, _) => String::new(),
        (p, 0) => p.to_string(),
        (p, e) => format!("{p}-{e}"),
    }
}

/// inspect's `HostConfig.PortBindings`: `{"80/tcp": [{"HostIp", "HostPort"}]}`.
pub fn port_bindings_json(ports: &[PortBinding]) -> Value {
    let mut map = Map::new();
    for b in ports {
        let entry = map
            .entry(port_key(b.container_port, b.proto))
            .or_insert_with(|| json!([]));
        if let Value::Array(list) = entry {
            list.push(json!({"HostIp": b.host_ip, "HostPort": host_port_text(b)}));
        }
    }
    Value::Object(map)
}

/// The ports a container exposes: the engine's list (image and
/// `--expose`) and every `-p` container port, as docker merges them.
pub fn exposed(exposed: &[String], ports: &[PortBinding]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let from_ports = ports.iter().map(|b| port_key(b.container_port, b.proto));
    for p in exposed.iter().cloned().chain(from_ports) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// inspect's `NetworkSettings.Ports` of a running container: each exposed
/// port, null when unpublished, else its addresses.
pub fn ports_json(published: &[PublishedPort], exposed: &[String]) -> Value {
    let mut map = Map::new();
    for e in exposed {
        map.insert(e.clone(), Value::Null);
    }
    for p in published {
        let entry = map
            .entry(port_key(p.container_port, p.proto))
            .or_insert(Value::Null);
        if entry.is_null() {
            *entry = json!([]);
        }
        if let Value::Array(list) = entry {
            list.push(json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}));
        }
    }
    Value::Object(map)
}

/// fvbommel/sortorder's `NaturalLess`, the order docker's CLI lists
/// volumes in: runs of digits compare as numbers, and sort before other
/// characters.
pub fn natural_less(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (da, db) = (a[i].is_ascii_digit(), b[j].is_ascii_digit());
        if da != db {
            return da;
        }
        if !da {
            if a[i] != b[j] {
                return a[i] < b[j];
            }
            i += 1;
            j += 1;
            continue;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let (nz_a, nz_b) = (i, j);
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if i - nz_a != j - nz_b {
            return i - nz_a < j - nz_b;
        }
        if a[nz_a..i] != b[nz_b..j] {
            return a[nz_a..i] < b[nz_b..j];
        }
        if nz_a != nz_b {
            return nz_a < nz_b;
        }
    }
    a.len() < b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ip: &str, host: u16, end: u16, port: u16, proto: PortProto) -> PortBinding {
        PortBinding {
            host_ip: ip.into(),
            host_port: host,
            host_port_end: end,
            container_port: port,
            proto,
        }
    }

    const TCP: PortProto = PortProto::Tcp;
    const UDP: PortProto = PortProto::Udp;

    #[test]
    fn publish_forms() {
        assert_eq!(parse_publish("80").unwrap(), [b("", 0, 0, 80, TCP)]);
        assert_eq!(parse_publish("8080:80").unwrap(), [b("", 8080, 0, 80, TCP)]);
        assert_eq!(parse_publish(":80").unwrap(), [b("", 0, 0, 80, TCP)]);
        assert_eq!(parse_publish("0:80").unwrap(), [b("", 0, 0, 80, TCP)]);
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/udp").unwrap(),
            [b("127.0.0.1", 8080, 0, 80, UDP)]
        );
        assert_eq!(
            parse_publish("1.2.3.4::80").unwrap(),
            [b("1.2.3.4", 0, 0, 80, TCP)]
        );
        assert_eq!(parse_publish("80/UDP").unwrap(), [b("", 0, 0, 80, UDP)]);
        // An empty or doubled protocol: what go-connections reads.
        assert_eq!(
            parse_publish("8080:80/").unwrap(),
            [b("", 8080, 0, 80, TCP)]
        );
        assert_eq!(
            parse_publish("8080:80/tcp/udp").unwrap(),
            [b("", 8080, 0, 80, TCP)]
        );
        assert_eq!(
            parse_publish("published=8080,target=80,protocol=udp").unwrap(),
            [b("", 8080, 0, 80, UDP)]
        );
        assert_eq!(parse_publish("target=80").unwrap(), [b("", 0, 0, 80, TCP)]);
    }

    #[test]
    fn publish_ranges() {
        assert_eq!(
            parse_publish("8000-8002:80-82").unwrap(),
            [
                b("", 8000, 0, 80, TCP),
                b("", 8001, 0, 81, TCP),
                b("", 8002, 0, 82, TCP)
            ]
        );
        assert_eq!(
            parse_publish("8000-8010:80").unwrap(),
            [b("", 8000, 8010, 80, TCP)]
        );
        assert_eq!(
            parse_publish("80-81/udp").unwrap(),
            [b("", 0, 0, 80, UDP), b("", 0, 0, 81, UDP)]
        );
        assert_eq!(
            parse_publish("8000-8000:80").unwrap(),
            [b("", 8000, 0, 80, TCP)]
        );
        assert_eq!(
            parse_publish("10.0.0.1:9000-9001:90-91").unwrap(),
            [
                b("10.0.0.1", 9000, 0, 90, TCP),
                b("10.0.0.1", 9001, 0, 91, TCP)
            ]
        );
    }

    #[test]
    fn publish_ipv6() {
        assert_eq!(
            parse_publish("[::1]:8080:80").unwrap(),
            [b("::1", 8080, 0, 80, TCP)]
        );
        assert_eq!(
            parse_publish("[::1]::80").unwrap(),
            [b("::1", 0, 0, 80, TCP)]
        );
        assert_eq!(
            parse_publish("::1:8080:80").unwrap(),
            [b("::1", 8080, 0, 80, TCP)]
        );
        assert_eq!(
            parse_publish("[fe80::1%eth0]:80:80").unwrap_err(),
            "invalid IP address: fe80::1%eth0"
        );
        assert_eq!(
            parse_publish("[::1:8080:80").unwrap_err(),
            "invalid IP address [::1: address [::1:: missing ']' in address"
        );
        assert_eq!(
            parse_publish("[::1]x:8080:80").unwrap_err(),
            "invalid IP address [::1]x: address [::1]x:: missing port in address"
        );
    }

    /// Each refusal as docker CLI 28 words it (checked against
    /// /usr/local/bin/docker 28.2.2).
    #[test]
    fn publish_refusals_as_docker() {
        for (spec, want) in [
            ("99999:80", "invalid hostPort: 99999"),
            ("80:99999", "invalid containerPort: 99999"),
            ("8080:", "no port specified: 8080:<empty>"),
            ("", "no port specified: <empty>"),
            (":", "no port specified: :<empty>"),
            ("::", "no port specified: ::<empty>"),
            ("abc", "invalid containerPort: abc"),
            ("8080:abc", "invalid containerPort: abc"),
            ("65536", "invalid containerPort: 65536"),
            ("80/foo", "invalid proto: foo"),
            (
                "8000-8002:80-81",
                "invalid ranges specified for container and host Ports: 80-81 and 8000-8002",
            ),
            (
                "80:80-81",
                "invalid ranges specified for container and host Ports: 80-81 and 80",
            ),
            ("8002-8000:80", "invalid hostPort: 8002-8000"),
            ("80-70:80", "invalid hostPort: 80-70"),
            ("8080-:80", "invalid hostPort: 8080-"),
            ("a-b:80", "invalid hostPort: a-b"),
            ("-1:80", "invalid hostPort: -1"),
            ("+1:80", "invalid hostPort: +1"),
            ("1.2.3.4:80", "invalid hostPort: 1.2.3.4"),
            ("bad.ip:80:80", "invalid IP address: bad.ip"),
            ("300.1.1.1:80:80", "invalid IP address: 300.1.1.1"),
            (
                "published=80,bogus",
                "invalid publish opts format (should be name=value but got 'bogus')",
            ),
        ] {
            assert_eq!(parse_publish(spec).unwrap_err(), want, "-p {spec:?}");
        }
        assert!(parse_publish("80/sctp").unwrap_err().contains("sctp"));
    }

    #[test]
    fn expose_values() {
        assert_eq!(parse_expose("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_expose("80/udp").unwrap(), ["80/udp"]);
        assert_eq!(parse_expose("80/").unwrap(), ["80/tcp"]);
        assert_eq!(
            parse_expose("80-82/udp").unwrap(),
            ["80/udp", "81/udp", "82/udp"]
        );
        for (e, want) in [
            ("80:80", "invalid port format for --expose: 80:80"),
            (
                "abc",
                "invalid range format for --expose: abc, error: strconv.ParseUint: parsing \"abc\": invalid syntax",
            ),
            (
                "82-80",
                "invalid range format for --expose: 82-80, error: invalid range specified for port: 82-80",
            ),
            (
                "65536",
                "invalid range format for --expose: 65536, error: strconv.ParseUint: parsing \"65536\": value out of range",
            ),
            (
                "",
                "invalid range format for --expose: , error: empty string specified for ports",
            ),
            (
                "/tcp",
                "invalid range format for --expose: /tcp, error: empty string specified for ports",
            ),
        ] {
            assert_eq!(parse_expose(e).unwrap_err(), want, "--expose {e:?}");
        }
        assert!(parse_expose("80/sctp").is_err());
    }

    #[test]
    fn run_bindings_add_exposed_ports_with_publish_all() {
        let mut cfg = ContainerConfig {
            ports: parse_publish("127.0.0.1:8080:80").unwrap(),
            expose: vec!["9000/tcp".into()],
            ..Default::default()
        };
        let image = image_exposed(
            br#"{"config":{"ExposedPorts":{"80/tcp":{},"53/udp":{},"x/tcp":{},"7/sctp":{}}}}"#,
        );
        assert_eq!(image.len(), 4);
        // Without -P: -p alone.
        assert_eq!(run_bindings(&cfg, &image), cfg.ports);
        cfg.publish_all = true;
        let got = run_bindings(&cfg, &image);
        assert_eq!(
            got,
            vec![
                b("127.0.0.1", 8080, 0, 80, PortProto::Tcp),
                b("", 0, 0, 53, PortProto::Udp),
                b("", 0, 0, 9000, PortProto::Tcp),
            ]
        );
        // A config that is not JSON, or has no ports: none.
        assert!(image_exposed(b"{").is_empty());
        assert!(image_exposed(br#"{"config":{}}"#).is_empty());
    }

    fn published(ip: &str, host: u16, port: u16, proto: PortProto) -> PublishedPort {
        PublishedPort {
            container_port: port,
            proto,
            host_ip: ip.into(),
            host_port: host,
        }
    }

    #[test]
    fn ps_ports_like_docker_28() {
        let both = [
            published("0.0.0.0", 8080, 80, TCP),
            published("::", 8080, 80, TCP),
        ];
        assert_eq!(
            ps_column(&both, &["80/tcp".into()]),
            "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
        );
        assert_eq!(ps_column(&[], &["80/tcp".into()]), "80/tcp");
        assert_eq!(
            ps_column(
                &[],
                &[
                    "80/tcp".into(),
                    "81/tcp".into(),
                    "82/tcp".into(),
                    "53/udp".into()
                ]
            ),
            "53/udp, 80-82/tcp"
        );
        // Same host and container ports, consecutive: one group.
        let same: Vec<PublishedPort> = (8000..=8002)
            .map(|p| published("0.0.0.0", p, p, TCP))
            .collect();
        assert_eq!(ps_column(&same, &[]), "0.0.0.0:8000-8002->8000-8002/tcp");
        let mixed = [
            published("127.0.0.1", 9000, 90, UDP),
            published("0.0.0.0", 443, 443, TCP),
        ];
        assert_eq!(
            ps_column(&mixed, &["22/tcp".into(), "90/udp".into()]),
            "22/tcp, 0.0.0.0:443->443/tcp, 127.0.0.1:9000->90/udp"
        );
        assert_eq!(ps_column(&[], &[]), "");
    }

    #[test]
    fn port_command_lines() {
        let ports = [
            published("::", 8080, 80, TCP),
            published("0.0.0.0", 8080, 80, TCP),
            published("0.0.0.0", 5353, 53, UDP),
        ];
        assert_eq!(
            port_lines(&ports, None).unwrap().unwrap(),
            [
                "53/udp -> 0.0.0.0:5353",
                "80/tcp -> 0.0.0.0:8080",
                "80/tcp -> [::]:8080"
            ]
        );
        assert_eq!(
            port_lines(&ports, Some("80")).unwrap().unwrap(),
            ["0.0.0.0:8080", "[::]:8080"]
        );
        assert_eq!(
            port_lines(&ports, Some("53/udp")).unwrap().unwrap(),
            ["0.0.0.0:5353"]
        );
        assert_eq!(port_lines(&ports, Some("81")).unwrap(), None);
        assert_eq!(port_lines(&ports, Some("53")).unwrap(), None);
        assert_eq!(
            port_lines(&ports, Some("abc")).unwrap_err(),
            "Error: invalid port (abc): strconv.ParseUint: parsing \"abc\": invalid syntax"
        );
    }

    #[test]
    fn inspect_port_maps() {
        let bindings = [
            b("", 8080, 0, 80, TCP),
            b("::1", 0, 0, 80, TCP),
            b("", 9000, 9010, 90, UDP),
        ];
        assert_eq!(
            port_bindings_json(&bindings),
            json!({
                "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "::1", "HostPort": ""}],
                "90/udp": [{"HostIp": "", "HostPort": "9000-9010"}]
            })
        );
        let exp = exposed(&["443/tcp".into(), "80/tcp".into()], &bindings);
        assert_eq!(exp, ["443/tcp", "80/tcp", "90/udp"]);
        let running = [published("0.0.0.0", 8080, 80, TCP)];
        assert_eq!(
            ports_json(&running, &exp),
            json!({
                "443/tcp": null,
                "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                "90/udp": null
            })
        );
    }

    #[test]
    fn go_ip_parsing() {
        assert!(parse_ip("01.2.3.4").is_none());
        assert!(parse_ip("::ffff:1.2.3.4").is_some());
        assert!(parse_ip("1.2.3").is_none());
    }
}
