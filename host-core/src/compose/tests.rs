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

#[test]
fn run_flag_keys_reach_the_container_config() {
    let d = tempfile::tempdir().unwrap();
    let p = load(
        d.path(),
        concat!(
            "services:\n  a:\n    image: busybox\n",
            "    ulimits:\n      nofile: {soft: 1024, hard: 2048}\n      nproc: 100\n",
            "    shm_size: 32m\n    sysctls: [net.ipv4.ip_forward=1, kernel.shmmax=100000000]\n",
            "    devices: [/dev/zero:/dev/myzero:r]\n    group_add: [1234, daemon]\n",
            "    cpu_shares: 512\n    cpuset: '0'\n    mem_limit: 64m\n    memswap_limit: 128m\n",
            "    mem_reservation: 32m\n    oom_kill_disable: true\n    ipc: shareable\n",
            "    uts: host\n    cgroup: private\n    stop_grace_period: 1m30s\n",
            "    logging:\n      driver: json-file\n      options: {max-size: 1k, max-file: '2'}\n",
            "  b:\n    image: busybox\n    ipc: service:a\n    pid: service:a\n    memswap_limit: -1\n",
        ),
    );
    let a = spec::service_config(&p, &p.services["a"]).unwrap();
    let u: Vec<(&str, i64, i64)> = a
        .ulimits
        .iter()
        .map(|u| (u.name.as_str(), u.soft, u.hard))
        .collect();
    assert_eq!(u, [("nofile", 1024, 2048), ("nproc", 100, 100)]);
    assert_eq!(a.shm_size, Some(32 << 20));
    assert_eq!(a.sysctls["net.ipv4.ip_forward"], "1");
    assert_eq!(a.sysctls["kernel.shmmax"], "100000000");
    assert_eq!(a.devices[0].path_on_host, "/dev/zero");
    assert_eq!(a.devices[0].path_in_container, "/dev/myzero");
    assert_eq!(a.devices[0].cgroup_permissions, "r");
    assert_eq!(a.group_add, ["1234", "daemon"]);
    assert_eq!(a.cpu_shares, Some(512));
    assert_eq!(a.cpuset_cpus.as_deref(), Some("0"));
    assert_eq!(a.memory, Some(64 << 20));
    assert_eq!(a.memory_swap, Some(128 << 20));
    assert_eq!(a.memory_reservation, Some(32 << 20));
    assert!(a.oom_kill_disable);
    assert_eq!(a.ipc_mode.as_deref(), Some("shareable"));
    assert_eq!(a.uts_mode.as_deref(), Some("host"));
    assert_eq!(a.cgroupns_mode.as_deref(), Some("private"));
    assert_eq!(a.stop_timeout, Some(90));
    assert_eq!(a.log_driver.as_deref(), Some("json-file"));
    assert_eq!(a.log_max_size, Some(1024));
    assert_eq!(a.log_max_files, Some(2));
    let b = spec::service_config(&p, &p.services["b"]).unwrap();
    assert_eq!(b.ipc_mode.as_deref(), Some("container:demo-a-1"));
    assert_eq!(b.pid_mode.as_deref(), Some("container:demo-a-1"));
    assert_eq!(b.memory_swap, Some(-1));
}

#[test]
fn hostile_run_flag_values_are_refused_as_docker_refuses_the_flags() {
    let d = tempfile::tempdir().unwrap();
    for (keys, says) in [
        // A sysctl of the host's kernel, outside the container's namespaces.
        (
            "    sysctls: {kernel.hostname: x}\n",
            "sysctls: sysctl 'kernel.hostname=x' is not allowed",
        ),
        (
            "    sysctls: [vm.swappiness=1]\n",
            "sysctls: sysctl 'vm.swappiness=1' is not allowed",
        ),
        ("    ulimits: {bogus: 1}\n", "ulimits: invalid ulimit type: bogus"),
        (
            "    ulimits: {nofile: {soft: -1, hard: 5}}\n",
            "ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: 5",
        ),
        ("    shm_size: lots\n", "shm_size: invalid size: 'lots'"),
        (
            "    shm_size: 99999999999t\n",
            "shm_size: invalid size: '99999999999t'",
        ),
        ("    mem_limit: -5m\n", "mem_limit: invalid size: '-5m'"),
        (
            "    cpu_shares: 99999999999999999999\n",
            "cpu_shares: strconv.ParseInt: parsing \"99999999999999999999\": value out of range",
        ),
        (
            "    devices: ['/dev/zero:rel']\n",
            "devices: rel is not an absolute path",
        ),
        (
            "    devices: ['/dev/zero:/a:rwx']\n",
            "devices: bad mode specified: rwx",
        ),
        ("    devices: ['a:b:c:d']\n", "devices: bad format for path: a:b:c:d"),
        ("    pid: bogus\n", "pid: invalid PID mode \"bogus\""),
        ("    uts: private\n", "uts: invalid UTS mode \"private\""),
        (
            "    platform: foo/bar\n",
            "platform: error parsing specified platform: \"foo/bar\"",
        ),
        (
            "    logging: {driver: none, options: {max-size: 1m}}\n",
            "logging: invalid logging opts for driver none",
        ),
        (
            "    logging: {options: {foo: 1}}\n",
            "logging: unknown log opt 'foo' for json-file log driver",
        ),
    ] {
        let p = load(d.path(), &format!("services:\n  a:\n    image: busybox\n{keys}"));
        let e = spec::service_config(&p, &p.services["a"])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("service \"a\": "), "{e}");
        assert!(e.contains(says), "{keys:?}: {e}");
    }
    // A device whose container path climbs out is cleaned to stay inside,
    // as docker's CLI cleans it; the engine refuses a `..` left over.
    let p = load(
        d.path(),
        "services:\n  a:\n    image: busybox\n    devices: ['/dev/zero:/a/../../etc/x']\n",
    );
    let c = spec::service_config(&p, &p.services["a"]).unwrap();
    assert_eq!(c.devices[0].path_in_container, "/etc/x");
}
