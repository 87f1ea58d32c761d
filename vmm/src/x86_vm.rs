//! The x86_64 VM assembly of every backend, through the `Hypervisor`
//! traits alone: the configuration ([`VmConfig`]), error ([`VmmError`]) and
//! exit reason ([`VmExitReason`]) types, the boot assembly (`load_guest`:
//! RAM laid out by `arch::x86_64`, the kernel (ELF vmlinux or bzImage),
//! initrd and command line; `LoadedGuest::finish`: zero page, MP table,
//! boot page tables, configured vCPUs) and the one vCPU exit loop
//! (`exit_loop`). Devices come from `device_manager`: a 16550 console and
//! the i8042 reset line on the port-I/O bus, virtio devices on the MMIO bus.
//!
//! Two runners use it. The KVM VMM (`vmm.rs`, Linux) adds the epoll event
//! loop and snapshots. [`run`] here is the machine without snapshots: queue
//! notifications ring [`QueueNotifier`]s and [`DeviceWorkers`] threads wait
//! on them (and on vsock's host sockets), so nothing needs epoll; it is what
//! `berth-vmm` runs on the Windows Hypervisor Platform, and its integration
//! test (`vmm/tests/portable_x86.rs`) boots a real guest with the KVM
//! backend through it on Linux.
//!
//! Limits of [`run`]: no vsock device on Windows yet (the muxer needs Unix
//! sockets in mio); when one vCPU ends the VM, the others are left to the
//! process exit (as in `berth-vmm`).
//!
//! [`QueueNotifier`]: crate::devices::notify::QueueNotifier
//! [`DeviceWorkers`]: crate::devices::virtio::worker::DeviceWorkers

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use vm_memory::GuestAddress;

use crate::arch::x86_64::{self as arch, mptable, regs, BootCpuState, VcpuSetup, SERIAL_IRQ};
use crate::boot::{self, BootError};
use crate::device_manager::{self, DeviceConfig, DeviceError, DiskConfig};
use crate::devices::i8042::{is_reset_write, I8042, I8042_DATA_PORT};
use crate::devices::serial::{ConsoleSink, SerialPort, COM1_LEN, COM1_PORT};
use crate::devices::virtio::fs::{FsConfig, FsError};
use crate::devices::virtio::worker::DeviceWorkers;
use crate::devices::{Bus, BusError};
use crate::host_quirks::HostQuirks;
use crate::hypervisor::{Hypervisor, HypervisorError, Vcpu, VcpuExit, Vm};
use crate::net::UserNetConfig;
use crate::snapshot::SnapshotError;
use crate::GuestMemoryMmap;

/// Where the guest console goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialOutput {
    /// The VMM's stdout.
    Stdout,
    /// A file (created or truncated).
    File(PathBuf),
    /// A writer of the caller's (tests capture the console with one).
    Writer(ConsoleWriter),
}

impl SerialOutput {
    /// Opens the destination.
    pub(crate) fn open(&self) -> Result<Box<dyn Write + Send>, VmmError> {
        Ok(match self {
            SerialOutput::Stdout => Box::new(std::io::stdout()),
            SerialOutput::File(p) => {
                Box::new(std::fs::File::create(p).map_err(|source| VmmError::Io {
                    what: format!("cannot create {}", p.display()),
                    source,
                })?)
            }
            SerialOutput::Writer(w) => Box::new(w.clone()),
        })
    }
}

/// A console writer that clones of a configuration share.
#[derive(Clone)]
pub struct ConsoleWriter(Arc<Mutex<Box<dyn Write + Send>>>);

impl ConsoleWriter {
    /// Wraps `w`.
    pub fn new(w: impl Write + Send + 'static) -> Self {
        ConsoleWriter(Arc::new(Mutex::new(Box::new(w))))
    }
}

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

impl std::fmt::Debug for ConsoleWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleWriter")
    }
}

/// The same writer.
impl PartialEq for ConsoleWriter {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ConsoleWriter {}

/// Everything that describes one x86 VM (every backend; snapshots, shares
/// and user networking need the KVM VMM, `vmm::run`).
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
    /// Add a virtio-balloon device (free page reporting: memory the guest
    /// frees goes back to the host).
    pub balloon: bool,
    /// Shared host directories (virtio-fs), one device each. A VM with
    /// shares cannot be snapshotted.
    pub fs: Vec<FsConfig>,
    /// A virtio-net device with user-mode networking (crate::net), set up
    /// this way. A VM with one cannot be snapshotted.
    pub net: Option<UserNetConfig>,
    /// Host workarounds to apply.
    pub quirks: HostQuirks,
    /// Take a snapshot when the guest says it is ready.
    pub snapshot_on_ready: Option<SnapshotOnReady>,
}

