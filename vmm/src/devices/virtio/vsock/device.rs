//! The virtio-vsock device: moves packets between the guest's queues and
//! the [`VsockMuxer`].

use std::io::{Read, Write};
use std::os::unix::io::RawFd;
use std::path::Path;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::ByteValued;

use super::muxer::VsockMuxer;
use super::packet::{PacketHeader, HEADER_SIZE};
use crate::devices::virtio::{
    device_type, drain_queue, read_config_bytes, rx_retry, ActivateContext, ActivateError,
    VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
};
use crate::GuestMemoryMmap;

const RX: usize = 0;
const TX: usize = 1;
const QUEUE_SIZE: u16 = 256;
/// Largest payload accepted from one guest packet (Linux sends ≤ 64 KiB).
const MAX_PAYLOAD: usize = 64 * 1024;

/// The payload bytes taken from a guest packet: what its header claims,
/// but never more than the chain holds after the header, nor more than
/// [`MAX_PAYLOAD`].
fn tx_payload_len(claimed: u32, in_chain: usize) -> usize {
    usize::try_from(claimed)
        .unwrap_or(usize::MAX)
        .min(in_chain)
        .min(MAX_PAYLOAD)
}

struct Active {
    mem: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    /// Unused (berth sends no transport resets), kept for snapshots.
    event: Queue,
    interrupt: VirtioInterrupt,
}

/// The virtio-vsock device.
pub struct Vsock {
    cid: u64,
    muxer: VsockMuxer,
    active: Option<Active>,
    payload: Vec<u8>,
}

impl Vsock {
    /// A device for guest `cid` whose host side listens on `uds_path`.
    pub fn new(cid: u64, uds_path: &Path) -> std::io::Result<Self> {
        Ok(Vsock {
            cid,
            muxer: VsockMuxer::new(uds_path, cid)?,
            active: None,
            payload: Vec::with_capacity(MAX_PAYLOAD),
        })
    }

