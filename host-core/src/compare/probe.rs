//! Isolation facts: what a container sees, read from inside it by a shell
//! script, and the host's values it is compared with. Nothing here is
//! assumed about a placement; every fact is probed.
//!
//! The container's answer is untrusted: only known keys are kept, values
//! are cut to a bounded length and stripped of control characters.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The namespaces the probe reads from `/proc/self/ns`.
pub const NAMESPACES: [&str; 8] = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// The script a container runs to report its view; one `key=value` a line.
pub const SCRIPT: &str = r#"echo "kernel=$(uname -r)"
echo "boot_id=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
echo "processes=$(ls /proc 2>/dev/null | grep -c '^[0-9][0-9]*$')"
echo "cpu_model=$(grep -m1 -E '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2-)"
echo "cpus=$(grep -c ^processor /proc/cpuinfo 2>/dev/null)"
echo "mounts=$(wc -l < /proc/mounts 2>/dev/null)"
echo "devices=$(ls /dev 2>/dev/null | wc -l)"
echo "virtio_devices=$(ls /sys/bus/virtio/devices 2>/dev/null | wc -l)"
grep -E '^(Seccomp|Seccomp_filters|CapEff|CapBnd|NoNewPrivs):' /proc/self/status 2>/dev/null | sed 's/:[[:space:]]*/=/'
for n in cgroup ipc mnt net pid time user uts; do echo "ns_$n=$(readlink /proc/self/ns/$n 2>/dev/null)"; done
echo "memory_max=$(cat /sys/fs/cgroup/memory.max 2>/dev/null)"
echo "pids_max=$(cat /sys/fs/cgroup/pids.max 2>/dev/null)"
echo "cpu_max=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null)"
echo "probe=done"
"#;

/// The keys [`parse`] keeps.
const KEYS: [&str; 24] = [
    "kernel",
    "boot_id",
    "processes",
    "cpu_model",
    "cpus",
    "mounts",
    "devices",
    "virtio_devices",
    "Seccomp",
    "Seccomp_filters",
    "CapEff",
    "CapBnd",
    "NoNewPrivs",
    "ns_cgroup",
    "ns_ipc",
    "ns_mnt",
    "ns_net",
    "ns_pid",
    "ns_time",
    "ns_user",
    "ns_uts",
    "memory_max",
    "pids_max",
    "cpu_max",
];

/// Longest value kept from the container's answer.
const MAX_VALUE: usize = 200;

/// Parses the probe's output: known keys only, bounded, printable.
pub fn parse(output: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in output.lines().take(200) {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if !KEYS.contains(&k) || m.contains_key(k) {
            continue;
        }
        let v: String = v
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_VALUE)
            .collect();
        m.insert(k.to_string(), v.trim().to_string());
    }
    m
}

/// Facts about the host `compare` runs on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostFacts {
    pub kernel: String,
    pub boot_id: String,
    pub cpu_model: String,
    pub cpus: u32,
    pub processes: u32,
    /// `/proc/self/ns/*` of this process.
    pub namespaces: BTreeMap<String, String>,
    pub virtualization: Virtualization,
}

/// How VMs run here.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Virtualization {
    /// `/dev/kvm` exists.
    pub kvm: bool,
    /// The kvm_pvm module is loaded: KVM without hardware support; the
    /// guest kernel's privileged work is emulated.
    pub kvm_pvm: bool,
    /// The CPU offers vmx or svm to this host.
    pub hardware_virtualization: bool,
    /// The host itself runs under a hypervisor (cpuinfo `hypervisor` flag).
    pub host_is_guest: bool,
    /// One plain sentence on what VM numbers mean here.
    pub summary: String,
}

impl HostFacts {
    /// Reads this host's facts (Linux; empty values elsewhere).
    pub fn read() -> HostFacts {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count() as u32;
        let processes = std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                    })
                    .count() as u32
            })
            .unwrap_or(0);
        let mut namespaces = BTreeMap::new();
        for n in NAMESPACES {
            if let Ok(t) = std::fs::read_link(format!("/proc/self/ns/{n}")) {
                namespaces.insert(n.to_string(), t.to_string_lossy().into_owned());
            }
        }
        HostFacts {
            kernel: read("/proc/sys/kernel/osrelease"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            cpu_model,
            cpus,
            processes,
            namespaces,
            virtualization: Virtualization::detect(
                Path::new("/dev/kvm").exists(),
                Path::new("/sys/module/kvm_pvm").exists(),
                &cpuinfo,
            ),
        }
    }
}

