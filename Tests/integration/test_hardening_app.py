"""Issue 11, the signaling application's findings (validation, identity, JSON, JWT), against the real binary.

- Finding 2: a room named after a socket id (ids are in rosters and user_joined) was joinable, and its members got
  that socket's offers, answers and ICE and could `message` it; on one node and across nodes, both Redis modes.
- Finding 3: duplicate JSON keys: `{"fromPeer":"x","fromPeer":P}` was relayed with the first overwritten and the
  second kept (the browser's JSON.parse keeps the last); a duplicate nested key (`offer.sdp`) carried an
  unvalidated value along.
- Finding 4: limits counted grapheme clusters (`"a" + "\\u0301" * N` is one character); a re-join answered the whole
  roster from Redis every time.
- Finding 11: JWT failed open: string `exp`, no `exp`, a non-list `rooms` claim, a socket outliving its token,
  unlimited failed CONNECTs, no `aud`/`iss` checks.
- Finding 12 (TURN): credentials must not reach clients without a valid token, nor outlive the token.

Negative checks ("X did not get E") come after a fence (conftest's `fence()` on one node, cluster.py's `settle()`
across nodes).
"""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
import requests

from cluster import (_module_cluster, cluster, cluster_clients, cluster_factory,  # noqa: F401
                     RespClient, encode_command)
from conftest import SWIFT, TIMEOUT, Client, unique
from test_ops import AUTH_ERROR, claims, connect_with, make_jwt, refused_with
from test_presence import RawWebSocket, assert_refusal, refused_with_ack, refused_without_ack

pytestmark = pytest.mark.skipif(not SWIFT, reason="issue 11 checks need signal-node (SIGNAL_SERVER=swift)")

SIGNALS = ["offer", "answer", "ice_candidate", "ice-candidate"]
SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n"


def offer(kind, to):
    return {kind: {"type": kind, "sdp": SDP}, "toPeer": to}


def ice(to):
    return {"iccCandidate": {"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdpMid": "0",
                             "sdpMLineIndex": 0}, "toPeer": to}


# --------------------------------------------------------------------------------------------
# Finding 2: a room named after a socket id
# --------------------------------------------------------------------------------------------

async def spy_on_victim(alice, victim, eve, settle):
    """Alice and the victim share a room; Eve tries to join a room named after the victim's id. Eve must be
    refused (`invalid_room_name`), get none of the signals Alice sends the victim, and must not be able to
    `message` the victim's id room."""
    room = unique("f2")
    for c in (alice, victim):
        ack = await c.emit_with_ack("join_room", {"roomName": room, "personName": c.name})
        assert ack[0].get("roomName") == room, ack
    await settle()
    eve_ack = await eve.emit_with_ack("join_room", {"roomName": victim.sid, "personName": "eve"})
    eve_msg = await eve.emit_with_ack("message", {"roomName": victim.sid, "content": "psst"})
    await settle()
    for kind in ("offer", "answer"):
        assert await alice.emit_with_ack(kind, offer(kind, victim.sid)) == [{"ok": True}]
        assert (await victim.expect(kind))["fromPeer"] == alice.sid
    assert await alice.emit_with_ack("ice_candidate", ice(victim.sid)) == [{"ok": True}]
    for name in ("ice_candidate", "ice-candidate"):
        assert (await victim.expect(name))["fromPeer"] == alice.sid
    await settle()
    eve.assert_none(*SIGNALS)
    victim.assert_none("message")
    assert_refusal(eve_ack[0], "join_room", "invalid_room_name")
    assert_refusal(eve_msg[0], "message", "not_in_room")


async def test_f2_room_named_after_a_socket_id_refused_on_one_node(server, clients):
    """Finding 2: on one node, joining a room named after another socket's id is refused and its signals
    reach only that socket."""
    alice = await clients.new("websocket", "alice")
    victim = await clients.new("polling", "victim")
    eve = await clients.new("websocket", "eve")

    async def settle():
        for c in (alice, victim, eve):
            await c.fence()

    await spy_on_victim(alice, victim, eve, settle)


