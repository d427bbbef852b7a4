"""Operations and security of signal-node, against the real binary:

- /healthz, /readyz (single node; 503 while Redis is down in a cluster), /metrics in the Prometheus text
  format with exact counter values after a scripted scenario, and the Redis counters;
- JSON logs (`--log-format json`): every stderr line one JSON object with ts, level, msg and node.id;
- invalid settings stop start-up with a clear message and a non-zero exit;
- graceful drain on SIGTERM with real clients behind a tiny TCP proxy: they reconnect to the other node and
  re-join, the room sees user_left for the old ids and user_joined for the new ones, and the node exits 0;
- JWT on CONNECT (HS256 with --jwt-secret, RS256 with --jwt-public-key-file; auth or ?token=; the `rooms`
  claim), made by hand here (hmac/base64/json, RSA with `cryptography`);
- TURN REST credentials (username `<expiry>:<socketId>`, credential base64(HMAC-SHA1(secret, username)));
- --allowed-origins for polling (CORS) and WebSocket upgrades.

Every wait is bounded (conftest TIMEOUT unless said otherwise).
"""

import asyncio
import base64
import hashlib
import hmac
import json
import re
import signal
import subprocess
import tempfile
import time
import uuid

import aiohttp
import pytest
import requests
import socketio

from cluster import (RedisServer, cluster_clients, cluster_factory,  # noqa: F401
                     http_status)
from conftest import SWIFT, TIMEOUT, Client, free_port, swift_binary, unique

pytestmark = pytest.mark.skipif(not SWIFT, reason="operations flags exist only in signal-node")

AUTH_ERROR = "Authentication error"


