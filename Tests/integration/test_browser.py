"""The demo page in real browsers: headless Chromium with a fake camera, each browser on a different node of
a 2-node cluster (+ redis-server), video decoded across nodes, chat, reconnect and re-join, glare, and a tile
removed when its browser closes. The page exposes `window.demo` (Sources/Node/Resources/demo/app.js).

Screenshot: the three-browser test saves its picture to a temporary folder, or to $SIGNAL_DEMO_SCREENSHOT when
set, which is how docs/demo.png is made:
    SIGNAL_DEMO_SCREENSHOT=$PWD/docs/demo.png python3 -m pytest Tests/integration/test_browser.py -k screenshot -s
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

import pytest

from conftest import ServerProcess, swift_binary
from media_cluster import (MEDIA_TIMEOUT, Browsers, SeedPeer, loopback_ice, require_aiortc,  # noqa: F401
                           require_browser, start_cluster, unique, wait_until)


@pytest.fixture(scope="module")
def media_cluster():
    require_browser()
    cluster = start_cluster("pattern", n=2)
    yield cluster
    cluster.stop()


@pytest.fixture
def browsers(media_cluster, request):
    media_cluster.watch()
    made = Browsers()
    yield made
    failed = any(getattr(request.node, f"rep_{w}", None) is not None
                 and getattr(request.node, f"rep_{w}").failed for w in ("setup", "call"))
    if failed:
        print(made.diagnostics())
    made.quit_all()


ICE_SERVERS = [{"urls": "stun:127.0.0.1:9"}]


def decoding(browser, expected_peers):
    """The page's stats when it decodes video from every one of expected_peers (socket ids) and shows it
    (video element with videoWidth > 0), else None."""
    stats = browser.stats()
    if set(stats) != set(expected_peers):
        return None
    for entry in stats.values():
        if entry["framesDecoded"] <= 0 or entry["videoWidth"] <= 0:
            return None
    return stats


def wait_decoding(browsers, expected, timeout=MEDIA_TIMEOUT, what="decoded video"):
    """Wait until each browser decodes the video of its expected peers; return {browser name: stats}."""
    got = {}

    def all_decoding():
        for browser in browsers:
            if browser.name not in got:
                stats = decoding(browser, expected[browser.name])
                if stats is None:
                    return None
                got[browser.name] = stats
        return got

    return wait_until(all_decoding, timeout, what, detail=lambda: "\n".join(b.diagnostics() for b in browsers))


def assert_growing(browsers, expected, seconds=1.0):
    """framesDecoded keeps growing on every connection: the video is live, not one frame."""
    before = {b.name: b.stats() for b in browsers}
    time.sleep(seconds)
    for browser in browsers:
        after = browser.stats()
        for peer in expected[browser.name]:
            grew = after[peer]["framesDecoded"] - before[browser.name][peer]["framesDecoded"]
            assert grew >= 5, (f"{browser.name}: video from {after[peer]['name']} decoded only {grew} frames in "
                               f"{seconds}s: {after[peer]!r}\n{browser.diagnostics()}")
            assert after[peer]["connectionState"] == "connected", after[peer]


def own_id(browser, timeout=10):
    """The page's socket id once it is in its room."""
    return wait_until(lambda: browser.js("return demo.joined && demo.id"), timeout, f"{browser.name} joined",
                      detail=browser.diagnostics)


def report_timing(label, alice, bob, since_open):
    """Print how long the call took: the newcomer's page (join_room sent → first frame from the member), the
    member's page (user_joined → first frame from the newcomer), and the test's wall clock."""
    newcomer = bob.js("return demo.timings()")[0]
    member = alice.js("return demo.timings()")[0]
    print(f"\n[{label}] join_room sent → first decoded frame (newcomer {bob.name}): "
          f"{newcomer['joinSentToFirstFrame']:.0f} ms (camera + join click → frame "
          f"{newcomer['joinClickToFirstFrame']:.0f} ms); user_joined → first frame (member {alice.name}): "
          f"{member['seenToFirstFrame']:.0f} ms; page load → both decoding (test clock, 0.1 s polls): "
          f"{since_open * 1000:.0f} ms")
    return newcomer, member


