//! Assembles a VM from a [`VmConfig`] and runs it until the guest resets,
//! shuts down or fails.
//!
//! Threads: one per vCPU (running guest code and dispatching port/MMIO
//! exits to the buses), one event loop (virtio queue notifications and host
//! sockets), and the caller's, which waits for the VM to end.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use vm_memory::GuestAddress;

use crate::arch::x86_64::{
    self as arch, mptable, regs, BootCpuState, VcpuSetup, FIRST_VIRTIO_IRQ, IOAPIC_PINS, MMIO_BASE,
    MMIO_WINDOW_SIZE, SERIAL_IRQ,
};
use crate::boot::{self, BootError};
use crate::devices::i8042::{I8042, I8042_DATA_PORT};
use crate::devices::serial::{ConsoleSink, SerialPort, COM1_LEN, COM1_PORT};
use crate::devices::virtio::block::{Block, BlockError};
use crate::devices::virtio::event_handler::VirtioEventHandler;
use crate::devices::virtio::mmio::{reg, MmioTransport};
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::vsock::{Vsock, GUEST_CID};
use crate::devices::virtio::VirtioDevice;
use crate::devices::{Bus, BusError};
use crate::host_quirks::HostQuirks;
use crate::hypervisor::kvm::KvmHypervisor;
use crate::hypervisor::{Hypervisor, HypervisorError, Vcpu, VcpuExit, Vm};
use crate::GuestMemoryMmap;

/// Where the guest console goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialOutput {
    /// The VMM's stdout.
    Stdout,
    /// A file (created or truncated).
    File(PathBuf),
}

/// A virtio-blk disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// Raw image file.
    pub path: PathBuf,
    /// Refuse guest writes.
    pub read_only: bool,
}

/// Everything that describes one VM.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// Kernel image (ELF vmlinux or bzImage).
    pub kernel: PathBuf,
    /// Initial ramdisk.
    pub initrd: Option<PathBuf>,
    /// Kernel command line (device and host-quirk parts are appended).
    pub cmdline: String,
    /// Number of vCPUs.
    pub cpus: u8,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// RAM the guest sees at boot, in MiB (a multiple of 128); the rest of
    /// `mem_mib` is mapped but left out of the e820 map and announced on the
    /// command line (`berth.mem_hotplug=START-END,...`) for the guest to
    /// hot-add. `None`: the host quirks decide (all RAM at boot on real KVM).
    pub boot_mem_mib: Option<u64>,
    /// Console destination.
    pub serial: SerialOutput,
    /// Host Unix socket of the vsock device (none: no vsock device).
    pub vsock_uds: Option<PathBuf>,
    /// virtio-blk disks, in /dev/vda, vdb, ... order.
    pub disks: Vec<DiskConfig>,
    /// Add a virtio-rng device.
    pub rng: bool,
    /// Host workarounds to apply.
    pub quirks: HostQuirks,
}

/// Errors building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The hypervisor failed.
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
    /// Guest memory could not be allocated.
    #[error("cannot allocate guest memory: {0}")]
    Memory(#[from] vm_memory::mmap::FromRangesError),
    /// Loading the guest failed.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// The boot page tables could not be written.
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    /// The MP table could not be written.
    #[error(transparent)]
    Mptable(#[from] mptable::MptableError),
    /// A disk could not be opened.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// Devices collide on a bus.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A host resource failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The event loop could not be set up.
    #[error("event loop: {0:?}")]
    EventLoop(event_manager::Error),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmmError {
    let what = what.into();
    move |source| VmmError::Io { what, source }
}

/// How the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExitReason {
    /// The guest reset itself through the i8042 (a clean `reboot`).
    Reset,
    /// The guest asked the hypervisor for a reset (system event).
    SystemReset,
    /// The guest triple-faulted or requested shutdown.
    Shutdown,
    /// A vCPU failed; the description includes registers and instruction bytes.
    Failed(String),
}

/// Timestamps of a run, for `--timings`.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// When [`run`] started (before opening the hypervisor).
    pub start: Instant,
    /// When the boot vCPU first entered the guest.
    pub first_vcpu_run: Option<Instant>,
    /// When the guest wrote its first serial byte.
    pub first_serial_byte: Option<Instant>,
    /// When the VM ended.
    pub end: Instant,
}

impl Timings {
    /// Setup time: start → first vCPU run.
    pub fn setup(&self) -> Option<Duration> {
        self.first_vcpu_run.map(|t| t - self.start)
    }
    /// Start → first serial byte.
    pub fn to_first_serial_byte(&self) -> Option<Duration> {
        self.first_serial_byte.map(|t| t - self.start)
    }
}

