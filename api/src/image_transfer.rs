//! Images in and out through the socket: `GET /images/get` and
//! `/images/{name}/get` (`docker save`), `POST /images/load`
//! (`docker load`), `POST /images/{name}/push` (`docker push`) and
//! `GET /images/{name}/history`, over the host library's
//! [`berth_host::transfer`].

use crate::archive::{tokio_stream_of, ChannelWriter};
use crate::error::{ApiError, ApiResult};
use crate::routes::{qbool, qstr, query, query_all, repo_tag};
use crate::server::AppState;
use axum::body::Body;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use berth_host::registry::auth::Credentials;
use berth_host::registry::upload::BlobOutcome;
use berth_host::transfer::load::{is_gzip, load_archive, spool, tempdir, LoadEvent};
use berth_host::transfer::push::{push as push_image, PushEvent};
use berth_host::transfer::save::{collect, log_saved, write_archive, SaveFormat};
use berth_protocol::reference::Reference;
use bollard_stubs::models;
use bytes::Bytes;
use serde_json::{json, Value};

/// Largest archive `POST /images/load` accepts.
pub const MAX_LOAD_BODY: u64 = 32 << 30;

/// Largest `X-Registry-Auth` header decoded.
const MAX_AUTH_HEADER: usize = 16 << 10;

/// `GET /images/get?names=A&names=B` and `GET /images/{name}/get`: the
/// images as one docker-save archive, streamed as it is written. Every
/// name is resolved before the first byte, so a missing image is a 404.
pub(crate) async fn save(st: AppState, names: Vec<String>) -> ApiResult<Response> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no image names given"));
    }
    let iso = st.iso();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    tokio::task::spawn_blocking(move || {
        let cache = match berth_host::image_cache::ImageCache::open() {
            Ok(c) => c,
            Err(e) => {
                let _ = ready_tx.send(Err(format!("{e:#}")));
                return;
            }
        };
        match collect(iso, &cache, &names) {
            Ok(entries) => {
                let _ = ready_tx.send(Ok(()));
                // A client that goes away ends the write (broken pipe).
                let sink = std::io::BufWriter::with_capacity(256 << 10, ChannelWriter(tx));
                if write_archive(&cache, &entries, SaveFormat::Docker, sink).is_ok() {
                    log_saved(iso, &entries);
                }
            }
            Err(e) => {
                let _ = ready_tx.send(Err(format!("{e:#}")));
            }
        }
    });
    match ready_rx.await {
        Ok(Ok(())) => {}
        // dockerd's words for a name it has no image for.
        Ok(Err(msg)) if msg.contains("does not exist") => {
            return Err(ApiError::not_found("reference does not exist"))
        }
        Ok(Err(msg)) => return Err(ApiError::internal(msg)),
        Err(_) => return Err(ApiError::internal("the save ended early")),
    }
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(tokio_stream_of(rx)),
    )
        .into_response())
}

/// One JSON message line of a progress stream.
fn line(v: &impl serde::Serialize) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.extend_from_slice(b"\r\n");
    Bytes::from(b)
}

fn error_line(msg: &str) -> Bytes {
    line(&json!({"errorDetail": {"message": msg}, "error": msg}))
}