impl Virtualization {
    /// From `/dev/kvm`, the kvm_pvm module and `/proc/cpuinfo`'s flags.
    pub fn detect(kvm: bool, kvm_pvm: bool, cpuinfo: &str) -> Virtualization {
        let flags: Vec<&str> = cpuinfo
            .lines()
            .find(|l| l.starts_with("flags"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.split_whitespace().collect())
            .unwrap_or_default();
        let hw = flags.iter().any(|f| *f == "vmx" || *f == "svm");
        let host_is_guest = flags.contains(&"hypervisor");
        let summary = if !kvm {
            "no /dev/kvm: the VM placements cannot run on this host".to_string()
        } else if kvm_pvm && !hw {
            "KVM here is kvm_pvm (no vmx/svm): the guest kernel is emulated; VM numbers say nothing about real hardware".to_string()
        } else if hw && host_is_guest {
            "KVM with hardware virtualization, nested inside another hypervisor: VM numbers carry nested-virtualization costs".to_string()
        } else if hw {
            "KVM with hardware virtualization: VM numbers are representative of real hardware"
                .to_string()
        } else {
            "KVM without vmx/svm flags: the guest may be emulated; treat VM numbers with care"
                .to_string()
        };
        Virtualization {
            kvm,
            kvm_pvm,
            hardware_virtualization: hw,
            host_is_guest,
            summary,
        }
    }
}

/// Isolation facts for one placement, from its container's view.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Isolation {
    pub kernel: String,
    /// The container's kernel release differs from the host's, or its boot
    /// id does: it runs on a kernel of its own.
    pub own_kernel: bool,
    pub boot_id: String,
    /// The container reads the host's boot id.
    pub sees_host_boot_id: bool,
    /// Processes the container sees (the probe's own included).
    pub processes_visible: u32,
    pub cpu_model: String,
    pub cpus: u32,
    pub mounts: u32,
    pub devices: u32,
    /// virtio devices the container's kernel has (a VM's device surface).
    pub virtio_devices: u32,
    /// `Seccomp` of /proc/self/status: 0 off, 1 strict, 2 filter.
    pub seccomp: String,
    pub seccomp_filters: u32,
    /// Effective capabilities (hex mask) and how many are set.
    pub cap_eff: String,
    pub capabilities: u32,
    pub no_new_privs: bool,
    pub namespaces: BTreeMap<String, String>,
    /// Namespaces the container shares with the host process (only
    /// meaningful on the host's kernel; empty otherwise).
    pub shared_namespaces: Vec<String>,
    /// cgroup v2 limits in force (`max` = none).
    pub cgroup_limits: BTreeMap<String, String>,
    /// Whether the VMM behind the placement runs under seccomp (from the
    /// host's /proc/PID/status of the VMM; None without a VMM).
    pub vmm_seccomp: Option<bool>,
    /// The system calls the container's seccomp filters let through to
    /// the host kernel: its process's live filters, read from the host
    /// and run over every system call number (native, docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<super::seccomp::SyscallCount>,
    /// The system calls the VMM's threads may make on the host kernel
    /// (the union over its threads' live filters; shared, vm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmm_syscalls: Option<super::seccomp::ProcessSyscalls>,
    /// The exits the guest can cause in the VMM and what its vCPU loop
    /// does with each, as the running VMM's binary describes them
    /// (`berth-vmm --describe`; shared, vm).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vmm_exits: Vec<VmmExit>,
    /// Why `syscalls` / `vmm_syscalls` / `vmm_exits` are missing, when
    /// they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscalls_notes: Vec<String>,
    /// `--destructive`: what a guest-kernel panic took down (None when
    /// not asked for).
    #[serde(default)]
    pub panic_trial: Option<PanicTrial>,
}

/// `--destructive`: a kernel panic forced from a privileged container, in a
/// placement that may be thrown away (an own VM), beside a witness
/// container in another VM that must not notice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanicTrial {
    /// Whether the panic was forced here.
    pub ran: bool,
    /// Why it was not run here, or what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The kernel's panic message reached the panicking VM's console.
    pub panic_seen: bool,
    /// The panicking VM ended (its VMM process exited).
    pub vm_ended: bool,
    /// The witness container, in a VM of its own, still answered an exec
    /// afterwards, with the boot id it had before.
    pub witness_unaffected: bool,
    /// The host's boot id is the one it had before.
    pub host_unaffected: bool,
}

impl PanicTrial {
    /// A placement where the trial is not run, and why.
    pub fn not_run(why: &str) -> PanicTrial {
        PanicTrial {
            note: Some(why.to_string()),
            ..PanicTrial::default()
        }
    }

    /// The panic happened and took down only its own VM.
    pub fn contained(&self) -> bool {
        self.ran
            && self.panic_seen
            && self.vm_ended
            && self.witness_unaffected
            && self.host_unaffected
    }
}

