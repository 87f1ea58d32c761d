//! `run`/`create`'s resource and device flags (`--ulimit`, `--shm-size`,
//! `--sysctl`, `--cpu-shares`, `--cpuset-cpus`, `--memory-swap`,
//! `--memory-reservation`, `--oom-kill-disable`, `--device`,
//! `--group-add`), parsed and refused as docker's CLI does. What the
//! values mean (limits, namespaced sysctls, devices that exist) is the
//! engine's to check.

use super::run_values::parse_bytes;
use berth_host::args::ArgError;
use berth_host::limits::parse_int;
pub use berth_host::limits::{parse_device, parse_ulimit, validate_sysctl};
use berth_protocol::{ContainerConfig, Ulimit};

/// The flags, flattened into `create`'s.
#[derive(clap::Args, Debug, Default)]
pub struct ResourceArgs {
    /// Ulimit options
    #[arg(long)]
    ulimit: Vec<String>,
    /// Size of /dev/shm
    #[arg(long, allow_hyphen_values = true)]
    shm_size: Option<String>,
    /// Sysctl options
    #[arg(long)]
    sysctl: Vec<String>,
    /// CPU shares (relative weight)
    // (No `-c` shorthand, unlike docker: clap would take a `-c` right
    // after the image, as in `--entrypoint /bin/sh IMAGE -c CMD`, for this
    // flag rather than the command's first argument.)
    #[arg(long, allow_hyphen_values = true)]
    cpu_shares: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long, allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Disable OOM Killer
    #[arg(long)]
    oom_kill_disable: bool,
    /// Add a host device to the container
    #[arg(long)]
    device: Vec<String>,
    /// Add additional groups to join
    #[arg(long)]
    group_add: Vec<String>,
}

impl ResourceArgs {
    /// Sets the config's fields from the flags, or docker's refusal.
    pub fn apply(&self, cfg: &mut ContainerConfig) -> Result<(), ArgError> {
        let flag = |flag: &'static str, value: &str| {
            let value = value.to_string();
            move |reason: String| ArgError::Flag {
                flag,
                value,
                reason,
            }
        };
        let mut ulimits: Vec<Ulimit> = Vec::new();
        for u in &self.ulimit {
            let u = parse_ulimit(u).map_err(flag("--ulimit", u))?;
            // docker keeps one per name, the last given, sorted by name.
            ulimits.retain(|o| o.name != u.name);
            ulimits.push(u);
        }
        ulimits.sort_by(|a, b| a.name.cmp(&b.name));
        cfg.ulimits = ulimits;
        if let Some(s) = &self.shm_size {
            cfg.shm_size = Some(parse_bytes(s).map_err(flag("--shm-size", s))?);
        }
        for s in &self.sysctl {
            let (k, v) = validate_sysctl(s).map_err(flag("--sysctl", s))?;
            cfg.sysctls.insert(k, v);
        }
        if let Some(c) = &self.cpu_shares {
            cfg.cpu_shares =
                Some(parse_int(c).map_err(flag("-c, --cpu-shares", c))?).filter(|c| *c != 0);
        }
        cfg.cpuset_cpus = self.cpuset_cpus.clone().filter(|c| !c.is_empty());
        if let Some(s) = &self.memory_swap {
            cfg.memory_swap = Some(if s == "-1" {
                -1
            } else {
                parse_bytes(s).map_err(flag("--memory-swap", s))?
            })
            .filter(|s| *s != 0);
        }
        if let Some(s) = &self.memory_reservation {
            cfg.memory_reservation =
                Some(parse_bytes(s).map_err(flag("--memory-reservation", s))?).filter(|s| *s != 0);
        }
        cfg.oom_kill_disable = self.oom_kill_disable;
        for d in &self.device {
            cfg.devices
                .push(parse_device(d).map_err(|e| ArgError::Other(e.to_string()))?);
        }
        cfg.group_add = self.group_add.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_as_go_units() {
        assert_eq!(
            parse_ulimit("nofile=1024:2048").unwrap(),
            Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(parse_ulimit("nproc=-1").unwrap().hard, -1);
        assert_eq!(parse_ulimit("core=0:-1").unwrap().hard, -1);
        let e = |v: &str| parse_ulimit(v).unwrap_err();
        assert_eq!(e("bad"), "invalid ulimit argument: bad");
        assert_eq!(e("foo=1"), "invalid ulimit type: foo");
        assert_eq!(
            e("nofile=x"),
            "strconv.ParseInt: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            e("nofile=2:1"),
            "ulimit soft limit must be less than or equal to hard limit: 2 > 1"
        );
        assert_eq!(
            e("nofile=1:2:3"),
            "too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`"
        );
        assert_eq!(
            e("nofile=-1:5"),
            "ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: 5"
        );
    }

    #[test]
    fn sysctls_as_dockers_cli() {
        assert!(validate_sysctl("net.ipv4.ip_forward=1").is_ok());
        assert!(validate_sysctl("kernel.shmmax=1000").is_ok());
        assert!(validate_sysctl("fs.mqueue.msg_max=20").is_ok());
        for bad in [
            "kernel.foo=1",
            "net.ipv4.ip_forward",
            "=1",
            "kernel.hostname=x",
        ] {
            assert_eq!(
                validate_sysctl(bad).unwrap_err(),
                format!("sysctl '{bad}' is not allowed")
            );
        }
    }

    #[test]
    fn devices_as_dockers_cli() {
        let d = parse_device("/dev/zero:/dev/myzero:r").unwrap();
        assert_eq!(
            (
                d.path_on_host.as_str(),
                d.path_in_container.as_str(),
                d.cgroup_permissions.as_str()
            ),
            ("/dev/zero", "/dev/myzero", "r")
        );
        let d = parse_device("/dev/zero").unwrap();
        assert_eq!(d.path_in_container, "/dev/zero");
        assert_eq!(d.cgroup_permissions, "rwm");
        let d = parse_device("/dev/zero:rw").unwrap();
        assert_eq!(d.path_in_container, "/dev/zero");
        assert_eq!(d.cgroup_permissions, "rw");
        let d = parse_device("/dev/zero:/a/../b/").unwrap();
        assert_eq!(d.path_in_container, "/b");
        let e = |v: &str| parse_device(v).unwrap_err();
        assert_eq!(e(":/x"), "bad format for path: :/x");
        assert_eq!(e("a:b:c:d"), "bad format for path: a:b:c:d");
        assert_eq!(e("/dev/zero:/a:rwx"), "bad mode specified: rwx");
        assert_eq!(e("/dev/zero:/a:rr"), "bad mode specified: rr");
        assert_eq!(e("/dev/zero:rel"), "rel is not an absolute path");
        assert_eq!(e("zero"), "zero is not an absolute path");
    }
}
