//! Windows Hypervisor Platform backend (Windows 10 1803+ x86_64 hosts,
//! x86_64 guests), through `windows-sys`' raw WinHvPlatform bindings.
//!
//! How the API maps to the traits:
//! - a partition per VM (`WHvCreatePartition`, processor count, xAPIC
//!   emulation in the hypervisor, `WHvSetupPartition`); guest RAM is mapped
//!   with `WHvMapGpaRange` from the same host allocation the devices use;
//! - port I/O exits carry the port, size and RAX, so `in`/`out` are handled
//!   without an instruction emulator (string I/O is reported as an error);
//! - MMIO exits carry only the faulting GPA and the instruction bytes, so the
//!   WinHvEmulation instruction emulator decodes them. Its memory callback is
//!   synchronous while berth's `Vcpu::run` hands accesses to the VMM, so
//!   loads are emulated twice: a probe pass records address and size and
//!   fails the access (the emulator commits no register), the VMM reads the
//!   device, and the next `run()` emulates again with the data. Stores need
//!   one pass;
//! - WHP emulates the local APICs but no I/O APIC, so the VM carries a
//!   userspace one (`devices::ioapic`) that the VMM maps at the MP table's
//!   address (`Vm::platform_mmio_devices`). Interrupt lines raise its pins;
//!   the entry the guest programmed (vector, delivery and destination mode,
//!   destination, trigger) becomes a `WHvRequestInterrupt`.
//!
//! Not verified on Windows: this machine type-checks it
//! (`cargo clippy --target x86_64-pc-windows-msvc`).

// WinHvPlatform's constants keep their C names (matched in patterns below).
#![allow(non_upper_case_globals)]

mod api;
mod emulator;

use std::sync::{Arc, Mutex};

use vm_memory::{GuestMemory, GuestMemoryRegion};
use windows_sys::Win32::System::Hypervisor::*;

// The functions come from the DLLs loaded at run time; these names shadow
// windows-sys' link-time declarations of the same names.
use api::{
    WHvCreatePartition, WHvCreateVirtualProcessor, WHvDeletePartition,
    WHvGetVirtualProcessorRegisters, WHvMapGpaRange, WHvRequestInterrupt, WHvRunVirtualProcessor,
    WHvSetPartitionProperty, WHvSetVirtualProcessorRegisters, WHvSetupPartition,
};

use super::x86_exits::{merge_in_value, segment_attributes, whp_instruction_length, IoAccess};
use super::{HypervisorError, InterruptLine, Result, Vcpu, VcpuExit};
use crate::arch::x86_64::{Segment, VcpuSetup, IOAPIC_ADDR};
use crate::devices::bus::SharedDevice;
use crate::devices::ioapic::{Delivery, IoApic, IOAPIC_SIZE};
use crate::devices::notify::QueueNotifier;
use crate::GuestMemoryMmap;
use emulator::{MmioEmulator, Pass};

fn check(op: &'static str, hr: i32) -> Result<()> {
    if hr >= 0 {
        Ok(())
    } else {
        Err(HypervisorError::call(
            op,
            std::io::Error::other(format!("HRESULT {:#010x}", hr as u32)),
        ))
    }
}

/// The Windows Hypervisor Platform host API.
pub struct Whp {
    cpus: u8,
}

impl Whp {
    /// A backend for VMs with `cpus` vCPUs.
    pub fn new(cpus: u8) -> Self {
        Whp { cpus }
    }
}

/// An owned partition handle.
struct Partition(WHV_PARTITION_HANDLE);

impl Drop for Partition {
    fn drop(&mut self) {
        // SAFETY: deletes the partition this value owns, once.
        unsafe { WHvDeletePartition(self.0) };
    }
}

