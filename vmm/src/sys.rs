//! Small host-OS helpers shared by the VMM's threads (Unix).

use std::io;
use std::os::unix::io::RawFd;
use std::time::Duration;

/// Waits up to `timeout` for `fd` to become readable (poll(2)). A signal
/// that interrupts the wait counts as "not yet".
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one valid pollfd that lives across the call, and the
    // count passed is 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(n > 0 && pfd.revents & libc::POLLIN != 0)
}
