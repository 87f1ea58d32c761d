//! berth's Docker Engine API socket (`berth system service`) driven by
//! the real docker CLI (Debian's 20.10 at /usr/bin/docker), natively:
//! run, ps, logs, inspect, stop, rm, images, volumes, networks; one state
//! with the berth CLI; docker's errors for bad input; output shapes
//! compared with a private dockerd where one starts.
// Drives the Linux builds of berth and berth-agent (native placement).
#![cfg(target_os = "linux")]

use berth_tests::{run_command, skip, wait_for, Berth, Out, DEFAULT_IMAGE as IMG};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// Debian's CLI, the one the issue names.
fn docker_cli() -> Option<&'static str> {
    ["/usr/bin/docker", "/usr/local/bin/docker"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// A `berth system service` on a private socket, stopped (by PID) on drop.
struct Service {
    berth: Berth,
    child: Child,
    sock: PathBuf,
    cli: &'static str,
    config: tempfile::TempDir,
}

impl Service {
    /// None (after a skip) without a docker CLI.
    fn start() -> Option<Service> {
        let Some(cli) = docker_cli() else {
            skip("no docker CLI at /usr/bin/docker (Debian docker.io)");
            return None;
        };
        let berth = Berth::new().with_default_image();
        let (sock, child) = berth.spawn_api_service();
        let s = Service {
            berth,
            child,
            sock,
            cli,
            config: tempfile::tempdir().unwrap(),
        };
        wait_for("the API socket", || {
            s.raw(
                "GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                b"",
            )
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        Some(s)
    }

    /// The docker CLI pointed at the socket (its own config dir).
    fn docker_cmd(&self) -> Command {
        let mut c = Command::new(self.cli);
        c.env("DOCKER_HOST", format!("unix://{}", self.sock.display()))
            .env("DOCKER_CONFIG", self.config.path());
        c
    }

    #[track_caller]
    fn docker(&self, args: &[&str]) -> Out {
        let mut c = self.docker_cmd();
        c.args(args);
        run_command(
            c,
            None,
            Duration::from_secs(300),
            &format!("docker {}", args.join(" ")),
        )
    }

    #[track_caller]
    fn docker_stdin(&self, args: &[&str], input: &[u8]) -> Out {
        let mut c = self.docker_cmd();
        c.args(args);
        run_command(
            c,
            Some(input),
            Duration::from_secs(300),
            &format!("docker {}", args.join(" ")),
        )
    }

    /// One raw HTTP exchange: `head` then `body`; the whole answer.
    fn raw(&self, head: &str, body: &[u8]) -> std::io::Result<String> {
        let mut s = UnixStream::connect(&self.sock)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        s.write_all(head.as_bytes())?;
        // The server may answer (413) and close before the body is all
        // sent: what it said is still there to read.
        let _ = s.write_all(body);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to the service this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The service and a local docker-registry (`tls`, basic `auth`), or None
/// with a skip marker where the registry tools are missing.
fn service_and_registry(
    tls: bool,
    auth: bool,
) -> Option<(Service, berth_tests::registry::Registry)> {
    if let Some(why) = berth_tests::registry::tools_missing() {
        skip(&why);
        return None;
    }
    let s = Service::start()?;
    Some((s, berth_tests::registry::Registry::start_with(tls, auth)))
}

/// The default image as skopeo names its archive, for seeding a registry.
fn default_image_src() -> String {
    format!("oci-archive:{}", berth_tests::default_image().display())
}

/// `s` with each 64-hex container id as `<id>`.
fn ids_masked(s: &str) -> String {
    s.lines()
        .map(|l| {
            if l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()) {
                "<id>"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

#[test]
fn the_docker_cli_runs_containers_through_the_socket() {
    let Some(s) = Service::start() else { return };
    // Mode 0600: only this user talks to the engine.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&s.sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    let v = s
        .docker(&["version", "--format", "{{.Server.APIVersion}}"])
        .ok();
    assert_eq!(v.stdout.trim(), "1.47");

    let out = s.docker(&["run", "--rm", IMG, "echo", "hi"]).ok();
    assert_eq!(out.stdout, "hi\n");
    let out = s.docker(&["run", "--rm", IMG, "sh", "-c", "echo err >&2; exit 7"]);
    assert_eq!((out.code, out.stderr.as_str()), (7, "err\n"));
    let out = s
        .docker_stdin(&["run", "--rm", "-i", IMG, "cat"], b"piped\n")
        .ok();
    assert_eq!(out.stdout, "piped\n");
    // A TTY under script(1): raw output, no stdcopy framing.
    if berth_tests::have("script") {
        let cmd = format!(
            "DOCKER_HOST=unix://{} DOCKER_CONFIG={} {} run --rm -it {IMG} sh -c 'tty >/dev/null && echo tty-ok'",
            s.sock.display(),
            s.config.path().display(),
            s.cli
        );
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]);
        let out = run_command(c, None, Duration::from_secs(300), "script docker run -it");
        assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
        assert!(out.stdout.contains("tty-ok\r\n"), "{:?}", out.stdout);
    }
    // -v and -p.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), "from host\n").unwrap();
    let bind = format!("{}:/h:ro", dir.path().display());
    let out = s
        .docker(&["run", "--rm", "-v", &bind, IMG, "cat", "/h/f.txt"])
        .ok();
    assert_eq!(out.stdout, "from host\n");
    s.docker(&[
        "run",
        "-d",
        "--name",
        "pub",
        "-p",
        "127.0.0.1::8080",
        IMG,
        "sleep",
        "300",
    ])
    .ok();
    let port = s.docker(&["port", "pub", "8080"]).ok();
    assert!(port.stdout.starts_with("127.0.0.1:"), "{}", port.stdout);
    let ps = s.docker(&["ps", "--format", "{{.Ports}}"]).ok();
    assert!(ps.stdout.contains("->8080/tcp"), "{}", ps.stdout);
    s.docker(&["kill", "pub"]).ok();
    s.docker(&["rm", "pub"]).ok();
    // logs -f follows until the container exits.
    s.docker(&[
        "run",
        "-d",
        "--name",
        "follow",
        IMG,
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.2; done",
    ])
    .ok();
    let out = s.docker(&["logs", "-f", "follow"]).ok();
    assert_eq!(out.stdout, "line1\nline2\nline3\n");
    s.docker(&["rm", "follow"]).ok();
    let out = s.docker(&["run", "--rm", IMG, "no-such-command"]);
    assert_eq!(out.code, 127, "{}", out.stderr);
    // --rm removed them all.
    assert_eq!(s.docker(&["ps", "-aq"]).ok().stdout, "");

    let id = s
        .docker(&[
            "run",
            "-d",
            "--name",
            "web",
            "-l",
            "tier=front",
            IMG,
            "sh",
            "-c",
            "echo started; sleep 300",
        ])
        .ok()
        .stdout;
    let id = id.trim();
    assert_eq!(id.len(), 64, "{id}");
    let ps = s
        .docker(&["ps", "--format", "{{.Names}} {{.Image}} {{.State}}"])
        .ok();
    assert_eq!(lines(&ps.stdout), vec!["web berth/busybox running"]);
    let ps = s
        .docker(&["ps", "-q", "--no-trunc", "--filter", "label=tier=front"])
        .ok();
    assert_eq!(ps.stdout.trim(), id);
    let ps = s.docker(&["ps", "-q", "--filter", "label=tier=back"]).ok();
    assert_eq!(ps.stdout, "");
    wait_for("the log line", || {
        s.docker(&["logs", "web"]).stdout == "started\n"
    });
    let out = s.docker(&["exec", "web", "sh", "-c", "echo in-exec; exit 4"]);
    assert_eq!((out.code, out.stdout.as_str()), (4, "in-exec\n"));
    // `ps -s` asks for size=1: the writable layer, then the whole.
    s.docker(&["exec", "web", "sh", "-c", "head -c 50000 /dev/zero > /f"])
        .ok();
    let ps = s.docker(&["ps", "-s", "--format", "{{.Size}}"]).ok();
    assert!(ps.stdout.starts_with("50kB (virtual "), "{}", ps.stdout);
    let st = s
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.Name}} {{index .Config.Labels \"tier\"}}",
            "web",
        ])
        .ok();
    assert_eq!(st.stdout.trim(), "true /web front");
    s.docker(&["stop", "-t", "1", "web"]).ok();
    let ps = s
        .docker(&[
            "ps",
            "-a",
            "--filter",
            "status=exited",
            "--format",
            "{{.Names}}",
        ])
        .ok();
    assert_eq!(lines(&ps.stdout), vec!["web"]);
    // Starting a stopped container again, then removing it by force.
    s.docker(&["start", "web"]).ok();
    s.docker(&["rm", "-f", "web"]).ok();
    assert_eq!(s.docker(&["ps", "-aq"]).ok().stdout, "");
    let out = s.docker(&["rm", "web"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("No such container"), "{}", out.stderr);

    let images = s
        .docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .ok();
    assert!(
        lines(&images.stdout).contains(&"berth/busybox:latest"),
        "{}",
        images.stdout
    );
    s.docker(&["tag", IMG, "berth/retagged:v1"]).ok();
    let img = s
        .docker(&[
            "image",
            "inspect",
            "-f",
            "{{.RepoTags}}",
            "berth/retagged:v1",
        ])
        .ok();
    assert!(img.stdout.contains("berth/retagged:v1"), "{}", img.stdout);
    s.docker(&["rmi", "berth/retagged:v1"]).ok();
    assert_ne!(s.docker(&["image", "inspect", "berth/retagged:v1"]).code, 0);

    s.docker(&["volume", "create", "--label", "k=v", "vol1"])
        .ok();
    let vols = s.docker(&["volume", "ls", "-q"]).ok();
    assert_eq!(lines(&vols.stdout), vec!["vol1"]);
    let vi = s
        .docker(&["volume", "inspect", "-f", "{{.Labels.k}}", "vol1"])
        .ok();
    assert_eq!(vi.stdout.trim(), "v");
    s.docker(&["volume", "rm", "vol1"]).ok();
    assert_eq!(s.docker(&["volume", "ls", "-q"]).ok().stdout, "");

    let nets = s.docker(&["network", "ls", "--format", "{{.Name}}"]).ok();
    for n in ["bridge", "host", "none"] {
        assert!(lines(&nets.stdout).contains(&n), "{}", nets.stdout);
    }
    s.docker(&["network", "create", "apinet"]).ok();
    let ni = s
        .docker(&[
            "network",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}}",
            "apinet",
        ])
        .ok();
    assert_eq!(ni.stdout.trim(), "apinet bridge");
    s.docker(&["network", "rm", "apinet"]).ok();
}

#[test]
fn the_socket_and_the_berth_cli_share_one_state() {
    let Some(s) = Service::start() else { return };
    s.docker(&["create", "--name", "made-by-docker", IMG, "true"])
        .ok();
    let ps = s.berth.run(&["ps", "-a", "--format", "{{.Names}}"]).ok();
    assert_eq!(lines(&ps.stdout), vec!["made-by-docker"]);
    s.berth.run(&["rm", "made-by-docker"]).ok();
    assert_eq!(s.docker(&["ps", "-aq"]).ok().stdout, "");
    // And the other way.
    s.berth
        .run(&["run", "-d", "--name", "made-by-berth", IMG, "sleep", "300"])
        .ok();
    let ps = s.docker(&["ps", "--format", "{{.Names}}"]).ok();
    assert_eq!(lines(&ps.stdout), vec!["made-by-berth"]);
    s.docker(&["rm", "-f", "made-by-berth"]).ok();
    let ps = s.berth.run(&["ps", "-a", "-q"]).ok();
    assert_eq!(ps.stdout, "");
}

#[test]
fn bad_input_gets_dockers_errors_and_the_server_keeps_serving() {
    let Some(s) = Service::start() else { return };
    let post = |path: &str, body: &[u8]| {
        s.raw(
            &format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            ),
            body,
        )
        .unwrap()
    };
    let r = post("/v1.41/containers/create", b"{\"Image\": ");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains(r#"{"message":"invalid JSON"#), "{r}");
    let r = post("/v1.41/containers/create", b"[1,2,3]");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let big = vec![b' '; 3 << 20];
    let r = post("/v1.41/containers/create", &big);
    assert!(r.starts_with("HTTP/1.1 413"), "{}", &r[..r.len().min(200)]);
    assert!(r.contains("\"message\""), "{r}");
    let r = post(
        "/v1.41/containers/create?name=x",
        br#"{"Image":"no-such/image:1"}"#,
    );
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let get = |path: &str| {
        s.raw(
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            b"",
        )
        .unwrap()
    };
    let r = get("/v1.41/no/such/endpoint");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(r.contains(r#"{"message":"page not found"}"#), "{r}");
    let r = get("/v1.99/info");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(
        r.contains("client version 1.99 is too new. Maximum supported API version is 1.47"),
        "{r}"
    );
    let r = get("/v1.41/containers/json?filters=%7Bbad");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = get("/containers/no-such/json");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(r.contains("No such container: no-such"), "{r}");
    // A client that goes away in the middle of a wait and of a followed
    // log leaves nothing behind: the container runs on and is removed.
    s.docker(&["run", "-d", "--name", "long", IMG, "sleep", "300"])
        .ok();
    for path in [
        "/v1.41/containers/long/wait",
        "/v1.41/containers/long/logs?follow=1&stdout=1",
    ] {
        let mut c = UnixStream::connect(&s.sock).unwrap();
        let method = if path.ends_with("wait") {
            "POST"
        } else {
            "GET"
        };
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut b = [0u8; 12];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"HTTP/1.1 200");
        drop(c);
    }
    let st = s
        .docker(&["inspect", "-f", "{{.State.Status}}", "long"])
        .ok();
    assert_eq!(st.stdout.trim(), "running");
    s.docker(&["rm", "-f", "long"]).ok();
    let r = get("/_ping");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("OK"), "{r}");
    assert!(r.to_ascii_lowercase().contains("api-version: 1.47"), "{r}");
}

#[test]
fn output_shapes_match_a_private_dockerd() {
    let Some(s) = Service::start() else { return };
    if !berth_tests::have("dockerd") || !berth_tests::have("skopeo") {
        skip("no dockerd or skopeo to compare with");
        return;
    }
    let d = match berth_tests::dockerd::Dockerd::start() {
        Ok(d) => d,
        Err(e) => {
            skip(&format!("dockerd did not start: {e}"));
            return;
        }
    };
    d.load_default_image(IMG).unwrap();
    let on_dockerd = |args: &[&str]| -> Out {
        let mut c = Command::new(s.cli);
        c.arg("-H")
            .arg(format!("unix://{}", d.socket()))
            .env("DOCKER_CONFIG", s.config.path())
            .args(args);
        run_command(
            c,
            None,
            Duration::from_secs(300),
            &format!("docker {}", args.join(" ")),
        )
    };
    for args in [
        vec!["run", "--rm", IMG, "echo", "hi"],
        vec!["create", "--name", "shape", "-l", "a=b", IMG, "echo", "x"],
        vec![
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Image}} {{.Command}} {{.State}} {{.Label \"a\"}}",
        ],
        vec![
            "inspect",
            "-f",
            "{{.Name}} {{.State.Status}} {{.Config.Cmd}} {{.HostConfig.AutoRemove}}",
            "shape",
        ],
        vec!["start", "-a", "shape"],
        vec!["ps", "-a", "--format", "{{.Names}} {{.State}}"],
        vec!["rm", "shape"],
        vec!["ps", "-a", "-q"],
    ] {
        let ours = s.docker(&args);
        let theirs = on_dockerd(&args);
        assert_eq!(
            (ours.code, ids_masked(&ours.stdout)),
            (theirs.code, ids_masked(&theirs.stdout)),
            "docker {args:?}\nberth stderr: {}\ndockerd stderr: {}",
            ours.stderr,
            theirs.stderr
        );
    }
}

#[test]
fn an_attach_waiting_for_a_start_by_the_berth_cli_gets_the_output() {
    let Some(s) = Service::start() else { return };
    // The container prints once /h/go exists, after the attach is in.
    let dir = tempfile::tempdir().unwrap();
    let bind = format!("{}:/h", dir.path().display());
    s.docker(&[
        "create",
        "--name",
        "waiter",
        "-v",
        &bind,
        IMG,
        "sh",
        "-c",
        "while [ ! -e /h/go ]; do sleep 0.1; done; echo out; echo err >&2",
    ])
    .ok();
    let since = berth_tests::events_now();
    let mut c = UnixStream::connect(&s.sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        c,
        "POST /v1.41/containers/waiter/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            c.read(&mut b).unwrap(),
            1,
            "{}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("application/vnd.docker.multiplexed-stream"),
        "{head}"
    );
    // Started by the other front end, not through this socket: the
    // waiting attach notices and attaches (the engine records it).
    s.berth.run(&["start", "waiter"]).ok();
    wait_for("the server's attach", || {
        let until = berth_tests::events_now();
        s.docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "event=attach",
            "--filter",
            "container=waiter",
            "--format",
            "{{.Action}}",
        ])
        .stdout
        .contains("attach")
    });
    std::fs::write(dir.path().join("go"), "").unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    // stdcopy frames: [stream, 0, 0, 0, len BE] + payload.
    let mut got = Vec::new();
    let mut rest = &out[..];
    while rest.len() >= 8 {
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        got.push((
            rest[0],
            String::from_utf8_lossy(&rest[8..8 + len]).into_owned(),
        ));
        rest = &rest[8 + len..];
    }
    assert!(rest.is_empty(), "{out:?}");
    got.sort();
    assert_eq!(
        got,
        vec![(1, "out\n".to_string()), (2, "err\n".to_string())]
    );
    s.docker(&["rm", "waiter"]).ok();
}

#[test]
fn pulls_through_the_socket_from_a_local_registry() {
    let Some((s, reg)) = service_and_registry(false, false) else {
        return;
    };
    let src = default_image_src();
    reg.seed(&src, "api/pulled:v1", "");
    let name = format!("{}/api/pulled:v1", reg.host());
    let out = s.docker(&["pull", &name]).ok();
    assert!(
        out.stdout.contains("Pulling from api/pulled"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("Status: Downloaded newer image for {name}")),
        "{}",
        out.stdout
    );
    let images = s
        .docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .ok();
    assert!(
        lines(&images.stdout).contains(&name.as_str()),
        "{}",
        images.stdout
    );
    // A run of an image the engine lacks: the CLI pulls it, then runs it.
    reg.seed(&src, "api/run-me:v1", "");
    let name = format!("{}/api/run-me:v1", reg.host());
    let out = s
        .docker(&["run", "--rm", &name, "echo", "pulled-and-ran"])
        .ok();
    assert_eq!(
        out.stdout.lines().last(),
        Some("pulled-and-ran"),
        "{}",
        out.stdout
    );
    // An unreachable registry ends the progress stream with an error.
    let out = s.docker(&["pull", "127.0.0.1:1/none:v1"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("127.0.0.1:1"), "{}", out.stderr);
}

#[test]
fn saves_loads_pushes_and_shows_history_through_the_socket() {
    let Some(s) = Service::start() else { return };
    // history: the same rows as berth's own command, the image id first.
    let id = s
        .docker(&["image", "inspect", "--format", "{{.Id}}", IMG])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let dh = s
        .docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.ID}}|{{.CreatedBy}}",
            IMG,
        ])
        .ok();
    let rows = lines(&dh.stdout);
    assert!(!rows.is_empty(), "{}", dh.stdout);
    assert!(rows[0].starts_with(&format!("{id}|")), "{}", dh.stdout);
    let bh = s.berth.run(&["history", "-q", IMG]).ok();
    assert_eq!(lines(&bh.stdout).len(), rows.len(), "{}", bh.stdout);
    let out = s.docker(&["history", "no/such:image"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("no/such"), "{}", out.stderr);

    // save -> rmi -> load gives the image back under its name.
    s.docker(&["tag", IMG, "saved/copy:v1"]).ok();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("copy.tar");
    s.docker(&["save", "-o", file.to_str().unwrap(), "saved/copy:v1"])
        .ok();
    let names: Vec<String> = tar::Archive::new(std::fs::File::open(&file).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
    s.docker(&["rmi", "saved/copy:v1"]).ok();
    let out = s.docker(&["load", "-i", file.to_str().unwrap()]).ok();
    assert!(
        out.stdout.contains("Loaded image: saved/copy:v1"),
        "{}",
        out.stdout
    );
    let images = s
        .docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .ok();
    assert!(
        lines(&images.stdout).contains(&"saved/copy:v1"),
        "{}",
        images.stdout
    );
    // A missing image fails before anything is written; garbage is no archive.
    let out = s.docker(&[
        "save",
        "-o",
        dir.path().join("none.tar").to_str().unwrap(),
        "no/such:image",
    ]);
    assert_ne!(out.code, 0);
    assert!(!dir.path().join("none.tar").exists());
    let out = s.docker_stdin(&["load"], b"this is not a tar archive at all");
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(!out.stderr.is_empty());
    s.docker(&["version"]).ok();

    // push to a local registry, then pull it back by digest.
    if let Some(why) = berth_tests::registry::tools_missing() {
        skip(&why);
        return;
    }
    let reg = berth_tests::registry::Registry::start(false);
    let name = format!("{}/api/pushed:v1", reg.host());
    s.docker(&["tag", IMG, &name]).ok();
    let out = s.docker(&["push", &name]).ok();
    assert!(
        out.stdout.contains(&format!(
            "The push refers to repository [{}/api/pushed]",
            reg.host()
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("v1: digest: sha256:"), "{}", out.stdout);
    let digest = reg.digest("api/pushed:v1");
    assert!(
        out.stdout.contains(&digest),
        "{digest} not in {}",
        out.stdout
    );
    // A second push finds every layer there.
    let again = s.docker(&["push", &name]).ok();
    assert!(
        again.stdout.contains("Layer already exists"),
        "{}",
        again.stdout
    );
    // Pushing an image the engine lacks is docker's error.
    let out = s.docker(&["push", &format!("{}/api/absent:v1", reg.host())]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
}

/// A one-file tar whose entry name is written raw (the tar crate's
/// builder refuses `..`).
fn raw_name_tar(name: &str) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.push(b'x');
    out.resize(1024, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn the_docker_cli_builds_through_the_socket() {
    let Some(s) = Service::start() else { return };
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {IMG}\nARG WHO=nobody\nCOPY hello.txt /hello.txt\nRUN echo \"built by $WHO\" > /who && echo step-output\n"
        ),
    )
    .unwrap();
    std::fs::write(ctx.path().join("hello.txt"), "hello from the context\n").unwrap();
    std::fs::write(ctx.path().join(".dockerignore"), "secret\n").unwrap();
    std::fs::write(ctx.path().join("secret"), "not sent\n").unwrap();
    let dir = ctx.path().to_str().unwrap();
    let mut c = s.docker_cmd();
    c.env("DOCKER_BUILDKIT", "0").args([
        "build",
        "-t",
        "api/built:v1",
        "--build-arg",
        "WHO=the-api",
        dir,
    ]);
    let out = run_command(c, None, Duration::from_secs(600), "docker build").ok();
    assert!(out.stdout.contains("Step 1/4 : FROM"), "{}", out.stdout);
    assert!(out.stdout.contains("step-output"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Successfully tagged api/built:v1"),
        "{}",
        out.stdout
    );
    let run = s
        .docker(&["run", "--rm", "api/built:v1", "cat", "/hello.txt", "/who"])
        .ok();
    assert_eq!(run.stdout, "hello from the context\nbuilt by the-api\n");
    // --label: the image config's Labels, set by a LABEL step docker's
    // classic builder appends (keys sorted); the steps before are cached.
    let mut c = s.docker_cmd();
    c.env("DOCKER_BUILDKIT", "0").args([
        "build",
        "-t",
        "api/built:labelled",
        "--build-arg",
        "WHO=the-api",
        "--label",
        "org.example.b=two words",
        "--label",
        "a=1",
        dir,
    ]);
    let out = run_command(c, None, Duration::from_secs(600), "docker build --label").ok();
    assert!(
        out.stdout
            .contains("Step 5/5 : LABEL \"a\"='1' \"org.example.b\"='two words'"),
        "{}",
        out.stdout
    );
    // (The base image's own labels stay beside them.)
    let labels = s
        .docker(&[
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"a\"}}|{{index .Config.Labels \"org.example.b\"}}|{{index .Config.Labels \"org.opencontainers.image.title\"}}",
            "api/built:labelled",
        ])
        .ok();
    assert_eq!(labels.stdout.trim(), "1|two words|berth busybox");
    // A container of the image has them in its config.
    s.docker(&["create", "--name", "lab", "api/built:labelled"])
        .ok();
    let l = s
        .docker(&["inspect", "-f", "{{index .Config.Labels \"a\"}}", "lab"])
        .ok();
    assert_eq!(l.stdout.trim(), "1");
    s.docker(&["rm", "lab"]).ok();
    let unlabelled = s
        .docker(&[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Labels}}",
            "api/built:v1",
        ])
        .ok();
    assert!(
        !unlabelled.stdout.contains("org.example.b"),
        "{}",
        unlabelled.stdout
    );
    // The same image in berth's own list.
    let images = s.berth.run(&["images"]).ok();
    assert!(
        images
            .stdout
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["api/built", "v1"])),
        "{}",
        images.stdout
    );
    // -q prints only the id; a failing RUN is docker's error and code.
    let mut c = s.docker_cmd();
    c.env("DOCKER_BUILDKIT", "0").args(["build", "-q", dir]);
    let q = run_command(c, None, Duration::from_secs(600), "docker build -q").ok();
    assert!(q.stdout.trim().starts_with("sha256:"), "{}", q.stdout);
    std::fs::write(
        ctx.path().join("Dockerfile.fail"),
        format!("FROM {IMG}\nRUN exit 3\n"),
    )
    .unwrap();
    let mut c = s.docker_cmd();
    c.env("DOCKER_BUILDKIT", "0")
        .arg("build")
        .arg("-f")
        .arg(ctx.path().join("Dockerfile.fail"))
        .arg(dir);
    let out = run_command(c, None, Duration::from_secs(600), "docker build (failing)");
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("returned a non-zero code: 3"),
        "{}",
        out.stderr
    );
    // A context entry that leaves the context is refused; the server serves on.
    let body = raw_name_tar("../evil");
    let head = format!(
        "POST /build HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let answer = s.raw(&head, &body).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("outside of the build context"), "{answer}");
    s.docker(&["version"]).ok();
}

