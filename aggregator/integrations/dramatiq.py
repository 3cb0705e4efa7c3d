"""Dramatiq: a middleware, installed where the broker is set up (producers and workers)::

    from aggregator.integrations.dramatiq import install
    install(broker)

``install`` puts the middleware just before ``Retries``: Dramatiq runs the
``after_*`` hooks in reverse order, so ours then sees whether Retries
re-enqueued the message or failed it. Sending a
message emits ``enqueued`` (Retries' re-enqueues and the move of a delayed
message to its queue are not new jobs); the worker emits ``started`` and the
attempt's outcome: ``completed``; ``failed`` + ``retried`` when Retries will
run it again; ``timed_out`` for ``TimeLimitExceeded``; ``dead`` otherwise. A
skipped message (e.g. past its age limit) is ``cancelled``. The queue is the
actor's queue, the job type the actor name, the message id the job id.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from dramatiq import Broker, Message, Middleware, Worker
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.middleware import Retries, TimeLimitExceeded

from aggregator.integrations.base import ProcessEmitter, StartTimes, attempt_ended, never_raises, since_ms
from aggregator.settings import Settings

emitter = ProcessEmitter()
_started = StartTimes()


def _ready_since_s(message: MessageProxy) -> float:
    """When the message became ready to run: sent, re-queued by Retries or due after a delay."""
    opts = message.options
    return max(message.message_timestamp, opts.get("requeue_timestamp") or 0, opts.get("eta") or 0) / 1000


def install(broker: Broker, settings: Settings | None = None) -> None:
    """Add :class:`JobpulseMiddleware` to ``broker`` (``settings`` default: ``JOBPULSE_*``)."""
    has_retries = any(isinstance(m, Retries) for m in broker.middleware)
    broker.add_middleware(JobpulseMiddleware(settings), before=Retries if has_retries else None)


class JobpulseMiddleware(Middleware):
    """Reports every message's lifecycle to jobpulse (``settings`` default: ``JOBPULSE_*``)."""

    def __init__(self, settings: Settings | None = None) -> None:
        emitter.configure(settings)

    @never_raises
    def after_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        """``enqueued`` for a new message."""
        if message.options.get("retries"):
            return  # Retries re-enqueued it; after_process_message reports ``retried``
        if "eta" in message.options and message.queue_name == q_name(message.queue_name):
            return  # a delayed message moved to its queue: it was counted when it was sent
        emitter.get().enqueued(message.message_id, q_name(message.queue_name), job_type=message.actor_name)

    @never_raises
    def before_worker_boot(self, broker: Broker, worker: Worker) -> None:
        """This process runs messages on ``worker_threads`` threads."""
        emitter.as_worker(f"{socket.gethostname()}:{os.getpid()}", worker.worker_threads)

    @never_raises
    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        """``started``, with the wait since the message became ready."""
        _started.start(message.message_id)
        emitter.get().started(
            message.message_id, q_name(message.queue_name), job_type=message.actor_name,
            attempt=message.options.get("retries", 0) + 1,
            wait_time_ms=since_ms(_ready_since_s(message)),
        )

    @never_raises
    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        """The attempt's outcome (Retries, after us in the list, has run: ``message.failed`` is final)."""
        retries = any(isinstance(m, Retries) for m in broker.middleware)
        attempt_ended(
            emitter.get(), message.message_id, q_name(message.queue_name), error=exception,
            processing_time_ms=_started.stop_ms(message.message_id), job_type=message.actor_name,
            timed_out=isinstance(exception, TimeLimitExceeded),
            retrying=exception is not None and retries and not message.failed,
        )

    @never_raises
    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        """A message dropped without running (age limit, ...): ``cancelled``."""
        emitter.get().cancelled(message.message_id, q_name(message.queue_name), job_type=message.actor_name)
