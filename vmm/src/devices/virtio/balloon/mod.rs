//! virtio-balloon with free page reporting: memory the guest frees goes
//! back to the host.
//!
//! The device offers `VIRTIO_BALLOON_F_FREE_PAGE_REPORTING` and never asks
//! the guest to inflate (`num_pages` stays 0). A Linux guest with
//! `CONFIG_PAGE_REPORTING` then hands the device blocks of free memory
//! (wholly free blocks of order `page_reporting_order` and up: 1 MiB
//! blocks, the order [`guest_cmdline`] puts on the guest's command line;
//! Linux's own default, `pageblock_order`, is 4 MiB on our x86 kernel),
//! up to 32 per request, two seconds after enough memory was freed;
//! the device releases them on the host ([`discard`]: `madvise
//! (MADV_DONTNEED)` on Linux), and the guest keeps them on its free lists
//! marked as reported. When the guest allocates such a page again the host
//! gives it a fresh zero page.
//!
//! Queues, in the order the Linux driver numbers them when neither the
//! stats queue nor free page hinting is offered (queues whose feature is
//! not negotiated take no index): 0 inflate, 1 deflate, 2 reporting.
//! Inflate requests (arrays of little-endian 32-bit 4 KiB page numbers)
//! are honoured too: those pages are released the same way. Deflate needs
//! nothing (a released page comes back on its next touch).
//!
//! Everything the guest sends is checked: a range must lie within one
//! region of guest memory (no overflow, no holes), only the whole host
//! pages inside it are released, and an inflate request is read up to
//! [`MAX_PFNS`] page numbers.
//!
//! What the device released is counted ([`BalloonStats`]) and, when the
//! VMM was given a stats file ([`set_stats_file`], `berth-vmm
//! --balloon-stats`), written there after every request that released
//! memory: the host reads how much the balloon gave back without
//! inferring it from the VMM's RSS, which the guest's other allocations
//! move too.

use std::io;
use std::sync::OnceLock;

use virtio_queue::{DescriptorChain, Queue};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryRegion};

use super::{
    device_type, drain_queue, read_config_bytes, ActivateContext, ActivateError, VirtioDevice,
    VirtioInterrupt, VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX,
};
use crate::GuestMemoryMmap;

/// Feature bit: the driver reports free pages on the reporting queue.
pub const VIRTIO_BALLOON_F_FREE_PAGE_REPORTING: u64 = 1 << 5;

/// Queue of pages the guest gives up when asked to inflate.
pub const INFLATE_QUEUE: usize = 0;
/// Queue of pages the guest takes back.
pub const DEFLATE_QUEUE: usize = 1;
/// Queue of free page reports.
pub const REPORTING_QUEUE: usize = 2;

/// Queue size. Linux refuses page reporting on a queue shorter than
/// `PAGE_REPORTING_CAPACITY` (32), the most blocks one report holds.
const QUEUE_SIZE: u16 = 128;
const QUEUE_SIZES: [u16; 3] = [QUEUE_SIZE; 3];

/// Page numbers in inflate requests count 4 KiB pages
/// (`VIRTIO_BALLOON_PFN_SHIFT`), whatever the guest's page size.
const PFN_SHIFT: u32 = 12;
/// Most page numbers read from one inflate request (Linux sends at most
/// 256, `VIRTIO_BALLOON_ARRAY_PFNS_MAX`); the rest of a longer chain is
/// ignored.
pub const MAX_PFNS: usize = 4096;

/// The guest kernel parameter that sets the order of the blocks Linux
/// reports (`mm/page_reporting.c`).
pub const REPORTING_ORDER_PARAM: &str = "page_reporting.page_reporting_order";

/// The order the device asks the guest to report in: 1 MiB blocks (order
/// 8 of 4 KiB pages). Linux's default is `pageblock_order`, 4 MiB on our
/// x86 kernel, and that returned too little: a block is reported only once
/// it is wholly free, and one page of other data in it (page cache, a
/// process's heap, allocated while a container filled its memory) keeps
/// all 4 MiB on the host. Measured in the machine VM (512 MiB, a 64 MiB
/// tmpfs freed): 11 of its 16 blocks of 4 MiB merged whole; 14 of the 20
/// MiB left were free in 1 and 2 MiB blocks. A smaller order also lowers
/// the guest's floor for reporting at all (its low watermark plus 32
/// blocks: 132 MiB at 4 MiB, 36 MiB at 1 MiB) at the cost of more, smaller
/// reports.
pub const GUEST_REPORTING_ORDER: u32 = 8;