/// The entry names of a tar file.
fn tar_names(p: &Path) -> Vec<String> {
    tar::Archive::new(std::fs::File::open(p).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn containers_export_through_the_socket_and_the_cli() {
    let Some(s) = Service::start() else { return };
    s.docker(&["create", "--name", "ex", IMG, "true"]).ok();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    s.docker(&["export", "-o", a.to_str().unwrap(), "ex"]).ok();
    s.berth
        .run(&["export", "-o", b.to_str().unwrap(), "ex"])
        .ok();
    let names = tar_names(&a);
    assert!(names.iter().any(|n| n == "bin/busybox"), "{names:?}");
    assert_eq!(names, tar_names(&b));
    let out = s.docker(&[
        "export",
        "-o",
        dir.path().join("c.tar").to_str().unwrap(),
        "no-such",
    ]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("No such container"), "{}", out.stderr);
    let out = s.berth.run(&[
        "export",
        "-o",
        dir.path().join("d.tar").to_str().unwrap(),
        "no-such",
    ]);
    assert_ne!(out.code, 0);
    assert!(!dir.path().join("d.tar").exists());
}

#[test]
fn diff_and_commit_through_the_socket() {
    let Some(s) = Service::start() else { return };
    s.docker(&[
        "run",
        "--name",
        "dc",
        IMG,
        "sh",
        "-c",
        "mkdir /made; echo hi > /made/f; rm /bin/ls",
    ])
    .ok();
    let out = s.docker(&["diff", "dc"]).ok();
    assert_eq!(out.stdout, "C /bin\nD /bin/ls\nA /made\nA /made/f\n");
    assert_eq!(out.stdout, s.berth.run(&["diff", "dc"]).ok().stdout);
    let out = s.docker(&["diff", "no-such"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("No such container"), "{}", out.stderr);

    s.docker(&[
        "commit",
        "-c",
        "ENV MADE=yes",
        "-c",
        "CMD [\"cat\", \"/made/f\"]",
        "-m",
        "through the socket",
        "dc",
        "committed/dc:1",
    ])
    .ok();
    let out = s.docker(&["run", "--rm", "committed/dc:1"]).ok();
    assert_eq!(out.stdout, "hi\n");
    let out = s.docker(&[
        "run",
        "--rm",
        "committed/dc:1",
        "sh",
        "-c",
        "echo $MADE; ls /bin/ls",
    ]);
    assert_eq!(out.stdout, "yes\n", "{}", out.stderr);
    assert_ne!(out.code, 0, "/bin/ls was removed before the commit");
    let out = s
        .berth
        .run(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .ok();
    assert!(out.stdout.contains("committed/dc:1"), "{}", out.stdout);
    let out = s.docker(&["commit", "dc", "Bad/Name"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("invalid reference format"),
        "{}",
        out.stderr
    );
    let out = s.docker(&["commit", "no-such", "x:1"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("No such container"), "{}", out.stderr);
}

#[test]
fn docker_login_checks_credentials_through_the_socket() {
    use berth_tests::registry::{PASS, USER};
    let Some((s, reg)) = service_and_registry(false, true) else {
        return;
    };
    let h = reg.host();
    let out = s.docker_stdin(&["login", "-u", USER, "--password-stdin", &h], b"wrong\n");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("unauthorized"), "{}", out.stderr);
    let out = s.docker_stdin(
        &["login", "-u", USER, "--password-stdin", &h],
        format!("{PASS}\n").as_bytes(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
    // Hostile or empty bodies are a 400, and the server serves on.
    for body in ["{}", "{\"username\":\"a:b\",\"password\":\"x\"}", "[1"] {
        let head = format!(
            "POST /v1.41/auth HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let reply = s.raw(&head, body.as_bytes()).unwrap();
        assert!(reply.starts_with("HTTP/1.1 400"), "{body}: {reply}");
    }
    s.docker(&["version"]).ok();
}

#[test]
fn search_lists_a_registrys_catalog_through_the_socket_and_the_cli() {
    let Some((s, reg)) = service_and_registry(false, false) else {
        return;
    };
    let src = default_image_src();
    for name in ["found/busybox:v1", "found/busytool:v1", "other/thing:v1"] {
        reg.seed(&src, name, "");
    }
    let h = reg.host();
    // Matched case-folded.
    let term = format!("{h}/Busy");
    let out = s.docker(&["search", &term]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("OFFICIAL"),
        "{}",
        out.stdout
    );
    let names: Vec<&str> = lines[1..]
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let want = [format!("{h}/found/busybox"), format!("{h}/found/busytool")];
    assert_eq!(names, want, "{}", out.stdout);
    // berth's own verb gives the same rows.
    assert_eq!(s.berth.run(&["search", &term]).ok().stdout, out.stdout);
    let out = s
        .docker(&["search", "--limit", "1", "--format", "{{.Name}}", &term])
        .ok();
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    let out = s.berth.run(&["search", "--filter", "stars=x", &term]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("Invalid filter"), "{}", out.stderr);
    let out = s.berth.run(&["search", "--limit", "101", &term]);
    assert_ne!(out.code, 0);
}

#[test]
fn the_docker_cli_imports_through_the_socket() {
    let Some(s) = Service::start() else { return };
    s.docker(&["create", "--name", "src", IMG, "true"]).ok();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("rootfs.tar");
    s.docker(&["export", "-o", tar.to_str().unwrap(), "src"])
        .ok();
    // A file: the CLI sends it as the body (fromSrc=-).
    let out = s
        .docker(&[
            "import",
            "-c",
            "CMD [\"echo\", \"imported\"]",
            "-c",
            "ENV A=1",
            "-m",
            "through the socket",
            tar.to_str().unwrap(),
            "viaapi:1",
        ])
        .ok();
    let id = out.stdout.trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "{}",
        out.stdout
    );
    let run = s.docker(&["run", "--rm", "viaapi:1"]).ok();
    assert_eq!(run.stdout, "imported\n");
    // One state: the berth CLI sees it, with docker's fields.
    let v = s.berth.inspect("viaapi:1");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Comment"], "through the socket");
    assert_eq!(v["Config"]["Env"], serde_json::json!(["A=1"]));
    // Stdin, gzip-compressed, untagged: docker's default comment.
    let raw = std::fs::read(&tar).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let out = s.docker_stdin(&["import", "-"], &gz.finish().unwrap()).ok();
    let v = s.berth.inspect(out.stdout.trim());
    assert_eq!(v["Comment"], "Imported from -");
    // Refusals are docker's errors, and the server keeps serving.
    let bad = s.docker(&["import", "-c", "RUN true", tar.to_str().unwrap()]);
    assert_eq!(bad.code, 1);
    assert_eq!(
        bad.stderr.trim(),
        "Error response from daemon: run is not a valid change command"
    );
    let bad = s.docker_stdin(&["import", "-"], b"not a tarball at all\n");
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.starts_with("Error response from daemon: "),
        "{}",
        bad.stderr
    );
    let bad = s.docker(&[
        "import",
        "--platform",
        "windows/amd64",
        tar.to_str().unwrap(),
    ]);
    assert_eq!(
        bad.stderr.trim(),
        "Error response from daemon: operating system is not supported"
    );
    // A URL the service fetches: progress, then the id.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/rootfs.tar", l.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        let _ = write!(
            c,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            raw.len()
        );
        let _ = c.write_all(&raw);
    });
    let out = s.docker(&["import", &url, "fromurl"]).ok();
    server.join().unwrap();
    assert!(
        out.stdout.starts_with("Downloading from "),
        "{}",
        out.stdout
    );
    let id = out.stdout.trim().lines().last().unwrap().to_string();
    assert_eq!(s.berth.inspect("fromurl")["Id"], id.as_str());
    assert_eq!(
        s.berth.inspect("fromurl")["Comment"],
        format!("Imported from {url}")
    );
    // A missing URL: docker's error (the listener is gone: refused).
    let bad = s.docker(&["import", &url]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.starts_with("Error response from daemon: "),
        "{}",
        bad.stderr
    );
    assert!(s.docker(&["version"]).code == 0);
}

/// One raw HTTP exchange by a client that sends its whole body before it
/// reads (as Python's http.client does): whether every byte of `body` was
/// taken, and the answer.
fn send_all_then_read(sock: &Path, head: &str, body: &[u8]) -> (std::io::Result<()>, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
    let sent = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (sent, String::from_utf8_lossy(&out).into_owned())
}

/// A tar whose first entry climbs out of the directory (the engine
/// refuses it) followed by `pad` bytes of a second entry.
fn refused_then_big_tar(pad: usize) -> Vec<u8> {
    let mut t = raw_name_tar("../escape");
    // raw_name_tar ends with the end-of-archive blocks: a second entry
    // goes where they start.
    t.truncate(1024);
    let mut b = tar::Builder::new(t);
    let mut h = tar::Header::new_gnu();
    h.set_size(pad as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "big", std::io::repeat(7).take(pad as u64))
        .unwrap();
    b.into_inner().unwrap()
}

/// Rounds of each case below: the failure they guard against was a race.
const UPLOAD_ROUNDS: usize = 4;

#[test]
fn an_error_answered_before_an_upload_is_read_reaches_the_client() {
    let Some(s) = Service::start() else { return };
    let big = 64 << 20;
    // docker build with a parameter the server refuses before it reads
    // the context (an isolation Linux lacks), with a 64 MiB context: the
    // CLI prints the server's error, not a broken pipe on its upload.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {IMG}\n")).unwrap();
    std::fs::write(ctx.path().join("big.bin"), vec![0x5a; big]).unwrap();
    for round in 0..UPLOAD_ROUNDS {
        let mut c = s.docker_cmd();
        c.env("DOCKER_BUILDKIT", "0")
            .args(["build", "--isolation", "hyperv", "-t", "never:made"])
            .arg(ctx.path());
        let out = run_command(
            c,
            None,
            Duration::from_secs(300),
            "docker build --isolation",
        );
        assert_eq!(out.code, 1, "round {round}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("Error response from daemon: unsupported isolation: \"hyperv\""),
            "round {round}: {}",
            out.stderr
        );
    }
    // docker load of a 64 MiB file that is no archive: the server's error
    // (in its stream: the body is read first).
    let junk = ctx.path().join("junk.tar");
    std::fs::write(&junk, vec![0x5a; big]).unwrap();
    for round in 0..UPLOAD_ROUNDS {
        let out = s.docker(&["load", "-i", junk.to_str().unwrap()]);
        assert_eq!(out.code, 1, "round {round}: {}", out.stderr);
        assert!(
            out.stderr.contains("invalid archive"),
            "round {round}: {}",
            out.stderr
        );
    }
    // A client that sends its whole body before it reads: the server
    // takes all of it (up to its bound) and answers.
    let body = vec![0x5a; big];
    let put = |path: &str, len: usize| {
        format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        )
    };
    let post = |path: &str, len: usize| put(path, len).replacen("PUT", "POST", 1);
    let cases: Vec<(String, &[u8], &str, &str)> = vec![
        // A bad tag: refused before the context is read.
        (
            post("/v1.41/build?t=Not%20A%20Tag", big),
            &body,
            "HTTP/1.1 400",
            "invalid reference format",
        ),
        // A container that does not exist.
        (
            put("/v1.41/containers/nosuch/archive?path=/tmp", big),
            &body,
            "HTTP/1.1 404",
            "No such container",
        ),
        // A JSON body over the cap (1 MiB).
        (
            post("/v1.41/containers/create", 4 << 20),
            &body[..4 << 20],
            "HTTP/1.1 413",
            "exceeds the limit",
        ),
        // An import with a bad change, refused before the tarball is read.
        (
            post("/v1.41/images/create?fromSrc=-&changes=RUN%20true", big),
            &body,
            "HTTP/1.1 400",
            "run is not a valid change command",
        ),
    ];
    for (head, body, status, text) in &cases {
        for round in 0..UPLOAD_ROUNDS {
            let (sent, answer) = send_all_then_read(&s.sock, head, body);
            assert!(
                sent.is_ok(),
                "round {round}: {head}: the upload was cut off ({sent:?}); answer: {answer}"
            );
            assert!(
                answer.starts_with(status),
                "round {round}: {head}: {answer}"
            );
            assert!(answer.contains(text), "round {round}: {head}: {answer}");
        }
    }
    // An upload the engine refuses mid-way (its first entry leaves the
    // directory) into a running container: the rest is taken, the
    // refusal arrives.
    s.docker(&["run", "-d", "--init", "--name", "box", IMG, "sleep", "300"])
        .ok();
    let tar = refused_then_big_tar(big);
    for round in 0..UPLOAD_ROUNDS {
        let (sent, answer) = send_all_then_read(
            &s.sock,
            &put("/v1.41/containers/box/archive?path=/tmp", tar.len()),
            &tar,
        );
        assert!(sent.is_ok(), "round {round}: cut off ({sent:?}): {answer}");
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "round {round}: {answer}"
        );
    }
    assert_ne!(s.docker(&["exec", "box", "test", "-e", "/escape"]).code, 0);
    s.docker(&["rm", "-f", "box"]).ok();
    s.docker(&["version"]).ok();
}

