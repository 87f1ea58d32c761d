//! Guest memory in a snapshot: written sparsely (zero pages stay holes),
//! restored as a copy-on-write (`MAP_PRIVATE`) mapping of the file, or
//! copied into anonymous memory (the file's data extents only).

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

/// Opens the memory file of a snapshot whose RAM is `regions`, checking
/// that its length is their total.
fn open_memory_file(path: &Path, regions: &[(u64, u64)]) -> Result<File, SnapshotError> {
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
    Ok(file)
}

/// Maps `path` as guest memory with the given regions (guest address,
/// size; file offsets back to back), private and copy-on-write.
pub fn map_private(path: &Path, regions: &[(u64, u64)]) -> Result<GuestMemoryMmap, SnapshotError> {
    let file = open_memory_file(path, regions)?;
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

/// How a snapshot's guest memory is brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryRestore {
    /// A private copy-on-write mapping of the memory file: pages are read
    /// in on first touch and shared by every clone until written. The
    /// fastest and smallest; needs a hypervisor whose MMU follows the
    /// host's copy-on-write (real KVM with EPT/NPT).
    Private,
    /// Anonymous memory filled from the file's data extents at restore
    /// (tens of ms for the ~20 MiB a ready guest has touched). Each clone
    /// owns its memory and nothing depends on the file afterwards (it may
    /// be replaced or deleted while the clone runs).
    Copy,
}

/// Maps `path` as guest memory with the given regions the way `how` says.
pub fn restore(
    path: &Path,
    regions: &[(u64, u64)],
    how: MemoryRestore,
) -> Result<GuestMemoryMmap, SnapshotError> {
    match how {
        MemoryRestore::Private => map_private(path, regions),
        MemoryRestore::Copy => load_copy(path, regions),
    }
}

/// Data extents of `file` within `start..end` (SEEK_DATA/SEEK_HOLE; the
/// whole range where the file system cannot tell).
fn data_extents(file: &File, start: u64, end: u64) -> Vec<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        // SAFETY: lseek on a descriptor we own; no memory is passed.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole is left
            }
            return vec![(pos, end)];
        }
        let data = data as u64;
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        let hole = if hole < 0 {
            end
        } else {
            (hole as u64).min(end)
        };
        out.push((data, hole));
        pos = hole;
    }
    out
}

/// Reads `path` into fresh anonymous guest memory with the given regions;
/// holes stay untouched (zero, and not even allocated).
pub fn load_copy(path: &Path, regions: &[(u64, u64)]) -> Result<GuestMemoryMmap, SnapshotError> {
    let file = open_memory_file(path, regions)?;
    let ranges: Vec<(GuestAddress, usize)> = regions
        .iter()
        .map(|&(a, s)| (GuestAddress(a), s as usize))
        .collect();
    let mem =
        GuestMemoryMmap::from_ranges(&ranges).map_err(|e| SnapshotError::Memory(e.to_string()))?;
    let mut offset = 0u64;
    for (region, &(addr, size)) in mem.iter().zip(regions) {
        let host = mem
            .get_host_address(GuestAddress(addr))
            .map_err(|e| SnapshotError::Memory(e.to_string()))?;
        // SAFETY: `host..host+size` is the region's fresh anonymous
        // mapping owned by `mem`; no vCPU or device uses it yet.
        let bytes = unsafe { std::slice::from_raw_parts_mut(host, size as usize) };
        debug_assert_eq!(region.len(), size);
        for (from, to) in data_extents(&file, offset, offset + size) {
            let dst = &mut bytes[(from - offset) as usize..(to - offset) as usize];
            file.read_exact_at(dst, from)
                .map_err(io_err(format!("read {}", path.display())))?;
        }
        offset += size;
    }
    Ok(mem)
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

        // The copy holds the same bytes, and is the process's own.
        let copied = load_copy(&path, &regions).unwrap();
        assert_eq!(
            copied.read_obj::<u32>(GuestAddress(0x2000)).unwrap(),
            0x1234_5678
        );
        assert_eq!(
            copied
                .read_obj::<u8>(GuestAddress((8 << 20) + 0x10))
                .unwrap(),
            0xab
        );
        assert_eq!(copied.read_obj::<u64>(GuestAddress(0x3000)).unwrap(), 0);
        copied.write_obj(9u32, GuestAddress(0x2000)).unwrap();
        assert_eq!(
            restore(&path, &regions, MemoryRestore::Copy)
                .unwrap()
                .read_obj::<u32>(GuestAddress(0x2000))
                .unwrap(),
            0x1234_5678
        );
        assert!(load_copy(&path, &[(0, 1 << 20)]).is_err());
    }
}
