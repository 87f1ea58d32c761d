//! Published ports of containers in a VM (the machine VM, or one of their
//! own), on the host.
//!
//! In the VM the container's shim binds each `-p` port on the guest's own
//! addresses, as in native placement. On the host, one long-lived
//! forwarder per machine (`berth machine port-forwarder`, started with the
//! machine and gone with its VMM) binds the same host address and port and
//! joins each connection to the guest's port over vsock (the agent's
//! `PortConnect` stream). It follows the engine's container events, so
//! ports come and go with their containers, also while no `berth` command
//! runs and after a restart policy brings a container back.
//!
//! A command that starts a container with published ports asks the
//! forwarder to catch up at once over `<machine>/ports.sock` (`sync`), and
//! hears which host ports could not be bound.
//!
//! UDP: the forwarder binds the `/udp` socket the same way (no
//! SO_REUSEADDR, so a port in use is seen), and gives each host peer a
//! flow: the agent's `PortConnectUdp` stream, whose guest end is a UDP
//! socket connected to the guest port, carrying datagrams in
//! [`berth_protocol::datagram`] frames. Replies go back to the peer from
//! the published socket. A flow ends after [`UDP_IDLE`] without a datagram,
//! when the guest closes it or sends a bad frame (it is untrusted), or with
//! its socket; [`MAX_UDP_FLOWS`] per socket.
//!
//! A container in a VM of its own (`--isolation vm`) has no long-lived
//! forwarder: its `berth run` binds the host ports before the VM starts
//! ([`RunPorts`]) and serves them, with the same per-socket code, for as
//! long as the run lasts.

use crate::client::Endpoint;
use crate::engine::Engine;
use crate::platform::{UnixListener, UnixStream};
use anyhow::{Context, Result};
use berth_protocol::datagram::{read_datagram, write_datagram, DatagramError, MAX_DATAGRAM};
use berth_protocol::{EventsOptions, PortProto, PublishedPort};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest container event line read from the guest.
const MAX_EVENT_LINE: usize = 1 << 20;

/// How often the forwarder, with no event coming, checks that the
/// machine's VMM still runs. Only the host is asked: a periodic catch-up
/// with the engine (a vsock connection and a container listing each time)
/// was most of an idle machine's CPU on an emulated guest kernel, 110 of
/// 145 VMM ticks a minute, and it caught nothing the event stream, the
/// reconnect and `sync` do not.
const ALIVE_CHECK: Duration = Duration::from_secs(10);

/// A UDP flow (one host peer) with no datagram either way for this long
/// is closed (docker-proxy and the guest's proxy: 90 s).
const UDP_IDLE: Duration = Duration::from_secs(90);
/// UDP flows per published socket; datagrams from further peers are
/// dropped until one expires (as the guest's proxy does).
const MAX_UDP_FLOWS: usize = 1024;
/// Datagrams queued towards the guest per flow; beyond it they are
/// dropped, as a full socket buffer drops them.
const UDP_QUEUE: usize = 64;
/// How often a flow's writer looks at its idle time.
const UDP_TICK: Duration = Duration::from_secs(5);

/// One host socket: protocol, the address it binds and the guest port
/// behind it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    proto: PortProto,
    addr: SocketAddr,
    guest_port: u16,
}

impl Key {
    /// How `sync` names it: `127.0.0.1:8080/udp`.
    fn name(&self) -> String {
        format!("{}/{}", self.addr, self.proto.as_str())
    }
}

struct Listening {
    stop: Arc<AtomicBool>,
    local: SocketAddr,
    proto: PortProto,
    /// Disconnected once the serving thread is done with the socket.
    ended: Receiver<()>,
}

/// A bound host socket, not yet served.
enum HostSocket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// The forwarder's state: what it binds now, and the ports it could not
/// bind (with the error) at the last reconcile.
struct Forwarder {
    endpoint: Endpoint,
    bound: Mutex<BTreeMap<Key, Listening>>,
    failed: Mutex<BTreeMap<String, String>>,
}

/// `<machine>/ports.sock`, `<machine>/ports.pid`.
pub fn paths(machine_dir: &Path) -> (PathBuf, PathBuf) {
    (
        machine_dir.join("ports.sock"),
        machine_dir.join("ports.pid"),
    )
}

fn host_addrs(p: &PublishedPort) -> Option<SocketAddr> {
    let ip: IpAddr = p.host_ip.parse().ok()?;
    Some(SocketAddr::new(ip, p.host_port))
}

impl Forwarder {
    /// Ports the engine publishes now.
    fn wanted(&self) -> Result<BTreeSet<Key>> {
        let mut c = Engine::open(&self.endpoint)?;
        let ports = c.published_ports()?;
        Ok(ports
            .iter()
            .filter_map(|p| {
                Some(Key {
                    proto: p.proto,
                    addr: host_addrs(p)?,
                    guest_port: p.host_port,
                })
            })
            .collect())
    }

    /// Binds what is wanted and not bound, closes what is bound and no
    /// longer wanted.
    fn reconcile(self: &Arc<Self>) -> Result<()> {
        let wanted = self.wanted()?;
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<Key> = bound
            .keys()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        for k in gone {
            eprintln!("{} unpublish {}", stamp(), k.name());
            if let Some(l) = bound.remove(&k) {
                // Let the port go before it is bound again (a container
                // restarted at once).
                l.close();
            }
        }
        let mut failed = BTreeMap::new();
        for k in wanted {
            if bound.contains_key(&k) {
                continue;
            }
            match bind(k.addr, k.proto) {
                Ok((socket, local)) => {
                    let guest = k.guest_port;
                    let l = Listening::serve(socket, local, guest, &self.endpoint);
                    eprintln!("{} publish {} -> guest port {guest}", stamp(), k.name());
                    bound.insert(k, l);
                }
                Err(e) => {
                    eprintln!("{} cannot bind {}: {e}", stamp(), k.name());
                    failed.insert(k.name(), e.to_string());
                }
            }
        }
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = failed;
        Ok(())
    }
}

