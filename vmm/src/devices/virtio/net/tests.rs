//! The device against hand-built descriptor chains in test memory, with a
//! real stack behind it (ARP needs no host sockets).

use std::time::{Duration, Instant};

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::devices::test_thread::{on_thread, Kind};
use crate::devices::virtio::test_utils::{null_interrupt, test_memory};
use crate::devices::virtio::{ActivateContext, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::net::{UserNetConfig, GATEWAY, GATEWAY_MAC, GUEST, GUEST_MAC};
use crate::GuestMemoryMmap;

const TX_BUF: u64 = 0x40_0000;
const RX_BUF: u64 = 0x50_0000;

fn arp_request() -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(GUEST_MAC),
        source_protocol_addr: GUEST,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: GATEWAY,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(GUEST_MAC),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

struct Rig<'a> {
    mem: &'a GuestMemoryMmap,
    rxq: MockSplitQueue<'a, GuestMemoryMmap>,
    txq: MockSplitQueue<'a, GuestMemoryMmap>,
    dev: Net,
}

fn rig(mem: &GuestMemoryMmap) -> Rig<'_> {
    let rxq = MockSplitQueue::create(mem, GuestAddress(0x1_0000), 16);
    let txq = MockSplitQueue::create(mem, GuestAddress(0x2_0000), 16);
    let mut dev = Net::new(GUEST_MAC, UserNetConfig::with_upstreams(vec![])).unwrap();
    {
        let ctx = ActivateContext {
            mem: mem.clone(),
            queues: vec![rxq.create_queue().unwrap(), txq.create_queue().unwrap()],
            interrupt: null_interrupt(),
            acked_features: VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC,
        };
        on_thread(Kind::Vcpu, || dev.activate(ctx))
    }
    .unwrap();
    Rig { mem, rxq, txq, dev }
}

impl Rig<'_> {
    fn used_idx(q: &MockSplitQueue<GuestMemoryMmap>, mem: &GuestMemoryMmap) -> u16 {
        mem.read_obj(GuestAddress(q.used_addr().0 + 2)).unwrap()
    }

    /// Used length of used-ring entry `i`.
    fn used_len(q: &MockSplitQueue<GuestMemoryMmap>, mem: &GuestMemoryMmap, i: u64) -> u32 {
        mem.read_obj(GuestAddress(q.used_addr().0 + 4 + 8 * i + 4))
            .unwrap()
    }

    /// Runs the device's host events until the RX used index reaches `n`.
    fn wait_rx(&mut self, n: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Self::used_idx(&self.rxq, self.mem) < n {
            assert!(Instant::now() < deadline, "no frame for the guest");
            std::thread::sleep(Duration::from_millis(5));
            on_thread(Kind::Events, || self.dev.process_host_events());
        }
    }
}

#[test]
fn config_space_is_the_mac() {
    let dev = Net::new(GUEST_MAC, UserNetConfig::with_upstreams(vec![])).unwrap();
    let mut mac = [0u8; 6];
    dev.read_config(0, &mut mac);
    assert_eq!(mac, GUEST_MAC);
    assert_ne!(dev.features() & VIRTIO_NET_F_MAC, 0);
    assert_eq!(dev.queue_max_sizes().len(), 2);
}

#[test]
fn arp_request_on_tx_is_answered_on_rx() {
    let mem = test_memory();
    let mut r = rig(&mem);
    // Header and frame in two descriptors, as Linux may send them.
    let frame = arp_request();
    mem.write_slice(&[0u8; NET_HDR_LEN], GuestAddress(TX_BUF))
        .unwrap();
    mem.write_slice(&frame, GuestAddress(TX_BUF + 0x100))
        .unwrap();
    r.txq
        .add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(
                    TX_BUF,
                    NET_HDR_LEN as u32,
                    VRING_DESC_F_NEXT as u16,
                    1,
                )),
                RawDescriptor::from(Descriptor::new(TX_BUF + 0x100, frame.len() as u32, 0, 0)),
            ],
            0,
        )
        .unwrap();
    r.rxq
        .add_desc_chains(
            &[RawDescriptor::from(Descriptor::new(
                RX_BUF,
                2048,
                VRING_DESC_F_WRITE as u16,
                0,
            ))],
            0,
        )
        .unwrap();
    on_thread(Kind::Events, || r.dev.process_queue(1));
    assert_eq!(Rig::used_idx(&r.txq, &mem), 1);
    r.wait_rx(1);
    let len = Rig::used_len(&r.rxq, &mem, 0) as usize;
    assert_eq!(len, NET_HDR_LEN + 42);
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(RX_BUF)).unwrap();
    assert_eq!(&buf[..NET_HDR_LEN], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    let eth = EthernetFrame::new_checked(&buf[NET_HDR_LEN..]).unwrap();
    assert_eq!(eth.src_addr(), EthernetAddress(GATEWAY_MAC));
    assert_eq!(eth.dst_addr(), EthernetAddress(GUEST_MAC));
    let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    assert!(matches!(
        arp,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            ..
        }
    ));
}

