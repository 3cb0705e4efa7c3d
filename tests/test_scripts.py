"""The apply script on real Redis: its refusals come before any write, and its gauges count exactly."""

from __future__ import annotations

import time

import pytest
import redis

from aggregator import scripts
from aggregator.effects import Effects
from aggregator.keys import Keys
from aggregator.settings import Settings


def _apply(client: redis.Redis, keys: Keys, lease: str, expected_wm: str, ops: list[object],
           extra_keys: list[str] | None = None, rolled: tuple[int, int] = (0, 0)) -> object:
    fixed = [keys.lease(0), keys.watermark(0), keys.stream(0), keys.summary(0), keys.oldest_pending(0)]
    return scripts.register(client, "apply")(keys=fixed + (extra_keys or []),
                                             args=[lease, expected_wm, "5-0", 1, 1000, *rolled, *ops])


@pytest.fixture
def leased(settings: Settings, client: redis.Redis) -> Keys:
    keys = Keys(settings.key_prefix)
    client.set(keys.lease(0), "me:1")
    client.xadd(keys.stream(0), {"event": "x"}, id="5-0")
    return keys


def test_a_fenced_out_owner_writes_nothing(leased: Keys, client: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="FENCED"):
        _apply(client, leased, "me:0", "0-0", ["I", 6, 2, "n:completed", 1], [leased.totals(0, "q")])
    assert not client.exists(leased.totals(0, "q"), leased.watermark(0))


def test_a_flush_that_does_not_start_at_the_watermark_writes_nothing(leased: Keys, client: redis.Redis) -> None:
    client.hset(leased.watermark(0), "id", "3-0")
    with pytest.raises(redis.ResponseError, match="WATERMARK expected 0-0 found 3-0"):
        _apply(client, leased, "me:1", "0-0", ["I", 6, 2, "n:completed", 1], [leased.totals(0, "q")])
    assert not client.exists(leased.totals(0, "q"))
    assert client.hget(leased.watermark(0), "id") == b"3-0"


def test_a_flush_folded_for_another_roll_up_marker_writes_nothing(leased: Keys, client: redis.Redis) -> None:
    client.hset(leased.watermark(0), "rolled", 120)
    with pytest.raises(redis.ResponseError, match="ROLLED expected 60 found 120"):
        _apply(client, leased, "me:1", "0-0", ["I", 6, 2, "n:completed", 1], [leased.totals(0, "q")], (60, 180))
    assert not client.exists(leased.totals(0, "q"))
    assert client.hmget(leased.watermark(0), "id", "rolled") == [None, b"120"]


def test_an_absent_marker_is_taken_as_every_minute_rolled_up(leased: Keys, client: redis.Redis) -> None:
    _apply(client, leased, "me:1", "0-0", [], None, (600, 660))
    assert client.hmget(leased.watermark(0), "id", "rolled") == [b"5-0", b"660"]


def test_a_closed_minute_is_rolled_up_into_its_hour_and_day_once(leased: Keys, client: redis.Redis) -> None:
    minute, empty = leased.bucket(0, "m", 3600 + 60, "q"), leased.bucket(0, "m", 3600 + 120, "q")
    hour, day = leased.bucket(0, "h", 3600, "q"), leased.bucket(0, "d", 0, "q")
    client.hset(minute, mapping={"n:completed": 3, "pt_max": 40, "ps:7": 2, "big": 2**53 - 1})
    client.hset(hour, mapping={"n:completed": 10, "pt_max": 90, "ps:7": 1, "big": 5})
    at = int(time.time()) + 3600
    # item 1: one field kept by maximum; then (minute, hour, expiry, day, expiry) per minute, key nos. 6..9
    ops: list[object] = ["U", 0, 12, 1, "pt_max", 6, 8, at, 9, at + 1, 7, 8, at, 0, 0]
    _apply(client, leased, "me:1", "0-0", ops, [minute, empty, hour, day], (3600, 3600 + 180))
    assert client.hgetall(hour) == {b"n:completed": b"13", b"pt_max": b"90", b"ps:7": b"3",
                                    b"big": str(2**53 + 4).encode()}
    assert client.hgetall(day) == {b"n:completed": b"3", b"pt_max": b"40", b"ps:7": b"2",
                                   b"big": str(2**53 - 1).encode()}
    assert client.expiretime(hour) == at and client.expiretime(day) == at + 1
    assert not client.exists(empty)  # nothing to roll up: nothing written
    assert client.hgetall(minute)[b"n:completed"] == b"3"  # the minute itself is kept for minute reads
    assert client.hget(leased.watermark(0), "rolled") == str(3600 + 180).encode()


