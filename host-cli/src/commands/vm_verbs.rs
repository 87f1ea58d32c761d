//! Looking up a detached own-VM container (`berth --isolation vm run -d`)
//! for the verbs that work on one container through its VM's guest
//! engine (`exec`, `attach`, `top`, `diff`, `wait`, `restart`, …); the
//! errors printed are docker's.

use crate::engine::Engine;
use berth_host::vm_fleet::{self, Entry};

/// The container `key` names; otherwise docker's error is printed and
/// the exit code returned.
pub fn find(key: &str) -> Result<Entry, i32> {
    vm_fleet::find(key).map_err(|e| {
        eprintln!("Error response from daemon: {e}");
        1
    })
}

/// A running container's guest engine and id; otherwise docker's error
/// (no such container, not running) is printed and the exit code
/// returned.
pub fn running(key: &str) -> Result<(Engine, String), i32> {
    let e = find(key)?;
    if !e.running() {
        eprintln!(
            "Error response from daemon: container {} is not running",
            e.record.id
        );
        return Err(1);
    }
    match e.engine() {
        Ok(c) => Ok((c, e.record.id.clone())),
        Err(err) => {
            eprintln!("Error response from daemon: {err:#}");
            Err(1)
        }
    }
}

/// The exit code of `e`'s container: through its guest engine while it
/// runs (blocks until it exits), from the record once it stopped.
pub fn wait(e: &Entry) -> Result<i32, String> {
    if e.running() {
        if let Ok(code) = e
            .engine()
            .map_err(|e| e.to_string())
            .and_then(|mut c| c.container_wait(&e.record.id).map_err(|e| e.to_string()))
        {
            return Ok(code);
        }
        // The VM went off under the request: its keeper records the exit.
        e.wait_keeper(std::time::Duration::from_secs(60));
    }
    let now = vm_fleet::find(&e.record.id).map_err(|err| err.to_string())?;
    Ok(now.summary().exit_code.unwrap_or(0))
}

/// `restart` of a running container, in place in its VM: its keeper is
/// told not to take the stop for the end.
pub fn restart(e: &Entry, time: Option<i64>) -> Result<(), String> {
    let _mark = vm_fleet::Restarting::mark(&e.dir).map_err(|e| format!("{e:#}"))?;
    let mut c = e.engine().map_err(|e| format!("{e:#}"))?;
    c.container_restart(&e.record.id, time)
        .map_err(|e| e.to_string())
}
