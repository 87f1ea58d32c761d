#!/usr/bin/env bash
# Shared-folder file-system benchmark: the same file operations, timed inside
# the guest, in three places:
#   berth      a container in the machine VM (--isolation shared) with a bind
#              mount `-v DIR:/w`, which reaches the host through berth-vmm's
#              in-process virtio-fs device (fuse-backend-rs PassthroughFs)
#   virtiofsd  QEMU `-M microvm` booting the same guest kernel, with a
#              vhost-user-fs device served by virtiofsd (the usual stack):
#              a busybox /init mounts the share and runs the operations
#   native     the operations run directly on this host, on the same disk
# All three run one ops script with the same static busybox (Debian's
# busybox-static, which is also the binary in berth's default image), and time
# each step with busybox sh's $EPOCHREALTIME, so the container start-up / VM
# boot is not counted.
#
#   benches/fs.sh                                   # ROUNDS=1
#   ROUNDS=3 FILE_MB=256 SMALL_FILES=2000 TREE_FILES=10000 benches/fs.sh
#   ENGINES="berth native" benches/fs.sh            # skip a column
#
# Steps (each timed separately):
#   write   dd if=/dev/zero of=seq.bin bs=1M count=FILE_MB conv=fsync
#   read    dd if=seq.bin of=/dev/null bs=1M (a fresh open: with cache=auto
#           the guest's page cache of the file is dropped at open, so the data
#           crosses the transport; the host's page cache is warm everywhere)
#   create  SMALL_FILES files of 2 bytes (`echo x >f$i`, a shell builtin: no fork)
#   stat    `[ -f f$i ]` on each (builtin, one stat(2) each)
#   unlink  one `rm -f small/*` (the glob lists the directory, rm unlinks each)
#   find    `find tree >/dev/null` over TREE_FILES files in directories of
#           TREE_PER_DIR, created on the host beforehand (busybox find lstat()s
#           every entry); then an untimed second find checks the entry count
# Nothing drops page caches: a berth container cannot (/proc/sys is read-only
# there and berth has no --privileged), so neither guest does, for symmetry.
#
# Same setup for both VMs: the newest ${BERTH_CACHE_DIR:-~/.cache/berth}/
# kernel/*/vmlinux (or $BERTH_KERNEL; berth gets it through BERTH_KERNEL too),
# 1 vCPU, 512 MiB, and the same cache policy on the host side (cache=auto:
# entry/attr timeout 1 s, no writeback cache, no xattrs; virtiofsd serves
# requests inline on its vring thread, --thread-pool-size 0, as berth-vmm
# serves them on its event loop). virtiofsd: $VIRTIOFSD, else `virtiofsd` on
# PATH, ~/.cargo/bin/virtiofsd (`cargo install virtiofsd --locked`, needs
# libseccomp-dev and libcap-ng-dev), /usr/libexec/virtiofsd, or QEMU 7.2's C
# virtiofsd /usr/lib/qemu/virtiofsd; both are run with the chroot sandbox (one
# process). If QEMU/virtiofsd fails, that column is printed as SKIPPED with the
# reason and the others still run.
#
# Environment: ROUNDS (1; rounds are interleaved, the engine order rotates
# each round, the table shows medians), FILE_MB (64), SMALL_FILES (500),
# TREE_FILES (2000), TREE_PER_DIR (100), ENGINES ("berth virtiofsd native"),
# NICE (niceness of the VMMs, virtiofsd and the native run, 10), RUN_TIMEOUT
# (seconds per guest run, 3600), KEEP=1 keeps the work directory. More berth
# columns in ENGINES: berth-unconfined (seccomp=unconfined), berth-noballoon
# (a second machine VM with BERTH_BALLOON=0), berth-noevents (one with
# BERTH_SHARE_EVENTS=0). COUNT=1 counts the FUSE requests of each step and
# prints the host CPU and the guest kernel's counters per step (see
# benches/README.md).
#
# Processes: the berth machine VM of a private BERTH_HOME (stopped with
# `machine stop`, then its recorded VMM PID killed if still there), and QEMU /
# virtiofsd started here (killed by PID). Nothing is killed by name.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${ROUNDS:-1}
file_mb=${FILE_MB:-64}
nsmall=${SMALL_FILES:-500}
ntree=${TREE_FILES:-2000}
per_dir=${TREE_PER_DIR:-100}
engines=${ENGINES:-berth virtiofsd native}
niceness=${NICE:-10}
timeout_s=${RUN_TIMEOUT:-3600}
count=${COUNT:-0}
base_cmdline='console=ttyS0 reboot=k panic=-1 quiet clocksource=kvm-clock'
root_args='root=/dev/vda ro rootfstype=ext4 init=/init'
# = PVM_CMDLINE_EXTRAS in vmm/src/host_quirks.rs: berth-vmm appends it on
# kvm_pvm hosts by itself, QEMU gets it explicitly there.
pvm_extras='kvm_emul_safe noreplace-smp noxsave clearcpuid=141,145,298,288,308,158,306,534,59,151,590,311,312,514,320,321,323,297,580'
t_start=$(date +%s)

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer"; }
posint ROUNDS "$rounds"; posint FILE_MB "$file_mb"; posint SMALL_FILES "$nsmall"
posint TREE_FILES "$ntree"; posint TREE_PER_DIR "$per_dir"
[[ $count == [01] ]] || die "COUNT must be 0 or 1"
has() { [[ " $engines " == *" $1 "* ]]; }
for e in $engines; do
    case $e in berth | berth-unconfined | berth-noballoon | berth-noevents | virtiofsd | native) ;; *) die "unknown engine '$e' in ENGINES" ;; esac
