//! The service keys of `run`'s resource, namespace and lifecycle flags
//! (`ulimits`, `shm_size`, `sysctls`, `devices`, `group_add`,
//! `cpu_shares`, `cpuset`, `mem_limit`, `memswap_limit`,
//! `mem_reservation`, `oom_kill_disable`, `ipc`, `pid`, `uts`, `cgroup`,
//! `platform`, `pull_policy`, `logging`): their shapes checked as
//! docker-compose 1.29's schema checks them (with its words), kept as
//! written in [`Service::other`] (so `config` prints them and override
//! files merge them as any other key), and read back typed by the
//! accessors below. What the values mean (ulimit names, sizes, namespaced
//! sysctls) is checked where they become a container's config.

use super::Cx;
use crate::error::ComposeError;
use crate::model::Service;
use crate::value::Value;
use crate::yaml::{Kind, Node, Scalar};
use std::collections::BTreeMap;

/// The keys this module checks.
pub(super) const KEYS: &[&str] = &[
    "ulimits",
    "shm_size",
    "sysctls",
    "devices",
    "group_add",
    "cpu_shares",
    "cpuset",
    "mem_limit",
    "memswap_limit",
    "mem_reservation",
    "oom_kill_disable",
    "ipc",
    "pid",
    "uts",
    "cgroup",
    "platform",
    "pull_policy",
    "logging",
];

/// `pull_policy`'s values (`if_not_present` is compose's older name
/// for `missing`).
const PULL_POLICIES: &[&str] = &["always", "never", "if_not_present", "build", "missing"];

