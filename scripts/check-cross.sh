#!/usr/bin/env bash
# Cross-platform checks (issue 9): what this Linux x86_64 machine can verify
# about the macOS, Windows and arm64 builds of berth.
#
#   scripts/check-cross.sh          # install what is missing, then check
#   scripts/check-cross.sh --deps   # only install (idempotent, quick when done)
#
# 1. clippy -D warnings of the whole workspace (all targets) for
#    aarch64-apple-darwin, x86_64-apple-darwin, x86_64-pc-windows-msvc
#    (type-checks the hvf and whp backends; nothing is linked);
# 2. berth.exe and berth-vmm.exe for x86_64-pc-windows-gnu, linked with mingw-w64
#    (tests/tests/windows_cli_wine.rs runs it under wine);
# 3. the static aarch64 berth-agent (scripts/build-agent-arm64.sh);
# 4. the arm64 guest kernel (kernel-config/build-kernel.sh arm64; cached by
#    its inputs) — tests/tests/arm64_guest_boot.rs boots 3+4 under QEMU.
#    3 and 4 cost ~30 min on a fresh 2-core machine, seconds afterwards.
# The tests themselves run with the workspace tests (`cargo test --workspace`).
#
# Installs: rustup targets aarch64-apple-darwin x86_64-apple-darwin
# x86_64-pc-windows-msvc x86_64-pc-windows-gnu aarch64-unknown-linux-gnu;
# apt: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-system-arm
# gcc-mingw-w64-x86-64 wine64, and libseccomp-dev:arm64 (enables the arm64
# dpkg architecture).
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(aarch64-apple-darwin x86_64-apple-darwin x86_64-pc-windows-msvc
         x86_64-pc-windows-gnu aarch64-unknown-linux-gnu)
pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-system-arm
      gcc-mingw-w64-x86-64 wine64 libseccomp-dev:arm64)

log() { printf 'check-cross: %s\n' "$*" >&2; }

install_deps() {
    local have missing=() t p
    have=$(rustup target list --installed)
    for t in "${targets[@]}"; do
        grep -qx "$t" <<<"$have" || missing+=("$t")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "rustup target add ${missing[*]}"
        rustup target add "${missing[@]}" >/dev/null
    fi
    missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "dpkg --add-architecture arm64 (for libseccomp-dev:arm64)"
        "${sudo[@]}" dpkg --add-architecture arm64
        "${sudo[@]}" apt-get update -q >/dev/null
    fi
    log "apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
        { "${sudo[@]}" apt-get update -q >/dev/null &&
          "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
}

install_deps
[ "${1:-}" = --deps ] && exit 0

for t in aarch64-apple-darwin x86_64-apple-darwin x86_64-pc-windows-msvc; do
    log "clippy --workspace --all-targets --target $t"
    # No `tls` feature: ring would need a C compiler for the target.
    cargo clippy --workspace --all-targets --target "$t" --no-default-features -q -- -D warnings
done

log "berth.exe + berth-vmm.exe (x86_64-pc-windows-gnu, mingw-w64)"
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
    cargo build -q --release -p berth -p berth-vmm --target x86_64-pc-windows-gnu

# The arm64 guest (tests/tests/arm64_guest_boot.rs boots it under QEMU).
# On a fresh machine the kernel takes ~14 min and the agent ~15 min on 2
# cores; both are kept in the cache dir (the kernel keyed by its inputs, the
# agent's cargo target dir for incremental rebuilds), so later runs take
# seconds. BERTH_CROSS_ARM64=0 skips them (the test then prints SKIPPED).
if [ "${BERTH_CROSS_ARM64:-1}" != 0 ]; then
    log "aarch64 berth-agent (incremental, cargo target dir in the cache)"
    nice scripts/build-agent-arm64.sh | tail -n 1
    log "arm64 guest kernel (cached by its inputs)"
    nice kernel-config/build-kernel.sh arm64 | tail -n 1
else
    log "arm64 guest not built (BERTH_CROSS_ARM64=0)"
fi
log "ok"
