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
//! then read-only through the guest's bind mount only, and so is a
//! read-only folder share holding a file bound read-write.
//!
//! Named volumes ([`crate::vm_volumes`]) are host folders too: their
//! mounts reach here with the local driver's bind options naming the
//! folder's guest path ([`bound_device`]) and take slots as binds do.
//!
//! A single file (`-v /home/me/.gitconfig:/root/.gitconfig`) is not shared
//! through its folder, which would show the guest its siblings. Files of
//! one folder that no folder share serves make a *file share*: the VMM
//! serves a private staging folder, `<VM dir>/files/<slot>`, holding an
//! empty file per bound file, and the VMM process runs in a mount
//! namespace of its own in which each bound file is bind-mounted onto its
//! empty one ([`crate::platform::private_binds`]). The host never sees
//! those mounts and they end with the VMM, killed or not; the staging
//! folder goes with the VM directory. The guest mounts the share at
//! `/host_mnt` + the file's folder, so the bind source keeps its usual
//! guest path. That needs a Linux host and root (a mount namespace);
//! elsewhere a file source is refused with the reason.
//!
//! More shares than [`SLOTS`] (where a mount namespace is possible, as for
//! files) make one *packed share* in slot 0 instead: the VMM serves a
//! staging folder, `<VM dir>/files/all`, that mirrors the host's paths, with
//! each folder (or file) bind-mounted at its own path in the VMM's mount
//! namespace, read-only ones remounted read-only there (so the host kernel
//! refuses their writes, whatever the guest asks). The guest mounts it at
//! `/host_mnt` itself, so every bind source keeps its guest path. At most
//! [`MAX_PACKED`] shares.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use berth_protocol::{ContainerConfig, MountSpec, MountType, ShareMount};

use crate::shares::{host_path, resolve_host_path, GUEST_PREFIX};

/// Share slots in every own-VM snapshot: the most distinct host folders a
/// container with its own VM can bind.
pub const SLOTS: usize = 4;

/// The most shares one packed share holds (see the module docs).
pub const MAX_PACKED: usize = 64;

/// The virtio-fs tag of share slot `i`.
pub fn slot_tag(i: usize) -> String {
    format!("berth-vm-{i}")
}

/// One host folder shared with an own VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmShare {
    /// Resolved (absolute, no symlinks) host folder: where the guest
    /// mounts it (`/host_mnt` + this path).
    pub host: PathBuf,
    /// Refused changes in the VMM's server.
    pub read_only: bool,
    /// A file share: only these files of `host` (names), served from a
    /// staging folder ([`stage_files`]). Empty: the whole folder.
    pub files: Vec<OsString>,
    /// A packed share (`host` is `/`): these shares, each bound at its
    /// own path in a staging folder ([`stage_files`]). Empty otherwise.
    pub packed: Vec<VmShare>,
}

impl VmShare {
    fn folder(host: PathBuf, read_only: bool) -> VmShare {
        VmShare {
            host,
            read_only,
            files: Vec::new(),
            packed: Vec::new(),
        }
    }
}

/// `shares` as they fit the slots: as they are, or, when there are more
/// than [`SLOTS`], one packed share holding them all (read-only when all
/// are).
fn fit(shares: Vec<VmShare>) -> Vec<VmShare> {
    if shares.len() <= SLOTS {
        return shares;
    }
    vec![VmShare {
        host: PathBuf::from("/"),
        read_only: shares.iter().all(|s| s.read_only),
        files: Vec::new(),
        packed: shares,
    }]
}

/// One bind source to share: resolved host path, read-only, a file.
#[derive(Clone, Debug)]
struct Source {
    host: PathBuf,
    read_only: bool,
    file: bool,
}

