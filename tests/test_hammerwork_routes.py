"""hammerwork-web's queue, job, throughput and archive routes on real Redis: their shapes (the fixture
tests/fixtures/hammerwork_web_shapes.json), the same numbers as /api/stats, the bounded recent-jobs
record, 404s, 405s for every changing route and 422s naming the parameter."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from aggregator.consumer import Aggregator
from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings
from api.main import create_app
from tests.helpers import FIXTURES, check_shape
from tests.workload import event, publish

SHAPES = json.loads((FIXTURES / "hammerwork_web_shapes.json").read_text())
NOW_S = float(int(time.time()))
T0 = int(NOW_S * 1000) - 120_000  # two minutes ago: inside the rate window
JOBS_CAP, FAILURES_CAP = 4, 2


def _workload() -> list[dict[str, Any]]:
    def ev(job: str, queue: str, kind: str, dt_ms: int, **extra: Any) -> dict[str, Any]:
        return event(job, queue, kind, T0 + dt_ms, **extra)

    return [
        ev("e1", "email", "enqueued", 0, priority="high"),
        ev("e1", "email", "started", 1000, attempt=1, wait_time_ms=1000),
        ev("e1", "email", "completed", 1500, processing_time_ms=500),
        ev("e2", "email", "enqueued", 10),
        ev("e2", "email", "started", 1010, attempt=1),
        ev("e2", "email", "failed", 1200, processing_time_ms=190, error={"message": "SMTP timeout after 30 s"}),
        ev("e2", "email", "retried", 2000),
        ev("e2", "email", "started", 3000, attempt=2),
        ev("e2", "email", "dead", 3500, processing_time_ms=500, error={"message": "gave up", "retry_attempt": 2}),
        ev("e3", "email", "enqueued", 20, priority="low"),  # pending; the oldest activity: out of the index
        ev("e4", "email", "enqueued", 30, priority="critical"),
        ev("e4", "email", "started", 1030),  # running
        ev("e5", "email", "enqueued", 40),
        ev("e5", "email", "started", 1040),
        ev("e5", "email", "timed_out", 2000, processing_time_ms=960, error={"message": "timed out"}),
        ev("r1", "reports", "enqueued", 100),
        ev("r2", "reports", "enqueued", 110),
        ev("r2", "reports", "started", 200),
        ev("r2", "reports", "completed", 300, processing_time_ms=100),
        ev("r2", "reports", "archived", 5000),
        ev("r3", "reports", "enqueued", 120),
        ev("r3", "reports", "cancelled", 400),
        ev("r4", "reports", "enqueued", 130),
        ev("r4", "reports", "started", 140),
        ev("r4", "reports", "completed", 150, processing_time_ms=10),
        ev("r4", "reports", "archived", 4000),
        ev("r4", "reports", "restored", 6000),
        *[e for i in range(6) for e in (ev(f"b{i}", "billing", "enqueued", 1000 * i),
                                         ev(f"b{i}", "billing", "started", 1000 * i + 5),
                                         ev(f"b{i}", "billing", "completed", 1000 * i + 9, processing_time_ms=4))],
    ]


@pytest.fixture
def api(settings: Settings, client: redis.Redis) -> Iterator[TestClient]:
    settings = settings.model_copy(update={"recent_jobs_per_queue": JOBS_CAP,
                                           "recent_failures_per_queue": FAILURES_CAP})
    publish(client, Keys(settings.key_prefix), settings.partitions, _workload())
    Aggregator(settings, client).run(drain=True)
    # one fixed clock: the stats routes and these answer for the same moment
    with TestClient(create_app(settings, clock=lambda: NOW_S)) as tc:
        yield tc


def _data(api: TestClient, path: str, **params: Any) -> Any:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["error"] is None
    return body["data"]


def _ms(moment: str) -> int:
    return int(datetime.fromisoformat(moment).timestamp() * 1000)


def test_each_route_has_hammerwork_webs_shape_and_the_dashboards_reads(api: TestClient) -> None:
    for route, shape in SHAPES["routes"].items():
        path = route.replace("{name}", "email").replace("{id}", "e2")
        check_shape(_data(api, path), shape, SHAPES, path)
    for path, reads in SHAPES["dashboard_reads"].items():
        route, _, query = path.partition("?")
        data = _data(api, route, **dict(p.split("=") for p in query.split("&") if p))
        check_shape(data, reads, SHAPES, path)
    assert _data(api, "/api/queues")["queues"] and _data(api, "/api/jobs")["jobs"]
    assert _data(api, "/api/archive/jobs")["items"] and _data(api, "/api/queues/email")["recent_errors"]


def test_every_number_is_the_stats_routes(api: TestClient) -> None:
    overview = _data(api, "/api/stats/overview")
    assert (overview["error_rate"], overview["throughput"], overview["avg_processing_time"]) == (
        overview["overall_error_rate"], overview["overall_throughput"], overview["avg_processing_time_ms"])
    assert overview["error_rate"] > 0 and overview["throughput"] > 0
    detailed = {q["name"]: q for q in _data(api, "/api/stats/detailed")["queue_stats"]}
    queues = _data(api, "/api/queues")
    assert queues["items"] == queues["queues"] and [q["name"] for q in queues["items"]] == sorted(detailed)
    for info in queues["items"]:
        q = detailed[info["name"]]
        assert (info["pending_count"], info["running_count"], info["completed_count"], info["failed_count"],
                info["dead_count"], info["avg_processing_time_ms"], info["throughput_per_minute"],
                info["error_rate"]) == (q["pending"], q["running"], q["completed_total"], q["failed_total"],
                                        q["dead_total"], q["avg_processing_time_ms"], q["throughput_per_minute"],
                                        q["error_rate"])
        assert info["is_paused"] is False and info["paused_at"] is None and info["paused_by"] is None
    email = _data(api, "/api/queues/email")
    assert email["queue_info"] == next(i for i in queues["items"] if i["name"] == "email")
    assert email["queue_info"]["oldest_pending_job"] is not None  # e3
    assert email["priority_breakdown"] == {"background": 0, "low": 1, "normal": 2, "high": 1, "critical": 1}
    assert email["status_breakdown"] | {"pending": 1, "running": 1} == email["status_breakdown"]
    assert (email["status_breakdown"]["failed"], email["status_breakdown"]["dead"]) == (2, 1)
    trends = _data(api, "/api/stats/trends", queues="email")
    assert email["hourly_throughput"] == [{k: t[k] for k in ("hour", "completed", "failed")} for t in trends]
    for period, granularity, hours in (("1h", "minute", 1), ("24h", "hour", 24), ("7d", "hour", 168)):
        chart = _data(api, "/api/stats/throughput", period=period)
        start = datetime.fromtimestamp(NOW_S - hours * 3600, UTC).isoformat()
        end = datetime.fromtimestamp(NOW_S, UTC).isoformat()
        trend = _data(api, "/api/stats/trends", start=start, end=end, granularity=granularity)
        assert chart["datapoints"] == [{"timestamp": t["hour"], "value": t["throughput"]} for t in trend], period
        assert any(p["value"] for p in chart["datapoints"])


def test_recent_failures_are_the_newest_of_each_queue_with_their_message(api: TestClient) -> None:
    errors = _data(api, "/api/queues/email")["recent_errors"]
    # three failures, the record keeps two: e2's dead (3.5 s) and e5's timeout (2 s), newest first
    assert [(e["job_id"], e["error_message"], e["event_type"], e["attempts"]) for e in errors] == [
        ("e2", "gave up", "dead", 2), ("e5", "timed out", "timed_out", None)]
    assert _ms(errors[0]["occurred_at"]) == T0 + 3500


def test_jobs_are_the_recent_record_filtered_and_paged(api: TestClient) -> None:
    email = _data(api, "/api/jobs", queue="email")
    # five jobs, the queue's index keeps the four most recently active: e3 (last seen at enqueue) is out
    assert sorted(j["id"] for j in email["jobs"]) == ["e1", "e2", "e4", "e5"] and email["items"] == email["jobs"]
    assert [j["id"] for j in email["jobs"]] == ["e5", "e4", "e2", "e1"]  # newest created first
    assert email["pagination"] == {"page": 1, "limit": 50, "offset": 0, "total": 4, "total_pages": 1,
                                   "has_next": False, "has_prev": False}
    statuses = {j["id"]: j["status"] for j in _data(api, "/api/jobs", limit=100)["jobs"]}
    assert statuses == {"e1": "Completed", "e2": "Dead", "e4": "Running", "e5": "TimedOut", "r1": "Pending",
                        "r2": "Archived", "r3": "Cancelled", "r4": "Pending", "b2": "Completed",
                        "b3": "Completed", "b4": "Completed", "b5": "Completed"}
    assert {j["id"] for j in _data(api, "/api/jobs", status="failed")["jobs"]} == {"e2", "e5"}
    assert [j["id"] for j in _data(api, "/api/jobs", status="DEAD")["jobs"]] == ["e2"]
    assert [j["id"] for j in _data(api, "/api/jobs", priority="Critical")["jobs"]] == ["e4"]
    assert [j["id"] for j in _data(api, "/api/jobs", search="SMTP")["jobs"]] == []  # e2's last error is "gave up"
    assert [j["id"] for j in _data(api, "/api/jobs", search="gave")["jobs"]] == ["e2"]
    page = _data(api, "/api/jobs", queue="email", limit=3, page=2, sort_order="asc")
    assert [j["id"] for j in page["jobs"]] == ["e5"]
    assert page["pagination"] == {"page": 2, "limit": 3, "offset": 3, "total": 4, "total_pages": 2,
                                  "has_next": False, "has_prev": True}
    after = datetime.fromtimestamp((T0 + 25) / 1000, UTC).isoformat()
    assert {j["id"] for j in _data(api, "/api/jobs", queue="email", created_after=after)["jobs"]} == {"e4", "e5"}


def test_a_job_by_id_says_what_its_events_said_and_nulls_the_rest(api: TestClient) -> None:
    e2 = _data(api, "/api/jobs/e2")
    assert (e2["queue_name"], e2["status"], e2["priority"], e2["attempts"], e2["error_message"],
            e2["processing_time_ms"]) == ("email", "Dead", "Normal", 2, "gave up", 500)
    assert [_ms(e2[k]) for k in ("created_at", "started_at", "failed_at", "updated_at")] == [
        T0 + 10, T0 + 3000, T0 + 3500, T0 + 3500]
    assert all(e2[k] is None for k in ("payload", "max_attempts", "scheduled_at", "completed_at", "cron_schedule",
                                       "is_recurring", "trace_id", "correlation_id"))
    assert _data(api, "/api/jobs/e1")["attempts"] == 1 and _data(api, "/api/jobs/r1")["attempts"] == 0
    # out of the queue's index of recent jobs, but by id its record still answers in full
    e3 = _data(api, "/api/jobs/e3")
    assert (e3["queue_name"], e3["status"], e3["priority"], _ms(e3["created_at"])) == ("email", "Pending", "Low",
                                                                                        T0 + 20)
    assert _ms(e3["updated_at"]) == T0 + 20
    missing = api.get("/api/jobs/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "Job 'nope' not found"


def test_a_record_stored_before_the_job_fields_existed_still_answers(settings: Settings, client: redis.Redis,
                                                                     api: TestClient) -> None:
    keys = Keys(settings.key_prefix)
    old = [("old-p", "P", 0, "email"), ("old-f", "F", 2, "email")]
    for job_id, state, rank, queue in old:  # the five-field form
        client.set(keys.job(partition_of(queue, settings.partitions), job_id),
                   json.dumps([state, T0 + 7, rank, queue, ["x"]]))
    pending, finished = _data(api, "/api/jobs/old-p"), _data(api, "/api/jobs/old-f")
    assert (pending["status"], finished["status"]) == ("Pending", "Finished")
    assert all(job[k] is None for job in (pending, finished)
               for k in ("priority", "attempts", "created_at", "started_at", "error_message", "processing_time_ms"))
    assert _ms(finished["updated_at"]) == T0 + 7


def test_archive_routes_count_the_archive_events(api: TestClient) -> None:
    archive = _data(api, "/api/archive/stats")
    stats = archive["stats"]
    assert (stats["jobs_archived"], stats["jobs_restored"]) == (2, 1)
    assert _ms(stats["last_run_at"]) == T0 + 5000 and _ms(stats["last_restored_at"]) == T0 + 6000
    assert all(stats[k] is None for k in ("jobs_purged", "bytes_archived", "bytes_purged", "compression_ratio",
                                          "operation_duration"))
    assert list(archive["by_queue"]) == ["reports"] and archive["recent_operations"] is None
    assert _data(api, "/api/archive/stats", queue="email")["stats"]["jobs_archived"] == 0
    jobs = _data(api, "/api/archive/jobs", page=1, limit=50)
    assert [(j["id"], j["status"], _ms(j["archived_at"])) for j in jobs["items"]] == [("r2", "Archived", T0 + 5000)]
    assert _data(api, "/api/archive/jobs", reason="Manual")["items"] == []


def test_unknown_queue_is_404(api: TestClient) -> None:
    response = api.get("/api/queues/nope")
    assert response.status_code == 404
    assert response.json() == {**response.json(), "success": False, "data": None, "error": "Queue 'nope' not found"}


def test_every_changing_route_is_405_read_only(api: TestClient) -> None:
    for method, route in SHAPES["read_only_routes"]:
        path = route.replace("{name}", "email").replace("{id}", "e1")
        response = api.request(method, path, json={"action": "retry"})
        assert response.status_code == 405, (method, path)
        body = response.json()
        assert body["success"] is False and body["data"] is None and "read-only statistics" in body["error"]
    assert _data(api, "/api/jobs/e1")["status"] == "Completed"  # nothing changed


@pytest.mark.parametrize(("path", "params", "name"), [
    ("/api/jobs", {"limit": "0"}, "limit"),
    ("/api/jobs", {"limit": "1001"}, "limit"),
    ("/api/jobs", {"page": "0"}, "page"),
    ("/api/jobs", {"page": "two"}, "page"),
    ("/api/jobs", {"status": "exploded"}, "status"),
    ("/api/jobs", {"status": "recurring"}, "status"),
    ("/api/jobs", {"priority": "urgent"}, "priority"),
    ("/api/jobs", {"sort_by": "scheduled_at"}, "sort_by"),
    ("/api/jobs", {"sort_order": "sideways"}, "sort_order"),
    ("/api/jobs", {"created_after": "yesterday"}, "created_after"),
    ("/api/jobs", {"created_before": "2026-01-01T00:00:00"}, "created_before"),
    ("/api/jobs", {"queue": "q" * 201}, "queue"),
    ("/api/queues", {"offset": "-1"}, "offset"),
    ("/api/archive/jobs", {"limit": "x"}, "limit"),
    ("/api/stats/throughput", {"period": "2h"}, "period"),
])
def test_bad_parameters_get_422_naming_them(api: TestClient, path: str, params: dict[str, str], name: str) -> None:
    response = api.get(path, params=params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False and body["data"] is None and f"'{name}'" in body["error"]