impl super::Hypervisor for Whp {
    fn create_vm(&self) -> Result<Arc<dyn super::Vm>> {
        api::load().map_err(|why| HypervisorError::Open(std::io::Error::other(why)))?;
        let mut handle: WHV_PARTITION_HANDLE = 0;
        // SAFETY: valid out pointer.
        check("WHvCreatePartition", unsafe {
            WHvCreatePartition(&mut handle)
        })?;
        let partition = Partition(handle);
        let cpus = u32::from(self.cpus);
        let apic_mode: WHV_X64_LOCAL_APIC_EMULATION_MODE = WHvX64LocalApicEmulationModeXApic;
        // SAFETY: each property buffer is a live value of the size passed.
        unsafe {
            check(
                "WHvSetPartitionProperty(ProcessorCount)",
                WHvSetPartitionProperty(
                    handle,
                    WHvPartitionPropertyCodeProcessorCount,
                    (&cpus as *const u32).cast(),
                    4,
                ),
            )?;
            check(
                "WHvSetPartitionProperty(LocalApicEmulationMode)",
                WHvSetPartitionProperty(
                    handle,
                    WHvPartitionPropertyCodeLocalApicEmulationMode,
                    (&apic_mode as *const i32).cast(),
                    4,
                ),
            )?;
            check("WHvSetupPartition", WHvSetupPartition(handle))?;
        }
        let partition = Arc::new(partition);
        let target = partition.clone();
        let ioapic = Arc::new(Mutex::new(IoApic::new(Box::new(move |d| {
            // A failed injection has nobody to report to; the guest sees a
            // lost interrupt, as with a masked pin.
            let _ = request_interrupt(&target, d);
        }))));
        Ok(Arc::new(WhpVm { partition, ioapic }))
    }

    fn name(&self) -> &'static str {
        "whp"
    }
}

/// A WHP partition.
pub struct WhpVm {
    partition: Arc<Partition>,
    ioapic: Arc<Mutex<IoApic>>,
}

// SAFETY: a partition handle may be used from any thread; WHP serialises
// calls per virtual processor itself.
unsafe impl Send for Partition {}
// SAFETY: as above, the handle is an opaque token shared read-only.
unsafe impl Sync for Partition {}

/// Injects what the I/O APIC sends into the partition's local APICs.
fn request_interrupt(partition: &Partition, d: Delivery) -> std::io::Result<()> {
    let kind = match d.mode {
        1 => WHvX64InterruptTypeLowestPriority,
        4 => WHvX64InterruptTypeNmi,
        5 => WHvX64InterruptTypeInit,
        _ => WHvX64InterruptTypeFixed,
    };
    let dest_mode = if d.logical {
        WHvX64InterruptDestinationModeLogical
    } else {
        WHvX64InterruptDestinationModePhysical
    };
    let trigger = if d.level {
        WHvX64InterruptTriggerModeLevel
    } else {
        WHvX64InterruptTriggerModeEdge
    };
    let ctl = WHV_INTERRUPT_CONTROL {
        // Type in bits 0..8, destination mode in 8..12, trigger mode in 12..16.
        _bitfield: (kind as u64) | ((dest_mode as u64) << 8) | ((trigger as u64) << 12),
        Destination: u32::from(d.destination),
        Vector: u32::from(d.vector),
    };
    // SAFETY: `ctl` is a valid WHV_INTERRUPT_CONTROL of the size passed.
    let hr = unsafe {
        WHvRequestInterrupt(
            partition.0,
            &ctl,
            std::mem::size_of::<WHV_INTERRUPT_CONTROL>() as u32,
        )
    };
    if hr >= 0 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "WHvRequestInterrupt: {:#010x}",
            hr as u32
        )))
    }
}

/// An interrupt line: a pin of the VM's I/O APIC.
struct IoApicLine {
    ioapic: Arc<Mutex<IoApic>>,
    pin: u32,
}

impl InterruptLine for IoApicLine {
    fn trigger(&self) -> std::io::Result<()> {
        self.ioapic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .raise(self.pin);
        Ok(())
    }
}

impl super::Vm for WhpVm {
    fn map_memory(&self, mem: &GuestMemoryMmap) -> Result<()> {
        for region in mem.iter() {
            let host = mem
                .get_host_address(region.start_addr())
                .map_err(|e| HypervisorError::call("map memory", std::io::Error::other(e)))?;
            // SAFETY: the region is a live allocation owned by `mem`, which
            // the caller keeps alive for the VM's lifetime (trait contract).
            check("WHvMapGpaRange", unsafe {
                WHvMapGpaRange(
                    self.partition.0,
                    host.cast(),
                    region.start_addr().0,
                    region.len(),
                    WHvMapGpaRangeFlagRead | WHvMapGpaRangeFlagWrite | WHvMapGpaRangeFlagExecute,
                )
            })?;
        }
        Ok(())
    }

    fn create_vcpu(&self, index: u8) -> Result<Box<dyn Vcpu>> {
        // SAFETY: plain values on a partition we own.
        check("WHvCreateVirtualProcessor", unsafe {
            WHvCreateVirtualProcessor(self.partition.0, u32::from(index), 0)
        })?;
        Ok(Box::new(WhpVcpu {
            partition: self.partition.clone(),
            index,
            emulator: MmioEmulator::new(self.partition.0, u32::from(index))?,
            pending: Pending::None,
            data: [0; 8],
        }))
    }