done

busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || die "$busybox missing (apt-get install busybox-static)"
[[ $(file -b "$busybox") == *"statically linked"* ]] || die "$busybox is not static (apt-get install busybox-static)"
"$busybox" sh -c '[ -n "$EPOCHREALTIME" ]' || die "$busybox sh has no \$EPOCHREALTIME"

# ------------------------------------------------------------------ inputs
if [ -n "${BERTH_KERNEL:-}" ]; then
    kernel=$BERTH_KERNEL
else
    kernel=$(ls -t "${BERTH_CACHE_DIR:-$HOME/.cache/berth}"/kernel/*/vmlinux 2>/dev/null | head -n 1 || true)
    if [ -z "$kernel" ] && { has berth || has virtiofsd; }; then
        log "no guest kernel cached: building it (kernel-config/build-kernel.sh)"
        kernel=$(nice -n 10 "$root/kernel-config/build-kernel.sh" | tail -n 1)
    fi
fi
if has berth || has virtiofsd; then
    [ -f "$kernel" ] || die "no kernel at $kernel"
    [ -w /dev/kvm ] || die "/dev/kvm is not usable"
fi

berth=$root/target/release/berth
vmm=$root/target/release/berth-vmm
agent=$root/target/x86_64-unknown-linux-gnu/release/berth-agent
image_tar=$root/out/images/busybox.oci.tar
if has berth; then
    if [ ! -x "$berth" ] || [ ! -x "$vmm" ] || [ ! -x "$agent" ]; then
        log "building berth, berth-vmm, berth-agent (PROFILE=release scripts/dev-build.sh)"
        (cd "$root" && PROFILE=release nice -n 10 scripts/dev-build.sh) >&2
    fi
    for b in "$berth" "$vmm" "$agent"; do [ -x "$b" ] || die "missing $b"; done
    grep -qaF -- "--fs" "$vmm" && grep -qaF "berth.shares" "$agent" ||
        die "$vmm or $agent predates virtio-fs shares: rebuild (PROFILE=release scripts/dev-build.sh)"
    [ -f "$image_tar" ] || "$root/images/build-default-image.sh" >&2
fi

vfsd_skip=""
if has virtiofsd; then
    mkfs=$(PATH="$PATH:/usr/sbin:/sbin" command -v mkfs.ext4 || true)
    virtiofsd=${VIRTIOFSD:-}
    if [ -z "$virtiofsd" ]; then
        for c in "$(command -v virtiofsd || true)" "$HOME/.cargo/bin/virtiofsd" \
            /usr/libexec/virtiofsd /usr/lib/qemu/virtiofsd; do
            if [ -n "$c" ] && [ -x "$c" ]; then virtiofsd=$c; break; fi
        done
    fi
    if ! command -v qemu-system-x86_64 >/dev/null; then
        vfsd_skip="qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
    elif [ -z "$mkfs" ]; then
        vfsd_skip="mkfs.ext4 missing (apt-get install e2fsprogs)"
    elif [ -z "$virtiofsd" ]; then
        vfsd_skip="no virtiofsd (cargo install virtiofsd --locked, or set VIRTIOFSD)"
    else
        vfsd_version=$("$virtiofsd" --version 2>&1 | head -n 1)
        # QEMU's C virtiofsd (<= 7.2) takes -o options; the Rust one long flags.
        if [[ $vfsd_version == *"(Debian"* || $vfsd_version == *QEMU* ]] ||
            "$virtiofsd" --help 2>&1 | grep -q -- '-o source='; then
            vfsd_kind=c
        else
            vfsd_kind=rust
        fi
    fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-fs.XXXXXX")
data=$work/data        # the one shared folder (berth: BERTH_MACHINE_SHARES; virtiofsd: --shared-dir)
mkdir -p "$data"
qemu_pid="" vfsd_pid="" berth_pid="" machine_up="" sampler_pid=""
cleanup() {
    set +e
    local p
    for p in "$sampler_pid" "$berth_pid" "$qemu_pid" "$vfsd_pid"; do
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill -KILL "$p"; wait "$p" 2>/dev/null; fi
    done
    local h
    for h in $machine_up; do
        p=$(cat "$h/machine/vmm.pid" 2>/dev/null)
        BERTH_HOME=$h timeout 120 "$berth" --isolation shared machine stop >/dev/null 2>&1 ||
            log "machine stop failed ($h)"
        # The VMM berth started for this BERTH_HOME, if `stop` left it.
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null &&
            tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$work/"; then
            log "machine VMM $p still running after stop: killing it"
            kill -KILL "$p"
        fi
    done
    if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ ops script
# busybox sh ops.sh DIR FILE_MB SMALL_FILES TREE_ENTRIES; prints
# "FSBENCH <step> <t0> <t1>" per step, FSBENCH-END when done, FSBENCH-ERROR on failure.
cat >"$work/ops.sh" <<'EOF'
d=$1 mb=$2 n=$3 want=$4 count=${5:-0}
fail() { echo "FSBENCH-ERROR $*"; exit 1; }
# COUNT=1: a STATFS request (df) just before and just after each timed step
# marks the step's requests in the server's request log.
mark() { [ "$count" = 1 ] || return 0; df "$d" >/dev/null 2>&1 || fail "mark: df $d"; }
# COUNT=1: the guest kernel's counters at a step's start (ctr STEP 0) and end
# (ctr STEP 1), from /proc/stat with shell builtins (no fork): "FSCTR STEP 0|1
# user nice system idle iowait irq softirq (ticks) ctxt intr processes".
# (/proc/vmstat has no event counters: the guest kernel is built without them.)
ctr() {
    [ "$count" = 1 ] || return 0
    while read -r k a b c e f g h rest; do
        case $k in cpu) cpu="$a $b $c $e $f $g $h" ;; ctxt) ctxt=$a ;; intr) intr=$a ;; processes) procs=$a ;; esac
    done </proc/stat
    echo "FSCTR $1 $2 $cpu $ctxt $intr $procs"
}
echo "FSBENCH-BEGIN $(uname -r)"
[ -d "$d/tree" ] || fail "no $d/tree"

mark
ctr write 0
t0=$EPOCHREALTIME
dd if=/dev/zero of="$d/seq.bin" bs=1M count="$mb" conv=fsync 2>/dev/null || fail write
t1=$EPOCHREALTIME
ctr write 1
mark
echo "FSBENCH write $t0 $t1"
[ "$(stat -c %s "$d/seq.bin")" = $((mb * 1048576)) ] || fail "write: wrong size"

mark
ctr read 0
t0=$EPOCHREALTIME
dd if="$d/seq.bin" of=/dev/null bs=1M 2>/dev/null || fail read
t1=$EPOCHREALTIME
ctr read 1
mark
echo "FSBENCH read $t0 $t1"
rm -f "$d/seq.bin"

mkdir "$d/small" || fail mkdir
i=0
mark
ctr create 0
t0=$EPOCHREALTIME
while [ $i -lt $n ]; do echo x >"$d/small/f$i" || fail "create f$i"; i=$((i + 1)); done
t1=$EPOCHREALTIME
ctr create 1
mark
echo "FSBENCH create $t0 $t1"

i=0
mark
ctr stat 0
t0=$EPOCHREALTIME
while [ $i -lt $n ]; do [ -f "$d/small/f$i" ] || fail "stat f$i"; i=$((i + 1)); done
t1=$EPOCHREALTIME
ctr stat 1
mark
echo "FSBENCH stat $t0 $t1"

mark
ctr unlink 0
t0=$EPOCHREALTIME
rm -f "$d/small/"* || fail unlink
t1=$EPOCHREALTIME
ctr unlink 1
mark
echo "FSBENCH unlink $t0 $t1"
rmdir "$d/small" || fail "unlink left files in small/"

mark
ctr find 0
t0=$EPOCHREALTIME
find "$d/tree" >/dev/null || fail find
t1=$EPOCHREALTIME
ctr find 1
mark
echo "FSBENCH find $t0 $t1"
c=$(find "$d/tree" | wc -l)
[ "$c" = "$want" ] || fail "find saw $c entries, want $want"
echo FSBENCH-END
EOF
ndirs=$(( (ntree + per_dir - 1) / per_dir ))
tree_entries=$(( 1 + ndirs + ntree ))

# A round directory: the ops script and the find tree, made on the host.
make_round_dir() {
    local dir=$1 i k=0
    mkdir -p "$dir/tree"
    cp "$work/ops.sh" "$dir/ops.sh"
    for ((i = 0; i < ndirs; i++)); do
        mkdir "$dir/tree/d$i"
        while ((k < ntree && k < (i + 1) * per_dir)); do : >"$dir/tree/d$i/f$k"; k=$((k + 1)); done
    done
    sync
}

# parse ENGINE OUTPUT: FSBENCH lines -> ENGINE.results ("step seconds" lines,
# round-tagged); fails when FSBENCH-END is missing.
parse() {
    local e=$1 out=$2 r=$3
    tr -d '\r' <"$out" >"$out.clean"
    if grep -q '^FSBENCH-ERROR' "$out.clean"; then
        grep '^FSBENCH-ERROR' "$out.clean" | head -n 1 >&2
        return 1
    fi
    grep -q '^FSBENCH-END' "$out.clean" || return 1
    awk -v r="$r" '$1 == "FSBENCH" {printf "%s %s %.6f\n", r, $2, $4 - $3}' "$out.clean" >>"$work/$e.results"
    awk '$1 == "FSBENCH" {printf " %s %.3f", $2, $4 - $3}' "$out.clean"
}

# ------------------------------------------------------------------ host CPU per step (COUNT=1)
# cpu_sample OUT PID...: every 0.1 s a line "TIME VCPU_NS REST_NS", the host
# CPU time the PIDs' threads have used (/proc/PID/task/*/schedstat): the vCPU
# threads (berth-vcpu*, QEMU's "CPU n/KVM" (named with -name debug-threads=on):
# the guest's own work, emulation
# included) and the rest (device emulation, the file server).
cpu_sample() {
    local out=$1 p f c a v r
    shift
    while :; do
        v=0 r=0
        for p in "$@"; do
            for f in /proc/"$p"/task/*; do
                c="" a=0
                { read -r c <"$f/comm" && read -r a _ <"$f/schedstat"; } 2>/dev/null || continue
                case $c in berth-vcpu* | CPU*/KVM) v=$((v + a)) ;; *) r=$((r + a)) ;; esac
            done
        done
        echo "$EPOCHREALTIME $v $r"
        sleep 0.1
    done >"$out"
}
sampler_start() { cpu_sample "$@" & sampler_pid=$!; }
sampler_stop() {
    if [ -n "$sampler_pid" ]; then
        kill "$sampler_pid" 2>/dev/null || true
        wait "$sampler_pid" 2>/dev/null || true
    fi
    sampler_pid=""
}
# cpu_steps MARKS SAMPLES: "STEP VCPU_S REST_S" per step, the host CPU used
# between the STATFS marks around it (MARKS: their 12 host times, in order).
cpu_steps() {
    awk 'NR == FNR { m[++n] = $1; next }
        { t[++k] = $1; v[k] = $2; r[k] = $3 }
        END {
            if (n != 12) exit
            split("write read create stat unlink find", st, " ")
            for (i = 1; i <= 6; i++) {
                s = m[2 * i - 1]; e = m[2 * i]; a = 0; b = 0
                for (j = 1; j <= k; j++) { if (t[j] <= s) a = j; if (t[j] >= e && !b) b = j }
                if (!a || !b) printf "%s n/a n/a\n", st[i]
                else printf "%s %.2f %.2f\n", st[i], (v[b] - v[a]) / 1e9, (r[b] - r[a]) / 1e9
            }
        }' "$1" "$2"
}

