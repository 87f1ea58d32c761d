//! `berth-vmm`: boots a Linux guest in a microVM.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_vmm::devices::virtio::fs::{check_unique_tags, FsConfig};
use berth_vmm::HostQuirks;
use clap::Parser;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
use berth_vmm::snapshot::memory::MemoryRestore;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
use berth_vmm::vmm::{
    self, DiskConfig, RestoreConfig, SerialOutput, SnapshotOnReady, VmConfig, VmExitReason,
};

/// Boot a Linux guest in a microVM (KVM).
#[derive(Parser, Debug)]
#[command(
    name = "berth-vmm",
    version,
    after_help = "Environment (Linux): BERTH_VMM_SECCOMP=kill (default) | log | off. Every VMM \
thread runs under its own seccomp filter and drops the capabilities it does not need; a system \
call outside a thread's filter kills the VMM (SIGSYS). `log` lets such calls through and the \
kernel logs them (dmesg / audit: type=SECCOMP), for finding a missing entry; `off` installs no \
filter (capabilities are still dropped)."
)]
struct Args {
    /// Guest kernel: an ELF vmlinux or a bzImage. With --restore optional:
    /// when given, it must be the kernel the snapshot's guest booted.
    #[arg(long, required_unless_present_any = ["restore", "standby", "describe"])]
    kernel: Option<PathBuf>,
    /// Initial ramdisk (cpio).
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line (the VMM appends device and host-quirk options).
    #[arg(long, default_value = "console=ttyS0 reboot=k panic=-1")]
    cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Guest RAM in MiB.
    #[arg(long = "mem-mib", default_value_t = 128)]
    mem_mib: u64,
    /// RAM the guest sees at boot (MiB, whole 128 MiB blocks); the rest is
    /// offered for hotplug (`berth.mem_hotplug=` on the command line).
    /// Default: all of it. Not for kvm_pvm hosts, whose guests misread
    /// data under load once memory was hot-added (HostQuirks::boot_mem_bytes).
    #[arg(long = "boot-mem-mib")]
    boot_mem_mib: Option<u64>,
    /// Guest console destination: a file, or `-` for stdout.
    #[arg(long = "serial-log", default_value = "-")]
    serial_log: String,
    /// Expose guest vsock (CID 3) on this Unix socket (`CONNECT <port>\n`);
    /// guest connections to host port P go to `<PATH>_P`.
    #[arg(long = "vsock-uds")]
    vsock_uds: Option<PathBuf>,
    /// virtio-blk disk image, `PATH` or `PATH,ro`; repeat for more disks.
    #[arg(long = "disk")]
    disks: Vec<String>,
    /// Add a virtio-rng device (host getrandom).
    #[arg(long)]
    rng: bool,
    /// Add a virtio-balloon device with free page reporting: memory the
    /// guest frees is released on the host (madvise MADV_DONTNEED on Linux).
    /// A restore takes its devices from the snapshot instead.
    #[arg(long)]
    balloon: bool,
    /// With the balloon: keep its counters in FILE (created or replaced),
    /// rewritten after each request that released memory: one line of JSON
    /// (released_bytes, resident_released_bytes, refused_ranges,
    /// failed_ranges).
    #[arg(long = "balloon-stats", value_name = "FILE")]
    balloon_stats: Option<PathBuf>,
    /// Share a host directory (virtio-fs): `tag=TAG,path=HOSTDIR[,ro]`;
    /// repeat for more. The guest mounts it with `mount -t virtiofs TAG`.
    /// Linux (KVM) only. A snapshot is taken only while the guest has not
    /// used its shares (empty share slots); with --restore, --fs gives
    /// each of the snapshot's slots, in order and with its tag, this run's
    /// folder (default: the snapshot's folders, read-only).
    #[arg(long = "fs", value_name = "tag=TAG,path=HOSTDIR[,ro]", conflicts_with_all = ["standby"])]
    fs: Vec<String>,
    /// Network card (virtio-net): `user` = user-mode networking, the
    /// guest's connections leave through the VMM's host sockets (VM
    /// network 192.168.127.0/24: gateway and DNS .1, guest .2, host
    /// loopback .254). Linux (KVM) only yet. A snapshot keeps the card
    /// (a restore gets a fresh stack) and is taken only while the stack
    /// holds no connections.
    #[arg(long, value_name = "MODE", value_parser = ["user"], conflicts_with_all = ["restore", "standby"])]
    net: Option<String>,
    /// A peer address of the user-mode network (repeatable): the guest's
    /// TCP connections to GUEST_IP (an address outside 192.168.127.0/24)
    /// go to HOST_IP on the host, same port (a port below 1024 at 40000 +
    /// port: an unprivileged listener cannot bind it). With --net user, or with
    /// --restore of a snapshot that has a network card.
    #[arg(long = "net-peer", value_name = "GUEST_IP=HOST_IP", value_parser = parse_peer, conflicts_with_all = ["standby"])]
    net_peers: Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
    /// Do not apply host workarounds (kvm_pvm command line and CPUID filter).
    #[arg(long = "no-host-quirks")]
    no_host_quirks: bool,
    /// Print setup time and time to first serial byte to stderr.
    #[arg(long)]
    timings: bool,
    /// Snapshot the VM into DIR when the guest writes its ready line
    /// (--ready-marker) on the console, then keep running. Adds
    /// `clocksource=kvm-clock` to the command line (the guest clock then
    /// continues from the snapshot instead of jumping).
    #[arg(long = "snapshot-on-ready", value_name = "DIR")]
    snapshot_on_ready: Option<PathBuf>,
    /// The console text that means "ready" for --snapshot-on-ready.
    #[arg(long = "ready-marker", default_value = "ready on vsock port")]
    ready_marker: String,
    /// Suspend: on SIGUSR2, snapshot the VM into DIR and exit (status 0,
    /// `suspended to DIR` logged); the vCPUs are not resumed, so the disks
    /// are not written after the snapshot. A VM that cannot be snapshotted
    /// then (see --snapshot-on-ready) logs `suspend refused: REASON` and
    /// keeps running. Linux x86_64 (KVM) only; without it SIGUSR2 is
    /// ignored.
    #[arg(long = "suspend-to", value_name = "DIR")]
    suspend_to: Option<PathBuf>,
    /// Restore the snapshot in DIR instead of booting (--vsock-uds and
    /// --disk give this run's host resources; disks default to the
    /// snapshot's paths).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["initrd", "snapshot_on_ready"])]
    restore: Option<PathBuf>,
    /// How --restore brings guest memory back: `private` (copy-on-write
    /// mapping of the memory file, the default) or `copy` (read into
    /// anonymous memory that the VM owns).
    #[arg(long = "restore-memory", value_name = "HOW", value_parser = ["private", "copy"], default_value = "private")]
    restore_memory: String,
    /// Warm pool: make the VM and its --cpus vCPUs now, then wait on this
    /// Unix socket for one JSON request naming the snapshot to restore into
    /// it (see `berth_vmm::standby`). Linux/KVM only.
    #[arg(long, value_name = "SOCKET", conflicts_with_all = ["restore", "initrd", "snapshot_on_ready", "kernel"])]
    standby: Option<PathBuf>,
    /// With --standby: exit when no request came within this many seconds.
    #[arg(long = "standby-idle", value_name = "SECS", default_value_t = 600)]
    standby_idle: u64,
    /// Print, as JSON, the exits a guest can cause in this VMM and what
    /// its vCPU loop does with each (found by running the loop over one
    /// exit of every kind), then exit.
    #[arg(long)]
    describe: bool,
}

