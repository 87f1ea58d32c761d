#!/usr/bin/env bash
# Machine VM efficiency (issue 25), one run, side by side:
#   1. boot -> agent ready: berth-vmm vs QEMU `-M microvm` with the same
#      kernel, root disk (the agent as /init) and command line
#      (benches/boot.sh, ROUNDS=1 by default), and the ratio;
#   2. `berth machine start` (the real machine: data disk, shares, network)
#      -> agent ready, with the CLI's own breakdown (timings.json);
#   3. `berth run --rm berth/busybox true` in the warm machine, with the
#      guest kernel's work for it (`berth machine counters` before and
#      after: forks, context switches, interrupts, page faults, CPU ticks;
#      with PERF=1 also the emulated instructions, perf on the VMM);
#   4. the idle machine VMM's CPU (utime+stime of the VMM process from
#      /proc/<pid>/stat) over IDLE_S seconds, no containers running;
#   5. the same with one sleeping container (`run -d berth/busybox sleep`;
#      SLEEPER=0 skips it): what a running container's shim costs idle;
#   6. memory given back: a container fills a 300 MiB tmpfs (HOG_MIB) in
#      the machine and waits; the VMM's VmRSS is read, the container
#      deletes the file (300 MiB of touched guest memory freed), and the
#      VmRSS is sampled when the guest has freed it and every second for
#      10 s (RSS_S) after. Done with the
#      virtio-balloon (free page reporting, the default) and then, after a
#      machine restart with BERTH_BALLOON=0, without it; prints the share of
#      the 300 MiB back on the host at the end of the window. RSS=0 skips
#      it; RSS_OFF=0 skips the second round; RSS_ONLY=1 runs only steps 2
#      and 6.
#   7. suspend and resume: `berth machine suspend` with a `--restart
#      always` sleeper running, then the first command answered (`ps`,
#      which resumes the machine from its snapshot), and its ratio to
#      step 2's cold start (goal <= 0.2). SUSPEND=0 skips it.
# The machine runs in a private BERTH_HOME (removed at the end) and is
# stopped afterwards.
#
#   benches/machine.sh
#   ROUNDS=3 IDLE_S=60 MEM_MIB=512 benches/machine.sh
#
# Environment: PERF=1 (count the emulated guest instructions and the VMMs'
# CPU time of the bare boots, see boot.sh), ROUNDS (boot rounds, 1), IDLE_S (60), SETTLE_S (wait after
# the last run before the idle window, 30), SLEEPER (1), MEM_MIB (guest RAM for
# both VMMs in step 1 and for the machine, default: the machine's default),
# BERTH_KERNEL, IMAGE (out/images/busybox.oci.tar), RSS (1), RSS_OFF (1), RSS_ONLY (0),
# HOG_MIB (300), RSS_S (10), KEEP=1 keeps the
# BERTH_HOME. Needs the release binaries (PROFILE=release scripts/dev-build.sh).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
idle_s=${IDLE_S:-60}
settle_s=${SETTLE_S:-30}
image=${IMAGE:-$root/out/images/busybox.oci.tar}
berth=$root/target/release/berth
agent=$root/target/x86_64-unknown-linux-gnu/release/berth-agent

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[[ $idle_s =~ ^[1-9][0-9]*$ ]] || die "IDLE_S must be a positive integer"
[[ $settle_s =~ ^[0-9]+$ ]] || die "SETTLE_S must be a whole number"
[ -x "$berth" ] || die "missing $berth (PROFILE=release scripts/dev-build.sh)"
[ -x "$agent" ] || die "missing $agent (PROFILE=release scripts/dev-build.sh)"
[ -f "$image" ] || die "missing $image (images/build-default-image.sh)"

