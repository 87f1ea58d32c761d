//! Assembles a VM from a [`VmConfig`] and runs it until the guest resets,
//! shuts down or fails.
//!
//! Threads: one per vCPU (running guest code and dispatching port/MMIO
//! exits to the buses), one event loop (virtio queue notifications and host
//! sockets), and the caller's, which waits for the VM to end.

use std::fs::File;
use std::io::Write;
use std::os::unix::thread::JoinHandleExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use vm_memory::GuestAddress;

use crate::arch::x86_64::{
    self as arch, mptable, regs, BootCpuState, VcpuSetup, FIRST_VIRTIO_IRQ, IOAPIC_PINS, MMIO_BASE,
    MMIO_WINDOW_SIZE, SERIAL_IRQ,
};
use crate::boot::{self, BootError};
use crate::confine::ThreadKind;
use crate::devices::i8042::{I8042, I8042_DATA_PORT};
use crate::devices::serial::{
    ConsoleSink, LineHook, SerialPort, SerialSnapshot, COM1_LEN, COM1_PORT,
};
use crate::devices::virtio::block::{Block, BlockError};
use crate::devices::virtio::event_handler::VirtioEventHandler;
use crate::devices::virtio::fs::{self as virtio_fs, Fs, FsConfig, FsError};
use crate::devices::virtio::mmio::{reg, MmioState, MmioTransport};
use crate::devices::virtio::net::Net;
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::vsock::{Vsock, GUEST_CID};
use crate::devices::virtio::VirtioDevice;
use crate::devices::{Bus, BusError};
use crate::host_quirks::HostQuirks;
use crate::hypervisor::kvm::{KvmHypervisor, KvmVcpu, KvmVcpuState, KvmVm, KvmVmState};
use crate::hypervisor::{HypervisorError, Vcpu, VcpuExit, Vm};
use crate::net::{NetError, UserNetConfig};
use crate::snapshot::{self, SnapshotError};
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
    /// A shared directory could not be set up.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The network device could not be set up.
    #[error(transparent)]
    Net(#[from] NetError),
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
    /// A snapshot cannot be restored.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
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
    virtio_fs::check_unique_tags(&config.fs)?;
    if let (Some(_), Some(share)) = (&config.snapshot_on_ready, config.fs.first()) {
        return Err(SnapshotError::UnsupportedDevice {
            device: format!("virtio-fs share `{}`", share.tag),
        }
        .into());
    }
    if let (Some(_), Some(_)) = (&config.snapshot_on_ready, &config.net) {
        return Err(SnapshotError::UnsupportedDevice {
            device: "virtio-net (user networking)".into(),
        }
        .into());
    }
    let mem_size = config.mem_mib << 20;

    let hypervisor = KvmHypervisor::new()?;
    let vm = hypervisor.create_kvm_vm()?;
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

    let (event_tx, event_rx) = channel::<Event>();
    let marker = config.snapshot_on_ready.as_ref().map(|s| {
        let tx = Mutex::new(event_tx.clone());
        (
            s.marker.clone(),
            Box::new(move || {
                let _ = tx
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .send(Event::Ready);
            }) as LineHook,
        )
    });
    let mut specs = Vec::new();
    if let Some(uds) = &config.vsock_uds {
        specs.push(DeviceSpec::Vsock(uds.clone()));
    }
    for d in &config.disks {
        specs.push(DeviceSpec::Block(d.clone()));
    }
    if config.rng {
        specs.push(DeviceSpec::Rng);
    }
    for share in &config.fs {
        specs.push(DeviceSpec::Fs(share.clone()));
    }
    if let Some(net) = &config.net {
        specs.push(DeviceSpec::Net(net.clone()));
    }
    let devices = build_devices(
        &vm,
        &mem,
        &config.serial,
        None,
        marker,
        &specs,
        Some(&mut cmdline),
        &event_tx,
    )?;

    // Boot structures.
    let cmdline_len = boot::write_cmdline(&mem, &cmdline)?;
    boot::write_zero_page(&mem, &kernel, cmdline_len, initrd, boot_size)?;
    mptable::write(&mem, config.cpus)?;
    regs::write_boot_tables(&mem)?;

    let mut vcpus = Vec::new();
    for index in 0..config.cpus {
        let mut vcpu = vm.create_kvm_vcpu(index)?;
        vcpu.configure_x86(&VcpuSetup {
            index,
            cpu_count: config.cpus,
            hide_pvm_unsafe_features: config.quirks.kvm_pvm,
            boot: (index == 0).then(|| BootCpuState::linux_64bit(kernel.entry)),
        })?;
        vcpus.push(vcpu);
    }
    let machine = Machine {
        vm,
        mem,
        devices,
        memory_regions: arch::ram_regions(mem_size),
        anonymous_memory: true,
        kernel: KernelIdentity::Path(config.kernel.clone()),
    };
    machine.run(
        start,
        vcpus,
        event_tx,
        event_rx,
        config.snapshot_on_ready.as_ref().map(|s| s.dir.clone()),
    )
}