/// `cmdline` with the guest kernel options the device needs: the reporting
/// order ([`GUEST_REPORTING_ORDER`]), unless the command line sets one
/// already.
pub fn guest_cmdline(cmdline: &str) -> String {
    let prefix = format!("{REPORTING_ORDER_PARAM}=");
    if cmdline.split_whitespace().any(|w| w.starts_with(&prefix)) {
        return cmdline.to_string();
    }
    format!("{} {prefix}{GUEST_REPORTING_ORDER}", cmdline.trim_end())
        .trim_start()
        .to_string()
}

/// Size of `struct virtio_balloon_config` (num_pages, actual,
/// free_page_hint_cmd_id, poison_val; little-endian 32-bit each).
const CONFIG_SIZE: usize = 16;
/// Offset of `actual`, the only field the driver writes.
const CONFIG_ACTUAL: u64 = 4;

/// What the device has done since it was made (for logs and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalloonStats {
    /// Bytes released to the host.
    pub released_bytes: u64,
    /// Of those, the bytes the host held when they were released (Linux:
    /// resident pages by `mincore`; 0 on other hosts): memory really given
    /// back, where `released_bytes` also counts reported blocks the guest
    /// never touched since they were last released. For a restored VM whose
    /// memory is a private mapping of the snapshot file, pages of that file
    /// in the host's page cache count too.
    pub resident_released_bytes: u64,
    /// Ranges refused: outside guest memory, across regions, overflowing,
    /// empty, or smaller than a host page once trimmed to whole pages.
    pub refused_ranges: u64,
    /// Ranges the host OS would not release (the error is logged).
    pub failed_ranges: u64,
}

struct Active {
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    interrupt: VirtioInterrupt,
}

/// The virtio-balloon device.
#[derive(Default)]
pub struct Balloon {
    /// `actual` as the driver last wrote it (pages it holds in the balloon).
    actual: u32,
    active: Option<Active>,
    stats: BalloonStats,
}

impl Balloon {
    /// A new, inactive device.
    pub fn new() -> Self {
        Balloon::default()
    }

    /// Counters since the device was made.
    pub fn stats(&self) -> BalloonStats {
        self.stats
    }
}

/// Where the device writes its counters ([`write_stats`]); set once per
/// process (one VM per VMM process) before the VM starts.
static STATS_FILE: OnceLock<std::fs::File> = OnceLock::new();

/// Makes `file` the balloon's stats file (see [`write_stats`]). Returns
/// false if one was set already.
pub fn set_stats_file(file: std::fs::File) -> bool {
    STATS_FILE.set(file).is_ok()
}

/// Width of every number in the stats file: the file keeps one length, so
/// each write replaces the whole text in place (no truncation, which would
/// let a reader see an empty file).
const STATS_WIDTH: usize = 20;

/// The stats file's text: one JSON object of a fixed length (numbers
/// padded with spaces on the left, which JSON allows).
pub fn stats_json(s: &BalloonStats) -> String {
    let w = STATS_WIDTH;
    format!(
        "{{\"released_bytes\":{:>w$},\"resident_released_bytes\":{:>w$},\"refused_ranges\":{:>w$},\"failed_ranges\":{:>w$}}}\n",
        s.released_bytes, s.resident_released_bytes, s.refused_ranges, s.failed_ranges
    )
}

/// Writes `stats` over the stats file, if there is one (a positioned write
/// of the whole text at offset 0; errors are logged once).
fn write_stats(stats: &BalloonStats) {
    let Some(f) = STATS_FILE.get() else {
        return;
    };
    if let Err(e) = write_at_start(f, stats_json(stats).as_bytes()) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::warn!("balloon: cannot write the stats file: {e}");
        }
    }
}

#[cfg(unix)]
fn write_at_start(f: &std::fs::File, data: &[u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, data, 0)
}

#[cfg(windows)]
fn write_at_start(f: &std::fs::File, data: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        let n = std::os::windows::fs::FileExt::seek_write(f, &data[done..], done as u64)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}

