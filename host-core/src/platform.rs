//! What differs between host operating systems, in one place: the stream
//! type that reaches the agent or the VMM's vsock socket, process control
//! and file locks.
//!
//! The transport is AF_UNIX everywhere. Windows 10 (1803) and later support
//! AF_UNIX stream sockets natively (`uds_windows` wraps them), so the VMM
//! keeps one listener type and the Firecracker `CONNECT <port>\n` convention
//! on every OS; named pipes would need a second muxer in the VMM and a second
//! client path here, for no gain.

use std::fs::File;
use std::io;

#[cfg(unix)]
pub use std::os::unix::net::{UnixListener, UnixStream};
#[cfg(windows)]
pub use uds_windows::{UnixListener, UnixStream};

/// Kills process `pid` without giving it a chance to clean up.
pub fn kill(pid: i32) {
    #[cfg(unix)]
    // SAFETY: kill(2) has no memory-safety preconditions; callers only pass
    // the pid of a VMM this machine started (pid file + name checked).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::CloseHandle;
        use windows_sys::Win32::System::Threading::{
            OpenProcess, TerminateProcess, PROCESS_TERMINATE,
        };
        // SAFETY: OpenProcess returns a handle we own or null; it is closed
        // exactly once below.
        unsafe {
            let h = OpenProcess(PROCESS_TERMINATE, 0, pid as u32);
            if !h.is_null() {
                TerminateProcess(h, 1);
                CloseHandle(h);
            }
        }
    }
}

/// Blocks until this process holds an exclusive lock on `file`; the lock is
/// released when the file is closed.
pub fn lock_exclusive(file: &File) -> io::Result<()> {
    file_lock(file, false, true).map(|_| ())
}

/// Blocks until this process holds a shared lock on `file` (others may
/// hold shared locks too; an exclusive one waits); released when the file
/// is closed.
pub fn lock_shared(file: &File) -> io::Result<()> {
    file_lock(file, true, true).map(|_| ())
}

/// Takes an exclusive lock on `file` if nobody holds one of any kind:
/// Ok(false) when someone does (nothing waits).
pub fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    file_lock(file, false, false)
}

/// flock / LockFileEx over the whole file: Ok(false) only when `wait` is
/// false and another holder is in the way.
fn file_lock(file: &File, shared: bool, wait: bool) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let mut op = if shared { libc::LOCK_SH } else { libc::LOCK_EX };
        if !wait {
            op |= libc::LOCK_NB;
        }
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } != 0 {
            let e = io::Error::last_os_error();
            if !wait && e.kind() == io::ErrorKind::WouldBlock {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(true)
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::Foundation::ERROR_LOCK_VIOLATION;
        use windows_sys::Win32::Storage::FileSystem::{
            LockFileEx, LOCKFILE_EXCLUSIVE_LOCK, LOCKFILE_FAIL_IMMEDIATELY,
        };
        use windows_sys::Win32::System::IO::OVERLAPPED;
        let mut flags = if shared { 0 } else { LOCKFILE_EXCLUSIVE_LOCK };
        if !wait {
            flags |= LOCKFILE_FAIL_IMMEDIATELY;
        }
        // Windows locks are mandatory: one byte far past any content is
        // locked, so that other processes can still read the file (a
        // reservation's names, `vm_volumes`); every locker locks the same
        // byte, which is all the exclusion needs.
        // SAFETY: the handle is live for the call; OVERLAPPED is plain data
        // (zeroed, then its offset set) and only read during this
        // synchronous call.
        let ok = unsafe {
            let mut ov: OVERLAPPED = std::mem::zeroed();
            ov.Anonymous.Anonymous.OffsetHigh = u32::MAX;
            LockFileEx(file.as_raw_handle(), flags, 0, 1, 0, &mut ov)
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            if !wait && e.raw_os_error() == Some(ERROR_LOCK_VIOLATION as i32) {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(true)
    }
}

/// Makes `cmd` start detached from this command's session / console, so it
/// outlives it.
pub fn detach(cmd: &mut std::process::Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: setsid is async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        cmd.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
    }
}

/// Makes the process `cmd` starts get SIGKILL when this process dies
/// (Linux: `PR_SET_PDEATHSIG`). The signal follows the *thread* that
/// spawns it: call this only from a thread that lives as long as the
/// process (berth spawns VMMs from its main thread). Elsewhere nothing
/// is set up: the child outlives a killed parent there.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: getpid is async-signal-safe; it runs before the fork.
        let parent = unsafe { libc::getpid() };
        // SAFETY: prctl, getppid and _exit are async-signal-safe, as
        // pre_exec requires; nothing is allocated.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the prctl: no signal will come.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Whether [`private_binds`] can work here: Linux, as root (a mount
/// namespace needs CAP_SYS_ADMIN).
pub fn can_bind_privately() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// One bind mount of [`private_binds`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateBind {
    /// The host file or folder.
    pub source: std::path::PathBuf,
    /// Where it is mounted (an existing empty file or folder).
    pub target: std::path::PathBuf,
    /// Remounted read-only: writes through it fail with EROFS in the host
    /// kernel, whatever the process serving it is asked. A read-only
    /// folder is bound alone (not recursively), so that no mount below it
    /// stays writable; a writable one with the mounts below it, as `-v`.
    pub read_only: bool,
}

