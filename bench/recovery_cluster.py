#!/usr/bin/env python3
"""The cost of connection state recovery across nodes (issue #13): the benchmark's cluster (2 signal-node with
--redis + one redis-server) under signal-bench's room broadcast load, with --recovery-window 0 (off: the classic
pub/sub adapter) and --recovery-window W (on: every broadcast goes through the Redis stream `socket.io-log#/#`,
each socket has a record in Redis), runs alternated, each on a fresh cluster.

Per run: CPU per delivery (utime+stime of both nodes and redis-server over the broadcast phase, from /proc, as
signal-bench's --watch measures it, divided by the deliveries), the load generator's own CPU, lost/duplicated
deliveries, and after the run Redis's memory: the stream's length and `MEMORY USAGE` (bytes per entry), the
recovery records left (tombstones of the ended sockets) and `used_memory`.

    python3 bench/recovery_cluster.py [--pairs 3] [--window 120] [--clients 200] [--rate 400] [--duration 10]

--clients 200 --rate 400 (rooms of 4) is bench/run.py's 1,600 deliveries/s load. Needs release builds of
signal-node and signal-bench (--bin-dir, default .build/release) and redis-server / redis-cli.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench_run  # noqa: E402  (bench/run.py: start_redis, node_command, wait_http, wait_quiet)

LOG_KEY = "socket.io-log#/#"
RECORD_PATTERN = "socket.io-recovery#/#*"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          timeout=30).stdout.strip()


def redis_memory(port):
    info = dict(line.split(":", 1) for line in redis_cli(port, "INFO", "memory").splitlines() if ":" in line)
    xlen = int(redis_cli(port, "XLEN", LOG_KEY) or 0)
    usage = redis_cli(port, "MEMORY", "USAGE", LOG_KEY, "SAMPLES", "0")
    records = [k for k in redis_cli(port, "--scan", "--pattern", RECORD_PATTERN).splitlines() if k]
    record_bytes = [int(redis_cli(port, "MEMORY", "USAGE", k, "SAMPLES", "0") or 0) for k in records[:50]]
    return dict(used_memory=int(info.get("used_memory", 0)), stream_entries=xlen,
                stream_bytes=int(usage) if usage.isdigit() else 0,
                stream_bytes_per_entry=(int(usage) / xlen) if usage.isdigit() and xlen else None,
                records=len(records),
                record_bytes_mean=(sum(record_bytes) / len(record_bytes)) if record_bytes else None)


def redis_counters(port):
    """Redis's own CPU (getrusage, µs precision, unlike /proc's 10 ms ticks) and its calls per command."""
    cpu = dict(line.split(":", 1) for line in redis_cli(port, "INFO", "cpu").splitlines() if ":" in line)
    calls = {}
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            stats = dict(f.split("=", 1) for f in fields.split(","))
            calls[name] = (int(stats["calls"]), float(stats["usec"]))
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls


def one_run(args, window, out_dir, n):
    rport = free_port()
    ports = [free_port(), free_port()]
    redis = bench_run.start_redis(rport)
    procs = {"redis": redis}
    logs = []
    try:
        url = f"redis://127.0.0.1:{rport}"
        used_memory_empty = redis_memory(rport)["used_memory"]
        for i, port in enumerate(ports, 1):
            cmd, env = bench_run.node_command("swift", args.bin_dir, port, url, i,
                                              extra=["--recovery-window", str(window)])
            log = open(os.path.join(out_dir, f"run{n}-w{window}-node{i}.log"), "w")
            logs.append(log)
            procs[f"node{i}"] = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        for port in ports:
            bench_run.wait_http(f"http://127.0.0.1:{port}/readyz")
        time.sleep(1.0)
        out = os.path.join(out_dir, f"run{n}-w{window}.json")
        cmd = [os.path.join(args.bin_dir, "signal-bench"), "--label", f"recovery-window {window}", "--json", out,
               "--phases", "connect,broadcast", "--clients", str(args.clients), "--rate", str(args.rate),
               "--duration", str(args.duration), "--threads", "1"]
        for name in ("node1", "node2", "redis"):
            cmd += ["--watch", f"{name}={procs[name].pid}"]
        for port in ports:
            cmd += ["--url", f"http://127.0.0.1:{port}"]
        cpu_before, calls_before = redis_counters(rport)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        cpu_after, calls_after = redis_counters(rport)
        if p.returncode != 0:
            print(p.stdout)
            raise RuntimeError(f"signal-bench failed ({p.returncode})")
        with open(out) as f:
            doc = json.load(f)
        phase = next(ph for ph in doc["phases"] if ph["phase"] == "broadcast")
        mem = redis_memory(rport)
        mem["used_memory_delta"] = mem["used_memory"] - used_memory_empty
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}) during the run")
        commands = {name: (calls - calls_before.get(name, (0, 0))[0], usec - calls_before.get(name, (0, 0))[1])
                    for name, (calls, usec) in calls_after.items()}
        return dict(redis_cpu_s_whole_run=cpu_after - cpu_before,
                    redis_commands_whole_run={k: v for k, v in commands.items() if v[0]},
                    window=window, deliveries=phase["deliveries"], expected=phase["expected_deliveries"],
                    lost=phase["lost"], duplicates=phase["duplicates"], reordered=phase["reordered"],
                    deliveries_per_s=phase["deliveries_per_s"], cpu_us_per_delivery=phase["cpu_us_per_event"],
                    cpu_us_by_process=phase["cpu_us_per_event_by_process"], cpu_ms=phase["cpu_ms"],
                    cpu_ms_loadgen=phase["cpu_ms_loadgen"], latency=phase["latency"], redis=mem)
    finally:
        for name in ("node1", "node2", "redis"):
            proc = procs.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=3, help="off/on pairs, alternated")
    ap.add_argument("--window", type=int, default=120, help="--recovery-window of the 'on' runs")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rate", type=float, default=400, help="room messages/s (rooms of 4: x4 deliveries)")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--bin-dir", default=os.path.join(bench_run.ROOT, ".build", "release"))
    ap.add_argument("--quiet-wait", type=float, default=30,
                    help="seconds to wait at most for the machine to be mostly idle before each run")
    ap.add_argument("--out", help="directory of the per-run JSON and logs (default: a temporary one)")
    ap.add_argument("--json", help="write all runs and the summary here")
    args = ap.parse_args()
    out_dir = args.out or tempfile.mkdtemp(prefix="recovery-cluster-")
    os.makedirs(out_dir, exist_ok=True)
    runs = []
    for pair in range(args.pairs):
        for window in (0, args.window):
            busy = bench_run.wait_quiet(args.quiet_wait)
            r = one_run(args, window, out_dir, pair)
            r["background_busy"] = busy
            runs.append(r)
            m = r["redis"]
            print(f"pair {pair + 1} window {window:>3}: {r['cpu_us_per_delivery']:.1f} µs CPU per delivery ("
                  + ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["cpu_us_by_process"].items()))
                  + f"), {r['deliveries']}/{r['expected']} delivered at {r['deliveries_per_s']:.0f}/s, "
                  f"lost {r['lost']} dup {r['duplicates']} reordered {r['reordered']}; load generator "
                  f"{r['cpu_ms_loadgen']:.0f} ms; machine {busy:.0%} busy before; Redis: stream "
                  f"{m['stream_entries']} entries, {m['stream_bytes']} B"
                  + (f" ({m['stream_bytes_per_entry']:.0f} B/entry)" if m["stream_bytes_per_entry"] else "")
                  + f", {m['records']} records"
                  + (f" (~{m['record_bytes_mean']:.0f} B each)" if m["record_bytes_mean"] else "")
                  + f", used_memory +{m['used_memory_delta'] / 1e6:.2f} MB", flush=True)
            top = sorted(r["redis_commands_whole_run"].items(), key=lambda kv: -kv[1][1])[:5]
            print(f"    redis-server over the whole run (connect included), from INFO: "
                  f"{r['redis_cpu_s_whole_run'] * 1e6 / r['deliveries']:.1f} µs CPU per delivery; commands (calls, "
                  f"µs in them per delivery): " + ", ".join(
                      f"{name} {calls} ({usec / r['deliveries']:.2f})" for name, (calls, usec) in top), flush=True)

    def mean(window, key):
        values = [r[key] for r in runs if r["window"] == window]
        return sum(values) / len(values)

    off, on = mean(0, "cpu_us_per_delivery"), mean(args.window, "cpu_us_per_delivery")
    by_process = {w: {k: sum(r["cpu_us_by_process"][k] for r in runs if r["window"] == w) / args.pairs
                      for k in ("node1", "node2", "redis")} for w in (0, args.window)}
    summary = dict(off_us=off, on_us=on, increase=on / off - 1, by_process=by_process)
    print(f"mean CPU per delivery: off {off:.1f} µs, on {on:.1f} µs: {100 * (on / off - 1):+.1f}% "
          f"(nodes {sum(by_process[0][k] for k in ('node1', 'node2')):.1f} → "
          f"{sum(by_process[args.window][k] for k in ('node1', 'node2')):.1f} µs, redis-server "
          f"{by_process[0]['redis']:.1f} → {by_process[args.window]['redis']:.1f} µs)")
    print(f"per-run JSON and logs in {out_dir}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(runs=runs, summary=summary, args=vars(args)), f, indent=1)


if __name__ == "__main__":
    main()
