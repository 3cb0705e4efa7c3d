"""Rolling minute tallies up into buckets: sent once for Redis to fan out, or merged in memory."""

from __future__ import annotations

from aggregator.effects import Effects
from aggregator.fold import FoldConfig
from aggregator.keys import Keys
from aggregator.rollup import ALL_ROLLED_S
from aggregator.tally import FANOUT_MAX_WRITERS, MinuteTally, roll_up

KEYS = Keys("t")
CFG = FoldConfig(keys=KEYS, partition=0, retention_s={"m": 10**9, "h": 10**9, "d": 10**9}, dedup_window_s=60,
                 job_ttl_s=60, future_tolerance_ms=0)
MINUTE = 1_800_000_000 - 1_800_000_000 % 86_400 + 120  # the third minute of a day
ALL_ALIVE = 0b111


def _tally(completed: int) -> MinuteTally:
    t = MinuteTally(ALL_ALIVE)
    t.kinds["completed"] = completed
    t.first_ms = t.last_ms = MINUTE * 1000
    return t


def _buckets(start_m: int, queue: str | None) -> list[str]:
    return [KEYS.bucket(0, "m", start_m, queue), KEYS.bucket(0, "h", start_m - start_m % 3600, queue),
            KEYS.bucket(0, "d", start_m - start_m % 86_400, queue)]


def test_a_lone_tally_is_sent_once_for_all_six_of_its_buckets() -> None:
    fx = Effects()
    roll_up(fx, {"q": {MINUTE: _tally(3)}}, CFG, ALL_ROLLED_S)
    [(targets, adds)] = fx.fanout
    assert sorted(targets) == sorted(_buckets(MINUTE, "q") + _buckets(MINUTE, None))
    assert adds == {"n:completed": 3}
    assert not set(targets) & set(fx.incr)  # and not again as plain adds
    assert fx.incr[KEYS.totals(0, "q")]["n:completed"] == 3


def test_a_bucket_many_tallies_add_to_is_merged_in_memory() -> None:
    queues = [f"q{i}" for i in range(FANOUT_MAX_WRITERS + 1)]  # one minute of more queues than fan out
    fx = Effects()
    roll_up(fx, {q: {MINUTE: _tally(i + 1)} for i, q in enumerate(queues)}, CFG, ALL_ROLLED_S)
    n = len(queues)
    for key in _buckets(MINUTE, None):  # the partition's buckets: one merged add each
        assert fx.incr[key] == {"n:completed": n * (n + 1) // 2}
    for i, q in enumerate(queues):  # each queue's own: fanned out
        assert ([adds for targets, adds in fx.fanout if set(_buckets(MINUTE, q)) <= set(targets)]
                == [{"n:completed": i + 1}])


def test_a_minute_not_rolled_up_yet_goes_to_its_minute_buckets_only() -> None:
    fx = Effects()
    roll_up(fx, {"q": {MINUTE: _tally(3), MINUTE - 60: _tally(1)}}, CFG, rolled_s=MINUTE)
    by_adds = {adds["n:completed"]: sorted(targets) for targets, adds in fx.fanout}
    assert by_adds[3] == sorted([KEYS.bucket(0, "m", MINUTE, "q"), KEYS.bucket(0, "m", MINUTE)])
    assert by_adds[1] == sorted(_buckets(MINUTE - 60, "q") + _buckets(MINUTE - 60, None))  # a late one: all six
    assert fx.incr[KEYS.totals(0, "q")]["n:completed"] == 4  # totals do not wait for the roll-up


def test_a_minute_not_rolled_up_whose_bucket_has_expired_goes_straight_to_its_hour_and_day() -> None:
    fx = Effects()
    t = _tally(2)
    t.alive = 0b110  # (an outage longer than the minute retention: the minute bucket is gone)
    roll_up(fx, {"q": {MINUTE: t}}, CFG, rolled_s=MINUTE - 60)
    [(targets, _)] = fx.fanout
    assert sorted(targets) == sorted(_buckets(MINUTE, "q")[1:] + _buckets(MINUTE, None)[1:])


def test_the_minutes_of_one_hour_go_to_its_hour_and_day_as_one_sum() -> None:
    fx = Effects()
    of_queue = {MINUTE + 60 * i: _tally(i + 1) for i in range(10)}
    of_queue[MINUTE].processing_ms = {5: 1}
    of_queue[MINUTE + 60].processing_ms = {900: 2}
    roll_up(fx, {"q": of_queue}, CFG, ALL_ROLLED_S)
    hour_and_day = sorted(_buckets(MINUTE, "q")[1:] + _buckets(MINUTE, None)[1:])
    [summed] = [adds for targets, adds in fx.fanout if sorted(targets) == hour_and_day]
    assert summed["n:completed"] == sum(range(1, 11)) and summed["pt_n"] == 3
    for m in of_queue:  # each minute to its own buckets
        assert [adds["n:completed"] for targets, adds in fx.fanout
                if sorted(targets) == sorted([KEYS.bucket(0, "m", m, "q"), KEYS.bucket(0, "m", m)])] == [
            of_queue[m].kinds["completed"]]
    for key in hour_and_day:  # the largest time of the hour, not of its last minute
        assert fx.hmax[key]["pt_max"] == 900
    assert fx.incr[KEYS.totals(0, "q")]["n:completed"] == sum(range(1, 11))
