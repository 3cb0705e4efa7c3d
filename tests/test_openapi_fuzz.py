"""schemathesis against /openapi.json: generated requests to every stats route
and every parameter (bounded examples), on an app backed by real Redis data.
No request may get a 5xx, and every response must match its declared schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.openapi.loaders import from_asgi
from schemathesis.schemas import BaseSchema

from aggregator.connection import RedisTarget
from aggregator.consumer import Aggregator
from aggregator.emitter import Emitter
from aggregator.settings import Settings
from api.main import create_app

MAX_EXAMPLES = 40  # per route: bounded so CI stays well under its time budget


@pytest.fixture
def api_schema(settings: Settings, client: redis.Redis) -> Iterator[BaseSchema]:
    """The app's OpenAPI schema, with some jobs in Redis so responses are not all empty."""
    agg = Aggregator(settings, client)
    with Emitter(settings, worker_id="fuzz-worker", concurrency=2) as em:
        for i in range(30):
            queue = ("email", "reports", "b{i}lling :ü")[i % 3]
            em.enqueued(f"j{i}", queue, priority=("low", "high", "critical")[i % 3], job_type="Send")
            em.started(f"j{i}", queue, wait_time_ms=10 * i)
            if i % 5:
                em.completed(f"j{i}", queue, processing_time_ms=5 * i)
            else:
                em.failed(f"j{i}", queue, error=f"timeout after {i} s", processing_time_ms=100)
    agg.run(drain=True)
    app = create_app(settings, RedisTarget(settings.redis_url))
    # the live stream never ends by design; it has its own tests (tests/test_stream.py)
    yield from_asgi("/openapi.json", app).exclude(path="/api/stats/stream")


def test_no_5xx_and_responses_match_their_schema(api_schema: BaseSchema) -> None:
    # Driven with hypothesis directly: schemathesis' pytest plugin does not run under this pytest.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/stats/overview", "/api/stats/detailed", "/api/stats/trends",
                                              "/api/stats/health", "/metrics", "/health", "/ready"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def check(case: schemathesis.Case) -> None:
            # A schema-valid request may still be refused with 422: start after end, or a minute
            # granularity over months, are rules across parameters that OpenAPI cannot express.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
