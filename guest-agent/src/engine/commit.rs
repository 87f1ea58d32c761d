//! `commit`: turns a container's writable layer (the overlay upper dir)
//! into an image layer — overlay whiteouts become `.wh.` entries, opaque
//! directories `.wh..wh..opq` — and stores a new image whose config is the
//! container's configuration with the requested changes applied.

use super::files::ContainerPaths;
use super::fsutil::overlay_opaque as opaque;
use super::Engine;
use crate::engine::Error;
use berth_protocol::reference::Reference;
use berth_protocol::{CommitOptions, ContainerStatus, DeriveOptions, ImageCommit, LayerRef};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Mount points the engine creates in every container; not the user's
/// changes when they are still empty.
const ENGINE_FILES: &[&str] = &[
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
    "sbin/docker-init",
];

/// A writer that hashes what passes through.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn header_for(m: &std::fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(m.uid() as u64);
    h.set_gid(m.gid() as u64);
    h.set_mtime(m.mtime().max(0) as u64);
    h
}

/// Writes the upper dir as a layer tar; returns (sha256 hex, size, number
/// of entries).
pub fn diff_tar(upper: &Path, out: &Path) -> std::io::Result<(String, u64, usize)> {
    let f = File::create(out)?;
    let mut w = Hashing {
        inner: BufWriter::new(f),
        hash: Sha256::new(),
        len: 0,
    };
    let mut entries = 0usize;
    {
        let mut b = tar::Builder::new(&mut w);
        b.follow_symlinks(false);
        let mut links: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
        if upper.is_dir() {
            walk(&mut b, upper, Path::new(""), &mut links, &mut entries)?;
        }
        b.finish()?;
    }
    w.flush()?;
    let hex = hex::encode(w.hash.finalize());
    Ok((hex, w.len, entries))
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
    count: &mut usize,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = rel.join(e.file_name());
        let m = std::fs::symlink_metadata(&path)?;
        let ft = m.file_type();
        if ft.is_char_device() && m.rdev() == 0 {
            // An overlay whiteout: the file was deleted.
            *count += 1;
            let wh = rel.join(format!(".wh.{}", e.file_name().to_string_lossy()));
            let mut h = header_for(&m);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(0);
            b.append_data(&mut h, wh, std::io::empty())?;
            continue;
        }
        if ft.is_file()
            && m.len() == 0
            && ENGINE_FILES.iter().any(|f| Path::new(f) == name.as_path())
        {
            continue;
        }
        *count += 1;
        let mut h = header_for(&m);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, &name, std::io::empty())?;
            if opaque(&path) {
                let mut h = header_for(&m);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, name.join(".wh..wh..opq"), std::io::empty())?;
            }
            walk(b, &path, &name, links, count)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path)?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, &name, target)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                let key = (m.dev(), m.ino());
                if let Some(first) = links.get(&key) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &name, first)?;
                    continue;
                }
                links.insert(key, name.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            b.append_data(&mut h, &name, File::open(&path)?)?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_fifo() {
                tar::EntryType::Fifo
            } else if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let major = (m.rdev() >> 8) & 0xfff;
            let minor = (m.rdev() & 0xff) | ((m.rdev() >> 12) & 0xfff00);
            h.set_device_major(major as u32)?;
            h.set_device_minor(minor as u32)?;
            h.set_size(0);
            b.append_data(&mut h, &name, std::io::empty())?;
        }
        // Sockets are not part of a layer.
    }
    Ok(())
}

/// Splits a `CMD`/`ENTRYPOINT` value: JSON array or shell form.
fn exec_form(v: &str) -> Value {
    let t = v.trim();
    if t.starts_with('[') {
        if let Ok(a) = serde_json::from_str::<Vec<String>>(t) {
            return json!(a);
        }
    }
    json!(["/bin/sh", "-c", t])
}

