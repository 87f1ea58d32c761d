#!/usr/bin/env bash
# VM networking rows of benches/net.sh (run by `VM=1 benches/net.sh`, or
# `VM=only benches/net.sh`, or directly): TCP throughput and connection rate
# through the VMs' network paths, berth against QEMU -M microvm booting the
# same guest kernel, side by side in one run:
#
#   berth   the machine VM (--isolation shared, private BERTH_HOME): virtio-net
#           served by berth-vmm's user-mode TCP/IP stack (--net user, smoltcp);
#           published ports through the host-side port forwarder (host-core
#           port_forward.rs: host TCP <-> vsock <-> the guest)
#   own     a container in a VM of its own (--isolation vm run -d, same home):
#           the same user-mode stack in its own VMM; published ports served
#           by its keeper process (port_forward::RunPorts, the same per-socket
#           code), to the guest's 127.0.0.1:PORT
#   passt   QEMU + passt (Debian `passt`): `-netdev stream,addr.type=unix`
#           (QEMU >= 7.2) to passt's socket, `-t HOSTPORT:80` forwards
#           (no -4: with it this passt (git 20230309) fails to bind -t ports)
#   slirp   QEMU `-netdev user` (libslirp), hostfwd=tcp:127.0.0.1:HOSTPORT-:80
#
# Rows (SIZE = VM_SIZE_MIB, small: the guest kernel is emulated on kvm_pvm
# hosts and the bytes it copies move at well under 1 MB/s there):
#   guest → host  busybox `wget -q -O /dev/null` in the guest of a SIZE file
#                 from busybox httpd on the host's 127.0.0.1, through the host
#                 alias (berth: 192.168.127.254, in a container on the guest's
#                 default bridge, so the guest also NATs; QEMU: 10.0.2.2, the
#                 slirp host alias and passt's gateway, which passt maps to the
#                 host's loopback); timed in the guest with $EPOCHREALTIME
#   host → guest  `curl -o /dev/null http://127.0.0.1:HOSTPORT/big` on the host
#                 through the forwarded port to busybox httpd in the guest
#                 (berth: `run -d -p 127.0.0.1:HOSTPORT:80` in the machine VM;
#                 own: the same with --isolation vm; QEMU: the hostfwd /
#                 passt -t forward), a SIZE file made in the guest's memory
#                 (tmpfs / the container's rootfs) before the timing
#   connection rate, guest → host  CONNS busybox `wget -q -O /dev/null` of a
#                 2-byte file one after another (a new connection each, and a
#                 fork + exec of wget in the guest each), timed in the guest
#   connection rate, host → guest  `ab -n CONNS -c 1` (apache2-utils) of the
#                 guest's 2-byte index.html through the forwarded port
# MiB/s or connections/s per row, and the ratio berth / peer (below 1: berth
# is slower).
#
# QEMU guest: the same kernel (newest ~/.cache/berth/kernel/*/vmlinux or
# $BERTH_KERNEL), 1 vCPU, 512 MiB, flags as in benches/boot.sh / fs.sh, and on
# kvm_pvm hosts the same PVM_CMDLINE_EXTRAS; root disk: a small read-only ext4
# with the static busybox (busybox-static) and an /init that sets eth0 to
# 10.0.2.15/24 via 10.0.2.2 (static, the same for both QEMU peers), makes the
# file, starts httpd, runs the guest → host wget, and then waits for the host
# → guest download. The berth machine VM gets its default size (on kvm_pvm
# hosts 1 vCPU / 512 MiB as well; BERTH_MACHINE_CPUS / BERTH_MACHINE_MEM_MIB).
#
# Environment: VM_SIZE_MIB (2), VM_CONNS (50, connections per rate row),
# VM_ROUNDS (1; each round runs every peer, the order rotating), VM_PEERS
# ("berth own passt slirp"), VM_TIMEOUT (seconds a guest step may take, 600),
# VM_PORT_BASE (18480: the host server; +1, +2, +3, +4 the berth, passt,
# slirp and own forwards), NICE (niceness of the VMMs and passt, 0), KEEP=1.
# A peer that cannot run is printed as `SKIPPED: <reason>`; the others still
# run. Processes: the own-VM container is removed with `rm -f` (its keeper
# and VMM go with it), the machine VM is stopped with `machine stop` (then
# its recorded VMM PID killed if it is still there), QEMU, passt and the host
# httpd are killed by the PIDs started here; last, any process still running
# one of the binaries copied into this run's work directory is killed by its
# PID. Nothing is killed by name.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
size_mib=${VM_SIZE_MIB:-2}
rounds=${VM_ROUNDS:-1}
conns=${VM_CONNS:-50}
peers=${VM_PEERS:-berth own passt slirp}
step_timeout=${VM_TIMEOUT:-600}
niceness=${NICE:-0}
srv_port=${VM_PORT_BASE:-18480}   # host-side server on 127.0.0.1; the forwards follow it
port_berth=$((srv_port + 1)) port_passt=$((srv_port + 2)) port_slirp=$((srv_port + 3)) port_own=$((srv_port + 4))
base_cmdline='console=ttyS0 reboot=k panic=-1 quiet clocksource=kvm-clock'
root_args='root=/dev/vda ro rootfstype=ext4 init=/init'
# = PVM_CMDLINE_EXTRAS in vmm/src/host_quirks.rs (berth-vmm adds it itself).
pvm_extras='kvm_emul_safe noreplace-smp noxsave clearcpuid=141,145,298,288,308,158,306,534,59,151,590,311,312,514,320,321,323,297,580'