/// An integer as docker-compose converts one (a YAML int, or a string
/// of digits).
fn int(n: &Node) -> Option<i64> {
    match n.typed()? {
        Scalar::Int(i) => Some(i),
        Scalar::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn number_or_string(cx: &Cx, n: &Node, p: &str) -> Result<(), ComposeError> {
    match n.typed() {
        Some(Scalar::Int(_) | Scalar::Float(_) | Scalar::Str(_)) => Ok(()),
        _ => Err(cx.err(
            n,
            p,
            "contains an invalid type, it should be a number, or a string",
        )),
    }
}

fn string(cx: &Cx, n: &Node, p: &str) -> Result<(), ComposeError> {
    match n.typed() {
        Some(Scalar::Str(_)) => Ok(()),
        _ => Err(cx.err(n, p, "contains an invalid type, it should be a string")),
    }
}

fn ulimits(cx: &Cx, n: &Node, p: &str) -> Result<(), ComposeError> {
    for (k, v) in cx.map(n, p)? {
        let name = k.text().unwrap_or_default();
        let kp = format!("{p}.{name}");
        let not_int = |x: &Node| {
            cx.err(
                x,
                &kp,
                format!("{:?} is not a valid integer", x.text().unwrap_or_default()),
            )
        };
        match &v.kind {
            Kind::Scalar { .. } => {
                int(v).ok_or_else(|| not_int(v))?;
            }
            Kind::Map(m) => {
                for (fk, _) in m {
                    let f = fk.text().unwrap_or_default();
                    if f != "soft" && f != "hard" {
                        return Err(cx.err(fk, &kp, format!("contains unsupported option: '{f}'")));
                    }
                }
                let mut vals = [0i64; 2];
                for (i, f) in ["soft", "hard"].into_iter().enumerate() {
                    let x = v
                        .get(f)
                        .ok_or_else(|| cx.err(v, &kp, format!("'{f}' is a required property")))?;
                    vals[i] = int(x).ok_or_else(|| not_int(x))?;
                }
                if vals[0] > vals[1] {
                    return Err(cx.err(
                        v,
                        &kp,
                        "'soft' value can not be greater than 'hard' value",
                    ));
                }
            }
            Kind::Seq(_) => {
                return Err(cx.err(
                    v,
                    &kp,
                    "contains an invalid type, it should be an integer, or an object",
                ))
            }
        }
    }
    Ok(())
}

fn devices(cx: &Cx, n: &Node, p: &str) -> Result<(), ComposeError> {
    for d in cx.seq(n, p)? {
        match &d.kind {
            // The Compose Specification's long form.
            Kind::Map(m) => {
                for (k, v) in m {
                    let f = k.text().unwrap_or_default();
                    if !matches!(f, "source" | "target" | "permissions") {
                        return Err(cx.err(k, p, format!("contains unsupported option: '{f}'")));
                    }
                    string(cx, v, &format!("{p}.{f}"))?;
                }
                if d.get("source").is_none() {
                    return Err(cx.err(d, p, "'source' is a required property"));
                }
            }
            _ => string(cx, d, p)?,
        }
    }
    Ok(())
}

fn logging(cx: &Cx, n: &Node, p: &str) -> Result<(), ComposeError> {
    for (k, v) in cx.map(n, p)? {
        let f = k.text().unwrap_or_default();
        let kp = format!("{p}.{f}");
        match f {
            "driver" => string(cx, v, &kp)?,
            "options" => {
                cx.kv(v, &kp)?;
            }
            x if x.starts_with("x-") => {}
            _ => {
                return Err(cx.err(
                    k,
                    p,
                    format!("value '{f}' does not match any of the regexes: '^x-'"),
                ))
            }
        }
    }
    Ok(())
}

/// Checks one of [`KEYS`] at `p` (`services.NAME.KEY`).
pub(super) fn check(cx: &Cx, key: &str, n: &Node, p: &str) -> Result<(), ComposeError> {
    match key {
        "ulimits" => ulimits(cx, n, p),
        "shm_size" | "cpu_shares" | "mem_limit" | "memswap_limit" | "mem_reservation" => {
            number_or_string(cx, n, p)
        }
        "sysctls" => match &n.kind {
            Kind::Scalar { .. } => Err(cx.err(
                n,
                p,
                "contains an invalid type, it should be an object, or an array",
            )),
            _ => cx.kv(n, p).map(drop),
        },
        "devices" => devices(cx, n, p),
        "group_add" => {
            for g in cx.seq(n, p)? {
                match g.typed() {
                    Some(Scalar::Int(_) | Scalar::Str(_)) => {}
                    _ => {
                        return Err(cx.err(
                            g,
                            p,
                            "contains an invalid type, it should be a string, or a number",
                        ))
                    }
                }
            }
            Ok(())
        }
        "oom_kill_disable" => cx.bool(n, p).map(drop),
        "cgroup" => {
            string(cx, n, p)?;
            let v = n.text().unwrap_or_default();
            if v == "host" || v == "private" {
                Ok(())
            } else {
                Err(cx.err(
                    n,
                    p,
                    format!("value '{v}' is not one of ['host', 'private']"),
                ))
            }
        }
        "pull_policy" => {
            string(cx, n, p)?;
            let v = n.text().unwrap_or_default();
            if PULL_POLICIES.contains(&v) {
                Ok(())
            } else {
                Err(cx.err(
                    n,
                    p,
                    format!("value '{v}' is not one of ['always', 'never', 'if_not_present', 'build', 'missing']"),
                ))
            }
        }
        "logging" => logging(cx, n, p),
        // cpuset, ipc, pid, uts, platform
        _ => string(cx, n, p),
    }
}

/// `pull_policy:` as `up` follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull before every `up`.
    Always,
    /// Never pull: a missing image is an error.
    Never,
    /// Pull when missing (compose's default; `if_not_present` too).
    Missing,
    /// Build before every `up`.
    Build,
}

/// One `ulimits:` entry: `nofile: 1024` is soft and hard 1024.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UlimitValue {
    pub soft: i64,
    pub hard: i64,
}

