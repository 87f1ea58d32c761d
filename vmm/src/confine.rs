//! Confinement of the VMM's threads (Linux): a seccomp filter per thread
//! kind and a drop of the capabilities that thread does not need, like
//! Firecracker's.
//!
//! Every long-lived thread calls [`confine`] once, when it starts its loop
//! (its files and devices are open by then):
//!
//! | kind               | thread                               |
//! |--------------------|--------------------------------------|
//! | [`ThreadKind::Main`]   | the main thread: waits for the VM's end, takes snapshots; `berth-suspend` (`--suspend-to`): waits for SIGUSR2 |
//! | [`ThreadKind::Vcpu`]   | `berth-vcpuN`: KVM_RUN, port and MMIO exits (serial, virtio transports) |
//! | [`ThreadKind::Events`] | `berth-events`: the virtio queues (blk, rng, balloon, vsock, fs, net) |
//! | [`ThreadKind::Net`]    | `berth-usernet`: the user-mode network stack's host sockets |
//! | [`ThreadKind::Watch`]  | `berth-fswatch*` and `notify-rs inotify loop`: the host watcher of shared folders (live file events) |
//! | [`ThreadKind::Standby`] | the main thread of a warm-pool VMM (`--standby`), from its wait for a request through the restore |
//!
//! The standby's main thread confines itself before it waits for a
//! restore request (`crate::standby::wait_request`); the threads the
//! restore spawns inherit that filter and stack their own kind's filter on
//! it, so after the restore every thread runs under its kind's list (the
//! intersection of both). The standby list is therefore the union of all
//! kinds' lists plus what waiting and restoring take (accepting the
//! request, spawning threads, confining them, setting up the VM with any
//! KVM ioctl); it still refuses exec, fork, ptrace, mounts and the like.
//!
//! Filters are per thread (no TSYNC): each allows only the system calls of
//! its kind ([`allowed_syscalls`]); anything else kills the whole VMM
//! (`SECCOMP_RET_KILL_PROCESS`: a vCPU or device thread that breaks its
//! rules must not leave a half-working VM behind). Threads spawned later
//! inherit their parent's filter.
//!
//! Capabilities are per thread too: every thread clears its bounding set
//! and keeps in its permitted/effective sets only what its devices need
//! ([`kept_capabilities`]: the events thread of a VM with virtio-fs shares
//! keeps DAC_OVERRIDE and FOWNER for the passthrough server; every other
//! thread keeps none). `no_new_privs` is set before the filter.
//!
//! Nothing is confined unless the binary asked for it with [`enable`]
//! (library users run unconfined). The device unit tests run their
//! device code under these filters anyway, through the test-only
//! `testing` module (production's program, with a kill made a trap that
//! names the refused call; see docs/adding-a-device.md).
//!
//! `BERTH_VMM_SECCOMP` (read by [`Mode::from_env`]) chooses the filters'
//! action for a system call outside the list: unset or `kill` (default),
//! `log` (allowed, and logged by the kernel's audit log as
//! `type=SECCOMP`/`audit: ... syscall=N`, see `dmesg`; for diagnosing a
//! missing entry), or `off` (no filter; capabilities are still dropped).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The long-lived threads of a KVM VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread while the VM runs (event wait, snapshots, exit).
    Main,
    /// A vCPU thread.
    Vcpu,
    /// The device event loop (virtio queues of every device).
    Events,
    /// The user-mode network stack.
    Net,
    /// The host watcher of shared folders (`fs/watch.rs`): its own
    /// threads confine themselves, and the threads they spawn (the
    /// `notify` crate's inotify loop, one reader per agent connection)
    /// inherit the filter.
    Watch,
    /// The main thread of a standby VMM, before and during the restore
    /// (not in [`ThreadKind::ALL`]: its list is the union of the others').
    Standby,
}

impl ThreadKind {
    /// Every kind, for tests and reports.
    pub const ALL: [ThreadKind; 5] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::Events,
        ThreadKind::Net,
        ThreadKind::Watch,
    ];
}

/// What a filter does with a system call outside its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Kill the process (`SECCOMP_RET_KILL_PROCESS`); the default.
    Kill,
    /// Allow it and have the kernel log it (`SECCOMP_RET_LOG`).
    Log,
    /// Install no filter.
    Off,
}

/// The environment variable that selects the [`Mode`].
pub const MODE_ENV: &str = "BERTH_VMM_SECCOMP";

