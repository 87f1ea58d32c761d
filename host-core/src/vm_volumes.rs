//! Named volumes of containers with their own VM (`--isolation vm -v
//! NAME:/path`): host folders, `$BERTH_HOME/vm-volumes/<name>/_data` with
//! `volume.json` beside it (the native engine's layout), shared with each
//! VM that mounts one through a share slot ([`crate::vm_shares`]).
//!
//! Why on the host: an own VM is a throw-away clone with a disk of its
//! own, so a volume kept there would be neither kept past `rm` nor seen by
//! a second container. A host folder is both, and `volume ls/inspect/rm/
//! prune --isolation vm` list and remove it as docker's do (docker users
//! expect `docker volume ls` to show the volume their container made).
//! Not the native engine's store: that one belongs to the native agent
//! (Linux, root), which knows nothing of own VMs' containers and could
//! remove a volume one of them uses; own VMs also run on macOS and Windows.
//!
//! In the guest the volume stays a volume: the mount keeps its name and
//! gets the local driver's bind options (`type=none,o=bind,device=` the
//! share's guest path), so the guest engine mounts the shared folder as
//! the volume's data and fills a new, empty one from the image (docker's
//! copy-up) through the share.
//!
//! A volume is in use while a VM directory under `$BERTH_HOME/vms/` lists
//! it in its [`USES`] file and belongs to a container: a detached one's
//! record (until `rm`), or a run whose process or VMM is still alive.
//! Before its VM directory exists, a starting run holds its volumes with a
//! [`Reservation`] ([`attach`] makes it). Making a volume, reserving it and
//! `volume rm`/`prune`'s check-then-delete all run under one lock
//! (`vm-volumes/.lock`, a file lock, as the users are separate
//! processes), so a `volume rm` racing a `run -v NAME:/path` either
//! removes the volume before the run makes it anew, or is refused as in
//! use: never a container bound to a deleted folder.
//! Anonymous volumes (`-v /path`, an image's `VOLUME`) stay on the VM's own
//! disk: they take no share slot and go with the VM, as `--rm` and `rm -v`
//! would remove them.

use berth_protocol::{ApiError, ContainerConfig, ErrorKind, MountType, VolumeInfo};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file in a VM directory naming the volumes its container mounts,
/// one a line.
pub const USES: &str = "volumes";

/// The lock file in the store's folder (see the module's comment).
const LOCK: &str = ".lock";

/// How a volume's folder set aside for removal begins (a dot name: no
/// volume's name, see [`valid_name`]).
const TRASH: &str = ".rm-";

/// The folder of the [`Reservation`]s, one file each, naming its volumes.
const STARTING: &str = ".starting";

/// The named volumes of a container that is being started, held in use
/// from [`attach`] until it is dropped (or its process ends), by then the
/// container's VM directory lists them ([`record_uses`]). A file in
/// `vm-volumes/.starting/` names them; its process holds a lock on it, so
/// a reservation of a process that died is seen as gone (and removed).
/// An empty one (no named volumes, another placement) holds nothing.
#[derive(Debug, Default)]
#[must_use = "the volumes are held only while the reservation lives"]
pub struct Reservation {
    held: Option<(PathBuf, std::fs::File)>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // The file goes first, then its lock (with the handle).
        if let Some((path, _)) = &self.held {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What a volume's `volume.json` holds (the native engine's fields).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    name: String,
    created_at: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    anonymous: bool,
}

/// Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at
/// most 255 bytes (a file name; never `.` or `..`).
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn invalid_name(n: &str) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidArgument,
        format!("create {n}: \"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"),
    )
}

fn no_such_volume(n: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("get {n}: no such volume"))
}

fn io_error(what: String, e: std::io::Error) -> ApiError {
    ApiError::new(ErrorKind::Internal, format!("{what}: {e}"))
}

/// The own-VM volume store of one berth home.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    root: PathBuf,
    vms: PathBuf,
}

impl VolumeStore {
    /// `$BERTH_HOME/vm-volumes`, with users found under `$BERTH_HOME/vms`.
    pub fn open() -> VolumeStore {
        VolumeStore::at(
            crate::paths::state_dir().join("vm-volumes"),
            crate::vm_fleet::root(),
        )
    }

