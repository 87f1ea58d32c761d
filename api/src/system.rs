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

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

pub(crate) async fn version(State(st): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let info = st.engine(|e| Ok(e.info()?)).await?;
    let v = env!("CARGO_PKG_VERSION");
    // bollard's SystemVersion cannot carry a component's Details (typed
    // there as a map of units), which the docker CLI prints from.
    let details = json!({
        "ApiVersion": MAX_VERSION.to_string(), "MinAPIVersion": MIN_VERSION.to_string(),
        "GitCommit": "", "GoVersion": "", "Os": "linux", "Arch": arch(),
        "KernelVersion": info.kernel_release, "BuildTime": "", "Experimental": "false"
    });
    Ok(Json(json!({
        "Platform": {"Name": "berth"},
        "Components": [
            {"Name": "Engine", "Version": v, "Details": details},
            {"Name": "berth-agent", "Version": info.agent_version, "Details": {}}
        ],
        "Version": v, "ApiVersion": MAX_VERSION.to_string(),
        "MinAPIVersion": MIN_VERSION.to_string(), "GitCommit": "", "GoVersion": "",
        "Os": "linux", "Arch": arch(), "KernelVersion": info.kernel_release,
        "Experimental": false, "BuildTime": ""
    })))
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
    use berth_protocol::ContainerStatus as S;
    let count = |s: S| list.iter().filter(|c| c.status == s).count();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut v = json!({
        "ID": "", "Containers": list.len(),
        "ContainersRunning": count(S::Running), "ContainersPaused": count(S::Paused),
        "ContainersStopped": list.len() - count(S::Running) - count(S::Paused),
        "Images": images.len(), "Driver": "overlay2", "DriverStatus": [],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file"]},
        "MemoryLimit": true, "SwapLimit": false, "CpuCfsPeriod": true, "CpuCfsQuota": true,
        "CPUShares": true, "CPUSet": true, "PidsLimit": true, "IPv4Forwarding": true,
        "Debug": false, "NFd": 0, "NGoroutines": 0, "SystemTime": chrono::Utc::now().to_rfc3339(),
        "LoggingDriver": "json-file",
        "CgroupDriver": if info.cgroup_version == 2 { "systemd" } else { "cgroupfs" },
        "CgroupVersion": info.cgroup_version.to_string(),
    });
    let more = json!({
        "NEventsListener": 0, "KernelVersion": info.kernel_release,
        "OperatingSystem": format!("berth ({})", format!("{iso:?}").to_lowercase()),
        "OSVersion": "", "OSType": "linux", "Architecture": info.arch,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "NCPU": info.cpus, "MemTotal": mem_total(),
        "DockerRootDir": info.data_root, "Name": host.trim(),
        "Labels": [], "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"berth": {"path": "berth-agent"}}, "DefaultRuntime": "berth",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": false, "Isolation": "", "InitBinary": "",
        "SecurityOptions": [], "Warnings": []
    });
    if let (Some(a), serde_json::Value::Object(b)) = (v.as_object_mut(), more) {
        a.extend(b);
    }
    Ok(Json(v))
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024)
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
