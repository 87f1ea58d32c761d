//! Detached own-VM containers (`berth run --isolation vm -d`): each one's
//! VM directory under `$BERTH_HOME/vms/` holds a record,
//! `container.json`, written by its *keeper* (the detached `berth
//! vm-keeper` process that owns the VMM and serves the published ports).
//! There is no engine across VMs: `ps`, `logs`, `stop`, `kill` and `rm`
//! find a container by reading these records, and reach a running one's
//! guest engine through its VM's vsock socket.
//!
//! A record is written by berth, but the directory is the user's: it is
//! read defensively (size cap, id and name checked) and an unreadable one
//! is skipped, never trusted.

use crate::engine::Engine;
use crate::machine::Machine;
use anyhow::Result;
use berth_protocol::{
    AgentInfo, ContainerDetails, ContainerStatus, ContainerSummary, MountType, PublishedPort,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The record's file name in a VM directory.
pub const RECORD: &str = "container.json";
/// The container's output, saved by the keeper when the container exits.
pub const LOG: &str = "container.log";
/// The container's inspect details, saved by the keeper when the
/// container started and again when it exited ([`Saved`]).
pub const DETAILS: &str = "details.json";
/// Present while a `berth restart` restarts the container in place: the
/// restarter's PID. The keeper does not take the stop for the end.
pub const RESTARTING: &str = "restarting";
/// A record larger than this is not berth's.
const MAX_RECORD: u64 = 1 << 20;
/// Saved details larger than this are not berth's.
const MAX_DETAILS: u64 = 8 << 20;
/// What the keeper's command line contains (to tell it from a reused PID).
pub const KEEPER_ARG: &str = "vm-keeper";

/// A detached own-VM container, as its keeper recorded it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The guest engine's id of the container (64 hex digits).
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    /// The container as last seen: when it started, then when it exited.
    pub summary: ContainerSummary,
    /// The ports published on the host (the guest's are on its loopback).
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
    /// The keeper's PID.
    pub keeper_pid: i32,
    /// Set by the keeper once the container exited and the VM is off.
    #[serde(default)]
    pub stopped: bool,
}

impl Record {
    /// Whether the record could have come from a keeper: an id of hex
    /// digits, a name without path separators.
    fn plausible(&self) -> bool {
        !self.id.is_empty()
            && self.id.len() <= 64
            && self.id.bytes().all(|b| b.is_ascii_hexdigit())
            && self.id == self.summary.id
            && !self.name.is_empty()
            && self.name.len() <= 255
            && !self.name.contains(['/', '\0'])
            && self.keeper_pid > 0
    }
}

/// What `inspect` needs of a container whose VM may be off: the guest
/// engine's details, its image's config and the guest engine's facts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub details: ContainerDetails,
    #[serde(default)]
    pub image: Option<serde_json::Value>,
    #[serde(default)]
    pub info: Option<AgentInfo>,
}

/// Reads a file of at most `max` bytes (a regular file only).
fn read_capped(path: &Path, max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = Vec::new();
    f.take(max + 1).read_to_end(&mut text).ok()?;
    (text.len() as u64 <= max).then_some(text)
}

