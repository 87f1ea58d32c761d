//! Volumes: `<root>/volumes/<name>/_data` with `volume.json` beside it, and
//! how a container's `-v`/`--mount`/`--volumes-from`/image `VOLUME` become
//! its mount points.
//!
//! A volume is created by `volume create`, or by a container that names one
//! that does not exist, or anonymously for a container (`-v /path`, an image
//! `VOLUME`). It is removed only by `volume rm`/`prune`, or, when anonymous,
//! with the container that made it (`rm -v`, `--rm`). Whether a volume is in
//! use is read from the container records, under the container store's
//! lock, so a volume cannot be removed while a container that uses it is
//! being created.

use super::containers::ContainerStore;
use super::fsutil::remove_tree_same_fs;
use super::mounts::read_volume;
pub use super::mounts::{copy_up, prepare_mounts, valid_volume_name, VolumeRecord};
use super::record::ContainerRecord;
use crate::engine::{Error, Object};
use crate::layout::{publish_dir, random_hex, Layout};
use berth_protocol::{MountPoint, MountSpec, MountType, VolumeInfo};

use std::collections::BTreeMap;

/// Docker 23+ marks the volumes it makes for one container with this label.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The option keys docker's `local` driver accepts.
const LOCAL_OPTIONS: &[&str] = &["type", "device", "o", "size"];

fn invalid_name(n: &str) -> Error {
    Error::invalid(format!("create {n}: \"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"),
    )
}

fn no_such_volume(n: &str) -> Error {
    Error::not_found(Object::Volume, n)
}

fn check_driver(name: &str, driver: Option<&str>) -> Result<(), Error> {
    match driver {
        None | Some("") | Some("local") => Ok(()),
        Some(d) => Err(Error::missing(format!(
            "create {name}: error looking up volume plugin {d}: plugin \"{d}\" not found"
        ))),
    }
}

fn check_options(name: &str, options: &BTreeMap<String, String>) -> Result<(), Error> {
    for k in options.keys() {
        if !LOCAL_OPTIONS.contains(&k.as_str()) {
            return Err(Error::invalid(format!(
                "create {name}: invalid option: {k:?}"
            )));
        }
    }
    if options.contains_key("size") {
        return Err(Error::invalid(format!(
            "create {name}: quota size requested but no quota support"
        )));
    }
    if options.contains_key("device") != options.contains_key("type") {
        return Err(Error::invalid(format!(
            "create {name}: missing required option: \"{}\"",
            if options.contains_key("type") {
                "device"
            } else {
                "type"
            }
        )));
    }
    Ok(())
}

fn info(layout: &Layout, v: &VolumeRecord, used_by: Vec<String>) -> VolumeInfo {
    VolumeInfo {
        name: v.name.clone(),
        driver: "local".into(),
        mountpoint: layout.volume_data(&v.name).to_string_lossy().into_owned(),
        created_at: v.created_at.clone(),
        labels: v.labels.clone(),
        options: v.options.clone(),
        anonymous: v.anonymous,
        used_by,
    }
}

/// Ids of the containers whose mounts name each volume.
fn users(records: &[ContainerRecord]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records {
        for m in &r.mounts {
            if let (MountType::Volume, Some(n)) = (m.kind, &m.name) {
                let ids = out.entry(n.clone()).or_default();
                if !ids.contains(&r.id) {
                    ids.push(r.id.clone());
                }
            }
        }
    }
    out
}

/// Whether a path is absolute and names no `.`/`..` component.
fn clean_absolute(p: &str) -> bool {
    p.starts_with('/') && !p.contains('\0') && !p.split('/').any(|c| c == "." || c == "..")
}

