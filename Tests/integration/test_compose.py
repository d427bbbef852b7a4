"""deploy/docker-compose.yml run for real (issue 15): the images built here without any registry
(deploy/offline-images.sh: bases from Debian packages, the node image from a release signal-node built on this
machine), `docker-compose up` with the shipped compose file, the seed's events across the three nodes and
through HAProxy with python-socketio clients and one headless Chromium on the demo page, then
`docker-compose kill -s SIGKILL node2`, `docker-compose restart redis`, and `docker-compose down -v`.

Then the variants (issue 16), each its own project with the base file + an override: deploy/docker-compose.cluster.yml
(Redis Cluster, 3 masters + 3 replicas, the sharded adapter) and deploy/docker-compose.sentinel.yml (a primary, a
replica, 3 sentinels): a message crosses node1 <-> node3 once, the Redis master of the room's channel (the Sentinel
primary) is killed with `docker-compose kill -s SIGKILL`, cross-node delivery must resume within 30 s, exactly once,
and `down -v` leaves nothing.

The test's traffic goes only to the ports compose publishes on 127.0.0.1 (free ports, chosen here, selected with
the compose file's SIGNAL_LB_PUBLISH / SIGNAL_NODE<i>_PUBLISH); the containers talk on the compose network.

Needs root (or a user of the docker group) with Docker: dockerd is started when none answers. The tests skip
when Docker cannot run here, and fail instead when SIGNAL_REQUIRE_DOCKER=1 (CI sets it). The release binary:
$SIGNAL_COMPOSE_NODE_BIN, else offline-images.sh builds it (`swift build -c release --static-swift-stdlib`);
.ci/run builds the images before the test suite, so here they are only checked to be up to date.
"""

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
import requests
import socketio

from conftest import REPORT_LINES, REPO, SWIFT, free_port, swift_binary

DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
REQUIRED = os.environ.get("SIGNAL_REQUIRE_DOCKER", "") == "1"
NODES = ("node1", "node2", "node3")
WAIT = 30.0  # generous bound of every wait for the cluster (s)
FIGURES = {}


