"""Memory: Redis bytes per queue for a full retention of buckets (minute
buckets over the minute retention, default 2 days; hour buckets over 90
days; day buckets), with their latency sketches, measured with MEMORY USAGE.

    python -m bench.memory                      # 2 queues, 8 events per minute each

Events are generated across the whole hour retention, newest in the last
minute, so every bucket the aggregator keeps exists and is as full as a busy
queue makes it. ``--minute-days 7`` sizes a week of minute buckets (the
issue's case) by raising the minute retention for the run. Prints one JSON
object (last line). The aggregator's RSS against N is in bench.ingest.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid

import orjson

from aggregator.buffer import iso
from aggregator.consumer import Aggregator
from aggregator.keys import partition_of
from aggregator.settings import Settings
from bench.common import Namespace, namespace, report, xadd

DAY_S = 86_400


def load(ns: Namespace, queues: list[str], minute_s: int, hour_s: int, per_minute: int, partitions: int) -> int:
    """Completed events (with processing times) every minute of the minute retention, and
    ``per_minute`` events per hour before it, back to the hour retention; returns the count."""
    rng = random.Random(3)
    now_s = int(time.time())
    pipe = ns.client.pipeline(transaction=False)
    n = 0
    moments = [now_s - m * 60 for m in range(minute_s // 60)]
    moments += [now_s - minute_s - h * 3600 for h in range((hour_s - minute_s) // 3600)]
    for q in queues:
        stream = ns.keys.stream(partition_of(q, partitions))
        for at_s in moments:
            for _ in range(per_minute):
                body = {"event_id": uuid.uuid4().hex, "job_id": uuid.uuid4().hex, "queue_name": q,
                        "event_type": rng.choice(("completed", "completed", "completed", "failed")),
                        "timestamp": iso(at_s - rng.random() * 59), "processing_time_ms": int(rng.lognormvariate(5, 2)),
                        "error": {"message": f"timeout after {rng.randint(1, 9)}s"}}
                xadd(pipe, stream, orjson.dumps(body))
                n += 1
            if len(pipe) >= 5000:
                pipe.execute()
    pipe.execute()
    return n


def usage_by_kind(ns: Namespace, queue: str, partitions: int) -> dict[str, int]:
    """MEMORY USAGE of one queue's keys, by kind (minute/hour/day buckets, totals)."""
    p = partition_of(queue, partitions)
    out = {"minute_buckets": 0, "hour_buckets": 0, "day_buckets": 0, "totals": 0}
    names = {"m": "minute_buckets", "h": "hour_buckets", "d": "day_buckets"}
    for gran, kind in names.items():
        for key in ns.client.scan_iter(match=ns.keys.bucket(p, gran, 0, queue).replace(":0:", ":*:"), count=5000):
            out[kind] += int(ns.client.memory_usage(key, samples=0) or 0)  # type: ignore[arg-type]  # redis-py 5 stubs
    out["totals"] = int(ns.client.memory_usage(ns.keys.totals(p, queue), samples=0) or 0)  # type: ignore[arg-type]  # redis-py 5 stubs
    return out


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=2)
    parser.add_argument("--per-minute", type=int, default=8, help="events per queue per bucket")
    parser.add_argument("--minute-days", type=float, default=None, help="minute retention (default: the setting)")
    parser.add_argument("--hour-days", type=float, default=90)
    args = parser.parse_args()
    partitions = 4
    defaults = Settings()
    minute_s = int(args.minute_days * DAY_S) if args.minute_days else defaults.minute_retention_s
    hour_s = int(args.hour_days * DAY_S)
    queues = [f"queue-{i}" for i in range(args.queues)]
    with namespace(partitions) as ns:
        settings = Settings(redis_url=ns.url, key_prefix=ns.prefix, partitions=partitions,
                            minute_retention_s=minute_s, hour_retention_s=hour_s)
        n = load(ns, queues, minute_s, hour_s, args.per_minute, partitions)
        Aggregator(settings, ns.client).run(drain=True)
        per_queue = [usage_by_kind(ns, q, partitions) for q in queues]
    mean = {k: round(sum(u[k] for u in per_queue) / len(per_queue)) for k in per_queue[0]}
    total = sum(mean.values())
    report(
        {
            "benchmark": "memory",
            "events": n,
            "queues": args.queues,
            "minute_retention_days": round(minute_s / DAY_S, 2),
            "hour_retention_days": round(hour_s / DAY_S, 2),
            "bytes_per_queue": total,
            "bytes_per_queue_by_kind": mean,
            "mb_per_queue": round(total / 2**20, 3),
        },
        f"memory: {total / 2**20:.2f} MB per queue for {minute_s / DAY_S:.1f} days of minute and "
        f"{hour_s / DAY_S:.0f} days of hour buckets with sketches ({mean})",
    )


if __name__ == "__main__":
    main()
