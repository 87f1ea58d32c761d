//! `POST /build`: docker's classic builder over the socket. The body is
//! the build context as a tar (plain or gzip); it is spooled to a private
//! directory, extracted with every entry checked to stay inside it, and
//! built by the host library's builder (`berth_host::build`), whose output
//! becomes docker's JSON stream (`{"stream": …}`, `{"aux": {"ID": …}}`,
//! an error as `{"errorDetail": …}` with the exit code docker uses).

use crate::archive::tokio_stream_of;
use crate::error::{ApiError, ApiResult};
use crate::routes::{qbool, query};
use crate::server::AppState;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use berth_host::build::context::clean_rel;
use berth_host::build::{build_and_tag, BuildError, BuildOptions};
use berth_protocol::reference::Reference;
use bytes::Bytes;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path};

/// Largest build context accepted.
pub const MAX_CONTEXT: u64 = 8 << 30;

/// Most entries a context may have.
const MAX_ENTRIES: usize = 1_000_000;

/// Why a context was refused.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{0:?} is outside of the build context")]
    Outside(String),
    #[error("symlink {0:?} points outside of the build context ({1:?})")]
    SymlinkOutside(String, String),
    #[error("the build context has more than {MAX_ENTRIES} entries")]
    TooMany,
    #[error("the build context is not a tar archive (plain or gzip): {0}")]
    Archive(#[source] std::io::Error),
}

/// The entry's path as clean relative components, or why not.
fn entry_rel(raw: &Path) -> Result<Option<std::path::PathBuf>, ContextError> {
    let mut out = std::path::PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(ContextError::Outside(raw.display().to_string())),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Whether a symlink at `rel` with `target` stays inside the context
/// (relative, and its `..` never climbs above the root).
fn link_inside(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let parent = rel.parent().unwrap_or(Path::new(""));
    let joined = parent.join(target);
    clean_rel(&joined.to_string_lossy()).is_some()
}

/// Extracts a context tar into `dest` (an empty directory). Paths with
/// `..` or a root, symlinks leaving the context and hard links to
/// outside are refused; devices and fifos are skipped; set-id bits are
/// dropped. The tar crate's `unpack_in` also refuses writing through a
/// symlink to outside `dest`.
pub fn extract_context(src: impl Read, dest: &Path) -> Result<(), ContextError> {
    let mut head = [0u8; 2];
    let mut src = std::io::BufReader::new(src);
    let n = {
        use std::io::BufRead;
        let buf = src.fill_buf().map_err(ContextError::Archive)?;
        let n = buf.len().min(2);
        head[..n].copy_from_slice(&buf[..n]);
        n
    };
    let reader: Box<dyn Read> = if n == 2 && head == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(src))
    } else {
        Box::new(src)
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let mut count = 0usize;
    for e in ar.entries().map_err(ContextError::Archive)? {
        let mut e = e.map_err(ContextError::Archive)?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(ContextError::TooMany);
        }
        let raw = e.path().map_err(ContextError::Archive)?.into_owned();
        let Some(rel) = entry_rel(&raw)? else {
            continue;
        };
        use tar::EntryType as T;
        match e.header().entry_type() {
            T::Symlink => {
                let target = e
                    .link_name()
                    .map_err(ContextError::Archive)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if !link_inside(&rel, &target) {
                    return Err(ContextError::SymlinkOutside(
                        rel.display().to_string(),
                        target.display().to_string(),
                    ));
                }
            }
            T::Link => {
                let target = e
                    .link_name()
                    .map_err(ContextError::Archive)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if entry_rel(&target)?.is_none() {
                    return Err(ContextError::Outside(target.display().to_string()));
                }
            }
            T::Regular | T::Continuous | T::Directory | T::GNULongName | T::XHeader => {}
            // Devices, fifos and the rest have no place in a context.
            _ => continue,
        }
        // Set-id bits never come from a client.
        let mode = e.header().mode().unwrap_or(0o644) & 0o777;
        e.set_mask(0);
        let unpacked = e.unpack_in(dest).map_err(ContextError::Archive)?;
        if !unpacked {
            return Err(ContextError::Outside(raw.display().to_string()));
        }
        let path = dest.join(&rel);
        if let Ok(m) = std::fs::symlink_metadata(&path) {
            if m.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
            }
        }
    }
    Ok(())
}

/// The builder's output as docker's `{"stream": …}` lines.
struct StreamWriter(tokio::sync::mpsc::Sender<Bytes>);

fn json_line(v: serde_json::Value) -> Bytes {
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.extend_from_slice(b"\r\n");
    Bytes::from(b)
}

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0
            .blocking_send(json_line(json!({ "stream": text })))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the query asks for, checked before the context is read.
struct BuildQuery {
    tags: Vec<String>,
    dockerfile: String,
    args: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    target: Option<String>,
    no_cache: bool,
    pull: bool,
    quiet: bool,
}