/// Applies `--change` instructions to an image's `config` object.
pub fn apply_changes(cfg: &mut Value, changes: &[String]) -> Result<(), String> {
    if !cfg.is_object() {
        *cfg = json!({});
    }
    for ch in changes {
        let ch = ch.trim();
        let (instr, rest) = ch
            .split_once(char::is_whitespace)
            .map(|(a, b)| (a, b.trim()))
            .unwrap_or((ch, ""));
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => cfg["Cmd"] = exec_form(rest),
            "ENTRYPOINT" => cfg["Entrypoint"] = exec_form(rest),
            "WORKDIR" => cfg["WorkingDir"] = json!(rest),
            "USER" => cfg["User"] = json!(rest),
            "STOPSIGNAL" => cfg["StopSignal"] = json!(rest),
            "ENV" => {
                let (k, v) = rest
                    .split_once('=')
                    .or_else(|| rest.split_once(char::is_whitespace))
                    .ok_or_else(|| format!("ENV needs a value: {ch:?}"))?;
                let k = k.trim();
                if k.is_empty() {
                    return Err(format!("ENV needs a name: {ch:?}"));
                }
                let mut env: Vec<String> = cfg["Env"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                env.retain(|e| e.split('=').next() != Some(k));
                env.push(format!("{k}={}", v.trim().trim_matches('"')));
                cfg["Env"] = json!(env);
            }
            "LABEL" => {
                let (k, v) = rest
                    .split_once('=')
                    .ok_or_else(|| format!("LABEL needs key=value: {ch:?}"))?;
                if !cfg["Labels"].is_object() {
                    cfg["Labels"] = json!({});
                }
                cfg["Labels"][k.trim().trim_matches('"')] = json!(v.trim().trim_matches('"'));
            }
            "EXPOSE" => {
                if !cfg["ExposedPorts"].is_object() {
                    cfg["ExposedPorts"] = json!({});
                }
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    cfg["ExposedPorts"][p] = json!({});
                }
            }
            "" => {}
            other => return Err(format!("{other} is not a valid change command")),
        }
    }
    Ok(())
}

pub fn commit(engine: &Engine, o: &CommitOptions) -> Result<berth_protocol::ImageSummary, Error> {
    let c = &engine.containers;
    let rec = c.resolve(&o.id)?;
    let (_, mut config) = engine
        .images
        .read_config(&rec.image_id)
        .map_err(Error::unexpected)?;

    // The new config: the container's settings, then the changes.
    let mut run = config.get("config").cloned().unwrap_or_else(|| json!({}));
    let env: Vec<&String> = rec
        .env
        .iter()
        .filter(|e| !e.starts_with("HOSTNAME="))
        .collect();
    run["Env"] = json!(env);
    if let Some(cmd) = &rec.config.cmd {
        run["Cmd"] = json!(cmd);
    }
    if let Some(ep) = &rec.config.entrypoint {
        run["Entrypoint"] = if ep.is_empty() {
            Value::Null
        } else {
            json!(ep)
        };
    }
    if let Some(w) = rec.config.workdir.as_ref().filter(|w| !w.is_empty()) {
        run["WorkingDir"] = json!(w);
    }
    if let Some(u) = rec.config.user.as_ref().filter(|u| !u.is_empty()) {
        run["User"] = json!(u);
    }
    if !rec.config.labels.is_empty() {
        if !run["Labels"].is_object() {
            run["Labels"] = json!({});
        }
        for (k, v) in &rec.config.labels {
            run["Labels"][k] = json!(v);
        }
    }
    // The container's healthcheck (image's merged with its flags).
    if let Some(h) = &rec.config.healthcheck {
        run["Healthcheck"] = json!(h);
    }
    apply_changes(&mut run, &o.changes).map_err(Error::invalid)?;
    config["config"] = run;
    if let Some(a) = &o.author {
        config["author"] = json!(a);
    }
    let mut hist = json!({"created_by": rec.args.join(" ")});
    if let Some(m) = &o.message {
        hist["comment"] = json!(m);
    }
    if let Some(a) = &o.author {
        hist["author"] = json!(a);
    }
    let was_running = c.status(&rec.id).0 == ContainerStatus::Running;
    let paused_here = o.pause && was_running && c.pause(&rec.id).is_ok();
    let result = store_image(
        engine,
        NewImage {
            parent: Some(&rec.image_id),
            config,
            container: Some(&rec.id),
            skip_empty_layer: false,
            history: Some(hist),
            tags: o.tag.iter().cloned().collect(),
        },
    );
    if let Ok(img) = &result {
        // docker's attributes: the comment, the new image and its name.
        let image_ref = o
            .tag
            .as_deref()
            .and_then(|t| Reference::parse(t).ok())
            .map(|r| r.familiar())
            .unwrap_or_default();
        super::events::container(
            engine.layout().root(),
            &rec,
            "commit",
            &[
                ("comment", o.message.clone().unwrap_or_default()),
                ("imageID", img.id.clone()),
                ("imageRef", image_ref),
            ],
        );
    }
    if paused_here {
        let _ = c.unpause(&rec.id);
    }
    result
}

