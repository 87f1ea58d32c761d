//! Generates the OCI runtime spec (`config.json`) for a container.

use super::security::Privileges;
use super::user::Identity;
use crate::engine::record::ContainerRecord;
use berth_protocol::{MountPoint, MountType};
use serde_json::{json, Value};
use std::path::Path;

/// Inputs that are not part of the record.
pub struct SpecInputs<'a> {
    pub rootfs: &'a Path,
    pub identity: &'a Identity,
    pub env: &'a [String],
    /// The container's network namespace; `None` shares the engine's
    /// (`--network host`).
    pub netns: Option<&'a Path>,
    /// Files bind-mounted over /etc/hostname, /etc/hosts, /etc/resolv.conf.
    pub etc_files: &'a [(String, &'a Path)],
    pub cgroups_path: String,
    /// RLIMIT_NOFILE for the process (docker's 1048576, capped by what
    /// this process may grant).
    pub nofile: u64,
    /// Whether the host uses the unified cgroup v2 hierarchy.
    pub cgroup_v2: bool,
    /// Whether the memory controller offers swap accounting.
    pub swap_accounting: bool,
    /// The static binary that serves as `--init` (this agent).
    pub init_binary: Option<&'a Path>,
    /// Capabilities, no-new-privileges, seccomp, `--privileged`.
    pub privileges: &'a Privileges,
    /// Namespaces joined (`--ipc container:`, `--pid container:`).
    pub joins: &'a super::namespaces::Joins,
}

fn allow_dev(kind: &str, major: i64, minor: Option<i64>) -> Value {
    // A missing minor means "all minors" (written as `*` for cgroup v1).
    match minor {
        Some(m) => {
            json!({"allow": true, "type": kind, "major": major, "minor": m, "access": "rwm"})
        }
        None => json!({"allow": true, "type": kind, "major": major, "access": "rwm"}),
    }
}

/// Where `--init` puts the tiny init inside the container (docker's path).
pub const INIT_PATH: &str = "/sbin/docker-init";

/// The OCI `process` object (also what `exec` runs).
pub fn process(
    terminal: bool,
    identity: &Identity,
    args: &[String],
    env: &[String],
    cwd: &str,
    nofile: u64,
    privileges: &Privileges,
) -> Value {
    let caps = &privileges.caps;
    let mut p = json!({
        "terminal": terminal,
        "user": {"uid": identity.uid, "gid": identity.gid, "additionalGids": identity.additional_gids},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}]
    });
    // Left out unless set, as docker leaves it.
    if privileges.no_new_privileges {
        p["noNewPrivileges"] = json!(true);
    }
    p
}

/// The OCI mounts for `-v`, `--mount`, `--volumes-from` and image
/// `VOLUME`s, parents before children (as docker sorts them).
pub fn user_mounts(points: &[MountPoint]) -> Vec<Value> {
    let mut points: Vec<&MountPoint> = points.iter().collect();
    points.sort_by_key(|p| p.destination.split('/').filter(|c| !c.is_empty()).count());
    points
        .into_iter()
        .map(|p| {
            let mut options: Vec<String> = match p.kind {
                MountType::Tmpfs => p.tmpfs_options.clone(),
                MountType::Bind | MountType::Volume => {
                    let bind = if p.non_recursive { "bind" } else { "rbind" };
                    let propagation = if p.propagation.is_empty() {
                        "rprivate"
                    } else {
                        p.propagation.as_str()
                    };
                    vec![bind.to_string(), propagation.to_string()]
                }
            };
            if !p.rw {
                options.push("ro".into());
            }
            let (kind, source) = match p.kind {
                MountType::Tmpfs => ("tmpfs", "tmpfs"),
                MountType::Bind | MountType::Volume => ("bind", p.source.as_str()),
            };
            json!({"destination": p.destination, "type": kind, "source": source, "options": options})
        })
        .collect()
}

/// Orders a container's mounts (the engine's `/etc` files, the init, `-v`,
/// `--mount`, `--tmpfs`) as docker does: by the depth of their
/// destination, a stable sort, so that `-v vol:/etc` is mounted before the
/// engine's `/etc/hosts` (not over it), and at the same path a user's mount
/// still comes after the engine's and wins.
fn parents_first(mounts: &mut [Value]) {
    mounts.sort_by_key(|m| {
        m["destination"]
            .as_str()
            .unwrap_or("")
            .split('/')
            .filter(|c| !c.is_empty())
            .count()
    });
}

