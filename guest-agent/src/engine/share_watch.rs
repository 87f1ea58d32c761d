//! The running containers' bind mounts under the machine's shared folders,
//! registered by their shims so that the agent can ask the VMM to watch
//! just those folders for live file events (`share_events.rs` follows the
//! directory and sends the VMM the set).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where virtio-fs shares appear in the guest: a host directory `/x/y` is
/// mounted at `/host_mnt/x/y` (Docker Desktop's layout), so bind mounts
/// of host paths translate by prefixing.
pub const HOST_MNT: &str = "/host_mnt";

/// The directory where shims register their containers' bind mounts.
pub fn interest_dir(engine_root: &Path) -> PathBuf {
    engine_root.join("share-watch")
}

/// One running container's bind-mount sources under the shares.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Interest {
    /// The guest boot it was written in (a file left by an earlier boot
    /// means nothing).
    boot: String,
    /// Guest paths under `/host_mnt`.
    sources: Vec<String>,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Registers the bind-mount `sources` of container `id` that lie under
/// the shares (`/host_mnt/…`; others, e.g. on a native host, are not
/// shared folders and are left out). Written before the container's
/// process starts, so its watches are asked for before it can watch.
pub fn register<'a>(engine_root: &Path, id: &str, sources: impl IntoIterator<Item = &'a str>) {
    let prefix = format!("{}/", HOST_MNT);
    let sources: Vec<String> = sources
        .into_iter()
        .filter(|s| s.starts_with(&prefix) || *s == HOST_MNT)
        .map(str::to_string)
        .collect();
    if sources.is_empty() {
        return;
    }
    let dir = interest_dir(engine_root);
    let body = Interest {
        boot: boot_id(),
        sources,
    };
    let Ok(json) = serde_json::to_vec(&body) else {
        return;
    };
    let tmp = dir.join(format!(".{id}.tmp"));
    let _ = std::fs::create_dir_all(&dir);
    if std::fs::write(&tmp, json).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join(id));
    }
}

/// Removes container `id`'s registration (it has ended).
pub fn unregister(engine_root: &Path, id: &str) {
    let _ = std::fs::remove_file(interest_dir(engine_root).join(id));
}

/// The bind-mount sources registered in `dir` this boot (files of an
/// earlier boot are removed).
pub fn registered(dir: &Path) -> Vec<PathBuf> {
    let boot = boot_id();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        if e.file_name().as_bytes().starts_with(b".") {
            continue;
        }
        let Ok(body) = std::fs::read(e.path()) else {
            continue;
        };
        match serde_json::from_slice::<Interest>(&body) {
            Ok(i) if i.boot == boot => out.extend(i.sources.into_iter().map(PathBuf::from)),
            _ => {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_kept_per_container_and_boot() {
        let root = tempfile::tempdir().unwrap();
        let dir = interest_dir(root.path());
        register(root.path(), "c1", ["/host_mnt/tmp/a", "/srv/native"]);
        register(root.path(), "c2", ["/srv/only-native"]);
        assert!(!dir.join("c2").exists(), "nothing under the shares");
        assert_eq!(registered(&dir), [PathBuf::from("/host_mnt/tmp/a")]);
        // A file from an earlier boot is dropped.
        std::fs::write(dir.join("old"), r#"{"boot":"x","sources":["/host_mnt/y"]}"#).unwrap();
        std::fs::write(dir.join("junk"), b"\xff").unwrap();
        assert_eq!(registered(&dir), [PathBuf::from("/host_mnt/tmp/a")]);
        assert!(!dir.join("old").exists() && !dir.join("junk").exists());
        unregister(root.path(), "c1");
        assert!(registered(&dir).is_empty());
    }
}
