"""The batch pipeline on real Redis: a flush refused for its watermark drops what was folded after it;
job states read ahead are used only while still current."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import orjson
import redis

from aggregator.consumer import Aggregator
from aggregator.keys import Keys
from aggregator.pipeline import _Chunk, _Cursor
from aggregator.settings import Settings
from tests.helpers import assert_exact
from tests.workload import Expected, build, event, publish

T0_MS = (int(time.time()) // 3600 - 2) * 3_600_000


def _one_partition(one: Settings, client: redis.Redis, n_events: int, seed: int
                   ) -> tuple[Aggregator, Keys, list[dict[str, Any]], Expected]:
    """An aggregator owning the one partition of ``one``, whose stream holds ``n_events`` events."""
    keys = Keys(one.key_prefix)
    events, expected = build(n_events, 3, seed=seed, t0_ms=T0_MS)
    publish(client, keys, 1, events)
    agg = Aggregator(one, client)
    agg.rebalance(want_all=True)
    return agg, keys, events, expected


def test_a_flush_refused_for_its_watermark_drops_the_flush_folded_behind_it(settings: Settings,
                                                                             client: redis.Redis) -> None:
    one = settings.model_copy(update={"partitions": 1, "batch_size": 100, "flush_interval_ms": 400})
    agg, keys, events, _ = _one_partition(one, client, 1_000, seed=3)
    pipe = agg.pipelines[0]
    pipe.step(time.time())  # a flush opens with the first chunk
    gate = threading.Event()
    agg._pool.submit(gate.wait)  # hold the apply thread, so the flush below waits in its queue
    pipe.submit(time.time())
    pipe.step(time.time())  # the next chunk is folded into a new flush, from the first one's job states
    # Meanwhile the stored watermark moves (as if an earlier flush had landed although its reply was lost).
    landed = client.xrange(keys.stream(0), count=50)[-1][0]
    client.hset(keys.watermark(0), "id", landed)
    gate.set()
    pipe.submit(time.time())  # the queued flush is refused: everything folded after it must go too
    assert pipe.flush is None and pipe.inflight is None and pipe.wm_id == landed.decode()
    agg.run(drain=True)  # and goes on from the stored watermark: exactly the entries after it count
    rest, seen = Expected(), set()
    for ev in events[50:]:
        if ev["event_id"] not in seen:
            seen.add(ev["event_id"])
            rest.add(ev)
    assert_exact(client, one, rest)


def test_a_state_read_ahead_is_read_again_once_the_cache_has_held_and_forgotten_that_job(
        settings: Settings, client: redis.Redis) -> None:
    # A cache of no jobs: every landed flush forgets all it wrote, the window this rule exists for.
    one = settings.model_copy(update={"partitions": 1, "batch_size": 1, "job_cache_size": 0})
    keys = Keys(one.key_prefix)
    enqueued = event("j", "q", "enqueued", T0_MS)
    publish(client, keys, 1, [enqueued, event("j", "q", "started", T0_MS + 5), enqueued])  # then a re-send
    agg = Aggregator(one, client)
    agg.rebalance(want_all=True)
    pipe = agg.pipelines[0]
    first_id = client.xrange(keys.stream(0), count=1)[0][0].decode()
    # The second entry, read ahead before the first is folded: "j" has no stored state yet.
    early = pipe._read_ahead(_Cursor(first_id))
    assert early.states == {"j": None}
    pipe._ahead.clear()
    pipe.step(time.time(), eager=True)  # folds and applies the enqueue; the trim then forgets "j"
    pipe.finish(time.time())
    assert pipe.cache.get("j") is None
    done: Future[_Chunk] = Future()
    done.set_result(early)
    pipe._ahead.clear()  # what the step above read ahead: replaced by the early read
    pipe._ahead.append(done)
    pipe._cursor = _Cursor(early.entries[-1][0])
    agg.run(drain=True)
    # Had the early "no state" been trusted, the stored record would lack the enqueue's id,
    # and its re-send would count twice.
    assert client.hget(keys.totals(0, "q"), "n:enqueued") == b"1"
    assert client.zcard(keys.pending(0, "q")) == 0
    assert client.zcard(keys.running(0, "q")) == 1


def test_small_chunks_read_far_ahead_with_a_tiny_cache_are_exact(settings: Settings, client: redis.Redis) -> None:
    tight = settings.model_copy(update={"batch_size": 7, "job_cache_size": 3, "max_flush_entries": 40})
    events, expected = build(3_000, 6, seed=11, t0_ms=T0_MS)
    publish(client, Keys(tight.key_prefix), tight.partitions, events)
    Aggregator(tight, client).run(drain=True)
    assert_exact(client, tight, expected)


def test_a_job_dropped_from_the_cache_with_its_write_in_flight_is_read_once_that_write_has_landed(
        settings: Settings, client: redis.Redis) -> None:
    # A finished job is kept for 10 s, less than the cache's margin before a key's expiry: the cache
    # drops it as soon as it is asked, while the flush that stores it may still be in flight.
    one = settings.model_copy(update={"partitions": 1, "batch_size": 2, "dedup_window_s": 10})
    keys = Keys(one.key_prefix)
    done = event("j", "q", "completed", T0_MS + 5, processing_time_ms=5)
    publish(client, keys, 1, [event("j", "q", "enqueued", T0_MS), done, done])  # then a re-send
    agg = Aggregator(one, client)
    agg.rebalance(want_all=True)
    pipe = agg.pipelines[0]
    pipe.step(time.time())  # the enqueue and the completion open a flush
    gate = threading.Event()
    agg._pool.submit(gate.wait)  # hold the apply thread: the flush below stays in flight
    pipe.submit(time.time())
    threading.Timer(0.5, gate.set).start()
    pipe.step(time.time())  # the re-send: "j" must be read only after its flush has landed
    agg.run(drain=True)
    # Had "j" been read while its flush was in flight, it would have had no state: the re-send
    # would have counted as a second completion.
    assert client.hget(keys.totals(0, "q"), "n:completed") == b"1"
    assert client.hget(keys.watermark(0), "duplicates") == b"1"


def test_a_flush_refused_for_its_roll_up_marker_is_read_again_from_what_is_stored(settings: Settings,
                                                                                 client: redis.Redis) -> None:
    one = settings.model_copy(update={"partitions": 1, "batch_size": 100})
    agg, keys, _, expected = _one_partition(one, client, 300, seed=4)
    pipe = agg.pipelines[0]
    pipe.step(time.time())
    moved = pipe.rolled_s - 600
    client.hset(keys.watermark(0), "rolled", moved)  # as if another apply had moved it
    pipe.submit(time.time())
    pipe.settle()  # refused before any write: the pipeline starts again from what Redis holds
    assert pipe.flush is None and pipe.wm_id == "0-0" and pipe.rolled_s == moved
    agg.run(drain=True)
    assert_exact(client, one, expected)


def test_far_behind_the_stream_a_flush_stays_open_longer(settings: Settings, client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    publish(client, keys, settings.partitions, [event("j", "q", "enqueued", T0_MS)])
    agg = Aggregator(settings.model_copy(update={"flush_interval_ms": 50}), client)
    agg.rebalance(want_all=True)
    pipe = next(p for p in agg.pipelines.values() if client.xlen(keys.stream(p.p)))
    now_s = time.time()
    pipe.step(now_s)
    flush = pipe.flush
    assert flush is not None
    pipe.caught_up = False
    pipe.opened_s = now_s - 0.5  # open 0.5 s: more than 4 flush intervals
    pipe.read_arrival_ms = int(now_s * 1000) - 100  # entries that arrived just now: applied
    assert pipe._due(flush, now_s, eager=False)
    pipe.read_arrival_ms = int(now_s * 1000) - 60_000  # a minute-old backlog: kept open up to a second
    assert not pipe._due(flush, now_s, eager=False)
    pipe.opened_s = now_s - 1.0
    assert pipe._due(flush, now_s, eager=False)


def test_after_a_full_read_of_entries_just_added_a_flush_is_applied_on_the_interval(settings: Settings,
                                                                                   client: redis.Redis) -> None:
    # At 20,000 events/s a partition adds a whole batch every 100 ms: a full read is "behind" (its
    # flush may grow) only when what it read arrived a while ago.
    one = settings.model_copy(update={"partitions": 1, "batch_size": 3, "flush_interval_ms": 200})
    keys = Keys(one.key_prefix)
    now_ms = int(time.time() * 1000)
    for n, job in enumerate(("old-1", "old-2", "old-3")):  # added a minute ago (explicit entry ids)
        body = {k: v for k, v in event(job, "q", "enqueued", now_ms - 60_000).items() if k != "_ts_ms"}
        client.xadd(keys.stream(0), {"event": orjson.dumps(body)}, id=f"{now_ms - 60_000}-{n}")
    publish(client, keys, 1, [event(f"new-{n}", "q", "enqueued", now_ms) for n in range(3)])
    agg = Aggregator(one, client)
    agg.rebalance(want_all=True)
    pipe = agg.pipelines[0]
    interval_s = 0.201
    assert pipe.step(time.time()) == 3 and not pipe.caught_up
    flush = pipe.flush
    assert flush is not None
    now_s = time.time()
    pipe.opened_s = now_s - interval_s  # open for an interval, what was read arrived a minute ago: it grows
    assert not pipe._due(flush, now_s, eager=False)
    pipe.opened_s = time.time()
    assert pipe.step(time.time()) == 3 and not pipe.caught_up and pipe.flush is flush
    now_s = pipe.read_arrival_ms / 1000 + interval_s  # an interval after what was read arrived
    pipe.opened_s = now_s - interval_s
    assert pipe._due(flush, now_s, eager=False)


def test_a_read_kept_going_between_steps_that_found_nothing_is_sent_again(settings: Settings,
                                                                          client: redis.Redis) -> None:
    one = settings.model_copy(update={"partitions": 1, "flush_interval_ms": 50})
    keys = Keys(one.key_prefix)
    now_ms = int(time.time() * 1000)
    publish(client, keys, 1, [event("a", "q", "enqueued", now_ms)])
    agg = Aggregator(one, client)
    agg.rebalance(want_all=True)
    pipe = agg.pipelines[0]
    assert pipe.step(time.time()) == 1
    assert len(pipe._ahead) == 1  # the next read is already going
    pipe._ahead[0].result()  # ... and found nothing
    publish(client, keys, 1, [event("b", "q", "enqueued", now_ms)])
    # A step well after that read reads again rather than wait a round for the next one.
    assert pipe.step(time.time() + 1) == 1
    agg.run(drain=True)
    assert client.hget(keys.totals(0, "q"), "n:enqueued") == b"2"
