"""The seed's events across a cluster of signal-node processes sharing one redis-server, in both
subscription modes (`pattern`: PSUBSCRIBE socket.io#/#*; `per-room`: SUBSCRIBE one channel per
local room and socket id), plus Redis failures: restart, SIGSTOP.

Negative checks ("X did not get E") come after `cluster_clients.settle()`: a fence message from
one client on every node to a room everyone is in. Redis keeps each publisher connection's order,
so once X has every node's fence, whatever was published before it has been handled on X's node.
"""

import asyncio
import time
from collections import Counter

import pytest

from cluster import (MODES, RedisSpy, _module_cluster, cluster, cluster_clients,  # noqa: F401
                     cluster_factory, http_status, numsub, room_channel, wait_upgraded)
from conftest import TIMEOUT, unique
from test_seed_events import assert_exact, assert_timestamp_recent, ice_payload, sdp_payload


async def join_all(room, members, fences):
    """Members join one by one; each join's user_joined reaches every member so far, the joiner
    included, with the exact payload (whatever node they are on). After each join, a fence from
    the joiner's node: the user_joined is published to the other nodes asynchronously, and must
    not reach the next joiner, who was not in the room when it was sent."""
    joined = []
    for c in members:
        await c.emit("join_room", {"roomName": room, "personName": c.name})
        expected = {"personName": c.name, "roomName": room, "socketId": c.sid}
        for m in joined + [c]:
            got = await m.expect("user_joined")
            assert got == expected and list(got) == list(expected), \
                f"{m.name}@{m.node.node_id}: user_joined {got!r}, expected {expected!r}; log {m.log!r}"
        joined.append(c)
        await fences.settle(origins=[c])


async def send_message(sender, room, content):
    await sender.emit("message", {"roomName": room, "personName": sender.name, "content": content})


async def expect_message(c, sender, content, timeout=TIMEOUT):
    got = await c.expect("message", timeout)
    assert list(got) == ["personName", "content", "timestamp"], f"{c.name}: keys/order {list(got)}"
    assert got["personName"] == sender.name, f"{c.name}: {got!r}"
    assert got["content"] == content, f"{c.name}: {got!r}"
    assert_timestamp_recent(got["timestamp"])
    return got


# --------------------------------------------------------------------------------------------
# 1. every seed event across nodes
# --------------------------------------------------------------------------------------------

