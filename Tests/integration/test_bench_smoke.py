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
