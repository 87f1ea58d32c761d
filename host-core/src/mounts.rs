//! `-v`/`--volume` and `--mount`, parsed as docker's CLI (28) and daemon
//! (moby's Linux mount parser) parse them, worded as they word their
//! refusals; and which mounts a placement can give a container.
//!
//! What the CLI refuses is an [`ArgError::Flag`] or [`ArgError::Other`];
//! what docker's daemon refuses (but only berth's CLI still has the raw
//! text of) is an [`ArgError::Daemon`]. A missing `--mount` bind source and
//! volume names are the engine's to check.

use crate::args::ArgError;
use crate::placement::Isolation;
use berth_protocol::{ContainerConfig, MountPoint, MountSpec, MountType};
use serde_json::{json, Map, Value};
use std::path::{Component, Path, PathBuf};

/// moby's `errInvalidSpec`.
fn invalid_spec(raw: &str) -> String {
    format!("invalid volume specification: '{raw}'")
}

/// The modes `-v`'s third field may combine, one of each group at most
/// (moby's `linuxValidMountMode`).
fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0u8; 5];
    for o in mode.split(',') {
        let group = match o {
            "rw" | "ro" => 0,
            "z" | "Z" => 1,
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => 2,
            "nocopy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            _ => return false,
        };
        counts[group] += 1;
    }
    counts.iter().all(|c| *c <= 1)
}

const PROPAGATIONS: [&str; 6] = [
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];

fn mode_propagation(mode: &str) -> Option<String> {
    mode.split(',')
        .find(|o| PROPAGATIONS.contains(o))
        .map(str::to_string)
}

/// Go's `path.Clean` for absolute and relative slash paths.
fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Abs`: joined to `cwd` and cleaned.
fn absolute(p: &str, cwd: &Path) -> String {
    let mut out = PathBuf::from("/");
    for c in cwd.join(p).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    clean(&out.to_string_lossy())
}

/// moby's `validateMountConfigImpl` without the bind source's existence
/// (the engine checks that where it runs). The error is the part after
/// `invalid mount config for type "T": `.
fn validate(m: &MountSpec, kind: &str) -> Result<(), String> {
    let wrap = |e: String| format!("invalid mount config for type \"{kind}\": {e}");
    if m.target.is_empty() {
        return Err(wrap("field Target must not be empty".into()));
    }
    if clean(&m.target) == "/" {
        return Err(wrap(
            "invalid specification: destination can't be '/'".into(),
        ));
    }
    if !m.target.starts_with('/') {
        return Err(wrap(format!(
            "invalid mount path: '{}' mount path must be absolute",
            m.target
        )));
    }
    match m.kind {
        MountType::Bind => {
            if m.source.is_empty() {
                return Err(wrap("field Source must not be empty".into()));
            }
            if let Some(p) = &m.propagation {
                if !p.is_empty() && !PROPAGATIONS.contains(&p.as_str()) {
                    return Err(wrap(format!("invalid propagation mode: {p}")));
                }
            }
            if !m.source.starts_with('/') {
                return Err(wrap(format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                )));
            }
        }
        MountType::Volume => {
            if m.read_only && m.source.is_empty() {
                return Err(wrap(
                    "must not set ReadOnly mode when using anonymous volumes".into(),
                ));
            }
        }
        MountType::Tmpfs => {
            if !m.source.is_empty() {
                return Err(wrap("field Source must not be specified".into()));
            }
        }
    }
    Ok(())
}

/// docker CLI's compose `ParseVolume`, run on every `-v` before anything
/// else: only its refusals matter (`empty section between colons`, `too
/// many colons`), and whether it saw a host part. Its Windows-drive rule
/// (a one-letter part before a colon is kept with it) is kept too, as it
/// decides which specs it refuses.
fn compose_precheck(spec: &str) -> Result<bool, ArgError> {
    match spec.chars().count() {
        0 => return Err(ArgError::Other("invalid empty volume spec".into())),
        1 | 2 => return Ok(false),
        _ => {}
    }
    let (mut source, mut target) = (None::<String>, None::<String>);
    let mut buf = String::new();
    let fail = |why: &str| Err(ArgError::Other(format!("invalid spec: {spec}: {why}")));
    for c in spec.chars().map(Some).chain([None]) {
        let drive =
            c == Some(':') && buf.chars().count() == 1 && buf.starts_with(char::is_alphabetic);
        if drive {
            buf.push(':');
            continue;
        }
        if c.is_some() && c != Some(':') {
            buf.push(c.unwrap_or_default());
            continue;
        }
        if buf.is_empty() {
            return fail("empty section between colons");
        } else if source.is_none() && c.is_none() {
            target = Some(std::mem::take(&mut buf));
        } else if source.is_none() {
            source = Some(std::mem::take(&mut buf));
        } else if target.is_none() {
            target = Some(std::mem::take(&mut buf));
        } else if c == Some(':') {
            return fail("too many colons");
        } else {
            buf.clear();
        }
    }
    Ok(source.is_some())
}

