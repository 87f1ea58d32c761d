//! The agent's child processes: a reaper thread for the shims it starts,
//! and [`wait_owned`] for the children a thread waits for itself.

/// Children that some thread waits for itself (see [`wait_owned`]): the
/// reaper leaves them alone.
static OWNED_CHILDREN: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Reaps exited children (shims) so none stays a zombie, except those a
/// thread waits for itself ([`wait_owned`]).
pub fn spawn_reaper() {
    use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag};
    std::thread::spawn(|| loop {
        // Look without reaping, then reap only what nobody else awaits.
        match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(nix::errno::Errno::ECHILD) => {
                // No children at all: nothing can need reaping before one
                // is spawned. Each wake-up is guest-kernel work (emulated
                // on kvm_pvm hosts), so an idle agent looks rarely; a child
                // that exits meanwhile stays a zombie that long (liveness
                // checks treat zombies as gone).
                std::thread::sleep(std::time::Duration::from_secs(5));
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Ok(st) => {
                let Some(pid) = st.pid() else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                let owned = OWNED_CHILDREN
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&pid.as_raw());
                if owned {
                    // Its owner reaps it in a moment.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                } else {
                    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                }
            }
        }
    });
}

/// Runs `cmd` to completion with its output captured, safe from the
/// reaper thread (which would otherwise take its exit status).
pub fn wait_owned(
    mut cmd: std::process::Command,
    stdin: Option<&[u8]>,
) -> std::io::Result<std::process::Output> {
    use std::io::Write;
    let mut list = OWNED_CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    // Spawned under the lock: the reaper cannot look at the new child
    // before it is on the list.
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    list.push(pid);
    drop(list);
    let result = (|| {
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input)?;
        }
        child.wait_with_output()
    })();
    OWNED_CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
    result
}
