//! A private dockerd (Debian docker.io) for tests and benchmarks that
//! compare berth with docker: own socket, data root and exec root.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A dockerd this process started; stopped (SIGTERM, by PID) on drop.
/// One runs at a time across the test binaries of one target dir: two
/// dockerds starting at once on a loaded 2-core machine is how a
/// comparison used to time out.
pub struct Dockerd {
    child: std::process::Child,
    sock: String,
    _dir: tempfile::TempDir,
    /// Released after the daemon stopped (fields drop after `drop`).
    _turn: std::fs::File,
}

impl Dockerd {
    /// A dockerd for a test that compares with docker: the test fails,
    /// with dockerd's own words, when it cannot start. deps.sh installs
    /// docker.io, so a missing dockerd is a broken set-up, not a skip.
    #[track_caller]
    pub fn required() -> Dockerd {
        Dockerd::start().unwrap_or_else(|e| panic!("dockerd did not start: {e}"))
    }

    pub fn start() -> Result<Dockerd, String> {
        let turn = crate::hold_lock("dockerd");
        let dir = tempfile::Builder::new()
            .prefix("berth-dockerd-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let sock = format!("{}/docker.sock", d.display());
        let log = std::fs::File::create(d.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .args([
                "--iptables=false",
                "--bridge=none",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
                "--storage-driver=vfs",
            ])
            .arg(format!("--data-root={}/data", d.display()))
            .arg(format!("--exec-root={}/exec", d.display()))
            .arg(format!("--pidfile={}/docker.pid", d.display()))
            .arg(format!("--host=unix://{sock}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("dockerd: {e}"))?;
        let mut me = Dockerd {
            child,
            sock,
            _dir: dir,
            _turn: turn,
        };
        // A first start on a loaded 2-core machine (CI) can take well
        // over 30 s; a dockerd that exits is reported at once anyway.
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if me
                .docker(&["version"])
                .map(|o| o.status.success())
                .unwrap_or(false)
            {
                return Ok(me);
            }
            if let Ok(Some(st)) = me.child.try_wait() {
                let log =
                    std::fs::read_to_string(me._dir.path().join("dockerd.log")).unwrap_or_default();
                return Err(format!(
                    "dockerd exited ({st}): {}",
                    log.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err("dockerd did not come up in 120 s".into())
    }

    /// The daemon's socket path.
    pub fn socket(&self) -> &str {
        &self.sock
    }

    pub fn docker(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        self.command().args(args).output()
    }

    /// The docker CLI pointed at this daemon, to add arguments to.
    pub fn command(&self) -> Command {
        let mut c = Command::new(Self::cli());
        c.arg("-H").arg(format!("unix://{}", self.sock));
        c
    }

    /// The newest docker CLI on this machine (the 28.x client this machine
    /// kind ships at /usr/local/bin/docker, which negotiates the API down
    /// to this dockerd), for comparisons whose wording changed after 20.10.
    pub fn newest_cli_command(&self) -> Command {
        let cli = if std::path::Path::new("/usr/local/bin/docker").exists() {
            "/usr/local/bin/docker"
        } else {
            Self::cli()
        };
        let mut c = Command::new(cli);
        c.arg("-H").arg(format!("unix://{}", self.sock));
        c
    }

    /// The CLI as a shell command line (for `script -c`).
    pub fn shell_command(&self) -> String {
        format!("{} -H unix://{}", Self::cli(), self.sock)
    }

    fn cli() -> &'static str {
        // Debian's CLI, not a possibly newer client elsewhere on PATH.
        if std::path::Path::new("/usr/bin/docker").exists() {
            "/usr/bin/docker"
        } else {
            "docker"
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // dockerd keeps a user network's bridge (`br-<id>`) when it stops:
        // the ones a failed test left would use up the host's address
        // pools for later tests (berth's and dockerd's alike).
        let bridges: Vec<String> = self
            .docker(&["network", "ls", "-q", "--filter", "type=custom"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .split_whitespace()
            .map(|id| format!("br-{}", &id[..id.len().min(12)]))
            .collect();
        // SAFETY: SIGTERM to the dockerd this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for b in bridges {
            let _ = Command::new("ip")
                .args(["link", "del", &b])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Dockerd {
    /// Loads berth's default image into this dockerd as `tag`.
    pub fn load_default_image(&self, tag: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let tar = dir.path().join("img.tar");
        let st = Command::new("skopeo")
            .args([
                "copy",
                "-q",
                &format!("oci-archive:{}", crate::default_image().display()),
                &format!("docker-archive:{}:{tag}", tar.display()),
            ])
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("skopeo copy failed".into());
        }
        let o = self
            .docker(&["load", "-i", &tar.display().to_string()])
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into());
        }
        Ok(())
    }
}
