#!/usr/bin/env bash
# Build speed: berth build vs docker build (classic builder, DOCKER_BUILDKIT=0),
# side by side in one run, on the same multi-step Dockerfile and context, on
# berth's default busybox image (loaded into both engines).
#
#   benches/build.sh               # ROUNDS=3
#   ROUNDS=5 benches/build.sh
#
# Measured, wall clock of the CLI process, median over the rounds:
#   cold   `build --no-cache` (every step runs)
#   warm   `build` of an unchanged context (every step from the cache)
#   edit   `build` after changing the source of the second COPY (that step
#          and the ones after it run again)
# berth runs in native placement (the agent on this host); dockerd 20.10 is
# a private instance (own socket and data root, overlay2, no bridge).
# Ratios are berth / docker: below 1 is faster. Every process this script
# starts is stopped by its PID at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${ROUNDS:-3}
log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v skopeo >/dev/null || missing+=(skopeo)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        log "could not install ${missing[*]}: the docker column is skipped"
fi

berth=$root/target/release/berth
agent=$root/target/x86_64-unknown-linux-gnu/release/berth-agent
if [ ! -x "$berth" ] || [ ! -x "$agent" ]; then
    log "building berth (scripts/dev-build.sh)"
    PROFILE=release "$root/scripts/dev-build.sh" >/dev/null
fi
image_tar=$root/out/images/busybox.oci.tar
[ -f "$image_tar" ] || "$root/images/build-default-image.sh" >/dev/null
image=berth/busybox:latest

work=$(mktemp -d /tmp/berth-bench-build.XXXXXX)
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

docker_cli() { DOCKER_BUILDKIT=0 /usr/bin/docker -H "unix://$work/docker.sock" "$@"; }
if command -v dockerd >/dev/null && command -v skopeo >/dev/null; then
    dockerd --iptables=false --bridge=none --exec-opt native.cgroupdriver=cgroupfs \
        --storage-driver=overlay2 --data-root="$work/docker" --exec-root="$work/docker-exec" \
        --pidfile="$work/docker.pid" --host="unix://$work/docker.sock" >"$work/dockerd.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 150); do docker_cli version >/dev/null 2>&1 && break; sleep 0.2; done
    if docker_cli version >/dev/null 2>&1; then
        skopeo copy -q "oci-archive:$image_tar" "docker-archive:$work/img.tar:$image"
        docker_cli load -i "$work/img.tar" >/dev/null && docker_ok=1
    fi
fi
[ -n "${docker_ok:-}" ] || log "dockerd not usable: docker column skipped"

# The project: a small app with a few hundred files, built in 9 steps.
ctx=$work/ctx
mkdir -p "$ctx/src" "$ctx/assets"
for i in $(seq 200); do echo "asset $i" >"$ctx/assets/a$i.txt"; done
echo 'echo hello from the app' >"$ctx/src/app.sh"
cat >"$ctx/Dockerfile" <<DF
FROM $image
ARG VERSION=1
ENV APP=/app VERSION=\$VERSION
WORKDIR /app
COPY assets/ ./assets/
RUN find assets -type f | wc -l > count && mkdir -p /var/cache/app
COPY src/ ./src/
RUN sh src/app.sh > out.txt && chmod +x src/app.sh
EXPOSE 8080
CMD ["sh", "/app/src/app.sh"]
DF

t() {
    local out=$1; shift
    local a b
    a=$(date +%s.%N)
    "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; die "command failed: $*"; }
    b=$(date +%s.%N)
    echo "$a $b" | awk '{printf "%.4f\n", $2 - $1}' >>"$out"
}

log "warm-up"
"$berth" build -q -t bench "$ctx" >/dev/null
[ -n "${docker_ok:-}" ] && docker_cli build -q -t bench "$ctx" >/dev/null
for i in $(seq "$rounds"); do
    log "round $i/$rounds"
    t "$work/cold.berth" "$berth" build --no-cache -t bench "$ctx"
    [ -n "${docker_ok:-}" ] && t "$work/cold.docker" docker_cli build --no-cache -t bench "$ctx"
    t "$work/warm.berth" "$berth" build -t bench "$ctx"
    [ -n "${docker_ok:-}" ] && t "$work/warm.docker" docker_cli build -t bench "$ctx"
    echo "echo edit $i" >>"$ctx/src/app.sh"
    t "$work/edit.berth" "$berth" build -t bench "$ctx"
    [ -n "${docker_ok:-}" ] && t "$work/edit.docker" docker_cli build -t bench "$ctx"
    :
done
"$berth" run --rm bench | grep -q 'hello from the app' || die "the built image does not run"

python3 - "$work" <<'PY'
import os, statistics, sys
work = sys.argv[1]
def med(name):
    p = os.path.join(work, name)
    if not os.path.exists(p):
        return None
    v = [float(x) for x in open(p).read().split()]
    return statistics.median(v), len(v)
print(f"{'':24}{'berth':>10}{'docker':>10}{'b/docker':>10}")
for label, key in [("cold (--no-cache)", "cold"), ("warm (all cached)", "warm"), ("edit (last COPY changed)", "edit")]:
    b = med(f"{key}.berth"); d = med(f"{key}.docker")
    f = lambda m: f"{m[0]*1000:8.0f}ms" if m else f"{'-':>10}"
    r = f"{b[0]/d[0]:10.2f}" if b and d else f"{'-':>10}"
    print(f"{label:24}{f(b):>10}{f(d):>10}{r}")
print(f"(medians over {med('cold.berth')[1]} rounds; berth native placement, docker classic builder)")
PY