/// Builds the spec as JSON.
pub fn build(rec: &ContainerRecord, inp: &SpecInputs) -> Value {
    let privs = inp.privileges;
    // docker's --privileged: /sys and the cgroup tree writable.
    let sys_opts: &[&str] = if privs.privileged {
        &["nosuid", "noexec", "nodev", "rw"]
    } else {
        &["nosuid", "noexec", "nodev", "ro"]
    };
    let cgroup_opts: &[&str] = if privs.privileged {
        &["nosuid", "noexec", "nodev", "relatime", "rw"]
    } else {
        &["nosuid", "noexec", "nodev", "relatime", "ro"]
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": cgroup_opts}),
    ];
    // The container's own mounts below: sorted together by depth at the end.
    let system_mounts = mounts.len();
    for (dest, src) in inp.etc_files {
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    }
    let mut args = rec.args.clone();
    if let (true, Some(init)) = (rec.config.init, inp.init_binary) {
        mounts.push(json!({"destination": INIT_PATH, "type": "bind", "source": init, "options": ["rbind", "ro", "rprivate"]}));
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    mounts.extend(user_mounts(&rec.mounts));
    for t in &rec.config.tmpfs {
        let (dest, opts) = t.split_once(':').unwrap_or((t, ""));
        let mut options = vec![
            "nosuid".to_string(),
            "nodev".to_string(),
            "noexec".to_string(),
        ];
        options.extend(opts.split(',').filter(|o| !o.is_empty()).map(String::from));
        mounts.push(
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options}),
        );
    }
    parents_first(&mut mounts[system_mounts..]);
    let mut resources = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            allow_dev("c", 1, Some(3)), allow_dev("c", 1, Some(5)), allow_dev("c", 1, Some(7)),
            allow_dev("c", 1, Some(8)), allow_dev("c", 1, Some(9)), allow_dev("c", 5, Some(0)),
            allow_dev("c", 5, Some(1)), allow_dev("c", 5, Some(2)), allow_dev("c", 136, None),
        ]
    });
    if privs.privileged {
        // docker's --privileged: every device allowed.
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    let c = &rec.config;
    if let Some(m) = c.memory.filter(|m| *m > 0) {
        let mut mem = json!({"limit": m});
        if inp.swap_accounting {
            // Docker's default: swap allowance equal to the memory limit.
            mem["swap"] = json!(m.saturating_mul(2));
        }
        resources["memory"] = mem;
    }
    if let Some(n) = c.nano_cpus.filter(|n| *n > 0) {
        let period: i64 = 100_000;
        resources["cpu"] =
            json!({"period": period, "quota": (n as i128 * period as i128 / 1_000_000_000) as i64});
    }
    if let Some(p) = c.pids_limit.filter(|p| *p > 0) {
        resources["pids"] = json!({"limit": p});
    }
    resource_limits(c, inp.swap_accounting, inp.cgroup_v2, &mut resources);
    let namespaces = namespaces(c, inp);
    ipc_shm(c, inp.joins, &mut mounts);
    let (masked, readonly) = if privs.privileged {
        (json!([]), json!([]))
    } else {
        (
            json!([
                "/proc/asound",
                "/proc/acpi",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/sys/firmware",
                "/sys/devices/virtual/powercap"
            ]),
            json!([
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger"
            ]),
        )
    };
    let mut linux = json!({
        "cgroupsPath": inp.cgroups_path,
        "resources": resources,
        "namespaces": namespaces,
        "maskedPaths": masked,
        "readonlyPaths": readonly
    });
    // No `seccomp` section: the agent compiles the filter once and the
    // container's executor loads it (security::SeccompExecutor).
    if privs.privileged {
        linux["devices"] = json!(super::security::host_devices());
    }
    if !c.sysctls.is_empty() {
        linux["sysctl"] = json!(c.sysctls);
    }
    shm_size(&mut mounts, c.shm_size);
    let mut process = process(
        c.tty,
        inp.identity,
        &args,
        inp.env,
        &rec.workdir,
        inp.nofile,
        privs,
    );
    process["rlimits"] = rlimits(inp.nofile, &c.ulimits);
    json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": inp.rootfs, "readonly": c.read_only},
        // `--uts host`: the host's name, set by no one.
        "hostname": if c.uts_mode.as_deref() == Some("host") { Value::Null } else { json!(rec.hostname) },
        "mounts": mounts,
        "linux": linux
    })
}

