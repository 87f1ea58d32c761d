//! Socket helpers shared by the shim's servers ([`super::dns`],
//! [`super::proxy`]).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A slot counted in a shared counter, given back on drop.
pub struct Permit(Arc<AtomicUsize>);

impl Permit {
    pub fn acquire(counter: &Arc<AtomicUsize>, max: usize) -> Option<Permit> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit(counter.clone()))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a socket error means the socket itself is unusable (rather than
/// a passing shortage of descriptors or memory, or an aborted connection).
pub fn is_fatal(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP)
    )
}

/// Runs a socket call again when a signal interrupted it (the shim has
/// signal handlers).
pub fn retry<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}
