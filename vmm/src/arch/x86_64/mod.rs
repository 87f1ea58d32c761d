//! x86_64 guest layout and boot CPU state (Linux 64-bit boot protocol).
//!
//! Guest physical layout (low memory):
//! ```text
//! 0x0500  GDT                 0x7000  zero page (boot_params)
//! 0x8ff0  boot stack top      0x9000  PML4, PDPT, 4 PDs (identity map 4 GiB)
//! 0x20000 kernel command line 0x9fc00 MP table (reserved up to 1 MiB)
//! 0x100000.. kernel, RAM ..   initrd at the top of low RAM
//! 0xd0000000 virtio-mmio devices (4 KiB each), below the 4 GiB IOAPIC/LAPIC
//! ```

pub mod cpuid;
pub mod mptable;
pub mod regs;

pub use cpuid::CpuidEntry;
pub use regs::{BootCpuState, Segment};

/// Where the GDT lives.
pub const GDT_ADDR: u64 = 0x500;
/// Where the zero page (`struct boot_params`) lives.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial stack pointer of the boot CPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4 of the identity map.
pub const PML4_ADDR: u64 = 0x9000;
/// Where the kernel command line is copied.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Largest command line the x86 kernel accepts (COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the MP table; everything from here to 1 MiB is reserved in e820.
pub const MPTABLE_START: u64 = 0x9fc00;
/// Start of high memory: the kernel is loaded at or above this address.
pub const HIMEM_START: u64 = 0x10_0000;
/// End of RAM below 4 GiB; the rest of guest RAM goes above 4 GiB.
pub const LOW_RAM_END: u64 = 0xc000_0000;
/// Start of RAM above 4 GiB.
pub const HIGH_RAM_START: u64 = 0x1_0000_0000;
/// First virtio-mmio device window.
pub const MMIO_BASE: u64 = 0xd000_0000;
/// Size of one virtio-mmio device window.
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;
/// IOAPIC base address (for the MP table).
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Local APIC base address (for the MP table).
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
/// Number of IOAPIC pins (KVM's in-kernel IOAPIC has 24).
pub const IOAPIC_PINS: u8 = 24;
/// IRQ of the 16550 serial port at 0x3f8.
pub const SERIAL_IRQ: u32 = 4;
/// First IRQ handed to virtio-mmio devices.
pub const FIRST_VIRTIO_IRQ: u32 = 5;

/// The guest RAM regions for `mem_size` bytes of RAM: below the 32-bit
/// device gap, and above 4 GiB for whatever does not fit.
pub fn ram_regions(mem_size: u64) -> Vec<(u64, u64)> {
    if mem_size <= LOW_RAM_END {
        vec![(0, mem_size)]
    } else {
        vec![(0, LOW_RAM_END), (HIGH_RAM_START, mem_size - LOW_RAM_END)]
    }
}

/// Everything needed to configure one vCPU before it runs.
#[derive(Clone, Debug)]
pub struct VcpuSetup {
    /// vCPU number, also its APIC id.
    pub index: u8,
    /// Number of vCPUs in the VM.
    pub cpu_count: u8,
    /// Hide CPUID features the kvm_pvm instruction emulator cannot run.
    pub hide_pvm_unsafe_features: bool,
    /// Entry state of the boot CPU; `None` for application processors,
    /// which wait for INIT/SIPI from the boot CPU.
    pub boot: Option<BootCpuState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_regions_split_around_the_device_gap() {
        assert_eq!(ram_regions(128 << 20), vec![(0, 128 << 20)]);
        assert_eq!(
            ram_regions(4 << 30),
            vec![(0, LOW_RAM_END), (HIGH_RAM_START, (4 << 30) - LOW_RAM_END)]
        );
    }
}