def unavailable(reason):
    if REQUIRED:
        pytest.fail(f"SIGNAL_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def run(cmd, env=None, timeout=600, check=True):
    result = subprocess.run(cmd, env=env, cwd=str(REPO), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def parse_time(text):
    """Docker's RFC 3339 time with nanoseconds -> epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text)
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=None)
    epoch = (base - datetime(1970, 1, 1)).total_seconds()
    return epoch + (float("0." + m.group(2)) if m.group(2) else 0.0)


# --------------------------------------------------------------------------------------------------
# A node that is not root must serve (no Docker needed)
# --------------------------------------------------------------------------------------------------

def test_node_serves_without_root(tmp_path):
    """Found by the first compose run: every connection was closed before a byte was read, in any container
    and for any non-root user. `.socketOption(.tcp_nodelay)` is SOL_SOCKET/1, i.e. SO_DEBUG, which needs
    CAP_NET_ADMIN: root on the host has it (so every other test passed), a container does not. The node must
    answer /healthz when run as `nobody`."""
    if not SWIFT:
        pytest.skip("needs the signal-node binary")
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run the node as nobody")
    binary = swift_binary()
    if not binary.exists():
        pytest.fail(f"signal-node binary not found at {binary}", pytrace=False)
    port = free_port()
    log = open(tmp_path / "node.log", "wb")
    proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             "--inh-caps=-all", "--bounding-set=-all", str(binary),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd="/")
    try:
        deadline = time.monotonic() + 30
        listening = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                assert r.status_code == 200, r.text
                return
            except requests.ConnectionError as error:
                listening = listening or "reset" in str(error).lower() or "aborted" in str(error).lower()
                time.sleep(0.1)
        pytest.fail(f"no /healthz answer from a node run as nobody (connections reset: {listening}); "
                    f"exit code {proc.poll()}:\n{(tmp_path / 'node.log').read_text()[-2000:]}")
    finally:
        proc.kill()
        proc.wait(10)


# --------------------------------------------------------------------------------------------------
# The compose cluster
# --------------------------------------------------------------------------------------------------

def compose_env():
    """The environment of docker-compose and offline-images.sh: SIGNAL_NODE_BIN (the tests' debug build) is not the
    image's binary; SIGNAL_COMPOSE_NODE_BIN is."""
    env = {k: v for k, v in os.environ.items() if k != "SIGNAL_NODE_BIN"}
    if os.environ.get("SIGNAL_COMPOSE_NODE_BIN"):
        env["SIGNAL_NODE_BIN"] = os.environ["SIGNAL_COMPOSE_NODE_BIN"]
    return env


class Compose:
    def __init__(self, *overrides):
        """The base compose file, plus override files (a variant: deploy/docker-compose.cluster.yml, ...)."""
        self.files = [COMPOSE, *overrides]
        self.project = f"signaltest{uuid.uuid4().hex[:8]}"
        self.lb_port = free_port()
        self.node_ports = {name: free_port() for name in NODES}
        self.env = compose_env()
        self.env.update(SIGNAL_LB_PUBLISH=f"127.0.0.1:{self.lb_port}",
                        **{f"SIGNAL_{n.upper()}_PUBLISH": str(p) for n, p in self.node_ports.items()})
        self.up_done = False

    @property
    def lb(self):
        # a host name, not 127.0.0.1: aiohttp keeps HAProxy's SERVERID cookie only for host names
        return f"http://localhost:{self.lb_port}"

    def node_url(self, name):
        return f"http://127.0.0.1:{self.node_ports[name]}"

    def dc(self, *args, timeout=300, check=True):
        files = [arg for path in self.files for arg in ("-f", str(path))]
        return run(["docker-compose", *files, "-p", self.project, *args], env=self.env, timeout=timeout, check=check)

    def container(self, service):
        """The container id (names differ between docker-compose v1 and v2), or None."""
        ids = self.dc("ps", "-a", "-q", service, check=False).stdout.split()
        return ids[0] if ids else None

    def inspect(self, service):
        container = self.container(service)
        if container is None:
            return None
        result = run(["docker", "inspect", container], check=False)
        return json.loads(result.stdout)[0] if result.returncode == 0 else None

    def leftovers(self):
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, cmd in (("containers", ["docker", "ps", "-aq", "--filter", label]),
                          ("networks", ["docker", "network", "ls", "-q", "--filter", label]),
                          ("volumes", ["docker", "volume", "ls", "-q", "--filter", label])):
            ids = run(cmd).stdout.split()
            if ids:
                found[kind] = ids
        # anonymous volumes (redis's VOLUME /data) carry no project label: check by the containers' mounts
        return found

    def logs(self):
        return self.dc("logs", "--no-color", "--tail", "60", check=False).stdout[-12000:]


def docker_available():
    if shutil.which("docker") is None and not os.path.exists("/usr/sbin/dockerd"):
        if os.geteuid() != 0:
            unavailable("no Docker here, and not root to install docker.io")
    if shutil.which("docker-compose") is None:
        unavailable("docker-compose is not installed (apt-get install docker-compose)")
    if os.geteuid() != 0 and run(["docker", "info"], check=False).returncode != 0:
        unavailable("the Docker engine does not answer and only root may start it")


@pytest.fixture(scope="module")
def images():
    """deploy/offline-images.sh, once for the module: the variables that select its images (SIGNAL_*_IMAGE), and
    SIGNAL_NOFILE where dockerd's own descriptor limit is lower than the compose file's."""
    if not SWIFT:
        pytest.skip("the compose cluster runs the signal-node image")
    docker_available()
    started = time.monotonic()
    result = run(["bash", str(DEPLOY / "offline-images.sh")], env=compose_env(), timeout=3600, check=False)
    if result.returncode != 0:
        text = result.stdout + result.stderr
        if "dockerd did not come up" in text:
            unavailable(f"Docker cannot run here:\n{text[-3000:]}")
        pytest.fail(f"deploy/offline-images.sh failed:\n{text[-6000:]}", pytrace=False)
    FIGURES["images_s"] = time.monotonic() - started
    settings = {}
    for line in result.stdout.splitlines():
        if line.startswith("export "):
            for key, value in re.findall(r"(\w+)='([^']*)'", line):
                settings[key] = value
    # Docker cannot give a container more descriptors than dockerd's own hard limit (20000 in this sandbox).
    limit = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh",
                 settings["SIGNAL_NODE_IMAGE"], "-c", "ulimit -Hn"]).stdout.strip()
    if limit.isdigit() and int(limit) < 65536:
        settings["SIGNAL_NOFILE"] = limit
    return settings


@pytest.fixture(scope="module")
def compose(images):
    cluster = Compose()
    cluster.env.update(images)
    try:
        started = time.monotonic()
        cluster.dc("up", "-d", "--no-build")
        FIGURES["up_s"] = time.monotonic() - started
        cluster.up_done = True
        yield cluster
    finally:
        cluster.dc("down", "-v", "--remove-orphans", "--timeout", "5", check=False)


def first_ok(url, deadline):
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return time.time()
        except requests.RequestException:
            pass
        time.sleep(0.02)
    return None


def wait_healthy(compose, service, timeout=WAIT):
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = compose.inspect(service)
        if state and state["State"].get("Health", {}).get("Status") == "healthy":
            return state
        time.sleep(0.2)
    raise AssertionError(f"{service} not healthy within {timeout} s: {state and state['State']}\n{compose.logs()}")


def lb_sees_all_nodes(compose, nodes=NODES, timeout=WAIT):
    """HAProxy's checks have marked every node of `nodes` up: requests without a cookie reach each of them."""
    seen = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not set(nodes) <= seen:
        # leastconn with no connection open: held polling requests spread them over the nodes
        try:
            r = requests.get(compose.lb + "/healthz", timeout=2)
            seen.add(r.headers.get("X-Signal-Node"))
        except requests.RequestException:
            pass
        time.sleep(0.05)
    assert set(nodes) <= seen, f"HAProxy sent requests only to {seen}\n{compose.logs()}"


def test_images(compose):
    """The images exist with the names compose uses; the node image runs as non-root, has its HEALTHCHECK, the
    resource bundle next to the binary, and a binary that needs no Swift runtime library."""
    sizes = {}
    for key in ("SIGNAL_NODE_IMAGE", "SIGNAL_REDIS_IMAGE", "SIGNAL_HAPROXY_IMAGE"):
        info = json.loads(run(["docker", "image", "inspect", compose.env[key]]).stdout)[0]
        sizes[compose.env[key]] = info["Size"] / 1e6
        if key == "SIGNAL_NODE_IMAGE":
            config = info["Config"]
            assert config["User"] not in ("", "0", "root", "0:0"), config["User"]
            assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    FIGURES["sizes"] = sizes
    listing = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", compose.env["SIGNAL_NODE_IMAGE"],
                   "-c", "ls /usr/local/bin/signal_Node.resources/demo && ldd /usr/local/bin/signal-node"]).stdout
    assert "index.html" in listing and "libhiredis.so.0.14" in listing and "libswift" not in listing, listing
    assert "not found" not in listing, listing
    REPORT_LINES.append("compose images: " + ", ".join(f"{k} {v:.1f} MB" for k, v in sizes.items())
                        + f" (offline-images.sh {FIGURES['images_s']:.1f} s here)")


