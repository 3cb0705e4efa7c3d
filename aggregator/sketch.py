"""DDSketch-style latency sketch: log-spaced bins with 2 % relative error.

A value ``x > 0`` falls in bin ``ceil(log_gamma(x))``; the bin's
representative value is within ``alpha`` of every value in it. Bins are
plain counts, so sketches merge by adding counts (across queues, buckets
and partitions). Zero gets a bin of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

ALPHA = 0.02
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
ZERO_BIN = -(2**31)  # stands for values <= 0


def bin_of(value_ms: float) -> int:
    """The bin index holding ``value_ms``."""
    if value_ms <= 0:
        return ZERO_BIN
    return math.ceil(math.log(value_ms) / _LOG_GAMMA)


def bin_value(index: int) -> float:
    """Representative value of a bin (relative error <= ALPHA for its members)."""
    if index == ZERO_BIN:
        return 0.0
    return 2 * GAMMA**index / (GAMMA + 1)


def quantile(bins: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a sketch given as bin -> count; None if empty."""
    total = sum(bins.values())
    if total <= 0:
        return None
    rank = q * (total - 1)
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen > rank:
            return bin_value(index)
    return bin_value(max(bins))  # pragma: no cover - rounding guard


def merge(sketches: Iterable[Mapping[int, int]]) -> dict[int, int]:
    """Add several sketches' bin counts together."""
    out: dict[int, int] = {}
    for sketch in sketches:
        for index, count in sketch.items():
            out[index] = out.get(index, 0) + count
    return out
