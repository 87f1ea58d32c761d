//! The parsed files of each container directory, kept in memory so that a
//! listing does not re-read and re-parse every container's record and
//! state files (issue 22: `GET /containers/json` with 100 containers).
//!
//! Validity: every file a listing reads in `containers/<id>/` is replaced
//! by a rename (`layout::write_atomic*`: the record, `state.json` and
//! `exit.json` from the shim, `health.json`, `restarts`), created or
//! unlinked (the `paused` marker). Each of those changes the directory's
//! mtime and ctime, whoever makes it (the agent or a shim, a separate
//! process). So an entry is keyed by the directory's (device, inode,
//! mtime, ctime) taken *before* its files are read: a change after that
//! stat gives the directory a newer time and the entry is read again.
//!
//! File times come from a coarse clock (one kernel tick), so a change in
//! the same tick as the stat would leave the times equal. An entry whose
//! directory changed less than [`RACY_MARGIN`] before the stat is
//! therefore never served from memory (git's "racily clean" rule): only
//! directories that have been quiet for a while are cached, and those get
//! a strictly newer time on their next change.
//!
//! What is not a file (the shim's liveness, the boot id) is checked by
//! the caller on every listing. The map holds only ids found in the
//! containers directory: each full scan drops the others, and `rm` drops
//! its own at once.

use super::fsutil::Sig;
use super::record::{ContainerRecord, ExitState, RunState};
use crate::layout::read_json;
use berth_protocol::Health;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a directory must have been unchanged before its files are
/// served from memory: well above any file system's timestamp tick.
pub const RACY_MARGIN: Duration = Duration::from_secs(1);

/// What a listing needs from one container directory, parsed.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// `container.json`; `None` when missing or unreadable.
    pub record: Option<ContainerRecord>,
    pub run: Option<RunState>,
    pub exit: Option<ExitState>,
    /// The `restarts` count (0 when missing).
    pub restarts: u32,
    /// The `paused` marker is there.
    pub paused: bool,
    /// `health.json`, read only for a record whose healthcheck probes.
    pub health: Option<Health>,
}

impl Snapshot {
    /// Reads the directory's files now.
    pub fn read(dir: &Path) -> Snapshot {
        let record: Option<ContainerRecord> =
            read_json(&dir.join(super::files::RECORD)).ok().flatten();
        let health = record
            .as_ref()
            .and_then(|r| r.config.healthcheck.as_ref())
            .filter(|h| h.probes())
            .and_then(|_| super::health::read(dir));
        Snapshot {
            record,
            run: read_json(&dir.join(super::files::RUN_STATE)).ok().flatten(),
            exit: read_json(&dir.join(super::files::EXIT_STATE))
                .ok()
                .flatten(),
            restarts: super::files::restart_count(dir),
            paused: dir.join(super::files::PAUSED).exists(),
            health,
        }
    }
}

struct Entry {
    sig: Sig,
    snap: Arc<Snapshot>,
}

/// Snapshots by container id; see the module comment for when one is
/// served.
pub struct RecordCache {
    margin: Duration,
    map: Mutex<HashMap<String, Entry>>,
}

impl Default for RecordCache {
    fn default() -> Self {
        RecordCache::with_margin(RACY_MARGIN)
    }
}

fn nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

