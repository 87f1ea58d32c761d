//! Assembles a VM from a [`VmConfig`] and runs it until the guest resets,
//! shuts down or fails.
//!
//! Threads: one per vCPU (running guest code and dispatching port/MMIO
//! exits to the buses), one event loop (virtio queue notifications and host
//! sockets), and the caller's, which waits for the VM to end.

use std::os::unix::thread::JoinHandleExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use event_manager::{EventManager, MutEventSubscriber};

use crate::arch::x86_64::{self as arch, SERIAL_IRQ};
use crate::confine::ThreadKind;
use crate::device_manager::{self, AttachedDevice, DeviceConfig, DeviceKind, RestoreResources};
use crate::devices::i8042::{I8042, I8042_DATA_PORT};
use crate::devices::serial::{
    ConsoleSink, LineHook, SerialPort, SerialSnapshot, COM1_LEN, COM1_PORT,
};
use crate::devices::virtio::fs as virtio_fs;
use crate::devices::virtio::mmio::MmioState;
use crate::devices::Bus;
use crate::hypervisor::{Hypervisor, HypervisorError, Vcpu, VcpuState, Vm, VmState};
use crate::snapshot::{self, SnapshotError};
use crate::GuestMemoryMmap;

pub use crate::device_manager::DiskConfig;
pub use crate::x86_vm::{
    hotplug_ranges, SerialOutput, SnapshotOnReady, VmConfig, VmmError, HOTPLUG_BLOCK,
};

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmmError {
    let what = what.into();
    move |source| VmmError::Io { what, source }
}

pub use crate::x86_vm::VmExitReason;

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

