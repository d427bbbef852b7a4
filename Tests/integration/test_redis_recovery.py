"""How fast cross-node delivery comes back after a Redis restart (issue 16, `--redis` on one server).

Two nodes share one redis-server. A client on n1 sends a numbered chat message every 10 ms to a
room that a client on n2 is in. Redis is stopped (SIGKILL, or SHUTDOWN NOSAVE), left down for a
while, and started again on the same port; a PING client polls it every few ms so we know when it
accepts connections again. The recovery time is from that moment to the first numbered message
that reaches the client on n2 again. Several restarts per subscription mode; the median must be
within RECOVERY_MEDIAN_LIMIT (the target is 0.2 s; the bound leaves room for a loaded 2-core
machine and still fails on the old ~1.5 s). Everything delivered must be delivered exactly once
and in order (numbers strictly increasing on both clients), and after each restart Redis must
hold exactly one subscriber connection per node (a reconnect must not leave two subscriptions).

SIGNAL_RECOVERY_RESTARTS (default 5) sets the number of restarts per mode.
"""

import asyncio
import os
import statistics
import subprocess
import time

import pytest

from cluster import (MODES, REDIS_BIN, REQUEST_CHANNEL, RespClient, cluster_clients,  # noqa: F401
                     cluster_factory, encode_command, http_status, numsub, redis_command, room_channel)
from conftest import REPORT_LINES, TIMEOUT, unique

SEND_INTERVAL = 0.010
RESTARTS = int(os.environ.get("SIGNAL_RECOVERY_RESTARTS", "5"))
RECOVERY_MEDIAN_LIMIT = float(os.environ.get("SIGNAL_RECOVERY_MEDIAN_LIMIT", "0.3"))
# How long Redis stays down in each restart (a real restart is about a second): cycled through.
DOWN_SECONDS = [1.0, 1.5, 0.6, 2.5, 1.2, 0.8, 2.0]
# The sender emits 100 events/s, above the default per-socket budget.
NODE_ARGS = ["--event-rate", "1000", "--event-burst", "2000"]
PREFIX = "seq-"