#[test]
fn exec_it_under_script_and_events_followed_through_the_socket() {
    let Some(s) = Service::start() else { return };
    s.docker(&["run", "-d", "--name", "ev", IMG, "sleep", "300"])
        .ok();
    // `docker events` streams until stopped; only this container's.
    let mut ev = s.docker_cmd();
    ev.args([
        "events",
        "--filter",
        "container=ev",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
    ])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::null());
    let mut ev = ev.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = ev.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    // exec -it under script(1): a TTY in the exec, raw output.
    if berth_tests::have("script") {
        let cmd = format!(
            "DOCKER_HOST=unix://{} DOCKER_CONFIG={} {} exec -it ev sh -c 'tty >/dev/null && echo exec-tty-ok; exit 5'",
            s.sock.display(),
            s.config.path().display(),
            s.cli
        );
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]);
        let out = run_command(c, None, Duration::from_secs(300), "script docker exec -it");
        assert_eq!(out.code, 5, "{} {}", out.stdout, out.stderr);
        assert!(out.stdout.contains("exec-tty-ok\r\n"), "{:?}", out.stdout);
    } else {
        skip("no script(1) for exec -it");
    }
    s.docker(&["stop", "-t", "1", "ev"]).ok();
    // The stop shows as docker's die then stop, each named.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !seen.iter().any(|l: &String| l == "container stop ev") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("no stop event; saw {seen:?}"),
        }
    }
    let die = seen.iter().position(|l| l == "container die ev");
    let stop = seen.iter().position(|l| l == "container stop ev");
    assert!(die.is_some() && die < stop, "{seen:?}");
    // SAFETY: SIGTERM to the docker events client this test started.
    unsafe { libc::kill(ev.id() as i32, libc::SIGTERM) };
    let _ = ev.wait();
    s.docker(&["rm", "ev"]).ok();
}

