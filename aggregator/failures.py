"""One flush's failures counted per error signature, queue, error type and hour, and the writes
they add up to: the hour's error hash (the fields below; ``api/store.py`` reads them; ``schema`` names
them) and each signature's sample message. Pure, like the rest of folding.

Counting first and writing once per flush matters because a failing queue fails the same way
over and over: the per-event work is one signature lookup and one dict update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aggregator import errors, schema
from aggregator.effects import Effects

if TYPE_CHECKING:
    from aggregator.events import EventError
    from aggregator.fold import FoldConfig

SAMPLE_MESSAGE_CHARS = 500
_HOUR_MS = 3_600_000


class FailureTally:
    """(signature, queue, error type, hour) -> [failures, first ms, last ms], and a sample per signature."""

    __slots__ = ("counts", "samples")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str | None, int], list[int]] = {}
        self.samples: dict[str, str] = {}  # signature -> the flush's first message of it

    def count(self, error: EventError, queue: str, ts_ms: int) -> None:
        """Count one failure that carried ``error``."""
        message = error.message
        sig = errors.signature(message)
        if sig not in self.samples:
            self.samples[sig] = message[:SAMPLE_MESSAGE_CHARS]
        key = (sig, queue, error.error_type, ts_ms // _HOUR_MS)
        got = self.counts.get(key)
        if got is None:
            self.counts[key] = [1, ts_ms, ts_ms]
            return
        got[0] += 1
        if ts_ms < got[1]:
            got[1] = ts_ms
        elif ts_ms > got[2]:
            got[2] = ts_ms

    def write(self, fx: Effects, cfg: FoldConfig) -> None:
        """Add the counted failures to their hours' error hashes and describe new signatures.

        One pattern per normalised message whatever type it came with; per queue the time
        bounds and the given types' counts, so a ``queues=`` filter shows only those queues'.
        """
        keys, p, kept_s = cfg.keys, cfg.partition, cfg.retention_s["h"]
        for (sig, queue, error_type, hour), (n, first_ms, last_ms) in self.counts.items():
            hour_s = hour * 3600
            key = keys.errors(p, hour_s)
            per_queue = f"{sig}:{queue}"
            fx.add(key, schema.ERR_COUNT + sig, n)
            fx.add(key, schema.ERR_QUEUE_COUNT + per_queue, n)
            fx.minimum(key, schema.ERR_FIRST_MS + per_queue, first_ms)
            fx.maximum(key, schema.ERR_LAST_MS + per_queue, last_ms)
            if error_type:
                fx.add(key, errors.type_field(sig, queue, error_type), n)
            fx.expire_at_s[key] = hour_s + 3600 + kept_s
        for sig, message in self.samples.items():
            sig_key = keys.error_sig(p, sig)
            fx.set_once(sig_key, schema.SIG_SAMPLE, message)
            fx.expire_s[sig_key] = kept_s + 3600
