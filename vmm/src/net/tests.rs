//! The stack against a second smoltcp interface playing the guest,
//! connected back to back in memory, and host peers on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket as StdUdp};
use std::time::{Duration, Instant as StdInstant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpProtocol, Ipv4Packet, Ipv4Repr,
    TcpPacket, TcpRepr, TcpSeqNumber,
};

use super::frames::FrameQueue;
use super::*;
use crate::devices::test_thread::{on_thread, Kind};

const CONTAINER: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 2);

struct Harness {
    net: UserNet,
    iface: Interface,
    link: FrameQueue,
    sockets: SocketSet<'static>,
    epoch: StdInstant,
}

impl Harness {
    fn new(config: UserNetConfig) -> Self {
        let mut link = FrameQueue::default();
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ethernet(EthernetAddress(GUEST_MAC))),
            &mut link,
            Instant::ZERO,
        );
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(GUEST), 24)).unwrap();
            // A container address behind the guest (see the module docs).
            a.push(IpCidr::new(IpAddress::Ipv4(CONTAINER), 16)).unwrap();
        });
        iface.routes_mut().add_default_ipv4_route(GATEWAY).unwrap();
        Harness {
            net: UserNet::new(config).unwrap(),
            iface,
            link,
            sockets: SocketSet::new(Vec::new()),
            epoch: StdInstant::now(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// One round trip of frames both ways.
    fn step(&mut self) {
        let now = self.now();
        self.iface.poll(now, &mut self.link, &mut self.sockets);
        // The stack's round, as its thread runs it: under the filter of
        // `berth-usernet` (see `devices::test_thread`).
        let (net, link) = (&mut self.net, &mut self.link);
        on_thread(Kind::Net, || {
            while let Some(f) = link.tx.pop_front() {
                net.guest_frame(&f);
            }
            net.poll(Duration::from_millis(2));
            while let Some(f) = net.take_guest_frame() {
                link.rx.push_back(f);
            }
        });
        let now = self.now();
        self.iface.poll(now, &mut self.link, &mut self.sockets);
    }

    fn run_until(&mut self, what: &str, mut done: impl FnMut(&mut Self) -> bool) {
        let deadline = StdInstant::now() + Duration::from_secs(10);
        while !done(self) {
            assert!(StdInstant::now() < deadline, "timed out waiting for {what}");
            self.step();
        }
    }

    fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    fn connect(&mut self, local: (Ipv4Addr, u16), remote: (Ipv4Addr, u16)) -> SocketHandle {
        let sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 8192]),
            tcp::SocketBuffer::new(vec![0; 8192]),
        );
        let h = self.sockets.add(sock);
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket>(h)
            .connect(
                cx,
                IpEndpoint::new(IpAddress::Ipv4(remote.0), remote.1),
                IpEndpoint::new(IpAddress::Ipv4(local.0), local.1),
            )
            .unwrap();
        h
    }

    fn udp(&mut self) -> SocketHandle {
        let mut sock = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4096]),
        );
        sock.bind((IpAddress::Ipv4(GUEST), 40000)).unwrap();
        self.sockets.add(sock)
    }
}

fn default_config() -> UserNetConfig {
    UserNetConfig::with_upstreams(vec![])
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(GUEST_MAC),
        source_protocol_addr: GUEST,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(GUEST_MAC),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

#[test]
fn answers_arp_for_its_own_addresses_only() {
    let mut net = UserNet::new(default_config()).unwrap();
    for (target, answered) in [
        (GATEWAY, true),
        (HOST_ALIAS, true),
        (Ipv4Addr::new(192, 168, 127, 5), false),
        (GUEST, false),
    ] {
        net.guest_frame(&arp_request(target));
        net.poll(Duration::ZERO);
        let reply = net.take_guest_frame();
        assert_eq!(reply.is_some(), answered, "ARP for {target}");
        if let Some(reply) = reply {
            let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
            assert_eq!(eth.dst_addr(), EthernetAddress(GUEST_MAC));
            let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
            let ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                ..
            } = arp
            else {
                unreachable!()
            };
            assert_eq!(operation, ArpOperation::Reply);
            assert_eq!(source_hardware_addr, EthernetAddress(GATEWAY_MAC));
            assert_eq!(source_protocol_addr, target);
        }
        assert!(net.take_guest_frame().is_none());
    }
}

/// A host server on 127.0.0.1 that reads until the client half-closes,
/// then answers `got:<data>` and closes.
fn half_close_server() -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    half_close_server_on(Ipv4Addr::LOCALHOST)
}

