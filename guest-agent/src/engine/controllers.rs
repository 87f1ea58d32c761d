//! Which cgroup v2 controllers the containers' cgroups (`/berth/<id>`) get.
//!
//! libcgroups, creating a missing cgroup, enables every controller the root
//! offers in `cgroup.subtree_control` at the root and at each level down.
//! With the `cpu` controller on, the scheduler keeps a task group per level
//! and walks them on every sleep, wake-up and tick: in the guest (an
//! emulated kernel on kvm_pvm hosts) a quarter to a third of all kernel
//! work in the fs benchmark (benches/README.md). `cpu` and `cpuset` only
//! serve limits (usage in `cpu.stat` is there without them), so the engine
//! makes the container's cgroup itself, before libcontainer, with every
//! controller but those two, and turns them on only for a container whose
//! spec (or `update`) sets CPU limits. libcgroups then finds the cgroup and
//! only moves the process into it.
//!
//! [`relax`] turns them off again at `/berth` (and at the root where
//! `/berth` is the root's only child, as in the guest; never on a host
//! with other cgroups beside it) once no container cgroup uses them. A
//! create or update that wants them holds a shared `flock` on `/berth`
//! from enabling them until its limits are written; `relax` only acts
//! while it gets the lock exclusively without waiting, so it never turns
//! a controller off under a container about to use it.
//!
//! Cgroup v1 (separate hierarchies, no subtree control) is left to
//! libcgroups as before.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
const PARENT: &str = "berth";
const SUBTREE: &str = "cgroup.subtree_control";
/// Controllers enabled only while a container sets limits with them.
const ON_DEMAND: [&str; 2] = ["cpu", "cpuset"];

/// The on-demand controllers a container's limits need.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Wants {
    pub cpu: bool,
    pub cpuset: bool,
}

impl Wants {
    /// From an OCI `linux.resources.cpu` object: shares, quota, period,
    /// burst, idle or realtime settings need `cpu`; cpus or mems need
    /// `cpuset`.
    pub fn of_cpu(cpu: &serde_json::Value) -> Wants {
        let Some(o) = cpu.as_object() else {
            return Wants::default();
        };
        let set = |k: &str| o.get(k).is_some_and(|v| !v.is_null());
        Wants {
            cpu: o
                .keys()
                .any(|k| k != "cpus" && k != "mems" && set(k.as_str())),
            cpuset: set("cpus") || set("mems"),
        }
    }

    fn wants(&self, controller: &str) -> bool {
        match controller {
            "cpu" => self.cpu,
            "cpuset" => self.cpuset,
            _ => false,
        }
    }

    fn any(&self) -> bool {
        self.cpu || self.cpuset
    }
}

/// Keeps the on-demand controllers on while held (a shared lock on
/// `/berth`); drop it once the limits are written.
#[derive(Debug)]
pub struct Guard {
    _lock: Option<File>,
}

fn v2() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

fn parent() -> PathBuf {
    Path::new(ROOT).join(PARENT)
}

fn bad_id(id: &str) -> bool {
    id.is_empty() || id.contains('/') || id == "." || id == ".."
}

/// `flock` on `f`; false when it would block (`LOCK_NB`) or failed.
fn flock(f: &File, op: libc::c_int) -> bool {
    loop {
        // SAFETY: flock on a descriptor this function borrows; no memory
        // is passed.
        let r = unsafe { libc::flock(f.as_raw_fd(), op) };
        if r == 0 {
            return true;
        }
        if std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
            return false;
        }
    }
}

/// Enables the controllers a container under `/berth` needs at the root
/// and at `/berth`: every controller the root offers except `cpu` and
/// `cpuset`, which only when `wants` says so. Best effort per controller,
/// as libcgroups: a limit whose controller is missing fails when written.
fn enable(wants: Wants) -> std::io::Result<Guard> {
    let parent = parent();
    match std::fs::create_dir(&parent) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let lock = if wants.any() {
        let f = File::open(&parent)?;
        if !flock(&f, libc::LOCK_SH) {
            return Err(std::io::Error::last_os_error());
        }
        Some(f)
    } else {
        None
    };
    let available = std::fs::read_to_string(Path::new(ROOT).join("cgroup.controllers"))?;
    let needed: Vec<&str> = available
        .split_whitespace()
        .filter(|c| !ON_DEMAND.contains(c) || wants.wants(c))
        .collect();
    // The common case, all on already at /berth (so at the root): one read.
    let have = std::fs::read_to_string(parent.join(SUBTREE)).unwrap_or_default();
    let have: Vec<&str> = have.split_whitespace().collect();
    if needed.iter().any(|c| !have.contains(c)) {
        for dir in [Path::new(ROOT), parent.as_path()] {
            for c in &needed {
                let _ = std::fs::write(dir.join(SUBTREE), format!("+{c}"));
            }
        }
    }
    Ok(Guard { _lock: lock })
}

/// Before libcontainer creates container `id`: makes `/berth/<id>` with the
/// controllers `wants` needs (see the module docs). Hold the guard until
/// libcontainer has written the limits. Nothing to do on cgroup v1.
pub fn prepare(id: &str, wants: Wants) -> std::io::Result<Guard> {
    if !v2() {
        return Ok(Guard { _lock: None });
    }
    if bad_id(id) {
        return Err(std::io::Error::other(format!("bad container id {id:?}")));
    }
    let guard = enable(wants)?;
    match std::fs::create_dir(parent().join(id)) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    Ok(guard)
}

