//! Wire protocol between the `berth` CLI (host) and `berth-agent` (guest or
//! native host).
//!
//! Every connection starts with a [`Hello`] from the client and a
//! [`HelloReply`] from the agent (version check). After that the client sends
//! [`RequestEnvelope`] frames and the agent answers each with a
//! [`ResponseEnvelope`] carrying the same id. A few requests turn their
//! connection into a *stream* after the agent's first reply (blob upload,
//! container attach); such connections carry no further control traffic, so
//! bulk data never blocks control messages.
//!
//! A frame is a u32 big-endian length followed by that many bytes of JSON.
//! Attach streams use [`mux`] frames instead.

pub mod datagram;
pub mod frame;
pub mod health;
pub mod messages;
pub mod mux;
pub mod network;
pub mod reference;

pub use frame::{FrameError, MAX_FRAME_LEN};
pub use health::{Health, HealthConfig, HealthResult};
pub use messages::*;
pub use network::*;

/// Protocol version spoken by this build. Bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// vsock port the agent listens on for control and stream connections.
pub const AGENT_VSOCK_PORT: u32 = 1024;
