//! Published ports (`docker run -p`) as a userland proxy, like
//! docker-proxy: host sockets bound by [`bind_all`] (all or nothing, so that
//! a port conflict fails the container's start), then served by [`spawn`],
//! which relays each to the container's address.
//!
//! TCP: one connection to the container per client connection, bytes moved
//! both ways with half-close carried over: on Linux with splice(2) through a
//! pipe (the bytes stay in the kernel, as docker-proxy's Go `io.Copy`
//! between two TCP connections does), read/write through a buffer where
//! splice is refused. UDP: one socket towards the
//! container per client address, replies sent back from the published
//! socket; a flow idle for 90 s is forgotten.

// The shim wires these in (engine/shim.rs); until then nothing calls them.

use super::sockets::{is_fatal, retry, Permit};
use berth_protocol::{PortBinding, PortProto, PublishedPort};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream,
    UdpSocket,
};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why published ports could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The host port is taken, by another container or another program
    /// (`addr` as docker prints it: `0.0.0.0:8080`, `[::]:8080`, or
    /// `127.0.0.1:8000-8010` for a range with no free port).
    #[error("Bind for {addr} failed: port is already allocated")]
    InUse { addr: String, proto: PortProto },
    /// The host IP of a binding is not an IP address.
    #[error("invalid IP address: {0}")]
    BadAddress(String),
    /// Any other failure to set up a listener (an address not on this host,
    /// a privileged port, no descriptors left).
    #[error("listen {} {addr}: {source}", .proto.as_str())]
    Io {
        addr: String,
        proto: PortProto,
        #[source]
        source: io::Error,
    },
}

/// Listeners bound by [`bind_all`], not yet served. Dropping it releases
/// the ports.
#[derive(Debug)]
pub struct Bound {
    /// What is published, one entry per socket (two for a binding on every
    /// address of a host with IPv6: `0.0.0.0` and `::`).
    pub published: Vec<PublishedPort>,
    listeners: Vec<Listener>,
}

#[derive(Debug)]
struct Listener {
    socket: HostSocket,
    container_port: u16,
}

#[derive(Debug)]
enum HostSocket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Where one binding goes on the host.
#[derive(Debug, Clone, Copy)]
enum Hosts {
    /// Every address: IPv4 and, when the host has it, IPv6 on the same
    /// port (the two addresses are parameters so that tests can use
    /// loopback).
    Dual(Ipv4Addr, Ipv6Addr),
    One(IpAddr),
}

/// Binds every binding's host socket, or none: on an error the sockets
/// already bound are closed. Nothing is served until [`spawn`].
///
/// An empty `host_ip` binds 0.0.0.0 and, if the host has IPv6, [::] (IPv6
/// only) on the same port; port 0 lets the kernel pick; a range
/// (`host_port_end` > `host_port`) takes its first free port.
pub fn bind_all(bindings: &[PortBinding]) -> Result<Bound, ProxyError> {
    let mut bound = Bound {
        published: Vec::new(),
        listeners: Vec::new(),
    };
    for binding in bindings {
        let hosts = match parse_host_ip(&binding.host_ip)? {
            Some(ip) => Hosts::One(ip),
            None => Hosts::Dual(Ipv4Addr::UNSPECIFIED, Ipv6Addr::UNSPECIFIED),
        };
        bind_binding(binding, hosts, &mut bound)?;
    }
    Ok(bound)
}

/// `None` for every address.
fn parse_host_ip(text: &str) -> Result<Option<IpAddr>, ProxyError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let bare = trimmed
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(trimmed);
    bare.parse::<IpAddr>()
        .map(|ip| Some(ip.to_canonical()))
        .map_err(|_| ProxyError::BadAddress(text.to_string()))
}

