#![cfg(target_os = "linux")]
//! The Dockerfile conformance set (dockerfile/tests/cases/*.Dockerfile)
//! built by docker's classic builder (a private dockerd, DOCKER_BUILDKIT=0)
//! and by berth (native placement) on the same context: the same exit code,
//! the same `Step N/M : ...` lines, the same image config (Env, Cmd,
//! Entrypoint, WorkingDir, User, ExposedPorts, Labels, Volumes,
//! StopSignal) and the same file tree (names, types, modes, owners and
//! file sizes).
// Drives the Linux builds of berth and berth-agent.

use berth_tests::dockerd::Dockerd;
use berth_tests::{have, skip, workspace, Berth, DEFAULT_IMAGE};
use std::path::{Path, PathBuf};

/// Lists every path of an image with its type, mode, owner and (for
/// files) size; the mounts and files the engines add are left out.
const TREE: &str =
    "find / -xdev \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -print | \
    grep -v -e '^/etc/hostname$' -e '^/etc/hosts$' -e '^/etc/resolv.conf$' -e '^/.dockerenv$' \
    -e '^/proc$' -e '^/sys$' -e '^/dev$' -e '^/etc/mtab$' | sort | \
    while read -r p; do if [ -d \"$p\" ] && [ ! -L \"$p\" ]; then stat -c '%n %F %a %u:%g' \"$p\"; \
    else stat -c '%n %F %a %u:%g %s' \"$p\"; fi; done";

fn cases() -> Vec<(String, PathBuf, PathBuf)> {
    let dir = workspace().join("dockerfile/tests/cases");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".Dockerfile") {
            let ctx = dir.join(format!("{stem}.ctx"));
            out.push((stem.to_string(), e.path(), ctx));
        }
    }
    out.sort();
    out
}

fn steps(out: &str) -> Vec<String> {
    // A step line may follow a carriage return (progress output).
    out.lines()
        .filter_map(|l| l.rsplit('\r').next())
        .filter_map(|l| l.find("Step ").map(|i| l[i..].to_string()))
        .filter(|l| l.contains(" : "))
        .collect()
}

fn config_fields(inspect: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(inspect).unwrap_or_default();
    let c = &v[0]["Config"];
    let keep = |k: &str| {
        let x = c[k].clone();
        // docker writes empty maps/lists as null in places; treat both alike.
        match &x {
            serde_json::Value::Array(a) if a.is_empty() => serde_json::Value::Null,
            serde_json::Value::Object(o) if o.is_empty() => serde_json::Value::Null,
            serde_json::Value::String(s) if s.is_empty() => serde_json::Value::Null,
            _ => x,
        }
    };
    serde_json::json!({
        "Env": keep("Env"), "Cmd": keep("Cmd"), "Entrypoint": keep("Entrypoint"),
        "WorkingDir": keep("WorkingDir"), "User": keep("User"),
        "ExposedPorts": keep("ExposedPorts"), "Labels": keep("Labels"),
        "Volumes": keep("Volumes"), "StopSignal": keep("StopSignal"),
        "Shell": keep("Shell"), "OnBuild": keep("OnBuild"),
    })
}