/// Makes the process `cmd` starts run in a mount namespace of its own
/// (Linux), private to it, in which each of `binds` (parents first) is
/// bind-mounted: the host's namespace never sees those mounts, and they
/// end with the process, however it ends. Refused where
/// [`can_bind_privately`] says no (the start would fail).
pub fn private_binds(cmd: &mut std::process::Command, binds: &[PrivateBind]) -> io::Result<()> {
    if binds.is_empty() {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::process::CommandExt;
        let c = |p: &std::path::Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
        };
        let pairs: Vec<(CString, CString, bool)> = binds
            .iter()
            .map(|b| Ok((c(&b.source)?, c(&b.target)?, b.read_only)))
            .collect::<io::Result<_>>()?;
        // SAFETY: unshare and mount are async-signal-safe system calls, as
        // pre_exec requires; the strings were made before the fork and are
        // only read.
        unsafe {
            cmd.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // Nothing mounted here may propagate to the host's
                // namespace (systemd makes `/` shared).
                if libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                for (s, t, read_only) in &pairs {
                    let rec = if *read_only { 0 } else { libc::MS_REC };
                    if libc::mount(
                        s.as_ptr(),
                        t.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | rec,
                        std::ptr::null(),
                    ) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                    if *read_only
                        && libc::mount(
                            std::ptr::null(),
                            t.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                            std::ptr::null(),
                        ) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cmd;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "bind-mounting single files for a VM needs Linux",
        ))
    }
}

/// The per-user data directory berth keeps state in when neither
/// `$BERTH_HOME` nor `$XDG_DATA_HOME` says otherwise: `~/.local/share/berth`
/// on Linux, `~/Library/Application Support/berth` on macOS,
/// `%LOCALAPPDATA%\berth` on Windows.
pub fn default_data_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    let home = || {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"))
    };
    if cfg!(target_os = "macos") {
        home().join("Library/Application Support/berth")
    } else if cfg!(windows) {
        std::env::var_os("LOCALAPPDATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
            .join("berth")
    } else {
        home().join(".local/share/berth")
    }
}

/// Signal numbers as the Linux guest (and the agent) understands them — not
/// the host's: `SIGUSR1` is 10 in the guest even when `berth` runs on macOS
/// (where it is 30) or Windows (where it does not exist). Same names as
/// `libc`'s, so a module can `use crate::platform::linux_signals as libc;`
/// for its guest-facing tables. x86_64 and arm64 Linux share these values.
pub mod linux_signals {
    #![allow(missing_docs)]
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGQUIT: i32 = 3;
    pub const SIGILL: i32 = 4;
    pub const SIGTRAP: i32 = 5;
    pub const SIGABRT: i32 = 6;
    pub const SIGBUS: i32 = 7;
    pub const SIGFPE: i32 = 8;
    pub const SIGKILL: i32 = 9;
    pub const SIGUSR1: i32 = 10;
    pub const SIGSEGV: i32 = 11;
    pub const SIGUSR2: i32 = 12;
    pub const SIGPIPE: i32 = 13;
    pub const SIGALRM: i32 = 14;
    pub const SIGTERM: i32 = 15;
    pub const SIGSTKFLT: i32 = 16;
    pub const SIGCHLD: i32 = 17;
    pub const SIGCONT: i32 = 18;
    pub const SIGSTOP: i32 = 19;
    pub const SIGTSTP: i32 = 20;
    pub const SIGTTIN: i32 = 21;
    pub const SIGTTOU: i32 = 22;
    pub const SIGURG: i32 = 23;
    pub const SIGXCPU: i32 = 24;
    pub const SIGXFSZ: i32 = 25;
    pub const SIGVTALRM: i32 = 26;
    pub const SIGPROF: i32 = 27;
    pub const SIGWINCH: i32 = 28;
    pub const SIGIO: i32 = 29;
    pub const SIGPWR: i32 = 30;
    pub const SIGSYS: i32 = 31;
}

