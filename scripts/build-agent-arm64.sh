#!/usr/bin/env bash
# Cross-builds the static aarch64 berth-agent (the /init of arm64 guests):
#   target/aarch64-unknown-linux-gnu/$PROFILE/berth-agent   (last line of stdout)
# Needs: rustup target aarch64-unknown-linux-gnu, gcc-aarch64-linux-gnu
# (linker + static glibc) and libseccomp-dev:arm64 (static libseccomp.a; the
# arm64 dpkg architecture must be enabled). scripts/check-cross.sh --deps
# installs all of them.
#
# Cargo builds in ${BERTH_CACHE_DIR:-~/.cache/berth}/cargo-aarch64 (or
# $BERTH_ARM64_TARGET_DIR), not in the checkout's target/: the agent's ~300
# dependencies take ~15 min to cross-compile on 2 cores, and a cache dir
# outlives a fresh clone (CI), so later runs recompile only what changed.
# Cargo's own fingerprints decide what is stale. The finished binary is
# stripped and copied into the checkout's target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
flag=(); [ "$profile" = release ] && flag=(--release)
cache_target=${BERTH_ARM64_TARGET_DIR:-${BERTH_CACHE_DIR:-$HOME/.cache/berth}/cargo-aarch64}
out_dir=${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/$profile
mkdir -p "$cache_target" "$out_dir"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/aarch64-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$cache_target" \
  cargo build "${flag[@]}" -p berth-agent --target aarch64-unknown-linux-gnu
built=$cache_target/aarch64-unknown-linux-gnu/$profile/berth-agent
agent=$out_dir/berth-agent
# It travels in the guest initramfs: ship it without symbols.
if command -v aarch64-linux-gnu-strip >/dev/null; then
  aarch64-linux-gnu-strip -o "$agent.tmp" "$built"
else
  cp "$built" "$agent.tmp"
fi
mv "$agent.tmp" "$agent"
echo "$agent"
