//! `berth save`: write images from the host cache as an archive. The
//! default format is docker-save's (manifest.json) laid out over OCI blobs
//! (index.json, oci-layout), which `docker load`, `skopeo` and `berth load`
//! all read; `--format oci` writes a plain OCI image layout.

use crate::image_cache::ImageCache;
use crate::registry::manifest::{self, Fetched, DOCKER_CONFIG, OCI_CONFIG};
use anyhow::{bail, Context, Result};
use berth_protocol::reference::Reference;
use berth_protocol::ImageCommit;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Archive format: docker (default) or oci
    #[arg(long, default_value = "docker")]
    format: String,
    /// Images to save
    #[arg(required = true)]
    images: Vec<String>,
}

struct Entry {
    commit: ImageCommit,
    manifest_type: String,
    manifest: Vec<u8>,
    names: Vec<Reference>,
}

fn append(
    t: &mut tar::Builder<Box<dyn Write>>,
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

fn append_bytes(t: &mut tar::Builder<Box<dyn Write>>, name: &str, data: &[u8]) -> Result<()> {
    append(t, name, &mut &data[..], data.len() as u64)
}

pub fn run(iso: crate::placement::Isolation, a: &SaveArgs) -> Result<i32> {
    let oci_only = match a.format.as_str() {
        "docker" => false,
        "oci" => true,
        f => bail!("unsupported --format {f:?} (use docker or oci)"),
    };
    let cache = ImageCache::open()?;
    let mut entries: Vec<Entry> = Vec::new();
    for name in &a.images {
        let commit = crate::commands::push::resolve_local(iso, &cache, name)?;
        // A name (not an id) becomes the archive's tag.
        let is_id =
            name.starts_with("sha256:") || commit.config_digest[7..].starts_with(name.as_str());
        let named = Reference::parse(name).ok().filter(|_| !is_id);
        let (manifest_type, manifest) = match commit
            .manifest_digest
            .as_ref()
            .filter(|d| cache.has_blob(d))
            .map(|d| cache.read_blob(d))
            .transpose()?
            .and_then(|b| match manifest::parse(&b, None) {
                Ok(Fetched::Image(m)) if m.config.digest == commit.config_digest => {
                    Some((m.media_type, b))
                }
                _ => None,
            }) {
            Some(x) => x,
            None => {
                let config_size = std::fs::metadata(cache.blob_path(&commit.config_digest)?)?.len();
                let layers: Vec<manifest::Descriptor> = commit
                    .layers
                    .iter()
                    .map(|l| manifest::Descriptor {
                        media_type: l.media_type.clone(),
                        digest: l.digest.clone(),
                        size: l.size,
                        platform: None,
                        urls: None,
                    })
                    .collect();
                let docker = layers
                    .iter()
                    .all(|l| l.media_type.starts_with("application/vnd.docker."));
                let cfg = manifest::Descriptor {
                    media_type: if docker { DOCKER_CONFIG } else { OCI_CONFIG }.into(),
                    digest: commit.config_digest.clone(),
                    size: config_size,
                    platform: None,
                    urls: None,
                };
                manifest::synthesize(&cfg, &layers)
            }
        };
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
            None => entries.push(Entry {
                names: named.into_iter().collect(),
                commit,
                manifest_type,
                manifest,
            }),
        }
    }
    let tmp_path = a
        .output
        .as_ref()
        .map(|p| p.with_extension(format!("berth-tmp-{}", std::process::id())));
    let sink: Box<dyn Write> = match &tmp_path {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
        }
    };
    let result = write_archive(&cache, &entries, oci_only, sink);
    match (&tmp_path, result) {
        (Some(tmp), Ok(())) => {
            std::fs::rename(tmp, a.output.as_ref().unwrap())?;
        }
        (Some(tmp), Err(e)) => {
            let _ = std::fs::remove_file(tmp);
            return Err(e);
        }
        (None, r) => r?,
    }
    Ok(0)
}

fn write_archive(
    cache: &ImageCache,
    entries: &[Entry],
    oci_only: bool,
    sink: Box<dyn Write>,
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
    if !oci_only {
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