async def test_seed_events_cross_nodes_exact_payloads_and_recipients(cluster, cluster_clients):
    n1, n2, n3 = cluster
    new = cluster_clients.new
    alice = await new(n1, "websocket", "alice")
    bob = await new(n2, "polling", "bob")
    carol = await new(n3, "default", "carol")
    dave = await new(n1, "polling", "dave")
    erin = await new(n2, "default", "erin")
    frank = await new(n3, "websocket", "frank")
    outsider = await new(n2, "websocket", "outsider")  # connected, in no room of this test
    await wait_upgraded(carol)
    await wait_upgraded(erin)
    members = [alice, bob, carol, dave, erin, frank]
    everyone = members + [outsider]
    room = unique("xroom")

    # join_room -> user_joined to the whole room, joiner included
    await join_all(room, members, cluster_clients)

    # message -> {personName, content, timestamp} to every member, sender included
    for sender in members:
        content = f"hello from {sender.name} \u00e9\U0001F600"
        await send_message(sender, room, content)
        for m in members:
            await expect_message(m, sender, content)

    # binary content crosses nodes intact
    blob = bytes(range(256)) + b"\x00\xff\x1e\x1e" + "\u00fc".encode()
    await send_message(bob, room, blob)
    for m in members:
        got = await m.expect("message")
        assert list(got) == ["personName", "content", "timestamp"]
        assert got["personName"] == "bob"
        assert isinstance(got["content"], (bytes, bytearray)), f"{m.name}: content not binary: {got!r}"
        assert bytes(got["content"]) == blob, f"{m.name}: binary content changed"

    # offer / answer: relayed unchanged (same object, same key order) to toPeer only
    offer = sdp_payload("offer", alice, bob)  # n1 -> n2
    await alice.emit("offer", offer)
    assert_exact(await bob.expect("offer"), offer)
    answer = sdp_payload("answer", bob, alice)  # n2 -> n1
    await bob.emit("answer", answer)
    assert_exact(await alice.expect("answer"), answer)
    offer2 = sdp_payload("offer", frank, dave)  # n3 -> n1 (polling)
    await frank.emit("offer", offer2)
    assert_exact(await dave.expect("offer"), offer2)

    # ice_candidate: to toPeer under both names
    ice = ice_payload(carol, alice)  # n3 -> n1
    await carol.emit("ice_candidate", ice)
    assert_exact(await alice.expect("ice_candidate"), ice)
    assert_exact(await alice.expect("ice-candidate"), ice)
    ice2 = ice_payload(dave, erin)  # n1 -> n2 (upgraded)
    await dave.emit("ice_candidate", ice2)
    assert_exact(await erin.expect("ice_candidate"), ice2)
    assert_exact(await erin.expect("ice-candidate"), ice2)

    # leave_room -> user_left to the others only
    await erin.emit("leave_room", {"roomName": room, "personName": "erin"})
    left = {"personName": "erin", "roomName": room, "socketId": erin.sid}
    for m in (alice, bob, carol, dave, frank):
        assert_exact(await m.expect("user_left"), left)
    # erin really left: room traffic no longer reaches her
    await send_message(frank, room, "after erin left")
    for m in (alice, bob, carol, dave, frank):
        await expect_message(m, frank, "after erin left")

    # the join ack's roster lists the members present on every node
    grace = await new(n3, "polling", "grace")
    ack = await grace.emit_with_ack("join_room", {"roomName": room, "personName": "grace"})
    assert isinstance(ack[0], dict) and ack[0].get("roomName") == room \
        and ack[0].get("socketId") == grace.sid, f"join ack: {ack!r}"
    stayed = [alice, bob, carol, dave, frank]
    assert sorted((p["socketId"], p["personName"]) for p in ack[0]["peers"]) == \
        sorted((m.sid, m.name) for m in stayed), f"roster: {ack[0]['peers']!r}"
    joined = {"personName": "grace", "roomName": room, "socketId": grace.sid}
    for m in stayed + [grace]:
        assert_exact(await m.expect("user_joined"), joined)

    # a socket that disconnects on one node: user_left to the others in its room, on every node
    frank_left = {"personName": "frank", "roomName": room, "socketId": frank.sid}
    await frank.close()
    for m in (alice, bob, carol, dave, grace):
        assert_exact(await m.expect("user_left"), frank_left)
    everyone += [grace]

    await cluster_clients.settle()
    for c in everyone:  # nothing else, nothing twice, nothing for the outsider
        c.assert_none("user_joined", "user_left", "message", "offer", "answer", "ice_candidate",
                      "ice-candidate")


# --------------------------------------------------------------------------------------------
# 2. two rooms across the nodes stay isolated
# --------------------------------------------------------------------------------------------