# --------------------------------------------------------------------------------------------
# Prometheus text format
# --------------------------------------------------------------------------------------------

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class Metrics:
    """A parsed exposition: samples[(name, frozenset(labels))] = value, types[family] = type."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            where = f"line {lineno}: {line!r}"
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                    assert len(parts) >= 3 and _NAME.fullmatch(parts[2]), f"bad {parts[1]} {where}"
                    if parts[1] == "TYPE":
                        assert len(parts) == 4 and parts[3].strip() in _TYPES, f"bad TYPE {where}"
                        assert parts[2] not in self.types, f"second TYPE for {parts[2]} {where}"
                        assert not any(n == parts[2] for n, _ in self.samples), \
                            f"TYPE after samples of {parts[2]} {where}"
                        self.types[parts[2]] = parts[3].strip()
                continue
            name, labels, value = self._sample(line, where)
            key = (name, frozenset(labels.items()))
            assert key not in self.samples, f"duplicate sample {where}"
            self.samples[key] = value

    @staticmethod
    def _sample(line, where):
        m = _NAME.match(line)
        assert m, f"no metric name {where}"
        name, i = m.group(0), m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            i += 1
            while True:
                if line[i] == "}":
                    i += 1
                    break
                lm = _LABEL.match(line, i)
                assert lm and line[lm.end():lm.end() + 2] == '="', f"bad label {where}"
                i = lm.end() + 2
                value = []
                while line[i] != '"':
                    if line[i] == "\\":
                        value.append({"\\": "\\", '"': '"', "n": "\n"}[line[i + 1]])
                        i += 2
                    else:
                        value.append(line[i])
                        i += 1
                i += 1
                assert lm.group(0) not in labels, f"label {lm.group(0)} twice {where}"
                labels[lm.group(0)] = "".join(value)
                if line[i] == ",":
                    i += 1
                else:
                    assert line[i] == "}", f"bad label list {where}"
        rest = line[i:].split()
        assert rest and len(rest) <= 2 and line[i:i + 1] in (" ", "\t"), f"bad value {where}"
        value = float(rest[0])  # also Nan, +Inf
        if len(rest) == 2:
            int(rest[1])  # a timestamp in ms
        return name, labels, value

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, **labels):
        v = self.get(name, **labels)
        assert v is not None, f"no sample {name}{labels or ''} in /metrics:\n{self.text}"
        return v

    def type_of(self, sample_name):
        for family in (sample_name, re.sub(r"_(total|count|sum|bucket)$", "", sample_name)):
            if family in self.types:
                return self.types[family]
        return None


async def scrape(url, timeout=TIMEOUT):
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/metrics", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            body = await r.text()
            assert r.status == 200, f"/metrics answered {r.status}: {body!r}"
            ctype = r.headers.get("Content-Type", "")
            assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
            return Metrics(body)


async def wait_metrics(url, predicate, what, timeout=TIMEOUT):
    """Scrape until predicate(metrics) holds; return the metrics. Fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        m = await scrape(url)
        if predicate(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics of {url}: {what} not reached within {timeout}s:\n{m.text}")
        await asyncio.sleep(0.05)


def test_prometheus_parser():
    m = Metrics('# HELP a_total An a.\n# TYPE a_total counter\na_total{x="1",y="q\\"\\\\n"} 3\n'
                'b 2.5 1700000000000\n# TYPE g gauge\ng{t="w",} 0.0\n')
    assert m.value("a_total", x="1", y='q"\\n') == 3
    assert m.value("b") == 2.5 and m.value("g", t="w") == 0 and m.type_of("a_total") == "counter"
    for bad in ("a{x=1} 2", "a 1 2 3", "a{x=\"1\"}2", "1a 2", "# TYPE a countr\n"):
        with pytest.raises(AssertionError):
            Metrics(bad)


# --------------------------------------------------------------------------------------------
# Health and readiness
# --------------------------------------------------------------------------------------------

def test_healthz_and_readyz_single_node(server):
    r = requests.get(server.url + "/healthz", timeout=TIMEOUT)
    assert r.status_code == 200
    r = requests.get(server.url + "/readyz", timeout=TIMEOUT)
    assert r.status_code == 200, r.text  # in-memory rooms: always ready


async def test_readyz_503_while_redis_down(cluster_factory):
    c = cluster_factory("pattern", n=2)
    assert [await http_status(n.url, "/readyz") for n in c] == [200, 200]
    c.redis.kill()
    took = await c.wait_readyz(503, timeout=5)
    # /healthz stays 200: the process is fine, only its adapter is not
    assert [await http_status(n.url, "/healthz") for n in c] == [200, 200]
    c.redis.start()  # the same port
    await c.wait_readyz(200, timeout=10)
    assert took < 5


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

async def new_client(url, transport="websocket", name=None):
    c = Client(url, transport, name)
    await c.connect()
    return c


async def test_metrics_exact_after_scripted_traffic(server_factory):
    """Fresh node, then: A and B (websocket) and C (polling) connect; A and B join one room; A sends 3
    messages; C, not in the room, sends one (refused not_in_room); then A leaves by disconnecting."""
    s = server_factory()
    m0 = await scrape(s.url)
    assert m0.value("signal_sessions") == 0 and m0.value("signal_rooms") == 0
    assert m0.value("signal_events_in_total", event="message") == 0

    room = unique()
    a = await new_client(s.url, "websocket", "alice")
    b = await new_client(s.url, "websocket", "bob")
    c = await new_client(s.url, "polling", "carol")
    try:
        await a.join(room)
        await b.join(room)
        assert (await a.expect("user_joined"))["socketId"] == b.sid
        for i in range(3):
            await a.emit("message", {"roomName": room, "content": f"hello {i}"})
        for who in (a, b):
            for i in range(3):
                assert (await who.expect("message"))["content"] == f"hello {i}"
        await c.emit("message", {"roomName": room, "content": "let me in"})
        err = await c.expect("error")
        assert err["code"] == "not_in_room" and err["event"] == "message", err

        m = await scrape(s.url)
        for sample in m.samples:
            assert m.type_of(sample[0]) is not None, f"{sample[0]} has no # TYPE line"
        assert m.type_of("signal_events_in_total") == "counter"
        assert m.type_of("signal_connections") == "gauge"
        assert m.type_of("signal_sessions") == "gauge"
        expected = {
            ("signal_events_in_total", "message"): 4,      # 3 relayed + 1 refused
            ("signal_events_out_total", "message"): 6,     # 3 messages x 2 members
            ("signal_events_in_total", "join_room"): 2,
            ("signal_events_out_total", "user_joined"): 3,  # 1 (alice alone) + 2 (bob's join)
            ("signal_events_in_total", "leave_room"): 0,
            ("signal_events_out_total", "user_left"): 0,
        }
        got = {k: m.value(k[0], event=k[1]) for k in expected}
        assert got == expected
        assert m.value("signal_errors_total", code="not_in_room") == 1
        assert m.get("signal_errors_total", code="unauthorized") in (None, 0)
        assert m.value("signal_connections", transport="websocket") == 2
        assert m.value("signal_connections", transport="polling") == 1
        assert m.value("signal_connections_opened_total") == 3
        assert m.value("signal_sessions") == 3
        assert m.value("signal_rooms") == 4  # the room + one socket-id room per socket
        assert m.value("signal_broadcasts_total") == 5  # 2 user_joined + 3 messages
        # every counter is a whole number
        for (name, _), v in m.samples.items():
            if m.type_of(name) == "counter":
                assert v == int(v) and v >= 0, (name, v)

        a_sid = a.sid
        await a.close()
        assert (await b.expect("user_left"))["socketId"] == a_sid
        m = await wait_metrics(
            s.url, lambda m: m.value("signal_sessions") == 2
            and m.value("signal_connections", transport="websocket") == 1,
            "sessions 2 and websocket connections 1 after alice left")
        assert m.value("signal_events_out_total", event="user_left") == 1  # to bob
        assert m.value("signal_rooms") == 3
        assert m.value("signal_connections", transport="polling") == 1
        assert m.value("signal_events_in_total", event="message") == 4  # counters never go down
    finally:
        for x in (a, b, c):
            await x.close()


async def test_metrics_count_direct_emits(server_factory):
    """Events sent to one socket (the `error` event of a refused event, `ice_servers` on connect) are
    events out too: signal_events_out_total has `error` and `ice_servers` labels for them."""
    s = server_factory("--stun-urls", "stun:s.example:3478")
    c = await new_client(s.url, "websocket")
    try:
        await c.expect("ice_servers")
        await c.emit("message", {"roomName": unique(), "content": "x"})
        assert (await c.expect("error"))["code"] == "not_in_room"
        m = await scrape(s.url)
        assert m.value("signal_errors_total", code="not_in_room") == 1
        assert (m.value("signal_events_out_total", event="ice_servers"),
                m.value("signal_events_out_total", event="error")) == (1, 1), \
            "events emitted to one socket are not counted in signal_events_out_total"
    finally:
        await c.close()


def test_metrics_off(server_factory):
    s = server_factory("--metrics", "false")
    r = requests.get(s.url + "/metrics", timeout=TIMEOUT)
    assert r.status_code == 404


async def test_metrics_redis_published_and_dropped(cluster_factory, cluster_clients):
    c = cluster_factory("pattern", n=2)
    room = unique()
    a = await cluster_clients.new(c[0], name="alice")
    b = await cluster_clients.new(c[1], name="bob")
    await a.join(room)
    # alice's user_joined goes to n2 asynchronously: let it arrive before bob joins
    await cluster_clients.settle(origins=[a])
    await b.join(room)
    assert (await a.expect("user_joined"))["socketId"] == b.sid

    before = await scrape(c[0].url)
    for name in ("signal_redis_published_total", "signal_redis_dropped_total",
                 "signal_redis_received_total", "signal_redis_reconnects_total"):
        assert before.type_of(name) == "counter", name
    assert before.value("signal_redis_dropped_total") == 0
    p0 = before.value("signal_redis_published_total")
    assert p0 >= 1  # at least alice's user_joined (bob's went out from n2)

    for i in range(3):
        await a.emit("message", {"roomName": room, "content": f"via redis {i}"})
    for who in (a, b):
        for i in range(3):
            assert (await who.expect("message"))["content"] == f"via redis {i}"
    after = await scrape(c[0].url)
    assert after.value("signal_redis_published_total") >= p0 + 3
    assert after.value("signal_redis_dropped_total") == 0
    assert (await scrape(c[1].url)).value("signal_redis_received_total") >= 3

    # Redis goes away: a's messages still reach a (local), and each lost publish is counted
    c.redis.kill()
    await c.wait_readyz(503, timeout=5)
    for i in range(2):
        await a.emit("message", {"roomName": room, "content": f"lost {i}"})
        # local delivery does not need Redis
        assert (await a.expect("message"))["content"] == f"lost {i}"
    m = await wait_metrics(c[0].url, lambda m: m.value("signal_redis_dropped_total") >= 2,
                           "signal_redis_dropped_total >= 2 after 2 messages while Redis is down")
    assert m.value("signal_redis_dropped_total") == 2, m.text
    assert m.value("signal_redis_published_total") == after.value("signal_redis_published_total")
    b.assert_none("message")
    c.redis.start()
    await c.wait_readyz(200, timeout=10)


# --------------------------------------------------------------------------------------------
# Logs and settings
# --------------------------------------------------------------------------------------------

class RawNode:
    """signal-node with stdout and stderr in separate files (conftest's ServerProcess merges them)."""

    def __init__(self, *args):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = tempfile.NamedTemporaryFile(prefix="signal-out-", delete=False)
        self.err = tempfile.NamedTemporaryFile(prefix="signal-err-", delete=False)
        self.proc = subprocess.Popen(
            [str(swift_binary()), "--host", "127.0.0.1", "--port", str(self.port), *args],
            stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL)

    def wait_healthy(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.stderr()}"
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not healthy within {timeout}s:\n{self.stderr()}")

    def stderr(self):
        with open(self.err.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stdout(self):
        with open(self.out.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


async def test_json_logs():
    """--log-format json: every stderr line is one JSON object with ts, level, msg and node.id, whatever
    logs it (listener, sockets at debug level, the Redis adapter losing Redis, the drain)."""
    redis = RedisServer().start()
    node = RawNode("--log-format", "json", "--log-level", "debug", "--node-id", "json-node",
                   "--redis", redis.url, "--drain-timeout", "2000")
    try:
        node.wait_healthy()
        c = await new_client(node.url, "websocket", "jason")
        await c.join(unique())
        await c.emit("message", {"roomName": unique(), "content": 'quote " backslash \\ newline \n'})
        await c.expect("error")
        await c.close()
        redis.kill()  # the adapter and presence log the lost connection
        await asyncio.sleep(0.5)
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(10) == 0
    finally:
        node.kill()
        redis.stop()
    text = node.stderr()
    lines = text.splitlines()
    assert len(lines) >= 5, text
    levels = set()
    msgs = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"stderr line is not JSON: {line!r}\n--- stderr ---\n{text}") from None
        assert isinstance(obj, dict), line
        for key in ("ts", "level", "msg", "node.id"):
            assert key in obj, f"no {key!r} in {line!r}"
        assert obj["node.id"] == "json-node", line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", obj["ts"]), line
        assert obj["level"] in ("trace", "debug", "info", "notice", "warning", "error", "critical"), line
        levels.add(obj["level"])
        msgs.append(obj["msg"])
    assert "listening" in msgs and "draining" in msgs and "drained" in msgs, msgs
    assert "debug" in levels, f"--log-level debug gave no debug lines: {msgs}"
    assert node.stdout() == "", f"stdout is not empty: {node.stdout()!r}"


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port"),
    (["--redis", "http://x"], "--redis"),
    (["--ice-event", "foo"], "--ice-event"),
    (["--turn-secret", "x"], "--turn-urls"),
    (["--log-format", "xml"], "--log-format"),
    (["--log-level", "loud"], "--log-level"),
    (["--redis-mode", "sharded"], "--redis-mode"),
    (["--turn-ttl", "0"], "--turn-ttl"),
    (["--drain-timeout", "-1"], "--drain-timeout"),
    (["--recovery-window", "-1"], "--recovery-window"),
    (["--jwt-public-key-file", "/nonexistent/key.pem"], "--jwt-public-key-file"),
])
def test_invalid_settings_stop_startup(args, message, tmp_path):
    port = free_port()
    p = subprocess.run([str(swift_binary()), "--host", "127.0.0.1", *args] +
                       ([] if "--port" in args else ["--port", str(port)]),
                       capture_output=True, text=True, timeout=15)
    assert p.returncode != 0, f"{args} started (or exited 0): {p.stderr}"
    first = p.stderr.strip().splitlines()[0] if p.stderr.strip() else ""
    assert first.startswith("Error:") and message in first, f"unclear message for {args}: {p.stderr!r}"
    # nothing listened
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)


