"""One session per request, always closed; concurrent resolvers share it without tripping SQLAlchemy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db.models import User
from db.session import OperationFinished, RequestDb
from tests.conftest import GraphQLClient
from tests.factories import make_note, make_post, make_task, make_user

WIDE = """
{
  a: users(first: 5) { edges { node { username posts(first: 3) { edges { node { title author { username } } } } } } }
  b: posts(first: 5) { totalCount edges { node { title author { username tasks(first: 2) { totalCount } } } } }
  c: tasks(first: 5) { totalCount edges { node { title notes(first: 2) { totalCount edges { node { body task { title } } } } } } }
  d: users(last: 2) { totalCount edges { node { username } } }
  e: user(username: "u0") { username posts(first: 1) { edges { node { title } } } }
}
"""


async def _populate(session: AsyncSession) -> None:
    for i in range(5):
        user = await make_user(session, username=f"u{i}")
        await make_post(session, user)
        task = await make_task(session, user)
        await make_note(session, task)


async def test_many_root_fields_and_nested_lists_share_one_session(
    gql: GraphQLClient, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    await _populate(session)
    admin = await make_user(session, is_superuser=True)

    data = (await gql(WIDE, token=token_for(admin)))["data"]

    assert len(data["a"]["edges"]) == 5
    assert data["b"]["totalCount"] == 5
    assert data["c"]["edges"][0]["node"]["notes"]["totalCount"] == 1
    assert data["d"]["totalCount"] == 6
    assert data["e"]["username"] == "u0"


async def test_no_connection_left_checked_out_after_many_requests(
    app: Starlette, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """500 requests, a third of them failing after the session was used: the pool ends empty."""
    await _populate(session)
    await session.close()
    failing = "{ a: posts(first: 2) { totalCount } b: posts(first: 500) { totalCount } }"
    succeeding = "{ posts(first: 2) { totalCount edges { node { author { username } } } } }"
    semaphore = asyncio.Semaphore(20)

    async def one(i: int) -> int:
        async with semaphore:
            response = await client.post("/graphql", json={"query": failing if i % 3 == 0 else succeeding})
            return len(response.json().get("errors", []))

    errors = await asyncio.gather(*(one(i) for i in range(500)))

    assert sum(1 for count in errors if count) == 167
    assert app.state.engine.pool.checkedout() == 0


async def test_a_finished_operation_cannot_open_another_session(app: Starlette) -> None:
    """Work graphql-core settles in the background after an operation ended must not reopen one."""
    db = RequestDb(app.state.services.sessionmaker)
    async with db.use() as session:
        await session.execute(text("SELECT 1"))
    await db.close()

    with pytest.raises(OperationFinished):
        async with db.use():
            pass
    assert app.state.engine.pool.checkedout() == 0
