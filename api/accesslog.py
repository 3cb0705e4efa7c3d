"""Access log lines of a sane length: a huge query string must not make a huge log line."""

from __future__ import annotations

import logging

MAX_REQUEST_LINE_CHARS = 300


class TruncateRequestLine(logging.Filter):
    """Shortens the path of uvicorn's access log records (``args[2]``), saying how much was cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record, with its path cut to ``MAX_REQUEST_LINE_CHARS``."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2]
            if len(path) > MAX_REQUEST_LINE_CHARS:
                cut = f"{path[:MAX_REQUEST_LINE_CHARS]}…[{len(path) - MAX_REQUEST_LINE_CHARS} more chars]"
                record.args = (*args[:2], cut, *args[3:])
        return True


def truncate_access_log(logger: logging.Logger | None = None) -> None:
    """Install the filter on uvicorn's access logger (once)."""
    target = logger or logging.getLogger("uvicorn.access")
    if not any(isinstance(f, TruncateRequestLine) for f in target.filters):
        target.addFilter(TruncateRequestLine())