# ------------------------------------------------------------------ berth
# berth_home ENGINE: the BERTH_HOME of ENGINE's machine VM (berth-noballoon:
# a second machine booted with BERTH_BALLOON=0, no free page reporting).
# berth-noevents: one booted with BERTH_SHARE_EVENTS=0, no host file events.
berth_home() {
    case $1 in berth-noballoon | berth-noevents) echo "$work/home-${1#berth-}" ;; *) echo "$work/home" ;; esac
}

# berth_setup ENGINE: boots ENGINE's machine VM and loads the image.
berth_setup() {
    export BERTH_HOME BERTH_AGENT=$agent BERTH_VMM=$vmm BERTH_KERNEL=$kernel
    BERTH_HOME=$(berth_home "$1")
    export BERTH_MACHINE_SHARES=$data
    # COUNT=1: berth-vmm logs every FUSE request (time, opcode).
    if [ "$count" = 1 ]; then export BERTH_VMM_FS_TRACE=$work/berth-fs.trace; fi
    unset BERTH_ISOLATION
    log "berth: booting the machine VM (private BERTH_HOME $BERTH_HOME, share $data)"
    local t0=$SECONDS
    machine_up="$machine_up $BERTH_HOME"
    if [ "$1" = berth-noballoon ]; then export BERTH_BALLOON=0; else unset BERTH_BALLOON; fi
    if [ "$1" = berth-noevents ]; then export BERTH_SHARE_EVENTS=0; else unset BERTH_SHARE_EVENTS; fi
    nice -n "$niceness" "$berth" --isolation shared machine start >/dev/null ||
        die "berth machine start failed"
    "$berth" --isolation shared load -q -i "$image_tar" >/dev/null || die "berth load failed"
    log "berth: machine VM up and image loaded in $((SECONDS - t0)) s"
}

