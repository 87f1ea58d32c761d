//! Security defaults and privilege flags: docker's default seccomp
//! profile, `--security-opt seccomp=unconfined|PROFILE.json`,
//! `--privileged`, `--cap-add`/`--cap-drop`, `no-new-privileges`, and the
//! inspect fields. Runs in the placement `BERTH_TEST_ISOLATION` names
//! (native by default); nothing here is native-only: the probe goes in
//! with `berth cp`.
// Drives the Linux builds of berth and berth-agent (native placement, KVM).
#![cfg(target_os = "linux")]

use berth_tests::{seccomp_probe, skip, Berth, DEFAULT_IMAGE};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The static probe, or None (a skip).
fn probe(dir: &std::path::Path) -> Option<PathBuf> {
    let probe = seccomp_probe::build(dir);
    if probe.is_none() {
        skip("gcc not installed (the seccomp probe is a static C program)");
    }
    probe
}

/// Runs the probe as the main process of a container made with `flags`
/// (create, cp, start -a); returns probe name -> errno name, and the
/// container's `Seccomp:` mode from /proc/self/status.
fn run_probe(b: &Berth, probe: &std::path::Path, flags: &[&str]) -> BTreeMap<String, String> {
    let name = format!("probe{}", rand_suffix());
    let mut args = vec!["create", "--name", &name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[DEFAULT_IMAGE, "/probe"]);
    b.run(&args).ok();
    b.run(&["cp", probe.to_str().unwrap(), &format!("{name}:/probe")])
        .ok();
    let o = b.run(&["start", "-a", &name]).ok();
    let mut map = seccomp_probe::answers(&o.stdout);
    // The same probe through exec (a process joining the container gets
    // the container's filter too, as with runc).
    let ex = format!("{name}x");
    let mut args = vec!["run", "-d", "--name", &ex];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[DEFAULT_IMAGE, "sleep", "300"]);
    b.run(&args).ok();
    b.run(&["cp", probe.to_str().unwrap(), &format!("{ex}:/probe")])
        .ok();
    let o = b.run(&["exec", &ex, "/probe"]).ok();
    for l in o.stdout.lines() {
        if let Some((k, v)) = l.split_once('=') {
            map.insert(format!("exec.{k}"), v.to_string());
        }
    }
    let o = b
        .run(&[
            "exec",
            &ex,
            "grep",
            "-E",
            "^(Seccomp|NoNewPrivs):",
            "/proc/self/status",
        ])
        .ok();
    for l in o.stdout.lines() {
        if let Some((k, v)) = l.split_once(':') {
            map.insert(format!("exec.{k}"), v.trim().to_string());
        }
    }
    b.run(&["rm", "-f", &name, &ex]).ok();
    map
}

fn rand_suffix() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{n:08x}")
}