/// `/a//b/` → `/a/b`.
fn normalize(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

/// Docker's daemon-side checks of one mount (`validateMountConfig`).
pub fn validate_mount(m: &MountSpec) -> Result<(), Error> {
    let kind = m.kind.as_str();
    let bad =
        |msg: String| Error::invalid(format!("invalid mount config for type \"{kind}\": {msg}"));
    if m.target.is_empty() {
        return Err(bad("field Target must not be empty".into()));
    }
    if !m.target.starts_with('/') {
        return Err(bad(format!(
            "invalid mount path: '{}' mount path must be absolute",
            m.target
        )));
    }
    if !clean_absolute(&m.target) {
        return Err(bad(format!("invalid mount path: '{}'", m.target)));
    }
    if normalize(&m.target) == "/" {
        return Err(Error::invalid(
            "invalid specification: destination can't be '/'",
        ));
    }
    match m.kind {
        MountType::Bind => {
            if m.source.is_empty() {
                return Err(bad("field Source must not be empty".into()));
            }
            if !m.source.starts_with('/') || m.source.contains('\0') {
                return Err(bad(format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                )));
            }
            if let Some(p) = &m.propagation {
                if !matches!(
                    p.as_str(),
                    "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
                ) {
                    return Err(bad(format!("invalid propagation mode: {p}")));
                }
            }
            if !m.create_host_path && std::fs::symlink_metadata(&m.source).is_err() {
                return Err(bad(format!(
                    "bind source path does not exist: {}",
                    m.source
                )));
            }
        }
        MountType::Volume => {
            if !m.source.is_empty() && !valid_volume_name(&m.source) {
                return Err(invalid_name(&m.source));
            }
            check_driver(&m.source, m.volume_driver.as_deref())?;
            check_options(&m.source, &m.volume_options)?;
        }
        MountType::Tmpfs => {
            if !m.source.is_empty() {
                return Err(bad("field Source must not be specified".into()));
            }
            if m.read_only {
                // Docker accepts a read-only tmpfs; nothing to check.
            }
        }
    }
    Ok(())
}

/// `--volumes-from NAME[:ro|rw]` → (container, read-only override).
fn parse_volumes_from(s: &str) -> Result<(&str, Option<bool>), Error> {
    match s.rsplit_once(':') {
        Some((c, "ro")) => Ok((c, Some(true))),
        Some((c, "rw")) => Ok((c, Some(false))),
        Some((_, mode)) => Err(Error::invalid(format!("invalid mode: {mode}"))),
        None => Ok((s, None)),
    }
}

/// The options of a tmpfs mount (`--mount type=tmpfs`, docker's defaults).
fn tmpfs_options(m: &MountSpec) -> Vec<String> {
    let mut o = vec!["nosuid".to_string(), "nodev".into(), "noexec".into()];
    if let Some(s) = m.tmpfs_size.filter(|s| *s > 0) {
        o.push(format!("size={s}"));
    }
    if let Some(mode) = m.tmpfs_mode {
        o.push(format!("mode={mode:o}"));
    }
    o
}

