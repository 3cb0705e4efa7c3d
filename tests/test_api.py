"""The stats API on real Redis: numbers from a scripted workload, the envelope, bad parameters, shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from aggregator.connection import RedisTarget
from aggregator.consumer import Aggregator
from aggregator.emitter import Emitter
from aggregator.settings import Settings
from api.main import create_app
from api.models import ApiResponse
from tests.helpers import FIXTURES


@pytest.fixture
def api(settings: Settings, client: redis.Redis) -> Iterator[TestClient]:
    agg = Aggregator(settings, client)
    with Emitter(settings, RedisTarget(settings.redis_url), worker_id="w", concurrency=4) as em:
        for i in range(30):
            em.enqueued(f"e{i}", "email", priority="high" if i < 10 else "normal")
        for i in range(20):
            em.started(f"e{i}", "email", wait_time_ms=100)
        for i in range(12):
            em.completed(f"e{i}", "email", processing_time_ms=200)
        for i in range(12, 16):
            em.failed(f"e{i}", "email", error=f"timeout after {i} s", processing_time_ms=1000)
        em.dead("e12", "email", error="gave up")
        for i in range(5):
            em.enqueued(f"r{i}", "reports")
    agg.run(drain=True)
    with TestClient(create_app(settings, RedisTarget(settings.redis_url))) as tc:
        yield tc


def test_overview_counts_the_workload(api: TestClient) -> None:
    body = api.get("/api/stats/overview").json()
    assert body["success"] is True and body["error"] is None
    d = body["data"]
    assert (d["total_queues"], d["total_jobs"], d["completed_jobs"], d["failed_jobs"], d["dead_jobs"]) == (
        2, 35, 12, 4, 1)
    # pending: 10 email never started + 5 reports; running: 4 started, never finished
    assert (d["pending_jobs"], d["running_jobs"]) == (15, 4)
    assert d["overall_error_rate"] == pytest.approx(5 / 17)
    assert d["avg_processing_time_ms"] == pytest.approx((12 * 200 + 4 * 1000) / 16)
    assert d["overall_throughput"] == pytest.approx(17 * 60 / d["window_seconds"])
    assert d["system_health"]["status"] == "critical"  # error rate 29 % > 20 %
    only = api.get("/api/stats/overview", params={"queues": "reports"}).json()["data"]
    assert (only["total_jobs"], only["pending_jobs"], only["completed_jobs"]) == (5, 5, 0)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"granularity": "fortnight"}, "granularity"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-01-01T00:00:00"}, "end"),
        ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "granularity": "minute"}, "granularity"),
    ],
)
def test_bad_parameters_get_422_naming_them(api: TestClient, params: dict[str, str], name: str) -> None:
    for route in ("/api/stats/detailed", "/api/stats/trends"):
        resp = api.get(route, params=params)
        assert resp.status_code == 422
        body = resp.json()
        assert body["success"] is False and body["data"] is None and f"'{name}'" in body["error"]


def _check(value: Any, shape: Any, where: str) -> None:
    if isinstance(shape, dict) and "list_of" in shape:
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _check(item, shape["list_of"], f"{where}[{i}]")
    elif isinstance(shape, dict):
        assert isinstance(value, dict), where
        for key, sub in shape.items():
            assert key in value, f"{where}.{key} missing"
            _check(value[key], sub, f"{where}.{key}")
    else:
        kinds = {
            "unsigned integer": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "string": lambda v: isinstance(v, str),
            "boolean": lambda v: isinstance(v, bool),
            "object": lambda v: isinstance(v, dict),
            "any": lambda v: True,
            "RFC 3339 date-time string": lambda v: isinstance(v, str) and "T" in v,
        }
        options = shape.split(" or ")
        ok = any(kinds[o](value) if o != "null" else value is None for o in options)
        assert ok, f"{where}: {value!r} is not {shape}"


def test_every_route_matches_hammerwork_shapes(api: TestClient) -> None:
    shapes = json.loads((FIXTURES / "hammerwork_stats_shapes.json").read_text())
    envelope = shapes["ApiResponse"]
    routes = {
        "/api/stats/overview": shapes["SystemOverview"],
        "/api/stats/detailed": shapes["DetailedStats"],
        "/api/stats/trends": {"list_of": shapes["HourlyTrend"]},
        "/api/stats/health": shapes["SystemHealth"],
    }
    for route, shape in routes.items():
        body = api.get(route).json()
        _check(body, envelope, route)
        _check(body["data"], shape, route)
    detailed = api.get("/api/stats/detailed").json()["data"]
    assert detailed["error_patterns"] and detailed["hourly_trends"] and detailed["queue_stats"]


def test_health_reports_redis_down_in_the_envelope(settings: Settings) -> None:
    dead = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(dead)) as tc:
        resp = tc.get("/api/stats/health")
        assert resp.status_code == 200
        data = resp.json()["data"]
        assert data["database_healthy"] is False and data["status"] == "critical"
        assert tc.get("/api/stats/overview").status_code == 503
        assert tc.get("/ready").status_code == 503
        assert tc.get("/health").json() == {"status": "ok"}


def test_openapi_describes_every_response_field(api: TestClient) -> None:
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    missing = [
        f"{name}.{field}"
        for name, schema in schemas.items()
        if name in {"SystemOverview", "SystemHealth", "SystemAlert", "QueueStats", "HourlyTrend", "ErrorPattern",
                    "PerformanceMetrics", "DetailedStats", "Latency"}
        for field, prop in schema.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert not missing


def test_every_body_validates_against_its_declared_model(api: TestClient) -> None:
    # the routes return pre-serialised responses, so FastAPI no longer checks them against response_model
    # FastAPI >= 0.16x keeps an included router's routes behind a wrapper: look through it
    routes = [r for top in api.app.routes  # type: ignore[attr-defined]
              for r in getattr(getattr(top, "original_router", None), "routes", [top])]
    checked = 0
    for route in routes:
        model = getattr(route, "response_model", None)
        # GET routes without path parameters; the others have their own tests (tests/test_hammerwork_routes.py)
        if (isinstance(route, APIRoute) and isinstance(model, type) and issubclass(model, ApiResponse)
                and "GET" in route.methods and "{" not in route.path):
            checked += 1
            body = api.get(route.path).content
            parsed = model.model_validate_json(body)
            assert parsed.success is True and parsed.data is not None, route.path
            assert json.loads(parsed.model_dump_json()) == json.loads(body), route.path
    assert checked >= 9
