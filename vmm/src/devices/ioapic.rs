//! A userspace I/O APIC (the 82093AA register model) for hypervisors that
//! emulate only the local APIC: the Windows Hypervisor Platform. KVM has its
//! own in the kernel and never uses this.
//!
//! The guest finds it where the MP table says (`arch::x86_64::IOAPIC_ADDR`)
//! and programs one redirection entry per pin: vector, delivery mode,
//! destination and mask. A device raising its line calls [`IoApic::raise`];
//! an unmasked entry is handed to the backend's [`Delivery`] sink, which
//! injects it into the local APIC(s) (`WHvRequestInterrupt`). Masked edges
//! are dropped, as on the chip.
//!
//! Every berth device raises edges, and the MP table declares the ISA bus
//! defaults (edge, active high), so edges are the model. An entry the guest
//! sets to level-triggered is delivered the same way, without remote IRR:
//! tracking it would need the local APIC's EOI broadcast, which WHP reports
//! only with an extra exit.

use super::BusDevice;

/// Offset of the register-select register.
const IOREGSEL: u64 = 0x00;
/// Offset of the data window.
const IOWIN: u64 = 0x10;
/// MMIO size of the I/O APIC.
pub const IOAPIC_SIZE: u64 = 0x20;
/// Number of redirection entries (pins).
pub const IOAPIC_PINS: usize = 24;
/// Version register: version 0x11, highest entry index 23.
const VERSION: u32 = 0x11 | ((IOAPIC_PINS as u32 - 1) << 16);

const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_ARBITRATION: u32 = 0x02;
const REG_REDIRECTION: u32 = 0x10;

const MASKED: u64 = 1 << 16;
/// Bits the guest cannot write: delivery status (12) and remote IRR (14).
const READ_ONLY_BITS: u64 = (1 << 12) | (1 << 14);

/// An interrupt the I/O APIC sends to the local APIC(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Interrupt vector.
    pub vector: u8,
    /// Delivery mode (0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT).
    pub mode: u8,
    /// Logical (true) or physical destination mode.
    pub logical: bool,
    /// APIC id (physical) or logical destination set.
    pub destination: u8,
    /// Level-triggered (true) or edge.
    pub level: bool,
    /// Active-low polarity.
    pub active_low: bool,
}

impl Delivery {
    fn from_entry(entry: u64) -> Self {
        Delivery {
            vector: entry as u8,
            mode: ((entry >> 8) & 7) as u8,
            logical: entry & (1 << 11) != 0,
            destination: (entry >> 56) as u8,
            level: entry & (1 << 15) != 0,
            active_low: entry & (1 << 13) != 0,
        }
    }
}

/// Where deliveries go (the hypervisor's interrupt injection).
pub type DeliverySink = Box<dyn Fn(Delivery) + Send>;

/// The I/O APIC.
pub struct IoApic {
    select: u32,
    id: u32,
    entries: [u64; IOAPIC_PINS],
    sink: DeliverySink,
}

impl IoApic {
    /// An I/O APIC with every pin masked (the reset state).
    pub fn new(sink: DeliverySink) -> Self {
        IoApic {
            select: 0,
            id: 0,
            entries: [MASKED; IOAPIC_PINS],
            sink,
        }
    }

    /// A device raised (an edge on) `pin`. Out-of-range pins are ignored.
    pub fn raise(&mut self, pin: u32) {
        let Some(&entry) = self.entries.get(pin as usize) else {
            return;
        };
        if entry & MASKED == 0 {
            (self.sink)(Delivery::from_entry(entry));
        }
    }

    fn read_register(&self) -> u32 {
        match self.select {
            REG_ID => self.id,
            REG_VERSION => VERSION,
            REG_ARBITRATION => self.id,
            r if r >= REG_REDIRECTION => {
                let index = ((r - REG_REDIRECTION) / 2) as usize;
                match self.entries.get(index) {
                    Some(e) if r % 2 == 0 => *e as u32,
                    Some(e) => (*e >> 32) as u32,
                    None => 0,
                }
            }
            _ => 0,
        }
    }

