//! Reading image archives for `load`: `docker save` archives (manifest.json,
//! config and layer tars) and OCI image layouts (index.json and blobs/), as
//! produced by docker, skopeo and umoci. The archive is untrusted: names in
//! its JSON are only looked up among the tar's own entries, sizes are
//! bounded, and every digest is verified (by the agent on upload).

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const MAX_JSON: u64 = 16 * 1024 * 1024;

/// Errors reading an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid archive: {0}")]
    Invalid(String),
    #[error("archive entry {0:?} is missing")]
    Missing(String),
    #[error("unsupported archive: {0}")]
    Unsupported(String),
}

fn invalid(s: impl Into<String>) -> ArchiveError {
    ArchiveError::Invalid(s.into())
}

/// A blob inside the archive file.
#[derive(Debug, Clone)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    offset: u64,
}

/// One image found in the archive.
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    pub config: BlobRef,
    pub layers: Vec<BlobRef>,
    pub tags: Vec<String>,
    pub manifest_digest: Option<String>,
}

/// An opened archive.
pub struct Archive {
    file: File,
    entries: HashMap<String, (u64, u64)>,
    links: HashMap<String, String>,
}

fn clean(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    parts.join("/")
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[derive(Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct IndexOrManifest {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// Host architecture in OCI terms.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl Archive {
    /// Indexes the tar entries of `path`.
    pub fn open(path: &Path) -> Result<Archive, ArchiveError> {
        let file = File::open(path)?;
        let mut entries = HashMap::new();
        let mut links = HashMap::new();
        {
            let mut ar = tar::Archive::new(&file);
            for e in ar
                .entries()
                .map_err(|e| invalid(format!("not a tar archive: {e}")))?
            {
                let e = e.map_err(|e| invalid(format!("corrupt tar: {e}")))?;
                let name = clean(&String::from_utf8_lossy(&e.path_bytes()));
                let kind = e.header().entry_type();
                if kind.is_file() {
                    entries.insert(name, (e.raw_file_position(), e.size()));
                } else if kind.is_symlink() || kind.is_hard_link() {
                    if let Some(t) = e.link_name_bytes() {
                        let t = String::from_utf8_lossy(&t).into_owned();
                        let target = if kind.is_symlink() && !t.starts_with('/') {
                            let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                            clean(&format!("{dir}/{t}"))
                        } else {
                            clean(&t)
                        };
                        links.insert(name, target);
                    }
                }
            }
        }
        if entries.is_empty() {
            return Err(invalid("archive is empty"));
        }
        Ok(Archive {
            file,
            entries,
            links,
        })
    }

    fn lookup(&self, name: &str) -> Result<(u64, u64), ArchiveError> {
        let mut n = clean(name);
        for _ in 0..8 {
            if let Some(e) = self.entries.get(&n) {
                return Ok(*e);
            }
            match self.links.get(&n) {
                Some(t) => n = t.clone(),
                None => break,
            }
        }
        Err(ArchiveError::Missing(name.to_string()))
    }

    fn read_small(&mut self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let (off, size) = self.lookup(name)?;
        if size > MAX_JSON {
            return Err(invalid(format!("{name} is too large")));
        }
        self.file.seek(SeekFrom::Start(off))?;
        let mut buf = vec![0u8; size as usize];
        self.file.read_exact(&mut buf)?;
        Ok(buf)
    }

    fn hash_entry(&mut self, name: &str, media_type: &str) -> Result<BlobRef, ArchiveError> {
        let (off, size) = self.lookup(name)?;
        self.file.seek(SeekFrom::Start(off))?;
        let mut h = Sha256::new();
        let mut r = (&self.file).take(size);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(BlobRef {
            digest: format!("sha256:{}", hex::encode(h.finalize())),
            size,
            media_type: media_type.into(),
            offset: off,
        })
    }

    fn oci_blob(&self, d: &Descriptor) -> Result<BlobRef, ArchiveError> {
        if !valid_digest(&d.digest) {
            return Err(invalid(format!("invalid digest {:?}", d.digest)));
        }
        let name = format!("blobs/sha256/{}", &d.digest[7..]);
        let (off, size) = self.lookup(&name)?;
        if size != d.size {
            return Err(invalid(format!(
                "blob {} is {size} bytes but its descriptor says {}",
                d.digest, d.size
            )));
        }
        Ok(BlobRef {
            digest: d.digest.clone(),
            size,
            media_type: d.media_type.clone(),
            offset: off,
        })
    }

    /// Lists the images of the archive.
    pub fn images(&mut self) -> Result<Vec<ArchiveImage>, ArchiveError> {
        if self.lookup("manifest.json").is_ok() {
            return self.docker_images();
        }
        if self.lookup("index.json").is_ok() {
            return self.oci_images();
        }
        Err(ArchiveError::Unsupported(
            "neither manifest.json (docker save) nor index.json (OCI layout) found".into(),
        ))
    }

    fn docker_images(&mut self) -> Result<Vec<ArchiveImage>, ArchiveError> {
        let data = self.read_small("manifest.json")?;
        let manifest: Vec<DockerManifestEntry> =
            serde_json::from_slice(&data).map_err(|e| invalid(format!("manifest.json: {e}")))?;
        let mut out = Vec::new();
        for m in manifest {
            let config =
                self.hash_entry(&m.config, "application/vnd.docker.container.image.v1+json")?;
            let mut layers = Vec::new();
            for l in &m.layers {
                layers.push(self.hash_entry(l, "application/vnd.docker.image.rootfs.diff.tar")?);
            }
            out.push(ArchiveImage {
                config,
                layers,
                tags: m.repo_tags.unwrap_or_default(),
                manifest_digest: None,
            });
        }
        Ok(out)
    }

    fn oci_images(&mut self) -> Result<Vec<ArchiveImage>, ArchiveError> {
        let data = self.read_small("index.json")?;
        let index: IndexOrManifest =
            serde_json::from_slice(&data).map_err(|e| invalid(format!("index.json: {e}")))?;
        let mut out = Vec::new();
        for d in index.manifests.unwrap_or_default() {
            let mut tags = Vec::new();
            if let Some(a) = &d.annotations {
                if let Some(n) = a.get("io.containerd.image.name") {
                    tags.push(n.clone());
                } else if let Some(r) = a.get("org.opencontainers.image.ref.name") {
                    // A bare tag ("latest") names nothing loadable by itself.
                    if r.contains('/') || r.contains(':') {
                        tags.push(r.clone());
                    }
                }
            }
            if let Some(img) = self.resolve_manifest(&d, tags, 0)? {
                out.push(img);
            }
        }
        Ok(out)
    }

    fn resolve_manifest(
        &mut self,
        d: &Descriptor,
        tags: Vec<String>,
        depth: u32,
    ) -> Result<Option<ArchiveImage>, ArchiveError> {
        if depth > 4 {
            return Err(invalid("index nesting too deep"));
        }
        let blob = self.oci_blob(d)?;
        if blob.size > MAX_JSON {
            return Err(invalid("manifest too large"));
        }
        let data = self.read_small(&format!("blobs/sha256/{}", &d.digest[7..]))?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        if actual != d.digest {
            return Err(invalid(format!(
                "manifest digest mismatch: expected {}, got {actual}",
                d.digest
            )));
        }
        let m: IndexOrManifest = serde_json::from_slice(&data)
            .map_err(|e| invalid(format!("manifest {}: {e}", d.digest)))?;
        if let Some(children) = m.manifests {
            let pick = children
                .iter()
                .find(|c| {
                    c.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == oci_arch())
                })
                .or_else(|| children.iter().find(|c| c.platform.is_none()))
                .cloned();
            return match pick {
                Some(c) => self.resolve_manifest(&c, tags, depth + 1),
                None => Err(ArchiveError::Unsupported(format!(
                    "no linux/{} image in index {}",
                    oci_arch(),
                    d.digest
                ))),
            };
        }
        let config = m
            .config
            .ok_or_else(|| invalid(format!("manifest {} has no config", d.digest)))?;
        let config = self.oci_blob(&config)?;
        let mut layers = Vec::new();
        for l in m.layers.unwrap_or_default() {
            if l.media_type.contains("zstd") {
                return Err(ArchiveError::Unsupported(format!(
                    "zstd-compressed layer {}",
                    l.digest
                )));
            }
            layers.push(self.oci_blob(&l)?);
        }
        Ok(Some(ArchiveImage {
            config,
            layers,
            tags,
            manifest_digest: Some(d.digest.clone()),
        }))
    }

    /// A small OCI-layout blob (a manifest) read whole.
    pub fn read_oci_blob(&mut self, digest: &str) -> Result<Vec<u8>, ArchiveError> {
        if !valid_digest(digest) {
            return Err(invalid(format!("invalid digest {digest:?}")));
        }
        self.read_small(&format!("blobs/sha256/{}", &digest[7..]))
    }

    /// A reader positioned at a blob's bytes.
    pub fn blob_reader(&mut self, b: &BlobRef) -> Result<impl Read + '_, ArchiveError> {
        self.file.seek(SeekFrom::Start(b.offset))?;
        Ok((&self.file).take(b.size))
    }
}