async def test_f2_room_named_after_a_socket_id_refused_across_nodes(cluster, cluster_clients):
    """Finding 2: across nodes, in both Redis modes (the `cluster` fixture runs once per mode): Eve on n3
    cannot join the id room of a victim on n2, nor receive what Alice on n1 sends it."""
    n1, n2, n3 = cluster
    alice = await cluster_clients.new(n1, "websocket", "alice")
    victim = await cluster_clients.new(n2, "polling", "victim")
    eve = await cluster_clients.new(n3, "websocket", "eve")
    eve_local = await cluster_clients.new(n2, "websocket", "eve2")  # and on the victim's own node
    ack = await eve_local.emit_with_ack("join_room", {"roomName": victim.sid, "personName": "eve2"})
    assert_refusal(ack[0], "join_room", "invalid_room_name")
    await spy_on_victim(alice, victim, eve, cluster_clients.settle)
    eve_local.assert_none(*SIGNALS)


async def test_f2_socket_id_shaped_room_names_refused(server, clients):
    """Finding 2: every name of a socket id's shape (20 characters of A-Z a-z 0-9 _ -) is refused, with or
    without an ack, whether or not such a socket is live; names of other shapes are fine."""
    c = await clients.new("websocket", "c")
    for name in ["abcdefghij0123456789", "AAAAAAAAAAAAAAAAAAA-", "__________________-_", c.sid]:
        await refused_with_ack(c, "join_room", {"roomName": name, "personName": "c"}, "invalid_room_name")
    await refused_without_ack(c, "join_room", {"roomName": "abcdefghij0123456789", "personName": "c"},
                              "invalid_room_name")
    for name in ["abcdefghij012345678", "abcdefghij0123456789a", "abcdefghij012345678.", "abcdefghij01234567 9"]:
        ack = await c.emit_with_ack("join_room", {"roomName": name, "personName": "c"})
        assert ack[0].get("roomName") == name, (name, ack)


# --------------------------------------------------------------------------------------------
# Finding 3: duplicate JSON keys
# --------------------------------------------------------------------------------------------

def pairs(text):
    """A JSON text decoded with every object as its list of (key, value) pairs, duplicates kept."""
    return json.loads(text, object_pairs_hook=lambda p: p)


def keys(obj_pairs):
    return [k for k, _ in obj_pairs]


async def raw_event(ws, event, timeout=TIMEOUT):
    """The next `event` as the raw JSON text of its packet (`42[...]`), without the `42`."""
    deadline = time.monotonic() + timeout
    while True:
        pkt = await ws.recv(max(0.01, deadline - time.monotonic()))
        if pkt.startswith("42") and json.loads(pkt[2:])[0] == event:
            return pkt[2:]


async def test_f3_duplicate_keys_cannot_spoof_or_smuggle(server):
    """Finding 3: one policy for client JSON, last key wins (as JSON.parse): a duplicate `fromPeer` cannot make
    the receiver see another sender, a duplicate nested `sdp` cannot carry an unvalidated value along, and what
    leaves the server has each key once."""
    alice = await RawWebSocket(server, "alice").open_socket()
    victim = await RawWebSocket(server, "victim").open_socket()
    other = await RawWebSocket(server, "other").open_socket()
    try:
        room = unique("f3")
        for ws in (alice, victim, other):
            await ws.emit("join_room", {"roomName": room, "personName": ws.name})
            assert (await ws.expect_event("user_joined"))["socketId"] == ws.sid
        # drain the user_joined of the later joiners
        await alice.expect_event("user_joined")
        await alice.expect_event("user_joined")
        await victim.expect_event("user_joined")

        # fromPeer twice: the server's value is the only one that leaves
        await alice.send('42["offer",{"offer":{"type":"offer","sdp":%s},"toPeer":"%s","fromPeer":"x",'
                         '"fromPeer":"%s"}]' % (json.dumps(SDP), victim.sid, other.sid))
        text = await raw_event(victim, "offer")
        payload = pairs(text)[1]
        assert keys(payload).count("fromPeer") == 1, text
        assert dict(payload)["fromPeer"] == alice.sid, text
        assert json.loads(text)[1]["fromPeer"] == alice.sid, text  # what JSON.parse gives the browser

        # a huge first sdp, a valid last one: the validated (last) one is the one relayed, alone
        huge = "v=0\r\n" + "a" * 150_000
        await alice.send('42["answer",{"answer":{"type":"answer","sdp":%s,"sdp":%s},"toPeer":"%s"}]'
                         % (json.dumps(huge), json.dumps(SDP), victim.sid))
        text = await raw_event(victim, "answer")
        answer = dict(pairs(text)[1])["answer"]
        assert keys(answer) == ["type", "sdp"] and dict(answer)["sdp"] == SDP, text[:200]
        assert len(text) < 10_000, f"relayed {len(text)} bytes"

        # toPeer twice: the last one is the target (what was validated is where it goes)
        await alice.send('42["offer",{"offer":{"type":"offer","sdp":%s},"toPeer":"%s","toPeer":"%s"}]'
                         % (json.dumps(SDP), other.sid, victim.sid))
        text = await raw_event(victim, "offer")
        assert keys(pairs(text)[1]) == ["offer", "toPeer", "fromPeer"], text
        # other got nothing: its next event is the fence below
        await alice.send('42["message",{"roomName":"%s","content":"fence","content":"fence-last"}]' % room)
        pkt = await other.recv()
        assert pkt.startswith("42"), pkt
        nxt = json.loads(pkt[2:])
        assert nxt[0] == "message" and nxt[1]["content"] == "fence-last", nxt

        # join_room with roomName twice: the last one is joined
        second = unique("f3-last")
        await victim.send('42["join_room",{"roomName":"%s","personName":"v","roomName":"%s"}]'
                          % (unique("f3-first"), second))
        assert (await victim.expect_event("user_joined"))["roomName"] == second
    finally:
        for ws in (alice, victim, other):
            ws.drop()


