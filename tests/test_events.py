"""Bad input on real Redis: each malformed entry is dead-lettered with a reason; good ones all count."""

from __future__ import annotations

import time

import orjson
import redis

from aggregator.consumer import Aggregator
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
