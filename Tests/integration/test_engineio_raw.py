"""Engine.IO v4 / Socket.IO v5 on the wire: raw HTTP long-polling and raw WebSocket, no
Socket.IO client library. Expected values come from shared/fixtures/engineio/*.json (captured
from the Node.js seed server).

Checks that only the Swift server is expected to meet exactly (Node's JSON error bodies, header
values, key order) are marked swift_only or guarded by `if SWIFT:`; the python-socketio
reference server still runs the rest of each test.
"""

import asyncio
import base64
import json
import re
import time
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import WSMsgType

from conftest import SWIFT, TIMEOUT, TRANSPORTS, Client, unique

RS = "\x1e"  # Engine.IO v4 polling record separator
SID_RE = re.compile(r"^[A-Za-z0-9_-]{20}$")
ORIGIN = "http://localhost:3000"
swift_only = pytest.mark.swift_only


# --------------------------------------------------------------------------------------------
# raw helpers
# --------------------------------------------------------------------------------------------

@dataclass
class Resp:
    status: int
    headers: "aiohttp.typedefs.CIMultiDictProxy"
    body: bytes

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


async def request(http, method, url, data=None, headers=None, timeout=TIMEOUT):
    async def go():
        async with http.request(method, url, data=data, headers=headers or {}) as r:
            return Resp(r.status, r.headers, await r.read())
    return await asyncio.wait_for(go(), timeout)


def eio_url(server, sid=None, transport="polling", extra=""):
    url = f"{server.url}/socket.io/?EIO=4&transport={transport}&t=T{time.monotonic_ns()}"
    if sid:
        url += f"&sid={sid}"
    return url + extra


def split_payload(text):
    """A polling body -> packets; 'b'+base64 packets decoded to bytes."""
    out = []
    for p in text.split(RS):
        out.append(base64.b64decode(p[1:]) if p.startswith("b") else p)
    return out


def parse_open(pkt):
    assert isinstance(pkt, str) and pkt.startswith("0"), f"not an open packet: {pkt!r}"
    return json.loads(pkt[1:])


