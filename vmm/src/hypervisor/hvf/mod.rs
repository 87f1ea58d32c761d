//! Hypervisor.framework backend (macOS on Apple Silicon, arm64 guests).
//!
//! Shape of the API and how berth maps it to the traits:
//! - one VM per process (`hv_vm_create`); guest RAM is mapped with
//!   `hv_vm_map` from the same host mmap the devices use;
//! - a vCPU belongs to the thread that created it, so [`HvfVcpu`] is created
//!   lazily by the first `run()` on the vCPU's own thread;
//! - interrupts go through the in-kernel GICv3 (`hv_gic_create`, macOS 15+)
//!   at the addresses of `arch::aarch64::layout`; devices raise SPIs with
//!   `hv_gic_set_spi`. Older macOS has no in-kernel GIC and would need a
//!   userspace GIC: not implemented, reported as a missing capability;
//! - exits: data aborts on device memory become `MmioRead`/`MmioWrite`
//!   (decoded by `arch::aarch64::esr`, completed on the next `run()`), HVC is
//!   PSCI (`arch::aarch64::psci`), WFI yields the thread, system register
//!   traps read as zero.
//!
//! Not verified on hardware: this machine can only type-check it
//! (`cargo clippy --target aarch64-apple-darwin`). See docs/PLATFORMS.md.

mod ffi;

use std::sync::Arc;
use std::time::Duration;

use vm_memory::{GuestMemory, GuestMemoryRegion};

use super::{HypervisorError, InterruptLine, Result, Vcpu, VcpuExit};
use crate::arch::aarch64::esr::{self, ExceptionClass, MmioAccess};
use crate::arch::aarch64::layout;
use crate::arch::aarch64::psci::{self, PsciAction};
use crate::arch::aarch64::regs::{mpidr, BootRegs};
use crate::devices::notify::QueueNotifier;
use crate::GuestMemoryMmap;
use ffi::*;

fn check(op: &'static str, rc: hv_return_t) -> Result<()> {
    if rc == HV_SUCCESS {
        Ok(())
    } else {
        Err(HypervisorError::call(
            op,
            std::io::Error::other(format!("hv_return_t {rc:#x}")),
        ))
    }
}

/// The Hypervisor.framework host API.
pub struct Hvf {
    cpus: u8,
}

impl Hvf {
    /// Prepares a backend for VMs with `cpus` vCPUs (the GIC's redistributor
    /// region is sized for them).
    pub fn new(cpus: u8) -> Self {
        Hvf { cpus }
    }
}

impl super::Hypervisor for Hvf {
    fn create_vm(&self) -> Result<Arc<dyn super::Vm>> {
        // SAFETY: a null config asks for the default VM (36-bit IPA space).
        check("hv_vm_create", unsafe {
            ffi::hv_vm_create(std::ptr::null_mut())
        })?;
        let gic = Gic::load().ok_or(HypervisorError::MissingCapability(
            "in-kernel GICv3 (hv_gic_create, macOS 15 or later)",
        ))?;
        gic.create(self.cpus)?;
        Ok(Arc::new(HvfVm { gic }))
    }

    fn name(&self) -> &'static str {
        "hvf"
    }
}

/// The macOS 15 GIC entry points, resolved at run time.
#[derive(Clone, Copy)]
struct Gic {
    config_create: HvGicConfigCreate,
    set_dist_base: HvGicConfigSetBase,
    set_redist_base: HvGicConfigSetBase,
    create: HvGicCreate,
    set_spi: HvGicSetSpi,
}

impl Gic {
    fn load() -> Option<Gic> {
        let get = |n: &std::ffi::CStr| ffi::lookup(n);
        let (a, b, c, d, e) = (
            get(c"hv_gic_config_create")?,
            get(c"hv_gic_config_set_distributor_base")?,
            get(c"hv_gic_config_set_redistributor_base")?,
            get(c"hv_gic_create")?,
            get(c"hv_gic_set_spi")?,
        );
        // SAFETY: the symbols come from Hypervisor.framework and have the C
        // signatures declared in ffi.rs (macOS 15 SDK, <Hypervisor/hv_gic.h>).
        unsafe {
            Some(Gic {
                config_create: std::mem::transmute::<*mut std::ffi::c_void, HvGicConfigCreate>(a),
                set_dist_base: std::mem::transmute::<*mut std::ffi::c_void, HvGicConfigSetBase>(b),
                set_redist_base: std::mem::transmute::<*mut std::ffi::c_void, HvGicConfigSetBase>(
                    c,
                ),
                create: std::mem::transmute::<*mut std::ffi::c_void, HvGicCreate>(d),
                set_spi: std::mem::transmute::<*mut std::ffi::c_void, HvGicSetSpi>(e),
            })
        }
    }