#[test]
fn the_server_reconnects_to_an_engine_that_restarted() {
    let Some(s) = Service::start() else { return };
    // Requests leave idle engine connections behind for the next ones.
    s.docker(&["create", "--name", "before", IMG, "true"]).ok();
    for _ in 0..3 {
        let ps = s.docker(&["ps", "-a", "--format", "{{.Names}}"]).ok();
        assert_eq!(lines(&ps.stdout), vec!["before"]);
    }
    let old = s.berth.agent_pid().expect("the native agent runs");
    s.berth.kill_agent();
    // The next requests get a new engine, not the closed connections.
    let ps = s.docker(&["ps", "-a", "--format", "{{.Names}}"]).ok();
    assert_eq!(lines(&ps.stdout), vec!["before"]);
    let out = s.docker(&["run", "--rm", IMG, "echo", "after"]).ok();
    assert_eq!(out.stdout, "after\n");
    let new = s.berth.agent_pid().expect("a new native agent runs");
    assert_ne!(old, new);
    s.docker(&["rm", "before"]).ok();
}

/// The JSON body of `GET path` on the Engine API socket `sock` (HTTP/1.0:
/// the answer is the body until the socket closes, from either engine).
fn get_json(sock: &Path, path: &str) -> serde_json::Value {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The Engine API's stats object counts a container's network interfaces
/// (`networks`, per interface, loopback left out) and its cgroup's block
/// I/O (`blkio_stats.io_service_bytes_recursive`) as dockerd's does, so
/// `docker stats` shows NET I/O through berth's socket; a host-network
/// container has no interfaces of its own in either.
#[test]
fn stats_objects_count_networks_and_block_io_like_dockerds() {
    let Some(s) = Service::start() else { return };
    if !berth_tests::have("dockerd") {
        skip("no dockerd to compare with");
        return;
    }
    let d = berth_tests::dockerd::Dockerd::required();
    d.load_default_image(IMG).unwrap();
    let on_dockerd = |args: &[&str]| -> Out {
        let mut c = d.command();
        c.args(args);
        run_command(c, None, Duration::from_secs(300), &args.join(" "))
    };
    let on_berth = |args: &[&str]| s.docker(args);
    // (bridge container's stats, host-network container's stats, the CLI's
    // `Name NetIO BlockIO` lines).
    // On a network of its own: the test's dockerd has no default bridge.
    let exercise = |run: &dyn Fn(&[&str]) -> Out, sock: &Path| {
        run(&["network", "create", "statnet"]).ok();
        run(&[
            "run",
            "-d",
            "--name",
            "io",
            "--network",
            "statnet",
            IMG,
            "sleep",
            "300",
        ])
        .ok();
        let gw = run(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}",
            "io",
        ])
        .ok()
        .stdout;
        run(&["exec", "io", "ping", "-c", "3", "-W", "2", gw.trim()]).ok();
        run(&["exec", "io", "ping", "-c", "3", "-s", "1000", "127.0.0.1"]).ok();
        run(&[
            "run",
            "-d",
            "--name",
            "hostnet",
            "--network",
            "host",
            IMG,
            "sleep",
            "300",
        ])
        .ok();
        let bridge = get_json(sock, "/containers/io/stats?stream=false");
        let host = get_json(sock, "/containers/hostnet/stats?stream=false");
        let lines = run(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.NetIO}}",
            "io",
            "hostnet",
        ])
        .ok()
        .stdout;
        run(&["rm", "-f", "io", "hostnet"]).ok();
        run(&["network", "rm", "statnet"]).ok();
        (bridge, host, lines)
    };
    let (db, dh, dl) = exercise(&on_dockerd, Path::new(d.socket()));
    let (bb, bh, bl) = exercise(&on_berth, &s.sock);
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    // One interface, eth0, with dockerd's eight counters.
    assert_eq!(
        keys(&bb["networks"]),
        keys(&db["networks"]),
        "berth {bb}\ndocker {db}"
    );
    assert_eq!(keys(&bb["networks"]), ["eth0"], "{bb}");
    assert_eq!(
        keys(&bb["networks"]["eth0"]),
        keys(&db["networks"]["eth0"]),
        "berth {bb}\ndocker {db}"
    );
    let eth0 = &bb["networks"]["eth0"];
    let n = |k: &str| eth0[k].as_u64().unwrap_or_else(|| panic!("{k}: {eth0}"));
    // Three echo requests out, three replies in (98 bytes each on the
    // wire); the loopback pings are not counted.
    assert!(n("rx_packets") >= 3 && n("tx_packets") >= 3, "{eth0}");
    assert!(n("rx_bytes") >= 3 * 98 && n("tx_bytes") >= 3 * 98, "{eth0}");
    assert!(n("rx_bytes") < 3 * 1000, "loopback counted: {eth0}");
    // A host-network container: no interfaces of its own in either.
    assert_eq!(
        bh.get("networks").map(keys),
        dh.get("networks").map(keys),
        "berth {bh}\ndocker {dh}"
    );
    // Block I/O: the same lists (rows of major, minor, op and value; on
    // cgroup v1 every list, [] where the cgroup counted nothing; on v2
    // only the bytes, null when empty).
    let rows = |v: &serde_json::Value| -> Vec<(String, Option<Vec<String>>)> {
        let blkio = v["blkio_stats"].as_object().cloned().unwrap_or_default();
        blkio
            .into_iter()
            .map(|(k, list)| {
                let row_keys = list.as_array().map(|a| {
                    let mut keys: Vec<String> = a.iter().flat_map(keys).collect();
                    keys.sort();
                    keys.dedup();
                    keys
                });
                (k, row_keys)
            })
            .collect()
    };
    assert_eq!(rows(&bb), rows(&db), "berth {bb}\ndocker {db}");
    // The CLI reads NET I/O from them: some for the bridge container, none
    // for the host-network one, as on dockerd.
    let net = |l: &str, name: &str| -> String {
        l.lines()
            .find_map(|x| x.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {l}"))
            .to_string()
    };
    assert_ne!(net(&bl, "io"), "0B / 0B", "{bl}");
    assert_ne!(net(&dl, "io"), "0B / 0B", "{dl}");
    assert_eq!(
        net(&bl, "hostnet"),
        net(&dl, "hostnet"),
        "berth {bl}\ndocker {dl}"
    );
}

