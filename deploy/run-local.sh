#!/usr/bin/env bash
# The local cluster in one command: Redis, three signal-node nodes and HAProxy (sticky sessions) on loopback,
# with the same HAProxy config as deploy/docker-compose.yml (deploy/haproxy/haproxy.cfg, addresses from env).
#
#   ./deploy/run-local.sh            build (release) and run; demo page through HAProxy on http://127.0.0.1:4000/
#   ./deploy/run-local.sh --sentinel the same with Redis Sentinel: a primary, a replica and 3 sentinels, which the
#                                    nodes ask for the primary (--redis-sentinel); try `kill -9` of the primary
#   ./deploy/run-local.sh --cluster  the same on a Redis Cluster: 3 masters and 3 replicas (Redis >= 7), the nodes
#                                    use the sharded adapter (--redis-cluster); try `kill -9` of a master
#
# On a fresh Debian machine with Swift it installs what is missing (redis-server, haproxy, libhiredis-dev,
# pkg-config; with sudo when not root). Ctrl-C or SIGTERM stops everything it started, by PID.
#
# Environment:
#   SIGNAL_NODE_BIN   a prebuilt signal-node binary: skip the build
#   LB_PORT           HAProxy port (default 4000); the nodes get LB_PORT+1..+3
#   REDIS_PORT        the private redis-server's port (default 6380; the system's 6379 is left alone); with
#                     --sentinel the replica gets REDIS_PORT+1 and the sentinels REDIS_PORT+2..+4; with --cluster
#                     the masters get REDIS_PORT..+2 and the replicas REDIS_PORT+3..+5 (and each its bus port +10000)
#   RUN_DIR           where logs go (default: a new temporary directory)
#   SIGNAL_*          any node setting (see `signal-node --help`), e.g. SIGNAL_LOG_LEVEL=debug;
#                     SIGNAL_HOST, SIGNAL_PORT, SIGNAL_REDIS_URL (or SIGNAL_REDIS_SENTINEL and
#                     SIGNAL_REDIS_SENTINEL_MASTER, or SIGNAL_REDIS_CLUSTER) and SIGNAL_NODE_ID are set per node here.
#                     SIGNAL_RECOVERY_WINDOW defaults to 120 here (the node's own default is 0): connection state
#                     recovery, across nodes with one Redis or Sentinel; a client of a node you kill -9 comes back
#                     on another with the same socket and every event it missed. 0 turns it off.
set -euo pipefail
cd "$(dirname "$0")/.."

sentinel=0
cluster=0
case "${1:-}" in
    "") ;;
    --sentinel) sentinel=1 ;;
    --cluster) cluster=1 ;;
    *) echo "usage: $0 [--sentinel | --cluster]" >&2; exit 2 ;;
esac

lb_port="${LB_PORT:-4000}"
redis_port="${REDIS_PORT:-6380}"
node_ports=("$((lb_port + 1))" "$((lb_port + 2))" "$((lb_port + 3))")
redis_ports=("$redis_port")
if [ $sentinel -eq 1 ]; then
    redis_ports+=("$((redis_port + 1))" "$((redis_port + 2))" "$((redis_port + 3))" "$((redis_port + 4))")
fi
if [ $cluster -eq 1 ]; then
    for i in 1 2 3 4 5; do redis_ports+=("$((redis_port + i))"); done
    for i in 0 1 2 3 4 5; do redis_ports+=("$((redis_port + i + 10000))"); done  # cluster bus ports
fi

# --- packages -------------------------------------------------------------------------------------------
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; fi
fi
missing=()
packages=(redis-server haproxy)
[ -n "${SIGNAL_NODE_BIN:-}" ] || packages+=(libhiredis-dev pkg-config)
for package in "${packages[@]}"; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian installs them in /usr/sbin and /usr/bin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

# --- binary ---------------------------------------------------------------------------------------------
if [ -n "${SIGNAL_NODE_BIN:-}" ]; then
    bin="$SIGNAL_NODE_BIN"
    [ -x "$bin" ] || { echo "SIGNAL_NODE_BIN=$bin is not an executable" >&2; exit 1; }
else
    echo "== swift build -c release --product signal-node"
    swift build -c release --product signal-node
    bin="$(swift build -c release --show-bin-path)/signal-node"
