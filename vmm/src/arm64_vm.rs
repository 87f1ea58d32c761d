//! Assembles and runs an arm64 VM on a backend without KVM's kernel-side
//! helpers (Hypervisor.framework): RAM at `layout::RAM_BASE`; kernel Image,
//! initrd and device tree placed by `arch::aarch64::boot`; a PL011 console
//! and the same virtio-mmio transport and devices as the KVM VMM (vsock,
//! blk, rng), on one MMIO bus the vCPU thread dispatches to. Queue
//! notifications arrive as MMIO exits and ring [`QueueNotifier`]s;
//! [`DeviceWorkers`] threads wait on them and on vsock's host sockets, as in
//! `x86_vm`, whose integration test runs the same workers and vsock muxer
//! against a real guest on Linux.
//!
//! [`QueueNotifier`]: crate::devices::notify::QueueNotifier
//! [`DeviceWorkers`]: crate::devices::virtio::worker::DeviceWorkers
//!
//! Limits: one vCPU (PSCI CPU_ON is not implemented yet). Type-checked, not
//! run: see docs/PLATFORMS.md.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use vm_memory::GuestAddress;

use crate::arch::aarch64::boot::{load_guest, Arm64BootError, GuestSpec};
use crate::arch::aarch64::layout;
use crate::device_manager::{self, DeviceConfig, DeviceError, DiskConfig};
use crate::devices::pl011::Pl011;
use crate::devices::virtio::worker::DeviceWorkers;
use crate::devices::{Bus, BusError};
use crate::hypervisor::{Hypervisor, HypervisorError, Vcpu, VcpuExit};
use crate::GuestMemoryMmap;

/// What to boot.
pub struct Arm64VmConfig {
    /// The kernel `Image`.
    pub kernel: PathBuf,
    /// Initial ramdisk.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Console output.
    pub console: Box<dyn Write + Send>,
    /// Expose guest vsock (CID 3) on this Unix socket (see `x86_vm`).
    pub vsock_uds: Option<PathBuf>,
    /// virtio-blk disks: (path, read-only).
    pub disks: Vec<(PathBuf, bool)>,
    /// Add a virtio-rng device.
    pub rng: bool,
    /// Add a virtio-balloon device (free page reporting).
    pub balloon: bool,
}

/// How the guest ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Arm64Exit {
    /// PSCI SYSTEM_OFF (or CPU_OFF of the only vCPU).
    PowerOff,
    /// PSCI SYSTEM_RESET.
    Reset,
    /// The vCPU failed.
    Failed(String),
}

/// Errors setting the VM up.
#[derive(Debug, thiserror::Error)]
pub enum Arm64VmError {
    /// The hypervisor failed.
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    /// Guest memory could not be allocated.
    #[error("cannot allocate guest memory: {0}")]
    Memory(#[from] vm_memory::mmap::FromRangesError),
    /// Loading the guest failed.
    #[error(transparent)]
    Boot(#[from] Arm64BootError),
    /// A device could not be created or attached.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Devices collide on the bus.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A host file or resource failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// Boots `config` on `hypervisor` and runs it until the guest powers off.
pub fn run(hypervisor: &dyn Hypervisor, config: Arm64VmConfig) -> Result<Arm64Exit, Arm64VmError> {
    let ram = config.mem_mib << 20;
    let vm = hypervisor.create_vm()?;
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(layout::RAM_BASE), ram as usize)])?;
    vm.map_memory(&mem)?;

    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| Arm64VmError::Io(p.display().to_string(), e));
    let kernel = read(&config.kernel)?;
    let initrd = config.initrd.as_ref().map(read).transpose()?;

    let mut configs = Vec::new();
    if let Some(uds) = &config.vsock_uds {
        configs.push(DeviceConfig::Vsock(uds.clone()));
    }
    configs.extend(config.disks.iter().map(|(path, read_only)| {
        DeviceConfig::Block(DiskConfig {
            path: path.clone(),
            read_only: *read_only,
        })
    }));
    if config.rng {
        configs.push(DeviceConfig::Rng);
    }
    if config.balloon {
        configs.push(DeviceConfig::Balloon);
    }
    let devices = device_manager::build(&configs)?;
    let cmdline = if config.balloon {
        crate::devices::virtio::balloon::guest_cmdline(&config.cmdline)
    } else {
        config.cmdline.clone()
    };
    let boot = load_guest(
        &mem,
        &GuestSpec {
            kernel: &kernel,
            initrd: initrd.as_deref(),
            cmdline: &cmdline,
            cpus: 1,
            ram_size: ram,
            virtio_devices: devices.len() as u32,
        },
    )?;

    let mut bus = Bus::new();
    let uart = Pl011::new(config.console, vm.create_interrupt_line(layout::UART_SPI)?);
    bus.insert(
        layout::UART_BASE,
        layout::UART_SIZE,
        Arc::new(Mutex::new(uart)),
    )?;
    let mut workers = DeviceWorkers::new();
    devices.attach(&*vm, &mem, &mut bus, &mut workers)?;

    let mut vcpu = vm.create_vcpu(0)?;
    vcpu.configure_aarch64(&boot.regs)?;
    let bus = Arc::new(bus);
    let vcpu_thread = std::thread::spawn(move || run_vcpu(vcpu.as_mut(), &bus));
    let exit = vcpu_thread
        .join()
        .unwrap_or_else(|_| Arm64Exit::Failed("vCPU thread panicked".into()));
    workers.stop();
    drop(vm);
    Ok(exit)
}

fn run_vcpu(vcpu: &mut dyn Vcpu, bus: &Bus) -> Arm64Exit {
    loop {
        match vcpu.run() {
            Ok(VcpuExit::MmioRead { addr, data }) => {
                if !bus.read(addr, data) {
                    data.fill(0);
                }
            }
            Ok(VcpuExit::MmioWrite { addr, data }) => {
                bus.write(addr, data);
            }
            Ok(VcpuExit::Interrupted) => {}
            Ok(VcpuExit::Shutdown) | Ok(VcpuExit::Hlt) => return Arm64Exit::PowerOff,
            Ok(VcpuExit::Reset) => return Arm64Exit::Reset,
            Ok(other) => return Arm64Exit::Failed(format!("unexpected exit {other:?}")),
            Err(e) => return Arm64Exit::Failed(e.to_string()),
        }
    }
}