home=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-machine.XXXXXX")
cleanup() {
    BERTH_HOME=$home "$berth" machine stop >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" = 1 ]; then log "BERTH_HOME kept: $home"; else rm -rf "$home"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export BERTH_HOME=$home
# The static agent: a dynamically linked target/release/berth-agent (from a
# host-side `cargo build`) next to berth would otherwise win and cannot run
# as the guest's /init.
export BERTH_AGENT=$agent
[ -z "${MEM_MIB:-}" ] || export BERTH_MACHINE_MEM_MIB=$MEM_MIB
# = the machine's default (host-core machine.rs): 512 MiB on kvm_pvm hosts.
mem=${MEM_MIB:-$(
    if [ -e /sys/module/kvm_pvm ]; then echo 512; else echo 2048; fi
)}

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
rss_only=${RSS_ONLY:-0}
hog_mib=${HOG_MIB:-300}
rss_s=${RSS_S:-10}
[[ $hog_mib =~ ^[1-9][0-9]*$ ]] || die "HOG_MIB must be a positive integer"
[[ $rss_s =~ ^[1-9][0-9]*$ ]] || die "RSS_S must be a positive integer"

log "host: $([ -e /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

# ------------------------------------------------------------------ 1. boot vs QEMU
b_boot=n/a q_boot=n/a b_vsock=n/a insns="" vmm_cpu="" boot_out=""
if [ "$rss_only" != 1 ]; then
log "1/6 boot: berth-vmm vs QEMU microvm (benches/boot.sh, $mem MiB)"
boot_out=$(ROUNDS=${ROUNDS:-1} MEM_MIB=$mem "$root/benches/boot.sh")
echo "$boot_out" >&2
row() { echo "$boot_out" | grep -F "$1" | head -n 1; }
eng=$(row "(b) launch -> agent ready, engine open (s)")
b_boot=$(awk '{print $(NF-2)}' <<<"$eng")
q_boot=$(awk '{print $(NF-1)}' <<<"$eng")
b_vsock=$(row "berth only: launch -> ready on vsock" | awk '{print $(NF-2)}')
# PERF=1 (passed on to boot.sh): emulated guest instructions of each boot.
insns=$(row "emulated guest instructions, last marker (M)" || true)
b_insns=""
q_insns=""
if [ -n "$insns" ]; then
    b_insns=$(awk '{print $(NF-2)}' <<<"$insns")
    q_insns=$(awk '{print $(NF-1)}' <<<"$insns")
fi
# PERF=1: the VMMs' CPU time to the last marker (less load-bound than wall).
vmm_cpu=$(row "VMM CPU time (task-clock), last marker (s)" || true)
fi

# ------------------------------------------------------------------ 2. machine start
log "2/6 berth machine start"
t0=$(now)
"$berth" machine start >/dev/null 2>&1 || die "machine start failed (see $home/machine/serial.log)"
m_start=$(secs "$t0" "$(now)")
timings=$(cat "$home/machine/timings.json")
log "machine timings: $timings"
vmm_pid=$(cat "$home/machine/vmm.pid")

log "loading $image"
"$berth" load -i "$image" >/dev/null

run_s=n/a idle_pct=n/a sleeper_pct=n/a
if [ "$rss_only" != 1 ]; then
# ------------------------------------------------------------------ 3. run --rm true
log "3/6 run --rm berth/busybox true (twice; the second is reported)"
"$berth" run --rm berth/busybox true >/dev/null
# The guest kernel's counters around the timed run (berth machine
# counters); two reads back to back first give what a read itself costs.
counters() { "$berth" machine counters --format json; }
c0=$(counters)
c1=$(counters)
perf_pid=""
if [ "${PERF:-0}" = 1 ]; then
    perf stat -x , -o "$home/run.perf" -e kvm:kvm_emulate_insn -p "$vmm_pid" 2>/dev/null &
    perf_pid=$!
    sleep 1
fi
t0=$(now)
"$berth" run --rm berth/busybox true >/dev/null
run_s=$(secs "$t0" "$(now)")
c2=$(counters)
run_insns=""
if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" && wait "$perf_pid" || true
    run_insns=$(awk -F, '/kvm_emulate_insn/ {printf "%.1f", $1 / 1e6}' "$home/run.perf")
fi
# delta NAME: the run's change of a counter, less one read's own.
delta() {
    python3 -c 'import json,sys; a,b,c=(json.loads(x) for x in sys.argv[2:5]); k=sys.argv[1]; print((c[k]-b[k])-(b[k]-a[k]) if all(k in x for x in (a,b,c)) else 0)' "$1" "$c0" "$c1" "$c2"
}

# ------------------------------------------------------------------ 4. idle CPU
log "4/6 idle VMM CPU over $idle_s s (no containers), after ${settle_s} s to settle"
# The guest finishes a container's teardown after `run --rm` returns.
sleep "$settle_s"
hz=$(getconf CLK_TCK)
a=$(cpu_ticks "$vmm_pid")
sleep "$idle_s"
b=$(cpu_ticks "$vmm_pid")
idle_pct=$(awk -v a="$a" -v b="$b" -v hz="$hz" -v s="$idle_s" 'BEGIN {printf "%.1f", (b - a) * 100 / hz / s}')

# ------------------------------------------------------------------ 5. idle, one sleeper
sleeper_pct=n/a
if [ "${SLEEPER:-1}" != 0 ]; then
    log "5/6 idle VMM CPU over $idle_s s with one sleeping container, after ${settle_s} s to settle"
    "$berth" run -d --name bench-sleeper berth/busybox sleep 100000 >/dev/null
    sleep "$settle_s"
    a=$(cpu_ticks "$vmm_pid")
    sleep "$idle_s"
    b=$(cpu_ticks "$vmm_pid")
    sleeper_pct=$(awk -v a="$a" -v b="$b" -v hz="$hz" -v s="$idle_s" 'BEGIN {printf "%.1f", (b - a) * 100 / hz / s}')
    "$berth" rm -f bench-sleeper >/dev/null 2>&1 || true
fi
fi

# ------------------------------------------------------------------ 6. memory given back
# One round in the running machine: prints "full_kib freed_kib samples_kib..."
# (the VmRSS with the tmpfs full, when the guest has freed it, then one
# sample a second). The container fills a tmpfs and waits for a line on its
# stdin (a fifo this script holds open) before it deletes the file itself:
# the full reading is not raced by the guest's reporting (which starts 2 s
# after a free), and the window starts when the guest has freed the pages
# ("freed"), not after a container teardown (minutes in the emulated
# guest). `head -c` copies /dev/zero with sendfile (busybox), so the guest
# kernel fills the pages with plain stores: dd's read/write copies go
# through `rep movsq`, which kvm_pvm emulates per iteration (4x slower here).
hog_round() {
    local pid=$1 full freed samples="" i cli out=$home/hog.out fifo=$home/hog.in t0
    # Attached, its output streamed to a host file: polling `berth logs`
    # would keep the guest's one vCPU busy with agent requests.
    : >"$out"
    rm -f "$fifo"
    mkfifo "$fifo"
    t0=$(now)
    "$berth" run -i --rm --tmpfs "/t:size=$((hog_mib + 16))m" berth/busybox \
        sh -c "head -c ${hog_mib}m /dev/zero >/t/x && echo filled; read go; rm /t/x && echo freed; read done" \
        <"$fifo" >"$out" 2>&1 &
    cli=$!
    exec 3>"$fifo"
    for i in $(seq 3600); do
        grep -qx filled "$out" && break
        [ "$i" != 3600 ] || die "the hog container did not fill its tmpfs in 3600 s"
        sleep 1
    done
    full=$(rss_kib "$pid")
    log "run -> tmpfs full: $(secs "$t0" "$(now)") s"
    t0=$(now)
    echo go >&3
    for i in $(seq 3600); do
        grep -qx freed "$out" && break
        [ "$i" != 3600 ] || die "the hog container did not free its tmpfs in 3600 s"
        sleep 1
    done
    freed=$(rss_kib "$pid")
    log "rm -> freed in the guest: $(secs "$t0" "$(now)") s"
    for i in $(seq "$rss_s"); do
        sleep 1
        samples="$samples $(rss_kib "$pid")"
    done
    echo done >&3
    exec 3>&-
    wait "$cli" || true
    rm -f "$fifo"
    # What the VMM counted itself (berth-vmm --balloon-stats): released
    # since boot, and of it what the host held.
    [ ! -f "$home/machine/balloon.json" ] || log "balloon counters: $(tr -d ' \n' <"$home/machine/balloon.json")"
    echo "$full $freed$samples"
}
rss_on="" rss_off=""
if [ "${RSS:-1}" != 0 ]; then
    log "6/6 VmRSS after a container frees $hog_mib MiB, balloon on"
    rss_on=$(hog_round "$vmm_pid")
    log "balloon on: VmRSS full, when the guest freed it, then every second (KiB): $rss_on"
    if [ "${RSS_OFF:-1}" != 0 ]; then
        "$berth" machine stop >/dev/null
        log "6/6 the same after a restart with BERTH_BALLOON=0"
        BERTH_BALLOON=0 "$berth" machine start >/dev/null 2>&1 || die "machine start (BERTH_BALLOON=0) failed"
        rss_off=$(hog_round "$(cat "$home/machine/vmm.pid")")
        log "balloon off: VmRSS full, when the guest freed it, then every second (KiB): $rss_off"
    fi
fi
# ------------------------------------------------------------------ 7. suspend and resume
# `machine suspend` (snapshot, VMM gone), then the first command answered
# (`ps`, which resumes the machine), against step 2's cold machine start.
# SUSPEND=0 skips it.
suspend_s=n/a resume_s=n/a resume_ratio=n/a
if [ "${SUSPEND:-1}" != 0 ]; then
    log "7 machine suspend, then the first ps (resume)"
    "$berth" run -d --name bench-suspend --restart always berth/busybox sleep 100000 >/dev/null
    t0=$(now)
    if "$berth" machine suspend >/dev/null 2>"$home/suspend.err"; then
        suspend_s=$(secs "$t0" "$(now)")
        t0=$(now)
        "$berth" ps >/dev/null || die "ps after the suspend failed"
        resume_s=$(secs "$t0" "$(now)")
        resume_ratio=$(awk -v r="$resume_s" -v c="$m_start" 'BEGIN {if (c > 0) printf "%.2f", r / c; else print "n/a"}')
    else
        log "suspend refused: $(cat "$home/suspend.err")"
    fi
    "$berth" rm -f bench-suspend >/dev/null 2>&1 || true
fi

# "full samples..." -> "full_MiB -> last_MiB (share of HOG_MIB back)".
rss_row() {
    awk -v hog="$hog_mib" '{full = $1; last = $NF; printf "%.0f -> %.0f MiB, %.0f %%", full / 1024, last / 1024, (full - last) / 1024 * 100 / hog}' <<<"$1"
}

# ------------------------------------------------------------------ report
echo
echo "machine VM efficiency, $(date -u +%Y-%m-%dT%H:%MZ), $([ -e /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm) host, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), guest RAM $mem MiB"
fmt="%-52s %10s %10s %11s\n"
printf "$fmt" "" berth qemu berth/qemu
ratio=n/a
[ "$b_boot" = n/a ] || ratio=$(awk -v b="$b_boot" -v q="$q_boot" 'BEGIN {if (q > 0 && b > 0) printf "%.2f", b / q; else print "n/a"}')
printf "$fmt" "boot -> agent ready (engine open), bare VM (s)" "$b_boot" "$q_boot" "$ratio"
printf "$fmt" "boot -> ready on vsock, bare VM (s)" "$b_vsock" "n/a" ""
[ -z "$insns" ] || printf "$fmt" "emulated guest insns, bare boot (M; berth: vsock)" "$b_insns" "$q_insns" \
    "$(awk -v b="$b_insns" -v q="$q_insns" 'BEGIN {if (q > 0) printf "%.2f", b / q; else print "n/a"}')"
if [ -n "$vmm_cpu" ]; then
    read -r cpu_b cpu_q cpu_r <<<"$(awk '{print $(NF-2), $(NF-1), $NF}' <<<"$vmm_cpu")"
    printf "$fmt" "VMM CPU time, bare boot (s; berth: vsock)" "$cpu_b" "$cpu_q" "$cpu_r"
fi
printf "$fmt" "berth machine start -> agent answers (s)" "$m_start" "" ""
printf "$fmt" "run --rm berth/busybox true, warm machine (s)" "$run_s" "" ""
printf "$fmt" "machine suspend (s)" "$suspend_s" "" ""
printf "$fmt" "resume: suspended -> first ps answered (s)" "$resume_s" "" ""
printf "$fmt" "  resume / cold machine start (goal <= 0.2)" "$resume_ratio" "" ""
# RSS_ONLY=1 skipped step 3: no counters to print.
if [ "$rss_only" != 1 ]; then
printf "$fmt" "  guest forks" "$(delta forks)" "" ""
printf "$fmt" "  guest context switches" "$(delta context_switches)" "" ""
printf "$fmt" "  guest interrupts" "$(delta interrupts)" "" ""
printf "$fmt" "  guest page faults" "$(delta page_faults)" "" ""
printf "$fmt" "  guest CPU, system + user (ticks of 10 ms)" "$(( $(delta cpu_system_ticks) + $(delta cpu_user_ticks) ))" "" ""
printf "$fmt" "  guest disk flushes (fsync: journal commits)" "$(delta disk_flushes)" "" ""
[ -z "$run_insns" ] || printf "$fmt" "  emulated guest instructions (M)" "$run_insns" "" ""
fi
printf "$fmt" "idle machine VMM CPU over ${idle_s} s (% of a core)" "$idle_pct" "" ""
printf "$fmt" "  the same, one sleeping container (% of a core)" "$sleeper_pct" "" ""
if [ -n "$rss_on" ]; then
    printf "$fmt" "VMM VmRSS, $hog_mib MiB freed, full -> +${rss_s} s, balloon" "$(rss_row "$rss_on")" "" ""
    [ -z "$rss_off" ] || printf "$fmt" "  the same, BERTH_BALLOON=0" "$(rss_row "$rss_off")" "" ""
    echo "VmRSS when the guest freed it, then per second (MiB), balloon: $(awk '{for (i = 2; i <= NF; i++) printf "%.0f ", $i / 1024}' <<<"$rss_on")"
    [ -z "$rss_off" ] || echo "the same, BERTH_BALLOON=0: $(awk '{for (i = 2; i <= NF; i++) printf "%.0f ", $i / 1024}' <<<"$rss_off")"
fi
echo "machine start breakdown (timings.json): $timings"
