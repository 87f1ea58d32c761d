//! ARM PL011 UART, the console of arm64 guests (`ttyAMA0`), transmit side
//! only: enough for Linux's amba-pl011 driver to probe it (PrimeCell ids),
//! print, and get the transmit interrupt it waits for when its FIFO fills.
//! Input is not emulated (the agent is driven over vsock, not the console).
//! Reference: ARM DDI 0183 (PL011 TRM).

use std::io::Write;
use std::sync::Arc;

use super::BusDevice;
use crate::hypervisor::InterruptLine;

/// Register offsets.
mod reg {
    pub const DR: u64 = 0x000;
    pub const FR: u64 = 0x018;
    pub const IMSC: u64 = 0x038;
    pub const RIS: u64 = 0x03c;
    pub const MIS: u64 = 0x040;
    pub const ICR: u64 = 0x044;
    /// PeriphID0..3 then PCellID0..3, one byte per word.
    pub const ID_BASE: u64 = 0xfe0;
}

/// FR: receive FIFO empty.
const FR_RXFE: u32 = 1 << 4;
/// FR: transmit FIFO empty.
const FR_TXFE: u32 = 1 << 7;
/// Interrupt bit: transmit.
const INT_TX: u32 = 1 << 5;
/// PeriphID (part 0x011, designer ARM, revision 3) and PrimeCell id.
const IDS: [u32; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// A PL011 whose output goes to a writer.
pub struct Pl011 {
    out: Box<dyn Write + Send>,
    irq: Arc<dyn InterruptLine>,
    /// Interrupt mask set/clear register.
    imsc: u32,
    /// Raw interrupt status. The transmit FIFO is always empty, so TX is
    /// always pending.
    ris: u32,
    /// Registers the driver programs but that change nothing here (baud
    /// rate, line control, control, FIFO level), by offset / 4.
    scratch: [u32; 16],
}

impl Pl011 {
    /// A UART writing to `out` and raising `irq`.
    pub fn new(out: Box<dyn Write + Send>, irq: Arc<dyn InterruptLine>) -> Self {
        Pl011 {
            out,
            irq,
            imsc: 0,
            ris: INT_TX,
            scratch: [0; 16],
        }
    }

    fn update_irq(&self) {
        if self.ris & self.imsc != 0 {
            let _ = self.irq.trigger();
        }
    }
}

impl BusDevice for Pl011 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            reg::DR => 0,
            reg::FR => FR_TXFE | FR_RXFE,
            reg::IMSC => self.imsc,
            reg::RIS => self.ris,
            reg::MIS => self.ris & self.imsc,
            o if (reg::ID_BASE..reg::ID_BASE + 32).contains(&o) => {
                IDS[((o - reg::ID_BASE) / 4) as usize]
            }
            o if o < 0x40 => self.scratch[(o / 4) as usize],
            _ => 0,
        };
        let bytes = v.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&bytes[..n]);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut b = [0u8; 4];
        let n = data.len().min(4);
        b[..n].copy_from_slice(&data[..n]);
        let v = u32::from_le_bytes(b);
        match offset {
            reg::DR => {
                let _ = self.out.write_all(&[v as u8]);
                if v as u8 == b'\n' {
                    let _ = self.out.flush();
                }
                self.update_irq();
            }
            reg::IMSC => {
                self.imsc = v & 0x7ff;
                self.update_irq();
            }
            // TX is re-raised at once: the FIFO is always empty.
            reg::ICR => self.ris = (self.ris & !v) | INT_TX,
            o if o < 0x40 && o != reg::FR => self.scratch[(o / 4) as usize] = v,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl InterruptLine for Count {
        fn trigger(&self) -> std::io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn r(u: &mut Pl011, off: u64) -> u32 {
        let mut d = [0u8; 4];
        u.read(off, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn probes_prints_and_interrupts() {
        let out = Buf::default();
        let irq = Arc::new(Count::default());
        let mut u = Pl011::new(Box::new(out.clone()), irq.clone());
        // amba bus probe: PeriphID 0x00341011, PrimeCell id 0xb105f00d
        let id: Vec<u32> = (0..8).map(|i| r(&mut u, 0xfe0 + 4 * i)).collect();
        assert_eq!(id, IDS);
        assert_eq!(r(&mut u, reg::FR) & FR_TXFE, FR_TXFE);
        for c in b"hi\n" {
            u.write(reg::DR, &[*c]);
        }
        assert_eq!(&*out.0.lock().unwrap(), b"hi\n");
        assert_eq!(irq.0.load(Ordering::SeqCst), 0, "TX masked");
        u.write(reg::IMSC, &INT_TX.to_le_bytes());
        assert_eq!(irq.0.load(Ordering::SeqCst), 1);
        assert_eq!(r(&mut u, reg::MIS), INT_TX);
        u.write(reg::ICR, &INT_TX.to_le_bytes());
        assert_eq!(r(&mut u, reg::RIS), INT_TX);
        // control registers keep what the driver wrote
        u.write(0x30, &0x301u32.to_le_bytes());
        assert_eq!(r(&mut u, 0x30), 0x301);
    }
}
