//! The public API the CLI calls: file lookup, project names, warnings,
//! dependency order, errors that name file/line/key, hostile files.

use std::collections::BTreeMap;
use std::path::Path;

use berth_compose::{
    normalize_project_name, ComposeError, Condition, Duration, LoadOptions, Project, Warning,
};

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn load_in(dir: &Path, env: &[(&str, &str)]) -> Result<(Project, Vec<Warning>), ComposeError> {
    Project::load(&LoadOptions {
        working_dir: Some(dir.to_path_buf()),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..LoadOptions::default()
    })
}

const SEED_003: &str = "version: '3'\nservices:\n  product-service:\n    build: ./product\n    volumes:\n      - ./product:/usr/src/app\n    ports:\n      - 5001:80\n  website:\n    image: php:apache\n    volumes:\n      - ./website:/var/www/html\n    ports:\n      - 5000:80\n    depends_on:\n      - product-service\n";

#[test]
fn seed_003_model_and_order() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("My_Shop.v2");
    write(&dir, "docker-compose.yml", SEED_003);
    let (p, warnings) = load_in(&dir, &[]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(p.name, "my_shopv2");
    let order: Vec<&str> = p
        .services_in_dependency_order()
        .unwrap()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(order, ["product-service", "website"]);
    let ps = &p.services["product-service"];
    assert_eq!(
        ps.build.as_ref().unwrap().context,
        dir.join("product").to_string_lossy()
    );
    assert_eq!(ps.ports[0].published, Some(5001));
    assert_eq!(ps.ports[0].target, 80);
    let web = &p.services["website"];
    assert_eq!(web.image.as_deref(), Some("php:apache"));
    assert_eq!(
        web.depends_on["product-service"].condition,
        Condition::Started
    );
    assert_eq!(web.volumes[0].target(), "/var/www/html");
}

#[test]
fn seed_001_v1_layout_warns() {
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "docker-compose.yml",
        "web:\n  build: .\n  command: python app.py\n  ports:\n   - \"5000:5000\"\n  volumes:\n   - .:/code\n  links:\n   - mysql\nmysql:\n  image: mysql\n",
    );
    let (p, warnings) = load_in(t.path(), &[]).unwrap();
    assert!(p.legacy_v1);
    assert!(warnings
        .iter()
        .any(|w| matches!(w, Warning::LegacyV1 { .. })));
    assert!(warnings
        .iter()
        .any(|w| matches!(w, Warning::Links { service } if service == "web")));
    let order: Vec<&str> = p
        .services_in_dependency_order()
        .unwrap()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(order, ["mysql", "web"]);
}

#[test]
fn default_lookup_and_override() {
    let t = tempfile::tempdir().unwrap();
    assert!(matches!(
        load_in(t.path(), &[]),
        Err(ComposeError::NoComposeFile { .. })
    ));
    write(
        t.path(),
        "compose.yaml",
        "services:\n  a:\n    image: busybox\n    environment:\n      X: base\n",
    );
    write(
        t.path(),
        "compose.override.yml",
        "services:\n  a:\n    environment:\n      X: over\n    scale: 3\n",
    );
    let (p, _) = load_in(t.path(), &[]).unwrap();
    assert_eq!(p.files.len(), 2);
    let a = &p.services["a"];
    assert_eq!(a.environment_strings()["X"], "over");
    assert_eq!(a.replicas(), 3);
    // Found from a subdirectory; the project directory is the file's.
    let sub = t.path().join("deeper/still");
    std::fs::create_dir_all(&sub).unwrap();
    let (p, _) = load_in(&sub, &[]).unwrap();
    assert_eq!(p.working_dir, t.path());
    assert_eq!(p.files.len(), 2);
    // COMPOSE_FILE wins over the lookup.
    write(
        t.path(),
        "other.yml",
        "services:\n  o:\n    image: busybox\n",
    );
    let (p, _) = load_in(t.path(), &[("COMPOSE_FILE", "other.yml")]).unwrap();
    assert_eq!(p.service_names(), ["o"]);
}

#[test]
fn project_name_precedence() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("-Dir");
    write(
        &dir,
        "compose.yml",
        "name: fromfile\nservices:\n  a:\n    image: x\n",
    );
    assert_eq!(load_in(&dir, &[]).unwrap().0.name, "fromfile");
    assert_eq!(
        load_in(&dir, &[("COMPOSE_PROJECT_NAME", "fromenv")])
            .unwrap()
            .0
            .name,
        "fromenv"
    );
    let p = Project::load(&LoadOptions {
        working_dir: Some(dir.clone()),
        project_name: Some("fromflag".into()),
        ..LoadOptions::default()
    })
    .unwrap()
    .0;
    assert_eq!(p.name, "fromflag");
    let bad = Project::load(&LoadOptions {
        working_dir: Some(dir.clone()),
        project_name: Some("Bad Name".into()),
        ..LoadOptions::default()
    });
    assert!(matches!(bad, Err(ComposeError::ProjectName { .. })));
    assert_eq!(normalize_project_name("-My Dir_1.x"), "mydir_1x");
}

#[test]
fn errors_name_file_line_and_key() {
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "docker-compose.yml",
        "services:\n  web:\n    image: busybox\n    prots:\n      - 80\n",
    );
    let e = load_in(t.path(), &[]).unwrap_err();
    match &e {
        ComposeError::Invalid {
            file, line, key, ..
        } => {
            assert!(file.ends_with("docker-compose.yml"));
            assert_eq!(*line, 4);
            assert_eq!(key, "services.web.prots");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string()
            .contains("docker-compose.yml:4:5: services.web.prots"),
        "{e}"
    );
}

