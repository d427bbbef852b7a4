"""Helpers and fixtures for clusters of `signal-node` processes sharing one redis-server.

- RedisServer: a redis-server on a free loopback port (kill, restart on the same port, SIGSTOP/SIGCONT).
- RespClient / RedisSpy: a tiny RESP2 client over asyncio streams (no redis library), and a subscriber
  that records every pub/sub message it gets (channel, payload, arrival time).
- NodeProcess / Cluster: `signal-node --redis ... --node-id nK --redis-mode M` processes (conftest's
  ServerProcess with cluster flags), their /readyz, and the Socket.IO clients connected to them.

Fixtures (import them into the test module): `cluster` (3 nodes, module-scoped per redis mode),
`cluster_factory` (per-test clusters, e.g. for a Redis restart), `cluster_clients` (conftest
Clients on a chosen node, closed at teardown).
"""

import asyncio
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
import msgpack
import pytest

from conftest import (FENCE_PREFIX, SWIFT, TIMEOUT, TRANSPORTS, Client, ServerProcess,
                      _active_servers, free_port)

MODES = ["pattern", "per-room"]
PREFIX = "socket.io"
NSP = "/"
BROADCAST_CHANNEL = f"{PREFIX}#{NSP}#"
REQUEST_CHANNEL = f"{PREFIX}-request#{NSP}#"
REDIS_BIN = os.environ.get("REDIS_SERVER_BIN", "redis-server")
READY_TIMEOUT = float(os.environ.get("SIGNAL_READY_TIMEOUT", "15"))


def room_channel(room):
    """The channel a broadcast to exactly one room is published on (`socket.io#/#<room>#`)."""
    return f"{PREFIX}#{NSP}#{room}#"


# --------------------------------------------------------------------------------------------
# redis-server
# --------------------------------------------------------------------------------------------

