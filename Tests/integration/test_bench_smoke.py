"""signal-bench against a real 2-node cluster, briefly: keeps the load generator working and shows, in CI, that
every room delivery and signal arrives exactly once and in order under load (--fail-on-loss)."""

import subprocess

import pytest

from cluster import cluster_factory  # noqa: F401  (fixture)
from conftest import SWIFT, swift_binary

pytestmark = pytest.mark.skipif(not SWIFT, reason="signal-bench is built with the Swift server")


def test_signal_bench_smoke_loses_nothing(cluster_factory):
    bench = swift_binary().parent / "signal-bench"
    if not bench.exists():
        pytest.fail(f"signal-bench not found next to signal-node ({bench})", pytrace=False)
    cl = cluster_factory("per-room", n=2, node_args={0: ["--event-rate", 100000, "--event-burst", 100000, "--address-event-rate", 0],
                                                    1: ["--event-rate", 100000, "--event-burst", 100000, "--address-event-rate", 0]})
    cmd = [str(bench), "--phases", "connect,broadcast,signal", "--clients", "40", "--rate", "200",
           "--duration", "2", "--signal-rate", "20", "--fail-on-loss"]
    for node in cl:
        cmd += ["--url", node.url]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"signal-bench failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    assert "lost" in result.stdout, result.stdout


def test_bench_runs_node_js_beside_us(tmp_path):
    """bench/run.py measures Node.js socket.io (../shared/anchors) and signal-node in one run with the same load
    generator, and bench/report.py puts them side by side with the ratio: a short curve point of each, nothing lost.
    Skipped (with the reason) where the team's shared folder or `node` is absent, as bench/run.py does."""
    import json
    import os
    import re
    import shutil
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    anchors = repo.parent / "shared" / "anchors"
    if not (anchors / "seed_node.js").exists() or not shutil.which("node"):
        pytest.skip(f"no Node.js peer here ({anchors} or `node` missing)")
    bin_dir = swift_binary().parent
    env = dict(os.environ, SIGNAL_BENCH_RESULTS=str(tmp_path))
    run = subprocess.run([sys.executable, str(repo / "bench" / "run.py"), "--impl", "swift,node", "--scenario", "curve",
                          "--curve-rates", "50", "--duration", "1", "--clients", "8", "--bin-dir", str(bin_dir),
                          "--quiet-wait", "0"], capture_output=True, text=True, timeout=240, env=env, cwd=repo)
    assert run.returncode == 0, f"bench/run.py failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    for impl in ("swift", "node"):
        doc = json.loads((tmp_path / f"{impl}-curve-50.json").read_text())
        b = next(p for p in doc["phases"] if p["phase"] == "broadcast")
        assert b["lost"] == 0 and b["deliveries_per_s"] > 0 and b["cpu_us_per_event"] > 0, (impl, b)
    rep = subprocess.run([sys.executable, str(repo / "bench" / "report.py"), "--no-plot", "--no-update"],
                         capture_output=True, text=True, timeout=60, env=env, cwd=repo)
    assert rep.returncode == 0, rep.stderr
    row = next(line for line in rep.stdout.splitlines() if line.startswith("| 200 |"))
    assert re.search(r"\| \d+\.\d\d× \| 0 / 0 / – \|$", row), row  # a measured ratio; nothing lost on either side
