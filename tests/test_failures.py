"""Counting a flush's failures per signature, queue, type and hour, and the writes that makes."""

from __future__ import annotations

from aggregator import errors
from aggregator.effects import Effects
from aggregator.events import EventError
from aggregator.failures import SAMPLE_MESSAGE_CHARS, FailureTally
from aggregator.fold import FoldConfig
from aggregator.keys import Keys

KEYS = Keys("t")
CFG = FoldConfig(keys=KEYS, partition=0, retention_s={"m": 600, "h": 7200, "d": 86_400}, dedup_window_s=60,
                 job_ttl_s=60, future_tolerance_ms=0)
HOUR_S = 1_800_000_000 - 1_800_000_000 % 3600


def test_failures_of_one_signature_add_up_with_their_time_bounds_per_queue() -> None:
    tally = FailureTally()
    at_ms = HOUR_S * 1000
    tally.count(EventError("boom 1", "Boom"), "q", at_ms + 500)
    tally.count(EventError("boom 22", "Boom"), "q", at_ms + 100)
    tally.count(EventError("boom 3", None), "q", at_ms + 900)
    tally.count(EventError("boom 4", "Boom"), "r", at_ms + 50)
    fx = Effects()
    tally.write(fx, CFG)
    sig = errors.signature("boom 1")
    key = KEYS.errors(0, HOUR_S)
    assert fx.incr[key] == {
        f"n:{sig}": 4,
        f"q:{sig}:q": 3,
        f"q:{sig}:r": 1,
        errors.type_field(sig, "q", "Boom"): 2,  # the untyped failure counts only in n: and q:
        errors.type_field(sig, "r", "Boom"): 1,
    }
    assert fx.hmin[key] == {f"f:{sig}:q": at_ms + 100, f"f:{sig}:r": at_ms + 50}
    assert fx.hmax[key] == {f"l:{sig}:q": at_ms + 900, f"l:{sig}:r": at_ms + 50}
    assert fx.expire_at_s[key] == HOUR_S + 3600 + 7200
    assert fx.hsetnx[KEYS.error_sig(0, sig)] == {"sample": "boom 1"}  # the flush's first message of it


def test_hours_and_signatures_are_kept_apart_and_samples_are_cut() -> None:
    tally = FailureTally()
    long = "x" * (SAMPLE_MESSAGE_CHARS + 10)
    tally.count(EventError("gave up"), "q", HOUR_S * 1000 + 3_599_999)
    tally.count(EventError("gave up"), "q", HOUR_S * 1000 + 3_600_000)
    tally.count(EventError(long), "q", HOUR_S * 1000)
    fx = Effects()
    tally.write(fx, CFG)
    gave_up, x = errors.signature("gave up"), errors.signature(long)
    assert fx.incr[KEYS.errors(0, HOUR_S)] == {f"n:{gave_up}": 1, f"q:{gave_up}:q": 1, f"n:{x}": 1, f"q:{x}:q": 1}
    assert fx.incr[KEYS.errors(0, HOUR_S + 3600)] == {f"n:{gave_up}": 1, f"q:{gave_up}:q": 1}
    assert fx.hsetnx[KEYS.error_sig(0, x)] == {"sample": long[:SAMPLE_MESSAGE_CHARS]}
