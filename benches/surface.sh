#!/usr/bin/env bash
# docker's container surface at scale (issue 20's benchmark): the berth CLI
# natively against the docker CLI and a private dockerd, with the same
# CONTAINERS created (not started) containers in each.
#
#   benches/surface.sh              # CONTAINERS=200, ROUNDS=10
#   CONTAINERS=50 ROUNDS=3 benches/surface.sh
#
# Measured, wall clock of the CLI process, median over ROUNDS, the engines
# alternating within each round:
#   ps -a
#   inspect of all CONTAINERS (one command, every name)
#   ps -a --format '{{.Names}}'
#   system df
# Ratio = berth / docker, below 1 is faster (the issue's goal: 0.5 or less
# on each). dockerd: overlay2, cgroupfs, no bridge, own socket and data
# root; Debian's docker CLI 20.10 (/usr/bin/docker). Every process this
# script starts is stopped by its PID.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
containers=${CONTAINERS:-200}
rounds=${ROUNDS:-10}
log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
for v in containers rounds; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "${v^^} must be a positive integer"
done
for tool in skopeo dockerd; do
    command -v "$tool" >/dev/null || die "$tool is not installed (scripts/deps.sh installs it)"
done
[ -x /usr/bin/docker ] || die "/usr/bin/docker (Debian's docker.io) is not installed"

berth=$root/target/release/berth
agent=$root/target/x86_64-unknown-linux-gnu/release/berth-agent
[ -x "$berth" ] && [ -x "$agent" ] || die "build first: PROFILE=release scripts/dev-build.sh"
image_tar=$root/out/images/busybox.oci.tar
[ -f "$image_tar" ] || "$root/images/build-default-image.sh" >/dev/null
image=berth/busybox:latest

work=$(mktemp -d /tmp/berth-bench-surface.XXXXXX)
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

docker_cli() { /usr/bin/docker -H "unix://$work/docker.sock" "$@"; }
dockerd --iptables=false --bridge=none --exec-opt native.cgroupdriver=cgroupfs \
    --storage-driver=overlay2 --data-root="$work/docker" --exec-root="$work/docker-exec" \
    --pidfile="$work/docker.pid" --host="unix://$work/docker.sock" >"$work/dockerd.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do docker_cli version >/dev/null 2>&1 && break; sleep 0.2; done
docker_cli version >/dev/null 2>&1 || { cat "$work/dockerd.log" >&2; die "dockerd does not answer"; }
skopeo copy -q "oci-archive:$image_tar" "docker-archive:$work/img.tar:$image"
docker_cli load -i "$work/img.tar" >/dev/null

log "creating $containers containers in each engine"
names=()
for i in $(seq "$containers"); do
    names+=("surf$i")
    "$berth" create --name "surf$i" "$image" true >/dev/null
    docker_cli create --network none --name "surf$i" "$image" true >/dev/null
done
n=$("$berth" ps -aq | wc -l)
[ "$n" -eq "$containers" ] || die "berth lists $n containers, wanted $containers"
n=$(docker_cli ps -aq | wc -l)
[ "$n" -eq "$containers" ] || die "dockerd lists $n containers, wanted $containers"

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
"$berth" ps -a >/dev/null
docker_cli ps -a >/dev/null
log "$rounds rounds"
for _ in $(seq "$rounds"); do
    t "$work/ps.berth" "$berth" ps -a
    t "$work/ps.docker" docker_cli ps -a
    t "$work/inspect.berth" "$berth" inspect "${names[@]}"
    t "$work/inspect.docker" docker_cli inspect "${names[@]}"
    t "$work/names.berth" "$berth" ps -a --format '{{.Names}}'
    t "$work/names.docker" docker_cli ps -a --format '{{.Names}}'
    t "$work/df.berth" "$berth" system df
    t "$work/df.docker" docker_cli system df
done

python3 - "$work" "$containers" <<'PY'
import os, statistics, sys
work, n = sys.argv[1], sys.argv[2]
def med(name):
    return statistics.median(float(x) for x in open(os.path.join(work, name)).read().split())
print(f"docker's container surface, {n} created containers, natively (medians)")
print(f"  {'command':34}{'berth':>10}{'docker':>10}{'ratio':>8}")
for label, key in [("ps -a", "ps"), (f"inspect (all {n})", "inspect"),
                   ("ps -a --format '{{.Names}}'", "names"), ("system df", "df")]:
    b, d = med(f"{key}.berth"), med(f"{key}.docker")
    print(f"  {label:34}{b * 1000:8.1f}ms{d * 1000:8.1f}ms{b / d:8.2f}")
print("(wall clock of each CLI; docker CLI 20.10 and dockerd with overlay2 and")
print(" cgroupfs; ratio = berth / docker, below 1 is faster)")
PY
