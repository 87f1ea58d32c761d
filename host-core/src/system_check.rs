//! `berth system check`: an fsck of the store under the state directory.
//!
//! It reads the two stores of a host (the host's image cache,
//! `<state>/cache`, and the native engine's data root, `<state>/native`)
//! directly, and reports one [`Finding`] per problem:
//! - [`Kind::Corrupt`]: something a user can list (an image, a container,
//!   a volume) is incomplete or does not verify. Never repaired: deleting
//!   it would lose what the user stored.
//! - [`Kind::Inconsistent`]: records that disagree (a dangling tag, a
//!   container whose shim died without an exit record).
//! - [`Kind::Debris`]: what an interrupted command leaves behind: temporary
//!   files, unreferenced blobs and snapshots, directories nobody lists,
//!   mounts of containers that do not run. [`repair`] removes these, and
//!   only these.
//!
//! Work that may belong to a command still running (a temporary file of a
//! live process, anything under the running engine's `tmp/`, blobs and
//! snapshots younger than [`Options::min_age`]) is a [`Note`], not a
//! finding, and is left alone.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Corrupt,
    Inconsistent,
    Debris,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Corrupt => "corrupt",
            Kind::Inconsistent => "inconsistent",
            Kind::Debris => "debris",
        })
    }
}

/// What [`repair`] does about a piece of debris.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Delete the file.
    RemoveFile,
    /// Delete the directory tree, never crossing into another filesystem.
    RemoveTree,
    /// Detach the mount.
    Unmount,
    /// Drop the tag from the engine's `tags.json` (the path).
    DropTag(String),
}

/// One problem, with the path it concerns and why.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: Kind,
    pub path: PathBuf,
    pub why: String,
    /// What `--repair` does; set for debris only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

/// Something left alone because it may be work in progress.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub path: PathBuf,
    pub why: String,
}

/// The result of [`check`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub notes: Vec<Note>,
    /// Images verified (host cache and engine).
    pub images: usize,
    /// Containers looked at.
    pub containers: usize,
    /// Volumes looked at.
    pub volumes: usize,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// What [`check`] needs to know besides the files.
#[derive(Debug, Clone)]
pub struct Options {
    /// Unreferenced blobs and snapshots, and temporary files without a
    /// process id in their name, younger than this may belong to a
    /// command in progress: they are notes, not debris.
    pub min_age: Duration,
    /// Whether the native engine runs now (its `tmp/` is then its work in
    /// progress, and its records may change under the check).
    pub engine_running: bool,
    /// Where `berth load` spools archives (the system temporary directory).
    pub system_tmp: Option<PathBuf>,
}

impl Options {
    /// The defaults for `home`: ten minutes, as the engine's own garbage
    /// collection, and whether its native engine answers.
    pub fn for_home(home: &Path) -> Options {
        Options {
            min_age: Duration::from_secs(600),
            engine_running: engine_running(home),
            system_tmp: Some(std::env::temp_dir()),
        }
    }
}

/// Whether the native engine of the state directory `home` listens.
pub fn engine_running(home: &Path) -> bool {
    #[cfg(unix)]
    {
        std::os::unix::net::UnixStream::connect(home.join("native/agent.sock")).is_ok()
    }
    #[cfg(not(unix))]
    {
        let _ = home;
        false
    }
}

/// The hex of a `sha256:` digest.
fn hex_of(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|h| is_hex64(h))
}

