//! Shared folders and volumes in native placement: `-v`, `--mount`,
//! `--volumes-from`, image `VOLUME`s, copy-up and the `volume` verbs.
// Drives the Linux builds of berth and berth-agent (native placement).
#![cfg(target_os = "linux")]

use berth_tests::{wait_for, Berth, DEFAULT_IMAGE as IMG};
use std::path::Path;
use std::time::Duration;

fn volumes(b: &Berth) -> Vec<String> {
    let out = b.run(&["volume", "ls", "-q"]).ok().stdout;
    out.lines().map(String::from).collect()
}

#[test]
fn bind_mounts_share_files_both_ways_and_ro_is_enforced() {
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    std::fs::write(dir.path().join("a.txt"), "from host\n").unwrap();

    // Host → container, container → host.
    let out = b
        .run(&[
            "run",
            "--rm",
            "-v",
            &format!("{d}:/w"),
            IMG,
            "cat",
            "/w/a.txt",
        ])
        .ok();
    assert_eq!(out.stdout, "from host\n");
    b.run(&[
        "run",
        "--rm",
        "-v",
        &format!("{d}:/w"),
        IMG,
        "sh",
        "-c",
        "echo from container > /w/b.txt",
    ])
    .ok();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("b.txt")).unwrap(),
        "from container\n"
    );

    // A host edit shows in a running container.
    let id = b
        .run(&[
            "run",
            "-d",
            "--mount",
            &format!("type=bind,source={d},target=/w"),
            IMG,
            "sh",
            "-c",
            "while [ ! -e /w/go ]; do sleep 0.1; done; cat /w/go",
        ])
        .ok()
        .stdout
        .trim()
        .to_string();
    std::fs::write(dir.path().join("go"), "edited on the host\n").unwrap();
    assert_eq!(b.run(&["wait", &id]).ok().stdout.trim(), "0");
    assert_eq!(b.run(&["logs", &id]).ok().stdout, "edited on the host\n");
    let m = &b.inspect(&id)["Mounts"][0];
    assert_eq!(m["Type"], "bind", "{m}");
    assert_eq!(m["Source"], d.as_str());
    assert_eq!(m["Destination"], "/w");
    assert_eq!(m["RW"], true);
    assert_eq!(m["Propagation"], "rprivate");
    b.run(&["rm", &id]).ok();

    // :ro and readonly refuse writes with EROFS, and the host file stays.
    for flag in [
        vec!["-v".to_string(), format!("{d}:/w:ro")],
        vec![
            "--mount".to_string(),
            format!("type=bind,src={d},dst=/w,readonly"),
        ],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend(flag.iter().map(String::as_str));
        args.extend([IMG, "sh", "-c", "echo x > /w/a.txt"]);
        let out = b.run(&args);
        assert_ne!(out.code, 0, "{flag:?}: a read-only write succeeded");
        assert!(
            out.stderr.contains("Read-only file system"),
            "{flag:?}: {}",
            out.stderr
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.txt")).unwrap(),
        "from host\n"
    );

    // -v makes a missing host directory; --mount refuses it.
    let missing = format!("{d}/new/sub");
    b.run(&["run", "--rm", "-v", &format!("{missing}:/n"), IMG, "true"])
        .ok();
    assert!(Path::new(&missing).is_dir());
    let nowhere = format!("{d}/nowhere");
    let out = b.run(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,src={nowhere},dst=/n"),
        IMG,
        "true",
    ]);
    assert_eq!(out.code, 125, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("bind source path does not exist: {nowhere}")),
        "{}",
        out.stderr
    );
    assert!(!Path::new(&nowhere).exists());

    // A relative `./` host path is taken from the working directory.
    std::fs::create_dir(dir.path().join("rel")).unwrap();
    std::fs::write(dir.path().join("rel/r.txt"), "relative\n").unwrap();
    let mut cmd = b.command();
    cmd.current_dir(dir.path())
        .args(["run", "--rm", "-v", "./rel:/r", IMG, "cat", "/r/r.txt"]);
    let out = berth_tests::run_command(cmd, None, Duration::from_secs(600), "relative -v");
    assert_eq!(out.stdout, "relative\n", "{}", out.stderr);
}

