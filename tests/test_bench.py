"""Benchmarks run with tiny N and print the JSON they promise (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_ingest_benchmark_prints_its_json(redis_url: str) -> None:
    env = dict(os.environ, JOBPULSE_TEST_REDIS_URL=redis_url)
    out = subprocess.run([sys.executable, "-m", "bench.ingest", "--events", "500", "--queues", "5"],
                         env=env, capture_output=True, check=True, timeout=120).stdout
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["benchmark"] == "ingest" and result["events"] >= 500
    assert result["aggregator_events_per_s"] > 0 and result["raw_xrange_events_per_s"] > 0 and result["ratio"] > 0
