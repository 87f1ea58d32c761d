//! Uploading an image from the host cache to a registry.

use crate::image_cache::ImageCache;
use crate::placement::Isolation;
use crate::registry::auth::Credentials;
use crate::registry::manifest::Descriptor;
use crate::registry::upload::{push_blob, put_manifest, BlobOutcome};
use crate::registry::RegistryClient;
use anyhow::{bail, Context, Result};
use berth_protocol::reference::Reference;

/// What a push reports as it goes.
pub enum PushEvent<'a> {
    /// The image was found and the upload starts (docker's "The push refers
    /// to repository [...]").
    Start { repository: &'a str },
    /// A layer reached the registry; `id` is docker's 12-character name of
    /// it (its uncompressed digest).
    Layer {
        id: &'a str,
        outcome: &'a BlobOutcome,
    },
}

/// A finished push.
pub struct Pushed {
    /// The familiar name pushed (`NAME:TAG`).
    pub name: String,
    pub tag: String,
    /// The manifest's digest and size.
    pub digest: String,
    pub size: usize,
}

/// Pushes `image` (`NAME:TAG`). `creds` overrides the saved credentials
/// for the registry (the Engine API's `X-Registry-Auth`); `None` uses the
/// saved ones (`berth login`).
pub fn push(
    iso: Isolation,
    image: &str,
    creds: Option<Credentials>,
    on: &(dyn Fn(PushEvent<'_>) + Sync),
) -> Result<Pushed> {
    let r = Reference::parse(image)?;
    let Some(tag) = r.tag.clone() else {
        bail!("push by digest is not supported: name a tag (NAME:TAG)");
    };
    let name = Reference {
        digest: None,
        ..r.clone()
    };
    let cache = ImageCache::open()?;
    let commit = super::resolve_local(iso, &cache, &name.familiar())?;
    let (media_type, body, blobs) = super::manifest_for(&cache, &commit)?;
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
    on(PushEvent::Start {
        repository: &r.repository(),
    });
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
    let client = match creds {
        Some(c) => RegistryClient::connect_with(&r.domain, scopes, Some(c)),
        None => RegistryClient::connect(&r.domain, scopes),
    }
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
                    Ok(out) => {
                        if let Some(id) = layer_name(&b.digest) {
                            on(PushEvent::Layer {
                                id: &id,
                                outcome: &out,
                            });
                        }
                    }
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
    super::log_image_event(
        iso,
        berth_protocol::ImageEventAction::Push,
        &name.familiar(),
        &name.familiar_name(),
    );
    Ok(Pushed {
        name: name.familiar(),
        tag,
        digest,
        size: body.len(),
    })
}