/// A pull the registry refuses: the registry's error as dockerd prints
/// it, and no `Pulling from` line before it (that comes once the registry
/// resolved the reference), through berth's socket and from `berth pull`.
#[test]
fn a_refused_pull_prints_the_registrys_error_as_dockerd() {
    let Some((s, reg)) = service_and_registry(false, false) else {
        return;
    };
    if !berth_tests::have("dockerd") {
        skip("no dockerd to compare with");
        return;
    }
    reg.seed(&default_image_src(), "t/here:v1", "");
    let d = berth_tests::dockerd::Dockerd::required();
    let h = reg.host();
    for name in [format!("{h}/t/nope"), format!("{h}/t/here:v9")] {
        let docker = Out::from(d.docker(&["pull", &name]).unwrap());
        assert_ne!(docker.code, 0, "{}", docker.stdout);
        let ours = s.docker(&["pull", &name]);
        assert_eq!(
            (ours.code, &ours.stdout, &ours.stderr),
            (docker.code, &docker.stdout, &docker.stderr),
            "{name} through berth's socket, then on dockerd"
        );
        let cli = s.berth.run(&["pull", &name]);
        assert_eq!(
            (cli.code, cli.stderr.as_str()),
            (docker.code, docker.stderr.as_str()),
            "berth pull {name}, then docker pull"
        );
    }
}
