//! Every `BERTH_*` environment variable the host library reads, read here
//! and nowhere else. `docs/environment.md` lists them with the other
//! crates' variables; `tests/tests/docs_env.rs` checks the two agree.

use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;

/// berth's state directory (default: `$XDG_DATA_HOME/berth` or the
/// platform's data directory).
pub const HOME: &str = "BERTH_HOME";
/// The `berth-agent` binary (default: cargo's static build, then next to
/// `berth`).
pub const AGENT: &str = "BERTH_AGENT";
/// The `berth-vmm` binary (default: next to `berth`).
pub const VMM: &str = "BERTH_VMM";
/// The guest kernel (default: the newest one in the kernel cache).
pub const KERNEL: &str = "BERTH_KERNEL";
/// The build cache holding kernels (default: `~/.cache/berth`).
pub const CACHE_DIR: &str = "BERTH_CACHE_DIR";
/// vCPUs of the machine VM.
pub const MACHINE_CPUS: &str = "BERTH_MACHINE_CPUS";
/// Memory of the machine VM, in MiB.
pub const MACHINE_MEM_MIB: &str = "BERTH_MACHINE_MEM_MIB";
/// `none`: the machine VM boots without a network card.
pub const MACHINE_NET: &str = "BERTH_MACHINE_NET";
/// `0`: VMs boot without the virtio-balloon device (free page reporting,
/// which gives the memory a guest frees back to the host).
pub const BALLOON: &str = "BERTH_BALLOON";
/// The machine VM's shared folders (see `shares.rs`).
pub const MACHINE_SHARES: &str = "BERTH_MACHINE_SHARES";
/// Seconds without a command after which the machine VM suspends itself
/// (`machine suspend`); unset or 0: never.
pub const MACHINE_IDLE_SUSPEND: &str = "BERTH_MACHINE_IDLE_SUSPEND";
/// Seconds to wait for a booting guest's agent (default 300).
pub const BOOT_TIMEOUT: &str = "BERTH_BOOT_TIMEOUT";
/// Seconds to wait for a restored clone's agent (default 180).
pub const RESTORE_TIMEOUT: &str = "BERTH_RESTORE_TIMEOUT";
/// `0`: own-VM containers cold-boot instead of cloning a snapshot.
pub const VM_SNAPSHOTS: &str = "BERTH_VM_SNAPSHOTS";
/// Pre-restored own-VM clones kept per vCPU count (default 0, at most 16).
pub const VM_POOL: &str = "BERTH_VM_POOL";
/// Seconds an unused pooled clone is kept (default 600).
pub const VM_POOL_IDLE: &str = "BERTH_VM_POOL_IDLE";
/// `0`: images are not turned into ext4 image disks for own-VM clones.
pub const IMAGE_DISKS: &str = "BERTH_IMAGE_DISKS";
/// Registries (`host[:port]`, comma-separated) spoken to over plain HTTP.
pub const INSECURE_REGISTRIES: &str = "BERTH_INSECURE_REGISTRIES";
/// A PEM file of extra CA certificates for registries.
pub const REGISTRY_CA: &str = "BERTH_REGISTRY_CA";
/// Bytes per PATCH in chunked blob uploads.
pub const REGISTRY_CHUNK_SIZE: &str = "BERTH_REGISTRY_CHUNK_SIZE";

/// The variable's value, if set (empty counts as set).
pub fn os(name: &str) -> Option<OsString> {
    let v = std::env::var_os(name);
    if let Some(v) = &v {
        log::debug!("{name}={v:?}");
    }
    v
}

/// The variable's value as a path, if set.
pub fn path(name: &str) -> Option<PathBuf> {
    os(name).map(PathBuf::from)
}

/// The variable's value as UTF-8 text, if set and valid.
pub fn text(name: &str) -> Option<String> {
    let v = std::env::var(name).ok();
    if let Some(v) = &v {
        log::debug!("{name}={v:?}");
    }
    v
}

/// The variable parsed as `T`; `None` when unset or not a `T`.
pub fn parse<T: FromStr>(name: &str) -> Option<T> {
    text(name).and_then(|v| v.trim().parse().ok())
}

/// Whether the variable is set to exactly `value`.
pub fn is(name: &str, value: &str) -> bool {
    text(name).as_deref() == Some(value)
}

/// Every variable above, for the docs check.
pub const ALL: &[&str] = &[
    HOME,
    AGENT,
    VMM,
    KERNEL,
    CACHE_DIR,
    MACHINE_CPUS,
    MACHINE_MEM_MIB,
    MACHINE_NET,
    BALLOON,
    MACHINE_SHARES,
    MACHINE_IDLE_SUSPEND,
    BOOT_TIMEOUT,
    RESTORE_TIMEOUT,
    VM_SNAPSHOTS,
    VM_POOL,
    VM_POOL_IDLE,
    IMAGE_DISKS,
    INSECURE_REGISTRIES,
    REGISTRY_CA,
    REGISTRY_CHUNK_SIZE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_berth_variables_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for n in ALL {
            assert!(n.starts_with("BERTH_"), "{n}");
            assert!(seen.insert(*n), "{n} twice");
        }
    }

    #[test]
    fn parse_and_is() {
        // A name nothing sets (built at run time, so the docs check does
        // not take it for a variable).
        let n = &format!("BERTH_{}", "UNSET_IN_UNIT_TESTS");
        assert_eq!(parse::<u32>(n), None);
        assert!(!is(n, "0"));
    }
}
