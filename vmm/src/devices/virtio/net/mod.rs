//! virtio-net with user-mode networking: the guest's frames go to the
//! VMM's own TCP/IP stack ([`crate::net::UserNet`]), whose connections
//! leave through ordinary host sockets (no tap device, no root).

mod device;
#[cfg(test)]
mod tests;

pub use device::{snapshot_blocker, Net};

/// Size of `virtio_net_hdr_v1` (virtio 1.0: always with `num_buffers`).
pub const NET_HDR_LEN: usize = 12;
/// Feature bit: the device has a MAC address in its configuration space.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
