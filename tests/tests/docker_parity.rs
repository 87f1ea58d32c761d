#![cfg(target_os = "linux")]
//! The same commands against the real docker (Debian docker.io, a private
//! dockerd started here) and berth (native placement): exit codes, output
//! shapes and error messages must match. Volatile parts (ids, times,
//! sizes) are masked before comparing.
// Drives the Linux builds of berth and berth-agent (native placement, KVM).
#![cfg(target_os = "linux")]

use berth_tests::dockerd::Dockerd;
use berth_tests::{have, skip, Berth, Out, DEFAULT_IMAGE};

/// Masks what legitimately differs between two engines: hex ids (12 hex
/// digits or more). Numbers are compared: exit codes, counts and sizes
/// must be docker's; a command whose output holds times or usage figures
/// is compared by its shape instead (see the callers).
fn mask(s: &str) -> String {
    berth_tests::parity::mask_hex_words(s, |n| n >= 12)
}

struct Pair {
    docker: Dockerd,
    berth: Berth,
    /// Compare with the newest docker CLI instead of Debian's 20.10.
    newest_cli: bool,
}

impl Pair {
    fn both(&self, args: &[&str]) -> (Out, Out) {
        let d: Out = if self.newest_cli {
            self.docker
                .newest_cli_command()
                .args(args)
                .output()
                .unwrap()
                .into()
        } else {
            self.docker.docker(args).unwrap().into()
        };
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

/// A private dockerd and a berth installation with the same image, or
/// None (and a skip marker) where docker.io is not installed. A dockerd
/// that is installed but does not start, or a failed `docker load`,
/// fails the test: a comparison must not vanish quietly.
fn pair() -> Option<Pair> {
    if !have("dockerd") || !have("skopeo") {
        skip("dockerd (docker.io) or skopeo not installed");
        return None;
    }
    let docker = Dockerd::required();
    if let Err(e) = docker.load_default_image(&format!("{DEFAULT_IMAGE}:latest")) {
        panic!("cannot load the image into dockerd: {e}");
    }
    Some(Pair {
        docker,
        berth: Berth::new().with_default_image(),
        newest_cli: false,
    })
}

#[test]
fn container_verbs_match_docker() {
    let Some(p) = pair() else { return };
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
    // Until both containers have written their two lines.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (d, b) = loop {
        let (d, b) = p.both(&["logs", "web"]);
        let done = |o: &Out| o.stdout == "hi\n" && o.stderr == "err\n";
        if (done(&d) && done(&b)) || std::time::Instant::now() > deadline {
            break (d, b);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!((d.code, d.stdout.as_str()), (b.code, b.stdout.as_str()));
    assert_eq!(d.stderr, b.stderr);
    assert_eq!(b.stderr, "err\n");
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
    // The columns' names; their widths follow the values, and the NET I/O
    // differs: the test's dockerd has no bridge (0B / 0B), berth's
    // container is on its bridge and counts its own first packets.
    assert_eq!(header(&d.stdout), header(&b.stdout));
    assert_eq!(header(&b.stdout).len(), 8, "{}", b.stdout);
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

#[test]
fn diff_matches_docker() {
    let Some(p) = pair() else { return };
    p.same(&[
        "run",
        "--name",
        "ch",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "touch /x; mkdir -p /tmp/a/b; echo hi > /tmp/a/b/f; rm /bin/ls; \
         echo me >> /etc/passwd; mkdir /new; ln -s /x /new/link; rm -r /home",
    ]);
    let (d, b) = p.both(&["diff", "ch"]);
    assert_eq!((d.code, b.code), (0, 0), "{}{}", d.stderr, b.stderr);
    // berth reports as dockerd's overlay2 driver does (the one Docker
    // Desktop uses): by name, a directory before what it holds.
    assert_eq!(
        b.stdout,
        "C /bin\nD /bin/ls\nC /etc/passwd\nD /home\nA /new\nA /new/link\n\
         C /tmp\nA /tmp/a\nA /tmp/a/b\nA /tmp/a/b/f\nA /x\n"
    );
    // The private dockerd runs the vfs driver: its list comes in no set
    // order, and it also marks a directory changed when only a file in it
    // was (`/etc`, for `/etc/passwd`). Otherwise the same.
    let mut want: Vec<&str> = b.stdout.lines().chain(["C /etc"]).collect();
    let mut got: Vec<&str> = d.stdout.lines().collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "docker diff: {}", d.stdout);
    // docker's `container VERB` and `image VERB` spellings.
    let (d2, b2) = p.both(&["container", "diff", "ch"]);
    assert_eq!((d2.code, b2.stdout.as_str()), (0, b.stdout.as_str()));
    p.same(&["container", "commit", "ch", "parity/diffed:1"]);
    p.same(&["image", "tag", "parity/diffed:1", "parity/diffed:2"]);
    // docker names the image and then its layer ("Deleted: sha256:…"
    // twice), as berth does.
    let (_, b2) = p.same(&["image", "rm", "parity/diffed:1", "parity/diffed:2"]);
    assert_eq!(
        b2.stdout
            .lines()
            .filter(|l| l.starts_with("Untagged:"))
            .count(),
        2,
        "{}",
        b2.stdout
    );
    assert_eq!(
        b2.stdout
            .lines()
            .filter(|l| l.starts_with("Deleted: sha256:"))
            .count(),
        2,
        "{}",
        b2.stdout
    );
    // Made, never started: nothing changed.
    p.same(&["create", "--name", "fresh", DEFAULT_IMAGE, "true"]);
    let (_, b) = p.same(&["diff", "fresh"]);
    assert_eq!(b.stdout, "");
    p.same_err(&["diff", "ghost"]);
    p.same(&["rm", "ch", "fresh"]);
}

/// stderr with what legitimately differs masked: the program name in
/// usage hints, docker's doubled slash in `lstat //path`.
fn err_text(s: &str) -> String {
    mask(
        &s.replace("'docker ", "'berth ")
            .replace("docker: ", "berth: ")
            .replace("lstat //", "lstat /"),
    )
}

impl Pair {
    /// Same exit code, stdout and whole stderr.
    #[track_caller]
    fn same_all(&self, args: &[&str]) {
        let (d, b) = self.same(args);
        assert_eq!(
            err_text(&d.stderr),
            err_text(&b.stderr),
            "{args:?}: stderr differs"
        );
    }

    /// `exec` in both, returning stdout (which must be equal).
    #[track_caller]
    fn exec_same(&self, container: &str, shell: &str) -> String {
        self.same(&["exec", container, "sh", "-c", shell]).1.stdout
    }
}

/// JSON type names, null apart (docker leaves many fields null).
fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// The keys of two inspect objects (and of their sections) match, and
/// so do the types of the values where both are set.
#[track_caller]
fn same_shape(d: &serde_json::Value, b: &serde_json::Value, path: &str) {
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(d), keys(b), "keys of {path}");
    for k in keys(d) {
        let (dv, bv) = (&d[&k], &b[&k]);
        if dv.is_null() || bv.is_null() {
            continue;
        }
        assert_eq!(
            json_type(dv),
            json_type(bv),
            "type of {path}.{k}: docker {dv}, berth {bv}"
        );
        if [
            "State",
            "Config",
            "HostConfig",
            "NetworkSettings",
            "LogConfig",
        ]
        .contains(&k.as_str())
        {
            same_shape(dv, bv, &format!("{path}.{k}"));
        }
    }
}

#[test]
fn inspect_update_and_start_match_docker() {
    let Some(p) = pair() else { return };
    p.same(&[
        "run",
        "-d",
        "--name",
        "insp",
        "-e",
        "A=1",
        "-l",
        "k=v",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        "--restart",
        "on-failure:3",
        "-w",
        "/tmp",
        "-u",
        "0",
        "--tmpfs",
        "/scratch:size=1m",
        DEFAULT_IMAGE,
        "sleep",
        "300",
    ]);
    let inspect = |args: &[&str]| -> (serde_json::Value, serde_json::Value) {
        let (d, b) = p.both(args);
        assert_eq!((d.code, b.code), (0, 0), "{args:?}: {}", b.stderr);
        let d: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
        let b: serde_json::Value = serde_json::from_str(&b.stdout).unwrap();
        (d[0].clone(), b[0].clone())
    };
    let (mut d, b) = inspect(&["inspect", "insp"]);
    // The reference dockerd runs with --bridge=none (it must not touch the
    // host's network), which docker reports as Config.NetworkDisabled;
    // berth's container is on its default bridge, as a stock docker's is.
    if let Some(c) = d["Config"].as_object_mut() {
        c.remove("NetworkDisabled");
    }
    same_shape(&d, &b, "");
    for ptr in [
        "/Path",
        "/Args",
        "/Name",
        "/RestartCount",
        "/Image",
        "/Platform",
        "/State/Status",
        "/State/Running",
        "/State/Paused",
        "/State/ExitCode",
        "/State/FinishedAt",
        "/Config/User",
        "/Config/Env",
        "/Config/Cmd",
        "/Config/Entrypoint",
        "/Config/Image",
        "/Config/WorkingDir",
        "/Config/Labels",
        "/Config/Tty",
        "/Config/OpenStdin",
        "/HostConfig/Memory",
        "/HostConfig/MemorySwap",
        "/HostConfig/NanoCpus",
        "/HostConfig/PidsLimit",
        "/HostConfig/RestartPolicy",
        "/HostConfig/AutoRemove",
        "/HostConfig/ReadonlyRootfs",
        "/HostConfig/Tmpfs",
        "/HostConfig/LogConfig",
        "/Mounts",
    ] {
        assert_eq!(d.pointer(ptr), b.pointer(ptr), "inspect {ptr}");
    }
    assert!(b["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(b["Id"].as_str().unwrap().len(), 64);

    // update: output, errors, and the limits in the running container.
    p.same_all(&["update", "--cpus", "1.5", "--pids-limit", "30", "insp"]);
    let quota =
        "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max";
    let out = p.exec_same("insp", quota);
    assert!(out.starts_with("150000") && out.contains("30\n"), "{out}");
    let (d, b) = inspect(&["inspect", "insp"]);
    for ptr in ["/HostConfig/NanoCpus", "/HostConfig/PidsLimit"] {
        assert_eq!(d.pointer(ptr), b.pointer(ptr), "inspect {ptr} after update");
    }
    for args in [
        &["update", "-m", "1k", "insp"][..],
        &["update", "--cpus", "-1", "insp"][..],
        &["update", "--cpus", "99", "insp"][..],
        &["update", "--cpus", "abc", "insp"][..],
        &["update", "--restart", "bogus", "insp"][..],
        &["update", "insp"][..],
        &["update", "--restart", "always", "insp"][..],
        &["update", "--pids-limit", "-1", "insp"][..],
    ] {
        p.same_all(args);
    }
    // Several containers, one unknown: the known one is still updated.
    let (d, b) = p.same(&["update", "--cpus", "1", "ghost", "insp"]);
    assert_eq!(err_text(&d.stderr), err_text(&b.stderr));

    // start: output and exit codes, attached or not, and its errors.
    p.same(&[
        "run",
        "--name",
        "once",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "echo ran; exit 3",
    ]);
    p.same_all(&["start", "once"]);
    p.same(&["wait", "once"]);
    let (_, b) = p.same(&["start", "-a", "once"]);
    assert_eq!((b.code, b.stdout.as_str()), (3, "ran\n"));
    p.same_all(&["start", "insp"]);
    p.same_all(&["start", "ghost"]);
    p.same_all(&["start", "-ai", "ghost"]);
    p.same_all(&["start", "insp", "ghost", "once", "nope"]);
    p.same(&["wait", "once"]);
    p.same(&["pause", "insp"]);
    let (d, b) = inspect(&["inspect", "insp"]);
    assert_eq!(d["State"]["Status"], b["State"]["Status"]);
    p.same_all(&["start", "insp"]);
    p.same(&["unpause", "insp"]);
    // start -a on a running container attaches to it (both at once, so
    // that neither container is done before its engine is asked).
    p.same(&[
        "run",
        "-d",
        "--name",
        "late",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "sleep 3; echo late; exit 5",
    ]);
    let (d, b) = std::thread::scope(|s| {
        let d = s.spawn(|| -> Out { p.docker.docker(&["start", "-a", "late"]).unwrap().into() });
        let b = p.berth.run(&["start", "-a", "late"]);
        (d.join().unwrap(), b)
    });
    assert_eq!((d.code, d.stdout.as_str()), (5, "late\n"), "{}", d.stderr);
    assert_eq!((b.code, b.stdout.as_str()), (5, "late\n"), "{}", b.stderr);

    // After a stop: exit state, and the errors of the other verbs.
    p.same(&["stop", "-t", "1", "insp"]);
    let (mut d, b) = inspect(&["inspect", "insp"]);
    // The reference dockerd runs with --bridge=none (it must not touch the
    // host's network), which docker reports as Config.NetworkDisabled;
    // berth's container is on its default bridge, as a stock docker's is.
    if let Some(c) = d["Config"].as_object_mut() {
        c.remove("NetworkDisabled");
    }
    same_shape(&d, &b, "");
    for ptr in [
        "/State/Status",
        "/State/Running",
        "/State/ExitCode",
        "/State/Pid",
    ] {
        assert_eq!(d.pointer(ptr), b.pointer(ptr), "stopped: inspect {ptr}");
    }
    assert_ne!(b["State"]["FinishedAt"], "0001-01-01T00:00:00Z");
    p.same_all(&["inspect", "ghost"]);
    p.same_all(&["kill", "ghost"]);
    p.same_all(&["kill", "insp"]);
    p.same_all(&["rm", "ghost"]);
    // Usage errors: the wording is the CLI library's, the exit codes are
    // docker's (1 for a missing argument, 125 for a bad flag).
    for args in [
        &["start"][..],
        &["logs"][..],
        &["update", "--bogus", "insp"][..],
        &["kill", "-s"][..],
        &["no-such-verb"][..],
    ] {
        let (d, b) = p.both(args);
        assert_eq!(d.code, b.code, "{args:?}: {}", b.stderr);
    }
}

/// (path relative to root, mode, kind, contents) of every entry below root.
fn tree(root: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(root: &std::path::Path, p: &std::path::Path, out: &mut Vec<String>) {
        let mut es: Vec<_> = std::fs::read_dir(p).unwrap().flatten().collect();
        es.sort_by_key(|e| e.file_name());
        for e in es {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                out.push(format!("{rel} -> {}", t.display()));
            } else if m.is_dir() {
                out.push(format!("{rel}/ {mode:o}"));
                walk(root, &e.path(), out);
            } else {
                let data = std::fs::read_to_string(e.path()).unwrap_or_default();
                out.push(format!("{rel} {mode:o} {data:?}"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn cp_matches_docker() {
    use std::os::unix::fs::PermissionsExt;
    let Some(p) = pair() else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
    std::fs::write(src.join("top.txt"), "top\n").unwrap();
    std::fs::write(src.join("sub/secret"), "s3cret").unwrap();
    std::fs::write(src.join("sub/deeper/run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&src.join("sub/secret"), 0o600);
    mode(&src.join("sub/deeper/run.sh"), 0o755);
    mode(&src.join("sub"), 0o750);
    std::os::unix::fs::symlink("top.txt", src.join("link")).unwrap();
    let s = src.display().to_string();
    let d = dir.path().display().to_string();

    p.same(&[
        "run",
        "-d",
        "--name",
        "files",
        DEFAULT_IMAGE,
        "sleep",
        "300",
    ]);
    // Into the container: into an existing directory, onto a new name, a
    // file onto a new name; nothing is printed.
    p.same_all(&["cp", &s, "files:/tmp"]);
    p.same_all(&["cp", &s, "files:/copied"]);
    p.same_all(&["cp", &s, "files:/made/"]);
    p.same_all(&["cp", &format!("{s}/top.txt"), "files:/etc/top.renamed"]);
    p.same_all(&["cp", &format!("{s}/."), "files:/contents"]);
    let listing = "cd / && for d in /tmp/tree /copied /made /contents; do find $d | sort | xargs stat -c '%n %a %F %s'; done; cat /etc/top.renamed";
    let out = p.exec_same("files", listing);
    assert!(
        out.contains("/tmp/tree/sub/secret 600 regular file 6\n")
            && out.contains("/copied/sub 750 directory")
            && out.contains("/made/link 777 symbolic link")
            && out.contains("/contents/top.txt 644")
            && out.ends_with("top\n"),
        "{out}"
    );
    // And back out: the same trees as the source, in both engines.
    for (engine, name) in [("docker", "d"), ("berth", "b")] {
        let out = dir.path().join(name);
        std::fs::create_dir(&out).unwrap();
        let o = out.display().to_string();
        let run = |args: &[&str]| -> Out {
            if engine == "docker" {
                p.docker.docker(args).unwrap().into()
            } else {
                p.berth.run(args)
            }
        };
        for args in [
            &["cp", "files:/tmp/tree", &o][..],
            &["cp", "files:/copied", &format!("{o}/renamed")][..],
            &["cp", "files:/contents/.", &format!("{o}/contents")][..],
            &["cp", "files:/etc/top.renamed", &format!("{o}/single")][..],
        ] {
            let r = run(args);
            assert_eq!(
                (r.code, r.stdout.as_str(), r.stderr.as_str()),
                (0, "", ""),
                "{engine} {args:?}"
            );
        }
    }
    for name in ["d", "b"] {
        let out = dir.path().join(name);
        assert_eq!(tree(&src), tree(&out.join("tree")), "{name}: tree");
        assert_eq!(tree(&src), tree(&out.join("renamed")), "{name}: renamed");
        assert_eq!(tree(&src), tree(&out.join("contents")), "{name}: contents");
        assert_eq!(
            std::fs::read_to_string(out.join("single")).unwrap(),
            "top\n"
        );
    }
    // A tar stream on stdout: the same entries and modes.
    let (dt, bt) = p.both(&["cp", "files:/tmp/tree", "-"]);
    assert_eq!((dt.code, bt.code), (0, 0), "{}", bt.stderr);
    let entries = |data: &str| -> Vec<String> {
        let mut ar = tar::Archive::new(data.as_bytes());
        let mut v: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                // (docker ends every directory's name with a slash, berth
                // only the top one's: both are valid tar.)
                format!(
                    "{} {:o} {:?}",
                    e.path()
                        .unwrap()
                        .display()
                        .to_string()
                        .trim_end_matches('/'),
                    h.mode().unwrap() & 0o7777,
                    h.entry_type()
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(entries(&dt.stdout), entries(&bt.stdout));
    // Errors: what is printed and the exit codes.
    let f = format!("{s}/top.txt");
    for args in [
        &["cp", "files:/nope", &d][..],
        &["cp", "ghost:/etc", &d][..],
        &["cp", "/nope", "files:/tmp"][..],
        &["cp", &s, "files:/nodir/x"][..],
        &["cp", &f, "ghost:/tmp"][..],
        &["cp", &f, "files:/tmp/tree/top.txt/"][..],
        &["cp", &f, "files:/nodir/"][..],
        &["cp", "files:/etc/passwd", &format!("{d}/nonexist/")][..],
        &["cp", "files:/etc/passwd", &format!("{d}/nonexist/x")][..],
    ] {
        p.same_all(args);
    }
}

#[test]
fn logs_follow_and_exec_tty_match_docker() {
    let Some(p) = pair() else { return };
    use std::io::{BufRead, BufReader};
    use std::time::Duration;
    // The container writes "one", then waits for /go (made by the test
    // once `logs -f` relayed "one"): a client that only printed at the end
    // would never show "one" before /go exists.
    p.same(&[
        "run",
        "-d",
        "--name",
        "talker",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "echo one; while [ ! -e /go ]; do sleep 0.05; done; echo two; echo err >&2; echo three",
    ]);
    // logs -f: lines arrive as the container writes them, and the command
    // ends with the container.
    let follow = |mut cmd: std::process::Command, exec: &dyn Fn()| -> (Vec<String>, String, i32) {
        let mut child = cmd
            .args(["logs", "-f", "talker"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let _ = tx.send(l.unwrap());
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(60));
        assert_eq!(first.as_deref(), Ok("one"), "logs -f did not stream");
        exec();
        let out = child.wait_with_output().unwrap();
        reader.join().unwrap();
        let mut lines = vec![first.unwrap()];
        lines.extend(rx.try_iter());
        (
            lines,
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    };
    let go = ["exec", "talker", "touch", "/go"];
    let (dl, de, dc) = follow(p.docker.command(), &|| {
        assert!(p.docker.docker(&go).unwrap().status.success());
    });
    let (bl, be, bc) = follow(p.berth.command(), &|| {
        p.berth.run(&go).ok();
    });
    assert_eq!(dl, ["one", "two", "three"]);
    assert_eq!(dl, bl);
    assert_eq!((de.as_str(), dc), ("err\n", 0));
    assert_eq!((be.as_str(), bc), (de.as_str(), dc));
    // logs -f of a stopped container prints everything and ends.
    p.same_all(&["logs", "-f", "talker"]);

    // exec -it under script: a pty of the size of the caller's terminal.
    if !have("script") {
        return skip("util-linux script not installed");
    }
    p.same(&[
        "run",
        "-d",
        "--name",
        "ptybox",
        DEFAULT_IMAGE,
        "sleep",
        "300",
    ]);
    let berth_cli = format!(
        "BERTH_HOME={} BERTH_AGENT={} BERTH_ISOLATION={} {}",
        p.berth.home.path().display(),
        berth_tests::agent_bin().display(),
        p.berth.isolation,
        berth_tests::berth_bin().display()
    );
    let under_script = |cli: &str| -> (Option<i32>, String) {
        let cmd = format!(
            // docker 20.10 sizes an exec's terminal only after it started:
            // give it a moment before asking.
            "stty rows 21 cols 77; {cli} exec -it ptybox sh -c 'tty; sleep 1; stty size; echo $TERM; test -t 0 && echo stdin-tty; exit 6'"
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // stdin stays open until the end: at EOF script writes a NUL to the
        // terminal, which upsets docker's exec.
        let stdin = child.stdin.take();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        let code = child.wait().unwrap().code();
        drop(stdin);
        (code, out)
    };
    let (dc, dout) = under_script(&p.docker.shell_command());
    let (bc, bout) = under_script(&berth_cli);
    assert_eq!(dc, Some(6), "{dout}");
    assert_eq!(bc, dc, "{bout}");
    assert!(
        dout.contains("/dev/pts/") && dout.contains("21 77"),
        "{dout}"
    );
    assert_eq!(mask(&dout), mask(&bout));
}

#[test]
fn volumes_match_docker() {
    let Some(mut p) = pair() else { return };
    // The volume verbs' wording changed after CLI 20.10; berth follows
    // the current CLI (28).
    p.newest_cli = true;
    p.same(&["volume", "create", "pv1"]);
    p.same(&["volume", "create", "--label", "team=a", "pv2"]);
    // Creating an existing volume returns it.
    p.same(&["volume", "create", "pv1"]);
    p.same_all(&["volume", "create", "bad/name"]);
    p.same_all(&["volume", "create", "-d", "nosuchdriver", "pv3"]);
    p.same_all(&["volume", "create", "-o", "bogus=1", "pv3"]);
    p.same(&["volume", "ls"]);
    p.same(&["volume", "ls", "-q"]);
    p.same(&["volume", "ls", "-q", "--filter", "label=team=a"]);
    p.same(&["volume", "ls", "-q", "--filter", "name=pv1"]);
    // Mountpoints differ (each engine's root); CLI 20.10 sends empty maps
    // where CLI 28 sends none, so `{}` and null count as equal.
    let (d, b) = p.both(&["volume", "inspect", "pv2"]);
    assert_eq!((d.code, b.code), (0, 0), "{}", b.stderr);
    let d: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_str(&b.stdout).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v[0].as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(keys(&d), keys(&b), "volume inspect keys");
    let empty_as_null = |v: &serde_json::Value| match v {
        serde_json::Value::Object(m) if m.is_empty() => serde_json::Value::Null,
        other => other.clone(),
    };
    for k in ["Driver", "Labels", "Name", "Options", "Scope"] {
        assert_eq!(
            empty_as_null(&d[0][k]),
            empty_as_null(&b[0][k]),
            "volume inspect {k}"
        );
    }
    p.same_all(&["volume", "inspect", "nope"]);

    // Mount flags and their refusals, laid out as CLI 20.10 lays out run
    // errors (as berth does everywhere).
    p.newest_cli = false;
    p.same(&[
        "run",
        "--rm",
        "-v",
        "pv1:/d",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "echo 1 > /d/f; cat /d/f",
    ]);
    p.same(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,source=pv1,target=/d,readonly",
        DEFAULT_IMAGE,
        "cat",
        "/d/f",
    ]);
    for bad in [
        &["run", "--rm", "-v", "/x:rw", DEFAULT_IMAGE, "true"][..],
        &["run", "--rm", "-v", "pv1:/d:bogus", DEFAULT_IMAGE, "true"][..],
        &["run", "--rm", "-v", "pv1:rel", DEFAULT_IMAGE, "true"][..],
        &["run", "--rm", "-v", "a:b:c:d", DEFAULT_IMAGE, "true"][..],
        &["run", "--rm", "-v", "x/y:/d", DEFAULT_IMAGE, "true"][..],
        &[
            "run",
            "--rm",
            "-v",
            "pv1:/d",
            "-v",
            "pv2:/d",
            DEFAULT_IMAGE,
            "true",
        ][..],
        &[
            "run",
            "--rm",
            "--mount",
            "type=bind,target=/d",
            DEFAULT_IMAGE,
            "true",
        ][..],
        &[
            "run",
            "--rm",
            "--mount",
            "type=bind,src=/nonexistent-dir,dst=/d",
            DEFAULT_IMAGE,
            "true",
        ][..],
        &[
            "run",
            "--rm",
            "--mount",
            "type=tmpfs,src=x,dst=/d",
            DEFAULT_IMAGE,
            "true",
        ][..],
        &[
            "run",
            "--rm",
            "--mount",
            "type=volume,src=pv1",
            DEFAULT_IMAGE,
            "true",
        ][..],
        &[
            "run",
            "--rm",
            "--mount",
            "type=volume,dst=/d,bind-propagation=shared",
            DEFAULT_IMAGE,
            "true",
        ][..],
        &[
            "run",
            "--rm",
            "--mount",
            "type=volume,dst=/d,foo=bar",
            DEFAULT_IMAGE,
            "true",
        ][..],
        &[
            "run",
            "--rm",
            "--mount",
            "type=nope,dst=/d",
            DEFAULT_IMAGE,
            "true",
        ][..],
        &[
            "run",
            "--rm",
            "--volumes-from",
            "ghost",
            DEFAULT_IMAGE,
            "true",
        ][..],
    ] {
        p.same_all(bad);
    }

    // In use: refused with the container's id; rm -v keeps named volumes.
    p.newest_cli = true;
    p.same(&[
        "create",
        "--name",
        "user1",
        "-v",
        "pv1:/d",
        "-v",
        "/anon",
        DEFAULT_IMAGE,
        "true",
    ]);
    p.same_all(&["volume", "rm", "pv1"]);
    p.same(&["rm", "-v", "user1"]);
    p.same(&["volume", "ls", "-q"]);
    p.same_all(&["volume", "rm", "pv1", "nope", "pv2"]);
    p.same(&["volume", "rm", "-f", "nope"]);
    p.same(&["volume", "ls"]);
    // Only unused anonymous volumes here, where docker 20.10's prune (all
    // unused volumes) and 23+'s (anonymous ones) agree.
    p.same(&[
        "create",
        "--name",
        "user2",
        "-v",
        "/anon",
        DEFAULT_IMAGE,
        "true",
    ]);
    p.same(&["rm", "user2"]);
    // A container already gone: exit 1, but 0 with -f (docker's CLI says
    // so on stderr and goes on; vm_chaos met it after a VMM kill).
    p.same(&["rm", "user2"]);
    p.same(&["rm", "-f", "user2"]);
    p.same(&["volume", "prune", "-f"]);
    p.same(&["volume", "ls", "-q"]);
}

#[test]
fn healthchecks_match_docker() {
    let Some(p) = pair() else { return };
    let inspect = |name: &str| -> (serde_json::Value, serde_json::Value) {
        let (d, b) = p.both(&["inspect", name]);
        assert_eq!((d.code, b.code), (0, 0), "{name}: {}", b.stderr);
        let d: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
        let b: serde_json::Value = serde_json::from_str(&b.stdout).unwrap();
        (d[0].clone(), b[0].clone())
    };
    for (name, flags) in [
        (
            "hc-ok",
            &["--health-cmd", "echo ok", "--health-interval", "1s"][..],
        ),
        (
            "hc-bad",
            &[
                "--health-cmd",
                "echo no >&2; exit 2",
                "--health-interval",
                "1s",
                "--health-retries",
                "2",
                "--health-timeout",
                "20s",
            ][..],
        ),
        ("hc-off", &["--no-healthcheck"][..]),
    ] {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[DEFAULT_IMAGE, "sleep", "300"]);
        p.same(&args);
    }
    // Both engines settle; no assumption about how long that takes.
    let settled = |name: &str, want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let (d, b) = inspect(name);
            if d["State"]["Health"]["Status"] == want && b["State"]["Health"]["Status"] == want {
                return (d, b);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: docker {} berth {}",
                d["State"]["Health"],
                b["State"]["Health"]
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    for (name, want, code, output) in [
        ("hc-ok", "healthy", 0, "ok\n"),
        ("hc-bad", "unhealthy", 2, "no\n"),
    ] {
        let (d, b) = settled(name, want);
        assert_eq!(
            d["Config"]["Healthcheck"], b["Config"]["Healthcheck"],
            "{name}"
        );
        same_shape(
            &d["State"]["Health"],
            &b["State"]["Health"],
            "/State/Health",
        );
        for h in [&d, &b] {
            let last = h["State"]["Health"]["Log"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .clone();
            assert_eq!(
                (last["ExitCode"].as_i64(), last["Output"].as_str()),
                (Some(code), Some(output)),
                "{name}"
            );
        }
        let (ds, bs) = p.both(&[
            "ps",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.Status}}",
        ]);
        let suffix = |s: &str| s.trim().rsplit_once(" (").map(|x| x.1.to_string());
        assert_eq!(suffix(&ds.stdout), suffix(&bs.stdout), "{name}");
    }
    let (d, b) = inspect("hc-off");
    assert_eq!(d["Config"]["Healthcheck"], b["Config"]["Healthcheck"]);
    assert_eq!(d["State"].get("Health"), b["State"].get("Health"));
    for f in ["healthy", "unhealthy", "starting"] {
        let (d, b) = p.both(&[
            "ps",
            "--filter",
            &format!("health={f}"),
            "--format",
            "{{.Names}}",
        ]);
        assert_eq!(d.stdout, b.stdout, "health={f}");
    }
    p.same_err(&["ps", "--filter", "health=bogus"]);
    p.same(&["rm", "-f", "hc-ok", "hc-bad", "hc-off"]);
}

#[test]
fn security_flags_match_docker() {
    let Some(p) = pair() else { return };
    let status = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status";
    // docker's default set and filter; --cap-drop ALL; no-new-privileges;
    // an added capability; seccomp=unconfined.
    for flags in [
        &[][..],
        &["--cap-drop", "ALL"][..],
        &["--security-opt", "no-new-privileges"][..],
        &["--security-opt", "no-new-privileges:false"][..],
        &[
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CAP_CHOWN",
            "--cap-add",
            "CAP_KILL",
        ][..],
        &["--cap-add", "CAP_NET_ADMIN", "--cap-drop", "CAP_CHOWN"][..],
        &["--security-opt", "seccomp=unconfined"][..],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[DEFAULT_IMAGE, "sh", "-c", status]);
        p.same(&args);
    }
    // chown without CAP_CHOWN fails in both.
    p.same(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "touch /f; chown 1:1 /f 2>/dev/null; echo $?",
    ]);
    // Refusals: the CLI's and the daemon's words, exit 125.
    for flags in [
        &["--cap-add", "CAP_FOO"][..],
        &["--cap-drop", "CAP_NOPE"][..],
        &["--security-opt", "foo"][..],
        &["--security-opt", "foo=bar"][..],
        &["--security-opt", "no-new-privileges=maybe"][..],
        &["--security-opt", "seccomp=/nonexistent/profile.json"][..],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[DEFAULT_IMAGE, "true"]);
        p.same_all(&args);
    }
    // inspect's HostConfig fields.
    p.same(&[
        "create",
        "--name",
        "sec",
        "--cap-add",
        "CAP_NET_ADMIN",
        "--cap-add",
        "CAP_SYS_TIME",
        "--cap-drop",
        "CAP_CHOWN",
        "--security-opt",
        "no-new-privileges",
        "--security-opt",
        "seccomp=unconfined",
        DEFAULT_IMAGE,
        "true",
    ]);
    p.same(&["create", "--name", "plain", DEFAULT_IMAGE, "true"]);
    p.same(&[
        "create",
        "--name",
        "priv",
        "--privileged",
        "--security-opt",
        "no-new-privileges:true",
        DEFAULT_IMAGE,
        "true",
    ]);
    for name in ["sec", "plain", "priv"] {
        let (d, b) = p.both(&["inspect", name]);
        assert_eq!((d.code, b.code), (0, 0), "{name}: {}", b.stderr);
        let d: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
        let b: serde_json::Value = serde_json::from_str(&b.stdout).unwrap();
        let mut fields = vec![
            "/HostConfig/CapAdd",
            "/HostConfig/CapDrop",
            "/HostConfig/Privileged",
            "/HostConfig/SecurityOpt",
        ];
        // Other containers' lists are each engine's own; a privileged
        // container has none.
        if name == "priv" {
            fields.extend(["/HostConfig/MaskedPaths", "/HostConfig/ReadonlyPaths"]);
        }
        for ptr in fields {
            assert_eq!(
                d[0].pointer(ptr),
                b[0].pointer(ptr),
                "{name}: inspect {ptr}"
            );
        }
    }
}

/// The resource and device flags (issue 20): what the container sees,
/// inspect's HostConfig fields, and the refusals (docker 28's CLI words,
/// the daemon's).
#[test]
fn resource_flags_match_docker() {
    let Some(mut p) = pair() else { return };
    let flags = [
        "--ulimit",
        "nofile=1024:2048",
        "--ulimit",
        "nproc=100",
        "--shm-size",
        "32m",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--sysctl",
        "kernel.shmmax=100000000",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--memory-reservation",
        "32m",
        "--device",
        "/dev/zero:/dev/myzero:r",
        "--group-add",
        "1234",
        "--group-add",
        "daemon",
    ];
    let inside = "ulimit -Sn; ulimit -Hn; ulimit -u; id -G; df -k /dev/shm | tail -1 | awk '{print $2}'; \
        cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax; \
        cat /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus \
        /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes /sys/fs/cgroup/memory/memory.soft_limit_in_bytes; \
        head -c 2 /dev/myzero | od -An -tx1; (echo x > /dev/myzero) 2>/dev/null; echo $?";
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(&flags);
    args.extend_from_slice(&[DEFAULT_IMAGE, "sh", "-c", inside]);
    p.same(&args);
    let mut args = vec!["create", "--name", "res"];
    args.extend_from_slice(&flags);
    args.extend_from_slice(&[DEFAULT_IMAGE, "true"]);
    p.same(&args);
    let (d, b) = p.both(&["inspect", "res"]);
    assert_eq!((d.code, b.code), (0, 0), "{}", b.stderr);
    let d: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_str(&b.stdout).unwrap();
    for field in [
        "Ulimits",
        "ShmSize",
        "Sysctls",
        "CpuShares",
        "CpusetCpus",
        "Memory",
        "MemorySwap",
        "MemoryReservation",
        "OomKillDisable",
        "Devices",
        "GroupAdd",
    ] {
        let ptr = format!("/HostConfig/{field}");
        assert_eq!(d[0].pointer(&ptr), b[0].pointer(&ptr), "inspect {ptr}");
    }
    p.newest_cli = true;
    for flags in [
        &["--ulimit", "bad"][..],
        &["--ulimit", "nofile=2:1"][..],
        &["--sysctl", "kernel.foo=1"][..],
        &["--shm-size", "x"][..],
        &["--cpu-shares", "x"][..],
        &["--memory-swap", "x"][..],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[DEFAULT_IMAGE, "true"]);
        // The newer CLI lays out its usage lines differently.
        p.same_err(&args);
    }
    // Refusals after the flags were read: the same words in both CLIs.
    p.newest_cli = false;
    for flags in [
        &["--device", "/dev/zero:/a:rwx"][..],
        &["--device", "/dev/zero:rel"][..],
        &["-m", "64m", "--memory-swap", "32m"][..],
        &["--memory-reservation", "1m"][..],
        &["-m", "16m", "--memory-reservation", "32m"][..],
        &["--device", "/nonexistent"][..],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[DEFAULT_IMAGE, "true"]);
        p.same_all(&args);
    }
}

#[test]
fn import_matches_docker() {
    let Some(p) = pair() else { return };
    // One tarball (berth's export of the default image) into both.
    p.berth
        .run(&["create", "--name", "exp", DEFAULT_IMAGE, "true"])
        .ok();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("rootfs.tar");
    let tar_s = tar.to_str().unwrap();
    p.berth.run(&["export", "-o", tar_s, "exp"]).ok();
    let (d, b) = p.same(&[
        "import",
        "-c",
        "CMD [\"echo\", \"hi\"]",
        "-c",
        "ENV A=1 B=$A",
        "-c",
        "EXPOSE 80",
        "-c",
        "WORKDIR rel",
        "-m",
        "parity",
        tar_s,
        "imp:1",
    ]);
    assert!(d.stdout.starts_with("sha256:") && b.stdout.starts_with("sha256:"));
    for f in [
        "{{.Comment}}",
        "{{json .Config.Cmd}}",
        "{{json .Config.Env}}",
        "{{json .Config.ExposedPorts}}",
        "{{.Config.WorkingDir}}",
        "{{json .RootFS.Layers}}",
        "{{.Os}}/{{.Architecture}}",
    ] {
        p.same(&["image", "inspect", "-f", f, "imp:1"]);
    }
    p.same(&["import", tar_s, "imp:2"]);
    p.same(&["image", "inspect", "-f", "{{.Comment}}", "imp:2"]);
    p.same(&["run", "--rm", "imp:1"]);
    // docker's errors.
    p.same_err(&["import", "/no/such/file.tar"]);
    p.same_err(&["import", "-c", "RUN true", tar_s]);
    p.same_err(&["import", "-c", "STOPSIGNAL 9", tar_s]);
    p.same_err(&["import", "--platform", "windows/amd64", tar_s]);
}

#[test]
fn system_df_matches_docker() {
    let Some(p) = pair() else { return };
    p.same(&["volume", "create", "dfv"]);
    p.same(&[
        "create",
        "--name",
        "dfc",
        "-v",
        "dfv:/data",
        DEFAULT_IMAGE,
        "true",
    ]);
    // Sizes as docker counts them: a writable layer with a file, a hard
    // link to it (counted once) and a symlink, and a volume whose size
    // shows the summary's precision (12,345 bytes: 12.35kB, not 12.3kB).
    p.same(&[
        "run",
        "--name",
        "dfw",
        "-v",
        "dfw-vol:/data",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /big && ln /big /big2 && ln -s /big /big3 \
         && head -c 12345 /dev/zero > /data/v",
    ]);
    let rw = |s: &str| s.split(" (virtual").next().unwrap_or("").trim().to_string();
    let (d, b) = p.both(&[
        "ps",
        "-a",
        "-s",
        "--filter",
        "name=dfw",
        "--format",
        "{{.Size}}",
    ]);
    assert_eq!(
        rw(&d.stdout),
        rw(&b.stdout),
        "docker: {}{}\nberth: {}{}",
        d.stdout,
        d.stderr,
        b.stdout,
        b.stderr
    );
    assert!(b.stdout.contains("100kB (virtual "), "{}", b.stdout);
    let (d, b) = p.both(&["ps", "-a", "-s", "--filter", "name=dfw"]);
    assert_eq!(header(&d.stdout), header(&b.stdout));
    let (d, b) = p.same(&[
        "system",
        "df",
        "--format",
        "{{.Type}}\t{{.Size}}\t{{.Reclaimable}}",
    ]);
    let rows = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("Containers") || l.starts_with("Local Volumes"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        rows(&d.stdout),
        rows(&b.stdout),
        "docker:\n{}\nberth:\n{}",
        d.stdout,
        b.stdout
    );
    let sizes = |s: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(s.trim()).unwrap();
        let mut out: Vec<String> = ["Containers", "Volumes"]
            .iter()
            .flat_map(|k| v[*k].as_array().cloned().unwrap_or_default())
            .map(|r| {
                format!(
                    "{}={}",
                    r["Names"].as_str().or(r["Name"].as_str()).unwrap_or(""),
                    r["Size"]
                )
            })
            .collect();
        out.sort();
        out
    };
    let (d, b) = p.both(&["system", "df", "-v", "--format", "{{json .}}"]);
    assert_eq!(sizes(&d.stdout), sizes(&b.stdout));
    drop(b);
    let (d, b) = p.same(&[
        "system",
        "df",
        "--format",
        "{{.Type}}\t{{.TotalCount}}\t{{.Active}}",
    ]);
    assert_eq!(d.stdout.lines().count(), 4, "{}", d.stdout);
    let (d, b2) = p.both(&["system", "df"]);
    assert_eq!(d.code, b2.code);
    assert_eq!(header(&d.stdout), header(&b2.stdout));
    let first_col = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split("  ").next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(first_col(&d.stdout), first_col(&b2.stdout));
    drop(b);
    // -v: the same sections, headers and rows (volatile cells aside).
    let (d, b) = p.both(&["system", "df", "-v"]);
    assert_eq!(d.code, b.code, "{}", b.stderr);
    let shape = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| {
                l.ends_with(':')
                    || l.starts_with("Build cache usage")
                    || l.chars().all(|c| c.is_ascii_uppercase() || c == ' ')
            })
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        shape(&d.stdout),
        shape(&b.stdout),
        "docker:\n{}\nberth:\n{}",
        d.stdout,
        b.stdout
    );
    for (name, col) in [("dfc", "NAMES"), ("dfv", "VOLUME NAME")] {
        assert!(
            b.stdout
                .lines()
                .any(|l| l.ends_with(name) || l.starts_with(name)),
            "{col}: {}",
            b.stdout
        );
    }
    let (d, b) = p.both(&["system", "df", "-v", "--format", "{{json .}}"]);
    let keys = |s: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(s.trim()).unwrap();
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&d.stdout), keys(&b.stdout));
}

/// The names of a tar archive's entries, sorted, without a leading `./`
/// or trailing `/`.
fn tar_entries(p: &std::path::Path) -> Vec<String> {
    let mut a = tar::Archive::new(std::fs::File::open(p).unwrap());
    let mut names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let n = e.path().unwrap().display().to_string();
            n.trim_start_matches("./").trim_end_matches('/').to_string()
        })
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names
}

/// The keys of a JSON object printed by `{{json …}}`, sorted.
fn json_keys(s: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}"));
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// create, export, version, info, system prune, the masked paths, and a
/// set of `--format` templates on ps, images, inspect, volume ls, network
/// ls, stats, history, info and version, against dockerd.
#[test]
fn surface_verbs_and_templates_match_docker() {
    let Some(p) = pair() else { return };
    // create, then start -a: nothing runs until start; the exit code.
    p.same(&[
        "create",
        "--name",
        "fmt1",
        "-l",
        "tier=web",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "echo made | tee /made; exit 4",
    ]);
    p.same(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    let (_, b) = p.same(&["start", "-a", "fmt1"]);
    assert_eq!((b.code, b.stdout.as_str()), (4, "made\n"), "{}", b.stderr);
    p.same(&["create", "--name", "fmt2", DEFAULT_IMAGE, "true"]);
    p.same(&[
        "run",
        "-d",
        "--name",
        "fmtrun",
        DEFAULT_IMAGE,
        "sleep",
        "300",
    ]);
    p.same(&["volume", "create", "--label", "k=v", "fmtv"]);
    p.same(&["network", "create", "--label", "k=n", "fmtnet"]);

    // ps.
    for f in [
        "{{.Names}}",
        "{{.Names}}\t{{.Image}}\t{{.Command}}\t{{.State}}",
        // (not `{{.Labels}}`: docker joins them in Go's random map order)
        "{{.Label \"tier\"}}|{{.Names}}",
        "table {{.ID}}\t{{.Names}}",
        "table {{.Names}}\t{{.Image}}",
        "{{.Names}} {{.Mounts}} {{.Ports}} {{.Size}}",
    ] {
        p.same(&["ps", "-a", "--format", f]);
    }
    p.same(&[
        "ps",
        "-a",
        "--filter",
        "name=fmt2",
        "--format",
        "table {{.ID}}\t{{.Status}}",
    ]);
    p.same(&["container", "ls", "-q"]);
    let (d, b) = p.both(&[
        "ps",
        "-a",
        "--filter",
        "name=fmt2",
        "--format",
        "{{json .}}",
    ]);
    assert_eq!(json_keys(&d.stdout), json_keys(&b.stdout), "ps {{json .}}");
    // The literal `json` is docker 23's: compare with the newest CLI.
    let d: Out = p
        .docker
        .newest_cli_command()
        .args(["ps", "-a", "--filter", "name=fmt2", "--format", "json"])
        .output()
        .unwrap()
        .into();
    let b = p
        .berth
        .run(&["ps", "-a", "--filter", "name=fmt2", "--format", "json"]);
    assert_eq!((d.code, b.code), (0, 0), "{}", b.stderr);
    // (docker 28 adds the image's Platform, which 20.10's daemon, and
    // so its `{{json .}}` above, has not.)
    let mut dk = json_keys(&d.stdout);
    dk.retain(|k| k != "Platform");
    assert_eq!(dk, json_keys(&b.stdout), "ps --format json");
    // inspect.
    for f in [
        "{{.State.Running}} {{.State.Status}} {{.State.ExitCode}}",
        "{{.Name}} {{.Config.Image}} {{json .Config.Cmd}} {{.Config.Labels.tier}}",
        "{{index .Config.Labels \"tier\"}} {{.HostConfig.RestartPolicy.Name}}",
        "{{json .Config.Labels}}",
    ] {
        p.same(&["inspect", "--format", f, "fmt1"]);
        p.same(&["container", "inspect", "-f", f, "fmt1", "fmt2"]);
    }
    p.same(&["inspect", "-f", "{{.State.Running}}", "fmtrun"]);
    // images.
    for f in [
        "{{.Repository}}:{{.Tag}}",
        "table {{.Repository}}\t{{.Tag}}",
        "{{.Repository}} {{.Containers}}",
    ] {
        p.same(&["images", "--format", f, DEFAULT_IMAGE]);
        p.same(&["image", "ls", "--format", f, DEFAULT_IMAGE]);
    }
    let (d, b) = p.both(&["images", "--format", "{{json .}}", "berth/busybox"]);
    assert_eq!(
        json_keys(&d.stdout),
        json_keys(&b.stdout),
        "images {{json .}}"
    );
    // volume ls and network ls.
    for f in [
        "{{.Name}} {{.Driver}} {{.Label \"k\"}}",
        "table {{.Name}}\t{{.Driver}}",
    ] {
        p.same(&["volume", "ls", "--format", f]);
    }
    for f in [
        "{{.Name}} {{.Driver}} {{.Scope}} {{.Label \"k\"}}",
        "table {{.Name}}\t{{.Driver}}",
    ] {
        p.same(&["network", "ls", "--filter", "name=fmtnet", "--format", f]);
    }
    // history and stats templates (stats: the fields both count alike).
    for f in [
        "{{.ID}} {{.CreatedBy}} {{.Size}} {{.Comment}}",
        "table {{.ID}}\t{{.CreatedBy}}\t{{.Comment}}",
    ] {
        p.same(&["history", "--format", f, DEFAULT_IMAGE]);
    }
    p.same(&[
        "history",
        "-H=false",
        "--no-trunc",
        "--format",
        "{{.CreatedAt}}|{{.CreatedSince}}|{{.Size}}|{{.CreatedBy}}",
        DEFAULT_IMAGE,
    ]);
    p.same(&["history", "--format", "{{.Nope}}", DEFAULT_IMAGE]);
    for f in [
        "{{.Container}} {{.Name}} {{.PIDs}}",
        "table {{.Name}}\t{{.PIDs}}",
    ] {
        p.same(&["stats", "--no-stream", "--format", f, "fmtrun"]);
    }
    let (d, b) = p.both(&["stats", "--no-stream", "--format", "{{json .}}", "fmtrun"]);
    assert_eq!(
        json_keys(&d.stdout),
        json_keys(&b.stdout),
        "stats {{json .}}"
    );
    // images --filter. (The docker CLI prints an image's repositories in
    // Go's random map order: lines are compared sorted.)
    p.same(&["tag", DEFAULT_IMAGE, "fmtfilter/one:v1"]);
    let sorted = |s: &str| {
        let mut l: Vec<&str> = s.lines().collect();
        l.sort_unstable();
        l.join("\n")
    };
    for f in [
        &["-f", "reference=fmtfilter/*"][..],
        &["-f", "reference=berth/busybox"],
        &["-f", "reference=*"],
        &["-f", "dangling=false"],
        &["-f", "label=nope"],
        &["-f", "reference=fmtfilter/*", "-f", "reference=berth/*"],
    ] {
        let mut args = vec!["images", "--format", "{{.Repository}}:{{.Tag}}"];
        args.extend_from_slice(f);
        let (d, b) = p.both(&args);
        assert_eq!((d.code, b.code), (0, 0), "{args:?}: {}", b.stderr);
        assert_eq!(sorted(&d.stdout), sorted(&b.stdout), "{args:?}");
    }
    for f in ["bogus=1", "dangling=maybe", "nokey"] {
        p.same_err(&["images", "-f", f]);
    }
    p.same(&["images", "-f", "since=ghost:nope"]);
    p.same(&["rmi", "fmtfilter/one:v1"]);
    // info and system info.
    let f = "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}} \
             {{.OSType}} {{.KernelVersion}} {{.CgroupVersion}}";
    p.same(&["info", "--format", f]);
    p.same(&["system", "info", "--format", f]);
    let (d, b) = p.both(&["info", "--format", "{{json .Swarm.LocalNodeState}}"]);
    assert_eq!((d.code, d.stdout.as_str()), (b.code, b.stdout.as_str()));
    // version: docker's shape, and its templates.
    let (_, b) = p.same(&[
        "version",
        "--format",
        "{{.Client.Os}}/{{.Client.Arch}} {{.Server.Os}}/{{.Server.Arch}} {{.Server.KernelVersion}}",
    ]);
    assert!(b.stdout.starts_with("linux/"), "{}", b.stdout);
    for part in ["Client", "Server"] {
        let (d, b) = p.both(&["version", "--format", &format!("{{{{json .{part}}}}}")]);
        assert_eq!((d.code, b.code), (0, 0), "{}", b.stderr);
        let (dk, bk) = (json_keys(&d.stdout), json_keys(&b.stdout));
        let lacking: Vec<&String> = dk.iter().filter(|k| !bk.contains(k)).collect();
        assert!(
            lacking.is_empty(),
            "version .{part} lacks {lacking:?}: {}",
            b.stdout
        );
    }
    let (d, b) = p.both(&["version", "--format", "{{.Nope}}"]);
    assert_eq!(d.code, b.code, "{}{}", d.stderr, b.stderr);

    // export: the same entries as dockerd's.
    let dir = tempfile::tempdir().unwrap();
    let (dt, bt) = (dir.path().join("d.tar"), dir.path().join("b.tar"));
    let d: Out = p
        .docker
        .docker(&["export", "-o", dt.to_str().unwrap(), "fmt2"])
        .unwrap()
        .into();
    let b = p
        .berth
        .run(&["container", "export", "-o", bt.to_str().unwrap(), "fmt2"]);
    assert_eq!((d.code, b.code), (0, 0), "{}{}", d.stderr, b.stderr);
    // docker's export also holds its init layer (`.dockerenv`, the mount
    // points and files it makes: issue 20's coverage notes); the image's
    // files are the same.
    let init = [
        ".dockerenv",
        "dev/console",
        "dev/pts",
        "dev/shm",
        "etc/hosts",
        "etc/mtab",
        "etc/resolv.conf",
    ];
    let mut want = tar_entries(&dt);
    want.retain(|n| !init.contains(&n.as_str()));
    assert_eq!(want, tar_entries(&bt), "export entries");
    // (berth's message lacks docker's "Error response from daemon: ".)
    p.same(&["export", "ghost"]);

    // docker's masked and read-only paths.
    p.same(&[
        "run", "--rm", DEFAULT_IMAGE, "sh", "-c",
        "wc -c < /proc/kcore; ls /proc/acpi | wc -l; echo 1 > /proc/sys/vm/overcommit_memory; echo w=$?; \
         grep -E ' /proc/(bus|fs|irq|sys|sysrq-trigger) ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1 | sort",
    ]);

    // system prune: the confirmation, then what each engine removed.
    p.same(&["system", "prune"]);
    p.same(&["commit", "fmt1"]);
    p.same(&[
        "create",
        "--name",
        "fmtanon",
        "-v",
        "/anon",
        DEFAULT_IMAGE,
        "true",
    ]);
    p.same(&["rm", "fmtanon"]);
    p.same(&["volume", "rm", "fmtv"]);
    let sorted = |s: &str| -> Vec<String> {
        let mut l: Vec<String> = s
            .lines()
            .filter(|l| !l.starts_with("Total reclaimed space:"))
            .map(mask)
            .collect();
        l.sort();
        l
    };
    for args in [
        &["system", "prune", "-f"][..],
        &["system", "prune", "-a", "-f", "--volumes"],
    ] {
        let (d, b) = p.both(args);
        assert_eq!((d.code, b.code), (0, 0), "{args:?}: {}", b.stderr);
        assert_eq!(
            sorted(&d.stdout),
            sorted(&b.stdout),
            "{args:?}\ndocker:\n{}\nberth:\n{}",
            d.stdout,
            b.stdout
        );
        assert!(b.stdout.contains("Total reclaimed space: "), "{}", b.stdout);
    }
    p.same(&["ps", "-a", "--format", "{{.Names}}"]);
    p.same(&["network", "ls", "--filter", "name=fmtnet", "-q"]);
    p.same(&["volume", "ls", "-q"]);
    p.same(&["rm", "-f", "fmtrun"]);
}