fn bind_binding(binding: &PortBinding, hosts: Hosts, bound: &mut Bound) -> Result<(), ProxyError> {
    let proto = binding.proto;
    let first = binding.host_port;
    let last = if first != 0 && binding.host_port_end > first {
        binding.host_port_end
    } else {
        first
    };
    for port in first..=last {
        match bind_port(hosts, port, proto) {
            Ok(sockets) => {
                for (socket, addr) in sockets {
                    bound.published.push(PublishedPort {
                        container_port: binding.container_port,
                        proto,
                        host_ip: addr.ip().to_string(),
                        host_port: addr.port(),
                    });
                    bound.listeners.push(Listener {
                        socket,
                        container_port: binding.container_port,
                    });
                }
                return Ok(());
            }
            Err(e @ ProxyError::InUse { .. }) if first == last => return Err(e),
            Err(ProxyError::InUse { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    let ip = match hosts {
        Hosts::Dual(v4, _) => IpAddr::V4(v4),
        Hosts::One(ip) => ip,
    };
    Err(ProxyError::InUse {
        addr: format!("{}-{last}", SocketAddr::new(ip, first)),
        proto,
    })
}

/// Tries for an IPv6 port that the kernel gave the IPv4 socket.
const SAME_PORT_TRIES: usize = 8;

/// Binds `port` on the host addresses; for [`Hosts::Dual`] both sockets
/// get the same port.
fn bind_port(
    hosts: Hosts,
    port: u16,
    proto: PortProto,
) -> Result<Vec<(HostSocket, SocketAddr)>, ProxyError> {
    let (v4, v6) = match hosts {
        Hosts::One(ip) => {
            let addr = SocketAddr::new(ip, port);
            return Ok(vec![bind_socket(addr, proto)?]);
        }
        Hosts::Dual(v4, v6) => (v4, v6),
    };
    let tries = if port == 0 { SAME_PORT_TRIES } else { 1 };
    let mut last_error = None;
    for _ in 0..tries {
        let first = bind_socket(SocketAddr::new(v4.into(), port), proto)?;
        let v6_addr = SocketAddr::new(v6.into(), first.1.port());
        match bind_socket(v6_addr, proto) {
            Ok(second) => return Ok(vec![first, second]),
            Err(ProxyError::Io { source, .. }) if no_ipv6(&source) => return Ok(vec![first]),
            // The kernel's pick is taken on IPv6: drop it and pick again.
            Err(e @ ProxyError::InUse { .. }) => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| ProxyError::InUse {
        addr: SocketAddr::new(v6.into(), port).to_string(),
        proto,
    }))
}

/// Whether an IPv6 socket failed because the host has no IPv6.
fn no_ipv6(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// One host socket: IPv6 ones are IPv6-only (IPv4 has its own), TCP
/// listeners reuse addresses (no wait after a restart), as Go's listeners
/// in docker-proxy.
fn bind_socket(addr: SocketAddr, proto: PortProto) -> Result<(HostSocket, SocketAddr), ProxyError> {
    let io_err = |source: io::Error| {
        if source.raw_os_error() == Some(libc::EADDRINUSE) {
            ProxyError::InUse {
                addr: addr.to_string(),
                proto,
            }
        } else {
            ProxyError::Io {
                addr: addr.to_string(),
                proto,
                source,
            }
        }
    };
    let (ty, protocol) = match proto {
        PortProto::Tcp => (Type::STREAM, Protocol::TCP),
        PortProto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol)).map_err(io_err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(io_err)?;
    }
    if proto == PortProto::Tcp {
        socket.set_reuse_address(true).map_err(io_err)?;
    }
    socket.bind(&SockAddr::from(addr)).map_err(io_err)?;
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    let bound = match proto {
        PortProto::Tcp => {
            socket.listen(1024).map_err(io_err)?;
            HostSocket::Tcp(socket.into())
        }
        PortProto::Udp => HostSocket::Udp(socket.into()),
    };
    Ok((bound, local))
}

/// Serves every listener of `bound` on threads, relaying to
/// `target:container_port`, and returns at once. The threads run for the
/// life of the process.
pub fn spawn(bound: Bound, target: Ipv4Addr) -> io::Result<()> {
    spawn_with(bound, target, Limits::default())
}

/// Timeouts and bounds of the proxy (tests shorten them).
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// A UDP flow with no datagram either way for this long is forgotten
    /// (docker-proxy: 90 s).
    udp_idle: Duration,
    /// UDP flows per published socket; datagrams from further clients are
    /// dropped.
    max_udp_flows: usize,
    /// TCP connections per published socket; further ones are closed at
    /// once.
    max_tcp_connections: usize,
    /// How long a connection to the container may take.
    connect_timeout: Duration,
    /// Move TCP bytes with splice(2) where the kernel allows it (tests turn
    /// it off to check the copy fallback).
    splice: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            udp_idle: Duration::from_secs(90),
            max_udp_flows: 1024,
            max_tcp_connections: 1024,
            connect_timeout: Duration::from_secs(30),
            splice: true,
        }
    }
}

/// Stack of the proxy's listener and UDP threads: their buffers live on
/// the heap.
const THREAD_STACK: usize = 256 * 1024;
/// Stack of the threads TCP connections run on ([`TCP_WORKERS`], named
/// `proxy-tcp`), which run only [`relay_tcp`] / [`forward`]: a connect,
/// socket calls and small frames. No buffer lives on them (splice
/// keeps the bytes in a pipe; the copy fallback's buffer is on the heap),
/// so a little over what std and glibc need (16 KiB minimum, TLS) is
/// plenty.
const CONN_STACK: usize = 64 * 1024;
/// Copy buffer of one TCP direction, when splice is refused.
const TCP_BUFFER: usize = 64 * 1024;
/// Largest UDP payload over IPv4 (docker-proxy's buffer).
const UDP_BUFFER: usize = 65507;

fn spawn_with(bound: Bound, target: Ipv4Addr, limits: Limits) -> io::Result<()> {
    for listener in bound.listeners {
        let to = SocketAddrV4::new(target, listener.container_port);
        match listener.socket {
            HostSocket::Tcp(socket) => {
                socket.set_nonblocking(false)?;
                let name = format!("proxy-tcp-{}", local_port(socket.local_addr()));
                std::thread::Builder::new()
                    .name(name)
                    .stack_size(THREAD_STACK)
                    .spawn(move || serve_tcp(socket, to, limits))?;
            }
            HostSocket::Udp(socket) => {
                socket.set_nonblocking(false)?;
                let name = format!("proxy-udp-{}", local_port(socket.local_addr()));
                std::thread::Builder::new()
                    .name(name)
                    .stack_size(THREAD_STACK)
                    .spawn(move || serve_udp(Arc::new(socket), to, limits))?;
            }
        }
    }
    Ok(())
}

fn local_port(addr: io::Result<SocketAddr>) -> u16 {
    addr.map_or(0, |a| a.port())
}

fn serve_tcp(listener: TcpListener, target: SocketAddrV4, limits: Limits) {
    let connections = Arc::new(AtomicUsize::new(0));
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_fatal(&e) => {
                log::warn!("port proxy to {target}/tcp stops: {e}");
                return;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(permit) = Permit::acquire(&connections, limits.max_tcp_connections) else {
            continue; // dropped: closed at once
        };
        let _ = TCP_WORKERS.run(move || relay_tcp(client, target, limits, permit));
    }
}

/// One client connection: connect to the container (on failure the client
/// is just closed, as docker-proxy does), then move bytes both ways, one
/// direction here and one on another worker. The sockets are closed, and
/// `permit` given back, when both directions are over.
fn relay_tcp(client: TcpStream, target: SocketAddrV4, limits: Limits, permit: Permit) {
    let Ok(server) = TcpStream::connect_timeout(&target.into(), limits.connect_timeout) else {
        return;
    };
    // Go's sockets (docker-proxy's) have Nagle off.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client, server, permit) = (Arc::new(client), Arc::new(server), Arc::new(permit));
    let splice = limits.splice;
    let (back_client, back_server) = (client.clone(), server.clone());
    let back = TCP_WORKERS.run(move || {
        let _permit = permit;
        forward(&back_server, &back_client, splice);
    });
    if back.is_ok() {
        forward(&client, &server, splice);
    }
}

/// How [`forward`] moved the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    /// All through splice(2).
    Spliced,
    /// Through a buffer: splice off, refused, or no pipe to be had
    /// (possibly after some bytes went through splice).
    Copied,
}