def test_nodes_healthy_after_start(compose):
    """Each node serves /healthz on its published port, Docker reports it healthy, and HAProxy sends traffic to
    all three. Figures: start -> first /healthz 200 seen here, start -> Docker's first passing check."""
    deadline = time.monotonic() + WAIT
    serving = {}
    for name in NODES:
        seen = first_ok(compose.node_url(name) + "/healthz", deadline)
        assert seen is not None, f"{name}: no /healthz 200 within {WAIT} s\n{compose.logs()}"
        serving[name] = seen
    healthy = {}
    for name in NODES:
        state = wait_healthy(compose, name)
        started = parse_time(state["State"]["StartedAt"])
        passing = [parse_time(entry["End"]) for entry in state["State"]["Health"]["Log"] if entry["ExitCode"] == 0]
        healthy[name] = min(passing) - started
        serving[name] = max(0.0, serving[name] - started)
        readyz = requests.get(compose.node_url(name) + "/readyz", timeout=5)
        assert readyz.status_code == 200, f"{name} /readyz: {readyz.status_code} {readyz.text}"
    lb_sees_all_nodes(compose)
    page = requests.get(compose.lb + "/", timeout=5)
    assert page.status_code == 200 and "<html" in page.text.lower(), "demo page through HAProxy"
    assert "SERVERID" in page.headers.get("set-cookie", "")
    FIGURES["healthy"] = healthy
    REPORT_LINES.append(
        f"compose up -d {FIGURES['up_s']:.1f} s; node start -> Docker healthy: "
        + ", ".join(f"{n} {healthy[n]:.2f} s" for n in NODES)
        + "; start -> first /healthz 200 seen by the test (an upper bound: it polls once `up` has returned): "
        + ", ".join(f"{n} {serving[n]:.2f} s" for n in NODES))
    assert max(healthy.values()) < 15, healthy


# --------------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------------

def cookie_session():
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


