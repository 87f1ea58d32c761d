#!/usr/bin/env bash
# berth's whole test suite: installs dependencies, builds everything (guest
# kernel included, cached by its inputs), checks formatting and lints, then
# runs unit tests and the black-box tests against the real binaries.
#
#   BERTH_TEST_ISOLATION=native|shared|vm  placement for the container suite (default native)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
echo "== build" >&2
PROFILE=release scripts/dev-build.sh
images/build-default-image.sh >/dev/null
echo "== guest kernel (cached)" >&2
kernel-config/build-kernel.sh | tail -n 1
echo "== fmt + clippy" >&2
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== cross: macOS/Windows clippy, berth.exe, arm64 agent + kernel (cached)" >&2
scripts/check-cross.sh
echo "== tests" >&2
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee target/test.log
rc=${PIPESTATUS[0]}
set -e
echo "== summary" >&2
grep -E '^test result: ' target/test.log | awk '{p+=$4; f+=$6} END {printf "%d passed, %d failed\n", p, f}'
grep -h 'SKIPPED' target/test.log | sort | uniq -c || true
exit "$rc"