    fn create(&self, _cpus: u8) -> Result<()> {
        // SAFETY: calls into the framework with a config object it created;
        // the bases are the layout's (redistributors sized by the framework
        // per vCPU, matching layout::GIC_REDIST_SIZE_PER_CPU).
        unsafe {
            let cfg = (self.config_create)();
            if cfg.is_null() {
                return Err(HypervisorError::MissingCapability("hv_gic_config_create"));
            }
            check(
                "hv_gic_config_set_distributor_base",
                (self.set_dist_base)(cfg, layout::GIC_DIST_BASE),
            )?;
            check(
                "hv_gic_config_set_redistributor_base",
                (self.set_redist_base)(cfg, layout::GIC_REDIST_BASE),
            )?;
            check("hv_gic_create", (self.create)(cfg))
        }
    }
}

/// The (single) Hypervisor.framework VM of this process.
pub struct HvfVm {
    gic: Gic,
}

/// An SPI of the in-kernel GIC, pulsed for edge-triggered virtio interrupts.
struct SpiLine {
    intid: u32,
    set_spi: HvGicSetSpi,
}

impl InterruptLine for SpiLine {
    fn trigger(&self) -> std::io::Result<()> {
        // SAFETY: hv_gic_set_spi takes plain values; the GIC exists (created
        // with the VM).
        let rc = unsafe {
            let rc = (self.set_spi)(self.intid, true);
            (self.set_spi)(self.intid, false);
            rc
        };
        if rc == HV_SUCCESS {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("hv_gic_set_spi: {rc:#x}")))
        }
    }
}

impl super::Vm for HvfVm {
    fn map_memory(&self, mem: &GuestMemoryMmap) -> Result<()> {
        for region in mem.iter() {
            let host = mem
                .get_host_address(region.start_addr())
                .map_err(|e| HypervisorError::call("map memory", std::io::Error::other(e)))?;
            // SAFETY: the region is a live mmap owned by `mem`, which the
            // caller keeps alive for the VM's lifetime (trait contract).
            check("hv_vm_map", unsafe {
                ffi::hv_vm_map(
                    host.cast(),
                    region.start_addr().0,
                    region.len() as usize,
                    HV_MEMORY_READ | HV_MEMORY_WRITE | HV_MEMORY_EXEC,
                )
            })?;
        }
        Ok(())
    }

    fn create_vcpu(&self, index: u8) -> Result<Box<dyn Vcpu>> {
        Ok(Box::new(HvfVcpu {
            index,
            handle: None,
            exit: std::ptr::null(),
            boot: None,
            pending: None,
            data: [0; 8],
            vtimer_masked: false,
        }))
    }

    fn create_interrupt_line(&self, gsi: u32) -> Result<Arc<dyn InterruptLine>> {
        Ok(Arc::new(SpiLine {
            intid: layout::SPI_BASE + gsi,
            set_spi: self.gic.set_spi,
        }))
    }

    fn register_mmio_notifier(&self, _: u64, _: u32, _: &QueueNotifier) -> Result<bool> {
        // No ioeventfd equivalent: every QueueNotify write is an MMIO exit.
        Ok(false)
    }
}

/// One Hypervisor.framework vCPU.
pub struct HvfVcpu {
    index: u8,
    handle: Option<hv_vcpu_t>,
    /// The framework's exit record for this vCPU (valid once created).
    exit: *const hv_vcpu_exit_t,
    boot: Option<BootRegs>,
    /// An MMIO access handed to the VMM, completed by the next `run()`.
    pending: Option<MmioAccess>,
    data: [u8; 8],
    vtimer_masked: bool,
}

// SAFETY: `exit` is only dereferenced by `run()`, on the thread that created
// the vCPU (creation happens in the first `run()`); before that it is null
// and the struct is plain data that may move to its vCPU thread.
unsafe impl Send for HvfVcpu {}

impl HvfVcpu {
    fn handle(&self) -> hv_vcpu_t {
        self.handle.unwrap_or(u64::MAX)
    }

