//! `berth events` (docker's `docker events`) in native placement: the
//! stored history between two times, following new events, filters, bad
//! input, and the same command sequence compared with a real docker.
#![cfg(target_os = "linux")]

use berth_tests::{events_now as now, Berth, DEFAULT_IMAGE};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The events between `since` and `until` (plus `extra` flags), as JSON.
fn history(b: &Berth, since: &str, until: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec![
        "events", "--since", since, "--until", until, "--format", "json",
    ];
    args.extend_from_slice(extra);
    let out = b.run(&args).ok().stdout;
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `Type Action Actor.ID name exitCode/signal` of each event.
fn summary(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let a = &e["Actor"]["Attributes"];
            let mut s = format!(
                "{} {} {}",
                e["Type"].as_str().unwrap(),
                e["Action"].as_str().unwrap(),
                a["name"]
                    .as_str()
                    .map_or("-", |n| if n.starts_with("sha256:") { "ID" } else { n })
            );
            for k in ["exitCode", "signal", "oldName"] {
                if let Some(v) = a[k].as_str() {
                    s.push_str(&format!(" {k}={v}"));
                }
            }
            s
        })
        .collect()
}

#[test]
fn history_lists_what_happened_in_order() {
    let b = Berth::new().with_default_image();
    let t0 = now();
    let one = b
        .run(&[
            "run",
            "-d",
            "--name",
            "ev1",
            "--label",
            "tier=x",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "exit 3",
        ])
        .ok()
        .stdout
        .trim()
        .to_string();
    b.run(&["wait", "ev1"]).ok();
    b.run(&["run", "-d", "--name", "ev2", DEFAULT_IMAGE, "sleep", "100"])
        .ok();
    b.run(&["stop", "-t", "1", "ev2"]).ok();
    b.run(&["rename", "ev2", "ev3"]).ok();
    b.run(&["rm", "ev1", "ev3"]).ok();
    b.run(&["volume", "create", "evvol"]).ok();
    b.run(&["volume", "rm", "evvol"]).ok();
    b.run(&["tag", DEFAULT_IMAGE, "evimg:v1"]).ok();
    b.run(&["rmi", "evimg:v1"]).ok();
    let t1 = now();
    let all = history(&b, &t0, &t1, &[]);
    assert_eq!(
        summary(&all),
        [
            // (docker with its default bridge logs the same network
            // events; the parity check is `network_events_match_dockers`)
            "container create ev1",
            "network connect bridge",
            "container start ev1",
            "container die ev1 exitCode=3",
            "network disconnect bridge",
            "container create ev2",
            "network connect bridge",
            "container start ev2",
            "container kill ev2 signal=15",
            "container kill ev2 signal=9",
            "container die ev2 exitCode=137",
            "network disconnect bridge",
            "container stop ev2",
            "container rename ev3 oldName=/ev2",
            "container destroy ev1",
            "container destroy ev3",
            "volume create -",
            "volume destroy -",
            "image tag evimg:v1",
            "image untag ID",
        ]
        .map(String::from)
        .to_vec()
    );
    // docker's fields: container events carry the legacy status/id/from,
    // every event scope, time and timeNano.
    let first = &all[0];
    assert_eq!(first["status"], "create");
    assert_eq!(first["id"], one.as_str());
    assert_eq!(first["from"], DEFAULT_IMAGE);
    assert_eq!(first["Actor"]["ID"], one.as_str());
    assert_eq!(first["Actor"]["Attributes"]["image"], DEFAULT_IMAGE);
    assert_eq!(first["Actor"]["Attributes"]["tier"], "x");
    assert_eq!(first["scope"], "local");
    let nanos = first["timeNano"].as_i64().unwrap();
    assert_eq!(first["time"].as_i64().unwrap(), nanos / 1_000_000_000);
    let vol = all.iter().position(|e| e["Type"] == "volume").unwrap();
    assert_eq!(all[vol]["Actor"]["ID"], "evvol");
    assert_eq!(all[vol]["Actor"]["Attributes"]["driver"], "local");
    assert!(all[vol].get("status").is_none());
    let image_id = all[vol + 2]["Actor"]["ID"].as_str().unwrap();
    assert!(image_id.starts_with("sha256:"), "{image_id}");
    assert_eq!(all[vol + 3]["Actor"]["Attributes"]["name"], image_id);

    // docker's default line: time (RFC 3339, 9 fraction digits, local
    // zone), type, action, id, the attributes sorted by key.
    let out = b
        .run(&[
            "events",
            "--since",
            &t0,
            "--until",
            &t1,
            "--filter",
            "event=create",
        ])
        .ok()
        .stdout;
    let line = out.lines().next().unwrap();
    let (time, rest) = line.split_once(' ').unwrap();
    // (The image's labels come between: a container's labels include them.)
    let head = format!("container create {one} (image={DEFAULT_IMAGE}, name=ev1, ");
    assert!(
        rest.starts_with(&head) && rest.ends_with(", tier=x)"),
        "{rest}"
    );
    let t = chrono::DateTime::parse_from_rfc3339(time).unwrap();
    assert_eq!(t.timestamp_nanos_opt(), Some(nanos));
    let fraction = time.split('.').nth(1).unwrap();
    assert_eq!(
        fraction.chars().take_while(char::is_ascii_digit).count(),
        9,
        "{time}"
    );

    // Filters, as docker's.
    let f = |extra: &[&str]| summary(&history(&b, &t0, &t1, extra));
    assert_eq!(
        f(&["--filter", "event=die"]),
        [
            "container die ev1 exitCode=3",
            "container die ev2 exitCode=137"
        ]
    );
    assert_eq!(
        f(&["-f", "type=volume"]),
        ["volume create -", "volume destroy -"]
    );
    assert_eq!(
        f(&["-f", "volume=evvol", "-f", "event=destroy"]),
        ["volume destroy -"]
    );
    assert_eq!(
        f(&["-f", "container=ev1"]),
        [
            "container create ev1",
            "container start ev1",
            "container die ev1 exitCode=3",
            "container destroy ev1"
        ]
    );
    assert_eq!(f(&["-f", &format!("container={}", &one[..12])]).len(), 4);
    assert_eq!(
        f(&["-f", "label=tier=x", "-f", "event=start"]),
        ["container start ev1"]
    );
    assert_eq!(f(&["-f", "image=evimg"]), ["image tag evimg:v1"]);
    assert_eq!(
        f(&["-f", "type=image", "-f", "type=volume"]).len(),
        4,
        "filters of one key are alternatives"
    );
    // Go templates on docker's events.Message.
    let o = b
        .run(&[
            "events",
            "--since",
            &t0,
            "--until",
            &t1,
            "-f",
            "event=die",
            "--format",
            "{{.Type}}/{{.Action}}/{{.Actor.Attributes.exitCode}}/{{.Status}}",
        ])
        .ok();
    assert_eq!(o.stdout, "container/die/3/die\ncontainer/die/137/die\n");
    // Nothing in a window before anything happened.
    assert!(history(&b, "1", "2", &[]).is_empty());
}

