"""Connection state recovery across nodes (issue #13, stage 2): a node dies (kill -9) and its clients come back on
another node with the same socket, their rooms, and every event sent to them meanwhile.

The cluster is deploy/failover.py's: Redis, three signal-node nodes (`--recovery-window`, a short
`--node-timeout` so that the dead node's reaper runs within the test) and HAProxy with the shipped config. The
official socket.io-client 4.8.1 runs in headless Chromium with its default reconnection backoff and connects
through HAProxy; its peer (python-socketio) connects to another node directly.
"""

import asyncio
import json
import importlib.util
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import TIMEOUT, swift_binary, unique
from media_cluster import Browser, require_browser
from test_recovery import (BUNDLE, K, PAGE_SETUP, STREAM_ID, OffsetClient, browser_state,
                           expect_gap_replayed, wait_for)

spec = importlib.util.spec_from_file_location("failover", Path(__file__).resolve().parents[2] / "deploy" / "failover.py")


def load_failover():
    if shutil.which("haproxy") is None and not os.path.exists("/usr/sbin/haproxy"):
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    os.environ["PATH"] += ":/usr/sbin"  # Debian's haproxy
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NODE_TIMEOUT_MS = 2000


@pytest.fixture
def lb_cluster(tmp_path):
    require_browser()
    failover = load_failover()
    cluster = failover.Cluster(swift_binary(), tmp_path, ["--recovery-window", "30", "--node-timeout",
                                                          str(NODE_TIMEOUT_MS)], log=lambda *a: None)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop_all()
        for name in ("node1", "node2", "node3"):
            log = tmp_path / f"{name}.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {name} ---\n" + "\n".join(tail))


def sessions(url):
    with urllib.request.urlopen(url + "/metrics", timeout=2) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("signal_sessions"):
                return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("end", ["kill -9", "drain"])
async def test_official_client_recovers_on_another_node_after_its_node_is_killed(lb_cluster, end):
    """kill -9, or SIGTERM (a drain: the node closes its sessions and its sockets wait in the ledger)."""
    room = unique("csr-kill")
    nodes = ("node1", "node2", "node3")
    before = {n: sessions(lb_cluster.node_url(n)) for n in nodes}
    browser = await asyncio.to_thread(Browser, "csr-kill")
    alice = None
    try:
        await asyncio.to_thread(browser.driver.get, f"{lb_cluster.url}/healthz")
        # The client's own reconnection settings (delay 1 s, randomization 0.5), as the seed's client has them.
        setup = PAGE_SETUP.replace("reconnectionDelay: 1500, randomizationFactor: 0", "")
        await asyncio.to_thread(browser.js, setup, BUNDLE.read_text(), lb_cluster.url, room)
        state = await wait_for(lambda: (s := browser_state(browser))["roster"] and s, TIMEOUT, "browser joined",
                               browser.console_text)
        first = state["connects"][0]
        grown = [n for n in nodes if sessions(lb_cluster.node_url(n)) > before[n]]
        assert len(grown) == 1, grown
        home = grown[0]
        other = next(n for n in nodes if n != home)
        alice = OffsetClient(lb_cluster.node_url(other), "websocket", "alice")
        await alice.connect()
        await alice.emit("join_room", {"roomName": room, "personName": "alice"})
        await alice.expect("user_joined")
        await alice.emit("message", {"roomName": room, "content": "before"})
        await wait_for(lambda: any(e[0] == "message" for e in browser_state(browser)["events"]), TIMEOUT,
                       "browser got 'before'", browser.console_text)

        # The browser's node goes, and the peer sends at once: the events land in the gap.
        killed = time.monotonic()
        if end == "kill -9":
            lb_cluster.procs[home].kill()
        else:
            lb_cluster.procs[home].terminate()
        sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        for i in range(K):
            await alice.emit("message", {"roomName": room, "content": f"gap-{i}"})
            if i == K // 2:
                await alice.emit("offer", {"toPeer": first["id"], "offer": {"type": "offer", "sdp": sdp}})
        state = await wait_for(lambda: (s := browser_state(browser))["connects"][1:] and s, 15,
                               "browser reconnected", browser.console_text)
        recovered_after = time.monotonic() - killed
        assert state["connects"][1] == {"id": first["id"], "recovered": True}, state["connects"]
        offsets = await expect_gap_replayed(browser, alice, room)
        assert all(STREAM_ID.match(o) for o in offsets), offsets

        # The dead node's reaper runs (node timeout 2 s, then its lock): the peer still hears nothing of the
        # browser, which lives on another node now; a chat message from the browser still reaches the peer.
        await asyncio.sleep(NODE_TIMEOUT_MS / 1000 * 2 + 1)
        await asyncio.to_thread(browser.js, "rec.socket.emit('message', {roomName: arguments[0], content: 'from-browser'})",
                                room)
        got = None
        for _ in range(K + 3):
            got = await alice.expect("message")
            if got["content"] == "from-browser":
                break
        assert got and got["content"] == "from-browser"
        await alice.fence()
        assert not [p for e, p in alice.log if e in ("user_left", "user_joined") and p
                    and isinstance(p, dict) and p.get("socketId") == first["id"]], alice.log
        print(f"\n[recovery across nodes] {end} → recovered on another node: {recovered_after * 1000:.0f} ms "
              f"(client's default backoff); {K + 1} missed events replayed once, in order")
    finally:
        await asyncio.to_thread(browser.quit)
        if alice:
            await alice.close()


