//! Emulated devices: the legacy PC pieces an x86 Linux guest needs (16550
//! serial, i8042 reset line, an I/O APIC for hypervisors without one), the
//! PL011 console of arm64 guests, and the virtio-mmio devices. All platform-independent (see `notify`).

pub mod bus;
pub mod i8042;
pub mod ioapic;
pub mod notify;
pub mod pl011;
pub mod serial;
#[cfg(test)]
pub(crate) mod test_thread;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
