//! The running kernel's work counters since boot, read from `/proc/stat`,
//! `/proc/vmstat` and `/proc/diskstats`.
//!
//! In the machine VM these are the guest kernel's: the work a container
//! start costs there (forks, context switches, interrupts, page faults)
//! is what a VM host pays for in exits, and on kvm_pvm hosts in emulated
//! instructions. `benches/machine.sh` reads them around one `run --rm`
//! (`berth machine counters`).

use std::collections::BTreeMap;

/// Counters from both files; a file that cannot be read adds nothing.
pub fn read() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Ok(t) = std::fs::read_to_string("/proc/stat") {
        out.extend(from_stat(&t));
    }
    if let Ok(t) = std::fs::read_to_string("/proc/vmstat") {
        out.extend(from_vmstat(&t));
    }
    if let Ok(t) = std::fs::read_to_string("/proc/diskstats") {
        out.extend(from_diskstats(&t));
    }
    // berth's guest kernel has no VM event counters (they cost work on
    // every fault): sum the processes' own fault counts instead. Each
    // counts its reaped children too, and PID 1 reaps every orphan, so
    // only faults of kernel threads and of children not yet reaped are
    // missed.
    if !out.contains_key("page_faults") {
        let (mut minor, mut major) = (0u64, 0u64);
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if !e
                .file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
            {
                continue;
            }
            if let Some((mi, ma)) = std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|t| faults_of_process(&t))
            {
                minor += mi;
                major += ma;
            }
        }
        out.insert("page_faults".into(), minor + major);
        out.insert("major_page_faults".into(), major);
    }
    out
}

/// `/proc/<pid>/stat`: minor and major faults of the process and of its
/// reaped children. The command name may hold spaces and parentheses, so
/// fields are counted after the last `)`.
pub fn faults_of_process(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some((n(7)? + n(8)?, n(9)? + n(10)?))
}

/// `/proc/stat`: `processes` (forks since boot), `ctxt`, the total of
/// `intr`, and the all-CPU time columns of `cpu` in clock ticks
/// (USER_HZ).
pub fn from_stat(text: &str) -> BTreeMap<String, u64> {
    const CPU: [&str; 8] = [
        "cpu_user_ticks",
        "cpu_nice_ticks",
        "cpu_system_ticks",
        "cpu_idle_ticks",
        "cpu_iowait_ticks",
        "cpu_irq_ticks",
        "cpu_softirq_ticks",
        "cpu_steal_ticks",
    ];
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(key) = words.next() else { continue };
        let first = || line.split_ascii_whitespace().nth(1)?.parse::<u64>().ok();
        match key {
            "processes" => put(&mut out, "forks", first()),
            "ctxt" => put(&mut out, "context_switches", first()),
            "intr" => put(&mut out, "interrupts", first()),
            "cpu" => {
                for (name, v) in CPU.iter().zip(words) {
                    put(&mut out, name, v.parse().ok());
                }
            }
            _ => {}
        }
    }
    out
}

/// `/proc/vmstat`: page faults, major faults, and pages freed (kernels
/// with `CONFIG_VM_EVENT_COUNTERS`).
pub fn from_vmstat(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let (Some(key), Some(v)) = (words.next(), words.next()) else {
            continue;
        };
        let name = match key {
            "pgfault" => "page_faults",
            "pgmajfault" => "major_page_faults",
            "pgfree" => "pages_freed",
            _ => continue,
        };
        put(&mut out, name, v.parse().ok());
    }
    out
}

/// `/proc/diskstats`: writes, sectors written and flushes completed,
/// summed over the virtio disks (`vd*`, whole disks only). In the machine
/// VM each flush (an fsync's cache flush) and each write is a request the
/// VMM serves, with its exits; on the host a flush is an fsync of the disk
/// image.
pub fn from_diskstats(text: &str) -> BTreeMap<String, u64> {
    let (mut writes, mut sectors, mut flushes) = (0u64, 0u64, 0u64);
    let mut any = false;
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some(name) = f.get(2) else { continue };
        if !name.starts_with("vd") || name.ends_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        any = true;
        writes = writes.saturating_add(n(7));
        sectors = sectors.saturating_add(n(9));
        // Kernels since 5.5 add flushes completed as the 16th number.
        flushes = flushes.saturating_add(n(18));
    }
    let mut out = BTreeMap::new();
    if any {
        out.insert("disk_writes".to_string(), writes);
        out.insert("disk_sectors_written".to_string(), sectors);
        out.insert("disk_flushes".to_string(), flushes);
    }
    out
}

fn put(out: &mut BTreeMap<String, u64>, name: &str, v: Option<u64>) {
    if let Some(v) = v {
        out.insert(name.to_string(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_counters() {
        let t = "cpu  287 0 4006 8078 10 0 1 1696 0 0\ncpu0 287 0 4006 8078 10 0 1 1696 0 0\n\
                 intr 6650 0 55 262\nctxt 123456\nbtime 1\nprocesses 789\nprocs_running 1\n";
        let m = from_stat(t);
        assert_eq!(m["forks"], 789);
        assert_eq!(m["context_switches"], 123456);
        assert_eq!(m["interrupts"], 6650);
        assert_eq!(m["cpu_system_ticks"], 4006);
        assert_eq!(m["cpu_steal_ticks"], 1696);
        assert_eq!(m.len(), 11);
    }

    #[test]
    fn vmstat_counters() {
        let m = from_vmstat("nr_free_pages 5\npgfault 1000\npgmajfault 7\npgfree 99\n");
        assert_eq!(m["page_faults"], 1000);
        assert_eq!(m["major_page_faults"], 7);
        assert_eq!(m["pages_freed"], 99);
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn process_faults() {
        let t = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 20 3 1 5 6 0 0";
        assert_eq!(faults_of_process(t), Some((120, 4)));
        assert_eq!(faults_of_process("42 (x) S 1"), None);
        assert_eq!(faults_of_process("no paren"), None);
    }

    #[test]
    fn diskstats_counters() {
        let t = " 254       0 vda 300 0 9000 50 0 0 0 0 0 60 50 0 0 0 0 0 0\n \
                 254      16 vdb 10 2 80 1 40 5 640 30 0 70 31 0 0 0 0 12 3\n \
                 254      17 vdb1 10 2 80 1 40 5 640 30 0 70 31 0 0 0 0 12 3\n \
                   7       0 loop0 1 0 2 0 99 0 99 0 0 0 0 0 0 0 0 99 0\n \
                 254      32 vdc 1 0 8 0 2 x 16\n";
        let m = from_diskstats(t);
        assert_eq!(m["disk_writes"], 42);
        assert_eq!(m["disk_sectors_written"], 656);
        assert_eq!(m["disk_flushes"], 12);
        assert_eq!(m.len(), 3);
        assert!(from_diskstats("   7 0 loop0 1 0 2 0 99\n\nvda\n").is_empty());
    }

    #[test]
    fn garbage_is_skipped() {
        assert!(from_stat("processes x\nctxt\n\ncpu a b\n").is_empty());
        assert!(from_vmstat("pgfault -1\npgmajfault\n").is_empty());
    }

    #[test]
    fn this_kernel_has_them() {
        let m = read();
        assert!(m["forks"] > 0 && m["page_faults"] > 0, "{m:?}");
    }
}