run_berth() {
    # run_berth ROUND ENGINE [RUN OPTIONS...]
    local r=$1 e=$2 dir=$data/$2-r$1 t0 rc=0
    shift 2
    BERTH_HOME=$(berth_home "$e")
    make_round_dir "$dir"
    local seen=0
    [ -f "$work/berth-fs.trace" ] && seen=$(wc -l <"$work/berth-fs.trace")
    if [ "$count" = 1 ]; then sampler_start "$work/$e.r$r.cpu" "$(cat "$BERTH_HOME/machine/vmm.pid")"; fi
    t0=$(date +%s.%N)
    timeout -k 10 "$timeout_s" "$berth" --isolation shared run --rm "$@" -v "$dir:/w" berth/busybox \
        sh /w/ops.sh /w "$file_mb" "$nsmall" "$tree_entries" "$count" >"$work/$e.r$r.out" 2>"$work/$e.r$r.err" &
    berth_pid=$!
    wait "$berth_pid" || rc=$?
    berth_pid=""
    sampler_stop
    local wall
    wall=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.3f", a - b}')
    if ! steps=$(parse "$e" "$work/$e.r$r.out" "$r"); then
        log "$e round $r: run exited $rc; stdout/stderr tail:"
        tail -n 10 "$work/$e.r$r.out" "$work/$e.r$r.err" | sed 's/^/    /' >&2
        die "$e round $r failed"
    fi
    echo "$r $wall" >>"$work/$e.wall"
    if [ "$count" = 1 ]; then
        tail -n "+$((seen + 1))" "$work/berth-fs.trace" | awk '{print $2}' >"$work/$e.r$r.ops"
        tail -n "+$((seen + 1))" "$work/berth-fs.trace" | awk '$2 == 17 {print $1}' >"$work/$e.r$r.marks"
    fi
    log "round $r: $e $steps (run --rm wall $(printf %.1f "$wall") s)"
}