def sio_event(pkt):
    """'42[...]' -> list (event name, args...)."""
    assert isinstance(pkt, str) and pkt.startswith("42"), f"not a Socket.IO EVENT: {pkt!r}"
    return json.loads(pkt[2:])


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Raw:
    """One raw Engine.IO session, polling or websocket, exchanging whole packets."""

    def __init__(self, http, server, mode):
        self.http, self.server, self.mode = http, server, mode
        self.sid = None
        self.open = None
        self.ws = None
        self.buffer = []

    @classmethod
    async def open_session(cls, http, server, mode, headers=None):
        self = cls(http, server, mode)
        if mode == "polling":
            r = await request(http, "GET", eio_url(server), headers=headers)
            assert r.status == 200, f"handshake: {r.status} {r.text!r}"
            self.open = parse_open(r.text)
        else:
            self.ws = await asyncio.wait_for(
                http.ws_connect(eio_url(server, transport="websocket"), headers=headers,
                                autoping=True), TIMEOUT)
            self.open = parse_open(await self.recv())
        self.sid = self.open["sid"]
        return self

    async def send(self, *packets):
        if self.mode == "polling":
            body = RS.join(p if isinstance(p, str) else "b" + base64.b64encode(p).decode()
                           for p in packets)
            r = await request(self.http, "POST", eio_url(self.server, self.sid),
                              data=body.encode(), headers={"Content-Type": "text/plain;charset=UTF-8"})
            assert r.status == 200, f"POST {body[:80]!r}: {r.status} {r.text!r}"
            assert r.text.lower() == "ok"
            if SWIFT:
                assert r.text == "ok"
        else:
            for p in packets:
                if isinstance(p, str):
                    await self.ws.send_str(p)
                else:
                    await self.ws.send_bytes(p)

    async def recv(self, timeout=TIMEOUT, skip_pings=False):
        """Next packet (str, or bytes for binary)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no packet within {timeout}s ({self.mode})")
            if self.mode == "polling":
                if not self.buffer:
                    r = await request(self.http, "GET", eio_url(self.server, self.sid),
                                      timeout=left)
                    assert r.status == 200, f"GET: {r.status} {r.text!r}"
                    self.buffer.extend(split_payload(r.text))
                pkt = self.buffer.pop(0)
            else:
                msg = await asyncio.wait_for(self.ws.receive(), left)
                if msg.type == WSMsgType.TEXT:
                    pkt = msg.data
                elif msg.type == WSMsgType.BINARY:
                    pkt = bytes(msg.data)
                else:
                    raise AssertionError(f"websocket ended: {msg.type} {msg.data!r} {msg.extra!r}")
            if skip_pings and pkt == "2":
                await self.send("3")
                continue
            return pkt

    async def connect(self):
        await self.send("40")
        pkt = await self.recv()
        assert pkt.startswith("40{"), f"CONNECT answer: {pkt!r}"
        return json.loads(pkt[2:])["sid"]

    async def close(self):
        if self.ws is not None and not self.ws.closed:
            try:
                await asyncio.wait_for(self.ws.close(), 2)
            except Exception:
                pass


async def raw_join_in_order(room, members):
    """join_room one after the other; each member reads the user_joined of itself and of every
    later joiner."""
    joined = []
    for who, raw in members:
        await raw.send("42" + compact(["join_room", {"roomName": room, "personName": who}]))
        for _, r in joined + [(who, raw)]:
            ev = sio_event(await r.recv())
            assert ev[0] == "user_joined" and ev[1]["personName"] == who, ev
        joined.append((who, raw))


async def ws_closed_within(ws, timeout):
    """True when the websocket gets closed by the server within timeout (other frames are
    read and dropped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = await asyncio.wait_for(ws.receive(), deadline - time.monotonic())
        except (asyncio.TimeoutError, TimeoutError):
            return False
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return True
    return False


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def raws(http):
    made = []

    async def make(server, mode, headers=None):
        r = await Raw.open_session(http, server, mode, headers)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.close()


def acao_ok(resp, origin=ORIGIN):
    v = resp.headers.get("Access-Control-Allow-Origin")
    assert v in (origin, "*"), f"Access-Control-Allow-Origin = {v!r}"


# --------------------------------------------------------------------------------------------
# handshake
# --------------------------------------------------------------------------------------------

def check_open_values(o, upgrades, ping_interval=25000, ping_timeout=20000, max_payload=1000000):
    assert set(o) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}, o
    assert SID_RE.match(o["sid"]), f"sid {o['sid']!r}"
    assert o["upgrades"] == upgrades
    assert o["pingInterval"] == ping_interval
    assert o["pingTimeout"] == ping_timeout
    assert o["maxPayload"] == max_payload


async def test_polling_handshake(server, http):
    r = await request(http, "GET", eio_url(server))
    assert r.status == 200
    assert r.headers.get("Content-Type", "").replace(" ", "").lower() == "text/plain;charset=utf-8"
    check_open_values(parse_open(r.text), ["websocket"])
    r2 = await request(http, "GET", eio_url(server))
    assert parse_open(r2.text)["sid"] != parse_open(r.text)["sid"]


async def test_websocket_handshake(server, http):
    ws = await asyncio.wait_for(http.ws_connect(eio_url(server, transport="websocket")), TIMEOUT)
    try:
        msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert msg.type == WSMsgType.TEXT, msg
        check_open_values(parse_open(msg.data), [])
    finally:
        await ws.close()


@swift_only
@pytest.mark.parametrize("mode,upgrades", [("polling", '["websocket"]'), ("websocket", "[]")])
async def test_handshake_exact_bytes(server, http, mode, upgrades):
    """Key order as Node: sid, upgrades, pingInterval, pingTimeout, maxPayload (fixture 01/07)."""
    if mode == "polling":
        r = await request(http, "GET", eio_url(server))
        body = r.text
        assert r.headers.get("Content-Type") == "text/plain; charset=UTF-8"
    else:
        ws = await asyncio.wait_for(http.ws_connect(eio_url(server, transport="websocket")), TIMEOUT)
        body = (await asyncio.wait_for(ws.receive(), TIMEOUT)).data
        await ws.close()
    assert re.fullmatch(r'0\{"sid":"[A-Za-z0-9_-]{20}","upgrades":' + re.escape(upgrades)
                        + r',"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000\}',
                        body), body


async def test_handshake_reflects_flags(server_factory, http):
    s = server_factory("--ping-interval", "1234", "--ping-timeout", "567", "--max-payload", "4321")
    r = await request(http, "GET", eio_url(s))
    assert r.status == 200
    check_open_values(parse_open(r.text), ["websocket"], 1234, 567, 4321)