impl VmConfig {
    /// The virtio devices, in slot order: vsock, disks, rng, balloon,
    /// shares, net.
    pub fn devices(&self) -> Vec<DeviceConfig> {
        let mut out = Vec::new();
        if let Some(uds) = &self.vsock_uds {
            out.push(DeviceConfig::Vsock(uds.clone()));
        }
        out.extend(self.disks.iter().cloned().map(DeviceConfig::Block));
        if self.rng {
            out.push(DeviceConfig::Rng);
        }
        if self.balloon {
            out.push(DeviceConfig::Balloon);
        }
        out.extend(self.fs.iter().cloned().map(DeviceConfig::Fs));
        if let Some(net) = &self.net {
            out.push(DeviceConfig::Net(net.clone()));
        }
        out
    }
}

/// Take a snapshot when the guest is ready.
#[derive(Clone, Debug)]
pub struct SnapshotOnReady {
    /// Snapshot directory (created).
    pub dir: PathBuf,
    /// The guest is ready when it writes a console line containing this.
    pub marker: String,
}

/// The final command line: the caller's, the host quirks', and the devices'.
pub(crate) fn base_cmdline(config: &VmConfig, hotplug: &[(u64, u64)]) -> String {
    let extras = config.quirks.cmdline_extras();
    let mut s = format!("{} {}", config.cmdline.trim(), extras)
        .trim()
        .to_string();
    if config.balloon {
        s = crate::devices::virtio::balloon::guest_cmdline(&s);
    }
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
pub(crate) fn boot_mem_size(mem_size: u64, boot_mem_mib: Option<u64>, quirks: HostQuirks) -> u64 {
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

/// How an x86 VM ended (every backend: KVM, WHP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExitReason {
    /// The guest rebooted through the i8042 reset line (`reboot=k`), which
    /// is how berth guests power off.
    Reset,
    /// The hypervisor reported a reset system event.
    SystemReset,
    /// Triple fault, or HLT with interrupts off.
    Shutdown,
    /// A vCPU failed; the description includes registers and instruction
    /// bytes.
    Failed(String),
}

/// How the guest ended (the name this module's callers know).
pub type X86Exit = VmExitReason;

/// Errors building or running an x86 VM (every backend: KVM, WHP).
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
    /// The boot page tables or GDT could not be written.
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    /// The MP table could not be written.
    #[error(transparent)]
    Mptable(#[from] mptable::MptableError),
    /// A device could not be created or attached.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The shared directories are not valid together.
    #[error(transparent)]
    Fs(#[from] FsError),
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
    #[cfg(target_os = "linux")]
    #[error("event loop: {0:?}")]
    EventLoop(event_manager::Error),
    /// A snapshot cannot be taken or restored.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// The error type of [`run`] (the name this module's callers know).
pub type X86VmError = VmmError;

/// Boots `config` on `hypervisor` and runs it until a vCPU ends it.
pub fn run(hypervisor: &dyn Hypervisor, config: &VmConfig) -> Result<X86Exit, VmmError> {
    check_sizes(config.cpus, config.mem_mib)?;
    if config.snapshot_on_ready.is_some() {
        return Err(VmmError::Config(
            "snapshots need the KVM VMM (vmm::run)".into(),
        ));
    }
    crate::devices::virtio::fs::check_unique_tags(&config.fs)?;
    let mem_size = config.mem_mib << 20;
    let device_configs = config.devices();
    let console = config.serial.open()?;
    let vm = hypervisor.create_vm()?;
    let boot_size = boot_mem_size(mem_size, config.boot_mem_mib, config.quirks);
    let guest = load_guest(
        &*vm,
        &config.kernel,
        config.initrd.as_deref(),
        mem_size,
        boot_size,
        &base_cmdline(config, &hotplug_ranges(mem_size, boot_size)),
    )?;
    let mem = guest.mem.clone();

    // Legacy devices: the console and the reset line.
    let (exit_tx, exit_rx) = channel::<X86Exit>();
    let mut io_bus = Bus::new();
    let sink = ConsoleSink::new(console, Arc::new(OnceLock::new()));
    let serial = Arc::new(Mutex::new(SerialPort::new(
        vm.create_interrupt_line(SERIAL_IRQ)?,
        sink,
    )));
    io_bus.insert(COM1_PORT, COM1_LEN, serial.clone())?;
    let reset_tx = Mutex::new(exit_tx.clone());
    let i8042 = I8042::new(Box::new(move || {
        let _ = reset_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(X86Exit::Reset);
    }));
    io_bus.insert(I8042_DATA_PORT, 5, Arc::new(Mutex::new(i8042)))?;

    // virtio devices (from the device manager), each with one worker
    // thread per queue.
    let virtio = device_manager::build(&device_configs)?;
    let mut workers = DeviceWorkers::new();
    let mut mmio_bus = platform_mmio_bus(&*vm)?;
    let mut guest = guest;
    virtio.attach(
        &*vm,
        &mem,
        &mut mmio_bus,
        &mut workers,
        Some(&mut guest.cmdline),
    )?;
    let vcpus = guest.finish(&*vm, config.cpus, config.quirks)?;

    let buses = Arc::new((io_bus, mmio_bus));
    let mut threads = Vec::new();
    for mut vcpu in vcpus {
        let (buses, tx, mem) = (buses.clone(), exit_tx.clone(), mem.clone());
        threads.push(std::thread::spawn(move || {
            run_vcpu(vcpu.as_mut(), &buses.0, &buses.1, &mem, &tx)
        }));
    }
    drop(exit_tx);
    let exit = exit_rx
        .recv()
        .unwrap_or_else(|_| X86Exit::Failed("every vCPU thread ended without a reason".into()));
    serial.lock().unwrap_or_else(|e| e.into_inner()).flush();
    workers.stop();
    // A single vCPU has returned from its run loop (or is about to, once
    // the reset is seen); more are left running until the process exits.
    if config.cpus == 1 {
        for t in threads {
            let _ = t.join();
        }
    }
    Ok(exit)
}

/// Refuses sizes no x86 VM can have, before the hypervisor is touched.
pub(crate) fn check_sizes(cpus: u8, mem_mib: u64) -> Result<(), VmmError> {
    if cpus == 0 || cpus > 16 {
        return Err(VmmError::Config(format!(
            "{cpus} vCPUs (1 to 16 supported)"
        )));
    }
    if mem_mib < 32 {
        return Err(VmmError::Config("at least 32 MiB of RAM are needed".into()));
    }
    Ok(())
}

/// An x86 guest loaded into RAM, waiting for its devices (which add
/// themselves to `cmdline`) and its boot structures.
pub(crate) struct LoadedGuest {
    /// Guest RAM, mapped into the VM.
    pub mem: GuestMemoryMmap,
    /// The command line so far.
    pub cmdline: linux_loader::cmdline::Cmdline,
    kernel: boot::LoadedKernel,
    initrd: Option<boot::InitrdPlacement>,
    boot_size: u64,
}

/// Lays out `mem_size` bytes of RAM (`arch::x86_64::ram_regions`), maps it
/// into `vm` and loads the kernel and initrd; `boot_size` is the RAM the
/// guest is told about at boot (the rest is left for hotplug).
pub(crate) fn load_guest(
    vm: &dyn Vm,
    kernel: &Path,
    initrd: Option<&Path>,
    mem_size: u64,
    boot_size: u64,
    cmdline: &str,
) -> Result<LoadedGuest, VmmError> {
    let ranges: Vec<(GuestAddress, usize)> = arch::ram_regions(mem_size)
        .into_iter()
        .map(|(a, s)| (GuestAddress(a), s as usize))
        .collect();
    let mem = GuestMemoryMmap::from_ranges(&ranges)?;
    vm.map_memory(&mem)?;
    let kernel = boot::load_kernel(&mem, kernel)?;
    let initrd = match initrd {
        Some(p) => Some(boot::load_initrd(
            &mem,
            p,
            boot_size,
            boot::initrd_max_addr(&kernel),
        )?),
        None => None,
    };
    let cmdline = boot::new_cmdline(cmdline.trim())?;
    Ok(LoadedGuest {
        mem,
        cmdline,
        kernel,
        initrd,
        boot_size,
    })
}

impl LoadedGuest {
    /// Writes the command line, zero page, MP table and boot page tables,
    /// and creates the `cpus` vCPUs, the first at the kernel's entry.
    pub(crate) fn finish(
        self,
        vm: &dyn Vm,
        cpus: u8,
        quirks: HostQuirks,
    ) -> Result<Vec<Box<dyn Vcpu>>, VmmError> {
        let mem = &self.mem;
        let cmdline_len = boot::write_cmdline(mem, &self.cmdline)?;
        boot::write_zero_page(mem, &self.kernel, cmdline_len, self.initrd, self.boot_size)?;
        mptable::write(mem, cpus)?;
        regs::write_boot_tables(mem)?;
        let mut vcpus = Vec::new();
        for index in 0..cpus {
            let mut vcpu = vm.create_vcpu(index)?;
            vcpu.configure_x86(&VcpuSetup {
                index,
                cpu_count: cpus,
                hide_pvm_unsafe_features: quirks.kvm_pvm,
                boot: (index == 0).then(|| BootCpuState::linux_64bit(self.kernel.entry)),
            })?;
            vcpus.push(vcpu);
        }
        Ok(vcpus)
    }
}

/// An MMIO bus with the interrupt controllers the hypervisor leaves to the
/// VMM (WHP's I/O APIC; none for KVM).
pub(crate) fn platform_mmio_bus(vm: &dyn Vm) -> Result<Bus, VmmError> {
    let mut bus = Bus::new();
    for (base, size, dev) in vm.platform_mmio_devices() {
        bus.insert(base, size, dev)?;
    }
    Ok(bus)
}

fn run_vcpu(
    vcpu: &mut dyn Vcpu,
    io_bus: &Bus,
    mmio_bus: &Bus,
    mem: &GuestMemoryMmap,
    exit: &Sender<X86Exit>,
) {
    if let Some(reason) = exit_loop(vcpu, io_bus, mmio_bus, mem, &mut |_| true) {
        let _ = exit.send(reason);
    }
}

/// The x86 vCPU exit loop of every backend: runs `vcpu`, dispatching port
/// and MMIO exits to the buses, until the VM ends. `between` runs before
/// each entry into the guest (the KVM VMM pauses there for a snapshot); it
/// returns `false` to stop the vCPU. `None`: the vCPU stopped without a
/// reason to report (`between` said so, or the guest wrote the i8042
/// reset, which the i8042 has reported itself).
pub(crate) fn exit_loop(
    vcpu: &mut dyn Vcpu,
    io_bus: &Bus,
    mmio_bus: &Bus,
    mem: &GuestMemoryMmap,
    between: &mut dyn FnMut(&mut dyn Vcpu) -> bool,
) -> Option<VmExitReason> {
    let index = vcpu.index();
    loop {
        if !between(vcpu) {
            return None;
        }
        match vcpu.run() {
            Ok(VcpuExit::IoIn { port, data }) => {
                if !io_bus.read(u64::from(port), data) {
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::IoOut { port, data }) => {
                let reset = is_reset_write(u64::from(port), data);
                io_bus.write(u64::from(port), data);
                if reset {
                    // The i8042 has reported the reset; this vCPU stops here.
                    return None;
                }
            }
            Ok(VcpuExit::MmioRead { addr, data }) => {
                if !mmio_bus.read(addr, data) {
                    data.fill(0xff);
                }
            }
            Ok(VcpuExit::MmioWrite { addr, data }) => {
                mmio_bus.write(addr, data);
            }
            Ok(VcpuExit::Interrupted) => {}
            Ok(VcpuExit::Hlt) | Ok(VcpuExit::Shutdown) => return Some(VmExitReason::Shutdown),
            Ok(VcpuExit::Reset) => return Some(VmExitReason::SystemReset),
            Ok(VcpuExit::InternalError { suberror, data }) => {
                let words: Vec<String> = data.iter().map(|w| format!("{w:#x}")).collect();
                let state = vcpu.describe_failure(mem);
                return Some(VmExitReason::Failed(format!(
                    "vCPU {index}: hypervisor internal error (suberror {suberror}{}; data [{}])\n{state}",
                    if suberror == 1 { ": instruction emulation failure" } else { "" },
                    words.join(", ")
                )));
            }
            Ok(VcpuExit::Other(what)) => {
                let state = vcpu.describe_failure(mem);
                return Some(VmExitReason::Failed(format!(
                    "vCPU {index}: unexpected exit {what}\n{state}"
                )));
            }
            Err(e) => return Some(VmExitReason::Failed(format!("vCPU {index}: {e}"))),
        }
    }
}

/// One kind of exit the guest can cause in the VMM: an exit of the
/// hypervisor seam ([`VcpuExit`]) and what [`exit_loop`] does with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExitKind {
    /// The exit, in a few words.
    pub kind: &'static str,
    /// What the loop did with it: `device` (handed to a device on the
    /// I/O-port or MMIO bus, then the vCPU runs again), `resume` (the vCPU
    /// runs again), `end` (the VM ends) or `fail` (the VM ends as failed).
    pub handling: &'static str,
    /// The bus, for `device`: `io` or `mmio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bus: Option<&'static str>,
}

/// The name of an exit; exhaustive, so a new kind of exit must be named
/// (and then probed by [`describe_exits`]).
fn exit_name(e: &VcpuExit<'_>) -> &'static str {
    match e {
        VcpuExit::IoIn { .. } => "port I/O read",
        VcpuExit::IoOut { .. } => "port I/O write",
        VcpuExit::MmioRead { .. } => "MMIO read",
        VcpuExit::MmioWrite { .. } => "MMIO write",
        VcpuExit::Hlt => "HLT",
        VcpuExit::Shutdown => "shutdown",
        VcpuExit::Reset => "reset",
        VcpuExit::Interrupted => "interrupted (signal)",
        VcpuExit::InternalError { .. } => "hypervisor internal error",
        VcpuExit::Other(_) => "other hypervisor exit",
    }
}

/// The exit kinds of the seam, one of each, as [`describe_exits`] feeds
/// them to the loop.
#[derive(Clone, Copy)]
enum ProbeExit {
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    Hlt,
    Shutdown,
    Reset,
    Interrupted,
    InternalError,
    Other,
}

const PROBE_EXITS: [ProbeExit; 10] = [
    ProbeExit::IoIn,
    ProbeExit::IoOut,
    ProbeExit::MmioRead,
    ProbeExit::MmioWrite,
    ProbeExit::Hlt,
    ProbeExit::Shutdown,
    ProbeExit::Reset,
    ProbeExit::Interrupted,
    ProbeExit::InternalError,
    ProbeExit::Other,
];

/// A vCPU that returns one exit, then fails the next run (which ends the
/// loop: the exit was not the VM's end).
struct ProbeVcpu {
    exit: Option<ProbeExit>,
    buf: [u8; 4],
    name: &'static str,
}

/// Port and address the probe's exits access (a device is there).
const PROBE_PORT: u16 = 0x3f8;
const PROBE_MMIO: u64 = 0xd000_0000;

impl Vcpu for ProbeVcpu {
    fn index(&self) -> u8 {
        0
    }
    fn configure_x86(&mut self, _: &VcpuSetup) -> crate::hypervisor::Result<()> {
        Ok(())
    }
    fn run(&mut self) -> crate::hypervisor::Result<VcpuExit<'_>> {
        let Some(exit) = self.exit.take() else {
            return Err(HypervisorError::call(
                "probe",
                std::io::Error::other("ran again"),
            ));
        };
        let e = match exit {
            ProbeExit::IoIn => VcpuExit::IoIn {
                port: PROBE_PORT,
                data: &mut self.buf[..1],
            },
            ProbeExit::IoOut => VcpuExit::IoOut {
                port: PROBE_PORT,
                data: &self.buf[..1],
            },
            ProbeExit::MmioRead => VcpuExit::MmioRead {
                addr: PROBE_MMIO,
                data: &mut self.buf,
            },
            ProbeExit::MmioWrite => VcpuExit::MmioWrite {
                addr: PROBE_MMIO,
                data: &self.buf,
            },
            ProbeExit::Hlt => VcpuExit::Hlt,
            ProbeExit::Shutdown => VcpuExit::Shutdown,
            ProbeExit::Reset => VcpuExit::Reset,
            ProbeExit::Interrupted => VcpuExit::Interrupted,
            ProbeExit::InternalError => VcpuExit::InternalError {
                suberror: 1,
                data: Vec::new(),
            },
            ProbeExit::Other => VcpuExit::Other("probe".into()),
        };
        self.name = exit_name(&e);
        Ok(e)
    }
    fn describe_failure(&mut self, _: &GuestMemoryMmap) -> String {
        String::new()
    }
}

/// Counts the accesses that reach it.
struct ProbeDevice(Arc<std::sync::atomic::AtomicUsize>);

impl crate::devices::BusDevice for ProbeDevice {
    fn read(&mut self, _: u64, _: &mut [u8]) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn write(&mut self, _: u64, _: &[u8]) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The exits the guest can cause in this VMM and what its vCPU loop does
/// with each: found by running [`exit_loop`] itself over one exit of
/// every kind the hypervisor seam has (`berth-vmm --describe`).
pub fn describe_exits() -> Vec<ExitKind> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Ok(mem) = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4096)]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for exit in PROBE_EXITS {
        let (io_hits, mmio_hits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut io = Bus::new();
        let mut mmio = Bus::new();
        if io
            .insert(
                u64::from(PROBE_PORT),
                8,
                Arc::new(Mutex::new(ProbeDevice(io_hits.clone()))),
            )
            .and_then(|()| {
                mmio.insert(
                    PROBE_MMIO,
                    0x1000,
                    Arc::new(Mutex::new(ProbeDevice(mmio_hits.clone()))),
                )
            })
            .is_err()
        {
            return Vec::new();
        }
        let mut vcpu = ProbeVcpu {
            exit: Some(exit),
            buf: [0; 4],
            name: "",
        };
        let ended = exit_loop(&mut vcpu, &io, &mmio, &mem, &mut |_| true);
        let ran_again = vcpu.exit.is_none()
            && matches!(&ended, Some(VmExitReason::Failed(m)) if m.contains("ran again"));
        let (handling, bus) = if io_hits.load(Ordering::SeqCst) > 0 {
            ("device", Some("io"))
        } else if mmio_hits.load(Ordering::SeqCst) > 0 {
            ("device", Some("mmio"))
        } else if ran_again {
            ("resume", None)
        } else {
            match ended {
                Some(VmExitReason::Failed(_)) => ("fail", None),
                _ => ("end", None),
            }
        };
        out.push(ExitKind {
            kind: vcpu.name,
            handling,
            bus,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoHypervisor;
    impl Hypervisor for NoHypervisor {
        fn create_vm(&self) -> crate::hypervisor::Result<Arc<dyn crate::hypervisor::Vm>> {
            Err(HypervisorError::MissingCapability("test"))
        }
        fn name(&self) -> &'static str {
            "none"
        }
    }

    fn config(cpus: u8, mem_mib: u64) -> VmConfig {
        VmConfig {
            kernel: PathBuf::from("/nonexistent"),
            initrd: None,
            cmdline: String::new(),
            cpus,
            mem_mib,
            boot_mem_mib: None,
            serial: SerialOutput::Writer(ConsoleWriter::new(std::io::sink())),
            vsock_uds: None,
            disks: Vec::new(),
            rng: false,
            balloon: false,
            fs: Vec::new(),
            net: None,
            quirks: HostQuirks::none(),
            snapshot_on_ready: None,
        }
    }

    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::devices::bus::BusDevice;

    /// One scripted exit of [`ScriptedVcpu`].
    enum Step {
        In(u16, usize),
        Out(u16, Vec<u8>),
        MmioRead(u64, usize),
        MmioWrite(u64, Vec<u8>),
        Hlt,
        SystemReset,
        Internal(u32),
        Error,
    }

    /// A vCPU that returns scripted exits and records what the loop
    /// filled into read buffers.
    struct ScriptedVcpu {
        steps: VecDeque<Step>,
        buf: Vec<u8>,
        filled: Vec<Vec<u8>>,
        pending_read: bool,
        runs: usize,
    }

    impl ScriptedVcpu {
        fn new(steps: Vec<Step>) -> Self {
            ScriptedVcpu {
                steps: steps.into(),
                buf: Vec::new(),
                filled: Vec::new(),
                pending_read: false,
                runs: 0,
            }
        }
    }

    impl Vcpu for ScriptedVcpu {
        fn index(&self) -> u8 {
            0
        }
        fn configure_x86(&mut self, _: &VcpuSetup) -> crate::hypervisor::Result<()> {
            Ok(())
        }
        fn run(&mut self) -> crate::hypervisor::Result<VcpuExit<'_>> {
            self.runs += 1;
            if std::mem::take(&mut self.pending_read) {
                self.filled.push(self.buf.clone());
            }
            let step = self
                .steps
                .pop_front()
                .expect("the loop ran past the script");
            Ok(match step {
                Step::In(port, n) => {
                    self.buf = vec![0; n];
                    self.pending_read = true;
                    VcpuExit::IoIn {
                        port,
                        data: &mut self.buf,
                    }
                }
                Step::Out(port, d) => {
                    self.buf = d;
                    VcpuExit::IoOut {
                        port,
                        data: &self.buf,
                    }
                }
                Step::MmioRead(addr, n) => {
                    self.buf = vec![0; n];
                    self.pending_read = true;
                    VcpuExit::MmioRead {
                        addr,
                        data: &mut self.buf,
                    }
                }
                Step::MmioWrite(addr, d) => {
                    self.buf = d;
                    VcpuExit::MmioWrite {
                        addr,
                        data: &self.buf,
                    }
                }
                Step::Hlt => VcpuExit::Hlt,
                Step::SystemReset => VcpuExit::Reset,
                Step::Internal(suberror) => VcpuExit::InternalError {
                    suberror,
                    data: vec![0x10, 0x20],
                },
                Step::Error => {
                    return Err(HypervisorError::call(
                        "KVM_RUN",
                        std::io::Error::other("scripted failure"),
                    ))
                }
            })
        }
        fn describe_failure(&mut self, _: &GuestMemoryMmap) -> String {
            "RIP=0xscripted".into()
        }
    }

    /// Writes seen by [`Recorder`]s: (offset, bytes).
    type Writes = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

    /// Answers reads with its byte, records writes.
    struct Recorder {
        value: u8,
        writes: Writes,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, _: u64, data: &mut [u8]) {
            data.fill(self.value);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.lock().unwrap().push((offset, data.to_vec()));
        }
    }

    fn buses() -> (Bus, Bus, Writes, Arc<AtomicBool>) {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let reset = Arc::new(AtomicBool::new(false));
        let mut io = Bus::new();
        io.insert(
            0x3f8,
            8,
            Arc::new(Mutex::new(Recorder {
                value: 0x42,
                writes: writes.clone(),
            })),
        )
        .unwrap();
        let r = reset.clone();
        io.insert(
            I8042_DATA_PORT,
            5,
            Arc::new(Mutex::new(I8042::new(Box::new(move || {
                r.store(true, Ordering::SeqCst)
            })))),
        )
        .unwrap();
        let mut mmio = Bus::new();
        mmio.insert(
            0xd000_0000,
            0x1000,
            Arc::new(Mutex::new(Recorder {
                value: 0x17,
                writes: writes.clone(),
            })),
        )
        .unwrap();
        (io, mmio, writes, reset)
    }

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn describe_exits_runs_the_loop_over_every_kind() {
        let d = describe_exits();
        let got: Vec<(&str, &str, Option<&str>)> =
            d.iter().map(|e| (e.kind, e.handling, e.bus)).collect();
        assert_eq!(
            got,
            vec![
                ("port I/O read", "device", Some("io")),
                ("port I/O write", "device", Some("io")),
                ("MMIO read", "device", Some("mmio")),
                ("MMIO write", "device", Some("mmio")),
                ("HLT", "end", None),
                ("shutdown", "end", None),
                ("reset", "end", None),
                ("interrupted (signal)", "resume", None),
                ("hypervisor internal error", "fail", None),
                ("other hypervisor exit", "fail", None),
            ]
        );
    }

    #[test]
    fn the_exit_loop_dispatches_to_the_buses_and_fills_unclaimed_reads() {
        let (io, mmio, writes, _) = buses();
        let mut vcpu = ScriptedVcpu::new(vec![
            Step::In(0x3f8, 1),
            Step::In(0x1234, 2),
            Step::MmioRead(0xd000_0010, 4),
            Step::MmioRead(0xe000_0000, 4),
            Step::Out(0x3f9, vec![7]),
            Step::MmioWrite(0xd000_0020, vec![1, 2, 3, 4]),
            Step::Hlt,
        ]);
        let end = exit_loop(&mut vcpu, &io, &mmio, &mem(), &mut |_| true);
        assert_eq!(end, Some(VmExitReason::Shutdown));
        assert_eq!(
            vcpu.filled,
            vec![vec![0x42], vec![0xff, 0xff], vec![0x17; 4], vec![0xff; 4]]
        );
        assert_eq!(
            *writes.lock().unwrap(),
            vec![(1, vec![7]), (0x20, vec![1, 2, 3, 4])]
        );
    }

    #[test]
    fn the_i8042_reset_stops_the_vcpu_without_a_second_report() {
        let (io, mmio, _, reset) = buses();
        let mut vcpu = ScriptedVcpu::new(vec![Step::Out(0x64, vec![0xfe]), Step::Hlt]);
        let end = exit_loop(&mut vcpu, &io, &mmio, &mem(), &mut |_| true);
        assert_eq!(end, None);
        assert!(reset.load(Ordering::SeqCst), "the i8042 saw the reset");
        assert_eq!(vcpu.runs, 1);
    }

    #[test]
    fn the_hook_between_runs_can_stop_the_vcpu() {
        let (io, mmio, _, _) = buses();
        let mut vcpu = ScriptedVcpu::new(vec![Step::Out(0x3f8, vec![1]), Step::Hlt]);
        let mut calls = 0;
        let end = exit_loop(&mut vcpu, &io, &mmio, &mem(), &mut |_| {
            calls += 1;
            calls < 2
        });
        assert_eq!(end, None);
        assert_eq!((vcpu.runs, calls), (1, 2));
    }

    #[test]
    fn failures_and_system_events_end_the_vm_with_a_reason() {
        let (io, mmio, _, _) = buses();
        let run = |step| {
            let mut vcpu = ScriptedVcpu::new(vec![step]);
            exit_loop(&mut vcpu, &io, &mmio, &mem(), &mut |_| true)
        };
        assert_eq!(run(Step::SystemReset), Some(VmExitReason::SystemReset));
        let Some(VmExitReason::Failed(why)) = run(Step::Internal(1)) else {
            panic!("an internal error must fail the VM");
        };
        assert!(why.contains("instruction emulation failure"), "{why}");
        assert!(
            why.contains("0x10, 0x20") && why.contains("RIP=0xscripted"),
            "{why}"
        );
        let Some(VmExitReason::Failed(why)) = run(Step::Error) else {
            panic!("a failed run must fail the VM");
        };
        assert!(why.starts_with("vCPU 0: KVM_RUN failed"), "{why}");
    }

    #[test]
    fn bad_sizes_are_refused_before_the_hypervisor_is_touched() {
        for (cpus, mem) in [(0, 128), (17, 128), (1, 16)] {
            let e = run(&NoHypervisor, &config(cpus, mem)).unwrap_err();
            assert!(matches!(e, X86VmError::Config(_)), "{e}");
        }
        let e = run(&NoHypervisor, &config(1, 128)).unwrap_err();
        assert!(matches!(e, X86VmError::Hypervisor(_)), "{e}");
    }

    #[test]
    fn boot_memory_is_whole_blocks_and_never_more_than_all() {
        let pvm = HostQuirks { kvm_pvm: true };
        let kvm = HostQuirks::none();
        assert_eq!(boot_mem_size(2 << 30, None, kvm), 2 << 30);
        // All RAM at boot on kvm_pvm too (see HostQuirks::boot_mem_bytes).
        assert_eq!(boot_mem_size(2 << 30, None, pvm), 2 << 30);
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
        let cfg = VmConfig {
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
            balloon: false,
            fs: vec![],
            net: None,
            quirks: HostQuirks::none(),
            snapshot_on_ready: None,
        };
        let cfg_line = base_cmdline(&cfg, &[(0x1000_0000, 0x1000_0000)]);
        assert_eq!(
            cfg_line,
            "console=ttyS0 berth.mem_hotplug=0x10000000-0x20000000"
        );
        // With the balloon the guest is told the reporting order.
        let balloon_line = base_cmdline(
            &VmConfig {
                balloon: true,
                ..cfg
            },
            &[],
        );
        assert_eq!(
            balloon_line,
            format!(
                "console=ttyS0 {}={}",
                crate::devices::virtio::balloon::REPORTING_ORDER_PARAM,
                crate::devices::virtio::balloon::GUEST_REPORTING_ORDER
            )
        );
    }
}