/// Writes `bytes` to `dir/name` whole or not at all.
fn write_whole(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

/// Saves the container's inspect details into `dir`.
pub fn write_details(dir: &Path, saved: &Saved) -> Result<()> {
    write_whole(dir, DETAILS, &serde_json::to_vec(saved)?)
}

/// Marks `dir`'s container as being restarted in place by this process
/// until the guard is dropped (see [`RESTARTING`]).
pub struct Restarting(PathBuf);

impl Restarting {
    pub fn mark(dir: &Path) -> Result<Restarting> {
        write_whole(dir, RESTARTING, std::process::id().to_string().as_bytes())?;
        Ok(Restarting(dir.join(RESTARTING)))
    }
}

impl Drop for Restarting {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether a live process restarts `dir`'s container in place now.
pub fn restart_pending(dir: &Path) -> bool {
    read_capped(&dir.join(RESTARTING), 32)
        .and_then(|t| String::from_utf8(t).ok()?.trim().parse::<i32>().ok())
        .is_some_and(|pid| pid > 0 && crate::machine::pid_alive(pid))
}

/// `d` as seen from the host: the published ports' host side (the
/// record's) while it runs and none once it stopped, no PID once
/// stopped, and bind sources at their host path (the VM sees host
/// folders under the share prefix).
pub fn for_host(
    mut d: ContainerDetails,
    summary: ContainerSummary,
    ports: &[PublishedPort],
) -> ContainerDetails {
    let running = summary.status == ContainerStatus::Running;
    d.summary = ContainerSummary {
        ports: None,
        ..summary
    };
    d.ports = if running { ports.to_vec() } else { Vec::new() };
    if !running && d.summary.status != ContainerStatus::Paused {
        d.pid = None;
    }
    for s in d
        .mounts
        .iter_mut()
        .filter(|m| m.kind == MountType::Bind)
        .map(|m| &mut m.source)
        .chain(
            d.config
                .mounts
                .iter_mut()
                .filter(|m| m.kind == MountType::Bind)
                .map(|m| &mut m.source),
        )
    {
        if let Some(h) = crate::shares::host_path(s) {
            *s = h.to_string();
        }
    }
    d
}

/// One detached own-VM container: its VM directory and record.
#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub record: Record,
}

/// No container, or more than one, answers to a key.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("multiple containers found with provided prefix: {0}")]
    Ambiguous(String),
}

/// `$BERTH_HOME/vms`.
pub fn root() -> PathBuf {
    crate::paths::state_dir().join("vms")
}

