//! virtio-mmio transport, version 2 (virtio 1.x "modern" register layout).
//!
//! Knows the register file and the device status state machine; everything
//! device-specific goes through [`VirtioDevice`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};

use super::{
    ActivateContext, QueueSnapshot, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1,
    VIRTIO_RING_F_EVENT_IDX,
};
use crate::devices::notify::QueueNotifier;
use crate::devices::BusDevice;
use crate::hypervisor::InterruptLine;
use crate::GuestMemoryMmap;

/// "virt".
const MAGIC: u32 = 0x7472_6976;
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0;

/// Register offsets.
pub mod reg {
    #![allow(missing_docs)]
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// Device status bits.
pub mod status {
    #![allow(missing_docs)]
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

/// The transport's registers and its device's queues, for snapshots.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MmioState {
    /// virtio device id (checked on restore).
    pub device_type: u32,
    /// DeviceFeaturesSel.
    pub device_features_sel: u32,
    /// Features the driver wrote.
    pub driver_features: u64,
    /// DriverFeaturesSel.
    pub driver_features_sel: u32,
    /// QueueSel.
    pub queue_sel: u32,
    /// Device status.
    pub status: u32,
    /// ConfigGeneration.
    pub config_generation: u32,
    /// InterruptStatus (pending, not yet acknowledged).
    pub interrupt_status: u32,
    /// The device was activated (DRIVER_OK accepted).
    pub activated: bool,
    /// Before activation the queues being configured; after, the queues as
    /// the device last used them (avail/used indices).
    pub queues: Vec<QueueSnapshot>,
}

/// The virtio-mmio register file of one device.
pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemoryMmap,
    interrupt: VirtioInterrupt,
    interrupt_status: Arc<AtomicU32>,
    queue_evts: Vec<QueueNotifier>,
    queues: Vec<Queue>,
    max_sizes: Vec<u16>,
    device_type: u32,
    device_features: u64,
    device_features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    status: u32,
    config_generation: u32,
    activated: bool,
}

impl MmioTransport {
    /// Wraps `device`, raising `irq` for its interrupts.
    pub fn new(
        device: Arc<Mutex<dyn VirtioDevice>>,
        mem: GuestMemoryMmap,
        irq: Arc<dyn InterruptLine>,
    ) -> std::io::Result<Self> {
        let (device_type, device_features, max_sizes) = {
            let d = device.lock().unwrap_or_else(|e| e.into_inner());
            (d.device_type(), d.features(), d.queue_max_sizes().to_vec())
        };
        let queue_evts = max_sizes
            .iter()
            .map(|_| QueueNotifier::new())
            .collect::<std::io::Result<Vec<_>>>()?;
        let interrupt_status = Arc::new(AtomicU32::new(0));
        Ok(MmioTransport {
            device,
            mem,
            interrupt: VirtioInterrupt::new(interrupt_status.clone(), irq),
            interrupt_status,
            queue_evts,
            queues: Self::fresh_queues(&max_sizes),
            max_sizes,
            device_type,
            device_features,
            device_features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            status: 0,
            config_generation: 0,
            activated: false,
        })
    }

    fn fresh_queues(max_sizes: &[u16]) -> Vec<Queue> {
        max_sizes
            .iter()
            // Sizes come from devices and are powers of two; fall back to
            // a minimal queue rather than panic on a buggy device.
            .map(|s| Queue::new(*s).unwrap_or_else(|_| Queue::new(1).expect("size 1 is valid")))
            .collect()
    }

    /// The per-queue notifiers (index = queue).
    pub fn queue_evts(&self) -> &[QueueNotifier] {
        &self.queue_evts
    }

    /// The device behind this transport.
    pub fn device(&self) -> Arc<Mutex<dyn VirtioDevice>> {
        self.device.clone()
    }

    /// Saves registers and queues. Fails when the device cannot be
    /// snapshotted now ([`VirtioDevice::snapshot_blocker`]).
    pub fn save_state(&self) -> Result<MmioState, String> {
        let d = self.device.lock().unwrap_or_else(|e| e.into_inner());
        self.save_state_with(&*d)
    }

