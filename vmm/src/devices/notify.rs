//! Queue notifications: the doorbell between the virtio-mmio transport (or
//! the hypervisor's ioeventfd fast path) and whoever processes a device's
//! queues.
//!
//! On Linux a [`QueueNotifier`] is an eventfd, so KVM can signal it without a
//! VMM exit and the epoll event loop can wait on it. Elsewhere (macOS, Windows)
//! it is a counter with a condition variable: the HVF and WHP backends take
//! every QueueNotify write as an MMIO exit anyway, and a device thread waits
//! on the notifier with [`QueueNotifier::wait_timeout`]. Devices only see
//! `notify` and `take`, so they stay platform-independent.

use std::io;
#[cfg(not(target_os = "linux"))]
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[cfg(target_os = "linux")]
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// A counting doorbell. Clones share the same counter.
pub struct QueueNotifier {
    #[cfg(target_os = "linux")]
    fd: EventFd,
    #[cfg(not(target_os = "linux"))]
    shared: Arc<(Mutex<u64>, Condvar)>,
}

impl QueueNotifier {
    /// A notifier with a zero count.
    pub fn new() -> io::Result<Self> {
        Ok(QueueNotifier {
            #[cfg(target_os = "linux")]
            fd: EventFd::new(EFD_NONBLOCK)?,
            #[cfg(not(target_os = "linux"))]
            shared: Arc::new((Mutex::new(0), Condvar::new())),
        })
    }

    /// Another handle on the same counter.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(QueueNotifier {
            #[cfg(target_os = "linux")]
            fd: self.fd.try_clone()?,
            #[cfg(not(target_os = "linux"))]
            shared: self.shared.clone(),
        })
    }

    /// Rings the doorbell once.
    pub fn notify(&self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            self.fd.write(1)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let (count, cond) = &*self.shared;
            *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            cond.notify_all();
            Ok(())
        }
    }

    /// Returns how often the doorbell rang since the last call (0 if never)
    /// and resets the count.
    pub fn take(&self) -> io::Result<u64> {
        #[cfg(target_os = "linux")]
        {
            match self.fd.read() {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) => Err(e),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let (count, _) = &*self.shared;
            Ok(std::mem::take(
                &mut *count.lock().unwrap_or_else(|e| e.into_inner()),
            ))
        }
    }

    /// Waits up to `timeout` for the doorbell, then behaves like [`Self::take`].
    #[cfg(not(target_os = "linux"))]
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<u64> {
        let (count, cond) = &*self.shared;
        let guard = count.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = cond
            .wait_timeout_while(guard, timeout, |n| *n == 0)
            .unwrap_or_else(|e| e.into_inner());
        Ok(std::mem::take(&mut *guard))
    }

    /// Waits up to `timeout` for the doorbell, then behaves like [`Self::take`]
    /// (poll(2) on the eventfd).
    #[cfg(target_os = "linux")]
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<u64> {
        use std::os::fd::AsRawFd;
        crate::sys::wait_readable(self.fd.as_raw_fd(), timeout)?;
        self.take()
    }

    /// The eventfd behind the notifier (for KVM's ioeventfd and epoll).
    #[cfg(target_os = "linux")]
    pub fn event_fd(&self) -> &EventFd {
        &self.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_resets() {
        let n = QueueNotifier::new().unwrap();
        let c = n.try_clone().unwrap();
        assert_eq!(n.take().unwrap(), 0);
        c.notify().unwrap();
        c.notify().unwrap();
        assert_eq!(n.take().unwrap(), 2);
        assert_eq!(c.take().unwrap(), 0);
    }

    #[test]
    fn wait_timeout_returns_the_count_or_zero() {
        let n = QueueNotifier::new().unwrap();
        let c = n.try_clone().unwrap();
        assert_eq!(n.wait_timeout(Duration::from_millis(10)).unwrap(), 0);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            c.notify().unwrap();
        });
        assert_eq!(n.wait_timeout(Duration::from_secs(10)).unwrap(), 1);
        t.join().unwrap();
    }
}