/// [`half_close_server`] on host address `ip`.
fn half_close_server_on(ip: Ipv4Addr) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind((ip, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let mut reply = b"got:".to_vec();
        reply.extend_from_slice(&got);
        s.write_all(&reply).unwrap();
        got
    });
    (port, t)
}

fn tcp_round_trip(local: Ipv4Addr) {
    let (port, server) = half_close_server();
    let h = Harness::new(default_config());
    tcp_round_trip_to(h, local, (HOST_ALIAS, port), server);
}

/// Sends 6000 bytes from `local` to `remote` through the stack, half
/// closes, and checks `server`'s answer.
fn tcp_round_trip_to(
    mut h: Harness,
    local: Ipv4Addr,
    remote: (Ipv4Addr, u16),
    server: std::thread::JoinHandle<Vec<u8>>,
) {
    let s = h.connect((local, 49152), remote);
    h.run_until("established", |h| h.tcp(s).may_send());
    // More than one window's worth of smoltcp segments, to exercise the relay.
    let data: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    h.run_until("data sent", |h| {
        sent += h.tcp(s).send_slice(&data[sent..]).unwrap();
        sent == data.len()
    });
    h.tcp(s).close();
    let mut reply = Vec::new();
    h.run_until("reply and FIN", |h| {
        let sock = h.tcp(s);
        while sock.can_recv() {
            sock.recv(|b| {
                reply.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        !sock.may_recv() && matches!(sock.state(), tcp::State::TimeWait | tcp::State::Closed)
    });
    assert_eq!(server.join().unwrap(), data);
    assert_eq!(&reply[..4], b"got:");
    assert_eq!(&reply[4..], &data[..]);
    h.run_until("flow gone", |h| h.net.flow_counts().0 == 0);
}

#[test]
fn tcp_to_host_loopback_with_half_close() {
    tcp_round_trip(GUEST);
}

#[test]
fn tcp_from_a_container_address_behind_the_guest() {
    tcp_round_trip(CONTAINER);
}

/// A peer address (`--net-peer`) leads to its host address, from the
/// guest and from a container behind it; the host alias's port of the
/// same number stays closed.
#[test]
fn tcp_to_a_peer_goes_to_its_host_address() {
    let peer = Ipv4Addr::new(198, 18, 0, 3);
    let host = Ipv4Addr::new(127, 77, 3, 3);
    let mut config = default_config();
    config.peers = vec![
        (Ipv4Addr::new(198, 18, 0, 2), Ipv4Addr::LOCALHOST),
        (peer, host),
    ];
    for local in [GUEST, CONTAINER] {
        let (port, server) = half_close_server_on(host);
        tcp_round_trip_to(Harness::new(config.clone()), local, (peer, port), server);
    }
    // Without the peer, the same address is the outside world: the host
    // connects to the address itself, not to the host address.
    let (port, _server) = half_close_server_on(host);
    let mut net = UserNet::new(default_config()).unwrap();
    assert_eq!(
        net.host_target(std::net::SocketAddrV4::new(peer, port)),
        Some(SocketAddr::from((peer, port)))
    );
    let mut config = default_config();
    config.peers = vec![(peer, host)];
    net = UserNet::new(config).unwrap();
    assert_eq!(
        net.host_target(std::net::SocketAddrV4::new(peer, port)),
        Some(SocketAddr::from((host, port)))
    );
    assert_eq!(net.host_target(std::net::SocketAddrV4::new(peer, 0)), None);
    // Ports below 1024 are at an offset (an unprivileged keeper binds them).
    assert_eq!(
        net.host_target(std::net::SocketAddrV4::new(peer, 80)),
        Some(SocketAddr::from((host, PEER_LOW_PORT_OFFSET + 80)))
    );
    assert_eq!(
        net.host_target(std::net::SocketAddrV4::new(peer, 1024)),
        Some(SocketAddr::from((host, 1024)))
    );
}

#[test]
fn too_many_peers_are_refused() {
    let mut config = default_config();
    config.peers = (0..=MAX_PEERS as u32)
        .map(|i| (Ipv4Addr::from(0xc612_0000 + i), Ipv4Addr::LOCALHOST))
        .collect();
    assert!(matches!(UserNet::new(config), Err(NetError::TooManyPeers)));
}

#[test]
fn tcp_to_a_closed_port_is_reset() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut h = Harness::new(default_config());
    let s = h.connect((GUEST, 49153), (HOST_ALIAS, port));
    let mut established = false;
    h.run_until("reset", |h| {
        established |= h.tcp(s).may_send();
        h.tcp(s).state() == tcp::State::Closed
    });
    assert!(!established);
    assert_eq!(h.net.flow_counts().0, 0);
}

#[test]
fn tcp_to_other_vm_network_addresses_and_gateway_ports_is_reset() {
    let mut net = UserNet::new(default_config()).unwrap();
    for (dst, port) in [(Ipv4Addr::new(192, 168, 127, 9), 80), (GATEWAY, 80)] {
        net.guest_frame(&syn_frame(dst, port));
        net.poll(Duration::ZERO);
        let reply = net.take_guest_frame().expect("an answer to the SYN");
        let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (dst, GUEST));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.rst(), "RST for {dst}:{port}");
        assert_eq!(net.flow_counts(), (0, 0));
    }
}