/// Take a snapshot when the guest is ready.
#[derive(Clone, Debug)]
pub struct SnapshotOnReady {
    /// Snapshot directory (created).
    pub dir: PathBuf,
    /// The guest is ready when it writes a console line containing this.
    pub marker: String,
}

/// The console line of berth's guest agent once it listens on vsock.
pub const AGENT_READY_MARKER: &str = "ready on vsock port";

/// How to restore a snapshot.
#[derive(Clone, Debug)]
pub struct RestoreConfig {
    /// Snapshot directory.
    pub dir: PathBuf,
    /// Console destination.
    pub serial: SerialOutput,
    /// Host Unix socket of the vsock device (required when the snapshot has
    /// one; the host side starts without connections).
    pub vsock_uds: Option<PathBuf>,
    /// Disks, in the snapshot's order; empty: the paths recorded in it.
    pub disks: Vec<DiskConfig>,
    /// When given, must be the kernel the snapshot's guest booted.
    pub kernel: Option<PathBuf>,
    /// Take another snapshot at this marker line (chained snapshots).
    pub snapshot_on_ready: Option<SnapshotOnReady>,
    /// How guest memory comes back (see [`snapshot::memory::MemoryRestore`]).
    pub memory: snapshot::memory::MemoryRestore,
}

/// A VM made ahead of a restore, for a warm pool (`berth-vmm --standby`):
/// /dev/kvm open, the VM with its irqchip and PIT, and its vCPUs created.
/// What is left for [`restore_prepared`] is mapping the snapshot's memory,
/// creating the devices and setting the saved state.
pub struct PreparedVm {
    _hypervisor: KvmHypervisor,
    vm: Arc<KvmVm>,
    vcpus: Vec<KvmVcpu>,
}

