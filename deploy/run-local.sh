#!/usr/bin/env bash
# Starts a local signal-node on http://127.0.0.1:4000 (demo page on /), built in release mode.
# Stops everything it started on Ctrl-C or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
missing=()
for package in libhiredis-dev pkg-config; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

swift build -c release --product signal-node
bin="$(swift build -c release --show-bin-path)/signal-node"
port="${SIGNAL_PORT:-4000}"

pids=()
cleanup() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

"$bin" --host 127.0.0.1 --port "$port" --node-id node-1 &
pids+=($!)
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "signal-node is up: demo page http://127.0.0.1:$port/  (Ctrl-C stops it)"
wait
