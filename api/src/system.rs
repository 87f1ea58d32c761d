//! `_ping`, `version` and `info`.

use crate::error::ApiResult;
use crate::server::AppState;
use crate::version::{MAX_VERSION, MIN_VERSION};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

pub(crate) async fn ping() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            (header::PRAGMA, "no-cache"),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            // The classic builder only: a client that picks its builder
            // from the ping (the docker CLI 20.10) picks it.
            (header::HeaderName::from_static("builder-version"), "1"),
        ],
        "OK",
    )
}

pub(crate) async fn version(State(st): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let info = st.engine(|e| Ok(e.info()?)).await?;
    Ok(Json(berth_host::docker_info::version_value(
        &info,
        &MAX_VERSION.to_string(),
        &MIN_VERSION.to_string(),
    )))
}

pub(crate) async fn info(State(st): State<AppState>) -> ApiResult<impl IntoResponse> {
    let iso = st.iso();
    let (info, list, images) = st
        .engine(|e| {
            let info = e.info()?;
            let list = e.container_list(true)?;
            let images = e.image_list()?;
            Ok((info, list, images))
        })
        .await?;
    Ok(Json(berth_host::docker_info::info_value(
        iso,
        &info,
        &list,
        images.len(),
    )))
}

/// `GET /system/df`: images, containers and volumes with their sizes
/// (writable layers and volumes measured by the engine where they live).
pub(crate) async fn df(State(st): State<AppState>) -> ApiResult<impl IntoResponse> {
    let (images, containers, volumes, usage) = st
        .engine(|e| {
            Ok((
                e.image_list()?,
                e.container_list(true)?,
                e.volume_list()?,
                e.disk_usage(true, true)?,
            ))
        })
        .await?;
    let now = chrono::Utc::now().timestamp();
    let layers: u64 = images.iter().map(|i| i.size).sum();
    let imgs: Vec<_> = images
        .iter()
        .map(|i| {
            let n = containers.iter().filter(|c| c.image_id == i.id).count() as i64;
            crate::images::summary_for_df(i, n)
        })
        .collect();
    let ctrs: Vec<_> = containers
        .iter()
        .map(|c| {
            let mut s = crate::containers::summary_json(c, &[], now);
            let rw = usage.containers.get(&c.id).copied().unwrap_or(0);
            let image = images
                .iter()
                .find(|i| i.id == c.image_id)
                .map_or(0, |i| i.size);
            s.size_rw = Some(rw as i64);
            s.size_root_fs = Some((rw + image) as i64);
            s
        })
        .collect();
    let vols: Vec<_> = volumes
        .iter()
        .map(|v| {
            let size = usage.volumes.get(&v.name).map_or(-1, |s| *s as i64);
            let mut j =
                serde_json::to_value(berth_host::inspect::volume_json(v)).unwrap_or_default();
            if let Some(o) = j.as_object_mut() {
                o.insert(
                    "UsageData".into(),
                    json!({"Size": size, "RefCount": v.used_by.len()}),
                );
            }
            j
        })
        .collect();
    Ok(Json(json!({
        "LayersSize": layers, "Images": imgs, "Containers": ctrs,
        "Volumes": vols, "BuildCache": []
    })))
}

/// The body of `POST /auth` (the API's `AuthConfig`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct AuthBody {
    username: String,
    password: String,
    serveraddress: String,
}

/// `POST /auth` (`docker login` through the socket): checks the
/// credentials against the registry, as dockerd does. Nothing is saved:
/// the client keeps its own. Refused credentials are a 401.
pub(crate) async fn auth(body: axum::body::Body) -> ApiResult<axum::response::Response> {
    use crate::error::ApiError;
    use axum::http::StatusCode;
    use berth_host::registry::auth::{registry_key, Credentials};
    let b: AuthBody = crate::server::read_json(body)
        .await?
        .ok_or_else(|| ApiError::bad_request("no credentials given"))?;
    if b.username.is_empty() || b.password.is_empty() {
        return Err(ApiError::bad_request(
            "username and password must not be empty",
        ));
    }
    if b.username.contains(':') {
        return Err(ApiError::bad_request("username must not contain ':'"));
    }
    let server = (!b.serveraddress.is_empty()).then_some(b.serveraddress.as_str());
    let key = registry_key(server).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let creds = Credentials {
        username: b.username,
        password: b.password,
    };
    let k = key.clone();
    let checked = tokio::task::spawn_blocking(move || {
        berth_host::registry::RegistryClient::connect_with(&k, Vec::new(), Some(creds))
            .and_then(|c| c.verify())
    })
    .await
    .map_err(ApiError::internal)?;
    match checked {
        Ok(()) => {
            Ok(Json(json!({ "Status": "Login Succeeded", "IdentityToken": "" })).into_response())
        }
        Err(berth_host::registry::RegistryError::Auth(m)) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("login attempt to {key} failed: {m}"),
        )),
        Err(e) => Err(ApiError::internal(format!("login to {key} failed: {e}"))),
    }
}