    fn get_reg(&self, reg: u32) -> Result<u64> {
        let mut v = 0;
        // SAFETY: `v` is a valid out pointer; the vCPU belongs to this thread.
        check("hv_vcpu_get_reg", unsafe {
            ffi::hv_vcpu_get_reg(self.handle(), reg, &mut v)
        })?;
        Ok(v)
    }

    fn set_reg(&self, reg: u32, value: u64) -> Result<()> {
        // SAFETY: plain values; the vCPU belongs to this thread.
        check("hv_vcpu_set_reg", unsafe {
            ffi::hv_vcpu_set_reg(self.handle(), reg, value)
        })
    }

    fn advance_pc(&self) -> Result<()> {
        self.set_reg(HV_REG_PC, self.get_reg(HV_REG_PC)? + 4)
    }

    /// Creates the vCPU on the calling thread and loads its entry state.
    fn ensure_created(&mut self) -> Result<()> {
        if self.handle.is_some() {
            return Ok(());
        }
        let mut handle = 0;
        let mut exit = std::ptr::null();
        // SAFETY: valid out pointers; a null config means defaults.
        check("hv_vcpu_create", unsafe {
            ffi::hv_vcpu_create(&mut handle, &mut exit, std::ptr::null_mut())
        })?;
        self.handle = Some(handle);
        self.exit = exit;
        // SAFETY: plain values on the vCPU this thread just created.
        check("hv_vcpu_set_sys_reg(MPIDR_EL1)", unsafe {
            ffi::hv_vcpu_set_sys_reg(handle, HV_SYS_REG_MPIDR_EL1, mpidr(self.index))
        })?;
        if let Some(b) = self.boot {
            self.set_reg(HV_REG_PC, b.pc)?;
            self.set_reg(HV_REG_X0, b.x0)?;
            self.set_reg(HV_REG_CPSR, b.pstate)?;
        }
        Ok(())
    }

    /// Finishes the MMIO access the VMM just handled: a load's value goes to
    /// its register; both kinds step over the instruction.
    fn complete_mmio(&mut self) -> Result<()> {
        if let Some(access) = self.pending.take() {
            if !access.write && access.reg != 31 {
                let v = access.load_value(&self.data[..access.size]);
                self.set_reg(HV_REG_X0 + u32::from(access.reg), v)?;
            }
            self.advance_pc()?;
        }
        Ok(())
    }

    /// Unmasks the virtual timer once the guest has dealt with it (its
    /// CNTV_CTL no longer shows an unmasked, firing timer).
    fn update_vtimer(&mut self) -> Result<()> {
        if !self.vtimer_masked {
            return Ok(());
        }
        let mut ctl = 0;
        // SAFETY: valid out pointer; the vCPU belongs to this thread.
        check("hv_vcpu_get_sys_reg(CNTV_CTL_EL0)", unsafe {
            ffi::hv_vcpu_get_sys_reg(self.handle(), HV_SYS_REG_CNTV_CTL_EL0, &mut ctl)
        })?;
        // ENABLE (bit 0), IMASK (bit 1), ISTATUS (bit 2)
        let firing = ctl & 0b101 == 0b101 && ctl & 0b10 == 0;
        if !firing {
            // SAFETY: plain values on this thread's vCPU.
            check("hv_vcpu_set_vtimer_mask", unsafe {
                ffi::hv_vcpu_set_vtimer_mask(self.handle(), false)
            })?;
            self.vtimer_masked = false;
        }
        Ok(())
    }

    fn handle_hvc(&mut self) -> Result<Option<VcpuExit<'static>>> {
        let x = |i| self.get_reg(HV_REG_X0 + i);
        let action = psci::handle_call(x(0)?, x(1)?, x(2)?, x(3)?);
        // HVC's preferred return address is the next instruction: no PC step.
        match action {
            PsciAction::Return(v) => self.set_reg(HV_REG_X0, v).map(|_| None),
            PsciAction::SystemOff => Ok(Some(VcpuExit::Shutdown)),
            PsciAction::SystemReset => Ok(Some(VcpuExit::Reset)),
            PsciAction::CpuOff => Ok(Some(VcpuExit::Hlt)),
            // Secondary vCPUs need the VMM to start a thread for the target;
            // until that exists, say so and Linux stays uniprocessor.
            PsciAction::CpuOn { .. } => self
                .set_reg(HV_REG_X0, psci::ret::NOT_SUPPORTED as u64)
                .map(|_| None),
        }
    }
}

impl Vcpu for HvfVcpu {
    fn index(&self) -> u8 {
        self.index
    }

