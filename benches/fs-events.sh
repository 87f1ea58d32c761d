#!/usr/bin/env bash
# Host edit -> container inotify event latency through a shared folder (the
# fs bench's events row, issue 18): a container in the machine VM runs the
# static recursive watcher tests/probe/inotify_watch.c on a bind mount
# `-v DIR:/w`; the host creates EVENTS files in DIR, GAP_MS apart, and stamps
# each create; each event line is stamped as it reaches the host through
# `berth run`'s output. Latency = arrival - create, so it includes the way
# back (container stdout -> agent -> vsock -> CLI): an upper bound of the
# event's own latency.
#
#   benches/fs-events.sh                 # EVENTS=200 GAP_MS=50
#   EVENTS=500 GAP_MS=20 benches/fs-events.sh
#
# Prints delivered/expected, p50, p99 and max in ms. The machine VM of a
# private BERTH_HOME sharing only the work directory; stopped at the end,
# its recorded VMM PID killed if still there. Nothing is killed by name.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
n=${EVENTS:-200}
gap_ms=${GAP_MS:-50}
berth=$root/target/release/berth
log() { echo "fs-events: $*" >&2; }
die() { log "$*"; exit 1; }
[ -x "$berth" ] || die "build first: PROFILE=release scripts/dev-build.sh"
command -v gcc >/dev/null || die "gcc needed (the watcher is built static)"
kernel=${BERTH_KERNEL:-$(ls -t "${BERTH_CACHE_DIR:-$HOME/.cache/berth}"/kernel/*/vmlinux 2>/dev/null | head -n 1 || true)}
[ -f "$kernel" ] || die "no guest kernel (kernel-config/build-kernel.sh)"
image_tar=$root/out/images/busybox.oci.tar
[ -f "$image_tar" ] || "$root/images/build-default-image.sh" >/dev/null

work=$(mktemp -d /tmp/berth-fsev.XXXXXX)
mkdir -p "$work/w" "$work/p"
export BERTH_HOME=$work/home BERTH_KERNEL=$kernel BERTH_MACHINE_SHARES=$work BERTH_SHARE_EVENTS=1
export BERTH_AGENT=$root/target/x86_64-unknown-linux-gnu/release/berth-agent
export BERTH_VMM=$root/target/release/berth-vmm
unset BERTH_ISOLATION
run_pid=""
cleanup() {
    set +e
    if [ -n "$run_pid" ] && kill -0 "$run_pid" 2>/dev/null; then kill "$run_pid"; wait "$run_pid" 2>/dev/null; fi
    local p
    p=$(cat "$BERTH_HOME/machine/vmm.pid" 2>/dev/null)
    timeout 120 "$berth" --isolation shared machine stop >/dev/null 2>&1 || log "machine stop failed"
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$work/"; then
        kill -KILL "$p"
    fi
    rm -rf "$work"
}
trap cleanup EXIT

gcc -static -O1 -o "$work/p/inotify_watch" "$root/tests/probe/inotify_watch.c"
"$berth" --isolation shared machine start >/dev/null || die "machine start failed"
"$berth" --isolation shared load -q -i "$image_tar" >/dev/null || die "load failed"
log "machine up; starting the watcher"
("$berth" --isolation shared run --rm -v "$work/w:/w" -v "$work/p:/p:ro" berth/busybox \
    /p/inotify_watch /w | while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done \
    >"$work/seen") &
run_pid=$!
for _ in $(seq 1 1200); do [ -e "$work/w/.ready" ] && break; sleep 0.5; done
[ -e "$work/w/.ready" ] || die "the watcher did not start"
gap=$(awk -v g="$gap_ms" 'BEGIN {printf "%.3f", g / 1000}')
for i in $(seq 1 "$n"); do
    echo "$EPOCHREALTIME f$i" >>"$work/sent"
    : >"$work/w/f$i"
    sleep "$gap"
done
: >"$work/w/END"
wait "$run_pid" || true
run_pid=""
awk -v n="$n" '
    FNR == NR { sent[$2] = $1; next }
    $2 == "n" && ($3 in sent) && !($3 in got) { got[$3] = 1; lat[++k] = ($1 - sent[$3]) * 1000 }
    END {
        if (k == 0) { print "delivered 0/" n; exit 1 }
        # insertion sort (k is small)
        for (i = 2; i <= k; i++) { v = lat[i]; j = i - 1; while (j > 0 && lat[j] > v) { lat[j + 1] = lat[j]; j-- } lat[j + 1] = v }
        p50 = lat[int((k - 1) * 0.50) + 1]; p99 = lat[int((k - 1) * 0.99) + 1]
        printf "events delivered %d/%d  latency ms: p50 %.1f  p99 %.1f  max %.1f\n", k, n, p50, p99, lat[k]
    }' "$work/sent" "$work/seen"
