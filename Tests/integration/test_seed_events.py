"""The seed's events (shared/notes/seed-protocol.md section 1) through python-socketio clients,
in each transport mode: exact payloads (values and key order) and exact recipients.

Negative checks ("X did not receive E") are made after a fence: X joins a fresh room and waits
for its own user_joined, so anything queued for X before that has arrived.
"""

import asyncio
import email.utils
import re
import time
from datetime import datetime, timezone

import pytest

from conftest import SWIFT, TIMEOUT, Client, unique

TIMESTAMP_RE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$")
SOCKET_ID_RE = re.compile(r"^[A-Za-z0-9_-]{20}$")


def assert_exact(got, expected):
    """Same keys, same values, same key order (the wire JSON's order)."""
    assert got == expected, f"payload differs:\n got      {got!r}\n expected {expected!r}"
    assert list(got) == list(expected), \
        f"key order differs: got {list(got)}, expected {list(expected)}"


def assert_timestamp_recent(ts, slack_s=10):
    assert isinstance(ts, str) and TIMESTAMP_RE.match(ts), f"bad timestamp {ts!r}"
    when = email.utils.parsedate_to_datetime(ts)
    delta = abs((datetime.now(timezone.utc) - when).total_seconds())
    assert delta <= slack_s, f"timestamp {ts!r} is {delta:.1f}s away from now"


async def room_of(clients, transport, names, room=None):
    """Connect one client per name and join them all to one room, consuming every user_joined."""
    room = room or unique()
    members = []
    for name in names:
        c = await clients.new(transport, name)
        await c.emit("join_room", {"roomName": room, "personName": name})
        for m in members + [c]:
            got = await m.expect("user_joined")
            assert_exact(got, {"personName": name, "roomName": room, "socketId": c.sid})
        members.append(c)
    return room, members


# --------------------------------------------------------------------------------------------
# connection
# --------------------------------------------------------------------------------------------

async def test_connect_ids(clients, transport):
    c = await clients.new(transport)
    assert SOCKET_ID_RE.match(c.sid), f"socket id {c.sid!r} is not 20 URL-safe base64 chars"
    assert c.engine_sid and c.sid != c.engine_sid, "Socket.IO sid must differ from the Engine.IO sid"
    d = await clients.new(transport)
    assert d.sid != c.sid


async def test_default_mode_upgrades_to_websocket(clients):
    c = await clients.new("default")
    deadline = time.monotonic() + TIMEOUT
    while c.sio.transport() != "websocket" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert c.sio.transport() == "websocket", "polling session was not upgraded to websocket"
    # and the upgraded session still carries events both ways
    await c.join(unique())


# --------------------------------------------------------------------------------------------
# join_room / user_joined
# --------------------------------------------------------------------------------------------

async def test_join_room_user_joined_to_whole_room(clients, transport):
    room = unique()
    alice = await clients.new(transport, "alice")
    bob = await clients.new(transport, "bob")
    outsider = await clients.new(transport, "outsider")

    await alice.emit("join_room", {"roomName": room, "personName": "alice"})
    assert_exact(await alice.expect("user_joined"),
                 {"personName": "alice", "roomName": room, "socketId": alice.sid})

    # extra keys sent by the client are dropped: the server builds a new object
    await bob.emit("join_room", {"personName": "bob", "roomName": room, "extra": 1})
    expected = {"personName": "bob", "roomName": room, "socketId": bob.sid}
    assert_exact(await bob.expect("user_joined"), expected)
    assert_exact(await alice.expect("user_joined"), expected)

    await asyncio.gather(alice.fence(), bob.fence(), outsider.fence())
    for c in (alice, bob, outsider):
        c.assert_none("user_joined")


# --------------------------------------------------------------------------------------------
# message
# --------------------------------------------------------------------------------------------

async def test_message_to_whole_room_with_timestamp(clients, transport):
    room, (alice, bob) = await room_of(clients, transport, ["alice", "bob"])
    _, (other,) = await room_of(clients, transport, ["other"])

    content = 'h\u00e9llo "quoted" \\ back\nslash \U0001F600 \u2028 </script>'
    await alice.emit("message", {"roomName": room, "personName": "alice", "content": content,
                                 "extra": "dropped"})
    for c in (alice, bob):
        got = await c.expect("message")
        assert list(got) == ["personName", "content", "timestamp"], f"keys/order: {list(got)}"
        assert got["personName"] == "alice"
        assert got["content"] == content
        assert_timestamp_recent(got["timestamp"])

    await other.fence()
    other.assert_none("message")
    await asyncio.gather(alice.fence(), bob.fence())
    alice.assert_none("message")
    bob.assert_none("message")


