//! Saving and loading KVM vCPU and VM state (snapshots), reached through
//! the `Vm::state/set_state` and `Vcpu::state/set_state` trait methods.
//!
//! The set and its restore order follow the measured proof of concept
//! (research/vm-snapshot): REGS, SREGS, MSRs, LAPIC and the irqchip are
//! required; the rest is restored as well.

use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
    kvm_msr_entry, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave,
    CpuId, Msrs, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
};
use serde::{Deserialize, Serialize};

use super::{KvmVcpu, KvmVm};
use crate::hypervisor::{HypervisorError, Result};

/// Everything KVM keeps about one vCPU.
#[derive(Serialize, Deserialize)]
pub struct KvmVcpuState {
    /// vCPU number.
    pub index: u8,
    /// The CPUID the vCPU was given.
    pub cpuid: Vec<kvm_cpuid_entry2>,
    /// Running / halted / ...
    pub mp_state: kvm_mp_state,
    /// General registers.
    pub regs: kvm_regs,
    /// Segment and control registers.
    pub sregs: kvm_sregs,
    /// FPU/SSE/AVX state (None when the host refuses it).
    pub xsave: Option<kvm_xsave>,
    /// Extended control registers (None when the host refuses them).
    pub xcrs: Option<kvm_xcrs>,
    /// Debug registers.
    pub debugregs: kvm_debugregs,
    /// Local APIC registers.
    pub lapic: kvm_lapic_state,
    /// Every MSR of KVM's index list that could be read.
    pub msrs: Vec<kvm_msr_entry>,
    /// Pending exceptions, interrupts, NMIs.
    pub vcpu_events: kvm_vcpu_events,
    /// Guest TSC frequency.
    pub tsc_khz: u32,
}

/// VM-wide KVM state: in-kernel PIC and IOAPIC, PIT, kvmclock.
#[derive(Serialize, Deserialize, Clone)]
pub struct KvmVmState {
    /// Master 8259.
    pub pic_master: kvm_irqchip,
    /// Slave 8259.
    pub pic_slave: kvm_irqchip,
    /// IOAPIC.
    pub ioapic: kvm_irqchip,
    /// i8254.
    pub pit2: kvm_pit_state2,
    /// kvmclock.
    pub clock: kvm_clock_data,
}