/// A scratch copy of the context with the case's Dockerfile in it.
fn context_for(dockerfile: &Path, ctx: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    if ctx.is_dir() {
        let st = std::process::Command::new("cp")
            .args(["-a", &format!("{}/.", ctx.display())])
            .arg(tmp.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    std::fs::copy(dockerfile, tmp.path().join("Dockerfile")).unwrap();
    tmp
}

#[test]
fn conformance_cases_build_like_the_classic_builder() {
    let cases = cases();
    if cases.is_empty() {
        return skip("no conformance cases in dockerfile/tests/cases");
    }
    if !have("dockerd") || !have("skopeo") {
        return skip("dockerd (docker.io) or skopeo not installed");
    }
    let docker = Dockerd::required();
    if let Err(e) = docker.load_default_image(&format!("{DEFAULT_IMAGE}:latest")) {
        panic!("cannot load the image into dockerd: {e}");
    }
    let b = Berth::new().with_default_image();
    let mut failures = Vec::new();
    for (name, dockerfile, ctx) in &cases {
        let tmp = context_for(dockerfile, ctx);
        let dir = tmp.path().to_str().unwrap();
        let tag = format!("parity-{}", name.to_ascii_lowercase());
        let d = std::process::Command::new(if Path::new("/usr/bin/docker").exists() {
            "/usr/bin/docker"
        } else {
            "docker"
        })
        .env("DOCKER_BUILDKIT", "0")
        .args([
            "-H",
            &format!("unix://{}", docker_sock(&docker)),
            "build",
            "-t",
            &tag,
            dir,
        ])
        .output()
        .unwrap();
        let bo = b.run(&["build", "-t", &tag, dir]);
        let dout = String::from_utf8_lossy(&d.stdout).to_string();
        let derr = String::from_utf8_lossy(&d.stderr).to_string();
        let dcode = d.status.code().unwrap_or(-1);
        let mut problems = Vec::new();
        if dcode != bo.code {
            problems.push(format!(
                "exit codes differ: docker {dcode} ({}), berth {} ({})",
                derr.trim(),
                bo.code,
                bo.stderr.trim()
            ));
        }
        if dcode != 0 {
            // The same error message (docker's last stderr line).
            let want = derr.trim().lines().last().unwrap_or("").trim();
            if !bo.stderr.contains(want) {
                problems.push(format!(
                    "error differs:\ndocker: {want}\nberth: {}",
                    bo.stderr.trim()
                ));
            }
        }
        if steps(&dout) != steps(&bo.stdout) {
            problems.push(format!(
                "step lines differ:\ndocker: {:#?}\nberth: {:#?}",
                steps(&dout),
                steps(&bo.stdout)
            ));
        }
        if dcode == 0 && bo.code == 0 {
            let di = docker.docker(&["image", "inspect", &tag]).unwrap();
            let bi = b.run(&["image", "inspect", &tag]);
            let (dc, bc) = (
                config_fields(&String::from_utf8_lossy(&di.stdout)),
                config_fields(&bi.stdout),
            );
            if dc != bc {
                problems.push(format!("config differs:\ndocker: {dc:#}\nberth: {bc:#}"));
            }
            {
                let dt = docker
                    .docker(&[
                        "run",
                        "--rm",
                        "--network",
                        "none",
                        "-u",
                        "0",
                        "--entrypoint",
                        "/bin/sh",
                        &tag,
                        "-c",
                        TREE,
                    ])
                    .unwrap();
                let bt = b.run(&[
                    "run",
                    "--rm",
                    "-u",
                    "0",
                    "--entrypoint",
                    "/bin/sh",
                    &tag,
                    "-c",
                    TREE,
                ]);
                let dt = String::from_utf8_lossy(&dt.stdout).to_string();
                if dt != bt.stdout {
                    let dl: Vec<&str> = dt.lines().collect();
                    let bl: Vec<&str> = bt.stdout.lines().collect();
                    let only_d: Vec<&&str> = dl.iter().filter(|l| !bl.contains(l)).collect();
                    let only_b: Vec<&&str> = bl.iter().filter(|l| !dl.contains(l)).collect();
                    problems.push(format!(
                        "file trees differ:\nonly docker: {only_d:#?}\nonly berth: {only_b:#?}\n{}",
                        bt.stderr
                    ));
                }
            }
        }
        if problems.is_empty() {
            println!("case {name}: same as docker");
        } else {
            failures.push(format!("case {name}:\n{}", problems.join("\n")));
        }
    }
    // A build-arg no step consumed: docker's warning, word for word and
    // on the same stream.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("Dockerfile"),
        format!("FROM {DEFAULT_IMAGE}\nARG USED\nRUN echo $USED\n"),
    )
    .unwrap();
    let dir = tmp.path().to_str().unwrap();
    let args = [
        "build",
        "--build-arg",
        "USED=1",
        "--build-arg",
        "NOBODY=2",
        "-t",
        "parity-unused",
        dir,
    ];
    let d = std::process::Command::new(if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    })
    .env("DOCKER_BUILDKIT", "0")
    .args(["-H", &format!("unix://{}", docker_sock(&docker))])
    .args(args)
    .output()
    .unwrap();
    let bo = b.run(&args);
    let warning = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.contains("were not consumed"))
            .map(str::to_string)
            .collect()
    };
    let (dout, derr) = (
        String::from_utf8_lossy(&d.stdout),
        String::from_utf8_lossy(&d.stderr),
    );
    assert_eq!(
        (warning(&bo.stdout), warning(&bo.stderr)),
        (warning(&dout), warning(&derr)),
        "docker:\n{dout}{derr}\nberth:\n{}{}",
        bo.stdout,
        bo.stderr
    );
    assert_eq!(
        warning(&dout).len() + warning(&derr).len(),
        1,
        "{dout}{derr}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn docker_sock(d: &Dockerd) -> String {
    d.socket().to_string()
}