/// Whether the VM directory `dir` belongs to a live process: the one that
/// made it (named `<pid>-<nanos>`, see [`Machine::ephemeral`]) or its VMM.
pub fn dir_alive(dir: &Path) -> bool {
    let made_by = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once('-'))
        .and_then(|(pid, _)| pid.parse::<i32>().ok());
    let vmm = std::fs::read_to_string(dir.join("vmm.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    [made_by, vmm]
        .into_iter()
        .flatten()
        .any(|pid| pid > 0 && crate::machine::pid_alive(pid))
}

/// Removes the VM directories under `root` that nothing owns any more:
/// named `<pid>-<nanos>`, without a record (a detached container's stays
/// until `rm`), and neither their maker nor their VMM alive. A SIGKILLed
/// `berth run --isolation vm` (or a keeper killed before its record)
/// leaves one: its VMM died with it, but its Drop never ran. Returns the
/// directories removed.
pub fn remove_orphans_in(root: &Path) -> Vec<PathBuf> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in dirs.flatten() {
        let dir = e.path();
        let ours = e
            .file_name()
            .to_str()
            .and_then(|n| n.split_once('-'))
            .is_some_and(|(pid, nanos)| {
                !pid.is_empty()
                    && !nanos.is_empty()
                    && pid.bytes().chain(nanos.bytes()).all(|b| b.is_ascii_digit())
            });
        if !ours
            || !e.file_type().is_ok_and(|t| t.is_dir())
            || dir.join(RECORD).exists()
            || dir_alive(&dir)
        {
            continue;
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// Reads the record of the VM directory `dir`, if it has a sound one.
pub fn read_record(dir: &Path) -> Option<Record> {
    let text = read_capped(&dir.join(RECORD), MAX_RECORD)?;
    let r: Record = serde_json::from_slice(&text).ok()?;
    r.plausible().then_some(r)
}

/// Writes `record` into `dir` (whole or not at all: a temporary file
/// renamed into place).
pub fn write_record(dir: &Path, record: &Record) -> Result<()> {
    write_whole(dir, RECORD, &serde_json::to_vec(record)?)
}

/// The detached own-VM containers under `root`, newest first.
pub fn list_in(root: &Path) -> Vec<Entry> {
    let Ok(dirs) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<Entry> = dirs
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let dir = e.path();
            read_record(&dir).map(|record| Entry { dir, record })
        })
        .collect();
    out.sort_by(|a, b| b.record.summary.created.cmp(&a.record.summary.created));
    out
}

/// The detached own-VM containers of this berth home, newest first.
pub fn list() -> Vec<Entry> {
    list_in(&root())
}

/// The container `key` names under `root`: its full id, its name (with
/// or without the leading `/`), or a prefix of one id only, as docker
/// looks containers up.
pub fn find_in(root: &Path, key: &str) -> Result<Entry, FindError> {
    let all = list_in(root);
    let name = key.strip_prefix('/').unwrap_or(key);
    if let Some(e) = all
        .iter()
        .find(|e| e.record.id == key || e.record.name == name)
    {
        return Ok(e.clone());
    }
    if key.is_empty() {
        return Err(FindError::NotFound(key.into()));
    }
    let mut hits = all.into_iter().filter(|e| e.record.id.starts_with(key));
    match (hits.next(), hits.next()) {
        (Some(e), None) => Ok(e),
        (Some(_), Some(_)) => Err(FindError::Ambiguous(key.into())),
        _ => Err(FindError::NotFound(key.into())),
    }
}

/// [`find_in`] this berth home's `vms/`.
pub fn find(key: &str) -> Result<Entry, FindError> {
    find_in(&root(), key)
}

/// Whether a detached own-VM container is called `name`.
pub fn name_taken(name: &str) -> bool {
    list().iter().any(|e| e.record.name == name)
}

impl Entry {
    fn machine(&self) -> Machine {
        Machine::existing_ephemeral(self.dir.clone())
    }

    /// The VMM's PID while the VM runs.
    pub fn vmm_pid(&self) -> Option<i32> {
        self.machine().vmm_pid()
    }

    /// The keeper's PID while it runs.
    pub fn keeper_pid(&self) -> Option<i32> {
        let pid = self.record.keeper_pid;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let is_keeper = cmdline
            .split(|b| *b == 0)
            .any(|a| a == KEEPER_ARG.as_bytes());
        (crate::machine::pid_alive(pid) && is_keeper).then_some(pid)
    }

    /// A connection to the guest engine (the VM runs).
    pub fn engine(&self) -> Result<Engine> {
        Ok(self.machine().connect_running()?)
    }

    /// The container as `ps` shows it: the guest engine's summary while
    /// the VM runs, the record otherwise (exited; with exit code 137
    /// when the keeper died before it could record the exit).
    pub fn summary(&self) -> ContainerSummary {
        let mut s = self.record.summary.clone();
        if !self.record.stopped && self.vmm_pid().is_some() {
            let live = self.engine().ok().and_then(|mut c| {
                c.container_list(true)
                    .ok()?
                    .into_iter()
                    .find(|x| x.id == self.record.id)
            });
            if let Some(live) = live {
                s = live;
            }
        } else if !self.record.stopped {
            s.status = ContainerStatus::Exited;
            s.exit_code = Some(s.exit_code.unwrap_or(137));
        }
        s.ports = Some(if s.status == ContainerStatus::Running {
            self.record.ports.clone()
        } else {
            Vec::new()
        });
        s
    }

    /// Whether the container still runs (its VM is up).
    pub fn running(&self) -> bool {
        !self.record.stopped && self.vmm_pid().is_some()
    }

    /// Waits up to `timeout` for the keeper to finish (record the exit,
    /// power the VM off); whether it did.
    pub fn wait_keeper(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.keeper_pid().is_some() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// Kills the keeper and the VM (the host ports close with the
    /// keeper) and deletes the directory.
    pub fn remove(&self) {
        if let Some(pid) = self.keeper_pid() {
            crate::platform::kill(pid);
            while crate::machine::pid_alive(pid) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Its VMM dies with it; one started elsewhere does not.
        self.machine().destroy();
    }

    /// The details the keeper saved, if they are this container's.
    pub fn saved(&self) -> Option<Saved> {
        let text = read_capped(&self.dir.join(DETAILS), MAX_DETAILS)?;
        let s: Saved = serde_json::from_slice(&text).ok()?;
        (s.details.summary.id == self.record.id).then_some(s)
    }

    /// The container's inspect details as the host sees them ([`for_host`]):
    /// the guest engine's while the VM runs, the saved ones otherwise;
    /// with the image's config and the guest engine's facts when known.
    pub fn details(&self) -> Option<Saved> {
        let saved = self.saved();
        let live = self
            .running()
            .then(|| self.engine().ok()?.container_inspect(&self.record.id).ok())
            .flatten();
        let mut s = match (live, saved) {
            (Some(d), Some(saved)) => Saved {
                details: *d,
                ..saved
            },
            (Some(d), None) => Saved {
                details: *d,
                image: None,
                info: None,
            },
            (None, saved) => saved?,
        };
        s.details = for_host(s.details, self.summary(), &self.record.ports);
        Some(s)
    }

    /// The output the keeper saved when the container exited, as
    /// (stderr?, bytes) chunks in order.
    pub fn saved_logs(&self) -> Vec<(bool, Vec<u8>)> {
        read_logs(&self.dir.join(LOG))
    }
}

/// One saved chunk of output.
#[derive(Serialize, Deserialize)]
struct LogLine {
    stream: String,
    log: String,
}

/// Appends chunks of output (stderr?, bytes) to a log file as JSON lines.
pub fn write_logs(path: &Path, chunks: &[(bool, Vec<u8>)]) -> Result<()> {
    let mut text = Vec::new();
    for (stderr, bytes) in chunks {
        let line = LogLine {
            stream: if *stderr { "stderr" } else { "stdout" }.into(),
            log: String::from_utf8_lossy(bytes).into_owned(),
        };
        serde_json::to_writer(&mut text, &line)?;
        text.push(b'\n');
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// Reads a log file [`write_logs`] wrote; lines that are not its format
/// are skipped.
pub fn read_logs(path: &Path) -> Vec<(bool, Vec<u8>)> {
    let text = std::fs::read(path).unwrap_or_default();
    text.split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<LogLine>(l).ok())
        .map(|l| (l.stream == "stderr", l.log.into_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str, created: &str) -> Record {
        Record {
            id: id.into(),
            name: name.into(),
            summary: ContainerSummary {
                id: id.into(),
                name: name.into(),
                image: "busybox".into(),
                image_id: "sha256:00".into(),
                command: "sleep 1".into(),
                created: created.into(),
                status: ContainerStatus::Running,
                exit_code: None,
                started_at: None,
                finished_at: None,
                labels: Default::default(),
                restart_count: 0,
                health: None,
                ports: None,
            },
            ports: Vec::new(),
            keeper_pid: 1,
            stopped: false,
        }
    }

    #[test]
    fn orphan_vm_dirs_are_removed_and_owned_ones_kept() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // A PID that is surely not alive: past the kernel's maximum.
        let dead = 1 << 23;
        let me = std::process::id();
        let mk = |name: &str| {
            let d = root.join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("serial.log"), b"x").unwrap();
            d
        };
        let orphan = mk(&format!("{dead}-1"));
        std::fs::write(orphan.join("vmm.pid"), format!("{dead}\n")).unwrap();
        let orphan_no_vmm = mk(&format!("{dead}-2"));
        let live_maker = mk(&format!("{me}-3"));
        let live_vmm = mk(&format!("{dead}-4"));
        std::fs::write(live_vmm.join("vmm.pid"), format!("{me}\n")).unwrap();
        let detached = mk(&format!("{dead}-5"));
        put(
            root,
            &format!("{dead}-5"),
            &record(&"a".repeat(64), "keep", "1"),
        );
        let foreign = mk("notes");
        let odd = mk(&format!("{dead}-x"));
        let mut removed = remove_orphans_in(root);
        removed.sort();
        assert_eq!(removed, vec![orphan.clone(), orphan_no_vmm.clone()]);
        for d in [live_maker, live_vmm, detached, foreign, odd] {
            assert!(d.is_dir(), "{} removed", d.display());
        }
        assert!(!orphan.exists() && !orphan_no_vmm.exists());
        assert!(remove_orphans_in(&root.join("none")).is_empty());
    }

    fn put(root: &Path, dir: &str, r: &Record) {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        write_record(&d, r).unwrap();
    }

    #[test]
    fn finds_by_id_name_and_unique_prefix() {
        let t = tempfile::tempdir().unwrap();
        let a = "ab".repeat(32);
        let b = "ac".repeat(32);
        put(t.path(), "1-1", &record(&a, "web", "2026-12-07T06:00:00Z"));
        put(t.path(), "2-2", &record(&b, "db", "2026-12-07T06:01:00Z"));
        let all = list_in(t.path());
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].record.name, "db", "newest first");
        assert_eq!(find_in(t.path(), "web").unwrap().record.id, a);
        assert_eq!(find_in(t.path(), "/db").unwrap().record.id, b);
        assert_eq!(find_in(t.path(), &a).unwrap().record.name, "web");
        assert_eq!(find_in(t.path(), "abab").unwrap().record.name, "web");
        assert!(matches!(
            find_in(t.path(), "a"),
            Err(FindError::Ambiguous(_))
        ));
        assert!(matches!(
            find_in(t.path(), "ff"),
            Err(FindError::NotFound(_))
        ));
        assert!(matches!(find_in(t.path(), ""), Err(FindError::NotFound(_))));
    }

    #[test]
    fn hostile_records_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let good = "cd".repeat(32);
        put(t.path(), "ok", &record(&good, "ok", "1"));
        // Not JSON, a path as id, a name with a slash, an id that is not
        // the summary's, a PID of 0, an oversized file, a directory.
        let bad_dir = |name: &str| {
            let d = t.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        std::fs::write(bad_dir("garbage").join(RECORD), b"{not json").unwrap();
        put(t.path(), "path-id", &record("../../etc", "x", "1"));
        put(t.path(), "slash", &record(&"ee".repeat(32), "a/b", "1"));
        let mut other = record(&"ef".repeat(32), "other", "1");
        other.summary.id = "00".into();
        put(t.path(), "mismatch", &other);
        let mut zero = record(&"fa".repeat(32), "zero", "1");
        zero.keeper_pid = 0;
        put(t.path(), "zero", &zero);
        let big = bad_dir("big");
        std::fs::write(big.join(RECORD), vec![b' '; (MAX_RECORD + 10) as usize]).unwrap();
        std::fs::create_dir_all(bad_dir("dir").join(RECORD)).unwrap();
        std::fs::write(t.path().join("stray-file"), b"x").unwrap();
        let all = list_in(t.path());
        assert_eq!(
            all.iter()
                .map(|e| e.record.name.as_str())
                .collect::<Vec<_>>(),
            ["ok"]
        );
        assert!(find_in(t.path(), "a/b").is_err());
    }

    #[test]
    fn a_record_without_a_live_vm_shows_exited() {
        let t = tempfile::tempdir().unwrap();
        let id = "12".repeat(32);
        put(t.path(), "gone", &record(&id, "gone", "1"));
        let e = find_in(t.path(), "gone").unwrap();
        assert!(!e.running());
        let s = e.summary();
        assert_eq!(s.status, ContainerStatus::Exited);
        assert_eq!(s.exit_code, Some(137));
        assert_eq!(s.ports, Some(Vec::new()));
    }

    fn details(id: &str, status: ContainerStatus) -> ContainerDetails {
        let mut d = crate::net_settings::sample_details(status);
        d.summary.id = id.into();
        d.ports = vec![PublishedPort {
            container_port: 80,
            proto: berth_protocol::PortProto::Tcp,
            host_ip: "127.0.0.1".into(),
            host_port: 80,
        }];
        d.mounts = vec![berth_protocol::MountPoint {
            kind: MountType::Bind,
            name: None,
            source: format!("{}/home/u/site", crate::shares::GUEST_PREFIX),
            destination: "/site".into(),
            mode: String::new(),
            rw: true,
            propagation: "rprivate".into(),
            anonymous: false,
            non_recursive: false,
            copy_up: false,
            tmpfs_options: Vec::new(),
        }];
        d
    }

    #[test]
    fn details_show_the_host_side() {
        let t = tempfile::tempdir().unwrap();
        let id = "34".repeat(32);
        let mut r = record(&id, "web", "1");
        r.ports = vec![PublishedPort {
            container_port: 80,
            proto: berth_protocol::PortProto::Tcp,
            host_ip: "127.0.0.1".into(),
            host_port: 18080,
        }];
        // Running: the record's host ports, the guest's PID, host paths.
        let d = for_host(
            details(&id, ContainerStatus::Running),
            details(&id, ContainerStatus::Running).summary,
            &r.ports,
        );
        assert_eq!(d.ports, r.ports);
        assert_eq!(d.pid, Some(42));
        assert_eq!(d.mounts[0].source, "/home/u/site");
        // Stopped: no ports, no PID.
        let mut exited = details(&id, ContainerStatus::Exited).summary;
        exited.exit_code = Some(3);
        let d = for_host(details(&id, ContainerStatus::Running), exited, &r.ports);
        assert!(d.ports.is_empty());
        assert_eq!(d.pid, None);
        assert_eq!(d.summary.exit_code, Some(3));
        assert_eq!(d.summary.status, ContainerStatus::Exited);

        // Saved details: the VM is off (no VMM), the record says stopped.
        r.stopped = true;
        r.summary.status = ContainerStatus::Exited;
        r.summary.exit_code = Some(7);
        put(t.path(), "1-1", &r);
        let e = find_in(t.path(), "web").unwrap();
        assert!(e.details().is_none(), "nothing saved yet");
        let saved = Saved {
            details: details(&id, ContainerStatus::Running),
            image: Some(serde_json::json!({"config": {"Cmd": ["sh"]}})),
            info: None,
        };
        write_details(&e.dir, &saved).unwrap();
        let got = e.details().unwrap();
        assert_eq!(got.details.summary.status, ContainerStatus::Exited);
        assert_eq!(got.details.summary.exit_code, Some(7));
        assert!(got.details.ports.is_empty());
        assert_eq!(got.details.pid, None);
        assert_eq!(got.image, saved.image);
        // Another container's details, or a hostile file, are not shown.
        let mut other = saved.clone();
        other.details.summary.id = "56".repeat(32);
        write_details(&e.dir, &other).unwrap();
        assert!(e.details().is_none());
        std::fs::write(e.dir.join(DETAILS), vec![b' '; (MAX_DETAILS + 1) as usize]).unwrap();
        assert!(e.details().is_none());
    }

    #[test]
    fn a_restart_mark_lasts_while_its_process_does() {
        let t = tempfile::tempdir().unwrap();
        assert!(!restart_pending(t.path()));
        {
            let _m = Restarting::mark(t.path()).unwrap();
            assert!(restart_pending(t.path()));
        }
        assert!(!restart_pending(t.path()), "the guard removes the mark");
        // A mark left by a process that is gone, or garbage, is stale.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        std::fs::write(t.path().join(RESTARTING), pid.to_string()).unwrap();
        assert!(!restart_pending(t.path()));
        std::fs::write(t.path().join(RESTARTING), "-1").unwrap();
        assert!(!restart_pending(t.path()));
        std::fs::write(t.path().join(RESTARTING), "x").unwrap();
        assert!(!restart_pending(t.path()));
    }

    #[test]
    fn logs_round_trip_and_foreign_lines_are_skipped() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(LOG);
        let chunks = vec![
            (false, b"hello\n".to_vec()),
            (true, b"oops\n".to_vec()),
            (false, b"\"quoted\"\n".to_vec()),
        ];
        write_logs(&p, &chunks).unwrap();
        assert_eq!(read_logs(&p), chunks);
        let mut text = std::fs::read(&p).unwrap();
        text.extend_from_slice(b"not json\n{\"stream\":1}\n");
        std::fs::write(&p, text).unwrap();
        assert_eq!(read_logs(&p), chunks);
        assert!(read_logs(&t.path().join("missing")).is_empty());
    }
}