impl PreparedVm {
    /// Creates the VM and `cpus` vCPUs (1 to 16).
    pub fn new(cpus: u8) -> Result<Self, VmmError> {
        if cpus == 0 || cpus > 16 {
            return Err(VmmError::Config(format!(
                "{cpus} vCPUs (1 to 16 supported)"
            )));
        }
        let hypervisor = KvmHypervisor::new()?;
        let vm = hypervisor.create_kvm_vm()?;
        let vcpus = (0..cpus)
            .map(|i| vm.create_kvm_vcpu(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PreparedVm {
            _hypervisor: hypervisor,
            vm,
            vcpus,
        })
    }
}

/// Restores the snapshot in `config.dir` and runs the VM to its end.
pub fn restore(config: &RestoreConfig) -> Result<VmOutcome, VmmError> {
    restore_prepared(None, config)
}

/// [`restore`] into a VM made ahead of time (warm pool), or into a new one.
/// A prepared VM must have as many vCPUs as the snapshot.
pub fn restore_prepared(
    prepared: Option<PreparedVm>,
    config: &RestoreConfig,
) -> Result<VmOutcome, VmmError> {
    let start = Instant::now();
    let state_path = config.dir.join(snapshot::STATE_FILE);
    let bytes = std::fs::read(&state_path)
        .map_err(io_err(format!("cannot read {}", state_path.display())))?;
    let (header, state) = snapshot::decode_header(&bytes)?;

    let PreparedVm {
        _hypervisor,
        vm,
        mut vcpus,
    } = match prepared {
        Some(p) => p,
        None => PreparedVm::new(1)?,
    };
    let host = snapshot::HostIdentity {
        vmm_version: snapshot::vmm_version(),
        hypervisor: "kvm".into(),
        arch: "x86_64".into(),
        tsc_khz: Some(vcpus[0].tsc_khz()?),
        kernel_sha256: match &config.kernel {
            Some(k) => Some(snapshot::file_sha256(k)?),
            None => None,
        },
    };
    snapshot::check_compatible(&header, &host)?;
    let state: MachineState = snapshot::decode_state(state)?;
    if state.vcpus.len() != usize::from(state.cpus) || state.cpus == 0 {
        return Err(SnapshotError::Mismatch(format!(
            "{} vCPU states for {} vCPUs",
            state.vcpus.len(),
            state.cpus
        ))
        .into());
    }
    if vcpus.len() > usize::from(state.cpus) {
        return Err(SnapshotError::Mismatch(format!(
            "the prepared VM has {} vCPUs, the snapshot {}",
            vcpus.len(),
            state.cpus
        ))
        .into());
    }

    let mem = snapshot::memory::restore(
        &config.dir.join(snapshot::MEMORY_FILE),
        &header.memory_regions,
        config.memory,
    )?;
    vm.map_memory(&mem)?;

    // Devices, in the snapshot's order, with this run's host resources.
    let mut disks = config.disks.iter();
    let mut specs = Vec::new();
    for d in &state.devices {
        specs.push(match &d.kind {
            DeviceKind::Vsock => DeviceSpec::Vsock(config.vsock_uds.clone().ok_or_else(|| {
                SnapshotError::Mismatch("the snapshot has a vsock device: give --vsock-uds".into())
            })?),
            DeviceKind::Block {
                path, read_only, ..
            } => DeviceSpec::Block(match disks.next() {
                Some(given) => given.clone(),
                None if config.disks.is_empty() => DiskConfig {
                    path: path.clone(),
                    read_only: *read_only,
                },
                None => {
                    return Err(SnapshotError::Mismatch(format!(
                        "{} disks given, the snapshot has more",
                        config.disks.len()
                    ))
                    .into())
                }
            }),
            DeviceKind::Rng => DeviceSpec::Rng,
            // Never written (snapshots refuse VMs with shares); refused
            // should a state file claim one.
            DeviceKind::Fs { tag } => {
                return Err(SnapshotError::UnsupportedDevice {
                    device: format!("virtio-fs share `{tag}`"),
                }
                .into())
            }
            DeviceKind::Net => {
                return Err(SnapshotError::UnsupportedDevice {
                    device: "virtio-net (user networking)".into(),
                }
                .into())
            }
        });
    }
    if disks.next().is_some() {
        return Err(SnapshotError::Mismatch(format!(
            "{} disks given, the snapshot has fewer",
            config.disks.len()
        ))
        .into());
    }
    let (event_tx, event_rx) = channel::<Event>();
    let marker = config.snapshot_on_ready.as_ref().map(|s| {
        let tx = Mutex::new(event_tx.clone());
        (
            s.marker.clone(),
            Box::new(move || {
                let _ = tx
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .send(Event::Ready);
            }) as LineHook,
        )
    });
    let devices = build_devices(
        &vm,
        &mem,
        &config.serial,
        Some(&state.serial),
        marker,
        &specs,
        None,
        &event_tx,
    )?;

    // KVM state: VM first, then each vCPU (research/vm-snapshot order).
    for index in vcpus.len() as u8..state.cpus {
        vcpus.push(vm.create_kvm_vcpu(index)?);
    }
    vm.restore_state(&state.vm)?;
    for (vcpu, s) in vcpus.iter().zip(&state.vcpus) {
        vcpu.restore_state(s)?;
    }
    for ((transport, kind), record) in devices.transports.iter().zip(&state.devices) {
        let mut transport = transport.lock().unwrap_or_else(|e| e.into_inner());
        transport
            .restore_state(&record.transport)
            .map_err(SnapshotError::Mismatch)?;
        if let (
            DeviceKind::Block { size: now, .. },
            DeviceKind::Block {
                size: Some(then), ..
            },
        ) = (kind, &record.kind)
        {
            if *now != Some(*then) {
                transport.config_changed();
            }
        }
    }
    let machine = Machine {
        vm,
        mem,
        devices,
        memory_regions: header.memory_regions.clone(),
        anonymous_memory: false,
        kernel: KernelIdentity::Hash(header.kernel_sha256.clone()),
    };
    machine.run(
        start,
        vcpus,
        event_tx,
        event_rx,
        config.snapshot_on_ready.as_ref().map(|s| s.dir.clone()),
    )
}

/// What the main thread hears about.
enum Event {
    /// The VM ended.
    Exit(VmExitReason),
    /// The guest wrote the ready marker.
    Ready,
}

/// A virtio device to create.
enum DeviceSpec {
    Vsock(PathBuf),
    Block(DiskConfig),
    Rng,
    Fs(FsConfig),
    Net(UserNetConfig),
}

/// A device as recorded in a snapshot.
#[derive(Serialize, Deserialize, Clone, Debug)]
enum DeviceKind {
    Vsock,
    Block {
        path: PathBuf,
        read_only: bool,
        /// Capacity in bytes when the device was made (absent in older
        /// snapshots). A restore given a disk of another size tells the
        /// guest its configuration changed, so the driver reads the new
        /// capacity: an empty disk slot in a snapshot can be filled per
        /// clone (berth's image disks).
        #[serde(default)]
        size: Option<u64>,
    },
    Rng,
    /// A virtio-fs share (snapshots refuse VMs that have one).
    Fs {
        tag: String,
    },
    /// virtio-net with user networking (snapshots refuse VMs that have one).
    Net,
}

#[derive(Serialize, Deserialize)]
struct DeviceRecord {
    kind: DeviceKind,
    transport: MmioState,
}

/// The state section of a snapshot.
#[derive(Serialize, Deserialize)]
struct MachineState {
    cpus: u8,
    vm: KvmVmState,
    vcpus: Vec<KvmVcpuState>,
    serial: SerialSnapshot,
    devices: Vec<DeviceRecord>,
}

/// The devices of a VM and what runs them.
struct Devices {
    io_bus: Arc<Bus>,
    mmio_bus: Arc<Bus>,
    serial: Arc<Mutex<SerialPort>>,
    transports: Vec<(Arc<Mutex<MmioTransport>>, DeviceKind)>,
    event_manager: EventManager<Box<dyn MutEventSubscriber + Send>>,
    first_serial_byte: Arc<OnceLock<Instant>>,
}

/// Set (to anything) to run shares without the host watcher (no live
/// file events in the guest).
pub const NO_SHARE_EVENTS_ENV: &str = "BERTH_VMM_NO_SHARE_EVENTS";

#[allow(clippy::too_many_arguments)]
fn build_devices(
    vm: &Arc<KvmVm>,
    mem: &GuestMemoryMmap,
    serial_out: &SerialOutput,
    serial_state: Option<&SerialSnapshot>,
    marker: Option<(String, LineHook)>,
    specs: &[DeviceSpec],
    mut cmdline: Option<&mut linux_loader::cmdline::Cmdline>,
    event_tx: &Sender<Event>,
) -> Result<Devices, VmmError> {
    // Legacy devices.
    let mut io_bus = Bus::new();
    let first_serial_byte = Arc::new(OnceLock::new());
    let out: Box<dyn Write + Send> = match serial_out {
        SerialOutput::Stdout => Box::new(std::io::stdout()),
        SerialOutput::File(p) => {
            Box::new(File::create(p).map_err(io_err(format!("cannot create {}", p.display())))?)
        }
    };
    let mut sink = ConsoleSink::new(out, first_serial_byte.clone());
    if let Some((text, f)) = marker {
        sink = sink.with_marker(&text, f);
    }
    let irq = vm.create_interrupt_line(SERIAL_IRQ)?;
    let serial = Arc::new(Mutex::new(match serial_state {
        Some(s) => SerialPort::from_state(s, irq, sink).map_err(SnapshotError::Mismatch)?,
        None => SerialPort::new(irq, sink),
    }));
    io_bus.insert(COM1_PORT, COM1_LEN, serial.clone())?;
    let reset_tx = Mutex::new(event_tx.clone());
    let i8042 = I8042::new(Box::new(move || {
        let _ = reset_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Event::Exit(VmExitReason::Reset));
    }));
    io_bus.insert(I8042_DATA_PORT, 5, Arc::new(Mutex::new(i8042)))?;

