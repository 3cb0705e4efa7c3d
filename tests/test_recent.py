"""What hammerwork-web's job views read: the fields each job's record gains (aggregator/fold.py _advance,
JobRecord), the per-queue index of recent job ids and the failures record (aggregator/recent.py, apply.lua's
C op): what they hold, the same however the events are split into flushes and in whatever order they
arrive, and capped."""

from __future__ import annotations

import random
import time

import fakeredis
import orjson
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import schema
from aggregator.consumer import Aggregator
from aggregator.events import Rejected, parse_event
from aggregator.jobcache import JobRecord
from aggregator.keys import Keys, partition_of
from aggregator.recent import failure_member, newest, newest_failures
from aggregator.settings import Settings
from tests.helpers import drain_on_fakeredis
from tests.workload import event, lifecycle, publish

T0_MS = (int(time.time()) // 86_400 - 1) * 86_400_000  # yesterday: inside every retention
JOB_FIELDS = ("kind", "priority", "created_ms", "started_ms", "completed_ms", "failed_ms", "error", "outcome_ms",
              "processing_ms", "attempt", "starts")


def _record(client: fakeredis.FakeRedis, cfg: Settings, job_id: str, queue: str) -> JobRecord:
    raw = client.get(Keys(cfg.key_prefix).job(partition_of(queue, cfg.partitions), job_id))
    assert raw is not None
    return JobRecord.decode(raw)


def _index(client: fakeredis.FakeRedis, cfg: Settings, queue: str) -> list[str]:
    keys, p = Keys(cfg.key_prefix), partition_of(queue, cfg.partitions)
    return [i.decode() for i in client.zrevrange(keys.recent_jobs(p, queue), 0, -1)]


def _fields(record: JobRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in JOB_FIELDS}


def test_a_jobs_record_holds_its_times_status_and_last_error() -> None:
    cfg = Settings(key_prefix="r", partitions=1)
    events = [
        event("j", "q", "enqueued", T0_MS, priority="high"),
        event("j", "q", "started", T0_MS + 10, attempt=1),
        event("j", "q", "failed", T0_MS + 20, processing_time_ms=10, error={"message": "first " + "x" * 600}),
        event("j", "q", "retried", T0_MS + 30),
        event("j", "q", "started", T0_MS + 40, attempt=2, priority="low"),
        event("j", "q", "completed", T0_MS + 50, processing_time_ms=7),
    ]
    client = drain_on_fakeredis(events, cfg)
    assert _index(client, cfg, "q") == ["j"]
    record = _record(client, cfg, "j", "q")
    assert (record.state, record.ts_ms, record.rank, len(record.event_ids)) == ("F", T0_MS + 50, 2, 6)
    assert _fields(record) == {"kind": "completed", "priority": "high", "created_ms": T0_MS,
                               "started_ms": T0_MS + 40, "completed_ms": T0_MS + 50, "failed_ms": T0_MS + 20,
                               "error": ("first " + "x" * 600)[:500], "outcome_ms": T0_MS + 50,
                               "processing_ms": 7, "attempt": 2, "starts": 2}


def test_a_job_seen_without_its_enqueue_takes_its_latest_events_priority() -> None:
    cfg = Settings(key_prefix="r", partitions=1)
    events = [event("j", "q", "started", T0_MS + 10, priority="low"),
              event("j", "q", "dead", T0_MS + 20, priority="critical", error={"message": "x", "retry_attempt": 4})]
    record = _record(drain_on_fakeredis(events, cfg), cfg, "j", "q")
    assert (record.priority, record.created_ms, record.attempt, record.kind) == ("critical", None, 4, "dead")


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), chunk=st.integers(1, 7))
def test_the_records_are_the_same_in_one_flush_or_many_and_in_any_order(seed: int, chunk: int) -> None:
    rng = random.Random(seed)
    jobs = {f"j{j}": rng.choice(["a", "b"]) for j in range(12)}
    events = [e for j, (job, q) in enumerate(jobs.items()) for e in lifecycle(rng, job, q, T0_MS + j * 1000)]
    shuffled = list(events)
    rng.shuffle(shuffled)
    cfg = Settings(key_prefix="r", partitions=2, recent_jobs_per_queue=5, recent_failures_per_queue=3)
    whole = drain_on_fakeredis(events, cfg.model_copy(update={"batch_size": 10_000}))
    split = drain_on_fakeredis(shuffled, cfg.model_copy(update={"batch_size": chunk, "flush_interval_ms": 1}))
    for queue in ("a", "b"):
        assert _index(whole, cfg, queue) == _index(split, cfg, queue)
        failures = Keys("r").recent_failures(partition_of(queue, 2), queue)
        assert whole.zrange(failures, 0, -1) == split.zrange(failures, 0, -1)
    for job, queue in jobs.items():
        assert _fields(_record(whole, cfg, job, queue)) == _fields(_record(split, cfg, job, queue))


