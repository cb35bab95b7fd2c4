"""A page deep in a million posts costs what the first page costs: same plan, same index, same rows read.

Marked slow (PostgreSQL generates 1,000,000 posts, then the plans are read); CI runs it.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from db.pagination import Order
from schema.relay import encode_cursor
from server import create_app
from settings import Settings, async_database_url
from tests.conftest import PostgresServer, StatementCounter, migrate

# Both paths are asked here (big_app), whatever COMPILED_READS says: the resolver pass skips it.
pytestmark = [pytest.mark.slow, pytest.mark.one_path]

POSTS = 1_000_000
# The seed command's shape (db/seed.py: posts round-robin over 1,000 users, a minute apart), made
# by PostgreSQL itself: a few seconds, where the seed command's Python takes most of a minute.
GENERATE = f"""
INSERT INTO users (id, username, email, password_hash)
  SELECT g, 'user' || g, 'user' || g || '@example.com', 'not a hash' FROM generate_series(1, 1000) AS g;
INSERT INTO posts (id, title, content, user_id, date_posted)
  SELECT g, 'Post number ' || g, repeat('A sentence of a post body. ', 10), 1 + g % 1000,
         timestamptz '2025-01-31 00:00:00+00' + g * interval '1 minute'
  FROM generate_series(1, {POSTS}) AS g;
SELECT setval(pg_get_serial_sequence('users', 'id'), 1000), setval(pg_get_serial_sequence('posts', 'id'), {POSTS});
"""
PAGE = """query ($after: String, $order: PostOrder) {
  posts(first: 100, after: $after, orderBy: $order) { edges { node { id title content datePosted } } }
}"""


@pytest.fixture(scope="module")
def million_posts(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"quill_deep_{uuid.uuid4().hex[:8]}"
    postgres_server.run(f'CREATE DATABASE "{name}"')
    url = postgres_server.url_for(name)
    try:
        migrate(url)
        # Nothing here searches, and a million posts' search vectors (migration 0010) would take
        # most of two minutes to compute and index: the column goes before the posts come.
        drop = "ALTER TABLE posts DROP COLUMN search_vector;"
        subprocess.run(["psql", url, "-qc", drop + GENERATE], check=True, capture_output=True)
        postgres_server.run(f'ALTER DATABASE "{name}" SET search_path = public')
        subprocess.run(["psql", url, "-qc", "VACUUM ANALYZE posts"], check=True, capture_output=True)
        yield url
    finally:
        postgres_server.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=[True, False], ids=["compiled", "resolvers"])
async def big_app(million_posts: str, request: pytest.FixtureRequest) -> AsyncIterator[Starlette]:
    """The app answering with one compiled statement, and with the resolvers' page statement."""
    settings = Settings(
        app_env="test",
        secret_key="s" * 40,
        database_url=async_database_url(million_posts),
        compiled_reads=request.param,
    )
    app = create_app(settings)
    async with LifespanManager(app):
        yield app


async def _page_statement(app: Starlette, variables: dict[str, Any]) -> tuple[str, Any]:
    """The one statement the server sends for a page, with its parameters."""
    with StatementCounter().listening(app) as counter, counter.count() as sent:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            body = (await client.post("/graphql", json={"query": PAGE, "variables": variables})).json()
    assert len(body["data"]["posts"]["edges"]) == 100
    [statement] = sent.statements
    [parameters] = sent.parameters
    return statement, parameters


async def _plan(app: Starlette, statement: tuple[str, Any], *, generic: bool) -> dict[str, Any]:
    """The statement's plan, as the resolvers' one-off statements get it (custom, for these
    values) or as compiled reads run it (generic, for any values: db/read_connections.py)."""
    sql, parameters = statement
    async with app.state.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.execute(f"SET plan_cache_mode = {'force_generic_plan' if generic else 'auto'}")
        try:
            plan = await raw.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *parameters)
        finally:
            await raw.execute("RESET plan_cache_mode")
    document = json.loads(plan) if isinstance(plan, str) else plan
    return document[0]["Plan"]


