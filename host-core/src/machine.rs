//! The machine VM: one long-lived microVM (`berth-vmm`) whose PID 1 is
//! `berth-agent`, reached through the VMM's vsock Unix socket. Started on
//! demand, stopped cleanly by asking the agent to power off.
//!
//! Files under `$BERTH_HOME/machine/`: `disk.img` (sparse ext4 data disk,
//! formatted on first start), `vsock.sock`, `serial.log`, `vmm.log`,
//! `vmm.pid`, `timings.json`, `balloon.json` (the balloon's counters, see
//! [`Machine::balloon_counters`]); the agent's read-only root disk
//! (`rootfs-<hash>.ext4`, see [`write_rootfs`]) is cached in `$BERTH_HOME/cache`.

use crate::client::Endpoint;
use crate::engine::Engine;
use crate::paths::{agent_binary, state_dir};
use anyhow::{bail, Context, Result};
use berth_protocol::AGENT_VSOCK_PORT;
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
        // (the kernel initialises and frees one struct page per 4 KiB page),
        // so default to a small machine there (`BERTH_MACHINE_MEM_MIB` to
        // change it). 256 MiB boots a bare VM with 20 % fewer emulated
        // instructions, but measured with benches/machine.sh it made
        // `run --rm true` slower (34.8 and 36.4 s against 28.8 s at 512)
        // and gained nothing on machine start, so 512 stays.
        let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
        let (dc, dm) = if pvm { (1, 512) } else { (2, 2048) };
        let cpus = crate::env::parse(crate::env::MACHINE_CPUS).unwrap_or(dc);
        let mem_mib = crate::env::parse(crate::env::MACHINE_MEM_MIB).unwrap_or(dm);
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
    /// The machine was resumed from its suspend snapshot (see
    /// [`Machine::suspend`]), not booted: the boot fields are empty.
    #[serde(default)]
    pub resumed: bool,
}

/// One machine's files.
pub struct Machine {
    dir: PathBuf,
    /// The long-lived machine keeps a data disk; throw-away VMs keep their
    /// state in guest memory.
    persistent: bool,
    /// Throw-away VMs: the read-only image disk for their image slot
    /// (`/dev/vdb`); an empty placeholder disk fills the slot without one.
    image_disk: Option<PathBuf>,
    /// Throw-away VMs: the host folders for their share slots (see
    /// [`crate::vm_shares`]); an empty placeholder folder fills the others.
    vm_shares: Vec<crate::vm_shares::VmShare>,
    /// Throw-away VMs: the user-mode network's peer addresses (guest
    /// address, host address; `berth-vmm --net-peer`), for compose's
    /// service names between own VMs.
    net_peers: Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
}

/// Whether `pid` runs (not a zombie, not dead).
pub(crate) fn pid_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z ") && !s.contains(") X "))
        .unwrap_or(false)
}

pub use crate::paths::vmm_binary;

/// `$BERTH_KERNEL`, or the newest kernel built by kernel-config/build-kernel.sh.
pub fn kernel_path() -> Result<PathBuf> {
    if let Some(p) = crate::env::os(crate::env::KERNEL) {
        return Ok(PathBuf::from(p));
    }
    let cache = crate::env::path(crate::env::CACHE_DIR).unwrap_or_else(|| {
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

/// How `berth-vmm` is launched.
enum Launch<'a> {
    /// Cold boot, snapshotting into the directory when the agent is ready.
    Boot { snapshot_to: Option<&'a Path> },
    /// Continue the snapshot in the directory.
    Restore(&'a Path),
}

/// How a throw-away VM was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmOrigin {
    /// Restored from the cached snapshot.
    Clone,
    /// Restored from the cached snapshot by a warm-pool standby VMM.
    PoolClone,
    /// Cold boot that also made the snapshot.
    ColdBootSnapshotted,
    /// Cold boot only.
    ColdBoot,
}

impl std::fmt::Display for VmOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VmOrigin::Clone => "clone",
            VmOrigin::PoolClone => "clone (warm pool standby)",
            VmOrigin::ColdBootSnapshotted => "cold boot (snapshot made), clone of it",
            VmOrigin::ColdBoot => "cold boot",
        })
    }
}

/// Bumped when what a snapshot holds changes (guest command line, devices).
/// 3: the guest has its network card (snapshots of 2 had none).
/// 4: the guest has [`crate::vm_shares::SLOTS`] empty share slots.
const SNAPSHOT_FORMAT: &str = "berth-vm-snapshot-4";

/// Whether VMs get a network card: egress through the VMM's user-mode
/// stack (host sockets, so the host's VPN, DNS and proxy apply), and
/// `host.docker.internal` for their containers. `BERTH_MACHINE_NET=none`
/// boots without one (the machine VM and `--isolation vm` VMs alike).
fn vm_net() -> bool {
    !crate::env::is(crate::env::MACHINE_NET, "none")
}

/// Identity of a file that is not hashed: path, size, modification time.
fn file_identity(p: &Path) -> Result<String> {
    let p = p
        .canonicalize()
        .with_context(|| format!("{}", p.display()))?;
    let m = p.metadata()?;
    let mtime = m
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{}\0{}\0{mtime}", p.display(), m.len()))
}

/// Cache key of the snapshot of a freshly booted guest: the kernel, the
/// root disk (named by the agent's hash), the VMM binary, the machine
/// size and whether it has a network card ([`vm_net`]). The VMM also
/// checks the kernel's sha256 and its own version on restore.
fn snapshot_key(kernel: &Path, rootfs: &Path, vmm: &Path, spec: MachineSpec) -> Result<String> {
    let mut h = Sha256::new();
    for part in [
        SNAPSHOT_FORMAT.to_string(),
        file_identity(kernel)?,
        file_identity(rootfs)?,
        file_identity(vmm)?,
        format!("cpus={} mem={}", spec.cpus, spec.mem_mib),
        format!("net={}", if vm_net() { "user" } else { "none" }),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    Ok(hex::encode(&h.finalize()[..12]))
}

/// `n` random bytes from the host.
fn host_random(n: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf)
}

/// Removes the marker of a snapshot being built when dropped.
struct BuildClaim(PathBuf);

impl Drop for BuildClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Claims building the snapshot `marker` stands for; `None` when another
/// process is building it (a marker older than the boot timeout is stale).
fn claim_build(marker: &Path) -> Option<BuildClaim> {
    for _ in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(marker)
        {
            Ok(_) => return Some(BuildClaim(marker.to_path_buf())),
            Err(_) => {
                let stale = marker
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(900));
                if !stale {
                    return None;
                }
                let _ = std::fs::remove_file(marker);
            }
        }
    }
    None
}

