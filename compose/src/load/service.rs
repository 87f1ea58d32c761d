//! Conversion of one file's YAML nodes to the typed model: a service and its
//! `build`, `healthcheck`, `ports` and `volumes`, and the top-level volume and
//! network definitions, each value checked with docker-compose's words.

use std::path::PathBuf;

use super::{normpath, run_keys, Cx, MAX_PORTS, PASSTHROUGH_SERVICE_KEYS};
use crate::error::ComposeError;
use crate::model::*;
use crate::value::Value;
use crate::yaml::{Kind, Node, Scalar};

fn command(cx: &Cx, n: &Node, key: &str) -> Result<Option<Command>, ComposeError> {
    Ok(match &n.kind {
        _ if n.is_null() => None,
        Kind::Scalar { .. } => Some(Command::Shell(cx.string(n, key)?)),
        Kind::Seq(items) => Some(Command::Exec(
            items
                .iter()
                .map(|i| cx.string(i, key))
                .collect::<Result<_, _>>()?,
        )),
        Kind::Map(_) => {
            return Err(cx.err(
                n,
                key,
                "contains an invalid type, it should be a string or an array",
            ))
        }
    })
}

pub(super) fn service(cx: &Cx, name: &str, n: &Node) -> Result<Service, ComposeError> {
    let base = format!("services.{name}");
    let mut s = Service {
        name: name.to_string(),
        ..Service::default()
    };
    if n.is_null() {
        return Ok(s);
    }
    for (k, v) in cx.map(n, &base)? {
        let key = k.text().unwrap_or_default();
        s.key_locations.insert(
            key.to_string(),
            Location {
                file: cx.file.to_path_buf(),
                line: k.mark.line,
                col: k.mark.col,
            },
        );
        let path = format!("{base}.{key}");
        let p = path.as_str();
        match key {
            "build" => s.build = Some(build(cx, v, p)?),
            "image" => s.image = cx.opt_string(v, p)?,
            "command" => s.command = command(cx, v, p)?,
            "entrypoint" => s.entrypoint = command(cx, v, p)?,
            "environment" => {
                for (ek, ev) in cx.kv(v, p)? {
                    let val = match ev {
                        None => EnvValue::Unset,
                        Some(Value::Str(s)) => EnvValue::Str(s),
                        Some(Value::Int(i)) => EnvValue::Int(i),
                        Some(Value::Float(f)) => EnvValue::Float(f),
                        Some(other) => {
                            let bad = match other {
                                Value::Bool(b) => b.to_string(),
                                _ => "a collection".into(),
                            };
                            let at = v.get(&ek).unwrap_or(v);
                            return Err(cx.err(
                                at,
                                &format!("{p}.{ek}"),
                                format!("contains {bad}, which is an invalid type, it should be a string, number, or a null"),
                            ));
                        }
                    };
                    s.environment.insert(ek, val);
                }
            }
            "env_file" => {
                s.env_file = cx
                    .string_list(v, p)?
                    .iter()
                    .map(|f| PathBuf::from(cx.host_path(f)))
                    .collect()
            }
            "ports" => {
                for item in cx.seq(v, p)? {
                    s.ports.extend(port(cx, item, p)?);
                    if s.ports.len() > MAX_PORTS {
                        return Err(cx.err(item, p, format!("more than {MAX_PORTS} ports")));
                    }
                }
            }
            "volumes" => {
                for item in cx.seq(v, p)? {
                    s.volumes.push(mount(cx, item, p)?);
                }
            }
            "tmpfs" => s.tmpfs = cx.string_list(v, p)?,
            "depends_on" => match &v.kind {
                Kind::Seq(items) => {
                    for i in items {
                        s.depends_on.insert(
                            cx.string(i, p)?,
                            Dependency {
                                condition: Condition::Started,
                            },
                        );
                    }
                }
                Kind::Map(m) => {
                    for (dk, dv) in m {
                        let dname = dk.text().unwrap_or_default().to_string();
                        let dp = format!("{p}.{dname}");
                        let mut condition = Condition::Started;
                        if !dv.is_null() {
                            for (ck, cv) in cx.map(dv, &dp)? {
                                match ck.text().unwrap_or_default() {
                                    "condition" => {
                                        condition = match cx
                                            .string(cv, &format!("{dp}.condition"))?
                                            .as_str()
                                        {
                                            "service_started" => Condition::Started,
                                            "service_healthy" => Condition::Healthy,
                                            "service_completed_successfully" => {
                                                Condition::CompletedSuccessfully
                                            }
                                            other => {
                                                return Err(cx.err(
                                                    cv,
                                                    &format!("{dp}.condition"),
                                                    format!("unknown condition '{other}'"),
                                                ))
                                            }
                                        }
                                    }
                                    "restart" | "required" => {}
                                    other => {
                                        return Err(cx.err(
                                            ck,
                                            &format!("{dp}.{other}"),
                                            format!(
                                                "unsupported config option for {dp}: '{other}'"
                                            ),
                                        ))
                                    }
                                }
                            }
                        }
                        s.depends_on.insert(dname, Dependency { condition });
                    }
                }
                Kind::Scalar { .. } => {
                    return Err(cx.err(
                        v,
                        p,
                        "contains an invalid type, it should be an array or an object",
                    ))
                }
            },
            "links" => s.links = cx.string_list(v, p)?,
            "networks" => match &v.kind {
                Kind::Seq(items) => {
                    for i in items {
                        s.networks.insert(cx.string(i, p)?, None);
                    }
                }
                Kind::Map(m) => {
                    for (nk, nv) in m {
                        let nname = nk.text().unwrap_or_default().to_string();
                        let np = format!("{p}.{nname}");
                        if nv.is_null() {
                            s.networks.insert(nname, None);
                            continue;
                        }
                        let mut sn = ServiceNetwork::default();
                        for (ak, av) in cx.map(nv, &np)? {
                            match ak.text().unwrap_or_default() {
                                "aliases" => {
                                    sn.aliases = cx.string_list(av, &format!("{np}.aliases"))?
                                }
                                other @ ("ipv4_address" | "ipv6_address" | "link_local_ips"
                                | "priority" | "mac_address" | "driver_opts"
                                | "gw_priority") => {
                                    sn.other.insert(other.to_string(), Value::from_node(av));
                                }
                                other if other.starts_with("x-") => {}
                                other => {
                                    return Err(cx.err(
                                        ak,
                                        &format!("{np}.{other}"),
                                        format!("unsupported config option for {np}: '{other}'"),
                                    ))
                                }
                            }
                        }
                        s.networks.insert(nname, Some(sn));
                    }
                }
                Kind::Scalar { .. } => {
                    return Err(cx.err(
                        v,
                        p,
                        "contains an invalid type, it should be an array or an object",
                    ))
                }
            },
            "healthcheck" => s.healthcheck = Some(healthcheck(cx, v, p)?),
            "restart" => {
                s.restart = match v.typed() {
                    Some(Scalar::Bool(false)) => Some("no".into()),
                    _ => cx.opt_string(v, p)?,
                }
            }
            "deploy" => {
                if let Some(r) = v.get("replicas") {
                    cx.uint(r, &format!("{p}.replicas"))?;
                }
                s.deploy = Some(Value::from_node(v));
            }
            "scale" => s.scale = Some(cx.uint(v, p)?),
            "labels" => s.labels = cx.string_map(v, p)?,
            "working_dir" => s.working_dir = cx.opt_string(v, p)?,
            "user" => s.user = cx.opt_string(v, p)?,
            "hostname" => s.hostname = cx.opt_string(v, p)?,
            "init" => s.init = Some(cx.bool(v, p)?),
            "tty" => s.tty = Some(cx.bool(v, p)?),
            "stdin_open" => s.stdin_open = Some(cx.bool(v, p)?),
            "stop_signal" => s.stop_signal = cx.opt_string(v, p)?,
            "stop_grace_period" => {
                let d = cx.string(v, p)?;
                if Duration::parse(&d).is_none() {
                    return Err(cx.err(v, p, format!("invalid duration '{d}'")));
                }
                s.stop_grace_period = Some(d)
            }
            "profiles" => s.profiles = cx.string_list(v, p)?,
            "extends" => {} // resolved after the file is read
            k if run_keys::KEYS.contains(&k) => {
                run_keys::check(cx, k, v, p)?;
                s.other.insert(k.to_string(), Value::from_node(v));
            }
            k if k.starts_with("x-") || PASSTHROUGH_SERVICE_KEYS.contains(&k) => {
                s.other.insert(k.to_string(), Value::from_node(v));
            }
            other => {
                return Err(cx.err(
                    k,
                    p,
                    format!("unsupported config option for {base}: '{other}'"),
                ));
            }
        }
    }
    Ok(s)
}

