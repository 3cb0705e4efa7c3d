"""The emitter's buffer: what it serialises is what the wire format promises."""

from __future__ import annotations

import random

import orjson

from aggregator.buffer import EventBuffer, _IsoClock, iso
from aggregator.events import Event, parse_event
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
