//! `berth compare`: the report validates against docs/compare.schema.json
//! and every measured fact is plausible for its placement.
//! - native (fast): the host's kernel and boot id, numbers present (bind
//!   mount writes included), the table explains each row, the HTML page
//!   renders in headless Chromium (a screenshot that is not blank, no
//!   console errors); with a private dockerd, the docker reference column
//!   (the image loaded into it by compare) on the host's kernel too;
//!   published-port throughput (`net`) natively (the test's dockerd has
//!   no bridge, so docker's net row is a failure there, not checked);
//! - native, shared and vm in ONE reduced run (probe, memory and the
//!   published port only: each guest container start costs ~20-30 s on
//!   kvm_pvm): the VM placements report a kernel and boot id of their own,
//!   each further VM container costs the host more memory than a native
//!   one, and bytes come through a published port in each placement.
#![cfg(target_os = "linux")]

use berth_tests::dockerd::Dockerd;
use berth_tests::{have, kernel_available, skip, timing, workspace, Berth, DEFAULT_IMAGE};
use serde_json::Value;
use std::path::Path;
use std::time::Instant;

fn schema_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(workspace().join("docs/compare.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("docs/compare.schema.json is a valid schema")
}

#[track_caller]
fn assert_valid(report: &Value) {
    let v = schema_validator();
    let errors: Vec<String> = v
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "report does not match docs/compare.schema.json:\n{}\n{report:#}",
        errors.join("\n")
    );
}

fn placement<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no {name} placement in {report:#}"))
}

fn metric(p: &Value, id: &str) -> f64 {
    let m = p["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {p:#}"));
    m["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("{id} has no value: {m:#}"))
}

/// A container under the default seccomp profile, on the host's kernel:
/// its live filter was read and lets through some, not all, system calls.
fn assert_default_filter(iso: &Value, name: &str) {
    let c = &iso["syscalls"];
    let n = |k: &str| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("{name}: {k} in {iso:#}"))
    };
    assert!(n("filters") >= 1, "{name}: {c:#}");
    assert!(n("total") > 300, "{name}: every x86_64/arm64 number: {c:#}");
    assert!(
        n("allowed") > 100 && n("allowed") < n("total"),
        "{name}: the default profile allows most system calls, not all: {c:#}"
    );
    assert!(n("arg_dependent") <= n("allowed"), "{name}: {c:#}");
}

fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string()
}

