//! The host's content-addressed image cache (`$BERTH_HOME/cache`): every
//! blob `berth load` and `berth pull` bring in, verified, plus the image
//! records that tie them together. Placements without a persistent store of
//! their own (`--isolation vm`) are fed from here over vsock.

use crate::engine::Engine;
use anyhow::{bail, Context, Result};
use berth_protocol::reference::Reference;
use berth_protocol::ImageCommit;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::PathBuf;

/// Blobs and image records under one directory.
pub struct ImageCache {
    dir: PathBuf,
}

fn hex_of(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(h)
        }
        _ => bail!("invalid digest {digest:?}"),
    }
}

impl ImageCache {
    pub fn open() -> Result<ImageCache> {
        let dir = crate::paths::state_dir().join("cache");
        std::fs::create_dir_all(dir.join("blobs/sha256"))?;
        Ok(ImageCache { dir })
    }

    /// The cache's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Serialises read-modify-write of the cache's JSON files between
    /// berth processes; released when the returned file is dropped.
    fn lock(&self) -> Result<std::fs::File> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))?;
        if let Err(e) = crate::platform::lock_exclusive(&f) {
            bail!("locking the image cache: {e}");
        }
        Ok(f)
    }

    /// Where the blob `digest` is (or would be) stored.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.dir.join("blobs/sha256").join(hex_of(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Stores `size` bytes from `r` as `digest`, verifying both.
    pub fn put_blob(&self, digest: &str, size: u64, r: &mut dyn Read) -> Result<()> {
        let path = self.blob_path(digest)?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let result = (|| -> Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut left = size;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = r.read(&mut buf[..want])?;
                if n == 0 {
                    bail!("blob {digest} is truncated");
                }
                h.update(&buf[..n]);
                f.write_all(&buf[..n])
                    .with_context(|| format!("storing blob {digest} in the host cache"))?;
                left -= n as u64;
            }
            if r.read(&mut buf[..1])? != 0 {
                bail!("blob {digest} is larger than its declared {size} bytes");
            }
            let actual = format!("sha256:{}", hex::encode(h.finalize()));
            if actual != digest {
                bail!("digest mismatch: expected {digest}, got {actual}");
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        })();
        if result.is_err() {
            // A failed store (a full disk, a bad digest) leaves nothing.
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// A fresh temporary path in the blob directory for `digest`; renamed
    /// into place by [`adopt`](Self::adopt) once verified.
    pub fn temp_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self
            .blob_path(digest)?
            .with_extension(format!("tmp-{}", std::process::id())))
    }

    /// Moves a verified temporary file into place as `digest`.
    pub fn adopt(&self, tmp: &std::path::Path, digest: &str) -> Result<()> {
        std::fs::rename(tmp, self.blob_path(digest)?)?;
        Ok(())
    }

    /// Deletes temporary files left by berth processes that died mid-way.
    pub fn remove_stale_temps(&self) {
        let Ok(dir) = std::fs::read_dir(self.dir.join("blobs/sha256")) else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((_, pid)) = name.split_once(".tmp-") else {
                continue;
            };
            let alive = pid
                .parse::<u32>()
                .map(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
                .unwrap_or(false);
            if !alive {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Reads a small cached blob (manifest, config) whole.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest)?;
        std::fs::read(&p).with_context(|| format!("blob {digest} missing from the host cache"))
    }

    fn repo_digest_map(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        std::fs::read(self.dir.join("repo_digests.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default()
    }

    /// `repo@digest` names an image is known by in registries.
    pub fn repo_digests(&self, config_digest: &str) -> Vec<String> {
        self.repo_digest_map()
            .remove(config_digest)
            .unwrap_or_default()
    }

    /// Remembers that `repo_digest` (`domain/path@sha256:…`) names the image.
    /// A repository keeps one digest per image, as docker's RepoDigests.
    pub fn add_repo_digest(&self, config_digest: &str, repo_digest: &str) -> Result<()> {
        let _lock = self.lock()?;
        let mut map = self.repo_digest_map();
        let repo = repo_digest.split('@').next().unwrap_or("");
        let list = map.entry(config_digest.to_string()).or_default();
        list.retain(|d| d.split('@').next() != Some(repo));
        list.push(repo_digest.to_string());
        self.write_repo_digest_map(&map)
    }

    /// Replaces repo_digests.json (the caller holds the lock).
    fn write_repo_digest_map(
        &self,
        map: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<()> {
        self.replace_json("repo_digests.json", &serde_json::to_vec_pretty(map)?)
    }

    /// Replaces the cache's file `name` with `data`: written under a
    /// temporary name, synced, renamed, so that a crash or a full disk
    /// leaves the old file or the new one, never a part (and a failed
    /// write leaves no temporary file behind).
    fn replace_json(&self, name: &str, data: &[u8]) -> Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp-{}", std::process::id()));
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.dir.join(name))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.with_context(|| format!("writing {}", self.dir.join(name).display()))
    }

    /// Forgets some of the `repo@digest` names of an image.
    pub fn remove_repo_digests(&self, config_digest: &str, gone: &[String]) -> Result<()> {
        let _lock = self.lock()?;
        let mut map = self.repo_digest_map();
        if let Some(list) = map.get_mut(config_digest) {
            list.retain(|d| !gone.contains(d));
            if list.is_empty() {
                map.remove(config_digest);
            }
        }
        self.write_repo_digest_map(&map)
    }

    /// An engine's `rmi` lines with the repository digests docker drops
    /// alongside: when the last tag of a repository leaves an image, that
    /// repository's digests are untagged too (`Untagged: repo@sha256:…`,
    /// after the tag's line, before the `Deleted:` ones), and a deleted
    /// image keeps none. The cache forgets those digests. `img` is the
    /// image as it was before the removal.
    pub fn with_digest_untags(
        &self,
        img: &berth_protocol::ImageSummary,
        reference: &str,
        lines: Vec<String>,
    ) -> Vec<String> {
        let extra = self.digest_untags(img, reference, &lines);
        let untagged = lines.iter().take_while(|l| l.starts_with("Untagged:"));
        let rest = lines.iter().skip_while(|l| l.starts_with("Untagged:"));
        untagged.chain(extra.iter()).chain(rest).cloned().collect()
    }

    /// The `Untagged: repo@digest` lines owed after removing `reference` from
    /// `img`, with those digests forgotten by the cache.
    fn digest_untags(
        &self,
        img: &berth_protocol::ImageSummary,
        reference: &str,
        lines: &[String],
    ) -> Vec<String> {
        let deleted = lines.iter().any(|l| l.starts_with("Deleted:"));
        let removed_repo = match Reference::parse(reference) {
            Ok(r) if r.digest.is_none() && !deleted => Some(r.repository()),
            // An id or a digest: only a deleted image loses its digests.
            _ if deleted => None,
            _ => return Vec::new(),
        };
        let repo_of = |s: &str| Reference::parse(s).ok().map(|r| r.repository());
        let mut gone = Vec::new();
        for rd in self.repo_digests(&img.id) {
            let repo = repo_of(&rd);
            let drop = match &removed_repo {
                // The last tag of that repository on this image went.
                Some(r) => {
                    repo.as_ref() == Some(r)
                        && !img.tags.iter().any(|t| {
                            repo_of(t).as_ref() == Some(r)
                                && Reference::parse(t).ok().map(|x| x.familiar())
                                    != Reference::parse(reference).ok().map(|x| x.familiar())
                        })
                }
                None => true,
            };
            if drop {
                gone.push(rd);
            }
        }
        if gone.is_empty() {
            return Vec::new();
        }
        if let Err(e) = self.remove_repo_digests(&img.id, &gone) {
            log::warn!("forgetting repository digests: {e:#}");
        }
        gone.iter()
            .map(|d| {
                let name = Reference::parse(d)
                    .map(|r| r.familiar())
                    .unwrap_or_else(|_| d.clone());
                format!("Untagged: {name}")
            })
            .collect()
    }

    /// Forgets an image record (its blobs stay until pruned).
    pub fn forget(&self, config_digest: &str) -> Result<()> {
        let _lock = self.lock()?;
        let mut all = self.records();
        all.retain(|r| r.config_digest != config_digest);
        self.replace_json("images.json", &serde_json::to_vec_pretty(&all)?)?;
        self.forget_image_disk(config_digest);
        Ok(())
    }

    /// Removes the image disk ([`crate::image_disk`]) of the image
    /// `config_digest`, if any. VMs using it keep their open file.
    pub fn forget_image_disk(&self, config_digest: &str) {
        if let Some(hex) = config_digest.strip_prefix("sha256:") {
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                let dir = self.dir().join("image-disks");
                let _ = std::fs::remove_file(dir.join(image_disk_file(hex)));
                let _ = std::fs::remove_file(dir.join(format!("{hex}.lock")));
            }
        }
    }

    fn records(&self) -> Vec<ImageCommit> {
        std::fs::read(self.dir.join("images.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default()
    }

    /// Records an image; its tags move away from older records.
    pub fn record(&self, commit: &ImageCommit) -> Result<()> {
        let _lock = self.lock()?;
        let mut all = self.records();
        for r in &mut all {
            r.tags.retain(|t| !commit.tags.contains(t));
        }
        // The same image under another name keeps its other names.
        let mut commit = commit.clone();
        for r in all
            .iter()
            .filter(|r| r.config_digest == commit.config_digest)
        {
            for t in &r.tags {
                if !commit.tags.contains(t) {
                    commit.tags.push(t.clone());
                }
            }
        }
        all.retain(|r| r.config_digest != commit.config_digest);
        all.push(commit);
        self.replace_json("images.json", &serde_json::to_vec_pretty(&all)?)?;
        Ok(())
    }

    /// Finds an image by reference, id, or unique id prefix.
    pub fn resolve(&self, reference: &str) -> Option<ImageCommit> {
        let all = self.records();
        if let Ok(r) = Reference::parse(reference) {
            let norm = r.to_string();
            if let Some(c) = all.iter().find(|c| c.tags.contains(&norm)) {
                return Some(c.clone());
            }
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() < 4 {
            return None;
        }
        let m: Vec<&ImageCommit> = all
            .iter()
            .filter(|c| c.config_digest[7..].starts_with(hex))
            .collect();
        (m.len() == 1).then(|| m[0].clone())
    }

    /// Sends the image's blobs the agent lacks, then commits the image there.
    pub fn upload(&self, commit: &ImageCommit, connect: &dyn Fn() -> Result<Engine>) -> Result<()> {
        let mut ctl = connect()?;
        let digests: Vec<String> = std::iter::once(commit.config_digest.clone())
            .chain(commit.layers.iter().map(|l| l.digest.clone()))
            .collect();
        let present = match ctl.blobs_present(digests.clone()) {
            Ok(present) => present,
            Err(crate::client::ClientError::Unexpected(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        for d in digests.iter().filter(|d| !present.contains(d)) {
            let path = self.blob_path(d)?;
            let mut f = std::fs::File::open(&path)
                .with_context(|| format!("blob {d} missing from the host cache"))?;
            let size = f.metadata()?.len();
            connect()?
                .put_blob(d, size, &mut f)
                .with_context(|| format!("uploading {d}"))?;
        }
        ctl.image_commit(commit)?;
        Ok(())
    }

    /// Copies an image that exists only in the engine (made there by
    /// `build` or `commit`) into the cache: each missing blob is streamed
    /// from the agent and verified against its digest and size, then the
    /// image is recorded.
    pub fn import_from_engine(
        &self,
        img: &berth_protocol::ImageSummary,
        connect: &dyn Fn() -> Result<Engine>,
    ) -> Result<ImageCommit> {
        let Some((config, layers)) = img.blobs.split_first() else {
            bail!("the engine did not list the blobs of image {}", img.id);
        };
        if config.digest != img.id {
            bail!("the engine listed blobs of another image for {}", img.id);
        }
        for b in &img.blobs {
            if self.has_blob(&b.digest) {
                continue;
            }
            let mut s = connect()?
                .blob_get(&b.digest)
                .with_context(|| format!("reading blob {} from the engine", b.digest))?;
            self.put_blob(&b.digest, b.size, &mut s)
                .with_context(|| format!("copying blob {} from the engine", b.digest))?;
        }
        let commit = ImageCommit {
            config_digest: img.id.clone(),
            layers: layers.to_vec(),
            tags: Vec::new(),
            manifest_digest: None,
            origin: None,
        };
        self.record(&commit)?;
        self.resolve(&img.id)
            .with_context(|| format!("image {} was not recorded", img.id))
    }
}
/// Bumped when the tree on an image disk changes.
const IMAGE_DISK_FORMAT: &str = "1";

/// The file name of the image disk of the image whose config digest has
/// the hex `hex`, under `<cache>/image-disks/`.
pub(crate) fn image_disk_file(hex: &str) -> String {
    format!("{hex}-{IMAGE_DISK_FORMAT}.ext4")
}