async def test_two_rooms_across_nodes_isolated(cluster, cluster_clients):
    n1, n2, n3 = cluster
    new = cluster_clients.new
    # room A on n1, n2, n3; room B on n2 and n3 only (n1 hosts no member of B)
    a1 = await new(n1, "websocket", "a1")
    a2 = await new(n2, "polling", "a2")
    a3 = await new(n3, "default", "a3")
    b2 = await new(n2, "websocket", "b2")
    b3 = await new(n3, "polling", "b3")
    room_a, room_b = unique("A"), unique("B")
    await join_all(room_a, [a1, a2, a3], cluster_clients)
    await join_all(room_b, [b2, b3], cluster_clients)

    await send_message(a1, room_a, "to A from n1")
    await send_message(b3, room_b, "to B from n3")
    await send_message(a2, room_a, "to A from n2")
    for m in (a1, a2, a3):  # two senders on two nodes: no order between them
        got = [await m.expect("message") for _ in range(2)]
        assert sorted((g["personName"], g["content"]) for g in got) == \
            [("a1", "to A from n1"), ("a2", "to A from n2")], f"{m.name}: {got}"
    for m in (b2, b3):
        await expect_message(m, b3, "to B from n3")

    # membership changes stay in their room too
    await a3.emit("leave_room", {"roomName": room_a, "personName": "a3"})
    for m in (a1, a2):
        assert (await m.expect("user_left"))["socketId"] == a3.sid
    await cluster_clients.settle()  # B's earlier traffic has reached n1 before b1 joins B there
    b1 = await new(n1, "default", "b1")
    await b1.emit("join_room", {"roomName": room_b, "personName": "b1"})
    for m in (b1, b2, b3):
        assert (await m.expect("user_joined"))["socketId"] == b1.sid
    # a sender outside a room cannot send to it (README: `not_in_room`), whatever node it is on
    await send_message(a1, room_b, "to B from a1")
    err = await a1.expect("error")
    assert err.get("event") == "message" and err.get("code") == "not_in_room", err
    await send_message(b1, room_b, "to B from b1")
    for m in (b1, b2, b3):
        await expect_message(m, b1, "to B from b1")

    await cluster_clients.settle()
    for c in (a1, a2, a3, b1, b2, b3):
        c.assert_none("message", "user_joined", "user_left")


# --------------------------------------------------------------------------------------------
# 3. a signal reaches only its target socket, and (per-room) only the target's node
# --------------------------------------------------------------------------------------------

async def test_signal_to_socket_reaches_only_that_socket_and_node(cluster, cluster_clients):
    n1, n2, n3 = cluster
    port = cluster.redis.port
    spy = await RedisSpy.start(port, patterns=["*"])
    try:
        new = cluster_clients.new
        a1 = await new(n1, "websocket", "a1")
        a2 = await new(n1, "polling", "a2")
        target = await new(n2, "websocket", "target")
        b2 = await new(n2, "default", "b2")
        c1 = await new(n3, "websocket", "c1")
        room = unique("sig")
        await join_all(room, [a1, a2, target, b2, c1], cluster_clients)
        others = [a1, a2, b2, c1]

        offer = sdp_payload("offer", a1, target)  # n1 -> n2
        await a1.emit("offer", offer)
        assert_exact(await target.expect("offer"), offer)
        ice = ice_payload(c1, target)  # n3 -> n2
        await c1.emit("ice_candidate", ice)
        assert_exact(await target.expect("ice_candidate"), ice)
        assert_exact(await target.expect("ice-candidate"), ice)

        await cluster_clients.settle()
        for c in others:
            c.assert_none("offer", "ice_candidate", "ice-candidate")
        target.assert_none("offer", "ice_candidate", "ice-candidate")  # exactly once

        # on Redis: each cross-node signal was published once per event name, on the target's
        # own channel (the ICE candidate under both names)
        channel = room_channel(target.sid)
        expected = [("offer", offer), ("ice_candidate", ice), ("ice-candidate", ice)]
        await spy.wait_for(lambda ms: len([m for m in ms if m.channel == channel]) >= len(expected),
                           what=f"{len(expected)} publishes on {channel}")
        on_target = spy.on(channel)
        assert len(on_target) == len(expected), f"publishes on {channel}: {len(on_target)}"
        assert sorted(m.decoded()[1]["data"][0] for m in on_target) == sorted(e for e, _ in expected)
        for msg in on_target:
            _uid, packet, opts = msg.decoded()
            event = packet["data"][0]
            assert packet["nsp"] == "/" and packet["type"] == 2, packet
            assert packet["data"][1] == dict(expected)[event], packet
            assert list(opts["rooms"]) == [target.sid], opts

        # a signal between two sockets of one node needs no Redis: nothing is published for it.
        # Fence on Redis: b2 then signals a1 (n2 -> n1); n2's publishes keep their order.
        await b2.emit("offer", sdp_payload("offer", b2, target))
        await target.expect("offer")
        await b2.emit("answer", sdp_payload("answer", b2, a1))
        await a1.expect("answer")
        await spy.wait_for(lambda ms: [m for m in ms if m.channel == room_channel(a1.sid)],
                           what="b2's answer to a1 on Redis")
        assert len(spy.on(channel)) == len(expected), \
            f"a same-node signal was published on {channel}: " \
            f"{[m.decoded() for m in spy.on(channel)[len(expected):]]}"

        # who subscribes: in per-room mode only the node hosting a socket (n2 for target)
        if cluster.mode == "per-room":
            for c in (target, a1, c1):
                assert await numsub(port, room_channel(c.sid)) == 1, f"NUMSUB {c.name}'s channel"
            assert await numsub(port, room_channel(room)) == 3  # n1, n2, n3 host members
            # last local member leaves -> the node unsubscribes the room; disconnect -> the socket
            await c1.emit("leave_room", {"roomName": room, "personName": "c1"})
            for m in (a1, a2, target, b2):
                await m.expect("user_left")
            await wait_numsub(port, room_channel(room), 2)
            await target.close()
            await wait_numsub(port, channel, 0)
        else:
            # pattern mode: nodes PSUBSCRIBE; nobody SUBSCRIBEs per-socket channels
            assert await numsub(port, channel) == 0
            assert await numsub(port, room_channel(room)) == 0
    finally:
        await spy.close()