# --------------------------------------------------------------------------------------------
# Finding 4: limits in UTF-16 code units; roster amplification
# --------------------------------------------------------------------------------------------

async def test_f4_limits_count_utf16_code_units(server, clients):
    """Finding 4: names and content are measured in UTF-16 code units, like the browser's `.length`: combining
    marks count, and an emoji outside the BMP counts 2 (defaults: room 128, person 64, content 10,000)."""
    c = await clients.new("websocket", "c")
    room = unique("f4")
    await refused_with_ack(c, "join_room", {"roomName": room, "personName": "a" + "\u0301" * 64},
                           "person_name_too_long")
    await refused_with_ack(c, "join_room", {"roomName": "r" + "\u0301" * 128, "personName": "c"},
                           "room_name_too_long")
    await refused_with_ack(c, "join_room", {"roomName": room, "personName": "\U0001F600" * 33},
                           "person_name_too_long")
    ack = await c.emit_with_ack("join_room", {"roomName": room, "personName": "\U0001F600" * 32})
    assert ack[0].get("roomName") == room, ack
    await refused_with_ack(c, "message", {"roomName": room, "content": "a" + "\u0301" * 10_000},
                           "content_too_long")
    await refused_with_ack(c, "message", {"roomName": room, "content": "\U0001F600" * 5_001},
                           "content_too_long")
    assert await c.emit_with_ack("message", {"roomName": room, "content": "\U0001F600" * 5_000}) == [{"ok": True}]


async def monitor(port):
    """A MONITOR connection; returns (client, lines) where lines fills in the background."""
    conn = await RespClient.connect(port)
    conn.writer.write(encode_command("MONITOR"))
    await conn.writer.drain()
    assert await asyncio.wait_for(conn.read_value(), TIMEOUT) == "OK"
    lines = []

    async def read():
        try:
            while True:
                lines.append(await conn.read_value())
        except Exception:
            pass

    return conn, lines, asyncio.create_task(read())


async def test_f4_rejoin_reads_no_roster(cluster_factory):
    """Finding 4: re-joining a room one is in is answered `already_in_room` at once: 30 re-joins cause no
    Redis command about that room (they did 30 roster reads)."""
    c1 = cluster_factory("pattern", n=1)
    node = c1[0]
    a = Client(node.url, "websocket", "a")
    b = Client(node.url, "polling", "b")
    await a.connect()
    await b.connect()
    conn, lines, task = await monitor(c1.redis.port)
    try:
        room = unique("f4-re-join")
        await a.join(room)
        await b.join(room)
        await a.expect("user_joined")
        await a.fence()
        before = sum(1 for line in lines if room in str(line))
        assert before > 0, "MONITOR saw no command about the room"
        for _ in range(30):
            ack = await a.emit_with_ack("join_room", {"roomName": room, "personName": "a"})
            assert_refusal(ack[0], "join_room", "already_in_room")
        await a.fence()
        await asyncio.sleep(0.2)  # MONITOR lines travel on their own connection
        after = sum(1 for line in lines if room in str(line))
        assert after - before <= 1, f"{after - before} Redis commands about the room for 30 re-joins"
        # still a member, once
        assert await b.emit_with_ack("message", {"roomName": room, "content": "hi"}) == [{"ok": True}]
        assert (await a.expect("message"))["content"] == "hi"
        await a.fence()
        a.assert_none("message", "user_joined")
    finally:
        task.cancel()
        await conn.close()
        await a.close()
        await b.close()


