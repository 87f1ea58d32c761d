//! The shared placement, the one users get by default: containers in the
//! machine VM. The native suite holds the breadth; this pass runs, in one
//! machine (one boot), what goes another way there:
//! - images reach the guest from the host cache (load, pull, build);
//! - build steps run as containers in the guest;
//! - registries are spoken to by the host CLI (push, pull, login, save);
//! - seed 003's compose project, on busybox: a built service and a plain
//!   one, bind-mounted shared folders, found by service name, published;
//! - a few `run` comparisons with docker (users, env, exit codes, a missing
//!   command, stdin, a created working directory), the sweep's masking;
//! - a named volume on the machine's data disk; a bind mount of a shared
//!   host folder (virtio-fs), read-write and read-only; an unshared one
//!   refused;
//! - docker's default seccomp profile, and `seccomp=unconfined`, in the
//!   guest kernel;
//! - a UDP echo through `-p …/udp` (the host forwarder's datagram flows
//!   over vsock): two host peers, each answered alone, and a datagram of
//!   the largest size.
//!
//! Why this subset: each container start in an emulated guest kernel costs
//! about 20 s on this project's 2-core kvm_pvm machines, and CI has 90
//! minutes for everything; this pass takes about 5 of them. vm_smoke covers
//! the container lifecycle in the machine; vm_clone the own-VM placement.
#![cfg(target_os = "linux")]

use berth_tests::dockerd::Dockerd;
use berth_tests::parity::differences;
use berth_tests::registry::{tools_missing, Registry, PASS, USER};
use berth_tests::seccomp_probe;
use berth_tests::{run_command, skip, timing, wait_for, Berth, Out, DEFAULT_IMAGE};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// `args` with `stdin`, in docker (`Some`) or berth.
fn run(docker: Option<&Dockerd>, b: &Berth, args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut c = match docker {
        Some(d) => d.command(),
        None => b.command(),
    };
    c.env("HOSTV", "hostval").args(args);
    run_command(c, stdin, b.timeout, &args.join(" "))
}

