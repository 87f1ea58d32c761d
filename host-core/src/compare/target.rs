//! One placement as `compare` drives it: containers created, attached,
//! exec'd into and removed through the placement API (the engine of the
//! native agent or of the machine VM; an [`OwnVm`] per container for
//! `vm`), with the host processes each container needs.

use super::probe::PanicTrial;
use super::results::{ExecResult, RunResult, BIND_TARGET, NET_PORT};
use super::PlacementKind;
use crate::engine::Engine;
use crate::image_cache::ImageCache;
use crate::placement::OwnVm;
use anyhow::{anyhow, bail, Context, Result};
use berth_protocol::mux::{self, Kind};
use berth_protocol::{ContainerConfig, ExecConfig, ImageCommit, MountSpec, MountType};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest output kept from one container process.
const MAX_OUTPUT: usize = 64 * 1024;

/// A placement ready to run containers of one image.
pub struct Target {
    pub kind: PlacementKind,
    image: String,
    /// The image as the host cache records it (needed for `vm`).
    commit: Option<ImageCommit>,
    cache: Option<ImageCache>,
    /// The daemon behind the `docker` reference column.
    docker: Option<super::docker::Docker>,
}

/// A container left running (idle) for exec and memory measurements.
pub struct Running {
    pub id: String,
    vm: Option<OwnVm>,
    /// An own VM's published ports, forwarded from the host as `berth run
    /// --isolation vm -p` does; closed before the VM goes (in a mutex
    /// only so that threads may share a `&Running`).
    forwarding: Option<std::sync::Mutex<crate::port_forward::RunForwarding>>,
}

impl Target {
    /// Opens the placement: checks the image is there (uploading it from
    /// the host cache to the engine when the engine lacks it).
    pub fn open(kind: PlacementKind, image: &str) -> Result<Target> {
        if kind == PlacementKind::Docker {
            bail!("the docker column needs a daemon (Target::open_docker)");
        }
        let cache = ImageCache::open().ok();
        let commit = cache.as_ref().and_then(|c| c.resolve(image));
        let t = Target {
            kind,
            image: image.to_string(),
            commit,
            cache,
            docker: None,
        };
        match kind {
            PlacementKind::Vm => {
                if t.commit.is_none() {
                    bail!("image {image:?} is not in berth's image cache (berth load or berth pull it first)");
                }
            }
            _ => {
                let mut e = t.engine()?;
                if e.image_inspect(image).is_err() {
                    let (Some(cache), Some(commit)) = (&t.cache, &t.commit) else {
                        bail!("no such image: {image} (berth load or berth pull it first)");
                    };
                    cache
                        .upload(commit, &|| t.engine())
                        .with_context(|| format!("giving {image} to the {kind} engine"))?;
                }
            }
        }
        Ok(t)
    }

    /// The docker reference column: `docker` with the image loaded into
    /// it (from berth's cache when it lacks it).
    pub fn open_docker(docker: super::docker::Docker, image: &str) -> Result<Target> {
        docker.ensure_image(image)?;
        Ok(Target {
            kind: PlacementKind::Docker,
            image: image.to_string(),
            commit: None,
            cache: None,
            docker: Some(docker),
        })
    }

    /// A connection to the long-lived engine (native, shared).
    fn engine(&self) -> Result<Engine> {
        self.kind.isolation().connect()
    }

    /// PIDs of the long-lived engine's root process: the native agent, or
    /// the machine's VMM.
    pub fn engine_root_pid(&self) -> Option<i32> {
        match self.kind {
            PlacementKind::Native => self.engine().ok()?.peer_pid(),
            PlacementKind::Shared => crate::machine::Machine::default_machine().vmm_pid(),
            PlacementKind::Vm => None,
            PlacementKind::Docker => self.docker.as_ref()?.daemon_pid(),
        }
    }