fn udp_exchange(h: &mut Harness, to: (Ipv4Addr, u16), msg: &[u8]) -> Vec<u8> {
    let u = h.udp();
    let dst = IpEndpoint::new(IpAddress::Ipv4(to.0), to.1);
    h.sockets
        .get_mut::<udp::Socket>(u)
        .send_slice(msg, dst)
        .unwrap();
    let mut got = None;
    h.run_until("udp reply", |h| {
        if let Ok((data, meta)) = h.sockets.get_mut::<udp::Socket>(u).recv() {
            assert_eq!(meta.endpoint, dst, "reply comes from where the guest sent");
            got = Some(data.to_vec());
        }
        got.is_some()
    });
    got.unwrap()
}

/// A host UDP peer on 127.0.0.1 that answers each datagram with
/// `prefix + datagram`, `count` times.
fn udp_server(prefix: &'static [u8], count: usize) -> SocketAddr {
    let s = StdUdp::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..count {
            let (n, from) = s.recv_from(&mut buf).unwrap();
            let mut reply = prefix.to_vec();
            reply.extend_from_slice(&buf[..n]);
            s.send_to(&reply, from).unwrap();
        }
    });
    addr
}

#[test]
fn udp_echo_through_the_host_alias() {
    let server = udp_server(b"echo:", 1);
    let mut h = Harness::new(default_config());
    let got = udp_exchange(&mut h, (HOST_ALIAS, server.port()), b"ping");
    assert_eq!(got, b"echo:ping");
    assert_eq!(h.net.flow_counts().1, 1);
}

#[test]
fn dns_to_the_gateway_goes_to_the_upstream() {
    let upstream = udp_server(b"answer:", 1);
    let mut h = Harness::new(UserNetConfig::with_upstreams(vec![upstream]));
    let got = udp_exchange(&mut h, (GATEWAY, 53), b"query");
    assert_eq!(got, b"answer:query");
}

#[test]
fn udp_to_the_gateway_other_ports_is_dropped() {
    let mut net = UserNet::new(default_config()).unwrap();
    let frame = super::frames::udp_frame(
        EthernetAddress(GUEST_MAC),
        EthernetAddress(GATEWAY_MAC),
        std::net::SocketAddrV4::new(GUEST, 1000),
        std::net::SocketAddrV4::new(GATEWAY, 54),
        b"x",
    )
    .unwrap();
    net.guest_frame(&frame);
    net.poll(Duration::ZERO);
    assert_eq!(net.flow_counts(), (0, 0));
    assert!(net.take_guest_frame().is_none());
}

/// A stack thread whose DNS upstream answers `a:` + the query once, and
/// the channel its "frames for the guest" callback signals on.
fn thread_with_dns_upstream() -> (UserNetThread, std::sync::mpsc::Receiver<()>) {
    let upstream = udp_server(b"a:", 1);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let t = UserNetThread::spawn(
        UserNet::new(UserNetConfig::with_upstreams(vec![upstream])).unwrap(),
        Box::new(move || {
            let _ = tx.lock().unwrap().send(());
        }),
    )
    .unwrap();
    (t, rx)
}

/// The guest's DNS query `q` to the gateway, as a frame.
fn dns_query() -> Vec<u8> {
    super::frames::udp_frame(
        EthernetAddress(GUEST_MAC),
        EthernetAddress(GATEWAY_MAC),
        std::net::SocketAddrV4::new(GUEST, 1000),
        std::net::SocketAddrV4::new(GATEWAY, 53),
        b"q",
    )
    .unwrap()
}

#[test]
fn the_thread_relays_frames() {
    let (t, rx) = thread_with_dns_upstream();
    let query = dns_query();
    assert!(t.send_frame(&query));
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let reply = t.recv_frame().unwrap();
    let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
    assert_eq!(eth.dst_addr(), EthernetAddress(GUEST_MAC));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (GATEWAY, GUEST));
    assert!(ip.payload().ends_with(b"a:q"));
    drop(t);
}

