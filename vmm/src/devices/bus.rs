//! Address-range dispatch of guest I/O-port and MMIO accesses to devices.

use std::sync::{Arc, Mutex};

/// A device reachable on a bus. Offsets are relative to the device's base.
pub trait BusDevice: Send {
    /// Handles a guest read; fill `data`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Handles a guest write.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Errors while populating a bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The new range overlaps an existing device.
    #[error("device range {base:#x}+{len:#x} overlaps another device")]
    Overlap {
        /// Base of the rejected range.
        base: u64,
        /// Length of the rejected range.
        len: u64,
    },
}

/// A shared device on a bus.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// An I/O-port or MMIO bus.
#[derive(Clone, Default)]
pub struct Bus {
    /// (base, len, device), sorted by base.
    ranges: Vec<(u64, u64, SharedDevice)>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Bus::default()
    }

    /// Places `device` at `base..base+len`.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedDevice) -> Result<(), BusError> {
        if len == 0
            || self
                .ranges
                .iter()
                .any(|(b, l, _)| base < b + l && *b < base + len)
        {
            return Err(BusError::Overlap { base, len });
        }
        let pos = self.ranges.partition_point(|(b, _, _)| *b < base);
        self.ranges.insert(pos, (base, len, device));
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let pos = self.ranges.partition_point(|(b, _, _)| *b <= addr);
        let (base, len, dev) = self.ranges.get(pos.checked_sub(1)?)?;
        (addr < base + len).then_some((addr - base, dev))
    }

    /// Dispatches a read; returns false if no device is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((offset, dev)) => {
                lock(dev).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write; returns false if no device is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((offset, dev)) => {
                lock(dev).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device, recovering from a poisoned lock: a panic in one vCPU's
/// device access must not wedge the others.
fn lock(dev: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(u8);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0 + offset as u8);
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn dispatch_and_overlap() {
        let mut bus = Bus::new();
        bus.insert(0x10, 8, Arc::new(Mutex::new(Echo(1)))).unwrap();
        bus.insert(0x20, 8, Arc::new(Mutex::new(Echo(5)))).unwrap();
        assert!(bus.insert(0x14, 8, Arc::new(Mutex::new(Echo(0)))).is_err());
        let mut b = [0u8; 1];
        assert!(bus.read(0x12, &mut b));
        assert_eq!(b[0], 3);
        assert!(bus.write(0x20, &[9]));
        assert!(bus.read(0x27, &mut b));
        assert_eq!(b[0], 16);
        assert!(!bus.read(0x18, &mut b));
        assert!(!bus.read(0x0, &mut b));
    }
}
