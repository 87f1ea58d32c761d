#!/usr/bin/env bash
# Boot benchmark: berth-vmm vs QEMU `-M microvm`, same guest kernel, same
# root disk (the machine VM's: a small read-only ext4 image with the static
# berth-agent as /init, first virtio-blk device, /dev/vda), same command
# line, 1 vCPU / 512 MiB at boot each (berth-vmm gets --boot-mem-mib 512, so
# nothing is left for hotplug on kvm_pvm hosts). No data disk: the agent keeps
# its state on tmpfs. Rounds are interleaved (the order alternates every
# round) and the table shows medians over the rounds.
#
#   benches/boot.sh                 # ROUNDS=3
#   ROUNDS=5 NICE=0 benches/boot.sh
#
# Measured per boot, from process launch (timestamps from polling the serial
# log every 20 ms):
#   init   launch -> serial line `berth-agent: started as init` (kernel -> /init)
#   engine launch -> `berth-agent: engine open` (state open, about to serve):
#          the agent-ready point both VMMs reach
#   vsock  launch -> `berth-agent: ready on vsock port 1024` (berth-vmm only:
#          QEMU has no vsock here, as there is no /dev/vhost-vsock)
#   RSS    VmRSS of the VMM process (/proc/<pid>/status) when the marker appears
#   uptime the guest's own uptime at the marker, when the agent prints it
# Then the VMM is killed (SIGKILL, by the PID this script started; under
# PERF=1 the VMM is perf's child: it is killed first and perf's count read).
#
# With PERF=1 each VMM runs under `perf stat -e kvm:kvm_emulate_insn` and the
# table adds the emulated guest instructions and the VMM's CPU time
# (task-clock, all its threads) from launch to the last marker
# (on kvm_pvm hosts every guest-kernel instruction goes through KVM's
# emulator, so this counts the guest kernel's work independently of load).
# PERF=record records every emulated instruction instead (`perf record`;
# perf samples tracepoints at period 1 whatever -c says: ~100 bytes per
# instruction, 3 GB and minutes of `perf script` for a 30 M boot, deleted
# afterwards) and prints, per VMM and round, the guest kernel functions
# that took the most (symbols from the kernel's ELF) and how the
# instructions spread over the run.
# QEMU=0 skips the QEMU boots.
#
# Environment: ROUNDS (3), MEM_MIB (guest RAM, 512), PERF (0, 1 or record),
# PROFILE_TOP (30), QEMU (1), EXTRA_CMDLINE (words for both command lines),
# THP_OFF (berth, qemu or "berth qemu": run that VMM with transparent huge
# pages disabled, prctl PR_SET_THP_DISABLE; QEMU advises MADV_HUGEPAGE on
# its guest RAM, berth-vmm does not, see benches/README.md), PERF_EVENTS
# (more events for PERF=1, space separated, e.g. "kvm:kvm_msr page-faults":
# in the perf output kept with KEEP=1),
# BERTH_KERNEL (default: newest
# ${BERTH_CACHE_DIR:-~/.cache/berth}/kernel/*/vmlinux, built with
# kernel-config/build-kernel.sh when there is none), BOOT_TIMEOUT (400 s per
# boot), NICE (niceness of both VMMs, 10), KEEP=1 keeps the work directory
# (serial logs).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${ROUNDS:-3}
mem_mib=${MEM_MIB:-512}
timeout_s=${BOOT_TIMEOUT:-400}
perf=${PERF:-0}
with_qemu=${QEMU:-1}
niceness=${NICE:-10}
init_marker='berth-agent: started as init'
engine_marker='berth-agent: engine open'
vsock_marker='berth-agent: ready on vsock port 1024'
base_cmdline='console=ttyS0 reboot=k panic=-1 quiet clocksource=kvm-clock'
# EXTRA_CMDLINE: words added to both VMMs' command lines (e.g. `loglevel=7
# initcall_debug` with KEEP=1 to compare the guests' dmesg phase by phase).
[ -z "${EXTRA_CMDLINE:-}" ] || base_cmdline="$base_cmdline $EXTRA_CMDLINE"
# = what host-core/src/machine.rs adds for the root disk.
root_args='root=/dev/vda ro rootfstype=ext4 init=/init'
# = PVM_CMDLINE_EXTRAS in vmm/src/host_quirks.rs; berth-vmm appends it by
# itself on kvm_pvm hosts, QEMU gets it explicitly.
pvm_extras='kvm_emul_safe noreplace-smp noxsave clearcpuid=141,145,298,288,308,158,306,534,59,151,590,311,312,514,320,321,323,297,580'

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[ -w /dev/kvm ] || die "/dev/kvm is not usable"
case $perf in 0 | 1 | record) ;; *) die "PERF must be 0, 1 or record" ;; esac
[ "$perf" = 0 ] || command -v perf >/dev/null || die "PERF needs perf (apt-get install linux-perf)"
[ "$with_qemu" = 0 ] || command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
mkfs=$(PATH="$PATH:/usr/sbin:/sbin" command -v mkfs.ext4) || die "mkfs.ext4 missing (apt-get install e2fsprogs)"
command -v python3 >/dev/null || die "python3 missing"

