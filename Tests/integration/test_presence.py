"""Signaling beyond the seed, on real nodes sharing a real redis-server: presence (user_left on
every kind of disconnect and when a node dies), the join roster, server-set identity (join name,
fromPeer) and the room checks on signals, plus the seed's own call flow across two nodes.

Negative checks ("X did not get E") come after a cross-node fence (`cluster_clients.settle()`,
see cluster.py): a chat message from one client per node to a fence room every observer is in.
Clients created with `fence=False` are not in that room, so they share no room with anyone
unless a test says so (the room checks on signals need that).
"""

import asyncio
import base64
import json
import os
import signal
import time

import aiohttp
import pytest

from cluster import (MODES, PREFIX, Cluster, cluster_clients, cluster_factory,  # noqa: F401
                     http_status, redis_command)
from conftest import FENCE_PREFIX, SWIFT, TIMEOUT, unique
from test_seed_events import assert_exact, assert_timestamp_recent, ice_payload, sdp_payload

pytestmark = pytest.mark.skipif(not SWIFT, reason="presence needs signal-node (SIGNAL_SERVER=swift)")

# n2 of the module's cluster pings every 400 ms and waits 400 ms for the pong.
PING_INTERVAL_MS = 400
PING_TIMEOUT_MS = 400
NODE_TIMEOUT_MS = 2000


def _new_cluster():
    return Cluster("pattern", 3, node_args={
        1: ["--ping-interval", str(PING_INTERVAL_MS), "--ping-timeout", str(PING_TIMEOUT_MS)]}).start()


@pytest.fixture(scope="module")
def _presence_cluster():
    if not SWIFT:
        pytest.skip("needs signal-node")
    holder = {"cluster": _new_cluster()}
    yield holder
    holder["cluster"].stop()


@pytest.fixture
def pcluster(_presence_cluster):
    """Three nodes on one redis-server (pattern mode), shared by this module's tests; n2 has a
    short ping interval and timeout."""
    c = _presence_cluster["cluster"]
    if not c.healthy():
        c.stop()
        c = _presence_cluster["cluster"] = _new_cluster()
    c.watch()
    return c


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def peer(client, room, name=None, sid=None):
    """user_joined / user_left payload, in the wire's key order."""
    return {"personName": name or client.name, "roomName": room, "socketId": sid or client.sid}


async def join_all(room, members, fences, names=None):
    """Members join one by one (no ack, as the seed's client does); each user_joined reaches every
    member so far, joiner included, exactly. After each join, a cross-node fence."""
    names = names or {}
    joined = []
    for c in members:
        name = names.get(c.name, c.name)
        await c.emit("join_room", {"roomName": room, "personName": name})
        for m in joined + [c]:
            assert_exact(await m.expect("user_joined"), peer(c, room, name))
        joined.append(c)
        await fences.settle(origins=[c] if c.in_fence_room else None)


def _key(payload):
    return json.dumps(payload, sort_keys=True)


async def expect_all(client, event, expected, timeout=TIMEOUT):
    """The next len(expected) payloads of `event`, in any order, equal `expected` (key order
    included)."""
    got = []
    deadline = time.monotonic() + timeout
    for _ in expected:
        got.append(await client.expect(event, max(0.01, deadline - time.monotonic())))
    assert sorted(map(_key, got)) == sorted(map(_key, expected)), \
        f"{client.name}: {event} payloads {got!r}, expected {expected!r}"
    if event in ("user_joined", "user_left"):
        for g in got:
            assert list(g) == ["personName", "roomName", "socketId"], f"{client.name}: {g!r}"
    return got


def assert_refusal(payload, event, code):
    assert isinstance(payload, dict), f"refusal is not an object: {payload!r}"
    assert list(payload) == ["event", "code", "message"], f"refusal keys {list(payload)}: {payload!r}"
    assert payload["event"] == event and payload["code"] == code, \
        f"expected {event}/{code}, got {payload!r}"
    assert isinstance(payload["message"], str) and payload["message"], payload


async def refused_with_ack(client, event, data, code):
    args = await client.emit_with_ack(event, data)
    assert len(args) == 1, f"{client.name}: ack args {args!r}"
    assert_refusal(args[0], event, code)


async def refused_without_ack(client, event, data, code):
    await client.emit(event, data)
    assert_refusal(await client.expect("error"), event, code)


def roster(client, room, peers):
    return {"roomName": room, "socketId": client.sid,
            "peers": [{"socketId": p.sid, "personName": name} for p, name in peers]}