/// The shares for `sources`: one per distinct folder, read-only when all
/// its binds are; a folder inside another share of the same
/// read-only-ness uses that one. A file is served by a folder share above
/// it (made read-write when the file is bound read-write and every such
/// share is read-only); the others make one file share per folder.
fn plan(sources: &[Source]) -> Vec<VmShare> {
    let mut folders: Vec<VmShare> = Vec::new();
    for b in sources.iter().filter(|b| !b.file) {
        match folders.iter_mut().find(|f| f.host == b.host) {
            Some(f) => f.read_only &= b.read_only,
            None => folders.push(VmShare::folder(b.host.clone(), b.read_only)),
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
    let mut file_shares: Vec<VmShare> = Vec::new();
    for b in sources.iter().filter(|b| b.file) {
        let above: Vec<usize> = (0..out.len())
            .filter(|&i| b.host.starts_with(&out[i].host))
            .collect();
        if above.iter().any(|&i| b.read_only || !out[i].read_only) {
            continue;
        }
        if let Some(&i) = above.iter().max_by_key(|&&i| out[i].host.as_os_str().len()) {
            out[i].read_only = false;
            continue;
        }
        let (Some(parent), Some(name)) = (b.host.parent(), b.host.file_name()) else {
            continue;
        };
        match file_shares.iter_mut().find(|s| s.host == parent) {
            Some(s) => {
                s.read_only &= b.read_only;
                if !s.files.iter().any(|f| f == name) {
                    s.files.push(name.to_os_string());
                }
            }
            None => file_shares.push(VmShare {
                files: vec![name.to_os_string()],
                ..VmShare::folder(parent.to_path_buf(), b.read_only)
            }),
        }
    }
    out.extend(file_shares);
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out
}

/// The local driver's options that make a named volume's mount in the
/// guest bind the share of its host folder `host` (see
/// [`crate::vm_volumes`]).
pub fn volume_bind_options(host: &Path) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("type".to_string(), "none".to_string()),
        ("o".to_string(), "bind".to_string()),
        (
            "device".to_string(),
            format!("{GUEST_PREFIX}{}", host.display()),
        ),
    ])
}

/// The guest path a named volume's mount binds, when
/// [`volume_bind_options`] made its options.
pub fn bound_device(m: &MountSpec) -> Option<&str> {
    if m.kind != MountType::Volume || m.source.is_empty() {
        return None;
    }
    let o = &m.volume_options;
    if o.len() != 3
        || o.get("type").map(String::as_str) != Some("none")
        || o.get("o").map(String::as_str) != Some("bind")
    {
        return None;
    }
    o.get("device")
        .map(String::as_str)
        .filter(|d| host_path(d).is_some())
}

/// Whether a single file can be bound into an own VM here: the VMM then
/// needs a mount namespace of its own (Linux, root).
fn file_binds_possible() -> bool {
    crate::platform::can_bind_privately()
}

/// Checks the bind mounts of a container that gets its own VM and points
/// their sources at the guest path of their share (`/host_mnt` + host
/// path). A `-v` folder that does not exist is made, as docker's daemon
/// does; a `--mount` one is refused with docker's error, and so is a
/// source that is neither a folder nor a regular file, or a file or more
/// shares than [`SLOTS`] where [`file_binds_possible`] says no, or more
/// than [`MAX_PACKED`]. Named volumes ([`bound_device`]) count as folders.
pub fn check_binds(cfg: &mut ContainerConfig) -> Result<(), String> {
    check_binds_here(cfg, file_binds_possible())
}

/// [`check_binds`], with whether a mount namespace is possible given.
fn check_binds_here(cfg: &mut ContainerConfig, can_bind_privately: bool) -> Result<(), String> {
    let mut sources = Vec::new();
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
        let file = host.is_file();
        if !host.is_dir() && !file {
            return Err(format!(
                "bind mount source {} is neither a folder nor a regular file: a container with its own VM (--isolation vm) cannot be given it; use --isolation shared or native",
                m.source
            ));
        }
        if file && !can_bind_privately {
            return Err(format!(
                "bind mount source {} is a file: a container with its own VM (--isolation vm) gets a single file only where berth runs as root on Linux (the file is bind-mounted alone into a private folder the VM shares, so that its siblings stay hidden); bind its folder, or use --isolation shared or native",
                m.source
            ));
        }
        let host = std::fs::canonicalize(&host).unwrap_or(host);
        sources.push(Source {
            host,
            read_only: m.read_only,
            file,
        });
    }
    let resolved = sources.len();
    sources.extend(volume_sources(cfg));
    let shares = plan(&sources);
    let most = if can_bind_privately {
        MAX_PACKED
    } else {
        SLOTS
    };
    if shares.len() > most {
        let list: Vec<String> = shares
            .iter()
            .map(|s| s.host.display().to_string())
            .collect();
        let why = if can_bind_privately {
            String::new()
        } else {
            format!(
                " here (more than {SLOTS} need a mount namespace for the VMM: berth as root on Linux)"
            )
        };
        return Err(format!(
            "a container with its own VM (--isolation vm) can bind at most {most} host folders{why} (named volumes and the folders of bound files count too), {} given ({}); bind a folder that holds them, or use --isolation shared or native",
            shares.len(),
            list.join(", ")
        ));
    }
    let mut binds = sources.into_iter().take(resolved);
    for m in cfg.mounts.iter_mut().filter(|m| m.kind == MountType::Bind) {
        let b = binds.next().expect("one resolved path per bind");
        m.source = format!("{GUEST_PREFIX}{}", b.host.display());
    }
    Ok(())
}

