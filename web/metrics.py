"""Prometheus metrics at GET /metrics: per-operation latency, errors and SQL statements, and HTTP
requests by route.

Several server processes (uvicorn --workers, gunicorn) each count their own requests; with
PROMETHEUS_MULTIPROC_DIR set (an empty directory, the same for all of them, wiped before start),
/metrics answers the sum over all processes, whichever one a scrape reaches.
"""

from __future__ import annotations

import hmac
import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from schema.telemetry import OperationRecord

if TYPE_CHECKING:
    from db.replicas import Replica

ANONYMOUS, OTHER = "(anonymous)", "(other)"

# Where a request went, as a bounded label: the path itself is chosen by the client.
_ROUTES = ("/graphql", "/graphiql", "/health", "/ready", "/metrics", "/__stats")
_PREFIXES = ("/media/", "/static/", "/graphiql/assets/")

_MAX_REMEMBERED_SERIES = 1000
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_STATEMENTS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 100)


def route_of(path: str) -> str:
    if path in _ROUTES:
        return path
    return next((prefix.rstrip("/") for prefix in _PREFIXES if path.startswith(prefix)), "other")


class OperationNames:
    """Operation names as label values, at most `limit` distinct ones (clients choose them, and each
    new label value costs memory for the life of the process)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def label(self, name: str | None) -> str:
        if not name:
            return ANONYMOUS
        if name in self._seen:
            return name
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(name)
        return name


_OperationSeries = tuple[Histogram, Histogram, Counter]


class Metrics:
    def __init__(self, max_operation_names: int, token: str | None = None) -> None:
        self.token = token
        self.names = OperationNames(max_operation_names)
        self.registry = CollectorRegistry()
        self.operation_seconds = Histogram(
            "quill_graphql_operation_duration_seconds",
            "GraphQL operations by name and type, and how long they took.",
            ["operation", "type"],
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.operation_statements = Histogram(
            "quill_graphql_operation_sql_statements",
            "SQL statements each GraphQL operation sent to the database.",
            ["operation", "type"],
            buckets=_STATEMENTS,
            registry=self.registry,
        )
        self.operations = Counter(
            "quill_graphql_operations",
            "GraphQL operations by name, type and what answered them: the resolvers, or one "
            "compiled SQL statement.",
            ["operation", "type", "executor"],
            registry=self.registry,
        )
        self.errors = Counter(
            "quill_graphql_errors_total",
            "GraphQL operations that answered with errors, by operation and error code.",
            ["operation", "code"],
            registry=self.registry,
        )
        # Each labelled series, looked up once: `labels()` costs more than the observation itself.
        self._operation_series: dict[tuple[str | None, str | None, str], _OperationSeries] = {}
        self._request_series: dict[tuple[str, str, int], Histogram] = {}
        self.http_seconds = Histogram(
            "quill_http_request_duration_seconds",
            "HTTP requests by route, method and status, and how long they took.",
            ["route", "method", "status"],
            buckets=_SECONDS,
            registry=self.registry,
        )

        self.replica_healthy = Gauge(
            "quill_replica_healthy",
            "1 while a read replica takes reads, 0 while it is skipped (down, lagging, not a replica).",
            ["replica"],
            registry=self.registry,
            multiprocess_mode="min",
        )
        self.replica_lag = Gauge(
            "quill_replica_lag_seconds",
            "How far each read replica was behind the primary at its last check.",
            ["replica"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.replica_reads = Counter(
            "quill_replica_reads",
            "Queries and subscription event reads each read replica answered.",
            ["replica"],
            registry=self.registry,
        )
        self._replica_reads_seen: dict[str, int] = {}

    def replica_checked(self, replica: Replica) -> None:
        """A replica's state after a check (db/replicas.py)."""
        self.replica_healthy.labels(replica.name).set(1 if replica.healthy else 0)
        self.replica_lag.labels(replica.name).set(replica.lag_seconds)
        seen = self._replica_reads_seen.get(replica.name, 0)
        self.replica_reads.labels(replica.name).inc(replica.reads_served - seen)
        self._replica_reads_seen[replica.name] = replica.reads_served

    def observe_operation(self, record: OperationRecord) -> None:
        key = (record.name, record.type, record.executor)
        series = self._operation_series.get(key)
        if series is None:
            operation, kind = self.names.label(record.name), record.type or "unknown"
            series = (
                self.operation_seconds.labels(operation, kind),
                self.operation_statements.labels(operation, kind),
                self.operations.labels(operation, kind, record.executor),
            )
            if len(self._operation_series) < _MAX_REMEMBERED_SERIES:  # names are the client's choice
                self._operation_series[key] = series
        seconds, statements, count = series
        seconds.observe(record.duration_seconds)
        statements.observe(record.sql_statements)
        count.inc()
        for code in record.error_codes:
            self.errors.labels(self.names.label(record.name), code).inc()

    def observe_request(self, path: str, method: str, status: int, seconds: float) -> None:
        key = (path, method, status)
        series = self._request_series.get(key)
        if series is None:
            series = self.http_seconds.labels(route_of(path), method, str(status))
            if len(self._request_series) < _MAX_REMEMBERED_SERIES:  # paths are the client's choice
                self._request_series[key] = series
        series.observe(seconds)

    def exposition(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        if self.token is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return PlainTextResponse("metrics need Authorization: Bearer <METRICS_TOKEN>\n", 401)
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)