fn is_hex64(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Hashes a file; `Ok(hex)`.
fn sha256_file(p: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn age(p: &Path) -> Duration {
    std::fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default()
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z ") && !s.contains(") X "))
        .unwrap_or(false)
}

fn list_dir(p: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A JSON file: `Ok(None)` when missing, `Err(why)` when unreadable.
fn read_json(p: &Path) -> Result<Option<serde_json::Value>, String> {
    match std::fs::read(p) {
        Ok(d) => serde_json::from_slice(&d)
            .map(Some)
            .map_err(|e| format!("does not parse: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

struct Checker<'a> {
    opts: &'a Options,
    report: Report,
    /// Blob files already verified (path → verdict), as images share them.
    verified: BTreeMap<PathBuf, Result<(), String>>,
    /// Container ids a live process names on its command line (its shim,
    /// an exec monitor): their files may be changing now.
    live: BTreeSet<String>,
}

impl Checker<'_> {
    fn find(&mut self, kind: Kind, path: &Path, why: impl Into<String>) {
        self.report.findings.push(Finding {
            kind,
            path: path.to_path_buf(),
            why: why.into(),
            action: None,
        });
    }

    fn debris(&mut self, path: &Path, why: impl Into<String>, action: Action) {
        self.report.findings.push(Finding {
            kind: Kind::Debris,
            path: path.to_path_buf(),
            why: why.into(),
            action: Some(action),
        });
    }

    fn note(&mut self, path: &Path, why: impl Into<String>) {
        self.report.notes.push(Note {
            path: path.to_path_buf(),
            why: why.into(),
        });
    }

    /// Unreferenced things younger than `min_age` may be a command's
    /// work in progress.
    fn young(&self, p: &Path) -> bool {
        age(p) < self.opts.min_age
    }

    /// Checks that the blob `digest` of `what` is in `blobs` and hashes to
    /// its name; a finding (corrupt) otherwise.
    fn verify_blob(&mut self, blobs: &Path, digest: &str, what: &str, owner: &Path) -> bool {
        let Some(hex) = hex_of(digest) else {
            self.find(
                Kind::Corrupt,
                owner,
                format!("{what}: invalid digest {digest:?}"),
            );
            return false;
        };
        let p = blobs.join(hex);
        let verdict = self
            .verified
            .entry(p.clone())
            .or_insert_with(|| match sha256_file(&p) {
                Ok(h) if h == hex => Ok(()),
                Ok(h) => Err(format!("hashes to sha256:{h}")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("is missing".into()),
                Err(e) => Err(format!("cannot be read: {e}")),
            })
            .clone();
        match verdict {
            Ok(()) => true,
            Err(why) => {
                self.find(Kind::Corrupt, &p, format!("{what} {digest} {why}"));
                false
            }
        }
    }

    /// A temporary file named `….tmp-<pid>`: debris once its process is gone.
    fn pid_temp(&mut self, name: &str, p: &Path) -> bool {
        let Some((_, pid)) = name.rsplit_once(".tmp-") else {
            return false;
        };
        match pid.parse::<u32>() {
            Ok(pid) if pid_alive(pid) => {
                self.note(p, format!("temporary file of running process {pid}"))
            }
            _ => self.debris(
                p,
                "temporary file of a command that did not finish",
                Action::RemoveFile,
            ),
        }
        true
    }

    /// The host's image cache, `<home>/cache`.
    fn host_cache(&mut self, dir: &Path) {
        if !dir.is_dir() {
            return;
        }
        let blobs = dir.join("blobs/sha256");
        let images_json = dir.join("images.json");
        let records: Vec<berth_protocol::ImageCommit> = match read_json(&images_json) {
            Ok(None) => Vec::new(),
            Ok(Some(v)) => match serde_json::from_value(v) {
                Ok(r) => r,
                Err(e) => {
                    self.find(
                        Kind::Corrupt,
                        &images_json,
                        format!("image records have the wrong shape: {e}"),
                    );
                    return;
                }
            },
            Err(why) => {
                self.find(Kind::Corrupt, &images_json, format!("image records {why}"));
                return;
            }
        };
        let mut referenced = BTreeSet::new();
        for r in &records {
            self.report.images += 1;
            let name = r.tags.first().cloned().unwrap_or(r.config_digest.clone());
            let what = format!("image {name}:");
            self.verify_blob(
                &blobs,
                &r.config_digest,
                &format!("{what} config"),
                &images_json,
            );
            referenced.insert(r.config_digest.clone());
            if let Some(m) = &r.manifest_digest {
                self.verify_blob(&blobs, m, &format!("{what} manifest"), &images_json);
                referenced.insert(m.clone());
            }
            for (i, l) in r.layers.iter().enumerate() {
                self.verify_blob(
                    &blobs,
                    &l.digest,
                    &format!("{what} layer {i}"),
                    &images_json,
                );
                referenced.insert(l.digest.clone());
            }
        }
        for (name, p) in list_dir(dir) {
            if name.contains(".tmp-") {
                self.pid_temp(&name, &p);
            }
        }
        for (name, p) in list_dir(&blobs) {
            if self.pid_temp(&name, &p) {
                continue;
            }
            if !is_hex64(&name) {
                self.debris(&p, "not a blob name", Action::RemoveTree);
            } else if !referenced.contains(&format!("sha256:{name}")) {
                if self.young(&p) {
                    self.note(
                        &p,
                        "unreferenced blob, recent: may belong to a command in progress",
                    );
                } else {
                    self.debris(&p, "blob of no image", Action::RemoveFile);
                }
            }
        }
        let disks = dir.join("image-disks");
        for (name, p) in list_dir(&disks) {
            if name.starts_with(".tmp-") {
                if self.young(&p) {
                    self.note(&p, "image disk being made");
                } else {
                    self.debris(&p, "unfinished image disk", Action::RemoveTree);
                }
            }
        }
    }

    /// Temporary files of the engine's `write_atomic` (`.<name>.tmp-<hex>`)
    /// in `dir`.
    fn engine_temps(&mut self, dir: &Path) {
        let live = names_live(&self.live, &dir.to_string_lossy());
        for (name, p) in list_dir(dir) {
            if name.starts_with('.') && name.contains(".tmp-") {
                if live {
                    self.note(&p, "temporary file of a container's live shim");
                } else if self.opts.engine_running && self.young(&p) {
                    self.note(&p, "temporary file of the running engine");
                } else {
                    self.debris(
                        &p,
                        "temporary file of an interrupted write",
                        Action::RemoveFile,
                    );
                }
            }
        }
    }

    /// The native engine's data root, `<home>/native`.
    fn engine(&mut self, root: &Path) {
        if !root.is_dir() {
            return;
        }
        let running = self.opts.engine_running;
        let blobs = root.join("blobs/sha256");
        // Images.
        let mut ids = BTreeSet::new();
        let mut chains = BTreeSet::new();
        let mut referenced = BTreeSet::new();
        let images = root.join("images");
        for (name, p) in list_dir(&images) {
            let Some(hex) = name.strip_suffix(".json").filter(|h| is_hex64(h)) else {
                continue;
            };
            self.report.images += 1;
            let rec = match read_json(&p) {
                Ok(Some(v)) => v,
                Ok(None) => continue,
                Err(why) => {
                    self.find(Kind::Corrupt, &p, format!("image record {why}"));
                    ids.insert(format!("sha256:{hex}"));
                    continue;
                }
            };
            let id = format!("sha256:{hex}");
            ids.insert(id.clone());
            referenced.insert(hex.to_string());
            if rec["id"].as_str() != Some(id.as_str()) {
                self.find(Kind::Corrupt, &p, "image record names another image");
            }
            let what = format!("image {}:", &hex[..12]);
            self.verify_blob(&blobs, &id, &format!("{what} config"), &p);
            if let Some(m) = rec["manifest_digest"].as_str().and_then(hex_of) {
                // The engine keeps a manifest only when one was handed to it.
                if blobs.join(m).exists() {
                    self.verify_blob(
                        &blobs,
                        &format!("sha256:{m}"),
                        &format!("{what} manifest"),
                        &p,
                    );
                }
                referenced.insert(m.to_string());
            }
            let layers = rec["layers"].as_array().cloned().unwrap_or_default();
            for (i, l) in layers.iter().enumerate() {
                let digest = l["digest"].as_str().unwrap_or_default();
                self.verify_blob(&blobs, digest, &format!("{what} layer {i}"), &p);
                if let Some(h) = hex_of(digest) {
                    referenced.insert(h.to_string());
                }
                match l["chain_id"].as_str().and_then(hex_of) {
                    Some(chain) => {
                        chains.insert(chain.to_string());
                        let meta = root.join("snapshots").join(chain).join("meta.json");
                        if !meta.is_file() {
                            self.find(
                                Kind::Corrupt,
                                &meta,
                                format!("{what} layer {i}: its unpacked snapshot is missing"),
                            );
                        }
                    }
                    None => self.find(Kind::Corrupt, &p, format!("{what} layer {i}: no chain id")),
                }
            }
        }
        self.engine_temps(&images);
        // Tags.
        let tags_path = root.join("tags.json");
        match read_json(&tags_path) {
            Ok(Some(serde_json::Value::Object(map))) => {
                for (tag, id) in map {
                    if !id.as_str().is_some_and(|i| ids.contains(i)) {
                        if running {
                            self.find(
                                Kind::Inconsistent,
                                &tags_path,
                                format!("tag {tag} names no image ({id}); repaired with the engine stopped"),
                            );
                        } else {
                            self.debris(
                                &tags_path,
                                format!("tag {tag} names no image ({id})"),
                                Action::DropTag(tag),
                            );
                        }
                    }
                }
            }
            Ok(None) => {}
            Ok(Some(_)) => self.find(Kind::Corrupt, &tags_path, "tags are not a JSON object"),
            Err(why) => self.find(Kind::Corrupt, &tags_path, format!("tags {why}")),
        }
        self.engine_temps(root);
        // Snapshots no image uses.
        for (name, p) in list_dir(&root.join("snapshots")) {
            if chains.contains(&name) {
                continue;
            }
            if running {
                self.note(
                    &p,
                    "snapshot of no image (the running engine may be committing it; `berth image prune` or a repair with the engine stopped removes it)",
                );
            } else {
                self.debris(&p, "unpacked layer of no image", Action::RemoveTree);
            }
        }
        // Blobs no image uses.
        for (name, p) in list_dir(&blobs) {
            if referenced.contains(&name) {
                continue;
            }
            if !is_hex64(&name) {
                self.debris(&p, "not a blob name", Action::RemoveTree);
            } else if running && self.young(&p) {
                self.note(
                    &p,
                    "unreferenced blob, recent: may belong to a command in progress",
                );
            } else {
                self.debris(&p, "blob of no image", Action::RemoveFile);
            }
        }
        // Work in progress of interrupted operations.
        for (name, p) in list_dir(&root.join("tmp")) {
            if names_live(&self.live, &name) {
                self.note(&p, "being removed by the container's live shim");
            } else if running {
                self.note(
                    &p,
                    "work area of the running engine (cleared when it starts)",
                );
            } else {
                self.debris(&p, "work of an interrupted operation", Action::RemoveTree);
            }
        }
        let mounts = mount_points();
        self.containers(root, &ids, &mounts);
        self.volumes(root);
        if !running {
            let tmp = root.join("tmp");
            let stray: Vec<PathBuf> = mounts
                .iter()
                .filter(|m| m.starts_with(&tmp) && !names_live(&self.live, &m.to_string_lossy()))
                .cloned()
                .collect();
            for m in &stray {
                self.debris(m, "mount left by an interrupted operation", Action::Unmount);
            }
        }
    }

    fn containers(&mut self, root: &Path, images: &BTreeSet<String>, mounts: &[PathBuf]) {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        for (name, dir) in list_dir(&root.join("containers")) {
            if !dir.is_dir() {
                continue;
            }
            self.report.containers += 1;
            let rec_path = dir.join("container.json");
            let rec = match read_json(&rec_path) {
                Ok(Some(v)) => v,
                Ok(None) if self.opts.engine_running || self.young(&dir) => {
                    // The engine makes the directory, then the record.
                    self.note(
                        &dir,
                        "container directory without a record yet (a create may be under way)",
                    );
                    continue;
                }
                Ok(None) => {
                    self.debris(
                        &dir,
                        "container directory without a record (no command lists it)",
                        Action::RemoveTree,
                    );
                    continue;
                }
                Err(why) => {
                    self.find(Kind::Corrupt, &rec_path, format!("container record {why}"));
                    continue;
                }
            };
            if rec["id"].as_str() != Some(name.as_str()) {
                self.find(
                    Kind::Corrupt,
                    &rec_path,
                    "container record names another container",
                );
            }
            if let Some(img) = rec["image_id"].as_str().filter(|i| !i.is_empty()) {
                if !images.contains(img) {
                    self.find(
                        Kind::Corrupt,
                        &rec_path,
                        format!("the container's image {img} has no record"),
                    );
                }
            }
            self.engine_temps(&dir);
            let run = read_json(&dir.join("state.json")).ok().flatten();
            let exit = read_json(&dir.join("exit.json")).ok().flatten();
            let running = match (&run, &exit) {
                (Some(_), Some(e)) if e["started_at"].is_null() => false,
                (Some(r), Some(e)) if e["started_at"] == r["started_at"] => false,
                (Some(r), _) => {
                    let shim = r["shim_pid"].as_u64().unwrap_or(0) as u32;
                    let alive =
                        r["boot_id"].as_str() == Some(boot.as_str()) && shim > 0 && pid_alive(shim);
                    if !alive
                        && r["boot_id"].as_str() == Some(boot.as_str())
                        && !self.live.contains(&name)
                    {
                        self.find(
                            Kind::Inconsistent,
                            &dir.join("state.json"),
                            format!(
                                "the container's shim (pid {shim}) is gone without an exit record (listed as exited 255)"
                            ),
                        );
                    }
                    alive
                }
                (None, _) => false,
            };
            let engine = self.opts.engine_running;
            for m in mounts.iter().filter(|m| m.starts_with(&dir)) {
                if running || self.live.contains(&name) {
                    continue;
                }
                if engine {
                    // The engine mounts before the shim starts.
                    self.note(m, "mount of a container that does not run (the running engine may be starting it)");
                } else {
                    self.debris(m, "mount of a container that does not run", Action::Unmount);
                }
            }
        }
    }

    fn volumes(&mut self, root: &Path) {
        for (name, dir) in list_dir(&root.join("volumes")) {
            if !dir.is_dir() {
                continue;
            }
            self.report.volumes += 1;
            let rec = dir.join("volume.json");
            match read_json(&rec) {
                Ok(Some(v)) if v["name"].as_str() == Some(name.as_str()) => {}
                Ok(Some(_)) => self.find(Kind::Corrupt, &rec, "volume record names another volume"),
                // Its _data may hold a user's files: reported, never removed.
                Ok(None) => self.find(
                    Kind::Inconsistent,
                    &dir,
                    "volume directory without a record",
                ),
                Err(why) => self.find(Kind::Corrupt, &rec, format!("volume record {why}")),
            }
            if !dir.join("_data").is_dir() {
                self.find(
                    Kind::Corrupt,
                    &dir.join("_data"),
                    "the volume's data directory is missing",
                );
            }
            self.engine_temps(&dir);
        }
    }

    /// Archives `berth load` spooled under the system temporary directory.
    fn system_tmp(&mut self, tmp: &Path) {
        for (name, p) in list_dir(tmp) {
            let Some(rest) = name.strip_prefix("berth-load-") else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|s| s.parse::<u32>().ok());
            match pid {
                Some(pid) if pid_alive(pid) => {}
                Some(_) => self.debris(
                    &p,
                    "archive spooled by a load that did not finish",
                    Action::RemoveTree,
                ),
                None => {}
            }
        }
    }
}

/// The 64-hex arguments of live processes: a container's shim is
/// `berth-agent shim --id <id> …`, and it works on the container's files
/// (and moves them into the engine's `tmp/rm-<id>` for `--rm`) whether or
/// not the engine runs.
fn live_ids() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, p) in list_dir(Path::new("/proc")) {
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(p.join("cmdline")) else {
            continue;
        };
        for arg in cmdline.split(|&b| b == 0) {
            if let Ok(a) = std::str::from_utf8(arg) {
                if is_hex64(a) {
                    out.insert(a.to_string());
                }
            }
        }
    }
    out
}

/// Whether a live process names an id that `name` contains.
fn names_live(live: &BTreeSet<String>, name: &str) -> bool {
    live.iter().any(|id| name.contains(id.as_str()))
}

/// Mount points on this host (from `/proc/self/mountinfo`).
fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks the store under the state directory `home`.
pub fn check(home: &Path, opts: &Options) -> Report {
    let mut c = Checker {
        opts,
        report: Report::default(),
        verified: BTreeMap::new(),
        live: live_ids(),
    };
    c.host_cache(&home.join("cache"));
    c.engine(&home.join("native"));
    if let Some(t) = &opts.system_tmp {
        c.system_tmp(t);
    }
    c.report
}

/// What [`repair`] did about one finding.
#[derive(Debug, Clone, Serialize)]
pub struct Repaired {
    pub path: PathBuf,
    pub action: Action,
    /// `None` when done; the error otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Removes the debris of `report`: unmounts first, then files and trees
/// (a tree is never followed into another filesystem), then tags. Nothing
/// else is touched.
pub fn repair(report: &Report) -> Vec<Repaired> {
    let debris: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind == Kind::Debris)
        .collect();
    let mut out = Vec::new();
    let order = |a: &Action| match a {
        Action::Unmount => 0,
        Action::RemoveFile | Action::RemoveTree => 1,
        Action::DropTag(_) => 2,
    };
    let mut sorted: Vec<(&Finding, &Action)> = debris
        .iter()
        .filter_map(|f| f.action.as_ref().map(|a| (*f, a)))
        .collect();
    // Deeper mounts first.
    sorted.sort_by_key(|(f, a)| (order(a), std::cmp::Reverse(f.path.components().count())));
    let mut tags: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for (f, a) in sorted {
        let result = match a {
            Action::Unmount => unmount(&f.path),
            Action::RemoveFile => match std::fs::remove_file(&f.path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
            Action::RemoveTree => remove_tree_same_fs(&f.path),
            Action::DropTag(t) => {
                tags.entry(f.path.clone()).or_default().push(t.clone());
                continue;
            }
        };
        out.push(Repaired {
            path: f.path.clone(),
            action: a.clone(),
            error: result.err().map(|e| e.to_string()),
        });
    }
    for (path, drop) in tags {
        let result = drop_tags(&path, &drop);
        for t in drop {
            out.push(Repaired {
                path: path.clone(),
                action: Action::DropTag(t),
                error: result.as_ref().err().map(|e| e.to_string()),
            });
        }
    }
    out
}

fn drop_tags(path: &Path, drop: &[String]) -> std::io::Result<()> {
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)?;
    for t in drop {
        map.remove(t);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".tags.json.tmp-check{}", std::process::id()));
    let data = serde_json::to_vec_pretty(&map).map_err(std::io::Error::other)?;
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn unmount(p: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH).map_err(std::io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = p;
        Err(std::io::Error::other("unmounting needs Linux"))
    }
}

/// Deletes `root` and what is under it, without descending into another
/// filesystem (a mount point under it is an error, and stays).
pub fn remove_tree_same_fs(root: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(root);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mounts: BTreeSet<PathBuf> = mount_points().into_iter().collect();
        fn walk(dir: &Path, dev: u64, mounts: &BTreeSet<PathBuf>) -> std::io::Result<()> {
            for e in std::fs::read_dir(dir)? {
                let p = e?.path();
                let m = std::fs::symlink_metadata(&p)?;
                if mounts.contains(&p) {
                    return Err(std::io::Error::other(format!(
                        "{} is a mount point; left in place",
                        p.display()
                    )));
                }
                if m.is_dir() {
                    if m.dev() != dev {
                        return Err(std::io::Error::other(format!(
                            "{} is a mount point; left in place",
                            p.display()
                        )));
                    }
                    walk(&p, dev, mounts)?;
                    std::fs::remove_dir(&p)?;
                } else {
                    std::fs::remove_file(&p)?;
                }
            }
            Ok(())
        }
        walk(root, meta.dev(), &mounts)?;
        std::fs::remove_dir(root)
    }
    #[cfg(not(unix))]
    std::fs::remove_dir_all(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(dir: &Path, data: &[u8]) -> String {
        let hex = hex::encode(Sha256::digest(data));
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(&hex), data).unwrap();
        format!("sha256:{hex}")
    }

    fn opts(engine_running: bool) -> Options {
        Options {
            min_age: Duration::ZERO,
            engine_running,
            system_tmp: None,
        }
    }

    /// A store with one image in the host cache and in the engine, a
    /// stopped container on it and a volume: clean.
    fn store() -> (tempfile::TempDir, String) {
        let t = tempfile::tempdir().unwrap();
        let home = t.path();
        let cblobs = home.join("cache/blobs/sha256");
        let config = put(&cblobs, b"{\"rootfs\":{}}");
        let layer = put(&cblobs, b"layer bytes");
        let manifest = put(&cblobs, b"{\"manifest\":1}");
        let rec = serde_json::json!([{
            "config_digest": config, "manifest_digest": manifest, "tags": ["docker.io/library/x:latest"],
            "layers": [{"digest": layer, "media_type": "application/vnd.oci.image.layer.v1.tar", "size": 11}],
        }]);
        std::fs::write(home.join("cache/images.json"), rec.to_string()).unwrap();
        let n = home.join("native");
        let eblobs = n.join("blobs/sha256");
        put(&eblobs, b"{\"rootfs\":{}}");
        put(&eblobs, b"layer bytes");
        let chain = "c".repeat(64);
        std::fs::create_dir_all(n.join("snapshots").join(&chain).join("fs")).unwrap();
        std::fs::write(n.join("snapshots").join(&chain).join("meta.json"), "{}").unwrap();
        std::fs::create_dir_all(n.join("images")).unwrap();
        let hex = &config[7..];
        let irec = serde_json::json!({"id": config, "manifest_digest": manifest,
            "layers": [{"digest": layer, "chain_id": format!("sha256:{chain}")}]});
        std::fs::write(
            n.join("images").join(format!("{hex}.json")),
            irec.to_string(),
        )
        .unwrap();
        std::fs::write(
            n.join("tags.json"),
            serde_json::json!({"docker.io/library/x:latest": config}).to_string(),
        )
        .unwrap();
        let cid = "a".repeat(64);
        let cdir = n.join("containers").join(&cid);
        std::fs::create_dir_all(&cdir).unwrap();
        std::fs::write(
            cdir.join("container.json"),
            serde_json::json!({"id": cid, "image_id": config}).to_string(),
        )
        .unwrap();
        std::fs::create_dir_all(n.join("volumes/data/_data")).unwrap();
        std::fs::write(n.join("volumes/data/_data/file"), "user data").unwrap();
        std::fs::write(
            n.join("volumes/data/volume.json"),
            serde_json::json!({"name": "data"}).to_string(),
        )
        .unwrap();
        std::fs::create_dir_all(n.join("tmp")).unwrap();
        (t, config)
    }

    fn kinds(r: &Report) -> Vec<(Kind, String)> {
        r.findings.iter().map(|f| (f.kind, f.why.clone())).collect()
    }

    #[test]
    fn a_complete_store_is_clean() {
        let (t, _) = store();
        let r = check(t.path(), &opts(false));
        assert!(r.clean(), "{:?}", kinds(&r));
        assert_eq!((r.images, r.containers, r.volumes), (2, 1, 1));
    }

    #[test]
    fn a_corrupt_or_missing_blob_is_reported_and_never_repaired() {
        let (t, config) = store();
        let home = t.path();
        let layer = hex::encode(Sha256::digest(b"layer bytes"));
        // One flipped byte in the cache's layer, the engine's config gone.
        std::fs::write(home.join("cache/blobs/sha256").join(&layer), b"layer bytez").unwrap();
        std::fs::remove_file(home.join("native/blobs/sha256").join(&config[7..])).unwrap();
        let r = check(home, &opts(false));
        let k = kinds(&r);
        assert_eq!(k.len(), 2, "{k:?}");
        assert!(k.iter().all(|(k, _)| *k == Kind::Corrupt), "{k:?}");
        assert!(
            k[0].1.contains("layer 0") && k[0].1.contains("hashes to"),
            "{k:?}"
        );
        assert!(
            k[1].1.contains("config") && k[1].1.contains("missing"),
            "{k:?}"
        );
        let done = repair(&r);
        assert!(done.is_empty(), "{done:?}");
        assert!(home.join("cache/blobs/sha256").join(&layer).exists());
        assert!(home
            .join("native/images")
            .join(format!("{}.json", &config[7..]))
            .exists());
    }

    #[test]
    fn debris_is_found_and_repair_removes_only_it() {
        let (t, config) = store();
        let home = t.path();
        let n = home.join("native");
        // A dead process's temp file (pid 0 never names a live process
        // here; u32::MAX cannot exist).
        let stale = home
            .join("cache/blobs/sha256")
            .join(format!("{}.tmp-4294967295", "b".repeat(64)));
        std::fs::write(&stale, b"partial").unwrap();
        let live = home.join("cache/blobs/sha256").join(format!(
            "{}.tmp-{}",
            "b".repeat(64),
            std::process::id()
        ));
        std::fs::write(&live, b"partial").unwrap();
        let orphan_blob = put(&home.join("cache/blobs/sha256"), b"nobody's");
        let orphan_eblob = put(&n.join("blobs/sha256"), b"nobody's either");
        std::fs::create_dir_all(n.join("snapshots").join("d".repeat(64)).join("fs/etc")).unwrap();
        std::fs::create_dir_all(n.join("tmp/snap-1234/fs")).unwrap();
        std::fs::write(n.join("images/.x.json.tmp-abcd"), b"{").unwrap();
        std::fs::create_dir_all(n.join("containers").join("e".repeat(64))).unwrap();
        let mut tags: serde_json::Value =
            serde_json::from_slice(&std::fs::read(n.join("tags.json")).unwrap()).unwrap();
        tags["docker.io/library/gone:latest"] =
            serde_json::json!(format!("sha256:{}", "f".repeat(64)));
        std::fs::write(n.join("tags.json"), tags.to_string()).unwrap();

        let r = check(home, &opts(false));
        assert!(
            r.findings.iter().all(|f| f.kind == Kind::Debris),
            "{:?}",
            kinds(&r)
        );
        assert_eq!(r.findings.len(), 8, "{:?}", kinds(&r));
        assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
        let done = repair(&r);
        assert_eq!(done.len(), 8);
        assert!(done.iter().all(|d| d.error.is_none()), "{done:?}");
        assert!(!stale.exists() && live.exists());
        assert!(!home
            .join("cache/blobs/sha256")
            .join(&orphan_blob[7..])
            .exists());
        assert!(!n.join("blobs/sha256").join(&orphan_eblob[7..]).exists());
        std::fs::remove_file(&live).unwrap();
        let again = check(home, &opts(false));
        assert!(again.clean(), "{:?}", kinds(&again));
        // What the user can list is all there.
        assert!(n.join("volumes/data/_data/file").exists());
        assert!(n
            .join("containers")
            .join("a".repeat(64))
            .join("container.json")
            .exists());
        let tags: serde_json::Value =
            serde_json::from_slice(&std::fs::read(n.join("tags.json")).unwrap()).unwrap();
        assert_eq!(tags.as_object().unwrap().len(), 1);
        assert_eq!(
            tags["docker.io/library/x:latest"],
            serde_json::json!(config)
        );
    }

    #[test]
    fn with_the_engine_running_its_work_in_progress_is_left_alone() {
        let (t, _) = store();
        let n = t.path().join("native");
        std::fs::create_dir_all(n.join("tmp/snap-1234/fs")).unwrap();
        std::fs::create_dir_all(n.join("snapshots").join("d".repeat(64)).join("fs")).unwrap();
        let creating = n.join("containers").join("e".repeat(64));
        std::fs::create_dir_all(creating.join("upper")).unwrap();
        let young = put(&n.join("blobs/sha256"), b"arriving");
        let o = Options {
            min_age: Duration::from_secs(600),
            engine_running: true,
            system_tmp: None,
        };
        let r = check(t.path(), &o);
        assert!(r.clean(), "{:?}", kinds(&r));
        assert_eq!(r.notes.len(), 4, "{:?}", r.notes);
        assert!(creating.exists());
        assert!(repair(&r).is_empty());
        assert!(n.join("blobs/sha256").join(&young[7..]).exists());
    }

    #[test]
    fn broken_records_of_listed_things_are_corrupt() {
        let (t, config) = store();
        let n = t.path().join("native");
        std::fs::write(
            n.join("containers")
                .join("a".repeat(64))
                .join("container.json"),
            b"{\"id\":",
        )
        .unwrap();
        std::fs::remove_file(n.join("volumes/data/volume.json")).unwrap();
        std::fs::remove_file(n.join("snapshots").join("c".repeat(64)).join("meta.json")).unwrap();
        std::fs::write(t.path().join("cache/images.json"), b"[{").unwrap();
        let r = check(t.path(), &opts(false));
        let k = kinds(&r);
        assert!(
            k.contains(&(
                Kind::Corrupt,
                "image records does not parse: EOF while parsing an object at line 1 column 2"
                    .into()
            )),
            "{k:?}"
        );
        assert!(
            k.iter()
                .any(|(k, w)| *k == Kind::Corrupt && w.contains("container record does not parse")),
            "{k:?}"
        );
        assert!(
            k.iter().any(|(k, w)| *k == Kind::Inconsistent
                && w.contains("volume directory without a record")),
            "{k:?}"
        );
        assert!(
            k.iter()
                .any(|(k, w)| *k == Kind::Corrupt && w.contains("snapshot is missing")),
            "{k:?}"
        );
        // The snapshot of the image, though unfinished, is the image's: not debris.
        assert!(!k.iter().any(|(k, _)| *k == Kind::Debris), "{k:?}");
        assert!(repair(&r).is_empty());
        assert!(n.join("volumes/data/_data/file").exists());
        let _ = config;
    }

    #[test]
    fn a_dead_shim_is_inconsistent_and_a_stray_load_spool_is_debris() {
        let (t, _) = store();
        let n = t.path().join("native");
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        std::fs::write(
            n.join("containers").join("a".repeat(64)).join("state.json"),
            serde_json::json!({"pid": 1, "shim_pid": 4294967295u32, "started_at": "x", "boot_id": boot}).to_string(),
        )
        .unwrap();
        let sys = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(sys.path().join("berth-load-4294967295-1/x")).unwrap();
        std::fs::create_dir_all(
            sys.path()
                .join(format!("berth-load-{}-1", std::process::id())),
        )
        .unwrap();
        let o = Options {
            system_tmp: Some(sys.path().to_path_buf()),
            ..opts(false)
        };
        let r = check(t.path(), &o);
        let k = kinds(&r);
        assert_eq!(k.len(), 2, "{k:?}");
        if cfg!(target_os = "linux") {
            assert_eq!(k[0].0, Kind::Inconsistent, "{k:?}");
        }
        assert_eq!(k[1].0, Kind::Debris, "{k:?}");
        repair(&r);
        assert!(!sys.path().join("berth-load-4294967295-1").exists());
        assert!(sys
            .path()
            .join(format!("berth-load-{}-1", std::process::id()))
            .exists());
    }

    #[test]
    fn files_of_a_container_with_a_live_process_are_left_alone() {
        let (t, _) = store();
        let n = t.path().join("native");
        let id = "a".repeat(64);
        let cdir = n.join("containers").join(&id);
        std::fs::write(cdir.join(".state.json.tmp-1234"), b"{").unwrap();
        std::fs::create_dir_all(n.join("tmp").join(format!("rm-{}", "9".repeat(64)))).unwrap();
        std::fs::create_dir_all(n.join("tmp").join(format!("rm-{id}"))).unwrap();
        // A process that names the container (as its shim does).
        let mut shim = std::process::Command::new("sh")
            .args(["-c", "read x; :", &id])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        while !std::fs::read(format!("/proc/{}/cmdline", shim.id()))
            .is_ok_and(|c| c.windows(64).any(|w| w == id.as_bytes()))
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let r = check(t.path(), &opts(false));
        let _ = shim.kill();
        let _ = shim.wait();
        // Only the tmp/ entry of the container without a process.
        assert_eq!(r.findings.len(), 1, "{:?}", kinds(&r));
        assert!(r.findings[0]
            .path
            .ends_with(format!("rm-{}", "9".repeat(64))));
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        let r = check(t.path(), &opts(false));
        assert_eq!(r.findings.len(), 3, "{:?}", kinds(&r));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/a\\04"), "/a\\04");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }
}
