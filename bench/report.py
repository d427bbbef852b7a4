#!/usr/bin/env python3
"""Turns bench/results/*.json (from bench/run.py) into the figures of BENCHMARKS.md (between the
`<!-- figures:begin -->` and `<!-- figures:end -->` markers) and the plot bench/results/benchmarks.png.

Usage: python3 bench/report.py [--tag SUFFIX] [--no-plot]
"""

import argparse
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.environ.get("SIGNAL_BENCH_RESULTS", os.path.join(HERE, "results"))

# Node.js socket.io 4.8.1 + @socket.io/redis-adapter 8.2.1 on this machine kind (shared/notes/performance.md,
# median of 3 runs with a Python asyncio load generator): used only where this run has no Node.js cluster
# (bench/run.py skips it without ../shared/anchors); otherwise the Node.js figures are measured in the run.
NODE = {
    "cpu_delivery": 152, "cpu_signal": 730, "cpu_join": 1660, "kb_conn_5k": 12.8, "kb_conn_marginal": 9.8,
    "delivery_p50": 0.5, "delivery_p99": 7.7, "signal_p50": 0.7, "signal_p99": 6.2, "saturation": 13000,
}
PY_NOTES = {"cpu_delivery": 402, "cpu_signal": 1517, "cpu_join": 3010, "kb_conn_5k": 30.6,
            "delivery_p50": 1.1, "delivery_p99": 42, "signal_p50": 1.2, "signal_p99": 11.3, "saturation": 1900}
TARGET = {"cpu_delivery": 30, "cpu_signal": 146, "cpu_join": 550, "kb_conn_5k": 6.4,
          "delivery_p50": 0.25, "delivery_p99": 3.8, "signal_p50": 0.35, "signal_p99": 3.1}


