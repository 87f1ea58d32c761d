//! The typed project model.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use crate::error::Location;
use crate::value::Value;

/// A loaded, merged and interpolated compose project.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// Project name (`-p`, COMPOSE_PROJECT_NAME, or the directory name).
    pub name: String,
    /// The project directory: relative paths resolve against it.
    pub working_dir: PathBuf,
    /// The files that were loaded, in merge order.
    pub files: Vec<PathBuf>,
    /// The `version` key as written (`"1"` for the version-1 layout).
    pub version: Option<String>,
    /// True for the version-1 layout (services at the top level).
    pub legacy_v1: bool,
    pub services: BTreeMap<String, Service>,
    pub volumes: BTreeMap<String, VolumeDef>,
    pub networks: BTreeMap<String, NetworkDef>,
    /// Profiles enabled at load time.
    pub profiles: Vec<String>,
    /// The environment interpolation used (given environment over `.env`).
    pub environment: BTreeMap<String, String>,
    /// Other top-level sections (`secrets`, `configs`), kept as written.
    pub other: BTreeMap<String, Value>,
}

/// One service, after merging, `extends` and path resolution.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Service {
    pub name: String,
    pub build: Option<Build>,
    pub image: Option<String>,
    pub command: Option<Command>,
    pub entrypoint: Option<Command>,
    /// From `env_file` then `environment`; `Unset` is a bare name whose
    /// value the environment did not give.
    pub environment: BTreeMap<String, EnvValue>,
    /// `env_file` paths (absolute); their contents are already in `environment`.
    pub env_file: Vec<PathBuf>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Mount>,
    pub tmpfs: Vec<String>,
    pub depends_on: BTreeMap<String, Dependency>,
    pub links: Vec<String>,
    /// Network name -> aliases etc. (None when listed without options).
    pub networks: BTreeMap<String, Option<ServiceNetwork>>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Option<String>,
    /// `deploy` as written (`deploy.replicas` is read by [`Service::replicas`]).
    pub deploy: Option<Value>,
    pub scale: Option<u64>,
    pub labels: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub init: Option<bool>,
    pub tty: Option<bool>,
    pub stdin_open: Option<bool>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<String>,
    pub profiles: Vec<String>,
    /// Other Compose Specification keys (and `x-` keys), kept as written.
    pub other: BTreeMap<String, Value>,
    /// Where each top-level key of the service was written (the last file
    /// that set it), for error messages.
    pub key_locations: BTreeMap<String, Location>,
}

impl Service {
    /// Number of containers to run: `scale`, else `deploy.replicas`, else 1.
    pub fn replicas(&self) -> u64 {
        if let Some(s) = self.scale {
            return s;
        }
        if let Some(Value::Map(d)) = &self.deploy {
            if let Some(Value::Int(n)) = d.get("replicas") {
                return (*n).max(0) as u64;
            }
        }
        1
    }

    /// The environment as strings, without unset names.
    pub fn environment_strings(&self) -> BTreeMap<String, String> {
        self.environment
            .iter()
            .filter_map(|(k, v)| v.as_string().map(|s| (k.clone(), s)))
            .collect()
    }

