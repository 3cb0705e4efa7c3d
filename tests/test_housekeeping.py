"""Workers silent longer than the retention are pruned from the workers hash, on real Redis:
heartbeats go through the streams and the aggregator like any worker's."""

from __future__ import annotations

import time

import orjson
import redis

from aggregator.buffer import EventBuffer
from aggregator.consumer import Aggregator
from aggregator.housekeeping import _DELETE_IF_STALE, prune_stale_workers, stale_workers
from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings

DAY_MS = 86_400_000


def _heartbeat(client: redis.Redis, settings: Settings, worker_id: str, arrival_ms: int | None = None) -> None:
    """XADD a heartbeat as an emitter does; ``arrival_ms`` backdates it (the stream id is its arrival)."""
    buffer = EventBuffer(settings, worker_id, ("q",), 4)
    stream, field, body = buffer.heartbeat(settings.partitions, 10.0)
    client.xadd(stream, {field: body}, id=f"{arrival_ms}-0" if arrival_ms else "*")


def _workers(client: redis.Redis, settings: Settings) -> set[str]:
    keys = Keys(settings.key_prefix)
    return {w.decode() for p in range(settings.partitions) for w in client.hkeys(keys.workers(p))}


def test_the_aggregator_prunes_workers_silent_past_the_retention(settings: Settings, client: redis.Redis) -> None:
    now_ms = int(time.time() * 1000)
    _heartbeat(client, settings, "gone:1", now_ms - 3 * DAY_MS)  # restarted long ago, never seen since
    _heartbeat(client, settings, "quiet:2", now_ms - DAY_MS // 2)  # silent, but within the retention
    _heartbeat(client, settings, "live:3")
    aggregator = Aggregator(settings, client)
    aggregator.run(drain=True)  # its housekeeping pass ran before these heartbeats were folded
    assert _workers(client, settings) == {"gone:1", "quiet:2", "live:3"}
    keys = Keys(settings.key_prefix)
    client.delete(*(keys.housekeeping(p) for p in range(settings.partitions)))  # a minute later
    aggregator.run(drain=True)
    assert _workers(client, settings) == {"quiet:2", "live:3"}

    # within the interval a second pass does nothing, whichever aggregator asks
    old = orjson.dumps({"seen_ms": now_ms - 2 * DAY_MS}).decode()
    client.hset(keys.workers(partition_of("gone:4", settings.partitions)), "gone:4", old)
    assert prune_stale_workers(client, keys, range(settings.partitions), 86_400, now_ms) == 0
    assert "gone:4" in _workers(client, settings)
    # once due again (marker expired), it goes
    client.delete(*(keys.housekeeping(p) for p in range(settings.partitions)))
    assert prune_stale_workers(client, keys, range(settings.partitions), 86_400, now_ms) == 1
    assert _workers(client, settings) == {"quiet:2", "live:3"}


def test_only_the_given_partitions_are_pruned(settings: Settings, client: redis.Redis) -> None:
    keys, now_ms = Keys(settings.key_prefix), int(time.time() * 1000)
    old = orjson.dumps({"seen_ms": now_ms - 2 * DAY_MS}).decode()
    for p in range(settings.partitions):
        client.hset(keys.workers(p), f"w{p}", old)
    assert prune_stale_workers(client, keys, [1, 3], 86_400, now_ms) == 2
    assert _workers(client, settings) == {"w0", "w2"}


def test_a_heartbeat_arriving_after_the_scan_keeps_the_worker(settings: Settings, client: redis.Redis) -> None:
    keys, now_ms = Keys(settings.key_prefix), int(time.time() * 1000)
    key = keys.workers(0)
    client.hset(key, mapping={"back": orjson.dumps({"seen_ms": now_ms}).decode(),  # refreshed since the scan
                              "gone": orjson.dumps({"seen_ms": now_ms - 2 * DAY_MS}).decode(),
                              "garbled": "not json"})
    delete = client.register_script(_DELETE_IF_STALE)
    assert delete(keys=[key], args=[now_ms - DAY_MS, "back", "gone", "garbled", "absent"]) == 2
    assert client.hkeys(key) == [b"back"]


def test_stale_workers_reads_the_arrival_time() -> None:
    records = {b"a": b'{"seen_ms": 5}', b"b": b'{"seen_ms": 50}', b"c": b"[]", b"d": b"{"}
    assert sorted(stale_workers(records, 10)) == [b"a", b"c", b"d"]
