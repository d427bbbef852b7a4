"""Validation and limits of the signaling events (README, "The signaling events"): each refusal
code, at and one past each configured limit, the rate limit, rooms per socket, members per room
(cluster-wide) and Engine.IO sessions per node. A refusal is `{event, code, message}`, as the
ack's answer when the client asked for one, otherwise as an `error` event; it never disconnects
anyone nor takes the node down, which every test checks after each refusal (/healthz, everyone
still connected and chatting). Unknown events are ignored.

Nodes run with small limits so boundaries are cheap to reach:
  limits: --max-room-name 8 --max-person-name 5 --max-content 20 --max-sdp 50 --max-candidate 30
  rate:   --event-rate 1 --event-burst 5
  rooms:  --max-rooms-per-socket 2
  room_full: two nodes on one redis-server with --max-room-members 2
  connections: --max-connections 3
"""

import asyncio
import json
import time
import uuid

import aiohttp
import pytest

from cluster import cluster_factory, http_status  # noqa: F401
from conftest import SWIFT, TIMEOUT, Client, ServerProcess, _active_servers
from test_presence import RawWebSocket, assert_refusal, assert_roster, refused_with_ack, \
    refused_without_ack, roster
from test_seed_events import assert_exact

pytestmark = pytest.mark.skipif(not SWIFT, reason="limits need signal-node (SIGNAL_SERVER=swift)")

MAX_ROOM, MAX_PERSON, MAX_CONTENT, MAX_SDP, MAX_CANDIDATE = 8, 5, 20, 50, 30
NODE_ARGS = {
    "limits": ["--max-room-name", MAX_ROOM, "--max-person-name", MAX_PERSON,
               "--max-content", MAX_CONTENT, "--max-sdp", MAX_SDP, "--max-candidate", MAX_CANDIDATE],
    "rate": ["--event-rate", 1, "--event-burst", 5],
    "rooms": ["--max-rooms-per-socket", 2],
}


@pytest.fixture(scope="module")
def _nodes():
    if not SWIFT:
        pytest.skip("needs signal-node")
    nodes = {}
    yield nodes
    for s in nodes.values():
        s.stop()


def _node(nodes, kind):
    s = nodes.get(kind)
    if s is None or not s.alive():
        if s is not None:
            s.stop()
        s = nodes[kind] = ServerProcess(NODE_ARGS[kind]).start()
    _active_servers.append((s, s.log_size()))  # output shown if the test fails; death fails it
    return s


@pytest.fixture
def limits_node(_nodes):
    return _node(_nodes, "limits")


@pytest.fixture
def rate_node(_nodes):
    return _node(_nodes, "rate")


@pytest.fixture
def rooms_node(_nodes):
    return _node(_nodes, "rooms")


@pytest.fixture
async def make():
    """`await make(node, transport, name)`: a connected conftest Client on that node."""
    made = []

    async def new(node, transport="websocket", name=None):
        c = Client(node.url, transport, name)
        made.append(c)
        await c.connect()
        return c

    yield new
    await asyncio.gather(*(c.close() for c in made), return_exceptions=True)


def short_room():
    return "r" + uuid.uuid4().hex[:6]  # 7 characters: under every room-name limit here


async def join(c, room, name=None, racing=()):
    """join_room with an ack; our own user_joined consumed. `racing`: members on another node
    whose own user_joined, published just before, may still reach this joiner first (it is
    skipped)."""
    args = await c.emit_with_ack("join_room", {"roomName": room, "personName": name or c.name})
    assert len(args) == 1 and isinstance(args[0], dict) and args[0].get("roomName") == room, args
    racing_sids = {r.sid for r in racing}
    while True:
        got = await c.expect("user_joined")
        if got.get("socketId") in racing_sids and got.get("roomName") == room:
            continue
        break
    assert_exact(got, {"personName": name or c.name, "roomName": room, "socketId": c.sid})
    return args


