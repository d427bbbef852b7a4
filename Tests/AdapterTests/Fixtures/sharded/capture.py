#!/usr/bin/env python3
"""Captures the sharded-adapter fixtures beside this file (see README.md).

Starts a 3-master Redis Cluster on loopback (no replicas), two Node.js nodes of
../shared/anchors/node_sharded_node.js (@socket.io/redis-adapter 8.3.0 createShardedAdapter, dynamic mode,
node-redis 4.6.6), drives them with python-socketio clients through the seed's events, and records every
SSUBSCRIBE/SUNSUBSCRIBE/SPUBLISH that `redis-cli MONITOR` shows on each master.

Usage (from the repository root): python3 Tests/AdapterTests/Fixtures/sharded/capture.py
"""

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import socketio

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
ANCHORS = REPO.parent / "shared" / "anchors"
MODULES = REPO / ".build-anchors"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port():
    """A port P with P + 10000 (the cluster bus) free too."""
    import random
    while True:
        p = random.randint(20000, 30000)
        try:
            for q in (p, p + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue


def wait_ping(port):
    for _ in range(200):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    raise RuntimeError(f"redis {port} not up")


def unrepr(text):
    """Undoes redis' sdscatrepr quoting of one MONITOR argument (without its quotes)."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n == "x":
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            out += {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", "\\": b"\\", '"': b'"'}[n]
            i += 2
            continue
        out += c.encode("utf-8")
        i += 1
    return bytes(out)


ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


def parse_monitor_line(line):
    m = re.match(r"^(\d+\.\d+) \[(\d+) ([^\]]+)\] (.*)$", line)
    if not m:
        return None
    return float(m.group(1)), m.group(3), [unrepr(a) for a in ARG.findall(m.group(4))]


async def main():
    if not (ANCHORS / "node_sharded_node.js").exists():
        sys.exit("no ../shared/anchors")
    if not MODULES.exists():
        MODULES.mkdir()
        subprocess.run(["tar", "-xzf", str(ANCHORS / "node-socketio-4.8.1.tgz"), "-C", str(MODULES)], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="sharded-capture-"))
    procs = []
    ports = [free_cluster_port() for _ in range(3)]
    try:
        for p in ports:
            procs.append(subprocess.Popen(
                ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{p}.conf", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in ports:
            wait_ping(p)
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL)
        for _ in range(100):
            out = subprocess.run(["redis-cli", "-p", str(ports[0]), "cluster", "info"], capture_output=True, text=True)
            if "cluster_state:ok" in out.stdout:
                break
            time.sleep(0.1)
        masters = []
        for line in subprocess.run(["redis-cli", "-p", str(ports[0]), "cluster", "nodes"], capture_output=True,
                                   text=True).stdout.splitlines():
            fields = line.split()
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            masters.append(f"master {ports.index(port)}: slots {' '.join(fields[8:])}")
        masters.sort()
        monitors = []
        for p in ports:
            f = open(tmp / f"monitor-{p}.log", "w")
            monitors.append((p, f, subprocess.Popen(["redis-cli", "-p", str(p), "MONITOR"], stdout=f)))
        time.sleep(0.3)
        nodes = {}
        for name in ("A", "B"):
            port = free_port()
            env = dict(os.environ, SIO_NODE_MODULES_DIR=str(MODULES))
            procs.append(subprocess.Popen(
                ["node", str(ANCHORS / "node_sharded_node.js"), "--port", str(port), "--redis-cluster",
                 f"redis://127.0.0.1:{ports[0]}", "--quiet", "--node-id", name], env=env))
            nodes[name] = port
        for port in nodes.values():
            for _ in range(300):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.05)
        time.sleep(0.5)
        marks = []

        def mark(what):
            marks.append((time.time(), what))

        received = {"alice": [], "bob": []}
        clients = {}
        for who, node in (("alice", "A"), ("bob", "B")):
            c = socketio.AsyncClient()

            def handler(event, *args, who=who):
                received[who].append([event, *args])
            c.on("*", handler)
            await c.connect(f"http://127.0.0.1:{nodes[node]}", transports=["websocket"])
            clients[who] = c
        await asyncio.sleep(0.5)
        alice, bob = clients["alice"], clients["bob"]
        sid = {"alice": alice.get_sid("/"), "bob": bob.get_sid("/")}
        steps = [
            ("join-alice", alice, "join_room", {"roomName": "room-1", "personName": "alice"}),
            ("join-bob", bob, "join_room", {"roomName": "room-1", "personName": "bob"}),
            ("message", alice, "message", {"roomName": "room-1", "personName": "alice", "content": "hello"}),
            ("offer", alice, "offer", {"fromPeer": sid["alice"], "toPeer": sid["bob"], "sdp": "v=0 offer"}),
            ("answer", bob, "answer", {"fromPeer": sid["bob"], "toPeer": sid["alice"], "sdp": "v=0 answer"}),
            ("ice-candidate", alice, "ice_candidate",
             {"fromPeer": sid["alice"], "toPeer": sid["bob"], "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}),
            ("send-offer", alice, "send-offer", {"sdp": "v=0 broadcast"}),
            ("send-answer", bob, "send-answer", {"sdp": "v=0 broadcast answer"}),
            ("send-icecandidate", alice, "send-icecandidate", {"candidate": "candidate:2"}),
            ("leave-bob", bob, "leave_room", {"roomName": "room-1", "personName": "bob"}),
            ("unicode-room", alice, "join_room", {"roomName": "salle-été-\u2603", "personName": "Zoë \"Z\""}),
        ]
        for name, client, event, data in steps:
            mark(name)
            await client.emit(event, data)
            await asyncio.sleep(0.4)
        mark("disconnect-alice")
        await alice.disconnect()
        await asyncio.sleep(0.4)
        mark("disconnect-bob")
        await bob.disconnect()
        await asyncio.sleep(0.6)
        mark("end")
        for _, f, m in monitors:
            m.terminate()
            m.wait()
            f.close()
        commands = []
        for p, _, _ in monitors:
            for line in open(tmp / f"monitor-{p}.log", encoding="utf-8", errors="surrogateescape"):
                parsed = parse_monitor_line(line.rstrip("\n"))
                if not parsed:
                    continue
                t, client, args = parsed
                verb = args[0].decode().upper()
                if verb not in ("SSUBSCRIBE", "SUNSUBSCRIBE", "SPUBLISH"):
                    continue
                commands.append({"t": t, "master_port": p, "client": client, "args": args})
        commands.sort(key=lambda c: c["t"])
        for f in HERE.glob("*.bin"):
            f.unlink()
        out = []
        n = 0
        for c in commands:
            step = "startup"
            for t, what in marks:
                if c["t"] >= t:
                    step = what
            verb = c["args"][0].decode().upper()
            entry = {"step": step, "command": verb, "master": ports.index(c["master_port"]),
                     "channel": c["args"][1].decode("utf-8")}
            keyslot = subprocess.run(["redis-cli", "-p", str(ports[0]), "cluster", "keyslot", entry["channel"]],
                                     capture_output=True, text=True).stdout.strip()
            entry["slot"] = int(keyslot)
            if verb == "SPUBLISH":
                n += 1
                payload = c["args"][2]
                fname = f"{n:02d}-{step}.bin"
                (HERE / fname).write_bytes(payload)
                entry["file"] = fname
                entry["decoded"] = json.loads(payload) if payload[:1] == b"{" else None
            out.append(entry)
        index = {
            "what": "SSUBSCRIBE/SUNSUBSCRIBE/SPUBLISH seen by redis-cli MONITOR on the 3 masters, in time order; "
                    "each SPUBLISH payload is the .bin named in `file` (exact bytes). See README.md.",
            "captured_with": {"node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
                              "socket.io": "4.8.1", "adapter": "@socket.io/redis-adapter 8.3.0 sharded (node_sharded_node.js)",
                              "subscriptionMode": "dynamic", "redis client": "node-redis 4.6.6 createCluster",
                              "redis-server": subprocess.run(["redis-server", "--version"], capture_output=True,
                                                             text=True).stdout.split()[2]},
            "masters": masters,
            "clients": {"alice": {"node": "A", "socket_id": sid["alice"]}, "bob": {"node": "B", "socket_id": sid["bob"]}},
            "steps": [[what, next((s for s in steps if s[0] == what), (None, None, None, None))[3]] for _, what in marks],
            "commands": out,
            "delivered_to_clients": received,
        }
        (HERE / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
        print(f"{len(out)} commands, {n} payloads")
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


asyncio.run(main())