def test_two_browsers_across_nodes(media_cluster, browsers):
    """Alice on n1 and Bob on n2: both decode each other's video, tiles carry names, chat crosses, a dropped
    connection reconnects and re-joins with video back, crossing offers (glare) settle, and Alice's tile of Bob
    goes when Bob's browser closes."""
    n1, n2 = media_cluster[0], media_cluster[1]
    room = unique("browsers")
    alice = browsers.new("Alice")
    bob = browsers.new("Bob")

    alice.open(n1, room)
    alice_id = own_id(alice)
    started = time.monotonic()
    # Bob's page gets its ICE servers from the deployment (config.js would set this before app.js runs); a STUN
    # server on loopback that does not answer, which must not hold the call up.
    bob.open(n2, room, join=False)
    bob.js("window.SIGNAL_ICE_SERVERS = arguments[0]; demo.join(arguments[1], 'Bob')", ICE_SERVERS, room)
    bob_id = own_id(bob)
    joined = time.monotonic()
    expected = {"Alice": [bob_id], "Bob": [alice_id]}
    wait_decoding([alice, bob], expected)
    print(f"\n[test clock] Bob's page load {bob.load_seconds * 1000:.0f} ms, → joined {(joined - started) * 1000:.0f} ms, "
          f"→ both decoding {(time.monotonic() - joined) * 1000:.0f} ms more; Bob's navigation timing (ms): "
          f"{ {k: round(v) for k, v in (bob.load_timing or {}).items()} }")
    since_open = time.monotonic() - started
    newcomer, member = report_timing("2 browsers, 2 nodes", alice, bob, since_open)
    assert newcomer["joinSentToFirstFrame"] < MEDIA_TIMEOUT * 1000
    assert_growing([alice, bob], expected)

    configured = bob.js("return Object.values(demo.pcs)[0].getConfiguration().iceServers")
    assert [server["urls"] for server in configured] in (["stun:127.0.0.1:9"], [["stun:127.0.0.1:9"]]), configured

    # Tiles and the people list carry names; the newcomer offered (roster), the member answered.
    assert alice.peers() == [{"id": bob_id, "name": "Bob", "state": "connected", "tile": True, "label": "Bob"}]
    assert bob.peers() == [{"id": alice_id, "name": "Alice", "state": "connected", "tile": True, "label": "Alice"}]
    assert "1 already here" in bob.page_log()
    assert "no offer from" not in alice.page_log(), "the member had to offer: the newcomer did not"
    assert alice.js("return demo.tileCount()") == 1 and bob.js("return demo.tileCount()") == 1

    # Chat crosses the nodes both ways.
    assert alice.js("return demo.say(arguments[0])", "hello from n1")
    assert bob.js("return demo.say(arguments[0])", "hello from n2")
    for browser in (alice, bob):
        wait_until(lambda: {(m["personName"], m["content"]) for m in browser.js("return demo.chat")}
                   >= {("Alice", "hello from n1"), ("Bob", "hello from n2")},
                   5, f"{browser.name}: both chat messages", detail=browser.diagnostics)
    shown = bob.js("return [...document.querySelectorAll('#messages li')].map(li => li.textContent)")
    assert any("hello from n1" in line and "Alice" in line for line in shown), shown

    # Glare: both sides start an ICE restart at the same moment, so both offer; perfect negotiation settles it.
    at = alice.js("return Date.now()") + 400
    script = "setTimeout(() => Object.values(demo.pcs).forEach(pc => pc.restartIce()), arguments[0] - Date.now())"
    alice.js(script, at)
    bob.js(script, at)
    time.sleep(0.6)
    wait_until(lambda: all(p["signalingState"] == "stable" and p["connectionState"] == "connected"
                           for b in (alice, bob) for p in b.stats().values()),
               10, "both connections stable after crossing offers",
               detail=lambda: alice.diagnostics() + bob.diagnostics())
    crossed = "ignored a crossing offer" in alice.page_log() + bob.page_log()
    print(f"[glare] offers crossed: {crossed}")
    assert_growing([alice, bob], expected)
    assert alice.js("return Object.keys(demo.pcs)") == [bob_id], "glare must not create a second connection"

    # Bob's connection drops: his page reconnects (new socket id), joins again and calls Alice again.
    bob.js("demo.drop()")
    new_bob = wait_until(lambda: (bob.js("return demo.joined && demo.id") or None) not in (None, bob_id)
                         and bob.js("return demo.id"), 15, "Bob reconnected and re-joined", detail=bob.diagnostics)
    expected = {"Alice": [new_bob], "Bob": [alice_id]}
    wait_decoding([alice, bob], expected, what="video after Bob's reconnection")
    assert [p["name"] for p in alice.peers()] == ["Bob"]
    assert alice.js("return demo.tileCount()") == 1

    # Bob closes his browser: Alice's tile of Bob goes (user_left on disconnect, across nodes).
    bob.quit()
    wait_until(lambda: alice.js("return demo.tileCount()") == 0 and alice.peers() == [], 10,
               "Alice's tile of Bob removed after Bob closed", detail=alice.diagnostics)
    assert "Bob left" in alice.page_log()
    assert alice.errors() == [], alice.errors()


