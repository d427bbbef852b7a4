#!/usr/bin/env python3
"""Soak test: a real redis-server and 3 `signal-node` processes under churn and abuse, then leak checks.

    scripts/soak.py --duration 1800 --json soak.json        # the 30-minute soak
    scripts/soak.py --duration 90                           # a short pass (CI runs 60 s, see test_soak.py)
    scripts/soak.py --show soak.json                        # the summary of a saved result

What it does, all on 127.0.0.1 and bounded in count and time:

- starts redis-server and N nodes (`--redis --redis-mode`, default `mixed`: per-room, pattern, per-room, ...) on
  free loopback ports, with short ping settings so abandoned sessions expire within seconds;
- churn: `--clients` concurrent python-socketio clients (polling, websocket, default upgrade) that connect to a
  random node, join rooms of a small pool (so members of one room sit on different nodes), chat, send offers,
  answers and ICE candidates to peers of their join roster, leave rooms, and end cleanly or abruptly (TCP socket
  dropped without a close packet, a WebSocket killed in the middle of a burst);
- attacks every `--attack-interval` seconds: a handshake flood (Engine.IO handshakes that never CONNECT), idle
  WebSockets without CONNECT, polling POSTs that join then leave and close in one body
  (`42["join_room",…]␞42["leave_room",…]␞1`), joins followed by `41`/`40` and `1`, joins followed by an
  abrupt TCP close, a WebSocket frame cut in half; and `--redis-restarts` times a Redis restart (SIGKILL, then
  a new redis-server on the same port);
- samples each node's RSS (/proc/PID/status VmRSS) and /metrics gauges every `--sample-interval` seconds;
- after the churn, every client closed and the sessions settled: checks (each can fail the run)
    no-crash            every node process still alive, none died during the run
    rss-flat            per node, median RSS of the last quarter of the churn within `--rss-tolerance` of the
                        median after warm-up (or within `--rss-slack-mb`)
    sessions-zero       signal_sessions 0 on every node
    rooms-zero          signal_rooms 0 on every node
    subscriptions-zero  no per-room Redis channel left subscribed (PUBSUB CHANNELS `<prefix>#/#?*`)
    presence-zero       no `<prefix>:presence:room:*` key and no `<prefix>:presence:node:*` entry left in Redis
    delivery            a final scripted exchange across all nodes delivers each message and signal exactly once
- prints a summary table, writes `--json PATH`, exits 1 when a check failed (2 when the cluster could not start).

A node that dies is recorded (exit status, log tail) and, unless `--no-respawn`, started again on a new port so
the churn and the other checks go on; `no-crash` fails all the same.
"""

import argparse
import asyncio
import base64
import datetime
import inspect
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "Tests" / "integration"))

import aiohttp  # noqa: E402
import socketio  # noqa: E402

# The integration suite's redis-server wrapper and RESP client (cluster.py imports conftest, which also lifts
# python-engineio's 16-packets-per-payload limit that busy rooms can exceed in one polling GET).
from cluster import RedisServer, RespClient  # noqa: E402
from conftest import free_port  # noqa: E402

RS = "\x1e"
ALL_ATTACKS = ("flood", "ws-idle", "join-leave-close", "join-reconnect", "join-abort", "ws-partial",
               "redis-restart")
TRANSPORTS = {"polling": ["polling"], "websocket": ["websocket"], "default": ["polling", "websocket"]}


def log(msg):
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def default_binary():
    env = os.environ.get("SIGNAL_NODE_BIN")
    if env:
        return Path(env)
    release = REPO / ".build" / "release" / "signal-node"
    return release if release.exists() else REPO / ".build" / "debug" / "signal-node"


def git_commit():
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --------------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------------

