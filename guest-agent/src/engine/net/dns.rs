//! docker's embedded DNS server: the one containers on user-defined networks
//! reach at 127.0.0.11.
//!
//! Names the [`Resolver`] knows (containers, aliases) are answered here with
//! A records; everything else is forwarded verbatim to the upstream servers
//! (the host's), and their reply relayed. [`answer`] is the pure decision for
//! one query; [`spawn`] serves UDP and TCP on threads.
//!
//! The 12-byte header and the question are read by hand, bounds-checked:
//! the header check mirrors what docker's DNS library (miekg/dns) accepts
//! by default (responses and short packets are dropped, opcodes other than
//! QUERY get NOTIMP, a message must carry exactly one question and at most
//! one answer, one authority and two additional records, else FORMERR),
//! which also keeps hostile counts away from any allocation; the question
//! must be plain labels (a compression pointer there could only point into
//! the header). `simple-dns` then checks the whole message (the other
//! records, compression pointers, EDNS option framing) and reads the EDNS
//! UDP size. Replies are written by hand: the header, the question echoed
//! byte for byte, then the answers, which point back at the question's
//! name.

// The shim wires these in (engine/shim.rs); until then nothing calls them.

use super::sockets::{is_fatal, retry, Permit};
use simple_dns::{Packet, SimpleDnsError};
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::ops::Range;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the resolver knows about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A container or alias on the network, with its IPv4 addresses (an
    /// empty list answers NOERROR with no records).
    Found(Vec<Ipv4Addr>),
    /// Not a name of the network: forward it.
    NotOurs,
}

/// The network's names (containers, aliases, links), as seen by one
/// container.
pub trait Resolver: Send + Sync + 'static {
    /// `name` is lowercase, without a trailing dot. Addresses are answered
    /// in the order given (docker shuffles them; do that here if wanted).
    fn lookup(&self, name: &str) -> Lookup;
}

/// What to do with one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes back to the client.
    Reply(Vec<u8>),
    /// Not ours: forward the query, unchanged, to the upstream servers.
    Forward,
    /// Send nothing (a response, or too short to carry an id).
    Drop,
}

/// TTL of local answers, as docker's.
const TTL: u32 = 600;
/// Reply size over UDP without EDNS (RFC 1035).
const UDP_MIN: usize = 512;
/// Largest DNS message (the TCP length prefix is 16 bits).
const MAX_MESSAGE: usize = 65535;
const HEADER_LEN: usize = 12;
/// One A record whose name points at the question: pointer, type, class,
/// TTL, length, address.
const A_RECORD_LEN: usize = 2 + 2 + 2 + 4 + 2 + 4;
/// resolv.conf nameservers used, as glibc (MAXNS) and docker.
const MAX_UPSTREAMS: usize = 3;

// Header flag bits.
const QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const TC: u16 = 0x0200;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const Z: u16 = 0x0040;
const CD: u16 = 0x0010;

// Response codes.
const NOERROR: u16 = 0;
const FORMERR: u16 = 1;
const SERVFAIL: u16 = 2;
const NOTIMP: u16 = 4;
const REFUSED: u16 = 5;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

#[cfg(test)]
/// Decides what to do with one query received over UDP: answer it (with a
/// reply no larger than 512 bytes, or the client's EDNS size, truncated with
/// TC set when the addresses do not fit), forward it, or drop it. Never
/// panics, whatever the bytes.
pub fn answer(query: &[u8], resolver: &dyn Resolver) -> Action {
    respond(query, resolver, Transport::Udp)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

fn respond(query: &[u8], resolver: &dyn Resolver, transport: Transport) -> Action {
    let Some(header) = Header::parse(query) else {
        return Action::Drop;
    };
    if header.flags & QR != 0 {
        // Answering responses could make two servers talk forever.
        return Action::Drop;
    }
    if header.flags & OPCODE_MASK != 0 {
        return Action::Reply(header.error_reply(NOTIMP));
    }
    if header.questions != 1
        || header.answers > 1
        || header.authorities > 1
        || header.additionals > 2
    {
        return Action::Reply(header.error_reply(FORMERR));
    }
    let Some(span) = question_span(query) else {
        return Action::Reply(header.error_reply(FORMERR));
    };

    // simple-dns rejects the reserved Z bit; miekg/dns ignores it.
    let cleared;
    let bytes = if header.flags & Z != 0 {
        cleared = with_flags(query, header.flags & !Z);
        &cleared[..]
    } else {
        query
    };
    // simple-dns checks the whole message (the other records, EDNS option
    // framing, compression pointers) and reads the EDNS size.
    let packet = match Packet::parse(bytes) {
        Ok(packet) => Some(packet),
        // Types and classes it does not model are still valid DNS: the
        // question, checked by hand above, is all that is needed.
        Err(
            SimpleDnsError::InvalidQType(_)
            | SimpleDnsError::InvalidQClass(_)
            | SimpleDnsError::InvalidClass(_),
        ) => None,
        Err(_) => return Action::Reply(header.error_reply(FORMERR)),
    };

    let (qtype, qclass) = question_type_class(query, &span);
    if qclass != CLASS_IN {
        return Action::Forward;
    }
    let Some(name) = lookup_name(question_labels(query)) else {
        return Action::Forward;
    };
    let addrs = match resolver.lookup(&name) {
        Lookup::NotOurs => return Action::Forward,
        // AAAA and other types for a known name: NOERROR, no records.
        Lookup::Found(addrs) if qtype == TYPE_A => addrs,
        Lookup::Found(_) => Vec::new(),
    };

    let limit = match transport {
        Transport::Tcp => MAX_MESSAGE,
        Transport::Udp => packet
            .as_ref()
            .and_then(|p| p.opt())
            .map_or(UDP_MIN, |opt| usize::from(opt.udp_packet_size))
            .max(UDP_MIN),
    };
    Action::Reply(local_reply(query, &header, &span, &addrs, limit))
}

/// The fixed 12-byte header, read by hand so that hostile counts and
/// responses are turned away before any parsing.
#[derive(Debug, Clone, Copy)]
struct Header {
    id: u16,
    flags: u16,
    questions: u16,
    answers: u16,
    authorities: u16,
    additionals: u16,
}

impl Header {
    fn parse(bytes: &[u8]) -> Option<Header> {
        let h = bytes.get(..HEADER_LEN)?;
        let word = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Some(Header {
            id: word(0),
            flags: word(2),
            questions: word(4),
            answers: word(6),
            authorities: word(8),
            additionals: word(10),
        })
    }

    /// A header-only error reply, as miekg/dns sends for rejected messages:
    /// the id, RD and CD kept; the opcode kept for NOTIMP.
    fn error_reply(&self, rcode: u16) -> Vec<u8> {
        let opcode = if rcode == NOTIMP {
            self.flags & OPCODE_MASK
        } else {
            0
        };
        let flags = QR | opcode | (self.flags & (RD | CD)) | rcode;
        reply_header(self.id, flags, 0, 0).to_vec()
    }

    /// Flags of a reply to this query (miekg's `SetReply`: RD and CD
    /// copied, opcode QUERY).
    fn reply_flags(&self, rcode: u16) -> u16 {
        QR | (self.flags & (RD | CD)) | rcode
    }
}

fn reply_header(id: u16, flags: u16, questions: u16, answers: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..2].copy_from_slice(&id.to_be_bytes());
    h[2..4].copy_from_slice(&flags.to_be_bytes());
    h[4..6].copy_from_slice(&questions.to_be_bytes());
    h[6..8].copy_from_slice(&answers.to_be_bytes());
    h
}

