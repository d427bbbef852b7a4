#!/usr/bin/env bash
# CPU profile of signal-node under signal-bench load: starts redis-server + 2 nodes (release build), runs one
# signal-bench phase against them and `perf record -g` on node 1 meanwhile; writes the flat profile (self time
# by symbol, demangled) and the caller view to bench/results/profile-<phase>.txt.
#
# Usage: bench/profile.sh [broadcast|saturate|signal|connect] [seconds]   (BIN_DIR=.build/release by default)
set -euo pipefail
cd "$(dirname "$0")/.."
PHASE=${1:-saturate}
SECS=${2:-10}
BIN=${BIN_DIR:-.build/release}
OUT=bench/results/profile-$PHASE.txt
RP=23491; P1=23401; P2=23402
mkdir -p bench/results
ulimit -n "$(ulimit -Hn)"

redis-server --port $RP --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 & REDIS=$!
sleep 0.5
# The limits bench/run.py turns off (every bench client comes from 127.0.0.1), read from it: one list for all.
read -r -a limits <<< "$(python3 -c 'import sys; sys.path.insert(0, "bench"); import run; print(" ".join(run.EVENT_LIMITS))')"
flags=(${NODE_FLAGS:-} --redis redis://127.0.0.1:$RP --ice-event underscore --log-level warning "${limits[@]}")
"$BIN/signal-node" --host 127.0.0.1 --port $P1 --node-id p1 "${flags[@]}" >/tmp/signal-profile-n1.log 2>&1 & N1=$!
"$BIN/signal-node" --host 127.0.0.1 --port $P2 --node-id p2 "${flags[@]}" >/tmp/signal-profile-n2.log 2>&1 & N2=$!
trap 'kill $N1 $N2 $REDIS 2>/dev/null; wait $N1 $N2 $REDIS 2>/dev/null || true' EXIT
sleep 2

case $PHASE in
  connect) args=(--phases connect --clients 3000 --connect-rate 100000) ;;
  *) args=(--phases "$PHASE" --duration "$SECS" --saturate-duration "$SECS") ;;
esac
"$BIN/signal-bench" --label profile --url http://127.0.0.1:$P1 --url http://127.0.0.1:$P2 --progress-interval 0 \
  --watch node1=$N1 --watch node2=$N2 --watch redis=$REDIS --json /tmp/signal-bench-profile.json "${args[@]}" > /tmp/signal-bench-profile.txt &
BENCH=$!
sleep 1.5   # connect+join of the 200 clients first
perf record -F 1999 -e cpu-clock -g -p $N1 -o /tmp/signal-node-perf.data -- sleep $((SECS - 2)) 2>/dev/null
wait $BENCH
{
  echo "# perf record -F 1999 -e cpu-clock -g on node 1 during signal-bench --phases $PHASE (${SECS}s)"
  cat /tmp/signal-bench-profile.txt
  echo
  echo "## Self time by symbol (perf report --no-children)"
  perf report -i /tmp/signal-node-perf.data --no-children --sort symbol --stdio -g none --percent-limit 0.7 2>/dev/null \
    | grep -v '^$' | swift demangle --simplified | cut -c1-220
  echo
  echo "## Self time by shared object"
  perf report -i /tmp/signal-node-perf.data --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -15
  echo
  echo "## Inclusive time (children), top entries"
  perf report -i /tmp/signal-node-perf.data --children --sort symbol --stdio -g none --percent-limit 4 2>/dev/null \
    | grep -v "^$" | swift demangle --simplified | cut -c1-220 | head -80 || true
  echo
  echo "## Who calls the Swift runtime (ARC, allocation, exclusivity): first caller outside libswiftCore/libc, % of all samples"
  perf script -i /tmp/signal-node-perf.data -F ip,sym,dso 2>/dev/null | python3 -c '
import sys, collections
runtime = ("swift_retain", "swift_release", "swift_bridgeObjectRetain", "swift_bridgeObjectRelease", "malloc",
           "_int_malloc", "_int_free", "free", "swift_allocObject", "swift_beginAccess", "swift_endAccess",
           "swift::runtime::AccessSet::insert", "swift_isUniquelyReferenced_nonNull_native", "cfree")
total = 0; hits = collections.Counter(); leafs = collections.Counter()
stack = []
def flush():
    global total
    if not stack: return
    total += 1
    leaf = stack[0][0]
    if any(leaf.startswith(r) for r in runtime) or "RefCounts" in leaf:
        leafs[leaf.split("(")[0]] += 1
        for sym, dso in stack[1:]:
            if "libswiftCore" in dso or "libc.so" in dso or sym.startswith("swift_") or sym == "[unknown]":
                continue
            hits[sym] += 1
            break
for line in sys.stdin:
    line = line.strip()
    if not line:
        flush(); stack = []; continue
    parts = line.rsplit(" (", 1)
    sym = parts[0].split(" ", 1)[-1] if " " in parts[0] else parts[0]
    stack.append((sym, parts[1] if len(parts) > 1 else ""))
flush()
print(f"runtime leaf samples: {sum(leafs.values())} of {total} ({100*sum(leafs.values())/max(1,total):.1f}%)")
for k, v in hits.most_common(25):
    print(f"{100*v/max(1,total):6.2f}%  {k}")
' | swift demangle --simplified | cut -c1-220
} > "$OUT"
echo "wrote $OUT"