impl Isolation {
    /// Builds the facts from the probe's parsed answer and the host's.
    pub fn from_probe(m: &BTreeMap<String, String>, host: &HostFacts) -> Isolation {
        let s = |k: &str| m.get(k).cloned().unwrap_or_default();
        let n = |k: &str| {
            m.get(k)
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(0)
        };
        let kernel = s("kernel");
        let boot_id = s("boot_id");
        let sees_host_boot_id = !boot_id.is_empty() && boot_id == host.boot_id;
        let own_kernel = kernel != host.kernel || !sees_host_boot_id;
        let cap_eff = s("CapEff");
        let capabilities = u64::from_str_radix(cap_eff.trim(), 16)
            .map(|v| v.count_ones())
            .unwrap_or(0);
        let mut namespaces = BTreeMap::new();
        for ns in NAMESPACES {
            let v = s(&format!("ns_{ns}"));
            if !v.is_empty() {
                namespaces.insert(ns.to_string(), v);
            }
        }
        let shared_namespaces = if own_kernel {
            Vec::new()
        } else {
            namespaces
                .iter()
                .filter(|(k, v)| host.namespaces.get(*k) == Some(*v))
                .map(|(k, _)| k.clone())
                .collect()
        };
        let mut cgroup_limits = BTreeMap::new();
        for (k, name) in [
            ("memory_max", "memory.max"),
            ("pids_max", "pids.max"),
            ("cpu_max", "cpu.max"),
        ] {
            let v = s(k);
            cgroup_limits.insert(
                name.to_string(),
                if v.is_empty() {
                    "unavailable".into()
                } else {
                    v
                },
            );
        }
        Isolation {
            kernel,
            own_kernel,
            boot_id,
            sees_host_boot_id,
            processes_visible: n("processes"),
            cpu_model: s("cpu_model"),
            cpus: n("cpus"),
            mounts: n("mounts"),
            devices: n("devices"),
            virtio_devices: n("virtio_devices"),
            seccomp: s("Seccomp"),
            seccomp_filters: n("Seccomp_filters"),
            cap_eff,
            capabilities,
            no_new_privs: s("NoNewPrivs") == "1",
            namespaces,
            shared_namespaces,
            cgroup_limits,
            vmm_seccomp: None,
            syscalls: None,
            vmm_syscalls: None,
            syscalls_notes: Vec::new(),
            vmm_exits: Vec::new(),
            panic_trial: None,
        }
    }
}

/// One kind of exit the guest can cause in the VMM (`berth-vmm
/// --describe`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmExit {
    /// The exit, in a few words (`port I/O read`, `MMIO write`, `HLT`...).
    pub kind: String,
    /// `device` (handed to a device model on a bus), `resume`, `end` (the
    /// VM ends) or `fail` (the VM ends as failed).
    pub handling: String,
    /// For `device`: `io` or `mmio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<String>,
}

/// Parses `berth-vmm --describe`'s JSON: at most 32 exits, known
/// handlings only, short printable names.
pub fn parse_vmm_describe(data: &[u8]) -> Vec<VmmExit> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return Vec::new();
    };
    let Some(exits) = v.get("exits").and_then(|e| e.as_array()) else {
        return Vec::new();
    };
    let text = |v: Option<&serde_json::Value>| -> Option<String> {
        let s = v?.as_str()?;
        (!s.is_empty() && s.len() <= 64 && s.chars().all(|c| !c.is_control()))
            .then(|| s.to_string())
    };
    exits
        .iter()
        .take(32)
        .filter_map(|e| {
            let handling = text(e.get("handling"))?;
            if !["device", "resume", "end", "fail"].contains(&handling.as_str()) {
                return None;
            }
            let bus = text(e.get("bus")).filter(|b| b == "io" || b == "mmio");
            Some(VmmExit {
                kind: text(e.get("kind"))?,
                handling,
                bus,
            })
        })
        .collect()
}

/// The exits of the VMM running as `pid`, from its own binary
/// (`/proc/PID/exe --describe`).
#[cfg(target_os = "linux")]
pub fn vmm_exits(pid: i32) -> Result<Vec<VmmExit>, String> {
    let out = std::process::Command::new(format!("/proc/{pid}/exe"))
        .arg("--describe")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running the VMM's binary: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the VMM's binary does not describe its exits ({})",
            out.status
        ));
    }
    let exits = parse_vmm_describe(&out.stdout[..out.stdout.len().min(64 * 1024)]);
    if exits.is_empty() {
        return Err("the VMM described no exits".into());
    }
    Ok(exits)
}

#[cfg(not(target_os = "linux"))]
pub fn vmm_exits(_pid: i32) -> Result<Vec<VmmExit>, String> {
    Err("not read off Linux".into())
}

