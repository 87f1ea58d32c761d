//! Shared folders of a container with its own VM (`--isolation vm -v
//! HOST:CTR`): the host folders its bind mounts need, as virtio-fs shares
//! the VM gets at restore.
//!
//! Own VMs are clones of a snapshot taken when the agent was ready, and a
//! snapshot cannot carry a share the guest has used (its FUSE session lives
//! in the VMM). So the snapshot VM boots with [`SLOTS`] share slots: each a
//! virtio-fs device tagged [`slot_tag`]`(i)` serving an empty read-only
//! placeholder folder, probed by the guest driver and never mounted. Each
//! clone's VMM gets the same tags with the container's folders
//! (`berth-vm --restore … --fs tag=berth-vm-0,path=/home/me/src`), or the
//! placeholder for the slots it does not use, and its agent mounts the used
//! ones on request (`SharesMount`) at `/host_mnt` + host path, where the
//! container's bind sources point (as in the machine VM). The guest's first
//! mount starts a FUSE session with the clone's own server: nothing of the
//! snapshot VM's server is carried over.
//!
//! Each distinct folder gets a slot, except one inside another share of the
//! same read-only-ness, which that share serves. A folder bound both
//! read-only and read-write is shared read-write; its read-only binds are
//! then read-only through the guest's bind mount only.

use std::path::{Path, PathBuf};

use berth_protocol::{ContainerConfig, MountType, ShareMount};

use crate::shares::{host_path, resolve_host_path, GUEST_PREFIX};

/// Share slots in every own-VM snapshot: the most distinct host folders a
/// container with its own VM can bind.
pub const SLOTS: usize = 4;

/// The virtio-fs tag of share slot `i`.
pub fn slot_tag(i: usize) -> String {
    format!("berth-vm-{i}")
}

/// One host folder shared with an own VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmShare {
    /// Resolved (absolute, no symlinks) host folder.
    pub host: PathBuf,
    /// Refused changes in the VMM's server.
    pub read_only: bool,
}

/// The shares for binds of `(resolved host path, read-only)`: one per
/// distinct folder, read-only when all its binds are; a folder inside
/// another share of the same read-only-ness uses that one.
fn plan(binds: &[(PathBuf, bool)]) -> Vec<VmShare> {
    let mut folders: Vec<VmShare> = Vec::new();
    for (host, ro) in binds {
        match folders.iter_mut().find(|f| f.host == *host) {
            Some(f) => f.read_only &= *ro,
            None => folders.push(VmShare {
                host: host.clone(),
                read_only: *ro,
            }),
        }
    }
    // Ancestors first, so that each folder finds the share above it.
    folders.sort_by(|a, b| a.host.cmp(&b.host));
    let mut out: Vec<VmShare> = Vec::new();
    for f in folders {
        if !out
            .iter()
            .any(|s| f.host.starts_with(&s.host) && s.read_only == f.read_only)
        {
            out.push(f);
        }
    }
    out
}

/// Checks the bind mounts of a container that gets its own VM and points
/// their sources at the guest path of their share (`/host_mnt` + host
/// path). A `-v` folder that does not exist is made, as docker's daemon
/// does; a `--mount` one is refused with docker's error, and so is a
/// source that is not a folder or more folders than [`SLOTS`].
pub fn check_binds(cfg: &mut ContainerConfig) -> Result<(), String> {
    let mut binds = Vec::new();
    for m in cfg.mounts.iter().filter(|m| m.kind == MountType::Bind) {
        let given = Path::new(&m.source);
        let host = resolve_host_path(given);
        if !host.exists() {
            if !m.create_host_path {
                return Err(format!(
                    "Error response from daemon: invalid mount config for type \"bind\": bind source path does not exist: {}",
                    m.source
                ));
            }
            std::fs::create_dir_all(&host).map_err(|e| {
                format!("error while creating mount source path '{}': {e}", m.source)
            })?;
        }
        if !host.is_dir() {
            return Err(format!(
                "bind mount source {} is not a directory: a container with its own VM (--isolation vm) can bind host folders only yet; bind its folder, or use --isolation shared or native",
                m.source
            ));
        }
        let host = std::fs::canonicalize(&host).unwrap_or(host);
        binds.push((host, m.read_only));
    }
    let shares = plan(&binds);
    if shares.len() > SLOTS {
        let list: Vec<String> = shares
            .iter()
            .map(|s| s.host.display().to_string())
            .collect();
        return Err(format!(
            "a container with its own VM (--isolation vm) can bind at most {SLOTS} host folders, {} given ({}); bind a folder that holds them, or use --isolation shared or native",
            shares.len(),
            list.join(", ")
        ));
    }
    let mut binds = binds.into_iter();
    for m in cfg.mounts.iter_mut().filter(|m| m.kind == MountType::Bind) {
        let (host, _) = binds.next().expect("one resolved path per bind");
        m.source = format!("{GUEST_PREFIX}{}", host.display());
    }
    Ok(())
}