/// `POST /images/load?quiet=`: the body (a docker-save or OCI archive,
/// gzip or not) is spooled to a private file, then loaded; the answer is
/// docker's JSON stream (`Loaded image: …`).
pub(crate) async fn load(
    st: AppState,
    raw_query: Option<String>,
    body: Body,
) -> ApiResult<Response> {
    let quiet = qbool(&query(raw_query), "quiet");
    let dir = tempdir().map_err(ApiError::internal)?;
    let upload = dir.join("upload");
    let spooled =
        crate::server::spool_body(body, &upload, MAX_LOAD_BODY, "the archive", "request body")
            .await
            .and_then(|total| match total {
                0 => Err(ApiError::bad_request("the archive is empty")),
                _ => Ok(()),
            });
    if let Err(e) = spooled {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    let iso = st.iso();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::task::spawn_blocking(move || {
        let result = (|| -> anyhow::Result<()> {
            let path = if is_gzip(&upload)? {
                spool(std::fs::File::open(&upload)?, &dir)?
            } else {
                upload.clone()
            };
            load_archive(iso, &path, &mut |ev| match ev {
                LoadEvent::Layer { digest, size } if !quiet => {
                    let _ = tx.blocking_send(line(&json!({
                        "status": "Loading layer",
                        "progressDetail": {"current": size, "total": size},
                        "id": digest.trim_start_matches("sha256:").chars().take(12).collect::<String>(),
                    })));
                }
                LoadEvent::Layer { .. } => {}
                LoadEvent::Image { id, tags } => {
                    let mut text = String::new();
                    if tags.is_empty() {
                        text.push_str(&format!("Loaded image ID: {id}\n"));
                    }
                    for t in tags {
                        let fam = Reference::parse(t)
                            .map(|r| r.familiar())
                            .unwrap_or(t.clone());
                        text.push_str(&format!("Loaded image: {fam}\n"));
                    }
                    let _ = tx.blocking_send(line(&json!({ "stream": text })));
                }
            })?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(error_line(&format!("{e:#}")));
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(tokio_stream_of(rx)),
    )
        .into_response())
}

/// `POST /images/create?fromSrc=-|URL&repo=&tag=&message=&changes=&platform=`
/// (`docker import`): the body (`fromSrc=-`) or the URL's content, a
/// filesystem tarball, becomes a one-layer image. A body is spooled and
/// imported before the answer, so that a refusal is docker's HTTP error
/// (400 for a bad change or platform, 500 for a bad tarball); a URL's
/// download is reported as it goes (`Downloading from URL`, then
/// `Importing` progress), its later errors in the stream. Both end with
/// `{"status":"sha256:…"}`, which the docker CLI prints.
pub(crate) async fn import(
    st: AppState,
    raw_query: Option<String>,
    body: Body,
) -> ApiResult<Response> {
    use berth_host::transfer::import::{
        config_from_changes, import as import_tarball, open_url, parse_platform, ImportOptions,
    };
    let q = query(raw_query.clone());
    let src = qstr(&q, "fromSrc").unwrap_or_default();
    // What docker's daemon refuses before it imports: a bad reference,
    // change or platform. Answered only once an uploaded body is read: a
    // reply before that can reach the client as a broken pipe on its
    // upload instead of the error (the docker CLI then prints that).
    let checked = (|| -> ApiResult<ImportOptions> {
        let opts = ImportOptions {
            source: src.clone(),
            message: qstr(&q, "message"),
            changes: query_all(raw_query.as_deref(), "changes"),
            reference: repo_tag(&q)?,
            platform: qstr(&q, "platform"),
        };
        config_from_changes(&opts.changes).map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        parse_platform(opts.platform.as_deref())
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        Ok(opts)
    })();
    let iso = st.iso();
    if src == "-" {
        let dir = tempdir().map_err(ApiError::internal)?;
        let upload = dir.join("upload");
        let spooled =
            crate::server::spool_body(body, &upload, MAX_LOAD_BODY, "the tarball", "request body")
                .await
                .and(checked);
        let result = match spooled {
            Ok(opts) => tokio::task::spawn_blocking(move || {
                let mut f = std::fs::File::open(&upload)?;
                import_tarball(iso, &mut f, &opts)
            })
            .await
            .map_err(ApiError::internal)
            .and_then(|r| r.map_err(|e| ApiError::internal(format!("{e:#}")))),
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&dir);
        let commit = result?;
        return Ok((
            [(header::CONTENT_TYPE, "application/json")],
            line(&json!({ "status": commit.config_digest })),
        )
            .into_response());
    }
    drop(body);
    let opts = checked?;
    // docker takes a URL without a scheme as http.
    let url = if src.contains("://") {
        src.clone()
    } else {
        format!("http://{src}")
    };
    // A failed GET is an HTTP error, as docker's (nothing is sent yet).
    let fetch = url.clone();
    let (r, total) = tokio::task::spawn_blocking(move || open_url(&fetch))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("{e:#}")))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::task::spawn_blocking(move || {
        let _ = tx.blocking_send(line(
            &json!({ "status": format!("Downloading from {url}") }),
        ));
        let result = (|| -> anyhow::Result<String> {
            let mut r = ProgressReader {
                inner: r,
                done: 0,
                total,
                reported: 0,
                tx: &tx,
            };
            Ok(import_tarball(iso, &mut r, &opts)?.config_digest)
        })();
        let _ = match result {
            Ok(id) => tx.blocking_send(line(&json!({ "status": id }))),
            Err(e) => tx.blocking_send(error_line(&format!("{e:#}"))),
        };
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(tokio_stream_of(rx)),
    )
        .into_response())
}

/// A download's `Importing` progress, at most one line a MiB.
struct ProgressReader<'a> {
    inner: Box<dyn std::io::Read + Send>,
    done: u64,
    total: Option<u64>,
    reported: u64,
    tx: &'a tokio::sync::mpsc::Sender<Bytes>,
}

