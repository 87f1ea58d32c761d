#!/usr/bin/env bash
# Runs one coverage-guided fuzz target (cargo-fuzz, libFuzzer, nightly).
#
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer flags…]
#   scripts/fuzz.sh list            the targets
#
# The target bodies are in fuzz-targets/src (plain functions, replayed on
# stable by `cargo test -p berth-fuzz-targets`); the binaries in fuzz/.
# Inputs grow in fuzz/work/<target>/ (ignored by git), starting from the
# seeds in fuzz/corpus/<target>/ and the crash inputs in
# fuzz/regressions/<target>/. A crash is written to fuzz/artifacts/<target>/:
# fix the parser, then copy the input to fuzz/regressions/<target>/.
# To keep new interesting inputs as seeds, minimise them first:
#   cargo +nightly fuzz cmin TARGET fuzz/corpus/TARGET   (from fuzz/)
#
# The last line printed is "fuzz: TARGET execs=N seconds=S rc=RC": the
# executions run, the time, and libFuzzer's status (non-zero: a crash).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

if [ "${1:-}" = list ] || [ $# -lt 2 ]; then
    [ "${1:-}" = list ] || echo "usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer flags...]" >&2
    sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^berth-fuzz$'
    [ "${1:-}" = list ]
    exit
fi
target=$1
secs=$2
shift 2
if ! grep -qx "name = \"$target\"" Cargo.toml; then
    echo "fuzz: no target $target (scripts/fuzz.sh list)" >&2
    exit 2
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

cargo +nightly fuzz build --release "$target"
work=work/$target
mkdir -p "$work" "artifacts/$target" "corpus/$target" "regressions/$target"
# The net target's user-mode stack opens host sockets for what the guest
# sends: give it a network namespace of its own where we may (root).
wrap=()
if [ "$target" = virtio_net ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
    wrap=(unshare --net)
fi
# Archives, layers and guest memory images are larger than libFuzzer's
# default 4 KiB inputs.
len=()
case $target in archive | unpack | virtio_*) len=(-max_len=70000) ;; esac
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# The binary itself, not `cargo fuzz run`: that rebuilds first, and the
# build above already happened.
"${wrap[@]}" "target/$(rustc -vV | sed -n 's/^host: //p')/release/$target" \
    "$work" "corpus/$target" "regressions/$target" \
    -artifact_prefix="artifacts/$target/" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 "${len[@]}" \
    -print_final_stats=1 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{s+=$1} END {print s+0}')
echo "fuzz: $target execs=$execs seconds=$secs rc=$rc"
exit "$rc"
