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

/// The service keys that become container settings as they are: entrypoint,
/// env_file under environment, working_dir, user, hostname, tty,
/// stdin_open, init, stop_signal, stop_grace_period, labels, tmpfs, and the
/// anonymous, tmpfs and long-syntax volumes.
#[test]
fn service_keys_reach_the_container_config() {
    use berth_protocol::MountType;
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("app.env"), "FROM_FILE=1\nBOTH=file\n").unwrap();
    let p = load(
        d.path(),
        "services:\n  s:\n    image: busybox\n    entrypoint: [/bin/sh, -c]\n    command: echo hi\n    \
         env_file: app.env\n    environment: {BOTH: env}\n    working_dir: /w\n    user: '1000:1000'\n    \
         hostname: box\n    tty: true\n    stdin_open: true\n    init: true\n    stop_signal: SIGUSR1\n    \
         stop_grace_period: 1m30s\n    labels: {team: x}\n    tmpfs: [/run]\n    \
         volumes:\n      - /anon\n      - type: tmpfs\n        target: /scratch\n      \
         - type: bind\n        source: ./src\n        target: /src\n        read_only: true\n",
    );
    let s = &p.services["s"];
    let cfg = spec::service_config(&p, s).unwrap();
    assert_eq!(
        cfg.entrypoint.as_deref(),
        Some(&["/bin/sh".to_string(), "-c".into()][..])
    );
    assert_eq!(
        cfg.cmd.as_deref(),
        Some(&["echo".to_string(), "hi".into()][..])
    );
    assert_eq!(cfg.env, vec!["BOTH=env".to_string(), "FROM_FILE=1".into()]);
    assert_eq!(cfg.workdir.as_deref(), Some("/w"));
    assert_eq!(cfg.user.as_deref(), Some("1000:1000"));
    assert_eq!(cfg.hostname.as_deref(), Some("box"));
    assert!(cfg.tty && cfg.open_stdin && cfg.init);
    assert_eq!(cfg.stop_signal.as_deref(), Some("SIGUSR1"));
    assert_eq!(spec::stop_timeout(s), Some(90));
    assert_eq!(cfg.labels["team"], "x");
    assert_eq!(cfg.tmpfs, vec!["/run".to_string()]);
    let m: Vec<(MountType, &str, &str, bool)> = cfg
        .mounts
        .iter()
        .map(|m| (m.kind, m.source.as_str(), m.target.as_str(), m.read_only))
        .collect();
    let src = d.path().join("src");
    assert_eq!(
        m,
        [
            (MountType::Volume, "", "/anon", false),
            (MountType::Tmpfs, "", "/scratch", false),
            (MountType::Bind, src.to_str().unwrap(), "/src", true),
        ]
    );
}