    // virtio devices.
    let mut devices: Vec<(Arc<Mutex<dyn VirtioDevice>>, DeviceKind)> = Vec::new();
    let mut watched = Vec::new();
    let mut events_uds = None;
    for spec in specs {
        match spec {
            DeviceSpec::Vsock(uds) => {
                let v = Vsock::new(GUEST_CID, uds)
                    .map_err(io_err(format!("vsock socket {}", uds.display())))?;
                events_uds = Some(crate::devices::virtio::fs::watch::listen_path(uds));
                devices.push((Arc::new(Mutex::new(v)), DeviceKind::Vsock));
            }
            DeviceSpec::Block(d) => {
                let block = Block::open(&d.path, d.read_only)?;
                let size = Some(block.size());
                devices.push((
                    Arc::new(Mutex::new(block)),
                    DeviceKind::Block {
                        path: d.path.clone(),
                        read_only: d.read_only,
                        size,
                    },
                ))
            }
            DeviceSpec::Rng => devices.push((Arc::new(Mutex::new(Rng::new())), DeviceKind::Rng)),
            DeviceSpec::Fs(share) => {
                let fs = Fs::new(share)?;
                // Host changes reach guest inotify watchers only through
                // the agent, which mirrors them in the guest; a read-only
                // guest mount cannot (see docs/file-events.md).
                if !share.read_only {
                    if let Ok(root) = std::fs::canonicalize(&share.path) {
                        watched.push(crate::devices::virtio::fs::watch::WatchedShare {
                            tag: share.tag.clone(),
                            root,
                            events: fs.events(),
                        });
                    }
                }
                devices.push((
                    Arc::new(Mutex::new(fs)),
                    DeviceKind::Fs {
                        tag: share.tag.clone(),
                    },
                ))
            }
            DeviceSpec::Net(net) => devices.push((
                Arc::new(Mutex::new(Net::new(crate::net::GUEST_MAC, net.clone())?)),
                DeviceKind::Net,
            )),
        }
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
    let mut transports = Vec::new();
    for (i, (dev, kind)) in devices.into_iter().enumerate() {
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
        let transport = Arc::new(Mutex::new(transport));
        mmio_bus.insert(base, MMIO_WINDOW_SIZE, transport.clone())?;
        transports.push((transport, kind));
        if let Some(cmdline) = cmdline.as_deref_mut() {
            cmdline
                .add_virtio_mmio_device(MMIO_WINDOW_SIZE, GuestAddress(base), irq, None)
                .map_err(BootError::from)?;
        }
    }
    // Without vsock the agent has no way to hear of host changes.
    // Its threads run as long as the process.
    if let Some(listen) = events_uds {
        if !watched.is_empty() && std::env::var_os(NO_SHARE_EVENTS_ENV).is_none() {
            if let Err(e) = crate::devices::virtio::fs::watch::start(watched, &listen) {
                // Shares still work; only live events are missing.
                eprintln!("berth-vmm: share events are off: {e}");
            }
        }
    }
    Ok(Devices {
        io_bus: Arc::new(io_bus),
        mmio_bus: Arc::new(mmio_bus),
        serial,
        transports,
        event_manager,
        first_serial_byte,
    })
}

/// Where the guest kernel's identity for a snapshot header comes from.
enum KernelIdentity {
    /// Hash the file when a snapshot is taken.
    Path(PathBuf),
    /// Already known (a restored VM).
    Hash(String),
}

/// A VM ready to run.
struct Machine {
    vm: Arc<KvmVm>,
    mem: GuestMemoryMmap,
    devices: Devices,
    memory_regions: Vec<(u64, u64)>,
    /// Guest RAM is anonymous memory (a cold boot), not a snapshot mapping.
    anonymous_memory: bool,
    kernel: KernelIdentity,
}

/// Control of one running vCPU thread.
struct VcpuHandle {
    thread: libc::pthread_t,
    pause: Arc<AtomicBool>,
    saved: Receiver<Result<KvmVcpuState, HypervisorError>>,
    resume: Sender<()>,
}

/// The signal that kicks a vCPU out of KVM_RUN (handler does nothing; no
/// SA_RESTART, so KVM_RUN returns EINTR).
fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn kick_handler(_: libc::c_int) {}

fn install_kick_handler() -> Result<(), VmmError> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
    // the handler is an async-signal-safe no-op with the right signature.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = kick_handler as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(kick_signal(), &sa, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(VmmError::Io {
            what: "install vCPU kick signal handler".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// What a snapshot cost.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotStats {
    /// Pausing all vCPUs.
    pub pause: Duration,
    /// Pause → files written.
    pub total: Duration,
    /// Non-zero guest memory written.
    pub memory_data_bytes: u64,
    /// Size of the state file.
    pub state_bytes: u64,
}

