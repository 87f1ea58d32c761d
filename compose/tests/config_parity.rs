//! `config` parity with Debian's docker-compose 1.29.
//!
//! For each case under tests/corpus/<case>/, runs `docker-compose [-f ..]
//! config` and our `Project::to_config_yaml()` with the same environment and
//! compares the two outputs after parsing both into a generic value
//! (mapping order ignored; nothing else is rewritten: both sides print
//! absolute paths and docker-compose's `version` key).
//!
//! A case may hold `ARGS` (`-f a.yml -f b.yml`) and `ENV` (`K=V` lines given
//! to both as the process environment). Cases named `invalid_*` must fail on
//! both sides; the table [`INVALID`] puts docker-compose's wording beside the
//! key or phrase our error must name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_compose::{LoadOptions, Project, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// (case, docker-compose 1.29 says, our error must contain)
const INVALID: &[(&str, &str, &str)] = &[
    (
        "invalid_unknown_service_key",
        "Unsupported config option for services.web: 'imagee'",
        "unsupported config option for services.web: 'imagee'",
    ),
    (
        "invalid_unknown_top_key",
        "'servics' does not match any of the regexes: '^x-'",
        "unsupported top-level key 'servics'",
    ),
    (
        "invalid_required_var",
        "Missing mandatory value for \"image\" option interpolating busybox:${TAG:?TAG must be set} in service \"web\": TAG must be set",
        "services.web.image: required variable TAG is missing a value: TAG must be set",
    ),
    (
        "invalid_yaml_syntax",
        // Both name line 5; the columns differ (4 vs 11): PyYAML points at
        // the misindented key, yaml-rust2 at where it gave up.
        "line 5, column 4",
        "invalid_yaml_syntax/docker-compose.yml:5:",
    ),
    (
        "invalid_ports_type",
        "services.web.ports contains an invalid type, it should be an array",
        "services.web.ports: contains an invalid type, it should be an array",
    ),
    (
        "invalid_depends_cycle",
        // docker-compose names the two in either order from run to run.
        "Circular dependency between ",
        "circular dependency between services: a -> b -> a",
    ),
    (
        "invalid_depends_undefined",
        "Service 'a' depends on service 'ghost' which is undefined.",
        "docker-compose.yml:5:5: services.a.depends_on: depends on service \"ghost\" which is undefined",
    ),
    (
        "invalid_undefined_volume",
        "Named volume \"missing:/data:rw\" is used in service \"a\" but no declaration was found in the volumes section.",
        "docker-compose.yml:5:5: services.a.volumes: named volume \"missing\" is used but no declaration was found in the volumes section",
    ),
    (
        "invalid_env_bool",
        "services.web.environment.DEBUG contains true, which is an invalid type, it should be a string, number, or a null",
        "services.web.environment.DEBUG: contains true, which is an invalid type, it should be a string, number, or a null",
    ),
    (
        "invalid_extends_missing",
        "Cannot extend service 'nothere'",
        "services.web.extends: cannot extend service 'nothere'",
    ),
    (
        "invalid_interpolation_syntax",
        "Invalid interpolation format for \"command\" option in service \"web\": \"echo ${UNCLOSED\"",
        "services.web.command: unclosed '${' in \"echo ${UNCLOSED\"",
    ),
    (
        "invalid_ulimits_soft_hard",
        "'soft' value can not be greater than 'hard' value",
        "services.a.ulimits.nofile: 'soft' value can not be greater than 'hard' value",
    ),
    (
        "invalid_pull_policy",
        "services.a.pull_policy value 'sometimes' is not one of ['always', 'never', 'if_not_present', 'build']",
        "services.a.pull_policy: value 'sometimes' is not one of ['always', 'never', 'if_not_present', 'build', 'missing']",
    ),
    (
        "invalid_tmpfs_source",
        "tmpfs mounts can not specify a source",
        "services.web.volumes: tmpfs mounts can not specify a source",
    ),
    (
        "invalid_duplicate_mount",
        "Duplicate mount points: [",
        "docker-compose.yml:4:5: services.app.volumes: duplicate mount points: \"/data\" is mounted twice",
    ),
];

/// The corpus; BERTH_COMPOSE_CORPUS points the test at another directory
/// of cases (for trying real-world files by hand).
fn corpus() -> (PathBuf, bool) {
    match std::env::var_os("BERTH_COMPOSE_CORPUS") {
        Some(d) => (PathBuf::from(d), true),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"),
            false,
        ),
    }
}

