#!/usr/bin/env python3
"""Benchmark run: our cluster (2 signal-node + redis-server), a Node.js cluster (2 processes of the seed's server on
socket.io 4.8.1 + @socket.io/redis-adapter 8.2.1, from ../shared/anchors, + redis-server) and a python-socketio
cluster (2 nodes of Tests/integration/reference_server.py --redis (AsyncRedisManager) + redis-server) under the
same load from signal-bench, one after the other on this machine. Writes bench/results/<impl>-<scenario>.json; then bench/report.py turns them into
BENCHMARKS.md figures and bench/results/plot.png.

Scenarios, each on a freshly started cluster (see /work/shared/notes/performance.md for the method):
  main     connect+join 200 clients at 200/s (rooms of 4, members alternating over both nodes), 10 s silent
           (the servers' CPU without events), broadcast
           400 msgs/s for 10 s, saturation (closed loop) for 10 s, offer/answer/ICE at 100 rounds/s for 10 s
  idle     idle WebSocket connections to node 1, each joined to a room: RSS of node 1 at each count
  connect  connect+join 2,000 clients as fast as they go (64 handshakes in flight): the connect+join rate
  fanout   rooms hosted entirely on one node (layout local), 400 msgs/s: bytes each node receives from Redis
           (ours: --redis-mode pattern and per-room)
  curve    connect+join 200 clients, then room broadcast at each offered load of --curve-rates (messages/s; rooms
           of 4, so 4 deliveries each: 400 = 1,600 deliveries/s, 1500 = 6,000/s), one cluster, 10 s each:
           CPU per delivery against offered load

The Node.js cluster needs ../shared/anchors (the team's shared folder: the node_modules tarball and seed_node.js)
and `node`; where either is missing it is skipped with a message, and the report says so.

Usage: python3 bench/run.py [--impl swift,node,python] [--scenario main,connect,idle,fanout,curve]
                            [--idle-counts 1000,5000,10000] [--curve-rates 100,400,800,1500]
Needs: release builds of signal-node and signal-bench (--bin-dir), redis-server, python-socketio, redis (PyPI).
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE_SERVER = os.path.join(os.path.dirname(HERE), "Tests", "integration", "reference_server.py")
ROOT = os.path.dirname(HERE)
RESULTS = os.environ.get("SIGNAL_BENCH_RESULTS", os.path.join(HERE, "results"))
ANCHORS = os.environ.get("SIGNAL_ANCHORS_DIR", os.path.join(os.path.dirname(ROOT), "shared", "anchors"))
NODE_MODULES = os.path.join(ROOT, ".build-anchors")

# Every bench client comes from 127.0.0.1: per-socket and per-address limits off.
EVENT_LIMITS = ["--event-rate", "1000000", "--event-burst", "1000000",
                "--handshake-rate", "0", "--max-tcp-connections-per-address", "0",
                "--address-event-rate", "0"]


def node_anchor():
    """The Node.js peer: (seed_node.js, node_modules dir), unpacking the tarball once; or a reason it is absent."""
    seed = os.path.join(ANCHORS, "seed_node.js")
    tarball = os.path.join(ANCHORS, "node-socketio-4.8.1.tgz")
    if not shutil.which("node"):
        return None, "`node` is not installed"
    if not (os.path.exists(seed) and os.path.exists(tarball)):
        return None, f"{ANCHORS} (seed_node.js and node-socketio-4.8.1.tgz) is absent: it is the team's shared folder"
    marker = os.path.join(NODE_MODULES, "node_modules", "socket.io", "package.json")
    if not os.path.exists(marker):
        os.makedirs(NODE_MODULES, exist_ok=True)
        subprocess.run(["tar", "-xzf", tarball, "-C", NODE_MODULES], check=True)
    return (seed, NODE_MODULES), None


def start_redis(port):
    """A private redis-server on 127.0.0.1:port (no persistence), once it answers PING."""
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
        if time.time() > end:
            raise RuntimeError("redis did not start")
        time.sleep(0.05)
    return proc


def node_command(impl, bin_dir, port, redis_url, n, mode="pattern", extra=()):
    """Command line and environment of cluster node n of `impl` (swift, node or python) on `port`."""
    if impl == "swift":
        cmd = [os.path.join(bin_dir, "signal-node"), "--host", "127.0.0.1", "--port", str(port),
               "--redis", redis_url, "--redis-mode", mode, "--node-id", f"n{n}", "--ice-event", "underscore",
               "--log-level", "warning", *EVENT_LIMITS, *extra]
    elif impl == "node":
        (seed, _), _ = node_anchor()
        cmd = ["node", seed, "--host", "127.0.0.1", "--port", str(port), "--redis", redis_url, "--quiet"]
    else:
        cmd = [sys.executable, REFERENCE_SERVER, "--host", "127.0.0.1",
               "--port", str(port), "--redis", redis_url, "--ice-event", "underscore"]
    env = dict(os.environ, SIO_NODE_MODULES_DIR=NODE_MODULES) if impl == "node" else None
    return cmd, env


def wait_http(url, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


class Cluster:
    def __init__(self, impl, redis_port, base_port, bin_dir, mode="pattern", log_dir=RESULTS):
        self.impl, self.redis_port, self.base_port, self.bin_dir, self.mode = impl, redis_port, base_port, bin_dir, mode
        self.procs = {}
        self.log_dir = log_dir

    def start(self):
        for port in (self.redis_port, self.base_port + 1, self.base_port + 2):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    raise RuntimeError(f"port {port} is already in use")
        self.procs["redis"] = start_redis(self.redis_port)
        url = f"redis://127.0.0.1:{self.redis_port}"
        for n in (1, 2):
            log = open(os.path.join(self.log_dir, f"{self.impl}-node{n}.log"), "w")
            cmd, env = node_command(self.impl, self.bin_dir, self.base_port + n, url, n, mode=self.mode)
            self.procs[f"node{n}"] = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        for n in (1, 2):
            # The seed has no /healthz: any answer of the Engine.IO endpoint says it is listening.
            path = "/socket.io/?EIO=4&transport=polling" if self.impl == "node" else "/healthz"
            wait_http(f"http://127.0.0.1:{self.base_port + n}{path}")
            if self.impl == "swift":
                wait_http(f"http://127.0.0.1:{self.base_port + n}/readyz")
        time.sleep(1.0)
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{self.impl} {name} exited ({p.returncode})")
        return self

    def urls(self):
        return [f"http://127.0.0.1:{self.base_port + n}" for n in (1, 2)]

    def watch_args(self):
        out = []
        for name, p in self.procs.items():
            out += ["--watch", f"{name}={p.pid}"]
        return out + ["--redis-port", str(self.redis_port)]

    def stop(self):
        for name in ("node1", "node2", "redis"):
            p = self.procs.get(name)
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = {}


def cpu_busy(seconds=2.0):
    """Fraction of the machine's CPU busy over `seconds` (from /proc/stat)."""
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = read()
    time.sleep(seconds)
    t1, i1 = read()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(max_wait, threshold=0.25):
    """Other work shares this machine: wait (up to max_wait s) until it is mostly idle, return the busy share."""
    end = time.time() + max_wait
    busy = cpu_busy()
    while busy > threshold and time.time() < end:
        print(f"machine {busy:.0%} busy with other work; waiting", flush=True)
        time.sleep(5)
        busy = cpu_busy()
    return busy


