"""Two real WebRTC peers (aiortc), one on each node of a 2-node cluster (+ redis-server), call each other with
the seed's events and nothing else (python-socketio AsyncClient, the seed client's flow), and exchange real
media: aiortc's synthetic VideoStreamTrack frames, VP8-encoded, over ICE/DTLS/SRTP on loopback.

The seed client's flow (shared/notes/seed-protocol.md §3): the member already in the room sees `user_joined`
of the newcomer and offers; the newcomer answers. Payloads are the seed's: `offer {offer, fromPeer, toPeer}`,
`answer {answer, fromPeer, toPeer}`, `ice_candidate {iccCandidate, fromPeer, toPeer}`, and the peers listen for
`ice_candidate`. The candidates travel only as `ice_candidate` events (stripped from the SDP), and the offerer
sends them before its offer, as the seed's client did, so the answerer must queue them.
"""

import asyncio
import time

import pytest
import socketio

from media_cluster import MEDIA_TIMEOUT, require_aiortc, start_cluster, unique

FRAMES = 15  # frames each side must receive


@pytest.fixture(scope="module", params=["pattern", "per-room"])
def media_cluster(request):
    require_aiortc()
    cluster = start_cluster(request.param, n=2)
    yield cluster
    cluster.stop()


@pytest.fixture
def loopback_ice(monkeypatch):
    """aioice gathers host candidates on every interface but loopback; keep the test on loopback only."""
    import aioice.ice
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"])


