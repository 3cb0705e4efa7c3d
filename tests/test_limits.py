"""Every request has a bounded cost, refused with 422 naming the parameter; a slow Redis is reported as
slow, never as unreachable; access log lines stay short."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from aggregator.connection import RedisTarget
from aggregator.settings import Settings
from api import main
from api.accesslog import MAX_REQUEST_LINE_CHARS, TruncateRequestLine
from api.limits import MAX_BUCKETS, MAX_HASH_READS, MAX_QUEUE_NAMES
from tests.redis_process import RedisProcess

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def api(settings: Settings, client: redis.Redis) -> Iterator[TestClient]:
    client.hset(f"{settings.key_prefix}:meta", "partitions", settings.partitions)
    with TestClient(main.create_app(settings, RedisTarget(settings.redis_url))) as tc:
        yield tc


def _refused(api: TestClient, route: str, params: dict[str, str], name: str) -> str:
    resp = api.get(route, params=params)
    assert resp.status_code == 422, (route, resp.text[:300])
    body = resp.json()
    assert body["success"] is False and body["data"] is None and f"'{name}'" in body["error"]
    return str(body["error"])


def _names(n: int) -> str:
    return ",".join(f"queue-{i}" for i in range(n))


@pytest.mark.parametrize("route", ["/api/stats/overview", "/api/stats/detailed", "/api/stats/trends",
                                   "/api/stats/health"])
def test_more_queue_names_than_the_limit_are_refused(api: TestClient, route: str) -> None:
    assert "at most 1000" in _refused(api, route, {"queues": _names(MAX_QUEUE_NAMES + 1)}, "queues")
    assert api.get(route, params={"queues": _names(MAX_QUEUE_NAMES)}).status_code == 200


def test_trends_over_the_read_bound_are_refused(api: TestClient) -> None:
    # 1000 queues × 73 hour buckets: more hashes than the bound
    params = {"queues": _names(1000), "granularity": "hour",
              "start": (NOW - timedelta(hours=72)).isoformat(), "end": NOW.isoformat()}
    assert str(MAX_HASH_READS) in _refused(api, "/api/stats/trends", params, "queues")
    params["start"] = (NOW - timedelta(hours=24)).isoformat()  # 25 000 reads: accepted
    assert api.get("/api/stats/trends", params=params).status_code == 200


def test_detailed_over_the_read_bound_is_refused(api: TestClient) -> None:
    # per queue, 30 days of hour buckets for its window
    params = {"queues": _names(100), "start": (NOW - timedelta(days=30)).isoformat(), "end": NOW.isoformat(),
              "granularity": "day"}
    _refused(api, "/api/stats/detailed", params, "queues")
    params["queues"] = _names(10)
    assert api.get("/api/stats/detailed", params=params).status_code == 200


def test_more_buckets_than_the_limit_are_refused(api: TestClient) -> None:
    params = {"granularity": "minute", "start": (NOW - timedelta(minutes=MAX_BUCKETS + 5)).isoformat(),
              "end": NOW.isoformat()}
    for route in ("/api/stats/detailed", "/api/stats/trends"):
        _refused(api, route, params, "granularity")


@pytest.fixture
def busy_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path).start()
    yield server
    server.stop()


def test_a_slow_redis_is_a_timeout_not_unreachable(busy_redis: RedisProcess, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    monkeypatch.setattr(main, "REDIS_TIMEOUT_S", 0.3)
    settings = Settings(redis_url=busy_redis.url, key_prefix="slow", partitions=4)
    spin = ("local t0 = redis.call('TIME') repeat local t = redis.call('TIME') "
            "until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 3000000 return 1")
    with TestClient(main.create_app(settings, RedisTarget(busy_redis.url))) as api:
        assert api.get("/api/stats/overview").status_code == 200  # answers while Redis is idle
        blocker = threading.Thread(target=lambda: redis.Redis.from_url(busy_redis.url).eval(spin, 0))
        blocker.start()
        probe = redis.Redis.from_url(busy_redis.url, socket_timeout=0.05)
        while True:  # until the script holds Redis: a PING no longer gets an answer
            try:
                probe.ping()
            except redis.TimeoutError:
                break
            time.sleep(0.01)
        try:
            slow = api.get("/api/stats/overview")
            health = api.get("/api/stats/health").json()["data"]
        finally:
            blocker.join()
        assert slow.status_code == 504
        assert "did not answer in time" in slow.json()["error"] and "unreachable" not in slow.json()["error"]
        assert health["database_healthy"] is False
        assert all("unreachable" not in a["message"] for a in health["alerts"])
        assert api.get("/api/stats/overview").status_code == 200  # and recovers


def test_access_log_lines_are_truncated() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/api/stats/overview?queues=" + "x" * 100_000, "1.1", 200),
                               None)
    assert TruncateRequestLine().filter(record)
    line = record.getMessage()
    assert len(line) < MAX_REQUEST_LINE_CHARS + 100 and "more chars" in line and line.endswith("200")


def test_the_app_installs_the_access_log_filter(api: TestClient) -> None:
    assert any(isinstance(f, TruncateRequestLine) for f in logging.getLogger("uvicorn.access").filters)
