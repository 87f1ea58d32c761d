//! The virtio-net device: queue 0 receives (stack → guest), queue 1
//! transmits (guest → stack). No offloads: the guest sends and receives
//! whole, checksummed frames of at most 1514 bytes; the 12-byte header is
//! zero on receive (but for `num_buffers` = 1) and ignored on transmit.

use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use virtio_queue::{Queue, QueueT};

use super::{NET_HDR_LEN, VIRTIO_NET_F_MAC};
use crate::devices::virtio::{
    device_type, drain_queue, read_config_bytes, rx_retry, ActivateContext, ActivateError,
    VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
};
use crate::net::{NetError, UserNet, UserNetConfig, UserNetThread, MAX_FRAME};
use crate::GuestMemoryMmap;

const RX: usize = 0;
const TX: usize = 1;
const QUEUE_SIZE: u16 = 256;
/// Largest frame taken from the guest (a VLAN tag's worth over the MTU).
const MAX_TX_FRAME: usize = MAX_FRAME + 4;

struct Active {
    mem: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    interrupt: VirtioInterrupt,
}

/// A virtio-net device backed by a user-mode network stack.
pub struct Net {
    mac: [u8; 6],
    stack: UserNetThread,
    /// Readable when the stack queued frames for the guest.
    wake_rx: UnixStream,
    active: Option<Active>,
    frame: Vec<u8>,
}

impl Net {
    /// A device with guest MAC `mac` whose frames go to a new stack set up
    /// with `config` (running on its own thread).
    pub fn new(mac: [u8; 6], config: UserNetConfig) -> Result<Self, NetError> {
        let (wake_rx, wake_tx) = UnixStream::pair().map_err(NetError::Poller)?;
        wake_rx.set_nonblocking(true).map_err(NetError::Poller)?;
        wake_tx.set_nonblocking(true).map_err(NetError::Poller)?;
        let stack = UserNetThread::spawn(
            UserNet::new(config)?,
            Box::new(move || {
                // A full socket buffer means a wake-up is already pending.
                let _ = (&wake_tx).write(&[1]);
            }),
        )?;
        Ok(Net {
            mac,
            stack,
            wake_rx,
            active: None,
            frame: Vec::with_capacity(MAX_TX_FRAME),
        })
    }

    fn process_tx(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let (stack, frame) = (&self.stack, &mut self.frame);
        let mem = a.mem.clone();
        drain_queue(&mut a.tx, &mem, &a.interrupt, |chain| {
            let Ok(mut reader) = chain.reader(&mem) else {
                return 0;
            };
            let total = reader.available_bytes();
            if total < NET_HDR_LEN || total - NET_HDR_LEN > MAX_TX_FRAME {
                return 0;
            }
            frame.resize(total, 0);
            if reader.read_exact(frame).is_ok() {
                // A full stack queue drops the frame, as a busy NIC does.
                stack.send_frame(&frame[NET_HDR_LEN..]);
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
        while let Some(frame) = self.stack.recv_frame() {
            let Some(chain) = a.rx.pop_descriptor_chain(mem) else {
                self.stack.unrecv_frame(frame);
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
                // A buffer too small for the frame gets nothing and the
                // frame is dropped (Linux always offers 1518 + header).
                if writer.available_bytes() >= NET_HDR_LEN + frame.len() {
                    let mut hdr = [0u8; NET_HDR_LEN];
                    hdr[10] = 1; // num_buffers, little-endian
                    if writer.write_all(&hdr).is_ok() && writer.write_all(&frame).is_ok() {
                        len = (NET_HDR_LEN + frame.len()) as u32;
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

/// Why a device whose stack holds `flows` TCP connections and UDP flows,
/// with `pending` frames from the guest unread, cannot be snapshotted:
/// their host sockets cannot be carried over (a clone's stack starts
/// empty, and the guest would keep connections nobody serves), and an
/// unread frame may open one. `None` when both are zero (a guest that was
/// idle on the network, as berth's is when its agent is ready). Frames
/// queued for the guest are not saved: a clone loses them as a lossy
/// link would, and the guest's TCP resends.
pub fn snapshot_blocker(flows: usize, pending: usize) -> Option<String> {
    if flows > 0 {
        return Some(format!(
            "virtio-net: the user-mode network stack has {flows} open connection(s) or flow(s), whose host sockets a snapshot cannot carry"
        ));
    }
    if pending > 0 {
        return Some(format!(
            "virtio-net: {pending} frame(s) from the guest not yet handled by the user-mode network stack"
        ));
    }
    None
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_type::NET
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | VIRTIO_NET_F_MAC
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.mac, offset, data);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let got = ctx.queues.len();
        let mut queues = ctx.queues.into_iter();
        let (Some(rx), Some(tx)) = (queues.next(), queues.next()) else {
            return Err(ActivateError::QueueCount { expected: 2, got });
        };
        self.active = Some(Active {
            mem: ctx.mem,
            rx,
            tx,
            interrupt: ctx.interrupt,
        });
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
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.active = None;
        while self.stack.recv_frame().is_some() {}
    }

    fn queue_snapshots(&self) -> Vec<crate::devices::virtio::QueueSnapshot> {
        self.active
            .iter()
            .flat_map(|a| [&a.rx, &a.tx])
            .map(crate::devices::virtio::QueueSnapshot::from)
            .collect()
    }

    fn snapshot_blocker(&self) -> Option<String> {
        snapshot_blocker(self.stack.flows(), self.stack.pending_from_guest())
    }

    fn host_event_fd(&self) -> Option<RawFd> {
        Some(self.wake_rx.as_raw_fd())
    }

    fn process_host_events(&mut self) {
        let mut buf = [0u8; 64];
        while matches!((&self.wake_rx).read(&mut buf), Ok(n) if n > 0) {}
        self.process_rx();
    }
}