/// What container `key` changed in its filesystem (`diff`).
pub fn changes(engine: &Engine, key: &str) -> Result<Vec<berth_protocol::FileChange>, Error> {
    let rec = engine.containers.resolve(key)?;
    let lowers = engine
        .images
        .lowerdirs(&rec.image_id)
        .map_err(Error::unexpected)?;
    let paths = ContainerPaths::new(engine.layout(), &rec.id);
    if !paths.upper.exists() {
        // Never started: nothing changed yet.
        return Ok(Vec::new());
    }
    super::changes::changes(&paths.upper, &lowers, ENGINE_FILES).map_err(Error::io(format!(
        "reading the changes of container {}",
        rec.name
    )))
}

/// A build step's image (`ImageDerive`).
pub fn derive(engine: &Engine, o: &DeriveOptions) -> Result<berth_protocol::ImageSummary, Error> {
    if let Some(k) = &o.cache_key {
        cache_path(engine, k)?;
    }
    if !o.config.is_object() {
        return Err(Error::invalid(
            "the image's run configuration must be a JSON object",
        ));
    }
    let parent = match &o.parent {
        Some(p) => Some(engine.images.resolve(p).map_err(Error::missing_because)?),
        None => None,
    };
    let container = match &o.container {
        Some(k) => {
            let rec = engine.containers.resolve(k)?;
            if parent.as_deref() != Some(rec.image_id.as_str()) {
                return Err(Error::invalid(format!(
                    "container {k} was not created from the parent image"
                )));
            }
            Some(rec.id)
        }
        None => None,
    };
    let mut config = match &parent {
        Some(p) => engine.images.read_config(p).map_err(Error::unexpected)?.1,
        None => json!({
            "architecture": oci_arch(),
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }),
    };
    config["config"] = o.config.clone();
    if let Some(a) = &o.author {
        config["author"] = json!(a);
    }
    let mut hist = json!({"created_by": o.created_by});
    if let Some(m) = &o.comment {
        hist["comment"] = json!(m);
    }
    if container.is_none() {
        hist["empty_layer"] = json!(true);
    }
    // The empty image a `FROM scratch` build starts from has no history.
    let hist = (container.is_some() || !o.created_by.is_empty()).then_some(hist);
    let summary = store_image(
        engine,
        NewImage {
            parent: parent.as_deref(),
            config,
            container: container.as_deref(),
            skip_empty_layer: o.skip_empty_layer,
            history: hist,
            tags: o.tags.clone(),
        },
    )?;
    if let Some(k) = &o.cache_key {
        let path = cache_path(engine, k)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::unexpected)?;
        }
        // A cache entry lost in a crash is only a miss: no fsync (each costs
        // a journal commit, seconds in an emulated guest).
        let tmp = path.with_extension(format!("tmp-{}", crate::layout::random_hex(4)));
        std::fs::write(&tmp, summary.id.as_bytes()).map_err(Error::unexpected)?;
        std::fs::rename(&tmp, &path).map_err(Error::unexpected)?;
    }
    Ok(summary)
}

/// The image a build step with this cache key made, if it still exists.
pub fn cache_get(engine: &Engine, key: &str) -> Result<berth_protocol::ImageSummary, Error> {
    let path = cache_path(engine, key)?;
    let miss = || Error::missing(format!("no cached build step {key}"));
    let id = std::fs::read_to_string(&path).map_err(|_| miss())?;
    engine.images.summary(id.trim()).map_err(|_| miss())
}

fn cache_path(engine: &Engine, key: &str) -> Result<std::path::PathBuf, Error> {
    if key.len() != 64 || !key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::invalid(format!("invalid build cache key {key:?}")));
    }
    Ok(engine.layout().root().join("build-cache").join(key))
}

/// The OCI architecture name of this machine.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// What [`store_image`] makes.
struct NewImage<'a> {
    parent: Option<&'a str>,
    /// The full image config; `rootfs`, `history` and `created` are
    /// completed here.
    config: Value,
    /// Container whose upper directory becomes the new top layer.
    container: Option<&'a str>,
    skip_empty_layer: bool,
    /// History entry of the new image (`created` is filled in).
    history: Option<Value>,
    tags: Vec<String>,
}

