"""The recent-jobs record (aggregator/recent.py and apply.lua's Q and C ops): what each job's info holds,
the same however the events are split into flushes and in whatever order they arrive, and capped."""

from __future__ import annotations

import random
import time

import fakeredis
import orjson
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import recent, schema
from aggregator.consumer import Aggregator
from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings
from tests.workload import event, lifecycle, publish

T0_MS = (int(time.time()) // 86_400 - 1) * 86_400_000  # yesterday: inside every retention


def _run(events: list[dict[str, object]], cfg: Settings) -> fakeredis.FakeRedis:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    keys = Keys(cfg.key_prefix)
    client.hset(keys.meta, "partitions", cfg.partitions)
    for ev in events:
        body = {k: v for k, v in ev.items() if k != "_ts_ms"}
        client.xadd(keys.stream(partition_of(str(ev["queue_name"]), cfg.partitions)), {"event": orjson.dumps(body)})
    Aggregator(cfg, client).run(drain=True)
    return client


def _record(client: fakeredis.FakeRedis, cfg: Settings, queue: str) -> tuple[list[object], dict[str, list[object]]]:
    keys, p = Keys(cfg.key_prefix), partition_of(queue, cfg.partitions)
    ids = [i.decode() for i in client.zrevrange(keys.recent_jobs(p, queue), 0, -1)]
    infos = {k.decode(): recent.decode_info(v) for k, v in client.hgetall(keys.job_info(p)).items()}
    return ids, {i: infos[i] for i in ids}


def test_a_jobs_info_holds_its_times_status_and_last_error() -> None:
    cfg = Settings(key_prefix="r", partitions=1)
    events = [
        event("j", "q", "enqueued", T0_MS, priority="high"),
        event("j", "q", "started", T0_MS + 10, attempt=1),
        event("j", "q", "failed", T0_MS + 20, processing_time_ms=10, error={"message": "first"}),
        event("j", "q", "retried", T0_MS + 30),
        event("j", "q", "started", T0_MS + 40, attempt=2, priority="low"),
        event("j", "q", "completed", T0_MS + 50, processing_time_ms=7),
    ]
    ids, infos = _record(_run(events, cfg), cfg, "q")
    info = dict(zip(schema.JOB_INFO, infos["j"], strict=True))
    assert ids == ["j"]
    assert info == {"created_ms": T0_MS, "created_priority": "high", "started_ms": T0_MS + 40,
                    "completed_ms": T0_MS + 50, "failed_ms": T0_MS + 20, "error": "first", "ts_ms": T0_MS + 50,
                    "rank": 2, "status": "completed", "priority": "normal", "outcome_ms": T0_MS + 50,
                    "processing_ms": 7, "attempt": 2, "starts": 2, "queue": "q"}


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), chunk=st.integers(1, 7))
def test_the_record_is_the_same_in_one_flush_or_many_and_in_any_order(seed: int, chunk: int) -> None:
    rng = random.Random(seed)
    events = [e for j in range(12) for e in lifecycle(rng, f"j{j}", rng.choice(["a", "b"]), T0_MS + j * 1000)]
    shuffled = list(events)
    rng.shuffle(shuffled)
    cfg = Settings(key_prefix="r", partitions=2, recent_jobs_per_queue=100, recent_failures_per_queue=100)
    whole = _run(events, cfg.model_copy(update={"batch_size": 10_000}))
    split = _run(shuffled, cfg.model_copy(update={"batch_size": chunk, "flush_interval_ms": 1}))
    for queue in ("a", "b"):
        assert _record(whole, cfg, queue) == _record(split, cfg, queue)
        failures = Keys("r").recent_failures(partition_of(queue, 2), queue)
        assert whole.zrange(failures, 0, -1) == split.zrange(failures, 0, -1)


def test_each_queue_keeps_only_its_newest_jobs_and_failures() -> None:
    cfg = Settings(key_prefix="r", partitions=1, recent_jobs_per_queue=3, recent_failures_per_queue=2, batch_size=4)
    events = [e for i in range(8) for e in (
        event(f"j{i}", "q", "enqueued", T0_MS + 100 * i),
        event(f"j{i}", "q", "dead", T0_MS + 100 * i + 1, error={"message": f"boom {i}"}))]
    client = _run(events, cfg)
    ids, infos = _record(client, cfg, "q")
    assert ids == ["j7", "j6", "j5"] and len(client.hgetall(Keys("r").job_info(0))) == 3
    failures = [orjson.loads(m) for m in client.zrevrange(Keys("r").recent_failures(0, "q"), 0, -1)]
    assert [(f[0], f[3]) for f in failures] == [("j7", "boom 7"), ("j6", "boom 6")]
    assert infos["j7"][recent.ERROR] == "boom 7"


def test_caps_of_zero_keep_nothing_but_the_archive_times() -> None:
    cfg = Settings(key_prefix="r", partitions=1, recent_jobs_per_queue=0, recent_failures_per_queue=0)
    events = [event("j", "q", "enqueued", T0_MS), event("j", "q", "dead", T0_MS + 1, error={"message": "x"}),
              event("j", "q", "archived", T0_MS + 2)]
    client = _run(events, cfg)
    keys = Keys("r")
    assert not client.exists(keys.job_info(0), keys.recent_jobs(0, "q"), keys.recent_failures(0, "q"))
    assert client.hget(keys.totals(0, "q"), schema.LAST_OF + "archived") == str(T0_MS + 2).encode()
    assert client.hget(keys.summary(0), schema.LAST_OF + "archived") == str(T0_MS + 2).encode()


def test_on_real_redis_one_flush_or_one_per_event_store_the_same_bytes(settings: Settings,
                                                                      client: redis.Redis) -> None:
    rng = random.Random(7)
    events = [e for j in range(10) for e in lifecycle(rng, f"j{j}", "q/ü", T0_MS + j * 1000)]
    events += [event("j0", "q/ü", "dead", T0_MS + 60_000, error={"message": "a\x1fb / c", "retry_attempt": 9})]
    rng.shuffle(events)
    stored = []
    for n, batch in enumerate((10_000, 1)):
        cfg = settings.model_copy(update={"key_prefix": f"{settings.key_prefix}{n}", "batch_size": batch,
                                          "flush_interval_ms": 1})
        keys = Keys(cfg.key_prefix)
        publish(client, keys, cfg.partitions, events)
        Aggregator(cfg, client).run(drain=True)
        p = partition_of("q/ü", cfg.partitions)
        stored.append((client.zrange(keys.recent_jobs(p, "q/ü"), 0, -1, withscores=True),
                       client.hgetall(keys.job_info(p)), client.zrange(keys.recent_failures(p, "q/ü"), 0, -1)))
        for key in client.scan_iter(match=f"*{cfg.key_prefix}*"):
            client.delete(key)
    assert stored[0] == stored[1]
    info = recent.decode_info(stored[0][1][b"j0"])
    assert (info[recent.STATUS], info[recent.ERROR], info[recent.ATTEMPT]) == ("dead", "a b / c", 9)