/// One `-v SRC:DST[:MODE]` or `-v DST`. `cwd` absolutizes a host part that
/// starts with `.`, as docker's CLI does before sending it.
pub fn parse_volume(raw: &str, cwd: &Path) -> Result<MountSpec, ArgError> {
    let has_source = compose_precheck(raw)?;
    let mut spec = raw.to_string();
    if has_source {
        if let Some((host, rest)) = raw.split_once(':') {
            if !host.starts_with('/') && host.starts_with('.') {
                spec = format!("{}:{rest}", absolute(host, cwd));
            }
        }
    }
    let arr: Vec<&str> = spec.splitn(4, ':').collect();
    if arr[0].is_empty() {
        return Err(ArgError::Daemon(invalid_spec(&spec)));
    }
    let (source, target, mode) = match arr.len() {
        1 => ("", arr[0], ""),
        2 if valid_mode(arr[1]) => return Err(ArgError::Daemon(invalid_spec(&spec))),
        2 => (arr[0], arr[1], ""),
        3 => (arr[0], arr[1], arr[2]),
        _ => return Err(ArgError::Daemon(invalid_spec(&spec))),
    };
    if !valid_mode(mode) {
        return Err(ArgError::Daemon(format!("invalid mode: {mode}")));
    }
    let kind = if source.starts_with('/') {
        MountType::Bind
    } else {
        MountType::Volume
    };
    let modes: Vec<&str> = mode.split(',').collect();
    let mut m = MountSpec::new(kind, source, target);
    m.mode = mode.to_string();
    m.read_only = modes.contains(&"ro");
    m.no_copy = modes.contains(&"nocopy");
    m.propagation = mode_propagation(mode);
    m.create_host_path = kind == MountType::Bind;
    // moby makes VolumeOptions for a copy mode and BindOptions for a
    // propagation, whatever the type, and then refuses the mismatch.
    let extra = match kind {
        MountType::Bind if m.no_copy => Some("VolumeOptions"),
        MountType::Volume if m.propagation.is_some() => Some("BindOptions"),
        _ => None,
    };
    let wrap = |e: String| ArgError::Daemon(format!("{}: {e}", invalid_spec(&spec)));
    validate(&m, kind.as_str()).map_err(wrap)?;
    if let Some(field) = extra {
        return Err(wrap(format!(
            "invalid mount config for type \"{}\": field {field} must not be specified",
            kind.as_str()
        )));
    }
    if kind == MountType::Bind {
        m.source = clean(&m.source);
    }
    Ok(m)
}

/// Go's `encoding/csv` reading one record, with its error wording.
fn csv_record(s: &str) -> Result<Vec<String>, String> {
    if s.is_empty() {
        return Err("EOF".into());
    }
    let b = s.as_bytes();
    let quote_err = |col: usize, what: &str| format!("parse error on line 1, column {col}: {what}");
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut field = Vec::new();
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match b.get(i) {
                    None => {
                        return Err(quote_err(
                            b.len() + 1,
                            "extraneous or missing \" in quoted-field",
                        ))
                    }
                    Some(b'"') => match b.get(i + 1) {
                        Some(b'"') => {
                            field.push(b'"');
                            i += 2;
                        }
                        Some(b',') | Some(b'\n') | None => {
                            i += 1;
                            break;
                        }
                        Some(b'\r') if b.get(i + 2) == Some(&b'\n') => {
                            i += 1;
                            break;
                        }
                        Some(_) => {
                            return Err(quote_err(
                                i + 1,
                                "extraneous or missing \" in quoted-field",
                            ))
                        }
                    },
                    Some(c) => {
                        field.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(c) = b.get(i) {
                match c {
                    b',' | b'\n' => break,
                    b'\r' if b.get(i + 1) == Some(&b'\n') => break,
                    b'"' => return Err(quote_err(i + 1, "bare \" in non-quoted-field")),
                    c => field.push(*c),
                }
                i += 1;
            }
        }
        fields.push(String::from_utf8_lossy(&field).into_owned());
        match b.get(i) {
            Some(b',') => i += 1,
            _ => return Ok(fields),
        }
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// go-units' `RAMInBytes`: `64m`, `1.5k`, `2 MiB`, binary multiples.
pub fn ram_in_bytes(s: &str) -> Option<i64> {
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(num_end);
    // ^(\d+(\.\d+)*) — no leading, trailing or doubled dots.
    if num.is_empty() || num.split('.').any(|p| p.is_empty()) {
        return None;
    }
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let mut mult = 1i64;
    if let Some(c) = chars.peek().copied() {
        let exp = "kmgtp".find(c.to_ascii_lowercase());
        if let Some(e) = exp {
            mult = 1i64 << (10 * (e as u32 + 1));
            chars.next();
        }
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'i')) {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'b')) {
        chars.next();
    }
    if chars.next().is_some() {
        return None;
    }
    let v: f64 = num.parse().ok()?;
    Some((v * mult as f64) as i64)
}