    fn write_register(&mut self, value: u32) {
        match self.select {
            // Only the 4-bit APIC id (bits 24..28) is writable.
            REG_ID => self.id = value & 0x0f00_0000,
            r if r >= REG_REDIRECTION => {
                let index = ((r - REG_REDIRECTION) / 2) as usize;
                if let Some(e) = self.entries.get_mut(index) {
                    let new = if r % 2 == 0 {
                        (*e & !0xffff_ffff) | u64::from(value)
                    } else {
                        (*e & 0xffff_ffff) | (u64::from(value) << 32)
                    };
                    *e = (*e & READ_ONLY_BITS) | (new & !READ_ONLY_BITS);
                }
            }
            _ => {}
        }
    }
}

impl BusDevice for IoApic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            IOREGSEL => self.select,
            IOWIN => self.read_register(),
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get(i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut bytes = [0u8; 4];
        for (b, d) in bytes.iter_mut().zip(data) {
            *b = *d;
        }
        let value = u32::from_le_bytes(bytes);
        match offset {
            IOREGSEL => self.select = value & 0xff,
            IOWIN => self.write_register(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn ioapic() -> (IoApic, Arc<Mutex<Vec<Delivery>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (
            IoApic::new(Box::new(move |d| s.lock().unwrap().push(d))),
            seen,
        )
    }

    fn write_reg(io: &mut IoApic, reg: u32, value: u32) {
        io.write(IOREGSEL, &reg.to_le_bytes());
        io.write(IOWIN, &value.to_le_bytes());
    }

    fn read_reg(io: &mut IoApic, reg: u32) -> u32 {
        io.write(IOREGSEL, &reg.to_le_bytes());
        let mut b = [0u8; 4];
        io.read(IOWIN, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn version_and_reset_state() {
        let (mut io, seen) = ioapic();
        assert_eq!(read_reg(&mut io, REG_VERSION), 0x0017_0011);
        for pin in 0..IOAPIC_PINS as u32 {
            assert_eq!(read_reg(&mut io, REG_REDIRECTION + 2 * pin), 1 << 16);
            io.raise(pin);
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "masked pins deliver nothing"
        );
        write_reg(&mut io, REG_ID, 0xffff_ffff);
        assert_eq!(read_reg(&mut io, REG_ID), 0x0f00_0000);
    }

    #[test]
    fn programmed_entry_is_delivered_as_written() {
        let (mut io, seen) = ioapic();
        // Pin 4 (the serial port): vector 0x24, fixed, physical, edge,
        // unmasked, to APIC 1 — as Linux programs it.
        write_reg(&mut io, REG_REDIRECTION + 8, 0x0000_0024);
        write_reg(&mut io, REG_REDIRECTION + 9, 0x0100_0000);
        io.raise(4);
        // Pin 5: vector 0x31, lowest priority, logical, level, active low, to set 0x3.
        write_reg(&mut io, REG_REDIRECTION + 11, 0x0300_0000);
        write_reg(
            &mut io,
            REG_REDIRECTION + 10,
            0x31 | (1 << 8) | (1 << 11) | (1 << 13) | (1 << 15),
        );
        io.raise(5);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                Delivery {
                    vector: 0x24,
                    mode: 0,
                    logical: false,
                    destination: 1,
                    level: false,
                    active_low: false
                },
                Delivery {
                    vector: 0x31,
                    mode: 1,
                    logical: true,
                    destination: 3,
                    level: true,
                    active_low: true
                },
            ]
        );
        // Masking again stops delivery.
        write_reg(&mut io, REG_REDIRECTION + 8, 0x0001_0024);
        io.raise(4);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn read_only_bits_and_hostile_accesses() {
        let (mut io, seen) = ioapic();
        // Delivery status and remote IRR cannot be set by the guest.
        write_reg(&mut io, REG_REDIRECTION, 0xffff_ffff);
        assert_eq!(read_reg(&mut io, REG_REDIRECTION) & (1 << 12 | 1 << 14), 0);
        // Registers past the last entry, pins past the last pin, odd
        // offsets and short accesses neither panic nor deliver.
        write_reg(&mut io, REG_REDIRECTION + 2 * IOAPIC_PINS as u32, 0x30);
        assert_eq!(read_reg(&mut io, 0xff), 0);
        io.raise(IOAPIC_PINS as u32);
        io.raise(u32::MAX);
        io.write(0x4, &[1, 2, 3, 4]);
        io.write(IOWIN, &[]);
        let mut one = [0u8; 1];
        io.read(IOREGSEL, &mut one);
        let mut wide = [0u8; 8];
        io.read(IOWIN, &mut wide);
        assert!(seen.lock().unwrap().is_empty());
    }
}
