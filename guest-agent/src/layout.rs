//! Where the engine keeps its state under the data root.
//!
//! ```text
//! <root>/blobs/sha256/<hex>        content-addressed blobs (layers, configs, manifests)
//! <root>/snapshots/<chain-hex>/fs  unpacked layers, keyed by OCI chain id
//! <root>/images/<config-hex>.json  image records
//! <root>/tags.json                 reference → image id
//! <root>/containers/<id>/          container record, state, logs, rootfs mount
//! <root>/volumes/<name>/_data      a volume's files; volume.json beside it
//! <root>/runtime/                  libcontainer state
//! <root>/s/                        short-path Unix sockets (attach, console)
//! <root>/tmp/                      work in progress; wiped at agent start
//! ```
//! Everything becomes visible by an atomic rename, so an interrupted
//! operation leaves at most garbage in tmp/.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Paths under one data root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }
    pub fn blob(&self, hex: &str) -> PathBuf {
        self.blobs().join(hex)
    }
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    pub fn snapshot_fs(&self, chain_hex: &str) -> PathBuf {
        self.snapshots().join(chain_hex).join("fs")
    }
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }
    pub fn tags(&self) -> PathBuf {
        self.root.join("tags.json")
    }
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }
    pub fn volume(&self, name: &str) -> PathBuf {
        self.volumes().join(name)
    }
    /// Where a volume's files are (docker's `Mountpoint`).
    pub fn volume_data(&self, name: &str) -> PathBuf {
        self.volume(name).join("_data")
    }
    pub fn runtime(&self) -> PathBuf {
        self.root.join("runtime")
    }
    /// Compiled seccomp filters (engine/seccomp.rs `compile_cached`).
    pub fn seccomp_cache(&self) -> PathBuf {
        self.root.join("seccomp")
    }

    pub fn sockets(&self) -> PathBuf {
        self.root.join("s")
    }
    /// Attach socket of a container (kept short: sun_path is 108 bytes).
    pub fn attach_socket(&self, id: &str) -> PathBuf {
        self.sockets()
            .join(format!("{}.a", &id[..16.min(id.len())]))
    }
    pub fn console_socket(&self, id: &str) -> PathBuf {
        self.sockets()
            .join(format!("{}.c", &id[..16.min(id.len())]))
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The engine's own copy of its binary, bind-mounted as `--init`.
    pub fn init_binary(&self) -> PathBuf {
        self.root.join("bin/docker-init")
    }

    /// Makes [`Layout::init_binary`] a copy of the running binary. A copy,
    /// not the binary's own path: that path may be replaced by an upgrade
    /// while this agent runs, and a bind mount of `… (deleted)` fails. The
    /// copy is redone only when the running binary is another file than
    /// the one last copied (device, inode, size, mtime in a stamp beside it).
    pub fn install_init_binary(&self) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let dest = self.init_binary();
        let me = std::fs::metadata("/proc/self/exe")?;
        let id = format!(
            "{} {} {} {}.{}",
            me.dev(),
            me.ino(),
            me.size(),
            me.mtime(),
            me.mtime_nsec()
        );
        let stamp = dest.with_extension("id");
        if dest.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(id.as_str()) {
            return Ok(dest);
        }
        let dir = dest.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".docker-init.tmp-{}", random_hex(4)));
        let result = (|| {
            std::fs::copy("/proc/self/exe", &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &dest)?;
            write_atomic(&stamp, id.as_bytes())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| dest)
    }

    /// Creates the directory tree and clears leftovers of interrupted work.
    pub fn prepare(&self) -> std::io::Result<()> {
        for d in [
            self.blobs(),
            self.snapshots(),
            self.images(),
            self.containers(),
            self.volumes(),
            self.runtime(),
            self.sockets(),
        ] {
            std::fs::create_dir_all(d)?;
        }
        let tmp = self.tmp();
        if tmp.exists() {
            // Unmount anything a crashed operation left mounted before deleting.
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(tmp)?;
        Ok(())
    }

    /// A fresh, unique directory under tmp/.
    pub fn temp_dir(&self, prefix: &str) -> std::io::Result<PathBuf> {
        let p = self.tmp().join(format!("{prefix}-{}", random_hex(8)));
        std::fs::create_dir(&p)?;
        Ok(p)
    }
}

/// Random lowercase hex from the kernel's RNG.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // getrandom(2) never fails for small requests once the RNG is seeded.
    // SAFETY: buf is a valid writable buffer of buf.len() bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(n as usize, buf.len(), "getrandom failed");
    hex::encode(buf)
}