# ------------------------------------------------------------------ QEMU + virtiofsd
vfsd_setup() {
    # Root disk: static busybox, its applet links, an /init that mounts the
    # share and runs the round's /mnt/run.sh (written per round), then reboots
    # (reboot=k + -no-reboot: QEMU exits).
    local tree=$work/qroot
    mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,mnt,tmp}
    cp "$busybox" "$tree/bin/busybox"
    "$busybox" --list-full | while read -r applet; do
        [ "$applet" = bin/busybox ] || ln -sf /bin/busybox "$tree/$applet"
    done
    cat >"$tree/init" <<'EOF'
#!/bin/busybox sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t virtiofs fsbench /mnt || echo "FSBENCH-ERROR mount virtiofs failed"
[ -f /mnt/run.sh ] && sh /mnt/run.sh
sync
reboot -f
EOF
    chmod 755 "$tree/init"
    qroot=$work/qroot.ext4
    truncate -s 16M "$qroot"
    "$mkfs" -q -F -b 4096 -m 0 -O ^has_journal -E root_owner=0:0 -d "$tree" "$qroot" ||
        { vfsd_skip="mkfs.ext4 failed building the QEMU root disk"; return; }
    append="$base_cmdline $root_args"
    [ -e /sys/module/kvm_pvm ] && append="$append $pvm_extras"
    log "virtiofsd: $virtiofsd ($vfsd_version), $(qemu-system-x86_64 --version | head -n 1)"
}

