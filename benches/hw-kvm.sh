#!/usr/bin/env bash
# Hardware-KVM check and benches, for a borrowed machine that has no Rust
# toolchain and no network: everything comes from a bundle made here with
# `benches/hw-kvm.sh --bundle DIR` (release berth, berth-vmm, the static
# agent, the cached x86 guest kernel, the default image, mkfs.ext4 and its
# libraries).
#
#   benches/hw-kvm.sh --bundle .hwbench      # on the build machine
#   benches/hw-kvm.sh --run .hwbench         # on the borrowed machine
#
# --run first reports whether /dev/kvm exists and answers KVM_GET_API_VERSION
# and whether the CPU shows vmx/svm. Without a usable /dev/kvm it stops there
# (exit 0: that is the finding). With one it times, in one BERTH_HOME:
#   machine VM  `machine start` cold, then `run --rm true` and `exec true`
#               in the warm machine (ROUNDS each), and the VMM's VmRSS
#   own VM      `--isolation vm run --rm true`: the first run (cold boot and
#               snapshot), clones (ROUNDS) and cold boots (BERTH_VM_SNAPSHOTS=0,
#               COLD_ROUNDS), with the BERTH_VM_TIMINGS agent-ready times
#   native      `--isolation native run --rm true` (ROUNDS), the same machine
# and prints medians. Each step has a timeout; a failing step is reported and
# the rest still run.
set -uo pipefail

