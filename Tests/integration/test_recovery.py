"""Connection state recovery (issue #13, stage 1: one node) with real clients.

- The official socket.io-client 4.8.1 (/work/shared/clients/socket.io-4.8.1.min.js) in headless Chromium: the page
  kills its own websocket; meanwhile a python-socketio peer in the same room sends K chat messages and an offer
  to it. The client comes back with the same id, `socket.recovered === true`, receives the K messages and the
  offer once each and in order, before what is sent after; the peer hears no user_left and no second user_joined.
- python-socketio, which does not implement recovery: its reconnect is a normal one (new id; the old socket's
  user_left goes out, once, when the window closes).
- The window passing without the client: a normal new session (`recovered === false`) and one user_left.
"""

import asyncio
import json
import os
import re
import time
from pathlib import Path

import pytest

from conftest import TIMEOUT, Client, unique
from media_cluster import Browser, require_browser, wait_until

BUNDLE = Path(os.environ.get("SOCKETIO_CLIENT_BUNDLE", "/work/shared/clients/socket.io-4.8.1.min.js"))
K = 8
# A node's own offsets (one node), or a Redis stream id (recovery across nodes, with --redis).
OFFSET = re.compile(r"^[A-Za-z0-9_-]{8}-[1-9][0-9]*$")
STREAM_ID = re.compile(r"^[1-9][0-9]*-(0|[1-9][0-9]*)$")


