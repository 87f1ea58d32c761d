//! Volume endpoints. Served with `--isolation vm`, they show and act on
//! the named volumes own VMs use, the host folders of
//! [`berth_host::vm_volumes`], as `berth volume --isolation vm` does;
//! otherwise the engine's volumes.

use crate::error::{ApiError, ApiResult};
use crate::routes::{qbool, query};
use crate::server::{read_json, AppState};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_host::client::ClientError;
use berth_host::engine::VolumeCreate;
use berth_host::inspect::volume_json;
use berth_host::vm_volumes::VolumeStore;
use bollard_stubs::models::VolumeCreateOptions;
use serde_json::json;

/// Runs `f` on the own VMs' volume store, off the async threads (the
/// store takes a file lock that a starting run may hold).
async fn own_vm<T, F>(f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&VolumeStore) -> Result<T, berth_protocol::ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&VolumeStore::open()))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ClientError::from(e).into())
}

pub(crate) async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let q = query(q);
    let f = crate::filters::parse(q.get("filters").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    crate::filters::check_keys(&f, &["dangling", "driver", "label", "name"])
        .map_err(ApiError::bad_request)?;
    let mut list = if st.iso().own_vm() {
        own_vm(|s| Ok(s.list())).await?
    } else {
        st.engine(|e| Ok(e.volume_list()?)).await?
    };
    list.retain(|v| {
        f.iter().filter(|(_, x)| !x.is_empty()).all(|(k, vals)| {
            crate::filters::key_matches(k, vals, |x| match k.as_str() {
                "dangling" => (x == "true" || x == "1") == v.used_by.is_empty(),
                "driver" => v.driver == *x,
                "name" => v.name.contains(x.as_str()),
                "label" => match x.split_once('=') {
                    Some((lk, lv)) => v.labels.get(lk).is_some_and(|y| y == lv),
                    None => v.labels.contains_key(x.as_str()),
                },
                _ => true,
            })
        })
    });
    let vols: Vec<_> = list.iter().map(volume_json).collect();
    Ok(Json(json!({ "Volumes": vols, "Warnings": [] })).into_response())
}

pub(crate) async fn create(State(st): State<AppState>, body: Body) -> ApiResult<Response> {
    let b: VolumeCreateOptions = read_json(body).await?.unwrap_or_default();
    let v = VolumeCreate {
        name: b.name.filter(|n| !n.is_empty()),
        driver: b.driver.filter(|d| !d.is_empty()),
        labels: b.labels.unwrap_or_default().into_iter().collect(),
        options: b.driver_opts.unwrap_or_default().into_iter().collect(),
    };
    let info = if st.iso().own_vm() {
        let name = v.name.unwrap_or_else(berth_host::vm_volumes::random_name);
        if let Some(d) = v.driver.filter(|d| d != "local") {
            // dockerd's answer when no plugin of that name is installed.
            return Err(ApiError::not_found(format!(
                "create {name}: error looking up volume plugin {d}: plugin \"{d}\" not found"
            )));
        }
        own_vm(move |s| s.create(Some(&name), &v.labels, &v.options)).await?
    } else {
        st.engine(move |e| Ok(e.volume_create(v)?)).await?
    };
    Ok((StatusCode::CREATED, Json(json!(volume_json(&info)))).into_response())
}

pub(crate) async fn inspect(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let info = if st.iso().own_vm() {
        own_vm(move |s| s.inspect(&name)).await?
    } else {
        st.engine(move |e| Ok(e.volume_inspect(&name)?)).await?
    };
    Ok(Json(json!(volume_json(&info))).into_response())
}

pub(crate) async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let force = qbool(&query(q), "force");
    if st.iso().own_vm() {
        own_vm(move |s| s.remove(&name, force)).await?;
    } else {
        st.engine(move |e| Ok(e.volume_remove(&name, force)?))
            .await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /volumes/prune`: unused volumes; from API 1.42 only anonymous
/// ones unless the `all` filter is true (as dockerd).
pub(crate) async fn prune(
    State(st): State<AppState>,
    axum::Extension(v): axum::Extension<crate::server::ClientVersion>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let f = crate::filters::parse(q.get("filters").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    crate::filters::check_keys(&f, &["all", "label", "label!"]).map_err(ApiError::bad_request)?;
    if ["label", "label!"]
        .iter()
        .any(|k| f.get(*k).is_some_and(|v| !v.is_empty()))
    {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "volume prune label filters are not supported by berth yet",
        ));
    }
    let all = match f.get("all").and_then(|v| v.last()) {
        Some(x) => matches!(x.as_str(), "1" | "true" | "True"),
        None => v.0 < crate::version::Version(1, 42),
    };
    let (names, reclaimed) = if st.iso().own_vm() {
        own_vm(move |s| Ok(s.prune(all))).await?
    } else {
        let p = st.engine(move |e| Ok(e.volume_prune(all)?)).await?;
        (p.names, p.reclaimed)
    };
    Ok(Json(json!({ "VolumesDeleted": names, "SpaceReclaimed": reclaimed })).into_response())
}