def test_invalid_public_key_file(tmp_path):
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")
    p = subprocess.run([str(swift_binary()), "--host", "127.0.0.1", "--port", str(free_port()),
                        "--jwt-public-key-file", str(bad)], capture_output=True, text=True, timeout=15)
    assert p.returncode != 0 and "--jwt-public-key-file" in p.stderr, p.stderr


# --------------------------------------------------------------------------------------------
# JWT on CONNECT
# --------------------------------------------------------------------------------------------

JWT_SECRET = "test-jwt-secret-0123456789"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims, *, secret=JWT_SECRET, rsa_key=None, alg=None, header=None):
    """A compact JWS: HS256 with `secret`, RS256 with `rsa_key` (PKCS#1 v1.5, SHA-256), or `alg: none`."""
    alg = alg or ("RS256" if rsa_key is not None else "HS256")
    header = header or {"alg": alg, "typ": "JWT"}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(claims, separators=(",", ":")).encode()))
    if alg == "HS256":
        key = secret if isinstance(secret, bytes) else secret.encode()
        sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    elif alg == "RS256":
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        sig = rsa_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    else:
        sig = b""
    return signing_input + "." + b64url(sig)


def forge(header, claims, signature):
    """A token with any header and signature bytes."""
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()),
                     b64url(signature)])


