"""Quill through a real PgBouncer in transaction mode (tests/pgbouncer_rig.py).

PgBouncer 1.18 (Debian 12) hands each transaction whichever server connection is free, so the
tests share two server connections among many clients: a named prepared statement or a session
setting left on a server connection would meet another client. `make test` also runs every
PostgreSQL test through PgBouncer (TEST_DATABASE_POOLER=pgbouncer); these check what only a
pooler shows.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from starlette.applications import Starlette

from db.engine import DatabaseNotReady
from server import create_app
from settings import Settings, async_database_url
from tests.api import CREATE_POST, UPDATE_POST, mutate, register
from tests.conftest import GraphQLClient, PostgresServer, truncate_all
from tests.pgbouncer_rig import PgBouncer, PgBouncerMissing, pgbouncer

FEED = "{ posts(first: 100) { totalCount edges { node { title author { username } } } } }"
MINE = "{ me { username posts(first: 100) { edges { node { title } } } } }"


@pytest.fixture(scope="module")
def bouncer(postgres_server: PostgresServer) -> Iterator[PgBouncer]:
    try:
        with pgbouncer(postgres_server.admin_url, pool_size=2) as started:
            yield started
    except PgBouncerMissing as missing:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{missing} (REQUIRE_POSTGRES=1)")
        pytest.skip(str(missing))


@pytest.fixture
def pooled(settings: Settings, engine_name: str, bouncer: PgBouncer, postgres_database: str) -> Settings:
    """The test's settings, with the database behind the module's PgBouncer (pool of 2)."""
    if engine_name != "postgresql":
        pytest.skip("PgBouncer is PostgreSQL's")
    database = postgres_database.rsplit("/", 1)[1]
    truncate_all(postgres_database)
    url = async_database_url(bouncer.url(database))
    return replace(settings, database_url=url, database_pooler="transaction", database_wait_seconds=1)


@asynccontextmanager
async def client_of(settings: Settings) -> AsyncIterator[tuple[Starlette, GraphQLClient]]:
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as http:
            yield app, GraphQLClient(http)


async def test_without_the_setting_start_up_says_what_to_set(pooled: Settings) -> None:
    """PgBouncer refuses the session setting asyncpg sends at connect: the server stops at
    once and names the setting, instead of waiting for a database that will never answer."""
    with pytest.raises(DatabaseNotReady, match="DATABASE_POOLER=transaction"):
        async with client_of(replace(pooled, database_pooler="none")):
            pass


@pytest.mark.one_path  # it runs both executors itself
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "resolvers"])
async def test_many_clients_share_two_server_connections_without_a_statement_error(
    pooled: Settings, compiled: bool
) -> None:
    """30 clients write and read at once, each operation on the server connection PgBouncer
    gives it (compiled reads and writes, or the ORM path's writes and the resolvers): every
    answer is whole, and every write is there."""
    async with client_of(replace(pooled, compiled_reads=compiled)) as (_, gql):
        tokens = [str((await register(gql, f"user{index}"))["accessToken"]) for index in range(6)]

        async def client(index: int) -> None:
            token = tokens[index % len(tokens)]
            for round_ in range(4):
                created = await mutate(
                    gql, CREATE_POST, token, input={"title": f"p{index}-{round_}", "content": "x"}
                )
                assert created["__typename"] == "PostPayload", created
                renamed = await mutate(
                    gql, UPDATE_POST, token, id=created["post"]["id"], input={"title": f"q{index}-{round_}"}
                )
                assert renamed["__typename"] == "PostPayload", renamed
                assert (await gql(FEED))["data"]["posts"]["totalCount"] >= 1
                assert (await gql(MINE, token=token))["data"]["me"]["username"].startswith("user")

        await asyncio.gather(*(client(index) for index in range(30)))
        feed = (await gql(FEED))["data"]["posts"]
    assert feed["totalCount"] == 120
    assert {edge["node"]["title"][0] for edge in feed["edges"]} == {"q"}


async def test_session_state_is_set_per_transaction_and_ends_with_it(
    pooled: Settings, bouncer: PgBouncer
) -> None:
    """The statement limit is a SET LOCAL in each of Quill's transactions: it holds inside, and
    neither server connection has it once they are over; and every Quill session names itself
    (PgBouncer keeps the last client's application_name otherwise)."""
    settings = replace(pooled, statement_timeout_ms=1234)
    async with client_of(settings) as (app, _):

        async def inside() -> tuple[Any, Any]:
            async with app.state.engine.connect() as conn:
                limit = await conn.scalar(text("SHOW statement_timeout"))
                name = await conn.scalar(text("SELECT current_setting('application_name')"))
                await asyncio.sleep(0.1)  # both server connections are in use at once
                await conn.commit()  # a SET in a transaction that rolls back is undone anyway
                return limit, name

        assert list(await asyncio.gather(inside(), inside())) == [("1234ms", "quill")] * 2

    async def afterwards() -> Any:
        conn = await asyncpg_connect(bouncer.url(settings.database_url.rsplit("/", 1)[1]))
        try:
            async with conn.transaction():
                limit = await conn.fetchval("SHOW statement_timeout")
                await asyncio.sleep(0.1)
                return limit
        finally:
            await conn.close()

    assert "1234ms" not in await asyncio.gather(afterwards(), afterwards())


async def test_a_compiled_read_past_the_statement_limit_is_cancelled_on_the_server(
    pooled: Settings, postgres_database: str
) -> None:
    """Behind a pooler the compiled reads' limit is kept by Quill: the statement is cancelled on
    the server (through PgBouncer), not left running."""
    async with client_of(replace(pooled, statement_timeout_ms=200)) as (app, _):
        reads = app.state.reads
        if reads is None or not app.state.compiled_reads.enabled:
            pytest.skip("compiled reads are off")
        started = asyncio.get_running_loop().time()
        with pytest.raises(Exception, match="statement timeout"):
            await reads.fetch("SELECT pg_sleep(5)::text::bytea", (), started + 10)
        assert asyncio.get_running_loop().time() - started < 2
    conn = await asyncpg_connect(postgres_database)
    try:
        for _ in range(50):
            running = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(5)%' AND state = 'active'"
            )
            if running == 0:
                break
            await asyncio.sleep(0.05)
        assert running == 0
    finally:
        await conn.close()


async def asyncpg_connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(url.replace("postgresql://", "postgres://"), timeout=5)


async def test_a_direct_url_keeps_the_compiled_reads_generic_plans(
    pooled: Settings, postgres_server: PostgresServer, postgres_database: str
) -> None:
    """DATABASE_DIRECT_URL: the compiled reads' small pool bypasses PgBouncer, so its sessions
    keep their settings (generic plans, the statement limit) while everything else is pooled."""
    # The server's own URL: in the PgBouncer pass the fixture's URL is itself through a pooler.
    direct = async_database_url(postgres_server.url_for(postgres_database.rsplit("/", 1)[1]))
    async with client_of(replace(pooled, database_direct_url=direct)) as (app, gql):
        reads = app.state.reads
        if reads is None or not app.state.compiled_reads.enabled:
            pytest.skip("compiled reads are off")
        setting = "SELECT convert_to(current_setting('plan_cache_mode'), 'UTF8')"
        assert await reads.fetch(setting, (), asyncio.get_running_loop().time() + 5) == b"force_generic_plan"
        assert (await gql("{ posts(first: 1) { totalCount } }"))["data"]["posts"]["totalCount"] == 0
