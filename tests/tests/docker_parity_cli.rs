//! What docker's CLI (28, `/usr/local/bin/docker`) refuses itself, before
//! it talks to a daemon, compared with berth: bad `-p`, `--expose`,
//! `--add-host`, `--dns`, `--link` and `--network` values of `run` and
//! `create`, and bad `network create` addresses. Exit codes and the
//! message must be docker's; the layout around the message is berth's
//! (the two lines CLI 20.10 prints: `berth: MESSAGE.` and `See 'berth
//! run --help'.`, where CLI 28 prints `docker: MESSAGE`, a blank line and
//! `Run 'docker run --help' for more information`).
//!
//! Neither needs an engine: docker runs with `DOCKER_HOST` at a socket
//! that does not exist (a case docker's CLI leaves to its daemon would
//! say it cannot connect, which fails the test), berth with a state dir
//! of its own and no agent to start.
#![cfg(target_os = "linux")]

use berth_tests::{berth_bin, run_command, skip, Out, DEFAULT_IMAGE};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const DOCKER_28: &str = "/usr/local/bin/docker";

/// The message of a refusal: stderr's first line without the program's
/// prefix or a closing period.
fn message(stderr: &str) -> String {
    let first = stderr.lines().next().unwrap_or("");
    let first = first
        .strip_prefix("docker: ")
        .or_else(|| first.strip_prefix("berth: "))
        .unwrap_or(first);
    first.strip_suffix('.').unwrap_or(first).to_string()
}

struct Clis {
    home: tempfile::TempDir,
    docker_config: tempfile::TempDir,
}

impl Clis {
    fn docker(&self, args: &[&str]) -> Out {
        let mut c = Command::new(DOCKER_28);
        c.args(args)
            .env(
                "DOCKER_HOST",
                "unix:///nonexistent/berth-parity/docker.sock",
            )
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY");
        run_command(c, None, Duration::from_secs(60), "docker")
    }

    fn berth(&self, args: &[&str]) -> Out {
        let mut c = Command::new(berth_bin());
        c.args(args)
            .env("BERTH_HOME", self.home.path())
            .env("BERTH_ISOLATION", "native")
            .env("BERTH_AGENT", "/nonexistent/berth-agent");
        run_command(c, None, Duration::from_secs(60), "berth")
    }

    /// The same exit code, no output, and docker's message.
    #[track_caller]
    fn same_refusal(&self, args: &[&str]) {
        let d = self.docker(args);
        let b = self.berth(args);
        assert!(
            !d.stderr.contains("Cannot connect to the Docker daemon"),
            "{args:?}: docker's CLI does not refuse this itself: {}",
            d.stderr
        );
        assert_ne!(d.code, 0, "{args:?}: docker took it");
        assert_eq!(
            b.code, d.code,
            "{args:?}: exit codes differ\ndocker: {}berth: {}",
            d.stderr, b.stderr
        );
        assert_eq!((d.stdout.as_str(), b.stdout.as_str()), ("", ""), "{args:?}");
        assert_eq!(
            message(&b.stderr),
            message(&d.stderr),
            "{args:?}: messages differ\ndocker: {}berth: {}",
            d.stderr,
            b.stderr
        );
    }
}

fn clis() -> Option<Clis> {
    if !Path::new(DOCKER_28).is_file() {
        skip("docker CLI 28 (/usr/local/bin/docker) not installed");
        return None;
    }
    Some(Clis {
        home: tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir_in("/tmp")
            .unwrap(),
        docker_config: tempfile::tempdir().unwrap(),
    })
}