fi

# --- ports ----------------------------------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$lb_port" "${node_ports[@]}" "${redis_ports[@]}"; do
    if port_busy "$port"; then
        echo "port $port on 127.0.0.1 is in use: stop what uses it, or set LB_PORT / REDIS_PORT" >&2
        exit 1
    fi
done

run_dir="${RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/signal-local.XXXXXX")}"
mkdir -p "$run_dir"

# --- processes: started in the background, stopped by PID ------------------------------------------------
pids=()
names=()
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "== stopping"
    local i
    for i in "${!pids[@]}"; do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for i in "${!pids[@]}"; do kill -0 "${pids[$i]}" 2>/dev/null && alive=1; done
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        if kill -0 "${pids[$i]}" 2>/dev/null; then
            echo "${names[$i]} (pid ${pids[$i]}) did not stop on SIGTERM: SIGKILL"
            kill -KILL "${pids[$i]}" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    echo "stopped; logs in $run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start() {  # start NAME COMMAND... : output to $run_dir/NAME.log
    local name="$1"; shift
    "$@" >"$run_dir/$name.log" 2>&1 </dev/null &
    pids+=($!)
    names+=("$name")
}

wait_for() {  # wait_for NAME CHECK... : until CHECK succeeds, or the process exits, or 30 s
    local name="$1"; shift
    local pid="${pids[-1]}"
    for _ in $(seq 300); do
        "$@" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited during startup; its log ($run_dir/$name.log):" >&2
            tail -n 20 "$run_dir/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$name not up within 30 s; its log: $run_dir/$name.log" >&2
    exit 1
}

http_ok() { curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; }
if ! command -v curl >/dev/null; then
    # Without curl: a bare HTTP/1.0 request over bash's /dev/tcp.
    http_ok() {
        local rest="${1#http://}" hostport path
        hostport="${rest%%/*}"; path="/${rest#*/}"
        (exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}" && printf 'GET %s HTTP/1.0\r\n\r\n' "$path" >&3 &&
            head -n 1 <&3 | grep -q ' 200 ') 2>/dev/null
    }
fi

echo "== starting Redis, 3 nodes and HAProxy (logs in $run_dir)"
if [ $cluster -eq 1 ]; then
    cluster_addresses=()
    for i in 0 1 2 3 4 5; do
        port="$((redis_port + i))"
        start "redis$i" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$run_dir" \
            --cluster-enabled yes --cluster-config-file "nodes-$port.conf" --cluster-node-timeout 2000 \
            --cluster-replica-validity-factor 0
        wait_for "redis$i" port_busy "$port"
        cluster_addresses+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${cluster_addresses[@]}" --cluster-replicas 1 --cluster-yes >"$run_dir/cluster-create.log"
    cluster_ok() { redis-cli -p "$redis_port" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; }
    wait_for redis5 cluster_ok
    # A replica that has not finished its first sync cannot take over: wait for all three.
    replicas_synced() {
        local n=0 p
        for p in "${cluster_addresses[@]}"; do
            redis-cli -p "${p#*:}" info replication 2>/dev/null | grep -q 'master_link_status:up' && n=$((n + 1))
        done
        [ "$n" -eq 3 ]
    }
    wait_for redis5 replicas_synced
    redis_env=(SIGNAL_REDIS_CLUSTER="redis://127.0.0.1:$redis_port,redis://127.0.0.1:$((redis_port + 1)),redis://127.0.0.1:$((redis_port + 2))")
else
    start redis redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$run_dir"
    wait_for redis port_busy "$redis_port"
    redis_env=(SIGNAL_REDIS_URL="redis://127.0.0.1:$redis_port")
