//! `--ipc`, `--pid`, `--uts`, `--cgroupns` and `--log-driver`: docker's
//! daemon checks at create, the other container a mode names resolved to
//! its full ID, and at start the namespaces a container joins.
//!
//! `host` means the namespaces of the agent: the host's natively, the
//! machine VM's (or the own VM's) elsewhere.

use super::error::{Error, Object};
use berth_protocol::ContainerConfig;
use std::path::{Path, PathBuf};

/// What this module needs to know of the other containers a mode names
/// (the engine's container store gives it; a trait keeps this module
/// below the store).
pub trait Donors {
    /// The full id of container `key` (a name, an id or its prefix) and
    /// its `--ipc` mode.
    fn donor(&self, key: &str) -> Result<(String, Option<String>), Error>;
    /// The pid of container `id`'s process while it runs (or is paused).
    fn running_pid(&self, id: &str) -> Option<i32>;
    /// Container `id`'s directory.
    fn dir(&self, id: &str) -> PathBuf;
}

/// Where a `shareable` container's `/dev/shm` lives, in its directory.
const SHM_DIR: &str = "shm";

/// The log drivers berth has: `local` keeps the log as `json-file` does.
pub const LOG_DRIVERS: [&str; 3] = ["json-file", "local", "none"];

/// docker's daemon-side checks (an API client may send anything; the CLI
/// has already refused what docker's CLI refuses).
pub fn validate(cfg: &ContainerConfig) -> Result<(), Error> {
    if let Some(m) = &cfg.ipc_mode {
        let ok = matches!(m.as_str(), "" | "none" | "private" | "shareable" | "host")
            || m.starts_with("container:");
        if !ok {
            return Err(Error::invalid(format!("Invalid IPC mode: {m}")));
        }
    }
    if let Some(m) = &cfg.pid_mode {
        if !(m.is_empty() || m == "host" || m.starts_with("container:")) {
            return Err(Error::invalid(format!("invalid PID mode: {m}")));
        }
    }
    if let Some(m) = &cfg.uts_mode {
        if !(m.is_empty() || m == "host") {
            return Err(Error::invalid(format!("invalid UTS mode: {m}")));
        }
        if m == "host" && cfg.hostname.as_deref().is_some_and(|h| !h.is_empty()) {
            return Err(Error::invalid(
                "conflicting options: hostname and the UTS mode",
            ));
        }
    }
    if let Some(m) = &cfg.cgroupns_mode {
        if !matches!(m.as_str(), "" | "host" | "private") {
            return Err(Error::invalid(format!(
                "invalid cgroup namespace mode: {m}"
            )));
        }
    }
    if let Some(d) = &cfg.log_driver {
        if !d.is_empty() && !LOG_DRIVERS.contains(&d.as_str()) {
            return Err(Error::invalid(format!(
                "error looking up logging plugin {d}: plugin \"{d}\" not found"
            )));
        }
    }
    Ok(())
}

/// `container:NAME` modes with NAME as the other container's full ID (as
/// docker's inspect shows them); an unknown NAME is docker's error.
pub fn resolve(containers: &impl Donors, cfg: &mut ContainerConfig) -> Result<(), Error> {
    if let Some(name) = cfg
        .ipc_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("container:"))
    {
        if name.is_empty() {
            return Err(Error::invalid(
                "can't join IPC of container : invalid name or ID supplied: \"\"",
            ));
        }
        let id = containers.donor(name)?.0;
        cfg.ipc_mode = Some(format!("container:{id}"));
    }
    if let Some(name) = cfg
        .pid_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("container:"))
    {
        if name.is_empty() {
            return Err(Error::not_found(Object::Container, ""));
        }
        let id = containers.donor(name)?.0;
        cfg.pid_mode = Some(format!("container:{id}"));
    }
    Ok(())
}

/// The namespaces a starting container joins rather than makes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Joins {
    /// `/proc/PID/ns/ipc` of the `--ipc container:` donor.
    pub ipc: Option<PathBuf>,
    /// The `/dev/shm` to bind: a `shareable` container's own (see
    /// [`mount_shm`]), its donor's, or the host's for a `host` donor.
    pub shm: Option<PathBuf>,
    /// `/proc/PID/ns/pid` of the `--pid container:` one.
    pub pid: Option<PathBuf>,
}

