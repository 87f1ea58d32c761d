//! Fault injection for the black-box tests of the start retry and of the
//! missing-init-pid workaround: a file in a container's directory (which
//! belongs to the engine, so only whoever owns the engine can place it)
//! makes that container's next shim fail in one way, once.
//!
//! Compiled in only with the `fault-injection` cargo feature, which
//! `scripts/dev-build.sh` enables for the test variant of the agent
//! (`fault-injection/berth-agent` beside the release `berth-agent`); the release agent
//! has none of it, and every check here is `false` there.

use std::path::Path;

/// One kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The shim dies right after creating the container, leaving a created
    /// container behind (as shims that died in emulated guests did).
    ShimDies,
    /// The shim acts as if libcontainer's saved state had no init pid.
    StateWithoutPid,
    /// The shim stops for [`PAUSE_AFTER_START`] right after it recorded
    /// the container's `start` event (what a client acting on the event
    /// finds then, made deterministic).
    PauseAfterStartEvent,
}

/// How long [`Fault::PauseAfterStartEvent`] holds the shim.
pub const PAUSE_AFTER_START: std::time::Duration = std::time::Duration::from_secs(5);

impl Fault {
    /// The file in the container's directory that arms this fault.
    #[cfg(feature = "fault-injection")]
    pub fn file_name(self) -> &'static str {
        match self {
            Fault::ShimDies => "fault-shim-dies-once",
            Fault::StateWithoutPid => "fault-state-without-pid-once",
            Fault::PauseAfterStartEvent => "fault-pause-after-start-event-once",
        }
    }
}

/// Whether `fault` is armed for the container in `dir`; disarms it.
#[cfg(feature = "fault-injection")]
pub fn take(dir: &Path, fault: Fault) -> bool {
    std::fs::remove_file(dir.join(fault.file_name())).is_ok()
}

/// Without the `fault-injection` feature no fault is ever armed.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn take(_dir: &Path, _fault: Fault) -> bool {
    false
}

/// [`Fault::ShimDies`]: aborts the shim of container `id` if armed.
pub fn shim_dies_here(dir: &Path, id: &str) {
    if take(dir, Fault::ShimDies) {
        #[cfg(feature = "fault-injection")]
        {
            eprintln!("berth-agent: container {id}: fault injected: shim dies");
            std::process::abort();
        }
        #[cfg(not(feature = "fault-injection"))]
        let _ = id;
    }
}

/// [`Fault::PauseAfterStartEvent`]: holds the shim if armed.
pub fn shim_pauses_after_start_event(dir: &Path) {
    if take(dir, Fault::PauseAfterStartEvent) {
        std::thread::sleep(PAUSE_AFTER_START);
    }
}

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use super::*;

    #[test]
    fn a_fault_fires_once() {
        let d = tempfile::tempdir().unwrap();
        assert!(!take(d.path(), Fault::StateWithoutPid));
        std::fs::write(d.path().join(Fault::StateWithoutPid.file_name()), b"").unwrap();
        assert!(!take(d.path(), Fault::ShimDies));
        assert!(take(d.path(), Fault::StateWithoutPid));
        assert!(!take(d.path(), Fault::StateWithoutPid));
    }
}

#[cfg(all(test, not(feature = "fault-injection")))]
mod tests {
    use super::*;

    #[test]
    fn no_fault_fires_without_the_feature() {
        let d = tempfile::tempdir().unwrap();
        for name in ["fault-shim-dies-once", "fault-state-without-pid-once"] {
            std::fs::write(d.path().join(name), b"").unwrap();
        }
        assert!(!take(d.path(), Fault::ShimDies));
        assert!(!take(d.path(), Fault::StateWithoutPid));
        shim_dies_here(d.path(), "c1");
        assert!(d.path().join("fault-shim-dies-once").exists());
    }
}