#[test]
fn named_volumes_persist_are_shared_and_refuse_removal_in_use() {
    let b = Berth::new().with_default_image();
    assert_eq!(b.run(&["volume", "create", "data"]).ok().stdout, "data\n");
    b.run(&[
        "run",
        "--rm",
        "-v",
        "data:/d",
        IMG,
        "sh",
        "-c",
        "echo 1 > /d/f",
    ])
    .ok();
    // A volume named by a container is made on first use.
    b.run(&[
        "run", "--name", "keep", "-v", "auto:/a", IMG, "touch", "/a/x",
    ])
    .ok();
    assert_eq!(volumes(&b), vec!["auto", "data"]);
    // Named volumes survive `rm` and `rm -v`.
    b.run(&["rm", "-v", "keep"]).ok();
    assert_eq!(volumes(&b), vec!["auto", "data"]);
    let out = b
        .run(&["run", "--rm", "-v", "data:/d", IMG, "cat", "/d/f"])
        .ok();
    assert_eq!(out.stdout, "1\n");

    // Two containers write to one volume at the same time.
    for n in ["w1", "w2"] {
        b.run(&[
            "run",
            "-d",
            "--name",
            n,
            "-v",
            "data:/d",
            IMG,
            "sh",
            "-c",
            &format!("echo {n} >> /d/log; sleep 1000"),
        ])
        .ok();
    }
    wait_for("both writers", || {
        let out = b.run(&["exec", "w1", "cat", "/d/log"]);
        out.stdout.contains("w1") && out.stdout.contains("w2")
    });
    let info: serde_json::Value =
        serde_json::from_str(&b.run(&["volume", "inspect", "data"]).ok().stdout).unwrap();
    let mountpoint = info[0]["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(info[0]["Name"], "data");
    assert_eq!(info[0]["Driver"], "local");
    assert!(std::fs::read_to_string(Path::new(&mountpoint).join("log"))
        .unwrap()
        .contains("w2"));
    // cp into a running container writes where the container sees the
    // path: into the volume.
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), "copied in\n").unwrap();
    b.run(&["cp", src.path().to_str().unwrap(), "w1:/d/copied"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(Path::new(&mountpoint).join("copied")).unwrap(),
        "copied in\n"
    );
    let back = tempfile::tempdir().unwrap();
    b.run(&["cp", "w2:/d/copied", back.path().to_str().unwrap()])
        .ok();
    assert_eq!(
        std::fs::read_to_string(back.path().join("copied")).unwrap(),
        "copied in\n"
    );
    let m = &b.inspect("w1")["Mounts"][0];
    assert_eq!(m["Type"], "volume", "{m}");
    assert_eq!(m["Name"], "data");
    assert_eq!(m["Source"], mountpoint.as_str());

    let out = b.run(&["volume", "rm", "data"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("volume is in use"), "{}", out.stderr);
    b.run(&["rm", "-f", "w1", "w2"]).ok();
    assert_eq!(b.run(&["volume", "rm", "data"]).ok().stdout, "data\n");
    let out = b.run(&["volume", "inspect", "data"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("no such volume"), "{}", out.stderr);
    assert!(!Path::new(&mountpoint).exists());

    // Bad names and drivers are refused with docker's words.
    let out = b.run(&["volume", "create", "bad/name"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("includes invalid characters for a local volume name"),
        "{}",
        out.stderr
    );
    let out = b.run(&["run", "--rm", "-v", "x/y:/d", IMG, "true"]);
    assert_eq!(out.code, 125, "{}", out.stderr);
    assert!(out.stderr.contains("invalid characters"), "{}", out.stderr);
}

#[test]
fn anonymous_volumes_copy_up_volumes_from_and_prune() {
    let b = Berth::new().with_default_image();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {IMG}\nRUN mkdir /data && echo seed > /data/seed && chown 1000:1000 /data\nVOLUME /data\n"),
    )
    .unwrap();
    b.run(&["build", "-q", "-t", "withvol", ctx.path().to_str().unwrap()])
        .ok();

    // The image's VOLUME becomes an anonymous volume filled from the image.
    let out = b
        .run(&[
            "run",
            "--name",
            "c1",
            "withvol",
            "sh",
            "-c",
            "cat /data/seed; stat -c %u /data",
        ])
        .ok();
    assert_eq!(out.stdout, "seed\n1000\n");
    let anon = volumes(&b);
    assert_eq!(anon.len(), 1, "{anon:?}");
    assert_eq!(anon[0].len(), 64);
    let m = &b.inspect("c1")["Mounts"][0];
    assert_eq!(m["Destination"], "/data");
    assert_eq!(m["Name"], anon[0].as_str());
    // `rm` keeps it, `rm -v` removes it.
    b.run(&["rm", "-v", "c1"]).ok();
    assert!(volumes(&b).is_empty());
    // --rm removes anonymous volumes, `-v /path` and the image's.
    b.run(&[
        "run",
        "--rm",
        "-v",
        "/scratch",
        "withvol",
        "touch",
        "/scratch/x",
    ])
    .ok();
    assert!(volumes(&b).is_empty(), "{:?}", volumes(&b));

    // A volume over /etc gets the image's /etc, and the engine's
    // /etc/hosts, /etc/hostname and /etc/resolv.conf still sit on top of it
    // (docker mounts them after the volume; mounted before it, they were
    // hidden and `cat /etc/hosts` found only the image's file).
    let out = b
        .run(&[
            "run",
            "--rm",
            "--hostname",
            "etcvol-host",
            "-v",
            "etcvol:/etc",
            IMG,
            "sh",
            "-c",
            "grep -c etcvol-host /etc/hosts; cat /etc/hostname; test -s /etc/resolv.conf && echo resolv; grep -c '^root:' /etc/passwd",
        ])
        .ok();
    assert_eq!(out.stdout, "1\netcvol-host\nresolv\n1\n", "{}", out.stderr);
    b.run(&["volume", "rm", "etcvol"]).ok();

    // Copy-up into a new named volume; none with volume-nocopy.
    b.run(&["run", "--rm", "-v", "fresh:/data", "withvol", "true"])
        .ok();
    let out = b
        .run(&["run", "--rm", "-v", "fresh:/data", IMG, "cat", "/data/seed"])
        .ok();
    assert_eq!(out.stdout, "seed\n");
    let out = b
        .run(&[
            "run",
            "--rm",
            "--mount",
            "type=volume,src=nocp,dst=/data,volume-nocopy",
            "withvol",
            "ls",
            "-A",
            "/data",
        ])
        .ok();
    assert_eq!(out.stdout, "");

    // --volumes-from shares the other container's volumes; :ro limits.
    b.run(&[
        "run", "-d", "--name", "src", "-v", "fresh:/s", IMG, "sleep", "1000",
    ])
    .ok();
    let out = b
        .run(&[
            "run",
            "--rm",
            "--volumes-from",
            "src",
            IMG,
            "cat",
            "/s/seed",
        ])
        .ok();
    assert_eq!(out.stdout, "seed\n");
    let out = b.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "src:ro",
        IMG,
        "touch",
        "/s/new",
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );

    // --mount type=tmpfs.
    let out = b
        .run(&[
            "run",
            "--rm",
            "--mount",
            "type=tmpfs,dst=/t,tmpfs-size=1m",
            IMG,
            "sh",
            "-c",
            "grep ' /t ' /proc/mounts",
        ])
        .ok();
    assert!(out.stdout.contains("tmpfs /t tmpfs"), "{}", out.stdout);
    assert!(out.stdout.contains("size=1024k"), "{}", out.stdout);

    // prune: unused anonymous volumes only, all unused ones with -a.
    b.run(&["create", "--name", "holder", "-v", "/anon", IMG, "true"])
        .ok();
    b.run(&["rm", "holder"]).ok();
    let before = volumes(&b);
    assert_eq!(before.len(), 3, "{before:?}");
    let out = b.run(&["volume", "prune", "-f"]).ok();
    assert!(
        out.stdout.starts_with("Deleted Volumes:\n"),
        "{}",
        out.stdout
    );
    let after = volumes(&b);
    assert_eq!(after, vec!["fresh", "nocp"]);
    b.run(&["volume", "prune", "-a", "-f"]).ok();
    // fresh is still used by src.
    assert_eq!(volumes(&b), vec!["fresh"]);
    b.run(&["rm", "-f", "src"]).ok();
}

#[test]
fn sparse_files_pass_4_gib_on_binds_and_volumes() {
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let w = format!("{}:/w", dir.path().display());
    for target in [w.as_str(), "big:/w"] {
        let o = b
            .run(&[
                "run",
                "--rm",
                "-v",
                target,
                IMG,
                "sh",
                "-c",
                "dd if=/dev/zero of=/w/big bs=1 count=1 seek=5368709120 2>/dev/null && stat -c %s /w/big",
            ])
            .ok();
        assert_eq!(o.stdout, "5368709121\n", "{target}");
    }
    assert_eq!(
        std::fs::metadata(dir.path().join("big")).unwrap().len(),
        5_368_709_121
    );
}

/// The command may live in a mount: docker resolves it in the container's
/// view, binds and volumes included (the image's own file under a bind's
/// mount point is hidden). `exec` and PATH lookups see the same.
#[test]
fn commands_run_from_binds_and_volumes() {
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hello");
    std::fs::write(&script, "#!/bin/sh\necho hello from $0\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let t = format!("{}:/t", dir.path().display());
    let o = b.run(&["run", "--rm", "-v", &t, IMG, "/t/hello"]).ok();
    assert_eq!(o.stdout, "hello from /t/hello\n");
    let o = b
        .run(&["run", "--rm", "-v", &t, "-e", "PATH=/t:/bin", IMG, "hello"])
        .ok();
    assert_eq!(o.stdout, "hello from /t/hello\n");
    // A bind over /bin hides the image's sh: not found, as in docker.
    let o = b.run(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/bin", dir.path().display()),
        IMG,
        "/bin/sh",
    ]);
    assert_eq!(o.code, 127, "{}", o.stderr);
    // A volume, and exec into a running container.
    b.run(&[
        "run", "--rm", "-v", "tools:/v", "-v", &t, IMG, "cp", "/t/hello", "/v/hello",
    ])
    .ok();
    let name = "cmd-in-volume";
    b.run(&[
        "run", "-d", "--name", name, "-v", "tools:/v", IMG, "sleep", "300",
    ])
    .ok();
    let o = b.run(&["exec", name, "/v/hello"]).ok();
    assert_eq!(o.stdout, "hello from /v/hello\n");
    b.run(&["rm", "-f", name]).ok();
    // Still refused when it is not there.
    let o = b.run(&["run", "--rm", "-v", &t, IMG, "/t/missing"]);
    assert_eq!(o.code, 127);
    assert!(o.stderr.contains("/t/missing"), "{}", o.stderr);
}

/// `volume rm` racing a `run -d -v NAME:/d` (issue 18): the engine makes
/// the container's record and checks a volume's users under one lock, so
/// each round ends as docker's would: the volume removed first and the run
/// on a new, empty one; or the rm refused as in use by that container,
/// the data kept. Never a container whose volume folder is gone. The rm
/// starts a little later each round, sweeping the run's create.
#[test]
fn volume_rm_racing_a_starting_run_never_leaves_a_container_without_its_volume() {
    let b = Berth::new().with_default_image();
    let (mut removed, mut refused) = (0, 0);
    for round in 0..50 {
        let vol = format!("race{round}");
        let ctr = format!("racer{round}");
        b.run(&["volume", "create", &vol]).ok();
        let info: serde_json::Value =
            serde_json::from_str(&b.run(&["volume", "inspect", &vol]).ok().stdout).unwrap();
        let old = info[0]["Mountpoint"].as_str().unwrap().to_string();
        std::fs::write(Path::new(&old).join("kept"), "data\n").unwrap();
        let (run, rm) = std::thread::scope(|s| {
            let run = s.spawn(|| {
                b.run(&[
                    "run",
                    "-d",
                    "--name",
                    &ctr,
                    "-v",
                    &format!("{vol}:/d"),
                    IMG,
                    "sleep",
                    "600",
                ])
            });
            let rm = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(round % 25 * 2));
                b.run(&["volume", "rm", &vol])
            });
            (run.join().unwrap(), rm.join().unwrap())
        });
        // docker's run never fails here: it uses the volume or makes it anew.
        let run = run.ok();
        let id = run.stdout.trim().to_string();
        let info = b.run(&["volume", "inspect", &vol]);
        assert_eq!(
            info.code, 0,
            "round {round}: the container's volume is gone (rm: {} {})",
            rm.code, rm.stderr
        );
        let info: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
        let mountpoint = info[0]["Mountpoint"].as_str().unwrap().to_string();
        let m = &b.inspect(&id)["Mounts"][0];
        assert_eq!(m["Name"], vol.as_str(), "{m}");
        assert_eq!(m["Source"], mountpoint.as_str(), "{m}");
        assert!(Path::new(&mountpoint).is_dir(), "round {round}");
        // The container writes into the volume the host sees.
        b.run(&["exec", &ctr, "sh", "-c", "echo probe > /d/probe"])
            .ok();
        assert_eq!(
            std::fs::read_to_string(Path::new(&mountpoint).join("probe")).unwrap(),
            "probe\n",
            "round {round}"
        );
        let kept = Path::new(&mountpoint).join("kept").exists();
        if rm.code == 0 {
            assert_eq!(rm.stdout, format!("{vol}\n"));
            assert!(!kept, "round {round}: removed, yet the old data is there");
            removed += 1;
        } else {
            assert_eq!(rm.code, 1, "{}", rm.stderr);
            assert_eq!(
                rm.stderr,
                format!("Error response from daemon: remove {vol}: volume is in use - [{id}]\n"),
                "round {round}"
            );
            assert!(kept, "round {round}: refused, yet the data is lost");
            refused += 1;
        }
        b.run(&["rm", "-f", &ctr]).ok();
        b.run(&["volume", "rm", &vol]).ok();
    }
    eprintln!("volume rm vs run: {removed} removed first, {refused} refused as in use");
}
