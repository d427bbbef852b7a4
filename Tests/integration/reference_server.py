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
import email.utils
import logging
import signal
import sys

import socketio
from aiohttp import web


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


def build_app(args):
    patch_engineio(args)
    sio = socketio.AsyncServer(
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
        )
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
        await sio.emit("message", out, room=room)
        # The seed never answers acks for these events.
        return sio.not_handled

    @sio.on("leave_room")
    async def leave_room(sid, data):
        room = field(data, "roomName")
        person = field(data, "personName")
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
        await sio.emit(name, data, room=to, skip_sid=sid)

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
                           skip_sid=sid)
            return sio.not_handled
        sio.on(src, handler)

    legacy("send-offer", "receive-offer")
    legacy("send-answer", "receive-answer")
    legacy("send-icecandidate", "receive-icecandidate")

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
    return p.parse_args(argv)


if __name__ == "__main__":
    a = parse_args()
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING,
                        stream=sys.stderr)
    asyncio.run(main(a))
