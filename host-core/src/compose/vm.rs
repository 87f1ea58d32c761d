//! `compose --isolation vm`: each service container in a microVM of its
//! own, started by a detached keeper (see `docs/own-vm-detach.md`). There
//! is no engine across the VMs, so no project network either: service
//! names reach other services through the VMs' user-mode networks.
//!
//! # Service names between VMs
//! Each service gets two addresses ([`Plan`]):
//! - a *host* address in a loopback block of the project's own,
//!   `127.X.Y.0/24` ([`host_block`], from a hash of the project name;
//!   127.0.0.0/8 is all loopback on Linux), on which the service's keeper
//!   publishes every TCP port the service declares (`ports` targets,
//!   `expose`, the image's `ExposedPorts`), same number (a port below
//!   1024 at [`PEER_LOW_PORT_OFFSET`] + port: an unprivileged keeper
//!   cannot bind it; the VMM maps it the same way);
//! - a *guest* address, `198.18.0.N` (the benchmarking range, unused by
//!   ordinary networks), the same in every VM of the project.
//!
//! Every VM's user-mode network maps each service's guest address to its
//! host address (`berth-vmm --net-peer`), and every container gets
//! `/etc/hosts` entries (`extra_hosts`) for the services' names, network
//! aliases and container names. A connection from service `b` to `a:80`
//! thus goes: b's container → b's VMM stack → the host's
//! `127.X.Y.N:80` → a's keeper → a's VM → a's container port 80.
//!
//! Limits: TCP only; only declared ports are reachable; one container per
//! service (`scale` > 1 is refused: one address serves one container);
//! the addresses follow the services' sorted names, so adding or removing
//! a service renumbers them (`down` and `up` again).

use super::{spec, Error, Result};
use berth_compose::{Project, Service};
use berth_protocol::{ContainerConfig, PortBinding, PortProto};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The first guest address of a project's services (`198.18.0.2`).
pub const GUEST_BASE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Where a service's port below 1024 is on its host address: this plus
/// the port (`berth-vmm`'s `PEER_LOW_PORT_OFFSET`: a keeper run by an
/// unprivileged user cannot bind port 80).
pub const PEER_LOW_PORT_OFFSET: u16 = 40000;

/// The host port behind a service's `port` for the other services.
pub fn peer_host_port(port: u16) -> u16 {
    if port < 1024 {
        PEER_LOW_PORT_OFFSET + port
    } else {
        port
    }
}

/// Most services in one project with `--isolation vm` (one /24 each way).
pub const MAX_SERVICES: usize = 250;

/// The project's addresses: each service's guest and host address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    block: Ipv4Addr,
    index: BTreeMap<String, u32>,
}

/// The loopback block `127.X.Y.0/24` of project `name`: X in 16..=239
/// (away from 127.0.0.1, 127.0.0.53, 127.0.1.1 and the like), from an
/// FNV-1a hash of the name, so every command finds the same one.
pub fn host_block(name: &str) -> Ipv4Addr {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    Ipv4Addr::new(127, 16 + (h % 224) as u8, (h >> 8) as u8, 0)
}

impl Plan {
    /// Addresses for every service of `project` (profiles or not: a
    /// service started later must find the same ones).
    pub fn new(project: &Project) -> Result<Plan> {
        if project.services.len() > MAX_SERVICES {
            return Err(Error::Placement(format!(
                "--isolation vm runs at most {MAX_SERVICES} services in one project ({} given)",
                project.services.len()
            )));
        }
        Ok(Plan {
            block: host_block(&project.name),
            index: project
                .services
                .keys()
                .enumerate()
                .map(|(i, k)| (k.clone(), i as u32))
                .collect(),
        })
    }

    /// The address `service` has in every VM of the project.
    pub fn guest_addr(&self, service: &str) -> Option<Ipv4Addr> {
        let i = self.index.get(service)?;
        Some(Ipv4Addr::from(u32::from(GUEST_BASE) + i))
    }

    /// The host loopback address `service`'s keeper publishes its ports on.
    pub fn host_addr(&self, service: &str) -> Option<Ipv4Addr> {
        let i = self.index.get(service)?;
        Some(Ipv4Addr::from(u32::from(self.block) + 2 + i))
    }

    /// The user-mode network peers of every VM of the project (guest
    /// address, host address).
    pub fn peers(&self) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        self.index
            .keys()
            .filter_map(|s| Some((self.guest_addr(s)?, self.host_addr(s)?)))
            .collect()
    }
}

