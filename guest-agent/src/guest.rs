//! `berth-agent` as PID 1 of the berth guest: mounts the pseudo
//! filesystems and cgroup2, sets the clock from the kernel command line,
//! mounts the data disk, then serves the engine on vsock.
//!
//! Kernel command line parameters read here:
//! - `berth.time=<unix seconds>[.<nanos>]`: wall clock at launch (the
//!   guest adds the time since its kernel started)
//! - `berth.disk=<device>`: ext4 data disk (without one the engine keeps its
//!   state on tmpfs, as throw-away VMs do)
//! - `berth.hostname=<name>`
//! - `berth.log=<level>`: the log level of the agent and its shims
//!   (`error`, `warn`, `info`, `debug`, `trace`; default `info`: the
//!   console is the serial log file). `berth` passes its own level when
//!   `BERTH_LOG` or `--log-level` sets one.
//! - `berth.serial=<device>`: serve the protocol on this character device
//!   (e.g. `/dev/vport0p1`, a virtio-console port) instead of vsock, one
//!   connection at a time. For hosts that offer no vsock device: QEMU TCG
//!   without /dev/vhost-vsock, which the arm64 boot test uses.
//! - `berth.shares=TAG@/host/path[:ro][,TAG2@/other]`: virtio-fs shares
//!   (the VMM's `--fs tag=TAG,path=...`), each mounted at
//!   [`HOST_MNT`]` + /host/path` before the engine opens; `:ro` mounts it
//!   read-only (the VMM refuses changes to a `ro` share by itself too).
//! - `berth.shares_check=1`: after mounting, write `.berth-share-check`
//!   into each writable share (a boot test's proof that guest writes reach
//!   the host).
//! - `berth.net=ADDR/LEN[,gw=GATEWAY][,dns=SERVER[;SERVER2]][,host=HOST]`:
//!   configure `eth0` (the VMM's `--net user` card: `192.168.127.2/24,gw=
//!   192.168.127.1,dns=192.168.127.1,host=192.168.127.254`; HOST is where
//!   the host's loopback services answer, containers' `host.docker.internal`
//!   and `host-gateway`) with that address, up, a default
//!   route, and /etc/resolv.conf naming the servers; IPv4 forwarding is
//!   turned on so that containers on the guest's bridges reach the
//!   network with their own addresses (the VMM's stack routes replies to
//!   them back via the guest; the guest kernel has no NAT). Without it the
//!   guest has no network and an empty /etc/resolv.conf.

use crate::engine::Engine;
use crate::layout::Layout;
pub use crate::machine::DATA_ROOT;
use crate::machine::{log, param, parse_net, uptime};
use nix::mount::{mount, MsFlags};
use std::path::Path;
use std::sync::Arc;

/// The engine's state directory on it. The host creates it when it formats
/// the disk (`mkfs.ext4 -d`): ext4 spreads top-level directories across
/// block groups, and the first use of each group costs seconds when the
/// guest kernel is emulated, so the engine's many directories are better
/// nested under one that already exists.
pub const ENGINE_ROOT: &str = "/var/lib/berth/engine";

pub use crate::engine::share_watch::HOST_MNT;

/// Sets up eth0 and /etc/resolv.conf from `berth.net=` (an empty
/// resolv.conf without it).
fn configure_network(cmdline: &str) {
    let Some(value) = param(cmdline, "berth.net") else {
        let _ = std::fs::write("/etc/resolv.conf", "");
        return;
    };
    let net = match parse_net(value) {
        Ok(n) => n,
        Err(e) => {
            log(&format!("berth.net: {e}; no network"));
            let _ = std::fs::write("/etc/resolv.conf", "");
            return;
        }
    };
    let resolv: String = net
        .dns
        .iter()
        .map(|d| format!("nameserver {d}\n"))
        .collect();
    let _ = std::fs::write("/etc/resolv.conf", resolv);
    use crate::engine::net::link;
    if let Err(e) = link::configure_link("eth0", net.addr, net.prefix_len, net.gateway) {
        log(&format!("configuring eth0: {e}"));
        return;
    }
    if let Err(e) = link::enable_ip_forward() {
        log(&format!("IPv4 forwarding: {e}"));
    }

    log(&format!(
        "eth0 {}/{} via {} (uptime {:.3} s)",
        net.addr,
        net.prefix_len,
        net.gateway.map_or("-".to_string(), |g| g.to_string()),
        uptime()
    ));
}

fn mnt(src: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) {
    let _ = std::fs::create_dir_all(target);
    if let Err(e) = mount(Some(src), target, Some(fstype), flags, data) {
        log(&format!("mount {fstype} on {target}: {e}"));
    }
}

