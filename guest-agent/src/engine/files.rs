//! One container's files under `<root>/containers/<id>/` (see
//! [`crate::layout::Layout::container`]): every name the engine and the
//! shims use there, and [`ContainerPaths`] to reach them.

use crate::layout::Layout;
use std::path::PathBuf;

/// The container's record ([`super::record::ContainerRecord`]).
pub const RECORD: &str = "container.json";
/// Its current run ([`super::record::RunState`]), written by the shim.
pub const RUN_STATE: &str = "state.json";
/// How its last run ended ([`super::record::ExitState`]).
pub const EXIT_STATE: &str = "exit.json";
/// How often the restart policy restarted it (a decimal number).
pub const RESTARTS: &str = "restarts";
/// The shim's own log (stderr).
pub const SHIM_LOG: &str = "shim.log";
/// The container's output (json-file lines).
pub const LOG: &str = "container.log";
/// The directory of its execs (`super::exec`).
pub const EXEC_DIR: &str = "exec";
/// The OCI bundle (`config.json`, the `rootfs` mount point).
pub const BUNDLE: &str = "bundle";
/// The root filesystem inside [`BUNDLE`].
pub const ROOTFS: &str = "rootfs";
/// Overlay upper and work directories.
pub const UPPER: &str = "upper";
pub const WORK: &str = "work";
/// The empty lower directory of an image without layers.
pub const EMPTY_LOWER: &str = "empty";
/// The container's network namespace (a bind mount).
pub const NETNS: &str = "netns";
/// The generated `/etc/hostname` and `/etc/hosts`.
pub const ETC: &str = "etc";
/// `containers/<id>/health.json`: the container's `State.Health`.
pub const HEALTH_FILE: &str = "health.json";
/// Marker files: paused by the user (`pause`) ...
pub const PAUSED: &str = "paused";
/// Stopped by the user: restart policies leave it alone.
pub const STOPPED: &str = "stopped";
/// Written by a shim just before it asks for the user's process to start:
/// the agent never retries a start whose shim got that far.
pub const START_ATTEMPTED: &str = "start-attempted";

/// Paths of one container's files.
pub struct ContainerPaths {
    /// `<root>/containers/<id>`.
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub bundle: PathBuf,
    pub netns: PathBuf,
    pub log: PathBuf,
}

impl ContainerPaths {
    pub fn new(layout: &Layout, id: &str) -> ContainerPaths {
        let dir = layout.container(id);
        ContainerPaths {
            rootfs: dir.join(BUNDLE).join(ROOTFS),
            upper: dir.join(UPPER),
            work: dir.join(WORK),
            bundle: dir.join(BUNDLE),
            netns: dir.join(NETNS),
            log: dir.join(LOG),
            dir,
        }
    }
}

impl ContainerPaths {
    pub fn record(&self) -> PathBuf {
        self.dir.join(RECORD)
    }
    pub fn run_state(&self) -> PathBuf {
        self.dir.join(RUN_STATE)
    }
    pub fn exit_state(&self) -> PathBuf {
        self.dir.join(EXIT_STATE)
    }
}

/// The `restarts` count in a container directory (0 when missing).
pub fn restart_count(dir: &std::path::Path) -> u32 {
    std::fs::read_to_string(dir.join(RESTARTS))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
