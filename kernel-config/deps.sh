#!/usr/bin/env bash
# Install (Debian/Ubuntu, apt) what build-kernel.sh and boot-test.sh need.
# Idempotent: does nothing, quickly, when everything is installed.
#
#   kernel-config/deps.sh           # install what is missing
#   kernel-config/deps.sh --list    # print the package names
#   kernel-config/deps.sh --check   # exit 1 if something is missing
set -euo pipefail

# build-kernel.sh: kernel source + toolchain
build_pkgs=(linux-source-6.12 build-essential flex bison bc libelf-dev libssl-dev
            cpio xz-utils perl ccache)
# boot-test.sh: QEMU microvm (libc6-dev from build-essential gives static libc)
test_pkgs=(qemu-system-x86)
pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}")

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for p in "${pkgs[@]}"; do
    installed "$p" || missing+=("$p")
done

case ${1:-} in
    --list) printf '%s\n' "${pkgs[@]}"; exit 0 ;;
    --check)
        if [ ${#missing[@]} -gt 0 ]; then
            echo "deps: missing: ${missing[*]}" >&2
            exit 1
        fi
        exit 0 ;;
    "") ;;
    *) echo "usage: $0 [--list|--check]" >&2; exit 2 ;;
esac

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all installed" >&2
    exit 0
fi

sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
    # package lists may be missing or stale
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
