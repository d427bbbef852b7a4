#!/usr/bin/env python3
"""Counts per delivery (not times): syscalls, context switches and (optionally) instructions of each process of a
cluster (node1, node2, redis-server) during one signal-bench broadcast phase, for our signal-node and for Node.js
socket.io 4.8.1 + redis-adapter (from ../shared/anchors, as bench/run.py runs it). Counts do not depend on how busy
the machine is the way CPU time does, so they compare on a shared machine.

For each implementation and each --rates value: a fresh cluster (redis-server + 2 nodes), signal-bench connects
--clients (rooms of 4, members alternating over both nodes), and once every client has joined, `perf stat` is
attached to each process (all its threads) for the broadcast phase only:
  raw_syscalls:sys_enter (every syscall) and syscalls:sys_enter_<name> for the I/O, wait and lock calls,
  context-switches, cpu-migrations (software events; no PMU is needed),
and /proc/PID/task/*/status voluntary/nonvoluntary_ctxt_switches are read before and after as a cross-check.
Each count is divided by the deliveries signal-bench counted in the phase (all clients, both nodes): the rows of
one run add up to the cluster's cost per delivery.

--callgrind additionally runs node 1 of each cluster (--callgrind-impl) under `valgrind --tool=callgrind` at a small load (a few
thousand deliveries; valgrind runs it ~50x slower), zeroes the counters when the clients have joined and dumps
them when the phase ends: instructions (Ir) per delivery, and the top inclusive functions (callgrind_annotate).
The PMU counters (instructions:u) are not available in this VM; callgrind counts instructions in software. Valgrind
3.19 cannot read the DWARF 5 of a Swift 6 binary, so node 1 runs from a copy made with `objcopy --strip-debug`.

Usage: python3 bench/count.py [--impl swift,node] [--rates 400,1500] [--clients 200] [--duration 10] [--node-args "--threads 1"]
                              [--callgrind] [--callgrind-rate 50] [--callgrind-clients 40] [--callgrind-duration 20]
Needs: release builds of signal-node and signal-bench (--bin-dir), redis-server, perf (tracepoints: root or
perf_event_paranoid <= -1), valgrind for --callgrind, node + ../shared/anchors for the Node.js column.
"""

import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (bench/run.py: EVENT_LIMITS, node_anchor, wait_http)