fn buildkit_refusal() -> ApiError {
    ApiError::bad_request(
        "BuildKit is not supported by berth yet; use the classic builder (DOCKER_BUILDKIT=0)",
    )
}

/// `POST /session`, `POST /grpc`: BuildKit's streams, refused with the
/// reason (rather than a 404 a client reports as a missing page).
pub(crate) async fn buildkit_refused() -> ApiError {
    buildkit_refusal()
}

fn parse_query(raw: Option<&str>) -> ApiResult<BuildQuery> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let q = query(raw.map(String::from));
    if q.get("version").is_some_and(|v| v == "2") {
        return Err(buildkit_refusal());
    }
    if q.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request(
            "only a context sent as the request body can be built (remote contexts are not supported)",
        ));
    }
    let mut tags = Vec::new();
    for (_, t) in pairs.iter().filter(|(k, v)| k == "t" && !v.is_empty()) {
        match Reference::parse(t) {
            Ok(r) if r.digest.is_none() => tags.push(r.to_string()),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid reference format: {t:?}"
                )))
            }
        }
    }
    let mut args = BTreeMap::new();
    if let Some(raw) = q.get("buildargs").filter(|b| !b.is_empty()) {
        let m: BTreeMap<String, Option<String>> = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid buildargs: {e}")))?;
        for (k, v) in m {
            if let Some(v) = v {
                args.insert(k, v);
            }
        }
    }
    let labels = match q.get("labels").filter(|b| !b.is_empty()) {
        Some(raw) => serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid labels: {e}")))?,
        None => BTreeMap::new(),
    };
    // Linux has one isolation, "default" (dockerd's check).
    if let Some(i) = q
        .get("isolation")
        .filter(|i| !i.is_empty() && !i.eq_ignore_ascii_case("default"))
    {
        return Err(ApiError::bad_request(format!(
            "unsupported isolation: {i:?}"
        )));
    }
    let dockerfile = q
        .get("dockerfile")
        .filter(|d| !d.is_empty())
        .cloned()
        .unwrap_or_else(|| "Dockerfile".into());
    let dockerfile = clean_rel(&dockerfile)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "the Dockerfile ({dockerfile}) must be within the build context"
            ))
        })?;
    Ok(BuildQuery {
        tags,
        dockerfile,
        args,
        labels,
        target: q.get("target").filter(|t| !t.is_empty()).cloned(),
        no_cache: qbool(&q, "nocache"),
        pull: qbool(&q, "pull"),
        quiet: qbool(&q, "q"),
    })
}

