//! Targets for the VMM's virtio devices: the guest writes arbitrary
//! descriptor tables, rings and buffers into a small guest memory, then
//! notifies every queue of the device.
//!
//! Input: byte 0 holds flags (bit 0: event index negotiated; bits 1-7: a
//! config space offset the guest reads and writes), the rest is copied to
//! guest address 0. Queue `i` has its descriptor table at `i * 0x400`, its
//! available ring at `+0x100` and its used ring at `+0x200`, 16 entries
//! each; descriptors may point anywhere, in memory or not.

use berth_vmm::devices::virtio::{
    ActivateContext, QueueSnapshot, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
};
use berth_vmm::GuestMemoryMmap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, OnceLock};
use vm_memory::{Bytes, GuestAddress};

/// Guest memory size: small, so that descriptors often point past it.
const MEM_SIZE: usize = 64 << 10;
const QUEUE_SIZE: u16 = 16;

struct NullLine;

impl berth_vmm::hypervisor::InterruptLine for NullLine {
    fn trigger(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Activates `dev` over the input's memory, runs every queue twice and
/// resets the device for the next input.
fn drive(dev: &mut dyn VirtioDevice, data: &[u8]) {
    let Some((&flags, image)) = data.split_first() else {
        return;
    };
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).expect("guest memory");
    let n = image.len().min(MEM_SIZE);
    mem.write_slice(&image[..n], GuestAddress(0))
        .expect("input fits");
    let event_idx = flags & 1 != 0;
    let queues = dev
        .queue_max_sizes()
        .iter()
        .enumerate()
        .map(|(i, &max)| {
            let base = i as u64 * 0x400;
            QueueSnapshot {
                max_size: max,
                next_avail: 0,
                next_used: 0,
                event_idx,
                size: QUEUE_SIZE.min(max),
                ready: true,
                desc_table: base,
                avail_ring: base + 0x100,
                used_ring: base + 0x200,
            }
            .to_queue()
            .expect("valid queue")
        })
        .collect::<Vec<_>>();
    let nq = queues.len();
    let mut features = VIRTIO_F_VERSION_1;
    if event_idx {
        features |= VIRTIO_RING_F_EVENT_IDX;
    }
    let off = u64::from(flags >> 1);
    let mut cfg = [0u8; 8];
    dev.read_config(off, &mut cfg);
    dev.write_config(off, &image[..image.len().min(8)]);
    let interrupt = VirtioInterrupt::new(Arc::new(AtomicU32::new(0)), Arc::new(NullLine));
    let ctx = ActivateContext {
        mem,
        queues,
        interrupt,
        acked_features: features,
    };
    if dev.activate(ctx).is_ok() {
        for _ in 0..2 {
            for q in 0..nq {
                dev.process_queue(q);
            }
            dev.process_host_events();
        }
        let _ = dev.queue_snapshots();
    }
    dev.reset();
}

/// One device per process, made on first use.
fn with_device<D: VirtioDevice + 'static>(
    cell: &'static OnceLock<Mutex<D>>,
    make: impl FnOnce() -> D,
    data: &[u8],
) {
    let dev = cell.get_or_init(|| Mutex::new(make()));
    let mut dev = dev.lock().unwrap_or_else(|e| e.into_inner());
    drive(&mut *dev, data);
}

/// virtio-blk over a 64 KiB scratch disk.
pub fn fuzz_virtio_blk(data: &[u8]) {
    use berth_vmm::devices::virtio::block::Block;
    static DEV: OnceLock<Mutex<Block>> = OnceLock::new();
    with_device(
        &DEV,
        || {
            let path = crate::scratch_root().join("disk.img");
            std::fs::write(&path, vec![0u8; 64 << 10]).expect("scratch disk");
            Block::open(&path, false).expect("block device")
        },
        data,
    );
}

/// virtio-vsock with its host side on a scratch Unix socket.
pub fn fuzz_virtio_vsock(data: &[u8]) {
    use berth_vmm::devices::virtio::vsock::Vsock;
    static DEV: OnceLock<Mutex<Vsock>> = OnceLock::new();
    with_device(
        &DEV,
        || Vsock::new(3, &crate::scratch_root().join("vsock.sock")).expect("vsock device"),
        data,
    );
}

/// virtio-rng.
pub fn fuzz_virtio_rng(data: &[u8]) {
    use berth_vmm::devices::virtio::rng::Rng;
    static DEV: OnceLock<Mutex<Rng>> = OnceLock::new();
    with_device(&DEV, Rng::new, data);
}

/// virtio-balloon (free page reporting and inflate requests release the
/// input's own guest memory).
pub fn fuzz_virtio_balloon(data: &[u8]) {
    use berth_vmm::devices::virtio::balloon::Balloon;
    static DEV: OnceLock<Mutex<Balloon>> = OnceLock::new();
    with_device(&DEV, Balloon::new, data);
}

/// virtio-fs sharing a scratch directory.
pub fn fuzz_virtio_fs(data: &[u8]) {
    use berth_vmm::devices::virtio::fs::{Fs, FsConfig};
    static DEV: OnceLock<Mutex<Fs>> = OnceLock::new();
    with_device(
        &DEV,
        || {
            let path = crate::scratch_root().join("share");
            std::fs::create_dir_all(path.join("dir")).expect("share");
            std::fs::write(path.join("file"), b"hello").expect("share file");
            Fs::new(&FsConfig {
                tag: "fuzz".into(),
                path,
                read_only: false,
            })
            .expect("fs device")
        },
        data,
    );
}

/// virtio-net with its user-mode network stack (no DNS upstreams). The
/// stack opens host sockets for the guest's connections: `scripts/fuzz.sh`
/// runs this target in a new network namespace.
pub fn fuzz_virtio_net(data: &[u8]) {
    use berth_vmm::devices::virtio::net::Net;
    use berth_vmm::net::UserNetConfig;
    static DEV: OnceLock<Mutex<Net>> = OnceLock::new();
    with_device(
        &DEV,
        || {
            Net::new(
                [0x52, 0x54, 0, 0x12, 0x34, 0x56],
                UserNetConfig::with_upstreams(Vec::new()),
            )
            .expect("net device")
        },
        data,
    );
}