fn build(cx: &Cx, n: &Node, p: &str) -> Result<Build, ComposeError> {
    let ctx_path = |c: &str| -> String {
        if c.contains("://") || c.starts_with("git@") || c.starts_with("github.com/") {
            c.to_string()
        } else {
            cx.host_path(c)
        }
    };
    if let Kind::Scalar { .. } = n.kind {
        return Ok(Build {
            context: ctx_path(&cx.string(n, p)?),
            ..Build::default()
        });
    }
    let mut b = Build {
        context: ctx_path("."),
        ..Build::default()
    };
    for (k, v) in cx.map(n, p)? {
        let key = k.text().unwrap_or_default();
        let kp = format!("{p}.{key}");
        match key {
            "context" => b.context = ctx_path(&cx.string(v, &kp)?),
            "dockerfile" => b.dockerfile = cx.opt_string(v, &kp)?,
            "target" => b.target = cx.opt_string(v, &kp)?,
            "args" => b.args = cx.string_map(v, &kp)?,
            "labels"
            | "cache_from"
            | "cache_to"
            | "network"
            | "shm_size"
            | "extra_hosts"
            | "isolation"
            | "no_cache"
            | "pull"
            | "platforms"
            | "secrets"
            | "ssh"
            | "tags"
            | "dockerfile_inline"
            | "additional_contexts"
            | "privileged"
            | "ulimits" => {
                b.other.insert(key.to_string(), Value::from_node(v));
            }
            k if k.starts_with("x-") => {}
            other => {
                return Err(cx.err(
                    k,
                    &kp,
                    format!("unsupported config option for {p}: '{other}'"),
                ))
            }
        }
    }
    Ok(b)
}

