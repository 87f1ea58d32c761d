//! Healthchecks in native placement, as docker 28 runs them: `--health-*`
//! flags and an image's `HEALTHCHECK`, starting → healthy → unhealthy,
//! retries, the start period, probe timeouts, `--no-healthcheck`, and how
//! `inspect`, `ps` (STATUS and `--filter health=`) and `events` show it.
//! Probes run every second; every wait polls with a generous deadline
//! rather than assuming how long a probe takes.
#![cfg(target_os = "linux")]

use berth_tests::{events_now as now, Berth, DEFAULT_IMAGE};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn health(b: &Berth, name: &str) -> Value {
    b.inspect(name)["State"]["Health"].clone()
}

/// Polls `inspect` until `f` holds for `State.Health` (5 minutes: probes
/// compete with the rest of the suite for the CPU).
#[track_caller]
fn wait_health(b: &Berth, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let h = health(b, name);
        if f(&h) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: timed out waiting for {what}; last State.Health: {h}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn status_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |h: &Value| h["Status"] == s
}

fn ps_status(b: &Berth, name: &str) -> String {
    let out = b
        .run(&["ps", "-a", "--format", "{{.Names}}\t{{.Status}}"])
        .ok()
        .stdout;
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}\t")).map(String::from))
        .unwrap_or_else(|| panic!("{name} not in ps -a: {out}"))
}

/// Names `ps -a --filter health=VALUE` lists, sorted.
fn ps_health(b: &Berth, value: &str) -> Vec<String> {
    let out = b
        .run(&[
            "ps",
            "-a",
            "--filter",
            &format!("health={value}"),
            "--format",
            "{{.Names}}",
        ])
        .ok()
        .stdout;
    let mut v: Vec<String> = out.lines().map(String::from).collect();
    v.sort();
    v
}