#[test]
fn default_profile_blocks_and_opt_outs_lift_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(probe) = probe(dir.path()) else {
        return;
    };
    let b = Berth::new().with_default_image();

    // docker's default profile: EPERM for each, in the main process and
    // in exec; fork and the persona query still work.
    let m = run_probe(&b, &probe, &[]);
    seccomp_probe::assert_default_profile(&m, "");
    seccomp_probe::assert_default_profile(&m, "exec.");
    assert_eq!(
        m.get("personality_query").map(String::as_str),
        Some("OK"),
        "{m:?}"
    );
    assert_eq!(
        m.get("exec.Seccomp").map(String::as_str),
        Some("2"),
        "{m:?}"
    );

    // seccomp=unconfined: the calls reach the kernel. Those that check
    // their arguments first answer for them (swapon checks its flags
    // before CAP_SYS_ADMIN); reboot checks CAP_SYS_BOOT first, which
    // docker's default set lacks, so it still refuses. (init_module
    // answers EPERM for the missing CAP_SYS_MODULE, or ENOSYS on a kernel
    // without modules: not asserted.)
    let m = run_probe(&b, &probe, &["--security-opt", "seccomp=unconfined"]);
    for (k, want) in [
        ("unshare_bad", "EINVAL"),
        ("keyctl", "EOPNOTSUPP"),
        ("add_key", "EFAULT"),
        ("mount_bad", "EFAULT"),
        ("clone_ns", "EINVAL"),
        ("personality", "OK"),
        ("swapon", "EINVAL"),
        ("reboot", "EPERM"),
    ] {
        assert_eq!(m.get(k).map(String::as_str), Some(want), "{k}: {m:?}");
        let e = format!("exec.{k}");
        assert_eq!(m.get(&e).map(String::as_str), Some(want), "{e}: {m:?}");
    }
    assert_eq!(
        m.get("exec.Seccomp").map(String::as_str),
        Some("0"),
        "{m:?}"
    );

    // --privileged: no filter and every capability, so the capability
    // checks pass too and the bad arguments answer.
    let m = run_probe(&b, &probe, &["--privileged"]);
    for (k, want) in [
        ("unshare_bad", "EINVAL"),
        ("keyctl", "EOPNOTSUPP"),
        ("add_key", "EFAULT"),
        ("mount_bad", "EFAULT"),
        ("swapon", "EINVAL"),
        ("reboot", "EINVAL"),
        ("bpf", "EINVAL"),
        ("clone_ns", "EINVAL"),
    ] {
        assert_eq!(m.get(k).map(String::as_str), Some(want), "{k}: {m:?}");
    }
    // A kernel without modules answers ENOSYS, one with them EFAULT/ENOEXEC:
    // anything but the filter's EPERM (unless modules are locked).
    let locked =
        std::fs::read_to_string("/proc/sys/kernel/modules_disabled").is_ok_and(|s| s.trim() == "1");
    if !locked {
        assert_ne!(
            m.get("init_module").map(String::as_str),
            Some("EPERM"),
            "{m:?}"
        );
    }
    assert_eq!(
        m.get("exec.Seccomp").map(String::as_str),
        Some("0"),
        "{m:?}"
    );

    // CAP_SYS_ADMIN added: docker's profile lets its group through.
    let m = run_probe(&b, &probe, &["--cap-add", "sys_admin"]);
    for (k, want) in [
        ("mount_bad", "EFAULT"),
        ("unshare_bad", "EINVAL"),
        ("clone_ns", "EINVAL"),
    ] {
        assert_eq!(m.get(k).map(String::as_str), Some(want), "{k}: {m:?}");
        let e = format!("exec.{k}");
        assert_eq!(m.get(&e).map(String::as_str), Some(want), "{e}: {m:?}");
    }
    assert_eq!(m.get("reboot").map(String::as_str), Some("EPERM"), "{m:?}");
}

#[test]
fn privileged_mounts_and_sees_devices() {
    let b = Berth::new().with_default_image();
    let o = b.run(&[
        "run",
        "--rm",
        "--privileged",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && grep -c ' /mnt/t tmpfs' /proc/mounts && grep -E '^Cap(Eff|Bnd)' /proc/self/status && ls /dev | wc -l && cat /proc/keys >/dev/null && echo keys-readable",
    ]);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], "1", "{}", o.stdout);
    // Every capability the engine can hand out: what the kernel has, less
    // what the engine's own bounding set lacks (natively, the same as
    // this test's; some CI hosts withhold one or two).
    let eff = lines[1].rsplit('\t').next().unwrap();
    let bnd = lines[2].rsplit('\t').next().unwrap();
    assert_eq!(eff, bnd, "{}", o.stdout);
    let eff = u64::from_str_radix(eff, 16).unwrap();
    assert_ne!(eff & (1 << 21), 0, "CAP_SYS_ADMIN: {}", o.stdout);
    if b.isolation == "native" {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let mine = status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .unwrap()
            .trim();
        let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let kernel = (1u64 << (last + 1)) - 1;
        assert_eq!(
            eff,
            u64::from_str_radix(mine, 16).unwrap() & kernel,
            "{}",
            o.stdout
        );
    }
    assert!(o.stdout.contains("keys-readable"), "{}", o.stdout);
    // The host's device nodes are there (natively the host is this
    // machine; in a VM, the guest's).
    if b.isolation == "native" {
        let o = b
            .run(&["run", "--rm", "--privileged", DEFAULT_IMAGE, "ls", "/dev"])
            .ok();
        let inside: Vec<&str> = o.stdout.lines().collect();
        for dev in ["tty0", "loop0", "loop-control", "kvm", "fuse"] {
            if std::path::Path::new("/dev").join(dev).exists() {
                assert!(inside.contains(&dev), "/dev/{dev}: {}", o.stdout);
            }
        }
        let o = b.run(&["run", "--rm", DEFAULT_IMAGE, "ls", "/dev"]).ok();
        assert!(
            !o.stdout.lines().any(|l| l == "tty0" || l == "loop0"),
            "{}",
            o.stdout
        );
    }
    // Without --privileged the same mount is refused.
    let o = b.run(&[
        "run",
        "--rm",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t",
    ]);
    assert_ne!(o.code, 0, "{}{}", o.stdout, o.stderr);
}

