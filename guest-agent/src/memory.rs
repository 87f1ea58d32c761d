//! Guest memory that grows on demand.
//!
//! On hosts where the guest kernel is emulated (kvm_pvm), initialising the
//! memory map costs ~14 s per GiB at boot, so the VMM announces only the
//! first part of RAM and lists the rest on the command line:
//! `berth.mem_hotplug=0xSTART-0xEND[,0xSTART-0xEND...]`. The agent hot-adds
//! that memory, one memory block at a time, through the kernel's probe
//! interface (`/sys/devices/system/memory/probe`; blocks are onlined by the
//! kernel's default policy) whenever available memory runs low. On real
//! hardware the VMM announces all RAM at boot and none of this runs.

use std::time::Duration;

const PROBE: &str = "/sys/devices/system/memory/probe";
const BLOCK_SIZE: &str = "/sys/devices/system/memory/block_size_bytes";

/// Parses `0xSTART-0xEND,...` into `(start, end)` pairs; malformed or empty
/// ranges are dropped.
pub fn parse_ranges(spec: &str) -> Vec<(u64, u64)> {
    spec.split(',')
        .filter_map(|r| {
            let (a, b) = r.split_once('-')?;
            let a = parse_hex(a)?;
            let b = parse_hex(b)?;
            (a < b).then_some((a, b))
        })
        .collect()
}

fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// Block start addresses covering `ranges`, in order. Partial blocks at
/// either end are left out (the kernel adds whole blocks only).
pub fn blocks(ranges: &[(u64, u64)], block: u64) -> Vec<u64> {
    let mut out = Vec::new();
    if block == 0 {
        return out;
    }
    for &(start, end) in ranges {
        let Some(mut a) = start.div_ceil(block).checked_mul(block) else {
            continue;
        };
        while a.checked_add(block).is_some_and(|e| e <= end) {
            out.push(a);
            a += block;
        }
    }
    out
}

/// `(MemTotal, MemAvailable)` in bytes from /proc/meminfo text.
pub fn meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Whether to add memory now: less than a quarter of the total, or less
/// than 128 MiB, is available.
pub fn wants_more(total: u64, available: u64) -> bool {
    available < (total / 4).max(128 << 20)
}

/// Starts the growth thread when the command line offers hotplug memory.
pub fn spawn_grower(cmdline: &str, log: fn(&str)) {
    let Some(spec) = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("berth.mem_hotplug="))
    else {
        return;
    };
    let ranges = parse_ranges(spec);
    let block = std::fs::read_to_string(BLOCK_SIZE)
        .ok()
        .and_then(|s| parse_hex(&s))
        .unwrap_or(128 << 20);
    let mut pending = blocks(&ranges, block);
    if pending.is_empty() {
        return;
    }
    if !std::path::Path::new(PROBE).exists() {
        log("memory hotplug offered, but this kernel has no probe interface");
        return;
    }
    pending.reverse();
    let _ = std::thread::Builder::new()
        .name("mem-grow".into())
        .spawn(move || {
            while let Some(addr) = pending.last().copied() {
                let low = std::fs::read_to_string("/proc/meminfo")
                    .ok()
                    .and_then(|t| meminfo(&t))
                    .is_some_and(|(t, a)| wants_more(t, a));
                if !low {
                    std::thread::sleep(Duration::from_millis(250));
                    continue;
                }
                pending.pop();
                match std::fs::write(PROBE, format!("{addr:#x}")) {
                    Ok(()) => log(&format!(
                        "added {} MiB of memory at {addr:#x} ({} blocks left)",
                        block >> 20,
                        pending.len()
                    )),
                    Err(e) => log(&format!("hot-adding memory at {addr:#x}: {e}")),
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_reject_garbage() {
        assert_eq!(
            parse_ranges("0x10000000-0x80000000,0x100000000-0x140000000"),
            vec![(0x1000_0000, 0x8000_0000), (0x1_0000_0000, 0x1_4000_0000)]
        );
        assert_eq!(parse_ranges(""), vec![]);
        assert_eq!(parse_ranges("zz-0x10,0x20-0x10,0x5"), vec![]);
    }

    #[test]
    fn blocks_are_whole_and_aligned() {
        let b = 128 << 20;
        assert_eq!(
            blocks(&[(256 << 20, 512 << 20)], b),
            vec![256 << 20, 384 << 20]
        );
        // Unaligned edges lose their partial blocks.
        assert_eq!(blocks(&[((256 << 20) + 1, 520 << 20)], b), vec![384 << 20]);
        assert_eq!(blocks(&[(0, 1 << 20)], b), Vec::<u64>::new());
        assert_eq!(blocks(&[(0, u64::MAX)], 0), Vec::<u64>::new());
        assert_eq!(blocks(&[(u64::MAX - b, u64::MAX)], b).len(), 0);
        assert_eq!(blocks(&[(u64::MAX - 5, u64::MAX)], b).len(), 0);
    }

    #[test]
    fn meminfo_and_threshold() {
        let t = "MemTotal:         262144 kB\nMemFree:  1000 kB\nMemAvailable:     100000 kB\n";
        assert_eq!(meminfo(t), Some((262144 * 1024, 100000 * 1024)));
        assert!(wants_more(256 << 20, 100 << 20));
        assert!(!wants_more(256 << 20, 200 << 20));
        assert!(wants_more(2 << 30, 400 << 20));
        assert!(meminfo("MemTotal: 5 kB\n").is_none());
    }
}