impl std::io::Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.reported >= 1 << 20 || (n == 0 && self.done > self.reported) {
            self.reported = self.done;
            let mut detail = json!({ "current": self.done });
            if let Some(t) = self.total {
                detail["total"] = json!(t);
            }
            let _ = self.tx.blocking_send(line(&json!({
                "status": "Importing",
                "progressDetail": detail,
            })));
        }
        Ok(n)
    }
}

/// The credentials of an `X-Registry-Auth` header (base64url JSON, padded
/// or not, as the docker CLI and SDKs send it); `None` when it names no
/// user, so that the saved credentials (`berth login`) apply.
pub(crate) fn registry_auth(headers: &HeaderMap) -> ApiResult<Option<Credentials>> {
    let Some(v) = headers.get("x-registry-auth") else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request("invalid X-Registry-Auth header");
    let raw = v.to_str().map_err(|_| bad())?.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() > MAX_AUTH_HEADER {
        return Err(bad());
    }
    let trimmed = raw.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let username = field("username");
    if username.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username,
        password: field("password"),
    }))
}

/// `POST /images/{name}/push?tag=`: the push's progress as docker's JSON
/// stream; an error ends it as docker's error message.
pub(crate) async fn push(
    st: AppState,
    name: String,
    raw_query: Option<String>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let q = query(raw_query);
    let creds = registry_auth(headers)?;
    let r = Reference::parse(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let tag = q
        .get("tag")
        .filter(|t| !t.is_empty())
        .cloned()
        .or(r.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let image = format!(
        "{}:{tag}",
        Reference {
            tag: None,
            digest: None,
            ..r
        }
    );
    let wanted = Reference::parse(&image).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let local = push_source(&st, &wanted).await?;
    let iso = st.iso();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::task::spawn_blocking(move || {
        let send = |b: Bytes| {
            let _ = tx.blocking_send(b);
        };
        let refers = |repository: &str| {
            line(&json!({"status": format!("The push refers to repository [{repository}]")}))
        };
        // dockerd names the repository before it finds the image missing.
        let layers = match local {
            Ok(layers) => layers,
            Err(missing) => {
                send(refers(&wanted.repository()));
                send(error_line(&missing));
                return;
            }
        };
        let out = push_image(iso, &image, creds, &|ev| match ev {
            PushEvent::Start { repository } => {
                send(refers(repository));
                for id in &layers {
                    send(line(
                        &json!({"status": "Preparing", "progressDetail": {}, "id": id}),
                    ));
                }
            }
            PushEvent::Layer { id, outcome } => {
                let status = match outcome {
                    BlobOutcome::AlreadyExists => "Layer already exists".to_string(),
                    BlobOutcome::Mounted(from) => format!("Mounted from {from}"),
                    BlobOutcome::Pushed => "Pushed".to_string(),
                };
                send(line(
                    &json!({"status": status, "progressDetail": {}, "id": id}),
                ));
            }
        });
        match out {
            Ok(p) => {
                send(line(&json!({
                    "status": format!("{}: digest: {} size: {}", p.tag, p.digest, p.size)
                })));
                send(line(&json!({
                    "progressDetail": {},
                    "aux": {"Tag": p.tag, "Digest": p.digest, "Size": p.size}
                })));
            }
            Err(e) => send(error_line(&format!("{e:#}"))),
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(tokio_stream_of(rx)),
    )
        .into_response())
}

/// The image a push sends: its layers as docker names them in the push's
/// progress (the uncompressed digests' first 12 hex digits, top layer
/// first, as dockerd lists them "Preparing"), or docker's error for a
/// name the engine has no image for.
async fn push_source(st: &AppState, wanted: &Reference) -> ApiResult<Result<Vec<String>, String>> {
    let name = wanted.familiar();
    let found = st
        .engine(move |e| match e.image_inspect(&name) {
            Ok(img) => Ok(Ok(img)),
            Err(err) if err.kind() == Some(berth_protocol::ErrorKind::NotFound) => {
                Ok(Err(e.image_list()?))
            }
            Err(err) => Err(err.into()),
        })
        .await?;
    let img = match found {
        Ok(img) => img,
        Err(list) => {
            let repo_known = list
                .iter()
                .flat_map(|i| &i.tags)
                .filter_map(|t| Reference::parse(t).ok())
                .any(|t| t.domain == wanted.domain && t.path == wanted.path);
            return Ok(Err(if repo_known {
                format!("tag does not exist: {}", wanted.familiar())
            } else {
                format!(
                    "An image does not exist locally with the tag: {}",
                    wanted.familiar_name()
                )
            }));
        }
    };
    let mut ids: Vec<String> = Vec::new();
    let diff_ids = img.config["rootfs"]["diff_ids"].as_array().cloned();
    for d in diff_ids.unwrap_or_default().iter().rev() {
        let id: String = d
            .as_str()
            .unwrap_or("")
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect();
        if !id.is_empty() && !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(Ok(ids))
}

/// `GET /images/{name}/history`: newest first, as `docker history` reads it.
pub(crate) async fn history(st: AppState, name: String) -> ApiResult<Response> {
    let img = st.engine(move |e| Ok(e.image_inspect(&name)?)).await?;
    let rows = tokio::task::spawn_blocking(move || {
        let tags: Vec<String> = img
            .tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .map(|r| r.familiar())
            .collect();
        berth_host::inspect::image_history(&img)
            .into_iter()
            .enumerate()
            .map(|(i, h)| models::HistoryResponseItem {
                id: if i == 0 {
                    img.id.clone()
                } else {
                    "<missing>".into()
                },
                created: chrono::DateTime::parse_from_rfc3339(&h.created)
                    .map_or(0, |d| d.timestamp()),
                created_by: h.created_by,
                tags: if i == 0 { tags.clone() } else { Vec::new() },
                size: h.size as i64,
                comment: h.comment,
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(rows).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-registry-auth", v.parse().unwrap());
        h
    }

    #[test]
    fn registry_auth_decodes_what_clients_send() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE.encode(s);
        // The docker CLI sends `{}` when it has no credentials.
        assert!(registry_auth(&auth_headers(&b64("{}"))).unwrap().is_none());
        assert!(registry_auth(&HeaderMap::new()).unwrap().is_none());
        let c = registry_auth(&auth_headers(&b64(
            r#"{"username":"u","password":"p?>","serveraddress":"r"}"#,
        )))
        .unwrap()
        .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p?>"));
        // Unpadded and standard-alphabet forms are accepted too.
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(r#"{"username":"a","password":"b"}"#);
        assert!(registry_auth(&auth_headers(&unpadded)).unwrap().is_some());
        // Hostile values are a 400, not a panic.
        for bad in ["!!!!", &b64("not json"), &"A".repeat(MAX_AUTH_HEADER + 4)] {
            assert!(registry_auth(&auth_headers(bad)).is_err(), "{bad:.20}");
        }
    }

    #[test]
    fn names_come_from_every_repeated_key() {
        use crate::routes::query_all;
        assert_eq!(
            query_all(Some("names=a&names=b%2Fc%3Av1&other=x&names="), "names"),
            vec!["a".to_string(), "b/c:v1".into()]
        );
        assert!(query_all(None, "names").is_empty());
    }
}
