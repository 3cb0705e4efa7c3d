"""The latency sketch stays within 2 % of the exact quantile and merges by adding."""

from __future__ import annotations

import random
from collections import Counter

from aggregator import sketch


def test_quantiles_within_two_percent() -> None:
    rng = random.Random(5)
    values = sorted(rng.lognormvariate(5, 1.2) for _ in range(20_000))
    bins = Counter(sketch.bin_of(v) for v in values)
    for q in (0.5, 0.95, 0.99):
        exact = values[int(q * (len(values) - 1))]
        got = sketch.quantile(bins, q)
        assert got is not None and abs(got - exact) / exact <= sketch.ALPHA + 1e-9


def test_merge_equals_sketch_of_union_and_zero_has_a_bin() -> None:
    a, b = Counter(map(sketch.bin_of, [0, 1, 5, 10])), Counter(map(sketch.bin_of, [10, 300]))
    assert sketch.merge([a, b]) == Counter(map(sketch.bin_of, [0, 1, 5, 10, 10, 300]))
    assert sketch.quantile({sketch.ZERO_BIN: 3}, 0.5) == 0.0
    assert sketch.quantile({}, 0.5) is None
