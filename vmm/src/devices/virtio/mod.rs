//! virtio devices on the virtio-mmio transport.
//!
//! A device implements [`VirtioDevice`] (type, features, queue sizes,
//! config space, activation, queue processing) and knows nothing about the
//! transport; [`mmio::MmioTransport`] knows nothing device-specific; and
//! [`event_handler::VirtioEventHandler`] runs a device's queue notifications
//! (and its host-side event source, if any) on the VMM's event loop.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use virtio_queue::Queue;

use crate::hypervisor::InterruptLine;
use crate::GuestMemoryMmap;

pub mod balloon;
pub mod block;
#[cfg(target_os = "linux")]
pub mod event_handler;
// The share configuration is portable; the device (fuse-backend-rs's
// passthrough file system) is Linux-only.
pub mod fs;
pub mod mmio;
// virtio-net's wake-up from the stack thread is a Unix socket pair.
#[cfg(unix)]
pub mod net;
pub mod rng;
// The host side of vsock multiplexes Unix sockets with mio (epoll, kqueue);
// Windows (AF_UNIX through IOCP) is still to be written.
#[cfg(unix)]
pub mod vsock;
pub mod worker;

/// virtio device ids.
pub mod device_type {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
    /// Entropy source.
    pub const RNG: u32 = 4;
    /// Memory balloon (free page reporting).
    pub const BALLOON: u32 = 5;
    /// Socket device.
    pub const VSOCK: u32 = 19;
    /// File system device (virtio-fs).
    pub const FS: u32 = 26;
}

/// Feature bit: the device complies with virtio 1.0+ (mandatory for mmio v2).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Feature bit: used/avail event index interrupt suppression.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

/// Interrupt status bit: a used ring was updated.
pub const INT_USED_RING: u32 = 1;
/// Interrupt status bit: the configuration changed.
pub const INT_CONFIG: u32 = 2;

/// Errors of device activation.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver set up a queue the device cannot use.
    #[error("queue {0} is not usable")]
    BadQueue(usize),
    /// Wrong number of queues.
    #[error("expected {expected} queues, got {got}")]
    QueueCount {
        /// Queues the device has.
        expected: usize,
        /// Queues handed over.
        got: usize,
    },
    /// A host resource could not be set up.
    #[error("device setup failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The interrupt of one virtio-mmio device: the InterruptStatus register
/// shared with the transport, plus the guest interrupt line.
#[derive(Clone)]
pub struct VirtioInterrupt {
    status: Arc<AtomicU32>,
    line: Arc<dyn InterruptLine>,
}

impl VirtioInterrupt {
    /// Pairs a status register with a line.
    pub fn new(status: Arc<AtomicU32>, line: Arc<dyn InterruptLine>) -> Self {
        VirtioInterrupt { status, line }
    }

    /// Tells the driver a used ring changed.
    pub fn signal_used_queue(&self) {
        self.signal(INT_USED_RING);
    }

    /// Tells the driver the configuration changed.
    pub fn signal_config_change(&self) {
        self.signal(INT_CONFIG);
    }

    fn signal(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        // A full eventfd counter (impossible in practice) only means an
        // interrupt is already pending.
        let _ = self.line.trigger();
    }
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct ActivateContext {
    /// Guest memory.
    pub mem: GuestMemoryMmap,
    /// The queues as the driver configured them (event index already set).
    pub queues: Vec<Queue>,
    /// The device's interrupt.
    pub interrupt: VirtioInterrupt,
    /// Features the driver accepted.
    pub acked_features: u64,
}

/// A virtio device, independent of transport and event loop.
pub trait VirtioDevice: Send {
    /// virtio device id ([`device_type`]).
    fn device_type(&self) -> u32;
    /// Features offered to the driver.
    fn features(&self) -> u64;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration space (ignored by default).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts the device with the driver's queues.
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;
    /// Handles a driver notification for queue `index`.
    fn process_queue(&mut self, index: usize);
    /// Returns the device to its initial state (driver wrote status 0).
    fn reset(&mut self);
    /// A host file descriptor to watch for readability besides the queues
    /// (vsock's socket multiplexer); `None` for most devices.
    #[cfg(unix)]
    fn host_event_fd(&self) -> Option<std::os::unix::io::RawFd> {
        None
    }
    /// Called when [`Self::host_event_fd`] is readable.
    fn process_host_events(&mut self) {}
    /// The queues the active device works on, in queue order, for a
    /// snapshot (empty when not activated).
    fn queue_snapshots(&self) -> Vec<QueueSnapshot> {
        Vec::new()
    }
    /// Why the device cannot be snapshotted right now (e.g. open vsock
    /// connections, whose host ends cannot be carried over); `None`: it can.
    fn snapshot_blocker(&self) -> Option<String> {
        None
    }
}

/// The state of one virtqueue as the device last saw it (serializable form
/// of virtio-queue's `QueueState`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueSnapshot {
    /// Maximum size offered by the device.
    pub max_size: u16,
    /// Next available-ring index the device will read.
    pub next_avail: u16,
    /// Next used-ring index the device will write.
    pub next_used: u16,
    /// VIRTIO_RING_F_EVENT_IDX negotiated.
    pub event_idx: bool,
    /// Size the driver chose.
    pub size: u16,
    /// QueueReady.
    pub ready: bool,
    /// Descriptor table address.
    pub desc_table: u64,
    /// Available (driver) ring address.
    pub avail_ring: u64,
    /// Used (device) ring address.
    pub used_ring: u64,
}

