//! Guest memory in a snapshot: written sparsely (zero pages stay holes),
//! restored as a copy-on-write (`MAP_PRIVATE`) mapping of the file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use vm_memory::{
    FileOffset, GuestAddress, GuestMemory, GuestMemoryRegion, GuestRegionMmap, MmapRegion,
};

use super::{io_err, SnapshotError};
use crate::GuestMemoryMmap;

const PAGE: usize = 4096;

/// What [`write_sparse`] wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteStats {
    /// Bytes of non-zero pages written.
    pub data_bytes: u64,
    /// Length of the (sparse) file.
    pub file_len: u64,
}

fn swap_in_use() -> bool {
    std::fs::read_to_string("/proc/swaps").map_or(true, |s| s.lines().count() > 1)
}

fn is_zero(page: &[u8]) -> bool {
    // SAFETY: reinterpreting initialized bytes as u64 is sound; align_to
    // returns correctly aligned middle parts and the unaligned rest.
    let (pre, mid, post) = unsafe { page.align_to::<u64>() };
    pre.iter().all(|&b| b == 0) && mid.iter().all(|&w| w == 0) && post.iter().all(|&b| b == 0)
}

/// Writes every region of `mem` back to back into `path`, skipping zero
/// pages. `anonymous`: the memory is a private anonymous mapping (a cold
/// boot), so pages the guest never touched are found with mincore() and not
/// even read (unless swap is on, where absent pages may hold data).
///
/// The guest must not run while this reads its memory.
pub fn write_sparse(
    mem: &GuestMemoryMmap,
    path: &Path,
    anonymous: bool,
) -> Result<WriteStats, SnapshotError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_err(format!("create {}", path.display())))?;
    let use_mincore = anonymous && !swap_in_use();
    let mut offset = 0u64;
    let mut stats = WriteStats::default();
    for region in mem.iter() {
        let len = region.len() as usize;
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|e| SnapshotError::Memory(e.to_string()))?;
        // SAFETY: `host..host+len` is the live mapping of this region, owned
        // by `mem` for the duration of this call; the vCPUs are paused and
        // the devices locked, so nothing writes it while it is read.
        let bytes = unsafe { std::slice::from_raw_parts(host as *const u8, len) };
        let resident = if use_mincore {
            let mut vec = vec![0u8; len.div_ceil(PAGE)];
            // SAFETY: `host` is page-aligned (mmap), `len` bytes are mapped,
            // and `vec` has one byte per page as mincore() requires.
            let rc = unsafe { libc::mincore(host.cast(), len, vec.as_mut_ptr()) };
            (rc == 0).then_some(vec)
        } else {
            None
        };
        let mut page = 0usize;
        let pages = len / PAGE;
        while page < pages {
            let skip = |p: usize| {
                resident.as_ref().is_some_and(|r| r[p] & 1 == 0)
                    || is_zero(&bytes[p * PAGE..(p + 1) * PAGE])
            };
            if skip(page) {
                page += 1;
                continue;
            }
            let start = page;
            while page < pages && !skip(page) {
                page += 1;
            }
            let run = &bytes[start * PAGE..page * PAGE];
            file.write_all_at(run, offset + (start * PAGE) as u64)
                .map_err(io_err(format!("write {}", path.display())))?;
            stats.data_bytes += run.len() as u64;
        }
        offset += len as u64;
    }
    file.set_len(offset)
        .map_err(io_err(format!("size {}", path.display())))?;
    stats.file_len = offset;
    Ok(stats)
}

/// Maps `path` as guest memory with the given regions (guest address,
/// size; file offsets back to back), private and copy-on-write.
pub fn map_private(path: &Path, regions: &[(u64, u64)]) -> Result<GuestMemoryMmap, SnapshotError> {
    let file = File::open(path).map_err(io_err(format!("open {}", path.display())))?;
    let total: u64 = regions.iter().map(|r| r.1).sum();
    let len = file
        .metadata()
        .map_err(io_err(format!("stat {}", path.display())))?
        .len();
    if len != total {
        return Err(SnapshotError::Memory(format!(
            "{} is {len} bytes, the snapshot's guest RAM is {total}",
            path.display()
        )));
    }
    let mut offset = 0u64;
    let mut out = Vec::new();
    for &(addr, size) in regions {
        let fo = FileOffset::new(file.try_clone().map_err(io_err("dup memory file"))?, offset);
        let mapping = MmapRegion::build(
            Some(fo),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_NORESERVE | libc::MAP_PRIVATE,
        )
        .map_err(|e| SnapshotError::Memory(format!("mmap: {e}")))?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(addr))
            .ok_or_else(|| SnapshotError::Memory(format!("region at {addr:#x} overflows")))?;
        out.push(region);
        offset += size;
    }
    GuestMemoryMmap::from_regions(out).map_err(|e| SnapshotError::Memory(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn sparse_round_trip_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mem");
        let regions = [(0u64, 4u64 << 20), (8 << 20, 1 << 20)];
        let ranges: Vec<(GuestAddress, usize)> = regions
            .iter()
            .map(|&(a, s)| (GuestAddress(a), s as usize))
            .collect();
        let mem = GuestMemoryMmap::from_ranges(&ranges).unwrap();
        mem.write_obj(0x1234_5678u32, GuestAddress(0x2000)).unwrap();
        mem.write_obj(0xabu8, GuestAddress((8 << 20) + 0x10))
            .unwrap();
        let stats = write_sparse(&mem, &path, true).unwrap();
        assert_eq!(stats.file_len, 5 << 20);
        assert_eq!(stats.data_bytes, 2 * PAGE as u64);

        let restored = map_private(&path, &regions).unwrap();
        assert_eq!(
            restored.read_obj::<u32>(GuestAddress(0x2000)).unwrap(),
            0x1234_5678
        );
        assert_eq!(
            restored
                .read_obj::<u8>(GuestAddress((8 << 20) + 0x10))
                .unwrap(),
            0xab
        );
        // Writes stay in the process (copy-on-write), the file is unchanged.
        restored.write_obj(7u32, GuestAddress(0x2000)).unwrap();
        let again = map_private(&path, &regions).unwrap();
        assert_eq!(
            again.read_obj::<u32>(GuestAddress(0x2000)).unwrap(),
            0x1234_5678
        );
        assert!(map_private(&path, &[(0, 1 << 20)]).is_err());
    }
}
