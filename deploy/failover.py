#!/usr/bin/env python3
"""Failover test of a local signal-node cluster: Redis, three nodes, and HAProxy with sticky sessions.

It starts its own cluster on free loopback ports (the same HAProxy config as docker-compose,
deploy/haproxy/haproxy.cfg), then:

1. connects --clients python-socketio clients through HAProxy (mixed transports by default: polling,
   websocket, polling upgraded to websocket), reads which node each one landed on from HAProxy's SERVERID
   cookie, and puts them in --rooms rooms that each span several nodes. Every client re-joins its rooms
   whenever it reconnects, as a real client would;
2. kills one node with SIGKILL and measures
   - user_left: until every surviving peer has received user_left for each lost peer of its rooms
     (the other nodes notice the dead node by its missing heartbeats, --node-timeout);
   - rejoin: until every lost client is connected again through HAProxy, on another node, has re-joined
     its rooms, and every surviving peer has seen its user_joined;
   - that the clients of the other nodes stayed connected;
3. restarts Redis (stop, --redis-down seconds, start) and measures until cross-node delivery works again
   (probe messages between clients on every pair of surviving nodes) and /readyz is 200 on every node;
   no client may be disconnected by the outage;
4. checks that a message in every room reaches every member, and that nobody got a user_left for a peer
   that is still there.

With --recovery-window N (connection state recovery, passed to the nodes), half of the clients (--recoverable)
are instead small Socket.IO v5 clients over a websocket that recover like socket.io-client 4.8.1 (pid and last
offset kept, the same default reconnection backoff, `40{"pid","offset"}` on reconnecting; they join their rooms
once). From the kill on, a member on a surviving node sends numbered chat messages to each room of a
recoverable client of the killed node until they are back; the report gives, per such client, whether it
recovered, when (from the kill to the recovered CONNECT answer), and the messages it missed, got twice or out of
order, then p50/p95/max and totals (check `recovery`, which fails when a recovered client missed or duplicated
anything), and checks that no peer got user_left for a recovered client (`no_user_left_recovered`). The
python-socketio clients do not implement recovery: they come back as new sockets, and their old ones end (one
user_left) when the window closes, so the user_left bound grows by the window. With N = 0 the recoverable
clients get new sessions and re-join: the same figures with recovery off.

It prints a short report and exits 1 when a check fails or a bound is missed (2 when the cluster could not
be set up). --json writes the figures for scripts (Tests/integration/test_deploy.py).

Needs: redis-server and haproxy on PATH (deploy/run-local.sh installs them), the Python packages of
Tests/integration/requirements.txt, and a signal-node binary: --bin, else $SIGNAL_NODE_BIN, else
.build/release/signal-node, else .build/debug/signal-node.

Example: deploy/failover.py --clients 300 --rooms 60
         deploy/failover.py --clients 90 --rooms 30 --recovery-window 30 --node-timeout 3000
"""

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import socketio

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
HAPROXY_CFG = DEPLOY / "haproxy" / "haproxy.cfg"
NODES = ("node1", "node2", "node3")  # the servers of haproxy.cfg (cookie values too)
TRANSPORTS = {
    "polling": ["polling"],
    "websocket": ["websocket"],
    "default": ["polling", "websocket"],  # what browsers do: polling, then the upgrade
}


def now():
    return time.monotonic()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class SetupError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# The local cluster: processes we start, and stop by PID
# ---------------------------------------------------------------------------------------------------

