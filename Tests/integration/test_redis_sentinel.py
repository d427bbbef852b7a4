"""Redis Sentinel (issue 16): `--redis-sentinel URLs --redis-sentinel-master NAME`.

The test starts real processes on loopback: a primary redis-server, a replica (`--replicaof`), and three
sentinels (`redis-server sentinel.conf --sentinel`, down-after-milliseconds 1000, quorum 2), then two
signal-node processes that find the primary through the sentinels. A client on n1 sends a numbered chat
message every 10 ms to a room that a client on n2 is in. Then the primary goes away:

- `kill`: SIGKILL of the primary; the sentinels notice after ~1 s, elect a leader and promote the replica;
- `failover`: `SENTINEL FAILOVER` with the primary alive: it is demoted to a replica and keeps accepting
  connections, so only `+switch-master` (and `ROLE` after connecting) tell the nodes to move.

Measured: when the first sentinel announces `+switch-master`, and when a numbered message reaches n2 again.
Delivery must resume within 1 s of the announcement (and 10 s of the kill), everything delivered must arrive
exactly once and in order, and the new primary must hold one subscription per node.
"""

import asyncio
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from cluster import (REDIS_BIN, REQUEST_CHANNEL, RedisSpy, cluster_clients, http_status,  # noqa: F401
                     numsub, redis_command, redis_ping, room_channel)
from conftest import REPORT_LINES, SWIFT, TIMEOUT, ServerProcess, _active_servers, free_port, unique
from test_redis_recovery import NODE_ARGS, Stream

MASTER = "mymaster"
SWITCH_LIMIT = float(os.environ.get("SIGNAL_SENTINEL_SWITCH_LIMIT", "1.0"))
KILL_LIMIT = 10.0


class RedisProcess:
    """A redis-server (or sentinel) process with the given arguments, on a port of its own."""

    def __init__(self, args, port, name):
        self.args = args
        self.port = port
        self.name = name
        self.proc = None
        self.logfile = tempfile.NamedTemporaryFile(prefix=f"redis-{name}-", suffix=".log", delete=False)

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen([REDIS_BIN, *self.args], stdout=self.logfile, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.read_log()}")
            if redis_ping(self.port):
                return self
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not answer PING within {timeout}s:\n{self.read_log()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=5)

    def read_log(self, limit=4000):
        try:
            with open(self.logfile.name, "rb") as f:
                return f.read().decode("utf-8", "replace")[-limit:]
        except OSError:
            return ""


def redis_server(name, port, directory, *extra):
    """A data server; `directory` takes the RDB file a replica writes when it syncs."""
    return RedisProcess(["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                         "--dir", directory, *extra], port, name)


class SentinelSetup:
    """Primary + replica + 3 sentinels."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sentinel-test-")
        self.primary = redis_server("primary", free_port(), self.dir)
        self.replica = redis_server("replica", free_port(), self.dir, "--replicaof", "127.0.0.1",
                                    str(self.primary.port))
        self.sentinels = []
        for i in range(3):
            port = free_port()
            conf = os.path.join(self.dir, f"sentinel-{i}.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                        f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2\n"
                        f"sentinel down-after-milliseconds {MASTER} 1000\n"
                        f"sentinel failover-timeout {MASTER} 3000\n"
                        f"sentinel parallel-syncs {MASTER} 1\n")
            self.sentinels.append(RedisProcess([conf, "--sentinel"], port, f"sentinel-{i}"))

    @property
    def urls(self):
        return ",".join(f"redis://127.0.0.1:{s.port}" for s in self.sentinels)

    def processes(self):
        return [self.primary, self.replica, *self.sentinels]

    def start(self):
        self.primary.start()
        self.replica.start()
        for s in self.sentinels:
            s.start()
        return self

    async def wait_settled(self, timeout=30.0):
        """Replica in sync and every sentinel knowing the replica and the two other sentinels."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            info = (await redis_command(self.primary.port, "INFO", "replication")).decode()
            ok = "slave0:" in info and "state=online" in info
            for s in self.sentinels:
                try:
                    replicas = await redis_command(s.port, "SENTINEL", "REPLICAS", MASTER)
                    others = await redis_command(s.port, "SENTINEL", "SENTINELS", MASTER)
                except Exception as e:  # noqa: BLE001
                    ok, last = False, repr(e)
                    break
                if len(replicas) != 1 or len(others) != 2:
                    ok, last = False, f"{s.name}: {len(replicas)} replicas, {len(others)} other sentinels"
            if ok:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"sentinel setup not settled within {timeout}s: {last}")

    async def primary_port(self):
        reply = await redis_command(self.sentinels[0].port, "SENTINEL", "get-master-addr-by-name", MASTER)
        return int(reply[1])

    def stop(self):
        for p in self.processes():
            p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self):
        return "\n".join(f"----- {p.name} :{p.port} -----\n{p.read_log()}" for p in self.processes())


class SentinelNode(ServerProcess):
    def __init__(self, node_id, urls, mode):
        self.node_id = node_id
        super().__init__(["--redis-sentinel", urls, "--redis-sentinel-master", MASTER, "--node-id", node_id,
                          "--redis-mode", mode, *NODE_ARGS])


@pytest.fixture
def sentinel_setup(request):
    if not SWIFT:
        pytest.skip("needs the signal-node binary")
    setup = SentinelSetup()
    try:
        setup.start()
        yield setup
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(setup.logs())
        setup.stop()