/// The host folders of `cfg`'s named volumes, as sources to share.
fn volume_sources(cfg: &ContainerConfig) -> Vec<Source> {
    cfg.mounts
        .iter()
        .filter_map(|m| {
            Some(Source {
                host: PathBuf::from(host_path(bound_device(m)?)?),
                read_only: m.read_only,
                file: false,
            })
        })
        .collect()
}

/// The shares a container checked by [`check_binds`] needs (its bind
/// sources are guest paths by then: `run -d` hands the config to the VM's
/// keeper process, which finds its shares again here).
pub fn from_config(cfg: &ContainerConfig) -> Vec<VmShare> {
    let mut sources: Vec<Source> = cfg
        .mounts
        .iter()
        .filter(|m| m.kind == MountType::Bind)
        .filter_map(|m| {
            let host = PathBuf::from(host_path(&m.source)?);
            Some(Source {
                file: host.is_file(),
                host,
                read_only: m.read_only,
            })
        })
        .collect();
    sources.extend(volume_sources(cfg));
    fit(plan(&sources))
}

/// The host folder the VMM serves for share `i`: its folder, or for a
/// file share its staging folder under `staging`.
fn served_path(i: usize, s: &VmShare, staging: &Path) -> PathBuf {
    if !s.packed.is_empty() {
        staging.join("all")
    } else if s.files.is_empty() {
        s.host.clone()
    } else {
        staging.join(i.to_string())
    }
}

/// The binds the VMM's own mount namespace makes: host files or folders
/// onto their empty stand-ins in a staging folder.
pub type FileBinds = Vec<crate::platform::PrivateBind>;

/// Makes the empty file a bound file is mounted onto (kept as it is if
/// it exists).
fn stand_in(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
}

/// Stages a packed share in `dir`: a folder at each held share's host
/// path (parents first), or for a file share an empty file per bound
/// file, and the binds onto them.
fn stage_packed(held: &[VmShare], dir: &Path, binds: &mut FileBinds) -> std::io::Result<()> {
    use crate::platform::PrivateBind;
    let mut held: Vec<&VmShare> = held.iter().collect();
    held.sort_by(|a, b| a.host.cmp(&b.host));
    for s in held {
        let rel = s.host.strip_prefix("/").unwrap_or(&s.host);
        let point = dir.join(rel);
        std::fs::create_dir_all(&point)?;
        if s.files.is_empty() {
            binds.push(PrivateBind {
                source: s.host.clone(),
                target: point,
                read_only: s.read_only,
            });
            continue;
        }
        for f in &s.files {
            stand_in(&point.join(f))?;
            binds.push(PrivateBind {
                source: s.host.join(f),
                target: point.join(f),
                read_only: s.read_only,
            });
        }
    }
    Ok(())
}

