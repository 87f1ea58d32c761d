//! A container's networking as docker 28 shows it: inspect's
//! `NetworkSettings`, the networking fields of `HostConfig` and `Config`,
//! and `ps`'s PORTS and NETWORKS columns, from what the engine reports
//! (`ContainerDetails.networks`, `ports`, `exposed_ports`) and the
//! container's config.

use crate::ports;
use berth_protocol::{ContainerConfig, ContainerDetails, ContainerStatus, EndpointInfo};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The network mode docker shows: `bridge` when none was given.
fn mode(cfg: &ContainerConfig) -> &str {
    cfg.network_mode.as_deref().unwrap_or("bridge")
}

/// docker's `NetworkMode.IsUserDefined`.
fn user_defined(name: &str) -> bool {
    !matches!(name, "default" | "bridge" | "host" | "none") && !name.starts_with("container:")
}

fn running(d: &ContainerDetails) -> bool {
    matches!(
        d.summary.status,
        ContainerStatus::Running | ContainerStatus::Paused
    )
}

/// The networks the container is on, by name: the engine's, or the one
/// its config names (without addresses) when the engine reports none.
fn endpoints(d: &ContainerDetails) -> BTreeMap<String, EndpointInfo> {
    if !d.networks.is_empty() {
        return d.networks.clone();
    }
    let name = mode(&d.config).to_string();
    let ep = EndpointInfo {
        network_name: name.clone(),
        ..Default::default()
    };
    BTreeMap::from([(name, ep)])
}

/// Every exposed port (image, `--expose`, `-p`).
fn exposed(d: &ContainerDetails) -> Vec<String> {
    ports::exposed(&d.exposed_ports, &d.config.ports)
}

/// Whether the container's ports are reachable through a network of its
/// own (not `host`, not `none`) while it runs.
fn has_port_map(d: &ContainerDetails) -> bool {
    running(d) && !matches!(mode(&d.config), "host" | "none")
}

/// `ps`'s PORTS column.
pub fn ps_ports(d: &ContainerDetails) -> String {
    if !has_port_map(d) {
        return String::new();
    }
    ports::ps_column(&d.ports, &exposed(d))
}

/// `ps`'s `.Networks`: the network names, joined by commas.
pub fn ps_networks(d: &ContainerDetails) -> String {
    endpoints(d).into_keys().collect::<Vec<_>>().join(",")
}