impl Listening {
    /// Serves a bound host socket on a thread of its own: each TCP
    /// connection, or each UDP peer's flow, goes to `guest_port` in the
    /// guest over `endpoint` (the agent's `PortConnect`/`PortConnectUdp`).
    fn serve(socket: HostSocket, local: SocketAddr, guest_port: u16, endpoint: &Endpoint) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (st, ep) = (Arc::clone(&stop), endpoint.clone());
        let (end, ended) = sync_channel::<()>(0);
        let proto = match socket {
            HostSocket::Tcp(l) => {
                std::thread::spawn(move || {
                    accept_loop(l, &ep, guest_port, &st);
                    drop(end);
                });
                PortProto::Tcp
            }
            HostSocket::Udp(s) => {
                std::thread::spawn(move || {
                    udp_loop(s, &ep, guest_port, &st);
                    drop(end);
                });
                PortProto::Udp
            }
        };
        Listening {
            stop,
            local,
            proto,
            ended,
        }
    }

    /// Stops serving and waits (up to 2 s) until the socket is closed:
    /// the thread closes its UDP flows, which hold the socket, on the way
    /// out.
    fn close(self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake its accept() or recv_from(); it sees the flag and returns.
        wake(self.proto, self.local);
        let _ = self.ended.recv_timeout(Duration::from_secs(2));
    }
}

fn accept_loop(l: TcpListener, ep: &Endpoint, guest_port: u16, stop: &AtomicBool) {
    for conn in l.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let ep = ep.clone();
        std::thread::spawn(move || {
            let _ = forward(conn, &ep, guest_port);
        });
    }
}

/// Where to connect to wake a listener bound to `a` (an unspecified
/// address is reached on loopback).
fn wake_addr(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(v) if v.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
        IpAddr::V6(v) if v.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        _ => a,
    }
}

/// Wakes the thread serving the socket bound at `local` (blocked in
/// accept() or recv_from()): a connection, or an empty datagram.
fn wake(proto: PortProto, local: SocketAddr) {
    let to = wake_addr(local);
    match proto {
        PortProto::Tcp => {
            let _ = TcpStream::connect_timeout(&to, Duration::from_millis(200));
        }
        PortProto::Udp => {
            let from: SocketAddr = if to.is_ipv6() {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            };
            if let Ok(s) = UdpSocket::bind(from) {
                let _ = s.send_to(&[], to);
            }
        }
    }
}

/// Binds like docker (and the guest's proxy): an IPv6 socket for `::`
/// takes IPv6 only (`0.0.0.0` is bound beside it); TCP listeners set
/// SO_REUSEADDR (no wait after a restart), UDP sockets do not (on Linux
/// it would let a second socket share the port, hiding a port in use).
fn bind(addr: SocketAddr, proto: PortProto) -> std::io::Result<(HostSocket, SocketAddr)> {
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let (ty, protocol) = match proto {
        PortProto::Tcp => (socket2::Type::STREAM, socket2::Protocol::TCP),
        PortProto::Udp => (socket2::Type::DGRAM, socket2::Protocol::UDP),
    };
    let s = socket2::Socket::new(domain, ty, Some(protocol))?;
    if proto == PortProto::Tcp {
        s.set_reuse_address(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    let local = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    Ok(match proto {
        PortProto::Tcp => {
            s.listen(1024)?;
            (HostSocket::Tcp(s.into()), local)
        }
        PortProto::Udp => (HostSocket::Udp(s.into()), local),
    })
}

/// One host connection, joined to the guest's port. The `PortConnect`
/// request goes out without waiting ([`Engine::port_connect_pipelined`])
/// and the client's bytes follow it at once: a short request reaches the
/// guest after one round trip to it instead of three (vsock handshake,
/// `Hello`, `PortConnect`), which on an emulated guest kernel is a good
/// part of a short connection's time.
fn forward(client: TcpStream, ep: &Endpoint, guest_port: u16) -> Result<()> {
    let _ = client.set_nodelay(true);
    let pending = Engine::port_connect_pipelined(ep, guest_port)?;
    let (mut c_r, mut g_w) = (client.try_clone()?, pending.writer()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_r, &mut g_w);
        let _ = g_w.shutdown(Shutdown::Write);
    });
    let guest = match pending.ready() {
        Ok(g) => g,
        Err(e) => {
            // The copy above ends with the client's socket.
            let _ = client.shutdown(Shutdown::Both);
            let _ = up.join();
            return Err(e.into());
        }
    };
    let (mut g_r, mut c_w) = (guest, client);
    let _ = std::io::copy(&mut g_r, &mut c_w);
    let _ = c_w.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// Locks, going on after a panic elsewhere (the data stays consistent: an
/// instant, a map of flows, a stream).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One host peer's path to a published UDP port in the guest: a
/// `PortConnectUdp` stream of its own, so the guest's proxy sees one
/// source per peer and its replies come back on the right stream.
struct UdpFlow {
    last_active: Mutex<Instant>,
    /// The stream to the guest, once connected (shut down to end the flow).
    stream: Mutex<Option<UnixStream>>,
    closed: AtomicBool,
}

impl UdpFlow {
    fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        lock(&self.last_active).elapsed()
    }

    /// Ends the flow: both of its threads return soon after.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(s) = lock(&self.stream).as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A flow in its socket's table. Dropping `tx` (the entry leaves the
/// table) ends the flow's writer once it has sent what is queued.
struct FlowEntry {
    tx: SyncSender<Vec<u8>>,
    flow: Arc<UdpFlow>,
}

type UdpFlows = Arc<Mutex<HashMap<SocketAddr, FlowEntry>>>;

/// Removes `flow` from the table unless a newer flow took its place.
fn forget(flows: &UdpFlows, peer: SocketAddr, flow: &Arc<UdpFlow>) {
    let mut table = lock(flows);
    if table.get(&peer).is_some_and(|e| Arc::ptr_eq(&e.flow, flow)) {
        table.remove(&peer);
    }
}

/// Serves one published UDP socket: each datagram goes to its peer's
/// flow (made on the peer's first datagram), until `stop`.
fn udp_loop(socket: UdpSocket, ep: &Endpoint, guest_port: u16, stop: &AtomicBool) {
    let socket = Arc::new(socket);
    // A fallback to the wake-up datagram, which a full buffer drops.
    let _ = socket.set_read_timeout(Some(Duration::from_secs(1)));
    let flows: UdpFlows = Arc::new(Mutex::new(HashMap::new()));
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    // One byte more than the largest datagram carried: a larger one
    // (IPv6 allows 65527) fills it and is dropped, not cut.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    while !stop.load(Ordering::SeqCst) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                            // Windows reports an earlier send's ICMP
                            // unreachable here.
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                continue
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if n > MAX_DATAGRAM {
            continue;
        }
        threads.retain(|t| !t.is_finished());
        if let Some(t) = relay(ep, &flows, &socket, guest_port, peer, buf[..n].to_vec()) {
            threads.push(t);
        }
    }
    let entries: Vec<FlowEntry> = lock(&flows).drain().map(|(_, e)| e).collect();
    for e in entries {
        e.flow.close();
    }
    // The flows' threads hold the socket: the port is free once they
    // are gone.
    for t in threads {
        let _ = t.join();
    }
}