/// Removes the snapshots of the same machine size made from other inputs
/// (an older kernel, agent or VMM), and leftovers of failed builds.
fn prune_snapshots(snaps: &Path, key: &str, spec: MachineSpec) {
    let size = format!("cpus {}\nmem_mib {}\n", spec.cpus, spec.mem_mib);
    for e in std::fs::read_dir(snaps).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        let remove = if name.starts_with(".tmp-") || name.starts_with(".bad-") {
            old
        } else if name == key || name.ends_with(".building") {
            false
        } else {
            std::fs::read_to_string(e.path().join("inputs.txt")).is_ok_and(|t| t.ends_with(&size))
        };
        if remove {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Machine {
    pub fn default_machine() -> Machine {
        Machine {
            dir: state_dir().join("machine"),
            persistent: true,
            image_disk: None,
            vm_shares: Vec::new(),
            net_peers: Vec::new(),
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
            image_disk: None,
            vm_shares: Vec::new(),
            net_peers: Vec::new(),
        })
    }

    /// The throw-away VM whose directory is `dir` (made by
    /// [`Machine::ephemeral`], possibly by another process).
    pub fn existing_ephemeral(dir: PathBuf) -> Machine {
        Machine {
            dir,
            persistent: false,
            image_disk: None,
            vm_shares: Vec::new(),
            net_peers: Vec::new(),
        }
    }

    /// This VM's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Puts `disk` (see [`crate::image_disk`]) in this throw-away VM's
    /// image slot.
    pub fn with_image_disk(mut self, disk: Option<PathBuf>) -> Machine {
        self.image_disk = disk;
        self
    }

    /// Gives this throw-away VM `shares` in its share slots (at most
    /// [`crate::vm_shares::SLOTS`]; [`crate::vm_shares::check_binds`]
    /// keeps a container to that).
    pub fn set_shares(&mut self, shares: Vec<crate::vm_shares::VmShare>) {
        self.vm_shares = shares;
    }

    /// Gives this throw-away VM's user-mode network these peer addresses
    /// (guest address, host address): the guest's TCP connections to a
    /// guest address go to the host address, same port.
    pub fn set_net_peers(&mut self, peers: Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)>) {
        self.net_peers = peers;
    }

    /// The `--net-peer` flags of this VM (none without user networking).
    fn net_peer_args(&self) -> Vec<String> {
        if !vm_net() {
            return Vec::new();
        }
        self.net_peers
            .iter()
            .flat_map(|(g, h)| ["--net-peer".to_string(), format!("{g}={h}")])
            .collect()
    }

    /// The host folders in this VM's share slots.
    pub fn vm_shares(&self) -> &[crate::vm_shares::VmShare] {
        &self.vm_shares
    }

    /// The `--fs` flags of a throw-away VM (none for the machine VM): its
    /// share slots with its folders, or all empty for a boot that will be
    /// snapshotted (the guest has not mounted them when it is taken; each
    /// clone gets its own folders at restore).
    ///
    /// Also returns the files the VMM's own mount namespace binds into
    /// the staging folders of file shares (`files/` in the VM directory;
    /// see [`crate::vm_shares::stage_files`]).
    fn share_slots(
        &self,
        for_snapshot: bool,
    ) -> Result<(Vec<String>, crate::vm_shares::FileBinds)> {
        if self.persistent {
            return Ok((Vec::new(), Vec::new()));
        }
        let placeholder = state_dir().join("cache").join("empty-share");
        if !placeholder.is_dir() {
            std::fs::create_dir_all(&placeholder)?;
        }
        let shares = if for_snapshot {
            &[][..]
        } else {
            &self.vm_shares[..]
        };
        let staging = self.dir.join("files");
        let binds = crate::vm_shares::stage_files(shares, &staging)?;
        let args = crate::vm_shares::vmm_fs_args(shares, &placeholder, &staging)
            .into_iter()
            .flat_map(|a| ["--fs".to_string(), a])
            .collect();
        Ok((args, binds))
    }

    /// The disk for the image slot of a throw-away VM (`None` for the
    /// machine VM): the image disk, or an empty one where there is none or
    /// for a boot that will be snapshotted, whose clones get theirs after
    /// the restore (the VMM then tells the guest the capacity changed).
    fn image_slot(&self, for_snapshot: bool) -> Result<Option<PathBuf>> {
        if self.persistent {
            return Ok(None);
        }
        if let (Some(d), false) = (&self.image_disk, for_snapshot) {
            return Ok(Some(d.clone()));
        }
        let empty = state_dir().join("cache").join("empty-disk.img");
        if !empty.is_file() {
            std::fs::create_dir_all(empty.parent().context("no cache dir")?)?;
            let tmp = empty.with_extension(format!("tmp-{}", std::process::id()));
            std::fs::File::create(&tmp)?;
            std::fs::rename(&tmp, &empty)?;
        }
        Ok(Some(empty))
    }

    /// The `--disk` arguments of a restore: none for the machine VM (the
    /// snapshot's own), the root disk and the image slot for a clone.
    fn restore_disks(&self, rootfs: &Path) -> Result<Vec<String>> {
        Ok(match self.image_slot(false)? {
            Some(slot) => vec![
                format!("{},ro", rootfs.display()),
                format!("{},ro", slot.display()),
            ],
            None => Vec::new(),
        })
    }

    /// Connects to the agent of a machine that is already running.
    pub fn connect_running(&self) -> Result<Engine, crate::client::ClientError> {
        Engine::open(&self.endpoint())
    }

    /// Stops a throw-away VM and deletes its directory.
    pub fn destroy(&self) {
        self.power_off();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Kills a throw-away VM's VMM (its state is disposable: no clean
    /// shutdown needed) and waits until it is gone; the directory stays.
    pub fn power_off(&self) {
        if let Some(pid) = self.vmm_pid() {
            crate::platform::kill(pid);
            while pid_alive(pid) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    pub fn vsock_socket(&self) -> PathBuf {
        self.dir.join("vsock.sock")
    }

    pub fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }

    /// The VMM's balloon counters (`berth-vmm --balloon-stats`).
    pub fn balloon_stats(&self) -> PathBuf {
        self.dir.join("balloon.json")
    }

    /// What the running VMM's balloon gave back to the host since it
    /// started, as `vmm_balloon_<counter>` (bytes and range counts; see
    /// berth-vmm's `BalloonStats`); empty when the file is missing or not
    /// the VMM's format.
    pub fn balloon_counters(&self) -> std::collections::BTreeMap<String, u64> {
        std::fs::read(self.balloon_stats())
            .ok()
            .map(|d| parse_balloon_stats(&d))
            .unwrap_or_default()
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

    /// Where a boot records which agent binary the guest runs.
    fn agent_record(&self) -> PathBuf {
        self.dir.join("agent.identity")
    }

    /// Whether the running machine's agent came from another build than
    /// the one this `berth` would boot now: Some((booted, now)) when so.
    pub fn outdated_agent(&self) -> Option<(String, String)> {
        let booted = std::fs::read_to_string(self.agent_record()).unwrap_or_default();
        let now = file_identity(&agent_binary().ok()?).ok()?;
        let path = |id: &str| id.split('\0').next().unwrap_or("").to_string();
        (booted != now).then(|| {
            let was = if booted.is_empty() {
                "an older berth".to_string()
            } else {
                format!("an older {}", path(&booted))
            };
            (was, path(&now))
        })
    }

    /// Runs this machine's port forwarder (see [`crate::port_forward`]).
    pub fn serve_ports(&self) -> Result<()> {
        crate::port_forward::serve(
            &self.dir,
            self.endpoint(),
            || self.vmm_pid().is_some(),
            || self.idle_suspend_check(),
        )
    }

    /// Starts the port forwarder of the machine VM unless one runs.
    pub fn ensure_port_forwarder(&self) {
        if !self.persistent || self.vmm_pid().is_none() {
            return;
        }
        let (_, pid_file) = crate::port_forward::paths(&self.dir);
        let alive = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .is_some_and(|p| {
                pid_alive(p)
                    && std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|c| c.contains("port-forwarder"))
            });
        if alive {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["machine", "port-forwarder"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.join("ports.log"))
                    .map(std::process::Stdio::from)
                    .unwrap_or_else(|_| std::process::Stdio::null()),
            );
        crate::platform::detach(&mut cmd);
        if cmd.spawn().is_ok() {
            // Until it listens, a `sync` would find nobody.
            let (sock, _) = crate::port_forward::paths(&self.dir);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !sock.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Publishes the machine's ports on the host now; the host addresses
    /// that could not be bound, with the error.
    pub fn sync_ports(&self) -> Vec<(String, String)> {
        self.ensure_port_forwarder();
        crate::port_forward::sync(&self.dir).unwrap_or_default()
    }

    /// Where each command that uses the machine leaves its time (the
    /// file's mtime), for the idle suspend.
    fn last_use(&self) -> PathBuf {
        self.dir.join("last-use")
    }

    fn touch_last_use(&self) {
        let _ = std::fs::File::create(self.last_use());
    }

    /// The file a command holds a shared lock on from its first
    /// connection to the machine until it exits (see [`Machine::connect`]),
    /// so that the idle suspend can tell a long command (`load`, `logs
    /// -f`, `build`) from an idle machine.
    fn in_use_file(&self) -> PathBuf {
        self.dir.join("in-use")
    }

    fn open_in_use(&self) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.in_use_file())
    }

    /// Marks this process as a command using the machine until it exits
    /// (once per process; a server that stays up calls
    /// [`commands_leave_no_use_mark`] first, or the machine would never be
    /// idle).
    fn mark_in_use(&self) {
        if NO_USE_MARK.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        USE_MARK.get_or_init(|| {
            let f = self.open_in_use().ok()?;
            crate::platform::lock_shared(&f).ok()?;
            Some(f)
        });
    }

    /// Whether a command other than this process is connected to the
    /// machine now (holds the in-use mark).
    fn commands_connected(&self) -> bool {
        match self.open_in_use() {
            Ok(f) => matches!(crate::platform::try_lock_exclusive(&f), Ok(false)),
            Err(_) => false,
        }
    }

    /// The port forwarder's quiet tick (every 10 s without a container
    /// event): with `BERTH_MACHINE_IDLE_SUSPEND=<seconds>` and no command
    /// for that long, starts `berth machine suspend` (which ends this
    /// forwarder; a refused suspend waits another period).
    fn idle_suspend_check(&self) {
        let after = crate::env::parse::<u64>(crate::env::MACHINE_IDLE_SUSPEND);
        let since = std::fs::metadata(self.last_use())
            .or_else(|_| std::fs::metadata(self.dir.join("vmm.pid")))
            .and_then(|m| m.modified())
            .ok();
        if !idle_suspend_due(after, since, std::time::SystemTime::now()) {
            return;
        }
        self.touch_last_use();
        if self.commands_connected() {
            // A long command (its last use was recorded when it
            // connected) is still running: idle again from now.
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        eprintln!("machine idle for {} s: suspending it", after.unwrap_or(0));
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["machine", "suspend"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        crate::platform::detach(&mut cmd);
        if let Err(e) = cmd.spawn() {
            eprintln!("machine suspend: {e}");
        }
    }

    /// Connects to the agent, starting the machine when it is not running.
    pub fn connect(&self) -> Result<Engine> {
        if self.persistent {
            self.touch_last_use();
            self.mark_in_use();
        }
        if self.vmm_pid().is_some() {
            if let Ok(c) = self.connect_running() {
                self.ensure_port_forwarder();
                if let Some((was, now)) = self.persistent.then(|| self.outdated_agent()).flatten() {
                    static WARNED: std::sync::atomic::AtomicBool =
                        std::sync::atomic::AtomicBool::new(false);
                    if !WARNED.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        eprintln!(
                            "berth: warning: the machine VM runs the berth-agent of {was}, not {now}; \
                             restart it to upgrade: berth machine stop (containers stop with it)"
                        );
                    }
                }
                return Ok(c);
            }
        }
        self.start(MachineSpec::default(), false)?;
        self.ensure_port_forwarder();
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
        if self.is_suspended() {
            match self.resume(spec, t0, verbose) {
                Ok(t) => return Ok(t),
                Err(e) => eprintln!(
                    "berth: warning: cannot resume the suspended machine VM: {e:#}; cold-booting it instead (its containers are stopped, images and volumes are kept)"
                ),
            }
        }
        let disk = if self.persistent {
            Some(self.ensure_disk()?)
        } else {
            None
        };
        let rootfs = self.ensure_rootfs()?;
        if self.persistent {
            // What this boot's guest runs, for [`Machine::outdated_agent`].
            let _ = std::fs::write(self.agent_record(), file_identity(&agent_binary()?)?);
        }
        let kernel = kernel_path()?;
        // The host folders this boot shares (persistent machine only: a
        // throw-away VM gets its folders in share slots, mounted on request,
        // see [`crate::vm_shares`]), recorded for [`Machine::shares`].
        let shares = if self.persistent {
            crate::shares::effective(&crate::shares::configured())
        } else {
            Vec::new()
        };
        let cmd = self.vmm_command(
            &Launch::Boot { snapshot_to: None },
            spec,
            &kernel,
            &rootfs,
            disk.as_deref(),
            &shares,
        )?;
        if self.persistent {
            let text: String = shares
                .iter()
                .map(|p| format!("{}\n", p.display()))
                .collect();
            std::fs::write(self.dir.join("shares"), text)?;
        }
        let pid = self.spawn_vmm(cmd)?;
        let prepare_ms = t0.elapsed().as_millis() as u64;
        self.wait_ready(pid, t0, prepare_ms, verbose)
    }

    /// The host folders the running machine shares (`None` when it does
    /// not run).
    pub fn shares(&self) -> Option<Vec<PathBuf>> {
        self.vmm_pid()?;
        // A machine booted before shares existed records none: it shares
        // nothing.
        let text = std::fs::read_to_string(self.dir.join("shares")).unwrap_or_default();
        Some(
            text.lines()
                .filter(|l| !l.is_empty())
                .map(PathBuf::from)
                .collect(),
        )
    }

    /// The `berth-vmm` command line for a cold boot or a restore.
    fn vmm_command(
        &self,
        launch: &Launch,
        spec: MachineSpec,
        kernel: &Path,
        rootfs: &Path,
        disk: Option<&Path>,
        shares: &[PathBuf],
    ) -> Result<std::process::Command> {
        let vmm = vmm_binary()?;
        let _ = std::fs::remove_file(self.vsock_socket());
        let mut cmd = std::process::Command::new(&vmm);
        match launch {
            Launch::Restore(dir) => {
                // --kernel makes the VMM check that the snapshot's guest
                // booted this kernel.
                cmd.arg("--restore").arg(dir).arg("--kernel").arg(kernel);
                for d in self.restore_disks(rootfs)? {
                    cmd.arg("--disk").arg(d);
                }
                let (slots, binds) = self.share_slots(false)?;
                cmd.args(slots);
                cmd.args(self.net_peer_args());
                crate::platform::private_binds(&mut cmd, &binds)?;
                if self.persistent {
                    // A resume: the shares it booted with, writable again
                    // (a restore's default is the snapshot's, read-only).
                    cmd.args(crate::shares::vmm_args(shares).0);
                }
            }
            Launch::Boot { snapshot_to } => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
                let (share_flags, share_param) = crate::shares::vmm_args(shares);
                // Egress through the VMM's user-mode network stack, in
                // snapshotted boots too: the snapshot keeps the card and
                // the guest's eth0 as the agent set it up from
                // `berth.net=` (every clone keeps that command line, so its
                // containers get `host.docker.internal` as well), and each
                // clone's VMM starts a fresh stack. The VMM refuses the
                // snapshot if the stack holds a connection then.
                let net = vm_net();
                // The guest agent logs at this berth's level when one was
                // asked for (BERTH_LOG or --log-level exported it). Not in
                // snapshotted boots: every clone of a snapshot keeps the
                // command line it was made with, so they use the guest's
                // default.
                let log = if snapshot_to.is_none() && berth_log::requested() {
                    format!(" berth.log={}", berth_log::level_name(log::max_level()))
                } else {
                    String::new()
                };
                let cmdline = format!(
                    "console=ttyS0 reboot=k panic=-1 quiet clocksource=kvm-clock \
                     root=/dev/vda ro rootfstype=ext4 init=/init berth.time={}.{:09}{}{}{}{log}",
                    now.as_secs(),
                    now.subsec_nanos(),
                    if disk.is_some() {
                        " berth.disk=/dev/vdb"
                    } else {
                        ""
                    },
                    share_param.map(|p| format!(" {p}")).unwrap_or_default(),
                    if net {
                        " berth.net=192.168.127.2/24,gw=192.168.127.1,dns=192.168.127.1,host=192.168.127.254"
                    } else {
                        ""
                    }
                );
                cmd.args(&share_flags);
                if net {
                    cmd.arg("--net").arg("user");
                    if snapshot_to.is_none() {
                        cmd.args(self.net_peer_args());
                    }
                }
                cmd.arg("--kernel")
                    .arg(kernel)
                    .arg("--disk")
                    .arg(format!("{},ro", rootfs.display()))
                    .arg("--cmdline")
                    .arg(&cmdline);
                cmd.arg("--cpus")
                    .arg(spec.cpus.to_string())
                    .arg("--mem-mib")
                    .arg(spec.mem_mib.to_string());
                if let Some(disk) = disk {
                    cmd.arg("--disk").arg(format!("{},rw", disk.display()));
                }
                if let Some(slot) = self.image_slot(snapshot_to.is_some())? {
                    cmd.arg("--disk").arg(format!("{},ro", slot.display()));
                }
                let (slots, binds) = self.share_slots(snapshot_to.is_some())?;
                cmd.args(slots);
                crate::platform::private_binds(&mut cmd, &binds)?;
                cmd.arg("--rng");
                // BERTH_BALLOON=0: no free page reporting (freed guest
                // memory stays on the host).
                if !crate::env::is(crate::env::BALLOON, "0") {
                    cmd.arg("--balloon");
                }
                if let Some(dir) = snapshot_to {
                    cmd.arg("--snapshot-on-ready").arg(dir);
                }
            }
        }
        if self.persistent {
            // `berth machine suspend` (SIGUSR2) snapshots it there and
            // ends it.
            cmd.arg("--suspend-to").arg(self.suspend_dir());
        }
        cmd.arg("--serial-log")
            .arg(self.serial_log())
            .arg("--vsock-uds")
            .arg(self.vsock_socket());
        // Counters of what the balloon gave back (`machine counters`); a
        // restore's balloon, taken from the snapshot, writes them too.
        cmd.arg("--balloon-stats").arg(self.balloon_stats());
        cmd.arg("--timings");
        Ok(cmd)
    }

    /// Starts the VMM detached, logging to `vmm.log`; returns its PID.
    fn spawn_vmm(&self, mut cmd: std::process::Command) -> Result<i32> {
        log::debug!("starting the VMM: {cmd:?}");
        let log = std::fs::File::create(self.dir.join("vmm.log"))?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        crate::platform::detach(&mut cmd);
        if !self.persistent {
            // A throw-away VM lives no longer than the process that made
            // it (a `berth run` or the keeper of a `run -d`), even when
            // that process is killed and its Drop never runs.
            crate::platform::die_with_parent(&mut cmd);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
        let pid = child.id() as i32;
        log::debug!("VMM pid {pid}, log {}", self.dir.join("vmm.log").display());
        std::fs::write(self.dir.join("vmm.pid"), format!("{pid}\n"))?;
        std::mem::forget(child);
        Ok(pid)
    }

    fn wait_ready(&self, pid: i32, t0: Instant, prepare_ms: u64, verbose: bool) -> Result<Timings> {
        let timeout =
            Duration::from_secs(crate::env::parse(crate::env::BOOT_TIMEOUT).unwrap_or(300));
        self.wait_ready_within(pid, t0, prepare_ms, verbose, timeout)
    }

    fn wait_ready_within(
        &self,
        pid: i32,
        t0: Instant,
        prepare_ms: u64,
        verbose: bool,
        timeout: Duration,
    ) -> Result<Timings> {
        let progress = std::io::stderr().is_terminal();
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
                if c.info().is_ok() {
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
            resumed: false,
        };
        let _ = std::fs::write(self.dir.join("timings.json"), serde_json::to_vec(&t)?);
        if verbose {
            eprintln!("machine started (pid {pid})");
        }
        Ok(t)
    }

    /// Starts a throw-away VM (`--isolation vm`) as a copy-on-write clone
    /// of the snapshot of a freshly booted guest with this kernel, agent
    /// (root disk), VMM and size, kept in `$BERTH_HOME/cache/snapshots/
    /// <key>/`. Without one, cold-boots and has the VMM snapshot the guest
    /// when its agent is ready (built in a temporary directory, renamed
    /// into place when complete). A snapshot that cannot be restored is
    /// reported, removed, and replaced by a cold boot that rebuilds it.
    /// Every VM is then told it was cloned ([`Engine::clone_init`]): the
    /// clock, RNG and hostname it resumed with are shared with the snapshot.
    /// `BERTH_VM_SNAPSHOTS=0` turns this off (a plain cold boot each time).
    pub fn start_clone(&self, spec: MachineSpec) -> Result<(VmOrigin, Timings)> {
        let enabled = cfg!(all(target_os = "linux", target_arch = "x86_64"))
            && !crate::env::is(crate::env::VM_SNAPSHOTS, "0");
        if !enabled {
            return Ok((VmOrigin::ColdBoot, self.start(spec, false)?));
        }
        let t0 = Instant::now();
        std::fs::create_dir_all(&self.dir)?;
        let rootfs = self.ensure_rootfs()?;
        let kernel = kernel_path()?;
        let key = snapshot_key(&kernel, &rootfs, &vmm_binary()?, spec)?;
        let snaps = state_dir().join("cache").join("snapshots");
        std::fs::create_dir_all(&snaps)?;
        let dir = snaps.join(&key);
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        );
        if dir.join("state.bin").is_file() {
            match self.restore(&dir, spec, &kernel, &rootfs, t0) {
                Ok((t, pooled)) => {
                    let origin = if pooled {
                        VmOrigin::PoolClone
                    } else {
                        VmOrigin::Clone
                    };
                    return Ok((origin, t));
                }
                Err(reason) => {
                    eprintln!(
                        "berth: warning: cannot restore the VM snapshot {}: {reason}; cold-booting instead (the snapshot will be rebuilt)",
                        dir.display()
                    );
                    // Clones running from it keep their mapping.
                    let bad = snaps.join(format!(".bad-{key}-{unique}"));
                    if std::fs::rename(&dir, &bad).is_ok() {
                        let _ = std::fs::remove_dir_all(&bad);
                    }
                }
            }
        }
        let t0 = Instant::now();
        let claim = if dir.join("state.bin").is_file() {
            None
        } else {
            claim_build(&snaps.join(format!("{key}.building")))
        };
        let tmp = claim
            .as_ref()
            .map(|_| snaps.join(format!(".tmp-{key}-{unique}")));
        let cmd = self.vmm_command(
            &Launch::Boot {
                snapshot_to: tmp.as_deref(),
            },
            spec,
            &kernel,
            &rootfs,
            None,
            &[],
        )?;
        let pid = self.spawn_vmm(cmd)?;
        let prepare_ms = t0.elapsed().as_millis() as u64;
        if let Some(tmp) = &tmp {
            // Connect only after the snapshot: the VMM refuses to snapshot
            // a VM with open vsock connections.
            match self.wait_snapshot(pid, tmp) {
                Ok(()) => {
                    let _ = std::fs::write(
                        tmp.join("inputs.txt"),
                        format!(
                            "kernel {}\nrootfs {}\nnet {}\ncpus {}\nmem_mib {}\n",
                            kernel.display(),
                            rootfs.display(),
                            if vm_net() { "user" } else { "none" },
                            spec.cpus,
                            spec.mem_mib
                        ),
                    );
                    let _ = std::fs::remove_dir_all(&dir);
                    if std::fs::rename(tmp, &dir).is_ok() {
                        prune_snapshots(&snaps, &key, spec);
                        // The container runs in a clone of the new snapshot
                        // too, not in the VM that was paused and saved, so
                        // that every container starts the same way.
                        crate::platform::kill(pid);
                        while pid_alive(pid) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        drop(claim);
                        match self.restore(&dir, spec, &kernel, &rootfs, Instant::now()) {
                            Ok((t, _)) => return Ok((VmOrigin::ColdBootSnapshotted, t)),
                            Err(reason) => {
                                eprintln!(
                                    "berth: warning: cannot restore the VM snapshot {} just made: {reason}; cold-booting without it",
                                    dir.display()
                                );
                                let _ = std::fs::remove_dir_all(&dir);
                                return Ok((VmOrigin::ColdBoot, self.start(spec, false)?));
                            }
                        }
                    }
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(tmp);
                    eprintln!("berth: warning: no VM snapshot made: {e:#}");
                }
            }
        }
        drop(claim);
        if tmp.is_some() && (!self.vm_shares.is_empty() || !self.net_peers.is_empty()) {
            // This boot was meant for the snapshot: its share slots hold
            // the empty placeholder, not this VM's folders (and its stack
            // has no peer addresses).
            crate::platform::kill(pid);
            while pid_alive(pid) {
                std::thread::sleep(Duration::from_millis(10));
            }
            return Ok((VmOrigin::ColdBoot, self.start(spec, false)?));
        }
        let t = self.wait_ready(pid, t0, prepare_ms, false)?;
        self.clone_init()?;
        Ok((VmOrigin::ColdBoot, t))
    }

    /// Restores the snapshot in `dir` (through a warm-pool standby when
    /// one is idle, see [`crate::vm_pool`]) and tells the guest it is a
    /// clone; whether a standby did it, or the reason when that fails (the
    /// VMM is stopped then).
    fn restore(
        &self,
        dir: &Path,
        spec: MachineSpec,
        kernel: &Path,
        rootfs: &Path,
        t0: Instant,
    ) -> Result<(Timings, bool), String> {
        let mut pooled = false;
        let started = (|| {
            let pid = match self.claim_standby(dir, spec, kernel, rootfs)? {
                Some(pid) => {
                    pooled = true;
                    pid
                }
                None => {
                    let cmd =
                        self.vmm_command(&Launch::Restore(dir), spec, kernel, rootfs, None, &[])?;
                    self.spawn_vmm(cmd)?
                }
            };
            if let Err(e) = crate::vm_pool::refill(spec.cpus) {
                eprintln!("berth: warning: warm pool: {e:#}");
            }
            let prepare_ms = t0.elapsed().as_millis() as u64;
            let timeout =
                Duration::from_secs(crate::env::parse(crate::env::RESTORE_TIMEOUT).unwrap_or(180));
            self.wait_ready_within(pid, t0, prepare_ms, false, timeout)
                .and_then(|t| self.clone_init().map(|_| t))
        })();
        let started = started.map(|t| (t, pooled));
        started.map_err(|e| {
            if let Some(pid) = self.vmm_pid() {
                crate::platform::kill(pid);
                while pid_alive(pid) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let log = std::fs::read_to_string(self.dir.join("vmm.log")).unwrap_or_default();
            log.lines()
                .find(|l| l.starts_with("berth-vmm: ") && !l.contains("timings"))
                .map(|l| l.trim_start_matches("berth-vmm: ").to_string())
                .unwrap_or_else(|| format!("{e:#}"))
        })
    }

    /// Gives the restore of `dir` to an idle warm-pool standby; its PID
    /// (recorded as this VM's VMM) when one took it.
    fn claim_standby(
        &self,
        dir: &Path,
        spec: MachineSpec,
        kernel: &Path,
        rootfs: &Path,
    ) -> Result<Option<i32>> {
        // A standby confines itself before its request, for a VM without
        // shares: a VM with shares gets a VMM of its own.
        // Nor does one with peer addresses (its stack exists already).
        if crate::vm_pool::size() == 0 || !self.vm_shares.is_empty() || !self.net_peers.is_empty() {
            return Ok(None);
        }
        let _ = std::fs::remove_file(self.vsock_socket());
        let log = self.dir.join("vmm.log");
        std::fs::File::create(&log)?;
        let disks = self.restore_disks(rootfs)?;
        let serial = self.serial_log();
        let vsock = self.vsock_socket();
        let request = crate::vm_pool::Request {
            restore: dir,
            kernel,
            serial_log: &serial,
            vsock_uds: &vsock,
            disks,
            log: &log,
        };
        let Some(pid) = crate::vm_pool::claim(spec.cpus, &request) else {
            return Ok(None);
        };
        std::fs::write(self.dir.join("vmm.pid"), format!("{pid}\n"))?;
        Ok(Some(pid))
    }

    /// Waits until the VMM has written a complete snapshot to `tmp`.
    fn wait_snapshot(&self, pid: i32, tmp: &Path) -> Result<()> {
        let timeout =
            Duration::from_secs(crate::env::parse(crate::env::BOOT_TIMEOUT).unwrap_or(300));
        let t0 = Instant::now();
        loop {
            if tmp.join("state.bin").is_file() {
                return Ok(());
            }
            let log = std::fs::read_to_string(self.dir.join("vmm.log")).unwrap_or_default();
            if let Some(l) = log.lines().find(|l| l.contains("snapshot failed")) {
                bail!("{l}");
            }
            if !pid_alive(pid) {
                bail!("the VM exited before it was ready");
            }
            if t0.elapsed() > timeout {
                bail!("the guest was not ready within {} s", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Has the agent of this throw-away VM mount the folders of its share
    /// slots (at `/host_mnt` + host path; see [`crate::vm_shares`]).
    pub fn mount_vm_shares(&self) -> Result<()> {
        if self.vm_shares.is_empty() {
            return Ok(());
        }
        self.connect_running()?
            .shares_mount(crate::vm_shares::mounts(&self.vm_shares))
            .context("mounting the shared folders in the VM")
    }

    /// Tells the guest it is a clone: host wall clock, fresh entropy, a new
    /// hostname.
    fn clone_init(&self) -> Result<()> {
        let mut c = self.connect_running()?;
        let unix_time_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64;
        let hostname = format!("berth-{}", hex::encode(host_random(6)?));
        c.clone_init(unix_time_ns, host_random(64)?, hostname)
            .context("clone init")?;
        Ok(())
    }

    /// Where `berth machine suspend` leaves the machine's snapshot
    /// (`state.bin`, `memory.bin`; see berth-vmm `--suspend-to`).
    pub fn suspend_dir(&self) -> PathBuf {
        self.dir.join("suspend")
    }

    /// Where a resume moves the snapshot before its VMM starts: from then
    /// on the data disk moves on, and that memory must never run again.
    fn consumed_dir(&self) -> PathBuf {
        self.dir.join("suspend.consumed")
    }

    /// Whether the machine is suspended: no VMM, a complete snapshot.
    pub fn is_suspended(&self) -> bool {
        self.persistent
            && self.vmm_pid().is_none()
            && self.suspend_dir().join("state.bin").is_file()
    }

    /// Deletes a suspend snapshot (and a consumed one a resume left).
    fn discard_suspend(&self) {
        let _ = std::fs::remove_dir_all(self.suspend_dir());
        let _ = std::fs::remove_dir_all(self.consumed_dir());
    }

    /// Ends the machine's port forwarder (its event stream is a vsock
    /// connection, which a snapshot cannot carry); started again with the
    /// machine.
    fn stop_port_forwarder(&self) {
        let (_, pid_file) = crate::port_forward::paths(&self.dir);
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|&p| {
                pid_alive(p)
                    && std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|c| c.contains("port-forwarder"))
            });
        if let Some(p) = pid {
            crate::platform::kill(p);
            let deadline = Instant::now() + Duration::from_secs(10);
            while pid_alive(p) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Suspends the machine VM: its VMM writes guest memory and device
    /// state to [`Machine::suspend_dir`] and exits; the next start resumes
    /// it (same containers, images, published ports). `Ok(false)` when it
    /// does not run. Refused, with the VMM's reason and the machine left
    /// running, while something the snapshot cannot carry is open: a vsock
    /// connection (a `logs -f`, an `attach`…), a flow of the user-mode
    /// network, a virtio-fs share the guest has mounted.
    pub fn suspend(&self) -> Result<bool> {
        if !self.persistent {
            bail!("only the machine VM can be suspended");
        }
        std::fs::create_dir_all(&self.dir)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("start.lock"))?;
        crate::platform::lock_exclusive(&lock)?;
        let Some(pid) = self.vmm_pid() else {
            return Ok(false);
        };
        if self.commands_connected() {
            // Its connection would refuse the snapshot anyway, but only
            // after the shares were released: say so before touching them.
            bail!(
                "the machine VM cannot be suspended now: a berth command is using it \
                 (a `logs -f`, `attach`, `load`, `build`…); end it first"
            );
        }
        self.stop_port_forwarder();
        self.discard_suspend();
        // The shares' FUSE sessions live in the VMM: the guest unmounts
        // them (mounted again after the resume, or at once if refused).
        let released = self
            .connect_running()
            .map_err(anyhow::Error::from)
            .and_then(|mut c| c.shares_release().map_err(anyhow::Error::from));
        if let Err(e) = released {
            self.remount_shares();
            self.ensure_port_forwarder();
            bail!("the machine VM cannot be suspended now: releasing its shares: {e:#}");
        }
        let log = self.dir.join("vmm.log");
        // A connection just closed (the forwarder's, this process's own)
        // may take a moment to finish: those reasons are retried. One in
        // use (a `logs -f`, an `attach`) is retried only briefly, for a
        // command that was just ending: it does not end by itself.
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(60);
        let in_use_deadline = t0 + Duration::from_secs(5);
        let refusal = loop {
            let seen = std::fs::read_to_string(&log).unwrap_or_default().len();
            signal_suspend(pid)?;
            let reason = loop {
                if !pid_alive(pid) {
                    break None;
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if let Some(l) = text
                    .get(seen..)
                    .and_then(|t| t.lines().find(|l| l.contains("suspend refused: ")))
                {
                    break Some(l.split("suspend refused: ").nth(1).unwrap_or(l).to_string());
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            match reason {
                None => break None,
                Some(r)
                    if retryable_refusal(&r)
                        && Instant::now()
                            < if refusal_in_use(&r) {
                                in_use_deadline
                            } else {
                                deadline
                            } =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some(r) => break Some(r),
            }
        };
        if let Some(reason) = refusal {
            self.remount_shares();
            self.ensure_port_forwarder();
            bail!("the machine VM cannot be suspended now: {reason}");
        }
        let _ = std::fs::remove_file(self.dir.join("vmm.pid"));
        if !self.suspend_dir().join("state.bin").is_file() {
            self.discard_suspend();
            bail!(
                "the machine's VMM ended without a snapshot (see {}); the next start boots it",
                log.display()
            );
        }
        Ok(true)
    }

    /// Resumes the suspended machine: the snapshot is moved aside first
    /// (consumed: whatever happens next, it never runs again), restored,
    /// and the guest gets the host's clock and fresh entropy. On failure
    /// the VMM is stopped and the snapshot deleted; the caller boots.
    fn resume(&self, spec: MachineSpec, t0: Instant, verbose: bool) -> Result<Timings> {
        let consumed = self.consumed_dir();
        let _ = std::fs::remove_dir_all(&consumed);
        std::fs::rename(self.suspend_dir(), &consumed)
            .context("moving the suspend snapshot aside")?;
        let resumed = (|| {
            let kernel = kernel_path()?;
            let rootfs = self.ensure_rootfs()?;
            let shares: Vec<PathBuf> = std::fs::read_to_string(self.dir.join("shares"))
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.is_empty())
                .map(PathBuf::from)
                .collect();
            let cmd = self.vmm_command(
                &Launch::Restore(&consumed),
                spec,
                &kernel,
                &rootfs,
                None,
                &shares,
            )?;
            let pid = self.spawn_vmm(cmd)?;
            let prepare_ms = t0.elapsed().as_millis() as u64;
            let timeout =
                Duration::from_secs(crate::env::parse(crate::env::RESTORE_TIMEOUT).unwrap_or(180));
            let t = self.wait_ready_within(pid, t0, prepare_ms, false, timeout)?;
            self.resume_init()?;
            self.remount_shares();
            Ok::<_, anyhow::Error>((pid, t))
        })();
        // The restored VM maps the memory file privately: deleting it
        // keeps that mapping.
        let _ = std::fs::remove_dir_all(&consumed);
        match resumed {
            Ok((pid, t)) => {
                let t = Timings {
                    prepare_ms: t.prepare_ms,
                    agent_ready_ms: t.agent_ready_ms,
                    resumed: true,
                    ..Timings::default()
                };
                let _ = std::fs::write(self.dir.join("timings.json"), serde_json::to_vec(&t)?);
                if verbose {
                    eprintln!(
                        "machine resumed from its suspend snapshot (pid {pid}, {} ms)",
                        t.agent_ready_ms
                    );
                }
                Ok(t)
            }
            Err(e) => {
                if let Some(pid) = self.vmm_pid() {
                    crate::platform::kill(pid);
                    while pid_alive(pid) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                let _ = std::fs::remove_file(self.dir.join("vmm.pid"));
                let log = std::fs::read_to_string(self.dir.join("vmm.log")).unwrap_or_default();
                match log
                    .lines()
                    .find(|l| l.starts_with("berth-vmm: ") && !l.contains("timings"))
                {
                    Some(l) => Err(e.context(l.trim_start_matches("berth-vmm: ").to_string())),
                    None => Err(e),
                }
            }
        }
    }

    /// Has the machine's agent mount its shares again (after a resume or
    /// a refused suspend); a failure is a warning (bind mounts of the
    /// share would fail, the rest works).
    fn remount_shares(&self) {
        let done = self
            .connect_running()
            .map_err(anyhow::Error::from)
            .and_then(|mut c| c.shares_remount().map_err(anyhow::Error::from));
        if let Err(e) = done {
            eprintln!(
                "berth: warning: the machine VM did not mount its shared folders again: {e:#}"
            );
        }
    }

    /// Tells a resumed guest the host's wall clock (its own stood still
    /// while suspended) and mixes fresh host entropy into its RNG; the
    /// hostname stays (empty: kept).
    fn resume_init(&self) -> Result<()> {
        let mut c = self.connect_running()?;
        let unix_time_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64;
        c.clone_init(unix_time_ns, host_random(64)?, String::new())
            .context("setting the resumed guest's clock")?;
        Ok(())
    }

    /// The timings of the last start.
    pub fn timings(&self) -> Timings {
        std::fs::read(self.dir.join("timings.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default()
    }

    /// Asks the agent to power off; kills the VMM if it does not stop.
    /// A suspended machine is stopped by dropping its snapshot (the next
    /// start boots).
    pub fn stop(&self) -> Result<bool> {
        let Some(pid) = self.vmm_pid() else {
            let suspended = self.is_suspended();
            self.discard_suspend();
            return Ok(suspended);
        };
        if let Ok(mut c) = self.connect_running() {
            let _ = c.shutdown();
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

/// This process's in-use mark on the machine (see [`Machine::connect`]).
static USE_MARK: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();

/// Set by a long-lived server (the Engine API) whose connections are not
/// commands: it leaves no in-use mark.
static NO_USE_MARK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// For a process that stays up serving others (the Engine API socket):
/// its connections to the machine do not keep it from the idle suspend
/// (each request still counts as a use when it connects).
pub fn commands_leave_no_use_mark() {
    NO_USE_MARK.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the machine, last used at `since`, has been idle for `after`
/// seconds at `now` (`BERTH_MACHINE_IDLE_SUSPEND`; None or 0: never; an
/// unknown last use or a clock that went back: not idle).
fn idle_suspend_due(
    after: Option<u64>,
    since: Option<std::time::SystemTime>,
    now: std::time::SystemTime,
) -> bool {
    match (after.filter(|&s| s > 0), since) {
        (Some(after), Some(since)) => now
            .duration_since(since)
            .is_ok_and(|idle| idle >= Duration::from_secs(after)),
        _ => false,
    }
}

/// Asks the VMM `pid` (started with `--suspend-to`) to suspend.
fn signal_suspend(pid: i32) -> Result<()> {
    #[cfg(unix)]
    {
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is the
        // machine's VMM (pid file and name checked by `vmm_pid`).
        if unsafe { libc::kill(pid, libc::SIGUSR2) } != 0 {
            bail!("signalling the VMM: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        bail!("suspending the machine VM needs the Linux KVM backend")
    }
}

/// Whether a suspend refusal may pass by itself within moments: a vsock
/// connection or a network flow just closed that the guest has not
/// finished yet. A share the guest uses does not.
fn retryable_refusal(reason: &str) -> bool {
    reason.starts_with("cannot snapshot now: vsock") || reason.contains("virtio-net")
}

/// Whether a vsock refusal names connections a client still holds open
/// (berth-vmm's "in use" wording), not ones closing.
fn refusal_in_use(reason: &str) -> bool {
    reason.starts_with("cannot snapshot now: vsock") && reason.contains(" in use ")
}

/// The balloon stats file's counters, named `vmm_balloon_<key>`: a JSON
/// object of whole numbers. Anything else (a torn or foreign file, other
/// value types, more than a few keys) gives an empty or partial map.
pub fn parse_balloon_stats(data: &[u8]) -> std::collections::BTreeMap<String, u64> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(data) else {
        return Default::default();
    };
    map.into_iter()
        .filter(|(k, _)| k.len() <= 64 && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .filter_map(|(k, v)| Some((format!("vmm_balloon_{k}"), v.as_u64()?)))
        .take(16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{idle_suspend_due, write_rootfs, Machine};

    #[test]
    fn a_connected_command_is_seen_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let m = Machine {
            dir: dir.path().to_path_buf(),
            persistent: true,
            image_disk: None,
            vm_shares: Vec::new(),
            net_peers: Vec::new(),
        };
        assert!(!m.commands_connected(), "nobody holds the mark yet");
        // Another command's mark: its own open file with a shared lock
        // (flock locks belong to the open file, so this process's second
        // open conflicts as another process's would).
        let other = m.open_in_use().unwrap();
        crate::platform::lock_shared(&other).unwrap();
        assert!(m.commands_connected());
        let second = m.open_in_use().unwrap();
        crate::platform::lock_shared(&second).unwrap();
        drop(other);
        assert!(m.commands_connected(), "one command still holds it");
        drop(second);
        assert!(!m.commands_connected(), "the mark goes with the command");
        // The check itself leaves no lock behind.
        assert!(!m.commands_connected());
    }

    #[test]
    fn idle_suspend_is_due_only_after_the_setting() {
        use std::time::{Duration, SystemTime};
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ago = |s| Some(now - Duration::from_secs(s));
        assert!(idle_suspend_due(Some(60), ago(60), now));
        assert!(idle_suspend_due(Some(60), ago(3600), now));
        assert!(!idle_suspend_due(Some(60), ago(59), now));
        // Off: unset or 0.
        assert!(!idle_suspend_due(None, ago(3600), now));
        assert!(!idle_suspend_due(Some(0), ago(3600), now));
        // No known last use, or one in the future (the clock went back).
        assert!(!idle_suspend_due(Some(60), None, now));
        assert!(!idle_suspend_due(
            Some(60),
            Some(now + Duration::from_secs(600)),
            now
        ));
    }

    #[test]
    fn balloon_stats_are_read_defensively() {
        use super::parse_balloon_stats;
        // The VMM's own text: fixed width, numbers padded with spaces.
        let text = br#"{"released_bytes":             1048576,"resident_released_bytes":    4096,"refused_ranges": 0,"failed_ranges": 2}"#;
        let m = parse_balloon_stats(text);
        assert_eq!(m["vmm_balloon_released_bytes"], 1 << 20);
        assert_eq!(m["vmm_balloon_resident_released_bytes"], 4096);
        assert_eq!(m["vmm_balloon_failed_ranges"], 2);
        assert_eq!(m.len(), 4);
        // Torn, foreign or hostile files give nothing or only whole numbers
        // under plain names.
        assert!(parse_balloon_stats(b"").is_empty());
        assert!(parse_balloon_stats(br#"{"released_bytes":  12"#).is_empty());
        assert!(parse_balloon_stats(b"[1,2]").is_empty());
        let m = parse_balloon_stats(
            br#"{"a":-1,"b":1.5,"c":"7","D":1,"e f":1,"ok":18446744073709551615}"#,
        );
        assert_eq!(m.len(), 1);
        assert_eq!(m["vmm_balloon_ok"], u64::MAX);
        let many: Vec<String> = (0..40)
            .map(|i| format!("\"k{}\":{i}", "a".repeat(i + 1)))
            .collect();
        let many = format!("{{{}}}", many.join(","));
        assert_eq!(parse_balloon_stats(many.as_bytes()).len(), 16);
    }

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
