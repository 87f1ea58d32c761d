//! Host side of vsock: guest stream connections mapped onto Unix sockets,
//! with Firecracker's conventions.
//!
//! - Host-initiated: a client connects to `<uds>`, writes `CONNECT <port>\n`;
//!   the muxer sends the guest a REQUEST for `<port>` and, when the guest
//!   accepts, answers `OK <hostport>\n` on the Unix stream. Then raw bytes
//!   flow both ways. If the guest refuses (RST), the Unix stream is closed.
//! - Guest-initiated: a guest connection to host port `P` is forwarded to a
//!   Unix socket listening at `<uds>_P`.
//!
//! Host sockets live on the muxer's own `mio::Poll` (epoll on Linux, kqueue
//! on macOS), so the device exposes one pollable fd to whatever runs it: the
//! VMM's epoll event loop on Linux, or a thread that waits for that fd to
//! become readable (`x86_vm`, `arm64_vm`). mio watches edge-triggered on
//! both: readiness is remembered in `Connection::host_readable` and
//! consumed only when the guest has both credit and receive buffers.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::connection::{ConnKey, ConnState, Connection, CONN_BUF_SIZE};
use super::packet::{op, PacketHeader, HOST_CID, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};

/// Longest accepted `CONNECT <port>\n` line.
const MAX_HANDSHAKE_LINE: usize = 64;
/// First local port handed to host-initiated connections.
const FIRST_HOST_PORT: u32 = 1 << 30;

/// A host client that has not finished its `CONNECT` line yet.
struct Handshake {
    stream: UnixStream,
    buf: Vec<u8>,
}

/// A control packet waiting for a guest receive buffer.
#[derive(Clone, Copy, Debug)]
struct Control {
    key: ConnKey,
    op: u16,
    flags: u32,
}

/// What a host socket is ready for.
#[derive(Clone, Copy, Debug)]
struct Readiness {
    readable: bool,
    writable: bool,
    /// Neither direction can carry data any more: the peer closed its
    /// whole stream (EPOLLHUP; kqueue: EOF on the write filter). A
    /// half-close (the peer's `shutdown(SHUT_WR)`) is only read-closed.
    hung_up: bool,
}

/// mio token of a host socket: its fd (unique while it is open).
fn token(fd: RawFd) -> Token {
    Token(fd as usize)
}

/// The vsock connection multiplexer.
pub struct VsockMuxer {
    uds_path: PathBuf,
    guest_cid: u64,
    listener: UnixListener,
    poll: Poll,
    events: Events,
    handshakes: HashMap<RawFd, Handshake>,
    conns: HashMap<ConnKey, Connection>,
    fd_keys: HashMap<RawFd, ConnKey>,
    control: VecDeque<Control>,
    schedule: VecDeque<ConnKey>,
    next_host_port: u32,
}

