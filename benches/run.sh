#!/usr/bin/env bash
# Container start and exec latency: berth vs docker vs podman, side by side
# in one run, on the same image (berth's default busybox image, loaded into
# each engine).
#
#   benches/run.sh                    # ROUNDS=20, VM_ROUNDS=5
#   ROUNDS=10 VM_ROUNDS=0 benches/run.sh
#
# Measured, wall clock of the CLI process, median over the rounds:
#   run    `<cli> run --rm <image> true`
#   exec   `<cli> exec <running container> true`
# Engines: berth native (agent on this host), berth in the warm machine VM
# (--isolation shared: booted, image loaded and one container run before
# timing; VM_ROUNDS rounds, as guest syscalls are emulated on this host's
# kvm_pvm: tens of seconds per container), dockerd 20.10 (private instance:
# own socket and data root, overlay2 storage, no bridge, --network none) and
# podman 4.3 (own root, cgroupfs, --network none). Rounds of the native
# engines are interleaved; the VM rounds follow. Ratios are berth / peer
# (medians): below 1 is faster.
# Every process this script starts is stopped by its PID at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${ROUNDS:-20}
vm_rounds=${VM_ROUNDS:-5}
log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $vm_rounds =~ ^[0-9]+$ ]] || die "VM_ROUNDS must be a number"

# The peers are Debian packages; install what is missing.
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v podman >/dev/null || missing+=(podman)
command -v skopeo >/dev/null || missing+=(skopeo)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        log "could not install ${missing[*]}: those columns are skipped"
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

work=$(mktemp -d /tmp/berth-bench-run.XXXXXX)
pids=()
cleanup() {
    set +e
    [ -n "${BERTH_HOME:-}" ] && "$berth" rm -f bench-exec >/dev/null 2>&1
    [ -n "${docker_ok:-}" ] && docker_cli rm -f bench-exec >/dev/null 2>&1
    [ -n "${podman_ok:-}" ] && podman_cli rm -f -t 0 bench-exec >/dev/null 2>&1 && podman_cli rmi -a -f >/dev/null 2>&1
    [ -n "${vm_up:-}" ] && "$berth" --isolation shared machine stop >/dev/null 2>&1
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    [ -f "$work/berth/native/agent.pid" ] && kill "$(cat "$work/berth/native/agent.pid")" 2>/dev/null
    "$root/scripts/remove-native-networks.sh" "$work/berth"
    sleep 1
    grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT

# Native placement unless a row says otherwise (the CLI default is the VM).
export BERTH_HOME=$work/berth BERTH_AGENT=$agent BERTH_ISOLATION=native
[ -x "$root/target/release/berth-vmm" ] && export BERTH_VMM=$root/target/release/berth-vmm
"$berth" load -i "$image_tar" >/dev/null

# ------------------------------------------------------------------ peers
docker_cli() { /usr/bin/docker -H "unix://$work/docker.sock" "$@"; }
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

podman_cli() {
    podman --root "$work/podman" --runroot "$work/podman-run" --cgroup-manager=cgroupfs \
        --events-backend=file "$@"
}
podman_run_flags=(--network none --ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
if command -v podman >/dev/null; then
    podman_cli load -i "$image_tar" >/dev/null 2>&1 || true
    podman_cli image exists "$image" 2>/dev/null && podman_ok=1
fi
[ -n "${podman_ok:-}" ] || log "podman not usable: podman column skipped"

# ------------------------------------------------------------------ timing
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
"$berth" run --rm "$image" true >/dev/null
[ -n "${docker_ok:-}" ] && docker_cli run --rm --network none "$image" true >/dev/null
[ -n "${podman_ok:-}" ] && podman_cli run --rm "${podman_run_flags[@]}" "$image" true >/dev/null

log "run --rm true: $rounds rounds"
for i in $(seq "$rounds"); do
    t "$work/run.berth" "$berth" run --rm "$image" true
    [ -n "${docker_ok:-}" ] && t "$work/run.docker" docker_cli run --rm --network none "$image" true
    [ -n "${podman_ok:-}" ] && t "$work/run.podman" podman_cli run --rm "${podman_run_flags[@]}" "$image" true
    :
done

log "exec true: $rounds rounds"
"$berth" run -d --name bench-exec "$image" sleep 3600 >/dev/null
[ -n "${docker_ok:-}" ] && docker_cli run -d --network none --name bench-exec "$image" sleep 3600 >/dev/null
[ -n "${podman_ok:-}" ] && podman_cli run -d "${podman_run_flags[@]}" --name bench-exec "$image" sleep 3600 >/dev/null
for i in $(seq "$rounds"); do
    t "$work/exec.berth" "$berth" exec bench-exec true
    [ -n "${docker_ok:-}" ] && t "$work/exec.docker" docker_cli exec bench-exec true
    [ -n "${podman_ok:-}" ] && t "$work/exec.podman" podman_cli exec bench-exec true
    :
done

if [ "$vm_rounds" -gt 0 ]; then
    log "machine VM (warm): booting, loading the image"
    vm_up=1
    "$berth" --isolation shared machine start >/dev/null
    "$berth" --isolation shared load -i "$image_tar" >/dev/null
    "$berth" --isolation shared run --rm "$image" true >/dev/null
    log "machine VM: run --rm true, $vm_rounds rounds"
    for i in $(seq "$vm_rounds"); do
        t "$work/run.berth-vm" "$berth" --isolation shared run --rm "$image" true
    done
    log "machine VM: exec true, $vm_rounds rounds"
    "$berth" --isolation shared run -d --name bench-exec "$image" sleep 3600 >/dev/null
    "$berth" --isolation shared exec bench-exec true >/dev/null
    for i in $(seq "$vm_rounds"); do
        t "$work/exec.berth-vm" "$berth" --isolation shared exec bench-exec true
    done
fi

# ------------------------------------------------------------------ report
python3 - "$work" <<'PY'
import os, statistics, sys
work = sys.argv[1]
def med(name):
    p = os.path.join(work, name)
    if not os.path.exists(p):
        return None
    v = [float(x) for x in open(p).read().split()]
    return statistics.median(v), len(v)
engines = [("berth native", "berth"), ("berth VM (warm)", "berth-vm"),
           ("docker", "docker"), ("podman", "podman")]
for label, key in [("run --rm <image> true", "run"), ("exec <container> true", "exec")]:
    print(label)
    print(f"  {'engine':18}{'median':>10}{'rounds':>8}{'vs docker':>11}{'vs podman':>11}")
    d = med(f"{key}.docker"); p = med(f"{key}.podman")
    for name, eng in engines:
        m = med(f"{key}.{eng}")
        if not m:
            continue
        ratio = lambda peer: f"{m[0] / peer[0]:11.2f}" if peer and eng.startswith("berth") else f"{'':11}"
        print(f"  {name:18}{m[0] * 1000:8.0f}ms{m[1]:8d}{ratio(d)}{ratio(p)}")
print("(wall clock of the CLI, medians; ratio = berth / peer, below 1 is faster;")
print(" berth VM = warm machine VM, --isolation shared, guest emulated on kvm_pvm hosts)")
PY
