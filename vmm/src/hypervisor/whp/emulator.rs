//! The WinHvEmulation instruction emulator, used to decode MMIO accesses
//! (WHP reports only the faulting GPA and the instruction bytes).

use std::ffi::c_void;

use windows_sys::Win32::System::Hypervisor::*;

use super::api::{
    WHvEmulatorCreateEmulator, WHvEmulatorDestroyEmulator, WHvEmulatorTryMmioEmulation,
    WHvGetVirtualProcessorRegisters, WHvSetVirtualProcessorRegisters, WHvTranslateGva,
};

use super::check;
use crate::hypervisor::Result;

const S_OK: i32 = 0;
/// E_FAIL: makes the emulator abandon the instruction without committing.
const E_FAIL: i32 = 0x8000_4005_u32 as i32;
/// E_NOTIMPL.
const E_NOTIMPL: i32 = 0x8000_4001_u32 as i32;

/// Which pass of an MMIO emulation this is.
#[derive(Clone, Copy)]
pub enum Pass {
    /// Find out what the instruction accesses; stores complete here.
    Probe,
    /// Finish a load with the data the device returned.
    Complete([u8; 8]),
}

/// What a probe found.
pub enum Access {
    /// A load of `size` bytes at `gpa`: ask the device, then `Pass::Complete`.
    Load {
        /// Guest physical address.
        gpa: u64,
        /// Bytes.
        size: usize,
    },
    /// A store, already committed by the emulator (RIP advanced).
    Store {
        /// Guest physical address.
        gpa: u64,
        /// Bytes.
        size: usize,
        /// The stored bytes.
        data: [u8; 8],
    },
    /// The emulator could not handle the instruction (its status word).
    Failed(u32),
}

/// Callback state, reached through the emulator's context pointer.
struct Context {
    partition: WHV_PARTITION_HANDLE,
    vp: u32,
    pass: Pass,
    seen: Option<(u64, usize, bool, [u8; 8])>,
}

/// One emulator per vCPU.
pub struct MmioEmulator {
    handle: *mut c_void,
    ctx: Box<Context>,
}

impl MmioEmulator {
    /// Creates the emulator for virtual processor `vp` of `partition`.
    pub fn new(partition: WHV_PARTITION_HANDLE, vp: u32) -> Result<Self> {
        let callbacks = WHV_EMULATOR_CALLBACKS {
            Size: std::mem::size_of::<WHV_EMULATOR_CALLBACKS>() as u32,
            Reserved: 0,
            WHvEmulatorIoPortCallback: Some(io_port),
            WHvEmulatorMemoryCallback: Some(memory),
            WHvEmulatorGetVirtualProcessorRegisters: Some(get_registers),
            WHvEmulatorSetVirtualProcessorRegisters: Some(set_registers),
            WHvEmulatorTranslateGvaPage: Some(translate_gva),
        };
        let mut handle = std::ptr::null_mut();
        // SAFETY: valid callbacks table and out pointer.
        check("WHvEmulatorCreateEmulator", unsafe {
            WHvEmulatorCreateEmulator(&callbacks, &mut handle)
        })?;
        Ok(MmioEmulator {
            handle,
            ctx: Box::new(Context {
                partition,
                vp,
                pass: Pass::Probe,
                seen: None,
            }),
        })
    }

    /// Emulates the instruction of memory-access exit `exit`.
    pub fn run(&mut self, exit: &WHV_RUN_VP_EXIT_CONTEXT, pass: Pass) -> Result<Access> {
        self.ctx.pass = pass;
        self.ctx.seen = None;
        let mut status = WHV_EMULATOR_STATUS { AsUINT32: 0 };
        let ctx: *const Context = &*self.ctx;
        // SAFETY: the emulator, the exit context and `ctx` are live for the
        // call; the callbacks only touch `ctx` through this pointer.
        check("WHvEmulatorTryMmioEmulation", unsafe {
            WHvEmulatorTryMmioEmulation(
                self.handle,
                ctx.cast(),
                &exit.VpContext,
                &exit.Anonymous.MemoryAccess,
                &mut status,
            )
        })?;
        // SAFETY: the status is a u32 bitfield either way.
        let status = unsafe { status.AsUINT32 };
        Ok(match self.ctx.seen {
            Some((gpa, size, true, data)) => Access::Store { gpa, size, data },
            Some((gpa, size, false, _)) => Access::Load { gpa, size },
            None => Access::Failed(status),
        })
    }
}

impl Drop for MmioEmulator {
    fn drop(&mut self) {
        // SAFETY: destroys the emulator this value owns, once.
        unsafe { WHvEmulatorDestroyEmulator(self.handle) };
    }
}

unsafe extern "system" fn io_port(_: *const c_void, _: *mut WHV_EMULATOR_IO_ACCESS_INFO) -> i32 {
    // Port I/O exits are handled without the emulator.
    E_NOTIMPL
}

unsafe extern "system" fn memory(
    context: *const c_void,
    access: *mut WHV_EMULATOR_MEMORY_ACCESS_INFO,
) -> i32 {
    // SAFETY: `context` is the `Context` passed to WHvEmulatorTryMmioEmulation,
    // which holds it exclusively for the call; `access` is the emulator's.
    let (ctx, access) = unsafe { (&mut *(context as *mut Context), &mut *access) };
    let size = usize::from(access.AccessSize).min(8);
    let write = access.Direction == 1;
    ctx.seen = Some((access.GpaAddress, size, write, access.Data));
    match (write, ctx.pass) {
        (true, _) => S_OK,
        (false, Pass::Probe) => E_FAIL,
        (false, Pass::Complete(data)) => {
            access.Data[..size].copy_from_slice(&data[..size]);
            S_OK
        }
    }
}

unsafe extern "system" fn get_registers(
    context: *const c_void,
    names: *const WHV_REGISTER_NAME,
    count: u32,
    values: *mut WHV_REGISTER_VALUE,
) -> i32 {
    // SAFETY: see `memory`; the arrays are the emulator's, of `count` entries.
    unsafe {
        let ctx = &*(context as *const Context);
        WHvGetVirtualProcessorRegisters(ctx.partition, ctx.vp, names, count, values)
    }
}

unsafe extern "system" fn set_registers(
    context: *const c_void,
    names: *const WHV_REGISTER_NAME,
    count: u32,
    values: *const WHV_REGISTER_VALUE,
) -> i32 {
    // SAFETY: see `memory`. In a probe of a load nothing is committed: the
    // memory callback failed first.
    unsafe {
        let ctx = &*(context as *const Context);
        WHvSetVirtualProcessorRegisters(ctx.partition, ctx.vp, names, count, values)
    }
}

unsafe extern "system" fn translate_gva(
    context: *const c_void,
    gva: u64,
    flags: WHV_TRANSLATE_GVA_FLAGS,
    result: *mut WHV_TRANSLATE_GVA_RESULT_CODE,
    gpa: *mut u64,
) -> i32 {
    // SAFETY: see `memory`; `result` and `gpa` are the emulator's out pointers.
    unsafe {
        let ctx = &*(context as *const Context);
        let mut r: WHV_TRANSLATE_GVA_RESULT = std::mem::zeroed();
        let hr = WHvTranslateGva(ctx.partition, ctx.vp, gva, flags, &mut r, gpa);
        *result = r.ResultCode;
        hr
    }
}
