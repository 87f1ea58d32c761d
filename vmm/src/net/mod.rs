//! User-mode networking ("slirp" style, as Docker Desktop's vpnkit and
//! Podman's gvisor-tap-vsock do it): the guest's Ethernet frames go to a
//! TCP/IP stack in the VMM process ([`UserNet`], built on smoltcp), which
//! terminates the guest's TCP connections and UDP flows and re-opens them
//! as ordinary host sockets. Host VPNs, DNS and firewall rules apply; no
//! root, no tap device, and it runs wherever `mio` does (epoll, kqueue,
//! Windows' AFD).
//!
//! # The VM network (192.168.127.0/24, gvisor-tap-vsock's numbers)
//! - `192.168.127.1` ([`GATEWAY`]): the stack. It answers ARP and ping,
//!   and DNS on port 53, forwarded to the host's resolvers
//!   ([`UserNetConfig::dns_upstreams`], from /etc/resolv.conf): a UDP
//!   query goes to all of them (of the first one's address family) and
//!   the first answer wins; TCP goes to the first.
//! - `192.168.127.2` ([`GUEST`]): the guest.
//! - `192.168.127.254` ([`HOST_ALIAS`]): the host's loopback
//!   (`host.docker.internal`): connections to it go to 127.0.0.1.
//! - *Peers* ([`UserNetConfig::peers`], `berth-vmm --net-peer`): extra
//!   addresses outside the /24 (berth compose uses 198.18.0.0/15, the
//!   benchmarking range, which ordinary networks do not use) whose TCP connections go to a
//!   given host address, same port: how one own VM reaches another VM's
//!   published ports by service name (the other VM's keeper listens on a
//!   host loopback address of its own, 127.X.Y.Z). A port below 1024 is
//!   reached at [`PEER_LOW_PORT_OFFSET`] + port on the host (a keeper run
//!   by an unprivileged user cannot bind port 80). TCP only: UDP to a
//!   peer address leaves for the peer address itself, as any outside one.
//! - Every other destination outside the /24 is the outside world: a TCP
//!   SYN makes the stack connect a host socket to that address first and
//!   only then answer the guest (SYN-ACK), so a refused or unreachable
//!   destination resets the guest's connection as a real peer would.
//!   Other addresses inside the /24 are dropped.
//!
//! # Containers behind the guest (the choice made here)
//! The guest kernel has no netfilter, so containers on the guest's bridge
//! (172.17.0.0/16 and the like) reach the stack with their own source
//! addresses, forwarded by the guest. Rather than NAT in the guest, the
//! stack accepts any source address and routes its replies for the
//! private ranges ([`UserNetConfig::guest_routes`]: 172.16.0.0/12,
//! 10.0.0.0/8, 192.168.0.0/16) back via the guest (192.168.127.2), whose
//! kernel forwards them to the bridge. The host never sees container
//! addresses: they end at this stack.
//!
//! # Bounds (the guest is untrusted)
//! Frames are parsed with smoltcp's checked wire types and dropped when
//! malformed; at most [`MAX_TCP_FLOWS`] TCP and [`MAX_UDP_FLOWS`] UDP
//! flows exist at once, each TCP flow buffers at most [`TCP_BUFFER`] bytes
//! each way, and the frame queues in and out hold at most
//! [`MAX_QUEUED_FRAMES`] frames. Not supported: IPv6, IP fragments, ICMP
//! to the outside (ping of the gateway and host alias works), UDP replies
//! larger than one frame.

pub mod dns;
mod frames;
mod stack;
#[cfg(test)]
mod tests;
mod thread;

use std::net::{Ipv4Addr, SocketAddr};

pub use stack::UserNet;
pub use thread::UserNetThread;

/// The VM network.
pub const NETWORK: Ipv4Addr = Ipv4Addr::new(192, 168, 127, 0);
/// Prefix length of [`NETWORK`].
pub const PREFIX_LEN: u8 = 24;
/// The stack's own address: gateway and DNS server of the guest.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 127, 1);
/// The guest's address.
pub const GUEST: Ipv4Addr = Ipv4Addr::new(192, 168, 127, 2);
/// The host's loopback as the guest sees it (`host.docker.internal`).
pub const HOST_ALIAS: Ipv4Addr = Ipv4Addr::new(192, 168, 127, 254);
/// The stack's MAC address (locally administered).
pub const GATEWAY_MAC: [u8; 6] = [0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xdd];
/// The guest NIC's default MAC address (locally administered).
pub const GUEST_MAC: [u8; 6] = [0x02, 0x42, 0xc0, 0xa8, 0x7f, 0x02];
/// Largest Ethernet frame (without FCS) exchanged with the guest: MTU 1500.
pub const MAX_FRAME: usize = 1514;
/// Most TCP connections open at once.
pub const MAX_TCP_FLOWS: usize = 512;
/// Most UDP flows (guest address:port to destination) at once.
pub const MAX_UDP_FLOWS: usize = 256;
/// Buffer of each TCP connection, each way.
pub const TCP_BUFFER: usize = 64 * 1024;
/// Where a peer's ports below 1024 are on the host: this plus the port.
pub const PEER_LOW_PORT_OFFSET: u16 = 40000;
/// Most peer addresses ([`UserNetConfig::peers`]).
pub const MAX_PEERS: usize = 256;
/// Most frames waiting in each direction.
pub const MAX_QUEUED_FRAMES: usize = 1024;

/// What a [`UserNet`] is set up with.
#[derive(Clone, Debug)]
pub struct UserNetConfig {
    /// Where DNS queries to the gateway go (the host's resolvers).
    pub dns_upstreams: Vec<SocketAddr>,
    /// The address connections to [`HOST_ALIAS`] go to.
    pub host_loopback: Ipv4Addr,
    /// Networks behind the guest (its containers' bridges): replies to
    /// them are routed via [`GUEST`].
    pub guest_routes: Vec<(Ipv4Addr, u8)>,
    /// Peer addresses (as the guest sees them) and the host addresses
    /// their TCP connections go to, same port (see the module docs). At
    /// most [`MAX_PEERS`].
    pub peers: Vec<(Ipv4Addr, Ipv4Addr)>,
}

impl UserNetConfig {
    /// The host's resolvers (from /etc/resolv.conf on Unix), the host
    /// loopback at 127.0.0.1, and the private ranges behind the guest.
    pub fn from_host() -> Self {
        UserNetConfig {
            dns_upstreams: dns::host_resolvers(),
            ..Self::with_upstreams(Vec::new())
        }
    }

    /// Like [`Self::from_host`], with these DNS upstreams.
    pub fn with_upstreams(dns_upstreams: Vec<SocketAddr>) -> Self {
        UserNetConfig {
            dns_upstreams,
            host_loopback: Ipv4Addr::LOCALHOST,
            guest_routes: vec![
                (Ipv4Addr::new(172, 16, 0, 0), 12),
                (Ipv4Addr::new(10, 0, 0, 0), 8),
                (Ipv4Addr::new(192, 168, 0, 0), 16),
            ],
            peers: Vec::new(),
        }
    }
}

/// Errors setting up the user-mode network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The host's poller could not be made.
    #[error("cannot set up the network poller: {0}")]
    Poller(#[source] std::io::Error),
    /// The stack's thread could not be started.
    #[error("cannot start the network thread: {0}")]
    Thread(#[source] std::io::Error),
    /// More guest routes than the stack's route table holds.
    #[error("too many guest routes (at most {0})")]
    TooManyRoutes(usize),
    /// More peer addresses than [`MAX_PEERS`].
    #[error("too many peer addresses (at most {MAX_PEERS})")]
    TooManyPeers,
}