/// Makes the staging folder of each file share under `staging` (the VM
/// directory's `files/`): an empty file per bound file, and the folders
/// where the guest mounts other shares inside it. Returns the (host file,
/// empty file) pairs the VMM's mount namespace binds
/// ([`crate::platform::private_binds`]).
pub fn stage_files(shares: &[VmShare], staging: &Path) -> std::io::Result<FileBinds> {
    let mut binds = Vec::new();
    for (i, s) in shares.iter().enumerate() {
        if !s.packed.is_empty() {
            stage_packed(&s.packed, &served_path(i, s, staging), &mut binds)?;
            continue;
        }
        if s.files.is_empty() {
            continue;
        }
        let dir = served_path(i, s, staging);
        std::fs::create_dir_all(&dir)?;
        for f in &s.files {
            let point = dir.join(f);
            stand_in(&point)?;
            binds.push(crate::platform::PrivateBind {
                source: s.host.join(f),
                target: point,
                read_only: false,
            });
        }
        for other in shares {
            if let Ok(rel) = other.host.strip_prefix(&s.host) {
                if !rel.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir.join(rel))?;
                }
            }
        }
    }
    Ok(binds)
}

/// The `--fs` values for the VMM: one per slot, `shares` in the first ones
/// (a file share's staging folder under `staging`) and `placeholder`
/// (read-only) in the others.
pub fn vmm_fs_args(shares: &[VmShare], placeholder: &Path, staging: &Path) -> Vec<String> {
    (0..SLOTS)
        .map(|i| match shares.get(i) {
            Some(s) => format!(
                "tag={},path={}{}",
                slot_tag(i),
                served_path(i, s, staging).display(),
                if s.read_only { ",ro" } else { "" }
            ),
            None => format!("tag={},path={},ro", slot_tag(i), placeholder.display()),
        })
        .collect()
}