    /// A store in `root` whose users are the VM directories under `vms`.
    pub fn at(root: PathBuf, vms: PathBuf) -> VolumeStore {
        VolumeStore { root, vms }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where volume `name`'s files are (docker's `Mountpoint`).
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir(name).join("_data")
    }

    fn read(&self, name: &str) -> Option<Record> {
        if !valid_name(name) {
            return None;
        }
        let text = std::fs::read(self.dir(name).join("volume.json")).ok()?;
        let r: Record = serde_json::from_slice(&text).ok()?;
        (r.name == name && self.data_dir(name).is_dir()).then_some(r)
    }

    fn info(&self, r: &Record, used_by: Vec<String>) -> VolumeInfo {
        VolumeInfo {
            name: r.name.clone(),
            driver: "local".into(),
            mountpoint: self.data_dir(&r.name).to_string_lossy().into_owned(),
            created_at: r.created_at.clone(),
            labels: r.labels.clone(),
            options: r.options.clone(),
            anonymous: r.anonymous,
            used_by,
        }
    }

    /// Volume `name` (a random one when `None`), made with `labels` when it
    /// does not exist. Driver options are refused: an own VM's volume is a
    /// host folder the VM shares, not something the guest mounts.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: &BTreeMap<String, String>,
        options: &BTreeMap<String, String>,
    ) -> Result<VolumeInfo, ApiError> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => random_name(),
        };
        if !options.is_empty() {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!("create {name}: volume driver options (-o) are not available with --isolation vm: the volume is a host folder each container's VM shares; use --isolation shared or native"),
            ));
        }
        let r = {
            let _locked = self.lock(&name)?;
            self.ensure(&name, labels)?
        };
        let used = self.users().remove(&name).unwrap_or_default();
        Ok(self.info(&r, used))
    }

    /// Serialises making, reserving and removing volumes between berth
    /// processes; released when the returned file is dropped. `name`: for
    /// the error.
    fn lock(&self, name: &str) -> Result<std::fs::File, ApiError> {
        let fail = |e| io_error(format!("locking the volumes for {name}"), e);
        std::fs::create_dir_all(&self.root).map_err(fail)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(LOCK))
            .map_err(fail)?;
        crate::platform::lock_exclusive(&f).map_err(fail)?;
        Ok(f)
    }

    /// Makes each of `volumes` (name, labels for a new one) that does not
    /// exist yet and holds them all in use until the reservation is
    /// dropped: what a run does before its container's VM directory
    /// records them.
    pub fn reserve(
        &self,
        volumes: &[(String, BTreeMap<String, String>)],
    ) -> Result<Reservation, ApiError> {
        let Some((first, _)) = volumes.first() else {
            return Ok(Reservation::default());
        };
        let _locked = self.lock(first)?;
        for (name, labels) in volumes {
            self.ensure(name, labels)?;
        }
        let fail = |e| io_error(format!("reserving volume {first}"), e);
        let dir = self.root.join(STARTING);
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let mut text = String::new();
        for (name, _) in volumes {
            text.push_str(name);
            text.push('\n');
        }
        // Written and locked under a temporary name, then renamed: a
        // reservation under its own name is always whole and locked.
        let mut tmp = tempfile::Builder::new()
            .prefix(".new-")
            .tempfile_in(&dir)
            .map_err(fail)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(fail)?;
        if !crate::platform::try_lock_exclusive(tmp.as_file()).map_err(fail)? {
            return Err(fail(std::io::Error::other("a new file is locked")));
        }
        let path = dir.join(format!("{}-{}", std::process::id(), &random_name()[..16]));
        let file = tmp.persist(&path).map_err(|e| fail(e.error))?;
        Ok(Reservation {
            held: Some((path, file)),
        })
    }

    /// The host folder of volume `name`, made (with `labels`) when it does
    /// not exist yet: what a container's `-v NAME:/path` mounts. For front
    /// ends that run own-VM containers (run, compose).
    pub fn host_folder(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<PathBuf, ApiError> {
        let _locked = self.lock(name)?;
        self.ensure(name, labels)?;
        Ok(self.data_dir(name))
    }

    fn ensure(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<Record, ApiError> {
        if !valid_name(name) {
            return Err(invalid_name(name));
        }
        if let Some(r) = self.read(name) {
            return Ok(r);
        }
        let rec = Record {
            name: name.to_string(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels: labels.clone(),
            options: BTreeMap::new(),
            anonymous: false,
        };
        // Made beside and renamed into place: a volume is there whole or
        // not at all; of two runs making it at once, one rename wins.
        let fail = |e| io_error(format!("create {name}"), e);
        std::fs::create_dir_all(&self.root).map_err(fail)?;
        let tmp = tempfile::Builder::new()
            .prefix(".new-")
            .tempdir_in(&self.root)
            .map_err(fail)?;
        std::fs::create_dir(tmp.path().join("_data")).map_err(fail)?;
        std::fs::write(
            tmp.path().join("volume.json"),
            serde_json::to_vec(&rec).map_err(|e| fail(e.into()))?,
        )
        .map_err(fail)?;
        match std::fs::rename(tmp.path(), self.dir(name)) {
            Ok(()) => {
                // Renamed away: nothing left for the guard to remove.
                let _ = tmp.keep();
                Ok(rec)
            }
            Err(e) => self.read(name).ok_or_else(|| fail(e)),
        }
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<VolumeInfo> {
        let mut used = self.users();
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<VolumeInfo> = rd
            .flatten()
            .filter_map(|e| self.read(&e.file_name().to_string_lossy()))
            .map(|r| {
                let u = used.remove(&r.name).unwrap_or_default();
                self.info(&r, u)
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn inspect(&self, name: &str) -> Result<VolumeInfo, ApiError> {
        let r = self.read(name).ok_or_else(|| no_such_volume(name))?;
        let used = self.users().remove(name).unwrap_or_default();
        Ok(self.info(&r, used))
    }

    /// Removes volume `name` unless a container uses it (docker's words);
    /// `force` hides a missing one. Only the check and a rename aside run
    /// under the store's lock: the files go after it is released, so a
    /// starting run never waits behind a large delete.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), ApiError> {
        let trash = {
            let _locked = self.lock(name)?;
            if self.read(name).is_none() {
                return if force {
                    Ok(())
                } else {
                    Err(no_such_volume(name))
                };
            }
            if let Some(ids) = self.users().remove(name) {
                return Err(ApiError::new(
                    ErrorKind::Conflict,
                    format!("remove {name}: volume is in use - [{}]", ids.join(", ")),
                ));
            }
            self.set_aside(name)
                .map_err(|e| io_error(format!("remove {name}"), e))?
        };
        match std::fs::remove_dir_all(&trash) {
            // A prune sweeping old trash took it first.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error(format!("remove {name}"), e))
            }
            _ => Ok(()),
        }
    }

    /// Renames volume `name`'s folder to a trash name (a dot name, which
    /// no volume has, so it is gone from the store at once); returns it.
    /// A trash folder an interrupted delete left is removed by the next
    /// [`Self::prune`].
    fn set_aside(&self, name: &str) -> std::io::Result<PathBuf> {
        let trash = self.root.join(format!("{TRASH}{}", &random_name()[..32]));
        std::fs::rename(self.dir(name), &trash)?;
        Ok(trash)
    }

    /// `volume prune`: the unused volumes (all of them are named: the
    /// anonymous ones stay in the VMs), only with `all`, as docker's. The
    /// volumes leave the store under its lock; their files are removed
    /// after it, with any trash an interrupted delete left.
    pub fn prune(&self, all: bool) -> (Vec<String>, u64) {
        let mut names = Vec::new();
        let mut reclaimed = 0;
        let mut trash = Vec::new();
        {
            let Ok(_locked) = self.lock("prune") else {
                return (names, reclaimed);
            };
            for v in self.list() {
                if !v.used_by.is_empty() || !(all || v.anonymous) {
                    continue;
                }
                if let Ok(t) = self.set_aside(&v.name) {
                    trash.push((Some(v.name), t));
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let old = e.file_name().to_string_lossy().starts_with(TRASH);
                if old && !trash.iter().any(|(_, t)| *t == e.path()) {
                    trash.push((None, e.path()));
                }
            }
        }
        for (name, t) in trash {
            let size = tree_size(&t.join("_data"));
            // Another prune may be removing the same old trash: what it
            // takes first is simply gone.
            let _ = std::fs::remove_dir_all(&t);
            if let Some(name) = name {
                reclaimed += size;
                names.push(name);
            }
        }
        (names, reclaimed)
    }

    /// Volume name → the containers that use it: a detached container's id
    /// (from its record), the VM directory's name for a run in the
    /// foreground while its process or VMM lives, or a starting run's
    /// reservation (`<pid>-<random>`).
    fn users(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (user, names) in self.reservations() {
            for n in names {
                out.entry(n).or_default().push(user.clone());
            }
        }
        let Ok(rd) = std::fs::read_dir(&self.vms) else {
            return out;
        };
        for e in rd.flatten() {
            let dir = e.path();
            let Some(names) = read_uses(&dir) else {
                continue;
            };
            let user = match crate::vm_fleet::read_record(&dir) {
                Some(r) => r.id,
                None if crate::vm_fleet::dir_alive(&dir) => {
                    e.file_name().to_string_lossy().into_owned()
                }
                None => continue,
            };
            for n in names {
                let ids = out.entry(n).or_default();
                if !ids.contains(&user) {
                    ids.push(user.clone());
                }
            }
        }
        out
    }
}

impl VolumeStore {
    /// The live reservations: (its name, the volumes it holds). One whose
    /// lock nobody holds belongs to a process that ended: removed.
    fn reservations(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.root.join(STARTING)) else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let Ok(f) = std::fs::File::open(e.path()) else {
                continue;
            };
            match crate::platform::try_lock_exclusive(&f) {
                Ok(false) => {}
                Ok(true) => {
                    let _ = std::fs::remove_file(e.path());
                    continue;
                }
                Err(_) => continue,
            }
            if let Some(names) = read_names(f) {
                out.push((name, names));
            }
        }
        out
    }
}

/// A volume name docker's daemon would make: 64 random hex digits
/// (anonymous volumes; `volume create` without a name).
pub fn random_name() -> String {
    use sha2::{Digest, Sha256};
    let mut seed = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .is_ok();
    if !read {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        seed[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
        seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex::encode(Sha256::digest(seed))
}

fn tree_size(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}

/// The volumes the VM directory `dir` says its container mounts.
fn read_uses(dir: &Path) -> Option<Vec<String>> {
    read_names(std::fs::File::open(dir.join(USES)).ok()?)
}

/// Volume names, one a line (at most 1 MiB of them).
fn read_names(f: std::fs::File) -> Option<Vec<String>> {
    use std::io::Read;
    let mut text = String::new();
    f.take(1 << 20).read_to_string(&mut text).ok()?;
    Some(
        text.lines()
            .filter(|l| valid_name(l))
            .map(str::to_string)
            .collect(),
    )
}

/// The named volumes `cfg` mounts (after [`attach`]).
pub fn names(cfg: &ContainerConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in &cfg.mounts {
        if m.kind == MountType::Volume && !m.source.is_empty() && !out.contains(&m.source) {
            out.push(m.source.clone());
        }
    }
    out
}

/// Records in the VM directory `dir` that its container mounts `names`.
pub fn record_uses(dir: &Path, names: &[String]) -> std::io::Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let mut text = names.join("\n");
    text.push('\n');
    std::fs::write(dir.join(USES), text)
}

/// Points each named volume of a container that gets its own VM at its
/// host folder in `store` (made on first use, with the mount's labels):
/// the mount gets the local driver's bind options with the folder's guest
/// path (`/host_mnt` + host path), which [`crate::vm_shares::check_binds`]
/// then gives a share slot. A volume with a driver other than `local` or
/// with driver options is refused. The volumes stay in use while the
/// returned reservation lives: the caller keeps it until the container's
/// VM directory records them ([`record_uses`]).
pub fn attach(store: &VolumeStore, cfg: &mut ContainerConfig) -> Result<Reservation, String> {
    let mut wanted: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for m in &cfg.mounts {
        if m.kind != MountType::Volume || m.source.is_empty() {
            continue;
        }
        let name = m.source.clone();
        if let Some(d) = m.volume_driver.as_deref().filter(|d| *d != "local") {
            return Err(format!(
                "Error response from daemon: create {name}: error looking up volume plugin {d}: plugin \"{d}\" not found"
            ));
        }
        if !m.volume_options.is_empty() {
            return Err(format!(
                "volume driver options (volume-opt) for volume {name} are not available with --isolation vm: the volume is a host folder each container's VM shares; use --isolation shared or native"
            ));
        }
        if !wanted.iter().any(|(n, _)| *n == name) {
            wanted.push((name, m.volume_labels.clone()));
        }
    }
    let held = store
        .reserve(&wanted)
        .map_err(|e| format!("Error response from daemon: {e}"))?;
    for m in cfg.mounts.iter_mut() {
        if m.kind != MountType::Volume || m.source.is_empty() {
            continue;
        }
        let host = store.data_dir(&m.source);
        let host = std::fs::canonicalize(&host).unwrap_or(host);
        m.volume_options = crate::vm_shares::volume_bind_options(&host);
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::MountSpec;

    fn store(t: &tempfile::TempDir) -> VolumeStore {
        let s = VolumeStore::at(t.path().join("vm-volumes"), t.path().join("vms"));
        std::fs::create_dir_all(t.path().join("vms")).unwrap();
        s
    }

    #[test]
    fn a_volume_is_made_once_listed_and_removed_unless_in_use() {
        let t = tempfile::tempdir().unwrap();
        let s = store(&t);
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let v = s.create(Some("data1"), &labels, &BTreeMap::new()).unwrap();
        assert_eq!(v.name, "data1");
        assert_eq!(v.driver, "local");
        assert_eq!(v.mountpoint, s.data_dir("data1").display().to_string());
        std::fs::write(s.data_dir("data1").join("f"), b"kept").unwrap();
        // A second create (or a run's first use) finds the same volume.
        let again = s.host_folder("data1", &BTreeMap::new()).unwrap();
        assert_eq!(std::fs::read(again.join("f")).unwrap(), b"kept");
        assert_eq!(s.inspect("data1").unwrap().labels, labels);
        let names: Vec<String> = s.list().into_iter().map(|v| v.name).collect();
        assert_eq!(names, vec!["data1"]);
        // A detached container's record keeps it in use until its rm.
        let vm = t.path().join("vms/1-2");
        std::fs::create_dir(&vm).unwrap();
        record_uses(&vm, &["data1".to_string()]).unwrap();
        let id = "ab".repeat(32);
        let rec = crate::vm_fleet::Record {
            id: id.clone(),
            name: "c1".into(),
            summary: berth_protocol::ContainerSummary {
                id: id.clone(),
                name: "c1".into(),
                image: "busybox".into(),
                image_id: "sha256:00".into(),
                command: "sh".into(),
                created: "2026-12-07T00:00:00Z".into(),
                status: berth_protocol::ContainerStatus::Exited,
                exit_code: Some(0),
                started_at: None,
                finished_at: None,
                labels: Default::default(),
                restart_count: 0,
                health: None,
                ports: None,
            },
            ports: Vec::new(),
            keeper_pid: 1,
            stopped: true,
        };
        crate::vm_fleet::write_record(&vm, &rec).unwrap();
        assert_eq!(s.inspect("data1").unwrap().used_by, vec![id.clone()]);
        let e = s.remove("data1", false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(
            e.message,
            format!("remove data1: volume is in use - [{id}]")
        );
        assert!(s.prune(true).0.is_empty());
        // Its rm (the directory goes) frees it.
        std::fs::remove_dir_all(&vm).unwrap();
        s.remove("data1", false).unwrap();
        assert!(!s.dir("data1").exists());
        let e = s.remove("data1", false).unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::NotFound, "get data1: no such volume")
        );
        s.remove("data1", true).unwrap();
    }

    #[test]
    fn a_volume_set_aside_is_gone_at_once_and_old_trash_goes_with_prune() {
        let t = tempfile::tempdir().unwrap();
        let s = store(&t);
        let none = BTreeMap::new();
        s.create(Some("big"), &none, &none).unwrap();
        std::fs::create_dir_all(s.data_dir("big").join("a/b")).unwrap();
        std::fs::write(s.data_dir("big").join("a/b/f"), b"12345").unwrap();
        // What `remove` does under the lock: the volume leaves the store
        // at once (its files still there, as after a delete interrupted
        // by a kill), and the store's lock is free again.
        let trash = {
            let _locked = s.lock("big").unwrap();
            s.set_aside("big").unwrap()
        };
        assert!(trash.join("_data/a/b/f").exists());
        assert!(s.list().is_empty(), "{:?}", s.list());
        assert_eq!(s.inspect("big").unwrap_err().kind, ErrorKind::NotFound);
        let lock = std::fs::File::open(s.root.join(LOCK)).unwrap();
        assert!(crate::platform::try_lock_exclusive(&lock).unwrap());
        drop(lock);
        // A new volume of the same name starts empty.
        s.create(Some("big"), &none, &none).unwrap();
        assert_eq!(std::fs::read_dir(s.data_dir("big")).unwrap().count(), 0);
        // prune removes the unused volume and the old trash; the trash is
        // not counted as a volume it removed.
        let (names, _) = s.prune(true);
        assert_eq!(names, vec!["big".to_string()]);
        assert!(!trash.exists());
        let left: Vec<_> = std::fs::read_dir(&s.root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TRASH) || !n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // remove leaves no trash either.
        s.create(Some("big"), &none, &none).unwrap();
        std::fs::write(s.data_dir("big").join("f"), b"x").unwrap();
        s.remove("big", false).unwrap();
        assert_eq!(
            std::fs::read_dir(&s.root)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(TRASH))
                .count(),
            0
        );
    }

    #[test]
    fn a_dead_runs_directory_does_not_hold_a_volume() {
        let t = tempfile::tempdir().unwrap();
        let s = store(&t);
        s.create(Some("db"), &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        // A foreground run of this very process: alive.
        let live = t.path().join(format!("vms/{}-1", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        record_uses(&live, &["db".to_string()]).unwrap();
        assert_eq!(
            s.inspect("db").unwrap().used_by,
            vec![format!("{}-1", std::process::id())]
        );
        std::fs::remove_dir_all(&live).unwrap();
        // A killed run's leftover: no process, no VMM, no record.
        let dead = t.path().join("vms/999999999-1");
        std::fs::create_dir(&dead).unwrap();
        record_uses(&dead, &["db".to_string()]).unwrap();
        assert!(s.inspect("db").unwrap().used_by.is_empty());
        assert_eq!(s.prune(false).0, Vec::<String>::new());
        assert_eq!(s.prune(true).0, vec!["db".to_string()]);
    }

    /// A `volume rm` racing runs that start with the volume: each run
    /// holds it (a reservation, made under the store's lock) from the
    /// moment it points its mount at the folder, so the remover either
    /// removes it between runs (the next run makes it anew) or is refused
    /// as in use; a held folder is never deleted.
    #[test]
    fn a_volume_rm_racing_a_starting_run_never_deletes_a_held_volume() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let t = tempfile::tempdir().unwrap();
        let s = store(&t);
        let stop = AtomicBool::new(false);
        let removed = AtomicUsize::new(0);
        let refused = AtomicUsize::new(0);
        /// Stops the remover however the rounds end (a failed one too).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        std::thread::scope(|scope| {
            let _stop = Stop(&stop);
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    match s.remove("db", true) {
                        Ok(()) => removed.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
                            let held =
                                format!("remove db: volume is in use - [{}-", std::process::id());
                            assert!(e.message.starts_with(&held), "{e}");
                            refused.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            });
            for round in 0..300 {
                let held = s.reserve(&[("db".to_string(), BTreeMap::new())]).unwrap();
                // The run's VM would now write into the folder.
                let f = s.data_dir("db").join("f");
                let written = std::fs::write(&f, round.to_string());
                assert!(
                    written.is_ok(),
                    "round {round}: a held volume was removed: {written:?}"
                );
                std::thread::yield_now();
                assert_eq!(
                    std::fs::read_to_string(&f).ok(),
                    Some(round.to_string()),
                    "round {round}: a held volume was removed"
                );
                drop(held);
            }
        });
        eprintln!(
            "volume rm: {} removed, {} refused as in use",
            removed.load(Ordering::SeqCst),
            refused.load(Ordering::SeqCst)
        );
        // Nothing holds it now; no reservation file is left.
        s.create(Some("db"), &BTreeMap::new(), &BTreeMap::new())
            .unwrap();
        s.remove("db", false).unwrap();
        let left = std::fs::read_dir(t.path().join("vm-volumes").join(STARTING))
            .unwrap()
            .count();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_reservation_holds_its_volumes_until_dropped_or_its_process_ends() {
        let t = tempfile::tempdir().unwrap();
        let s = store(&t);
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let held = s
            .reserve(&[
                ("web".to_string(), labels.clone()),
                ("db".to_string(), BTreeMap::new()),
            ])
            .unwrap();
        // Made, with the labels of a new volume.
        assert_eq!(s.inspect("web").unwrap().labels, labels);
        let users = s.inspect("db").unwrap().used_by;
        assert_eq!(users.len(), 1);
        assert!(users[0].starts_with(&format!("{}-", std::process::id())));
        assert!(s.prune(true).0.is_empty());
        assert_eq!(
            s.remove("web", false).unwrap_err().kind,
            ErrorKind::Conflict
        );
        drop(held);
        assert!(s.inspect("db").unwrap().used_by.is_empty());
        // A reservation nobody holds a lock on (its process ended without
        // dropping it) holds nothing, and goes.
        let stale = t.path().join("vm-volumes").join(STARTING).join("1-dead");
        std::fs::write(&stale, "db\n").unwrap();
        assert!(s.inspect("db").unwrap().used_by.is_empty());
        assert!(!stale.exists());
        assert_eq!(s.prune(true).0, vec!["db".to_string(), "web".to_string()]);
        // No named volume: nothing made, nothing held.
        let none = s.reserve(&[]).unwrap();
        assert!(none.held.is_none());
    }

    #[test]
    fn bad_names_and_options_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = store(&t);
        for bad in ["..", ".x", "a/b", "x", "a b"] {
            let e = s.create(Some(bad), &BTreeMap::new(), &BTreeMap::new());
            assert!(
                e.unwrap_err()
                    .message
                    .contains("includes invalid characters"),
                "{bad}"
            );
        }
        assert!(!t.path().join("b").exists());
        let opts = BTreeMap::from([("type".to_string(), "tmpfs".to_string())]);
        let e = s.create(Some("v1"), &BTreeMap::new(), &opts).unwrap_err();
        assert!(
            e.message.contains("not available with --isolation vm"),
            "{e}"
        );
        assert!(s.list().is_empty());
    }

    #[test]
    fn attach_points_named_volumes_at_their_host_folder() {
        let t = tempfile::tempdir().unwrap();
        let s = store(&t);
        let mut named = MountSpec::new(MountType::Volume, "web", "/data");
        named.read_only = true;
        let mut cfg = ContainerConfig {
            mounts: vec![
                named,
                MountSpec::new(MountType::Volume, "", "/anon"),
                MountSpec::new(MountType::Tmpfs, "", "/t"),
            ],
            ..Default::default()
        };
        let held = attach(&s, &mut cfg).unwrap();
        assert_eq!(s.inspect("web").unwrap().used_by.len(), 1, "held");
        drop(held);
        assert!(s.inspect("web").unwrap().used_by.is_empty());
        let host = std::fs::canonicalize(s.data_dir("web")).unwrap();
        let device = format!("/host_mnt{}", host.display());
        assert_eq!(
            crate::vm_shares::bound_device(&cfg.mounts[0]),
            Some(device.as_str())
        );
        assert_eq!(cfg.mounts[0].source, "web");
        // Anonymous volumes stay in the VM.
        assert!(cfg.mounts[1].volume_options.is_empty());
        assert_eq!(crate::vm_shares::bound_device(&cfg.mounts[1]), None);
        assert_eq!(names(&cfg), vec!["web".to_string()]);
        // Options or another driver: refused, nothing made.
        let mut o = MountSpec::new(MountType::Volume, "opt", "/o");
        o.volume_options.insert("type".into(), "tmpfs".into());
        let mut cfg = ContainerConfig {
            mounts: vec![o],
            ..Default::default()
        };
        assert!(attach(&s, &mut cfg).unwrap_err().contains("volume-opt"));
        let mut d = MountSpec::new(MountType::Volume, "drv", "/d");
        d.volume_driver = Some("nfs".into());
        let mut cfg = ContainerConfig {
            mounts: vec![d],
            ..Default::default()
        };
        assert!(attach(&s, &mut cfg)
            .unwrap_err()
            .contains("plugin \"nfs\" not found"));
        assert!(s.inspect("opt").is_err() && s.inspect("drv").is_err());
    }
}
