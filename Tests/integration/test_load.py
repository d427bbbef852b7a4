"""Load: 200 concurrent websocket clients in rooms of 4 join, each sends 2 chat messages, and
everyone must receive every message of their room exactly once (no loss, no duplicates,
per-sender order, nothing from other rooms); then everyone leaves.

Tunable with LOAD_CLIENTS, LOAD_ROOM_SIZE, LOAD_MESSAGES. Figures are printed in the
terminal summary.
"""

import asyncio
import itertools
import os
import time
import uuid

import pytest

from conftest import FENCE_PREFIX, REPORT_LINES, SERVER_KIND, Client

N_CLIENTS = int(os.environ.get("LOAD_CLIENTS", "200"))
ROOM_SIZE = int(os.environ.get("LOAD_ROOM_SIZE", "4"))
N_MESSAGES = int(os.environ.get("LOAD_MESSAGES", "2"))
CONNECT_CONCURRENCY = 50
BUDGET_S = 60.0


async def gather_all(coros, timeout, what):
    try:
        return await asyncio.wait_for(asyncio.gather(*coros), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise AssertionError(f"{what} did not complete within {timeout}s") from None


@pytest.mark.load
async def test_load_rooms_of_four(server):
    assert N_CLIENTS % ROOM_SIZE == 0
    tag = uuid.uuid4().hex[:6]
    clients = [Client(server.url, "websocket", f"u{i}") for i in range(N_CLIENTS)]
    room_of = {c: f"load-{tag}-{i // ROOM_SIZE}" for i, c in enumerate(clients)}
    rooms = {}
    for c in clients:
        rooms.setdefault(room_of[c], []).append(c)
    t_start = time.monotonic()
    try:
        # ---- connect -------------------------------------------------------------------------
        sem = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect(c):
            async with sem:
                await c.connect()

        await gather_all([connect(c) for c in clients], 30, "connecting")
        t_connected = time.monotonic()
        sids = [c.sid for c in clients]
        assert len(set(sids)) == N_CLIENTS, "duplicate socket ids"

        # ---- join ----------------------------------------------------------------------------
        async def join(c):
            await c.emit("join_room", {"roomName": room_of[c], "personName": c.name})

        await gather_all([join(c) for c in clients], 30, "sending join_room")

        async def own_join_seen(c):
            while True:
                if any(ev == "user_joined" and p.get("socketId") == c.sid for ev, p in c.log):
                    return
                await asyncio.sleep(0.02)

        await gather_all([own_join_seen(c) for c in clients], 30, "every client's own user_joined")
        t_joined = time.monotonic()
        # every join has been broadcast; a fence makes sure each copy has arrived
        await gather_all([c.fence(timeout=30) for c in clients], 40, "fence after joins")

        both_ways = 0
        for room, members in rooms.items():
            member_sids = {m.sid for m in members}
            for m in members:
                got = [p for ev, p in m.log if ev == "user_joined"
                       and not p["roomName"].startswith(FENCE_PREFIX)]
                ids = [p["socketId"] for p in got]
                assert len(ids) == len(set(ids)), f"{m.name}: duplicate user_joined {ids}"
                assert set(ids) <= member_sids, f"{m.name}: user_joined from another room {got}"
                assert all(p["roomName"] == room for p in got), got
                assert ids.count(m.sid) == 1
            for a, b in itertools.combinations(members, 2):
                a_saw_b = any(ev == "user_joined" and p == {"personName": b.name, "roomName": room,
                                                             "socketId": b.sid} for ev, p in a.log)
                b_saw_a = any(ev == "user_joined" and p == {"personName": a.name, "roomName": room,
                                                             "socketId": a.sid} for ev, p in b.log)
                # whoever joined first must hear about the other (it sends the offer)
                assert a_saw_b or b_saw_a, f"neither {a.name} nor {b.name} saw the other join"
                both_ways += a_saw_b and b_saw_a

        # ---- messages ------------------------------------------------------------------------
        async def send(c):
            for k in range(N_MESSAGES):
                await c.emit("message", {"roomName": room_of[c], "personName": c.name,
                                         "content": f"{c.name}#{k}"})

        t_send = time.monotonic()
        await gather_all([send(c) for c in clients], 30, "sending messages")
        expected_per_client = ROOM_SIZE * N_MESSAGES

        async def receive(c):
            return [await c.expect("message", timeout=30) for _ in range(expected_per_client)]

        received = await gather_all([receive(c) for c in clients], 40, "receiving messages")
        t_received = time.monotonic()

        for c, msgs in zip(clients, received):
            contents = [m["content"] for m in msgs]
            expected = {f"{m.name}#{k}" for m in rooms[room_of[c]] for k in range(N_MESSAGES)}
            assert len(contents) == len(set(contents)), f"{c.name}: duplicates {contents}"
            assert set(contents) == expected, f"{c.name}: got {sorted(contents)}, expected {sorted(expected)}"
            for m in msgs:
                assert m["personName"] == m["content"].split("#")[0]
            for sender in rooms[room_of[c]]:
                seq = [x for x in contents if x.startswith(sender.name + "#")]
                assert seq == [f"{sender.name}#{k}" for k in range(N_MESSAGES)], \
                    f"{c.name}: messages of {sender.name} out of order: {seq}"

        # nothing extra (e.g. duplicates arriving late, other rooms)
        await asyncio.sleep(0.3)
        for c in clients:
            c.assert_none("message")

        # ---- leave ---------------------------------------------------------------------------
        async def leave(c):
            await c.emit("leave_room", {"roomName": room_of[c], "personName": c.name})
            await c.fence(timeout=30)  # our leave has been processed

        await gather_all([leave(c) for c in clients], 40, "leaving")
        t_left = time.monotonic()
        await gather_all([c.fence(timeout=30) for c in clients], 40, "fence after leaves")
        missed_leaves = 0
        for room, members in rooms.items():
            member_sids = {m.sid for m in members}
            for m in members:
                ids = [p["socketId"] for ev, p in m.log if ev == "user_left"]
                assert len(ids) == len(set(ids)), f"{m.name}: duplicate user_left {ids}"
                assert m.sid not in ids, f"{m.name} got its own user_left"
                assert set(ids) <= member_sids, f"{m.name}: user_left from another room"
            for a, b in itertools.combinations(members, 2):
                a_saw_b = any(ev == "user_left" and p == {"personName": b.name, "roomName": room,
                                                           "socketId": b.sid} for ev, p in a.log)
                b_saw_a = any(ev == "user_left" and p == {"personName": a.name, "roomName": room,
                                                           "socketId": a.sid} for ev, p in b.log)
                # Node (one thread) notifies whoever leaves second; a server that handles the two
                # leaves at once may notify neither. Both have left by then, so no client is
                # hurt: counted, not failed.
                missed_leaves += not (a_saw_b or b_saw_a)
                assert not (a_saw_b and b_saw_a), f"{a.name} and {b.name} both saw the other leave"

        total = time.monotonic() - t_start
        deliveries = N_CLIENTS * expected_per_client
        REPORT_LINES.extend([
            f"load[{SERVER_KIND}]: {N_CLIENTS} websocket clients, rooms of {ROOM_SIZE}, "
            f"{N_MESSAGES} messages each",
            f"  connect: {t_connected - t_start:.2f}s ({N_CLIENTS / (t_connected - t_start):.0f}/s); "
            f"join: {t_joined - t_connected:.2f}s; connect+join: "
            f"{N_CLIENTS / (t_joined - t_start):.0f} clients/s",
            f"  messages: {N_CLIENTS * N_MESSAGES} sent, {deliveries} delivered in "
            f"{t_received - t_send:.2f}s ({deliveries / (t_received - t_send):.0f} deliveries/s)",
            f"  leave: {t_left - t_received:.2f}s; pairs that saw each other join both ways "
            f"(both would offer): {both_ways}; pairs where neither saw the other leave: "
            f"{missed_leaves}; total {total:.2f}s",
        ])
        assert total < BUDGET_S, f"load test took {total:.1f}s"
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
