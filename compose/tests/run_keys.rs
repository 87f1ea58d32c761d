//! The service keys of `run`'s resource, namespace and logging flags:
//! both forms of `ulimits` and `sysctls` read back the same, the long
//! form of `devices`, `pull_policy`, `logging`, `ipc`/`pid: service:`
//! ordering, and the shapes refused with docker-compose 1.29's words.

use std::collections::BTreeMap;

use berth_compose::{ComposeError, LoadOptions, Project, PullPolicy, UlimitValue};

fn load(text: &str) -> Result<Project, ComposeError> {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("compose.yaml"), text).unwrap();
    Project::load(&LoadOptions {
        working_dir: Some(t.path().to_path_buf()),
        ..LoadOptions::default()
    })
    .map(|(p, _)| p)
}

fn service(keys: &str) -> Result<Project, ComposeError> {
    load(&format!("services:\n  a:\n    image: busybox\n{keys}"))
}

fn refused(keys: &str) -> String {
    match service(keys) {
        Ok(p) => panic!("accepted {keys:?}: {:?}", p.services["a"].other),
        Err(e) => e.to_string(),
    }
}

#[test]
fn ulimits_single_and_soft_hard_forms() {
    let p = service(
        "    ulimits:\n      nofile: 1024\n      nproc:\n        soft: 10\n        hard: \"20\"\n      core: \"-1\"\n",
    )
    .unwrap();
    let u = p.services["a"].ulimits();
    let want: BTreeMap<String, UlimitValue> = [
        ("core", UlimitValue { soft: -1, hard: -1 }),
        (
            "nofile",
            UlimitValue {
                soft: 1024,
                hard: 1024,
            },
        ),
        ("nproc", UlimitValue { soft: 10, hard: 20 }),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(u, want);
}

#[test]
fn sysctls_map_and_list_forms_read_the_same() {
    let map =
        service("    sysctls:\n      net.core.somaxconn: 1024\n      kernel.msgmax: \"65536\"\n")
            .unwrap();
    let list =
        service("    sysctls:\n      - net.core.somaxconn=1024\n      - kernel.msgmax=65536\n")
            .unwrap();
    let want: BTreeMap<String, String> =
        [("kernel.msgmax", "65536"), ("net.core.somaxconn", "1024")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(map.services["a"].sysctls(), want);
    assert_eq!(list.services["a"].sysctls(), want);
    // `config` prints both as a mapping of strings, as docker-compose does.
    assert_eq!(map.to_config_yaml(), list.to_config_yaml());
    assert!(map
        .to_config_yaml()
        .contains("net.core.somaxconn: \"1024\""));
}

#[test]
fn devices_groups_and_scalars() {
    let p = service(concat!(
        "    devices:\n      - /dev/zero:/dev/myzero:r\n",
        "      - source: /dev/null\n        target: /dev/mynull\n        permissions: rw\n",
        "    group_add: [mail, 1234]\n    shm_size: 64m\n    cpu_shares: 512\n",
        "    oom_kill_disable: true\n    pull_policy: missing\n",
        "    logging:\n      driver: local\n      options:\n        max-size: 1m\n",
    ))
    .unwrap();
    let a = &p.services["a"];
    assert_eq!(
        a.devices(),
        ["/dev/zero:/dev/myzero:r", "/dev/null:/dev/mynull:rw"]
    );
    assert_eq!(a.group_add(), ["mail", "1234"]);
    assert_eq!(a.text_key("shm_size").as_deref(), Some("64m"));
    assert_eq!(a.text_key("cpu_shares").as_deref(), Some("512"));
    assert!(a.oom_kill_disable());
    assert_eq!(a.pull_policy(), Some(PullPolicy::Missing));
    assert_eq!(a.log_driver().as_deref(), Some("local"));
    assert_eq!(a.log_options()["max-size"], "1m");
    for (v, want) in [
        ("always", PullPolicy::Always),
        ("never", PullPolicy::Never),
        ("build", PullPolicy::Build),
        ("if_not_present", PullPolicy::Missing),
    ] {
        let p = service(&format!("    pull_policy: {v}\n")).unwrap();
        assert_eq!(p.services["a"].pull_policy(), Some(want));
    }
}

#[test]
fn ipc_and_pid_of_another_service_order_the_services() {
    let p = load(
        "services:\n  a:\n    image: busybox\n    ipc: service:z\n  b:\n    image: busybox\n    pid: \"service:a\"\n  z:\n    image: busybox\n    ipc: shareable\n",
    )
    .unwrap();
    let order: Vec<&str> = p
        .services_in_dependency_order()
        .unwrap()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(order, ["z", "a", "b"]);
    assert_eq!(p.services["a"].joined_service("ipc").as_deref(), Some("z"));
    let e = load("services:\n  a:\n    image: busybox\n    pid: service:ghost\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("services.a.pid: joins service \"ghost\" which is undefined"),
        "{e}"
    );
    let e = load("services:\n  a:\n    image: busybox\n    ipc: service:b\n  b:\n    image: busybox\n    ipc: service:a\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("circular dependency"), "{e}");
}

#[test]
fn bad_shapes_refused_with_docker_composes_words() {
    for (keys, says) in [
        (
            "    ulimits:\n      nofile: abc\n",
            "services.a.ulimits.nofile: \"abc\" is not a valid integer",
        ),
        (
            "    ulimits:\n      nofile: 99999999999999999999\n",
            "services.a.ulimits.nofile: \"99999999999999999999\" is not a valid integer",
        ),
        (
            "    ulimits:\n      nofile:\n        soft: 10\n",
            "services.a.ulimits.nofile: 'hard' is a required property",
        ),
        (
            "    ulimits:\n      nofile:\n        soft: 1\n        hard: 2\n        x: 1\n",
            "services.a.ulimits.nofile: contains unsupported option: 'x'",
        ),
        (
            "    ulimits:\n      nofile:\n        soft: 30\n        hard: 20\n",
            "services.a.ulimits.nofile: 'soft' value can not be greater than 'hard' value",
        ),
        (
            "    shm_size: [1]\n",
            "services.a.shm_size: contains an invalid type, it should be a number, or a string",
        ),
        (
            "    sysctls: 5\n",
            "services.a.sysctls: contains an invalid type, it should be an object, or an array",
        ),
        (
            "    sysctls:\n      a: [1]\n",
            "services.a.sysctls.a: contains an invalid type, it should be a string, number, or a null",
        ),
        (
            "    devices: /dev/zero\n",
            "services.a.devices: contains an invalid type, it should be an array",
        ),
        (
            "    devices:\n      - 5\n",
            "services.a.devices: contains an invalid type, it should be a string",
        ),
        (
            "    group_add: mail\n",
            "services.a.group_add: contains an invalid type, it should be an array",
        ),
        (
            "    oom_kill_disable: 1\n",
            "services.a.oom_kill_disable: contains an invalid type, it should be a boolean",
        ),
        (
            "    pull_policy: sometimes\n",
            "services.a.pull_policy: value 'sometimes' is not one of",
        ),
        (
            "    cgroup: shared\n",
            "services.a.cgroup: value 'shared' is not one of ['host', 'private']",
        ),
        (
            "    logging:\n      driver: 5\n",
            "services.a.logging.driver: contains an invalid type, it should be a string",
        ),
        (
            "    logging:\n      drive: x\n",
            "services.a.logging: value 'drive' does not match any of the regexes: '^x-'",
        ),
        (
            "    ipc: [a]\n",
            "services.a.ipc: contains an invalid type, it should be a string",
        ),
    ] {
        let e = refused(keys);
        assert!(e.contains(says), "{keys:?}: {e}");
        // The error names the file and line.
        assert!(e.contains("compose.yaml:"), "{e}");
    }
}
