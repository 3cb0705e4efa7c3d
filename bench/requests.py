"""Request cost: requests/s and p50/p99 latency of overview, detailed and
trends (24 h hourly) with 10, 100 and 1,000 queues, and at 100 queues after
10^4 vs 10^6 ingested events; yardstick: the trivial ``/health`` endpoint of
the same uvicorn process in the same run.

    python -m bench.requests

One client, sequential requests on a keep-alive connection (the client's own
cost is in every figure, the yardstick's too). Prints one JSON object (last line).
"""

from __future__ import annotations

import argparse
import http.client
import time
from typing import Any

from aggregator.consumer import Aggregator
from aggregator.settings import Settings
from bench.common import Namespace, api_process, namespace, percentile, report
from bench.ingest import preload

ROUTES = {
    "overview": "/api/stats/overview",
    "detailed": "/api/stats/detailed",
    "trends_24h_hourly": "/api/stats/trends?granularity=hour",
    "trivial": "/health",
}


def measure(base: str, path: str, n: int) -> dict[str, float]:
    """``n`` sequential GETs of ``path``: requests/s and latency percentiles in ms."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    for _ in range(min(20, n)):  # warm-up: connection, caches, first-call imports
        conn.request("GET", path)
        conn.getresponse().read()
    took_ms = []
    t = time.perf_counter()
    for _ in range(n):
        before = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"{path}: HTTP {response.status}")
        took_ms.append((time.perf_counter() - before) * 1000)
    elapsed = time.perf_counter() - t
    conn.close()
    return {"rps": round(n / elapsed, 1), "p50_ms": round(percentile(took_ms, 0.5), 2),
            "p99_ms": round(percentile(took_ms, 0.99), 2)}


def ingest(ns: Namespace, n_events: int, n_queues: int) -> int:
    """Pre-load and drain ``n_events`` in this process; returns the events written."""
    n = preload(ns, n_events, n_queues, 4)
    Aggregator(Settings(redis_url=ns.url, key_prefix=ns.prefix, partitions=4), ns.client).run(drain=True)
    return n


def run_case(ns: Namespace, requests: int) -> dict[str, Any]:
    """Every route against a fresh API process, with the ratio of each to the trivial one."""
    with api_process(ns) as base:
        figures = {name: measure(base, path, requests) for name, path in ROUTES.items()}
    trivial = figures["trivial"]["rps"]
    for name, f in figures.items():
        if name != "trivial":
            f["ratio_to_trivial"] = round(f["rps"] / trivial, 3)
    return figures


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per route and case")
    parser.add_argument("--small-events", type=int, default=10_000)
    parser.add_argument("--big-events", type=int, default=1_000_000)
    parser.add_argument("--queue-counts", default="10,100,1000")
    args = parser.parse_args()
    cases: dict[str, Any] = {}
    for n_queues in (int(q) for q in args.queue_counts.split(",")):
        with namespace() as ns:
            events = ingest(ns, args.small_events, n_queues)
            cases[f"{n_queues}_queues_{events}_events"] = run_case(ns, args.requests)
            if n_queues == 100:
                events += ingest(ns, args.big_events - events, n_queues)
                cases[f"{n_queues}_queues_{events}_events"] = run_case(ns, args.requests)
    lines = [f"  {case}: " + ", ".join(f"{name} {f['p99_ms']} ms p99 ({f['rps']:.0f}/s)" for name, f in figs.items())
             for case, figs in cases.items()]
    report({"benchmark": "requests", "requests_per_route": args.requests, "cases": cases},
           "requests (sequential, one client):\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