/// One `--mount type=…,source=…,target=…,…`.
pub fn parse_mount(raw: &str, cwd: &Path) -> Result<MountSpec, ArgError> {
    let flag = |reason: String| ArgError::Flag {
        flag: "--mount",
        value: raw.to_string(),
        reason,
    };
    let fields = csv_record(raw).map_err(flag)?;
    let mut kind = "volume".to_string();
    let mut m = MountSpec::new(MountType::Volume, "", "");
    let (mut volume_opts, mut bind_opts, mut tmpfs_opts) = (false, false, false);
    let invalid = |key: &str, val: &str| flag(format!("invalid value for {key}: {val}"));
    for field in &fields {
        let Some((key, val)) = field.split_once('=') else {
            match field.as_str() {
                "readonly" | "ro" => m.read_only = true,
                "volume-nocopy" => {
                    volume_opts = true;
                    m.no_copy = true;
                }
                "bind-nonrecursive" => {
                    bind_opts = true;
                    m.non_recursive = true;
                }
                _ => {
                    return Err(flag(format!(
                        "invalid field '{field}' must be a key=value pair"
                    )))
                }
            }
            continue;
        };
        match key {
            "type" => kind = val.to_lowercase(),
            "source" | "src" => {
                m.source = if val == "." || val.starts_with("./") {
                    absolute(val, cwd)
                } else {
                    val.to_string()
                };
            }
            "target" | "dst" | "destination" => m.target = val.to_string(),
            "readonly" | "ro" => m.read_only = parse_bool(val).ok_or_else(|| invalid(key, val))?,
            // Accepted and ignored (docker Desktop's file sharing modes).
            "consistency" => {}
            "bind-propagation" => {
                bind_opts = true;
                m.propagation = Some(val.to_lowercase());
            }
            "bind-nonrecursive" => {
                bind_opts = true;
                m.non_recursive = parse_bool(val).ok_or_else(|| invalid(key, val))?;
            }
            "volume-nocopy" => {
                volume_opts = true;
                m.no_copy = parse_bool(val).ok_or_else(|| invalid(key, val))?;
            }
            "volume-label" | "volume-opt" => {
                volume_opts = true;
                let (k, v) = val.split_once('=').unwrap_or((val, ""));
                if !k.is_empty() {
                    let map = if key == "volume-label" {
                        &mut m.volume_labels
                    } else {
                        &mut m.volume_options
                    };
                    map.insert(k.to_string(), v.to_string());
                }
            }
            "volume-driver" => {
                volume_opts = true;
                m.volume_driver = (!val.is_empty()).then(|| val.to_string());
            }
            "tmpfs-size" => {
                tmpfs_opts = true;
                m.tmpfs_size = Some(ram_in_bytes(val).ok_or_else(|| invalid(key, val))?);
            }
            "tmpfs-mode" => {
                tmpfs_opts = true;
                let mode = u32::from_str_radix(val, 8)
                    .ok()
                    .filter(|_| !val.starts_with(['+', '-']))
                    .ok_or_else(|| invalid(key, val))?;
                m.tmpfs_mode = Some(mode);
            }
            _ => return Err(flag(format!("unexpected key '{key}' in '{field}'"))),
        }
    }
    if kind.is_empty() {
        return Err(flag("type is required".into()));
    }
    if m.target.is_empty() {
        return Err(flag("target is required".into()));
    }
    for (set, what, want) in [
        (volume_opts, "volume", "volume"),
        (bind_opts, "bind", "bind"),
        (tmpfs_opts, "tmpfs", "tmpfs"),
    ] {
        if set && kind != want {
            return Err(flag(format!(
                "cannot mix '{what}-*' options with mount type '{kind}'"
            )));
        }
    }
    m.kind = match kind.as_str() {
        "bind" => MountType::Bind,
        "volume" => MountType::Volume,
        "tmpfs" => MountType::Tmpfs,
        _ => {
            return Err(ArgError::Daemon(format!(
                "invalid mount config for type \"{kind}\": mount type unknown"
            )))
        }
    };
    validate(&m, &kind).map_err(ArgError::Daemon)?;
    if m.kind == MountType::Bind {
        m.source = clean(&m.source);
    }
    Ok(m)
}

/// How `-v` would have named this mount (for messages).
pub fn describe(m: &MountSpec) -> String {
    match m.kind {
        MountType::Bind if m.create_host_path => format!("-v {}:{}", m.source, m.target),
        MountType::Volume if m.mode.is_empty() && m.volume_labels.is_empty() => {
            format!("-v {}:{}", m.source, m.target)
        }
        k => format!(
            "--mount type={},source={},target={}",
            k.as_str(),
            m.source,
            m.target
        ),
    }
}

/// What `iso` cannot give a container, checked before the engine is asked:
/// bind mounts need the host path where the engine runs: native, or in
/// the machine VM a folder it shares (the source is rewritten to its guest
/// path); a container with its own VM gets its bind folders as shares of
/// that VM (`vm_shares`, sources rewritten the same way) and has its own
/// disk, so its named volumes are host folders it shares
/// ([`crate::vm_volumes`]), held in use by the returned reservation: keep
/// it until the container's VM directory records them (empty elsewhere).
pub fn check_placement(
    iso: Isolation,
    cfg: &mut ContainerConfig,
) -> Result<crate::vm_volumes::Reservation, String> {
    check_placement_with(iso, cfg, || {
        crate::machine::Machine::default_machine()
            .shares()
            .unwrap_or_else(|| crate::shares::effective(&crate::shares::configured()))
    })
}

