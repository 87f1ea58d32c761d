//! Loading: file lookup, `.env`, interpolation, conversion to the typed
//! model, `extends`, merging of several files, and validation.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::error::ComposeError;
use crate::interp::{interpolate, parse_env_file, InterpError};
use crate::model::*;
use crate::value::Value;
use crate::yaml::{self, Kind, Node, Scalar};

mod merge;
mod run_keys;
mod service;
use merge::merge_files;
pub use merge::merge_service;
pub use run_keys::{PullPolicy, UlimitValue};
use service::{network_def, service, volume_def};

/// Default compose file names, in lookup order.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// Override files picked up beside a default file.
pub const OVERRIDE_FILES: [&str; 4] = [
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// What [`Project::load`] needs; the CLI fills it from its options.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-f` files in order; empty means COMPOSE_FILE (split on
    /// COMPOSE_PATH_SEPARATOR, default `:`), else the default file (and its
    /// override) in `working_dir` or its nearest parent that has one.
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// The process environment (wins over `.env`).
    pub env: BTreeMap<String, String>,
    /// `--env-file`; empty means `<project dir>/.env` when it exists.
    pub env_files: Vec<PathBuf>,
    /// `--profile` (else COMPOSE_PROFILES, comma-separated).
    pub profiles: Vec<String>,
    /// Where to look for default files (and the project directory when no
    /// `-f` is given); defaults to the current directory.
    pub working_dir: Option<PathBuf>,
}

/// Service keys of the Compose Specification that are kept as written
/// (those of `run`'s flags too, once `run_keys` has checked them).
const PASSTHROUGH_SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "cap_add",
    "cap_drop",
    "cgroup_parent",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpus",
    "credential_spec",
    "device_cgroup_rules",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "expose",
    "external_links",
    "extra_hosts",
    "isolation",
    "mac_address",
    "mem_swappiness",
    "network_mode",
    "oom_score_adj",
    "pids_limit",
    "privileged",
    "read_only",
    "runtime",
    "secrets",
    "security_opt",
    "storage_opt",
    "userns_mode",
    "volumes_from",
];

const TOP_KEYS: &[&str] = &[
    "version", "name", "services", "volumes", "networks", "secrets", "configs",
];

struct Cx<'a> {
    file: &'a Path,
    dir: &'a Path,
    env: &'a BTreeMap<String, String>,
    /// Files read so far, `extends: {file:}` included (bounded).
    loads: &'a Cell<usize>,
}

/// Most files one load may read (`-f` files plus `extends` files).
const MAX_FILE_LOADS: usize = 256;
/// Most ports one service may expand to (ranges included).
const MAX_PORTS: usize = 65_536;

