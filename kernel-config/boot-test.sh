#!/usr/bin/env bash
# Developer aid: boot the berth guest kernel under QEMU (-M microvm) with a
# tiny static /init (testinit/init.c) and time launch -> marker.
#
#   kernel-config/boot-test.sh [-n RUNS] [-k VMLINUX] [-s SMP] [-m MEM_MB] [-v] [-- EXTRA_CMDLINE...]
#
# Builds (or finds in the cache) the kernel with build-kernel.sh unless -k is
# given. Succeeds only if every run prints BERTH-TEST-INIT-OK and
# BERTH-TEST-RESULT PASS on the serial console and QEMU exits by itself.
# -v prints the serial log of every run.
#
# The command line carries what a kvm_pvm host needs (kvm_emul_safe, noxsave,
# clearcpuid=...; see README.md); on real KVM these are harmless.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
runs=1 vmlinux="" smp=1 mem=128 verbose=0 timeout_s=${BOOT_TIMEOUT:-120}
while [ $# -gt 0 ]; do
    case $1 in
        -n) runs=$2; shift 2 ;;
        -k) vmlinux=$2; shift 2 ;;
        -s) smp=$2; shift 2 ;;
        -m) mem=$2; shift 2 ;;
        -v) verbose=1; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "boot-test: unknown argument $1" >&2; exit 2 ;;
    esac
done
extra_cmdline="$*"

log() { printf 'boot-test: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (kernel-config/deps.sh)"
[ -w /dev/kvm ] || die "/dev/kvm not usable"
if [ -z "$vmlinux" ]; then
    vmlinux=$("$here/build-kernel.sh" | tail -n 1)
fi
[ -f "$vmlinux" ] || die "no kernel at $vmlinux"

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-boot-test.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ------------------------------------------------------------------ initramfs
# /init (static) + /dev/console; the kernel needs the console node to give
# init its stdin/stdout/stderr before devtmpfs is mounted. Uncompressed: the
# kernel unpacks it with emulated instructions on kvm_pvm (~1 s per MB).
root="$work/root"
mkdir -p "$root/dev" "$root/proc"
gcc -static -Os -s -Wall -Wextra -Werror -o "$root/init" "$here/testinit/init.c"
mknod -m 600 "$root/dev/console" c 5 1 || die "mknod /dev/console failed (needs root)"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) >"$work/initramfs.cpio"
log "kernel $vmlinux ($(( $(stat -c %s "$vmlinux") / 1024 )) KiB), initramfs $(( $(stat -c %s "$work/initramfs.cpio") / 1024 )) KiB"

# ------------------------------------------------------------------ boot
# noreplace-smp: with one vCPU an SMP kernel otherwise rewrites ~6000 LOCK
# prefixes one text_poke() at a time (several seconds emulated).
cmdline="console=ttyS0 kvm_emul_safe noxsave noreplace-smp reboot=k panic=-1 quiet"
cmdline+=" clearcpuid=141,145,298,288,308,158,306,534,59,151,590,311,312,514,320,321,323,297,580"
[ -z "$extra_cmdline" ] || cmdline+=" $extra_cmdline"

qemu=(qemu-system-x86_64
    -M microvm,x-option-roms=off,isa-serial=on,rtc=on,acpi=off
    -enable-kvm -cpu host,-arch-capabilities -smp "$smp" -m "$mem"
    -nodefaults -no-user-config -nographic -no-reboot
    -serial stdio -device i8042
    -kernel "$vmlinux" -initrd "$work/initramfs.cpio" -append "$cmdline")

# One boot; prints "<marker seconds> <exit seconds> <guest uptime at init>".
boot_once() {
    local i=$1 serial="$work/serial.$1.log" t0 now line marker="" uptime="" result="" rc
    t0=$EPOCHREALTIME
    : >"$serial"
    while IFS= read -r line; do
        line=${line%$'\r'}
        now=$EPOCHREALTIME
        printf '%8.3f %s\n' "$(echo "$now - $t0" | bc)" "$line" >>"$serial"
        case $line in
            *BERTH-TEST-INIT-OK*) [ -n "$marker" ] || marker=$(echo "$now - $t0" | bc) ;;
            *BERTH-TEST-UPTIME*) uptime=${line##* } ;;
            *BERTH-TEST-RESULT*) result=${line##* } ;;
        esac
    done < <(timeout "$timeout_s" "${qemu[@]}" </dev/null 2>&1; echo "BERTH-QEMU-EXIT $?")
    local end
    end=$(echo "$EPOCHREALTIME - $t0" | bc)
    rc=$(sed -n 's/.*BERTH-QEMU-EXIT \([0-9]*\)$/\1/p' "$serial" | tail -n 1)
    if [ "$verbose" = 1 ]; then
        sed 's/^/    /' "$serial" >&2
    fi
    if [ -z "$marker" ] || [ "$result" != PASS ] || [ "$rc" != 0 ]; then
        [ "$verbose" = 1 ] || sed 's/^/    /' "$serial" | tail -n 40 >&2
        [ -n "$marker" ] || die "run $i: marker BERTH-TEST-INIT-OK not seen (qemu rc=${rc:-?}${rc:+; 124 = timeout ${timeout_s}s})"
        [ "$result" = PASS ] || die "run $i: init reported ${result:-nothing} (see BERTH-TEST-FS lines)"
        die "run $i: qemu exited with rc=$rc (expected 0 via reboot=k + -no-reboot)"
    fi
    log "run $i: marker $(printf '%.2f' "$marker") s, qemu exit $(printf '%.2f' "$end") s, guest uptime at /init ${uptime:-?} s"
    echo "$marker $end $uptime"
}

log "qemu -smp $smp -m $mem, cmdline: $cmdline"
release=""
results=()
for ((i = 1; i <= runs; i++)); do
    r=$(boot_once "$i") || exit 1
    results+=("$r")
    [ -n "$release" ] || release=$(sed -n 's/.*BERTH-TEST-RELEASE //p' "$work/serial.$i.log" | head -n 1)
done

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
m_marker=$(printf '%s\n' "${results[@]}" | awk '{print $1}' | median)
m_exit=$(printf '%s\n' "${results[@]}" | awk '{print $2}' | median)
m_uptime=$(printf '%s\n' "${results[@]}" | awk '{print $3}' | median)
printf 'PASS: %s booted %d time(s); median launch->marker %.2f s, launch->exit %.2f s, guest uptime at /init %s s\n' \
    "${release:-?}" "$runs" "$m_marker" "$m_exit" "$m_uptime"
