#!/usr/bin/env bash
# Fuzzes every decoder that sees network bytes with libFuzzer + AddressSanitizer (docs/fuzzing.md).
#
#   scripts/fuzz.sh SECONDS [TARGET...]   build, then run each target (all by default) for SECONDS, one at a time
#
# Environment:
#   SIGNAL_FUZZ_RUNS=N     stop each target after N executions instead (SECONDS then is a time cap; 0 = none)
#   SIGNAL_FUZZ_BUILD=0    skip the build (reuse .build-fuzz)
#   SIGNAL_FUZZ_LOG=DIR    where the per-target logs go (default .build-fuzz/logs)
#   SIGNAL_FUZZ_BIN=PATH   run this fuzz binary (a copy, for a long run while the build changes)
#   SIGNAL_FUZZ_SEED=N     libFuzzer's random seed (default: a new one each run)
#   SIGNAL_FUZZ_CORPUS=DIR the working corpora (default .build-fuzz/corpus); a fresh DIR, a fixed seed and
#                          SIGNAL_FUZZ_RUNS make a run repeatable: CI runs exactly the inputs a local run with the same
#                          settings runs (a time cap can only cut it short)
#
# Each target starts from its seed corpus Tests/Fuzz/corpus/<target> (read only) plus a working corpus in
# .build-fuzz/corpus/<target> that grows across runs. A crash leaves its input in .build-fuzz/artifacts; replay it
# with the plain build: `swift run signal-fuzz TARGET FILE`. Exits non-zero if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}"
shift
SCRATCH=.build-fuzz
LOGS="${SIGNAL_FUZZ_LOG:-$SCRATCH/logs}"
RUNS="${SIGNAL_FUZZ_RUNS:-}"
SEED="${SIGNAL_FUZZ_SEED:-}"
WORK_CORPORA="${SIGNAL_FUZZ_CORPUS:-$SCRATCH/corpus}"

# libFuzzer without its main(): SwiftPM links an executable with `--defsym main=<module>_main`, which clashes
# with the main() of the usual `-sanitize=fuzzer` runtime. So the Swift code is instrumented with the frontend's
# -sanitize=fuzzer, AddressSanitizer comes from the driver, and signal-fuzz's own main() calls LLVMFuzzerRunDriver.
CLANG_LIB="$(dirname "$(readlink -f "$(command -v swiftc)")")/../lib/clang"
FUZZER_LIB="$(ls "$CLANG_LIB"/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a 2>/dev/null | head -1 || true)"
if [ -z "$FUZZER_LIB" ]; then
    echo "fuzz.sh: libclang_rt.fuzzer_no_main not found under $CLANG_LIB" >&2
    exit 2
fi
BUILD_FLAGS=(
    -c release --scratch-path "$SCRATCH" --product signal-fuzz
    -Xswiftc -sanitize=address -Xswiftc -Xfrontend -Xswiftc -sanitize=fuzzer -Xswiftc -DSIGNAL_FUZZ
    -Xlinker --whole-archive -Xlinker "$FUZZER_LIB" -Xlinker --no-whole-archive -Xlinker -lstdc++
)
if [ "${SIGNAL_FUZZ_BUILD:-1}" != 0 ]; then
    echo "== building fuzz targets (release, libFuzzer + ASan) in $SCRATCH"
    start=$(date +%s)
    nice swift build "${BUILD_FLAGS[@]}" 2>&1 | { grep -E 'error|Compiling signal-fuzz|Build' || true; }
    echo "== build took $(( $(date +%s) - start )) s"
fi
BIN="${SIGNAL_FUZZ_BIN:-$(swift build "${BUILD_FLAGS[@]}" --show-bin-path)/signal-fuzz}"
[ -x "$BIN" ] || { echo "fuzz.sh: $BIN was not built" >&2; exit 2; }

if [ $# -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <("$BIN" --list | cut -f1)
fi

mkdir -p "$LOGS" "$SCRATCH/artifacts"
failed=()
summary=()
for target in "${TARGETS[@]}"; do
    seeds="Tests/Fuzz/corpus/$target"
    work="$WORK_CORPORA/$target"
    mkdir -p "$work" "$seeds"
    log="$LOGS/$target.log"
    args=(-max_len=4096 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
          -artifact_prefix="$SCRATCH/artifacts/$target-")
    [ "$SECONDS_PER_TARGET" != 0 ] && args+=(-max_total_time="$SECONDS_PER_TARGET")
    [ -n "$RUNS" ] && args+=(-runs="$RUNS")
    [ -n "$SEED" ] && args+=(-seed="$SEED")
    start=$(date +%s)
    status=0
    # Swift's backtracer would catch the crash before libFuzzer saves the input.
    SWIFT_BACKTRACE=enable=no SIGNAL_FUZZ_TARGET="$target" \
        ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=0}" \
        nice "$BIN" "${args[@]}" "$work" "$seeds" >"$log" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - start ))
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    [ -z "$execs" ] && execs="$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')"
    corpus="$(ls "$work" | wc -l)"
    if [ "$status" -eq 0 ]; then
        result="ok"
    else
        result="CRASH (exit $status, see $log)"
        failed+=("$target")
        grep -E 'ERROR|Fatal error|fuzz invariant|deadly signal|Test unit written' "$log" | head -5 | sed 's/^/    /'
    fi
    line="$(printf '%-10s %12s executions %6s s  corpus %5s  %s' "$target" "${execs:-?}" "$elapsed" "$corpus" "$result")"
    echo "$line"
    summary+=("$line")
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "== crashed: ${failed[*]}"
    exit 1
fi