fn have_docker_compose() -> bool {
    Command::new("docker-compose")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The process environment a case runs with: PATH, HOME and its ENV file.
fn case_env(dir: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_string(),
        std::env::var("PATH").unwrap_or_default(),
    );
    env.insert("HOME".to_string(), "/home/tester".to_string());
    if let Ok(text) = std::fs::read_to_string(dir.join("ENV")) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').expect("ENV lines are K=V");
            env.insert(k.to_string(), v.to_string());
        }
    }
    env
}

/// The case's global options (`-f F`, `--env-file F`), given to both.
fn case_args(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ARGS"))
        .map(|a| a.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The values of one option in the case's ARGS.
fn case_opt(dir: &Path, opt: &str) -> Vec<PathBuf> {
    let args = case_args(dir);
    args.windows(2)
        .filter(|w| w[0] == opt)
        .map(|w| PathBuf::from(&w[1]))
        .collect()
}

fn docker_compose(dir: &Path) -> (bool, String, String) {
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(dir).env_clear().envs(case_env(dir));
    cmd.args(case_args(dir));
    let out = cmd.arg("config").output().expect("run docker-compose");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ours(dir: &Path) -> Result<String, String> {
    let opts = LoadOptions {
        files: case_opt(dir, "-f"),
        env_files: case_opt(dir, "--env-file"),
        env: case_env(dir),
        working_dir: Some(dir.to_path_buf()),
        ..LoadOptions::default()
    };
    Project::load(&opts)
        .map(|(p, _)| p.to_config_yaml())
        .map_err(|e| e.to_string())
}

/// A parsed YAML document as a value whose mappings ignore key order.
fn generic(y: &Yaml) -> Value {
    match y {
        Yaml::Null | Yaml::BadValue => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Int(*i),
        Yaml::Real(r) => Value::Float(r.parse().unwrap_or(f64::NAN)),
        Yaml::String(s) => Value::Str(s.clone()),
        Yaml::Array(a) => Value::Seq(a.iter().map(generic).collect()),
        Yaml::Hash(h) => Value::Map(
            h.iter()
                .map(|(k, v)| {
                    let k = match k {
                        Yaml::String(s) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (k, generic(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) => Value::Null,
    }
}

fn parse(text: &str) -> Value {
    let docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    generic(docs.first().expect("one document"))
}

#[test]
fn config_matches_docker_compose_1_29() {
    if !have_docker_compose() {
        // Recorded in the suite's summary, and a failure under CI=true.
        #[cfg(target_os = "linux")]
        berth_tests::skip("docker-compose not installed");
        #[cfg(not(target_os = "linux"))]
        println!("SKIPPED: docker-compose not installed");
        return;
    }
    let (corpus, ad_hoc) = corpus();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        ad_hoc || cases.len() >= 20,
        "corpus has {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    let (mut valid, mut same, mut invalid, mut same_err) = (0, 0, 0, 0);
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (ok, stdout, stderr) = docker_compose(dir);
        let mine = ours(dir);
        if name.starts_with("invalid_") {
            invalid += 1;
            let entry = INVALID.iter().find(|(c, _, _)| *c == name);
            let Some((_, theirs_says, ours_says)) = entry else {
                // Ad-hoc corpora: both must fail; show the two messages.
                assert!(ad_hoc, "{name}: no entry in INVALID");
                println!(
                    "{name}:\n  docker-compose: {}\n  ours: {mine:?}",
                    stderr.trim()
                );
                if !ok && mine.is_err() {
                    same_err += 1;
                } else {
                    failures.push(format!("{name}: only one side failed"));
                }
                continue;
            };
            let err = match &mine {
                Ok(out) => {
                    failures.push(format!("{name}: we accepted an invalid file:\n{out}"));
                    continue;
                }
                Err(e) => e,
            };
            if ok {
                failures.push(format!("{name}: docker-compose accepted it"));
            } else if !stderr.contains(theirs_says) {
                failures.push(format!(
                    "{name}: docker-compose said {stderr:?}, expected {theirs_says:?}"
                ));
            } else if !err.contains(ours_says) {
                failures.push(format!("{name}: we said {err:?}, expected {ours_says:?}"));
            } else {
                same_err += 1;
            }
            continue;
        }
        valid += 1;
        if !ok {
            failures.push(format!("{name}: docker-compose failed: {stderr}"));
            continue;
        }
        match mine {
            Err(e) => failures.push(format!("{name}: we failed: {e}")),
            Ok(out) => {
                let (a, b) = (parse(&stdout), parse(&out));
                if a == b {
                    same += 1;
                } else {
                    failures.push(format!(
                        "{name}: outputs differ\n--- docker-compose\n{stdout}\n--- ours\n{out}"
                    ));
                }
            }
        }
    }
    println!(
        "config parity: {same} of {valid} valid cases identical; {same_err} of {invalid} invalid cases fail alike"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