ROOT = run.ROOT
SYSCALLS = ["read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg",
            "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "futex", "io_uring_enter"]
GROUPS = {  # columns of the table
    "recv": ["read", "readv", "recvfrom", "recvmsg"],
    "send": ["write", "writev", "sendto", "sendmsg"],
    "epoll": ["epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl"],
    "futex": ["futex"],
}
EVENTS = ["raw_syscalls:sys_enter", "context-switches", "cpu-migrations"] + [f"syscalls:sys_enter_{s}" for s in SYSCALLS]


def ctxt(pid):
    """(voluntary, nonvoluntary) context switches summed over the threads of pid."""
    v = n = 0
    for st in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(st) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        v += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        n += int(line.split()[1])
        except OSError:
            pass
    return v, n


def threads(pid):
    return len(glob.glob(f"/proc/{pid}/task/*"))


class Cluster:
    """redis-server + 2 nodes, as bench/run.py starts them; node 1 optionally under a wrapper (valgrind)."""

    def __init__(self, impl, bin_dir, base_port, log_dir, wrap1=None):
        self.impl, self.bin_dir, self.base_port, self.log_dir, self.wrap1 = impl, bin_dir, base_port, log_dir, wrap1
        self.redis_port = base_port
        self.node_args = []
        self.procs = {}

    def start(self):
        self.procs["redis"] = run.start_redis(self.redis_port)
        url = f"redis://127.0.0.1:{self.redis_port}"
        for n in (1, 2):
            cmd, env = run.node_command(self.impl, self.bin_dir, self.base_port + n, url, n, extra=self.node_args)
            if n == 1 and self.wrap1:
                if self.impl == "swift":
                    # valgrind 3.19 cannot read the DWARF 5 of Swift 6 binaries: node 1 runs a copy without the
                    # debug info (the symbol table stays, so callgrind still names the functions).
                    stripped = os.path.join(self.log_dir, "signal-node")
                    subprocess.run(["objcopy", "--strip-debug", cmd[0], stripped], check=True)
                    cmd[0] = stripped
                cmd = self.wrap1 + cmd
            log = open(os.path.join(self.log_dir, f"count-{self.impl}-node{n}.log"), "w")
            self.procs[f"node{n}"] = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        for n in (1, 2):
            path = "/socket.io/?EIO=4&transport=polling" if self.impl == "node" else "/readyz"
            run.wait_http(f"http://127.0.0.1:{self.base_port + n}{path}", timeout=120 if self.wrap1 else 20)
        time.sleep(1.0)
        return self

    def urls(self):
        return [f"http://127.0.0.1:{self.base_port + n}" for n in (1, 2)]

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def bench_cmd(bin_dir, cluster, tmp, clients, rate, duration):
    out = os.path.join(tmp, "bench.json")
    cmd = [os.path.join(bin_dir, "signal-bench"), "--label", "count", "--json", out, "--phases", "connect,broadcast",
           "--clients", str(clients), "--rate", str(rate), "--duration", str(duration), "--progress-interval", "0"]
    for u in cluster.urls():
        cmd += ["--url", u]
    return cmd, out


def run_bench_with(cmd, on_joined):
    """Runs signal-bench; calls on_joined() when its connect phase has ended (the 'connect:' line on stderr)."""
    print("$ " + " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd), flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = None
    for line in p.stderr:
        sys.stderr.write("  | " + line)
        if line.startswith("connect:") and state is None:
            state = on_joined()
    p.wait()
    if p.returncode != 0:
        raise RuntimeError(f"signal-bench failed ({p.returncode})")
    return state


def broadcast_result(path):
    with open(path) as f:
        doc = json.load(f)
    for ph in doc["phases"]:
        if ph.get("phase") == "broadcast":
            return ph
    raise RuntimeError("no broadcast phase in " + path)


def parse_perf(path):
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) < 3 or line.startswith("#"):
                continue
            try:
                counts[parts[2]] = int(float(parts[0]))
            except ValueError:
                counts[parts[2]] = None  # <not supported> / <not counted>
    return counts


def measure(args, impl, rate, port):
    tmp = tempfile.mkdtemp(prefix=f"count-{impl}-")
    cluster = Cluster(impl, args.bin_dir, port, tmp)
    cluster.node_args = args.node_args.split() if impl == "swift" else []
    try:
        cluster.start()
        cmd, out = bench_cmd(args.bin_dir, cluster, tmp, args.clients, rate, args.duration)
        pids = {name: p.pid for name, p in cluster.procs.items()}

        def joined():
            perfs = {}
            for name, pid in pids.items():
                f = os.path.join(tmp, f"perf-{name}.csv")
                perfs[name] = (subprocess.Popen(["perf", "stat", "-x,", "-o", f, "-e", ",".join(EVENTS), "-p", str(pid)],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), f)
            before = {name: ctxt(pid) for name, pid in pids.items()}
            return perfs, before

        perfs, before = run_bench_with(cmd, joined)
        after = {name: ctxt(pid) for name, pid in pids.items()}
        nthreads = {name: threads(pid) for name, pid in pids.items()}
        for name, (p, _) in perfs.items():
            p.send_signal(signal.SIGINT)
        for name, (p, _) in perfs.items():
            p.wait(timeout=20)
        ph = broadcast_result(out)
        deliveries = ph["deliveries"]
        lost = ph.get("lost", 0)
        rows = {}
        for name in ("node1", "node2", "redis"):
            c = parse_perf(perfs[name][1])
            row = {"threads": nthreads[name], "syscalls": c.get("raw_syscalls:sys_enter"),
                   "ctx": c.get("context-switches"), "migrations": c.get("cpu-migrations"),
                   "vol": after[name][0] - before[name][0], "nonvol": after[name][1] - before[name][1]}
            for g, names in GROUPS.items():
                row[g] = sum(c.get(f"syscalls:sys_enter_{s}") or 0 for s in names)
            row["by_syscall"] = {s: c.get(f"syscalls:sys_enter_{s}") for s in SYSCALLS if c.get(f"syscalls:sys_enter_{s}")}
            rows[name] = row
        return {"impl": impl, "rate": rate, "clients": args.clients, "duration": args.duration,
                "deliveries": deliveries, "messages": ph.get("messages_sent"), "lost": lost, "rows": rows,
                "command": " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd)}
    finally:
        cluster.stop()


def measure_callgrind(args, impl, port):
    tmp = tempfile.mkdtemp(prefix=f"count-callgrind-{impl}-")
    cg_out = os.path.join(tmp, "callgrind.out")
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg_out}.%p"]
    if impl == "node":
        wrap.append("--smc-check=all-non-file")  # V8 writes its JIT code at run time
    cluster = Cluster(impl, args.bin_dir, port, tmp, wrap1=wrap)
    try:
        cluster.start()
        cmd, out = bench_cmd(args.bin_dir, cluster, tmp, args.callgrind_clients, args.callgrind_rate,
                             args.callgrind_duration)
        pid = cluster.procs["node1"].pid

        def joined():
            subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True)
            return True

        run_bench_with(cmd, joined)
        time.sleep(1.0)
        subprocess.run(["callgrind_control", "-d", "broadcast", str(pid)], capture_output=True)
        ph = broadcast_result(out)
    finally:
        cluster.stop()
    dumps = sorted(f for f in glob.glob(cg_out + ".*") if not f.endswith(str(pid)))
    dump = [f for f in dumps if re.search(r"\.\d+\.\d+$", f)]
    dump = dump[0] if dump else None
    if not dump:
        raise RuntimeError(f"no callgrind dump in {tmp}: {dumps}")
    ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
                         capture_output=True, text=True).stdout
    total = None
    for line in ann.splitlines():
        m = re.match(r"\s*([\d,]+)\s.*PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
    top = []
    started = False
    for line in ann.splitlines():
        if "file:function" in line:
            started = True
            continue
        if started and line.strip():
            m = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(.*)", line)
            if m:
                top.append((int(m.group(1).replace(",", "")), m.group(3)))
    demangled = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(f for _, f in top),
                               capture_output=True, text=True).stdout.splitlines()
    if len(demangled) == len(top):
        top = [(ir, d) for (ir, _), d in zip(top, demangled)]
    return {"impl": impl, "deliveries": ph["deliveries"], "messages": ph.get("messages_sent"), "lost": ph.get("lost", 0),
            "ir_total": total, "top": top[:40], "dump": dump, "clients": args.callgrind_clients,
            "rate": args.callgrind_rate, "duration": args.callgrind_duration}


