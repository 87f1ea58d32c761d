//! Seccomp: docker's default profile as our own table, docker's JSON
//! profile format (`--security-opt seccomp=PROFILE.json`), and the
//! resolution of either into the OCI spec's `linux.seccomp` for one
//! container (its capabilities, this machine's architecture and kernel).
//!
//! # What the default profile matches
//! The profile moby ships (`profiles/seccomp`, docker 28/29):
//! - default action `SCMP_ACT_ERRNO` with `EPERM`;
//! - the same unconditional allow-list ([`ALLOWED`]), ptrace and
//!   `process_vm_*` from kernel 4.8 on;
//! - `socket` only for the address families docker allows (all but
//!   `AF_ALG`, `AF_VSOCK` and the families the kernel removed);
//! - `personality` only with the personas 0, `PER_LINUX32`,
//!   `UNAME26`, `UNAME26|PER_LINUX32` and the query `0xffffffff`;
//! - the capability-gated groups ([`CAP_GATED`]): `CAP_SYS_ADMIN` unlocks
//!   mount, unshare, setns, bpf, the new mount API, ... ; `CAP_SYS_BOOT`
//!   reboot; `CAP_SYS_MODULE` the module calls; `CAP_SYS_PTRACE` ptrace,
//!   kcmp, `process_vm_*`; `CAP_BPF` bpf; `CAP_PERFMON` perf_event_open;
//!   and the rest as docker has them;
//! - without `CAP_SYS_ADMIN`: `clone` only when its flags ask for no new
//!   namespace, and `clone3` fails with `ENOSYS` (its flags sit behind a
//!   pointer seccomp cannot read, so libc falls back to `clone`);
//! - per-architecture extras (`arch_prctl`, `modify_ldt` on x86;
//!   the ARM cache and TLS calls on arm64).
//!
//! # Where it deliberately differs
//! - Only the architectures berth runs on (x86_64 with its i386/x32
//!   sub-architectures, aarch64 with arm): docker's table also carries
//!   mips, ppc64le, s390x, riscv64 and loongarch64 entries, including the
//!   s390 `clone` argument order.
//! - A custom profile is checked when the container is created, not when
//!   it starts: a malformed profile or an unknown action, operator,
//!   architecture or flag is refused at once with the reason.
//! - `SCMP_ACT_NOTIFY` and `listenerPath` are refused: berth has no
//!   seccomp agent to hand the notification descriptor to.
//! - Syscall names this machine's libseccomp does not know are skipped
//!   (as runc does); on an older libseccomp that only narrows what is
//!   allowed.
//!
//! # How it is applied
//! Not through the spec's `linux.seccomp`: libcontainer 0.7 compiles that
//! afresh in every container's init (about 40 ms for this profile on
//! three architectures on the 2-core dev machine), gives processes that
//! join a container (`exec`, health probes) no filter at all, and hands
//! `SCMP_CMP_MASKED_EQ` to libseccomp with mask and value swapped (which
//! turned docker's clone rule into "allow every clone"). The agent
//! compiles each distinct filter once with libseccomp ([`compile`],
//! cached by hash in the data root) and the container's executor loads
//! the program right before the command runs, for the container's own
//! process and for every process that joins it
//! (`security::SeccompExecutor`).

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;
use std::str::FromStr;

/// The largest custom profile accepted, in bytes of JSON.
pub const MAX_PROFILE_BYTES: usize = 1 << 20;
/// At most this many syscall entries in a custom profile.
const MAX_RULES: usize = 4096;
/// At most this many names in all entries of a custom profile together.
const MAX_NAMES: usize = 65536;

/// A profile in docker's JSON format (`types.Seccomp`). Unknown fields
/// are ignored, as docker's decoder ignores them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(default)]
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub listener_path: String,
}

/// One `archMap` entry: an architecture and the ones it can also run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Vec<String>,
}

/// One `syscalls` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The old single-name form; docker refuses it beside `names`.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub names: Vec<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<Arg>,
    #[serde(default)]
    pub includes: Option<Filter>,
    #[serde(default)]
    pub excludes: Option<Filter>,
}