async def test_messages_keep_order(clients, transport):
    room, (alice, bob) = await room_of(clients, transport, ["alice", "bob"])
    for i in range(20):
        await alice.emit("message", {"roomName": room, "personName": "alice", "content": f"m{i}"})
    for c in (alice, bob):
        got = [(await c.expect("message"))["content"] for _ in range(20)]
        assert got == [f"m{i}" for i in range(20)]


# --------------------------------------------------------------------------------------------
# leave_room / user_left
# --------------------------------------------------------------------------------------------

async def test_leave_room_user_left_to_others_only(clients, transport):
    room, (alice, bob, carol) = await room_of(clients, transport, ["alice", "bob", "carol"])

    await bob.emit("leave_room", {"roomName": room, "personName": "bob"})
    expected = {"personName": "bob", "roomName": room, "socketId": bob.sid}
    assert_exact(await alice.expect("user_left"), expected)
    assert_exact(await carol.expect("user_left"), expected)

    await bob.fence()
    bob.assert_none("user_left")

    # bob really left: room traffic no longer reaches him
    await alice.emit("message", {"roomName": room, "personName": "alice", "content": "after"})
    assert (await carol.expect("message"))["content"] == "after"
    assert (await alice.expect("message"))["content"] == "after"
    await bob.fence()
    bob.assert_none("message")


# --------------------------------------------------------------------------------------------
# offer / answer / ice_candidate: relayed unchanged to toPeer only
# --------------------------------------------------------------------------------------------

def sdp_payload(kind, src, dst):
    return {
        kind: {"type": kind, "sdp": "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n"},
        "fromPeer": src.sid,
        "toPeer": dst.sid,
        # extra keys, non-sorted order, nested values: all must survive unchanged
        "zeta": {"b": [1, 2.5, None, True], "a": "\u00fc"},
        "alpha": 0,
    }


@pytest.mark.parametrize("kind", ["offer", "answer"])
async def test_sdp_relayed_to_peer_only(clients, transport, kind):
    room, (alice, bob, carol) = await room_of(clients, transport, ["alice", "bob", "carol"])
    sent = sdp_payload(kind, alice, bob)
    await alice.emit(kind, sent)
    assert_exact(await bob.expect(kind), sent)

    await asyncio.gather(alice.fence(), bob.fence(), carol.fence())
    alice.assert_none(kind)
    carol.assert_none(kind)
    bob.assert_none(kind)  # exactly once


async def test_offer_answer_exchange(clients, transport):
    """The live client's call flow: existing member offers, newcomer answers."""
    room, (alice, bob) = await room_of(clients, transport, ["alice", "bob"])
    offer = sdp_payload("offer", alice, bob)
    await alice.emit("offer", offer)
    got = await bob.expect("offer")
    assert_exact(got, offer)
    answer = sdp_payload("answer", bob, alice)
    answer["toPeer"] = got["fromPeer"]
    await bob.emit("answer", answer)
    assert_exact(await alice.expect("answer"), answer)


def ice_payload(src, dst):
    return {
        "iccCandidate": {
            "candidate": "candidate:842163049 1 udp 1677729535 192.0.2.3 54400 typ srflx "
                         "raddr 10.0.0.1 rport 54400 generation 0 ufrag abcd network-cost 999",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "usernameFragment": None,
        },
        "fromPeer": src.sid,
        "toPeer": dst.sid,
        "extra": [1, "two"],
    }


async def test_ice_candidate_relayed_under_both_names(clients, transport):
    room, (alice, bob, carol) = await room_of(clients, transport, ["alice", "bob", "carol"])
    sent = ice_payload(alice, bob)
    await alice.emit("ice_candidate", sent)
    assert_exact(await bob.expect("ice_candidate"), sent)
    assert_exact(await bob.expect("ice-candidate"), sent)

    await asyncio.gather(alice.fence(), bob.fence(), carol.fence())
    for c in (alice, carol):
        c.assert_none("ice_candidate", "ice-candidate")
    bob.assert_none("ice_candidate", "ice-candidate")  # once under each name


@pytest.mark.seed_unchecked
async def test_relay_to_peer_in_another_room(clients, transport):
    """toPeer is a socket id, not a room member check: the seed relays to any socket
    (`socket.to(toPeer)`), whichever rooms the two are in."""
    _, (alice,) = await room_of(clients, transport, ["alice"])
    _, (bob,) = await room_of(clients, transport, ["bob"])
    sent = sdp_payload("offer", alice, bob)
    await alice.emit("offer", sent)
    assert_exact(await bob.expect("offer"), sent)


