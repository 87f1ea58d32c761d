//! `berth compose` in native placement, with docker compose v2's
//! semantics: `<project>-<service>-<n>` containers with the
//! `com.docker.compose.*` labels, one project network where services
//! find each other by name and alias, published ports answered on
//! 127.0.0.1, named volumes that survive `down` and go with `down -v`,
//! dependency order and `depends_on` conditions, recreation only of what
//! changed, `ps`/`stop`/`start`/`rm`/`down`, seed 001's version-1 file
//! scaled to three, and the errors for an unknown service or a bad file.
#![cfg(target_os = "linux")]

use berth_tests::{compose, have, skip, wait_for, Berth};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

fn ready() -> bool {
    if !have("nft") || !have("ip") {
        skip("nft or ip missing (scripts/deps.sh installs nftables and iproute2)");
        return false;
    }
    true
}

/// A project directory named `name` (the default project name).
fn project_dir(root: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
    let d = root.path().join(name);
    std::fs::create_dir(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// `ps -a -q` as a sorted list of IDs.
fn ids(b: &Berth, dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = compose(b, dir, &["ps", "-a", "-q"])
        .ok()
        .stdout
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// The container names `ps` lists (first column, header dropped).
fn ps_names(b: &Berth, dir: &Path, all: bool) -> Vec<String> {
    let args: &[&str] = if all { &["ps", "-a"] } else { &["ps"] };
    compose(b, dir, args)
        .ok()
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

const WEB_CLIENT: &str = r#"
services:
  web:
    image: berth/busybox
    init: true
    command: sh -c 'mkdir -p /www && echo "hello-$$GREETING" > /www/index.html && exec httpd -f -p 80 -h /www'
    environment:
      GREETING: GREETING_VALUE
    ports: ["127.0.0.1::80"]
    networks:
      default:
        aliases: [www-alias]
  client:
    image: berth/busybox
    init: true
    depends_on: [web]
    command: sh -c 'while ! wget -q -O /data/by-name http://web/ || ! wget -q -O /data/by-alias http://www-alias/; do sleep 0.2; done; exec sleep 100000'
    volumes: [data:/data]
volumes:
  data: {}
"#;

#[test]
fn up_network_ports_volumes_recreate_ps_stop_rm_down() {
    if !ready() {
        return;
    }
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let d = &project_dir(&dir, "demo");
    write(
        d,
        "compose.yaml",
        &WEB_CLIENT.replace("GREETING_VALUE", "one"),
    );

    // `config` is wired: services, volumes, quiet.
    let out = compose(&b, d, &["config", "--services"]).ok();
    assert_eq!(out.stdout, "client\nweb\n");
    let out = compose(&b, d, &["config", "--volumes"]).ok();
    assert_eq!(out.stdout, "data\n");
    let out = compose(&b, d, &["config", "-q"]).ok();
    assert_eq!(out.stdout, "");

    let out = compose(&b, d, &["up", "-d"]).ok();
    // Dependency order: web before client.
    let web_at = out.stderr.find("Container demo-web-1  Started").unwrap();
    let client_at = out.stderr.find("Container demo-client-1  Started").unwrap();
    assert!(web_at < client_at, "{}", out.stderr);

    // Names and labels as docker compose v2 gives them.
    let web = b.inspect("demo-web-1");
    let labels = &web["Config"]["Labels"];
    assert_eq!(labels["com.docker.compose.project"], "demo");
    assert_eq!(labels["com.docker.compose.service"], "web");
    assert_eq!(labels["com.docker.compose.container-number"], "1");
    assert_eq!(labels["com.docker.compose.oneoff"], "False");
    assert!(labels["com.docker.compose.config-hash"]
        .as_str()
        .is_some_and(|h| h.len() == 64));
    assert_eq!(
        labels["com.docker.compose.project.working_dir"],
        d.canonicalize().unwrap().display().to_string()
    );
    assert!(b.run(&["network", "inspect", "demo_default"]).code == 0);
    assert!(b.run(&["volume", "inspect", "demo_data"]).code == 0);

    // The client reached web by service name and by alias.
    wait_for("the client's fetches", || {
        compose(
            &b,
            d,
            &[
                "exec",
                "-T",
                "client",
                "cat",
                "/data/by-name",
                "/data/by-alias",
            ],
        )
        .stdout
            == "hello-one\nhello-one\n"
    });

    // The published port answers on the host.
    let addr = compose(&b, d, &["port", "web", "80"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let page = http_get(&addr).unwrap_or_default();
    assert!(page.contains("hello-one"), "{page}");

    // A second `up` changes nothing.
    let before = ids(&b, d);
    assert_eq!(before.len(), 2);
    let out = compose(&b, d, &["up", "-d"]).ok();
    assert!(!out.stderr.contains("Recreate"), "{}", out.stderr);
    assert!(!out.stderr.contains("Creat"), "{}", out.stderr);
    assert_eq!(ids(&b, d), before);

    // Changing web's environment recreates web only.
    let client_id = b.inspect("demo-client-1")["Id"].clone();
    let web_id = b.inspect("demo-web-1")["Id"].clone();
    write(
        d,
        "compose.yaml",
        &WEB_CLIENT.replace("GREETING_VALUE", "two"),
    );
    let out = compose(&b, d, &["up", "-d"]).ok();
    assert!(
        out.stderr.contains("Container demo-web-1  Recreate"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("demo-client-1  Recreate"),
        "{}",
        out.stderr
    );
    assert_eq!(b.inspect("demo-client-1")["Id"], client_id);
    assert_ne!(b.inspect("demo-web-1")["Id"], web_id);
    let addr = compose(&b, d, &["port", "web", "80"]).ok().stdout;
    wait_for("the new page", || {
        http_get(addr.trim()).is_some_and(|p| p.contains("hello-two"))
    });

    // ps, stop, start, rm.
    assert_eq!(ps_names(&b, d, false), ["demo-web-1", "demo-client-1"]);
    let json = compose(&b, d, &["ps", "--format", "json"]).ok().stdout;
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["Service"], "web");
    assert_eq!(rows[0]["State"], "running");
    assert_eq!(rows[0]["Publishers"][0]["TargetPort"], 80);
    compose(&b, d, &["stop", "client"]).ok();
    assert_eq!(ps_names(&b, d, false), ["demo-web-1"]);
    assert_eq!(ps_names(&b, d, true), ["demo-web-1", "demo-client-1"]);
    compose(&b, d, &["start"]).ok();
    assert_eq!(ps_names(&b, d, false), ["demo-web-1", "demo-client-1"]);
    compose(&b, d, &["stop"]).ok();
    assert!(ps_names(&b, d, false).is_empty());
    compose(&b, d, &["rm", "-f", "client"]).ok();
    assert_eq!(ps_names(&b, d, true), ["demo-web-1"]);

    // The named volume survives down and up; down -v removes it.
    compose(&b, d, &["up", "-d"]).ok();
    compose(
        &b,
        d,
        &["exec", "-T", "client", "sh", "-c", "echo kept > /data/mark"],
    )
    .ok();
    compose(&b, d, &["down"]).ok();
    assert!(compose(&b, d, &["ps", "-a", "-q"]).ok().stdout.is_empty());
    assert!(b.run(&["network", "inspect", "demo_default"]).code != 0);
    assert!(b.run(&["volume", "inspect", "demo_data"]).code == 0);
    compose(&b, d, &["up", "-d"]).ok();
    let out = compose(&b, d, &["exec", "-T", "client", "cat", "/data/mark"]).ok();
    assert_eq!(out.stdout, "kept\n");
    let out = compose(&b, d, &["down", "-v"]).ok();
    // Reverse dependency order on down.
    let client_at = out.stderr.find("demo-client-1  Removed").unwrap();
    let web_at = out.stderr.find("demo-web-1  Removed").unwrap();
    assert!(client_at < web_at, "{}", out.stderr);
    assert!(b.run(&["volume", "inspect", "demo_data"]).code != 0);
    assert!(b.run(&["ps", "-a", "-q"]).ok().stdout.is_empty());
}

/// Seed 001's version-1 layout (`build: .`, `command`, `links`), scaled as
/// `docker-compose scale web=10` (to three here).
#[test]
fn seed_001_v1_links_scale() {
    if !ready() {
        return;
    }
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let d = &project_dir(&dir, "seed");
    write(d, "Dockerfile", "FROM berth/busybox\nWORKDIR /code\n");
    write(
        d,
        "docker-compose.yml",
        r#"
web:
  build: .
  init: true
  command: sh -c 'while ! ping -c1 -W1 mysql >/dev/null; do sleep 0.2; done; echo linked; exec sleep 100000'
  links:
    - mysql
mysql:
  image: berth/busybox
  init: true
  command: sleep 100000
"#,
    );
    let out = compose(&b, d, &["up", "-d"]).ok();
    assert!(out.stderr.contains("version-1"), "{}", out.stderr);
    // The build's output (steps, result) is progress: on stderr, as docker
    // compose prints it; `up -d` prints nothing on stdout.
    assert!(
        out.stderr.contains("Successfully tagged seed-web"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
    compose(&b, d, &["scale", "web=3"]).ok();
    assert_eq!(
        ps_names(&b, d, false)
            .into_iter()
            .filter(|n| n.starts_with("seed-web-"))
            .collect::<Vec<_>>(),
        ["seed-web-1", "seed-web-2", "seed-web-3"]
    );
    // Each replica reached mysql by its link name.
    wait_for("three linked replicas", || {
        compose(&b, d, &["logs", "web"])
            .stdout
            .lines()
            .filter(|l| l.ends_with("| linked"))
            .count()
            == 3
    });
    // Scaling down removes the highest numbers.
    compose(&b, d, &["up", "-d", "--scale", "web=1"]).ok();
    assert_eq!(ps_names(&b, d, true), ["seed-mysql-1", "seed-web-1"]);
    compose(&b, d, &["down"]).ok();
    assert!(ps_names(&b, d, true).is_empty());
}

/// `service_healthy` waits for the healthcheck; `service_completed_
/// successfully` for a one-shot service to exit 0, and fails `up` when it
/// exits otherwise. The app checks the markers the two leave behind.
#[test]
fn depends_on_conditions() {
    if !ready() {
        return;
    }
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let d = &project_dir(&dir, "cond");
    let project = |migrate_exit: i32| {
        format!(
            r#"
services:
  db:
    image: berth/busybox
    init: true
    command: sh -c 'sleep 2; touch /shared/db-ready; exec sleep 100000'
    volumes: [shared:/shared]
    healthcheck:
      test: test -f /shared/db-ready
      interval: 1s
      retries: 100
  migrate:
    image: berth/busybox
    command: sh -c 'sleep 2; touch /shared/migrated; exit {migrate_exit}'
    volumes: [shared:/shared]
  app:
    image: berth/busybox
    init: true
    depends_on:
      db: {{condition: service_healthy}}
      migrate: {{condition: service_completed_successfully}}
    command: sh -c 'test -f /shared/db-ready && test -f /shared/migrated && echo saw-both; exec sleep 100000'
    volumes: [shared:/shared]
volumes:
  shared: {{}}
"#
        )
    };
    write(d, "compose.yaml", &project(0));
    let out = compose(&b, d, &["up", "-d"]).ok();
    assert!(
        out.stderr.contains("Container cond-db-1  Healthy"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Container cond-migrate-1  Exited"),
        "{}",
        out.stderr
    );
    wait_for("the app's check", || {
        compose(&b, d, &["logs", "app"]).stdout.contains("saw-both")
    });
    compose(&b, d, &["down", "-v"]).ok();

    write(d, "compose.yaml", &project(3));
    let out = compose(&b, d, &["up", "-d"]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("service \"migrate\" didn't complete successfully: exit 3"),
        "{}",
        out.stderr
    );
    assert!(!ps_names(&b, d, true).contains(&"cond-app-1".to_string()));
    compose(&b, d, &["down", "-v"]).ok();
}

#[test]
fn errors_unknown_service_and_bad_file() {
    let b = Berth::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "compose.yaml",
        "services:\n  web:\n    image: berth/busybox\n",
    );
    for args in [
        &["up", "-d", "nosuch"][..],
        &["stop", "nosuch"],
        &["logs", "nosuch"],
        &["up", "-d", "--scale", "nosuch=2"],
    ] {
        let out = compose(&b, d, args);
        assert_ne!(out.code, 0, "{args:?}");
        assert!(
            out.stderr.contains("no such service: nosuch"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let out = compose(&b, d, &["up", "-d", "--scale", "web"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("invalid scale specifier"),
        "{}",
        out.stderr
    );

    write(
        d,
        "compose.yaml",
        "services:\n  web:\n    image: [unclosed\n",
    );
    let out = compose(&b, d, &["up", "-d"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("compose.yaml"), "{}", out.stderr);
    let out = compose(&b, d, &["config", "-q"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("compose.yaml"), "{}", out.stderr);

    write(
        d,
        "compose.yaml",
        "services:\n  web:\n    image: berth/busybox\n    ports: 80\n",
    );
    let out = compose(&b, d, &["up", "-d"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("ports"), "{}", out.stderr);

    // A value berth cannot run is refused before anything is made.
    write(
        d,
        "compose.yaml",
        "services:\n  web:\n    image: berth/busybox\n    restart: sometimes\n",
    );
    let out = compose(&b, d, &["up", "-d"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("invalid restart policy \"sometimes\""),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("Network"), "{}", out.stderr);

    let empty = tempfile::tempdir().unwrap();
    let out = compose(&b, empty.path(), &["ps"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("no compose file found"),
        "{}",
        out.stderr
    );
}

/// `up` without `-d` follows the logs, each line prefixed by the
/// container, until every container exited; Ctrl-C (SIGINT) stops the
/// project instead.
#[test]
fn attached_up_follows_logs_and_ctrl_c_stops() {
    if !ready() {
        return;
    }
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let d = &project_dir(&dir, "att");
    write(
        d,
        "compose.yaml",
        "services:\n  a:\n    image: berth/busybox\n    command: echo from-a\n  b:\n    image: berth/busybox\n    command: sh -c 'sleep 0.3; echo from-b'\n",
    );
    let out = compose(&b, d, &["up"]).ok();
    assert!(out.stdout.contains("att-a-1 | from-a\n"), "{}", out.stdout);
    assert!(out.stdout.contains("att-b-1 | from-b\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("att-b-1 exited with code 0"),
        "{}",
        out.stdout
    );
    compose(&b, d, &["down"]).ok();

    write(
        d,
        "compose.yaml",
        "services:\n  srv:\n    image: berth/busybox\n    init: true\n    command: sh -c 'echo serving; exec sleep 100000'\n",
    );
    let mut cmd = b.command();
    cmd.current_dir(d)
        .args(["compose", "up"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    wait_for("the service running", || {
        ps_names(&b, d, false) == ["att-srv-1"]
    });
    // SAFETY: kill(2) on the PID of a child this test spawned and has not
    // waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = berth_tests::wait_output(child, b.timeout, "berth compose up");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("att-srv-1 | serving"), "{}", out.stdout);
    assert!(
        out.stderr.contains("Container att-srv-1  Stopped"),
        "{}",
        out.stderr
    );
    assert!(ps_names(&b, d, false).is_empty());
    assert_eq!(ps_names(&b, d, true), ["att-srv-1"]);
    compose(&b, d, &["down"]).ok();
}

/// `build:` (and `up --build` recreating what a rebuilt image runs), `run`
/// (its command, `-e`, exit code, `--rm`), `exec`, `pause`/`unpause`,
/// `top`, `kill`, `restart`, `ls` and `images`.
#[test]
fn build_run_exec_and_the_other_verbs() {
    if !ready() {
        return;
    }
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let d = &project_dir(&dir, "verbs");
    write(
        d,
        "Dockerfile",
        "FROM berth/busybox\nRUN echo built-1 > /built\nCMD [\"sh\", \"-c\", \"cat /built; exec sleep 100000\"]\n",
    );
    write(
        d,
        "compose.yaml",
        "services:\n  app:\n    build: .\n    init: true\n  other:\n    image: berth/busybox\n    init: true\n    command: sleep 100000\n",
    );
    compose(&b, d, &["up", "-d"]).ok();
    let images = compose(&b, d, &["images"]).ok().stdout;
    assert!(
        images.contains("verbs-app-1") && images.contains("verbs-app "),
        "{images}"
    );
    wait_for("the built file", || {
        compose(&b, d, &["logs", "app"]).stdout == "verbs-app-1 | built-1\n"
    });

    // A second up reuses the image; up --build after a change recreates.
    let out = compose(&b, d, &["up", "-d"]).ok();
    assert!(!out.stderr.contains("Recreate"), "{}", out.stderr);
    write(
        d,
        "Dockerfile",
        "FROM berth/busybox\nRUN echo built-2 > /built\nCMD [\"sh\", \"-c\", \"cat /built; exec sleep 100000\"]\n",
    );
    let out = compose(&b, d, &["up", "-d", "--build"]).ok();
    assert!(
        out.stderr.contains("Container verbs-app-1  Recreate"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("verbs-other-1  Recreate"),
        "{}",
        out.stderr
    );
    wait_for("the rebuilt file", || {
        compose(&b, d, &["logs", "app"]).stdout == "verbs-app-1 | built-2\n"
    });

    // run: the service's image and environment, the given command.
    let out = compose(
        &b,
        d,
        &[
            "run",
            "--rm",
            "-T",
            "-e",
            "X=42",
            "app",
            "sh",
            "-c",
            "echo run-$X; cat /built",
        ],
    )
    .ok();
    assert_eq!(out.stdout, "run-42\nbuilt-2\n");
    // Flags after the service are the command's, as docker compose reads
    // them (`-l`, `-e`, `-d`, `-u` and `-w` are also run's and exec's).
    let out = compose(
        &b,
        d,
        &["run", "--rm", "-T", "app", "echo", "-l", "-e", "-d", "x"],
    )
    .ok();
    assert_eq!(out.stdout, "-l -e -d x\n");
    let out = compose(&b, d, &["run", "-T", "other", "sh", "-c", "exit 7"]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    let all = b
        .run(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Label \"com.docker.compose.oneoff\"}}",
        ])
        .ok()
        .stdout;
    assert!(
        all.lines()
            .any(|l| l.starts_with("verbs-other-run-") && l.ends_with(" True")),
        "{all}"
    );
    assert!(
        !all.contains("verbs-app-run-"),
        "--rm left a container: {all}"
    );
    // run's container flags: --name, --entrypoint (the service's command
    // dropped), -u, -w, -l, -v.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("f"), "from-host\n").unwrap();
    let vol = format!("{}:/h:ro", host.path().display());
    let out = compose(
        &b,
        d,
        &[
            "run",
            "-T",
            "--name",
            "verbs-custom",
            "--entrypoint",
            "sh -c 'echo ep; id -u; pwd; cat /h/f; touch /h/x || echo ro'",
            "-u",
            "1234",
            "-w",
            "/tmp",
            "-l",
            "extra=yes",
            "-v",
            &vol,
            "app",
        ],
    )
    .ok();
    assert_eq!(
        out.stdout, "ep\n1234\n/tmp\nfrom-host\nro\n",
        "{}",
        out.stderr
    );
    let label = b
        .run(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"extra\"}}",
            "verbs-custom",
        ])
        .ok()
        .stdout;
    assert_eq!(label.trim(), "yes");
    b.run(&["rm", "verbs-custom"]).ok();
    // Bad flags are refused before anything is made.
    let out = compose(&b, d, &["run", "-T", "--entrypoint", "sh -c 'x", "app"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("unbalanced quotes"), "{}", out.stderr);
    let out = compose(&b, d, &["run", "-T", "-p", "notaport", "app", "true"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("notaport"), "{}", out.stderr);

    // ps lists one-offs too, as v2 does.
    let ps = compose(&b, d, &["ps", "-a"]).ok().stdout;
    assert!(
        ps.lines()
            .any(|l| l.starts_with("verbs-other-run-") && l.contains("Exited (7)")),
        "{ps}"
    );

    let out = compose(
        &b,
        d,
        &["exec", "-T", "other", "sh", "-c", "echo exec-ok; exit 3"],
    );
    assert_eq!(out.code, 3);
    assert_eq!(out.stdout, "exec-ok\n");
    let out = compose(
        &b,
        d,
        &["exec", "-T", "other", "echo", "-u", "0", "-w", "/", "-d"],
    )
    .ok();
    assert_eq!(out.stdout, "-u 0 -w / -d\n");

    compose(&b, d, &["pause", "other"]).ok();
    // Pause is synchronous (kill, below, is not).
    let ps = compose(&b, d, &["ps", "--format", "json", "other"])
        .ok()
        .stdout;
    assert!(ps.contains("\"State\":\"paused\""), "{ps}");
    compose(&b, d, &["unpause", "other"]).ok();
    let top = compose(&b, d, &["top", "other"]).ok().stdout;
    assert!(
        top.starts_with("verbs-other-1\n") && top.contains("sleep 100000"),
        "{top}"
    );
    let ls = compose(&b, d, &["ls"]).ok().stdout;
    assert!(
        ls.lines()
            .any(|l| l.starts_with("verbs ") && l.contains("running(2)")),
        "{ls}"
    );

    compose(&b, d, &["kill", "other"]).ok();
    wait_for("other killed", || {
        compose(&b, d, &["ps", "--format", "json", "-a", "other"])
            .stdout
            .contains("\"ExitCode\":137")
    });
    compose(&b, d, &["restart", "other"]).ok();
    assert_eq!(ps_names(&b, d, false), ["verbs-app-1", "verbs-other-1"]);

    compose(&b, d, &["down", "--rmi", "local"]).ok();
    assert!(b.run(&["ps", "-a", "-q"]).ok().stdout.is_empty());
    assert!(b.run(&["image", "inspect", "verbs-app"]).code != 0);
    let ls = compose(&b, d, &["ls", "-a"]).ok().stdout;
    assert!(!ls.contains("verbs"), "{ls}");
}

/// `-p NAME` with no compose file (docker compose v2): `ps`, `stop` and
/// `down` act on the project's containers, found by their labels; a verb
/// that needs the definition (`up`) still asks for the file.
#[test]
fn project_name_alone_finds_the_containers() {
    if !ready() {
        return;
    }
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let d = &project_dir(&dir, "byname");
    write(
        d,
        "compose.yaml",
        "services:\n  a:\n    image: berth/busybox\n    init: true\n    command: sleep 100000\n  \
         b:\n    image: berth/busybox\n    init: true\n    command: sleep 100000\n",
    );
    compose(&b, d, &["up", "-d"]).ok();
    let empty = tempfile::tempdir().unwrap();
    let e = empty.path();
    let p = |args: &[&str]| {
        let mut v = vec!["-p", "byname"];
        v.extend_from_slice(args);
        compose(&b, e, &v)
    };
    let names = |all: bool| -> Vec<String> {
        let args: &[&str] = if all { &["ps", "-a"] } else { &["ps"] };
        let out = p(args).ok().stdout;
        out.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect()
    };
    assert_eq!(names(false), ["byname-a-1", "byname-b-1"]);
    let out = p(&["stop", "b"]).ok();
    assert!(
        out.stderr.contains("Container byname-b-1  Stopped"),
        "{}",
        out.stderr
    );
    assert_eq!(names(false), ["byname-a-1"]);
    assert_eq!(names(true), ["byname-a-1", "byname-b-1"]);
    let out = p(&["up", "-d"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("no compose file found"),
        "{}",
        out.stderr
    );
    let out = p(&["down"]).ok();
    assert!(
        out.stderr.contains("Network byname_default  Removed"),
        "{}",
        out.stderr
    );
    assert!(names(true).is_empty());
    assert!(b.run(&["ps", "-a", "-q"]).ok().stdout.is_empty());
    // A name no container carries lists nothing, and is no error.
    let out = compose(&b, e, &["-p", "nosuch", "ps", "-a", "-q"]).ok();
    assert_eq!(out.stdout, "");
}

/// The `up` flags (`--no-deps`, `--wait`, `--force-recreate`,
/// `--no-recreate`, `--remove-orphans`), the global `--profile` and
/// `--env-file`, `logs --tail` and `-t`, and `rm -s`.
#[test]
fn up_flags_profiles_env_file_logs_and_rm_stop() {
    if !ready() {
        return;
    }
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let d = &project_dir(&dir, "flags");
    let file = |with_old: bool| {
        let old = if with_old {
            "  old:\n    image: berth/busybox\n    init: true\n    command: sleep 100000\n"
        } else {
            ""
        };
        format!(
            "services:\n  db:\n    image: berth/busybox\n    init: true\n    command: sleep 100000\n    \
             healthcheck:\n      test: 'true'\n      interval: 1s\n  \
             web:\n    image: berth/busybox\n    init: true\n    depends_on: [db]\n    \
             environment:\n      X: ${{X_VALUE:-unset}}\n    \
             command: sh -c 'echo one; echo two; echo three-$$X; exec sleep 100000'\n  \
             extra:\n    image: berth/busybox\n    init: true\n    command: sleep 100000\n    profiles: [extra]\n{old}"
        )
    };
    write(d, "compose.yaml", &file(true));
    write(d, "alt.env", "X_VALUE=alt\n");
    write(d, "other.env", "X_VALUE=other\n");
    let with_env = |env: &str, args: &[&str]| {
        let mut v = vec!["--env-file", env];
        v.extend_from_slice(args);
        compose(&b, d, &v)
    };

    // --no-deps: web alone, db not made.
    let out = with_env("alt.env", &["up", "-d", "--no-deps", "web"]).ok();
    assert!(
        out.stderr.contains("Container flags-web-1  Started"),
        "{}",
        out.stderr
    );
    assert_eq!(ps_names(&b, d, true), ["flags-web-1"]);
    // --env-file: the value interpolated is the file's.
    wait_for("web's log", || {
        compose(&b, d, &["logs", "web"])
            .stdout
            .contains("three-alt")
    });

    // --wait: up returns once db is healthy; the profiled service is not
    // started without its profile.
    let out = with_env("alt.env", &["up", "-d", "--wait"]).ok();
    assert!(
        out.stderr.contains("Container flags-db-1  Healthy"),
        "{}",
        out.stderr
    );
    let ps = compose(&b, d, &["ps", "--format", "json", "db"])
        .ok()
        .stdout;
    assert!(ps.contains("(healthy)"), "{ps}");
    assert_eq!(
        ps_names(&b, d, true),
        ["flags-db-1", "flags-old-1", "flags-web-1"]
    );

    // --force-recreate: everything, though nothing changed.
    let web_id = b.inspect("flags-web-1")["Id"].clone();
    let out = with_env("alt.env", &["up", "-d", "--force-recreate"]).ok();
    for c in ["flags-db-1", "flags-web-1"] {
        assert!(
            out.stderr.contains(&format!("Container {c}  Recreate")),
            "{}",
            out.stderr
        );
    }
    assert_ne!(b.inspect("flags-web-1")["Id"], web_id);
    // --no-recreate: web's environment changed, and it is kept.
    let web_id = b.inspect("flags-web-1")["Id"].clone();
    let out = with_env("other.env", &["up", "-d", "--no-recreate"]).ok();
    assert!(!out.stderr.contains("Recreate"), "{}", out.stderr);
    assert_eq!(b.inspect("flags-web-1")["Id"], web_id);

    // --profile: the profiled service joins.
    with_env("alt.env", &["--profile", "extra", "up", "-d", "extra"]).ok();
    assert!(ps_names(&b, d, false).contains(&"flags-extra-1".to_string()));

    // A service gone from the file: warned about, then removed with
    // --remove-orphans.
    write(d, "compose.yaml", &file(false));
    let out = with_env("alt.env", &["up", "-d"]).ok();
    assert!(
        out.stderr
            .contains("Found orphan containers ([flags-old-1])"),
        "{}",
        out.stderr
    );
    let out = with_env("alt.env", &["up", "-d", "--remove-orphans"]).ok();
    assert!(
        out.stderr.contains("Container flags-old-1  Removed"),
        "{}",
        out.stderr
    );
    assert!(!ps_names(&b, d, true).contains(&"flags-old-1".to_string()));

    // logs: the last line only; with timestamps.
    let out = compose(&b, d, &["logs", "--tail", "1", "web"]).ok();
    assert_eq!(out.stdout, "flags-web-1 | three-alt\n");
    let out = compose(&b, d, &["logs", "-t", "--tail", "1", "web"]).ok();
    let line = out.stdout.trim_end();
    let stamp = line
        .strip_prefix("flags-web-1 | ")
        .and_then(|l| l.strip_suffix(" three-alt"))
        .unwrap_or_else(|| panic!("{line:?}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{stamp:?}"
    );

    // rm -s: stops, then removes.
    let out = compose(&b, d, &["rm", "-s", "-f", "web"]).ok();
    assert!(
        out.stderr.contains("Container flags-web-1  Stopped"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Container flags-web-1  Removed"),
        "{}",
        out.stderr
    );
    assert!(!ps_names(&b, d, true).contains(&"flags-web-1".to_string()));
    compose(&b, d, &["--profile", "extra", "down"]).ok();
    assert!(b.run(&["ps", "-a", "-q"]).ok().stdout.is_empty());
}

/// `KEY=VALUE` lines of `out` as a map.
fn kv_lines(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn this_machines_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

/// The service keys of `run`'s resource, namespace and logging flags,
/// seen from inside the containers (`run`'s flags give the same,
/// native_resources / native_namespaces), and hostile values refused
/// before anything is made.
const RUN_KEYS: &str = r#"
services:
  res:
    image: berth/busybox
    command: sleep 100000
    init: true
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 100
    shm_size: 32m
    sysctls:
      net.ipv4.ip_forward: 1
    devices: ["/dev/zero:/dev/myzero:r"]
    group_add: [1234, daemon]
    cpu_shares: 512
    cpuset: "0"
    mem_limit: 64m
    memswap_limit: 128m
    mem_reservation: 32m
    oom_kill_disable: true
    ipc: shareable
    uts: host
    cgroup: host
    stop_grace_period: 7s
    logging:
      driver: none
  joiner:
    image: berth/busybox
    command: sleep 100000
    ipc: service:res
    pid: service:res
    cgroup: private
    sysctls:
      - kernel.shmmax=100000000
"#;

#[test]
fn run_flag_keys_apply_inside() {
    if !ready() {
        return;
    }
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let d = &project_dir(&dir, "keys");
    write(d, "compose.yaml", RUN_KEYS);
    let out = compose(&b, d, &["up", "-d"]).ok();
    // `ipc`/`pid: service:res` order res first.
    let res_at = out.stderr.find("Container keys-res-1  Started").unwrap();
    let joiner_at = out.stderr.find("Container keys-joiner-1  Started").unwrap();
    assert!(res_at < joiner_at, "{}", out.stderr);

    let script = r#"
        echo "pid1.nofile=$(grep 'Max open files' /proc/1/limits | awk '{print $4":"$5}')"
        echo "pid1.nproc=$(grep 'Max processes' /proc/1/limits | awk '{print $3":"$4}')"
        echo "groups=$(id -G)"
        echo "shm=$(df -k /dev/shm | tail -1 | awk '{print $2}')"
        echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
        c=/sys/fs/cgroup
        echo "shares=$(cat $c/cpu/cpu.shares 2>/dev/null || cat $c/cpu.weight)"
        echo "cpuset=$(cat $c/cpuset/cpuset.cpus 2>/dev/null || cat $c/cpuset.cpus)"
        echo "mem=$(cat $c/memory/memory.limit_in_bytes 2>/dev/null || cat $c/memory.max)"
        echo "swap=$(cat $c/memory/memory.memsw.limit_in_bytes 2>/dev/null || cat $c/memory.swap.max)"
        echo "low=$(cat $c/memory/memory.soft_limit_in_bytes 2>/dev/null || cat $c/memory.low)"
        echo "oom=$(grep oom_kill_disable $c/memory/memory.oom_control 2>/dev/null | awk '{print $2}')"
        echo "myzero=$(head -c 3 /dev/myzero | od -An -tx1 | xargs)"
        echo "hostname=$(hostname)"
        for n in ipc pid uts cgroup; do echo "ns.$n=$(readlink /proc/self/ns/$n)"; done
    "#;
    let o = compose(&b, d, &["exec", "-T", "res", "sh", "-c", script]).ok();
    let m = kv_lines(&o.stdout);
    let get = |k: &str| m.get(k).map(String::as_str).unwrap_or("");
    assert_eq!(get("pid1.nofile"), "1024:2048", "{}", o.stdout);
    assert_eq!(get("pid1.nproc"), "100:100", "{}", o.stdout);
    let g: Vec<&str> = get("groups").split_whitespace().collect();
    // busybox's daemon group is gid 1.
    assert!(g.contains(&"1234") && g.contains(&"1"), "{}", o.stdout);
    assert_eq!(get("shm"), "32768", "{}", o.stdout);
    assert_eq!(get("ip_forward"), "1", "{}", o.stdout);
    assert!(matches!(get("shares"), "512" | "20"), "{}", o.stdout);
    assert_eq!(get("cpuset"), "0", "{}", o.stdout);
    assert_eq!(get("mem"), "67108864", "{}", o.stdout);
    assert!(
        matches!(get("swap"), "134217728" | "67108864"),
        "{}",
        o.stdout
    );
    assert_eq!(get("low"), "33554432", "{}", o.stdout);
    if Path::new("/sys/fs/cgroup/memory/memory.oom_control").exists() {
        assert_eq!(get("oom"), "1", "{}", o.stdout);
    }
    assert_eq!(get("myzero"), "00 00 00", "{}", o.stdout);
    // uts: host, cgroup: host.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(get("hostname"), host.trim(), "{}", o.stdout);
    assert_eq!(get("ns.uts"), this_machines_ns("uts"), "{}", o.stdout);
    assert_eq!(get("ns.cgroup"), this_machines_ns("cgroup"), "{}", o.stdout);
    assert_ne!(get("ns.ipc"), this_machines_ns("ipc"), "{}", o.stdout);

    // The joiner shares res's IPC and PID namespaces; its own cgroup one.
    let j = compose(&b, d, &["exec", "-T", "joiner", "sh", "-c", script]).ok();
    let jm = kv_lines(&j.stdout);
    assert_eq!(jm["ns.ipc"], get("ns.ipc"), "{}", j.stdout);
    assert_eq!(jm["ns.pid"], get("ns.pid"), "{}", j.stdout);
    assert_ne!(jm["ns.cgroup"], this_machines_ns("cgroup"), "{}", j.stdout);
    // The list form of sysctls, in the shared IPC namespace.
    let shm = compose(
        &b,
        d,
        &["exec", "-T", "joiner", "cat", "/proc/sys/kernel/shmmax"],
    )
    .ok();
    assert_eq!(shm.stdout.trim(), "100000000");
    // res's processes are the joiner's to see.
    let ps = compose(&b, d, &["exec", "-T", "joiner", "ps", "-o", "args"]).ok();
    assert!(ps.stdout.contains("sleep 100000"), "{}", ps.stdout);

    // In inspect: the stop timeout, the log driver, the modes.
    let h = b.inspect("keys-res-1");
    assert_eq!(h["Config"]["StopTimeout"], 7, "{h}");
    assert_eq!(h["HostConfig"]["LogConfig"]["Type"], "none", "{h}");
    let jh = b.inspect("keys-joiner-1");
    let res_id = h["Id"].as_str().unwrap();
    assert_eq!(
        jh["HostConfig"]["IpcMode"],
        format!("container:{res_id}"),
        "{jh}"
    );
    // logging: none keeps nothing; `logs` refuses as docker does.
    let logs = compose(&b, d, &["logs", "res"]);
    assert!(
        logs.stderr.contains("does not support reading"),
        "{}",
        logs.stderr
    );
    compose(&b, d, &["down", "-t", "1"]).ok();

    // Hostile values: refused with docker's words, before anything is
    // made; a device that is not one, as docker refuses it, at start.
    for (keys, says) in [
        (
            "    sysctls: {kernel.hostname: evil}\n",
            "sysctl 'kernel.hostname=evil' is not allowed",
        ),
        (
            "    devices: ['/dev/../etc/shadow:/dev/x']\n",
            "error gathering device information",
        ),
        (
            "    ulimits: {nofile: 99999999999999999999}\n",
            "\"99999999999999999999\" is not a valid integer",
        ),
        (
            "    shm_size: 99999999999999999999999t\n",
            "shm_size: invalid size: '99999999999999999999999t'",
        ),
        (
            "    pid: service:ghost\n",
            "joins service \"ghost\" which is undefined",
        ),
    ] {
        write(
            d,
            "compose.yaml",
            &format!("services:\n  bad:\n    image: berth/busybox\n{keys}"),
        );
        let out = compose(&b, d, &["up", "-d"]);
        assert_ne!(out.code, 0, "{keys:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{keys:?}: {}", out.stderr);
        if keys.contains("devices") {
            assert_eq!(b.inspect("keys-bad-1")["State"]["Running"], false);
            compose(&b, d, &["down"]).ok();
        } else {
            assert!(b.run(&["inspect", "keys-bad-1"]).code != 0, "{keys:?}");
        }
    }
}

/// The verbs' options no other test reaches: `up --no-build` (refused
/// while the image is missing, no rebuild once it is there), `logs -f`
/// as its own verb (it follows new lines and ends when the container
/// stops), `rm -v` (the anonymous volume goes; without `-v` it stays) and
/// `down --remove-orphans` (a plain `down` leaves the orphan and the
/// network; the flag removes both).
#[test]
fn no_build_logs_follow_rm_v_and_down_remove_orphans() {
    if !ready() {
        return;
    }
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let d = &project_dir(&dir, "verbs");
    write(d, "Dockerfile", "FROM berth/busybox\nRUN echo one > /v\n");
    let file = r#"
services:
  built:
    build: .
    command: sleep 100000
    init: true
  keep:
    image: berth/busybox
    init: true
    command: sh -c 'echo before; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo after-trigger; exec sleep 100000'
    volumes: [/anon]
  extra:
    image: berth/busybox
    init: true
    command: sleep 100000
    volumes: [/anon]
"#;
    write(d, "compose.yaml", file);

    // --no-build with the image missing: refused before anything is made.
    let out = compose(&b, d, &["up", "-d", "--no-build"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("--no-build"), "{}", out.stderr);
    assert!(ids(&b, d).is_empty());
    let out = compose(&b, d, &["up", "-d"]).ok();
    assert!(out.stderr.contains("Building"), "{}", out.stderr);
    // A changed Dockerfile is not built with --no-build.
    write(d, "Dockerfile", "FROM berth/busybox\nRUN echo two > /v\n");
    let out = compose(&b, d, &["up", "-d", "--no-build"]).ok();
    assert!(!out.stderr.contains("Building"), "{}", out.stderr);
    let v = compose(&b, d, &["exec", "-T", "built", "cat", "/v"]).ok();
    assert_eq!(v.stdout, "one\n");

    // logs -f: the lines so far, a line written later, the end at stop.
    let log_path = dir.path().join("follow.log");
    let mut cmd = b.command();
    cmd.current_dir(d)
        .args(["compose", "logs", "-f", "keep"])
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let seen = |what: &str| {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains(what)
    };
    wait_for("logs -f to print the first line", || {
        seen("verbs-keep-1 | before")
    });
    assert!(!seen("after-trigger"));
    compose(&b, d, &["exec", "-T", "keep", "touch", "/tmp/go"]).ok();
    wait_for("logs -f to print a later line", || {
        seen("verbs-keep-1 | after-trigger")
    });
    compose(&b, d, &["stop", "-t", "1", "keep"]).ok();
    let out = berth_tests::wait_output(child, b.timeout, "berth compose logs -f");
    assert_eq!(out.code, 0, "{}", out.stderr);

    // rm -v takes the anonymous volume with the container; rm alone not.
    let anon = |name: &str| {
        let c = b.inspect(name);
        let m = c["Mounts"].as_array().unwrap().clone();
        let m = m.iter().find(|m| m["Destination"] == "/anon").unwrap();
        m["Name"].as_str().unwrap().to_string()
    };
    let (keep_vol, extra_vol) = (anon("verbs-keep-1"), anon("verbs-extra-1"));
    compose(&b, d, &["rm", "-f", "-v", "keep"]).ok();
    assert_ne!(b.run(&["inspect", "verbs-keep-1"]).code, 0);
    assert_ne!(b.run(&["volume", "inspect", &keep_vol]).code, 0);
    compose(&b, d, &["rm", "-f", "-s", "extra"]).ok();
    assert_ne!(b.run(&["inspect", "verbs-extra-1"]).code, 0);
    assert_eq!(b.run(&["volume", "inspect", &extra_vol]).code, 0);
    b.run(&["volume", "rm", &extra_vol]).ok();

    // down --remove-orphans: extra leaves the file and becomes an orphan.
    compose(&b, d, &["up", "-d", "--no-build"]).ok();
    let without_extra = file.split("  extra:").next().unwrap();
    write(d, "compose.yaml", without_extra);
    let out = compose(&b, d, &["down", "-t", "1"]).ok();
    assert!(out.stderr.contains("orphan"), "{}", out.stderr);
    assert_eq!(b.inspect("verbs-extra-1")["State"]["Running"], true);
    assert_eq!(b.run(&["network", "inspect", "verbs_default"]).code, 0);
    assert_ne!(b.run(&["inspect", "verbs-keep-1"]).code, 0);
    let out = compose(&b, d, &["down", "-t", "1", "--remove-orphans"]).ok();
    assert!(
        out.stderr.contains("Container verbs-extra-1  Removed"),
        "{}",
        out.stderr
    );
    assert_ne!(b.run(&["inspect", "verbs-extra-1"]).code, 0);
    assert_ne!(b.run(&["network", "inspect", "verbs_default"]).code, 0);
    compose(&b, d, &["down", "--rmi", "local", "-v"]).ok();
}