#[test]
fn bad_publish_and_expose_specs_refused_as_docker_28() {
    let Some(p) = clis() else { return };
    for spec in [
        "99999:80",
        "80:99999",
        "8080:",
        "",
        ":",
        "abc",
        "8080:abc",
        "65536",
        "80/foo",
        "8000-8002:80-81",
        "80:80-81",
        "8002-8000:80",
        "8080-:80",
        "a-b:80",
        "-1:80",
        "1.2.3.4:80",
        "bad.ip:80:80",
        "300.1.1.1:80:80",
        "[::1:8080:80",
        "published=80,bogus",
    ] {
        p.same_refusal(&["run", "--rm", "-p", spec, DEFAULT_IMAGE, "true"]);
    }
    p.same_refusal(&["create", "-p", "99999:80", DEFAULT_IMAGE]);
    for e in ["80:80", "abc", "82-80", "65536", "", "/tcp"] {
        p.same_refusal(&["run", "--rm", "--expose", e, DEFAULT_IMAGE, "true"]);
    }
}

#[test]
fn bad_host_dns_link_and_network_flags_refused_as_docker_28() {
    let Some(p) = clis() else { return };
    for h in [
        "foo",
        ":1.2.3.4",
        "foo:",
        "foo:bad",
        "a:b:c",
        "foo:1.2.3.4.5",
        "foo:[]",
    ] {
        p.same_refusal(&["run", "--rm", "--add-host", h, DEFAULT_IMAGE, "true"]);
    }
    p.same_refusal(&["run", "--rm", "--dns", "foo", DEFAULT_IMAGE, "true"]);
    for s in ["-bad", "123", "a b", "foo..com"] {
        p.same_refusal(&["run", "--rm", "--dns-search", s, DEFAULT_IMAGE, "true"]);
    }
    for l in ["a:b:c", ""] {
        p.same_refusal(&["run", "--rm", "--link", l, DEFAULT_IMAGE, "true"]);
    }
    for flags in [
        &["--network", "none", "--network-alias", "a"][..],
        &["--network-alias", "a"][..],
        &["--net", "host", "--net-alias", "a"][..],
        &["--network", ""][..],
        &["--network", "host", "--network", "b"][..],
        &["--network", "a", "--network", "a"][..],
        &["--network", "name=a,bogus=1"][..],
        &["--network", "alias=a"][..],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[DEFAULT_IMAGE, "true"]);
        p.same_refusal(&args);
    }
}

#[test]
fn bad_network_create_addresses_refused_as_docker_28() {
    let Some(p) = clis() else { return };
    for flags in [
        &["--gateway", "10.0.0.1"][..],
        &["--subnet", "10.1.0.0/16", "--gateway", "10.0.0.1"][..],
        &["--subnet", "10.1.0.0/16", "--gateway", "foo"][..],
        &["--subnet", "10.1.0.0/16", "--gateway", "1.2.3.4/x"][..],
        &["--subnet", "10.1.0.0/16,10.1.2.0/24"][..],
        &["--subnet", "10.1.0.0/16", "--subnet", "10.1.0.0/16"][..],
        &["--subnet", "10.1.0.0/16", "--gateway", "10.1.0.1,10.1.0.2"][..],
        &["--label", "=x"][..],
    ] {
        let mut args = vec!["network", "create"];
        args.extend_from_slice(flags);
        args.push("parity-net");
        p.same_refusal(&args);
    }
    p.same_refusal(&["network", "ls", "--filter", "bogus"]);
    p.same_refusal(&["network", "prune", "--filter", "bogus"]);
}

#[test]
fn bad_health_flags_refused_as_docker_28() {
    let Some(p) = clis() else { return };
    for flags in [
        &["--no-healthcheck", "--health-cmd", "true"][..],
        &["--no-healthcheck", "--health-interval", "1s"][..],
        &["--health-interval=-1s"][..],
        &["--health-timeout=-1ms"][..],
        &["--health-retries=-1"][..],
        &["--health-start-period=-1s"][..],
        &["--health-start-interval=-1s"][..],
        &["--health-timeout=-1ms", "--health-interval=-1s"][..],
        &["--health-interval=x"][..],
        &["--health-interval=5"][..],
        &["--health-timeout=1y"][..],
        &["--health-retries=x"][..],
        &["--health-retries=99999999999999999999"][..],
    ] {
        for verb in ["run", "create"] {
            let mut args = vec![verb];
            args.extend_from_slice(flags);
            args.extend_from_slice(&[DEFAULT_IMAGE, "true"]);
            p.same_refusal(&args);
        }
    }
}
