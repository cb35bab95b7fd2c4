"""What each GraphQL operation did, for the logs and metrics: name, type, duration, SQL
statements, error codes, transport and executor. schema/execution/run.py and schema/admission/
measure; the web layer (web/observability.py) decides where it goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OperationRecord:
    name: str | None
    type: str | None  # "query", "mutation", "subscription"; None when the request was refused early
    duration_seconds: float
    sql_statements: int
    error_codes: tuple[str, ...]
    transport: str  # "http", "websocket" or "sse"
    # "resolvers", or "compiled": one SQL statement built the answer (schema/compiled/).
    executor: str = "resolvers"


class OperationObserver(Protocol):
    # False while nothing reads the records (no metrics, the log above INFO): the measuring
    # side then skips making them, a few microseconds of every request.
    @property
    def recording(self) -> bool: ...

    def operation_finished(self, record: OperationRecord) -> None: ...