def load(name):
    path = os.path.join(RESULTS, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def phase(doc, name):
    if not doc:
        return {}
    for p in doc["phases"]:
        if p["phase"] == name:
            return p
    return {}


def idle_step(doc, n):
    for s in phase(doc, "idle").get("steps", []):
        if s["connections"] == n:
            return s
    return {}


def figures(tag):
    out = {}
    for impl in ("swift", "python", "node"):
        m, i, c = load(f"{impl}-main{tag}"), load(f"{impl}-idle{tag}"), load(f"{impl}-connect{tag}")
        b, s, sig, con = phase(m, "broadcast"), phase(m, "saturate"), phase(m, "signal"), phase(m, "connect")
        f = {
            "baseline_ms_per_s": phase(m, "baseline").get("cpu_ms_per_s"),
            "baseline_by_process": phase(m, "baseline").get("cpu_ms", {}),
            "cpu_delivery": b.get("cpu_us_per_event"),
            "cpu_delivery_by_process": b.get("cpu_us_per_event_by_process", {}),
            "cpu_signal": sig.get("cpu_us_per_event"), "cpu_round": sig.get("cpu_us_per_round"),
            "cpu_join": idle_step(i, 1000).get("cpu_us_per_event"),
            "cpu_join_main": con.get("cpu_us_per_event"),
            "delivery_p50": b.get("latency", {}).get("p50_ms"), "delivery_p99": b.get("latency", {}).get("p99_ms"),
            "delivery_lat": b.get("latency", {}),
            "signal_p50": sig.get("latency", {}).get("p50_ms"), "signal_p99": sig.get("latency", {}).get("p99_ms"),
            "signal_lat": sig.get("latency", {}), "signal_rtt": sig.get("round_trip_latency", {}),
            "broadcast_rate": b.get("deliveries_per_s"), "broadcast_lost": b.get("lost"),
            "broadcast_errors": b.get("errors"), "signal_lost": sig.get("lost"), "signal_errors": sig.get("errors"),
            "signal_rate": sig.get("signals_per_s"),
            "saturation": s.get("deliveries_per_s"), "saturation_lat": s.get("latency", {}),
            "saturation_lost": s.get("lost"), "saturation_reordered": s.get("reordered"),
            "saturation_cpu": s.get("cpu_us_per_event"), "saturation_cpu_ms": s.get("cpu_ms", {}),
            "saturation_loadgen_ms": s.get("cpu_ms_loadgen"), "saturation_seconds": s.get("seconds"),
            "reordered": b.get("reordered"),
            "connect_rate": phase(c, "connect").get("joins_per_s"),
            "connect_cpu_sat": phase(c, "connect").get("cpu_us_per_event"),
            "connect_failed": phase(c, "connect").get("failed"),
            "connect_lat": phase(c, "connect").get("latency", {}),
            "join_lat": phase(i, "idle").get("latency", {}),
            "idle": phase(i, "idle").get("steps", []),
            "docs": {"main": m, "idle": i, "connect": c},
        }
        s5 = idle_step(i, 5000)
        f["kb_conn_5k"] = s5.get("kb_per_connection")
        s1 = idle_step(i, 1000)
        if s5 and s1 and "rss_kb" in s5:
            f["kb_conn_marginal"] = (s5["rss_kb"]["node1"] - s1["rss_kb"]["node1"]) / 4000
        out[impl] = f
    fan = {}
    for key, name in (("pattern", "swift-fanout-pattern"), ("per-room", "swift-fanout-per-room"),
                      ("python", "python-fanout")):
        p = phase(load(name + tag), "broadcast")
        if p:
            msgs = p["messages_sent"]
            rb = p.get("redis_bytes_received", {})
            fan[key] = {
                "messages": msgs, "node1": rb.get("node1"), "node2": rb.get("node2"),
                "bytes_per_msg": {k: v / msgs for k, v in rb.items() if k.startswith("node") and msgs},
                "cpu": p.get("cpu_us_per_event"), "lat": p.get("latency", {}), "lost": p.get("lost"),
            }
    out["fanout"] = fan
    curve = {}
    for name in sorted(os.listdir(RESULTS)) if os.path.isdir(RESULTS) else []:
        m_ = re.fullmatch(r"(swift|node|python)-curve-(\d+)" + re.escape(tag) + r"\.json", name)
        if not m_:
            continue
        b = phase(load(name[:-5]), "broadcast")
        if b:
            curve.setdefault(m_.group(1), {})[int(m_.group(2))] = {
                "offered": 4 * int(m_.group(2)), "rate": b.get("deliveries_per_s"), "cpu": b.get("cpu_us_per_event"),
                "p50": b.get("latency", {}).get("p50_ms"), "p99": b.get("latency", {}).get("p99_ms"),
                "lost": b.get("lost"), "reordered": b.get("reordered"),
                "by_process": b.get("cpu_us_per_event_by_process", {})}
    out["curve"] = curve
    return out


def node_reference(F):
    """The Node.js figures to compare with: measured in this run when it had a Node.js cluster, else the notes'."""
    nd = F.get("node") or {}
    if nd.get("cpu_delivery") is not None:
        return {k: nd.get(k) for k in NODE}, "Node.js socket.io 4.8.1 (this run)", True
    return dict(NODE), "Node.js socket.io (notes)", False


def median_of(F, impl, key):
    """Median of a figure over this run and its repeats (-r2, -r3: main scenario only)."""
    vals = [f[impl].get(key) for f in [F] + F.get("repeats", [])]
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    n = len(vals)
    return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2


def fmt(v, d=1):
    if v is None:
        return "–"
    if isinstance(v, (int,)) or (isinstance(v, float) and abs(v) >= 100):
        return f"{v:,.0f}"
    return f"{v:.{d}f}" if abs(v) >= 1 else f"{v:.{max(d, 2)}f}"


def ratio(a, b, lower_is_better=True):
    """How many times better a is than b."""
    if a in (None, 0) or b in (None, 0):
        return "–"
    r = (b / a) if lower_is_better else (a / b)
    return f"{r:.1f}×"


def meets(v, target, lower=True):
    if v is None:
        return "–"
    return "yes" if (v <= target if lower else v >= target) else "**no**"


def markdown(F):
    sw, py, fan = F["swift"], F["python"], F["fanout"]
    NR, node_label, live = node_reference(F)
    L = []
    if not live:
        L.append("*No Node.js cluster in this run (bench/run.py needs ../shared/anchors and `node`): the Node.js "
                 "column is from the notes, measured with another load generator.*\n")
    L.append("### Cost at the fixed offered load (the method of shared/notes/performance.md)\n")
    L.append("200 clients in rooms of 4 over 2 nodes (every room has members on both nodes), 400 room messages/s "
             "(1,600 deliveries/s) for 10 s; 100 offer→answer→ICE rounds/s between two members of a room on "
             "different nodes (1.5 KB SDP) for 10 s; idle connections on node 1, each joined to a room, ramped at "
             "200/s. CPU = utime+stime of both nodes and redis-server over the phase (drain included), divided by "
             "the events delivered. Latencies are measured at the client from the intended send time.\n")
    L.append(f"| metric | python-socketio (this run) | **signal-node (this run)** | {node_label} "
             "| target | vs Node.js | vs python-socketio | target met |")
    L.append("|---|---|---|---|---|---|---|---|")
    rows = [
        ("CPU µs per room delivery (nodes + Redis)", "cpu_delivery", True),
        ("CPU µs per cross-node signal (one relayed offer, answer or ICE)", "cpu_signal", True),
        ("CPU µs per connect+join at 200/s (1k ramp)", "cpu_join", True),
        ("KB of RSS per idle connection at 5k", "kb_conn_5k", True),
        ("delivery latency p50 at 1,600/s (ms)", "delivery_p50", True),
        ("delivery latency p99 at 1,600/s (ms)", "delivery_p99", True),
        ("signal latency p50, per hop (ms)", "signal_p50", True),
        ("signal latency p99, per hop (ms)", "signal_p99", True),
    ]
    for label, k, lower in rows:
        L.append(f"| {label} | {fmt(py.get(k), 2)} | **{fmt(sw.get(k), 2)}** | {fmt(NR[k], 2)} | "
                 f"{'≤' if lower else '≥'} {fmt(TARGET[k], 2)} | {ratio(sw.get(k), NR[k], lower)} | "
                 f"{ratio(sw.get(k), py.get(k), lower)} | {meets(sw.get(k), TARGET[k], lower)} |")
    L.append("")
    L.append(f"Also measured: CPU per offer→answer→ICE round {fmt(sw.get('cpu_round'))} µs (python-socketio "
             f"{fmt(py.get('cpu_round'))}); marginal RSS per idle connection from 1k to 5k "
             f"{fmt(sw.get('kb_conn_marginal'), 2)} KB (python-socketio {fmt(py.get('kb_conn_marginal'), 2)}, "
             f"Node.js {fmt(NR['kb_conn_marginal'], 2)}); CPU per connect+join of the 200 working clients "
             f"{fmt(sw.get('cpu_join_main'))} µs (python-socketio {fmt(py.get('cpu_join_main'))}; 1 s window, 10 ms "
             f"ticks). Breakdown of the CPU per room delivery, signal-node: "
             + ", ".join(f"{k} {fmt(v)}" for k, v in sorted(sw.get("cpu_delivery_by_process", {}).items()))
             + "; python-socketio: "
             + ", ".join(f"{k} {fmt(v)}" for k, v in sorted(py.get("cpu_delivery_by_process", {}).items())) + " µs.\n")
    if sw.get("baseline_ms_per_s") is not None:
        L.append(f"Without events (the 200 clients connected and silent for 10 s) the servers used "
                 f"{fmt(sw['baseline_ms_per_s'])} ms of CPU per second for signal-node (python-socketio "
                 f"{fmt(py.get('baseline_ms_per_s'))}): at 1,600 deliveries/s that alone is "
                 f"{fmt(sw['baseline_ms_per_s'] * 1000 / 1600)} µs per delivery "
                 f"({fmt((py.get('baseline_ms_per_s') or 0) * 1000 / 1600)}), included in the figures above as in the "
                 f"notes' method.\n")
    L.append("Every delivery and signal was counted: lost room deliveries at the fixed load: signal-node "
             f"{fmt(sw.get('broadcast_lost'))}, python-socketio {fmt(py.get('broadcast_lost'))}; lost signals: "
             f"{fmt(sw.get('signal_lost'))} / {fmt(py.get('signal_lost'))}; errors (refusals, failed joins, "
             f"unexpected closes): {fmt(sw.get('broadcast_errors'))}+{fmt(sw.get('signal_errors'))} / "
             f"{fmt(py.get('broadcast_errors'))}+{fmt(py.get('signal_errors'))}; deliveries out of the sender's "
             f"order: {fmt(sw.get('reordered'))} / {fmt(py.get('reordered'))}.\n")

    if not live:
      L.append("**Caveat on the Node.js column.** Node.js was measured by a different (Python asyncio) load generator. "
             "The same python-socketio 5.18 cluster that the notes give as "
             f"{PY_NOTES['cpu_delivery']} µs per delivery and {PY_NOTES['delivery_p50']} / {PY_NOTES['delivery_p99']} ms "
             f"measures {fmt(py.get('cpu_delivery'))} µs and {fmt(py.get('delivery_p50'), 2)} / "
             f"{fmt(py.get('delivery_p99'), 2)} ms under signal-bench, so the ratios against the notes' Node.js figures "
             "flatter us. Scaling Node.js by how much the load generator changed python-socketio's figures "
             "(Node.js estimate = python-socketio in this run × Node.js notes / python-socketio notes, with the median "
             "of this run and its repeats where there are repeats; a rough estimate that assumes both servers gain "
             "alike):\n")
      L.append("| metric | python-socketio: notes → this run (median of the runs) | Node.js estimate for this run "
               "| signal-node (median of the runs) | vs the estimate |")
      L.append("|---|---|---|---|---|")
    for label, k, lower in (rows + [("room deliveries/s at saturation", "saturation", False)]) if not live else []:
        pn, nn = PY_NOTES.get(k), NODE.get(k)
        pt, ours = median_of(F, "python", k), median_of(F, "swift", k)
        if None in (pn, pt, nn, ours):
            continue
        est = pt * nn / pn
        L.append(f"| {label} | {fmt(pn, 2)} → {fmt(pt, 2)} | {fmt(est, 2)} | {fmt(ours, 2)} | "
                 f"{ratio(ours, est, lower)} |")
    L.append("")
    busy = []
    for impl in ("swift", "node", "python"):
        for scen, doc in sorted(F[impl]["docs"].items()):
            if doc and doc.get("background_busy") is not None:
                busy.append(f"{impl}-{scen} {100 * doc['background_busy']:.0f}%")
    if busy:
        L.append("Share of the machine busy with other work, sampled for 2 s just before each scenario: "
                 + ", ".join(busy) + ".\n")
    L.append("### Throughput and rates (the issue's targets)\n")
    L.append(f"| metric | python-socketio (this run) | **signal-node (this run)** | {node_label} | target "
             "| vs Node.js | vs python-socketio |")
    L.append("|---|---|---|---|---|---|---|")
    L.append(f"| room deliveries/s at saturation (closed loop, 4 msgs in flight per client) | "
             f"{fmt(py.get('saturation'))} | **{fmt(sw.get('saturation'))}** | {fmt(NR['saturation'])} | "
             f"≥ 5× Node.js = {fmt(5 * NR['saturation'])} | {ratio(sw.get('saturation'), NR['saturation'], False)}"
             f" | {ratio(sw.get('saturation'), py.get('saturation'), False)} |")
    L.append(f"| signal latency p50 / p99 (ms) | {fmt(py.get('signal_p50'), 2)} / {fmt(py.get('signal_p99'), 2)} | "
             f"**{fmt(sw.get('signal_p50'), 2)} / {fmt(sw.get('signal_p99'), 2)}** | {NR['signal_p50']} / "
             f"{NR['signal_p99']} | ≤ half of Node.js | {ratio(sw.get('signal_p50'), NR['signal_p50'])} / "
             f"{ratio(sw.get('signal_p99'), NR['signal_p99'])} | {ratio(sw.get('signal_p50'), py.get('signal_p50'))}"
             f" / {ratio(sw.get('signal_p99'), py.get('signal_p99'))} |")
    node_join_cap = 1e6 / NODE["cpu_join"]
    nd_rate = (F.get("node") or {}).get("connect_rate")
    L.append(f"| connect+join rate, as fast as it goes (2,000 clients, 64 handshakes in flight) | "
             f"{fmt(py.get('connect_rate'))}/s | **{fmt(sw.get('connect_rate'))}/s** | "
             + (f"{fmt(nd_rate)}/s" if nd_rate else f"not measured (≈ {fmt(node_join_cap)}/s per core of CPU from "
                f"its 1,660 µs per join)") + " | ≥ 3× Node.js | "
             f"{ratio(sw.get('connect_rate'), nd_rate or node_join_cap, False)}"
             f"{'' if nd_rate else ' (vs the CPU bound)'} | "
             f"{ratio(sw.get('connect_rate'), py.get('connect_rate'), False)} |")
    L.append(f"| KB of RSS per idle WebSocket connection at 5k | {fmt(py.get('kb_conn_5k'), 2)} | "
             f"**{fmt(sw.get('kb_conn_5k'), 2)}** | {NR['kb_conn_5k']} | ≤ 8 | "
             f"{ratio(sw.get('kb_conn_5k'), NR['kb_conn_5k'])} | {ratio(sw.get('kb_conn_5k'), py.get('kb_conn_5k'))} |")
    L.append("")
    for impl, f in (("signal-node", sw), ("python-socketio", py)):
        cpu = f.get("saturation_cpu_ms") or {}
        secs = f.get("saturation_seconds") or 0
        lat = f.get("saturation_lat") or {}
        if secs:
            L.append(f"- Saturation, {impl}: {fmt(f.get('saturation'))} deliveries/s, latency p50 "
                     f"{fmt(lat.get('p50_ms'), 2)} / p99 {fmt(lat.get('p99_ms'), 2)} ms, lost {fmt(f.get('saturation_lost'))}, "
                     f"reordered {fmt(f.get('saturation_reordered'))}; CPU busy over {secs:.1f} s: "
                     + ", ".join(f"{k} {100 * v / 1000 / secs:.0f}%" for k, v in sorted(cpu.items()))
                     + f", signal-bench {100 * (f.get('saturation_loadgen_ms') or 0) / 1000 / secs:.0f}% of a core; "
                     f"{fmt(f.get('saturation_cpu'))} µs of server CPU per delivery.")
    L.append("")
    if F.get("before"):
        b = F["before"]["swift"]
        L.append(f"### signal-node before and after {F['before_label']}\n")
        L.append(f"The same scenarios run the same way against the server as of {F['before_rev']} (files "
                 f"`bench/results/*-{F['before_rev']}.json`), for the effect of {F['before_label']}:\n")
        L.append(f"| metric | {F['before_rev']} | this run | change |")
        L.append("|---|---|---|---|")
        for label, k, lower in rows + [("room deliveries/s at saturation", "saturation", False),
                                        ("connect+join rate (/s)", "connect_rate", False)]:
            x, y = b.get(k), sw.get(k)
            if x is None or y is None:
                continue
            L.append(f"| {label} | {fmt(x, 2)} | {fmt(y, 2)} | {100 * (y - x) / x:+.0f}% |")
        L.append("")
    reps = [t for t in ("-r2", "-r3") if load(f"swift-main{t}") and load(f"python-main{t}")]
    if reps:
        L.append("### Run-to-run spread (main scenario repeated, fresh clusters)\n")
        L.append("The figures above are from one run; the main scenario was run again "
                 f"{len(reps)} more time(s) the same way (`bench/run.py --scenario main --tag=-r2` …). "
                 "Each cell: the run above, then the repeats.\n")
        L.append("| metric | python-socketio | signal-node |")
        L.append("|---|---|---|")
        keys = [("CPU µs per room delivery", "broadcast", "cpu_us_per_event"),
                ("CPU µs per relayed signal", "signal", "cpu_us_per_event"),
                ("delivery latency p50 (ms)", "broadcast", ("latency", "p50_ms")),
                ("delivery latency p99 (ms)", "broadcast", ("latency", "p99_ms")),
                ("signal latency p50 (ms)", "signal", ("latency", "p50_ms")),
                ("signal latency p99 (ms)", "signal", ("latency", "p99_ms")),
                ("deliveries/s at saturation", "saturate", "deliveries_per_s"),
                ("lost at saturation", "saturate", "lost")]
        for label, ph, key in keys:
            cells = []
            for impl in ("python", "swift"):
                vals = []
                for t in [""] + reps:
                    p_ = phase(load(f"{impl}-main{t}"), ph)
                    v = p_.get(key[0], {}).get(key[1]) if isinstance(key, tuple) else p_.get(key)
                    vals.append(fmt(v, 2))
                cells.append(" / ".join(vals))
            L.append(f"| {label} | {cells[0]} | {cells[1]} |")
        L.append("")
    curve = F.get("curve") or {}
    if curve:
        L.append("### CPU per delivery against offered load\n")
        L.append("One cluster per server, 200 clients in rooms of 4 over 2 nodes, room broadcast for the phase's "
                 "duration at each offered load (`bench/run.py --scenario curve`); CPU of both nodes and redis-server "
                 "per delivery, and the ratio signal-node / Node.js (the issue's goal: ≤ 0.2× at 1,600/s, ≤ 0.25× at "
                 "6,000/s):\n")
        L.append("| offered deliveries/s | python-socketio µs (p99 ms) | Node.js µs (p99 ms) | **signal-node µs "
                 "(p99 ms)** | signal-node / Node.js | lost (ours / Node.js / python) |")
        L.append("|---|---|---|---|---|---|")
        for r in sorted(set().union(*[set(v) for v in curve.values()])):
            c = {impl: curve.get(impl, {}).get(r, {}) for impl in ("python", "node", "swift")}
            ours, nd = c["swift"].get("cpu"), c["node"].get("cpu")
            rr = f"{ours / nd:.2f}×" if ours and nd else "–"
            L.append(f"| {4 * r:,} | " + " | ".join(
                (("**" if impl == "swift" else "") + f"{fmt(c[impl].get('cpu'))} ({fmt(c[impl].get('p99'), 2)})"
                 + ("**" if impl == "swift" else "")) for impl in ("python", "node", "swift"))
                + f" | {rr} | " + " / ".join(fmt(c[i].get("lost")) for i in ("swift", "node", "python")) + " |")
        L.append("")
    L.append("### Memory per idle connection (RSS of node 1)\n")
    L.append("| connections | python-socketio KB/conn (marginal) | signal-node KB/conn (marginal) | signal-node RSS MB |")
    L.append("|---|---|---|---|")
    steps = {s["connections"]: s for s in sw.get("idle", [])}
    psteps = {s["connections"]: s for s in py.get("idle", [])}
    for n in sorted(set(steps) | set(psteps)):
        s, p = steps.get(n, {}), psteps.get(n, {})
        L.append(f"| {n:,} | {fmt(p.get('kb_per_connection'), 2)} ({fmt(p.get('kb_per_connection_marginal'), 2)}) | "
                 f"{fmt(s.get('kb_per_connection'), 2)} ({fmt(s.get('kb_per_connection_marginal'), 2)}) | "
                 f"{fmt(s.get('rss_kb', {}).get('node1', 0) / 1024, 1) if s else '–'} |")
    L.append("")
    L.append("### Fan-out: Redis traffic a node receives for rooms it does not host\n")
    L.append("Rooms placed whole on one node (`--layout local`: node 1 hosts half the rooms, node 2 the other half), "
             "400 msgs/s for 10 s. Bytes each node read from its Redis connections (`ss -tinp`), per room message "
             "published in the whole cluster:\n")
    L.append("| cluster | node 1 bytes/msg | node 2 bytes/msg | CPU µs per delivery | delivery p50 / p99 (ms) | lost |")
    L.append("|---|---|---|---|---|---|")
    for key, label in (("pattern", "signal-node, `--redis-mode pattern` (PSUBSCRIBE, like Node's adapter)"),
                       ("per-room", "signal-node, `--redis-mode per-room`"),
                       ("python", "python-socketio AsyncRedisManager (one channel)")):
        f = fan.get(key)
        if not f:
            continue
        b = f["bytes_per_msg"]
        L.append(f"| {label} | {fmt(b.get('node1'))} | {fmt(b.get('node2'))} | {fmt(f['cpu'])} | "
                 f"{fmt(f['lat'].get('p50_ms'), 2)} / {fmt(f['lat'].get('p99_ms'), 2)} | {fmt(f['lost'])} |")
    L.append("")
    return "\n".join(L)


def plot(F, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sw, py = F["swift"], F["python"]
    NR, node_label, live = node_reference(F)
    names = ["python-socketio", node_label, "signal-node"]
    colors = ["#4b8bbe", "#8cc84b", "#f05138"]
    fig, ax = plt.subplots(2, 3, figsize=(16, 9))
    fig.suptitle("signal-node vs python-socketio and " + node_label + " (same machine)")

    def bars(a, vals, title, ylabel, log=False):
        xs = range(len(vals))
        a.bar(xs, [v or 0 for v in vals], color=colors[: len(vals)])
        a.set_xticks(list(xs), names[: len(vals)], fontsize=8)
        a.set_title(title, fontsize=10)
        a.set_ylabel(ylabel)
        if log:
            a.set_yscale("log")
        for x, v in zip(xs, vals):
            if v:
                a.annotate(fmt(v, 2), (x, v), ha="center", va="bottom", fontsize=8)

    bars(ax[0][0], [py.get("saturation"), NR["saturation"], sw.get("saturation")],
         "Room deliveries/s at saturation", "deliveries/s")

    def plain(a):
        f = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
        a.yaxis.set_major_formatter(f)
        a.yaxis.set_minor_formatter(f)
        a.tick_params(axis="y", which="minor", labelsize=7)

    def pct(a, key, title):
        ps = [50, 90, 99, 99.9]
        keys = ["p50_ms", "p90_ms", "p99_ms", "p999_ms"]
        for f, name, c in ((py, names[0], colors[0]), (sw, names[2], colors[2])):
            lat = f.get(key) or {}
            if lat.get("count"):
                a.plot(range(4), [lat[k] for k in keys], marker="o", label=name, color=c)
        if key == "delivery_lat":
            a.plot([0, 2], [NR["delivery_p50"], NR["delivery_p99"]], "s--", color=colors[1], label=names[1])
        else:
            a.plot([0, 2], [NR["signal_p50"], NR["signal_p99"]], "s--", color=colors[1], label=names[1])
        a.set_xticks(range(4), [f"p{p:g}" for p in ps])
        a.set_yscale("log")
        plain(a)
        a.set_ylabel("ms")
        a.set_title(title, fontsize=10)
        a.legend(fontsize=8)

    pct(ax[0][1], "delivery_lat", "Delivery latency at 1,600 deliveries/s")
    pct(ax[0][2], "signal_lat", "Signal latency per hop at 100 rounds/s (1.5 KB SDP)")
    xs = range(3)
    w = 0.27
    metrics = [("cpu_delivery", "per delivery"), ("cpu_signal", "per signal"), ("cpu_join", "per connect+join")]
    a = ax[1][0]
    for j, (f, name) in enumerate(((py, names[0]), (NR, names[1]), (sw, names[2]))):
        vals = [f.get(k) or 0 for k, _ in metrics]
        a.bar([x + (j - 1) * w for x in xs], vals, w, label=name, color=colors[j])
    a.set_xticks(list(xs), [m for _, m in metrics])
    a.set_yscale("log")
    a.set_ylabel("CPU µs (nodes + Redis)")
    a.set_title("CPU cost at the fixed load", fontsize=10)
    a.legend(fontsize=8)
    a = ax[1][1]
    for f, name, c in ((py, names[0], colors[0]), (sw, names[2], colors[2])):
        st = f.get("idle") or []
        if st:
            a.plot([s["connections"] for s in st], [s.get("kb_per_connection", 0) for s in st], marker="o",
                   label=name, color=c)
    a.plot([5000], [NR["kb_conn_5k"]], "s", color=colors[1], label=names[1])
    a.axhline(8, ls=":", color="gray", label="target 8 KB")
    a.set_xlabel("idle connections on the node")
    a.set_ylabel("KB RSS per connection")
    a.set_title("Memory per idle WebSocket connection", fontsize=10)
    a.legend(fontsize=8)
    a = ax[1][2]
    fan = F["fanout"]
    labels, n1, n2 = [], [], []
    for key, label in (("python", "python-socketio"), ("pattern", "ours: pattern"), ("per-room", "ours: per-room")):
        if key in fan:
            labels.append(label)
            n1.append(fan[key]["bytes_per_msg"].get("node1", 0))
            n2.append(fan[key]["bytes_per_msg"].get("node2", 0))
    a.bar([x - 0.2 for x in range(len(labels))], n1, 0.4, label="node 1", color="#999999")
    a.bar([x + 0.2 for x in range(len(labels))], n2, 0.4, label="node 2", color="#555555")
    a.set_xticks(range(len(labels)), labels, fontsize=8)
    a.set_ylabel("bytes from Redis per cluster message")
    a.set_title("Fan-out: rooms hosted on one node", fontsize=10)
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def plot_curve(curve, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for impl, name, color in (("python", "python-socketio", "#4b8bbe"), ("node", "Node.js socket.io 4.8.1", "#8cc84b"),
                              ("swift", "signal-node", "#f05138")):
        pts = sorted((v["offered"], v["cpu"]) for v in curve.get(impl, {}).values() if v.get("cpu"))
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, color=color)
    ax.set_xlabel("offered room deliveries/s")
    ax.set_ylabel("CPU µs per delivery (nodes + Redis)")
    ax.set_yscale("log")
    ax.set_title("CPU per delivery against offered load (same run, same load generator)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tag", default="")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--no-update", action="store_true", help="print the figures; leave BENCHMARKS.md alone")
    ap.add_argument("--before", default="", help="tag of an earlier run of the same scenarios, e.g. -579e8ba")
    ap.add_argument("--before-label", default="the server changes since")
    args = ap.parse_args()
    F = figures(args.tag)
    F["repeats"] = [figures(args.tag + t) for t in ("-r2", "-r3") if load(f"swift-main{args.tag}{t}")]
    if args.before:
        F["before"] = figures(args.before)
        F["before_rev"] = args.before.lstrip("-")
        F["before_label"] = args.before_label
    md = markdown(F)
    with open(os.path.join(RESULTS, f"figures{args.tag}.md"), "w") as f:
        f.write(md + "\n")
    bm = os.path.join(ROOT, "BENCHMARKS.md")
    if os.path.exists(bm) and not args.no_update:
        text = open(bm).read()
        new = re.sub(r"(<!-- figures:begin -->\n).*?(<!-- figures:end -->)", lambda m: m.group(1) + md + "\n" + m.group(2),
                     text, flags=re.S)
        if new != text:
            open(bm, "w").write(new)
    if not args.no_plot:
        plot(F, os.path.join(RESULTS, f"benchmarks{args.tag}.png"))
        if F.get("curve"):
            plot_curve(F["curve"], os.path.join(RESULTS, f"curve{args.tag}.png"))
    print(md)


if __name__ == "__main__":
    main()
