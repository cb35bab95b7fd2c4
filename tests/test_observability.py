"""Operations: one structured log line per request, Prometheus metrics at /metrics, OpenTelemetry
traces; in process on both engines, and from real uvicorn processes (several workers, OTLP)."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from settings import Settings, SettingsError
from tests.conftest import StatementCounter
from tests.factories import make_post, make_user
from tests.servers import Server
from web.logs import JsonFormatter

FEED = "query Feed { posts(first: 5) { edges { node { title author { username } } } } }"


class JsonLines(logging.Handler):
    """The request log as it is written: each record formatted to JSON while it is emitted."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))

    def requests(self) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["logger"] == "quill.request"]


@pytest.fixture
def request_log(app: object) -> Iterator[JsonLines]:
    handler = JsonLines()
    logger = logging.getLogger("quill.request")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def test_a_replayed_mutation_is_logged_as_replayed(
    client: httpx.AsyncClient, request_log: JsonLines, session: Any, token_for: Any
) -> None:
    """The retry of a mutation under its idempotency key ran no SQL of its own: the log says so."""
    author = await make_user(session)
    create = 'mutation Write { createPost(input: {title: "t", content: "c"}) { __typename } }'
    headers = {"Authorization": f"Bearer {token_for(author)}", "Idempotency-Key": "logged"}
    for _ in range(2):
        assert (await client.post("/graphql", json={"query": create}, headers=headers)).status_code == 200
    first, retry = (line["operations"][0] for line in request_log.requests())
    assert first["executor"] != "replayed"
    assert retry["name"] == "Write" and retry["executor"] == "replayed" and retry["sqlStatements"] == 0


async def test_one_json_line_per_request_with_its_operation(
    client: httpx.AsyncClient,
    request_log: JsonLines,
    statements: StatementCounter,
    session: Any,
    compiled_reads: bool,
) -> None:
    author = await make_user(session)
    for i in range(3):
        await make_post(session, author, title=f"post {i}")

    with statements.count() as sent:
        response = await client.post("/graphql", json={"query": FEED}, headers={"X-Request-ID": "abc-123"})

    assert response.status_code == 200 and "errors" not in response.json()
    assert response.headers["x-request-id"] == "abc-123"
    [line] = request_log.requests()
    assert line["message"] == "POST /graphql 200"
    assert line["requestId"] == "abc-123"
    assert line["level"] == "INFO" and line["method"] == "POST" and line["status"] == 200
    assert line["durationMs"] > 0
    [operation] = line["operations"]
    assert operation["name"] == "Feed" and operation["type"] == "query"
    # The resolvers read the posts, then their authors; a compiled read is one statement.
    expected = 1 if compiled_reads else 2
    assert operation["sqlStatements"] == sent.value == line["sqlStatements"] == expected
    assert operation["executor"] == ("compiled" if compiled_reads else "resolvers")
    assert operation["errorCodes"] == [] and line["errorCodes"] == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])


async def test_error_codes_are_logged(client: httpx.AsyncClient, request_log: JsonLines) -> None:
    await client.post("/graphql", json={"query": "query Broken { posts { nope } }"})
    await client.post("/graphql", json={"query": "{ posts("})
    costly = "query Costly { users(first: 100) { edges { node { posts(first: 100) { edges { node { author { posts(first: 100) { totalCount } } } } } } } } }"
    await client.post("/graphql", json={"query": costly})

    codes = [(line["operations"][0]["name"], line["errorCodes"]) for line in request_log.requests()]
    assert codes == [
        ("Broken", ["GRAPHQL_VALIDATION_FAILED"]),
        (None, ["GRAPHQL_PARSE_FAILED"]),
        ("Costly", ["QUERY_TOO_COSTLY"]),
    ]


async def test_a_batch_logs_each_operation_on_its_request_line(
    client: httpx.AsyncClient, request_log: JsonLines, statements: StatementCounter
) -> None:
    batch = [{"query": "query A { __typename }"}, {"query": "query B { posts { totalCount } }"}]
    with statements.count() as sent:
        await client.post("/graphql", json=batch)

    [line] = request_log.requests()
    assert [operation["name"] for operation in line["operations"]] == ["A", "B"]
    assert [operation["sqlStatements"] for operation in line["operations"]] == [0, sent.value]
    assert line["sqlStatements"] == sent.value > 0


async def test_a_request_id_that_is_not_one_is_replaced(
    client: httpx.AsyncClient, request_log: JsonLines
) -> None:
    bad = await client.get("/health", headers={"X-Request-ID": "x" * 500})
    none = await client.get("/health")

    assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["x-request-id"])
    assert none.headers["x-request-id"] not in ("", bad.headers["x-request-id"])


