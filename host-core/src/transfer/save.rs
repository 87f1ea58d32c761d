//! Writing images from the host cache as one archive: docker-save's layout
//! (`manifest.json`) over OCI blobs (`index.json`, `oci-layout`), which
//! `docker load`, `skopeo` and `berth load` all read, or a plain OCI image
//! layout.

use crate::image_cache::ImageCache;
use crate::placement::Isolation;
use crate::registry::manifest;
use anyhow::{bail, Result};
use berth_protocol::reference::Reference;
use berth_protocol::ImageCommit;
use serde_json::json;
use std::io::Write;

/// The archive's layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFormat {
    /// docker-save's `manifest.json` beside the OCI layout (the default).
    Docker,
    /// A plain OCI image layout.
    Oci,
}

impl SaveFormat {
    /// Parses `docker` or `oci`.
    pub fn parse(s: &str) -> Result<SaveFormat> {
        match s {
            "docker" => Ok(SaveFormat::Docker),
            "oci" => Ok(SaveFormat::Oci),
            f => bail!("unsupported --format {f:?} (use docker or oci)"),
        }
    }
}

/// One image of an archive, with every name it was asked for by.
pub struct SaveEntry {
    commit: ImageCommit,
    manifest_type: String,
    manifest: Vec<u8>,
    names: Vec<Reference>,
}

/// Resolves `names` (tags, names or ids) to archive entries, checking that
/// every blob is in the host cache before anything is written, so that a
/// missing image fails before the output exists.
pub fn collect(iso: Isolation, cache: &ImageCache, names: &[String]) -> Result<Vec<SaveEntry>> {
    let mut entries: Vec<SaveEntry> = Vec::new();
    for name in names {
        let commit = super::resolve_local(iso, cache, name)?;
        // A name (not an id) becomes the archive's tag.
        let is_id =
            name.starts_with("sha256:") || commit.config_digest[7..].starts_with(name.as_str());
        let named = Reference::parse(name).ok().filter(|_| !is_id);
        let (manifest_type, manifest, _) = super::manifest_for(cache, &commit)?;
        for d in
            std::iter::once(&commit.config_digest).chain(commit.layers.iter().map(|l| &l.digest))
        {
            if !cache.has_blob(d) {
                bail!("blob {d} of {name} is not in the host cache; pull or load the image again");
            }
        }
        match entries
            .iter_mut()
            .find(|e| e.commit.config_digest == commit.config_digest)
        {
            Some(e) => e.names.extend(named),
            None => entries.push(SaveEntry {
                names: named.into_iter().collect(),
                commit,
                manifest_type,
                manifest,
            }),
        }
    }
    Ok(entries)
}

/// Logs docker's `save` event for each image of `entries` (actor and name
/// the image id, as dockerd logs them), once the archive is written.
pub fn log_saved(iso: Isolation, entries: &[SaveEntry]) {
    for e in entries {
        let id = &e.commit.config_digest;
        super::log_image_event(iso, berth_protocol::ImageEventAction::Save, id, id);
    }
}

fn append<W: Write>(
    t: &mut tar::Builder<W>,
    name: &str,
    data: &mut dyn std::io::Read,
    size: u64,
) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    t.append_data(&mut h, name, data)?;
    Ok(())
}

fn append_bytes<W: Write>(t: &mut tar::Builder<W>, name: &str, data: &[u8]) -> Result<()> {
    append(t, name, &mut &data[..], data.len() as u64)
}

/// Writes `entries` as one tar archive to `sink`.
pub fn write_archive<W: Write>(
    cache: &ImageCache,
    entries: &[SaveEntry],
    format: SaveFormat,
    sink: W,
) -> Result<()> {
    let mut t = tar::Builder::new(sink);
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_mtime(0);
    dir.set_size(0);
    t.append_data(&mut dir.clone(), "blobs/", std::io::empty())?;
    t.append_data(&mut dir, "blobs/sha256/", std::io::empty())?;
    let mut written: Vec<String> = Vec::new();
    let mut index = Vec::new();
    let mut docker_manifest = Vec::new();
    for e in entries {
        let c = &e.commit;
        let manifest_digest = manifest::sha256_digest(&e.manifest);
        for d in std::iter::once(&c.config_digest).chain(c.layers.iter().map(|l| &l.digest)) {
            if written.contains(d) {
                continue;
            }
            let path = cache.blob_path(d)?;
            let mut f = std::fs::File::open(&path)?;
            let size = f.metadata()?.len();
            append(&mut t, &format!("blobs/sha256/{}", &d[7..]), &mut f, size)?;
            written.push(d.clone());
        }
        if !written.contains(&manifest_digest) {
            append_bytes(
                &mut t,
                &format!("blobs/sha256/{}", &manifest_digest[7..]),
                &e.manifest,
            )?;
            written.push(manifest_digest.clone());
        }
        let base = json!({
            "mediaType": e.manifest_type, "digest": manifest_digest, "size": e.manifest.len(),
        });
        if e.names.is_empty() {
            index.push(base.clone());
        }
        for n in &e.names {
            let mut d = base.clone();
            d["annotations"] = json!({
                "io.containerd.image.name": n.to_string(),
                "org.opencontainers.image.ref.name": n.tag.clone().unwrap_or_else(|| "latest".into()),
            });
            index.push(d);
        }
        docker_manifest.push(json!({
            "Config": format!("blobs/sha256/{}", &c.config_digest[7..]),
            "RepoTags": e.names.iter().map(|n| n.familiar()).collect::<Vec<_>>(),
            "Layers": c.layers.iter().map(|l| format!("blobs/sha256/{}", &l.digest[7..])).collect::<Vec<_>>(),
        }));
    }
    append_bytes(&mut t, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": index});
    append_bytes(&mut t, "index.json", &serde_json::to_vec(&index)?)?;
    if format == SaveFormat::Docker {
        append_bytes(
            &mut t,
            "manifest.json",
            &serde_json::to_vec(&docker_manifest)?,
        )?;
    }
    let mut sink = t.into_inner()?;
    sink.flush()?;
    Ok(())
}