/// `--describe`: the exit kinds as JSON on stdout; `None` without it.
fn describe(args: &Args) -> Option<ExitCode> {
    if !args.describe {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    let exits = berth_vmm::x86_vm::describe_exits();
    #[cfg(not(target_arch = "x86_64"))]
    let exits: Vec<()> = Vec::new();
    let doc = serde_json::json!({ "exits": exits });
    println!("{doc}");
    Some(ExitCode::SUCCESS)
}

/// Opens `--balloon-stats` (before any thread is confined) and hands it to
/// the balloon device, with zero counters written: the file exists from the
/// start.
fn open_balloon_stats(args: &Args) -> Result<(), ExitCode> {
    use berth_vmm::devices::virtio::balloon;
    let Some(path) = &args.balloon_stats else {
        return Ok(());
    };
    let opened = std::fs::File::create(path).and_then(|mut f| {
        std::io::Write::write_all(&mut f, balloon::stats_json(&Default::default()).as_bytes())?;
        Ok(f)
    });
    match opened {
        Ok(f) => {
            balloon::set_stats_file(f);
            Ok(())
        }
        Err(e) => {
            eprintln!("berth-vmm: --balloon-stats {}: {e}", path.display());
            Err(ExitCode::from(2))
        }
    }
}

fn parse_disk(spec: &str) -> Result<(PathBuf, bool), String> {
    match spec.rsplit_once(',') {
        Some((path, "ro")) => Ok((PathBuf::from(path), true)),
        Some((path, "rw")) => Ok((PathBuf::from(path), false)),
        Some((_, opt)) => Err(format!(
            "unknown disk option `{opt}` in `{spec}` (use PATH[,ro])"
        )),
        None => Ok((PathBuf::from(spec), false)),
    }
}

/// One `--net-peer GUEST_IP=HOST_IP`.
fn parse_peer(s: &str) -> Result<(std::net::Ipv4Addr, std::net::Ipv4Addr), String> {
    let (guest, host) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: want GUEST_IP=HOST_IP"))?;
    let guest: std::net::Ipv4Addr = guest
        .parse()
        .map_err(|_| format!("`{guest}` is not an IPv4 address"))?;
    let host: std::net::Ipv4Addr = host
        .parse()
        .map_err(|_| format!("`{host}` is not an IPv4 address"))?;
    let vm_net = (u32::from(guest) >> 8) == (u32::from(berth_vmm::net::NETWORK) >> 8);
    if vm_net
        || guest.is_loopback()
        || guest.is_unspecified()
        || guest.is_multicast()
        || guest.is_broadcast()
    {
        return Err(format!(
            "peer address `{guest}` must be a unicast address outside the VM network 192.168.127.0/24"
        ));
    }
    Ok((guest, host))
}

/// The `--fs` shares, or the exit code after saying what is wrong.
fn parse_shares(specs: &[String]) -> Result<Vec<FsConfig>, ExitCode> {
    let shares = specs
        .iter()
        .map(|s| FsConfig::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| check_unique_tags(&v).map(|()| v));
    shares.map_err(|e| {
        eprintln!("berth-vmm: {e}");
        ExitCode::from(2)
    })
}

/// The portable assemblies have no virtio-fs device yet.
#[cfg(any(
    all(target_os = "macos", target_arch = "aarch64"),
    all(windows, target_arch = "x86_64")
))]
fn refuse_shares(args: &Args) -> Result<(), ExitCode> {
    parse_shares(&args.fs)?;
    if args.net.is_some() {
        eprintln!("berth-vmm: --net is supported on Linux (KVM) only yet");
        return Err(ExitCode::from(2));
    }
    if args.fs.is_empty() {
        Ok(())
    } else {
        eprintln!(
            "berth-vmm: --fs (virtio-fs shared folders) is supported on Linux (KVM) only yet"
        );
        Err(ExitCode::from(2))
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn main() -> ExitCode {
    // Before any thread exists: every thread inherits SIGUSR2 blocked, and
    // only the suspend thread takes it (sigwait), never its default action.
    berth_vmm::vmm::block_suspend_signal();
    let args = Args::parse();
    if let Some(code) = describe(&args) {
        return code;
    }
    berth_log::init(None);
    if let Err(code) = open_balloon_stats(&args) {
        return code;
    }
    if let Some(dir) = &args.suspend_to {
        berth_vmm::vmm::set_suspend_dir(dir.clone());
    }
    let fs = match parse_shares(&args.fs) {
        Ok(v) => v,
        Err(code) => return code,
    };
    // Each VMM thread confines itself when it starts its loop.
    match berth_vmm::confine::Mode::from_env() {
        Ok(mode) => berth_vmm::confine::enable(berth_vmm::confine::Policy {
            mode,
            fs_shares: !fs.is_empty(),
        }),
        Err(e) => {
            eprintln!("berth-vmm: {e}");
            return ExitCode::from(2);
        }
    }
    let mut disks = Vec::new();
    for spec in &args.disks {
        match parse_disk(spec) {
            Ok((path, read_only)) => disks.push(DiskConfig { path, read_only }),
            Err(e) => {
                eprintln!("berth-vmm: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let serial = if args.serial_log == "-" {
        SerialOutput::Stdout
    } else {
        SerialOutput::File(PathBuf::from(&args.serial_log))
    };
    let result = if let Some(sock) = args.standby.clone() {
        match standby(&sock, &args) {
            Ok((prepared, config)) => vmm::restore_prepared(Some(prepared), &config),
            Err(code) => return code,
        }
    } else if let Some(dir) = args.restore {
        vmm::restore(&RestoreConfig {
            dir,
            serial,
            vsock_uds: args.vsock_uds,
            disks,
            shares: fs,
            kernel: args.kernel,
            snapshot_on_ready: None,
            memory: if args.restore_memory == "copy" {
                MemoryRestore::Copy
            } else {
                MemoryRestore::Private
            },
            net_peers: args.net_peers.clone(),
        })
    } else {
        let mut cmdline = args.cmdline;
        let snapshot_on_ready = args.snapshot_on_ready.map(|dir| {
            if !cmdline
                .split_whitespace()
                .any(|w| w.starts_with("clocksource="))
            {
                cmdline.push_str(" clocksource=kvm-clock");
            }
            SnapshotOnReady {
                dir,
                marker: args.ready_marker,
            }
        });
        let config = VmConfig {
            kernel: args
                .kernel
                .expect("clap requires --kernel without --restore"),
            initrd: args.initrd,
            cmdline,
            cpus: args.cpus,
            mem_mib: args.mem_mib,
            boot_mem_mib: args.boot_mem_mib,
            serial,
            vsock_uds: args.vsock_uds,
            disks,
            rng: args.rng,
            balloon: args.balloon,
            fs,
            net: args.net.as_ref().map(|_| berth_vmm::net::UserNetConfig {
                peers: args.net_peers.clone(),
                ..berth_vmm::net::UserNetConfig::from_host()
            }),
            quirks: if args.no_host_quirks {
                HostQuirks::none()
            } else {
                HostQuirks::detect()
            },
            snapshot_on_ready,
        };
        vmm::run(&config)
    };
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            eprintln!("berth-vmm: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            return ExitCode::from(1);
        }
    };
    if args.timings {
        let t = &outcome.timings;
        let ms = |d: Option<std::time::Duration>| {
            d.map_or("never".to_string(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1e3)
            })
        };
        eprintln!(
            "berth-vmm: timings: setup (open /dev/kvm -> first vCPU run) {}",
            ms(t.setup())
        );
        eprintln!(
            "berth-vmm: timings: first serial byte {}",
            ms(t.to_first_serial_byte())
        );
        eprintln!("berth-vmm: timings: VM end {}", ms(Some(t.end - t.start)));
    }
    // Other vCPU threads may still be inside KVM_RUN: leave through exit().
    let code = match outcome.reason {
        VmExitReason::Reset => 0,
        VmExitReason::SystemReset => {
            eprintln!("berth-vmm: guest requested a reset through the hypervisor");
            0
        }
        VmExitReason::Shutdown => {
            eprintln!("berth-vmm: guest shut down abnormally (triple fault or halt)");
            3
        }
        VmExitReason::Failed(msg) => {
            eprintln!("berth-vmm: {msg}");
            4
        }
    };
    std::process::exit(code)
}

/// `--standby`: makes the VM, waits for the restore request and answers it.
/// `Err` carries the exit code when there is nothing to run.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn standby(
    sock: &std::path::Path,
    args: &Args,
) -> Result<(vmm::PreparedVm, RestoreConfig), ExitCode> {
    use berth_vmm::standby::{self, StandbyError};
    let fail = |what: String, code: u8| {
        eprintln!("berth-vmm: standby: {what}");
        ExitCode::from(code)
    };
    let prepared = vmm::PreparedVm::new(args.cpus).map_err(|e| fail(e.to_string(), 1))?;
    let _ = std::fs::remove_file(sock);
    let listener = std::os::unix::net::UnixListener::bind(sock)
        .map_err(|e| fail(format!("{}: {e}", sock.display()), 1))?;
    let waited =
        standby::wait_request(&listener, std::time::Duration::from_secs(args.standby_idle));
    // One request per standby: nobody else may find the socket.
    let _ = std::fs::remove_file(sock);
    drop(listener);
    let (req, mut stream) = match waited {
        Ok(r) => r,
        Err(StandbyError::Idle(s)) => {
            return Err(fail(format!("no request within {s} s; exiting"), 0));
        }
        Err(e) => return Err(fail(e.to_string(), 1)),
    };
    let mut refuse = |why: String| {
        let _ = standby::answer(&mut stream, Err(&why));
        fail(why, 2)
    };
    let mut disks = Vec::new();
    for spec in &req.disks {
        let (path, read_only) = parse_disk(spec).map_err(&mut refuse)?;
        disks.push(DiskConfig { path, read_only });
    }
    let memory = match req.restore_memory.as_deref() {
        None | Some("private") => MemoryRestore::Private,
        Some("copy") => MemoryRestore::Copy,
        Some(other) => {
            return Err(refuse(format!(
                "unknown restore_memory `{other}` (private or copy)"
            )))
        }
    };
    if let Some(log) = &req.log {
        standby::redirect_output(log).map_err(|e| refuse(format!("log {}: {e}", log.display())))?;
    }
    let _ = standby::answer(&mut stream, Ok(()));
    Ok((
        prepared,
        RestoreConfig {
            dir: req.restore,
            serial: SerialOutput::File(req.serial_log),
            vsock_uds: req.vsock_uds,
            disks,
            // A standby's seccomp and capabilities are set before its
            // request; berth gives restores with shares to a VMM of their
            // own (the snapshot's empty folders otherwise).
            shares: Vec::new(),
            kernel: req.kernel,
            snapshot_on_ready: None,
            memory,
            net_peers: Vec::new(),
        },
    ))
}

/// What the portable assemblies cannot do (snapshots, standby) refused,
/// and the kernel they need; or the exit code after saying what is wrong.
#[cfg(any(
    all(target_os = "macos", target_arch = "aarch64"),
    all(windows, target_arch = "x86_64")
))]
fn portable_kernel(args: &Args) -> Result<PathBuf, ExitCode> {
    if args.restore.is_some()
        || args.snapshot_on_ready.is_some()
        || args.standby.is_some()
        || args.suspend_to.is_some()
    {
        eprintln!("berth-vmm: snapshots, --suspend-to and --standby are supported on Linux x86_64 (KVM) only");
        return Err(ExitCode::from(2));
    }
    args.kernel.clone().ok_or_else(|| {
        eprintln!("berth-vmm: --kernel is required");
        ExitCode::from(2)
    })
}

