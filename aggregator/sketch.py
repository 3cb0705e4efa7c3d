"""DDSketch-style latency sketch: log-spaced bins with 2 % relative error.

A value ``x > 0`` falls in bin ``ceil(log_gamma(x))``; the bin's
representative value is within ``alpha`` of every value in it. Bins are
plain counts, so sketches merge by adding counts (across queues, buckets
and partitions). Zero gets a bin of its own.

The lifetime histograms (``ph:``/``wh:`` fields, exact per Prometheus
bucket) are also defined here: the write side files durations into them
and the read side exposes them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

ALPHA = 0.02
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
ZERO_BIN = -(2**31)  # stands for values <= 0
# Upper bounds of the lifetime histograms, 10 ms to 6 h; index len() is +Inf.
HISTOGRAM_BOUNDS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 120_000, 300_000,
                       600_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000)


def histogram_index(value_ms: int) -> int:
    """The histogram bucket of a duration: the first bound it does not exceed."""
    return bisect.bisect_left(HISTOGRAM_BOUNDS_MS, value_ms)


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
