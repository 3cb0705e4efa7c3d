"""Scripted workloads with known answers, written straight to the streams."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from aggregator.buffer import iso
from aggregator.fold import LIFECYCLE_RANK, STATE_AFTER
from aggregator.keys import Keys, partition_of


@dataclass
class Expected:
    """What the stats must say about a workload."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (queue, event_type) -> n
    latest: dict[str, tuple[int, int, str, str]] = field(default_factory=dict)  # job -> (ts, rank, state, queue)

    def add(self, ev: dict[str, Any]) -> None:
        """Account one unique event."""
        self.counts[(ev["queue_name"], ev["event_type"])] += 1
        ts = ev["_ts_ms"]
        key = (ts, LIFECYCLE_RANK[ev["event_type"]])
        cur = self.latest.get(ev["job_id"])
        if cur is None or key > cur[:2]:
            self.latest[ev["job_id"]] = (*key, STATE_AFTER[ev["event_type"]], ev["queue_name"])

    def gauge(self, queue: str, state: str) -> int:
        """Jobs of ``queue`` in ``state`` (P or R)."""
        return sum(1 for _, _, s, q in self.latest.values() if q == queue and s == state)


def event(job: str, queue: str, kind: str, ts_ms: int, **extra: Any) -> dict[str, Any]:
    """A wire event (``_ts_ms`` is stripped before sending)."""
    body = {"event_id": str(uuid.uuid4()), "job_id": job, "queue_name": queue, "event_type": kind,
            "timestamp": iso(ts_ms / 1000), "_ts_ms": ts_ms}
    body.update(extra)
    return body


def lifecycle(rng: random.Random, job: str, queue: str, t0_ms: int) -> list[dict[str, Any]]:
    """One job's events: enqueue, attempts with failures/timeouts, an end (or still open)."""
    t = t0_ms
    evs = [event(job, queue, "enqueued", t, priority=rng.choice(["low", "normal", "high"]))]
    if rng.random() < 0.1:
        return evs  # still pending
    for attempt in range(1, 4):
        t += rng.randint(1, 50)
        evs.append(event(job, queue, "started", t, wait_time_ms=rng.randint(0, 500), attempt=attempt))
        if rng.random() < 0.05:
            return evs  # still running
        t += rng.randint(1, 200)
        roll = rng.random()
        if roll < 0.7:
            evs.append(event(job, queue, "completed", t, processing_time_ms=rng.randint(1, 2000)))
            return evs
        kind = "failed" if roll < 0.9 else "timed_out"
        evs.append(event(job, queue, kind, t, processing_time_ms=rng.randint(1, 2000),
                         error={"message": f"boom {rng.randint(1, 99)}", "error_type": "Boom"}))
        t += 1
        if attempt == 3:
            evs.append(event(job, queue, "dead", t, error={"message": "gave up"}))
            return evs
        evs.append(event(job, queue, "retried", t))
    return evs


def build(n_events: int, n_queues: int, seed: int, t0_ms: int) -> tuple[list[dict[str, Any]], Expected]:
    """Events (with ~2 % re-sent duplicates and one reordered job) and the expected stats."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    expected = Expected()
    i = 0
    while len(events) < n_events:
        evs = lifecycle(rng, f"job-{i}", f"queue-{i % n_queues}", t0_ms + i * 3)
        i += 1
        for ev in evs:
            expected.add(ev)
        events.extend(evs)
    # one job whose events arrive backwards
    backwards = lifecycle(random.Random(1), "job-backwards", "queue-0", t0_ms)
    for ev in backwards:
        expected.add(ev)
    events.extend(reversed(backwards))
    dups = [dict(ev) for ev in rng.sample(events, len(events) // 50)]
    events.extend(dups)  # same event_id: must be ignored
    return events, expected


def publish(client: redis.Redis, keys: Keys, partitions: int, events: list[dict[str, Any]]) -> None:
    """XADD every event to its partition stream, pipelined."""
    pipe = client.pipeline(transaction=False)
    for n, ev in enumerate(events):
        body = {k: v for k, v in ev.items() if k != "_ts_ms"}
        pipe.xadd(keys.stream(partition_of(ev["queue_name"], partitions)), {"event": orjson.dumps(body)})
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()