/// Stores the layer (if any) and config of a new image and records it.
fn store_image(engine: &Engine, n: NewImage<'_>) -> Result<berth_protocol::ImageSummary, Error> {
    let NewImage {
        parent,
        mut config,
        container,
        skip_empty_layer,
        mut history,
        tags,
    } = n;
    let base_layers = match parent {
        Some(p) => {
            engine
                .images
                .record(p)
                .map_err(Error::missing_because)?
                .layers
        }
        None => Vec::new(),
    };
    let tmp = engine
        .layout()
        .temp_dir("commit")
        .map_err(Error::unexpected)?;
    let result = (|| {
        let store_blob = |digest: &str, size: u64, path: &Path| -> Result<(), Error> {
            if engine.images.has_blob(digest) {
                return Ok(());
            }
            let mut f = File::open(path).map_err(Error::unexpected)?;
            engine
                .images
                .put_blob(digest, size, &mut f)
                .map_err(Error::unexpected)
        };
        let mut layers: Vec<LayerRef> = base_layers
            .iter()
            .map(|l| LayerRef {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: 0,
            })
            .collect();
        if !config["rootfs"].is_object() {
            config["rootfs"] = json!({"type": "layers", "diff_ids": []});
        }
        if !config["rootfs"]["diff_ids"].is_array() {
            config["rootfs"]["diff_ids"] = json!([]);
        }
        if let Some(id) = container {
            let paths = ContainerPaths::new(engine.layout(), id);
            let tar_path = tmp.join("layer.tar");
            let (hex, size, entries) =
                diff_tar(&paths.upper, &tar_path).map_err(Error::failed("commit"))?;
            if entries > 0 || !skip_empty_layer {
                let digest = format!("sha256:{hex}");
                store_blob(&digest, size, &tar_path)?;
                if let Some(d) = config["rootfs"]["diff_ids"].as_array_mut() {
                    d.push(json!(digest));
                }
                layers.push(LayerRef {
                    digest,
                    media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                    size,
                });
            } else if let Some(h) = history.as_mut() {
                h["empty_layer"] = json!(true);
            }
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        config["created"] = json!(now);
        if let Some(mut history) = history {
            history["created"] = json!(now);
            match config["history"].as_array_mut() {
                Some(h) => h.push(history),
                None => config["history"] = json!([history]),
            }
        }
        let bytes = serde_json::to_vec(&config).map_err(Error::unexpected)?;
        let config_digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let cfg_path = tmp.join("config.json");
        std::fs::write(&cfg_path, &bytes).map_err(Error::unexpected)?;
        store_blob(&config_digest, bytes.len() as u64, &cfg_path)?;
        engine
            .images
            .commit_derived(
                &ImageCommit {
                    config_digest,
                    layers,
                    tags,
                    manifest_digest: None,
                    origin: None,
                },
                parent,
            )
            .map_err(Error::malformed)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    // docker logs `tag` for each name a commit or build gives its image.
    if let Ok(img) = &result {
        for t in &img.tags {
            let name = Reference::parse(t).map_or_else(|_| t.clone(), |r| r.familiar());
            crate::events::image(
                engine.layout().root(),
                "tag",
                &img.id,
                &name,
                engine.images.labels(&img.id),
            );
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes() {
        let mut c = json!({"Env": ["A=1", "PATH=/bin"]});
        apply_changes(
            &mut c,
            &[
                "CMD [\"sh\", \"-c\", \"echo hi\"]".into(),
                "ENTRYPOINT top -b".into(),
                "ENV A=2".into(),
                "ENV B hello".into(),
                "LABEL x=y".into(),
                "EXPOSE 80 53/udp".into(),
                "WORKDIR /srv".into(),
            ],
        )
        .unwrap();
        assert_eq!(c["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "top -b"]));
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=2", "B=hello"]));
        assert_eq!(c["Labels"]["x"], "y");
        assert!(c["ExposedPorts"]["53/udp"].is_object());
        assert_eq!(c["WorkingDir"], "/srv");
        assert!(apply_changes(&mut c, &["RUN rm -rf /".into()]).is_err());
    }

    #[test]
    fn whiteouts_and_opaque_dirs_become_tar_markers() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path().join("upper");
        std::fs::create_dir_all(up.join("etc")).unwrap();
        std::fs::write(up.join("etc/hostname"), b"").unwrap();
        std::fs::write(up.join("etc/new"), b"data").unwrap();
        let gone = std::ffi::CString::new(up.join("etc/gone").to_str().unwrap()).unwrap();
        // SAFETY: mknod with a valid path; makes a 0:0 char device (whiteout).
        let rc = unsafe { libc::mknod(gone.as_ptr(), libc::S_IFCHR | 0o644, 0) };
        let out = d.path().join("l.tar");
        diff_tar(&up, &out).unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(File::open(&out).unwrap())
            .entries()
            .unwrap()
        {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert!(names.contains(&"etc/new".to_string()), "{names:?}");
        assert!(!names.contains(&"etc/hostname".to_string()), "{names:?}");
        if rc == 0 {
            assert!(names.contains(&"etc/.wh.gone".to_string()), "{names:?}");
        }
    }
}
