//! docker's `types.Version` and `types.Info` from what the engine tells:
//! the API's `/version` and `/info` bodies, and what `berth version` and
//! `berth info` render through `--format`.

use crate::placement::Isolation;
use berth_protocol::{AgentInfo, ContainerSummary};
use serde_json::{json, Value};

/// The newest Docker Engine API version berth serves (`berth_api`'s
/// `MAX_VERSION`, which a test there keeps equal), for the CLI's
/// `version` on every host.
pub const API_VERSION: &str = "1.47";
/// The oldest API version berth accepts (`berth_api`'s `MIN_VERSION`).
pub const MIN_API_VERSION: &str = "1.24";

/// This host's architecture as Go (and docker) names it.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// `GET /version`'s body (docker's `types.Version`), also the `Server`
/// of `berth version --format`.
pub fn version_value(info: &AgentInfo, api_max: &str, api_min: &str) -> Value {
    let v = env!("CARGO_PKG_VERSION");
    // bollard's SystemVersion cannot carry a component's Details (typed
    // there as a map of units), which the docker CLI prints from.
    let details = json!({
        "ApiVersion": api_max, "MinAPIVersion": api_min,
        "GitCommit": "", "GoVersion": "", "Os": "linux", "Arch": arch(),
        "KernelVersion": info.kernel_release, "BuildTime": "", "Experimental": "false"
    });
    json!({
        "Platform": {"Name": "berth"},
        "Components": [
            {"Name": "Engine", "Version": v, "Details": details},
            {"Name": "berth-agent", "Version": info.agent_version, "Details": {}}
        ],
        "Version": v, "ApiVersion": api_max,
        "MinAPIVersion": api_min, "GitCommit": "", "GoVersion": "",
        "Os": "linux", "Arch": arch(), "KernelVersion": info.kernel_release,
        "Experimental": false, "BuildTime": ""
    })
}

/// `GET /info`'s body (docker's `types.Info`), also what `berth info
/// --format` renders.
pub fn info_value(
    iso: Isolation,
    info: &AgentInfo,
    list: &[ContainerSummary],
    images: usize,
) -> Value {
    use berth_protocol::ContainerStatus as S;
    let count = |s: S| list.iter().filter(|c| c.status == s).count();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut v = json!({
        "ID": "", "Containers": list.len(),
        "ContainersRunning": count(S::Running), "ContainersPaused": count(S::Paused),
        "ContainersStopped": list.len() - count(S::Running) - count(S::Paused),
        "Images": images, "Driver": "overlay2", "DriverStatus": [],
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
    v
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