impl ContainerStore {
    /// Creates a volume, or returns the existing one of that name.
    /// Callers hold `self.lock`.
    fn volume_create_locked(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        labels: &BTreeMap<String, String>,
        options: &BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<(VolumeRecord, bool), Error> {
        let layout = self.layout();
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                if !valid_volume_name(n) {
                    return Err(invalid_name(n));
                }
                n.to_string()
            }
            None => random_hex(32),
        };
        check_driver(&name, driver)?;
        check_options(&name, options)?;
        if let Some(v) = read_volume(layout, &name) {
            return Ok((v, false));
        }
        let mut labels = labels.clone();
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.into(), String::new());
        }
        let rec = VolumeRecord {
            name: name.clone(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            options: options.clone(),
            anonymous,
        };
        // Made in tmp/ and renamed into place: a volume is there whole or
        // not at all, and once `create` answers it survives a crash.
        let tmp = layout.temp_dir("vol").map_err(Error::unexpected)?;
        let made = (|| {
            std::fs::create_dir(tmp.join("_data"))?;
            let json = serde_json::to_vec_pretty(&rec).map_err(std::io::Error::other)?;
            publish_dir(&tmp, &layout.volume(&name), &[("volume.json", &json)])
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(Error::io(format!("create {name}"))(e));
        }
        super::events::volume(layout.root(), "create", &name);
        Ok((rec, true))
    }

    pub fn volume_create(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        labels: &BTreeMap<String, String>,
        options: &BTreeMap<String, String>,
    ) -> Result<VolumeInfo, Error> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let (v, _) = self.volume_create_locked(name, driver, labels, options, false)?;
        let used = users(&self.records()).remove(&v.name).unwrap_or_default();
        Ok(info(self.layout(), &v, used))
    }

    pub fn volume_list(&self) -> Vec<VolumeInfo> {
        let mut used = users(&self.records());
        let Ok(rd) = std::fs::read_dir(self.layout().volumes()) else {
            return Vec::new();
        };
        let mut out: Vec<VolumeInfo> = rd
            .flatten()
            .filter_map(|e| read_volume(self.layout(), &e.file_name().to_string_lossy()))
            .map(|v| {
                let u = used.remove(&v.name).unwrap_or_default();
                info(self.layout(), &v, u)
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn volume_inspect(&self, name: &str) -> Result<VolumeInfo, Error> {
        let v = read_volume(self.layout(), name).ok_or_else(|| no_such_volume(name))?;
        let used = users(&self.records()).remove(name).unwrap_or_default();
        Ok(info(self.layout(), &v, used))
    }

    /// Deletes a volume nobody uses. Callers hold `self.lock`.
    pub(super) fn volume_delete_locked(&self, name: &str) -> std::io::Result<u64> {
        let dir = self.layout().volume(name);
        let data = dir.join("_data");
        if super::fsutil::is_mounted(&data) {
            nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH)?;
        }
        let mut unbounded = usize::MAX;
        let size = super::fsutil::tree_size(&data, &mut unbounded);
        let trash = self.layout().tmp().join(format!("rmvol-{}", random_hex(8)));
        std::fs::rename(&dir, &trash)?;
        remove_tree_same_fs(&trash)?;
        super::events::volume(self.layout().root(), "destroy", name);
        Ok(size)
    }

    pub fn volume_remove(&self, name: &str, force: bool) -> Result<(), Error> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if read_volume(self.layout(), name).is_none() {
            return if force {
                Ok(())
            } else {
                Err(no_such_volume(name))
            };
        }
        if let Some(ids) = users(&self.records()).remove(name) {
            return Err(Error::conflict(format!(
                "remove {name}: volume is in use - [{}]",
                ids.join(", ")
            )));
        }
        self.volume_delete_locked(name)
            .map(|_| ())
            .map_err(Error::io(format!("remove {name}")))
    }

    /// `volume prune`: unused anonymous volumes, or every unused one.
    pub fn volume_prune(&self, all: bool) -> (Vec<String>, u64) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut names = Vec::new();
        let mut reclaimed = 0;
        for v in self.volume_list() {
            if !v.used_by.is_empty() || !(all || v.anonymous) {
                continue;
            }
            if let Ok(n) = self.volume_delete_locked(&v.name) {
                reclaimed += n;
                names.push(v.name);
            }
        }
        (names, reclaimed)
    }

    /// Removes the anonymous volumes `rec` made that no other container
    /// uses (`rm -v`, `--rm`). Named volumes stay, as in docker.
    pub fn remove_anonymous_volumes(&self, rec: &ContainerRecord) {
        // Most containers have none: skip reading every record.
        if !rec.mounts.iter().any(|m| m.anonymous) {
            return;
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let used = users(&self.records());
        for m in rec.mounts.iter().filter(|m| m.anonymous) {
            let Some(name) = &m.name else { continue };
            let others = used
                .get(name)
                .is_some_and(|ids| ids.iter().any(|i| *i != rec.id));
            if !others && read_volume(self.layout(), name).is_some() {
                if let Err(e) = self.volume_delete_locked(name) {
                    log::warn!("removing volume {name}: {e}");
                }
            }
        }
    }

    /// Turns a new container's mounts, `--volumes-from` and the image's
    /// `VOLUME`s into mount points, creating the volumes they need. Callers
    /// hold `self.lock`; on error the volumes made here are removed again.
    pub(super) fn resolve_mounts(
        &self,
        specs: &[MountSpec],
        volumes_from: &[String],
        image_volumes: &[String],
    ) -> Result<Vec<MountPoint>, Error> {
        let mut made: Vec<String> = Vec::new();
        let result = self.resolve_mounts_inner(specs, volumes_from, image_volumes, &mut made);
        if result.is_err() {
            for n in made {
                let _ = self.volume_delete_locked(&n);
            }
        }
        result
    }

    fn resolve_mounts_inner(
        &self,
        specs: &[MountSpec],
        volumes_from: &[String],
        image_volumes: &[String],
        made: &mut Vec<String>,
    ) -> Result<Vec<MountPoint>, Error> {
        for m in specs {
            validate_mount(m)?;
        }
        let mut out: Vec<MountPoint> = Vec::new();
        let taken = |out: &[MountPoint], dest: &str| out.iter().any(|p| p.destination == dest);
        for m in specs {
            let dest = normalize(&m.target);
            if taken(&out, &dest) {
                return Err(Error::invalid(format!("Duplicate mount point: {dest}")));
            }
            let point = match m.kind {
                MountType::Bind => MountPoint {
                    kind: MountType::Bind,
                    name: None,
                    source: m.source.clone(),
                    destination: dest,
                    mode: m.mode.clone(),
                    rw: !m.read_only,
                    propagation: m.propagation.clone().unwrap_or_else(|| "rprivate".into()),
                    anonymous: false,
                    non_recursive: m.non_recursive,
                    copy_up: false,
                    tmpfs_options: Vec::new(),
                },
                MountType::Volume => {
                    let anonymous = m.source.is_empty();
                    let (v, new) = self.volume_create_locked(
                        Some(m.source.as_str()),
                        m.volume_driver.as_deref(),
                        &m.volume_labels,
                        &m.volume_options,
                        anonymous,
                    )?;
                    if new {
                        made.push(v.name.clone());
                    }
                    MountPoint {
                        kind: MountType::Volume,
                        source: self
                            .layout()
                            .volume_data(&v.name)
                            .to_string_lossy()
                            .into_owned(),
                        name: Some(v.name),
                        destination: dest,
                        mode: if m.mode.is_empty() && m.source.is_empty() {
                            String::new()
                        } else if m.mode.is_empty() {
                            "z".into()
                        } else {
                            m.mode.clone()
                        },
                        rw: !m.read_only,
                        propagation: String::new(),
                        anonymous,
                        non_recursive: false,
                        copy_up: !m.no_copy,
                        tmpfs_options: Vec::new(),
                    }
                }
                MountType::Tmpfs => MountPoint {
                    kind: MountType::Tmpfs,
                    name: None,
                    source: String::new(),
                    destination: dest,
                    mode: String::new(),
                    rw: !m.read_only,
                    propagation: String::new(),
                    anonymous: false,
                    non_recursive: false,
                    copy_up: false,
                    tmpfs_options: tmpfs_options(m),
                },
            };
            out.push(point);
        }
        for f in volumes_from {
            let (key, ro) = parse_volumes_from(f)?;
            let other = self.resolve(key)?;
            for p in other.mounts.iter().filter(|p| p.kind != MountType::Tmpfs) {
                if taken(&out, &p.destination) {
                    continue;
                }
                let mut p = p.clone();
                if let Some(ro) = ro {
                    p.rw = !ro;
                }
                // Shared with the other container: not this one's to remove.
                p.anonymous = false;
                p.copy_up = false;
                out.push(p);
            }
        }
        for dest in image_volumes {
            if !clean_absolute(dest) {
                continue;
            }
            let dest = normalize(dest);
            if dest == "/" || taken(&out, &dest) {
                continue;
            }
            let (v, _) =
                self.volume_create_locked(None, None, &BTreeMap::new(), &BTreeMap::new(), true)?;
            made.push(v.name.clone());
            out.push(MountPoint {
                kind: MountType::Volume,
                source: self
                    .layout()
                    .volume_data(&v.name)
                    .to_string_lossy()
                    .into_owned(),
                name: Some(v.name),
                destination: dest,
                mode: String::new(),
                rw: true,
                propagation: String::new(),
                anonymous: true,
                non_recursive: false,
                copy_up: true,
                tmpfs_options: Vec::new(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(kind: MountType, source: &str, target: &str) -> MountSpec {
        MountSpec::new(kind, source, target)
    }

    #[test]
    fn volume_names_follow_docker() {
        for ok in ["ab", "my-vol", "a.b_c-1", "0x"] {
            assert!(valid_volume_name(ok), "{ok}");
        }
        for bad in ["a", "-ab", ".ab", "a/b", "../x", "a b", "", "é1"] {
            assert!(!valid_volume_name(bad), "{bad}");
        }
    }

    #[test]
    fn mounts_are_checked_as_docker_checks_them() {
        let e = |m: &MountSpec| validate_mount(m).unwrap_err().message();
        assert_eq!(
            e(&spec(MountType::Bind, "/", "rel")),
            "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            e(&spec(MountType::Bind, "", "/x")),
            "invalid mount config for type \"bind\": field Source must not be empty"
        );
        assert_eq!(
            e(&spec(MountType::Bind, "/definitely/not/here", "/x")),
            "invalid mount config for type \"bind\": bind source path does not exist: /definitely/not/here"
        );
        let mut create = spec(MountType::Bind, "/definitely/not/here", "/x");
        create.create_host_path = true;
        assert!(validate_mount(&create).is_ok());
        assert_eq!(
            e(&spec(MountType::Tmpfs, "x", "/t")),
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        assert_eq!(
            e(&spec(MountType::Volume, "a/b", "/t")),
            "create a/b: \"a/b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
        assert_eq!(
            e(&spec(MountType::Volume, "v1", "/")),
            "invalid specification: destination can't be '/'"
        );
        assert!(e(&spec(MountType::Volume, "v1", "/a/../b")).contains("invalid mount path"));
        let mut opts = spec(MountType::Volume, "v1", "/d");
        opts.volume_options.insert("foo".into(), "1".into());
        assert_eq!(e(&opts), "create v1: invalid option: \"foo\"");
        let mut drv = spec(MountType::Volume, "v1", "/d");
        drv.volume_driver = Some("nfs".into());
        assert_eq!(
            e(&drv),
            "create v1: error looking up volume plugin nfs: plugin \"nfs\" not found"
        );
    }

    #[test]
    fn volumes_from_modes() {
        assert_eq!(parse_volumes_from("c1").unwrap(), ("c1", None));
        assert_eq!(parse_volumes_from("c1:ro").unwrap(), ("c1", Some(true)));
        assert_eq!(parse_volumes_from("c1:rw").unwrap(), ("c1", Some(false)));
        assert_eq!(
            parse_volumes_from("c1:x").unwrap_err().message(),
            "invalid mode: x"
        );
    }

    #[test]
    fn copy_up_fills_only_an_empty_volume() {
        let t = std::env::temp_dir().join(format!("berth-copyup-{}", random_hex(4)));
        let rootfs = t.join("rootfs");
        std::fs::create_dir_all(rootfs.join("data/sub")).unwrap();
        std::fs::write(rootfs.join("data/sub/f"), b"image").unwrap();
        std::os::unix::fs::symlink("sub/f", rootfs.join("data/link")).unwrap();
        let vol = t.join("vol");
        std::fs::create_dir(&vol).unwrap();
        copy_up(&rootfs, "/data", &vol).unwrap();
        assert_eq!(std::fs::read(vol.join("sub/f")).unwrap(), b"image");
        assert_eq!(
            std::fs::read_link(vol.join("link")).unwrap(),
            Path::new("sub/f")
        );
        std::fs::write(vol.join("sub/f"), b"mine").unwrap();
        copy_up(&rootfs, "/data", &vol).unwrap();
        assert_eq!(std::fs::read(vol.join("sub/f")).unwrap(), b"mine");
        // A missing image directory leaves the volume empty.
        let empty = t.join("empty");
        std::fs::create_dir(&empty).unwrap();
        copy_up(&rootfs, "/nope", &empty).unwrap();
        assert!(std::fs::read_dir(&empty).unwrap().next().is_none());
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn store_creates_lists_and_removes_volumes() {
        let t = std::env::temp_dir().join(format!("berth-vols-{}", random_hex(4)));
        let layout = Layout::new(&t);
        layout.prepare().unwrap();
        let store = ContainerStore::new(layout.clone());
        let none = BTreeMap::new();
        let v = store
            .volume_create(Some("data1"), None, &none, &none)
            .unwrap();
        assert_eq!(v.name, "data1");
        assert!(Path::new(&v.mountpoint).is_dir());
        std::fs::write(Path::new(&v.mountpoint).join("f"), b"12345").unwrap();
        // Creating it again returns it unchanged.
        let again = store
            .volume_create(Some("data1"), None, &none, &none)
            .unwrap();
        assert_eq!(again.created_at, v.created_at);
        assert_eq!(store.volume_list().len(), 1);
        let _g = store.lock.lock().unwrap();
        let anon = store
            .resolve_mounts(
                &[spec(MountType::Volume, "", "/anon")],
                &[],
                &["/img".into()],
            )
            .unwrap();
        drop(_g);
        assert_eq!(anon.len(), 2);
        assert!(anon.iter().all(|m| m.anonymous && m.copy_up));
        assert_eq!(store.volume_list().len(), 3);
        // Unused anonymous volumes go with a plain prune; named ones need -a.
        let (names, _) = store.volume_prune(false);
        assert_eq!(names.len(), 2);
        let (names, reclaimed) = store.volume_prune(true);
        assert_eq!(names, vec!["data1".to_string()]);
        assert_eq!(reclaimed, 5);
        assert_eq!(
            store.volume_remove("data1", false).unwrap_err().message(),
            "get data1: no such volume"
        );
        assert!(store.volume_remove("data1", true).is_ok());
        // A failed resolve removes the volumes it made.
        let _g = store.lock.lock().unwrap();
        let bad = store.resolve_mounts(
            &[
                spec(MountType::Volume, "", "/a"),
                spec(MountType::Volume, "", "/a"),
            ],
            &[],
            &[],
        );
        drop(_g);
        assert_eq!(bad.unwrap_err().message(), "Duplicate mount point: /a");
        assert!(store.volume_list().is_empty());
        std::fs::remove_dir_all(&t).unwrap();
    }
}
