//! The docker reference column: the same workloads run through the docker
//! CLI against a docker daemon (`--docker-host`, else `DOCKER_HOST`, else
//! /var/run/docker.sock), when one answers.

use super::results::{ExecResult, RunResult, BIND_TARGET, NET_PORT};
use anyhow::{anyhow, bail, Context, Result};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The socket docker's CLI uses when `DOCKER_HOST` is unset.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How long the daemon has to answer `docker version`.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Longest output kept from one command.
const MAX_OUTPUT: u64 = 64 * 1024;

/// The daemon to compare with: the option, else `DOCKER_HOST`, else the
/// default socket when it exists; None when there is none to try (or the
/// option is `none`).
pub fn choose_host(option: Option<&str>) -> Option<String> {
    choose_host_from(
        option,
        std::env::var("DOCKER_HOST").ok().as_deref(),
        Path::new(DEFAULT_SOCKET).exists(),
    )
}

fn choose_host_from(
    option: Option<&str>,
    env: Option<&str>,
    default_exists: bool,
) -> Option<String> {
    match option.map(str::trim) {
        Some("none") | Some("") => None,
        Some(h) => Some(h.to_string()),
        None => match env.map(str::trim) {
            Some(h) if !h.is_empty() => Some(h.to_string()),
            _ => default_exists.then(|| format!("unix://{DEFAULT_SOCKET}")),
        },
    }
}

/// A docker daemon driven through the docker CLI.
pub struct Docker {
    host: String,
    /// `docker version`'s server version.
    pub server_version: String,
}

/// Names of the containers this process made.
static SEQ: AtomicU32 = AtomicU32::new(0);