/// Moves `from` to `to` until EOF or an error, then carries the end
/// over: no more reading from `from`, no more writing to `to` (a FIN), the
/// other direction going on until it ends too.
fn forward(from: &TcpStream, to: &TcpStream, splice: bool) -> Moved {
    #[cfg(target_os = "linux")]
    let done = splice && crate::splice::forward(from, to) == crate::splice::End::Done;
    #[cfg(not(target_os = "linux"))]
    let done = {
        let _ = splice;
        false
    };
    let moved = if done {
        Moved::Spliced
    } else {
        copy(from, to);
        Moved::Copied
    };
    let _ = from.shutdown(Shutdown::Read);
    let _ = to.shutdown(Shutdown::Write);
    moved
}

/// Copies `from` to `to` through a heap buffer until EOF or an error.
fn copy(mut from: &TcpStream, mut to: &TcpStream) {
    let mut buf = vec![0u8; TCP_BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// The threads TCP connections run on (two per connection, one per
/// direction), kept for the next connections once done.
static TCP_WORKERS: crate::workers::Pool = crate::workers::Pool::new("proxy-tcp", Some(CONN_STACK));

/// One client address's path to the container.
struct Flow {
    /// Connected to the container, from a port of its own.
    socket: UdpSocket,
    last_active: Mutex<Instant>,
}

impl Flow {
    fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        lock(&self.last_active).elapsed()
    }
}

/// Locks, going on after a panic elsewhere (the data stays consistent:
/// an instant, a map of flows).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>;

fn serve_udp(listener: Arc<UdpSocket>, target: SocketAddrV4, limits: Limits) {
    let flows: Flows = Arc::new(Mutex::new(HashMap::new()));
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let (len, client) = match listener.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_fatal(&e) => {
                log::warn!("port proxy to {target}/udp stops: {e}");
                return;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(flow) = flow_for(&flows, &listener, client, target, limits) else {
            continue;
        };
        let _ = retry(|| flow.socket.send(&buf[..len]));
    }
}

/// The client's flow, created (with its reply thread) on its first
/// datagram; `None` when there are too many or no socket could be had.
fn flow_for(
    flows: &Flows,
    listener: &Arc<UdpSocket>,
    client: SocketAddr,
    target: SocketAddrV4,
    limits: Limits,
) -> Option<Arc<Flow>> {
    let mut table = lock(flows);
    if let Some(flow) = table.get(&client) {
        flow.touch();
        return Some(flow.clone());
    }
    if table.len() >= limits.max_udp_flows {
        return None;
    }
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect(target).ok()?;
    let flow = Arc::new(Flow {
        socket,
        last_active: Mutex::new(Instant::now()),
    });
    let (thread_flows, thread_listener, thread_flow) =
        (flows.clone(), listener.clone(), flow.clone());
    std::thread::Builder::new()
        .name("proxy-udp-flow".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            reply_loop(
                &thread_flow,
                &thread_listener,
                client,
                limits.udp_idle,
                &thread_flows,
            );
            forget(&thread_flows, client, &thread_flow);
        })
        .ok()?;
    table.insert(client, flow.clone());
    Some(flow)
}

