"""StatsQuery: the time range, queues and granularity a request asks for,
checked so that bad input gets a 422 naming the parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aggregator.keys import GRANULARITY_S

MAX_BUCKETS = 1000
MAX_QUEUE_NAMES = 1000  # see api/limits.py
# Times outside this span are refused: a default range reaching back before year 1 crashed datetime
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
DEFAULT_RANGE_S = 24 * 3600
GRANULARITIES = {"minute": 60, "hour": 3600, "day": 86_400, "week": 7 * 86_400}
_MONDAY_OFFSET_DAYS = 3  # 1970-01-01 was a Thursday


class BadParameter(ValueError):
    """A query parameter that cannot be used; the message names it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"invalid parameter '{name}': {message}")
        self.name = name


def parse_time(name: str, raw: str) -> datetime:
    """An RFC 3339 timestamp (``Z`` or an offset is required)."""
    try:
        value = datetime.fromisoformat(raw.strip().replace("z", "Z"))
    except ValueError:
        raise BadParameter(name, f"{raw!r} is not an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z") from None
    if value.tzinfo is None:
        raise BadParameter(name, f"{raw!r} has no time zone; add Z or an offset like +02:00")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # an offset that carries year 1 or 9999 past datetime's range
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise BadParameter(name, f"{raw!r} is outside {EARLIEST:%Y-%m-%d} .. {LATEST:%Y-%m-%d}")
    return utc


def parse_queues(raw: list[str] | None) -> list[str] | None:
    """Queue names from repeated and/or comma-separated values; None means all."""
    if not raw:
        return None
    names = [part.strip() for value in raw for part in value.split(",")]
    names = sorted({n for n in names if n})
    if len(names) > MAX_QUEUE_NAMES:
        raise BadParameter("queues", f"{len(names)} queue names; at most {MAX_QUEUE_NAMES} per request")
    for n in names:
        if len(n) > 200:
            raise BadParameter("queues", "a queue name is at most 200 characters")
    return names or None


def align(ts_s: int, step_s: int) -> int:
    """Start of the UTC bucket of ``step_s`` holding ``ts_s`` (weeks start Monday)."""
    if step_s == GRANULARITIES["week"]:
        day = ts_s // 86_400
        return (day - (day + _MONDAY_OFFSET_DAYS) % 7) * 86_400
    return ts_s - ts_s % step_s


@dataclass(frozen=True)
class StatsQuery:
    """A checked query: ``[start, end)`` plus queues and bucket size."""

    start_s: int
    end_s: int
    queues: list[str] | None
    granularity: str
    explicit_range: bool

    @property
    def step_s(self) -> int:
        """Bucket size in seconds."""
        return GRANULARITIES[self.granularity]

    def bucket_starts(self) -> list[int]:
        """Starts of the buckets overlapping the range, oldest first."""
        return bucket_starts(self.start_s, self.end_s, self.step_s)


def bucket_starts(start_s: int, end_s: int, step_s: int) -> list[int]:
    """Aligned starts of the ``step_s`` buckets overlapping ``[start_s, end_s)``."""
    out = []
    b = align(start_s, step_s)
    while b < end_s:
        out.append(b)
        b = align(b + step_s, step_s) if step_s == GRANULARITIES["week"] else b + step_s
    return out


def stored_granularity(step_s: int) -> str:
    """The stored bucket kind a requested granularity is summed from."""
    if step_s >= GRANULARITY_S["d"]:
        return "d"
    return "h" if step_s >= GRANULARITY_S["h"] else "m"


def build_query(
    start: str | None, end: str | None, queues: list[str] | None, granularity: str | None, now_s: int
) -> StatsQuery:
    """Check the raw parameters and fill in the defaults (last 24 h, hourly)."""
    gran = (granularity or "hour").strip().lower()
    if gran not in GRANULARITIES:
        raise BadParameter("granularity", f"{granularity!r} is not one of {', '.join(GRANULARITIES)}")
    end_s = int(parse_time("end", end).timestamp()) if end else now_s
    start_s = int(parse_time("start", start).timestamp()) if start else end_s - DEFAULT_RANGE_S
    if end_s <= start_s:
        raise BadParameter("end", "must be after start")
    if start_s < EARLIEST.timestamp():
        raise BadParameter("start", f"the default range (end − 24 h) starts before {EARLIEST:%Y-%m-%d}")
    step_s = GRANULARITIES[gran]
    n = (end_s - align(start_s, step_s) + step_s - 1) // step_s  # counted, not listed: a range may be huge
    if n > MAX_BUCKETS:
        raise BadParameter(
            "granularity",
            f"the range holds {n} {gran} buckets, more than {MAX_BUCKETS}; narrow start/end or use a coarser one",
        )
    return StatsQuery(start_s, end_s, parse_queues(queues), gran, explicit_range=bool(start or end))
