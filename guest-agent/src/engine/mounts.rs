//! What a container start needs of its mounts, below the volume store
//! (`super::volumes`): volume records, missing bind sources, volumes with
//! driver options mounted, and docker's copy-up into empty volumes.

use super::names::docker_name;
use super::record::ContainerRecord;
use super::Error;
use crate::layout::{read_json, Layout};
use berth_protocol::MountType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `volume.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub anonymous: bool,
}

/// Docker's rule for local volume names (a file name: at most 255 bytes).
pub fn valid_volume_name(n: &str) -> bool {
    docker_name(n, 255)
}

pub(super) fn read_volume(layout: &Layout, name: &str) -> Option<VolumeRecord> {
    if !valid_volume_name(name) {
        return None;
    }
    read_json(&layout.volume(name).join("volume.json"))
        .ok()
        .flatten()
}

/// Before a start: makes missing `-v` host directories, mounts volumes that
/// have driver options (`type`/`device`/`o`), and fills empty volumes from
/// the image (docker's copy-up) from the container's mounted rootfs.
pub fn prepare_mounts(layout: &Layout, rec: &ContainerRecord, rootfs: &Path) -> Result<(), Error> {
    for m in &rec.mounts {
        match m.kind {
            MountType::Bind => {
                if std::fs::symlink_metadata(&m.source).is_err() {
                    let create = rec.config.mounts.iter().any(|s| {
                        s.kind == MountType::Bind && s.create_host_path && s.source == m.source
                    });
                    if !create {
                        return Err(Error::invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            m.source
                        )));
                    }
                    std::fs::create_dir_all(&m.source).map_err(Error::io(format!(
                        "error while creating mount source path '{}'",
                        m.source
                    )))?;
                }
            }
            MountType::Volume => {
                let Some(name) = &m.name else { continue };
                let v = read_volume(layout, name).ok_or_else(|| {
                    Error::missing(format!(
                        "error while mounting volume '{name}': no such volume"
                    ))
                })?;
                let data = layout.volume_data(name);
                if !v.options.is_empty() && !super::fsutil::is_mounted(&data) {
                    mount_with_options(&v.options, &data).map_err(Error::failed(format!(
                        "error while mounting volume '{}'",
                        data.display()
                    )))?;
                }
                if m.copy_up {
                    copy_up(rootfs, &m.destination, &data).map_err(Error::io(format!(
                        "copying the image's {} into volume {name}",
                        m.destination
                    )))?;
                }
            }
            MountType::Tmpfs => {}
        }
    }
    Ok(())
}

/// The local driver's `type`/`device`/`o` options, as docker applies them.
fn mount_with_options(opts: &BTreeMap<String, String>, target: &Path) -> nix::Result<()> {
    use nix::mount::MsFlags;
    let fstype = opts.get("type").map(String::as_str).unwrap_or("none");
    let device = opts.get("device").map(String::as_str).unwrap_or("none");
    let mut flags = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for o in opts.get("o").map(String::as_str).unwrap_or("").split(',') {
        match o {
            "" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "ro" => flags |= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other => data.push(other),
        }
    }
    let data = data.join(",");
    nix::mount::mount(
        Some(device),
        target,
        Some(fstype),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
}

/// Copies the image's content at `dest` (inside `rootfs`) into the volume
/// directory `data` when the volume is empty, keeping owners, modes and
/// symlinks; the volume's root takes the image directory's owner and mode.
pub fn copy_up(rootfs: &Path, dest: &str, data: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if std::fs::read_dir(data)?.next().is_some() {
        return Ok(());
    }
    let Ok(src) = super::rootfs_path::secure_join(rootfs, Path::new(dest)) else {
        return Ok(());
    };
    let Ok(meta) = std::fs::symlink_metadata(&src) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Ok(());
    }
    copy_tree(&src, data)?;
    std::os::unix::fs::lchown(data, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let from = e.path();
        let to: PathBuf = dst.join(e.file_name());
        let m = std::fs::symlink_metadata(&from)?;
        let ft = m.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            // Devices, fifos, sockets: skipped, as a volume holds data.
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(m.uid()), Some(m.gid()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        }
    }
    Ok(())
}