# --------------------------------------------------------------------------------------------
# Socket.IO CONNECT / namespaces
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["polling", "websocket"])
async def test_socketio_connect(server, raws, mode):
    raw = await raws(server, mode)
    sio_sid = await raw.connect()
    assert SID_RE.match(sio_sid), sio_sid
    assert sio_sid != raw.sid, "Socket.IO sid must differ from the Engine.IO sid"
    if SWIFT:
        # exact bytes: 40{"sid":"..."}
        await raw.send('42["join_room",{"roomName":"r-exact","personName":"p"}]')
        pkt = await raw.recv()
        assert pkt == ('42["user_joined",{"personName":"p","roomName":"r-exact","socketId":"'
                       + sio_sid + '"}]'), pkt


@pytest.mark.parametrize("mode", ["polling", "websocket"])
async def test_unknown_namespace(server, raws, mode):
    raw = await raws(server, mode)
    await raw.send("40/nope,")
    pkt = await raw.recv()
    assert pkt.startswith("44/nope,"), pkt
    if SWIFT:
        assert pkt == '44/nope,{"message":"Invalid namespace"}'
    # the connection stays usable for the default namespace
    assert SID_RE.match(await raw.connect())


# --------------------------------------------------------------------------------------------
# long-polling framing
# --------------------------------------------------------------------------------------------

async def test_held_get_released_by_data(server, http, raws):
    raw = await raws(server, "polling")
    sio_sid = await raw.connect()
    get = asyncio.ensure_future(request(http, "GET", eio_url(server, raw.sid)))
    await asyncio.sleep(0.5)
    assert not get.done(), f"GET was not held: {get.result() if get.done() else None}"
    room = unique()
    await raw.send(f'42["join_room",{{"roomName":"{room}","personName":"p"}}]')
    r = await asyncio.wait_for(get, TIMEOUT)
    assert r.status == 200
    pkts = split_payload(r.text)
    assert sio_event(pkts[0]) == ["user_joined", {"personName": "p", "roomName": room,
                                                  "socketId": sio_sid}]