class Client:
    """A python-socketio client that records every event, and re-joins its rooms after a reconnect."""

    def __init__(self, name, url, transports):
        self.name, self.url, self.transports = name, url, transports
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1,
                                        http_session=cookie_session, request_timeout=10)
        self.events = []  # (time, event, data)
        self.rooms = set()
        self.sids = []
        self.disconnects = 0
        self.tasks = set()
        self.sio.on("*", self._any)
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)

    async def _any(self, event, data=None):
        self.events.append((time.monotonic(), event, data))

    async def _connect(self):
        self.sids.append((time.monotonic(), self.sio.get_sid("/"), self.node_cookie()))
        if self.rooms and len(self.sids) > 1:  # a reconnect: join again (outside the handler)
            task = asyncio.create_task(self.rejoin())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _disconnect(self, reason=None):
        self.disconnects += 1

    def node_cookie(self):
        http = getattr(self.sio.eio, "http", None)
        for cookie in (http.cookie_jar if http is not None else []):
            if cookie.key == "SERVERID":
                return cookie.value
        return None

    @property
    def sid(self):
        return self.sids[-1][1] if self.sids else None

    async def connect(self):
        await asyncio.wait_for(self.sio.connect(self.url, transports=self.transports, wait_timeout=15), 20)

    async def join(self, room):
        """join_room, waiting for its acknowledgement (joined on the node before the next client joins)."""
        self.rooms.add(room)
        answer = await self.sio.call("join_room", {"roomName": room, "personName": self.name}, timeout=WAIT)
        assert not (isinstance(answer, dict) and ("error" in answer or "code" in answer)), \
            f"{self.name}: join_room {room}: {answer}"

    async def rejoin(self):
        sid = self.sid
        for room in sorted(self.rooms):
            for attempt in range(5):
                if self.sid != sid or "/" not in self.sio.namespaces:
                    return  # connected again meanwhile: that connect joins again
                try:
                    await self.sio.call("join_room", {"roomName": room, "personName": self.name}, timeout=5)
                    break
                except Exception as error:  # noqa: BLE001 - recorded (diagnostics), retried
                    self.events.append((time.monotonic(), "_rejoin_error", repr(error)))
                    await asyncio.sleep(0.2 * (attempt + 1))
            else:
                return
        self.events.append((time.monotonic(), "_rejoined", sid))

    def got(self, event, pred=lambda d: True, since=0.0):
        return [d for t, e, d in self.events if e == event and t >= since and pred(d)]

    async def expect(self, event, pred=lambda d: True, timeout=WAIT, since=0.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.got(event, pred, since)
            if found:
                return found[0]
            await asyncio.sleep(0.02)
        raise AssertionError(f"{self.name}: no {event} matching within {timeout} s; got "
                             f"{[(e, d) for _, e, d in self.events][-15:]}")

    async def close(self):
        try:
            await asyncio.wait_for(self.sio.disconnect(), 5)
        except Exception:  # noqa: BLE001 - teardown
            pass
        for task in list(self.tasks):
            task.cancel()


def joined(room, sid):
    return lambda d: isinstance(d, dict) and d.get("roomName") == room and d.get("socketId") == sid


async def connect_all(clients):
    await asyncio.gather(*(c.connect() for c in clients))


async def close_all(clients):
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def test_seed_events_across_nodes_and_haproxy(compose):
    """join_room/user_joined, message, offer/answer/ice_candidate relays and leave_room/user_left between clients
    on each node directly and through HAProxy (polling with its sticky cookie, websocket)."""
    room = f"compose-{uuid.uuid4().hex[:6]}"
    clients = [Client(f"direct-{n}", compose.node_url(n), ["websocket"]) for n in NODES]
    clients += [Client("lb-polling", compose.lb, ["polling"]), Client("lb-ws", compose.lb, ["websocket"]),
                Client("lb-upgrade", compose.lb, ["polling", "websocket"])]
    try:
        await connect_all(clients)
        for c in clients:
            await c.join(room)
        for i, c in enumerate(clients):  # a member sees its own user_joined and those of who joined later
            for other in clients[i:]:
                await c.expect("user_joined", joined(room, other.sid))
        a, b, lb = clients[0], clients[2], clients[3]
        await lb.sio.emit("message", {"roomName": room, "personName": lb.name, "content": "hello from haproxy"})
        for c in clients:
            msg = await c.expect("message", lambda d: isinstance(d, dict) and d.get("content") == "hello from haproxy")
            assert msg["personName"] == lb.name and msg.get("timestamp"), msg
        offer = {"offer": {"type": "offer", "sdp": "v=0\r\n"}, "fromPeer": a.sid, "toPeer": b.sid}
        await a.sio.emit("offer", offer)
        assert (await b.expect("offer")) == offer
        answer = {"answer": {"type": "answer", "sdp": "v=0\r\n"}, "fromPeer": b.sid, "toPeer": a.sid}
        await b.sio.emit("answer", answer)
        assert (await a.expect("answer")) == answer
        ice = {"iccCandidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0",
                                "sdpMLineIndex": 0, "usernameFragment": None}, "fromPeer": lb.sid, "toPeer": b.sid}
        await lb.sio.emit("ice_candidate", ice)
        got = await b.expect("ice_candidate")
        assert got == ice, got
        assert not a.got("offer") and not a.got("ice_candidate"), "relays go to toPeer only"
        leaver = clients[4]
        await leaver.sio.emit("leave_room", {"roomName": room, "personName": leaver.name})
        leaver.rooms.discard(room)
        for c in clients:
            if c is not leaver:
                await c.expect("user_left", joined(room, leaver.sid))
        nodes_seen = {c.node_cookie() for c in clients[3:4]}
        assert nodes_seen <= set(NODES) and None not in nodes_seen, nodes_seen
    finally:
        await close_all(clients)


async def test_demo_page_in_chromium_through_haproxy(compose):
    """The demo page, served through HAProxy from the node's resource bundle, in headless Chromium: it joins a
    room with a python-socketio client on node3 (each sees the other's user_joined), and chat goes both ways."""
    from media_cluster import Browser, require_browser, wait_until

    require_browser()

    class Origin:
        url = compose.lb

    room = f"compose-page-{uuid.uuid4().hex[:6]}"
    peer = Client("py-node3", compose.node_url("node3"), ["websocket"])
    browser = await asyncio.to_thread(Browser, "chrome")  # WebDriver calls block: in a thread, off the loop
    try:
        await peer.connect()
        await peer.join(room)
        await asyncio.to_thread(browser.open, Origin, room)
        my_id = await asyncio.to_thread(wait_until, lambda: browser.js("return demo.joined && demo.id"), WAIT,
                                        "page joined", detail=browser.diagnostics)
        await asyncio.to_thread(wait_until, lambda: any(p["id"] == peer.sid for p in browser.peers()), WAIT,
                                "page sees the python peer", detail=browser.diagnostics)
        await peer.expect("user_joined", joined(room, my_id))
        await peer.sio.emit("message", {"roomName": room, "personName": peer.name, "content": "to the page"})
        await asyncio.to_thread(wait_until, lambda: any(m.get("content") == "to the page"
                                                        for m in browser.js("return demo.chat")),
                                WAIT, "chat reaches the page", detail=browser.diagnostics)
        await asyncio.to_thread(browser.js, "demo.say('from the page')")
        await peer.expect("message", lambda d: isinstance(d, dict) and d.get("content") == "from the page")
        errors = await asyncio.to_thread(browser.errors)
        assert not errors, errors
    finally:
        await asyncio.to_thread(browser.quit)
        await peer.close()


# --------------------------------------------------------------------------------------------------
# Failover: docker-compose kill -s SIGKILL node2, then docker-compose restart redis
# --------------------------------------------------------------------------------------------------

