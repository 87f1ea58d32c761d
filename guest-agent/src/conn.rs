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