/// Removes `flow` from the table (unless a newer flow took its place).
fn forget(flows: &Flows, client: SocketAddr, flow: &Arc<Flow>) {
    let mut table = lock(flows);
    if table.get(&client).is_some_and(|f| Arc::ptr_eq(f, flow)) {
        table.remove(&client);
    }
}

/// Sends the container's datagrams back to the client from the published
/// socket, until the flow has been idle for `idle`. Expiry is decided under
/// the table's lock, which the receiving side holds while it finds and
/// touches a flow, so no datagram is sent through a flow being forgotten.
fn reply_loop(
    flow: &Arc<Flow>,
    listener: &UdpSocket,
    client: SocketAddr,
    idle: Duration,
    flows: &Flows,
) {
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let mut left = idle.saturating_sub(flow.idle_for());
        if left.is_zero() {
            let mut table = lock(flows);
            left = idle.saturating_sub(flow.idle_for());
            if left.is_zero() {
                if table.get(&client).is_some_and(|f| Arc::ptr_eq(f, flow)) {
                    table.remove(&client);
                }
                return;
            }
        }
        if flow.socket.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match flow.socket.recv(&mut buf) {
            Ok(len) => {
                flow.touch();
                let _ = retry(|| listener.send_to(&buf[..len], client));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        // Nothing listens in the container (yet): the
                        // client may try again.
                        | io::ErrorKind::ConnectionRefused
                ) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

    fn binding(
        host_ip: &str,
        host_port: u16,
        end: u16,
        container_port: u16,
        proto: PortProto,
    ) -> PortBinding {
        PortBinding {
            host_ip: host_ip.to_string(),
            host_port,
            host_port_end: end,
            container_port,
            proto,
        }
    }

    /// The container's TCP server: echoes everything, and after the
    /// client's EOF sends "bye" and closes.
    fn tcp_echo_server() -> u16 {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            while let Ok((mut conn, _)) = retry(|| listener.accept()) {
                std::thread::spawn(move || {
                    let mut writer = conn.try_clone().unwrap();
                    let _ = io::copy(&mut conn, &mut writer);
                    let _ = writer.write_all(b"bye");
                });
            }
        });
        port
    }

    /// The container's UDP server: answers "PEER|payload".
    fn udp_echo_server() -> u16 {
        let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let port = socket.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; UDP_BUFFER];
            while let Ok((len, peer)) = retry(|| socket.recv_from(&mut buf)) {
                let mut reply = format!("{peer}|").into_bytes();
                reply.extend_from_slice(&buf[..len]);
                let _ = retry(|| socket.send_to(&reply, peer));
            }
        });
        port
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    fn published_addr(bound: &Bound, index: usize) -> SocketAddr {
        let p = &bound.published[index];
        SocketAddr::new(p.host_ip.parse().unwrap(), p.host_port)
    }

    /// Binds and serves one binding towards 127.0.0.1; returns the
    /// published address.
    fn publish(b: PortBinding, limits: Limits) -> SocketAddr {
        let bound = bind_all(&[b]).unwrap();
        let addr = published_addr(&bound, 0);
        spawn_with(bound, LOOPBACK, limits).unwrap();
        addr
    }

    fn echo_round(stream: &mut TcpStream, text: &[u8]) {
        stream.write_all(text).unwrap();
        let mut got = vec![0u8; text.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, text);
    }

    #[test]
    fn tcp_echo_through_the_proxy() {
        let target = tcp_echo_server();
        let addr = publish(
            binding("127.0.0.1", 0, 0, target, PortProto::Tcp),
            Limits::default(),
        );
        assert_eq!(addr.ip(), IpAddr::V4(LOOPBACK));
        assert_ne!(addr.port(), 0, "port 0 picks a port");
        let mut stream = connect(addr);
        echo_round(&mut stream, b"hello");
        echo_round(&mut stream, b"again");
    }

    #[test]
    fn tcp_large_transfer_and_half_close() {
        large_transfer_and_half_close(Limits::default());
    }

    #[test]
    fn tcp_large_transfer_and_half_close_copying() {
        large_transfer_and_half_close(Limits {
            splice: false,
            ..Limits::default()
        });
    }

    /// 8 MiB echoed through the proxy while still being sent, then our
    /// FIN carried to the server and its "bye" and FIN carried back.
    fn large_transfer_and_half_close(limits: Limits) {
        let target = tcp_echo_server();
        let addr = publish(binding("127.0.0.1", 0, 0, target, PortProto::Tcp), limits);
        let stream = connect(addr);
        let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let mut writer = stream.try_clone().unwrap();
        let sent = data.clone();
        let sender = std::thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            // Done sending; still reading.
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        let mut reader = stream;
        reader.read_to_end(&mut got).unwrap();
        sender.join().unwrap();
        // Everything back, then what the server sent after seeing our EOF.
        assert_eq!(got.len(), data.len() + 3);
        assert!(got[..data.len()] == data[..]);
        assert_eq!(&got[data.len()..], b"bye");
    }

    /// Both ends of a fresh loopback TCP connection.
    fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let near = connect(listener.local_addr().unwrap());
        let (far, _) = retry(|| listener.accept()).unwrap();
        far.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (near, far)
    }

    /// [`forward`] itself, between two real connections: every byte goes
    /// through splice (not the copy fallback), in order, across many
    /// pipe fills, and the EOF arrives as a FIN while the other direction
    /// stays open; the pipe goes back to the pool and serves again.
    #[cfg(target_os = "linux")]
    #[test]
    fn splice_forwards_bytes_and_eof() {
        for round in 0..2u8 {
            let (mut client, proxy_in) = tcp_pair();
            let (proxy_out, mut server) = tcp_pair();
            let (mut to_client, mut from_server) = (
                proxy_in.try_clone().unwrap(),
                proxy_out.try_clone().unwrap(),
            );
            let forwarder = std::thread::Builder::new()
                .stack_size(CONN_STACK)
                .spawn(move || forward(&proxy_in, &proxy_out, true))
                .unwrap();
            let data: Vec<u8> = (0..3 * 1024 * 1024 + 17u32)
                .map(|i| (i % 253) as u8 ^ round)
                .collect();
            let sent = data.clone();
            let sender = std::thread::spawn(move || {
                client.write_all(&sent).unwrap();
                client.shutdown(Shutdown::Write).unwrap();
                client
            });
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            assert_eq!(forwarder.join().unwrap(), Moved::Spliced);
            let mut client = sender.join().unwrap();
            assert_eq!(got.len(), data.len());
            assert!(got == data);
            // Half-close only: the other way still carries bytes, both
            // out of the server and into the client.
            server.write_all(b"up").unwrap();
            let mut up = [0u8; 2];
            from_server.read_exact(&mut up).unwrap();
            assert_eq!(&up, b"up");
            to_client.write_all(b"late").unwrap();
            let mut late = [0u8; 4];
            client.read_exact(&mut late).unwrap();
            assert_eq!(&late, b"late");
        }
    }

    /// Connection threads are reused: jobs run one after another take an
    /// idle thread rather than a new one each (other tests share the
    /// pool, so only "far fewer threads than jobs" is certain).
    #[test]
    fn worker_threads_are_reused() {
        crate::workers::tests::assert_threads_reused(&TCP_WORKERS);
    }

    #[test]
    fn tcp_two_clients_at_once() {
        let target = tcp_echo_server();
        let addr = publish(
            binding("127.0.0.1", 0, 0, target, PortProto::Tcp),
            Limits::default(),
        );
        let mut a = connect(addr);
        let mut b = connect(addr);
        echo_round(&mut a, b"from a");
        echo_round(&mut b, b"from b");
        echo_round(&mut a, b"a again");
        b.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"bye");
        echo_round(&mut a, b"a still here");
    }

    #[test]
    fn tcp_client_is_closed_when_the_container_refuses() {
        let closed = TcpListener::bind((LOOPBACK, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = publish(
            binding("127.0.0.1", 0, 0, closed, PortProto::Tcp),
            Limits::default(),
        );
        let mut stream = connect(addr);
        let mut buf = [0u8; 8];
        assert!(matches!(retry(|| stream.read(&mut buf)), Ok(0) | Err(_)));
    }

    #[test]
    fn tcp_connections_beyond_the_bound_are_closed() {
        let target = tcp_echo_server();
        let limits = Limits {
            max_tcp_connections: 1,
            ..Limits::default()
        };
        let addr = publish(binding("127.0.0.1", 0, 0, target, PortProto::Tcp), limits);
        let mut first = connect(addr);
        echo_round(&mut first, b"one");
        let mut second = connect(addr);
        let mut buf = [0u8; 8];
        assert!(matches!(retry(|| second.read(&mut buf)), Ok(0) | Err(_)));
        echo_round(&mut first, b"still one");
    }

    fn udp_client() -> UdpSocket {
        let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
    }

    /// Sends `text` to the proxy; returns (the container's view of our
    /// flow's address, payload). Checks the reply came from the proxy.
    fn udp_round(socket: &UdpSocket, proxy: SocketAddr, text: &str) -> (String, String) {
        socket.send_to(text.as_bytes(), proxy).unwrap();
        let mut buf = vec![0u8; UDP_BUFFER];
        let (len, from) = retry(|| socket.recv_from(&mut buf)).unwrap();
        assert_eq!(from, proxy, "reply from the published socket");
        let reply = String::from_utf8(buf[..len].to_vec()).unwrap();
        let (peer, payload) = reply.split_once('|').unwrap();
        (peer.to_string(), payload.to_string())
    }

    #[test]
    fn udp_echo_and_two_clients() {
        let target = udp_echo_server();
        let addr = publish(
            binding("127.0.0.1", 0, 0, target, PortProto::Udp),
            Limits::default(),
        );
        assert_ne!(addr.port(), 0);
        let (a, b) = (udp_client(), udp_client());
        let (peer_a, payload) = udp_round(&a, addr, "ping a");
        assert_eq!(payload, "ping a");
        let (peer_b, payload) = udp_round(&b, addr, "ping b");
        assert_eq!(payload, "ping b");
        assert_ne!(peer_a, peer_b, "one flow per client");
        let (again, _) = udp_round(&a, addr, "ping a2");
        assert_eq!(again, peer_a, "the flow is kept");
        // A large datagram.
        let big = "x".repeat(60_000);
        let (_, payload) = udp_round(&a, addr, &big);
        assert_eq!(payload.len(), big.len());
    }

    #[test]
    fn udp_flows_expire_and_are_bounded() {
        let target = udp_echo_server();
        let limits = Limits {
            udp_idle: Duration::from_millis(300),
            max_udp_flows: 1,
            ..Limits::default()
        };
        let addr = publish(binding("127.0.0.1", 0, 0, target, PortProto::Udp), limits);
        let (a, b) = (udp_client(), udp_client());
        let (first, _) = udp_round(&a, addr, "1");
        // A second client while the first flow lives: dropped.
        b.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        b.send_to(b"2", addr).unwrap();
        let mut buf = [0u8; 64];
        assert!(retry(|| b.recv_from(&mut buf)).is_err());
        // Once idle long enough, the flow is gone: a new one (another port
        // towards the container), and room for the other client.
        std::thread::sleep(Duration::from_millis(700));
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (_, payload) = udp_round(&b, addr, "3");
        assert_eq!(payload, "3");
        std::thread::sleep(Duration::from_millis(700));
        let (second, _) = udp_round(&a, addr, "4");
        assert_ne!(first, second);
    }

    /// A port free on 127.0.0.1 for TCP right now whose next port is free
    /// too.
    fn free_pair() -> u16 {
        loop {
            let port = TcpListener::bind((LOOPBACK, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if port < u16::MAX && TcpListener::bind((LOOPBACK, port + 1)).is_ok() {
                return port;
            }
        }
    }

    #[test]
    fn range_takes_the_first_free_port() {
        let taken = free_pair();
        let _holder = TcpListener::bind((LOOPBACK, taken)).unwrap();
        let bound =
            bind_all(&[binding("127.0.0.1", taken, taken + 1, 80, PortProto::Tcp)]).unwrap();
        assert_eq!(bound.published.len(), 1);
        assert_eq!(bound.published[0].host_port, taken + 1);
        assert_eq!(bound.published[0].container_port, 80);

        // Nothing free in the range.
        let err = bind_all(&[binding("127.0.0.1", taken, taken, 80, PortProto::Tcp)]).unwrap_err();
        assert!(matches!(err, ProxyError::InUse { .. }));
        drop(bound);
        let _second = TcpListener::bind((LOOPBACK, taken + 1)).unwrap();
        let err =
            bind_all(&[binding("127.0.0.1", taken, taken + 1, 80, PortProto::Tcp)]).unwrap_err();
        match err {
            ProxyError::InUse { addr, proto } => {
                assert_eq!(addr, format!("127.0.0.1:{taken}-{}", taken + 1));
                assert_eq!(proto, PortProto::Tcp);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn in_use_is_reported_like_docker() {
        let holder = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let port = holder.local_addr().unwrap().port();
        let err = bind_all(&[binding("127.0.0.1", port, 0, 80, PortProto::Tcp)]).unwrap_err();
        match &err {
            ProxyError::InUse { addr, proto } => {
                assert_eq!(addr, &format!("127.0.0.1:{port}"));
                assert_eq!(*proto, PortProto::Tcp);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!("Bind for 127.0.0.1:{port} failed: port is already allocated")
        );

        let holder = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let port = holder.local_addr().unwrap().port();
        let err = bind_all(&[binding("127.0.0.1", port, 0, 53, PortProto::Udp)]).unwrap_err();
        assert!(
            matches!(&err, ProxyError::InUse { addr, proto: PortProto::Udp } if *addr == format!("127.0.0.1:{port}")),
            "{err:?}"
        );
    }

    #[test]
    fn all_or_nothing() {
        let holder = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let taken = holder.local_addr().unwrap().port();
        let free = TcpListener::bind((LOOPBACK, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let free_udp = UdpSocket::bind((LOOPBACK, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = bind_all(&[
            binding("127.0.0.1", free, 0, 80, PortProto::Tcp),
            binding("127.0.0.1", free_udp, 0, 53, PortProto::Udp),
            binding("127.0.0.1", taken, 0, 443, PortProto::Tcp),
        ])
        .unwrap_err();
        assert!(matches!(err, ProxyError::InUse { .. }));
        // What was bound before the failure is released.
        TcpListener::bind((LOOPBACK, free)).expect("first binding released");
        UdpSocket::bind((LOOPBACK, free_udp)).expect("second binding released");

        // A bad address later in the list too.
        let err = bind_all(&[
            binding("127.0.0.1", free, 0, 80, PortProto::Tcp),
            binding("127.0.0.300", 8080, 0, 80, PortProto::Tcp),
        ])
        .unwrap_err();
        assert!(matches!(err, ProxyError::BadAddress(ref a) if a == "127.0.0.300"));
        TcpListener::bind((LOOPBACK, free)).expect("released after a bad address");
    }

    #[test]
    fn bad_addresses() {
        for bad in ["1.2.3", "localhost", "::g", "[127.0.0.1", "1.2.3.4:80"] {
            let err = bind_all(&[binding(bad, 8080, 0, 80, PortProto::Tcp)]).unwrap_err();
            assert!(
                matches!(&err, ProxyError::BadAddress(a) if a == bad),
                "{bad}: {err:?}"
            );
            assert_eq!(err.to_string(), format!("invalid IP address: {bad}"));
        }
        // Not an address of this host: an I/O error naming it.
        let err = bind_all(&[binding("192.0.2.1", 0, 0, 80, PortProto::Tcp)]).unwrap_err();
        assert!(matches!(err, ProxyError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("listen tcp 192.0.2.1:0: "),
            "{err}"
        );
    }

    #[test]
    fn several_bindings_at_once() {
        let tcp = tcp_echo_server();
        let udp = udp_echo_server();
        let bound = bind_all(&[
            binding("127.0.0.1", 0, 0, tcp, PortProto::Tcp),
            binding("127.0.0.1", 0, 0, udp, PortProto::Udp),
        ])
        .unwrap();
        assert_eq!(bound.published.len(), 2);
        assert_eq!(bound.published[0].proto, PortProto::Tcp);
        assert_eq!(bound.published[1].proto, PortProto::Udp);
        let (tcp_addr, udp_addr) = (published_addr(&bound, 0), published_addr(&bound, 1));
        spawn(bound, LOOPBACK).unwrap();
        echo_round(&mut connect(tcp_addr), b"tcp");
        assert_eq!(udp_round(&udp_client(), udp_addr, "udp").1, "udp");
    }

    fn has_ipv6_loopback() -> bool {
        TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
    }

    #[test]
    fn ipv6_dual_binding() {
        if !has_ipv6_loopback() {
            println!("SKIPPED: no IPv6 loopback on this host");
            return;
        }
        let tcp = tcp_echo_server();
        let udp = udp_echo_server();
        for (proto, target) in [(PortProto::Tcp, tcp), (PortProto::Udp, udp)] {
            // The dual path of an empty host_ip, on the loopback pair.
            let mut bound = Bound {
                published: Vec::new(),
                listeners: Vec::new(),
            };
            let b = binding("", 0, 0, target, proto);
            bind_binding(&b, Hosts::Dual(LOOPBACK, Ipv6Addr::LOCALHOST), &mut bound).unwrap();
            assert_eq!(bound.published.len(), 2, "{proto:?}");
            assert_eq!(bound.published[0].host_ip, "127.0.0.1");
            assert_eq!(bound.published[1].host_ip, "::1");
            let port = bound.published[0].host_port;
            assert_ne!(port, 0);
            assert_eq!(bound.published[1].host_port, port, "same port on both");
            let (v4, v6) = (published_addr(&bound, 0), published_addr(&bound, 1));
            spawn(bound, LOOPBACK).unwrap();
            match proto {
                PortProto::Tcp => {
                    echo_round(&mut connect(v4), b"over v4");
                    echo_round(&mut connect(v6), b"over v6");
                }
                PortProto::Udp => {
                    assert_eq!(udp_round(&udp_client(), v4, "v4").1, "v4");
                    let client = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
                    client
                        .set_read_timeout(Some(Duration::from_secs(5)))
                        .unwrap();
                    assert_eq!(udp_round(&client, v6, "v6").1, "v6");
                }
            }
        }

        // The IPv6 socket is IPv6-only: an IPv4 listener on the same port
        // is another socket, and a taken IPv6 port is reported as such.
        let holder = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        let port = holder.local_addr().unwrap().port();
        if TcpListener::bind((LOOPBACK, port)).is_ok() {
            let mut bound = Bound {
                published: Vec::new(),
                listeners: Vec::new(),
            };
            let b = binding("", port, 0, 80, PortProto::Tcp);
            let err = bind_binding(&b, Hosts::Dual(LOOPBACK, Ipv6Addr::LOCALHOST), &mut bound)
                .unwrap_err();
            assert!(
                matches!(&err, ProxyError::InUse { addr, .. } if *addr == format!("[::1]:{port}")),
                "{err:?}"
            );
            assert!(bound.published.is_empty());
            TcpListener::bind((LOOPBACK, port)).expect("IPv4 half released");
        }

        // Explicit IPv6 addresses are honoured.
        let addr = publish(binding("::1", 0, 0, tcp, PortProto::Tcp), Limits::default());
        assert_eq!(addr.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        echo_round(&mut connect(addr), b"explicit v6");
        let addr = publish(
            binding("[::1]", 0, 0, tcp, PortProto::Tcp),
            Limits::default(),
        );
        echo_round(&mut connect(addr), b"bracketed");
    }

    #[test]
    fn host_ip_forms() {
        assert_eq!(parse_host_ip("").unwrap(), None);
        assert_eq!(
            parse_host_ip("127.0.0.1").unwrap(),
            Some(IpAddr::V4(LOOPBACK))
        );
        assert_eq!(
            parse_host_ip("[::1]").unwrap(),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(
            parse_host_ip("::").unwrap(),
            Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        );
        // IPv4-mapped: an IPv4 socket.
        assert_eq!(
            parse_host_ip("::ffff:127.0.0.1").unwrap(),
            Some(IpAddr::V4(LOOPBACK))
        );
    }
}