async def test_post_several_packets_get_joined_with_record_separator(server, http, raws):
    raw = await raws(server, "polling")
    sio_sid = await raw.connect()
    room = unique()
    join = compact(["join_room", {"personName": "alice", "roomName": room}])
    msg = compact(["message", {"personName": "alice", "roomName": room, "content": "hello"}])
    r = await request(http, "POST", eio_url(server, raw.sid), data=("42" + join + RS + "42" + msg).encode(),
                      headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert r.status == 200 and r.text.lower() == "ok", (r.status, r.text)
    if SWIFT:
        assert r.text == "ok"
    await asyncio.sleep(0.3)  # both answers are queued before the GET
    g = await request(http, "GET", eio_url(server, raw.sid))
    assert g.status == 200
    pkts = g.text.split(RS)
    assert len(pkts) == 2, f"expected 2 packets joined by 0x1E, got {g.text!r}"
    assert sio_event(pkts[0]) == ["user_joined", {"personName": "alice", "roomName": room,
                                                  "socketId": sio_sid}]
    ev = sio_event(pkts[1])
    assert ev[0] == "message" and ev[1]["content"] == "hello" and ev[1]["personName"] == "alice"
    if SWIFT:
        assert pkts[0] == ('42["user_joined",{"personName":"alice","roomName":"' + room
                           + '","socketId":"' + sio_sid + '"}]')
        assert re.fullmatch(r'42\["message",\{"personName":"alice","content":"hello",'
                            r'"timestamp":"[^"]+ GMT"\}\]', pkts[1]), pkts[1]


@pytest.mark.parametrize("receiver_mode", ["polling", "websocket"])
async def test_binary_attachment_relay(server, raws, receiver_mode):
    """Polling carries binary as 'b'+base64, websocket as binary frames (fixtures 05 and 08)."""
    alice = await raws(server, "polling")
    bob = await raws(server, receiver_mode)
    await alice.connect()
    await bob.connect()
    room = unique()
    await raw_join_in_order(room, [("alice", alice), ("bob", bob)])

    header = "451-" + compact(["message", {"roomName": room, "personName": "alice",
                                           "content": {"_placeholder": True, "num": 0}}])
    # alice posts header + attachment in one POST: 451-[...]<RS>bAQIDBA==
    await alice.send(header, b"\x01\x02\x03\x04")
    for raw in (bob, alice):
        pkt = await raw.recv()
        assert isinstance(pkt, str) and pkt.startswith("451-"), pkt
        ev = json.loads(pkt[4:])
        assert ev[0] == "message"
        assert list(ev[1]) == ["personName", "content", "timestamp"]
        assert ev[1]["personName"] == "alice"
        assert ev[1]["content"] == {"_placeholder": True, "num": 0}
        att = await raw.recv()
        assert att == b"\x01\x02\x03\x04", f"attachment on {raw.mode}: {att!r}"


async def test_websocket_binary_frames(server, raws):
    alice = await raws(server, "websocket")
    bob = await raws(server, "websocket")
    alice_sid = await alice.connect()
    bob_sid = await bob.connect()
    room = unique()
    await raw_join_in_order(room, [("alice", alice), ("bob", bob)])
    # two attachments, placeholders out of order (fixture 08)
    header = "452-" + compact(["offer", {"offer": {"type": "offer", "sdp": "v=0\r\n"},
                                         "fromPeer": alice_sid, "toPeer": bob_sid,
                                         "a": {"_placeholder": True, "num": 1},
                                         "b": [{"_placeholder": True, "num": 0}]}])
    await alice.send(header, b"\x00\xff", b"second")
    pkt = await bob.recv()
    assert pkt.startswith("452-"), pkt
    ev = json.loads(pkt[4:])
    assert ev[0] == "offer" and ev[1]["toPeer"] == bob_sid
    atts = [await bob.recv(), await bob.recv()]
    assert all(isinstance(a, bytes) for a in atts), atts
    # resolve placeholders: a -> b"second", b[0] -> b"\x00\xff"
    assert atts[ev[1]["a"]["num"]] == b"second"
    assert atts[ev[1]["b"][0]["num"]] == b"\x00\xff"


# --------------------------------------------------------------------------------------------
# upgrade polling -> websocket
# --------------------------------------------------------------------------------------------

async def test_upgrade_probe_releases_held_get_with_noop(server, http, raws):
    raw = await raws(server, "polling")
    sio_sid = await raw.connect()
    held = asyncio.ensure_future(request(http, "GET", eio_url(server, raw.sid)))
    await asyncio.sleep(0.3)
    assert not held.done(), "GET not held"

    ws = await asyncio.wait_for(http.ws_connect(eio_url(server, raw.sid, "websocket")), TIMEOUT)
    try:
        await ws.send_str("2probe")
        msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert (msg.type, msg.data) == (WSMsgType.TEXT, "3probe")
        r = await asyncio.wait_for(held, TIMEOUT)
        assert r.status == 200
        assert r.text == "6", f"held GET released with {r.text!r}, expected noop '6'"
        await ws.send_str("5")
        room = unique()
        await ws.send_str("42" + compact(["join_room", {"roomName": room, "personName": "up"}]))
        msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert msg.type == WSMsgType.TEXT
        assert sio_event(msg.data) == ["user_joined", {"personName": "up", "roomName": room,
                                                       "socketId": sio_sid}]
        # polling is refused once upgraded
        g = await request(http, "GET", eio_url(server, raw.sid))
        assert g.status == 400, (g.status, g.text)
        if SWIFT:
            assert g.json() == {"code": 3, "message": "Bad request"}
    finally:
        await ws.close()


async def test_websocket_with_unknown_sid_refused(server, http):
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        ws = await asyncio.wait_for(
            http.ws_connect(eio_url(server, "doesnotexist", "websocket")), TIMEOUT)
        await ws.close()
    assert e.value.status == 400


# --------------------------------------------------------------------------------------------
# heartbeat (server started with --ping-interval 300 --ping-timeout 300)
# --------------------------------------------------------------------------------------------

async def test_ws_ping_pong_keeps_session(short_ping_server, raws):
    raw = await raws(short_ping_server, "websocket")
    assert raw.open["pingInterval"] == 300 and raw.open["pingTimeout"] == 300
    sio_sid = await raw.connect()
    pings = 0
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        try:
            pkt = await raw.recv(timeout=t_end - time.monotonic())
        except (AssertionError, asyncio.TimeoutError, TimeoutError):
            break
        assert pkt == "2", f"unexpected packet {pkt!r}"
        pings += 1
        await raw.send("3")
    assert pings >= 3, f"only {pings} pings in 2 s with pingInterval 300"
    room = unique()
    await raw.send("42" + compact(["join_room", {"roomName": room, "personName": "hb"}]))
    assert sio_event(await raw.recv(skip_pings=True))[1]["socketId"] == sio_sid


async def test_ws_without_pong_is_closed(short_ping_server, http):
    ws = await asyncio.wait_for(
        http.ws_connect(eio_url(short_ping_server, transport="websocket")), TIMEOUT)
    try:
        t0 = time.monotonic()
        assert (await asyncio.wait_for(ws.receive(), TIMEOUT)).data.startswith("0")
        await ws.send_str("40")
        assert (await asyncio.wait_for(ws.receive(), TIMEOUT)).data.startswith("40")
        msg = await asyncio.wait_for(ws.receive(), 2)
        assert (msg.type, msg.data) == (WSMsgType.TEXT, "2"), msg
        # no pong: closed after pingTimeout (300 ms); allow generous slack
        assert await ws_closed_within(ws, 3.0), "session not closed after missing pong"
        assert time.monotonic() - t0 < 4.0
    finally:
        await ws.close()


async def test_polling_ping_released_get_and_pong(short_ping_server, http, raws):
    raw = await raws(short_ping_server, "polling")
    await raw.connect()
    pings = 0
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        r = await request(http, "GET", eio_url(short_ping_server, raw.sid), timeout=2)
        assert r.status == 200, (r.status, r.text)
        pkts = split_payload(r.text)
        assert "2" in pkts, f"held GET released without ping: {r.text!r}"
        pings += pkts.count("2")
        await raw.send("3")
    assert pings >= 3
    # still alive
    await raw.send("42" + compact(["join_room", {"roomName": unique(), "personName": "hb"}]))
    assert sio_event(await raw.recv(skip_pings=True))[0] == "user_joined"


async def test_polling_without_pong_session_closed(short_ping_server, http):
    r = await request(http, "GET", eio_url(short_ping_server))
    sid = parse_open(r.text)["sid"]
    g = await request(http, "GET", eio_url(short_ping_server, sid), timeout=2)
    assert g.text == "2", g.text
    await asyncio.sleep(1.5)  # > pingTimeout, with slack: no pong sent
    after = await request(http, "GET", eio_url(short_ping_server, sid), timeout=2)
    closed = after.status == 400 or (after.status == 200 and "1" in after.text.split(RS))
    assert closed, f"session still open after missed pong: {after.status} {after.text!r}"
    if SWIFT:
        assert after.status == 400 and after.json() == {"code": 1, "message": "Session ID unknown"}


async def test_socketio_client_survives_heartbeats(short_ping_server, transport):
    c = Client(short_ping_server.url, transport, "hb")
    try:
        await c.connect()
        await asyncio.sleep(2.0)  # ~6 ping intervals
        assert c.sio.connected and not c.disconnected.is_set()
        await c.join(unique())
    finally:
        await c.close()


# --------------------------------------------------------------------------------------------
# error answers
# --------------------------------------------------------------------------------------------

ERRORS = [
    # method, query, code, message
    ("GET", "EIO=4&transport=foo", 0, "Transport unknown"),
    pytest.param("GET", "EIO=4", 0, "Transport unknown",  # python-engineio defaults to polling
                 marks=pytest.mark.swift_only),
    ("GET", "EIO=4&transport=polling&sid=doesnotexist", 1, "Session ID unknown"),
    ("POST", "EIO=4&transport=polling&sid=doesnotexist", 1, "Session ID unknown"),
    ("POST", "EIO=4&transport=polling", 2, "Bad handshake method"),
    pytest.param("PUT", "EIO=4&transport=polling", 2, "Bad handshake method",
                 marks=pytest.mark.swift_only),
    ("GET", "EIO=4&transport=websocket", 3, "Bad request"),  # websocket without Upgrade
    ("GET", "EIO=3&transport=polling", 5, "Unsupported protocol version"),
    ("GET", "EIO=5&transport=polling", 5, "Unsupported protocol version"),
    ("GET", "transport=polling", 5, "Unsupported protocol version"),
]


@pytest.mark.parametrize("method,query,code,message", ERRORS)
async def test_engineio_error_answers(server, http, method, query, code, message):
    data = b"40" if method in ("POST", "PUT") else None
    r = await request(http, method, f"{server.url}/socket.io/?{query}", data=data,
                      headers={"Origin": ORIGIN})
    assert r.status == 400, f"{method} ?{query}: {r.status} {r.text!r}"
    if SWIFT:
        assert r.headers.get("Content-Type", "").startswith("application/json")
        assert r.json() == {"code": code, "message": message}
        assert list(r.json()) == ["code", "message"]
        acao_ok(r)


@swift_only
async def test_transport_mismatch_code_3(server, http):
    r = await request(http, "GET", eio_url(server))
    sid = parse_open(r.text)["sid"]
    e = await request(http, "GET", eio_url(server, sid, "websocket"))  # no Upgrade header
    assert e.status == 400
    assert e.json() == {"code": 3, "message": "Bad request"}


# --------------------------------------------------------------------------------------------
# CORS
# --------------------------------------------------------------------------------------------

async def test_cors_on_polling_requests(server, http):
    h = {"Origin": ORIGIN}
    r = await request(http, "GET", eio_url(server), headers=h)
    acao_ok(r)
    sid = parse_open(r.text)["sid"]
    p = await request(http, "POST", eio_url(server, sid), data=b"40",
                      headers={**h, "Content-Type": "text/plain;charset=UTF-8"})
    assert p.status == 200
    acao_ok(p)
    g = await request(http, "GET", eio_url(server, sid), headers=h)
    assert g.status == 200 and g.text.startswith("40{")
    acao_ok(g)


async def test_cors_on_error_answer(server, http):
    r = await request(http, "GET", eio_url(server, "doesnotexist"), headers={"Origin": ORIGIN})
    assert r.status == 400
    acao_ok(r)


@pytest.mark.parametrize("sid", [None, "doesnotexist"])
async def test_cors_preflight(server, http, sid):
    if sid and not SWIFT:
        pytest.skip("swift_only: Node answers the preflight before looking at the sid")
    r = await request(http, "OPTIONS", eio_url(server, sid), headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    if SWIFT:
        assert r.status == 204, (r.status, r.text)
    else:
        assert r.status in (200, 204), (r.status, r.text)
    acao_ok(r)
    methods = {m.strip().upper() for m in r.headers.get("Access-Control-Allow-Methods", "").split(",")}
    assert {"GET", "POST"} <= methods, r.headers.get("Access-Control-Allow-Methods")
    assert "content-type" in r.headers.get("Access-Control-Allow-Headers", "").lower()


# --------------------------------------------------------------------------------------------
# payload limit
# --------------------------------------------------------------------------------------------

async def test_oversize_post_refused_server_alive(server, http):
    r = await request(http, "GET", eio_url(server))
    sid = parse_open(r.text)["sid"]
    big = b"4" + b"a" * 1_000_000  # 1 000 001 bytes > maxPayload 1e6
    p = await request(http, "POST", eio_url(server, sid), data=big,
                      headers={"Content-Type": "text/plain;charset=UTF-8"}, timeout=15)
    if SWIFT:
        assert p.status == 413, (p.status, p.text[:200])
    else:
        assert p.status >= 400, (p.status, p.text[:200])
    # the server is still alive and serving
    r2 = await request(http, "GET", eio_url(server))
    assert r2.status == 200 and parse_open(r2.text)["sid"]
    assert server.alive()


async def test_max_payload_flag(server_factory, http, raws):
    s = server_factory("--max-payload", "2048")  # the Swift CLI refuses < 1024
    r = await request(http, "GET", eio_url(s))
    o = parse_open(r.text)
    assert o["maxPayload"] == 2048
    p = await request(http, "POST", eio_url(s, o["sid"]), data=b"4" + b"x" * 4095,
                      headers={"Content-Type": "text/plain;charset=UTF-8"})
    if SWIFT:
        assert p.status == 413, (p.status, p.text[:200])
    else:
        assert p.status >= 400, (p.status, p.text[:200])
    # a payload under the limit is accepted, on a fresh session
    raw = await raws(s, "polling")
    await raw.connect()
    room = unique()
    await raw.send("42" + compact(["message", {"roomName": room, "personName": "p",
                                               "content": "y" * 1800}]))
    assert s.alive()