def _shape(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The plan's node types and indexes, top down: what must not change with the page's depth."""
    shape = [(plan["Node Type"], plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        shape += _shape(child)
    return shape


def _scan(plan: dict[str, Any]) -> dict[str, Any]:
    return plan if "Index Name" in plan else _scan(plan["Plans"][0])


@pytest.mark.parametrize(
    ("order", "key"),
    [
        ({"field": "ID", "direction": "ASC"}, lambda n: (n,)),
        ({"field": "DATE_POSTED", "direction": "DESC"}, None),
    ],
)
@pytest.mark.parametrize("generic", [False, True], ids=["custom-plan", "generic-plan"])
async def test_last_page_has_the_plan_of_the_first(
    big_app: Starlette, order: dict[str, str], key: Any, generic: bool
) -> None:
    first = await _page_statement(big_app, {"order": order})
    if key is None:  # a cursor near the end of a descending date order: the oldest posts
        last_page = {"order": order, "after": await _cursor_near_end(big_app, order)}
    else:
        last_page = {"order": order, "after": encode_cursor(Order(order["field"]), key(POSTS - 100))}
    deep = await _page_statement(big_app, last_page)

    first_plan, deep_plan = (
        await _plan(big_app, first, generic=generic),
        await _plan(big_app, deep, generic=generic),
    )

    assert _shape(first_plan) == _shape(deep_plan)
    assert _scan(first_plan)["Node Type"].startswith("Index Scan")
    assert _scan(first_plan)["Index Name"] in {"pk_posts", "ix_posts_date_posted_id"}
    # Both read about one page of rows from the index, not the million before it.
    assert _scan(first_plan)["Actual Rows"] <= 101
    assert _scan(deep_plan)["Actual Rows"] <= 101
    assert deep_plan["Shared Hit Blocks"] + deep_plan.get("Shared Read Blocks", 0) < 200


async def _cursor_near_end(app: Starlette, order: dict[str, str]) -> str:
    async with app.state.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        row = await raw.driver_connection.fetchrow(
            "SELECT date_posted, id FROM posts ORDER BY date_posted ASC, id ASC OFFSET 100 LIMIT 1"
        )
    return encode_cursor(Order("DATE_POSTED", descending=True), (row["date_posted"], row["id"]))


NESTED = [
    # Q1's shape: each user's page of posts, each post's author read from the user's row.
    "{ users(first: 50) { edges { node { username posts(first: 10) { edges { node { title datePosted author { username } } } } } } } }",
    # A to-one object outside its parent's page: one primary-key lookup per post.
    "{ posts(first: 100, orderBy: {field: DATE_POSTED, direction: DESC}) { edges { node { title author { username } } } pageInfo { hasNextPage endCursor } } }",
]


@pytest.mark.parametrize("query", NESTED)
@pytest.mark.parametrize("generic", [False, True], ids=["custom-plan", "generic-plan"])
async def test_nested_reads_use_indexes_per_parent(million_posts: str, query: str, generic: bool) -> None:
    """The compiled statement reads each parent's posts through an index, never the whole table,
    and joins nothing by hashing, also in the generic plan compiled reads run with (which once
    turned a join to users into a hash of all users per page)."""
    settings = Settings(app_env="test", secret_key="s" * 40, database_url=async_database_url(million_posts))
    app = create_app(settings)
    async with LifespanManager(app):
        with StatementCounter().listening(app) as counter, counter.count() as sent:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            ) as client:
                body = (await client.post("/graphql", json={"query": query})).json()
        assert "errors" not in body
        [statement] = zip(sent.statements, sent.parameters, strict=True)
        plan = await _plan(app, statement, generic=generic)
    nodes = list(_walk(plan))
    # (A thousand users may well be read whole and sorted; a million posts must not be.)
    scans = [node for node in nodes if node.get("Relation Name") == "posts"]
    assert scans and all(node["Node Type"] in ("Index Scan", "Index Only Scan") for node in scans), _kinds(
        nodes
    )
    assert not [node for node in nodes if node["Node Type"] in ("Hash Join", "Merge Join", "Hash")], _kinds(
        nodes
    )
    # A page reads about its own rows from the index, whatever the table holds.
    assert all(node["Actual Rows"] <= 101 for node in scans), _kinds(nodes)
    assert plan["Shared Hit Blocks"] + plan.get("Shared Read Blocks", 0) < 3000


def _walk(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _walk(child)


def _kinds(nodes: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return [(node["Node Type"], node.get("Relation Name"), node.get("Index Name")) for node in nodes]
