//! One container's side of networking, run by its shim: interfaces in its
//! namespace, `/etc/hosts` and `/etc/resolv.conf`, published ports and the
//! embedded DNS server.
//!
//! The order matters: [`prepare`] runs before the container exists (the
//! shim is still single-threaded, and a port that cannot be bound fails the
//! start before anything runs); [`activate`] starts the proxy and DNS
//! threads once the container runs; [`teardown`] frees the addresses.

use super::store::{RuntimeEndpoint, RuntimeNet, PORTS_FILE, RUNTIME_FILE};
use super::{dns, link, proxy};
use crate::engine::record::ContainerRecord;
use crate::engine::Engine;
use crate::layout::write_json_atomic_unsynced;
use berth_protocol::{PortBinding, PortProto, PublishedPort};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::Arc;

/// How a container is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The host's (or guest's) own network namespace.
    Host,
    /// Its own namespace with only `lo`.
    None,
    /// Its own namespace with an interface on each bridge network.
    Bridge,
}

pub fn mode(engine: &Engine, rec: &ContainerRecord) -> Mode {
    match engine.containers.network_driver(rec).as_str() {
        "host" => Mode::Host,
        "bridge" => Mode::Bridge,
        _ => Mode::None,
    }
}

/// What [`prepare`] made, handed to [`activate`].
pub struct Prepared {
    ports: Option<proxy::Bound>,
    dns: Option<(UdpSocket, Option<TcpListener>)>,
    target: Option<Ipv4Addr>,
    upstreams: Vec<SocketAddr>,
    networks: Vec<String>,
}

/// A start failure from networking, worded for the user.
pub type SetupError = String;

