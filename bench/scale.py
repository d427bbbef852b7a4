#!/usr/bin/env python3
"""Scale on Redis Cluster (issue 16): signal-node --redis-cluster (sharded adapter, dynamic mode: one shard channel
per room that has local members, plus the namespace channel) on a local Redis Cluster this script starts itself
(`redis-server --cluster-enabled yes` masters, no replicas; 3 masters joined with `redis-cli --cluster create`,
a single master given all 16,384 slots with CLUSTER ADDSLOTSRANGE).

Three experiments; the last two each on freshly started processes, driven by one signal-bench (rooms of --room-size, members
alternating over the node URLs: with 4+ nodes a room's members sit on 4 consecutive nodes, so each node's rooms
are local to a few nodes):

  slots    no processes: how evenly N rooms (shard channels socket.io#/#bench-<i>#) fall on 3 masters, from the
           slot hash (CRC16 % 16384, written here; checked against CLUSTER KEYSLOT whenever a cluster starts)
  shards   1 shard vs 3 shards, same load (--shard-nodes nodes, --shard-clients clients, --shard-rate msgs/s for
           --duration s), --reps alternations: per shard the SPUBLISH calls (INFO commandstats), bytes in and out
           (INFO stats total_net_input/output_bytes), shard channels (INFO pubsubshard_channels, against the rooms the slot hash puts there) and CPU
           (/proc/PID/stat utime+stime, as signal-bench --watch samples it); Redis CPU per delivery summed over
           the shards, also net of the shards' CPU while the clients are silent (cluster cron, heartbeats);
           deliveries and loss from signal-bench's exact per-member accounting. Then a closed-loop saturation
           phase: deliveries/s and each process's share of a core (signal-bench --watch), Redis CPU per message.
  grow     a growing cluster of --grow-nodes nodes (3,6,12,16) on 3 shards, --per-node clients on each node, each
           client sending --per-client-rate msgs/s: each node's inbound Redis bytes (kernel tcp_info
           bytes_received of the node's sockets to the shard ports, `ss -tinpH`, summed per pid) during the
           broadcast phase, against the messages of the node's own rooms (every message of a room with a local
           member reaches the node once on the room's shard channel, its own members' messages included); and
           during a silent phase after it; then offer/answer/ICE rounds (--per-node-signal-rate per node) between
           two members of a room on different nodes: a signal goes to one socket id, which in dynamic mode has no
           channel of its own and is published on the namespace channel, which every node subscribes to.

The sampling points come from signal-bench's stderr: sample A when it prints "connect: ..." (all clients joined,
before the broadcast starts), B at its first "baseline" progress line (broadcast drained, 1 s into the silent
phase), C at its last "baseline" progress line. Bytes and calls are counts, not times; CPU is time and depends
on how busy the machine is (the load average is printed with each run).

Usage: python3 bench/scale.py [--bin-dir /tmp/bin-pub] [--experiments slots,shards,grow] [--reps 2]
                              [--shard-nodes 4] [--shard-clients 200] [--shard-rate 400] [--duration 10]
                              [--saturate-duration 8]
                              [--grow-nodes 3,6,12,16] [--per-node 20] [--per-client-rate 1.0]
                              [--per-node-signal-rate 2]
Writes bench/results/scale-<experiment>-<date>.txt (the tables) and .json (every sample);
--render FILE.json prints a saved run's table again.
Needs: release signal-node and signal-bench in --bin-dir, redis-server/redis-cli 7+, ss (iproute2).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (bench/run.py: EVENT_LIMITS, wait_http, RESULTS)

CLK = os.sysconf("SC_CLK_TCK")


def free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10).stdout


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])  # utime, stime


def terminate(procs, timeout):
    """SIGTERM to each process still running, then wait for all; SIGKILL whichever outlives `timeout`."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class RedisCluster:
    """`shards` masters in cluster mode on base_port, base_port+1, ... (bus ports +10000)."""

    def __init__(self, shards, base_port):
        self.ports = [base_port + i for i in range(shards)]
        self.dir = tempfile.mkdtemp(prefix="scale-redis-")
        self.procs = []

    def start(self):
        for p in self.ports:
            if not (free(p) and free(p + 10000)):
                raise RuntimeError(f"port {p} or {p + 10000} in use")
        for p in self.ports:
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", str(p), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{p}.conf", "--cluster-node-timeout", "5000",
                 "--save", "", "--appendonly", "no", "--dir", self.dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
        for p in self.ports:
            self._wait(lambda: cli(p, "PING").strip() == "PONG", f"{p} PING")
        if len(self.ports) == 1:
            cli(self.ports[0], "CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        else:
            out = subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                                  "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True,
                                 timeout=60)
            if out.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create: {out.stdout}\n{out.stderr}")
        for p in self.ports:
            self._wait(lambda: "cluster_state:ok" in cli(p, "CLUSTER", "INFO"), f"{p} cluster_state:ok")
        check_slots(self.ports[0])
        time.sleep(1.0)
        return self

    def _wait(self, cond, what, timeout=30):
        end = time.time() + timeout
        while not cond():
            if time.time() > end:
                raise RuntimeError(f"timeout: {what}")
            time.sleep(0.1)

    def stop(self):
        terminate(self.procs, timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def shard_sample(port, pid):
    stats = cli(port, "INFO", "all")
    d = {"cpu_ticks": cpu_ticks(pid), "spublish": 0, "subscriber_conns": 0}
    for line in stats.splitlines():
        if line.startswith("cmdstat_spublish:"):
            d["spublish"] = int(re.search(r"calls=(\d+)", line).group(1))
        elif line.startswith("total_net_input_bytes:"):
            d["net_in"] = int(line.split(":")[1])
        elif line.startswith("total_net_output_bytes:"):
            d["net_out"] = int(line.split(":")[1])
        elif line.startswith("pubsubshard_channels:"):
            d["shard_channels"] = int(line.split(":")[1])
    return d


def node_bytes(ports):
    """pid -> bytes received on its TCP sockets to any of the Redis ports (tcp_info bytes_received)."""
    flt = " or ".join(f"dport = :{p}" for p in ports)
    out = subprocess.run(["ss", "-tinpH", f"( {flt} )"], capture_output=True, text=True).stdout
    res, pid = {}, None
    for line in out.splitlines():
        m = re.search(r"pid=(\d+)", line)
        if m:
            pid = int(m.group(1))
        m = re.search(r"bytes_received:(\d+)", line)
        if m and pid is not None:
            res[pid] = res.get(pid, 0) + int(m.group(1))
    return res


class Run:
    """A Redis Cluster of `shards` masters + `nodes` signal-nodes, one signal-bench run, samples A/B/C."""

    def __init__(self, a, shards, nodes, clients, rate, tag, saturate=False, signal_rate=0):
        self.a, self.shards, self.n, self.clients, self.rate, self.tag = a, shards, nodes, clients, rate, tag
        self.saturate, self.signal_rate = saturate, signal_rate
        self.redis = RedisCluster(shards, a.redis_port)
        self.nodes = []

    def sample(self):
        return {"t": time.time(),
                "shards": [shard_sample(p, pr.pid) for p, pr in zip(self.redis.ports, self.redis.procs)],
                "nodes": node_bytes(self.redis.ports),
                "node_cpu": {pr.pid: cpu_ticks(pr.pid) for pr in self.nodes}}

    def go(self):
        self.redis.start()
        seeds = ",".join(f"redis://127.0.0.1:{p}" for p in self.redis.ports)
        logdir = tempfile.mkdtemp(prefix="scale-nodes-")
        try:
            for i in range(self.n):
                port = self.a.node_port + i
                if not free(port):
                    raise RuntimeError(f"port {port} in use")
                log = open(os.path.join(logdir, f"n{i + 1}.log"), "w")
                self.nodes.append(subprocess.Popen(
                    [os.path.join(self.a.bin_dir, "signal-node"), "--host", "127.0.0.1", "--port", str(port),
                     "--redis-cluster", seeds, "--node-id", f"n{i + 1}", "--ice-event", "underscore",
                     "--log-level", "warning", "--threads", str(self.a.node_threads),
                     "--redis-cluster-mode", self.a.cluster_mode, *run.EVENT_LIMITS],
                    stdout=log, stderr=log))
            for i in range(self.n):
                run.wait_http(f"http://127.0.0.1:{self.a.node_port + i}/readyz", timeout=30)
            time.sleep(1.0)
            return self.bench()
        finally:
            terminate(self.nodes, timeout=15)
            # Every node warns that it lowered --max-tcp-connections to the descriptor limit; anything else is kept.
            bad = [f for f in sorted(os.listdir(logdir))
                   if any(line.strip() and "lowered to fit" not in line for line in open(os.path.join(logdir, f)))]
            if bad:
                print(f"node logs (non-empty) in {logdir}", flush=True)
            else:
                shutil.rmtree(logdir, ignore_errors=True)
            self.redis.stop()

    def bench(self):
        out = os.path.join(tempfile.gettempdir(), f"scale-bench-{os.getpid()}.json")
        cmd = [os.path.join(self.a.bin_dir, "signal-bench"), "--label", self.tag, "--json", out,
               "--phases", "connect,broadcast,baseline" + (",saturate" if self.saturate else "")
               + (",signal,baseline" if self.signal_rate else ""), "--signal-rate", str(self.signal_rate or 1),
               "--saturate-duration", str(self.a.saturate_duration), "--clients", str(self.clients), "--room-size",
               str(self.a.room_size), "--rate", str(self.rate), "--duration", str(self.a.duration),
               "--connect-rate", "400"]
        for i in range(self.n):
            cmd += ["--url", f"http://127.0.0.1:{self.a.node_port + i}"]
        for i, pr in enumerate(self.nodes):
            cmd += ["--watch", f"n{i + 1}={pr.pid}"]
        for p, pr in zip(self.redis.ports, self.redis.procs):
            cmd += ["--watch", f"shard{p}={pr.pid}"]
        print("$ " + " ".join(cmd), flush=True)
        load0 = loadavg()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        samples = {}
        groups = []  # [phase, [samples at its progress lines]] in order
        for line in p.stderr:
            m = re.match(r"\[.*\] (\w+) t=", line)
            if line.startswith("connect:"):
                samples["A"] = self.sample()
                print(line.rstrip(), flush=True)
            elif m and m.group(1) == "baseline":
                if not groups or groups[-1][0] != "baseline":
                    groups.append(["baseline", []])
                groups[-1][1].append(self.sample())
            elif m:
                if not groups or groups[-1][0] != m.group(1):
                    groups.append([m.group(1), []])
                if "t=5." in line:
                    print(line.rstrip(), flush=True)
            elif not line.startswith("["):
                print(line.rstrip(), flush=True)
        p.wait()
        # B: 1 s into the silent phase; C: its second-to-last progress line (signal-bench closes its clients right
        # after the last one, and the leaves would race with the sample).
        # E (with a signal phase): 1 s into the silent phase after it; the signal window is C..E (1 s silent
        # before, the drain after).
        baseline = [g[1] for g in groups if g[0] == "baseline"]
        if baseline and len(baseline[0]) >= 3:
            samples["B"], samples["C"] = baseline[0][0], baseline[0][-2]
        if self.signal_rate and len(baseline) >= 2:
            samples["E"] = baseline[1][0]
        need = {"A", "B", "C"} | ({"E"} if self.signal_rate else set())
        if p.returncode != 0 or not need <= samples.keys():
            raise RuntimeError(f"signal-bench failed ({p.returncode}) or samples missing: {sorted(samples)}")
        with open(out) as f:
            doc = json.load(f)
        os.unlink(out)
        phases = {}
        for r in doc["phases"]:
            phases.setdefault(r["phase"], r)  # the first baseline
        return {"tag": self.tag, "shards": self.redis.ports,
                "ranges": cluster_ranges(self.redis.ports[0], self.redis.ports), "nodes": [pr.pid for pr in self.nodes],
                "clients": self.clients, "rate": self.rate, "load_before": load0, "load_after": loadavg(),
                "samples": samples, "bench": phases, "command": " ".join(cmd)}


def crc16(data):
    """CRC-16/XMODEM (poly 0x1021, init 0), the hash of Redis Cluster key slots."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def slot(name):
    """The slot of a key or shard channel (a {hash tag} hashes alone, as Redis does)."""
    b = name.encode()
    i = b.find(b"{")
    if i >= 0:
        j = b.find(b"}", i + 1)
        if j > i + 1:
            b = b[i + 1:j]
    return crc16(b) % 16384


SPLIT3 = [(0, 5460), (5461, 10922), (10923, 16383)]  # `redis-cli --cluster create` with 3 masters


def shard_of(slot_no, ranges):
    """Index of the range list (one list of (first, last) per master) holding the slot."""
    for i, rs in enumerate(ranges):
        if any(a <= slot_no <= b for a, b in rs):
            return i
    raise ValueError(slot_no)


def cluster_ranges(port, ports):
    """[[(first, last), ...] for each of `ports`], from CLUSTER NODES."""
    by_port = {}
    for line in cli(port, "CLUSTER", "NODES").splitlines():
        f = line.split()
        p = int(f[1].split("@")[0].rsplit(":", 1)[1])
        by_port[p] = [tuple(int(x) for x in r.split("-")) if "-" in r else (int(r), int(r))
                      for r in f[8:] if not r.startswith("[")]
    return [by_port.get(p, []) for p in ports]


def room_channel(room, prefix="socket.io", nsp="/"):
    return f"{prefix}#{nsp}#{room}#"  # ShardedChannels.roomChannel


def slots_table(counts=(50, 500, 5000, 50000), ranges=None):
    """Deterministic: how evenly rooms bench-0..N-1 (and the same number of random-looking names) fall on the
    shards, each room being one shard channel: the busiest shard's share against the mean."""
    ranges = ranges or [[r] for r in SPLIT3]
    shards = len(ranges)
    lines = [f"{'rooms':>6} {'rooms per shard (bench-i)':>28} {'busiest / mean':>15}"]
    for n in counts:
        per = [0] * shards
        for i in range(n):
            per[shard_of(slot(room_channel(f"bench-{i}")), ranges)] += 1
        lines.append(f"{n:>6} {'/'.join(map(str, per)):>28} {max(per) / (n / shards):>15.3f}")
    return "\n".join(lines)


def check_slots(port):
    """Our CRC16 against the server's CLUSTER KEYSLOT, on a few room channels."""
    for i in (0, 1, 7, 49, 1234):
        name = room_channel(f"bench-{i}")
        got = int(cli(port, "CLUSTER", "KEYSLOT", name).strip())
        if got != slot(name):
            raise RuntimeError(f"slot({name}) = {slot(name)}, server says {got}")


RS = 4  # room size, set from --room-size in main()


def shards_table(runs):
    lines = []
    hdr = (f"{'run':<10} {'shard':>6} {'chans':>6} {'rooms':>5} {'SPUBLISH':>9} {'MB in':>7} {'MB out':>7} {'CPU ms':>7}")
    summary = []
    for r in runs:
        A, B = r["samples"]["A"], r["samples"]["B"]
        br = r["bench"]["broadcast"]
        deliveries, lost = br["deliveries"], br["lost"] + br["duplicates"] + br["errors"]
        lines.append(hdr)
        tot_cpu = tot_pub = tot_in = tot_out = 0
        for i, port in enumerate(r["shards"]):
            a, b = A["shards"][i], B["shards"][i]
            cpu = (b["cpu_ticks"] - a["cpu_ticks"]) * 1000 / CLK
            pub = b["spublish"] - a["spublish"]
            bi, bo = b["net_in"] - a["net_in"], b["net_out"] - a["net_out"]
            tot_cpu += cpu
            tot_pub += pub
            tot_in += bi
            tot_out += bo
            rooms = (r["clients"] + RS - 1) // RS
            pred = sum(1 for k in range(rooms) if shard_of(slot(room_channel(f"bench-{k}")), r["ranges"]) == i)
            lines.append(f"{r['tag']:<10} {port:>6} {a.get('shard_channels', 0):>6} {pred:>5} {pub:>9} {bi / 1e6:>7.2f} "
                         f"{bo / 1e6:>7.2f} {cpu:>7.0f}")
        node_cpu = sum(B["node_cpu"][pid] - A["node_cpu"][pid] for pid in r["nodes"]) * 1000 / CLK
        # Redis CPU with the clients connected and silent (B..C): cluster cron, heartbeats; ms per second, summed.
        C = r["samples"]["C"]
        idle = sum(c["cpu_ticks"] - b["cpu_ticks"] for b, c in zip(B["shards"], C["shards"])) * 1000 / CLK
        idle_rate = idle / (C["t"] - B["t"])
        net = tot_cpu - idle_rate * (B["t"] - A["t"])
        summary.append((r["tag"], deliveries, lost, tot_pub, tot_in, tot_out, tot_cpu, net, idle_rate,
                        node_cpu, r["load_before"]))
        lines.append("")
    lines.append(f"{'run':<10} {'deliveries':>10} {'lost':>5} {'SPUBLISH':>9} {'B in/deliv':>10} "
                 f"{'B out/deliv':>11} {'Redis us/deliv':>14} {'idle ms/s':>9} {'net us/deliv':>12} "
                 f"{'nodes us/deliv':>14} {'load avg before':>16}")
    for tag, d, lost, pub, bi, bo, cpu, net, idle_rate, ncpu, load in summary:
        lines.append(f"{tag:<10} {d:>10} {lost:>5} {pub:>9} {bi / max(1, d):>10.1f} {bo / max(1, d):>11.1f} "
                     f"{cpu * 1000 / max(1, d):>14.2f} {idle_rate:>9.1f} {net * 1000 / max(1, d):>12.2f} "
                     f"{ncpu * 1000 / max(1, d):>14.2f} {load:>16}")
    sat = [r for r in runs if "saturate" in r["bench"]]
    if sat:
        lines.append("")
        lines.append("saturation (closed loop, 4 msgs in flight per client; the 2 cores are shared by all processes):")
        lines.append(f"{'run':<10} {'deliveries/s':>12} {'lost':>5} {'nodes % core':>12} {'shards % core':>18} "
                     f"{'Redis us/msg':>12} {'nodes us/deliv':>14}")
        for r in sat:
            st = r["bench"]["saturate"]
            secs = st["seconds"]
            cpu = st["cpu_ms"]
            nodes = sum(v for k, v in cpu.items() if not k.startswith("shard"))
            shards = [cpu[f"shard{p}"] for p in r["shards"]]
            lines.append(f"{r['tag']:<10} {st['deliveries_per_s']:>12.0f} "
                         f"{st['lost'] + st['duplicates'] + st['errors']:>5} {nodes / secs / 10:>12.0f} "
                         f"{'/'.join(f'{x / secs / 10:.0f}' for x in shards):>18} "
                         f"{sum(shards) * 1000 / max(1, st['messages_sent']):>12.2f} "
                         f"{nodes * 1000 / max(1, st['deliveries']):>14.2f}")
    return "\n".join(lines)


def grow_table(runs, a):
    lines = [f"{'nodes':>5} {'clients':>7} {'deliveries':>10} {'lost':>5} {'cluster msgs/s':>14} {'room msgs/node/s':>16} "
             f"{'in B/s/node min..max':>21} {'in B/room msg':>13} {'idle in B/s/node':>16} "
             f"{'SPUBLISH/shard':>20} {'load avg':>15}"]
    for r in runs:
        A, B, C = r["samples"]["A"], r["samples"]["B"], r["samples"]["C"]
        br = r["bench"]["broadcast"]
        secs = br["active_seconds"]
        n = len(r["nodes"])
        # Messages of the rooms with a member on node k (each reaches node k once, on the room's shard channel):
        # messages_sent x (members of those rooms) / clients, as every client sends at the same rate.
        rooms_k = [set() for _ in range(n)]
        for i in range(r["clients"]):
            rooms_k[i % n].add(i // a.room_size)
        sent = br["messages_sent"]
        msgs_k = [sent * sum(min(a.room_size, r["clients"] - room * a.room_size) for room in rk) / r["clients"]
                  for rk in rooms_k]
        ins, idles = [], []
        for k, pid in enumerate(r["nodes"]):
            bi = B["nodes"].get(pid, 0) - A["nodes"].get(pid, 0)
            idle = (C["nodes"].get(pid, 0) - B["nodes"].get(pid, 0)) / (C["t"] - B["t"])
            ins.append(bi / secs)
            idles.append(idle)
        per_msg = [(B["nodes"].get(pid, 0) - A["nodes"].get(pid, 0)) / max(1, msgs_k[k])
                   for k, pid in enumerate(r["nodes"])]
        pubs = [B["shards"][i]["spublish"] - A["shards"][i]["spublish"] for i in range(len(r["shards"]))]
        lines.append(f"{n:>5} {r['clients']:>7} {br['deliveries']:>10} {br['lost'] + br['duplicates'] + br['errors']:>5} "
                     f"{sent / secs:>14.1f} "
                     f"{sum(msgs_k) / n / secs:>16.1f} {min(ins):>10.0f}..{max(ins):<10.0f} "
                     f"{sum(per_msg) / n:>13.1f} {sum(idles) / n:>16.1f} {'/'.join(map(str, pubs)):>20} "
                     f"{r['load_before']:>15}")
    sig = [r for r in runs if "E" in r["samples"]]
    if sig:
        lines.append("")
        where = ("the target socket's own channel, spread over the shards" if getattr(a, "cluster_mode", "dynamic") == "dynamic-private"
                 else "the namespace channel, on one shard")
        lines.append(f"signal phase (offer/answer/ICE to one socket id: {where}):")
        lines.append(f"{'nodes':>5} {'signals':>7} {'lost':>5} {'signals/s':>9} {'in B/s/node min..max':>21} "
                     f"{'in B/node per cluster signal':>28} {'SPUBLISH/shard':>20} {'nodes CPU us/signal':>19} "
                     f"{'busiest shard us/signal':>23}")
        for r in sig:
            C, E = r["samples"]["C"], r["samples"]["E"]
            sp = r["bench"]["signal"]
            secs = sp["active_seconds"]
            ins = [(E["nodes"].get(pid, 0) - C["nodes"].get(pid, 0)) for pid in r["nodes"]]
            pubs = [E["shards"][i]["spublish"] - C["shards"][i]["spublish"] for i in range(len(r["shards"]))]
            n_sig = sp["signals_relayed"]
            B = r["samples"]["B"]
            win, quiet = E["t"] - C["t"], C["t"] - B["t"]
            # CPU over C..E net of the silent rate of B..C (10 ms ticks: coarse at these rates).
            ncpu = sum(E["node_cpu"][pid] - C["node_cpu"][pid] - (C["node_cpu"][pid] - B["node_cpu"][pid]) * win / quiet
                       for pid in r["nodes"]) * 1000 / CLK
            busiest = max(range(len(pubs)), key=lambda i: pubs[i])
            e, c, b = E["shards"][busiest], C["shards"][busiest], B["shards"][busiest]
            scpu = (e["cpu_ticks"] - c["cpu_ticks"] - (c["cpu_ticks"] - b["cpu_ticks"]) * win / quiet) * 1000 / CLK
            lines.append(f"{len(r['nodes']):>5} {n_sig:>7} {sp['lost'] + sp['errors']:>5} {n_sig / secs:>9.1f} "
                         f"{min(ins) / secs:>10.0f}..{max(ins) / secs:<10.0f} {sum(ins) / len(ins) / max(1, n_sig):>28.1f} "
                         f"{'/'.join(map(str, pubs)):>20} {ncpu * 1000 / max(1, n_sig):>19.0f} "
                         f"{scpu * 1000 / max(1, n_sig):>23.0f}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default="/tmp/bin-pub")
    ap.add_argument("--experiments", default="slots,shards,grow")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--shard-nodes", type=int, default=4)
    ap.add_argument("--shard-clients", type=int, default=200)
    ap.add_argument("--shard-rate", type=float, default=400)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--saturate-duration", type=float, default=8, help="shards: saturation phase (0: none)")
    ap.add_argument("--render", help="print the table of a saved bench/results/scale-<exp>-*.json again")
    ap.add_argument("--room-size", type=int, default=4)
    ap.add_argument("--grow-nodes", default="3,6,12,16")
    ap.add_argument("--per-node", type=int, default=20)
    ap.add_argument("--per-client-rate", type=float, default=1.0)
    ap.add_argument("--per-node-signal-rate", type=float, default=2.0,
                    help="grow: offer/answer/ICE rounds per second per node (0: no signal phase)")
    ap.add_argument("--node-threads", type=int, default=1)
    ap.add_argument("--cluster-mode", default="dynamic", choices=["dynamic", "dynamic-private"],
                    help="the nodes' --redis-cluster-mode")
    ap.add_argument("--redis-port", type=int, default=17301)
    ap.add_argument("--node-port", type=int, default=17401)
    a = ap.parse_args()
    global RS
    RS = a.room_size
    if a.render:
        runs = json.load(open(a.render))
        for r in runs:  # JSON made the pid keys strings
            for smp in r["samples"].values():
                for k in ("nodes", "node_cpu"):
                    smp[k] = {int(pid): v for pid, v in smp[k].items()}
        print(shards_table(runs) if "scale-shards" in a.render else grow_table(runs, a))
        return
    os.makedirs(run.RESULTS, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M", time.gmtime())
    head = f"# nproc {os.cpu_count()}, load average at start {loadavg()}, node --threads {a.node_threads}, --redis-cluster-mode {a.cluster_mode}"
    for exp in a.experiments.split(","):
        runs = []
        if exp == "shards":
            for rep in range(a.reps):
                for shards in (1, 3):
                    runs.append(Run(a, shards, a.shard_nodes, a.shard_clients, a.shard_rate,
                                    f"{shards}sh-r{rep + 1}", saturate=a.saturate_duration > 0).go())
            table = shards_table(runs)
            desc = (f"# {a.shard_nodes} nodes, {a.shard_clients} clients in rooms of {a.room_size} (mixed), "
                    f"{a.shard_rate:g} msgs/s for {a.duration:g} s")
        elif exp == "grow":
            for n in [int(x) for x in a.grow_nodes.split(",")]:
                clients = n * a.per_node
                runs.append(Run(a, 3, n, clients, clients * a.per_client_rate, f"{n}nodes",
                                signal_rate=n * a.per_node_signal_rate).go())
            table = grow_table(runs, a)
            desc = (f"# 3 shards, {a.per_node} clients per node in rooms of {a.room_size} (mixed), "
                    f"{a.per_client_rate:g} msgs/s per client for {a.duration:g} s")
        elif exp == "slots":
            table = slots_table()
            desc = "# room channels socket.io#/#bench-<i># over 3 masters (slots 0-5460, 5461-10922, 10923-16383)"
        else:
            raise SystemExit(f"unknown experiment {exp}")
        text = f"{head}\n{desc}\n{table}\n"
        print(text, flush=True)
        base = os.path.join(run.RESULTS, f"scale-{exp}-{stamp}")
        with open(base + ".txt", "w") as f:
            f.write(text)
        with open(base + ".json", "w") as f:
            json.dump(runs, f, indent=1, default=str)


if __name__ == "__main__":
    main()