impl Cx<'_> {
    fn err(&self, node: &Node, key: &str, msg: impl Into<String>) -> ComposeError {
        ComposeError::Invalid {
            file: self.file.to_path_buf(),
            line: node.mark.line,
            col: node.mark.col,
            key: key.to_string(),
            msg: msg.into(),
        }
    }

    fn map<'n>(&self, n: &'n Node, key: &str) -> Result<&'n [(Node, Node)], ComposeError> {
        n.as_map()
            .ok_or_else(|| self.err(n, key, "contains an invalid type, it should be a mapping"))
    }

    fn seq<'n>(&self, n: &'n Node, key: &str) -> Result<&'n [Node], ComposeError> {
        n.as_seq()
            .ok_or_else(|| self.err(n, key, "contains an invalid type, it should be an array"))
    }

    /// A scalar read as a string (numbers and booleans as written).
    fn string(&self, n: &Node, key: &str) -> Result<String, ComposeError> {
        match n.typed() {
            Some(Scalar::Null) | None => {
                Err(self.err(n, key, "contains an invalid type, it should be a string"))
            }
            Some(_) => Ok(n.text().unwrap_or_default().to_string()),
        }
    }

    fn opt_string(&self, n: &Node, key: &str) -> Result<Option<String>, ComposeError> {
        if n.is_null() {
            return Ok(None);
        }
        self.string(n, key).map(Some)
    }

    fn bool(&self, n: &Node, key: &str) -> Result<bool, ComposeError> {
        match n.typed() {
            Some(Scalar::Bool(b)) => Ok(b),
            Some(Scalar::Str(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Scalar::Str(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(self.err(n, key, "contains an invalid type, it should be a boolean")),
        }
    }

    fn uint(&self, n: &Node, key: &str) -> Result<u64, ComposeError> {
        match n.typed() {
            Some(Scalar::Int(i)) if i >= 0 => Ok(i as u64),
            Some(Scalar::Str(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().unwrap_or(0)),
            _ => Err(self.err(n, key, "contains an invalid type, it should be an integer")),
        }
    }

    fn string_list(&self, n: &Node, key: &str) -> Result<Vec<String>, ComposeError> {
        match &n.kind {
            Kind::Scalar { .. } => Ok(vec![self.string(n, key)?]),
            Kind::Seq(s) => s.iter().map(|i| self.string(i, key)).collect(),
            Kind::Map(_) => Err(self.err(
                n,
                key,
                "contains an invalid type, it should be a string or an array",
            )),
        }
    }

    /// A list of `k=v` strings or a mapping, as docker-compose reads labels.
    fn kv(&self, n: &Node, key: &str) -> Result<BTreeMap<String, Option<Value>>, ComposeError> {
        let mut out = BTreeMap::new();
        if n.is_null() {
            return Ok(out);
        }
        match &n.kind {
            Kind::Seq(items) => {
                for i in items {
                    let s = self.string(i, key)?;
                    match s.split_once('=') {
                        Some((k, v)) => out.insert(k.to_string(), Some(Value::str(v))),
                        None => out.insert(s, None),
                    };
                }
            }
            Kind::Map(m) => {
                for (k, v) in m {
                    let k = k.text().unwrap_or_default().to_string();
                    let val = match v.typed() {
                        Some(Scalar::Null) => None,
                        Some(_) => Some(Value::from_node(v)),
                        None => return Err(self.err(
                            v,
                            &format!("{key}.{k}"),
                            "contains an invalid type, it should be a string, number, or a null",
                        )),
                    };
                    out.insert(k, val);
                }
            }
            Kind::Scalar { .. } => {
                return Err(self.err(
                    n,
                    key,
                    "contains an invalid type, it should be an object or an array",
                ))
            }
        }
        Ok(out)
    }

    fn string_map(&self, n: &Node, key: &str) -> Result<BTreeMap<String, String>, ComposeError> {
        Ok(self
            .kv(n, key)?
            .into_iter()
            .map(|(k, v)| (k, v.map(|v| value_text(&v)).unwrap_or_default()))
            .collect())
    }

    /// Makes a host path absolute against the project directory.
    fn host_path(&self, p: &str) -> String {
        if let Some(rest) = p.strip_prefix('~') {
            if rest.is_empty() || rest.starts_with('/') {
                if let Some(home) = self.env.get("HOME") {
                    return normpath(&format!("{home}{rest}"));
                }
            }
        }
        if p.starts_with('/') {
            normpath(p)
        } else {
            normpath(&self.dir.join(p).to_string_lossy())
        }
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => other.to_yaml().trim_end().to_string(),
    }
}

/// Lexical normalisation (`a/./b/../c` -> `a/c`), as Python's normpath.
pub fn normpath(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            Component::Normal(s) => parts.push(s.to_str().unwrap_or_default()),
        }
    }
    let joined = parts.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// docker compose's normalisation of a directory name into a project name.
pub fn normalize_project_name(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    s.trim_start_matches(['_', '-']).to_string()
}

fn valid_project_name(name: &str) -> bool {
    !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Reads a compose, env or extends file, refusing more than
/// [`yaml::MAX_FILE_BYTES`] (a path may name /dev/zero or a FIFO's peer).
fn read(path: &Path) -> Result<Vec<u8>, ComposeError> {
    use std::io::Read;
    let io = |source| ComposeError::Io {
        file: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(yaml::MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() > yaml::MAX_FILE_BYTES {
        return Err(ComposeError::Limit {
            file: path.to_path_buf(),
            what: format!("file larger than {} bytes", yaml::MAX_FILE_BYTES),
        });
    }
    Ok(buf)
}

/// Interpolates every scalar value (not keys) of a section in place.
fn interpolate_node(
    n: &mut Node,
    path: &str,
    file: &Path,
    env: &BTreeMap<String, String>,
    unset: &mut Vec<String>,
) -> Result<(), ComposeError> {
    match &mut n.kind {
        Kind::Scalar { text, plain } => {
            if text.contains('$') {
                // The result is a string, as in docker-compose 1.29: an
                // empty result is "" (not null); typed fields accept
                // numeric and boolean strings.
                *plain = false;
                *text = interpolate(text, env, unset).map_err(|e| ComposeError::Interpolation {
                    file: file.to_path_buf(),
                    line: n.mark.line,
                    col: n.mark.col,
                    key: path.to_string(),
                    msg: match e {
                        InterpError::Required { var, msg } => {
                            format!("required variable {var} is missing a value: {msg}")
                        }
                        InterpError::Syntax(m) => m,
                    },
                })?;
            }
        }
        Kind::Seq(items) => {
            for i in items {
                interpolate_node(i, path, file, env, unset)?;
            }
        }
        Kind::Map(m) => {
            for (k, v) in m {
                let p = format!("{path}.{}", k.text().unwrap_or_default());
                interpolate_node(v, &p, file, env, unset)?;
            }
        }
    }
    Ok(())
}

fn svc_err(name: &str, s: &Service, key: &str, msg: String) -> ComposeError {
    ComposeError::Service {
        service: name.to_string(),
        key: format!("services.{name}.{key}"),
        location: s.key_locations.get(key).cloned(),
        msg,
    }
}

/// docker-compose 1.29's normalisation of some keys kept as written.
fn normalize_other(s: &mut Service, names: &BTreeSet<String>) {
    for key in ["dns", "dns_search"] {
        if let Some(Value::Str(x)) = s.other.get(key) {
            let v = Value::Seq(vec![Value::Str(x.clone())]);
            s.other.insert(key.to_string(), v);
        }
    }
    // Limits as integers (`"20"` too), as docker-compose converts them.
    if let Some(Value::Map(m)) = s.other.get("ulimits") {
        fn int(v: &Value) -> Value {
            match v {
                Value::Str(t) => t.trim().parse().map(Value::Int).unwrap_or(v.clone()),
                Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), int(v))).collect()),
                other => other.clone(),
            }
        }
        let m = m.iter().map(|(k, v)| (k.clone(), int(v))).collect();
        s.other.insert("ulimits".into(), Value::Map(m));
    }
    // Values as strings, as docker-compose prints (and docker takes) them.
    if let Some(Value::Map(m)) = s.other.get("sysctls") {
        let m = m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::Null => Value::Null,
                    v => Value::Str(value_text(v)),
                };
                (k.clone(), v)
            })
            .collect();
        s.other.insert("sysctls".into(), Value::Map(m));
    }
    if let Some(Value::Seq(items)) = s.other.get("sysctls") {
        let m = items
            .iter()
            .map(|i| {
                let t = value_text(i);
                match t.split_once('=') {
                    Some((k, v)) => (k.to_string(), Value::str(v)),
                    None => (t, Value::str("")),
                }
            })
            .collect();
        s.other.insert("sysctls".into(), Value::Map(m));
    }
    for key in ["secrets", "configs"] {
        if let Some(Value::Seq(items)) = s.other.get(key) {
            let v = items
                .iter()
                .map(|i| match i {
                    Value::Str(x) => {
                        Value::Map(BTreeMap::from([("source".to_string(), Value::str(x))]))
                    }
                    other => other.clone(),
                })
                .collect();
            s.other.insert(key.to_string(), Value::Seq(v));
        }
    }
    if let Some(Value::Seq(items)) = s.other.get("volumes_from") {
        let v = items
            .iter()
            .map(|i| {
                let t = value_text(i);
                let parts: Vec<&str> = t.split(':').collect();
                let (kind, name, mode) = match parts.as_slice() {
                    [n] => (None, *n, "rw"),
                    [k @ ("service" | "container"), n] => (Some(*k), *n, "rw"),
                    [n, m] => (None, *n, *m),
                    [k, n, m, ..] => (Some(*k), *n, *m),
                    [] => (None, "", "rw"),
                };
                let kind = kind.unwrap_or(if names.contains(name) {
                    "service"
                } else {
                    "container"
                });
                Value::Str(format!("{kind}:{name}:{mode}"))
            })
            .collect();
        s.other.insert("volumes_from".into(), Value::Seq(v));
    }
}

