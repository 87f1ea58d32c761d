//! The service → container config conversion on loaded projects.

use super::spec::{self, label};
use berth_compose::{LoadOptions, Project};
use std::path::Path;

fn load(dir: &Path, yaml: &str) -> Project {
    std::fs::write(dir.join("compose.yaml"), yaml).unwrap();
    let (p, _) = Project::load(&LoadOptions {
        working_dir: Some(dir.to_path_buf()),
        project_name: Some("demo".into()),
        ..Default::default()
    })
    .unwrap();
    p
}

#[test]
fn names_labels_and_networks() {
    let d = tempfile::tempdir().unwrap();
    let p = load(
        d.path(),
        "services:\n  web:\n    image: busybox\n    command: httpd -f -p \"80\"\n    environment: [B=2, A=1]\n    ports: ['127.0.0.1:8080:80']\n    volumes: [data:/data, ./src:/src:ro]\n    networks:\n      default:\n        aliases: [www]\nvolumes:\n  data: {}\n",
    );
    let s = &p.services["web"];
    let cfg = spec::service_config(&p, s).unwrap();
    assert_eq!(cfg.image, "busybox");
    assert_eq!(
        cfg.cmd.as_deref(),
        Some(&["httpd".to_string(), "-f".into(), "-p".into(), "80".into()][..])
    );
    assert_eq!(cfg.env, vec!["A=1".to_string(), "B=2".into()]);
    assert_eq!(cfg.network_mode.as_deref(), Some("demo_default"));
    assert_eq!(cfg.network_aliases, vec!["web".to_string(), "www".into()]);
    assert_eq!(cfg.ports.len(), 1);
    assert_eq!(cfg.ports[0].host_port, 8080);
    assert_eq!(cfg.ports[0].container_port, 80);
    assert_eq!(cfg.ports[0].host_ip, "127.0.0.1");
    assert_eq!(cfg.mounts.len(), 2);
    assert_eq!(cfg.mounts[0].source, "demo_data");
    assert_eq!(cfg.labels[label::PROJECT], "demo");
    assert_eq!(cfg.labels[label::SERVICE], "web");
    assert_eq!(spec::container_name("demo", "web", 2), "demo-web-2");
}

#[test]
fn hash_changes_with_environment_only_for_that_service() {
    let d = tempfile::tempdir().unwrap();
    let a = load(
        d.path(),
        "services:\n  a:\n    image: busybox\n    environment: [X=1]\n  b:\n    image: busybox\n",
    );
    let b = load(
        d.path(),
        "services:\n  a:\n    image: busybox\n    environment: [X=2]\n  b:\n    image: busybox\n",
    );
    let h = |p: &Project, n: &str| {
        let s = &p.services[n];
        spec::config_hash(p, s, &spec::service_config(p, s).unwrap())
    };
    assert_ne!(h(&a, "a"), h(&b, "a"));
    assert_eq!(h(&a, "b"), h(&b, "b"));
    assert_eq!(h(&a, "b"), h(&a, "b"));
}

#[test]
fn healthcheck_restart_and_hostile_values() {
    let d = tempfile::tempdir().unwrap();
    let p = load(
        d.path(),
        "services:\n  db:\n    image: busybox\n    restart: on-failure:3\n    healthcheck:\n      test: test -f /ok\n      interval: 1s\n      retries: 5\n",
    );
    let cfg = spec::service_config(&p, &p.services["db"]).unwrap();
    let h = cfg.healthcheck.unwrap();
    assert_eq!(h.test, vec!["CMD-SHELL".to_string(), "test -f /ok".into()]);
    assert_eq!(h.interval, 1_000_000_000);
    assert_eq!(h.retries, 5);
    assert_eq!(cfg.restart.name, "on-failure");
    assert_eq!(cfg.restart.maximum_retry_count, 3);

    let bad = load(
        d.path(),
        "services:\n  x:\n    image: busybox\n    command: echo \"unterminated\n",
    );
    assert!(spec::service_config(&bad, &bad.services["x"]).is_err());
    let bad = load(
        d.path(),
        "services:\n  x:\n    image: busybox\n    restart: sometimes\n",
    );
    let e = spec::service_config(&bad, &bad.services["x"]).unwrap_err();
    assert!(e.to_string().contains("restart"), "{e}");
}

#[test]
fn dependency_levels_follow_depends_on_and_links() {
    let d = tempfile::tempdir().unwrap();
    let p = load(
        d.path(),
        "services:\n  db:\n    image: busybox\n  cache:\n    image: busybox\n  api:\n    image: busybox\n    depends_on: [db]\n    links: [cache]\n  web:\n    image: busybox\n    depends_on:\n      api: {condition: service_healthy}\n",
    );
    let lv = super::dependency_levels(&p).unwrap();
    assert_eq!(lv["db"], 0);
    assert_eq!(lv["cache"], 0);
    assert_eq!(lv["api"], 1);
    assert_eq!(lv["web"], 2);
}