impl Mode {
    /// The mode `BERTH_VMM_SECCOMP` names (`kill`, `log`, `off`; unset or
    /// empty: `kill`).
    pub fn from_env() -> Result<Mode, ConfineError> {
        match std::env::var(MODE_ENV) {
            Err(_) => Ok(Mode::Kill),
            Ok(v) => Mode::parse(&v),
        }
    }

    /// Parses a `BERTH_VMM_SECCOMP` value.
    pub fn parse(v: &str) -> Result<Mode, ConfineError> {
        match v {
            "" | "kill" => Ok(Mode::Kill),
            "log" => Ok(Mode::Log),
            "off" => Ok(Mode::Off),
            other => Err(ConfineError::Mode(other.to_string())),
        }
    }
}

/// The process-wide confinement settings.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// The filters' action.
    pub mode: Mode,
    /// The VM has virtio-fs shares: the events thread keeps the
    /// passthrough server's capabilities.
    pub fs_shares: bool,
}

/// Why a thread could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// `BERTH_VMM_SECCOMP` has an unknown value.
    #[error("{MODE_ENV}={0}: expected kill, log or off")]
    Mode(String),
    /// The filter could not be built.
    #[error("building the seccomp filter of the {kind:?} thread: {source}")]
    Build {
        /// The thread kind.
        kind: ThreadKind,
        /// What seccompiler said.
        source: seccompiler::BackendError,
    },
    /// The kernel refused the filter.
    #[error("installing the seccomp filter of the {kind:?} thread: {source}")]
    Install {
        /// The thread kind.
        kind: ThreadKind,
        /// What seccompiler said.
        source: seccompiler::Error,
    },
    /// Dropping capabilities failed.
    #[error("dropping capabilities: {0}")]
    Caps(std::io::Error),
}

static POLICY: OnceLock<Policy> = OnceLock::new();

/// Turns confinement on for this process (the `berth-vmm` binary calls it
/// once, before the VM is built). Later calls are ignored.
pub fn enable(policy: Policy) {
    let _ = POLICY.set(policy);
}

/// The policy [`enable`] set, if any.
pub fn policy() -> Option<Policy> {
    POLICY.get().copied()
}

/// Confines the calling thread as a `kind` thread: drops capabilities,
/// sets `no_new_privs` and installs its seccomp filter. Does nothing when
/// [`enable`] was not called.
pub fn confine(kind: ThreadKind) -> Result<(), ConfineError> {
    let Some(policy) = policy() else {
        return Ok(());
    };
    let program = match policy.mode {
        Mode::Off => None,
        Mode::Kill => Some(build_filter(kind, SeccompAction::KillProcess)?),
        Mode::Log => Some(build_filter(kind, SeccompAction::Log)?),
    };
    install(kind, policy.fs_shares, program.as_ref())
}

/// What [`confine`] does to the calling thread once its filter is built:
/// drops capabilities, sets `no_new_privs`, installs `program` (none:
/// `BERTH_VMM_SECCOMP=off`). The tests' confined threads
/// ([`testing::run_confined`]) go through here too.
fn install(
    kind: ThreadKind,
    fs_shares: bool,
    program: Option<&BpfProgram>,
) -> Result<(), ConfineError> {
    drop_capabilities(&kept_capabilities(kind, fs_shares))?;
    set_no_new_privs()?;
    match program {
        Some(p) => {
            seccompiler::apply_filter(p).map_err(|source| ConfineError::Install { kind, source })
        }
        None => Ok(()),
    }
}

/// [`confine`], or end the process: a thread that should run confined
/// never runs without its filter.
pub fn confine_or_exit(kind: ThreadKind) {
    if let Err(e) = confine(kind) {
        eprintln!("berth-vmm: {e}");
        std::process::exit(1);
    }
}