/// Whether `/proc/<pid>/status` shows a seccomp filter on that process.
pub fn process_seccomp(pid: i32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Seccomp:"))?;
    Some(line.split_whitespace().nth(1)? != "0")
}

/// The parent PID from a /proc/PID/stat line (the name in parentheses
/// may itself hold spaces and parentheses).
pub fn parent_of(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_of_a_stat_line() {
        assert_eq!(parent_of("42 (a) b) (c) S 7 42 42 0"), Some(7));
        assert_eq!(parent_of("42 (sh) S 1 42"), Some(1));
        assert_eq!(parent_of("garbage"), None);
    }

    fn host() -> HostFacts {
        HostFacts {
            kernel: "6.1.0-host".into(),
            boot_id: "aaaa".into(),
            namespaces: [("net".to_string(), "net:[1]".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_known_keys_only_and_bounds_values() {
        let long = "x".repeat(5000);
        let out = format!(
            "kernel=6.1.0-host\nboot_id=aaaa\nevil=1\nCapEff=00000000a80425fb\nns_net=net:[1]\nns_pid=pid:[2]\ncpu_model=\x1b[31m{long}\nkernel=second\nno equals sign\n"
        );
        let m = parse(&out);
        assert_eq!(
            m.get("kernel").unwrap(),
            "6.1.0-host",
            "the first value wins"
        );
        assert!(!m.contains_key("evil"));
        assert_eq!(m.get("cpu_model").unwrap().len(), MAX_VALUE);
        assert!(!m.get("cpu_model").unwrap().contains('\x1b'));
        let iso = Isolation::from_probe(&m, &host());
        assert!(!iso.own_kernel);
        assert!(iso.sees_host_boot_id);
        assert_eq!(iso.capabilities, 14);
        assert_eq!(iso.shared_namespaces, vec!["net".to_string()]);
    }

    #[test]
    fn another_kernel_or_boot_id_is_an_own_kernel() {
        let m = parse("kernel=6.18.0-guest\nboot_id=bbbb\nCapEff=zz\nprocesses=-3\n");
        let iso = Isolation::from_probe(&m, &host());
        assert!(iso.own_kernel);
        assert!(!iso.sees_host_boot_id);
        assert_eq!(iso.capabilities, 0, "a garbled mask counts nothing");
        assert_eq!(iso.processes_visible, 0);
        assert!(iso.shared_namespaces.is_empty());
        // Same release, other boot id: still another kernel.
        let m = parse("kernel=6.1.0-host\nboot_id=cccc\n");
        assert!(Isolation::from_probe(&m, &host()).own_kernel);
        // No boot id at all is not the host's.
        let m = parse("kernel=6.1.0-host\n");
        assert!(!Isolation::from_probe(&m, &host()).sees_host_boot_id);
    }

    #[test]
    fn vmm_describe_is_parsed_defensively() {
        let good = br#"{"exits":[{"kind":"port I/O read","handling":"device","bus":"io"},{"kind":"HLT","handling":"end"}]}"#;
        let e = parse_vmm_describe(good);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].bus.as_deref(), Some("io"));
        assert_eq!(e[1].handling, "end");
        assert!(parse_vmm_describe(b"").is_empty());
        assert!(parse_vmm_describe(b"[1]").is_empty());
        assert!(parse_vmm_describe(br#"{"exits":"x"}"#).is_empty());
        let long = "k".repeat(65);
        let hostile = serde_json::json!({"exits": [
            {"kind": "a", "handling": "explode"},
            {"kind": long, "handling": "end"},
            {"kind": "a\u{1b}", "handling": "end"},
            {"kind": 7, "handling": "end"},
            {"kind": "b", "handling": "device", "bus": "pci"},
        ]})
        .to_string();
        let e = parse_vmm_describe(hostile.as_bytes());
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].bus, None, "an unknown bus is dropped");
        let many = format!(
            r#"{{"exits":[{}]}}"#,
            vec![r#"{"kind":"a","handling":"end"}"#; 100].join(",")
        );
        assert_eq!(parse_vmm_describe(many.as_bytes()).len(), 32);
    }

    #[test]
    fn kvm_pvm_is_called_emulated() {
        let v = Virtualization::detect(true, true, "flags\t: fpu sse2 hypervisor\n");
        assert!(v.kvm_pvm && !v.hardware_virtualization && v.host_is_guest);
        assert!(v.summary.contains("emulated"), "{}", v.summary);
        let v = Virtualization::detect(true, false, "flags\t: fpu vmx\n");
        assert!(v.hardware_virtualization);
        assert!(v.summary.contains("representative"));
        let v = Virtualization::detect(false, false, "");
        assert!(v.summary.contains("no /dev/kvm"));
    }
}