def _samples(text: str) -> dict[str, float]:
    """`name{labels} value` lines of the Prometheus text format, by `name{labels}`."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


async def test_metrics_count_operations_errors_and_statements(
    client: httpx.AsyncClient, statements: StatementCounter
) -> None:
    with statements.count() as sent:
        for _ in range(3):
            await client.post("/graphql", json={"query": "query Count { posts { totalCount } }"})
        await client.post("/graphql", json={"query": "query Count { nope }"})

    response = await client.get("/metrics")

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    labels = '{operation="Count",type="query"}'
    assert samples[f"quill_graphql_operation_duration_seconds_count{labels}"] == 4
    assert samples[f"quill_graphql_operation_sql_statements_sum{labels}"] == sent.value > 0
    assert samples['quill_graphql_errors_total{code="GRAPHQL_VALIDATION_FAILED",operation="Count"}'] == 1
    assert (
        samples['quill_http_request_duration_seconds_count{method="POST",route="/graphql",status="200"}'] == 4
    )


async def test_operation_names_are_bounded_labels(app_with: Callable[..., Any]) -> None:
    async with app_with(metrics_max_operation_names=2) as client:
        for name in ("One", "Two", "Three", "Four", "One"):
            await client.post("/graphql", json={"query": f"query {name} {{ __typename }}"})
        await client.post("/graphql", json={"query": "{ __typename }"})
        samples = _samples((await client.get("/metrics")).text)

    counts = {
        key.split('operation="')[1].split('"')[0]: value
        for key, value in samples.items()
        if key.startswith("quill_graphql_operation_duration_seconds_count")
    }
    assert counts == {"One": 2, "Two": 1, "(other)": 2, "(anonymous)": 1}


async def test_metrics_token_and_switch(app_with: Callable[..., Any]) -> None:
    async with app_with(metrics_token="s3cret-scrape") as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
    assert wrong.status_code == 401 and right.status_code == 200
    async with app_with(metrics=False) as client:
        assert (await client.get("/metrics")).status_code == 404


def test_settings_refuse_unknown_log_formats_and_tracers() -> None:
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        Settings(log_format="xml").check()
    with pytest.raises(SettingsError, match="TRACING"):
        Settings(tracing="jaeger").check()


# Real processes.


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "served.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def test_workers_share_metrics_and_write_json_lines(sqlite_url: str, tmp_path: Path) -> None:
    """Two uvicorn workers count into one PROMETHEUS_MULTIPROC_DIR; any worker's /metrics sums both."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    server = Server(
        sqlite_url,
        workers=2,
        log_path=tmp_path / "server.log",
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "LOG_FORMAT": "json"},
    )
    server.start()
    try:
        for i in range(40):  # a new connection each time, so both workers take some
            httpx.post(
                f"{server.url}/graphql",
                json={"query": "query Ping { __typename }"},
                headers={"X-Request-ID": f"ping-{i}"},
            )
        scrapes = [_samples(httpx.get(f"{server.url}/metrics").text) for _ in range(6)]
    finally:
        server.stop()

    key = 'quill_graphql_operation_duration_seconds_count{operation="Ping",type="query"}'
    assert {scrape[key] for scrape in scrapes} == {40.0}
    assert len({path.name.rsplit("_", 1)[1] for path in metrics_dir.glob("histogram_*.db")}) == 2
    log = (tmp_path / "server.log").read_text()
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    pings = [line for line in lines if line.get("requestId", "").startswith("ping-")]
    assert len(pings) == 40 and all(line["operations"][0]["name"] == "Ping" for line in pings)


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps the spans POSTed to /v1/traces."""

    spans: list[Any]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.server.spans.extend(scope.spans)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_traces_reach_an_otlp_collector_joined_to_the_callers_trace(sqlite_url: str, tmp_path: Path) -> None:
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    collector.spans = []  # type: ignore[attr-defined]
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    server = Server(
        sqlite_url,
        log_path=tmp_path / "server.log",
        env={
            "TRACING": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    server.start()
    try:
        response = httpx.post(
            f"{server.url}/graphql",
            json={"query": "query Counted { posts { totalCount } }"},
            headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
        assert response.status_code == 200
    finally:
        server.stop()  # shutting down flushes the spans
        deadline = time.monotonic() + 5
        while not any(s.name == "query Counted" for s in collector.spans) and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        collector.shutdown()

    spans = [s for s in collector.spans if s.trace_id.hex() == trace_id]  # type: ignore[attr-defined]
    [operation] = [s for s in spans if s.name == "query Counted"]
    assert operation.parent_span_id.hex() == caller_span
    attributes = {a.key: a.value.string_value for a in operation.attributes}
    assert attributes["graphql.operation.name"] == "Counted"
    assert attributes["graphql.operation.type"] == "query"
    by_id = {s.span_id: s for s in spans}

    def under_operation(span: Any) -> bool:
        while span.parent_span_id in by_id:
            span = by_id[span.parent_span_id]
            if span is operation:
                return True
        return False

    selects = [s for s in spans if s.name == "SELECT"]
    assert selects and all(under_operation(s) for s in selects)
    statement = {a.key: a.value.string_value for a in selects[-1].attributes}["db.query.text"]
    assert "count(" in statement.lower()
