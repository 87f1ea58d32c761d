//! The seam between the VMM and the host's virtualization API.
//!
//! Devices and the boot code only see these traits. Backends, one module
//! each, gated by the host they run on: `kvm` (Linux x86_64), `hvf`
//! (Hypervisor.framework, macOS on Apple Silicon), `whp` (Windows Hypervisor
//! Platform, Windows x86_64).

use std::io;
use std::sync::Arc;

use crate::devices::notify::QueueNotifier;
use crate::GuestMemoryMmap;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod kvm;
// Hypervisor.framework's arm64 API (Apple Silicon); Intel Macs have a
// different (VMX-level) API that berth does not support.
#[cfg(all(target_os = "macos", target_arch = "aarch64"))]
pub mod hvf;
#[cfg(all(windows, target_arch = "x86_64"))]
pub mod whp;
#[cfg(target_arch = "x86_64")]
pub mod x86_exits;

/// Errors of a hypervisor backend.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    /// The hypervisor device could not be opened.
    #[error("cannot open the hypervisor: {0}")]
    Open(#[source] io::Error),
    /// A hypervisor call failed.
    #[error("{op} failed: {source}")]
    Call {
        /// The operation (usually the ioctl name).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The host lacks a capability the VMM needs.
    #[error("the hypervisor lacks a required capability: {0}")]
    MissingCapability(&'static str),
}

impl HypervisorError {
    /// Wraps an OS error of the operation `op`.
    pub fn call(op: &'static str, source: impl Into<io::Error>) -> Self {
        HypervisorError::Call {
            op,
            source: source.into(),
        }
    }
}

/// Result type of the hypervisor module.
pub type Result<T> = std::result::Result<T, HypervisorError>;

/// Why a vCPU stopped running guest code, in hypervisor-neutral terms.
#[derive(Debug)]
pub enum VcpuExit<'a> {
    /// The guest read from an I/O port; fill `data`.
    IoIn {
        /// Port number.
        port: u16,
        /// Buffer to fill (1, 2 or 4 bytes; longer for string I/O).
        data: &'a mut [u8],
    },
    /// The guest wrote to an I/O port.
    IoOut {
        /// Port number.
        port: u16,
        /// Written bytes.
        data: &'a [u8],
    },
    /// The guest read unmapped (device) memory; fill `data`.
    MmioRead {
        /// Guest physical address.
        addr: u64,
        /// Buffer to fill.
        data: &'a mut [u8],
    },
    /// The guest wrote unmapped (device) memory.
    MmioWrite {
        /// Guest physical address.
        addr: u64,
        /// Written bytes.
        data: &'a [u8],
    },
    /// The vCPU executed HLT with interrupts off (or the backend reports HLT).
    Hlt,
    /// The guest shut down (triple fault or a shutdown system event).
    Shutdown,
    /// The guest asked for a reset through a system event.
    Reset,
    /// The run was interrupted by a signal; just run again.
    Interrupted,
    /// The hypervisor could not continue (e.g. an instruction it cannot emulate).
    InternalError {
        /// Backend-specific sub-code.
        suberror: u32,
        /// Backend-specific data words.
        data: Vec<u64>,
    },
    /// Anything else, with a description.
    Other(String),
}

/// The saved state of one vCPU, tagged by the backend that saved it (as
/// Cloud Hypervisor's `CpuState`): only that backend's `set_state` takes it.
/// In a snapshot file the state is written as the backend's own structure;
/// the header's `hypervisor` field is the tag there.
pub enum VcpuState {
    /// KVM's registers, MSRs, LAPIC, events, ...
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    Kvm(kvm::KvmVcpuState),
}

impl VcpuState {
    /// The guest TSC frequency the state was saved with, where the backend
    /// records one.
    pub fn tsc_khz(&self) -> Option<u32> {
        match *self {
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            VcpuState::Kvm(ref s) => Some(s.tsc_khz),
        }
    }
}

/// The saved VM-wide state (interrupt controllers, timers, clock), tagged
/// by backend like [`VcpuState`].
pub enum VmState {
    /// KVM's in-kernel PIC, IOAPIC, PIT and kvmclock.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    Kvm(kvm::KvmVmState),
}

// The on-disk form is the backend's structure itself (snapshots written
// before the tagged types existed load unchanged).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod state_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{kvm, VcpuState, VmState};

    impl Serialize for VcpuState {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            match self {
                VcpuState::Kvm(k) => k.serialize(s),
            }
        }
    }

    impl<'de> Deserialize<'de> for VcpuState {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            kvm::KvmVcpuState::deserialize(d).map(VcpuState::Kvm)
        }
    }

    impl Serialize for VmState {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            match self {
                VmState::Kvm(k) => k.serialize(s),
            }
        }
    }

    impl<'de> Deserialize<'de> for VmState {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            kvm::KvmVmState::deserialize(d).map(VmState::Kvm)
        }
    }
}