def print_table(results):
    print()
    print("| impl | offered deliveries/s | process | threads | syscalls / delivery | recv | send | epoll | futex "
          "| ctx switches / delivery | vol / nonvol (/proc) | migrations / delivery |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        d = max(1, r["deliveries"])
        tot = {k: 0 for k in ("syscalls", "recv", "send", "epoll", "futex", "ctx", "vol", "nonvol", "migrations")}
        for name in ("node1", "node2", "redis"):
            row = r["rows"][name]
            for k in tot:
                tot[k] += row[k] or 0
            print(f"| {r['impl']} | {r['rate'] * 4:g} | {name} | {row['threads']} | {row['syscalls'] / d:.2f} "
                  f"| {row['recv'] / d:.2f} | {row['send'] / d:.2f} | {row['epoll'] / d:.2f} | {row['futex'] / d:.2f} "
                  f"| {row['ctx'] / d:.2f} | {row['vol'] / d:.2f} / {row['nonvol'] / d:.2f} "
                  f"| {row['migrations'] / d:.3f} |")
        print(f"| {r['impl']} | {r['rate'] * 4:g} | **all** | | **{tot['syscalls'] / d:.2f}** | {tot['recv'] / d:.2f} "
              f"| {tot['send'] / d:.2f} | {tot['epoll'] / d:.2f} | {tot['futex'] / d:.2f} | **{tot['ctx'] / d:.2f}** "
              f"| {tot['vol'] / d:.2f} / {tot['nonvol'] / d:.2f} | {tot['migrations'] / d:.3f} |")
    print()
    for r in results:
        print(f"{r['impl']} at {r['rate']} msgs/s: {r['deliveries']} deliveries of {r['messages']} messages, "
              f"lost {r['lost']}; per syscall name, per delivery:")
        for name in ("node1", "node2", "redis"):
            d = max(1, r["deliveries"])
            bs = r["rows"][name]["by_syscall"]
            print(f"  {name}: " + ", ".join(f"{s} {v / d:.2f}" for s, v in sorted(bs.items(), key=lambda kv: -kv[1])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", default="swift,node")
    ap.add_argument("--rates", default="400", help="room messages per second (rooms of 4: x4 deliveries)")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, ".build", "release"))
    ap.add_argument("--callgrind", action="store_true", help="also instructions of our node 1 under callgrind")
    ap.add_argument("--callgrind-only", action="store_true")
    ap.add_argument("--callgrind-impl", default="swift,node")
    ap.add_argument("--callgrind-rate", type=float, default=50)
    ap.add_argument("--callgrind-clients", type=int, default=40)
    ap.add_argument("--callgrind-duration", type=float, default=20)
    ap.add_argument("--node-args", default="", help="extra signal-node arguments, e.g. '--threads 1'")
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()

    results, port = [], 24400
    if not args.callgrind_only:
        for impl in args.impl.split(","):
            if impl == "node":
                _, why = run.node_anchor()
                if why:
                    print(f"Node.js skipped: {why}")
                    continue
            for rate in (float(x) for x in args.rates.split(",")):
                results.append(measure(args, impl, rate, port))
                port += 10
        print_table(results)
    cgs = []
    for impl in (args.callgrind_impl.split(",") if args.callgrind or args.callgrind_only else []):
        try:
            cg = measure_callgrind(args, impl, port)
        except RuntimeError as e:
            # signal-node: valgrind 3.19 dies at start-up (internal SIGSEGV) even on the copy without DWARF
            print(f"\ncallgrind, {impl} node 1: not measured ({e}); see the node's log in the directory above")
            port += 10
            continue
        port += 10
        cgs.append(cg)
        d = max(1, cg["deliveries"])
        print()
        print(f"callgrind, {impl} node 1, {cg['clients']} clients, {cg['rate']:g} msgs/s for {cg['duration']:g} s: "
              f"{cg['deliveries']} deliveries (cluster), lost {cg['lost']}; {cg['ir_total']:,} instructions "
              f"= {cg['ir_total'] / d:,.0f} per delivery ({cg['dump']})")
        print("top inclusive (Ir per delivery, % of node 1's total):")
        for ir, fn in cg["top"][:30 if impl == "swift" else 10]:
            print(f"  {ir / d:10,.0f}  {100 * ir / max(1, cg['ir_total']):5.1f}%  {fn[:160]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"counts": results, "callgrind": cgs}, f, indent=1)


if __name__ == "__main__":
    main()
