//! The machine VM: one long-lived microVM (`berth-vmm`) whose PID 1 is
//! `berth-agent`, reached through the VMM's vsock Unix socket. Started on
//! demand, stopped cleanly by asking the agent to power off.
//!
//! Files under `$BERTH_HOME/machine/`: `disk.img` (sparse ext4 data disk,
//! formatted on first start), `vsock.sock`, `serial.log`, `vmm.log`,
//! `vmm.pid`, `timings.json`; the agent's read-only root disk
//! (`rootfs-<hash>.ext4`, see [`write_rootfs`]) is cached in `$BERTH_HOME/cache`.

use crate::client::{Connection, Endpoint};
use crate::placement::{agent_binary, state_dir};
use anyhow::{bail, Context, Result};
use berth_protocol::{Request, AGENT_VSOCK_PORT};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Size of the sparse data disk (grows on use, not up front).
const DISK_BYTES: u64 = 64 << 30;

/// Machine sizing.
#[derive(Debug, Clone, Copy)]
pub struct MachineSpec {
    pub cpus: u32,
    pub mem_mib: u32,
}

impl Default for MachineSpec {
    fn default() -> Self {
        // Under software virtualization (kvm_pvm) every guest-kernel
        // instruction is emulated: boot time grows with vCPUs and with RAM
        // (memmap init), so default to a small machine there.
        let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
        let (dc, dm) = if pvm { (1, 512) } else { (2, 2048) };
        let cpus = std::env::var("BERTH_MACHINE_CPUS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(dc);
        let mem_mib = std::env::var("BERTH_MACHINE_MEM_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(dm);
        MachineSpec { cpus, mem_mib }
    }
}

/// Boot breakdown recorded by `start`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub prepare_ms: u64,
    /// Launch → guest kernel running (VMM setup and kernel loading).
    pub vmm_setup_ms: Option<u64>,
    /// Guest uptime when the agent started as /init.
    pub kernel_to_init_ms: Option<u64>,
    /// /init start → agent listening on vsock.
    pub init_to_ready_ms: Option<u64>,
    /// Launch → agent answered a request.
    pub agent_ready_ms: u64,
}

/// One machine's files.
pub struct Machine {
    dir: PathBuf,
    /// The long-lived machine keeps a data disk; throw-away VMs keep their
    /// state in guest memory.
    persistent: bool,
}

fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z ") && !s.contains(") X "))
        .unwrap_or(false)
}

/// `$BERTH_VMM`, or `berth-vmm` next to `berth`.
fn vmm_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_VMM") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("berth-vmm");
    if p.is_file() {
        return Ok(p);
    }
    bail!(
        "berth-vmm not found next to {}; set BERTH_VMM",
        exe.display()
    )
}

