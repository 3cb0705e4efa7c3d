"""/metrics on real Redis: valid exposition, counters equal to the API's totals, exact histogram buckets."""

from __future__ import annotations

import time
from collections import Counter

import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aggregator.consumer import Aggregator
from aggregator.keys import Keys
from aggregator.settings import Settings
from aggregator.sketch import HISTOGRAM_BOUNDS_MS
from api.main import create_app
from tests.workload import build, publish


def test_metrics_match_the_api_and_the_workload(settings: Settings, client: redis.Redis) -> None:
    events, expected = build(3_000, 4, seed=5, t0_ms=int(time.time() * 1000) - 600_000)
    publish(client, Keys(settings.key_prefix), settings.partitions, events)
    Aggregator(settings, client).run(drain=True)
    with TestClient(create_app(settings)) as api:
        response = api.get("/metrics")
        queues = {q["name"]: q for q in api.get("/api/stats/detailed").json()["data"]["queue_stats"]}
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(response.text):  # raises on malformed exposition
        for s in family.samples:
            samples[(s.name, s.labels.get("queue", ""), s.labels.get("le", ""))] = s.value
    assert set(queues) == {q for _, q, _ in samples if q}

    unique = {e["event_id"]: e for e in events}.values()
    processing: dict[str, Counter[int]] = {q: Counter() for q in queues}
    for e in unique:
        if "processing_time_ms" in e:
            processing[e["queue_name"]][e["processing_time_ms"]] += 1
    for name, q in queues.items():
        def value(metric: str, le: str = "", queue: str = name) -> float:
            return samples[(metric, queue, le)]

        assert value("jobpulse_jobs_enqueued_total") == q["enqueued_total"] == expected.counts[(name, "enqueued")]
        assert value("jobpulse_jobs_completed_total") == q["completed_total"]
        assert value("jobpulse_jobs_failed_total") + value("jobpulse_jobs_timed_out_total") == q["failed_total"]
        assert value("jobpulse_jobs_dead_total") == q["dead_total"]
        assert value("jobpulse_jobs_retried_total") == q["retried_total"]
        assert value("jobpulse_jobs_pending") == q["pending"] and value("jobpulse_jobs_running") == q["running"]
        times = processing[name]
        assert value("jobpulse_job_processing_seconds_count") == sum(times.values()) > 0
        assert abs(value("jobpulse_job_processing_seconds_sum") - sum(t * n for t, n in times.items()) / 1000) < 1e-6
        for bound_ms in HISTOGRAM_BOUNDS_MS:
            want = sum(n for t, n in times.items() if t <= bound_ms)
            assert value("jobpulse_job_processing_seconds_bucket", f"{bound_ms / 1000:g}") == want, bound_ms
        assert value("jobpulse_job_processing_seconds_bucket", "+Inf") == sum(times.values())
    assert samples[("jobpulse_lost_events_total", "", "")] == 0
    assert "job_id" not in response.text and "worker_id" not in response.text  # labels stay low-cardinality
