#!/usr/bin/env bash
# Installs (apt) everything berth's build, demo and test suite need, plus the
# guest-kernel build dependencies (kernel-config/deps.sh). Idempotent and
# quick when all is installed. Also makes sure the Rust toolchain has what
# the build uses (rustfmt, clippy).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
arch=$(dpkg --print-architecture)
# libseccomp-dev for this architecture (a cross build may add other arches).
pkgs=(build-essential pkg-config "libseccomp-dev:$arch" busybox-static e2fsprogs util-linux
      skopeo umoci debootstrap docker.io docker-compose iproute2 nftables file docker-registry apache2-utils openssl curl python3 python3-venv
      chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
fi
"$here/../kernel-config/deps.sh" >/dev/null
# The Python docker SDK from PyPI, for tests/tests/api_clients.rs, in a venv
# of Debian's python3 (the test falls back to Debian's python3-docker).
venv="${BERTH_CACHE_DIR:-${HOME:-/root}/.cache/berth}/py-docker"
if ! "$venv/bin/python3" -c 'import docker' >/dev/null 2>&1; then
  { /usr/bin/python3 -m venv "$venv" && "$venv/bin/pip" install -q docker; } >/dev/null 2>&1 ||
    echo "deps: could not install the Python docker SDK from PyPI into $venv" >&2
fi
if command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
  rustup target list --installed 2>/dev/null | grep -q '^x86_64-unknown-linux-gnu' || rustup target add x86_64-unknown-linux-gnu >/dev/null
fi