async def pair(node, make, transports=("websocket", "polling")):
    """An offender and a witness in one room, every user_joined consumed."""
    off = await make(node, transports[0], "off")
    wit = await make(node, transports[1], "wit")
    room = short_room()
    await join(wit, room)
    await join(off, room)
    await wit.expect("user_joined")
    return off, wit, room


async def still_serving(nodes, clients, room, token):
    """Nobody was disconnected, every node answers /healthz, and each client's chat message
    (with an ack) reaches every client. Consumes those messages."""
    for node in nodes:
        assert await http_status(node.url, "/healthz") == 200, f"{node.url}/healthz"
    for c in clients:
        assert c.sio.connected, f"{c.name} was disconnected"
    for i, sender in enumerate(clients):
        content = f"{token[:10]}-{i}"
        assert await sender.emit_with_ack("message", {"roomName": room, "content": content}) \
            == [{"ok": True}], f"{sender.name} can no longer chat"
        for c in clients:
            got = await c.expect("message")
            assert got["content"] == content and got["personName"] == sender.name, \
                f"{c.name}: {got!r}, expected {content!r} from {sender.name}"


NOT_DELIVERED = ["user_joined", "user_left", "message", "offer", "answer", "ice_candidate",
                 "ice-candidate"]


def emit_nowait(c, event, data):
    """Send with an ack callback; return a future of the ack's arguments."""
    fut = asyncio.get_running_loop().create_future()

    def cb(*args):
        if not fut.done():
            fut.set_result(list(args))
    return asyncio.ensure_future(c.sio.emit(event, data, callback=cb)), fut


# --------------------------------------------------------------------------------------------
# validation: each refusal code, one past each limit
# --------------------------------------------------------------------------------------------

SDP = "v=0\r\n"
CAND = "candidate:1 1 udp 1 1.2.3.4 5 typ host"[:MAX_CANDIDATE]

