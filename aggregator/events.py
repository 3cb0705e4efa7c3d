"""Wire format v1: one stream entry per event, JSON in the field ``event``.

The JSON is hammerwork's ``JobLifecycleEvent`` plus optional extensions
(``wait_time_ms``, ``attempt``, ``worker_id``, ``job_type``). Worker
heartbeats travel in the same streams under the field ``heartbeat``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


_Str100 = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
_Str200 = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_Opt200 = Annotated[str, msgspec.Meta(max_length=200)] | None
_NonNegative = Annotated[int, msgspec.Meta(ge=0)] | None
_EventTypeName = Literal[
    "enqueued", "started", "completed", "failed", "retried", "dead", "timed_out", "cancelled", "archived", "restored",
]


class EventError(msgspec.Struct, gc=False):
    """:class:`JobError` as folding uses it."""

    message: Annotated[str, msgspec.Meta(max_length=10_000)]
    error_type: _Opt200 = None
    retry_attempt: _NonNegative = None


class Event(msgspec.Struct, gc=False):
    """A validated event as folding uses it.

    The same fields and limits as :class:`JobEvent` (the schema), so the
    common event is decoded and checked by msgspec in C straight into this
    struct; anything it refuses is judged by the pydantic model, which says why.
    Not tracked by the cycle collector (``gc=False``): an event refers only to
    strings, numbers, its error and its metadata, and one is made per entry read.
    """

    event_id: _Str100
    job_id: _Str200
    queue: _Str200 = msgspec.field(name="queue_name")
    type: _EventTypeName = msgspec.field(name="event_type")
    timestamp: str = ""  # as sent; emptied once ``ts_ms`` holds it
    priority: str = "normal"  # lower-cased once checked
    processing_ms: _NonNegative = msgspec.field(default=None, name="processing_time_ms")
    error: EventError | None = None
    metadata: dict[str, str] | None = None
    wait_ms: _NonNegative = msgspec.field(default=None, name="wait_time_ms")
    attempt: Annotated[int, msgspec.Meta(ge=1)] | None = None
    worker_id: _Opt200 = None
    job_type: _Opt200 = None
    ts_ms: int = 0  # the timestamp in epoch milliseconds, set after decoding

    @property
    def error_message(self) -> str | None:
        """The error's message, if the event carries one."""
        return self.error.message if self.error is not None else None

    @property
    def error_type(self) -> str | None:
        """The error's type as the worker gave it, if any."""
        return self.error.error_type if self.error is not None else None


@dataclass(slots=True)
class Rejected:
    """An entry that failed validation, bound for the dead-letter stream."""

    reason: str
    raw: bytes


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime, exactly (floored, no float rounding)."""
    return (moment - _EPOCH) // _ONE_MS


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
        processing_ms=ev.processing_time_ms,
        error=EventError(err.message, err.error_type, err.retry_attempt) if err else None,
        metadata=ev.metadata,
        wait_ms=ev.wait_time_ms,
        attempt=ev.attempt,
        worker_id=ev.worker_id,
        job_type=ev.job_type,
        ts_ms=to_ms(ev.timestamp),
    )


_PRIORITIES = frozenset(p.value for p in Priority)
_ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
# "YYYY-MM-DDTHH:MM:SS" -> its epoch milliseconds (None: not a valid time); kept in ms so the hot path
# adds the millisecond part instead of multiplying a large int first
_SECOND_MS: dict[str, int | None] = {}
_SECOND_MS_MAX = 10_000
_MILLIS = {f".{n:03d}Z": n for n in range(1000)}  # ".000Z".."999Z": one lookup checks and converts
_decode_event = msgspec.json.Decoder(Event).decode


def _epoch_ms(ts: str) -> int | None:
    """Epoch ms of an RFC 3339 timestamp the model would accept the same way; None: ask the model."""
    millis = _MILLIS.get(ts[19:])
    if millis is not None:  # the emitters' own form: ...SS.mmmZ
        whole = ts[:19]
        second_ms = _SECOND_MS.get(whole, -1)
        if second_ms == -1:
            if len(_SECOND_MS) >= _SECOND_MS_MAX:
                _SECOND_MS.clear()
            second_ms = _SECOND_MS[whole] = _second_ms_of(whole)
        return None if second_ms is None else second_ms + millis
    return _parse_ms(ts)


_MINUTE_MS: dict[str, int | None] = {}  # "YYYY-MM-DDTHH:MM" -> its epoch ms (None: not a valid time)
_SECONDS_MS = {f":{n:02d}": n * 1000 for n in range(60)}  # ":00".. ":59"


def _second_ms_of(whole: str) -> int | None:
    # A backfill's events are seconds apart: most are the first of their second, few the first of their
    # minute (parsing one costs ~1.5 µs).
    seconds_ms = _SECONDS_MS.get(whole[16:])
    if seconds_ms is None:
        return _parse_ms(whole + "Z")
    minute = whole[:16]
    minute_ms = _MINUTE_MS.get(minute, -1)
    if minute_ms == -1:
        if len(_MINUTE_MS) >= _SECOND_MS_MAX:
            _MINUTE_MS.clear()
        minute_ms = _MINUTE_MS[minute] = _parse_ms(minute + ":00Z")
    return None if minute_ms is None else minute_ms + seconds_ms


def _parse_ms(ts: str) -> int | None:
    """Epoch ms of an RFC 3339 timestamp, if the pattern and the calendar allow it."""
    if not _ISO_UTC.fullmatch(ts):
        return None
    try:
        return to_ms(datetime.fromisoformat(ts))
    except ValueError:
        return None


def fast_event(raw: bytes) -> Event | None:
    """The common, plainly valid event without pydantic (~10x faster); None means "ask the model".

    It accepts a subset of what :class:`JobEvent` accepts and gives the same
    result for it (``tests/test_events.py`` checks this on generated input).
    """
    try:
        ev = _decode_event(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # deep nesting: the model says why
        return None
    priority = ev.priority
    if priority not in _PRIORITIES:
        priority = priority.lower()
        if priority not in _PRIORITIES:
            return None
        ev.priority = priority
    ts = ev.timestamp
    # (_epoch_ms's commonest path, inlined: a second already seen, in the emitters' own form;
    # the two must accept the same strings)
    second_ms, millis = _SECOND_MS.get(ts[:19]), _MILLIS.get(ts[19:])
    if second_ms is not None and millis is not None:
        ev.ts_ms = second_ms + millis
    else:
        ts_ms = _epoch_ms(ts)
        if ts_ms is None:
            return None
        ev.ts_ms = ts_ms
    ev.timestamp = ""
    return ev


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
