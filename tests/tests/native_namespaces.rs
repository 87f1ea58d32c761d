//! `run`/`create`'s namespace and lifecycle flags (issue 20): `--pid`,
//! `--ipc`, `--uts`, `--cgroupns`, `--stop-timeout`, `--cidfile`,
//! `-a/--attach`, `--pull`, `--platform`, `--log-driver`: their effect,
//! `inspect`'s fields, and docker's errors for bad input. Runs in the
//! placement `BERTH_TEST_ISOLATION` names (native by default); the checks
//! against this machine's own namespaces run only natively (elsewhere
//! `host` is the VM's).
// Drives the Linux builds of berth and berth-agent (native placement, KVM).
#![cfg(target_os = "linux")]

use berth_tests::{Berth, DEFAULT_IMAGE};

fn native() -> bool {
    std::env::var("BERTH_TEST_ISOLATION").map_or(true, |i| i == "native")
}

fn detached(b: &Berth, args: &[&str]) -> String {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    b.run(&a).ok().stdout.trim().to_string()
}

/// `readlink /proc/self/ns/KIND` in a new container made with `flags`.
fn ns_of(b: &Berth, flags: &[&str], kind: &str) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(flags);
    let path = format!("/proc/self/ns/{kind}");
    a.extend_from_slice(&[DEFAULT_IMAGE, "readlink", &path]);
    b.run(&a).ok().stdout.trim().to_string()
}