/// Services a service needs started first: `depends_on`, `links`,
/// `volumes_from: service:x`, `network_mode: service:x` and
/// `ipc`/`pid: service:x`.
pub(crate) fn service_deps(s: &Service) -> Vec<String> {
    let mut d: Vec<String> = s.depends_on.keys().cloned().collect();
    d.extend(
        s.links
            .iter()
            .map(|l| l.split(':').next().unwrap_or_default().to_string()),
    );
    if let Some(Value::Seq(items)) = s.other.get("volumes_from") {
        for i in items {
            if let Some(rest) = value_text(i).strip_prefix("service:") {
                d.push(rest.split(':').next().unwrap_or_default().to_string());
            }
        }
    }
    if let Some(Value::Str(m)) = s.other.get("network_mode") {
        if let Some(n) = m.strip_prefix("service:") {
            d.push(n.to_string());
        }
    }
    for key in ["ipc", "pid"] {
        d.extend(s.joined_service(key));
    }
    d
}

impl Service {
    /// The services this one needs first (`depends_on`, `links`,
    /// `volumes_from: service:`, `network_mode: service:`), as written.
    pub fn dependencies(&self) -> Vec<String> {
        service_deps(self)
    }
}

/// One file, converted.
struct FileModel {
    version: Option<String>,
    name: Option<String>,
    legacy_v1: bool,
    services: BTreeMap<String, Service>,
    volumes: BTreeMap<String, VolumeDef>,
    networks: BTreeMap<String, NetworkDef>,
    other: BTreeMap<String, Value>,
}

