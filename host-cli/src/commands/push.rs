//! `berth push`: upload an image from the host cache to a registry.

use crate::commands::connect;
use crate::image_cache::ImageCache;
use crate::placement::Isolation;
use crate::registry::manifest::{self, Descriptor, Fetched, DOCKER_CONFIG, OCI_CONFIG};
use crate::registry::upload::{push_blob, put_manifest, BlobOutcome};
use crate::registry::RegistryClient;
use anyhow::{bail, Context, Result};
use berth_protocol::reference::Reference;

#[derive(clap::Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Image reference: NAME[:TAG]
    image: String,
}

/// The manifest to push for a cached image: the one it was pulled or loaded
/// with when cached, else one assembled from its record.
fn manifest_for(
    cache: &ImageCache,
    commit: &berth_protocol::ImageCommit,
) -> Result<(String, Vec<u8>, Vec<Descriptor>)> {
    if let Some(md) = &commit.manifest_digest {
        if cache.has_blob(md) {
            let body = cache.read_blob(md)?;
            if let Fetched::Image(m) = manifest::parse(&body, None)? {
                if m.config.digest == commit.config_digest
                    && m.layers.len() == commit.layers.len()
                    && m.layers
                        .iter()
                        .zip(&commit.layers)
                        .all(|(a, b)| a.digest == b.digest)
                {
                    let mut blobs = m.layers.clone();
                    blobs.push(m.config.clone());
                    return Ok((m.media_type, body, blobs));
                }
            }
        }
    }
    let config_size = std::fs::metadata(cache.blob_path(&commit.config_digest)?)
        .with_context(|| {
            format!(
                "the config {} of this image is not in the host cache; pull or load the image again",
                commit.config_digest
            )
        })?
        .len();
    let layers: Vec<Descriptor> = commit
        .layers
        .iter()
        .map(|l| Descriptor {
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
    let config = Descriptor {
        media_type: if docker { DOCKER_CONFIG } else { OCI_CONFIG }.into(),
        digest: commit.config_digest.clone(),
        size: config_size,
        platform: None,
        urls: None,
    };
    let (mt, body) = manifest::synthesize(&config, &layers);
    let mut blobs = layers;
    blobs.push(config);
    Ok((mt, body, blobs))
}

/// Finds an image's host-cache record by any name the agent knows it by
/// (tags live in the agent), falling back to the cache's own tags. An error
/// says whether the image is missing or only its blobs are (images made
/// inside the agent, e.g. by `commit`, never pass through the host cache).
pub fn resolve_local(
    iso: Isolation,
    cache: &ImageCache,
    name: &str,
) -> Result<berth_protocol::ImageCommit> {
    if iso.has_engine() {
        if let Ok(mut c) = connect(iso) {
            // The agent owns tags: a name it does not know is not an image,
            // whatever the cache still remembers.
            return match c.image_inspect(name) {
                Ok(img) => match cache.resolve(&img.id) {
                    Some(c) => Ok(c),
                    // Made in the engine (build, commit): copy it out first.
                    None => cache
                        .import_from_engine(&img, &|| connect(iso))
                        .with_context(|| format!("reading image {name} from the engine")),
                },
                _ => bail!("An image does not exist locally with the tag: {name}"),
            };
        }
    }
    cache
        .resolve(name)
        .with_context(|| format!("An image does not exist locally with the tag: {name}"))
}

pub fn run(iso: Isolation, a: &PushArgs) -> Result<i32> {
    let r = Reference::parse(&a.image)?;
    let Some(tag) = r.tag.clone() else {
        bail!("push by digest is not supported: name a tag (NAME:TAG)");
    };
    let name = Reference {
        digest: None,
        ..r.clone()
    };
    let cache = ImageCache::open()?;
    let commit = resolve_local(iso, &cache, &name.familiar())?;
    let (media_type, body, blobs) = manifest_for(&cache, &commit)?;
    for b in &blobs {
        if !cache.has_blob(&b.digest) {
            bail!(
                "blob {} of {} is not in the host cache; pull or load the image again",
                b.digest,
                name.familiar()
            );
        }
    }
    // A repository of the same registry that has this image's blobs.
    let mount_from = cache
        .repo_digests(&commit.config_digest)
        .iter()
        .filter_map(|rd| Reference::parse(rd).ok())
        .find(|o| o.domain == r.domain && o.path != r.path)
        .map(|o| o.path);
    let mut scopes = vec![format!("repository:{}:pull,push", r.path)];
    if let Some(from) = &mount_from {
        scopes.push(format!("repository:{from}:pull"));
    }
    if !a.quiet {
        println!("The push refers to repository [{}]", r.repository());
    }
    // docker names a layer by its uncompressed digest (the config's
    // diff_ids, in layer order) and says nothing about the config blob.
    let diff_ids: Vec<String> = cache
        .blob_path(&commit.config_digest)
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v["rootfs"]["diff_ids"].as_array().map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(String::from))
                    .collect()
            })
        })
        .unwrap_or_default();
    let layer_name = |digest: &str| -> Option<String> {
        if digest == commit.config_digest {
            return None;
        }
        let i = commit.layers.iter().position(|l| l.digest == digest);
        let id = i
            .and_then(|i| diff_ids.get(i))
            .map_or(digest, |d| d.as_str());
        Some(id.trim_start_matches("sha256:").chars().take(12).collect())
    };
    let client = RegistryClient::connect(&r.domain, scopes)
        .with_context(|| format!("pushing {}", name.familiar()))?;
    // Up to three blobs at a time; the manifest only after all of them.
    let mut unique: Vec<&Descriptor> = Vec::new();
    for b in &blobs {
        if !unique.iter().any(|u| u.digest == b.digest) {
            unique.push(b);
        }
    }
    let queue = std::sync::Mutex::new(unique);
    let failed: std::sync::Mutex<Option<anyhow::Error>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                if failed.lock().unwrap().is_some() {
                    return;
                }
                let Some(b) = queue.lock().unwrap().pop() else {
                    return;
                };
                let out = cache.blob_path(&b.digest).and_then(|path| {
                    Ok(push_blob(
                        &client,
                        &r.path,
                        b,
                        &path,
                        mount_from.as_deref(),
                    )?)
                });
                match out {
                    Ok(out) if !a.quiet => {
                        let Some(short) = layer_name(&b.digest) else {
                            continue;
                        };
                        match out {
                            BlobOutcome::AlreadyExists => println!("{short}: Layer already exists"),
                            BlobOutcome::Mounted(from) => println!("{short}: Mounted from {from}"),
                            BlobOutcome::Pushed => println!("{short}: Pushed"),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failed.lock().unwrap().get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap() {
        return Err(e.context(format!("pushing {}", name.familiar())));
    }
    let digest = put_manifest(&client, &r.path, &tag, &media_type, &body)
        .with_context(|| format!("pushing {}", name.familiar()))?;
    if let Err(e) = (|| -> Result<()> {
        if !cache.has_blob(&digest) {
            cache.put_blob(&digest, body.len() as u64, &mut body.as_slice())?;
        }
        cache.add_repo_digest(
            &commit.config_digest,
            &format!("{}@{digest}", r.repository()),
        )
    })() {
        eprintln!("berth: warning: recording the pushed digest: {e:#}");
    }
    if a.quiet {
        println!("{}", name.familiar());
    } else {
        println!("{tag}: digest: {digest} size: {}", body.len());
    }
    Ok(0)
}
