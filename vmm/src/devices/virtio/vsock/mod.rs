//! virtio-vsock: guest AF_VSOCK stream sockets, exposed on the host as Unix
//! sockets (see [`muxer`] for the conventions).

pub mod connection;
mod device;
pub mod muxer;
pub mod packet;

pub use device::Vsock;
pub use muxer::VsockMuxer;

/// The CID berth gives its guest.
pub const GUEST_CID: u64 = 3;
