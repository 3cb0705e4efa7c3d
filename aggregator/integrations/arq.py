"""arq: wrap the worker's functions, and the pool producers enqueue with.

Workers (after the class body)::

    from aggregator.integrations.arq import instrument
    instrument(WorkerSettings)

Producers::

    pool = instrument_pool(await create_pool(redis_settings))

arq's ``on_job_start``/``after_job_end`` hooks see neither the function nor the
outcome, so each function is wrapped instead: ``started`` (wait since the job
was due), then ``completed``; ``failed`` + ``retried`` for ``Retry`` (or
``dead`` when it was the last try); ``timed_out`` when arq cancels the job at
its timeout; ``dead`` for an exception (arq does not retry those). A job
cancelled before its timeout (worker shutdown, which arq re-runs, or
``abort()``, which hooks cannot tell apart) is reported as ``failed`` +
``retried``. The queue is the arq queue, the job type the function name.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from arq.constants import default_queue_name
from arq.jobs import Job
from arq.worker import Function, Retry, RetryJob, func

from aggregator.integrations.base import ProcessEmitter, attempt_ended, never_raises, since_ms
from aggregator.settings import Settings

DEFAULT_TIMEOUT_S = 300.0  # arq's own defaults, used when the settings class leaves them out
DEFAULT_MAX_TRIES = 5
DEFAULT_MAX_JOBS = 10
TIMEOUT_SLACK_S = 0.25  # a cancellation this close to the timeout is the timeout

emitter = ProcessEmitter()
Coroutine = Callable[..., Awaitable[Any]]


def instrument(worker_settings: Any, settings: Settings | None = None) -> Any:
    """Wrap every function of an arq ``WorkerSettings`` class (or dict) to report to jobpulse."""
    emitter.configure(settings)

    def option(name: str, default: Any) -> Any:
        if isinstance(worker_settings, dict):
            return worker_settings.get(name, default)
        return getattr(worker_settings, name, default)

    defaults = _Defaults(
        queue=option("queue_name", None) or default_queue_name,
        timeout_s=float(option("job_timeout", DEFAULT_TIMEOUT_S)),
        max_tries=int(option("max_tries", DEFAULT_MAX_TRIES)),
        max_jobs=int(option("max_jobs", DEFAULT_MAX_JOBS)),
        retry_jobs=bool(option("retry_jobs", True)),
    )
    wrapped = [_wrap(func(f), defaults) for f in option("functions", [])]
    if isinstance(worker_settings, dict):
        worker_settings["functions"] = wrapped
    else:
        worker_settings.functions = wrapped
    return worker_settings


def instrument_pool(pool: ArqRedis) -> ArqRedis:
    """Make ``pool.enqueue_job`` emit ``enqueued`` for each job it creates."""
    enqueue = pool.enqueue_job

    async def enqueue_job(function: str, *args: Any, **kwargs: Any) -> Job | None:
        job = await enqueue(function, *args, **kwargs)
        if job is not None:  # None: a job with that id exists already
            _enqueued(job.job_id, kwargs.get("_queue_name") or pool.default_queue_name, function)
        return job

    pool.enqueue_job = enqueue_job  # type: ignore[method-assign]
    return pool


@never_raises
def _enqueued(job_id: str, queue: str, function: str) -> None:
    emitter.get().enqueued(job_id, queue, job_type=function)


@dataclass(frozen=True)
class _Defaults:
    """What the WorkerSettings say for every function (arq's own defaults where they are silent)."""

    queue: str
    timeout_s: float
    max_tries: int
    max_jobs: int
    retry_jobs: bool


def _wrap(function: Function, d: _Defaults) -> Function:
    name, inner = function.name, function.coroutine
    timeout_s = function.timeout_s if function.timeout_s is not None else d.timeout_s
    max_tries = function.max_tries if function.max_tries is not None else d.max_tries

    async def reported(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        job_id, attempt = str(ctx.get("job_id")), int(ctx.get("job_try") or 1)
        _started(ctx, job_id, attempt, name, d)
        t0 = time.monotonic()
        outcome: dict[str, Any] = {"error": None}
        try:
            return await inner(ctx, *args, **kwargs)
        except (Retry, RetryJob) as exc:
            outcome = {"error": exc if str(exc) else "Retry requested",
                       "retrying": d.retry_jobs and attempt < max_tries}
            raise
        except asyncio.CancelledError:
            timed_out = time.monotonic() - t0 >= timeout_s - TIMEOUT_SLACK_S
            outcome = ({"error": f"timed out after {timeout_s:g} s", "timed_out": True} if timed_out
                       else {"error": "cancelled", "retrying": d.retry_jobs})
            raise
        except Exception as exc:
            outcome = {"error": exc}
            raise
        finally:
            _ended(job_id, d.queue, name, round((time.monotonic() - t0) * 1000), outcome)

    return Function(name, reported, function.timeout_s, function.keep_result_s, function.keep_result_forever,
                    function.max_tries)


@never_raises
def _started(ctx: dict[str, Any], job_id: str, attempt: int, name: str, d: _Defaults) -> None:
    if emitter.concurrency == 0:  # the first job in this process: it is a worker from now on
        emitter.as_worker(f"{socket.gethostname()}:{os.getpid()}", d.max_jobs)
    due_ms = ctx.get("score") or 0  # when the job was due (enqueue time, or a retry's deferral)
    enqueued: datetime | None = ctx.get("enqueue_time")
    ready_s = max(due_ms / 1000, enqueued.timestamp() if enqueued else 0)
    emitter.get().started(job_id, d.queue, job_type=name, attempt=attempt, wait_time_ms=since_ms(ready_s or None))


@never_raises
def _ended(job_id: str, queue: str, name: str, processing_ms: int, outcome: dict[str, Any]) -> None:
    attempt_ended(emitter.get(), job_id, queue, processing_time_ms=processing_ms, job_type=name, **outcome)
