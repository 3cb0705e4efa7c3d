"""Error message signatures: the same failure with other ids, numbers or
quoted values gets the same signature, so patterns can be counted."""

from __future__ import annotations

import functools
import hashlib
import re

from aggregator import schema

_RULES = [
    (re.compile(r"\"[^\"]*\"|'[^']*'"), "<str>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"(?<![A-Za-z])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
]
MAX_SIGNATURE_CHARS = 300

_CLASSES = [
    ("timeout", "TimeoutError"),
    ("timed out", "TimeoutError"),
    ("connection", "ConnectionError"),
    ("refused", "ConnectionError"),
    ("permission", "PermissionError"),
    ("denied", "PermissionError"),
    ("not found", "NotFoundError"),
    ("invalid", "ValidationError"),
    ("memory", "MemoryError"),
    ("rate limit", "RateLimitError"),
]


def normalise(message: str) -> str:
    """The message with numbers, ids, hex and quoted values replaced by placeholders."""
    text = message
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text.strip()[:MAX_SIGNATURE_CHARS]


@functools.lru_cache(maxsize=4096)  # the same messages recur; the regexes cost ~10 µs a call
def signature(message: str) -> str:
    """Short stable id of a message's normalised form."""
    return hashlib.blake2b(normalise(message).encode(), digest_size=8).hexdigest()


def classify(message: str) -> str:
    """An error type guessed from the message, for events that carry none."""
    lowered = message.lower()
    for needle, name in _CLASSES:
        if needle in lowered:
            return name
    return "Error"


def type_field(sig: str, queue: str, error_type: str) -> str:
    """Hash field counting ``error_type`` for a signature in a queue (both names may hold ':')."""
    return f"{schema.ERR_TYPE_COUNT}{sig}:{len(error_type)}:{error_type}:{queue}"


def parse_type_field(fld: str) -> tuple[str, str, str] | None:
    """(signature, queue, error type) of a :func:`type_field`, or None for another field."""
    if not fld.startswith(schema.ERR_TYPE_COUNT):
        return None
    sig, _, rest = fld[len(schema.ERR_TYPE_COUNT):].partition(":")
    size, _, rest = rest.partition(":")
    if not size.isdigit() or len(rest) <= int(size) or rest[int(size)] != ":":
        return None
    return sig, rest[int(size) + 1 :], rest[: int(size)]


def most_frequent_type(counts: dict[str, int], sample: str) -> str:
    """The error type given most often (ties: the first by name), else one classified from ``sample``."""
    if not counts:
        return classify(sample)
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