def claims(**extra):
    now = int(time.time())
    return {"sub": f"user-{uuid.uuid4().hex[:6]}", "iat": now, "exp": now + 300, **extra}


async def connect_with(url, *, auth=None, token_query=None, transport="websocket"):
    """Connect a Client with `auth` and/or `?token=`; return it (connected)."""
    c = Client(url + (f"?token={token_query}" if token_query else ""), transport)
    await asyncio.wait_for(
        c.sio.connect(c.url, transports=[transport] if transport != "default" else None,
                      auth=auth, wait_timeout=TIMEOUT), TIMEOUT + 2)
    return c


async def refused_with(url, *, auth=None, token_query=None, transport="websocket"):
    """Connect and expect a CONNECT_ERROR; return its message."""
    sio = socketio.AsyncClient(reconnection=False)
    errors = []
    sio.on("connect_error", lambda data=None: errors.append(data))
    full = url + (f"?token={token_query}" if token_query else "")
    try:
        await asyncio.wait_for(sio.connect(full, transports=[transport], auth=auth,
                                           wait_timeout=TIMEOUT), TIMEOUT + 2)
    except socketio.exceptions.ConnectionError:
        pass
    else:
        await sio.disconnect()
        raise AssertionError(f"connected with auth={auth!r} token_query={token_query!r}")
    finally:
        try:
            await asyncio.wait_for(sio.disconnect(), 2)
        except Exception:
            pass
    assert errors, "no connect_error"
    data = errors[0]
    message = data.get("message") if isinstance(data, dict) else data
    assert isinstance(message, str), data
    return message


