"""Aggregator ingest rate vs a raw XRANGE drain of the same streams, one run.

    python -m bench.ingest --events 200000 --queues 50

Prints one JSON object. Uses JOBPULSE_TEST_REDIS_URL (default local DB 0)
under a throw-away key prefix, deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid

import redis

from aggregator.consumer import Aggregator
from aggregator.keys import Keys
from aggregator.settings import Settings
from tests.workload import build, publish


def raw_drain(client: redis.Redis, keys: Keys, partitions: int, count: int) -> int:
    """Read every stream to the end in COUNT-sized pages, doing nothing with the entries."""
    n = 0
    for p in range(partitions):
        last = "-"
        while True:
            page = client.xrange(keys.stream(p), last if last == "-" else f"({last}", "+", count=count)
            if not page:
                break
            n += len(page)
            last = page[-1][0].decode()
    return n


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    url = os.environ.get("JOBPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = "bench" + uuid.uuid4().hex[:8]
    settings = Settings(redis_url=url, key_prefix=prefix, partitions=args.partitions, batch_size=args.batch)
    client = redis.Redis.from_url(url)
    keys = Keys(prefix)
    try:
        client.hset(keys.meta, "partitions", args.partitions)
        events, _ = build(args.events, args.queues, seed=1, t0_ms=int(time.time() * 1000) - 3_600_000)
        publish(client, keys, args.partitions, events)
        t = time.perf_counter()
        raw_n = raw_drain(client, keys, args.partitions, 1000)
        raw_s = time.perf_counter() - t
        t = time.perf_counter()
        progress = Aggregator(settings, client).run(drain=True)
        agg_s = time.perf_counter() - t
        raw_rate, agg_rate = raw_n / raw_s, progress.entries / agg_s
        print(json.dumps({
            "benchmark": "ingest",
            "events": progress.entries,
            "queues": args.queues,
            "partitions": args.partitions,
            "aggregator_events_per_s": round(agg_rate),
            "raw_xrange_events_per_s": round(raw_rate),
            "ratio": round(agg_rate / raw_rate, 3),
        }))
    finally:
        for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
            batch = list(client.scan_iter(match=pattern, count=5000))
            for i in range(0, len(batch), 5000):
                client.delete(*batch[i : i + 5000])


if __name__ == "__main__":
    main()