def test_three_browsers_screenshot(media_cluster, browsers, tmp_path):
    """Three browsers on two nodes: each shows two remote tiles with live video; a screenshot of one page is
    saved (to $SIGNAL_DEMO_SCREENSHOT if set)."""
    n1, n2 = media_cluster[0], media_cluster[1]
    room = unique("trio")
    people = [(browsers.new("Ada"), n1), (browsers.new("Grace"), n2), (browsers.new("Linus"), n1)]
    ids = {}
    for browser, node in people:
        browser.open(node, room)
        ids[browser.name] = own_id(browser)
    expected = {b.name: [ids[o.name] for o, _ in people if o is not b] for b, _ in people}
    wait_decoding([b for b, _ in people], expected, timeout=MEDIA_TIMEOUT * 1.5)
    assert_growing([b for b, _ in people], expected)
    for browser, _ in people:
        assert browser.js("return demo.tileCount()") == 2
        labels = sorted(p["label"] for p in browser.peers())
        assert labels == sorted(o.name for o, _ in people if o is not browser), labels

    ada, grace, linus = (b for b, _ in people)
    grace.js("demo.say('Hi both, Grace here (node n2)')")
    ada.js("demo.say('Hello from Ada on n1')")
    wait_until(lambda: len(linus.js("return demo.chat")) >= 2, 5, "chat on Linus's page", detail=linus.diagnostics)
    time.sleep(0.5)  # let the videos render a few more frames

    linus.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                 {"width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": False})
    time.sleep(0.5)
    path = os.environ.get("SIGNAL_DEMO_SCREENSHOT") or str(tmp_path / "demo.png")
    assert linus.driver.save_screenshot(path), f"screenshot to {path} failed"
    size = os.path.getsize(path)
    assert size > 20_000, f"screenshot {path} is suspiciously small ({size} bytes)"
    print(f"\n[screenshot] {path} ({size} bytes)")
    for browser, _ in people:
        assert browser.errors() == [], (browser.name, browser.errors())