/// The end of a run.
#[derive(Debug, Clone)]
pub struct VmOutcome {
    /// Why it ended.
    pub reason: VmExitReason,
    /// When things happened.
    pub timings: Timings,
}

/// The final command line: the caller's, the host quirks', and the devices'.
fn base_cmdline(config: &VmConfig, hotplug: &[(u64, u64)]) -> String {
    let extras = config.quirks.cmdline_extras();
    let mut s = format!("{} {}", config.cmdline.trim(), extras)
        .trim()
        .to_string();
    if !hotplug.is_empty() {
        let ranges: Vec<String> = hotplug
            .iter()
            .map(|(a, size)| format!("{a:#x}-{:#x}", a + size))
            .collect();
        s.push_str(" berth.mem_hotplug=");
        s.push_str(&ranges.join(","));
    }
    s
}

/// Granularity of guest memory hotplug (the x86 memory block size).
pub const HOTPLUG_BLOCK: u64 = 128 << 20;

/// The RAM (in bytes) to announce at boot, given the whole and the wish.
fn boot_mem_size(mem_size: u64, boot_mem_mib: Option<u64>, quirks: HostQuirks) -> u64 {
    let wish = boot_mem_mib
        .map(|m| m << 20)
        .or_else(|| quirks.boot_mem_bytes());
    match wish {
        // Whole blocks only, and never less than one.
        Some(b) if b < mem_size => (b / HOTPLUG_BLOCK).max(1) * HOTPLUG_BLOCK,
        _ => mem_size,
    }
    .min(mem_size)
}

/// The guest-physical RAM ranges that are mapped but not announced at boot.
pub fn hotplug_ranges(mem_size: u64, boot_size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut skip = boot_size;
    for (start, size) in arch::ram_regions(mem_size) {
        let take = skip.min(size);
        skip -= take;
        if size > take {
            out.push((start + take, size - take));
        }
    }
    out
}

