//! The image store: verified blobs, unpacked layer snapshots, image records
//! and tags.

pub mod image_disk;
pub mod unpack;

use crate::layout::{read_json, write_json_atomic, Layout};
use berth_protocol::reference::Reference;
use berth_protocol::{ImageCommit, ImageOrigin, ImageSummary, LayerRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

/// Largest image config accepted (configs are small JSON documents).
const MAX_CONFIG_SIZE: u64 = 8 * 1024 * 1024;

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid digest {0:?}")]
    BadDigest(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is not in the store")]
    MissingBlob(String),
    #[error("invalid image config: {0}")]
    BadConfig(String),
    #[error("layer {index} ({digest}): {source}")]
    Layer {
        index: usize,
        digest: String,
        source: unpack::UnpackError,
    },
    #[error("layer {index}: uncompressed digest {actual} does not match the config's diff_id {expected}")]
    DiffIdMismatch {
        index: usize,
        expected: String,
        actual: String,
    },
    #[error("blob {digest} changed in storage after it was verified: it now hashes to {actual} ({changed})")]
    BlobChanged {
        digest: String,
        actual: String,
        /// Which 4 KiB pages look damaged, as far as can be told alone.
        changed: String,
    },
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("{0}")]
    Reference(#[from] berth_protocol::reference::ReferenceError),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("store i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Re-hashes a stored blob: `Some(BlobChanged)` when it no longer matches
/// `digest`, with the all-zero 4 KiB pages counted (a lost page reads as
/// zeros) and the first few listed.
fn recheck_blob(path: &Path, digest: &str) -> Option<StoreError> {
    // Streamed page by page: a layer can be larger than a guest's free RAM.
    let mut f = io::BufReader::with_capacity(256 * 1024, fs::File::open(path).ok()?);
    let mut hasher = Sha256::new();
    let (mut len, mut pages, mut zero, mut first) = (0u64, 0u64, 0u64, Vec::new());
    let mut page = vec![0u8; 4096];
    loop {
        let mut n = 0;
        while n < page.len() {
            match f.read(&mut page[n..]).ok()? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        hasher.update(&page[..n]);
        if n == page.len() && page.iter().all(|&b| b == 0) {
            zero += 1;
            if first.len() < 8 {
                first.push(pages.to_string());
            }
        }
        len += n as u64;
        pages += 1;
        if n < page.len() {
            break;
        }
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual == digest {
        return None;
    }
    Some(StoreError::BlobChanged {
        digest: digest.to_string(),
        actual,
        changed: format!(
            "{len} bytes, {zero} of {pages} pages all zero{}",
            if first.is_empty() {
                String::new()
            } else {
                format!(": pages {}", first.join(", "))
            }
        ),
    })
}

/// Returns the hex part of a `sha256:` digest after validating it.
pub fn digest_hex(d: &str) -> Result<&str, StoreError> {
    match d.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(h)
        }
        _ => Err(StoreError::BadDigest(d.to_string())),
    }
}

/// One layer of a stored image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: String,
    pub media_type: String,
    pub diff_id: String,
    pub chain_id: String,
    pub size: u64,
}

/// A stored image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: String,
    pub layers: Vec<LayerRecord>,
    pub manifest_digest: Option<String>,
    pub added: String,
    /// The image a build step (or commit) derived this one from.
    #[serde(default)]
    pub parent: Option<String>,
}

/// The subset of an image config the engine reads. Parsed leniently:
/// unknown fields are ignored, missing ones default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// The `config` section of an image config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// `SHELL`: what a `CMD-SHELL` healthcheck runs under.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub shell: Option<Vec<String>>,
    /// `HEALTHCHECK`; one of the wrong shape counts as none rather than
    /// making the whole image unreadable.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub healthcheck: Option<berth_protocol::HealthConfig>,
    /// `VOLUME` paths (an object whose keys are the paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// `EXPOSE`d ports (`80/tcp` keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

/// Any JSON value; `None` unless it has `T`'s shape.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// Content-addressed blobs, snapshots, images and tags under one root.
pub struct ImageStore {
    layout: Layout,
    /// Serialises changes to images and tags (readers see files replaced
    /// atomically and need no lock).
    meta: Mutex<()>,
    /// Commits hold it shared while their snapshots are not yet referenced
    /// by an image record; garbage collection holds it exclusively.
    gc: RwLock<()>,
}

fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let id = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(id);
    }
    out
}

