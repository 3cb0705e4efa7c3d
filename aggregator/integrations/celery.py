"""Celery: every task's lifecycle from Celery's signals, no change to the tasks.

In the module that builds your Celery app (imported by producers and workers)::

    from aggregator.integrations.celery import install
    install(app)

Publishing a task emits ``enqueued`` (retries re-publish the same task id and
are reported as ``retried`` instead); the worker emits ``started`` with the
wait since publication and the attempt number, then the attempt's outcome:
``completed``; ``failed`` + ``retried`` when the task retries (with the exception
the retry was raised for, not Celery's ``Retry``); ``timed_out`` for
a soft or hard time limit; ``dead`` for a failure Celery will not retry; and
``cancelled`` for a revoked task. The queue is the routing key, the job type
the task name, the worker id ``<hostname>:<pid>`` (one per pool process).
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, Task, signals
from celery.exceptions import Retry, SoftTimeLimitExceeded, TimeLimitExceeded

from aggregator.integrations.base import ProcessEmitter, StartTimes, attempt_ended, never_raises, since_ms
from aggregator.settings import Settings

SENT_HEADER = "jobpulse_sent_s"  # publication time, carried to the worker for the wait time
QUEUE_HEADER = "jobpulse_queue"
TIMEOUTS = (SoftTimeLimitExceeded, TimeLimitExceeded)

emitter = ProcessEmitter()
_started = StartTimes()


def install(app: Celery, settings: Settings | None = None) -> None:
    """Report ``app``'s tasks to jobpulse (``settings`` default: ``JOBPULSE_*``)."""
    emitter.configure(settings)
    default_queue = app.conf.task_default_queue or "celery"
    handlers: list[tuple[Any, Any]] = [
        (signals.before_task_publish, _published(default_queue)),
        (signals.task_prerun, _prerun),
        (signals.task_success, _success),
        (signals.task_retry, _retry),
        (signals.task_failure, _failure),
        (signals.task_revoked, _revoked),
    ]
    for signal, handler in handlers:
        # strong references and a fixed uid: calling install twice connects once
        signal.connect(handler, weak=False, dispatch_uid=f"jobpulse.{signal.name}")


def _published(default_queue: str) -> Any:
    @never_raises
    def on_publish(
        sender: str | None = None,
        headers: dict[str, Any] | None = None,
        routing_key: str | None = None,
        **_: Any,
    ) -> None:
        if headers is None or "id" not in headers:  # Celery's message protocol 1: nothing to read from
            return
        queue = routing_key or default_queue
        headers[SENT_HEADER] = time.time()
        headers[QUEUE_HEADER] = queue
        if not headers.get("retries"):  # a retry re-publishes the task; task_retry reports it
            emitter.get().enqueued(str(headers["id"]), queue, job_type=headers.get("task") or sender)

    return on_publish


def _header(task: Task, name: str) -> Any:
    request = task.request
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


def _queue_of(task: Task) -> str:
    queue = _header(task, QUEUE_HEADER)
    if queue:
        return str(queue)
    delivery = getattr(task.request, "delivery_info", None) or {}
    queue = delivery.get("routing_key") or getattr(task, "queue", None) or task.app.conf.task_default_queue
    return str(queue or "celery")


@never_raises
def _prerun(task_id: str, task: Task, **_: Any) -> None:
    if emitter.concurrency == 0:  # first task in this process: it is a worker from now on
        emitter.as_worker(f"{task.request.hostname or 'celery'}:{os.getpid()}", 1)
    _started.start(task_id)
    attempt = (task.request.retries or 0) + 1
    emitter.get().started(
        task_id, _queue_of(task), wait_time_ms=since_ms(_header(task, SENT_HEADER)), attempt=attempt,
        job_type=task.name,
    )


@never_raises
def _success(sender: Task, **_: Any) -> None:
    task_id = sender.request.id
    attempt_ended(
        emitter.get(), task_id, _queue_of(sender), error=None, processing_time_ms=_started.stop_ms(task_id),
        job_type=sender.name,
    )


@never_raises
def _retry(sender: Task, request: Any, reason: Any, **_: Any) -> None:
    task_id = request.id
    error = _original(reason)
    attempt_ended(
        emitter.get(), task_id, _queue_of(sender), error=error, processing_time_ms=_started.stop_ms(task_id),
        job_type=sender.name, timed_out=isinstance(error, TIMEOUTS), retrying=True,
    )


def _original(reason: Any) -> BaseException | str:
    """What a retry is for: task_retry hands over the ``Retry`` ("Retry in 0s: ConnectionError(...)"),
    whose ``exc`` is the exception the task failed with (``excs`` when it was given as text)."""
    if isinstance(reason, Retry):
        if isinstance(reason.exc, BaseException):
            return reason.exc
        if reason.exc is None and getattr(reason, "excs", None):
            return str(reason.excs)
    return reason if isinstance(reason, BaseException) else str(reason)


@never_raises
def _failure(sender: Task, task_id: str, exception: BaseException, **_: Any) -> None:
    # A hard time limit is reported from the pool's parent process, where the start was not seen.
    attempt_ended(
        emitter.get(), task_id, _queue_of(sender), error=exception, processing_time_ms=_started.stop_ms(task_id),
        job_type=sender.name, timed_out=isinstance(exception, TIMEOUTS),
    )


@never_raises
def _revoked(sender: Task, request: Any, **_: Any) -> None:
    task_id = request.id
    _started.stop_ms(task_id)
    queue = (getattr(request, "delivery_info", None) or {}).get("routing_key") or _queue_of(sender)
    emitter.get().cancelled(task_id, str(queue), job_type=sender.name)