# --------------------------------------------------------------------------------------------
# Finding 11: JWT
# --------------------------------------------------------------------------------------------

SECRET = "f11-secret-0123456789abcdef"


def raw_jwt(claims_json, secret=SECRET):
    """An HS256 token over exactly these claim bytes (duplicate keys and all)."""
    b64 = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(claims_json)
    return signing + "." + b64(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest())


def token(**kw):
    return make_jwt(claims(**kw), secret=SECRET)


@pytest.fixture
def jwt_server(server_factory):
    return server_factory("--jwt-secret", SECRET)


async def test_f11_claims_of_the_wrong_type_refused(jwt_server):
    """Finding 11: `exp` and `nbf` must be numbers and `rooms` a list of strings; anything else refuses the
    token (a string `exp` in the past was accepted, a `rooms` string allowed every room)."""
    past = int(time.time()) - 3600
    bad = {
        "string exp in the past": make_jwt({"sub": "s", "exp": str(past)}, secret=SECRET),
        "string exp in the future": make_jwt({"sub": "s", "exp": str(past + 7200)}, secret=SECRET),
        "boolean exp": make_jwt({"sub": "s", "exp": True}, secret=SECRET),
        "null exp": make_jwt({"sub": "s", "exp": None}, secret=SECRET),
        "string nbf": token(nbf=str(past + 7200)),
        "rooms a string": token(rooms="any-room"),
        "rooms an object": token(rooms={"a": 1}),
        "rooms with a number": token(rooms=["a", 5]),
        "rooms null": token(rooms=None),
        # a duplicate claim: JSON.parse (and so every JS issuer and verifier) keeps the last one
        "exp twice, last in the past": raw_jwt(b'{"sub":"s","exp":%d,"exp":%d}' % (past + 7200, past)),
    }
    accepted = []
    for what, tok in bad.items():
        try:
            message = await refused_with(jwt_server.url, auth={"token": tok})
            assert message.startswith(AUTH_ERROR), (what, message)
        except AssertionError as e:
            if "connected with" in str(e):
                accepted.append(what)
            else:
                raise
    assert not accepted, f"accepted: {accepted}"


async def test_f11_exp_required_unless_told_otherwise(server_factory):
    """Finding 11: a token without `exp` is refused by default; `--jwt-require-exp false` accepts it."""
    strict = server_factory("--jwt-secret", SECRET)
    message = await refused_with(strict.url, auth={"token": make_jwt({"sub": "s"}, secret=SECRET)})
    assert message.startswith(AUTH_ERROR) and "exp" in message, message
    lax = server_factory("--jwt-secret", SECRET, "--jwt-require-exp", "false")
    c = await connect_with(lax.url, auth={"token": make_jwt({"sub": "s"}, secret=SECRET)})
    await c.close()


async def test_f11_audience_and_issuer(server_factory):
    """Finding 11: with `--jwt-audience` and `--jwt-issuer`, `aud` (a string or a list) must name the audience
    and `iss` must equal the issuer."""
    s = server_factory("--jwt-secret", SECRET, "--jwt-audience", "signal", "--jwt-issuer", "https://auth.example")
    iss = "https://auth.example"
    for what, tok in {
        "no aud": token(iss=iss),
        "other aud": token(iss=iss, aud="other"),
        "aud list without us": token(iss=iss, aud=["a", "b"]),
        "aud a number": token(iss=iss, aud=5),
        "no iss": token(aud="signal"),
        "other iss": token(aud="signal", iss="https://evil.example"),
    }.items():
        message = await refused_with(s.url, auth={"token": tok})
        assert message.startswith(AUTH_ERROR), (what, message)
    for tok in (token(iss=iss, aud="signal"), token(iss=iss, aud=["x", "signal"])):
        c = await connect_with(s.url, auth={"token": tok})
        await c.close()