// Which writes are fsynced: crash consistency of the state directory.
//
// Where the state is: in the machine VM, ext4 on the virtio data disk
// (/dev/vdb, journalled, mounted with the defaults data=ordered and
// auto_da_alloc; guest.rs); in throw-away VMs a tmpfs, where fsync does
// nothing and a crash loses everything anyway; natively, the host's
// filesystem. A crash here is the VMM killed, the guest kernel panicking or
// the host going down: what the guest had only in its page cache is lost,
// what reached the virtual disk stays (the VMM writes it to the image file,
// and a flush request fsyncs that file on the host).
//
// What a rename without an fsync of the data gives after a crash, on ext4
// with data=ordered: when it replaces an existing file, auto_da_alloc makes
// ext4 allocate and write the new data before the journal commits the
// rename, so the name holds the old content or the new. When it makes a
// new name, the rename can commit before the data is written: the file
// may then be there but empty. So an unsynced write is only sound for a
// file whose readers take an unreadable file as a missing one, and for
// which "missing" after a crash means what the file said: true of what
// only describes the current boot (it carries the boot id, or a new boot
// makes it meaningless: run state, exit state, published ports, network
// endpoints, health, exec instances) and of what is written again before
// each use (the OCI bundle's config.json, an exec's process.json). Those use
// [`write_atomic_unsynced`]: five of the six fsyncs a `run --rm` made
// (config.json, the network runtime file, ports, state.json, exit.json;
// container.json stays). Each fsync is a journal commit with cache
// flushes, disk requests that an emulated guest pays dearly for. Records
// the user made (containers, images,
// tags, volumes, networks) keep [`write_atomic`]: after a crash they are
// old or new, never empty.

/// Writes `data` to `path` atomically and durably (temp file in the same
/// directory, fsync, rename, fsync of the directory): after a crash the
/// file holds the old content or the new, and once this returns, the new.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, data, true)
}

/// Writes `data` to `path` atomically but without an fsync (temp file in
/// the same directory, rename): a reader never sees half a file, but after
/// a crash the file may be empty or, where it was new, missing. Only for
/// files that are no longer meaningful after a crash or are rewritten
/// before use, whose readers take an unreadable file as missing (see the
/// comment above [`write_atomic`]).
pub fn write_atomic_unsynced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, data, false)
}

fn write_atomic_with(path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        random_hex(4)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if sync {
            // The rename is a change of the directory: until the journal
            // commits it (up to 5 s on ext4) a crash leaves the temporary
            // name and loses the record (vm_chaos: a container `create`
            // had acknowledged was gone after the VMM was killed).
            sync_parent(path)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// fsyncs the directory that holds `path`, so that a rename or a new name
/// there is on the disk (ext4 otherwise commits it with the journal, up to
/// 5 s later).
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// Makes a store entry durably: `fill` writes its files into `tmp` (a
/// private directory of [`Layout::temp_dir`]'s, so no rename is needed
/// inside it), then each of them is fsynced, `tmp` is renamed to `dest`
/// and `dest`'s parent fsynced. Once this returns the entry survives a
/// crash whole; before, a crash leaves it in tmp/, which the next start
/// empties. Two journal commits, where writing each file with
/// [`write_atomic`] and then renaming would take one more per file.
pub fn publish_dir(tmp: &Path, dest: &Path, files: &[(&str, &[u8])]) -> std::io::Result<()> {
    for (name, data) in files {
        let mut f = std::fs::File::create(tmp.join(name))?;
        std::io::Write::write_all(&mut f, data)?;
        f.sync_all()?;
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(tmp, dest)?;
    sync_parent(dest)
}

/// Serialises `value` as JSON and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &data)
}

/// Serialises `value` as JSON and writes it atomically, without an fsync
/// ([`write_atomic_unsynced`]).
pub fn write_json_atomic_unsynced<T: serde::Serialize>(
    path: &Path,
    value: &T,
) -> std::io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic_unsynced(path, &data)
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_dir_moves_a_whole_entry_into_place_once() {
        let t = tempfile::tempdir().unwrap();
        let tmp = t.path().join("tmp/vol-1");
        std::fs::create_dir_all(tmp.join("_data")).unwrap();
        let dest = t.path().join("volumes/v1");
        publish_dir(&tmp, &dest, &[("volume.json", b"{}"), ("b", b"2")]).unwrap();
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(dest.join("volume.json")).unwrap(), b"{}");
        assert_eq!(std::fs::read(dest.join("b")).unwrap(), b"2");
        assert!(dest.join("_data").is_dir());
        // An entry already there is never replaced.
        std::fs::create_dir_all(&tmp).unwrap();
        assert!(publish_dir(&tmp, &dest, &[("volume.json", b"[]")]).is_err());
        assert_eq!(std::fs::read(dest.join("volume.json")).unwrap(), b"{}");
    }
}
