//! Per-container network namespaces, created by the engine (not by
//! libcontainer) so that loopback is up and the namespace can be joined
//! later (port forwarding, exec). The namespace is kept alive by a bind
//! mount of its nsfs file.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Creates a new network namespace with `lo` up and pins it at `path`.
/// Must be called from a single-threaded process (unshare affects the
/// calling thread, and we switch back afterwards).
pub fn create(path: &Path) -> std::io::Result<()> {
    let original = File::open("/proc/self/ns/net")?;
    File::create(path)?;
    unshare(CloneFlags::CLONE_NEWNET)?;
    let result = (|| {
        loopback_up()?;
        mount(
            Some("/proc/self/ns/net"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok(())
    })();
    setns(&original, CloneFlags::CLONE_NEWNET)?;
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Releases a namespace created by [`create`].
pub fn remove(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}

/// Brings `lo` up in the calling thread's network namespace.
pub fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket(2) call; the fd is owned by the File below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    let sock = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into req, a valid ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifru_flags is the active union member after SIOCGIFFLAGS.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads req, a valid ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
