//! Where a published TCP port leads, for the agent's `PortConnect` (VM
//! placements): the container's address and port that the port's proxy
//! ([`super::proxy`], in the container's shim) relays to. The agent then
//! connects there itself, from the same network namespace the proxy
//! connects from (so the container sees the same peer address), and the
//! proxy's hop (a loopback TCP connection, its accept and its two relay
//! directions) is left out of each connection.
//!
//! Found by reading the running containers' published ports and runtime
//! networks, then kept per port. A kept answer is used only while the
//! container's `ports.json` is the very file it was read from: the shim
//! writes it (atomically, a new file) when the proxy starts, and teardown
//! removes it, so a stopped, restarted or removed container is read again
//! (one `stat` per connection).

use super::store::PORTS_FILE;
use crate::engine::fsutil::Sig;
use crate::engine::Engine;
use berth_protocol::{PortProto, PublishedPort};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The container address a connection to the guest's `127.0.0.1:port`
/// would reach through the port's proxy; `None` when no running container
/// publishes `port` over TCP on a loopback or wildcard IPv4 address (the
/// caller then connects to `127.0.0.1:port` as before).
pub fn target(engine: &Engine, port: u16) -> Option<SocketAddrV4> {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = cache.get(port) {
        return Some(hit);
    }
    let now = Instant::now();
    if cache.missed_lately(port, now) {
        return None;
    }
    cache.fill(scan(engine));
    let found = cache.get(port);
    if found.is_none() {
        cache.missed(port, now);
    }
    found
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    ports: None,
    misses: None,
});

/// How long a port no container was found for goes the proxy's way
/// without another scan (a port published on an IPv6 or another address
/// only would otherwise cost a scan per connection). A container started
/// meanwhile is still reached, through its proxy.
const MISS_KEPT: Duration = Duration::from_secs(10);

/// One published port's destination, and the file it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    target: SocketAddrV4,
    ports_file: PathBuf,
    identity: Sig,
}

/// What tells one written `ports.json` from another (a rewrite is a new
/// inode and times); `None` once it is removed.
fn identity(path: &Path) -> Option<Sig> {
    std::fs::metadata(path).ok().map(|m| Sig::of(&m))
}

#[derive(Debug)]
struct Cache {
    ports: Option<HashMap<u16, Entry>>,
    /// When a scan last found nothing for a port.
    misses: Option<HashMap<u16, Instant>>,
}

impl Cache {
    /// A kept destination whose `ports.json` is unchanged.
    fn get(&self, port: u16) -> Option<SocketAddrV4> {
        let e = self.ports.as_ref()?.get(&port)?;
        (identity(&e.ports_file) == Some(e.identity)).then_some(e.target)
    }

    fn fill(&mut self, entries: Vec<(u16, Entry)>) {
        self.ports = Some(entries.into_iter().collect());
    }

    fn missed_lately(&self, port: u16, now: Instant) -> bool {
        self.misses
            .as_ref()
            .and_then(|m| m.get(&port))
            .is_some_and(|at| now.saturating_duration_since(*at) < MISS_KEPT)
    }

    fn missed(&mut self, port: u16, now: Instant) {
        let misses = self.misses.get_or_insert_with(HashMap::new);
        // Bounded: forget the old ones.
        misses.retain(|_, at| now.saturating_duration_since(*at) < MISS_KEPT);
        misses.insert(port, now);
    }
}

/// Every running container's TCP ports reachable at `127.0.0.1`.
fn scan(engine: &Engine) -> Vec<(u16, Entry)> {
    let c = &engine.containers;
    let mut out = Vec::new();
    for s in c.list(false) {
        let ports_file = engine.layout().container(&s.id).join(PORTS_FILE);
        // Before the reads: a file rewritten in between is read again
        // at the next connection rather than kept stale.
        let Some(identity) = identity(&ports_file) else {
            continue;
        };
        // The proxy's destination: the first endpoint's address, as
        // `container::prepare` picks it.
        let Some(ip) = c
            .runtime_net(&s.id)
            .and_then(|rt| rt.endpoints.first()?.info.ipv4_address.parse().ok())
        else {
            continue;
        };
        for (port, target) in loopback_targets(&c.published_ports(&s.id), ip) {
            out.push((
                port,
                Entry {
                    target,
                    ports_file: ports_file.clone(),
                    identity,
                },
            ));
        }
    }
    out
}

