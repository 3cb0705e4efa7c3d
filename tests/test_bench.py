"""Each benchmark runs with tiny N and prints the JSON it promises (no timing is asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

RUNS = {
    "ingest": (["--events", "500", "--queues", "5"],
               ["aggregator_events_per_s", "raw_xread_events_per_s", "ratio", "aggregator_rss_mb_peak"]),
    "emitter": (["--events", "2000"],
                ["emitter_events_per_s", "raw_xadd_events_per_s", "ratio", "call_us_p50", "call_us_p99"]),
    "freshness": (["--rate", "500", "--seconds", "1"], ["visible_ms_p50", "visible_ms_p99", "probes"]),
    "requests": (["--requests", "5", "--small-events", "300", "--big-events", "600", "--queue-counts", "10,100"],
                 ["cases"]),
    "young": (["--at", "3"], ["points"]),
    "cluster": (["--events", "500", "--processes", "1,2"], ["runs", "projection"]),
    "redis_instructions": (["--events", "2000", "--queues", "5"],
                           ["redis_instructions_per_event", "top_inclusive_per_event"]),
    "memory": (["--per-minute", "1", "--minute-days", "0.05", "--hour-days", "0.2"],
               ["bytes_per_queue", "bytes_per_queue_by_kind", "events"]),
}


def _run(name: str, args: list[str], redis_url: str) -> dict[str, Any]:
    env = dict(os.environ, JOBPULSE_TEST_REDIS_URL=redis_url)
    done = subprocess.run([sys.executable, "-m", f"bench.{name}", *args], env=env, capture_output=True, timeout=180)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("name", RUNS)
def test_benchmark_prints_its_json(name: str, redis_url: str) -> None:
    args, fields = RUNS[name]
    if name == "redis_instructions" and shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    result = _run(name, args, redis_url)
    assert result["benchmark"] == name and result["machine"]["cpus"]
    for field in fields:
        assert field in result, field
    if "ratio" in result:
        assert result["ratio"] > 0
    if name == "ingest":
        assert result["events"] >= 500
        assert result["redis_server"]["version"] and result["redis_server"]["hash_max_listpack_entries"] > 0
    if name == "redis_instructions":
        assert result["events"] >= 2000 and result["redis_instructions_per_event"] > 0
    if name == "freshness":
        assert result["probes"] >= 5 and result["visible_ms_p50"] > 0
    if name == "requests":
        cases = sorted(result["cases"])  # 10 queues, then 100 queues after the small and the big load
        assert len(cases) == 3 and cases[0].startswith("100_queues_") and cases[2].startswith("10_queues_")
        for figures in result["cases"].values():
            assert set(figures) == {"overview", "detailed", "trends_24h_hourly", "trivial"}
            assert all(f["rps"] > 0 and f["p99_ms"] >= f["p50_ms"] > 0 for f in figures.values())
    if name == "memory":
        assert result["bytes_per_queue"] == sum(result["bytes_per_queue_by_kind"].values()) > 0


def test_requests_heavy_mode_prints_its_json(redis_url: str) -> None:
    result = _run("requests", ["--mode", "heavy", "--small-events", "300", "--repeats", "1"], redis_url)
    assert result["benchmark"] == "requests-heavy" and result["queues"] == 1000
    for name, figures in result["requests"].items():
        assert figures["status"] in ([200], [422]), name
        assert figures["health_polls"] > 0 and figures["max_ms"] > 0
