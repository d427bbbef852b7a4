#!/usr/bin/env python3
"""Reference implementation of the seed signaling server, in python-socketio.

It re-implements the event handlers of the Node.js seed (see
shared/notes/seed-protocol.md section 1) so that the integration tests can be
validated before the Swift server exists, and to serve as a benchmark
baseline afterwards.

Differences from the seed, on purpose (they match the Swift server's spec):
  * relayed ICE candidates are emitted under both `ice_candidate` and
    `ice-candidate` (configurable with --ice-event);
  * `join_room` answers an ack, when the client asks for one, with
    {"roomName": ..., "socketId": ..., "peers": []}.

Engine.IO details (error bodies, CORS header values, open-packet key order)
are python-engineio's, not Node's: tests that check those exactly are marked
`swift_only`.

Usage: python3 reference_server.py --port N [--host 127.0.0.1]
       [--ping-interval MS] [--ping-timeout MS] [--max-payload BYTES]
       [--ice-event both|underscore|hyphen]
GET /healthz answers 200 "ok" once listening.
"""

import argparse
import asyncio
import datetime
import email.utils
import logging
import signal
import sys

import socketio
from aiohttp import web


# Deliberate bugs, for checking that the test suite notices them (--bug NAME, repeatable).
BUGS = {
    "user_left_to_all": "user_left also sent to the leaver",
    "user_joined_to_others": "user_joined not sent to the joiner",
    "message_no_sender": "chat message not echoed to the sender",
    "message_twice": "chat message delivered twice",
    "iso_timestamp": "timestamp in ISO 8601 instead of toUTCString",
    "relay_to_room": "offer/answer/ice relayed to everyone but the sender",
    "relay_sorted_keys": "relayed objects re-serialised with sorted keys",
    "relay_to_sender": "offer/answer/ice also sent back to the sender",
    "legacy_to_all": "legacy receive-* also sent to the sender",
    "ack_everything": "unknown events with an ack id are answered",
    "no_join_ack": "join_room never answers an ack",
    "isolate_none": "room messages go to every socket",
}


def patch_engineio(args):
    """Two python-engineio quirks that would make the reference disagree with the spec:
    - its open packet computes pingInterval as int(seconds) * 1000, so 300 ms shows as 0;
      rewrite the open packet with the configured values (and Node's key order);
    - Packet.encode caches its first encoding, so a binary packet broadcast to a websocket
      client and then to a polling client is sent to the latter as raw bytes (500 error);
      encode binary packets without the cache."""
    import base64

    import engineio.packet as eio_packet

    Packet = eio_packet.Packet
    orig_init = Packet.__init__
    orig_encode = Packet.encode

    def init(self, packet_type=eio_packet.NOOP, data=None, encoded_packet=None):
        if (packet_type == eio_packet.OPEN and isinstance(data, dict)
                and "pingInterval" in data):
            data = {
                "sid": data["sid"],
                "upgrades": data["upgrades"],
                "pingInterval": args.ping_interval,
                "pingTimeout": args.ping_timeout,
                "maxPayload": data["maxPayload"],
            }
        orig_init(self, packet_type, data, encoded_packet)

    def encode(self, b64=False):
        if self.binary:
            if b64:
                return "b" + base64.b64encode(self.data).decode("ascii")
            return self.data
        return orig_encode(self, b64)

    Packet.__init__ = init
    Packet.encode = encode

    # python-engineio refuses a polling payload of more than 16 packets; Node has no limit.
    import engineio.payload
    engineio.payload.Payload.max_decode_packets = 100000