    fn process_tx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let muxer = &mut self.muxer;
        let payload = &mut self.payload;
        let mem = a.mem.clone();
        drain_queue(&mut a.tx, &mem, &a.interrupt, |chain| {
            let Ok(mut reader) = chain.reader(&mem) else {
                return 0;
            };
            let Ok(hdr) = reader.read_obj::<PacketHeader>() else {
                return 0;
            };
            let hdr = hdr.from_le();
            let len = tx_payload_len(hdr.len, reader.available_bytes());
            payload.resize(len, 0);
            if reader.read_exact(payload).is_ok() {
                muxer.handle_guest_packet(&hdr, payload);
            }
            0
        });
    }

    fn process_rx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let mem = &a.mem;
        let mut used_any = false;
        let mut idle_rounds = 0;
        while self.muxer.has_rx() {
            let Some(chain) = a.rx.pop_descriptor_chain(mem) else {
                // Ask for a kick when the driver adds buffers.
                // Ask again only while that finds buffers: a ring index
                // more than the queue size ahead claims buffers that
                // cannot be popped, and would keep this true forever
                // (found by the fuzz target; see `rx_retry`).
                if rx_retry(&mut a.rx, mem, &mut idle_rounds) {
                    continue;
                }
                break;
            };
            idle_rounds = 0;
            let head = chain.head_index();
            let mut len = 0u32;
            if let Ok(mut writer) = chain.writer(mem) {
                let cap = writer.available_bytes();
                if cap >= HEADER_SIZE {
                    match self
                        .muxer
                        .next_rx_packet(cap - HEADER_SIZE, &mut self.payload)
                    {
                        Some(hdr) => {
                            if writer.write_all(hdr.to_le().as_slice()).is_ok()
                                && writer.write_all(&self.payload).is_ok()
                            {
                                len = (HEADER_SIZE + self.payload.len()) as u32;
                            }
                        }
                        None => {
                            // Nothing after all: give the buffer back.
                            a.rx.go_to_previous_position();
                            break;
                        }
                    }
                }
            }
            if a.rx.add_used(mem, head, len).is_err() {
                break;
            }
            used_any = true;
        }
        if used_any && a.rx.needs_notification(mem).unwrap_or(true) {
            a.interrupt.signal_used_queue();
        }
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_type::VSOCK
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let got = ctx.queues.len();
        let mut queues = ctx.queues.into_iter();
        let (Some(rx), Some(tx), Some(event)) = (queues.next(), queues.next(), queues.next())
        else {
            return Err(ActivateError::QueueCount { expected: 3, got });
        };
        self.active = Some(Active {
            mem: ctx.mem,
            rx,
            tx,
            event,
            interrupt: ctx.interrupt,
        });
        // Host clients may have connected before the guest driver came up.
        self.process_rx();
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        match index {
            RX => self.process_rx(),
            TX => {
                self.process_tx();
                self.process_rx();
            }
            // The event queue only carries transport resets, which berth never sends.
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.active = None;
        self.muxer.reset();
    }

    fn queue_snapshots(&self) -> Vec<crate::devices::virtio::QueueSnapshot> {
        self.active
            .iter()
            .flat_map(|a| [&a.rx, &a.tx, &a.event])
            .map(crate::devices::virtio::QueueSnapshot::from)
            .collect()
    }

    fn snapshot_blocker(&self) -> Option<String> {
        self.muxer.snapshot_blocker()
    }

    fn host_event_fd(&self) -> Option<RawFd> {
        Some(self.muxer.poll_fd())
    }

    fn process_host_events(&mut self) {
        self.muxer.process_host_events();
        self.process_rx();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::test_thread::{on_thread, Kind};
    use crate::devices::virtio::test_utils::{null_interrupt, test_memory};
    use crate::devices::virtio::vsock::packet::{op, HOST_CID, TYPE_STREAM};
    use std::os::unix::net::UnixListener;
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const TX_BUF: u64 = 0x40_0000;
    const RX_BUF: u64 = 0x50_0000;

    #[test]
    fn guest_payload_lengths_are_bounded() {
        // The header's claim, the chain's bytes and MAX_PAYLOAD: the least.
        assert_eq!(tx_payload_len(10, 100), 10);
        assert_eq!(tx_payload_len(u32::MAX, 5), 5);
        assert_eq!(tx_payload_len(u32::MAX, 1 << 30), MAX_PAYLOAD);
        assert_eq!(tx_payload_len(100_000, 100_000), MAX_PAYLOAD);
        assert_eq!(tx_payload_len(0, 100), 0);
    }

    /// Chains shorter than a header, headers that claim more payload than
    /// the chain holds, and descriptors outside guest memory are returned
    /// unused; the device keeps working.
    #[test]
    fn malformed_tx_chains_are_returned() {
        let mut b = [0u8; 8];
        crate::devices::virtio::rng::host_random(&mut b).unwrap();
        let dir = std::env::temp_dir().join(format!("berth-vsock-bad-{:x}", u64::from_le_bytes(b)));
        std::fs::create_dir_all(&dir).unwrap();
        let uds = dir.join("v.sock");
        let mem = test_memory();
        let rxq = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
        let txq = MockSplitQueue::create(&mem, GuestAddress(0x2_0000), 16);
        let evq = MockSplitQueue::create(&mem, GuestAddress(0x3_0000), 16);
        let mut dev = Vsock::new(3, &uds).unwrap();
        {
            let ctx = ActivateContext {
                mem: mem.clone(),
                queues: vec![
                    rxq.create_queue().unwrap(),
                    txq.create_queue().unwrap(),
                    evq.create_queue().unwrap(),
                ],
                interrupt: null_interrupt(),
                acked_features: VIRTIO_F_VERSION_1,
            };
            on_thread(Kind::Vcpu, || dev.activate(ctx))
        }
        .unwrap();
        let rw = PacketHeader {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 1,
            dst_port: 2,
            len: u32::MAX,
            type_: TYPE_STREAM,
            op: op::RW,
            ..Default::default()
        };
        mem.write_obj(rw.to_le(), GuestAddress(TX_BUF)).unwrap();
        let chains: Vec<Vec<RawDescriptor>> = vec![
            vec![Descriptor::new(TX_BUF, 10, 0, 0).into()],
            vec![Descriptor::new(TX_BUF, HEADER_SIZE as u32 + 5, 0, 0).into()],
            vec![Descriptor::new(0xffff_0000_0000, 64, 0, 0).into()],
            vec![Descriptor::new(u64::MAX - 8, 64, 0, 0).into()],
        ];
        for (i, c) in chains.iter().enumerate() {
            txq.add_desc_chains(c, i as u16).unwrap();
        }
        on_thread(Kind::Events, || dev.process_queue(TX));
        let used_idx: u16 = mem.read_obj(GuestAddress(txq.used_addr().0 + 2)).unwrap();
        assert_eq!(usize::from(used_idx), chains.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Runs `f` on its own thread and fails the test if it has not
    /// returned within a minute (a device loop that spins forever).
    fn returns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the device spins on a hostile receive queue")
    }

    /// A receive ring whose available index runs further ahead than the
    /// queue has entries claims buffers that cannot be popped: with a
    /// packet for the guest pending, the device gives up instead of
    /// asking the ring forever, and delivers once the ring is sane (the
    /// `virtio_vsock` fuzz target's hang).
    #[test]
    fn rx_ring_index_far_ahead_does_not_spin() {
        let mut b = [0u8; 8];
        crate::devices::virtio::rng::host_random(&mut b).unwrap();
        let dir =
            std::env::temp_dir().join(format!("berth-vsock-spin-{:x}", u64::from_le_bytes(b)));
        std::fs::create_dir_all(&dir).unwrap();
        let mem = test_memory();
        let rxq = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
        let txq = MockSplitQueue::create(&mem, GuestAddress(0x2_0000), 16);
        let evq = MockSplitQueue::create(&mem, GuestAddress(0x3_0000), 16);
        let mut dev = Vsock::new(3, &dir.join("v.sock")).unwrap();
        {
            let ctx = ActivateContext {
                mem: mem.clone(),
                queues: vec![
                    rxq.create_queue().unwrap(),
                    txq.create_queue().unwrap(),
                    evq.create_queue().unwrap(),
                ],
                interrupt: null_interrupt(),
                acked_features: VIRTIO_F_VERSION_1,
            };
            on_thread(Kind::Vcpu, || dev.activate(ctx))
        }
        .unwrap();
        // A datagram packet: the muxer answers it with RST.
        let bad = PacketHeader {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 5,
            dst_port: 6,
            type_: 2,
            op: op::REQUEST,
            ..Default::default()
        };
        dev.muxer.handle_guest_packet(&bad, &[]);
        assert!(dev.muxer.has_rx());
        let avail_idx = GuestAddress(rxq.avail_addr().0 + 2);
        for far in [17u16, 200, u16::MAX] {
            mem.write_obj(far, avail_idx).unwrap();
            dev = returns(move || {
                on_thread(Kind::Events, || dev.process_queue(RX));
                on_thread(Kind::Events, || dev.process_host_events());
                dev
            });
            let used_idx: u16 = mem.read_obj(GuestAddress(rxq.used_addr().0 + 2)).unwrap();
            assert_eq!(used_idx, 0, "avail index {far}");
            assert!(dev.muxer.has_rx(), "the RST is still pending");
        }
        // A sane ring again: the RST arrives.
        mem.write_obj(0u16, avail_idx).unwrap();
        rxq.add_desc_chains(
            &[RawDescriptor::from(Descriptor::new(
                RX_BUF,
                4096,
                VRING_DESC_F_WRITE as u16,
                0,
            ))],
            0,
        )
        .unwrap();
        on_thread(Kind::Events, || dev.process_queue(RX));
        let used_idx: u16 = mem.read_obj(GuestAddress(rxq.used_addr().0 + 2)).unwrap();
        assert_eq!(used_idx, 1);
        let rst: PacketHeader = mem.read_obj(GuestAddress(RX_BUF)).unwrap();
        assert_eq!({ rst.from_le().op }, op::RST);
        assert!(!dev.muxer.has_rx());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn request_on_tx_is_answered_on_rx() {
        let mut b = [0u8; 8];
        crate::devices::virtio::rng::host_random(&mut b).unwrap();
        let dir = std::env::temp_dir().join(format!("berth-vsock-dev-{:x}", u64::from_le_bytes(b)));
        std::fs::create_dir_all(&dir).unwrap();
        let uds = dir.join("v.sock");
        let _listener = UnixListener::bind(dir.join("v.sock_700")).unwrap();

        let mem = test_memory();
        let rxq = MockSplitQueue::create(&mem, GuestAddress(0x1_0000), 16);
        let txq = MockSplitQueue::create(&mem, GuestAddress(0x2_0000), 16);
        let evq = MockSplitQueue::create(&mem, GuestAddress(0x3_0000), 16);
        let mut dev = Vsock::new(3, &uds).unwrap();
        let mut cid = [0u8; 8];
        on_thread(Kind::Vcpu, || dev.read_config(0, &mut cid));
        assert_eq!(u64::from_le_bytes(cid), 3);
        {
            let ctx = ActivateContext {
                mem: mem.clone(),
                queues: vec![
                    rxq.create_queue().unwrap(),
                    txq.create_queue().unwrap(),
                    evq.create_queue().unwrap(),
                ],
                interrupt: null_interrupt(),
                acked_features: VIRTIO_F_VERSION_1,
            };
            on_thread(Kind::Vcpu, || dev.activate(ctx))
        }
        .unwrap();

        // The guest offers one receive buffer.
        rxq.add_desc_chains(
            &[RawDescriptor::from(Descriptor::new(
                RX_BUF,
                4096 + HEADER_SIZE as u32,
                VRING_DESC_F_WRITE as u16,
                0,
            ))],
            0,
        )
        .unwrap();
        // ...and sends a REQUEST to host port 700.
        let req = PacketHeader {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 1234,
            dst_port: 700,
            type_: TYPE_STREAM,
            op: op::REQUEST,
            buf_alloc: 65536,
            ..Default::default()
        };
        mem.write_obj(req.to_le(), GuestAddress(TX_BUF)).unwrap();
        txq.add_desc_chains(
            &[RawDescriptor::from(Descriptor::new(
                TX_BUF,
                HEADER_SIZE as u32,
                0,
                0,
            ))],
            0,
        )
        .unwrap();
        on_thread(Kind::Events, || dev.process_queue(TX));

        let resp: PacketHeader = mem.read_obj(GuestAddress(RX_BUF)).unwrap();
        let resp = resp.from_le();
        assert_eq!(
            ({ resp.op }, { resp.src_port }, { resp.dst_port }, {
                resp.dst_cid
            }),
            (op::RESPONSE, 700, 1234, 3)
        );
        let used_len: u32 = mem.read_obj(GuestAddress(rxq.used_addr().0 + 8)).unwrap();
        assert_eq!(used_len as usize, HEADER_SIZE);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
