//! docker's values for container limits, devices and namespaced sysctls
//! (`--ulimit`, `--shm-size`, `-m`, `--sysctl`, `--device`), parsed and
//! refused with the words of docker's CLI. Shared by `run`/`create` and
//! compose, whose service keys carry the same values. What the values
//! mean (limits the node allows, devices that exist) is the engine's to
//! check.

use berth_protocol::{DeviceMapping, Ulimit};

/// Go's `strconv.ParseInt(s, 10, 64)` error text.
pub fn parse_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseInt: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.ParseInt: parsing {s:?}: value out of range"))
}

/// Parses docker's memory sizes (`32m`, `1g`, `512k`, plain bytes).
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .filter(|x| !x.is_empty() && x.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let v: f64 = num.parse().map_err(|_| format!("invalid size: '{s}'"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("invalid size: '{s}'"));
    }
    let bytes = v * mult as f64;
    // Past i64 (docker's int64 conversion wraps it negative, and its
    // daemon refuses that): refused rather than clamped.
    if bytes >= i64::MAX as f64 {
        return Err(format!("invalid size: '{s}'"));
    }
    Ok(bytes as i64)
}

/// One `--ulimit NAME=SOFT[:HARD]` (go-units' `ParseUlimit`).
pub fn parse_ulimit(val: &str) -> Result<Ulimit, String> {
    let (name, limits) = val
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {val}"))?;
    if !berth_protocol::ULIMIT_RLIMITS
        .iter()
        .any(|(n, _)| *n == name)
    {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let parts: Vec<&str> = limits.split(':').collect();
    let (soft, hard) = match parts.as_slice() {
        [s] => {
            let s = parse_int(s)?;
            (s, s)
        }
        [s, h] => {
            let h = parse_int(h)?;
            (parse_int(s)?, h)
        }
        _ => {
            return Err(format!(
                "too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`"
            ))
        }
    };
    if hard != -1 {
        if soft == -1 {
            return Err(format!("ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: {hard}"));
        }
        if soft > hard {
            return Err(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            ));
        }
    }
    Ok(Ulimit {
        name: name.into(),
        soft,
        hard,
    })
}

/// docker's CLI `ValidateSysctl`: keys of the IPC and network namespaces.
pub fn validate_sysctl(val: &str) -> Result<(String, String), String> {
    let refused = || format!("sysctl '{val}' is not allowed");
    let (k, v) = val.split_once('=').ok_or_else(refused)?;
    if k.is_empty() {
        return Err(refused());
    }
    if berth_protocol::IPC_SYSCTLS.contains(&k)
        || k.starts_with("net.")
        || k.starts_with("fs.mqueue.")
    {
        Ok((k.to_string(), v.to_string()))
    } else {
        Err(refused())
    }
}

/// docker's `validDeviceMode`: some of `r`, `w`, `m`, each once.
fn valid_device_mode(mode: &str) -> bool {
    !mode.is_empty()
        && mode.len() <= 3
        && mode.bytes().all(|c| matches!(c, b'r' | b'w' | b'm'))
        && mode
            .bytes()
            .enumerate()
            .all(|(i, c)| !mode.as_bytes()[..i].contains(&c))
}

/// Go's `path.Clean` for the absolute and relative paths `--device` names.
fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let j = out.join("/");
    match (abs, j.is_empty()) {
        (true, _) => format!("/{j}"),
        (false, true) => ".".into(),
        (false, false) => j,
    }
}

/// One `--device HOST[:CONTAINER][:PERMISSIONS]`: docker's CLI
/// `validateLinuxPath` then `parseLinuxDevice`.
pub fn parse_device(val: &str) -> Result<DeviceMapping, String> {
    if val.matches(':').count() > 2 {
        return Err(format!("bad format for path: {val}"));
    }
    let split: Vec<&str> = val.splitn(3, ':').collect();
    if split[0].is_empty() {
        return Err(format!("bad format for path: {val}"));
    }
    let (src, dst, mode) = match split.as_slice() {
        [s] => (*s, clean(s), "rwm".to_string()),
        [s, m] if valid_device_mode(m) => (*s, clean(s), m.to_string()),
        [s, d] => (*s, clean(d), "rwm".to_string()),
        [s, d, m] => {
            if !valid_device_mode(m) {
                return Err(format!("bad mode specified: {m}"));
            }
            (*s, d.to_string(), m.to_string())
        }
        _ => unreachable!("splitn(3) gives one to three parts"),
    };
    if !dst.starts_with('/') {
        return Err(format!("{dst} is not an absolute path"));
    }
    Ok(DeviceMapping {
        path_on_host: src.into(),
        path_in_container: dst,
        cgroup_permissions: mode,
    })
}