/// Queues one datagram from `peer` on its flow, making the flow (and
/// returning its thread) when there is none. Dropped when the flow's
/// queue is full or the table is.
fn relay(
    ep: &Endpoint,
    flows: &UdpFlows,
    socket: &Arc<UdpSocket>,
    guest_port: u16,
    peer: SocketAddr,
    data: Vec<u8>,
) -> Option<std::thread::JoinHandle<()>> {
    let mut table = lock(flows);
    let data = match table.get(&peer) {
        Some(e) => match e.tx.try_send(data) {
            Ok(()) => {
                e.flow.touch();
                return None;
            }
            Err(TrySendError::Full(_)) => return None,
            // The flow ended (the guest closed it): start another.
            Err(TrySendError::Disconnected(d)) => {
                table.remove(&peer);
                d
            }
        },
        None => data,
    };
    if table.len() >= MAX_UDP_FLOWS {
        return None;
    }
    let (tx, rx) = sync_channel(UDP_QUEUE);
    tx.try_send(data).ok()?;
    let flow = Arc::new(UdpFlow {
        last_active: Mutex::new(Instant::now()),
        stream: Mutex::new(None),
        closed: AtomicBool::new(false),
    });
    let (ep, fl, fw, so) = (
        ep.clone(),
        Arc::clone(flows),
        Arc::clone(&flow),
        Arc::clone(socket),
    );
    let t = std::thread::Builder::new()
        .name("ports-udp-flow".into())
        .spawn(move || run_flow(&ep, guest_port, peer, so, &fl, fw, rx))
        .ok()?;
    table.insert(peer, FlowEntry { tx, flow });
    Some(t)
}