async def test_a_killed_nodes_client_that_never_returns_gets_one_user_left_after_the_window(tmp_path):
    """No browser needed: a python client on the node that dies never comes back; its peer on another node hears
    nothing while the window is open, then one user_left."""
    failover = load_failover()
    window = 6
    cluster = failover.Cluster(swift_binary(), tmp_path, ["--recovery-window", str(window), "--node-timeout",
                                                          str(NODE_TIMEOUT_MS)], log=lambda *a: None)
    cluster.start_redis()
    for name in ("node1", "node2"):
        cluster.start_node(name)
    room = unique("csr-gone")
    gone = OffsetClient(cluster.node_url("node1"), "websocket", "gone")
    alice = OffsetClient(cluster.node_url("node2"), "websocket", "alice")
    try:
        await gone.connect()
        await gone.emit("join_room", {"roomName": room, "personName": "gone"})
        await alice.connect()
        await alice.emit("join_room", {"roomName": room, "personName": "alice"})
        await alice.expect("user_joined")
        gone_sid = gone.sid
        killed = time.monotonic()
        cluster.procs["node1"].kill()
        # Past the node timeout, the reaper has run: no user_left yet, the client could still come back.
        await asyncio.sleep(NODE_TIMEOUT_MS / 1000 + 2)
        alice.assert_none("user_left")
        left = await alice.expect("user_left", timeout=window * 3 + NODE_TIMEOUT_MS / 1000 * 3)
        after = time.monotonic() - killed
        assert left["socketId"] == gone_sid
        assert after >= window - 1, after
        await alice.fence()
        alice.assert_none("user_left")
        print(f"\n[recovery across nodes] a client that never came back: user_left {after:.1f} s after kill -9 "
              f"(window {window} s)")
    finally:
        await alice.close()
        cluster.stop_all()


class RawClient:
    """Socket.IO v5 over one aiohttp websocket, speaking recovery as socket.io-client does: it keeps the pid of
    the CONNECT answer and the last event's offset, and sends both when it connects again. Reconnects only when
    told, so that a test decides how long the gap is."""

    def __init__(self, url):
        self.url = url
        self.events = []
        self.pid = None
        self.offset = None
        self.answer = None

    async def connect(self, url=None):
        import aiohttp
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect((url or self.url).replace("http", "ws")
                                                + "/socket.io/?EIO=4&transport=websocket")
        opening = await self.ws.receive()
        assert opening.data.startswith("0"), opening.data
        auth = {"pid": self.pid, "offset": self.offset} if self.pid else {}
        await self.ws.send_str("40" + (json.dumps({k: v for k, v in auth.items() if v is not None}) if auth else ""))
        self.connected = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read())
        self.answer = await asyncio.wait_for(self.connected, TIMEOUT)
        self.pid = self.answer.get("pid")
        return self.answer

    async def _read(self):
        async for message in self.ws:
            data = message.data
            if data == "2":
                await self.ws.send_str("3")
            elif data.startswith("40") and not self.connected.done():
                self.connected.set_result(json.loads(data[2:]))
            elif data.startswith("42"):
                event = json.loads(data[2:])
                if len(event) > 1 and isinstance(event[-1], str) and STREAM_ID.match(event[-1]):
                    self.offset = event[-1]
                self.events.append(event)

    async def emit(self, event, data):
        await self.ws.send_str("42" + json.dumps([event, data]))

    async def drop(self):
        self.reader.cancel()
        await self.ws.close()
        await self.session.close()