/// Before `update` writes limits to an existing container's cgroup:
/// enables what they need. Hold the guard until they are written.
pub fn prepare_update(wants: Wants) -> std::io::Result<Guard> {
    if !v2() || !wants.any() {
        return Ok(Guard { _lock: None });
    }
    enable(wants)
}

/// Whether the cgroup `dir` uses `controller`: a limit other than the
/// kernel's default, or the controller enabled below it. An unreadable
/// file counts as in use.
fn uses(dir: &Path, controller: &str) -> bool {
    let read = |f: &str| match std::fs::read_to_string(dir.join(f)) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == ErrorKind::NotFound => Some(String::new()),
        Err(_) => None,
    };
    let Some(sub) = read(SUBTREE) else {
        return true;
    };
    if sub.split_whitespace().any(|c| c == controller) {
        return true;
    }
    match controller {
        "cpu" => {
            let (Some(max), Some(weight)) = (read("cpu.max"), read("cpu.weight")) else {
                return true;
            };
            let limited = max.split_whitespace().next().is_some_and(|q| q != "max");
            let weighted = !weight.trim().is_empty() && weight.trim() != "100";
            limited || weighted
        }
        "cpuset" => {
            let (Some(cpus), Some(mems)) = (read("cpuset.cpus"), read("cpuset.mems")) else {
                return true;
            };
            !cpus.trim().is_empty() || !mems.trim().is_empty()
        }
        _ => true,
    }
}

/// After a container's cgroup is gone: turns `cpu`/`cpuset` off at
/// `/berth` when no container cgroup uses them, and at the root when
/// `/berth` is its only child. Does nothing while a create or update that
/// wants them holds the lock (the next removal tries again).
pub fn relax() {
    if !v2() {
        return;
    }
    let parent = parent();
    let Ok(sub) = std::fs::read_to_string(parent.join(SUBTREE)) else {
        return;
    };
    let on: Vec<&str> = sub
        .split_whitespace()
        .filter(|c| ON_DEMAND.contains(c))
        .collect();
    if on.is_empty() {
        return;
    }
    let Ok(lock) = File::open(&parent) else {
        return;
    };
    if !flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return;
    };
    let children: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    let root_alone = std::fs::read_dir(ROOT).is_ok_and(|rd| {
        rd.filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .all(|e| e.file_name() == PARENT)
    });
    // cpuset after cpu: the order does not matter to the kernel, but both
    // go at /berth before the root (a parent cannot drop a controller a
    // child still enables).
    for c in on {
        if children.iter().any(|d| uses(d, c)) {
            continue;
        }
        if std::fs::write(parent.join(SUBTREE), format!("-{c}")).is_ok() && root_alone {
            let _ = std::fs::write(Path::new(ROOT).join(SUBTREE), format!("-{c}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cpu_limits_want_the_cpu_controller() {
        assert_eq!(Wants::of_cpu(&json!(null)), Wants::default());
        assert_eq!(Wants::of_cpu(&json!({})), Wants::default());
        assert_eq!(
            Wants::of_cpu(&json!({"period": 100000, "quota": 50000})),
            Wants {
                cpu: true,
                cpuset: false
            }
        );
        assert_eq!(
            Wants::of_cpu(&json!({"shares": 512})),
            Wants {
                cpu: true,
                cpuset: false
            }
        );
        assert_eq!(
            Wants::of_cpu(&json!({"cpus": "0"})),
            Wants {
                cpu: false,
                cpuset: true
            }
        );
        assert_eq!(
            Wants::of_cpu(&json!({"cpus": "0", "shares": 2})),
            Wants {
                cpu: true,
                cpuset: true
            }
        );
        assert_eq!(
            Wants::of_cpu(&json!({"cpus": null, "quota": null})),
            Wants::default()
        );
    }

    #[test]
    fn a_cgroup_without_limits_does_not_use_cpu() {
        let d = std::env::temp_dir().join(format!("berth-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cpu.max"), "max 100000\n").unwrap();
        std::fs::write(d.join("cpu.weight"), "100\n").unwrap();
        std::fs::write(d.join(SUBTREE), "\n").unwrap();
        std::fs::write(d.join("cpuset.cpus"), "\n").unwrap();
        std::fs::write(d.join("cpuset.mems"), "\n").unwrap();
        assert!(!uses(&d, "cpu"));
        assert!(!uses(&d, "cpuset"));
        std::fs::write(d.join("cpu.max"), "50000 100000\n").unwrap();
        assert!(uses(&d, "cpu"));
        std::fs::write(d.join("cpu.max"), "max 100000\n").unwrap();
        std::fs::write(d.join("cpu.weight"), "39\n").unwrap();
        assert!(uses(&d, "cpu"));
        std::fs::write(d.join("cpu.weight"), "100\n").unwrap();
        std::fs::write(d.join(SUBTREE), "memory cpu\n").unwrap();
        assert!(uses(&d, "cpu"));
        assert!(!uses(&d, "cpuset"));
        std::fs::write(d.join("cpuset.cpus"), "0-1\n").unwrap();
        assert!(uses(&d, "cpuset"));
        // A cgroup without the controller's files does not use it.
        let e = d.join("empty");
        std::fs::create_dir_all(&e).unwrap();
        assert!(!uses(&e, "cpu"));
        assert!(!uses(&e, "cpuset"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