class Node:
    """One signal-node process. `incarnation` counts restarts after a crash; each gets its own log file."""

    def __init__(self, index, binary, redis_url, mode, extra_args, log_dir):
        self.index = index
        self.node_id = f"n{index + 1}"
        self.binary = binary
        self.redis_url = redis_url
        self.mode = mode
        self.extra_args = list(extra_args)
        self.log_dir = log_dir
        self.port = None
        self.proc = None
        self.incarnation = 0
        self.logfile = None
        self.stopping = False

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=60.0):
        last = ""
        for _attempt in range(3):
            self.port = free_port()
            self.logfile = self.log_dir / f"{self.node_id}-{self.incarnation}.log"
            cmd = [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port), "--redis", self.redis_url,
                   "--node-id", self.node_id, "--redis-mode", self.mode, *self.extra_args]
            with open(self.logfile, "ab") as out:
                self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             cwd=str(REPO))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last = f"exited with {self.proc.returncode} during start-up"
                    break
                if http_get_status(self.port, "/healthz") == 200:
                    return self
                time.sleep(0.1)
            else:
                last = f"/healthz not 200 within {timeout}s"
            self.kill()
        raise RuntimeError(f"{self.node_id}: could not start {self.binary}: {last}\n{self.log_tail()}")

    def rss_kb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, ValueError, AttributeError):
            return None
        return None

    def exit_description(self):
        code = self.proc.returncode
        if code is None:
            return "running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def log_tail(self, lines=30):
        try:
            text = self.logfile.read_bytes().decode("utf-8", "replace")
        except (OSError, AttributeError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def fatal_lines(self):
        """Lines of the current log that look like a Swift runtime trap."""
        try:
            text = self.logfile.read_bytes().decode("utf-8", "replace")
        except (OSError, AttributeError):
            return []
        keys = ("Fatal error", "fatal error", "Attempted to read an unowned", "Precondition failed",
                "Assertion failed", "Segmentation fault", "Illegal instruction", "Crash", "💣")
        return [line for line in text.splitlines() if any(k in line for k in keys)][:10]

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def stop(self):
        self.stopping = True
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


def http_get_status(port, path, timeout=1.0):
    """Blocking GET on 127.0.0.1 (start-up only)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64).decode("latin-1")
            m = re.match(r"HTTP/1\.[01] (\d{3})", head)
            return int(m.group(1)) if m else None
    except OSError:
        return None


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text):
    """Prometheus text → ({series: value}, {metric name: type})."""
    values, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
            continue
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        if not m:
            continue
        try:
            values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
        except ValueError:
            pass
    return values, types


# --------------------------------------------------------------------------------------------
# Raw protocol helpers (attacks): aiohttp for polling, asyncio streams for WebSocket
# --------------------------------------------------------------------------------------------

def eio_path(sid=None, transport="polling"):
    p = f"/socket.io/?EIO=4&transport={transport}&t={uuid.uuid4().hex[:8]}"
    return p + (f"&sid={sid}" if sid else "")


def sio_event(name, data):
    return "42" + json.dumps([name, data], separators=(",", ":"))


async def polling_get(http, node, sid=None, timeout=10.0):
    async with http.get(node.url + eio_path(sid), timeout=aiohttp.ClientTimeout(total=timeout)) as r:
        return r.status, await r.text()


async def polling_post(http, node, sid, body, timeout=10.0):
    async with http.post(node.url + eio_path(sid), data=body.encode(),
                         headers={"Content-Type": "text/plain;charset=UTF-8"},
                         timeout=aiohttp.ClientTimeout(total=timeout)) as r:
        return r.status, await r.text()


async def polling_connected(http, node):
    """A polling Engine.IO session with the Socket.IO CONNECT done: its Engine.IO sid, or None."""
    status, text = await polling_get(http, node)
    if status != 200 or not text.startswith("0{"):
        return None
    sid = json.loads(text[1:])["sid"]
    status, _ = await polling_post(http, node, sid, "40")
    if status != 200:
        return None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, text = await polling_get(http, node, sid)
        if status != 200:
            return None
        for pkt in text.split(RS):
            if pkt.startswith("40"):
                return sid
    return None


class RawWebSocket:
    """A minimal WebSocket client on a raw TCP stream: we decide exactly which bytes go out and when the socket
    dies."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, node, timeout=10.0, source=None):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", node.port, local_addr=(source, 0) if source else None), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {eio_path(transport='websocket')} HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self = cls(reader, writer)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if not head.startswith(b"HTTP/1.1 101"):
            self.abort()
            raise ConnectionError(f"upgrade refused: {head[:40]!r}")
        return self

    @staticmethod
    def frame(text, fin=True):
        data = text.encode() if isinstance(text, str) else text
        mask = os.urandom(4)
        head = bytearray([(0x80 if fin else 0) | 0x1])
        n = len(data)
        if n < 126:
            head.append(0x80 | n)
        elif n < 65536:
            head.append(0x80 | 126)
            head += n.to_bytes(2, "big")
        else:
            head.append(0x80 | 127)
            head += n.to_bytes(8, "big")
        return bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def send(self, text):
        self.writer.write(self.frame(text))

    async def recv(self, timeout=10.0):
        async def one():
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            data = await self.reader.readexactly(n)
            return b0 & 0x0F, data
        return await asyncio.wait_for(one(), timeout)

    async def recv_text(self, prefix, timeout=10.0):
        """Next text frame starting with `prefix` (answers pings on the way)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            op, data = await self.recv(max(0.1, deadline - time.monotonic()))
            if op == 0x8:
                raise ConnectionError("closed by the server")
            if op != 0x1:
                continue
            text = data.decode("utf-8", "replace")
            if text == "2":
                self.send("3")
                continue
            if text.startswith(prefix):
                return text
        raise TimeoutError(f"no frame starting with {prefix!r}")

    def abort(self):
        """Drop the TCP connection: no WebSocket close frame, no Engine.IO close packet."""
        try:
            self.writer.transport.abort()
        except Exception:
            pass


# --------------------------------------------------------------------------------------------
# The soak
# --------------------------------------------------------------------------------------------

class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.stats = Counter()
        self.errors = Counter()  # codes of refused events seen by the churn clients
        self.samples = []  # {t, phase, node, incarnation, rss_kb, gauges}
        self.crashes = []
        self.redis_restarts = []
        self.checks = []
        self.events = []  # notable moments: (t, what)
        self.nodes = []
        self.redis = None
        self.t0 = None
        self.phase = "start"
        self.live_clients = set()
        self.rooms = [f"soak-{i}" for i in range(args.rooms)]
        self.redis_down = False

    # ---- set-up and tear-down

    def start_cluster(self):
        args = self.args
        self.log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="signal-soak-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer()
        self.redis.start()
        modes = {"pattern": ["pattern"], "per-room": ["per-room"], "mixed": ["per-room", "pattern"]}[args.redis_mode]
        extra = ["--ping-interval", str(args.ping_interval), "--ping-timeout", str(args.ping_timeout),
                 "--node-timeout", str(args.node_timeout), "--log-level", args.node_log_level, *args.node_arg]
        for i in range(args.nodes):
            node = Node(i, args.binary, self.redis.url, modes[i % len(modes)], extra, self.log_dir)
            node.start()
            self.nodes.append(node)
        log(f"redis-server :{self.redis.port}; nodes " +
            ", ".join(f"{n.node_id} :{n.port} ({n.mode})" for n in self.nodes) + f"; logs in {self.log_dir}")

    def stop_cluster(self):
        for node in self.nodes:
            node.stop()
        if self.redis is not None:
            self.redis.stop()

    def now(self):
        return time.monotonic() - self.t0

    def note(self, what):
        self.events.append((round(self.now(), 1), what))
        log(what)

    def live_nodes(self):
        return [n for n in self.nodes if n.alive()]

    def pick_node(self):
        live = self.live_nodes()
        return self.rng.choice(live) if live else None

    # ---- monitoring

    async def fetch_metrics(self, node, http):
        try:
            async with http.get(node.url + "/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r:
                if r.status != 200:
                    return None, None
                return parse_metrics(await r.text())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return None, None

    async def sample_once(self, http):
        for node in self.nodes:
            if not node.alive():
                continue
            values, types = await self.fetch_metrics(node, http)
            gauges = {}
            if values:
                for series, v in values.items():
                    name = series.split("{", 1)[0]
                    if types.get(name) == "gauge" or name in ("signal_sessions", "signal_rooms"):
                        gauges[series] = v
            self.samples.append({"t": round(self.now(), 1), "phase": self.phase, "node": node.node_id,
                                 "incarnation": node.incarnation, "rss_kb": node.rss_kb(), "gauges": gauges})

    async def monitor(self, stop):
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                await self.check_crashes()
                await self.sample_once(http)
                try:
                    await asyncio.wait_for(stop.wait(), self.args.sample_interval)
                except (asyncio.TimeoutError, TimeoutError):
                    pass

    async def check_crashes(self):
        for node in self.nodes:
            if node.proc is None or node.alive() or node.stopping:
                continue
            if any(c["node"] == node.node_id and c["incarnation"] == node.incarnation for c in self.crashes):
                continue
            crash = {"node": node.node_id, "incarnation": node.incarnation, "t": round(self.now(), 1),
                     "phase": self.phase, "how": node.exit_description(), "fatal": node.fatal_lines(),
                     "log": str(node.logfile), "tail": node.log_tail(25)}
            self.crashes.append(crash)
            self.note(f"CRASH {node.node_id} ({crash['how']}) in phase {self.phase}: "
                      f"{crash['fatal'][:1] or crash['tail'].splitlines()[-1:]}")
            if self.args.respawn and self.phase in ("churn", "drain"):
                node.incarnation += 1
                try:
                    await asyncio.to_thread(node.start)
                    self.note(f"{node.node_id} started again on :{node.port} (incarnation {node.incarnation})")
                except RuntimeError as e:
                    self.note(f"{node.node_id} could not be started again: {e}")

    # ---- churn clients

    def client_address(self, kind):
        """A loopback source address: churn clients spread over 127.0.1.1..N (so per-address limits see many
        clients, as behind a real network), attacks from 127.0.2.1, the final exchange from 127.0.3.x."""
        if self.args.client_addresses <= 0:
            return None
        if kind == "churn":
            return f"127.0.1.{1 + self.rng.randrange(min(254, self.args.client_addresses))}"
        if kind == "attack":
            return "127.0.2.1"
        return f"127.0.3.{1 + self.rng.randrange(254)}"

    def make_socketio_client(self, kind):
        address = self.client_address(kind)
        options = {}
        if address is not None:
            options["http_session"] = lambda: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(local_addr=(address, 0)))
        return socketio.AsyncClient(reconnection=False, request_timeout=10, **options)

    def attack_session(self, **connector_options):
        address = self.client_address("attack")
        if address is not None:
            connector_options["local_addr"] = (address, 0)
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(**connector_options))

    def new_client(self):
        sio = self.make_socketio_client("churn")
        received = Counter()

        @sio.on("*")
        async def _any(event, *args):
            received[event] += 1
            if event == "error" and args and isinstance(args[0], dict):
                self.errors[str(args[0].get("code"))] += 1

        sio._soak_received = received
        return sio

    async def call(self, sio, event, data, timeout=10.0):
        """Emit with an ack; the ack's first argument, or None (timeout, disconnected)."""
        try:
            got = await sio.call(event, data, timeout=timeout)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError,
                socketio.exceptions.SocketIOError):
            self.stats["ack_timeouts"] += 1
            return None
        if isinstance(got, tuple):
            got = got[0] if got else None
        if isinstance(got, dict) and "code" in got and "event" in got:
            self.errors[str(got.get("code"))] += 1
        return got

    async def emit(self, sio, event, data):
        try:
            await asyncio.wait_for(sio.emit(event, data), 10)
            self.stats[f"sent_{event}"] += 1
        except (socketio.exceptions.SocketIOError, asyncio.TimeoutError, TimeoutError):
            self.stats["emit_failures"] += 1

    async def abrupt_close(self, sio):
        """Drop the client's TCP connection(s) without a Socket.IO DISCONNECT or Engine.IO close packet."""
        eio = sio.eio
        try:
            ws = getattr(eio, "ws", None)
            conn = getattr(ws, "_conn", None) if ws is not None else None
            transport = getattr(conn, "transport", None) if conn is not None else None
            if transport is not None:
                transport.abort()
            if eio.http is not None and not eio.http.closed:
                connector = eio.http.connector
                if connector is not None:
                    closing = connector.close()
                    if inspect.isawaitable(closing):
                        await closing  # every pooled and in-flight connection of the polling transport
        except Exception as e:  # private attributes of aiohttp/python-engineio: never let this break the churn
            self.stats["abrupt_close_errors"] += 1
            if self.args.verbose:
                log(f"abrupt close: {e!r}")
        await self.forget(sio, wait=3.0)

    async def forget(self, sio, wait=0.5):
        """Stop the client's background tasks and drop its HTTP session."""
        eio = sio.eio
        task = getattr(eio, "read_loop_task", None)
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), wait)
            except BaseException:
                task.cancel()
        for name in ("read_loop_task", "write_loop_task", "ping_loop_task"):
            t = getattr(eio, name, None)
            if t is not None and not t.done():
                t.cancel()
        try:
            await asyncio.wait_for(eio._reset(), 5)
        except BaseException:
            pass
        try:
            if eio.http is not None and not eio.http.closed:
                await eio.http.close()
        except BaseException:
            pass

    async def clean_close(self, sio):
        wait = 1.0 if sio.eio.current_transport == "polling" else 3.0
        try:
            await asyncio.wait_for(sio.disconnect(), wait)
        except BaseException:
            pass
        await self.forget(sio)

    async def churn_client(self, worker):
        rng = self.rng
        node = self.pick_node()
        if node is None:
            await asyncio.sleep(1)
            return
        transport = rng.choice(list(TRANSPORTS))
        sio = self.new_client()
        self.live_clients.add(sio)
        try:
            try:
                await asyncio.wait_for(sio.connect(node.url, transports=TRANSPORTS[transport], wait_timeout=10), 15)
            except BaseException as e:
                if isinstance(e, asyncio.CancelledError):
                    raise
                self.stats["connect_failures"] += 1
                await self.forget(sio)
                await asyncio.sleep(rng.uniform(0.5, 2.0))
                return
            self.stats[f"connected_{transport}"] += 1
            me = f"w{worker}-{uuid.uuid4().hex[:6]}"
            joined, peers = set(), set()
            for room in rng.sample(self.rooms, rng.randint(1, min(3, len(self.rooms)))):
                ack = await self.call(sio, "join_room", {"roomName": room, "personName": me})
                if isinstance(ack, dict) and "peers" in ack:
                    joined.add(room)
                    self.stats["joins"] += 1
                    peers.update(p.get("socketId") for p in ack["peers"] if isinstance(p, dict))
            peers.discard(None)
            for _step in range(rng.randint(3, 12)):
                if not sio.connected:
                    break
                r = rng.random()
                if r < 0.30 and joined:
                    await self.emit(sio, "message", {"roomName": rng.choice(sorted(joined)),
                                                     "content": f"hello from {me} " + "x" * rng.randint(0, 300)})
                elif r < 0.65 and peers:
                    peer = rng.choice(sorted(peers))
                    kind = rng.choice(["offer", "answer", "ice_candidate"])
                    if kind == "ice_candidate":
                        payload = {"iccCandidate": {"candidate": f"candidate:1 1 udp 2122260223 10.0.0.{rng.randint(1, 254)} "
                                                                 f"{rng.randint(1024, 65535)} typ host",
                                                    "sdpMid": "0", "sdpMLineIndex": 0}, "toPeer": peer}
                    else:
                        payload = {kind: {"type": kind, "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"
                                                               + "a=x\r\n" * rng.randint(1, 200)},
                                   "toPeer": peer}
                    await self.emit(sio, kind, payload)
                elif r < 0.75 and joined:
                    room = rng.choice(sorted(joined))
                    joined.discard(room)
                    await self.emit(sio, "leave_room", {"roomName": room})
                    self.stats["leaves"] += 1
                elif r < 0.85:
                    room = rng.choice(self.rooms)
                    ack = await self.call(sio, "join_room", {"roomName": room, "personName": me})
                    if isinstance(ack, dict) and "peers" in ack:
                        joined.add(room)
                        self.stats["joins"] += 1
                        peers.update(p.get("socketId") for p in ack["peers"] if isinstance(p, dict))
                        peers.discard(None)
                await asyncio.sleep(rng.uniform(0.05, 0.6))
            end = rng.random()
            if end < 0.45:
                await self.clean_close(sio)
                self.stats["closed_clean"] += 1
            elif end < 0.60 and joined:
                for room in sorted(joined):
                    await self.emit(sio, "leave_room", {"roomName": room})
                    self.stats["leaves"] += 1
                await self.clean_close(sio)
                self.stats["closed_after_leaving"] += 1
            elif end < 0.75 and sio.connected and sio.eio.current_transport == "websocket":
                # kill the WebSocket in the middle of a burst of joins and messages
                room = rng.choice(self.rooms)
                burst = [asyncio.ensure_future(sio.emit("join_room", {"roomName": room, "personName": me}))]
                burst += [asyncio.ensure_future(sio.emit("message", {"roomName": room, "content": f"burst {i}"}))
                          for i in range(5)]
                await asyncio.sleep(0)
                await self.abrupt_close(sio)
                for f in burst:
                    f.cancel()
                await asyncio.gather(*burst, return_exceptions=True)
                self.stats["killed_mid_burst"] += 1
            else:
                await self.abrupt_close(sio)
                self.stats["closed_abrupt"] += 1
        finally:
            self.live_clients.discard(sio)
            if sio.connected or getattr(sio.eio, "state", "") == "connected":
                await self.forget(sio)

    async def churn_worker(self, worker, stop):
        await asyncio.sleep(self.rng.uniform(0, 2))
        while not stop.is_set():
            try:
                await asyncio.wait_for(self.churn_client(worker), 120)
            except (asyncio.TimeoutError, TimeoutError):
                self.stats["client_iterations_timed_out"] += 1
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.stats["client_exceptions"] += 1
                if self.args.verbose:
                    log(f"worker {worker}: {e!r}")
            self.stats["client_iterations"] += 1

    # ---- attacks

    async def attack_flood(self, node):
        """Engine.IO handshakes that never CONNECT, on a few keep-alive connections."""
        statuses = Counter()
        deadline = time.monotonic() + 30
        async with self.attack_session(limit=4) as http:
            async def one():
                if time.monotonic() > deadline:
                    statuses["skipped"] += 1
                    return
                try:
                    status, _ = await polling_get(http, node, timeout=10)
                    statuses[status] += 1
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    statuses["error"] += 1
            for start in range(0, self.args.flood_size, 50):
                await asyncio.gather(*(one() for _ in range(min(50, self.args.flood_size - start))))
        self.stats["flood_handshakes"] += statuses[200]
        self.stats["flood_refused"] += sum(v for k, v in statuses.items() if k != 200)
        return dict(statuses)

    async def attack_ws_idle(self, node, count=20, hold=2.0):
        """WebSockets that get the Engine.IO open packet and never CONNECT; dropped after `hold` seconds."""
        socks = []
        for _ in range(count):
            try:
                ws = await RawWebSocket.open(node, source=self.client_address("attack"))
                await ws.recv_text("0", timeout=5)
                socks.append(ws)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, TimeoutError):
                self.stats["ws_idle_failures"] += 1
        await asyncio.sleep(hold)
        for ws in socks:
            ws.abort()
        self.stats["ws_idle"] += len(socks)

    async def attack_join_leave_close(self, node, http):
        """Finding 1's shape: one polling POST that joins, leaves and closes."""
        sid = await polling_connected(http, node)
        if sid is None:
            self.stats["attack_setup_failures"] += 1
            return
        room = self.rng.choice(self.rooms + [f"jlc-{uuid.uuid4().hex[:8]}"])
        body = RS.join([sio_event("join_room", {"roomName": room, "personName": "jlc"}),
                        sio_event("leave_room", {"roomName": room}), "1"])
        try:
            await polling_post(http, node, sid, body)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            self.stats["attack_post_errors"] += 1
        self.stats["join_leave_close"] += 1

    async def attack_join_reconnect(self, node, http):
        """Finding 9's shape: joins still queued when the socket leaves the namespace (`41`), a new CONNECT
        (`40`) and more joins on the same Engine.IO session, then the session closes."""
        sid = await polling_connected(http, node)
        if sid is None:
            self.stats["attack_setup_failures"] += 1
            return
        rooms = [f"jr-{uuid.uuid4().hex[:8]}" for _ in range(3)] + [self.rng.choice(self.rooms)]
        joins = [sio_event("join_room", {"roomName": r, "personName": "jr"}) for r in rooms]
        body = RS.join(joins[:2] + ["41", "40"] + joins[2:] + ["41"])
        try:
            await polling_post(http, node, sid, body)
            # Close the session only once the queued joins are done: closing at once is finding 1's crash
            # (join-leave-close); this one is about what the joins leave behind.
            await asyncio.sleep(self.args.reconnect_close_delay)
            await polling_post(http, node, sid, "1")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            self.stats["attack_post_errors"] += 1
        self.stats["join_reconnect"] += 1

    async def attack_join_abort(self, node):
        """Joins sent on a WebSocket whose TCP connection is dropped right after."""
        try:
            ws = await RawWebSocket.open(node, source=self.client_address("attack"))
            await ws.recv_text("0", timeout=5)
            ws.send("40")
            await ws.recv_text("40", timeout=5)
            for _ in range(3):
                room = self.rng.choice(self.rooms + [f"ja-{uuid.uuid4().hex[:8]}"])
                ws.send(sio_event("join_room", {"roomName": room, "personName": "ja"}))
            await ws.writer.drain()
            ws.abort()
            self.stats["join_abort"] += 1
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, TimeoutError):
            self.stats["attack_setup_failures"] += 1

    async def attack_ws_partial(self, node):
        """A joined WebSocket that sends half a frame, then dies."""
        try:
            ws = await RawWebSocket.open(node, source=self.client_address("attack"))
            await ws.recv_text("0", timeout=5)
            ws.send("40")
            await ws.recv_text("40", timeout=5)
            frame = RawWebSocket.frame(sio_event("join_room", {"roomName": self.rng.choice(self.rooms),
                                                               "personName": "half" + "y" * 200}))
            ws.writer.write(frame[: len(frame) // 2])
            await ws.writer.drain()
            await asyncio.sleep(0.2)
            ws.abort()
            self.stats["ws_partial"] += 1
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, TimeoutError):
            self.stats["attack_setup_failures"] += 1

    async def attack_round(self, http):
        attacks = self.args.attacks
        node = self.pick_node()
        if node is None:
            return
        if "flood" in attacks:
            got = await self.attack_flood(node)
            if self.args.verbose:
                log(f"flood on {node.node_id}: {got}")
        jobs = []
        for _ in range(self.args.attack_count):
            target = self.pick_node()
            if target is None:
                break
            if "join-leave-close" in attacks:
                jobs.append(self.attack_join_leave_close(target, http))
            if "join-reconnect" in attacks:
                jobs.append(self.attack_join_reconnect(target, http))
            if "join-abort" in attacks:
                jobs.append(self.attack_join_abort(target))
            if "ws-partial" in attacks:
                jobs.append(self.attack_ws_partial(target))
        if "ws-idle" in attacks:
            jobs.append(self.attack_ws_idle(node))
        results = await asyncio.gather(*(asyncio.wait_for(j, 60) for j in jobs), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                self.stats["attack_exceptions"] += 1
                if self.args.verbose:
                    log(f"attack: {r!r}")
        self.stats["attack_rounds"] += 1

    async def attacker(self, stop):
        async with self.attack_session() as http:
            while True:
                try:
                    await asyncio.wait_for(stop.wait(), self.args.attack_interval)
                    return
                except (asyncio.TimeoutError, TimeoutError):
                    pass
                try:
                    await asyncio.wait_for(self.attack_round(http), 120)
                except (asyncio.TimeoutError, TimeoutError):
                    self.stats["attack_rounds_timed_out"] += 1

    async def redis_restarter(self, stop):
        n = self.args.redis_restarts
        if n <= 0 or "redis-restart" not in self.args.attacks:
            return
        times = [self.args.duration * (i + 1) / (n + 1) for i in range(n)]
        for at in times:
            wait = at - self.now()
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                    return
                except (asyncio.TimeoutError, TimeoutError):
                    pass
            self.note(f"killing redis-server :{self.redis.port}")
            self.redis_down = True
            await asyncio.to_thread(self.redis.kill)
            await asyncio.sleep(self.args.redis_down)
            await asyncio.to_thread(self.redis.start)
            self.redis_down = False
            t = time.monotonic()
            ready = await self.wait_all_ready(timeout=60)
            took = time.monotonic() - t
            self.redis_restarts.append({"t": round(self.now(), 1), "ready_after_s": round(took, 2) if ready else None})
            self.note(f"redis-server back on :{self.redis.port}; every node /readyz 200 "
                      f"{'after %.1fs' % took if ready else 'NOT within 60 s'}")

    async def wait_all_ready(self, timeout):
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            for node in self.nodes:
                while True:
                    if not node.alive():
                        break
                    try:
                        async with http.get(node.url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                            if r.status == 200:
                                break
                    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                        pass
                    if time.monotonic() > deadline:
                        return False
                    await asyncio.sleep(0.2)
        return True

    # ---- end-of-run state

    async def redis_state(self):
        prefix = self.args.redis_prefix
        conn = await RespClient.connect(self.redis.port)
        try:
            channels = [c.decode() for c in await conn.command("PUBSUB", "CHANNELS", f"{prefix}#/#?*")]
            numsub = {}
            if channels:
                reply = await conn.command("PUBSUB", "NUMSUB", *channels)
                numsub = {reply[i].decode(): int(reply[i + 1]) for i in range(0, len(reply), 2)}
            room_keys = await self.scan(conn, f"{prefix}:presence:room:*")
            node_keys = await self.scan(conn, f"{prefix}:presence:node:*")
            entries = {}
            for k in room_keys:
                entries[k] = int(await conn.command("HLEN", k))
            node_entries = {}
            for k in node_keys:
                node_entries[k] = int(await conn.command("SCARD", k))
            numpat = int(await conn.command("PUBSUB", "NUMPAT"))
            return {"room_channels": numsub, "presence_room_keys": entries, "presence_node_entries": node_entries,
                    "numpat": numpat}
        finally:
            await conn.close()

    @staticmethod
    async def scan(conn, pattern):
        keys, cursor = [], b"0"
        for _ in range(10000):
            cursor, batch = await conn.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            keys += [k.decode() for k in batch]
            if cursor in (b"0", "0"):
                break
        return sorted(set(keys))

    async def node_gauges(self, http):
        out = {}
        for node in self.nodes:
            values, _ = await self.fetch_metrics(node, http) if node.alive() else (None, None)
            out[node.node_id] = values
        return out

    def leftovers(self, gauges, redis):
        left = {}
        for node_id, values in gauges.items():
            if values is None:
                left[f"{node_id} metrics"] = "unreachable"
                continue
            for name in ("signal_sessions", "signal_rooms"):
                if values.get(name, 0) != 0:
                    left[f"{node_id} {name}"] = values.get(name)
        if redis is None:
            left["redis"] = "unreachable"
            return left
        if redis["room_channels"]:
            left["room channels"] = len(redis["room_channels"])
        if redis["presence_room_keys"]:
            left["presence room keys"] = len(redis["presence_room_keys"])
        if any(redis["presence_node_entries"].values()):
            left["presence node entries"] = sum(redis["presence_node_entries"].values())
        return left

    async def settle(self):
        """Wait until every session, room, channel and presence entry is gone, or `--settle-max` passed (at least
        `--settle` seconds)."""
        self.phase = "settle"
        start = time.monotonic()
        state = None
        async with aiohttp.ClientSession() as http:
            while True:
                await self.check_crashes()
                gauges = await self.node_gauges(http)
                try:
                    redis = await self.redis_state()
                except (OSError, ConnectionError, asyncio.TimeoutError, TimeoutError) as e:
                    redis = None
                    log(f"redis state: {e!r}")
                left = self.leftovers(gauges, redis)
                state = (gauges, redis, left)
                elapsed = time.monotonic() - start
                if (not left and elapsed >= self.args.settle) or elapsed >= self.args.settle_max:
                    break
                await asyncio.sleep(2)
        log(f"settled after {time.monotonic() - start:.0f}s; left over: {state[2] or 'nothing'}")
        return state

    # ---- final delivery check

    async def delivery_check(self):
        """One room with two clients per live node (every transport kind): each message reaches every member
        exactly once, an offer and an ICE candidate reach exactly their target, across nodes."""
        self.phase = "delivery"
        kinds = ["websocket", "polling", "default"]
        clients = []
        problems = []
        room = f"final-{uuid.uuid4().hex[:8]}"
        try:
            for i, node in enumerate(self.live_nodes()):
                for j in range(2):
                    transport = kinds[(2 * i + j) % 3]
                    sio = self.make_socketio_client("final")
                    log_ = []
                    sio.on("*", (lambda lg: (lambda ev, *a: lg.append((ev, a[0] if a else None))))(log_))
                    for attempt in range(3):  # connecting may be refused by a rate limit: retry
                        try:
                            await asyncio.wait_for(
                                sio.connect(node.url, transports=TRANSPORTS[transport], wait_timeout=10), 15)
                            break
                        except BaseException as e:
                            if isinstance(e, asyncio.CancelledError):
                                raise
                            await self.forget(sio)
                            if attempt == 2:
                                problems.append(f"{node.node_id}/{transport}: cannot connect: {e!r}")
                            await asyncio.sleep(2)
                    if sio.connected:
                        clients.append({"sio": sio, "node": node.node_id, "transport": transport, "log": log_,
                                        "name": f"{node.node_id}-{transport}-{j}"})
            if problems:
                return problems
            for c in clients:
                ack = await self.call(c["sio"], "join_room", {"roomName": room, "personName": c["name"]}, timeout=15)
                if not (isinstance(ack, dict) and "peers" in ack):
                    problems.append(f"{c['name']}: join_room answered {ack!r}")
                c["sid"] = c["sio"].get_sid("/")
            if problems:
                return problems
            # every member saw every later joiner: the room is complete on every node
            def joined_seen(c):
                return sum(1 for ev, p in c["log"]
                           if ev == "user_joined" and isinstance(p, dict) and p.get("roomName") == room)
            if not await self.wait_until(lambda: all(joined_seen(c) >= len(clients) - k
                                                     for k, c in enumerate(clients)), 15):
                problems.append("user_joined not seen by every earlier member within 15 s: " + ", ".join(
                    f"{c['name']} {joined_seen(c)}/{len(clients) - k}" for k, c in enumerate(clients)))
            for c in clients:
                await c["sio"].emit("message", {"roomName": room, "content": f"final from {c['name']}"})
            a, b = clients[0], clients[-1]
            await a["sio"].emit("offer", {"offer": {"type": "offer", "sdp": "v=0\r\n"}, "toPeer": b["sid"]})
            await a["sio"].emit("ice_candidate", {"iccCandidate": {"candidate": "candidate:final", "sdpMid": "0",
                                                                   "sdpMLineIndex": 0}, "toPeer": b["sid"]})
            expected = {f"final from {c['name']}" for c in clients}

            def contents(c):
                return Counter(p.get("content") for ev, p in c["log"] if ev == "message" and isinstance(p, dict))

            def signals(c, event):
                return [p for ev, p in c["log"] if ev == event and isinstance(p, dict)]

            await self.wait_until(lambda: all(set(contents(c)) >= expected for c in clients)
                                  and signals(b, "offer") and signals(b, "ice_candidate"), 20)
            await asyncio.sleep(2)  # time for duplicates to show up
            for c in clients:
                got = contents(c)
                missing = expected - set(got)
                dups = {k: v for k, v in got.items() if v > 1}
                extra = set(got) - expected
                if missing:
                    problems.append(f"{c['name']}: missing messages {sorted(missing)}")
                if dups:
                    problems.append(f"{c['name']}: duplicated messages {dups}")
                if extra:
                    problems.append(f"{c['name']}: unexpected messages {sorted(extra)}")
                n_offer, n_ice = len(signals(c, "offer")), len(signals(c, "ice_candidate"))
                want = 1 if c is b else 0
                if n_offer != want or n_ice != want:
                    problems.append(f"{c['name']}: {n_offer} offers and {n_ice} ice_candidate, expected {want} each")
                if c is b:
                    for p in signals(c, "offer") + signals(c, "ice_candidate"):
                        if p.get("fromPeer") != a["sid"]:
                            problems.append(f"{c['name']}: signal with fromPeer {p.get('fromPeer')!r}, "
                                            f"expected {a['sid']}")
            self.stats["final_clients"] = len(clients)
            return problems
        finally:
            for c in clients:
                await self.clean_close(c["sio"])

    @staticmethod
    async def wait_until(pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            await asyncio.sleep(0.1)
        return False

    # ---- checks

    def check(self, name, ok, detail, **values):
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail, **values})

    def rss_checks(self, churn_end):
        args = self.args
        warm = args.warmup
        quarter_start = churn_end - (churn_end - warm) / 4 if churn_end > warm else churn_end
        for node in self.nodes:
            inc = node.incarnation
            series = [(s["t"], s["rss_kb"]) for s in self.samples
                      if s["node"] == node.node_id and s["incarnation"] == inc and s["rss_kb"]
                      and s["phase"] == "churn"]
            if inc > 0:
                # a restarted incarnation warms up from its own start
                first = min((t for t, _ in series), default=churn_end)
                post = [(t, r) for t, r in series if t >= first + warm]
            else:
                post = [(t, r) for t, r in series if t >= warm]
            last = [(t, r) for t, r in post if t >= quarter_start]
            name = f"rss-flat {node.node_id}"
            if len(post) < 6 or len(last) < 3:
                self.check(name, True, f"skipped: {len(post)} samples after warm-up ({len(last)} in the last "
                                       f"quarter), too few to judge", skipped=True)
                continue
            base = statistics.median(r for _, r in post)
            tail = statistics.median(r for _, r in last)
            growth = (tail - base) / base
            slack_kb = args.rss_slack_mb * 1024
            ok = growth <= args.rss_tolerance or (tail - base) <= slack_kb
            self.check(name, ok, f"median RSS after warm-up {base / 1024:.1f} MB, last quarter {tail / 1024:.1f} MB "
                                 f"({growth * 100:+.1f}%, tolerance {args.rss_tolerance * 100:.0f}% or "
                                 f"{args.rss_slack_mb:g} MB)" + (f", incarnation {inc}" if inc else ""),
                       base_kb=base, last_quarter_kb=tail, growth=round(growth, 4), samples=len(post),
                       min_kb=min(r for _, r in post), max_kb=max(r for _, r in post))

    # ---- main

    async def run(self):
        args = self.args
        self.t0 = time.monotonic()
        stop_monitor = asyncio.Event()
        monitor = asyncio.create_task(self.monitor(stop_monitor))
        if not await self.wait_all_ready(timeout=60):
            log("warning: not every node answered /readyz 200 within 60 s")
        self.phase = "churn"
        stop = asyncio.Event()
        self.note(f"churn: {args.clients} clients, {len(self.rooms)} rooms, attacks {','.join(args.attacks) or 'none'}"
                  f" for {args.duration:.0f}s")
        workers = [asyncio.create_task(self.churn_worker(i, stop)) for i in range(args.clients)]
        attacker = asyncio.create_task(self.attacker(stop))
        restarter = asyncio.create_task(self.redis_restarter(stop))
        progress_every = max(30.0, args.duration / 12)
        next_progress = progress_every
        while self.now() < args.duration:
            await asyncio.sleep(min(1.0, args.duration - self.now() + 0.01))
            if self.now() >= next_progress:
                next_progress += progress_every
                rss = ", ".join(f"{n.node_id} {(n.rss_kb() or 0) / 1024:.1f}MB" for n in self.nodes if n.alive())
                log(f"t={self.now():.0f}s: {self.stats['client_iterations']} client runs, "
                    f"{self.stats['joins']} joins, {len(self.crashes)} crashes; RSS {rss}")
        churn_end = self.now()
        self.phase = "drain"
        stop.set()
        self.note("churn over: waiting for the clients to finish")
        done, pending = await asyncio.wait(workers + [attacker, restarter], timeout=90)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for sio in list(self.live_clients):
            await self.forget(sio)
        await self.check_crashes()
        await self.wait_all_ready(timeout=30)
        gauges, redis, left = await self.settle()
        stop_monitor.set()
        await monitor
        async with aiohttp.ClientSession() as http:
            await self.sample_once(http)
        self.phase = "checks"

        # no crash
        dead_now = [n.node_id for n in self.nodes if not n.alive()]
        self.check("no-crash", not self.crashes and not dead_now,
                   "no node died" if not self.crashes and not dead_now else
                   f"{len(self.crashes)} crash(es): " + "; ".join(
                       f"{c['node']}#{c['incarnation']} at t={c['t']}s ({c['how']}): "
                       f"{(c['fatal'] or [c['tail'].splitlines()[-1] if c['tail'] else '?'])[0][:200]}"
                       for c in self.crashes[:5]) + (f"; dead at the end: {dead_now}" if dead_now else ""),
                   crashes=len(self.crashes))
        self.rss_checks(churn_end)
        for name, metric in (("sessions-zero", "signal_sessions"), ("rooms-zero", "signal_rooms")):
            per = {nid: (v.get(metric) if v else None) for nid, v in gauges.items()}
            self.check(name, all(x == 0 for x in per.values()),
                       ", ".join(f"{nid} {'unreachable' if x is None else int(x)}" for nid, x in per.items()),
                       values=per)
        if redis is None:
            self.check("subscriptions-zero", False, "redis unreachable")
            self.check("presence-zero", False, "redis unreachable")
        else:
            chans = redis["room_channels"]
            kinds = Counter(room_kind(c[len(f"{args.redis_prefix}#/#"):-1]) for c in chans)
            self.check("subscriptions-zero", not chans,
                       f"{len(chans)} room channels subscribed ({sum(chans.values())} subscriptions)"
                       + (f" [{', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}], e.g. {sorted(chans)[:3]}"
                          if chans else "")
                       + ("" if any(n.mode == "per-room" for n in self.nodes) else
                          " (no per-room node: pattern nodes subscribe to no room channel)"),
                       channels=len(chans), subscriptions=sum(chans.values()), kinds=dict(kinds),
                       names=sorted(chans)[:300])
            keys, node_entries = redis["presence_room_keys"], redis["presence_node_entries"]
            n_node_entries = sum(node_entries.values())
            self.check("presence-zero", not keys and not n_node_entries,
                       f"{len(keys)} presence room keys ({sum(keys.values())} members), "
                       f"{n_node_entries} node entries" + (f", e.g. {sorted(keys)[:3]}" if keys else ""),
                       room_keys=len(keys), members=sum(keys.values()), node_entries=n_node_entries)
        if len(self.live_nodes()) < len(self.nodes):
            self.check("delivery", False, f"only {len(self.live_nodes())} of {len(self.nodes)} nodes alive")
        elif self.live_nodes():
            try:
                problems = await asyncio.wait_for(self.delivery_check(), 120)
            except (asyncio.TimeoutError, TimeoutError):
                problems = ["the exchange did not finish within 120 s"]
            self.check("delivery", not problems,
                       "; ".join(problems[:6]) if problems else
                       f"{self.stats['final_clients']} clients on {len(self.live_nodes())} nodes: every message "
                       f"once, offer and ICE once to their target")
        else:
            self.check("delivery", False, "no node alive")
        await self.check_crashes()
        late = [c for c in self.crashes if c["phase"] in ("settle", "delivery", "checks")]
        if late:
            self.check("no-crash (late)", False, f"{len(late)} crash(es) after the churn")
        return churn_end

    def result(self, churn_end):
        return {
            "started": self.started_at,
            "commit": self.commit,
            "binary": str(self.args.binary),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self.args).items()},
            "nodes": [{"node": n.node_id, "mode": n.mode, "incarnations": n.incarnation + 1,
                       "alive": n.alive()} for n in self.nodes],
            "churn_seconds": round(churn_end, 1),
            "ok": all(c["ok"] for c in self.checks),
            "checks": self.checks,
            "stats": dict(self.stats),
            "refusals": dict(self.errors),
            "crashes": self.crashes,
            "redis_restarts": self.redis_restarts,
            "events": self.events,
            "samples": self.samples,
            "log_dir": str(self.log_dir),
        }