class OffsetClient(Client):
    """The harness's client, with the offset (a last string argument after the payload) kept apart."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.offsets = []

    async def _on_any(self, event, *args):
        if len(args) >= 2 and isinstance(args[-1], str) and (OFFSET.match(args[-1]) or STREAM_ID.match(args[-1])):
            self.offsets.append(args[-1])
            args = args[:-1]
        await super()._on_any(event, *args)


@pytest.fixture
def recovery_server(server_factory):
    return server_factory("--recovery-window", "30")


async def peer(server, name="peer", reconnection=False):
    c = OffsetClient(server.url, "websocket", name)
    if reconnection:
        import socketio
        c.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=0.5)
        c.sio.on("*", c._on_any)
        c.sio.on("disconnect", c._on_disconnect)
    await c.connect()
    return c


PAGE_SETUP = """
const [bundle, url, room, transports] = arguments;
const script = document.createElement('script');
script.textContent = bundle;
document.head.appendChild(script);
window.rec = {events: [], connects: [], room};
// A fixed reconnection delay: the gap during which the peer sends is at least 1.5 s.
const socket = io(url, {transports: transports || ['websocket'], reconnectionDelay: 1500, randomizationFactor: 0});
window.rec.socket = socket;
socket.on('connect', () => window.rec.connects.push({id: socket.id, recovered: socket.recovered}));
socket.onAny((event, ...args) => window.rec.events.push([event, ...args]));
socket.once('connect', () => socket.emit('join_room', {roomName: room, personName: 'Browser'}, (roster) => {
  window.rec.roster = roster;
}));
"""


def browser_state(browser):
    return browser.js("return {events: rec.events, connects: rec.connects, roster: rec.roster || null}")


async def wait_for(predicate, timeout, what, detail=None):
    return await asyncio.to_thread(wait_until, predicate, timeout, what, 0.1, detail)


DROPS = {
    # transports, what the page does to lose its transport, and what the transport must be before
    "websocket": (["websocket"], "rec.socket.io.engine.transport.ws.close()", "websocket"),
    "polling": (["polling"], "rec.socket.io.engine.close()", "polling"),
    "upgraded": (["polling", "websocket"], "rec.socket.io.engine.transport.ws.close()", "websocket"),
}


@pytest.mark.parametrize("drop", list(DROPS))
async def test_official_client_recovers_a_dropped_transport_with_every_missed_event(recovery_server, drop):
    require_browser()
    transports, drop_script, transport_name = DROPS[drop]
    room = unique("csr")
    alice = await peer(recovery_server, "alice")
    await alice.emit("join_room", {"roomName": room, "personName": "alice"})
    await alice.expect("user_joined")
    browser = await asyncio.to_thread(Browser, "csr")
    try:
        await asyncio.to_thread(browser.driver.get, f"{recovery_server.url}/healthz")
        await asyncio.to_thread(browser.js, PAGE_SETUP, BUNDLE.read_text(), recovery_server.url, room, transports)
        state = await wait_for(lambda: (s := browser_state(browser))["roster"] and s, TIMEOUT, "browser joined",
                               browser.console_text)
        first = state["connects"][0]
        assert first["recovered"] is False
        await wait_for(lambda: browser.js("return rec.socket.io.engine.transport.name") == transport_name, TIMEOUT,
                       f"the {transport_name} transport")
        joined = await alice.expect("user_joined")
        assert joined["socketId"] == first["id"]
        # Something before the drop, so the client has an offset to come back with.
        await alice.emit("message", {"roomName": room, "content": "before"})
        await wait_for(lambda: any(e[0] == "message" for e in browser_state(browser)["events"]), TIMEOUT,
                       "browser got 'before'", browser.console_text)

        # The page kills its websocket: a transport close for both sides; the client reconnects in 1.5 s.
        dropped = time.monotonic()
        await asyncio.to_thread(browser.js, drop_script)
        await wait_for(lambda: browser.js("return !rec.socket.connected"), TIMEOUT, "browser disconnected")
        sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        for i in range(K):
            await alice.emit("message", {"roomName": room, "content": f"gap-{i}"})
            if i == K // 2:
                await alice.emit("offer", {"toPeer": first["id"], "offer": {"type": "offer", "sdp": sdp}})
        assert browser.js("return rec.socket.connected") is False, "the gap closed before the peer finished sending"

        state = await wait_for(lambda: (s := browser_state(browser))["connects"][1:] and s, TIMEOUT,
                               "browser reconnected", browser.console_text)
        recovered_after = time.monotonic() - dropped
        again = state["connects"][1]
        assert again == {"id": first["id"], "recovered": True}, state["connects"]
        offsets = await expect_gap_replayed(browser, alice, room)
        assert all(OFFSET.match(o) for o in offsets), offsets

        # The peer heard nothing of the drop: a fence (its own later message, which it receives) first.
        await browser_state_fence(browser, room)
        await alice.expect("message")  # 'before'
        for _ in range(K + 1):
            await alice.expect("message")
        fence = await alice.expect("message")
        assert fence["content"] == "fence"
        alice.assert_none("user_left", "user_joined")
        print(f"\n[recovery, {drop}] transport drop → recovered: {recovered_after * 1000:.0f} ms "
              f"(client reconnection delay 1500 ms); {K + 1} missed events replayed")
    finally:
        await asyncio.to_thread(browser.quit)
        await alice.close()


async def expect_gap_replayed(browser, alice, room):
    """The peer sends 'after'; the browser must then have 'before', the K gap messages with alice's offer among
    them, and 'after', each once and in order, with distinct, increasing offsets (returned)."""
    await alice.emit("message", {"roomName": room, "content": "after"})
    await wait_for(lambda: any(e[0] == "message" and e[1]["content"] == "after"
                               for e in browser_state(browser)["events"]), TIMEOUT, "browser got 'after'")
    events = browser_state(browser)["events"]
    seen = [(e[0], e[1]["content"]) if e[0] == "message" else (e[0], e[1].get("fromPeer")) for e in events
            if e[0] in ("message", "offer")]
    expected = ([("message", "before")] + [("message", f"gap-{i}") for i in range(K // 2 + 1)]
                + [("offer", alice.sid)] + [("message", f"gap-{i}") for i in range(K // 2 + 1, K)]
                + [("message", "after")])
    assert seen == expected
    # Each event's last argument is its offset: "<tag>-<n>" (one node) or a stream id (across nodes).
    offsets = [e[-1] for e in events if e[0] in ("message", "offer")]
    numbers = [tuple(int(part) for part in o.split("-")) if STREAM_ID.match(o) else int(o.rsplit("-", 1)[1])
               for o in offsets]
    assert numbers == sorted(set(numbers)), offsets
    return offsets


async def browser_state_fence(browser, room):
    await asyncio.to_thread(browser.js, "rec.socket.emit('message', {roomName: arguments[0], content: 'fence'})", room)


async def test_window_passing_gives_a_new_session_and_one_user_left(server_factory):
    require_browser()
    server = server_factory("--recovery-window", "1")
    room = unique("csr-expired")
    alice = await peer(server, "alice")
    await alice.emit("join_room", {"roomName": room, "personName": "alice"})
    await alice.expect("user_joined")
    browser = await asyncio.to_thread(Browser, "csr-expired")
    try:
        await asyncio.to_thread(browser.driver.get, f"{server.url}/healthz")
        setup = PAGE_SETUP.replace("reconnectionDelay: 1500", "reconnectionDelay: 2500")
        await asyncio.to_thread(browser.js, setup, BUNDLE.read_text(), server.url, room)
        state = await wait_for(lambda: (s := browser_state(browser))["roster"] and s, TIMEOUT, "browser joined")
        first = state["connects"][0]
        await alice.expect("user_joined")
        await asyncio.to_thread(browser.js, "rec.socket.io.engine.transport.ws.close()")
        left = await alice.expect("user_left", timeout=TIMEOUT)
        assert left == {"personName": "Browser", "roomName": room, "socketId": first["id"]}
        state = await wait_for(lambda: (s := browser_state(browser))["connects"][1:] and s, TIMEOUT,
                               "browser reconnected")
        again = state["connects"][1]
        assert again["recovered"] is False and again["id"] != first["id"]
        await alice.fence()
        alice.assert_none("user_left")
    finally:
        await asyncio.to_thread(browser.quit)
        await alice.close()


async def test_python_socketio_degrades_to_a_normal_reconnect(server_factory):
    server = server_factory("--recovery-window", "2")
    room = unique("csr-py")
    alice = await peer(server, "alice")
    bob = await peer(server, "bob", reconnection=True)
    try:
        connect = await alice.emit_with_ack("join_room", {"roomName": room, "personName": "alice"})
        assert connect[0]["roomName"] == room
        await alice.expect("user_joined")  # her own
        await bob.emit("join_room", {"roomName": room, "personName": "bob"})
        await bob.expect("user_joined")
        assert (await alice.expect("user_joined"))["personName"] == "bob"
        old_id = bob.sid
        # python-socketio hands the offset to handlers as an extra argument (kept apart by OffsetClient).
        assert bob.offsets and all(OFFSET.match(o) for o in bob.offsets)

        await bob.sio.eio.ws.close()  # the transport drops; python-socketio reconnects without {pid, offset}
        await wait_for(lambda: bob.sio.connected and bob.sid not in (None, old_id), TIMEOUT, "bob reconnected")
        assert bob.sid != old_id
        started = time.monotonic()
        left = await alice.expect("user_left", timeout=TIMEOUT)
        assert left["socketId"] == old_id
        assert time.monotonic() - started > 0.5  # held for the window, not sent at the drop
        await alice.fence()
        alice.assert_none("user_left", "user_joined")
    finally:
        await bob.close()
        await alice.close()


def test_demo_page_recovers_and_keeps_its_call(recovery_server):
    """The demo page (its own small client, sio.js) with recovery on: Alice's page drops its websocket while Bob
    chats; she comes back as the same socket, gets the messages once in order, and Bob never saw her leave."""
    require_browser()
    room = unique("csr-demo")
    alice, bob = Browser("Alice"), Browser("Bob")
    try:
        alice.open(recovery_server, room)
        bob.open(recovery_server, room)
        alice_id = wait_until(lambda: alice.js("return demo.joined && demo.id"), TIMEOUT, "alice joined")
        wait_until(lambda: bob.js("return demo.joined && demo.id"), TIMEOUT, "bob joined")
        wait_until(lambda: alice_id in [p["id"] for p in bob.peers()], TIMEOUT, "bob sees alice")
        bob.js("demo.say('before')")
        wait_until(lambda: alice.js("return demo.chat.length") >= 1, TIMEOUT, "alice got 'before'")
        alice.js("demo.drop()")
        bob.js("for (let i = 0; i < 3; i++) demo.say('gap-' + i)")
        wait_until(lambda: alice.js("return demo.socket.connected && demo.socket.reconnections") == 1, TIMEOUT,
                   "alice reconnected", detail=alice.diagnostics)
        assert alice.js("return [demo.id, demo.socket.recovered, demo.joined]") == [alice_id, True, True]
        bob.js("demo.say('after')")
        wait_until(lambda: alice.js("return demo.chat.length") >= 5, TIMEOUT, "alice got 'after'", detail=alice.diagnostics)
        assert alice.js("return demo.chat.map(m => m.content)") == ["before", "gap-0", "gap-1", "gap-2", "after"]
        assert "recovered as" in alice.page_log()
        assert bob.js("return [...demo.call.gone]") == []
        assert alice_id in [p["id"] for p in bob.peers()]
    finally:
        alice.quit()
        bob.quit()


# --------------------------------------------------------------------------------------------
# In a Redis cluster: recovery on the node that held the socket, with the peer on another node
# --------------------------------------------------------------------------------------------

@pytest.fixture
def recovery_cluster():
    from cluster import Cluster
    require_browser()
    cluster = Cluster("pattern", n=2, node_args={0: ("--recovery-window", "30"), 1: ("--recovery-window", "30")})
    cluster.start()
    yield cluster
    cluster.stop()


async def open_official_client(browser, node, room, delay_ms):
    await asyncio.to_thread(browser.driver.get, f"{node.url}/healthz")
    setup = PAGE_SETUP.replace("reconnectionDelay: 1500", f"reconnectionDelay: {delay_ms}")
    await asyncio.to_thread(browser.js, setup, BUNDLE.read_text(), node.url, room)
    state = await wait_for(lambda: (s := browser_state(browser))["roster"] and s, TIMEOUT, "browser joined",
                           browser.console_text)
    return state["connects"][0]


async def test_cross_node_peer_events_are_replayed_after_a_drop(recovery_cluster):
    """The browser on n1, the peer on n2: what the peer sends during the gap crosses Redis to n1, is kept for
    the suspended socket and replayed."""
    n1, n2 = recovery_cluster[0], recovery_cluster[1]
    room = unique("csr-x")
    alice = await peer(n2, "alice")
    await alice.emit("join_room", {"roomName": room, "personName": "alice"})
    await alice.expect("user_joined")
    browser = await asyncio.to_thread(Browser, "csr-x")
    try:
        first = await open_official_client(browser, n1, room, 1500)
        await alice.expect("user_joined")
        await asyncio.to_thread(browser.js, "rec.socket.io.engine.transport.ws.close()")
        await wait_for(lambda: browser.js("return !rec.socket.connected"), TIMEOUT, "browser disconnected")
        for i in range(K):
            await alice.emit("message", {"roomName": room, "content": f"gap-{i}"})
        state = await wait_for(lambda: (s := browser_state(browser))["connects"][1:] and s, TIMEOUT,
                               "browser reconnected", browser.console_text)
        assert state["connects"][1] == {"id": first["id"], "recovered": True}
        await wait_for(lambda: len([e for e in browser_state(browser)["events"] if e[0] == "message"]) >= K,
                       TIMEOUT, "browser got the gap's messages")
        await asyncio.sleep(0.3)
        got = [e[1]["content"] for e in browser_state(browser)["events"] if e[0] == "message"]
        assert got == [f"gap-{i}" for i in range(K)]
        await alice.fence()
        alice.assert_none("user_left")
    finally:
        await asyncio.to_thread(browser.quit)
        await alice.close()


async def test_redis_restarted_during_the_gap_gives_a_new_session(recovery_cluster):
    """What is guaranteed when Redis restarts while a socket is suspended: n1 may have missed cross-node events
    to it, so the client is not told it recovered: it gets a new session (recovered false), and the peer gets
    the old socket's user_left, once."""
    n1, n2 = recovery_cluster[0], recovery_cluster[1]
    room = unique("csr-redis-gap")
    alice = await peer(n2, "alice")
    await alice.emit("join_room", {"roomName": room, "personName": "alice"})
    await alice.expect("user_joined")
    browser = await asyncio.to_thread(Browser, "csr-redis")
    try:
        first = await open_official_client(browser, n1, room, 3000)
        await alice.expect("user_joined")
        await asyncio.to_thread(browser.js, "rec.socket.io.engine.transport.ws.close()")
        await wait_for(lambda: browser.js("return !rec.socket.connected"), TIMEOUT, "browser disconnected")
        recovery_cluster.redis.kill()
        recovery_cluster.redis.start()
        await recovery_cluster.wait_readyz(200)
        state = await wait_for(lambda: (s := browser_state(browser))["connects"][1:] and s, TIMEOUT,
                               "browser reconnected", browser.console_text)
        again = state["connects"][1]
        assert again["recovered"] is False and again["id"] != first["id"]
        left = await alice.expect("user_left")
        assert left["socketId"] == first["id"]
        await alice.fence()
        alice.assert_none("user_left")
    finally:
        await asyncio.to_thread(browser.quit)
        await alice.close()
