//! The resource and device settings of `run`/`create` (`--ulimit`,
//! `--shm-size`, `--sysctl`, `--cpu-shares`, `--cpuset-cpus`,
//! `--memory-swap`, `--memory-reservation`, `--oom-kill-disable`,
//! `--device`, `--group-add`): docker's daemon-side checks with its
//! messages, and the host devices a container asks for. The CLI checks
//! the syntax; an API client may send anything, so everything is checked
//! again here.

use berth_protocol::{ContainerConfig, DeviceMapping};
use serde_json::{json, Value};

/// docker's minimum memory values (6 MiB).
const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// The kernel's (and docker's) bounds for CPU shares.
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;

/// The OCI name of a `--ulimit` name.
pub fn rlimit(name: &str) -> Option<&'static str> {
    berth_protocol::ULIMIT_RLIMITS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, r)| *r)
}

/// A sysctl key and value the container may set: the key names a
/// parameter of one of its own namespaces (IPC, or network unless it
/// shares the engine's), written only with dots and plain components.
fn check_sysctl(key: &str, value: &str, host_network: bool) -> Result<(), String> {
    let plain = !key.is_empty()
        && key.split('.').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'@' | b'+'))
        });
    if !plain {
        return Err(format!("invalid sysctl key {key:?}"));
    }
    if value.contains(['\0', '\n']) {
        return Err(format!("invalid value for sysctl {key:?}"));
    }
    if berth_protocol::IPC_SYSCTLS.contains(&key) || key.starts_with("fs.mqueue.") {
        return Ok(());
    }
    if key.starts_with("net.") {
        if host_network {
            return Err(format!(
                "sysctl {key:?} not allowed in host network namespace"
            ));
        }
        return Ok(());
    }
    Err(format!(
        "sysctl {key:?} is not in a separate kernel namespace"
    ))
}

/// A CPU list (`0-2,4`) as the set of CPUs it names (docker's
/// `ParseUintList`).
fn cpu_list(val: &str) -> Result<Vec<u32>, String> {
    let bad = || format!("invalid format: {val}");
    let mut out = Vec::new();
    if val.is_empty() {
        return Ok(out);
    }
    for part in val.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let num = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse::<u32>().map_err(|_| bad())
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if hi < lo || hi - lo > 65_536 {
            return Err(bad());
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

/// docker's daemon checks (`verifyPlatformContainerResources`) of these
/// settings at create, with its messages. `cpus` is how many CPUs the
/// engine may use (`0` to `cpus - 1`).
pub fn validate(cfg: &ContainerConfig, cpus: usize) -> Result<(), String> {
    let memory = cfg.memory.unwrap_or(0).max(0);
    let swap = cfg.memory_swap.unwrap_or(0);
    if memory > 0 && swap > 0 && swap < memory {
        return Err(
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        );
    }
    if memory == 0 && swap > 0 {
        return Err(
            "You should always set the Memory limit when using Memoryswap limit, see usage".into(),
        );
    }
    if swap < -1 {
        return Err(format!("invalid memory swap limit {swap}"));
    }
    let reservation = cfg.memory_reservation.unwrap_or(0);
    if reservation < 0 {
        return Err(format!("invalid memory reservation {reservation}"));
    }
    if reservation > 0 && reservation < MIN_MEMORY {
        return Err("Minimum memory reservation allowed is 6MB".into());
    }
    if memory > 0 && reservation > 0 && memory < reservation {
        return Err(
            "Minimum memory limit can not be less than memory reservation limit, see usage".into(),
        );
    }
    if let Some(set) = &cfg.cpuset_cpus {
        let wanted =
            cpu_list(set).map_err(|e| format!("Invalid value {set} for cpuset cpus: {e}"))?;
        if wanted.iter().any(|c| *c as usize >= cpus) {
            let available = if cpus > 1 {
                format!("0-{}", cpus - 1)
            } else {
                "0".to_string()
            };
            return Err(format!(
                "Requested CPUs are not available - requested {set}, available: {available}"
            ));
        }
    }
    if cfg.shm_size.is_some_and(|s| s < 0) {
        return Err("SHM size can not be less than 0".into());
    }
    for u in &cfg.ulimits {
        if rlimit(&u.name).is_none() {
            return Err(format!("invalid ulimit type: {}", u.name));
        }
        if u.hard != -1 && (u.soft == -1 || u.soft > u.hard || u.soft < -1) {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            ));
        }
        if u.soft < -1 || u.hard < -1 {
            return Err(format!("invalid ulimit value for {}", u.name));
        }
    }
    let host_network = cfg.network_mode.as_deref() == Some("host");
    for (k, v) in &cfg.sysctls {
        check_sysctl(k, v, host_network)?;
    }
    for d in &cfg.devices {
        check_device_paths(d)?;
    }
    for g in &cfg.group_add {
        if g.is_empty() || g.contains(['\0', ':', '\n']) {
            return Err(format!("invalid group {g:?}"));
        }
    }
    Ok(())
}

