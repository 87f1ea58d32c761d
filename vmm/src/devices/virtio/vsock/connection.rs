//! One guest <-> host stream connection and its credit accounting.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;

/// Receive buffer we advertise to the guest per connection (`buf_alloc`).
pub const CONN_BUF_SIZE: u32 = 256 * 1024;
/// Forwarded bytes after which we tell the guest about freed space without
/// being asked. A quarter of the buffer keeps the guest from ever seeing an
/// empty window while our buffer is drained (see `Connection::wants_credit_update`).
pub const CREDIT_UPDATE_THRESHOLD: u32 = CONN_BUF_SIZE / 4;

/// Identifies a connection: (guest port, host port).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ConnKey {
    /// Port on the guest side.
    pub guest_port: u32,
    /// Port on the host side (the `<uds>_<port>` suffix, or an allocated
    /// local port for host-initiated connections).
    pub host_port: u32,
}

/// Connection state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Host-initiated: REQUEST sent, waiting for the guest's RESPONSE.
    AwaitingResponse,
    /// Data flows.
    Established,
}

/// What one connection moved, logged (debug) when it ends: the packets
/// per byte and the credit traffic say whether a slow stream is the
/// guest's small writes or flow control.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// RW packets from the guest, and their payload bytes.
    pub guest_packets: u64,
    /// Payload bytes from the guest.
    pub guest_bytes: u64,
    /// RW packets to the guest.
    pub host_packets: u64,
    /// Payload bytes to the guest.
    pub host_bytes: u64,
    /// CREDIT_UPDATEs sent to the guest.
    pub credit_updates_sent: u64,
    /// CREDIT_REQUESTs from the guest.
    pub credit_requests_received: u64,
    /// Times host data waited for the guest's credit.
    pub credit_stalls: u64,
}

/// A connection between a guest vsock stream and a host Unix stream.
pub struct Connection {
    /// Host side.
    pub stream: UnixStream,
    /// State.
    pub state: ConnState,
    /// The host stream may have unread data (edge-triggered readiness not
    /// yet drained to EAGAIN).
    pub host_readable: bool,
    /// The host closed its sending side; SHUTDOWN(SEND) went to the guest.
    pub host_eof: bool,
    /// The host peer closed its whole stream (not a half-close): at its
    /// end of stream the guest gets RST (see the muxer).
    pub host_hung_up: bool,
    /// Host bytes that arrived with the CONNECT line, sent first.
    pub stash: Vec<u8>,
    /// Guest bytes not yet accepted by the host stream.
    pub tx_buf: Vec<u8>,
    /// Guest bytes forwarded to the host so far (wrapping).
    pub fwd_cnt: u32,
    /// `fwd_cnt` as last told to the guest.
    pub last_fwd_cnt_sent: u32,
    /// Guest's receive buffer size.
    pub peer_buf_alloc: u32,
    /// Guest's consumed count.
    pub peer_fwd_cnt: u32,
    /// Bytes sent to the guest so far (wrapping).
    pub rx_cnt: u32,
    /// SHUTDOWN flags received from the guest.
    pub guest_shutdown: u32,
    /// A CREDIT_REQUEST is outstanding.
    pub credit_requested: bool,
    /// A CREDIT_UPDATE is queued.
    pub credit_update_queued: bool,
    /// The key is in the muxer's receive schedule.
    pub scheduled: bool,
    /// What it moved.
    pub stats: ConnStats,
}

impl Connection {
    /// A connection in `state` over `stream`.
    pub fn new(stream: UnixStream, state: ConnState) -> Self {
        Connection {
            stream,
            state,
            host_readable: false,
            host_eof: false,
            host_hung_up: false,
            stash: Vec::new(),
            tx_buf: Vec::new(),
            fwd_cnt: 0,
            last_fwd_cnt_sent: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            rx_cnt: 0,
            guest_shutdown: 0,
            credit_requested: false,
            credit_update_queued: false,
            scheduled: false,
            stats: ConnStats::default(),
        }
    }

    /// Bytes the guest can still take.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Whether host data may be waiting to go to the guest.
    pub fn has_host_data(&self) -> bool {
        self.state == ConnState::Established
            && !self.host_eof
            && (self.host_readable || !self.stash.is_empty())
    }

    /// Writes as much of `tx_buf` to the host as it takes without blocking.
    pub fn flush_tx(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.tx_buf.len() {
            match self.stream.write(&self.tx_buf[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.tx_buf.drain(..written);
        self.fwd_cnt = self.fwd_cnt.wrapping_add(written as u32);
        Ok(())
    }

    /// Whether the guest should hear about freed buffer space now: only
    /// once our buffer is empty, so the guest's window (buf_alloc minus
    /// unreported bytes) never reaches zero while nothing is pending.
    pub fn wants_credit_update(&self) -> bool {
        self.tx_buf.is_empty()
            && !self.credit_update_queued
            && self.fwd_cnt.wrapping_sub(self.last_fwd_cnt_sent) >= CREDIT_UPDATE_THRESHOLD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_accounting_wraps() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut c = Connection::new(a, ConnState::Established);
        c.peer_buf_alloc = 1000;
        c.rx_cnt = 5u32.wrapping_sub(10); // wrapped around
        c.peer_fwd_cnt = 5u32.wrapping_sub(300);
        assert_eq!(c.peer_credit(), 710);
        c.peer_fwd_cnt = c.rx_cnt;
        assert_eq!(c.peer_credit(), 1000);
    }

    #[test]
    fn flush_counts_forwarded_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut c = Connection::new(a, ConnState::Established);
        c.tx_buf.extend_from_slice(&[7u8; 100]);
        c.flush_tx().unwrap();
        assert!(c.tx_buf.is_empty());
        assert_eq!(c.fwd_cnt, 100);
        assert!(!c.wants_credit_update());
        c.fwd_cnt = CREDIT_UPDATE_THRESHOLD;
        assert!(c.wants_credit_update());
        drop(b);
    }
}
