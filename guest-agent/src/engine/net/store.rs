//! Network records (`<root>/networks/<id>/network.json`), the networks a
//! container is attached to, and address allocation.
//!
//! docker's three predefined networks exist in every engine root: `bridge`
//! (the default), `host` and `none`. User-defined networks are bridges too.
//! Every bridge is named `berth-<first 9 hex digits of its network id>`, so
//! that several engine roots on one host (tests, several users) never share
//! one; a new network's subnet is taken from docker's default pools, skipping
//! every subnet that overlaps another network of this root or a route the
//! host already has (which covers the bridges of other roots).
//!
//! A container's addresses are allocated when it starts, by the agent under
//! the container store's lock, and written to `<container>/network.json`;
//! the shim removes that file when the container stops, which frees them.

use super::super::containers::ContainerStore;
use super::super::record::{boot_id, Attachment, ContainerRecord};
use crate::engine::{Error, Object};
use crate::layout::{publish_dir, random_hex, read_json, write_json_atomic, Layout};
use berth_protocol::{EndpointInfo, NetworkInfo, NetworkMember};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// `network.json` of a network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    pub created_at: String,
    #[serde(default)]
    pub subnet: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub bridge: String,
}

impl NetworkRecord {
    pub fn is_predefined(&self) -> bool {
        PREDEFINED.iter().any(|(n, _)| *n == self.name)
    }

    /// A user-defined network: these have the embedded DNS server.
    pub fn user_defined(&self) -> bool {
        !self.is_predefined()
    }

    fn subnet(&self) -> Option<(Ipv4Addr, u8)> {
        parse_cidr(&self.subnet).ok()
    }

    fn info(&self, members: BTreeMap<String, NetworkMember>) -> NetworkInfo {
        NetworkInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            driver: self.driver.clone(),
            created_at: self.created_at.clone(),
            subnet: self.subnet.clone(),
            gateway: self.gateway.clone(),
            internal: self.internal,
            labels: self.labels.clone(),
            options: self.options.clone(),
            bridge: self.bridge.clone(),
            builtin: self.is_predefined(),
            containers: members,
        }
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, Copy)]
pub struct NetworkSpec<'a> {
    pub name: &'a str,
    pub driver: Option<&'a str>,
    pub subnet: Option<&'a str>,
    pub gateway: Option<&'a str>,
    pub internal: bool,
    pub labels: &'a BTreeMap<String, String>,
    pub options: &'a BTreeMap<String, String>,
}

/// docker's predefined networks and their drivers.
const PREDEFINED: &[(&str, &str)] = &[("bridge", "bridge"), ("host", "host"), ("none", "null")];

/// One endpoint of a running container (`<container>/network.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeEndpoint {
    pub info: EndpointInfo,
    pub bridge: String,
    pub subnet: String,
    pub internal: bool,
    pub user_defined: bool,
    /// The host end of its veth pair.
    pub veth: String,
    /// Interface name in the container (`eth0`, `eth1`, ...).
    pub ifname: String,
}

/// `<container>/network.json`: what the agent allocated for this run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RuntimeNet {
    pub boot_id: String,
    pub endpoints: Vec<RuntimeEndpoint>,
}

pub const RUNTIME_FILE: &str = "network.json";
/// Ports the shim bound for this run (a JSON list of `PublishedPort`).
pub const PORTS_FILE: &str = "ports.json";

/// Parses `a.b.c.d/n`.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
    let addr: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("invalid CIDR address: {s}"))?;
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("invalid CIDR address: {s}"))?;
    Ok((addr, prefix))
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

fn network_of(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) & mask(prefix))
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let p = a.1.min(b.1);
    network_of(a.0, p) == network_of(b.0, p)
}

fn contains(net: (Ipv4Addr, u8), addr: Ipv4Addr) -> bool {
    network_of(addr, net.1) == network_of(net.0, net.1)
}

