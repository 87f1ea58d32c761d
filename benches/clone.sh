#!/usr/bin/env bash
# `--isolation vm` start benchmark (issue #8): one table, one run, of
#   berth clone   `berth --isolation vm run --rm berth/busybox true` restoring
#                 the cached snapshot (launch -> container exited)
#   berth cold    the same with BERTH_VM_SNAPSHOTS=0 (cold boot, no snapshot)
#   berth stream  a clone with BERTH_IMAGE_DISKS=0: the image streamed over
#                 vsock and unpacked by the guest instead of attached on a
#                 read-only image disk unpacked once on the host
#   QEMU microvm  cold boot of the same kernel + root disk to agent ready
#                 (benches/boot.sh, which also times berth-vmm's cold boot)
#   docker        `docker run --rm berth/busybox true` (when a daemon answers)
# as seconds and as ratios to the berth clone. For the berth runs the time to
# "agent ready" (VM answering on vsock, after CloneInit for clones) comes from
# the `BERTH_VM_TIMINGS=1` stderr line. Rounds alternate clone/cold/docker;
# medians.
#
#   ROUNDS=1 benches/clone.sh
#   DOCKER_HOST=unix:///tmp/dk/docker.sock ROUNDS=3 benches/clone.sh
#
# Without a docker daemon answering, a private dockerd is started for the run.
#
# Environment: ROUNDS (3), BERTH_KERNEL (see boot.sh), SKIP_QEMU=1 (no
# boot.sh), DOCKER (docker CLI, `docker`). Uses target/release/berth,
# berth-vmm and the static agent (PROFILE=release scripts/dev-build.sh) with
# a private BERTH_HOME that is deleted afterwards.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${ROUNDS:-3}
log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[ -w /dev/kvm ] || die "/dev/kvm is not usable"

berth=$root/target/release/berth
export BERTH_AGENT=$root/target/x86_64-unknown-linux-gnu/release/berth-agent
[ -x "$berth" ] && [ -x "$BERTH_AGENT" ] && [ -x "$root/target/release/berth-vmm" ] ||
    die "build first: PROFILE=release scripts/dev-build.sh"
image_tar=$root/out/images/busybox.oci.tar
[ -f "$image_tar" ] || "$root/images/build-default-image.sh" "$image_tar" >&2
image=berth/busybox

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-clone.XXXXXX")
pids=()
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    sleep 1
    grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT
export BERTH_HOME=$work/home
unset BERTH_ISOLATION

"$berth" --isolation vm load -q -i "$image_tar" >/dev/null

# One timed berth run: prints "total_s ready_s image_s" (image_s: image
# disk attached or image streamed, from the BERTH_VM_TIMINGS line).
berth_run() {
    local t0 t1 ready
    t0=$(date +%s.%N)
    BERTH_VM_TIMINGS=1 "$@" "$berth" --isolation vm run --rm "$image" true 2>"$work/err" ||
        { cat "$work/err" >&2; die "berth run failed"; }
    t1=$(date +%s.%N)
    ready=$(sed -n 's/.*agent ready in \([0-9]*\) ms.*/\1/p' "$work/err" | tail -n 1)
    img=$(sed -n 's/.*image \(disk attached\|streamed\) in \([0-9]*\) ms.*/\2/p' "$work/err" | tail -n 1)
    grep -h '^berth: vm:' "$work/err" >&2 || true
    echo "$(echo "$t1 - $t0" | bc -l) $(echo "${ready:-0} / 1000" | bc -l) $(echo "${img:-0} / 1000" | bc -l)"
}

log "first run: cold boot + snapshot"
berth_run env BERTH_VM_SNAPSHOTS=1 >"$work/first"
log "first run (cold boot, snapshot made): $(cat "$work/first")"

docker_ok=0
if command -v dockerd >/dev/null && ! "${DOCKER:-docker}" info >/dev/null 2>&1; then
    # No daemon answers: a private dockerd 20.10 (as benches/build.sh).
    dockerd --iptables=false --bridge=none --exec-opt native.cgroupdriver=cgroupfs \
        --storage-driver=overlay2 --data-root="$work/dockerd-root" --exec-root="$work/dockerd-exec" \
        --pidfile="$work/docker.pid" --host="unix://$work/docker.sock" >"$work/dockerd.log" 2>&1 &
    pids+=($!)
    export DOCKER_HOST=unix://$work/docker.sock
    for _ in $(seq 150); do "${DOCKER:-docker}" version >/dev/null 2>&1 && break; sleep 0.2; done
