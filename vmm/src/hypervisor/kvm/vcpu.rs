//! A KVM vCPU.

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_msr_entry, kvm_regs, kvm_segment, CpuId, Msrs, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit as KvmExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress};

use crate::arch::x86_64::{cpuid, regs, BootCpuState, CpuidEntry, Segment, VcpuSetup};
use crate::hypervisor::{HypervisorError, Result, VcpuExit};
use crate::GuestMemoryMmap;

/// A KVM vCPU with the CPUID set it will be given.
pub struct KvmVcpu {
    pub(super) index: u8,
    pub(super) fd: VcpuFd,
    supported_cpuid: CpuId,
    pub(super) msr_list: Vec<u32>,
}

impl KvmVcpu {
    pub(super) fn new(index: u8, fd: VcpuFd, supported_cpuid: CpuId, msr_list: Vec<u32>) -> Self {
        KvmVcpu {
            index,
            fd,
            supported_cpuid,
            msr_list,
        }
    }

    fn set_cpuid(&self, setup: &VcpuSetup) -> Result<()> {
        let mut entries: Vec<CpuidEntry> = self
            .supported_cpuid
            .as_slice()
            .iter()
            .map(|e| CpuidEntry {
                function: e.function,
                index: e.index,
                flags: e.flags,
                eax: e.eax,
                ebx: e.ebx,
                ecx: e.ecx,
                edx: e.edx,
            })
            .collect();
        cpuid::adjust(
            &mut entries,
            setup.index,
            setup.cpu_count,
            setup.hide_pvm_unsafe_features,
        );
        let kvm_entries: Vec<kvm_cpuid_entry2> = entries
            .iter()
            .map(|e| kvm_cpuid_entry2 {
                function: e.function,
                index: e.index,
                flags: e.flags,
                eax: e.eax,
                ebx: e.ebx,
                ecx: e.ecx,
                edx: e.edx,
                ..Default::default()
            })
            .collect();
        let cpuid = CpuId::from_entries(&kvm_entries).map_err(|_| {
            HypervisorError::call("build CPUID", std::io::Error::other("too many entries"))
        })?;
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(|e| HypervisorError::call("KVM_SET_CPUID2", e))
    }

    fn set_msrs(&self) -> Result<()> {
        let entries: Vec<kvm_msr_entry> = regs::boot_msrs()
            .into_iter()
            .map(|(index, data)| kvm_msr_entry {
                index,
                data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| {
            HypervisorError::call("build MSRs", std::io::Error::other("too many entries"))
        })?;
        // KVM stops at the first MSR it refuses; a flavour that refuses some
        // boot MSR (kvm_pvm is picky) still boots, so a short count is fine.
        self.fd
            .set_msrs(&msrs)
            .map_err(|e| HypervisorError::call("KVM_SET_MSRS", e))?;
        Ok(())
    }

    fn set_lint(&self) -> Result<()> {
        let mut lapic = self
            .fd
            .get_lapic()
            .map_err(|e| HypervisorError::call("KVM_GET_LAPIC", e))?;
        // SAFETY: `regs` is a plain byte array of the APIC page (c_char);
        // reinterpreting it as u8 of the same length is sound.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(lapic.regs.as_mut_ptr().cast::<u8>(), lapic.regs.len())
        };
        regs::set_lint(bytes);
        self.fd
            .set_lapic(&lapic)
            .map_err(|e| HypervisorError::call("KVM_SET_LAPIC", e))
    }

    fn set_boot_state(&self, boot: &BootCpuState) -> Result<()> {
        let mut sregs = self
            .fd
            .get_sregs()
            .map_err(|e| HypervisorError::call("KVM_GET_SREGS", e))?;
        let cs = to_kvm_segment(&boot.cs);
        let ds = to_kvm_segment(&boot.data);
        sregs.cs = cs;
        sregs.ds = ds;
        sregs.es = ds;
        sregs.fs = ds;
        sregs.gs = ds;
        sregs.ss = ds;
        sregs.gdt.base = boot.gdt_base;
        sregs.gdt.limit = boot.gdt_limit;
        sregs.cr0 = boot.cr0;
        sregs.cr3 = boot.cr3;
        sregs.cr4 = boot.cr4;
        sregs.efer = boot.efer;
        self.fd
            .set_sregs(&sregs)
            .map_err(|e| HypervisorError::call("KVM_SET_SREGS", e))?;
        let r = kvm_regs {
            rip: boot.rip,
            rsp: boot.rsp,
            rbp: boot.rsp,
            rsi: boot.rsi,
            rflags: boot.rflags,
            ..Default::default()
        };
        self.fd
            .set_regs(&r)
            .map_err(|e| HypervisorError::call("KVM_SET_REGS", e))
    }
}

