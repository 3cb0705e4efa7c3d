"""Which buckets a window reads and the span its rates divide by: pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

from api.query import build_query
from api.window import bucket_range, point_span_s, rate_window, retained

NOW = datetime(2026, 11, 28, 12, 30, 25, tzinfo=UTC).timestamp()  # 25 s into a minute
KEEP = {"m": 48 * 3600, "h": 90 * 86_400, "d": 730 * 86_400}


def test_default_window_is_five_minute_buckets_up_to_now() -> None:
    w = rate_window(NOW, 300, None, KEEP)
    assert w.buckets.gran == "m" and len(w.buckets.starts) == 5 and w.buckets.minutes == []
    assert w.end_s == NOW and w.span_s == 4 * 60 + 25


def test_default_window_starts_at_the_first_data() -> None:
    w = rate_window(NOW, 300, None, KEEP)
    assert w.clamped(int((NOW - 10) * 1000)).span_s == 10
    assert w.clamped(int((NOW - 3600) * 1000)).span_s == w.span_s  # older data: the full window
    assert w.clamped(None).span_s == w.span_s
    assert w.clamped(int((NOW + 5) * 1000)).span_s == 1  # clock skew: never negative


def test_an_explicit_range_is_divided_by_its_length_up_to_now() -> None:
    q = build_query("2026-11-28T10:00:00Z", "2026-11-28T12:00:00Z", None, "hour", int(NOW))
    w = rate_window(NOW, 300, q, KEEP)
    assert (w.buckets.gran, w.span_s) == ("m", 7200)
    assert w.clamped(int((NOW - 10) * 1000)).span_s == 7200  # a range asked for is not clamped
    long = build_query("2026-10-01T00:00:00Z", None, None, "day", int(NOW))
    assert rate_window(NOW, 300, long, KEEP).buckets.gran == "d"


def test_hour_buckets_name_the_newest_minutes_as_candidates() -> None:
    hour = int(NOW) // 3600 * 3600
    br = bucket_range("h", [hour - 3600, hour], NOW)
    assert br.minutes == list(range(int(NOW) // 60 * 60 - 600, int(NOW) + 1, 60))
    assert bucket_range("m", [hour], NOW).minutes == []
    assert bucket_range("h", [hour - 7200], NOW).minutes == []  # long closed: nothing left to roll up


def test_expired_buckets_are_not_read() -> None:
    day = int(NOW) // 86_400 * 86_400
    starts = [day - i * 86_400 for i in range(800)][::-1]
    assert len(retained("d", starts, NOW, KEEP)) == 731


def test_the_bucket_holding_now_counts_its_elapsed_part() -> None:
    minute = int(NOW) // 60 * 60
    assert point_span_s(minute - 60, minute, NOW, None) == 60
    assert point_span_s(minute, minute + 60, NOW, None) == 25
    assert point_span_s(minute, minute + 60, NOW, int((NOW - 10) * 1000)) == 10  # a young system