FAILOVER_CLIENTS = int(os.environ.get("COMPOSE_FAILOVER_CLIENTS", "12"))


@pytest.fixture(scope="module")
def failover_state():
    return {}


async def test_sigkill_node2(compose, failover_state):
    """`docker-compose kill -s SIGKILL node2`: the clients it had (through HAProxy) reconnect through HAProxy to
    node1/node3 and re-join; the others stay connected and get user_left for each of node2's sockets (after the
    compose file's SIGNAL_NODE_TIMEOUT, 10 s)."""
    lb_sees_all_nodes(compose)
    room = f"compose-kill-{uuid.uuid4().hex[:6]}"
    kinds = (["polling"], ["websocket"], ["polling", "websocket"])
    clients = [Client(f"k{i:02d}", compose.lb, kinds[i % 3]) for i in range(FAILOVER_CLIENTS)]
    try:
        for c in clients:  # one at a time: leastconn spreads them over the three nodes
            await c.connect()
        for c in clients:
            await c.join(room)
        for i, c in enumerate(clients):  # a member sees its own user_joined and those of who joined later
            for other in clients[i:]:
                await c.expect("user_joined", joined(room, other.sid))
        on = {n: [c for c in clients if c.node_cookie() == n] for n in NODES}
        assert all(on[n] for n in NODES), {n: len(v) for n, v in on.items()}
        lost, kept = on["node2"], on["node1"] + on["node3"]
        lost_sids = {c.name: c.sid for c in lost}
        kept_sids = {c.name: c.sid for c in kept}

        killed = time.monotonic()
        compose.dc("kill", "-s", "SIGKILL", "node2")
        # the lost clients: connected again on another node, re-joined, seen by the others
        rejoin = {}
        deadline = killed + WAIT
        while time.monotonic() < deadline and len(rejoin) < len(lost):
            for c in lost:
                if c.name in rejoin or c.sid == lost_sids[c.name] or not c.got("_rejoined", lambda s, c=c: s == c.sid):
                    continue
                if all(k.got("user_joined", joined(room, c.sid)) for k in kept):
                    rejoin[c.name] = time.monotonic() - killed
            await asyncio.sleep(0.05)
        assert len(rejoin) == len(lost), (
            f"re-joined: {rejoin} of {[c.name for c in lost]}; "
            + "; ".join(f"{c.name}: cookie {c.node_cookie()} sids {[(round(t - killed, 2), s, n) for t, s, n in c.sids]} "
                        f"disconnects {c.disconnects} rejoined {c.got('_rejoined')} {c.got('_rejoin_error')} seen by "
                        f"{[k.name for k in kept if k.got('user_joined', joined(room, c.sid))]}"
                        for c in lost if c.name not in rejoin)
            + f"\n{compose.logs()}")
        assert all(c.node_cookie() in ("node1", "node3") for c in lost), [c.node_cookie() for c in lost]
        # the others: user_left for each old socket of node2
        left = {}
        deadline = killed + WAIT
        while time.monotonic() < deadline and len(left) < len(lost):
            for name, sid in lost_sids.items():
                if name not in left and all(k.got("user_left", joined(room, sid)) for k in kept):
                    left[name] = time.monotonic() - killed
            await asyncio.sleep(0.05)
        assert len(left) == len(lost), f"user_left seen for {left} of {lost_sids}\n{compose.logs()}"
        assert all(c.sid == kept_sids[c.name] and c.disconnects == 0 for c in kept), "survivors stayed connected"
        state = compose.inspect("node2")["State"]
        failover_state["node2_restarted_by_docker"] = state["Running"]
        REPORT_LINES.append(
            f"compose SIGKILL node2 ({len(clients)} clients, {len(lost)} on node2): lost clients re-joined through "
            f"HAProxy in max {max(rejoin.values()):.2f} s; user_left at the others in max {max(left.values()):.2f} s "
            f"(node timeout 10 s); node2 restarted by Docker: {state['Running']}")
    finally:
        await close_all(clients)
    if not compose.inspect("node2")["State"]["Running"]:
        compose.dc("start", "node2")
    wait_healthy(compose, "node2")


async def test_redis_restart(compose):
    """`docker-compose restart redis`: no client is disconnected, and messages flow again between clients on
    different nodes; /readyz is 200 again on every node."""
    lb_sees_all_nodes(compose)
    # Not 20 characters of [A-Za-z0-9_-]: that is a socket id's shape, refused as a room name (invalid_room_name).
    room = f"compose-redis-{uuid.uuid4().hex[:8]}"
    clients = [Client(f"r-{n}", compose.node_url(n), ["websocket"]) for n in NODES]
    try:
        await connect_all(clients)
        for c in clients:
            await c.join(room)
        for i, c in enumerate(clients):  # a member sees its own user_joined and those of who joined later
            for other in clients[i:]:
                await c.expect("user_joined", joined(room, other.sid))
        started = time.monotonic()
        compose.dc("restart", "-t", "5", "redis")
        restarted = time.monotonic()
        # probes: node1 -> room until node2's and node3's clients get one
        recovered = None
        n = 0
        deadline = restarted + WAIT
        while time.monotonic() < deadline:
            n += 1
            content = f"probe-{n}"
            sent = time.monotonic()
            await clients[0].sio.emit("message", {"roomName": room, "personName": "r", "content": content})
            await asyncio.sleep(0.25)
            if all(c.got("message", lambda d, s=content: isinstance(d, dict) and d.get("content") == s)
                   for c in clients[1:]):
                recovered = sent - started
                break
        assert recovered is not None, f"no cross-node delivery within {WAIT} s after the Redis restart\n{compose.logs()}"
        for name in NODES:
            assert first_ok(compose.node_url(name) + "/readyz", time.monotonic() + WAIT), f"{name} /readyz"
        assert all(c.disconnects == 0 for c in clients), [(c.name, c.disconnects) for c in clients]
        REPORT_LINES.append(f"compose restart redis: the restart command took {restarted - started:.2f} s; "
                            f"cross-node delivery back {recovered:.2f} s after it was issued")
    finally:
        await close_all(clients)