async def test_demo_calls_a_seed_client(media_cluster, browsers, loopback_ice):
    """The demo page (member, n1) and a peer that behaves like the seed's client (newcomer, n2: aiortc with the
    seed's events; it never offers): the page offers after its fallback delay and both sides get video; the tile
    goes when the seed client disconnects."""
    require_aiortc()
    n1, n2 = media_cluster[0], media_cluster[1]
    room = unique("seed")
    alice = browsers.new("Alice")
    await asyncio.to_thread(alice.open, n1, room)
    await asyncio.to_thread(own_id, alice)
    bob = SeedPeer("Bob", n2, offers_on_join=False)
    try:
        await bob.connect()
        started = time.monotonic()
        await bob.join(room)
        try:
            await asyncio.wait_for(bob.got_frames.wait(), MEDIA_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"the seed client got no video from the page: {bob.describe()}\n"
                                 f"{await asyncio.to_thread(alice.diagnostics)}") from None
        stats = await asyncio.to_thread(wait_until, lambda: decoding(alice, [bob.id]), MEDIA_TIMEOUT,
                                        "the page decoding the seed client's video", 0.1, alice.diagnostics)
        elapsed = time.monotonic() - started
        assert stats[bob.id]["videoWidth"] == 640 and stats[bob.id]["name"] == "Bob"
        assert bob.errors == [], bob.describe()
        log = await asyncio.to_thread(alice.page_log)
        assert "no offer from Bob" in log, log
        print(f"\n[seed client] join → video both ways in {elapsed * 1000:.0f} ms (includes the page's "
              f"{4000} ms wait for an offer that a seed client never sends)")
        await bob.close()
        await asyncio.to_thread(wait_until, lambda: alice.js("return demo.tileCount()") == 0, 10,
                                "the page's tile of the seed client removed", 0.1, alice.diagnostics)
    finally:
        await bob.close()


async def test_demo_joins_a_seed_client(media_cluster, browsers, loopback_ice):
    """A seed-like client (aiortc, n2) is in the room and the demo page (n1) joins: the page offers from the
    roster at once, and the seed client's own offer comes later (as the seed did, after a delay) on a second
    connection of its own. Video flows both ways and keeps flowing after that late offer."""
    require_aiortc()
    n1, n2 = media_cluster[0], media_cluster[1]
    room = unique("seedmember")
    bob = SeedPeer("Bob", n2, offer_delay=1.5)
    alice = browsers.new("Alice")
    try:
        await bob.connect()
        await bob.join(room)
        await asyncio.to_thread(alice.open, n1, room)
        alice_id = await asyncio.to_thread(own_id, alice)
        try:
            await asyncio.wait_for(bob.got_frames.wait(), MEDIA_TIMEOUT)
            offered_at = await asyncio.wait_for(bob.offer_sent, 10)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"{bob.describe()}\n{await asyncio.to_thread(alice.diagnostics)}") from None
        await asyncio.sleep(3)  # the late offer has been handled by now
        stats = await asyncio.to_thread(wait_until, lambda: decoding(alice, [bob.id]), MEDIA_TIMEOUT,
                                        "the page decoding the seed client's video", 0.1, alice.diagnostics)
        before = stats[bob.id]["framesDecoded"]
        since = time.monotonic()
        await asyncio.sleep(1)
        after = (await asyncio.to_thread(alice.stats))[bob.id]
        assert after["framesDecoded"] - before >= 5, (after, await asyncio.to_thread(alice.diagnostics))
        assert bob.frames_since(since) >= 5, bob.describe()
        assert bob.frames_since(offered_at + 1) >= 5, bob.describe()
        log = await asyncio.to_thread(alice.page_log)
        assert "1 already here" in log and "ignored an offer from a second connection of Bob" in log, log
        assert len(bob.pcs) == 1 and len(bob.all_pcs) == 2, bob.describe()  # its own offer's connection idles
        assert bob.pc.connectionState == "connected", bob.describe()
        assert alice_id == next(m for e, m in bob.events if e == "offer")["fromPeer"]
    finally:
        await bob.close()


def signal_node_has(flag):
    help_text = subprocess.run([str(swift_binary()), "--help"], capture_output=True, text=True, timeout=10)
    return flag in help_text.stdout + help_text.stderr


def hs256_jwt(secret, **claims):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    now = int(time.time())
    body = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + \
        b64(json.dumps({"sub": "demo", "iat": now, "exp": now + 300, **claims}).encode())
    return body + "." + b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())


