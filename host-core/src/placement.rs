//! Where containers run, and how to reach the agent that runs them.
//!
//! `native`: the agent runs on this Linux host, started on demand and found
//! through `<state>/native/agent.sock`.

use crate::client::Endpoint;
use crate::engine::Engine;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Container placements, as `--isolation` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Isolation {
    /// Containers run directly on this Linux host.
    Native,
    /// Containers share one long-lived machine VM.
    Shared,
    /// Each container gets its own microVM.
    Vm,
}

pub use crate::paths::{agent_binary, state_dir};

/// Makes `cmd` start in a session of its own, so it outlives this command.
pub fn detach(cmd: &mut std::process::Command) {
    crate::platform::detach(cmd);
}

/// The native agent's data root and socket.
pub fn native_paths() -> (PathBuf, PathBuf) {
    let root = state_dir().join("native");
    let sock = root.join("agent.sock");
    (root, sock)
}

/// Connects to the native agent, starting it if nobody listens.
pub fn connect_native() -> Result<Engine> {
    if !cfg!(target_os = "linux") {
        bail!("--isolation native needs a Linux host; use --isolation shared or vm");
    }
    let (root, sock) = native_paths();
    let ep = Endpoint::Unix(sock.clone());
    // A listening socket is not enough: an agent that is being killed can
    // still accept and then reset. Only a completed handshake counts.
    if let Ok(c) = Engine::open(&ep) {
        log::debug!("native engine answers on {}", sock.display());
        return upgrade_native_agent(c, &root, &sock);
    }
    start_native_agent(&root, &sock)
}

/// The running native agent, and whether it runs the binary this `berth`
/// would start now.
#[derive(Debug, Clone)]
pub struct NativeAgent {
    pub pid: i32,
    /// What `/proc/<pid>/exe` names (`… (deleted)` once replaced).
    pub exe: PathBuf,
    /// The agent this `berth` would start.
    pub expected: PathBuf,
    /// Whether the running agent's executable is that very file.
    pub current: bool,
}

/// Compares the agent at the other end of `c` with [`agent_binary`]:
/// same file (device and inode) or not. None when that cannot be told
/// (not Linux, no permission to read the agent's /proc entry).
pub fn native_agent(c: &Engine) -> Option<NativeAgent> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let pid = c.peer_pid()?;
        let proc_exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let running = std::fs::metadata(&proc_exe).ok()?;
        let exe = std::fs::read_link(&proc_exe).ok()?;
        let expected = agent_binary().ok()?;
        let current = std::fs::metadata(&expected)
            .map(|m| (m.dev(), m.ino()) == (running.dev(), running.ino()))
            .unwrap_or(false);
        Some(NativeAgent {
            pid,
            exe,
            expected,
            current,
        })
    }
    #[cfg(not(unix))]
    {
        let _ = c;
        None
    }
}

/// Set once this process has warned about an outdated agent.
static WARNED_OUTDATED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// After an upgrade the native agent may still run the old binary (the
/// file it started from was replaced). With no container running it is
/// restarted from the new one; otherwise the user is told, once per
/// command, what keeps it and what to do.
fn upgrade_native_agent(
    mut c: Engine,
    root: &std::path::Path,
    sock: &std::path::Path,
) -> Result<Engine> {
    let Some(agent) = native_agent(&c) else {
        return Ok(c);
    };
    if agent.current {
        return Ok(c);
    }
    use berth_protocol::ContainerStatus;
    let busy = match c.container_list(true) {
        Ok(list) => list
            .iter()
            .filter(|s| {
                matches!(
                    s.status,
                    ContainerStatus::Running
                        | ContainerStatus::Paused
                        | ContainerStatus::Restarting
                )
            })
            .count(),
        _ => return Ok(c),
    };
    if busy > 0 {
        if !WARNED_OUTDATED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            eprintln!(
                "berth: warning: the native engine (berth-agent, pid {}) runs an older build ({}) than {}; \
                 it is restarted on the first command after its {busy} running container(s) stop",
                agent.pid,
                agent.exe.display(),
                agent.expected.display()
            );
        }
        return Ok(c);
    }
    drop(c);
    eprintln!(
        "berth: restarting the native engine: berth-agent (pid {}) ran an older build than {}",
        agent.pid,
        agent.expected.display()
    );
    stop_process(agent.pid)?;
    start_native_agent(root, sock)
}

