"""Emitter overhead: events/s one process emits through ``Emitter`` and the
time the calling job spends per call, vs raw pipelined XADD of the same
payloads from the same process, one run.

    python -m bench.emitter                     # 200,000 events over 50 queues

Prints one JSON object (last line of stdout).
"""

from __future__ import annotations

import argparse
import random
import time
import uuid

import orjson

from aggregator.buffer import iso
from aggregator.emitter import Emitter
from aggregator.keys import partition_of
from aggregator.settings import Settings
from bench.common import Namespace, namespace, percentile, report, xadd

Call = tuple[str, str, str, dict[str, object]]


def calls(n: int, n_queues: int) -> list[Call]:
    """A realistic mix of lifecycle calls: (method, job id, queue, keyword arguments)."""
    rng = random.Random(1)
    out: list[Call] = []
    job = 0
    while len(out) < n:
        queue, job_id = f"queue-{job % n_queues}", f"job-{job}"
        out.append(("enqueued", job_id, queue, {"priority": "normal", "job_type": "SendEmail"}))
        out.append(("started", job_id, queue, {"wait_time_ms": rng.randint(0, 500), "attempt": 1}))
        if rng.random() < 0.9:
            out.append(("completed", job_id, queue, {"processing_time_ms": rng.randint(1, 2000)}))
        else:
            out.append(("failed", job_id, queue, {"error": "boom", "processing_time_ms": rng.randint(1, 2000)}))
        job += 1
    return out[:n]


def through_emitter(ns: Namespace, work: list[Call], settings: Settings) -> tuple[float, list[float], int]:
    """Seconds until all of ``work`` is in Redis, per-call µs, events dropped."""
    emitter = Emitter(settings, client=ns.client, worker_id="bench-worker", concurrency=8)
    per_call_us: list[float] = []
    clock = time.perf_counter_ns
    t = time.perf_counter()
    for method, job_id, queue, kwargs in work:
        before = clock()
        getattr(emitter, method)(job_id, queue, **kwargs)
        per_call_us.append((clock() - before) / 1000)
    if not emitter.flush(timeout_s=120):
        raise SystemExit("the emitter did not drain its buffer in 120 s")
    elapsed = time.perf_counter() - t
    emitter.close()
    return elapsed, per_call_us, emitter.dropped


def raw_xadd(ns: Namespace, work: list[Call], settings: Settings, partitions: int) -> float:
    """Seconds to XADD the same JSON payloads, built beforehand, pipelined 500 at a time."""
    payloads = []
    for method, job_id, queue, kwargs in work:
        fields = {"event_id": str(uuid.uuid4()), "job_id": job_id, "queue_name": queue, "event_type": method,
                  "timestamp": iso(time.time()), "worker_id": "bench-raw", **kwargs}
        payloads.append((ns.keys.stream(partition_of(queue, partitions)), orjson.dumps(fields)))
    t = time.perf_counter()
    pipe = ns.client.pipeline(transaction=False)
    for stream, body in payloads:
        xadd(pipe, stream, body, settings.stream_maxlen)
        if len(pipe) >= settings.emit_batch_size:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - t


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--queues", type=int, default=50)
    args = parser.parse_args()
    work = calls(args.events, args.queues)
    with namespace() as ns:
        settings = Settings(redis_url=ns.url, key_prefix=ns.prefix, emit_buffer_max=args.events + 1)
        emit_s, per_call_us, dropped = through_emitter(ns, work, settings)
        # events + one heartbeat
        stored = sum(ns.client.xlen(ns.keys.stream(p)) for p in range(4))  # type: ignore[misc]  # redis-py 5 stubs
        raw_s = raw_xadd(ns, work, settings, partitions=4)
    emit_rate, raw_rate = args.events / emit_s, args.events / raw_s
    p50, p99, p999 = (percentile(per_call_us, q) for q in (0.5, 0.99, 0.999))
    report(
        {
            "benchmark": "emitter",
            "events": args.events,
            "emitter_events_per_s": round(emit_rate),
            "raw_xadd_events_per_s": round(raw_rate),
            "ratio": round(emit_rate / raw_rate, 3),
            "call_us_p50": round(p50, 2),
            "call_us_p99": round(p99, 2),
            "call_us_p999": round(p999, 2),
            "dropped": dropped,
            "entries_from_emitter": stored,
        },
        f"emitter: {emit_rate:,.0f} events/s end to end vs {raw_rate:,.0f} raw pipelined XADD -> ratio "
        f"{emit_rate / raw_rate:.3f}; per call p50 {p50:.1f} µs, p99 {p99:.1f} µs, p99.9 {p999:.1f} µs",
    )


if __name__ == "__main__":
    main()