def test_each_queue_keeps_only_its_newest_job_ids_and_failures() -> None:
    cfg = Settings(key_prefix="r", partitions=1, recent_jobs_per_queue=3, recent_failures_per_queue=2, batch_size=4)
    events = [e for i in range(8) for e in (
        event(f"j{i}", "q", "enqueued", T0_MS + 100 * i),
        event(f"j{i}", "q", "dead", T0_MS + 100 * i + 1, error={"message": f"boom {i}"}))]
    client = drain_on_fakeredis(events, cfg)
    assert _index(client, cfg, "q") == ["j7", "j6", "j5"]
    failures = [orjson.loads(m) for m in client.zrevrange(Keys("r").recent_failures(0, "q"), 0, -1)]
    assert [(f[0], f[3]) for f in failures] == [("j7", "boom 7"), ("j6", "boom 6")]
    assert _record(client, cfg, "j0", "q").error == "boom 0"  # out of the index, its record is its own


def test_caps_of_zero_keep_no_index_but_the_records_and_archive_times() -> None:
    cfg = Settings(key_prefix="r", partitions=1, recent_jobs_per_queue=0, recent_failures_per_queue=0)
    events = [event("j", "q", "enqueued", T0_MS), event("j", "q", "dead", T0_MS + 1, error={"message": "x"}),
              event("j", "q", "archived", T0_MS + 2)]
    client = drain_on_fakeredis(events, cfg)
    keys = Keys("r")
    assert not client.exists(keys.recent_jobs(0, "q"), keys.recent_failures(0, "q"))
    assert _record(client, cfg, "j", "q").error == "x"
    assert client.hget(keys.totals(0, "q"), schema.LAST_OF + "archived") == str(T0_MS + 2).encode()
    assert client.hget(keys.summary(0), schema.LAST_OF + "archived") == str(T0_MS + 2).encode()


def test_a_record_in_the_old_five_field_form_is_carried_on() -> None:
    cfg = Settings(key_prefix="r", partitions=1)
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    client.set(Keys("r").job(0, "j"), orjson.dumps(["R", T0_MS, 1, "q", ["e-old"]]))
    client = drain_on_fakeredis([event("j", "q", "completed", T0_MS + 5, processing_time_ms=3)], cfg, client)
    record = _record(client, cfg, "j", "q")
    assert (record.state, record.event_ids[0], record.kind, record.processing_ms) == ("F", "e-old", "completed", 3)
    assert (record.created_ms, record.starts, record.priority) == (None, 0, "normal")


def test_the_index_keeps_what_redis_keeps_when_scores_tie(client: redis.Redis, settings: Settings) -> None:
    key = f"{settings.key_prefix}:ties"
    scores = {f"id-{i % 7}-{'ü' if i % 3 else 'z'}{i}": 1000 + i % 4 for i in range(40)}
    client.zadd(key, scores)  # type: ignore[arg-type]
    client.zremrangebyrank(key, 0, -8)  # keeps 7 of the 10 members scored 1003
    assert sorted(m.decode() for m in client.zrange(key, 0, -1)) == sorted(newest(scores, 7))


@settings(max_examples=30, deadline=None)
@given(times=st.lists(st.integers(0, 5), max_size=30), cap=st.integers(1, 6))
def test_only_the_failures_that_can_be_kept_are_serialised_and_they_are_the_same(times: list[int], cap: int) -> None:
    evs = []
    for n, dt in enumerate(times):
        body = event(f"j{n % 4}", "q", "failed", T0_MS + dt, error={"message": "m"})
        ev = parse_event(orjson.dumps({k: v for k, v in body.items() if k != "_ts_ms"}), 10_000)
        assert not isinstance(ev, Rejected)
        ev.ts_ms = T0_MS + dt
        evs.append(ev)
    everything = {failure_member(ev): ev.ts_ms for ev in evs}
    assert newest_failures(list(evs), cap) == newest(everything, cap)


def test_on_real_redis_one_flush_or_one_per_event_store_the_same_bytes(settings: Settings,
                                                                      client: redis.Redis) -> None:
    rng = random.Random(7)
    events = [e for j in range(10) for e in lifecycle(rng, f"j{j}", "q/ü", T0_MS + j * 1000)]
    events += [event("j0", "q/ü", "dead", T0_MS + 60_000, error={"message": "a\x1fb / c", "retry_attempt": 9})]
    rng.shuffle(events)
    stored = []
    for n, batch in enumerate((10_000, 1)):
        cfg = settings.model_copy(update={"key_prefix": f"{settings.key_prefix}{n}", "batch_size": batch,
                                          "flush_interval_ms": 1, "recent_jobs_per_queue": 6})
        keys = Keys(cfg.key_prefix)
        publish(client, keys, cfg.partitions, events)
        Aggregator(cfg, client).run(drain=True)
        p = partition_of("q/ü", cfg.partitions)
        stored.append((client.zrange(keys.recent_jobs(p, "q/ü"), 0, -1, withscores=True),
                       client.mget([keys.job(p, f"j{j}") for j in range(10)]),
                       client.zrange(keys.recent_failures(p, "q/ü"), 0, -1)))
        for key in client.scan_iter(match=f"*{cfg.key_prefix}*"):
            client.delete(key)
    assert stored[0] == stored[1]
    j0 = JobRecord.decode(stored[0][1][0])
    assert (j0.kind, j0.error, j0.attempt) == ("dead", "a\x1fb / c", 9)
