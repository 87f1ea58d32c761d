//! arm64 guests (Apple Silicon hosts under Hypervisor.framework, arm64 KVM):
//! the guest physical memory map, the device tree, the boot CPU state, and
//! the decoding of the traps a vCPU leaves the guest with (ESR syndromes,
//! PSCI calls).
//!
//! Everything here is plain data and pure functions, compiled and unit-tested
//! on every host, so the `hvf` backend only glues it to the hypervisor API.

pub mod boot;
pub mod esr;
pub mod fdt;
pub mod image;
pub mod layout;
pub mod psci;
pub mod regs;