    /// The host process roots a running container needs (its process
    /// trees, with the engine's, are what memory counts).
    pub fn roots(&self, running: &[Running]) -> Vec<i32> {
        match self.kind {
            PlacementKind::Vm => running
                .iter()
                .filter_map(|r| r.vm.as_ref().and_then(|v| v.vmm_pid()))
                .collect(),
            // dockerd (and the containerd it started), and each
            // container's shim, which runs apart from them.
            PlacementKind::Docker => {
                let d = self.docker.as_ref();
                self.engine_root_pid()
                    .into_iter()
                    .chain(
                        running
                            .iter()
                            .filter_map(|r| d.and_then(|d| d.shim_pid(&r.id))),
                    )
                    .collect()
            }
            _ => self.engine_root_pid().into_iter().collect(),
        }
    }

    /// The VMM process behind `running` (shared: the machine's).
    pub fn vmm_pid(&self, running: &Running) -> Option<i32> {
        match self.kind {
            PlacementKind::Native | PlacementKind::Docker => None,
            PlacementKind::Shared => self.engine_root_pid(),
            PlacementKind::Vm => running.vm.as_ref().and_then(|v| v.vmm_pid()),
        }
    }

    /// The host PID of `running`'s first process, where it runs on the
    /// host's kernel (native, docker).
    pub fn container_pid(&self, running: &Running) -> Option<i32> {
        match self.kind {
            PlacementKind::Native => self.engine().ok()?.container_inspect(&running.id).ok()?.pid,
            PlacementKind::Docker => self.docker.as_ref()?.container_pid(&running.id),
            PlacementKind::Shared | PlacementKind::Vm => None,
        }
    }

    fn config(&self, cmd: &[&str]) -> ContainerConfig {
        ContainerConfig {
            image: self.image.clone(),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            entrypoint: Some(Vec::new()),
            network_mode: Some("none".into()),
            labels: [("berth.compare".to_string(), "1".to_string())].into(),
            ..Default::default()
        }
    }

    /// An own VM with the image, started (vm only), sharing the host
    /// folders that `cfg`'s bind mounts need.
    fn own_vm(&self, cfg: &ContainerConfig) -> Result<OwnVm> {
        let (Some(cache), Some(commit)) = (&self.cache, &self.commit) else {
            bail!("no image cache entry for {}", self.image);
        };
        let quiet = |_: &str| {};
        let mut vm = OwnVm::new(cache, commit, &self.image, false, &quiet)?;
        vm.set_shares(crate::vm_shares::from_config(cfg));
        vm.start(cache, commit, false, &quiet)?;
        Ok(vm)
    }

    /// Runs `cmd` in a new container, attached: times to its first output
    /// and its exit, then removes it (and its VM) and times that.
    pub fn run(&self, cmd: &[&str]) -> Result<RunResult> {
        if let Some(d) = &self.docker {
            return d.run(&self.image, cmd);
        }
        let t0 = Instant::now();
        let cfg = self.config(cmd);
        let vm = match self.kind {
            PlacementKind::Vm => Some(self.own_vm(&cfg)?),
            _ => None,
        };
        let connect = || -> Result<Engine> {
            match &vm {
                Some(v) => v.connect(),
                None => self.engine(),
            }
        };
        let mut ctl = connect()?;
        let id = ctl.container_create(cfg)?.id;
        let result = (|| -> Result<(Option<Duration>, Duration, i32, String)> {
            let stream = connect()?.attach(&id, false, true, None)?;
            let (first, code, out) = relay(stream, t0)?;
            Ok((first, t0.elapsed(), code, out))
        })();
        let t1 = Instant::now();
        let removed = ctl.container_remove(&id, true, false);
        drop(vm);
        let teardown = t1.elapsed();
        let (first_output, exited, code, stdout) = result?;
        removed?;
        Ok(RunResult {
            first_output,
            exited,
            teardown,
            code,
            stdout,
        })
    }

    /// Starts a container that idles until removed.
    pub fn start_idle(&self) -> Result<Running> {
        if let Some(d) = &self.docker {
            let id = d.start_idle(&self.image, None)?;
            return Ok(Running {
                id,
                vm: None,
                forwarding: None,
            });
        }
        self.start_idle_with(self.config(&["sleep", "2147483647"]))
    }