/// The arm64 assembly's disks (`PATH[,ro]`) and console (`-` or a file),
/// or the exit code after saying what is wrong.
#[cfg(all(target_os = "macos", target_arch = "aarch64"))]
#[allow(clippy::type_complexity)]
fn disks_and_console(
    args: &Args,
) -> Result<(Vec<(PathBuf, bool)>, Box<dyn std::io::Write + Send>), ExitCode> {
    let mut disks = Vec::new();
    for spec in &args.disks {
        disks.push(parse_disk(spec).map_err(|e| {
            eprintln!("berth-vmm: {e}");
            ExitCode::from(2)
        })?);
    }
    let console: Box<dyn std::io::Write + Send> = if args.serial_log == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::fs::File::create(&args.serial_log).map_err(|e| {
            eprintln!("berth-vmm: {}: {e}", args.serial_log);
            ExitCode::from(1)
        })?)
    };
    Ok((disks, console))
}

/// macOS on Apple Silicon: an arm64 guest on Hypervisor.framework
/// (`--kernel` is an arm64 `Image`; console `ttyAMA0`).
#[cfg(all(target_os = "macos", target_arch = "aarch64"))]
fn main() -> ExitCode {
    use berth_vmm::arm64_vm::{self, Arm64Exit, Arm64VmConfig};
    let args = Args::parse();
    if let Some(code) = describe(&args) {
        return code;
    }
    berth_log::init(None);
    if let Err(code) = open_balloon_stats(&args) {
        return code;
    }
    let _ = (
        HostQuirks::none(),
        args.no_host_quirks,
        args.timings,
        args.boot_mem_mib,
        &args.ready_marker,
        args.standby_idle,
    );
    let kernel = match portable_kernel(&args) {
        Ok(k) => k,
        Err(code) => return code,
    };
    if let Err(code) = refuse_shares(&args) {
        return code;
    }
    if args.cpus != 1 {
        eprintln!("berth-vmm: on macOS only one vCPU is supported yet");
        return ExitCode::from(2);
    }
    let (disks, console) = match disks_and_console(&args) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let cmdline = args.cmdline.replace("console=ttyS0", "console=ttyAMA0");
    let config = Arm64VmConfig {
        kernel,
        initrd: args.initrd,
        cmdline,
        mem_mib: args.mem_mib,
        console,
        vsock_uds: args.vsock_uds,
        disks,
        rng: args.rng,
        balloon: args.balloon,
    };
    let hypervisor = match berth_vmm::hypervisor::open_host(1) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("berth-vmm: {e}");
            return ExitCode::from(1);
        }
    };
    match arm64_vm::run(&*hypervisor, config) {
        Ok(Arm64Exit::PowerOff) | Ok(Arm64Exit::Reset) => ExitCode::SUCCESS,
        Ok(Arm64Exit::Failed(why)) => {
            eprintln!("berth-vmm: {why}");
            ExitCode::from(4)
        }
        Err(e) => {
            eprintln!("berth-vmm: {e}");
            ExitCode::from(1)
        }
    }
}