/// Builds the VM described by `config` and runs it to its end.
///
/// vCPU threads of a VM that ended may still be blocked in the hypervisor;
/// a process that runs one VM (the `berth-vmm` binary) simply exits.
pub fn run(config: &VmConfig) -> Result<VmOutcome, VmmError> {
    let start = Instant::now();
    if config.cpus == 0 || u32::from(config.cpus) > 16 {
        return Err(VmmError::Config(format!(
            "{} vCPUs (1 to 16 supported)",
            config.cpus
        )));
    }
    if config.mem_mib < 32 {
        return Err(VmmError::Config("at least 32 MiB of RAM are needed".into()));
    }
    let mem_size = config.mem_mib << 20;

    let hypervisor = KvmHypervisor::new()?;
    let vm = hypervisor.create_vm()?;
    let ranges: Vec<(GuestAddress, usize)> = arch::ram_regions(mem_size)
        .into_iter()
        .map(|(a, s)| (GuestAddress(a), s as usize))
        .collect();
    let mem = GuestMemoryMmap::from_ranges(&ranges)?;
    vm.map_memory(&mem)?;
    let boot_size = boot_mem_size(mem_size, config.boot_mem_mib, config.quirks);
    let hotplug = hotplug_ranges(mem_size, boot_size);

    // Guest image.
    let kernel = boot::load_kernel(&mem, &config.kernel)?;
    let initrd = match &config.initrd {
        Some(p) => Some(boot::load_initrd(
            &mem,
            p,
            boot_size,
            boot::initrd_max_addr(&kernel),
        )?),
        None => None,
    };
    let mut cmdline = boot::new_cmdline(&base_cmdline(config, &hotplug))?;

    // Legacy devices.
    let (exit_tx, exit_rx) = channel::<VmExitReason>();
    let mut io_bus = Bus::new();
    let first_serial_byte = Arc::new(OnceLock::new());
    let out: Box<dyn Write + Send> = match &config.serial {
        SerialOutput::Stdout => Box::new(std::io::stdout()),
        SerialOutput::File(p) => {
            Box::new(File::create(p).map_err(io_err(format!("cannot create {}", p.display())))?)
        }
    };
    let serial = Arc::new(Mutex::new(SerialPort::new(
        vm.create_interrupt_line(SERIAL_IRQ)?,
        ConsoleSink::new(out, first_serial_byte.clone()),
    )));
    io_bus.insert(COM1_PORT, COM1_LEN, serial.clone())?;
    let reset_tx = Mutex::new(exit_tx.clone());
    let i8042 = I8042::new(Box::new(move || {
        let _ = reset_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(VmExitReason::Reset);
    }));
    io_bus.insert(I8042_DATA_PORT, 5, Arc::new(Mutex::new(i8042)))?;

    // virtio devices.
    let mut devices: Vec<Arc<Mutex<dyn VirtioDevice>>> = Vec::new();
    if let Some(uds) = &config.vsock_uds {
        let v = Vsock::new(GUEST_CID, uds)
            .map_err(io_err(format!("vsock socket {}", uds.display())))?;
        devices.push(Arc::new(Mutex::new(v)));
    }
    for d in &config.disks {
        devices.push(Arc::new(Mutex::new(Block::open(&d.path, d.read_only)?)));
    }
    if config.rng {
        devices.push(Arc::new(Mutex::new(Rng::new())));
    }
    let max_devices = u32::from(IOAPIC_PINS) - FIRST_VIRTIO_IRQ;
    if devices.len() as u32 > max_devices {
        return Err(VmmError::Config(format!(
            "at most {max_devices} virtio devices"
        )));
    }
    let mut event_manager: EventManager<Box<dyn MutEventSubscriber + Send>> =
        EventManager::new().map_err(VmmError::EventLoop)?;
    let mut mmio_bus = Bus::new();
    for (i, dev) in devices.into_iter().enumerate() {
        let irq = FIRST_VIRTIO_IRQ + i as u32;
        let base = MMIO_BASE + i as u64 * MMIO_WINDOW_SIZE;
        let transport =
            MmioTransport::new(dev.clone(), mem.clone(), vm.create_interrupt_line(irq)?)
                .map_err(io_err("virtio queue eventfd"))?;
        let mut evts = Vec::new();
        for (q, evt) in transport.queue_evts().iter().enumerate() {
            // Without the fast path the transport signals the same eventfd
            // from the vCPU thread, so a refusal only costs speed.
            if let Err(e) = vm.register_mmio_notifier(base + reg::QUEUE_NOTIFY, q as u32, evt) {
                eprintln!("berth-vmm: queue notifications take the slow path: {e}");
            }
            evts.push(evt.try_clone().map_err(io_err("queue notifier clone"))?);
        }
        event_manager.add_subscriber(Box::new(VirtioEventHandler::new(dev, evts)));
        mmio_bus.insert(base, MMIO_WINDOW_SIZE, Arc::new(Mutex::new(transport)))?;
        cmdline
            .add_virtio_mmio_device(MMIO_WINDOW_SIZE, GuestAddress(base), irq, None)
            .map_err(BootError::from)?;
    }

    // Boot structures.
    let cmdline_len = boot::write_cmdline(&mem, &cmdline)?;
    boot::write_zero_page(&mem, &kernel, cmdline_len, initrd, boot_size)?;
    mptable::write(&mem, config.cpus)?;
    regs::write_boot_tables(&mem)?;

    std::thread::Builder::new()
        .name("berth-events".into())
        .spawn(move || loop {
            if let Err(e) = event_manager.run() {
                eprintln!("berth-vmm: event loop failed: {e:?}");
                return;
            }
        })
        .map_err(io_err("spawn event loop"))?;

    // vCPUs.
    let first_vcpu_run = Arc::new(OnceLock::new());
    let io_bus = Arc::new(io_bus);
    let mmio_bus = Arc::new(mmio_bus);
    for index in 0..config.cpus {
        let mut vcpu = vm.create_vcpu(index)?;
        vcpu.configure_x86(&VcpuSetup {
            index,
            cpu_count: config.cpus,
            hide_pvm_unsafe_features: config.quirks.kvm_pvm,
            boot: (index == 0).then(|| BootCpuState::linux_64bit(kernel.entry)),
        })?;
        let ctx = VcpuContext {
            io_bus: io_bus.clone(),
            mmio_bus: mmio_bus.clone(),
            mem: mem.clone(),
            exit: exit_tx.clone(),
            first_run: (index == 0).then(|| first_vcpu_run.clone()),
            _vm: vm.clone(),
        };
        std::thread::Builder::new()
            .name(format!("berth-vcpu{index}"))
            .spawn(move || run_vcpu(vcpu, ctx))
            .map_err(io_err("spawn vCPU thread"))?;
    }
    drop(exit_tx);

    let reason = exit_rx
        .recv()
        .unwrap_or_else(|_| VmExitReason::Failed("all vCPU threads ended".into()));
    serial.lock().unwrap_or_else(|e| e.into_inner()).flush();
    Ok(VmOutcome {
        reason,
        timings: Timings {
            start,
            first_vcpu_run: first_vcpu_run.get().copied(),
            first_serial_byte: first_serial_byte.get().copied(),
            end: Instant::now(),
        },
    })
}