impl Project {
    /// Loads, interpolates, merges and validates a project.
    pub fn load(opts: &LoadOptions) -> Result<(Project, Vec<Warning>), ComposeError> {
        let cwd = match &opts.working_dir {
            Some(d) => d.clone(),
            None => std::env::current_dir().map_err(|source| ComposeError::Io {
                file: PathBuf::from("."),
                source,
            })?,
        };
        // COMPOSE_FILE / COMPOSE_PROFILES from the environment or ./.env.
        let early = |key: &str| -> Option<String> {
            opts.env.get(key).cloned().or_else(|| {
                let text = std::fs::read_to_string(cwd.join(".env")).ok()?;
                parse_env_file(&text).ok()?.remove(key)
            })
        };
        let compose_file: Vec<PathBuf> = if opts.files.is_empty() {
            let sep = early("COMPOSE_PATH_SEPARATOR").unwrap_or_else(|| ":".into());
            early("COMPOSE_FILE")
                .map(|v| {
                    v.split(sep.as_str())
                        .filter(|s| !s.is_empty())
                        .map(|s| cwd.join(s))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut profiles = opts.profiles.clone();
        if profiles.is_empty() {
            if let Some(p) = early("COMPOSE_PROFILES") {
                profiles = p
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            }
        }
        let files: Vec<PathBuf> = if !compose_file.is_empty() {
            compose_file
        } else if opts.files.is_empty() {
            // The default file in the directory or the nearest parent.
            let main = cwd
                .ancestors()
                .find_map(|d| {
                    DEFAULT_FILES
                        .iter()
                        .map(|f| d.join(f))
                        .find(|p| p.is_file())
                })
                .ok_or_else(|| ComposeError::NoComposeFile { dir: cwd.clone() })?;
            let found_in = main.parent().map(Path::to_path_buf).unwrap_or_default();
            let mut v = vec![main];
            if let Some(o) = OVERRIDE_FILES
                .iter()
                .map(|f| found_in.join(f))
                .find(|p| p.is_file())
            {
                v.push(o);
            }
            v
        } else {
            opts.files
                .iter()
                .map(|f| {
                    if f.is_absolute() {
                        f.clone()
                    } else {
                        cwd.join(f)
                    }
                })
                .collect()
        };
        let dir = files[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or(cwd.clone());
        let dir = PathBuf::from(normpath(&dir.to_string_lossy()));

        // Interpolation environment: env files, then the given environment.
        let mut env = BTreeMap::new();
        let env_files: Vec<PathBuf> = if opts.env_files.is_empty() {
            let d = dir.join(".env");
            if d.is_file() {
                vec![d]
            } else {
                vec![]
            }
        } else {
            opts.env_files.iter().map(|f| cwd.join(f)).collect()
        };
        for f in &env_files {
            let bytes = read(f)?;
            let text = std::str::from_utf8(&bytes).map_err(|e| ComposeError::NotUtf8 {
                file: f.clone(),
                offset: e.valid_up_to(),
            })?;
            let vars = parse_env_file(text).map_err(|(line, msg)| ComposeError::Invalid {
                file: f.clone(),
                line,
                col: 1,
                key: String::new(),
                msg,
            })?;
            env.extend(vars);
        }
        env.extend(opts.env.iter().map(|(k, v)| (k.clone(), v.clone())));

        let mut warnings = Vec::new();
        let mut unset = Vec::new();
        let mut merged: Option<FileModel> = None;
        let loads = Cell::new(0);
        for f in &files {
            let cx = Cx {
                file: f,
                dir: &dir,
                env: &env,
                loads: &loads,
            };
            let fm = load_file(&cx, &mut unset, &mut warnings, 0)?;
            merged = Some(match merged {
                None => fm,
                Some(base) => merge_files(base, fm),
            });
        }
        let Some(fm) = merged else {
            return Err(ComposeError::NoComposeFile { dir });
        };
        let mut seen = BTreeSet::new();
        for u in unset {
            if seen.insert(u.clone()) {
                warnings.push(Warning::UnsetVariable { name: u });
            }
        }

        let name = match opts
            .project_name
            .clone()
            .or_else(|| {
                env.get("COMPOSE_PROJECT_NAME")
                    .filter(|s| !s.is_empty())
                    .cloned()
            })
            .or(fm.name.clone())
        {
            Some(n) => {
                if !valid_project_name(&n) {
                    return Err(ComposeError::ProjectName { name: n });
                }
                n
            }
            None => {
                let base = dir
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let n = normalize_project_name(&base);
                if n.is_empty() {
                    return Err(ComposeError::ProjectName { name: base });
                }
                n
            }
        };

        let mut project = Project {
            name,
            working_dir: dir,
            files,
            version: fm.version,
            legacy_v1: fm.legacy_v1,
            services: fm.services,
            volumes: fm.volumes,
            networks: fm.networks,
            profiles,
            environment: env,
            other: fm.other,
        };
        project.finalize(&mut warnings)?;
        Ok((project, warnings))
    }

    /// A project known only by its name, as docker compose v2 has one for
    /// `-p NAME` with no compose file: the verbs that act on existing
    /// containers (`ps`, `down`, `stop`, ...) find them by their project
    /// label. `services` are the names those containers carry; each gets
    /// an empty definition.
    pub fn named(
        name: &str,
        working_dir: PathBuf,
        services: impl IntoIterator<Item = String>,
    ) -> Result<Project, ComposeError> {
        if !valid_project_name(name) {
            return Err(ComposeError::ProjectName { name: name.into() });
        }
        Ok(Project {
            name: name.into(),
            working_dir,
            files: Vec::new(),
            version: None,
            legacy_v1: false,
            services: services
                .into_iter()
                .map(|n| {
                    let s = Service {
                        name: n.clone(),
                        ..Service::default()
                    };
                    (n, s)
                })
                .collect(),
            volumes: BTreeMap::new(),
            networks: BTreeMap::new(),
            profiles: Vec::new(),
            environment: BTreeMap::new(),
            other: BTreeMap::new(),
        })
    }

    fn finalize(&mut self, warnings: &mut Vec<Warning>) -> Result<(), ComposeError> {
        let names: BTreeSet<String> = self.services.keys().cloned().collect();
        // Top-level secrets/configs: `file` made absolute, external named.
        for section in ["secrets", "configs"] {
            if let Some(Value::Map(entries)) = self.other.get_mut(section) {
                for (name, def) in entries.iter_mut() {
                    let Value::Map(d) = def else { continue };
                    if let Some(Value::Str(f)) = d.get("file") {
                        let abs = if f.starts_with('/') {
                            normpath(f)
                        } else {
                            normpath(&self.working_dir.join(f).to_string_lossy())
                        };
                        d.insert("file".into(), Value::Str(abs));
                    }
                    if matches!(d.get("external"), Some(Value::Bool(true)))
                        && !d.contains_key("name")
                    {
                        d.insert("name".into(), Value::str(name.clone()));
                    }
                }
            }
        }
        for (name, s) in self.services.iter_mut() {
            // env_file contents first, then `environment`, then bare names
            // from the interpolation environment.
            let mut env: BTreeMap<String, EnvValue> = BTreeMap::new();
            for f in &s.env_file {
                let bytes = read(f)?;
                let text = String::from_utf8_lossy(&bytes);
                let vars = parse_env_file(&text).map_err(|(line, msg)| ComposeError::Invalid {
                    file: f.clone(),
                    line,
                    col: 1,
                    key: format!("services.{name}.env_file"),
                    msg,
                })?;
                env.extend(vars.into_iter().map(|(k, v)| (k, EnvValue::Str(v))));
            }
            env.extend(std::mem::take(&mut s.environment));
            for (k, v) in env.iter_mut() {
                if *v == EnvValue::Unset {
                    if let Some(val) = self.environment.get(k) {
                        *v = EnvValue::Str(val.clone());
                    }
                }
            }
            s.environment = env;
            normalize_other(s, &names);
            if let Some(b) = &mut s.build {
                for (k, v) in b.args.iter_mut() {
                    if v.is_empty() {
                        if let Some(val) = self.environment.get(k) {
                            v.clone_from(val);
                        }
                    }
                }
            }
            for dep in s.depends_on.keys() {
                if !names.contains(dep) {
                    return Err(svc_err(
                        name,
                        s,
                        "depends_on",
                        format!("depends on service {dep:?} which is undefined"),
                    ));
                }
            }
            for l in &s.links {
                let target = l.split(':').next().unwrap_or_default();
                if !names.contains(target) {
                    return Err(svc_err(
                        name,
                        s,
                        "links",
                        format!("has a link to service {target:?} which is undefined"),
                    ));
                }
            }
            for key in ["ipc", "pid"] {
                if let Some(target) = s.joined_service(key) {
                    if !names.contains(&target) {
                        return Err(svc_err(
                            name,
                            s,
                            key,
                            format!("joins service {target:?} which is undefined"),
                        ));
                    }
                }
            }
            if !s.links.is_empty() {
                warnings.push(Warning::Links {
                    service: name.clone(),
                });
            }
            let mut targets = BTreeSet::new();
            for m in &s.volumes {
                if !targets.insert(m.target()) {
                    return Err(svc_err(
                        name,
                        s,
                        "volumes",
                        format!("duplicate mount points: {:?} is mounted twice", m.target()),
                    ));
                }
            }
            for m in &s.volumes {
                if let Some(v) = m.named_volume() {
                    if !self.volumes.contains_key(v) {
                        return Err(svc_err(name, s, "volumes", format!(
                                "named volume {v:?} is used but no declaration was found in the volumes section"
                            )));
                    }
                }
            }
            for n in s.networks.keys() {
                if n != "default" && !self.networks.contains_key(n) {
                    return Err(svc_err(
                        name,
                        s,
                        "networks",
                        format!("uses an undefined network {n:?}"),
                    ));
                }
            }
        }
        self.services_in_dependency_order()?;
        Ok(())
    }

    /// Services sorted so that each comes after those it depends on
    /// (`depends_on`, `links`, `volumes_from`, `network_mode: service:`);
    /// otherwise in name order. A cycle is an error.
    pub fn services_in_dependency_order(&self) -> Result<Vec<&Service>, ComposeError> {
        let deps = |s: &Service| -> Vec<String> {
            let mut d = service_deps(s);
            d.retain(|x| self.services.contains_key(x));
            d
        };
        // 0 = unvisited, 1 = on the stack, 2 = done
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        let mut out: Vec<&Service> = Vec::new();
        for start in self.services.keys() {
            if state.get(start.as_str()).copied().unwrap_or(0) == 2 {
                continue;
            }
            // Iterative DFS: (name, its deps, next index).
            let mut stack: Vec<(&str, Vec<String>, usize)> = Vec::new();
            state.insert(start, 1);
            stack.push((start, deps(&self.services[start]), 0));
            while let Some((name, ds, i)) = stack.last_mut() {
                if *i < ds.len() {
                    let d = ds[*i].clone();
                    *i += 1;
                    let (key, _) = self.services.get_key_value(&d).expect("filtered");
                    match state.get(key.as_str()).copied().unwrap_or(0) {
                        0 => {
                            state.insert(key, 1);
                            let dd = deps(&self.services[key]);
                            stack.push((key, dd, 0));
                        }
                        1 => {
                            let mut cycle: Vec<String> = stack
                                .iter()
                                .map(|(n, _, _)| n.to_string())
                                .skip_while(|n| n != key)
                                .collect();
                            cycle.push(key.clone());
                            return Err(ComposeError::Cycle { cycle });
                        }
                        _ => {}
                    }
                } else {
                    let n: &str = name;
                    state.insert(n, 2);
                    out.push(&self.services[n]);
                    stack.pop();
                }
            }
        }
        Ok(out)
    }

    /// The services enabled by the load-time profiles, in dependency order.
    pub fn active_services(&self) -> Result<Vec<&Service>, ComposeError> {
        Ok(self
            .services_in_dependency_order()?
            .into_iter()
            .filter(|s| s.enabled_for(&self.profiles))
            .collect())
    }
}

const MAX_EXTENDS_DEPTH: usize = 16;

fn load_file(
    cx: &Cx,
    unset: &mut Vec<String>,
    warnings: &mut Vec<Warning>,
    depth: usize,
) -> Result<FileModel, ComposeError> {
    cx.loads.set(cx.loads.get() + 1);
    if cx.loads.get() > MAX_FILE_LOADS {
        return Err(ComposeError::Limit {
            file: cx.file.to_path_buf(),
            what: format!("more than {MAX_FILE_LOADS} compose files read (extends)"),
        });
    }
    let bytes = read(cx.file)?;
    let root = yaml::load(cx.file, &bytes)?;
    let Some(mut root) = root else {
        return Err(ComposeError::Invalid {
            file: cx.file.to_path_buf(),
            line: 1,
            col: 1,
            key: String::new(),
            msg: "empty compose file".into(),
        });
    };
    let top = cx.map(&root, "(root)")?;
    let legacy_v1 = top.iter().all(|(k, _)| {
        let k = k.text().unwrap_or_default();
        !TOP_KEYS.contains(&k)
    }) && !top.is_empty();
    let mut fm = FileModel {
        version: None,
        name: None,
        legacy_v1,
        services: BTreeMap::new(),
        volumes: BTreeMap::new(),
        networks: BTreeMap::new(),
        other: BTreeMap::new(),
    };
    if legacy_v1 {
        warnings.push(Warning::LegacyV1 {
            file: cx.file.to_path_buf(),
        });
        fm.version = Some("1".into());
        let Kind::Map(entries) = &mut root.kind else {
            unreachable!()
        };
        let mut services = Vec::new();
        for (k, v) in entries.iter_mut() {
            let name = k.text().unwrap_or_default().to_string();
            if name.starts_with("x-") {
                continue;
            }
            interpolate_node(v, &name, cx.file, cx.env, unset)?;
            services.push((name, &*v));
        }
        for (name, v) in services {
            let s = service(cx, &name, v)?;
            fm.services.insert(name, s);
        }
    } else {
        let Kind::Map(entries) = &mut root.kind else {
            unreachable!()
        };
        for (k, v) in entries.iter_mut() {
            let key = k.text().unwrap_or_default().to_string();
            if key.starts_with("x-") {
                continue;
            }
            if !TOP_KEYS.contains(&key.as_str()) {
                return Err(cx.err(k, &key, format!("unsupported top-level key '{key}'")));
            }
            if key != "version" {
                interpolate_node(v, &key, cx.file, cx.env, unset)?;
            }
        }
        let Kind::Map(entries) = &root.kind else {
            unreachable!()
        };
        for (k, v) in entries {
            let key = k.text().unwrap_or_default();
            match key {
                "version" => fm.version = cx.opt_string(v, "version")?,
                "name" => fm.name = cx.opt_string(v, "name")?,
                "services" => {
                    if v.is_null() {
                        continue;
                    }
                    for (sk, sv) in cx.map(v, "services")? {
                        let name = sk.text().unwrap_or_default().to_string();
                        if name.starts_with("x-") {
                            continue;
                        }
                        let s = service(cx, &name, sv)?;
                        fm.services.insert(name, s);
                    }
                }
                "volumes" => {
                    if v.is_null() {
                        continue;
                    }
                    for (vk, vv) in cx.map(v, "volumes")? {
                        let name = vk.text().unwrap_or_default().to_string();
                        if name.starts_with("x-") {
                            continue;
                        }
                        fm.volumes.insert(name.clone(), volume_def(cx, &name, vv)?);
                    }
                }
                "networks" => {
                    if v.is_null() {
                        continue;
                    }
                    for (nk, nv) in cx.map(v, "networks")? {
                        let name = nk.text().unwrap_or_default().to_string();
                        if name.starts_with("x-") {
                            continue;
                        }
                        fm.networks
                            .insert(name.clone(), network_def(cx, &name, nv)?);
                    }
                }
                k if k.starts_with("x-") => {}
                other => {
                    fm.other.insert(other.to_string(), Value::from_node(v));
                }
            }
        }
    }
    // `extends`, resolved inside each file as docker-compose does.
    let raw: BTreeMap<String, Node> = raw_services(&root, legacy_v1);
    let names: Vec<String> = fm.services.keys().cloned().collect();
    for name in names {
        let mut chain = vec![name.clone()];
        let resolved = resolve_extends(
            cx,
            &fm.services,
            &raw,
            &name,
            &mut chain,
            unset,
            warnings,
            depth,
        )?;
        fm.services.insert(name, resolved);
    }
    Ok(fm)
}

fn raw_services(root: &Node, legacy_v1: bool) -> BTreeMap<String, Node> {
    let section = if legacy_v1 {
        Some(root)
    } else {
        root.get("services")
    };
    section
        .and_then(Node::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.text().unwrap_or_default().to_string(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn resolve_extends(
    cx: &Cx,
    services: &BTreeMap<String, Service>,
    raw: &BTreeMap<String, Node>,
    name: &str,
    chain: &mut Vec<String>,
    unset: &mut Vec<String>,
    warnings: &mut Vec<Warning>,
    depth: usize,
) -> Result<Service, ComposeError> {
    let svc = services[name].clone();
    let Some(ext) = raw.get(name).and_then(|n| n.get("extends")) else {
        return Ok(svc);
    };
    let key = format!("services.{name}.extends");
    let (base_name, file) = match &ext.kind {
        Kind::Scalar { .. } => (cx.string(ext, &key)?, None),
        Kind::Map(m) => {
            let mut service = None;
            let mut file = None;
            for (k, v) in m {
                match k.text().unwrap_or_default() {
                    "service" => service = Some(cx.string(v, &format!("{key}.service"))?),
                    "file" => file = Some(cx.string(v, &format!("{key}.file"))?),
                    other => {
                        return Err(cx.err(
                            k,
                            &format!("{key}.{other}"),
                            format!("unsupported config option for {key}: '{other}'"),
                        ))
                    }
                }
            }
            (
                service.ok_or_else(|| cx.err(ext, &key, "requires a 'service' key"))?,
                file,
            )
        }
        Kind::Seq(_) => {
            return Err(cx.err(
                ext,
                &key,
                "contains an invalid type, it should be a string or an object",
            ))
        }
    };
    if chain.len() > MAX_EXTENDS_DEPTH || depth > MAX_EXTENDS_DEPTH {
        return Err(cx.err(ext, &key, "extends nested too deeply"));
    }
    let base = match file {
        None => {
            if chain.contains(&base_name) {
                return Err(cx.err(
                    ext,
                    &key,
                    format!("circular reference: {} -> {base_name}", chain.join(" -> ")),
                ));
            }
            if !services.contains_key(&base_name) {
                return Err(cx.err(
                    ext,
                    &key,
                    format!("cannot extend service '{base_name}': it is not defined"),
                ));
            }
            chain.push(base_name.clone());
            let b = resolve_extends(cx, services, raw, &base_name, chain, unset, warnings, depth)?;
            chain.pop();
            b
        }
        Some(f) => {
            let path = PathBuf::from(cx.host_path(&f));
            let sub = Cx {
                file: &path,
                dir: cx.dir,
                env: cx.env,
                loads: cx.loads,
            };
            let fm = load_file(&sub, unset, warnings, depth + 1)?;
            fm.services.get(&base_name).cloned().ok_or_else(|| {
                cx.err(
                    ext,
                    &key,
                    format!("cannot extend service '{base_name}': it is not defined in {f}"),
                )
            })?
        }
    };
    let mut merged = merge_service(base, svc);
    merged.name = name.to_string();
    // docker-compose does not inherit these through extends.
    Ok(merged)
}
