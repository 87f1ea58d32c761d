//! A container's privileges: its capabilities (docker's default set,
//! `--cap-add`, `--cap-drop`, `--privileged`), `no-new-privileges`, and
//! its seccomp filter (docker's default profile, `seccomp=unconfined`, or
//! a custom profile), resolved the way docker's daemon resolves them. The
//! same code runs natively and in the machine VM.

use super::seccomp::{self, Profile, ProfileError, Target};
use berth_protocol::ContainerConfig;
use caps::Capability;
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};
use std::str::FromStr;

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The seccomp choice of `--security-opt seccomp=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// docker's default profile (no option, or `seccomp=builtin`).
    Default,
    Unconfined,
    /// A custom profile's JSON.
    Custom(String),
}

/// `--security-opt` as docker's daemon reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
}

/// docker's daemon `parseSecurityOpt`, with its messages. `label=` and
/// `apparmor=` are accepted and have no effect (berth uses neither
/// SELinux nor AppArmor).
pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts, String> {
    let mut out = SecurityOpts {
        no_new_privileges: false,
        seccomp: SeccompChoice::Default,
    };
    for opt in opts {
        if opt == "no-new-privileges" {
            out.no_new_privileges = true;
            continue;
        }
        if opt == "disable" {
            continue;
        }
        let split = if opt.contains('=') {
            opt.split_once('=')
        } else {
            opt.split_once(':')
        };
        let Some((k, v)) = split else {
            return Err(format!("invalid --security-opt 1: {opt:?}"));
        };
        match k {
            "label" | "apparmor" => {}
            "seccomp" => {
                out.seccomp = match v {
                    "unconfined" => SeccompChoice::Unconfined,
                    "builtin" | "" => SeccompChoice::Default,
                    json => SeccompChoice::Custom(json.to_string()),
                }
            }
            "no-new-privileges" => {
                out.no_new_privileges =
                    parse_go_bool(v).ok_or_else(|| format!("invalid --security-opt 2: {opt:?}"))?
            }
            _ => return Err(format!("invalid --security-opt 2: {opt:?}")),
        }
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The capabilities this kernel has, by number.
pub fn all_caps() -> Vec<String> {
    let set = caps::runtime::procfs_all_supported(None)
        .unwrap_or_else(|_| caps::runtime::thread_all_supported());
    let mut list: Vec<Capability> = set.into_iter().collect();
    list.sort_by_key(|c| c.index());
    list.iter().map(|c| c.to_string()).collect()
}

/// The capabilities a container can be given here: this kernel's, less
/// any this engine's own bounding set lacks (an engine that runs in a
/// restricted environment cannot hand out more than it has; docker's
/// `--privileged` fails to start there instead).
pub fn grantable_caps(known: &[String]) -> Vec<String> {
    match caps::read(None, caps::CapSet::Bounding) {
        Ok(have) => known
            .iter()
            .filter(|c| Capability::from_str(c).is_ok_and(|c| have.contains(&c)))
            .cloned()
            .collect(),
        Err(_) => known.to_vec(),
    }
}

/// docker's `NormalizeLegacyCapabilities`: upper case, a `CAP_` prefix
/// where missing, `ALL` kept; an unknown name is refused with docker's
/// message (`field` is `CapAdd` or `CapDrop`).
pub fn normalize_caps(
    list: &[String],
    field: &str,
    known: &[String],
) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let mut c = c.to_ascii_uppercase();
        if c == "ALL" {
            out.push(c);
            continue;
        }
        if !c.starts_with("CAP_") {
            c = format!("CAP_{c}");
        }
        if !known.contains(&c) {
            return Err(format!("invalid {field}: unknown capability: {c:?}"));
        }
        out.push(c);
    }
    Ok(out)
}

/// docker's `TweakCapabilities`: the container's capability set.
/// `known` are the names accepted, `grantable` what `ALL` and
/// `--privileged` give ([`grantable_caps`]).
pub fn capabilities(
    cfg: &ContainerConfig,
    known: &[String],
    grantable: &[String],
) -> Result<Vec<String>, String> {
    if cfg.privileged {
        return Ok(grantable.to_vec());
    }
    let add = normalize_caps(&cfg.cap_add, "CapAdd", known)?;
    let drop = normalize_caps(&cfg.cap_drop, "CapDrop", known)?;
    let all = "ALL".to_string();
    let mut caps: Vec<String> = if add.contains(&all) {
        grantable
            .iter()
            .filter(|c| !drop.contains(c))
            .cloned()
            .collect()
    } else if drop.contains(&all) {
        add.clone()
    } else {
        let mut v: Vec<String> = DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect();
        v.extend(add.iter().cloned());
        v
    };
    let mut seen = std::collections::HashSet::new();
    caps.retain(|c| seen.insert(c.clone()));
    Ok(caps)
}

/// Everything a container's processes get: capabilities, no-new-privs,
/// seccomp, and whether it is privileged.
#[derive(Debug, Clone)]
pub struct Privileges {
    pub caps: Vec<String>,
    pub no_new_privileges: bool,
    pub seccomp: Option<LinuxSeccomp>,
    pub privileged: bool,
}

impl Privileges {
    /// Resolves a container's settings on this machine; the error is the
    /// refusal docker's daemon gives (checked at create, so a stored
    /// container resolves again at each start).
    pub fn resolve(cfg: &ContainerConfig) -> Result<Privileges, String> {
        let known = all_caps();
        let caps = capabilities(cfg, &known, &grantable_caps(&known))?;
        let opts = parse_security_opts(&cfg.security_opt)?;
        let seccomp = if cfg.privileged {
            None
        } else {
            let profile: Result<Option<Profile>, ProfileError> = match &opts.seccomp {
                SeccompChoice::Unconfined => Ok(None),
                SeccompChoice::Default => Ok(Some(seccomp::default_profile())),
                SeccompChoice::Custom(json) => seccomp::parse_profile(json).map(Some),
            };
            match profile.map_err(|e| e.to_string())? {
                Some(p) => {
                    seccomp::resolve(&p, &caps, Target::native()).map_err(|e| e.to_string())?
                }
                None => None,
            }
        };
        Ok(Privileges {
            caps,
            no_new_privileges: opts.no_new_privileges,
            seccomp,
            privileged: cfg.privileged,
        })
    }
}

/// Host device nodes `--privileged` gives the container, as docker's
/// (runc's `HostDevices`): every character and block device under /dev,
/// except the pseudo-file-system directories and the nodes every
/// container gets anyway.
pub fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    const SKIP_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
    const DEFAULT_NODES: &[&str] = &[
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/console",
        "/dev/ptmx",
    ];
    let mut out = Vec::new();
    let mut stack = vec![(std::path::PathBuf::from("/dev"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                let name = e.file_name();
                if depth < 8 && !SKIP_DIRS.contains(&name.to_string_lossy().as_ref()) {
                    stack.push((path, depth + 1));
                }
                continue;
            }
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            let Some(p) = path.to_str() else { continue };
            if DEFAULT_NODES.contains(&p) {
                continue;
            }
            let rdev = meta.rdev();
            out.push(json!({
                "path": p, "type": kind,
                "major": libc::major(rdev), "minor": libc::minor(rdev),
                "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid()
            }));
        }
    }
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    out
}

/// Loads the container's seccomp filter, compiled once by the agent
/// ([`seccomp::compile_cached`]), right before the container's command
/// runs, then runs it as libcontainer's default executor does. Used for
/// the container's own process and for processes that join it (`exec`,
/// health probes): libcontainer 0.7 gives the latter no seccomp section,
/// where runc (docker) applies the container's filter to them, and it
/// compiles a spec's filter afresh in every container's init.
///
/// Loading a filter needs `CAP_SYS_ADMIN` or no-new-privileges, and this
/// runs after libcontainer set the process's capabilities. So, where the
/// container has neither, [`seccomp_executor`] gives the process
/// `CAP_SYS_ADMIN` in its effective and permitted sets only (never the
/// bounding set); this executor drops it again once the filter is loaded,
/// and `execve` could not carry it over anyway: it recomputes the
/// permitted set from the bounding set (root) or clears it (other users).
#[derive(Clone)]
pub struct SeccompExecutor {
    filter: seccomp::Compiled,
    drop_admin: bool,
}

impl libcontainer::workload::Executor for SeccompExecutor {
    fn exec(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        use libcontainer::workload::ExecutorError;
        seccomp::load(&self.filter)
            .map_err(|e| ExecutorError::Other(format!("loading the seccomp filter: {e}")))?;
        if self.drop_admin {
            for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
                caps::drop(None, set, Capability::CAP_SYS_ADMIN).map_err(|e| {
                    ExecutorError::Other(format!("dropping CAP_SYS_ADMIN after seccomp: {e}"))
                })?;
            }
        }
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}

/// The executor that applies the container's seccomp filter (`None` when
/// the container has none), with `process`'s capabilities adjusted for it.
/// `cache` is where compiled filters are kept.
pub fn seccomp_executor(
    privileges: &Privileges,
    process: &mut Value,
    cache: &std::path::Path,
) -> Result<Option<SeccompExecutor>, String> {
    let Some(filter) = &privileges.seccomp else {
        return Ok(None);
    };
    let filter = seccomp::compile_cached(filter, cache)?;
    let admin = "CAP_SYS_ADMIN";
    let drop_admin = !privileges.no_new_privileges && !privileges.caps.iter().any(|c| c == admin);
    if drop_admin {
        for set in ["effective", "permitted"] {
            if let Some(list) = process["capabilities"][set].as_array_mut() {
                list.push(json!(admin));
            }
        }
    }
    Ok(Some(SeccompExecutor { filter, drop_admin }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docker's default set plus three more the engine could grant.
    fn known() -> Vec<String> {
        DEFAULT_CAPS
            .iter()
            .chain(&["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_TIME"])
            .map(|s| s.to_string())
            .collect()
    }

    fn cfg(add: &[&str], drop: &[&str]) -> ContainerConfig {
        ContainerConfig {
            cap_add: add.iter().map(|s| s.to_string()).collect(),
            cap_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn capability_arithmetic_as_dockers() {
        let k = known();
        let c = capabilities(&cfg(&[], &[]), &k, &k).unwrap();
        assert_eq!(c.len(), DEFAULT_CAPS.len());
        let c = capabilities(&cfg(&["net_admin", "CAP_SYS_TIME"], &["chown"]), &k, &k).unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".into()) && c.contains(&"CAP_SYS_TIME".into()));
        assert!(!c.contains(&"CAP_CHOWN".into()));
        assert_eq!(
            capabilities(&cfg(&["chown"], &["all"]), &k, &k).unwrap(),
            vec!["CAP_CHOWN"]
        );
        assert!(capabilities(&cfg(&[], &["ALL"]), &k, &k)
            .unwrap()
            .is_empty());
        let c = capabilities(&cfg(&["ALL"], &["CAP_SYS_ADMIN"]), &k, &k).unwrap();
        assert_eq!(c.len(), k.len() - 1);
        assert_eq!(
            capabilities(&cfg(&["foo"], &[]), &k, &k).unwrap_err(),
            "invalid CapAdd: unknown capability: \"CAP_FOO\""
        );
        assert_eq!(
            capabilities(&cfg(&[], &["cap_bar"]), &k, &k).unwrap_err(),
            "invalid CapDrop: unknown capability: \"CAP_BAR\""
        );
        let mut p = cfg(&["foo"], &[]);
        p.privileged = true;
        assert_eq!(capabilities(&p, &k, &k).unwrap(), k);
    }

    #[test]
    fn security_opts_as_dockers_daemon() {
        let p =
            |v: &[&str]| parse_security_opts(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(p(&["no-new-privileges"]).unwrap().no_new_privileges);
        assert!(p(&["no-new-privileges:true"]).unwrap().no_new_privileges);
        assert!(!p(&["no-new-privileges=false"]).unwrap().no_new_privileges);
        assert_eq!(
            p(&["no-new-privileges=maybe"]).unwrap_err(),
            "invalid --security-opt 2: \"no-new-privileges=maybe\""
        );
        assert_eq!(
            p(&["seccomp=unconfined"]).unwrap().seccomp,
            SeccompChoice::Unconfined
        );
        assert_eq!(
            p(&["seccomp={\"a\":1}"]).unwrap().seccomp,
            SeccompChoice::Custom("{\"a\":1}".into())
        );
        assert_eq!(
            p(&["foo"]).unwrap_err(),
            "invalid --security-opt 1: \"foo\""
        );
        assert_eq!(
            p(&["foo=bar"]).unwrap_err(),
            "invalid --security-opt 2: \"foo=bar\""
        );
        assert!(p(&["label=disable", "apparmor=unconfined"]).is_ok());
    }

    #[test]
    fn privileged_and_unconfined_have_no_filter() {
        let mut c = ContainerConfig {
            security_opt: vec!["seccomp=unconfined".into()],
            ..Default::default()
        };
        assert!(Privileges::resolve(&c).unwrap().seccomp.is_none());
        c.security_opt.clear();
        assert!(Privileges::resolve(&c).unwrap().seccomp.is_some());
        c.privileged = true;
        c.security_opt = vec!["seccomp={\"defaultAction\":\"BAD\"}".into()];
        let p = Privileges::resolve(&c).unwrap();
        assert!(p.seccomp.is_none());
        assert!(p.caps.contains(&"CAP_SYS_ADMIN".to_string()));
        c.privileged = false;
        assert_eq!(
            Privileges::resolve(&c).unwrap_err(),
            "seccomp profile: unknown action \"BAD\""
        );
    }
}
