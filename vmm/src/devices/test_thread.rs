//! Test-only: a thread that runs device code the way production's thread
//! of that kind runs it. On Linux x86_64 it is confined with the kind's
//! real seccomp filter (see `confine::testing`: a refused call fails the
//! test, named); elsewhere (no confinement there) it is a plain thread.
//!
//! A device's tests keep the device on a [`DeviceThread`] and make each
//! call that production makes on a confined thread through
//! [`DeviceThread::call`]; what plays the guest or a host peer stays on
//! the test's own thread.

// Only Linux builds virtio-fs (and Windows no vsock), whose tests use
// DeviceThread and the kinds they need.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

/// The production thread whose filter a [`DeviceThread`] runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `berth-vcpuN`: port and MMIO exits (serial, virtio transports).
    Vcpu,
    /// `berth-events`: the virtio queues and the vsock muxer's host
    /// events, of a VM without virtio-fs shares (no capabilities kept).
    Events,
    /// `berth-events` of a VM with virtio-fs shares (keeps DAC_OVERRIDE
    /// and FOWNER).
    EventsWithShares,
    /// `berth-usernet`: the user-mode network stack.
    Net,
    /// The main thread while the VM runs: snapshots (a device's
    /// `snapshot_blocker`, `save`).
    Main,
}

type Job<T> = Box<dyn FnOnce(&mut T) + Send>;
type Outcome<R> = Result<R, Box<dyn Any + Send>>;

/// A thread of `Kind` that owns a `T` (a device, a muxer, a stack, or
/// an `Arc` of one shared with another `DeviceThread`) and runs closures
/// on it.
pub struct DeviceThread<T: Send + 'static> {
    jobs: Option<Sender<Job<T>>>,
    thread: Option<JoinHandle<()>>,
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    run: std::sync::Arc<crate::confine::testing::Run>,
}

impl<T: Send + 'static> DeviceThread<T> {
    /// Starts the thread, confines it as `kind`, and gives it `value`.
    pub fn spawn(kind: Kind, value: T) -> Self {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        let run = {
            use crate::confine::ThreadKind as K;
            let (k, shares) = match kind {
                Kind::Vcpu => (K::Vcpu, false),
                Kind::Events => (K::Events, false),
                Kind::EventsWithShares => (K::Events, true),
                Kind::Net => (K::Net, false),
                Kind::Main => (K::Main, false),
            };
            std::sync::Arc::new(crate::confine::testing::Run::new(k, shares))
        };
        let (jobs, rx) = channel::<Job<T>>();
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        let confine = {
            let run = run.clone();
            move || run.confine_this_thread()
        };
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        let confine = || {};
        let (ready_tx, ready) = channel();
        let thread = std::thread::Builder::new()
            .name(format!("test-{kind:?}"))
            .spawn(move || {
                let mut value = value;
                let confined = std::panic::catch_unwind(AssertUnwindSafe(confine));
                let ok = confined.is_ok();
                let _ = ready_tx.send(confined);
                if !ok {
                    return;
                }
                while let Ok(job) = rx.recv() {
                    job(&mut value);
                }
            })
            .expect("spawning a device thread");
        if let Err(p) = ready.recv().expect("the device thread started") {
            std::panic::resume_unwind(p);
        }
        DeviceThread {
            jobs: Some(jobs),
            thread: Some(thread),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            run,
        }
    }

    /// Runs `f` on the thread and returns its result. Fails the test when
    /// the thread's filter refused a call (during `f` or before), naming
    /// it; passes on a panic of `f`.
    pub fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut T) -> R + Send + 'static) -> R {
        let (tx, rx) = channel::<Outcome<R>>();
        let job: Job<T> = Box::new(move |value| {
            let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(|| f(value))));
        });
        self.jobs
            .as_ref()
            .expect("the device thread runs")
            .send(job)
            .expect("the device thread ended");
        let got = rx.recv().expect("the device thread ended");
        self.check(got.as_ref().err().map(|p| &**p));
        got.unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn check(&self, panic: Option<&(dyn Any + Send)>) {
        self.run.check(panic);
    }

    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    fn check(&self, _panic: Option<&(dyn Any + Send)>) {}
}

impl<T: Send + 'static> Drop for DeviceThread<T> {
    /// Ends the thread (the value is dropped there, as a device's drop
    /// runs in production when its thread ends) and checks once more.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !std::thread::panicking() {
            self.check(None);
        }
    }
}

/// Runs `f` (which may borrow from the test) once on a new thread of
/// `kind`, confined as [`DeviceThread`]'s, and returns its result; a call
/// the filter refused fails the test, named.
pub fn on_thread<R: Send>(kind: Kind, f: impl FnOnce() -> R + Send) -> R {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        use crate::confine::testing::{run_confined, run_confined_with_shares};
        use crate::confine::ThreadKind as K;
        match kind {
            Kind::Vcpu => run_confined(K::Vcpu, f),
            Kind::Events => run_confined(K::Events, f),
            Kind::EventsWithShares => run_confined_with_shares(f),
            Kind::Net => run_confined(K::Net, f),
            Kind::Main => run_confined(K::Main, f),
        }
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        let _ = kind;
        std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}
