//! Network endpoints.

use crate::error::{ApiError, ApiResult};
use crate::routes::query;
use crate::server::{read_json, AppState};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_host::engine::{NetworkConnect, NetworkCreate};
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
            crate::filters::key_matches(k, vals, |x| match k.as_str() {
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

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ConnectBody {
    container: String,
    endpoint_config: Option<crate::containers::EndpointBody>,
}

pub(crate) async fn connect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let b: ConnectBody = read_json(body).await?.unwrap_or_default();
    if b.container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    let ep = b.endpoint_config.unwrap_or_default();
    let c = NetworkConnect {
        network: id,
        container: b.container,
        ipv4_address: ep.ipv4(),
        aliases: ep.aliases.unwrap_or_default(),
    };
    st.engine(move |e| Ok(e.network_connect(c)?)).await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct DisconnectBody {
    container: String,
    force: bool,
}

pub(crate) async fn disconnect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let b: DisconnectBody = read_json(body).await?.unwrap_or_default();
    if b.container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    st.engine(move |e| Ok(e.network_disconnect(&id, &b.container, b.force)?))
        .await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) async fn prune(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = query(q);
    let f = crate::filters::parse(q.get("filters").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    crate::filters::check_keys(&f, &["label", "label!", "until"]).map_err(ApiError::bad_request)?;
    if f.values().any(|v| !v.is_empty()) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "network prune filters are not supported by berth yet",
        ));
    }
    let names = st.engine(|e| Ok(e.network_prune()?)).await?;
    Ok(Json(json!({ "NetworksDeleted": names })).into_response())
}