async def test_a_busy_namespace_gap_is_replayed_whole(tmp_path):
    """The log holds every room's traffic: a gap of 1,500 other entries around the 6 for this socket (read back
    a page at a time) still restores it, with exactly its 6."""
    failover = load_failover()
    cluster = failover.Cluster(swift_binary(), tmp_path, ["--recovery-window", "30", "--node-timeout",
                                                          str(NODE_TIMEOUT_MS), "--event-rate", "100000",
                                                          "--event-burst", "100000", "--address-event-rate", "0"],
                               log=lambda *a: None)
    cluster.start_redis()
    for name in ("node1", "node2"):
        cluster.start_node(name)
    room, noisy = unique("csr-busy"), unique("csr-noise")
    client = RawClient(cluster.node_url("node1"))
    alice = OffsetClient(cluster.node_url("node2"), "websocket", "alice")
    noise = OffsetClient(cluster.node_url("node2"), "websocket", "noise")
    try:
        first = await client.connect()
        await client.emit("join_room", {"roomName": room, "personName": "raw"})
        for c, r in ((alice, room), (noise, noisy)):
            await c.connect()
            await c.emit("join_room", {"roomName": r, "personName": c.name})
        await alice.expect("user_joined")
        await alice.emit("message", {"roomName": room, "content": "before"})
        await wait_for(lambda: any(e[0] == "message" for e in client.events), TIMEOUT, "'before' arrived")
        await client.drop()
        cluster.procs["node1"].kill()
        for i in range(1500):
            await noise.sio.emit("message", {"roomName": noisy, "content": f"noise-{i}"})
            if i % 250 == 0:
                await alice.emit("message", {"roomName": room, "content": f"gap-{i // 250}"})
        await noise.fence()
        again = await client.connect(cluster.node_url("node2"))
        assert again == {"sid": first["sid"], "pid": first["pid"]}
        await alice.emit("message", {"roomName": room, "content": "after"})
        await wait_for(lambda: any(e[0] == "message" and e[1]["content"] == "after" for e in client.events),
                       TIMEOUT, "'after' arrived")
        got = [e[1]["content"] for e in client.events if e[0] == "message"]
        assert got == ["before"] + [f"gap-{i}" for i in range(6)] + ["after"]
    finally:
        for c in (alice, noise):
            await c.close()
        cluster.stop_all()


async def test_a_lost_log_subscription_catches_up_from_the_stream(tmp_path):
    """Redis drops the nodes' subscriptions (CLIENT KILL TYPE pubsub) while a peer keeps sending: a node reads what
    it missed back from the stream, so its client gets every message once and in order."""
    failover = load_failover()
    cluster = failover.Cluster(swift_binary(), tmp_path, ["--recovery-window", "30", "--event-rate", "1000",
                                                          "--event-burst", "1000"], log=lambda *a: None)
    cluster.start_redis()
    for name in ("node1", "node2"):
        cluster.start_node(name)
    room = unique("csr-blip")
    bob = OffsetClient(cluster.node_url("node1"), "websocket", "bob")
    alice = OffsetClient(cluster.node_url("node2"), "websocket", "alice")
    try:
        for c in (bob, alice):
            await c.connect()
            await c.emit("join_room", {"roomName": room, "personName": c.name})
        await bob.expect("user_joined")
        kills = 0
        for i in range(200):
            await alice.emit("message", {"roomName": room, "content": f"m-{i}"})
            if i in (50, 120):
                result = subprocess.run(["redis-cli", "-p", str(cluster.redis_port), "CLIENT", "KILL", "TYPE", "pubsub"],
                                        capture_output=True, text=True)
                kills += int(result.stdout.strip() or 0)
            await asyncio.sleep(0.005)
        assert kills >= 4  # both nodes' log and pub/sub subscriptions, twice
        got = []
        while len(got) < 200:
            message = await bob.expect("message", timeout=TIMEOUT * 2)
            got.append(message["content"])
        assert got == [f"m-{i}" for i in range(200)]
        await bob.fence()
        bob.assert_none("message")
    finally:
        for c in (bob, alice):
            await c.close()
        cluster.stop_all()
