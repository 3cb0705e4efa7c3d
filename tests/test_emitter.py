"""The emitter with Redis away: no exception, no blocking, everything arrives once Redis is back."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

import orjson
import pytest
import redis

from aggregator.connection import RedisTarget
from aggregator.embedded import free_port
from aggregator.emitter import Emitter
from aggregator.keys import Keys
from aggregator.settings import Settings


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs the redis-server binary")
def test_emitter_buffers_through_an_outage_and_delivers_after() -> None:
    port = free_port()  # nothing listens here yet
    url = f"redis://127.0.0.1:{port}/0"
    settings = Settings(redis_url=url, key_prefix="out", partitions=2, emit_buffer_max=10_000)
    emitter = Emitter(settings, RedisTarget(url), worker_id="w1")
    for i in range(2_000):
        emitter.enqueued(f"j{i}", "q")  # must neither raise nor wait for Redis
    assert emitter.pending() == 2_000 and emitter.dropped == 0
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--dir", tmp], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.hset(Keys("out").meta, "partitions", 2)
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            assert emitter.flush(timeout_s=20), "buffered events were not delivered"
            assert sum(client.xlen(Keys("out").stream(p)) for p in range(2)) >= 2_000  # + heartbeats
            assert emitter.close()
        finally:
            server.terminate()
            server.wait()


def test_buffer_bound_drops_oldest_and_counts(settings: Settings) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    tight = settings.model_copy(update={"redis_url": closed, "emit_buffer_max": 100})
    emitter = Emitter(tight, RedisTarget(closed))
    for i in range(250):
        emitter.completed(f"j{i}", "q", processing_time_ms=3)
    assert emitter.dropped == 150
    assert len(emitter.buffer.items) == 100
    assert emitter.buffer.items[0][1] == "j150"  # the oldest went first
    emitter.emit("no_such_type", "j", "q")  # a caller's bug is logged and counted, never raised
    assert emitter.dropped == 151


def test_async_emitter_delivers_and_counts_once(settings: Settings, client: redis.Redis) -> None:
    import asyncio

    from aggregator.async_emitter import AsyncEmitter
    from aggregator.consumer import Aggregator
    from aggregator.keys import partition_of

    agg = Aggregator(settings, client)  # writes the meta the emitter reads

    async def work() -> None:
        async with AsyncEmitter(settings, RedisTarget(settings.redis_url), worker_id="aw", concurrency=2) as em:
            for i in range(300):
                em.enqueued(f"j{i}", "async-q")
                em.started(f"j{i}", "async-q", wait_time_ms=5)
                em.completed(f"j{i}", "async-q", processing_time_ms=7)
            assert await em.flush(timeout_s=10)

    asyncio.run(work())
    agg.run(drain=True)
    p = partition_of("async-q", settings.partitions)
    totals = client.hgetall(Keys(settings.key_prefix).totals(p, "async-q"))
    assert (totals[b"n:enqueued"], totals[b"n:completed"]) == (b"300", b"300")
    workers = client.hgetall(Keys(settings.key_prefix).workers(partition_of("aw", settings.partitions)))
    assert b"aw" in workers


def test_a_failed_batch_and_the_one_serialised_behind_it_are_resent_with_their_ids(
    settings: Settings, client: redis.Redis
) -> None:
    from aggregator.keys import partition_of

    client.hset(Keys(settings.key_prefix).meta, "partitions", settings.partitions)
    emitter = Emitter(settings.model_copy(update={"emit_batch_size": 100}), client=client, worker_id="rw")
    confirm, failures = emitter._sender.confirm, [0]

    def refused_once(written: object) -> None:
        confirm(written)  # Redis took it, but the reply is lost: the batch must go again, ids unchanged
        if failures[0] == 0:
            failures[0] += 1
            raise redis.ConnectionError("reply lost")

    emitter._sender.confirm = refused_once  # type: ignore[method-assign]
    for i in range(1_000):
        emitter.enqueued(f"j{i}", "resend-q")
    assert emitter.flush(timeout_s=20) and failures[0] == 1
    emitter.close()
    entries = client.xrange(Keys(settings.key_prefix).stream(partition_of("resend-q", settings.partitions)))
    ids = [orjson.loads(fields[b"event"])["event_id"] for _, fields in entries if b"event" in fields]
    jobs = [orjson.loads(fields[b"event"])["job_id"] for _, fields in entries if b"event" in fields]
    assert len(set(ids)) == 1_000 and sorted(set(jobs)) == sorted(f"j{i}" for i in range(1_000))
    assert len(ids) - 1_000 <= 101  # one batch (and maybe its heartbeat) sent twice, nothing else
    first_seen = list(dict.fromkeys(jobs))
    assert first_seen == [f"j{i}" for i in range(1_000)]  # in order