#[test]
fn cycle_and_profiles() {
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x\n    depends_on: [c]\n  b:\n    image: x\n    depends_on: [a]\n  c:\n    image: x\n    depends_on: [b]\n",
    );
    match load_in(t.path(), &[]).unwrap_err() {
        ComposeError::Cycle { cycle } => assert_eq!(cycle, ["a", "c", "b", "a"]),
        other => panic!("{other:?}"),
    }
    write(
        t.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x\n  dbg:\n    image: x\n    profiles: [debug]\n",
    );
    let (p, _) = load_in(t.path(), &[]).unwrap();
    let names = |p: &Project| -> Vec<String> {
        p.active_services()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect()
    };
    assert_eq!(names(&p), ["a"]);
    let p = Project::load(&LoadOptions {
        working_dir: Some(t.path().to_path_buf()),
        profiles: vec!["debug".into()],
        ..LoadOptions::default()
    })
    .unwrap()
    .0;
    assert_eq!(names(&p), ["a", "dbg"]);
}

#[test]
fn unset_variable_warns() {
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "compose.yaml",
        "services:\n  a:\n    image: \"x:${NOPE}\"\n",
    );
    let (p, w) = load_in(t.path(), &[]).unwrap();
    assert_eq!(p.services["a"].image.as_deref(), Some("x:"));
    assert_eq!(
        w,
        [Warning::UnsetVariable {
            name: "NOPE".into()
        }]
    );
}

#[test]
fn hostile_files_fail_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let mut laughs = String::from("x-a0: &a0 [l,l,l,l,l,l,l,l,l,l]\n");
    for i in 1..10 {
        let p = i - 1;
        laughs.push_str(&format!(
            "x-a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    laughs.push_str("services:\n  a:\n    image: x\n    command: *a9\n");
    write(t.path(), "compose.yaml", &laughs);
    assert!(matches!(
        load_in(t.path(), &[]),
        Err(ComposeError::Limit { .. })
    ));

    std::fs::write(
        t.path().join("compose.yaml"),
        b"services:\n  a:\n    image: \xc3\x28\n",
    )
    .unwrap();
    assert!(matches!(
        load_in(t.path(), &[]),
        Err(ComposeError::NotUtf8 { .. })
    ));

    let deep = "services:\n  a:\n    image: x\n    labels: ".to_string()
        + &"[".repeat(5000)
        + &"]".repeat(5000)
        + "\n";
    write(t.path(), "compose.yaml", &deep);
    assert!(load_in(t.path(), &[]).is_err());

    let long = format!(
        "services:\n  a:\n    image: x\n    command: echo {}\n",
        "y".repeat(1 << 20)
    );
    write(t.path(), "compose.yaml", &long);
    let (p, _) = load_in(t.path(), &[]).unwrap();
    assert!(p.to_config_yaml().len() > 1 << 20);

    let many = "services:\n  a:\n    image: x\n    ports:\n".to_string()
        + &"      - \"1-65535\"\n".repeat(3);
    write(t.path(), "compose.yaml", &many);
    assert!(load_in(t.path(), &[]).is_err());
    // Two files that extend each other, each service twice: bounded.
    let ping = "services:\n  a:\n    extends: {file: pong.yml, service: a}\n  b:\n    extends: {file: pong.yml, service: a}\n";
    let pong = "services:\n  a:\n    extends: {file: compose.yaml, service: a}\n  b:\n    extends: {file: compose.yaml, service: b}\n";
    write(t.path(), "compose.yaml", ping);
    write(t.path(), "pong.yml", pong);
    assert!(load_in(t.path(), &[]).is_err());

    write(
        t.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x\n    env_file: /dev/zero\n",
    );
    assert!(matches!(
        load_in(t.path(), &[]),
        Err(ComposeError::Limit { .. })
    ));

    write(
        t.path(),
        "compose.yaml",
        "services:\n  a:\n    extends: a\n",
    );
    assert!(load_in(t.path(), &[]).is_err());
    write(
        t.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x\n    ports: [\"99999:80\"]\n",
    );
    assert!(load_in(t.path(), &[]).is_err());
    write(
        t.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x\n    ports: [\"1-65535:1-2\"]\n",
    );
    assert!(load_in(t.path(), &[]).is_err());
}

#[test]
fn durations() {
    assert_eq!(Duration::parse("1m30s"), Some(Duration(90_000_000_000)));
    assert_eq!(Duration::parse("1.5s").unwrap().render(), "1500ms");
    assert_eq!(Duration::parse("90s").unwrap().render(), "90s");
    assert_eq!(Duration::parse("2h").unwrap().render(), "2h");
    assert_eq!(Duration::parse("10"), None);
    assert_eq!(Duration::parse("1s1m"), None);
    assert_eq!(Duration::parse(""), None);
}

#[test]
fn order_follows_volumes_from_and_network_mode() {
    let t = tempfile::tempdir().unwrap();
    write(
        t.path(),
        "compose.yaml",
        "services:\n  a:\n    image: x\n    volumes_from: [z]\n  b:\n    image: x\n    network_mode: service:a\n  z:\n    image: x\n",
    );
    let (p, _) = load_in(t.path(), &[]).unwrap();
    let order: Vec<&str> = p
        .services_in_dependency_order()
        .unwrap()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(order, ["z", "a", "b"]);
}
