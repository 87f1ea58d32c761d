//! Image disks: an image's unpacked layers on a read-only ext4 disk, made
//! once on the host and attached to every throw-away VM that runs the
//! image, so that no guest unpacks layers (`--isolation vm`).
//!
//! The disk holds a partial store in this store's own layout:
//! ```text
//! blobs/sha256/<config-hex>          the image config
//! snapshots/<chain-hex>/{fs,meta.json}  each layer, unpacked as a lower dir
//! ```
//! [`build_tree`] writes that tree (on the host, with the same unpack code
//! the guest uses); [`attach`] mounts the disk in the guest and links its
//! snapshots and blobs into the live store, after which an ordinary
//! [`ImageStore::commit`] of the image finds every layer already unpacked.

use super::{digest_hex, ImageStore, StoreError};
use crate::layout::Layout;
use berth_protocol::ImageCommit;
use std::fs;
use std::path::{Path, PathBuf};

/// Writes the disk's tree for `commit` into the empty directory `root`,
/// reading the image's blobs from `blobs` (a `sha256/` blob directory of
/// verified blobs, such as the host cache). Layer blobs are only read; the
/// tree keeps the config blob and the unpacked layers.
pub fn build_tree(root: &Path, blobs: &Path, commit: &ImageCommit) -> Result<(), StoreError> {
    let layout = Layout::new(root);
    layout.prepare()?;
    let config_hex = digest_hex(&commit.config_digest)?;
    fs::copy(blobs.join(config_hex), layout.blob(config_hex))
        .map_err(|_| StoreError::MissingBlob(commit.config_digest.clone()))?;
    let mut linked = Vec::new();
    for l in &commit.layers {
        let hex = digest_hex(&l.digest)?;
        let src = blobs.join(hex);
        if !src.is_file() {
            return Err(StoreError::MissingBlob(l.digest.clone()));
        }
        let dst = layout.blob(hex);
        if !dst.exists() {
            std::os::unix::fs::symlink(&src, &dst)?;
            linked.push(dst);
        }
    }
    let store = ImageStore::new(layout.clone());
    let result = store.commit(commit);
    for l in linked {
        let _ = fs::remove_file(l);
    }
    result?;
    // Only blobs/ and snapshots/ belong on the disk.
    for e in fs::read_dir(root)? {
        let p = e?.path();
        let keep = p
            .file_name()
            .is_some_and(|n| n == "blobs" || n == "snapshots");
        if !keep {
            if p.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
        }
    }
    Ok(())
}

/// Errors attaching an image disk.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{0:?} is not a virtio disk (/dev/vdb … /dev/vdz)")]
    BadDevice(String),
    #[error("image disk {device} still has no capacity after {secs} s")]
    Empty { device: String, secs: u64 },
    #[error("image disk {device}: {what}: {source}")]
    Io {
        device: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("image disk {0}: it holds no snapshots/ directory")]
    NotAnImageDisk(String),
}

/// `/dev/vdX` with X in b..=z: the root disk (vda) is never an image disk.
fn valid_device(device: &str) -> bool {
    device
        .strip_prefix("/dev/vd")
        .is_some_and(|s| s.len() == 1 && matches!(s.as_bytes()[0], b'b'..=b'z'))
}

/// Mounts the image disk `device` read-only under the store's root and
/// links its snapshots and blobs into the store (entries the store already
/// has are kept). Returns how many layer snapshots were linked.
///
/// The disk may have been put in place of an empty one after the VM was
/// restored from a snapshot: the kernel learns its capacity from a
/// configuration-change interrupt, so this waits for a non-zero size and
/// drops whatever the block device cached while it was empty.
pub fn attach(layout: &Layout, device: &str) -> Result<usize, AttachError> {
    if !valid_device(device) {
        return Err(AttachError::BadDevice(device.to_string()));
    }
    let io = |what: &'static str| {
        let device = device.to_string();
        move |source| AttachError::Io {
            device,
            what,
            source,
        }
    };
    let wait = std::time::Duration::from_secs(30);
    let t0 = std::time::Instant::now();
    loop {
        if block_size(device).map_err(io("reading its size"))? > 0 {
            break;
        }
        if t0.elapsed() > wait {
            return Err(AttachError::Empty {
                device: device.to_string(),
                secs: wait.as_secs(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    flush_buffers(device).map_err(io("dropping its cached blocks"))?;
    let name = &device["/dev/".len()..];
    let mnt: PathBuf = layout.root().join("disks").join(name);
    fs::create_dir_all(&mnt).map_err(io("creating the mount point"))?;
    if !is_mounted(&mnt) {
        nix::mount::mount(
            Some(device),
            &mnt,
            Some("ext4"),
            nix::mount::MsFlags::MS_RDONLY | nix::mount::MsFlags::MS_NOATIME,
            None::<&str>,
        )
        .map_err(|e| io("mounting it")(std::io::Error::from(e)))?;
    }
    let snaps = mnt.join("snapshots");
    if !snaps.is_dir() {
        return Err(AttachError::NotAnImageDisk(device.to_string()));
    }
    let mut linked = 0;
    for (from, to, meta) in [
        (snaps, layout.snapshots(), true),
        (mnt.join("blobs/sha256"), layout.blobs(), false),
    ] {
        let Ok(entries) = fs::read_dir(&from) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(n) = name.to_str() else { continue };
            if digest_hex(&format!("sha256:{n}")).is_err() {
                continue;
            }
            if meta && !e.path().join("meta.json").is_file() {
                continue;
            }
            let dst = to.join(n);
            if dst.symlink_metadata().is_ok() {
                continue;
            }
            std::os::unix::fs::symlink(e.path(), &dst).map_err(io("linking its contents"))?;
            if meta {
                linked += 1;
            }
        }
    }
    Ok(linked)
}

fn is_mounted(dir: &Path) -> bool {
    let want = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(&want))
}

// <linux/fs.h>: _IOR(0x12, 114, size_t) and _IO(0x12, 97).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKFLSBUF: libc::c_ulong = 0x1261;

fn block_size(device: &str) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(device)?;
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points
    // at a live u64.
    if unsafe { libc::ioctl(f.as_raw_fd(), BLKGETSIZE64 as _, &mut size) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(size)
}

fn flush_buffers(device: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(device)?;
    // SAFETY: BLKFLSBUF takes no argument and only drops cached pages.
    if unsafe { libc::ioctl(f.as_raw_fd(), BLKFLSBUF as _, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_secondary_virtio_disks_are_accepted() {
        for ok in ["/dev/vdb", "/dev/vdz"] {
            assert!(valid_device(ok), "{ok}");
        }
        for bad in [
            "/dev/vda",
            "/dev/vdb1",
            "/dev/sda",
            "vdb",
            "/dev/vd",
            "/dev/../dev/vdb",
            "/dev/vdB",
            "",
        ] {
            assert!(!valid_device(bad), "{bad}");
        }
    }

    #[test]
    fn attach_refuses_other_devices_before_touching_them() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        assert!(matches!(
            attach(&layout, "/dev/sda"),
            Err(AttachError::BadDevice(_))
        ));
    }
}
