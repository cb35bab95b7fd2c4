"""Two apps on one database, compiled reads on and off: `pair.check(query)` asks both and
fails the test unless the answers are equal (tests/test_compiled_reads.py, tests/test_aggregates.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import StatementCounter


class Executors(logging.Handler):
    """What answered each operation, from the request log's lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        for operation in getattr(record, "fields", {}).get("operations", []):
            self.seen.append(operation["executor"])


@dataclass
class Pair:
    compiled: httpx.AsyncClient
    reference: httpx.AsyncClient
    statements: StatementCounter
    executors: Executors
    engine: str
    last_statements: int = 0  # what the compiled app's second request of the last check() sent

    async def post(
        self, client: httpx.AsyncClient, query: str, variables: Any, token: str | None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        return response.status_code, response.json()

    async def check(self, query: str, variables: Any = None, token: str | None = None) -> tuple[Any, str]:
        """Both answers (equal, or the test fails); returns the answer and what answered the
        compiled app's second (short-way) request. A compiled answer is exactly one statement."""
        expected = await self.post(self.reference, query, variables, token)
        first = await self.post(self.compiled, query, variables, token)
        with self.statements.count() as sent:
            second = await self.post(self.compiled, query, variables, token)
        for answer in (first, second):
            assert json.dumps(_numbers(answer)) == json.dumps(_numbers(expected)), (
                f"\nquery: {query}\nvariables: {variables}\ncompiled: {answer}\nresolvers: {expected}"
            )
        executor = self.executors.seen[-1]
        if executor == "compiled":
            assert sent.value == 1, (query, sent.statements)
        self.last_statements = sent.value
        return expected[1], executor

    @property
    def compiles(self) -> bool:
        return self.engine in ("sqlite", "postgresql", "mysql")


def _numbers(value: Any) -> Any:
    """The answer with JSON's numbers as JSON means them: 3.0 and 3 are one number (the
    resolvers print a Float as Python does, `3.0`; PostgreSQL's and MariaDB's JSON print `3`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_numbers(item) for item in value]
    return value


@pytest.fixture
async def pair(app_with: Callable[..., Any], engine_name: str) -> AsyncIterator[Pair]:
    # The rate limit would refuse the later parts of a long corpus; it has tests of its own.
    executors = Executors()
    log = logging.getLogger("quill.request")
    log.addHandler(executors)
    try:
        async with (
            app_with(compiled_reads=True, rate_limit=False) as compiled,
            app_with(compiled_reads=False, rate_limit=False) as reference,
        ):
            with StatementCounter().listening(compiled.app) as statements:
                yield Pair(compiled, reference, statements, executors, engine_name)
    finally:
        log.removeHandler(executors)