run_vfsd() {
    local r=$1 dir=$data/virtiofsd-r$1 sock=$work/vfsd.sock serial=$work/virtiofsd.r$1.serial
    make_round_dir "$dir"
    printf 'exec sh /mnt/virtiofsd-r%s/ops.sh /mnt/virtiofsd-r%s %s %s %s %s\n' \
        "$r" "$r" "$file_mb" "$nsmall" "$tree_entries" "$count" >"$data/run.sh"
    rm -f "$sock" "$serial"
    local -a vcmd
    if [ "$vfsd_kind" = rust ]; then
        vcmd=("$virtiofsd" --socket-path="$sock" --shared-dir="$data" --cache=auto
            --sandbox=chroot --thread-pool-size=0 --log-level="$([ "$count" = 1 ] && echo debug || echo error)")
    else
        vcmd=("$virtiofsd" --socket-path="$sock" -o source="$data" -o cache=auto
            -o sandbox=chroot -o no_writeback -o no_xattr -o log_level=err)
        # COUNT=1: one "unique: N, opcode: NAME (N), ..." line per request.
        if [ "$count" = 1 ]; then vcmd+=(-o debug); fi
    fi
    if [ "$count" = 1 ]; then
        # Each log line gets the host time it was read at (the step marks).
        nice -n "$niceness" "${vcmd[@]}" > >(perl -MTime::HiRes=time -ne 'printf "%.6f %s", time, $_' \
            >"$work/virtiofsd.r$r.log") 2>&1 &
    else
        nice -n "$niceness" "${vcmd[@]}" >"$work/virtiofsd.r$r.log" 2>&1 &
    fi
    vfsd_pid=$!
    local i
    for ((i = 0; i < 100; i++)); do [ -S "$sock" ] && break; sleep 0.1; done
    if [ ! -S "$sock" ]; then
        vfsd_skip="virtiofsd did not create its socket: $(tail -n 3 "$work/virtiofsd.r$r.log" | tr '\n' ' ')"
        return 1
    fi
    local t0
    t0=$(date +%s.%N)
    nice -n "$niceness" qemu-system-x86_64 \
        -M microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off,memory-backend=mem \
        -enable-kvm -cpu host,-arch-capabilities -m 512 -smp 1 \
        -object memory-backend-memfd,id=mem,size=512M,share=on \
        -global virtio-mmio.force-legacy=false \
        -nodefaults -no-user-config -nographic -name fsbench,debug-threads=on \
        -serial "file:$serial" -no-reboot -device i8042 \
        -drive "id=root,file=$qroot,format=raw,if=none,readonly=on" \
        -device virtio-blk-device,drive=root \
        -chardev "socket,id=vfs,path=$sock" -device vhost-user-fs-device,chardev=vfs,tag=fsbench \
        -kernel "$kernel" -append "$append" >"$work/qemu.r$r.log" 2>&1 &
    qemu_pid=$!
    if [ "$count" = 1 ]; then sampler_start "$work/virtiofsd.r$r.cpu" "$qemu_pid" "$vfsd_pid"; fi
    local booted=""
    while :; do
        if [ -z "$booted" ] && grep -q '^FSBENCH-BEGIN' "$serial" 2>/dev/null; then
            booted=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.3f", a - b}')
        fi
        grep -qE '^FSBENCH-(END|ERROR)' "$serial" 2>/dev/null && break
        kill -0 "$qemu_pid" 2>/dev/null || break
        # A virtiofsd that exited (a panic) leaves QEMU waiting forever.
        kill -0 "$vfsd_pid" 2>/dev/null || break
        awk -v a="$(date +%s.%N)" -v b="$t0" -v l="$timeout_s" 'BEGIN {exit !(a - b > l)}' && break
        sleep 0.5
    done
    local wall
    wall=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.3f", a - b}')
    sleep 1
    sampler_stop
    kill -KILL "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=""
    kill -TERM "$vfsd_pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do kill -0 "$vfsd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$vfsd_pid" 2>/dev/null || true
    wait "$vfsd_pid" 2>/dev/null || true
    vfsd_pid=""
    if ! steps=$(parse virtiofsd "$serial" "$r"); then
        log "virtiofsd round $r: serial / QEMU / virtiofsd output (tail):"
        tail -n 12 "$serial" "$work/qemu.r$r.log" "$work/virtiofsd.r$r.log" 2>/dev/null | sed 's/^/    /' >&2
        vfsd_skip="round $r: no complete run on the serial console after $(printf %.0f "$wall") s ($(grep -m1 '^FSBENCH-ERROR' "$serial.clean" 2>/dev/null || tail -n 1 "$work/qemu.r$r.log" 2>/dev/null || echo 'see log'))"
        return 1
    fi
    echo "$r $wall ${booted:-n/a}" >>"$work/virtiofsd.wall"
    if [ "$count" = 1 ]; then
        sleep 1 # the log's reader flushes at virtiofsd's exit
        awk '/opcode(: |=)[A-Za-z]+ \(17\)/ {print $1}' "$work/virtiofsd.r$r.log" >"$work/virtiofsd.r$r.marks"
        # The C virtiofsd logs "opcode: LOOKUP (1)", the Rust one "opcode=Lookup (1)".
        grep -oE 'opcode(: |=)[A-Za-z_0-9]+ \([0-9]+\)' "$work/virtiofsd.r$r.log" |
            sed -E 's/.*\(([0-9]+)\)$/\1/' >"$work/virtiofsd.r$r.ops" || true
    fi
    log "round $r: virtiofsd $steps (launch -> ops start $(printf %.1f "${booted:-0}") s, -> done $(printf %.1f "$wall") s)"
}

# ------------------------------------------------------------------ native
run_native() {
    local r=$1 dir=$data/native-r$1
    make_round_dir "$dir"
    nice -n "$niceness" "$busybox" sh "$dir/ops.sh" "$dir" "$file_mb" "$nsmall" "$tree_entries" \
        >"$work/native.r$r.out" 2>&1 || true
    steps=$(parse native "$work/native.r$r.out" "$r") || {
        tail -n 5 "$work/native.r$r.out" >&2
        die "native round $r failed"
    }
    log "round $r: native    $steps"
}