class Stream:
    """Numbered messages from one client; the arrival time and number of each at each receiver."""

    def __init__(self, sender, room):
        self.sender = sender
        self.room = room
        self.sent = []  # (number, monotonic time the emit was handed to the client)
        self.received = {}  # receiver name -> [(number, arrival time)]
        self.stop = asyncio.Event()
        self.task = None
        self.errors = []

    def attach(self, client):
        got = self.received.setdefault(client.name, [])
        previous = client._on_any

        async def on_message(data):
            content = data.get("content") if isinstance(data, dict) else None
            if isinstance(content, str) and content.startswith(PREFIX):
                got.append((int(content[len(PREFIX):]), time.monotonic()))
            else:
                await previous("message", data)

        client.sio.on("message", on_message)

    async def _run(self):
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            n += 1
            self.sent.append((n, time.monotonic()))
            try:
                await self.sender.emit("message", {"roomName": self.room, "personName": self.sender.name,
                                                   "content": f"{PREFIX}{n}"})
            except Exception as e:  # noqa: BLE001 - recorded, the test fails on it
                self.errors.append(repr(e))
                return
            next_at += SEND_INTERVAL
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_at = time.monotonic()  # late (loaded machine): don't burst to catch up

    def start(self):
        self.task = asyncio.create_task(self._run())

    async def finish(self):
        self.stop.set()
        await asyncio.wait_for(self.task, TIMEOUT)

    def first_arrival_after(self, name, t):
        for number, at in self.received[name]:
            if at > t:
                return number, at
        return None

    async def wait_arrival_after(self, name, t, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.first_arrival_after(name, t)
            if got:
                return got
            assert not self.errors, f"sender failed: {self.errors}"
            await asyncio.sleep(0.002)
        return None

    def order_problems(self, name):
        numbers = [n for n, _ in self.received[name]]
        problems = []
        for a, b in zip(numbers, numbers[1:]):
            if b <= a:
                problems.append(f"{name}: {b} after {a}")
        return problems


async def ping_once(port):
    """True when redis-server on port accepts a connection and answers PING."""
    try:
        c = await asyncio.wait_for(RespClient.connect(port, timeout=0.2), 0.3)
    except (OSError, asyncio.TimeoutError, TimeoutError):
        return False
    try:
        return await c.command("PING", timeout=0.5) == "PONG"
    except Exception:  # noqa: BLE001
        return False
    finally:
        await c.close()


async def stop_redis(redis, how):
    if how == "SIGKILL":
        redis.kill()
        return
    c = await RespClient.connect(redis.port)
    c.writer.write(encode_command("SHUTDOWN", "NOSAVE"))
    await c.writer.drain()
    try:
        await asyncio.wait_for(c.read_value(), TIMEOUT)  # the server closes the connection
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    await c.close()
    await asyncio.to_thread(redis._reap)


async def start_redis(redis):
    """Start redis-server again on its port without blocking the event loop (the sender keeps
    sending); return the monotonic time it first answered PING."""
    redis.proc = subprocess.Popen(
        [REDIS_BIN, "--port", str(redis.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=redis.logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {redis.proc.returncode}:\n{redis.read_log()}")
        if await ping_once(redis.port):
            redis.frozen = False
            return time.monotonic()
        await asyncio.sleep(0.003)
    raise AssertionError(f"redis-server did not answer PING within 10 s:\n{redis.read_log()}")


async def subscriber_connections(port):
    """Connections that hold a (P)SUBSCRIBE, from CLIENT LIST."""
    listing = await redis_command(port, "CLIENT", "LIST")
    count = 0
    for line in listing.decode().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if int(fields.get("sub", 0)) > 0 or int(fields.get("psub", 0)) > 0:
            count += 1
    return count


async def expect_one_subscription_per_node(port, mode, room, nodes=2, timeout=3.0):
    """Eventually exactly one subscriber connection per node, each channel subscribed once per node;
    never more on the way."""
    channels = [REQUEST_CHANNEL] + ([room_channel(room)] if mode == "per-room" else [])
    deadline = time.monotonic() + timeout
    while True:
        subscribers = await subscriber_connections(port)
        counts = [await numsub(port, ch) for ch in channels]
        assert subscribers <= nodes and all(c <= nodes for c in counts), \
            f"duplicate subscriptions: {subscribers} subscriber connections, NUMSUB {dict(zip(channels, counts))}"
        if subscribers == nodes and all(c == nodes for c in counts):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"subscriptions not back within {timeout}s: {subscribers} subscriber "
                                 f"connections, NUMSUB {dict(zip(channels, counts))}")
        await asyncio.sleep(0.05)


async def ready_again(c, since, timeout=5.0):
    """Seconds from `since` until every node's /readyz answers 200 (subscriptions acknowledged,
    publisher connected, presence registered)."""
    deadline = since + timeout
    for node in c.nodes:
        while await http_status(node.url, "/readyz", timeout=1.0) != 200:
            assert time.monotonic() < deadline, f"{node}: /readyz not 200 within {timeout}s of Redis being back"
            await asyncio.sleep(0.01)
    return time.monotonic() - since


@pytest.mark.parametrize("mode", MODES)
async def test_cross_node_delivery_recovers_quickly_after_redis_restart(cluster_factory, cluster_clients, mode):
    c = cluster_factory(mode, n=2, node_args={0: NODE_ARGS, 1: NODE_ARGS})
    n1, n2 = c
    a = await cluster_clients.new(n1, "websocket", "a", fence=False)
    b = await cluster_clients.new(n2, "websocket", "b", fence=False)
    room = unique("recovery")
    await a.join(room)
    await b.join(room)
    await a.expect("user_joined")  # b's join, relayed to a
    stream = Stream(a, room)
    stream.attach(a)
    stream.attach(b)
    stream.start()
    recoveries = []
    lines = []
    try:
        assert await stream.wait_arrival_after("b", time.monotonic(), TIMEOUT), "no cross-node delivery at start"
        for i in range(RESTARTS):
            how = "SIGKILL" if i % 2 == 0 else "SHUTDOWN NOSAVE"
            down = DOWN_SECONDS[i % len(DOWN_SECONDS)]
            await stop_redis(c.redis, how)
            t_stop = time.monotonic()
            await asyncio.sleep(down)
            # Nothing crosses nodes while Redis is down.
            during = stream.first_arrival_after("b", t_stop + 0.2)
            assert during is None, f"restart {i}: message {during[0]} reached n2 while Redis was down"
            t_back = await start_redis(c.redis)
            got = await stream.wait_arrival_after("b", t_back, timeout=15)
            assert got, f"restart {i}: no cross-node delivery within 15 s after Redis was back"
            number, at = got
            recovery = at - t_back
            recoveries.append(recovery)
            sent_at = dict(stream.sent).get(number)
            ready = await ready_again(c, t_back)
            lines.append(f"restart {i} ({how}, down {down:.1f}s): back {t_back - t_stop:.2f}s after the stop, "
                         f"first delivery {recovery * 1000:.0f} ms later (message {number}, sent "
                         f"{(sent_at - t_back) * 1000:+.0f} ms), /readyz 200 on both nodes by "
                         f"{ready * 1000:.0f} ms")
            await expect_one_subscription_per_node(c.redis.port, mode, room)
            await asyncio.sleep(0.3)  # steady flow again before the next stop
    finally:
        await stream.finish()
    # Everything sent after the last recovery arrives, once, in order.
    last = stream.sent[-1][0]
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and (not stream.received["b"] or stream.received["b"][-1][0] < last):
        await asyncio.sleep(0.01)
    assert stream.received["b"] and stream.received["b"][-1][0] == last, \
        f"n2 did not get the last message {last}; last seen {stream.received['b'][-1:]}"
    problems = stream.order_problems("a") + stream.order_problems("b")
    assert not problems, "not exactly once, in order: " + "; ".join(problems[:20])
    local = [n for n, _ in stream.received["a"]]
    assert local == list(range(1, last + 1)), "the sender's own node must deliver every message to it"

    median = statistics.median(recoveries)
    summary = (f"redis restart recovery ({mode}): median {median * 1000:.0f} ms, "
               f"min {min(recoveries) * 1000:.0f} ms, max {max(recoveries) * 1000:.0f} ms over "
               f"{len(recoveries)} restarts; n2 got {len(stream.received['b'])} of {last} messages")
    print("\n" + "\n".join(lines) + "\n" + summary)
    REPORT_LINES.append(summary)
    assert median <= RECOVERY_MEDIAN_LIMIT, \
        f"cross-node delivery came back {median:.3f}s (median) after Redis, limit {RECOVERY_MEDIAN_LIMIT}s:\n" \
        + "\n".join(lines)
