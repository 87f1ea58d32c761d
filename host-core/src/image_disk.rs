//! Read-only image disks for `--isolation vm`: an image's layers, unpacked
//! once on the host into an ext4 file under `$BERTH_HOME/cache/image-disks/`
//! and attached to every throw-away VM that runs the image. The guest only
//! mounts it, where streaming the layers would make every VM decompress and
//! unpack them again (about 99 s per VM when the guest kernel is emulated).
//!
//! The tree on the disk is written by `berth-agent image-disk-tree`, the
//! same unpack code the guest runs (guest-agent `store::image_disk`), so the
//! guest links it into its store as if it had unpacked the layers itself.
//! Unpacking keeps owners, device nodes and overlay xattrs, which takes
//! root on a Linux host; elsewhere images are streamed as before.

use crate::image_cache::ImageCache;
use anyhow::{bail, Context, Result};
use berth_protocol::ImageCommit;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The guest device of the image slot of a throw-away VM: the disk after
/// its root disk (`/dev/vda`).
pub const GUEST_DEVICE: &str = "/dev/vdb";

/// Whether image disks can be made here (and are not turned off with
/// `BERTH_IMAGE_DISKS=0`); the reason when not.
pub fn unavailable() -> Option<&'static str> {
    if crate::env::is(crate::env::IMAGE_DISKS, "0") {
        return Some("BERTH_IMAGE_DISKS=0");
    }
    if !cfg!(target_os = "linux") {
        return Some("image disks are made on Linux hosts only");
    }
    #[cfg(unix)]
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("unpacking layers with their owners needs root");
    }
    None
}

/// The image disk of `image`, made now if the cache lacks it; `None` where
/// image disks cannot be made ([`unavailable`]).
pub fn ensure(cache: &ImageCache, image: &ImageCommit) -> Result<Option<PathBuf>> {
    if unavailable().is_some() {
        return Ok(None);
    }
    let hex = image
        .config_digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("invalid image id {:?}", image.config_digest))?;
    let dir = cache.dir().join("image-disks");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(crate::image_cache::image_disk_file(hex));
    if path.is_file() {
        return Ok(Some(path));
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{hex}.lock")))?;
    crate::platform::lock_exclusive(&lock).context("locking the image disk")?;
    if path.is_file() {
        return Ok(Some(path));
    }
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if progress {
        eprint!("Preparing the image disk…");
        let _ = std::io::stderr().flush();
    }
    let made = build(cache, image, &dir, &path);
    if progress {
        eprint!("\r\x1b[K");
    }
    made?;
    Ok(Some(path))
}

fn build(cache: &ImageCache, image: &ImageCommit, dir: &Path, out: &Path) -> Result<()> {
    let stage = tempfile::Builder::new().prefix(".tmp-").tempdir_in(dir)?;
    let tree = stage.path().join("tree");
    std::fs::create_dir(&tree)?;
    let agent = crate::paths::agent_binary()?;
    let mut child = std::process::Command::new(&agent)
        .arg("image-disk-tree")
        .arg("--root")
        .arg(&tree)
        .arg("--blobs")
        .arg(cache.dir().join("blobs/sha256"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    child
        .stdin
        .take()
        .context("agent stdin")?
        .write_all(&serde_json::to_vec(image)?)?;
    let o = child.wait_with_output()?;
    if !o.status.success() {
        bail!(
            "unpacking the layers: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let (bytes, entries) = tree_usage(&tree)?;
    let img = stage.path().join("disk.ext4");
    // Data, one inode per entry, ext4's metadata and some slack; a second
    // try with twice the room if that was not enough.
    let inodes = entries + 256;
    let mut size = (bytes + bytes / 8 + inodes * 256 + (16 << 20)).div_ceil(1 << 20) << 20;
    for attempt in 0..2 {
        std::fs::File::create(&img)?.set_len(size)?;
        let o = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-m", "0", "-I", "256"])
            .args(["-O", "^has_journal,^resize_inode"])
            .args(["-N", &inodes.to_string()])
            .args(["-E", "root_owner=0:0", "-L", "berth-image", "-d"])
            .arg(&tree)
            .arg(&img)
            .output()
            .context("running mkfs.ext4 (install e2fsprogs)")?;
        if o.status.success() {
            break;
        }
        if attempt == 1 {
            bail!(
                "mkfs.ext4 failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        size *= 2;
    }
    std::fs::rename(&img, out)?;
    Ok(())
}

/// Bytes the tree takes in 4 KiB blocks, and its number of entries.
fn tree_usage(root: &Path) -> Result<(u64, u64)> {
    let mut bytes = 0u64;
    let mut entries = 0u64;
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let m = e.path().symlink_metadata()?;
            entries += 1;
            if m.is_dir() {
                bytes += 4096;
                todo.push(e.path());
            } else if m.is_file() || m.file_type().is_symlink() {
                bytes += m.len().div_ceil(4096) * 4096;
            }
        }
    }
    Ok((bytes, entries))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tree_usage_counts_blocks_and_entries() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/f"), vec![1u8; 5000]).unwrap();
        std::fs::write(d.path().join("g"), b"x").unwrap();
        assert_eq!(
            super::tree_usage(d.path()).unwrap(),
            (4096 + 8192 + 4096, 3)
        );
    }
}