@pytest.mark.seed_unchecked
async def test_relay_keeps_from_peer_as_sent(clients, transport):
    """The seed forwards the whole object: it does not overwrite fromPeer."""
    room, (alice, bob) = await room_of(clients, transport, ["alice", "bob"])
    sent = sdp_payload("offer", alice, bob)
    sent["fromPeer"] = "someone-else-0000000"
    await alice.emit("offer", sent)
    assert_exact(await bob.expect("offer"), sent)


@pytest.mark.seed_unchecked
async def test_message_person_name_as_sent(clients, transport):
    """The seed builds the chat message from the message payload's personName."""
    room, (alice, bob) = await room_of(clients, transport, ["alice", "bob"])
    await alice.emit("message", {"roomName": room, "personName": "alice-renamed", "content": "x"})
    for c in (alice, bob):
        got = await c.expect("message")
        assert (got["personName"], got["content"]) == ("alice-renamed", "x")


@pytest.mark.seed_unchecked
async def test_message_from_non_member(clients, transport):
    """The seed does not check that the sender is in the room: members get it, the sender not."""
    room, (alice, bob) = await room_of(clients, transport, ["alice", "bob"])
    outsider = await clients.new(transport, "outsider")
    await outsider.emit("message", {"roomName": room, "personName": "outsider", "content": "hi"})
    for c in (alice, bob):
        got = await c.expect("message")
        assert (got["personName"], got["content"]) == ("outsider", "hi")
    await outsider.fence()
    outsider.assert_none("message")


# --------------------------------------------------------------------------------------------
# legacy events: broadcast to every other connected socket, ignoring rooms
# --------------------------------------------------------------------------------------------

LEGACY = [
    ("send-offer", "receive-offer", {"type": "offer", "sdp": "v=0\r\n"}),
    ("send-answer", "receive-answer", {"type": "answer", "sdp": "v=0\r\n"}),
    ("send-icecandidate", "receive-icecandidate",
     {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 54400 typ host", "sdpMid": "0",
      "sdpMLineIndex": 0, "usernameFragment": None}),
]


@pytest.mark.parametrize("src,dst,payload", LEGACY)
async def test_legacy_broadcast(clients, transport, src, dst, payload):
    """receive-* reaches the other members of the sender's room, once, and not the sender."""
    room, (alice, bob, carol) = await room_of(clients, transport, ["alice", "bob", "carol"])
    await alice.emit(src, payload)
    for c in (bob, carol):
        assert_exact(await c.expect(dst), payload)
    await asyncio.gather(*(c.fence() for c in (alice, bob, carol)))
    alice.assert_none(dst)
    bob.assert_none(dst)  # exactly once
    carol.assert_none(dst)


@pytest.mark.seed_unchecked
@pytest.mark.parametrize("src,dst,payload", LEGACY)
async def test_legacy_broadcast_ignores_rooms(clients, transport, src, dst, payload):
    """The seed's `socket.broadcast.emit`: every other connected socket, also those in other
    rooms or in no room."""
    room, (alice, bob) = await room_of(clients, transport, ["alice", "bob"])
    _, (other_room,) = await room_of(clients, transport, ["elsewhere"])
    no_room = await clients.new(transport, "noroom")

    await alice.emit(src, payload)
    for c in (bob, other_room, no_room):
        assert_exact(await c.expect(dst), payload)

    await asyncio.gather(*(c.fence() for c in (alice, bob, other_room, no_room)))
    alice.assert_none(dst)
    for c in (bob, other_room, no_room):
        c.assert_none(dst)  # exactly once


# --------------------------------------------------------------------------------------------
# rooms, mixed transports
# --------------------------------------------------------------------------------------------

async def test_two_rooms_isolated(clients, transport):
    room_a, (a1, a2) = await room_of(clients, transport, ["a1", "a2"])
    room_b, (b1, b2) = await room_of(clients, transport, ["b1", "b2"])

    await a1.emit("message", {"roomName": room_a, "personName": "a1", "content": "to A"})
    await b1.emit("message", {"roomName": room_b, "personName": "b1", "content": "to B"})
    for c in (a1, a2):
        assert (await c.expect("message"))["content"] == "to A"
    for c in (b1, b2):
        assert (await c.expect("message"))["content"] == "to B"

    await a2.emit("leave_room", {"roomName": room_a, "personName": "a2"})
    assert (await a1.expect("user_left"))["socketId"] == a2.sid
    a3 = await clients.new(transport, "a3")
    await a3.emit("join_room", {"roomName": room_a, "personName": "a3"})
    assert (await a1.expect("user_joined"))["socketId"] == a3.sid
    assert (await a3.expect("user_joined"))["socketId"] == a3.sid

    await asyncio.gather(*(c.fence() for c in (a1, a2, a3, b1, b2)))
    for c in (a1, a2, a3, b1, b2):
        c.assert_none("message", "user_joined", "user_left")