impl Docker {
    /// The daemon at `host`, when it answers `docker version` in time.
    pub fn connect(host: &str) -> Result<Docker> {
        let mut d = Docker {
            host: host.to_string(),
            server_version: String::new(),
        };
        let mut child = d
            .cli()
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running the docker CLI")?;
        let deadline = Instant::now() + ANSWER_WITHIN;
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the docker daemon at {host} did not answer in {ANSWER_WITHIN:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = String::new();
        if let Some(o) = child.stdout.take() {
            o.take(MAX_OUTPUT).read_to_string(&mut out)?;
        }
        let mut err = String::new();
        if let Some(e) = child.stderr.take() {
            e.take(MAX_OUTPUT).read_to_string(&mut err)?;
        }
        if !status.success() {
            bail!("the docker daemon at {host} did not answer: {}", err.trim());
        }
        d.server_version = out.trim().to_string();
        Ok(d)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn cli(&self) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H").arg(&self.host);
        c
    }

    /// Runs the CLI to its end: exit code, stdout, stderr.
    fn call(&self, args: &[&str]) -> Result<(i32, String, String)> {
        let o = self
            .cli()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running the docker CLI")?;
        Ok((
            o.status.code().unwrap_or(255),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ))
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let (code, out, err) = self.call(args)?;
        if code != 0 {
            bail!("docker {}: {}", args.join(" "), err.trim());
        }
        Ok(out)
    }

    /// Makes sure the daemon has `image`: when it lacks it, berth's copy
    /// is saved (`berth save`'s archive) into `docker load`.
    pub fn ensure_image(&self, image: &str) -> Result<()> {
        if self.call(&["image", "inspect", image])?.0 == 0 {
            return Ok(());
        }
        let cache = crate::image_cache::ImageCache::open()?;
        let entries = crate::transfer::save::collect(
            crate::placement::Isolation::Native,
            &cache,
            &[image.to_string()],
        )
        .with_context(|| format!("{image} is neither in the docker daemon nor in berth"))?;
        let mut child = self
            .cli()
            .args(["load", "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running docker load")?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("docker load"))?;
        let written = crate::transfer::save::write_archive(
            &cache,
            &entries,
            crate::transfer::save::SaveFormat::Docker,
            std::io::BufWriter::new(stdin),
        );
        let out = child.wait_with_output()?;
        written.context("writing the image to docker load")?;
        if !out.status.success() {
            bail!(
                "docker load: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if self.call(&["image", "inspect", image])?.0 != 0 {
            bail!("docker load did not give the daemon {image}");
        }
        Ok(())
    }

    fn common_args(image: &str) -> Vec<String> {
        [
            "--network",
            "none",
            "--label",
            "berth.compare=1",
            "--entrypoint",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([image.to_string()])
        .collect()
    }

    /// `docker run` of `cmd`, attached: first output and exit timed from
    /// the request, then `docker rm -f` timed as the teardown.
    pub fn run(&self, image: &str, cmd: &[&str]) -> Result<RunResult> {
        let name = format!(
            "berth-compare-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let t0 = Instant::now();
        let mut child = self
            .cli()
            .args(["run", "--name", &name])
            .args(Self::common_args(image))
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running docker run")?;
        let mut first = None;
        let mut out = Vec::new();
        if let Some(mut o) = child.stdout.take() {
            let mut buf = [0u8; 4096];
            loop {
                let n = o.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                first.get_or_insert_with(|| t0.elapsed());
                if (out.len() as u64) < MAX_OUTPUT {
                    out.extend_from_slice(&buf[..n]);
                }
            }
        }
        let st = child.wait()?;
        let exited = t0.elapsed();
        let t1 = Instant::now();
        let removed = self.ok(&["rm", "-f", &name]);
        let teardown = t1.elapsed();
        removed?;
        Ok(RunResult {
            first_output: first,
            exited,
            teardown,
            code: st.code().unwrap_or(255),
            stdout: String::from_utf8_lossy(&out).into_owned(),
        })
    }

    /// `docker run -d` of an idle container (with `bind` at
    /// [`BIND_TARGET`]); its id.
    pub fn start_idle(&self, image: &str, bind: Option<&Path>) -> Result<String> {
        let mut args: Vec<String> = vec!["run".into(), "-d".into()];
        if let Some(b) = bind {
            args.push("-v".into());
            args.push(format!("{}:{BIND_TARGET}", b.display()));
        }
        args.extend(Self::common_args(image));
        args.extend(["sleep".to_string(), "2147483647".to_string()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = self.ok(&refs)?.trim().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("docker run -d printed {id:?}, not a container id");
        }
        Ok(id)
    }

    /// `docker run -d -p 127.0.0.1::NET_PORT` of an idle container on the
    /// default network: its id and the host port.
    pub fn start_net(&self, image: &str) -> Result<(String, u16)> {
        let publish = format!("127.0.0.1::{NET_PORT}");
        let id = self
            .ok(&[
                "run",
                "-d",
                "-p",
                &publish,
                "--label",
                "berth.compare=1",
                "--entrypoint",
                "",
                image,
                "sleep",
                "2147483647",
            ])?
            .trim()
            .to_string();
        let port = self
            .ok(&["port", &id, &format!("{NET_PORT}/tcp")])
            .ok()
            .and_then(|o| parse_port(&o));
        match port {
            Some(p) => Ok((id, p)),
            None => {
                let _ = self.remove(&id);
                bail!("docker published no host port for {NET_PORT}")
            }
        }
    }

    /// `docker exec` of `cmd` in `id`, timed from request to exit.
    pub fn exec(&self, id: &str, cmd: &[&str]) -> Result<ExecResult> {
        let t0 = Instant::now();
        let (code, stdout, _) = self.call(&[&["exec", id][..], cmd].concat())?;
        Ok(ExecResult {
            elapsed: t0.elapsed(),
            code,
            stdout,
        })
    }

    pub fn remove(&self, id: &str) -> Result<()> {
        self.ok(&["rm", "-f", id]).map(|_| ())
    }

    /// The host process behind container `id`: the parent of its first
    /// process (the containerd shim).
    pub fn shim_pid(&self, id: &str) -> Option<i32> {
        let pid = self.container_pid(id)?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        super::probe::parent_of(&stat).filter(|&p| p > 1)
    }

    /// The host PID of container `id`'s first process (docker inspect's
    /// State.Pid; none when it does not run here).
    pub fn container_pid(&self, id: &str) -> Option<i32> {
        self.ok(&["inspect", "--format", "{{.State.Pid}}", id])
            .ok()?
            .trim()
            .parse()
            .ok()
            .filter(|&p: &i32| p > 0)
    }

    /// The daemon's PID, when it is on a local socket (SO_PEERCRED).
    #[cfg(target_os = "linux")]
    pub fn daemon_pid(&self) -> Option<i32> {
        let path = self.host.strip_prefix("unix://")?;
        let s = std::os::unix::net::UnixStream::connect(path).ok()?;
        let cred =
            nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials).ok()?;
        Some(cred.pid())
    }

    /// Not known off Linux (no SO_PEERCRED): the daemon's memory is then
    /// not counted.
    #[cfg(not(target_os = "linux"))]
    pub fn daemon_pid(&self) -> Option<i32> {
        None
    }
}

/// The first `ADDR:PORT` line of `docker port`.
fn parse_port(out: &str) -> Option<u16> {
    let line = out.lines().next()?.trim();
    line.rsplit_once(':')?.1.parse().ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_port_lines() {
        assert_eq!(parse_port("127.0.0.1:49153\n"), Some(49153));
        assert_eq!(parse_port("[::1]:80\n0.0.0.0:81\n"), Some(80));
        assert_eq!(parse_port("junk"), None);
        assert_eq!(parse_port("1.2.3.4:0"), None);
        assert_eq!(parse_port(""), None);
    }

    #[test]
    fn host_is_the_option_then_docker_host_then_the_socket() {
        assert_eq!(
            choose_host_from(Some("unix:///x"), Some("tcp://y"), true).as_deref(),
            Some("unix:///x")
        );
        assert_eq!(choose_host_from(Some("none"), Some("tcp://y"), true), None);
        assert_eq!(
            choose_host_from(None, Some("tcp://y"), true).as_deref(),
            Some("tcp://y")
        );
        assert_eq!(
            choose_host_from(None, Some(""), true).as_deref(),
            Some("unix:///var/run/docker.sock")
        );
        assert_eq!(choose_host_from(None, None, false), None);
    }

    #[test]
    fn a_daemon_that_is_not_there_does_not_answer() {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("unix://{}/nothing.sock", dir.path().display());
        if let Ok(d) = Docker::connect(&host) {
            panic!("answered: {}", d.server_version);
        }
    }
}