async def wait_numsub(port, channel, expected, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while (got := await numsub(port, channel)) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"PUBSUB NUMSUB {channel} is {got}, expected {expected} within {timeout}s")
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------------------------
# 4. Redis restarted under running nodes
# --------------------------------------------------------------------------------------------

def message_counts(c):
    return Counter(p["content"] for ev, p in c.log
                   if ev == "message" and isinstance(p.get("content"), str))


@pytest.mark.parametrize("mode", MODES)
async def test_redis_restart_recovers_cross_node_without_duplicates(cluster_factory, cluster_clients,
                                                                     mode):
    c = cluster_factory(mode, n=2)
    n1, n2 = c
    new = cluster_clients.new
    a1 = await new(n1, "websocket", "a1")
    a2 = await new(n1, "polling", "a2")
    b1 = await new(n2, "websocket", "b1")
    room = unique("restart")
    await join_all(room, [a1, a2, b1], cluster_clients)
    await send_message(a1, room, "before")
    for m in (a1, a2, b1):
        await expect_message(m, a1, "before")

    c.redis.kill()
    await c.wait_readyz(503, timeout=10)

    # same-node traffic keeps flowing while Redis is down
    for i in range(3):
        await send_message(a1, room, f"down-{i}")
        for m in (a1, a2):
            await expect_message(m, a1, f"down-{i}")
    # a socket connected and a room joined while Redis is down: their subscriptions must be made
    # once Redis is back (per-room mode)
    b2 = await new(n2, "websocket", "b2")
    room2 = unique("joined-while-down")
    await b2.emit("join_room", {"roomName": room2, "personName": "b2"})
    await b2.expect("user_joined")
    await a2.emit("join_room", {"roomName": room2, "personName": "a2"})
    await a2.expect("user_joined")
    assert await http_status(n1.url, "/healthz") == 200

    t0 = time.monotonic()
    c.redis.start()  # same port
    took = await c.wait_readyz(200, timeout=15)
    print(f"{mode}: /readyz 200 on both nodes {took:.2f}s after redis-server was started "
          f"({time.monotonic() - t0:.2f}s incl. its startup)")

    # cross-node works again, both ways, each message once
    for i in range(5):
        await send_message(a1, room, f"after-{i}")
    for m in (a1, a2, b1):
        for i in range(5):
            await expect_message(m, a1, f"after-{i}")
    await send_message(b1, room, "after-from-n2")
    for m in (a1, a2, b1):
        await expect_message(m, b1, "after-from-n2")
    await send_message(a2, room2, "room2 from n1")  # room joined on both nodes while Redis was down
    for m in (a2, b2):
        await expect_message(m, a2, "room2 from n1")
    await cluster_clients.settle()
    for m in (a1, a2, b1, b2):
        m.assert_none("message", "offer")
        dup = {k: v for k, v in message_counts(m).items() if v > 1}
        assert not dup, f"{m.name} got messages more than once: {dup}"

    # Presence (who is in which room, cluster-wide) lives in Redis, which came back empty. Right
    # after /readyz is 200 again: signals (the shared-room check reads presence) to a socket that
    # joined before the outage and to one that connected during it, and a joiner's roster (ack)
    # listing the members on the other node.
    problems = []
    t_ready = time.monotonic()
    late = await new(n1, "websocket", "late", fence=False)
    join = asyncio.create_task(
        late.emit_with_ack("join_room", {"roomName": room, "personName": "late"}))
    for target in (b1, b2):
        await a1.emit("offer", sdp_payload("offer", a1, target))
    # (1 s is plenty for a relay that takes about a millisecond)
    got = await asyncio.gather(*(t.expect("offer", timeout=1.0) for t in (b1, b2)),
                               return_exceptions=True)
    failed = [t for t, g in zip((b1, b2), got) if isinstance(g, BaseException)]
    for t, g in zip((b1, b2), got):
        if not isinstance(g, BaseException):
            assert_exact(g, sdp_payload("offer", a1, t))
    if failed:
        errors = [p for ev, p in a1.log if ev == "error"]
        when = await asyncio.gather(*(until_offer_delivered(a1, t, t_ready) for t in failed))
        for t, w in zip(failed, when):
            problems.append(f"offer a1@n1 -> {t.name}@n2 not delivered within 1 s ({w})")
        problems.append(f"a1's error events: {errors}")
    ack = await join
    peers = sorted(p["socketId"] for p in ack[0].get("peers", [])) \
        if ack and isinstance(ack[0], dict) else ack
    if peers != sorted([a1.sid, a2.sid, b1.sid]):
        problems.append(f"join_room roster (ack) on n1: peers {peers}, expected a1, a2 (n1) and "
                        f"b1 (n2): {sorted([a1.sid, a2.sid, b1.sid])}")
    assert not problems, "after Redis restart and /readyz 200:\n  " + "\n  ".join(problems)
    await cluster_clients.settle()
    for m in (a1, a2, b1, b2):
        m.assert_none("offer")


