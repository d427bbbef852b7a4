#!/usr/bin/env python3
"""Cluster figures for signal-node (not a test): starts its own redis-server and nodes, drives them
with real python-socketio clients over websocket, and prints a table.

(a) Latency, emit -> receipt at the peer, one event in flight at a time:
    a room `message` and an `offer` to one socket, with sender and receiver on the same node vs on
    two nodes (through Redis). p50/p95/p99 in ms; client-side Python overhead is included alike in
    both columns, so the difference is the cost of the Redis hop.
(b) Redis traffic a node receives for rooms it does not host: room A only on node 1, room B only on
    node 2; N messages in room B. Node 1's share is read twice:
    - a raw RESP subscriber that mirrors node 1's subscriptions in that mode (pattern: PSUBSCRIBE
      socket.io#/#*; per-room: SUBSCRIBE socket.io#/#, socket.io#/#A#, and node 1's socket ids),
      counting messages and RESP bytes;
    - the kernel's tcp_info `bytes_received` of node 1's own subscriber socket (`ss -tin`; the
      socket found through CLIENT LIST, flags=P), when `ss` is available.

Usage: python3 bench_cluster.py [--messages 2000] [--signals 1000] [--traffic 1000] [--modes pattern,per-room]
The binary: $SIGNAL_NODE_BIN or <repo>/.build/debug/signal-node.
"""

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import socketio  # noqa: E402

from cluster import (BROADCAST_CHANNEL, MODES, REQUEST_CHANNEL, Cluster, RedisSpy,  # noqa: E402
                     redis_command, room_channel)
from conftest import swift_binary  # noqa: E402

# Benchmarks send far more than a browser: lift the per-socket event rate limit.
NODE_ARGS = ["--event-rate", "1000000", "--event-burst", "1000000", "--address-event-rate", "0", "--log-level", "warning"]


class BenchClient:
    """A bare python-socketio client whose handlers resolve waiters keyed by content / sdp."""

    def __init__(self, node, name):
        self.node = node
        self.name = name
        self.sio = socketio.AsyncClient(reconnection=False)
        self.waiters = {}
        self.counts = {"message": 0, "offer": 0, "error": 0}
        self.errors = []
        self.sio.on("message", self._on_message)
        self.sio.on("offer", self._on_offer)
        self.sio.on("error", self._on_error)

    async def _on_message(self, data):
        self.counts["message"] += 1
        self._resolve(("message", data.get("content")))

    async def _on_offer(self, data):
        self.counts["offer"] += 1
        self._resolve(("offer", data.get("offer", {}).get("sdp")))

    async def _on_error(self, data):
        self.counts["error"] += 1
        self.errors.append(data)

    def _resolve(self, key):
        fut = self.waiters.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(time.perf_counter())

    def waiter(self, key):
        fut = asyncio.get_running_loop().create_future()
        self.waiters[key] = fut
        return fut

    async def connect(self):
        await asyncio.wait_for(self.sio.connect(self.node.url, transports=["websocket"],
                                                wait_timeout=10), 12)
        return self

    @property
    def sid(self):
        return self.sio.get_sid("/")

    async def join(self, room):
        ack = await self.sio.call("join_room", {"roomName": room, "personName": self.name}, timeout=10)
        assert isinstance(ack, dict) and ack.get("roomName") == room, f"{self.name}: join ack {ack!r}"

    async def close(self):
        try:
            await asyncio.wait_for(self.sio.disconnect(), 2)
        except Exception:
            pass


def percentiles(samples_s):
    ms = sorted(x * 1000 for x in samples_s)

    def p(q):
        return ms[min(len(ms) - 1, int(round(q / 100 * (len(ms) - 1))))]

    return {"n": len(ms), "p50": p(50), "p95": p(95), "p99": p(99), "mean": statistics.fmean(ms),
            "max": ms[-1]}


async def measure(sender, receiver, kind, room, n, warmup):
    samples = []
    tag = uuid.uuid4().hex[:6]
    for i in range(warmup + n):
        key = f"{tag}-{i}"
        if kind == "message":
            fut = receiver.waiter(("message", key))
            t0 = time.perf_counter()
            await sender.sio.emit("message", {"roomName": room, "content": key})
        else:
            fut = receiver.waiter(("offer", key))
            t0 = time.perf_counter()
            await sender.sio.emit("offer", {"offer": {"type": "offer", "sdp": key},
                                            "fromPeer": sender.sid, "toPeer": receiver.sid})
        try:
            t1 = await asyncio.wait_for(fut, 5)
        except (asyncio.TimeoutError, TimeoutError):
            raise RuntimeError(f"{kind} {key} from {sender.name} not received by {receiver.name} "
                               f"within 5 s; sender's errors: {sender.errors[-3:]}") from None
        if i >= warmup:
            samples.append(t1 - t0)
    return percentiles(samples)