/// [`check_placement`] with the machine's shared folders from `shares`.
fn check_placement_with(
    iso: Isolation,
    cfg: &mut ContainerConfig,
    shares: impl FnOnce() -> Vec<std::path::PathBuf>,
) -> Result<crate::vm_volumes::Reservation, String> {
    let name = match iso {
        Isolation::Native => return Ok(Default::default()),
        Isolation::Shared => "shared",
        Isolation::Vm => "vm",
    };
    if iso == Isolation::Shared && cfg.mounts.iter().any(|m| m.kind == MountType::Bind) {
        let shares = shares();
        for m in cfg.mounts.iter_mut().filter(|m| m.kind == MountType::Bind) {
            let host = crate::shares::resolve_host_path(std::path::Path::new(&m.source));
            let Some(guest) = crate::shares::guest_path(&host, &shares) else {
                let list: Vec<String> = shares.iter().map(|s| s.display().to_string()).collect();
                return Err(format!(
                    "bind mount source {} is not in a folder shared with the machine VM (shared: {}); share it with `berth machine shares --set DIR...` (or {}) and restart the machine (`berth machine stop`), or use --isolation native",
                    m.source,
                    if list.is_empty() { "none".to_string() } else { list.join(", ") },
                    crate::shares::ENV
                ));
            };
            // As the daemon words it, naming the host path the user gave.
            if !m.create_host_path && !host.exists() {
                return Err(format!(
                    "Error response from daemon: invalid mount config for type \"bind\": bind source path does not exist: {}",
                    m.source
                ));
            }
            m.source = guest;
        }
        return Ok(Default::default());
    }
    for m in &cfg.mounts {
        if m.kind == MountType::Bind && iso == Isolation::Shared {
            return Err(format!(
                "bind mounts ({}) are not available with --isolation {name} yet: the machine VM has no shared folders; use --isolation native, or a named volume",
                describe(m)
            ));
        }
    }
    if iso == Isolation::Vm {
        if let Some(from) = cfg.volumes_from.first() {
            return Err(format!(
                "--volumes-from {from} is not available with --isolation vm: the container's VM holds no other container; use --isolation shared or native"
            ));
        }
        // Named volumes are host folders (made on first use, held until
        // the VM directory records them); they and the bind sources
        // become the VM's shares (given at restore).
        let held = crate::vm_volumes::attach(&crate::vm_volumes::VolumeStore::open(), cfg)?;
        crate::vm_shares::check_binds(cfg)?;
        return Ok(held);
    }
    Ok(Default::default())
}

/// Whether `m` came from `-v` rather than `--mount`, as far as the spec
/// tells: a `-v` bind may create its host path; a `-v` volume has a mode
/// string whenever it is read-only or nocopy, and never labels, options
/// or a driver. (A plain `--mount type=volume` reads as `-v`.)
fn from_volume_flag(m: &MountSpec) -> bool {
    match m.kind {
        MountType::Bind => m.create_host_path,
        MountType::Volume => {
            !m.mode.is_empty()
                || (!m.read_only
                    && !m.no_copy
                    && m.volume_labels.is_empty()
                    && m.volume_options.is_empty()
                    && m.volume_driver.is_none())
        }
        MountType::Tmpfs => false,
    }
}

/// inspect's `HostConfig.Binds`: the `-v SRC:DST[:MODE]` specs (host parts
/// absolute, as docker's CLI sent them); null when there are none.
pub fn binds_json(mounts: &[MountSpec]) -> Value {
    let list: Vec<String> = mounts
        .iter()
        .filter(|m| from_volume_flag(m) && !m.source.is_empty())
        .map(|m| {
            let mut s = format!("{}:{}", m.source, m.target);
            if !m.mode.is_empty() {
                s.push(':');
                s.push_str(&m.mode);
            }
            s
        })
        .collect();
    if list.is_empty() {
        Value::Null
    } else {
        json!(list)
    }
}

/// inspect's `Config.Volumes`: the anonymous `-v DST` volumes; null when
/// there are none.
pub fn config_volumes_json(mounts: &[MountSpec]) -> Value {
    let map: Map<String, Value> = mounts
        .iter()
        .filter(|m| from_volume_flag(m) && m.kind == MountType::Volume && m.source.is_empty())
        .map(|m| (m.target.clone(), json!({})))
        .collect();
    if map.is_empty() {
        Value::Null
    } else {
        Value::Object(map)
    }
}

