"""Helpers for the media tests (test_browser.py, test_aiortc.py): a small cluster (2 signal-node
processes + redis-server on free loopback ports), headless Chromium through Selenium, bounded waits.

Requirements (missing ones skip the tests, or fail them when SIGNAL_REQUIRE_MEDIA=1, as CI should set):
- browser tests: Debian `chromium` and `chromium-driver` (or CHROMIUM_BIN / CHROMEDRIVER_BIN), PyPI `selenium`
- aiortc tests: PyPI `aiortc`

Chromium runs with a fake camera and microphone (`--use-fake-device-for-media-stream`, a moving test pattern
and a beep), permission prompts accepted (`--use-fake-ui-for-media-stream`), `--headless=new`, `--no-sandbox`.
With no STUN/TURN server its ICE candidates are host candidates on this machine's own addresses, which the
kernel delivers locally (nothing leaves the machine).
"""

import asyncio
import os
import shutil
import tempfile
import time
import uuid

import pytest
import socketio

from cluster import Cluster
from conftest import SWIFT

REQUIRED = os.environ.get("SIGNAL_REQUIRE_MEDIA", "") == "1"
CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN") or shutil.which("chromedriver")
# How long a call may take to show frames on both sides (join → decoded frames), seconds.
MEDIA_TIMEOUT = float(os.environ.get("SIGNAL_MEDIA_TIMEOUT", "20"))

CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--window-size=1280,720",
    # Host candidates as real addresses rather than mDNS names (no multicast resolver needed).
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--metrics-recording-only",
]