def test_down_leaves_nothing(compose):
    """`docker-compose down -v`: no container, network or volume of the project is left."""
    volumes = {m["Name"] for s in ("redis", *NODES, "haproxy") for m in (compose.inspect(s) or {}).get("Mounts", [])
               if m.get("Type") == "volume"}
    compose.dc("down", "-v", "--remove-orphans", "--timeout", "10")
    assert compose.leftovers() == {}, compose.leftovers()
    remaining = set(run(["docker", "volume", "ls", "-q"]).stdout.split()) & volumes
    assert not remaining, f"volumes left: {remaining}"


# --------------------------------------------------------------------------------------------------
# The variants: deploy/docker-compose.cluster.yml (Redis Cluster) and deploy/docker-compose.sentinel.yml (Sentinel)
# --------------------------------------------------------------------------------------------------

CLUSTER_REDIS = ("redis", "redis-2", "redis-3", "redis-4", "redis-5", "redis-6")
# A container failover: the Redis side takes ~3-4 s (cluster-node-timeout / down-after-milliseconds 2000), then
# the nodes follow; generous, for a loaded 2-core machine.
FAILOVER_WAIT = float(os.environ.get("COMPOSE_FAILOVER_WAIT", "30"))


@contextlib.contextmanager
def variant(images, override):
    """`up -d` of the base file + `override` (own project, free ports), until every node's /readyz is 200; `down -v`
    at the end whatever happened (the test itself checks that it leaves nothing)."""
    cluster = Compose(DEPLOY / override)
    cluster.env.update(images)
    cluster.t0 = started = time.monotonic()
    try:
        cluster.dc("up", "-d", "--no-build")
        cluster.up_s = time.monotonic() - started
        deadline = time.monotonic() + WAIT
        for name in NODES:
            assert first_ok(cluster.node_url(name) + "/readyz", deadline), \
                f"{name}: /readyz not 200 within {WAIT} s of `up`\n{cluster.logs()}"
        cluster.ready_s = time.monotonic() - started
        cluster.containers = project_containers(cluster)
        yield cluster
    finally:
        cluster.dc("down", "-v", "--remove-orphans", "--timeout", "5", check=False)


def down_leaves_nothing(cluster):
    started = time.monotonic()
    cluster.dc("down", "-v", "--remove-orphans", "--timeout", "5")
    assert cluster.leftovers() == {}, cluster.leftovers()
    return time.monotonic() - started


def project_containers(cluster):
    """{service: (container id, IP address on the compose network)} of the project's containers, in two docker
    calls (docker-compose takes a second a call here)."""
    label = f"label=com.docker.compose.project={cluster.project}"
    ids = run(["docker", "ps", "-aq", "--filter", label]).stdout.split()
    found = {}
    for info in json.loads(run(["docker", "inspect", *ids]).stdout) if ids else []:
        service = info["Config"]["Labels"]["com.docker.compose.service"]
        ip = next((n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values() if n.get("IPAddress")), None)
        found[service] = (info["Id"], ip)
    return found


def redis_cli(cluster, service, *args, port=6379, check=True):
    """redis-cli in the service's container (docker exec: the containers' addresses are the compose network's)."""
    result = run(["docker", "exec", cluster.containers[service][0], "redis-cli", "-p", str(port), *args], timeout=20,
                 check=check)
    return result.stdout


def container_ips(cluster, services):
    """{IP address on the compose network: service}."""
    return {cluster.containers[s][1]: s for s in services}


def cluster_nodes(cluster, via):
    """CLUSTER NODES as `via` sees it: [{id, ip, flags, master, slots}]."""
    rows = []
    for line in redis_cli(cluster, via, "cluster", "nodes").splitlines():
        fields = line.split()
        if len(fields) >= 8:
            rows.append({"id": fields[0], "ip": fields[1].split(":")[0], "flags": fields[2].split(","),
                         "master": fields[3], "slots": fields[8:]})
    return rows


def owns(slots, slot):
    for part in slots:
        if part.startswith("["):  # a slot being migrated
            continue
        low, _, high = part.partition("-")
        if int(low) <= slot <= int(high or low):
            return True
    return False


def seconds(value):
    return "?" if value is None else f"{value:.2f} s"


def delivery_figures(figures):
    back = ", ".join(f"{seconds(v)} at {k}" for k, v in figures["delivery_back_s"].items())
    lost = ", ".join(f"{v} at {k}" for k, v in figures["probes_lost"].items())
    return f"cross-node delivery back {back} after the kill (probes lost, one each 200 ms: {lost})"