/// An argument comparison.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    #[serde(default)]
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// When an entry applies: every listed capability held (`includes`) or
/// any of them held (`excludes`), the architecture (Go's names: `amd64`,
/// `arm64`, ...), and the kernel version (`"4.8"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default)]
    pub caps: Vec<String>,
    #[serde(default)]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// A profile that cannot be used, with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    #[error("seccomp profile is larger than {MAX_PROFILE_BYTES} bytes")]
    TooLarge,
    #[error("decoding seccomp profile failed: {0}")]
    Decode(String),
    #[error("seccomp profile: unknown action {0:?}")]
    Action(String),
    #[error("seccomp profile: unknown operator {0:?}")]
    Operator(String),
    #[error("seccomp profile: unknown architecture {0:?}")]
    Arch(String),
    #[error("seccomp profile: unknown flag {0:?}")]
    Flag(String),
    #[error("seccomp profile: {0}")]
    Invalid(String),
}

/// The unconditional allow-list (docker's first entry).
pub const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "riscv_hwprobe",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Syscalls a capability unlocks (each group needs its one capability).
pub const CAP_GATED: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Address families `socket` may create: every family the kernel still
/// has except `AF_ALG` (38, the kernel crypto API) and `AF_VSOCK` (40,
/// host/guest sockets, global across network namespaces).
const SOCKET_FAMILIES: &[u64] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, // AF_UNIX .. AF_ROSE
    13, 14, 15, 16, 17, 18, // AF_NETBEUI .. AF_ASH (no AF_DECnet 12)
    21, 22, // AF_RDS, AF_SNA (no AF_ECONET 19, AF_ATMSVC 20)
    24, // AF_PPPOX (no AF_IRDA 23)
    26, 27, 28, 29, 30, 31, 32, 33, // AF_LLC .. AF_RXRPC (no AF_WANPIPE 25)
    35, 36, // AF_PHONET, AF_IEEE802154 (no AF_ISDN 34)
    39, // AF_NFC (no AF_CAIF 37, AF_ALG 38)
    41, 42, 43, 44, 45, // AF_KCM .. AF_MCTP (no AF_VSOCK 40)
];

/// The namespace flags of `clone` (`CLONE_NEWNS | NEWUTS | NEWIPC |
/// NEWUSER | NEWPID | NEWNET | NEWCGROUP`).
const CLONE_NS_FLAGS: u64 =
    0x0002_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x0200_0000;

fn rule(names: &[&str], action: &str) -> Rule {
    Rule {
        names: names.iter().map(|s| s.to_string()).collect(),
        action: action.into(),
        ..Default::default()
    }
}

fn allow_if(names: &[&str], includes: Filter) -> Rule {
    Rule {
        includes: Some(includes),
        ..rule(names, "SCMP_ACT_ALLOW")
    }
}

fn with_arg(names: &[&str], index: u32, value: u64, value_two: u64, op: &str) -> Rule {
    Rule {
        args: vec![Arg {
            index,
            value,
            value_two,
            op: op.into(),
        }],
        ..rule(names, "SCMP_ACT_ALLOW")
    }
}

