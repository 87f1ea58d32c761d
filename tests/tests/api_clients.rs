//! berth's Docker Engine API socket driven by the other real clients:
//! docker-compose 1.29 (Debian, Python), the Python docker SDK (PyPI
//! `docker`, from the venv scripts/deps.sh makes, else the one Debian
//! ships with docker-compose), and the docker CLI's verbs that need the
//! newer endpoints (cp both ways, system df, top, stats, prune, update,
//! network connect, CapAdd/CapDrop/Privileged, Mounts). Natively.
// Drives the Linux builds of berth and berth-agent (native placement).
#![cfg(target_os = "linux")]

use berth_tests::{run_command, skip, wait_for, Berth, Out, DEFAULT_IMAGE as IMG};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// A `berth system service` on a private socket, stopped (by PID) on drop.
struct Service {
    berth: Berth,
    child: Child,
    sock: PathBuf,
    config: tempfile::TempDir,
}

impl Service {
    fn start() -> Service {
        let berth = Berth::new().with_default_image();
        let (sock, child) = berth.spawn_api_service();
        let s = Service {
            berth,
            child,
            sock,
            config: tempfile::tempdir().unwrap(),
        };
        wait_for("the API socket", || {
            s.raw("GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        s
    }

    fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    fn raw(&self, req: &str) -> std::io::Result<String> {
        let mut s = UnixStream::connect(&self.sock)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        s.write_all(req.as_bytes())?;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// `prog` with DOCKER_HOST pointed at the socket.
    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.config.path());
        c
    }

    #[track_caller]
    fn run(&self, prog: &str, args: &[&str], cwd: Option<&Path>) -> Out {
        let mut c = self.cmd(prog);
        c.args(args);
        if let Some(d) = cwd {
            c.current_dir(d);
        }
        run_command(
            c,
            None,
            Duration::from_secs(300),
            &format!("{prog} {}", args.join(" ")),
        )
    }

    /// The docker CLI (Debian's 20.10 where present).
    #[track_caller]
    fn docker(&self, args: &[&str]) -> Out {
        self.run(docker_cli().expect("a docker CLI"), args, None)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to the service this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn docker_cli() -> Option<&'static str> {
    ["/usr/bin/docker", "/usr/local/bin/docker"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn docker_compose_1_29_runs_a_project_through_the_socket() {
    let compose = "/usr/bin/docker-compose";
    if !Path::new(compose).exists() {
        skip("no docker-compose at /usr/bin/docker-compose (Debian docker-compose)");
        return;
    }
    let s = Service::start();
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("shop");
    std::fs::create_dir(&proj).unwrap();
    let port = free_port();
    std::fs::write(
        proj.join("docker-compose.yml"),
        format!(
            r#"version: "3.8"
services:
  web:
    image: {IMG}
    command: ["sh", "-c", "echo hello-from-volume > /www/index.html; echo web-up; exec httpd -f -p 8080 -h /www"]
    init: true
    ports:
      - "127.0.0.1:{port}:8080"
    volumes:
      - data:/www
    networks: [back]
  client:
    image: {IMG}
    command: ["sh", "-c", "echo client-up; exec sleep 300"]
    init: true
    depends_on: [web]
    networks:
      back:
        aliases: [shopper]
volumes:
  data:
networks:
  back:
"#
        ),
    )
    .unwrap();
    let dc = |args: &[&str]| s.run(compose, args, Some(&proj));
    dc(&["up", "-d"]).ok();
    // Both up, once each (labels are ANDed), with the port.
    let ps = dc(&["ps"]).ok().stdout;
    let rows: Vec<&str> = ps.lines().filter(|l| l.starts_with("shop_")).collect();
    assert_eq!(rows.len(), 2, "{ps}");
    assert!(
        rows.iter().any(|r| r.starts_with("shop_web_1")
            && r.contains(" Up ")
            && r.contains(&format!("127.0.0.1:{port}->8080/tcp"))),
        "{ps}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("shop_client_1") && r.contains(" Up ")),
        "{ps}"
    );
    let q = dc(&["ps", "-q"]).ok().stdout;
    assert_eq!(q.lines().count(), 2, "{q}");
    // The published port answers from the volume the web service wrote.
    let mut page = String::new();
    wait_for("the published port", || {
        page = http_get(port).unwrap_or_default();
        page.contains("hello-from-volume")
    });
    // Logs of both services.
    wait_for("both services' logs", || {
        let l = dc(&["logs", "--no-color"]).stdout;
        l.contains("web-up") && l.contains("client-up")
    });
    // exec: the network resolves the service name; the alias works too.
    let out = dc(&["exec", "-T", "client", "wget", "-qO-", "http://web:8080/"]).ok();
    assert_eq!(out.stdout, "hello-from-volume\n");
    let out = dc(&["exec", "-T", "web", "nslookup", "shopper"]);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    let out = dc(&["exec", "-T", "client", "sh", "-c", "exit 3"]);
    assert_eq!(out.code, 3);
    // One state: berth sees the project's containers, volume and network.
    let names = s.berth.run(&["ps", "--format", "{{.Names}}"]).ok().stdout;
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, vec!["shop_client_1", "shop_web_1"]);
    s.berth.run(&["volume", "inspect", "shop_data"]).ok();
    s.berth.run(&["network", "inspect", "shop_back"]).ok();
    // stop, then down -v removes containers, network and volume.
    dc(&["stop"]).ok();
    let ps = dc(&["ps"]).ok().stdout;
    assert!(ps.contains("Exit"), "{ps}");
    // rm: the stopped containers go, the volume and network stay for down.
    dc(&["rm", "-f"]).ok();
    assert_eq!(s.docker(&["ps", "-aq"]).ok().stdout, "");
    s.berth.run(&["volume", "inspect", "shop_data"]).ok();
    dc(&["down", "-v"]).ok();
    assert_eq!(s.docker(&["ps", "-aq"]).ok().stdout, "");
    let vols = s.docker(&["volume", "ls", "-q"]).ok().stdout;
    assert!(!vols.contains("shop_data"), "{vols}");
    let nets = s
        .docker(&["network", "ls", "--format", "{{.Name}}"])
        .ok()
        .stdout;
    assert!(!nets.contains("shop_back"), "{nets}");
    assert!(http_get(port).is_err(), "port {port} still answers");
}

/// docker-compose 1.29 builds a service that has `build:` through the
/// socket: with the docker CLI (compose's default, `docker build
/// --iidfile`, the classic builder) and with its own Python client
/// (`COMPOSE_DOCKER_CLI_BUILD=0`, `POST /build`); `up --build` rebuilds
/// and recreates; a failing build is compose's error.
#[test]
fn docker_compose_1_29_builds_services_through_the_socket() {
    let compose = "/usr/bin/docker-compose";
    if !Path::new(compose).exists() {
        skip("no docker-compose at /usr/bin/docker-compose (Debian docker-compose)");
        return;
    }
    let Some(cli) = docker_cli() else {
        skip("no docker CLI (docker-compose builds with it by default)");
        return;
    };
    let s = Service::start();
    let dir = tempfile::tempdir().unwrap();
    let proj = dir.path().join("kit");
    std::fs::create_dir(&proj).unwrap();
    let dockerfile = |greeting_file: &str| {
        std::fs::write(
            proj.join("Dockerfile"),
            format!("FROM {IMG}\nARG GREETING=unset\nCOPY {greeting_file} /suffix\nRUN echo \"$GREETING $(cat /suffix)\" > /greeting\nCMD [\"cat\", \"/greeting\"]\n"),
        )
        .unwrap()
    };
    std::fs::write(proj.join("one.txt"), "one\n").unwrap();
    std::fs::write(proj.join("two.txt"), "two\n").unwrap();
    dockerfile("one.txt");
    std::fs::write(
        proj.join("docker-compose.yml"),
        format!(
            r#"version: "3.8"
services:
  app:
    build:
      context: .
      args:
        GREETING: built-by-compose
      labels:
        org.example.kit: from-compose
    image: kit/app:v1
  side:
    image: {IMG}
    command: ["sh", "-c", "echo side-up; exec sleep 300"]
    init: true
    depends_on: [app]
"#
        ),
    )
    .unwrap();
    // compose runs `docker build`: the CLI found first on PATH.
    let path = format!(
        "{}:{}",
        Path::new(cli).parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dc = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = s.cmd(compose);
        c.env("PATH", &path).args(args).current_dir(&proj);
        for (k, v) in env {
            c.env(k, v);
        }
        run_command(
            c,
            None,
            Duration::from_secs(600),
            &format!("docker-compose {}", args.join(" ")),
        )
    };
    let greeting = || s.docker(&["run", "--rm", "kit/app:v1"]).ok().stdout;
    // `build: labels:` (POST /build's labels) on the image.
    let label = || {
        s.docker(&[
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.example.kit\"}}",
            "kit/app:v1",
        ])
        .ok()
        .stdout
    };
    // The docker CLI's build (compose's default).
    let out = dc(&[], &["build"]).ok();
    assert!(
        out.stdout.contains("Successfully tagged kit/app:v1"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(greeting(), "built-by-compose one\n");
    assert_eq!(label(), "from-compose\n");
    let images = s.berth.run(&["images"]).ok().stdout;
    assert!(
        images
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["kit/app", "v1"])),
        "{images}"
    );
    // compose's own client (POST /build from Python), after a change.
    dockerfile("two.txt");
    let out = dc(&[("COMPOSE_DOCKER_CLI_BUILD", "0")], &["build"]).ok();
    assert!(
        out.stdout.contains("Successfully tagged kit/app:v1"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(greeting(), "built-by-compose two\n");
    assert_eq!(label(), "from-compose\n");
    // up --build: built, then run; again after a change: rebuilt, and the
    // containers recreated (compose reads the old image's ContainerConfig).
    for (round, file) in [(1, "one.txt"), (2, "two.txt")] {
        dockerfile(file);
        dc(&[], &["up", "-d", "--build"]).ok();
        let want = format!("built-by-compose {}", file.trim_end_matches(".txt"));
        wait_for("the built service's output", || {
            dc(&[], &["logs", "--no-color", "app"])
                .stdout
                .contains(&want)
        });
        let ps = dc(&[], &["ps"]).ok().stdout;
        assert!(
            ps.lines()
                .any(|l| l.starts_with("kit_side_1") && l.contains(" Up ")),
            "round {round}: {ps}"
        );
    }
    // A failing build: compose's error, nonzero.
    std::fs::write(proj.join("Dockerfile"), format!("FROM {IMG}\nRUN exit 3\n")).unwrap();
    for env in [&[][..], &[("COMPOSE_DOCKER_CLI_BUILD", "0")][..]] {
        let out = dc(env, &["build"]);
        assert_ne!(out.code, 0, "{env:?}: {}", out.stdout);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains("returned a non-zero code: 3"),
            "{env:?}: {all}"
        );
        assert!(all.contains("failed to build"), "{env:?}: {all}");
    }
    dc(&[], &["down", "--rmi", "local"]).ok();
    assert_eq!(s.docker(&["ps", "-aq"]).ok().stdout, "");
}

/// A Python with the docker SDK: the venv scripts/deps.sh makes from
/// PyPI, a python3 on PATH that has it, or Debian's (docker-compose's
/// dependency).
fn python_with_sdk() -> Option<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cache = std::env::var("BERTH_CACHE_DIR").unwrap_or_else(|_| format!("{home}/.cache/berth"));
    let candidates = [
        PathBuf::from(cache).join("py-docker/bin/python3"),
        PathBuf::from("python3"),
        PathBuf::from("/usr/bin/python3"),
    ];
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import docker"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

const SDK_SMOKE: &str = r#"
import sys, docker
img = sys.argv[1]
c = docker.DockerClient(base_url=sys.argv[2], version="auto")
print("sdk", docker.__version__, "api", c.api.api_version)
assert c.ping()
assert any(img + ":latest" in i.tags for i in c.images.list()), c.images.list()
out = c.containers.run(img, ["sh", "-c", "echo hello; echo err >&2"], remove=True)
assert out == b"hello\n", out
ct = c.containers.run(img, ["sh", "-c", "echo started; exec sleep 300"], detach=True,
                      name="sdk1", labels={"suite": "sdk"}, init=True)
ct.reload()
assert ct.status == "running", ct.status
assert [x.name for x in c.containers.list(filters={"label": "suite=sdk"})] == ["sdk1"]
import time
for _ in range(100):
    if ct.logs() == b"started\n": break
    time.sleep(0.1)
assert ct.logs() == b"started\n", ct.logs()
r = ct.exec_run(["sh", "-c", "echo in-exec; exit 3"])
assert (r.exit_code, r.output) == (3, b"in-exec\n"), r
r = ct.exec_run("cat /etc/hostname", demux=True)
assert r.exit_code == 0 and r.output[0].strip() == ct.id[:12].encode(), r
top = ct.top()
assert any("sleep" in " ".join(p) for p in top["Processes"]), top
st = ct.stats(stream=False)
assert st["memory_stats"]["usage"] > 0 and st["name"] == "/sdk1", st
v = c.volumes.create("sdkvol", labels={"k": "v"})
assert "sdkvol" in [x.name for x in c.volumes.list()]
n = c.networks.create("sdknet")
c2 = c.containers.create(img, ["sleep", "300"], name="sdk2", volumes={"sdkvol": {"bind": "/v", "mode": "rw"}})
n.connect(c2, aliases=["db"])
c2.start()
n.reload()
assert [x.name for x in n.containers] == ["sdk2"], n.containers
r = c.containers.run(img, ["nslookup", "db"], network="sdknet", remove=True)
assert b"Address" in r, r
ct.kill()
assert ct.wait()["StatusCode"] == 137
ct.remove()
w = c.containers.run(img, ["sh", "-c", "exit 4"], detach=True)
assert w.wait()["StatusCode"] == 4
pr = c.containers.prune()
assert w.id in pr["ContainersDeleted"], pr
c2.remove(force=True)
n.remove()
v.remove()
import os, tempfile
d = tempfile.mkdtemp()
with open(os.path.join(d, "Dockerfile"), "w") as f:
    f.write("FROM %s\nRUN echo sdk-built > /b\n" % img)
bi, _ = c.images.build(path=d, tag="sdk/built:v1", rm=True)
assert "sdk/built:v1" in bi.tags, bi.tags
assert c.containers.run("sdk/built:v1", ["cat", "/b"], remove=True) == b"sdk-built\n"
c.images.remove("sdk/built:v1")
df = c.df()
assert len(df["Images"]) >= 1 and "Volumes" in df, df
try:
    c.containers.get("no-such")
    raise SystemExit("expected NotFound")
except docker.errors.NotFound:
    pass
assert c.containers.list(all=True) == []
print("SDK-OK")
"#;

#[test]
fn the_python_sdk_drives_containers_through_the_socket() {
    let Some(py) = python_with_sdk() else {
        skip("no Python with the docker SDK (scripts/deps.sh makes a venv from PyPI; Debian's python3-docker comes with docker-compose)");
        return;
    };
    let s = Service::start();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("smoke.py");
    std::fs::write(&script, SDK_SMOKE).unwrap();
    let py = py.to_str().unwrap().to_string();
    let out = s.run(&py, &[script.to_str().unwrap(), IMG, &s.host()], None);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("SDK-OK"), "{}", out.stdout);
}

#[test]
fn docker_cp_both_ways_through_the_archive_endpoints() {
    if docker_cli().is_none() {
        skip("no docker CLI at /usr/bin/docker (Debian docker.io)");
        return;
    }
    let s = Service::start();
    s.docker(&[
        "run",
        "-d",
        "--init",
        "--name",
        "box",
        IMG,
        "sh",
        "-c",
        "mkdir -p /d/sub && echo one > /d/a.txt && echo two > /d/sub/b.txt && ln -s a.txt /d/link && touch /ready && exec sleep 300",
    ])
    .ok();
    wait_for("the container's files", || {
        s.docker(&["exec", "box", "test", "-e", "/ready"]).code == 0
    });
    let host = tempfile::tempdir().unwrap();
    let h = |p: &str| host.path().join(p);
    let hs = |p: &str| h(p).to_str().unwrap().to_string();
    // From the container: a file into a directory, a tree under a new
    // name, a directory's contents (`/.`), and a tar on stdout.
    s.docker(&["cp", "box:/d/a.txt", &hs("")]).ok();
    assert_eq!(std::fs::read_to_string(h("a.txt")).unwrap(), "one\n");
    s.docker(&["cp", "box:/d", &hs("tree")]).ok();
    assert_eq!(
        std::fs::read_to_string(h("tree/sub/b.txt")).unwrap(),
        "two\n"
    );
    assert_eq!(
        std::fs::read_link(h("tree/link")).unwrap(),
        Path::new("a.txt")
    );
    s.docker(&["cp", "box:/d/.", &hs("contents")]).ok();
    assert_eq!(
        std::fs::read_to_string(h("contents/a.txt")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(h("contents/sub/b.txt")).unwrap(),
        "two\n"
    );
    assert!(!h("contents/d").exists());
    let tar = s.docker(&["cp", "box:/d/sub/b.txt", "-"]).ok();
    assert!(
        tar.stdout.starts_with("b.txt"),
        "{:?}",
        &tar.stdout[..20.min(tar.stdout.len())]
    );
    // Into the container: into an existing directory, onto a new name, a
    // tree onto a new name, and contents into a new directory.
    std::fs::write(h("up.txt"), "up\n").unwrap();
    s.docker(&["cp", &hs("up.txt"), "box:/d/"]).ok();
    s.docker(&["cp", &hs("up.txt"), "box:/d/renamed.txt"]).ok();
    s.docker(&["cp", &hs("tree"), "box:/copied"]).ok();
    s.docker(&["cp", &format!("{}/.", hs("contents")), "box:/merged"])
        .ok();
    let out = s
        .docker(&[
            "exec",
            "box",
            "cat",
            "/d/up.txt",
            "/d/renamed.txt",
            "/copied/sub/b.txt",
            "/merged/a.txt",
        ])
        .ok();
    assert_eq!(out.stdout, "up\nup\ntwo\none\n");
    // Missing paths and a file where a directory is needed are errors.
    let out = s.docker(&["cp", "box:/nope", &hs("")]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("No such container:path"),
        "{}",
        out.stderr
    );
    let out = s.docker(&["cp", &hs("up.txt"), "box:/no/such/dir/x"]);
    assert_ne!(out.code, 0);
    // Raw: HEAD gives the stat header; GET without a path is a 400; an
    // entry that climbs out of the directory is refused.
    let r = s
        .raw("HEAD /v1.41/containers/box/archive?path=/d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("x-docker-container-path-stat:"),
        "{r}"
    );
    let r = s
        .raw("GET /containers/box/archive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let mut evil = tar::Builder::new(Vec::new());
    let mut hd = tar::Header::new_old();
    hd.as_old_mut().name[..9].copy_from_slice(b"../escape");
    hd.set_size(2);
    hd.set_mode(0o644);
    hd.set_cksum();
    evil.append(&hd, &b"x\n"[..]).unwrap();
    let body = evil.into_inner().unwrap();
    let mut c = UnixStream::connect(&s.sock).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        c,
        "PUT /containers/box/archive?path=/d HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    c.write_all(&body).unwrap();
    let mut r = String::new();
    let _ = c.read_to_string(&mut r);
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_ne!(s.docker(&["exec", "box", "test", "-e", "/escape"]).code, 0);
    s.docker(&["rm", "-f", "box"]).ok();
}

#[test]
fn the_docker_cli_uses_df_top_stats_prune_update_and_create_options() {
    if docker_cli().is_none() {
        skip("no docker CLI at /usr/bin/docker (Debian docker.io)");
        return;
    }
    let s = Service::start();
    s.docker(&["run", "-d", "--init", "--name", "busy", IMG, "sleep", "300"])
        .ok();
    // top and stats.
    let top = s.docker(&["top", "busy"]).ok().stdout;
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert!(top.contains("sleep 300"), "{top}");
    let st = s
        .docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.MemUsage}}",
            "busy",
        ])
        .ok()
        .stdout;
    assert!(st.starts_with("busy "), "{st}");
    assert!(!st.contains("0B / 0B"), "{st}");
    // update: the restart policy shows in inspect.
    s.docker(&["update", "--restart", "on-failure:3", "busy"])
        .ok();
    let rp = s
        .docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
            "busy",
        ])
        .ok();
    assert_eq!(rp.stdout.trim(), "on-failure:3");
    // system df counts the image, the container and a volume.
    s.docker(&["volume", "create", "dfvol"]).ok();
    let df = s
        .docker(&[
            "system",
            "df",
            "--format",
            "{{.Type}} {{.TotalCount}} {{.Active}}",
        ])
        .ok()
        .stdout;
    assert!(df.contains("Images 1 1"), "{df}");
    assert!(df.contains("Containers 1 1"), "{df}");
    assert!(df.contains("Local Volumes 1 0"), "{df}");
    // Capabilities, privileged, --mount (HostConfig.Mounts).
    let caps = |args: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[IMG, "grep", "CapEff", "/proc/self/status"]);
        s.docker(&a).ok().stdout
    };
    assert!(caps(&["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"]).ends_with("0000000000001000\n"));
    assert!(caps(&["--cap-drop", "ALL"]).ends_with("0000000000000000\n"));
    assert_ne!(caps(&["--privileged"]), caps(&[]));
    let out = s.docker(&["run", "--rm", "--cap-add", "BOGUS", IMG, "true"]);
    assert_ne!(out.code, 0);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.txt"), "mounted\n").unwrap();
    let bind = format!(
        "type=bind,source={},target=/m,readonly",
        dir.path().display()
    );
    let out = s
        .docker(&[
            "run", "--rm", "--mount", &bind, "--mount", "type=tmpfs,destination=/t",
            "--mount", "type=volume,source=dfvol,target=/v", IMG, "sh", "-c",
            "cat /m/m.txt; touch /m/x 2>/dev/null || echo ro; grep -c ' /t tmpfs' /proc/mounts; touch /v/ok && echo vol",
        ])
        .ok();
    assert_eq!(out.stdout, "mounted\nro\n1\nvol\n");
    // network connect (before start) through the CLI.
    s.docker(&["network", "create", "pnet"]).ok();
    s.docker(&["create", "--name", "late", IMG, "sleep", "300"])
        .ok();
    s.docker(&["network", "connect", "--alias", "latecomer", "pnet", "late"])
        .ok();
    s.docker(&["start", "late"]).ok();
    let out = s
        .docker(&[
            "run",
            "--rm",
            "--network",
            "pnet",
            IMG,
            "nslookup",
            "latecomer",
        ])
        .ok();
    assert!(out.stdout.contains("Address"), "{}", out.stdout);
    s.docker(&["rm", "-f", "late"]).ok();
    // prune: the stopped container, the unused network and volume go;
    // the running container and the image in use stay.
    s.docker(&["run", "--name", "done", IMG, "true"]).ok();
    let out = s.docker(&["container", "prune", "-f"]).ok().stdout;
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(
        s.docker(&["ps", "-a", "--format", "{{.Names}}"])
            .ok()
            .stdout,
        "busy\n"
    );
    let out = s.docker(&["network", "prune", "-f"]).ok().stdout;
    assert!(out.contains("pnet"), "{out}");
    // Volume prune: API 1.41 (this CLI) prunes named volumes too.
    let out = s.docker(&["volume", "prune", "-f"]).ok().stdout;
    assert!(out.contains("dfvol"), "{out}");
    let out = s.docker(&["image", "prune", "-a", "-f"]).ok();
    assert!(
        out.stdout.contains("Total reclaimed space"),
        "{}",
        out.stdout
    );
    s.docker(&["image", "inspect", IMG]).ok();
    // Filters berth cannot apply are refused rather than ignored.
    let out = s.docker(&["container", "prune", "-f", "--filter", "label=x"]);
    assert_ne!(out.code, 0);
    s.docker(&["rm", "-f", "busy"]).ok();
}