async def latency(cluster, args):
    n1, n2 = cluster[0], cluster[1]
    made = []

    async def client(node, name):
        c = await BenchClient(node, name).connect()
        made.append(c)
        return c

    try:
        sender = await client(n1, "sender")
        same = await client(n1, "same-node")
        cross = await client(n2, "cross-node")
        room_same, room_cross = f"lat-same-{uuid.uuid4().hex[:6]}", f"lat-cross-{uuid.uuid4().hex[:6]}"
        for c in (sender, same):
            await c.join(room_same)
        for c in (sender, cross):
            await c.join(room_cross)
        await asyncio.sleep(0.2)  # joins have propagated everywhere
        rows = []
        for kind, n in (("message", args.messages), ("offer", args.signals)):
            if n <= 0:
                continue
            for path, receiver, room in (("same-node", same, room_same), ("cross-node", cross, room_cross)):
                rows.append((kind, path, await measure(sender, receiver, kind, room, n, args.warmup)))
        return rows
    finally:
        await asyncio.gather(*(c.close() for c in made), return_exceptions=True)


def ss_bytes_received(local_port, redis_port):
    """tcp_info bytes_received of the socket 127.0.0.1:local_port -> redis (None without `ss`)."""
    if not shutil.which("ss"):
        return None
    out = subprocess.run(["ss", "-tinH", "state", "established", f"( sport = :{local_port} and dport = :{redis_port} )"],
                         capture_output=True, text=True, timeout=5).stdout
    m = re.search(r"bytes_received:(\d+)", out)
    return int(m.group(1)) if m else 0


async def pubsub_client_ports(redis_port):
    """Local ports of the pub/sub connections Redis sees (CLIENT LIST flags=P)."""
    text = (await redis_command(redis_port, "CLIENT", "LIST")).decode()
    ports = set()
    for line in text.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "P" in fields.get("flags", ""):
            ports.add(int(fields["addr"].rsplit(":", 1)[1]))
    return ports


def node_ports_to_redis(node_pid, redis_port):
    """Local ports of a process's TCP connections to Redis (from `ss -tnp`)."""
    if not shutil.which("ss"):
        return set()
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{redis_port} )"],
                         capture_output=True, text=True, timeout=5).stdout
    ports = set()
    for line in out.splitlines():  # Recv-Q Send-Q Local Peer Process (no State column with a state filter)
        cols = line.split()
        if len(cols) >= 5 and f"pid={node_pid}," in line:
            ports.add(int(cols[2].rsplit(":", 1)[1]))
    return ports