/// inspect's `HostConfig.Mounts`: the `--mount`s, as docker's API type
/// `mount.Mount` (empty fields left out); `None` when there are none
/// (docker then leaves the key out).
pub fn host_mounts_json(mounts: &[MountSpec]) -> Option<Value> {
    let list: Vec<Value> = mounts
        .iter()
        .filter(|m| !from_volume_flag(m))
        .map(|m| {
            let mut o = Map::new();
            o.insert("Type".into(), json!(m.kind.as_str()));
            if !m.source.is_empty() {
                o.insert("Source".into(), json!(m.source));
            }
            o.insert("Target".into(), json!(m.target));
            if m.read_only {
                o.insert("ReadOnly".into(), json!(true));
            }
            let mut bind = Map::new();
            if let Some(p) = m.propagation.as_ref().filter(|p| !p.is_empty()) {
                bind.insert("Propagation".into(), json!(p));
            }
            if m.non_recursive {
                bind.insert("NonRecursive".into(), json!(true));
            }
            if !bind.is_empty() {
                o.insert("BindOptions".into(), Value::Object(bind));
            }
            let opts = m.no_copy
                || !m.volume_labels.is_empty()
                || !m.volume_options.is_empty()
                || m.volume_driver.is_some();
            if opts {
                let mut vo = Map::new();
                if m.no_copy {
                    vo.insert("NoCopy".into(), json!(true));
                }
                if !m.volume_labels.is_empty() {
                    vo.insert("Labels".into(), json!(m.volume_labels));
                }
                let mut driver = Map::new();
                if let Some(d) = &m.volume_driver {
                    driver.insert("Name".into(), json!(d));
                }
                if !m.volume_options.is_empty() {
                    driver.insert("Options".into(), json!(m.volume_options));
                }
                vo.insert("DriverConfig".into(), Value::Object(driver));
                o.insert("VolumeOptions".into(), Value::Object(vo));
            }
            let mut tmpfs = Map::new();
            if let Some(n) = m.tmpfs_size.filter(|n| *n != 0) {
                tmpfs.insert("SizeBytes".into(), json!(n));
            }
            if let Some(n) = m.tmpfs_mode.filter(|n| *n != 0) {
                tmpfs.insert("Mode".into(), json!(n));
            }
            if !tmpfs.is_empty() {
                o.insert("TmpfsOptions".into(), Value::Object(tmpfs));
            }
            Value::Object(o)
        })
        .collect();
    (!list.is_empty()).then(|| json!(list))
}

