//! Bridges, veth pairs, addresses and routes over rtnetlink (NETLINK_ROUTE),
//! synchronously and without the `ip` tool, so that the same code runs on a
//! Linux host and in the guest VM (a static agent and nothing else).
//!
//! Namespaces: a netlink socket acts on the network namespace of the thread
//! that created it. Work inside a container's namespace therefore opens its
//! socket on a short-lived thread that `setns()`es into the namespace and
//! ends right after; the calling thread never changes namespace, so callers
//! may be multi-threaded.

// Wired into the engine by the network integration; until then only the
// tests use this module.

use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// What went wrong configuring links, addresses or routes.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A name the kernel would refuse: empty, longer than 15 bytes, `.`,
    /// `..`, or containing `/`, `:`, whitespace or NUL.
    #[error("invalid network interface name {0:?}")]
    InvalidName(String),
    /// An IPv4 prefix length over 32.
    #[error("invalid IPv4 prefix length /{0}")]
    InvalidPrefix(u8),
    /// A link the operation needs does not exist.
    #[error("no network interface named {0}")]
    NotFound(String),
    /// A link exists under the name but is of another kind.
    #[error("network interface {name} exists but is not a {expected}")]
    WrongKind {
        name: String,
        expected: &'static str,
    },
    /// Opening, binding or using the netlink socket failed.
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused a request; `errno` is the positive error number.
    #[error("{op} {target}: {source}")]
    Kernel {
        op: &'static str,
        target: String,
        errno: i32,
        #[source]
        source: io::Error,
    },
    /// A reply that could not be decoded.
    #[error("netlink reply to {op}: {detail}")]
    Protocol { op: &'static str, detail: String },
    /// The target network namespace could not be opened or entered.
    #[error("network namespace {path:?}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading or writing a sysctl failed.
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: &'static str,
        #[source]
        source: io::Error,
    },
}

impl LinkError {
    /// The kernel's error number, when the kernel refused a request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            LinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Creates bridge `name` if it is missing, gives it `gateway/prefix_len` if
/// it lacks that address, and sets it up. Idempotent; fails with
/// [`LinkError::WrongKind`] when `name` is some other kind of link.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix_len: u8) -> Result<(), LinkError> {
    check_name(name)?;
    check_prefix(prefix_len)?;
    let mut nl = Netlink::open()?;
    let link = match nl.link_by_name(name)? {
        Some(link) => link,
        None => {
            match nl.create_bridge(name) {
                // Someone else created it in between: fine, check it below.
                Err(e) if e.errno() == Some(libc::EEXIST) => {}
                other => other?,
            }
            nl.link_by_name(name)?
                .ok_or_else(|| LinkError::NotFound(name.to_string()))?
        }
    };
    if link_kind(&link) != Some(&InfoKind::Bridge) {
        return Err(LinkError::WrongKind {
            name: name.to_string(),
            expected: "bridge",
        });
    }
    let index = link.header.index;
    if !nl.ipv4_addresses(index)?.contains(&(gateway, prefix_len)) {
        match nl.add_address(index, name, gateway, prefix_len) {
            Err(e) if e.errno() == Some(libc::EEXIST) => {}
            other => other?,
        }
    }
    if !link.header.flags.contains(LinkFlags::Up) {
        nl.set_up(index, name)?;
    }
    Ok(())
}

/// Configures the existing link `name` (the guest's eth0 on the VMM's
/// user-mode network): gives it `addr/prefix_len` if it lacks that
/// address, sets it up, and adds a default route via `gateway` when given.
/// Idempotent.
pub fn configure_link(
    name: &str,
    addr: Ipv4Addr,
    prefix_len: u8,
    gateway: Option<Ipv4Addr>,
) -> Result<(), LinkError> {
    check_name(name)?;
    check_prefix(prefix_len)?;
    let mut nl = Netlink::open()?;
    let link = nl
        .link_by_name(name)?
        .ok_or_else(|| LinkError::NotFound(name.to_string()))?;
    let index = link.header.index;
    if !nl.ipv4_addresses(index)?.contains(&(addr, prefix_len)) {
        match nl.add_address(index, name, addr, prefix_len) {
            Err(e) if e.errno() == Some(libc::EEXIST) => {}
            other => other?,
        }
    }
    // Up before the route: the kernel refuses a gateway it cannot reach.
    if !link.header.flags.contains(LinkFlags::Up) {
        nl.set_up(index, name)?;
    }
    if let Some(gateway) = gateway {
        match nl.add_default_route(index, name, gateway) {
            Err(e) if e.errno() == Some(libc::EEXIST) => {}
            other => other?,
        }
    }
    Ok(())
}

