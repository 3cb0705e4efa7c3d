"""Aggregator ingest: one ``jobpulse aggregate --drain`` process vs a raw
``XREAD COUNT 1000`` drain of the same streams that parses every event's JSON,
by the same Python, one run. Redis CPU (INFO cpu) and its commands (INFO
commandstats) are measured over the aggregator's drain.

    python -m bench.ingest                      # 1,000,000 events over 50 queues, an hour of event time
    python -m bench.ingest --hours 48           # the same spread over two days (a backfill)
    python -m bench.ingest --events 200000
    python -m bench.ingest --cpu 1              # the aggregator pinned to CPU 1 (taskset -c 1)

Run it against a Redis nothing else uses: Redis CPU is read server-wide.

Prints one JSON object (last line of stdout). Uses JOBPULSE_TEST_REDIS_URL
(default local DB 0) under a throw-away key prefix, deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from typing import Any

import orjson
import redis

from aggregator.keys import Keys, partition_of
from bench.common import (
    Namespace,
    command_calls,
    command_delta,
    consumed,
    jobpulse,
    namespace,
    redis_cpu_s,
    redis_server,
    report,
    rss_mb,
    xadd,
)
from tests.workload import lifecycle


def preload(ns: Namespace, n_events: int, n_queues: int, partitions: int, hours: float = 1.0) -> int:
    """XADD a realistic mix (lifecycles with retries, failures, timeouts) of ``n_events`` spread over
    the last ``hours`` of event time; returns the count."""
    rng = random.Random(1)
    span_ms = int(hours * 3_600_000)
    t0_ms = int(time.time() * 1000) - span_ms
    pipe = ns.client.pipeline(transaction=False)
    n = job = 0
    while n < n_events:
        queue = f"queue-{job % n_queues}"
        stream = ns.keys.stream(partition_of(queue, partitions))
        for ev in lifecycle(rng, f"job-{job}", queue, t0_ms + job * span_ms // max(n_events, 1)):
            del ev["_ts_ms"]
            xadd(pipe, stream, orjson.dumps(ev))
            n += 1
        job += 1
        if len(pipe) >= 5000:
            pipe.execute()
    pipe.execute()
    return n


def raw_drain(client: redis.Redis, keys: Keys, partitions: int, count: int) -> int:
    """Read every stream to its end with XREAD COUNT ``count``, parsing each event's JSON."""
    last = {keys.stream(p): "0-0" for p in range(partitions)}
    n = 0
    while last:
        reply: list[Any] = client.xread(last, count=count)  # type: ignore[arg-type, assignment]
        if not reply:
            break
        for stream, entries in reply:
            for _, fields in entries:
                orjson.loads(fields[b"event"])
            n += len(entries)
            last[stream.decode()] = entries[-1][0].decode()
    return n


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--hours", type=float, default=1.0, help="event time spanned by the workload")
    parser.add_argument("--cpu", type=int, default=None, help="pin the aggregator to this CPU (Linux)")
    args = parser.parse_args()
    with namespace(args.partitions) as ns:
        n = preload(ns, args.events, args.queues, args.partitions, args.hours)
        t = time.perf_counter()
        raw_n = raw_drain(ns.client, ns.keys, args.partitions, 1000)
        raw_s = time.perf_counter() - t

        cpu0, calls0 = redis_cpu_s(ns.client), command_calls(ns.client)
        t = time.perf_counter()
        proc = jobpulse(["aggregate", "--drain"], ns.env(partitions=args.partitions), cpu=args.cpu)
        rss_at_10pct = peak_rss = 0.0
        while True:
            # wait4, not poll: the child's own CPU time (user + sys) is what contention cannot inflate
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            rss = rss_mb(proc.pid)
            peak_rss = max(peak_rss, rss)
            if not rss_at_10pct and consumed(ns, args.partitions) >= n // 10:
                rss_at_10pct = rss
            time.sleep(0.05)
        agg_s = time.perf_counter() - t
        agg_cpu_s = usage.ru_utime + usage.ru_stime
        if proc.returncode != 0:
            raise SystemExit(proc.stderr.read().decode()[-3000:] if proc.stderr else "aggregator failed")
        applied = consumed(ns, args.partitions)
        redis_cpu = redis_cpu_s(ns.client) - cpu0
        commands = command_delta(calls0, command_calls(ns.client), max(applied, 1))
        server = redis_server(ns.client)
    agg_rate, raw_rate = applied / agg_s, raw_n / raw_s
    report(
        {
            "benchmark": "ingest",
            "events": applied,
            "queues": args.queues,
            "partitions": args.partitions,
            "event_time_hours": args.hours,
            "aggregator_pinned_to_cpu": args.cpu,
            "aggregator_events_per_s": round(agg_rate),
            "raw_xread_events_per_s": round(raw_rate),
            "ratio": round(agg_rate / raw_rate, 3),
            "aggregator_seconds": round(agg_s, 2),
            "redis_cpu_us_per_event": round(redis_cpu * 1e6 / max(applied, 1), 2),
            "aggregator_cpu_us_per_event": round(agg_cpu_s * 1e6 / max(applied, 1), 2),
            "redis_commands": commands,
            "redis_server": server,
            "aggregator_rss_mb_at_10pct": round(rss_at_10pct, 1),
            "aggregator_rss_mb_peak": round(peak_rss, 1),
        },
        f"ingest: {agg_rate:,.0f} events/s by one aggregator process (exactly-once, job state on) vs "
        f"{raw_rate:,.0f} raw XREAD+parse -> ratio {agg_rate / raw_rate:.3f}; Redis CPU "
        f"{redis_cpu * 1e6 / max(applied, 1):.1f} µs/event, aggregator CPU "
        f"{agg_cpu_s * 1e6 / max(applied, 1):.1f} µs/event; RSS {rss_at_10pct:.0f} MB at 10 % "
        f"-> {peak_rss:.0f} MB peak",
    )


if __name__ == "__main__":
    main()
