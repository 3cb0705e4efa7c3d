"""`jobpulse top` against the demo: one frame with the queues; a clear error without an API."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from aggregator.embedded import free_port


def _top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aggregator", "top", "--once", *args],
                          capture_output=True, text=True, timeout=60, env={"COLUMNS": "160", "PATH": ""})


@pytest.mark.slow
def test_top_prints_the_overview_and_every_queue(demo_url: str) -> None:
    done = _top("--url", demo_url)
    assert done.returncode == 0, done.stderr
    queues = [q["name"] for q in httpx.get(demo_url + "/api/stats/detailed").json()["data"]["queue_stats"]]
    assert queues and all(name in done.stdout for name in queues)
    for label in ("pending", "running", "throughput/min", "error rate", "p50/p95/p99", "completed"):
        assert label in done.stdout


def test_top_without_an_api_says_so() -> None:
    done = _top("--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1 and "cannot read" in done.stdout and "Traceback" not in done.stderr
