//! Diagnostics go through one logger: quiet by default, `BERTH_LOG` or
//! `--log-level` shows more, as `berth[LEVEL] target: message` lines on
//! stderr; the level reaches the programs berth starts (the native agent).
//! `berth machine status` is the cheap command: it reads the state dir and
//! talks to no engine.
// Drives the Linux builds of berth and berth-agent (native placement).
#![cfg(target_os = "linux")]

use berth_tests::{run_command, Berth, Out};

fn berth(b: &Berth, env: Option<&str>, args: &[&str]) -> Out {
    let mut c = b.command();
    if let Some(v) = env {
        c.env("BERTH_LOG", v);
    }
    c.args(args);
    run_command(c, None, b.timeout, &format!("berth {}", args.join(" ")))
}

fn log_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("berth[")).collect()
}

#[test]
fn quiet_by_default_and_debug_on_request() {
    let b = Berth::new();
    let quiet = berth(&b, None, &["machine", "status"]);
    assert_eq!(quiet.stdout, "stopped\n");
    assert_eq!(quiet.stderr, "", "a plain run logs nothing");

    let debug = berth(&b, Some("debug"), &["machine", "status"]);
    // Same result, same stdout: only stderr gains diagnostics.
    assert_eq!(
        (debug.code, debug.stdout.as_str()),
        (quiet.code, "stopped\n")
    );
    let lines = log_lines(&debug.stderr);
    assert_eq!(
        lines.len(),
        debug.stderr.lines().count(),
        "every stderr line is a log line:\n{}",
        debug.stderr
    );
    assert!(
        lines.iter().any(|l| l.starts_with("berth[DEBUG] berth: ")),
        "{}",
        debug.stderr
    );
    // The host library logs through the same logger.
    let home = format!(
        "berth[DEBUG] berth_host::env: BERTH_HOME={:?}",
        b.home.path().display().to_string()
    );
    assert!(lines.contains(&home.as_str()), "{}", debug.stderr);

    // A level below debug hides the debug lines again.
    let info = berth(&b, Some("info"), &["machine", "status"]);
    assert_eq!(info.stderr, "");
}

#[test]
fn the_flag_overrides_the_variable() {
    let b = Berth::new();
    let o = berth(
        &b,
        Some("error"),
        &["--log-level", "debug", "machine", "status"],
    );
    assert_eq!(o.stdout, "stopped\n");
    assert!(o.stderr.contains("berth[DEBUG] berth: "), "{}", o.stderr);
    // After the verb too (a global flag), any case.
    let o = berth(
        &b,
        Some("debug"),
        &["machine", "status", "--log-level=ERROR"],
    );
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("stopped\n", ""));
}

#[test]
fn a_bad_variable_is_one_warning_not_a_failure() {
    let b = Berth::new();
    let good = berth(&b, None, &["machine", "status"]);
    for bad in ["bogus", "warning", "debug,info", "\u{1F600}"] {
        let o = berth(&b, Some(bad), &["machine", "status"]);
        assert_eq!(
            (o.code, o.stdout.as_str()),
            (good.code, "stopped\n"),
            "{bad}"
        );
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{bad}: {}", o.stderr);
        assert!(
            lines[0].starts_with("berth[WARN] ")
                && lines[0].contains("BERTH_LOG")
                && lines[0].contains(&format!("{bad:?}")),
            "{bad}: {}",
            o.stderr
        );
    }
}

#[test]
fn a_bad_flag_is_a_usage_error() {
    let b = Berth::new();
    let o = berth(&b, None, &["--log-level", "bogus", "machine", "status"]);
    // Usage errors with a bad value exit as every other bad flag value
    // does (docker's 125; `--isolation bogus` below), with clap's message.
    let iso = berth(&b, None, &["--isolation", "bogus", "machine", "status"]);
    assert_eq!(o.code, iso.code, "{}", o.stderr);
    assert_eq!(o.code, 125);
    assert_eq!(o.stdout, "");
    assert!(
        o.stderr
            .starts_with("error: invalid value 'bogus' for '--log-level <LEVEL>'"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("error, warn, info, debug, trace"));
    // The flag's value is not taken for the verb in docker's usage hint.
    let o = berth(
        &b,
        None,
        &["--log-level", "debug", "machine", "status", "--bogus"],
    );
    assert!(
        o.stderr
            .ends_with("unknown flag: --bogus\nSee 'berth machine status --help'.\n"),
        "{}",
        o.stderr
    );
}

#[test]
fn the_native_agent_logs_at_the_level_berth_was_given() {
    let agent_log =
        |b: &Berth| std::fs::read_to_string(b.native_root().join("agent.log")).unwrap_or_default();
    let mut quiet = Berth::new();
    quiet.isolation = "native".into();
    berth(&quiet, None, &["ps", "-q"]).ok();
    assert!(quiet.agent_pid().is_some());
    assert!(
        !agent_log(&quiet).contains("berth["),
        "{}",
        agent_log(&quiet)
    );

    let mut chatty = Berth::new();
    chatty.isolation = "native".into();
    berth(&chatty, None, &["--log-level", "info", "ps", "-q"]).ok();
    let log = agent_log(&chatty);
    assert!(
        log.lines()
            .any(|l| l.starts_with("berth[INFO] berth_agent: berth-agent ")
                && l.contains(" serving ")),
        "agent.log:\n{log}"
    );
}
