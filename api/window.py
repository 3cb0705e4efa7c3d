"""Which buckets a rate or a trend point is summed from, and the span it is divided by: pure functions.

DESIGN ("Windowed rates"): the rate window is the last ``rate_window_s`` in
minute buckets, or the request's range in a fitting bucket size. A window
never reaches back before the first data the store holds, and the current,
partial bucket counts only its elapsed part, so a young system or the last
trend point is not diluted. ``window_seconds`` is the span used.
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregator.keys import GRANULARITY_S
from api.query import StatsQuery, bucket_starts

MINUTE_RANGE_MAX_S = 6 * 3600
HOUR_RANGE_MAX_S = 30 * 86_400
# Minutes newer than this may not be rolled up into hour/day buckets yet; a range read from hour or
# day buckets also names their minute buckets (see api/lua.py). The store looks further back when a
# partition's roll-up marker is older.
UNROLLED_LOOKBACK_S = 10 * 60


@dataclass(frozen=True)
class BucketRange:
    """Stored buckets summed as one: ``starts`` of ``gran``, plus the minute buckets of
    ``minutes`` that are not rolled up into them yet (hour and day buckets only)."""

    gran: str
    starts: list[int]
    minutes: list[int]

    @property
    def reads(self) -> int:
        """Hashes read per source (queue or partition)."""
        return len(self.starts) + len(self.minutes)

    @property
    def start_ms(self) -> int:
        """Where the range begins (ms): a source whose last event is older has nothing in it."""
        return min([*self.starts, *self.minutes], default=2**53) * 1000


def bucket_range(gran: str, starts: list[int], now_s: float, lookback_s: int = UNROLLED_LOOKBACK_S) -> BucketRange:
    """``starts`` of ``gran`` with the candidate minutes of the last ``lookback_s`` inside them."""
    if gran == "m" or not starts:
        return BucketRange(gran, starts, [])
    lo = max(starts[0], int(now_s) - int(now_s) % 60 - lookback_s)
    hi = min(starts[-1] + GRANULARITY_S[gran], int(now_s) + 1)
    return BucketRange(gran, starts, [m for m in bucket_starts(lo, hi, 60) if m >= starts[0]] if lo < hi else [])


def retained(gran: str, starts: list[int], now_s: float, retention_s: dict[str, int]) -> list[int]:
    """The starts whose bucket can still exist (a bucket expires ``retention`` after it ends)."""
    step = GRANULARITY_S[gran]
    return [s for s in starts if s + step + retention_s[gran] > now_s]


@dataclass(frozen=True)
class Window:
    """The buckets the windowed rates are summed from and the span they are divided by.

    ``from_first_data``: the default window, which starts no earlier than the first data the store
    holds (known only after the read, see :meth:`clamped`)."""

    buckets: BucketRange
    start_s: float
    end_s: float
    from_first_data: bool = False

    @property
    def span_s(self) -> float:
        """Seconds the rates divide by (at least 1)."""
        return max(self.end_s - self.start_s, 1.0)

    def clamped(self, first_ms: int | None) -> Window:
        """This window starting no earlier than ``first_ms`` (the default window only)."""
        if not self.from_first_data or first_ms is None:
            return self
        start = min(max(self.start_s, first_ms / 1000), self.end_s)
        return Window(self.buckets, start, self.end_s, self.from_first_data)


def window_gran(query: StatsQuery, now_s: float, minute_retention_s: int) -> str:
    """The stored bucket size a query's range is summed in."""
    length = query.end_s - query.start_s
    fresh = now_s - query.start_s <= minute_retention_s
    if length <= MINUTE_RANGE_MAX_S and fresh:
        return "m"
    return "h" if length <= HOUR_RANGE_MAX_S else "d"


def rate_window(now_s: float, rate_window_s: int, query: StatsQuery | None, retention_s: dict[str, int]) -> Window:
    """The last ``rate_window_s`` in minute buckets (from the first data on, if it is younger: see
    :meth:`Window.clamped`), or the query's range in a fitting bucket size; either way never past now."""
    if query is None or not query.explicit_range:
        # a fixed number of minute buckets, the newest one still filling
        start_s = int(now_s) - int(now_s) % 60 - (rate_window_s // 60 - 1) * 60
        starts = bucket_starts(start_s, int(now_s) + 1, 60)
        return Window(bucket_range("m", starts, now_s), float(starts[0]), now_s, from_first_data=True)
    gran = window_gran(query, now_s, retention_s["m"])
    step = GRANULARITY_S[gran]
    starts = bucket_starts(query.start_s, query.end_s, step)
    end = min(starts[-1] + step, now_s)
    kept = retained(gran, starts, now_s, retention_s)
    return Window(bucket_range(gran, kept, now_s), float(starts[0]), max(end, float(starts[0])))


def point_span_s(start_s: int, end_s: int, now_s: float, first_ms: int | None) -> float:
    """What a trend point's counts are divided by: the bucket's length, except for the bucket holding
    now, which counts only its elapsed part (from the first data on, when that is younger)."""
    if not start_s <= now_s < end_s:
        return float(end_s - start_s)
    begin = float(start_s) if first_ms is None else max(float(start_s), min(first_ms / 1000, now_s))
    return max(now_s - begin, 1.0)