#[test]
fn malformed_chains_are_returned_empty() {
    let mem = test_memory();
    let mut r = rig(&mem);
    let chains: Vec<Vec<RawDescriptor>> = vec![
        // Shorter than the header.
        vec![Descriptor::new(TX_BUF, 4, 0, 0).into()],
        // Write-only where the device must read.
        vec![Descriptor::new(TX_BUF, 64, VRING_DESC_F_WRITE as u16, 0).into()],
        // Longer than any frame.
        vec![Descriptor::new(TX_BUF, 1 << 20, 0, 0).into()],
        // Outside guest memory.
        vec![Descriptor::new(0xffff_0000_0000, 64, 0, 0).into()],
        // Length that overflows the address.
        vec![Descriptor::new(u64::MAX - 8, 64, 0, 0).into()],
        // Header only: an empty frame (dropped by the stack).
        vec![Descriptor::new(TX_BUF, NET_HDR_LEN as u32, 0, 0).into()],
    ];
    let mut next = 0u16;
    for chain in &chains {
        r.txq.build_desc_chain(chain).unwrap();
        next += 1;
    }
    on_thread(Kind::Events, || r.dev.process_queue(1));
    assert_eq!(Rig::used_idx(&r.txq, &mem), next);
    for i in 0..u64::from(next) {
        assert_eq!(Rig::used_len(&r.txq, &mem, i), 0);
    }

    // Receive buffers that cannot take a frame: read-only, too small.
    r.rxq
        .add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(RX_BUF, 2048, 0, 0)),
                RawDescriptor::from(Descriptor::new(RX_BUF, 20, VRING_DESC_F_WRITE as u16, 0)),
            ],
            0,
        )
        .unwrap();
    // Two ARP requests, two replies: both buffers come back empty.
    let frame = arp_request();
    let mut tx = vec![0u8; NET_HDR_LEN];
    tx.extend_from_slice(&frame);
    mem.write_slice(&tx, GuestAddress(TX_BUF)).unwrap();
    for _ in 0..2 {
        r.txq
            .build_desc_chain(&[Descriptor::new(TX_BUF, tx.len() as u32, 0, 0).into()])
            .unwrap();
        on_thread(Kind::Events, || r.dev.process_queue(1));
        // One reply each: the stack answers the same request twice.
        std::thread::sleep(Duration::from_millis(50));
    }
    r.wait_rx(2);
    assert_eq!(Rig::used_len(&r.rxq, &mem, 0), 0);
    assert_eq!(Rig::used_len(&r.rxq, &mem, 1), 0);
}

/// A receive ring whose available index runs further ahead than the queue
/// has entries claims buffers that cannot be popped: with a frame for the
/// guest pending, the device gives up instead of asking the ring forever,
/// keeps the frame, and delivers it once the ring is sane (the
/// `virtio_net` fuzz target's hang).
#[test]
fn rx_ring_index_far_ahead_does_not_spin() {
    let mem = test_memory();
    let r = rig(&mem);
    let (rxq, txq, mut dev) = (r.rxq, r.txq, r.dev);
    let avail_idx = GuestAddress(rxq.avail_addr().0 + 2);
    mem.write_obj(200u16, avail_idx).unwrap();
    // An ARP request: the stack queues a reply for the guest.
    let mut tx = vec![0u8; NET_HDR_LEN];
    tx.extend_from_slice(&arp_request());
    mem.write_slice(&tx, GuestAddress(TX_BUF)).unwrap();
    txq.build_desc_chain(&[Descriptor::new(TX_BUF, tx.len() as u32, 0, 0).into()])
        .unwrap();
    let wake = dev.host_event_fd().unwrap();
    on_thread(Kind::Events, || dev.process_queue(1));
    // The stack thread signals the reply on the device's wake-up fd.
    assert!(
        crate::sys::wait_readable(wake, Duration::from_secs(30)).unwrap(),
        "no frame for the guest"
    );
    for far in [17u16, 200, u16::MAX] {
        mem.write_obj(far, avail_idx).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            on_thread(Kind::Events, || dev.process_host_events());
            on_thread(Kind::Events, || dev.process_queue(0));
            let _ = done_tx.send(dev);
        });
        dev = done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the device spins on a hostile receive queue");
        assert_eq!(Rig::used_idx(&rxq, &mem), 0, "avail index {far}");
    }
    // A sane ring again: the kept reply arrives.
    mem.write_obj(0u16, avail_idx).unwrap();
    rxq.add_desc_chains(
        &[RawDescriptor::from(Descriptor::new(
            RX_BUF,
            2048,
            VRING_DESC_F_WRITE as u16,
            0,
        ))],
        0,
    )
    .unwrap();
    on_thread(Kind::Events, || dev.process_queue(0));
    assert_eq!(Rig::used_idx(&rxq, &mem), 1);
    assert_eq!(Rig::used_len(&rxq, &mem, 0) as usize, NET_HDR_LEN + 42);
}