async def test_f11_socket_disconnected_when_its_token_expires(server_factory):
    """Finding 11: a socket is disconnected when its token's `exp` (plus the leeway) passes; until then it
    works."""
    s = server_factory("--jwt-secret", SECRET, "--jwt-leeway", "0")
    exp = int(time.time()) + 3
    c = await connect_with(s.url, auth={"token": make_jwt({"sub": "s", "exp": exp}, secret=SECRET)})
    long_lived = await connect_with(s.url, auth={"token": token()})
    try:
        await c.join(unique("f11"))
        await asyncio.wait_for(c.disconnected.wait(), exp - time.time() + 5)
        assert time.time() >= exp - 1, "disconnected before the token expired"
        assert not c.sio.connected
        await long_lived.fence()  # the other socket, whose token is valid, is unaffected
        assert long_lived.sio.connected
    finally:
        await c.close()
        await long_lived.close()


async def test_f11_failed_connects_close_the_session(jwt_server):
    """Finding 11: a session that sends 3 refused CONNECTs is closed (it could try tokens without limit)."""
    ws = RawWebSocket(jwt_server, "guess")
    status, body = await ws.connect()
    assert status == 101, body
    assert (await ws.recv()).startswith("0")
    try:
        for i in range(3):
            await ws.send("40" + json.dumps({"token": f"guess-{i}"}))
            got = await ws.recv()
            assert got.startswith("44"), got
        closed = False
        try:
            await ws.send("40" + json.dumps({"token": token()}))
            while True:
                got = await ws.recv()
                assert not got.startswith("40"), f"connected after 3 refused CONNECTs: {got}"
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            closed = True
        assert closed
    finally:
        ws.drop()


# --------------------------------------------------------------------------------------------
# Finding 12: TURN credentials
# --------------------------------------------------------------------------------------------

TURN = ["--stun-urls", "stun:s.example:3478", "--turn-urls", "turn:t.example:3478", "--turn-secret", "turn-sekrit",
        "--turn-ttl", "86400"]


async def test_f12_turn_credentials_need_a_valid_token_and_expire_with_it(server_factory):
    """Finding 12: with JWT on, a client without a valid token gets no TURN credentials (no ice_servers, nothing
    over HTTP), and the credentials a client gets expire no later than its token."""
    s = server_factory("--jwt-secret", SECRET, *TURN)
    # refused CONNECTs, on a raw socket that shows every packet: nothing but CONNECT_ERROR
    ws = RawWebSocket(s, "anon")
    status, body = await ws.connect()
    assert status == 101, body
    opened = await ws.recv()
    assert opened.startswith("0") and "turn" not in opened, opened
    for auth in ({}, {"token": "bad"}):
        await ws.send("40" + json.dumps(auth))
        got = await ws.recv()
        assert got.startswith("44") and "turn" not in got and "credential" not in got, got
    ws.drop()
    for path in ("/", "/config.js", "/healthz", "/readyz", "/metrics", "/socket.io/?EIO=4&transport=polling"):
        r = requests.get(s.url + path, timeout=TIMEOUT)
        assert "t.example" not in r.text and "turn-sekrit" not in r.text, (path, r.text[:300])

    exp = int(time.time()) + 120
    c = await connect_with(s.url, auth={"token": make_jwt({"sub": "s", "exp": exp}, secret=SECRET)})
    try:
        servers = await c.expect("ice_servers")
        turn = [x for x in servers if "username" in x]
        assert turn, servers
        expiry = int(turn[0]["username"].split(":")[0])
        assert expiry <= exp, f"TURN credentials valid until {expiry}, the token until {exp}"
        ack = await c.emit_with_ack("join_room", {"roomName": unique("f12"), "personName": "c"})
        expiry = int([x for x in ack[0]["iceServers"] if "username" in x][0]["username"].split(":")[0])
        assert expiry <= exp, f"TURN credentials in the join ack valid until {expiry}, the token until {exp}"
    finally:
        await c.close()
