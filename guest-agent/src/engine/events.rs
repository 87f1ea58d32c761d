//! Container events: the event log ([`crate::events`]) with a container
//! record's attributes.

pub use crate::events::*;

use crate::engine::record::ContainerRecord;
use std::path::Path;

/// A container event with docker's attributes: image, name, the
/// container's labels and `extra` (exitCode, signal, oldName, …).
pub fn container(root: &Path, rec: &ContainerRecord, action: &str, extra: &[(&str, String)]) {
    let mut attrs = rec.config.labels.clone();
    attrs.insert("image".into(), rec.image.clone());
    attrs.insert("name".into(), rec.name.clone());
    for (k, v) in extra {
        attrs.insert((*k).into(), v.clone());
    }
    emit(root, "container", action, &rec.id, attrs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn container_events_carry_dockers_legacy_fields() {
        let d = tempfile::tempdir().unwrap();
        let rec = ContainerRecord {
            id: "c1".into(),
            name: "web".into(),
            created: String::new(),
            image: "busybox".into(),
            image_id: "sha256:1".into(),
            config: berth_protocol::ContainerConfig {
                labels: BTreeMap::from([("a".to_string(), "b".to_string())]),
                ..Default::default()
            },
            args: Vec::new(),
            env: Vec::new(),
            workdir: "/".into(),
            user: String::new(),
            hostname: "h".into(),
            mounts: Vec::new(),
            networks: None,
            exposed_ports: Vec::new(),
        };
        container(d.path(), &rec, "die", &[("exitCode", "3".into())]);
        let line = std::fs::read_to_string(log_path(d.path())).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["status"], "die");
        assert_eq!(v["id"], "c1");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["Type"], "container");
        assert_eq!(v["scope"], "local");
        assert_eq!(
            v["Actor"]["Attributes"],
            serde_json::json!({"a": "b", "exitCode": "3", "image": "busybox", "name": "web"})
        );
    }
}