def split_candidates(sdp):
    """The SDP without its candidate lines, and those candidates as RTCIceCandidate JSON (what a browser's
    candidate.toJSON() gives)."""
    lines, candidates = [], []
    index, mid, ufrag = -1, None, None
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
            mid = None
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
    """A WebRTC peer speaking the seed client's events through python-socketio."""

    def __init__(self, name, node):
        from aiortc import RTCPeerConnection, VideoStreamTrack

        self.name = name
        self.node = node
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pc = RTCPeerConnection()
        self.pc.addTrack(VideoStreamTrack())
        self.pending = []  # candidates received before the remote description
        self.remote_set = False
        self.frames = []
        self.first_frame_at = None
        self.got_frames = asyncio.Event()
        self.joined = asyncio.get_running_loop().create_future()
        self.peer_joined = asyncio.get_running_loop().create_future()
        self.events = []  # (event name, payload) of the signaling events received
        self.tasks = []
        self.errors = []
        self.pc.on("track", self._on_track)
        self.sio.on("user_joined", self._on_user_joined)
        self.sio.on("offer", self._on_offer)
        self.sio.on("answer", self._on_answer)
        self.sio.on("ice_candidate", self._on_candidate)
        self.sio.on("ice-candidate", self._on_hyphen_candidate)

    @property
    def id(self):
        return self.sio.get_sid()

    async def connect(self):
        await asyncio.wait_for(self.sio.connect(self.node.url, transports=["polling", "websocket"]), 10)

    async def join(self, room):
        self.room = room
        await self.sio.emit("join_room", {"roomName": room, "personName": self.name})
        await asyncio.wait_for(self.joined, 10)

    # signaling

    async def _on_user_joined(self, peer):
        self.events.append(("user_joined", peer))
        if peer["socketId"] == self.id:
            if not self.joined.done():
                self.joined.set_result(peer)
        elif not self.peer_joined.done():
            self.peer_joined.set_result(peer)

    async def offer(self, to):
        """The seed client's member side: offer to the newcomer; candidates go first, then the offer."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp, candidates = split_candidates(self.pc.localDescription.sdp)
        for c in candidates:
            await self.sio.emit("ice_candidate", {"iccCandidate": c, "fromPeer": self.id, "toPeer": to})
        await self.sio.emit("offer", {"offer": {"type": "offer", "sdp": sdp}, "fromPeer": self.id, "toPeer": to})

    async def _on_offer(self, message):
        self.events.append(("offer", message))
        try:
            from aiortc import RTCSessionDescription
            await self.pc.setRemoteDescription(RTCSessionDescription(**message["offer"]))
            await self._flush()
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            sdp, candidates = split_candidates(self.pc.localDescription.sdp)
            to = message["fromPeer"]
            await self.sio.emit("answer", {"answer": {"type": "answer", "sdp": sdp}, "fromPeer": self.id, "toPeer": to})
            for c in candidates:
                await self.sio.emit("ice_candidate", {"iccCandidate": c, "fromPeer": self.id, "toPeer": to})
        except Exception as error:  # surfaced by the test
            self.errors.append(f"offer: {error!r}")

    async def _on_answer(self, message):
        self.events.append(("answer", message))
        try:
            from aiortc import RTCSessionDescription
            await self.pc.setRemoteDescription(RTCSessionDescription(**message["answer"]))
            await self._flush()
        except Exception as error:
            self.errors.append(f"answer: {error!r}")

    async def _on_candidate(self, message):
        self.events.append(("ice_candidate", message))
        candidate = message["iccCandidate"]
        if not self.remote_set and self.pc.remoteDescription is None:
            self.pending.append(candidate)  # before the offer: the seed's client dropped these
            return
        await self._add(candidate)

    async def _on_hyphen_candidate(self, message):
        self.events.append(("ice-candidate", message))  # the seed server's name; counted, not used

    async def _flush(self):
        self.remote_set = True
        pending, self.pending = self.pending, []
        for candidate in pending:
            await self._add(candidate)

    async def _add(self, c):
        from aiortc.sdp import candidate_from_sdp
        try:
            candidate = candidate_from_sdp(c["candidate"].split(":", 1)[1])
            candidate.sdpMid = c["sdpMid"]
            candidate.sdpMLineIndex = c["sdpMLineIndex"]
            await self.pc.addIceCandidate(candidate)
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
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                self.frames.append((frame.width, frame.height, frame.pts))
                if len(self.frames) >= FRAMES:
                    self.got_frames.set()
        except MediaStreamError:
            pass

    def describe(self):
        return (f"{self.name} on {self.node.node_id}: ice={self.pc.iceConnectionState} "
                f"connection={self.pc.connectionState} signaling={self.pc.signalingState} "
                f"frames={len(self.frames)} pending={len(self.pending)} errors={self.errors} "
                f"events={[e for e, _ in self.events]}")

    async def close(self):
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self.pc.close(), 5)
        except Exception:
            pass
        try:
            await asyncio.wait_for(self.sio.disconnect(), 5)
        except Exception:
            pass


async def test_aiortc_peers_exchange_video_across_nodes(media_cluster, loopback_ice):
    media_cluster.watch()
    n1, n2 = media_cluster[0], media_cluster[1]
    room = unique("aiortc")
    alice = SeedPeer("Alice", n1)
    bob = SeedPeer("Bob", n2)
    try:
        await asyncio.gather(alice.connect(), bob.connect())
        await alice.join(room)
        started = time.monotonic()
        await bob.join(room)
        newcomer = await asyncio.wait_for(alice.peer_joined, 10)
        assert newcomer == {"personName": "Bob", "roomName": room, "socketId": bob.id}
        await alice.offer(newcomer["socketId"])  # the seed client's member offers to the newcomer

        try:
            await asyncio.wait_for(asyncio.gather(alice.got_frames.wait(), bob.got_frames.wait()), MEDIA_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"no {FRAMES} frames on both sides within {MEDIA_TIMEOUT}s:\n"
                                 f"{alice.describe()}\n{bob.describe()}") from None

        for peer in (alice, bob):
            assert peer.errors == [], peer.describe()
            width, height, _ = peer.frames[-1]
            assert (width, height) == (640, 480), peer.frames[-1]
            pts = [p for _, _, p in peer.frames]
            assert pts == sorted(pts) and len(set(pts)) == len(pts), "frames must be distinct and in order"
            assert peer.pc.connectionState == "connected", peer.describe()

        # The server set fromPeer, and relayed ICE under both names (the seed client listens for ice_candidate).
        offer = next(m for e, m in bob.events if e == "offer")
        assert offer["fromPeer"] == alice.id and offer["toPeer"] == bob.id
        answer = next(m for e, m in alice.events if e == "answer")
        assert answer["fromPeer"] == bob.id and answer["toPeer"] == alice.id
        for peer in (alice, bob):
            names = [e for e, _ in peer.events]
            assert names.count("ice_candidate") >= 1 and names.count("ice_candidate") == names.count("ice-candidate"), names
        # Bob got Alice's candidates before her offer (the seed's order) and used them once the offer came.
        names = [e for e, _ in bob.events]
        assert names.index("ice_candidate") < names.index("offer"), names

        print(f"\n[aiortc, {media_cluster.mode}] Bob's join_room → first frame: at Bob "
              f"{(bob.first_frame_at - started) * 1000:.0f} ms, at Alice {(alice.first_frame_at - started) * 1000:.0f} ms "
              f"(includes the member's offer; {FRAMES} frames each side by "
              f"{(time.monotonic() - started) * 1000:.0f} ms)")
    finally:
        await asyncio.gather(alice.close(), bob.close())