/// `POST /build`.
pub(crate) async fn build(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    let bq = parse_query(raw.as_deref())?;
    if !st.iso().has_engine() {
        return Err(ApiError::bad_request(
            "builds run in the engine: serve the socket with --isolation shared or native",
        ));
    }
    let dir = berth_host::transfer::load::tempdir().map_err(ApiError::internal)?;
    let upload = dir.join("context.tar");
    let spooled = crate::server::spool_body(
        body,
        &upload,
        MAX_CONTEXT,
        "the context",
        "the build context",
    )
    .await
    .map(|_| ());
    let root = dir.join("context");
    let extracted = match spooled {
        Ok(()) => {
            let (u, r) = (upload.clone(), root.clone());
            tokio::task::spawn_blocking(move || -> ApiResult<()> {
                std::fs::create_dir(&r).map_err(ApiError::internal)?;
                let f = std::fs::File::open(&u).map_err(ApiError::internal)?;
                extract_context(f, &r).map_err(|e| ApiError::bad_request(e.to_string()))?;
                let _ = std::fs::remove_file(&u);
                Ok(())
            })
            .await
            .map_err(ApiError::internal)
            .and_then(|r| r)
        }
        Err(e) => Err(e),
    };
    if let Err(e) = extracted {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    let dockerfile = root.join(&bq.dockerfile);
    if !dockerfile.is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(ApiError::internal(format!(
            "Cannot locate specified Dockerfile: {}",
            bq.dockerfile
        )));
    }
    let iso = st.iso();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::task::spawn_blocking(move || {
        let connect = || iso.connect();
        let progress = crate::images::Progress::from_sender(tx.clone());
        let puller = |name: &str| -> anyhow::Result<i32> {
            let r = Reference::parse(name)?;
            berth_host::registry::pull::pull(
                &r,
                &berth_host::registry::manifest::Platform::host(),
                &progress,
                Some(&connect),
            )?;
            Ok(0)
        };
        let opts = BuildOptions {
            build_args: bq.args,
            labels: bq.labels,
            target: bq.target,
            no_cache: bq.no_cache,
            pull: bq.pull,
            quiet: bq.quiet,
        };
        let out = Box::new(StreamWriter(tx.clone()));
        let result = build_and_tag(
            &connect,
            &puller,
            &root,
            &dockerfile,
            &bq.tags,
            opts,
            Some(out),
        );
        let send = |v| {
            let _ = tx.blocking_send(json_line(v));
        };
        match result {
            Ok(id) => {
                send(json!({"aux": {"ID": id}}));
                if bq.quiet {
                    // The docker CLI prints a quiet build's stream: the id.
                    send(json!({"stream": format!("{id}\n")}));
                } else {
                    let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
                    send(json!({"stream": format!("Successfully built {short}\n")}));
                    for t in &bq.tags {
                        let fam = Reference::parse(t)
                            .map(|r| r.familiar())
                            .unwrap_or(t.clone());
                        send(json!({"stream": format!("Successfully tagged {fam}\n")}));
                    }
                }
            }
            Err(e) => {
                let code = e.downcast_ref::<BuildError>().map_or(1, |b| b.code);
                let msg = format!("{e:#}");
                send(json!({"errorDetail": {"code": code, "message": msg}, "error": msg}));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(tokio_stream_of(rx)),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o4755);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    // Raw names: the tar crate's helpers refuse `..`.
                    let name = h.as_old_mut();
                    name.linkname[..data.len()].copy_from_slice(data.as_bytes());
                    b.append_data(&mut h, path, std::io::empty()).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// A tar whose one entry has `name` written raw into the header.
    fn raw_name_tar(name: &str) -> Vec<u8> {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.push(b'x');
        out.resize(1024, 0);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn a_plain_context_extracts_without_set_id_bits() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("Dockerfile", tar::EntryType::Regular, "FROM scratch\n"),
            ("dir/", tar::EntryType::Directory, ""),
            ("dir/a", tar::EntryType::Regular, "a"),
            ("dir/link", tar::EntryType::Symlink, "a"),
            ("up", tar::EntryType::Symlink, "dir/../dir/a"),
        ]);
        extract_context(&t[..], d.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("dir/link")).unwrap(),
            "a"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("Dockerfile"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }

    #[test]
    fn hostile_contexts_are_refused() {
        for name in ["../evil", "/etc/evil", "a/../../evil"] {
            let d = tempfile::tempdir().unwrap();
            let inner = d.path().join("ctx");
            std::fs::create_dir(&inner).unwrap();
            let err = extract_context(&raw_name_tar(name)[..], &inner).unwrap_err();
            assert!(matches!(err, ContextError::Outside(_)), "{name}: {err}");
            assert!(!d.path().join("evil").exists());
        }
        for target in ["/etc", "../..", "a/../../x"] {
            let d = tempfile::tempdir().unwrap();
            let t = tar_of(&[("l", tar::EntryType::Symlink, target)]);
            let err = extract_context(&t[..], d.path()).unwrap_err();
            assert!(
                matches!(err, ContextError::SymlinkOutside(..)),
                "{target}: {err}"
            );
        }
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("h", tar::EntryType::Link, "../../etc/passwd")]);
        assert!(extract_context(&t[..], d.path()).is_err());
        let d = tempfile::tempdir().unwrap();
        assert!(extract_context(&b"not a tar at all, just some bytes"[..], d.path()).is_err());
    }

    #[test]
    fn query_checks() {
        let q = parse_query(Some("t=a%3Av1&t=b&dockerfile=sub%2FDf&buildargs=%7B%22X%22%3A%221%22%2C%22Y%22%3Anull%7D&q=1")).unwrap();
        assert_eq!(
            q.tags,
            vec![
                "docker.io/library/a:v1".to_string(),
                "docker.io/library/b:latest".into()
            ]
        );
        assert_eq!(q.dockerfile, "sub/Df");
        assert_eq!(q.args.get("X").map(String::as_str), Some("1"));
        assert!(!q.args.contains_key("Y"));
        assert!(q.quiet);
        assert!(parse_query(Some("dockerfile=..%2F..%2Fetc%2Fpasswd")).is_err());
        assert!(parse_query(Some("t=UPPER%3Abad")).is_err());
        assert!(parse_query(Some("buildargs=%5B1%5D")).is_err());
        assert!(parse_query(Some("version=2")).is_err());
        assert!(parse_query(Some("remote=https%3A%2F%2Fx")).is_err());
        // labels: a JSON object of strings; anything else is a 400.
        let q = parse_query(Some("labels=%7B%22k%22%3A%22v%20w%22%7D")).unwrap();
        assert_eq!(q.labels.get("k").map(String::as_str), Some("v w"));
        assert!(parse_query(Some("labels=%5B%22k%22%5D")).is_err());
        assert!(parse_query(Some("labels=%7B%22k%22%3A1%7D")).is_err());
        // Linux's one isolation.
        assert!(parse_query(Some("isolation=default")).is_ok());
        assert!(parse_query(Some("isolation=hyperv")).is_err());
    }
}