fn this_machines_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn pid_host_and_container_modes() {
    let b = Berth::new().with_default_image();
    // --pid host: this test process is visible from the container.
    if native() {
        let me = std::process::id().to_string();
        let o = b
            .run(&[
                "run",
                "--rm",
                "--pid",
                "host",
                DEFAULT_IMAGE,
                "sh",
                "-c",
                &format!("test -d /proc/{me} && echo seen"),
            ])
            .ok();
        assert_eq!(o.stdout, "seen\n");
        assert_eq!(
            ns_of(&b, &["--pid", "host"], "pid"),
            this_machines_ns("pid")
        );
    }
    // A private namespace does not show it: PID 1 is the container's own.
    let o = b
        .run(&["run", "--rm", DEFAULT_IMAGE, "cat", "/proc/1/comm"])
        .ok();
    assert_eq!(o.stdout, "cat\n");
    // --pid container:X: X's processes, X's namespace.
    let id = detached(&b, &["--name", "pidhost", DEFAULT_IMAGE, "sleep", "300"]);
    let o = b
        .run(&[
            "run",
            "--rm",
            "--pid",
            "container:pidhost",
            DEFAULT_IMAGE,
            "cat",
            "/proc/1/cmdline",
        ])
        .ok();
    assert_eq!(o.stdout, "sleep\x00300\x00");
    let theirs = b
        .run(&["exec", "pidhost", "readlink", "/proc/self/ns/pid"])
        .ok()
        .stdout;
    assert_eq!(
        ns_of(&b, &["--pid", "container:pidhost"], "pid"),
        theirs.trim()
    );
    b.run(&[
        "create",
        "--name",
        "joiner",
        "--pid",
        "container:pidhost",
        DEFAULT_IMAGE,
    ])
    .ok();
    assert_eq!(
        b.inspect("joiner")["HostConfig"]["PidMode"],
        format!("container:{id}")
    );
    assert_eq!(b.inspect("pidhost")["HostConfig"]["PidMode"], "");
    // The other container must run when this one starts.
    b.run(&["create", "--name", "idle", DEFAULT_IMAGE, "true"])
        .ok();
    let idle = b.inspect("idle")["Id"].as_str().unwrap().to_string();
    let o = b.run(&[
        "run",
        "--rm",
        "--pid",
        "container:idle",
        DEFAULT_IMAGE,
        "true",
    ]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(
        o.stderr
            .contains(&format!("container {idle} is not running")),
        "{}",
        o.stderr
    );
    // docker's CLI refusals.
    for bad in ["foo", "container:", "private"] {
        let o = b.run(&["run", "--rm", "--pid", bad, DEFAULT_IMAGE, "true"]);
        assert_eq!(o.code, 125);
        assert_eq!(
            o.stderr,
            "berth: --pid: invalid PID mode.\nSee 'berth run --help'.\n"
        );
    }
    let o = b.run(&[
        "run",
        "--rm",
        "--pid",
        "container:ghost",
        DEFAULT_IMAGE,
        "true",
    ]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        "berth: Error response from daemon: No such container: ghost.\nSee 'berth run --help'.\n"
    );
    b.run(&["rm", "-f", "pidhost"]).ok();
}

#[test]
fn ipc_modes_share_or_separate_the_namespace() {
    let b = Berth::new().with_default_image();
    detached(
        &b,
        &[
            "--name",
            "donor",
            "--ipc",
            "shareable",
            "--shm-size",
            "32m",
            DEFAULT_IMAGE,
            "sleep",
            "300",
        ],
    );
    // Its own /dev/shm, of the size asked for.
    let df = b
        .run(&["exec", "donor", "df", "-k", "/dev/shm"])
        .ok()
        .stdout;
    assert!(df.contains(" 32768 "), "{df}");
    let donor_ns = b
        .run(&["exec", "donor", "readlink", "/proc/self/ns/ipc"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let joined = ns_of(&b, &["--ipc", "container:donor"], "ipc");
    assert_eq!(joined, donor_ns);
    // Its /dev/shm too: a file the donor makes there is seen.
    b.run(&["exec", "donor", "touch", "/dev/shm/marker"]).ok();
    let o = b
        .run(&[
            "run",
            "--rm",
            "--ipc",
            "container:donor",
            DEFAULT_IMAGE,
            "ls",
            "/dev/shm",
        ])
        .ok();
    assert_eq!(o.stdout, "marker\n");
    let private = ns_of(&b, &[], "ipc");
    assert_ne!(private, donor_ns);
    assert_ne!(ns_of(&b, &["--ipc", "private"], "ipc"), donor_ns);
    if native() {
        assert_eq!(
            ns_of(&b, &["--ipc", "host"], "ipc"),
            this_machines_ns("ipc")
        );
        assert_ne!(private, this_machines_ns("ipc"));
    }
    // none: a namespace of its own and no /dev/shm.
    let o = b
        .run(&[
            "run",
            "--rm",
            "--ipc",
            "none",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "grep -c ' /dev/shm ' /proc/mounts; true",
        ])
        .ok();
    assert_eq!(o.stdout, "0\n");
    // inspect: the mode, the donor by its full ID.
    let donor_id = b.inspect("donor")["Id"].as_str().unwrap().to_string();
    b.run(&[
        "create",
        "--name",
        "joiner",
        "--ipc",
        "container:donor",
        DEFAULT_IMAGE,
    ])
    .ok();
    assert_eq!(
        b.inspect("joiner")["HostConfig"]["IpcMode"],
        format!("container:{donor_id}")
    );
    assert_eq!(b.inspect("donor")["HostConfig"]["IpcMode"], "shareable");
    // A private donor is not shareable (docker's default-ipc-mode private).
    detached(&b, &["--name", "closed", DEFAULT_IMAGE, "sleep", "300"]);
    assert_eq!(b.inspect("closed")["HostConfig"]["IpcMode"], "private");
    let closed = b.inspect("closed")["Id"].as_str().unwrap().to_string();
    let o = b.run(&[
        "run",
        "--rm",
        "--ipc",
        "container:closed",
        DEFAULT_IMAGE,
        "true",
    ]);
    assert_eq!(o.code, 125);
    assert!(
        o.stderr.contains(&format!("can't join IPC of container {closed}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)")),
        "{}",
        o.stderr
    );
    // The daemon's refusals.
    let o = b.run(&["run", "--rm", "--ipc", "foo", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert!(
        o.stderr
            .starts_with("berth: Error response from daemon: Invalid IPC mode: foo."),
        "{}",
        o.stderr
    );
    let o = b.run(&[
        "run",
        "--rm",
        "--ipc",
        "container:ghost",
        DEFAULT_IMAGE,
        "true",
    ]);
    assert_eq!(o.code, 125);
    assert!(
        o.stderr.contains("No such container: ghost"),
        "{}",
        o.stderr
    );
    b.run(&["rm", "-f", "donor", "closed"]).ok();
}

#[test]
fn uts_and_cgroupns_modes() {
    let b = Berth::new().with_default_image();
    if native() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let o = b
            .run(&["run", "--rm", "--uts", "host", DEFAULT_IMAGE, "hostname"])
            .ok();
        assert_eq!(o.stdout, host);
        assert_eq!(
            ns_of(&b, &["--uts", "host"], "uts"),
            this_machines_ns("uts")
        );
        assert_eq!(
            ns_of(&b, &["--cgroupns", "host"], "cgroup"),
            this_machines_ns("cgroup")
        );
        assert_ne!(
            ns_of(&b, &["--cgroupns", "private"], "cgroup"),
            this_machines_ns("cgroup")
        );
    }
    let o = b
        .run(&["run", "--rm", "-h", "box", DEFAULT_IMAGE, "hostname"])
        .ok();
    assert_eq!(o.stdout, "box\n");
    let o = b.run(&[
        "run",
        "--rm",
        "--uts",
        "host",
        "-h",
        "box",
        DEFAULT_IMAGE,
        "true",
    ]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        "berth: Error response from daemon: conflicting options: hostname and the UTS mode.\nSee 'berth run --help'.\n"
    );
    b.run(&[
        "create",
        "--name",
        "utsc",
        "--uts",
        "host",
        "--cgroupns",
        "private",
        DEFAULT_IMAGE,
    ])
    .ok();
    let h = &b.inspect("utsc")["HostConfig"];
    assert_eq!(h["UTSMode"], "host");
    assert_eq!(h["CgroupnsMode"], "private");
    b.run(&["create", "--name", "plain", DEFAULT_IMAGE]).ok();
    assert_eq!(b.inspect("plain")["HostConfig"]["UTSMode"], "");
    for (flag, bad, msg) in [
        ("--uts", "private", "--uts: invalid UTS mode"),
        ("--cgroupns", "shared", "--cgroupns: invalid CGROUP mode"),
    ] {
        let o = b.run(&["create", flag, bad, DEFAULT_IMAGE]);
        assert_eq!(o.code, 125);
        assert_eq!(
            o.stderr,
            format!("berth: {msg}.\nSee 'berth create --help'.\n")
        );
    }
}

#[test]
fn stop_timeout_is_what_stop_waits_unless_given_t() {
    let b = Berth::new().with_default_image();
    // On SIGTERM the container takes 12 s to exit 7: past docker's default
    // 10 s, within the 60 s it is given.
    let script = "trap 'sleep 12; exit 7' TERM; while true; do sleep 1; done";
    detached(
        &b,
        &[
            "--name",
            "slow",
            "--stop-timeout",
            "60",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(b.inspect("slow")["Config"]["StopTimeout"], 60);
    b.run(&["stop", "slow"]).ok();
    assert_eq!(b.inspect("slow")["State"]["ExitCode"], 7);
    // `stop -t` still wins over it.
    b.run(&["start", "slow"]).ok();
    b.run(&["stop", "-t", "1", "slow"]).ok();
    assert_eq!(b.inspect("slow")["State"]["ExitCode"], 137);
    // Without the flag, docker's inspect has no StopTimeout.
    b.run(&["create", "--name", "plain", DEFAULT_IMAGE]).ok();
    assert!(b.inspect("plain")["Config"].get("StopTimeout").is_none());
    let o = b.run(&["run", "--stop-timeout", "soon", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        "invalid argument \"soon\" for \"--stop-timeout\" flag: strconv.ParseInt: parsing \"soon\": invalid syntax\nSee 'berth run --help'.\n"
    );
}

#[test]
fn cidfile_gets_the_id_and_an_existing_one_is_refused() {
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let cid = dir.path().join("cid");
    let cids = cid.to_str().unwrap();
    let o = b
        .run(&[
            "run",
            "--name",
            "cidc",
            "--cidfile",
            cids,
            DEFAULT_IMAGE,
            "true",
        ])
        .ok();
    assert_eq!(o.stdout, "");
    let id = b.inspect("cidc")["Id"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id);
    assert_eq!(b.inspect("cidc")["HostConfig"]["ContainerIDFile"], cids);
    let o = b.run(&["run", "--cidfile", cids, DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        format!("berth: container ID file found, make sure the other container isn't running or delete {cids}.\nSee 'berth run --help'.\n")
    );
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id, "left as it was");
    // create too; a create that fails leaves no file behind.
    let cid2 = dir.path().join("cid2");
    let o = b
        .run(&["create", "--cidfile", cid2.to_str().unwrap(), DEFAULT_IMAGE])
        .ok();
    assert_eq!(std::fs::read_to_string(&cid2).unwrap(), o.stdout.trim());
    let cid3 = dir.path().join("cid3");
    // --pull never: the default would try docker.io, which is offline.
    let o = b.run(&[
        "create",
        "--pull",
        "never",
        "--cidfile",
        cid3.to_str().unwrap(),
        "no-such-image:1",
    ]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(!cid3.exists());
    let nodir = dir.path().join("no/cid");
    let o = b.run(&[
        "run",
        "--cidfile",
        nodir.to_str().unwrap(),
        DEFAULT_IMAGE,
        "true",
    ]);
    assert_eq!(o.code, 127, "docker's code: {}", o.stderr);
    assert!(
        o.stderr.starts_with(&format!(
            "berth: failed to create the container ID file: open {}: no such file or directory.",
            nodir.display()
        )),
        "{}",
        o.stderr
    );
}

#[test]
fn attach_picks_the_streams() {
    let b = Berth::new().with_default_image();
    let script = "echo out; echo err >&2; exit 3";
    let o = b.run(&[
        "run",
        "--rm",
        "-a",
        "stdout",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (3, "out\n", "")
    );
    let o = b.run(&[
        "run",
        "--rm",
        "-a",
        "STDERR",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (3, "", "err\n")
    );
    let o = b.run(&[
        "run",
        "--rm",
        "-a",
        "stdout",
        "-a",
        "stderr",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (3, "out\n", "err\n")
    );
    let o = b.run(&["run", "--rm", "-a", "stdio", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        "invalid argument \"stdio\" for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR\nSee 'berth run --help'.\n"
    );
    let o = b.run(&["run", "-d", "-a", "stdout", DEFAULT_IMAGE, "true"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (1, "Conflicting options: -a and -d\n")
    );
}

#[test]
fn pull_never_and_platform() {
    let b = Berth::new().with_default_image();
    // The image is here: never is fine.
    let o = b
        .run(&[
            "run",
            "--rm",
            "--pull",
            "never",
            DEFAULT_IMAGE,
            "echo",
            "ok",
        ])
        .ok();
    assert_eq!(o.stdout, "ok\n");
    // Missing: docker's error, no "Unable to find" line, no pull.
    let o = b.run(&["run", "--rm", "--pull", "never", "nope:1", "true"]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        "berth: Error response from daemon: No such image: nope:1.\nSee 'berth run --help'.\n"
    );
    let o = b.run(&["run", "--pull", "sometimes", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert!(
        o.stderr.starts_with(
            "berth: invalid pull option: 'sometimes': must be one of \"always\", \"missing\" or \"never\""
        ),
        "{}",
        o.stderr
    );
    let o = b
        .run(&["run", "--rm", "--platform", "linux", DEFAULT_IMAGE, "true"])
        .ok();
    assert_eq!(o.code, 0);
    let o = b.run(&["create", "--platform", "foo", DEFAULT_IMAGE]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        "berth: error parsing specified platform: \"foo\": unknown operating system or architecture: invalid argument.\nSee 'berth create --help'.\n"
    );
    b.run(&[
        "create",
        "--name",
        "plat",
        "--platform",
        "linux",
        DEFAULT_IMAGE,
    ])
    .ok();
    assert_eq!(b.inspect("plat")["Platform"], "linux");
}

#[test]
fn log_driver_none_keeps_nothing_and_local_keeps_the_log() {
    let b = Berth::new().with_default_image();
    b.run(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        DEFAULT_IMAGE,
        "echo",
        "hi",
    ])
    .ok();
    assert_eq!(
        b.inspect("quiet")["HostConfig"]["LogConfig"]["Type"],
        "none"
    );
    let o = b.run(&["logs", "quiet"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.stderr,
        "Error response from daemon: configured logging driver does not support reading\n"
    );
    b.run(&[
        "run",
        "--name",
        "kept",
        "--log-driver",
        "local",
        DEFAULT_IMAGE,
        "echo",
        "hi",
    ])
    .ok();
    assert_eq!(
        b.inspect("kept")["HostConfig"]["LogConfig"]["Type"],
        "local"
    );
    assert_eq!(b.run(&["logs", "kept"]).ok().stdout, "hi\n");
    b.run(&["create", "--name", "plain", DEFAULT_IMAGE]).ok();
    assert_eq!(
        b.inspect("plain")["HostConfig"]["LogConfig"]["Type"],
        "json-file"
    );
    let o = b.run(&["run", "--log-driver", "syslog2", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        "berth: Error response from daemon: error looking up logging plugin syslog2: plugin \"syslog2\" not found.\nSee 'berth run --help'.\n"
    );
    let o = b.run(&[
        "run",
        "--log-driver",
        "none",
        "--log-opt",
        "max-size=1m",
        DEFAULT_IMAGE,
        "true",
    ]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        "berth: invalid logging opts for driver none.\nSee 'berth run --help'.\n"
    );
}

#[test]
fn pull_missing_and_always_fetch_from_a_registry() {
    use berth_tests::registry::{tools_missing, Registry};
    if let Some(r) = tools_missing() {
        return berth_tests::skip(&r);
    }
    let reg = Registry::start(false);
    let src = format!("oci-archive:{}", berth_tests::default_image().display());
    reg.seed(&src, "t/bb:v1", "");
    let image = format!("{}/t/bb:v1", reg.host());
    let b = Berth::new();
    let o = b.run(&["run", "--rm", "--pull", "never", &image, "true"]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        format!(
            "berth: Error response from daemon: No such image: {image}.\nSee 'berth run --help'.\n"
        )
    );
    // missing: docker's line, the pull (on stderr), then the run.
    let o = b
        .run(&["run", "--rm", "--pull", "missing", &image, "echo", "hi"])
        .ok();
    assert_eq!(o.stdout, "hi\n");
    assert!(
        o.stderr
            .starts_with(&format!("Unable to find image '{image}' locally\n")),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("Status: Downloaded newer image"),
        "{}",
        o.stderr
    );
    // Now present: missing pulls nothing, always asks the registry again.
    let o = b
        .run(&["run", "--rm", "--pull", "missing", &image, "echo", "again"])
        .ok();
    assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("again\n", ""));
    let o = b
        .run(&["create", "--pull", "always", "--name", "fresh", &image])
        .ok();
    assert!(
        o.stderr.contains("Status: Image is up to date"),
        "{}",
        o.stderr
    );
    assert_eq!(o.stdout.trim(), b.inspect("fresh")["Id"].as_str().unwrap());
    // always with a registry that lacks it: the pull's error, exit 125.
    let gone = format!("{}/t/none:v1", reg.host());
    let o = b.run(&["run", "--rm", "--pull", "always", &gone, "true"]);
    assert_eq!(o.code, 125, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "berth: Error response from daemon: manifest for {gone} not found"
        )),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.ends_with("\nSee 'berth run --help'.\n"),
        "{}",
        o.stderr
    );
}

/// No `--pull` is docker's `missing`: `run` and `create` pull an image
/// that is not here (docker's `Unable to find` line, the pull on stderr
/// without `pull`'s last line), then run it; `events` has docker's image
/// `pull` event. A pull the registry refuses prints only its error.
#[test]
fn run_and_create_pull_a_missing_image_by_default() {
    use berth_tests::registry::{tools_missing, Registry};
    if let Some(r) = tools_missing() {
        return berth_tests::skip(&r);
    }
    let reg = Registry::start(false);
    let src = format!("oci-archive:{}", berth_tests::default_image().display());
    reg.seed(&src, "t/bb:v1", "");
    reg.seed(&src, "t/cc:latest", "");
    let image = format!("{}/t/bb:v1", reg.host());
    let b = Berth::new();
    let t0 = berth_tests::events_now();
    let o = b.run(&["run", "--rm", &image, "echo", "hi"]).ok();
    assert_eq!(o.stdout, "hi\n");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines[0], format!("Unable to find image '{image}' locally"));
    assert_eq!(lines[1], "v1: Pulling from t/bb");
    assert!(lines[2].ends_with(": Pull complete"), "{}", o.stderr);
    assert!(lines[3].starts_with("Digest: sha256:"), "{}", o.stderr);
    assert_eq!(
        &lines[4..],
        [format!("Status: Downloaded newer image for {image}")],
        "{}",
        o.stderr
    );
    // create, with the image named without its tag: docker's line has it.
    let short = format!("{}/t/cc", reg.host());
    let o = b.run(&["create", "--name", "made", &short]).ok();
    assert!(
        o.stderr
            .starts_with(&format!("Unable to find image '{short}:latest' locally\n")),
        "{}",
        o.stderr
    );
    assert_eq!(o.stdout.trim(), b.inspect("made")["Id"].as_str().unwrap());
    let pulls = b
        .run(&[
            "events",
            "--since",
            &t0,
            "--until",
            &berth_tests::events_now(),
            "--filter",
            "event=pull",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}} {{.Status}}",
        ])
        .ok()
        .stdout;
    let h = reg.host();
    assert_eq!(
        pulls,
        format!("image pull {image} {h}/t/bb pull\nimage pull {short}:latest {h}/t/cc pull\n")
    );
    // A registry without the image: its error, no `Pulling from` line.
    let gone = format!("{}/t/none:v1", reg.host());
    let o = b.run(&["run", "--rm", &gone, "true"]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        format!(
            "Unable to find image '{gone}' locally\nberth: Error response from daemon: manifest for {gone} not found: manifest unknown: manifest unknown.\nSee 'berth run --help'.\n"
        )
    );
    // docker's create gives the pull's error as it is, exit 1.
    let o = b.run(&["create", &gone]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert_eq!(
        o.stderr,
        format!(
            "Unable to find image '{gone}' locally\nError response from daemon: manifest for {gone} not found: manifest unknown: manifest unknown\n"
        )
    );
}

/// docker 28 refuses a local image of another platform than `--platform`
/// names as "not found": `never` stops there, `missing` (the default)
/// pulls that platform first, and the same image from the registry is
/// refused the same way.
#[test]
fn platform_of_a_local_image_is_checked() {
    let b = Berth::new().with_default_image();
    let o = b.run(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--platform",
        "linux/arm64",
        DEFAULT_IMAGE,
        "true",
    ]);
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        format!("berth: Error response from daemon: image with reference {DEFAULT_IMAGE} was found but does not match the specified platform: wanted linux/arm64, actual: linux/amd64.\nSee 'berth run --help'.\n")
    );
    let o = b.run(&[
        "create",
        "--pull",
        "never",
        "--platform",
        "linux/arm64/v8",
        DEFAULT_IMAGE,
    ]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr
            .contains("wanted linux/arm64/v8, actual: linux/amd64"),
        "{}",
        o.stderr
    );
    // Its own platform, spelt three ways.
    for p in ["linux/amd64", "linux/x86_64", "linux"] {
        let o = b
            .run(&[
                "run",
                "--rm",
                "--pull",
                "never",
                "--platform",
                p,
                DEFAULT_IMAGE,
                "echo",
                p,
            ])
            .ok();
        assert_eq!(o.stdout, format!("{p}\n"));
    }
    use berth_tests::registry::{tools_missing, Registry};
    if let Some(r) = tools_missing() {
        return berth_tests::skip(&r);
    }
    let reg = Registry::start(false);
    let src = format!("oci-archive:{}", berth_tests::default_image().display());
    reg.seed(&src, "t/bb:v1", "");
    let image = format!("{}/t/bb:v1", reg.host());
    b.run(&["pull", "-q", &image]).ok();
    let o = b.run(&["run", "--rm", "--platform", "linux/arm64", &image, "true"]);
    assert_eq!(o.code, 125);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines[0], format!("Unable to find image '{image}' locally"));
    assert_eq!(lines[1], "v1: Pulling from t/bb");
    assert!(
        o.stderr.ends_with(&format!("berth: Error response from daemon: image with reference {image} was found but does not match the specified platform: wanted linux/arm64, actual: linux/amd64.\nSee 'berth run --help'.\n")),
        "{}",
        o.stderr
    );
}
