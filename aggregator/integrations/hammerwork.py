"""hammerwork: its ``JobLifecycleEvent`` JSON already is jobpulse's wire format,
so the bridge forwards hammerwork's webhook deliveries to the event streams as
they are. In the hammerwork deployment::

    WebhookConfig::new("jobpulse".into(), "http://bridge-host:8001/hammerwork/events".into())
        .with_secret(secret)            // the same value as JOBPULSE_HAMMERWORK_SECRET

and run ``jobpulse hammerwork-bridge``. With a secret set, a delivery whose
``X-Hammerwork-Signature`` (``sha256=`` HMAC of the body) does not match is
refused with 401. The bridge does not validate events: the aggregator does, and
moves anything malformed to the dead-letter stream with its reason, so nothing
sent here is lost silently. While Redis is unreachable it answers 503, which
hammerwork retries.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aggregator.connection import RedisTarget, store_partitions_async
from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings

SIGNATURE_HEADER = "X-Hammerwork-Signature"
MAX_EVENTS_PER_REQUEST = 1000


def signature(secret: str, body: bytes) -> str:
    """hammerwork's signature of a webhook body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def entries(body: bytes, partitions: int, keys: Keys) -> list[tuple[str, bytes]]:
    """(stream, JSON) per event in a delivery: one event object, or a list of them.

    Anything unreadable goes to partition 0 as it came, for the aggregator to dead-letter."""

    def stream_of(event: Any) -> str:
        queue = event.get("queue_name") if isinstance(event, dict) else None
        return keys.stream(partition_of(queue, partitions) if isinstance(queue, str) else 0)

    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return [(keys.stream(0), body)]
    if not isinstance(parsed, list):
        return [(stream_of(parsed), body)]
    return [(stream_of(event), orjson.dumps(event)) for event in parsed[:MAX_EVENTS_PER_REQUEST]]


def create_bridge(settings: Settings, target: RedisTarget | None = None) -> Starlette:
    """The bridge's ASGI app: ``POST /hammerwork/events``."""
    keys = Keys(settings.key_prefix)
    client: redis.asyncio.Redis = (target or RedisTarget(settings.redis_url)).asyncio(
        socket_timeout=2.0, socket_connect_timeout=2.0)
    secret = settings.hammerwork_secret
    known: list[int] = []  # P, once read

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > settings.max_entry_bytes * MAX_EVENTS_PER_REQUEST:
            return JSONResponse({"error": "body too large"}, status_code=413)
        if secret and not hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), signature(secret, body)):
            return JSONResponse({"error": f"missing or wrong {SIGNATURE_HEADER}"}, status_code=401)
        try:
            if not known:  # stored by whichever component came first; this bridge if none did
                known.append(await store_partitions_async(client, keys, settings.partitions))
            pipe = client.pipeline(transaction=False)
            batch = entries(body, known[0], keys)
            for stream, event in batch:
                pipe.xadd(stream, {"event": event}, maxlen=settings.stream_maxlen, approximate=True)
            await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            return JSONResponse({"error": f"Redis unavailable: {type(exc).__name__}"}, status_code=503)
        return JSONResponse({"accepted": len(batch)}, status_code=202)

    return Starlette(routes=[Route("/hammerwork/events", receive, methods=["POST"])])
