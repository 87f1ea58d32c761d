//! KVM backend (Linux).

use std::sync::Arc;

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{IoEventAddress, Kvm, VmFd};
use vm_memory::{GuestMemory, GuestMemoryRegion};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{HypervisorError, InterruptLine, Result, Vcpu};
use crate::devices::notify::QueueNotifier;
use crate::GuestMemoryMmap;

mod state;
mod vcpu;

pub use state::{KvmVcpuState, KvmVmState};
pub use vcpu::KvmVcpu;

/// Addresses KVM needs for its real-mode helpers on Intel (unused by the
/// guest; placed just below the 4 GiB firmware area).
const TSS_ADDR: usize = 0xfffb_d000;
const IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

/// The KVM hypervisor (/dev/kvm).
pub struct KvmHypervisor {
    kvm: Kvm,
}

impl KvmHypervisor {
    /// Opens /dev/kvm.
    pub fn new() -> Result<Self> {
        let kvm = Kvm::new().map_err(|e| HypervisorError::Open(e.into()))?;
        Ok(KvmHypervisor { kvm })
    }
}

impl KvmHypervisor {
    /// Creates a VM with its in-kernel irqchip and PIT.
    fn create_kvm_vm(&self) -> Result<Arc<KvmVm>> {
        let vm = self
            .kvm
            .create_vm()
            .map_err(|e| HypervisorError::call("KVM_CREATE_VM", e))?;
        // Not every KVM flavour needs these (kvm_pvm ignores them); failures
        // are harmless, so they are not fatal.
        let _ = vm.set_tss_address(TSS_ADDR);
        let _ = vm.set_identity_map_address(IDENTITY_MAP_ADDR);
        vm.create_irq_chip()
            .map_err(|e| HypervisorError::call("KVM_CREATE_IRQCHIP", e))?;
        vm.create_pit2(kvm_pit_config::default())
            .map_err(|e| HypervisorError::call("KVM_CREATE_PIT2", e))?;
        let supported_cpuid = self
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| HypervisorError::call("KVM_GET_SUPPORTED_CPUID", e))?;
        let msr_list = self
            .kvm
            .get_msr_index_list()
            .map(|l| l.as_slice().to_vec())
            .unwrap_or_default();
        Ok(Arc::new(KvmVm {
            vm,
            supported_cpuid,
            msr_list,
            run_size: self.kvm.get_vcpu_mmap_size().unwrap_or(4096),
        }))
    }
}

impl super::Hypervisor for KvmHypervisor {
    fn create_vm(&self) -> Result<Arc<dyn super::Vm>> {
        Ok(self.create_kvm_vm()?)
    }

    fn name(&self) -> &'static str {
        "kvm"
    }
}

/// A KVM virtual machine.
pub struct KvmVm {
    vm: VmFd,
    supported_cpuid: CpuId,
    /// MSRs KVM can save and restore (KVM_GET_MSR_INDEX_LIST).
    msr_list: Vec<u32>,
    #[allow(dead_code)]
    run_size: usize,
}

/// An interrupt line backed by an irqfd: writing the eventfd injects the GSI
/// in the kernel, with no VMM exit on the guest side.
struct IrqFdLine {
    fd: EventFd,
}

impl InterruptLine for IrqFdLine {
    fn trigger(&self) -> std::io::Result<()> {
        self.fd.write(1)
    }
}

impl KvmVm {
    /// Creates vCPU `index`.
    fn create_kvm_vcpu(&self, index: u8) -> Result<KvmVcpu> {
        let fd = self
            .vm
            .create_vcpu(u64::from(index))
            .map_err(|e| HypervisorError::call("KVM_CREATE_VCPU", e))?;
        Ok(KvmVcpu::new(
            index,
            fd,
            self.supported_cpuid.clone(),
            self.msr_list.clone(),
        ))
    }
}

impl super::Vm for KvmVm {
    fn map_memory(&self, mem: &GuestMemoryMmap) -> Result<()> {
        for (slot, region) in mem.iter().enumerate() {
            let host = mem
                .get_host_address(region.start_addr())
                .map_err(|e| HypervisorError::call("map memory", std::io::Error::other(e)))?;
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live mmap owned by `mem`, which the
            // caller keeps alive for the VM's lifetime (trait contract), and
            // slots do not overlap because guest regions do not.
            unsafe { self.vm.set_user_memory_region(r) }
                .map_err(|e| HypervisorError::call("KVM_SET_USER_MEMORY_REGION", e))?;
        }
        Ok(())
    }

    fn create_vcpu(&self, index: u8) -> Result<Box<dyn Vcpu>> {
        Ok(Box::new(self.create_kvm_vcpu(index)?))
    }

    fn create_interrupt_line(&self, gsi: u32) -> Result<Arc<dyn InterruptLine>> {
        let fd = EventFd::new(EFD_NONBLOCK).map_err(|e| HypervisorError::call("eventfd", e))?;
        self.vm
            .register_irqfd(&fd, gsi)
            .map_err(|e| HypervisorError::call("KVM_IRQFD", e))?;
        Ok(Arc::new(IrqFdLine { fd }))
    }

    fn register_mmio_notifier(
        &self,
        addr: u64,
        datamatch: u32,
        notifier: &QueueNotifier,
    ) -> Result<bool> {
        self.vm
            .register_ioevent(notifier.event_fd(), &IoEventAddress::Mmio(addr), datamatch)
            .map_err(|e| HypervisorError::call("KVM_IOEVENTFD", e))?;
        Ok(true)
    }

    fn state(&self) -> Result<super::VmState> {
        Ok(super::VmState::Kvm(self.save_state()?))
    }

    fn set_state(&self, state: &super::VmState) -> Result<()> {
        match state {
            super::VmState::Kvm(s) => self.restore_state(s),
        }
    }
}
