"""The hammerwork-web envelope, and errors rendered inside it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from api.construct import built
from api.models import ApiResponse
from api.query import BadParameter

log = logging.getLogger("jobpulse.api")


_Envelope = ApiResponse[Any]


def error_doc(description: str) -> dict[str, Any]:
    """An error response for a route's OpenAPI ``responses``: the envelope with data null."""
    return {"model": ApiResponse[None], "description": description}


# Errors come in the same envelope as data, not in FastAPI's default {"detail": [...]}: the
# schema says so, and schemathesis holds the API to it.
BAD_PARAMETER = error_doc(
    "A bad query parameter, named in `error`; also a request over the cost bound (api/limits.py: at most "
    "1000 queue names, 1000 buckets, 50,000 stored hashes read)."
)


NOT_FOUND = error_doc("No such queue or job: jobpulse has never seen it, or no longer remembers it.")
READ_ONLY_TEXT = "Refused: jobpulse serves read-only statistics (hammerwork-web's changing routes are hammerwork's)."


def read_only(what: str) -> JSONResponse:
    """405 in the envelope: jobpulse only reads statistics, it cannot ``what``."""
    return failure(405, f"jobpulse serves read-only statistics: it cannot {what}; do that through hammerwork "
                        "itself (its own API or hammerwork-web)")


def ok(data: BaseModel | list[Any]) -> Response:
    """A successful envelope, serialised once.

    Returning a Response skips FastAPI's dump, re-validate and dump of the
    declared response_model (a third of a request's time); the routes still
    declare it, for the OpenAPI schema, and the tests check bodies against it.
    """
    body = built(_Envelope, success=True, data=data, error=None, timestamp=datetime.now(UTC))
    return Response(body.model_dump_json(), media_type="application/json")


def failure(status: int, message: str) -> JSONResponse:
    """An error envelope with the given HTTP status."""
    body = ApiResponse[Any](success=False, data=None, error=message, timestamp=datetime.now(UTC))
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"))


def install_error_handlers(app: FastAPI) -> None:
    """Render bad input (422), a Redis timeout (504) and an unreachable Redis (503) in the envelope."""

    @app.exception_handler(BadParameter)
    async def bad_parameter(_: Request, exc: BadParameter) -> JSONResponse:
        return failure(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        name = str(err["loc"][-1]) if err.get("loc") else "request"
        return failure(422, f"invalid parameter '{name}': {err['msg']}")

    @app.exception_handler(redis.TimeoutError)
    async def redis_slow(_: Request, exc: redis.TimeoutError) -> JSONResponse:
        log.warning("Redis did not answer in time while serving a request")
        return failure(504, redis_problem(exc))

    @app.exception_handler(redis.RedisError)
    async def redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("Redis error while serving a request: %s", type(exc).__name__)
        return failure(503, redis_problem(exc))


def redis_problem(exc: BaseException) -> str:
    """What went wrong with Redis, for a person: a timeout is slowness, not Redis being down."""
    if isinstance(exc, redis.TimeoutError | TimeoutError):
        return "Redis did not answer in time (busy, or the request is large): try again or ask for less"
    if isinstance(exc, redis.ConnectionError | OSError):
        return f"Redis unreachable: {type(exc).__name__}"
    return f"Redis error: {type(exc).__name__}"
