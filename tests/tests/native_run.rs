//! `berth run` in native placement: streams, exit codes, limits, identity.
// Drives the Linux builds of berth and berth-agent (native placement, KVM).
#![cfg(target_os = "linux")]

use berth_tests::{Berth, DEFAULT_IMAGE};

#[test]
fn stdout_stderr_and_exit_code_are_kept_apart() {
    let b = Berth::new().with_default_image();
    let o = b.run(&[
        "run",
        "--rm",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.code, 3, "stderr: {}", o.stderr);
    assert_eq!(o.stdout, "out\n");
    assert_eq!(o.stderr, "err\n");
    // --rm removed it.
    assert_eq!(b.run(&["ps", "-aq"]).ok().stdout, "");
}

#[test]
fn exit_codes_follow_docker() {
    let b = Berth::new().with_default_image();
    let o = b.run(&["run", "--rm", DEFAULT_IMAGE, "no-such-command"]);
    assert_eq!(o.code, 127, "{}", o.stderr);
    assert!(
        o.stderr.contains("executable file not found"),
        "{}",
        o.stderr
    );
    let o = b.run(&["run", "--rm", DEFAULT_IMAGE, "/etc/passwd"]);
    assert_eq!(o.code, 126, "{}", o.stderr);
    let o = b.run(&[
        "run",
        "--rm",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "kill -TERM $$; sleep 1; exit 0",
    ]);
    // PID 1 ignores signals it has no handler for, as in docker.
    assert_eq!(o.code, 0);
    let o = b.run(&[
        "run",
        "--rm",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "sleep 5 & kill -KILL $!; wait $!",
    ]);
    assert_eq!(o.code, 137);
    // A missing image is pulled, as docker's default `--pull missing`
    // does; from a registry that cannot give it, the pull's error.
    let o = b.run(&["run", "--rm", "no-such-image:v9", "true"]);
    assert_eq!(o.code, 125);
    assert!(
        o.stderr
            .starts_with("Unable to find image 'no-such-image:v9' locally\n"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("berth: Error response from daemon: ")
            && o.stderr.ends_with("See 'berth run --help'.\n"),
        "{}",
        o.stderr
    );
    let o = b.run(&["run", "--rm", "--pull", "never", "no-such-image:v9", "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("No such image"), "{}", o.stderr);
    let o = b.run(&["run", "--rm", "-m", "lots", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("invalid size"), "{}", o.stderr);
    assert_eq!(
        b.run(&["ps", "-aq"]).ok().stdout,
        "",
        "failed runs with --rm leave nothing"
    );
}

/// docker's flags end at the image (`exec`: at the container): every
/// word after it is the command's, even one that is a flag of `run`.
#[test]
fn words_after_the_image_belong_to_the_command() {
    let b = Berth::new().with_default_image();
    let words = [
        "-a", "-e", "-l", "-c", "x", "--help", "-d", "--rm", "--", "-it",
    ];
    let mut args = vec!["run", "--rm", DEFAULT_IMAGE, "echo"];
    args.extend_from_slice(&words);
    assert_eq!(b.run(&args).ok().stdout, format!("{}\n", words.join(" ")));
    // A flag of run as the command's first word.
    let o = b.run(&["run", "--rm", DEFAULT_IMAGE, "-a"]);
    assert_eq!(o.code, 127, "{}", o.stderr);
    assert!(o.stderr.contains(r#"exec: "-a""#), "{}", o.stderr);
    // Values before the image are still run's: -e's, -l's, -w's.
    let o = b
        .run(&[
            "run",
            "--rm",
            "-e",
            "A=1",
            "-lk=v",
            "-w/tmp",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "echo $A $(pwd) \"$@\"",
            "-l",
            "-e",
            "-w",
        ])
        .ok();
    assert_eq!(o.stdout, "1 /tmp -e -w\n");
    b.run(&["create", "--name", "cr", DEFAULT_IMAGE, "-l", "--name", "x"])
        .ok();
    assert_eq!(
        b.inspect("cr")["Config"]["Cmd"],
        serde_json::json!(["-l", "--name", "x"])
    );
    b.run(&["run", "-d", "--name", "ex", DEFAULT_IMAGE, "sleep", "100"])
        .ok();
    let o = b
        .run(&["exec", "ex", "echo", "-i", "-t", "-u", "nobody", "-d"])
        .ok();
    assert_eq!(o.stdout, "-i -t -u nobody -d\n");
    b.run(&["rm", "-f", "ex", "cr"]).ok();
}

#[test]
fn memory_limit_kills_with_137() {
    let b = Berth::new().with_default_image();
    let o = b.run(&[
        "run",
        "--rm",
        "-m",
        "32m",
        DEFAULT_IMAGE,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=100M",
        "count=1",
    ]);
    assert_eq!(o.code, 137, "stderr: {}", o.stderr);
    let o = b.run(&[
        "run",
        "--rm",
        "-m",
        "32m",
        DEFAULT_IMAGE,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=8M",
        "count=1",
    ]);
    assert_eq!(o.code, 0, "stderr: {}", o.stderr);
}

#[test]
fn pids_limit_and_cpus_are_applied() {
    let b = Berth::new().with_default_image();
    let o = b.run(&["run", "--rm", "--pids-limit", "5", "--cpus", "0.5", DEFAULT_IMAGE, "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max"]).ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], "5");
    assert!(lines[1].starts_with("50000"), "{}", o.stdout);
}

#[test]
fn command_is_pid1_and_hostname_is_the_short_id() {
    let b = Berth::new().with_default_image();
    let o = b
        .run(&[
            "run",
            "--rm",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "tr '\\0' ' ' </proc/1/cmdline; echo; ps -o pid,args | sed -n 2p; hostname",
        ])
        .ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines[0].starts_with("sh -c tr"), "{}", o.stdout);
    assert!(lines[1].trim_start().starts_with("1 sh -c"), "{}", o.stdout);
    assert_eq!(lines[2].len(), 12, "hostname is the short id: {}", o.stdout);
    let o = b
        .run(&["run", "--rm", "--name", "web-1", DEFAULT_IMAGE, "hostname"])
        .ok();
    // As docker: a name does not become the hostname.
    let host = o.stdout.trim_end();
    assert!(
        host.len() == 12 && host.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        o.stdout
    );
    let o = b
        .run(&[
            "run",
            "--rm",
            "--hostname",
            "box",
            DEFAULT_IMAGE,
            "cat",
            "/etc/hostname",
        ])
        .ok();
    assert_eq!(o.stdout, "box\n");
}

#[test]
fn env_workdir_user_entrypoint() {
    let b = Berth::new().with_default_image();
    let o = b
        .run(&[
            "run",
            "--rm",
            "-e",
            "A=1",
            "-e",
            "PATH=/bin",
            "-w",
            "/srv/app",
            "-u",
            "nobody",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "echo $A $PATH; pwd; id -u; id -g; echo $HOME",
        ])
        .ok();
    assert_eq!(o.stdout, "1 /bin\n/srv/app\n65534\n65534\n/home\n");
    let o = b
        .run(&["run", "--rm", "-u", "1234:5", DEFAULT_IMAGE, "id"])
        .ok();
    // As docker (20.10.24): the primary group is also a supplementary one.
    assert_eq!(o.stdout, "uid=1234 gid=5(tty) groups=5(tty)\n");
    let o = b.run(&["run", "--rm", "-u", "nosuchuser", DEFAULT_IMAGE, "id"]);
    assert_eq!(o.code, 125);
    assert!(
        o.stderr.contains("unable to find user nosuchuser"),
        "{}",
        o.stderr
    );
    let o = b
        .run(&[
            "run",
            "--rm",
            "--entrypoint",
            "echo",
            DEFAULT_IMAGE,
            "hello",
            "world",
        ])
        .ok();
    assert_eq!(o.stdout, "hello world\n");
    // The image's Cmd is ["sh"]: no command given runs it.
    let o = b.run_stdin(
        &["run", "--rm", "-i", DEFAULT_IMAGE],
        b"echo from-default-cmd\n",
    );
    assert_eq!(o.stdout, "from-default-cmd\n");
}

#[test]
fn stdin_is_forwarded_with_i_and_closed_without() {
    let b = Berth::new().with_default_image();
    let data: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let o = b.run_stdin(
        &[
            "run",
            "--rm",
            "-i",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "wc -l; echo done >&2",
        ],
        &data,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout.trim(), "200000");
    assert_eq!(o.stderr, "done\n");
    let o = b.run_stdin(&["run", "--rm", DEFAULT_IMAGE, "cat"], b"ignored");
    assert_eq!((o.code, o.stdout.as_str()), (0, ""));
}

#[test]
fn network_none_is_loopback_only() {
    let b = Berth::new().with_default_image();
    let o = b
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-ok",
        ])
        .ok();
    assert_eq!(o.stdout, "lo\nlo-ok\n");
}

#[test]
fn tty_gets_a_pty_and_window_size() {
    if !berth_tests::have("script") {
        return berth_tests::skip("util-linux script not installed");
    }
    let b = Berth::new().with_default_image();
    let cmd = format!(
        "stty rows 33 cols 101; BERTH_HOME={} BERTH_AGENT={} BERTH_ISOLATION={} {} run --rm -it {} sh -c 'tty; stty size; exit 4'",
        b.home.path().display(),
        berth_tests::agent_bin().display(),
        b.isolation,
        berth_tests::berth_bin().display(),
        DEFAULT_IMAGE
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("33 101"), "{text}");
}

#[test]
fn detached_ps_and_rm() {
    let b = Berth::new().with_default_image();
    let id = b
        .run(&[
            "run",
            "-d",
            "--name",
            "sleeper",
            "-l",
            "team=a",
            DEFAULT_IMAGE,
            "sleep",
            "60",
        ])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let ps = b.run(&["ps"]).ok().stdout;
    assert!(ps.starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        ps.contains(&id[..12])
            && ps.contains("sleeper")
            && ps.contains("\"sleep 60\"")
            && ps.contains("Up "),
        "{ps}"
    );
    let json = b.run(&["ps", "--format", "json"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(v["Names"], "sleeper");
    assert_eq!(v["State"], "running");
    // As docker: the image's labels and the ones given to run.
    assert_eq!(
        v["Labels"],
        "org.opencontainers.image.title=berth busybox,org.opencontainers.image.version=v1.35.0,team=a"
    );
    let o = b.run(&["run", "-d", "--name", "sleeper", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert!(o.stderr.contains("is already in use"), "{}", o.stderr);
    let o = b.run(&["rm", "sleeper"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("cannot remove a running container"),
        "{}",
        o.stderr
    );
    b.run(&["rm", "-f", &id[..8]]).ok();
    assert_eq!(b.run(&["ps", "-aq"]).ok().stdout, "");
    let o = b.run(&["rm", "nothing-here"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("No such container"), "{}", o.stderr);
}

#[test]
fn exited_container_keeps_status_and_upper_layer() {
    let b = Berth::new().with_default_image();
    let o = b.run(&[
        "run",
        "--name",
        "keeper",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "echo data > /kept; exit 9",
    ]);
    assert_eq!(o.code, 9);
    let ps = b.run(&["ps", "-a"]).ok().stdout;
    assert!(ps.contains("Exited (9)"), "{ps}");
    let inspect = b.run(&["inspect", "keeper"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v[0]["State"]["ExitCode"], 9);
    assert_eq!(v[0]["Name"], "/keeper");
    // The agent restarts and still knows the container.
    b.kill_agent();
    let ps = b.run(&["ps", "-a", "--format", "json"]).ok().stdout;
    assert!(ps.contains("\"Names\":\"keeper\""), "{ps}");
    b.run(&["rm", "keeper"]).ok();
}

#[test]
fn concurrent_runs() {
    let b = std::sync::Arc::new(Berth::new().with_default_image());
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let b = b.clone();
            std::thread::spawn(move || {
                b.run(&[
                    "run",
                    "--rm",
                    DEFAULT_IMAGE,
                    "sh",
                    "-c",
                    &format!("echo run-{i}; exit {i}"),
                ])
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let o = h.join().unwrap();
        assert_eq!(o.code, i as i32, "{}", o.stderr);
        assert_eq!(o.stdout, format!("run-{i}\n"));
    }
}