/// A device mapping's paths: an absolute host path, an absolute path in
/// the container without `..`, and permissions some of `rwm`.
fn check_device_paths(d: &DeviceMapping) -> Result<(), String> {
    let bad = || {
        format!(
            "invalid device mapping {}:{}:{}",
            d.path_on_host, d.path_in_container, d.cgroup_permissions
        )
    };
    let abs = |p: &str| p.starts_with('/') && !p.contains('\0');
    if !abs(&d.path_on_host)
        || !abs(&d.path_in_container)
        || d.path_in_container.split('/').any(|c| c == "..")
        || d.path_in_container.trim_end_matches('/').is_empty()
    {
        return Err(bad());
    }
    let p = &d.cgroup_permissions;
    if !p.is_empty() && !p.bytes().all(|c| matches!(c, b'r' | b'w' | b'm')) {
        return Err(bad());
    }
    Ok(())
}

/// docker's adjustments at create (`adaptContainerSettings`): CPU shares
/// within the kernel's bounds.
pub fn adapt(cfg: &mut ContainerConfig) {
    if let Some(s) = cfg.cpu_shares.as_mut() {
        *s = (*s).clamp(MIN_SHARES, MAX_SHARES);
    }
}

/// An I/O error as Go's `syscall.Errno` text (`no such file or directory`).
fn go_reason(e: &std::io::Error) -> String {
    let t = e.to_string();
    let t = t.split(" (os error").next().unwrap_or(&t);
    let mut c = t.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The OCI `linux.devices` entry and `resources.devices` rule of each
/// `--device`, from the host's device nodes (docker's `DeviceFromPath`,
/// with its message when one is not there or not a device).
pub fn host_devices(devices: &[DeviceMapping]) -> Result<Vec<(Value, Value)>, String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    for d in devices {
        let fail = |why: String| {
            format!(
                "error gathering device information while adding custom device {:?}: {why}",
                d.path_on_host
            )
        };
        // As docker: a symlink (/dev/stdin, /dev/disk/by-id/...) names the
        // device it points at.
        let meta = std::fs::metadata(&d.path_on_host).map_err(|e| fail(go_reason(&e)))?;
        let ft = meta.file_type();
        let kind = if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            return Err(fail("not a device node".into()));
        };
        let rdev = meta.rdev();
        let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
        let access = if d.cgroup_permissions.is_empty() {
            "rwm"
        } else {
            d.cgroup_permissions.as_str()
        };
        out.push((
            json!({
                "path": d.path_in_container, "type": kind, "major": major, "minor": minor,
                "fileMode": meta.mode() & 0o777, "uid": meta.uid(), "gid": meta.gid()
            }),
            json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": access}),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::Ulimit;

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            image: "x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn memory_checks_as_dockers_daemon() {
        let mut c = cfg();
        c.memory_swap = Some(64 << 20);
        assert_eq!(
            validate(&c, 2).unwrap_err(),
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        );
        c.memory = Some(128 << 20);
        assert_eq!(
            validate(&c, 2).unwrap_err(),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        c.memory_swap = Some(-1);
        assert!(validate(&c, 2).is_ok());
        c.memory_reservation = Some(1 << 20);
        assert_eq!(
            validate(&c, 2).unwrap_err(),
            "Minimum memory reservation allowed is 6MB"
        );
        c.memory_reservation = Some(256 << 20);
        assert_eq!(
            validate(&c, 2).unwrap_err(),
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        );
    }

    #[test]
    fn cpusets_within_the_engines_cpus() {
        let mut c = cfg();
        c.cpuset_cpus = Some("0-1".into());
        assert!(validate(&c, 2).is_ok());
        c.cpuset_cpus = Some("0,5".into());
        assert_eq!(
            validate(&c, 2).unwrap_err(),
            "Requested CPUs are not available - requested 0,5, available: 0-1"
        );
        c.cpuset_cpus = Some("abc".into());
        assert_eq!(
            validate(&c, 2).unwrap_err(),
            "Invalid value abc for cpuset cpus: invalid format: abc"
        );
        c.cpuset_cpus = Some("3-1".into());
        assert!(validate(&c, 8).is_err());
        c.cpuset_cpus = Some("0-4294967295".into());
        assert!(validate(&c, 8).is_err());
    }

    #[test]
    fn hostile_sysctls_devices_and_ulimits_are_refused() {
        let refuse = |f: &dyn Fn(&mut ContainerConfig)| {
            let mut c = cfg();
            f(&mut c);
            validate(&c, 2).unwrap_err()
        };
        assert_eq!(
            refuse(&|c| {
                c.sysctls.insert("kernel.foo".into(), "1".into());
            }),
            "sysctl \"kernel.foo\" is not in a separate kernel namespace"
        );
        // A key that would walk out of /proc/sys/net.
        refuse(&|c| {
            c.sysctls.insert("net/../../kernel/x".into(), "1".into());
        });
        refuse(&|c| {
            c.sysctls.insert("net..x".into(), "1".into());
        });
        refuse(&|c| {
            c.sysctls
                .insert("net.ipv4.ip_forward".into(), "1\n0".into());
        });
        assert_eq!(
            refuse(&|c| {
                c.network_mode = Some("host".into());
                c.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
            }),
            "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace"
        );
        for (host, inner, perms) in [
            ("dev/zero", "/z", "rwm"),
            ("/dev/zero", "z", "rwm"),
            ("/dev/zero", "/a/../etc/x", "rwm"),
            ("/dev/zero", "/", "rwm"),
            ("/dev/zero", "/z", "rwx"),
        ] {
            refuse(&|c| {
                c.devices.push(DeviceMapping {
                    path_on_host: host.into(),
                    path_in_container: inner.into(),
                    cgroup_permissions: perms.into(),
                })
            });
        }
        assert_eq!(
            refuse(&|c| c.ulimits.push(Ulimit {
                name: "bogus".into(),
                soft: 1,
                hard: 1
            })),
            "invalid ulimit type: bogus"
        );
        refuse(&|c| {
            c.ulimits.push(Ulimit {
                name: "nofile".into(),
                soft: 10,
                hard: 5,
            })
        });
        refuse(&|c| {
            c.ulimits.push(Ulimit {
                name: "nofile".into(),
                soft: -5,
                hard: -1,
            })
        });
        refuse(&|c| c.group_add.push("a:b".into()));
        assert_eq!(
            refuse(&|c| c.shm_size = Some(-1)),
            "SHM size can not be less than 0"
        );
    }

    #[test]
    fn host_devices_from_the_nodes() {
        let d = |p: &str| DeviceMapping {
            path_on_host: p.into(),
            path_in_container: "/dev/x".into(),
            cgroup_permissions: "r".into(),
        };
        let got = host_devices(&[d("/dev/null")]).unwrap();
        assert_eq!(got[0].0["major"], 1);
        assert_eq!(got[0].0["minor"], 3);
        assert_eq!(got[0].0["path"], "/dev/x");
        assert_eq!(got[0].1["access"], "r");
        assert_eq!(
            host_devices(&[d("/nonexistent")]).unwrap_err(),
            "error gathering device information while adding custom device \"/nonexistent\": no such file or directory"
        );
        assert!(host_devices(&[d("/etc/hostname")])
            .unwrap_err()
            .ends_with("not a device node"));
    }

    #[test]
    fn shares_clamped() {
        let mut c = cfg();
        c.cpu_shares = Some(-5);
        adapt(&mut c);
        assert_eq!(c.cpu_shares, Some(2));
        c.cpu_shares = Some(1 << 30);
        adapt(&mut c);
        assert_eq!(c.cpu_shares, Some(262_144));
    }
}
