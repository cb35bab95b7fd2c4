"""Where a compiled query's time goes inside the server, stage by stage (`make breakdown`).

Runs the canonical queries through the same objects the HTTP endpoint uses, in process, against
the benchmark database that `make bench` loaded (DATABASE_URL, default PostgreSQL `bench`), and
prints the median microseconds of each stage over many repetitions:

    body      orjson parsing the request body
    plan      the known-document lookup, variables, cost, the read tree and its parameters
    sql       the one statement, from sending it to holding the JSON text (driver and database)
    response  the response body around the database's JSON

What a request costs in all (from the benchmark's requests per second) minus these is uvicorn,
Starlette, the middleware and the HTTP connection.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import orjson
from graphql import DocumentNode, parse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PG_BENCH, QUERIES  # noqa: E402
from db.json_reads import read_json  # noqa: E402
from db.visibility import Viewer  # noqa: E402
from server import create_app  # noqa: E402
from settings import Settings, async_database_url  # noqa: E402

ROUNDS = 300
SUPERUSER = Viewer(id=0, is_superuser=True)  # as the benchmark asks (tasks are private)


async def main() -> None:
    url = os.environ.get("DATABASE_URL") or PG_BENCH
    settings = replace(Settings.from_env(), database_url=async_database_url(url), rate_limit=False)
    app = create_app(settings)
    compiled = app.state.compiled_reads
    services = app.state.services
    print(f"{'query':6} {'body':>8} {'plan':>8} {'sql':>8} {'response':>9}   (median µs of {ROUNDS})")
    async with app.router.lifespan_context(app):
        for name, query in QUERIES.items():
            body = orjson.dumps({"query": query})
            known = compiled.known_operation(_parse(query), None)
            compiled.remember(query, None, known)
            timings: dict[str, list[float]] = {"body": [], "plan": [], "sql": [], "response": []}
            async with services.sessionmaker() as session:
                for _ in range(ROUNDS):
                    t0 = time.perf_counter()
                    payload = orjson.loads(body)
                    t1 = time.perf_counter()
                    fields = compiled.plan(known, payload.get("variables"), SUPERUSER)
                    statement = compiled.statements.get(fields, session.get_bind().dialect)
                    t2 = time.perf_counter()
                    data = (await read_json(session, statement, fields)).encode()
                    t3 = time.perf_counter()
                    orjson.dumps({"data": orjson.Fragment(data)})
                    t4 = time.perf_counter()
                    for stage, seconds in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                        timings[stage].append(seconds * 1e6)
            medians = [statistics.median(values) for values in timings.values()]
            print(f"{name:6} {medians[0]:8.1f} {medians[1]:8.1f} {medians[2]:8.1f} {medians[3]:9.1f}")


def _parse(query: str) -> DocumentNode:
    return parse(query)


if __name__ == "__main__":
    asyncio.run(main())