#[test]
fn capabilities_and_no_new_privileges() {
    let b = Berth::new().with_default_image();
    // --cap-drop ALL: chown fails, the sets are empty.
    let o = b.run(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "touch /f; chown 1:1 /f; echo chown=$?; grep -E '^Cap(Eff|Bnd)' /proc/self/status",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("chown=1"), "{}", o.stdout);
    assert!(
        o.stdout.contains("CapEff:\t0000000000000000"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("CapBnd:\t0000000000000000"),
        "{}",
        o.stdout
    );
    // With the default set chown works; --cap-drop chown takes it away,
    // --cap-drop ALL --cap-add chown gives exactly it back (bit 0).
    let chown = |flags: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[
            DEFAULT_IMAGE,
            "sh",
            "-c",
            "touch /f; chown 1:1 /f && echo ok; grep ^CapEff /proc/self/status",
        ]);
        b.run(&args).ok().stdout
    };
    assert!(chown(&[]).contains("ok"));
    assert!(!chown(&["--cap-drop", "chown"]).contains("ok"));
    let out = chown(&["--cap-drop", "ALL", "--cap-add", "CAP_CHOWN"]);
    assert!(
        out.contains("ok") && out.contains("CapEff:\t0000000000000001"),
        "{out}"
    );
    // --cap-add NET_ADMIN: the capability is there (bit 12).
    let o = b
        .run(&[
            "run",
            "--rm",
            "--cap-add",
            "net_admin",
            DEFAULT_IMAGE,
            "grep",
            "^CapEff",
            "/proc/self/status",
        ])
        .ok();
    let eff = u64::from_str_radix(o.stdout.trim().rsplit('\t').next().unwrap(), 16).unwrap();
    assert_ne!(eff & (1 << 12), 0, "{}", o.stdout);

    // no-new-privileges, in both spellings; off by default.
    for opt in [
        "no-new-privileges",
        "no-new-privileges:true",
        "no-new-privileges=true",
    ] {
        let o = b
            .run(&[
                "run",
                "--rm",
                "--security-opt",
                opt,
                DEFAULT_IMAGE,
                "grep",
                "NoNewPrivs",
                "/proc/self/status",
            ])
            .ok();
        assert_eq!(o.stdout, "NoNewPrivs:\t1\n", "{opt}");
    }
    for opt in [&["--security-opt", "no-new-privileges=false"][..], &[][..]] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(opt);
        args.extend_from_slice(&[DEFAULT_IMAGE, "grep", "NoNewPrivs", "/proc/self/status"]);
        assert_eq!(b.run(&args).ok().stdout, "NoNewPrivs:\t0\n", "{opt:?}");
    }
    // exec in a no-new-privileges container inherits it.
    b.run(&[
        "run",
        "-d",
        "--name",
        "nnp",
        "--security-opt",
        "no-new-privileges",
        "--cap-drop",
        "ALL",
        DEFAULT_IMAGE,
        "sleep",
        "300",
    ])
    .ok();
    let o = b
        .run(&[
            "exec",
            "nnp",
            "grep",
            "-E",
            "^(NoNewPrivs|CapEff|Seccomp):",
            "/proc/self/status",
        ])
        .ok();
    assert!(o.stdout.contains("NoNewPrivs:\t1"), "{}", o.stdout);
    assert!(
        o.stdout.contains("CapEff:\t0000000000000000"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("Seccomp:\t2"), "{}", o.stdout);
    b.run(&["rm", "-f", "nnp"]).ok();
}

