//! `run`/`create`'s resource and device flags (issue 20): `--ulimit`,
//! `--shm-size`, `--sysctl`, `--cpu-shares`, `--cpuset-cpus`,
//! `--memory-swap`, `--memory-reservation`, `--oom-kill-disable`,
//! `--device`, `--group-add`. Checked from inside the container (its init
//! process and an exec), in inspect, and refused as docker refuses them.
// Drives the Linux builds of berth and berth-agent (native placement, KVM).
#![cfg(target_os = "linux")]

use berth_tests::{Berth, DEFAULT_IMAGE};

/// `KEY=VALUE` lines of `out` as a map.
fn lines(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn limits_devices_and_groups_apply_inside() {
    let b = Berth::new().with_default_image();
    let mut args = vec![
        "run",
        "-d",
        "--name",
        "res",
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
        "--oom-kill-disable",
        "--device",
        "/dev/zero:/dev/myzero:r",
        "--group-add",
        "1234",
        "--group-add",
        "daemon",
    ];
    // A device outside docker's default list, read-only: the cgroup rule
    // is all that lets it open, and only for reading.
    let fuse = std::path::Path::new("/dev/fuse").exists();
    if fuse {
        args.extend_from_slice(&["--device", "/dev/fuse:/dev/myfuse:r"]);
    }
    args.extend_from_slice(&[DEFAULT_IMAGE, "sleep", "300"]);
    b.run(&args).ok();
    // Cgroup files under v1 and v2 names: whichever the host has.
    let script = r#"
        echo "pid1.nofile=$(grep 'Max open files' /proc/1/limits | awk '{print $4":"$5}')"
        echo "pid1.nproc=$(grep 'Max processes' /proc/1/limits | awk '{print $3":"$4}')"
        echo "pid1.groups=$(grep '^Groups:' /proc/1/status | cut -f2 | xargs)"
        echo "exec.nofile=$(ulimit -Sn):$(ulimit -Hn)"
        echo "exec.groups=$(id -G)"
        echo "shm=$(df -k /dev/shm | tail -1 | awk '{print $2}')"
        echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
        echo "shmmax=$(cat /proc/sys/kernel/shmmax)"
        c=/sys/fs/cgroup
        echo "shares=$(cat $c/cpu/cpu.shares 2>/dev/null || cat $c/cpu.weight)"
        echo "cpuset=$(cat $c/cpuset/cpuset.cpus 2>/dev/null || cat $c/cpuset.cpus)"
        echo "swap=$(cat $c/memory/memory.memsw.limit_in_bytes 2>/dev/null || cat $c/memory.swap.max)"
        echo "low=$(cat $c/memory/memory.soft_limit_in_bytes 2>/dev/null || cat $c/memory.low)"
        echo "oom=$(grep oom_kill_disable $c/memory/memory.oom_control 2>/dev/null | awk '{print $2}')"
        echo "myzero=$(head -c 3 /dev/myzero | od -An -tx1 | xargs)"
        (echo x > /dev/myzero) 2>/dev/null && echo "write=allowed" || echo "write=denied"
        if test -e /dev/myfuse; then
            (exec 3</dev/myfuse) 2>/dev/null && echo "fuse.read=allowed" || echo "fuse.read=denied"
            (exec 3>/dev/myfuse) 2>/dev/null && echo "fuse.write=allowed" || echo "fuse.write=denied"
        fi
    "#;
    let o = b.run(&["exec", "res", "sh", "-c", script]).ok();
    let m = lines(&o.stdout);
    let get = |k: &str| m.get(k).map(String::as_str).unwrap_or("");
    assert_eq!(get("pid1.nofile"), "1024:2048", "{}", o.stdout);
    assert_eq!(get("pid1.nproc"), "100:100", "{}", o.stdout);
    assert_eq!(get("exec.nofile"), "1024:2048", "{}", o.stdout);
    // busybox's daemon group is gid 1 (berth/busybox's /etc/group).
    for groups in [get("pid1.groups"), get("exec.groups")] {
        let g: Vec<&str> = groups.split_whitespace().collect();
        assert!(
            g.contains(&"1234") && g.contains(&"1") && g.contains(&"0"),
            "{}",
            o.stdout
        );
    }
    assert_eq!(get("shm"), "32768", "{}", o.stdout);
    assert_eq!(get("ip_forward"), "1", "{}", o.stdout);
    assert_eq!(get("shmmax"), "100000000", "{}", o.stdout);
    // v1: the shares as given; v2: the weight they convert to.
    assert!(matches!(get("shares"), "512" | "20"), "{}", o.stdout);
    assert_eq!(get("cpuset"), "0", "{}", o.stdout);
    // v1: memory plus swap; v2: the swap alone.
    assert!(
        matches!(get("swap"), "134217728" | "67108864"),
        "{}",
        o.stdout
    );
    assert_eq!(get("low"), "33554432", "{}", o.stdout);
    if std::path::Path::new("/sys/fs/cgroup/memory/memory.oom_control").exists() {
        assert_eq!(get("oom"), "1", "{}", o.stdout);
    }
    assert_eq!(get("myzero"), "00 00 00", "{}", o.stdout);
    // /dev/zero is among docker's default devices (rwm): writable anyway.
    assert_eq!(get("write"), "allowed", "{}", o.stdout);
    if fuse {
        assert_eq!(get("fuse.read"), "allowed", "{}", o.stdout);
        assert_eq!(get("fuse.write"), "denied", "{}", o.stdout);
    }

    let i = b.inspect("res");
    let h = &i["HostConfig"];
    assert_eq!(
        h["Ulimits"],
        serde_json::json!([
            {"Name": "nofile", "Hard": 2048, "Soft": 1024},
            {"Name": "nproc", "Hard": 100, "Soft": 100}
        ])
    );
    assert_eq!(h["ShmSize"], 32 << 20);
    assert_eq!(
        h["Sysctls"],
        serde_json::json!({"kernel.shmmax": "100000000", "net.ipv4.ip_forward": "1"})
    );
    assert_eq!(h["CpuShares"], 512);
    assert_eq!(h["CpusetCpus"], "0");
    assert_eq!(h["Memory"], 64 << 20);
    assert_eq!(h["MemorySwap"], 128 << 20);
    assert_eq!(h["MemoryReservation"], 32 << 20);
    assert_eq!(h["OomKillDisable"], true);
    assert_eq!(
        h["Devices"][0],
        serde_json::json!({"PathOnHost": "/dev/zero", "PathInContainer": "/dev/myzero", "CgroupPermissions": "r"})
    );
    assert_eq!(h["GroupAdd"], serde_json::json!(["1234", "daemon"]));
    b.run(&["rm", "-f", "res"]).ok();

    // Without the flags: docker's defaults.
    let o = b
        .run(&[
            "run",
            "--rm",
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "df -k /dev/shm | tail -1 | awk '{print $2}'; test -e /dev/myzero || echo none",
        ])
        .ok();
    assert_eq!(o.stdout, "65536\nnone\n");
}

#[test]
fn bad_resource_flags_get_dockers_errors() {
    let b = Berth::new().with_default_image();
    // A `-c` after the image is the command's, not a flag (docker_build_parity
    // runs `--entrypoint /bin/sh IMAGE -c …`).
    let o = b.run(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        DEFAULT_IMAGE,
        "-c",
        "echo after-the-image",
    ]);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "after-the-image\n"),
        "{}",
        o.stderr
    );
    for (flags, code, want) in [
        (
            &["--ulimit", "bad"][..],
            125,
            "invalid argument \"bad\" for \"--ulimit\" flag: invalid ulimit argument: bad",
        ),
        (
            &["--ulimit", "nofile=2:1"][..],
            125,
            "ulimit soft limit must be less than or equal to hard limit: 2 > 1",
        ),
        (
            &["--sysctl", "kernel.foo=1"][..],
            125,
            "invalid argument \"kernel.foo=1\" for \"--sysctl\" flag: sysctl 'kernel.foo=1' is not allowed",
        ),
        (
            &["--shm-size", "x"][..],
            125,
            "invalid argument \"x\" for \"--shm-size\" flag: invalid size: 'x'",
        ),
        (
            &["--cpu-shares", "x"][..],
            125,
            "invalid argument \"x\" for \"-c, --cpu-shares\" flag: strconv.ParseInt: parsing \"x\": invalid syntax",
        ),
        (
            &["--device", "/dev/zero:/a:rwx"][..],
            125,
            "bad mode specified: rwx",
        ),
        (
            &["--device", "/dev/zero:rel"][..],
            125,
            "rel is not an absolute path",
        ),
        (
            &["-m", "64m", "--memory-swap", "32m"][..],
            125,
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ),
        (
            &["--memory-swap", "32m"][..],
            125,
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ),
        (
            &["--memory-reservation", "1m"][..],
            125,
            "Minimum memory reservation allowed is 6MB",
        ),
        (
            &["-m", "16m", "--memory-reservation", "32m"][..],
            125,
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ),
        (
            &["--cpuset-cpus", "4096"][..],
            125,
            "Requested CPUs are not available - requested 4096, available: 0-",
        ),
        (
            &["--cpuset-cpus", "abc"][..],
            125,
            "Invalid value abc for cpuset cpus: invalid format: abc",
        ),
        // Found missing at start, as docker's (a missing file exits 127).
        (
            &["--device", "/nonexistent"][..],
            127,
            "error gathering device information while adding custom device \"/nonexistent\": no such file or directory",
        ),
        (
            &["--device", "/etc/hostname:/dev/x"][..],
            125,
            "adding custom device \"/etc/hostname\": not a device node",
        ),
        (
            &["--group-add", "nosuchgroup"][..],
            125,
            "Unable to find group nosuchgroup",
        ),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[DEFAULT_IMAGE, "true"]);
        let o = b.run(&args);
        assert_eq!(o.code, code, "{flags:?}: {}", o.stderr);
        assert!(o.stderr.contains(want), "{flags:?}: {}", o.stderr);
    }
    // Nothing left behind by the refusals made before a container existed;
    // the start failures (--device, --group-add) went with --rm.
    assert_eq!(b.run(&["ps", "-aq"]).ok().stdout, "");
}
