"""Request cost: requests/s and p50/p99 latency of overview, detailed and
trends (24 h hourly) with 10, 100 and 1,000 queues, and at 100 queues after
10^4 vs 10^6 ingested events; yardstick: the trivial ``/health`` endpoint of
the same uvicorn process in the same run.

    python -m bench.requests                 # the cost table
    python -m bench.requests --mode heavy    # the most expensive accepted requests while /health is polled

One client, sequential requests on a keep-alive connection (the client's own
cost is in every figure, the yardstick's too). The routes are measured in
interleaved rounds, so a busy machine slows them alike and their ratio holds.
``--mode heavy`` runs each of the most expensive requests the API accepts
(at the cost bound of api/limits.py) while a second client polls ``/health``:
each must finish within 1 s or be refused with 422, and ``/health`` p99 must
stay within 50 ms meanwhile. Prints one JSON object (last line).
"""

from __future__ import annotations

import argparse
import http.client
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aggregator.consumer import Aggregator
from aggregator.settings import Settings
from api.limits import MAX_QUEUE_NAMES
from bench.common import Namespace, api_process, namespace, percentile, report
from bench.ingest import preload

ROUTES = {
    "overview": "/api/stats/overview",
    "detailed": "/api/stats/detailed",
    "trends_24h_hourly": "/api/stats/trends?granularity=hour",
    "trivial": "/health",
}
ROUNDS = 10


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def get(self, path: str) -> tuple[int, float]:
        """GET ``path``: status and milliseconds taken."""
        before = time.perf_counter()
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        response.read()
        return response.status, (time.perf_counter() - before) * 1000


