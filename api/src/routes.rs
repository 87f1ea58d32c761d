//! The route table.

use crate::error::{ApiError, ApiResult};
use crate::server::AppState;
use axum::extract::{RawQuery, State};
use axum::routing::{delete, get, post};
use axum::Router;
use berth_protocol::reference::Reference;

pub(crate) fn router(state: AppState) -> Router {
    use crate::{containers as c, images as i, streams as s, system as sys};
    Router::new()
        .route("/_ping", get(sys::ping).head(sys::ping))
        .route("/version", get(sys::version))
        .route("/info", get(sys::info))
        .route("/system/df", get(sys::df))
        .route("/auth", post(sys::auth))
        .route("/events", get(s::events))
        .route("/containers/json", get(c::list))
        .route("/containers/create", post(c::create))
        .route("/containers/{id}/json", get(c::inspect))
        .route("/containers/{id}/start", post(s::start))
        .route("/containers/{id}/stop", post(c::stop))
        .route("/containers/{id}/restart", post(c::restart))
        .route("/containers/{id}/kill", post(c::kill))
        .route("/containers/{id}/pause", post(c::pause))
        .route("/containers/{id}/unpause", post(c::unpause))
        .route("/containers/{id}/rename", post(c::rename))
        .route("/containers/{id}/resize", post(c::resize))
        .route("/containers/{id}/wait", post(s::wait))
        .route("/containers/{id}/attach", post(s::attach))
        .route("/containers/{id}/logs", get(s::logs))
        .route("/containers/{id}/exec", post(s::exec_create))
        .route("/containers/{id}", delete(c::remove))
        .route("/containers/prune", post(c::prune))
        .route("/containers/{id}/top", get(c::top))
        .route("/containers/{id}/changes", get(c::changes))
        .route("/containers/{id}/export", get(crate::archive::export))
        .route("/containers/{id}/update", post(c::update))
        .route("/containers/{id}/stats", get(s::stats))
        .route(
            "/containers/{id}/archive",
            get(crate::archive::get)
                .head(crate::archive::head)
                .put(crate::archive::put),
        )
        .route("/exec/{id}/start", post(s::exec_start))
        .route("/exec/{id}/resize", post(s::exec_resize))
        .route("/exec/{id}/json", get(s::exec_inspect))
        .route("/build", post(crate::build::build))
        // BuildKit's session and gRPC streams (docker buildx, the docker
        // CLI with DOCKER_BUILDKIT=1): not served.
        .route("/session", post(crate::build::buildkit_refused))
        .route("/grpc", post(crate::build::buildkit_refused))
        .route("/commit", post(i::commit))
        .route("/images/json", get(i::list))
        .route("/images/create", post(i::create))
        .route("/images/prune", post(i::prune))
        .route("/images/search", get(i::search))
        .route(
            "/images/get",
            get(|State(st): State<AppState>, RawQuery(q): RawQuery| async move {
                crate::image_transfer::save(st, query_all(q.as_deref(), "names"))
                    .await
            }),
        )
        .route(
            "/images/load",
            post(
                |State(st): State<AppState>, RawQuery(q): RawQuery, body: axum::body::Body| async move {
                    crate::image_transfer::load(st, q, body).await
                },
            ),
        )
        .route(
            "/images/{*name}",
            get(i::by_name_get).post(i::by_name_post).delete(i::remove),
        )
        .route("/volumes", get(crate::volumes::list))
        .route("/volumes/create", post(crate::volumes::create))
        .route("/volumes/prune", post(crate::volumes::prune))
        .route(
            "/volumes/{name}",
            get(crate::volumes::inspect).delete(crate::volumes::remove),
        )
        .route("/networks", get(crate::networks::list))
        .route("/networks/create", post(crate::networks::create))
        .route("/networks/prune", post(crate::networks::prune))
        .route("/networks/{id}/connect", post(crate::networks::connect))
        .route(
            "/networks/{id}/disconnect",
            post(crate::networks::disconnect),
        )
        .route(
            "/networks/{id}",
            get(crate::networks::inspect).delete(crate::networks::remove),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("page not found")
}

/// Query parameters as a map (the last of repeated keys wins).
pub(crate) type Query = std::collections::HashMap<String, String>;

/// Parses a raw query string; malformed escapes are kept lossily, as Go.
pub(crate) fn query(raw: Option<String>) -> Query {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// docker's boolean query values: `1`, `true`, `True` (anything but empty,
/// `0`, `false`, `no`).
pub(crate) fn qbool(q: &Query, key: &str) -> bool {
    q.get(key).is_some_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "off"
        )
    })
}

/// A query value, `None` when absent or empty (the last of repeated keys
/// wins).
pub(crate) fn qstr(q: &Query, key: &str) -> Option<String> {
    q.get(key).filter(|v| !v.is_empty()).cloned()
}

/// Every non-empty value of a key that repeats (`names`, `changes`), in
/// order.
pub(crate) fn query_all(raw: Option<&str>, key: &str) -> Vec<String> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The image reference of the `repo` and `tag` parameters (`commit`,
/// `import`), normalised; `None` without a repository. A bad one is a 400.
pub(crate) fn repo_tag(q: &Query) -> ApiResult<Option<String>> {
    let Some(repo) = qstr(q, "repo") else {
        return Ok(None);
    };
    let target = match qstr(q, "tag") {
        Some(t) => format!("{repo}:{t}"),
        None => repo,
    };
    let r = Reference::parse(&target).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Some(r.to_string()))
}

/// An integer query value; a malformed one is a 400.
pub(crate) fn qint(q: &Query, key: &str) -> Result<Option<i64>, ApiError> {
    match q.get(key).map(|v| v.trim()) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: {v:?}"))),
    }
}
