"""Liveness and readiness probes: no auth, no envelope."""

from __future__ import annotations

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import StateDep

router = APIRouter(tags=["probes"])


@router.get("/health")
async def live() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(state: StateDep) -> JSONResponse:
    """Readiness: Redis answers (503 otherwise)."""
    try:
        await state.client().ping()
    except (redis.RedisError, OSError) as exc:
        return JSONResponse(status_code=503, content={"ready": False, "reason": f"Redis: {type(exc).__name__}"})
    return JSONResponse(content={"ready": True})