def measure(base: str, routes: dict[str, str], n: int) -> dict[str, dict[str, float]]:
    """``n`` GETs of each route, in interleaved rounds: requests/s and latency percentiles in ms."""
    client = Client(base)
    for path in routes.values():
        for _ in range(min(20, n)):  # warm-up: connection, caches, first-call imports
            client.get(path)
    took: dict[str, list[float]] = {name: [] for name in routes}
    for _ in range(ROUNDS):
        for name, path in routes.items():
            for _ in range(max(1, n // ROUNDS)):
                status, ms = client.get(path)
                if status != 200:
                    raise SystemExit(f"{path}: HTTP {status}")
                took[name].append(ms)
    return {name: {"rps": round(1000 * len(ms) / sum(ms), 1), "p50_ms": round(percentile(ms, 0.5), 2),
                   "p99_ms": round(percentile(ms, 0.99), 2)} for name, ms in took.items()}


def ingest(ns: Namespace, n_events: int, n_queues: int, hours: float = 1.0) -> int:
    """Pre-load and drain ``n_events`` (event times in the last ``hours``) in this process; returns the
    events written."""
    n = preload(ns, n_events, n_queues, 4, hours)
    Aggregator(Settings(redis_url=ns.url, key_prefix=ns.prefix, partitions=4), ns.client).run(drain=True)
    return n


def run_case(ns: Namespace, requests: int) -> dict[str, Any]:
    """Every route against a fresh API process, with the ratio of each to the trivial one."""
    with api_process(ns) as base:
        figures = measure(base, ROUTES, requests)
    trivial = figures["trivial"]["rps"]
    for name, f in figures.items():
        if name != "trivial":
            f["ratio_to_trivial"] = round(f["rps"] / trivial, 3)
    return figures


def heavy_requests(now: datetime) -> dict[str, str]:
    """The most expensive requests of each kind the API is asked for (at or past the cost bound)."""
    names = ",".join(f"queue-{i}" for i in range(MAX_QUEUE_NAMES))

    def q(**params: str) -> str:
        return urlencode(params)

    day = (now - timedelta(hours=24)).isoformat()
    return {
        "trends_1000_queues_24h_hourly": "/api/stats/trends?" + q(queues=names, start=day, end=now.isoformat()),
        "trends_1000_queues_6h_minute": "/api/stats/trends?" + q(
            queues=names, granularity="minute", start=(now - timedelta(hours=6)).isoformat(), end=now.isoformat()),
        "trends_1000_days_daily": "/api/stats/trends?" + q(
            granularity="day", start=(now - timedelta(days=999)).isoformat(), end=now.isoformat()),
        "detailed_1000_queues": "/api/stats/detailed?" + q(queues=names),
        "detailed_1000_queues_6h_minute": "/api/stats/detailed?" + q(
            queues=names, granularity="minute", start=(now - timedelta(hours=6)).isoformat(), end=now.isoformat()),
        "detailed_1000_days_daily": "/api/stats/detailed?" + q(
            granularity="day", start=(now - timedelta(days=999)).isoformat(), end=now.isoformat()),
        "detailed_all_queues": "/api/stats/detailed",
        "metrics_all_queues": "/metrics",
    }


def poll(base: str, stop: threading.Event, took_ms: list[float]) -> None:
    """GET /health until ``stop`` is set, appending each latency."""
    client = Client(base)
    while not stop.is_set():
        took_ms.append(client.get("/health")[1])


def run_heavy(ns: Namespace, repeats: int) -> dict[str, Any]:
    """Each heavy request ``repeats`` times while a second client polls /health."""
    out: dict[str, Any] = {}
    with api_process(ns) as base:
        for name, path in heavy_requests(datetime.now(UTC).replace(microsecond=0)).items():
            polled: list[float] = []
            stop = threading.Event()
            thread = threading.Thread(target=poll, args=(base, stop, polled))
            client = Client(base)
            thread.start()
            try:
                runs = [client.get(path) for _ in range(repeats)]
            finally:
                stop.set()
                thread.join()
            statuses = sorted({s for s, _ in runs})
            out[name] = {"status": statuses, "max_ms": round(max(ms for _, ms in runs), 1),
                         "health_polls": len(polled), "health_p99_ms": round(percentile(polled, 0.99), 2),
                         "ok": statuses in ([200], [422]) and (statuses == [422] or max(ms for _, ms in runs) <= 1000)
                         and percentile(polled, 0.99) <= 50}
    return out


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["table", "heavy"], default="table")
    parser.add_argument("--requests", type=int, default=300, help="per route and case")
    parser.add_argument("--small-events", type=int, default=10_000)
    parser.add_argument("--big-events", type=int, default=1_000_000)
    parser.add_argument("--queue-counts", default="10,100,1000")
    parser.add_argument("--event-hours", type=float, default=1.0,
                        help="event times spread from this long ago; the default puts them before the overview's "
                             "5-minute rate window, 0.05 inside it (every windowed figure then has data to sum)")
    parser.add_argument("--repeats", type=int, default=3, help="heavy mode: runs of each request")
    args = parser.parse_args()
    if args.mode == "heavy":
        with namespace() as ns:
            events = ingest(ns, args.small_events * 10, 1000)
            heavy = run_heavy(ns, args.repeats)
        lines = [f"  {name}: HTTP {f['status']} in ≤ {f['max_ms']} ms; /health p99 {f['health_p99_ms']} ms "
                 f"({'ok' if f['ok'] else 'FAILS'})" for name, f in heavy.items()]
        report({"benchmark": "requests-heavy", "events": events, "queues": 1000, "requests": heavy},
               "heaviest accepted requests while /health is polled:\n" + "\n".join(lines))
        return
    cases: dict[str, Any] = {}
    for n_queues in (int(q) for q in args.queue_counts.split(",")):
        with namespace() as ns:
            events = ingest(ns, args.small_events, n_queues, args.event_hours)
            cases[f"{n_queues}_queues_{events}_events"] = run_case(ns, args.requests)
            if n_queues == 100 and args.big_events > events:
                events += ingest(ns, args.big_events - events, n_queues, args.event_hours)
                cases[f"{n_queues}_queues_{events}_events"] = run_case(ns, args.requests)
    lines = [f"  {case}: " + ", ".join(f"{name} {f['p99_ms']} ms p99 ({f['rps']:.0f}/s)" for name, f in figs.items())
             for case, figs in cases.items()]
    report({"benchmark": "requests", "requests_per_route": args.requests, "event_hours": args.event_hours,
            "cases": cases},
           "requests (sequential, one client, routes interleaved):\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
