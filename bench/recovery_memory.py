#!/usr/bin/env python3
"""Memory of connection state recovery, measured on a running signal-node (issue #13).

N python-socketio clients join one room with a sender; their websockets are closed (a transport drop: each
socket is suspended), then the sender sends E chat messages, each kept for every suspended socket. The node's RSS
(/proc/<pid>/status VmRSS) is read after the joins, after the drops and after the messages, with the node's own
figures (/metrics: signal_recovery_suspended, signal_recovery_bytes).

    SIGNAL_NODE_BIN=$(swift build --show-bin-path)/signal-node python3 bench/recovery_memory.py [N] [E]
"""

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import socketio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench_run  # noqa: E402  (bench/run.py: wait_http)

N = int(sys.argv[1]) if len(sys.argv) > 1 else 400
E = int(sys.argv[2]) if len(sys.argv) > 2 else 50
BIN = os.environ.get("SIGNAL_NODE_BIN", ".build/debug/signal-node")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def metric(url, name):
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


async def measure(window):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    node = subprocess.Popen([BIN, "--host", "127.0.0.1", "--port", str(port), "--recovery-window", str(window),
                             "--max-room-members", str(N + 10), "--handshake-rate", "0",
                             "--address-event-rate", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench_run.wait_http(f"{url}/healthz")
        room = "mem"
        clients = []
        for i in range(N):
            c = socketio.AsyncClient(reconnection=False)
            await c.connect(url, transports=["websocket"])
            await c.call("join_room", {"roomName": room, "personName": f"p{i}"}, timeout=10)
            clients.append(c)
        sender = socketio.AsyncClient(reconnection=False)
        await sender.connect(url, transports=["websocket"])
        await sender.call("join_room", {"roomName": room, "personName": "sender"}, timeout=10)
        await asyncio.sleep(1)
        joined = rss_kb(node.pid)
        for c in clients:
            await c.eio.ws.close()
        await asyncio.sleep(2)
        suspended = rss_kb(node.pid)
        n = metric(url, "signal_recovery_suspended") or 0
        content = "x" * 100
        for i in range(E):
            await sender.call("message", {"roomName": room, "content": content}, timeout=10)
            await asyncio.sleep(0.025)  # within the sender's 50 events/s
        await asyncio.sleep(1)
        buffered = rss_kb(node.pid)
        kept = metric(url, "signal_recovery_bytes") or 0
        print(f"window {window}: {N} sockets joined: RSS {joined} KB; suspended ({n:.0f} by /metrics): {suspended} KB "
              f"({(suspended - joined) * 1024 / N:+.0f} B per socket, with its 16-event history); "
              f"{E} messages of ~190 B each kept for each: {buffered} KB "
              f"({(buffered - suspended) * 1024 / (N * E):+.1f} B RSS per kept event per socket); "
              f"signal_recovery_bytes {kept:.0f} ({kept / (N * E):.0f} B per event per socket, counted as if not shared)")
        await sender.disconnect()
        return joined, suspended, buffered
    finally:
        node.terminate()
        node.wait(10)


async def main():
    off = await measure(0)
    on = await measure(600)
    # The same load with recovery off (the sockets end at the drop, nothing is kept) is the control.
    extra = (on[2] - on[0]) - (off[2] - off[0])
    print(f"recovery on vs off, after the drops and the messages: {extra:+d} KB of RSS for {N} suspended sockets "
          f"and {N * E} kept events ({extra * 1024 / N:+.0f} B per suspended socket including its {E} events, "
          f"{extra * 1024 / (N * E):+.1f} B per kept event if the sockets cost nothing)")


asyncio.run(main())
