//! Merging: an override file onto the files before it, and a service onto
//! the one it `extends` (docker-compose's rules: scalars replaced, lists of
//! unique values appended, maps merged key by key).

use std::collections::{HashMap, HashSet};

use super::FileModel;
use crate::model::*;
use crate::value::Value;

pub(super) fn merge_files(mut base: FileModel, over: FileModel) -> FileModel {
    if over.version.is_some() {
        base.version = over.version;
    }
    if over.name.is_some() {
        base.name = over.name;
    }
    base.legacy_v1 = base.legacy_v1 && over.legacy_v1;
    for (name, s) in over.services {
        let merged = match base.services.remove(&name) {
            Some(b) => merge_service(b, s),
            None => s,
        };
        base.services.insert(name, merged);
    }
    base.volumes.extend(over.volumes);
    base.networks.extend(over.networks);
    base.other.extend(over.other);
    base
}

fn merge_opt<T>(base: &mut Option<T>, over: Option<T>) {
    if over.is_some() {
        *base = over;
    }
}

fn merge_unique(base: &mut Vec<String>, over: Vec<String>) {
    let mut seen: HashSet<String> = base.iter().cloned().collect();
    for o in over {
        if seen.insert(o.clone()) {
            base.push(o);
        }
    }
}

fn merge_value(base: &mut Option<Value>, over: Option<Value>) {
    match (base.as_mut(), over) {
        (Some(Value::Map(b)), Some(Value::Map(o))) => {
            for (k, v) in o {
                let mut slot = b.remove(&k);
                merge_value(&mut slot, Some(v));
                if let Some(s) = slot {
                    b.insert(k, s);
                }
            }
        }
        (_, Some(o)) => *base = Some(o),
        (_, None) => {}
    }
}

/// Merges an override service into a base one (docker-compose's rules).
pub fn merge_service(mut b: Service, o: Service) -> Service {
    if let Some(ob) = o.build {
        b.build = Some(match b.build.take() {
            None => ob,
            Some(mut bb) => {
                bb.context = ob.context;
                merge_opt(&mut bb.dockerfile, ob.dockerfile);
                merge_opt(&mut bb.target, ob.target);
                bb.args.extend(ob.args);
                bb.other.extend(ob.other);
                bb
            }
        });
    }
    merge_opt(&mut b.image, o.image);
    merge_opt(&mut b.command, o.command);
    merge_opt(&mut b.entrypoint, o.entrypoint);
    b.environment.extend(o.environment);
    for f in o.env_file {
        if !b.env_file.contains(&f) {
            b.env_file.push(f);
        }
    }
    let mut have: HashSet<Port> = b.ports.iter().cloned().collect();
    for p in o.ports {
        if have.insert(p.clone()) {
            b.ports.push(p);
        }
    }
    // Override mounts replace base ones with the same target.
    let mut by_target: HashMap<String, usize> = b
        .volumes
        .iter()
        .enumerate()
        .map(|(i, m)| (m.target().to_string(), i))
        .collect();
    for m in o.volumes {
        match by_target.get(m.target()) {
            Some(&i) => b.volumes[i] = m,
            None => {
                by_target.insert(m.target().to_string(), b.volumes.len());
                b.volumes.push(m);
            }
        }
    }
    merge_unique(&mut b.tmpfs, o.tmpfs);
    b.depends_on.extend(o.depends_on);
    merge_unique(&mut b.links, o.links);
    for (k, v) in o.networks {
        match (b.networks.get_mut(&k), v) {
            (Some(Some(bn)), Some(on)) => {
                merge_unique(&mut bn.aliases, on.aliases);
                bn.other.extend(on.other);
            }
            (Some(_), None) => {}
            (_, v) => {
                b.networks.insert(k, v);
            }
        }
    }
    if let Some(oh) = o.healthcheck {
        b.healthcheck = Some(match b.healthcheck.take() {
            None => oh,
            Some(mut bh) => {
                merge_opt(&mut bh.test, oh.test);
                merge_opt(&mut bh.interval, oh.interval);
                merge_opt(&mut bh.timeout, oh.timeout);
                merge_opt(&mut bh.start_period, oh.start_period);
                merge_opt(&mut bh.retries, oh.retries);
                bh
            }
        });
    }
    merge_opt(&mut b.restart, o.restart);
    merge_value(&mut b.deploy, o.deploy);
    merge_opt(&mut b.scale, o.scale);
    b.labels.extend(o.labels);
    merge_opt(&mut b.working_dir, o.working_dir);
    merge_opt(&mut b.user, o.user);
    merge_opt(&mut b.hostname, o.hostname);
    merge_opt(&mut b.init, o.init);
    merge_opt(&mut b.tty, o.tty);
    merge_opt(&mut b.stdin_open, o.stdin_open);
    merge_opt(&mut b.stop_signal, o.stop_signal);
    merge_opt(&mut b.stop_grace_period, o.stop_grace_period);
    merge_unique(&mut b.profiles, o.profiles);
    b.key_locations.extend(o.key_locations);
    for (k, v) in o.other {
        let mut slot = b.other.remove(&k);
        merge_value(&mut slot, Some(v));
        if let Some(s) = slot {
            b.other.insert(k, s);
        }
    }
    b
}
