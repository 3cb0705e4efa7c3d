"""`jobpulse top` against the demo: one frame with the queues at 80 and 200 columns; long names
shortened to fit; a clear error without an API."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import httpx
import pytest
from rich.console import Console

from aggregator.embedded import free_port
from aggregator.top import render, shorten


def _top(*args: str, columns: int = 160) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aggregator", "top", "--once", *args],
                          capture_output=True, text=True, timeout=60, env={"COLUMNS": str(columns), "PATH": ""})


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 200])
def test_top_prints_the_overview_and_every_queue_whole(demo_url: str, columns: int) -> None:
    done = _top("--url", demo_url, columns=columns)
    assert done.returncode == 0, done.stderr
    queues = [q["name"] for q in httpx.get(demo_url + "/api/stats/detailed").json()["data"]["queue_stats"]]
    lines = done.stdout.splitlines()
    assert queues and all(any(line.startswith(name + " ") for line in lines) for name in queues), done.stdout
    assert max(len(line) for line in lines) <= columns and "…" not in done.stdout, done.stdout
    (i,) = [n for n, line in enumerate(lines) if "p50/p95/p99" in line]
    assert re.search(r"[\d.–]+/[\d.–]+/[\d.–]+ m?s", lines[i + 1]), done.stdout  # one line, one unit
    for label in ("pending", "running", "workers", "lag"):
        assert label in lines[i]
    if columns >= 120:
        assert "throughput/min" in done.stdout and "completed" in done.stdout


def _overview() -> dict[str, object]:
    health = {"status": "healthy", "alerts": []}
    return {"system_health": health, "pending_jobs": 3, "running_jobs": 1, "overall_throughput": 12.5,
            "overall_error_rate": 0.05, "processing_time_ms": {"p50": 12.0, "p95": 40.0, "p99": 88.0},
            "active_workers": 2, "aggregator_lag_seconds": 0.1}


def _queue(name: str) -> dict[str, object]:
    return {"name": name, "pending": 1_234, "running": 56, "throughput_per_minute": 1_234.5, "error_rate": 0.123,
            "processing_time_ms": {"p95": 1_500.0}, "oldest_pending_age_seconds": 3_600, "completed_total": 1_234_567,
            "failed_total": 12_345}


def _text(width: int, names: list[str]) -> str:
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=False).print(render(_overview(), [_queue(n) for n in names],
                                                                      "http://x", width))
    return out.getvalue()


def test_long_names_are_shortened_in_the_middle_to_fit_80_columns() -> None:
    long = "billing." + "x" * 60 + ".refunds"
    text = _text(80, [long, "email"])
    assert max(len(line) for line in text.splitlines()) <= 80, text
    (row,) = [line for line in text.splitlines() if line.startswith("billing.")]
    assert "…" in row and row.split()[0].endswith(".refunds"), row
    assert "12/40/88 ms" in text  # the percentiles in one cell, one unit
    assert any(line.startswith("email ") for line in text.splitlines())
    assert long in _text(200, [long])  # whole when there is room


def test_shorten_keeps_both_ends() -> None:
    assert shorten("image_processing", 16) == "image_processing"
    assert shorten("image_processing", 9) == "imag…sing" and len(shorten("abcdefghijkl", 7)) == 7


def test_top_without_an_api_says_so() -> None:
    done = _top("--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1 and "cannot read" in done.stdout and "Traceback" not in done.stderr