fn healthcheck(cx: &Cx, n: &Node, p: &str) -> Result<Healthcheck, ComposeError> {
    let mut h = Healthcheck::default();
    let mut disable = false;
    for (k, v) in cx.map(n, p)? {
        let key = k.text().unwrap_or_default();
        let kp = format!("{p}.{key}");
        let dur = |v: &Node| -> Result<Option<Duration>, ComposeError> {
            if v.is_null() {
                return Ok(None);
            }
            let s = cx.string(v, &kp)?;
            Duration::parse(&s)
                .map(Some)
                .ok_or_else(|| cx.err(v, &kp, format!("invalid duration '{s}'")))
        };
        match key {
            "test" => h.test = command(cx, v, &kp)?,
            "interval" => h.interval = dur(v)?,
            "timeout" => h.timeout = dur(v)?,
            "start_period" => h.start_period = dur(v)?,
            "start_interval" => {}
            "retries" => h.retries = Some(cx.uint(v, &kp)?),
            "disable" => disable = cx.bool(v, &kp)?,
            k if k.starts_with("x-") => {}
            other => {
                return Err(cx.err(
                    k,
                    &kp,
                    format!("unsupported config option for {p}: '{other}'"),
                ))
            }
        }
    }
    if disable {
        h.test = Some(Command::Exec(vec!["NONE".into()]));
    }
    Ok(h)
}

fn parse_port_num(cx: &Cx, n: &Node, key: &str, s: &str) -> Result<u16, ComposeError> {
    s.parse::<u16>()
        .map_err(|_| cx.err(n, key, format!("invalid port '{s}'")))
}

fn port_range(cx: &Cx, n: &Node, key: &str, s: &str) -> Result<Vec<u16>, ComposeError> {
    match s.split_once('-') {
        None => Ok(vec![parse_port_num(cx, n, key, s)?]),
        Some((a, b)) => {
            let a = parse_port_num(cx, n, key, a)?;
            let b = parse_port_num(cx, n, key, b)?;
            if b < a {
                return Err(cx.err(n, key, format!("invalid port range '{s}'")));
            }
            Ok((a..=b).collect())
        }
    }
}

