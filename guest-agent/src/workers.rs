//! Threads kept for the next job once done: creating a thread (stack,
//! guard page, signal stack, clone) and tearing it down cost more than a
//! short connection's bytes, and in a guest whose kernel is emulated
//! (kvm_pvm) each of those system calls is slow. A thread idle for
//! [`IDLE`] ends.
//!
//! Used for the agent's connections (one job each), the relay direction of
//! its `PortConnect`, and the published-port proxy's TCP directions.

use std::collections::VecDeque;
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

/// How long a thread waits for another job before it ends.
pub const IDLE: Duration = Duration::from_secs(30);

/// A pool of threads of one name and stack size; a `static`.
pub struct Pool {
    name: &'static str,
    /// `None`: std's default (2 MiB, or `RUST_MIN_STACK`).
    stack: Option<usize>,
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// Jobs handed to idle threads; never more of them than idle threads.
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
}

impl Pool {
    pub const fn new(name: &'static str, stack: Option<usize>) -> Pool {
        Pool {
            name,
            stack,
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: 0,
            }),
            wake: Condvar::new(),
        }
    }

    /// Locks, going on after a panic elsewhere (a job panics outside the
    /// lock; the queue stays consistent).
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `job` on an idle thread, or on a new one; `Err` when no thread
    /// can be created (`job` is dropped).
    pub fn run(&'static self, job: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let job: Job = Box::new(job);
        let mut queue = self.lock();
        if queue.idle > queue.jobs.len() {
            queue.jobs.push_back(job);
            drop(queue);
            self.wake.notify_one();
            return Ok(());
        }
        drop(queue);
        let mut builder = std::thread::Builder::new().name(self.name.into());
        if let Some(stack) = self.stack {
            builder = builder.stack_size(stack);
        }
        builder.spawn(move || self.work(job)).map(drop)
    }

    /// Runs `job`, then the jobs handed over, until idle for [`IDLE`].
    fn work(&self, mut job: Job) {
        loop {
            job();
            let mut queue = self.lock();
            queue.idle += 1;
            let until = Instant::now() + IDLE;
            job = loop {
                if let Some(next) = queue.jobs.pop_front() {
                    queue.idle -= 1;
                    break next;
                }
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    queue.idle -= 1;
                    return;
                }
                queue = match self.wake.wait_timeout(queue, left) {
                    Ok((queue, _)) => queue,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            };
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    static TEST_POOL: Pool = Pool::new("test-pool", Some(64 * 1024));

    /// Runs 50 jobs on `pool` one after another: they must mostly land on
    /// a kept thread (a job may still find its predecessor's thread busy
    /// between its job and the pool, and other tests may share the pool,
    /// so only "far fewer threads than jobs" is certain).
    pub fn assert_threads_reused(pool: &'static Pool) {
        let mut threads = std::collections::HashSet::new();
        for _ in 0..50 {
            let (done, wait) = std::sync::mpsc::channel();
            pool.run(move || done.send(std::thread::current().id()).unwrap())
                .unwrap();
            threads.insert(wait.recv_timeout(Duration::from_secs(10)).unwrap());
            // Let the thread get back to waiting.
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(threads.len() < 25, "{} threads for 50 jobs", threads.len());
    }

    #[test]
    fn threads_are_reused() {
        assert_threads_reused(&TEST_POOL);
    }

    static BLOCKING_POOL: Pool = Pool::new("test-blocking", None);

    /// Jobs that block do not hold up the next ones: each gets a thread.
    #[test]
    fn blocked_jobs_do_not_starve_new_ones() {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = std::sync::Arc::new(Mutex::new(gate));
        let (started, seen) = std::sync::mpsc::channel();
        for i in 0..4 {
            let (gate, started) = (gate.clone(), started.clone());
            BLOCKING_POOL
                .run(move || {
                    started.send(i).unwrap();
                    let _ = gate.lock().unwrap().recv();
                })
                .unwrap();
        }
        let mut got: Vec<i32> = (0..4)
            .map(|_| seen.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3]);
        for _ in 0..4 {
            release.send(()).unwrap();
        }
    }
}