impl Machine {
    fn run(
        self,
        start: Instant,
        vcpus: Vec<KvmVcpu>,
        event_tx: Sender<Event>,
        event_rx: Receiver<Event>,
        snapshot_dir: Option<PathBuf>,
    ) -> Result<VmOutcome, VmmError> {
        let Machine {
            vm,
            mem,
            devices,
            memory_regions,
            anonymous_memory,
            kernel,
        } = self;
        let Devices {
            io_bus,
            mmio_bus,
            serial,
            transports,
            mut event_manager,
            first_serial_byte,
        } = devices;
        install_kick_handler()?;
        std::thread::Builder::new()
            .name("berth-events".into())
            .spawn(move || {
                crate::confine::confine_or_exit(ThreadKind::Events);
                loop {
                    if let Err(e) = event_manager.run() {
                        eprintln!("berth-vmm: event loop failed: {e:?}");
                        return;
                    }
                }
            })
            .map_err(io_err("spawn event loop"))?;

        let cpus = vcpus.len() as u8;
        let first_vcpu_run = Arc::new(OnceLock::new());
        let mut handles = Vec::new();
        for vcpu in vcpus {
            let index = vcpu.index();
            let pause = Arc::new(AtomicBool::new(false));
            let (saved_tx, saved_rx) = channel();
            let (resume_tx, resume_rx) = channel();
            let ctx = VcpuContext {
                io_bus: io_bus.clone(),
                mmio_bus: mmio_bus.clone(),
                mem: mem.clone(),
                exit: event_tx.clone(),
                first_run: (index == 0).then(|| first_vcpu_run.clone()),
                pause: pause.clone(),
                saved: saved_tx,
                resume: resume_rx,
                _vm: vm.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("berth-vcpu{index}"))
                .spawn(move || run_vcpu(vcpu, ctx))
                .map_err(io_err("spawn vCPU thread"))?;
            handles.push(VcpuHandle {
                thread: thread.as_pthread_t(),
                pause,
                saved: saved_rx,
                resume: resume_tx,
            });
        }
        drop(event_tx);
        // Every thread of the VM runs now; the main thread only waits,
        // snapshots and reports from here on.
        crate::confine::confine_or_exit(ThreadKind::Main);

        let reason = loop {
            match event_rx.recv() {
                Ok(Event::Exit(r)) => break r,
                Ok(Event::Ready) => {
                    let Some(dir) = &snapshot_dir else { continue };
                    let snap = Snapshotter {
                        vm: &vm,
                        mem: &mem,
                        serial: &serial,
                        transports: &transports,
                        memory_regions: &memory_regions,
                        anonymous_memory,
                        kernel: &kernel,
                        cpus,
                    };
                    match snap.take(&handles, dir) {
                        Ok(st) => eprintln!(
                            "berth-vmm: snapshot saved to {} (pause {:.2} ms, total {:.1} ms, {:.1} MiB of memory data, {} KiB state)",
                            dir.display(),
                            st.pause.as_secs_f64() * 1e3,
                            st.total.as_secs_f64() * 1e3,
                            st.memory_data_bytes as f64 / f64::from(1 << 20),
                            st.state_bytes / 1024
                        ),
                        Err(e) => eprintln!("berth-vmm: snapshot failed: {e}"),
                    }
                }
                Err(_) => break VmExitReason::Failed("all vCPU threads ended".into()),
            }
        };
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
}

/// What taking a snapshot needs.
struct Snapshotter<'a> {
    vm: &'a Arc<KvmVm>,
    mem: &'a GuestMemoryMmap,
    serial: &'a Arc<Mutex<SerialPort>>,
    transports: &'a [(Arc<Mutex<MmioTransport>>, DeviceKind)],
    memory_regions: &'a [(u64, u64)],
    anonymous_memory: bool,
    kernel: &'a KernelIdentity,
    cpus: u8,
}