/// What the agent is asked to mount (`SharesMount`), parents first.
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

    fn dir(host: &str, read_only: bool) -> Source {
        Source {
            host: PathBuf::from(host),
            read_only,
            file: false,
        }
    }

    fn file(host: &str, read_only: bool) -> Source {
        Source {
            file: true,
            ..dir(host, read_only)
        }
    }

    fn config(mounts: Vec<MountSpec>) -> ContainerConfig {
        ContainerConfig {
            mounts,
            ..Default::default()
        }
    }

    #[test]
    fn each_folder_gets_a_slot_unless_a_share_above_serves_it() {
        let shares = plan(&[
            dir("/a/b", false),
            dir("/a", false),
            dir("/c", true),
            dir("/c", false),
            dir("/a/ro", true),
            dir("/ab", false),
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
                VmShare::folder(made.clone(), false),
                VmShare::folder(src.clone(), false),
            ]
        );
        let args = vmm_fs_args(
            &shares,
            Path::new("/cache/empty-share"),
            Path::new("/vm/files"),
        );
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
        // A file: shared alone where the VMM can have a mount namespace.
        std::fs::write(root.join("f"), b"x").unwrap();
        let mut cfg = config(vec![bind(
            root.join("f").to_str().unwrap(),
            "/f",
            false,
            true,
        )]);
        match check_binds(&mut cfg) {
            Ok(()) => assert!(file_binds_possible()),
            Err(e) => {
                assert!(!file_binds_possible());
                assert!(
                    e.contains("is a file") && e.contains("root on Linux"),
                    "{e}"
                );
            }
        }
        // Neither a folder nor a file.
        #[cfg(unix)]
        {
            let sock = root.join("sock");
            let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
            let mut cfg = config(vec![bind(sock.to_str().unwrap(), "/s", false, true)]);
            let e = check_binds(&mut cfg).unwrap_err();
            assert!(e.contains("neither a folder nor a regular file"), "{e}");
        }
        // More folders than slots, where the VMM cannot get a mount
        // namespace to pack them in.
        let mut mounts = Vec::new();
        for i in 0..=SLOTS {
            let d = root.join(format!("d{i}"));
            std::fs::create_dir(&d).unwrap();
            mounts.push(bind(d.to_str().unwrap(), &format!("/m{i}"), false, true));
        }
        let mut cfg = config(mounts);
        let e = check_binds_here(&mut cfg, false).unwrap_err();
        assert!(
            e.contains(&format!(
                "at most {SLOTS} host folders here (more than {SLOTS} need a mount namespace for the VMM: berth as root on Linux) (named volumes and the folders of bound files count too), {} given",
                SLOTS + 1
            )),
            "{e}"
        );
    }

    #[test]
    fn files_are_shared_alone_unless_a_folder_share_serves_them() {
        let got = |shares: Vec<VmShare>| -> Vec<(String, bool, Vec<String>)> {
            shares
                .into_iter()
                .map(|s| {
                    (
                        s.host.display().to_string(),
                        s.read_only,
                        s.files
                            .iter()
                            .map(|f| f.to_string_lossy().into_owned())
                            .collect(),
                    )
                })
                .collect()
        };
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Two files of one folder: one file share; a folder share serves
        // the file inside it; a read-only file under a read-write share
        // too.
        assert_eq!(
            got(plan(&[
                file("/home/me/.gitconfig", true),
                file("/home/me/.netrc", false),
                dir("/src", false),
                file("/src/app/config.toml", true),
            ])),
            vec![
                ("/home/me".into(), false, v(&[".gitconfig", ".netrc"])),
                ("/src".into(), false, v(&[])),
            ]
        );
        // A file bound read-write under a read-only share: that share
        // becomes read-write (its binds stay read-only in the guest).
        assert_eq!(
            got(plan(&[dir("/src", true), file("/src/a/log", false)])),
            vec![("/src".into(), false, v(&[]))]
        );
        // A folder share below a file share's folder is mounted inside it.
        assert_eq!(
            got(plan(&[file("/p/f", false), dir("/p/q", false)])),
            vec![
                ("/p".into(), false, v(&["f"])),
                ("/p/q".into(), false, v(&[]))
            ]
        );
    }

    #[test]
    fn a_file_share_serves_a_staging_folder_of_empty_files() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = tmp.path().join("files");
        let shares = vec![
            VmShare {
                files: vec!["f".into(), "g".into()],
                ..VmShare::folder(PathBuf::from("/p"), true)
            },
            VmShare::folder(PathBuf::from("/p/q/r"), false),
        ];
        let binds = stage_files(&shares, &staging).unwrap();
        let pairs: Vec<(PathBuf, PathBuf)> =
            binds.into_iter().map(|b| (b.source, b.target)).collect();
        assert_eq!(
            pairs,
            vec![
                (PathBuf::from("/p/f"), staging.join("0/f")),
                (PathBuf::from("/p/g"), staging.join("0/g")),
            ]
        );
        // Empty mount points only: nothing of the host's folder.
        let mut names: Vec<String> = std::fs::read_dir(staging.join("0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["f", "g", "q"]);
        assert_eq!(std::fs::metadata(staging.join("0/f")).unwrap().len(), 0);
        assert!(staging.join("0/q/r").is_dir());
        let args = vmm_fs_args(&shares, Path::new("/e"), &staging);
        assert_eq!(
            args[0],
            format!("tag=berth-vm-0,path={},ro", staging.join("0").display())
        );
        assert_eq!(args[1], "tag=berth-vm-1,path=/p/q/r");
        // The guest mounts the file share at its folder's guest path.
        assert_eq!(mounts(&shares)[0].host_path, "/p");
    }

    #[test]
    fn named_volumes_take_slots_like_binds() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let mut vols = Vec::new();
        for i in 0..SLOTS {
            let d = root.join(format!("v{i}/_data"));
            std::fs::create_dir_all(&d).unwrap();
            let mut m = MountSpec::new(MountType::Volume, &format!("v{i}"), &format!("/v{i}"));
            m.volume_options = volume_bind_options(&d);
            m.read_only = i == 0;
            vols.push(m);
        }
        let mut cfg = config(vols.clone());
        check_binds(&mut cfg).unwrap();
        let shares = from_config(&cfg);
        assert_eq!(shares.len(), SLOTS);
        assert_eq!(shares[0].host, root.join("v0/_data"));
        assert!(shares[0].read_only && !shares[1].read_only);
        // One more folder is one too many where the VMM cannot have a
        // mount namespace; elsewhere they are packed in one share.
        let extra = root.join("src");
        std::fs::create_dir(&extra).unwrap();
        vols.push(bind(extra.to_str().unwrap(), "/src", false, true));
        let e = check_binds_here(&mut config(vols.clone()), false).unwrap_err();
        assert!(
            e.contains(&format!("at most {SLOTS} host folders here")),
            "{e}"
        );
        assert!(e.contains(&format!("{} given", SLOTS + 1)), "{e}");
        let mut cfg = config(vols);
        check_binds_here(&mut cfg, true).unwrap();
        let shares = from_config(&cfg);
        assert_eq!(shares.len(), 1);
        assert_eq!(shares[0].packed.len(), SLOTS + 1);
        // Options a user gave are not a share: only the three berth sets.
        let mut m = MountSpec::new(MountType::Volume, "x", "/x");
        m.volume_options = volume_bind_options(Path::new("/etc"));
        assert_eq!(bound_device(&m), Some("/host_mnt/etc"));
        m.volume_options.insert("size".into(), "1".into());
        assert_eq!(bound_device(&m), None);
        let mut m = MountSpec::new(MountType::Volume, "x", "/x");
        m.volume_options = volume_bind_options(Path::new("/etc"));
        m.volume_options.insert("device".into(), "/etc".into());
        assert_eq!(bound_device(&m), None);
    }

    #[test]
    fn more_folders_than_slots_are_packed_in_one_share_at_their_own_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = tmp.path().join("files");
        let mut sources: Vec<Source> = (0..SLOTS)
            .map(|i| dir(&format!("/d{i}"), i % 2 == 0))
            .collect();
        sources.push(dir("/d0/inner", false));
        sources.push(file("/etc/one.conf", true));
        sources.push(file("/etc/two.conf", true));
        let shares = fit(plan(&sources));
        assert_eq!(shares.len(), 1, "{shares:?}");
        let packed = &shares[0];
        assert_eq!(packed.host, Path::new("/"));
        assert!(!packed.read_only);
        assert_eq!(packed.packed.len(), SLOTS + 2);
        let binds = stage_files(&shares, &staging).unwrap();
        let all = staging.join("all");
        let got: Vec<(String, String, bool)> = binds
            .iter()
            .map(|b| {
                (
                    b.source.display().to_string(),
                    b.target.strip_prefix(&all).unwrap().display().to_string(),
                    b.read_only,
                )
            })
            .collect();
        // Parents first; read-only folders stay read-only in the VMM's
        // mount namespace; files are bound alone.
        assert_eq!(
            got,
            vec![
                ("/d0".into(), "d0".into(), true),
                ("/d0/inner".into(), "d0/inner".into(), false),
                ("/d1".into(), "d1".into(), false),
                ("/d2".into(), "d2".into(), true),
                ("/d3".into(), "d3".into(), false),
                ("/etc/one.conf".into(), "etc/one.conf".into(), true),
                ("/etc/two.conf".into(), "etc/two.conf".into(), true),
            ]
        );
        assert!(all.join("d0/inner").is_dir());
        assert_eq!(
            std::fs::metadata(all.join("etc/one.conf")).unwrap().len(),
            0
        );
        // Nothing but the stand-ins in the staging folder.
        assert_eq!(std::fs::read_dir(all.join("etc")).unwrap().count(), 2);
        // Slot 0 serves the staging folder; the guest mounts it at
        // /host_mnt itself, so each bind source keeps its guest path.
        let args = vmm_fs_args(&shares, Path::new("/e"), &staging);
        assert_eq!(args[0], format!("tag=berth-vm-0,path={}", all.display()));
        assert_eq!(args[1], "tag=berth-vm-1,path=/e,ro");
        let m = mounts(&shares);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].host_path, "/");
        // All read-only: the packed share is read-only too.
        let ro: Vec<Source> = (0..=SLOTS).map(|i| dir(&format!("/r{i}"), true)).collect();
        assert!(fit(plan(&ro))[0].read_only);
        // Up to SLOTS, nothing is packed.
        assert!(fit(plan(&sources[..SLOTS]))
            .iter()
            .all(|s| s.packed.is_empty()));
        // Too many for one packed share.
        let tmp2 = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp2.path()).unwrap();
        let mounts: Vec<MountSpec> = (0..=MAX_PACKED)
            .map(|i| {
                bind(
                    root.join(format!("m{i}")).to_str().unwrap(),
                    &format!("/m{i}"),
                    false,
                    true,
                )
            })
            .collect();
        let e = check_binds_here(&mut config(mounts), true).unwrap_err();
        assert!(
            e.contains(&format!("at most {MAX_PACKED} host folders (")),
            "{e}"
        );
    }
}