/// Interfaces, ports and DNS sockets, before the container is created.
/// `netns` is the container's pinned namespace (unused in host mode).
pub fn prepare(
    engine: &Engine,
    rec: &ContainerRecord,
    netns: &Path,
) -> Result<Prepared, SetupError> {
    let rt = engine.containers.runtime_net(&rec.id).unwrap_or_default();
    for (i, e) in rt.endpoints.iter().enumerate() {
        attach(e, i == 0, netns)?;
    }
    let primary = rt.endpoints.first();
    let target = primary.and_then(|e| e.info.ipv4_address.parse().ok());
    let bindings = bindings(rec);
    let ports = if bindings.is_empty() || target.is_none() {
        None
    } else {
        Some(proxy::bind_all(&bindings).map_err(|e| port_error(rec, primary, &e))?)
    };
    let networks: Vec<String> = rt
        .endpoints
        .iter()
        .filter(|e| e.user_defined)
        .map(|e| e.info.network_id.clone())
        .collect();
    let dns = if networks.is_empty() {
        None
    } else {
        Some(dns_sockets(netns).map_err(|e| format!("starting the embedded DNS server: {e}"))?)
    };
    let upstreams = if rec.config.dns.is_empty() {
        dns::upstreams_from_resolv_conf(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        )
    } else {
        rec.config
            .dns
            .iter()
            .filter_map(|d| d.parse::<std::net::IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()
    };
    Ok(Prepared {
        ports,
        dns,
        target,
        upstreams,
        networks,
    })
}

fn attach(e: &RuntimeEndpoint, primary: bool, netns: &Path) -> Result<(), SetupError> {
    let addr: Ipv4Addr = e
        .info
        .ipv4_address
        .parse()
        .map_err(|_| format!("bad address {}", e.info.ipv4_address))?;
    let gateway: Option<Ipv4Addr> = if primary && !e.internal {
        e.info.gateway.parse().ok()
    } else {
        None
    };
    let mac = parse_mac(&e.info.mac_address).unwrap_or([2, 0x42, 0, 0, 0, 2]);
    // A shim that died (or a crash) can leave this container's previous
    // host end behind; the name is this container's own.
    let _ = link::detach_veth(&e.veth);
    link::attach_veth(&link::VethSpec {
        host_name: &e.veth,
        bridge: &e.bridge,
        netns,
        ifname: &e.ifname,
        mac,
        addr,
        prefix_len: e.info.prefix_len,
        gateway,
    })
    .map_err(|err| format!("connecting to network {}: {err}", e.info.network_name))
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `-p` plus, with `-P`, every exposed port on a free host port.
pub fn bindings(rec: &ContainerRecord) -> Vec<PortBinding> {
    let mut out = rec.config.ports.clone();
    if rec.config.publish_all {
        for p in &rec.exposed_ports {
            let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
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
    }
    out
}

fn port_error(
    rec: &ContainerRecord,
    ep: Option<&RuntimeEndpoint>,
    e: &proxy::ProxyError,
) -> String {
    let (epid, ip) = ep
        .map(|e| (e.info.endpoint_id.as_str(), e.info.ipv4_address.as_str()))
        .unwrap_or_default();
    match e {
        proxy::ProxyError::InUse { addr, proto } => {
            let port = rec
                .config
                .ports
                .iter()
                .find(|b| addr.ends_with(&format!(":{}", b.host_port)) && b.proto == *proto)
                .map(|b| b.container_port)
                .unwrap_or_default();
            format!(
                "driver failed programming external connectivity on endpoint {} ({epid}): failed to bind host port for {addr}:{ip}:{port}/{}: address already in use",
                rec.name,
                proto.as_str()
            )
        }
        other => format!(
            "driver failed programming external connectivity on endpoint {} ({epid}): {other}",
            rec.name
        ),
    }
}

/// UDP and TCP sockets on 127.0.0.11:53 inside the container's namespace,
/// made on a short-lived thread so the shim stays where it is.
fn dns_sockets(netns: &Path) -> std::io::Result<(UdpSocket, Option<TcpListener>)> {
    let ns = std::fs::File::open(netns)?;
    std::thread::spawn(
        move || -> std::io::Result<(UdpSocket, Option<TcpListener>)> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let addr = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 11), 53));
            let udp = UdpSocket::bind(addr)?;
            let tcp = TcpListener::bind(addr).ok();
            Ok((udp, tcp))
        },
    )
    .join()
    .map_err(|_| std::io::Error::other("DNS socket thread panicked"))?
}

/// Answers container names and aliases on the container's user networks.
struct Names {
    root: std::path::PathBuf,
    networks: Vec<String>,
}