/// Windows on x86_64: an x86_64 guest on the Windows Hypervisor Platform,
/// assembled by the portable `x86_vm` (console, virtio-blk, virtio-rng).
#[cfg(all(windows, target_arch = "x86_64"))]
fn main() -> ExitCode {
    use berth_vmm::device_manager::DiskConfig;
    use berth_vmm::x86_vm::{self, SerialOutput, VmConfig, X86Exit};
    let args = Args::parse();
    if let Some(code) = describe(&args) {
        return code;
    }
    berth_log::init(None);
    if let Err(code) = open_balloon_stats(&args) {
        return code;
    }
    let _ = (
        args.timings,
        args.boot_mem_mib,
        &args.ready_marker,
        args.standby_idle,
    );
    let kernel = match portable_kernel(&args) {
        Ok(k) => k,
        Err(code) => return code,
    };
    if let Err(code) = refuse_shares(&args) {
        return code;
    }
    if args.vsock_uds.is_some() {
        eprintln!("berth-vmm: on Windows there is no vsock device yet");
        return ExitCode::from(2);
    }
    let mut disks = Vec::new();
    for spec in &args.disks {
        match parse_disk(spec) {
            Ok((path, read_only)) => disks.push(DiskConfig { path, read_only }),
            Err(e) => {
                eprintln!("berth-vmm: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let config = VmConfig {
        kernel,
        initrd: args.initrd,
        cmdline: args.cmdline,
        cpus: args.cpus,
        mem_mib: args.mem_mib,
        boot_mem_mib: None,
        serial: if args.serial_log == "-" {
            SerialOutput::Stdout
        } else {
            SerialOutput::File(PathBuf::from(&args.serial_log))
        },
        vsock_uds: None,
        disks,
        rng: args.rng,
        balloon: args.balloon,
        fs: Vec::new(),
        net: None,
        // kvm_pvm workarounds never apply on Windows.
        quirks: HostQuirks::none(),
        snapshot_on_ready: None,
    };
    let _ = args.no_host_quirks;
    let hypervisor = match berth_vmm::hypervisor::open_host(args.cpus) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("berth-vmm: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match x86_vm::run(&*hypervisor, &config) {
        Ok(X86Exit::Reset) | Ok(X86Exit::SystemReset) => 0,
        Ok(X86Exit::Shutdown) => {
            eprintln!("berth-vmm: guest shut down abnormally (triple fault or halt)");
            3
        }
        Ok(X86Exit::Failed(why)) => {
            eprintln!("berth-vmm: {why}");
            4
        }
        Err(e) => {
            eprintln!("berth-vmm: {e}");
            1
        }
    };
    // Other vCPU threads may still be inside the hypervisor: leave through exit().
    std::process::exit(code)
}

#[cfg(not(any(
    all(target_os = "linux", target_arch = "x86_64"),
    all(target_os = "macos", target_arch = "aarch64"),
    all(windows, target_arch = "x86_64")
)))]
fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(code) = describe(&args) {
        return code;
    }
    let _ = HostQuirks::none();
    let _ = parse_disk;
    let _ = open_balloon_stats;
    let _ = parse_shares;
    eprintln!("berth-vmm: no hypervisor backend for this OS yet");
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_specs() {
        assert_eq!(
            parse_disk("a.img").unwrap(),
            (PathBuf::from("a.img"), false)
        );
        assert_eq!(
            parse_disk("a,b.img,ro").unwrap(),
            (PathBuf::from("a,b.img"), true)
        );
        assert!(parse_disk("a.img,rx").is_err());
    }

    #[test]
    fn fs_flags() {
        let a = Args::try_parse_from([
            "berth-vmm",
            "--kernel",
            "k",
            "--fs",
            "tag=t1,path=/tmp/a",
            "--fs",
            "tag=t2,path=/tmp/b,ro",
        ])
        .unwrap();
        let shares = parse_shares(&a.fs).unwrap();
        assert_eq!(shares.len(), 2);
        assert!(shares[1].read_only);
        assert!(parse_shares(&["tag=t,path=/a".into(), "tag=t,path=/b".into()]).is_err());
        assert!(parse_shares(&["tag=t".into()]).is_err());
        // A snapshot carries empty share slots, and a restore fills them
        // (own VMs' -v); a standby cannot, it confines itself before its
        // request.
        assert!(Args::try_parse_from([
            "berth-vmm",
            "--kernel",
            "k",
            "--fs",
            "tag=t1,path=/tmp/a",
            "--snapshot-on-ready",
            "/tmp/s",
        ])
        .is_ok());
        assert!(Args::try_parse_from([
            "berth-vmm",
            "--restore",
            "/tmp/s",
            "--fs",
            "tag=t1,path=/tmp/a",
        ])
        .is_ok());
        assert!(Args::try_parse_from([
            "berth-vmm",
            "--standby",
            "/tmp/sock",
            "--fs",
            "tag=t1,path=/tmp/a",
        ])
        .is_err());
    }
}
