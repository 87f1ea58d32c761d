use super::*;
use crate::devices::test_thread::{on_thread, Kind};
use crate::devices::virtio::test_utils::{null_interrupt, test_memory};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::QueueT;

const MIB: u64 = 1 << 20;
/// Test memory: 16 MiB; the three queues live below 64 KiB.
const MEM_END: u64 = 16 * MIB;
const FILL: u8 = 0xa5;

/// The three queues at 0, 16 KiB and 32 KiB of `mem`.
fn queues(mem: &GuestMemoryMmap) -> Vec<MockSplitQueue<'_, GuestMemoryMmap>> {
    (0..3)
        .map(|i| MockSplitQueue::create(mem, GuestAddress(i * 0x4000), 16))
        .collect()
}

fn active(mem: &GuestMemoryMmap, vqs: &[MockSplitQueue<'_, GuestMemoryMmap>]) -> Balloon {
    let mut dev = Balloon::new();
    {
        let ctx = ActivateContext {
            mem: mem.clone(),
            queues: vqs.iter().map(|q| q.create_queue().unwrap()).collect(),
            interrupt: null_interrupt(),
            acked_features: dev.features(),
        };
        on_thread(Kind::Vcpu, || dev.activate(ctx))
    }
    .unwrap();
    dev
}

/// Memory with every byte from 1 MiB up set to FILL (touched, resident).
fn filled_memory() -> GuestMemoryMmap {
    let mem = test_memory();
    let fill = vec![FILL; (MEM_END - MIB) as usize];
    mem.write_slice(&fill, GuestAddress(MIB)).unwrap();
    mem
}

/// How many bytes of `[addr, addr + len)` read as FILL / as zero.
fn count(mem: &GuestMemoryMmap, addr: u64, len: u64) -> (usize, usize) {
    let mut buf = vec![0u8; len as usize];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    (
        buf.iter().filter(|b| **b == FILL).count(),
        buf.iter().filter(|b| **b == 0).count(),
    )
}

fn used_entries(mem: &GuestMemoryMmap, vq: &MockSplitQueue<'_, GuestMemoryMmap>) -> u16 {
    mem.read_obj(vq.used_addr().unchecked_add(2)).unwrap()
}

/// A report descriptor (the driver adds them as device-writable buffers).
fn block(addr: u64, len: u32, next: Option<u16>) -> RawDescriptor {
    let mut flags = VRING_DESC_F_WRITE as u16;
    if next.is_some() {
        flags |= VRING_DESC_F_NEXT as u16;
    }
    RawDescriptor::from(Descriptor::new(addr, len, flags, next.unwrap_or(0)))
}

#[test]
fn offers_reporting_and_a_zero_target() {
    let mut dev = Balloon::new();
    assert_eq!(dev.device_type(), 5);
    assert_ne!(dev.features() & VIRTIO_BALLOON_F_FREE_PAGE_REPORTING, 0);
    assert_ne!(dev.features() & VIRTIO_F_VERSION_1, 0);
    assert_eq!(dev.queue_max_sizes().len(), 3);
    // Linux needs room for 32 blocks per report.
    assert!(dev.queue_max_sizes()[REPORTING_QUEUE] >= 32);
    let mut cfg = [0xffu8; 8];
    on_thread(Kind::Vcpu, || dev.read_config(0, &mut cfg));
    assert_eq!(cfg, [0; 8]);
    on_thread(Kind::Vcpu, || {
        dev.write_config(CONFIG_ACTUAL, &7u32.to_le_bytes())
    });
    let mut actual = [0u8; 4];
    on_thread(Kind::Vcpu, || dev.read_config(CONFIG_ACTUAL, &mut actual));
    assert_eq!(u32::from_le_bytes(actual), 7);
    // The target is not the driver's to write; odd sizes and offsets are
    // ignored; reads past the end are zero.
    on_thread(Kind::Vcpu, || dev.write_config(0, &9u32.to_le_bytes()));
    on_thread(Kind::Vcpu, || dev.write_config(CONFIG_ACTUAL, &[1, 2]));
    on_thread(Kind::Vcpu, || {
        dev.write_config(CONFIG_ACTUAL + 1, &[1, 2, 3, 4])
    });
    on_thread(Kind::Vcpu, || dev.write_config(u64::MAX, &[1]));
    let mut all = [0xffu8; 8];
    on_thread(Kind::Vcpu, || dev.read_config(0, &mut all));
    assert_eq!(all, [0, 0, 0, 0, 7, 0, 0, 0]);
    let mut far = [0xffu8; 4];
    on_thread(Kind::Vcpu, || dev.read_config(u64::MAX - 1, &mut far));
    assert_eq!(far, [0; 4]);
}

#[test]
fn reported_blocks_go_back_to_the_host() {
    let mem = filled_memory();
    let vqs = queues(&mem);
    // One report of two blocks, then a report of one.
    vqs[REPORTING_QUEUE]
        .add_desc_chains(
            &[
                block(4 * MIB, 2 * MIB as u32, Some(1)),
                block(8 * MIB, MIB as u32, None),
                block(12 * MIB, 4 * MIB as u32, None),
            ],
            0,
        )
        .unwrap();
    let mut dev = active(&mem, &vqs);
    on_thread(Kind::Events, || dev.process_queue(REPORTING_QUEUE));
    assert_eq!(used_entries(&mem, &vqs[REPORTING_QUEUE]), 2);
    assert_eq!(dev.stats().released_bytes, 7 * MIB);
    assert_eq!(dev.stats().refused_ranges, 0);
    // The released blocks read as zero, the rest is untouched.
    assert_eq!(count(&mem, 4 * MIB, 2 * MIB).1, 2 * MIB as usize);
    assert_eq!(count(&mem, 8 * MIB, MIB).1, MIB as usize);
    assert_eq!(count(&mem, 12 * MIB, 4 * MIB).1, 4 * MIB as usize);
    assert_eq!(count(&mem, MIB, 3 * MIB).0, 3 * MIB as usize);
    assert_eq!(count(&mem, 6 * MIB, 2 * MIB).0, 2 * MIB as usize);
    assert_eq!(count(&mem, 9 * MIB, 3 * MIB).0, 3 * MIB as usize);
}

/// A hostile driver's reports: outside memory, overflowing, running past
/// the end, empty, and unaligned ones (only the whole host pages inside
/// are released, nothing around them). Every chain is still returned.
#[test]
fn hostile_reports_release_nothing_outside_the_range() {
    let page = host_page_size();
    let mem = filled_memory();
    let vqs = queues(&mem);
    let unaligned = 2 * MIB + page / 2;
    vqs[REPORTING_QUEUE]
        .add_desc_chains(
            &[
                block(MEM_END, 4096, None),
                block(u64::MAX - 4095, 8192, None),
                block(u64::MAX, u32::MAX, None),
                block(MEM_END - 4096, 8192, None),
                block(MEM_END - MIB, u32::MAX, None),
                block(3 * MIB, 0, None),
                // Half a page on each side of a whole one: one page goes.
                block(unaligned, (2 * page) as u32, None),
                // Less than a page once trimmed: nothing goes.
                block(3 * MIB + 1, (page - 1) as u32, None),
            ],
            0,
        )
        .unwrap();
    let mut dev = active(&mem, &vqs);
    on_thread(Kind::Events, || dev.process_queue(REPORTING_QUEUE));
    assert_eq!(used_entries(&mem, &vqs[REPORTING_QUEUE]), 8);
    assert_eq!(dev.stats().released_bytes, page);
    assert_eq!(dev.stats().refused_ranges, 7);
    // Only the page from 2 MiB + page on is zero.
    assert_eq!(count(&mem, 2 * MIB + page, page).1, page as usize);
    assert_eq!(count(&mem, 2 * MIB, page).0, page as usize);
    assert_eq!(count(&mem, 2 * MIB + 2 * page, page).0, page as usize);
    assert_eq!(count(&mem, 3 * MIB, MIB).0, MIB as usize);
    assert_eq!(count(&mem, MEM_END - MIB, MIB).0, MIB as usize);
}

/// A chain that loops on itself ends after the queue size; a chain that
/// claims more descriptors than the queue has is cut the same way.
#[test]
fn looping_chains_end() {
    let mem = filled_memory();
    let vqs = queues(&mem);
    vqs[REPORTING_QUEUE]
        .add_desc_chains(&[block(4 * MIB, MIB as u32, Some(0))], 0)
        .unwrap();
    let mut dev = active(&mem, &vqs);
    on_thread(Kind::Events, || dev.process_queue(REPORTING_QUEUE));
    assert_eq!(used_entries(&mem, &vqs[REPORTING_QUEUE]), 1);
    // At most one release per descriptor slot of the 16-entry queue.
    let released = dev.stats().released_bytes;
    assert!((MIB..=16 * MIB).contains(&released), "{released}");
    assert_eq!(count(&mem, 4 * MIB, MIB).1, MIB as usize);
    assert_eq!(count(&mem, 5 * MIB, MIB).0, MIB as usize);
}

/// Writes `pfns` at `at` and queues them as one inflate request.
fn inflate_request(
    mem: &GuestMemoryMmap,
    vq: &MockSplitQueue<'_, GuestMemoryMmap>,
    at: u64,
    pfns: &[u32],
) {
    let bytes: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(at)).unwrap();
    vq.add_desc_chains(
        &[RawDescriptor::from(Descriptor::new(
            at,
            bytes.len() as u32,
            0,
            0,
        ))],
        0,
    )
    .unwrap();
}