fi
if command -v "${DOCKER:-docker}" >/dev/null && "${DOCKER:-docker}" info >/dev/null 2>&1; then
    if ! "${DOCKER:-docker}" image inspect "$image" >/dev/null 2>&1; then
        # docker 20.10 loads docker archives, not OCI ones.
        skopeo copy -q "oci-archive:$image_tar" "docker-archive:$work/img.tar:$image" >&2 &&
            "${DOCKER:-docker}" load -i "$work/img.tar" >/dev/null 2>&1 || true
    fi
    "${DOCKER:-docker}" image inspect "$image" >/dev/null 2>&1 && docker_ok=1
fi
[ $docker_ok = 1 ] || log "no docker daemon (or image): docker column n/a"

for r in $(seq 1 "$rounds"); do
    berth_run env BERTH_VM_SNAPSHOTS=1 >>"$work/clone"
    log "round $r: clone $(tail -n 1 "$work/clone")"
    berth_run env BERTH_VM_SNAPSHOTS=0 >>"$work/cold"
    log "round $r: cold  $(tail -n 1 "$work/cold")"
    berth_run env BERTH_VM_SNAPSHOTS=1 BERTH_IMAGE_DISKS=0 >>"$work/stream"
    log "round $r: stream $(tail -n 1 "$work/stream")"
    if [ $docker_ok = 1 ]; then
        t0=$(date +%s.%N)
        "${DOCKER:-docker}" run --rm "$image" true
        t1=$(date +%s.%N)
        echo "$t1 - $t0" | bc -l >>"$work/docker"
        log "round $r: docker $(tail -n 1 "$work/docker")"
    fi
done

qemu=n/a vmm_cold=n/a
if [ "${SKIP_QEMU:-0}" != 1 ] && command -v qemu-system-x86_64 >/dev/null; then
    log "QEMU microvm vs berth-vmm cold boot: benches/boot.sh ($rounds rounds)"
    ROUNDS=$rounds "$root/benches/boot.sh" >"$work/boot.out" || die "boot.sh failed"
    line=$(grep '^(b) launch -> agent ready' "$work/boot.out")
    vmm_cold=$(awk '{print $(NF-2)}' <<<"$line")
    qemu=$(awk '{print $(NF-1)}' <<<"$line")
fi

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "n/a"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
col() { [ -f "$work/$1" ] && awk -v c="$2" '{print $c}' "$work/$1" | median || echo n/a; }
clone_total=$(col clone 1) clone_ready=$(col clone 2) clone_image=$(col clone 3)
stream_total=$(col stream 1) stream_image=$(col stream 3)
cold_total=$(col cold 1) cold_ready=$(col cold 2)
docker_total=$(col docker 1)

echo
echo "berth --isolation vm: clone vs cold boot vs QEMU microvm vs docker; $rounds round(s), medians"
echo "1 vCPU / $(nproc)-core host; guest kernel $(uname -r) host; load avg $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v ct="$clone_total" -v cr="$clone_ready" -v dt="$cold_total" -v dr="$cold_ready" \
    -v q="$qemu" -v vc="$vmm_cold" -v d="$docker_total" \
    -v st="$stream_total" -v ci="$clone_image" -v si="$stream_image" 'BEGIN {
    fmt = "%-62s %9s %14s\n"
    printf fmt, "", "seconds", "x berth clone"
    row("berth run --rm --isolation vm, clone: start -> exit", ct, ct)
    row("berth run --rm --isolation vm, cold boot: start -> exit", dt, ct)
    row("berth clone, image streamed (no image disk): start -> exit", st, ct)
    row("docker run --rm: start -> exit", d, ct)
    printf "%s\n", "image into the clone (x image disk):"
    row("read-only image disk: attach + mount + link", ci, ci)
    row("streamed over vsock + unpacked in the guest", si, ci)
    printf "%s\n", "agent ready (VM booted or restored, answering):"
    row("berth clone: start -> agent ready (restore + CloneInit)", cr, cr)
    row("berth cold boot: start -> agent ready", dr, cr)
    row("berth-vmm cold boot: launch -> engine open (boot.sh)", vc, cr)
    row("QEMU microvm cold boot: launch -> engine open (boot.sh)", q, cr)
}
function row(label, v, base) {
    printf fmt, label, (v == "n/a" ? v : sprintf("%.2f", v)),
        (v == "n/a" || base == "n/a" || base == 0) ? "n/a" : sprintf("%.2f", v / base)
}'
echo "per round (total_s ready_s image_s): clone: $(tr '\n' ';' <"$work/clone") cold: $(tr '\n' ';' <"$work/cold") stream: $(tr '\n' ';' <"$work/stream")"
[ -f "$work/docker" ] && echo "docker: $(tr '\n' ';' <"$work/docker")"
true