/// The shares a container checked by [`check_binds`] needs (its bind
/// sources are guest paths by then: `run -d` hands the config to the VM's
/// keeper process, which finds its shares again here).
pub fn from_config(cfg: &ContainerConfig) -> Vec<VmShare> {
    let binds: Vec<(PathBuf, bool)> = cfg
        .mounts
        .iter()
        .filter(|m| m.kind == MountType::Bind)
        .filter_map(|m| Some((PathBuf::from(host_path(&m.source)?), m.read_only)))
        .collect();
    plan(&binds)
}

/// The `--fs` values for the VMM: one per slot, `shares` in the first ones
/// and `placeholder` (read-only) in the others.
pub fn vmm_fs_args(shares: &[VmShare], placeholder: &Path) -> Vec<String> {
    (0..SLOTS)
        .map(|i| match shares.get(i) {
            Some(s) => format!(
                "tag={},path={}{}",
                slot_tag(i),
                s.host.display(),
                if s.read_only { ",ro" } else { "" }
            ),
            None => format!("tag={},path={},ro", slot_tag(i), placeholder.display()),
        })
        .collect()
}

/// What the agent is asked to mount (`SharesMount`).
pub fn mounts(shares: &[VmShare]) -> Vec<ShareMount> {
    shares
        .iter()
        .enumerate()
        .map(|(i, s)| ShareMount {
            tag: slot_tag(i),
            host_path: s.host.display().to_string(),
            read_only: s.read_only,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_protocol::MountSpec;

    fn bind(source: &str, target: &str, read_only: bool, create: bool) -> MountSpec {
        let mut m = MountSpec::new(MountType::Bind, source, target);
        m.read_only = read_only;
        m.create_host_path = create;
        m
    }

    fn config(mounts: Vec<MountSpec>) -> ContainerConfig {
        ContainerConfig {
            mounts,
            ..Default::default()
        }
    }

    #[test]
    fn each_folder_gets_a_slot_unless_a_share_above_serves_it() {
        let p = |s: &str| PathBuf::from(s);
        let shares = plan(&[
            (p("/a/b"), false),
            (p("/a"), false),
            (p("/c"), true),
            (p("/c"), false),
            (p("/a/ro"), true),
            (p("/ab"), false),
        ]);
        let got: Vec<(&str, bool)> = shares
            .iter()
            .map(|s| (s.host.to_str().unwrap(), s.read_only))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/a", false),
                ("/a/ro", true),
                ("/ab", false),
                ("/c", false)
            ]
        );
    }

    #[test]
    fn binds_point_at_their_share_and_the_keeper_finds_the_same_shares() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir(root.join("src")).unwrap();
        let src = root.join("src");
        let made = root.join("made/by/v");
        let mut cfg = config(vec![
            bind(src.to_str().unwrap(), "/app", false, true),
            bind(&format!("{}/./", src.display()), "/ro", true, true),
            bind(made.to_str().unwrap(), "/new", false, true),
        ]);
        check_binds(&mut cfg).unwrap();
        // -v made the missing folder on the host, as docker's daemon does.
        assert!(made.is_dir());
        assert_eq!(cfg.mounts[0].source, format!("/host_mnt{}", src.display()));
        assert_eq!(cfg.mounts[1].source, format!("/host_mnt{}", src.display()));
        let shares = from_config(&cfg);
        assert_eq!(
            shares,
            vec![
                VmShare {
                    host: made.clone(),
                    read_only: false
                },
                VmShare {
                    host: src.clone(),
                    read_only: false
                },
            ]
        );
        let args = vmm_fs_args(&shares, Path::new("/cache/empty-share"));
        assert_eq!(args.len(), SLOTS);
        assert_eq!(args[0], format!("tag=berth-vm-0,path={}", made.display()));
        assert_eq!(args[2], "tag=berth-vm-2,path=/cache/empty-share,ro");
        let m = mounts(&shares);
        assert_eq!(m[1].tag, "berth-vm-1");
        assert_eq!(m[1].host_path, src.display().to_string());
        // Anything but binds is left alone.
        assert!(from_config(&config(vec![MountSpec::new(MountType::Tmpfs, "", "/t")])).is_empty());
    }

    #[test]
    fn bad_binds_get_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        // --mount refuses a missing source, in docker's words.
        let missing = root.join("missing");
        let mut cfg = config(vec![bind(missing.to_str().unwrap(), "/x", false, false)]);
        let e = check_binds(&mut cfg).unwrap_err();
        assert_eq!(
            e,
            format!("Error response from daemon: invalid mount config for type \"bind\": bind source path does not exist: {}", missing.display())
        );
        assert!(!missing.exists());
        // A file is not a folder the VM can share.
        std::fs::write(root.join("f"), b"x").unwrap();
        let mut cfg = config(vec![bind(
            root.join("f").to_str().unwrap(),
            "/f",
            false,
            true,
        )]);
        let e = check_binds(&mut cfg).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        // More folders than slots.
        let mut mounts = Vec::new();
        for i in 0..=SLOTS {
            let d = root.join(format!("d{i}"));
            std::fs::create_dir(&d).unwrap();
            mounts.push(bind(d.to_str().unwrap(), &format!("/m{i}"), false, true));
        }
        let mut cfg = config(mounts);
        let e = check_binds(&mut cfg).unwrap_err();
        assert!(
            e.contains(&format!(
                "at most {SLOTS} host folders, {} given",
                SLOTS + 1
            )),
            "{e}"
        );
    }
}