/// `run`'s resource and device flags through the socket: the docker CLI's
/// create body (Ulimits, ShmSize, Sysctls, CpuShares, CpusetCpus,
/// MemorySwap, MemoryReservation, OomKillDisable, Devices, GroupAdd) as
/// berth's inspect shows them; a hostile body is refused with a 400.
#[test]
fn the_docker_cli_sends_resource_flags_through_the_socket() {
    let Some(_) = docker_cli() else {
        skip("no docker CLI installed");
        return;
    };
    let s = Service::start();
    s.docker(&[
        "create",
        "--name",
        "res",
        "--ulimit",
        "nofile=1024:2048",
        "--shm-size",
        "16m",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "-m",
        "64m",
        "--memory-swap",
        "-1",
        "--memory-reservation",
        "32m",
        "--oom-kill-disable",
        "--device",
        "/dev/zero:/dev/myzero:r",
        "--group-add",
        "1234",
        IMG,
        "true",
    ])
    .ok();
    let i = s.berth.inspect("res");
    let h = &i["HostConfig"];
    assert_eq!(
        h["Ulimits"],
        serde_json::json!([{"Name": "nofile", "Hard": 2048, "Soft": 1024}])
    );
    assert_eq!(h["ShmSize"], 16 << 20);
    assert_eq!(
        h["Sysctls"],
        serde_json::json!({"net.ipv4.ip_forward": "1"})
    );
    assert_eq!(h["CpuShares"], 512);
    assert_eq!(h["CpusetCpus"], "0");
    assert_eq!(h["MemorySwap"], -1);
    assert_eq!(h["MemoryReservation"], 32 << 20);
    assert_eq!(h["OomKillDisable"], true);
    assert_eq!(
        h["Devices"],
        serde_json::json!([{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/myzero", "CgroupPermissions": "r"}])
    );
    assert_eq!(h["GroupAdd"], serde_json::json!(["1234"]));
    // The CLI checks what it sends; a raw body is checked by the engine:
    // a sysctl outside the container's namespaces, one that walks out of
    // /proc/sys/net, a device path with `..`, an unknown ulimit.
    for host_config in [
        r#"{"Sysctls": {"kernel.core_pattern": "|/tmp/x"}}"#,
        r#"{"Sysctls": {"net/../../kernel/core_pattern": "x"}}"#,
        r#"{"Devices": [{"PathOnHost": "/dev/zero", "PathInContainer": "/../etc/x", "CgroupPermissions": "rwm"}]}"#,
        r#"{"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}"#,
        r#"{"Memory": 67108864, "MemorySwap": 1048576}"#,
    ] {
        let body = format!(r#"{{"Image": "{IMG}", "Cmd": ["true"], "HostConfig": {host_config}}}"#);
        let r = s
            .raw(&format!(
                "POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ))
            .unwrap();
        assert!(r.starts_with("HTTP/1.1 400"), "{host_config}: {r}");
    }
    // Only the CLI's container was made.
    assert_eq!(s.berth.run(&["ps", "-aq"]).ok().stdout.lines().count(), 1);
}

/// The socket served with `--isolation vm` shows and acts on the named
/// volumes own VMs use (host folders, issue 18), as `berth volume
/// --isolation vm` does: list, inspect, remove refused while a VM's
/// directory lists the volume, then removed. No VM is booted: a run's
/// record of its volumes is a file in its VM directory.
#[test]
fn own_vm_volumes_through_the_socket() {
    let mut b = Berth::new();
    b.isolation = "vm".into();
    assert_eq!(
        b.run(&["volume", "create", "vmdata"]).ok().stdout,
        "vmdata\n"
    );
    let (sock, mut child) = b.spawn_api_service();
    let raw = |req: &str| -> std::io::Result<String> {
        let mut s = UnixStream::connect(&sock)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        s.write_all(req.as_bytes())?;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let req = |method: &str, path: &str| {
        raw(&format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ))
        .unwrap()
    };
    wait_for("the API socket", || {
        raw("GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
    });
    let data = b.home.path().join("vm-volumes/vmdata/_data");
    let list = req("GET", "/v1.43/volumes");
    assert!(list.starts_with("HTTP/1.1 200"), "{list}");
    assert!(list.contains("\"Name\":\"vmdata\""), "{list}");
    assert!(
        list.contains(&format!("\"Mountpoint\":\"{}\"", data.display())),
        "{list}"
    );
    let one = req("GET", "/v1.43/volumes/vmdata");
    assert!(one.starts_with("HTTP/1.1 200"), "{one}");
    // In use while a (live) run's VM directory lists it.
    let vm = b.home.path().join(format!("vms/{}-1", child.id()));
    std::fs::create_dir_all(&vm).unwrap();
    std::fs::write(vm.join("volumes"), "vmdata\n").unwrap();
    let refused = req("DELETE", "/v1.43/volumes/vmdata");
    assert!(refused.starts_with("HTTP/1.1 409"), "{refused}");
    assert!(
        refused.contains(&format!(
            "remove vmdata: volume is in use - [{}-1]",
            child.id()
        )),
        "{refused}"
    );
    std::fs::remove_dir_all(&vm).unwrap();
    let gone = req("DELETE", "/v1.43/volumes/vmdata");
    assert!(gone.starts_with("HTTP/1.1 204"), "{gone}");
    assert!(!data.exists());
    assert_eq!(b.run(&["volume", "ls", "-q"]).ok().stdout, "");
    let missing = req("GET", "/v1.43/volumes/vmdata");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let _ = child.kill();
    let _ = child.wait();
}