async def traffic(cluster, mode, n):
    n1, n2 = cluster[0], cluster[1]
    rp = cluster.redis.port
    made = []

    async def client(node, name):
        c = await BenchClient(node, name).connect()
        made.append(c)
        return c

    try:
        a1, a2 = await client(n1, "a1"), await client(n1, "a2")
        b1, b2 = await client(n2, "b1"), await client(n2, "b2")
        room_a, room_b = f"A-{uuid.uuid4().hex[:6]}", f"B-{uuid.uuid4().hex[:6]}"
        for c in (a1, a2):
            await c.join(room_a)
        for c in (b1, b2):
            await c.join(room_b)
        await asyncio.sleep(0.3)

        # a subscriber with node 1's subscriptions in this mode
        if mode == "pattern":
            mirror = await RedisSpy.start(rp, patterns=[BROADCAST_CHANNEL + "*"], channels=[REQUEST_CHANNEL])
        else:
            mirror = await RedisSpy.start(rp, channels=[BROADCAST_CHANNEL, REQUEST_CHANNEL, room_channel(room_a),
                                                        room_channel(a1.sid), room_channel(a2.sid)])
        # a counter of what is published in room B, to know when all N went out
        counter = await RedisSpy.start(rp, channels=[room_channel(room_b)])
        # node 1's own subscriber socket: its pub/sub connection's local port
        sub_ports = node_ports_to_redis(n1.proc.pid, rp) & await pubsub_client_ports(rp)
        node_sub_port = next(iter(sub_ports)) if len(sub_ports) == 1 else None
        node_before = ss_bytes_received(node_sub_port, rp) if node_sub_port else None
        m_msgs0, m_bytes0 = len(mirror.messages), mirror.bytes_in

        content = "x" * 64
        for i in range(n):
            await b1.sio.emit("message", {"roomName": room_b, "content": f"{content}-{i}"})
        await counter.wait_for(lambda ms: len(ms) >= n, timeout=30, what=f"{n} publishes in room B")
        # PING is allowed on a subscribed connection; its reply comes after every message before it
        await mirror.ping()
        await asyncio.sleep(0.2)  # node 1 has read its copy too (its socket is measured by the kernel)
        node_after = ss_bytes_received(node_sub_port, rp) if node_sub_port else None
        got_b1 = b2.counts["message"]
        result = {
            "mode": mode, "sent": n, "b2_received": got_b1,
            "mirror_msgs": len(mirror.messages) - m_msgs0,
            "mirror_bytes": mirror.bytes_in - m_bytes0 - len(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
            "node_bytes": None if node_before is None else node_after - node_before,
            "a_errors": a1.errors + b1.errors,
        }
        await mirror.close()
        await counter.close()
        return result
    finally:
        await asyncio.gather(*(c.close() for c in made), return_exceptions=True)


def fmt(v, unit=""):
    return "-" if v is None else f"{v}{unit}"


async def run(args):
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            raise SystemExit(f"unknown mode {m!r}; choose from {MODES}")
    lat_rows, traffic_rows = [], []
    for mode in modes:
        cluster = Cluster(mode, args.nodes, node_args={i: NODE_ARGS for i in range(args.nodes)}).start()
        try:
            print(f"[{mode}] {args.nodes} nodes on redis :{cluster.redis.port}: measuring latency ...",
                  file=sys.stderr, flush=True)
            for kind, path, stats in await latency(cluster, args):
                lat_rows.append((mode, kind, path, stats))
            if args.traffic > 0:
                print(f"[{mode}] measuring node 1's Redis traffic for room B ...", file=sys.stderr, flush=True)
                traffic_rows.append(await traffic(cluster, mode, args.traffic))
        finally:
            cluster.stop()

    print(f"\nsignal-node cluster bench  binary={swift_binary()}  nodes={args.nodes}  "
          f"warmup={args.warmup}  python-socketio websocket clients, one event in flight\n")
    print("(a) delivery latency, emit -> receipt (ms)")
    head = f"{'mode':<9} {'event':<8} {'path':<11} {'n':>6} {'p50':>7} {'p95':>7} {'p99':>7} {'mean':>7} {'max':>7}"
    print(head)
    print("-" * len(head))
    for mode, kind, path, s in lat_rows:
        print(f"{mode:<9} {kind:<8} {path:<11} {s['n']:>6} {s['p50']:>7.3f} {s['p95']:>7.3f} "
              f"{s['p99']:>7.3f} {s['mean']:>7.3f} {s['max']:>7.3f}")
    if traffic_rows:
        print("\n(b) Redis traffic node 1 receives for room B (hosted only on node 2), "
              f"{traffic_rows[0]['sent']} messages of ~64 B content")
        head = (f"{'mode':<9} {'sent':>6} {'node-2 peer got':>15} {'node-1 sub msgs':>15} "
                f"{'node-1 sub bytes (mirror)':>25} {'node-1 sub bytes (kernel)':>25}")
        print(head)
        print("-" * len(head))
        for r in traffic_rows:
            print(f"{r['mode']:<9} {r['sent']:>6} {r['b2_received']:>15} {r['mirror_msgs']:>15} "
                  f"{r['mirror_bytes']:>25} {fmt(r['node_bytes']):>25}")
            if r["a_errors"]:
                print(f"  errors from the server: {r['a_errors'][:3]}")
        print("  mirror: a raw subscriber with node 1's subscriptions in that mode (RESP bytes);"
              " kernel: tcp_info bytes_received of node 1's own subscriber socket (ss -tin)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=2000, help="room messages per latency series (default 2000)")
    p.add_argument("--signals", type=int, default=1000, help="offers per latency series (default 1000)")
    p.add_argument("--warmup", type=int, default=100, help="unmeasured events before each series (default 100)")
    p.add_argument("--traffic", type=int, default=1000, help="messages in room B for (b); 0 skips it (default 1000)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated redis modes (default: both)")
    p.add_argument("--nodes", type=int, default=2, choices=[2, 3], help="nodes to start (default 2)")
    args = p.parse_args()
    if not swift_binary().exists():
        raise SystemExit(f"signal-node binary not found at {swift_binary()} (set SIGNAL_NODE_BIN)")
    os.environ.setdefault("SIGNAL_SERVER", "swift")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