fn with_flags(message: &[u8], flags: u16) -> Vec<u8> {
    let mut copy = message.to_vec();
    if let Some(f) = copy.get_mut(2..4) {
        f.copy_from_slice(&flags.to_be_bytes());
    }
    copy
}

/// Where the (first) question sits: its name as plain labels from offset
/// 12, then type and class. A compression pointer there can only point into
/// the header, so it is refused, which also lets replies echo the question
/// verbatim and point their answers at offset 12.
fn question_span(message: &[u8]) -> Option<Range<usize>> {
    let mut pos = HEADER_LEN;
    loop {
        let len = usize::from(*message.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        pos += len;
        // With the root label to come, longer than 255 bytes.
        if pos - HEADER_LEN >= 255 {
            return None;
        }
    }
    let end = pos + 4;
    (end <= message.len()).then_some(HEADER_LEN..end)
}

/// The labels of the question's name, which [`question_span`] found to be
/// plain labels within the message.
fn question_labels(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = HEADER_LEN;
    std::iter::from_fn(move || {
        let len = usize::from(*message.get(pos)?);
        if len == 0 || len & 0xC0 != 0 {
            return None;
        }
        let label = message.get(pos + 1..pos + 1 + len)?;
        pos += 1 + len;
        Some(label)
    })
}

/// QTYPE and QCLASS, raw (simple-dns folds the mDNS unicast bit into the
/// class).
fn question_type_class(message: &[u8], span: &Range<usize>) -> (u16, u16) {
    let word = |i: usize| {
        message
            .get(i..i + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    (word(span.end - 4), word(span.end - 2))
}

/// The name as the resolver wants it, or `None` for names that cannot be a
/// container's (the root, labels with dots, spaces or non-ASCII bytes).
fn lookup_name<'a>(labels: impl Iterator<Item = &'a [u8]>) -> Option<String> {
    let mut name = String::new();
    for label in labels {
        if label.is_empty() || !label.iter().all(|b| b.is_ascii_graphic() && *b != b'.') {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
    }
    (!name.is_empty()).then_some(name)
}

/// NOERROR with the question echoed and one A record per address, as many
/// as fit in `limit` (TC set when some were left out).
fn local_reply(
    query: &[u8],
    header: &Header,
    span: &Range<usize>,
    addrs: &[Ipv4Addr],
    limit: usize,
) -> Vec<u8> {
    let question = &query[span.clone()];
    let base = HEADER_LEN + question.len();
    let fit = limit.saturating_sub(base) / A_RECORD_LEN;
    let count = addrs.len().min(fit).min(usize::from(u16::MAX));
    let mut flags = header.reply_flags(NOERROR) | RA;
    if count < addrs.len() {
        flags |= TC;
    }
    let mut out = Vec::with_capacity(base + count * A_RECORD_LEN);
    out.extend_from_slice(&reply_header(header.id, flags, 1, count as u16));
    out.extend_from_slice(question);
    for addr in &addrs[..count] {
        out.extend_from_slice(&[0xC0, HEADER_LEN as u8]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&addr.octets());
    }
    out
}

/// SERVFAIL for a query that could not be forwarded (docker's
/// `SetRcode(query, SERVFAIL)`: question echoed, no RA). `None` when the
/// query has no usable header or question, which [`respond`] never forwards.
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let header = Header::parse(query)?;
    let span = question_span(query)?;
    let mut out = reply_header(header.id, header.reply_flags(SERVFAIL), 1, 0).to_vec();
    out.extend_from_slice(&query[span]);
    Some(out)
}

/// An upstream reply too large for the client's UDP size, cut down to its
/// header and question with TC set so that the client retries over TCP.
fn truncated(query: &[u8], reply: &[u8]) -> Option<Vec<u8>> {
    let reply_header_fields = Header::parse(reply)?;
    let span = question_span(query)?;
    let flags = reply_header_fields.flags | TC;
    let mut out = reply_header(reply_header_fields.id, flags, 1, 0).to_vec();
    out.extend_from_slice(&query[span]);
    Some(out)
}

/// Largest relayed reply the client of a forwarded UDP query takes: 512
/// without EDNS, else its EDNS size. When the additional records cannot be
/// read (types simple-dns does not model), the upstream, which got the
/// query verbatim, is trusted to have sized its reply.
fn relay_limit(query: &[u8]) -> usize {
    let Some(header) = Header::parse(query) else {
        return UDP_MIN;
    };
    if header.additionals == 0 {
        return UDP_MIN;
    }
    let bytes = with_flags(query, header.flags & !Z);
    match Packet::parse(&bytes) {
        Ok(packet) => packet
            .opt()
            .map_or(UDP_MIN, |opt| usize::from(opt.udp_packet_size))
            .max(UDP_MIN),
        Err(_) => MAX_MESSAGE,
    }
}

/// Whether `reply` answers `query`: a response with the same id and, when
/// it carries a question, the same one.
fn is_reply_to(query: &[u8], reply: &[u8]) -> bool {
    let (Some(q), Some(r)) = (Header::parse(query), Header::parse(reply)) else {
        return false;
    };
    if r.id != q.id || r.flags & QR == 0 {
        return false;
    }
    if r.questions == 0 {
        return true;
    }
    match (question_span(query), question_span(reply)) {
        (Some(qs), Some(rs)) => query[qs].eq_ignore_ascii_case(&reply[rs]),
        _ => false,
    }
}

fn rcode(message: &[u8]) -> u16 {
    Header::parse(message).map_or(SERVFAIL, |h| h.flags & 0x000F)
}

/// The nameservers of a resolv.conf (`nameserver ADDR` lines, port 53),
/// the first three as glibc uses; IPv6 with a `%zone` too. Comments,
/// options and unparsable lines are skipped.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            parse_nameserver(words.next()?)
        })
        .take(MAX_UPSTREAMS)
        .collect()
}