impl Snapshotter<'_> {
    /// Pauses every vCPU, saves, resumes (also on failure).
    fn take(&self, handles: &[VcpuHandle], dir: &Path) -> Result<SnapshotStats, SnapshotError> {
        let t0 = Instant::now();
        for h in handles {
            h.pause.store(true, Ordering::SeqCst);
        }
        let mut states: Vec<Option<Result<KvmVcpuState, HypervisorError>>> =
            handles.iter().map(|_| None).collect();
        let deadline = t0 + Duration::from_secs(10);
        let mut failure = None;
        while states.iter().any(Option::is_none) {
            for (h, st) in handles.iter().zip(states.iter_mut()) {
                if st.is_some() {
                    continue;
                }
                // A vCPU between its pause check and KVM_RUN misses one
                // kick; kicking again until it answers closes that race.
                // SAFETY: the thread handle belongs to a vCPU thread that
                // is never joined, so it stays valid; the signal has a
                // no-op handler installed.
                unsafe { libc::pthread_kill(h.thread, kick_signal()) };
                if let Ok(s) = h.saved.recv_timeout(Duration::from_millis(1)) {
                    *st = Some(s);
                }
            }
            if Instant::now() > deadline {
                failure = Some(SnapshotError::NotQuiescent(
                    "a vCPU did not pause within 10 s".into(),
                ));
                break;
            }
        }
        let pause = t0.elapsed();
        let result = match failure {
            Some(e) => Err(e),
            None => self.save(states, dir, t0, pause),
        };
        for h in handles {
            h.pause.store(false, Ordering::SeqCst);
            let _ = h.resume.send(());
        }
        result
    }

    fn save(
        &self,
        states: Vec<Option<Result<KvmVcpuState, HypervisorError>>>,
        dir: &Path,
        t0: Instant,
        pause: Duration,
    ) -> Result<SnapshotStats, SnapshotError> {
        let vcpus = states
            .into_iter()
            .map(|s| match s {
                Some(Ok(s)) => Ok(s),
                Some(Err(e)) => Err(SnapshotError::Hypervisor(e.to_string())),
                None => Err(SnapshotError::NotQuiescent("vCPU state missing".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(tag) = self.transports.iter().find_map(|(_, k)| match k {
            DeviceKind::Fs { tag } => Some(tag),
            _ => None,
        }) {
            return Err(SnapshotError::UnsupportedDevice {
                device: format!("virtio-fs share `{tag}`"),
            });
        }
        if self
            .transports
            .iter()
            .any(|(_, k)| matches!(k, DeviceKind::Net))
        {
            return Err(SnapshotError::UnsupportedDevice {
                device: "virtio-net (user networking)".into(),
            });
        }
        // Devices stay locked until memory is written: the event loop must
        // not move a queue between its saved indices and the saved memory.
        let transports: Vec<_> = self
            .transports
            .iter()
            .map(|(t, _)| t.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let device_arcs: Vec<_> = transports.iter().map(|t| t.device()).collect();
        let device_guards: Vec<_> = device_arcs
            .iter()
            .map(|d| d.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let mut records = Vec::new();
        for ((t, d), (_, kind)) in transports
            .iter()
            .zip(device_guards.iter())
            .zip(self.transports)
        {
            records.push(DeviceRecord {
                kind: kind.clone(),
                transport: t
                    .save_state_with(&**d)
                    .map_err(SnapshotError::NotQuiescent)?,
            });
        }
        let serial = self
            .serial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .save_state();
        let vm = self
            .vm
            .save_state()
            .map_err(|e| SnapshotError::Hypervisor(e.to_string()))?;
        std::fs::create_dir_all(dir)
            .map_err(snapshot::io_err(format!("create {}", dir.display())))?;
        let mem_stats = snapshot::memory::write_sparse(
            self.mem,
            &dir.join(snapshot::MEMORY_FILE),
            self.anonymous_memory,
        )?;
        drop(device_guards);
        drop(transports);
        let kernel_sha256 = match self.kernel {
            KernelIdentity::Path(p) => snapshot::file_sha256(p)?,
            KernelIdentity::Hash(h) => h.clone(),
        };
        let header = snapshot::Header {
            vmm_version: snapshot::vmm_version(),
            hypervisor: "kvm".into(),
            arch: "x86_64".into(),
            kernel_sha256,
            tsc_khz: vcpus.first().map_or(0, |v| v.tsc_khz),
            mem_size: self.memory_regions.iter().map(|r| r.1).sum(),
            memory_regions: self.memory_regions.to_vec(),
            state_len: 0,
            state_sha256: String::new(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let state = MachineState {
            cpus: self.cpus,
            vm,
            vcpus,
            serial,
            devices: records,
        };
        let bytes = snapshot::encode(header, &state)?;
        let tmp = dir.join(format!("{}.tmp", snapshot::STATE_FILE));
        std::fs::write(&tmp, &bytes)
            .map_err(snapshot::io_err(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, dir.join(snapshot::STATE_FILE))
            .map_err(snapshot::io_err("rename state file"))?;
        Ok(SnapshotStats {
            pause,
            total: t0.elapsed(),
            memory_data_bytes: mem_stats.data_bytes,
            state_bytes: bytes.len() as u64,
        })
    }
}

/// What a vCPU thread needs.
struct VcpuContext {
    io_bus: Arc<Bus>,
    mmio_bus: Arc<Bus>,
    mem: GuestMemoryMmap,
    exit: Sender<Event>,
    first_run: Option<Arc<OnceLock<Instant>>>,
    /// Set by the main thread to pause at the next exit for a snapshot.
    pause: Arc<AtomicBool>,
    /// Where the paused vCPU sends its state.
    saved: Sender<Result<KvmVcpuState, HypervisorError>>,
    /// Continue after a pause.
    resume: Receiver<()>,
    /// Keeps the VM (and its memory slots) alive while the vCPU runs.
    _vm: Arc<KvmVm>,
}

fn run_vcpu(mut vcpu: KvmVcpu, ctx: VcpuContext) {
    crate::confine::confine_or_exit(ThreadKind::Vcpu);
    #[cfg(feature = "test-hooks")]
    if vcpu.index() == 0 {
        crate::confine::test_hook_forbidden_syscall(ThreadKind::Vcpu);
    }
    if let Some(t) = &ctx.first_run {
        t.get_or_init(Instant::now);
    }
    let index = vcpu.index();
    let reason = loop {
        if ctx.pause.load(Ordering::SeqCst) {
            vcpu.settle();
            let _ = ctx.saved.send(vcpu.save_state());
            if ctx.resume.recv().is_err() {
                return;
            }
            continue;
        }
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
    let _ = ctx.exit.send(Event::Exit(reason));
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn shares_refuse_snapshots_and_duplicate_tags_before_the_hypervisor() {
        let share = FsConfig::parse("tag=t1,path=/nonexistent").unwrap();
        let mut config = VmConfig {
            kernel: "k".into(),
            initrd: None,
            cmdline: String::new(),
            cpus: 1,
            mem_mib: 128,
            boot_mem_mib: None,
            serial: SerialOutput::Stdout,
            vsock_uds: None,
            disks: vec![],
            rng: false,
            fs: vec![share.clone()],
            net: None,
            quirks: HostQuirks::none(),
            snapshot_on_ready: Some(SnapshotOnReady {
                dir: "/nonexistent".into(),
                marker: AGENT_READY_MARKER.into(),
            }),
        };
        assert!(matches!(
            run(&config),
            Err(VmmError::Snapshot(SnapshotError::UnsupportedDevice { .. }))
        ));
        config.snapshot_on_ready = None;
        config.fs.push(share);
        assert!(matches!(
            run(&config),
            Err(VmmError::Fs(FsError::DuplicateTag(_)))
        ));
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
                fs: vec![],
                net: None,
                quirks: HostQuirks::none(),
                snapshot_on_ready: None,
            },
            &[(0x1000_0000, 0x1000_0000)],
        );
        assert_eq!(
            cfg_line,
            "console=ttyS0 berth.mem_hotplug=0x10000000-0x20000000"
        );
    }
}