fn to_kvm_segment(s: &Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present,
        dpl: s.dpl,
        db: s.db,
        s: s.s,
        l: s.l,
        g: s.g,
        avl: s.avl,
        unusable: 0,
        padding: 0,
    }
}

impl crate::hypervisor::Vcpu for KvmVcpu {
    fn index(&self) -> u8 {
        self.index
    }

    fn state(&mut self) -> Result<crate::hypervisor::VcpuState> {
        self.settle();
        Ok(crate::hypervisor::VcpuState::Kvm(self.save_state()?))
    }

    fn set_state(&mut self, state: &crate::hypervisor::VcpuState) -> Result<()> {
        match state {
            crate::hypervisor::VcpuState::Kvm(s) => self.restore_state(s),
        }
    }

    fn tsc_khz(&self) -> Result<Option<u32>> {
        KvmVcpu::tsc_khz(self).map(Some)
    }

    fn configure_x86(&mut self, setup: &VcpuSetup) -> Result<()> {
        self.set_cpuid(setup)?;
        self.set_msrs()?;
        self.set_lint()?;
        if let Some(boot) = &setup.boot {
            self.set_boot_state(boot)?;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<VcpuExit<'_>> {
        // Taken before `run()` borrows the fd for the exit's data slices.
        let run_area: *const kvm_bindings::kvm_run = self.fd.get_kvm_run();
        match self.fd.run() {
            Ok(exit) => Ok(match exit {
                KvmExit::IoIn(port, data) => VcpuExit::IoIn { port, data },
                KvmExit::IoOut(port, data) => VcpuExit::IoOut { port, data },
                KvmExit::MmioRead(addr, data) => VcpuExit::MmioRead { addr, data },
                KvmExit::MmioWrite(addr, data) => VcpuExit::MmioWrite { addr, data },
                KvmExit::Hlt => VcpuExit::Hlt,
                KvmExit::Shutdown => VcpuExit::Shutdown,
                KvmExit::SystemEvent(kind, _) if kind == KVM_SYSTEM_EVENT_RESET => VcpuExit::Reset,
                KvmExit::SystemEvent(kind, _) if kind == KVM_SYSTEM_EVENT_SHUTDOWN => {
                    VcpuExit::Shutdown
                }
                KvmExit::InternalError => {
                    // SAFETY: `run_area` points into the kvm_run mmap owned
                    // by `self.fd`, alive for this call; the exit reason is
                    // KVM_EXIT_INTERNAL_ERROR, so the `internal` member of
                    // the union is the valid one.
                    let internal = unsafe { (*run_area).__bindgen_anon_1.internal };
                    let n = (internal.ndata as usize).min(internal.data.len());
                    VcpuExit::InternalError {
                        suberror: internal.suberror,
                        data: internal.data[..n].to_vec(),
                    }
                }
                KvmExit::FailEntry(reason, cpu) => VcpuExit::Other(format!(
                    "KVM_EXIT_FAIL_ENTRY reason {reason:#x} on cpu {cpu}"
                )),
                other => VcpuExit::Other(format!("{other:?}")),
            }),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                Ok(VcpuExit::Interrupted)
            }
            Err(e) => Err(HypervisorError::call("KVM_RUN", e)),
        }
    }

    fn describe_failure(&mut self, mem: &GuestMemoryMmap) -> String {
        let regs = match self.fd.get_regs() {
            Ok(r) => r,
            Err(e) => return format!("cannot read registers: {e}"),
        };
        let mut out = format!(
            "rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x}",
            regs.rip, regs.rsp, regs.rflags, regs.rax, regs.rcx, regs.rdx, regs.rsi, regs.rdi
        );
        if let Ok(s) = self.fd.get_sregs() {
            out.push_str(&format!(
                " cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x}",
                s.cr0, s.cr3, s.cr4, s.efer, s.cs.selector
            ));
        }
        match self.fd.translate_gva(regs.rip) {
            Ok(t) if t.valid != 0 => {
                let mut bytes = [0u8; 16];
                match mem.read_slice(&mut bytes, GuestAddress(t.physical_address)) {
                    Ok(()) => {
                        out.push_str(&format!(
                            "\ninstruction bytes at rip (gpa {:#x}):",
                            t.physical_address
                        ));
                        for b in bytes {
                            out.push_str(&format!(" {b:02x}"));
                        }
                    }
                    Err(e) => out.push_str(&format!("\ncannot read instruction bytes: {e}")),
                }
            }
            Ok(_) => out.push_str("\nrip is not mapped in the guest page tables"),
            Err(e) => out.push_str(&format!("\ncannot translate rip: {e}")),
        }
        out
    }
}
