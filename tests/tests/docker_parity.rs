#![cfg(target_os = "linux")]
//! The same commands against the real docker (Debian docker.io, a private
//! dockerd started here) and berth (native placement): exit codes, output
//! shapes and error messages must match. Volatile parts (ids, times,
//! sizes) are masked before comparing.
// Drives the Linux builds of berth and berth-agent (native placement, KVM).
#![cfg(target_os = "linux")]

use berth_tests::dockerd::Dockerd;
use berth_tests::{have, skip, Berth, Out, DEFAULT_IMAGE};

/// Masks what legitimately differs between two runs: hex ids, digits.
fn mask(s: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |w: &mut String, out: &mut String| {
        if w.len() >= 12 && w.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push_str("<id>");
        } else {
            out.push_str(w);
        }
        w.clear();
    };
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect()
}

struct Pair {
    docker: Dockerd,
    berth: Berth,
}

impl Pair {
    fn both(&self, args: &[&str]) -> (Out, Out) {
        let d: Out = self.docker.docker(args).unwrap().into();
        let b = self.berth.run(args);
        (d, b)
    }

    /// Same exit code and same masked stdout.
    #[track_caller]
    fn same(&self, args: &[&str]) -> (Out, Out) {
        let (d, b) = self.both(args);
        assert_eq!(
            d.code, b.code,
            "{args:?}: exit codes differ\ndocker: {}{}\nberth: {}{}",
            d.stdout, d.stderr, b.stdout, b.stderr
        );
        assert_eq!(mask(&d.stdout), mask(&b.stdout), "{args:?}: stdout differs");
        (d, b)
    }

    /// Same exit code and same masked stderr too.
    #[track_caller]
    fn same_err(&self, args: &[&str]) {
        let (d, b) = self.same(args);
        assert_eq!(
            mask(
                d.stderr
                    .trim_start_matches("docker: ")
                    .lines()
                    .next()
                    .unwrap_or("")
            ),
            mask(
                b.stderr
                    .trim_start_matches("berth: ")
                    .lines()
                    .next()
                    .unwrap_or("")
            ),
            "{args:?}: stderr differs"
        );
    }
}

fn header(s: &str) -> Vec<String> {
    s.lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

#[test]
fn container_verbs_match_docker() {
    if !have("dockerd") || !have("skopeo") {
        return skip("dockerd (docker.io) or skopeo not installed");
    }
    let docker = match Dockerd::start() {
        Ok(d) => d,
        Err(e) => return skip(&format!("cannot start dockerd here: {e}")),
    };
    if let Err(e) = docker.load_default_image(&format!("{DEFAULT_IMAGE}:latest")) {
        return skip(&format!("cannot load the image into dockerd: {e}"));
    }
    let p = Pair {
        docker,
        berth: Berth::new().with_default_image(),
    };
    p.same(&[
        "run",
        "-d",
        "--name",
        "web",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "echo hi; echo err >&2; sleep 100",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (d, b) = p.same(&["logs", "web"]);
    assert_eq!(d.stderr, b.stderr);
    p.same(&["exec", "web", "sh", "-c", "echo in; exit 3"]);
    // docker prints these runtime errors on stdout; berth on stderr.
    for args in [
        &["exec", "web", "no-such-command"][..],
        &["exec", "web", "/etc/passwd"][..],
        &["exec", "-w", "/nope", "web", "true"][..],
    ] {
        let (d, b) = p.both(args);
        assert_eq!(d.code, b.code, "{args:?}: {}", b.stderr);
        let core = d.stdout.trim_end().trim_end_matches(": unknown");
        let core = core.rsplit("container process: ").next().unwrap();
        assert!(
            b.stderr.contains(core),
            "{args:?}: {core:?} not in {:?}",
            b.stderr
        );
    }
    p.same(&[
        "exec",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "web",
        "sh",
        "-c",
        "echo $A; pwd",
    ]);
    let (d, b) = p.both(&["top", "web"]);
    assert_eq!((d.code, header(&d.stdout)), (b.code, header(&b.stdout)));
    let (d, b) = p.both(&["stats", "--no-stream", "web"]);
    assert_eq!(d.code, b.code);
    assert_eq!(d.stdout.lines().next(), b.stdout.lines().next());
    let (d, b) = p.both(&["ps"]);
    assert_eq!(d.stdout.lines().next(), b.stdout.lines().next());
    let col = |s: &str| {
        s.lines()
            .nth(1)
            .map(|l| l.split("   ").nth(2).unwrap_or("").to_string())
    };
    assert_eq!(col(&d.stdout), col(&b.stdout), "COMMAND column");
    p.same(&["pause", "web"]);
    let (d, b) = p.both(&["ps"]);
    assert!(d.stdout.contains("(Paused)") && b.stdout.contains("(Paused)"));
    p.same_err(&["exec", "web", "true"]);
    p.same_err(&["pause", "web"]);
    p.same(&["unpause", "web"]);
    p.same(&["port", "web"]);
    p.same_err(&["kill", "-s", "NOPE", "web"]);
    p.same_err(&["stop", "ghost"]);
    p.same_err(&["logs", "ghost"]);
    p.same_err(&["run", "--name", "x", DEFAULT_IMAGE, "true"]);
    p.same(&["rename", "web", "web2"]);
    p.same(&["kill", "web2"]);
    p.same(&["wait", "web2"]);
    p.same_err(&["attach", "web2"]);
    p.same_err(&["unpause", "web2"]);
    p.same(&["commit", "web2", "parity/commit:1"]);
    p.same(&[
        "run",
        "--rm",
        "parity/commit:1",
        "sh",
        "-c",
        "echo from-commit",
    ]);
    p.same(&["rm", "web2"]);
    p.same(&["run", "--name", "done", DEFAULT_IMAGE, "sh", "-c", "exit 2"]);
    p.same(&["container", "prune", "-f"]);
    p.same(&["ps", "-aq"]);
}
