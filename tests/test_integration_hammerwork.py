"""The hammerwork bridge: webhook deliveries shaped as hammerwork serialises
its JobLifecycleEvent, signed as hammerwork signs them, end to end into the API."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from starlette.testclient import TestClient

from aggregator.connection import RedisTarget
from aggregator.embedded import free_port
from aggregator.integrations.hammerwork import SIGNATURE_HEADER, create_bridge, signature
from aggregator.keys import Keys
from aggregator.settings import Settings
from tests.integration_harness import Stats, unreachable_redis_url

SECRET = "s3cret"


def hammerwork_event(job_id: str, queue: str, event_type: str, **extra: Any) -> dict[str, Any]:
    """A JobLifecycleEvent as serde serialises it (every field present, priority capitalised)."""
    return {"event_id": str(uuid.uuid4()), "job_id": job_id, "queue_name": queue, "event_type": event_type,
            "priority": "High", "timestamp": datetime.now(UTC).isoformat(), "processing_time_ms": None,
            "error": None, "payload": {"to": "a@example.com"}, "metadata": {"tenant": "acme"}, **extra}


def post(bridge: TestClient, body: bytes, secret: str | None = SECRET) -> Any:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    return bridge.post("/hammerwork/events", content=body, headers=headers)


def test_signed_deliveries_are_counted_and_bad_ones_refused_or_dead_lettered(
    settings: Settings, client: redis.Redis
) -> None:
    settings = settings.model_copy(update={"hammerwork_secret": SECRET})
    with Stats(settings) as stats, TestClient(create_bridge(settings, RedisTarget(settings.redis_url))) as bridge:
        jobs = [str(uuid.uuid4()) for _ in range(3)]
        for job in jobs:
            assert post(bridge, orjson.dumps(hammerwork_event(job, "emails", "enqueued"))).status_code == 202
        batch = [hammerwork_event(jobs[0], "emails", "started"),
                 hammerwork_event(jobs[0], "emails", "completed", processing_time_ms=1500),
                 hammerwork_event(jobs[1], "emails", "started"),
                 hammerwork_event(jobs[1], "emails", "failed", processing_time_ms=20, error={
                     "message": "SMTP refused", "error_type": "SmtpError", "details": None, "retry_attempt": 1})]
        assert post(bridge, orjson.dumps(batch)).json() == {"accepted": 4}

        forged = orjson.dumps(hammerwork_event(jobs[2], "emails", "completed"))
        assert post(bridge, forged, secret="wrong").status_code == 401
        assert post(bridge, forged, secret=None).status_code == 401
        assert post(bridge, b"{not json").status_code == 202  # kept, for the dead-letter stream

        overview = stats.overview()
        assert (overview["total_jobs"], overview["completed_jobs"], overview["failed_jobs"]) == (3, 1, 1)
        assert (overview["pending_jobs"], overview["dead_letters"]) == (1, 1)
        dead = client.xrange(Keys(settings.key_prefix).deadletter(0))
        assert len(dead) == 1 and b"{not json" in dead[0][1][b"entry"]


def test_deliveries_before_any_aggregator_are_kept(settings: Settings, client: redis.Redis) -> None:
    """The bridge stores P itself on a fresh prefix instead of refusing; the first aggregator counts all."""
    with TestClient(create_bridge(settings, RedisTarget(settings.redis_url))) as bridge:
        events = [hammerwork_event(f"j{i}", "early", "enqueued") for i in range(5)]
        assert post(bridge, orjson.dumps(events), secret=None).json() == {"accepted": 5}
    assert client.hget(Keys(settings.key_prefix).meta, "partitions") == str(settings.partitions).encode()
    with Stats(settings) as stats:
        assert stats.overview()["total_jobs"] == 5


def test_redis_down_answers_503_so_hammerwork_retries(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": unreachable_redis_url()})
    with TestClient(create_bridge(down)) as bridge:
        resp = post(bridge, orjson.dumps(hammerwork_event("j", "q", "enqueued")), secret=None)
    assert resp.status_code == 503 and "Redis unavailable" in resp.json()["error"]


def test_the_bridge_refuses_a_public_address_without_a_secret() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_")}
    env["JOBPULSE_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    run = subprocess.run([sys.executable, "-m", "aggregator", "hammerwork-bridge", "--host", "0.0.0.0", "--port",
                          str(free_port())], env=env, capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "refusing to accept events on 0.0.0.0 unsigned" in run.stderr