#[test]
fn custom_profiles_and_refusals() {
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    // A profile that allows everything but mkdir/mkdirat (EACCES).
    let prof = dir.path().join("no-mkdir.json");
    std::fs::write(
        &prof,
        r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
  ]
}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", prof.display());
    let o = b.run(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        DEFAULT_IMAGE,
        "sh",
        "-c",
        "mkdir /x; echo mkdir=$?; touch /y && echo touch=ok",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("mkdir=1"), "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("touch=ok"), "{}", o.stdout);
    assert!(o.stderr.contains("Permission denied"), "{}", o.stderr);
    // inspect shows the options (the profile as compact JSON) and caps.
    b.run(&[
        "create",
        "--name",
        "insp",
        "--cap-add",
        "net_admin",
        "--cap-drop",
        "chown",
        "--security-opt",
        "no-new-privileges",
        "--security-opt",
        &opt,
        DEFAULT_IMAGE,
        "true",
    ])
    .ok();
    let h = &b.inspect("insp")["HostConfig"];
    assert_eq!(h["CapAdd"], serde_json::json!(["CAP_NET_ADMIN"]));
    assert_eq!(h["CapDrop"], serde_json::json!(["CAP_CHOWN"]));
    assert_eq!(h["Privileged"], false);
    assert_eq!(
        h["SecurityOpt"],
        serde_json::json!([
            "no-new-privileges",
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#
        ])
    );
    b.run(&[
        "create",
        "--name",
        "priv",
        "--privileged",
        DEFAULT_IMAGE,
        "true",
    ])
    .ok();
    let h = &b.inspect("priv")["HostConfig"];
    assert_eq!(h["Privileged"], true);
    assert_eq!(h["SecurityOpt"], serde_json::json!(["label=disable"]));
    assert_eq!(h["MaskedPaths"], serde_json::Value::Null);
    assert_eq!(h["ReadonlyPaths"], serde_json::Value::Null);
    assert!(b.inspect("insp")["HostConfig"]["MaskedPaths"].is_array());
    assert_eq!(h["CapAdd"], serde_json::Value::Null);

    // Refusals, with docker's words where docker has them; exit 125.
    let refused = |args: &[&str], want: &str| {
        let mut all = vec!["run", "--rm"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[DEFAULT_IMAGE, "true"]);
        let o = b.run(&all);
        assert_eq!(o.code, 125, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(want), "{args:?}: {}", o.stderr);
    };
    refused(
        &["--cap-add", "foo"],
        "Error response from daemon: invalid CapAdd: unknown capability: \"CAP_FOO\"",
    );
    refused(
        &["--cap-drop", "cap_nope"],
        "invalid CapDrop: unknown capability: \"CAP_NOPE\"",
    );
    refused(
        &["--security-opt", "foo"],
        "Invalid --security-opt: \"foo\"",
    );
    refused(
        &["--security-opt", "foo=bar"],
        "invalid --security-opt 2: \"foo=bar\"",
    );
    refused(
        &["--security-opt", "no-new-privileges=maybe"],
        "invalid --security-opt 2: \"no-new-privileges=maybe\"",
    );
    refused(
        &["--security-opt", "seccomp=/nonexistent/p.json"],
        "opening seccomp profile (/nonexistent/p.json) failed: open /nonexistent/p.json: no such file or directory",
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_BOGUS"}"#).unwrap();
    refused(
        &["--security-opt", &format!("seccomp={}", bad.display())],
        "seccomp profile: unknown action \"SCMP_ACT_BOGUS\"",
    );
    std::fs::write(&bad, r#"{"defaultAction": "#).unwrap();
    refused(
        &["--security-opt", &format!("seccomp={}", bad.display())],
        "compacting json for seccomp profile",
    );
    std::fs::write(
        &bad,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"op":"SCMP_CMP_SOMETIMES"}]}]}"#,
    )
    .unwrap();
    refused(
        &["--security-opt", &format!("seccomp={}", bad.display())],
        "seccomp profile: unknown operator \"SCMP_CMP_SOMETIMES\"",
    );
    // create prints the daemon's refusal as it is, exit 1 (as docker's).
    let o = b.run(&["create", "--cap-add", "foo", DEFAULT_IMAGE, "true"]);
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("invalid CapAdd: unknown capability: \"CAP_FOO\""),
        "{}",
        o.stderr
    );
}