/// What a snapshot of the device asks of its stack: nothing open. A DNS
/// query opens a flow (kept [`super::stack`]'s DNS idle time), and the
/// device refuses to be snapshotted while it lives. (The device is Unix
/// only.)
#[cfg(unix)]
#[test]
fn the_thread_counts_flows_for_the_snapshot_check() {
    use crate::devices::virtio::net::snapshot_blocker;
    let (t, rx) = thread_with_dns_upstream();
    assert_eq!((t.flows(), t.pending_from_guest()), (0, 0));
    assert_eq!(snapshot_blocker(t.flows(), t.pending_from_guest()), None);
    let query = dns_query();
    assert!(t.send_frame(&query));
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(t.recv_frame().is_some());
    assert_eq!(t.flows(), 1);
    let why = snapshot_blocker(t.flows(), t.pending_from_guest()).unwrap();
    assert!(why.contains("1 open connection"), "{why}");
    // Unread frames from the guest refuse too (one may open a flow).
    let why = snapshot_blocker(0, 3).unwrap();
    assert!(why.contains("3 frame(s)"), "{why}");
    drop(t);
}

/// A TCP SYN frame from the guest.
fn syn_frame(dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: 50000,
        dst_port: port,
        control: smoltcp::wire::TcpControl::Syn,
        seq_number: TcpSeqNumber(1),
        ack_number: None,
        window_len: 1000,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: GUEST,
        dst_addr: dst,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(GUEST_MAC),
        dst_addr: EthernetAddress(GATEWAY_MAC),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; 14 + ip.buffer_len() + tcp.buffer_len()];
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut p = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut p, &caps);
    tcp.emit(
        &mut TcpPacket::new_unchecked(p.payload_mut()),
        &IpAddress::Ipv4(GUEST),
        &IpAddress::Ipv4(dst),
        &caps,
    );
    buf
}

#[test]
fn hostile_frames_do_not_panic() {
    let mut net = UserNet::new(default_config()).unwrap();
    let mut samples = vec![
        arp_request(GATEWAY),
        syn_frame(HOST_ALIAS, 1),
        super::frames::udp_frame(
            EthernetAddress(GUEST_MAC),
            EthernetAddress(GATEWAY_MAC),
            std::net::SocketAddrV4::new(GUEST, 1000),
            std::net::SocketAddrV4::new(HOST_ALIAS, 9),
            b"payload",
        )
        .unwrap(),
    ];
    samples.push(vec![0xff; MAX_FRAME + 100]);
    samples.push(Vec::new());
    // Every prefix of each sample, and each sample with each byte of its
    // headers set to 0x00 and 0xff (lengths, header lengths, protocols).
    let mut frames = Vec::new();
    for s in &samples {
        for n in 0..s.len().min(80) {
            frames.push(s[..n].to_vec());
        }
        for i in 0..s.len().min(60) {
            for v in [0u8, 0xff, 0x45, 0x05] {
                let mut f = s.clone();
                f[i] = v;
                frames.push(f);
            }
        }
    }
    // A pseudo-random stream (xorshift), with valid Ethernet types.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..2000 {
        let len = (x % 200) as usize;
        let mut f = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f.push(x as u8);
        }
        if f.len() > 14 {
            f[12] = 0x08;
            f[13] = if x & 1 == 0 { 0x00 } else { 0x06 };
            f[14] = 0x45;
        }
        frames.push(f);
    }
    for f in &frames {
        net.guest_frame(f);
        net.poll(Duration::ZERO);
        while net.take_guest_frame().is_some() {}
    }
    // The stack still works.
    net.guest_frame(&arp_request(GATEWAY));
    net.poll(Duration::ZERO);
    assert!(net.take_guest_frame().is_some());
    let _ = net.flow_counts();
    // Keep the helper's Device impl in use for the tests' types.
    let _ = FrameQueue::default().capabilities();
}