/// The lines `child` prints, read on a thread as they come.
fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    rx
}

#[test]
fn follow_prints_new_events_until_stopped() {
    let b = Berth::new().with_default_image();
    let mut child = b
        .command()
        .args([
            "events",
            "--filter",
            "type=volume",
            "--format",
            "{{.Action}} {{.Actor.ID}}",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stdout_lines(&mut child);
    // The stream starts when the agent has the request: make volumes
    // until the follower shows one (those before it connected are not
    // history: no --since).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut made = Vec::new();
    let line = loop {
        assert!(Instant::now() < deadline, "no event followed");
        let name = format!("fol{}", made.len());
        b.run(&["volume", "create", &name]).ok();
        made.push(format!("create {name}"));
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            break l;
        }
    };
    assert!(made.contains(&line), "{line} not in {made:?}");
    // Still following: a later event shows too, container events do not.
    b.run(&["run", "--rm", DEFAULT_IMAGE, "true"]).ok();
    b.run(&["volume", "rm", "fol0"]).ok();
    let mut next = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    while next.starts_with("create ") {
        next = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    }
    assert_eq!(next, "destroy fol0");
    assert!(
        child.try_wait().unwrap().is_none(),
        "events ended by itself"
    );
    // SAFETY: kill(2) of the child this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();

    // A container run from another terminal: its start, then its die
    // with the exit code, each with docker's timestamp.
    let mut child = b
        .command()
        .args([
            "events",
            "--filter",
            "type=container",
            "--filter",
            "event=start",
            "--filter",
            "event=die",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = stdout_lines(&mut child);
    // Until the follower is connected: a volume event tells nothing here,
    // so poll with containers until the first start shows.
    let deadline = Instant::now() + Duration::from_secs(120);
    // The first line of `rx` that holds `want`, others skipped.
    let next_with = |want: &str, wait: Duration| -> Option<String> {
        let until = Instant::now() + wait;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(want) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let (start, die, id) = loop {
        assert!(Instant::now() < deadline, "no container event followed");
        let o = b.run(&["run", "-d", DEFAULT_IMAGE, "sh", "-c", "exit 3"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        let id = o.stdout.trim().to_string();
        b.run(&["wait", &id]);
        let Some(start) = next_with(&format!("container start {id}"), Duration::from_secs(5))
        else {
            continue;
        };
        let die = next_with(&format!("container die {id}"), Duration::from_secs(30));
        break (start, die.expect("no die event after the start"), id);
    };
    // SAFETY: kill(2) of the child this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    for (line, action) in [(&start, "start"), (&die, "die")] {
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(
            rest.starts_with(&format!("container {action} {id} (")),
            "{line}"
        );
        let t = chrono::DateTime::parse_from_rfc3339(time).unwrap();
        let age = chrono::Utc::now().signed_duration_since(t);
        assert!(age.num_seconds() >= 0 && age.num_seconds() < 600, "{line}");
    }
    assert!(die.contains("exitCode=3"), "{die}");
    assert!(!start.contains("exitCode"), "{start}");
    b.run(&["rm", &id]).ok();

    // With --until in the future it ends by itself once that passed
    // (a duration counts in whole seconds, as docker's: 1 to 2 s here).
    let start = Instant::now();
    let o = b.run(&["events", "--until=-2s"]).ok();
    assert_eq!(o.stdout, "");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn bad_input_gets_dockers_errors() {
    let b = Berth::new();
    let o = b.run(&["events", "--since", "foo"]);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (1, "failed to parse value as time or duration: \"foo\"")
    );
    let o = b.run(&["events", "--until", "bar"]);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (1, "failed to parse value as time or duration: \"bar\"")
    );
    // As docker 20.10's daemon: unknown filter keys are ignored.
    let o = b.run(&[
        "events", "--since", "1", "--until", "2", "--filter", "foo=bar",
    ]);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    let o = b.run(&["events", "--since", "1", "--until", "0"]);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (
            1,
            "Error response from daemon: `since` time (1) cannot be after `until` time (0)"
        )
    );
    let o = b.run(&["events", "--until", "1", "--format", "{{.Foo}}"]);
    assert_eq!(
        (o.code, o.stderr.trim()),
        (64, "Error parsing format: template: :1:2: executing \"\" at <.Foo>: can't evaluate field Foo in type *events.Message")
    );
    let o = b.run(&["events", "--until", "1", "--filter", "foo"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("bad format of filter (expected name=value)"),
        "{}",
        o.stderr
    );
    // Times docker accepts.
    for t in [
        "10m",
        "1h30m",
        "2026-01-02",
        "2026-01-02T10:00:00Z",
        "2026-01-02T10:00:00.5+01:00",
        "1700000000.5",
    ] {
        let o = b.run(&["events", "--since", t, "--until", "0s"]);
        assert_eq!(o.code, 0, "{t}: {}", o.stderr);
    }
}

/// Runs one CLI command: (exit code, stdout, stderr).
type Runner<'a> = dyn Fn(&[&str]) -> (i32, String, String) + 'a;

/// The same commands give the same `Type Action` sequence as docker's, and
/// the same default line once times and ids are masked.
/// Event lines with their times (each line's first word) and
/// 64-hex-digit ids masked.
fn mask_events(s: &str) -> String {
    s.lines()
        .map(|l| {
            let rest = l.split_once(' ').map_or("", |p| p.1);
            let mut out = String::from("TIME ");
            let mut run = String::new();
            for c in rest.chars().chain(std::iter::once(' ')) {
                if c.is_ascii_hexdigit() {
                    run.push(c);
                    continue;
                }
                out.push_str(if run.len() == 64 { "ID" } else { &run });
                run.clear();
                out.push(c);
            }
            out.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The events between `t0` and `t1` that pass `filters`, twice: as
/// `{{.Type}} {{.Action}}` lines and as docker's default lines, masked.
fn events_between(run: &Runner, t0: &str, t1: &str, filters: &[&str]) -> (String, String) {
    let mut a = vec![
        "events",
        "--since",
        t0,
        "--until",
        t1,
        "--format",
        "{{.Type}} {{.Action}}",
    ];
    a.extend_from_slice(filters);
    let (code, short, err) = run(&a);
    assert_eq!(code, 0, "{err}");
    let mut a = vec!["events", "--since", t0, "--until", t1];
    a.extend_from_slice(filters);
    let (code, full, err) = run(&a);
    assert_eq!(code, 0, "{err}");
    (short, mask_events(&full))
}

/// A [`Runner`] for the test's dockerd.
fn run_docker(docker: &berth_tests::dockerd::Dockerd, args: &[&str]) -> (i32, String, String) {
    let o = docker.docker(args).unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A user network's life: create, a container joining it at each start
/// and leaving it at each stop, destroy; the same events, attributes and
/// order as dockerd's.
#[test]
fn network_events_match_dockers() {
    let docker = berth_tests::dockerd::Dockerd::required();
    docker.load_default_image(DEFAULT_IMAGE).unwrap();
    let b = Berth::new().with_default_image();
    let seq = |run: &Runner| -> (String, String) {
        let t0 = now();
        for args in [
            &["network", "create", "parnet"][..],
            &[
                "run",
                "--rm",
                "--name",
                "parn1",
                "--network",
                "parnet",
                DEFAULT_IMAGE,
                "true",
            ],
            &[
                "run",
                "-d",
                "--name",
                "parn2",
                "--network",
                "parnet",
                DEFAULT_IMAGE,
                "sleep",
                "100",
            ],
            &["kill", "parn2"],
            &["wait", "parn2"],
            &["rm", "parn2"],
            &["network", "rm", "parnet"],
        ] {
            let (code, _, err) = run(args);
            assert_eq!(code, 0, "{args:?}: {err}");
        }
        events_between(
            run,
            &t0,
            &now(),
            &["-f", "type=network", "-f", "type=container"],
        )
    };
    let d = seq(&|args| run_docker(&docker, args));
    let ours = seq(&|args| {
        let o = b.run(args);
        (o.code, o.stdout, o.stderr)
    });
    assert!(d.0.contains("network connect"), "docker: {}", d.0);
    assert_eq!(ours.0, d.0, "berth:\n{}\ndocker:\n{}", ours.0, d.0);
    assert_eq!(ours.1, d.1, "berth:\n{}\ndocker:\n{}", ours.1, d.1);
}

#[test]
fn events_match_dockers() {
    let docker = berth_tests::dockerd::Dockerd::required();
    docker.load_default_image(DEFAULT_IMAGE).unwrap();
    let b = Berth::new().with_default_image();
    let seq = |run: &Runner| -> (String, String) {
        let t0 = now();
        for args in [
            &["run", "--rm", "--name", "par", DEFAULT_IMAGE, "true"][..],
            &["run", "-d", "--name", "par2", DEFAULT_IMAGE, "sleep", "100"],
            &["exec", "par2", "sh", "-c", "exit 2"],
            &["pause", "par2"],
            &["unpause", "par2"],
            &["rename", "par2", "par3"],
            &["update", "--pids-limit", "100", "par3"],
            &["rename", "par3", "par2"],
            // (after the renames: docker 20.10 without a bridge fails to
            // rename a restarted container, "sandbox … not found")
            &["restart", "-t", "1", "par2"],
            // (an image of its own, so that `rmi` below deletes one)
            &["commit", "par2", "parimg:v1"],
            &["kill", "par2"],
            &["wait", "par2"],
            &["rm", "par2"],
            &["tag", DEFAULT_IMAGE, "partag:v1"],
            &["rmi", "partag:v1"],
            &["rmi", "parimg:v1"],
            &["volume", "create", "parvol"],
            &["volume", "rm", "parvol"],
        ] {
            let (code, _, err) = run(args);
            let want = if args[0] == "exec" { 2 } else { 0 };
            assert_eq!(code, want, "{args:?}: {err}");
        }
        events_between(
            run,
            &t0,
            &now(),
            &[
                "-f",
                "type=container",
                "-f",
                "type=image",
                "-f",
                "type=volume",
            ],
        )
    };
    let d = seq(&|args| run_docker(&docker, args));
    // dockerd logs `detach` when an attach ends by a cancelled context,
    // which for an attached `run` races the CLI's exit after it got the
    // exit code: some runs have the line after `die`, most do not. No
    // command here detaches, so it is not part of the comparison.
    let no_detach = |s: &str| -> String {
        let mut out = s
            .lines()
            .filter(|l| !l.split_whitespace().take(3).any(|w| w == "detach"))
            .collect::<Vec<_>>()
            .join("\n");
        if s.ends_with('\n') {
            out.push('\n');
        }
        out
    };
    let d = (no_detach(&d.0), no_detach(&d.1));
    let ours = seq(&|args| {
        let o = b.run(args);
        (o.code, o.stdout, o.stderr)
    });
    assert_eq!(ours.0, d.0, "berth:\n{}\ndocker:\n{}", ours.0, d.0);
    assert_eq!(ours.1, d.1, "berth:\n{}\ndocker:\n{}", ours.1, d.1);
}

/// Images arriving: `pull` (a tag, the same again, a digest), a `run`
/// that pulls, `load` and `import` log the same image events as
/// dockerd's: `pull` naming the reference asked for, `load` and `import`
/// the image id, an import's name as a `tag` first.
#[test]
fn image_arrival_events_match_dockers() {
    use berth_tests::registry::{sh, tools_missing, Registry};
    if let Some(r) = tools_missing() {
        return berth_tests::skip(&r);
    }
    let reg = Registry::start(false);
    let src = format!("oci-archive:{}", berth_tests::default_image().display());
    reg.seed(&src, "t/bb:v1", "");
    reg.seed(&src, "t/run:v2", "");
    let h = reg.host();
    let tagged = format!("{h}/t/bb:v1");
    let digested = format!("{h}/t/bb@{}", reg.digest("t/bb:v1"));
    let pulled_by_run = format!("{h}/t/run:v2");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    sh(&format!(
        "skopeo copy -q {src} docker-archive:{d}/img.tar:evload:v1 && \
         mkdir {d}/root && echo hi > {d}/root/f && tar -C {d}/root -cf {d}/root.tar ."
    ));
    let (archive, rootfs) = (format!("{d}/img.tar"), format!("{d}/root.tar"));
    let seq = |run: &Runner| -> (String, String) {
        let t0 = now();
        for args in [
            &["pull", "-q", &tagged][..],
            &["pull", "-q", &tagged],
            &["pull", "-q", &digested],
            &["run", "--rm", &pulled_by_run, "true"],
            &["load", "-q", "-i", &archive],
            &["import", &rootfs, "evimp:v1"],
        ] {
            let (code, _, err) = run(args);
            assert_eq!(code, 0, "{args:?}: {err}");
        }
        events_between(run, &t0, &now(), &["-f", "type=image"])
    };
    let docker = berth_tests::dockerd::Dockerd::required();
    let d = seq(&|args| run_docker(&docker, args));
    drop(docker);
    let b = Berth::new();
    let ours = seq(&|args| {
        let o = b.run(args);
        (o.code, o.stdout, o.stderr)
    });
    assert!(d.0.contains("image pull"), "docker: {}", d.0);
    assert_eq!(ours.0, d.0, "berth:\n{}\ndocker:\n{}", ours.0, d.0);
    assert_eq!(ours.1, d.1, "berth:\n{}\ndocker:\n{}", ours.1, d.1);
}

/// `push` and `save`, done from berth's host cache, log docker's image
/// events in the engine's log: `push` named by the reference pushed and
/// its repository, `save` by the image id, as dockerd logs them.
#[test]
fn push_and_save_events_match_dockers() {
    use berth_tests::registry::{tools_missing, Registry};
    if let Some(r) = tools_missing() {
        return berth_tests::skip(&r);
    }
    let reg = Registry::start(false);
    let src = format!("oci-archive:{}", berth_tests::default_image().display());
    reg.seed(&src, "t/src:v1", "");
    let h = reg.host();
    let (from, to) = (format!("{h}/t/src:v1"), format!("{h}/t/pushed:v2"));
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (
        dir.path().join("one.tar").display().to_string(),
        dir.path().join("two.tar").display().to_string(),
    );
    let seq = |run: &Runner| -> (String, String) {
        let (code, _, err) = run(&["pull", "-q", &from]);
        assert_eq!(code, 0, "{err}");
        let t0 = now();
        for args in [
            &["tag", &from, &to][..],
            &["push", &to],
            &["save", "-o", &one, &to],
            &["save", "-o", &two, &from, &to],
        ] {
            let (code, _, err) = run(args);
            assert_eq!(code, 0, "{args:?}: {err}");
        }
        events_between(run, &t0, &now(), &["-f", "type=image"])
    };
    let docker = berth_tests::dockerd::Dockerd::required();
    let d = seq(&|args| run_docker(&docker, args));
    drop(docker);
    let b = Berth::new();
    let ours = seq(&|args| {
        let o = b.run(args);
        (o.code, o.stdout, o.stderr)
    });
    assert!(d.0.contains("image push"), "docker: {}", d.0);
    assert_eq!(ours.0, d.0, "berth:\n{}\ndocker:\n{}", ours.0, d.0);
    assert_eq!(ours.1, d.1, "berth:\n{}\ndocker:\n{}", ours.1, d.1);
}

/// Whoever acts on a container's `start` event finds the container
/// running: the machine's port forwarder lists the running containers'
/// ports on each `start`, and after a machine restart it listed the
/// container still dead and never published its ports. The shim is held
/// right after it recorded the event (the fault-injection agent), so what
/// a client sees then is deterministic.
#[test]
fn a_start_event_comes_once_the_container_runs() {
    let b = Berth::new().with_default_image();
    // Every command with the fault-injection agent (a command with another
    // agent binary would restart the agent).
    b.kill_agent();
    let cmd = |args: &[&str]| {
        let mut c = b.command();
        c.env("BERTH_AGENT", berth_tests::fault_agent_bin())
            .args(args);
        c
    };
    let run = |args: &[&str]| {
        berth_tests::run_command(cmd(args), None, Duration::from_secs(120), &args.join(" "))
    };
    let t0 = now();
    let o = run(&["create", "--name", "held", DEFAULT_IMAGE, "sleep", "100"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let id = o.stdout.trim().to_string();
    let cdir = b.native_root().join("containers").join(&id);
    assert!(cdir.is_dir(), "{}", cdir.display());
    std::fs::write(cdir.join("fault-pause-after-start-event-once"), b"").unwrap();
    let mut child = cmd(&[
        "events",
        "--since",
        &t0,
        "--filter",
        "event=start",
        "--format",
        "{{.Actor.ID}}",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let rx = stdout_lines(&mut child);
    let start = {
        let c = cmd(&["start", "held"]);
        std::thread::spawn(move || {
            berth_tests::run_command(c, None, Duration::from_secs(120), "start held")
        })
    };
    let line = rx.recv_timeout(Duration::from_secs(60));
    // At once, while the shim is held after the event.
    let status = run(&["inspect", "-f", "{{.State.Status}}", "held"]);
    // SAFETY: kill(2) of the child this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    assert_eq!(line.as_deref(), Ok(id.as_str()), "no start event followed");
    assert_eq!(status.stdout, "running\n", "{}", status.stderr);
    let o = start.join().unwrap();
    assert_eq!((o.code, o.stdout.as_str()), (0, "held\n"), "{}", o.stderr);
    assert!(!cdir.join("fault-pause-after-start-event-once").exists());
    run(&["rm", "-f", "held"]);
}
