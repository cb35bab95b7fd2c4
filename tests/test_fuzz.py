"""A bounded fuzzing run: hypothesis-graphql builds queries and mutations from the schema (valid
ones, and deliberately invalid ones) and sends them to the real app. None may get a 5xx, an
internal error, or hang."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db.models import User
from schema import build_schema
from tests.factories import make_note, make_post, make_task, make_user

BUILT = build_schema()
SCHEMA = BUILT.as_str()
SCALARS = {
    "DateTime": st.datetimes().map(lambda moment: nodes.String(moment.isoformat())),
}
# Every mutation, so a new one is fuzzed without an edit here; but uploadAvatar takes a file,
# which only a multipart request can carry (tests/test_avatars.py).
MUTATIONS = [name for name in BUILT._schema.mutation_type.fields if name != "uploadAvatar"]  # type: ignore[union-attr]
EXAMPLES = 150
STRATEGIES: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
    "queries": lambda: queries(SCHEMA, custom_scalars=SCALARS),
    "mutations": lambda: mutations(SCHEMA, fields=MUTATIONS, custom_scalars=SCALARS),
    "invalid queries": lambda: queries(SCHEMA, custom_scalars=SCALARS, mode=Mode.NEGATIVE),
}


@functools.cache
def generated(kind: str, count: int = EXAMPLES) -> list[Any]:
    """`count` documents of a kind, the same ones every run (CI is not the place to discover new
    inputs), made once for every engine. Hypothesis only generates here; the app is driven by
    one async test."""
    strategy = STRATEGIES[kind]()
    documents: list[Any] = []

    @settings(max_examples=count, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(document: Any) -> None:
        documents.append(document)

    collect()
    return documents


@pytest.fixture
async def token(session: AsyncSession, token_for: Callable[[User], str]) -> str:
    """A user with some data to find, so that generated queries reach past empty lists."""
    user = await make_user(session, username="fuzzer", email="fuzzer@example.com")
    await make_post(session, user)
    await make_note(session, await make_task(session, user))
    return token_for(user)


async def _check(client: httpx.AsyncClient, document: Any, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await asyncio.wait_for(
        client.post("/graphql", json={"query": document}, headers=headers), timeout=10
    )
    assert response.status_code < 500, (document, response.text)
    body = response.json()
    codes = {(error.get("extensions") or {}).get("code") for error in body.get("errors", [])}
    assert "INTERNAL_SERVER_ERROR" not in codes, (document, body)


async def test_generated_queries(client: httpx.AsyncClient, token: str) -> None:
    for index, document in enumerate(generated("queries")):
        await _check(client, document, token if index % 2 else None)


async def test_generated_mutations(client: httpx.AsyncClient, token: str) -> None:
    for index, document in enumerate(generated("mutations")):
        await _check(client, document, token if index % 2 else None)


@pytest.mark.one_path  # refused by admission, before either executor
async def test_generated_invalid_queries(client: httpx.AsyncClient) -> None:
    for document in generated("invalid queries"):
        await _check(client, document, None)


async def test_the_app_still_answers_after_fuzzing(app: Starlette, client: httpx.AsyncClient) -> None:
    assert (await client.post("/graphql", json={"query": "{ __typename }"})).json() == {
        "data": {"__typename": "Query"}
    }
    assert app.state.engine.pool.checkedout() == 0