def bench(bin_dir, cluster, label, out, extra, background=None):
    cmd = [os.path.join(bin_dir, "signal-bench"), "--label", label, "--json", out, *cluster.watch_args()]
    for u in cluster.urls():
        cmd += ["--url", u]
    cmd += extra
    print("$ " + " ".join(cmd), flush=True)
    with open(out.replace(".json", ".txt"), "w") as txt:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        txt.write(p.stdout)
        print(p.stdout, flush=True)
    if p.returncode != 0:
        raise RuntimeError(f"signal-bench failed ({p.returncode})")
    with open(out) as f:
        doc = json.load(f)
    doc["background_busy"] = background
    doc["command"] = " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", default="swift,node,python")
    ap.add_argument("--scenario", default="main,connect,idle,fanout,curve")
    ap.add_argument("--curve-rates", default="100,400,800,1500",
                    help="offered loads of the curve scenario, room messages/s (x4 deliveries)")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, ".build", "release"))
    ap.add_argument("--idle-counts", default="1000,5000,10000")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rate", type=float, default=400)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--signal-rate", type=float, default=100)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="signal-bench event loop threads")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--quiet-wait", type=float, default=300,
                    help="seconds to wait at most for the machine to be idle before each scenario")
    args = ap.parse_args()

    os.makedirs(RESULTS, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers and signal-bench inherit it
    print(f"RLIMIT_NOFILE {hard}", flush=True)
    for tool in ("redis-server", "redis-cli", "ss"):
        if not shutil.which(tool):
            sys.exit(f"missing {tool}")

    # Unusual ports below the ephemeral range (32768+), where a client socket could take them first.
    ports = {"swift": (23391, 23100), "python": (23392, 23200), "node": (23393, 23300)}
    common = ["--clients", str(args.clients), "--rate", str(args.rate), "--duration", str(args.duration),
              "--saturate-duration", str(args.duration), "--signal-rate", str(args.signal_rate),
              "--window", str(args.window), "--threads", str(args.threads)]
    for impl in args.impl.split(","):
        if impl == "node":
            _, why = node_anchor()
            if why:
                print(f"\n=== skipping Node.js socket.io: {why} ===", flush=True)
                continue
        rport, base = ports[impl]
        ice = ["--ice-event", "ice-candidate"] if impl == "node" else []  # the seed relays ICE as ice-candidate
        for scen in args.scenario.split(","):
            modes = ["pattern", "per-room"] if (scen == "fanout" and impl == "swift") else ["pattern"]
            for mode in modes:
                name = f"{impl}-{scen}" + (f"-{mode}" if scen == "fanout" and impl == "swift" else "") + args.tag
                out = os.path.join(RESULTS, name + ".json")
                print(f"\n=== {name} ===", flush=True)
                background = wait_quiet(args.quiet_wait)
                c = Cluster(impl, rport, base, args.bin_dir, mode=mode).start()
                try:
                    if scen == "main":
                        extra = ["--phases", "connect,baseline,broadcast,saturate,signal", *common]
                    elif scen == "idle":
                        extra = ["--phases", "idle", "--idle-counts", args.idle_counts, "--rss", "node1",
                                 "--idle-url", c.urls()[0], "--idle-connect-rate", "200", "--threads",
                                 str(args.threads)]
                    elif scen == "curve":
                        for rate in args.curve_rates.split(","):
                            out_r = os.path.join(RESULTS, f"{impl}-curve-{rate}{args.tag}.json")
                            opts = dict(zip(common[::2], common[1::2]), **{"--rate": rate})
                            extra = ["--phases", "connect,broadcast",
                                     *[x for kv in opts.items() for x in kv], *ice]
                            bench(args.bin_dir, c, f"{impl} at {rate} msgs/s", out_r, extra, background)
                        continue
                    elif scen == "connect":
                        extra = ["--phases", "connect", "--clients", "2000", "--connect-rate", "100000",
                                 "--max-connecting", "64", "--threads", str(args.threads)]
                    else:
                        extra = ["--phases", "broadcast", "--layout", "local", *common]
                    bench(args.bin_dir, c, f"{impl}" + (f" ({mode})" if impl == "swift" else ""), out,
                          extra + ice, background)
                finally:
                    c.stop()
                time.sleep(1)


if __name__ == "__main__":
    main()