fn caps(list: &[&str]) -> Filter {
    Filter {
        caps: list.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn arches(list: &[&str]) -> Filter {
    Filter {
        arches: list.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// docker's default profile, as a [`Profile`] to resolve like any other.
pub fn default_profile() -> Profile {
    let mut rules = vec![rule(ALLOWED, "SCMP_ACT_ALLOW")];
    rules.push(allow_if(
        &["process_vm_readv", "process_vm_writev", "ptrace"],
        Filter {
            min_kernel: Some("4.8".into()),
            ..Default::default()
        },
    ));
    // The families from AF_UNIX up to the first gap as one `<` rule, the
    // rest one by one (a rule cannot bound one argument from both sides).
    let run = SOCKET_FAMILIES
        .iter()
        .enumerate()
        .take_while(|(i, f)| **f == *i as u64 + 1)
        .count();
    rules.push(with_arg(&["socket"], 0, run as u64 + 1, 0, "SCMP_CMP_LT"));
    for f in &SOCKET_FAMILIES[run..] {
        rules.push(with_arg(&["socket"], 0, *f, 0, "SCMP_CMP_EQ"));
    }
    for persona in [0, 0x0008, 0x20000, 0x20008, 0xffff_ffff] {
        rules.push(with_arg(&["personality"], 0, persona, 0, "SCMP_CMP_EQ"));
    }
    rules.push(allow_if(
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        arches(&["arm", "arm64"]),
    ));
    rules.push(allow_if(&["arch_prctl"], arches(&["amd64", "x32"])));
    rules.push(allow_if(&["modify_ldt"], arches(&["amd64", "x32", "x86"])));
    for (cap, names) in CAP_GATED {
        rules.push(allow_if(names, caps(&[cap])));
    }
    // Without CAP_SYS_ADMIN: clone without namespace flags only, and
    // clone3 (flags behind a pointer) answers ENOSYS so libc uses clone.
    rules.push(Rule {
        excludes: Some(caps(&["CAP_SYS_ADMIN"])),
        ..with_arg(&["clone"], 0, CLONE_NS_FLAGS, 0, "SCMP_CMP_MASKED_EQ")
    });
    rules.push(Rule {
        errno_ret: Some(libc::ENOSYS as u32),
        excludes: Some(caps(&["CAP_SYS_ADMIN"])),
        ..rule(&["clone3"], "SCMP_ACT_ERRNO")
    });
    Profile {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(libc::EPERM as u32),
        arch_map: vec![
            ArchMap {
                architecture: "SCMP_ARCH_X86_64".into(),
                sub_architectures: vec!["SCMP_ARCH_X86".into(), "SCMP_ARCH_X32".into()],
            },
            ArchMap {
                architecture: "SCMP_ARCH_AARCH64".into(),
                sub_architectures: vec!["SCMP_ARCH_ARM".into()],
            },
        ],
        syscalls: rules,
        ..Default::default()
    }
}

/// Parses a custom profile (docker's JSON), with the size and count
/// limits above.
pub fn parse_profile(json: &str) -> Result<Profile, ProfileError> {
    if json.len() > MAX_PROFILE_BYTES {
        return Err(ProfileError::TooLarge);
    }
    let p: Profile = serde_json::from_str(json).map_err(|e| ProfileError::Decode(e.to_string()))?;
    if p.syscalls.len() > MAX_RULES {
        return Err(ProfileError::Invalid(format!(
            "more than {MAX_RULES} syscall entries"
        )));
    }
    let names: usize = p.syscalls.iter().map(|r| r.names.len() + 1).sum();
    if names > MAX_NAMES {
        return Err(ProfileError::Invalid(format!(
            "more than {MAX_NAMES} syscall names"
        )));
    }
    Ok(p)
}

/// Where the container runs: Go's architecture name (docker's
/// `includes.arches`), the seccomp architecture, and the kernel version.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub go_arch: &'static str,
    pub arch: Arch,
    pub kernel: (u32, u32),
}

impl Target {
    /// This machine.
    pub fn native() -> Target {
        let (go_arch, arch) = if cfg!(target_arch = "aarch64") {
            ("arm64", Arch::ScmpArchAarch64)
        } else {
            ("amd64", Arch::ScmpArchX86_64)
        };
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Target {
            go_arch,
            arch,
            kernel: parse_kernel(&release).unwrap_or((0, 0)),
        }
    }
}

/// `6.18.44-foo` or `4.8` -> (6, 18).
fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn action(s: &str) -> Result<LinuxSeccompAction, ProfileError> {
    let a = LinuxSeccompAction::from_str(s).map_err(|_| ProfileError::Action(s.into()))?;
    if a == LinuxSeccompAction::ScmpActNotify {
        return Err(ProfileError::Invalid(
            "SCMP_ACT_NOTIFY is not supported (berth has no seccomp agent)".into(),
        ));
    }
    Ok(a)
}

fn arch(s: &str) -> Result<Arch, ProfileError> {
    Arch::from_str(s).map_err(|_| ProfileError::Arch(s.into()))
}

fn errno(e: Option<u32>) -> Result<Option<u32>, ProfileError> {
    match e {
        Some(n) if n > 4095 => Err(ProfileError::Invalid(format!(
            "errnoRet {n} is not an errno (at most 4095)"
        ))),
        other => Ok(other),
    }
}

/// Turns `profile` into the OCI spec's seccomp section for a container
/// whose bounding set is `caps`, as docker's `setupSeccomp` does: entries
/// whose `includes`/`excludes` do not hold here are left out. `None` when
/// the profile has no default action (docker: seccomp disabled).
pub fn resolve(
    profile: &Profile,
    caps: &[String],
    target: Target,
) -> Result<Option<LinuxSeccomp>, ProfileError> {
    if profile.default_action.is_empty() {
        return Ok(None);
    }
    if !profile.listener_path.is_empty() {
        return Err(ProfileError::Invalid(
            "listenerPath is not supported (berth has no seccomp agent)".into(),
        ));
    }
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        return Err(ProfileError::Invalid(
            "both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'".into(),
        ));
    }
    let mut architectures = profile
        .architectures
        .iter()
        .map(|a| arch(a))
        .collect::<Result<Vec<_>, _>>()?;
    for m in &profile.arch_map {
        let main = arch(&m.architecture)?;
        let subs = m
            .sub_architectures
            .iter()
            .map(|a| arch(a))
            .collect::<Result<Vec<_>, _>>()?;
        if main == target.arch {
            architectures.push(main);
            architectures.extend(subs);
        }
    }
    let flags = profile
        .flags
        .iter()
        .map(|f| LinuxSeccompFilterFlag::from_str(f).map_err(|_| ProfileError::Flag(f.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let has = |c: &String| caps.contains(c);
    let kernel_at_least = |v: &str| -> Result<bool, ProfileError> {
        let want = parse_kernel(v)
            .ok_or_else(|| ProfileError::Invalid(format!("invalid minKernel {v:?}")))?;
        Ok(target.kernel >= want)
    };
    let mut syscalls = Vec::new();
    for r in &profile.syscalls {
        // Everything is checked, also in entries that do not apply here.
        let act = action(&r.action)?;
        let errno_ret = errno(r.errno_ret)?;
        if !r.name.is_empty() && !r.names.is_empty() {
            return Err(ProfileError::Invalid("use either 'name' or 'names'".into()));
        }
        if r.args.len() > 6 {
            return Err(ProfileError::Invalid(
                "a syscall has at most 6 arguments".into(),
            ));
        }
        let mut args = Vec::with_capacity(r.args.len());
        for a in &r.args {
            if a.index > 5 {
                return Err(ProfileError::Invalid(format!(
                    "argument index {} is out of range (0-5)",
                    a.index
                )));
            }
            let op = LinuxSeccompOperator::from_str(&a.op)
                .map_err(|_| ProfileError::Operator(a.op.clone()))?;
            let arg = LinuxSeccompArgBuilder::default()
                .index(a.index as usize)
                .value(a.value)
                .value_two(a.value_two)
                .op(op)
                .build()
                .map_err(|e| ProfileError::Invalid(e.to_string()))?;
            args.push(arg);
        }
        let mut applies = true;
        if let Some(x) = &r.excludes {
            if x.arches.iter().any(|a| a == target.go_arch) || x.caps.iter().any(has) {
                applies = false;
            }
            if let Some(k) = &x.min_kernel {
                if kernel_at_least(k)? {
                    applies = false;
                }
            }
        }
        if let Some(i) = &r.includes {
            if !i.arches.is_empty() && !i.arches.iter().any(|a| a == target.go_arch) {
                applies = false;
            }
            if !i.caps.iter().all(has) {
                applies = false;
            }
            if let Some(k) = &i.min_kernel {
                if !kernel_at_least(k)? {
                    applies = false;
                }
            }
        }
        if !applies {
            continue;
        }
        let names = if r.name.is_empty() {
            r.names.clone()
        } else {
            vec![r.name.clone()]
        };
        let mut call = LinuxSyscall::default();
        call.set_names(names);
        call.set_action(act);
        call.set_errno_ret(errno_ret);
        call.set_args((!args.is_empty()).then_some(args));
        syscalls.push(call);
    }
    let mut out = LinuxSeccomp::default();
    out.set_default_action(action(&profile.default_action)?);
    out.set_default_errno_ret(errno(profile.default_errno_ret)?);
    out.set_architectures((!architectures.is_empty()).then_some(architectures));
    out.set_flags((!flags.is_empty()).then_some(flags));
    out.set_syscalls(Some(syscalls));
    Ok(Some(out))
}

/// A filter compiled to classic BPF, with the `seccomp(2)` flags to load
/// it with.
#[derive(Clone)]
pub struct Compiled {
    pub program: Vec<libc::sock_filter>,
    pub flags: libc::c_uint,
}

/// The longest program the kernel loads (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

fn scmp_action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
    let e = errno.map_or(libc::EPERM, |e| e as i32);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(e),
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(u16::try_from(e).map_err(|_| format!("trace value {e}"))?)
        }
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => return Err("SCMP_ACT_NOTIFY".into()),
    })
}

fn scmp_compare(arg: &oci_spec::runtime::LinuxSeccompArg) -> ScmpArgCompare {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // The OCI spec (and runc): `value` is the mask, `valueTwo` the
        // value the masked argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                arg.index() as u32,
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            )
        }
    };
    ScmpArgCompare::new(arg.index() as u32, op, arg.value())
}

