//! Image endpoints: list, pull (`images/create`), inspect, tag, remove;
//! save, load, push and history are in `image_transfer`.

use crate::error::{ApiError, ApiResult};
use crate::routes::{qbool, qstr, query, query_all, repo_tag};
use crate::server::AppState;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_host::image_cache::ImageCache;
use berth_protocol::reference::Reference;
use berth_protocol::ImageSummary;
use bollard_stubs::models;
use bytes::Bytes;
use std::collections::HashMap;

fn familiar_tags(img: &ImageSummary) -> Vec<String> {
    img.tags
        .iter()
        .filter_map(|t| Reference::parse(t).ok())
        .map(|r| r.familiar())
        .collect()
}

fn summary_json(img: &ImageSummary) -> models::ImageSummary {
    let labels: HashMap<String, String> = img
        .config
        .pointer("/config/Labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    let created = img
        .created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map_or(0, |d| d.timestamp());
    let mut tags = familiar_tags(img);
    if tags.is_empty() {
        tags.push("<none>:<none>".into());
    }
    models::ImageSummary {
        id: img.id.clone(),
        parent_id: img.parent.clone().unwrap_or_default(),
        repo_tags: tags,
        repo_digests: berth_host::inspect::repo_digests(&img.id),
        created,
        size: img.size as i64,
        shared_size: -1,
        virtual_size: Some(img.size as i64),
        labels,
        containers: -1,
        manifests: None,
    }
}

pub(crate) async fn list(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Vec<models::ImageSummary>>> {
    let q = query(q);
    let f = crate::filters::parse(q.get("filters").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    crate::filters::check_keys(&f, &["dangling", "reference", "label", "before", "since"])
        .map_err(ApiError::bad_request)?;
    let mut list = st.engine(|e| Ok(e.image_list()?)).await?;
    list.retain(|img| {
        f.iter().filter(|(_, v)| !v.is_empty()).all(|(k, vals)| {
            crate::filters::key_matches(k, vals, |v| match k.as_str() {
                "dangling" => (v == "true") == img.tags.is_empty(),
                "reference" => familiar_tags(img).iter().any(|t| {
                    t == v || t.split(':').next() == Some(v.as_str()) || t.starts_with(v.as_str())
                }),
                "label" => {
                    let labels = img.config.pointer("/config/Labels");
                    match v.split_once('=') {
                        Some((lk, lv)) => labels
                            .and_then(|l| l.get(lk))
                            .and_then(|x| x.as_str())
                            .is_some_and(|x| x == lv),
                        None => labels.and_then(|l| l.get(v.as_str())).is_some(),
                    }
                }
                _ => true,
            })
        })
    });
    Ok(Json(list.iter().map(summary_json).collect()))
}

/// `GET /images/search?term=&limit=&filters=`: see
/// `berth_host::registry::search` (a registry's catalog for a term that
/// names one, Docker Hub's search for a bare term).
pub(crate) async fn search(RawQuery(raw): RawQuery) -> ApiResult<Response> {
    use berth_host::registry::search::{SearchFilters, DEFAULT_LIMIT, MAX_LIMIT};
    let q = query(raw);
    let term = q.get("term").cloned().unwrap_or_default();
    let limit = match crate::routes::qint(&q, "limit")? {
        None | Some(0) => DEFAULT_LIMIT,
        Some(n) if n < 0 || n as usize > MAX_LIMIT => {
            return Err(ApiError::bad_request(format!(
                "limit {n} is outside the range of [1, 100]"
            )))
        }
        Some(n) => n as usize,
    };
    let f = crate::filters::parse(q.get("filters").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let mut filters = SearchFilters::default();
    for (k, vals) in &f {
        for v in vals {
            if !filters.add(k, v) {
                return Err(ApiError::bad_request(format!("invalid filter '{k}={v}'")));
            }
        }
    }
    let hits =
        tokio::task::spawn_blocking(move || berth_host::registry::search::search(&term, limit))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| match e {
                berth_host::registry::RegistryError::Invalid(m)
                | berth_host::registry::RegistryError::Address(m) => ApiError::bad_request(m),
                berth_host::registry::RegistryError::Auth(m) => {
                    ApiError::new(StatusCode::UNAUTHORIZED, m)
                }
                other => ApiError::internal(other.to_string()),
            })?;
    let items: Vec<models::ImageSearchResponseItem> = hits
        .into_iter()
        .filter(|h| filters.keeps(h))
        .map(|h| models::ImageSearchResponseItem {
            description: Some(h.description),
            is_official: Some(h.is_official),
            is_automated: Some(h.is_automated),
            name: Some(h.name),
            star_count: Some(h.star_count as i64),
        })
        .collect();
    Ok(Json(items).into_response())
}

/// `GET /images/{name}/json` (names may hold slashes).
pub(crate) async fn by_name_get(
    State(st): State<AppState>,
    Path(rest): Path<String>,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/history") {
        return crate::image_transfer::history(st, name.to_string()).await;
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return crate::image_transfer::save(st, vec![name.to_string()]).await;
    }
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError::not_found("page not found"));
    };
    let name = name.to_string();
    let img = st.engine(move |e| Ok(e.image_inspect(&name)?)).await?;
    let mut out = berth_host::inspect::image_json(&img);
    add_container_config(&mut out, &img.config);
    Ok(Json(out).into_response())
}