impl VsockMuxer {
    /// Listens on `uds_path` (replacing a stale socket file) for a guest
    /// with CID `guest_cid`.
    pub fn new(uds_path: &Path, guest_cid: u64) -> io::Result<Self> {
        match std::fs::remove_file(uds_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(uds_path)?;
        listener.set_nonblocking(true)?;
        let poll = Poll::new()?;
        let fd = listener.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), token(fd), Interest::READABLE)?;
        Ok(VsockMuxer {
            uds_path: uds_path.to_owned(),
            guest_cid,
            listener,
            poll,
            events: Events::with_capacity(64),
            handshakes: HashMap::new(),
            conns: HashMap::new(),
            fd_keys: HashMap::new(),
            control: VecDeque::new(),
            schedule: VecDeque::new(),
            next_host_port: FIRST_HOST_PORT,
        })
    }

    /// The fd (epoll or kqueue) that becomes readable when host sockets
    /// need attention.
    pub fn poll_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Drops every connection (device reset).
    pub fn reset(&mut self) {
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        for k in keys {
            self.remove(k);
        }
        self.control.clear();
        self.schedule.clear();
    }

    /// Handles whatever host sockets are ready, without blocking.
    pub fn process_host_events(&mut self) {
        loop {
            match self
                .poll
                .poll(&mut self.events, Some(std::time::Duration::ZERO))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
            let ready: Vec<(RawFd, Readiness)> = self
                .events
                .iter()
                .map(|ev| {
                    (
                        ev.token().0 as RawFd,
                        Readiness {
                            // Hang-ups and errors count as readable: the
                            // next read reports them.
                            readable: ev.is_readable()
                                || ev.is_read_closed()
                                || ev.is_write_closed()
                                || ev.is_error(),
                            writable: ev.is_writable(),
                            hung_up: ev.is_write_closed() || ev.is_error(),
                        },
                    )
                })
                .collect();
            let n = ready.len();
            for (fd, set) in ready {
                self.handle_event(fd, set);
            }
            if n < self.events.capacity() {
                return;
            }
        }
    }

    fn handle_event(&mut self, fd: RawFd, set: Readiness) {
        if fd == self.listener.as_raw_fd() {
            self.accept_clients();
        } else if self.handshakes.contains_key(&fd) {
            self.read_handshake(fd);
        } else if let Some(key) = self.fd_keys.get(&fd).copied() {
            if set.hung_up {
                if let Some(c) = self.conns.get_mut(&key) {
                    c.host_hung_up = true;
                    if c.host_eof {
                        // Its end of stream already went to the guest as
                        // a half-close: nobody reads the guest's side.
                        self.reset_conn(key);
                        return;
                    }
                }
            }
            if set.writable {
                self.flush(key);
            }
            if set.readable {
                if let Some(c) = self.conns.get_mut(&key) {
                    c.host_readable = true;
                }
                self.schedule_rx(key);
            }
        }
    }

    /// Watches `fd` (edge-triggered, as mio always is).
    fn watch(&self, fd: RawFd, interest: Interest) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), token(fd), interest)
    }

    fn unwatch(&self, fd: RawFd) {
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
    }

    fn accept_clients(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let fd = stream.as_raw_fd();
                    if self.watch(fd, Interest::READABLE).is_ok() {
                        self.handshakes.insert(
                            fd,
                            Handshake {
                                stream,
                                buf: Vec::new(),
                            },
                        );
                        // Data may already be there (edge-triggered).
                        self.read_handshake(fd);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn read_handshake(&mut self, fd: RawFd) {
        let Some(hs) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let mut chunk = [0u8; 4096];
        loop {
            match hs.stream.read(&mut chunk) {
                Ok(0) => break self.drop_handshake(fd),
                Ok(n) => {
                    hs.buf.extend_from_slice(&chunk[..n]);
                    if let Some(nl) = hs.buf.iter().position(|b| *b == b'\n') {
                        let hs = self.handshakes.remove(&fd).expect("present");
                        self.unwatch(fd);
                        let port = parse_connect(&hs.buf[..nl]);
                        let rest = hs.buf[nl + 1..].to_vec();
                        match port {
                            Some(port) => self.host_connect(hs.stream, port, rest),
                            None => {
                                let mut s = hs.stream;
                                let _ = s.write_all(b"ERROR invalid CONNECT line\n");
                            }
                        }
                        return;
                    }
                    if hs.buf.len() > MAX_HANDSHAKE_LINE {
                        break self.drop_handshake(fd);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break self.drop_handshake(fd),
            }
        }
    }

    fn drop_handshake(&mut self, fd: RawFd) {
        self.unwatch(fd);
        self.handshakes.remove(&fd);
    }

    fn allocate_host_port(&mut self, guest_port: u32) -> u32 {
        loop {
            let port = self.next_host_port;
            self.next_host_port = self
                .next_host_port
                .checked_add(1)
                .unwrap_or(FIRST_HOST_PORT);
            let key = ConnKey {
                guest_port,
                host_port: port,
            };
            if !self.conns.contains_key(&key) {
                return port;
            }
        }
    }

    /// A host client asked for guest port `port`: send the guest a REQUEST.
    fn host_connect(&mut self, stream: UnixStream, port: u32, early_data: Vec<u8>) {
        let key = ConnKey {
            guest_port: port,
            host_port: self.allocate_host_port(port),
        };
        let mut conn = Connection::new(stream, ConnState::AwaitingResponse);
        conn.stash = early_data;
        if self.insert(key, conn).is_ok() {
            self.push_control(key, op::REQUEST, 0);
        }
    }

    fn insert(&mut self, key: ConnKey, conn: Connection) -> io::Result<()> {
        let fd = conn.stream.as_raw_fd();
        self.watch(fd, Interest::READABLE | Interest::WRITABLE)?;
        self.fd_keys.insert(fd, key);
        self.conns.insert(key, conn);
        Ok(())
    }

    fn remove(&mut self, key: ConnKey) {
        if let Some(c) = self.conns.remove(&key) {
            let fd = c.stream.as_raw_fd();
            self.unwatch(fd);
            self.fd_keys.remove(&fd);
            log::debug!(
                "vsock {}:{} closed: {:?}",
                key.guest_port,
                key.host_port,
                c.stats
            );
        }
    }

    /// Closes the host side and tells the guest with RST.
    fn reset_conn(&mut self, key: ConnKey) {
        self.remove(key);
        self.push_control(key, op::RST, 0);
    }

    fn push_control(&mut self, key: ConnKey, op: u16, flags: u32) {
        self.control.push_back(Control { key, op, flags });
    }

    fn schedule_rx(&mut self, key: ConnKey) {
        if let Some(c) = self.conns.get_mut(&key) {
            if !c.scheduled && c.has_host_data() {
                c.scheduled = true;
                self.schedule.push_back(key);
            }
        }
    }

    /// Pushes pending guest bytes to the host; then applies deferred
    /// shutdowns and credit updates.
    fn flush(&mut self, key: ConnKey) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if c.flush_tx().is_err() {
            self.reset_conn(key);
            return;
        }
        if !c.tx_buf.is_empty() {
            return;
        }
        let both = SHUTDOWN_RCV | SHUTDOWN_SEND;
        if c.guest_shutdown & both == both {
            // The guest closed: everything it sent is delivered; finish with RST.
            self.reset_conn(key);
            return;
        }
        if c.guest_shutdown & SHUTDOWN_SEND != 0 {
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
        }
        if c.wants_credit_update() {
            c.credit_update_queued = true;
            self.push_control(key, op::CREDIT_UPDATE, 0);
        }
    }

    /// Handles a packet the guest sent (from the TX queue).
    pub fn handle_guest_packet(&mut self, hdr: &PacketHeader, payload: &[u8]) {
        let key = ConnKey {
            guest_port: hdr.src_port,
            host_port: hdr.dst_port,
        };
        if hdr.type_ != TYPE_STREAM || hdr.dst_cid != HOST_CID || hdr.src_cid != self.guest_cid {
            if hdr.op != op::RST {
                self.push_control(key, op::RST, 0);
            }
            return;
        }
        if hdr.op == op::REQUEST {
            if self.conns.contains_key(&key) {
                self.reset_conn(key);
            } else {
                self.guest_connect(key, hdr);
            }
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            if hdr.op != op::RST {
                self.push_control(key, op::RST, 0);
            }
            return;
        };
        c.peer_buf_alloc = hdr.buf_alloc;
        c.peer_fwd_cnt = hdr.fwd_cnt;
        if c.peer_credit() > 0 {
            c.credit_requested = false;
        }
        match hdr.op {
            op::RESPONSE if c.state == ConnState::AwaitingResponse => {
                c.state = ConnState::Established;
                // A fresh socket buffer always takes this short line.
                let line = format!("OK {}\n", key.host_port);
                if c.stream.write_all(line.as_bytes()).is_err() {
                    self.reset_conn(key);
                    return;
                }
                // Host bytes may have arrived before the guest accepted.
                c.host_readable = true;
            }
            op::RW if c.state == ConnState::Established => {
                if c.tx_buf.len() + payload.len() > CONN_BUF_SIZE as usize {
                    // The guest ignored our credit.
                    self.reset_conn(key);
                    return;
                }
                c.tx_buf.extend_from_slice(payload);
                c.stats.guest_packets += 1;
                c.stats.guest_bytes += payload.len() as u64;
                self.flush(key);
            }
            op::CREDIT_UPDATE => {}
            op::CREDIT_REQUEST => {
                c.stats.credit_requests_received += 1;
                if !c.credit_update_queued {
                    c.credit_update_queued = true;
                    self.push_control(key, op::CREDIT_UPDATE, 0);
                }
            }
            op::SHUTDOWN => {
                c.guest_shutdown |= hdr.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
                self.flush(key);
            }
            op::RST => {
                self.remove(key);
                return;
            }
            _ => {
                self.reset_conn(key);
                return;
            }
        }
        self.schedule_rx(key);
    }

    /// The guest connects to host port `key.host_port`: `<uds>_<port>`.
    fn guest_connect(&mut self, key: ConnKey, hdr: &PacketHeader) {
        let mut path = self.uds_path.clone().into_os_string();
        path.push(format!("_{}", key.host_port));
        let stream = match UnixStream::connect(&path) {
            Ok(s) if s.set_nonblocking(true).is_ok() => s,
            _ => {
                self.push_control(key, op::RST, 0);
                return;
            }
        };
        let mut conn = Connection::new(stream, ConnState::Established);
        conn.peer_buf_alloc = hdr.buf_alloc;
        conn.peer_fwd_cnt = hdr.fwd_cnt;
        conn.host_readable = true;
        if self.insert(key, conn).is_ok() {
            self.push_control(key, op::RESPONSE, 0);
        } else {
            self.push_control(key, op::RST, 0);
        }
    }

    /// No connection, handshake or packet in flight: the host side holds no
    /// state a snapshot would have to carry.
    pub fn is_idle(&self) -> bool {
        self.conns.is_empty() && self.handshakes.is_empty() && !self.has_rx()
    }

    /// Connections whose host peer still holds its stream open: a client
    /// that is using the guest now (`logs -f`, `attach`, `exec`, a
    /// published port's flow). Those a snapshot cannot carry, and they do
    /// not end by themselves; the rest (host peer gone, handshakes, queued
    /// packets) end within moments.
    pub fn open_connections(&self) -> usize {
        self.conns.values().filter(|c| !c.host_hung_up).count()
    }

    /// Why a snapshot cannot be taken now, or `None` when the muxer is
    /// idle. The two wordings are told apart by `berth machine suspend`:
    /// "in use" is refused at once, "closing" is retried.
    pub fn snapshot_blocker(&self) -> Option<String> {
        if self.is_idle() {
            return None;
        }
        let open = self.open_connections();
        Some(if open > 0 {
            format!(
                "vsock: {open} connection(s) in use (a `logs -f`, `attach`, `exec` or published-port connection still open); end them first"
            )
        } else {
            format!(
                "vsock: {} connection(s) closing or packets in flight",
                self.conns.len() + self.handshakes.len()
            )
        })
    }

    /// Whether packets may be waiting for the guest.
    pub fn has_rx(&self) -> bool {
        !self.control.is_empty() || !self.schedule.is_empty()
    }

    fn header(&mut self, key: ConnKey, op: u16, flags: u32, len: u32) -> PacketHeader {
        let (buf_alloc, fwd_cnt) = match self.conns.get_mut(&key) {
            Some(c) => {
                c.last_fwd_cnt_sent = c.fwd_cnt;
                if op == super::packet::op::CREDIT_UPDATE {
                    c.credit_update_queued = false;
                    c.stats.credit_updates_sent += 1;
                }
                (CONN_BUF_SIZE, c.fwd_cnt)
            }
            None => (0, 0),
        };
        PacketHeader {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: key.host_port,
            dst_port: key.guest_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        }
    }

    /// The next packet for the guest, with at most `max_payload` bytes of
    /// data placed in `payload`; `None` when there is nothing to send.
    pub fn next_rx_packet(
        &mut self,
        max_payload: usize,
        payload: &mut Vec<u8>,
    ) -> Option<PacketHeader> {
        payload.clear();
        if let Some(ctl) = self.control.pop_front() {
            return Some(self.header(ctl.key, ctl.op, ctl.flags, 0));
        }
        while let Some(key) = self.schedule.pop_front() {
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            c.scheduled = false;
            if !c.has_host_data() || c.guest_shutdown & SHUTDOWN_RCV != 0 {
                continue;
            }
            let credit = c.peer_credit() as usize;
            if credit == 0 {
                c.stats.credit_stalls += 1;
                if !c.credit_requested {
                    c.credit_requested = true;
                    return Some(self.header(key, op::CREDIT_REQUEST, 0, 0));
                }
                continue;
            }
            let want = max_payload.min(credit);
            if want == 0 {
                continue;
            }
            if !c.stash.is_empty() {
                let n = want.min(c.stash.len());
                payload.extend(c.stash.drain(..n));
            } else {
                payload.resize(want, 0);
                match c.stream.read(payload) {
                    Ok(0) if c.host_hung_up => {
                        // The host peer closed the whole stream (a client
                        // that ended, a killed `logs -f`): nobody can take
                        // the guest's data any more, and waiting for the
                        // guest to close too would keep the connection (and
                        // a suspend) waiting on guest work or forever.
                        payload.clear();
                        self.remove(key);
                        return Some(self.header(key, op::RST, 0, 0));
                    }
                    Ok(0) => {
                        // A half-close (the host shut down its sending
                        // side: stdin ended): the guest's output still
                        // flows until the guest closes.
                        payload.clear();
                        c.host_readable = false;
                        c.host_eof = true;
                        return Some(self.header(key, op::SHUTDOWN, SHUTDOWN_SEND, 0));
                    }
                    Ok(n) => payload.truncate(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        payload.clear();
                        c.host_readable = false;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        payload.clear();
                        self.schedule_rx(key);
                        continue;
                    }
                    Err(_) => {
                        payload.clear();
                        self.remove(key);
                        return Some(self.header(key, op::RST, 0, 0));
                    }
                }
            }
            c.rx_cnt = c.rx_cnt.wrapping_add(payload.len() as u32);
            c.stats.host_packets += 1;
            c.stats.host_bytes += payload.len() as u64;
            let len = payload.len() as u32;
            self.schedule_rx(key);
            return Some(self.header(key, op::RW, 0, len));
        }
        None
    }
}

/// Parses `CONNECT <port>` (an optional trailing `\r` is tolerated).
fn parse_connect(line: &[u8]) -> Option<u32> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    line.strip_prefix("CONNECT ")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::test_thread::{DeviceThread, Kind};
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    const CID: u64 = 3;

    fn temp_uds() -> PathBuf {
        let mut b = [0u8; 8];
        crate::devices::virtio::rng::host_random(&mut b).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "berth-vsock-{}-{:x}",
            std::process::id(),
            u64::from_le_bytes(b)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("v.sock")
    }

    fn guest_hdr(key: ConnKey, op: u16, len: u32, buf_alloc: u32, fwd_cnt: u32) -> PacketHeader {
        PacketHeader {
            src_cid: CID,
            dst_cid: HOST_CID,
            src_port: key.guest_port,
            dst_port: key.host_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc,
            fwd_cnt,
        }
    }

    /// The muxer as production drives it, each call on its thread under
    /// that thread's seccomp filter (see `devices::test_thread`): guest
    /// packets and host events on the events thread, the suspend check
    /// (`snapshot_blocker`, through the device) on the main thread. The
    /// host peers stay on the test's thread. Made before the threads
    /// confine themselves, as production opens its socket first.
    struct Mux {
        events: DeviceThread<Arc<Mutex<VsockMuxer>>>,
        main: DeviceThread<Arc<Mutex<VsockMuxer>>>,
    }

    impl Mux {
        fn new(uds: &Path) -> Mux {
            let m = Arc::new(Mutex::new(VsockMuxer::new(uds, CID).unwrap()));
            Mux {
                events: DeviceThread::spawn(Kind::Events, m.clone()),
                main: DeviceThread::spawn(Kind::Main, m),
            }
        }

        /// Runs `f` on the events thread.
        fn on<R: Send + 'static>(
            &self,
            f: impl FnOnce(&mut VsockMuxer) -> R + Send + 'static,
        ) -> R {
            self.events.call(move |m| f(&mut m.lock().unwrap()))
        }

        fn process_host_events(&self) {
            self.on(|m| m.process_host_events())
        }

        fn next_rx_packet(&self, max: usize, payload: &mut Vec<u8>) -> Option<PacketHeader> {
            let mut p = std::mem::take(payload);
            let (h, p) = self.on(move |m| (m.next_rx_packet(max, &mut p), p));
            *payload = p;
            h
        }

        fn handle_guest_packet(&self, hdr: &PacketHeader, payload: &[u8]) {
            let (hdr, payload) = (*hdr, payload.to_vec());
            self.on(move |m| m.handle_guest_packet(&hdr, &payload))
        }

        fn connection_count(&self) -> usize {
            self.on(|m| m.connection_count())
        }

        fn is_idle(&self) -> bool {
            self.on(|m| m.is_idle())
        }

        fn snapshot_blocker(&self) -> Option<String> {
            self.main.call(|m| m.lock().unwrap().snapshot_blocker())
        }
    }

    /// Polls the muxer until it has a packet for the guest.
    fn next(m: &Mux, max: usize, payload: &mut Vec<u8>) -> PacketHeader {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            m.process_host_events();
            if let Some(h) = m.next_rx_packet(max, payload) {
                return h;
            }
            assert!(Instant::now() < deadline, "no packet for the guest");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn read_line(s: &UnixStream) -> String {
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        line
    }

    /// Host connects, guest accepts; returns the client stream and key.
    fn establish(m: &Mux, uds: &Path, port: u32, buf_alloc: u32) -> (UnixStream, ConnKey) {
        let mut client = UnixStream::connect(uds).unwrap();
        client
            .write_all(format!("CONNECT {port}\n").as_bytes())
            .unwrap();
        let mut p = Vec::new();
        let req = next(m, 4096, &mut p);
        assert_eq!({ req.op }, op::REQUEST);
        assert_eq!({ req.dst_port }, port);
        assert_eq!({ req.dst_cid }, CID);
        let key = ConnKey {
            guest_port: port,
            host_port: req.src_port,
        };
        m.handle_guest_packet(&guest_hdr(key, op::RESPONSE, 0, buf_alloc, 0), &[]);
        assert_eq!(read_line(&client), format!("OK {}\n", key.host_port));
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (client, key)
    }

    #[test]
    fn connect_handshake_and_data_both_ways() {
        let uds = temp_uds();
        let m = Mux::new(&uds);
        let (mut client, key) = establish(&m, &uds, 1024, 64 * 1024);

        client.write_all(b"hello guest").unwrap();
        let mut p = Vec::new();
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, { h.len }), (op::RW, 11));
        assert_eq!(&p, b"hello guest");

        m.handle_guest_packet(&guest_hdr(key, op::RW, 9, 64 * 1024, 11), b"hi host!\n");
        assert_eq!(read_line(&client), "hi host!\n");

        // Guest resets: the host stream is closed.
        m.handle_guest_packet(&guest_hdr(key, op::RST, 0, 0, 0), &[]);
        assert_eq!(m.connection_count(), 0);
        let mut buf = [0u8; 8];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        std::fs::remove_dir_all(uds.parent().unwrap()).unwrap();
    }

    #[test]
    fn refused_connection_closes_the_client() {
        let uds = temp_uds();
        let m = Mux::new(&uds);
        let mut client = UnixStream::connect(&uds).unwrap();
        client.write_all(b"CONNECT 77\n").unwrap();
        let mut p = Vec::new();
        let req = next(&m, 4096, &mut p);
        let key = ConnKey {
            guest_port: 77,
            host_port: req.src_port,
        };
        m.handle_guest_packet(&guest_hdr(key, op::RST, 0, 0, 0), &[]);
        let mut buf = [0u8; 8];
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        std::fs::remove_dir_all(uds.parent().unwrap()).unwrap();
    }

    #[test]
    fn host_to_guest_respects_credit() {
        let uds = temp_uds();
        let m = Mux::new(&uds);
        let (mut client, key) = establish(&m, &uds, 1024, 10);
        client.write_all(&[1u8; 25]).unwrap();
        let mut p = Vec::new();
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, p.len()), (op::RW, 10));
        // Out of credit: one CREDIT_REQUEST, then nothing.
        let h = next(&m, 4096, &mut p);
        assert_eq!({ h.op }, op::CREDIT_REQUEST);
        m.process_host_events();
        assert!(m.next_rx_packet(4096, &mut p).is_none());
        // The guest consumed 10 bytes: the rest flows.
        m.handle_guest_packet(&guest_hdr(key, op::CREDIT_UPDATE, 0, 10, 10), &[]);
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, p.len()), (op::RW, 10));
        m.handle_guest_packet(&guest_hdr(key, op::CREDIT_UPDATE, 0, 10, 20), &[]);
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, p.len()), (op::RW, 5));
        // The counters the debug log shows when the connection closes.
        let st = m.on(move |m| m.conns[&key].stats);
        assert_eq!((st.host_packets, st.host_bytes), (3, 25));
        assert!(st.credit_stalls >= 1, "{st:?}");
        // Host closes its side: the guest gets SHUTDOWN(SEND).
        client.shutdown(std::net::Shutdown::Write).unwrap();
        m.handle_guest_packet(&guest_hdr(key, op::CREDIT_UPDATE, 0, 10, 25), &[]);
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, { h.flags }), (op::SHUTDOWN, SHUTDOWN_SEND));
        // Guest closes too: RST, connection gone.
        let mut sd = guest_hdr(key, op::SHUTDOWN, 0, 10, 25);
        sd.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
        m.handle_guest_packet(&sd, &[]);
        let h = next(&m, 4096, &mut p);
        assert_eq!({ h.op }, op::RST);
        assert_eq!(m.connection_count(), 0);
        std::fs::remove_dir_all(uds.parent().unwrap()).unwrap();
    }

    #[test]
    fn guest_to_host_credit_updates() {
        let uds = temp_uds();
        let m = Mux::new(&uds);
        let (client, key) = establish(&m, &uds, 1024, 4096);
        let chunk = vec![9u8; 32 * 1024];
        let reader = std::thread::spawn(move || {
            let mut c = client;
            let mut total = 0usize;
            let mut buf = vec![0u8; 65536];
            while total < 128 * 1024 {
                total += c.read(&mut buf).unwrap();
            }
            total
        });
        for i in 0..4u32 {
            m.handle_guest_packet(&guest_hdr(key, op::RW, chunk.len() as u32, 4096, 0), &chunk);
            // Let the host drain.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !m.on(move |m| m.conns[&key].tx_buf.is_empty()) {
                m.process_host_events();
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(2));
            }
            let _ = i;
        }
        assert_eq!(reader.join().unwrap(), 128 * 1024);
        // 128 KiB forwarded: credit updates were sent along the way.
        let mut p = Vec::new();
        let h = next(&m, 4096, &mut p);
        assert_eq!({ h.op }, op::CREDIT_UPDATE);
        assert!({ h.fwd_cnt } >= 64 * 1024);
        std::fs::remove_dir_all(uds.parent().unwrap()).unwrap();
    }

    #[test]
    fn guest_initiated_connection_reaches_uds_port() {
        let uds = temp_uds();
        let m = Mux::new(&uds);
        let mut port_path = uds.clone().into_os_string();
        port_path.push("_5000");
        let listener = UnixListener::bind(&port_path).unwrap();
        let key = ConnKey {
            guest_port: 49152,
            host_port: 5000,
        };
        m.handle_guest_packet(&guest_hdr(key, op::REQUEST, 0, 4096, 0), &[]);
        let mut p = Vec::new();
        let h = next(&m, 4096, &mut p);
        assert_eq!(
            ({ h.op }, { h.src_port }, { h.dst_port }),
            (op::RESPONSE, 5000, 49152)
        );
        let (mut server, _) = listener.accept().unwrap();
        m.handle_guest_packet(&guest_hdr(key, op::RW, 4, 4096, 0), b"ping");
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        server.write_all(b"pong").unwrap();
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, p.as_slice()), (op::RW, &b"pong"[..]));
        // No listener on another port: RST.
        let other = ConnKey {
            guest_port: 49153,
            host_port: 5001,
        };
        m.handle_guest_packet(&guest_hdr(other, op::REQUEST, 0, 4096, 0), &[]);
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, { h.dst_port }), (op::RST, 49153));
        std::fs::remove_dir_all(uds.parent().unwrap()).unwrap();
    }

    #[test]
    fn host_close_resets_the_guest_side_at_once() {
        let uds = temp_uds();
        let m = Mux::new(&uds);
        let (mut client, key) = establish(&m, &uds, 1024, 64 * 1024);
        assert!(m.snapshot_blocker().unwrap().contains(" in use "));
        // Bytes written before the close still reach the guest first.
        client.write_all(b"last words").unwrap();
        drop(client);
        m.process_host_events();
        assert!(
            m.snapshot_blocker().unwrap().contains("closing"),
            "{:?}",
            m.snapshot_blocker()
        );
        let mut p = Vec::new();
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, p.as_slice()), (op::RW, &b"last words"[..]));
        // The client is gone: RST, not SHUTDOWN(SEND) and a wait for the
        // guest to close its end.
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, { h.dst_port }), (op::RST, key.guest_port));
        assert_eq!(m.connection_count(), 0);
        m.process_host_events();
        assert!(m.next_rx_packet(4096, &mut p).is_none());
        assert!(m.is_idle());
        assert_eq!(m.snapshot_blocker(), None);
        // The guest's late data for it is answered with RST.
        m.handle_guest_packet(&guest_hdr(key, op::RW, 2, 4096, 0), b"hi");
        let h = next(&m, 4096, &mut p);
        assert_eq!({ h.op }, op::RST);
        std::fs::remove_dir_all(uds.parent().unwrap()).unwrap();
    }

    #[test]
    fn host_half_close_still_delivers_the_guest_output() {
        let uds = temp_uds();
        let m = Mux::new(&uds);
        let (mut client, key) = establish(&m, &uds, 1024, 64 * 1024);
        // stdin ends (`attach`, `exec -i` with a closed stdin).
        client.write_all(b"input").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut p = Vec::new();
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, p.as_slice()), (op::RW, &b"input"[..]));
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, { h.flags }), (op::SHUTDOWN, SHUTDOWN_SEND));
        assert_eq!(m.connection_count(), 1);
        // Still in use: a suspend is refused with that reason.
        assert!(m.snapshot_blocker().unwrap().contains(" in use "));
        // The rest of the output still reaches the client.
        m.handle_guest_packet(&guest_hdr(key, op::RW, 11, 64 * 1024, 5), b"the output\n");
        assert_eq!(read_line(&client), "the output\n");
        // The guest closes: the client reads the end, the host resets.
        let mut sd = guest_hdr(key, op::SHUTDOWN, 0, 64 * 1024, 5);
        sd.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
        m.handle_guest_packet(&sd, &[]);
        let h = next(&m, 4096, &mut p);
        assert_eq!({ h.op }, op::RST);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{rest:?}");
        assert!(m.is_idle());
        std::fs::remove_dir_all(uds.parent().unwrap()).unwrap();
    }

    #[test]
    fn host_close_after_a_half_close_resets_too() {
        let uds = temp_uds();
        let m = Mux::new(&uds);
        let (client, key) = establish(&m, &uds, 1024, 64 * 1024);
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut p = Vec::new();
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, { h.flags }), (op::SHUTDOWN, SHUTDOWN_SEND));
        assert!(m.snapshot_blocker().unwrap().contains(" in use "));
        // The client that only ended its input now goes away (a killed
        // `exec -i`): the guest hears RST, the muxer is idle.
        drop(client);
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, { h.dst_port }), (op::RST, key.guest_port));
        assert!(m.is_idle());
        std::fs::remove_dir_all(uds.parent().unwrap()).unwrap();
    }

    #[test]
    fn data_sent_with_the_connect_line_is_kept() {
        let uds = temp_uds();
        let m = Mux::new(&uds);
        let mut client = UnixStream::connect(&uds).unwrap();
        client.write_all(b"CONNECT 9\nearly").unwrap();
        let mut p = Vec::new();
        let req = next(&m, 4096, &mut p);
        let key = ConnKey {
            guest_port: 9,
            host_port: req.src_port,
        };
        m.handle_guest_packet(&guest_hdr(key, op::RESPONSE, 0, 4096, 0), &[]);
        let h = next(&m, 4096, &mut p);
        assert_eq!(({ h.op }, p.as_slice()), (op::RW, &b"early"[..]));
        assert!(parse_connect(b"CONNECT 12\r").is_some());
        assert!(parse_connect(b"CONNECT x").is_none());
        assert!(parse_connect(b"connect 1").is_none());
        std::fs::remove_dir_all(uds.parent().unwrap()).unwrap();
    }
}