# (case id, event, payload(room, witness sid) or a constant, expected code)
INVALID = [
    ("join_no_roomName", "join_room", lambda r, t: {"personName": "x"}),
    ("join_roomName_number", "join_room", lambda r, t: {"roomName": 12345, "personName": "x"}),
    ("join_roomName_empty", "join_room", lambda r, t: {"roomName": "", "personName": "x"}),
    ("join_no_personName", "join_room", lambda r, t: {"roomName": "rq"}),
    ("join_personName_number", "join_room", lambda r, t: {"roomName": "rq", "personName": 7}),
    ("join_payload_string", "join_room", lambda r, t: "rq"),
    ("join_no_payload", "join_room", lambda r, t: None),
    ("message_no_content", "message", lambda r, t: {"roomName": r}),
    ("message_content_number", "message", lambda r, t: {"roomName": r, "content": 42}),
    ("message_no_roomName", "message", lambda r, t: {"content": "hi"}),
    ("leave_no_roomName", "leave_room", lambda r, t: {"personName": "off"}),
    ("offer_no_toPeer", "offer", lambda r, t: {"offer": {"type": "offer", "sdp": SDP}}),
    ("offer_sdp_missing", "offer", lambda r, t: {"offer": {"type": "offer"}, "toPeer": t}),
    ("offer_not_object", "offer", lambda r, t: {"offer": SDP, "toPeer": t}),
    ("offer_payload_string", "offer", lambda r, t: "offer"),
    ("answer_sdp_number", "answer", lambda r, t: {"answer": {"type": "answer", "sdp": 5}, "toPeer": t}),
    ("answer_missing", "answer", lambda r, t: {"offer": {"type": "offer", "sdp": SDP}, "toPeer": t}),
    ("ice_no_candidate", "ice_candidate", lambda r, t: {"toPeer": t}),
    ("ice_candidate_string", "ice_candidate", lambda r, t: {"iccCandidate": "c", "toPeer": t}),
    ("ice_candidate_line_number", "ice_candidate",
     lambda r, t: {"iccCandidate": {"candidate": 5}, "toPeer": t}),
    ("ice_no_toPeer", "ice_candidate", lambda r, t: {"iccCandidate": {"candidate": CAND}}),
]
TOO_LONG = [
    ("room_9", "join_room", lambda r, t: {"roomName": "a" * 9, "personName": "x"},
     "room_name_too_long"),
    ("room_9_chars_2byte", "join_room", lambda r, t: {"roomName": "\u00e9" * 9, "personName": "x"},
     "room_name_too_long"),
    ("person_6", "join_room", lambda r, t: {"roomName": "rp", "personName": "abcdef"},
     "person_name_too_long"),
    ("person_6_chars_2byte", "join_room",
     lambda r, t: {"roomName": "rp", "personName": "\u00e9" * 6}, "person_name_too_long"),
    ("content_21", "message", lambda r, t: {"roomName": r, "content": "x" * 21}, "content_too_long"),
    ("content_21_chars_2byte", "message", lambda r, t: {"roomName": r, "content": "\u00e9" * 21},
     "content_too_long"),
    ("offer_sdp_51", "offer",
     lambda r, t: {"offer": {"type": "offer", "sdp": "x" * 51}, "toPeer": t}, "sdp_too_long"),
    ("answer_sdp_26_chars_52_bytes", "answer",
     lambda r, t: {"answer": {"type": "answer", "sdp": "\u00e9" * 26}, "toPeer": t}, "sdp_too_long"),
    ("candidate_31", "ice_candidate",
     lambda r, t: {"iccCandidate": {"candidate": "c" * 31, "sdpMid": "0"}, "toPeer": t},
     "candidate_too_long"),
    ("candidate_16_chars_32_bytes", "ice_candidate",
     lambda r, t: {"iccCandidate": {"candidate": "\u00e9" * 16}, "toPeer": t}, "candidate_too_long"),
]
CASES = [pytest.param(e, p, "invalid_payload", id=i) for i, e, p in INVALID] + \
        [pytest.param(e, p, code, id=i) for i, e, p, code in TOO_LONG]


@pytest.mark.parametrize("event,payload,code", CASES)
async def test_refused_event(limits_node, make, event, payload, code):
    off, wit, room = await pair(limits_node, make)
    data = payload(room, wit.sid)

    await refused_with_ack(off, event, data, code)
    await refused_without_ack(off, event, data, code)

    # refused means not applied: nothing reached the room or the peer...
    await still_serving([limits_node], [off, wit], room, f"after-{code}")
    for c in (off, wit):
        c.assert_none(*NOT_DELIVERED, "error")
    # ...and a refused join left the socket out of the room it named
    if event == "join_room" and isinstance(data, dict) and isinstance(data.get("roomName"), str) \
            and 0 < len(data["roomName"]) <= MAX_ROOM:
        await refused_with_ack(off, "message", {"roomName": data["roomName"], "content": "x"},
                               "not_in_room")