/// `$BERTH_KERNEL`, or the newest kernel built by kernel-config/build-kernel.sh.
pub fn kernel_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_KERNEL") {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var_os("BERTH_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/berth")
        });
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(cache.join("kernel"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("vmlinux"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .context("no guest kernel found: run kernel-config/build-kernel.sh or set BERTH_KERNEL")
}

/// Formats `img` as ext4 with `options`, filled from the directory `tree`.
fn mkfs_ext4(options: &[&str], tree: &Path, img: &Path) -> Result<()> {
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .args(options)
        .arg("-d")
        .arg(tree)
        .arg(img)
        .output()
        .context("running mkfs.ext4 (install e2fsprogs)")?;
    if !out.status.success() {
        bail!("mkfs.ext4 failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Bumped when the layout of the root disk changes.
const ROOTFS_FORMAT: &str = "berth-rootfs-1";

/// Writes the guest's root disk: a small read-only ext4 image holding the
/// static agent as `/init` and an empty `/newroot`, where the agent mounts
/// the tmpfs it runs on. The kernel mounts it as its root (`root=/dev/vda
/// ro`) and the agent's pages are read on demand over virtio-blk, instead
/// of being unpacked from an initramfs first, which costs about 3 s per MB
/// when the guest kernel is emulated (kvm_pvm) and is wasted work anywhere.
pub fn write_rootfs(agent: &[u8], out: &Path) -> Result<()> {
    let parent = out.parent().context("root disk path has no parent")?;
    let stage = tempfile::Builder::new()
        .prefix(".rootfs-")
        .tempdir_in(parent)?;
    let tree = stage.path().join("tree");
    std::fs::create_dir_all(tree.join("newroot"))?;
    let init = tree.join("init");
    std::fs::write(&init, agent)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    }
    let img = stage.path().join("rootfs.ext4");
    // The agent, its metadata and some slack, in whole MiB.
    let bytes = (agent.len() as u64 + (4 << 20)).div_ceil(1 << 20) << 20;
    std::fs::File::create(&img)?.set_len(bytes)?;
    mkfs_ext4(
        &[
            "-b",
            "4096",
            "-m",
            "0",
            "-O",
            "^has_journal",
            "-E",
            "root_owner=0:0",
            "-L",
            "berth-root",
        ],
        &tree,
        &img,
    )
    .context("building the guest root disk")?;
    std::fs::rename(&img, out)?;
    Ok(())
}

impl Machine {
    pub fn default_machine() -> Machine {
        Machine {
            dir: state_dir().join("machine"),
            persistent: true,
        }
    }

    /// A throw-away VM in its own directory (`--isolation vm`).
    pub fn ephemeral() -> Result<Machine> {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let dir = state_dir()
            .join("vms")
            .join(format!("{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Machine {
            dir,
            persistent: false,
        })
    }

    /// Connects to the agent of a machine that is already running.
    pub fn connect_running(&self) -> Result<Connection, crate::client::ClientError> {
        Connection::open(&self.endpoint())
    }

    /// Stops a throw-away VM and deletes its directory.
    pub fn destroy(&self) {
        if let Some(pid) = self.vmm_pid() {
            // Its state is disposable: no clean shutdown needed.
            crate::platform::kill(pid);
            while pid_alive(pid) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    pub fn vsock_socket(&self) -> PathBuf {
        self.dir.join("vsock.sock")
    }

    pub fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::VsockMux {
            path: self.vsock_socket(),
            port: AGENT_VSOCK_PORT,
        }
    }

    /// PID of the running VMM, if any.
    pub fn vmm_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir.join("vmm.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        (pid_alive(pid) && comm.trim() == "berth-vmm").then_some(pid)
    }

    /// Connects to the agent, starting the machine when it is not running.
    pub fn connect(&self) -> Result<Connection> {
        if self.vmm_pid().is_some() {
            if let Ok(c) = self.connect_running() {
                return Ok(c);
            }
        }
        self.start(MachineSpec::default(), false)?;
        Ok(self.connect_running()?)
    }

    fn ensure_disk(&self) -> Result<PathBuf> {
        let disk = self.dir.join("disk.img");
        if disk.exists() {
            return Ok(disk);
        }
        let tmp = self.dir.join("disk.img.tmp");
        let f = std::fs::File::create(&tmp)?;
        f.set_len(DISK_BYTES)?;
        drop(f);
        // The agent keeps its state under /engine (guest-agent guest.rs
        // ENGINE_ROOT); made here, natively, rather than by the guest.
        let stage = tempfile::Builder::new()
            .prefix(".disk-")
            .tempdir_in(&self.dir)?;
        std::fs::create_dir(stage.path().join("engine"))?;
        mkfs_ext4(
            &[
                "-L",
                "berth-data",
                // A new sparse file reads as zeros: mark the inode tables
                // zeroed, or the guest kernel's ext4lazyinit thread writes
                // 1 GiB of zeros into them (64 GiB disk) after every boot
                // until done, taking guest CPU and the disk's sparseness.
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1,nodiscard,assume_storage_prezeroed=1,root_owner=0:0",
                "-m",
                "0",
            ],
            stage.path(),
            &tmp,
        )?;
        std::fs::rename(&tmp, &disk)?;
        Ok(disk)
    }

    /// The agent's root disk for this agent binary, built once and cached
    /// in `$BERTH_HOME/cache`.
    fn ensure_rootfs(&self) -> Result<PathBuf> {
        let agent_path = agent_binary()?;
        let agent = std::fs::read(&agent_path)
            .with_context(|| format!("reading {}", agent_path.display()))?;
        let mut h = Sha256::new();
        h.update(ROOTFS_FORMAT.as_bytes());
        h.update(&agent);
        let hash = hex::encode(&h.finalize()[..8]);
        let cache = state_dir().join("cache");
        std::fs::create_dir_all(&cache)?;
        let path = cache.join(format!("rootfs-{hash}.ext4"));
        if !path.exists() {
            write_rootfs(&agent, &path)?;
            // Drop the images of older agents (and the initramfs images
            // earlier versions booted from). A VM still running from one
            // keeps its open file.
            for e in std::fs::read_dir(&cache)?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if (name.starts_with("rootfs-") || name.starts_with("initramfs-"))
                    && e.path() != path
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(path)
    }

    /// Boots the machine and waits for its agent.
    pub fn start(&self, spec: MachineSpec, verbose: bool) -> Result<Timings> {
        if !cfg!(target_os = "linux") {
            bail!("the machine VM needs the Linux KVM backend on this host (Hypervisor.framework/WHP backends are not built yet)");
        }
        if let Some(pid) = self.vmm_pid() {
            if self.connect_running().is_ok() {
                if verbose {
                    eprintln!("machine already running (pid {pid})");
                }
                return Ok(self.timings());
            }
        }
        let t0 = Instant::now();
        std::fs::create_dir_all(&self.dir)?;
        // Serialise concurrent starts.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("start.lock"))?;
        // Released when `lock` drops.
        crate::platform::lock_exclusive(&lock)?;
        if self.vmm_pid().is_some() && self.connect_running().is_ok() {
            return Ok(self.timings());
        }
        if let Some(pid) = self.vmm_pid() {
            // A VMM whose agent does not answer: give it the boot timeout below.
            return self.wait_ready(pid, t0, 0, verbose);
        }
        let disk = if self.persistent {
            Some(self.ensure_disk()?)
        } else {
            None
        };
        let rootfs = self.ensure_rootfs()?;
        let kernel = kernel_path()?;
        let vmm = vmm_binary()?;
        let _ = std::fs::remove_file(self.vsock_socket());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let cmdline = format!(
            "console=ttyS0 reboot=k panic=-1 quiet clocksource=kvm-clock \
             root=/dev/vda ro rootfstype=ext4 init=/init berth.time={}.{:09}{}",
            now.as_secs(),
            now.subsec_nanos(),
            if disk.is_some() {
                " berth.disk=/dev/vdb"
            } else {
                ""
            }
        );
        let log = std::fs::File::create(self.dir.join("vmm.log"))?;
        let mut cmd = std::process::Command::new(&vmm);
        cmd.arg("--kernel")
            .arg(&kernel)
            .arg("--disk")
            .arg(format!("{},ro", rootfs.display()))
            .arg("--cmdline")
            .arg(&cmdline);
        cmd.arg("--cpus")
            .arg(spec.cpus.to_string())
            .arg("--mem-mib")
            .arg(spec.mem_mib.to_string());
        cmd.arg("--serial-log")
            .arg(self.serial_log())
            .arg("--vsock-uds")
            .arg(self.vsock_socket());
        if let Some(disk) = &disk {
            cmd.arg("--disk").arg(format!("{},rw", disk.display()));
        }
        cmd.arg("--rng").arg("--timings");
        cmd.stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        crate::placement::detach(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", vmm.display()))?;
        let pid = child.id() as i32;
        std::fs::write(self.dir.join("vmm.pid"), format!("{pid}\n"))?;
        std::mem::forget(child);
        let prepare_ms = t0.elapsed().as_millis() as u64;
        self.wait_ready(pid, t0, prepare_ms, verbose)
    }

    fn wait_ready(&self, pid: i32, t0: Instant, prepare_ms: u64, verbose: bool) -> Result<Timings> {
        let progress = std::io::stderr().is_terminal();
        let timeout = Duration::from_secs(
            std::env::var("BERTH_BOOT_TIMEOUT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(300),
        );
        loop {
            if !pid_alive(pid) {
                let log = std::fs::read_to_string(self.dir.join("vmm.log")).unwrap_or_default();
                let serial = std::fs::read_to_string(self.serial_log()).unwrap_or_default();
                let tail: Vec<&str> = serial.lines().rev().take(8).collect();
                bail!(
                    "the machine VM exited during boot.\nvmm: {}\nserial (last lines):\n{}",
                    log.trim(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            if let Ok(mut c) = self.connect_running() {
                if c.call(Request::Info).is_ok() {
                    break;
                }
            }
            if t0.elapsed() > timeout {
                bail!(
                    "the machine's agent did not answer within {} s (see {})",
                    timeout.as_secs(),
                    self.serial_log().display()
                );
            }
            if progress {
                eprint!(
                    "\rStarting machine VM… {:.0} s ",
                    t0.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if progress {
            eprint!("\r\x1b[K");
        }
        let total_ms = t0.elapsed().as_millis() as u64;
        // The agent logs the guest's uptime when it starts as /init and when
        // it is ready; the rest of the wall time is the VMM's setup and
        // kernel loading before the guest clock starts.
        let serial = std::fs::read_to_string(self.serial_log()).unwrap_or_default();
        let uptime_at = |marker: &str| -> Option<u64> {
            let line = serial.lines().rev().find(|l| l.contains(marker))?;
            let v = line.split("(uptime ").nth(1)?.split(' ').next()?;
            v.parse::<f64>().ok().map(|s| (s * 1000.0) as u64)
        };
        let init_ms = uptime_at("started as init");
        let ready_ms = uptime_at("ready on vsock port");
        let t = Timings {
            prepare_ms,
            vmm_setup_ms: ready_ms.map(|r| total_ms.saturating_sub(r).saturating_sub(prepare_ms)),
            kernel_to_init_ms: init_ms,
            init_to_ready_ms: init_ms.zip(ready_ms).map(|(i, r)| r.saturating_sub(i)),
            agent_ready_ms: total_ms,
        };
        let _ = std::fs::write(self.dir.join("timings.json"), serde_json::to_vec(&t)?);
        if verbose {
            eprintln!("machine started (pid {pid})");
        }
        Ok(t)
    }

    /// The timings of the last start.
    pub fn timings(&self) -> Timings {
        std::fs::read(self.dir.join("timings.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default()
    }

    /// Asks the agent to power off; kills the VMM if it does not stop.
    pub fn stop(&self) -> Result<bool> {
        let Some(pid) = self.vmm_pid() else {
            return Ok(false);
        };
        if let Ok(mut c) = self.connect_running() {
            let _ = c.call(Request::Shutdown);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if pid_alive(pid) {
            crate::platform::kill(pid);
        }
        let _ = std::fs::remove_file(self.dir.join("vmm.pid"));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::write_rootfs;

    #[test]
    fn rootfs_is_ext4_with_init_and_newroot() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.ext4");
        let agent = vec![0x7fu8; 3 << 20];
        write_rootfs(&agent, &out).unwrap();
        let len = std::fs::metadata(&out).unwrap().len();
        assert!((3 << 20..=8 << 20).contains(&len), "{len}");
        // Nothing but the image is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let ls = std::process::Command::new("debugfs")
            .args(["-R", "ls -l /"])
            .arg(&out)
            .output()
            .expect("debugfs (e2fsprogs)");
        let text = String::from_utf8_lossy(&ls.stdout);
        let init = text
            .lines()
            .find(|l| l.trim_end().ends_with(" init"))
            .unwrap_or_else(|| panic!("no /init: {text}"));
        assert!(
            init.contains("100755") && init.contains(&(3 << 20).to_string()),
            "{init}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains("40755") && l.trim_end().ends_with(" newroot")),
            "{text}"
        );
    }
}
