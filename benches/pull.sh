#!/usr/bin/env bash
# Pull benchmark: `berth pull` (fresh BERTH_HOME, native placement: download,
# verify, hand to the agent, unpack) vs `skopeo copy docker://… oci:…` +
# `umoci unpack` (download, verify, unpack) of the same image from the same
# local registry (Debian's docker-registry on 127.0.0.1, plain HTTP).
# Rounds alternate the order; the table shows medians and the ratio.
#
#   benches/pull.sh               # ROUNDS=3, 4 random layers of 16 MiB
#   ROUNDS=5 LAYERS=6 LAYER_MB=16 benches/pull.sh
#
# The image: the default busybox image plus LAYERS layers of LAYER_MB MiB of
# random data each (incompressible, so the transfer really is that big),
# built with umoci and pushed with skopeo. The registry and every agent are
# killed by the PIDs this script started.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${ROUNDS:-3}
layers=${LAYERS:-4}
layer_mb=${LAYER_MB:-16}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
for t in docker-registry skopeo umoci python3; do
    command -v "$t" >/dev/null || die "$t missing (scripts/deps.sh)"
done
berth=$root/target/release/berth
agent=$root/target/x86_64-unknown-linux-gnu/release/berth-agent
[ -x "$berth" ] && [ -x "$agent" ] || die "build first: PROFILE=release scripts/dev-build.sh"
image=$root/out/images/busybox.oci.tar
[ -f "$image" ] || "$root/images/build-default-image.sh" >/dev/null

work=$(mktemp -d /tmp/berth-pull-bench.XXXXXX)
reg_pid=
cleanup() {
    if [ -n "$reg_pid" ]; then
        kill "$reg_pid" 2>/dev/null || true
        wait "$reg_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# ------------------------------------------------------------- registry
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/config.yml" 2>"$work/registry.log" &
reg_pid=$!
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break
    sleep 0.1
done
ref=127.0.0.1:$port/bench/big:v1

# ---------------------------------------------------------------- image
log "building a $((layers * layer_mb)) MiB image ($layers random layers)"
mkdir -p "$work/src"
tar -xf "$image" -C "$work/src"
umoci unpack --image "$work/src:latest" "$work/bundle" >/dev/null
for i in $(seq "$layers"); do
    head -c "$((layer_mb * 1024 * 1024))" /dev/urandom > "$work/bundle/rootfs/data$i.bin"
    umoci repack --refresh-bundle --image "$work/src:latest" "$work/bundle"
done
rm -rf "$work/bundle"
skopeo copy -q --dest-tls-verify=false "oci:$work/src:latest" "docker://$ref"
size=$(du -sm "$work/registry" | cut -f1)
log "registry holds ${size} MiB"

# ---------------------------------------------------------------- timing
now() { date +%s.%N; }

run_berth() {
    local home=$work/home
    rm -rf "$home"
    local t0 t1
    t0=$(now)
    BERTH_HOME=$home BERTH_AGENT=$agent "$berth" --isolation native pull -q "$ref" >/dev/null
    t1=$(now)
    local pid
    pid=$(cat "$home/native/agent.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -rf "$home"
    python3 -c "print(f'{$t1-$t0:.3f}')"
}

run_skopeo() {
    local d=$work/oci
    rm -rf "$d"
    mkdir -p "$d"
    local t0 t1
    t0=$(now)
    skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$d/layout:v1"
    umoci unpack --image "$d/layout:v1" "$d/bundle" >/dev/null
    t1=$(now)
    rm -rf "$d"
    python3 -c "print(f'{$t1-$t0:.3f}')"
}

berth_times=()
skopeo_times=()
for r in $(seq "$rounds"); do
    if (( r % 2 )); then
        berth_times+=("$(run_berth)"); skopeo_times+=("$(run_skopeo)")
    else
        skopeo_times+=("$(run_skopeo)"); berth_times+=("$(run_berth)")
    fi
    log "round $r: berth ${berth_times[-1]} s, skopeo+umoci ${skopeo_times[-1]} s"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mb=$(median "${berth_times[@]}")
ms=$(median "${skopeo_times[@]}")
printf '\n%-34s %10s\n' "pull of $((layers * layer_mb)) MiB ($((layers + 1)) layers)" "median s"
printf '%-34s %10s\n' "berth pull (native, fresh home)" "$mb"
printf '%-34s %10s\n' "skopeo copy + umoci unpack" "$ms"
python3 -c "print(f'ratio berth / (skopeo+umoci): {$mb/$ms:.2f}')"