# ------------------------------------------------------------------ inputs
if [ -n "${BERTH_KERNEL:-}" ]; then
    kernel=$BERTH_KERNEL
else
    kernel=$(ls -t "${BERTH_CACHE_DIR:-$HOME/.cache/berth}"/kernel/*/vmlinux 2>/dev/null | head -n 1 || true)
    if [ -z "$kernel" ]; then
        log "no guest kernel cached: building it (kernel-config/build-kernel.sh)"
        kernel=$(nice -n 10 "$root/kernel-config/build-kernel.sh" | tail -n 1)
    fi
fi
[ -f "$kernel" ] || die "no kernel at $kernel"

vmm=$root/target/release/berth-vmm
agent=$root/target/x86_64-unknown-linux-gnu/release/berth-agent
if [ ! -x "$vmm" ] || [ ! -x "$agent" ]; then
    log "building berth-vmm and berth-agent (PROFILE=release scripts/dev-build.sh)"
    (cd "$root" && PROFILE=release nice -n 10 scripts/dev-build.sh) >&2
fi
[ -x "$vmm" ] || die "missing $vmm"
[ -x "$agent" ] || die "missing $agent"
grep -qaF "started as init" "$agent" && grep -qaF "engine open" "$agent" ||
    die "$agent predates the 'started as init'/'engine open' serial lines: rebuild it (PROFILE=release scripts/dev-build.sh)"

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-boot.XXXXXX")
helper_pid=""
cleanup() {
    # The helper kills the VMM it started when it gets SIGTERM.
    if [ -n "$helper_pid" ] && kill -0 "$helper_pid" 2>/dev/null; then
        kill -TERM "$helper_pid" 2>/dev/null || true
        wait "$helper_pid" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The machine VM's root disk (host-core/src/machine.rs write_rootfs): ext4,
# no journal, /init = the static agent (0755), empty /newroot; size = agent
# + 4 MiB, rounded up to whole MiB.
mkdir -p "$work/root/newroot"
cp "$agent" "$work/root/init"
chmod 755 "$work/root/init"
rootfs=$work/rootfs.ext4
truncate -s $(( ($(stat -c %s "$agent") + (5 << 20) - 1) >> 20 ))M "$rootfs"
"$mkfs" -q -F -b 4096 -m 0 -O ^has_journal -E root_owner=0:0 -L berth-root \
    -d "$work/root" "$rootfs" || die "mkfs.ext4 failed building the root disk"
# Same page-cache state for both VMMs from the first boot on.
cat "$kernel" "$rootfs" "$vmm" >/dev/null

# ------------------------------------------------------------------ one boot
# boot_one.py NAME SERIAL TIMEOUT MARKER... -- CMD...
# Launches CMD, polls SERIAL, prints "<s since launch> <VmRSS KiB> <guest
# uptime or ->" for each marker line (the agent appends "(uptime X s)" to
# its lines when built with it), then SIGKILLs CMD (its own child, by PID).
cat >"$work/boot_one.py" <<'EOF'
import os, re, signal, subprocess, sys, time

name, serial, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
sep = sys.argv.index("--")
markers = [m.encode() for m in sys.argv[4:sep]]
cmd = sys.argv[sep + 1:]
child = None
# PERF_OUT: run CMD under perf stat, counting emulated guest instructions.
perf_out = os.environ.get("PERF_OUT")
if perf_out and os.environ.get("PERF_MODE") == "record":
    cmd = ["perf", "record", "-q", "-e", "kvm:kvm_emulate_insn", "-o", perf_out, "--"] + cmd
elif perf_out:
    events = ",".join(["kvm:kvm_emulate_insn", "task-clock"] + os.environ.get("PERF_EVENTS", "").split())
    cmd = ["perf", "stat", "-x", ",", "-o", perf_out, "-e", events, "--"] + cmd

def vmm_pids():
    # Under perf the VMM is perf's only child.
    if not perf_out:
        return [child.pid]
    try:
        with open(f"/proc/{child.pid}/task/{child.pid}/children") as f:
            return [int(k) for k in f.read().split()]
    except OSError:
        return []

def kill_vmm():
    # Under perf: kill the VMM, perf then writes its count and exits.
    if perf_out:
        for k in vmm_pids():
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            child.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

def stop(*_):
    raise SystemExit(143)

signal.signal(signal.SIGTERM, stop)

def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1

try:
    try:
        os.unlink(serial)
    except FileNotFoundError:
        pass
    out = open(serial + ".vmm.log", "wb")
    t0 = time.monotonic()
    # THP_OFF names the VMMs to run without transparent huge pages:
    # prctl(PR_SET_THP_DISABLE), inherited by the VMM, makes the kernel
    # ignore their madvise(MADV_HUGEPAGE) on guest RAM.
    thp_off = name in os.environ.get("THP_OFF", "").replace(",", " ").split()
    def no_thp():
        import ctypes
        if ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0) != 0:
            os._exit(126)
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=no_thp if thp_off else None)
    buf, f, results, i = b"", None, [], 0
    while i < len(markers):
        if f is None:
            try:
                f = open(serial, "rb")
            except FileNotFoundError:
                pass
        if f is not None:
            chunk = f.read()
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if i < len(markers) and markers[i] in line:
                        t = time.monotonic() - t0
                        m = re.search(rb"\(uptime ([0-9.]+) s\)", line)
                        results.append((t, rss_kib((vmm_pids() or [-1])[0]), m.group(1).decode() if m else "-"))
                        i += 1
                continue
        now = time.monotonic() - t0
        if child.poll() is not None:
            sys.exit(f"{name}: VMM exited with status {child.returncode} after {now:.1f} s, "
                     f"before '{markers[i].decode()}'")
        if now > timeout:
            sys.exit(f"{name}: '{markers[i].decode()}' not seen within {timeout:.0f} s")
        time.sleep(0.02)
    print(" ".join(f"{t:.3f} {r} {u}" for t, r, u in results))
finally:
    if child is not None and child.poll() is None:
        kill_vmm()
EOF

# profile.py KERNEL TOP < `perf script -F time,trace` of kvm:kvm_emulate_insn:
# top guest functions by samples, and samples per tenth of the run.
cat >"$work/profile.py" <<'PYEOF'
import bisect, re, subprocess, sys

kernel, top = sys.argv[1], int(sys.argv[2])
syms = []
for line in subprocess.run(["nm", "-n", kernel], capture_output=True, text=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        syms.append((int(parts[0], 16), parts[2]))
addrs = [a for a, _ in syms]
count, times = {}, []
pat = re.compile(r"^\s*([0-9.]+):\s+[0-9a-f]+:([0-9a-f]+):")
for line in sys.stdin:
    m = pat.match(line)
    if not m:
        continue
    times.append(float(m.group(1)))
    i = bisect.bisect_right(addrs, int(m.group(2), 16)) - 1
    name = syms[i][1] if i >= 0 else "?"
    count[name] = count.get(name, 0) + 1
total = sum(count.values()) or 1
print(f"  {total} emulated instructions")
for name, n in sorted(count.items(), key=lambda kv: -kv[1])[:top]:
    print(f"  {100 * n / total:5.1f} %  {n:8d}  {name}")
if times:
    t0, t1 = times[0], times[-1]
    step = (t1 - t0) / 10 or 1
    hist = [0] * 10
    for t in times:
        hist[min(9, int((t - t0) / step))] += 1
    print(f"  spread over {t1 - t0:.1f} s, per tenth: " + " ".join(str(h) for h in hist))
PYEOF

berth_cmd=(nice -n "$niceness" "$vmm" --kernel "$kernel" --disk "$rootfs,ro"
    --cmdline "$base_cmdline $root_args" --cpus 1 --mem-mib "$mem_mib" --boot-mem-mib "$mem_mib"
    --serial-log "$work/berth.serial" --vsock-uds "$work/vsock.sock" --rng)
qemu_cmd=(nice -n "$niceness" qemu-system-x86_64
    -M microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off
    -enable-kvm -cpu host,-arch-capabilities -m "$mem_mib" -smp 1
    -nodefaults -no-user-config -nographic
    -serial "file:$work/qemu.serial" -no-reboot -device i8042
    -drive "id=root,file=$rootfs,format=raw,if=none,readonly=on"
    -device virtio-blk-device,drive=root
    -kernel "$kernel" -append "$base_cmdline $root_args $pvm_extras")

# boot NAME ROUND: one boot; its result line goes to $work/NAME.results
boot() {
    local name=$1 r=$2 line
    local -a markers cmd
    if [ "$name" = berth ]; then
        markers=("$init_marker" "$engine_marker" "$vsock_marker") cmd=("${berth_cmd[@]}")
        rm -f "$work/vsock.sock"
    else
        markers=("$init_marker" "$engine_marker") cmd=("${qemu_cmd[@]}")
    fi
    local perf_out=
    [ "$perf" = 0 ] || perf_out=$work/$name.perf
    PERF_MODE=$perf PERF_OUT=$perf_out python3 "$work/boot_one.py" "$name" "$work/$name.serial" "$timeout_s" \
        "${markers[@]}" -- "${cmd[@]}" >"$work/$name.out" &
    helper_pid=$!
    if ! wait "$helper_pid"; then
        helper_pid=""
        log "serial log of $name (last lines):"
        tail -n 15 "$work/$name.serial" 2>/dev/null | sed 's/^/    /' >&2 || true
        log "VMM output of $name:"
        tail -n 15 "$work/$name.serial.vmm.log" 2>/dev/null | sed 's/^/    /' >&2 || true
        die "round $r: $name boot failed"
    fi
    helper_pid=""
    line=$(cat "$work/$name.out")
    echo "$line" >>"$work/$name.results"
    if [ "$perf" = 1 ]; then
        # perf -x, line: value,unit,event,...
        local insns
        insns=$(awk -F, '$3 ~ /kvm_emulate_insn/ {print $1}' "$work/$name.perf" 2>/dev/null)
        echo "${insns:--}" >>"$work/$name.insns"
        # task-clock: the VMM's CPU time (all threads, msec), which the
        # host's load stretches far less than the wall time.
        local cpu_ms
        cpu_ms=$(awk -F, '$3 == "task-clock" {print $1}' "$work/$name.perf" 2>/dev/null)
        echo "${cpu_ms:--}" >>"$work/$name.cpu"
        log "round $r: $name emulated guest instructions to the last marker: ${insns:-?}"
    elif [ "$perf" = record ]; then
        log "round $r: $name: guest kernel functions by emulated instructions"
        perf script -i "$work/$name.perf" -F time,trace 2>/dev/null |
            python3 "$work/profile.py" "$kernel" "${PROFILE_TOP:-30}" >&2 ||
            log "round $r: $name: no profile (perf script failed)"
        rm -f "$work/$name.perf"
    fi
    local ti ri ui te re ue tv rv uv
    read -r ti ri ui te re ue tv rv uv <<<"$line"
    if [ "$name" = berth ]; then
        log "round $r: berth-vmm  init $ti s (guest uptime $ui s, RSS $((ri / 1024)) MiB), engine open $te s (guest uptime $ue s, RSS $((re / 1024)) MiB), ready on vsock $tv s (guest uptime $uv s, RSS $((rv / 1024)) MiB)"
    else
        log "round $r: qemu       init $ti s (guest uptime $ui s, RSS $((ri / 1024)) MiB), engine open $te s (guest uptime $ue s, RSS $((re / 1024)) MiB)"
    fi
}

log "kernel $kernel ($(( $(stat -c %s "$kernel") / 1024 )) KiB), root disk $(( $(stat -c %s "$rootfs") / 1024 )) KiB"
log "$([ "$with_qemu" = 0 ] && echo "no QEMU (QEMU=0)" || qemu-system-x86_64 --version | head -n 1); host: $([ -e /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
log "$rounds round(s), timeout ${timeout_s} s per boot, VMMs at nice $niceness"
for ((r = 1; r <= rounds; r++)); do
    if [ "$with_qemu" = 0 ]; then order=(berth)
    elif ((r % 2)); then order=(berth qemu); else order=(qemu berth); fi
    for name in "${order[@]}"; do boot "$name" "$r"; done
done

# ------------------------------------------------------------------ report
# Median of one column of NAME.results ("n/a" when a value is missing).
col() {
    local f=$work/$1.results
    [ -z "${3:-}" ] || f=$work/$1.$3
    if [ ! -s "$f" ]; then echo n/a; return; fi
    awk -v c="$2" '{print $c}' "$f" | sort -g |
        awk '$1 == "-" {bad = 1} {v[NR] = $1}
             END {if (bad) print "n/a"; else print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'
}
# berth.results: init_s init_rss_kib init_uptime engine_s engine_rss_kib
#                engine_uptime vsock_s vsock_rss_kib vsock_uptime
# qemu.results:  init_s init_rss_kib init_uptime engine_s engine_rss_kib
#                engine_uptime
echo
echo "berth-vmm vs qemu-system-x86_64 -M microvm: $rounds round(s), interleaved, medians"
echo "kernel $kernel"
echo "root disk: read-only ext4 on virtio-blk /dev/vda, berth-agent as /init ($(( $(stat -c %s "$rootfs") / 1024 )) KiB);"
echo "agent state on tmpfs; 1 vCPU, $mem_mib MiB at boot each"
awk -v bi="$(col berth 1)" -v qi="$(col qemu 1)" \
    -v bu="$(col berth 3)" -v qu="$(col qemu 3)" \
    -v bir="$(col berth 2)" -v qir="$(col qemu 2)" \
    -v be="$(col berth 4)" -v qe="$(col qemu 4)" \
    -v bue="$(col berth 6)" -v que="$(col qemu 6)" \
    -v ber="$(col berth 5)" -v qer="$(col qemu 5)" \
    -v bv="$(col berth 7)" -v bn="$(col berth 1 insns)" -v qn="$(col qemu 1 insns)" \
    -v bc="$(col berth 1 cpu)" -v qc="$(col qemu 1 cpu)" 'BEGIN {
    fmt = "%-48s %10s %10s %11s\n"
    printf fmt, "", "berth-vmm", "qemu", "berth/qemu"
    row("(a) launch -> started as init (s)", bi, qi, "%.2f")
    row("    guest uptime at started as init (s)", bu, qu, "%.2f")
    row("(b) launch -> agent ready, engine open (s)", be, qe, "%.2f")
    row("    guest uptime at engine open (s)", bue, que, "%.2f")
    row("(c) VMM VmRSS at started as init (MiB)", kib(bir), kib(qir), "%.1f")
    row("    VMM VmRSS at engine open (MiB)", kib(ber), kib(qer), "%.1f")
    row("berth only: launch -> ready on vsock 1024 (s)", bv, "n/a", "%.2f")
    if (bn != "n/a" || qn != "n/a")
        row("emulated guest instructions, last marker (M)", mil(bn), mil(qn), "%.1f")
    if (bc != "n/a" || qc != "n/a")
        row("VMM CPU time (task-clock), last marker (s)", sec(bc), sec(qc), "%.2f")
}
function mil(v) { return v == "n/a" ? v : v / 1e6 }
function sec(v) { return v == "n/a" ? v : v / 1e3 }
function kib(v) { return v == "n/a" ? v : v / 1024 }
function num(v, f) { return v == "n/a" ? v : sprintf(f, v) }
function row(label, b, q, f) {
    printf fmt, label, num(b, f), num(q, f), (b == "n/a" || q == "n/a" || q == 0) ? "n/a" : sprintf("%.3f", b / q)
}'
echo "QEMU gets no vsock device here (no /dev/vhost-vsock on this host), so 'engine open'"
echo "(agent state open, about to serve) is the agent-ready point both VMMs reach;"
echo "'ready on vsock' is measured for berth-vmm only."
echo "per round (launch->marker s, VmRSS KiB, guest uptime s):"
awk '{printf "  berth-vmm round %d: init %s %s %s | engine %s %s %s | vsock %s %s %s\n", NR, $1, $2, $3, $4, $5, $6, $7, $8, $9}' "$work/berth.results"
[ ! -f "$work/qemu.results" ] ||
    awk '{printf "  qemu      round %d: init %s %s %s | engine %s %s %s\n", NR, $1, $2, $3, $4, $5, $6}' "$work/qemu.results"
[ "$perf" = 0 ] || echo "emulated instructions: to 'ready on vsock' for berth-vmm, to 'engine open' for QEMU"