fn parse_nameserver(addr: &str) -> Option<SocketAddr> {
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    let (ip, zone) = addr.split_once('%')?;
    let ip: Ipv6Addr = ip.parse().ok()?;
    let scope = match zone.parse::<u32>() {
        Ok(index) => index,
        Err(_) => interface_index(zone)?,
    };
    Some(SocketAddr::V6(SocketAddrV6::new(ip, 53, 0, scope)))
}

fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the
    // call; if_nametoindex only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Serves DNS on `udp` (and `tcp`, when given) on threads and returns at
/// once. Queries that are not ours go to `upstreams` in order, each given
/// 2 s, over the protocol the client used; a SERVFAIL or REFUSED moves on
/// to the next one, as docker does; none left: SERVFAIL. At most 100
/// forwarded queries are in flight (beyond that: SERVFAIL).
///
/// The forwarding sockets are opened by the serving threads, which start in
/// the network namespace of the calling thread: create the listening
/// sockets in the container's namespace and call this from the host's, and
/// host-loopback upstreams (127.0.0.53) work.
pub fn spawn(
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    resolver: Arc<dyn Resolver>,
    upstreams: Vec<SocketAddr>,
) -> io::Result<()> {
    spawn_with(udp, tcp, resolver, upstreams, Limits::default())
}

/// Timeouts and bounds of the server (tests shorten them).
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// How long one upstream gets to answer.
    upstream_timeout: Duration,
    /// Forwarded queries in flight, UDP and TCP together.
    max_forwards: usize,
    /// TCP connections served at once.
    max_tcp_connections: usize,
    /// How long a TCP connection may wait for (or dribble) a query.
    tcp_idle: Duration,
    /// Queries answered on one TCP connection (as miekg/dns).
    max_tcp_queries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            upstream_timeout: Duration::from_secs(2),
            max_forwards: 100,
            max_tcp_connections: 64,
            tcp_idle: Duration::from_secs(8),
            max_tcp_queries: 128,
        }
    }
}

struct Server {
    resolver: Arc<dyn Resolver>,
    upstreams: Vec<SocketAddr>,
    limits: Limits,
    forwards: Arc<AtomicUsize>,
    tcp_connections: Arc<AtomicUsize>,
}

/// Stack of the server's threads: their buffers live on the heap.
const THREAD_STACK: usize = 256 * 1024;

fn spawn_with(
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    resolver: Arc<dyn Resolver>,
    upstreams: Vec<SocketAddr>,
    limits: Limits,
) -> io::Result<()> {
    udp.set_nonblocking(false)?;
    udp.set_read_timeout(None)?;
    if let Some(tcp) = &tcp {
        tcp.set_nonblocking(false)?;
    }
    let server = Arc::new(Server {
        resolver,
        upstreams,
        limits,
        forwards: Arc::new(AtomicUsize::new(0)),
        tcp_connections: Arc::new(AtomicUsize::new(0)),
    });
    if let Some(tcp) = tcp {
        let server = server.clone();
        std::thread::Builder::new()
            .name("dns-tcp".into())
            .stack_size(THREAD_STACK)
            .spawn(move || serve_tcp(server, tcp))?;
    }
    let udp = Arc::new(udp);
    std::thread::Builder::new()
        .name("dns-udp".into())
        .stack_size(THREAD_STACK)
        .spawn(move || serve_udp(server, udp))?;
    Ok(())
}

fn serve_udp(server: Arc<Server>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (len, client) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_fatal(&e) => {
                log::warn!("embedded DNS (udp) stops: {e}");
                return;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let query = &buf[..len];
        match respond(query, &*server.resolver, Transport::Udp) {
            Action::Reply(reply) => {
                let _ = retry(|| socket.send_to(&reply, client));
            }
            Action::Drop => {}
            Action::Forward => forward_udp(&server, &socket, query.to_vec(), client),
        }
    }
}

fn forward_udp(server: &Arc<Server>, socket: &Arc<UdpSocket>, query: Vec<u8>, client: SocketAddr) {
    let fail = |query: &[u8]| {
        if let Some(reply) = servfail(query) {
            let _ = retry(|| socket.send_to(&reply, client));
        }
    };
    if server.upstreams.is_empty() {
        return fail(&query);
    }
    let Some(permit) = Permit::acquire(&server.forwards, server.limits.max_forwards) else {
        return fail(&query);
    };
    let (thread_server, thread_socket) = (server.clone(), socket.clone());
    let spawned = std::thread::Builder::new()
        .name("dns-forward".into())
        .stack_size(THREAD_STACK)
        .spawn({
            let query = query.clone();
            move || {
                let _permit = permit;
                let reply = match thread_server.exchange(&query, Transport::Udp) {
                    Some(reply) if reply.len() > relay_limit(&query) => truncated(&query, &reply),
                    Some(reply) => Some(reply),
                    None => servfail(&query),
                };
                if let Some(reply) = reply {
                    let _ = retry(|| thread_socket.send_to(&reply, client));
                }
            }
        });
    if spawned.is_err() {
        fail(&query);
    }
}