fn set_clock(spec: &str) {
    let mut up = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `up`.
    let since_boot = if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut up) } == 0 {
        std::time::Duration::new(
            up.tv_sec.max(0) as u64,
            up.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    } else {
        std::time::Duration::ZERO
    };
    let Some((secs, nanos)) = clock_now(spec, since_boot) else {
        return;
    };
    let ts = libc::timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    };
    // SAFETY: clock_settime reads a valid timespec.
    unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
}

/// The wall clock now: the host's clock at launch (`berth.time`) plus the
/// time the kernel has run since. Booting takes seconds to a minute in an
/// emulated guest, and the clock set to the launch time alone stayed that
/// far behind the host (55 s seen: wrong event times and `StartedAt`).
fn clock_now(spec: &str, since_boot: std::time::Duration) -> Option<(i64, i64)> {
    let (s, ns) = spec.split_once('.').unwrap_or((spec, "0"));
    let secs = s.parse::<i64>().ok().filter(|s| *s >= 0)?;
    let nanos = format!("{ns:0<9}").get(..9)?.parse::<i64>().ok()?;
    let total = nanos + i64::from(since_boot.subsec_nanos());
    let secs = secs
        .checked_add(i64::try_from(since_boot.as_secs()).ok()?)?
        .checked_add(total / 1_000_000_000)?;
    Some((secs, total % 1_000_000_000))
}

/// Moves the root from the initramfs (rootfs, which pivot_root(2) refuses
/// to leave) onto a tmpfs, as `switch_root` does, so that containers can
/// pivot_root. The agent's own binary stays reachable as /proc/self/exe.
fn switch_root() {
    let new = "/newroot";
    let _ = std::fs::create_dir_all(new);
    let moved = mount(
        Some("tmpfs"),
        new,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .and_then(|_| nix::unistd::chdir(new))
    .and_then(|_| mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>))
    .and_then(|_| nix::unistd::chroot("."))
    .and_then(|_| nix::unistd::chdir("/"));
    if let Err(e) = moved {
        log(&format!(
            "switching root to tmpfs failed: {e}; containers may fail to start"
        ));
    }
    for d in ["dev", "proc", "sys", "run", "tmp", "etc", "var/lib/berth"] {
        let _ = std::fs::create_dir_all(format!("/{d}"));
    }
}

/// The threads vsock connections are served on (std's default stack: a
/// request may run any engine code).
static CONNECTIONS: crate::workers::Pool = crate::workers::Pool::new("conn", None);

