#!/usr/bin/env bash
# The Docker Engine API, natively: berth's socket (`berth system service`)
# against a private dockerd, side by side, with the same client.
#
#   benches/api.sh                 # ROUNDS=10, CONTAINERS=100, LISTS=50
#
# Measured (medians):
# - `docker run --rm berth/busybox true` with Debian's docker CLI 20.10
#   (/usr/bin/docker), wall clock of the CLI process, ROUNDS times each,
#   alternating engines;
# - `GET /containers/json?all=1` over the Unix socket with CONTAINERS
#   created (not started) containers, LISTS requests each, timed by curl
#   (time_total).
# Ratio = berth / dockerd, below 1 is faster (the issue's goal: 0.5 or
# less on each). Every process this script starts is stopped by its PID.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${ROUNDS:-10}
containers=${CONTAINERS:-100}
lists=${LISTS:-50}
log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
for v in rounds containers lists; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "${v^^} must be a positive integer"
done
for tool in curl skopeo dockerd; do
    command -v "$tool" >/dev/null || die "$tool is not installed (scripts/deps.sh installs it)"
done
[ -x /usr/bin/docker ] || die "/usr/bin/docker (Debian's docker.io) is not installed"

berth=$root/target/release/berth
agent=$root/target/x86_64-unknown-linux-gnu/release/berth-agent
[ -x "$berth" ] && [ -x "$agent" ] || die "build first: PROFILE=release scripts/dev-build.sh"
image_tar=$root/out/images/busybox.oci.tar
[ -f "$image_tar" ] || "$root/images/build-default-image.sh" >/dev/null
image=berth/busybox:latest

work=$(mktemp -d /tmp/berth-bench-api.XXXXXX)
pids=()
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    [ -f "$work/berth/native/agent.pid" ] && kill "$(cat "$work/berth/native/agent.pid")" 2>/dev/null
    "$root/scripts/remove-native-networks.sh" "$work/berth"
    sleep 1
    grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT

export BERTH_HOME=$work/berth BERTH_AGENT=$agent BERTH_ISOLATION=native
"$berth" load -i "$image_tar" >/dev/null
"$berth" system service --socket "$work/berth.sock" >"$work/service.log" 2>&1 &
pids+=($!)

dockerd --iptables=false --exec-opt native.cgroupdriver=cgroupfs \
    --storage-driver=overlay2 --data-root="$work/docker" --exec-root="$work/docker-exec" \
    --pidfile="$work/docker.pid" --host="unix://$work/docker.sock" >"$work/dockerd.log" 2>&1 &
pids+=($!)

cli() { local sock=$1; shift; /usr/bin/docker -H "unix://$sock" "$@"; }
for sock in "$work/berth.sock" "$work/docker.sock"; do
    for _ in $(seq 150); do cli "$sock" version >/dev/null 2>&1 && break; sleep 0.2; done
    cli "$sock" version >/dev/null 2>&1 || die "no engine answers on $sock"
done
skopeo copy -q "oci-archive:$image_tar" "docker-archive:$work/img.tar:$image"
cli "$work/docker.sock" load -i "$work/img.tar" >/dev/null

# t <file> <cmd...>: appends the wall time (s) of one run, fails loudly.
t() {
    local out=$1; shift
    local a b
    a=$(date +%s.%N)
    "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; die "command failed: $*"; }
    b=$(date +%s.%N)
    echo "$a $b" | awk '{printf "%.4f\n", $2 - $1}' >>"$out"
}

log "warm-up"
for e in berth docker; do cli "$work/$e.sock" run --rm "$image" true >/dev/null; done
log "run --rm true, $rounds rounds"
for _ in $(seq "$rounds"); do
    for e in berth docker; do t "$work/run.$e" cli "$work/$e.sock" run --rm "$image" true; done
done

log "$containers containers, $lists list requests"
for e in berth docker; do
    for i in $(seq "$containers"); do
        cli "$work/$e.sock" create --name "bench$i" "$image" true >/dev/null
    done
done
for _ in $(seq "$lists"); do
    for e in berth docker; do
        n=$(curl -s --unix-socket "$work/$e.sock" -o "$work/list.json" -w '%{time_total}' \
            'http://localhost/v1.41/containers/json?all=1')
        echo "$n" >>"$work/list.$e"
    done
done
count=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/list.json")
[ "$count" -ge "$containers" ] || die "dockerd listed $count containers, wanted $containers"

python3 - "$work" "$containers" <<'PY'
import json, os, statistics, sys
work, n = sys.argv[1], sys.argv[2]
def med(name):
    return statistics.median(float(x) for x in open(os.path.join(work, name)).read().split())
print("Docker Engine API, natively (medians)")
print(f"  {'check':38}{'berth':>10}{'dockerd':>10}{'ratio':>8}")
for label, key in [("docker run --rm busybox true", "run"),
                   (f"GET /containers/json ({n} containers)", "list")]:
    b, d = med(f"{key}.berth"), med(f"{key}.docker")
    print(f"  {label:38}{b * 1000:8.1f}ms{d * 1000:8.1f}ms{b / d:8.2f}")
print("(docker CLI 20.10 for run; curl time_total for the list; dockerd with")
print(" overlay2 and cgroupfs; ratio = berth / dockerd, below 1 is faster)")
PY