#[test]
fn inflated_pages_go_back_and_bad_ones_are_refused() {
    let mem = filled_memory();
    let vqs = queues(&mem);
    let page = host_page_size();
    // A run of host pages' worth of 4 KiB pages at 4 MiB, one page far out
    // of memory, and the run again (released twice, harmlessly).
    let per_page = (page >> PFN_SHIFT) as u32;
    let base = ((4 * MIB) >> PFN_SHIFT) as u32;
    let mut pfns: Vec<u32> = (base..base + 2 * per_page).collect();
    pfns.push(u32::MAX);
    pfns.extend(base..base + per_page);
    inflate_request(&mem, &vqs[INFLATE_QUEUE], 0x1_0000, &pfns);
    let mut dev = active(&mem, &vqs);
    on_thread(Kind::Events, || dev.process_queue(INFLATE_QUEUE));
    assert_eq!(used_entries(&mem, &vqs[INFLATE_QUEUE]), 1);
    assert_eq!(dev.stats().released_bytes, 3 * page);
    assert_eq!(dev.stats().refused_ranges, 1);
    assert_eq!(count(&mem, 4 * MIB, 2 * page).1, 2 * page as usize);
    assert_eq!(count(&mem, 4 * MIB + 2 * page, page).0, page as usize);
    // Deflating needs nothing from the host: the chain is just returned.
    inflate_request(&mem, &vqs[DEFLATE_QUEUE], 0x2_0000, &[base]);
    on_thread(Kind::Events, || dev.process_queue(DEFLATE_QUEUE));
    assert_eq!(used_entries(&mem, &vqs[DEFLATE_QUEUE]), 1);
    assert_eq!(dev.stats().released_bytes, 3 * page);
}

