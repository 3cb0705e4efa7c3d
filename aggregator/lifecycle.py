"""One method per lifecycle step, shared by the sync and asyncio emitters."""

from __future__ import annotations

import logging
from typing import Any

from aggregator.buffer import EventBuffer, event_extras

log = logging.getLogger("jobpulse.emitter")


class LifecycleMethods:
    """``emit`` plus a readable method for each event type; none of them raise."""

    buffer: EventBuffer

    def _wake(self) -> None:
        """Tell the sender a full batch is waiting."""
        raise NotImplementedError

    def emit(
        self,
        event_type: str,
        job_id: str,
        queue: str,
        *,
        timestamp_s: float | None = None,
        priority: str | None = None,
        processing_time_ms: int | None = None,
        wait_time_ms: int | None = None,
        error: str | BaseException | None = None,
        error_type: str | None = None,
        attempt: int | None = None,
        job_type: str | None = None,
        metadata: dict[str, str] | None = None,
        **unknown: Any,
    ) -> None:
        """Record one event (the optional fields as in :func:`event_extras`); costs a buffer append,
        never raises, never blocks on Redis."""
        # every field named, and event_extras called positionally: a job pays this call per event
        try:
            if unknown:  # a caller's bug, logged and counted like the others, never raised
                raise TypeError(f"unknown event fields: {', '.join(sorted(unknown))}")
            extras = event_extras(priority, processing_time_ms, wait_time_ms, error, error_type, attempt, job_type,
                                  metadata)
            if self.buffer.append(event_type, str(job_id), queue, timestamp_s, extras):
                self._wake()
        except Exception:  # the job being reported on must never fail because of us
            log.exception("jobpulse: could not record %r event; dropped", event_type)
            self.buffer.dropped += 1

    @property
    def dropped(self) -> int:
        """Events dropped so far (buffer full during an outage, or bad arguments)."""
        return self.buffer.dropped

    def enqueued(
        self, job_id: str, queue: str, *, priority: str | None = None, job_type: str | None = None, **fields: Any
    ) -> None:
        """A job was put on its queue."""
        self.emit("enqueued", job_id, queue, priority=priority, job_type=job_type, **fields)

    def started(
        self, job_id: str, queue: str, *, wait_time_ms: int | None = None, attempt: int | None = None, **fields: Any
    ) -> None:
        """A worker began the job (``wait_time_ms``: since it was enqueued)."""
        self.emit("started", job_id, queue, wait_time_ms=wait_time_ms, attempt=attempt, **fields)

    def completed(self, job_id: str, queue: str, *, processing_time_ms: int | None = None, **fields: Any) -> None:
        """The job succeeded."""
        self.emit("completed", job_id, queue, processing_time_ms=processing_time_ms, **fields)

    def failed(
        self,
        job_id: str,
        queue: str,
        *,
        error: str | BaseException,
        processing_time_ms: int | None = None,
        **fields: Any,
    ) -> None:
        """The attempt failed and the job will run again (``retried`` follows); report a failure
        that ends the job as :meth:`dead` instead, so each attempt is one outcome."""
        self.emit("failed", job_id, queue, error=error, processing_time_ms=processing_time_ms, **fields)

    def timed_out(
        self,
        job_id: str,
        queue: str,
        *,
        processing_time_ms: int | None = None,
        error: str | BaseException | None = None,
        **fields: Any,
    ) -> None:
        """The attempt ran out of time."""
        self.emit("timed_out", job_id, queue, processing_time_ms=processing_time_ms, error=error, **fields)

    def retried(self, job_id: str, queue: str, **fields: Any) -> None:
        """A failed job is pending again."""
        self.emit("retried", job_id, queue, **fields)

    def dead(self, job_id: str, queue: str, *, error: str | BaseException | None = None, **fields: Any) -> None:
        """The attempt failed and the job gives up for good (its one outcome event)."""
        self.emit("dead", job_id, queue, error=error, **fields)

    def cancelled(self, job_id: str, queue: str, **fields: Any) -> None:
        """A pending job was cancelled."""
        self.emit("cancelled", job_id, queue, **fields)

    def archived(self, job_id: str, queue: str, **fields: Any) -> None:
        """A finished job was archived."""
        self.emit("archived", job_id, queue, **fields)

    def restored(self, job_id: str, queue: str, **fields: Any) -> None:
        """An archived job is pending again."""
        self.emit("restored", job_id, queue, **fields)
