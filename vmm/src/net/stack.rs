//! [`UserNet`]: the smoltcp interface facing the guest, and the host
//! sockets of its TCP connections and UDP flows.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant as StdInstant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use smoltcp::iface::{Config, Interface, Route, SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress,
    IpAddress, IpCidr, IpListenEndpoint, IpProtocol, Ipv4Cidr, Ipv4Packet, TcpPacket, UdpPacket,
    UdpRepr,
};

use super::frames::{udp_frame, FrameQueue};
use super::{
    NetError, UserNetConfig, GATEWAY, GATEWAY_MAC, HOST_ALIAS, MAX_FRAME, MAX_TCP_FLOWS,
    MAX_UDP_FLOWS, NETWORK, PREFIX_LEN, TCP_BUFFER,
};

/// The token of [`UserNet::waker`].
const WAKER: Token = Token(0);
/// How long a host connect may take before the guest's SYN is reset.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Idle time after which a UDP flow is forgotten (DNS: [`DNS_IDLE`]).
const UDP_IDLE: Duration = Duration::from_secs(60);
const DNS_IDLE: Duration = Duration::from_secs(10);
/// A connection whose guest stops acknowledging data is aborted after this.
const TCP_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest datagram read from a host UDP socket.
const UDP_READ: usize = 64 * 1024;
/// Longest the poll loop sleeps (housekeeping: timeouts, idle flows).
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// How often the stack refreshes smoltcp's neighbor entry of a guest
/// address it hears from (smoltcp keeps entries 60 s).
const NEIGHBOR_REFRESH: Duration = Duration::from_secs(20);

/// A guest address:port pair (source, destination as the guest sent it).
type FlowKey = (SocketAddrV4, SocketAddrV4);

enum TcpState {
    /// The host connect is under way; the guest's SYN waits.
    Connecting { syn: Vec<u8>, deadline: StdInstant },
    /// Relaying between the guest's socket and the host stream.
    Open {
        handle: SocketHandle,
        readable: bool,
        writable: bool,
        host_eof: bool,
        host_write_shut: bool,
    },
}

struct TcpFlow {
    token: Token,
    stream: TcpStream,
    state: TcpState,
}

struct UdpFlow {
    token: Token,
    socket: UdpSocket,
    /// DNS to the gateway: every upstream resolver of the first one's
    /// address family gets each query, and the first answer wins (as
    /// dnsmasq's `--all-servers`), so one dead resolver (a VPN's, gone
    /// after a disconnect) costs nothing. Empty: `socket` is connected to
    /// its one peer.
    peers: Vec<SocketAddr>,
    guest_mac: EthernetAddress,
    last_active: StdInstant,
    idle: Duration,
}

/// The user-mode network stack. Not thread-safe by itself: one thread
/// drives it ([`super::UserNetThread`], or a test), feeding guest frames
/// with [`Self::guest_frame`], running [`Self::poll`], and taking frames
/// for the guest with [`Self::take_guest_frame`].
pub struct UserNet {
    config: UserNetConfig,
    iface: Interface,
    sockets: SocketSet<'static>,
    link: FrameQueue,
    poll: Poll,
    events: Events,
    waker: std::sync::Arc<Waker>,
    tcp: HashMap<FlowKey, TcpFlow>,
    udp: HashMap<FlowKey, UdpFlow>,
    tokens: HashMap<Token, (bool, FlowKey)>,
    next_token: usize,
    epoch: StdInstant,
    udp_buf: Vec<u8>,
    /// When each guest address on the VM network last refreshed its
    /// neighbor entry (at most 256 entries: the /24).
    neighbors: HashMap<Ipv4Addr, StdInstant>,
}