/// The process's rlimits: docker's open-files default, then each
/// `--ulimit` (-1 is unlimited), which may replace it.
pub fn rlimits(nofile: u64, ulimits: &[berth_protocol::Ulimit]) -> Value {
    let mut out = vec![("RLIMIT_NOFILE", nofile, nofile)];
    let value = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
    for u in ulimits {
        let Some(kind) = super::resources::rlimit(&u.name) else {
            continue;
        };
        out.retain(|(k, _, _)| *k != kind);
        out.push((kind, value(u.soft), value(u.hard)));
    }
    json!(out
        .into_iter()
        .map(|(k, soft, hard)| json!({"type": k, "hard": hard, "soft": soft}))
        .collect::<Vec<_>>())
}

/// `--shm-size`: the size of the /dev/shm tmpfs (docker's 64 MiB when
/// unset or 0).
fn shm_size(mounts: &mut [Value], size: Option<i64>) {
    let Some(size) = size.filter(|s| *s > 0) else {
        return;
    };
    for m in mounts.iter_mut().filter(|m| m["destination"] == "/dev/shm") {
        if let Some(opts) = m["options"].as_array_mut() {
            for o in opts.iter_mut() {
                if o.as_str().is_some_and(|o| o.starts_with("size=")) {
                    *o = json!(format!("size={size}"));
                }
            }
        }
    }
}

/// `--cpu-shares`, `--cpuset-cpus`, `--memory-swap`,
/// `--memory-reservation` and `--oom-kill-disable` in the OCI
/// `resources` (after `-m`, `--cpus` and `--pids-limit`).
fn resource_limits(
    c: &berth_protocol::ContainerConfig,
    swap_accounting: bool,
    cgroup_v2: bool,
    resources: &mut Value,
) {
    if c.cpu_shares.is_some() || c.cpuset_cpus.is_some() {
        let cpu = resources["cpu"].as_object().cloned().unwrap_or_default();
        let mut cpu = Value::Object(cpu);
        if let Some(s) = c.cpu_shares.filter(|s| *s > 0) {
            cpu["shares"] = json!(s);
        }
        if let Some(set) = c.cpuset_cpus.as_deref().filter(|s| !s.is_empty()) {
            cpu["cpus"] = json!(set);
        }
        resources["cpu"] = cpu;
    }
    let mut memory = resources["memory"]
        .as_object()
        .cloned()
        .map(Value::Object)
        .unwrap_or_else(|| json!({}));
    if let (Some(s), true) = (c.memory_swap.filter(|s| *s != 0), swap_accounting) {
        if c.memory.is_some_and(|m| m > 0) || s == -1 {
            memory["swap"] = json!(s);
        }
    }
    if let Some(r) = c.memory_reservation.filter(|r| *r > 0) {
        memory["reservation"] = json!(r);
    }
    // cgroup v2 has no switch for the OOM killer (docker discards it).
    if c.oom_kill_disable && !cgroup_v2 {
        memory["disableOOMKiller"] = json!(true);
    }
    if memory.as_object().is_some_and(|m| !m.is_empty()) {
        resources["memory"] = memory;
    }
}

/// `--device`: each device node in the container and its cgroup rule
/// ([`super::resources::host_devices`]).
pub fn add_devices(spec: &mut Value, devices: Vec<(Value, Value)>) {
    if devices.is_empty() {
        return;
    }
    let linux = &mut spec["linux"];
    if !linux["devices"].is_array() {
        linux["devices"] = json!([]);
    }
    for (node, rule) in devices {
        let path = node["path"].clone();
        if let Some(list) = linux["devices"].as_array_mut() {
            // A --device over one --privileged already gives replaces it.
            list.retain(|d| d["path"] != path);
            list.push(node);
        }
        if let Some(rules) = linux["resources"]["devices"].as_array_mut() {
            rules.push(rule);
        }
    }
}