    /// Starts an idle container with host folder `dir` bind-mounted at
    /// [`BIND_TARGET`], as `-v DIR:/berth-compare-bind` would: in the
    /// machine VM the folder must be in its shares (the source becomes
    /// its guest path); an own VM gets it as a share of its own.
    pub fn start_idle_bound(&self, dir: &Path) -> Result<Running> {
        if let Some(d) = &self.docker {
            let id = d.start_idle(&self.image, Some(dir))?;
            return Ok(Running {
                id,
                vm: None,
                forwarding: None,
            });
        }
        let mut cfg = self.config(&["sleep", "2147483647"]);
        cfg.mounts.push(MountSpec::new(
            MountType::Bind,
            &dir.display().to_string(),
            BIND_TARGET,
        ));
        // A bind only: no named volume to hold.
        let _held = crate::mounts::check_placement(self.kind.isolation(), &mut cfg)
            .map_err(|e| anyhow!(e))?;
        self.start_idle_with(cfg)
    }

    /// Starts an idle container on the default network with [`NET_PORT`]
    /// published as `-p 127.0.0.1::5001`; the host port.
    pub fn start_net(&self) -> Result<(Running, u16)> {
        if let Some(d) = &self.docker {
            let (id, port) = d.start_net(&self.image)?;
            return Ok((
                Running {
                    id,
                    vm: None,
                    forwarding: None,
                },
                port,
            ));
        }
        let mut cfg = self.config(&["sleep", "2147483647"]);
        cfg.network_mode = None;
        let binding = berth_protocol::PortBinding {
            host_ip: "127.0.0.1".into(),
            host_port: 0,
            host_port_end: 0,
            container_port: NET_PORT,
            proto: Default::default(),
        };
        if self.kind == PlacementKind::Vm {
            // As `berth run --isolation vm -p`: the host port is bound
            // here and forwarded to the guest's loopback, where the agent
            // publishes it.
            let ports = crate::port_forward::RunPorts::bind(std::slice::from_ref(&binding))
                .map_err(|e| anyhow!("binding the host port: {e}"))?;
            let port = ports
                .host_addrs()
                .first()
                .map(|(_, a)| a.port())
                .ok_or_else(|| anyhow!("no host port was bound"))?;
            cfg.ports = ports.guest_bindings().to_vec();
            let mut r = self.start_idle_with(cfg)?;
            let Some(vm) = &r.vm else {
                bail!("the container has no VM");
            };
            r.forwarding = Some(std::sync::Mutex::new(ports.serve(&vm.endpoint())));
            return Ok((r, port));
        }
        cfg.ports.push(binding);
        let r = self.start_idle_with(cfg)?;
        let port = self
            .connect_to(&r)
            .and_then(|mut e| Ok(e.container_inspect(&r.id)?))
            .map(|d| {
                d.ports
                    .iter()
                    .find(|p| p.container_port == NET_PORT && p.host_port != 0)
                    .map(|p| p.host_port)
            });
        match port {
            Ok(Some(p)) => Ok((r, p)),
            other => {
                let _ = self.remove(r);
                bail!("port {NET_PORT} was not published: {other:?}")
            }
        }
    }

    fn start_idle_with(&self, cfg: ContainerConfig) -> Result<Running> {
        let vm = match self.kind {
            PlacementKind::Vm => Some(self.own_vm(&cfg)?),
            _ => None,
        };
        let mut ctl = match &vm {
            Some(v) => v.connect()?,
            None => self.engine()?,
        };
        let id = ctl.container_create(cfg)?.id;
        if let Err(e) = ctl.container_start(&id) {
            let _ = ctl.container_remove(&id, true, false);
            return Err(e.into());
        }
        Ok(Running {
            id,
            vm,
            forwarding: None,
        })
    }

    fn connect_to(&self, r: &Running) -> Result<Engine> {
        match &r.vm {
            Some(v) => v.connect(),
            None => self.engine(),
        }
    }