impl UserNet {
    /// A stack for the VM network described in [`super`].
    pub fn new(config: UserNetConfig) -> Result<Self, NetError> {
        if config.peers.len() > super::MAX_PEERS {
            return Err(NetError::TooManyPeers);
        }
        let poll = Poll::new().map_err(NetError::Poller)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(NetError::Poller)?;
        let mut link = FrameQueue::default();
        let epoch = StdInstant::now();
        let mac = EthernetAddress(GATEWAY_MAC);
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ethernet(mac)),
            &mut link,
            Instant::ZERO,
        );
        iface.update_ip_addrs(|addrs| {
            for a in [GATEWAY, HOST_ALIAS] {
                // Room for four addresses (the crate feature).
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(a), PREFIX_LEN));
            }
        });
        // Accept packets to every destination: each one is a connection
        // or flow the stack proxies.
        iface.set_any_ip(true);
        let mut full = false;
        iface.routes_mut().update(|routes| {
            for (net, len) in &config.guest_routes {
                let route = Route {
                    cidr: IpCidr::Ipv4(Ipv4Cidr::new(*net, *len)),
                    via_router: IpAddress::Ipv4(super::GUEST),
                    preferred_until: None,
                    expires_at: None,
                };
                full |= routes.push(route).is_err();
            }
        });
        if full {
            return Err(NetError::TooManyRoutes(4));
        }
        Ok(UserNet {
            config,
            iface,
            sockets: SocketSet::new(Vec::new()),
            link,
            poll,
            events: Events::with_capacity(256),
            waker: std::sync::Arc::new(waker),
            tcp: HashMap::new(),
            udp: HashMap::new(),
            tokens: HashMap::new(),
            next_token: 1,
            epoch,
            udp_buf: vec![0u8; UDP_READ],
            neighbors: HashMap::new(),
        })
    }

    /// Wakes [`Self::poll`] from another thread.
    pub fn waker(&self) -> std::sync::Arc<Waker> {
        self.waker.clone()
    }

    /// Open TCP connections and UDP flows.
    pub fn flow_counts(&self) -> (usize, usize) {
        (self.tcp.len(), self.udp.len())
    }

    /// The next frame for the guest.
    pub fn take_guest_frame(&mut self) -> Option<Vec<u8>> {
        self.link.tx.pop_front()
    }

    /// Whether frames for the guest are waiting.
    pub fn has_guest_frames(&self) -> bool {
        !self.link.tx.is_empty()
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    fn token(&mut self) -> Token {
        // Token 0 is the waker; wrapping after 2^64 flows is moot.
        self.next_token = self.next_token.wrapping_add(1).max(1);
        Token(self.next_token)
    }

    /// Where the guest's `dst` leads on the host; `None`: nowhere (dropped
    /// or reset).
    pub(super) fn host_target(&self, dst: SocketAddrV4) -> Option<SocketAddr> {
        let ip = *dst.ip();
        if let Some((_, host)) = self.config.peers.iter().find(|(peer, _)| *peer == ip) {
            let port = match dst.port() {
                0 => return None,
                p if p < 1024 => super::PEER_LOW_PORT_OFFSET + p,
                p => p,
            };
            return Some(SocketAddr::new(IpAddr::V4(*host), port));
        }
        if ip == HOST_ALIAS {
            return Some(SocketAddr::new(
                IpAddr::V4(self.config.host_loopback),
                dst.port(),
            ));
        }
        if ip == GATEWAY {
            return (dst.port() == 53)
                .then(|| self.config.dns_upstreams.first().copied())
                .flatten();
        }
        let in_vm_net = Ipv4Cidr::new(NETWORK, PREFIX_LEN).contains_addr(&ip);
        if in_vm_net
            || ip.is_unspecified()
            || ip.is_broadcast()
            || ip.is_multicast()
            || ip.is_loopback()
            || dst.port() == 0
        {
            return None;
        }
        Some(SocketAddr::V4(dst))
    }

    /// Takes one frame from the guest. Malformed frames, and frames the
    /// stack does not handle, are dropped.
    pub fn guest_frame(&mut self, frame: &[u8]) {
        if frame.len() > MAX_FRAME + 4 {
            return;
        }
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        match eth.ethertype() {
            EthernetProtocol::Arp => {
                let Ok(arp) = ArpPacket::new_checked(eth.payload()) else {
                    return;
                };
                let Ok(ArpRepr::EthernetIpv4 {
                    target_protocol_addr,
                    ..
                }) = ArpRepr::parse(&arp)
                else {
                    return;
                };
                // smoltcp's AnyIP would answer for every address; the
                // stack owns only these two.
                if target_protocol_addr == GATEWAY || target_protocol_addr == HOST_ALIAS {
                    self.link.push_rx(frame);
                }
            }
            EthernetProtocol::Ipv4 => self.guest_ipv4(&eth, frame),
            _ => {}
        }
    }

    fn guest_ipv4(&mut self, eth: &EthernetFrame<&[u8]>, frame: &[u8]) {
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return;
        };
        if !ip.verify_checksum() || ip.more_frags() || ip.frag_offset() != 0 {
            return;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        self.learn_neighbor(src, eth.src_addr());
        match ip.next_header() {
            IpProtocol::Tcp => {
                let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
                    return;
                };
                let key = (
                    SocketAddrV4::new(src, tcp.src_port()),
                    SocketAddrV4::new(dst, tcp.dst_port()),
                );
                match self.tcp.get(&key).map(|f| &f.state) {
                    // A retransmitted SYN while the host connect runs.
                    Some(TcpState::Connecting { .. }) => {}
                    Some(TcpState::Open { .. }) => {
                        self.link.push_rx(frame);
                    }
                    None if tcp.syn() && !tcp.ack() && !tcp.rst() => {
                        self.start_tcp(key, frame);
                    }
                    // Anything else for no connection: smoltcp resets it.
                    None => {
                        self.link.push_rx(frame);
                    }
                }
            }
            IpProtocol::Udp => {
                let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
                    return;
                };
                let caps = ChecksumCapabilities::default();
                let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
                if UdpRepr::parse(&udp, &s, &d, &caps).is_err() {
                    return;
                }
                let key = (
                    SocketAddrV4::new(src, udp.src_port()),
                    SocketAddrV4::new(dst, udp.dst_port()),
                );
                self.guest_udp(key, eth.src_addr(), udp.payload());
            }
            // Pings of the stack's own addresses; ICMP elsewhere is not
            // proxied.
            IpProtocol::Icmp if dst == GATEWAY || dst == HOST_ALIAS => {
                self.link.push_rx(frame);
            }
            _ => {}
        }
    }

    /// Keeps smoltcp's neighbor cache entry of a guest address warm, so
    /// that replies (a SYN-ACK, an RST) never wait for ARP: smoltcp fills
    /// its cache only from ARP, so the stack hands it a synthesized
    /// request from the guest now and then.
    fn learn_neighbor(&mut self, src: Ipv4Addr, mac: EthernetAddress) {
        if !Ipv4Cidr::new(NETWORK, PREFIX_LEN).contains_addr(&src)
            || src == GATEWAY
            || src == HOST_ALIAS
            || !mac.is_unicast()
        {
            return;
        }
        let now = StdInstant::now();
        if self
            .neighbors
            .get(&src)
            .is_some_and(|t| now.duration_since(*t) < NEIGHBOR_REFRESH)
        {
            return;
        }
        self.neighbors.insert(src, now);
        // Frames queued before (a real ARP request from the guest among
        // them) are handled first, so that only the synthesized request's
        // reply is dropped below: the guest did not ask.
        self.iface_poll();
        let before = self.link.tx.len();
        let frame = super::frames::arp_request(mac, src, GATEWAY);
        self.link.push_rx(&frame);
        self.iface_poll();
        let mut i = before;
        while i < self.link.tx.len() {
            let is_arp = EthernetFrame::new_checked(&self.link.tx[i][..])
                .is_ok_and(|e| e.ethertype() == EthernetProtocol::Arp);
            if is_arp {
                self.link.tx.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// A guest SYN for a new connection: connect the host side first.
    fn start_tcp(&mut self, key: FlowKey, syn: &[u8]) {
        let target = self.host_target(key.1);
        let stream = match target {
            Some(t) if self.tcp.len() < MAX_TCP_FLOWS => TcpStream::connect(t).ok(),
            _ => None,
        };
        let Some(mut stream) = stream else {
            // No listener: smoltcp answers the SYN with RST.
            self.inject(syn);
            return;
        };
        let token = self.token();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut stream, token, interest)
            .is_err()
        {
            self.inject(syn);
            return;
        }
        self.tokens.insert(token, (true, key));
        self.tcp.insert(
            key,
            TcpFlow {
                token,
                stream,
                state: TcpState::Connecting {
                    syn: syn.to_vec(),
                    deadline: StdInstant::now() + CONNECT_TIMEOUT,
                },
            },
        );
    }

    /// Hands `frame` to smoltcp alone: every frame queued before it is
    /// processed first, so that a fresh listening socket sees only this SYN.
    fn inject(&mut self, frame: &[u8]) {
        self.iface_poll();
        self.link.push_rx(frame);
        self.iface_poll();
    }

    fn iface_poll(&mut self) {
        let now = self.now();
        // Bounded: smoltcp stops when the rx queue is empty or tx is full.
        for _ in 0..64 {
            self.iface.poll(now, &mut self.link, &mut self.sockets);
            if self.link.rx.is_empty() || self.link.tx.len() >= super::MAX_QUEUED_FRAMES {
                break;
            }
        }
    }

    /// The host connect of `key` finished (or failed).
    fn tcp_connect_event(&mut self, key: FlowKey) {
        let Some(flow) = self.tcp.get_mut(&key) else {
            return;
        };
        let TcpState::Connecting { syn, .. } = &flow.state else {
            return;
        };
        let result = match flow.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match flow.stream.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(e),
            },
        };
        let syn = syn.clone();
        if result.is_err() {
            self.remove_tcp(key);
            self.inject(&syn);
            return;
        }
        let _ = flow.stream.set_nodelay(true);
        let mut sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
            tcp::SocketBuffer::new(vec![0u8; TCP_BUFFER]),
        );
        sock.set_nagle_enabled(false);
        sock.set_timeout(Some(smoltcp::time::Duration::from_secs(
            TCP_TIMEOUT.as_secs(),
        )));
        let endpoint = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(*key.1.ip())),
            port: key.1.port(),
        };
        if sock.listen(endpoint).is_err() {
            self.remove_tcp(key);
            self.inject(&syn);
            return;
        }
        let handle = self.sockets.add(sock);
        flow.state = TcpState::Open {
            handle,
            readable: true,
            writable: true,
            host_eof: false,
            host_write_shut: false,
        };
        self.inject(&syn);
        // A SYN that smoltcp refused leaves a listener behind: drop it.
        if self.sockets.get::<tcp::Socket>(handle).state() == tcp::State::Listen {
            self.remove_tcp(key);
        }
    }

    fn remove_tcp(&mut self, key: FlowKey) {
        if let Some(mut flow) = self.tcp.remove(&key) {
            let _ = self.poll.registry().deregister(&mut flow.stream);
            self.tokens.remove(&flow.token);
            if let TcpState::Open { handle, .. } = flow.state {
                self.sockets.remove(handle);
            }
        }
    }

    /// Moves data between each open connection's smoltcp socket and host
    /// stream; true when anything moved or changed.
    fn relay_tcp(&mut self) -> bool {
        let mut progressed = false;
        let mut done = Vec::new();
        for (key, flow) in self.tcp.iter_mut() {
            let TcpState::Open {
                handle,
                readable,
                writable,
                host_eof,
                host_write_shut,
            } = &mut flow.state
            else {
                continue;
            };
            let sock = self.sockets.get_mut::<tcp::Socket>(*handle);
            let stream = &mut flow.stream;
            // Host → guest, while the guest's window has room.
            while *readable && !*host_eof && sock.can_send() {
                let r = sock.send(|buf| match stream.read(buf) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                });
                match r {
                    Ok(Ok(0)) => {
                        *host_eof = true;
                        sock.close();
                        progressed = true;
                    }
                    Ok(Ok(_)) => progressed = true,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => *readable = false,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Err(_)) => {
                        sock.abort();
                        *host_eof = true;
                        progressed = true;
                    }
                    Err(_) => break,
                }
            }
            // Guest → host, while the host takes it.
            while *writable && sock.can_recv() {
                let r = sock.recv(|buf| match stream.write(buf) {
                    Ok(n) => (n, Ok(n)),
                    Err(e) => (0, Err(e)),
                });
                match r {
                    Ok(Ok(0)) => *writable = false,
                    Ok(Ok(_)) => progressed = true,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => *writable = false,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Err(_)) => {
                        sock.abort();
                        progressed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            // The guest's FIN, once its data is delivered: half-close.
            let guest_done = matches!(
                sock.state(),
                tcp::State::CloseWait
                    | tcp::State::LastAck
                    | tcp::State::Closing
                    | tcp::State::TimeWait
            );
            if guest_done && !*host_write_shut && sock.recv_queue() == 0 {
                let _ = stream.shutdown(Shutdown::Write);
                *host_write_shut = true;
                progressed = true;
            }
            if matches!(sock.state(), tcp::State::Closed | tcp::State::TimeWait) {
                done.push(*key);
            }
        }
        for key in done {
            self.remove_tcp(key);
        }
        progressed
    }

    /// A guest datagram: relayed through the flow's host socket.
    fn guest_udp(&mut self, key: FlowKey, guest_mac: EthernetAddress, payload: &[u8]) {
        if !self.udp.contains_key(&key) {
            let Some(target) = self.host_target(key.1) else {
                return;
            };
            if self.udp.len() >= MAX_UDP_FLOWS {
                // Forget the flow idle the longest.
                if let Some(oldest) = self
                    .udp
                    .iter()
                    .min_by_key(|(_, f)| f.last_active)
                    .map(|(k, _)| *k)
                {
                    self.remove_udp(oldest);
                }
            }
            let bind: SocketAddr = match target {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let Ok(mut socket) = UdpSocket::bind(bind) else {
                return;
            };
            let peers: Vec<SocketAddr> = if *key.1.ip() == GATEWAY {
                self.config
                    .dns_upstreams
                    .iter()
                    .filter(|u| u.is_ipv4() == target.is_ipv4())
                    .copied()
                    .collect()
            } else {
                Vec::new()
            };
            if peers.len() <= 1 && socket.connect(target).is_err() {
                return;
            }
            let peers = if peers.len() > 1 { peers } else { Vec::new() };
            let token = self.token();
            if self
                .poll
                .registry()
                .register(&mut socket, token, Interest::READABLE)
                .is_err()
            {
                return;
            }
            self.tokens.insert(token, (false, key));
            let idle = if key.1.port() == 53 {
                DNS_IDLE
            } else {
                UDP_IDLE
            };
            self.udp.insert(
                key,
                UdpFlow {
                    token,
                    socket,
                    peers,
                    guest_mac,
                    last_active: StdInstant::now(),
                    idle,
                },
            );
        }
        if let Some(flow) = self.udp.get_mut(&key) {
            flow.last_active = StdInstant::now();
            flow.guest_mac = guest_mac;
            // A full host socket buffer drops the datagram, as UDP may.
            if flow.peers.is_empty() {
                let _ = flow.socket.send(payload);
            }
            for peer in &flow.peers {
                let _ = flow.socket.send_to(payload, *peer);
            }
        }
    }

    /// Replies on a UDP flow's host socket: each becomes a frame from the
    /// address the guest sent to.
    fn udp_readable(&mut self, key: FlowKey) {
        let Some(flow) = self.udp.get_mut(&key) else {
            return;
        };
        loop {
            match flow.socket.recv_from(&mut self.udp_buf) {
                // Only the flow's peers answer (a connected socket filters
                // by itself).
                Ok((_, from)) if !flow.peers.is_empty() && !flow.peers.contains(&from) => {}
                Ok((n, _)) => {
                    flow.last_active = StdInstant::now();
                    let frame = udp_frame(
                        EthernetAddress(GATEWAY_MAC),
                        flow.guest_mac,
                        key.1,
                        key.0,
                        &self.udp_buf[..n],
                    );
                    if let Some(frame) = frame {
                        self.link.push_tx(frame);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock, or an ICMP error (refused): nothing more now.
                Err(_) => break,
            }
        }
    }

    fn remove_udp(&mut self, key: FlowKey) {
        if let Some(mut flow) = self.udp.remove(&key) {
            let _ = self.poll.registry().deregister(&mut flow.socket);
            self.tokens.remove(&flow.token);
        }
    }

    /// Connects that took too long, UDP flows idle too long.
    fn expire(&mut self) {
        let now = StdInstant::now();
        let late: Vec<FlowKey> = self
            .tcp
            .iter()
            .filter(|(_, f)| matches!(f.state, TcpState::Connecting { deadline, .. } if deadline <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            if let Some(TcpState::Connecting { syn, .. }) = self.tcp.get(&key).map(|f| &f.state) {
                let syn = syn.clone();
                self.remove_tcp(key);
                self.inject(&syn);
            }
        }
        let idle: Vec<FlowKey> = self
            .udp
            .iter()
            .filter(|(_, f)| now.duration_since(f.last_active) >= f.idle)
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            self.remove_udp(key);
        }
    }

    /// Runs smoltcp and the relays until nothing moves (bounded).
    fn process(&mut self) {
        for _ in 0..64 {
            self.iface_poll();
            if !self.relay_tcp() {
                break;
            }
        }
        self.iface_poll();
    }

    /// Processes what is pending, then waits up to `max_wait` (less when
    /// smoltcp has a timer due, zero when guest frames wait) for host
    /// socket events or [`Self::waker`], and processes again.
    pub fn poll(&mut self, max_wait: Duration) {
        self.process();
        let now = self.now();
        let mut wait = max_wait.min(MAX_SLEEP);
        // With the guest's queue full, smoltcp's timers would ask for an
        // immediate poll it cannot act on: wait for the waker instead (the
        // device wakes the stack when it takes frames from a full queue).
        let guest_full = self.link.tx.len() >= super::MAX_QUEUED_FRAMES;
        if let Some(d) = self
            .iface
            .poll_delay(now, &self.sockets)
            .filter(|_| !guest_full)
        {
            wait = wait.min(Duration::from_micros(d.total_micros()));
        }
        if !self.link.rx.is_empty() {
            wait = Duration::ZERO;
        }
        if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                // Not expected; do not spin.
                std::thread::sleep(wait);
            }
        }
        let ready: Vec<(Token, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token(),
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable() || e.is_write_closed() || e.is_error(),
                )
            })
            .collect();
        for (token, readable, writable) in ready {
            let Some(&(is_tcp, key)) = self.tokens.get(&token) else {
                continue;
            };
            if !is_tcp {
                self.udp_readable(key);
                continue;
            }
            match self.tcp.get_mut(&key).map(|f| &mut f.state) {
                Some(TcpState::Connecting { .. }) => self.tcp_connect_event(key),
                Some(TcpState::Open {
                    readable: r,
                    writable: w,
                    ..
                }) => {
                    *r |= readable;
                    *w |= writable;
                }
                None => {}
            }
        }
        self.expire();
        self.process();
    }
}