/// The donors' namespaces, checked as docker's daemon checks them when the
/// container starts: running, and for IPC shareable (or host).
pub fn joins(containers: &impl Donors, id: &str, cfg: &ContainerConfig) -> Result<Joins, String> {
    let mut j = Joins::default();
    if cfg.ipc_mode.as_deref() == Some("shareable") {
        j.shm = Some(containers.dir(id).join(SHM_DIR));
    }
    if let Some(id) = cfg
        .ipc_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("container:"))
    {
        let (donor, ipc_mode) = containers
            .donor(id)
            .map_err(|e| format!("can't join IPC of container {id}: {e}"))?;
        let pid = containers.running_pid(&donor).ok_or_else(|| {
            format!("can't join IPC of container {donor}: container {donor} is not running")
        })?;
        if !matches!(ipc_mode.as_deref(), Some("shareable" | "host")) {
            return Err(format!("can't join IPC of container {donor}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"));
        }
        if ipc_mode.as_deref() == Some("host") {
            j.shm = Some("/dev/shm".into());
        } else {
            j.ipc = Some(format!("/proc/{pid}/ns/ipc").into());
            j.shm = Some(containers.dir(&donor).join(SHM_DIR));
        }
    }
    if let Some(id) = cfg
        .pid_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("container:"))
    {
        let (other, _) = containers.donor(id).map_err(|e| e.to_string())?;
        let pid = containers
            .running_pid(&other)
            .ok_or_else(|| format!("container {other} is not running"))?;
        j.pid = Some(format!("/proc/{pid}/ns/pid").into());
    }
    Ok(j)
}

/// A `shareable` container's `/dev/shm`: a tmpfs mounted on the engine's
/// side (docker's flags; `--shm-size` bytes, else docker's 64 MiB), so that
/// the containers joining its IPC namespace bind the same one. A stale one
/// from an earlier run goes first.
pub fn mount_shm(dir: &Path, size: Option<i64>) -> std::io::Result<()> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let shm = dir.join(SHM_DIR);
    let _ = umount2(&shm, MntFlags::MNT_DETACH);
    std::fs::create_dir_all(&shm)?;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(
            format!(
                "mode=1777,size={}",
                size.filter(|s| *s > 0).unwrap_or(64 << 20)
            )
            .as_str(),
        ),
    )?;
    Ok(())
}

/// Undoes [`mount_shm`] when the container stops (no-op without one).
pub fn unmount_shm(dir: &Path) {
    let shm = dir.join(SHM_DIR);
    if shm.exists() {
        let _ = nix::mount::umount2(&shm, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&shm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut ContainerConfig)) -> Result<(), String> {
        let mut c = ContainerConfig::default();
        f(&mut c);
        validate(&c).map_err(|e| e.to_string())
    }

    #[test]
    fn dockers_daemon_checks() {
        assert_eq!(
            check(|c| c.ipc_mode = Some("foo".into())).unwrap_err(),
            "Invalid IPC mode: foo"
        );
        for m in ["none", "private", "shareable", "host", "container:x"] {
            check(|c| c.ipc_mode = Some(m.into())).unwrap();
        }
        assert!(check(|c| c.pid_mode = Some("x".into())).is_err());
        assert!(check(|c| c.uts_mode = Some("private".into())).is_err());
        assert_eq!(
            check(|c| {
                c.uts_mode = Some("host".into());
                c.hostname = Some("h".into());
            })
            .unwrap_err(),
            "conflicting options: hostname and the UTS mode"
        );
        assert!(check(|c| c.cgroupns_mode = Some("shared".into())).is_err());
        assert_eq!(
            check(|c| c.log_driver = Some("syslog".into())).unwrap_err(),
            "error looking up logging plugin syslog: plugin \"syslog\" not found"
        );
        for d in LOG_DRIVERS {
            check(|c| c.log_driver = Some(d.into())).unwrap();
        }
    }
}