/// The OCI namespaces: new ones, or a path to join; `host` modes leave
/// theirs out (the process stays in the agent's).
fn namespaces(c: &berth_protocol::ContainerConfig, inp: &SpecInputs) -> Vec<Value> {
    let host = |m: &Option<String>| m.as_deref() == Some("host");
    let mut namespaces = Vec::new();
    match &inp.joins.pid {
        Some(path) => namespaces.push(json!({"type": "pid", "path": path})),
        None if host(&c.pid_mode) => {}
        None => namespaces.push(json!({"type": "pid"})),
    }
    if let Some(ns) = inp.netns {
        namespaces.push(json!({"type": "network", "path": ns}));
    }
    match &inp.joins.ipc {
        Some(path) => namespaces.push(json!({"type": "ipc", "path": path})),
        None if host(&c.ipc_mode) => {}
        None => namespaces.push(json!({"type": "ipc"})),
    }
    if !host(&c.uts_mode) {
        namespaces.push(json!({"type": "uts"}));
    }
    namespaces.push(json!({"type": "mount"}));
    // As docker: a private cgroup namespace on cgroup v2 (the container
    // sees its own limits at /sys/fs/cgroup), the host's on v1; or as
    // `--cgroupns` says.
    let cgroupns = match c.cgroupns_mode.as_deref() {
        Some("private") => true,
        Some("host") => false,
        _ => inp.cgroup_v2,
    };
    if cgroupns {
        namespaces.push(json!({"type": "cgroup"}));
    }
    namespaces
}

/// `/dev/shm` by `--ipc`: none for `none`; the host's for `host`; the
/// donor's for `container:` (docker's daemon does the same).
fn ipc_shm(
    c: &berth_protocol::ContainerConfig,
    joins: &super::namespaces::Joins,
    mounts: &mut Vec<Value>,
) {
    let shm = mounts.iter().position(|m| m["destination"] == "/dev/shm");
    let Some(i) = shm else { return };
    let source = match (c.ipc_mode.as_deref(), &joins.shm) {
        (_, Some(src)) => src.clone(),
        (Some("host"), None) => "/dev/shm".into(),
        (Some("none"), None) => {
            mounts.remove(i);
            return;
        }
        _ => return,
    };
    mounts[i] = json!({"destination": "/dev/shm", "type": "bind", "source": source, "options": ["rbind", "rprivate"]});
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(kind: MountType, source: &str, dest: &str, rw: bool) -> MountPoint {
        MountPoint {
            kind,
            name: None,
            source: source.into(),
            destination: dest.into(),
            mode: String::new(),
            rw,
            propagation: if kind == MountType::Bind {
                "rslave".into()
            } else {
                String::new()
            },
            anonymous: false,
            non_recursive: false,
            copy_up: false,
            tmpfs_options: vec!["nosuid".into(), "size=1024".into()],
        }
    }

    #[test]
    fn a_volume_over_etc_goes_below_the_engines_etc_files() {
        let mut m = vec![
            json!({"destination": "/etc/hosts", "source": "engine-hosts"}),
            json!({"destination": "/etc/resolv.conf", "source": "engine-resolv"}),
            json!({"destination": "/sbin/docker-init", "source": "init"}),
            json!({"destination": "/etc", "source": "vol"}),
            json!({"destination": "/etc/hosts", "source": "user-hosts"}),
            json!({"destination": "/data", "source": "tmpfs"}),
        ];
        parents_first(&mut m);
        let order: Vec<&str> = m.iter().map(|m| m["source"].as_str().unwrap()).collect();
        assert_eq!(
            order,
            [
                "vol",
                "tmpfs",
                "engine-hosts",
                "engine-resolv",
                "init",
                "user-hosts"
            ]
        );
    }

    #[test]
    fn user_mounts_parents_first_with_options() {
        let m = user_mounts(&[
            point(MountType::Volume, "/v/_data", "/a/b", true),
            point(MountType::Bind, "/src", "/a", false),
            point(MountType::Tmpfs, "", "/t", true),
        ]);
        assert_eq!(m[0]["destination"], "/a");
        assert_eq!(m[0]["options"], json!(["rbind", "rslave", "ro"]));
        assert_eq!(m[1]["destination"], "/t");
        assert_eq!(m[1]["type"], "tmpfs");
        assert_eq!(m[1]["options"], json!(["nosuid", "size=1024"]));
        assert_eq!(m[2]["source"], "/v/_data");
        assert_eq!(m[2]["options"], json!(["rbind", "rprivate"]));
    }
}
