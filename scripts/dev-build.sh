#!/usr/bin/env bash
# Builds berth (host) and the static berth-agent. PROFILE=release for optimised builds.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-debug}
flag=(); [ "$profile" = release ] && flag=(--release)
cargo build "${flag[@]}" -p berth -p berth-vmm
# Static and not position-independent: a static-pie binary relocates itself
# at every exec (~25k relocations, ~110 pages of .data.rel.ro copied on
# write), which the agent pays for every container it starts, and dearly
# where guest page faults are emulated.
agent_build() {
  LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu \
  RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static' \
    cargo build "${flag[@]}" -p berth-agent --target x86_64-unknown-linux-gnu "$@"
}
agent=target/x86_64-unknown-linux-gnu/$profile/berth-agent
# The tests' variant first (the faults of guest-agent/src/engine/fault.rs,
# armed by files the tests write), kept beside the release agent; the
# release agent, built last, has none of it. Cargo keeps both builds of the
# crate, so switching features recompiles nothing twice.
# Its own directory, same file name: the tests find their agents by the
# process name (comm), which is the file name's first 15 bytes.
agent_build --features fault-injection
mkdir -p "$(dirname "$agent")/fault-injection"
cp "$agent" "$(dirname "$agent")/fault-injection/berth-agent.tmp"
mv "$(dirname "$agent")/fault-injection/berth-agent.tmp" "$(dirname "$agent")/fault-injection/berth-agent"
agent_build
# The agent is the guest's root disk (host-core machine.rs): ship it without symbols.
if [ "$profile" = release ] && command -v strip >/dev/null; then
  strip -o "$agent.tmp" "$agent" && mv "$agent.tmp" "$agent"
fi