impl RecordCache {
    pub fn with_margin(margin: Duration) -> RecordCache {
        RecordCache {
            margin,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The files of `dir` (the directory of container `id`), from memory
    /// when the directory is unchanged and quiet, read otherwise. `None`
    /// when `dir` is not a directory (gone).
    pub fn get(&self, id: &str, dir: &Path) -> Option<Arc<Snapshot>> {
        // The clock before the stat: a directory time at or after
        // `now - margin` may share its tick with a change still to come.
        let now = nanos(SystemTime::now());
        let Some(md) = std::fs::symlink_metadata(dir).ok().filter(|m| m.is_dir()) else {
            self.forget(id);
            return None;
        };
        let sig = Sig::of(&md);
        if let Some(e) = self.map().get(id) {
            if e.sig == sig {
                return Some(e.snap.clone());
            }
        }
        let snap = Arc::new(Snapshot::read(dir));
        let quiet = now - self.margin.as_nanos() as i128;
        let mut map = self.map();
        if sig.mtime < quiet && sig.ctime < quiet {
            map.insert(
                id.to_string(),
                Entry {
                    sig,
                    snap: snap.clone(),
                },
            );
        } else {
            // Too recent to trust its times: read it again next time.
            map.remove(id);
        }
        Some(snap)
    }

    /// Drops `id` (its container was removed).
    pub fn forget(&self, id: &str) {
        self.map().remove(id);
    }

    /// Keeps only the ids a full scan of the containers directory found.
    pub fn retain(&self, seen: &HashSet<String>) {
        self.map().retain(|id, _| seen.contains(id));
    }

    /// How many snapshots are held (for tests and `info`).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{write_atomic_unsynced, write_json_atomic, write_json_atomic_unsynced};

    const MARGIN: Duration = Duration::from_millis(100);

    fn record(id: &str, name: &str) -> ContainerRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "created": "2026-12-07T00:00:00Z",
            "image": "busybox", "image_id": "sha256:x",
            "config": serde_json::to_value(berth_protocol::ContainerConfig::default()).unwrap(),
            "args": ["true"], "env": [], "workdir": "/", "user": "", "hostname": "h",
        }))
        .unwrap()
    }

    /// A container directory with a record, quiet for longer than the margin.
    fn quiet_container(root: &Path, id: &str) -> std::path::PathBuf {
        let dir = root.join(id);
        std::fs::create_dir(&dir).unwrap();
        write_json_atomic(&dir.join(super::super::files::RECORD), &record(id, "one")).unwrap();
        settle();
        dir
    }

    fn settle() {
        std::thread::sleep(MARGIN + Duration::from_millis(50));
    }

    fn run_state() -> RunState {
        RunState {
            pid: 1,
            shim_pid: 2,
            started_at: "2026-12-07T00:00:01Z".into(),
            boot_id: "b".into(),
        }
    }

    #[test]
    fn a_quiet_directory_is_served_from_memory() {
        let t = tempfile::tempdir().unwrap();
        let dir = quiet_container(t.path(), "a");
        let c = RecordCache::with_margin(MARGIN);
        let first = c.get("a", &dir).unwrap();
        assert_eq!(first.record.as_ref().unwrap().name, "one");
        assert_eq!(c.len(), 1);
        let second = c.get("a", &dir).unwrap();
        assert!(
            Arc::ptr_eq(&first, &second),
            "read again although unchanged"
        );
    }

    #[test]
    fn a_directory_changed_just_now_is_read_every_time() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a");
        std::fs::create_dir(&dir).unwrap();
        write_json_atomic(&dir.join(super::super::files::RECORD), &record("a", "one")).unwrap();
        let c = RecordCache::with_margin(MARGIN);
        let first = c.get("a", &dir).unwrap();
        assert_eq!(c.len(), 0, "kept an entry whose times may share a tick");
        // Changed in the same tick as the stat above: still seen.
        write_json_atomic_unsynced(&dir.join(super::super::files::RUN_STATE), &run_state())
            .unwrap();
        let second = c.get("a", &dir).unwrap();
        assert!(first.run.is_none());
        assert_eq!(second.run.as_ref().unwrap().pid, 1);
    }

    #[test]
    fn every_file_a_listing_reads_is_seen_when_changed_behind_its_back() {
        let t = tempfile::tempdir().unwrap();
        let dir = quiet_container(t.path(), "a");
        let c = RecordCache::with_margin(MARGIN);
        let s = c.get("a", &dir).unwrap();
        assert!(s.run.is_none() && s.exit.is_none() && !s.paused && s.restarts == 0);

        // The shim starts it (another process in real life: only the
        // directory tells).
        write_json_atomic_unsynced(&dir.join(super::super::files::RUN_STATE), &run_state())
            .unwrap();
        let s = c.get("a", &dir).unwrap();
        assert_eq!(s.run.as_ref().unwrap().shim_pid, 2);

        // Paused, then unpaused (marker created, removed).
        settle();
        assert!(c.get("a", &dir).is_some());
        std::fs::write(dir.join(super::super::files::PAUSED), b"").unwrap();
        assert!(c.get("a", &dir).unwrap().paused);
        settle();
        assert!(c.get("a", &dir).unwrap().paused);
        std::fs::remove_file(dir.join(super::super::files::PAUSED)).unwrap();
        assert!(!c.get("a", &dir).unwrap().paused);

        // The shim writes its exit right after a listing cached the run.
        settle();
        assert!(c.get("a", &dir).unwrap().exit.is_none());
        assert_eq!(c.len(), 1);
        write_json_atomic_unsynced(
            &dir.join(super::super::files::EXIT_STATE),
            &ExitState {
                code: 3,
                finished_at: "2026-12-07T00:00:02Z".into(),
                started_at: Some("2026-12-07T00:00:01Z".into()),
                error: None,
            },
        )
        .unwrap();
        assert_eq!(c.get("a", &dir).unwrap().exit.as_ref().unwrap().code, 3);

        // A restart-policy restart counts (written as restart.rs does).
        settle();
        assert_eq!(c.get("a", &dir).unwrap().restarts, 0);
        write_atomic_unsynced(&dir.join(super::super::files::RESTARTS), b"1\n").unwrap();
        assert_eq!(c.get("a", &dir).unwrap().restarts, 1);

        // Renamed (the record rewritten).
        settle();
        assert_eq!(
            c.get("a", &dir).unwrap().record.as_ref().unwrap().name,
            "one"
        );
        write_json_atomic(&dir.join(super::super::files::RECORD), &record("a", "two")).unwrap();
        assert_eq!(
            c.get("a", &dir).unwrap().record.as_ref().unwrap().name,
            "two"
        );
    }

    #[test]
    fn a_removed_or_replaced_directory_is_not_served() {
        let t = tempfile::tempdir().unwrap();
        let dir = quiet_container(t.path(), "a");
        let c = RecordCache::with_margin(MARGIN);
        assert!(c.get("a", &dir).is_some());
        assert_eq!(c.len(), 1);
        // Removed as `rm` does (renamed away): gone, and dropped.
        let trash = t.path().join("trash");
        std::fs::rename(&dir, &trash).unwrap();
        assert!(c.get("a", &dir).is_none());
        assert_eq!(c.len(), 0);
        // A different directory under the same name (another inode) with
        // the same times is read, not taken for the old one.
        let c = RecordCache::with_margin(MARGIN);
        std::fs::rename(&trash, &dir).unwrap();
        settle();
        assert_eq!(
            c.get("a", &dir).unwrap().record.as_ref().unwrap().name,
            "one"
        );
        let other = t.path().join("b");
        std::fs::create_dir(&other).unwrap();
        write_json_atomic(
            &other.join(super::super::files::RECORD),
            &record("a", "new"),
        )
        .unwrap();
        let md = std::fs::metadata(&dir).unwrap();
        let when = std::fs::FileTimes::new().set_modified(md.modified().unwrap());
        std::fs::File::open(&other)
            .unwrap()
            .set_times(when)
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::rename(&other, &dir).unwrap();
        assert_eq!(
            c.get("a", &dir).unwrap().record.as_ref().unwrap().name,
            "new"
        );
        // A plain file where the directory was is not a container.
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, b"{}").unwrap();
        assert!(c.get("a", &dir).is_none());
    }

    #[test]
    fn a_scan_drops_the_ids_it_did_not_find() {
        let t = tempfile::tempdir().unwrap();
        let a = quiet_container(t.path(), "a");
        let b = quiet_container(t.path(), "b");
        let c = RecordCache::with_margin(MARGIN);
        c.get("a", &a).unwrap();
        c.get("b", &b).unwrap();
        assert_eq!(c.len(), 2);
        c.retain(&HashSet::from(["b".to_string()]));
        assert_eq!(c.len(), 1);
        c.forget("b");
        assert!(c.is_empty());
    }

    #[test]
    fn a_hostile_record_is_held_as_missing() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(super::super::files::RECORD), b"{\"id\": [").unwrap();
        std::fs::write(dir.join(super::super::files::RESTARTS), b"-7\n").unwrap();
        std::fs::write(
            dir.join(super::super::files::RUN_STATE),
            vec![b'['; 100_000],
        )
        .unwrap();
        let s = Snapshot::read(&dir);
        assert!(s.record.is_none() && s.run.is_none());
        assert_eq!(s.restarts, 0);
    }
}
