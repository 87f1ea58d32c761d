#!/usr/bin/env bash
# Cross-builds the static aarch64 berth-agent (the /init of arm64 guests):
#   target/aarch64-unknown-linux-gnu/$PROFILE/berth-agent
# Needs: rustup target aarch64-unknown-linux-gnu, gcc-aarch64-linux-gnu
# (linker + static glibc) and libseccomp-dev:arm64 (static libseccomp.a; the
# arm64 dpkg architecture must be enabled). scripts/check-cross.sh --deps
# installs all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
flag=(); [ "$profile" = release ] && flag=(--release)
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/aarch64-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build "${flag[@]}" -p berth-agent --target aarch64-unknown-linux-gnu
agent=target/aarch64-unknown-linux-gnu/$profile/berth-agent
# It travels in the guest initramfs: ship it without symbols.
if command -v aarch64-linux-gnu-strip >/dev/null; then
  aarch64-linux-gnu-strip -o "$agent.tmp" "$agent" && mv "$agent.tmp" "$agent"
fi
echo "$agent"
