"""/ws, hammerwork-web's WebSocket, with real clients (Starlette's test client, and the websockets
library against uvicorn): the messages its dashboard handles, with the stats routes' numbers; pings;
the live-stream bound; authentication like every route."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import uvicorn
import websockets
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from aggregator.connection import RedisTarget
from aggregator.consumer import Aggregator
from aggregator.embedded import free_port
from aggregator.emitter import Emitter
from aggregator.settings import Settings
from api.auth import key_digest
from api.main import create_app
from tests.helpers import FIXTURES, check_shape

SHAPES = json.loads((FIXTURES / "hammerwork_web_shapes.json").read_text())
NOW_S = float(int(time.time()))
KEY = "ws-test-key-0123456789abcdef"


@pytest.fixture
def loaded(settings: Settings, client: redis.Redis) -> Settings:
    """Settings over a small workload in two queues."""
    with Emitter(settings, RedisTarget(settings.redis_url), worker_id="w", concurrency=2) as em:
        for i in range(6):
            em.enqueued(f"j{i}", "email" if i % 2 else "sms")
            em.started(f"j{i}", "email" if i % 2 else "sms")
        em.completed("j1", "email", processing_time_ms=40)
        em.failed("j3", "email", error="refused", processing_time_ms=10)
    Aggregator(settings, client).run(drain=True)
    return settings.model_copy(update={"stream_interval_s": 0.05})


def _next(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(ws.receive_text())
        if message["type"] == kind:
            return message


def test_the_dashboards_messages_carry_the_stats_routes_numbers(loaded: Settings) -> None:
    with TestClient(create_app(loaded, clock=lambda: NOW_S)) as api, api.websocket_connect("/ws") as ws:
        stats = _next(ws, "stats_update")
        check_shape(stats, SHAPES["websocket"]["stats_update"], SHAPES, "stats_update")
        assert stats["data"] == api.get("/api/stats/overview").json()["data"]
        queues = {q["name"]: q for q in api.get("/api/queues").json()["data"]["items"]}
        updates = {}
        while len(updates) < len(queues):
            update = _next(ws, "queue_update")
            check_shape(update, SHAPES["websocket"]["queue_update"], SHAPES, "queue_update")
            updates[update["queue_name"]] = update["stats"]
        for name, stats_ in updates.items():
            assert {k: v for k, v in stats_.items() if k != "updated_at"} == {
                k: queues[name][k] for k in stats_ if k != "updated_at"}
        assert updates["email"]["failed_count"] == 1 and updates["sms"]["running_count"] == 3
        # pushed again every interval; a queue_update only when its counts change (they do not here)
        kinds = [json.loads(ws.receive_text())["type"] for _ in range(3)]
        assert kinds == ["stats_update"] * 3


def test_pings_get_pongs_and_anything_else_is_ignored(loaded: Settings) -> None:
    with TestClient(create_app(loaded)) as api, api.websocket_connect("/ws") as ws:
        ws.send_text("not json")
        ws.send_bytes(b"\x00\x01")
        ws.send_text('{"type": "Subscribe", "event_types": ["queue_updates"]}')
        ws.send_text("[1, 2]")
        ws.send_text('{"type": "ping"}')
        assert _next(ws, "pong") == {"type": "pong"}  # the dashboard's
        ws.send_text('{"type": "Ping"}')
        assert _next(ws, "Pong") == {"type": "Pong"}  # hammerwork-web's own clients'


def test_connections_share_the_live_stream_bound(loaded: Settings) -> None:
    bounded = loaded.model_copy(update={"stream_max_clients": 1})
    with TestClient(create_app(bounded)) as api:
        with api.websocket_connect("/ws") as ws:
            _next(ws, "stats_update")
            with pytest.raises(WebSocketDisconnect) as refused, api.websocket_connect("/ws") as second:
                second.receive_text()
            assert refused.value.code == 1013
            assert api.get("/api/stats/stream").status_code == 503  # the SSE stream counts against it too
        with api.websocket_connect("/ws") as ws:  # the slot was given back
            _next(ws, "stats_update")


def test_ws_needs_credentials_like_every_route(loaded: Settings) -> None:
    secured = loaded.model_copy(update={"api_keys": key_digest(KEY)})
    with TestClient(create_app(secured)) as api:
        with pytest.raises(WebSocketDenialResponse) as denied, api.websocket_connect("/ws"):
            pass
        assert denied.value.status_code == 401
        assert denied.value.json()["success"] is False
        with pytest.raises(WebSocketDenialResponse), api.websocket_connect("/ws", headers={"X-API-Key": "wrong"}):
            pass
        with api.websocket_connect("/ws", headers={"X-API-Key": KEY}) as ws:
            _next(ws, "stats_update")


@pytest.fixture
def server(loaded: Settings) -> Iterator[str]:
    """The app under uvicorn on a free port, as `jobpulse api` runs it; its ws:// base."""
    port = free_port()
    secured = loaded.model_copy(update={"api_keys": key_digest(KEY)})
    srv = uvicorn.Server(uvicorn.Config(create_app(secured), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_a_websockets_client_against_uvicorn(server: str) -> None:
    async def run() -> tuple[int, list[str]]:
        try:
            async with websockets.connect(server + "/ws"):
                pass
        except websockets.InvalidStatus as exc:
            refused = exc.response.status_code
        async with websockets.connect(server + "/ws", additional_headers={"X-API-Key": KEY}) as ws:
            seen = [json.loads(await ws.recv())["type"] for _ in range(2)]
            await ws.send('{"type": "ping"}')
            while (kind := json.loads(await ws.recv())["type"]) != "pong":
                seen.append(kind)
        return refused, seen

    refused, seen = asyncio.run(run())
    assert refused == 401
    assert seen[0] == "stats_update" and "queue_update" in seen