#[test]
fn bulk_transfer_both_ways_with_backpressure() {
    // The host sends 1 MiB and reads 1 MiB back; the guest's buffers are
    // 8 KiB, so both relays stall and resume many times.
    const N: usize = 1 << 20;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut r = s.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            got
        });
        let data: Vec<u8> = (0..N).map(|i| (i % 253) as u8).collect();
        s.write_all(&data).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        reader.join().unwrap()
    });
    let mut h = Harness::new(default_config());
    let s = h.connect((GUEST, 49160), (HOST_ALIAS, port));
    h.run_until("established", |h| h.tcp(s).may_send());
    let out: Vec<u8> = (0..N).map(|i| (i % 241) as u8).collect();
    let (mut sent, mut got) = (0, Vec::new());
    let deadline = StdInstant::now() + Duration::from_secs(60);
    loop {
        assert!(
            StdInstant::now() < deadline,
            "stalled: sent {sent}, got {}",
            got.len()
        );
        let sock = h.tcp(s);
        if sent < N && sock.can_send() {
            sent += sock.send_slice(&out[sent..]).unwrap();
            if sent == N {
                sock.close();
            }
        }
        while sock.can_recv() {
            sock.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        if sent == N && !sock.may_recv() {
            break;
        }
        h.step();
    }
    assert_eq!(got.len(), N);
    assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 253) as u8));
    // The guest's last data and FIN still have to reach the host.
    h.run_until("both sides closed", |h| {
        server.is_finished() && h.net.flow_counts().0 == 0
    });
    assert_eq!(server.join().unwrap(), out);
}

#[test]
fn guest_reset_closes_the_host_side() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 16];
        // EOF (or a reset) once the guest aborts.
        loop {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let mut h = Harness::new(default_config());
    let s = h.connect((GUEST, 49161), (HOST_ALIAS, port));
    h.run_until("established", |h| h.tcp(s).may_send());
    h.tcp(s).abort();
    h.run_until("flow gone", |h| h.net.flow_counts().0 == 0);
    server.join().unwrap();
}

#[test]
fn a_guest_arp_request_is_answered_even_when_ip_follows_at_once() {
    // The stack refreshes its neighbor entry of the guest with a request
    // of its own and drops that reply; the guest's own must survive.
    let mut net = UserNet::new(default_config()).unwrap();
    net.guest_frame(&arp_request(GATEWAY));
    net.guest_frame(&syn_frame(Ipv4Addr::new(192, 168, 127, 9), 80));
    net.poll(Duration::ZERO);
    let mut arp_replies = 0;
    let mut rsts = 0;
    while let Some(f) = net.take_guest_frame() {
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        match eth.ethertype() {
            EthernetProtocol::Arp => arp_replies += 1,
            EthernetProtocol::Ipv4 => {
                let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                rsts += usize::from(TcpPacket::new_checked(ip.payload()).unwrap().rst());
            }
            _ => {}
        }
    }
    assert_eq!((arp_replies, rsts), (1, 1));
}

/// An ICMP echo request from `src` to `dst`.
fn ping_frame(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr};
    let icmp = Icmpv4Repr::EchoRequest {
        ident: 1,
        seq_no: 1,
        data: b"ping",
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(GUEST_MAC),
        dst_addr: EthernetAddress(GATEWAY_MAC),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; 14 + ip.buffer_len() + icmp.buffer_len()];
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut p = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut p, &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
    buf
}

#[test]
fn pings_of_the_gateway_are_answered_and_odd_sources_do_not_panic() {
    let mut net = UserNet::new(default_config()).unwrap();
    net.guest_frame(&arp_request(GATEWAY));
    net.poll(Duration::ZERO);
    while net.take_guest_frame().is_some() {}
    net.guest_frame(&ping_frame(GUEST, GATEWAY));
    net.poll(Duration::ZERO);
    let reply = net.take_guest_frame().expect("echo reply");
    let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (GATEWAY, GUEST));
    // Sources that cannot be answered, and a container source behind the
    // guest (answered via the guest).
    for src in [
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(8, 8, 8, 8),
        CONTAINER,
    ] {
        for dst in [GATEWAY, HOST_ALIAS, Ipv4Addr::new(1, 2, 3, 4)] {
            net.guest_frame(&ping_frame(src, dst));
            net.guest_frame(&syn_frame(dst, 80));
            net.poll(Duration::ZERO);
            while net.take_guest_frame().is_some() {}
        }
    }
}

#[test]
fn dns_goes_to_every_upstream_and_the_first_answer_wins() {
    // The first upstream never answers (a resolver gone with a VPN).
    let dead = StdUdp::bind("127.0.0.1:0").unwrap();
    let live = udp_server(b"answer:", 1);
    let mut h = Harness::new(UserNetConfig::with_upstreams(vec![
        dead.local_addr().unwrap(),
        live,
    ]));
    let got = udp_exchange(&mut h, (GATEWAY, 53), b"query");
    assert_eq!(got, b"answer:query");
    // The dead one got the query too.
    let mut b = [0u8; 16];
    dead.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (n, _) = dead.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"query");
}