fn value_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A scalar as text (`64m`, `1048576`, `true`).
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Service {
    /// A scalar key kept as written, as text (`shm_size`, `cpu_shares`,
    /// `cpuset`, `mem_limit`, `memswap_limit`, `mem_reservation`, `ipc`,
    /// `pid`, `uts`, `cgroup`, `platform`).
    pub fn text_key(&self, key: &str) -> Option<String> {
        self.other.get(key).and_then(value_text)
    }

    /// `ulimits:` in both forms, by name.
    pub fn ulimits(&self) -> BTreeMap<String, UlimitValue> {
        let Some(Value::Map(m)) = self.other.get("ulimits") else {
            return BTreeMap::new();
        };
        m.iter()
            .filter_map(|(name, v)| {
                let u = match v {
                    Value::Map(sh) => UlimitValue {
                        soft: value_int(sh.get("soft")?)?,
                        hard: value_int(sh.get("hard")?)?,
                    },
                    single => {
                        let n = value_int(single)?;
                        UlimitValue { soft: n, hard: n }
                    }
                };
                Some((name.clone(), u))
            })
            .collect()
    }

    /// `sysctls:` (a list of `k=v` is made a mapping at load).
    pub fn sysctls(&self) -> BTreeMap<String, String> {
        let Some(Value::Map(m)) = self.other.get("sysctls") else {
            return BTreeMap::new();
        };
        m.iter()
            .map(|(k, v)| (k.clone(), value_text(v).unwrap_or_default()))
            .collect()
    }

    /// `devices:` as `--device` values (`HOST[:CONTAINER[:PERMISSIONS]]`;
    /// the long form joined the same way).
    pub fn devices(&self) -> Vec<String> {
        let Some(Value::Seq(items)) = self.other.get("devices") else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|d| match d {
                Value::Map(m) => {
                    let mut s = value_text(m.get("source")?)?;
                    if let Some(t) = m.get("target").and_then(value_text) {
                        s = format!("{s}:{t}");
                    }
                    if let Some(p) = m.get("permissions").and_then(value_text) {
                        s = format!("{s}:{p}");
                    }
                    Some(s)
                }
                other => value_text(other),
            })
            .collect()
    }

    /// `group_add:` as names or numbers.
    pub fn group_add(&self) -> Vec<String> {
        match self.other.get("group_add") {
            Some(Value::Seq(items)) => items.iter().filter_map(value_text).collect(),
            _ => Vec::new(),
        }
    }

    /// `oom_kill_disable: true`.
    pub fn oom_kill_disable(&self) -> bool {
        match self.other.get("oom_kill_disable") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Str(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }

    /// `pull_policy:`; None when not given.
    pub fn pull_policy(&self) -> Option<PullPolicy> {
        match self.text_key("pull_policy")?.as_str() {
            "always" => Some(PullPolicy::Always),
            "never" => Some(PullPolicy::Never),
            "build" => Some(PullPolicy::Build),
            _ => Some(PullPolicy::Missing),
        }
    }

    /// `logging.driver`.
    pub fn log_driver(&self) -> Option<String> {
        match self.other.get("logging") {
            Some(Value::Map(m)) => m.get("driver").and_then(value_text),
            _ => None,
        }
    }

    /// `logging.options`, values as text.
    pub fn log_options(&self) -> BTreeMap<String, String> {
        match self.other.get("logging") {
            Some(Value::Map(m)) => match m.get("options") {
                Some(Value::Map(o)) => o
                    .iter()
                    .map(|(k, v)| (k.clone(), value_text(v).unwrap_or_default()))
                    .collect(),
                _ => BTreeMap::new(),
            },
            _ => BTreeMap::new(),
        }
    }

    /// The service whose container `ipc:` or `pid:` joins
    /// (`service:NAME`).
    pub fn joined_service(&self, key: &str) -> Option<String> {
        self.text_key(key)?
            .strip_prefix("service:")
            .map(str::to_string)
    }
}