/// An inflate request of a huge buffer is read up to MAX_PFNS entries;
/// one whose buffer lies outside memory releases nothing.
#[test]
fn inflate_requests_are_bounded() {
    let mem = test_memory();
    let vqs = queues(&mem);
    // 4 MiB holding a million times the page number of 8 MiB, read only
    // MAX_PFNS times (each a run of its own: the number does not grow).
    let pfn = ((8 * MIB) >> PFN_SHIFT) as u32;
    let table: Vec<u8> = std::iter::repeat_n(pfn.to_le_bytes(), MIB as usize)
        .flatten()
        .collect();
    mem.write_slice(&table, GuestAddress(4 * MIB)).unwrap();
    // The second request starts in the last word of memory and runs past it.
    mem.write_obj(pfn.to_le(), GuestAddress(MEM_END - 4))
        .unwrap();
    vqs[INFLATE_QUEUE]
        .add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(4 * MIB, 4 * MIB as u32, 0, 0)),
                RawDescriptor::from(Descriptor::new(MEM_END - 4, 64, 0, 0)),
            ],
            0,
        )
        .unwrap();
    let mut dev = active(&mem, &vqs);
    on_thread(Kind::Events, || dev.process_queue(INFLATE_QUEUE));
    assert_eq!(used_entries(&mem, &vqs[INFLATE_QUEUE]), 2);
    if host_page_size() == 4096 {
        assert_eq!(dev.stats().released_bytes, (MAX_PFNS as u64 + 1) * 4096);
    }
    // The second request: one page number read, then the read past the
    // end is refused.
    assert_eq!(dev.stats().refused_ranges, 1);
}