@pytest.fixture
def hs_server(server_factory):
    return server_factory("--jwt-secret", JWT_SECRET)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_jwt_hs256_accepted_in_auth_and_query(hs_server, transport):
    a = await connect_with(hs_server.url, auth={"token": make_jwt(claims())}, transport=transport)
    b = await connect_with(hs_server.url, token_query=make_jwt(claims()), transport=transport)
    try:
        room = unique()
        await a.join(room)  # no rooms claim: any room
        await b.join(room)
        assert (await a.expect("user_joined"))["socketId"] == b.sid
        # exp a little in the past is still within the 5 s leeway
        c = await connect_with(hs_server.url, auth={"token": make_jwt(claims(exp=int(time.time()) - 2))},
                               transport=transport)
        await c.close()
    finally:
        await a.close()
        await b.close()


async def test_jwt_hs256_refused(hs_server):
    now = int(time.time())
    cases = {
        "missing": dict(),
        "empty auth": dict(auth={}),
        "wrong signature": dict(auth={"token": make_jwt(claims(), secret="another-secret")}),
        "wrong signature in query": dict(token_query=make_jwt(claims(), secret="another-secret")),
        "tampered claims": dict(auth={"token": (lambda t: t.split(".")[0] + "." + b64url(
            json.dumps(claims(rooms=["x"])).encode()) + "." + t.split(".")[2])(make_jwt(claims()))}),
        "expired": dict(auth={"token": make_jwt(claims(exp=now - 60))}),
        "not yet valid": dict(auth={"token": make_jwt(claims(nbf=now + 60))}),
        "alg none": dict(auth={"token": make_jwt(claims(), alg="none")}),
        "alg none, HS256 signature kept": dict(auth={"token": (lambda t: make_jwt(
            claims(), header={"alg": "none"}).rsplit(".", 1)[0] + "." + t.rsplit(".", 1)[1])(
            make_jwt(claims()))}),
        "RS256 on an HS256-only node": dict(auth={"token": forge({"alg": "RS256"}, claims(), b"\x00" * 256)}),
        "garbage": dict(auth={"token": "not.a.jwt"}),
        "not a string": dict(auth={"token": 42}),
    }
    messages = {}
    for what, kwargs in cases.items():
        messages[what] = await refused_with(hs_server.url, **kwargs)
    bad = {k: v for k, v in messages.items() if not v.startswith(AUTH_ERROR)}
    assert not bad, f"refused without an '{AUTH_ERROR}' message: {bad}"
    assert "expired" in messages["expired"], messages["expired"]
    m = await scrape(hs_server.url)
    assert m.value("signal_errors_total", code="unauthorized") == len(cases)


async def test_jwt_rooms_claim(hs_server):
    allowed, other = unique("allowed"), unique("other")
    c = await connect_with(hs_server.url, auth={"token": make_jwt(claims(rooms=[allowed]))})
    free = await connect_with(hs_server.url, auth={"token": make_jwt(claims())})
    try:
        ack = await c.emit_with_ack("join_room", {"roomName": allowed, "personName": "ann"})
        assert ack[0]["roomName"] == allowed and ack[0]["socketId"] == c.sid, ack
        assert (await c.expect("user_joined"))["socketId"] == c.sid
        ack = await c.emit_with_ack("join_room", {"roomName": other, "personName": "ann"})
        assert ack[0]["code"] == "forbidden_room" and ack[0]["event"] == "join_room", ack
        # without an ack: the `error` event
        await c.emit("join_room", {"roomName": other, "personName": "ann"})
        assert (await c.expect("error"))["code"] == "forbidden_room"
        # not in the room: messages to it are refused
        ack = await c.emit_with_ack("message", {"roomName": other, "content": "hi"})
        assert ack[0]["code"] == "not_in_room", ack
        # a token without the claim joins anything
        await free.join(other)
        c.assert_none("user_joined")
        m = await scrape(hs_server.url)
        assert m.value("signal_errors_total", code="forbidden_room") == 2
    finally:
        await c.close()
        await free.close()


@pytest.fixture(scope="module")
def rsa_keys():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, other, pem


async def test_jwt_rs256(server_factory, rsa_keys, tmp_path):
    key, other, pem = rsa_keys
    path = tmp_path / "jwt-public.pem"
    path.write_bytes(pem)
    s = server_factory("--jwt-public-key-file", str(path))
    room = unique("rs")
    c = await connect_with(s.url, auth={"token": make_jwt(claims(rooms=[room]), rsa_key=key)})
    q = await connect_with(s.url, token_query=make_jwt(claims(), rsa_key=key), transport="polling")
    try:
        await c.join(room)
        ack = await c.emit_with_ack("join_room", {"roomName": unique(), "personName": "x"})
        assert ack[0]["code"] == "forbidden_room", ack
        await q.join(room)
    finally:
        await c.close()
        await q.close()
    cases = {
        "signed by another key": dict(auth={"token": make_jwt(claims(), rsa_key=other)}),
        "expired": dict(auth={"token": make_jwt(claims(exp=int(time.time()) - 60), rsa_key=key)}),
        # the classic confusion: HS256 with the public key's PEM as the HMAC secret
        "HS256 keyed with the public key": dict(auth={"token": make_jwt(claims(), secret=pem)}),
        "alg none": dict(auth={"token": make_jwt(claims(), alg="none")}),
        "missing": dict(),
    }
    messages = {what: await refused_with(s.url, **kw) for what, kw in cases.items()}
    bad = {k: v for k, v in messages.items() if not v.startswith(AUTH_ERROR)}
    assert not bad, f"refused without an '{AUTH_ERROR}' message: {bad}"


