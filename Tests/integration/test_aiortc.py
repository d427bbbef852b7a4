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

from media_cluster import FRAMES, MEDIA_TIMEOUT, SeedPeer, loopback_ice, require_aiortc, start_cluster, unique  # noqa: F401


@pytest.fixture(scope="module", params=["pattern", "per-room"])
def media_cluster(request):
    require_aiortc()
    cluster = start_cluster(request.param, n=2)
    yield cluster
    cluster.stop()


async def test_aiortc_peers_exchange_video_across_nodes(media_cluster, loopback_ice):
    media_cluster.watch()
    n1, n2 = media_cluster[0], media_cluster[1]
    room = unique("aiortc")
    alice = SeedPeer("Alice", n1)  # the member: offers when it sees the newcomer
    # The newcomer never sees a later user_joined in a call of two, so it only answers. (offers_on_join=False:
    # Alice's own user_joined can reach Bob's node a millisecond after Bob joined, see media_cluster.SeedPeer.)
    bob = SeedPeer("Bob", n2, offers_on_join=False)
    try:
        await asyncio.gather(alice.connect(), bob.connect())
        await alice.join(room)
        started = time.monotonic()
        await bob.join(room)
        newcomer = await asyncio.wait_for(alice.peer_joined, 10)
        assert newcomer == {"personName": "Bob", "roomName": room, "socketId": bob.id}

        try:
            await asyncio.wait_for(asyncio.gather(alice.got_frames.wait(), bob.got_frames.wait()), MEDIA_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"no {FRAMES} frames on both sides within {MEDIA_TIMEOUT}s:\n"
                                 f"{alice.describe()}\n{bob.describe()}") from None

        for peer in (alice, bob):
            assert peer.errors == [], peer.describe()
            width, height, *_ = peer.frames[-1]
            assert (width, height) == (640, 480), peer.frames[-1]
            pts = [p for _, _, p, _ in peer.frames]
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