fn port(cx: &Cx, n: &Node, p: &str) -> Result<Vec<Port>, ComposeError> {
    match &n.kind {
        Kind::Map(m) => {
            let mut port = Port::default();
            let mut has_target = false;
            for (k, v) in m {
                let key = k.text().unwrap_or_default();
                let kp = format!("{p}.{key}");
                match key {
                    "target" => {
                        port.target = parse_port_num(cx, v, &kp, &cx.string(v, &kp)?)?;
                        has_target = true;
                    }
                    "published" => {
                        if !v.is_null() {
                            port.published = Some(parse_port_num(cx, v, &kp, &cx.string(v, &kp)?)?)
                        }
                    }
                    "host_ip" => port.host_ip = cx.opt_string(v, &kp)?,
                    "protocol" => port.protocol = cx.opt_string(v, &kp)?,
                    "mode" => port.mode = cx.opt_string(v, &kp)?,
                    "name" | "app_protocol" => {}
                    k if k.starts_with("x-") => {}
                    other => {
                        return Err(cx.err(
                            k,
                            &kp,
                            format!("unsupported config option for {p}: '{other}'"),
                        ))
                    }
                }
            }
            if !has_target {
                return Err(cx.err(n, p, "a port needs a 'target'"));
            }
            Ok(vec![port])
        }
        Kind::Scalar { .. } => {
            let spec = cx.string(n, p)?;
            let (addr, proto) = match spec.split_once('/') {
                Some((a, pr)) => (a, Some(pr.to_string())),
                None => (spec.as_str(), None),
            };
            let parts: Vec<&str> = addr.rsplitn(3, ':').collect();
            let (ip, published, target) = match parts.as_slice() {
                [t] => (None, None, *t),
                [t, pb] => (None, Some(*pb), *t),
                [t, pb, ip] => (
                    Some(ip.trim_start_matches('[').trim_end_matches(']').to_string()),
                    Some(*pb),
                    *t,
                ),
                _ => return Err(cx.err(n, p, format!("invalid port '{spec}'"))),
            };
            let targets = port_range(cx, n, p, target)?;
            let published: Vec<Option<u16>> = match published.filter(|s| !s.is_empty()) {
                None => vec![None; targets.len()],
                Some(pb) => {
                    let r = port_range(cx, n, p, pb)?;
                    if r.len() != targets.len() {
                        return Err(cx.err(
                            n,
                            p,
                            format!("port ranges don't match in length: '{spec}'"),
                        ));
                    }
                    r.into_iter().map(Some).collect()
                }
            };
            Ok(targets
                .into_iter()
                .zip(published)
                .map(|(t, pb)| Port {
                    target: t,
                    published: pb,
                    host_ip: ip.clone().filter(|s| !s.is_empty()),
                    protocol: proto.clone(),
                    mode: None,
                })
                .collect())
        }
        Kind::Seq(_) => Err(cx.err(
            n,
            p,
            "contains an invalid type, it should be a string, number or object",
        )),
    }
}

fn mount(cx: &Cx, n: &Node, p: &str) -> Result<Mount, ComposeError> {
    match &n.kind {
        Kind::Scalar { .. } => {
            let spec = cx.string(n, p)?;
            let parts: Vec<&str> = spec.split(':').collect();
            match parts.as_slice() {
                [t] => Ok(Mount::Short {
                    source: None,
                    target: normpath(t),
                    mode: "rw".into(),
                }),
                [s, t, rest @ ..] if rest.len() <= 1 => {
                    let source = if s.starts_with(['.', '/', '~']) {
                        cx.host_path(s)
                    } else {
                        s.to_string()
                    };
                    Ok(Mount::Short {
                        source: Some(source),
                        target: normpath(t),
                        mode: rest.first().map_or("rw", |m| m).to_string(),
                    })
                }
                _ => Err(cx.err(
                    n,
                    p,
                    format!(
                        "volume {spec} has incorrect format, should be external:internal[:mode]"
                    ),
                )),
            }
        }
        Kind::Map(m) => {
            let mut kind = None;
            let mut source = None;
            let mut target = None;
            let mut read_only = false;
            let mut consistency = None;
            let mut options = None;
            for (k, v) in m {
                let key = k.text().unwrap_or_default();
                let kp = format!("{p}.{key}");
                match key {
                    "type" => {
                        kind = Some(match cx.string(v, &kp)?.as_str() {
                            "bind" => MountKind::Bind,
                            "volume" => MountKind::Volume,
                            "tmpfs" => MountKind::Tmpfs,
                            "npipe" => MountKind::Npipe,
                            other => {
                                return Err(cx.err(v, &kp, format!("unknown mount type '{other}'")))
                            }
                        })
                    }
                    "source" => source = cx.opt_string(v, &kp)?,
                    "target" => target = Some(cx.string(v, &kp)?),
                    "read_only" => read_only = cx.bool(v, &kp)?,
                    "consistency" => consistency = cx.opt_string(v, &kp)?,
                    "bind" | "volume" | "tmpfs" => {
                        options = Some((key.to_string(), Value::from_node(v)))
                    }
                    k if k.starts_with("x-") => {}
                    other => {
                        return Err(cx.err(
                            k,
                            &kp,
                            format!("unsupported config option for {p}: '{other}'"),
                        ))
                    }
                }
            }
            let kind = kind.ok_or_else(|| cx.err(n, p, "a long-syntax volume needs a 'type'"))?;
            let target =
                target.ok_or_else(|| cx.err(n, p, "a long-syntax volume needs a 'target'"))?;
            if kind == MountKind::Tmpfs && source.is_some() {
                return Err(cx.err(n, p, "tmpfs mounts can not specify a source"));
            }
            if let Some((ok, _)) = &options {
                if ok != kind.as_str() {
                    return Err(cx.err(
                        n,
                        &format!("{p}.{ok}"),
                        format!("'{ok}' options given for a {} mount", kind.as_str()),
                    ));
                }
            }
            if kind == MountKind::Bind {
                source = source.map(|s| cx.host_path(&s));
            }
            Ok(Mount::Long {
                kind,
                source,
                target,
                read_only,
                consistency,
                options: options.map(|(_, v)| v),
            })
        }
        Kind::Seq(_) => Err(cx.err(
            n,
            p,
            "contains an invalid type, it should be a string or an object",
        )),
    }
}