# --------------------------------------------------------------------------------------------
# STUN / TURN
# --------------------------------------------------------------------------------------------

TURN_SECRET = "sekrit"
TURN_TTL = 600
STUN_URL = "stun:s.example:3478"
TURN_URLS = ["turn:t.example:3478", "turns:t.example:5349?transport=tcp"]


def check_ice_servers(servers, sid, secret=TURN_SECRET, ttl=TURN_TTL):
    assert isinstance(servers, list) and len(servers) == 2, servers
    stun, turn = servers
    assert stun == {"urls": [STUN_URL]}, stun
    assert set(turn) == {"urls", "username", "credential"}, turn
    assert turn["urls"] == TURN_URLS, turn
    expiry, _, who = turn["username"].partition(":")
    assert who == sid, f"username {turn['username']!r} is not <expiry>:{sid}"
    assert abs(int(expiry) - (time.time() + ttl)) <= 5, f"expiry {expiry} is not now+{ttl}"
    expected = base64.b64encode(hmac.new(secret.encode(), turn["username"].encode(),
                                         hashlib.sha1).digest()).decode()
    assert turn["credential"] == expected, f"credential {turn['credential']!r}, HMAC-SHA1 gives {expected!r}"


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_turn_credentials(server_factory, transport):
    s = server_factory("--stun-urls", STUN_URL, "--turn-urls", ",".join(TURN_URLS),
                       "--turn-secret", TURN_SECRET, "--turn-ttl", str(TURN_TTL))
    a = await new_client(s.url, transport, "ann")
    b = await new_client(s.url, transport, "ben")
    try:
        for c in (a, b):
            check_ice_servers(await c.expect("ice_servers"), c.sid)
        room = unique()
        ack = await a.emit_with_ack("join_room", {"roomName": room, "personName": "ann"})
        roster = ack[0]
        assert roster["roomName"] == room and roster["socketId"] == a.sid and roster["peers"] == []
        check_ice_servers(roster["iceServers"], a.sid)
        ack = await b.emit_with_ack("join_room", {"roomName": room, "personName": "ben"})
        assert ack[0]["peers"] == [{"socketId": a.sid, "personName": "ann"}]
        check_ice_servers(ack[0]["iceServers"], b.sid)
        # only once per connection
        a.assert_none("ice_servers")
    finally:
        await a.close()
        await b.close()


async def test_no_ice_servers_without_configuration(server, clients):
    c = await clients.new("websocket")
    ack = await c.emit_with_ack("join_room", {"roomName": unique(), "personName": "x"})
    assert "iceServers" not in ack[0], ack
    await c.fence()
    c.assert_none("ice_servers")


async def test_stun_only(server_factory):
    s = server_factory("--stun-urls", f"{STUN_URL}, stun:s2.example:19302")
    c = await new_client(s.url)
    try:
        assert await c.expect("ice_servers") == [{"urls": [STUN_URL, "stun:s2.example:19302"]}]
    finally:
        await c.close()


# --------------------------------------------------------------------------------------------
# Allowed origins
# --------------------------------------------------------------------------------------------

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"
WS_HANDSHAKE = "/socket.io/?EIO=4&transport=websocket"
GOOD, EVIL = "http://good.example", "http://evil.example"


async def ws_upgrade_status(server, origin):
    """The HTTP status of a websocket upgrade with this Origin (101 when it opened)."""
    async with aiohttp.ClientSession() as s:
        try:
            async with s.ws_connect(server.url.replace("http", "ws") + WS_HANDSHAKE, origin=origin,
                                    timeout=aiohttp.ClientWSTimeout(ws_close=TIMEOUT)) as ws:
                msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
                assert msg.type == aiohttp.WSMsgType.TEXT and msg.data.startswith("0{"), msg
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status