async def wait_ready(nodes, timeout=15.0):
    deadline = time.monotonic() + timeout
    for node in nodes:
        while await http_status(node.url, "/readyz", timeout=1.0) != 200:
            assert time.monotonic() < deadline, f"{node.node_id}: /readyz not 200:\n{node.read_log()}"
            await asyncio.sleep(0.05)


async def subscriptions_on(port, mode, room, nodes=2, timeout=3.0):
    """One subscription per node on the server at `port` (sentinels' own connections aside)."""
    channels = [REQUEST_CHANNEL] + ([room_channel(room)] if mode == "per-room" else [])
    deadline = time.monotonic() + timeout
    while True:
        listing = (await redis_command(port, "CLIENT", "LIST")).decode()
        subscribers = 0
        for line in listing.splitlines():
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if fields.get("name", "").startswith("sentinel-"):
                continue
            if int(fields.get("sub", 0)) > 0 or int(fields.get("psub", 0)) > 0:
                subscribers += 1
        counts = [await numsub(port, ch) for ch in channels]
        assert subscribers <= nodes and all(c <= nodes for c in counts), \
            f"duplicate subscriptions: {subscribers} subscriber connections, NUMSUB {dict(zip(channels, counts))}"
        if subscribers == nodes and all(c == nodes for c in counts):
            return
        assert time.monotonic() < deadline, \
            f"subscriptions not on :{port}: {subscribers} subscriber connections, NUMSUB {dict(zip(channels, counts))}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("how", ["kill", "failover"])
@pytest.mark.parametrize("mode", ["pattern", "per-room"])
async def test_sentinel_failover_resumes_cross_node_delivery(sentinel_setup, cluster_clients, mode, how):
    setup = sentinel_setup
    await setup.wait_settled()
    nodes = []
    try:
        for i in range(2):
            node = SentinelNode(f"n{i + 1}", setup.urls, mode)
            nodes.append(node)
            node.start()
            _active_servers.append((node, 0))
        await wait_ready(nodes)
        n1, n2 = nodes
        old_primary = setup.primary.port
        assert await setup.primary_port() == old_primary
        a = await cluster_clients.new(n1, "websocket", "a", fence=False)
        b = await cluster_clients.new(n2, "websocket", "b", fence=False)
        room = unique("sentinel")
        await a.join(room)
        await b.join(room)
        await a.expect("user_joined")
        await subscriptions_on(old_primary, mode, room)
        spies = [await RedisSpy.start(s.port, channels=["+switch-master"]) for s in setup.sentinels]
        stream = Stream(a, room)
        stream.attach(a)
        stream.attach(b)
        stream.start()
        try:
            assert await stream.wait_arrival_after("b", time.monotonic(), TIMEOUT), "no cross-node delivery at start"
            t_stop = time.monotonic()
            if how == "kill":
                setup.primary.kill()
            else:
                assert await redis_command(setup.sentinels[0].port, "SENTINEL", "FAILOVER", MASTER) == "OK"
            # The first +switch-master from any sentinel.
            deadline = time.monotonic() + 30
            switched = []
            while not switched and time.monotonic() < deadline:
                switched = [m for spy in spies for m in spy.messages]
                await asyncio.sleep(0.005)
            assert switched, "no +switch-master within 30 s"
            t_switch = min(m.at for m in switched)
            announced = min(switched, key=lambda m: m.at).payload.decode()
            new_port = int(announced.split()[4])
            assert new_port == setup.replica.port, f"switched to {announced}"
            # Keep sending until delivery has been steady for a while after the switch.
            deadline = t_switch + 15
            while time.monotonic() < deadline:
                arrivals = [at for _, at in stream.received["b"]]
                if arrivals and arrivals[-1] > t_switch + 0.5 and arrivals[-1] > t_stop + 1.0:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)
        finally:
            await stream.finish()
            for spy in spies:
                await spy.close()
        # The outage as n2 saw it: the longest pause between two arrivals after the stop.
        arrivals = [(n, at) for n, at in stream.received["b"] if at > t_stop - 1.0]
        assert arrivals and arrivals[-1][1] > t_switch, \
            f"no cross-node delivery within 15 s of +switch-master ({announced})"
        gap, (number, at), before = max(
            ((cur[1] - prev[1], cur, prev) for prev, cur in zip(arrivals, arrivals[1:])), key=lambda g: g[0])
        lost = number - before[0] - 1
        await subscriptions_on(new_port, mode, room)
        await wait_ready(nodes)
        last = stream.sent[-1][0]
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and stream.received["b"][-1][0] < last:
            await asyncio.sleep(0.01)
        assert stream.received["b"][-1][0] == last, f"n2 did not get the last message {last}"
        problems = stream.order_problems("a") + stream.order_problems("b")
        assert not problems, "not exactly once, in order: " + "; ".join(problems[:20])
        assert [n for n, _ in stream.received["a"]] == list(range(1, last + 1))

        after_switch = at - t_switch
        after_stop = at - t_stop
        event = "kill -9 of the primary" if how == "kill" else "SENTINEL FAILOVER"
        summary = (f"sentinel {how} ({mode}): +switch-master {t_switch - t_stop:.2f}s after the {event}; "
                   f"n2's longest pause {gap * 1000:.0f} ms, delivery back {after_switch * 1000:+.0f} ms from "
                   f"+switch-master ({after_stop:.2f}s after the {event}), {lost} messages lost")
        print("\n" + summary)
        REPORT_LINES.append(summary)
        assert after_switch <= SWITCH_LIMIT, summary
        if how == "kill":
            assert after_stop <= KILL_LIMIT, summary
    finally:
        for node in nodes:
            node.stop()