def redis_ping(port, timeout=0.5):
    """True when a redis-server answers PING on 127.0.0.1:port (blocking; for setup code)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server without persistence, on a fixed port once chosen (so it can be restarted
    on the same port), output captured to a temp file."""

    def __init__(self, port=None):
        self.port = port
        self.proc = None
        self.frozen = False
        self.logfile = tempfile.NamedTemporaryFile(prefix="redis-", suffix=".log", delete=False)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=10.0):
        fixed = self.port is not None
        last = ""
        for _attempt in range(5):
            if not fixed:
                self.port = free_port()
            self.proc = subprocess.Popen(
                [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"],
                stdout=self.logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last = f"redis-server exited with code {self.proc.returncode}"
                    break
                if redis_ping(self.port):
                    self.frozen = False
                    return self
                time.sleep(0.02)
            else:
                last = f"redis-server did not answer PING within {timeout}s"
            self._reap()
            if fixed:
                time.sleep(0.2)  # the old process's socket may still be closing: retry the same port
        raise RuntimeError(f"could not start redis-server on port {self.port}: {last}\n{self.read_log()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: Redis goes away at once, its connections are reset."""
        if self.alive():
            self.proc.kill()
        self._reap()

    def freeze(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        if self.alive() and self.frozen:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self):
        if self.proc is None:
            return
        self.thaw()
        if self.alive():
            self.proc.terminate()
        self._reap()

    def _reap(self):
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def read_log(self, limit=5000):
        try:
            with open(self.logfile.name, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return text[-limit:]


# --------------------------------------------------------------------------------------------
# A minimal RESP2 client on asyncio streams
# --------------------------------------------------------------------------------------------

class RespError(Exception):
    pass


def encode_command(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


class RespClient:
    """One connection to Redis. `command()` for request/reply use; RedisSpy for pub/sub."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.bytes_in = 0  # RESP bytes read from Redis on this connection

    @classmethod
    async def connect(cls, port, host="127.0.0.1", timeout=TIMEOUT):
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer)

    async def _line(self):
        line = await self.reader.readuntil(b"\r\n")
        self.bytes_in += len(line)
        return line[:-2]

    async def read_value(self):
        line = await self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = await self.reader.readexactly(n + 2)
            self.bytes_in += n + 2
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [await self.read_value() for _ in range(n)]
        raise RespError(f"unexpected RESP line {line!r}")

    async def command(self, *args, timeout=TIMEOUT):
        self.writer.write(encode_command(*args))
        await self.writer.drain()
        value = await asyncio.wait_for(self.read_value(), timeout)
        if isinstance(value, RespError):
            raise value
        return value

    async def close(self):
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 1)
        except Exception:
            pass


@dataclass
class PubSubMessage:
    channel: str
    payload: bytes
    at: float  # time.monotonic() on arrival
    pattern: str = None

    def decoded(self):
        """A broadcast message `[uid, packet, opts]` (MessagePack), as Python values."""
        return msgpack.unpackb(self.payload, raw=False, strict_map_key=False)


@dataclass
class RedisSpy:
    """A subscriber that records every message on its subscriptions. Use `await RedisSpy.start(port,
    patterns=[...], channels=[...])`, then `await spy.wait_for(pred)` and `spy.on(channel)`."""

    conn: RespClient
    messages: list = field(default_factory=list)
    task: asyncio.Task = None
    pongs: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(cls, port, patterns=(), channels=(), timeout=TIMEOUT):
        spy = cls(await RespClient.connect(port, timeout=timeout))
        for cmd, names in (("PSUBSCRIBE", patterns), ("SUBSCRIBE", channels)):
            if not names:
                continue
            spy.conn.writer.write(encode_command(cmd, *names))
            await spy.conn.writer.drain()
            for _ in names:  # one acknowledgement per name
                ack = await asyncio.wait_for(spy.conn.read_value(), timeout)
                assert isinstance(ack, list) and ack[0].lower() == cmd.lower().encode(), ack
        spy.task = asyncio.create_task(spy._read_loop())
        return spy

    async def _read_loop(self):
        try:
            while True:
                v = await self.conn.read_value()
                if not isinstance(v, list) or not v:
                    continue
                kind = v[0]
                if kind == b"pmessage":
                    msg = PubSubMessage(v[2].decode(), v[3], time.monotonic(), v[1].decode())
                elif kind == b"message":
                    msg = PubSubMessage(v[1].decode(), v[2], time.monotonic())
                elif kind == b"pong":
                    self.pongs += 1
                    self._changed.set()
                    continue
                else:
                    continue
                self.messages.append(msg)
                self._changed.set()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass

    def on(self, channel):
        return [m for m in self.messages if m.channel == channel]

    @property
    def bytes_in(self):
        return self.conn.bytes_in

    async def wait_for(self, predicate, timeout=TIMEOUT, what="a matching pub/sub message"):
        """Wait until predicate(self.messages) is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            got = predicate(self.messages)
            if got:
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"redis spy: {what} not seen within {timeout}s; channels seen: "
                    f"{sorted({m.channel for m in self.messages})}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except (asyncio.TimeoutError, TimeoutError):
                pass

    async def ping(self, timeout=TIMEOUT):
        """PING on the subscribed connection: once its reply is in, every message Redis sent this
        subscriber before it has been read."""
        before = self.pongs
        self.conn.writer.write(encode_command("PING"))
        await self.conn.writer.drain()
        await self.wait_for(lambda _: self.pongs > before, timeout, what="PONG")

    async def close(self):
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except BaseException:
                pass
        await self.conn.close()


async def redis_command(port, *args, timeout=TIMEOUT):
    """One command on a fresh connection."""
    c = await RespClient.connect(port, timeout=timeout)
    try:
        return await c.command(*args, timeout=timeout)
    finally:
        await c.close()


async def numsub(port, channel):
    """PUBSUB NUMSUB for one channel: how many connections SUBSCRIBEd it (patterns not counted)."""
    reply = await redis_command(port, "PUBSUB", "NUMSUB", channel)
    return int(reply[1])


# --------------------------------------------------------------------------------------------
# Nodes and clusters
# --------------------------------------------------------------------------------------------

class NodeProcess(ServerProcess):
    """A signal-node in cluster mode."""

    def __init__(self, node_id, redis_url, mode, extra_args=()):
        self.node_id = node_id
        self.mode = mode
        super().__init__(["--redis", redis_url, "--node-id", node_id, "--redis-mode", mode,
                          *extra_args])

    def __repr__(self):
        return f"<node {self.node_id} :{self.port} {self.mode}>"


async def http_status(url, path, timeout=TIMEOUT):
    """HTTP status of GET url+path, or None when there is no answer within `timeout`."""
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + path, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                await r.read()
                return r.status
    except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, OSError):
        return None


def readyz_sync(node, timeout=1.0):
    import requests
    try:
        return requests.get(node.url + "/readyz", timeout=timeout).status_code
    except requests.RequestException:
        return None


class Cluster:
    """`n` nodes on one redis-server (its own unless `redis` is given). `node_args[i]` adds flags
    to node i."""

    def __init__(self, mode, n=3, node_args=None, redis=None):
        self.mode = mode
        self.redis = redis or RedisServer()
        self.own_redis = redis is None
        node_args = node_args or {}
        self.n = n
        self._node_args = node_args
        self.nodes = []

    def start(self):
        if self.own_redis:
            self.redis.start()
        for i in range(self.n):
            node = NodeProcess(f"n{i + 1}", self.redis.url, self.mode, self._node_args.get(i, ()))
            self.nodes.append(node)
            node.start()
        self.wait_ready_sync()
        return self

    def __getitem__(self, i):
        return self.nodes[i]

    def __iter__(self):
        return iter(self.nodes)

    def wait_ready_sync(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while readyz_sync(node) != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{node} /readyz not 200 within {timeout}s:\n{node.read_log()}")
                time.sleep(0.05)

    async def wait_readyz(self, status, timeout=READY_TIMEOUT, nodes=None):
        """Poll every node's /readyz until each answers `status`; return the seconds it took.
        Fails the test after `timeout`."""
        start = time.monotonic()
        deadline = start + timeout
        last = {}
        for node in nodes or self.nodes:
            while True:
                last[node.node_id] = await http_status(node.url, "/readyz", timeout=1.0)
                if last[node.node_id] == status:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"/readyz did not become {status} on every node within "
                                         f"{timeout}s; last answers: {last}")
                await asyncio.sleep(0.05)
        return time.monotonic() - start

    def healthy(self):
        return self.redis.alive() and not self.redis.frozen and all(n.alive() for n in self.nodes)

    def watch(self, from_start=False):
        """Have conftest's watcher print these nodes' output (from now, or all of it) if the
        current test fails, and fail the test if a node dies."""
        for node in self.nodes:
            _active_servers.append((node, 0 if from_start else node.log_size()))

    def stop(self):
        for node in self.nodes:
            node.stop()
        if self.own_redis:
            self.redis.stop()


def _print_redis_on_failure(request, cluster):
    failed = any(getattr(request.node, f"rep_{w}", None) is not None
                 and getattr(request.node, f"rep_{w}").failed for w in ("setup", "call"))
    if failed:
        print(f"\n----- redis-server :{cluster.redis.port} (alive={cluster.redis.alive()}) -----")
        print(cluster.redis.read_log())


@pytest.fixture(scope="module", params=MODES)
def _module_cluster(request):
    if not SWIFT:
        pytest.skip("cluster tests need the signal-node binary (SIGNAL_SERVER=swift)")
    holder = {"cluster": Cluster(request.param).start()}
    yield holder
    holder["cluster"].stop()


@pytest.fixture
def cluster(_module_cluster, request):
    """Three nodes n1..n3 on one redis-server, shared by the tests of a module, once per redis mode
    (restarted if a previous test broke it)."""
    c = _module_cluster["cluster"]
    if not c.healthy():
        c.stop()
        c = _module_cluster["cluster"] = Cluster(c.mode).start()
    c.watch()
    yield c
    _print_redis_on_failure(request, c)


@pytest.fixture
def cluster_factory(request):
    """`cluster_factory(mode, n=3, node_args={i: [...]})`: a fresh cluster with its own
    redis-server, stopped at teardown."""
    if not SWIFT:
        pytest.skip("cluster tests need the signal-node binary (SIGNAL_SERVER=swift)")
    made = []

    def make(mode, n=3, node_args=None):
        c = Cluster(mode, n, node_args)
        made.append(c)
        try:
            c.start()
        finally:
            c.watch(from_start=True)
        return c

    yield make
    for c in made:
        _print_redis_on_failure(request, c)
        c.stop()


class ClusterClient(Client):
    """A conftest Client that also answers cross-node fences: chat messages whose content starts
    with FENCE_PREFIX resolve a future instead of landing in the `message` queue, and user_left
    for fence rooms (a disconnecting client leaves them) is only logged."""

    def __init__(self, url, transport, name=None):
        super().__init__(url, transport, name)
        self._xfences = {}

    async def _on_any(self, event, *args):
        payload = args[0] if len(args) == 1 else None
        if (event == "message" and isinstance(payload, dict)
                and isinstance(payload.get("content"), str)
                and payload["content"].startswith(FENCE_PREFIX)):
            self.log.append((event, payload))
            fut = self._xfences.get(payload["content"])
            if fut is not None and not fut.done():
                fut.set_result(payload)
            return
        if (event == "user_left" and isinstance(payload, dict)
                and str(payload.get("roomName", "")).startswith(FENCE_PREFIX)):
            self.log.append((event, payload))  # someone left the fence room (a disconnect)
            return
        await super()._on_any(event, *args)

    def expect_fence(self, token):
        fut = self._xfences.get(token)
        if fut is None:
            fut = self._xfences[token] = asyncio.get_running_loop().create_future()
        return fut

    async def join_fence_room(self, room, timeout=TIMEOUT):
        """Join the test's fence room (its user_joined/user_left events never reach the queues)."""
        fut = asyncio.get_running_loop().create_future()
        self._fences[room] = fut
        await self.emit("join_room", {"roomName": room, "personName": self.name})
        try:
            await asyncio.wait_for(fut, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"{self.name}: own user_joined for fence room {room} not received "
                                 f"within {timeout}s; received so far: {self.log!r}") from None


class ClusterClients:
    """Clients on chosen nodes. Every client joins one fence room of the test, so `settle()` can
    send a fence through every node: a chat message from one client per node to the fence room.
    Redis pub/sub keeps a publisher connection's order, and a node's subscriber handles its
    messages in order, so once every observer has the fences of every node, every event
    published before them has been delivered (or dropped) everywhere."""

    def __init__(self):
        self.made = []
        self.fence_room = f"{FENCE_PREFIX}all-{uuid.uuid4().hex[:10]}"

    async def new(self, node, transport="websocket", name=None, fence=True):
        assert transport in TRANSPORTS
        c = ClusterClient(node.url, transport, name)
        c.node = node
        self.made.append(c)
        await c.connect()
        if fence:
            await c.join_fence_room(self.fence_room)
            c.in_fence_room = True
        else:
            c.in_fence_room = False
        return c

    def _live(self, clients):
        return [c for c in clients if c.sio.connected and c.in_fence_room]

    async def settle(self, observers=None, origins=None, timeout=TIMEOUT):
        """Send a fence from one client per node (or from `origins`) and wait until every observer
        (default: every connected client) got all of them."""
        observers = self._live(observers if observers is not None else self.made)
        if origins is None:
            per_node = {}
            for c in self._live(self.made):
                per_node.setdefault(c.node.port, c)
            origins = list(per_node.values())
        tokens = []
        for origin in origins:
            token = f"{FENCE_PREFIX}{origin.name}-{uuid.uuid4().hex[:10]}"
            tokens.append(token)
            futs = [o.expect_fence(token) for o in observers]  # registered before sending
            await origin.emit("message", {"roomName": self.fence_room, "personName": origin.name,
                                          "content": token})
        for o in observers:
            for token in tokens:
                try:
                    await asyncio.wait_for(o.expect_fence(token), timeout)
                except (asyncio.TimeoutError, TimeoutError):
                    raise AssertionError(
                        f"{o.name} on {o.node.node_id} did not get fence {token} within "
                        f"{timeout}s; received so far: {o.log!r}") from None

    async def close_all(self):
        await asyncio.gather(*(c.close() for c in self.made), return_exceptions=True)


@pytest.fixture
async def cluster_clients():
    """A ClusterClients: `await cluster_clients.new(node, transport, name)` returns a connected
    ClusterClient on that node; `await cluster_clients.settle()` is a cross-node fence."""
    f = ClusterClients()
    yield f
    await f.close_all()


async def wait_upgraded(client, timeout=TIMEOUT):
    """Wait until a default-mode client has upgraded from polling to websocket."""
    deadline = time.monotonic() + timeout
    while client.sio.transport() != "websocket":
        if time.monotonic() > deadline:
            raise AssertionError(f"{client.name}: not upgraded to websocket within {timeout}s")
        await asyncio.sleep(0.02)