async def test_mixed_transports_in_one_room(clients):
    room = unique()
    members = []
    for t in ("polling", "websocket", "default"):
        c = await clients.new(t, f"via-{t}")
        await c.emit("join_room", {"roomName": room, "personName": c.name})
        for m in members + [c]:
            assert (await m.expect("user_joined"))["socketId"] == c.sid
        members.append(c)
    for sender in members:
        await sender.emit("message", {"roomName": room, "personName": sender.name,
                                      "content": f"from {sender.transport}"})
        for m in members:
            got = await m.expect("message")
            assert got["personName"] == sender.name
            assert got["content"] == f"from {sender.transport}"


# --------------------------------------------------------------------------------------------
# binary
# --------------------------------------------------------------------------------------------

async def test_binary_message_content(clients, transport):
    room, (alice, bob) = await room_of(clients, transport, ["alice", "bob"])
    blob = bytes(range(256)) + b"\x00\xff\x1e\x1e" + "ü".encode()
    await alice.emit("message", {"roomName": room, "personName": "alice", "content": blob})
    for c in (alice, bob):
        got = await c.expect("message")
        assert list(got) == ["personName", "content", "timestamp"]
        assert got["personName"] == "alice"
        assert isinstance(got["content"], (bytes, bytearray)), f"content not binary: {got!r}"
        assert bytes(got["content"]) == blob
        assert_timestamp_recent(got["timestamp"])


async def test_binary_offer_relay(clients, transport):
    """Binary values nested in a relayed object come through intact, in place."""
    room, (alice, bob) = await room_of(clients, transport, ["alice", "bob"])
    sent = {"offer": {"type": "offer", "sdp": "v=0\r\n", "blob": b"\x01\x02\x03\x04"},
            "fromPeer": alice.sid, "toPeer": bob.sid, "more": [b"", b"\xff" * 1000]}
    await alice.emit("offer", sent)
    got = await bob.expect("offer")
    assert got == sent
    assert list(got) == list(sent)


# --------------------------------------------------------------------------------------------
# acks
# --------------------------------------------------------------------------------------------

async def test_join_room_ack(clients, transport):
    c = await clients.new(transport)
    room = unique()
    args = await c.emit_with_ack("join_room", {"roomName": room, "personName": c.name})
    assert len(args) >= 1 and isinstance(args[0], dict), f"ack args: {args!r}"
    assert args[0].get("roomName") == room, f"ack payload: {args[0]!r}"
    # the ack does not replace the broadcast
    assert (await c.expect("user_joined"))["socketId"] == c.sid


async def test_unknown_event_with_ack_not_answered(clients, transport):
    c = await clients.new(transport)
    try:
        args = await c.emit_with_ack("no_such_event", {"x": 1}, timeout=1.0)
    except (asyncio.TimeoutError, TimeoutError):
        args = None
    assert args is None, f"server answered an ack for an unknown event: {args!r}"
    # and the connection is still usable
    await c.join(unique())
    assert c.sio.connected


@pytest.mark.parametrize("flag,names", [("underscore", ["ice_candidate"]),
                                        ("hyphen", ["ice-candidate"]),
                                        ("both", ["ice_candidate", "ice-candidate"])])
async def test_ice_event_flag(server_factory, flag, names):
    s = server_factory("--ice-event", flag)
    alice = Client(s.url, "websocket", "alice")
    bob = Client(s.url, "websocket", "bob")
    try:
        await alice.connect()
        await bob.connect()
        room = unique()
        await alice.join(room)
        await bob.join(room)
        assert (await alice.expect("user_joined"))["socketId"] == bob.sid
        sent = ice_payload(alice, bob)
        await alice.emit("ice_candidate", sent)
        for name in names:
            assert_exact(await bob.expect(name), sent)
        await bob.fence()
        bob.assert_none("ice_candidate", "ice-candidate")
        alice.assert_none("ice_candidate", "ice-candidate")
    finally:
        await alice.close()
        await bob.close()