/// What a vCPU thread needs.
struct VcpuContext {
    io_bus: Arc<Bus>,
    mmio_bus: Arc<Bus>,
    mem: GuestMemoryMmap,
    exit: Sender<VmExitReason>,
    first_run: Option<Arc<OnceLock<Instant>>>,
    /// Keeps the VM (and its memory slots) alive while the vCPU runs.
    _vm: Arc<dyn Vm>,
}

fn run_vcpu(mut vcpu: Box<dyn Vcpu>, ctx: VcpuContext) {
    if let Some(t) = &ctx.first_run {
        t.get_or_init(Instant::now);
    }
    let index = vcpu.index();
    let reason = loop {
        match vcpu.run() {
            Ok(VcpuExit::IoIn { port, data }) => {
                if !ctx.io_bus.read(u64::from(port), data) {
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::IoOut { port, data }) => {
                ctx.io_bus.write(u64::from(port), data);
            }
            Ok(VcpuExit::MmioRead { addr, data }) => {
                if !ctx.mmio_bus.read(addr, data) {
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::MmioWrite { addr, data }) => {
                ctx.mmio_bus.write(addr, data);
            }
            Ok(VcpuExit::Interrupted) => {}
            Ok(VcpuExit::Hlt) => break VmExitReason::Shutdown,
            Ok(VcpuExit::Shutdown) => break VmExitReason::Shutdown,
            Ok(VcpuExit::Reset) => break VmExitReason::SystemReset,
            Ok(VcpuExit::InternalError { suberror, data }) => {
                let words: Vec<String> = data.iter().map(|w| format!("{w:#x}")).collect();
                let state = vcpu.describe_failure(&ctx.mem);
                break VmExitReason::Failed(format!(
                    "vCPU {index}: hypervisor internal error (suberror {suberror}{}; data [{}])\n{state}",
                    if suberror == 1 { ": instruction emulation failure" } else { "" },
                    words.join(", ")
                ));
            }
            Ok(VcpuExit::Other(what)) => {
                let state = vcpu.describe_failure(&ctx.mem);
                break VmExitReason::Failed(format!(
                    "vCPU {index}: unexpected exit {what}\n{state}"
                ));
            }
            Err(e) => break VmExitReason::Failed(format!("vCPU {index}: {e}")),
        }
    };
    let _ = ctx.exit.send(reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_memory_is_whole_blocks_and_never_more_than_all() {
        let pvm = HostQuirks { kvm_pvm: true };
        let kvm = HostQuirks::none();
        assert_eq!(boot_mem_size(2 << 30, None, kvm), 2 << 30);
        assert_eq!(boot_mem_size(2 << 30, None, pvm), 256 << 20);
        assert_eq!(boot_mem_size(128 << 20, None, pvm), 128 << 20);
        assert_eq!(boot_mem_size(2 << 30, Some(300), kvm), 256 << 20);
        assert_eq!(boot_mem_size(2 << 30, Some(1), kvm), 128 << 20);
        assert_eq!(boot_mem_size(512 << 20, Some(4096), pvm), 512 << 20);
    }

    #[test]
    fn hotplug_ranges_cover_what_boot_leaves_out() {
        assert_eq!(hotplug_ranges(2 << 30, 2 << 30), vec![]);
        assert_eq!(
            hotplug_ranges(2 << 30, 256 << 20),
            vec![(256 << 20, (2 << 30) - (256 << 20))]
        );
        // Above the 32-bit device gap the rest continues at 4 GiB.
        assert_eq!(
            hotplug_ranges(4 << 30, 256 << 20),
            vec![
                (256 << 20, arch::LOW_RAM_END - (256 << 20)),
                (arch::HIGH_RAM_START, (4 << 30) - arch::LOW_RAM_END)
            ]
        );
        let cfg_line = base_cmdline(
            &VmConfig {
                kernel: "k".into(),
                initrd: None,
                cmdline: "console=ttyS0".into(),
                cpus: 1,
                mem_mib: 512,
                boot_mem_mib: None,
                serial: SerialOutput::Stdout,
                vsock_uds: None,
                disks: vec![],
                rng: false,
                quirks: HostQuirks::none(),
            },
            &[(0x1000_0000, 0x1000_0000)],
        );
        assert_eq!(
            cfg_line,
            "console=ttyS0 berth.mem_hotplug=0x10000000-0x20000000"
        );
    }
}