def test_an_unknown_op_is_refused(leased: Keys, client: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="BADOP"):
        _apply(client, leased, "me:1", "0-0", ["?", 6, 0], [leased.totals(0, "q")])
    assert not client.hexists(leased.watermark(0), "id")


def test_gauges_count_what_the_sorted_sets_really_gained_and_lost(leased: Keys, client: redis.Redis) -> None:
    pending, backlog = leased.pending(0, "q"), leased.backlog(0)
    ops: list[object] = ["Z", 6, 5, "pending", 10, "a", 20, "b", "O", 5, 3, 7, 6, "q"]
    assert _apply(client, leased, "me:1", "0-0", ops, [pending, backlog]) == 0
    assert client.hget(leased.summary(0), "pending") == b"2"
    assert client.zscore(leased.oldest_pending(0), "q") == 10
    assert client.zscore(backlog, "q") == 2  # the backlog index follows the pending set
    # "a" again (already there) and "x" (never there) change nothing; "a" leaves
    client.hset(leased.watermark(0), "id", "0-0")
    ops = ["R", 6, 3, "pending", "a", "x", "Z", 6, 3, "pending", 30, "b", "O", 5, 3, 7, 6, "q"]
    _apply(client, leased, "me:1", "0-0", ops, [pending, backlog])
    assert client.hget(leased.summary(0), "pending") == b"1"
    assert client.zscore(leased.oldest_pending(0), "q") == 30
    assert client.zscore(backlog, "q") == 1
    client.hset(leased.watermark(0), "id", "0-0")
    ops = ["R", 6, 2, "pending", "b", "O", 5, 3, 7, 6, "q"]
    _apply(client, leased, "me:1", "0-0", ops, [pending, backlog])
    assert client.zscore(leased.oldest_pending(0), "q") is None and client.zscore(backlog, "q") is None


def test_entries_trimmed_before_they_were_read_are_counted_lost(leased: Keys, client: redis.Redis) -> None:
    for i in range(6, 10):
        client.xadd(leased.stream(0), {"event": "x"}, id=f"{i}-0")
    client.xtrim(leased.stream(0), maxlen=2, approximate=False)  # 5-0 .. 7-0 gone unread
    assert _apply(client, leased, "me:1", "0-0", []) == 3 - 1  # 5-0 is the one this flush consumed
    assert client.hget(leased.watermark(0), "lost") == b"2"


def test_many_fields_added_at_once_are_exact_even_past_what_a_lua_number_holds(leased: Keys,
                                                                              client: redis.Redis) -> None:
    bucket = leased.totals(0, "q")
    client.hset(bucket, mapping={"a": 5, "big": 2**53 - 1})
    small: list[object] = ["I", 6, 6, "a", 2, "b", 3, "c", 1]
    _apply(client, leased, "me:1", "0-0", small, [bucket])
    assert client.hmget(bucket, "a", "b", "c") == [b"7", b"3", b"1"]
    # 2**53 and beyond are not exact as Lua numbers: the script must add those with HINCRBY
    client.hset(leased.watermark(0), "id", "0-0")
    past: list[object] = ["I", 6, 6, "a", 1, "big", 3, "c", 1]
    _apply(client, leased, "me:1", "0-0", past, [bucket])
    assert client.hmget(bucket, "a", "big", "c") == [b"8", str(2**53 + 2).encode(), b"2"]


def test_max_and_min_keep_the_extreme_of_stored_and_given(leased: Keys, client: redis.Redis) -> None:
    totals = leased.totals(0, "q")
    client.hset(totals, mapping={"hi": 10, "lo": 10, "last_ms": 1_700_000_000_000})
    ops: list[object] = ["X", 6, 6, "hi", 5, "new_hi", 7, "last_ms", 1_700_000_000_001,
                         "N", 6, 4, "lo", 3, "new_lo", 9]
    _apply(client, leased, "me:1", "0-0", ops, [totals])
    assert client.hmget(totals, "hi", "new_hi", "last_ms", "lo", "new_lo") == [
        b"10", b"7", b"1700000000001", b"3", b"9"]


def test_job_records_are_set_by_their_run_of_keys_with_a_ttl_or_keeping_theirs(leased: Keys,
                                                                               client: redis.Redis) -> None:
    a, b, c = (leased.job(0, j) for j in "abc")
    client.set(c, "old", ex=500)
    ops: list[object] = ["J", 0, 4, 6, 60, "ra", "rb", "J", 0, 3, 8, 0, "rc"]
    _apply(client, leased, "me:1", "0-0", ops, [a, b, c])
    assert client.mget(a, b, c) == [b"ra", b"rb", b"rc"]
    assert 0 < client.ttl(a) <= 60 and 0 < client.ttl(b) <= 60
    assert 60 < client.ttl(c) <= 500  # KEEPTTL: the stored key's own