/// The BPF program of `kind`'s filter: allow the listed system calls,
/// `mismatch` for the rest.
pub fn build_filter(kind: ThreadKind, mismatch: SeccompAction) -> Result<BpfProgram, ConfineError> {
    let build = |source| ConfineError::Build { kind, source };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in allowed_syscalls(kind) {
        let mut nr_rules = Vec::new();
        if nr == libc::SYS_prctl && kind == ThreadKind::Watch {
            // Only naming a new thread (std's spawn does it).
            let cond = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::PR_SET_NAME as u64,
            )
            .map_err(build)?;
            nr_rules.push(SeccompRule::new(vec![cond]).map_err(build)?);
        }
        if nr == libc::SYS_ioctl && kind == ThreadKind::Standby {
            // The restore sets the VM up: any KVM request (type 0xae),
            // and FIONBIO for its sockets.
            let kvm = SeccompCondition::new(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(0xff00),
                0xae00,
            )
            .map_err(build)?;
            nr_rules.push(SeccompRule::new(vec![kvm]).map_err(build)?);
        }
        if nr == libc::SYS_ioctl {
            // ioctl only with the request numbers the thread uses.
            for &(_, request) in allowed_ioctls(kind) {
                let cond =
                    SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
                        .map_err(build)?;
                nr_rules.push(SeccompRule::new(vec![cond]).map_err(build)?);
            }
        }
        rules.insert(nr, nr_rules);
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(build)?;
    let filter = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, arch).map_err(build)?;
    filter.try_into().map_err(build)
}

/// What every thread does: memory, locks, time, signals (the vCPU kick,
/// panics and aborts), its own end, writes to stderr and eventfds.
const COMMON: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_sigaltstack,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_getrandom,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
];

/// vCPU threads: KVM_RUN and the vCPU state ioctls (snapshots), console
/// output to its file, queue notifications and interrupts (eventfds).
const VCPU: &[i64] = &[libc::SYS_ioctl];

/// The main thread after the VM started: waits, takes snapshots (KVM
/// state ioctls; the directory, the memory file written sparsely after a
/// mincore look, the state file through a rename; the kernel's hash),
/// pauses vCPUs with a signal, flushes the console and exits. The
/// `berth-suspend` thread (`--suspend-to`) runs under this list too and
/// waits for its signal (`sigwait`).
const MAIN: &[i64] = &[
    libc::SYS_ioctl,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_openat,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_ftruncate,
    libc::SYS_pwrite64,
    libc::SYS_mincore,
    libc::SYS_statx,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
];

/// Socket calls of the vsock muxer (host Unix sockets) and the network
/// stack (host TCP/UDP sockets), and their epoll loops.
const SOCKETS: &[i64] = &[
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_shutdown,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
];

/// The network stack binds its UDP sockets (DNS and other datagrams).
const NET: &[i64] = &[libc::SYS_bind];

/// The device event loop: block I/O, the balloon's resident count, the vsock muxer's accepts, the
/// virtio-rng's getrandom (in COMMON), and the virtio-fs passthrough
/// server's file operations (fuse-backend-rs PassthroughFs, without file
/// handles, and berth's ShareFs).
const EVENTS: &[i64] = &[
    libc::SYS_accept4,
    // block
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_lseek,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    // balloon: how much of a reported block the host holds (its stats
    // file is written with pwrite64, above)
    libc::SYS_mincore,
    // virtio-fs
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_fstatfs,
    libc::SYS_getdents64,
    libc::SYS_readlinkat,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_fchownat,
    libc::SYS_fchmodat,
    libc::SYS_fchmod,
    libc::SYS_utimensat,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_dup,
    libc::SYS_umask,
    libc::SYS_geteuid,
    libc::SYS_getegid,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_flistxattr,
    libc::SYS_removexattr,
    libc::SYS_fremovexattr,
    libc::SYS_capget,
    libc::SYS_capset,
];

/// The host watcher of shared folders (measured with `strace -f` on
/// `fs::watch`'s stream tests, by thread): the `notify` watchers' creation
/// (an inotify instance, mio's epoll and its waker eventfd) and their
/// inotify loop thread (spawned here: clone3, then its setup: robust list,
/// rseq, the thread's name), which adds and removes watches while walking
/// folders and reads the objects of each event (lstat, a new directory's
/// entries); `canonicalize` of a folder before it is watched (readlink);
/// the agent connection (accept, reads, writes with a timeout). No socket
/// is made, nothing is written on the host.
const WATCH: &[i64] = &[
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_prctl,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_eventfd2,
    libc::SYS_openat,
    libc::SYS_getdents64,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_accept4,
    libc::SYS_fcntl,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_setsockopt,
];

