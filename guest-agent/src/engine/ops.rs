//! Lifecycle verbs on existing containers: stop, rename, pause/unpause,
//! top, stats, update, prune. Resource work goes through libcgroups, so
//! the same code serves cgroup v1 hosts and the v2 guest.

use super::containers::{process_alive, valid_name, ContainerStore};
use super::record::ContainerRecord;
use crate::engine::Error;
use crate::layout::write_json_atomic;
use berth_protocol::{
    BlkioEntry, ContainerStatus, InterfaceCounters, RestartPolicy, StatsSample, TopInfo,
};
use libcgroups::common::{AnyCgroupManager, CgroupConfig, CgroupManager, FreezerState};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn cgroup(id: &str) -> Result<AnyCgroupManager, Error> {
    libcgroups::common::create_cgroup_manager(CgroupConfig {
        cgroup_path: PathBuf::from(format!("/berth/{id}")),
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .map_err(Error::failed("cgroup"))
}

impl ContainerStore {
    fn running(&self, key: &str) -> Result<(ContainerRecord, ContainerStatus), Error> {
        let r = self.resolve(key)?;
        let status = self.status(&r.id).0;
        Ok((r, status))
    }

    /// The signal `stop` sends first.
    fn stop_signal(&self, r: &ContainerRecord, images: &crate::store::ImageStore) -> i32 {
        let from_image = images
            .config(&r.image_id)
            .ok()
            .and_then(|c| c.config)
            .and_then(|c| c.stop_signal);
        r.config
            .stop_signal
            .as_deref()
            .or(from_image.as_deref())
            .and_then(|s| super::signal::parse(s).ok())
            .unwrap_or(libc::SIGTERM)
    }

    /// `stop`: stop signal, up to `timeout` seconds, then SIGKILL.
    pub fn stop(
        &self,
        images: &crate::store::ImageStore,
        key: &str,
        timeout: Option<i64>,
    ) -> Result<String, Error> {
        // Marked stopped before the status is read, under the policy gate:
        // a policy restart in flight finishes first and is then stopped.
        let (r, status) = {
            let _gate = self.policy_gate.lock().unwrap_or_else(|e| e.into_inner());
            let (r, status) = self.running(key)?;
            let _ = std::fs::write(
                self.layout().container(&r.id).join(super::files::STOPPED),
                b"",
            );
            (r, status)
        };
        if !matches!(status, ContainerStatus::Running | ContainerStatus::Paused) {
            return Ok(r.id);
        }
        // `-t`, else the container's `--stop-timeout`, else docker's 10 s.
        let timeout = timeout.or(r.config.stop_timeout).unwrap_or(10);
        let sig = self.stop_signal(&r, images);
        let _ = self.kill(&r.id, sig);
        if status == ContainerStatus::Paused {
            let _ = self.thaw(&r.id);
        }
        // A negative timeout waits for as long as it takes (docker's -1).
        let deadline = (timeout >= 0).then(|| Instant::now() + Duration::from_secs(timeout as u64));
        while self.is_running(&r.id) && deadline.is_none_or(|d| Instant::now() < d) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.is_running(&r.id) {
            let pid = self.status(&r.id).1.map(|run| run.pid);
            let _ = self.kill(&r.id, libc::SIGKILL);
            // The process itself dies at once; the shim then tears down the
            // rootfs, cgroup and runtime state before it records the exit,
            // which takes many syscalls (seconds in an emulated guest).
            // Give up only when the process survives SIGKILL, or when the
            // teardown makes no end. Dying takes a while too where the
            // guest kernel is emulated and the host busy (over 10 s seen:
            // the exit of a pid namespace's init waits for all its
            // processes).
            let killed_by = Instant::now() + Duration::from_secs(60);
            let torn_down_by = Instant::now() + Duration::from_secs(120);
            while self.is_running(&r.id) {
                let now = Instant::now();
                let gone = pid.is_none_or(|p| !process_alive(p));
                if (!gone && now >= killed_by) || now >= torn_down_by {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if self.is_running(&r.id) {
            return Err(Error::internal(format!("container {} did not stop", r.id)));
        }
        // Return once the shim has cleaned up, so a following start or rm
        // finds the container at rest.
        if let (_, Some(run), _) = self.status(&r.id) {
            super::containers::wait_shim_gone(&run, Duration::from_secs(5));
        }
        super::events::container(self.layout().root(), &r, "stop", &[]);
        Ok(r.id)
    }

    /// `restart`: stop, start, then docker's `restart` event.
    pub fn restart(
        &self,
        images: &crate::store::ImageStore,
        key: &str,
        timeout: Option<i64>,
    ) -> Result<(), Error> {
        let id = self.stop(images, key, timeout)?;
        self.start(&id, false)?;
        let r = self.resolve(&id)?;
        super::events::container(self.layout().root(), &r, "restart", &[]);
        Ok(())
    }

    pub fn is_running(&self, id: &str) -> bool {
        matches!(
            self.status(id).0,
            ContainerStatus::Running | ContainerStatus::Paused
        )
    }

    pub fn rename(&self, key: &str, name: &str) -> Result<(), Error> {
        let name = name.trim_start_matches('/');
        if !valid_name(name) {
            return Err(Error::invalid(format!(
                "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let _g = self.lock.lock().unwrap();
        let mut r = self.resolve(key)?;
        if r.name == name {
            return Err(Error::invalid(
                "Renaming a container with the same name as its current name",
            ));
        }
        if let Some(other) = self.records().iter().find(|o| o.name == name) {
            return Err(Error::conflict(format!("Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.", other.id),
            ));
        }
        let old = std::mem::replace(&mut r.name, name.to_string());
        write_json_atomic(
            &self.layout().container(&r.id).join(super::files::RECORD),
            &r,
        )
        .map_err(Error::unexpected)?;
        super::events::container(
            self.layout().root(),
            &r,
            "rename",
            &[("oldName", format!("/{old}"))],
        );
        Ok(())
    }

    pub fn pause(&self, key: &str) -> Result<(), Error> {
        let (r, status) = self.running(key)?;
        match status {
            ContainerStatus::Running => {}
            ContainerStatus::Paused => {
                return Err(Error::conflict(format!(
                    "Container {} is already paused",
                    r.id
                )))
            }
            _ => {
                return Err(Error::conflict(format!(
                    "Container {} is not running",
                    r.id
                )))
            }
        }
        cgroup(&r.id)?
            .freeze(FreezerState::Frozen)
            .map_err(Error::failed("freezing"))?;
        std::fs::write(
            self.layout().container(&r.id).join(super::files::PAUSED),
            b"",
        )
        .map_err(Error::unexpected)?;
        super::events::container(self.layout().root(), &r, "pause", &[]);
        Ok(())
    }

    fn thaw(&self, id: &str) -> Result<(), Error> {
        cgroup(id)?
            .freeze(FreezerState::Thawed)
            .map_err(Error::failed("thawing"))?;
        let _ = std::fs::remove_file(self.layout().container(id).join(super::files::PAUSED));
        Ok(())
    }

    pub fn unpause(&self, key: &str) -> Result<(), Error> {
        let (r, status) = self.running(key)?;
        if status != ContainerStatus::Paused {
            return Err(Error::conflict(format!("Container {} is not paused", r.id)));
        }
        self.thaw(&r.id)?;
        super::events::container(self.layout().root(), &r, "unpause", &[]);
        Ok(())
    }

    fn pids(&self, key: &str) -> Result<(ContainerRecord, Vec<i32>), Error> {
        let (r, status) = self.running(key)?;
        if !matches!(status, ContainerStatus::Running | ContainerStatus::Paused) {
            return Err(Error::conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        let pids = cgroup(&r.id)?
            .get_all_pids()
            .map_err(Error::failed("listing processes"))?;
        let mut pids: Vec<i32> = pids.into_iter().map(|p| p.as_raw()).collect();
        pids.sort_unstable();
        Ok((r, pids))
    }

    /// `top`: the container's processes in `ps -ef` columns.
    pub fn top(&self, key: &str) -> Result<TopInfo, Error> {
        let (_, pids) = self.pids(key)?;
        let titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let processes = pids.into_iter().filter_map(proc_row).collect();
        Ok(TopInfo { titles, processes })
    }

    pub fn stats(&self, key: &str) -> Result<StatsSample, Error> {
        let (r, _) = self.pids(key)?;
        let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let c = if v2 {
            // Read directly: libcgroups' v2 stats also want PSI files
            // (cpu.pressure), which a kernel without CONFIG_PSI lacks.
            v2_stats(&r.id)
        } else {
            let s = cgroup(&r.id)?
                .stats()
                .map_err(Error::failed("reading stats"))?;
            // Like docker: page cache that can be dropped is not "usage".
            let inactive = s
                .memory
                .stats
                .get("total_inactive_file")
                .or_else(|| s.memory.stats.get("inactive_file"))
                .copied()
                .unwrap_or(0);
            let blkio = s
                .blkio
                .service_bytes
                .iter()
                .map(|d| BlkioEntry {
                    major: d.major,
                    minor: d.minor,
                    op: d.op_type.clone().unwrap_or_default(),
                    value: d.value,
                })
                .collect();
            CgroupSample {
                cpu_ns: s.cpu.usage.usage_total,
                memory: s.memory.memory.usage,
                memory_limit: s.memory.memory.limit,
                inactive_file: inactive,
                pids: s.pids.current,
                blkio,
            }
        };
        let (block_read, block_write) = blkio_read_write(&c.blkio);
        let total_mem = host_memory();
        let limit = match c.memory_limit {
            0 => total_mem,
            l if l > total_mem => total_mem,
            l => l,
        };
        // The container's own network namespace (docker counts its
        // interfaces; a host-network container has none of its own).
        let networks = match self.status(&r.id).1 {
            Some(run) if r.config.network_mode.as_deref() != Some("host") => interfaces(run.pid),
            _ => Vec::new(),
        };
        let (net_rx, net_tx) = networks.iter().fold((0u64, 0u64), |(r, t), i| {
            (r.saturating_add(i.rx_bytes), t.saturating_add(i.tx_bytes))
        });
        Ok(StatsSample {
            id: r.id.clone(),
            name: r.name.clone(),
            cpu_usage_ns: c.cpu_ns,
            system_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64,
            online_cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_usage: c.memory.saturating_sub(c.inactive_file),
            memory_limit: limit,
            pids: c.pids,
            net_rx_bytes: net_rx,
            net_tx_bytes: net_tx,
            block_read_bytes: block_read,
            block_write_bytes: block_write,
            networks,
            blkio_service_bytes: c.blkio,
            cgroup_v1: !v2,
        })
    }

    /// `update`: stores the new limits and applies them if it runs.
    pub fn update(
        &self,
        key: &str,
        memory: Option<i64>,
        nano_cpus: Option<i64>,
        pids_limit: Option<i64>,
        restart: Option<RestartPolicy>,
    ) -> Result<(), Error> {
        let _g = self.lock.lock().unwrap();
        let mut r = self.resolve(key)?;
        if let Some(m) = memory {
            if m > 0 && m < 6 * 1024 * 1024 {
                return Err(Error::invalid("Minimum memory limit allowed is 6MB"));
            }
            r.config.memory = Some(m);
        }
        if let Some(c) = nano_cpus {
            let cpus = std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1);
            if c != 0 && !(10_000_000..=cpus * 1_000_000_000).contains(&c) {
                return Err(Error::invalid(format!("Range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"),
                ));
            }
            r.config.nano_cpus = Some(c);
        }
        if let Some(p) = pids_limit {
            r.config.pids_limit = Some(p);
        }
        if let Some(p) = restart {
            if p.name != "no" && r.config.auto_remove {
                return Err(Error::invalid("Restart policy cannot be updated because AutoRemove is enabled for the container",
                ));
            }
            if !matches!(p.name.as_str(), "" | "no") {
                self.policy_hint
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                super::containers::wake_policy_thread();
            }
            r.config.restart = p;
        }
        let status = self.status(&r.id).0;
        if matches!(status, ContainerStatus::Running | ContainerStatus::Paused) {
            apply_limits(&r.id, memory, nano_cpus, pids_limit)?;
        }
        write_json_atomic(
            &self.layout().container(&r.id).join(super::files::RECORD),
            &r,
        )
        .map_err(Error::unexpected)?;
        super::events::container(self.layout().root(), &r, "update", &[]);
        Ok(())
    }

    /// `container prune`: removes every container that is not running.
    pub fn prune(&self) -> Vec<String> {
        let mut removed = Vec::new();
        for r in self.records() {
            let status = self.status(&r.id).0;
            if matches!(
                status,
                ContainerStatus::Exited | ContainerStatus::Created | ContainerStatus::Dead
            ) && self.remove_files(&r.id).is_ok()
            {
                removed.push(r.id);
            }
        }
        removed
    }
}

fn apply_limits(
    id: &str,
    memory: Option<i64>,
    nano_cpus: Option<i64>,
    pids_limit: Option<i64>,
) -> Result<(), Error> {
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };
    let bad = |e: oci_spec::OciSpecError| Error::invalid(e.to_string());
    let mut res = LinuxResourcesBuilder::default();
    if let Some(m) = memory {
        let limit = if m > 0 { m } else { -1 };
        let mut mem = LinuxMemoryBuilder::default().limit(limit);
        if std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
            mem = mem.swap(if m > 0 { m.saturating_mul(2) } else { -1 });
        }
        res = res.memory(mem.build().map_err(bad)?);
    }
    if let Some(n) = nano_cpus {
        let period: u64 = 100_000;
        let quota: i64 = if n > 0 {
            (n as i128 * period as i128 / 1_000_000_000) as i64
        } else {
            -1
        };
        res = res.cpu(
            LinuxCpuBuilder::default()
                .period(period)
                .quota(quota)
                .build()
                .map_err(bad)?,
        );
    }
    if let Some(p) = pids_limit {
        res = res.pids(
            LinuxPidsBuilder::default()
                .limit(if p > 0 { p } else { -1 })
                .build()
                .map_err(bad)?,
        );
    }
    let resources = res.build().map_err(bad)?;
    let wants = super::controllers::Wants {
        cpu: nano_cpus.is_some(),
        cpuset: false,
    };
    let _guard = super::controllers::prepare_update(wants)
        .map_err(Error::failed("enabling the cpu controller"))?;
    cgroup(id)?
        .apply(&libcgroups::common::ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(Error::failed("updating limits"))
}

/// (cpu ns, memory bytes, memory limit (0 = none), inactive file bytes,
/// pids) of a container's cgroup v2 directory.
/// What one sample reads from a container's cgroup.
struct CgroupSample {
    cpu_ns: u64,
    memory: u64,
    memory_limit: u64,
    inactive_file: u64,
    pids: u64,
    /// `io_service_bytes_recursive`'s rows.
    blkio: Vec<BlkioEntry>,
}

fn v2_stats(id: &str) -> CgroupSample {
    let dir = PathBuf::from(format!("/sys/fs/cgroup/berth/{id}"));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let num = |f: &str| read(f).trim().parse::<u64>().unwrap_or(0);
    let keyed = |f: &str, k: &str| {
        read(f)
            .lines()
            .find_map(|l| {
                l.strip_prefix(k)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0)
    };
    CgroupSample {
        cpu_ns: keyed("cpu.stat", "usage_usec").saturating_mul(1000),
        memory: num("memory.current"),
        memory_limit: num("memory.max"),
        inactive_file: keyed("memory.stat", "inactive_file"),
        pids: num("pids.current"),
        blkio: io_stat_entries(&read("io.stat")),
    }
}

/// cgroup v2 `io.stat` (`MAJ:MIN rbytes=N wbytes=N rios=N …` a device a
/// line): a `read` and a `write` row a device, as dockerd reports them.
fn io_stat_entries(text: &str) -> Vec<BlkioEntry> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else {
            continue;
        };
        let (mut read, mut write) = (0u64, 0u64);
        for field in fields {
            match field.split_once('=') {
                Some(("rbytes", v)) => read = v.parse().unwrap_or(0),
                Some(("wbytes", v)) => write = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        for (op, value) in [("read", read), ("write", write)] {
            rows.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    rows
}

/// The bytes read and written over every device: docker's CLI sums the
/// `Read` and `Write` rows (either case) and leaves out the others.
fn blkio_read_write(rows: &[BlkioEntry]) -> (u64, u64) {
    let sum = |op: &str| {
        rows.iter()
            .filter(|r| r.op.eq_ignore_ascii_case(op))
            .fold(0u64, |a, r| a.saturating_add(r.value))
    };
    (sum("read"), sum("write"))
}

/// The interfaces of `pid`'s network namespace but loopback
/// (`/proc/PID/net/dev`), as docker's stats count them.
fn interfaces(pid: i32) -> Vec<InterfaceCounters> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    net_dev_interfaces(&text)
}

/// `/proc/net/dev`: two header lines, then `IFACE: rx_bytes rx_packets
/// rx_errs rx_drop … (8 receive columns) tx_bytes tx_packets tx_errs
/// tx_drop …`.
fn net_dev_interfaces(text: &str) -> Vec<InterfaceCounters> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((iface, cols)) = line.split_once(':') else {
            continue;
        };
        let name = iface.trim();
        if name == "lo" || name.is_empty() {
            continue;
        }
        let c: Vec<u64> = cols
            .split_whitespace()
            .map(|c| c.parse().unwrap_or(0))
            .collect();
        if c.len() >= 12 {
            out.push(InterfaceCounters {
                name: name.to_string(),
                rx_bytes: c[0],
                rx_packets: c[1],
                rx_errors: c[2],
                rx_dropped: c[3],
                tx_bytes: c[8],
                tx_packets: c[9],
                tx_errors: c[10],
                tx_dropped: c[11],
            });
        }
    }
    out
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

const TICKS: u64 = 100;

fn proc_row(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: split after the last ')'.
    let close = stat.rfind(')')?;
    let comm = stat.get(stat.find('(')? + 1..close)?.to_string();
    let f: Vec<&str> = stat[close + 2..].split(' ').collect();
    // Field numbers in proc(5) minus 3 (pid, comm and state come first).
    let ppid = f.get(1)?.to_string();
    let tty_nr: u64 = f.get(4)?.parse().ok()?;
    let cpu_ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let start_ticks: u64 = f.get(19)?.parse().ok()?;
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(String::from))
        .unwrap_or_default();
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let elapsed = (uptime - start_ticks as f64 / TICKS as f64).max(0.01);
    let c = ((cpu_ticks as f64 / TICKS as f64) / elapsed * 100.0) as u64;
    let started = chrono::Local::now() - chrono::Duration::milliseconds((elapsed * 1000.0) as i64);
    let stime = if elapsed < 86_400.0 {
        started.format("%H:%M").to_string()
    } else {
        started.format("%b%d").to_string()
    };
    let tty = match (tty_nr >> 8) & 0xfff {
        0 => "?".to_string(),
        136..=143 => format!("pts/{}", (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00)),
        _ => "?".to_string(),
    };
    let secs = cpu_ticks / TICKS;
    let time = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = if cmdline.is_empty() {
        format!("[{comm}]")
    } else {
        cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(vec![
        user_name(&uid),
        pid.to_string(),
        ppid,
        c.to_string(),
        stime,
        tty,
        time,
        cmd,
    ])
}

/// The host's name for a uid, like `ps` shows it.
fn user_name(uid: &str) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let mut it = l.split(':');
                let name = it.next()?;
                let _ = it.next();
                (it.next()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::{blkio_read_write, io_stat_entries, net_dev_interfaces, BlkioEntry};

    #[test]
    fn io_and_network_counters_are_summed() {
        let io = "8:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n\
                  254:0 rbytes=100 wbytes=0 rios=2 wios=0 dbytes=0 dios=0\n";
        let rows = io_stat_entries(io);
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[1],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "write".into(),
                value: 512
            }
        );
        assert_eq!(blkio_read_write(&rows), (4196, 512));
        assert_eq!(blkio_read_write(&io_stat_entries("")), (0, 0));
        // v1 rows: Sync, Async and Total are not summed.
        let v1 = ["Read", "Write", "Sync", "Total"].map(|op| BlkioEntry {
            major: 8,
            minor: 0,
            op: op.into(),
            value: 10,
        });
        assert_eq!(blkio_read_write(&v1), (10, 10));
        let dev = "Inter-|   Receive                            |  Transmit\n \
                   face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                   lo:  999       9    0    0    0     0          0         0      999       9    0    0    0     0       0          0\n  \
                   eth0:  1450      12    1    2    0     0          0         0      656       8    3    4    0     0       0          0\n  \
                   eth1:    50       1    0    0    0     0          0         0        4       1    0    0    0     0       0          0\n";
        let ifs = net_dev_interfaces(dev);
        let names: Vec<&str> = ifs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        let e = &ifs[0];
        assert_eq!(
            (e.rx_bytes, e.rx_packets, e.rx_errors, e.rx_dropped),
            (1450, 12, 1, 2)
        );
        assert_eq!(
            (e.tx_bytes, e.tx_packets, e.tx_errors, e.tx_dropped),
            (656, 8, 3, 4)
        );
    }
}
