#!/usr/bin/env bash
# Build berth's guest kernel from Debian's linux-source-6.12 package:
#   x86_64: uncompressed ELF vmlinux, booted through the PVH note / 64-bit entry;
#   arm64:  the raw `Image` (arm64 boot protocol), cross-built with
#           gcc-aarch64-linux-gnu (CROSS_COMPILE=aarch64-linux-gnu-).
#
#   kernel-config/build-kernel.sh          # x86_64; prints the vmlinux path (last line of stdout)
#   kernel-config/build-kernel.sh arm64    # prints the Image path
#
# Steps: extract /usr/src/linux-source-6.12.tar.xz, apply patches/*.patch
# (x86_64 only: they are kvm_pvm workarounds in arch/x86), `make allnoconfig`,
# merge <arch>.config (merge_config.sh -m), `make olddefconfig`, `make
# vmlinux` (or `Image`), then check that every `CONFIG_...=y` line of the
# fragment survived olddefconfig.
#
# Cached by a hash of its inputs (the fragment, the patches, this script, the
# linux-source package version): the result lives in
#   ${BERTH_CACHE_DIR:-$HOME/.cache/berth}/kernel/<hash>/
#     vmlinux|Image  config  release  config-check.txt  build.log
# and is only built when missing. The build runs in a temporary directory next
# to it and the finished directory is renamed into place, so an interrupted
# build never leaves a half artifact. Concurrent invocations for the same hash
# wait for each other (flock).
#
# Environment:
#   BERTH_CACHE_DIR         cache root (default ~/.cache/berth)
#   BERTH_KERNEL_SOURCE     source tarball (default /usr/src/linux-source-6.12.tar.xz)
#   BERTH_KERNEL_JOBS       make -j value (default: nproc)
#   BERTH_KERNEL_REBUILD=1  ignore the cached artifact and build again
#   BERTH_KERNEL_ARCH       x86_64 (default) or arm64; the first argument wins
#
# Installs nothing; kernel-config/deps.sh installs the build dependencies.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
arch=${1:-${BERTH_KERNEL_ARCH:-x86_64}}
case $arch in
    x86_64) target=vmlinux; artifact=vmlinux; cross="" ;;
    arm64|aarch64) arch=arm64; target=Image; artifact=arch/arm64/boot/Image; cross=aarch64-linux-gnu- ;;
    *) echo "build-kernel: unknown arch '$arch' (x86_64 or arm64)" >&2; exit 2 ;;
esac
out_name=$(basename "$artifact")
fragment="$here/$arch.config"
src_pkg=linux-source-6.12
tarball=${BERTH_KERNEL_SOURCE:-/usr/src/$src_pkg.tar.xz}
cache_root=${BERTH_CACHE_DIR:-$HOME/.cache/berth}/kernel
jobs=${BERTH_KERNEL_JOBS:-$(nproc)}