def unavailable(reason):
    """Skip the test, or fail it when SIGNAL_REQUIRE_MEDIA=1."""
    if REQUIRED:
        pytest.fail(f"SIGNAL_REQUIRE_MEDIA=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def require_swift():
    if not SWIFT:
        pytest.skip("media tests run against the signal-node binary (SIGNAL_SERVER=swift)")


def require_browser():
    require_swift()
    try:
        import selenium  # noqa: F401
    except ImportError:
        unavailable("selenium is not installed (pip install selenium)")
    if not CHROMIUM or not CHROMEDRIVER:
        unavailable("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")


def require_aiortc():
    require_swift()
    try:
        import aiortc  # noqa: F401
    except ImportError:
        unavailable("aiortc is not installed (pip install aiortc)")


def unique(prefix):
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    # 20 characters of the id alphabet look like a socket id, which the server refuses as a room name.
    return name if len(name) != 20 else name + "x"


def wait_until(predicate, timeout, what, interval=0.1, detail=None):
    """Poll predicate() until it returns something truthy (returned); fail after `timeout` seconds with
    `what` and, if given, detail() (e.g. the page's log)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            extra = ""
            if detail is not None:
                try:
                    extra = "\n" + str(detail())
                except Exception as error:  # the detail is best effort
                    extra = f"\n(no detail: {error!r})"
            raise AssertionError(f"{what} not within {timeout}s (last: {last!r}){extra}")
        time.sleep(interval)


def start_cluster(mode="pattern", n=2):
    """n nodes on their own redis-server; the caller stops it."""
    return Cluster(mode, n=n).start()


# --------------------------------------------------------------------------------------------
# Browsers
# --------------------------------------------------------------------------------------------

class Browser:
    """One headless Chromium with its own profile, showing the demo page of one node."""

    def __init__(self, name):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.name = name
        self.profile = tempfile.mkdtemp(prefix=f"chromium-{name}-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROME_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.driver.set_page_load_timeout(15)
        self.driver.set_script_timeout(10)
        self.node = None
        self.console = []
        self.alive = True

    def open(self, node, room, join=True):
        """Load node's demo page with this browser's name and `room` (joined at once with join=True)."""
        from urllib.parse import urlencode

        self.node = node
        query = urlencode({"room": room, "name": self.name, **({"join": "1"} if join else {})})
        started = time.monotonic()
        self.driver.get(f"{node.url}/?{query}")
        wait_until(lambda: self.js("return Boolean(window.demo)"), 10, f"{self.name}: window.demo",
                   detail=self.console_text)
        self.load_seconds = time.monotonic() - started  # WebDriver navigation until the page's script ran
        self.load_timing = self.js(
            "const n = performance.getEntriesByType('navigation')[0];"
            "return n && {fetch: n.fetchStart, connect: n.connectStart, connected: n.connectEnd, request: n.requestStart,"
            " response: n.responseStart, interactive: n.domInteractive, loaded: n.loadEventEnd}")

    def js(self, script, *args):
        """Run script in the page (a returned promise is awaited by WebDriver)."""
        return self.driver.execute_script(script, *args)

    def stats(self):
        return self.js("return demo.stats()")

    def peers(self):
        return self.js("return demo.peerList()")

    def page_log(self):
        return "\n".join(self.js("return demo.log") or [])

    def collect_console(self):
        try:
            self.console.extend(self.driver.get_log("browser"))
        except Exception:
            pass
        return self.console

    def console_text(self):
        self.collect_console()
        lines = [f"{e.get('level')} {e.get('message')}" for e in self.console]
        return f"--- {self.name} console ---\n" + "\n".join(lines[-80:])

    def diagnostics(self):
        parts = []
        try:
            parts.append(f"--- {self.name} page log ---\n{self.page_log()}")
            parts.append(f"--- {self.name} peers ---\n{self.peers()!r}\n{self.stats()!r}")
        except Exception as error:
            parts.append(f"--- {self.name}: page not readable: {error!r}")
        parts.append(self.console_text())
        return "\n".join(parts)

    def errors(self):
        """Console errors other than the expected 404 of the optional config.js."""
        expected = ("/config.js",)
        return [e for e in self.collect_console()
                if e.get("level") == "SEVERE" and not any(p in e.get("message", "") for p in expected)]

    def quit(self):
        if not self.alive:
            return
        self.alive = False
        try:
            self.collect_console()
            self.driver.quit()
        except Exception:
            pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Browsers:
    """Browsers started for one test, quit at teardown."""

    def __init__(self):
        self.made = []

    def new(self, name):
        browser = Browser(name)
        self.made.append(browser)
        return browser

    def diagnostics(self):
        return "\n".join(b.diagnostics() for b in self.made if b.alive)

    def quit_all(self):
        for browser in self.made:
            browser.quit()


# --------------------------------------------------------------------------------------------
# A WebRTC peer speaking the seed client's events (aiortc + python-socketio)
# --------------------------------------------------------------------------------------------

FRAMES = 15  # video frames a SeedPeer must receive to count as "receiving"


@pytest.fixture
def loopback_ice(monkeypatch):
    """aioice gathers host candidates on every interface but loopback; keep the test on loopback only."""
    import aioice.ice
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"])


def split_candidates(sdp):
    """The SDP without its candidates, and those candidates as RTCIceCandidate JSON (what a browser's
    candidate.toJSON() gives). The default address in the m= and c= lines goes too (port 9, 0.0.0.0, as a
    browser writes before it has candidates): a browser takes it as a candidate otherwise."""
    lines, candidates = [], []
    index, mid, ufrag = -1, None, None
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
            mid = None
            kind, _port, rest = line.split(" ", 2)
            line = f"{kind} 9 {rest}"
        elif line.startswith("c=IN IP4 "):
            line = "c=IN IP4 0.0.0.0"
        elif line.startswith("c=IN IP6 "):
            line = "c=IN IP6 ::"
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:"):]
        elif line.startswith("a=ice-ufrag:"):
            ufrag = line[len("a=ice-ufrag:"):]
        if line.startswith("a=candidate:"):
            candidates.append({"candidate": line[2:], "sdpMLineIndex": index, "mid": mid})
            continue
        if line == "a=end-of-candidates":
            continue
        lines.append(line)
    for c in candidates:
        c["sdpMid"] = c.pop("mid")
        c["usernameFragment"] = ufrag
    return "\r\n".join(lines) + "\r\n", candidates


class SeedPeer:
    """A WebRTC peer with the seed client's call flow and events (aiortc + python-socketio), minus its ICE bugs.

    Like the seed's VideoGridView: one RTCPeerConnection per remote socket id in `pcs`; when `offers_on_join`,
    a member that sees another socket's `user_joined` creates a connection, sends its candidates at once and
    its offer `offer_delay` seconds later (the seed waited 5 s); an incoming `offer` creates a new connection
    for its sender (replacing any, as the seed did) and is answered; an `answer` goes to the connection of its
    sender. Unlike the seed, candidates that arrive before the remote description are queued, not dropped.
    aiortc does not trickle: the candidates are taken out of the SDP and sent as `ice_candidate` events, so
    they reach the other side only through the server."""

    def __init__(self, name, node, offers_on_join=True, offer_delay=0.0, offers_to_roster=False):
        self.name = name
        self.node = node
        self.offers_on_join = offers_on_join
        self.offers_to_roster = offers_to_roster  # not the seed's: offer to the members listed in the join ack
        self.offer_delay = offer_delay
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pcs = {}  # remote socket id -> RTCPeerConnection (the seed's peerConnections)
        self.all_pcs = []
        self.pending = {}  # remote socket id -> candidates received before its remote description
        self.frames = []  # (width, height, pts, monotonic time) of every video frame received
        self.first_frame_at = None
        self.got_frames = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.joined = loop.create_future()
        self.peer_joined = loop.create_future()
        self.offer_sent = loop.create_future()
        self.events = []  # (event name, payload) of the signaling events received
        self.tasks = []
        self.errors = []
        self.sio.on("user_joined", self._on_user_joined)
        self.sio.on("user_left", self._on_user_left)
        self.sio.on("offer", self._on_offer)
        self.sio.on("answer", self._on_answer)
        self.sio.on("ice_candidate", self._on_candidate)
        self.sio.on("ice-candidate", self._on_hyphen_candidate)

    @property
    def id(self):
        return self.sio.get_sid()

    @property
    def pc(self):
        """The connection to the one remote peer (tests with two parties)."""
        return next(iter(self.pcs.values()), None)

    async def connect(self):
        await asyncio.wait_for(self.sio.connect(self.node.url, transports=["polling", "websocket"]), 10)

    async def join(self, room):
        """join_room without an ack (the seed's client asks for none), or with one to offer to the roster;
        returns on our own user_joined."""
        self.room = room
        if self.offers_to_roster:
            roster = await self.sio.call("join_room", {"roomName": room, "personName": self.name}, timeout=10)
            for member in roster["peers"]:
                self.tasks.append(asyncio.ensure_future(self.offer(member["socketId"])))
        else:
            await self.sio.emit("join_room", {"roomName": room, "personName": self.name})
        await asyncio.wait_for(self.joined, 10)

    def _new_pc(self, remote):
        from aiortc import RTCPeerConnection, VideoStreamTrack

        pc = RTCPeerConnection()
        pc.addTrack(VideoStreamTrack())
        pc.on("track", self._on_track)
        self.pcs[remote] = pc
        self.all_pcs.append(pc)
        return pc

    async def _emit(self, event, payload):
        await self.sio.emit(event, payload)

    # signaling

    async def _on_user_joined(self, peer):
        self.events.append(("user_joined", peer))
        if peer["socketId"] == self.id:
            if not self.joined.done():
                self.joined.set_result(peer)
            return
        if not self.joined.done():
            # Announced before our own user_joined: a member who was there first. Its announcement left its node
            # before we joined but reached ours just after (a cross-node race of a millisecond or two, which can
            # also land after our own user_joined: the seed's client would then offer to an older member too).
            return
        if not self.peer_joined.done():
            self.peer_joined.set_result(peer)
        if self.offers_on_join:
            self.tasks.append(asyncio.ensure_future(self.offer(peer["socketId"])))

    async def _on_user_left(self, peer):
        self.events.append(("user_left", peer))

    async def offer(self, to):
        """The seed client's member side: a new connection for the newcomer, candidates at once, the offer
        after offer_delay."""
        try:
            pc = self._new_pc(to)
            await pc.setLocalDescription(await pc.createOffer())
            sdp, candidates = split_candidates(pc.localDescription.sdp)
            for c in candidates:
                await self._emit("ice_candidate", {"iccCandidate": c, "fromPeer": self.id, "toPeer": to})
            if self.offer_delay:
                await asyncio.sleep(self.offer_delay)
            await self._emit("offer", {"offer": {"type": "offer", "sdp": sdp}, "fromPeer": self.id, "toPeer": to})
            if not self.offer_sent.done():
                self.offer_sent.set_result(time.monotonic())
        except Exception as error:  # surfaced by the test
            self.errors.append(f"offer to {to}: {error!r}")

    async def _on_offer(self, message):
        from aiortc import RTCSessionDescription

        self.events.append(("offer", message))
        remote = message["fromPeer"]
        try:
            pc = self._new_pc(remote)  # the seed replaced any connection it had with this peer
            await pc.setRemoteDescription(RTCSessionDescription(**message["offer"]))
            await self._flush(remote)
            await pc.setLocalDescription(await pc.createAnswer())
            sdp, candidates = split_candidates(pc.localDescription.sdp)
            await self._emit("answer", {"answer": {"type": "answer", "sdp": sdp}, "fromPeer": self.id,
                                        "toPeer": remote})
            for c in candidates:
                await self._emit("ice_candidate", {"iccCandidate": c, "fromPeer": self.id, "toPeer": remote})
        except Exception as error:
            self.errors.append(f"offer from {remote}: {error!r}")

    async def _on_answer(self, message):
        from aiortc import RTCSessionDescription

        self.events.append(("answer", message))
        remote = message["fromPeer"]
        pc = self.pcs.get(remote)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(**message["answer"]))
            await self._flush(remote)
        except Exception as error:
            self.errors.append(f"answer from {remote}: {error!r}")

    async def _on_candidate(self, message):
        self.events.append(("ice_candidate", message))
        remote = message["fromPeer"]
        pc = self.pcs.get(remote)
        if pc is None or pc.remoteDescription is None:
            self.pending.setdefault(remote, []).append(message["iccCandidate"])
            return
        await self._add(pc, message["iccCandidate"])

    async def _on_hyphen_candidate(self, message):
        self.events.append(("ice-candidate", message))  # the seed server's name; counted, not used

    async def _flush(self, remote):
        for candidate in self.pending.pop(remote, []):
            await self._add(self.pcs[remote], candidate)

    async def _add(self, pc, c):
        from aiortc.sdp import candidate_from_sdp

        try:
            candidate = candidate_from_sdp(c["candidate"].split(":", 1)[1])
            candidate.sdpMid = c["sdpMid"]
            candidate.sdpMLineIndex = c["sdpMLineIndex"]
            await pc.addIceCandidate(candidate)
        except Exception as error:
            self.errors.append(f"candidate {c!r}: {error!r}")

    # media

    def _on_track(self, track):
        if track.kind == "video":
            self.tasks.append(asyncio.ensure_future(self._receive(track)))

    async def _receive(self, track):
        from aiortc.mediastreams import MediaStreamError

        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if self.first_frame_at is None:
                    self.first_frame_at = now
                self.frames.append((frame.width, frame.height, frame.pts, now))
                if len(self.frames) >= FRAMES:
                    self.got_frames.set()
        except MediaStreamError:
            pass

    def frames_since(self, moment):
        return sum(1 for *_, at in self.frames if at > moment)

    def describe(self):
        pcs = {remote[:6]: f"ice={pc.iceConnectionState} conn={pc.connectionState} sig={pc.signalingState}"
               for remote, pc in self.pcs.items()}
        return (f"{self.name} on {self.node.node_id} ({self.id}): {pcs} frames={len(self.frames)} "
                f"pending={ {k[:6]: len(v) for k, v in self.pending.items()} } errors={self.errors} "
                f"events={[e for e, _ in self.events]}")

    async def close(self):
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for pc in self.all_pcs:
            try:
                await asyncio.wait_for(pc.close(), 5)
            except Exception:
                pass
        try:
            await asyncio.wait_for(self.sio.disconnect(), 5)
        except Exception:
            pass
