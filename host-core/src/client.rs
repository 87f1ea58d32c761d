//! A blocking client of the agent protocol over any stream transport.

use crate::platform::UnixStream;
use berth_protocol::frame::{read_frame, write_frame, FrameError};
use berth_protocol::{
    ApiError, ErrorKind, Hello, HelloReply, Request, RequestEnvelope, Response, ResponseEnvelope,
    PROTOCOL_VERSION,
};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Errors talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the berth agent at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("agent protocol error: {0}")]
    Frame(#[from] FrameError),
    #[error("agent refused the connection: {0}")]
    Refused(String),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("unexpected response from agent: {0}")]
    Unexpected(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// The API error kind, when the agent reported one.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Api(e) => Some(e.kind),
            _ => None,
        }
    }
}

/// Where the agent listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A Unix socket served by the agent itself (native placement).
    Unix(PathBuf),
    /// The VMM's vsock muxer socket: `CONNECT <port>\n` first.
    VsockMux { path: PathBuf, port: u32 },
}

/// Connects to `ep`'s socket: the stream, and the vsock port still to ask
/// the muxer for (`CONNECT`) where the agent sits behind a VMM.
fn dial(ep: &Endpoint) -> Result<(UnixStream, Option<u32>), ClientError> {
    let (path, port) = match ep {
        Endpoint::Unix(p) => (p.as_path(), None),
        Endpoint::VsockMux { path, port } => (path.as_path(), Some(*port)),
    };
    let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.display().to_string(),
        source,
    })?;
    Ok((stream, port))
}

/// One connection to the agent: the transport under [`crate::engine::Engine`].
pub(crate) struct Connection {
    stream: UnixStream,
    next_id: u64,
}

impl Connection {
    pub(crate) fn open(ep: &Endpoint) -> Result<Connection, ClientError> {
        let (mut stream, port) = dial(ep)?;
        if let Some(port) = port {
            vsock_connect(&mut stream, port)?;
        }
        write_frame(
            &mut stream,
            &Hello {
                version: PROTOCOL_VERSION,
                client: format!("berth {}", env!("CARGO_PKG_VERSION")),
            },
        )?;
        let reply: HelloReply = read_frame(&mut stream)?;
        if let Some(e) = reply.error {
            return Err(ClientError::Refused(e));
        }
        Ok(Connection { stream, next_id: 1 })
    }

    /// The PID of the process at the other end of a native agent's socket
    /// (SO_PEERCRED): the agent itself. None elsewhere.
    #[cfg(target_os = "linux")]
    pub(crate) fn peer_pid(&self) -> Option<i32> {
        let cred =
            nix::sys::socket::getsockopt(&self.stream, nix::sys::socket::sockopt::PeerCredentials)
                .ok()?;
        (cred.pid() > 0).then_some(cred.pid())
    }

    #[cfg(all(unix, not(target_os = "linux")))]
    pub(crate) fn peer_pid(&self) -> Option<i32> {
        None
    }

    /// Whether an idle connection can carry another request: its peer has
    /// not closed it (an engine that exited or restarted) and has sent
    /// nothing unasked (a desynchronised stream). Only the socket's
    /// receive queue is looked at, nothing is read from it.
    #[cfg(unix)]
    pub(crate) fn idle_open(&self) -> bool {
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::AsRawFd;
        let mut b = [0u8; 1];
        matches!(
            recv(
                self.stream.as_raw_fd(),
                &mut b,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
            ),
            Err(nix::errno::Errno::EAGAIN)
        )
    }

    #[cfg(not(unix))]
    pub(crate) fn idle_open(&self) -> bool {
        false
    }

    /// Sends a request and waits for its response.
    pub(crate) fn call(&mut self, request: Request) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        write_frame(&mut self.stream, &RequestEnvelope { id, request })?;
        let resp: ResponseEnvelope = read_frame(&mut self.stream)?;
        if resp.id != id && resp.id != 0 {
            return Err(ClientError::Unexpected(format!(
                "response id {} for request {id}",
                resp.id
            )));
        }
        Ok(resp.result?)
    }

    /// Sends a stream request; after `Ready` the raw stream is returned.
    pub(crate) fn into_stream(mut self, request: Request) -> Result<UnixStream, ClientError> {
        match self.call(request)? {
            Response::Ready => Ok(self.stream),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// A stream request sent without waiting for any answer: the vsock
/// handshake line, `Hello` and the request go out in one write, so the
/// caller may send the stream's first bytes at once; [`PendingStream::ready`]
/// then reads the three answers. Where the agent sits behind a VMM (an
/// emulated guest kernel, where each round trip is an interrupt, a wakeup
/// and several system calls there) the stream starts after one round trip
/// instead of three. The muxer keeps what follows the `CONNECT` line until
/// the guest accepts, and the agent reads the frames without reading ahead.
pub(crate) struct PendingStream {
    stream: UnixStream,
    vsock_port: Option<u32>,
    id: u64,
}

impl PendingStream {
    pub(crate) fn send(ep: &Endpoint, request: Request) -> Result<PendingStream, ClientError> {
        let (mut stream, port) = dial(ep)?;
        let mut out = match port {
            Some(port) => format!("CONNECT {port}\n").into_bytes(),
            None => Vec::new(),
        };
        let id = 1;
        out.extend(berth_protocol::frame::encode(&Hello {
            version: PROTOCOL_VERSION,
            client: format!("berth {}", env!("CARGO_PKG_VERSION")),
        })?);
        out.extend(berth_protocol::frame::encode(&RequestEnvelope {
            id,
            request,
        })?);
        stream.write_all(&out)?;
        Ok(PendingStream {
            stream,
            vsock_port: port,
            id,
        })
    }

    /// Another handle on the stream, for writing while the answers are
    /// awaited.
    pub(crate) fn try_clone(&self) -> std::io::Result<UnixStream> {
        self.stream.try_clone()
    }

    /// Reads the handshake's, `Hello`'s and the request's answers; after
    /// `Ready` the raw stream is returned.
    pub(crate) fn ready(mut self) -> Result<UnixStream, ClientError> {
        if let Some(port) = self.vsock_port {
            vsock_answer(&mut self.stream, &format!("vsock port {port}: "))?;
        }
        let reply: HelloReply = read_frame(&mut self.stream)?;
        if let Some(e) = reply.error {
            return Err(ClientError::Refused(e));
        }
        let resp: ResponseEnvelope = read_frame(&mut self.stream)?;
        if resp.id != self.id && resp.id != 0 {
            return Err(ClientError::Unexpected(format!(
                "response id {} for request {}",
                resp.id, self.id
            )));
        }
        match resp.result? {
            Response::Ready => Ok(self.stream),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// Firecracker-style handshake on the VMM's vsock Unix socket.
pub fn vsock_connect(stream: &mut UnixStream, port: u32) -> Result<(), ClientError> {
    stream.write_all(format!("CONNECT {port}\n").as_bytes())?;
    vsock_answer(stream, &format!("vsock port {port}: "))
}

/// Reads the muxer's answer to a `CONNECT` line: `OK <hostport>`, or an
/// error (`what` prefixes it).
fn vsock_answer(stream: &mut UnixStream, what: &str) -> Result<(), ClientError> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 64 {
        if stream.read(&mut b)? == 0 {
            break;
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    let line = String::from_utf8_lossy(&line);
    if !line.starts_with("OK ") {
        return Err(ClientError::Refused(format!("{what}{line:?}")));
    }
    Ok(())
}