def test_token_from_the_page_url(browsers):
    """On a node that requires a JWT, the page sends ?token= in its CONNECT; a bad token is refused once (the
    page says so and does not retry)."""
    if not signal_node_has("--jwt-secret"):
        pytest.skip("this signal-node has no --jwt-secret")
    server = ServerProcess(["--jwt-secret", "demo-jwt-secret"]).start()
    try:
        room = unique("jwt")
        good = browsers.new("Good")
        good.driver.get(f"{server.url}/?room={room}&name=Good&join=1&token={hs256_jwt('demo-jwt-secret')}")
        own_id(good)
        bad = browsers.new("Bad")
        bad.driver.get(f"{server.url}/?room={room}&name=Bad&join=1&token={hs256_jwt('another-secret')}")
        wait_until(lambda: bad.js("return demo.socket.refusal"), 10, "the bad token refused", detail=bad.diagnostics)
        assert "refused" in bad.js("return document.getElementById('notice').textContent")
        time.sleep(1.5)
        assert bad.js("return demo.socket.attempts") <= 1 and not bad.js("return demo.socket.connected")
        assert good.js("return demo.joined")
    finally:
        server.stop()


def test_ice_servers_from_the_server(browsers):
    """A node configured with STUN/TURN sends them (TURN credentials made for the socket): the page uses those
    rather than its own default."""
    if not signal_node_has("--turn-secret"):
        pytest.skip("this signal-node has no --stun-urls/--turn-urls/--turn-secret")
    server = ServerProcess(["--stun-urls", "stun:127.0.0.1:9", "--turn-urls", "turn:127.0.0.1:9",
                            "--turn-secret", "demo-secret", "--turn-ttl", "600"]).start()
    try:
        page = browsers.new("Solo")
        page.open(server, unique("ice"))
        sid = own_id(page)
        servers = page.js("return demo.call.currentIceServers()")
        assert servers[0] == {"urls": ["stun:127.0.0.1:9"]}, servers
        assert servers[1]["urls"] == ["turn:127.0.0.1:9"] and servers[1]["username"].endswith(":" + sid), servers
        assert servers[1]["credential"], servers
    finally:
        server.stop()


async def test_demo_queues_early_candidates(media_cluster, browsers, loopback_ice):
    """A newcomer (aiortc, n2) sends its ICE candidates a second before its offer, as the seed's client did: the
    page (n1) has no connection for it yet, keeps the candidates, and uses them once the offer is in. Proof: the
    page's selected candidate pair has the newcomer's host candidate as remote, not a peer-reflexive one learnt
    from its connectivity checks (which is what dropping the candidates would leave)."""
    require_aiortc()
    n1, n2 = media_cluster[0], media_cluster[1]
    room = unique("early")
    alice = browsers.new("Alice")
    await asyncio.to_thread(alice.open, n1, room)
    await asyncio.to_thread(own_id, alice)
    bob = SeedPeer("Bob", n2, offers_on_join=False, offers_to_roster=True, offer_delay=1.0)
    try:
        await bob.connect()
        await bob.join(room)
        try:
            await asyncio.wait_for(bob.got_frames.wait(), MEDIA_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"{bob.describe()}\n{await asyncio.to_thread(alice.diagnostics)}") from None
        await asyncio.to_thread(wait_until, lambda: decoding(alice, [bob.id]), MEDIA_TIMEOUT,
                                "the page decoding the newcomer's video", 0.1, alice.diagnostics)
        pair = await asyncio.to_thread(alice.js, """
            const pc = Object.values(demo.pcs)[0];
            return pc.getStats().then((report) => {
              let pair = null;
              report.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId); });
              if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
              const remote = pair && report.get(pair.remoteCandidateId);
              return remote && {type: remote.candidateType, address: remote.address, port: remote.port};
            });""")
        log = await asyncio.to_thread(alice.page_log)
        assert pair is not None and pair["type"] == "host" and pair["address"] == "127.0.0.1", (pair, log)
        assert "refused" not in log and "failed" not in log, log
        assert bob.errors == [], bob.describe()
        # One offer and one answer: the page answered with what was offered (video) and did not renegotiate.
        assert [e for e, _ in bob.events if e in ("offer", "answer")] == ["answer"], bob.describe()
    finally:
        await bob.close()