log() { printf 'build-kernel: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -f "$fragment" ] || die "missing config fragment $fragment"
[ -f "$tarball" ] || die "missing $tarball (run kernel-config/deps.sh)"
for tool in make gcc "${cross}gcc" flex bison bc cpio xz perl; do
    command -v "$tool" >/dev/null || die "missing build tool '$tool' (run kernel-config/deps.sh)"
done

shopt -s nullglob
patches=()
[ "$arch" != x86_64 ] || patches=("$here"/patches/*.patch)
shopt -u nullglob

# ------------------------------------------------------------------ cache key
# The source version: the Debian package version when the default tarball is
# used, otherwise the tarball's own hash.
if [ -z "${BERTH_KERNEL_SOURCE:-}" ] &&
   src_version=$(dpkg-query -W -f='${Version}' "$src_pkg" 2>/dev/null) && [ -n "$src_version" ]; then
    src_id="$src_pkg $src_version"
else
    log "hashing $tarball (not the packaged source)"
    src_id="tarball $(sha256sum "$tarball" | cut -d' ' -f1)"
fi

key_input() {
    echo "berth-kernel-v1 arch=$arch"
    echo "source: $src_id"
    echo "fragment: $(sha256sum <"$fragment" | cut -d' ' -f1)"
    echo "script: $(sha256sum <"$self" | cut -d' ' -f1)"
    local p
    for p in "${patches[@]}"; do
        echo "patch $(basename "$p"): $(sha256sum <"$p" | cut -d' ' -f1)"
    done
}
hash=$(key_input | sha256sum | cut -c1-16)
out="$cache_root/$hash"

if [ -f "$out/$out_name" ] && [ "${BERTH_KERNEL_REBUILD:-0}" != 1 ]; then
    log "cached: $(cat "$out/release" 2>/dev/null) ($out)"
    echo "$out/$out_name"
    exit 0
fi

mkdir -p "$cache_root"
# One builder per hash: whoever gets the lock builds, the others wait and then
# find the artifact.
exec 9>"$cache_root/.lock-$hash"
if ! flock -n 9; then
    log "another build of $hash is running; waiting for it"
    flock 9
fi
if [ -f "$out/$out_name" ] && [ "${BERTH_KERNEL_REBUILD:-0}" != 1 ]; then
    log "cached: $(cat "$out/release" 2>/dev/null) ($out)"
    echo "$out/$out_name"
    exit 0
fi
# Leftovers of builds of this hash that were killed (we hold the lock, so
# nobody is using them).
rm -rf "$cache_root"/.build-"$hash".*

work=$(mktemp -d "$cache_root/.build-$hash.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

start=$(date +%s)
log "building kernel $hash ($src_id, ${#patches[@]} patch(es), -j$jobs) in $work"
key_input >"$work/key.txt"

# ------------------------------------------------------------------ source
src="$work/src"
build="$work/build"
mkdir -p "$src" "$build" "$work/out"
log "extracting $tarball"
tar -xf "$tarball" -C "$src" --strip-components=1
for p in "${patches[@]}"; do
    log "applying $(basename "$p")"
    patch -d "$src" -p1 --forward --batch --quiet <"$p" >&2 || die "patch $(basename "$p") does not apply"
done

# ------------------------------------------------------------------ config
mk=(make -C "$src" O="$build" ARCH="$arch" KBUILD_BUILD_USER=berth KBUILD_BUILD_HOST=berth)
[ -z "$cross" ] || mk+=(CROSS_COMPILE="$cross")
if command -v ccache >/dev/null; then
    # Relative paths in the compiler command lines so that builds in
    # different temporary directories share ccache entries.
    export CCACHE_BASEDIR="$work"
    mk+=(CC="ccache ${cross}gcc" HOSTCC="ccache gcc")
    log "using ccache"
fi

"${mk[@]}" -s allnoconfig >&2
if ! (cd "$src" && ARCH="$arch" scripts/kconfig/merge_config.sh -m -O "$build" "$build/.config" "$fragment") \
        >"$work/out/merge_config.log" 2>&1; then
    cat "$work/out/merge_config.log" >&2
    die "merge_config.sh failed"
fi
"${mk[@]}" -s olddefconfig >&2

# ------------------------------------------------------------------ build
log "make -j$jobs $target"
if ! "${mk[@]}" -j"$jobs" "$target" >"$work/out/build.log" 2>&1; then
    tail -n 60 "$work/out/build.log" >&2
    cp "$work/out/build.log" "$cache_root/failed-$hash.log"
    die "kernel build failed (log above; full log in $cache_root/failed-$hash.log)"
fi
[ -f "$build/$artifact" ] || die "no $artifact produced"

# ------------------------------------------------------------------ check the config
# Every `CONFIG_X=y` of the fragment must still be `=y` (olddefconfig silently
# drops options whose dependencies are missing). `=n` lines and values are
# checked too, as notes.
check="$work/out/config-check.txt"
: >"$check"
dropped=()
while IFS= read -r line; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]] || continue
    sym=${BASH_REMATCH[1]}
    want=${BASH_REMATCH[2]}
    have=$(grep -E "^$sym=" "$build/.config" | cut -d= -f2- || true)
    case $want in
        y)
            if [ "$have" != y ]; then
                dropped+=("$sym")
                echo "DROPPED $sym=y (now: ${have:-not set})" >>"$check"
            fi ;;
        n)
            if [ -n "$have" ]; then
                echo "NOTE $sym=n requested but $sym=$have" >>"$check"
            fi ;;
        *)
            # strings/ints: compare without quotes
            if [ "${have//\"/}" != "${want//\"/}" ]; then
                echo "NOTE $sym=$want requested but ${have:-not set}" >>"$check"
            fi ;;
    esac
done <"$fragment"
if [ ${#dropped[@]} -gt 0 ]; then
    log "WARNING: ${#dropped[@]} option(s) of $(basename "$fragment") did not survive olddefconfig:"
    sed 's/^/build-kernel:   /' "$check" >&2
else
    log "config check: all =y options of $(basename "$fragment") survived"
    [ -s "$check" ] && sed 's/^/build-kernel:   /' "$check" >&2
fi

# ------------------------------------------------------------------ publish
release=$("${mk[@]}" -s kernelrelease)
cp "$build/$artifact" "$work/out/$out_name"
cp "$build/.config" "$work/out/config"
echo "$release" >"$work/out/release"
cp "$work/key.txt" "$work/out/key.txt"
# (an existing $out is only possible with BERTH_KERNEL_REBUILD=1)
[ ! -e "$out" ] || mv -T "$out" "$work/old"
mv -T "$work/out" "$out"

size=$(stat -c %s "$out/$out_name")
log "built $release ($arch) in $(( $(date +%s) - start )) s: $out_name $((size / 1024)) KiB"
echo "$out/$out_name"
