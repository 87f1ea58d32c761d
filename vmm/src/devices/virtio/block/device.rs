//! The virtio-blk device.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use virtio_queue::Queue;

use super::request::{execute, Disk, ID_LEN, SECTOR_SIZE};
use crate::devices::virtio::{
    device_type, drain_queue, read_config_bytes, ActivateContext, ActivateError, VirtioDevice,
    VirtioInterrupt, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
};
use crate::GuestMemoryMmap;

const QUEUE_SIZE: u16 = 256;
/// Feature bits.
const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;

/// Errors opening a disk image.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The image could not be opened or inspected.
    #[error("cannot open disk image {path}: {source}")]
    Open {
        /// The image.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

struct Active {
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: VirtioInterrupt,
}

/// A virtio-blk device over a raw image file.
pub struct Block {
    file: File,
    size: u64,
    read_only: bool,
    id: [u8; ID_LEN],
    config: Vec<u8>,
    active: Option<Active>,
}

impl Block {
    /// Opens `path` (read-write unless `read_only`). The capacity is the
    /// file size rounded down to whole sectors.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let err = |source| BlockError::Open {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        let size = meta.len() / SECTOR_SIZE * SECTOR_SIZE;
        let mut id = [0u8; ID_LEN];
        let name = super::file_io::disk_identity(path, &meta);
        let n = name.len().min(ID_LEN);
        id[..n].copy_from_slice(&name.as_bytes()[..n]);
        // Config space: capacity (sectors, u64), size_max (u32), seg_max (u32).
        let mut config = Vec::with_capacity(16);
        config.extend_from_slice(&(size / SECTOR_SIZE).to_le_bytes());
        config.extend_from_slice(&0u32.to_le_bytes());
        config.extend_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes());
        Ok(Block {
            file,
            size,
            read_only,
            id,
            config,
            active: None,
        })
    }

    /// Capacity in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }

    fn features(&self) -> u64 {
        let mut f = VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_BLK_F_SEG_MAX
            | VIRTIO_BLK_F_FLUSH;
        if self.read_only {
            f |= VIRTIO_BLK_F_RO;
        }
        f
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        let got = ctx.queues.len();
        let queue = ctx
            .queues
            .into_iter()
            .next()
            .ok_or(ActivateError::QueueCount { expected: 1, got })?;
        self.active = Some(Active {
            mem: ctx.mem,
            queue,
            interrupt: ctx.interrupt,
        });
        Ok(())
    }

    fn queue_snapshots(&self) -> Vec<super::super::QueueSnapshot> {
        self.active
            .iter()
            .map(|a| super::super::QueueSnapshot::from(&a.queue))
            .collect()
    }

    fn process_queue(&mut self, _index: usize) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let disk = Disk {
            file: &self.file,
            size: self.size,
            read_only: self.read_only,
            id: &self.id,
        };
        let mem = a.mem.clone();
        drain_queue(&mut a.queue, &mem, &a.interrupt, |chain| {
            let (Ok(reader), Ok(writer)) = (chain.clone().reader(&mem), chain.writer(&mem)) else {
                return 0;
            };
            execute(&disk, reader, writer)
        });
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::test_thread::{on_thread, Kind};
    use crate::devices::virtio::test_utils::{null_interrupt, test_memory};
    use std::io::Write;
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Address, Bytes, GuestAddress};

    const HDR: u64 = 0x10_0000;
    const DATA: u64 = 0x20_0000;
    const STATUS: u64 = 0x30_0000;

    fn temp_image(len: u64) -> (PathBuf, File) {
        let dir = std::env::temp_dir().join(format!(
            "berth-blk-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("disk.img");
        let f = File::create(&path).unwrap();
        f.set_len(len).unwrap();
        (path, f)
    }

    fn rand_suffix() -> u64 {
        let mut b = [0u8; 8];
        crate::devices::virtio::rng::host_random(&mut b).unwrap();
        u64::from_le_bytes(b)
    }

    fn header(kind: u32, sector: u64) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        h
    }

    /// Runs one request (header, data descriptor, status) and returns
    /// (status, used length).
    fn run_request(
        dev: &mut Block,
        mem: &GuestMemoryMmap,
        kind: u32,
        sector: u64,
        data_len: u32,
        data_writable: bool,
    ) -> (u8, u32) {
        let vq = MockSplitQueue::new(mem, 16);
        mem.write_slice(&header(kind, sector), GuestAddress(HDR))
            .unwrap();
        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let data_flags = if data_writable {
            VRING_DESC_F_WRITE as u16
        } else {
            0
        };
        let mut descs = vec![RawDescriptor::from(Descriptor::new(HDR, 16, 0, 0))];
        if data_len > 0 {
            descs.push(RawDescriptor::from(Descriptor::new(
                DATA, data_len, data_flags, 0,
            )));
        }
        descs.push(RawDescriptor::from(Descriptor::new(
            STATUS,
            1,
            VRING_DESC_F_WRITE as u16,
            0,
        )));
        // Chain them.
        let n = descs.len();
        let descs: Vec<RawDescriptor> = descs
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let d = Descriptor::from(d);
                let (flags, next) = if i + 1 < n {
                    (
                        d.flags()
                            | virtio_bindings::bindings::virtio_ring::VRING_DESC_F_NEXT as u16,
                        i as u16 + 1,
                    )
                } else {
                    (d.flags(), 0)
                };
                RawDescriptor::from(Descriptor::new(d.addr().raw_value(), d.len(), flags, next))
            })
            .collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        {
            let ctx = ActivateContext {
                mem: mem.clone(),
                queues: vec![vq.create_queue().unwrap()],
                interrupt: null_interrupt(),
                acked_features: VIRTIO_F_VERSION_1,
            };
            on_thread(Kind::Vcpu, || dev.activate(ctx))
        }
        .unwrap();
        on_thread(Kind::Events, || dev.process_queue(0));
        let status: u8 = mem.read_obj(GuestAddress(STATUS)).unwrap();
        let used_len: u32 = mem.read_obj(vq.used_addr().unchecked_add(8)).unwrap();
        (status, used_len)
    }

    #[test]
    fn write_read_flush_get_id() {
        let (path, _f) = temp_image(1 << 20);
        let mem = test_memory();
        let mut dev = Block::open(&path, false).unwrap();
        let mut cap = [0u8; 8];
        dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), (1 << 20) / 512);

        let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        mem.write_slice(&pattern, GuestAddress(DATA)).unwrap();
        assert_eq!(
            run_request(&mut dev, &mem, 1, 8, 4096, false),
            (STATUS_OK_, 1)
        );
        let mut on_disk = vec![0u8; 4096];
        let n = super::super::file_io::read_at(&File::open(&path).unwrap(), &mut on_disk, 8 * 512)
            .unwrap();
        assert_eq!(n, on_disk.len());
        assert_eq!(on_disk, pattern);

        // Host changes the file; the guest reads it back.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        super::super::file_io::write_all_at(&f, b"from-host", 16 * 512).unwrap();
        assert_eq!(
            run_request(&mut dev, &mem, 0, 16, 512, true),
            (STATUS_OK_, 513)
        );
        let mut got = [0u8; 9];
        mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        assert_eq!(&got, b"from-host");

        assert_eq!(run_request(&mut dev, &mem, 4, 0, 0, false), (STATUS_OK_, 1));
        assert_eq!(
            run_request(&mut dev, &mem, 8, 0, 20, true),
            (STATUS_OK_, 21)
        );
        let mut id = [0u8; 6];
        mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id, b"berth-");
        // Unsupported request type; out-of-range read.
        assert_eq!(run_request(&mut dev, &mem, 99, 0, 0, false).0, 2);
        assert_eq!(run_request(&mut dev, &mem, 0, 2047, 1024, true).0, 1);
        let _ = std::io::stdout().flush();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    const STATUS_OK_: u8 = 0;

    /// Sector ranges the guest asks for are bounded by the capacity: the
    /// last sector is fine, one byte past it, a sector whose byte offset
    /// overflows, and sectors far past the end are I/O errors that touch
    /// neither the file nor guest memory beyond the status byte.
    #[test]
    fn sector_ranges_are_bounded_by_the_capacity() {
        let (path, f) = temp_image(64 * 1024);
        let mem = test_memory();
        let mut dev = Block::open(&path, false).unwrap();
        let last = 64 * 1024 / 512 - 1;
        mem.write_slice(&[0x5a; 1024], GuestAddress(DATA)).unwrap();
        assert_eq!(
            run_request(&mut dev, &mem, 1, last, 512, false).0,
            STATUS_OK_
        );
        assert_eq!(
            run_request(&mut dev, &mem, 0, last, 512, true).0,
            STATUS_OK_
        );
        for (sector, len) in [
            (last, 1024),              // one sector past the end
            (last + 1, 512),           // starts at the end
            (u64::MAX / 512 + 1, 512), // sector * 512 overflows
            (u64::MAX, 512),
            ((u64::MAX - 100) / 512, 512), // offset + length overflows
        ] {
            assert_eq!(
                run_request(&mut dev, &mem, 1, sector, len, false).0,
                1,
                "write {sector}"
            );
            assert_eq!(
                run_request(&mut dev, &mem, 0, sector, len, true).0,
                1,
                "read {sector}"
            );
        }
        // The file did not grow.
        assert_eq!(f.metadata().unwrap().len(), 64 * 1024);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn read_only_refuses_writes() {
        let (path, _f) = temp_image(64 * 1024);
        let mem = test_memory();
        let mut dev = Block::open(&path, true).unwrap();
        assert_ne!(dev.features() & VIRTIO_BLK_F_RO, 0);
        assert_eq!(run_request(&mut dev, &mem, 1, 0, 512, false).0, 1);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
