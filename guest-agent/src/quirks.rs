//! Workarounds for hosts whose guest kernel is emulated (kvm_pvm), applied
//! only where such a host is detected, and counted where users see them.
//!
//! Two failures have been seen only in guests on kvm_pvm hosts, under load:
//! a container shim dying right after creating its container, and
//! libcontainer's saved state coming back without the init pid. On any
//! other host the same symptoms are real bugs (a crash, a state-save bug),
//! so there the engine reports them instead of working around them.
//!
//! Detection: the VMM adds `kvm_emul_safe` to the guest kernel's command
//! line on kvm_pvm hosts only (vmm `host_quirks`), so a guest agent reads
//! its /proc/cmdline. A native agent runs on the host's own kernel and needs
//! none. `BERTH_AGENT_QUIRKS=emulated-kernel|none` overrides the detection
//! (tests simulate both kinds of host with it).

use std::collections::BTreeMap;
use std::path::Path;

/// The environment variable that overrides detection.
pub const OVERRIDE_ENV: &str = "BERTH_AGENT_QUIRKS";

/// The one quirk so far.
pub const EMULATED_KERNEL: &str = "emulated-kernel";

/// Workaround names, as counted.
pub const SHIM_RESTART: &str = "shim restarted after dying without reporting";
pub const PID_FROM_PID_FILE: &str = "init pid read from the pid file";

/// What this agent's host needs worked around.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quirks {
    /// The guest kernel is emulated (kvm_pvm host).
    pub emulated_kernel: bool,
}

impl Quirks {
    /// From the override, else from the kernel command line.
    pub fn detect() -> Quirks {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        Quirks::from_sources(std::env::var(OVERRIDE_ENV).ok().as_deref(), &cmdline)
    }

    fn from_sources(over: Option<&str>, cmdline: &str) -> Quirks {
        match over {
            Some(v) => Quirks {
                emulated_kernel: v.split(',').any(|q| q.trim() == EMULATED_KERNEL),
            },
            None => Quirks {
                emulated_kernel: cmdline.split_whitespace().any(|w| w == "kvm_emul_safe"),
            },
        }
    }

    /// Active quirk names.
    pub fn names(&self) -> Vec<String> {
        if self.emulated_kernel {
            vec![EMULATED_KERNEL.to_string()]
        } else {
            Vec::new()
        }
    }
}

/// The file under the engine root that counts workarounds (one line each).
fn log_path(root: &Path) -> std::path::PathBuf {
    root.join("workarounds.log")
}

/// Records one use of workaround `what` for container `id` (appended: the
/// shim and the agent are different processes).
pub fn record(root: &Path, what: &str, id: &str) {
    use std::io::Write;
    crate::events::workaround(root, what, id);
    let line = format!(
        "{} {id} {what}\n",
        epoch_secs().unwrap_or_else(|| "-".into())
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(root))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Seconds since the epoch, as text.
fn epoch_secs() -> Option<String> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs().to_string())
}

/// How often each workaround was used under this engine root.
pub fn counts(root: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for what in [SHIM_RESTART, PID_FROM_PID_FILE] {
        out.insert(what.to_string(), 0);
    }
    let text = std::fs::read_to_string(log_path(root)).unwrap_or_default();
    for line in text.lines() {
        // "<secs> <id> <what>"
        if let Some(what) = line.splitn(3, ' ').nth(2) {
            *out.entry(what.to_string()).or_insert(0) += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detected_from_the_cmdline_or_the_override() {
        let pvm = "console=ttyS0 kvm_emul_safe noxsave";
        assert!(Quirks::from_sources(None, pvm).emulated_kernel);
        assert!(!Quirks::from_sources(None, "console=ttyS0 quiet").emulated_kernel);
        assert!(!Quirks::from_sources(Some("none"), pvm).emulated_kernel);
        assert!(Quirks::from_sources(Some("emulated-kernel"), "").emulated_kernel);
        assert_eq!(Quirks::default().names(), Vec::<String>::new());
    }

    #[test]
    fn uses_are_counted() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(counts(d.path())[SHIM_RESTART], 0);
        record(d.path(), SHIM_RESTART, "abc");
        record(d.path(), SHIM_RESTART, "def");
        record(d.path(), PID_FROM_PID_FILE, "abc");
        let c = counts(d.path());
        assert_eq!((c[SHIM_RESTART], c[PID_FROM_PID_FILE]), (2, 1));
    }
}