async def test_allowed_origins(server_factory):
    s = server_factory("--allowed-origins", f"{GOOD},http://other.example")
    r = requests.get(s.url + HANDSHAKE, headers={"Origin": GOOD}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.text.startswith("0{"), r.text
    assert r.headers.get("Access-Control-Allow-Origin") == GOOD
    assert r.headers.get("Access-Control-Allow-Credentials") == "true"

    r = requests.get(s.url + HANDSHAKE, headers={"Origin": EVIL}, timeout=TIMEOUT)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["code"] == 3, r.text
    assert "Access-Control-Allow-Origin" not in r.headers
    r = requests.options(s.url + HANDSHAKE, headers={"Origin": EVIL, "Access-Control-Request-Method": "GET"},
                         timeout=TIMEOUT)
    assert r.status_code == 400 and "Access-Control-Allow-Origin" not in r.headers
    r = requests.options(s.url + HANDSHAKE, headers={"Origin": GOOD, "Access-Control-Request-Method": "GET"},
                         timeout=TIMEOUT)
    assert r.status_code in (200, 204) and r.headers.get("Access-Control-Allow-Origin") == GOOD

    # no Origin at all (not a browser): allowed
    r = requests.get(s.url + HANDSHAKE, timeout=TIMEOUT)
    assert r.status_code == 200

    assert await ws_upgrade_status(s, GOOD) == 101
    assert await ws_upgrade_status(s, EVIL) == 400

    # an allowed browser client works end to end
    c = Client(s.url, "websocket")
    await asyncio.wait_for(c.sio.connect(s.url, transports=["websocket"], headers={"Origin": GOOD},
                                         wait_timeout=TIMEOUT), TIMEOUT + 2)
    try:
        await c.join(unique())
    finally:
        await c.close()


async def test_any_origin_without_allowed_origins(server):
    # any origin, but never with credentials (issue 11, finding 12)
    r = requests.get(server.url + HANDSHAKE, headers={"Origin": EVIL}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers.get("Access-Control-Allow-Origin") == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers
    assert await ws_upgrade_status(server, EVIL) == 101


# --------------------------------------------------------------------------------------------
# Graceful drain with real clients behind a proxy
# --------------------------------------------------------------------------------------------

class FirstUpProxy:
    """A TCP proxy: each new connection goes to the first backend that accepts it (a load balancer
    with health by connect). `routes` records the backend index of every connection."""

    def __init__(self, backends):
        self.backends = backends  # [(host, port)]
        self.routes = []
        self.server = None
        self.tasks = set()
        self.writers = set()

    async def start(self):
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def _accept(self, reader, writer):
        self.writers.add(writer)
        for i, (host, port) in enumerate(self.backends):
            try:
                br, bw = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
            except (OSError, asyncio.TimeoutError, TimeoutError):
                continue
            break
        else:
            writer.close()
            return
        self.routes.append(i)
        self.writers.add(bw)
        up = asyncio.create_task(self._pipe(reader, bw))
        down = asyncio.create_task(self._pipe(br, writer))
        self.tasks.update((up, down))
        await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        for t in (up, down):
            t.cancel()
        for w in (writer, bw):
            w.close()

    @staticmethod
    async def _pipe(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass

    async def close(self):
        self.server.close()
        for w in list(self.writers):
            w.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class RejoiningClient(Client):
    """A Socket.IO client with reconnection on, that (re-)joins its room in its `connect` handler, as the
    demo page does."""

    def __init__(self, url, transport, room, name):
        super().__init__(url, transport, name)
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.1,
                                        reconnection_delay_max=0.5, randomization_factor=0.0)
        self.sio.on("*", self._on_any)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("connect", self._on_connect)
        self.room = room
        self.sids = []  # one per (re)connection
        self.disconnect_reasons = []
        self._own_joins = {}

    async def _on_connect(self):
        sid = self.sio.get_sid("/")
        self.sids.append(sid)
        await self.sio.emit("join_room", {"roomName": self.room, "personName": self.name})

    async def _on_disconnect(self, *args):
        self.disconnect_reasons.append(args[0] if args else None)
        await super()._on_disconnect(*args)

    async def _on_any(self, event, *args):
        payload = args[0] if len(args) == 1 else None
        if (event == "user_joined" and isinstance(payload, dict) and payload.get("socketId") in self.sids):
            self.log.append((event, payload))
            self._own_joins.setdefault(payload["socketId"], asyncio.Event()).set()
            return
        await super()._on_any(event, *args)

    async def wait_joined(self, generation, timeout=TIMEOUT):
        """Wait for connection number `generation` (0 = first) and its own user_joined."""
        deadline = time.monotonic() + timeout
        while len(self.sids) <= generation:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} ({self.transport}): connection #{generation} did not happen within "
                    f"{timeout}s; disconnected with reasons {self.disconnect_reasons}, "
                    f"reconnecting={self.sio._reconnect_task is not None}; log {self.log!r}")
            await asyncio.sleep(0.02)
        sid = self.sids[generation]
        ev = self._own_joins.setdefault(sid, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), max(0.1, deadline - time.monotonic()))
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"{self.name}: no own user_joined for {sid} in {self.room}; "
                                 f"log {self.log!r}") from None
        return sid

    async def close(self):
        try:
            await asyncio.wait_for(self.sio.shutdown(), 2)
        except Exception:
            pass
        await super().close()


DRAIN_MS = 3000


async def flush_room(room, senders, everyone):
    """Each sender sends a message to the room and every client waits for all of them. Redis keeps a
    publisher's order, so everything the senders' nodes published before has arrived too. Then every
    queue is emptied."""
    tokens = set()
    for sender in senders:
        token = f"flush-{uuid.uuid4().hex[:8]}"
        tokens.add(token)
        await sender.emit("message", {"roomName": room, "content": token})
    for c in everyone:
        seen = set()
        while not tokens <= seen:
            seen.add((await c.expect("message"))["content"])
    for c in everyone:
        c.queues.clear()