/// Builds the VM described by `config` and runs it to its end.
///
/// vCPU threads of a VM that ended may still be blocked in the hypervisor;
/// a process that runs one VM (the `berth-vmm` binary) simply exits.
pub fn run(config: &VmConfig) -> Result<VmOutcome, VmmError> {
    let start = Instant::now();
    crate::x86_vm::check_sizes(config.cpus, config.mem_mib)?;
    virtio_fs::check_unique_tags(&config.fs)?;
    // Shares do not stop a snapshot on ready: the device refuses only once
    // the guest has used it (a FUSE session a restore could not continue).
    let device_configs = config.devices();
    let mem_size = config.mem_mib << 20;

    let hypervisor = crate::hypervisor::open_host(config.cpus)?;
    let vm = hypervisor.create_vm()?;
    let boot_size = crate::x86_vm::boot_mem_size(mem_size, config.boot_mem_mib, config.quirks);
    let hotplug = hotplug_ranges(mem_size, boot_size);
    let mut guest = crate::x86_vm::load_guest(
        &*vm,
        &config.kernel,
        config.initrd.as_deref(),
        mem_size,
        boot_size,
        &crate::x86_vm::base_cmdline(config, &hotplug),
    )?;
    let mem = guest.mem.clone();

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
    let legacy = legacy_devices(&*vm, &config.serial, None, marker, &event_tx)?;
    let devices = legacy.with_virtio(
        &*vm,
        &mem,
        device_manager::build(&device_configs)?,
        Some(&mut guest.cmdline),
    )?;
    let vcpus = guest.finish(&*vm, config.cpus, config.quirks)?;
    let machine = Machine {
        backend: hypervisor.name(),
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
    /// Folders for the snapshot's share slots, in its order and with its
    /// tags; empty: the folders recorded in it, read-only.
    pub shares: Vec<virtio_fs::FsConfig>,
    /// When given, must be the kernel the snapshot's guest booted.
    pub kernel: Option<PathBuf>,
    /// Take another snapshot at this marker line (chained snapshots).
    pub snapshot_on_ready: Option<SnapshotOnReady>,
    /// How guest memory comes back (see [`snapshot::memory::MemoryRestore`]).
    pub memory: snapshot::memory::MemoryRestore,
    /// Peer addresses for the snapshot's network card's fresh stack (see
    /// [`crate::net::UserNetConfig::peers`]).
    pub net_peers: Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
}

/// A VM made ahead of a restore, for a warm pool (`berth-vmm --standby`):
/// /dev/kvm open, the VM with its irqchip and PIT, and its vCPUs created.
/// What is left for [`restore_prepared`] is mapping the snapshot's memory,
/// creating the devices and setting the saved state.
pub struct PreparedVm {
    hypervisor: Box<dyn Hypervisor>,
    vm: Arc<dyn Vm>,
    vcpus: Vec<Box<dyn Vcpu>>,
}

impl PreparedVm {
    /// Creates the VM and `cpus` vCPUs (1 to 16).
    pub fn new(cpus: u8) -> Result<Self, VmmError> {
        if cpus == 0 || cpus > 16 {
            return Err(VmmError::Config(format!(
                "{cpus} vCPUs (1 to 16 supported)"
            )));
        }
        let hypervisor = crate::hypervisor::open_host(cpus)?;
        let vm = hypervisor.create_vm()?;
        let vcpus = (0..cpus)
            .map(|i| vm.create_vcpu(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PreparedVm {
            hypervisor,
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
        hypervisor,
        vm,
        mut vcpus,
    } = match prepared {
        Some(p) => p,
        None => PreparedVm::new(1)?,
    };
    let host = snapshot::HostIdentity {
        vmm_version: snapshot::vmm_version(),
        hypervisor: hypervisor.name().into(),
        arch: "x86_64".into(),
        tsc_khz: vcpus[0].tsc_khz()?,
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
    let records: Vec<DeviceKind> = state.devices.iter().map(|d| d.kind.clone()).collect();
    let device_configs = DeviceConfig::for_restore(
        &records,
        &RestoreResources {
            vsock_uds: config.vsock_uds.clone(),
            disks: config.disks.clone(),
            shares: config.shares.clone(),
            // A network card gets a fresh stack with the host's resolvers
            // of now (a VPN connected since the snapshot applies), and
            // this run's peers.
            net: (!config.net_peers.is_empty()).then(|| crate::net::UserNetConfig {
                peers: config.net_peers.clone(),
                ..crate::net::UserNetConfig::from_host()
            }),
        },
    )?;
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
    let legacy = legacy_devices(&*vm, &config.serial, Some(&state.serial), marker, &event_tx)?;
    let devices = legacy.with_virtio(&*vm, &mem, device_manager::build(&device_configs)?, None)?;

    // Hypervisor state: VM first, then each vCPU (research/vm-snapshot order).
    for index in vcpus.len() as u8..state.cpus {
        vcpus.push(vm.create_vcpu(index)?);
    }
    vm.set_state(&state.vm)?;
    for (vcpu, s) in vcpus.iter_mut().zip(&state.vcpus) {
        vcpu.set_state(s)?;
    }
    for (device, record) in devices.transports.iter().zip(&state.devices) {
        device.restore(&record.kind, &record.transport)?;
    }
    let machine = Machine {
        backend: hypervisor.name(),
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
    /// The host asked for a suspend (SIGUSR2, see [`set_suspend_dir`]).
    Suspend,
}

/// The signal that asks a VMM started with `--suspend-to` to suspend.
pub const SUSPEND_SIGNAL: libc::c_int = libc::SIGUSR2;

/// Where a suspend writes its snapshot (`--suspend-to`); unset: the
/// signal is taken and ignored.
static SUSPEND_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Sets the directory of `--suspend-to`.
pub fn set_suspend_dir(dir: PathBuf) {
    let _ = SUSPEND_DIR.set(dir);
}

/// Blocks [`SUSPEND_SIGNAL`] in the calling thread; called first in
/// `main`, so that every thread inherits the mask and the signal is only
/// ever taken by the suspend thread's `sigwait` (its default action would
/// end the VMM).
pub fn block_suspend_signal() {
    // SAFETY: the set is initialised by sigemptyset before use and only
    // this thread's mask changes.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, SUSPEND_SIGNAL);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Starts the thread that turns each [`SUSPEND_SIGNAL`] into
/// [`Event::Suspend`] (only with `--suspend-to`).
fn spawn_suspend_waiter(events: Sender<Event>) -> Result<(), VmmError> {
    if SUSPEND_DIR.get().is_none() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("berth-suspend".into())
        .spawn(move || {
            crate::confine::confine_or_exit(ThreadKind::Main);
            // SAFETY: as in block_suspend_signal; sigwait writes the
            // signal number into `sig`.
            let set = unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, SUSPEND_SIGNAL);
                set
            };
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` and `sig` are valid for the call.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                if events.send(Event::Suspend).is_err() {
                    return;
                }
            }
        })
        .map_err(io_err("spawn suspend thread"))?;
    Ok(())
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
    vm: VmState,
    vcpus: Vec<VcpuState>,
    serial: SerialSnapshot,
    devices: Vec<DeviceRecord>,
}

/// The devices of a VM and what runs them.
struct Devices {
    io_bus: Arc<Bus>,
    mmio_bus: Arc<Bus>,
    serial: Arc<Mutex<SerialPort>>,
    transports: Vec<AttachedDevice>,
    event_manager: EventManager<Box<dyn MutEventSubscriber + Send>>,
    first_serial_byte: Arc<OnceLock<Instant>>,
}

/// The port-I/O devices (console, reset line), before the virtio devices.
struct LegacyDevices {
    io_bus: Bus,
    serial: Arc<Mutex<SerialPort>>,
    first_serial_byte: Arc<OnceLock<Instant>>,
}

fn legacy_devices(
    vm: &dyn Vm,
    serial_out: &SerialOutput,
    serial_state: Option<&SerialSnapshot>,
    marker: Option<(String, LineHook)>,
    event_tx: &Sender<Event>,
) -> Result<LegacyDevices, VmmError> {
    let mut io_bus = Bus::new();
    let first_serial_byte = Arc::new(OnceLock::new());
    let out = serial_out.open()?;
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
    Ok(LegacyDevices {
        io_bus,
        serial,
        first_serial_byte,
    })
}

impl LegacyDevices {
    /// Adds the virtio devices (from the device manager) on the MMIO bus,
    /// their queues on the epoll event loop.
    fn with_virtio(
        self,
        vm: &dyn Vm,
        mem: &GuestMemoryMmap,
        virtio: device_manager::BuiltDevices,
        cmdline: Option<&mut linux_loader::cmdline::Cmdline>,
    ) -> Result<Devices, VmmError> {
        let mut event_manager: EventManager<Box<dyn MutEventSubscriber + Send>> =
            EventManager::new().map_err(VmmError::EventLoop)?;
        let mut mmio_bus = crate::x86_vm::platform_mmio_bus(vm)?;
        let transports = virtio.attach(vm, mem, &mut mmio_bus, &mut event_manager, cmdline)?;
        Ok(Devices {
            io_bus: Arc::new(self.io_bus),
            mmio_bus: Arc::new(mmio_bus),
            serial: self.serial,
            transports,
            event_manager,
            first_serial_byte: self.first_serial_byte,
        })
    }
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
    /// The hypervisor's name, for snapshot headers.
    backend: &'static str,
    vm: Arc<dyn Vm>,
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
    saved: Receiver<Result<VcpuState, HypervisorError>>,
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
        vcpus: Vec<Box<dyn Vcpu>>,
        event_tx: Sender<Event>,
        event_rx: Receiver<Event>,
        snapshot_dir: Option<PathBuf>,
    ) -> Result<VmOutcome, VmmError> {
        let Machine {
            backend,
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
        spawn_suspend_waiter(event_tx.clone())?;
        drop(event_tx);
        // Every thread of the VM runs now; the main thread only waits,
        // snapshots and reports from here on.
        crate::confine::confine_or_exit(ThreadKind::Main);

        let reason = loop {
            match event_rx.recv() {
                Ok(Event::Exit(r)) => break r,
                Ok(Event::Suspend) => {
                    let Some(dir) = SUSPEND_DIR.get() else {
                        continue;
                    };
                    let snap = Snapshotter {
                        backend,
                        vm: &vm,
                        mem: &mem,
                        serial: &serial,
                        transports: &transports,
                        memory_regions: &memory_regions,
                        anonymous_memory,
                        kernel: &kernel,
                        cpus,
                    };
                    // Returns only when it failed: a taken suspend snapshot
                    // ends the process with the vCPUs still paused.
                    if let Err(e) = snap.take(&handles, dir, true) {
                        eprintln!("berth-vmm: suspend refused: {e}");
                    }
                }
                Ok(Event::Ready) => {
                    let Some(dir) = &snapshot_dir else { continue };
                    let snap = Snapshotter {
                        backend,
                        vm: &vm,
                        mem: &mem,
                        serial: &serial,
                        transports: &transports,
                        memory_regions: &memory_regions,
                        anonymous_memory,
                        kernel: &kernel,
                        cpus,
                    };
                    match snap.take(&handles, dir, false) {
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
    backend: &'static str,
    vm: &'a Arc<dyn Vm>,
    mem: &'a GuestMemoryMmap,
    serial: &'a Arc<Mutex<SerialPort>>,
    transports: &'a [AttachedDevice],
    memory_regions: &'a [(u64, u64)],
    anonymous_memory: bool,
    kernel: &'a KernelIdentity,
    cpus: u8,
}

impl Snapshotter<'_> {
    /// Pauses every vCPU, saves, resumes (also on failure). With `exit`
    /// (a suspend), a saved snapshot ends the process instead of resuming:
    /// nothing the guest does after the snapshot reaches its disks.
    fn take(
        &self,
        handles: &[VcpuHandle],
        dir: &Path,
        exit: bool,
    ) -> Result<SnapshotStats, SnapshotError> {
        let t0 = Instant::now();
        for h in handles {
            h.pause.store(true, Ordering::SeqCst);
        }
        let mut states: Vec<Option<Result<VcpuState, HypervisorError>>> =
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
            None => self.save(states, dir, t0, pause, exit),
        };
        for h in handles {
            h.pause.store(false, Ordering::SeqCst);
            let _ = h.resume.send(());
        }
        result
    }

    fn save(
        &self,
        states: Vec<Option<Result<VcpuState, HypervisorError>>>,
        dir: &Path,
        t0: Instant,
        pause: Duration,
        exit: bool,
    ) -> Result<SnapshotStats, SnapshotError> {
        let vcpus = states
            .into_iter()
            .map(|s| match s {
                Some(Ok(s)) => Ok(s),
                Some(Err(e)) => Err(SnapshotError::Hypervisor(e.to_string())),
                None => Err(SnapshotError::NotQuiescent("vCPU state missing".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Devices stay locked until memory is written: the event loop must
        // not move a queue between its saved indices and the saved memory.
        let transports: Vec<_> = self
            .transports
            .iter()
            .map(|d| d.transport.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let device_arcs: Vec<_> = transports.iter().map(|t| t.device()).collect();
        let device_guards: Vec<_> = device_arcs
            .iter()
            .map(|d| d.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let mut records = Vec::new();
        for ((t, d), device) in transports
            .iter()
            .zip(device_guards.iter())
            .zip(self.transports)
        {
            records.push(DeviceRecord {
                kind: device.kind.clone(),
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
            .state()
            .map_err(|e| SnapshotError::Hypervisor(e.to_string()))?;
        std::fs::create_dir_all(dir)
            .map_err(snapshot::io_err(format!("create {}", dir.display())))?;
        let mem_stats = snapshot::memory::write_sparse(
            self.mem,
            &dir.join(snapshot::MEMORY_FILE),
            self.anonymous_memory,
        )?;
        // A suspend keeps the devices locked until the process ends: the
        // event loop must not complete a request (a disk write) that the
        // saved queues still show as pending.
        let held = exit.then_some((device_guards, transports));
        let kernel_sha256 = match self.kernel {
            KernelIdentity::Path(p) => snapshot::file_sha256(p)?,
            KernelIdentity::Hash(h) => h.clone(),
        };
        let header = snapshot::Header {
            vmm_version: snapshot::vmm_version(),
            hypervisor: self.backend.into(),
            arch: "x86_64".into(),
            kernel_sha256,
            tsc_khz: vcpus.first().and_then(VcpuState::tsc_khz).unwrap_or(0),
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
        if let Some(_held) = held {
            self.serial
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .flush();
            eprintln!(
                "berth-vmm: suspended to {} (pause {:.2} ms, total {:.1} ms, {:.1} MiB of memory data)",
                dir.display(),
                pause.as_secs_f64() * 1e3,
                t0.elapsed().as_secs_f64() * 1e3,
                mem_stats.data_bytes as f64 / f64::from(1 << 20),
            );
            std::process::exit(0);
        }
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
    saved: Sender<Result<VcpuState, HypervisorError>>,
    /// Continue after a pause.
    resume: Receiver<()>,
    /// Keeps the VM (and its memory slots) alive while the vCPU runs.
    _vm: Arc<dyn Vm>,
}

fn run_vcpu(mut vcpu: Box<dyn Vcpu>, ctx: VcpuContext) {
    crate::confine::confine_or_exit(ThreadKind::Vcpu);
    #[cfg(feature = "test-hooks")]
    if vcpu.index() == 0 {
        crate::confine::test_hook_forbidden_syscall(ThreadKind::Vcpu);
    }
    if let Some(t) = &ctx.first_run {
        t.get_or_init(Instant::now);
    }
    // Between two runs: pause for a snapshot while the main thread asks.
    let mut between = |vcpu: &mut dyn Vcpu| {
        while ctx.pause.load(Ordering::SeqCst) {
            let _ = ctx.saved.send(vcpu.state());
            if ctx.resume.recv().is_err() {
                return false;
            }
        }
        true
    };
    let ended = crate::x86_vm::exit_loop(
        vcpu.as_mut(),
        &ctx.io_bus,
        &ctx.mmio_bus,
        &ctx.mem,
        &mut between,
    );
    if let Some(reason) = ended {
        let _ = ctx.exit.send(Event::Exit(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::fs::{FsConfig, FsError};
    use crate::host_quirks::HostQuirks;

    #[test]
    fn duplicate_tags_are_refused_before_the_hypervisor() {
        let share = FsConfig::parse("tag=t1,path=/nonexistent").unwrap();
        // A snapshot on ready no longer refuses shares up front (only a
        // share the guest used refuses, when the snapshot is taken).
        let config = VmConfig {
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
            balloon: false,
            fs: vec![share.clone(), share],
            net: None,
            quirks: HostQuirks::none(),
            snapshot_on_ready: Some(SnapshotOnReady {
                dir: "/nonexistent".into(),
                marker: AGENT_READY_MARKER.into(),
            }),
        };
        assert!(matches!(
            run(&config),
            Err(VmmError::Fs(FsError::DuplicateTag(_)))
        ));
    }
}
