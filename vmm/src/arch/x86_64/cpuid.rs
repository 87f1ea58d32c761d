//! Guest CPUID: the hypervisor's supported set, with the APIC topology of
//! this VM and (on kvm_pvm hosts) without features its instruction emulator
//! cannot run.

/// One CPUID leaf/subleaf in hypervisor-neutral form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    /// Leaf (EAX input).
    pub function: u32,
    /// Subleaf (ECX input).
    pub index: u32,
    /// Backend flags, passed through untouched.
    pub flags: u32,
    /// Output EAX.
    pub eax: u32,
    /// Output EBX.
    pub ebx: u32,
    /// Output ECX.
    pub ecx: u32,
    /// Output EDX.
    pub edx: u32,
}

/// Bits cleared on kvm_pvm hosts: (leaf, subleaf, register, mask).
/// Measured in research/kvm-pvm-guest: each one either traps in KVM's
/// instruction emulator or makes the kernel take a path that does. The
/// module only partly honours this filter, so the kernel command line
/// repeats it (see `host_quirks`).
const PVM_HIDDEN: &[(u32, u32, Reg, u32)] = &[
    // CX16, PCID, POPCNT, XSAVE, OSXSAVE, RDRAND
    (
        1,
        0,
        Reg::Ecx,
        (1 << 13) | (1 << 17) | (1 << 23) | (1 << 26) | (1 << 27) | (1 << 30),
    ),
    // FSGSBASE, ERMS, INVPCID, RDSEED, SMAP, CLFLUSHOPT, CLWB
    (
        7,
        0,
        Reg::Ebx,
        (1 << 0) | (1 << 9) | (1 << 10) | (1 << 18) | (1 << 20) | (1 << 23) | (1 << 24),
    ),
    // UMIP, RDPID
    (7, 0, Reg::Ecx, (1 << 2) | (1 << 22)),
    // FSRM, SERIALIZE, ARCH_CAPABILITIES
    (7, 0, Reg::Edx, (1 << 4) | (1 << 14) | (1 << 29)),
    // RDTSCP
    (0x8000_0001, 0, Reg::Edx, 1 << 27),
];

#[derive(Clone, Copy, Debug)]
enum Reg {
    Ebx,
    Ecx,
    Edx,
}

/// CPUID.1:ECX hypervisor-present bit.
const ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:EDX hyper-threading (more than one logical CPU per package).
const EDX_HTT: u32 = 1 << 28;

/// Adapts the supported CPUID set for vCPU `index` of `cpu_count`.
pub fn adjust(entries: &mut [CpuidEntry], index: u8, cpu_count: u8, hide_pvm_unsafe: bool) {
    for e in entries.iter_mut() {
        match e.function {
            1 => {
                // Initial APIC id, logical CPU count, hypervisor bit.
                e.ebx =
                    (e.ebx & 0x0000_ffff) | (u32::from(index) << 24) | (u32::from(cpu_count) << 16);
                e.ecx |= ECX_HYPERVISOR;
                if cpu_count > 1 {
                    e.edx |= EDX_HTT;
                }
            }
            // Extended topology: x2APIC id of this CPU.
            0xb | 0x1f => e.edx = u32::from(index),
            _ => {}
        }
        if hide_pvm_unsafe {
            for (function, subleaf, reg, mask) in PVM_HIDDEN {
                if e.function == *function && e.index == *subleaf {
                    match reg {
                        Reg::Ebx => e.ebx &= !mask,
                        Reg::Ecx => e.ecx &= !mask,
                        Reg::Edx => e.edx &= !mask,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32) -> CpuidEntry {
        CpuidEntry {
            function,
            index,
            eax: 0,
            ebx: 0xffff_ffff,
            ecx: 0xffff_ffff,
            edx: 0xffff_ffff,
            flags: 0,
        }
    }

    #[test]
    fn sets_apic_id_and_hides_pvm_features() {
        let mut e = vec![leaf(1, 0), leaf(7, 0), leaf(0x8000_0001, 0), leaf(0xb, 1)];
        adjust(&mut e, 2, 4, true);
        assert_eq!(e[0].ebx >> 24, 2);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_eq!(e[0].ecx & (1 << 26), 0, "xsave hidden");
        assert_ne!(e[0].ecx & ECX_HYPERVISOR, 0);
        assert_eq!(e[1].ebx & (1 << 20), 0, "smap hidden");
        assert_eq!(e[2].edx & (1 << 27), 0, "rdtscp hidden");
        assert_eq!(e[3].edx, 2);
    }

    #[test]
    fn keeps_features_on_real_kvm() {
        let mut e = vec![leaf(1, 0), leaf(7, 0)];
        adjust(&mut e, 0, 1, false);
        assert_ne!(e[0].ecx & (1 << 26), 0);
        assert_eq!(e[1].ebx, 0xffff_ffff);
    }
}
