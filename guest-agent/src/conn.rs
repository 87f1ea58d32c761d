//! The byte stream a request arrived on: the transports (Unix socket,
//! vsock, serial) implement it and the server reads requests from it and
//! streams (copy, attach, logs) on it. The engine never sees it.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

/// A connected stream the server can split for proxying.
pub trait Conn: Read + Write + Send + 'static {
    fn try_clone_conn(&self) -> std::io::Result<Box<dyn Conn>>;
    fn shutdown_write(&self);
    /// The socket under the stream, for splice(2) ([`crate::splice`]);
    /// `None` where the stream is not a socket one may splice (serial).
    fn stream_fd(&self) -> Option<RawFd> {
        None
    }
}

impl Conn for UnixStream {
    fn try_clone_conn(&self) -> std::io::Result<Box<dyn Conn>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn stream_fd(&self) -> Option<RawFd> {
        Some(self.as_raw_fd())
    }
    fn shutdown_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Bytes one [`relay`] read may take: a whole vsock packet (Linux's
/// virtio-vsock sends up to 64 KiB in one).
pub const RELAY_CHUNK: usize = 64 * 1024;

/// Copies `from` to `to` until EOF, as `std::io::copy` does, but through a
/// [`RELAY_CHUNK`] buffer: std's 8 KiB one cut whatever had piled up into
/// 8 KiB writes, each a vsock packet and every one an emulated guest
/// system call, interrupt and host round trip where the guest kernel is
/// emulated (kvm_pvm). Returns the bytes copied.
pub fn relay(from: &mut dyn Read, to: &mut dyn Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; RELAY_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// How [`pump`] moved the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// All through splice(2).
    Spliced,
    /// Through [`relay`]'s buffer: no descriptor for one end, or splice
    /// refused (possibly after some bytes went through splice).
    Relayed,
}

/// Moves `from` to `to` until EOF or an error, as [`relay`] does, but
/// with splice(2) where both ends have a descriptor (`from_fd`, `to_fd`:
/// the same streams' sockets) and the kernel splices between them: the
/// bytes are copied once in the kernel instead of into a user-space buffer
/// and out again (vsock ↔ TCP in the guest, where every kernel copy is
/// emulated on kvm_pvm hosts). Neither end is shut down here.
pub fn pump(
    from: &mut dyn Read,
    from_fd: Option<RawFd>,
    to: &mut dyn Write,
    to_fd: Option<RawFd>,
) -> std::io::Result<Moved> {
    if let (Some(src), Some(dst)) = (from_fd, to_fd) {
        if crate::splice::forward(&src, &dst) == crate::splice::End::Done {
            return Ok(Moved::Spliced);
        }
    }
    relay(from, to).map(|_| Moved::Relayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket with bytes queued: each read takes what fits.
    struct Queued(Vec<u8>);

    impl Read for Queued {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(n)
        }
    }

    /// Counts and keeps the writes.
    #[derive(Default)]
    struct Writes(Vec<usize>, Vec<u8>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.push(buf.len());
            self.1.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Bytes that piled up go out in 64 KiB writes (vsock packets), not
    /// std's 8 KiB, all of them, in order.
    #[test]
    fn relay_moves_piled_up_bytes_in_whole_packets() {
        let data: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
        let mut w = Writes::default();
        let n = relay(&mut Queued(data.clone()), &mut w).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(w.1, data);
        assert_eq!(w.0, vec![RELAY_CHUNK, RELAY_CHUNK, RELAY_CHUNK, 8 * 1024]);
    }

    /// [`pump`] between a Unix stream (as the agent's vsock stream) and a
    /// TCP connection, both ways: every byte, in order, through splice
    /// (not the buffer), and the EOF ends it; with no descriptor for an
    /// end it relays the same bytes.
    #[test]
    fn pump_splices_between_stream_sockets_and_relays_without_descriptors() {
        use std::net::{TcpListener, TcpStream};
        use std::os::unix::net::UnixStream;
        let data: Vec<u8> = (0..3 * 1024 * 1024 + 5u32)
            .map(|i| (i % 253) as u8)
            .collect();
        for splice in [true, false] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut tcp_near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (tcp_far, _) = listener.accept().unwrap();
            let (mut unix_near, unix_far) = UnixStream::pair().unwrap();
            // Host → container: unix_near → pump → tcp_far → tcp_near.
            let sent = data.clone();
            let writer = std::thread::spawn(move || {
                unix_near.write_all(&sent).unwrap();
                unix_near.shutdown(Shutdown::Write).unwrap();
                unix_near
            });
            let (mut from, mut to) = (unix_far.try_clone().unwrap(), tcp_far.try_clone().unwrap());
            let (from_fd, to_fd) = if splice {
                (Some(from.as_raw_fd()), Some(to.as_raw_fd()))
            } else {
                (None, Some(to.as_raw_fd()))
            };
            let pumper = std::thread::spawn(move || {
                let moved = pump(&mut from, from_fd, &mut to, to_fd).unwrap();
                to.shutdown(Shutdown::Write).unwrap();
                moved
            });
            let mut got = Vec::new();
            tcp_near.read_to_end(&mut got).unwrap();
            let want = if splice {
                Moved::Spliced
            } else {
                Moved::Relayed
            };
            assert_eq!(pumper.join().unwrap(), want);
            assert!(
                got == data,
                "{} of {} bytes, or out of order",
                got.len(),
                data.len()
            );
            // Container → host: tcp_near → pump → unix_far → unix_near.
            let mut unix_near = writer.join().unwrap();
            let sent = data.clone();
            let writer = std::thread::spawn(move || {
                tcp_near.write_all(&sent).unwrap();
                tcp_near.shutdown(Shutdown::Write).unwrap();
            });
            let (mut from, mut to) = (tcp_far, unix_far);
            let (from_fd, to_fd) = (Some(from.as_raw_fd()), splice.then(|| to.as_raw_fd()));
            let pumper = std::thread::spawn(move || {
                let moved = pump(&mut from, from_fd, &mut to, to_fd).unwrap();
                to.shutdown(Shutdown::Write).unwrap();
                moved
            });
            let mut got = Vec::new();
            unix_near.read_to_end(&mut got).unwrap();
            assert_eq!(pumper.join().unwrap(), want);
            assert!(
                got == data,
                "{} of {} bytes, or out of order",
                got.len(),
                data.len()
            );
            writer.join().unwrap();
        }
    }
}