class Cluster:
    def __init__(self, binary, run_dir, node_args, log=print, redis_persist=False, haproxy_cfg=HAPROXY_CFG):
        self.binary = binary
        self.haproxy_cfg = haproxy_cfg
        self.redis_persist = redis_persist
        self.run_dir = Path(run_dir)
        self.node_args = list(node_args)
        self.log = log
        self.redis_port = free_port()
        self.lb_port = free_port()
        self.node_ports = {name: free_port() for name in NODES}
        self.procs = {}  # name -> Popen

    @property
    def url(self):
        return f"http://127.0.0.1:{self.lb_port}"

    def node_url(self, name):
        return f"http://127.0.0.1:{self.node_ports[name]}"

    def _spawn(self, name, cmd, env=None):
        logfile = open(self.run_dir / f"{name}.log", "ab")
        logfile.write(f"\n==== {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
        logfile.flush()
        proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=str(REPO), start_new_session=True)
        logfile.close()
        self.procs[name] = proc
        return proc

    def _wait(self, name, ready, timeout=30):
        deadline = now() + timeout
        proc = self.procs[name]
        while now() < deadline:
            if proc.poll() is not None:
                raise SetupError(f"{name} exited with code {proc.returncode} during startup "
                                 f"(log: {self.run_dir / (name + '.log')})")
            if ready():
                return
            time.sleep(0.05)
        raise SetupError(f"{name} not ready within {timeout} s (log: {self.run_dir / (name + '.log')})")

    def start_redis(self):
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.redis_persist
                       else ["--appendonly", "no"])
        self._spawn("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                              "--dir", str(self.run_dir), "--save", "", *persistence])
        self._wait("redis", lambda: port_open(self.redis_port))

    def stop_redis(self):
        self.stop("redis")

    def start_node(self, name):
        self._spawn(name, [str(self.binary), "--host", "127.0.0.1", "--port", str(self.node_ports[name]),
                           "--redis", f"redis://127.0.0.1:{self.redis_port}", "--node-id", name,
                           *self.node_args])
        self._wait(name, lambda: http_ok(self.node_url(name) + "/healthz"))

    def start_haproxy(self):
        env = dict(os.environ, SIGNAL_LB_BIND=f"127.0.0.1:{self.lb_port}",
                   **{f"SIGNAL_NODE{i}": f"127.0.0.1:{self.node_ports[n]}" for i, n in enumerate(NODES, 1)})
        self._spawn("haproxy", ["haproxy", "-db", "-f", str(self.haproxy_cfg)], env=env)
        self._wait("haproxy", lambda: http_ok(self.url + "/healthz"))

    def start(self):
        self.start_redis()
        for name in NODES:
            self.start_node(name)
        self.start_haproxy()
        # Let HAProxy's checks (inter 1s, rise 2) see every node up before clients arrive.
        time.sleep(2.5)

    def stop(self, name, timeout=5):
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def stop_all(self):
        for name in reversed(list(self.procs)):
            self.stop(name)

    def dead(self):
        """Processes that exited although we did not stop them."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}


def http_ok(url):
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------------

def cookie_jar_session():
    # aiohttp's default cookie jar ignores cookies from an IP address host (we connect to 127.0.0.1), and
    # the HAProxy SERVERID cookie is what keeps a polling session on its node: accept them. A new session
    # (and jar) per connection, as python-engineio does by default.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


class Peer:
    """One python-socketio client that re-joins its rooms on every (re)connect and records what it gets."""

    def __init__(self, index, url, transport):
        self.index = index
        self.name = f"p{index:03d}"
        self.url = url
        self.transport = transport
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_attempts=0,
                                        http_session=cookie_jar_session, request_timeout=10)
        self.rooms = []
        self.connects = []     # (time, sid, node)
        self.disconnects = []  # (time, reason)
        self.joined = {}       # (room, sid) -> time our own join was acknowledged
        self.join_errors = []
        self.seen_joined = {}  # (room, socketId) -> first time a user_joined arrived
        self.seen_left = {}    # (room, socketId) -> first time a user_left arrived
        self.left_log = []     # (time, room, socketId)
        self.messages = []     # (time, payload)
        self.roster = {}       # room -> socket ids listed as peers in our last join ack
        self.on_message = None
        self._tasks = set()
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("user_joined", self._on_user_joined)
        self.sio.on("user_left", self._on_user_left)
        self.sio.on("message", self._on_message)

    # --- state
    @property
    def sid(self):
        return self.connects[-1][1] if self.connects else None

    @property
    def node(self):
        return self.connects[-1][2] if self.connects else None

    @property
    def connected(self):
        # sio.connected turns true only when connect() returns, after the connect handler: the namespace
        # entry is there as soon as the server accepted it.
        return "/" in self.sio.namespaces and self.sio.eio.state == "connected"

    def _cookie_node(self):
        http = getattr(self.sio.eio, "http", None)
        if http is None:
            return None
        for cookie in http.cookie_jar:
            if cookie.key == "SERVERID":
                return cookie.value
        return None

    # --- events
    async def _on_connect(self):
        self.connects.append((now(), self.sio.get_sid("/"), self._cookie_node()))
        if self.rooms:  # a reconnect: join our rooms again (not from inside the handler: it would wait
            task = asyncio.create_task(self.join_rooms())  # for an ack the read loop cannot deliver)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _on_disconnect(self, reason=None):
        self.disconnects.append((now(), str(reason)))

    # With --recovery-window the server appends the event's offset as a last argument (python-socketio hands it
    # to the handlers as an extra argument): *_ takes it.
    async def _on_user_joined(self, data, *_):
        if isinstance(data, dict):
            self.seen_joined.setdefault((data.get("roomName"), data.get("socketId")), now())

    async def _on_user_left(self, data, *_):
        if isinstance(data, dict):
            key = (data.get("roomName"), data.get("socketId"))
            self.seen_left.setdefault(key, now())
            self.left_log.append((now(), *key))

    async def _on_message(self, data, *_):
        t = now()
        self.messages.append((t, data))
        if self.on_message is not None:
            self.on_message(self, t, data)

    # --- actions
    async def connect(self, timeout=15):
        await asyncio.wait_for(self.sio.connect(self.url, transports=TRANSPORTS[self.transport],
                                                wait_timeout=timeout), timeout + 5)

    async def join(self, room, timeout=10):
        sid = self.sid
        answer = await self.sio.call("join_room", {"roomName": room, "personName": self.name}, timeout=timeout)
        if isinstance(answer, dict) and "error" in answer:
            self.join_errors.append((room, answer["error"]))
            raise RuntimeError(f"{self.name}: join_room {room} refused: {answer['error']}")
        if isinstance(answer, dict):
            self.roster[room] = {p.get("socketId") for p in answer.get("peers", []) if isinstance(p, dict)}
        self.joined[(room, sid)] = now()

    async def join_rooms(self):
        for room in list(self.rooms):
            for attempt in range(3):
                if not self.connected:
                    return  # the next connect joins again
                try:
                    await self.join(room)
                    break
                except Exception as e:  # noqa: BLE001 - recorded, retried
                    self.join_errors.append((room, repr(e)))
                    await asyncio.sleep(0.2 * (attempt + 1))

    async def send(self, room, content):
        await self.sio.emit("message", {"roomName": room, "personName": self.name, "content": content})

    async def close(self):
        try:
            await asyncio.wait_for(self.sio.disconnect(), 3)
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
        for task in list(self._tasks):
            task.cancel()
        http = getattr(self.sio.eio, "http", None)  # left open by a connect that failed
        if http is not None and not http.closed:
            await http.close()


class Recoverable:
    """A Socket.IO v5 client over one aiohttp websocket through HAProxy that recovers its connection state the way
    socket.io-client 4.8.1 does: it keeps the `pid` of the CONNECT answer and the last offset seen (the last
    argument of each event, when it is a string), answers pings, and when its connection is lost it reconnects
    with the official client's default backoff (reconnectionDelay 1000 ms, randomizationFactor 0.5, doubling,
    reconnectionDelayMax 5000 ms) sending `40{"pid":…,"offset":…}`. `recovered` = the answer's pid is the old one.
    It joins its rooms once; only a connect that was not recovered joins them again (a recovered socket keeps its
    rooms). Same interface as Peer for the checks: rooms, connects, joined, seen_joined/left, messages, send."""

    BACKOFF_MIN, BACKOFF_MAX, BACKOFF_FACTOR, BACKOFF_JITTER = 1.0, 5.0, 2, 0.5
    CONNECT_TIMEOUT = 20.0  # the Manager's `timeout`

    def __init__(self, index, url):
        self.index = index
        self.name = f"r{index:03d}"
        self.url = url.replace("http://", "ws://", 1) + "/socket.io/?EIO=4&transport=websocket"
        self.transport = "recoverable"
        self.rooms = []
        self.connects = []     # (time, sid, node, recovered)
        self.disconnects = []  # (time, reason)
        self.failed_attempts = []  # (time, error)
        self.joined = {}
        self.join_errors = []
        self.seen_joined = {}
        self.seen_left = {}
        self.left_log = []
        self.messages = []
        self.roster = {}
        self.on_message = None
        self.pid = None
        self.offset = None
        self._session = None
        self._ws = None
        self._ready = False
        self._closing = False
        self._acks = {}
        self._next_ack = 0
        self._first = None
        self._task = None
        self._tasks = set()
        self._ping_deadline = 45.0

    @property
    def sid(self):
        return self.connects[-1][1] if self.connects else None

    @property
    def node(self):
        return self.connects[-1][2] if self.connects else None

    @property
    def connected(self):
        return self._ready and self._ws is not None and not self._ws.closed

    @classmethod
    def backoff(cls, attempts):
        """socket.io-client's Backoff.duration() with the Manager's defaults: 1 s ± 50%, doubling, at most 5 s."""
        ms = cls.BACKOFF_MIN * 1000 * cls.BACKOFF_FACTOR ** attempts
        rand = random.random()
        deviation = int(rand * cls.BACKOFF_JITTER * ms)
        ms = ms - deviation if (int(rand * 10) & 1) == 0 else ms + deviation
        return int(min(ms, cls.BACKOFF_MAX * 1000)) / 1000

    # --- the connection
    async def connect(self, timeout=15):
        self._session = cookie_jar_session()  # kept over reconnects, as a browser keeps its cookies
        self._first = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(asyncio.shield(self._first), timeout)

    async def _run(self):
        attempts = 0
        while not self._closing:
            try:
                await asyncio.wait_for(self._open(), self.CONNECT_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a failed attempt: back off and try again
                await self._drop()
                if not self._first.done():
                    self._first.set_exception(e)
                    return
                self.failed_attempts.append((now(), repr(e)))
                delay = self.backoff(attempts)
                attempts += 1
                await asyncio.sleep(delay)
                continue
            if not self._first.done():
                self._first.set_result(True)
            reason = await self._read_loop()
            await self._drop()
            if self._closing:
                return
            self.disconnects.append((now(), reason))
            if reason == "io server disconnect":  # the official client does not reconnect then either
                return
            attempts = 0  # Manager.onclose: backoff.reset(), then reconnect()
            delay = self.backoff(attempts)
            attempts += 1
            await asyncio.sleep(delay)

    async def _drop(self):
        self._ready = False
        ws, self._ws = self._ws, None
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))
        self._acks.clear()
        if ws is not None and not ws.closed:
            try:
                await asyncio.wait_for(ws.close(), 2)
            except Exception:  # noqa: BLE001
                pass

    async def _open(self):
        ws = await self._session.ws_connect(self.url, max_msg_size=0)
        self._ws = ws
        response = getattr(ws, "_response", None)
        node = response.headers.get("X-Signal-Node") if response is not None else None
        if node is None:
            node = next((c.value for c in self._session.cookie_jar if c.key == "SERVERID"), None)
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT or not msg.data.startswith("0"):
            raise ConnectionError(f"no Engine.IO open packet: {msg.type} {str(msg.data)[:80]}")
        handshake = json.loads(msg.data[1:])
        self._ping_deadline = (handshake.get("pingInterval", 25000) + handshake.get("pingTimeout", 20000)) / 1000
        auth = None
        if self.pid is not None:  # Socket._sendConnectPacket: {pid, offset} once a pid is known
            auth = {"pid": self.pid}
            if self.offset is not None:
                auth["offset"] = self.offset
        await ws.send_str("40" + (json.dumps(auth) if auth else ""))
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"connection ended before the CONNECT answer: {msg.type}")
            text = msg.data
            if text == "2":
                await ws.send_str("3")
            elif text.startswith("40"):
                data = json.loads(text[2:]) if len(text) > 2 else {}
                break
            elif text.startswith("44"):
                raise ConnectionError(f"connect_error {text[2:200]}")
        pid = data.get("pid")
        recovered = bool(pid) and self.pid is not None and pid == self.pid
        reconnect = bool(self.connects)
        self.pid = pid
        self._ready = True
        self.connects.append((now(), data.get("sid"), node, recovered))
        if reconnect and self.rooms and not recovered:  # a new session: join again, as an app would
            task = asyncio.create_task(self.join_rooms())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _read_loop(self):
        ws = self._ws
        while True:
            try:
                msg = await ws.receive(timeout=self._ping_deadline)
            except asyncio.TimeoutError:
                return "ping timeout"
            if msg.type != aiohttp.WSMsgType.TEXT:
                return "transport close"
            text = msg.data
            if text == "2":
                try:
                    await ws.send_str("3")
                except Exception:  # noqa: BLE001
                    return "transport close"
            elif text == "1":
                return "transport close"
            elif text.startswith("4"):
                if text.startswith("41"):
                    return "io server disconnect"
                self._packet(text[1:])

    def _packet(self, text):
        kind, i = text[0], 1
        if i < len(text) and text[i] == "/":  # a namespace (we only use the main one)
            i = text.index(",", i) + 1 if "," in text[i:] else len(text)
        j = i
        while j < len(text) and text[j].isdigit():
            j += 1
        ack_id = int(text[i:j]) if j > i else None
        try:
            args = json.loads(text[j:]) if j < len(text) else []
        except ValueError:
            return
        if kind == "3" and ack_id is not None:
            fut = self._acks.pop(ack_id, None)
            if fut is not None and not fut.done():
                fut.set_result(args[0] if args else None)
        elif kind == "2" and isinstance(args, list) and args:
            if self.pid is not None and len(args) > 1 and isinstance(args[-1], str):
                self.offset = args[-1]  # Socket.onevent: the last string argument, once a pid is known
            self._event(args[0], args[1] if len(args) > 1 else None)

    def _event(self, name, data):
        t = now()
        if not isinstance(data, dict):
            return
        if name == "user_joined":
            self.seen_joined.setdefault((data.get("roomName"), data.get("socketId")), t)
        elif name == "user_left":
            key = (data.get("roomName"), data.get("socketId"))
            self.seen_left.setdefault(key, t)
            self.left_log.append((t, *key))
        elif name == "message":
            self.messages.append((t, data))
            if self.on_message is not None:
                self.on_message(self, t, data)

    async def _emit(self, payload):
        if not self.connected:
            raise ConnectionError("not connected")
        await self._ws.send_str("42" + payload)

    # --- actions (as Peer's)
    async def join(self, room, timeout=10):
        sid = self.sid
        self._next_ack += 1
        ack_id = self._next_ack
        fut = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = fut
        await self._emit(f"{ack_id}" + json.dumps(["join_room", {"roomName": room, "personName": self.name}]))
        answer = await asyncio.wait_for(fut, timeout)
        if isinstance(answer, dict) and "error" in answer:
            self.join_errors.append((room, answer["error"]))
            raise RuntimeError(f"{self.name}: join_room {room} refused: {answer['error']}")
        if isinstance(answer, dict):
            self.roster[room] = {p.get("socketId") for p in answer.get("peers", []) if isinstance(p, dict)}
        self.joined[(room, sid)] = now()

    join_rooms = Peer.join_rooms

    async def send(self, room, content):
        await self._emit(json.dumps(["message", {"roomName": room, "personName": self.name, "content": content}]))

    async def close(self):
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            try:
                await asyncio.wait_for(self._ws.send_str("41"), 1)
            except Exception:  # noqa: BLE001
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except BaseException:  # noqa: BLE001
                pass
        for task in list(self._tasks):
            task.cancel()
        await self._drop()
        if self._session is not None and not self._session.closed:
            await self._session.close()


async def gather_limited(coros, limit):
    sem = asyncio.Semaphore(limit)

    async def run(c):
        async with sem:
            return await c

    return await asyncio.gather(*(run(c) for c in coros), return_exceptions=True)


async def wait_until(predicate, timeout, step=0.05):
    deadline = now() + timeout
    while now() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


def pct(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def fmt(seconds):
    return "-" if seconds is None else f"{seconds:.2f} s"


# ---------------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------------

class Report:
    def __init__(self):
        self.checks = {}  # name -> dict(passed, summary, ...)
        self.info = {}

    def check(self, name, passed, summary, **figures):
        self.checks[name] = dict(passed=bool(passed), summary=summary, **figures)
        print(f"  [{'PASS' if passed else 'FAIL'}] {name}: {summary}", flush=True)

    @property
    def passed(self):
        return all(c["passed"] for c in self.checks.values())


def assign_rooms(peers, rooms):
    """Interleave the peers by node (n1, n2, n3, n1, ...), then cut that order into `rooms` consecutive
    chunks: every room of two or more members spans several nodes."""
    by_node = {}
    for p in peers:
        by_node.setdefault(p.node, []).append(p)
    order = []
    queues = [list(v) for _, v in sorted(by_node.items(), key=lambda kv: str(kv[0]))]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    names = [f"room-{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(rooms)]
    members = {name: [] for name in names}
    for i, p in enumerate(order):
        room = names[i * rooms // len(order)]
        p.rooms.append(room)
        members[room].append(p)
    return members


async def run(args, cluster, report):
    transports = (["polling", "websocket", "default"] if args.transports == "mixed" else [args.transports])
    # With --recovery-window, every other client (up to --recoverable) is a Recoverable one.
    recoverable = set(range(1, args.clients, 2)[:args.recoverable]) if args.recovery_window is not None else set()
    peers = [Recoverable(i, cluster.url) if i in recoverable else
             Peer(i, cluster.url, transports[i % len(transports)]) for i in range(args.clients)]
    try:
        await scenario(args, cluster, report, peers)
    finally:
        await gather_limited([p.close() for p in peers], args.concurrency)


async def scenario(args, cluster, report, peers):
    t_start = now()

    # 1. connect and spread over the nodes ----------------------------------------------------------
    results = await gather_limited([p.connect() for p in peers], args.concurrency)
    failed = [(p.name, r) for p, r in zip(peers, results) if isinstance(r, BaseException)]
    if failed:
        raise SetupError(f"{len(failed)} of {len(peers)} clients could not connect through HAProxy, "
                         f"e.g. {failed[0][0]}: {failed[0][1]!r}")
    unknown = [p.name for p in peers if p.node not in NODES]
    if unknown:
        raise SetupError(f"no SERVERID cookie from HAProxy for {len(unknown)} clients (e.g. {unknown[0]})")
    spread = {n: sum(1 for p in peers if p.node == n) for n in NODES}
    report.info["connect_s"] = now() - t_start
    report.info["spread"] = spread
    print(f"  connected {len(peers)} clients through HAProxy in {now() - t_start:.1f} s: "
          + ", ".join(f"{n} {c}" for n, c in spread.items()), flush=True)
    if args.kill not in NODES or spread.get(args.kill, 0) == 0 or sum(1 for c in spread.values() if c) < 2:
        raise SetupError(f"clients not spread over the nodes ({spread}); cannot test failover of {args.kill}")

    members = assign_rooms(peers, args.rooms)
    spans = [len({p.node for p in m}) for m in members.values() if m]
    results = await gather_limited([p.join_rooms() for p in peers], args.concurrency)
    not_joined = [p.name for p in peers for r in p.rooms if (r, p.sid) not in p.joined]
    if not_joined:
        raise SetupError(f"{len(not_joined)} joins failed, e.g. {not_joined[0]}: "
                         f"{next(p.join_errors for p in peers if p.join_errors)}")

    def roster_complete():
        for room, ms in members.items():
            for p in ms:
                known = p.roster.get(room, set()) | {sid for (r, sid) in p.seen_joined if r == room}
                if any(q is not p and q.sid not in known for q in ms):
                    return False
        return True

    ok = await wait_until(roster_complete, args.settle)
    report.check("setup", ok,
                 f"{len(members)} rooms of {min(len(m) for m in members.values())}-"
                 f"{max(len(m) for m in members.values())} clients spanning {min(spans)}-{max(spans)} nodes; "
                 + ("every member knows every other one" if ok else
                    f"some members did not learn of each other within {args.settle} s"),
                 spread=spread)
    if not ok:
        return

    # 2. kill a node ----------------------------------------------------------------------------------
    lost = [p for p in peers if p.node == args.kill]
    survivors = [p for p in peers if p.node != args.kill]
    old_sid = {p: p.sid for p in lost}
    lost_sids = set(old_sid.values())
    disconnects_before = {p: len(p.disconnects) for p in survivors}
    # With recovery on, the Recoverable clients of the killed node are to come back as the same socket: no
    # user_left, no re-join. The others (python-socketio does not implement recovery) come back as new sockets,
    # and their old ones end when the window closes.
    expect_recovery = bool(args.recovery_window)
    recovering = [p for p in lost if isinstance(p, Recoverable)]
    classic = [p for p in lost if not (expect_recovery and isinstance(p, Recoverable))]
    expected_left = [(s, room, old_sid[l]) for room, ms in members.items()
                     for s in ms if s in survivors for l in ms if l in classic]
    max_user_left = args.max_user_left
    if expect_recovery:
        # A socket of a dead node that is not recovered: its record outlives the node by about a window (plus
        # up to two renewals, every window/4 at most 30 s), and the reaper looks again every 3 node timeouts.
        node_timeout = (args.node_timeout or 10000) / 1000
        max_user_left += args.recovery_window + 2 * min(args.recovery_window / 4, 30) + 3 * node_timeout
    print(f"  kill -{args.kill_signal} {args.kill} (pid {cluster.procs[args.kill].pid}, {len(lost)} clients"
          + (f", {len(recovering)} recoverable" if recovering else "") + "); "
          f"{len(expected_left)} user_left expected by {len({s for s, _, _ in expected_left})} surviving peers",
          flush=True)

    # Chat during the gap: in every room of a recoverable client of the killed node, a member on a surviving
    # node sends numbered messages from the kill on, until the lost clients are back (and a second more).
    chat_marker = uuid.uuid4().hex[:6]
    chat_rooms = {}
    for room, ms in members.items():
        if any(p in recovering for p in ms):
            sender = next((q for q in ms if q in survivors), None)
            if sender is not None:
                chat_rooms[room] = sender
    chat_sent = {room: [] for room in chat_rooms}
    stop_chat = asyncio.Event()

    async def chat(room, sender):
        seq = 0
        while not stop_chat.is_set():
            seq += 1
            try:
                await sender.send(room, f"chat:{chat_marker}:{room}:{seq}")
                chat_sent[room].append(seq)
            except Exception:  # noqa: BLE001 - not sent: not expected either
                pass
            await asyncio.sleep(args.chat_interval)

    t_kill = now()
    victim = cluster.procs[args.kill]
    os.kill(victim.pid, getattr(signal, "SIG" + args.kill_signal))
    chat_tasks = [asyncio.create_task(chat(room, sender)) for room, sender in chat_rooms.items()]
    # SIGTERM makes the node drain, which needs our clients to run: wait without blocking the event loop.
    if not await wait_until(lambda: victim.poll() is not None, 30, step=0.05):
        victim.kill()
        raise SetupError(f"{args.kill} did not exit within 30 s of SIG{args.kill_signal}")
    report.info["victim_exit_s"] = now() - t_kill

    def back_connect(p):
        """The first connect of p after the kill: (time, sid, node[, recovered])."""
        return next((c for c in p.connects if c[0] > t_kill), None)

    def chat_seqs(p, room):
        prefix = f"chat:{chat_marker}:{room}:"
        return [int(d["content"][len(prefix):]) for _, d in p.messages
                if isinstance(d, dict) and isinstance(d.get("content"), str) and d["content"].startswith(prefix)]

    if chat_tasks:
        await wait_until(lambda: all(back_connect(p) is not None for p in recovering), args.max_recovery + 2,
                         step=0.05)
        await asyncio.sleep(1.0)
        stop_chat.set()
        await asyncio.gather(*chat_tasks)

        def chat_done():  # every member still connected has the last message of each of its chat rooms
            return all(not chat_sent[room] or not p.connected or chat_sent[room][-1] in chat_seqs(p, room)
                       for room in chat_rooms for p in members[room])

        await wait_until(chat_done, args.settle)

    def rejoin_time(p):
        """When p was back: connected on another node, joined every room, seen by every surviving peer."""
        after = [c for c in p.connects if c[0] > t_kill]
        if not after:
            return None
        sid = after[-1][1]
        times = []
        for room in p.rooms:
            if (room, sid) not in p.joined:
                return None
            times.append(p.joined[(room, sid)])
            for s in members[room]:
                if s in survivors:
                    seen = s.seen_joined.get((room, sid))
                    if seen is None:
                        return None
                    times.append(seen)
        return max(times) - t_kill

    def user_left_times():
        return [s.seen_left.get((room, sid)) for s, room, sid in expected_left]

    def all_done():
        return (all(t is not None for t in user_left_times())
                and all(rejoin_time(p) is not None for p in classic))

    await wait_until(all_done, max(max_user_left, args.max_rejoin) + 2, step=0.1)

    # rejoin
    back = {p: rejoin_time(p) for p in classic}
    reconnect = [min(c[0] for c in p.connects if c[0] > t_kill) - t_kill
                 for p in classic if any(c[0] > t_kill for c in p.connects)]
    times = [t for t in back.values() if t is not None]
    moved = [p.node for p in classic if p.node != args.kill and p.connects[-1][0] > t_kill]
    landed = {n: moved.count(n) for n in NODES if n != args.kill}
    worst = max(times) if times else None
    ok = len(times) == len(classic) and len(moved) == len(classic) and (
        not classic or (worst is not None and worst <= args.max_rejoin))
    report.check(
        "rejoin", ok,
        f"{len(times)}/{len(classic)} lost clients"
        + (" without recovery" if expect_recovery else "") + " back on another node and seen by their peers; "
        f"reconnected p50 {fmt(pct(reconnect, .5))} max {fmt(max(reconnect) if reconnect else None)}, "
        f"re-joined p50 {fmt(pct(times, .5))} max {fmt(worst)} (bound {args.max_rejoin:g} s); "
        f"now on " + ", ".join(f"{n} {c}" for n, c in landed.items()),
        lost=len(classic), back=len(times), reconnect_p50=pct(reconnect, .5),
        reconnect_max=max(reconnect) if reconnect else None, rejoin_p50=pct(times, .5), rejoin_max=worst,
        bound=args.max_rejoin, landed=landed)

    # recovery: the recoverable clients of the killed node, and the numbered messages sent to their rooms
    recovered_sids = set()
    if recovering:
        rows = []
        for p in recovering:
            c = back_connect(p)
            rec = bool(c and c[3] and c[1] == old_sid[p])
            if rec:
                recovered_sids.add(old_sid[p])
            missed = dup = reordered = sent = 0
            for room in p.rooms:
                if room not in chat_rooms:
                    continue
                got = chat_seqs(p, room)
                sent += len(chat_sent[room])
                missed += len(set(chat_sent[room]) - set(got))
                dup += len(got) - len(set(got))
                reordered += sum(1 for a, b in zip(got, got[1:]) if b < a)
            rows.append(dict(client=p.name, recovered=rec, back_s=(c[0] - t_kill) if c else None,
                             node=c[2] if c else None, attempts_failed=sum(1 for t, _ in p.failed_attempts
                                                                          if t > t_kill),
                             sent=sent, missed=missed, duplicated=dup, reordered=reordered))
        for r in rows:
            print(f"    {r['client']}: {'recovered' if r['recovered'] else 'NOT recovered'} on {r['node']} "
                  f"{fmt(r['back_s'])} after the kill; {r['sent']} messages sent to its rooms: "
                  f"missed {r['missed']}, duplicated {r['duplicated']}, reordered {r['reordered']}", flush=True)
        rec_rows = [r for r in rows if r["recovered"]]
        rec_times = [r["back_s"] for r in rec_rows]
        back_times = [r["back_s"] for r in rows if r["back_s"] is not None]
        totals = {k: sum(r[k] for r in rows) for k in ("sent", "missed", "duplicated", "reordered")}
        rec_totals = {k: sum(r[k] for r in rec_rows) for k in ("sent", "missed", "duplicated", "reordered")}
        # The control: the clients that stayed connected, and the lost python-socketio clients (no recovery).
        def chat_loss(group):
            sent = missed = 0
            for p in group:
                for room in p.rooms:
                    if room in chat_rooms:
                        got = set(chat_seqs(p, room))
                        sent += len(chat_sent[room])
                        missed += len(set(chat_sent[room]) - got)
            return dict(sent=sent, missed=missed)

        survivors_chat = chat_loss([p for p in survivors if any(r in chat_rooms for r in p.rooms)])
        classic_chat = chat_loss([p for p in classic if not isinstance(p, Recoverable)])
        if expect_recovery:
            ok = (len(rec_rows) == len(rows) and rec_totals["missed"] == 0 and rec_totals["duplicated"] == 0
                  and rec_totals["reordered"] == 0 and max(rec_times) <= args.max_recovery)
        else:  # recovery off: a normal new session each, nothing to hold them to but coming back
            ok = not rec_rows and len(back_times) == len(rows)
        report.check(
            "recovery", ok,
            f"{len(rec_rows)}/{len(rows)} recoverable clients of {args.kill} recovered (window "
            f"{args.recovery_window} s), back after the kill p50 {fmt(pct(back_times, .5))} p95 "
            f"{fmt(pct(back_times, .95))} max {fmt(max(back_times) if back_times else None)}"
            + (f" (bound {args.max_recovery:g} s, goal p50 1.5 s)" if expect_recovery else "")
            + f"; of {totals['sent']} messages sent to their rooms in the gap: missed {totals['missed']}, "
            f"duplicated {totals['duplicated']}, reordered {totals['reordered']} (clients that stayed "
            f"connected: missed {survivors_chat['missed']}/{survivors_chat['sent']}; lost python-socketio "
            f"clients, no recovery: missed {classic_chat['missed']}/{classic_chat['sent']})",
            window=args.recovery_window, clients=len(rows), recovered=len(rec_rows),
            back_p50=pct(back_times, .5), back_p95=pct(back_times, .95),
            back_max=max(back_times) if back_times else None,
            recovered_p50=pct(rec_times, .5), recovered_p95=pct(rec_times, .95),
            recovered_max=max(rec_times) if rec_times else None, bound=args.max_recovery,
            sent=totals["sent"], missed=totals["missed"], duplicated=totals["duplicated"],
            reordered=totals["reordered"], recovered_missed=rec_totals["missed"],
            recovered_duplicated=rec_totals["duplicated"], recovered_reordered=rec_totals["reordered"],
            survivors_chat=survivors_chat, python_lost_chat=classic_chat,
            chat_rooms=len(chat_rooms), chat_interval=args.chat_interval, per_client=rows)

    # user_left
    got = [t - t_kill for t in user_left_times() if t is not None]
    worst = max(got) if got else None
    ok = len(got) == len(expected_left) and (not expected_left or (worst is not None and worst <= max_user_left))
    report.check(
        "user_left", ok,
        f"{len(got)}/{len(expected_left)} user_left for the lost peers"
        + (" without recovery" if expect_recovery else "") + " received; "
        f"p50 {fmt(pct(got, .5))} max {fmt(worst)} after the kill (bound {max_user_left:g} s"
        + (", the recovery window included" if expect_recovery else "") + ")",
        expected=len(expected_left), received=len(got), p50=pct(got, .5), max=worst,
        bound=max_user_left)
    if recovering and expect_recovery:
        # The reaper of the dead node has run by now (user_left for the others came from it, after the window).
        told = [(p.name, room, sid) for p in peers for (_, room, sid) in p.left_log if sid in recovered_sids]
        report.check("no_user_left_recovered", not told,
                     f"{len(told)} user_left for the {len(recovered_sids)} recovered clients"
                     + (f" (e.g. {told[:3]})" if told else ""), told=len(told))

    dropped = [p.name for p in survivors if len(p.disconnects) > disconnects_before[p]]
    report.check("survivors_connected", not dropped,
                 f"{len(dropped)} of {len(survivors)} clients of the other nodes were disconnected"
                 + (f" (e.g. {dropped[:5]})" if dropped else ""), dropped=len(dropped))
    if dead := {n: c for n, c in cluster.dead().items() if n != args.kill}:
        raise SetupError(f"processes died: {dead}")

    # 3. restart Redis --------------------------------------------------------------------------------
    alive_nodes = [n for n in NODES if n != args.kill]
    probes = {}
    for node in alive_nodes:
        on_node = [p for p in peers if p.node == node and p.connected]
        on_node.sort(key=lambda p: (p.transport != "websocket", p.index))
        if not on_node:
            raise SetupError(f"no client left on {node} for the Redis probes")
        probes[node] = on_node[0]
    probe_room = f"probe-{uuid.uuid4().hex[:8]}"
    received = {}  # (from node, to node) -> [(recv time, sent time)]
    sent_at = {}   # (node, seq) -> time

    def on_probe(peer, t, data):
        content = data.get("content") if isinstance(data, dict) else None
        if not (isinstance(content, str) and content.startswith("probe:")):
            return
        _, from_node, seq = content.split(":")
        to_node = next(n for n, p in probes.items() if p is peer)
        if from_node != to_node:
            received.setdefault((from_node, to_node), []).append((t, sent_at.get((from_node, int(seq)))))

    for node, p in probes.items():
        p.on_message = on_probe
        p.rooms.append(probe_room)  # re-joined after a reconnect like the others
        await p.join(probe_room)
    pairs = [(a, b) for a in alive_nodes for b in alive_nodes if a != b]
    seq = 0
    stop_probing = asyncio.Event()

    async def probing():
        nonlocal seq
        while not stop_probing.is_set():
            seq += 1
            for node, p in probes.items():
                sent_at[(node, seq)] = now()
                if p.connected:
                    try:
                        await p.send(probe_room, f"probe:{node}:{seq}")
                    except Exception:  # noqa: BLE001 - a probe lost while reconnecting is fine
                        pass
            await asyncio.sleep(args.probe_interval)

    probe_task = asyncio.create_task(probing())
    try:
        ok = await wait_until(lambda: all(received.get(pair) for pair in pairs), args.settle)
        if not ok:
            report.check("redis_restart", False, f"no cross-node delivery before the restart "
                                                 f"(pairs {[p for p in pairs if not received.get(p)]})")
            return
        everyone = [p for p in peers if p.connected]
        disconnects_before = {p: len(p.disconnects) for p in everyone}
        t_down = now()
        cluster.stop_redis()
        await asyncio.sleep(args.redis_down)
        cluster.start_redis()
        t_up = now()
        ready_at = {}

        async def poll_ready(session):
            while len(ready_at) < len(alive_nodes) and now() < t_up + args.max_redis_recovery + 5:
                for n in alive_nodes:
                    if n not in ready_at:
                        try:
                            async with session.get(cluster.node_url(n) + "/readyz") as r:
                                if r.status == 200:
                                    ready_at[n] = now() - t_up
                        except aiohttp.ClientError:
                            pass
                await asyncio.sleep(0.05)

        def recovered(pair):
            for t, sent in received.get(pair, []):
                if sent is not None and sent >= t_up:
                    return t
            return None

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            ready_task = asyncio.create_task(poll_ready(session))
            await wait_until(lambda: all(recovered(p) for p in pairs), args.max_redis_recovery + 5, step=0.05)
            await ready_task
        back_at = {f"{a}->{b}": (recovered((a, b)) - t_up) if recovered((a, b)) else None for a, b in pairs}
        worst = None if None in back_at.values() else max(back_at.values())
        ok = worst is not None and worst <= args.max_redis_recovery
        report.check(
            "redis_restart", ok,
            f"Redis down {t_up - t_down:.1f} s; cross-node delivery back {fmt(worst)} after it restarted "
            f"(bound {args.max_redis_recovery:g} s; " + ", ".join(f"{k} {fmt(v)}" for k, v in back_at.items())
            + "); /readyz 200 after " + ", ".join(f"{n} {fmt(ready_at.get(n))}" for n in alive_nodes),
            down=t_up - t_down, recovery=worst, pairs=back_at, readyz=ready_at, bound=args.max_redis_recovery)
        dropped = [p.name for p in everyone if len(p.disconnects) > disconnects_before[p]]
        report.check("redis_outage_connected", not dropped,
                     f"{len(dropped)} of {len(everyone)} clients disconnected by the Redis outage"
                     + (f" (e.g. {dropped[:5]})" if dropped else ""), dropped=len(dropped))
    finally:
        stop_probing.set()
        await probe_task

    # 4. every room works, and nobody was wrongly told a live peer left ------------------------------
    t_msg = now()
    marker = uuid.uuid4().hex[:8]
    senders = {room: ms[0] for room, ms in members.items() if ms}
    await gather_limited([p.send(room, f"check:{marker}:{room}") for room, p in senders.items()], args.concurrency)

    def delivered(room, p):
        return any(isinstance(d, dict) and d.get("content") == f"check:{marker}:{room}"
                   for t, d in p.messages if t >= t_msg)

    await wait_until(lambda: all(delivered(r, p) for r, ms in members.items() for p in ms), args.settle)
    missing = [(r, p.name) for r, ms in members.items() for p in ms if not delivered(r, p)]
    report.check("rooms_after", not missing,
                 f"a message in each of the {len(members)} rooms reached "
                 f"{sum(len(ms) for ms in members.values()) - len(missing)}/"
                 f"{sum(len(ms) for ms in members.values())} members"
                 + (f" (missing e.g. {missing[:3]})" if missing else ""), missing=len(missing))

    gone = lost_sids - recovered_sids  # the sockets that did end
    wrong = [(p.name, room, sid) for p in peers for (_, room, sid) in p.left_log if sid not in gone]
    report.check("no_spurious_user_left", not wrong,
                 f"{len(wrong)} user_left for peers that are still connected"
                 + (f" (e.g. {wrong[:3]})" if wrong else ""), spurious=len(wrong))

    dead = {n: c for n, c in cluster.dead().items() if n != args.kill}
    report.check("processes_alive", not dead,
                 "Redis, HAProxy and the other nodes still running" if not dead else f"exited: {dead}")


def find_binary(explicit):
    if explicit:
        return Path(explicit)
    if os.environ.get("SIGNAL_NODE_BIN"):
        return Path(os.environ["SIGNAL_NODE_BIN"])
    for kind in ("release", "debug"):
        candidate = REPO / ".build" / kind / "signal-node"
        if candidate.exists():
            return candidate
    return REPO / ".build" / "release" / "signal-node"


def _interrupted(*_):
    raise KeyboardInterrupt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--clients", type=int, default=300, help="clients connected through HAProxy")
    ap.add_argument("--rooms", type=int, default=60, help="rooms the clients are spread over")
    ap.add_argument("--transports", default="mixed", choices=["mixed", *TRANSPORTS],
                    help="client transports; mixed = polling, websocket and upgrade in turn")
    ap.add_argument("--kill", default="node2", choices=NODES, help="the node killed with SIGKILL")
    ap.add_argument("--kill-signal", default="KILL", choices=["KILL", "TERM"],
                    help="KILL: the node dies (user_left comes from the heartbeat timeout); "
                         "TERM: it drains (clients are told to reconnect, user_left on their disconnect)")
    ap.add_argument("--max-user-left", type=float, default=20.0,
                    help="bound (s) from the kill until every surviving peer got user_left for each lost peer")
    ap.add_argument("--max-rejoin", type=float, default=10.0,
                    help="bound (s) from the kill until every lost client is back on another node and re-joined")
    ap.add_argument("--max-redis-recovery", type=float, default=10.0,
                    help="bound (s) from Redis coming back until cross-node delivery works on every node pair")
    ap.add_argument("--redis-down", type=float, default=2.0, help="how long Redis stays down (s)")
    ap.add_argument("--redis-persist", action="store_true",
                    help="Redis keeps its data over the restart (AOF), as a persistent Redis would; "
                         "by default it comes back empty like the docker-compose one")
    ap.add_argument("--recovery-window", type=int, default=None, metavar="N",
                    help="pass --recovery-window N to the nodes and make --recoverable of the clients recover their "
                         "connection state like socket.io-client 4.8.1 (websocket); report their time to recovered "
                         "and the messages sent to their rooms during the gap they missed (with 0: recovery off, "
                         "the same clients get new sessions and re-join, for comparison)")
    ap.add_argument("--recoverable", type=int, default=None,
                    help="with --recovery-window: how many clients are recoverable (default: every other one)")
    ap.add_argument("--max-recovery", type=float, default=10.0,
                    help="bound (s) from the kill until every recoverable client of the killed node is recovered")
    ap.add_argument("--chat-interval", type=float, default=0.1,
                    help="with --recovery-window: seconds between the numbered messages sent to each room of a "
                         "recoverable client of the killed node, from the kill until they are back")
    ap.add_argument("--node-timeout", type=int, default=None,
                    help="pass --node-timeout MS to the nodes (presence: when a silent node is declared dead)")
    ap.add_argument("--node-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for every node (repeat; use --node-arg=--flag)")
    ap.add_argument("--haproxy-cfg", default=str(HAPROXY_CFG), help="HAProxy config (addresses from env)")
    ap.add_argument("--bin", help="signal-node binary (default $SIGNAL_NODE_BIN, .build/release, .build/debug)")
    ap.add_argument("--settle", type=float, default=15.0, help="timeout (s) of the set-up and final checks")
    ap.add_argument("--probe-interval", type=float, default=0.1, help="seconds between Redis probe messages")
    ap.add_argument("--concurrency", type=int, default=50, help="clients connecting or joining at once")
    ap.add_argument("--seed", type=int, default=None, help="random seed (python-socketio reconnect jitter)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--run-dir", help="where process logs go (default: a temporary directory, "
                                      "removed unless a check failed)")
    args = ap.parse_args(argv)
    if args.clients < 6 or args.rooms < 1 or args.rooms > args.clients // 2:
        ap.error("need --clients >= 6 and 1 <= --rooms <= clients / 2")
    if args.seed is not None:
        random.seed(args.seed)
    # python-engineio logs some expected ends of connections (a node killed or draining) as errors.
    for name in ("engineio.client", "socketio.client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    binary = find_binary(args.bin)
    for tool, hint in (("redis-server", "apt-get install redis-server"), ("haproxy", "apt-get install haproxy")):
        if shutil.which(tool) is None:
            print(f"failover: {tool} not found ({hint}, or run deploy/run-local.sh once)", file=sys.stderr)
            return 2
    if not binary.exists():
        print(f"failover: signal-node binary not found at {binary} (build it, or pass --bin / SIGNAL_NODE_BIN)",
              file=sys.stderr)
        return 2
    node_args = list(args.node_arg)
    if args.recovery_window is not None:
        node_args += ["--recovery-window", str(args.recovery_window)]
        if args.recoverable is None:
            args.recoverable = args.clients // 2
    if args.node_timeout is not None:
        node_args += ["--node-timeout", str(args.node_timeout)]

    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="signal-failover-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    report = Report()
    cluster = Cluster(binary, run_dir, node_args, redis_persist=args.redis_persist,
                      haproxy_cfg=Path(args.haproxy_cfg))
    print(f"failover test: {args.clients} clients ({args.transports}) in {args.rooms} rooms over "
          f"{len(NODES)} nodes behind HAProxy; kill -{args.kill_signal} {args.kill}, then restart Redis", flush=True)
    if args.recovery_window is not None:
        print(f"  recovery window {args.recovery_window} s; {args.recoverable} of the clients recover their "
              f"connection state like socket.io-client 4.8.1 (websocket, default backoff)", flush=True)
    print(f"  binary {binary}; logs in {run_dir}", flush=True)
    code = 0
    error = None
    # Our own SIGTERM handling, so that the processes we started are stopped (python-engineio takes SIGINT).
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        cluster.start()
        print(f"  cluster up: HAProxy {cluster.url}, nodes "
              + ", ".join(f"{n} {cluster.node_url(n)}" for n in NODES), flush=True)
        asyncio.run(run(args, cluster, report))
        code = 0 if report.passed and report.checks else 1
    except SetupError as e:
        error = str(e)
        print(f"  SETUP FAILED: {e}", flush=True)
        code = 2
    except KeyboardInterrupt:
        error = "interrupted"
        code = 130
    finally:
        cluster.stop_all()
    failed = [n for n, c in report.checks.items() if not c["passed"]]
    print(f"result: {'PASS' if code == 0 else 'FAIL'}" + (f" ({', '.join(failed)})" if failed else "")
          + (f" [{error}]" if error else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(
            passed=code == 0, code=code, error=error, checks=report.checks, info=report.info,
            clients=args.clients, rooms=args.rooms, transports=args.transports, killed=args.kill, kill_signal=args.kill_signal,
            recovery_window=args.recovery_window, recoverable=args.recoverable,
            binary=str(binary), run_dir=str(run_dir)), indent=2, default=str))
    if code == 0 and not args.run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif code != 0:
        print(f"  process logs kept in {run_dir}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