/// The `Container` and `ContainerConfig` of an image (the image config's
/// `container` and `container_config`, an empty config where it has
/// none). dockerd answers them below API 1.45 only, but docker-compose
/// 1.29 negotiates the newest version and reads `ContainerConfig.Volumes`
/// of the old container's image whenever it recreates one: without them
/// it fails with `KeyError: 'ContainerConfig'` (as it does against
/// dockerd 25 and later). Answered at every version: clients ignore a
/// field they do not know.
fn add_container_config(out: &mut serde_json::Value, config: &serde_json::Value) {
    let empty = serde_json::json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null,
        "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": null,
    });
    let cc = config
        .get("container_config")
        .filter(|c| c.is_object())
        .cloned()
        .unwrap_or(empty);
    let container = config
        .get("container")
        .and_then(|c| c.as_str())
        .unwrap_or("");
    if let Some(o) = out.as_object_mut() {
        o.insert("Container".into(), container.into());
        o.insert("ContainerConfig".into(), cc);
    }
}

/// `POST /images/{name}/tag?repo=&tag=` and `POST /images/{name}/push`.
pub(crate) async fn by_name_post(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/push") {
        return crate::image_transfer::push(st, name.to_string(), q, &headers).await;
    }
    let q = query(q);
    let Some(source) = rest.strip_suffix("/tag") else {
        return Err(ApiError::not_found("page not found"));
    };
    let repo = q
        .get("repo")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("repository name must have at least one component"))?;
    let target = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.clone(),
    };
    Reference::parse(&target).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let source = source.to_string();
    st.engine(move |e| Ok(e.image_tag(&source, &target)?))
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`
/// (`docker commit`): a new image from the container's writable layer.
/// `changes` repeats, one Dockerfile instruction each. The body, a
/// container configuration dockerd would merge in, is not applied: the
/// docker CLI sends its `--change` values as `changes`.
pub(crate) async fn commit(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = query(raw.clone());
    let one = |k: &str| qstr(&q, k);
    let container = one("container").unwrap_or_default();
    if one("repo").is_none() && one("tag").is_some() {
        return Err(ApiError::bad_request(
            "invalid reference format: a tag needs a repository",
        ));
    }
    let tag = repo_tag(&q)?;
    let pause = one("pause").is_none_or(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "0" | "false" | "no" | "off"
        )
    });
    let opts = berth_protocol::CommitOptions {
        id: container,
        tag,
        message: one("comment"),
        author: one("author"),
        changes: query_all(raw.as_deref(), "changes"),
        pause,
    };
    let img = st.engine(move |e| Ok(e.container_commit(opts)?)).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "Id": img.id })),
    )
        .into_response())
}

pub(crate) async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Vec<models::ImageDeleteResponseItem>>> {
    let q = query(q);
    let force = qbool(&q, "force");
    let lines = st
        .engine(move |e| {
            let before = e.image_inspect(&name).ok();
            let lines = e.image_remove(&name, force)?;
            // The repository digests docker drops with the last tag of a
            // repository (the berth CLI's `rmi` does the same).
            Ok(match (before, ImageCache::open()) {
                (Some(img), Ok(cache)) => cache.with_digest_untags(&img, &name, lines),
                _ => lines,
            })
        })
        .await?;
    Ok(Json(delete_items(&lines)))
}

/// Pull progress as docker's JSON message lines.
pub(crate) struct Progress {
    send: Box<dyn Fn(Bytes) + Send + Sync>,
    /// `(TAG, "Pulling from REPO")`, sent once the registry resolved the
    /// reference, as dockerd does (a pull that fails before sends only
    /// its error).
    header: Option<(String, String)>,
}

fn short(d: &str) -> String {
    d.trim_start_matches("sha256:").chars().take(12).collect()
}

impl Progress {
    /// Progress lines as `Ok` pieces of a pull's stream.
    fn unbounded(tx: tokio::sync::mpsc::UnboundedSender<Result<Bytes, String>>) -> Progress {
        Progress {
            send: Box::new(move |b| {
                let _ = tx.send(Ok(b));
            }),
            header: None,
        }
    }

    /// Progress into a bounded stream, from a blocking thread.
    pub(crate) fn from_sender(tx: tokio::sync::mpsc::Sender<Bytes>) -> Progress {
        Progress {
            send: Box::new(move |b| {
                let _ = tx.blocking_send(b);
            }),
            header: None,
        }
    }

    fn send(&self, m: &models::CreateImageInfo) {
        if let Ok(mut v) = serde_json::to_vec(m) {
            v.extend_from_slice(b"\r\n");
            (self.send)(Bytes::from(v));
        }
    }

    fn status(&self, id: Option<String>, status: &str) {
        self.send(&models::CreateImageInfo {
            id,
            status: Some(status.to_string()),
            ..Default::default()
        });
    }
}

impl berth_host::registry::fetch::PullProgress for Progress {
    fn resolved(&self) {
        if let Some((tag, status)) = &self.header {
            self.status(Some(tag.clone()), status);
        }
    }

    fn start(&self, digest: &str, size: u64, cached: bool) {
        let status = if cached {
            "Already exists"
        } else {
            "Pulling fs layer"
        };
        let _ = size;
        self.status(Some(short(digest)), status);
    }

    fn advance(&self, digest: &str, bytes: u64) {
        self.send(&models::CreateImageInfo {
            id: Some(short(digest)),
            status: Some("Downloading".into()),
            progress_detail: Some(models::ProgressDetail {
                current: Some(bytes as i64),
                total: None,
            }),
            ..Default::default()
        });
    }

    fn done(&self, digest: &str) {
        self.status(Some(short(digest)), "Pull complete");
    }
}

/// `POST /images/create?fromImage=&tag=`: a pull, its progress streamed
/// as JSON lines (an error ends the stream as docker's error message).
/// With `fromSrc=`, an import ([`crate::image_transfer::import`]).
pub(crate) async fn create(
    State(st): State<AppState>,
    RawQuery(raw): RawQuery,
    body: Body,
) -> ApiResult<Response> {
    let q = query(raw.clone());
    if q.get("fromSrc").is_some_and(|s| !s.is_empty()) {
        return crate::image_transfer::import(st, raw, body).await;
    }
    let image = q
        .get("fromImage")
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::bad_request("fromImage is required"))?;
    let full = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{image}@{t}"),
        Some(t) => format!("{image}:{t}"),
        None => image.clone(),
    };
    let r = Reference::parse(&full).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let platform = match q.get("platform").filter(|p| !p.is_empty()) {
        Some(p) => berth_host::registry::manifest::Platform::parse(p)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => berth_host::registry::manifest::Platform::host(),
    };
    // Progress lines, and the pull's error as an `Err` piece.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, String>>();
    let failed = tx.clone();
    let iso = st.iso();
    tokio::task::spawn_blocking(move || {
        let tag = r
            .digest
            .clone()
            .or_else(|| r.tag.clone())
            .unwrap_or_default();
        let p = Progress {
            header: Some((tag, format!("Pulling from {}", r.path))),
            ..Progress::unbounded(tx)
        };
        let connect = || iso.connect();
        let upload: Option<&dyn Fn() -> anyhow::Result<berth_host::engine::Engine>> =
            iso.has_engine().then_some(&connect);
        match berth_host::registry::pull::pull(&r, &platform, &p, upload) {
            Ok(pulled) => {
                p.status(None, &format!("Digest: {}", pulled.top_digest));
                let word = if pulled.before.as_deref() == Some(pulled.commit.config_digest.as_str())
                {
                    "Image is up to date for"
                } else {
                    "Downloaded newer image for"
                };
                p.status(None, &format!("Status: {word} {}", r.familiar()));
            }
            Err(e) => {
                let _ = failed.send(Err(format!("{e:#}")));
            }
        }
    });
    // dockerd answers a pull that fails before its first progress line
    // (the registry refused the reference) with an error status, which
    // the CLI prints as "Error response from daemon: …"; a later error
    // ends the stream as an error line.
    let head = match rx.recv().await {
        Some(Err(msg)) if msg.contains(" not found") => return Err(ApiError::not_found(msg)),
        Some(Err(msg)) => return Err(ApiError::internal(msg)),
        Some(Ok(line)) => Some(line),
        None => None,
    };
    let rest = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| {
            o.map(|piece| Ok::<_, std::io::Error>(piece.unwrap_or_else(|m| error_line(&m))))
        })
    });
    use futures_util::StreamExt;
    let stream = futures_util::stream::iter(head.map(Ok)).chain(rest);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// docker's JSON message line for an error that ends a progress stream.
fn error_line(msg: &str) -> Bytes {
    let mut v = serde_json::to_vec(&models::CreateImageInfo {
        error: Some(msg.to_string()),
        error_detail: Some(models::ErrorDetail {
            code: None,
            message: Some(msg.to_string()),
        }),
        ..Default::default()
    })
    .unwrap_or_default();
    v.extend_from_slice(b"\r\n");
    Bytes::from(v)
}

/// `POST /images/prune`: dangling images (untagged), or with the
/// `dangling=false` filter every image no container uses.
pub(crate) async fn prune(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let f = crate::filters::parse(q.get("filters").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    crate::filters::check_keys(&f, &["dangling", "label", "label!", "until"])
        .map_err(ApiError::bad_request)?;
    if ["label", "label!", "until"]
        .iter()
        .any(|k| f.get(*k).is_some_and(|v| !v.is_empty()))
    {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "image prune label and until filters are not supported by berth yet",
        ));
    }
    let dangling_only = match f.get("dangling").and_then(|v| v.last()) {
        None => true,
        Some(v) => match v.as_str() {
            "1" | "true" | "True" => true,
            "0" | "false" | "False" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid filter 'dangling={other}'"
                )))
            }
        },
    };
    let (items, reclaimed) = st
        .engine(move |e| {
            let used: std::collections::HashSet<String> = e
                .container_list(true)?
                .into_iter()
                .map(|c| c.image_id)
                .collect();
            let mut items = Vec::new();
            let mut reclaimed = 0u64;
            for img in e.image_list()? {
                if used.contains(&img.id) || (dangling_only && !img.tags.is_empty()) {
                    continue;
                }
                // An image another one is built on refuses (409): skip it.
                let Ok(lines) = e.image_remove(&img.id, false) else {
                    continue;
                };
                reclaimed += img.size;
                items.extend(delete_items(&lines));
            }
            Ok((items, reclaimed))
        })
        .await?;
    Ok(
        Json(serde_json::json!({ "ImagesDeleted": items, "SpaceReclaimed": reclaimed }))
            .into_response(),
    )
}

fn delete_items(lines: &[String]) -> Vec<models::ImageDeleteResponseItem> {
    lines
        .iter()
        .filter_map(|l| {
            if let Some(t) = l.strip_prefix("Untagged: ") {
                Some(models::ImageDeleteResponseItem {
                    untagged: Some(t.to_string()),
                    deleted: None,
                })
            } else {
                l.strip_prefix("Deleted: ")
                    .map(|d| models::ImageDeleteResponseItem {
                        untagged: None,
                        deleted: Some(d.to_string()),
                    })
            }
        })
        .collect()
}

/// An image list entry (for `system df`).
pub(crate) fn summary_for_df(img: &ImageSummary, containers: i64) -> models::ImageSummary {
    let mut s = summary_json(img);
    s.containers = containers;
    s.shared_size = 0;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_config_is_the_images_or_an_empty_one() {
        let mut out = json!({"Id": "sha256:x"});
        add_container_config(&mut out, &json!({"config": {"Cmd": ["sh"]}}));
        assert_eq!(out["Container"], "");
        assert_eq!(out["ContainerConfig"]["Volumes"], serde_json::Value::Null);
        assert_eq!(out["ContainerConfig"]["Hostname"], "");
        let mut out = json!({});
        let cfg = json!({"container": "abc", "container_config": {"Volumes": {"/v": {}}}});
        add_container_config(&mut out, &cfg);
        assert_eq!(out["Container"], "abc");
        assert_eq!(out["ContainerConfig"]["Volumes"], json!({"/v": {}}));
        // A hostile config whose container_config is no object: the empty one.
        let mut out = json!({});
        add_container_config(&mut out, &json!({"container_config": [1], "container": 7}));
        assert_eq!(out["Container"], "");
        assert!(out["ContainerConfig"].is_object());
    }
}