impl dns::Resolver for Names {
    fn lookup(&self, name: &str) -> dns::Lookup {
        let store = crate::engine::containers::ContainerStore::new(crate::layout::Layout::new(
            self.root.clone(),
        ));
        let ips: Vec<Ipv4Addr> = store
            .dns_entries(&self.networks)
            .into_iter()
            .filter(|(_, names, _)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
            .map(|(_, _, ip)| ip)
            .collect();
        if ips.is_empty() {
            dns::Lookup::NotOurs
        } else {
            dns::Lookup::Found(ips)
        }
    }
}

/// Starts the proxies and the DNS server; records the published ports.
pub fn activate(engine: &Engine, rec: &ContainerRecord, p: Prepared) {
    let dir = engine.layout().container(&rec.id);
    let mut published: Vec<PublishedPort> = Vec::new();
    if let (Some(bound), Some(target)) = (p.ports, p.target) {
        published = bound.published.clone();
        if let Err(e) = proxy::spawn(bound, target) {
            log::warn!("container {}: port proxy: {e}", rec.id);
        }
    }
    // This boot's only (read with the runtime file): no fsync (layout.rs).
    let _ = write_json_atomic_unsynced(&dir.join(PORTS_FILE), &published);
    if let Some((udp, tcp)) = p.dns {
        let names = Arc::new(Names {
            root: engine.layout().root().to_path_buf(),
            networks: p.networks,
        });
        if let Err(e) = dns::spawn(udp, tcp, names, p.upstreams) {
            log::warn!("container {}: DNS server: {e}", rec.id);
        }
    }
}

/// Frees the container's addresses and ports (the namespace goes with
/// the shim's teardown, and its veth ends with it). Returns the networks
/// it left, `(id, name)`, for [`disconnected`].
pub fn teardown(engine: &Engine, rec: &ContainerRecord) -> Vec<(String, String)> {
    let dir = engine.layout().container(&rec.id);
    let mut left = Vec::new();
    if let Ok(Some(rt)) = crate::layout::read_json::<RuntimeNet>(&dir.join(RUNTIME_FILE)) {
        for e in rt.endpoints {
            let _ = link::detach_veth(&e.veth);
            left.push((e.info.network_id, e.info.network_name));
        }
    }
    let _ = std::fs::remove_file(dir.join(PORTS_FILE));
    let _ = std::fs::remove_file(dir.join(RUNTIME_FILE));
    left
}

/// Logs `network disconnect` for each network [`teardown`] left: docker
/// logs them after the container's `die`.
pub fn disconnected(engine: &Engine, rec: &ContainerRecord, left: &[(String, String)]) {
    for (id, name) in left {
        crate::events::network_endpoint(engine.layout().root(), id, name, &rec.id, "disconnect");
    }
}

/// `/etc/hosts` for the container.
pub fn hosts_file(engine: &Engine, rec: &ContainerRecord, mode: Mode) -> String {
    if mode == Mode::Host {
        return std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    }
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    let rt = engine.containers.runtime_net(&rec.id).unwrap_or_default();
    let primary = rt.endpoints.first();
    // In the machine VM the host's own services are behind the VMM's
    // network stack, as on Docker Desktop; natively `host-gateway` is the
    // bridge's address on the host, as with dockerd.
    let host_alias = crate::machine::host_alias();
    let host_gateway = match (host_alias, primary) {
        (Some(h), _) => h.to_string(),
        (None, Some(e)) => e.info.gateway.clone(),
        (None, None) => "127.0.0.1".into(),
    };
    for h in &rec.config.extra_hosts {
        let Some((name, ip)) = h.split_once(':') else {
            continue;
        };
        let ip = if ip == "host-gateway" {
            host_gateway.clone()
        } else {
            ip.to_string()
        };
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    if let Some(h) = host_alias {
        if !rec
            .config
            .extra_hosts
            .iter()
            .any(|e| e.starts_with("host.docker.internal:"))
        {
            s.push_str(&format!("{h}\thost.docker.internal\n"));
        }
    }
    for l in &rec.config.links {
        let (target, alias) = l.split_once(':').unwrap_or((l, l));
        let Ok(t) = engine.containers.resolve(target) else {
            continue;
        };
        let Some(ip) = engine
            .containers
            .runtime_net(&t.id)
            .and_then(|r| r.endpoints.first().map(|e| e.info.ipv4_address.clone()))
        else {
            continue;
        };
        s.push_str(&format!("{ip}\t{alias} {} {}\n", t.hostname, t.name));
    }
    let fqdn = match rec.config.domainname.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => format!("{}.{d} {}", rec.hostname, rec.hostname),
        None => rec.hostname.clone(),
    };
    match primary {
        Some(e) => s.push_str(&format!("{}\t{fqdn}\n", e.info.ipv4_address)),
        None => s.push_str(&format!("127.0.1.1\t{fqdn}\n")),
    }
    s
}

/// `/etc/resolv.conf` for the container, from the host's (`host_conf`).
pub fn resolv_conf(
    rec: &ContainerRecord,
    mode: Mode,
    user_network: bool,
    host_conf: &str,
) -> String {
    if mode == Mode::Host && rec.config.dns.is_empty() && rec.config.dns_search.is_empty() {
        return host_conf.to_string();
    }
    let mut search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut servers: Vec<String> = Vec::new();
    for l in host_conf.lines() {
        let mut f = l.split_whitespace();
        match f.next() {
            Some("nameserver") => {
                if let Some(a) = f.next() {
                    servers.push(a.to_string());
                }
            }
            Some("search") | Some("domain") => search = f.map(String::from).collect(),
            Some("options") => options.extend(f.map(String::from)),
            _ => {}
        }
    }
    if !rec.config.dns_search.is_empty() {
        search = rec
            .config
            .dns_search
            .iter()
            .filter(|s| *s != ".")
            .cloned()
            .collect();
    }
    if !rec.config.dns_options.is_empty() {
        options = rec.config.dns_options.clone();
    }
    let servers: Vec<String> = if user_network {
        vec!["127.0.0.11".into()]
    } else if !rec.config.dns.is_empty() {
        rec.config.dns.clone()
    } else {
        // As docker: loopback resolvers of the host cannot be reached from
        // the container's namespace; fall back to public ones if none is
        // left.
        let v: Vec<String> = servers
            .into_iter()
            .filter(|s| !s.starts_with("127.") && s != "::1")
            .collect();
        if v.is_empty() && mode == Mode::Bridge {
            vec!["8.8.8.8".into(), "8.8.4.4".into()]
        } else {
            v
        }
    };
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if user_network && !options.iter().any(|o| o.starts_with("ndots:")) {
        options.push("ndots:0".into());
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> ContainerRecord {
        serde_json::from_value(serde_json::json!({
            "id": "0123456789abcdef0123456789abcdef",
            "name": "web",
            "created": "",
            "image": "busybox",
            "image_id": "sha256:1",
            "config": {"image": "busybox", "name": null, "cmd": null, "entrypoint": null,
                        "env": [], "workdir": null, "user": null, "hostname": null, "tty": false,
                        "open_stdin": false, "auto_remove": false, "labels": {}, "memory": null,
                        "nano_cpus": null, "pids_limit": null},
            "args": ["sh"],
            "env": [],
            "workdir": "/",
            "user": "",
            "hostname": "web1",
        }))
        .unwrap()
    }

    #[test]
    fn resolv_conf_like_docker() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n";
        let r = rec();
        assert_eq!(
            resolv_conf(&r, Mode::Bridge, false, host),
            "nameserver 10.0.0.2\nsearch corp.example\noptions edns0\n"
        );
        assert_eq!(
            resolv_conf(&r, Mode::Bridge, true, host),
            "nameserver 127.0.0.11\nsearch corp.example\noptions edns0 ndots:0\n"
        );
        assert_eq!(
            resolv_conf(&r, Mode::Bridge, false, "nameserver 127.0.0.53\n"),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(resolv_conf(&r, Mode::Host, false, host), host);
        let mut r2 = rec();
        r2.config.dns = vec!["1.1.1.1".into()];
        r2.config.dns_search = vec!["a.test".into()];
        r2.config.dns_options = vec!["ndots:2".into()];
        assert_eq!(
            resolv_conf(&r2, Mode::Bridge, false, host),
            "nameserver 1.1.1.1\nsearch a.test\noptions ndots:2\n"
        );
    }

    #[test]
    fn publish_all_adds_exposed_ports_once() {
        let mut r = rec();
        r.exposed_ports = vec!["80/tcp".into(), "53/udp".into()];
        r.config.publish_all = true;
        r.config.ports = vec![PortBinding {
            host_ip: "127.0.0.1".into(),
            host_port: 8080,
            host_port_end: 0,
            container_port: 80,
            proto: PortProto::Tcp,
        }];
        let b = bindings(&r);
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].container_port, 53);
        assert_eq!(b[1].proto, PortProto::Udp);
        assert_eq!(b[1].host_port, 0);
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:42:ac:11:00:02"),
            Some([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(parse_mac("02:42"), None);
        assert_eq!(parse_mac("02:42:ac:11:00:02:07"), None);
    }
}
