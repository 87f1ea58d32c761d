//! Host-specific workarounds, detected at run time.
//!
//! The only one today: hosts whose /dev/kvm is the `kvm_pvm` module
//! (software virtualization without VMX/SVM). There every guest-kernel
//! instruction runs in KVM's instruction emulator, which cannot run a few
//! instructions, and the module ignores parts of the CPUID the VMM sets.
//! The guest kernel must be told on its command line to avoid them (and its
//! `kvm_emul_safe` patch enabled). Real KVM hosts get none of this.

use std::path::Path;

/// Kernel command line additions for kvm_pvm hosts (research/kvm-pvm-guest).
///
/// `clearcpuid=` lists feature bit numbers (word * 32 + bit, from the 6.12
/// `arch/x86/include/asm/cpufeatures.h`), in this order: cx16 141, pcid 145,
/// invpcid 298, fsgsbase 288, smap 308, rdrand 158, rdseed 306, rdpid 534,
/// rdtscp 59, popcnt 151, serialize 590, clflushopt 311, clwb 312, umip 514,
/// xsaveopt 320, xsavec 321, xsaves 323, erms 297, fsrm 580. The kernel
/// matches a name with `strcmp` against every feature name, which cost ~28 %
/// of the emulated instructions before the guest clock starts; a number is
/// one `kstrtouint`. The numbers belong to the kernel version: re-derive
/// them when kernel-config moves to another one.
pub const PVM_CMDLINE_EXTRAS: &str = "kvm_emul_safe noreplace-smp noxsave clearcpuid=141,145,298,288,308,158,306,534,59,151,590,311,312,514,320,321,323,297,580";

/// What the VMM must work around on this host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostQuirks {
    /// /dev/kvm is provided by kvm_pvm.
    pub kvm_pvm: bool,
}

impl HostQuirks {
    /// Detects the quirks of the running host.
    pub fn detect() -> Self {
        HostQuirks {
            kvm_pvm: Path::new("/sys/module/kvm_pvm").exists(),
        }
    }

    /// No workarounds at all (`--no-host-quirks`).
    pub fn none() -> Self {
        HostQuirks::default()
    }

    /// RAM to give the guest at boot when it has more; `None`: all of it.
    ///
    /// Always all of it now, kvm_pvm included, although the emulated kernel
    /// spends ~14 s per GiB initialising its memory map there: with part of
    /// the RAM hot-added later (`--boot-mem-mib`, `berth.mem_hotplug=`), a
    /// kvm_pvm guest under host load read back data it had just written
    /// wrong, transiently (layer blobs that re-hashed fine failed to
    /// unpack; libcontainer state came back without its pid; a shim died).
    /// With all RAM at boot the same runs were clean at load 2–3 (10 of 10
    /// against 7 of 10 failing); ten guests on two cores still misread
    /// once (see the issue 8 note).
    pub fn boot_mem_bytes(&self) -> Option<u64> {
        None
    }

    /// Command line words to append for this host ("" when none).
    pub fn cmdline_extras(&self) -> &'static str {
        if self.kvm_pvm {
            PVM_CMDLINE_EXTRAS
        } else {
            ""
        }
    }
}

/// The kernel command line additions this host needs, or `None` on hosts
/// that need none. For callers that build a guest command line themselves
/// (the host CLI); `berth-vmm` applies it on its own unless `--no-host-quirks`.
pub fn pvm_cmdline_extras() -> Option<&'static str> {
    let q = HostQuirks::detect();
    q.kvm_pvm.then(|| q.cmdline_extras())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearcpuid_fits_the_kernel_buffer() {
        // Linux copies the value into `char arg[128]`
        // (cpu_parse_early_param) and silently cuts the rest: the old list
        // of names was 129 characters and lost "rm" of "fsrm".
        let value = PVM_CMDLINE_EXTRAS
            .split_whitespace()
            .find_map(|w| w.strip_prefix("clearcpuid="))
            .expect("clearcpuid= present");
        assert!(value.len() < 128, "{} characters", value.len());
        let bits: Vec<u32> = value.split(',').map(|b| b.parse().unwrap()).collect();
        assert_eq!(bits.len(), 19);
        // NCAPINTS is 22 in 6.12: bits above 22 * 32 are ignored.
        assert!(bits.iter().all(|b| *b < 22 * 32));
    }

    #[test]
    fn extras_only_on_pvm() {
        assert_eq!(HostQuirks::none().cmdline_extras(), "");
        let pvm = HostQuirks { kvm_pvm: true };
        assert!(pvm.cmdline_extras().contains("noxsave"));
        assert!(pvm.cmdline_extras().contains("kvm_emul_safe"));
        assert_eq!(
            pvm_cmdline_extras().is_some(),
            Path::new("/sys/module/kvm_pvm").exists()
        );
    }
}
