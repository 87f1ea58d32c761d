//! A warm-pool member: `berth-vmm --standby SOCKET` makes its VM (KVM fd,
//! VM with irqchip and PIT, vCPUs) before anyone needs it, then waits on a
//! Unix socket for one request to restore a snapshot into that VM. The
//! client (the `berth` CLI) sends one JSON line, [`StandbyRequest`], and
//! reads one line back: `OK` once the request is accepted (the restore
//! itself is then watched like any other: the agent answers on the vsock
//! socket, or the process exits with its error in the log), or
//! `ERROR <why>`. Nobody else can connect afterwards: the socket file is
//! removed when the request arrives. A standby that gets no request within
//! its idle time removes its socket and exits, so a pool never outlives its
//! use by much.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 64 * 1024;

/// What to restore, with this run's host resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyRequest {
    /// Snapshot directory.
    pub restore: PathBuf,
    /// When given, the kernel the snapshot's guest must have booted.
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// Guest console file.
    pub serial_log: PathBuf,
    /// vsock host socket.
    #[serde(default)]
    pub vsock_uds: Option<PathBuf>,
    /// Disks as `PATH[,ro|,rw]`; empty: the snapshot's.
    #[serde(default)]
    pub disks: Vec<String>,
    /// `private` (default) or `copy`, as `--restore-memory`.
    #[serde(default)]
    pub restore_memory: Option<String>,
    /// Where the VMM's own stdout and stderr go from now on.
    #[serde(default)]
    pub log: Option<PathBuf>,
}

/// Why no request was taken.
#[derive(Debug, thiserror::Error)]
pub enum StandbyError {
    /// Nobody asked within the idle time.
    #[error("no request within {0} s")]
    Idle(u64),
    /// The socket failed.
    #[error("standby socket: {0}")]
    Io(#[from] io::Error),
}

/// Waits up to `idle` for clients on `listener` and returns the first
/// valid request with its connection (answer it with [`answer`]). Clients
/// that send garbage get `ERROR …` and the wait goes on.
///
/// The calling thread confines itself first ([`ThreadKind::Standby`]
/// when the binary enabled confinement): the wait and the restore after
/// it run under the standby filter without capabilities, and the VM's
/// threads that the restore spawns stack their own filters on it.
///
/// [`ThreadKind::Standby`]: crate::confine::ThreadKind::Standby
pub fn wait_request(
    listener: &UnixListener,
    idle: Duration,
) -> Result<(StandbyRequest, UnixStream), StandbyError> {
    crate::confine::confine_or_exit(crate::confine::ThreadKind::Standby);
    #[cfg(feature = "test-hooks")]
    crate::confine::test_hook_forbidden_syscall(crate::confine::ThreadKind::Standby);
    let deadline = Instant::now() + idle;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !crate::sys::wait_readable(listener.as_raw_fd(), left)? {
            if Instant::now() >= deadline {
                return Err(StandbyError::Idle(idle.as_secs()));
            }
            continue;
        }
        let (mut stream, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        // A client that connects and says nothing must not hold the pool.
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        match read_request(&mut stream) {
            Ok(req) => return Ok((req, stream)),
            Err(why) => {
                let _ = answer(&mut stream, Err(&why));
            }
        }
    }
}

/// Reads and parses one request line.
pub fn read_request(stream: &mut impl Read) -> Result<StandbyRequest, String> {
    let mut line = Vec::new();
    BufReader::new(stream.take(MAX_REQUEST as u64 + 1))
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the request: {e}"))?;
    if line.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    if line.last() != Some(&b'\n') {
        return Err("the request must be one line ending in a newline".into());
    }
    serde_json::from_slice(&line).map_err(|e| format!("invalid request: {e}"))
}

/// Sends `OK` or `ERROR <why>`.
pub fn answer(stream: &mut impl Write, result: Result<(), &str>) -> io::Result<()> {
    match result {
        Ok(()) => stream.write_all(b"OK\n"),
        Err(why) => writeln!(stream, "ERROR {}", why.replace('\n', " ")),
    }
}

/// Points this process's stdout and stderr at `path` (appending).
pub fn redirect_output(path: &std::path::Path) -> io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for target in [1, 2] {
        // SAFETY: dup2 of a valid open fd onto the standard descriptors;
        // `f` stays open until after the call.
        if unsafe { libc::dup2(f.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip_and_hostile_input() {
        let req = StandbyRequest {
            restore: "/snap".into(),
            kernel: None,
            serial_log: "/m/serial.log".into(),
            vsock_uds: Some("/m/vsock.sock".into()),
            disks: vec![],
            restore_memory: None,
            log: None,
        };
        let mut line = serde_json::to_vec(&req).unwrap();
        line.push(b'\n');
        assert_eq!(read_request(&mut line.as_slice()).unwrap(), req);

        let minimal = br#"{"restore":"/s","serial_log":"/l"}
"#;
        assert!(read_request(&mut minimal.as_slice()).is_ok());
        for bad in [
            &b""[..],
            b"{\"restore\":\"/s\",\"serial_log\":\"/l\"}",
            b"not json\n",
            b"{\"restore\":\"/s\"}\n",
            b"{\"restore\":\"/s\",\"serial_log\":\"/l\",\"extra\":1}\n",
            b"[1,2,3]\n",
        ] {
            assert!(read_request(&mut &bad[..]).is_err(), "{bad:?}");
        }
        let huge = vec![b' '; MAX_REQUEST + 10];
        let e = read_request(&mut huge.as_slice()).unwrap_err();
        assert!(e.contains("longer than"), "{e}");
    }

    #[test]
    fn idle_standby_gives_up_and_garbage_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let e = wait_request(&listener, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(e, StandbyError::Idle(_)), "{e}");

        let p = path.clone();
        let client = std::thread::spawn(move || {
            let mut bad = UnixStream::connect(&p).unwrap();
            bad.write_all(b"garbage\n").unwrap();
            let mut reply = String::new();
            BufReader::new(&bad).read_line(&mut reply).unwrap();
            let mut good = UnixStream::connect(&p).unwrap();
            good.write_all(b"{\"restore\":\"/s\",\"serial_log\":\"/l\"}\n")
                .unwrap();
            let mut ok = String::new();
            BufReader::new(&good).read_line(&mut ok).unwrap();
            (reply, ok)
        });
        let (req, mut stream) = wait_request(&listener, Duration::from_secs(10)).unwrap();
        assert_eq!(req.restore, PathBuf::from("/s"));
        answer(&mut stream, Ok(())).unwrap();
        drop(stream);
        let (reply, ok) = client.join().unwrap();
        assert!(reply.starts_with("ERROR invalid request"), "{reply}");
        assert_eq!(ok, "OK\n");
    }
}