    fn create_interrupt_line(&self, gsi: u32) -> Result<Arc<dyn InterruptLine>> {
        Ok(Arc::new(IoApicLine {
            ioapic: self.ioapic.clone(),
            pin: gsi,
        }))
    }

    fn platform_mmio_devices(&self) -> Vec<(u64, u64, SharedDevice)> {
        let dev: SharedDevice = self.ioapic.clone();
        vec![(u64::from(IOAPIC_ADDR), IOAPIC_SIZE, dev)]
    }

    fn register_mmio_notifier(&self, _: u64, _: u32, _: &QueueNotifier) -> Result<bool> {
        // WHP has no ioeventfd equivalent: notifications are MMIO exits.
        Ok(false)
    }
}

/// An access handed to the VMM, finished by the next `run()`.
enum Pending {
    None,
    /// `in`: put `size` bytes of data in RAX, step `len` bytes.
    PortIn {
        size: usize,
        len: u64,
    },
    /// An MMIO load: emulate again with the data.
    MmioLoad {
        exit: Box<WHV_RUN_VP_EXIT_CONTEXT>,
    },
}

/// One WHP virtual processor.
pub struct WhpVcpu {
    partition: Arc<Partition>,
    index: u8,
    emulator: MmioEmulator,
    pending: Pending,
    data: [u8; 8],
}

// SAFETY: the emulator handle and partition handle are opaque tokens WHP
// lets any thread use; the vCPU runs on one thread at a time (`&mut self`).
unsafe impl Send for WhpVcpu {}

impl WhpVcpu {
    fn set_regs(&self, names: &[WHV_REGISTER_NAME], values: &[WHV_REGISTER_VALUE]) -> Result<()> {
        // SAFETY: both arrays are live and of the count passed.
        check("WHvSetVirtualProcessorRegisters", unsafe {
            WHvSetVirtualProcessorRegisters(
                self.partition.0,
                u32::from(self.index),
                names.as_ptr(),
                names.len() as u32,
                values.as_ptr(),
            )
        })
    }

    fn get_reg(&self, name: WHV_REGISTER_NAME) -> Result<u64> {
        let mut v = WHV_REGISTER_VALUE { Reg64: 0 };
        // SAFETY: one name, one value slot.
        check("WHvGetVirtualProcessorRegisters", unsafe {
            WHvGetVirtualProcessorRegisters(
                self.partition.0,
                u32::from(self.index),
                &name,
                1,
                &mut v,
            )
        })?;
        // SAFETY: the registers read here are 64-bit general registers.
        Ok(unsafe { v.Reg64 })
    }

    fn complete(&mut self) -> Result<()> {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => Ok(()),
            Pending::PortIn { size, len } => {
                let rax = self.get_reg(WHvX64RegisterRax)?;
                let rip = self.get_reg(WHvX64RegisterRip)?;
                self.set_regs(
                    &[WHvX64RegisterRax, WHvX64RegisterRip],
                    &[
                        WHV_REGISTER_VALUE {
                            Reg64: merge_in_value(rax, &self.data, size),
                        },
                        WHV_REGISTER_VALUE { Reg64: rip + len },
                    ],
                )
            }
            Pending::MmioLoad { exit } => {
                self.emulator.run(&exit, Pass::Complete(self.data))?;
                Ok(())
            }
        }
    }
}

fn segment(s: &Segment) -> WHV_REGISTER_VALUE {
    WHV_REGISTER_VALUE {
        Segment: WHV_X64_SEGMENT_REGISTER {
            Base: s.base,
            Limit: s.limit,
            Selector: s.selector,
            Anonymous: WHV_X64_SEGMENT_REGISTER_0 {
                Attributes: segment_attributes(s),
            },
        },
    }
}

impl Vcpu for WhpVcpu {
    fn index(&self) -> u8 {
        self.index
    }

