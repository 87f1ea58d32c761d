//! The boot CPU state the arm64 boot protocol asks for
//! (Documentation/arch/arm64/booting.rst): MMU and caches off, all
//! interrupts masked, EL1 with SP_EL1, x0 = DTB address, x1..x3 = 0,
//! PC = the kernel's first byte.

/// PSTATE for the entry: EL1h (M = 0b0101) with D, A, I, F masked.
pub const PSTATE_EL1H_DAIF_MASKED: u64 = 0x3c5;

/// Values of the registers a vCPU starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootRegs {
    /// Program counter.
    pub pc: u64,
    /// x0.
    pub x0: u64,
    /// PSTATE (CPSR).
    pub pstate: u64,
}

/// The boot vCPU's registers: enter the kernel at `entry` with the DTB at `fdt_addr`.
pub fn boot_cpu(entry: u64, fdt_addr: u64) -> BootRegs {
    BootRegs {
        pc: entry,
        x0: fdt_addr,
        pstate: PSTATE_EL1H_DAIF_MASKED,
    }
}

/// A secondary vCPU started by PSCI CPU_ON: same state, x0 = `context`.
pub fn secondary_cpu(entry: u64, context: u64) -> BootRegs {
    boot_cpu(entry, context)
}

/// The MPIDR_EL1 value of vCPU `index` (Aff0 = index; bit 31 is RES1).
pub fn mpidr(index: u8) -> u64 {
    (1 << 31) | u64::from(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_state() {
        let r = boot_cpu(0x4000_0000, 0x47e0_0000);
        assert_eq!(r.pc, 0x4000_0000);
        assert_eq!(r.x0, 0x47e0_0000);
        // EL1h, all of DAIF set
        assert_eq!(r.pstate & 0xf, 0b0101);
        assert_eq!(r.pstate >> 6 & 0xf, 0xf);
        assert_eq!(mpidr(3), 0x8000_0003);
    }
}