/// The standby's main thread, besides every other kind's calls: it waits
/// for the request on its socket (poll, accept, a read timeout), removes
/// the socket, points its output at the request's log, then restores:
/// opens the snapshot, the disks and the vsock socket, maps the memory,
/// sets up the VM (KVM ioctls, eventfds), spawns the VM's threads, which
/// confine themselves (prctl, capabilities, seccomp).
const STANDBY: &[i64] = &[
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_accept,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_dup2,
    libc::SYS_dup3,
    libc::SYS_listen,
    libc::SYS_bind,
    libc::SYS_socketpair,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_prctl,
    libc::SYS_seccomp,
    libc::SYS_capget,
    libc::SYS_capset,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_getcwd,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fadvise64,
    libc::SYS_prlimit64,
    libc::SYS_getuid,
    libc::SYS_getgid,
    libc::SYS_uname,
];

/// ioctl request numbers (`<linux/kvm.h>` and `<asm-generic/ioctls.h>`
/// on x86_64; a stable kernel ABI).
pub mod ioctl {
    #![allow(missing_docs)]
    pub const KVM_RUN: u64 = 0xae80;
    pub const KVM_GET_REGS: u64 = 0x8090_ae81;
    pub const KVM_GET_SREGS: u64 = 0x8138_ae83;
    pub const KVM_TRANSLATE: u64 = 0xc018_ae85;
    pub const KVM_GET_MSRS: u64 = 0xc008_ae88;
    pub const KVM_GET_LAPIC: u64 = 0x8400_ae8e;
    pub const KVM_GET_CPUID2: u64 = 0xc008_ae91;
    pub const KVM_GET_MP_STATE: u64 = 0x8004_ae98;
    pub const KVM_GET_VCPU_EVENTS: u64 = 0x8040_ae9f;
    pub const KVM_GET_DEBUGREGS: u64 = 0x8080_aea1;
    pub const KVM_GET_TSC_KHZ: u64 = 0xaea3;
    pub const KVM_GET_XSAVE: u64 = 0x9000_aea4;
    pub const KVM_GET_XCRS: u64 = 0x8188_aea6;
    pub const KVM_GET_CLOCK: u64 = 0x8030_ae7c;
    pub const KVM_GET_IRQCHIP: u64 = 0xc208_ae62;
    pub const KVM_GET_PIT2: u64 = 0x8070_ae9f;
    pub const FIONBIO: u64 = 0x5421;
}

/// The ioctl requests a `kind` thread may make (name, number).
pub fn allowed_ioctls(kind: ThreadKind) -> &'static [(&'static str, u64)] {
    use ioctl::*;
    match kind {
        // KVM_RUN (also the settle before a snapshot), the vCPU state a
        // snapshot saves, and what a failure report reads (registers,
        // KVM_TRANSLATE of the instruction pointer).
        ThreadKind::Vcpu => &[
            ("KVM_RUN", KVM_RUN),
            ("KVM_GET_REGS", KVM_GET_REGS),
            ("KVM_GET_SREGS", KVM_GET_SREGS),
            ("KVM_TRANSLATE", KVM_TRANSLATE),
            ("KVM_GET_MSRS", KVM_GET_MSRS),
            ("KVM_GET_LAPIC", KVM_GET_LAPIC),
            ("KVM_GET_CPUID2", KVM_GET_CPUID2),
            ("KVM_GET_MP_STATE", KVM_GET_MP_STATE),
            ("KVM_GET_VCPU_EVENTS", KVM_GET_VCPU_EVENTS),
            ("KVM_GET_DEBUGREGS", KVM_GET_DEBUGREGS),
            ("KVM_GET_TSC_KHZ", KVM_GET_TSC_KHZ),
            ("KVM_GET_XSAVE", KVM_GET_XSAVE),
            ("KVM_GET_XCRS", KVM_GET_XCRS),
        ],
        // The VM state a snapshot saves.
        ThreadKind::Main => &[
            ("KVM_GET_CLOCK", KVM_GET_CLOCK),
            ("KVM_GET_IRQCHIP", KVM_GET_IRQCHIP),
            ("KVM_GET_PIT2", KVM_GET_PIT2),
        ],
        // Non-blocking host sockets; the standby also any KVM request
        // (a masked rule in `build_filter`).
        ThreadKind::Events | ThreadKind::Net | ThreadKind::Standby => &[("FIONBIO", FIONBIO)],
        ThreadKind::Watch => &[],
    }
}