fn external(cx: &Cx, v: &Node, kp: &str, name: &mut Option<String>) -> Result<bool, ComposeError> {
    match &v.kind {
        Kind::Map(m) => {
            // Legacy `external: {name: x}`.
            for (k, ev) in m {
                if k.text() == Some("name") {
                    *name = cx.opt_string(ev, &format!("{kp}.name"))?;
                }
            }
            Ok(true)
        }
        _ => cx.bool(v, kp),
    }
}

pub(super) fn volume_def(cx: &Cx, name: &str, n: &Node) -> Result<VolumeDef, ComposeError> {
    let p = format!("volumes.{name}");
    let mut d = VolumeDef::default();
    if n.is_null() {
        return Ok(d);
    }
    for (k, v) in cx.map(n, &p)? {
        let key = k.text().unwrap_or_default();
        let kp = format!("{p}.{key}");
        match key {
            "external" => d.external = external(cx, v, &kp, &mut d.name)?,
            "name" => d.name = cx.opt_string(v, &kp)?,
            "driver" => d.driver = cx.opt_string(v, &kp)?,
            "driver_opts" => d.driver_opts = cx.string_map(v, &kp)?,
            "labels" => d.labels = cx.string_map(v, &kp)?,
            k if k.starts_with("x-") => {}
            other => {
                return Err(cx.err(
                    k,
                    &kp,
                    format!("unsupported config option for {p}: '{other}'"),
                ))
            }
        }
    }
    Ok(d)
}

pub(super) fn network_def(cx: &Cx, name: &str, n: &Node) -> Result<NetworkDef, ComposeError> {
    let p = format!("networks.{name}");
    let mut d = NetworkDef::default();
    if n.is_null() {
        return Ok(d);
    }
    for (k, v) in cx.map(n, &p)? {
        let key = k.text().unwrap_or_default();
        let kp = format!("{p}.{key}");
        match key {
            "external" => d.external = external(cx, v, &kp, &mut d.name)?,
            "name" => d.name = cx.opt_string(v, &kp)?,
            "driver" => d.driver = cx.opt_string(v, &kp)?,
            "driver_opts" => d.driver_opts = cx.string_map(v, &kp)?,
            "labels" => d.labels = cx.string_map(v, &kp)?,
            "internal" => d.internal = Some(cx.bool(v, &kp)?),
            "attachable" | "enable_ipv6" | "ipam" => {
                d.other.insert(key.to_string(), Value::from_node(v));
            }
            k if k.starts_with("x-") => {}
            other => {
                return Err(cx.err(
                    k,
                    &kp,
                    format!("unsupported config option for {p}: '{other}'"),
                ))
            }
        }
    }
    Ok(d)
}