def test_a_fanned_out_add_lands_in_each_of_its_hashes(leased: Keys, client: redis.Redis) -> None:
    minute, hour = leased.bucket(0, "m", 60, "q"), leased.bucket(0, "h", 0, "q")
    client.hset(hour, mapping={"a": 10})
    # two hashes (key nos. 6 and 7) taking three pairs, then one hash taking one pair
    ops: list[object] = ["F", 0, 9, 2, 6, 7, "a", 1, "b", 2, "c", 3, "F", 0, 4, 1, 7, "a", 5]
    _apply(client, leased, "me:1", "0-0", ops, [minute, hour])
    assert client.hgetall(minute) == {b"a": b"1", b"b": b"2", b"c": b"3"}
    assert client.hgetall(hour) == {b"a": b"16", b"b": b"2", b"c": b"3"}


def _stored(client: redis.Redis, keys: list[str]) -> list[object]:
    """What ``keys`` hold, by type (a stream's entries without their ids)."""
    out: list[object] = []
    for key in keys:
        kind = client.type(key)
        if kind == b"hash":
            out.append(client.hgetall(key))
        elif kind == b"zset":
            out.append(client.zrange(key, 0, -1, withscores=True))
        elif kind == b"stream":
            out.append([fields for _, fields in client.xrange(key)])
        else:
            out.append((kind, client.get(key) if kind == b"string" else None))
    return out


def test_ops_packed_as_one_messagepack_argument_store_what_plain_arguments_store(settings: Settings,
                                                                                client: redis.Redis) -> None:
    stored = []
    for packed in (False, True):
        keys = Keys(f"{settings.key_prefix}:{'packed' if packed else 'plain'}")
        client.set(keys.lease(0), "me")
        client.xadd(keys.stream(0), {"event": "x"}, id="5-0")
        minute, hour, totals = keys.bucket(0, "m", 60, "q"), keys.bucket(0, "h", 0, "q"), keys.totals(0, "q")
        client.hset(totals, "near", 2**53 - 1)
        fx = Effects()
        # past what a Lua number holds: a sum, and a value sent as such (which must travel as digits)
        fx.add_all(totals, {"near": 3, "huge": 2**53 + 1, "n": 1})
        fx.add_to_all([minute, hour], {"a": 1, "b": 2, "c": 3})
        fx.rolls.append((keys.bucket(0, "m", 0, "q"), hour, 10**10, None, 0))  # (the minute 0-59 s: empty)
        client.hset(keys.bucket(0, "m", 120, "q"), mapping={"a": 4, "pt_max": 9})
        fx.rolls.append((keys.bucket(0, "m", 120, "q"), hour, 10**10, keys.bucket(0, "d", 0, "q"), 10**10))
        fx.maximum(totals, "last_ms", 1_700_000_000_001)
        fx.gauge_add(keys.pending(0, "q"), "pending", "job-1", 1_700_000_000_000)
        fx.jobs[keys.job(0, "job-1")] = ('["P",1]', 60)
        fx.capped_add(keys.recent_jobs(0, "q"), {"job-1": 1_700_000_000_000, "job-0": 5}, 1)
        fx.dead_letter("5-0", "bad", b"\xff\xfe not UTF-8")
        fixed = [keys.lease(0), keys.watermark(0), keys.stream(0), keys.summary(0), keys.oldest_pending(0)]
        key_list, tail = fx.encode(fixed, keys.oldest_pending(0), keys.backlog(0), keys.deadletter(0), 100, packed)
        assert (tail[:1] == ["M"]) == packed
        scripts.register(client, "apply")(keys=key_list, args=["me", "0-0", "5-0", 1, 1000, 0, 0, *tail])
        stored.append(_stored(client, [minute, hour, totals, keys.pending(0, "q"), keys.job(0, "job-1"),
                                       keys.recent_jobs(0, "q"), keys.deadletter(0), keys.summary(0)]))
    assert stored[0] == stored[1]
    minute_hash, _, totals_hash, *_, deadletters, _ = stored[1]
    assert minute_hash == {b"a": b"1", b"b": b"2", b"c": b"3"}
    assert totals_hash[b"near"] == str(2**53 + 2).encode() and totals_hash[b"huge"] == str(2**53 + 1).encode()
    assert deadletters == [{b"source_id": b"5-0", b"reason": b"bad", b"entry": b"\xff\xfe not UTF-8"}]


def test_the_lua_of_a_real_redis_has_messagepack(client: redis.Redis) -> None:
    assert scripts.lua_has_msgpack(client)