log() { printf 'bench-vm: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
[[ $size_mib =~ ^[1-9][0-9]*$ ]] || die "VM_SIZE_MIB must be a positive integer"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "VM_ROUNDS must be a positive integer"
[[ $conns =~ ^[1-9][0-9]*$ ]] || die "VM_CONNS must be a positive integer"
for p in $peers; do
    case $p in berth | own | passt | slirp) ;; *) die "VM_PEERS: unknown peer $p (berth, own, passt, slirp)" ;; esac
done
has() { [[ " $peers " == *" $1 "* ]]; }
PATH=$PATH:/usr/sbin:/sbin

busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || die "$busybox missing (apt-get install busybox-static)"
command -v curl >/dev/null || die "curl missing"
if ! command -v ab >/dev/null; then
    log "installing apache2-utils (ab)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends apache2-utils >/dev/null 2>&1 || true
fi
command -v ab >/dev/null || log "ab missing (apt-get install apache2-utils failed): no host → guest connection-rate row"
if [ -n "${BERTH_KERNEL:-}" ]; then kernel=$BERTH_KERNEL; else
    kernel=$(ls -t "${BERTH_CACHE_DIR:-$HOME/.cache/berth}"/kernel/*/vmlinux 2>/dev/null | head -n 1 || true)
fi
[ -f "$kernel" ] || die "no guest kernel (kernel-config/build-kernel.sh, or set BERTH_KERNEL)"
[ -w /dev/kvm ] || die "/dev/kvm is not usable"

declare -A skip
if has passt && ! command -v passt >/dev/null; then
    log "installing passt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends passt >/dev/null 2>&1 || true
fi
if ! command -v qemu-system-x86_64 >/dev/null; then
    skip[passt]="qemu-system-x86_64 missing" skip[slirp]="qemu-system-x86_64 missing"
else
    qemu_netdevs=$(qemu-system-x86_64 -netdev help 2>/dev/null)
    grep -qx user <<<"$qemu_netdevs" || skip[slirp]="this QEMU has no -netdev user (built without libslirp)"
    grep -qx stream <<<"$qemu_netdevs" || skip[passt]="this QEMU has no -netdev stream (QEMU < 7.2): passt would need qrap"
fi
command -v passt >/dev/null || skip[passt]="passt missing (apt-get install passt failed)"
mkfs=$(command -v mkfs.ext4 || true)
[ -n "$mkfs" ] || { skip[passt]="mkfs.ext4 missing"; skip[slirp]="mkfs.ext4 missing"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench-netvm.XXXXXX")
mkdir -p "$work/bin" "$work/www" "$work/res"
berth=$work/bin/berth
qemu_pid="" passt_pid="" srv_pid="" machine_up="" berth_web="" own_web=""
cleanup() {
    set +e
    local p
    for p in "$qemu_pid" "$passt_pid" "$srv_pid"; do
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill -KILL "$p"; wait "$p" 2>/dev/null; fi
    done
    [ -n "$own_web" ] && { timeout 120 "$berth" --isolation vm rm -f nb-own >/dev/null 2>&1 || log "own: rm -f nb-own failed"; }
    if [ -n "$machine_up" ]; then
        [ -n "$berth_web" ] && timeout 120 "$berth" --isolation shared rm -f nb-web >/dev/null 2>&1
        p=$(cat "$BERTH_HOME/machine/vmm.pid" 2>/dev/null)
        timeout 120 "$berth" --isolation shared machine stop >/dev/null 2>&1 || log "machine stop failed"
        if [ -n "$p" ] && kill -0 "$p" 2>/dev/null &&
            tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$work/"; then
            log "machine VMM $p still running after stop: killing it"
            kill -KILL "$p"
        fi
    fi
    # Anything still running a binary of this run's (a keeper, a VMM).
    local c
    for c in /proc/[0-9]*/cmdline; do
        p=${c#/proc/} p=${p%/cmdline}
        [ "$p" != $$ ] && tr '\0' ' ' <"$c" 2>/dev/null | grep -qF "$work/bin/" || continue
        log "process $p still runs a binary of this run: killing it"
        kill -KILL "$p" 2>/dev/null
    done
    if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for p in "$srv_port" "$port_berth" "$port_passt" "$port_slirp" "$port_own"; do
    ! ss -Hltn "sport = :$p" | grep -q . || die "port $p is in use on this host (set VM_PORT_BASE)"
done
size_bytes=$((size_mib * 1048576))
dd if=/dev/zero of="$work/www/big" bs=1M count="$size_mib" status=none
echo x >"$work/www/index.html"
"$busybox" httpd -f -p "127.0.0.1:$srv_port" -h "$work/www" &
srv_pid=$!
sleep 0.3
curl -sSf -o /dev/null "http://127.0.0.1:$srv_port/index.html" || die "host httpd on 127.0.0.1:$srv_port does not answer"

mbps() { awk -v b="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.3f\n", b / 1048576 / t; else print "inf" }'; }
# h2g PEER PORT: curl the forwarded port, append MiB/s to res/h2g.PEER
h2g() {
    local out
    out=$(curl -sS --max-time "$step_timeout" -o /dev/null -w '%{http_code} %{size_download} %{time_total}' \
        "http://127.0.0.1:$2/big") || { log "$1: curl through 127.0.0.1:$2 failed"; return 1; }
    set -- "$1" "$2" $out
    [ "$3" = 200 ] && [ "$4" = "$size_bytes" ] || { log "$1: curl: status $3, $4 bytes"; return 1; }
    mbps "$4" "$5" >>"$work/res/h2g.$1"
    log "$1: host → guest $(tail -n 1 "$work/res/h2g.$1") MiB/s ($5 s)"
}
# h2gc PEER PORT: ab -n CONNS -c 1 through the forwarded port, append
# connections/s to res/h2gc.PEER
h2gc() {
    command -v ab >/dev/null || return 0
    local out n
    out=$(timeout "$step_timeout" ab -q -n "$conns" -c 1 -s "$step_timeout" "http://127.0.0.1:$2/index.html" 2>&1) ||
        { log "$1: ab through 127.0.0.1:$2 failed: $(tail -n 2 <<<"$out" | tr '\n' ' ')"; return 1; }
    n=$(awk -v n="$conns" '/^Complete requests:/ {c = $3} /^Failed requests:/ {f = $3} /^Non-2xx responses:/ {x = $3}
        END {print (c == n && f == 0 && x == "") ? "ok" : "complete " c ", failed " f ", non-2xx " x}' <<<"$out")
    [ "$n" = ok ] || { log "$1: ab: $n"; return 1; }
    awk '/^Requests per second:/ {print $4}' <<<"$out" >>"$work/res/h2gc.$1"
    log "$1: host → guest $(tail -n 1 "$work/res/h2gc.$1") connections/s (ab -n $conns -c 1)"
}
# The guest's part of both guest → host rows, in a busybox sh: prints
# "T0 T1 T2 T3" (the SIZE download, then CONNS downloads of a 2-byte file).
# $1: the host alias, $2: the host server's port, $3: CONNS.
guest_g2h='t0=$EPOCHREALTIME; wget -q -O /dev/null "http://$1:$2/big" || exit 1; t1=$EPOCHREALTIME
i=0; while [ $i -lt $3 ]; do wget -q -O /dev/null "http://$1:$2/index.html" || exit 2; i=$((i + 1)); done
echo "$t0 $t1 $t1 $EPOCHREALTIME"'
# g2h_record PEER "T0 T1 T2 T3": append to res/g2h.PEER and res/g2hc.PEER
g2h_record() {
    awk -v b="$size_bytes" -v t="$2" 'BEGIN { split(t, a, " "); printf "%.3f\n", b / 1048576 / (a[2] - a[1]) }' >>"$work/res/g2h.$1"
    awk -v n="$conns" -v t="$2" 'BEGIN { split(t, a, " "); printf "%.2f\n", n / (a[4] - a[3]) }' >>"$work/res/g2hc.$1"
    log "$1: guest → host $(tail -n 1 "$work/res/g2h.$1") MiB/s, $(tail -n 1 "$work/res/g2hc.$1") connections/s"
}
# web_cmd: the container's command (a SIZE file, an index.html, httpd)
web_cmd="mkdir -p /www && echo x >/www/index.html && dd if=/dev/zero of=/www/big bs=1M count=$size_mib 2>/dev/null && exec httpd -f -p 80 -h /www"
# wait_port PEER PORT: until the forwarded port serves index.html
wait_port() {
    local i
    for ((i = 0; i < step_timeout; i++)); do
        [ "$(curl -s --max-time 30 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2/index.html")" = 200 ] && return 0
        sleep 1
    done
    return 1
}

# ------------------------------------------------------------------ berth
# berth_env: the binaries copied into the work directory, a private home
berth_env() {
    [ -x "$berth" ] && return 0
    cp "$root/target/release/berth" "$root/target/release/berth-vmm" \
        "$root/target/x86_64-unknown-linux-gnu/release/berth-agent" "$work/bin/" || return 1
    export BERTH_HOME=$work/home BERTH_AGENT=$work/bin/berth-agent BERTH_VMM=$work/bin/berth-vmm BERTH_KERNEL=$kernel
    unset BERTH_ISOLATION BERTH_MACHINE_NET
}
berth_setup() {
    berth_env || { skip[berth]="copying the berth binaries failed"; return 1; }
    local t0=$SECONDS
    machine_up=1
    log "berth: booting the machine VM (BERTH_HOME $BERTH_HOME)"
    nice -n "$niceness" "$berth" --isolation shared machine start >/dev/null || { skip[berth]="machine start failed"; return 1; }
    "$berth" --isolation shared load -q -i "$root/out/images/busybox.oci.tar" >/dev/null || { skip[berth]="image load failed"; return 1; }
    berth_web=1
    "$berth" --isolation shared run -d --name nb-web -p "127.0.0.1:$port_berth:80" berth/busybox sh -c "$web_cmd" >/dev/null ||
        { skip[berth]="run -d -p 127.0.0.1:$port_berth:80 failed"; return 1; }
    wait_port berth "$port_berth" || { skip[berth]="published port 127.0.0.1:$port_berth never answered"; return 1; }
    log "berth: machine up, image loaded, web container serving in $((SECONDS - t0)) s"
}
# own_setup: a detached container in a VM of its own, in the same home
own_setup() {
    berth_env || { skip[own]="copying the berth binaries failed"; return 1; }
    local t0=$SECONDS
    log "own: loading the image, starting a container in a VM of its own"
    "$berth" --isolation vm load -q -i "$root/out/images/busybox.oci.tar" >/dev/null || { skip[own]="image load (--isolation vm) failed"; return 1; }
    own_web=1
    local out
    out=$(nice -n "$niceness" timeout "$step_timeout" "$berth" --isolation vm run -d --name nb-own -p "127.0.0.1:$port_own:80" \
        berth/busybox sh -c "$web_cmd" 2>&1 >/dev/null) ||
        { skip[own]="--isolation vm run -d -p 127.0.0.1:$port_own:80 failed: $(tail -n 1 <<<"$out")"; return 1; }
    wait_port own "$port_own" || { skip[own]="published port 127.0.0.1:$port_own never answered"; return 1; }
    log "own: VM up, web container serving in $((SECONDS - t0)) s"
}
# run_berth PEER: the rows of the machine VM (berth) or the own VM (own)
run_berth() {
    local t iso=shared name=nb-web port=$port_berth
    [ "$1" = own ] && iso=vm name=nb-own port=$port_own
    t=$(timeout "$step_timeout" "$berth" --isolation "$iso" exec "$name" sh -c "$guest_g2h" \
        sh 192.168.127.254 "$srv_port" "$conns") || { log "$1: wget in the container failed"; return 1; }
    g2h_record "$1" "$t"
    h2g "$1" "$port" && h2gc "$1" "$port"
}

# ------------------------------------------------------------------ QEMU
qemu_setup() {
    local tree=$work/qroot
    mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp}
    cp "$busybox" "$tree/bin/busybox"
    "$busybox" --list-full | while read -r applet; do
        [ "$applet" = bin/busybox ] || ln -sf /bin/busybox "$tree/$applet"
    done
    # NB_SIZE / NB_PORT come from the kernel command line (unknown key=value
    # words reach init as environment variables).
    cat >"$tree/init" <<'EOF'
#!/bin/busybox sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t devtmpfs dev /dev 2>/dev/null
ip link set lo up
ip link set eth0 up || echo "NETBENCH-ERROR no eth0"
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
mkdir /tmp/www && echo x >/tmp/www/index.html
dd if=/dev/zero of=/tmp/www/big bs=1M count="$NB_SIZE" 2>/dev/null
[ "$(stat -c %s /tmp/www/big)" = $((NB_SIZE * 1048576)) ] || echo "NETBENCH-ERROR dd made $(ls -l /tmp/www)"
httpd -f -p 80 -h /tmp/www &
echo "NETBENCH-BEGIN $(uname -r)"
t0=$EPOCHREALTIME
if wget -q -O /dev/null "http://10.0.2.2:$NB_PORT/big"; then
    t1=$EPOCHREALTIME
    i=0
    while [ $i -lt "$NB_CONNS" ] && wget -q -O /dev/null "http://10.0.2.2:$NB_PORT/index.html"; do i=$((i + 1)); done
    if [ $i = "$NB_CONNS" ]; then
        echo "NETBENCH g2h $t0 $t1 $t1 $EPOCHREALTIME"
    else
        echo "NETBENCH-ERROR wget http://10.0.2.2:$NB_PORT/index.html failed after $i"
    fi
else
    echo "NETBENCH-ERROR wget http://10.0.2.2:$NB_PORT/big failed"
fi
echo NETBENCH-READY
while :; do sleep 3600; done
EOF
    chmod 755 "$tree/init"
    qroot=$work/qroot.ext4
    truncate -s 16M "$qroot"
    "$mkfs" -q -F -b 4096 -m 0 -O ^has_journal -E root_owner=0:0 -d "$tree" "$qroot" ||
        { skip[passt]="mkfs.ext4 failed"; skip[slirp]="mkfs.ext4 failed"; return 1; }
    append="$base_cmdline $root_args NB_SIZE=$size_mib NB_PORT=$srv_port NB_CONNS=$conns"
    [ -e /sys/module/kvm_pvm ] && append="$append $pvm_extras"
    return 0
}
# run_qemu PEER: boot, wait for the guest → host row, then the host → guest one
run_qemu() {
    local peer=$1 serial=$work/$1.r$r.serial port netdev
    rm -f "$serial"
    if [ "$peer" = passt ]; then
        port=$port_passt
        # passt drops to nobody when started as root: its socket goes in a
        # directory nobody can write.
        local sock=$work/passt/passt.sock
        mkdir -p "$work/passt" && chmod 755 "$work" && chmod 1777 "$work/passt"
        rm -f "$sock"
        nice -n "$niceness" passt -f -e -1 -s "$sock" -a 10.0.2.15 -n 24 -g 10.0.2.2 \
            -t "$port:80" -u none >"$work/passt.r$r.log" 2>&1 &
        passt_pid=$!
        local i
        for ((i = 0; i < 100; i++)); do [ -S "$sock" ] && break; sleep 0.1; done
        [ -S "$sock" ] || { skip[passt]="passt made no socket: $(tail -n 2 "$work/passt.r$r.log" | tr '\n' ' ')"; return 1; }
        netdev="stream,id=n0,server=off,addr.type=unix,addr.path=$sock"
    else
        port=$port_slirp
        netdev="user,id=n0,net=10.0.2.0/24,host=10.0.2.2,hostfwd=tcp:127.0.0.1:$port-:80"
    fi
    local t0
    t0=$(date +%s.%N)
    nice -n "$niceness" qemu-system-x86_64 \
        -M microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off \
        -enable-kvm -cpu host,-arch-capabilities -m 512 -smp 1 \
        -nodefaults -no-user-config -nographic \
        -serial "file:$serial" -no-reboot -device i8042 \
        -drive "id=root,file=$qroot,format=raw,if=none,readonly=on" \
        -device virtio-blk-device,drive=root \
        -netdev "$netdev" -device virtio-net-device,netdev=n0 \
        -kernel "$kernel" -append "$append" >"$work/qemu.$peer.r$r.log" 2>&1 &
    qemu_pid=$!
    local ok=""
    while :; do
        grep -q '^NETBENCH-READY' "$serial" 2>/dev/null && { ok=1; break; }
        kill -0 "$qemu_pid" 2>/dev/null || break
        awk -v a="$(date +%s.%N)" -v b="$t0" -v l="$step_timeout" 'BEGIN {exit !(a - b > l)}' && break
        sleep 0.5
    done
    local booted
    booted=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')
    local rc=0
    tr -d '\r' <"$serial" >"$serial.clean" 2>/dev/null || true
    if [ -z "$ok" ] || grep -q '^NETBENCH-ERROR' "$serial.clean"; then
        tail -n 8 "$serial.clean" "$work/qemu.$peer.r$r.log" "$work/passt.r$r.log" 2>/dev/null | sed 's/^/    /' >&2
        skip[$peer]="round $r: $(grep -m1 '^NETBENCH-ERROR' "$serial.clean" || echo "no NETBENCH-READY on the serial console after $booted s")"
        rc=1
    else
        log "$peer: launch → ready $booted s"
        g2h_record "$peer" "$(awk '$1 == "NETBENCH" && $2 == "g2h" { print $3, $4, $5, $6 }' "$serial.clean")"
        h2g "$peer" "$port" || { skip[$peer]="round $r: host → guest curl through 127.0.0.1:$port failed"; rc=1; }
        [ "$rc" != 0 ] || h2gc "$peer" "$port" || { skip[$peer]="round $r: host → guest ab through 127.0.0.1:$port failed"; rc=1; }
    fi
    kill -KILL "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=""
    if [ -n "$passt_pid" ]; then
        kill -TERM "$passt_pid" 2>/dev/null || true
        wait "$passt_pid" 2>/dev/null || true
        passt_pid=""
    fi
    return $rc
}

# ------------------------------------------------------------------ run
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)
log "kernel $kernel; $size_mib MiB per row; peers: $peers; load $load_start"
if has berth && [ -z "${skip[berth]:-}" ]; then berth_setup || true; fi
if has own && [ -z "${skip[own]:-}" ]; then own_setup || true; fi
if { has passt && [ -z "${skip[passt]:-}" ]; } || { has slirp && [ -z "${skip[slirp]:-}" ]; }; then qemu_setup || true; fi
order=()
for p in berth own passt slirp; do has "$p" && order+=("$p"); done
for ((r = 1; r <= rounds; r++)); do
    for ((k = 0; k < ${#order[@]}; k++)); do
        p=${order[$(((k + r - 1) % ${#order[@]}))]}
        [ -z "${skip[$p]:-}" ] || continue
        case $p in
        berth | own) run_berth "$p" || skip[$p]="round $r: see the log above" ;;
        passt | slirp) run_qemu "$p" || log "$p SKIPPED: ${skip[$p]}" ;;
        esac
    done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ report
med() {
    local f=$work/res/$1.$2
    [ -s "$f" ] || { echo n/a; return; }
    sort -g "$f" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'
}
# rng ROW PEER: "min–max" of the rounds (empty with one round)
rng() {
    local f=$work/res/$1.$2
    [ "$(wc -l <"$f" 2>/dev/null || echo 0)" -gt 1 ] || return 0
    sort -g "$f" | awk 'NR == 1 {a = $1} {b = $1} END {printf " (%s–%s)", a, b}'
}
ratio() { if [ "$1" = n/a ] || [ "$2" = n/a ]; then echo n/a; else awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; fi; }
f() { if [ "$1" = n/a ]; then echo n/a; else printf %.3f "$1"; fi; }
echo
echo "VM networking, $size_mib MiB per throughput row, $conns connections per rate row, $rounds round(s): medians (range), higher is better"
echo "host: $(uname -r), $([ -e /sys/module/kvm_pvm ] && echo 'kvm_pvm (guest kernel emulated)' || echo kvm), $(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC'); load average $load_start at start, $load_end at end; $(($(date +%s) - t_start)) s"
echo "kernel $kernel; $("$berth" --version 2>/dev/null || echo '?') (git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))"
command -v qemu-system-x86_64 >/dev/null && echo "$(qemu-system-x86_64 --version | head -n 1) -M microvm; passt $(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo '?') via -netdev stream; slirp: -netdev user (libslirp $(dpkg-query -W -f '${Version}' libslirp0 2>/dev/null || echo '?'))"
echo
# Columns: each peer run, then berth and own against each QEMU peer.
ours=() theirs=()
for p in berth own; do has "$p" && ours+=("$p"); done
for p in passt slirp; do has "$p" && theirs+=("$p"); done
head="| row |" rule="|---|"
for p in "${order[@]}"; do head+=" ${p/own/own VM} |" rule+="---|"; done
for a in "${ours[@]}"; do for b in "${theirs[@]}"; do head+=" $a/$b |" rule+="---|"; done; done
echo "$head"
echo "$rule"
for row in g2h h2g g2hc h2gc; do
    case $row in
    g2h) label="guest → host: wget $size_mib MiB from host 127.0.0.1, MiB/s" ;;
    h2g) label="host → guest: curl $size_mib MiB via the forwarded port, MiB/s" ;;
    g2hc) label="guest → host: $conns wget of 2 bytes, connections/s" ;;
    h2gc) label="host → guest: ab -n $conns -c 1 of 2 bytes via the forwarded port, connections/s" ;;
    esac
    line="| $label |"
    for p in "${order[@]}"; do line+=" $(f "$(med "$row" "$p")")$(rng "$row" "$p") |"; done
    for a in "${ours[@]}"; do for b in "${theirs[@]}"; do line+=" $(ratio "$(med "$row" "$a")" "$(med "$row" "$b")") |"; done; done
    echo "$line"
done
echo
echo "berth: the machine VM (--isolation shared; its container reaches the host at 192.168.127.254);"
echo "own VM: --isolation vm run -d (the same alias); QEMU guests reach the host at 10.0.2.2."
echo "Published ports: berth -p 127.0.0.1:P:80 (port forwarder, vsock), passt -t, slirp hostfwd."
for p in berth own passt slirp; do
    if has "$p" && [ -n "${skip[$p]:-}" ]; then echo "$p: SKIPPED: ${skip[$p]}"; fi
done