    /// Whether the service is enabled with the given profiles.
    pub fn enabled_for(&self, profiles: &[String]) -> bool {
        self.profiles.is_empty()
            || profiles
                .iter()
                .any(|p| p == "*" || self.profiles.contains(p))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum EnvValue {
    Unset,
    Str(String),
    Int(i64),
    Float(f64),
}

impl EnvValue {
    pub fn as_string(&self) -> Option<String> {
        match self {
            EnvValue::Unset => None,
            EnvValue::Str(s) => Some(s.clone()),
            EnvValue::Int(i) => Some(i.to_string()),
            EnvValue::Float(f) => Some(f.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Build {
    /// Absolute context directory (or a URL, kept as written).
    pub context: String,
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// Other build keys (labels, cache_from, network, shm_size, ...).
    pub other: BTreeMap<String, Value>,
}

/// `command` / `entrypoint`: a shell string or an exec list.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// A published or exposed port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Port {
    pub target: u16,
    pub published: Option<u16>,
    pub host_ip: Option<String>,
    /// As written; None means tcp.
    pub protocol: Option<String>,
    pub mode: Option<String>,
}

/// A volume, bind mount or tmpfs of a service.
#[derive(Debug, Clone, PartialEq)]
pub enum Mount {
    /// Short syntax: `[source:]target[:mode]`; source absolute for binds.
    Short {
        source: Option<String>,
        target: String,
        mode: String,
    },
    /// Long syntax.
    Long {
        kind: MountKind,
        source: Option<String>,
        target: String,
        read_only: bool,
        consistency: Option<String>,
        /// The `bind:` / `volume:` / `tmpfs:` options map.
        options: Option<Value>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
    Npipe,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Npipe => "npipe",
        }
    }
}

impl Mount {
    pub fn target(&self) -> &str {
        match self {
            Mount::Short { target, .. } | Mount::Long { target, .. } => target,
        }
    }

    /// The named volume this mount uses, if any.
    pub fn named_volume(&self) -> Option<&str> {
        match self {
            Mount::Short {
                source: Some(s), ..
            } if !s.starts_with(['.', '/', '~']) => Some(s),
            Mount::Long {
                kind: MountKind::Volume,
                source: Some(s),
                ..
            } => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "service_started",
            Condition::Healthy => "service_healthy",
            Condition::CompletedSuccessfully => "service_completed_successfully",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    pub condition: Condition,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceNetwork {
    pub aliases: Vec<String>,
    /// Other keys (ipv4_address, ...), kept as written.
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Healthcheck {
    /// `["NONE"]` when disabled.
    pub test: Option<Command>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub retries: Option<u64>,
}

/// A duration in nanoseconds, as `1m30s` / `100ms` parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub u64);

impl Duration {
    /// Parses Go-style `1h2m3s4ms5us6ns` (parts in that order, decimals allowed).
    pub fn parse(s: &str) -> Option<Duration> {
        let units: [(&str, f64); 6] = [
            ("h", 3600e9),
            ("m", 60e9),
            ("s", 1e9),
            ("ms", 1e6),
            ("us", 1e3),
            ("ns", 1.0),
        ];
        let mut rest = s.trim();
        if rest.is_empty() {
            return None;
        }
        let mut total = 0f64;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let n = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if n == 0 {
                return None;
            }
            let num: f64 = rest[..n].parse().ok()?;
            rest = &rest[n..];
            let u = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = &rest[..u];
            let unit = if unit == "µs" { "us" } else { unit };
            let idx = units[next_unit..]
                .iter()
                .position(|(name, _)| *name == unit)?
                + next_unit;
            total += num * units[idx].1;
            next_unit = idx + 1;
            rest = &rest[u..];
        }
        if !total.is_finite() || total < 0.0 || total > u64::MAX as f64 {
            return None;
        }
        Some(Duration(total as u64))
    }

    /// docker-compose 1.29's rendering: the largest unit that divides evenly,
    /// climbing ns, us, ms, s, m, h and stopping at the first that does not.
    pub fn render(self) -> String {
        let mut value = self.0;
        let mut unit = "ns";
        for (div, name) in [
            (1000, "us"),
            (1000, "ms"),
            (1000, "s"),
            (60, "m"),
            (60, "h"),
        ] {
            if value % div == 0 {
                value /= div;
                unit = name;
            } else {
                break;
            }
        }
        format!("{value}{unit}")
    }
}

/// A top-level volume.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VolumeDef {
    pub external: bool,
    /// Explicit `name:` (for external ones, the name defaults to the key).
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub other: BTreeMap<String, Value>,
}

/// A top-level network.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkDef {
    pub external: bool,
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub internal: Option<bool>,
    pub other: BTreeMap<String, Value>,
}

/// Something the caller should show the user; loading went on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The file uses the version-1 layout (services at the top level).
    LegacyV1 { file: PathBuf },
    /// A variable was not set; it was replaced by an empty string.
    UnsetVariable { name: String },
    /// `links` is obsolete: services reach each other by name.
    Links { service: String },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::LegacyV1 { file } => write!(
                f,
                "{}: the version-1 layout (services at the top level) is deprecated; put them under `services:`",
                file.display()
            ),
            Warning::UnsetVariable { name } => write!(
                f,
                "the {name} variable is not set; defaulting to a blank string"
            ),
            Warning::Links { service } => write!(
                f,
                "service {service:?}: `links` is obsolete; services reach each other by name"
            ),
        }
    }
}