/// inspect's top-level `Mounts`: what the engine mounted, as docker shows
/// it (a volume's name and driver; none for binds and tmpfs).
pub fn mount_points_json(points: &[MountPoint]) -> Value {
    json!(points
        .iter()
        .map(|p| {
            let mut o = Map::new();
            o.insert("Type".into(), json!(p.kind.as_str()));
            if p.kind == MountType::Volume {
                o.insert("Name".into(), json!(p.name.clone().unwrap_or_default()));
            }
            o.insert("Source".into(), json!(p.source));
            o.insert("Destination".into(), json!(p.destination));
            if p.kind == MountType::Volume {
                o.insert("Driver".into(), json!("local"));
            }
            o.insert("Mode".into(), json!(p.mode));
            o.insert("RW".into(), json!(p.rw));
            o.insert("Propagation".into(), json!(p.propagation));
            Value::Object(o)
        })
        .collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cwd() -> PathBuf {
        PathBuf::from("/home/u/proj")
    }

    fn v(raw: &str) -> MountSpec {
        parse_volume(raw, &cwd()).unwrap_or_else(|e| panic!("{raw}: {e:?}"))
    }

    fn v_err(raw: &str) -> String {
        match parse_volume(raw, &cwd()) {
            Ok(m) => panic!("{raw} parsed: {m:?}"),
            Err(ArgError::Daemon(m)) => format!("daemon: {m}"),
            Err(ArgError::Other(m)) => format!("cli: {m}"),
            Err(e) => format!("{e:?}"),
        }
    }

    fn mnt(raw: &str) -> MountSpec {
        parse_mount(raw, &cwd()).unwrap_or_else(|e| panic!("{raw}: {e:?}"))
    }

    fn mnt_err(raw: &str) -> String {
        match parse_mount(raw, &cwd()) {
            Ok(m) => panic!("{raw} parsed: {m:?}"),
            Err(ArgError::Daemon(m)) => format!("daemon: {m}"),
            Err(ArgError::Flag {
                flag,
                value,
                reason,
            }) => {
                assert_eq!((flag, value.as_str()), ("--mount", raw));
                format!("flag: {reason}")
            }
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn volume_kinds() {
        let m = v("/data");
        assert_eq!(
            (m.kind, m.source.as_str(), m.target.as_str()),
            (MountType::Volume, "", "/data")
        );
        assert!(!m.create_host_path);
        let m = v("myvol:/data");
        assert_eq!(
            (m.kind, m.source.as_str(), m.target.as_str()),
            (MountType::Volume, "myvol", "/data")
        );
        assert_eq!(m.mode, "");
        let m = v("/h:/c");
        assert_eq!((m.kind, m.source.as_str()), (MountType::Bind, "/h"));
        assert!(m.create_host_path && !m.read_only);
        assert_eq!(m.propagation, None);
        let m = v("/h//x/../y:/c:ro,z,rslave");
        assert_eq!(m.source, "/h/y");
        assert!(m.read_only);
        assert_eq!(m.mode, "ro,z,rslave");
        assert_eq!(m.propagation.as_deref(), Some("rslave"));
        let m = v("data:/d:nocopy,ro");
        assert!(m.no_copy && m.read_only);
        // Not validated by the CLI: the engine words name errors.
        assert_eq!(v("~/x:/c").source, "~/x");
    }

    #[test]
    fn volume_relative_host_paths() {
        assert_eq!(v("./h:/c").source, "/home/u/proj/h");
        assert_eq!(v(".:/c").source, "/home/u/proj");
        assert_eq!(v("../o:/c:ro").source, "/home/u/o");
        assert_eq!(v(".hid:/c").source, "/home/u/proj/.hid");
        assert_eq!(v("./h:/c").kind, MountType::Bind);
    }

    #[test]
    fn volume_errors_as_docker() {
        assert_eq!(v_err(""), "cli: invalid empty volume spec");
        assert_eq!(
            v_err("/h:/c:"),
            "cli: invalid spec: /h:/c:: empty section between colons"
        );
        assert_eq!(
            v_err("x:/a:"),
            "cli: invalid spec: x:/a:: empty section between colons"
        );
        assert_eq!(
            v_err("xx:/a:ro:bb"),
            "cli: invalid spec: xx:/a:ro:bb: too many colons"
        );
        assert_eq!(
            v_err("/foo:rw"),
            "daemon: invalid volume specification: '/foo:rw'"
        );
        assert_eq!(
            v_err("/c:ro"),
            "daemon: invalid volume specification: '/c:ro'"
        );
        assert_eq!(
            v_err("x:/a:b:c"),
            "daemon: invalid volume specification: 'x:/a:b:c'"
        );
        assert_eq!(v_err("x::/a"), "daemon: invalid mode: /a");
        assert_eq!(v_err("/h:/c:bogus"), "daemon: invalid mode: bogus");
        assert_eq!(v_err("/h:/c:ro,rw"), "daemon: invalid mode: ro,rw");
        assert_eq!(v_err("/h:/c:z,Z"), "daemon: invalid mode: z,Z");
        assert_eq!(
            v_err("/h:/c:nocopy,nocopy"),
            "daemon: invalid mode: nocopy,nocopy"
        );
        assert_eq!(
            v_err("/h:/c:rw,Z,shared,nocopy,cached"),
            "daemon: invalid volume specification: '/h:/c:rw,Z,shared,nocopy,cached': invalid mount config for type \"bind\": field VolumeOptions must not be specified"
        );
        assert_eq!(
            v_err("vol:/c:shared"),
            "daemon: invalid volume specification: 'vol:/c:shared': invalid mount config for type \"volume\": field BindOptions must not be specified"
        );
        assert_eq!(
            v_err("/h:rel"),
            "daemon: invalid volume specification: '/h:rel': invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            v_err("/h:/"),
            "daemon: invalid volume specification: '/h:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"
        );
        assert_eq!(
            v_err("vol:/x/.."),
            "daemon: invalid volume specification: 'vol:/x/..': invalid mount config for type \"volume\": invalid specification: destination can't be '/'"
        );
        assert_eq!(
            v_err("rel"),
            "daemon: invalid volume specification: 'rel': invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute"
        );
        // The error names the absolutized spec, as the daemon sees it.
        assert_eq!(
            v_err("./h:rel"),
            "daemon: invalid volume specification: '/home/u/proj/h:rel': invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"
        );
    }

    #[test]
    fn modes() {
        assert!(valid_mode("rw,Z,shared,nocopy,cached"));
        assert!(valid_mode("ro"));
        assert!(!valid_mode("ro,rw"));
        assert!(!valid_mode("shared,private"));
        assert!(!valid_mode("cached,delegated"));
        assert!(!valid_mode("rw,"));
        assert!(!valid_mode("bogus"));
    }

    #[test]
    fn mount_fields() {
        let m = mnt("type=bind,src=/tmp,target=/c,bind-propagation=RSLAVE,bind-nonrecursive,ro");
        assert_eq!(
            (m.kind, m.source.as_str(), m.target.as_str()),
            (MountType::Bind, "/tmp", "/c")
        );
        assert!(m.read_only && m.non_recursive && !m.create_host_path);
        assert_eq!(m.propagation.as_deref(), Some("rslave"));
        let m = mnt("target=/d");
        assert_eq!((m.kind, m.source.as_str()), (MountType::Volume, ""));
        let m = mnt("type=VOLUME,source=data,dst=/d,readonly=TRUE,volume-label=a=b,volume-label=c,volume-opt=o=1,volume-driver=local,volume-nocopy");
        assert_eq!(m.source, "data");
        assert!(m.read_only && m.no_copy);
        assert_eq!(m.volume_labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(m.volume_labels.get("c").map(String::as_str), Some(""));
        assert_eq!(m.volume_options.get("o").map(String::as_str), Some("1"));
        assert_eq!(m.volume_driver.as_deref(), Some("local"));
        let m = mnt("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770");
        assert_eq!(m.tmpfs_size, Some(64 << 20));
        assert_eq!(m.tmpfs_mode, Some(0o1770));
        assert_eq!(m.mode, "");
        assert_eq!(mnt("type=bind,src=./x,dst=/c").source, "/home/u/proj/x");
        assert_eq!(mnt("type=bind,src=.,dst=/c").source, "/home/u/proj");
        assert_eq!(mnt("type=volume,\"target=/c,x\"").target, "/c,x");
        assert_eq!(mnt("type=volume,target=/c,consistency=bogus").target, "/c");
        assert!(mnt("type=volume,src=v,target=/c,ro=0").read_only.eq(&false));
        assert!(mnt("type=tmpfs,target=/c,ro").read_only);
    }

    #[test]
    fn mount_errors_as_docker() {
        assert_eq!(
            mnt_err("foo"),
            "flag: invalid field 'foo' must be a key=value pair"
        );
        assert_eq!(mnt_err("type=volume"), "flag: target is required");
        assert_eq!(mnt_err("type=,target=/c"), "flag: type is required");
        assert_eq!(mnt_err(""), "flag: EOF");
        assert_eq!(
            mnt_err("target=/c,bogus=1"),
            "flag: unexpected key 'bogus' in 'bogus=1'"
        );
        assert_eq!(
            mnt_err("type=bind,target=/c,volume-nocopy"),
            "flag: cannot mix 'volume-*' options with mount type 'bind'"
        );
        assert_eq!(
            mnt_err("type=volume,target=/c,bind-propagation=shared"),
            "flag: cannot mix 'bind-*' options with mount type 'volume'"
        );
        assert_eq!(
            mnt_err("type=volume,target=/c,tmpfs-size=1m"),
            "flag: cannot mix 'tmpfs-*' options with mount type 'volume'"
        );
        assert_eq!(
            mnt_err("type=volume,target=/c,ro=maybe"),
            "flag: invalid value for ro: maybe"
        );
        assert_eq!(
            mnt_err("type=tmpfs,target=/c,tmpfs-size=abc"),
            "flag: invalid value for tmpfs-size: abc"
        );
        assert_eq!(
            mnt_err("type=tmpfs,target=/c,tmpfs-mode=999"),
            "flag: invalid value for tmpfs-mode: 999"
        );
        assert_eq!(
            mnt_err("type=volume,target=/c,volume-nocopy=x"),
            "flag: invalid value for volume-nocopy: x"
        );
        assert_eq!(
            mnt_err("type=bind,src=/tmp,target=/c,bind-nonrecursive=maybe"),
            "flag: invalid value for bind-nonrecursive: maybe"
        );
        assert_eq!(
            mnt_err("\"type=volume,target=/c"),
            "flag: parse error on line 1, column 23: extraneous or missing \" in quoted-field"
        );
        assert_eq!(
            mnt_err("type=volume,tar\"get=/c"),
            "flag: parse error on line 1, column 16: bare \" in non-quoted-field"
        );
        assert_eq!(
            mnt_err("type=volume,\"target=/c\"x"),
            "flag: parse error on line 1, column 23: extraneous or missing \" in quoted-field"
        );
        assert_eq!(
            mnt_err("type=foo,target=/c"),
            "daemon: invalid mount config for type \"foo\": mount type unknown"
        );
        assert_eq!(
            mnt_err("type=bind,target=/c"),
            "daemon: invalid mount config for type \"bind\": field Source must not be empty"
        );
        assert_eq!(
            mnt_err("type=tmpfs,src=x,target=/c"),
            "daemon: invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        assert_eq!(
            mnt_err("type=volume,target=rel"),
            "daemon: invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            mnt_err("type=volume,target=/"),
            "daemon: invalid mount config for type \"volume\": invalid specification: destination can't be '/'"
        );
        assert_eq!(
            mnt_err("type=bind,src=/tmp,target=/c,bind-propagation=bogus"),
            "daemon: invalid mount config for type \"bind\": invalid propagation mode: bogus"
        );
        assert_eq!(
            mnt_err("type=bind,src=rel,target=/c"),
            "daemon: invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            mnt_err("type=volume,target=/c,readonly"),
            "daemon: invalid mount config for type \"volume\": must not set ReadOnly mode when using anonymous volumes"
        );
    }

    #[test]
    fn csv_like_go() {
        assert_eq!(csv_record("a,b").unwrap(), ["a", "b"]);
        assert_eq!(csv_record("a,,b").unwrap(), ["a", "", "b"]);
        assert_eq!(csv_record("\"a\"\"b\",c").unwrap(), ["a\"b", "c"]);
        assert_eq!(csv_record("a,").unwrap(), ["a", ""]);
        assert_eq!(csv_record("a,b\nc,d").unwrap(), ["a", "b"]);
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(ram_in_bytes("64m"), Some(64 << 20));
        assert_eq!(ram_in_bytes("1.5k"), Some(1536));
        assert_eq!(ram_in_bytes("2 MiB"), Some(2 << 20));
        assert_eq!(ram_in_bytes("10"), Some(10));
        assert_eq!(ram_in_bytes("10b"), Some(10));
        assert_eq!(ram_in_bytes("1G"), Some(1 << 30));
        assert_eq!(ram_in_bytes("abc"), None);
        assert_eq!(ram_in_bytes("-1m"), None);
        assert_eq!(ram_in_bytes("1.m"), None);
        assert_eq!(ram_in_bytes("1mm"), None);
        assert_eq!(ram_in_bytes(""), None);
    }

    #[test]
    fn paths_cleaned_like_go() {
        assert_eq!(clean("/a/./b/../c/"), "/a/c");
        assert_eq!(clean("/.."), "/");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(absolute("../x", Path::new("/a/b")), "/a/x");
        assert_eq!(absolute(".", Path::new("/a/b")), "/a/b");
    }

    #[test]
    fn inspect_shapes() {
        let mounts = vec![
            v("myvol:/data"),
            v("/tmp/hh:/c:ro,z"),
            v("/anon"),
            v("./hh:/rel"),
            mnt("type=volume,src=mv2,dst=/m2,volume-label=x=y"),
            mnt("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770"),
            mnt("type=bind,src=/tmp,target=/b,bind-propagation=rslave,bind-nonrecursive,ro"),
            mnt("type=volume,src=named,dst=/n,ro"),
        ];
        assert_eq!(
            binds_json(&mounts),
            json!(["myvol:/data", "/tmp/hh:/c:ro,z", "/home/u/proj/hh:/rel"])
        );
        assert_eq!(config_volumes_json(&mounts), json!({"/anon": {}}));
        assert_eq!(
            host_mounts_json(&mounts).unwrap(),
            json!([
                {"Type": "volume", "Source": "mv2", "Target": "/m2",
                 "VolumeOptions": {"Labels": {"x": "y"}, "DriverConfig": {}}},
                {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 67108864, "Mode": 1016}},
                {"Type": "bind", "Source": "/tmp", "Target": "/b", "ReadOnly": true,
                 "BindOptions": {"Propagation": "rslave", "NonRecursive": true}},
                {"Type": "volume", "Source": "named", "Target": "/n", "ReadOnly": true}
            ])
        );
        assert_eq!(binds_json(&[]), Value::Null);
        assert_eq!(config_volumes_json(&[]), Value::Null);
        assert_eq!(host_mounts_json(&[v("/x")]), None);
        let points = vec![
            MountPoint {
                kind: MountType::Volume,
                name: Some("v".into()),
                source: "/var/lib/docker/volumes/v/_data".into(),
                destination: "/data".into(),
                mode: "z".into(),
                rw: true,
                propagation: String::new(),
                anonymous: false,
                non_recursive: false,
                copy_up: true,
                tmpfs_options: Vec::new(),
            },
            MountPoint {
                kind: MountType::Bind,
                name: None,
                source: "/h".into(),
                destination: "/c".into(),
                mode: String::new(),
                rw: true,
                propagation: "rprivate".into(),
                anonymous: false,
                non_recursive: false,
                copy_up: false,
                tmpfs_options: Vec::new(),
            },
        ];
        assert_eq!(
            mount_points_json(&points),
            json!([
                {"Type": "volume", "Name": "v", "Source": "/var/lib/docker/volumes/v/_data",
                 "Destination": "/data", "Driver": "local", "Mode": "z", "RW": true, "Propagation": ""},
                {"Type": "bind", "Source": "/h", "Destination": "/c", "Mode": "", "RW": true,
                 "Propagation": "rprivate"}
            ])
        );
    }

    fn cfg(mounts: Vec<MountSpec>, from: &[&str]) -> ContainerConfig {
        ContainerConfig {
            mounts,
            volumes_from: from.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn placement_rules() {
        let bind = cfg(vec![v("/h:/c")], &[]);
        let named = cfg(vec![v("data:/d")], &[]);
        let anon = cfg(vec![v("/d"), mnt("type=tmpfs,dst=/t")], &[]);
        let from = cfg(vec![], &["other:ro"]);
        let check = |iso, c: &ContainerConfig| {
            let mut c = c.clone();
            check_placement_with(iso, &mut c, Vec::new).map(|_| c)
        };
        for c in [&bind, &named, &anon, &from] {
            assert!(check(Isolation::Native, c).is_ok());
        }
        // Shared: a bind must lie in a shared folder; its source becomes
        // the guest path.
        let e = check(Isolation::Shared, &bind).unwrap_err();
        assert!(
            e.starts_with(
                "bind mount source /h is not in a folder shared with the machine VM (shared: none)"
            ),
            "{e}"
        );
        let d = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(d.path()).unwrap();
        let inside = cfg(vec![v(&format!("{}/sub:/c", real.display()))], &[]);
        let mut c = inside.clone();
        let _held = check_placement_with(Isolation::Shared, &mut c, || vec![real.clone()]).unwrap();
        assert_eq!(
            c.mounts[0].source,
            format!("/host_mnt{}/sub", real.display())
        );
        let missing = cfg(
            vec![mnt(&format!(
                "type=bind,src={}/nope,dst=/c",
                real.display()
            ))],
            &[],
        );
        let mut c = missing.clone();
        let e = check_placement_with(Isolation::Shared, &mut c, || vec![real.clone()]).unwrap_err();
        let want = format!("bind source path does not exist: {}/nope", real.display());
        assert!(e.ends_with(&want), "{e}");
        assert!(check(Isolation::Shared, &named).is_ok());
        assert!(check(Isolation::Shared, &anon).is_ok());
        assert!(check(Isolation::Shared, &from).is_ok());
        // A bind in an own VM is one of its shares (vm_shares.rs): its
        // source points at the guest path.
        let mut c = inside.clone();
        let _held = check_placement_with(Isolation::Vm, &mut c, || unreachable!()).unwrap();
        assert_eq!(
            c.mounts[0].source,
            format!("/host_mnt{}/sub", real.display())
        );
        assert!(real.join("sub").is_dir(), "-v makes a missing folder");
        let mut c = missing.clone();
        let e = check_placement_with(Isolation::Vm, &mut c, || unreachable!()).unwrap_err();
        assert!(e.ends_with(&want), "{e}");
        // A named volume in an own VM becomes a host folder in the berth
        // home (vm_volumes.rs tests it in a store of its own).
        assert!(check(Isolation::Vm, &anon).is_ok());
        assert!(check(Isolation::Vm, &from).is_err());
    }
}
