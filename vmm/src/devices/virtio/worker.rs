//! Threads that run virtio devices where there is no epoll event loop (the
//! portable VM assemblies `x86_vm` and `arm64_vm`): one thread per queue
//! waits on the queue's [`QueueNotifier`] and processes the queue; a device
//! with host-side events (vsock's socket multiplexer) gets one more thread
//! that waits for its host fd to become readable (poll(2): epoll and kqueue
//! fds are both pollable). Devices are the same as under the KVM VMM's
//! event loop; only who calls `process_queue` / `process_host_events`
//! differs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::VirtioDevice;
use crate::devices::notify::QueueNotifier;

/// How long a worker waits before it checks whether it should stop.
const TICK: Duration = Duration::from_millis(100);

/// The worker threads of a VM's devices.
#[derive(Default)]
pub struct DeviceWorkers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DeviceWorkers {
    /// No workers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the workers of `dev`, whose queue `i` rings `notifiers[i]`.
    pub fn spawn(&mut self, dev: Arc<Mutex<dyn VirtioDevice>>, notifiers: Vec<QueueNotifier>) {
        for (q, notifier) in notifiers.into_iter().enumerate() {
            let (dev, stop) = (dev.clone(), self.stop.clone());
            self.threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if notifier.wait_timeout(TICK).unwrap_or(0) > 0 {
                        lock(&dev).process_queue(q);
                    }
                }
            }));
        }
        #[cfg(unix)]
        {
            let fd = lock(&dev).host_event_fd();
            if let Some(fd) = fd {
                let stop = self.stop.clone();
                self.threads.push(std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match crate::sys::wait_readable(fd, TICK) {
                            Ok(true) => lock(&dev).process_host_events(),
                            Ok(false) => {}
                            // Not expected for a live fd; do not spin.
                            Err(_) => std::thread::sleep(TICK),
                        }
                    }
                }));
            }
        }
    }

    /// Stops every worker and waits for it (each notices within [`TICK`]).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn lock<'a>(
    dev: &'a Mutex<dyn VirtioDevice + 'static>,
) -> std::sync::MutexGuard<'a, dyn VirtioDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}