async def until_offer_delivered(sender, target, since, limit=15.0):
    """Diagnostics: retry an offer every 100 ms until it is delivered; say when it was."""
    while time.monotonic() - since < limit:
        await sender.emit("offer", sdp_payload("offer", sender, target))
        try:
            await target.expect("offer", timeout=0.1)
            return f"an offer got through {time.monotonic() - since:.2f}s after /readyz was 200"
        except AssertionError:
            pass
    return f"no offer got through within {limit}s after /readyz was 200"


# --------------------------------------------------------------------------------------------
# 5. Redis frozen: the event loop is never blocked
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
async def test_frozen_redis_blocks_no_event_loop(cluster_factory, cluster_clients, mode):
    c = cluster_factory(mode, n=2, node_args={0: ["--ping-interval", "300", "--ping-timeout", "300"]})
    n1, n2 = c
    new = cluster_clients.new
    a1 = await new(n1, "websocket", "a1")
    a2 = await new(n1, "polling", "a2")
    b1 = await new(n2, "websocket", "b1")
    assert a1.sio.eio.ping_interval == 0.3 and a1.sio.eio.ping_timeout == 0.3, "ping settings"
    room = unique("frozen")
    await join_all(room, [a1, a2, b1], cluster_clients)
    await send_message(b1, room, "before")
    for m in (a1, a2, b1):
        await expect_message(m, b1, "before")

    c.redis.freeze()
    sent = []
    try:
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < 2.2:  # > 3 ping periods of 300 + 300 ms
            content = f"frozen-{i}"
            t = time.monotonic()
            await send_message(a1, room, content)
            sent.append(content)
            for m in (a1, a2):
                await expect_message(m, a1, content, timeout=1.0)
            took = time.monotonic() - t
            assert took < 1.0, f"same-node message took {took:.3f}s with Redis frozen"
            status = await http_status(n1.url, "/healthz", timeout=1.0)
            assert status == 200, f"/healthz answered {status} with Redis frozen"
            # /readyz answers too (whatever it says), and promptly
            assert await http_status(n1.url, "/readyz", timeout=1.0) in (200, 503)
            i += 1
            await asyncio.sleep(0.15)
        assert a1.sio.connected and not a1.disconnected.is_set(), \
            "websocket client with 300/300 ms pings was disconnected while Redis was frozen"
        assert a2.sio.connected and not a2.disconnected.is_set(), "polling client was disconnected"
    finally:
        c.redis.thaw()

    await c.wait_readyz(200, timeout=15)
    await send_message(a1, room, "thawed")
    for m in (a1, a2, b1):
        # the frozen-time publishes may come first on b1 (or be lost); "thawed" must come
        while True:
            got = await m.expect("message", timeout=10)
            if got["content"] == "thawed":
                break
            assert m is b1 and got["content"] in sent, f"{m.name}: unexpected {got!r}"
    await send_message(b1, room, "back from n2")
    for m in (a1, a2, b1):
        await expect_message(m, b1, "back from n2")
    await cluster_clients.settle()
    for m in (a1, a2, b1):
        dup = {k: v for k, v in message_counts(m).items() if v > 1}
        assert not dup, f"{m.name} got messages more than once: {dup}"
    order = [p["content"] for ev, p in b1.log if ev == "message" and p["content"] in sent]
    assert order == sorted(order, key=lambda s: int(s.split("-")[1])), f"b1 order: {order}"