    /// Runs `cmd` in `r` and waits for it; the time from request to exit.
    pub fn exec(&self, r: &Running, cmd: &[&str]) -> Result<ExecResult> {
        if let Some(d) = &self.docker {
            return d.exec(&r.id, cmd);
        }
        let cfg = ExecConfig {
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let t0 = Instant::now();
        let stream = self.connect_to(r)?.exec(&r.id, cfg, None)?;
        let (_, code, stdout) = relay(stream, t0)?;
        Ok(ExecResult {
            elapsed: t0.elapsed(),
            code,
            stdout,
        })
    }

    /// `--destructive` (own VMs only): forces a guest-kernel panic from a
    /// privileged container in a new VM, with `witness` running in another
    /// one, and records what it took down. The panic comes from the
    /// kernel's own out-of-memory path (`vm.panic_on_oom=2` panics on a
    /// cgroup's OOM too, and the container has a 16 MiB limit): it needs
    /// no sysrq or debug option in the guest kernel.
    pub fn panic_trial(&self, witness: &Running, host_boot_id: &str) -> PanicTrial {
        if self.kind != PlacementKind::Vm {
            return PanicTrial::not_run("only an own VM is thrown away");
        }
        let mut t = PanicTrial {
            ran: true,
            ..PanicTrial::default()
        };
        let boot_id = |r: &Running| -> Option<String> {
            let out = self
                .exec(r, &["cat", "/proc/sys/kernel/random/boot_id"])
                .ok()?;
            (out.code == 0).then(|| out.stdout.trim().to_string())
        };
        let Some(before) = boot_id(witness) else {
            return PanicTrial::not_run("the witness container did not answer before the panic");
        };
        let vm = match self.own_vm(&ContainerConfig::default()) {
            Ok(vm) => vm,
            Err(e) => return PanicTrial::not_run(&format!("starting the VM to panic: {e:#}")),
        };
        let mut cfg = self.config(&[
            "sh",
            "-c",
            "echo 2 > /proc/sys/vm/panic_on_oom && dd if=/dev/zero of=/dev/null bs=64M count=1",
        ]);
        cfg.privileged = true;
        cfg.memory = Some(16 << 20);
        let outcome = (|| -> Result<String> {
            let id = vm.connect()?.container_create(cfg)?.id;
            let stream = vm.connect()?.attach(&id, false, true, None)?;
            Ok(match relay(stream, Instant::now()) {
                Ok((_, code, out)) => {
                    format!("the container exited {code} instead: {}", out.trim())
                }
                Err(e) => format!("{e:#}"),
            })
        })();
        let deadline = Instant::now() + Duration::from_secs(60);
        while vm.vmm_pid().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        t.vm_ended = vm.vmm_pid().is_none();
        t.panic_seen = vm.console_tail(64 * 1024).contains("Kernel panic");
        drop(vm);
        t.witness_unaffected = boot_id(witness).as_deref() == Some(before.as_str());
        t.host_unaffected = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim() == host_boot_id)
            .unwrap_or(false);
        if !t.contained() {
            t.note = Some(match outcome {
                Ok(s) => s,
                Err(e) => format!("{e:#}"),
            });
        }
        t
    }

    /// Removes `r` (and powers off its VM).
    pub fn remove(&self, r: Running) -> Result<()> {
        if let Some(d) = &self.docker {
            return d.remove(&r.id);
        }
        let res = self
            .connect_to(&r)
            .and_then(|mut c| Ok(c.container_remove(&r.id, true, false)?));
        drop(r.forwarding);
        drop(r.vm);
        res
    }
}

/// Reads an attached stream to its exit frame: the time of the first
/// output (from `t0`), the exit code and stdout (bounded).
fn relay(mut stream: impl Read, t0: Instant) -> Result<(Option<Duration>, i32, String)> {
    let mut first = None;
    let mut out = Vec::new();
    loop {
        match mux::read_frame(&mut stream)
            .map_err(|e| anyhow!("reading the container's stream: {e}"))?
        {
            Some((Kind::Stdout | Kind::Stderr, d)) => {
                if first.is_none() && !d.is_empty() {
                    first = Some(t0.elapsed());
                }
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&d[..d.len().min(room)]);
            }
            Some((Kind::Exit, p)) => {
                let code = mux::parse_exit(&p).unwrap_or(255);
                return Ok((first, code, String::from_utf8_lossy(&out).into_owned()));
            }
            Some((Kind::Error, p)) => bail!("engine: {}", String::from_utf8_lossy(&p)),
            Some(_) => {}
            None => bail!("the container's stream ended before it exited"),
        }
    }
}
