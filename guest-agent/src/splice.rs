//! Stream bytes moved descriptor → pipe → descriptor with splice(2): the
//! data stays in the kernel, nothing is copied through user space and no
//! buffer is allocated per connection. Pipes are kept in a small pool for
//! the next connections (docker-proxy's Go runtime pools its splice pipes
//! too).
//!
//! Used by the published-port proxy (TCP → TCP: no copy at all, the pages
//! move) and by the agent's `PortConnect` (vsock ↔ TCP: one kernel copy
//! per byte instead of two, where the guest kernel is emulated the copies
//! are what a published port's throughput costs).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// How [`forward`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// EOF or an error: the direction is over.
    Done,
    /// splice is refused (or no pipe): the caller copies the rest;
    /// nothing is left in a pipe.
    Fallback,
}

/// Capacity asked of each pipe (best effort): bytes per splice call.
/// The kernel's default is 64 KiB (16 slots, each holding one page or
/// packet fragment); more slots take more of a burst per call.
const PIPE_SIZE: usize = 256 * 1024;
/// Empty pipes kept for later connections.
const POOL_MAX: usize = 64;
/// Buffer of [`drain`], the rare path (splice refused with bytes in the
/// pipe).
const DRAIN_BUFFER: usize = 64 * 1024;

static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// Locks, going on after a panic elsewhere (a list of empty pipes).
fn pool() -> std::sync::MutexGuard<'static, Vec<Pipe>> {
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pipe {
    /// An empty pipe, from the pool or new.
    fn take() -> io::Result<Pipe> {
        if let Some(pipe) = pool().pop() {
            return Ok(pipe);
        }
        let mut fds: [libc::c_int; 2] = [-1; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`, which has
        // room for exactly two.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both descriptors are open, new, and
        // owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own, with an integer
        // argument. A refusal (the user's pipe quota) keeps the
        // default size: more calls, same result.
        unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_SIZE as libc::c_int,
            )
        };
        Ok(Pipe { read, write })
    }

    /// Back to the pool; only an empty pipe may be given back.
    fn give_back(self) {
        let mut pool = pool();
        if pool.len() < POOL_MAX {
            pool.push(self);
        }
    }
}

/// splice(2) between two descriptors, neither with an offset (sockets
/// and pipes have none), again after a signal.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: plain descriptors, null offset pointers (allowed
        // and required for pipes and sockets); no memory is handed to
        // the kernel.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether splice is not available for these descriptors (rather
/// than the connection failing).
fn refused(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// Moves `from` to `to` until EOF or an error ([`End::Done`]), or
/// until splice is refused ([`End::Fallback`], every byte read so far
/// written). Both descriptors are blocking streams (sockets): a splice
/// into the (empty) pipe waits for data like a read, and the pipe is
/// emptied into `to` before the next one. Neither end is shut down here.
pub fn forward(from: &impl AsRawFd, to: &impl AsRawFd) -> End {
    let Ok(pipe) = Pipe::take() else {
        return End::Fallback;
    };
    let (src, dst) = (from.as_raw_fd(), to.as_raw_fd());
    let (pipe_read, pipe_write) = (pipe.read.as_raw_fd(), pipe.write.as_raw_fd());
    loop {
        let mut pending = match splice(src, pipe_write, PIPE_SIZE) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if refused(&e) => {
                pipe.give_back();
                return End::Fallback;
            }
            Err(_) => break,
        };
        while pending > 0 {
            match splice(pipe_read, dst, pending) {
                // Nothing moved out of a pipe holding bytes: give up
                // on this connection rather than spin.
                Ok(0) => return End::Done,
                Ok(n) => pending -= n,
                Err(e) if refused(&e) => {
                    return if drain(&pipe, pending, dst) {
                        pipe.give_back();
                        End::Fallback
                    } else {
                        End::Done
                    };
                }
                // The pipe may hold bytes: dropped with it.
                Err(_) => return End::Done,
            }
        }
    }
    // EOF or a read error, with the pipe empty.
    pipe.give_back();
    End::Done
}

/// Writes the `pending` bytes left in `pipe` to `to` with read and
/// write; whether all went.
fn drain(pipe: &Pipe, mut pending: usize, to: RawFd) -> bool {
    let mut from = std::fs::File::from(match pipe.read.try_clone() {
        Ok(fd) => fd,
        Err(_) => return false,
    });
    // SAFETY: `to` is open for the whole call (the caller holds its
    // owner); the borrow ends with this function.
    let to = unsafe { BorrowedFd::borrow_raw(to) };
    let Ok(to) = to.try_clone_to_owned() else {
        return false;
    };
    let mut to = std::fs::File::from(to);
    let mut buf = vec![0u8; DRAIN_BUFFER.min(pending)];
    while pending > 0 {
        let want = buf.len().min(pending);
        match from.read(&mut buf[..want]) {
            Ok(0) => return false,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return false;
                }
                pending -= n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}
