"""Wire format v1: one stream entry per event, JSON in the field ``event``.

The JSON is hammerwork's ``JobLifecycleEvent`` plus optional extensions
(``wait_time_ms``, ``attempt``, ``worker_id``, ``job_type``). Worker
heartbeats travel in the same streams under the field ``heartbeat``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

EVENT_FIELD = b"event"
HEARTBEAT_FIELD = b"heartbeat"


class EventType(enum.StrEnum):
    """A job lifecycle step."""

    ENQUEUED = "enqueued"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRIED = "retried"
    DEAD = "dead"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    ARCHIVED = "archived"
    RESTORED = "restored"


class Priority(enum.StrEnum):
    """hammerwork's job priorities."""

    BACKGROUND = "background"
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Name = Annotated[str, Field(min_length=1, max_length=200)]


class JobError(BaseModel):
    """The error carried by failed, timed_out and dead events."""

    model_config = ConfigDict(strict=True, extra="ignore")

    message: Annotated[str, Field(max_length=10_000)]
    error_type: Annotated[str, Field(max_length=200)] | None = None
    details: Any = None
    retry_attempt: Annotated[int, Field(ge=0)] | None = None


class JobEvent(BaseModel):
    """One job lifecycle event as a worker sends it."""

    model_config = ConfigDict(strict=True, extra="ignore")

    event_id: Annotated[str, Field(min_length=1, max_length=100)]
    job_id: Name
    queue_name: Name
    event_type: EventType
    priority: Annotated[Priority, BeforeValidator(_lower)] = Priority.NORMAL
    timestamp: AwareDatetime
    processing_time_ms: Annotated[int, Field(ge=0)] | None = None
    error: JobError | None = None
    metadata: dict[str, str] | None = None
    payload: Any = Field(default=None, exclude=True)
    wait_time_ms: Annotated[int, Field(ge=0)] | None = None
    attempt: Annotated[int, Field(ge=1)] | None = None
    worker_id: Annotated[str, Field(max_length=200)] | None = None
    job_type: Annotated[str, Field(max_length=200)] | None = None


class Heartbeat(BaseModel):
    """A worker's periodic report of itself."""

    model_config = ConfigDict(strict=True, extra="ignore")

    worker_id: Name
    queues: list[Name] = Field(default_factory=list, max_length=1000)
    concurrency: Annotated[int, Field(ge=0)] = 0
    busy: Annotated[int, Field(ge=0)] = 0
    interval_s: Annotated[float, Field(gt=0)] = 10.0
    dropped: Annotated[int, Field(ge=0)] = 0
    timestamp: AwareDatetime


@dataclass(slots=True)
class Event:
    """A validated event, flattened for folding."""

    event_id: str
    job_id: str
    queue: str
    type: str
    priority: str
    ts_ms: int
    processing_ms: int | None = None
    wait_ms: int | None = None
    error_message: str | None = None
    error_type: str | None = None
    worker_id: str | None = None
    job_type: str | None = None


@dataclass(slots=True)
class Rejected:
    """An entry that failed validation, bound for the dead-letter stream."""

    reason: str
    raw: bytes


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in err["loc"]) or "entry"
    return f"{where}: {err['msg']}"


def parse_event(raw: bytes, max_bytes: int) -> Event | Rejected:
    """Validate one ``event`` field value; never raises."""
    if len(raw) > max_bytes:
        return Rejected(f"entry too large: {len(raw)} bytes > {max_bytes}", raw[:1024])
    return fast_event(raw) or model_event(raw)


def model_event(raw: bytes) -> Event | Rejected:
    """Validate with the pydantic model: the definition of a valid event, and its error messages."""
    try:
        ev = JobEvent.model_validate_json(raw)
    except ValidationError as exc:
        return Rejected(_first_error(exc), raw)
    except (ValueError, TypeError) as exc:  # pragma: no cover - pydantic wraps these
        return Rejected(f"invalid: {exc}", raw)
    err = ev.error
    return Event(
        event_id=ev.event_id,
        job_id=ev.job_id,
        queue=ev.queue_name,
        type=ev.event_type.value,
        priority=ev.priority.value,
        ts_ms=to_ms(ev.timestamp),
        processing_ms=ev.processing_time_ms,
        wait_ms=ev.wait_time_ms,
        error_message=err.message if err else None,
        error_type=err.error_type if err else None,
        worker_id=ev.worker_id,
        job_type=ev.job_type,
    )


_EVENT_TYPES = frozenset(t.value for t in EventType)
_PRIORITIES = frozenset(p.value for p in Priority)
_ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")


def fast_event(raw: bytes) -> Event | None:
    """The common, plainly valid event without pydantic (4x faster); None means "ask the model".

    It accepts a subset of what :class:`JobEvent` accepts and gives the same
    result for it (``tests/test_events.py`` checks this on generated input).
    """
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(d) is not dict:
        return None
    event_id, job_id, queue, kind = d.get("event_id"), d.get("job_id"), d.get("queue_name"), d.get("event_type")
    priority, ts = d.get("priority", "normal"), d.get("timestamp")
    if not (
        type(event_id) is str and 0 < len(event_id) <= 100
        and type(job_id) is str and 0 < len(job_id) <= 200
        and type(queue) is str and 0 < len(queue) <= 200
        and type(kind) is str and kind in _EVENT_TYPES
        and type(priority) is str and priority.lower() in _PRIORITIES
        and type(ts) is str and _ISO_UTC.fullmatch(ts)
        and _optional_int(d, "processing_time_ms", 0)
        and _optional_int(d, "wait_time_ms", 0)
        and _optional_int(d, "attempt", 1)
        and _optional_str(d, "worker_id") and _optional_str(d, "job_type")
    ):
        return None
    metadata = d.get("metadata")
    if metadata is not None and not (type(metadata) is dict and all(type(v) is str for v in metadata.values())):
        return None
    error, message, error_type = d.get("error"), None, None
    if error is not None:
        if type(error) is not dict or not _optional_str(error, "error_type"):
            return None
        if not _optional_int(error, "retry_attempt", 0):
            return None
        message, error_type = error.get("message"), error.get("error_type")
        if type(message) is not str or len(message) > 10_000:
            return None
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return Event(event_id, job_id, queue, kind, priority.lower(), to_ms(moment), d.get("processing_time_ms"),
                 d.get("wait_time_ms"), message, error_type, d.get("worker_id"), d.get("job_type"))


def _optional_int(d: dict[str, Any], name: str, low: int) -> bool:
    value = d.get(name)
    return value is None or (type(value) is int and value >= low)


def _optional_str(d: dict[str, Any], name: str) -> bool:
    value = d.get(name)
    return value is None or (type(value) is str and len(value) <= 200)


def parse_heartbeat(raw: bytes, max_bytes: int) -> Heartbeat | Rejected:
    """Validate one ``heartbeat`` field value; never raises."""
    if len(raw) > max_bytes:
        return Rejected(f"entry too large: {len(raw)} bytes > {max_bytes}", raw[:1024])
    try:
        return Heartbeat.model_validate_json(raw)
    except ValidationError as exc:
        return Rejected(_first_error(exc), raw)


def encode(fields: dict[str, Any]) -> bytes:
    """Serialise an event or heartbeat dict to its wire JSON."""
    return orjson.dumps(fields)
