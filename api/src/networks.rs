//! Network endpoints.

use crate::error::{ApiError, ApiResult};
use crate::routes::query;
use crate::server::{read_json, AppState};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_host::engine::NetworkCreate;
use berth_host::inspect::network_json;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

pub(crate) async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let q = query(q);
    let f = crate::filters::parse(q.get("filters").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    crate::filters::check_keys(
        &f,
        &["dangling", "driver", "id", "label", "name", "scope", "type"],
    )
    .map_err(ApiError::bad_request)?;
    let mut list = st.engine(|e| Ok(e.network_list()?)).await?;
    list.retain(|n| {
        f.iter().filter(|(_, x)| !x.is_empty()).all(|(k, vals)| {
            vals.iter().any(|x| match k.as_str() {
                "driver" => n.driver == *x,
                "id" => n.id.starts_with(x.as_str()),
                "name" => n.name.contains(x.as_str()),
                "type" => (x == "builtin") == n.builtin,
                "label" => match x.split_once('=') {
                    Some((lk, lv)) => n.labels.get(lk).is_some_and(|y| y == lv),
                    None => n.labels.contains_key(x.as_str()),
                },
                _ => true,
            })
        })
    });
    let nets: Vec<_> = list.iter().map(network_json).collect();
    Ok(Json(json!(nets)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct CreateBody {
    name: String,
    driver: Option<String>,
    internal: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    labels: Option<BTreeMap<String, String>>,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct Ipam {
    config: Option<Vec<IpamConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct IpamConfig {
    subnet: Option<String>,
    gateway: Option<String>,
}

pub(crate) async fn create(State(st): State<AppState>, body: Body) -> ApiResult<Response> {
    let b: CreateBody = read_json(body)
        .await?
        .ok_or_else(|| ApiError::bad_request("network config cannot be empty"))?;
    if b.name.is_empty() {
        return Err(ApiError::bad_request("network name is required"));
    }
    let ipam = b
        .ipam
        .and_then(|i| i.config)
        .and_then(|c| c.into_iter().next())
        .unwrap_or_default();
    let n = NetworkCreate {
        name: b.name,
        driver: b.driver.filter(|d| !d.is_empty()),
        subnet: ipam.subnet.filter(|s| !s.is_empty()),
        gateway: ipam.gateway.filter(|g| !g.is_empty()),
        internal: b.internal,
        labels: b.labels.unwrap_or_default(),
        options: b.options.unwrap_or_default(),
    };
    let info = st.engine(move |e| Ok(e.network_create(n)?)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Id": info.id, "Warning": "" })),
    )
        .into_response())
}

pub(crate) async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let info = st.engine(move |e| Ok(e.network_inspect(&id)?)).await?;
    Ok(Json(json!(network_json(&info))).into_response())
}

pub(crate) async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    st.engine(move |e| Ok(e.network_remove(&id)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
