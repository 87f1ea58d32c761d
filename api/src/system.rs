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