/// Compiles a resolved filter with libseccomp, as runc's and
/// libcontainer's loaders do (a repeated argument index becomes one rule
/// per comparison; names this libseccomp does not know are skipped; a
/// rule with the default action is left out), but to a BPF program
/// instead of loading it, so the agent compiles each distinct filter once
/// ([`compile_cached`]) rather than every container's init doing it (tens
/// of milliseconds for docker's profile on three architectures).
pub fn compile(filter: &LinuxSeccomp) -> Result<Compiled, String> {
    let fail = |what: &str, e: libseccomp::error::SeccompError| format!("seccomp: {what}: {e}");
    let default = scmp_action(filter.default_action(), filter.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| fail("new filter", e))?;
    // A binary tree over the syscall numbers instead of libseccomp's
    // default linear list: docker's profile allows ~400 calls, and every
    // syscall of the container runs the filter. Where the guest kernel is
    // emulated (kvm_pvm) and has no BPF JIT, each filter instruction is
    // emulated guest work: for docker's profile the tree runs 15
    // instructions per syscall on average (46 at worst), the list 311
    // (636). Same verdicts (the unit tests below check them).
    ctx.set_ctl_optimize(2)
        .map_err(|e| fail("optimization level", e))?;
    for arch in filter.architectures().iter().flatten() {
        let name = serde_json::to_value(arch)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let a = ScmpArch::from_str(&name).map_err(|e| fail(&format!("architecture {name}"), e))?;
        ctx.add_arch(a)
            .map_err(|e| fail("adding an architecture", e))?;
    }
    let mut flags: libc::c_uint = 0;
    for f in filter.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(
                    "seccomp: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs a listener".into(),
                )
            }
        };
    }
    for call in filter.syscalls().iter().flatten() {
        let action = scmp_action(call.action(), call.errno_ret())?;
        if action == default {
            continue;
        }
        let cmps: Vec<ScmpArgCompare> = call.args().iter().flatten().map(scmp_compare).collect();
        let mut indexes: Vec<usize> = call.args().iter().flatten().map(|a| a.index()).collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in call.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            if cmps.is_empty() {
                ctx.add_rule(action, sc)
                    .map_err(|e| fail(&format!("rule for {name}"), e))?;
            } else if repeated {
                for c in &cmps {
                    ctx.add_rule_conditional(action, sc, std::slice::from_ref(c))
                        .map_err(|e| fail(&format!("rule for {name}"), e))?;
                }
            } else {
                ctx.add_rule_conditional(action, sc, &cmps)
                    .map_err(|e| fail(&format!("rule for {name}"), e))?;
            }
        }
    }
    let mut file = tempfile_for_export()?;
    ctx.export_bpf(&file).map_err(|e| fail("exporting", e))?;
    use std::io::{Read, Seek};
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|()| file.read_to_end(&mut bytes))
        .map_err(|e| format!("seccomp: reading the program: {e}"))?;
    Ok(Compiled {
        program: decode(&bytes)?,
        flags,
    })
}