/// A signal by name (`TERM`, `SIGTERM`, `term`) or number (1–64), as the
/// Linux guest numbers it ([`linux_signals`]): the one parser for the CLI
/// and the Engine API server.
pub fn parse_linux_signal(s: &str) -> Option<i32> {
    use linux_signals as g;
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let table = [
        ("HUP", g::SIGHUP),
        ("INT", g::SIGINT),
        ("QUIT", g::SIGQUIT),
        ("ILL", g::SIGILL),
        ("TRAP", g::SIGTRAP),
        ("ABRT", g::SIGABRT),
        ("BUS", g::SIGBUS),
        ("FPE", g::SIGFPE),
        ("KILL", g::SIGKILL),
        ("USR1", g::SIGUSR1),
        ("SEGV", g::SIGSEGV),
        ("USR2", g::SIGUSR2),
        ("PIPE", g::SIGPIPE),
        ("ALRM", g::SIGALRM),
        ("TERM", g::SIGTERM),
        ("STKFLT", g::SIGSTKFLT),
        ("CHLD", g::SIGCHLD),
        ("CONT", g::SIGCONT),
        ("STOP", g::SIGSTOP),
        ("TSTP", g::SIGTSTP),
        ("TTIN", g::SIGTTIN),
        ("TTOU", g::SIGTTOU),
        ("URG", g::SIGURG),
        ("XCPU", g::SIGXCPU),
        ("XFSZ", g::SIGXFSZ),
        ("VTALRM", g::SIGVTALRM),
        ("PROF", g::SIGPROF),
        ("WINCH", g::SIGWINCH),
        ("IO", g::SIGIO),
        ("PWR", g::SIGPWR),
        ("SYS", g::SIGSYS),
    ];
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn linux_signals_match_libc_on_linux() {
        use super::linux_signals as g;
        let pairs = [
            (g::SIGHUP, libc::SIGHUP),
            (g::SIGUSR1, libc::SIGUSR1),
            (g::SIGUSR2, libc::SIGUSR2),
            (g::SIGCHLD, libc::SIGCHLD),
            (g::SIGCONT, libc::SIGCONT),
            (g::SIGSTOP, libc::SIGSTOP),
            (g::SIGTSTP, libc::SIGTSTP),
            (g::SIGURG, libc::SIGURG),
            (g::SIGWINCH, libc::SIGWINCH),
            (g::SIGIO, libc::SIGIO),
            (g::SIGSYS, libc::SIGSYS),
            (g::SIGTERM, libc::SIGTERM),
            (g::SIGSTKFLT, libc::SIGSTKFLT),
            (g::SIGPWR, libc::SIGPWR),
        ];
        for (guest, host) in pairs {
            assert_eq!(guest, host);
        }
    }

    #[test]
    fn signals_by_name_or_number() {
        use super::parse_linux_signal as p;
        assert_eq!(p("SIGTERM"), Some(15));
        assert_eq!(p("hup"), Some(1));
        // The guest's number on every host (macOS's SIGUSR1 is 30).
        assert_eq!(p("usr1"), Some(10));
        assert_eq!(p("PWR"), Some(30));
        assert_eq!(p("34"), Some(34));
        assert_eq!(p("0"), None);
        assert_eq!(p("65"), None);
        assert_eq!(p("BOGUS"), None);
    }

    #[test]
    fn data_dir_is_per_user() {
        let d = super::default_data_dir();
        assert!(d.ends_with("berth"), "{}", d.display());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn private_binds_are_seen_by_the_child_only() {
        if !super::can_bind_privately() {
            println!("SKIPPED: a mount namespace needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let secret = t.path().join("file");
        std::fs::write(&secret, b"the file").unwrap();
        std::fs::write(t.path().join("sibling"), b"hidden").unwrap();
        let stage = t.path().join("stage");
        std::fs::create_dir(&stage).unwrap();
        let point = stage.join("file");
        std::fs::write(&point, b"").unwrap();
        // And a folder, read-only: the child cannot write through it.
        let folder = t.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("inside"), b"kept").unwrap();
        let folder_point = stage.join("dir");
        std::fs::create_dir(&folder_point).unwrap();
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg(format!(
            "cat {}; ls {}; cat {fp}/inside; echo x > {fp}/inside || echo refused",
            point.display(),
            stage.display(),
            fp = folder_point.display()
        ));
        let binds = [
            super::PrivateBind {
                source: secret.clone(),
                target: point.clone(),
                read_only: false,
            },
            super::PrivateBind {
                source: folder.clone(),
                target: folder_point.clone(),
                read_only: true,
            },
        ];
        super::private_binds(&mut cmd, &binds).unwrap();
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "the filedir\nfile\nkeptrefused\n"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
        assert_eq!(std::fs::read(folder.join("inside")).unwrap(), b"kept");
        // The host's namespace never had the mount.
        assert_eq!(std::fs::read(&point).unwrap(), b"");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(stage.to_str().unwrap()));
    }
}
