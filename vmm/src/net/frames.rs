//! Frame queues between the guest and smoltcp, and the few frames the
//! stack builds itself (UDP replies, which need no socket state).

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

use super::{MAX_FRAME, MAX_QUEUED_FRAMES};

/// Ethernet (14) + IPv4 (20) + UDP (8) headers.
const UDP_HEADERS: usize = 14 + 20 + 8;
/// Largest UDP payload that fits one frame.
pub const MAX_UDP_PAYLOAD: usize = MAX_FRAME - UDP_HEADERS;

/// smoltcp's view of the guest link: `rx` holds frames from the guest,
/// `tx` frames for the guest.
#[derive(Default)]
pub struct FrameQueue {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
}

impl FrameQueue {
    /// Queues a frame for smoltcp; false (dropped) when the queue is full.
    pub fn push_rx(&mut self, frame: &[u8]) -> bool {
        if self.rx.len() >= MAX_QUEUED_FRAMES {
            return false;
        }
        self.rx.push_back(frame.to_vec());
        true
    }

    /// Queues a frame for the guest; false (dropped) when the queue is full.
    pub fn push_tx(&mut self, frame: Vec<u8>) -> bool {
        if self.tx.len() >= MAX_QUEUED_FRAMES {
            return false;
        }
        self.tx.push_back(frame);
        true
    }
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = vec![0u8; len];
        let r = f(&mut buf);
        self.0.push_back(buf);
        r
    }
}

impl phy::Device for FrameQueue {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        // A reply must have room: leave the frame queued until it has.
        if self.tx.len() >= MAX_QUEUED_FRAMES {
            return None;
        }
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        // Backpressure: sockets keep their data until the guest takes frames.
        (self.tx.len() < MAX_QUEUED_FRAMES).then_some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}

/// Builds the Ethernet frame of a UDP datagram from `from` (as the guest
/// addressed it) to the guest's `to`; `None` when the payload does not fit
/// one frame.
pub fn udp_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    from: SocketAddrV4,
    to: SocketAddrV4,
    payload: &[u8],
) -> Option<Vec<u8>> {
    if payload.len() > MAX_UDP_PAYLOAD {
        return None;
    }
    let udp = UdpRepr {
        src_port: from.port(),
        dst_port: to.port(),
    };
    let ip = Ipv4Repr {
        src_addr: *from.ip(),
        dst_addr: *to.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + ip.payload_len];
    let caps = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &caps);
    let mut datagram = UdpPacket::new_unchecked(packet.payload_mut());
    udp.emit(
        &mut datagram,
        &IpAddress::Ipv4(*from.ip()),
        &IpAddress::Ipv4(*to.ip()),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    Some(buf)
}

/// An ARP request from `mac`/`src` for `target`.
pub fn arp_request(
    mac: EthernetAddress,
    src: std::net::Ipv4Addr,
    target: std::net::Ipv4Addr,
) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: src,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let eth = EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}
