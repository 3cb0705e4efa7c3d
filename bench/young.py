"""Rates on a young system: ``jobpulse serve --demo`` is started, and at 10, 30 and
90 s after start the overview's ``overall_throughput`` is compared with the
outcome rate measured independently from ``/metrics`` counter deltas over
the same span (the overview's ``window_seconds``, which on a young system
starts at its first data). Within 25 % is the target (DESIGN, windowed rates).

    python -m bench.young [--at 10,30,90]

Prints one JSON object (last line).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx

from aggregator.embedded import free_port
from bench.common import report

OUTCOME_COUNTERS = ("jobpulse_jobs_completed_total", "jobpulse_jobs_failed_total", "jobpulse_jobs_timed_out_total",
                    "jobpulse_jobs_dead_total")


def outcomes(base: str) -> float:
    """Outcome events so far, summed over queues, from the Prometheus exposition."""
    total = 0.0
    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith(OUTCOME_COUNTERS):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main() -> None:
    """Run the check and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--at", default="10,30,90", help="seconds after start to look")
    args = parser.parse_args()
    marks = sorted(float(s) for s in args.at.split(","))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_")}
    proc = subprocess.Popen([sys.executable, "-m", "aggregator", "serve", "--demo", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    samples: list[tuple[float, float]] = []  # (seconds since start, outcomes counter)
    points: dict[str, Any] = {}
    try:
        while time.monotonic() - started < 30:
            try:
                httpx.get(base + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        for mark in marks:
            while time.monotonic() - started < mark:
                samples.append((time.monotonic() - started, outcomes(base)))
                time.sleep(0.5)
            now = time.monotonic() - started
            ov = httpx.get(base + "/api/stats/overview", timeout=10).json()["data"]
            count = outcomes(base)
            samples.append((now, count))
            # the counter's rate over the overview's own span: the sample nearest its start
            begin = now - ov["window_seconds"]
            t0, c0 = min(samples, key=lambda s: abs(s[0] - begin))
            measured = (count - c0) * 60 / (now - t0) if now > t0 else 0.0
            shown = ov["overall_throughput"]
            points[f"{mark:g}s"] = {
                "overview_per_min": round(shown, 1), "metrics_per_min": round(measured, 1),
                "window_seconds": round(ov["window_seconds"], 1),
                "ratio": round(shown / measured, 3) if measured else None,
                "within_25_percent": bool(measured) and abs(shown - measured) <= 0.25 * measured,
            }
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    lines = [f"  at {k}: overview {v['overview_per_min']}/min, /metrics {v['metrics_per_min']}/min "
             f"(window {v['window_seconds']} s, {'ok' if v['within_25_percent'] else 'OFF'})"
             for k, v in points.items()]
    report({"benchmark": "young", "points": points}, "a young system's rates:\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
