#!/usr/bin/env bash
# berth's whole test suite: installs dependencies, builds everything (guest
# kernel included, cached by its inputs), checks formatting and lints, then
# runs unit tests and the black-box tests against the real binaries.
#
#   BERTH_TEST_ISOLATION=native|shared|vm  placement for the container suite (default native)
#   BERTH_TEST_BUDGET=SECS  the whole run's time limit (default 5100, inside
#                           CI's 90 min): the tests are stopped when it is
#                           spent, so the log still says where time went.
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
phase() { echo "== [$(($(date +%s) - T0)) s] $*" >&2; }
phase deps
scripts/deps.sh
phase build
PROFILE=release scripts/dev-build.sh
images/build-default-image.sh >/dev/null
phase "guest kernel (cached)"
kernel-config/build-kernel.sh | tail -n 1
phase "Debian test images for seed 003 (cached)"
# Exit 3: the Debian mirror cannot be reached; native_seed003 says so.
images/build-debian-test-images.sh >/dev/null || [ $? -eq 3 ]
phase "fmt + clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
phase "module cycles"
python3 scripts/module-cycles.py host-core/src --files
python3 scripts/module-cycles.py host-cli/src --files
python3 scripts/module-cycles.py guest-agent/src --files
phase "cross: macOS/Windows clippy, berth.exe, arm64 agent + kernel (cached)"
scripts/check-cross.sh
phase tests
export BERTH_TEST_TIMINGS="$PWD/target/test-timings.log"
# Every skip, with its test and reason (cargo hides a passing test's output).
export BERTH_TEST_SKIPS="$PWD/target/test-skips.log"
rm -f "$BERTH_TEST_TIMINGS" "$BERTH_TEST_SKIPS"
left=$((${BERTH_TEST_BUDGET:-5100} - ($(date +%s) - T0)))
if [ "$left" -lt 600 ]; then left=600; fi
set +e
# Each test binary's start time goes in front of cargo's "Running" line.
# --release: reuses the release build above instead of compiling the whole
# workspace a fourth time, and the VMM the vmm tests boot guests with runs
# optimised (its device emulation is the slow part of those tests).
timeout -k 30 "$left" cargo test --workspace --release --no-fail-fast 2>&1 |
    while IFS= read -r l; do
        case $l in
        *"     Running "*) echo "[$(($(date +%s) - T0)) s]$l" ;;
        *) printf '%s\n' "$l" ;;
        esac
    done | tee target/test.log
rc=${PIPESTATUS[0]}
# The VMM's seccomp hook test needs berth-vmm built with the test-hooks
# feature; its own target dir keeps that binary away from the release one
# the other tests and users run.
left=$((${BERTH_TEST_BUDGET:-5100} - ($(date +%s) - T0)))
if [ "$left" -lt 300 ]; then left=300; fi
echo "[$(($(date +%s) - T0)) s]     Running berth-vmm --features test-hooks --test seccomp"
CARGO_TARGET_DIR=target/test-hooks timeout -k 30 "$left" \
    cargo test --release -p berth-vmm --features test-hooks --test seccomp 2>&1 | tee -a target/test.log
hooks_rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] && rc=$hooks_rc
set -e
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "tests stopped: the ${BERTH_TEST_BUDGET:-5100} s budget was spent" >&2
fi
phase summary
echo "-- slow steps (BERTH_TEST_TIMINGS)"
cat "$BERTH_TEST_TIMINGS" 2>/dev/null || true
grep -E '^test result: ' target/test.log | awk '{p+=$4; f+=$6} END {printf "%d passed, %d failed\n", p, f}'
if [ -s "$BERTH_TEST_SKIPS" ]; then
    echo "-- skipped tests ($(wc -l <"$BERTH_TEST_SKIPS"))"
    sort "$BERTH_TEST_SKIPS"
else
    echo "-- skipped tests: none"
fi
exit "$rc"