fn health_events(b: &Berth, since: &str) -> Vec<(String, String)> {
    let until = now();
    let out = b
        .run(&[
            "events",
            "--since",
            since,
            "--until",
            &until,
            "--filter",
            "event=health_status",
            "--format",
            "json",
        ])
        .ok()
        .stdout;
    out.lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).unwrap();
            (
                e["Actor"]["Attributes"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                e["Action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn run_d(b: &Berth, args: &[&str]) {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    let id = b.run(&a).ok().stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
}

#[test]
fn a_probe_goes_starting_healthy_unhealthy_in_inspect_ps_and_events() {
    let b = Berth::new().with_default_image();
    let t0 = now();
    // Healthy while /fail is absent.
    run_d(
        &b,
        &[
            "--name",
            "flip",
            "--health-cmd",
            "echo probing; test ! -e /fail",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            DEFAULT_IMAGE,
            "sleep",
            "600",
        ],
    );
    // An hour between probes: it stays `starting`.
    run_d(
        &b,
        &[
            "--name",
            "slow",
            "--health-cmd",
            "true",
            "--health-interval",
            "1h",
            DEFAULT_IMAGE,
            "sleep",
            "600",
        ],
    );
    run_d(&b, &["--name", "plain", DEFAULT_IMAGE, "sleep", "600"]);

    let slow = health(&b, "slow");
    assert_eq!(
        slow,
        json!({"Status": "starting", "FailingStreak": 0, "Log": []})
    );
    let st = ps_status(&b, "slow");
    assert!(
        st.starts_with("Up ") && st.ends_with(" (health: starting)"),
        "{st}"
    );
    assert!(ps_health(&b, "starting").contains(&"slow".to_string()));
    // No healthcheck: no State.Health, no Config.Healthcheck, `none`.
    let plain = b.inspect("plain");
    assert!(plain["State"].get("Health").is_none(), "{plain}");
    assert!(plain["Config"].get("Healthcheck").is_none(), "{plain}");
    assert_eq!(ps_health(&b, "none"), ["plain"]);
    assert!(!ps_status(&b, "plain").contains('('));

    let h = wait_health(&b, "flip", "healthy", status_is("healthy"));
    assert_eq!(h["FailingStreak"], 0);
    let log = h["Log"].as_array().unwrap();
    let last = log.last().unwrap();
    assert_eq!(last["ExitCode"], 0);
    assert_eq!(last["Output"], "probing\n");
    for k in ["Start", "End"] {
        let t = last[k].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{k}: {t}");
    }
    assert!(last["Start"].as_str() <= last["End"].as_str());
    let st = ps_status(&b, "flip");
    assert!(st.starts_with("Up ") && st.ends_with(" (healthy)"), "{st}");
    assert_eq!(ps_health(&b, "healthy"), ["flip"]);
    assert_eq!(
        b.inspect("flip")["Config"]["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "echo probing; test ! -e /fail"], "Interval": 1_000_000_000i64, "Retries": 2})
    );

    // The probe starts failing: unhealthy after two failures in a row.
    b.run(&["exec", "flip", "touch", "/fail"]).ok();
    let h = wait_health(&b, "flip", "unhealthy", status_is("unhealthy"));
    assert!(h["FailingStreak"].as_i64().unwrap() >= 2, "{h}");
    let log = h["Log"].as_array().unwrap();
    assert!(log.len() <= 5, "{h}");
    assert_eq!(log.last().unwrap()["ExitCode"], 1);
    let st = ps_status(&b, "flip");
    assert!(st.ends_with(" (unhealthy)"), "{st}");
    assert_eq!(ps_health(&b, "unhealthy"), ["flip"]);
    // Enough probes later the log holds docker's last five.
    let h = wait_health(&b, "flip", "a full log", |h| {
        h["FailingStreak"].as_i64().unwrap_or(0) >= 6
    });
    assert_eq!(h["Log"].as_array().unwrap().len(), 5, "{h}");

    let events = health_events(&b, &t0);
    let flip: Vec<&str> = events
        .iter()
        .filter(|(n, _)| n == "flip")
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(
        flip,
        ["health_status: healthy", "health_status: unhealthy"],
        "{events:?}"
    );
    assert!(!events.iter().any(|(n, _)| n == "slow" || n == "plain"));

    // Stopped: no more probes, and docker reports it unhealthy.
    b.run(&["stop", "-t", "1", "slow"]).ok();
    let h = health(&b, "slow");
    assert_eq!(h["Status"], "unhealthy", "{h}");
    assert!(ps_status(&b, "slow").starts_with("Exited"));
    b.run(&["rm", "-f", "flip", "slow", "plain"]).ok();
}

#[test]
fn retries_start_period_and_timeouts() {
    let b = Berth::new().with_default_image();
    // Failures inside the start period do not count while starting.
    run_d(
        &b,
        &[
            "--name",
            "warming",
            "--health-cmd",
            "exit 1",
            "--health-interval",
            "1s",
            "--health-start-interval",
            "1s",
            "--health-retries",
            "1",
            "--health-start-period",
            "1h",
            DEFAULT_IMAGE,
            "sleep",
            "600",
        ],
    );
    // Exit codes other than 0 and 1 fail as well; three retries.
    run_d(
        &b,
        &[
            "--name",
            "failing",
            "--health-cmd",
            "echo bad >&2; exit 3",
            "--health-interval",
            "1s",
            "--health-retries",
            "3",
            DEFAULT_IMAGE,
            "sleep",
            "600",
        ],
    );
    // A probe that outlives its timeout fails with docker's message.
    run_d(
        &b,
        &[
            "--name",
            "hung",
            "--health-cmd",
            "sleep 30",
            "--health-interval",
            "1s",
            "--health-timeout",
            "300ms",
            "--health-retries",
            "1",
            DEFAULT_IMAGE,
            "sleep",
            "600",
        ],
    );
    // Output past 4096 bytes is cut and marked.
    run_d(
        &b,
        &[
            "--name",
            "chatty",
            "--health-cmd",
            "head -c 5000 /dev/zero | tr '\\0' x",
            "--health-interval",
            "1s",
            DEFAULT_IMAGE,
            "sleep",
            "600",
        ],
    );

    let h = wait_health(&b, "warming", "three probes", |h| {
        h["Log"].as_array().is_some_and(|l| l.len() >= 3)
    });
    assert_eq!(h["Status"], "starting", "{h}");
    assert_eq!(h["FailingStreak"], 0, "{h}");

    let h = wait_health(&b, "failing", "unhealthy", status_is("unhealthy"));
    let log = h["Log"].as_array().unwrap();
    assert!(log.len() >= 3, "{h}");
    assert!(log
        .iter()
        .all(|r| r["ExitCode"] == 3 && r["Output"] == "bad\n"));

    let h = wait_health(&b, "hung", "unhealthy", status_is("unhealthy"));
    let r = &h["Log"][0];
    assert_eq!(r["ExitCode"], -1, "{h}");
    assert_eq!(r["Output"], "Health check exceeded timeout (300ms)", "{h}");

    let h = wait_health(&b, "chatty", "healthy", status_is("healthy"));
    let out = h["Log"][0]["Output"].as_str().unwrap();
    assert_eq!(out.len(), 4096 + 3);
    assert!(out.ends_with("xxx..."));

    let mut all = ps_health(&b, "unhealthy");
    all.sort();
    assert_eq!(all, ["failing", "hung"]);
    assert_eq!(ps_health(&b, "starting"), ["warming"]);
    b.run(&["rm", "-f", "warming", "failing", "hung", "chatty"])
        .ok();
}

#[test]
fn image_healthcheck_merges_with_flags_and_no_healthcheck_turns_it_off() {
    let b = Berth::new().with_default_image();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {DEFAULT_IMAGE}\nHEALTHCHECK --interval=1s --start-interval=1s --retries=4 CMD [\"true\"]\nCMD [\"sleep\", \"600\"]\n"
        ),
    )
    .unwrap();
    b.run(&["build", "-q", "-t", "checked", ctx.path().to_str().unwrap()])
        .ok();
    let out = b.run(&["image", "inspect", "checked"]).ok().stdout;
    let img: Value = serde_json::from_str(&out).unwrap();
    let image_hc = json!({"Test": ["CMD", "true"], "Interval": 1_000_000_000i64, "StartInterval": 1_000_000_000i64, "Retries": 4});
    assert_eq!(img[0]["Config"]["Healthcheck"], image_hc);

    run_d(&b, &["--name", "inherits", "checked"]);
    run_d(&b, &["--name", "tuned", "--health-retries", "9", "checked"]);
    run_d(&b, &["--name", "off", "--no-healthcheck", "checked"]);
    assert_eq!(b.inspect("inherits")["Config"]["Healthcheck"], image_hc);
    assert_eq!(
        b.inspect("tuned")["Config"]["Healthcheck"],
        json!({"Test": ["CMD", "true"], "Interval": 1_000_000_000i64, "StartInterval": 1_000_000_000i64, "Retries": 9})
    );
    let off = b.inspect("off");
    // docker's merge fills the unset fields from the image, NONE included.
    assert_eq!(
        off["Config"]["Healthcheck"],
        json!({"Test": ["NONE"], "Interval": 1_000_000_000i64, "StartInterval": 1_000_000_000i64, "Retries": 4})
    );
    assert!(off["State"].get("Health").is_none(), "{off}");
    wait_health(&b, "inherits", "healthy", status_is("healthy"));
    wait_health(&b, "tuned", "healthy", status_is("healthy"));
    assert_eq!(ps_health(&b, "none"), ["off"]);
    assert_eq!(ps_health(&b, "healthy"), ["inherits", "tuned"]);
    // `create` takes the same flags; nothing runs before start.
    b.run(&[
        "create",
        "--name",
        "made",
        "--health-cmd",
        "true",
        DEFAULT_IMAGE,
        "true",
    ])
    .ok();
    let made = b.inspect("made");
    assert!(made["State"].get("Health").is_none(), "{made}");
    assert_eq!(
        made["Config"]["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "true"]})
    );
    b.run(&["rm", "-f", "inherits", "tuned", "off", "made"])
        .ok();
}

#[test]
fn bad_health_flags_get_dockers_refusals() {
    let b = Berth::new();
    for (args, msg) in [
        (
            vec!["--no-healthcheck", "--health-cmd", "true"],
            "berth: --no-healthcheck conflicts with --health-* options.",
        ),
        (
            vec!["--health-interval=-1s"],
            "berth: --health-interval cannot be negative.",
        ),
        (
            vec!["--health-retries=-2"],
            "berth: --health-retries cannot be negative.",
        ),
        (
            vec!["--health-interval=5"],
            "invalid argument \"5\" for \"--health-interval\" flag: time: missing unit in duration \"5\"",
        ),
        (
            vec!["--health-retries=x"],
            "invalid argument \"x\" for \"--health-retries\" flag: strconv.ParseInt: parsing \"x\": invalid syntax",
        ),
    ] {
        for verb in ["run", "create"] {
            let mut a = vec![verb];
            a.extend(args.iter().copied());
            a.extend([DEFAULT_IMAGE, "true"]);
            let o = b.run(&a);
            assert_eq!(o.code, 125, "{a:?}: {}", o.stderr);
            assert_eq!(o.stderr.lines().next(), Some(msg), "{a:?}");
        }
    }
    // The engine's own check (an API client may send what the CLI
    // refuses): below docker's 1 ms minimum.
    let b = b.with_default_image();
    let o = b.run(&["run", "--health-interval", "10us", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("Interval in Healthcheck cannot be less than 1ms"),
        "{}",
        o.stderr
    );
    let o = b.run(&["ps", "--filter", "health=bogus"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stderr.trim(),
        "Error response from daemon: Unrecognised filter value for health: bogus"
    );
}