fn host_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn native_report_validates_and_matches_the_host() {
    let b = Berth::new().with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let args = [
        "compare",
        DEFAULT_IMAGE,
        "--placements",
        "native",
        "--rounds",
        "1",
        "--memory-containers",
        "2",
    ];
    // A private dockerd (empty: compare loads the image into it) for the
    // docker reference column.
    let dockerd = if have("dockerd") {
        Some(Dockerd::required())
    } else {
        skip(
            "dockerd not installed: no docker column checked (scripts/deps.sh installs docker.io)",
        );
        None
    };
    let docker_host = dockerd
        .as_ref()
        .map(|d| format!("unix://{}", d.socket()))
        .unwrap_or_else(|| "none".into());
    let o = b.run(
        &[
            &args[..],
            &[
                "--workload",
                "startup,exec,syscall,fork,memory,fs,net",
                "--docker-host",
                &docker_host,
                "--format",
                "json",
                "-o",
                json.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    drop(dockerd);
    assert_eq!(o.code, 0, "stderr: {}", o.stderr);
    assert_eq!(o.stdout, "", "-o writes the file, not stdout");
    assert_eq!(o.stderr, "", "no progress display when not on a terminal");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_valid(&report);

    let native = placement(&report, "native");
    assert_eq!(native["available"], true, "{native:#}");
    let iso = &native["isolation"];
    assert_eq!(
        iso["kernel"],
        host_kernel().as_str(),
        "native runs on the host's kernel"
    );
    assert_eq!(iso["own_kernel"], false);
    assert_eq!(iso["boot_id"], host_boot_id().as_str());
    assert_eq!(iso["sees_host_boot_id"], true);
    assert_eq!(
        report["host"]["kernel"],
        host_kernel().as_str(),
        "the report states the host's kernel"
    );
    let ns = iso["shared_namespaces"].as_array().unwrap();
    for own in ["pid", "mnt", "uts", "ipc"] {
        assert!(
            !ns.iter().any(|n| n == own),
            "a native container has its own {own} namespace: {iso:#}"
        );
    }
    assert!(
        iso["processes_visible"].as_u64().unwrap() < report["host"]["processes"].as_u64().unwrap(),
        "a container sees fewer processes than the host: {iso:#}"
    );
    assert_eq!(
        iso["seccomp"], "2",
        "docker's default profile filters syscalls"
    );
    assert_eq!(iso["vmm_seccomp"], Value::Null, "no VMM natively");
    assert_default_filter(iso, "native");
    for id in [
        "startup_cold_ms",
        "startup_warm_ms",
        "teardown_ms",
        "exec_ms",
        "syscall_ns",
        "fork_exec_us",
        "memory_first_mib",
        "memory_additional_mib",
        "fs_write_mib_s",
        "bind_write_mib_s",
        "net_published_mib_s",
    ] {
        assert!(metric(native, id) > 0.0, "{id} is positive: {native:#}");
    }
    let names: Vec<&Value> = report["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    if docker_host == "none" {
        assert_eq!(names, ["native"], "no docker column without a daemon");
    } else {
        assert_eq!(
            names,
            ["native", "docker"],
            "docker is the reference column"
        );
        let docker = placement(&report, "docker");
        assert_eq!(docker["available"], true, "{docker:#}");
        let iso = &docker["isolation"];
        assert_eq!(
            iso["kernel"],
            host_kernel().as_str(),
            "a docker container runs on the host's kernel: {iso:#}"
        );
        assert_eq!(iso["own_kernel"], false);
        assert_eq!(
            iso["boot_id"],
            host_boot_id().as_str(),
            "and shares its boot id"
        );
        assert_eq!(iso["sees_host_boot_id"], true);
        assert_eq!(iso["vmm_seccomp"], Value::Null, "no VMM under docker");
        assert_default_filter(iso, "docker");
        for id in [
            "startup_cold_ms",
            "startup_warm_ms",
            "teardown_ms",
            "exec_ms",
            "syscall_ns",
            "fork_exec_us",
            "fs_write_mib_s",
            "bind_write_mib_s",
            "memory_first_mib",
            "memory_additional_mib",
        ] {
            assert!(
                metric(docker, id) > 0.0,
                "docker {id} is positive: {docker:#}"
            );
        }
        assert!(
            metric(docker, "memory_first_mib") > metric(docker, "memory_additional_mib"),
            "the first docker container also pays for dockerd and containerd: {docker:#}"
        );
    }
    assert!(
        metric(native, "memory_first_mib") >= metric(native, "memory_additional_mib"),
        "the first container also pays for the agent: {native:#}"
    );

    // The table: one explanation line under each row.
    let o = b
        .run(
            &[
                &args[..],
                &["--workload", "startup", "--docker-host", "none"],
            ]
            .concat(),
        )
        .ok();
    let rows: Vec<&str> = o.stdout.lines().collect();
    let i = rows
        .iter()
        .position(|l| l.starts_with("startup, warm"))
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(rows[i + 1].trim_start().starts_with('↳'), "{}", o.stdout);
    assert!(o.stdout.contains(&host_kernel()), "{}", o.stdout);

    // The HTML page, opened in headless Chromium.
    let html = dir.path().join("report.html");
    let o = b.run(&[
        "compare",
        DEFAULT_IMAGE,
        "--placements",
        "native",
        "--rounds",
        "1",
        "--workload",
        "startup,syscall",
        "--docker-host",
        "none",
        "--format",
        "html",
        "-o",
        html.to_str().unwrap(),
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg"), "charts are inline SVG");
    assert!(!page.contains("http"), "nothing is loaded from the network");
    check_in_chromium(&html, dir.path());
}

/// Renders `html` in headless Chromium: a screenshot that is not blank,
/// and no console errors.
fn check_in_chromium(html: &Path, dir: &Path) {
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| have(c))
    else {
        return skip("chromium not installed (scripts/deps.sh installs it)");
    };
    let shot = dir.join("shot.png");
    let profile = dir.join("profile");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1000,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("running chromium");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {log}");
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console output: {console:#?}");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let distinct: std::collections::BTreeSet<&[u8]> =
        px.chunks(channels).take(10_000_000).collect();
    let non_white = px
        .chunks(channels)
        .filter(|p| p[..3.min(p.len())].iter().any(|&c| c < 200))
        .count();
    assert!(
        distinct.len() > 8 && non_white > 1000,
        "the screenshot is blank ({} colours, {non_white} dark pixels)",
        distinct.len()
    );
}

#[test]
fn vm_placements_run_their_own_kernel_and_cost_more_memory() {
    if !Path::new("/dev/kvm").exists() {
        return skip("/dev/kvm not available");
    }
    if !kernel_available() {
        return skip("no guest kernel built (kernel-config/build-kernel.sh)");
    }
    let t = Instant::now();
    let mut b = Berth::new();
    b.timeout = std::time::Duration::from_secs(1800);
    let b = b.with_default_image();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // One reduced run: the isolation probe, memory (2 idle containers per
    // placement), published-port throughput (one container and at most
    // 20 s of transfer per placement) and the guest-kernel panic in an
    // own VM.
    let o = b.run(&[
        "compare",
        DEFAULT_IMAGE,
        "--placements",
        "native,shared,vm",
        "--rounds",
        "1",
        "--workload",
        "memory,net",
        "--memory-containers",
        "2",
        "--docker-host",
        "none",
        "--destructive",
        "--format",
        "json",
        "-o",
        json.to_str().unwrap(),
    ]);
    timing("compare", "native, shared and vm compared", t);
    assert_eq!(o.code, 0, "stderr: {}", o.stderr);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_valid(&report);
    let native = placement(&report, "native");
    assert_eq!(native["isolation"]["kernel"], host_kernel().as_str());
    let native_more = metric(native, "memory_additional_mib");
    let native_allowed = native["isolation"]["syscalls"]["allowed"].as_u64().unwrap();
    let native_total = native["isolation"]["syscalls"]["total"].as_u64().unwrap();
    // --destructive: the panic is forced in the own VM only, and takes down
    // that VM alone; the other placements say why they were spared.
    let trial = |name: &str| placement(&report, name)["isolation"]["panic_trial"].clone();
    for name in ["native", "shared"] {
        let t = trial(name);
        assert_eq!(t["ran"], false, "{name}: {t:#}");
        assert!(
            t["note"].as_str().unwrap_or("").starts_with("not run"),
            "{name}: {t:#}"
        );
    }
    let t = trial("vm");
    for fact in [
        "ran",
        "panic_seen",
        "vm_ended",
        "witness_unaffected",
        "host_unaffected",
    ] {
        assert_eq!(t[fact], true, "vm panic trial, {fact}: {t:#}");
    }
    for name in ["shared", "vm"] {
        let p = placement(&report, name);
        assert_eq!(p["available"], true, "{p:#}");
        let iso = &p["isolation"];
        assert_ne!(
            iso["kernel"],
            host_kernel().as_str(),
            "{name} runs a kernel of its own: {iso:#}"
        );
        assert_eq!(iso["own_kernel"], true);
        assert_ne!(
            iso["boot_id"],
            host_boot_id().as_str(),
            "{name} cannot see the host's boot id"
        );
        assert_eq!(iso["sees_host_boot_id"], false);
        assert!(
            iso["boot_id"].as_str().unwrap().len() >= 32,
            "a boot id was read: {iso:#}"
        );
        assert_ne!(iso["vmm_seccomp"], Value::Null, "{name} has a VMM: {iso:#}");
        // The guest's filters are not the host's to read; the VMM's are:
        // under its per-thread lists it may make far fewer system calls
        // than a container on the host's kernel.
        assert_eq!(iso["syscalls"], Value::Null, "{name}: {iso:#}");
        let v = &iso["vmm_syscalls"];
        let (allowed, total) = (v["allowed"].as_u64().unwrap(), v["total"].as_u64().unwrap());
        assert!(
            allowed > 0 && allowed < native_allowed && total == native_total,
            "{name}: the VMM's threads may call {allowed}/{total}, a native container {native_allowed}/{native_total}: {iso:#}"
        );
        assert!(v["threads"].as_u64().unwrap() >= 2, "{name}: {v:#}");
        // The exits the VMM's own loop hands to device models.
        let exits = iso["vmm_exits"].as_array().unwrap();
        for kind in ["port I/O write", "MMIO write"] {
            assert!(
                exits
                    .iter()
                    .any(|e| e["kind"] == kind && e["handling"] == "device"),
                "{name}: {kind} reaches a device: {exits:#?}"
            );
        }
        let more = metric(p, "memory_additional_mib");
        assert!(more.is_finite() && more >= 0.0, "{name}: {more}");
        // Bytes came through the published port: the host forwarder, the
        // VM's vsock and the guest agent's relay, every byte checked by
        // compare (issues 19 and 23).
        let net = metric(p, "net_published_mib_s");
        assert!(net > 0.0, "{name}: published-port throughput {net}: {p:#}");
        // An own VM per container brings a VMM and a guest kernel each. A
        // further container in the shared machine VM mostly reuses guest
        // memory the VMM has already touched, so it can cost the host less
        // than a native shim (seen: 0.43 against 1.69 MiB); no order is
        // asserted there.
        if name == "vm" {
            assert!(
                more > native_more,
                "each further own-VM container costs more host memory ({more:.2} MiB) than a native one ({native_more:.2} MiB)"
            );
        }
    }
}