    /// [`Self::save_state`] with the device already locked by the caller
    /// (`device` must be this transport's device).
    pub fn save_state_with(&self, d: &dyn VirtioDevice) -> Result<MmioState, String> {
        let queues = if self.activated {
            if let Some(why) = d.snapshot_blocker() {
                return Err(why);
            }
            d.queue_snapshots()
        } else {
            self.queues.iter().map(QueueSnapshot::from).collect()
        };
        Ok(MmioState {
            device_type: self.device_type,
            device_features_sel: self.device_features_sel,
            driver_features: self.driver_features,
            driver_features_sel: self.driver_features_sel,
            queue_sel: self.queue_sel,
            status: self.status,
            config_generation: self.config_generation,
            interrupt_status: self.interrupt_status.load(Ordering::SeqCst),
            activated: self.activated,
            queues,
        })
    }

    /// Loads a saved state into this (fresh) transport: re-activates the
    /// device with the saved queues, re-raises a pending interrupt and
    /// kicks every queue once, so a notification the device had not
    /// processed when the snapshot was taken is not lost.
    pub fn restore_state(&mut self, s: &MmioState) -> Result<(), String> {
        if s.device_type != self.device_type {
            return Err(format!(
                "virtio device type {} in the snapshot, {} here",
                s.device_type, self.device_type
            ));
        }
        if s.queues.len() != self.max_sizes.len() {
            return Err(format!(
                "virtio device {}: {} queues in the snapshot, {} here",
                self.device_type,
                s.queues.len(),
                self.max_sizes.len()
            ));
        }
        let queues = s
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| {
                q.to_queue()
                    .map_err(|e| format!("virtio device {} queue {i}: {e:?}", self.device_type))
            })
            .collect::<Result<Vec<Queue>, String>>()?;
        self.device_features_sel = s.device_features_sel;
        self.driver_features = s.driver_features;
        self.driver_features_sel = s.driver_features_sel;
        self.queue_sel = s.queue_sel;
        self.status = s.status;
        self.config_generation = s.config_generation;
        self.interrupt_status
            .store(s.interrupt_status, Ordering::SeqCst);
        if s.activated {
            self.queues = Self::fresh_queues(&self.max_sizes);
            for (fresh, used) in self.queues.iter_mut().zip(queues.iter()) {
                fresh.set_ready(used.ready());
            }
            let ctx = ActivateContext {
                mem: self.mem.clone(),
                queues,
                interrupt: self.interrupt.clone(),
                acked_features: self.driver_features,
            };
            self.device
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .activate(ctx)
                .map_err(|e| format!("virtio device {}: {e}", self.device_type))?;
            self.activated = true;
            for evt in &self.queue_evts {
                let _ = evt.notify();
            }
        } else {
            self.queues = queues;
        }
        if s.interrupt_status & super::INT_USED_RING != 0 {
            self.interrupt.signal_used_queue();
        }
        if s.interrupt_status & super::INT_CONFIG != 0 {
            self.interrupt.signal_config_change();
        }
        Ok(())
    }

    /// The device's configuration changed under the driver (a restored
    /// disk of another size): a new configuration generation and a
    /// configuration-change interrupt.
    pub fn config_changed(&mut self) {
        self.config_generation = self.config_generation.wrapping_add(1);
        self.interrupt.signal_config_change();
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        if self.activated {
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn read_reg(&self, offset: u64) -> u32 {
        match offset {
            reg::MAGIC => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device_type,
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features as u32,
                1 => (self.device_features >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self
                .max_sizes
                .get(self.queue_sel as usize)
                .copied()
                .map_or(0, u32::from),
            reg::QUEUE_READY => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status.load(Ordering::SeqCst),
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => self.config_generation,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = v,
            // Features are frozen once FEATURES_OK is accepted.
            reg::DRIVER_FEATURES if self.status & status::FEATURES_OK == 0 => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                self.driver_features =
                    (self.driver_features & !(0xffff_ffffu64 << shift)) | (u64::from(v) << shift);
            }
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::QUEUE_SEL => self.queue_sel = v,
            reg::QUEUE_NUM => {
                // A size over 16 bits is refused, not truncated (0x1_0010
                // must not become 16); virtio-queue refuses sizes that
                // exceed the maximum or are not a power of two.
                if let (Some(q), Ok(size)) = (self.selected_queue(), u16::try_from(v)) {
                    q.set_size(size);
                }
            }
            reg::QUEUE_READY => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(v == 1);
                }
            }
            reg::QUEUE_NOTIFY => {
                // Reached only when no ioeventfd caught the write.
                if let Some(evt) = self.queue_evts.get(v as usize) {
                    let _ = evt.notify();
                }
            }
            reg::INTERRUPT_ACK => {
                self.interrupt_status.fetch_and(!v, Ordering::SeqCst);
            }
            reg::STATUS => self.set_status(v),
            reg::QUEUE_DESC_LOW => self.with_queue(|q| q.set_desc_table_address(Some(v), None)),
            reg::QUEUE_DESC_HIGH => self.with_queue(|q| q.set_desc_table_address(None, Some(v))),
            reg::QUEUE_DRIVER_LOW => self.with_queue(|q| q.set_avail_ring_address(Some(v), None)),
            reg::QUEUE_DRIVER_HIGH => self.with_queue(|q| q.set_avail_ring_address(None, Some(v))),
            reg::QUEUE_DEVICE_LOW => self.with_queue(|q| q.set_used_ring_address(Some(v), None)),
            reg::QUEUE_DEVICE_HIGH => self.with_queue(|q| q.set_used_ring_address(None, Some(v))),
            _ => {}
        }
    }

    fn with_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.selected_queue() {
            f(q);
        }
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let newly = v & !self.status;
        let mut v = v;
        if newly & status::FEATURES_OK != 0 {
            let unknown = self.driver_features & !self.device_features;
            if unknown != 0 || self.driver_features & VIRTIO_F_VERSION_1 == 0 {
                v &= !status::FEATURES_OK;
            }
        }
        self.status = v;
        if newly & status::DRIVER_OK != 0 && v & status::FEATURES_OK != 0 && !self.activated {
            self.activate();
        }
    }

    fn activate(&mut self) {
        let event_idx = self.driver_features & VIRTIO_RING_F_EVENT_IDX != 0;
        let mut queues = std::mem::replace(&mut self.queues, Self::fresh_queues(&self.max_sizes));
        for (i, q) in queues.iter_mut().enumerate() {
            if q.ready() && !q.is_valid(&self.mem) {
                log::warn!("virtio device {} queue {i} is invalid", self.device_type);
                self.status |= status::DEVICE_NEEDS_RESET;
                self.interrupt.signal_config_change();
                return;
            }
            q.set_event_idx(event_idx);
        }
        // Reads of QueueReady after DRIVER_OK still see the driver's setting.
        for (fresh, used) in self.queues.iter_mut().zip(queues.iter()) {
            fresh.set_ready(used.ready());
        }
        let ctx = ActivateContext {
            mem: self.mem.clone(),
            queues,
            interrupt: self.interrupt.clone(),
            acked_features: self.driver_features,
        };
        let result = self
            .device
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .activate(ctx);
        match result {
            Ok(()) => self.activated = true,
            Err(e) => {
                log::warn!("virtio device {} failed to activate: {e}", self.device_type);
                self.status |= status::DEVICE_NEEDS_RESET;
                self.interrupt.signal_config_change();
            }
        }
    }

    fn reset(&mut self) {
        if self.activated {
            self.device
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reset();
        }
        self.activated = false;
        self.status = 0;
        self.driver_features = 0;
        self.driver_features_sel = 0;
        self.device_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt_status.store(0, Ordering::SeqCst);
        self.queues = Self::fresh_queues(&self.max_sizes);
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            self.device
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .read_config(offset - reg::CONFIG, data);
        } else if data.len() == 4 {
            data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            self.device
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write_config(offset - reg::CONFIG, data);
            self.config_generation = self.config_generation.wrapping_add(1);
        } else if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            self.write_reg(offset, u32::from_le_bytes(bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::{read_config_bytes, ActivateError};
    use vm_memory::GuestAddress;

    struct NullLine;
    impl InterruptLine for NullLine {
        fn trigger(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Default)]
    struct Dummy {
        activated: Option<(usize, u64)>,
        resets: usize,
        processed: Vec<usize>,
        config: [u8; 8],
    }
    impl VirtioDevice for Dummy {
        fn device_type(&self) -> u32 {
            42
        }
        fn features(&self) -> u64 {
            VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | 1
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 8]
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            read_config_bytes(&self.config, offset, data);
        }
        fn write_config(&mut self, offset: u64, data: &[u8]) {
            self.config[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        }
        fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
            self.activated = Some((ctx.queues.len(), ctx.acked_features));
            Ok(())
        }
        fn process_queue(&mut self, index: usize) {
            self.processed.push(index);
        }
        fn reset(&mut self) {
            self.resets += 1;
        }
    }

    fn setup() -> (MmioTransport, Arc<Mutex<Dummy>>) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let dev = Arc::new(Mutex::new(Dummy::default()));
        let t = MmioTransport::new(dev.clone(), mem, Arc::new(NullLine)).unwrap();
        (t, dev)
    }

    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }
    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    fn setup_queue(t: &mut MmioTransport, sel: u32, base: u64) {
        w(t, reg::QUEUE_SEL, sel);
        w(t, reg::QUEUE_NUM, 8);
        w(t, reg::QUEUE_DESC_LOW, base as u32);
        w(t, reg::QUEUE_DRIVER_LOW, (base + 0x1000) as u32);
        w(t, reg::QUEUE_DEVICE_LOW, (base + 0x2000) as u32);
        w(t, reg::QUEUE_READY, 1);
    }

    #[test]
    fn identification_registers() {
        let (mut t, _) = setup();
        assert_eq!(r(&mut t, reg::MAGIC), MAGIC);
        assert_eq!(r(&mut t, reg::VERSION), 2);
        assert_eq!(r(&mut t, reg::DEVICE_ID), 42);
        assert_eq!(r(&mut t, reg::DEVICE_FEATURES), (1 << 29) | 1);
        w(&mut t, reg::DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&mut t, reg::DEVICE_FEATURES), 1);
        w(&mut t, reg::QUEUE_SEL, 1);
        assert_eq!(r(&mut t, reg::QUEUE_NUM_MAX), 8);
        w(&mut t, reg::QUEUE_SEL, 2);
        assert_eq!(r(&mut t, reg::QUEUE_NUM_MAX), 0);
        // Narrow register reads are not allowed: they read as zero.
        let mut b = [0xffu8; 2];
        t.read(reg::MAGIC, &mut b);
        assert_eq!(b, [0, 0]);
    }

    #[test]
    fn feature_negotiation_and_activation() {
        let (mut t, dev) = setup();
        w(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        // Features outside the offer make FEATURES_OK fail.
        w(&mut t, reg::DRIVER_FEATURES_SEL, 0);
        w(&mut t, reg::DRIVER_FEATURES, 1 | 2);
        w(&mut t, reg::DRIVER_FEATURES_SEL, 1);
        w(&mut t, reg::DRIVER_FEATURES, 1);
        w(
            &mut t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(r(&mut t, reg::STATUS) & status::FEATURES_OK, 0);
        w(&mut t, reg::DRIVER_FEATURES_SEL, 0);
        w(&mut t, reg::DRIVER_FEATURES, 1);
        w(
            &mut t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_ne!(r(&mut t, reg::STATUS) & status::FEATURES_OK, 0);
        setup_queue(&mut t, 0, 0x10000);
        setup_queue(&mut t, 1, 0x20000);
        assert_eq!(r(&mut t, reg::QUEUE_READY), 1);
        w(
            &mut t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        assert_eq!(
            dev.lock().unwrap().activated,
            Some((2, VIRTIO_F_VERSION_1 | 1))
        );
        // Queue registers are frozen after activation.
        w(&mut t, reg::QUEUE_SEL, 1);
        assert_eq!(r(&mut t, reg::QUEUE_READY), 1);
        w(&mut t, reg::QUEUE_READY, 0);
        assert_eq!(r(&mut t, reg::QUEUE_READY), 1);
        // Reset.
        w(&mut t, reg::STATUS, 0);
        assert_eq!(r(&mut t, reg::STATUS), 0);
        assert_eq!(dev.lock().unwrap().resets, 1);
        assert_eq!(r(&mut t, reg::QUEUE_READY), 0);
    }

    #[test]
    fn no_activation_without_features_ok() {
        let (mut t, dev) = setup();
        w(
            &mut t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK,
        );
        assert!(dev.lock().unwrap().activated.is_none());
    }

    #[test]
    fn notify_interrupt_ack_and_config() {
        let (mut t, dev) = setup();
        w(&mut t, reg::QUEUE_NOTIFY, 1);
        assert_eq!(t.queue_evts()[1].take().unwrap(), 1);
        w(&mut t, reg::QUEUE_NOTIFY, 7); // out of range: ignored
        t.interrupt.signal_used_queue();
        t.interrupt.signal_config_change();
        assert_eq!(r(&mut t, reg::INTERRUPT_STATUS), 3);
        w(&mut t, reg::INTERRUPT_ACK, 1);
        assert_eq!(r(&mut t, reg::INTERRUPT_STATUS), 2);
        let gen = r(&mut t, reg::CONFIG_GENERATION);
        t.write(reg::CONFIG + 2, &[0xab, 0xcd]);
        assert_eq!(dev.lock().unwrap().config[2..4], [0xab, 0xcd]);
        assert_ne!(r(&mut t, reg::CONFIG_GENERATION), gen);
        let mut b = [0u8; 2];
        t.read(reg::CONFIG + 2, &mut b);
        assert_eq!(b, [0xab, 0xcd]);
    }

    /// Every register value and offset the guest writes is bounded: queue
    /// sizes (16 bits, at most the maximum, a power of two), queue and
    /// notify indices, feature selectors, register widths, and config
    /// offsets far past the config space.
    #[test]
    fn guest_controlled_registers_are_bounded() {
        let (mut t, _) = setup();
        let size = |t: &MmioTransport, i: usize| t.queues[i].size();
        w(&mut t, reg::QUEUE_SEL, 0);
        w(&mut t, reg::QUEUE_NUM, 8);
        assert_eq!(size(&t, 0), 8);
        // Truncation would make these 16 or 0.
        w(&mut t, reg::QUEUE_NUM, 0x1_0010);
        assert_eq!(size(&t, 0), 8);
        w(&mut t, reg::QUEUE_NUM, 0x1_0000);
        assert_eq!(size(&t, 0), 8);
        // Over the maximum (16), not a power of two, zero.
        for bad in [32, 12, 0, u32::MAX] {
            w(&mut t, reg::QUEUE_NUM, bad);
            assert_eq!(size(&t, 0), 8, "size {bad}");
        }
        w(&mut t, reg::QUEUE_NUM, 16);
        assert_eq!(size(&t, 0), 16);
        // A queue index past the device's queues: writes go nowhere,
        // reads are zero.
        w(&mut t, reg::QUEUE_SEL, u32::MAX);
        w(&mut t, reg::QUEUE_NUM, 4);
        w(&mut t, reg::QUEUE_READY, 1);
        w(&mut t, reg::QUEUE_DESC_LOW, 0x1000);
        assert_eq!(r(&mut t, reg::QUEUE_NUM_MAX), 0);
        assert_eq!(r(&mut t, reg::QUEUE_READY), 0);
        assert_eq!((size(&t, 0), size(&t, 1)), (16, 8));
        // Notify indices past the queues are ignored.
        w(&mut t, reg::QUEUE_NOTIFY, u32::MAX);
        w(&mut t, reg::QUEUE_NOTIFY, 2);
        assert!(t.queue_evts().iter().all(|e| e.take().unwrap() == 0));
        // Feature selectors past the two words.
        w(&mut t, reg::DEVICE_FEATURES_SEL, 7);
        assert_eq!(r(&mut t, reg::DEVICE_FEATURES), 0);
        w(&mut t, reg::DRIVER_FEATURES_SEL, 7);
        w(&mut t, reg::DRIVER_FEATURES, u32::MAX);
        assert_eq!(t.driver_features, 0);
        // Writes narrower or wider than a register are ignored.
        t.write(reg::QUEUE_SEL, &[1, 0]);
        t.write(reg::QUEUE_SEL, &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(t.queue_sel, u32::MAX);
        // Offsets far past the config space read zeros, never panic.
        for off in [
            reg::CONFIG + 8,
            reg::CONFIG + 0x1000,
            u64::MAX - 8,
            u64::MAX,
        ] {
            let mut b = [0xffu8; 8];
            t.read(off, &mut b);
            assert_eq!(b, [0; 8], "offset {off:#x}");
        }
        let mut b = [0xffu8; 8];
        t.read(reg::CONFIG + 6, &mut b);
        assert_eq!(b, [0; 8]);
        // Unknown register offsets read zero.
        assert_eq!(r(&mut t, 0x0ff0), 0);
    }

    #[test]
    fn config_changed_raises_the_config_interrupt_and_a_new_generation() {
        let (mut t, _) = setup();
        let gen = r(&mut t, reg::CONFIG_GENERATION);
        assert_eq!(r(&mut t, reg::INTERRUPT_STATUS), 0);
        t.config_changed();
        assert_eq!(r(&mut t, reg::INTERRUPT_STATUS), super::super::INT_CONFIG);
        assert_ne!(r(&mut t, reg::CONFIG_GENERATION), gen);
        // The state a snapshot keeps carries both.
        let s = t.save_state().unwrap();
        assert_eq!(s.interrupt_status, super::super::INT_CONFIG);
    }
}
