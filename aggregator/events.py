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
from typing import Annotated, Any, Literal

import msgspec
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


_PRIORITIES = frozenset(p.value for p in Priority)
_ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
_Str100 = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
_Str200 = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_Opt200 = Annotated[str, msgspec.Meta(max_length=200)] | None
_NonNegative = Annotated[int, msgspec.Meta(ge=0)] | None


class _WireError(msgspec.Struct):
    message: Annotated[str, msgspec.Meta(max_length=10_000)]
    error_type: _Opt200 = None
    retry_attempt: _NonNegative = None


class _WireEvent(msgspec.Struct):
    """:class:`JobEvent` as a msgspec struct: the same fields and limits, decoded and checked in C."""

    event_id: _Str100
    job_id: _Str200
    queue_name: _Str200
    event_type: Literal[
        "enqueued", "started", "completed", "failed", "retried", "dead", "timed_out", "cancelled", "archived",
        "restored",
    ]
    timestamp: str
    priority: str = "normal"
    processing_time_ms: _NonNegative = None
    error: _WireError | None = None
    metadata: dict[str, str] | None = None
    wait_time_ms: _NonNegative = None
    attempt: Annotated[int, msgspec.Meta(ge=1)] | None = None
    worker_id: _Opt200 = None
    job_type: _Opt200 = None


_decode_wire = msgspec.json.Decoder(_WireEvent).decode


def fast_event(raw: bytes) -> Event | None:
    """The common, plainly valid event without pydantic (~10x faster); None means "ask the model".

    It accepts a subset of what :class:`JobEvent` accepts and gives the same
    result for it (``tests/test_events.py`` checks this on generated input).
    """
    try:
        d = _decode_wire(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # deep nesting: the model says why
        return None
    priority, ts = d.priority.lower(), d.timestamp
    if priority not in _PRIORITIES or not _ISO_UTC.fullmatch(ts):
        return None
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return None
    error = d.error
    return Event(d.event_id, d.job_id, d.queue_name, d.event_type, priority, to_ms(moment), d.processing_time_ms,
                 d.wait_time_ms, error.message if error else None, error.error_type if error else None, d.worker_id,
                 d.job_type)


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