/// Deletes link `name` (for a veth, both ends). Ok when it does not exist.
pub fn remove_link(name: &str) -> Result<(), LinkError> {
    check_name(name)?;
    let mut nl = Netlink::open()?;
    match nl.link_by_name(name)? {
        Some(link) => nl.delete_link(link.header.index, name),
        None => Ok(()),
    }
}

#[cfg(test)]
/// Whether a link named `name` exists in the caller's network namespace.
pub fn link_exists(name: &str) -> bool {
    check_name(name).is_ok()
        && Netlink::open()
            .and_then(|mut nl| nl.link_by_name(name))
            .is_ok_and(|link| link.is_some())
}

/// One container endpoint on a bridge: a veth pair whose host end
/// `host_name` is a port of `bridge` and whose other end is `ifname` in the
/// network namespace pinned at `netns`.
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    pub bridge: &'a str,
    /// A pinned nsfs file, e.g. a bind mount of /proc/X/ns/net.
    pub netns: &'a Path,
    /// The name inside the namespace, e.g. "eth0".
    pub ifname: &'a str,
    pub mac: [u8; 6],
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// Default route via this address when Some.
    pub gateway: Option<Ipv4Addr>,
}

/// Creates the veth pair of `spec`, the peer directly in the target
/// namespace under its final name and MAC, makes the host end a port of the
/// bridge, sets both ends up, and gives the peer its address and default
/// route. On any failure, what was created is removed again.
pub fn attach_veth(spec: &VethSpec) -> Result<(), LinkError> {
    for name in [spec.host_name, spec.bridge, spec.ifname] {
        check_name(name)?;
    }
    check_prefix(spec.prefix_len)?;
    let netns = File::open(spec.netns).map_err(|source| LinkError::Netns {
        path: spec.netns.to_path_buf(),
        source,
    })?;
    let mut host = Netlink::open()?;
    let bridge = host
        .link_by_name(spec.bridge)?
        .ok_or_else(|| LinkError::NotFound(spec.bridge.to_string()))?;
    if link_kind(&bridge) != Some(&InfoKind::Bridge) {
        return Err(LinkError::WrongKind {
            name: spec.bridge.to_string(),
            expected: "bridge",
        });
    }
    host.create_veth(spec, bridge.header.index, &netns)?;
    let configured = (|| {
        let host_end = host
            .link_by_name(spec.host_name)?
            .ok_or_else(|| LinkError::NotFound(spec.host_name.to_string()))?;
        host.set_up(host_end.header.index, spec.host_name)?;
        let mut inside = Netlink::open_in(&netns, spec.netns)?;
        let peer = inside
            .link_by_name(spec.ifname)?
            .ok_or_else(|| LinkError::NotFound(spec.ifname.to_string()))?;
        let index = peer.header.index;
        inside.add_address(index, spec.ifname, spec.addr, spec.prefix_len)?;
        // Up before the route: the kernel refuses a gateway it cannot reach.
        inside.set_up(index, spec.ifname)?;
        if let Some(gateway) = spec.gateway {
            inside.add_default_route(index, spec.ifname, gateway)?;
        }
        Ok(())
    })();
    if configured.is_err() {
        // Deleting one end of a veth pair deletes both.
        if let Ok(Some(link)) = host.link_by_name(spec.host_name) {
            let _ = host.delete_link(link.header.index, spec.host_name);
        }
    }
    configured
}