    fn configure_aarch64(&mut self, regs: &BootRegs) -> Result<()> {
        self.boot = Some(*regs);
        if self.handle.is_some() {
            self.set_reg(HV_REG_PC, regs.pc)?;
            self.set_reg(HV_REG_X0, regs.x0)?;
            self.set_reg(HV_REG_CPSR, regs.pstate)?;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<VcpuExit<'_>> {
        self.ensure_created()?;
        self.complete_mmio()?;
        loop {
            self.update_vtimer()?;
            // SAFETY: the vCPU was created on this thread.
            check("hv_vcpu_run", unsafe { ffi::hv_vcpu_run(self.handle()) })?;
            // SAFETY: `exit` points to the framework's per-vCPU exit record,
            // valid for the vCPU's lifetime and written by hv_vcpu_run.
            let exit = unsafe { *self.exit };
            match exit.reason {
                HV_EXIT_REASON_CANCELED => return Ok(VcpuExit::Interrupted),
                HV_EXIT_REASON_VTIMER_ACTIVATED => {
                    // The framework masked the timer and the in-kernel GIC
                    // holds its PPI; unmask once the guest handled it.
                    self.vtimer_masked = true;
                    continue;
                }
                HV_EXIT_REASON_EXCEPTION => {}
                other => return Ok(VcpuExit::Other(format!("hvf exit reason {other}"))),
            }
            let syndrome = exit.exception.syndrome;
            match ExceptionClass::of(syndrome) {
                ExceptionClass::DataAbortLowerEl => {
                    // No instruction syndrome (ISV = 0): would need decoding.
                    let Ok(access) = esr::decode_data_abort(syndrome) else {
                        return Ok(VcpuExit::InternalError {
                            suberror: 0,
                            data: vec![syndrome, exit.exception.physical_address],
                        });
                    };
                    let addr = exit.exception.physical_address;
                    self.pending = Some(access);
                    if access.write {
                        let v = if access.reg == 31 {
                            0
                        } else {
                            self.get_reg(HV_REG_X0 + u32::from(access.reg))?
                        };
                        self.data = access.store_bytes(v);
                        return Ok(VcpuExit::MmioWrite {
                            addr,
                            data: &self.data[..access.size],
                        });
                    }
                    self.data = [0; 8];
                    return Ok(VcpuExit::MmioRead {
                        addr,
                        data: &mut self.data[..access.size],
                    });
                }
                ExceptionClass::Hvc64 => {
                    if let Some(exit) = self.handle_hvc()? {
                        return Ok(exit);
                    }
                }
                ExceptionClass::WfiWfe => {
                    // Nothing to wait on here but the timer and device
                    // interrupts, which the in-kernel GIC delivers on the next
                    // run: give the host CPU away briefly.
                    self.advance_pc()?;
                    std::thread::sleep(Duration::from_micros(200));
                }
                ExceptionClass::SysReg => {
                    // ISS: direction (bit 0, 1 = read), Rt (bits 9:5).
                    if syndrome & 1 == 1 {
                        let rt = ((syndrome >> 5) & 0x1f) as u32;
                        if rt != 31 {
                            self.set_reg(HV_REG_X0 + rt, 0)?;
                        }
                    }
                    self.advance_pc()?;
                }
                ExceptionClass::Smc64 => {
                    // No secure firmware: SMC returns NOT_SUPPORTED and, unlike
                    // HVC, is re-executed unless the PC is stepped.
                    self.set_reg(HV_REG_X0, psci::ret::NOT_SUPPORTED as u64)?;
                    self.advance_pc()?;
                }
                _ => {
                    return Ok(VcpuExit::InternalError {
                        suberror: 1,
                        data: vec![syndrome, exit.exception.virtual_address],
                    })
                }
            }
        }
    }

    fn describe_failure(&mut self, _mem: &GuestMemoryMmap) -> String {
        let pc = self.get_reg(HV_REG_PC).unwrap_or(0);
        let pstate = self.get_reg(HV_REG_CPSR).unwrap_or(0);
        format!("hvf vcpu {}: pc={pc:#x} pstate={pstate:#x}", self.index)
    }
}

impl Drop for HvfVcpu {
    fn drop(&mut self) {
        if let Some(h) = self.handle {
            // SAFETY: destroys the vCPU this thread created (vCPUs are
            // dropped on their own thread by the VMM's run loop).
            unsafe { ffi::hv_vcpu_destroy(h) };
        }
    }
}