def build_app(args):
    patch_engineio(args)
    # --redis: nodes share rooms through python-socketio's AsyncRedisManager (bench/run.py's baseline cluster).
    manager = socketio.AsyncRedisManager(args.redis) if args.redis else None
    sio = socketio.AsyncServer(
        client_manager=manager,
        async_mode="aiohttp",
        cors_allowed_origins="*",
        ping_interval=args.ping_interval / 1000.0,
        ping_timeout=args.ping_timeout / 1000.0,
        max_http_buffer_size=args.max_payload,
        logger=False,
        engineio_logger=False,
    )
    @web.middleware
    async def payload_limit(request, handler):
        # python-engineio's own check hangs the POST (it waits for the session to close):
        # refuse an oversize body up front with 413, as Node does.
        if (request.method == "POST" and request.path.startswith("/socket.io/")
                and (request.content_length or 0) > args.max_payload):
            return web.Response(status=413)
        return await handler(request)

    app = web.Application(middlewares=[payload_limit],
                          client_max_size=max(args.max_payload * 2, 1024 ** 2))
    sio.attach(app, socketio_path="socket.io")

    async def healthz(_request):
        return web.Response(text="ok")

    app.router.add_get("/healthz", healthz)

    ice_names = {
        "both": ["ice_candidate", "ice-candidate"],
        "underscore": ["ice_candidate"],
        "hyphen": ["ice-candidate"],
    }[args.ice_event]

    bug = set(args.bug)

    def field(data, key):
        if isinstance(data, dict):
            return data.get(key)
        return None

    @sio.event
    async def connect(sid, environ, auth=None):
        logging.debug("connect %s", sid)

    @sio.event
    async def disconnect(sid, *_reason):
        # The seed only logs a disconnect: no user_left is sent.
        logging.debug("disconnect %s", sid)

    @sio.on("join_room")
    async def join_room(sid, data):
        room = field(data, "roomName")
        person = field(data, "personName")
        await sio.enter_room(sid, room)
        await sio.emit(
            "user_joined",
            {"personName": person, "roomName": room, "socketId": sid},
            room=room,
            skip_sid=sid if "user_joined_to_others" in bug else None,
        )
        if "no_join_ack" in bug:
            return sio.not_handled
        # Returned value becomes the ack payload when the client asked for one.
        return {"roomName": room, "socketId": sid, "peers": []}

    @sio.on("message")
    async def message(sid, data):
        room = field(data, "roomName")
        out = {
            "personName": field(data, "personName"),
            "content": field(data, "content"),
            "timestamp": email.utils.formatdate(usegmt=True),
        }
        if "iso_timestamp" in bug:
            out["timestamp"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        target = None if "isolate_none" in bug else room
        skip = sid if "message_no_sender" in bug else None
        await sio.emit("message", out, room=target, skip_sid=skip)
        if "message_twice" in bug:
            await sio.emit("message", out, room=target, skip_sid=skip)
        # The seed never answers acks for these events.
        return sio.not_handled

    @sio.on("leave_room")
    async def leave_room(sid, data):
        room = field(data, "roomName")
        person = field(data, "personName")
        if "user_left_to_all" in bug:  # announce before leaving, to the leaver too
            await sio.emit("user_left",
                           {"personName": person, "roomName": room, "socketId": sid}, room=room)
            await sio.leave_room(sid, room)
            return sio.not_handled
        await sio.leave_room(sid, room)
        await sio.emit(
            "user_left",
            {"personName": person, "roomName": room, "socketId": sid},
            room=room,
            skip_sid=sid,
        )
        return sio.not_handled

    async def relay(sid, name, data):
        to = field(data, "toPeer")
        if not isinstance(to, str):
            return
        if "relay_sorted_keys" in bug and isinstance(data, dict):
            data = dict(sorted(data.items()))
        target = None if "relay_to_room" in bug else to
        await sio.emit(name, data, room=target, skip_sid=sid)
        if "relay_to_sender" in bug:
            await sio.emit(name, data, to=sid)

    @sio.on("offer")
    async def offer(sid, data):
        await relay(sid, "offer", data)
        return sio.not_handled

    @sio.on("answer")
    async def answer(sid, data):
        await relay(sid, "answer", data)
        return sio.not_handled

    @sio.on("ice_candidate")
    async def ice_candidate(sid, data):
        for name in ice_names:
            await relay(sid, name, data)
        return sio.not_handled

    def legacy(src, dst):
        async def handler(sid, *args):
            # socket.broadcast.emit: every other connected socket, any room.
            await sio.emit(dst, args[0] if len(args) == 1 else list(args),
                           skip_sid=None if "legacy_to_all" in bug else sid)
            return sio.not_handled
        sio.on(src, handler)

    legacy("send-offer", "receive-offer")
    legacy("send-answer", "receive-answer")
    legacy("send-icecandidate", "receive-icecandidate")

    if "ack_everything" in bug:
        @sio.on("*")
        async def any_event(event, sid, *args):
            return {"acked": event}

    return app


async def main(args):
    app = build_app(args)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    print(f"reference server listening on {args.host}:{args.port}",
          file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4000)
    p.add_argument("--ping-interval", type=int, default=25000, help="ms")
    p.add_argument("--ping-timeout", type=int, default=20000, help="ms")
    p.add_argument("--max-payload", type=int, default=1000000, help="bytes")
    p.add_argument("--ice-event", choices=["both", "underscore", "hyphen"],
                   default="both")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--redis", default=None,
                   help="redis://host:port: a cluster node through socketio.AsyncRedisManager")
    p.add_argument("--bug", action="append", default=[], choices=sorted(BUGS),
                   help="deliberately break one behaviour (to check that the tests catch it)")
    return p.parse_args(argv)


if __name__ == "__main__":
    a = parse_args()
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING,
                        stream=sys.stderr)
    asyncio.run(main(a))
