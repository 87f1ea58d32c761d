//! The virtio-vsock packet header (virtio spec 5.10.6).

use vm_memory::ByteValued;

/// Size of [`PacketHeader`] on the wire.
pub const HEADER_SIZE: usize = 44;

/// The CID of the host.
pub const HOST_CID: u64 = 2;

/// Socket type: stream.
pub const TYPE_STREAM: u16 = 1;

/// Operations.
pub mod op {
    #![allow(missing_docs)]
    pub const REQUEST: u16 = 1;
    pub const RESPONSE: u16 = 2;
    pub const RST: u16 = 3;
    pub const SHUTDOWN: u16 = 4;
    pub const RW: u16 = 5;
    pub const CREDIT_UPDATE: u16 = 6;
    pub const CREDIT_REQUEST: u16 = 7;
}

/// SHUTDOWN flag: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// SHUTDOWN flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// The packet header, little-endian on the wire.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketHeader {
    /// Source CID.
    pub src_cid: u64,
    /// Destination CID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type.
    pub type_: u16,
    /// Operation.
    pub op: u16,
    /// Operation flags.
    pub flags: u32,
    /// Sender's receive buffer size.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer.
    pub fwd_cnt: u32,
}

// SAFETY: PacketHeader is repr(C, packed) of integer fields only: every bit
// pattern is valid and there is no padding.
unsafe impl ByteValued for PacketHeader {}

impl PacketHeader {
    /// Converts between wire (little-endian) and host order; an identity on
    /// little-endian hosts, which all berth hosts are.
    pub fn from_le(self) -> Self {
        PacketHeader {
            src_cid: u64::from_le(self.src_cid),
            dst_cid: u64::from_le(self.dst_cid),
            src_port: u32::from_le(self.src_port),
            dst_port: u32::from_le(self.dst_port),
            len: u32::from_le(self.len),
            type_: u16::from_le(self.type_),
            op: u16::from_le(self.op),
            flags: u32::from_le(self.flags),
            buf_alloc: u32::from_le(self.buf_alloc),
            fwd_cnt: u32::from_le(self.fwd_cnt),
        }
    }

    /// See [`Self::from_le`].
    pub fn to_le(self) -> Self {
        self.from_le()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_44_bytes() {
        assert_eq!(std::mem::size_of::<PacketHeader>(), HEADER_SIZE);
        let h = PacketHeader {
            src_cid: 3,
            dst_port: 0x0102_0304,
            op: op::RW,
            ..Default::default()
        };
        let b = h.as_slice();
        assert_eq!(b[0], 3);
        assert_eq!(&b[20..24], &[4, 3, 2, 1]);
        assert_eq!(b[30], op::RW as u8);
    }
}