#[test]
fn wrong_queue_counts_and_unknown_queues() {
    let mem = test_memory();
    let vqs = queues(&mem);
    let mut dev = Balloon::new();
    let err = dev
        .activate(ActivateContext {
            mem: mem.clone(),
            queues: vec![vqs[0].create_queue().unwrap()],
            interrupt: null_interrupt(),
            acked_features: VIRTIO_F_VERSION_1,
        })
        .unwrap_err();
    assert!(matches!(
        err,
        ActivateError::QueueCount {
            expected: 3,
            got: 1
        }
    ));
    // Not active, or a queue it does not have: nothing happens.
    on_thread(Kind::Events, || dev.process_queue(REPORTING_QUEUE));
    let mut dev = active(&mem, &vqs);
    on_thread(Kind::Events, || dev.process_queue(3));
    on_thread(Kind::Events, || dev.process_queue(usize::MAX));
    assert_eq!(dev.queue_snapshots().len(), 3);
    dev.reset();
    assert!(dev.queue_snapshots().is_empty());
}

/// Without page reporting negotiated the driver leaves the reporting
/// queue unready: notifications of it do nothing.
#[test]
fn an_unready_reporting_queue_is_left_alone() {
    let mem = filled_memory();
    let vqs = queues(&mem);
    vqs[REPORTING_QUEUE]
        .add_desc_chains(&[block(4 * MIB, MIB as u32, None)], 0)
        .unwrap();
    let mut qs: Vec<Queue> = vqs.iter().map(|q| q.create_queue().unwrap()).collect();
    qs[REPORTING_QUEUE].set_ready(false);
    let mut dev = Balloon::new();
    {
        let ctx = ActivateContext {
            mem: mem.clone(),
            queues: qs,
            interrupt: null_interrupt(),
            acked_features: VIRTIO_F_VERSION_1,
        };
        on_thread(Kind::Vcpu, || dev.activate(ctx))
    }
    .unwrap();
    on_thread(Kind::Events, || dev.process_queue(REPORTING_QUEUE));
    assert_eq!(dev.stats().released_bytes, 0);
    assert_eq!(count(&mem, 4 * MIB, MIB).0, MIB as usize);
}

#[test]
fn guest_cmdline_adds_the_reporting_order_once() {
    let want = format!("{REPORTING_ORDER_PARAM}={GUEST_REPORTING_ORDER}");
    assert_eq!(
        guest_cmdline("console=ttyS0 quiet"),
        format!("console=ttyS0 quiet {want}")
    );
    assert_eq!(guest_cmdline(""), want);
    // A command line that chose an order keeps it.
    let own = format!("console=ttyS0 {REPORTING_ORDER_PARAM}=5");
    assert_eq!(guest_cmdline(&own), own);
    // Another parameter that merely starts alike is not a choice.
    assert_eq!(
        guest_cmdline("page_reporting.other=1"),
        format!("page_reporting.other=1 {want}")
    );
}

/// Only memory the host held counts as given back: a block reported
/// again before the guest touched it is released again but holds nothing.
#[test]
fn resident_bytes_count_only_memory_the_host_held() {
    let mem = filled_memory();
    let vqs = queues(&mem);
    vqs[REPORTING_QUEUE]
        .add_desc_chains(
            &[
                block(4 * MIB, 2 * MIB as u32, None),
                block(4 * MIB, 2 * MIB as u32, None),
            ],
            0,
        )
        .unwrap();
    let mut dev = active(&mem, &vqs);
    on_thread(Kind::Events, || dev.process_queue(REPORTING_QUEUE));
    assert_eq!(dev.stats().released_bytes, 4 * MIB);
    if cfg!(target_os = "linux") {
        assert_eq!(dev.stats().resident_released_bytes, 2 * MIB);
    } else {
        assert_eq!(dev.stats().resident_released_bytes, 0);
    }
}

/// The stats file keeps one length whatever the counters, and is JSON.
#[test]
fn stats_text_has_a_fixed_length() {
    let zero = stats_json(&BalloonStats::default());
    let full = stats_json(&BalloonStats {
        released_bytes: u64::MAX,
        resident_released_bytes: u64::MAX,
        refused_ranges: u64::MAX,
        failed_ranges: u64::MAX,
    });
    assert_eq!(zero.len(), full.len());
    let v: serde_json::Value = serde_json::from_str(&full).unwrap();
    assert_eq!(v["resident_released_bytes"].as_u64(), Some(u64::MAX));
    let v: serde_json::Value = serde_json::from_str(&zero).unwrap();
    assert_eq!(v["released_bytes"].as_u64(), Some(0));
}