async def test_graceful_drain_with_real_clients(cluster_factory, cluster_clients):
    """Two nodes behind a proxy; SIGTERM n1: n1 stops taking connections at once (/readyz refused or
    503), its clients are disconnected, reconnect through the proxy to n2 and re-join; the room sees
    user_left for the old ids (once) and user_joined for the new ones; n1 exits 0 within the drain
    timeout. --node-timeout 1000 so that a second user_left (from n2 reaping n1's heartbeat) would show.

    python-socketio reconnects after a transport close, not after an Engine.IO CLOSE packet (its
    "server disconnect" is final); Node's engine.io closes a WebSocket without one."""
    args = ["--drain-timeout", str(DRAIN_MS), "--node-timeout", "1000"]
    c = cluster_factory("pattern", n=2, node_args={0: args, 1: args})
    n1, n2 = c[0], c[1]
    proxy = await FirstUpProxy([(n1.host, n1.port), (n2.host, n2.port)]).start()
    room = unique("drain")
    transport = "websocket"
    movers = [RejoiningClient(proxy.url, transport, room, name) for name in ("alice", "bob")]
    try:
        for m in movers:
            await asyncio.wait_for(m.sio.connect(proxy.url, transports=[transport], wait_timeout=TIMEOUT),
                                   TIMEOUT + 2)
            await m.wait_joined(0)
        assert set(proxy.routes) == {0}, f"first connections should all go to n1: {proxy.routes}"
        assert (await movers[0].expect("user_joined"))["socketId"] == movers[1].sids[0]
        carol = await cluster_clients.new(n2, "websocket", "carol", fence=False)
        ack = await carol.emit_with_ack("join_room", {"roomName": room, "personName": "carol"})
        assert {p["socketId"] for p in ack[0]["peers"]} == {m.sids[0] for m in movers}, ack
        # user_joined crosses nodes asynchronously: a message each way through Redis, then every
        # announcement of the set-up has arrived; start the drain with empty queues
        await flush_room(room, [movers[0], carol], movers + [carol])
        old = {m.name: m.sids[0] for m in movers}
        before_routes = len(proxy.routes)

        # --- SIGTERM n1
        n1.stopped = True  # on purpose: conftest's watcher must not call it a crash
        t0 = time.monotonic()
        n1.proc.send_signal(signal.SIGTERM)
        statuses = []
        while True:
            st = await http_status(n1.url, "/readyz", timeout=0.5)
            statuses.append(st)
            if st in (None, 503):
                break
            assert time.monotonic() - t0 < 1.0, f"n1 /readyz still {statuses} 1 s after SIGTERM"
            await asyncio.sleep(0.02)
        assert await http_status(n2.url, "/readyz") == 200

        # the room on n2 hears each old socket leave
        left = [await carol.expect("user_left") for _ in movers]
        assert sorted(left, key=lambda p: p["socketId"]) == sorted(
            [{"personName": m.name, "roomName": room, "socketId": old[m.name]} for m in movers],
            key=lambda p: p["socketId"])

        # n1 exits with 0 within the drain timeout (+1 s for the process to end)
        left_s = DRAIN_MS / 1000 + 1.0 - (time.monotonic() - t0)
        try:
            rc = await asyncio.wait_for(asyncio.to_thread(n1.proc.wait), max(0.1, left_s))
        except (asyncio.TimeoutError, TimeoutError):
            raise AssertionError(f"n1 still running {DRAIN_MS} ms (+1 s) after SIGTERM") from None
        assert rc == 0, f"n1 exited with {rc}"
        for m in movers:
            assert m.disconnect_reasons, f"{m.name} was not disconnected by the drain"

        # the movers come back through the proxy, now to n2, and re-join
        new = {}
        for m in movers:
            new[m.name] = await m.wait_joined(1, timeout=TIMEOUT)
            assert new[m.name] != old[m.name]
        assert proxy.routes[before_routes:] and set(proxy.routes[before_routes:]) == {1}, proxy.routes
        joined = [await carol.expect("user_joined") for _ in movers]
        assert sorted(joined, key=lambda p: p["socketId"]) == sorted(
            [{"personName": m.name, "roomName": room, "socketId": new[m.name]} for m in movers],
            key=lambda p: p["socketId"])

        # everyone on n2 now: messages flow, and nobody's leave is announced twice (n2 reaps n1 after
        # 1 s without heartbeat: its sockets are gone from presence already)
        await asyncio.sleep(1.8)
        await movers[0].emit("message", {"roomName": room, "content": "after the drain"})
        for who in (movers[0], movers[1], carol):
            assert (await who.expect("message"))["content"] == "after the drain"
        carol.assert_none("user_left", "user_joined")
        m2 = await scrape(n2.url)
        assert m2.value("signal_sessions") == 3
    finally:
        for m in movers:
            await m.close()
        await proxy.close()
