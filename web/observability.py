"""Per request: an id, one structured log line, and the metrics.

The log line of an HTTP request holds its operations (a batch has several), as the schema measured
them (schema/telemetry.py):

    {"time": "...", "level": "INFO", "logger": "quill.request", "message": "POST /graphql 200",
     "requestId": "3f2a...", "method": "POST", "path": "/graphql", "status": 200, "durationMs": 4.1,
     "client": "127.0.0.1", "operations": [{"name": "Feed", "type": "query", "durationMs": 3.8,
     "sqlStatements": 3, "errorCodes": []}], "sqlStatements": 3, "errorCodes": []}

A WebSocket lives long and runs many operations: each is logged when it ends, and the connection
when it closes, all with the connection's id.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schema.telemetry import OperationRecord
from web.headers import headers_of
from web.logs import REQUEST_ID
from web.metrics import Metrics

log = logging.getLogger("quill.request")

# A request id a client or proxy sent is kept when it looks like one (it goes into every log line).
_GOOD_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Probes and scrapes arrive every few seconds; their lines are DEBUG.
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})


@dataclass(slots=True)
class _Request:
    operations: list[OperationRecord] = field(default_factory=list)


_CURRENT: ContextVar[_Request | None] = ContextVar("current_request", default=None)


def _operation_fields(record: OperationRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "type": record.type,
        "durationMs": round(record.duration_seconds * 1000, 2),
        "sqlStatements": record.sql_statements,
        "errorCodes": list(record.error_codes),
        "executor": record.executor,
    }


class Observer:
    """Receives each finished operation (the schema's OperationObserver)."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics

    @property
    def recording(self) -> bool:
        return self.metrics is not None or log.isEnabledFor(logging.INFO)

    def operation_finished(self, record: OperationRecord) -> None:
        if self.metrics is not None:
            self.metrics.observe_operation(record)
        request = _CURRENT.get()
        if request is not None and record.transport == "http":
            request.operations.append(record)
            return
        fields = {"transport": record.transport, **_operation_fields(record)}
        log.info(
            "%s %s ended", record.type or "operation", record.name or "(anonymous)", extra={"fields": fields}
        )


class RequestLog:
    """ASGI middleware, outermost: sets the request id (echoed as X-Request-ID), logs the request
    when it is answered, and counts it in the metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        request = _Request()
        id_token, request_token = REQUEST_ID.set(request_id), _CURRENT.set(request)
        status = 500  # unless the app answers
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", ()), header]}
                status = message.get("status", 101)
            elif message["type"] == "websocket.close":
                status = message.get("code", 1000)
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            self._log(scope, status, seconds, request.operations)
            if self.metrics is not None and scope["type"] == "http":
                self.metrics.observe_request(scope["path"], scope["method"], status, seconds)
            REQUEST_ID.reset(id_token)
            _CURRENT.reset(request_token)

    @staticmethod
    def _log(scope: Scope, status: int, seconds: float, operations: list[OperationRecord]) -> None:
        path = scope["path"]
        level = logging.DEBUG if path in _QUIET_PATHS else logging.INFO
        if scope["type"] == "http" and status >= 500:
            level = logging.ERROR
        if not log.isEnabledFor(level):
            return
        method = scope.get("method", "WS")
        fields: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": status,
            "durationMs": round(seconds * 1000, 2),
            "client": scope["client"][0] if scope.get("client") else None,
        }
        if operations:
            fields["operations"] = [_operation_fields(record) for record in operations]
            fields["sqlStatements"] = sum(record.sql_statements for record in operations)
            fields["errorCodes"] = sorted({code for record in operations for code in record.error_codes})
        message = f"{method} {path} {status}" if scope["type"] == "http" else f"WS {path} closed {status}"
        log.log(level, message, extra={"fields": fields})


# A new request id: 64 random bits per process, then a count (32 hex digits, like a uuid4's, at a
# fraction of its cost: uuid4 reads the system's random source for every request).
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNT = itertools.count(1)


def _request_id(scope: Scope) -> str:
    given = headers_of(scope).get(b"x-request-id")
    if given is not None and _GOOD_REQUEST_ID.fullmatch(given):
        return given
    return f"{_ID_PREFIX}{next(_ID_COUNT):016x}"