/// Bytes of `[ptr, ptr + len)` the host holds in memory now (Linux:
/// `mincore`; `None` where it cannot tell).
///
/// # Safety
/// `ptr` is host-page aligned and the range lies inside one mapping.
#[cfg(target_os = "linux")]
unsafe fn resident_bytes(ptr: *mut u8, len: usize, page: u64) -> Option<u64> {
    let pages = len.div_ceil(page as usize);
    let mut vec = vec![0u8; pages];
    // SAFETY: the caller guarantees an aligned range inside one mapping;
    // `vec` has one byte per page of it, as mincore() writes.
    if unsafe { libc::mincore(ptr.cast(), len, vec.as_mut_ptr()) } != 0 {
        return None;
    }
    Some(vec.iter().filter(|b| **b & 1 != 0).count() as u64 * page)
}

/// # Safety
/// Reads nothing.
#[cfg(not(target_os = "linux"))]
unsafe fn resident_bytes(_ptr: *mut u8, _len: usize, _page: u64) -> Option<u64> {
    None
}

/// The size of the host's pages, the unit [`discard`] works in.
pub fn host_page_size() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf reads a constant of the system; no memory is
        // passed.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n > 0 {
            return n as u64;
        }
    }
    4096
}

/// Gives the host memory at `[ptr, ptr + len)` back to the host OS. The
/// contents are lost: the next touch reads zeroes (anonymous memory) or the
/// backing file (a snapshot's private mapping), which a guest that
/// reported the memory free does not look at.
///
/// # Safety
/// `ptr` and `len` are host-page aligned and the range lies inside one
/// mapping of guest memory that no Rust reference points into.
#[cfg(target_os = "linux")]
pub unsafe fn discard(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is page aligned guest memory;
    // dropping its pages only changes what the guest reads there next.
    if unsafe { libc::madvise(ptr.cast(), len, libc::MADV_DONTNEED) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the host memory at `[ptr, ptr + len)` back to the host OS (macOS:
/// `MADV_FREE_REUSABLE`, which also takes it off the process's footprint).
///
/// # Safety
/// As for the Linux version.
#[cfg(target_os = "macos")]
pub unsafe fn discard(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is page aligned guest memory;
    // the kernel may drop its pages, which the guest reported free.
    if unsafe { libc::madvise(ptr.cast(), len, libc::MADV_FREE_REUSABLE) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the host memory at `[ptr, ptr + len)` back to the host OS
/// (Windows: `DiscardVirtualMemory`; the pages stay committed, their
/// contents undefined).
///
/// # Safety
/// As for the Linux version.
#[cfg(windows)]
pub unsafe fn discard(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is page aligned guest memory
    // the process committed; discarding only makes its contents undefined.
    let rc = unsafe { windows_sys::Win32::System::Memory::DiscardVirtualMemory(ptr.cast(), len) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    Ok(())
}

/// No way to release memory on this host.
///
/// # Safety
/// Does nothing with the memory.
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub unsafe fn discard(_ptr: *mut u8, _len: usize) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "releasing guest memory is not supported on this host",
    ))
}

/// The host pages a guest range `[addr, addr + len)` covers: the range must
/// lie within one region of `mem`; the result is the whole `page`-sized
/// host pages inside it (start rounded up, end down), or `None` if there
/// are none.
pub fn host_range(mem: &GuestMemoryMmap, addr: u64, len: u64, page: u64) -> Option<(usize, usize)> {
    if len == 0 || !page.is_power_of_two() {
        return None;
    }
    let last = GuestAddress(addr.checked_add(len - 1)?);
    let region = mem.find_region(GuestAddress(addr))?;
    let offset = region.to_region_addr(GuestAddress(addr))?;
    // The last byte is in the same region (a region is contiguous, so the
    // whole range is).
    region.to_region_addr(last)?;
    let start = region.get_host_address(offset).ok()? as usize;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    let mask = usize::try_from(page - 1).ok()?;
    let first_page = start.checked_add(mask)? & !mask;
    let end_page = end & !mask;
    (first_page < end_page).then(|| (first_page, end_page - first_page))
}

/// Releases `[addr, addr + len)` of guest memory to the host, counting it
/// in `stats`.
fn release(mem: &GuestMemoryMmap, addr: u64, len: u64, stats: &mut BalloonStats) {
    let page = host_page_size();
    let Some((ptr, n)) = host_range(mem, addr, len, page) else {
        stats.refused_ranges += 1;
        return;
    };
    // SAFETY: as for `discard` below: whole host pages inside one region.
    let resident = unsafe { resident_bytes(ptr as *mut u8, n, page) }.unwrap_or(0);
    // SAFETY: `host_range` checked that the pages lie inside one region of
    // guest memory, whole host pages; the VMM holds no references into guest
    // RAM (it is accessed through volatile slices), so only the guest sees
    // the dropped contents, and it reported them free.
    match unsafe { discard(ptr as *mut u8, n) } {
        Ok(()) => {
            stats.released_bytes += n as u64;
            stats.resident_released_bytes += resident;
        }
        Err(e) => {
            if stats.failed_ranges == 0 {
                log::warn!("balloon: cannot release guest memory: {e}");
            }
            stats.failed_ranges += 1;
        }
    }
}

/// A free page report: every descriptor is a block of free guest memory.
fn handle_report(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    stats: &mut BalloonStats,
) {
    let t = std::time::Instant::now();
    let before = *stats;
    let mut ranges = 0u32;
    // The chain iterator stops after the queue size (a looping chain ends).
    for desc in chain {
        ranges += 1;
        release(mem, desc.addr().raw_value(), u64::from(desc.len()), stats);
    }
    log::debug!(
        "balloon: report of {ranges} ranges, {} KiB released ({} KiB of it resident) in {:?} ({} MiB in all, {} MiB resident)",
        (stats.released_bytes - before.released_bytes) >> 10,
        (stats.resident_released_bytes - before.resident_released_bytes) >> 10,
        t.elapsed(),
        stats.released_bytes >> 20,
        stats.resident_released_bytes >> 20
    );
}

/// An inflate request: little-endian 4 KiB page numbers in the readable
/// descriptors; runs of consecutive pages are released together.
fn handle_inflate(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    stats: &mut BalloonStats,
) {
    let mut pfns = 0usize;
    // The current run: first page number and count.
    let mut run: Option<(u64, u64)> = None;
    'descs: for desc in chain {
        if desc.is_write_only() {
            continue;
        }
        let n = (desc.len() / 4) as usize;
        for i in 0..n {
            if pfns == MAX_PFNS {
                break 'descs;
            }
            let Some(at) = desc.addr().checked_add(4 * i as u64) else {
                break;
            };
            let Ok(pfn) = mem.read_obj::<u32>(at) else {
                stats.refused_ranges += 1;
                break;
            };
            pfns += 1;
            let pfn = u64::from(u32::from_le(pfn));
            run = match run {
                Some((first, count)) if first + count == pfn => Some((first, count + 1)),
                Some((first, count)) => {
                    release(mem, first << PFN_SHIFT, count << PFN_SHIFT, stats);
                    Some((pfn, 1))
                }
                None => Some((pfn, 1)),
            };
        }
    }
    if let Some((first, count)) = run {
        release(mem, first << PFN_SHIFT, count << PFN_SHIFT, stats);
    }
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        device_type::BALLOON
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_RING_F_EVENT_IDX | VIRTIO_BALLOON_F_FREE_PAGE_REPORTING
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; CONFIG_SIZE];
        // num_pages (the target) stays 0: the host never asks for memory.
        config[4..8].copy_from_slice(&self.actual.to_le_bytes());
        read_config_bytes(&config, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        if offset == CONFIG_ACTUAL {
            if let Ok(v) = <[u8; 4]>::try_from(data) {
                self.actual = u32::from_le_bytes(v);
            }
        }
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        if ctx.queues.len() != QUEUE_SIZES.len() {
            return Err(ActivateError::QueueCount {
                expected: QUEUE_SIZES.len(),
                got: ctx.queues.len(),
            });
        }
        self.active = Some(Active {
            mem: ctx.mem,
            queues: ctx.queues,
            interrupt: ctx.interrupt,
        });
        Ok(())
    }

    fn queue_snapshots(&self) -> Vec<super::QueueSnapshot> {
        self.active
            .iter()
            .flat_map(|a| a.queues.iter().map(super::QueueSnapshot::from))
            .collect()
    }

    fn process_queue(&mut self, index: usize) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let Some(queue) = a.queues.get_mut(index) else {
            return;
        };
        let mem = a.mem.clone();
        let before = self.stats;
        let stats = &mut self.stats;
        drain_queue(queue, &mem, &a.interrupt, |chain| {
            match index {
                INFLATE_QUEUE => handle_inflate(chain, &mem, stats),
                REPORTING_QUEUE => handle_report(chain, &mem, stats),
                // Deflate: the pages come back on their next touch.
                _ => {}
            }
            0
        });
        if self.stats != before {
            write_stats(&self.stats);
        }
    }

    fn reset(&mut self) {
        self.active = None;
        self.actual = 0;
    }
}

#[cfg(test)]
mod tests;
