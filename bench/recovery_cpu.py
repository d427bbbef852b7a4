#!/usr/bin/env python3
"""CPU cost of connection state recovery (issue #13): the node's CPU time (utime + stime from /proc) for the same
chat load with --recovery-window 0 and 120, runs alternated. R python-socketio receivers and S senders in one
room; each sender sends M messages at 40/s (every delivery is one event to each of R + S sockets).

    SIGNAL_NODE_BIN=$(swift build --show-bin-path)/signal-node python3 bench/recovery_cpu.py [R] [S] [M] [rounds]

Run it on the build you want figures for: a debug build's ratio is not a release build's.
"""

import asyncio
import os
import socket
import subprocess
import sys
import time

import socketio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench_run  # noqa: E402  (bench/run.py: wait_http)

R = int(sys.argv[1]) if len(sys.argv) > 1 else 20
S = int(sys.argv[2]) if len(sys.argv) > 2 else 2
M = int(sys.argv[3]) if len(sys.argv) > 3 else 300
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 2
BIN = os.environ.get("SIGNAL_NODE_BIN", ".build/debug/signal-node")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def run(window):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = subprocess.Popen([BIN, "--host", "127.0.0.1", "--port", str(port), "--recovery-window", str(window),
                             "--handshake-rate", "0", "--address-event-rate", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench_run.wait_http(f"{url}/healthz")
        received = 0

        def count(*_):
            nonlocal received
            received += 1

        clients = []
        for i in range(R + S):
            c = socketio.AsyncClient(reconnection=False)
            c.on("message", count)
            await c.connect(url, transports=["websocket"])
            await c.call("join_room", {"roomName": "cpu", "personName": f"p{i}"}, timeout=10)
            clients.append(c)
        await asyncio.sleep(0.5)
        before = cpu_seconds(node.pid)

        async def send(c):
            for _ in range(M):
                await c.emit("message", {"roomName": "cpu", "content": "y" * 100})
                await asyncio.sleep(1 / 40)

        await asyncio.gather(*(send(c) for c in clients[R:]))
        expected = S * M * (R + S)
        deadline = time.monotonic() + 30
        while received < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        used = cpu_seconds(node.pid) - before
        for c in clients:
            await c.disconnect()
        return used, received, expected
    finally:
        node.terminate()
        node.wait(10)


async def main():
    results = {0: [], 120: []}
    for _ in range(ROUNDS):
        for window in (0, 120):
            used, received, expected = await run(window)
            results[window].append(used)
            print(f"window {window:>3}: node CPU {used:.2f} s for {received}/{expected} deliveries "
                  f"({used / max(received, 1) * 1e6:.1f} µs each)")
    off, on = sum(results[0]) / ROUNDS, sum(results[120]) / ROUNDS
    print(f"mean CPU: off {off:.2f} s, on {on:.2f} s: {100 * (on / off - 1):+.1f}%")


asyncio.run(main())
