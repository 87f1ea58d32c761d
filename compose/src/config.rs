//! `config` output, in docker-compose 1.29's shape.

use std::collections::BTreeMap;

use crate::model::*;
use crate::value::Value;

fn s(v: &str) -> Value {
    // docker-compose escapes `$` in its output so it reads back unchanged.
    Value::Str(v.replace('$', "$$"))
}

fn cmd(c: &Command) -> Value {
    match c {
        Command::Shell(x) => s(x),
        Command::Exec(v) => Value::Seq(v.iter().map(|x| s(x)).collect()),
    }
}

fn escape(v: &Value) -> Value {
    match v {
        Value::Str(x) => s(x),
        Value::Seq(items) => Value::Seq(items.iter().map(escape).collect()),
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), escape(v))).collect()),
        other => other.clone(),
    }
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::Map(m.iter().map(|(k, v)| (k.clone(), s(v))).collect())
}

fn port(p: &Port, legacy: bool) -> Value {
    if legacy || p.host_ip.is_some() {
        let proto = p.protocol.as_deref().unwrap_or("tcp");
        let mut out = String::new();
        if let Some(ip) = &p.host_ip {
            out.push_str(ip);
            out.push(':');
        }
        if let Some(pb) = p.published {
            out.push_str(&pb.to_string());
        }
        if p.published.is_some() || p.host_ip.is_some() {
            out.push(':');
        }
        out.push_str(&format!("{}/{proto}", p.target));
        return Value::Str(out);
    }
    let mut m = BTreeMap::new();
    m.insert("target".into(), Value::Int(p.target.into()));
    if let Some(pb) = p.published {
        m.insert("published".into(), Value::Int(pb.into()));
    }
    if let Some(pr) = &p.protocol {
        m.insert("protocol".into(), s(pr));
    }
    if let Some(md) = &p.mode {
        m.insert("mode".into(), s(md));
    }
    Value::Map(m)
}

fn mount(m: &Mount) -> Value {
    match m {
        Mount::Short {
            source: None,
            target,
            ..
        } => s(target),
        Mount::Short {
            source: Some(src),
            target,
            mode,
        } => s(&format!("{src}:{target}:{mode}")),
        Mount::Long {
            kind,
            source,
            target,
            read_only,
            consistency,
            options,
        } => {
            let mut o = BTreeMap::new();
            o.insert("type".into(), s(kind.as_str()));
            if let Some(src) = source.as_deref().filter(|x| !x.is_empty()) {
                o.insert("source".into(), s(src));
            }
            o.insert("target".into(), s(target));
            if *read_only {
                o.insert("read_only".into(), Value::Bool(true));
            }
            if let Some(c) = consistency {
                o.insert("consistency".into(), s(c));
            }
            if let Some(opts) = options {
                o.insert(kind.as_str().into(), escape(opts));
            }
            Value::Map(o)
        }
    }
}

fn service(svc: &Service, legacy: bool) -> Value {
    let mut m: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in &svc.other {
        m.insert(k.clone(), escape(v));
    }
    if let Some(b) = &svc.build {
        let mut o: BTreeMap<String, Value> = b
            .other
            .iter()
            .map(|(k, v)| (k.clone(), escape(v)))
            .collect();
        o.insert("context".into(), s(&b.context));
        if let Some(d) = &b.dockerfile {
            o.insert("dockerfile".into(), s(d));
        }
        if let Some(t) = &b.target {
            o.insert("target".into(), s(t));
        }
        if !b.args.is_empty() {
            o.insert("args".into(), string_map(&b.args));
        }
        m.insert("build".into(), Value::Map(o));
    }
    let opt = |m: &mut BTreeMap<String, Value>, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), s(v));
        }
    };
    let strs = |m: &mut BTreeMap<String, Value>, k: &str, v: &[String]| {
        if !v.is_empty() {
            m.insert(k.into(), Value::Seq(v.iter().map(|x| s(x)).collect()));
        }
    };
    opt(&mut m, "image", &svc.image);
    if let Some(c) = &svc.command {
        m.insert("command".into(), cmd(c));
    }
    if let Some(c) = &svc.entrypoint {
        m.insert("entrypoint".into(), cmd(c));
    }
    if !svc.environment.is_empty() || !svc.env_file.is_empty() {
        m.insert(
            "environment".into(),
            Value::Map(
                svc.environment
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            EnvValue::Unset => Value::Null,
                            EnvValue::Str(x) => s(x),
                            EnvValue::Int(i) => Value::Int(*i),
                            EnvValue::Float(f) => Value::Float(*f),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
        );
    }
    if !svc.ports.is_empty() {
        m.insert(
            "ports".into(),
            Value::Seq(svc.ports.iter().map(|p| port(p, legacy)).collect()),
        );
    }
    if !svc.volumes.is_empty() {
        m.insert(
            "volumes".into(),
            Value::Seq(svc.volumes.iter().map(mount).collect()),
        );
    }
    strs(&mut m, "tmpfs", &svc.tmpfs);
    if !svc.depends_on.is_empty() {
        let deps = svc
            .depends_on
            .iter()
            .map(|(k, d)| {
                let mut c = BTreeMap::new();
                c.insert("condition".into(), s(d.condition.as_str()));
                (k.clone(), Value::Map(c))
            })
            .collect();
        m.insert("depends_on".into(), Value::Map(deps));
    }
    strs(&mut m, "links", &svc.links);
    if !svc.networks.is_empty() {
        let nets = svc
            .networks
            .iter()
            .map(|(k, n)| {
                let v = match n {
                    None => Value::Null,
                    Some(n) => {
                        let mut o: BTreeMap<String, Value> = n
                            .other
                            .iter()
                            .map(|(k, v)| (k.clone(), escape(v)))
                            .collect();
                        if !n.aliases.is_empty() {
                            o.insert(
                                "aliases".into(),
                                Value::Seq(n.aliases.iter().map(|x| s(x)).collect()),
                            );
                        }
                        Value::Map(o)
                    }
                };
                (k.clone(), v)
            })
            .collect();
        m.insert("networks".into(), Value::Map(nets));
    }
    if let Some(h) = &svc.healthcheck {
        let mut o = BTreeMap::new();
        if let Some(t) = &h.test {
            o.insert("test".into(), cmd(t));
        }
        for (k, d) in [
            ("interval", h.interval),
            ("timeout", h.timeout),
            ("start_period", h.start_period),
        ] {
            if let Some(d) = d {
                o.insert(k.into(), Value::Str(d.render()));
            }
        }
        if let Some(r) = h.retries {
            o.insert("retries".into(), Value::Int(r as i64));
        }
        m.insert("healthcheck".into(), Value::Map(o));
    }
    opt(&mut m, "restart", &svc.restart);
    if let Some(d) = &svc.deploy {
        m.insert("deploy".into(), escape(d));
    }
    if let Some(x) = svc.scale {
        m.insert("scale".into(), Value::Int(x as i64));
    }
    if !svc.labels.is_empty() {
        m.insert("labels".into(), string_map(&svc.labels));
    }
    opt(&mut m, "working_dir", &svc.working_dir);
    opt(&mut m, "user", &svc.user);
    opt(&mut m, "hostname", &svc.hostname);
    for (k, b) in [
        ("init", svc.init),
        ("tty", svc.tty),
        ("stdin_open", svc.stdin_open),
    ] {
        if let Some(b) = b {
            m.insert(k.into(), Value::Bool(b));
        }
    }
    opt(&mut m, "stop_signal", &svc.stop_signal);
    opt(&mut m, "stop_grace_period", &svc.stop_grace_period);
    strs(&mut m, "profiles", &svc.profiles);
    if legacy && !m.contains_key("network_mode") {
        m.insert("network_mode".into(), Value::str("bridge"));
    }
    Value::Map(m)
}

