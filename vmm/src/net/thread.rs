//! [`UserNetThread`]: runs a [`UserNet`] on its own thread, with frame
//! queues to and from the device.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::Waker;

use super::{NetError, UserNet, MAX_QUEUED_FRAMES};

/// Called (on the stack's thread) when frames for the guest became
/// available.
pub type GuestNotify = Box<dyn Fn() + Send + Sync>;

struct Shared {
    to_stack: Mutex<VecDeque<Vec<u8>>>,
    to_guest: Mutex<VecDeque<Vec<u8>>>,
    stop: AtomicBool,
    /// TCP connections and UDP flows the stack held after its last round
    /// (what a snapshot cannot carry: their host sockets).
    flows: AtomicUsize,
}

/// A [`UserNet`] running on its own thread. Dropping it stops the thread.
pub struct UserNetThread {
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl UserNetThread {
    /// Starts `net` on a new thread; `notify` is called whenever frames for
    /// the guest were queued.
    pub fn spawn(mut net: UserNet, notify: GuestNotify) -> Result<Self, NetError> {
        let shared = Arc::new(Shared {
            to_stack: Mutex::new(VecDeque::new()),
            to_guest: Mutex::new(VecDeque::new()),
            stop: AtomicBool::new(false),
            flows: AtomicUsize::new(0),
        });
        let waker = net.waker();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("berth-usernet".into())
            .spawn(move || {
                #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
                crate::confine::confine_or_exit(crate::confine::ThreadKind::Net);
                while !s.stop.load(Ordering::Relaxed) {
                    let input = std::mem::take(&mut *lock(&s.to_stack));
                    for frame in &input {
                        net.guest_frame(frame);
                    }
                    let count = |net: &UserNet| {
                        let (tcp, udp) = net.flow_counts();
                        s.flows.store(tcp + udp, Ordering::SeqCst);
                    };
                    // Before the poll too: a frame that opened a flow
                    // shows at once, not after the poll's wait.
                    count(&net);
                    net.poll(Duration::from_secs(1));
                    count(&net);
                    let mut moved = false;
                    {
                        let mut out = lock(&s.to_guest);
                        while out.len() < MAX_QUEUED_FRAMES {
                            let Some(frame) = net.take_guest_frame() else {
                                break;
                            };
                            out.push_back(frame);
                            moved = true;
                        }
                    }
                    if moved {
                        notify();
                    }
                }
            })
            .map_err(NetError::Thread)?;
        Ok(UserNetThread {
            shared,
            waker,
            thread: Some(thread),
        })
    }

    /// Queues a frame from the guest; false (dropped) when the stack is
    /// behind by [`MAX_QUEUED_FRAMES`] frames.
    pub fn send_frame(&self, frame: &[u8]) -> bool {
        {
            let mut q = lock(&self.shared.to_stack);
            if q.len() >= MAX_QUEUED_FRAMES {
                return false;
            }
            q.push_back(frame.to_vec());
        }
        let _ = self.waker.wake();
        true
    }

    /// The next frame for the guest.
    pub fn recv_frame(&self) -> Option<Vec<u8>> {
        let (frame, was_full) = {
            let mut q = lock(&self.shared.to_guest);
            let full = q.len() >= MAX_QUEUED_FRAMES;
            (q.pop_front(), full)
        };
        if was_full {
            // The stack holds frames back while the queue is full.
            let _ = self.waker.wake();
        }
        frame
    }

    /// Puts a frame taken with [`Self::recv_frame`] back at the front (the
    /// guest had no buffer for it).
    pub fn unrecv_frame(&self, frame: Vec<u8>) {
        lock(&self.shared.to_guest).push_front(frame);
    }

    /// TCP connections and UDP flows open in the stack (as of its last
    /// round; frames from the guest it has not read yet may open more).
    pub fn flows(&self) -> usize {
        self.shared.flows.load(Ordering::SeqCst)
    }

    /// Frames from the guest the stack has not read yet.
    pub fn pending_from_guest(&self) -> usize {
        lock(&self.shared.to_stack).len()
    }

    /// Whether frames for the guest wait.
    pub fn has_frames(&self) -> bool {
        !lock(&self.shared.to_guest).is_empty()
    }
}

impl Drop for UserNetThread {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