/// An anonymous file for libseccomp's export.
fn tempfile_for_export() -> Result<std::fs::File, String> {
    let fd = nix::sys::memfd::memfd_create(
        c"berth-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| format!("seccomp: memfd: {e}"))?;
    Ok(std::fs::File::from(fd))
}

/// Raw `struct sock_filter`s (8 bytes each, this machine's byte order).
fn decode(bytes: &[u8]) -> Result<Vec<libc::sock_filter>, String> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(8) || bytes.len() / 8 > MAX_INSNS {
        return Err(format!(
            "seccomp: a program of {} bytes cannot be loaded",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// [`compile`], kept in `dir` under the hash of the filter (and this
/// agent build), so each distinct filter is compiled once.
pub fn compile_cached(filter: &LinuxSeccomp, dir: &std::path::Path) -> Result<Compiled, String> {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(filter).map_err(|e| e.to_string())?;
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(std::env::consts::ARCH.as_bytes());
    // How `compile` lays the program out: a change makes a new entry.
    h.update(b"layout: binary tree (optimize 2)");
    h.update(&json);
    let path = dir.join(format!("{}.bpf", hex::encode(h.finalize())));
    let flags_path = path.with_extension("flags");
    if let (Ok(bytes), Ok(flags)) = (std::fs::read(&path), std::fs::read_to_string(&flags_path)) {
        if let (Ok(program), Ok(flags)) = (decode(&bytes), flags.trim().parse()) {
            return Ok(Compiled { program, flags });
        }
    }
    let c = compile(filter)?;
    let bytes: Vec<u8> = c
        .program
        .iter()
        .flat_map(|i| {
            let mut b = Vec::with_capacity(8);
            b.extend_from_slice(&i.code.to_ne_bytes());
            b.push(i.jt);
            b.push(i.jf);
            b.extend_from_slice(&i.k.to_ne_bytes());
            b
        })
        .collect();
    // A cache that cannot be written only costs the next compile.
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = crate::layout::write_atomic(&flags_path, c.flags.to_string().as_bytes());
        let _ = crate::layout::write_atomic(&path, &bytes);
    }
    Ok(c)
}

/// Loads a compiled filter on the calling thread (`seccomp(2)`,
/// `SECCOMP_SET_MODE_FILTER`): needs `CAP_SYS_ADMIN` or no-new-privileges.
pub fn load(c: &Compiled) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: c.program.len() as libc::c_ushort,
        filter: c.program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `len` initialised sock_filter structs that
    // outlive the call; the kernel copies them and keeps no pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            1 as libc::c_ulong, // SECCOMP_SET_MODE_FILTER
            c.flags as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: Target = Target {
        go_arch: "amd64",
        arch: Arch::ScmpArchX86_64,
        kernel: (6, 1),
    };

    fn docker_caps() -> Vec<String> {
        ["CAP_CHOWN", "CAP_SETUID", "CAP_SYS_CHROOT", "CAP_KILL"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// The names allowed unconditionally (no argument filter).
    fn allowed(s: &LinuxSeccomp, name: &str) -> bool {
        s.syscalls().iter().flatten().any(|c| {
            c.action() == LinuxSeccompAction::ScmpActAllow
                && c.args().is_none()
                && c.names().iter().any(|n| n == name)
        })
    }

    #[test]
    fn default_profile_gates_on_capabilities() {
        let s = resolve(&default_profile(), &docker_caps(), X86)
            .unwrap()
            .unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(libc::EPERM as u32));
        assert_eq!(
            s.architectures().clone().unwrap(),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        for name in ["read", "execve", "arch_prctl", "chroot", "ptrace"] {
            assert!(allowed(&s, name), "{name} should be allowed");
        }
        for name in [
            "mount",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "reboot",
            "init_module",
            "bpf",
            "swapon",
            "clone3",
            "kexec_load",
            "cacheflush",
        ] {
            assert!(!allowed(&s, name), "{name} should not be allowed");
        }
        // clone with the namespace mask; clone3 answers ENOSYS.
        let clone = s
            .syscalls()
            .iter()
            .flatten()
            .find(|c| c.names() == &["clone"])
            .unwrap();
        let a = clone.args().as_ref().unwrap()[0];
        assert_eq!(a.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!((a.value(), a.value_two()), (0x7E02_0000, Some(0)));
        let clone3 = s
            .syscalls()
            .iter()
            .flatten()
            .find(|c| c.names() == &["clone3"])
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(libc::ENOSYS as u32));
        // AF_ALG and AF_VSOCK have no socket rule.
        let sock: Vec<(u64, LinuxSeccompOperator)> = s
            .syscalls()
            .iter()
            .flatten()
            .filter(|c| c.names() == &["socket"])
            .map(|c| {
                (
                    c.args().as_ref().unwrap()[0].value(),
                    c.args().as_ref().unwrap()[0].op(),
                )
            })
            .collect();
        assert_eq!(sock[0], (12, LinuxSeccompOperator::ScmpCmpLt));
        assert!(!sock.iter().any(|(v, _)| *v == 38 || *v == 40));
        assert!(sock.iter().any(|(v, _)| *v == 16));
    }

    #[test]
    fn sys_admin_unlocks_its_group_and_drops_the_clone_filter() {
        let mut caps = docker_caps();
        caps.push("CAP_SYS_ADMIN".into());
        caps.push("CAP_SYS_BOOT".into());
        let s = resolve(&default_profile(), &caps, X86).unwrap().unwrap();
        for name in [
            "mount", "unshare", "setns", "bpf", "clone", "clone3", "reboot",
        ] {
            assert!(allowed(&s, name), "{name}");
        }
        assert!(!s
            .syscalls()
            .iter()
            .flatten()
            .any(|c| c.action() == LinuxSeccompAction::ScmpActErrno));
        // No CAP_SYS_PTRACE and an old kernel: no ptrace.
        let old = Target {
            kernel: (4, 4),
            ..X86
        };
        let s = resolve(&default_profile(), &docker_caps(), old)
            .unwrap()
            .unwrap();
        assert!(!allowed(&s, "ptrace"));
    }

    #[test]
    fn aarch64_gets_its_own_arches_and_calls() {
        let arm = Target {
            go_arch: "arm64",
            arch: Arch::ScmpArchAarch64,
            kernel: (6, 1),
        };
        let s = resolve(&default_profile(), &docker_caps(), arm)
            .unwrap()
            .unwrap();
        assert_eq!(
            s.architectures().clone().unwrap(),
            vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
        );
        assert!(allowed(&s, "cacheflush"));
        assert!(!allowed(&s, "arch_prctl"));
    }

    #[test]
    fn custom_profiles_parse_defensively() {
        let p = parse_profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13},{"name":"ptrace","action":"SCMP_ACT_KILL","includes":{"caps":["CAP_SYS_ADMIN"]}}],"extra":1}"#,
        )
        .unwrap();
        let s = resolve(&p, &docker_caps(), X86).unwrap().unwrap();
        let calls = s.syscalls().clone().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].errno_ret(), Some(13));
        assert!(s.architectures().is_none());

        let bad = |json: &str| resolve(&parse_profile(json)?, &docker_caps(), X86);
        assert_eq!(
            bad(r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#).unwrap_err(),
            ProfileError::Action("SCMP_ACT_BOGUS".into())
        );
        assert_eq!(
            bad(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_NOPE"}]}"#)
                .unwrap_err(),
            ProfileError::Action("SCMP_ACT_NOPE".into())
        );
        assert_eq!(
            bad(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"op":"SCMP_CMP_WHAT"}]}]}"#)
                .unwrap_err(),
            ProfileError::Operator("SCMP_CMP_WHAT".into())
        );
        assert!(matches!(
            bad(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[{"index":9,"op":"SCMP_CMP_EQ"}]}]}"#
            ),
            Err(ProfileError::Invalid(_))
        ));
        assert!(matches!(
            bad(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#),
            Err(ProfileError::Invalid(_))
        ));
        assert!(matches!(
            bad(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#
            ),
            Err(ProfileError::Invalid(_))
        ));
        assert_eq!(
            bad(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_Z80"]}"#)
                .unwrap_err(),
            ProfileError::Arch("SCMP_ARCH_Z80".into())
        );
        assert!(matches!(
            bad(r#"{"defaultAction":"#),
            Err(ProfileError::Decode(_))
        ));
        assert!(matches!(bad(r#"[1,2]"#), Err(ProfileError::Decode(_))));
        assert!(matches!(
            bad(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":100000}"#),
            Err(ProfileError::Invalid(_))
        ));
        let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_PROFILE_BYTES));
        assert_eq!(parse_profile(&huge).unwrap_err(), ProfileError::TooLarge);
        // No default action: docker runs without seccomp.
        assert!(bad("{}").unwrap().is_none());
    }

    #[test]
    fn compiled_filters_load_and_are_cached() {
        let s = resolve(&default_profile(), &docker_caps(), Target::native())
            .unwrap()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let a = compile_cached(&s, dir.path()).unwrap();
        assert!(!a.program.is_empty() && a.program.len() <= MAX_INSNS);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        let b = compile_cached(&s, dir.path()).unwrap();
        assert_eq!(a.program.len(), b.program.len());
        assert!(a
            .program
            .iter()
            .zip(&b.program)
            .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k)));

        // A custom filter, loaded in a child: mkdir answers EACCES, the
        // masked clone rule refuses a namespace flag, getpid still works.
        let p = parse_profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
                {"names":["unshare"],"action":"SCMP_ACT_ERRNO","errnoRet":1,
                 "args":[{"index":0,"value":268435456,"valueTwo":268435456,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
        )
        .unwrap();
        let f = compile(&resolve(&p, &[], Target::native()).unwrap().unwrap()).unwrap();
        // SAFETY: the child only makes raw syscalls and exits.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: plain syscalls in the forked child.
                let code = unsafe {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                    if load(&f).is_err() {
                        libc::_exit(10);
                    }
                    let dir = c"/nonexistent-berth-test/x";
                    let mkdir = libc::mkdir(dir.as_ptr(), 0o755);
                    let e1 = *libc::__errno_location();
                    // CLONE_NEWUSER with a bad bit: EPERM from the rule,
                    // EINVAL if the kernel saw it.
                    let un = libc::unshare(libc::CLONE_NEWUSER | 0x1);
                    let e2 = *libc::__errno_location();
                    let bad_only = libc::unshare(0x1);
                    let e3 = *libc::__errno_location();
                    match (mkdir, e1, un, e2, bad_only, e3, libc::getpid() > 0) {
                        (-1, libc::EACCES, -1, libc::EPERM, -1, libc::EINVAL, true) => 0,
                        _ => 11,
                    }
                };
                // SAFETY: leaving the forked child.
                unsafe { libc::_exit(code) }
            }
            pid if pid > 0 => {
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                assert!(libc::WIFEXITED(st), "child died: {st}");
                assert_eq!(libc::WEXITSTATUS(st), 0);
            }
            _ => panic!("fork failed"),
        }
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel("6.18.44-fc-v1252"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("5"), Some((5, 0)));
        assert_eq!(parse_kernel("x"), None);
    }

    /// Runs a seccomp cBPF program on one syscall (x86_64, no arguments)
    /// as the kernel's interpreter would; returns (verdict, instructions
    /// executed).
    fn run_bpf(prog: &[libc::sock_filter], nr: u32) -> (u32, usize) {
        const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
        let data = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => AUDIT_ARCH_X86_64,
                _ => 0,
            }
        };
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let (mut pc, mut steps) = (0usize, 0usize);
        loop {
            let i = prog[pc];
            steps += 1;
            pc += 1;
            let k = i.k;
            let jump = |cond: bool| if cond { i.jt as usize } else { i.jf as usize };
            match i.code {
                0x20 => a = data(k),            // ld [k]
                0x00 => a = k,                  // ld #k
                0x60 => a = mem[k as usize],    // ld M[k]
                0x01 => x = k,                  // ldx #k
                0x61 => x = mem[k as usize],    // ldx M[k]
                0x02 => mem[k as usize] = a,    // st M[k]
                0x03 => mem[k as usize] = x,    // stx M[k]
                0x54 => a &= k,                 // and #k
                0x07 => x = a,                  // tax
                0x87 => a = x,                  // txa
                0x05 => pc += k as usize,       // ja
                0x15 => pc += jump(a == k),     // jeq #k
                0x25 => pc += jump(a > k),      // jgt #k
                0x35 => pc += jump(a >= k),     // jge #k
                0x45 => pc += jump(a & k != 0), // jset #k
                0x06 => return (k, steps),      // ret #k
                other => panic!("unexpected BPF opcode {other:#x} at {}", pc - 1),
            }
        }
    }

    #[test]
    fn default_filter_is_a_tree_cheap_for_every_syscall() {
        // Every syscall of a container runs the filter; in an emulated
        // guest kernel without a BPF JIT each instruction is emulated
        // work. The default profile compiled as a binary tree decides
        // any syscall in a few dozen instructions (the linear list took
        // 311 on average); the verdicts stay docker's.
        let s = resolve(&default_profile(), &docker_caps(), Target::native())
            .unwrap()
            .unwrap();
        let f = compile(&s).unwrap();
        const ALLOW: u32 = 0x7fff_0000;
        let (mut worst, mut total) = (0, 0);
        for nr in 0..460u32 {
            let (_, steps) = run_bpf(&f.program, nr);
            worst = worst.max(steps);
            total += steps;
        }
        let mean = total / 460;
        for (nr, name) in [
            (0u32, "read"),
            (1, "write"),
            (202, "futex"),
            (232, "epoll_wait"),
        ] {
            let (verdict, _) = run_bpf(&f.program, nr);
            assert_eq!(verdict, ALLOW, "{name}");
        }
        // reboot (169) and init_module (175): EPERM (errno in the low bits).
        for nr in [169u32, 175] {
            let (verdict, _) = run_bpf(&f.program, nr);
            assert_eq!(verdict, 0x0005_0000 | libc::EPERM as u32, "{nr}");
        }
        // Measured: tree worst 46, mean 15 (1293 instructions long);
        // libseccomp's default list: worst 636, mean 311 (1048 long).
        assert!(
            worst <= 64 && mean <= 32,
            "worst {worst}, mean {mean} instructions"
        );
    }
}
