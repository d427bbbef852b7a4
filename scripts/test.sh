#!/usr/bin/env bash
# Runs every test: the layer rule on the targets' imports, the Swift unit and integration tests (real
# redis-server), then the python-socketio integration suite against the built signal-node. Installs what it
# needs on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

missing=()
for package in libhiredis-dev redis-server pkg-config chromium chromium-driver haproxy docker-compose; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import socketio, aiohttp, msgpack, pytest, pytest_asyncio, requests, selenium, aiortc' 2>/dev/null; then
    echo "== installing Python test dependencies"
    python3 -m pip install -q -r Tests/integration/requirements.txt
fi

echo "== layer rule (scripts/check-layers.sh)"
./scripts/check-layers.sh

echo "== swift build"
swift build --build-tests 2>&1 | { grep -vE '^\[[0-9]+/[0-9]+\]|prohibited flag' || true; }

echo "== swift test"
swift test --skip-build

echo "== fuzz corpora replayed (plain build)"
fuzz_replay="$(swift build --show-bin-path)/signal-fuzz"
for target in $("$fuzz_replay" --list | cut -f1); do
    "$fuzz_replay" "$target" "Tests/Fuzz/corpus/$target"
done

echo "== python-socketio integration tests"
SIGNAL_NODE_BIN="$(swift build --show-bin-path)/signal-node" python3 -m pytest -q Tests/integration "$@"

# CI's extra passes (.ci/run sets SIGNAL_CI_EXTRA=1): a short libFuzzer run of every fuzz target, then the Swift
# tests under AddressSanitizer and ThreadSanitizer. About 30 minutes on 2 cores (docs/fuzzing.md).
if [ "${SIGNAL_CI_EXTRA:-0}" = 1 ]; then
    # Repeatable: a fixed seed, a fixed number of inputs and fresh working corpora, so CI fails only on what the
    # same command fails on locally; finding new bugs is the long runs' job (docs/fuzzing.md). The time cap only
    # guards against a slow machine.
    fuzz_runs="${SIGNAL_CI_FUZZ_RUNS:-150000}"
    echo "== fuzzing, $fuzz_runs inputs per target, seed ${SIGNAL_CI_FUZZ_SEED:-1}"
    fuzz_corpora="$(mktemp -d)"
    SIGNAL_FUZZ_SEED="${SIGNAL_CI_FUZZ_SEED:-1}" SIGNAL_FUZZ_RUNS="$fuzz_runs" SIGNAL_FUZZ_CORPUS="$fuzz_corpora" \
        ./scripts/fuzz.sh "${SIGNAL_CI_FUZZ_SECONDS:-120}"
    rm -rf "$fuzz_corpora"
    echo "== sanitizers"
    ./scripts/sanitize.sh address thread
fi