async def test_values_at_each_limit_pass(limits_node, make):
    """Exactly at each limit is accepted and delivered (characters for names and content, bytes
    for SDP and candidates)."""
    off, wit, room = await pair(limits_node, make)

    # room name of 8 characters (12 bytes), person names of 5 characters
    for room_name, person in (("\u00e9" * 4 + uuid.uuid4().hex[:4], "abcde"),
                              (uuid.uuid4().hex[:8], "\u00e9" * 5)):
        assert len(room_name) == MAX_ROOM and len(person) == MAX_PERSON
        await join(wit, room_name)
        args = await off.emit_with_ack("join_room", {"roomName": room_name, "personName": person})
        assert_roster(args, roster(off, room_name, [(wit, "wit")]), strict=False)
        expected = {"personName": person, "roomName": room_name, "socketId": off.sid}
        for c in (off, wit):
            assert_exact(await c.expect("user_joined"), expected)

    # content of 20 characters, ASCII and 2-byte
    for content in ("x" * MAX_CONTENT, "\u00e9" * MAX_CONTENT):
        assert await off.emit_with_ack("message", {"roomName": room, "content": content}) \
            == [{"ok": True}]
        for c in (off, wit):
            got = await c.expect("message")
            assert got["content"] == content and got["personName"] == "off", got

    # SDP of 50 bytes, candidate of 30 bytes
    for kind, sdp in (("offer", "x" * MAX_SDP), ("answer", "\u00e9" * (MAX_SDP // 2))):
        sent = {kind: {"type": kind, "sdp": sdp}, "toPeer": wit.sid, "fromPeer": off.sid}
        assert len(sdp.encode()) == MAX_SDP
        assert await off.emit_with_ack(kind, sent) == [{"ok": True}]
        assert_exact(await wit.expect(kind), sent)
    for cand in ("c" * MAX_CANDIDATE, "\u00e9" * (MAX_CANDIDATE // 2)):
        sent = {"iccCandidate": {"candidate": cand, "sdpMid": "0", "sdpMLineIndex": 0},
                "fromPeer": off.sid, "toPeer": wit.sid}
        assert len(cand.encode()) == MAX_CANDIDATE
        assert await off.emit_with_ack("ice_candidate", sent) == [{"ok": True}]
        assert_exact(await wit.expect("ice_candidate"), sent)
        assert_exact(await wit.expect("ice-candidate"), sent)

    await still_serving([limits_node], [off, wit], room, "at-limits")
    for c in (off, wit):
        c.assert_none(*NOT_DELIVERED, "error")


async def test_unknown_events_ignored(limits_node, make):
    off, wit, room = await pair(limits_node, make)
    for event in ("no_such_event", "JOIN_ROOM", "user_joined", "receive-offer"):
        await off.emit(event, {"roomName": room, "personName": "off", "content": "x"})
    try:
        args = await off.emit_with_ack("no_such_event", {"x": 1}, timeout=1.0)
    except (asyncio.TimeoutError, TimeoutError):
        args = None
    assert args is None, f"an unknown event was answered: {args!r}"
    await still_serving([limits_node], [off, wit], room, "after-unknown")
    for c in (off, wit):
        c.assert_none(*NOT_DELIVERED, "error")


# --------------------------------------------------------------------------------------------
# rate limit
# --------------------------------------------------------------------------------------------

async def test_rate_limited(rate_node, make):
    """--event-rate 1 --event-burst 5: a burst of 7 events gets the first 5 served and the rest
    refused (as the ack's answer, or as an error event without an ack), other sockets are
    served, and later the socket is served again. Counted, not timed: a token comes back each
    second, so a burst that a loaded machine stretches over k seconds may see k more served,
    in order, before the refusals; on any sane machine that is exactly 5."""
    off, wit, room = await pair(rate_node, make)
    await asyncio.sleep(2.5)  # off's bucket is full again (its CONNECT and join took a token each)

    started = time.monotonic()
    acks = []
    for i in range(6):
        sent, fut = emit_nowait(off, "message", {"roomName": room, "content": f"m{i}"})
        await asyncio.wait_for(sent, TIMEOUT)
        acks.append(fut)
    await off.emit("message", {"roomName": room, "content": "m6"})
    stretched = int(time.monotonic() - started)  # whole tokens that can have come back meanwhile
    answers = [await asyncio.wait_for(f, TIMEOUT) for f in acks]
    served = sum(1 for a in answers if a == [{"ok": True}])
    assert 5 <= served <= min(6, 5 + stretched), f"{served} of 6 served (burst over {stretched}+ s): {answers}"
    assert answers[:served] == [[{"ok": True}]] * served, answers  # served first, then refused
    for a in answers[served:]:
        assert len(a) == 1, a
        assert_refusal(a[0], "message", "rate_limited")
    if stretched == 0:  # no token came back: m6 was refused, as an error event (it had no ack)
        delivered = served
        assert_refusal(await off.expect("error"), "message", "rate_limited")
    else:  # m6 may have met a returned token: see what the witness got
        await asyncio.sleep(1.0)  # the witness's messages are in by then (acks came first)
        delivered = min(len(wit.pending("message")), served + 1)
        if delivered == served:
            assert_refusal(await off.expect("error"), "message", "rate_limited")

    # the served ones, in order, to both; the refused ones to nobody
    for c in (off, wit):
        assert [(await c.expect("message"))["content"] for _ in range(delivered)] == \
            [f"m{i}" for i in range(delivered - (delivered > served))] + (["m6"] if delivered > served else [])
    # another socket is not limited, and the offender still receives
    assert await wit.emit_with_ack("message", {"roomName": room, "content": "w"}) == [{"ok": True}]
    for c in (off, wit):
        assert (await c.expect("message"))["content"] == "w"
    for c in (off, wit):
        c.assert_none("message", "error")
    await asyncio.sleep(2.2)  # two tokens back: still_serving's message and a spare
    await still_serving([rate_node], [off, wit], room, "after-rate")
    for c in (off, wit):
        c.assert_none(*NOT_DELIVERED, "error")


# --------------------------------------------------------------------------------------------
# rooms per socket, members per room
# --------------------------------------------------------------------------------------------

async def test_too_many_rooms(rooms_node, make):
    off = await make(rooms_node, "websocket", "off")
    wit = await make(rooms_node, "polling", "wit")
    r1, r2, r3 = short_room(), short_room(), short_room()
    await join(wit, r3)
    await join(off, r1)
    await join(off, r2)

    await refused_with_ack(off, "join_room", {"roomName": r3, "personName": "off"}, "too_many_rooms")
    await refused_without_ack(off, "join_room", {"roomName": r3, "personName": "off"},
                              "too_many_rooms")
    # joining a room it is already in is no new room: already_in_room (not too_many_rooms), no announcement
    await refused_with_ack(off, "join_room", {"roomName": r1, "personName": "off"}, "already_in_room")
    # it is not in r3: no message there, and r3's traffic does not reach it
    await refused_with_ack(off, "message", {"roomName": r3, "content": "x"}, "not_in_room")
    assert await wit.emit_with_ack("message", {"roomName": r3, "content": "r3 only"}) == [{"ok": True}]
    assert (await wit.expect("message"))["content"] == "r3 only"
    await still_serving([rooms_node], [off], r1, "off-r1")
    for c in (off, wit):
        c.assert_none(*NOT_DELIVERED, "error")

    # one room left: the third one can be joined now
    assert await off.emit_with_ack("leave_room", {"roomName": r2}) == [{"ok": True}]
    args = await off.emit_with_ack("join_room", {"roomName": r3, "personName": "off"})
    assert_roster(args, roster(off, r3, [(wit, "wit")]), strict=False)
    for c in (off, wit):
        assert_exact(await c.expect("user_joined"),
                     {"personName": "off", "roomName": r3, "socketId": off.sid})
    await still_serving([rooms_node], [off, wit], r3, "after-rooms")
    for c in (off, wit):
        c.assert_none(*NOT_DELIVERED, "error")


async def xfence(sender, receiver, room, token):
    """A cross-node fence: `sender`'s node publishes in order, so once `receiver` (another node)
    has the sender's chat message, its node has handled everything the sender's node published
    before it."""
    assert await sender.emit_with_ack("message", {"roomName": room, "content": token}) == [{"ok": True}]
    for x in (sender, receiver):
        assert (await x.expect("message"))["content"] == token


async def side_channel(c, d):
    """c (n1) and d (n2) in a room of their own, for cross-node fences; every user_joined
    consumed (c's own may race to d: published before d joined, delivered after)."""
    side = short_room()
    await join(c, side)
    await join(d, side, racing=[c])
    await xfence(c, d, side, "side")
    while not d.queues["user_joined"].empty():
        stray = d.queues["user_joined"].get_nowait()
        assert stray["socketId"] == c.sid, stray
    assert_exact(await c.expect("user_joined"), {"personName": d.name, "roomName": side, "socketId": d.sid})
    return side


async def test_room_full_cluster_wide(cluster_factory, make):
    """--max-room-members 2 on two nodes: with one member on each node, a third joiner on either
    node is refused; a leave on one node frees the place for a joiner on the other."""
    cl = cluster_factory("pattern", n=2, node_args={0: ["--max-room-members", 2],
                                                    1: ["--max-room-members", 2]})
    n1, n2 = cl
    a = await make(n1, "websocket", "a")
    b = await make(n2, "polling", "b")
    c = await make(n1, "websocket", "c")
    d = await make(n2, "websocket", "d")
    side = await side_channel(c, d)
    room = short_room()
    assert_roster(await join(a, room), roster(a, room, []), strict=False)
    await xfence(c, d, side, "a-joined")  # a's user_joined has been handled on n2: b cannot get it
    assert_roster(await join(b, room), roster(b, room, [(a, "a")]), strict=False)
    assert_exact(await a.expect("user_joined"), {"personName": "b", "roomName": room, "socketId": b.sid})

    await refused_with_ack(c, "join_room", {"roomName": room, "personName": "c"}, "room_full")
    await refused_without_ack(d, "join_room", {"roomName": room, "personName": "d"}, "room_full")
    await refused_with_ack(d, "join_room", {"roomName": room, "personName": "d"}, "room_full")
    # a message from each node (Redis keeps each node's order): any user_joined published for
    # c or d would have arrived before them
    await still_serving([n1, n2], [a, b], room, "full")
    for x in (a, b, c, d):
        x.assert_none(*NOT_DELIVERED, "error")
    # the refused are not in the room, and are still served elsewhere
    await refused_with_ack(c, "message", {"roomName": room, "content": "x"}, "not_in_room")
    await refused_with_ack(d, "leave_room", {"roomName": room}, "not_in_room")
    await still_serving([n1, n2], [c, d], side, "refused")

    # b (n2) leaves: c (n1) gets its place, d (n2) is still refused
    assert await b.emit_with_ack("leave_room", {"roomName": room}) == [{"ok": True}]
    assert_exact(await a.expect("user_left"), {"personName": "b", "roomName": room, "socketId": b.sid})
    args = await c.emit_with_ack("join_room", {"roomName": room, "personName": "c"})
    assert_roster(args, roster(c, room, [(a, "a")]), strict=False)
    for x in (a, c):
        assert_exact(await x.expect("user_joined"), {"personName": "c", "roomName": room, "socketId": c.sid})
    # n2 has handled c's user_joined before d tries again (room traffic reaching a refused
    # joiner during its check: test_room_full_refused_joiner_gets_no_room_traffic)
    await xfence(c, d, side, "c-joined")
    await refused_with_ack(d, "join_room", {"roomName": room, "personName": "d"}, "room_full")
    await still_serving([n1, n2], [a, c], room, "after-full")
    for x in (a, b, c, d):
        x.assert_none(*NOT_DELIVERED, "error")


async def test_room_full_refused_joiner_gets_no_room_traffic(cluster_factory, make):
    """A join refused with room_full never made the socket a member: room traffic sent while
    its join was being checked must not reach it either."""
    cl = cluster_factory("pattern", n=2, node_args={0: ["--max-room-members", 2],
                                                    1: ["--max-room-members", 2]})
    n1, n2 = cl
    a = await make(n1, "websocket", "a")
    b = await make(n2, "websocket", "b")
    d = await make(n2, "websocket", "d")
    side = await side_channel(a, b)
    room = short_room()
    await join(a, room)
    await xfence(a, b, side, "a-joined")
    await join(b, room)
    await a.expect("user_joined")
    attempts = 40

    async def chat():
        for i in range(attempts):
            await a.emit("message", {"roomName": room, "content": f"m{i}"})
            await asyncio.sleep(0.003)

    async def knock():
        refusals = []
        for _ in range(attempts):
            args = await d.emit_with_ack("join_room", {"roomName": room, "personName": "d"})
            refusals.append(args[0].get("code") if args and isinstance(args[0], dict) else args)
        return refusals

    _, refusals = await asyncio.gather(chat(), knock())
    assert refusals == ["room_full"] * attempts, refusals
    for x in (a, b):  # every message reached the members, so any copy for d has been sent too
        assert [(await x.expect("message"))["content"] for _ in range(attempts)] == \
            [f"m{i}" for i in range(attempts)]
    await d.fence()
    leaked = [p for p in d.pending("message")]
    assert not leaked, f"d, refused {attempts} times with room_full, received {len(leaked)} of " \
                       f"the room's {attempts} messages: {[p['content'] for p in leaked]}"
    await still_serving([n1, n2], [a, b], room, "after-knock")


# --------------------------------------------------------------------------------------------
# Engine.IO sessions per node
# --------------------------------------------------------------------------------------------

async def polling_handshake(node):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node.url}/socket.io/?EIO=4&transport=polling&t=x",
                            timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as r:
            return r.status, await r.text()


async def three_connected(server_factory, make):
    node = server_factory("--max-connections", 3)
    clients = [await make(node, t, f"k{i}") for i, t in enumerate(("polling", "websocket", "default"))]
    room = short_room()
    for i, c in enumerate(clients):
        await join(c, room)
        for earlier in clients[:i]:
            await earlier.expect("user_joined")
    return node, clients, room


async def test_max_connections(server_factory, make):
    node, clients, room = await three_connected(server_factory, make)

    # the 4th Engine.IO handshake: 403 {"code":4,"message":"Forbidden"}
    status, text = await polling_handshake(node)
    assert status == 403, f"4th handshake answered {status} {text!r}"
    assert json.loads(text) == {"code": 4, "message": "Forbidden"}, text
    # a Socket.IO client cannot connect, whatever its transports
    for transport in ("polling", "default", "websocket"):
        extra = Client(node.url, transport, f"extra-{transport}")
        with pytest.raises(Exception):
            await extra.connect(timeout=TIMEOUT)
        assert not extra.sio.connected
        await extra.close()
    await still_serving([node], clients, room, "after-4th")

    # a place freed by a disconnect can be taken again
    await clients[2].close()
    await clients[0].expect("user_left")
    await clients[1].expect("user_left")
    deadline = time.monotonic() + TIMEOUT
    while (await polling_handshake(node))[0] != 200:  # the session is closed right after
        assert time.monotonic() < deadline, "no handshake accepted after a client left"
        await asyncio.sleep(0.05)
    # (that handshake took the free place; it times out unused)
    status, text = await polling_handshake(node)
    assert status == 403 and json.loads(text)["code"] == 4, f"{status} {text!r}"
    await still_serving([node], clients[:2], room, "after-free")


async def test_max_connections_websocket_handshake_refused(server_factory, make):
    """A WebSocket-only client's handshake is the upgrade request: beyond the limit it gets the
    same HTTP 403 {"code":4,"message":"Forbidden"} instead of an upgrade."""
    node, clients, room = await three_connected(server_factory, make)
    raw = RawWebSocket(node, "ws4")
    try:
        status, body = await raw.connect()
    finally:
        raw.drop()
    assert status == 403, f"the 4th handshake over WebSocket answered HTTP {status} (expected 403)"
    assert json.loads(body) == {"code": 4, "message": "Forbidden"}, body
    await still_serving([node], clients, room, "after-ws4")