#[allow(clippy::too_many_arguments)]
fn resource(
    key: &str,
    external: bool,
    name: &Option<String>,
    driver: &Option<String>,
    driver_opts: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
    other: &BTreeMap<String, Value>,
) -> Value {
    let mut o: BTreeMap<String, Value> =
        other.iter().map(|(k, v)| (k.clone(), escape(v))).collect();
    if external {
        o.insert("external".into(), Value::Bool(true));
        o.insert("name".into(), s(name.as_deref().unwrap_or(key)));
    } else if let Some(n) = name {
        o.insert("name".into(), s(n));
    }
    if let Some(d) = driver {
        o.insert("driver".into(), s(d));
    }
    if !driver_opts.is_empty() {
        o.insert("driver_opts".into(), string_map(driver_opts));
    }
    if !labels.is_empty() {
        o.insert("labels".into(), string_map(labels));
    }
    Value::Map(o)
}

impl Project {
    /// The project as a plain value, shaped like `docker-compose config`.
    pub fn to_config_value(&self) -> Value {
        let mut top = BTreeMap::new();
        top.insert(
            "version".into(),
            Value::str(self.version.clone().unwrap_or_else(|| "3.9".into())),
        );
        top.insert(
            "services".into(),
            Value::Map(
                self.services
                    .iter()
                    .map(|(k, v)| (k.clone(), service(v, self.legacy_v1)))
                    .collect(),
            ),
        );
        if !self.volumes.is_empty() {
            top.insert(
                "volumes".into(),
                Value::Map(
                    self.volumes
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                resource(
                                    k,
                                    v.external,
                                    &v.name,
                                    &v.driver,
                                    &v.driver_opts,
                                    &v.labels,
                                    &v.other,
                                ),
                            )
                        })
                        .collect(),
                ),
            );
        }
        if !self.networks.is_empty() {
            top.insert(
                "networks".into(),
                Value::Map(
                    self.networks
                        .iter()
                        .map(|(k, v)| {
                            let mut r = resource(
                                k,
                                v.external,
                                &v.name,
                                &v.driver,
                                &v.driver_opts,
                                &v.labels,
                                &v.other,
                            );
                            if let (Some(i), Value::Map(m)) = (v.internal, &mut r) {
                                m.insert("internal".into(), Value::Bool(i));
                            }
                            (k.clone(), r)
                        })
                        .collect(),
                ),
            );
        }
        for (k, v) in &self.other {
            top.insert(k.clone(), escape(v));
        }
        Value::Map(top)
    }

    /// The output of `docker-compose config`.
    pub fn to_config_yaml(&self) -> String {
        self.to_config_value().to_yaml()
    }

    /// Service names, as `config --services` lists them.
    pub fn service_names(&self) -> Vec<&str> {
        self.services.keys().map(String::as_str).collect()
    }

    /// Volume names, as `config --volumes` lists them.
    pub fn volume_names(&self) -> Vec<&str> {
        self.volumes.keys().map(String::as_str).collect()
    }
}
