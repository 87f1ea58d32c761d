#!/usr/bin/env python3
"""Guest kernel profile from the emulated instructions (issue 25).

On a host where the guest kernel is emulated (kvm_pvm), every guest kernel
instruction is a `kvm:kvm_emulate_insn` event carrying the guest RIP. Record
all of them around the work to profile (the tracepoint ignores -c, so this is
every event: ~100 bytes each, ~6 GB for one warm `run --rm true`):

    perf record -q -e kvm:kvm_emulate_insn -p <berth-vmm pid> -o rec.data &
    berth run --rm berth/busybox true; kill -INT %1; wait
    benches/guest-profile.py rec.data ~/.cache/berth/kernel/<key>/vmlinux [top]

Prints the instructions per kernel function (top N, 40 by default) and per
rough category (function-name patterns: tick and scheduler accounting,
crc32, page faults, ...). Needs `nm` and a vmlinux with symbols. Assumes
perf's default sample layout for a tracepoint recorded with -p
(IP|TID|TIME|CPU|PERIOD|RAW: the tracepoint's rip is 8 bytes into RAW).
"""
import bisect
import collections
import mmap
import re
import struct
import subprocess
import sys

CATEGORIES = [
    ('tick/timer/sched accounting', r'timekeeping|hrtimer|^tick_|update_load_avg|__update_load_avg|pvclock|^ktime_get|update_vsyscall|sched_tick|task_tick|rcu_sched_clock_irq|account_process_tick|account_.*time|update_process_times|posix_cpu_timers|timer_recalc|clockevents|timerqueue|perf_event_task_tick|perf_adjust_freq|apic_timer|update_cfs_group|^update_curr|avg_vruntime|update_deadline|update_rq_clock|jiffies|lapic_next|native_apic|cpuacct_charge|reweight|calc_global_load|trigger_load_balance|nohz|run_timer|__run_timers|rcu_pending|psi_|sched_clock|read_tsc|kvm_clock|vruntime_eligible'),
    ('crc32 (ext4/jbd2 metadata_csum)', r'crc32|crc16|chksum|csum'),
    ('seccomp/bpf', r'bpf|seccomp'),
    ('page faults/mm', r'fault|folio|page|pte|pmd|pud|p4d|vma|mmap|munmap|unmap|tlb|mm_|anon|zap|lru|memcg|mem_cgroup|rmap|copy_.*range|free_pages|alloc_pages|clear_page|copy_page|zone|mapping'),
    ('path lookup/dcache', r'path|walk_component|lookup|d_alloc|dput|dget|__d_|d_hash|step_into|follow|dentry|hash_name|inode_permission|generic_permission|may_'),
    ('mount/namespace', r'mnt|mount|namespace|ns_|copy_tree|propagat|_ns$|nsproxy'),
    ('net', r'net|sock|skb|tcp|udp|inet|ip_|ipv6|neigh|dev_|rtnl|nla_|fib|addrconf|veth|br_'),
    ('slab/alloc', r'slab|kmem|kmalloc|kfree|alloc_|percpu|pcpu'),
    ('sched/switch', r'schedule|switch|pick_|enqueue|dequeue|wake|ttwu|select_task|migrate|load_balance|rb_|idle'),
    ('proc/seq text', r'seq_|num_to_str|vsnprintf|format_decode|number|proc_|show_'),
    ('ext4/jbd2/block', r'ext4|jbd2|ovl_|buffer|bh_|bio|blk|virtio|vring|block|journal'),
    ('memcpy/memset/user copies', r'memcpy|memset|memmove|copy_user|copy_to|copy_from|strncpy|strlen|strcmp|strnlen|memcmp'),
    ('entry/exit/irq', r'entry|syscall|error_|irq|exc_|ret_from|restore|swapgs|iret'),
]


def rips(path):
    """Guest RIP -> event count, from a perf.data file."""
    with open(path, 'rb') as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    data_off, data_size = struct.unpack_from('<QQ', m, 40)
    pos, end = data_off, data_off + data_size
    count = collections.Counter()
    unpack = struct.unpack_from
    while pos < end:
        typ, _misc, size = unpack('<IHH', m, pos)
        if size == 0:
            break
        if typ == 9:  # PERF_RECORD_SAMPLE
            count[unpack('<Q', m, pos + 8 + 40 + 4 + 8)[0]] += 1
        pos += size
    return count


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    syms = []
    nm = subprocess.run(['nm', '-n', sys.argv[2]], capture_output=True, text=True, check=True)
    for line in nm.stdout.splitlines():
        p = line.split()
        if len(p) == 3 and p[1] in 'tTwW':
            syms.append((int(p[0], 16), p[2]))
    addrs = [a for a, _ in syms]
    per_fn = collections.Counter()
    total = 0
    for rip, c in rips(sys.argv[1]).items():
        total += c
        if rip < 0xffff800000000000:
            per_fn['[user]'] += c
            continue
        i = bisect.bisect_right(addrs, rip) - 1
        per_fn[syms[i][1] if i >= 0 else '?'] += c
    if not total:
        sys.exit('no kvm_emulate_insn samples in ' + sys.argv[1])
    cats = [(n, re.compile(p)) for n, p in CATEGORIES]
    per_cat = collections.Counter()
    for fn, c in per_fn.items():
        per_cat[next((n for n, p in cats if p.search(fn)), 'other')] += c
    print('total %.2f M emulated instructions' % (total / 1e6))
    print('\nper category:')
    for n, c in per_cat.most_common():
        print('%9.2f M %5.1f %%  %s' % (c / 1e6, 100 * c / total, n))
    print('\nper function (top %d):' % top)
    for fn, c in per_fn.most_common(top):
        print('%9.2f M %5.1f %%  %s' % (c / 1e6, 100 * c / total, fn))


if __name__ == '__main__':
    main()