/// The names a service answers to from other services: its name, its
/// network aliases, its containers' names.
fn host_names(project: &Project, s: &Service) -> Vec<String> {
    let mut names = vec![s.name.clone()];
    for net in spec::service_networks(s) {
        names.extend(spec::aliases(s, &net));
    }
    names.push(spec::container_name(&project.name, &s.name, 1));
    let mut seen = BTreeSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

/// The TCP ports a service's container listens on, as far as the file
/// and image say: `ports` targets, `expose`, the image's `ExposedPorts`.
pub fn declared_tcp_ports(cfg: &ContainerConfig, image_exposed: &[String]) -> Vec<u16> {
    let mut out = BTreeSet::new();
    for b in &cfg.ports {
        if b.proto == PortProto::Tcp {
            out.insert(b.container_port);
        }
    }
    for p in image_exposed.iter().chain(&cfg.expose) {
        let (proto, port) = crate::ports::split_proto_port(p);
        if let (Ok(port), Some(PortProto::Tcp)) = (port.parse::<u16>(), PortProto::parse(proto)) {
            out.insert(port);
        }
    }
    out.into_iter().filter(|p| *p != 0).collect()
}

/// What `--isolation vm` cannot give a service, before anything starts.
pub fn check_service(project: &Project, s: &Service, replicas: u64) -> Result<()> {
    if let Some(m) = spec::network_mode(s) {
        return Err(Error::Placement(format!(
            "service {:?}: network_mode {m:?} is not supported with --isolation vm (each service runs in a VM of its own)",
            s.name
        )));
    }
    if replicas > 1 {
        return Err(Error::Placement(format!(
            "service {:?}: scale {replicas} is not supported with --isolation vm yet (one VM, one address per service)",
            s.name
        )));
    }
    spec::service_config(project, s)?;
    Ok(())
}

/// The container config of `s`'s container `number` in its own VM: the
/// service's config with its name and labels, no project network, the
/// other services' names in `/etc/hosts`, and its declared TCP ports
/// published on its host address as well (for the other services). Bind
/// sources are not yet pointed at the VM's shares (the caller's
/// placement check does that).
pub fn container_config(
    project: &Project,
    s: &Service,
    plan: &Plan,
    number: u64,
    image_exposed: &[String],
) -> Result<(ContainerConfig, String)> {
    let base = spec::service_config(project, s)?;
    let hash = spec::config_hash(project, s, &base);
    let mut cfg = base.clone();
    cfg.name = Some(spec::container_name(&project.name, &s.name, number));
    cfg.labels = spec::container_labels(&base.labels, number, &hash, false);
    // The VM's engine has no project network: the container is on the
    // VM's default one, and names come from /etc/hosts.
    cfg.network_mode = None;
    cfg.network_aliases.clear();
    for other in project.services.values() {
        let Some(addr) = plan.guest_addr(&other.name) else {
            continue;
        };
        for n in host_names(project, other) {
            cfg.extra_hosts.push(format!("{n}:{addr}"));
        }
    }
    if let Some(host) = plan.host_addr(&s.name) {
        let ports = declared_tcp_ports(&base, image_exposed);
        for port in &ports {
            let on_host = peer_host_port(*port);
            if on_host != *port && ports.contains(&on_host) {
                return Err(Error::Placement(format!(
                    "service {:?}: port {port} is reached by the other services' VMs at host port {on_host}, which the service declares as well; --isolation vm cannot serve both",
                    s.name
                )));
            }
        }
        for port in ports {
            cfg.ports.push(PortBinding {
                host_ip: host.to_string(),
                host_port: peer_host_port(port),
                host_port_end: 0,
                container_port: port,
                proto: PortProto::Tcp,
            });
        }
    }
    Ok((cfg, hash))
}

/// Whether a published port is one of the project's peer bindings (on its
/// loopback block), not one the user asked for: `ps` leaves those out.
pub fn is_peer_binding(project: &str, host_ip: &str) -> bool {
    let block = u32::from(host_block(project)) >> 8;
    host_ip
        .parse::<Ipv4Addr>()
        .is_ok_and(|ip| u32::from(ip) >> 8 == block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_compose::LoadOptions;

    fn project(yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), yaml).unwrap();
        Project::load(&LoadOptions {
            working_dir: Some(dir.path().to_path_buf()),
            project_name: Some("demo".into()),
            ..Default::default()
        })
        .unwrap()
        .0
    }

    const TWO: &str = "services:\n  web:\n    image: busybox\n    ports: [\"8080:80\"]\n    expose: [\"9000\", \"53/udp\"]\n    networks:\n      default:\n        aliases: [www]\n  client:\n    image: busybox\n    depends_on: [web]\n    command: wget -qO- http://web/\n";

    #[test]
    fn every_service_gets_a_guest_and_a_host_address() {
        let p = project(TWO);
        let plan = Plan::new(&p).unwrap();
        // Sorted names: client, web.
        assert_eq!(
            plan.guest_addr("client"),
            Some(Ipv4Addr::new(198, 18, 0, 2))
        );
        assert_eq!(plan.guest_addr("web"), Some(Ipv4Addr::new(198, 18, 0, 3)));
        let block = host_block("demo");
        assert_eq!(block.octets()[0], 127);
        assert!((16..=239).contains(&block.octets()[1]));
        assert_eq!(block.octets()[3], 0);
        let web = plan.host_addr("web").unwrap();
        assert_eq!(u32::from(web), u32::from(block) + 3);
        assert_eq!(plan.guest_addr("nope"), None);
        assert_eq!(
            plan.peers(),
            vec![
                (
                    Ipv4Addr::new(198, 18, 0, 2),
                    plan.host_addr("client").unwrap()
                ),
                (Ipv4Addr::new(198, 18, 0, 3), web),
            ]
        );
        assert_eq!(host_block("demo"), block, "stable");
        assert_ne!(host_block("other"), block);
        assert!(is_peer_binding("demo", &web.to_string()));
        assert!(!is_peer_binding("demo", "0.0.0.0"));
        assert!(!is_peer_binding("demo", "::"));
    }

    #[test]
    fn the_config_names_the_services_and_publishes_declared_ports_for_peers() {
        let p = project(TWO);
        let plan = Plan::new(&p).unwrap();
        let web = &p.services["web"];
        let (cfg, hash) =
            container_config(&p, web, &plan, 1, &["80/tcp".into(), "7000".into()]).unwrap();
        assert_eq!(cfg.name.as_deref(), Some("demo-web-1"));
        assert_eq!(cfg.labels.get(spec::label::PROJECT).unwrap(), "demo");
        assert_eq!(cfg.labels.get(spec::label::SERVICE).unwrap(), "web");
        assert_eq!(cfg.labels.get(spec::label::NUMBER).unwrap(), "1");
        assert_eq!(cfg.labels.get(spec::label::HASH).unwrap(), &hash);
        assert_eq!(cfg.network_mode, None);
        for h in [
            "web:198.18.0.3",
            "www:198.18.0.3",
            "demo-web-1:198.18.0.3",
            "client:198.18.0.2",
            "demo-client-1:198.18.0.2",
        ] {
            assert!(
                cfg.extra_hosts.contains(&h.to_string()),
                "{h} in {:?}",
                cfg.extra_hosts
            );
        }
        let host = plan.host_addr("web").unwrap().to_string();
        let peer: Vec<(u16, u16)> = cfg
            .ports
            .iter()
            .filter(|b| b.host_ip == host)
            .map(|b| (b.host_port, b.container_port))
            .collect();
        // 80 (ports target and image; at 40080 on the host), 7000
        // (image), 9000 (expose); not 53/udp.
        assert_eq!(peer, vec![(40080, 80), (7000, 7000), (9000, 9000)]);
        // The user's own binding stays.
        assert!(cfg
            .ports
            .iter()
            .any(|b| b.host_port == 8080 && b.container_port == 80 && b.host_ip.is_empty()));
    }

    #[test]
    fn a_low_port_whose_host_port_is_declared_too_is_refused() {
        let p = project("services:\n  a:\n    image: busybox\n    expose: [\"80\", \"40080\"]\n");
        let plan = Plan::new(&p).unwrap();
        let e = container_config(&p, &p.services["a"], &plan, 1, &[]).unwrap_err();
        assert!(e.to_string().contains("host port 40080"), "{e}");
        assert_eq!(peer_host_port(1023), 41023);
        assert_eq!(peer_host_port(1024), 1024);
    }

    #[test]
    fn network_mode_and_scale_are_refused() {
        let p = project(
            "services:\n  a:\n    image: busybox\n    network_mode: host\n  b:\n    image: busybox\n",
        );
        let e = check_service(&p, &p.services["a"], 1).unwrap_err();
        assert!(e.to_string().contains("network_mode \"host\""), "{e}");
        let e = check_service(&p, &p.services["b"], 2).unwrap_err();
        assert!(e.to_string().contains("scale 2"), "{e}");
        check_service(&p, &p.services["b"], 1).unwrap();
    }
}