fn serve_tcp(server: Arc<Server>, listener: TcpListener) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_fatal(&e) => {
                log::warn!("embedded DNS (tcp) stops: {e}");
                return;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(permit) =
            Permit::acquire(&server.tcp_connections, server.limits.max_tcp_connections)
        else {
            continue; // dropped: closed at once
        };
        let server = server.clone();
        let _ = std::thread::Builder::new()
            .name("dns-tcp-conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let _permit = permit;
                let _ = server.serve_connection(stream);
            });
    }
}

impl Server {
    /// Length-framed queries, one after the other, until the client closes,
    /// idles or sends something unanswerable.
    fn serve_connection(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_write_timeout(Some(self.limits.upstream_timeout))?;
        for _ in 0..self.limits.max_tcp_queries {
            let deadline = Instant::now() + self.limits.tcp_idle;
            let mut prefix = [0u8; 2];
            match read_exact_by(&mut stream, &mut prefix, deadline) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            let len = usize::from(u16::from_be_bytes(prefix));
            if len == 0 {
                return Ok(());
            }
            let mut query = vec![0u8; len];
            read_exact_by(&mut stream, &mut query, deadline)?;
            let reply = match respond(&query, &*self.resolver, Transport::Tcp) {
                Action::Reply(reply) => reply,
                Action::Drop => return Ok(()),
                Action::Forward => {
                    let permit = Permit::acquire(&self.forwards, self.limits.max_forwards);
                    let reply = permit.and_then(|_permit| self.exchange(&query, Transport::Tcp));
                    match reply.or_else(|| servfail(&query)) {
                        Some(reply) => reply,
                        None => return Ok(()),
                    }
                }
            };
            stream.write_all(&framed(&reply))?;
        }
        Ok(())
    }

    /// Asks the upstreams in turn; the first reply that is not SERVFAIL or
    /// REFUSED wins.
    fn exchange(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let timeout = self.limits.upstream_timeout;
        self.upstreams.iter().find_map(|upstream| {
            let reply = match transport {
                Transport::Udp => exchange_udp(*upstream, query, timeout),
                Transport::Tcp => exchange_tcp(*upstream, query, timeout),
            }
            .ok()??;
            (!matches!(rcode(&reply), SERVFAIL | REFUSED)).then_some(reply)
        })
    }
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + message.len());
    out.extend_from_slice(&(message.len().min(MAX_MESSAGE) as u16).to_be_bytes());
    out.extend_from_slice(&message[..message.len().min(MAX_MESSAGE)]);
    out
}

fn unspecified_for(addr: &SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// One query to one upstream over UDP, from a fresh socket connected to it
/// (so only its datagrams arrive); datagrams that do not answer the query
/// are ignored until the deadline. `Ok(None)`: no answer in time.
fn exchange_udp(
    upstream: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + timeout;
    let socket = UdpSocket::bind(unspecified_for(&upstream))?;
    socket.connect(upstream)?;
    retry(|| socket.send(query))?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket.set_read_timeout(Some(left))?;
        match socket.recv(&mut buf) {
            Ok(len) if is_reply_to(query, &buf[..len]) => return Ok(Some(buf[..len].to_vec())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
}

/// One query to one upstream over TCP, all within `timeout`.
fn exchange_tcp(
    upstream: SocketAddr,
    query: &[u8],
    timeout: Duration,
) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&upstream, timeout)?;
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Ok(None);
    }
    stream.set_write_timeout(Some(left))?;
    stream.write_all(&framed(query))?;
    let mut prefix = [0u8; 2];
    read_exact_by(&mut stream, &mut prefix, deadline)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    read_exact_by(&mut stream, &mut reply, deadline)?;
    Ok(is_reply_to(query, &reply).then_some(reply))
}