/// SIGTERM to `pid`, then waits (10 s, then SIGKILL) until it is gone.
fn stop_process(pid: i32) -> Result<()> {
    #[cfg(unix)]
    {
        let alive = || crate::machine::pid_alive(pid);
        // SAFETY: a signal to the agent's PID, read from its socket just now.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive() {
            if Instant::now() >= deadline {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
    Ok(())
}

fn start_native_agent(root: &std::path::Path, sock: &std::path::Path) -> Result<Engine> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let agent = agent_binary()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("agent.log"))?;
    let mut cmd = std::process::Command::new(&agent);
    cmd.arg("serve")
        .arg("--root")
        .arg(root)
        .arg("--socket")
        .arg(sock);
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    detach(&mut cmd);
    log::debug!("starting the native engine: {cmd:?}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    let ep = Endpoint::Unix(sock.to_path_buf());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut exited = None;
    while Instant::now() < deadline {
        if let Ok(c) = Engine::open(&ep) {
            if exited.is_none() {
                // The agent lives on; its exit is reaped by init.
                std::mem::forget(child);
            }
            return Ok(c);
        }
        if exited.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                // Another CLI may have started an agent at the same time;
                // give that one a moment to answer before giving up.
                exited = Some((status, Instant::now()));
            }
        }
        if let Some((status, at)) = exited {
            if at.elapsed() > Duration::from_secs(2) {
                let log = std::fs::read_to_string(root.join("agent.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                bail!(
                    "berth-agent exited ({status}): {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "berth-agent did not start listening on {} within 20 s",
        sock.display()
    )
}

impl Isolation {
    /// Connects to the engine of this placement: the native agent
    /// (started on demand), the machine VM's agent (the VM booted on
    /// demand). An own VM is made per container by [`OwnVm`], not here.
    pub fn connect(self) -> Result<Engine> {
        match self {
            Isolation::Native => connect_native(),
            Isolation::Shared => crate::machine::Machine::default_machine().connect(),
            Isolation::Vm => {
                bail!("--isolation vm is not available in this build yet; use --isolation shared or native")
            }
        }
    }

    /// Whether a long-lived engine holds images and containers between
    /// commands (native, shared). With an own VM each, images live only in
    /// the host cache and each container's VM is given its image.
    pub fn has_engine(self) -> bool {
        self != Isolation::Vm
    }

    /// Whether ports the engine publishes are bound on this host by the
    /// machine's port forwarder (shared) rather than by the engine itself.
    pub fn forwards_ports(self) -> bool {
        self == Isolation::Shared
    }

    /// Whether host folders appear in the engine under the machine's
    /// share prefix (shared): inspect shows them at their host path.
    pub fn shares_host_folders(self) -> bool {
        self == Isolation::Shared
    }

    /// Whether each container runs in a microVM of its own.
    pub fn own_vm(self) -> bool {
        self == Isolation::Vm
    }

    /// Whether the engine behind `c` runs the agent build this `berth`
    /// would start now.
    pub fn agent_build(self, c: &Engine) -> AgentBuild {
        match self {
            Isolation::Native => AgentBuild::Native(native_agent(c)),
            _ => AgentBuild::Machine(crate::machine::Machine::default_machine().outdated_agent()),
        }
    }
}

/// How current the engine's agent is, as its placement can tell.
#[derive(Debug, Clone)]
pub enum AgentBuild {
    /// The native agent's process and binary (None: cannot be told).
    Native(Option<NativeAgent>),
    /// The machine VM's agent: Some((booted, now)) when it came from
    /// another build than the one this `berth` would boot.
    Machine(Option<(String, String)>),
}

/// A throw-away microVM for one container (`--isolation vm`), cloned
/// from the machine snapshot and given the image from the host cache:
/// as a disk when one can be made, streamed over vsock otherwise. It is
/// powered off and removed when dropped.
pub struct OwnVm {
    vm: crate::machine::Machine,
    disk: Option<PathBuf>,
    /// Set by [`OwnVm::power_off_keeping_dir`]: Drop leaves the directory.
    keep_dir: bool,
}

impl OwnVm {
    /// Prepares the VM (not started): `image` as a disk when one can be
    /// made. `note` receives the warnings and, with `timings`, the timing
    /// lines a front end may print.
    pub fn new(
        cache: &crate::image_cache::ImageCache,
        image: &berth_protocol::ImageCommit,
        name: &str,
        timings: bool,
        note: &dyn Fn(&str),
    ) -> Result<OwnVm> {
        let t0 = Instant::now();
        let disk = match crate::image_disk::ensure(cache, image) {
            Ok(d) => d,
            Err(e) => {
                note(&format!(
                    "berth: warning: no image disk for {name}: {e:#}; streaming the image into the VM instead"
                ));
                None
            }
        };
        if timings {
            match &disk {
                Some(_) => note(&format!(
                    "berth: vm: image disk ready in {} ms",
                    t0.elapsed().as_millis()
                )),
                None => note(&format!(
                    "berth: vm: no image disk ({})",
                    crate::image_disk::unavailable().unwrap_or("see the warning")
                )),
            }
        }
        // The directories of runs killed before they removed theirs.
        crate::vm_fleet::remove_orphans_in(&crate::vm_fleet::root());
        Ok(OwnVm {
            vm: crate::machine::Machine::ephemeral()?.with_image_disk(disk.clone()),
            disk,
            keep_dir: false,
        })
    }

    /// Boots the VM and hands its engine `image` (from the disk, or
    /// streamed from `cache`).
    pub fn start(
        &self,
        cache: &crate::image_cache::ImageCache,
        image: &berth_protocol::ImageCommit,
        timings: bool,
        note: &dyn Fn(&str),
    ) -> Result<()> {
        let t0 = Instant::now();
        let (origin, _) = self
            .vm
            .start_clone(crate::machine::MachineSpec::default())?;
        self.vm.mount_vm_shares()?;
        if timings {
            note(&format!(
                "berth: vm: {origin}, agent ready in {} ms",
                t0.elapsed().as_millis()
            ));
        }
        let t1 = Instant::now();
        let from_disk = self.disk.is_some()
            && match self
                .vm
                .connect_running()?
                .image_disk_attach(crate::image_disk::GUEST_DEVICE)
            {
                Ok(()) => true,
                Err(e) => {
                    note(&format!(
                        "berth: warning: the VM could not use the image disk: {e}; streaming the image instead"
                    ));
                    false
                }
            };
        if from_disk {
            self.vm.connect_running()?.image_commit(image)?;
        } else {
            cache.upload(image, &|| Ok(self.vm.connect_running()?))?;
        }
        if timings {
            note(&format!(
                "berth: vm: image {} in {} ms",
                if from_disk {
                    "disk attached"
                } else {
                    "streamed"
                },
                t1.elapsed().as_millis()
            ));
        }
        Ok(())
    }

    /// Gives the VM the host folders of its container's bind mounts
    /// ([`crate::vm_shares::from_config`]), before [`OwnVm::start`].
    pub fn set_shares(&mut self, shares: Vec<crate::vm_shares::VmShare>) {
        self.vm.set_shares(shares);
    }

    /// Gives the VM what its container's mounts need, before
    /// [`OwnVm::start`]: the host folders of its binds and named volumes
    /// as shares ([`crate::vm_shares::from_config`]), and a note in its
    /// directory of the named volumes it uses ([`crate::vm_volumes`]: a
    /// volume in use is not removed).
    pub fn set_mounts(&mut self, cfg: &berth_protocol::ContainerConfig) -> Result<()> {
        self.vm.set_shares(crate::vm_shares::from_config(cfg));
        crate::vm_volumes::record_uses(self.vm.dir(), &crate::vm_volumes::names(cfg))
            .context("recording the volumes the VM uses")?;
        Ok(())
    }

    /// Gives the VM's user-mode network peer addresses (guest address,
    /// host address), before [`OwnVm::start`]: compose's other services.
    pub fn set_net_peers(&mut self, peers: Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)>) {
        self.vm.set_net_peers(peers);
    }

    /// A new connection to the VM's engine.
    pub fn connect(&self) -> Result<Engine> {
        Ok(self.vm.connect_running()?)
    }

    /// Where the VM's agent listens (the VMM's vsock socket).
    pub fn endpoint(&self) -> crate::client::Endpoint {
        self.vm.endpoint()
    }

    /// The VM's directory (`$BERTH_HOME/vms/<pid>-<nanos>`).
    pub fn dir(&self) -> &std::path::Path {
        self.vm.dir()
    }

    /// Powers the VM off and keeps its directory (a detached container's
    /// record and logs, see [`crate::vm_fleet`]).
    pub fn power_off_keeping_dir(mut self) {
        self.keep_dir = true;
    }

    /// PID of the VM's VMM process, while it runs.
    pub fn vmm_pid(&self) -> Option<i32> {
        self.vm.vmm_pid()
    }

    /// The last `max` bytes the guest wrote to its serial console (empty
    /// when there is no log).
    pub fn console_tail(&self, max: u64) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(self.vm.serial_log()) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
        let mut buf = Vec::new();
        let _ = f.take(max).read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Drop for OwnVm {
    fn drop(&mut self) {
        if self.keep_dir {
            self.vm.power_off();
        } else {
            self.vm.destroy();
        }
    }
}
