#!/usr/bin/env bash
# `compose up -d` and `down` of a 10-service project: berth native vs
# docker-compose 1.29 (Debian's) against a private dockerd, side by side.
#
#   benches/compose.sh                # ROUNDS=5, SERVICES=10
#   ROUNDS=3 SERVICES=2 benches/compose.sh
#
# The project: SERVICES busybox services (berth's default image, loaded into
# both engines), each `sleep` under `init: true` (so `down` does not wait out
# a stop timeout), all on the project's default network. Measured, wall
# clock of the CLI process, median over the rounds: `up -d` from nothing,
# a second `up -d` (nothing to do), `down`. Rounds alternate between the
# engines. Ratio = berth / docker-compose, below 1 is faster (the issue's
# goal: 0.3 or less).
# Every process this script starts is stopped by its PID at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${ROUNDS:-5}
services=${SERVICES:-10}
log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $services =~ ^[1-9][0-9]*$ ]] || die "SERVICES must be a positive integer"

berth=$root/target/release/berth
agent=$root/target/x86_64-unknown-linux-gnu/release/berth-agent
[ -x "$berth" ] && [ -x "$agent" ] || die "build first: PROFILE=release scripts/dev-build.sh"
image_tar=$root/out/images/busybox.oci.tar
[ -f "$image_tar" ] || "$root/images/build-default-image.sh" >/dev/null
image=berth/busybox:latest

work=$(mktemp -d /tmp/berth-bench-compose.XXXXXX)
pids=()
cleanup() {
    set +e
    (cd "$work/bench" 2>/dev/null && "$berth" compose down >/dev/null 2>&1)
    [ -n "${docker_ok:-}" ] && (cd "$work/bench" && dc down >/dev/null 2>&1)
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

mkdir -p "$work/bench"
{
    echo 'version: "3.8"'
    echo 'services:'
    for i in $(seq "$services"); do
        printf '  s%d:\n    image: %s\n    init: true\n    command: sleep 100000\n' "$i" "$image"
    done
} >"$work/bench/compose.yaml"

dc() { DOCKER_HOST="unix://$work/docker.sock" docker-compose "$@"; }
if command -v dockerd >/dev/null && command -v docker-compose >/dev/null && command -v skopeo >/dev/null; then
    dockerd --iptables=false --exec-opt native.cgroupdriver=cgroupfs \
        --storage-driver=overlay2 --data-root="$work/docker" --exec-root="$work/docker-exec" \
        --pidfile="$work/docker.pid" --host="unix://$work/docker.sock" >"$work/dockerd.log" 2>&1 &
    pids+=($!)
    docker_cli() { /usr/bin/docker -H "unix://$work/docker.sock" "$@"; }
    for _ in $(seq 150); do docker_cli version >/dev/null 2>&1 && break; sleep 0.2; done
    if docker_cli version >/dev/null 2>&1; then
        skopeo copy -q "oci-archive:$image_tar" "docker-archive:$work/img.tar:$image"
        docker_cli load -i "$work/img.tar" >/dev/null && docker_ok=1
    fi
fi
[ -n "${docker_ok:-}" ] || log "dockerd or docker-compose not usable: docker column skipped"

# t <file> <cmd...>: appends the wall time (s) of one run, fails loudly.
t() {
    local out=$1; shift
    local a b
    a=$(date +%s.%N)
    "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; die "command failed: $*"; }
    b=$(date +%s.%N)
    echo "$a $b" | awk '{printf "%.4f\n", $2 - $1}' >>"$out"
}

cd "$work/bench"
log "warm-up"
"$berth" compose up -d >/dev/null 2>&1 && "$berth" compose down >/dev/null 2>&1
[ -n "${docker_ok:-}" ] && dc up -d >/dev/null 2>&1 && dc down >/dev/null 2>&1

log "$services services, $rounds rounds"
for i in $(seq "$rounds"); do
    t "$work/up.berth" "$berth" compose up -d
    t "$work/noop.berth" "$berth" compose up -d
    t "$work/down.berth" "$berth" compose down
    if [ -n "${docker_ok:-}" ]; then
        t "$work/up.docker" dc up -d
        t "$work/noop.docker" dc up -d
        t "$work/down.docker" dc down
    fi
done

python3 - "$work" "$services" <<'PY'
import os, statistics, sys
work, n = sys.argv[1], sys.argv[2]
def med(name):
    p = os.path.join(work, name)
    if not os.path.exists(p):
        return None
    return statistics.median(float(x) for x in open(p).read().split())
print(f"compose, {n} services (medians, wall clock of the CLI)")
print(f"  {'step':16}{'berth':>10}{'docker-compose':>16}{'ratio':>8}")
for label, key in [("up -d", "up"), ("up -d (no-op)", "noop"), ("down", "down")]:
    b, d = med(f"{key}.berth"), med(f"{key}.docker")
    ds = f"{d * 1000:14.0f}ms" if d else f"{'-':>16}"
    r = f"{b / d:8.2f}" if d else f"{'-':>8}"
    print(f"  {label:16}{b * 1000:8.0f}ms{ds}{r}")
print("(berth native; docker-compose 1.29 against a private dockerd, overlay2;")
print(" ratio = berth / docker-compose, below 1 is faster)")
PY