/// `read_exact` that gives up at `deadline` (TimedOut), however slowly the
/// peer dribbles bytes.
fn read_exact_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[done..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::rdata::RData;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A network with a few names; remembers what it was asked.
    struct Names {
        names: HashMap<&'static str, Vec<Ipv4Addr>>,
        asked: Mutex<Vec<String>>,
    }

    impl Names {
        fn new() -> Arc<Names> {
            let many = (0..100).map(|i| Ipv4Addr::new(10, 0, 1, i)).collect();
            Arc::new(Names {
                names: HashMap::from([
                    ("web", vec![Ipv4Addr::new(172, 18, 0, 2)]),
                    (
                        "db",
                        vec![Ipv4Addr::new(172, 18, 0, 3), Ipv4Addr::new(172, 18, 0, 4)],
                    ),
                    ("web.net1", vec![Ipv4Addr::new(172, 18, 0, 2)]),
                    ("many", many),
                    ("nothing", vec![]),
                ]),
                asked: Mutex::new(Vec::new()),
            })
        }

        fn asked(&self) -> Vec<String> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl Resolver for Names {
        fn lookup(&self, name: &str) -> Lookup {
            self.asked.lock().unwrap().push(name.to_string());
            match self.names.get(name) {
                Some(addrs) => Lookup::Found(addrs.clone()),
                None => Lookup::NotOurs,
            }
        }
    }

    const AAAA: u16 = 28;
    const MX: u16 = 15;
    const TXT: u16 = 16;

    /// A query as a stub resolver sends it (RD set).
    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = reply_header(id, RD, 1, 0).to_vec();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    /// The same with an EDNS OPT record advertising `size`.
    fn query_edns(id: u16, name: &str, qtype: u16, size: u16) -> Vec<u8> {
        let mut q = query(id, name, qtype);
        q[11] = 1;
        q.push(0);
        q.extend_from_slice(&41u16.to_be_bytes());
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        q
    }

    fn reply_of(action: Action) -> Vec<u8> {
        match action {
            Action::Reply(reply) => reply,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn flags(message: &[u8]) -> u16 {
        Header::parse(message).unwrap().flags
    }

    fn a_records(reply: &[u8]) -> Vec<Ipv4Addr> {
        Packet::parse(reply)
            .unwrap()
            .answers
            .iter()
            .map(|rr| match &rr.rdata {
                RData::A(a) => Ipv4Addr::from(a.address),
                other => panic!("not an A record: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn known_name_a_is_answered_like_docker() {
        let names = Names::new();
        let q = query(0x4242, "web", TYPE_A);
        let reply = reply_of(answer(&q, &*names));
        assert_eq!(&reply[..2], &[0x42, 0x42]);
        let f = flags(&reply);
        assert_eq!(f & QR, QR);
        assert_eq!(f & RD, RD, "RD copied");
        assert_eq!(f & RA, RA, "RA set");
        assert_eq!(f & 0x0400, 0, "not authoritative");
        assert_eq!(f & TC, 0);
        assert_eq!(f & 0x000F, NOERROR);
        assert_eq!(&reply[12..q.len()], &q[12..], "question echoed");
        let packet = Packet::parse(&reply).unwrap();
        assert_eq!(packet.questions.len(), 1);
        assert_eq!(packet.answers.len(), 1);
        assert_eq!(packet.answers[0].ttl, 600);
        assert_eq!(packet.answers[0].name.to_string(), "web");
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(172, 18, 0, 2)]);

        let q = query(7, "db", TYPE_A);
        let reply = reply_of(answer(&q, &*names));
        assert_eq!(
            a_records(&reply),
            vec![Ipv4Addr::new(172, 18, 0, 3), Ipv4Addr::new(172, 18, 0, 4)]
        );
    }

    #[test]
    fn known_name_without_rd_gets_no_rd() {
        let names = Names::new();
        let mut q = query(1, "web", TYPE_A);
        q[2] = 0;
        let reply = reply_of(answer(&q, &*names));
        assert_eq!(flags(&reply) & RD, 0);
        assert_eq!(flags(&reply) & RA, RA);
    }

    #[test]
    fn known_name_other_types_are_noerror_empty() {
        let names = Names::new();
        for qtype in [AAAA, MX, TXT] {
            let q = query(9, "web", qtype);
            let reply = reply_of(answer(&q, &*names));
            assert_eq!(flags(&reply) & 0x000F, NOERROR, "type {qtype}");
            assert_eq!(&reply[4..8], &[0, 1, 0, 0], "one question, no answer");
            assert_eq!(&reply[12..], &q[12..]);
        }
        // A type simple-dns does not model, for a known name.
        let q = query(9, "web", 65280);
        let reply = reply_of(answer(&q, &*names));
        assert_eq!(flags(&reply) & 0x000F, NOERROR);
        assert_eq!(&reply[4..8], &[0, 1, 0, 0]);
        assert_eq!(&reply[12..], &q[12..]);
        // A known name without addresses.
        let reply = reply_of(answer(&query(9, "nothing", TYPE_A), &*names));
        assert_eq!(flags(&reply) & 0x000F, NOERROR);
        assert!(a_records(&reply).is_empty());
    }

    #[test]
    fn names_are_case_insensitive_without_trailing_dot() {
        let names = Names::new();
        let q = query(3, "WeB.NeT1.", TYPE_A);
        let reply = reply_of(answer(&q, &*names));
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(172, 18, 0, 2)]);
        assert_eq!(names.asked(), vec!["web.net1"]);
        // The question keeps the client's case.
        assert_eq!(&reply[12..q.len()], &q[12..]);
    }

    #[test]
    fn unknown_names_and_foreign_classes_are_forwarded() {
        let names = Names::new();
        assert_eq!(
            answer(&query(1, "example.com", TYPE_A), &*names),
            Action::Forward
        );
        assert_eq!(
            answer(&query(1, "example.com", AAAA), &*names),
            Action::Forward
        );
        // CHAOS class, and the mDNS unicast bit, are not ours.
        for class in [3u16, 0x8001] {
            let mut q = query(1, "web", TYPE_A);
            let at = q.len() - 2;
            q[at..].copy_from_slice(&class.to_be_bytes());
            assert_eq!(answer(&q, &*names), Action::Forward, "class {class:#x}");
        }
        // A type simple-dns does not know, for a name that is not ours.
        assert_eq!(
            answer(&query(1, "example.com", 65280), &*names),
            Action::Forward
        );
        // The root, and names that cannot be a container's.
        assert_eq!(answer(&query(1, "", TYPE_A), &*names), Action::Forward);
        let mut q = query(1, "w b", TYPE_A);
        q[13] = b' ';
        assert_eq!(answer(&q, &*names), Action::Forward);
        assert!(!names.asked().iter().any(|n| n.contains(' ')));
    }

    #[test]
    fn udp_replies_fit_512_or_the_edns_size() {
        let names = Names::new();
        let q = query(5, "many", TYPE_A);
        let reply = reply_of(answer(&q, &*names));
        assert!(reply.len() <= 512);
        assert_eq!(flags(&reply) & TC, TC);
        let fit = (512 - q.len()) / A_RECORD_LEN;
        assert_eq!(a_records(&reply).len(), fit);

        let q = query_edns(5, "many", TYPE_A, 4096);
        let reply = reply_of(answer(&q, &*names));
        assert_eq!(flags(&reply) & TC, 0);
        assert_eq!(a_records(&reply).len(), 100);

        // An EDNS size below 512 still gets 512.
        let q = query_edns(5, "many", TYPE_A, 100);
        let reply = reply_of(answer(&q, &*names));
        assert!(reply.len() <= 512 && reply.len() > 400);

        let q = query(5, "many", TYPE_A);
        let reply = reply_of(respond(&q, &*names, Transport::Tcp));
        assert_eq!(flags(&reply) & TC, 0);
        assert_eq!(a_records(&reply).len(), 100);
    }

    #[test]
    fn reserved_z_bit_is_ignored() {
        let names = Names::new();
        let mut q = query(8, "web", TYPE_A);
        q[3] |= 0x40;
        let reply = reply_of(answer(&q, &*names));
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(172, 18, 0, 2)]);
        assert_eq!(flags(&reply) & Z, 0);
    }

    fn rcode_of(action: Action) -> u16 {
        flags(&reply_of(action)) & 0x000F
    }

    #[test]
    fn hostile_packets_are_dropped_or_formerr() {
        let names = Names::new();
        let good = query(0x1111, "web", TYPE_A);

        // Too short to carry a header.
        for len in [0, 1, 2, 11] {
            assert_eq!(answer(&good[..len], &*names), Action::Drop, "{len} bytes");
        }
        // A response instead of a query.
        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(answer(&response, &*names), Action::Drop);
        // Other opcodes: NOTIMP, opcode kept.
        for opcode in [1u8, 2, 4, 5, 15] {
            let mut q = good.clone();
            q[2] = (q[2] & 0x87) | (opcode << 3);
            let reply = reply_of(answer(&q, &*names));
            assert_eq!(flags(&reply) & 0x000F, NOTIMP);
            assert_eq!((flags(&reply) & OPCODE_MASK) >> 11, u16::from(opcode));
            assert_eq!(reply.len(), 12);
        }
        // Header only, and huge or wrong counts.
        let header_only = good[..12].to_vec();
        assert_eq!(rcode_of(answer(&header_only, &*names)), FORMERR);
        for (at, count) in [
            (4, 0u16),
            (4, 2),
            (4, 0xFFFF),
            (6, 0xFFFF),
            (8, 0xFFFF),
            (10, 0xFFFF),
            (10, 3),
        ] {
            let mut q = good.clone();
            q[at..at + 2].copy_from_slice(&count.to_be_bytes());
            let reply = reply_of(answer(&q, &*names));
            assert_eq!(flags(&reply) & 0x000F, FORMERR, "count {count} at {at}");
            assert_eq!(&reply[..2], &[0x11, 0x11], "id kept");
            assert_eq!(reply.len(), 12);
        }
        // Truncated anywhere in the question.
        for len in 12..good.len() {
            assert_eq!(
                rcode_of(answer(&good[..len], &*names)),
                FORMERR,
                "cut at {len}"
            );
        }
        // A label running past the end.
        let mut q = good.clone();
        q[12] = 60;
        assert_eq!(rcode_of(answer(&q, &*names)), FORMERR);
        // Compression pointers in the question (to itself, into the
        // header) and the reserved label types.
        for first in [[0xC0, 0x0C], [0xC0, 0x00], [0x40, 0x01], [0x80, 0x01]] {
            let mut q = good[..12].to_vec();
            q.extend_from_slice(&first);
            q.extend_from_slice(&[0, 1, 0, 1]);
            assert_eq!(rcode_of(answer(&q, &*names)), FORMERR, "{first:?}");
        }
        // A name longer than 255 bytes.
        let long = vec!["a".repeat(63); 5].join(".");
        assert_eq!(rcode_of(answer(&query(1, &long, TYPE_A), &*names)), FORMERR);
        // 255 bytes on the wire is the most a name may take.
        let longest = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61));
        assert_eq!(
            answer(&query(1, &longest, TYPE_A), &*names),
            Action::Forward
        );
        let too_long = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(62));
        assert_eq!(
            rcode_of(answer(&query(1, &too_long, TYPE_A), &*names)),
            FORMERR
        );
        // An additional record whose name points at itself, forward (past
        // the end, into its own bytes) or into the middle of a label.
        for pointer in [[0xC0u8, 21], [0xC0, 0xF0], [0xC0, 23], [0xC0, 14]] {
            let mut q = good.clone();
            q[11] = 1;
            assert_eq!(q.len(), 21);
            q.extend_from_slice(&pointer);
            q.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
            assert_eq!(rcode_of(answer(&q, &*names)), FORMERR, "{pointer:?}");
        }
        // Pointing back at the question is fine.
        let mut q = good.clone();
        q[11] = 1;
        q.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
        assert_eq!(rcode_of(answer(&q, &*names)), NOERROR);
        // An OPT record whose option runs past its data.
        let mut q = query_edns(2, "web", TYPE_A, 1232);
        let rdlen_at = q.len() - 2;
        q[rdlen_at..].copy_from_slice(&4u16.to_be_bytes());
        q.extend_from_slice(&[0, 10, 0, 200]);
        assert_eq!(rcode_of(answer(&q, &*names)), FORMERR);
        // Records claimed but missing.
        let mut q = good.clone();
        q[7] = 1;
        assert_eq!(rcode_of(answer(&q, &*names)), FORMERR);
        // Trailing garbage after a complete query is tolerated.
        let mut q = good.clone();
        q.extend_from_slice(&[0xFF; 40]);
        assert_eq!(rcode_of(answer(&q, &*names)), NOERROR);
        // Nothing hostile reached the resolver except the valid names.
        assert!(names.asked().iter().all(|n| n == "web" || *n == longest));
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn check_fuzz_case(input: &[u8], names: &Names) {
        for transport in [Transport::Udp, Transport::Tcp] {
            if let Action::Reply(reply) = respond(input, names, transport) {
                assert!(reply.len() >= 12 && reply.len() <= MAX_MESSAGE);
                assert_eq!(&reply[..2], &input[..2], "id echoed");
                assert_eq!(flags(&reply) & QR, QR);
                if transport == Transport::Udp {
                    assert!(reply.len() <= relay_limit(input).max(512));
                }
                // Ours are well formed (a question of a type simple-dns
                // does not model aside).
                assert!(
                    matches!(
                        Packet::parse(&reply),
                        Ok(_) | Err(SimpleDnsError::InvalidQType(_))
                    ),
                    "unparsable reply {reply:02x?} to {input:02x?}"
                );
            }
        }
        let _ = servfail(input);
        let _ = relay_limit(input);
        let _ = is_reply_to(input, input);
    }

    #[test]
    fn fuzz_answer_never_panics() {
        let names = Names::new();
        let corpus = [
            query(1, "web", TYPE_A),
            query(2, "DB.", AAAA),
            query(3, "example.com", TYPE_A),
            query(4, "many", MX),
            query_edns(5, "many", TYPE_A, 4096),
            query_edns(6, "web.net1", TXT, 1232),
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..40_000 {
            let mut input = if round % 4 == 0 {
                // Random bytes behind a plausible query header.
                let len = rng.below(80);
                let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if v.len() >= 12 && rng.below(2) == 0 {
                    v[2] &= 0x07;
                    v[4..6].copy_from_slice(&[0, 1]);
                    v[6..10].fill(0);
                    v[10] = 0;
                    v[11] = rng.below(3) as u8;
                }
                v
            } else {
                corpus[rng.below(corpus.len())].clone()
            };
            for _ in 0..1 + rng.below(4) {
                if input.is_empty() {
                    break;
                }
                let at = rng.below(input.len());
                match rng.below(6) {
                    0 => input[at] = rng.next() as u8,
                    1 => input[at] ^= 1 << rng.below(8),
                    2 => input.truncate(at),
                    3 => input.insert(at, rng.next() as u8),
                    4 => {
                        // A compression pointer somewhere.
                        input[at] = 0xC0 | (rng.below(4) as u8);
                        if at + 1 < input.len() {
                            input[at + 1] = rng.next() as u8;
                        }
                    }
                    _ => {
                        let at = rng.below(6) * 2;
                        if at + 1 < input.len() {
                            input[at] = rng.next() as u8;
                            input[at + 1] = rng.next() as u8;
                        }
                    }
                }
            }
            check_fuzz_case(&input, &names);
        }
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "\
# Generated by NetworkManager
search example.com corp.example
options ndots:2 timeout:1
nameserver 192.168.1.1
; another comment
nameserver   127.0.0.53   # trailing comment
 nameserver 2001:db8::1
nameserver fe80::1%7
nameserver not-an-address
nameserver
nameserver 10.0.0.1
nameserver 10.0.0.2
nameservers 10.9.9.9
#nameserver 10.8.8.8
garbage \u{0} \u{ff}
";
        let got = upstreams_from_resolv_conf(text);
        assert_eq!(
            got,
            vec![
                "192.168.1.1:53".parse::<SocketAddr>().unwrap(),
                "127.0.0.53:53".parse().unwrap(),
                "[2001:db8::1]:53".parse().unwrap(),
            ]
        );
        let got = upstreams_from_resolv_conf("nameserver fe80::1%7\nnameserver fe80::2%lo\n");
        assert_eq!(
            got[0],
            SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 53, 0, 7))
        );
        if let Some(SocketAddr::V6(lo)) = got.get(1) {
            assert_ne!(lo.scope_id(), 0);
        }
        assert!(upstreams_from_resolv_conf("").is_empty());
        assert!(upstreams_from_resolv_conf("options edns0\nsearch .\n").is_empty());
        assert!(upstreams_from_resolv_conf("nameserver fe80::1%no-such-if0\n").is_empty());
    }

    // ---- Serving, against fake upstreams on 127.0.0.1 ----

    /// An upstream's answer to `query`: id kept, one A record.
    fn upstream_answer(query: &[u8], addr: Ipv4Addr) -> Vec<u8> {
        let span = question_span(query).unwrap();
        let mut r =
            reply_header(u16::from_be_bytes([query[0], query[1]]), QR | RD | RA, 1, 1).to_vec();
        r.extend_from_slice(&query[span]);
        r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&addr.octets());
        r
    }

    /// A UDP upstream answering each query with what `handler` returns
    /// (several datagrams, or none).
    fn fake_udp_upstream(handler: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + 'static) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; MAX_MESSAGE];
            while let Ok((len, peer)) = retry(|| socket.recv_from(&mut buf)) {
                for reply in handler(&buf[..len]) {
                    let _ = retry(|| socket.send_to(&reply, peer));
                }
            }
        });
        addr
    }

    fn start(upstreams: Vec<SocketAddr>, limits: Limits) -> (SocketAddr, SocketAddr, Arc<Names>) {
        let names = Names::new();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addrs = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        spawn_with(udp, Some(tcp), names.clone(), upstreams, limits).unwrap();
        (addrs.0, addrs.1, names)
    }

    fn quick() -> Limits {
        Limits {
            upstream_timeout: Duration::from_millis(300),
            ..Limits::default()
        }
    }

    fn client() -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
    }

    fn ask_udp(server: SocketAddr, q: &[u8]) -> Vec<u8> {
        let socket = client();
        socket.send_to(q, server).unwrap();
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (len, from) = retry(|| socket.recv_from(&mut buf)).unwrap();
        assert_eq!(from, server);
        buf.truncate(len);
        buf
    }

    #[test]
    fn serves_local_names_over_udp() {
        let (udp, _, _) = start(vec![], quick());
        let reply = ask_udp(udp, &query(77, "web", TYPE_A));
        assert_eq!(&reply[..2], &[0, 77]);
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(172, 18, 0, 2)]);
    }

    #[test]
    fn unknown_names_are_forwarded_and_relayed_with_the_id() {
        let upstream = fake_udp_upstream(|q| {
            // A stray datagram with another id first: ignored.
            let mut stray = upstream_answer(q, Ipv4Addr::new(6, 6, 6, 6));
            stray[0] ^= 0xFF;
            vec![stray, upstream_answer(q, Ipv4Addr::new(93, 184, 216, 34))]
        });
        let (udp, _, _) = start(vec![upstream], quick());
        let q = query(0xBEEF, "example.com", TYPE_A);
        let reply = ask_udp(udp, &q);
        assert_eq!(&reply[..2], &[0xBE, 0xEF]);
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(93, 184, 216, 34)]);
        assert_eq!(reply, upstream_answer(&q, Ipv4Addr::new(93, 184, 216, 34)));
    }

    #[test]
    fn silent_or_failing_upstreams_give_way_to_the_next() {
        let silent = fake_udp_upstream(|_| vec![]);
        let failing = fake_udp_upstream(|q| {
            let mut r = servfail(q).unwrap();
            r[3] = (r[3] & 0xF0) | REFUSED as u8;
            vec![r]
        });
        let good = fake_udp_upstream(|q| vec![upstream_answer(q, Ipv4Addr::new(1, 2, 3, 4))]);
        let (udp, _, _) = start(vec![silent, failing, good], quick());
        let reply = ask_udp(udp, &query(5, "example.org", TYPE_A));
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(1, 2, 3, 4)]);
    }

    #[test]
    fn upstream_timeout_is_servfail() {
        let silent = fake_udp_upstream(|_| vec![]);
        let (udp, _, _) = start(vec![silent], quick());
        let q = query(0x0102, "example.com", TYPE_A);
        let started = Instant::now();
        let reply = ask_udp(udp, &q);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(&reply[..2], &[1, 2]);
        assert_eq!(flags(&reply) & 0x000F, SERVFAIL);
        assert_eq!(flags(&reply) & RD, RD);
        assert_eq!(&reply[12..], &q[12..], "question echoed");
    }

    #[test]
    fn no_upstreams_is_servfail() {
        let (udp, _, _) = start(vec![], quick());
        let reply = ask_udp(udp, &query(3, "example.com", TYPE_A));
        assert_eq!(flags(&reply) & 0x000F, SERVFAIL);
    }

    #[test]
    fn refused_upstream_port_is_servfail() {
        // Nothing listens there: ICMP port unreachable, at once.
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (udp, _, _) = start(vec![closed], Limits::default());
        let started = Instant::now();
        let reply = ask_udp(udp, &query(3, "example.com", TYPE_A));
        assert_eq!(flags(&reply) & 0x000F, SERVFAIL);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn forwarded_queries_are_bounded() {
        let silent = fake_udp_upstream(|_| vec![]);
        let limits = Limits {
            upstream_timeout: Duration::from_millis(1500),
            max_forwards: 1,
            ..Limits::default()
        };
        let (udp, _, _) = start(vec![silent], limits);
        let socket = client();
        let started = Instant::now();
        socket.send_to(&query(1, "a.example", TYPE_A), udp).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        socket.send_to(&query(2, "b.example", TYPE_A), udp).unwrap();
        let mut buf = vec![0u8; 1024];
        let len = retry(|| socket.recv(&mut buf)).unwrap();
        assert_eq!(&buf[..2], &[0, 2], "the second is refused first");
        assert_eq!(flags(&buf[..len]) & 0x000F, SERVFAIL);
        assert!(started.elapsed() < Duration::from_millis(1000));
        let len = retry(|| socket.recv(&mut buf)).unwrap();
        assert_eq!(&buf[..2], &[0, 1]);
        assert_eq!(flags(&buf[..len]) & 0x000F, SERVFAIL);
    }

    #[test]
    fn oversized_upstream_replies_are_truncated_for_udp_clients() {
        let upstream = fake_udp_upstream(|q| {
            let mut r = upstream_answer(q, Ipv4Addr::new(1, 1, 1, 1));
            let one = r[r.len() - 16..].to_vec();
            for _ in 0..60 {
                r.extend_from_slice(&one);
            }
            r[6..8].copy_from_slice(&61u16.to_be_bytes());
            vec![r]
        });
        let (udp, _, _) = start(vec![upstream], quick());
        let q = query(9, "big.example", TYPE_A);
        let reply = ask_udp(udp, &q);
        assert_eq!(flags(&reply) & TC, TC);
        assert_eq!(&reply[4..8], &[0, 1, 0, 0]);
        assert_eq!(&reply[12..], &q[12..]);
        // With EDNS room it comes whole.
        let reply = ask_udp(udp, &query_edns(9, "big.example", TYPE_A, 4096));
        assert_eq!(a_records(&reply).len(), 61);
    }

    fn ask_tcp(stream: &mut TcpStream, q: &[u8]) -> Vec<u8> {
        stream.write_all(&framed(q)).unwrap();
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).unwrap();
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut reply).unwrap();
        reply
    }

    #[test]
    fn serves_several_queries_per_tcp_connection() {
        let silent = fake_udp_upstream(|_| vec![]);
        let (_, tcp, _) = start(vec![silent], quick());
        let mut stream = TcpStream::connect(tcp).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reply = ask_tcp(&mut stream, &query(1, "web", TYPE_A));
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(172, 18, 0, 2)]);
        // No truncation over TCP.
        let reply = ask_tcp(&mut stream, &query(2, "many", TYPE_A));
        assert_eq!(&reply[..2], &[0, 2]);
        assert_eq!(a_records(&reply).len(), 100);
        // The upstream has no TCP listener: SERVFAIL, connection kept.
        let reply = ask_tcp(&mut stream, &query(3, "example.com", TYPE_A));
        assert_eq!(flags(&reply) & 0x000F, SERVFAIL);
        let reply = ask_tcp(&mut stream, &query(4, "db", TYPE_A));
        assert_eq!(a_records(&reply).len(), 2);
        // A response instead of a query: the connection is closed.
        let mut response = query(5, "web", TYPE_A);
        response[2] |= 0x80;
        stream.write_all(&framed(&response)).unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
    }

    #[test]
    fn tcp_queries_are_forwarded_over_tcp() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = upstream.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = retry(|| upstream.accept()).unwrap();
            let mut prefix = [0u8; 2];
            conn.read_exact(&mut prefix).unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
            conn.read_exact(&mut q).unwrap();
            conn.write_all(&framed(&upstream_answer(&q, Ipv4Addr::new(5, 6, 7, 8))))
                .unwrap();
        });
        let (_, tcp, _) = start(vec![addr], quick());
        let mut stream = TcpStream::connect(tcp).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reply = ask_tcp(&mut stream, &query(0x0A0B, "example.net", TYPE_A));
        assert_eq!(&reply[..2], &[0x0A, 0x0B]);
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(5, 6, 7, 8)]);
    }

    #[test]
    fn idle_tcp_connections_are_closed() {
        let limits = Limits {
            tcp_idle: Duration::from_millis(200),
            ..quick()
        };
        let (_, tcp, _) = start(vec![], limits);
        let mut stream = TcpStream::connect(tcp).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // Half a length prefix, then nothing.
        stream.write_all(&[0]).unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).unwrap_or(0), 0);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn hostile_datagrams_do_not_stop_the_server() {
        let (udp, _, _) = start(vec![], quick());
        let socket = client();
        let mut rng = Rng(42);
        for _ in 0..200 {
            let len = rng.below(64);
            let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            socket.send_to(&junk, udp).unwrap();
        }
        // Still answering (FORMERR/NOTIMP replies to the junk may arrive
        // first).
        socket.send_to(&query(0xABCD, "web", TYPE_A), udp).unwrap();
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let len = retry(|| socket.recv(&mut buf)).unwrap();
            if buf[..2] == [0xAB, 0xCD] && len > 12 {
                assert_eq!(a_records(&buf[..len]), vec![Ipv4Addr::new(172, 18, 0, 2)]);
                break;
            }
        }
    }
}