/// The system calls `kind`'s filter allows (sorted, no duplicates).
pub fn allowed_syscalls(kind: ThreadKind) -> Vec<i64> {
    let extra: &[&[i64]] = match kind {
        ThreadKind::Main => &[MAIN],
        ThreadKind::Vcpu => &[VCPU],
        ThreadKind::Events => &[EVENTS, SOCKETS],
        ThreadKind::Net => &[NET, SOCKETS],
        ThreadKind::Watch => &[WATCH],
        ThreadKind::Standby => &[MAIN, VCPU, EVENTS, SOCKETS, NET, WATCH, STANDBY],
    };
    let mut all: Vec<i64> = COMMON
        .iter()
        .chain(extra.iter().flat_map(|s| s.iter()))
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Capability numbers (linux/capability.h).
mod cap {
    pub const DAC_OVERRIDE: u32 = 1;
    pub const FOWNER: u32 = 3;
}

/// The capabilities a `kind` thread keeps: the events thread of a VM with
/// virtio-fs shares keeps what a root passthrough server needs on shared
/// files that other users own: DAC_OVERRIDE (read, write and search them)
/// and FOWNER (set their times and modes and the owner-override xattr).
/// It needs no CHOWN (host owners never change: the guest's view lives in
/// the override xattr), no FSETID (set-id bits are refused), no
/// DAC_READ_SEARCH (no file handles). Every other thread keeps nothing.
pub fn kept_capabilities(kind: ThreadKind, fs_shares: bool) -> Vec<u32> {
    if kind == ThreadKind::Events && fs_shares {
        vec![cap::DAC_OVERRIDE, cap::FOWNER]
    } else {
        Vec::new()
    }
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Clears the calling thread's bounding set and keeps only `keep` in its
/// permitted and effective sets (inheritable and ambient cleared).
fn drop_capabilities(keep: &[u32]) -> Result<(), ConfineError> {
    let last = last_cap();
    for c in 0..=last {
        // SAFETY: prctl(PR_CAPBSET_READ/DROP) takes plain integers.
        unsafe {
            if libc::prctl(libc::PR_CAPBSET_READ, c as libc::c_ulong, 0, 0, 0) == 1
                && libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) != 0
            {
                let e = std::io::Error::last_os_error();
                // EPERM: no CAP_SETPCAP (an unprivileged VMM), nothing to drop.
                if e.raw_os_error() != Some(libc::EPERM) {
                    return Err(ConfineError::Caps(e));
                }
            }
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    let mut mask = [0u32; 2];
    for &c in keep {
        mask[(c / 32) as usize] |= 1 << (c % 32);
    }
    // capget first: keep only what the thread has now.
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as capget(2) wants for
    // version 3.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(ConfineError::Caps(std::io::Error::last_os_error()));
    }
    for (d, m) in data.iter_mut().zip(mask) {
        d.permitted &= m;
        d.effective &= m;
        d.inheritable = 0;
    }
    // SAFETY: as above; pid 0 is the calling thread.
    if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
        return Err(ConfineError::Caps(std::io::Error::last_os_error()));
    }
    Ok(())
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn set_no_new_privs() -> Result<(), ConfineError> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(ConfineError::Caps(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The test-only hook (cargo feature `test-hooks`): with
/// `BERTH_VMM_TEST_FORBIDDEN_SYSCALL=vcpu` (or `events`, `net`, `main`,
/// `standby`), the first thread of that kind makes a
/// system call outside its filter right after confining itself.
#[cfg(feature = "test-hooks")]
pub fn test_hook_forbidden_syscall(kind: ThreadKind) {
    let wanted = match std::env::var("BERTH_VMM_TEST_FORBIDDEN_SYSCALL").as_deref() {
        Ok("vcpu") => ThreadKind::Vcpu,
        Ok("events") => ThreadKind::Events,
        Ok("net") => ThreadKind::Net,
        Ok("watch") => ThreadKind::Watch,
        Ok("main") => ThreadKind::Main,
        Ok("standby") => ThreadKind::Standby,
        _ => return,
    };
    if wanted == kind {
        eprintln!("berth-vmm: test hook: {kind:?} thread calls getppid (forbidden)");
        // SAFETY: getppid has no arguments and no effects.
        unsafe { libc::syscall(libc::SYS_getppid) };
        eprintln!("berth-vmm: test hook: {kind:?} thread survived getppid");
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("").unwrap(), Mode::Kill);
        assert_eq!(Mode::parse("kill").unwrap(), Mode::Kill);
        assert_eq!(Mode::parse("log").unwrap(), Mode::Log);
        assert_eq!(Mode::parse("off").unwrap(), Mode::Off);
        assert!(Mode::parse("allow").is_err());
    }

    #[test]
    fn every_filter_builds_and_forbids_what_no_thread_needs() {
        for kind in ThreadKind::ALL {
            let prog = build_filter(kind, SeccompAction::KillProcess).unwrap();
            assert!(!prog.is_empty());
            let allowed = allowed_syscalls(kind);
            for forbidden in [
                libc::SYS_execve,
                libc::SYS_execveat,
                libc::SYS_ptrace,
                libc::SYS_fork,
                libc::SYS_vfork,
                libc::SYS_mount,
                libc::SYS_init_module,
                libc::SYS_getppid,
                libc::SYS_setuid,
                libc::SYS_unshare,
                libc::SYS_bpf,
            ] {
                assert!(!allowed.contains(&forbidden), "{kind:?} allows {forbidden}");
            }
        }
        // Only the device threads open sockets; only the event loop works
        // on shared files; vCPUs open nothing.
        let vcpu = allowed_syscalls(ThreadKind::Vcpu);
        for nr in [libc::SYS_socket, libc::SYS_openat, libc::SYS_connect] {
            assert!(!vcpu.contains(&nr));
        }
        assert!(!allowed_syscalls(ThreadKind::Net).contains(&libc::SYS_openat));
        assert!(!allowed_syscalls(ThreadKind::Main).contains(&libc::SYS_socket));
    }

    /// ioctl is allowed only with listed requests: a thread with ioctl in
    /// its list has requests, and no thread may make KVM calls that change
    /// the VM (KVM_SET_*, KVM_CREATE_VCPU, KVM_SET_USER_MEMORY_REGION).
    #[test]
    fn ioctls_are_narrowed_to_their_requests() {
        for kind in ThreadKind::ALL {
            let has_ioctl = allowed_syscalls(kind).contains(&libc::SYS_ioctl);
            assert_eq!(has_ioctl, !allowed_ioctls(kind).is_empty(), "{kind:?}");
            for &(name, nr) in allowed_ioctls(kind) {
                assert!(
                    name.starts_with("KVM_GET")
                        || name == "KVM_RUN"
                        || name == "KVM_TRANSLATE"
                        || name == "FIONBIO",
                    "{name}"
                );
                // KVMIO (0xae) requests are KVM's; FIONBIO is the only other.
                assert!((nr >> 8) & 0xff == 0xae || nr == ioctl::FIONBIO);
            }
        }
        assert!(!allowed_ioctls(ThreadKind::Vcpu).is_empty());
    }

    #[test]
    fn only_the_events_thread_of_a_vm_with_shares_keeps_capabilities() {
        for kind in ThreadKind::ALL {
            assert!(kept_capabilities(kind, false).is_empty());
            assert_eq!(
                kept_capabilities(kind, true).is_empty(),
                kind != ThreadKind::Events
            );
        }
    }

    /// The real filters, with EPERM instead of a kill so that the test
    /// survives: what a kind may do works, the rest is refused, and ioctl
    /// is narrowed to its requests.
    #[test]
    fn the_watch_filter_names_threads_and_makes_nothing_on_the_host() {
        let watch = allowed_syscalls(ThreadKind::Watch);
        for nr in [
            libc::SYS_socket,
            libc::SYS_ioctl,
            libc::SYS_bind,
            libc::SYS_unlinkat,
            libc::SYS_mkdirat,
            libc::SYS_renameat2,
            libc::SYS_fchmodat,
            libc::SYS_seccomp,
            libc::SYS_capset,
        ] {
            assert!(!watch.contains(&nr), "watch allows {nr}");
        }
        let errno = || std::io::Error::last_os_error().raw_os_error();
        let got = std::thread::spawn(move || {
            let prog =
                build_filter(ThreadKind::Watch, SeccompAction::Errno(libc::EPERM as u32)).unwrap();
            seccompiler::apply_filter(&prog).unwrap();
            let mut out = Vec::new();
            // A thread spawned under the filter (as notify's is) works.
            let child = std::thread::Builder::new()
                .name("child".into())
                .spawn(|| std::fs::read_dir("/").is_ok())
                .map(|h| h.join().unwrap_or(false));
            out.push(("spawn + read_dir", child.unwrap_or(false), None));
            // SAFETY: prctl calls that only read or name this thread.
            unsafe {
                let r = libc::prctl(libc::PR_SET_NAME, c"w".as_ptr());
                out.push(("PR_SET_NAME", r == 0, errno()));
                let r = libc::prctl(libc::PR_GET_DUMPABLE);
                out.push((
                    "PR_GET_DUMPABLE refused",
                    r == -1 && errno() == Some(libc::EPERM),
                    errno(),
                ));
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                out.push((
                    "socket refused",
                    fd == -1 && errno() == Some(libc::EPERM),
                    errno(),
                ));
            }
            out
        })
        .join()
        .unwrap();
        for (what, ok, e) in got {
            assert!(ok, "watch: {what} ({e:?})");
        }
    }

    #[test]
    fn real_filters_allow_their_lists_and_refuse_the_rest() {
        let errno = || std::io::Error::last_os_error().raw_os_error();
        let events = std::thread::spawn(move || {
            let prog =
                build_filter(ThreadKind::Events, SeccompAction::Errno(libc::EPERM as u32)).unwrap();
            seccompiler::apply_filter(&prog).unwrap();
            let mut out = Vec::new();
            // SAFETY: plain system calls on a socket this thread owns.
            unsafe {
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                out.push(("socket", fd >= 0, errno()));
                let mut one: libc::c_int = 1;
                let r = libc::ioctl(fd, libc::FIONBIO, &mut one);
                out.push(("FIONBIO", r == 0, errno()));
                let r = libc::ioctl(fd, libc::FIONREAD, &mut one);
                out.push((
                    "FIONREAD refused",
                    r == -1 && errno() == Some(libc::EPERM),
                    errno(),
                ));
                let r = libc::syscall(libc::SYS_getppid);
                out.push((
                    "getppid refused",
                    r == -1 && errno() == Some(libc::EPERM),
                    errno(),
                ));
                let r = libc::syscall(libc::SYS_execve, c"/bin/true".as_ptr(), 0, 0);
                out.push((
                    "execve refused",
                    r == -1 && errno() == Some(libc::EPERM),
                    errno(),
                ));
                libc::close(fd);
            }
            let opened = std::fs::File::open("/proc/self/status").is_ok();
            out.push(("open", opened, None));
            out
        })
        .join()
        .unwrap();
        for (what, ok, e) in events {
            assert!(ok, "events: {what} ({e:?})");
        }
        let vcpu = std::thread::spawn(move || {
            let prog =
                build_filter(ThreadKind::Vcpu, SeccompAction::Errno(libc::EPERM as u32)).unwrap();
            seccompiler::apply_filter(&prog).unwrap();
            // SAFETY: plain system calls; a refused socket returns -1.
            let sock = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            let sock_errno = errno();
            let open = std::fs::File::open("/proc/self/status").map_err(|e| e.raw_os_error());
            // SAFETY: KVM_RUN on fd 0 (stdin) is a harmless ENOTTY if it
            // passes the filter; FIONBIO on it must not pass.
            let run = unsafe { libc::ioctl(0, ioctl::KVM_RUN as _, 0) };
            let run_errno = errno();
            let mut one: libc::c_int = 1;
            // SAFETY: as above.
            let nb = unsafe { libc::ioctl(0, libc::FIONBIO, &mut one) };
            let nb_errno = errno();
            (sock, sock_errno, open.err(), run, run_errno, nb, nb_errno)
        })
        .join()
        .unwrap();
        assert_eq!((vcpu.0, vcpu.1), (-1, Some(libc::EPERM)), "vcpu socket");
        assert_eq!(vcpu.2, Some(Some(libc::EPERM)), "vcpu open");
        assert_eq!(vcpu.3, -1);
        assert_ne!(vcpu.4, Some(libc::EPERM), "KVM_RUN passes the filter");
        assert_eq!((vcpu.5, vcpu.6), (-1, Some(libc::EPERM)), "vcpu FIONBIO");
    }

    /// The standby's list holds every kind's (the VM's threads stack
    /// their filters on it after the restore), and still refuses what no
    /// VMM thread needs; it keeps no capabilities.
    #[test]
    fn the_standby_filter_covers_every_kind_and_forbids_the_rest() {
        let standby = allowed_syscalls(ThreadKind::Standby);
        for kind in ThreadKind::ALL {
            for nr in allowed_syscalls(kind) {
                assert!(standby.contains(&nr), "standby lacks {kind:?}'s {nr}");
            }
        }
        for forbidden in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_mount,
            libc::SYS_init_module,
            libc::SYS_getppid,
            libc::SYS_setuid,
            libc::SYS_unshare,
            libc::SYS_bpf,
            libc::SYS_kill,
        ] {
            assert!(!standby.contains(&forbidden), "standby allows {forbidden}");
        }
        assert!(kept_capabilities(ThreadKind::Standby, false).is_empty());
        assert!(kept_capabilities(ThreadKind::Standby, true).is_empty());
        assert!(
            !build_filter(ThreadKind::Standby, SeccompAction::KillProcess)
                .unwrap()
                .is_empty()
        );
    }

    /// The real standby filter (EPERM instead of a kill): KVM requests and
    /// FIONBIO pass, other ioctls and calls outside the list do not.
    #[test]
    fn the_standby_filter_passes_kvm_ioctls_only() {
        let errno = || std::io::Error::last_os_error().raw_os_error();
        let got = std::thread::spawn(move || {
            let prog = build_filter(
                ThreadKind::Standby,
                SeccompAction::Errno(libc::EPERM as u32),
            )
            .unwrap();
            seccompiler::apply_filter(&prog).unwrap();
            // SAFETY: plain system calls on a socket this thread owns; KVM
            // requests on a Unix socket fail (not with EPERM) once past
            // the filter.
            unsafe {
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let sock = (fd >= 0, errno());
                let run = (libc::ioctl(fd, ioctl::KVM_RUN as _, 0), errno());
                // KVM_SET_REGS: the restore's kind of request.
                let set = (libc::ioctl(fd, 0x4090_ae82, 0), errno());
                let mut one: libc::c_int = 1;
                let nb = libc::ioctl(fd, libc::FIONBIO, &mut one);
                let fionread = (libc::ioctl(fd, libc::FIONREAD, &mut one), errno());
                let ppid = (libc::syscall(libc::SYS_getppid), errno());
                let exec = (
                    libc::syscall(libc::SYS_execve, c"/bin/true".as_ptr(), 0, 0),
                    errno(),
                );
                libc::close(fd);
                let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
                (
                    sock,
                    run,
                    set,
                    nb,
                    fionread,
                    ppid,
                    exec,
                    status.contains("Seccomp:\t2"),
                )
            }
        })
        .join()
        .unwrap();
        let (sock, run, set, nb, fionread, ppid, exec, filtered) = got;
        assert!(sock.0, "socket {sock:?}");
        assert_eq!(run.0, -1);
        assert_ne!(run.1, Some(libc::EPERM), "KVM_RUN passes the filter");
        assert_eq!(set.0, -1);
        assert_ne!(set.1, Some(libc::EPERM), "KVM_SET_REGS passes the filter");
        assert_eq!(nb, 0, "FIONBIO");
        assert_eq!(fionread, (-1, Some(libc::EPERM)), "FIONREAD refused");
        assert_eq!(ppid, (-1, Some(libc::EPERM)), "getppid refused");
        assert_eq!(exec, (-1, Some(libc::EPERM)), "execve refused");
        assert!(filtered);
    }

    /// A child thread confined with a log-free kill filter that allows
    /// everything but getppid: the filter really applies per thread.
    #[test]
    fn a_filter_applies_to_its_thread_only() {
        let t = std::thread::spawn(|| {
            // Errno instead of kill, so the test process survives.
            let rules: BTreeMap<i64, Vec<SeccompRule>> = [(libc::SYS_getppid, Vec::new())].into();
            let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
            let f = SeccompFilter::new(
                rules,
                SeccompAction::Allow,
                SeccompAction::Errno(libc::EPERM as u32),
                arch,
            )
            .unwrap();
            let prog: BpfProgram = f.try_into().unwrap();
            seccompiler::apply_filter(&prog).unwrap();
            // SAFETY: getppid has no arguments.
            let r = unsafe { libc::syscall(libc::SYS_getppid) };
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            (r, status.contains("Seccomp:\t2"))
        });
        let (r, filtered) = t.join().unwrap();
        assert_eq!(r, -1);
        assert!(filtered);
        // SAFETY: as above.
        assert!(unsafe { libc::syscall(libc::SYS_getppid) } > 0);
    }
}
