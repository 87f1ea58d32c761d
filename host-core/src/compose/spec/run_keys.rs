//! The service keys of `run`'s resource, namespace and logging flags into
//! the container config, checked as docker's CLI checks the flags (the
//! words of [`crate::limits`]): `ulimits`, `shm_size`, `sysctls`,
//! `devices`, `group_add`, `cpu_shares`, `cpuset`, `mem_limit`,
//! `memswap_limit`, `mem_reservation`, `oom_kill_disable`, `ipc`, `pid`,
//! `uts`, `cgroup`, `stop_grace_period`, `logging`. The compose crate
//! checked their shapes at load; `platform` and `pull_policy` are the
//! image step's ([`platform`]).

use super::{container_name, SpecError};
use crate::limits::{parse_bytes, parse_device, parse_int, parse_ulimit, validate_sysctl};
use berth_compose::{Project, Service};
use berth_protocol::ContainerConfig;

fn err(s: &Service, key: &'static str, msg: impl Into<String>) -> SpecError {
    SpecError {
        service: s.name.clone(),
        key,
        msg: msg.into(),
    }
}

/// A byte size key (`64m`, `1048576`); zero is unset, as docker's flags.
fn bytes(s: &Service, key: &'static str) -> Result<Option<i64>, SpecError> {
    let Some(t) = s.text_key(key) else {
        return Ok(None);
    };
    let n = if key == "memswap_limit" && t.trim() == "-1" {
        -1
    } else {
        parse_bytes(&t).map_err(|e| err(s, key, e))?
    };
    Ok(Some(n).filter(|n| *n != 0))
}

/// `ipc:`/`pid:`: `service:NAME` joins that service's first container.
fn joined(project: &Project, s: &Service, key: &str) -> Option<String> {
    match s.joined_service(key) {
        Some(svc) => Some(format!(
            "container:{}",
            container_name(&project.name, &svc, 1)
        )),
        None => s.text_key(key).filter(|v| !v.is_empty()),
    }
}

/// `platform:` checked as docker's CLI parses `--platform`, normalized
/// (`linux` is this host's architecture).
pub fn platform(s: &Service) -> Result<Option<String>, SpecError> {
    let Some(p) = s.text_key("platform").filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    use crate::registry::manifest::Platform;
    let known = |os: &str| matches!(os, "linux" | "windows" | "darwin" | "freebsd");
    let parsed = if !p.contains('/') && known(&p.to_ascii_lowercase()) {
        Some(Platform {
            os: p.to_ascii_lowercase(),
            ..Platform::host()
        })
    } else {
        Platform::parse(&p).ok().filter(|x| known(&x.os))
    };
    match parsed {
        Some(x) => Ok(Some(x.to_string())),
        None => Err(err(
            s,
            "platform",
            format!("error parsing specified platform: {p:?}: unknown operating system or architecture: invalid argument"),
        )),
    }
}

/// Sets the config's fields from the service's keys, or the refusal.
pub fn apply(project: &Project, s: &Service, cfg: &mut ContainerConfig) -> Result<(), SpecError> {
    for (name, u) in s.ulimits() {
        let spec = format!("{name}={}:{}", u.soft, u.hard);
        cfg.ulimits
            .push(parse_ulimit(&spec).map_err(|e| err(s, "ulimits", e))?);
    }
    cfg.shm_size = bytes(s, "shm_size")?;
    for (k, v) in s.sysctls() {
        let (k, v) = validate_sysctl(&format!("{k}={v}")).map_err(|e| err(s, "sysctls", e))?;
        cfg.sysctls.insert(k, v);
    }
    for d in s.devices() {
        cfg.devices
            .push(parse_device(&d).map_err(|e| err(s, "devices", e))?);
    }
    cfg.group_add = s.group_add();
    if let Some(c) = s.text_key("cpu_shares") {
        cfg.cpu_shares =
            Some(parse_int(c.trim()).map_err(|e| err(s, "cpu_shares", e))?).filter(|c| *c != 0);
    }
    cfg.cpuset_cpus = s.text_key("cpuset").filter(|c| !c.is_empty());
    cfg.memory = bytes(s, "mem_limit")?;
    cfg.memory_swap = bytes(s, "memswap_limit")?;
    cfg.memory_reservation = bytes(s, "mem_reservation")?;
    cfg.oom_kill_disable = s.oom_kill_disable();
    cfg.ipc_mode = joined(project, s, "ipc");
    cfg.pid_mode = joined(project, s, "pid");
    if let Some(p) = &cfg.pid_mode {
        if !(p == "host" || p.strip_prefix("container:").is_some_and(|c| !c.is_empty())) {
            return Err(err(s, "pid", format!("invalid PID mode {p:?}")));
        }
    }
    cfg.uts_mode = s.text_key("uts").filter(|u| !u.is_empty());
    if let Some(u) = cfg.uts_mode.as_deref().filter(|u| *u != "host") {
        return Err(err(s, "uts", format!("invalid UTS mode {u:?}")));
    }
    // Checked to be host or private at load.
    cfg.cgroupns_mode = s.text_key("cgroup");
    cfg.stop_timeout = super::stop_timeout(s);
    cfg.log_driver = s.log_driver().filter(|d| !d.is_empty());
    logging_options(s, cfg)?;
    platform(s)?;
    Ok(())
}

/// `logging.options` as `--log-opt` (json-file's `max-size`, `max-file`;
/// `none` takes none).
fn logging_options(s: &Service, cfg: &mut ContainerConfig) -> Result<(), SpecError> {
    let opts = s.log_options();
    let driver = cfg.log_driver.as_deref().unwrap_or("json-file");
    if driver == "none" && !opts.is_empty() {
        return Err(err(s, "logging", "invalid logging opts for driver none"));
    }
    for (k, v) in opts {
        match k.as_str() {
            "max-size" => {
                let n = parse_bytes(&v)
                    .map_err(|e| err(s, "logging", format!("invalid value for max-size: {e}")))?;
                cfg.log_max_size = Some(n.max(0) as u64);
            }
            "max-file" => {
                cfg.log_max_files =
                    Some(v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        err(s, "logging", format!("invalid value for max-file: {v}"))
                    })?);
            }
            "compress" if driver == "local" => {}
            _ => {
                return Err(err(
                    s,
                    "logging",
                    format!("unknown log opt '{k}' for {driver} log driver"),
                ))
            }
        }
    }
    Ok(())
}