impl From<&Queue> for QueueSnapshot {
    fn from(q: &Queue) -> Self {
        let s = q.state();
        QueueSnapshot {
            max_size: s.max_size,
            next_avail: s.next_avail,
            next_used: s.next_used,
            event_idx: s.event_idx_enabled,
            size: s.size,
            ready: s.ready,
            desc_table: s.desc_table,
            avail_ring: s.avail_ring,
            used_ring: s.used_ring,
        }
    }
}

impl QueueSnapshot {
    /// Rebuilds the queue (validated by virtio-queue).
    pub fn to_queue(&self) -> Result<Queue, virtio_queue::Error> {
        Queue::try_from(virtio_queue::QueueState {
            max_size: self.max_size,
            next_avail: self.next_avail,
            next_used: self.next_used,
            event_idx_enabled: self.event_idx,
            size: self.size,
            ready: self.ready,
            desc_table: self.desc_table,
            avail_ring: self.avail_ring,
            used_ring: self.used_ring,
        })
    }
}

/// Copies `data.len()` bytes of a little-endian config blob at `offset`,
/// tolerating reads past its end (they read as zero).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let off = offset as usize;
    if off < config.len() {
        let n = data.len().min(config.len() - off);
        data[..n].copy_from_slice(&config[off..off + n]);
    }
}

/// How many times in a row a queue handler asks the ring again after a
/// pop found nothing while the ring still claims buffers. A driver whose
/// available index runs more than the queue size ahead claims buffers
/// that can never be popped: asking without a bound spins the device
/// thread forever (found by the virtio fuzz targets).
pub const MAX_IDLE_ROUNDS: u32 = 4;

/// For a receive loop whose `pop_descriptor_chain` found nothing: turns
/// the driver's notifications back on and says whether to look again
/// (buffers arrived meanwhile), at most [`MAX_IDLE_ROUNDS`] times in a row.
/// The caller sets `idle_rounds` to 0 whenever a pop succeeds.
pub fn rx_retry(queue: &mut Queue, mem: &GuestMemoryMmap, idle_rounds: &mut u32) -> bool {
    use virtio_queue::QueueT;
    *idle_rounds += 1;
    matches!(queue.enable_notification(mem), Ok(true)) && *idle_rounds < MAX_IDLE_ROUNDS
}

/// Pops every available chain of `queue`, hands it to `handle` (which
/// returns the number of bytes it wrote into the chain), returns it to the
/// driver, and interrupts the driver once if it asked for it. Uses the
/// event-index protocol when negotiated, so a busy driver is not kicked
/// per buffer.
pub fn drain_queue<F>(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    interrupt: &VirtioInterrupt,
    mut handle: F,
) where
    F: FnMut(virtio_queue::DescriptorChain<&GuestMemoryMmap>) -> u32,
{
    use virtio_queue::QueueT;
    let mut used_any = false;
    let mut idle_rounds = 0;
    loop {
        if queue.disable_notification(mem).is_err() {
            break;
        }
        let mut popped = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            popped = true;
            let head = chain.head_index();
            let len = handle(chain);
            if queue.add_used(mem, head, len).is_err() {
                break;
            }
            used_any = true;
        }
        idle_rounds = if popped { 0 } else { idle_rounds + 1 };
        match queue.enable_notification(mem) {
            // More buffers arrived: another round. A driver whose ring
            // index claims buffers that cannot be popped (an index more
            // than the queue size ahead) would keep this true forever:
            // give up after a few rounds that popped nothing (found by
            // the virtio fuzz targets).
            Ok(true) if idle_rounds < MAX_IDLE_ROUNDS => continue,
            _ => break,
        }
    }
    if used_any && queue.needs_notification(mem).unwrap_or(true) {
        interrupt.signal_used_queue();
    }
}

/// Helpers for device unit tests.
#[cfg(test)]
pub(crate) mod test_utils {
    use super::*;
    use vm_memory::GuestAddress;

    struct NullLine;
    impl InterruptLine for NullLine {
        fn trigger(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// 16 MiB of guest memory.
    pub fn test_memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap()
    }

    /// An interrupt that goes nowhere.
    pub fn null_interrupt() -> VirtioInterrupt {
        VirtioInterrupt::new(Arc::new(AtomicU32::new(0)), Arc::new(NullLine))
    }
}
