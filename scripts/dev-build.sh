#!/usr/bin/env bash
# Builds berth (host) and the static berth-agent. PROFILE=release for optimised builds.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-debug}
flag=(); [ "$profile" = release ] && flag=(--release)
cargo build "${flag[@]}" -p berth -p berth-vmm
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu \
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build "${flag[@]}" -p berth-agent --target x86_64-unknown-linux-gnu
# The agent travels in the guest initramfs: ship it without symbols.
agent=target/x86_64-unknown-linux-gnu/$profile/berth-agent
if [ "$profile" = release ] && command -v strip >/dev/null; then
  strip -o "$agent.tmp" "$agent" && mv "$agent.tmp" "$agent"
fi