impl ImageStore {
    pub fn new(layout: Layout) -> ImageStore {
        ImageStore {
            layout,
            meta: Mutex::new(()),
            gc: RwLock::new(()),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        digest_hex(digest)
            .map(|h| self.layout.blob(h).is_file())
            .unwrap_or(false)
    }

    /// Stores exactly `size` bytes from `r` as blob `digest`, verifying both.
    /// Nothing becomes visible unless they match.
    pub fn put_blob(&self, digest: &str, size: u64, r: &mut dyn Read) -> Result<(), StoreError> {
        let hex = digest_hex(digest)?.to_string();
        let tmp = self.layout.tmp().join(format!(
            "blob-{}-{}",
            &hex[..12],
            crate::layout::random_hex(4)
        ));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut remaining = size;
            while remaining > 0 {
                let want = remaining.min(buf.len() as u64) as usize;
                let n = r.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(StoreError::SizeMismatch {
                        digest: digest.to_string(),
                        expected: size,
                        actual: size - remaining,
                    });
                }
                hasher.update(&buf[..n]);
                f.write_all(&buf[..n])?;
                remaining -= n as u64;
            }
            let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
            if actual != digest {
                return Err(StoreError::DigestMismatch {
                    expected: digest.to_string(),
                    actual,
                });
            }
            f.sync_all()?;
            fs::rename(&tmp, self.layout.blob(&hex))?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    pub fn read_config(
        &self,
        digest: &str,
    ) -> Result<(ImageConfigFile, serde_json::Value), StoreError> {
        let path = self.layout.blob(digest_hex(digest)?);
        let f = fs::File::open(&path).map_err(|_| StoreError::MissingBlob(digest.to_string()))?;
        let mut data = Vec::new();
        f.take(MAX_CONFIG_SIZE + 1).read_to_end(&mut data)?;
        if data.len() as u64 > MAX_CONFIG_SIZE {
            return Err(StoreError::BadConfig("config larger than 8 MiB".into()));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&data).map_err(|e| StoreError::BadConfig(e.to_string()))?;
        let cfg: ImageConfigFile = serde_json::from_value(value.clone())
            .map_err(|e| StoreError::BadConfig(e.to_string()))?;
        Ok((cfg, value))
    }

    /// Unpacks the layers of `commit` (reusing existing snapshots) and
    /// records and tags the image; logs the event of its origin.
    pub fn commit(&self, commit: &ImageCommit) -> Result<ImageSummary, StoreError> {
        let summary = self.commit_derived(commit, None)?;
        if let Some(origin) = &commit.origin {
            self.log_origin(origin, &summary.id, &commit.tags);
        }
        Ok(summary)
    }

    /// docker's image event for how the image came in: `pull` names the
    /// reference pulled, `load` and `import` the image id (an import's
    /// names are `tag` events first, as docker logs them).
    fn log_origin(&self, origin: &ImageOrigin, id: &str, tags: &[String]) {
        let root = self.layout.root();
        match origin {
            ImageOrigin::Pull { reference, name } => {
                crate::events::image(root, "pull", reference, name, self.labels(id));
            }
            ImageOrigin::Load => crate::events::image(root, "load", id, id, self.labels(id)),
            ImageOrigin::Import => {
                for t in tags {
                    let name = Reference::parse(t).map_or_else(|_| t.clone(), |r| r.familiar());
                    crate::events::image(root, "tag", id, &name, self.labels(id));
                }
                crate::events::image(root, "import", id, id, self.labels(id));
            }
        }
    }

    /// An image event the host asked for (its `push` and `save`): with the
    /// image's labels when `reference` names one, as docker logs them.
    pub fn log_event(&self, action: &str, reference: &str, name: &str) {
        let labels = self
            .resolve(reference)
            .map(|id| self.labels(&id))
            .unwrap_or_default();
        crate::events::image(self.layout.root(), action, reference, name, labels);
    }

    /// [`ImageStore::commit`] of an image made from `parent` (a build step
    /// or `commit`): the parent is recorded, so listings can hide
    /// intermediate images.
    pub fn commit_derived(
        &self,
        commit: &ImageCommit,
        parent: Option<&str>,
    ) -> Result<ImageSummary, StoreError> {
        let id_hex = digest_hex(&commit.config_digest)?.to_string();
        let (cfg, _) = self.read_config(&commit.config_digest)?;
        let diff_ids = cfg
            .rootfs
            .as_ref()
            .map(|r| r.diff_ids.clone())
            .unwrap_or_default();
        if diff_ids.len() != commit.layers.len() {
            return Err(StoreError::BadConfig(format!(
                "config lists {} diff_ids but the manifest has {} layers",
                diff_ids.len(),
                commit.layers.len()
            )));
        }
        for d in &diff_ids {
            digest_hex(d)?;
        }
        let tags = commit
            .tags
            .iter()
            .map(|t| Reference::parse(t).map(|r| r.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let chains = chain_ids(&diff_ids);
        let _gc = self.gc.read().unwrap();
        let mut layers = Vec::new();
        for (i, (layer, (diff_id, chain))) in commit
            .layers
            .iter()
            .zip(diff_ids.iter().zip(&chains))
            .enumerate()
        {
            let size = self.ensure_snapshot(i, &layer.digest, diff_id, chain)?;
            layers.push(LayerRecord {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                diff_id: diff_id.clone(),
                chain_id: chain.clone(),
                size,
            });
        }
        let record = ImageRecord {
            id: commit.config_digest.clone(),
            layers,
            manifest_digest: commit.manifest_digest.clone(),
            added: chrono::Utc::now().to_rfc3339(),
            parent: parent.map(String::from),
        };
        let _g = self.meta.lock().unwrap();
        let path = self.layout.images().join(format!("{id_hex}.json"));
        if !path.exists() {
            write_json_atomic(&path, &record)?;
        }
        if !tags.is_empty() {
            let mut map = self.tags()?;
            for t in tags {
                map.insert(t, record.id.clone());
            }
            write_json_atomic(&self.layout.tags(), &map)?;
        }
        drop(_g);
        self.summary(&record.id)
    }

    /// Makes sure the snapshot for `chain` exists; returns its size.
    fn ensure_snapshot(
        &self,
        index: usize,
        digest: &str,
        diff_id: &str,
        chain: &str,
    ) -> Result<u64, StoreError> {
        let chain_hex = digest_hex(chain)?;
        let dir = self.layout.snapshots().join(chain_hex);
        if let Some(meta) = read_json::<SnapshotMeta>(&dir.join("meta.json"))? {
            return Ok(meta.size);
        }
        let blob = self.layout.blob(digest_hex(digest)?);
        let f = fs::File::open(&blob).map_err(|_| StoreError::MissingBlob(digest.to_string()))?;
        let work = self.layout.temp_dir("snap")?;
        let result = (|| {
            let fsdir = work.join("fs");
            fs::create_dir(&fsdir)?;
            let layer_err = |source| StoreError::Layer {
                index,
                digest: digest.to_string(),
                source,
            };
            let reader = unpack::decompress(io::BufReader::with_capacity(256 * 1024, f))
                .map_err(layer_err)?;
            let u = unpack::apply_layer(reader, &fsdir).map_err(layer_err)?;
            if u.diff_id != diff_id {
                return Err(StoreError::DiffIdMismatch {
                    index,
                    expected: diff_id.to_string(),
                    actual: u.diff_id,
                });
            }
            write_json_atomic(
                &work.join("meta.json"),
                &SnapshotMeta {
                    chain_id: chain.to_string(),
                    diff_id: u.diff_id,
                    size: u.size,
                },
            )?;
            match fs::rename(&work, &dir) {
                Ok(()) => Ok(u.size),
                // Someone else finished the same snapshot first: use theirs.
                Err(_) if dir.join("meta.json").exists() => {
                    let _ = fs::remove_dir_all(&work);
                    Ok(u.size)
                }
                Err(e) => Err(e.into()),
            }
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&work);
        }
        // A layer that does not unpack although its digest was verified on
        // arrival: check whether the stored bytes changed since (storage or
        // memory corruption), and say so instead of blaming the layer.
        if let Err(StoreError::Layer { .. }) = &result {
            if let Some(e) = recheck_blob(&blob, digest) {
                return Err(e);
            }
        }
        result
    }

    fn tags(&self) -> Result<BTreeMap<String, String>, StoreError> {
        Ok(read_json(&self.layout.tags())?.unwrap_or_default())
    }

    pub fn record(&self, id: &str) -> Result<ImageRecord, StoreError> {
        let hex = digest_hex(id)?;
        read_json(&self.layout.images().join(format!("{hex}.json")))?
            .ok_or_else(|| StoreError::NoSuchImage(id.to_string()))
    }

    fn records(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.layout.images())? {
            let p = e?.path();
            if p.extension().and_then(|x| x.to_str()) == Some("json") {
                if let Some(r) = read_json::<ImageRecord>(&p)? {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Resolves a tag, full id, or unique id prefix to an image id.
    pub fn resolve(&self, reference: &str) -> Result<String, StoreError> {
        let tags = self.tags()?;
        let no_such = || StoreError::NoSuchImage(reference.to_string());
        let hexpart = reference.strip_prefix("sha256:").unwrap_or(reference);
        let looks_like_id = hexpart.len() >= 4
            && hexpart
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if let Ok(r) = Reference::parse(reference) {
            if let Some(id) = tags.get(&r.to_string()) {
                return Ok(id.clone());
            }
        }
        if looks_like_id {
            let matches: Vec<String> = self
                .records()?
                .into_iter()
                .map(|r| r.id)
                .filter(|id| {
                    id.strip_prefix("sha256:")
                        .is_some_and(|h| h.starts_with(hexpart))
                })
                .collect();
            match matches.len() {
                1 => return Ok(matches[0].clone()),
                0 => {}
                _ => {
                    return Err(StoreError::Conflict(format!(
                        "image id prefix {reference:?} is ambiguous"
                    )))
                }
            }
        }
        Err(no_such())
    }

    /// Lower directories for a container on `image_id`, top layer first.
    pub fn lowerdirs(&self, image_id: &str) -> Result<Vec<PathBuf>, StoreError> {
        let rec = self.record(image_id)?;
        Ok(rec
            .layers
            .iter()
            .rev()
            .map(|l| {
                self.layout
                    .snapshot_fs(l.chain_id.trim_start_matches("sha256:"))
            })
            .collect())
    }

    /// The image's labels (docker's image events carry them).
    pub fn labels(&self, image_id: &str) -> BTreeMap<String, String> {
        self.config(image_id)
            .ok()
            .and_then(|c| c.config)
            .and_then(|c| c.labels)
            .unwrap_or_default()
    }

    /// The image's parsed config.
    pub fn config(&self, image_id: &str) -> Result<ImageConfigFile, StoreError> {
        Ok(self.read_config(image_id)?.0)
    }

    pub fn summary(&self, id: &str) -> Result<ImageSummary, StoreError> {
        let rec = self.record(id)?;
        let tags = self.tags()?;
        let mut s = self.summarise(&rec, &tags)?;
        let size = |d: &str| -> u64 {
            digest_hex(d)
                .ok()
                .and_then(|h| fs::metadata(self.layout.blob(h)).ok())
                .map(|m| m.len())
                .unwrap_or(0)
        };
        s.blobs.push(LayerRef {
            digest: rec.id.clone(),
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            size: size(&rec.id),
        });
        for l in &rec.layers {
            s.blobs.push(LayerRef {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: size(&l.digest),
            });
        }
        Ok(s)
    }

    /// The file of a stored blob.
    pub fn blob_file(&self, digest: &str) -> Result<fs::File, StoreError> {
        let hex = digest_hex(digest)?;
        fs::File::open(self.layout.blob(hex))
            .map_err(|_| StoreError::MissingBlob(digest.to_string()))
    }

    fn summarise(
        &self,
        rec: &ImageRecord,
        tags: &BTreeMap<String, String>,
    ) -> Result<ImageSummary, StoreError> {
        let (cfg, value) = self.read_config(&rec.id)?;
        Ok(ImageSummary {
            id: rec.id.clone(),
            tags: tags
                .iter()
                .filter(|(_, v)| **v == rec.id)
                .map(|(k, _)| k.clone())
                .collect(),
            created: cfg.created.clone(),
            size: rec.layers.iter().map(|l| l.size).sum(),
            layers: rec.layers.len(),
            architecture: cfg.architecture.clone(),
            os: cfg.os.clone(),
            config: value,
            parent: rec.parent.clone(),
            blobs: Vec::new(),
        })
    }

    pub fn list(&self) -> Result<Vec<ImageSummary>, StoreError> {
        let tags = self.tags()?;
        let mut out = Vec::new();
        for rec in self.records()? {
            out.push(self.summarise(&rec, &tags)?);
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    pub fn tag(&self, source: &str, target: &str) -> Result<(), StoreError> {
        let id = self.resolve(source)?;
        let target = Reference::parse(target)?;
        if target.digest.is_some() {
            return Err(StoreError::Conflict(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        let _g = self.meta.lock().unwrap();
        let mut map = self.tags()?;
        map.insert(target.to_string(), id.clone());
        write_json_atomic(&self.layout.tags(), &map)?;
        crate::events::image(
            self.layout.root(),
            "tag",
            &id,
            &target.familiar(),
            self.labels(&id),
        );
        Ok(())
    }

    /// Removes a tag, or the whole image when `reference` is its id or its
    /// last tag. `in_use` tells whether a container uses an image id.
    pub fn remove(
        &self,
        reference: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let id = self.resolve(reference)?;
        let _g = self.meta.lock().unwrap();
        let mut map = self.tags()?;
        let mut out = Vec::new();
        let by_tag = Reference::parse(reference)
            .ok()
            .map(|r| r.to_string())
            .filter(|t| map.contains_key(t));
        let image_tags: Vec<String> = map
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .collect();
        if let Some(t) = &by_tag {
            if image_tags.len() > 1 {
                map.remove(t);
                write_json_atomic(&self.layout.tags(), &map)?;
                crate::events::image(self.layout.root(), "untag", &id, &id, self.labels(&id));
                return Ok(vec![format!(
                    "Untagged: {}",
                    Reference::parse(t)?.familiar()
                )]);
            }
        } else if image_tags.len() > 1 && !force {
            return Err(StoreError::Conflict(format!(
                "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                short(&id)
            )));
        }
        if in_use(&id) && !force {
            return Err(StoreError::Conflict(format!(
                "unable to remove image {reference}: image is being used by a container (use -f to force)"
            )));
        }
        for t in &image_tags {
            map.remove(t);
            out.push(format!("Untagged: {}", Reference::parse(t)?.familiar()));
        }
        write_json_atomic(&self.layout.tags(), &map)?;
        for _ in &image_tags {
            crate::events::image(self.layout.root(), "untag", &id, &id, self.labels(&id));
        }
        if in_use(&id) {
            // Forced: untag only; the container keeps its layers.
            return Ok(out);
        }
        // The image's layer chains, top first: docker names each one
        // whose last user this image was after the image itself.
        let chains: Vec<String> = self
            .record(&id)
            .map(|r| r.layers.iter().rev().map(|l| l.chain_id.clone()).collect())
            .unwrap_or_default();
        fs::remove_file(
            self.layout
                .images()
                .join(format!("{}.json", digest_hex(&id)?)),
        )?;
        out.push(format!("Deleted: {id}"));
        crate::events::image(self.layout.root(), "delete", &id, &id, BTreeMap::new());
        drop(_g);
        let removed = self.collect_garbage()?;
        for c in chains {
            if digest_hex(&c).is_ok_and(|h| removed.iter().any(|r| r == h)) {
                out.push(format!("Deleted: {c}"));
            }
        }
        Ok(out)
    }

    /// Deletes snapshots and blobs no image refers to; returns the chain
    /// ids (hex) of the snapshots deleted.
    pub fn collect_garbage(&self) -> Result<Vec<String>, StoreError> {
        let _gc = self.gc.write().unwrap();
        let _g = self.meta.lock().unwrap();
        let records = self.records()?;
        let mut chains = BTreeSet::new();
        let mut blobs = BTreeSet::new();
        for r in &records {
            blobs.insert(digest_hex(&r.id)?.to_string());
            if let Some(m) = &r.manifest_digest {
                if let Ok(h) = digest_hex(m) {
                    blobs.insert(h.to_string());
                }
            }
            for l in &r.layers {
                chains.insert(digest_hex(&l.chain_id)?.to_string());
                blobs.insert(digest_hex(&l.digest)?.to_string());
            }
        }
        let mut removed = Vec::new();
        for e in fs::read_dir(self.layout.snapshots())? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !chains.contains(&name) {
                // Move aside first so a half-deleted snapshot is never used.
                let trash = self.layout.tmp().join(format!("gc-{name}"));
                if fs::rename(e.path(), &trash).is_ok() {
                    let _ = fs::remove_dir_all(&trash);
                    removed.push(name);
                }
            }
        }
        for e in fs::read_dir(self.layout.blobs())? {
            let e = e?;
            // Fresh blobs may belong to a load or pull that has not
            // committed its image yet.
            let fresh = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() < 600);
            if !fresh && !blobs.contains(&*e.file_name().to_string_lossy()) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(removed)
    }

    pub fn count(&self) -> usize {
        self.records().map(|r| r.len()).unwrap_or(0)
    }
}

/// `sha256:abcdef…` → `abcdef012345`.
pub fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapshotMeta {
    chain_id: String,
    diff_id: String,
    size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recheck_reports_changed_blobs_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let mut data = vec![7u8; 4096];
        data.extend(vec![0u8; 2 * 4096]);
        data.extend(b"tail");
        fs::write(&path, &data).unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        assert!(recheck_blob(&path, &digest).is_none());
        let other = format!("sha256:{}", "0".repeat(64));
        let e = recheck_blob(&path, &other)
            .expect("a changed blob")
            .to_string();
        assert!(
            e.contains(&format!("now hashes to {digest}"))
                && e.contains("12292 bytes, 2 of 4 pages all zero: pages 1, 2"),
            "{e}"
        );
    }
}