/// Deletes the veth pair whose host end is `host_name`. Ok when it is gone;
/// refuses ([`LinkError::WrongKind`]) to delete a link that is not a veth.
pub fn detach_veth(host_name: &str) -> Result<(), LinkError> {
    check_name(host_name)?;
    let mut nl = Netlink::open()?;
    match nl.link_by_name(host_name)? {
        Some(link) if link_kind(&link) == Some(&InfoKind::Veth) => {
            nl.delete_link(link.header.index, host_name)
        }
        Some(_) => Err(LinkError::WrongKind {
            name: host_name.to_string(),
            expected: "veth",
        }),
        None => Ok(()),
    }
}

/// Turns on IPv4 forwarding in the caller's network namespace.
pub fn enable_ip_forward() -> Result<(), LinkError> {
    let sysctl_error = |source| LinkError::Sysctl {
        path: IP_FORWARD,
        source,
    };
    if std::fs::read_to_string(IP_FORWARD)
        .map_err(sysctl_error)?
        .trim()
        == "1"
    {
        return Ok(());
    }
    std::fs::write(IP_FORWARD, "1").map_err(sysctl_error)
}

fn check_name(name: &str) -> Result<(), LinkError> {
    let valid = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if valid {
        Ok(())
    } else {
        Err(LinkError::InvalidName(name.to_string()))
    }
}

fn check_prefix(prefix_len: u8) -> Result<(), LinkError> {
    if prefix_len <= 32 {
        Ok(())
    } else {
        Err(LinkError::InvalidPrefix(prefix_len))
    }
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|attr| match attr {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
            LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    })
}

/// The broadcast address of `addr/prefix_len` (what `ip addr add … brd +` sets).
fn broadcast(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let host_mask = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) | host_mask)
}