/// docker's `buildEndpointDNSNames`: name, aliases, short id, hostname,
/// each once.
fn dns_names(d: &ContainerDetails, aliases: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let short = &d.summary.id[..d.summary.id.len().min(12)];
    let names = std::iter::once(d.summary.name.as_str())
        .chain(aliases.iter().map(String::as_str))
        .chain([short, d.hostname.as_str()]);
    for n in names.filter(|n| !n.is_empty()) {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// One entry of `NetworkSettings.Networks` (docker's `EndpointSettings`).
fn endpoint_json(d: &ContainerDetails, name: &str, ep: &EndpointInfo) -> Value {
    let primary = name == mode(&d.config);
    let mut aliases = ep.aliases.clone();
    if aliases.is_empty() && primary {
        aliases = d.config.network_aliases.clone();
    }
    let requested = ep
        .ipv4_requested
        .clone()
        .or_else(|| primary.then(|| d.config.ipv4_address.clone()).flatten());
    let list = |v: &[String]| {
        if v.is_empty() {
            Value::Null
        } else {
            json!(v)
        }
    };
    // docker sets DNS names on user-defined networks when the container
    // first joins them (at its first start), and keeps them.
    let dns = if user_defined(name) && d.summary.started_at.is_some() {
        json!(dns_names(d, &aliases))
    } else {
        Value::Null
    };
    json!({
        "IPAMConfig": requested.map(|ip| json!({"IPv4Address": ip})),
        "Links": if user_defined(name) { list(&ep.links) } else { Value::Null },
        "Aliases": list(&aliases),
        "MacAddress": ep.mac_address,
        "DriverOpts": null,
        "GwPriority": 0,
        "NetworkID": ep.network_id,
        "EndpointID": ep.endpoint_id,
        "Gateway": ep.gateway,
        "IPAddress": ep.ipv4_address,
        "IPPrefixLen": ep.prefix_len,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": dns
    })
}

/// inspect's `NetworkSettings`. The top-level addresses are those on the
/// default `bridge` network, as docker's are.
pub fn network_settings(d: &ContainerDetails) -> Value {
    let eps = endpoints(d);
    let bridge = eps.get("bridge").cloned().unwrap_or_default();
    let networks: Map<String, Value> = eps
        .iter()
        .map(|(name, ep)| (name.clone(), endpoint_json(d, name, ep)))
        .collect();
    let port_map = if has_port_map(d) {
        ports::ports_json(&d.ports, &exposed(d))
    } else {
        json!({})
    };
    json!({
        "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": port_map,
        "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
        "EndpointID": bridge.endpoint_id, "Gateway": bridge.gateway,
        "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "IPAddress": bridge.ipv4_address, "IPPrefixLen": bridge.prefix_len,
        "IPv6Gateway": "", "MacAddress": bridge.mac_address,
        "Networks": networks
    })
}

/// `HostConfig.Links` as docker's daemon shows legacy links (`--link` on
/// a network that is not user-defined): `/target:/name/alias`.
fn legacy_links(cfg: &ContainerConfig, name: &str) -> Value {
    if user_defined(mode(cfg)) || cfg.links.is_empty() {
        return Value::Null;
    }
    let links: Vec<String> = cfg
        .links
        .iter()
        .map(|l| {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            format!(
                "/{}:/{name}/{}",
                target.trim_start_matches('/'),
                alias.rsplit('/').next().unwrap_or(alias)
            )
        })
        .collect();
    json!(links)
}

/// The networking fields of inspect's `HostConfig`.
pub fn host_config(cfg: &ContainerConfig, name: &str) -> Map<String, Value> {
    let fields = json!({
        "NetworkMode": mode(cfg),
        "PortBindings": ports::port_bindings_json(&cfg.ports),
        "PublishAllPorts": cfg.publish_all,
        "Dns": cfg.dns, "DnsOptions": cfg.dns_options, "DnsSearch": cfg.dns_search,
        "ExtraHosts": if cfg.extra_hosts.is_empty() { Value::Null } else { json!(cfg.extra_hosts) },
        "Links": legacy_links(cfg, name)
    });
    match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// inspect's `Config.ExposedPorts` (`{"80/tcp": {}}`); docker leaves the
/// field out when there are none.
pub fn exposed_ports(d: &ContainerDetails) -> Option<Value> {
    let list = exposed(d);
    (!list.is_empty()).then(|| {
        Value::Object(
            list.into_iter()
                .map(|p| (p, json!({})))
                .collect::<Map<String, Value>>(),
        )
    })
}

/// A container named `web` for the tests of inspect and ps.
/// A container as tests of inspect and list output start from.
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub fn sample_details(status: ContainerStatus) -> ContainerDetails {
    ContainerDetails {
        summary: berth_protocol::ContainerSummary {
            id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            name: "web".into(),
            image: "alpine".into(),
            image_id: "sha256:abc".into(),
            command: "sh".into(),
            created: "2026-12-05T19:45:47Z".into(),
            status,
            exit_code: None,
            started_at: Some("2026-12-05T19:45:48Z".into()),
            finished_at: None,
            labels: BTreeMap::new(),
            restart_count: 0,
            health: None,
            ports: None,
        },
        config: ContainerConfig::default(),
        path: "sh".into(),
        args: vec![],
        env: vec![],
        pid: Some(42),
        hostname: "0123456789ab".into(),
        mounts: vec![],
        networks: BTreeMap::new(),
        ports: vec![],
        exposed_ports: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::{PortBinding, PortProto, PublishedPort};

    fn bridge_ep() -> EndpointInfo {
        EndpointInfo {
            network_id: "n1".into(),
            network_name: "bridge".into(),
            endpoint_id: "e1".into(),
            ipv4_address: "172.17.0.2".into(),
            prefix_len: 16,
            gateway: "172.17.0.1".into(),
            mac_address: "02:42:ac:11:00:02".into(),
            ..Default::default()
        }
    }

    fn published(ip: &str, host: u16, port: u16) -> PublishedPort {
        PublishedPort {
            container_port: port,
            proto: PortProto::Tcp,
            host_ip: ip.into(),
            host_port: host,
        }
    }

    #[test]
    fn bridge_container_like_docker_28() {
        let mut d = sample_details(ContainerStatus::Running);
        d.networks.insert("bridge".into(), bridge_ep());
        d.config.ports = vec![PortBinding {
            host_ip: String::new(),
            host_port: 8080,
            host_port_end: 0,
            container_port: 80,
            proto: PortProto::Tcp,
        }];
        d.exposed_ports = vec!["443/tcp".into()];
        d.ports = vec![published("0.0.0.0", 8080, 80), published("::", 8080, 80)];
        let ns = network_settings(&d);
        assert_eq!(
            ns["Ports"],
            json!({
                "443/tcp": null,
                "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}]
            })
        );
        assert_eq!(ns["IPAddress"], "172.17.0.2");
        assert_eq!(ns["IPPrefixLen"], 16);
        assert_eq!(ns["Gateway"], "172.17.0.1");
        assert_eq!(ns["EndpointID"], "e1");
        assert_eq!(ns["MacAddress"], "02:42:ac:11:00:02");
        assert_eq!(
            ns["Networks"]["bridge"],
            json!({
                "IPAMConfig": null, "Links": null, "Aliases": null,
                "MacAddress": "02:42:ac:11:00:02", "DriverOpts": null, "GwPriority": 0,
                "NetworkID": "n1", "EndpointID": "e1", "Gateway": "172.17.0.1",
                "IPAddress": "172.17.0.2", "IPPrefixLen": 16, "IPv6Gateway": "",
                "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null
            })
        );
        let keys: Vec<&String> = ns.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 18);
        assert_eq!(
            ps_ports(&d),
            "443/tcp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
        );
        assert_eq!(ps_networks(&d), "bridge");
        assert_eq!(
            exposed_ports(&d).unwrap(),
            json!({"443/tcp": {}, "80/tcp": {}})
        );
        // Stopped: no port map, no PORTS; the networks stay.
        d.summary.status = ContainerStatus::Exited;
        d.ports.clear();
        assert_eq!(network_settings(&d)["Ports"], json!({}));
        assert_eq!(ps_ports(&d), "");
        assert_eq!(ps_networks(&d), "bridge");
    }

    #[test]
    fn user_network_like_docker_28() {
        let mut d = sample_details(ContainerStatus::Running);
        d.config.network_mode = Some("my-net".into());
        d.config.network_aliases = vec!["www".into()];
        d.config.ipv4_address = Some("172.20.0.5".into());
        d.config.links = vec!["db:database".into()];
        d.networks.insert(
            "my-net".into(),
            EndpointInfo {
                network_id: "n2".into(),
                network_name: "my-net".into(),
                endpoint_id: "e2".into(),
                ipv4_address: "172.20.0.5".into(),
                prefix_len: 16,
                gateway: "172.20.0.1".into(),
                mac_address: "02:42:ac:14:00:05".into(),
                aliases: vec!["www".into()],
                links: vec!["db:database".into()],
                ipv4_requested: Some("172.20.0.5".into()),
            },
        );
        let ns = network_settings(&d);
        // Top-level addresses are the default bridge's only.
        assert_eq!(ns["IPAddress"], "");
        let ep = &ns["Networks"]["my-net"];
        assert_eq!(ep["IPAMConfig"], json!({"IPv4Address": "172.20.0.5"}));
        assert_eq!(ep["Aliases"], json!(["www"]));
        assert_eq!(ep["Links"], json!(["db:database"]));
        assert_eq!(ep["DNSNames"], json!(["web", "www", "0123456789ab"]));
        let host = host_config(&d.config, "web");
        assert_eq!(host["NetworkMode"], "my-net");
        assert_eq!(host["Links"], Value::Null);
        assert_eq!(ps_networks(&d), "my-net");
        // Never started: no DNS names yet.
        d.summary.started_at = None;
        assert_eq!(
            network_settings(&d)["Networks"]["my-net"]["DNSNames"],
            Value::Null
        );
    }

    #[test]
    fn host_config_fields() {
        let mut cfg = ContainerConfig::default();
        let host = host_config(&cfg, "web");
        assert_eq!(
            Value::Object(host),
            json!({
                "NetworkMode": "bridge", "PortBindings": {}, "PublishAllPorts": false,
                "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": null, "Links": null
            })
        );
        cfg.links = vec!["db:database".into(), "cache".into()];
        cfg.extra_hosts = vec!["a:1.2.3.4".into()];
        cfg.dns = vec!["8.8.8.8".into()];
        cfg.publish_all = true;
        let host = host_config(&cfg, "web");
        assert_eq!(
            host["Links"],
            json!(["/db:/web/database", "/cache:/web/cache"])
        );
        assert_eq!(host["ExtraHosts"], json!(["a:1.2.3.4"]));
        assert_eq!(host["Dns"], json!(["8.8.8.8"]));
        assert_eq!(host["PublishAllPorts"], true);
    }

    #[test]
    fn no_engine_networks_yet() {
        // An engine that reports no endpoint: the configured network,
        // without addresses.
        let mut d = sample_details(ContainerStatus::Created);
        d.config.network_mode = Some("none".into());
        let ns = network_settings(&d);
        assert_eq!(ns["Networks"]["none"]["IPAddress"], "");
        assert_eq!(ps_networks(&d), "none");
        assert_eq!(exposed_ports(&d), None);
        // host and none publish nothing.
        d.summary.status = ContainerStatus::Running;
        d.exposed_ports = vec!["80/tcp".into()];
        assert_eq!(ps_ports(&d), "");
    }
}