/// A guest interrupt line (a GSI on x86, an SPI on arm64) that a device can
/// raise without knowing how the hypervisor delivers it.
pub trait InterruptLine: Send + Sync {
    /// Raises an edge on the line.
    fn trigger(&self) -> io::Result<()>;
}

/// Opens this host's hypervisor for a VM of `cpus` vCPUs: KVM on Linux,
/// Hypervisor.framework on macOS, WHP on Windows. Every VM assembly starts
/// here rather than naming a backend.
#[cfg(any(
    all(target_os = "linux", target_arch = "x86_64"),
    all(target_os = "macos", target_arch = "aarch64"),
    all(windows, target_arch = "x86_64")
))]
pub fn open_host(cpus: u8) -> Result<Box<dyn Hypervisor>> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    let h = {
        let _ = cpus;
        kvm::KvmHypervisor::new()?
    };
    #[cfg(all(target_os = "macos", target_arch = "aarch64"))]
    let h = hvf::Hvf::new(cpus);
    #[cfg(all(windows, target_arch = "x86_64"))]
    let h = whp::Whp::new(cpus);
    Ok(Box::new(h))
}

/// A host virtualization API.
pub trait Hypervisor {
    /// Creates an empty VM with its interrupt controller.
    fn create_vm(&self) -> Result<Arc<dyn Vm>>;
    /// A short name for messages ("kvm").
    fn name(&self) -> &'static str;
}

/// One virtual machine.
pub trait Vm: Send + Sync {
    /// Makes all regions of `mem` visible to the guest at their guest addresses.
    /// `mem` must outlive the VM (the VMM keeps it for the VM's lifetime).
    fn map_memory(&self, mem: &GuestMemoryMmap) -> Result<()>;
    /// Creates vCPU number `index` (0 is the boot CPU).
    fn create_vcpu(&self, index: u8) -> Result<Box<dyn Vcpu>>;
    /// Returns a handle that raises interrupt line `gsi`.
    fn create_interrupt_line(&self, gsi: u32) -> Result<Arc<dyn InterruptLine>>;
    /// Makes a 4-byte guest write of `datamatch` to `addr` signal `notifier` without
    /// an exit to the VMM (ioeventfd). Backends without such a fast path may
    /// return `Ok(false)`; the MMIO transport then signals it itself.
    fn register_mmio_notifier(
        &self,
        addr: u64,
        datamatch: u32,
        notifier: &QueueNotifier,
    ) -> Result<bool>;
    /// Devices the VMM must put on its MMIO bus because the hypervisor does
    /// not emulate them, as (base, size, device): WHP's I/O APIC. Empty
    /// for KVM, whose interrupt controllers live in the kernel.
    fn platform_mmio_devices(&self) -> Vec<(u64, u64, crate::devices::bus::SharedDevice)> {
        Vec::new()
    }
    /// Saves the VM-wide state (every vCPU paused). Backends without
    /// snapshots refuse.
    fn state(&self) -> Result<VmState> {
        Err(HypervisorError::MissingCapability("VM snapshots"))
    }
    /// Loads VM-wide state saved by the same backend (before the vCPUs').
    fn set_state(&self, _state: &VmState) -> Result<()> {
        Err(HypervisorError::MissingCapability("VM snapshots"))
    }
}

/// One virtual CPU. Moved to its own thread to run.
pub trait Vcpu: Send {
    /// The vCPU number.
    fn index(&self) -> u8;
    /// Sets CPUID, MSRs, local APIC and (for the boot CPU) the 64-bit entry state.
    #[cfg(target_arch = "x86_64")]
    fn configure_x86(&mut self, setup: &crate::arch::x86_64::VcpuSetup) -> Result<()>;
    /// Sets the entry state of an arm64 vCPU (boot CPU, or one started by
    /// PSCI CPU_ON).
    #[cfg(target_arch = "aarch64")]
    fn configure_aarch64(&mut self, regs: &crate::arch::aarch64::regs::BootRegs) -> Result<()>;
    /// Runs guest code until the next exit.
    fn run(&mut self) -> Result<VcpuExit<'_>>;
    /// Describes the vCPU state after a failure: registers and the bytes of
    /// the instruction at the instruction pointer (read through `mem`).
    fn describe_failure(&mut self, mem: &GuestMemoryMmap) -> String;
    /// Completes the instruction of the last exit without entering the
    /// guest again and saves the vCPU's state (on the vCPU's thread, between
    /// runs). Backends without snapshots refuse.
    fn state(&mut self) -> Result<VcpuState> {
        Err(HypervisorError::MissingCapability("vCPU snapshots"))
    }
    /// Loads a state saved by the same backend into this fresh vCPU.
    fn set_state(&mut self, _state: &VcpuState) -> Result<()> {
        Err(HypervisorError::MissingCapability("vCPU snapshots"))
    }
    /// The guest TSC frequency in kHz, where the backend knows it (a
    /// snapshot restores only on a host with the same).
    fn tsc_khz(&self) -> Result<Option<u32>> {
        Ok(None)
    }
}
