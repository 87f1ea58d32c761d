//! Guest physical memory map of an arm64 berth VM.
//!
//! Close to QEMU's `virt` machine so the same kernel boots under both, and
//! below 4 GiB for everything but RAM: Hypervisor.framework on M1 offers a
//! 36-bit (64 GiB) IPA space.

/// GICv3 distributor (64 KiB).
pub const GIC_DIST_BASE: u64 = 0x0800_0000;
/// GICv3 distributor size.
pub const GIC_DIST_SIZE: u64 = 0x1_0000;
/// GICv3 redistributors: one 128 KiB frame pair (RD + SGI) per vCPU.
pub const GIC_REDIST_BASE: u64 = 0x080a_0000;
/// Size of one vCPU's redistributor.
pub const GIC_REDIST_SIZE_PER_CPU: u64 = 0x2_0000;
/// PL011 UART (the console, `ttyAMA0`).
pub const UART_BASE: u64 = 0x0900_0000;
/// PL011 register window.
pub const UART_SIZE: u64 = 0x1000;
/// First virtio-mmio window; device `i` lives at `VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE`.
pub const VIRTIO_MMIO_BASE: u64 = 0x0a00_0000;
/// One virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x200;
/// Most virtio-mmio devices.
pub const VIRTIO_MMIO_MAX: u32 = 32;
/// Guest RAM starts here (1 GiB), as on QEMU `virt`.
pub const RAM_BASE: u64 = 0x4000_0000;

/// GIC interrupt numbering: SPIs start at INTID 32; device tree
/// `interrupts` cells count SPIs from 0.
pub const SPI_BASE: u32 = 32;
/// The PL011's SPI number (device tree numbering).
pub const UART_SPI: u32 = 1;
/// virtio-mmio device `i` uses SPI `VIRTIO_SPI_BASE + i`.
pub const VIRTIO_SPI_BASE: u32 = 16;

/// Architected timer PPIs (device tree numbering: INTID - 16).
pub mod timer_ppi {
    /// Secure physical timer (INTID 29).
    pub const SECURE_PHYS: u32 = 13;
    /// Non-secure physical timer (INTID 30).
    pub const PHYS: u32 = 14;
    /// Virtual timer (INTID 27): the one a guest uses under a hypervisor.
    pub const VIRT: u32 = 11;
    /// Hypervisor timer (INTID 26).
    pub const HYP: u32 = 10;
}

/// The DTB goes at the top of RAM, 2 MiB aligned (the kernel maps it with
/// one block; it must not exceed 2 MiB).
pub const FDT_MAX_SIZE: u64 = 0x20_0000;

/// The guest physical address of the DTB for `ram_size` bytes of RAM.
pub fn fdt_addr(ram_size: u64) -> u64 {
    (RAM_BASE + ram_size - FDT_MAX_SIZE) & !(FDT_MAX_SIZE - 1)
}

/// The MMIO window of virtio device `index`.
pub fn virtio_mmio_window(index: u32) -> (u64, u64) {
    (
        VIRTIO_MMIO_BASE + u64::from(index) * VIRTIO_MMIO_SIZE,
        VIRTIO_MMIO_SIZE,
    )
}

/// The redistributor region for `cpus` vCPUs.
pub fn gic_redist_size(cpus: u8) -> u64 {
    u64::from(cpus) * GIC_REDIST_SIZE_PER_CPU
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_does_not_overlap() {
        let regions = [
            (GIC_DIST_BASE, GIC_DIST_SIZE),
            (GIC_REDIST_BASE, gic_redist_size(8)),
            (UART_BASE, UART_SIZE),
            (
                VIRTIO_MMIO_BASE,
                u64::from(VIRTIO_MMIO_MAX) * VIRTIO_MMIO_SIZE,
            ),
            (RAM_BASE, 512 << 20),
        ];
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                assert!(
                    a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0,
                    "{a:x?} overlaps {b:x?}"
                );
            }
        }
    }

    #[test]
    fn fdt_at_top_of_ram() {
        assert_eq!(fdt_addr(128 << 20), RAM_BASE + (126 << 20));
        assert_eq!(virtio_mmio_window(2), (0x0a00_0400, 0x200));
    }
}
