#!/usr/bin/env bash
# The Swift test suite (unit tests and the Redis integration tests, which start their own redis-server) under
# AddressSanitizer, then ThreadSanitizer, each in its own scratch path so the normal .build stays as it is.
#
#   scripts/sanitize.sh [address|thread]...   (default: both)
#
# A sanitizer report fails the run (halt_on_error); the output of each pass is in .build-<asan|tsan>/test.log.
set -euo pipefail
cd "$(dirname "$0")/.."

SANITIZERS=("$@")
[ ${#SANITIZERS[@]} -eq 0 ] && SANITIZERS=(address thread)

# Swift's backtracer would print its own report over the sanitizer's; the sanitizer's stack is the useful one.
export SWIFT_BACKTRACE=enable=no
# LeakSanitizer is off: the Swift runtime and NIO keep process-lifetime caches that it reports as leaks.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1:abort_on_error=1}"
# TSan reports go to the log and are sorted afterwards by scripts/tsan-triage.py: Swift's Synchronization.Mutex
# is invisible to TSan on Linux (its futex lock is in an uninstrumented library), so accesses ordered by
# Mutex.withLock are reported as races now and then. Any other report fails the pass.
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=0:exitcode=0:second_deadlock_stack=1}"

status=0
for sanitizer in "${SANITIZERS[@]}"; do
    case "$sanitizer" in
        address) scratch=.build-asan ;;
        thread) scratch=.build-tsan ;;
        *) echo "sanitize.sh: unknown sanitizer $sanitizer (address or thread)" >&2; exit 2 ;;
    esac
    echo "== swift build --sanitize=$sanitizer ($scratch)"
    start=$(date +%s)
    swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch" 2>&1 \
        | { grep -E 'error:|Build' || true; }
    built=$(date +%s)
    echo "== swift test --sanitize=$sanitizer (build took $(( built - start )) s)"
    if swift test --skip-build --sanitize="$sanitizer" --scratch-path "$scratch" >"$scratch/test.log" 2>&1 \
        && { [ "$sanitizer" != thread ] || python3 scripts/tsan-triage.py "$scratch/test.log"; }; then
        echo "== $sanitizer: tests passed, no report ($(( $(date +%s) - built )) s)"
    else
        status=1
        echo "== $sanitizer: FAILED ($(( $(date +%s) - built )) s), see $scratch/test.log"
        grep -E 'ERROR: (Address|Thread)Sanitizer|WARNING: ThreadSanitizer|SUMMARY|✘|error:' "$scratch/test.log" | head -20
    fi
    grep -E 'Test run with|Executed [0-9]+ tests' "$scratch/test.log" | tail -2 || true
done
exit $status
