#!/usr/bin/env bash
# A/B of two signal-node builds, alternated (A B A B ...) so that drift of a shared machine hits both alike: each
# run starts redis-server + 2 nodes of one build and runs signal-bench's broadcast (1,500 msgs/s = 6,000
# deliveries/s) and saturate phases for --secs each, printing one line per run: deliveries/s and CPU per delivery.
#
# Usage: bench/ab.sh BIN_DIR_A BIN_DIR_B [pairs=4] [secs=8]   (signal-bench from BIN_DIR_A)
set -euo pipefail
A=$1; B=$2; PAIRS=${3:-4}; SECS=${4:-8}
RP=23591; P1=23501; P2=23502
ulimit -n "$(ulimit -Hn)"
# The limits bench/run.py turns off (every bench client comes from 127.0.0.1), read from it: one list for all.
read -r -a limits <<< "$(python3 -c "import sys; sys.path.insert(0, '$(dirname "$0")'); import run; print(' '.join(run.EVENT_LIMITS))")"
flags=(--ice-event underscore --log-level warning "${limits[@]}")
one() {
    local bin=$1 out
    out=$(mktemp)
    redis-server --port $RP --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & local redis=$!
    sleep 0.3
    "$bin/signal-node" --host 127.0.0.1 --port $P1 --node-id a1 --redis redis://127.0.0.1:$RP "${flags[@]}" >/dev/null 2>&1 & local n1=$!
    "$bin/signal-node" --host 127.0.0.1 --port $P2 --node-id a2 --redis redis://127.0.0.1:$RP "${flags[@]}" >/dev/null 2>&1 & local n2=$!
    sleep 1.5
    "$A/signal-bench" --label ab --url http://127.0.0.1:$P1 --url http://127.0.0.1:$P2 --progress-interval 0 \
        --watch node1=$n1 --watch node2=$n2 --watch redis=$redis --phases broadcast,saturate --rate 1500 \
        --duration "$SECS" --saturate-duration "$SECS" >"$out" 2>&1 || true
    kill $n1 $n2 $redis 2>/dev/null; wait $n1 $n2 $redis 2>/dev/null || true
    echo "$bin: $(grep -E '^ +(messages|lost|CPU)' "$out" | sed -E 's/\(servers[^)]*\)//' | tr -s ' ' | tr '\n' ' ')"
    rm -f "$out"
}
for _ in $(seq "$PAIRS"); do one "$A"; one "$B"; done