/// A random locally administered unicast MAC. A bridge created without an
/// address takes its lowest port's MAC and changes it as ports come and go,
/// which upsets the neighbour caches of every container; a set one stays.
fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    // SAFETY: getrandom writes at most mac.len() bytes into the valid,
    // writable buffer it is given.
    let n = unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    if n != mac.len() as isize {
        // No getrandom (very old kernel): fall back to std's hash keys,
        // which are seeded randomly per process.
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        mac.copy_from_slice(&hasher.finish().to_le_bytes()[..6]);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// A NETLINK_ROUTE socket, bound to the network namespace it was opened in.
struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    fn open() -> Result<Self, LinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(LinkError::Socket)?;
        socket.bind_auto().map_err(LinkError::Socket)?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Opens a socket that acts on the network namespace `netns` (opened
    /// from `path`), from a thread that enters it and then ends.
    fn open_in(netns: &File, path: &Path) -> Result<Self, LinkError> {
        let netns_error = |source| LinkError::Netns {
            path: path.to_path_buf(),
            source,
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(netns, CloneFlags::CLONE_NEWNET)
                        .map_err(|errno| netns_error(io::Error::from(errno)))?;
                    Netlink::open()
                })
                .join()
                .unwrap_or_else(|_| Err(netns_error(io::Error::other("namespace thread panicked"))))
        })
    }

    /// Sends one request and gathers its replies: the messages of a dump, or
    /// the reply (if any) to an acknowledged request.
    fn request(
        &mut self,
        op: &'static str,
        target: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, LinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | flags;
        request.header.sequence_number = self.seq;
        request.finalize();
        let mut buf = vec![0; request.buffer_len()];
        request.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(LinkError::Socket)?;

        let protocol_error = |detail: String| LinkError::Protocol { op, detail };
        let mut replies = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(LinkError::Socket)?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| protocol_error(e.to_string()))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(protocol_error("zero-length message".into()));
                }
                offset += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue; // a late reply to an earlier request
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies), // the acknowledgement
                            Some(code) => {
                                let errno = code.get().abs();
                                Err(LinkError::Kernel {
                                    op,
                                    target: target.to_string(),
                                    errno,
                                    source: io::Error::from_raw_os_error(errno),
                                })
                            }
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// An acknowledged change (or single get).
    fn change(
        &mut self,
        op: &'static str,
        target: &str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, LinkError> {
        self.request(op, target, message, flags | NLM_F_ACK)
    }

    fn link_by_name(&mut self, name: &str) -> Result<Option<LinkMessage>, LinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.change("look up", name, RouteNetlinkMessage::GetLink(message), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_bridge(&mut self, name: &str) -> Result<(), LinkError> {
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Address(random_mac().to_vec()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.change(
            "create bridge",
            name,
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Creates the pair: the host end (already a port of the bridge) here,
    /// the peer in `netns` under its final name and MAC.
    fn create_veth(
        &mut self,
        spec: &VethSpec,
        bridge_index: u32,
        netns: &File,
    ) -> Result<(), LinkError> {
        let mut peer = LinkMessage::default();
        peer.attributes = vec![
            LinkAttribute::IfName(spec.ifname.to_string()),
            LinkAttribute::Address(spec.mac.to_vec()),
            LinkAttribute::NetNsFd(netns.as_raw_fd()),
        ];
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(spec.host_name.to_string()),
            LinkAttribute::Controller(bridge_index),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
            ]),
        ];
        self.change(
            "create veth pair",
            spec.host_name,
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    fn set_up(&mut self, index: u32, name: &str) -> Result<(), LinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.change("set up", name, RouteNetlinkMessage::SetLink(message), 0)?;
        Ok(())
    }

    fn delete_link(&mut self, index: u32, name: &str) -> Result<(), LinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        match self.change("delete", name, RouteNetlinkMessage::DelLink(message), 0) {
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The IPv4 addresses (address, prefix length) of link `index`.
    fn ipv4_addresses(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, LinkError> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.index = index;
        let replies = self.request(
            "list addresses",
            &format!("of link {index}"),
            RouteNetlinkMessage::GetAddress(message),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some((*ip, a.header.prefix_len)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    fn add_address(
        &mut self,
        index: u32,
        name: &str,
        addr: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), LinkError> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix_len;
        message.header.scope = AddressScope::Universe;
        message.header.index = index;
        message.attributes = vec![
            AddressAttribute::Local(addr.into()),
            AddressAttribute::Address(addr.into()),
        ];
        if prefix_len < 31 {
            message
                .attributes
                .push(AddressAttribute::Broadcast(broadcast(addr, prefix_len)));
        }
        self.change(
            "add address",
            &format!("{addr}/{prefix_len} to {name}"),
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    fn add_default_route(
        &mut self,
        index: u32,
        name: &str,
        gateway: Ipv4Addr,
    ) -> Result<(), LinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(index),
        ];
        self.change(
            "add default route",
            &format!("via {gateway} dev {name}"),
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// The IPv4 routes of the main table.
    #[cfg(test)]
    fn ipv4_routes(&mut self) -> Result<Vec<RouteMessage>, LinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        let replies = self.request(
            "list routes",
            "",
            RouteNetlinkMessage::GetRoute(message),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.table == RouteHeader::RT_TABLE_MAIN =>
                {
                    Some(r)
                }
                _ => None,
            })
            .collect())
    }
}

/// Network namespaces for tests (here and in nat.rs), so that no test
/// touches the host's network.
#[cfg(test)]
pub(crate) mod testing {
    use super::Netlink;
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use nix::sched::{setns, unshare, CloneFlags};
    use std::fs::File;
    use std::path::{Path, PathBuf};

    /// Runs `f` on a new thread in a new network namespace with `lo` up, so
    /// that nothing touches the host's network. Threads `f` spawns inherit
    /// the namespace. None (after printing SKIPPED) when unshare is refused.
    pub fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
                    println!("SKIPPED: unshare(CLONE_NEWNET): {e}");
                    return None;
                }
                loopback_up();
                Some(f())
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs `f` on a new thread inside the namespace pinned at `path`.
    pub fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> T {
        let netns = File::open(path).expect("open netns");
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| {
                setns(&netns, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            });
            thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn loopback_up() {
        let mut nl = Netlink::open().expect("netlink");
        let lo = nl.link_by_name("lo").expect("get lo").expect("lo exists");
        nl.set_up(lo.header.index, "lo").expect("lo up");
    }

    /// A network namespace pinned by a bind mount in a temporary directory,
    /// as the engine pins containers' namespaces.
    pub struct PinnedNetns {
        _dir: tempfile::TempDir,
        pub path: PathBuf,
    }

    impl PinnedNetns {
        pub fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("net");
            File::create(&path).expect("create pin file");
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
                        loopback_up();
                        // /proc/self would name the main thread's namespace.
                        mount(
                            Some("/proc/thread-self/ns/net"),
                            &path,
                            None::<&str>,
                            MsFlags::MS_BIND,
                            None::<&str>,
                        )
                        .expect("bind-mount netns");
                    })
                    .join()
                    .unwrap()
            });
            PinnedNetns { _dir: dir, path }
        }
    }

    impl Drop for PinnedNetns {
        fn drop(&mut self) {
            let _ = umount2(&self.path, MntFlags::MNT_DETACH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{in_netns, in_new_netns, PinnedNetns};
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::time::Duration;

    fn link(name: &str) -> Option<LinkMessage> {
        Netlink::open().unwrap().link_by_name(name).unwrap()
    }

    fn addresses(name: &str) -> Vec<(Ipv4Addr, u8)> {
        let index = link(name).expect("link exists").header.index;
        Netlink::open().unwrap().ipv4_addresses(index).unwrap()
    }

    fn is_up(link: &LinkMessage) -> bool {
        link.header.flags.contains(LinkFlags::Up)
    }

    fn spec<'a>(netns: &'a Path, host_name: &'a str, bridge: &'a str) -> VethSpec<'a> {
        VethSpec {
            host_name,
            bridge,
            netns,
            ifname: "eth0",
            mac: [0x02, 0x42, 10, 89, 0, 2],
            addr: Ipv4Addr::new(10, 89, 0, 2),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 89, 0, 1)),
        }
    }

    #[test]
    fn ensure_bridge_is_idempotent() {
        in_new_netns(|| {
            let gateway = Ipv4Addr::new(10, 88, 0, 1);
            assert!(!link_exists("berth-t0"));
            ensure_bridge("berth-t0", gateway, 16).unwrap();
            ensure_bridge("berth-t0", gateway, 16).unwrap();
            assert!(link_exists("berth-t0"));
            let bridge = link("berth-t0").unwrap();
            assert_eq!(link_kind(&bridge), Some(&InfoKind::Bridge));
            assert!(is_up(&bridge));
            assert_eq!(addresses("berth-t0"), vec![(gateway, 16)]);
            // A bridge that lost its address gets it back.
            let mut nl = Netlink::open().unwrap();
            let mut message = AddressMessage::default();
            message.header.family = AddressFamily::Inet;
            message.header.prefix_len = 16;
            message.header.index = bridge.header.index;
            message.attributes = vec![AddressAttribute::Local(gateway.into())];
            nl.change(
                "delete address",
                "",
                RouteNetlinkMessage::DelAddress(message),
                0,
            )
            .unwrap();
            assert_eq!(addresses("berth-t0"), vec![]);
            ensure_bridge("berth-t0", gateway, 16).unwrap();
            assert_eq!(addresses("berth-t0"), vec![(gateway, 16)]);
        });
    }

    #[test]
    fn configure_link_sets_address_up_and_default_route() {
        in_new_netns(|| {
            // A bridge stands in for the guest's eth0: an existing link.
            ensure_bridge("berth-t9", Ipv4Addr::new(10, 87, 9, 1), 24).unwrap();
            let addr = Ipv4Addr::new(192, 168, 127, 2);
            let gateway = Some(Ipv4Addr::new(192, 168, 127, 1));
            configure_link("berth-t9", addr, 24, gateway).unwrap();
            configure_link("berth-t9", addr, 24, gateway).unwrap();
            assert!(addresses("berth-t9").contains(&(addr, 24)));
            assert!(is_up(&link("berth-t9").unwrap()));
            let routes = std::fs::read_to_string("/proc/thread-self/net/route").unwrap();
            // Destination 0, gateway 192.168.127.1 (little-endian hex).
            assert!(
                routes
                    .lines()
                    .any(|l| l.starts_with("berth-t9\t00000000\t017FA8C0")),
                "{routes}"
            );
            assert!(matches!(
                configure_link("berth-nope", addr, 24, None),
                Err(LinkError::NotFound(_))
            ));
        });
    }

    #[test]
    fn ensure_bridge_refuses_other_kinds_and_bad_input() {
        in_new_netns(|| {
            let gateway = Ipv4Addr::new(10, 88, 0, 1);
            assert!(matches!(
                ensure_bridge("lo", gateway, 8),
                Err(LinkError::WrongKind {
                    expected: "bridge",
                    ..
                })
            ));
            for name in ["", "a/b", "a b", "x:1", "..", "sixteen-chars-xx"] {
                assert!(
                    matches!(
                        ensure_bridge(name, gateway, 16),
                        Err(LinkError::InvalidName(_))
                    ),
                    "{name:?}"
                );
            }
            assert!(matches!(
                ensure_bridge("berth-t1", gateway, 33),
                Err(LinkError::InvalidPrefix(33))
            ));
            assert!(!link_exists("berth-t1"));
        });
    }

    #[test]
    fn remove_link_is_idempotent() {
        in_new_netns(|| {
            ensure_bridge("berth-t2", Ipv4Addr::new(10, 90, 0, 1), 24).unwrap();
            remove_link("berth-t2").unwrap();
            assert!(!link_exists("berth-t2"));
            remove_link("berth-t2").unwrap();
            detach_veth("berth-t2").unwrap();
        });
    }

    #[test]
    fn attach_veth_configures_the_peer_and_reaches_the_gateway() {
        in_new_netns(|| {
            let gateway = Ipv4Addr::new(10, 89, 0, 1);
            ensure_bridge("berth-t3", gateway, 24).unwrap();
            let netns = PinnedNetns::new();
            let spec = spec(&netns.path, "vb-t3", "berth-t3");
            attach_veth(&spec).unwrap();

            let bridge = link("berth-t3").unwrap();
            let host_end = link("vb-t3").expect("host end exists");
            assert!(is_up(&host_end));
            assert!(host_end
                .attributes
                .contains(&LinkAttribute::Controller(bridge.header.index)));
            assert!(
                link("eth0").is_none(),
                "the peer is not in the host namespace"
            );

            in_netns(&netns.path, || {
                let eth0 = link("eth0").expect("eth0 in the container namespace");
                assert!(is_up(&eth0));
                assert!(eth0
                    .attributes
                    .contains(&LinkAttribute::Address(spec.mac.to_vec())));
                assert_eq!(addresses("eth0"), vec![(spec.addr, 24)]);
                let routes = Netlink::open().unwrap().ipv4_routes().unwrap();
                assert!(
                    routes
                        .iter()
                        .any(|r| r.header.destination_prefix_length == 0
                            && r.attributes
                                .contains(&RouteAttribute::Gateway(RouteAddress::Inet(gateway)))
                            && r.attributes
                                .contains(&RouteAttribute::Oif(eth0.header.index))),
                    "no default route via {gateway}: {routes:?}"
                );
            });

            // TCP and UDP from the container namespace to the gateway.
            let tcp = TcpListener::bind((gateway, 0)).unwrap();
            let udp = UdpSocket::bind((gateway, 0)).unwrap();
            udp.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let (mut conn, peer) = tcp.accept().unwrap();
                    assert_eq!(peer.ip(), IpAddr::V4(spec.addr));
                    let mut buf = [0u8; 4];
                    conn.read_exact(&mut buf).unwrap();
                    conn.write_all(&buf).unwrap();
                });
                scope.spawn(|| {
                    let mut buf = [0u8; 16];
                    for _ in 0..20 {
                        if let Ok((n, from)) = udp.recv_from(&mut buf) {
                            assert_eq!(from.ip(), IpAddr::V4(spec.addr));
                            udp.send_to(&buf[..n], from).unwrap();
                            return;
                        }
                    }
                    panic!("no UDP datagram from the container namespace");
                });
                in_netns(&netns.path, || tcp_and_udp_echo(tcp_addr, udp_addr));
            });

            detach_veth("vb-t3").unwrap();
            assert!(!link_exists("vb-t3"));
            in_netns(&netns.path, || assert!(!link_exists("eth0")));
            detach_veth("vb-t3").unwrap();
            assert!(matches!(
                detach_veth("berth-t3"),
                Err(LinkError::WrongKind {
                    expected: "veth",
                    ..
                })
            ));
        });
    }

    fn tcp_and_udp_echo(tcp_addr: SocketAddr, udp_addr: SocketAddr) {
        let mut conn = TcpStream::connect_timeout(&tcp_addr, Duration::from_secs(10)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");

        let udp = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 16];
        for _ in 0..20 {
            udp.send_to(b"hello", udp_addr).unwrap();
            if let Ok((n, from)) = udp.recv_from(&mut buf) {
                assert_eq!(from, udp_addr);
                assert_eq!(&buf[..n], b"hello");
                return;
            }
        }
        panic!("no UDP echo from {udp_addr}");
    }

    #[test]
    fn failed_attach_leaves_no_veth_behind() {
        in_new_netns(|| {
            let netns = PinnedNetns::new();
            let no_eth0 = || in_netns(&netns.path, || !link_exists("eth0"));

            // The bridge is missing: nothing is created.
            let err = attach_veth(&spec(&netns.path, "vb-t4", "berth-t4")).unwrap_err();
            assert!(
                matches!(err, LinkError::NotFound(ref n) if n == "berth-t4"),
                "{err}"
            );
            assert!(!link_exists("vb-t4"));
            assert!(no_eth0());

            // Fails after the pair exists (a gateway outside the subnet
            // cannot be routed): the pair is removed again.
            ensure_bridge("berth-t4", Ipv4Addr::new(10, 89, 0, 1), 24).unwrap();
            let mut bad = spec(&netns.path, "vb-t4", "berth-t4");
            bad.gateway = Some(Ipv4Addr::new(192, 0, 2, 1));
            let err = attach_veth(&bad).unwrap_err();
            assert_eq!(err.errno(), Some(libc::ENETUNREACH), "{err}");
            assert!(!link_exists("vb-t4"));
            assert!(no_eth0());

            // A host name in use: the existing link is left alone.
            attach_veth(&spec(&netns.path, "vb-t4", "berth-t4")).unwrap();
            let err = attach_veth(&spec(&netns.path, "vb-t4", "berth-t4")).unwrap_err();
            assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
            assert!(link_exists("vb-t4"));
            assert!(!no_eth0());

            // The namespace missing: nothing is created.
            let missing = netns.path.with_file_name("missing");
            let err = attach_veth(&spec(&missing, "vb-t5", "berth-t4")).unwrap_err();
            assert!(matches!(err, LinkError::Netns { .. }), "{err}");
            assert!(!link_exists("vb-t5"));
        });
    }

    #[test]
    fn enable_ip_forward_sets_the_sysctl_in_the_callers_namespace() {
        let host_value = || {
            std::thread::spawn(|| std::fs::read_to_string(IP_FORWARD).unwrap())
                .join()
                .unwrap()
        };
        let before = host_value();
        in_new_netns(|| {
            enable_ip_forward().unwrap();
            assert_eq!(std::fs::read_to_string(IP_FORWARD).unwrap().trim(), "1");
            enable_ip_forward().unwrap();
        });
        assert_eq!(host_value(), before);
    }

    #[test]
    fn broadcast_addresses() {
        let a = Ipv4Addr::new(172, 18, 0, 1);
        assert_eq!(broadcast(a, 16), Ipv4Addr::new(172, 18, 255, 255));
        assert_eq!(broadcast(a, 32), a);
        assert_eq!(broadcast(a, 0), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn random_macs_are_local_unicast() {
        let mac = random_mac();
        assert_eq!(mac[0] & 0x03, 0x02);
    }
}
