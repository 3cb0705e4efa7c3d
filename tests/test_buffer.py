"""The emitter's buffer: what it serialises is what the wire format promises."""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.buffer import EventBuffer, _IsoClock, event_extras, iso
from aggregator.events import Event, EventType, parse_event
from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings


def test_cached_clock_writes_the_same_timestamps_as_iso() -> None:
    clock, rng = _IsoClock(), random.Random(7)
    moments = [rng.uniform(0, 4e9) for _ in range(20_000)]
    moments += [float(s) + f for s in range(1_700_000_000, 1_700_000_050) for f in (0.0, 0.0005, 0.9994999, 0.9999996)]
    for ts_s in sorted(moments):
        assert clock(ts_s).decode() == iso(ts_s), ts_s


def test_taken_events_are_valid_and_have_unique_ids() -> None:
    buffer = EventBuffer(Settings(emit_batch_size=10_000), "w1", (), 4)
    for i in range(5_000):
        buffer.append("enqueued", f"j{i}", f"q{i % 7}", 1_700_000_000 + i / 1000, b'"priority":"high"')
    taken = buffer.take(4)
    events = [parse_event(body, 65_536) for _, _, body in taken]
    assert all(isinstance(e, Event) for e in events)
    assert len({e.event_id for e in events if isinstance(e, Event)}) == 5_000
    assert orjson.loads(taken[1][2])["timestamp"] == "2023-11-14T22:13:20.001Z"
    other = EventBuffer(Settings(), "w1", (), 4)
    other.append("enqueued", "j0", "q0", None, None)
    assert orjson.loads(other.take(4)[0][2])["event_id"] != orjson.loads(taken[0][2])["event_id"]


def test_the_cached_clock_is_exact_when_time_jumps_back_and_forth() -> None:
    clock, rng = _IsoClock(), random.Random(11)
    base = 1_700_000_000.0
    for _ in range(20_000):  # mostly the same few seconds and milliseconds, in any order
        ts_s = base + rng.choice((0, 1, 2, 500)) + rng.choice((0.0, 0.0009999, 0.9994999, 0.9999995, rng.random()))
        assert clock(ts_s).decode() == iso(ts_s), ts_s


names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)  # quotes, backslashes, controls


@settings(max_examples=300, deadline=None)
@given(
    job_id=names, queue=names, worker_id=names,
    ts_s=st.floats(min_value=0, max_value=4e9),
    event_type=st.sampled_from([t.value for t in EventType]),
    fields=st.fixed_dictionaries({}, optional={
        "priority": names, "processing_time_ms": st.integers(-5, 2**40), "wait_time_ms": st.integers(0, 10**6),
        "error": names, "error_type": names, "attempt": st.integers(1, 100), "job_type": names,
        "metadata": st.dictionaries(names, names, max_size=3),
    }),
)
def test_each_body_is_the_json_orjson_writes_of_the_event(
    job_id: str, queue: str, worker_id: str, ts_s: float, event_type: str, fields: dict[str, Any]
) -> None:
    """The JSON written field by field is byte for byte orjson's of the dict the wire format describes."""
    buffer = EventBuffer(Settings(), worker_id, (), 4)
    buffer.append(event_type, job_id, queue, ts_s, event_extras(**fields))
    [(stream, name, body)] = buffer.take(4)
    extras = orjson.loads(b"{%s}" % event_extras(**fields)) if event_extras(**fields) else {}
    expected = {"event_id": orjson.loads(body)["event_id"], "job_id": job_id, "queue_name": queue,
                "event_type": event_type, "timestamp": iso(ts_s), "worker_id": worker_id, **extras}
    assert body == orjson.dumps(expected)
    assert (stream, name) == (Keys("jp").stream(partition_of(queue, 4)), b"event")


def test_an_event_that_cannot_be_written_is_dropped_alone_and_counted() -> None:
    buffer = EventBuffer(Settings(), "w1", (), 4)
    buffer.append("enqueued", "j1", "q", None, None)
    buffer.append("enqueued", "bad\ud800", "q", None, None)  # a lone surrogate is not UTF-8
    buffer.append("enqueued", "j3", "q", float("nan"), None)
    buffer.append("enqueued", "j4", "q", None, None)
    taken = buffer.take(4)
    assert [orjson.loads(body)["job_id"] for _, _, body in taken] == ["j1", "j4"]
    assert buffer.dropped == 2


def test_a_renamed_worker_writes_its_new_id() -> None:
    buffer = EventBuffer(Settings(), "before", (), 4)
    buffer.append("enqueued", "j1", "q", None, None)
    assert orjson.loads(buffer.take(4)[0][2])["worker_id"] == "before"
    buffer.worker_id = "after"  # as ProcessEmitter does in a forked child
    buffer.append("enqueued", "j2", "q", None, None)
    assert orjson.loads(buffer.take(4)[0][2])["worker_id"] == "after"