def room_kind(room):
    """Which traffic made a room: the churn's pool, an attack, or a socket id (a socket's own room)."""
    for prefix, kind in (("soak-", "churn rooms"), ("jr-", "join-reconnect rooms"), ("ja-", "join-abort rooms"),
                         ("jlc-", "join-leave-close rooms"), ("final-", "final-exchange rooms")):
        if room.startswith(prefix):
            return kind
    return "socket-id rooms" if re.fullmatch(r"[A-Za-z0-9_-]{20}", room) else "other"


def summary_table(result):
    lines = []
    samples = result["samples"]
    lines.append(f"soak {result['started']} commit {result['commit']} binary {result['binary']}")
    lines.append(f"churn {result['churn_seconds']}s, stats: " +
                 ", ".join(f"{k}={v}" for k, v in sorted(result["stats"].items())))
    if result["refusals"]:
        lines.append("refusals seen by clients: " + ", ".join(f"{k}={v}" for k, v in sorted(result["refusals"].items())))
    lines.append("")
    lines.append(f"{'node':<5} {'mode':<9} {'runs':>4} {'RSS start':>10} {'RSS peak':>9} {'RSS end':>8} "
                 f"{'sessions max':>12} {'rooms max':>9} {'sessions end':>12} {'rooms end':>9}")
    for n in result["nodes"]:
        mine = [s for s in samples if s["node"] == n["node"]]
        rss = [s["rss_kb"] for s in mine if s["rss_kb"]]
        sess = [s["gauges"].get("signal_sessions", 0) for s in mine]
        rooms = [s["gauges"].get("signal_rooms", 0) for s in mine]
        end = mine[-1]["gauges"] if mine else {}

        def mb(kb):
            return f"{kb / 1024:.1f}MB" if kb else "-"
        lines.append(f"{n['node']:<5} {n['mode']:<9} {n['incarnations']:>4} {mb(rss[0] if rss else 0):>10} "
                     f"{mb(max(rss) if rss else 0):>9} {mb(rss[-1] if rss else 0):>8} {int(max(sess, default=0)):>12} "
                     f"{int(max(rooms, default=0)):>9} {str(int(end.get('signal_sessions', -1))):>12} "
                     f"{str(int(end.get('signal_rooms', -1))):>9}")
    lines.append("")
    width = max(len(c["name"]) for c in result["checks"]) if result["checks"] else 10
    for c in result["checks"]:
        mark = "skip" if c.get("skipped") else ("PASS" if c["ok"] else "FAIL")
        lines.append(f"{mark:<4}  {c['name']:<{width}}  {c['detail']}")
    lines.append("")
    lines.append("RESULT: " + ("PASS" if result["ok"] else "FAIL") + f" (node logs in {result['log_dir']})")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--duration", type=float, default=1800, help="seconds of churn (default 1800)")
    p.add_argument("--binary", type=Path, default=None,
                   help="signal-node binary (default $SIGNAL_NODE_BIN, else .build/release, else .build/debug)")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--redis-mode", choices=["mixed", "pattern", "per-room"], default="mixed",
                   help="mixed (default): per-room, pattern, per-room, ...")
    p.add_argument("--redis-prefix", default="socket.io")
    p.add_argument("--clients", type=int, default=24, help="concurrent churn clients (default 24)")
    p.add_argument("--client-addresses", type=int, default=64,
                   help="loopback source addresses the churn clients spread over (127.0.1.1..N, at most 254; "
                        "attacks come from 127.0.2.1); 0: everything from 127.0.0.1 (default 64)")
    p.add_argument("--rooms", type=int, default=6, help="rooms in the churn pool (default 6)")
    p.add_argument("--attacks", default=",".join(ALL_ATTACKS),
                   help=f"comma-separated, from {','.join(ALL_ATTACKS)} (default all; '' for none)")
    p.add_argument("--attack-interval", type=float, default=20, help="seconds between attack rounds (default 20)")
    p.add_argument("--attack-count", type=int, default=3, help="of each raw attack per round (default 3)")
    p.add_argument("--flood-size", type=int, default=300, help="handshakes per flood (default 300)")
    p.add_argument("--redis-restarts", type=int, default=None,
                   help="Redis restarts during the churn (default 2 from 600 s on, else 1)")
    p.add_argument("--redis-down", type=float, default=3, help="seconds Redis stays down (default 3)")
    p.add_argument("--reconnect-close-delay", type=float, default=1.0,
                   help="seconds between the join-reconnect attack's joins and its close packet (default 1)")
    p.add_argument("--ping-interval", type=int, default=5000, help="nodes' --ping-interval, ms (default 5000)")
    p.add_argument("--ping-timeout", type=int, default=5000, help="nodes' --ping-timeout, ms (default 5000)")
    p.add_argument("--node-timeout", type=int, default=5000, help="nodes' --node-timeout, ms (default 5000)")
    p.add_argument("--node-arg", action="append", default=[],
                   help="extra flag for every node (repeat; e.g. --node-arg=--max-connections --node-arg=500)")
    p.add_argument("--node-log-level", default="warning")
    p.add_argument("--sample-interval", type=float, default=None, help="seconds (default 5, 2 below 300 s)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds excluded from the RSS baseline (default 25%% of the duration, at most 300)")
    p.add_argument("--rss-tolerance", type=float, default=0.10, help="allowed RSS growth (default 0.10)")
    p.add_argument("--rss-slack-mb", type=float, default=3.0,
                   help="growth below this many MB passes whatever the ratio (allocator noise; default 3)")
    p.add_argument("--settle", type=float, default=None,
                   help="least seconds between the last client and the checks (default 2 × (ping interval + "
                        "timeout))")
    p.add_argument("--settle-max", type=float, default=None,
                   help="most seconds to wait for rooms/sessions/subscriptions/presence to reach zero "
                        "(default settle + 60)")
    p.add_argument("--no-respawn", dest="respawn", action="store_false",
                   help="leave a crashed node dead (default: start it again so the churn goes on)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="write the result here")
    p.add_argument("--log-dir", default=None, help="node logs (default: a new temp directory)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    args.binary = args.binary or default_binary()
    args.attacks = [a for a in (x.strip() for x in args.attacks.split(",")) if a]
    unknown = set(args.attacks) - set(ALL_ATTACKS)
    if unknown:
        p.error(f"unknown attacks: {sorted(unknown)}")
    if args.redis_restarts is None:
        args.redis_restarts = 2 if args.duration >= 600 else 1
    if args.sample_interval is None:
        args.sample_interval = 5.0 if args.duration >= 300 else 2.0
    if args.warmup is None:
        args.warmup = min(300.0, 0.25 * args.duration)
    if args.settle is None:
        args.settle = 2 * (args.ping_interval + args.ping_timeout) / 1000
    if args.settle_max is None:
        args.settle_max = args.settle + 60
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--show":  # print the summary of a saved result again
        result = json.loads(Path(argv[1]).read_text())
        print(summary_table(result))
        return 0 if result["ok"] else 1
    args = parse_args(argv)
    if not args.binary.exists():
        print(f"soak: signal-node binary not found at {args.binary} (swift build, or --binary)", file=sys.stderr)
        return 2
    if not shutil.which(os.environ.get("REDIS_SERVER_BIN", "redis-server")):
        print("soak: redis-server not found", file=sys.stderr)
        return 2
    for name in ("socketio", "socketio.client", "engineio", "engineio.client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the clients' own noise about dropped connections
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore", ResourceWarning)
    soak = Soak(args)
    soak.started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    soak.commit = git_commit()  # of the checkout, at the start (the binary's sources are the user's business)
    log(f"seed {args.seed}, binary {args.binary}, commit {soak.commit}")
    try:
        soak.start_cluster()
    except RuntimeError as e:
        print(f"soak: {e}", file=sys.stderr)
        soak.stop_cluster()
        return 2

    def quiet(loop, context):
        soak.stats["unhandled_async_errors"] += 1
        if args.verbose:
            log(f"asyncio: {context.get('message')} {context.get('exception')!r}")

    loop = asyncio.new_event_loop()
    loop.set_exception_handler(quiet)
    try:
        churn_end = loop.run_until_complete(soak.run())
    except KeyboardInterrupt:
        log("interrupted")
        soak.stop_cluster()
        return 130
    finally:
        soak.stop_cluster()
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception:
            pass
        loop.close()
    result = soak.result(churn_end)
    print()
    print(summary_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
        log(f"result written to {args.json}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