fn call(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> HypervisorError {
    move |e| HypervisorError::call(op, e)
}

impl KvmVcpu {
    /// Completes the instruction of the last exit without entering the
    /// guest again (KVM_RUN with immediate_exit), so the vCPU is at an
    /// instruction boundary and its state can be saved.
    pub(super) fn settle(&mut self) {
        self.fd.set_kvm_immediate_exit(1);
        // EINTR is the expected answer; anything else changes nothing here.
        let _ = self.fd.run();
        self.fd.set_kvm_immediate_exit(0);
    }

    fn read_msrs(&self) -> Vec<kvm_msr_entry> {
        let entries: Vec<kvm_msr_entry> = self
            .msr_list
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        // Batches stop at the first MSR KVM refuses; read one at a time
        // past it so one unreadable MSR does not lose the others.
        let mut start = 0;
        while start < entries.len() {
            let Ok(mut msrs) = Msrs::from_entries(&entries[start..]) else {
                break;
            };
            match self.fd.get_msrs(&mut msrs) {
                Ok(n) => {
                    out.extend_from_slice(&msrs.as_slice()[..n]);
                    start += n + 1;
                }
                Err(_) => start += 1,
            }
        }
        out
    }

    /// Saves the vCPU's state (call [`Self::settle`] first).
    pub(super) fn save_state(&self) -> Result<KvmVcpuState> {
        let fd = &self.fd;
        let cpuid = fd
            .get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(call("KVM_GET_CPUID2"))?;
        Ok(KvmVcpuState {
            index: self.index,
            cpuid: cpuid.as_slice().to_vec(),
            mp_state: fd.get_mp_state().map_err(call("KVM_GET_MP_STATE"))?,
            regs: fd.get_regs().map_err(call("KVM_GET_REGS"))?,
            sregs: fd.get_sregs().map_err(call("KVM_GET_SREGS"))?,
            xsave: fd.get_xsave().ok(),
            xcrs: fd.get_xcrs().ok(),
            debugregs: fd.get_debug_regs().map_err(call("KVM_GET_DEBUGREGS"))?,
            lapic: fd.get_lapic().map_err(call("KVM_GET_LAPIC"))?,
            msrs: self.read_msrs(),
            vcpu_events: fd.get_vcpu_events().map_err(call("KVM_GET_VCPU_EVENTS"))?,
            tsc_khz: fd.get_tsc_khz().map_err(call("KVM_GET_TSC_KHZ"))?,
        })
    }

    /// Loads a saved state into this fresh vCPU.
    pub(super) fn restore_state(&self, s: &KvmVcpuState) -> Result<()> {
        let fd = &self.fd;
        let cpuid = CpuId::from_entries(&s.cpuid).map_err(|_| {
            HypervisorError::call("build CPUID", std::io::Error::other("too many entries"))
        })?;
        fd.set_cpuid2(&cpuid).map_err(call("KVM_SET_CPUID2"))?;
        fd.set_sregs(&s.sregs).map_err(call("KVM_SET_SREGS"))?;
        fd.set_regs(&s.regs).map_err(call("KVM_SET_REGS"))?;
        if let Some(x) = &s.xsave {
            // SAFETY: the buffer is a kvm_xsave of the legacy 4 KiB size
            // read by KVM_GET_XSAVE on the same kind of host (the snapshot
            // header pins hypervisor and VMM version).
            unsafe { fd.set_xsave(x) }.map_err(call("KVM_SET_XSAVE"))?;
        }
        if let Some(x) = &s.xcrs {
            fd.set_xcrs(x).map_err(call("KVM_SET_XCRS"))?;
        }
        fd.set_lapic(&s.lapic).map_err(call("KVM_SET_LAPIC"))?;
        let msrs = Msrs::from_entries(&s.msrs).map_err(|_| {
            HypervisorError::call("build MSRs", std::io::Error::other("too many entries"))
        })?;
        let n = fd.set_msrs(&msrs).map_err(call("KVM_SET_MSRS"))?;
        if n != s.msrs.len() {
            return Err(HypervisorError::call(
                "KVM_SET_MSRS",
                std::io::Error::other(format!(
                    "only {n} of {} MSRs accepted (refused MSR {:#x})",
                    s.msrs.len(),
                    s.msrs[n].index
                )),
            ));
        }
        fd.set_debug_regs(&s.debugregs)
            .map_err(call("KVM_SET_DEBUGREGS"))?;
        fd.set_vcpu_events(&s.vcpu_events)
            .map_err(call("KVM_SET_VCPU_EVENTS"))?;
        fd.set_mp_state(s.mp_state)
            .map_err(call("KVM_SET_MP_STATE"))?;
        Ok(())
    }

    /// The guest TSC frequency in kHz.
    pub(super) fn tsc_khz(&self) -> Result<u32> {
        self.fd.get_tsc_khz().map_err(call("KVM_GET_TSC_KHZ"))
    }
}

fn chip(id: u32) -> kvm_irqchip {
    kvm_irqchip {
        chip_id: id,
        ..Default::default()
    }
}

impl KvmVm {
    /// Saves irqchip, PIT and clock (vCPUs paused).
    pub(super) fn save_state(&self) -> Result<KvmVmState> {
        let mut pic_master = chip(KVM_IRQCHIP_PIC_MASTER);
        let mut pic_slave = chip(KVM_IRQCHIP_PIC_SLAVE);
        let mut ioapic = chip(KVM_IRQCHIP_IOAPIC);
        for c in [&mut pic_master, &mut pic_slave, &mut ioapic] {
            self.vm.get_irqchip(c).map_err(call("KVM_GET_IRQCHIP"))?;
        }
        Ok(KvmVmState {
            pic_master,
            pic_slave,
            ioapic,
            pit2: self.vm.get_pit2().map_err(call("KVM_GET_PIT2"))?,
            clock: self.vm.get_clock().map_err(call("KVM_GET_CLOCK"))?,
        })
    }

    /// Loads VM-wide state (before the vCPUs').
    pub(super) fn restore_state(&self, s: &KvmVmState) -> Result<()> {
        self.vm.set_pit2(&s.pit2).map_err(call("KVM_SET_PIT2"))?;
        // Only the clock value: the flags of KVM_GET_CLOCK (TSC_STABLE,
        // REALTIME, HOST_TSC) are not accepted back by every kernel.
        let clock = kvm_clock_data {
            clock: s.clock.clock,
            ..Default::default()
        };
        self.vm.set_clock(&clock).map_err(call("KVM_SET_CLOCK"))?;
        for c in [&s.pic_master, &s.pic_slave, &s.ioapic] {
            self.vm.set_irqchip(c).map_err(call("KVM_SET_IRQCHIP"))?;
        }
        Ok(())
    }
}
