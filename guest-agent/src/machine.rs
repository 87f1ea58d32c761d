//! The guest machine as the agent's other layers see it: the kernel
//! command line parameters (see [`crate::guest`] for the list), the data
//! root, and the machine-wide operations the server may request (power
//! off, clone init). Depends on nothing else in the crate.

/// Where the data disk (or a tmpfs) is mounted inside the guest.
pub const DATA_ROOT: &str = "/var/lib/berth";

/// The parsed `berth.net=` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetParams {
    /// The guest's address on eth0.
    pub addr: std::net::Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// Default gateway.
    pub gateway: Option<std::net::Ipv4Addr>,
    /// DNS servers for /etc/resolv.conf.
    pub dns: Vec<std::net::Ipv4Addr>,
    /// Where the host's own loopback services are reached
    /// (`host.docker.internal`, `host-gateway`).
    pub host: Option<std::net::Ipv4Addr>,
}

/// `host.docker.internal` for containers in the machine VM: the `host=`
/// of the kernel's `berth.net=` (read from /proc/cmdline, so that shims,
/// which are processes of their own, see it too). None natively (a host's
/// command line has no `berth.net=`) and in guests without a network.
pub fn host_alias() -> Option<std::net::Ipv4Addr> {
    static HOST_ALIAS: std::sync::OnceLock<Option<std::net::Ipv4Addr>> = std::sync::OnceLock::new();
    *HOST_ALIAS.get_or_init(|| {
        let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
        parse_net(param(&cmdline, "berth.net")?).ok()?.host
    })
}

/// Parses the value of `berth.net=` (see the module docs).
pub fn parse_net(value: &str) -> Result<NetParams, String> {
    let mut parts = value.split(',');
    let cidr = parts.next().unwrap_or_default();
    let (addr, len) = cidr
        .split_once('/')
        .ok_or_else(|| format!("`{cidr}`: expected ADDR/LEN"))?;
    let addr = addr.parse().map_err(|_| format!("bad address `{addr}`"))?;
    let prefix_len = len
        .parse::<u8>()
        .ok()
        .filter(|l| (1..=32).contains(l))
        .ok_or_else(|| format!("bad prefix length `{len}`"))?;
    let mut net = NetParams {
        addr,
        prefix_len,
        gateway: None,
        dns: Vec::new(),
        host: None,
    };
    for part in parts {
        match part.split_once('=') {
            Some(("gw", v)) => {
                net.gateway = Some(v.parse().map_err(|_| format!("bad gateway `{v}`"))?)
            }
            Some(("host", v)) => {
                net.host = Some(v.parse().map_err(|_| format!("bad host address `{v}`"))?)
            }
            Some(("dns", v)) => {
                for d in v.split(';') {
                    net.dns
                        .push(d.parse().map_err(|_| format!("bad DNS server `{d}`"))?);
                }
            }
            _ => return Err(format!("unknown option `{part}`")),
        }
    }
    Ok(net)
}

pub fn log(msg: &str) {
    eprintln!("berth-agent: {msg}");
}

/// Seconds since the kernel started (CLOCK_BOOTTIME).
pub fn uptime() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

pub fn param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// Stops the guest: containers are killed, the data disk is synced and
/// unmounted, and the VM resets (the VMM then exits).
pub fn power_off() -> ! {
    log("shutting down");
    // SAFETY: kill(-1) signals every process but ourselves (PID 1).
    unsafe { libc::kill(-1, libc::SIGKILL) };
    std::thread::sleep(std::time::Duration::from_millis(100));
    nix::unistd::sync();
    let _ = nix::mount::umount2(DATA_ROOT, nix::mount::MntFlags::MNT_DETACH);
    nix::unistd::sync();
    // SAFETY: reboot(2) with a valid command; we are PID 1 with CAP_SYS_BOOT.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG`: `_IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// The VM was restored from a snapshot (or is the VM a snapshot was taken
/// of): every clone resumed with the same wall clock, kernel RNG state and
/// hostname. Sets the clock, credits `seed` to the input pool and forces a
/// reseed of the kernel CRNG (adding entropy alone does not reseed a CRNG
/// that is already initialised, so clones would keep producing the same
/// bytes), then takes `hostname`. /proc/sys/kernel/random/boot_id is made
/// lazily on its first read, which nothing does before this.
pub fn clone_init(unix_time_ns: u64, seed: &[u8], hostname: &str) -> Result<(), String> {
    if std::process::id() != 1 {
        return Err("clone init is only for guest agents".into());
    }
    if seed.len() < 32 {
        return Err(format!("seed too short ({} bytes)", seed.len()));
    }
    let ts = libc::timespec {
        tv_sec: (unix_time_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (unix_time_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: clock_settime reads a valid timespec.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        return Err(format!(
            "setting the clock: {}",
            std::io::Error::last_os_error()
        ));
    }
    use std::os::fd::AsRawFd;
    let urandom = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(|e| format!("opening /dev/urandom: {e}"))?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info: Vec<u32> = vec![0; 2 + seed.len().div_ceil(4)];
    info[0] = (seed.len() * 8) as u32;
    info[1] = seed.len() as u32;
    for (i, chunk) in seed.chunks(4).enumerate() {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        info[2 + i] = u32::from_ne_bytes(w);
    }
    // SAFETY: `info` is a rand_pool_info whose buf holds buf_size bytes;
    // the kernel only reads it.
    if unsafe { libc::ioctl(urandom.as_raw_fd(), RNDADDENTROPY as _, info.as_ptr()) } != 0 {
        return Err(format!(
            "RNDADDENTROPY: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    if unsafe { libc::ioctl(urandom.as_raw_fd(), RNDRESEEDCRNG as _) } != 0 {
        return Err(format!(
            "RNDRESEEDCRNG: {}",
            std::io::Error::last_os_error()
        ));
    }
    // Empty: keep the hostname (a resumed machine, not a clone).
    if !hostname.is_empty() {
        nix::unistd::sethostname(hostname).map_err(|e| format!("sethostname {hostname:?}: {e}"))?;
    }
    log(&format!(
        "clone init: clock set, RNG reseeded, hostname {} (uptime {:.3} s)",
        if hostname.is_empty() {
            "kept"
        } else {
            hostname
        },
        uptime()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_parses() {
        let n = parse_net("192.168.127.2/24,gw=192.168.127.1,dns=192.168.127.1;1.1.1.1").unwrap();
        assert_eq!(n.addr, std::net::Ipv4Addr::new(192, 168, 127, 2));
        assert_eq!(n.prefix_len, 24);
        assert_eq!(n.gateway, Some(std::net::Ipv4Addr::new(192, 168, 127, 1)));
        assert_eq!(n.dns.len(), 2);
        assert_eq!(n.host, None);
        assert_eq!(parse_net("10.0.0.2/8").unwrap().gateway, None);
        assert_eq!(
            parse_net("10.0.0.2/8,host=10.0.0.254").unwrap().host,
            Some(std::net::Ipv4Addr::new(10, 0, 0, 254))
        );
        for bad in [
            "",
            "10.0.0.2",
            "10.0.0.2/33",
            "x/24",
            "10.0.0.2/24,gw=x",
            "10.0.0.2/24,foo=1",
            "10.0.0.2/24,host=x",
        ] {
            assert!(parse_net(bad).is_err(), "{bad}");
        }
    }
}
