//! CPU-architecture specifics: memory layout, boot CPU state, CPUID and
//! firmware tables. `x86_64` is compiled where the host is x86_64 (the guest
//! matches the host under KVM and WHP); `aarch64` (device tree, GIC, PSCI,
//! exception syndromes) is plain data and pure functions, so it is compiled
//! and unit-tested on every host, and used by the `hvf` backend.

pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;
