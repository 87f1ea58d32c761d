//! The subset of Hypervisor.framework's arm64 C API berth uses
//! (`<Hypervisor/Hypervisor.h>`, macOS 11+; the GIC calls are macOS 15+ and
//! looked up at run time so the binary still starts on older systems).

#![allow(non_camel_case_types)]

use std::ffi::c_void;

/// `hv_return_t`: 0 is success.
pub type hv_return_t = i32;
/// `hv_vcpu_t`.
pub type hv_vcpu_t = u64;
/// `hv_ipa_t`: a guest physical address.
pub type hv_ipa_t = u64;
/// `hv_memory_flags_t`.
pub type hv_memory_flags_t = u64;

/// HV_SUCCESS.
pub const HV_SUCCESS: hv_return_t = 0;
/// Guest may read the mapping.
pub const HV_MEMORY_READ: hv_memory_flags_t = 1 << 0;
/// Guest may write the mapping.
pub const HV_MEMORY_WRITE: hv_memory_flags_t = 1 << 1;
/// Guest may execute from the mapping.
pub const HV_MEMORY_EXEC: hv_memory_flags_t = 1 << 2;

/// `hv_exit_reason_t` values.
pub const HV_EXIT_REASON_CANCELED: u32 = 0;
/// A synchronous exception (data abort, HVC, WFI, sysreg trap...).
pub const HV_EXIT_REASON_EXCEPTION: u32 = 1;
/// The virtual timer fired (and is now masked by the framework).
pub const HV_EXIT_REASON_VTIMER_ACTIVATED: u32 = 2;

/// `hv_reg_t`: X0..X30 are 0..30.
pub const HV_REG_X0: u32 = 0;
/// Program counter.
pub const HV_REG_PC: u32 = 31;
/// PSTATE.
pub const HV_REG_CPSR: u32 = 34;

/// `hv_sys_reg_t` MPIDR_EL1.
pub const HV_SYS_REG_MPIDR_EL1: u16 = 0xc005;
/// `hv_sys_reg_t` CNTV_CTL_EL0.
pub const HV_SYS_REG_CNTV_CTL_EL0: u16 = 0xdf19;

/// `hv_vcpu_exit_exception_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hv_vcpu_exit_exception_t {
    /// ESR_EL2.
    pub syndrome: u64,
    /// FAR_EL2.
    pub virtual_address: u64,
    /// HPFAR-derived IPA of the fault.
    pub physical_address: u64,
}

/// `hv_vcpu_exit_t`, filled by `hv_vcpu_run`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct hv_vcpu_exit_t {
    /// `hv_exit_reason_t`.
    pub reason: u32,
    /// Valid for HV_EXIT_REASON_EXCEPTION.
    pub exception: hv_vcpu_exit_exception_t,
}

#[link(name = "Hypervisor", kind = "framework")]
extern "C" {
    pub fn hv_vm_create(config: *mut c_void) -> hv_return_t;
    pub fn hv_vm_map(
        addr: *mut c_void,
        ipa: hv_ipa_t,
        size: usize,
        flags: hv_memory_flags_t,
    ) -> hv_return_t;
    pub fn hv_vcpu_create(
        vcpu: *mut hv_vcpu_t,
        exit: *mut *const hv_vcpu_exit_t,
        config: *mut c_void,
    ) -> hv_return_t;
    pub fn hv_vcpu_destroy(vcpu: hv_vcpu_t) -> hv_return_t;
    pub fn hv_vcpu_run(vcpu: hv_vcpu_t) -> hv_return_t;
    pub fn hv_vcpu_get_reg(vcpu: hv_vcpu_t, reg: u32, value: *mut u64) -> hv_return_t;
    pub fn hv_vcpu_set_reg(vcpu: hv_vcpu_t, reg: u32, value: u64) -> hv_return_t;
    pub fn hv_vcpu_get_sys_reg(vcpu: hv_vcpu_t, reg: u16, value: *mut u64) -> hv_return_t;
    pub fn hv_vcpu_set_sys_reg(vcpu: hv_vcpu_t, reg: u16, value: u64) -> hv_return_t;
    pub fn hv_vcpu_set_vtimer_mask(vcpu: hv_vcpu_t, masked: bool) -> hv_return_t;
}

/// `hv_gic_config_create` (macOS 15).
pub type HvGicConfigCreate = unsafe extern "C" fn() -> *mut c_void;
/// `hv_gic_config_set_distributor_base` / `..._redistributor_base`.
pub type HvGicConfigSetBase = unsafe extern "C" fn(*mut c_void, hv_ipa_t) -> hv_return_t;
/// `hv_gic_create`.
pub type HvGicCreate = unsafe extern "C" fn(*mut c_void) -> hv_return_t;
/// `hv_gic_set_spi`.
pub type HvGicSetSpi = unsafe extern "C" fn(u32, bool) -> hv_return_t;

/// Looks up `name` (NUL-terminated) in the already loaded images.
pub fn lookup(name: &std::ffi::CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT and a valid C string only reads.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}
