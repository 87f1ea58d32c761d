//! The byte stream a request arrived on: the transports (Unix socket,
//! vsock, serial) implement it and the server reads requests from it and
//! streams (copy, attach, logs) on it. The engine never sees it.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

/// A connected stream the server can split for proxying.
pub trait Conn: Read + Write + Send + 'static {
    fn try_clone_conn(&self) -> std::io::Result<Box<dyn Conn>>;
    fn shutdown_write(&self);
}

impl Conn for UnixStream {
    fn try_clone_conn(&self) -> std::io::Result<Box<dyn Conn>> {
        Ok(Box::new(self.try_clone()?))
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
}
