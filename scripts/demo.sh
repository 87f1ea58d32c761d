#!/usr/bin/env bash
# The main job: installs what is needed, builds berth (release), the offline
# default image and the guest kernel (cached by its inputs), then runs a
# container with berth inside the machine microVM:
#   berth --isolation shared run --rm berth/busybox ...
# Without /dev/kvm it falls back to native placement and says so.
# On this development machine kind (/dev/kvm = kvm_pvm, software
# virtualization) the first boot takes about 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
PROFILE=release scripts/dev-build.sh
image=$(images/build-default-image.sh)
kernel-config/build-kernel.sh | tail -n 1 >/dev/null
berth=$PWD/target/release/berth
export BERTH_AGENT=$PWD/target/x86_64-unknown-linux-gnu/release/berth-agent
export BERTH_VMM=$PWD/target/release/berth-vmm
iso=${BERTH_ISOLATION:-shared}
if [ "$iso" != native ] && [ ! -e /dev/kvm ]; then
  echo "demo: /dev/kvm not available; using --isolation native" >&2
  iso=native
fi
export BERTH_ISOLATION=$iso
[ "$iso" = native ] || "$berth" machine start --timings
"$berth" load -i "$image"
"$berth" images
"$berth" run --rm berth/busybox sh -c 'echo "hello from a berth container: pid $$, hostname $(hostname), kernel $(uname -r)"'