# ------------------------------------------------------------------ run
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "kernel $kernel; host $([ -e /sys/module/kvm_pvm ] && echo kvm_pvm || echo kvm), $(nproc) CPUs, load $load_before"
log "$rounds round(s): write/read ${file_mb} MiB, $nsmall small files, find over $ntree files in $ndirs dirs; engines: $engines"
{ has berth || has berth-unconfined; } && berth_setup berth
has berth-noballoon && berth_setup berth-noballoon
has berth-noevents && berth_setup berth-noevents
if has virtiofsd && [ -z "$vfsd_skip" ]; then vfsd_setup; fi
order=()
for e in berth berth-unconfined berth-noballoon berth-noevents virtiofsd native; do has "$e" && order+=("$e"); done
for ((r = 1; r <= rounds; r++)); do
    for ((k = 0; k < ${#order[@]}; k++)); do
        e=${order[$(( (k + r - 1) % ${#order[@]} ))]}
        case $e in
        berth) run_berth "$r" berth ;;
        berth-unconfined) run_berth "$r" berth-unconfined --security-opt seccomp=unconfined ;;
        berth-noballoon) run_berth "$r" berth-noballoon ;;
        berth-noevents) run_berth "$r" berth-noevents ;;
        virtiofsd) if [ -z "$vfsd_skip" ]; then run_vfsd "$r" || log "virtiofsd SKIPPED: $vfsd_skip"; fi ;;
        native) run_native "$r" ;;
        esac
        rm -rf "${data:?}/$e-r$r"
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ report
# med ENGINE STEP: median seconds over the rounds ("n/a" when none)
med() {
    [ -f "$work/$1.results" ] || { echo n/a; return; }
    awk -v s="$2" '$2 == s {print $3}' "$work/$1.results" | sort -g |
        awk '{v[NR] = $1} END {if (NR == 0) print "n/a"; else print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'
}
kernel_release=$(grep -m1 -h '^FSBENCH-BEGIN' "$work"/*.clean 2>/dev/null | grep -v "$(uname -r)" | awk '{print $2}' | head -n 1 || true)
echo
echo "shared-folder file operations, timed inside each guest: $rounds round(s), medians (seconds)"
echo "kernel $kernel${kernel_release:+ ($kernel_release)}, 1 vCPU / 512 MiB per VM"
echo "host: $(uname -r), $([ -e /sys/module/kvm_pvm ] && echo 'kvm_pvm (guest kernel emulated)' || echo kvm), $(nproc) CPUs; load average $load_before at start, $load_after at end"
has virtiofsd && [ -z "$vfsd_skip" ] && echo "virtiofsd: $virtiofsd ($vfsd_version), cache=auto, sandbox chroot; $(qemu-system-x86_64 --version | head -n 1) -M microvm"
echo
labels=("write:write ${file_mb} MiB (dd bs=1M conv=fsync)" "read:read ${file_mb} MiB (dd bs=1M)"
    "create:create $nsmall files" "stat:stat $nsmall files" "unlink:unlink $nsmall files (one rm)"
    "find:find over $ntree files / $ndirs dirs")
fmt='| %-40s | %9s | %12s | %9s | %15s | %12s |\n'
printf "$fmt" op "berth s" "virtiofsd s" "native s" "berth/virtiofsd" "berth/native"
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" "-----------" "--------------" "-----------" "-----------------" "--------------"
variant_rows=()
for l in "${labels[@]}"; do
    s=${l%%:*} label=${l#*:}
    b=$(med berth "$s") v=$(med virtiofsd "$s") n=$(med native "$s")
    ratio() { if [ "$1" = n/a ] || [ "$2" = n/a ]; then echo n/a; else awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "inf"}'; fi; }
    f3() { if [ "$1" = n/a ]; then echo n/a; else printf %.4f "$1"; fi; }
    printf "$fmt" "$label" "$(f3 "$b")" "$(f3 "$v")" "$(f3 "$n")" "$(ratio "$b" "$v")" "$(ratio "$b" "$n")"
    u=$(med berth-unconfined "$s") nb=$(med berth-noballoon "$s") ne=$(med berth-noevents "$s")
    variant_rows+=("$(printf '| %-40s | %9s | %12s | %14s | %11s | %12s | %14s |' "$label" "$(f3 "$b")" "$(f3 "$u")" "$(f3 "$nb")" "$(f3 "$ne")" "$(f3 "$v")" "$(ratio "$nb" "$v")")")
done
echo
if has berth-unconfined || has berth-noballoon || has berth-noevents; then
    echo "berth variants: unconfined = the same container without its seccomp filter (--security-opt seccomp=unconfined);"
    echo "noballoon = a second machine VM booted with BERTH_BALLOON=0 (no virtio-balloon free page reporting);"
    echo "noevents = one booted with BERTH_SHARE_EVENTS=0 (no host file events)"
    printf '| %-40s | %9s | %12s | %14s | %11s | %12s | %14s |\n' op "berth s" "unconfined s" "noballoon s" "noevents s" "virtiofsd s" "noballoon/vfsd"
    printf '|%s|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" "-----------" "--------------" "----------------" "-------------" "--------------" "----------------"
    printf '%s\n' "${variant_rows[@]}"
    echo
fi
for e in berth berth-unconfined berth-noballoon berth-noevents; do
    if has "$e" && [ -f "$work/$e.wall" ]; then
        echo "$e: 'run --rm' wall clock per round (container start + ops + exit): $(awk '{printf "%.1f s ", $2}' "$work/$e.wall")"
    fi
done
has virtiofsd && [ -f "$work/virtiofsd.wall" ] &&
    echo "virtiofsd: QEMU launch -> ops start / -> ops done per round: $(awk '{printf "%s / %.1f s ", ($3 == "n/a" ? "n/a" : sprintf("%.1f", $3)), $2}' "$work/virtiofsd.wall")"
if [ "$count" = 1 ]; then
    echo "FUSE requests per step, round 1 (COUNT=1: berth-vmm's BERTH_VMM_FS_TRACE log, virtiofsd's debug log;"
    echo "between the STATFS marks around each step, so a mark's own path lookup may add one request):"
    for e in berth berth-unconfined berth-noballoon berth-noevents virtiofsd; do
        [ -f "$work/$e.r1.ops" ] || continue
        awk -v e="$e" '
            BEGIN {
                split("write read create stat unlink find", step, " ")
                split("LOOKUP FORGET GETATTR SETATTR READLINK SYMLINK - MKNOD MKDIR UNLINK RMDIR RENAME LINK OPEN READ WRITE STATFS RELEASE - FSYNC SETXATTR GETXATTR LISTXATTR REMOVEXATTR FLUSH INIT OPENDIR READDIR RELEASEDIR FSYNCDIR GETLK SETLK SETLKW ACCESS CREATE INTERRUPT BMAP DESTROY IOCTL POLL NOTIFY_REPLY BATCH_FORGET FALLOCATE READDIRPLUS RENAME2 LSEEK", name, " ")
            }
            $1 == 17 { if (inside) { inside = 0; k++ } else inside = 1; marks++; next }
            inside { c[k + 1, $1]++; t[k + 1]++; if (!($1 in seen)) { seen[$1] = 1; ops[++nops] = $1 } }
            END {
                if (marks != 12) printf "  %s: %d STATFS marks, want 12: counts not split\n", e, marks
                else for (i = 1; i <= 6; i++) {
                    line = ""
                    for (j = 1; j <= nops; j++) if (c[i, ops[j]]) line = line sprintf(" %s %d", (ops[j] in name) ? name[ops[j]] : ops[j], c[i, ops[j]])
                    printf "  %-17s %-7s %5d:%s\n", e, step[i], t[i], line
                }
            }' "$work/$e.r1.ops"
    done
    echo
fi
if [ "$count" = 1 ]; then
    echo "host CPU seconds per step, round 1 (COUNT=1: all threads' schedstat every 0.1 s, between the STATFS marks;"
    echo "vCPU = the guest vCPU thread, emulation included; rest = the other VMM / QEMU threads and virtiofsd)"
    printf '  %-17s %-7s %8s %8s\n' engine step vCPU rest
    for e in berth berth-unconfined berth-noballoon berth-noevents virtiofsd; do
        [ -f "$work/$e.r1.marks" ] && [ -f "$work/$e.r1.cpu" ] || continue
        cpu_steps "$work/$e.r1.marks" "$work/$e.r1.cpu" | awk -v e="$e" '{printf "  %-17s %-7s %8s %8s\n", e, $1, $2, $3}'
    done
    echo
    echo "guest kernel counters per step, round 1 (COUNT=1: /proc/stat deltas over the timed"
    echo "step, read by the ops script with shell builtins; CPU in ticks of 10 ms: idle = the vCPU halted, waiting)"
    printf '  %-17s %-7s %6s %6s %6s %6s %6s %8s %8s %6s\n' engine step user system idle iowait irq+si ctxt intr forks
    for e in berth berth-unconfined berth-noballoon berth-noevents virtiofsd; do
        f=$work/$e.r1.out.clean
        [ "$e" = virtiofsd ] && f=$work/virtiofsd.r1.serial.clean
        [ -f "$f" ] || continue
        awk -v e="$e" '
            $1 == "FSCTR" && $3 == 0 { for (i = 4; i <= 13; i++) s[$2, i] = $i }
            $1 == "FSCTR" && $3 == 1 {
                for (i = 4; i <= 13; i++) dl[i] = $i - s[$2, i]
                printf "  %-17s %-7s %6d %6d %6d %6d %6d %8d %8d %6d\n", e, $2, dl[4] + dl[5], dl[6], dl[7], dl[8], dl[9] + dl[10], dl[11], dl[12], dl[13]
            }' "$f"
    done
    echo
fi
echo "no page-cache drops anywhere (a berth container cannot write /proc/sys); reads re-open the file:"
echo "with cache=auto the guest's page cache of it is dropped at open; the host's is warm in all three"
echo "total bench wall time $(( $(date +%s) - t_start )) s"
