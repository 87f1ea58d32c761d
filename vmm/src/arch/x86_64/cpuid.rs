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
/// CPUID.4:EAX bits 31:26, cores per package minus one.
const L4_CORES_SHIFT: u32 = 26;
/// CPUID.4:EAX bits 25:14, logical CPUs sharing this cache minus one.
const L4_SHARING_SHIFT: u32 = 14;

/// Leaf 4 (deterministic cache parameters) EAX for a package of
/// `cpu_count` single-threaded cores: the host's cache type and level are
/// kept, its core and sharing counts replaced. L1 and L2 are per core, the
/// last level is shared by all. Passing the host's counts through told the
/// guest its package had as many cores as the host's, more than leaf 1's
/// logical CPU count, and Linux's legacy topology parser WARNs about that
/// with a backtrace at boot (printk formatting that kvm_pvm hosts emulate
/// instruction by instruction).
fn leaf4_eax(eax: u32, cpu_count: u8) -> u32 {
    if eax & 0x1f == 0 {
        return eax; // no more caches
    }
    let level = (eax >> 5) & 0x7;
    let cores = u32::from(cpu_count.max(1)) - 1;
    let sharing = if level >= 3 { cores } else { 0 };
    (eax & ((1 << L4_SHARING_SHIFT) - 1))
        | (cores << L4_CORES_SHIFT)
        | (sharing << L4_SHARING_SHIFT)
}

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
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            4 => e.eax = leaf4_eax(e.eax, cpu_count),
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
    fn leaf4_matches_the_vm_topology() {
        // Host: L1d (level 1, type 1) shared by 2, L3 (level 3, type 3)
        // shared by 64, 32 cores per package; plus the terminating subleaf.
        let host_l1 = (31 << L4_CORES_SHIFT) | (1 << L4_SHARING_SHIFT) | (1 << 5) | 1;
        let host_l3 = (31 << L4_CORES_SHIFT) | (63 << L4_SHARING_SHIFT) | (3 << 5) | 3 | (1 << 8);
        let mut e = vec![leaf(1, 0), leaf(4, 0), leaf(4, 3), leaf(4, 4)];
        e[1].eax = host_l1;
        e[2].eax = host_l3;
        e[3].eax = 0;
        adjust(&mut e, 0, 1, false);
        assert_eq!(e[0].edx & EDX_HTT, 0, "one vCPU: no HTT");
        assert_eq!(e[1].eax, (1 << 5) | 1, "one core, L1 not shared");
        assert_eq!(
            e[2].eax,
            (3 << 5) | 3 | (1 << 8),
            "self-initialising bit kept"
        );
        assert_eq!(e[3].eax, 0);

        e[1].eax = host_l1;
        e[2].eax = host_l3;
        adjust(&mut e, 1, 4, false);
        assert_ne!(e[0].edx & EDX_HTT, 0);
        assert_eq!(e[1].eax >> L4_CORES_SHIFT, 3);
        assert_eq!((e[1].eax >> L4_SHARING_SHIFT) & 0xfff, 0);
        assert_eq!(
            (e[2].eax >> L4_SHARING_SHIFT) & 0xfff,
            3,
            "L3 shared by all"
        );
    }

    #[test]
    fn keeps_features_on_real_kvm() {
        let mut e = vec![leaf(1, 0), leaf(7, 0)];
        adjust(&mut e, 0, 1, false);
        assert_ne!(e[0].ecx & (1 << 26), 0);
        assert_eq!(e[1].ebx, 0xffff_ffff);
    }
}