# --------------------------------------------------------------------------------------------
# 6. exactly once, per-sender order
# --------------------------------------------------------------------------------------------

async def test_two_senders_exactly_once_in_order(cluster, cluster_clients):
    n1, n2, n3 = cluster
    new = cluster_clients.new
    s1 = await new(n1, "websocket", "s1")
    s2 = await new(n2, "websocket", "s2")
    members = [s1, s2, await new(n1, "polling", "r1"), await new(n2, "default", "r2"),
               await new(n3, "websocket", "r3"), await new(n3, "polling", "r3p")]
    room = unique("order")
    await join_all(room, members, cluster_clients)
    n = 50

    async def send(sender):
        for i in range(n):
            await send_message(sender, room, f"{sender.name}:{i}")

    await asyncio.wait_for(asyncio.gather(send(s1), send(s2)), 20)

    async def receive(m):
        return [(await m.expect("message", timeout=10))["content"] for _ in range(2 * n)]

    got = await asyncio.wait_for(asyncio.gather(*(receive(m) for m in members)), 30)
    await cluster_clients.settle()
    for m, contents in zip(members, got):
        m.assert_none("message")
        for s in (s1, s2):
            mine = [x for x in contents if x.startswith(f"{s.name}:")]
            assert mine == [f"{s.name}:{i}" for i in range(n)], \
                f"{m.name}@{m.node.node_id}: {s.name}'s messages out of order or not exactly once: {mine}"
