"""Log lines: one JSON object per line (LOG_FORMAT=json, the default) or plain text for a terminal.

Every line written while a request is being served carries that request's id, so the access line,
an error's stack trace and anything a resolver logs can be found together.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

from settings import Settings

# The id of the HTTP request or WebSocket connection being served (web/observability.py sets it).
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

# Our loggers are all under "quill"; uvicorn's own lines get the same format.
_LOGGERS = ("quill", "uvicorn", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, requestId, the record's `fields` (extra={"fields": {...}}),
    and the exception with its stack when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["requestId"] = request_id
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items() if key != "operations")
        return text


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def _utc_iso(created: float) -> str:
    second = int(created)
    if _second[0] != second:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{int(created % 1 * 1000):03d}Z"


def configure_logging(settings: Settings) -> None:
    """Our handler on our loggers (and uvicorn's), replacing the one an earlier app installed."""
    # Neither format prints the caller's file and line, thread or process: don't look them up
    # for every record (the logging HOWTO's "Optimization" switches).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    formatter = JsonFormatter() if settings.log_format == "json" else TextFormatter()
    quill = logging.getLogger("quill")
    quill.setLevel(settings.log_level)
    for handler in [h for h in quill.handlers if getattr(h, "quill", False)]:
        quill.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.quill = True  # type: ignore[attr-defined]
    handler.setFormatter(formatter)
    quill.addHandler(handler)
    # Still propagated: nothing handles the root logger in a server process, and test runners
    # capture from it.
    for name in _LOGGERS[1:]:
        for uvicorn_handler in logging.getLogger(name).handlers:
            uvicorn_handler.setFormatter(formatter)