/// docker's default address pools: 172.17-31.0.0/16, then 192.168.0.0/16
/// in /20 steps.
fn default_pools() -> impl Iterator<Item = (Ipv4Addr, u8)> {
    (17u8..=31)
        .map(|b| (Ipv4Addr::new(172, b, 0, 0), 16))
        .chain((0u8..16).map(|i| (Ipv4Addr::new(192, 168, i * 16, 0), 20)))
}

/// IPv4 routes the host has now (destination, prefix), from
/// /proc/net/route; the default route is left out.
fn host_routes() -> Vec<(Ipv4Addr, u8)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // The kernel prints the raw network-order u32 with %08X.
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let m = u32::from_str_radix(f.get(7)?, 16).ok()?;
            let dest = Ipv4Addr::from(dest.to_ne_bytes());
            let prefix = m.count_ones() as u8;
            (prefix > 0).then_some((dest, prefix))
        })
        .collect()
}

/// Host-wide lock around choosing a subnet and creating its bridge, so that
/// two engine roots never pick the same one; released on drop. None when
/// the lock file cannot be opened or locked (nothing is serialised then).
type HostLock = Option<nix::fcntl::Flock<std::fs::File>>;

fn host_lock() -> HostLock {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("berth-networks.lock"))
        .ok()?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok()
}

fn networks_dir(layout: &Layout) -> PathBuf {
    layout.root().join("networks")
}

