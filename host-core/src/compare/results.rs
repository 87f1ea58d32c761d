//! What the placements' runs give back, shared by the engine targets
//! (`target.rs`) and the docker reference column (`docker.rs`).

use std::time::Duration;

/// Where the bind-mounted host folder appears in the container.
pub const BIND_TARGET: &str = "/berth-compare-bind";

/// The port the `net` workload's container listens on, published on the
/// host's 127.0.0.1 at a port the engine picks.
pub const NET_PORT: u16 = 5001;

/// What one attached run gave.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// From the request to the first byte of output.
    pub first_output: Option<Duration>,
    /// From the request to the exit.
    pub exited: Duration,
    /// From the exit until the container (and its VM) is gone.
    pub teardown: Duration,
    pub code: i32,
    pub stdout: String,
}

/// What one exec gave.
#[derive(Debug, Clone)]
pub struct ExecResult {
    pub elapsed: Duration,
    pub code: i32,
    pub stdout: String,
}
