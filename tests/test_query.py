"""StatsQuery parsing: defaults, alignment and the parameter named in each error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.query import BadParameter, align, build_query

NOW = int(datetime(2026, 11, 28, 12, 30, tzinfo=UTC).timestamp())


def test_defaults_are_last_24_hours_hourly() -> None:
    q = build_query(None, None, None, None, NOW)
    assert (q.end_s - q.start_s, q.granularity, q.queues) == (86_400, "hour", None)
    assert len(q.bucket_starts()) == 25  # the range is not hour-aligned


def test_queues_from_commas_and_repeats() -> None:
    assert build_query(None, None, ["a,b", "c", "a"], None, NOW).queues == ["a", "b", "c"]


def test_weeks_start_on_monday() -> None:
    monday = int(datetime(2026, 11, 23, tzinfo=UTC).timestamp())
    assert align(NOW, 7 * 86_400) == monday


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (("x", None, None, None), "start"),
        ((None, "2026-13-01T00:00:00Z", None, None), "end"),
        (("2026-11-28T00:00:00Z", "2026-11-27T00:00:00Z", None, None), "end"),
        ((None, None, None, "yearly"), "granularity"),
        (("2026-01-01T00:00:00Z", "2026-12-01T00:00:00Z", None, "hour"), "granularity"),
    ],
)
def test_bad_values_name_their_parameter(args: tuple[str | None, ...], name: str) -> None:
    with pytest.raises(BadParameter) as err:
        build_query(*args, NOW)  # type: ignore[arg-type]
    assert err.value.name == name


@pytest.mark.parametrize(
    ("start", "end", "name"),
    [
        ("0001-01-01T00:00:00Z", None, "start"),
        (None, "0001-01-01T00:00:00Z", "end"),  # found by schemathesis: the default start was year 0, a 500
        (None, "9999-12-31T23:59:59-23:59", "end"),  # beyond datetime's range once made UTC
        (None, "1970-01-02T06:00:00Z", "start"),  # the default 24 h before it reaches 1970-01-01
    ],
)
def test_times_outside_the_supported_span_are_a_bad_parameter(start: str | None, end: str | None, name: str) -> None:
    with pytest.raises(BadParameter) as err:
        build_query(start, end, None, "hour", NOW)
    assert err.value.name == name


def test_a_huge_range_is_refused_without_listing_its_buckets() -> None:
    # 7,000 years of minutes: counted arithmetically, so this returns at once instead of building a list
    with pytest.raises(BadParameter, match="minute buckets"):
        build_query("1971-01-01T00:00:00Z", "8999-01-01T00:00:00Z", None, "minute", NOW)
