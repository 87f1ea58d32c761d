//! Networks, endpoints and published ports on the wire.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// TCP or UDP.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum PortProto {
    #[default]
    Tcp,
    Udp,
}

impl PortProto {
    pub fn as_str(self) -> &'static str {
        match self {
            PortProto::Tcp => "tcp",
            PortProto::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Option<PortProto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(PortProto::Tcp),
            "udp" => Some(PortProto::Udp),
            _ => None,
        }
    }
}

/// One `-p` binding as asked for (ranges already expanded by the client,
/// except a host range for one container port, which the engine picks
/// from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// Host address to bind; empty means every IPv4 and IPv6 address.
    #[serde(default)]
    pub host_ip: String,
    /// 0: the engine picks a free port.
    pub host_port: u16,
    /// Last port of a host range (`-p 8000-8010:80`); 0 without a range.
    #[serde(default)]
    pub host_port_end: u16,
    pub container_port: u16,
    #[serde(default)]
    pub proto: PortProto,
}

/// A port that is published now: what `port` and inspect show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container_port: u16,
    pub proto: PortProto,
    /// The address bound (`0.0.0.0`, `::`, `127.0.0.1`, ...).
    pub host_ip: String,
    pub host_port: u16,
}

/// A container's place on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EndpointInfo {
    pub network_id: String,
    pub network_name: String,
    pub endpoint_id: String,
    /// Address without prefix; empty until the container runs.
    #[serde(default)]
    pub ipv4_address: String,
    #[serde(default)]
    pub prefix_len: u8,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub mac_address: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--link` entries (`container:alias`) on the default bridge.
    #[serde(default)]
    pub links: Vec<String>,
    /// Requested with `--ip` / `network connect --ip`.
    #[serde(default)]
    pub ipv4_requested: Option<String>,
}

/// A network (`network ls`, `network inspect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    /// RFC 3339.
    pub created_at: String,
    /// IPv4 subnet in CIDR form; empty for `host` and `none`.
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
    /// The host (or guest) bridge device; empty for `host` and `none`.
    #[serde(default)]
    pub bridge: String,
    /// One of docker's predefined networks (`bridge`, `host`, `none`).
    #[serde(default)]
    pub builtin: bool,
    /// Running containers attached to it, by container id.
    #[serde(default)]
    pub containers: BTreeMap<String, NetworkMember>,
}

/// A running container as `network inspect` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkMember {
    pub name: String,
    pub endpoint_id: String,
    pub mac_address: String,
    /// `172.18.0.2/16`.
    pub ipv4_address: String,
}