#[test]
fn machine_vm_runs_builds_and_talks_to_registries_like_native() {
    if !Path::new("/dev/kvm").exists() {
        return skip("/dev/kvm not available");
    }
    if !berth_tests::kernel_available() {
        return skip("no guest kernel built (kernel-config/build-kernel.sh)");
    }
    if let Some(r) = tools_missing() {
        return skip(&r);
    }
    let t = Instant::now();
    let docker = Dockerd::required();
    docker
        .load_default_image(&format!("{DEFAULT_IMAGE}:latest"))
        .unwrap_or_else(|e| panic!("docker load of the default image failed: {e}"));
    let mut b = Berth::new();
    b.isolation = "shared".into();
    b.timeout = std::time::Duration::from_secs(900);
    let b = b.with_default_image();
    timing("shared_placement", "machine booted, image loaded", t);

    // UDP through -p …/udp: an echo server in the container (a static C
    // helper, tests/probe/udp_echo.c, through the shared folder; busybox
    // has no UDP nc), reached from two host sockets through the machine's
    // port forwarder. Each peer gets its own answers; a datagram of the
    // largest size keeps its boundary both ways.
    if berth_tests::have("gcc") {
        let probes = tempfile::tempdir().unwrap();
        let echo = probes.path().join("udp_echo");
        let o = std::process::Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&echo)
            .arg(berth_tests::workspace().join("tests/probe/udp_echo.c"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        b.run(&[
            "run",
            "-d",
            "--name",
            "udpecho",
            "-p",
            &format!("127.0.0.1:{port}:9999/udp"),
            "-v",
            &format!("{}:/p:ro", probes.path().display()),
            DEFAULT_IMAGE,
            "/p/udp_echo",
            "9999",
        ])
        .ok();
        let out = b.run(&["port", "udpecho"]).ok().stdout;
        assert_eq!(out.trim(), format!("9999/udp -> 127.0.0.1:{port}"));
        wait_for("the UDP echo server in the machine", || {
            b.run(&["logs", "udpecho"]).stdout.contains("ready")
        });
        let to = SocketAddr::from(([127, 0, 0, 1], port));
        let peer = || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s
        };
        // Sends `msg` and reads answers until one is `want`: a retry's
        // earlier try may still be answered late (a flow's first datagram
        // waits for its stream to the guest).
        let answer = |s: &UdpSocket, msg: &[u8], want: &dyn Fn(&[u8]) -> bool| -> bool {
            let _ = s.send_to(msg, to);
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                assert_eq!(from, to, "the answer comes from the published port");
                if want(&buf[..n]) {
                    return true;
                }
            }
            false
        };
        let (a, c) = (peer(), peer());
        wait_for("a UDP echo through the published port", || {
            answer(&a, b"ping", &|r| r == b"echo:ping")
        });
        wait_for("a second peer's echo", || {
            answer(&c, b"pong", &|r| r == b"echo:pong")
        });
        let big = vec![b'u'; 65507 - 5];
        wait_for("the answer to a 65502-byte datagram", || {
            answer(&a, &big, &|r| {
                r.len() == 65507 && r.starts_with(b"echo:") && r[5..].iter().all(|&x| x == b'u')
            })
        });
        // Nothing for `a` was sent to `c`: all it has left are late
        // answers to its own tries.
        let mut buf = vec![0u8; 65536];
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        while let Ok((n, _)) = c.recv_from(&mut buf) {
            assert_eq!(&buf[..n], b"echo:pong", "c got an answer meant for a");
        }
        b.run(&["rm", "-f", "udpecho"]).ok();
        timing("shared_placement", "UDP echo through -p …/udp", t);
    } else {
        skip("gcc not installed (the UDP echo server is a static C program)");
    }

    // run, compared with docker.
    let cases: &[(&[&str], Option<&[u8]>)] = &[
        (&["run", "--rm", "-u", "nobody", DEFAULT_IMAGE, "id"], None),
        (
            &[
                "run",
                "--rm",
                "-e",
                "HOSTV",
                DEFAULT_IMAGE,
                "sh",
                "-c",
                "echo $HOSTV; exit 3",
            ],
            None,
        ),
        (&["run", "--rm", DEFAULT_IMAGE, "nosuchcmd"], None),
        (
            &["run", "--rm", "-i", DEFAULT_IMAGE, "cat"],
            Some(b"through stdin\n"),
        ),
        (
            &["run", "--rm", "-w", "/new/dir", DEFAULT_IMAGE, "pwd"],
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (args, stdin) in cases {
        let d = run(Some(&docker), &b, args, *stdin);
        let o = run(None, &b, args, *stdin);
        let diffs = differences(&d, &o);
        if !diffs.is_empty() {
            failures.push(format!("{args:?}:\n{}", diffs.join("\n")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    timing("shared_placement", "run compared with docker", t);

    // A named volume lives on the machine's data disk and outlives the
    // container. A bind mount of a host folder the machine shares (the
    // temp directory, by default) is read and written through virtio-fs,
    // and `:ro` holds; a folder outside the shares is refused.
    let shared = tempfile::tempdir().unwrap();
    let sd = shared.path().to_str().unwrap();
    std::fs::write(shared.path().join("a.txt"), "from the host\n").unwrap();
    let o = b
        .run(&[
            "run",
            "--rm",
            "-v",
            "data:/d",
            "-v",
            &format!("{sd}:/w"),
            "-v",
            &format!("{sd}:/r:ro"),
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "echo persisted > /d/f; cat /w/a.txt; echo from the guest > /w/b.txt; \
             chown 1234:5678 /w/b.txt; echo x > /r/c.txt 2>/dev/null || echo ro refused; \
             dd if=/dev/zero of=/w/big bs=1 count=1 seek=5368709120 2>/dev/null",
        ])
        .ok();
    assert_eq!(o.stdout, "from the host\nro refused\n");
    assert_eq!(
        std::fs::read_to_string(shared.path().join("b.txt")).unwrap(),
        "from the guest\n"
    );
    assert!(!shared.path().join("c.txt").exists());
    // A sparse file past 4 GiB, written through virtio-fs.
    assert_eq!(
        std::fs::metadata(shared.path().join("big")).unwrap().len(),
        5_368_709_121
    );
    // The container's chown is kept (in an xattr) for the next container;
    // the host file stays the user's.
    let o = b
        .run(&[
            "run",
            "--rm",
            "-v",
            "data:/d",
            "-v",
            &format!("{sd}:/w"),
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "cat /d/f; stat -c %u:%g /w/b.txt",
        ])
        .ok();
    assert_eq!(o.stdout, "persisted\n1234:5678\n");
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(shared.path().join("b.txt")).unwrap();
        // SAFETY: geteuid has no preconditions.
        assert_eq!(m.uid(), unsafe { libc::geteuid() });
    }
    assert_eq!(b.run(&["volume", "ls", "-q"]).ok().stdout, "data\n");
    let o = b.run(&["run", "--rm", "-v", "/etc:/h", DEFAULT_IMAGE, "true"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr
            .contains("not in a folder shared with the machine VM"),
        "{}",
        o.stderr
    );
    timing("shared_placement", "named volume, shared folder", t);

    // docker's default seccomp profile holds in the machine's kernel too:
    // the probe (tests/probe/seccomp_probe.c, see native_security.rs for
    // the breadth) reaches the container through the shared folder. Under
    // the default profile each call is refused by the filter (EPERM);
    // under seccomp=unconfined the calls reach the guest kernel, which
    // rejects their bad arguments (or lacks the call) with other errors.
    if seccomp_probe::build(shared.path()).is_some() {
        let answers = |flags: &[&str]| {
            let mount = format!("{sd}:/p:ro");
            let mut args = vec!["run", "--rm", "-v", &mount];
            args.extend_from_slice(flags);
            args.extend_from_slice(&[DEFAULT_IMAGE, "/p/seccomp_probe"]);
            seccomp_probe::answers(&b.run(&args).ok().stdout)
        };
        seccomp_probe::assert_default_profile(&answers(&[]), "");
        let m = answers(&["--security-opt", "seccomp=unconfined"]);
        for k in seccomp_probe::REJECTED_BY_THE_KERNEL {
            let got = m.get(*k).map(String::as_str);
            assert!(got.is_some() && got != Some("EPERM"), "{k}: {m:?}");
        }
        timing("shared_placement", "seccomp default and unconfined", t);
    } else {
        skip("gcc not installed (the seccomp probe is a static C program)");
    }

    // build: steps run in the guest; the result runs there too.
    let reg = Registry::start(false);
    let h = reg.host();
    let target = format!("{h}/shared/app:v1");
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("msg"), "built in the machine\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {DEFAULT_IMAGE}\nCOPY msg /msg\nRUN cat /msg > /copy\nCMD [\"cat\", \"/copy\"]\n"
        ),
    )
    .unwrap();
    b.run(&["build", "-t", &target, ctx.path().to_str().unwrap()])
        .ok();
    assert_eq!(
        b.run(&["run", "--rm", &target]).ok().stdout,
        "built in the machine\n"
    );
    timing("shared_placement", "build and run", t);

    // Seed 003's busybox stand-in (berth_tests::shop, natively in
    // native_seed003.rs): a compose project built from a Dockerfile,
    // bind-mounting shared host folders, its two services finding each
    // other by name on the project network and published on the host.
    let shop = tempfile::tempdir().unwrap();
    berth_tests::shop::run(&b, shop.path(), Duration::from_secs(300), &mut |s| {
        timing("shared_placement", &format!("compose: {s}"), t)
    });

    // push from the machine's engine, pull back into an empty cache.
    let o = b.run(&["push", &target]).ok();
    assert!(o.stdout.contains("v1: digest: sha256:"), "{}", o.stdout);
    let id = |b: &Berth| -> serde_json::Value {
        let out = b.run(&["image", "inspect", &target]).ok().stdout;
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["Id"].clone()
    };
    let built = id(&b);
    b.run(&["rmi", &target]).ok();
    let o = b.run(&["pull", &target]).ok();
    assert!(
        o.stdout.contains("Status: Downloaded newer image"),
        "{}",
        o.stdout
    );
    assert_eq!(id(&b), built);
    assert_eq!(
        b.run(&["run", "--rm", &target]).ok().stdout,
        "built in the machine\n"
    );
    timing("shared_placement", "push, rmi, pull, run", t);

    // save: a docker-loadable archive of what the machine holds.
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("app.tar");
    b.run(&["save", "-o", tar.to_str().unwrap(), &target]).ok();
    let o = docker
        .docker(&["load", "-i", tar.to_str().unwrap()])
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("Loaded image: {target}\n")
    );

    // login and logout against a TLS registry with basic auth.
    let secure = Registry::start(true);
    let sh = secure.host();
    let mut login = b.command();
    login
        .env("BERTH_REGISTRY_CA", secure.ca.as_ref().unwrap())
        .args(["login", "-u", USER, "--password-stdin", &sh]);
    let o = run_command(
        login,
        Some(format!("{PASS}\n").as_bytes()),
        b.timeout,
        "login",
    );
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "Login Succeeded\n"),
        "{}",
        o.stderr
    );
    let o = b.run(&["logout", &sh]).ok();
    assert_eq!(o.stdout, format!("Removing login credentials for {sh}\n"));
    timing("shared_placement", "save, login, logout", t);
}
