"""/ws: hammerwork-web's WebSocket, as its dashboard reads it: `stats_update` (the overview) and
`queue_update` (a queue whose counts changed) pushed on the live stream's interval, `pong` for `ping`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
import redis
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from api.deps import new_store
from api.envelope import redis_problem
from api.hammerwork import queue_infos
from api.hammerwork_models import QueueInfo, QueueUpdateStats
from api.report import Reporter
from api.state import AppState

router = APIRouter(tags=["websocket"])
WS_QUEUES = 50  # queues watched for queue_update: the first page of GET /api/queues
TRY_AGAIN_LATER = 1013  # WebSocket close code
# what a client sends -> what it gets back: the dashboard's lower-case ping, hammerwork's own Ping
PONGS = {"ping": b'{"type":"pong"}', "Ping": b'{"type":"Pong"}'}


def queue_update(info: QueueInfo, now: datetime) -> bytes:
    """A `queue_update` message (hammerwork-web's QueueUpdate fields, the dashboard's type name)."""
    stats = QueueUpdateStats(
        pending_count=info.pending_count, running_count=info.running_count, completed_count=info.completed_count,
        failed_count=info.failed_count, dead_count=info.dead_count, throughput_per_minute=info.throughput_per_minute,
        avg_processing_time_ms=info.avg_processing_time_ms, error_rate=info.error_rate, updated_at=now)
    return orjson.dumps({"type": "queue_update", "queue_name": info.name, "stats": stats.model_dump(mode="json")})


class _Pusher:
    """One connection's pushes; sends are serialised (the pusher and the ping answers share the socket)."""

    def __init__(self, ws: WebSocket, state: AppState) -> None:
        self.ws, self.state = ws, state
        self.lock = asyncio.Lock()
        self.counts: dict[str, tuple[int, ...]] = {}  # queue -> counts last sent

    async def send(self, message: bytes) -> None:
        async with self.lock:
            await self.ws.send_text(message.decode())

    async def run(self) -> None:
        state = self.state
        while True:
            reporter = Reporter(await new_store(state), state.settings, state.started_s, state.clock())
            try:
                overview = await reporter.overview(None)
                names = (await reporter.store.queue_names())[:WS_QUEUES]
                infos = [info for info, _ in await queue_infos(reporter, names)]
            except (redis.RedisError, OSError) as exc:
                await self.send(orjson.dumps({"type": "error", "error": redis_problem(exc)}))
            else:
                await self.send(b'{"type":"stats_update","data":' + overview.model_dump_json().encode() + b"}")
                now = datetime.now(UTC)
                for info in infos:
                    counts = (info.pending_count, info.running_count, info.completed_count, info.failed_count,
                              info.dead_count)
                    if self.counts.get(info.name) != counts:
                        self.counts[info.name] = counts
                        await self.send(queue_update(info, now))
            await asyncio.sleep(state.settings.stream_interval_s)


@router.websocket("/ws")
async def websocket(ws: WebSocket) -> None:
    """hammerwork-web's WebSocket, read-only: pushes stats, answers pings, ignores everything else."""
    state: AppState = ws.app.state.jobpulse
    if not state.streams.take():
        await ws.close(code=TRY_AGAIN_LATER, reason=f"too many live streams (limit {state.streams.limit})")
        return
    try:
        await ws.accept()
        pusher = _Pusher(ws, state)
        task = asyncio.create_task(pusher.run())
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                try:
                    kind = orjson.loads(message.get("text") or b"").get("type")
                except (orjson.JSONDecodeError, AttributeError):
                    continue  # binary, or not a message of ours: ignored, as hammerwork-web does
                if isinstance(kind, str) and kind in PONGS:
                    await pusher.send(PONGS[kind])
        except WebSocketDisconnect:
            pass
        finally:
            task.cancel()
    finally:
        state.streams.give_back()