fi
if [ $sentinel -eq 1 ]; then
    start replica redis-server --port "${redis_ports[1]}" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$run_dir" --replicaof 127.0.0.1 "$redis_port"
    wait_for replica port_busy "${redis_ports[1]}"
    sentinel_urls=()
    for i in 1 2 3; do
        port="${redis_ports[$((i + 1))]}"
        # Sentinels rewrite their config file: one each, in the run directory.
        printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor signal 127.0.0.1 %s 2\n%s\n%s\n' \
            "$port" "$run_dir" "$redis_port" "sentinel down-after-milliseconds signal 2000" \
            "sentinel failover-timeout signal 5000" >"$run_dir/sentinel$i.conf"
        start "sentinel$i" redis-server "$run_dir/sentinel$i.conf" --sentinel
        wait_for "sentinel$i" port_busy "$port"
        sentinel_urls+=("redis://127.0.0.1:$port")
    done
    redis_env=(SIGNAL_REDIS_SENTINEL="$(IFS=,; echo "${sentinel_urls[*]}")" SIGNAL_REDIS_SENTINEL_MASTER=signal)
fi

node_pids=()
for i in 1 2 3; do
    port="${node_ports[$((i - 1))]}"
    # HAProxy (on loopback) adds X-Forwarded-For: trust it, so per-client limits see the real clients.
    start "node$i" env SIGNAL_HOST=127.0.0.1 SIGNAL_PORT="$port" "${redis_env[@]}" \
        SIGNAL_NODE_ID="node$i" SIGNAL_TRUSTED_PROXIES="${SIGNAL_TRUSTED_PROXIES:-127.0.0.1}" \
        SIGNAL_RECOVERY_WINDOW="${SIGNAL_RECOVERY_WINDOW:-120}" "$bin"
    wait_for "node$i" http_ok "http://127.0.0.1:$port/healthz"
    node_pids+=("${pids[-1]}")
done

start haproxy env SIGNAL_LB_BIND="127.0.0.1:$lb_port" \
    SIGNAL_NODE1="127.0.0.1:${node_ports[0]}" SIGNAL_NODE2="127.0.0.1:${node_ports[1]}" \
    SIGNAL_NODE3="127.0.0.1:${node_ports[2]}" haproxy -db -f deploy/haproxy/haproxy.cfg
wait_for haproxy http_ok "http://127.0.0.1:$lb_port/healthz"

cat <<EOF

signal-node cluster is up (Ctrl-C stops it):
  demo page (through HAProxy)  http://127.0.0.1:$lb_port/
  node1                        http://127.0.0.1:${node_ports[0]}/   (pid ${node_pids[0]})
  node2                        http://127.0.0.1:${node_ports[1]}/   (pid ${node_pids[1]})
  node3                        http://127.0.0.1:${node_ports[2]}/   (pid ${node_pids[2]})
  Redis                        redis://127.0.0.1:$redis_port   (pid ${pids[0]})
  logs                         $run_dir/{redis*,node1,node2,node3,haproxy}.log
Try failover: kill -9 <a node's pid> (its clients move to the other nodes; this script keeps running).
EOF
if [ $sentinel -eq 1 ]; then
    cat <<EOF
Sentinel (master name 'signal'): replica redis://127.0.0.1:${redis_ports[1]} (pid ${pids[1]}),
  sentinels on ports ${redis_ports[2]}-${redis_ports[4]}; logs $run_dir/{replica,sentinel1,sentinel2,sentinel3}.log.
  kill -9 ${pids[0]} (the primary): the sentinels promote the replica ~3 s later and the nodes follow.
EOF
fi

if [ $cluster -eq 1 ]; then
    cat <<EOF
Redis Cluster: ports $redis_port-$((redis_port + 5)) (pids ${pids[*]:0:6}); each node, its role and slots:
$(redis-cli -p "$redis_port" cluster nodes | awk '{print "  " $2 " " $3 " " $9}')
  kill -9 the pid of a master: its replica is promoted ~3 s later and the nodes follow.
EOF
fi

# Keep running until Ctrl-C / SIGTERM; report any process that exits on its own.
live=("${pids[@]}")
while [ ${#live[@]} -gt 0 ]; do
    dead_pid=""
    status=0
    wait -n -p dead_pid "${live[@]}" || status=$?
    [ -n "$dead_pid" ] || continue
    for i in "${!pids[@]}"; do
        if [ "${pids[$i]}" = "$dead_pid" ]; then
            echo "${names[$i]} (pid $dead_pid) exited with status $status; log: $run_dir/${names[$i]}.log"
        fi
    done
    rest=()
    for pid in "${live[@]}"; do [ "$pid" = "$dead_pid" ] || rest+=("$pid"); done
    live=("${rest[@]}")
done
echo "every process has exited"
