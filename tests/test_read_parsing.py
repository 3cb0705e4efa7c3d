"""The read side's parsing shortcuts give what the plain ways give: Tally's remembered field names,
a flat reply's field lookup, and response models built without pydantic's per-field lookups."""

from __future__ import annotations

import random

from aggregator import sketch
from api.construct import built
from api.models import Latency, QueueStats
from api.records import flat_int
from api.stats import Tally, percentiles


def _flat(fields: dict[str, int]) -> list[bytes]:
    return [x for k, v in fields.items() for x in (k.encode(), str(v).encode())]


def test_a_tally_reads_every_kind_of_field_the_same_the_first_and_the_second_time() -> None:
    stored = {"n:completed": 3, "n:failed": 1, "p:high": 2, "ps:12": 4, "ps:-3": 1, "ws:7": 2, "ph:3": 1, "wh:0": 5,
              "pt_sum": 120, "pt_n": 4, "pt_max": 70, "wt_sum": 9, "wt_n": 2, "wt_max": 8, "first_ms": 1, "last_ms": 2,
              "t:completed:mod:task": 3, "t:failed:other": 1, "something_new": 5}
    flat = _flat(stored)
    first, second = (Tally().add_flat(zip(flat[::2], flat[1::2], strict=True)) for _ in range(2))
    assert first == second == Tally(
        counts={"completed": 3, "failed": 1}, priorities={"high": 2}, pt_sum=120, pt_n=4, pt_max=70, wt_sum=9,
        wt_n=2, wt_max=8, processing={12: 4, -3: 1}, wait={7: 2}, processing_hist={3: 1}, wait_hist={0: 5},
        job_types={"mod:task": {"completed": 3}, "other": {"failed": 1}})


def test_sums_add_and_maxima_keep_the_larger_across_hashes() -> None:
    t = Tally()
    for stored in ({"pt_sum": 5, "pt_max": 9, "n:completed": 1}, {"pt_sum": 7, "pt_max": 4, "n:completed": 2}):
        flat = _flat(stored)
        t.add_flat(zip(flat[::2], flat[1::2], strict=True))
    assert (t.pt_sum, t.pt_max, t.counts) == (12, 9, {"completed": 3})


def test_a_field_is_found_only_at_a_field_position() -> None:
    flat = [b"a", b"first_ms", b"first_ms", b"42"]
    assert flat_int(flat, b"first_ms") == 42
    assert flat_int(flat, b"last_ms") is None


def test_a_built_model_serialises_as_one_made_by_model_construct() -> None:
    lat = built(Latency, p50=1.5, p95=None, p99=3.0)
    assert lat.model_dump_json() == Latency.model_construct(p50=1.5, p95=None, p99=3.0).model_dump_json()
    values = dict(name="q", pending=1, running=0, completed_total=3, failed_total=1, dead_total=0,
                  throughput_per_minute=0.5, avg_processing_time_ms=2.0, error_rate=0.25,
                  oldest_pending_age_seconds=None, priority_distribution={"high": 100.0}, enqueued_total=4,
                  retried_total=0, timed_out_total=0, cancelled_total=0, processing_time_ms=lat, wait_time_ms=lat,
                  job_types={"t": {"completed": 3}})
    assert built(QueueStats, **values).model_dump_json() == QueueStats.model_construct(**values).model_dump_json()
    assert built(QueueStats, **values).model_fields_set == set(values)


def test_a_model_given_fewer_fields_than_it_has_is_left_to_pydantic() -> None:
    partial = built(Latency, p50=1.0)  # p95 and p99 missing: model_construct, which leaves them unset
    assert partial.model_fields_set == {"p50"}


def test_percentiles_from_one_pass_are_sketch_quantiles() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        bins = {rng.choice([rng.randint(-50, 600), sketch.ZERO_BIN]): rng.randint(0, 50)
                for _ in range(rng.randint(0, 60))}
        assert percentiles(bins) == {f"p{round(q * 100)}": sketch.quantile(bins, q) for q in (0.5, 0.95, 0.99)}