/// The `(guest port, container address)` pairs of `published` that a TCP
/// connection to `127.0.0.1:port` reaches: bound on `127.0.0.0/8` or on
/// `0.0.0.0` (an IPv6-only socket, `::` or `::1`, is not reached).
fn loopback_targets(published: &[PublishedPort], ip: Ipv4Addr) -> Vec<(u16, SocketAddrV4)> {
    published
        .iter()
        .filter(|p| p.proto == PortProto::Tcp && p.host_port != 0 && p.container_port != 0)
        .filter(|p| match p.host_ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => a.is_loopback() || a.is_unspecified(),
            _ => false,
        })
        .map(|p| (p.host_port, SocketAddrV4::new(ip, p.container_port)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(host_ip: &str, host_port: u16, container_port: u16, proto: PortProto) -> PublishedPort {
        PublishedPort {
            container_port,
            proto,
            host_ip: host_ip.into(),
            host_port,
        }
    }

    #[test]
    fn only_tcp_ports_that_loopback_reaches() {
        let ip = Ipv4Addr::new(172, 17, 0, 2);
        let published = [
            port("0.0.0.0", 8080, 80, PortProto::Tcp),
            port("::", 8080, 80, PortProto::Tcp),
            port("127.0.0.1", 8443, 443, PortProto::Tcp),
            port("127.0.0.2", 9000, 9, PortProto::Tcp),
            port("::1", 8081, 81, PortProto::Tcp),
            port("192.168.1.5", 8082, 82, PortProto::Tcp),
            port("0.0.0.0", 5353, 53, PortProto::Udp),
            port("junk", 8083, 83, PortProto::Tcp),
            port("0.0.0.0", 0, 84, PortProto::Tcp),
        ];
        assert_eq!(
            loopback_targets(&published, ip),
            vec![
                (8080, SocketAddrV4::new(ip, 80)),
                (8443, SocketAddrV4::new(ip, 443)),
                (9000, SocketAddrV4::new(ip, 9)),
            ]
        );
    }

    #[test]
    fn a_kept_destination_lasts_while_its_ports_file_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(PORTS_FILE);
        std::fs::write(&file, b"[]").unwrap();
        let target = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
        let entry = |identity| Entry {
            target,
            ports_file: file.clone(),
            identity,
        };
        let mut cache = Cache {
            ports: None,
            misses: None,
        };
        assert_eq!(cache.get(8080), None, "nothing scanned yet");
        cache.fill(vec![(8080, entry(identity(&file).unwrap()))]);
        assert_eq!(cache.get(8080), Some(target));
        assert_eq!(cache.get(8081), None, "a port not published");
        // The shim's next start writes a new file (write, then rename).
        let tmp = dir.path().join("ports.json.tmp");
        std::fs::write(&tmp, b"[]").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert_eq!(cache.get(8080), None, "a rewritten file is read again");
        cache.fill(vec![(8080, entry(identity(&file).unwrap()))]);
        assert_eq!(cache.get(8080), Some(target));
        // Teardown removes it.
        std::fs::remove_file(&file).unwrap();
        assert_eq!(cache.get(8080), None, "a removed file ends the entry");
    }

    #[test]
    fn a_miss_is_kept_a_while() {
        let mut cache = Cache {
            ports: None,
            misses: None,
        };
        let t0 = Instant::now();
        assert!(!cache.missed_lately(8080, t0));
        cache.missed(8080, t0);
        assert!(cache.missed_lately(8080, t0));
        assert!(!cache.missed_lately(8081, t0));
        let later = t0 + MISS_KEPT;
        assert!(
            !cache.missed_lately(8080, later),
            "scanned again after MISS_KEPT"
        );
        cache.missed(8081, later);
        assert_eq!(
            cache.misses.as_ref().unwrap().len(),
            1,
            "old misses forgotten"
        );
    }
}