/// Runs the guest init; never returns.
pub fn run_as_init() -> ! {
    switch_root();
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mnt(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    );
    // Output to the serial console from here on.
    if let Ok(c) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        use std::os::fd::IntoRawFd;
        // Booted from a disk without /dev/console, init starts with no
        // standard descriptors, so the console may itself be 0, 1 or 2.
        let fd = c.into_raw_fd();
        for std_fd in 0..3 {
            if fd != std_fd {
                // SAFETY: dup2 onto the standard descriptors.
                unsafe { libc::dup2(fd, std_fd) };
            }
        }
        if fd > 2 {
            // SAFETY: fd is ours (from into_raw_fd) and no longer needed.
            unsafe { libc::close(fd) };
        }
    }
    // The first line from /init: benchmarks time "kernel to /init" by it.
    log(&format!("started as init (uptime {:.3} s)", uptime()));
    mnt("proc", "/proc", "proc", nosuid, None);
    mnt("sysfs", "/sys", "sysfs", nosuid, None);
    mnt("cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid, None);
    mnt(
        "devpts",
        "/dev/pts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    );
    mnt("tmpfs", "/dev/shm", "tmpfs", nosuid, Some("mode=1777"));
    mnt(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    );
    mnt(
        "tmpfs",
        "/tmp",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    );
    // The kernel folds per-CPU memory counters every `stat_interval`
    // seconds (1 by default), which wakes an idle vCPU each second; an
    // idle guest should sleep (each wake-up is emulated kernel work on
    // kvm_pvm hosts). /proc/meminfo and /proc/vmstat stay accurate to the
    // per-CPU thresholds.
    let _ = std::fs::write("/proc/sys/vm/stat_interval", "10");
    // Let containers' cgroups use every controller but `cpu` and `cpuset`,
    // which the engine turns on only for containers with CPU limits (see
    // engine::controllers: with `cpu` on, the scheduler's per-group work
    // is a large part of the guest kernel's).
    if let Ok(ctrls) = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers") {
        let enable: Vec<String> = ctrls
            .split_whitespace()
            .filter(|c| *c != "cpu" && *c != "cpuset")
            .map(|c| format!("+{c}"))
            .collect();
        let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", enable.join(" "));
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    // The level of the agent and the shims it starts (they inherit the
    // variable; single-threaded still, so setting it is sound). The console
    // is the serial log, a file kept for diagnosis: `info` (slow requests)
    // unless `berth.log=` says otherwise.
    berth_log::export_name(param(&cmdline, "berth.log").unwrap_or("info"));
    let level = berth_log::init(None);
    log::debug!("log level {}", berth_log::level_name(level));
    if let Some(t) = param(&cmdline, "berth.time") {
        set_clock(t);
    }
    let hostname = param(&cmdline, "berth.hostname").unwrap_or("berth");
    let _ = nix::unistd::sethostname(hostname);
    configure_network(&cmdline);
    // No data disk named: state on tmpfs (throw-away VMs). /dev/vda is the
    // agent's own read-only root disk.
    let disk = param(&cmdline, "berth.disk").filter(|d| Path::new(d).exists());
    let _ = std::fs::create_dir_all(DATA_ROOT);
    let on_disk = disk.is_some_and(|disk| {
        match mount(
            Some(disk),
            DATA_ROOT,
            Some("ext4"),
            MsFlags::MS_NOATIME,
            // ext4 otherwise reads every block group's bitmap in the
            // background after mounting (512 groups on the 64 GiB disk),
            // which keeps an emulated guest kernel busy for many seconds.
            Some("no_prefetch_block_bitmaps"),
        ) {
            Ok(()) => true,
            Err(e) => {
                log(&format!(
                    "cannot mount data disk {disk}: {e}; keeping state in memory"
                ));
                false
            }
        }
    });
    if !on_disk {
        mnt(
            "tmpfs",
            DATA_ROOT,
            "tmpfs",
            MsFlags::empty(),
            Some("mode=0700"),
        );
    }
    log(&format!(
        "state on {} (uptime {:.3} s)",
        disk.filter(|_| on_disk).unwrap_or("tmpfs"),
        uptime()
    ));
    crate::shares::mount_shares(&cmdline, Path::new(ENGINE_ROOT));
    let layout = Layout::new(ENGINE_ROOT);
    if let Err(e) = layout.prepare() {
        log(&format!("preparing {ENGINE_ROOT}: {e}"));
    }
    crate::children::spawn_reaper();
    // Published ports bind the guest's loopback too (`-p 127.0.0.1:…`),
    // and the host's forwarder reaches every published port through it.
    if let Err(e) = crate::engine::net::netns::loopback_up() {
        log(&format!("bringing up lo: {e}"));
    }
    let engine = Arc::new(Engine::open(layout));
    log(&format!("engine open (uptime {:.3} s)", uptime()));
    crate::engine::restart::spawn(engine.clone());
    if let Some(dev) = param(&cmdline, "berth.serial") {
        serve_serial(engine, dev);
    }
    let listener = loop {
        match crate::vsock::VsockListener::bind(berth_protocol::AGENT_VSOCK_PORT) {
            Ok(l) => break l,
            Err(e) => {
                log(&format!("vsock listen: {e}; retrying"));
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    };
    crate::memory::spawn_grower(&cmdline, log);
    log(&format!(
        "ready on vsock port {} (uptime {:.3} s)",
        berth_protocol::AGENT_VSOCK_PORT,
        uptime()
    ));
    loop {
        match listener.accept() {
            Ok(conn) => {
                let engine = engine.clone();
                // A kept thread: a new one per connection is a clone, a
                // stack mapping and their teardown in an emulated kernel.
                let _ = CONNECTIONS
                    .run(move || crate::server::serve_connection(engine, Box::new(conn)));
            }
            Err(e) => {
                log(&format!("accept: {e}"));
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

/// A character device carrying one protocol connection.
struct SerialConn(std::fs::File);

impl std::io::Read for SerialConn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::io::Write for SerialConn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl crate::server::Conn for SerialConn {
    fn try_clone_conn(&self) -> std::io::Result<Box<dyn crate::server::Conn>> {
        Ok(Box::new(SerialConn(self.0.try_clone()?)))
    }
    fn shutdown_write(&self) {}
}

/// Serves the engine on the character device `dev`, one session after the
/// other (a session ends when the host side closes); never returns.
fn serve_serial(engine: Arc<Engine>, dev: &str) -> ! {
    log(&format!("ready on serial {dev} (uptime {:.3} s)", uptime()));
    loop {
        match std::fs::OpenOptions::new().read(true).write(true).open(dev) {
            Ok(f) => crate::server::serve_connection(engine.clone(), Box::new(SerialConn(f))),
            Err(e) => log(&format!("{dev}: {e}")),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_launch_time_plus_time_since_boot() {
        use std::time::Duration;
        assert_eq!(clock_now("100", Duration::ZERO), Some((100, 0)));
        assert_eq!(
            clock_now("100.5", Duration::new(2, 600_000_000)),
            Some((103, 100_000_000))
        );
        assert_eq!(
            clock_now("1765065600.000000001", Duration::new(55, 999_999_999)),
            Some((1765065656, 0))
        );
        // Hostile or broken values set nothing (and never panic).
        for bad in ["", "x", "-5", "1.x", "1.é", "9223372036854775807"] {
            assert_eq!(clock_now(bad, Duration::new(1, 0)), None, "{bad}");
        }
    }
}
