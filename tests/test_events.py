"""Bad input on real Redis: each malformed entry is dead-lettered with a reason; good ones all count."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.consumer import Aggregator
from aggregator.events import Rejected, fast_event, model_event
from aggregator.keys import Keys
from aggregator.settings import Settings
from tests.workload import event

GOOD = [event(f"g{i}", "q", "enqueued", int(time.time() * 1000)) for i in range(6)]
BAD: list[tuple[bytes, str]] = [
    (b"not json", "Invalid JSON"),
    (orjson.dumps({"job_id": "x", "queue_name": "q", "event_type": "enqueued", "timestamp": "2026-01-01T00:00:00Z"}),
     "event_id"),
    (orjson.dumps({**GOOD[0], "event_id": "w1", "processing_time_ms": "12"}), "processing_time_ms"),
    (orjson.dumps({**GOOD[0], "event_id": "w2", "event_type": "exploded"}), "event_type"),
    (b'{"event_id": "' + b"x" * 1_048_576 + b'"}', "too large"),
    (b'{"event_id": "\xff\xfe", "job_id": "j"}', "unicode"),
    (orjson.dumps({**GOOD[0], "event_id": "w3", "queue_name": ""}), "queue_name"),
]


def test_malformed_entries_go_to_the_dead_letter_stream(settings: Settings, client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    one = settings.model_copy(update={"partitions": 1})
    agg = Aggregator(one, client)
    stream = keys.stream(0)
    for good, (bad, _) in zip(GOOD, BAD, strict=False):
        client.xadd(stream, {"event": orjson.dumps({k: v for k, v in good.items() if k != "_ts_ms"})})
        client.xadd(stream, {"event": bad})
    client.xadd(stream, {"something": "else"})
    for bad, _ in BAD[len(GOOD):]:
        client.xadd(stream, {"event": bad})
    agg.run(drain=True)
    dead = client.xrange(keys.deadletter(0))
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert len(dead) == len(BAD) + 1
    for (_, needle), reason in zip(BAD, [r for r in reasons if "no 'event' field" not in r], strict=False):
        assert needle.lower() in reason.lower(), (needle, reason)
    assert any("no 'event' field" in r for r in reasons)
    assert client.hget(keys.totals(0, "q"), "n:enqueued") == str(len(GOOD)).encode()
    wm = client.hgetall(keys.watermark(0))
    assert int(wm[b"dead_letters"]) == len(BAD) + 1 and int(wm[b"events"]) == len(GOOD)


# A valid event, then at most a few fields swapped for edge values, valid or not.
_VALID = {
    "event_id": st.text(min_size=1, max_size=100),
    "job_id": st.text(min_size=1, max_size=200),
    "queue_name": st.sampled_from(["q", "ü {a}:b", "x" * 200]),
    "event_type": st.sampled_from(["enqueued", "started", "completed", "failed", "dead", "timed_out"]),
    "timestamp": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    "priority": st.sampled_from(["HIGH", "low", "Normal", "critical", "background"]),
    "processing_time_ms": st.integers(0, 10**9) | st.none(),
    "wait_time_ms": st.integers(0, 10**9),
    "attempt": st.integers(1, 9),
    "worker_id": st.text(max_size=200),
    "job_type": st.text(max_size=200) | st.none(),
    "metadata": st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2),
    "error": st.fixed_dictionaries({"message": st.text(max_size=5)}, optional={
        "error_type": st.none() | st.text(max_size=200), "retry_attempt": st.integers(0, 2)}),
    "payload": st.recursive(st.none() | st.integers(), lambda c: st.lists(c, max_size=2), max_leaves=4),
}
_EDGE = (st.none() | st.booleans() | st.integers(-2, 2) | st.integers(2**63, 2**70) | st.floats()
         | st.sampled_from(["", "x" * 101, "x" * 201, "Failed", "urgent", "2026-11-28T10:00:00",
                            "2026-02-30T10:00:00Z", "2026-11-28T24:00:00Z", "2026-11-28 10:00:00Z",
                            "2026-11-28T10:00:00.1234567Z", "2026-11-28T10:00:00+25:00"])
         | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@st.composite
def _bodies(draw: st.DrawFn) -> dict[str, object]:
    body = draw(st.fixed_dictionaries({k: v for k, v in _VALID.items() if k in _REQUIRED},
                                      optional={k: v for k, v in _VALID.items() if k not in _REQUIRED}))
    for name in draw(st.lists(st.sampled_from([*_VALID, "error.message", "error.error_type"]), max_size=2)):
        if name.startswith("error."):
            error = body.get("error")
            body["error"] = {**(error if isinstance(error, dict) else {}), name[6:]: draw(_EDGE)}
        else:
            body[name] = draw(_EDGE)
    return body


_REQUIRED = ("event_id", "job_id", "queue_name", "event_type", "timestamp")


@settings(max_examples=2000, deadline=None)
@given(_bodies())
def test_fast_path_agrees_with_the_model(body: dict[str, object]) -> None:
    raw = json.dumps(body).encode()  # unlike orjson, writes ints past 64 bits and NaN
    fast = fast_event(raw)
    model = model_event(raw)
    if fast is not None:  # where the fast path answers, it answers exactly as the model
        assert fast == model
    else:
        assert model is not None


def test_fast_path_takes_the_emitters_events() -> None:
    for body in GOOD:
        assert fast_event(orjson.dumps({k: v for k, v in body.items() if k != "_ts_ms"})) is not None


_BASE = {"event_id": "e", "job_id": "j", "queue_name": "q", "event_type": "failed",
         "timestamp": "2026-11-28T10:00:00Z", "error": {"message": "boom"}}
_BOUNDARIES = [
    *({name: "x" * n} for name, limit in (("event_id", 100), ("job_id", 200), ("queue_name", 200),
                                         ("worker_id", 200), ("job_type", 200)) for n in (limit, limit + 1)),
    *({name: n} for name, low in (("processing_time_ms", 0), ("wait_time_ms", 0), ("attempt", 1))
      for n in (low - 1, low)),
    {"error": {"message": "x" * 10_000}}, {"error": {"message": "x" * 10_001}},
    {"error": {"message": "m", "error_type": "x" * 200}}, {"error": {"message": "m", "error_type": "x" * 201}},
    {"error": {"message": "m", "retry_attempt": -1}}, {"error": {"message": "m", "retry_attempt": 0}},
]


@pytest.mark.parametrize("change", _BOUNDARIES, ids=lambda c: f"{next(iter(c))}")
def test_fast_path_agrees_at_each_limit(change: dict[str, object]) -> None:
    raw = orjson.dumps({**_BASE, **change})
    fast, model = fast_event(raw), model_event(raw)
    assert fast is None or fast == model
    assert (fast is None) == isinstance(model, Rejected)  # every valid boundary case takes the fast path


_TIMESTAMPS = ["2026-11-28T10:00:00.123Z", "2026-11-28T10:00:00Z", "2026-11-28T10:00:00.5+01:00",
               "2026-11-28T10:00:00.123456-03:30", "2026-02-30T10:00:00.123Z", "2026-11-28T25:00:00.123Z",
               "2026-11-28T10:00:00.1\u0663\u0663Z", "2026-11-28T10:00:00.1234567Z", "2026-11-28 10:00:00.123Z",
               "2026-11-28T10:00:00.123z", "1969-12-31T23:59:59.999Z", "2026-11-28T10:00:00.123",
               # a new second of a minute already read, and seconds and minutes out of range
               "2026-11-28T10:00:59.999Z", "2026-11-28T10:00:60.123Z", "2026-11-28T10:00:5\u0663.123Z",
               "2026-11-28T10:60:00.123Z", "2026-11-28T10:0\u0663:01.123Z"]


@pytest.mark.parametrize("ts", _TIMESTAMPS)
def test_fast_path_reads_timestamps_exactly_as_the_model(ts: str) -> None:
    raw = orjson.dumps({**_BASE, "timestamp": ts})
    fast, model = fast_event(raw), model_event(raw)
    assert fast is None or fast == model
    if fast is not None:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        assert fast.ts_ms == (datetime.fromisoformat(ts) - epoch) // timedelta(milliseconds=1)