fn read_networks(layout: &Layout) -> Vec<NetworkRecord> {
    let Ok(rd) = std::fs::read_dir(networks_dir(layout)) else {
        return Vec::new();
    };
    let mut out: Vec<NetworkRecord> = rd
        .flatten()
        .filter_map(|e| read_json(&e.path().join("network.json")).ok().flatten())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn not_found(key: &str) -> Error {
    Error::not_found(Object::Network, key)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Whether this agent must set up NAT itself (on a Linux host) or runs in
/// the machine VM, where egress is the VMM's business.
fn in_guest() -> bool {
    std::process::id() == 1
}

impl ContainerStore {
    /// Makes the predefined networks on first use. Callers hold `self.lock`.
    fn ensure_predefined(&self) -> Result<Vec<NetworkRecord>, Error> {
        let mut all = read_networks(self.layout());
        for (name, driver) in PREDEFINED {
            if all.iter().any(|n| n.name == *name) {
                continue;
            }
            let rec = if *driver == "bridge" {
                self.new_bridge(name, None, None, false, &Default::default(), &all)?
            } else {
                NetworkRecord {
                    id: random_hex(32),
                    name: name.to_string(),
                    driver: driver.to_string(),
                    created_at: now(),
                    subnet: String::new(),
                    gateway: String::new(),
                    internal: false,
                    labels: Default::default(),
                    options: Default::default(),
                    bridge: String::new(),
                }
            };
            self.write_network(&rec)?;
            all.push(rec);
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    fn write_network(&self, rec: &NetworkRecord) -> Result<(), Error> {
        (|| {
            // Whole or not at all, and durable once `network create`
            // answers.
            let tmp = self.layout().temp_dir("net")?;
            let json = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
            let dest = networks_dir(self.layout()).join(&rec.id);
            publish_dir(&tmp, &dest, &[("network.json", &json)])
        })()
        .map_err(Error::unexpected)
    }

    /// A new bridge network's record, its subnet chosen or checked.
    fn new_bridge(
        &self,
        name: &str,
        subnet: Option<&str>,
        gateway: Option<&str>,
        internal_net: bool,
        options: &BTreeMap<String, String>,
        existing: &[NetworkRecord],
    ) -> Result<NetworkRecord, Error> {
        let taken: Vec<(Ipv4Addr, u8)> = existing.iter().filter_map(|n| n.subnet()).collect();
        let (net, prefix) = match subnet {
            Some(s) => {
                let (a, p) = parse_cidr(s).map_err(Error::invalid)?;
                if p > 30 {
                    return Err(Error::invalid(format!(
                        "invalid pool request: subnet {s} is too small"
                    )));
                }
                let n = (network_of(a, p), p);
                if taken.iter().any(|t| overlaps(*t, n)) {
                    return Err(Error::conflict(
                        "invalid pool request: Pool overlaps with other one on this address space",
                    ));
                }
                n
            }
            None => {
                let routes = host_routes();
                default_pools()
                    .find(|p| {
                        !taken.iter().any(|t| overlaps(*t, *p))
                            && !routes.iter().any(|r| overlaps(*r, *p))
                    })
                    .ok_or_else(|| {
                        Error::conflict("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
                        )
                    })?
            }
        };
        let gw = match gateway {
            Some(g) => {
                let g: Ipv4Addr = g
                    .parse()
                    .map_err(|_| Error::invalid(format!("invalid gateway address {g}")))?;
                if !contains((net, prefix), g) {
                    return Err(Error::invalid(format!(
                        "no matching subnet for gateway {g}"
                    )));
                }
                g
            }
            None => Ipv4Addr::from(u32::from(net) + 1),
        };
        let id = random_hex(32);
        Ok(NetworkRecord {
            bridge: format!("berth-{}", &id[..9]),
            id,
            name: name.to_string(),
            driver: "bridge".into(),
            created_at: now(),
            subnet: format!("{net}/{prefix}"),
            gateway: gw.to_string(),
            internal: internal_net,
            labels: Default::default(),
            options: options.clone(),
        })
    }

    /// By exact name, full id or unique id prefix.
    fn find_network(&self, all: &[NetworkRecord], key: &str) -> Result<NetworkRecord, Error> {
        if let Some(n) = all.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let by_prefix: Vec<&NetworkRecord> = all
            .iter()
            .filter(|n| !key.is_empty() && n.id.starts_with(key))
            .collect();
        match by_prefix.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(not_found(key)),
            _ => Err(Error::invalid(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                by_prefix.len()
            ))),
        }
    }

    fn networks_locked(&self) -> Result<Vec<NetworkRecord>, Error> {
        self.ensure_predefined()
    }

    /// Running containers on each network, by network id.
    fn members(&self) -> BTreeMap<String, BTreeMap<String, NetworkMember>> {
        let mut out: BTreeMap<String, BTreeMap<String, NetworkMember>> = BTreeMap::new();
        for r in self.records() {
            let Some(rt) = self.runtime_net(&r.id) else {
                continue;
            };
            for e in rt.endpoints {
                out.entry(e.info.network_id.clone()).or_default().insert(
                    r.id.clone(),
                    NetworkMember {
                        name: r.name.clone(),
                        endpoint_id: e.info.endpoint_id.clone(),
                        mac_address: e.info.mac_address.clone(),
                        ipv4_address: format!("{}/{}", e.info.ipv4_address, e.info.prefix_len),
                    },
                );
            }
            // host-mode containers show under `host`, as in docker.
        }
        out
    }

    /// The addresses of a running container (this boot's only).
    pub fn runtime_net(&self, id: &str) -> Option<RuntimeNet> {
        let rt: RuntimeNet = read_json(&self.layout().container(id).join(RUNTIME_FILE))
            .ok()
            .flatten()?;
        (rt.boot_id == boot_id()).then_some(rt)
    }

    pub fn network_create(&self, spec: &NetworkSpec) -> Result<NetworkInfo, Error> {
        let NetworkSpec {
            name,
            driver,
            subnet,
            gateway,
            internal: internal_net,
            labels,
            options,
        } = *spec;
        match driver {
            None | Some("") | Some("bridge") => {}
            Some(d @ ("host" | "null")) => {
                return Err(Error::conflict(format!(
                    "only one instance of \"{d}\" network is allowed"
                )))
            }
            Some(d) => return Err(Error::missing(format!("plugin \"{d}\" not found"))),
        }
        if !super::super::names::docker_name(name, 255) {
            return Err(Error::invalid(format!(
                "invalid name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if gateway.is_some() && subnet.is_none() {
            return Err(Error::invalid(
                "invalid pool request: gateway requires a subnet",
            ));
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let all = self.networks_locked()?;
        if all.iter().any(|n| n.name == name) {
            return Err(Error::conflict(format!(
                "network with name {name} already exists"
            )));
        }
        let _host = host_lock();
        let mut rec = self.new_bridge(name, subnet, gateway, internal_net, options, &all)?;
        rec.labels = labels.clone();
        self.setup_bridge(&rec)?;
        if let Err(e) = self.write_network(&rec) {
            self.teardown_bridge(&rec);
            return Err(e);
        }
        super::super::events::network(self.layout().root(), &rec.id, &rec.name, "create");
        Ok(rec.info(BTreeMap::new()))
    }

    /// Creates (or re-creates after a reboot) a bridge and its rules.
    pub fn setup_bridge(&self, rec: &NetworkRecord) -> Result<(), Error> {
        if rec.driver != "bridge" {
            return Ok(());
        }
        let (_, prefix) = rec
            .subnet()
            .ok_or_else(|| Error::internal(format!("network {}: bad subnet", rec.name)))?;
        let gw: Ipv4Addr = rec
            .gateway
            .parse()
            .map_err(|_| Error::internal(format!("network {}: bad gateway", rec.name)))?;
        super::link::ensure_bridge(&rec.bridge, gw, prefix)
            .map_err(Error::failed(format!("creating bridge {}", rec.bridge)))?;
        super::link::enable_ip_forward().map_err(Error::failed("enabling IP forwarding"))?;
        if !in_guest() {
            let rules = super::nat::BridgeRules {
                bridge: &rec.bridge,
                subnet: &rec.subnet,
                internal: rec.internal,
            };
            if let Err(e) = super::nat::install(&rules) {
                let _ = super::nat::remove(&rec.bridge);
                let _ = super::link::remove_link(&rec.bridge);
                return Err(Error::unexpected(e));
            }
        }
        Ok(())
    }

    fn teardown_bridge(&self, rec: &NetworkRecord) {
        if rec.driver != "bridge" {
            return;
        }
        if !in_guest() {
            let _ = super::nat::remove(&rec.bridge);
        }
        let _ = super::link::remove_link(&rec.bridge);
    }

    pub fn network_list(&self) -> Result<Vec<NetworkInfo>, Error> {
        let all = {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.networks_locked()?
        };
        let mut members = self.members();
        Ok(all
            .iter()
            .map(|n| n.info(members.remove(&n.id).unwrap_or_default()))
            .collect())
    }

    pub fn network_inspect(&self, key: &str) -> Result<NetworkInfo, Error> {
        let all = {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.networks_locked()?
        };
        let n = self.find_network(&all, key)?;
        let members = self.members().remove(&n.id).unwrap_or_default();
        Ok(n.info(members))
    }

    pub fn network_remove(&self, key: &str) -> Result<String, Error> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let all = self.networks_locked()?;
        let n = self.find_network(&all, key)?;
        if n.is_predefined() {
            return Err(Error::conflict(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if self.members().get(&n.id).is_some_and(|m| !m.is_empty()) {
            return Err(Error::conflict(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        self.teardown_bridge(&n);
        std::fs::remove_dir_all(networks_dir(self.layout()).join(&n.id))
            .map_err(Error::unexpected)?;
        super::super::events::network(self.layout().root(), &n.id, &n.name, "destroy");
        Ok(n.name)
    }

    /// Removes user-defined networks with no running container.
    pub fn network_prune(&self) -> Vec<String> {
        let Ok(all) = self.network_list() else {
            return Vec::new();
        };
        all.iter()
            .filter(|n| !n.builtin && n.containers.is_empty())
            .filter_map(|n| self.network_remove(&n.id).ok())
            .collect()
    }

    /// The networks a new container joins (at create).
    pub(in crate::engine) fn resolve_attachments(
        &self,
        cfg: &berth_protocol::ContainerConfig,
    ) -> Result<Vec<Attachment>, Error> {
        let all = self.networks_locked()?;
        let mode = cfg.network_mode.as_deref().unwrap_or("bridge");
        let mode = if mode == "default" { "bridge" } else { mode };
        if mode.starts_with("container:") {
            return Err(Error::invalid(
                "--network container:NAME is not supported yet",
            ));
        }
        let n = self.find_network(&all, mode)?;
        if !cfg.network_aliases.is_empty() && !n.user_defined() {
            return Err(Error::invalid(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        if cfg.ipv4_address.is_some() && !n.user_defined() {
            return Err(Error::invalid(
                "user specified IP address is supported on user defined networks only",
            ));
        }
        if !cfg.links.is_empty() && n.driver != "bridge" {
            return Err(Error::invalid("conflicting options: host type networking can't be used with links. This would result in undefined behavior",
            ));
        }
        if let Some(ip) = &cfg.ipv4_address {
            let a: Ipv4Addr = ip
                .parse()
                .map_err(|_| Error::invalid(format!("invalid IPv4 address: {ip}")))?;
            let net = n.subnet().unwrap_or((Ipv4Addr::UNSPECIFIED, 32));
            if !contains(net, a) {
                return Err(Error::invalid(format!(
                    "no configured subnet or ip-range contain the IP address {ip}"
                )));
            }
        }
        for l in &cfg.links {
            let target = l.split(':').next().unwrap_or_default();
            self.resolve(target)
                .map_err(|_| Error::invalid(format!("could not get container for {target}")))?;
        }
        Ok(vec![Attachment {
            network_id: n.id,
            aliases: cfg.network_aliases.clone(),
            ipv4_requested: cfg.ipv4_address.clone(),
            links: cfg.links.clone(),
        }])
    }

    /// The network records a container joins, in order.
    pub fn attachments_of(&self, rec: &ContainerRecord) -> Vec<(NetworkRecord, Attachment)> {
        let all = read_networks(self.layout());
        rec.attachments()
            .into_iter()
            .filter_map(|a| {
                let n = all.iter().find(|n| n.id == a.network_id)?.clone();
                Some((n, a))
            })
            .collect()
    }

    /// Allocates addresses for a container about to start and writes
    /// `network.json`. Takes `self.lock`.
    pub fn allocate_endpoints(&self, rec: &ContainerRecord) -> Result<RuntimeNet, Error> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let all = self.networks_locked()?;
        let mut used: Vec<Ipv4Addr> = Vec::new();
        for other in self.records() {
            if other.id == rec.id {
                continue;
            }
            if let Some(rt) = self.runtime_net(&other.id) {
                used.extend(
                    rt.endpoints
                        .iter()
                        .filter_map(|e| e.info.ipv4_address.parse::<Ipv4Addr>().ok()),
                );
            }
        }
        let mut endpoints = Vec::new();
        for (i, a) in rec.attachments().iter().enumerate() {
            let n = all
                .iter()
                .find(|n| n.id == a.network_id)
                .ok_or_else(|| not_found(&a.network_id))?;
            if n.driver != "bridge" {
                continue;
            }
            let _host = host_lock();
            self.setup_bridge(n)?;
            let (net, prefix) = n.subnet().ok_or_else(|| Error::internal("bad subnet"))?;
            let gw: Ipv4Addr = n.gateway.parse().map_err(Error::unexpected)?;
            let ip = match &a.ipv4_requested {
                Some(ip) => {
                    let ip: Ipv4Addr = ip.parse().map_err(Error::unexpected)?;
                    if used.contains(&ip) || ip == gw {
                        return Err(Error::conflict(format!("Address already in use: {ip}")));
                    }
                    ip
                }
                None => {
                    let base = u32::from(net);
                    let size = 1u64 << (32 - prefix);
                    (1..size.saturating_sub(1))
                        .map(|o| Ipv4Addr::from(base + o as u32))
                        .find(|c| *c != gw && !used.contains(c))
                        .ok_or_else(|| {
                            Error::conflict(format!(
                                "no available IPv4 addresses on network {}",
                                n.name
                            ))
                        })?
                }
            };
            used.push(ip);
            let o = ip.octets();
            let mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
            let mut aliases = a.aliases.clone();
            if n.user_defined() {
                // As docker: the short id is an alias on user networks.
                aliases.push(rec.id[..12].to_string());
            }
            endpoints.push(RuntimeEndpoint {
                info: EndpointInfo {
                    network_id: n.id.clone(),
                    network_name: n.name.clone(),
                    endpoint_id: random_hex(32),
                    ipv4_address: ip.to_string(),
                    prefix_len: prefix,
                    gateway: gw.to_string(),
                    mac_address: mac,
                    aliases,
                    links: a.links.clone(),
                    ipv4_requested: a.ipv4_requested.clone(),
                },
                bridge: n.bridge.clone(),
                subnet: n.subnet.clone(),
                internal: n.internal,
                user_defined: n.user_defined(),
                veth: format!("vb{}{}", &rec.id[..10], i),
                ifname: format!("eth{i}"),
            });
        }
        let rt = RuntimeNet {
            boot_id: boot_id(),
            endpoints,
        };
        // This boot's only (boot_id): no fsync (layout.rs).
        crate::layout::write_json_atomic_unsynced(
            &self.layout().container(&rec.id).join(RUNTIME_FILE),
            &rt,
        )
        .map_err(Error::unexpected)?;
        Ok(rt)
    }

    /// The mode of a container: `bridge`-driver networks, `host` or `none`.
    pub fn network_driver(&self, rec: &ContainerRecord) -> String {
        self.attachments_of(rec)
            .first()
            .map(|(n, _)| n.driver.clone())
            .unwrap_or_else(|| "null".into())
    }

    /// `network connect` (stopped containers only for now).
    pub fn network_connect(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
        ipv4: Option<&str>,
    ) -> Result<(), Error> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let all = self.networks_locked()?;
        let n = self.find_network(&all, network)?;
        let mut rec = self.resolve(container)?;
        let atts = rec.attachments();
        let current: Vec<&NetworkRecord> = atts
            .iter()
            .filter_map(|a| all.iter().find(|n| n.id == a.network_id))
            .collect();
        if n.driver != "bridge" || current.iter().any(|c| c.driver != "bridge") {
            return Err(Error::conflict(
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        if atts.iter().any(|a| a.network_id == n.id) {
            return Err(Error::conflict(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, n.name
            )));
        }
        if self.runtime_net(&rec.id).is_some() {
            return Err(Error::conflict(
                "connecting a running container to a network is not supported yet: stop it first",
            ));
        }
        let mut atts = atts;
        atts.push(Attachment {
            network_id: n.id.clone(),
            aliases: aliases.to_vec(),
            ipv4_requested: ipv4.map(String::from),
            links: Vec::new(),
        });
        rec.networks = Some(atts);
        self.rewrite_record(&rec)
    }

    pub fn network_disconnect(
        &self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<(), Error> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let all = self.networks_locked()?;
        let n = self.find_network(&all, network);
        let mut rec = self.resolve(container)?;
        let n = match n {
            Ok(n) => n,
            Err(e) if force => {
                let _ = e;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut atts = rec.attachments();
        if !atts.iter().any(|a| a.network_id == n.id) {
            return Err(Error::conflict(format!(
                "container {} is not connected to network {}",
                rec.id, n.name
            )));
        }
        if n.driver != "bridge" {
            return Err(Error::conflict(
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        if self.runtime_net(&rec.id).is_some() {
            return Err(Error::conflict(
                "disconnecting a running container is not supported yet: stop it first",
            ));
        }
        atts.retain(|a| a.network_id != n.id);
        rec.networks = Some(atts);
        self.rewrite_record(&rec)
    }

    fn rewrite_record(&self, rec: &ContainerRecord) -> Result<(), Error> {
        write_json_atomic(
            &self.layout().container(&rec.id).join("container.json"),
            rec,
        )
        .map_err(Error::unexpected)
    }

    /// Containers reachable by name from `rec` on its user networks (for the
    /// embedded DNS): (network id, names, address).
    pub fn dns_entries(&self, networks: &[String]) -> Vec<(String, Vec<String>, Ipv4Addr)> {
        let mut out = Vec::new();
        for r in self.records() {
            let Some(rt) = self.runtime_net(&r.id) else {
                continue;
            };
            for e in rt.endpoints {
                if !networks.contains(&e.info.network_id) {
                    continue;
                }
                let Ok(ip) = e.info.ipv4_address.parse() else {
                    continue;
                };
                let mut names = vec![r.name.clone(), r.hostname.clone()];
                names.extend(e.info.aliases.iter().cloned());
                out.push((e.info.network_id.clone(), names, ip));
            }
        }
        out
    }

    /// The endpoints of a container for inspect, by network name.
    pub fn endpoints_for_inspect(&self, rec: &ContainerRecord) -> BTreeMap<String, EndpointInfo> {
        let rt = self.runtime_net(&rec.id).unwrap_or_default();
        self.attachments_of(rec)
            .into_iter()
            .map(|(n, a)| {
                let live = rt.endpoints.iter().find(|e| e.info.network_id == n.id);
                let info = match live {
                    Some(e) => e.info.clone(),
                    None => EndpointInfo {
                        network_id: n.id.clone(),
                        network_name: n.name.clone(),
                        aliases: a.aliases.clone(),
                        links: a.links.clone(),
                        ipv4_requested: a.ipv4_requested.clone(),
                        ..Default::default()
                    },
                };
                (n.name.clone(), info)
            })
            .collect()
    }

    /// Ports published now.
    pub fn ports(&self, key: &str) -> Result<Vec<berth_protocol::PublishedPort>, Error> {
        let r = self.resolve(key)?;
        Ok(self.published_ports(&r.id))
    }

    pub fn published_ports(&self, id: &str) -> Vec<berth_protocol::PublishedPort> {
        if self.runtime_net(id).is_none() {
            return Vec::new();
        }
        read_json(&self.layout().container(id).join(PORTS_FILE))
            .ok()
            .flatten()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_math() {
        assert_eq!(
            parse_cidr("172.18.0.0/16").unwrap(),
            (Ipv4Addr::new(172, 18, 0, 0), 16)
        );
        assert!(parse_cidr("172.18.0.0").is_err());
        assert!(parse_cidr("172.18.0.0/33").is_err());
        assert!(parse_cidr("x/16").is_err());
        let a = (Ipv4Addr::new(172, 18, 0, 0), 16);
        assert!(overlaps(a, (Ipv4Addr::new(172, 18, 5, 0), 24)));
        assert!(overlaps(a, (Ipv4Addr::new(172, 0, 0, 0), 8)));
        assert!(!overlaps(a, (Ipv4Addr::new(172, 19, 0, 0), 16)));
        assert!(contains(a, Ipv4Addr::new(172, 18, 255, 1)));
        assert!(!contains(a, Ipv4Addr::new(172, 19, 0, 1)));
        assert_eq!(default_pools().count(), 31);
    }

    #[test]
    fn host_routes_parse_loopback_free() {
        // Every route read back is a valid prefix; the default route is
        // left out.
        for (_, p) in host_routes() {
            assert!(p > 0 && p <= 32);
        }
    }
}