def content_is(content):
    return lambda d: isinstance(d, dict) and d.get("content") == content


def contents(client, prefix):
    return [d.get("content") for d in client.got("message", lambda d: isinstance(d, dict)
                                                  and str(d.get("content", "")).startswith(prefix))]


def killed_at(cluster, service):
    """When Docker saw the container die (epoch seconds): the kill itself, not the docker-compose command around it."""
    state = json.loads(run(["docker", "inspect", cluster.containers[service][0]]).stdout)[0]["State"]
    assert not state["Running"], f"{service} still runs: {state}"
    return parse_time(state["FinishedAt"])


def logged_at(cluster, service, text):
    """When the service's container first logged a line containing `text` (Docker's own timestamps, epoch
    seconds), or None."""
    logs = run(["docker", "logs", "-t", cluster.containers[service][0]], check=False)
    for line in (logs.stdout + logs.stderr).splitlines():
        if text in line:
            return parse_time(line.split(" ", 1)[0])
    return None


async def until(check, timeout, what, interval=0.2):
    """Poll a blocking `check` (off the event loop) until it is true; the monotonic time it was first seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return time.monotonic()
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


async def cross_node_failover(cluster, label, room, victim, promoted):
    """A client on node1 and one on node3 (their published ports, websocket) in `room`: a message each way arrives
    once; then `docker-compose kill -s SIGKILL <victim>` and probes both ways every 200 ms until each side hears
    the other again (within FAILOVER_WAIT); then 5 more messages each way. Every message arrives exactly once at
    both clients (the sender's own copy is local), nobody is disconnected, and /readyz is 200 again on the three
    nodes. `promoted()` (blocking) is when Redis failed over (epoch seconds, from a container's log), a figure only.
    Returns the figures, in seconds after the container died."""
    a = Client(f"{label}-node1", cluster.node_url("node1"), ["websocket"])
    b = Client(f"{label}-node3", cluster.node_url("node3"), ["websocket"])
    pairs = ((a, b), (b, a))
    wall = time.time() - time.monotonic()  # monotonic -> epoch seconds

    async def say(sender, content):
        await sender.sio.emit("message", {"roomName": room, "personName": sender.name, "content": content})

    try:
        await connect_all([a, b])
        await a.join(room)
        await b.join(room)
        await a.expect("user_joined", joined(room, b.sid))  # node3 -> node1 through Redis
        # /readyz is 200 once every channel the node wants (the room's, on a Redis Cluster) is acknowledged
        for name in ("node1", "node3"):
            assert first_ok(cluster.node_url(name) + "/readyz", time.monotonic() + WAIT), f"{label}: {name} /readyz"
        for sender, _ in pairs:
            await say(sender, f"before-{sender.name}")
        for c in (a, b):
            for sender, _ in pairs:
                await c.expect("message", content_is(f"before-{sender.name}"))

        killed = time.monotonic()
        await asyncio.to_thread(cluster.dc, "kill", "-s", "SIGKILL", victim)
        figures = {"kill_command_s": time.monotonic() - killed}
        back = {}
        n = 0
        while len(back) < 2 and time.monotonic() < killed + FAILOVER_WAIT:
            n += 1
            for sender, _ in pairs:
                await say(sender, f"probe-{sender.name}-{n}")
            await asyncio.sleep(0.2)
            for sender, receiver in pairs:
                if receiver.name not in back:
                    arrived = [t for t, e, d in receiver.events if e == "message" and isinstance(d, dict)
                               and str(d.get("content", "")).startswith(f"probe-{sender.name}-")]
                    if arrived:
                        back[receiver.name] = min(arrived) + wall
        assert len(back) == 2, (f"{label}: cross-node delivery not back within {FAILOVER_WAIT} s of the SIGKILL of "
                                f"{victim}: back at {back}; probes sent {n} each way\n{cluster.logs()}")
        died = await asyncio.to_thread(killed_at, cluster, victim)
        figures["delivery_back_s"] = {name: at - died for name, at in back.items()}
        promoted_at = await asyncio.to_thread(promoted)
        figures["promoted_s"] = None if promoted_at is None else promoted_at - died
        for name in NODES:
            seen = first_ok(cluster.node_url(name) + "/readyz", time.monotonic() + WAIT)
            assert seen, f"{label}: {name} /readyz not 200 again within {WAIT} s\n{cluster.logs()}"

        for i in range(5):
            for sender, _ in pairs:
                await say(sender, f"after-{sender.name}-{i}")
        for c in (a, b):
            for sender, _ in pairs:
                await c.expect("message", content_is(f"after-{sender.name}-4"))
        await asyncio.sleep(1.0)  # a duplicate would come within this
        for c in (a, b):
            for sender, _ in pairs:
                for prefix, expected in ((f"before-{sender.name}", [f"before-{sender.name}"]),
                                         (f"after-{sender.name}-", [f"after-{sender.name}-{i}" for i in range(5)])):
                    got = contents(c, prefix)
                    assert got == expected, f"{label}: {c.name} got {got}, not {expected} (exactly once, in order)"
                probes = contents(c, f"probe-{sender.name}-")
                assert len(probes) == len(set(probes)), f"{label}: {c.name} got a probe twice: {probes}"
                if c is sender:  # its own copies are local: all of them, Redis or not
                    assert len(probes) == n, f"{label}: {c.name} has {len(probes)} of its {n} probes"
        assert a.disconnects == 0 and b.disconnects == 0, f"{label}: disconnects {a.disconnects}, {b.disconnects}"
        figures["probes_lost"] = {r.name: n - len(contents(r, f"probe-{s.name}-")) for s, r in pairs}
        return figures
    finally:
        await close_all([a, b])


@pytest.fixture
def cluster_variant(images):
    with variant(images, "docker-compose.cluster.yml") as cluster:
        yield cluster


@pytest.fixture
def sentinel_variant(images):
    with variant(images, "docker-compose.sentinel.yml") as cluster:
        yield cluster


async def test_redis_cluster_variant_master_failover(cluster_variant):
    """deploy/docker-compose.cluster.yml: 3 masters + 3 replicas made by redis-cluster-init, the nodes on the sharded
    adapter. The seed's message crosses node1 <-> node3 once; SIGKILL of the master that owns the room's channel
    slot; its replica is promoted and cross-node delivery resumes, exactly once."""
    cluster = cluster_variant
    info = redis_cli(cluster, "redis", "cluster", "info")
    assert "cluster_state:ok" in info and "cluster_size:3" in info and "cluster_known_nodes:6" in info, info
    room = f"compose-cluster-{uuid.uuid4().hex[:8]}"
    channel = f"socket.io#/#{room}#"
    slot = int(redis_cli(cluster, "redis", "cluster", "keyslot", channel).strip())
    ips = container_ips(cluster, CLUSTER_REDIS)
    rows = cluster_nodes(cluster, "redis")
    masters = [r for r in rows if "master" in r["flags"]]
    assert len(masters) == 3 and len([r for r in rows if "slave" in r["flags"]]) == 3, rows
    owner = next(r for r in masters if owns(r["slots"], slot))
    replica = next(r for r in rows if r["master"] == owner["id"])
    victim, heir = ips[owner["ip"]], ips[replica["ip"]]
    # The replica must be in sync before its master dies, or it cannot take over.
    await until(lambda: "master_link_status:up" in redis_cli(cluster, heir, "info", "replication"), WAIT,
                f"{heir} replicating {victim}")

    figures = await cross_node_failover(cluster, "cluster", room, victim,
                                        lambda: logged_at(cluster, heir, "Failover election won"))
    assert redis_cli(cluster, heir, "role").startswith("master"), f"{heir} was not promoted"
    info = redis_cli(cluster, heir, "cluster", "info")
    assert "cluster_state:ok" in info, info
    down_s = down_leaves_nothing(cluster)
    REPORT_LINES.append(
        f"compose Redis Cluster variant: up -d {cluster.up_s:.1f} s (every /readyz 200 at {cluster.ready_s:.1f} s); "
        f"SIGKILL of {victim}, master of the room channel's slot {slot} (the kill command took "
        f"{figures['kill_command_s']:.2f} s): {heir} won the failover election {seconds(figures['promoted_s'])} after "
        f"the kill; {delivery_figures(figures)}; down -v {down_s:.1f} s; test {time.monotonic() - cluster.t0:.0f} s")


async def test_sentinel_variant_primary_failover(sentinel_variant):
    """deploy/docker-compose.sentinel.yml: primary `redis`, `redis-replica`, 3 sentinels, the nodes on
    --redis-sentinel. The seed's message crosses node1 <-> node3 once; SIGKILL of the primary; the sentinels promote
    the replica and cross-node delivery resumes, exactly once."""
    cluster = sentinel_variant

    def primary():
        return redis_cli(cluster, "sentinel1", "sentinel", "get-master-addr-by-name", "signal", port=26379,
                         check=False).split()[:1]

    ips = container_ips(cluster, ("redis", "redis-replica"))
    assert [ips.get(ip) for ip in primary()] == ["redis"], (primary(), ips)
    for sentinel in ("sentinel1", "sentinel2", "sentinel3"):
        master = redis_cli(cluster, sentinel, "sentinel", "master", "signal", port=26379).split()
        fields = dict(zip(master[::2], master[1::2]))
        assert fields["num-slaves"] == "1" and fields["num-other-sentinels"] == "2", (sentinel, fields)
    await until(lambda: "master_link_status:up" in redis_cli(cluster, "redis-replica", "info", "replication"), WAIT,
                "redis-replica replicating")

    room = f"compose-sentinel-{uuid.uuid4().hex[:8]}"
    figures = await cross_node_failover(cluster, "sentinel", room, "redis",
                                        lambda: logged_at(cluster, "sentinel1", "+switch-master"))
    assert [ips.get(ip) for ip in primary()] == ["redis-replica"], (primary(), ips)
    assert redis_cli(cluster, "redis-replica", "role").startswith("master")
    down_s = down_leaves_nothing(cluster)
    REPORT_LINES.append(
        f"compose Sentinel variant: up -d {cluster.up_s:.1f} s (every /readyz 200 at {cluster.ready_s:.1f} s); "
        f"SIGKILL of the primary (the kill command took {figures['kill_command_s']:.2f} s): +switch-master to "
        f"redis-replica {seconds(figures['promoted_s'])} after the kill; {delivery_figures(figures)}; "
        f"down -v {down_s:.1f} s; test {time.monotonic() - cluster.t0:.0f} s")
