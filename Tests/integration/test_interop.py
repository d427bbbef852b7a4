"""Interop with Node.js cluster peers: requests a Node.js socket.io node (or the emitter) publishes on the
Redis request channel, written here byte for byte in its format, answered by our node the way a Node.js node
answers them (shared/notes/protocol-facts.md §3.3, shared/fixtures/redis-adapter)."""

import asyncio
import json

import msgpack
import pytest

from cluster import RedisSpy, cluster_factory, redis_command  # noqa: F401
from conftest import TIMEOUT, Client

REQUEST = "socket.io-request#/#"
RESPONSE = "socket.io-response#/#"


def decode(payload):
    return json.loads(payload) if payload[:1] == b"{" else msgpack.unpackb(payload, raw=False)


async def test_broadcast_with_ack_from_a_node_peer(cluster_factory):
    """Type 7 (io.timeout(…).emit(…, cb) on a Node.js node): our node answers the count of its matching clients
    (type 8, JSON), delivers the event with an ack id, and relays each client's first ack argument (type 9,
    MessagePack), as in fixtures 22-broadcast-ack-*."""
    cl = cluster_factory("pattern", n=1)
    node = cl[0]
    c = Client(node.url, "websocket", "c")
    c.sio.on("question", lambda data: {"answer": "c", "got": data})
    outsider = Client(node.url, "websocket", "o")
    await c.connect()
    await outsider.connect()
    room = "interop-room"
    assert (await c.emit_with_ack("join_room", {"roomName": room, "personName": "c"}))[0]["roomName"] == room
    spy = await RedisSpy.start(cl.redis.port, channels=[RESPONSE])
    try:
        request = msgpack.packb({
            "uid": "NodeJs", "requestId": "req-1", "type": 7,
            "packet": {"type": 2, "data": ["question", {"q": 42}], "nsp": "/"},
            "opts": {"rooms": [room], "except": [], "flags": {"timeout": 1000}},
        }, use_bin_type=True)
        await redis_command(cl.redis.port, "PUBLISH", REQUEST, request)
        answers = await spy.wait_for(lambda ms: [decode(m.payload) for m in ms if m.channel == RESPONSE]
                                     if len([m for m in ms if m.channel == RESPONSE]) >= 2 else None,
                                     timeout=TIMEOUT, what="the count and the ack")
        assert answers[0] == {"type": 8, "requestId": "req-1", "clientCount": 1}
        assert answers[1] == {"type": 9, "requestId": "req-1", "packet": {"answer": "c", "got": {"q": 42}}}
        assert len(spy.on(RESPONSE)) == 2
    finally:
        await spy.close()
        await c.close()
        await outsider.close()


async def test_broadcast_with_ack_to_no_local_client_answers_zero(cluster_factory):
    cl = cluster_factory("pattern", n=1)
    spy = await RedisSpy.start(cl.redis.port, channels=[RESPONSE])
    try:
        request = msgpack.packb({
            "uid": "NodeJs", "requestId": "req-2", "type": 7,
            "packet": {"type": 2, "data": ["question"], "nsp": "/"},
            "opts": {"rooms": ["nobody-here"], "except": [], "flags": {}},
        }, use_bin_type=True)
        await redis_command(cl.redis.port, "PUBLISH", REQUEST, request)
        got = await spy.wait_for(lambda ms: [decode(m.payload) for m in ms if m.channel == RESPONSE],
                                 timeout=TIMEOUT, what="the count")
        assert got == [{"type": 8, "requestId": "req-2", "clientCount": 0}]
        await asyncio.sleep(0.2)
        assert len(spy.on(RESPONSE)) == 1
    finally:
        await spy.close()