def assert_roster(ack_args, expected, strict=True):
    """The join_room ack is the roster: the members already present (any order), not the joiner.
    `strict`: also exactly the keys roomName, socketId, peers, in that order (README); the
    roster test checks that separately, at its end, so the content is checked first."""
    assert len(ack_args) == 1, f"join_room ack args {ack_args!r}"
    got = ack_args[0]
    assert isinstance(got, dict), f"roster: {got!r}"
    assert got.get("roomName") == expected["roomName"], got
    assert got.get("socketId") == expected["socketId"], got
    for p in got["peers"]:
        assert list(p) == ["socketId", "personName"], f"peer keys: {p!r}"
    srt = lambda ps: sorted(ps, key=lambda p: p["socketId"])  # noqa: E731
    assert srt(got["peers"]) == srt(expected["peers"]), \
        f"roster peers {got['peers']!r}, expected {expected['peers']!r}"
    if strict:
        assert list(got) == ["roomName", "socketId", "peers"], f"roster keys {list(got)}: {got!r}"


class RawWebSocket:
    """A Socket.IO client over a hand-made WebSocket on asyncio streams, so the test decides how
    the connection ends: a TCP reset, or a bare WebSocket close frame, with no Socket.IO
    DISCONNECT packet before either."""

    def __init__(self, node, name):
        self.node, self.name = node, name
        self.sid = None
        self.reader = self.writer = None

    async def connect(self, timeout=TIMEOUT):
        """Opens the TCP connection and sends the upgrade; returns the HTTP status and body."""
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.node.host, self.node.port), timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
             f"Host: {self.node.host}:{self.node.port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        body = b""
        if status != 101:
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    body = await asyncio.wait_for(self.reader.readexactly(int(line.split(b":")[1])),
                                                  timeout)
        return status, body

    async def open_socket(self, timeout=TIMEOUT):
        status, body = await self.connect(timeout)
        assert status == 101, f"websocket upgrade answered {status} {body!r}"
        opened = await self.recv(timeout)
        assert opened.startswith("0"), opened
        await self.send("40")
        while True:
            pkt = await self.recv(timeout)
            if pkt.startswith("40"):
                self.sid = json.loads(pkt[2:])["sid"]
                return self

    async def _send_frame(self, opcode, data):
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        self.writer.write(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        await asyncio.wait_for(self.writer.drain(), TIMEOUT)

    async def send(self, text):
        await self._send_frame(0x1, text.encode())

    async def _frame(self):
        b0, b1 = await self.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await self.reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await self.reader.readexactly(8), "big")
        mask = await self.reader.readexactly(4) if b1 & 0x80 else None
        data = await self.reader.readexactly(n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return b0 & 0x0F, data

    async def recv(self, timeout=TIMEOUT):
        """The next Engine.IO text packet (answering pings on the way)."""
        deadline = time.monotonic() + timeout
        while True:
            opcode, data = await asyncio.wait_for(self._frame(), max(0.01, deadline - time.monotonic()))
            if opcode == 0x9:
                await self._send_frame(0xA, data)
                continue
            if opcode == 0x8:
                raise ConnectionError(f"{self.name}: server closed the websocket ({data!r})")
            text = data.decode()
            if text == "2":
                await self.send("3")
                continue
            return text

    async def emit(self, event, data):
        await self.send("42" + json.dumps([event, data]))

    async def expect_event(self, event, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            pkt = await self.recv(max(0.01, deadline - time.monotonic()))
            if pkt.startswith("42"):
                got = json.loads(pkt[2:])
                if got[0] == event:
                    return got[1] if len(got) > 1 else None

    def reset(self):
        """TCP reset: no close frame, no DISCONNECT."""
        self.writer.transport.abort()

    async def close_frame(self):
        """A WebSocket close frame (1000), then FIN: still no Socket.IO DISCONNECT."""
        await self._send_frame(0x8, (1000).to_bytes(2, "big"))
        self.writer.close()

    def drop(self):
        if self.writer is not None and not self.writer.transport.is_closing():
            self.writer.transport.abort()


RS = "\x1e"


class RawPolling:
    """A Socket.IO client over hand-made Engine.IO long-polling requests: it polls only when the
    test says so, so it can stop answering pings."""

    def __init__(self, node, name):
        self.node, self.name = node, name
        self.http = aiohttp.ClientSession()
        self.eio_sid = self.sid = None
        self.handshake = None
        self.inbox = []

    def url(self):
        u = f"{self.node.url}/socket.io/?EIO=4&transport=polling&t={time.monotonic_ns()}"
        return u + (f"&sid={self.eio_sid}" if self.eio_sid else "")

    async def get(self, timeout=TIMEOUT):
        async def go():
            async with self.http.get(self.url()) as r:
                return r.status, await r.text()
        return await asyncio.wait_for(go(), timeout)

    async def post(self, *packets):
        async def go():
            async with self.http.post(self.url(), data=RS.join(packets).encode(),
                                      headers={"Content-Type": "text/plain;charset=UTF-8"}) as r:
                return r.status, await r.text()
        status, text = await asyncio.wait_for(go(), TIMEOUT)
        assert status == 200, f"POST: {status} {text!r}"

    async def poll(self, timeout=TIMEOUT):
        """One GET; answers the server's pings; keeps the other packets."""
        status, text = await self.get(timeout)
        assert status == 200, f"{self.name}: GET {status} {text!r}"
        for pkt in text.split(RS):
            if pkt == "2":
                await self.post("3")
            elif pkt:
                self.inbox.append(pkt)

    async def open_socket(self):
        status, text = await self.get()
        assert status == 200 and text.startswith("0"), f"handshake {status} {text!r}"
        self.handshake = json.loads(text[1:])
        self.eio_sid = self.handshake["sid"]
        await self.post("40")
        while self.sid is None:
            await self.poll()
            for pkt in list(self.inbox):
                if pkt.startswith("40"):
                    self.sid = json.loads(pkt[2:])["sid"]
                    self.inbox.remove(pkt)
        return self

    async def emit(self, event, data):
        await self.post("42" + json.dumps([event, data]))

    async def expect_event(self, event, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            for pkt in list(self.inbox):
                self.inbox.remove(pkt)
                if pkt.startswith("42"):
                    got = json.loads(pkt[2:])
                    if got[0] == event:
                        return got[1]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {event!r} within {timeout}s")
            await self.poll(left)

    async def close(self):
        await self.http.close()


# --------------------------------------------------------------------------------------------
# user_left on disconnect
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("leaver_transport", ["websocket", "polling"])
async def test_user_left_on_client_disconnect_across_nodes(pcluster, cluster_clients, leaver_transport):
    """A client that disconnects (Socket.IO DISCONNECT) is announced with user_left, under its
    join name, to the others in each of its rooms, on every node, exactly once."""
    n1, n2, n3 = pcluster
    new = cluster_clients.new
    leaver = await new(n1, leaver_transport, "leaver")
    same_node = await new(n1, "websocket", "same")
    bob = await new(n2, "polling", "bob")
    carol = await new(n3, "default", "carol")
    outsider = await new(n3, "websocket", "outsider")  # in no room with the leaver
    room1, room2 = unique("dc1"), unique("dc2")
    names = {"leaver": "Lea Joined"}  # the join name, not the client's name
    await join_all(room1, [leaver, same_node, bob, carol], cluster_clients, names)
    await join_all(room2, [bob, leaver], cluster_clients, names)
    sid = leaver.sid

    await leaver.close()
    left1 = {"personName": "Lea Joined", "roomName": room1, "socketId": sid}
    left2 = {"personName": "Lea Joined", "roomName": room2, "socketId": sid}
    await expect_all(same_node, "user_left", [left1])
    await expect_all(carol, "user_left", [left1])
    await expect_all(bob, "user_left", [left1, left2])

    await cluster_clients.settle()
    for c in (same_node, bob, carol, outsider):
        c.assert_none("user_left")

    # the leaver is gone from the roster too
    late = await new(n2, "websocket", "late")
    ack = await late.emit_with_ack("join_room", {"roomName": room1, "personName": "late"})
    assert_roster(ack, roster(late, room1, [(same_node, "same"), (bob, "bob"), (carol, "carol")]),
                  strict=False)  # exact keys: test_join_ack_roster_lists_members_on_every_node


@pytest.mark.parametrize("how", ["tcp_reset", "websocket_close_frame"])
async def test_user_left_on_transport_loss_across_nodes(pcluster, cluster_clients, how):
    """The transport goes away without a Socket.IO DISCONNECT: the others still get user_left."""
    n1, n2, n3 = pcluster
    new = cluster_clients.new
    a = await new(n1, "websocket", "a")
    b = await new(n3, "polling", "b")
    c = await new(n3, "websocket", "c")
    room = unique("loss")
    await join_all(room, [a, b, c], cluster_clients)

    raw = RawWebSocket(n3, "raw")
    try:
        await raw.open_socket()
        await raw.emit("join_room", {"roomName": room, "personName": "rawname"})
        expected_join = {"personName": "rawname", "roomName": room, "socketId": raw.sid}
        assert await raw.expect_event("user_joined") == expected_join
        for m in (a, b, c):
            assert_exact(await m.expect("user_joined"), expected_join)

        if how == "tcp_reset":
            raw.reset()
        else:
            await raw.close_frame()
        left = {"personName": "rawname", "roomName": room, "socketId": raw.sid}
        for m in (a, b, c):
            assert_exact(await m.expect("user_left"), left)
        await cluster_clients.settle()
        for m in (a, b, c):
            m.assert_none("user_left")
        for node in (n1, n3):
            assert await http_status(node.url, "/healthz") == 200
    finally:
        raw.drop()


async def test_user_left_on_ping_timeout(pcluster, cluster_clients):
    """A polling client that stops polling (no pong) is dropped after pingInterval + pingTimeout
    and announced with user_left, on its node and the others."""
    n1, n2, n3 = pcluster
    new = cluster_clients.new
    far = await new(n1, "websocket", "far")
    near = await new(n2, "polling", "near")  # same node as the silent client
    room = unique("ping")
    await join_all(room, [far, near], cluster_clients)

    silent = RawPolling(n2, "silent")
    try:
        await silent.open_socket()
        assert silent.handshake["pingInterval"] == PING_INTERVAL_MS
        assert silent.handshake["pingTimeout"] == PING_TIMEOUT_MS
        await silent.emit("join_room", {"roomName": room, "personName": "shh"})
        expected_join = {"personName": "shh", "roomName": room, "socketId": silent.sid}
        assert await silent.expect_event("user_joined") == expected_join
        for m in (far, near):
            assert_exact(await m.expect("user_joined"), expected_join)

        stopped = time.monotonic()  # no more GETs from here on
        bound = (PING_INTERVAL_MS + PING_TIMEOUT_MS) / 1000 + 2.0
        left = {"personName": "shh", "roomName": room, "socketId": silent.sid}
        for m in (far, near):
            assert_exact(await m.expect("user_left", timeout=bound), left)
        took = time.monotonic() - stopped
        assert took <= bound, f"user_left {took:.2f}s after the client stopped polling"

        # the session is gone: its sid is unknown now
        status, text = await silent.get()
        assert status == 400 and json.loads(text)["code"] == 1, f"{status} {text!r}"
        await cluster_clients.settle()
        for m in (far, near):
            m.assert_none("user_left")
    finally:
        await silent.close()


NODES_KEY = f"{PREFIX}:presence:nodes"  # README: node heartbeats


async def registered_nodes(cluster):
    """Node names (n1, n2, ...) with a heartbeat entry in Redis."""
    reply = await redis_command(cluster.redis.port, "ZRANGE", NODES_KEY, "0", "-1")
    return sorted({m.decode().split("-", 1)[0] for m in reply})


async def wait_registered(cluster, nodes, timeout=TIMEOUT):
    want = sorted(n.node_id for n in nodes)
    deadline = time.monotonic() + timeout
    while (got := await registered_nodes(cluster)) != want:
        if time.monotonic() > deadline:
            raise AssertionError(f"heartbeats in {NODES_KEY}: {got}, expected {want}")
        await asyncio.sleep(0.05)


def kill9(node):
    os.kill(node.proc.pid, signal.SIGKILL)
    node.proc.wait(timeout=5)
    node.stopped = True  # on purpose: conftest's watcher must not fail the test for it
    return time.monotonic()


def lost(name, sid, room):
    return {"personName": name, "roomName": room, "socketId": sid}


@pytest.mark.parametrize("mode", MODES)
async def test_node_killed_user_left_once_within_timeout(cluster_factory, cluster_clients, mode):
    """kill -9 of a node: the survivors (on two other nodes) get user_left for each (room, socket)
    of the dead node within 2x --node-timeout, exactly once cluster-wide."""
    c = cluster_factory(mode, n=3, node_args={i: ["--node-timeout", str(NODE_TIMEOUT_MS)]
                                              for i in range(3)})
    n1, n2, n3 = c
    new = cluster_clients.new
    o1 = await new(n1, "websocket", "o1")
    o2 = await new(n2, "polling", "o2")
    v1 = await new(n3, "websocket", "v1")
    v2 = await new(n3, "websocket", "v2")
    room_a, room_b, room_c = unique("killA"), unique("killB"), unique("killC")
    names = {"v1": "Victim One", "v2": "Victim Two"}
    await join_all(room_a, [o1, v1, o2, v2], cluster_clients, names)
    await join_all(room_b, [v2, o1], cluster_clients, names)
    await join_all(room_c, [o2, v1], cluster_clients, names)
    v1_sid, v2_sid = v1.sid, v2.sid
    # every node has sent a heartbeat (a node killed before its first one:
    # test_node_killed_before_its_first_heartbeat)
    await wait_registered(c, [n1, n2, n3])

    killed = kill9(n3)
    bound = 2 * NODE_TIMEOUT_MS / 1000
    await expect_all(o1, "user_left", [lost("Victim One", v1_sid, room_a),
                                       lost("Victim Two", v2_sid, room_a),
                                       lost("Victim Two", v2_sid, room_b)], timeout=bound + 1.0)
    await expect_all(o2, "user_left", [lost("Victim One", v1_sid, room_a),
                                       lost("Victim Two", v2_sid, room_a),
                                       lost("Victim One", v1_sid, room_c)], timeout=bound + 1.0)
    took = time.monotonic() - killed
    print(f"{mode}: user_left for the killed node's sockets {took:.2f}s after kill -9 "
          f"(--node-timeout {NODE_TIMEOUT_MS} ms)")
    assert took <= bound + 0.25, f"user_left came {took:.2f}s after kill -9, more than 2x the timeout"

    # exactly once: a few more heartbeats of both survivors, then a fence through both
    await asyncio.sleep(NODE_TIMEOUT_MS / 1000 / 2)
    await cluster_clients.settle(observers=[o1, o2], origins=[o1, o2])
    o1.assert_none("user_left")
    o2.assert_none("user_left")

    # the roster forgot them
    late = await new(n1, "websocket", "late")
    ack = await late.emit_with_ack("join_room", {"roomName": room_a, "personName": "late"})
    assert_roster(ack, roster(late, room_a, [(o1, "o1"), (o2, "o2")]), strict=False)
    for node in (n1, n2):
        assert await http_status(node.url, "/healthz") == 200


async def test_node_killed_before_its_first_heartbeat(cluster_factory, cluster_clients):
    """A node that takes a member and dies at once, before its first heartbeat reached Redis:
    its member must still be announced gone (and leave the roster)."""
    c = cluster_factory("pattern", n=2, node_args={i: ["--node-timeout", str(NODE_TIMEOUT_MS)]
                                                   for i in range(2)})
    n1, n2 = c
    o = await cluster_clients.new(n1, "websocket", "o")
    v = await cluster_clients.new(n2, "websocket", "v")
    room = unique("early")
    await join_all(room, [o, v], cluster_clients)
    v_sid = v.sid
    registered = await registered_nodes(c)
    killed = kill9(n2)
    print(f"nodes with a heartbeat in Redis when n2 was killed: {registered}")

    bound = 2 * NODE_TIMEOUT_MS / 1000
    assert_exact(await o.expect("user_left", timeout=bound + 1.0), lost("v", v_sid, room))
    took = time.monotonic() - killed
    assert took <= bound + 0.25, f"user_left came {took:.2f}s after kill -9"
    late = await cluster_clients.new(n1, "websocket", "late")
    ack = await late.emit_with_ack("join_room", {"roomName": room, "personName": "late"})
    assert_roster(ack, roster(late, room, [(o, "o")]), strict=False)


# --------------------------------------------------------------------------------------------
# join roster
# --------------------------------------------------------------------------------------------

async def test_join_ack_roster_lists_members_on_every_node(pcluster, cluster_clients):
    n1, n2, n3 = pcluster
    new = cluster_clients.new
    plain = await new(n1, "websocket", "plain")  # never asks for an ack
    b = await new(n2, "polling", "b")
    c = await new(n3, "default", "c")
    d = await new(n1, "websocket", "d")
    e = await new(n2, "websocket", "e")
    room = unique("roster")

    await plain.emit("join_room", {"roomName": room, "personName": "Plain P"})
    assert_exact(await plain.expect("user_joined"), peer(plain, room, "Plain P"))
    await cluster_clients.settle()

    members = [(plain, "Plain P")]
    acks = []
    for joiner in (b, c, d):
        ack = await joiner.emit_with_ack("join_room", {"roomName": room, "personName": joiner.name})
        acks.append(ack)
        # the others, on any node; not the joiner
        assert_roster(ack, roster(joiner, room, members), strict=False)
        for m, _ in members + [(joiner, None)]:
            assert_exact(await m.expect("user_joined"), peer(joiner, room))
        members.append((joiner, joiner.name))
        await cluster_clients.settle()

    # leaving and disconnecting take members out of the roster
    c_sid = c.sid
    await b.emit("leave_room", {"roomName": room, "personName": "b"})
    await c.close()
    for m in (plain, d):
        await expect_all(m, "user_left", [peer(b, room), {"personName": "c", "roomName": room,
                                                          "socketId": c_sid}])
    ack = await e.emit_with_ack("join_room", {"roomName": room, "personName": "e"})
    acks.append(ack)
    assert_roster(ack, roster(e, room, [(plain, "Plain P"), (d, "d")]), strict=False)
    for m in (plain, d, e):
        assert_exact(await m.expect("user_joined"), peer(e, room))

    # a client without an ack sees exactly the seed's events, nothing more
    await cluster_clients.settle()
    seen = [(ev, p) for ev, p in plain.log if not is_fence(p)]
    c_peer = {"personName": "c", "roomName": room, "socketId": c_sid}
    assert [ev for ev, _ in seen] == ["user_joined"] * 4 + ["user_left"] * 2 + ["user_joined"], seen
    assert [p for _, p in seen[:4]] == [peer(plain, room, "Plain P"), peer(b, room), c_peer, peer(d, room)]
    assert sorted(map(_key, [p for _, p in seen[4:6]])) == sorted(map(_key, [peer(b, room), c_peer]))
    assert seen[6][1] == peer(e, room)

    # the ack is exactly {roomName, socketId, peers} (README; no iceServers unless configured)
    for ack in acks:
        assert list(ack[0]) == ["roomName", "socketId", "peers"], f"roster keys {list(ack[0])}: {ack[0]!r}"


def is_fence(payload):
    return isinstance(payload, dict) and (str(payload.get("roomName", "")).startswith(FENCE_PREFIX)
                                          or str(payload.get("content", "")).startswith(FENCE_PREFIX))


async def test_second_join_of_same_room_announces_nothing_and_is_refused(pcluster, cluster_clients):
    """A second join of a room is refused with already_in_room (the roster came with the first join; issue 11
    finding 4: a re-join must not cost a roster read) and announces nothing."""
    n1, n2, _ = pcluster
    new = cluster_clients.new
    a = await new(n1, "websocket", "a")
    b = await new(n2, "polling", "b")
    room = unique("again")
    await join_all(room, [a, b], cluster_clients, {"b": "Bob First"})

    # again with an ack: already_in_room, no user_joined
    await refused_with_ack(b, "join_room", {"roomName": room, "personName": "Bob First"}, "already_in_room")
    # again without an ack, under another name: the error event, nothing else
    await refused_without_ack(b, "join_room", {"roomName": room, "personName": "Bob Second"}, "already_in_room")
    await refused_with_ack(a, "join_room", {"roomName": room, "personName": "a"}, "already_in_room")

    await cluster_clients.settle()
    for c in (a, b):
        c.assert_none("user_joined", "error")

    # still one member each: one message each, under the first join name
    await b.emit("message", {"roomName": room, "personName": "Bob Second", "content": "hi"})
    for c in (a, b):
        got = await c.expect("message")
        assert got["personName"] == "Bob First" and got["content"] == "hi", got
    await cluster_clients.settle()
    for c in (a, b):
        c.assert_none("message")


async def test_message_uses_join_name(pcluster, cluster_clients):
    n1, n2, _ = pcluster
    new = cluster_clients.new
    alice = await new(n1, "websocket", "alice")
    bob = await new(n2, "default", "bob")
    room = unique("name")
    await join_all(room, [alice, bob], cluster_clients, {"alice": "Alice J"})
    for sent in ({"roomName": room, "personName": "mallory", "content": "one"},
                 {"roomName": room, "personName": "bob", "content": "two"},
                 {"roomName": room, "content": "three"}):  # no personName at all
        args = await alice.emit_with_ack("message", sent)
        assert args == [{"ok": True}], args
        for c in (alice, bob):
            got = await c.expect("message")
            assert list(got) == ["personName", "content", "timestamp"], got
            assert got["personName"] == "Alice J" and got["content"] == sent["content"], got
            assert_timestamp_recent(got["timestamp"])


def _signal(kind, src, dst):
    return ice_payload(src, dst) if kind == "ice_candidate" else sdp_payload(kind, src, dst)


def _received_names(kind):
    return ["ice_candidate", "ice-candidate"] if kind == "ice_candidate" else [kind]


@pytest.mark.parametrize("kind", ["offer", "answer", "ice_candidate"])
async def test_forged_from_peer_replaced_by_sender_id(pcluster, cluster_clients, kind):
    n1, n2, n3 = pcluster
    new = cluster_clients.new
    alice = await new(n1, "websocket", "alice")
    bob = await new(n2, "polling", "bob")
    carol = await new(n3, "websocket", "carol")
    room = unique("forge")
    await join_all(room, [alice, bob, carol], cluster_clients)
    names = _received_names(kind)

    def variants():
        base = _signal(kind, alice, bob)
        forged = dict(base, fromPeer="forged-id-0000000000")  # same position, another value
        yield forged, dict(base)
        yield dict(base, fromPeer=carol.sid), dict(base)  # impersonating a real member
        missing = {k: v for k, v in base.items() if k != "fromPeer"}
        yield missing, dict(missing, fromPeer=alice.sid)  # added, at the end
        first = {"fromPeer": 42, **{k: v for k, v in base.items() if k != "fromPeer"}}
        yield first, dict(first, fromPeer=alice.sid)  # first key, wrong type: replaced in place

    for i, (sent, expected) in enumerate(variants()):
        if i % 2:
            assert await alice.emit_with_ack(kind, sent) == [{"ok": True}]
        else:
            await alice.emit(kind, sent)
        for name in names:
            assert_exact(await bob.expect(name), expected)

    await cluster_clients.settle()
    for c in (alice, bob, carol):
        c.assert_none(*names, "error")


SIGNAL_KINDS = ["offer", "answer", "ice_candidate"]


async def test_signal_to_socket_in_no_shared_room_refused(pcluster, cluster_clients):
    n1, n2, n3 = pcluster
    new = cluster_clients.new
    alice = await new(n1, "websocket", "alice", fence=False)  # shares no fence room with anyone
    helper = await new(n1, "websocket", "helper")  # fences from n1
    bob = await new(n2, "polling", "bob")
    carol = await new(n3, "websocket", "carol")
    loner = await new(n3, "websocket", "loner", fence=False)  # in no room at all
    room_x, room_y = unique("X"), unique("Y")
    await join_all(room_x, [alice, carol], cluster_clients)
    await join_all(room_y, [bob, helper], cluster_clients)

    for kind in SIGNAL_KINDS:
        await refused_with_ack(alice, kind, _signal(kind, alice, bob), "not_in_same_room")
        await refused_without_ack(alice, kind, _signal(kind, alice, bob), "not_in_same_room")
        # toPeer naming a room (the seed's socket.to(toPeer) took room names) is no socket
        to_room = dict(_signal(kind, alice, bob), toPeer=room_y)
        await refused_with_ack(alice, kind, to_room, "not_in_same_room")
        to_nobody = dict(_signal(kind, alice, bob), toPeer="AAAAAAAAAAAAAAAAAAAA")
        await refused_with_ack(alice, kind, to_nobody, "not_in_same_room")
        # a socket in no room shares no room with anyone
        await refused_with_ack(loner, kind, _signal(kind, loner, carol), "not_in_same_room")
        await refused_without_ack(loner, kind, _signal(kind, loner, carol), "not_in_same_room")

    await cluster_clients.settle()
    every_name = ["offer", "answer", "ice_candidate", "ice-candidate"]
    for c in (bob, helper, carol):
        c.assert_none(*every_name)
    alice.assert_none("error")
    loner.assert_none("error")

    # nobody was disconnected; once alice shares a room with bob, the same signal goes through
    assert all(c.sio.connected for c in (alice, helper, bob, carol, loner))
    await join_all(room_y, [alice], cluster_clients)
    for m in (bob, helper):
        assert_exact(await m.expect("user_joined"), peer(alice, room_y))
    for kind in SIGNAL_KINDS:
        sent = _signal(kind, alice, bob)
        assert await alice.emit_with_ack(kind, sent) == [{"ok": True}]
        for name in _received_names(kind):
            assert_exact(await bob.expect(name), sent)


async def test_message_and_leave_for_room_not_joined_refused(pcluster, cluster_clients):
    n1, n2, _ = pcluster
    new = cluster_clients.new
    alice = await new(n1, "websocket", "alice")
    bob = await new(n2, "polling", "bob")
    room_x, room_y = unique("X"), unique("Y")
    await join_all(room_x, [alice], cluster_clients)
    await join_all(room_y, [bob], cluster_clients)

    msg = {"roomName": room_y, "personName": "alice", "content": "not yours"}
    await refused_with_ack(alice, "message", msg, "not_in_room")
    await refused_without_ack(alice, "message", msg, "not_in_room")
    leave = {"roomName": room_y, "personName": "alice"}
    await refused_with_ack(alice, "leave_room", leave, "not_in_room")
    await refused_without_ack(alice, "leave_room", leave, "not_in_room")
    never = {"roomName": unique("never"), "personName": "alice"}
    await refused_with_ack(alice, "leave_room", never, "not_in_room")

    # after leaving, the room is no longer alice's
    assert await alice.emit_with_ack("leave_room", {"roomName": room_x, "personName": "alice"}) \
        == [{"ok": True}]
    await refused_with_ack(alice, "leave_room", {"roomName": room_x, "personName": "alice"},
                           "not_in_room")
    await refused_with_ack(alice, "message", {"roomName": room_x, "content": "gone"}, "not_in_room")

    await cluster_clients.settle()
    bob.assert_none("message", "user_left", "error")
    alice.assert_none("message", "user_left", "error")
    assert alice.sio.connected and bob.sio.connected


# --------------------------------------------------------------------------------------------
# the seed's call flow, unchanged, across two nodes
# --------------------------------------------------------------------------------------------

async def test_seed_call_flow_across_two_nodes(pcluster, cluster_clients):
    """seed-protocol.md section 3 with the seed client's exact payloads: no acks, fromPeer = own
    id, the existing member offers to the newcomer, ICE both ways (the offerer's first, before
    its offer, as the seed did), chat, leave."""
    n1, n2, _ = pcluster
    new = cluster_clients.new
    usman = await new(n1, "default", "Usman")
    guest = await new(n2, "default", "Guest")
    room = "Fleek-" + unique("seed")

    await usman.emit("join_room", {"roomName": room, "personName": "Usman"})
    assert_exact(await usman.expect("user_joined"), peer(usman, room))
    # the newcomer comes later (a person, not a script): Usman's user_joined has reached n2 by
    # then, so it cannot reach the newcomer (published before it joined)
    await cluster_clients.settle(origins=[usman])
    await guest.emit("join_room", {"roomName": room, "personName": "Guest"})
    for c in (usman, guest):
        assert_exact(await c.expect("user_joined"), peer(guest, room))

    # the existing member: ICE first, then the offer, both with fromPeer = its own id
    ice = {"iccCandidate": {"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host",
                            "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "u1"},
           "fromPeer": usman.sid, "toPeer": guest.sid}
    await usman.emit("ice_candidate", ice)
    offer = {"offer": {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"},
             "fromPeer": usman.sid, "toPeer": guest.sid}
    await usman.emit("offer", offer)
    assert_exact(await guest.expect("ice_candidate"), ice)
    assert_exact(await guest.expect("ice-candidate"), ice)
    got = await guest.expect("offer")
    assert_exact(got, offer)

    # the newcomer answers to offer.fromPeer, then trickles its own candidate
    answer = {"answer": {"type": "answer", "sdp": "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\n"},
              "fromPeer": guest.sid, "toPeer": got["fromPeer"]}
    await guest.emit("answer", answer)
    assert_exact(await usman.expect("answer"), answer)
    ice_back = {"iccCandidate": {"candidate": "candidate:2 1 udp 2122260223 192.0.2.2 50001 typ host",
                                 "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "u2"},
                "fromPeer": guest.sid, "toPeer": usman.sid}
    await guest.emit("ice_candidate", ice_back)
    assert_exact(await usman.expect("ice_candidate"), ice_back)
    assert_exact(await usman.expect("ice-candidate"), ice_back)

    # chat: the seed client sends its own name
    for sender, content in ((usman, "hello"), (guest, "hi there")):
        await sender.emit("message", {"roomName": room, "personName": sender.name, "content": content})
        for c in (usman, guest):
            got = await c.expect("message")
            assert list(got) == ["personName", "content", "timestamp"], got
            assert got["personName"] == sender.name and got["content"] == content, got
            assert_timestamp_recent(got["timestamp"])

    # leave: the other gets user_left, the leaver does not
    await guest.emit("leave_room", {"roomName": room, "personName": "Guest"})
    assert_exact(await usman.expect("user_left"), peer(guest, room))
    await guest.fence()
    await usman.fence()
    guest.assert_none("user_left")
    for c in (usman, guest):
        c.assert_none("error", "offer", "answer", "ice_candidate", "ice-candidate", "message",
                      "user_joined")
    assert {ev for ev, _ in usman.log} == {"user_joined", "ice_candidate", "ice-candidate", "answer",
                                           "message", "user_left"}, usman.log