    fn configure_x86(&mut self, setup: &VcpuSetup) -> Result<()> {
        // CPUID and MSRs keep WHP's defaults (the host's, filtered by the
        // hypervisor); the kvm_pvm CPUID filter has no meaning here.
        let Some(b) = &setup.boot else {
            return Ok(());
        };
        let r64 = |v: u64| WHV_REGISTER_VALUE { Reg64: v };
        let names = [
            WHvX64RegisterRip,
            WHvX64RegisterRsp,
            WHvX64RegisterRsi,
            WHvX64RegisterRflags,
            WHvX64RegisterCr0,
            WHvX64RegisterCr3,
            WHvX64RegisterCr4,
            WHvX64RegisterEfer,
            WHvX64RegisterCs,
            WHvX64RegisterDs,
            WHvX64RegisterEs,
            WHvX64RegisterFs,
            WHvX64RegisterGs,
            WHvX64RegisterSs,
            WHvX64RegisterGdtr,
        ];
        let values = [
            r64(b.rip),
            r64(b.rsp),
            r64(b.rsi),
            r64(b.rflags),
            r64(b.cr0),
            r64(b.cr3),
            r64(b.cr4),
            r64(b.efer),
            segment(&b.cs),
            segment(&b.data),
            segment(&b.data),
            segment(&b.data),
            segment(&b.data),
            segment(&b.data),
            WHV_REGISTER_VALUE {
                Table: WHV_X64_TABLE_REGISTER {
                    Pad: [0; 3],
                    Limit: b.gdt_limit,
                    Base: b.gdt_base,
                },
            },
        ];
        self.set_regs(&names, &values)
    }

    fn run(&mut self) -> Result<VcpuExit<'_>> {
        self.complete()?;
        let mut exit: WHV_RUN_VP_EXIT_CONTEXT =
            // SAFETY: the exit context is plain data; all-zero is valid.
            unsafe { std::mem::zeroed() };
        // SAFETY: `exit` is a writable buffer of the size passed.
        check("WHvRunVirtualProcessor", unsafe {
            WHvRunVirtualProcessor(
                self.partition.0,
                u32::from(self.index),
                (&mut exit as *mut WHV_RUN_VP_EXIT_CONTEXT).cast(),
                std::mem::size_of::<WHV_RUN_VP_EXIT_CONTEXT>() as u32,
            )
        })?;
        let len = whp_instruction_length(exit.VpContext._bitfield);
        match exit.ExitReason {
            WHvRunVpExitReasonX64IoPortAccess => {
                // SAFETY: the union member matching the exit reason.
                let io = unsafe { &exit.Anonymous.IoPortAccess };
                // SAFETY: AccessInfo is a u32 bitfield either way.
                let info = unsafe { io.AccessInfo.AsUINT32 };
                let access = IoAccess::from_whp(info);
                let size = access.size;
                if !access.is_simple() {
                    return Ok(VcpuExit::InternalError {
                        suberror: 1,
                        data: vec![u64::from(io.PortNumber), u64::from(info)],
                    });
                }
                let port = io.PortNumber;
                if access.write {
                    self.data = io.Rax.to_le_bytes();
                    let rip = exit.VpContext.Rip + len;
                    self.set_regs(&[WHvX64RegisterRip], &[WHV_REGISTER_VALUE { Reg64: rip }])?;
                    return Ok(VcpuExit::IoOut {
                        port,
                        data: &self.data[..size],
                    });
                }
                self.pending = Pending::PortIn { size, len };
                self.data = [0; 8];
                Ok(VcpuExit::IoIn {
                    port,
                    data: &mut self.data[..size],
                })
            }
            WHvRunVpExitReasonMemoryAccess => match self.emulator.run(&exit, Pass::Probe)? {
                emulator::Access::Store { gpa, size, data } => {
                    self.data = data;
                    Ok(VcpuExit::MmioWrite {
                        addr: gpa,
                        data: &self.data[..size],
                    })
                }
                emulator::Access::Load { gpa, size } => {
                    self.pending = Pending::MmioLoad {
                        exit: Box::new(exit),
                    };
                    self.data = [0; 8];
                    Ok(VcpuExit::MmioRead {
                        addr: gpa,
                        data: &mut self.data[..size],
                    })
                }
                emulator::Access::Failed(status) => Ok(VcpuExit::InternalError {
                    suberror: 2,
                    data: vec![u64::from(status)],
                }),
            },
            WHvRunVpExitReasonX64Halt => Ok(VcpuExit::Hlt),
            WHvRunVpExitReasonCanceled => Ok(VcpuExit::Interrupted),
            WHvRunVpExitReasonUnrecoverableException => Ok(VcpuExit::Shutdown),
            other => Ok(VcpuExit::Other(format!("whp exit reason {other:#x}"))),
        }
    }

    fn describe_failure(&mut self, _mem: &GuestMemoryMmap) -> String {
        let rip = self.get_reg(WHvX64RegisterRip).unwrap_or(0);
        format!("whp vcpu {}: rip={rip:#x}", self.index)
    }
}
