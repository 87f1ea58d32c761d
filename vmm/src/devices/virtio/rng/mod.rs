//! virtio-rng: an entropy source backed by the host's CSPRNG (getrandom(2),
//! getentropy(3), BCryptGenRandom — through the `getrandom` crate).

use virtio_queue::Queue;

use super::{
    device_type, drain_queue, ActivateContext, ActivateError, VirtioDevice, VirtioInterrupt,
    VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
};
use crate::GuestMemoryMmap;

const QUEUE_SIZE: u16 = 64;
/// Largest amount of entropy handed out per request.
const MAX_REQUEST: usize = 64 * 1024;

/// Fills `buf` from the host's entropy pool.
pub fn host_random(buf: &mut [u8]) -> std::io::Result<()> {
    getrandom::fill(buf).map_err(std::io::Error::from)
}

struct Active {
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: VirtioInterrupt,
}

/// The virtio-rng device.
#[derive(Default)]
pub struct Rng {
    active: Option<Active>,
}

impl Rng {
    /// A new, inactive device.
    pub fn new() -> Self {
        Rng::default()
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_type::RNG
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
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

    fn queue_snapshots(&self) -> Vec<super::QueueSnapshot> {
        self.active
            .iter()
            .map(|a| super::QueueSnapshot::from(&a.queue))
            .collect()
    }

    fn process_queue(&mut self, _index: usize) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let mem = a.mem.clone();
        drain_queue(&mut a.queue, &mem, &a.interrupt, |chain| {
            let Ok(mut writer) = chain.writer(&mem) else {
                return 0;
            };
            let mut buf = vec![0u8; writer.available_bytes().min(MAX_REQUEST)];
            if host_random(&mut buf).is_err() {
                return 0;
            }
            use std::io::Write;
            match writer.write_all(&buf) {
                Ok(()) => buf.len() as u32,
                Err(_) => 0,
            }
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
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::QueueT;
    use vm_memory::{Address, Bytes, GuestAddress};

    #[test]
    fn fills_writable_buffers() {
        let mem = test_memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let descs = [RawDescriptor::from(Descriptor::new(
            0x10_0000,
            256,
            VRING_DESC_F_WRITE as u16,
            0,
        ))];
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut rng = Rng::new();
        let queue: Queue = vq.create_queue().unwrap();
        {
            let ctx = ActivateContext {
                mem: mem.clone(),
                queues: vec![queue],
                interrupt: null_interrupt(),
                acked_features: VIRTIO_F_VERSION_1,
            };
            on_thread(Kind::Vcpu, || rng.activate(ctx))
        }
        .unwrap();
        on_thread(Kind::Events, || rng.process_queue(0));
        let mut out = [0u8; 256];
        mem.read_slice(&mut out, GuestAddress(0x10_0000)).unwrap();
        assert!(out.iter().any(|b| *b != 0));
        let q = &rng.active.as_ref().unwrap().queue;
        assert_eq!(q.next_used(), 1);
        let used_len: u32 = mem.read_obj(vq.used_addr().unchecked_add(4 + 4)).unwrap();
        assert_eq!(used_len, 256);
    }

    /// A guest buffer larger than MAX_REQUEST gets MAX_REQUEST bytes (one
    /// request cannot make the host allocate and fill megabytes); a
    /// read-only buffer and one outside guest memory get nothing.
    #[test]
    fn request_sizes_are_bounded() {
        let mem = test_memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let w = VRING_DESC_F_WRITE as u16;
        let descs = [
            RawDescriptor::from(Descriptor::new(0x10_0000, 1 << 20, w, 0)),
            RawDescriptor::from(Descriptor::new(0x10_0000, 64, 0, 0)),
            RawDescriptor::from(Descriptor::new(0xffff_0000_0000, 64, w, 0)),
        ];
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut rng = Rng::new();
        {
            let ctx = ActivateContext {
                mem: mem.clone(),
                queues: vec![vq.create_queue().unwrap()],
                interrupt: null_interrupt(),
                acked_features: VIRTIO_F_VERSION_1,
            };
            on_thread(Kind::Vcpu, || rng.activate(ctx))
        }
        .unwrap();
        on_thread(Kind::Events, || rng.process_queue(0));
        let used = |i: u64| -> u32 {
            mem.read_obj(vq.used_addr().unchecked_add(4 + 8 * i + 4))
                .unwrap()
        };
        assert_eq!(used(0) as usize, MAX_REQUEST);
        assert_eq!((used(1), used(2)), (0, 0));
        // Nothing past MAX_REQUEST was written.
        let mut tail = vec![0u8; 4096];
        mem.read_slice(&mut tail, GuestAddress(0x10_0000 + MAX_REQUEST as u64))
            .unwrap();
        assert!(tail.iter().all(|b| *b == 0));
    }
}
