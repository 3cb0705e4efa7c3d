"""Rolling closed minutes up into their hour and day buckets, once each.

While a minute is open, a flush writes its counts to the minute buckets only.
Once the minute has been over for ``ROLL_AFTER_S``, an apply adds its minute
buckets (each queue's and the partition's) into their hour and day buckets,
and moves the partition's marker (``rolled`` in its watermark hash): hour and
day buckets hold exactly the minutes before the marker, and the read side adds
the minute buckets of the minutes after it (``api/lua.py``). An event for a
minute already rolled up (a late one) is written to all three, as before.

Why: the hour and day buckets are the largest hashes (a couple of hundred
sketch bins each), and at a live rate every flush wrote to them. Rolled up,
they are written once a minute per queue, whatever the rate.

Pure: the pipeline keeps the marker and the partition's queues, and asks here
where to move the marker and what to roll up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from aggregator.effects import Effects
from aggregator.keys import GRANULARITY_S
from aggregator.tally import alive_bits, expires_at_s

if TYPE_CHECKING:
    from aggregator.fold import FoldConfig

# A minute is rolled up this long after it ends: an event that late still costs no extra writes.
ROLL_AFTER_S = 120
# Minute buckets rolled up in one apply, at most: a marker far behind catches up over several.
ROLL_MAX_BUCKETS = 2_000
# The marker of a fold without one (tests, tools): every minute is before it, so written directly.
ALL_ROLLED_S = 2**62
_HOUR_S, _DAY_S = GRANULARITY_S["h"], GRANULARITY_S["d"]


def _minute(ts_s: float) -> int:
    return int(ts_s) // 60 * 60


def initial_marker(last_data_ms: int | None, now_s: float) -> int:
    """The marker of a partition that has none. Everything stored so far was written to its hour and
    day buckets directly, so the marker goes after the newest data (``last_data_ms``, the summary's
    last event time); a partition with no data starts where :func:`next_marker` would put it."""
    if last_data_ms is None:
        return _minute(now_s - ROLL_AFTER_S)
    return max(_minute(last_data_ms // 1000) + 60, _minute(now_s - ROLL_AFTER_S))


def next_marker(rolled_s: int, now_s: float, queues: int) -> int:
    """Where an apply at ``now_s`` moves the marker: past every minute over for ``ROLL_AFTER_S``,
    at most as many minutes as ``ROLL_MAX_BUCKETS`` allows for ``queues`` queues; never back."""
    most = max(1, ROLL_MAX_BUCKETS // (queues + 1)) * 60
    return max(rolled_s, min(_minute(now_s - ROLL_AFTER_S), rolled_s + most))


def roll(fx: Effects, from_s: int, to_s: int, queues: Iterable[str], cfg: FoldConfig, now_s: float) -> None:
    """Have the apply roll the minutes ``from_s`` to ``to_s`` (excluded) of ``queues`` and of the
    partition up into their hour and day buckets (those that are still kept)."""
    if to_s <= from_s:
        return
    keys, p = cfg.keys, cfg.partition
    sources: list[str | None] = [*sorted(queues), None]
    for minute in range(from_s, to_s, 60):
        hour, day = minute - minute % _HOUR_S, minute - minute % _DAY_S
        hour_at, day_at = expires_at_s("h", hour, cfg), expires_at_s("d", day, cfg)
        alive = alive_bits(minute, int(now_s), cfg)  # (bits 1 and 2: the hour and the day are kept)
        for q in sources:
            fx.rolls.append((keys.bucket(p, "m", minute, q),
                             keys.bucket(p, "h", hour, q) if alive & 2 else None, hour_at,
                             keys.bucket(p, "d", day, q) if alive & 4 else None, day_at))
