"""The batch pipeline on real Redis: a flush refused for its watermark drops what was folded after it."""

from __future__ import annotations

import threading
import time

import redis

from aggregator.consumer import Aggregator
from aggregator.keys import Keys
from aggregator.settings import Settings
from tests.helpers import assert_exact
from tests.workload import Expected, build, publish

T0_MS = (int(time.time()) // 3600 - 2) * 3_600_000


def test_a_flush_refused_for_its_watermark_drops_the_flush_folded_behind_it(settings: Settings,
                                                                             client: redis.Redis) -> None:
    one = settings.model_copy(update={"partitions": 1, "batch_size": 100, "flush_interval_ms": 400})
    keys = Keys(one.key_prefix)
    events, _ = build(1_000, 3, seed=3, t0_ms=T0_MS)
    publish(client, keys, 1, events)
    agg = Aggregator(one, client)
    agg.rebalance(want_all=True)
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
