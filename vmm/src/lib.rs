//! berth-vmm: hypervisor backends (KVM here; Hypervisor.framework and WHP
//! later) and the virtio-mmio devices a berth guest needs.
//!
//! The crate is split the way the architecture is: `hypervisor` is the seam
//! to the host's virtualization API, `arch` holds CPU-architecture specifics
//! (x86_64 boot state, CPUID, MP table), `boot` loads the guest kernel,
//! `devices` are the emulated devices (serial, i8042, virtio-mmio), and
//! `vmm` wires them into a running machine.

pub mod arch;
#[cfg(all(target_os = "macos", target_arch = "aarch64"))]
pub mod arm64_vm;
#[cfg(target_arch = "x86_64")]
pub mod boot;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod confine;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub mod device_manager;
pub mod devices;
pub mod host_quirks;
pub mod hypervisor;
pub mod net;
pub mod snapshot;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod standby;
#[cfg(unix)]
pub mod sys;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod vmm;
#[cfg(target_arch = "x86_64")]
pub mod x86_vm;

pub use host_quirks::{pvm_cmdline_extras, HostQuirks};

/// The guest memory type used throughout the VMM.
pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<()>;