/// One UDP flow: connects to the guest's port, then sends the queued
/// datagrams to the guest while a second thread sends the guest's replies
/// to `peer` from the published socket, until the flow is idle for
/// [`UDP_IDLE`], closed, or the guest ends it.
fn run_flow(
    ep: &Endpoint,
    guest_port: u16,
    peer: SocketAddr,
    socket: Arc<UdpSocket>,
    flows: &UdpFlows,
    flow: Arc<UdpFlow>,
    rx: Receiver<Vec<u8>>,
) {
    let stream = Engine::open(ep)
        .map_err(anyhow::Error::from)
        .and_then(|c| Ok(c.port_connect_udp(guest_port)?));
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "{} udp flow from {peer} to guest port {guest_port}: {e:#}",
                stamp()
            );
            forget(flows, peer, &flow);
            return;
        }
    };
    // A guest that stops reading ends the flow instead of holding it.
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(mut from_guest) = stream.try_clone() else {
        forget(flows, peer, &flow);
        return;
    };
    {
        let mut slot = lock(&flow.stream);
        if flow.closed.load(Ordering::SeqCst) {
            return;
        }
        *slot = stream.try_clone().ok();
    }
    let (rf, rflows) = (Arc::clone(&flow), Arc::clone(flows));
    let replies = std::thread::spawn(move || {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match read_datagram(&mut from_guest, &mut buf) {
                Ok(Some(n)) => {
                    rf.touch();
                    let _ = socket.send_to(&buf[..n], peer);
                }
                Ok(None) => break,
                Err(e @ (DatagramError::TooLarge(_) | DatagramError::Truncated)) => {
                    eprintln!(
                        "{} udp flow from {peer}: bad frame from the guest: {e}",
                        stamp()
                    );
                    break;
                }
                Err(DatagramError::Io(_)) => break,
            }
        }
        // Datagrams from now on start a new flow.
        forget(&rflows, peer, &rf);
        rf.close();
    });
    loop {
        match rx.recv_timeout(UDP_TICK) {
            Ok(d) => {
                if write_datagram(&mut stream, &d).is_err() {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if flow.closed.load(Ordering::SeqCst) {
                    break;
                }
                if flow.idle_for() >= UDP_IDLE {
                    // Decided under the table's lock, which the receiving
                    // side holds while it queues and touches: no datagram
                    // is queued on a flow being forgotten.
                    let mut table = lock(flows);
                    if flow.idle_for() >= UDP_IDLE {
                        if table
                            .get(&peer)
                            .is_some_and(|e| Arc::ptr_eq(&e.flow, &flow))
                        {
                            table.remove(&peer);
                        }
                        break;
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    forget(flows, peer, &flow);
    flow.close();
    let _ = replies.join();
}

/// Runs the forwarder for the machine at `machine_dir` until its VMM is
/// gone (`vmm_alive` says).
pub fn serve(
    machine_dir: &Path,
    endpoint: Endpoint,
    vmm_alive: impl Fn() -> bool,
    on_quiet: impl Fn(),
) -> Result<()> {
    serve_with(machine_dir, endpoint, vmm_alive, ALIVE_CHECK, on_quiet)
}

/// [`serve`], looking at `vmm_alive` every `alive_check` while no event
/// comes.
///
/// The guest is asked for the published ports only when something may
/// have changed them: after each (re)subscription to the container events,
/// on each `start`, `die` and `destroy`, and on `sync`. While the stream is
/// quiet nothing is asked of the guest (each listing is a vsock connection,
/// a handshake and file reads in the guest kernel). The engine records
/// `start` once the container runs (see the agent's shim), so the listing
/// an event triggers sees the container it is about.
fn serve_with(
    machine_dir: &Path,
    endpoint: Endpoint,
    vmm_alive: impl Fn() -> bool,
    alive_check: Duration,
    on_quiet: impl Fn(),
) -> Result<()> {
    let (sock, pid_file) = paths(machine_dir);
    let _ = std::fs::remove_file(&sock);
    let control =
        UnixListener::bind(&sock).with_context(|| format!("binding {}", sock.display()))?;
    let me = std::process::id().to_string();
    std::fs::write(&pid_file, &me)?;
    let fwd = Arc::new(Forwarder {
        endpoint,
        bound: Mutex::new(BTreeMap::new()),
        failed: Mutex::new(BTreeMap::new()),
    });
    // `sync`: reconcile now and answer with what failed, one
    // `ADDR\tERROR` line each, then `ok`.
    {
        let fwd = Arc::clone(&fwd);
        std::thread::spawn(move || {
            for s in control.incoming().flatten() {
                let fwd = Arc::clone(&fwd);
                std::thread::spawn(move || {
                    let mut s = s;
                    let mut line = String::new();
                    if let Ok(r) = s.try_clone() {
                        let _ = BufReader::new(r).read_line(&mut line);
                    }
                    let mut out = String::new();
                    if let Err(e) = fwd.reconcile() {
                        out.push_str(&format!("error\t{e}\n"));
                    }
                    for (a, e) in fwd.failed.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                        out.push_str(&format!("{a}\t{e}\n"));
                    }
                    out.push_str("ok\n");
                    let _ = s.write_all(out.as_bytes());
                });
            }
        });
    }
    // Follow container events; reconcile after each subscription and on
    // each event that changes what runs.
    let mut unreachable_logged = false;
    while vmm_alive() {
        let stream = Engine::open(&fwd.endpoint).and_then(|c| {
            c.events(EventsOptions {
                since: None,
                until: None,
                filters: BTreeMap::from([("type".to_string(), vec!["container".to_string()])]),
            })
        });
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // A booting or restarting machine: its agent is not
                // listening yet.
                if !unreachable_logged {
                    eprintln!("{} engine not reachable: {e:#}", stamp());
                    unreachable_logged = true;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        unreachable_logged = false;
        eprintln!("{} following container events", stamp());
        // Subscribed first, then caught up: whatever changed before the
        // subscription (another boot's restart policy, a container started
        // while the stream was down) is in this listing, and whatever
        // changes after it comes as an event.
        if let Err(e) = fwd.reconcile() {
            eprintln!("{} catching up: {e:#}", stamp());
        }
        let _ = stream.set_read_timeout(Some(alive_check));
        let mut lines = BufReader::new(stream);
        // Bytes, kept across a timeout: a line may arrive in parts.
        let mut line = Vec::new();
        loop {
            // The guest's lines are bounded: one that grows past the cap
            // ends this stream (the next subscription catches up).
            let room = (MAX_EVENT_LINE as u64).saturating_sub(line.len() as u64);
            if room == 0 {
                eprintln!("{} event line over {MAX_EVENT_LINE} bytes", stamp());
                break;
            }
            match (&mut lines).take(room).read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) if line.ends_with(b"\n") => {
                    if let Some(action) = changes_ports(&line) {
                        if let Err(e) = fwd.reconcile() {
                            eprintln!("{} after {action}: {e:#}", stamp());
                        }
                    }
                    line.clear();
                }
                // The end of the stream within a line, or a line at the cap.
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    // Only the host is asked here.
                    if !vmm_alive() {
                        break;
                    }
                    // The machine's idle suspend (see `Machine::serve_ports`).
                    on_quiet();
                }
                Err(_) => break,
            }
        }
        eprintln!("{} event stream ended", stamp());
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{} the machine's VMM is gone; exiting", stamp());
    // A forwarder started for the machine's next boot may own them now.
    if std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == me) {
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(&pid_file);
    }
    Ok(())
}

/// The action of a container event line that can change the published
/// ports (`start`, `die`, `destroy`), if it is one. The line comes from the
/// guest: anything that is not such an event is ignored.
fn changes_ports(line: &[u8]) -> Option<&'static str> {
    #[derive(serde::Deserialize)]
    struct Ev {
        #[serde(rename = "Action", default)]
        action: String,
    }
    let ev: Ev = serde_json::from_slice(line).ok()?;
    ["start", "die", "destroy"]
        .into_iter()
        .find(|a| *a == ev.action)
}

fn stamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Asks a running forwarder to catch up; returns the host addresses it
/// could not bind, with their errors. `None` when no forwarder answers.
pub fn sync(machine_dir: &Path) -> Option<Vec<(String, String)>> {
    let (sock, _) = paths(machine_dir);
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    s.write_all(b"sync\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let mut out = Vec::new();
    for l in text.lines() {
        if l == "ok" {
            return Some(out);
        }
        if let Some((a, e)) = l.split_once('\t') {
            out.push((a.to_string(), e.to_string()));
        }
    }
    None
}

/// A host port of a container in a VM of its own (`--isolation vm`)
/// that could not be bound; docker's words after `failed to bind host
/// port for`.
#[derive(Debug, thiserror::Error)]
#[error("failed to bind host port for {addr}:{container_port}/{proto}: {reason}")]
pub struct BindError {
    /// `0.0.0.0:8080`, `[::1]:53`, `127.0.0.1:8000-8010`.
    pub addr: String,
    pub container_port: u16,
    pub proto: &'static str,
    /// The system's error, lower case without the error number.
    pub reason: String,
    /// Whether the port (every port of a range) was in use.
    pub in_use: bool,
}

/// Tries for an IPv6 socket on the port the kernel gave the IPv4 one.
const SAME_PORT_TRIES: usize = 8;

/// The host ports of one container run in a VM of its own, bound before
/// the VM starts and served, once it runs, for as long as the run lasts.
///
/// Each binding is bound on the host as docker binds it (every address:
/// `0.0.0.0` and, where the host has IPv6, `::`; port 0: a free port; a
/// range: its first free port). The guest is given the same binding with
/// the host's port pinned, on its own loopback ([`RunPorts::guest_bindings`]):
/// the agent's `PortConnect` joins the guest's `127.0.0.1:PORT`, whatever
/// host address the port is published on.
pub struct RunPorts {
    sockets: Vec<(HostSocket, SocketAddr)>,
    guest: Vec<berth_protocol::PortBinding>,
}

impl RunPorts {
    /// Binds every binding, or none: on an error the sockets already
    /// bound are closed.
    pub fn bind(bindings: &[berth_protocol::PortBinding]) -> Result<RunPorts, BindError> {
        let mut out = RunPorts {
            sockets: Vec::new(),
            guest: Vec::new(),
        };
        for b in bindings {
            let port = bind_binding(b, &mut out.sockets)?;
            let guest = berth_protocol::PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: port,
                host_port_end: 0,
                container_port: b.container_port,
                proto: b.proto,
            };
            // One guest socket serves the same port on several host
            // addresses.
            if !out.guest.contains(&guest) {
                out.guest.push(guest);
            }
        }
        Ok(out)
    }

    /// The bindings the guest's engine is to publish: the host's ports,
    /// on the guest's 127.0.0.1.
    pub fn guest_bindings(&self) -> &[berth_protocol::PortBinding] {
        &self.guest
    }

    /// The host sockets bound, with their protocol.
    pub fn host_addrs(&self) -> Vec<(PortProto, SocketAddr)> {
        self.sockets
            .iter()
            .map(|(s, a)| {
                let proto = match s {
                    HostSocket::Tcp(_) => PortProto::Tcp,
                    HostSocket::Udp(_) => PortProto::Udp,
                };
                (proto, *a)
            })
            .collect()
    }

    /// Starts forwarding to the guest behind `endpoint`; it ends when the
    /// returned value is dropped.
    pub fn serve(self, endpoint: &Endpoint) -> RunForwarding {
        RunForwarding {
            listening: self
                .sockets
                .into_iter()
                .map(|(socket, local)| Listening::serve(socket, local, local.port(), endpoint))
                .collect(),
        }
    }
}

/// The host ports of a running own-VM container, forwarded to its guest;
/// closed (and their threads stopped) when dropped.
pub struct RunForwarding {
    listening: Vec<Listening>,
}

impl Drop for RunForwarding {
    fn drop(&mut self) {
        for l in self.listening.drain(..) {
            l.close();
        }
    }
}

/// Binds one binding's host sockets (pushed on `sockets`); its port.
fn bind_binding(
    b: &berth_protocol::PortBinding,
    sockets: &mut Vec<(HostSocket, SocketAddr)>,
) -> Result<u16, BindError> {
    let text = b.host_ip.trim();
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let (first_ip, dual) = if bare.is_empty() {
        (IpAddr::from([0, 0, 0, 0]), true)
    } else {
        match bare.parse::<IpAddr>() {
            Ok(ip) => (ip.to_canonical(), false),
            Err(_) => {
                return Err(BindError {
                    addr: b.host_ip.clone(),
                    container_port: b.container_port,
                    proto: b.proto.as_str(),
                    reason: "invalid host address".into(),
                    in_use: false,
                })
            }
        }
    };
    let first = b.host_port;
    let last = if first != 0 && b.host_port_end > first {
        b.host_port_end
    } else {
        first
    };
    let error = |port: String, e: &std::io::Error| BindError {
        // Go's JoinHostPort, as `ports::join_host_port` (not called: that
        // module depends on the machine, which depends on this one).
        addr: match first_ip {
            IpAddr::V6(_) => format!("[{first_ip}]:{port}"),
            IpAddr::V4(_) => format!("{first_ip}:{port}"),
        },
        container_port: b.container_port,
        proto: b.proto.as_str(),
        reason: e
            .to_string()
            .split(" (os error")
            .next()
            .unwrap_or_default()
            .to_lowercase(),
        in_use: e.kind() == std::io::ErrorKind::AddrInUse,
    };
    let mut last_err = None;
    for port in first..=last {
        let tries = if dual && port == 0 {
            SAME_PORT_TRIES
        } else {
            1
        };
        for _ in 0..tries {
            let (v4, local) = match bind(SocketAddr::new(first_ip, port), b.proto) {
                Ok(s) => s,
                Err(e) => {
                    last_err = Some(e);
                    break;
                }
            };
            if !dual {
                sockets.push((v4, local));
                return Ok(local.port());
            }
            let v6_addr =
                SocketAddr::new(IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED), local.port());
            match bind(v6_addr, b.proto) {
                Ok((v6, l6)) => {
                    sockets.push((v4, local));
                    sockets.push((v6, l6));
                    return Ok(local.port());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_err = Some(e),
                // No IPv6 on this host: the IPv4 socket alone.
                Err(_) => {
                    sockets.push((v4, local));
                    return Ok(local.port());
                }
            }
        }
        match &last_err {
            Some(e) if e.kind() == std::io::ErrorKind::AddrInUse && port != last => continue,
            _ => break,
        }
    }
    let e = last_err.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse));
    let port = if last > first {
        format!("{first}-{last}")
    } else {
        first.to_string()
    };
    Err(error(port, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_addresses() {
        assert_eq!(
            wake_addr("0.0.0.0:80".parse().unwrap()),
            "127.0.0.1:80".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            wake_addr("[::]:80".parse().unwrap()),
            "[::1]:80".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            wake_addr("127.0.0.2:80".parse().unwrap()),
            "127.0.0.2:80".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn bind_refuses_a_port_in_use() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = bind(a.local_addr().unwrap(), PortProto::Tcp).err().unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = bind(u.local_addr().unwrap(), PortProto::Udp).err().unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        // Every address, while one address holds the port.
        let port = u.local_addr().unwrap().port();
        let e = bind(SocketAddr::from(([0, 0, 0, 0], port)), PortProto::Udp)
            .err()
            .unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    }

    #[test]
    fn sync_names_say_the_protocol() {
        let k = Key {
            proto: PortProto::Udp,
            addr: "[::1]:53".parse().unwrap(),
            guest_port: 53,
        };
        assert_eq!(k.name(), "[::1]:53/udp");
    }

    /// What the fake agent was asked, `tcp PORT` or `udp PORT` each.
    #[cfg(unix)]
    type Requests = Arc<Mutex<Vec<String>>>;

    /// A stand-in for the agent on a Unix socket (the native endpoint):
    /// answers each `PortConnectUdp` stream by echoing datagram frames
    /// with `echo:` in front; `bad` is answered with a frame no datagram
    /// can have (65535 bytes announced). Each `PortConnect` stream is
    /// echoed after `tcp PORT:`. Counts the streams and records them.
    #[cfg(unix)]
    fn fake_agent(dir: &Path) -> (Endpoint, Arc<std::sync::atomic::AtomicUsize>, Requests) {
        use berth_protocol::frame::{read_frame, write_frame};
        use berth_protocol::{
            Hello, HelloReply, Request, RequestEnvelope, Response, ResponseEnvelope,
        };
        let path = dir.join("agent.sock");
        let l = UnixListener::bind(&path).unwrap();
        let streams = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&streams);
        let requests = Requests::default();
        let asked_all = Arc::clone(&requests);
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let count = Arc::clone(&count);
                let asked = Arc::clone(&asked_all);
                std::thread::spawn(move || {
                    let _: Hello = read_frame(&mut c).unwrap();
                    write_frame(
                        &mut c,
                        &HelloReply {
                            version: berth_protocol::PROTOCOL_VERSION,
                            error: None,
                            agent_version: "test".into(),
                        },
                    )
                    .unwrap();
                    let req: RequestEnvelope = read_frame(&mut c).unwrap();
                    let tcp = match req.request {
                        Request::PortConnectUdp { port } => format!("udp {port}"),
                        Request::PortConnect { port } => format!("tcp {port}"),
                        other => panic!("unexpected {other:?}"),
                    };
                    lock(&asked).push(tcp.clone());
                    count.fetch_add(1, Ordering::SeqCst);
                    write_frame(
                        &mut c,
                        &ResponseEnvelope {
                            id: req.id,
                            result: Ok(Response::Ready),
                        },
                    )
                    .unwrap();
                    if tcp.starts_with("tcp") {
                        // Echoes the stream with its port in front.
                        let _ = c.write_all(format!("{tcp}:").as_bytes());
                        let mut r = c.try_clone().unwrap();
                        let _ = std::io::copy(&mut r, &mut c);
                        let _ = c.shutdown(Shutdown::Write);
                        return;
                    }
                    let mut buf = vec![0u8; MAX_DATAGRAM];
                    while let Ok(Some(n)) = read_datagram(&mut c, &mut buf) {
                        if &buf[..n] == b"bad" {
                            let _ = c.write_all(&[0xff, 0xff, 1, 2, 3]);
                            continue;
                        }
                        let mut out = b"echo:".to_vec();
                        out.extend_from_slice(&buf[..n.min(MAX_DATAGRAM - 5)]);
                        if write_datagram(&mut c, &out).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (Endpoint::Unix(path), streams, requests)
    }

    #[cfg(unix)]
    fn client() -> UdpSocket {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        c
    }

    /// Sends `msg` until an answer comes (the first datagrams of a flow
    /// can race its set-up only in the hostile case); the answer.
    #[cfg(unix)]
    fn round(c: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        for _ in 0..40 {
            c.send_to(msg, to).unwrap();
            if let Ok((n, from)) = c.recv_from(&mut buf) {
                assert_eq!(from, to, "replies come from the published socket");
                return buf[..n].to_vec();
            }
        }
        panic!(
            "no answer to {:?}",
            String::from_utf8_lossy(&msg[..msg.len().min(20)])
        );
    }

    #[cfg(unix)]
    #[test]
    fn udp_flows_echo_per_peer_keep_boundaries_and_survive_a_hostile_guest() {
        let dir = tempfile::tempdir().unwrap();
        let (endpoint, streams, _) = fake_agent(dir.path());
        let (socket, local) = bind("127.0.0.1:0".parse().unwrap(), PortProto::Udp).unwrap();
        let served = Listening::serve(socket, local, 9, &endpoint);

        // Two peers, each answered on its own flow, boundaries kept.
        let (a, b) = (client(), client());
        assert_eq!(round(&a, local, b"one"), b"echo:one");
        assert_eq!(round(&b, local, b"two"), b"echo:two");
        assert_eq!(round(&a, local, b""), b"echo:");
        let big = vec![b'x'; MAX_DATAGRAM - 5];
        let got = round(&b, local, &big);
        assert_eq!(got.len(), MAX_DATAGRAM);
        assert!(got.starts_with(b"echo:x") && got.ends_with(b"xx"));
        assert_eq!(streams.load(Ordering::SeqCst), 2, "one stream per peer");

        // A frame no datagram can have ends that flow, nothing of it
        // reaches the peer, and the peer's next datagram gets a new flow.
        a.send_to(b"bad", local).unwrap();
        let mut buf = [0u8; 64];
        match a.recv_from(&mut buf) {
            Ok((n, _)) => panic!("relayed {:?}", &buf[..n]),
            Err(e) => assert!(matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )),
        }
        assert_eq!(round(&a, local, b"again"), b"echo:again");
        assert_eq!(streams.load(Ordering::SeqCst), 3);
        // b's flow was not disturbed.
        assert_eq!(round(&b, local, b"still"), b"echo:still");
        assert_eq!(streams.load(Ordering::SeqCst), 3);

        // Stopped: the port is free again once the thread is done.
        served.close();
        UdpSocket::bind(local).expect("port released after stop");
    }

    fn binding(
        ip: &str,
        host_port: u16,
        container_port: u16,
        proto: PortProto,
    ) -> berth_protocol::PortBinding {
        berth_protocol::PortBinding {
            host_ip: ip.into(),
            host_port,
            host_port_end: 0,
            container_port,
            proto,
        }
    }

    /// An own VM's run: its host ports forward TCP and UDP to the same
    /// port in the guest, which publishes them on its loopback; dropped,
    /// they are free again.
    #[cfg(unix)]
    #[test]
    fn run_ports_forward_to_the_guest_and_close_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (endpoint, _, asked) = fake_agent(dir.path());
        let ports = RunPorts::bind(&[
            binding("127.0.0.1", 0, 80, PortProto::Tcp),
            binding("127.0.0.1", 0, 53, PortProto::Udp),
        ])
        .unwrap();
        let addrs = ports.host_addrs();
        let (tcp, udp) = (addrs[0].1, addrs[1].1);
        assert_eq!(addrs[0].0, PortProto::Tcp);
        assert_eq!(addrs[1].0, PortProto::Udp);
        assert_eq!(
            ports.guest_bindings(),
            &[
                binding("127.0.0.1", tcp.port(), 80, PortProto::Tcp),
                binding("127.0.0.1", udp.port(), 53, PortProto::Udp),
            ]
        );
        let forwarding = ports.serve(&endpoint);

        let mut c = TcpStream::connect(tcp).unwrap();
        c.write_all(b"hello").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, format!("tcp {}:hello", tcp.port()));
        assert_eq!(round(&client(), udp, b"dns"), b"echo:dns");
        assert_eq!(
            *lock(&asked),
            vec![format!("tcp {}", tcp.port()), format!("udp {}", udp.port())]
        );

        drop(forwarding);
        TcpListener::bind(tcp).expect("tcp port released");
        UdpSocket::bind(udp).expect("udp port released");
    }

    /// A forwarded connection does not wait for the guest between the
    /// vsock handshake, `Hello`, `PortConnect` and the client's first
    /// bytes: a fake VMM muxer that reads all four before it answers
    /// anything still serves the connection (one round trip to the guest,
    /// not three). With a refusal from the guest the client is closed.
    #[cfg(unix)]
    #[test]
    fn a_connection_reaches_the_guest_without_waiting_for_answers() {
        use berth_protocol::frame::{read_frame, write_frame};
        use berth_protocol::{
            ApiError, ErrorKind, Hello, HelloReply, Request, RequestEnvelope, Response,
            ResponseEnvelope,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock.sock");
        let l = UnixListener::bind(&path).unwrap();
        let endpoint = Endpoint::VsockMux {
            path,
            port: berth_protocol::AGENT_VSOCK_PORT,
        };
        std::thread::spawn(move || {
            for (n, mut c) in l.incoming().flatten().enumerate() {
                // Reads everything before answering: a forwarder that
                // waits for an answer first is cut off here.
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while c.read_exact(&mut b).is_ok() && b[0] != b'\n' {
                    line.push(b[0]);
                }
                let Ok(_) = read_frame::<_, Hello>(&mut c) else {
                    continue;
                };
                let Ok(req) = read_frame::<_, RequestEnvelope>(&mut c) else {
                    continue;
                };
                let mut first = [0u8; 5];
                if c.read_exact(&mut first).is_err() {
                    continue;
                }
                assert_eq!(
                    line,
                    format!("CONNECT {}", berth_protocol::AGENT_VSOCK_PORT).as_bytes()
                );
                let Request::PortConnect { port } = req.request else {
                    panic!("unexpected {:?}", req.request);
                };
                c.write_all(b"OK 1025\n").unwrap();
                write_frame(
                    &mut c,
                    &HelloReply {
                        version: berth_protocol::PROTOCOL_VERSION,
                        error: None,
                        agent_version: "test".into(),
                    },
                )
                .unwrap();
                let result = if n == 0 {
                    Ok(Response::Ready)
                } else {
                    Err(ApiError::new(ErrorKind::NotFound, "no such port"))
                };
                let ok = result.is_ok();
                write_frame(&mut c, &ResponseEnvelope { id: req.id, result }).unwrap();
                if ok {
                    c.write_all(format!("tcp {port}:").as_bytes()).unwrap();
                    c.write_all(&first).unwrap();
                    let mut r = c.try_clone().unwrap();
                    let _ = std::io::copy(&mut r, &mut c);
                    let _ = c.shutdown(Shutdown::Write);
                }
            }
        });
        let ports = RunPorts::bind(&[binding("127.0.0.1", 0, 80, PortProto::Tcp)]).unwrap();
        let tcp = ports.host_addrs()[0].1;
        let forwarding = ports.serve(&endpoint);
        let mut c = TcpStream::connect(tcp).unwrap();
        c.write_all(b"hello, guest").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, format!("tcp {}:hello, guest", tcp.port()));

        // Refused in the guest: the client's connection ends, empty.
        let mut c = TcpStream::connect(tcp).unwrap();
        c.write_all(b"hello").unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        assert!(got.is_empty(), "{got:?}");
        drop(forwarding);
    }

    /// Docker's error for a port in use, and nothing of the run stays
    /// bound; every address: 0.0.0.0 (and :: where there is IPv6) on one
    /// port; an address that is not one is refused.
    #[test]
    fn run_ports_bind_all_or_none() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = held.local_addr().unwrap().port();
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = RunPorts::bind(&[
            binding("127.0.0.1", free, 80, PortProto::Tcp),
            binding("127.0.0.1", busy, 81, PortProto::Tcp),
        ])
        .err()
        .unwrap();
        assert!(e.in_use);
        assert_eq!(
            e.to_string(),
            format!("failed to bind host port for 127.0.0.1:{busy}:81/tcp: address already in use")
        );
        TcpListener::bind(("127.0.0.1", free)).expect("the first port was let go");

        let every = RunPorts::bind(&[binding("", 0, 80, PortProto::Tcp)]).unwrap();
        let addrs = every.host_addrs();
        let port = addrs[0].1.port();
        assert_eq!(addrs[0].1, SocketAddr::from(([0, 0, 0, 0], port)));
        if let Some((_, v6)) = addrs.get(1) {
            assert_eq!(
                *v6,
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))
            );
        }
        assert_eq!(
            every.guest_bindings(),
            &[binding("127.0.0.1", port, 80, PortProto::Tcp)]
        );

        let e = RunPorts::bind(&[binding("nope", 1, 80, PortProto::Tcp)])
            .err()
            .unwrap();
        assert!(!e.in_use);
        assert_eq!(
            e.to_string(),
            "failed to bind host port for nope:80/tcp: invalid host address"
        );
    }

    #[test]
    fn only_start_die_and_destroy_change_ports() {
        let ev = |a: &str| format!("{{\"Type\":\"container\",\"Action\":\"{a}\",\"id\":\"x\"}}\n");
        assert_eq!(changes_ports(ev("start").as_bytes()), Some("start"));
        assert_eq!(changes_ports(ev("die").as_bytes()), Some("die"));
        assert_eq!(changes_ports(ev("destroy").as_bytes()), Some("destroy"));
        assert_eq!(changes_ports(ev("attach").as_bytes()), None);
        assert_eq!(changes_ports(ev("restart").as_bytes()), None);
        // From the guest, so anything: a name that says "start", not JSON,
        // the wrong type.
        let named = "{\"Action\":\"rename\",\"Actor\":{\"Attributes\":{\"name\":\"start\"}}}";
        assert_eq!(changes_ports(named.as_bytes()), None);
        assert_eq!(changes_ports(b"\"start\"\n"), None);
        assert_eq!(changes_ports(b"{\"Action\":7}\n"), None);
        assert_eq!(changes_ports(&[0xff, b'{', b'\n']), None);
    }

    /// A forwarder serving a [`FakeEngine`] on its own thread, checking
    /// every 50 ms that its "VMM" lives; `before` sets the engine up
    /// before the forwarder first subscribes.
    #[cfg(unix)]
    struct Served {
        dir: tempfile::TempDir,
        eng: Arc<FakeEngine>,
        machine: PathBuf,
        alive: Arc<AtomicBool>,
        served: std::thread::JoinHandle<Result<()>>,
    }

    #[cfg(unix)]
    impl Served {
        fn start(before: impl FnOnce(&FakeEngine)) -> Served {
            let dir = tempfile::tempdir().unwrap();
            let (endpoint, eng) = FakeEngine::start(dir.path());
            before(&eng);
            let machine = dir.path().join("machine");
            std::fs::create_dir(&machine).unwrap();
            let alive = Arc::new(AtomicBool::new(true));
            let served = {
                let (m, a) = (machine.clone(), Arc::clone(&alive));
                let check = Duration::from_millis(50);
                std::thread::spawn(move || {
                    serve_with(&m, endpoint, move || a.load(Ordering::SeqCst), check, || {})
                })
            };
            Served {
                dir,
                eng,
                machine,
                alive,
                served,
            }
        }

        /// The VMM is gone: the forwarder must exit without an error. The
        /// folder is handed back, so what the forwarder left can be read.
        fn stop(self) -> tempfile::TempDir {
            self.alive.store(false, Ordering::SeqCst);
            self.served.join().unwrap().unwrap();
            self.dir
        }
    }

    /// A stand-in engine for `serve`: answers `PublishedPorts` with
    /// `ports` (counting the listings) and `Events` with a stream the test
    /// writes events to or ends. Ports in `on_subscribe` are published as
    /// the next subscription is answered, with no event of their own (a
    /// container that started while the forwarder was not subscribed).
    #[cfg(unix)]
    #[derive(Default)]
    struct FakeEngine {
        ports: Mutex<Vec<PublishedPort>>,
        on_subscribe: Mutex<Vec<PublishedPort>>,
        listings: std::sync::atomic::AtomicUsize,
        subscriptions: std::sync::atomic::AtomicUsize,
        stream: Mutex<Option<UnixStream>>,
    }

    #[cfg(unix)]
    impl FakeEngine {
        fn start(dir: &Path) -> (Endpoint, Arc<FakeEngine>) {
            use berth_protocol::frame::{read_frame, write_frame};
            use berth_protocol::{
                Hello, HelloReply, Request, RequestEnvelope, Response, ResponseEnvelope,
            };
            let path = dir.join("engine.sock");
            let l = UnixListener::bind(&path).unwrap();
            let eng = Arc::new(FakeEngine::default());
            let me = Arc::clone(&eng);
            std::thread::spawn(move || {
                for mut c in l.incoming().flatten() {
                    let eng = Arc::clone(&me);
                    std::thread::spawn(move || {
                        let Ok(Hello { .. }) = read_frame(&mut c) else {
                            return;
                        };
                        let reply = HelloReply {
                            version: berth_protocol::PROTOCOL_VERSION,
                            error: None,
                            agent_version: "test".into(),
                        };
                        if write_frame(&mut c, &reply).is_err() {
                            return;
                        }
                        let Ok(req) = read_frame::<_, RequestEnvelope>(&mut c) else {
                            return;
                        };
                        let result = match req.request {
                            Request::PublishedPorts => {
                                eng.listings.fetch_add(1, Ordering::SeqCst);
                                Ok(Response::Ports(lock(&eng.ports).clone()))
                            }
                            Request::Events(_) => {
                                let appeared = std::mem::take(&mut *lock(&eng.on_subscribe));
                                lock(&eng.ports).extend(appeared);
                                *lock(&eng.stream) = c.try_clone().ok();
                                eng.subscriptions.fetch_add(1, Ordering::SeqCst);
                                Ok(Response::Ready)
                            }
                            // PortConnect of a test's connection: refused.
                            _ => return,
                        };
                        let _ = write_frame(&mut c, &ResponseEnvelope { id: req.id, result });
                    });
                }
            });
            (Endpoint::Unix(path), eng)
        }

        fn set_ports(&self, ports: &[u16]) {
            *lock(&self.ports) = ports.iter().map(|p| published(*p)).collect();
        }

        fn listings(&self) -> usize {
            self.listings.load(Ordering::SeqCst)
        }

        fn subscriptions(&self) -> usize {
            self.subscriptions.load(Ordering::SeqCst)
        }

        /// Sends one container event with `action` on the current stream.
        fn event(&self, action: &str) {
            let line = format!(
                "{{\"status\":\"{action}\",\"id\":\"c1\",\"Type\":\"container\",\"Action\":\"{action}\",\"Actor\":{{\"ID\":\"c1\",\"Attributes\":{{\"name\":\"web\"}}}}}}\n"
            );
            let mut s = lock(&self.stream);
            s.as_mut().unwrap().write_all(line.as_bytes()).unwrap();
        }

        /// Ends the current event stream (a machine restart, an agent gone).
        fn end_stream(&self) {
            if let Some(s) = lock(&self.stream).take() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    #[cfg(unix)]
    fn published(port: u16) -> PublishedPort {
        PublishedPort {
            container_port: 80,
            proto: PortProto::Tcp,
            host_ip: "127.0.0.1".into(),
            host_port: port,
        }
    }

    #[cfg(unix)]
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[cfg(unix)]
    fn listening(port: u16) -> bool {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    /// Waits (bounded) until `f` holds.
    #[cfg(unix)]
    #[track_caller]
    fn eventually(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "{what}: not within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The forwarder catches up after each subscription (a container that
    /// came while it was not subscribed, also in the gap of a dropped
    /// stream), follows `start` and `die`, and asks the engine nothing
    /// while the stream is quiet.
    #[cfg(unix)]
    #[test]
    fn serve_catches_up_on_each_subscription_and_is_silent_while_idle() {
        let (p1, p2, p3) = (free_port(), free_port(), free_port());
        // Started by another boot's restart policy just as the forwarder
        // subscribes: no event of its own comes.
        let f = Served::start(|eng| lock(&eng.on_subscribe).push(published(p1)));
        let eng = &f.eng;
        eventually("the port of a container started at subscription", || {
            listening(p1)
        });
        assert_eq!(eng.subscriptions(), 1);

        // Quiet: many alive checks, not one listing.
        let n = eng.listings();
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(eng.listings(), n, "the engine was asked while idle");

        // An event: listed and published.
        eng.set_ports(&[p1, p2]);
        eng.event("start");
        eventually("the port after a start event", || listening(p2));
        // Events that change no port ask nothing.
        let n = eng.listings();
        eng.event("attach");
        eng.event("exec_start: sh");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(eng.listings(), n);

        // The stream drops; in the gap p1's container goes and p3's comes,
        // with no event: the next subscription catches up.
        eng.set_ports(&[p2, p3]);
        eng.end_stream();
        eventually("the port of a container started in the gap", || {
            listening(p3)
        });
        eventually("the port of a container gone in the gap", || !listening(p1));
        assert_eq!(eng.subscriptions(), 2);

        // die: unpublished.
        eng.set_ports(&[p3]);
        eng.event("die");
        eventually("the port after a die event", || !listening(p2));
        assert!(listening(p3));

        // The VMM is gone: it exits, and takes its files along.
        let (sock, pid) = paths(&f.machine);
        let _dir = f.stop();
        assert!(!sock.exists() && !pid.exists());
    }

    /// A guest that sends an endless event line gets its stream dropped at
    /// the cap (the forwarder subscribes again), not a host buffer that
    /// grows without end.
    #[cfg(unix)]
    #[test]
    fn an_endless_event_line_ends_the_stream() {
        let f = Served::start(|_| {});
        let eng = &f.eng;
        eventually("subscribed", || eng.subscriptions() == 1);
        let mut s = lock(&eng.stream).take().unwrap();
        let writer = std::thread::spawn(move || {
            let chunk = vec![b'x'; 64 * 1024];
            // 4 MiB with no newline; the forwarder lets go after 1 MiB.
            for _ in 0..64 {
                if s.write_all(&chunk).is_err() {
                    return true;
                }
            }
            false
        });
        eventually("a new subscription after the endless line", || {
            eng.subscriptions() == 2
        });
        assert!(writer.join().unwrap(), "the forwarder read all 4 MiB");
        let _dir = f.stop();
    }

    /// A forwarder that exits leaves the files of the one started after it
    /// (the machine's next boot) alone.
    #[cfg(unix)]
    #[test]
    fn an_exiting_forwarder_keeps_its_successors_files() {
        let f = Served::start(|_| {});
        let eng = &f.eng;
        eventually("subscribed", || eng.subscriptions() == 1);
        let (_, pid) = paths(&f.machine);
        std::fs::write(&pid, "4242424").unwrap();
        let _dir = f.stop();
        assert_eq!(std::fs::read_to_string(&pid).unwrap(), "4242424");
    }
}
