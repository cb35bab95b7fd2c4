"""Where a compiled query's time goes inside the server, stage by stage (`make breakdown`).

Runs the canonical queries through the objects the HTTP endpoint uses, in process, against the
benchmark databases that `make bench` loaded (PostgreSQL `bench` and the harness's SQLite file),
and prints the median microseconds of each stage over many repetitions:

    body      orjson parsing the request body
    admission the admission step for a known request: its remembered decision, the bearer token
              (a remembered one), the rate limit, the deadline (schema/admission/)
    plan      the compiled plan for this kind of viewer (kept with the admitted request)
    sql       the one statement, from sending it to holding the JSON bytes (driver and database)
    app       the whole request through the ASGI app, middleware included (no HTTP)
    log line  what the request's INFO log line adds to `app` (the benchmark runs at WARNING,
              as every peer runs without an access log)

What a request costs under load (from the benchmark's requests per second) minus `app` is
uvicorn and the HTTP connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PG_BENCH, QUERIES, SECRET, SQLITE_BENCH  # noqa: E402
from schema.admission.admission import Request  # noqa: E402
from server import create_app  # noqa: E402
from settings import Settings, async_database_url  # noqa: E402

ROUNDS = 2000
STAGES = ("body", "admission", "plan", "sql", "app", "log line")


async def measure(url: str, nowhere: TextIO) -> None:
    settings = replace(
        Settings.from_env(),
        app_env="production",
        secret_key=SECRET,
        database_url=async_database_url(url),
        rate_limit=False,
        log_level="WARNING",
        metrics=False,  # production refuses /metrics without METRICS_TOKEN, as in bench/run.py
    )
    app = create_app(settings)
    services, compiled, admission = app.state.services, app.state.compiled_reads, app.state.admission
    token, _ = services.tokens.issue(1, is_superuser=True)  # tasks are private: Q2 reads as a superuser
    headers = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {token}".encode())]
    print(f"\n{app.state.engine.dialect.name}: median µs of {ROUNDS}")
    print(f"{'query':7}" + "".join(f"{stage:>10}" for stage in STAGES))
    quill = logging.getLogger("quill")
    for handler in quill.handlers:  # the log lines measured go nowhere
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(nowhere)
    async with app.router.lifespan_context(app):
        for name, query in QUERIES.items():
            body = orjson.dumps({"query": query})
            await _request(app, body, headers)  # the first time through the pipeline: now known
            timings: dict[str, list[float]] = {stage: [] for stage in STAGES}
            for round_ in range(ROUNDS):
                t0 = time.perf_counter()
                payload = orjson.loads(body)
                t1 = time.perf_counter()
                request = Request(
                    query=payload["query"], authorization=f"Bearer {token}", address="127.0.0.1"
                )
                admitted = await admission.admit(request)
                t2 = time.perf_counter()
                viewer = admitted.authentication.viewer
                plan = compiled.plan(admitted.prepared, viewer)
                t3 = time.perf_counter()
                await compiled.read(admitted.prepared, plan, viewer, time.monotonic() + 10)
                t4 = time.perf_counter()
                quiet, logged = await _request_pair(app, body, headers, quill, logged_first=round_ % 2 == 0)
                stages = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, quiet, logged)
                for stage, seconds in zip(STAGES, stages, strict=True):
                    timings[stage].append(seconds * 1e6)
            medians = {stage: statistics.median(values) for stage, values in timings.items()}
            medians["log line"] -= medians["app"]  # the same request, logged
            print(f"{name:7}" + "".join(f"{medians[stage]:10.1f}" for stage in STAGES))


async def _request_pair(
    app: Any, body: bytes, headers: list[tuple[bytes, bytes]], log: logging.Logger, *, logged_first: bool
) -> tuple[float, float]:
    """Seconds for the request without its log line, and with it (in turns which goes first)."""
    seconds = {}
    for level in ("INFO", "WARNING") if logged_first else ("WARNING", "INFO"):
        log.setLevel(level)
        started = time.perf_counter()
        await _request(app, body, headers)
        seconds[level] = time.perf_counter() - started
    log.setLevel("WARNING")
    return seconds["WARNING"], seconds["INFO"]


async def _request(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/graphql", "raw_path": b"/graphql", "root_path": "", "query_string": b"",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent


def main() -> None:
    with open(os.devnull, "w") as nowhere:
        for url in (PG_BENCH, f"sqlite:///{SQLITE_BENCH}"):
            asyncio.run(measure(url, nowhere))


if __name__ == "__main__":
    main()