log() { printf 'hw-kvm: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

bundle() {
    local dir=$1
    mkdir -p "$dir/bin" "$dir/lib"
    local kernel
    kernel=$(ls -t "${BERTH_CACHE_DIR:-$HOME/.cache/berth}"/kernel/*/vmlinux 2>/dev/null | head -n 1)
    [ -n "$kernel" ] || die "no cached x86 guest kernel (kernel-config/build-kernel.sh)"
    cp "$root/target/release/berth" "$root/target/release/berth-vmm" "$dir/bin/" || die "build first: PROFILE=release scripts/dev-build.sh"
    cp "$root/target/x86_64-unknown-linux-gnu/release/berth-agent" "$dir/bin/" || die "no static agent"
    cp "$kernel" "$dir/vmlinux"
    cp "$root/out/images/busybox.oci.tar" "$dir/" || die "images/build-default-image.sh first"
    local mkfs
    mkfs=$(PATH="$PATH:/usr/sbin:/sbin" command -v mkfs.ext4) || die "mkfs.ext4 missing"
    cp "$mkfs" "$dir/bin/mkfs.ext4"
    ldd "$mkfs" | awk '/=> \//{print $3}' | grep -v -E '/libc\.so' | xargs -r cp -t "$dir/lib/"
    du -sh "$dir"
}

median() { sort -n | awk '{a[NR]=$1} END{if(NR==0){print "-"} else if(NR%2){printf "%.3f", a[(NR+1)/2]} else {printf "%.3f", (a[NR/2]+a[NR/2+1])/2}}'; }

# t FILE CMD...: run CMD (timeout STEP_TIMEOUT), append its wall seconds to FILE.
t() {
    local file=$1; shift
    local s e
    s=$(date +%s.%N)
    if timeout "${STEP_TIMEOUT:-120}" "$@" >/dev/null 2>"$work/last.err"; then
        e=$(date +%s.%N)
        awk -v s="$s" -v e="$e" 'BEGIN{printf "%.4f\n", e-s}' >>"$file"
    else
        log "step failed: $*"; tail -n 5 "$work/last.err" >&2
        return 1
    fi
}

run_benches() {
    local dir
    dir=$(cd "$1" && pwd)
    echo "== machine"
    uname -a
    nproc; grep -m1 'model name' /proc/cpuinfo
    echo "vmx/svm flags: $(grep -c -w -E 'vmx|svm' /proc/cpuinfo) of $(grep -c ^processor /proc/cpuinfo) cpus"
    ls -l /dev/kvm 2>&1
    ls -d /sys/module/kvm* 2>&1 | tr '\n' ' '; echo
    python3 - <<'EOF'
import fcntl, os
try:
    fd = os.open("/dev/kvm", os.O_RDWR)
    print("KVM_GET_API_VERSION =", fcntl.ioctl(fd, 0xAE00))
    print("KVM_CREATE_VM fd =", fcntl.ioctl(fd, 0xAE01, 0))
except OSError as e:
    print("no usable /dev/kvm:", e)
EOF
    if ! [ -c /dev/kvm ] || ! python3 -c 'import os,fcntl; fcntl.ioctl(os.open("/dev/kvm",os.O_RDWR),0xAE01,0)' 2>/dev/null; then
        echo "RESULT: no hardware KVM on this machine; benches not run"
        return 0
    fi
    export PATH="$dir/bin:$PATH" LD_LIBRARY_PATH="$dir/lib"
    export BERTH_VMM=$dir/bin/berth-vmm BERTH_AGENT=$dir/bin/berth-agent BERTH_KERNEL=$dir/vmlinux
    work=$(mktemp -d /tmp/hwkvm.XXXXXX)
    export BERTH_HOME=$work/home BERTH_CACHE_DIR=$work/cache
    unset BERTH_ISOLATION
    local rounds=${ROUNDS:-10} cold_rounds=${COLD_ROUNDS:-3} b=$dir/bin/berth img=berth/busybox
    echo "== machine VM (--isolation shared)"
    t "$work/m.start" env BERTH_VM_TIMINGS=1 "$b" --isolation shared machine start
    cat "$work/last.err" | grep -i 'vm:' || true
    timeout "${STEP_TIMEOUT:-120}" "$b" --isolation shared load -q -i "$dir/busybox.oci.tar" >/dev/null || log "load failed"
    t "$work/m.first" "$b" --isolation shared run --rm "$img" true
    for _ in $(seq "$rounds"); do t "$work/m.run" "$b" --isolation shared run --rm "$img" true; done
    timeout "${STEP_TIMEOUT:-120}" "$b" --isolation shared run -d --name hwx "$img" sleep 3600 >/dev/null || log "run -d failed"
    for _ in $(seq "$rounds"); do t "$work/m.exec" "$b" --isolation shared exec hwx true; done
    local vmm_rss="-"
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/exe" 2>/dev/null)" = "$BERTH_VMM" ]; then
            vmm_rss=$(awk '/VmRSS/{print $2" "$3}' "$p/status"); break
        fi
    done
    timeout "${STEP_TIMEOUT:-120}" "$b" --isolation shared rm -f hwx >/dev/null 2>&1
    t "$work/m.stop" "$b" --isolation shared machine stop
    echo "== own VM (--isolation vm)"
    timeout "${STEP_TIMEOUT:-120}" "$b" --isolation vm load -q -i "$dir/busybox.oci.tar" >/dev/null || log "vm load failed"
    vm_run() { # FILE_TOTAL FILE_READY env...
        local ft=$1 fr=$2; shift 2
        local s e
        s=$(date +%s.%N)
        if timeout "${STEP_TIMEOUT:-120}" env BERTH_VM_TIMINGS=1 "$@" "$b" --isolation vm run --rm "$img" true >/dev/null 2>"$work/vm.err"; then
            e=$(date +%s.%N)
            awk -v s="$s" -v e="$e" 'BEGIN{printf "%.4f\n", e-s}' >>"$ft"
            grep -h '^berth: vm:' "$work/vm.err" | tr '\n' ' ' >&2; echo >&2
            grep -h -o -E 'agent ready in [0-9]+ ms' "$work/vm.err" | awk '{printf "%.3f\n", $4/1000}' | head -n 1 >>"$fr"
        else
            log "vm run failed ($*)"; tail -n 5 "$work/vm.err" >&2
        fi
    }
    vm_run "$work/v.first" "$work/v.firstr" BERTH_VM_SNAPSHOTS=1
    for _ in $(seq "$rounds"); do vm_run "$work/v.clone" "$work/v.cloner" BERTH_VM_SNAPSHOTS=1; done
    for _ in $(seq "$cold_rounds"); do vm_run "$work/v.cold" "$work/v.coldr" BERTH_VM_SNAPSHOTS=0; done
    echo "== native"
    timeout "${STEP_TIMEOUT:-120}" "$b" --isolation native load -q -i "$dir/busybox.oci.tar" >/dev/null || log "native load failed"
    t "$work/n.first" "$b" --isolation native run --rm "$img" true
    for _ in $(seq "$rounds"); do t "$work/n.run" "$b" --isolation native run --rm "$img" true; done
    "$b" --isolation native info 2>/dev/null | head -n 20
    echo "== results (seconds, medians; n = samples)"
    row() { printf '%-58s %8s  n=%s\n' "$1" "$(median <"$2" 2>/dev/null)" "$(wc -l <"$2" 2>/dev/null || echo 0)"; }
    touch "$work"/{m.start,m.first,m.run,m.exec,m.stop,v.first,v.firstr,v.clone,v.cloner,v.cold,v.coldr,n.first,n.run}
    row "machine start (cold boot to agent ready)" "$work/m.start"
    row "machine: first run --rm true" "$work/m.first"
    row "machine (warm): run --rm true" "$work/m.run"
    row "machine (warm): exec true" "$work/m.exec"
    row "machine stop" "$work/m.stop"
    echo "machine VMM VmRSS with one container running: $vmm_rss"
    row "vm: first run (cold boot + snapshot) start -> exit" "$work/v.first"
    row "vm: clone run --rm true start -> exit" "$work/v.clone"
    row "vm: clone start -> agent ready" "$work/v.cloner"
    row "vm: cold boot run --rm true start -> exit" "$work/v.cold"
    row "vm: cold boot start -> agent ready" "$work/v.coldr"
    row "native: first run --rm true" "$work/n.first"
    row "native: run --rm true" "$work/n.run"
}

case "${1:-}" in
--bundle) bundle "${2:?--bundle DIR}" ;;
--run) run_benches "${2:?--run DIR}" ;;
*) die "usage: $0 --bundle DIR | --run DIR" ;;
esac
