//! Starting a monitor process (`berth-agent shim`, `exec-shim`) without a
//! fork of the agent: `posix_spawn`, which glibc runs as a
//! `clone(CLONE_VM | CLONE_VFORK)` that shares the agent's memory until the
//! child has exec'd.
//!
//! A plain fork copies the page tables of the whole multi-threaded agent and
//! then takes copy-on-write faults until the exec; in an emulated guest
//! kernel (kvm_pvm) that is a fork of ~0.5 s on every container start and
//! every `exec`. `std::process::Command` would use posix_spawn too, but not
//! with the session and the extra fd a monitor needs (it falls back to a
//! fork for `pre_exec`).

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

/// A monitor to start: `program` with `args` (argv[0] is `program`), the
/// agent's environment plus `extra_env`, in a new session, stdin from
/// `/dev/null`, stdout and stderr to `log`, and `ready` as its fd 3.
pub(super) struct Monitor<'a> {
    pub program: &'a OsStr,
    pub args: &'a [&'a OsStr],
    pub extra_env: &'a [(&'a str, &'a str)],
    pub log: &'a File,
    pub ready: RawFd,
}

fn cstring(s: &[u8]) -> std::io::Result<CString> {
    CString::new(s).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

/// A close-on-exec copy of `fd` numbered 10 or above, so that no dup2 of
/// the file actions overwrites a source another one still reads.
fn high_copy(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on an fd we hold returns a new fd or -1.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `n` is a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Turns a posix_spawn* return value (an errno, not -1) into a result.
fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

/// The spawn attributes and file actions, destroyed on drop.
struct Spawn {
    attr: libc::posix_spawnattr_t,
    actions: libc::posix_spawn_file_actions_t,
}

impl Spawn {
    fn new() -> std::io::Result<Box<Spawn>> {
        // SAFETY: both are plain C structs that the init calls fill in;
        // zeroed memory is a valid starting value for them.
        let mut s: Box<Spawn> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: init on memory we own; destroyed in Drop only if both
        // inits succeed (a failed attr init returns before actions).
        check(unsafe { libc::posix_spawnattr_init(&mut s.attr) })?;
        // SAFETY: as above.
        if let Err(e) = check(unsafe { libc::posix_spawn_file_actions_init(&mut s.actions) }) {
            // SAFETY: attr was initialised just above.
            unsafe { libc::posix_spawnattr_destroy(&mut s.attr) };
            // Skip Drop: actions was never initialised.
            std::mem::forget(s);
            return Err(e);
        }
        Ok(s)
    }
}

impl Drop for Spawn {
    fn drop(&mut self) {
        // SAFETY: both were initialised in Spawn::new.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
            libc::posix_spawnattr_destroy(&mut self.attr);
        }
    }
}

/// Starts the monitor; returns its pid. The caller reaps it (the agent's
/// reaper does).
pub(super) fn spawn(m: &Monitor) -> std::io::Result<i32> {
    let program = cstring(m.program.as_bytes())?;
    let mut argv_owned = vec![program.clone()];
    for a in m.args {
        argv_owned.push(cstring(a.as_bytes())?);
    }
    let mut env_owned = Vec::new();
    for (k, v) in std::env::vars_os() {
        if m.extra_env.iter().any(|(ek, _)| OsStr::new(ek) == k) {
            continue;
        }
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        env_owned.push(cstring(&kv)?);
    }
    for (k, v) in m.extra_env {
        env_owned.push(cstring(format!("{k}={v}").as_bytes())?);
    }
    let mut argv: Vec<*mut libc::c_char> = argv_owned
        .iter()
        .map(|s| s.as_ptr() as *mut libc::c_char)
        .collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = env_owned
        .iter()
        .map(|s| s.as_ptr() as *mut libc::c_char)
        .collect();
    envp.push(std::ptr::null_mut());

    let null = File::open("/dev/null")?;
    let null = high_copy(null.as_raw_fd())?;
    let log = high_copy(m.log.as_raw_fd())?;
    let ready = high_copy(m.ready)?;

    let mut s = Spawn::new()?;
    // SAFETY: the sigsets are plain C structs filled in by the calls.
    let (mut empty, mut pipe): (libc::sigset_t, libc::sigset_t) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: sigemptyset/sigaddset on sets we own; the attribute calls on
    // the initialised attr. As std's Command does: no blocked signals, and
    // SIGPIPE (which the Rust runtime ignores) back to its default.
    unsafe {
        libc::sigemptyset(&mut empty);
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        check(libc::posix_spawnattr_setsigmask(&mut s.attr, &empty))?;
        check(libc::posix_spawnattr_setsigdefault(&mut s.attr, &pipe))?;
        check(libc::posix_spawnattr_setflags(
            &mut s.attr,
            (libc::c_int::from(libc::POSIX_SPAWN_SETSID)
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
        ))?;
    }
    for (src, dst) in [
        (null.as_raw_fd(), 0),
        (log.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
        (ready.as_raw_fd(), 3),
    ] {
        // SAFETY: the actions were initialised; the fds stay open until
        // posix_spawn returns (they are dropped after it).
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut s.actions, src, dst) })?;
    }
    let mut pid: libc::pid_t = 0;
    // SAFETY: program, argv and envp are NUL-terminated strings and
    // null-terminated arrays that outlive the call; attr and actions are
    // initialised. glibc reports an exec failure as the return value.
    check(unsafe {
        libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            &s.actions,
            &s.attr,
            argv.as_ptr(),
            envp.as_ptr(),
        )
    })?;
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn monitor_runs_in_its_session_with_its_fds_and_env() {
        let dir = std::env::temp_dir().join(format!("berth-spawn-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log_path = dir.join("log");
        let log = File::create(&log_path).unwrap();
        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        // The session id (field 6 of stat, read by `cat` in the same session)
        // is the child's own pid after
        // setsid; stdin is /dev/null (read hits end of file at once); the
        // write end of the pipe is fd 3; no other fd of ours leaks in.
        let script = r#"set -- $(cat /proc/self/stat); read -r line; echo "read=$? env=$SPAWN_TEST_VALUE sid_is_pid=$([ "$6" = "$$" ] && echo yes)"; cd /proc/$$/fd && echo *; echo ready >&3"#;
        let args: Vec<&OsStr> = vec!["-c".as_ref(), script.as_ref()];
        let pid = spawn(&Monitor {
            program: "/bin/sh".as_ref(),
            args: &args,
            extra_env: &[("SPAWN_TEST_VALUE", "yes")],
            log: &log,
            ready: wr.as_raw_fd(),
        })
        .unwrap();
        drop(wr);
        let mut ready = String::new();
        File::from(rd).read_to_string(&mut ready).unwrap();
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0)
        );
        let out = std::fs::read_to_string(&log_path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(ready.trim(), "ready");
        assert!(out.contains("read=1 env=yes sid_is_pid=yes"), "{out}");
        // The shell holds fds 0-3, the fds this test process itself
        // inherited without close-on-exec (a harness may pass some), and
        // one more: the directory its glob reads. None of the copies made
        // for the file actions, which are close-on-exec.
        let inherited: Vec<u32> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd: &u32| {
                // SAFETY: F_GETFD only reads the flags of an fd number.
                let flags = unsafe { libc::fcntl(fd as RawFd, libc::F_GETFD) };
                fd > 3 && flags >= 0 && flags & libc::FD_CLOEXEC == 0
            })
            .collect();
        let fds: Vec<u32> = out
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        for fd in 0..4 {
            assert!(fds.contains(&fd), "fd {fd} missing: {out}");
        }
        let extra: Vec<&u32> = fds
            .iter()
            .filter(|fd| **fd > 3 && !inherited.contains(fd))
            .collect();
        assert!(extra.len() <= 1, "fds leaked: {extra:?}: {out}");
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let log = File::create("/dev/null").unwrap();
        let err = spawn(&Monitor {
            program: "/nonexistent/berth-monitor".as_ref(),
            args: &[],
            extra_env: &[],
            log: &log,
            ready: log.as_raw_fd(),
        })
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
