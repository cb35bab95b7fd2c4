"""What a read costs on the resolver path, counted in SQL statements: one per connection level
whatever the width, plus one per totalCount asked for, and only the columns the query selects.

The compiled path (one statement per query) is counted in tests/test_compiled_reads.py; these
tests pin the resolvers, which still answer whatever the compiler does not express."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db.models import User
from db.seed import Shape, generate
from settings import Settings
from tests.conftest import GraphQLClient, StatementCounter
from tests.factories import make_user


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, compiled_reads=False)


# Each shape pages `$n` parents at the first level twice (aliases a and b), so that 200 parents
# fit under the page limit of 100, and asks the same of every parent below. The two root fields
# resolve one after the other, so each costs its own statement per level: the budget is per root.
USERS_POSTS_AUTHOR = """query ($n: Int!, $after: String) {
  a: users(first: $n) { edges { node { username posts(first: 10) { edges { node { title author { username } } } } } } }
  b: users(first: $n, after: $after) { edges { node { username posts(first: 10) { edges { node { title author { username } } } } } } }
}"""
USERS_POSTS_AUTHOR_COUNTED = """query ($n: Int!, $after: String) {
  a: users(first: $n) { totalCount edges { node { posts(first: 10) { totalCount edges { node { author { username } } } } } } }
  b: users(first: $n, after: $after) { totalCount edges { node { posts(first: 10) { totalCount edges { node { author { username } } } } } } }
}"""
TASKS_OWNER_NOTES = """query ($n: Int!, $after: String) {
  a: tasks(first: $n, filter: {status: OPEN}) { edges { node { title status owner { username } notes(first: 5) { edges { node { body } } } } } }
  b: tasks(first: $n, after: $after, filter: {status: OPEN}) { edges { node { title owner { username } notes(first: 5) { edges { node { body } } } } } }
}"""
USERS_TASKS_NOTES_TASK = """query ($n: Int!, $after: String) {
  a: users(first: $n) { edges { node { tasks(first: 3) { totalCount edges { node { notes(first: 2) { totalCount edges { node { task { title } } } } } } } } } }
  b: users(first: $n, after: $after) { edges { node { tasks(first: 3) { totalCount edges { node { notes(first: 2) { totalCount edges { node { task { title } } } } } } } } } }
}"""

SHAPES = {
    # users page + posts of every user (one statement) + their authors (one)
    "users.posts.author": (USERS_POSTS_AUTHOR, 3),
    # ... + the users count + the posts counts of every user (one grouped statement)
    "users.posts.author with totalCount": (USERS_POSTS_AUTHOR_COUNTED, 5),
    # tasks page + owners + notes of every task
    "tasks.owner.notes": (TASKS_OWNER_NOTES, 3),
    # users page + tasks + their counts + notes + their counts + the notes' tasks
    "users.tasks.notes.task with counts": (USERS_TASKS_NOTES_TASK, 6),
}


@pytest.fixture
async def populated(app: Starlette, session: AsyncSession, token_for: Callable[[User], str]) -> str:
    """200 users with posts, tasks and notes; returns a superuser's token (tasks are private)."""
    await generate(
        app.state.engine, Shape(users=200, posts_per_user=12, tasks_per_user=3, notes_per_task=3), "x"
    )
    return token_for(
        await make_user(session, username="zz-root", email="root@example.com", is_superuser=True)
    )


async def _cost(gql: GraphQLClient, statements: StatementCounter, query: str, token: str, width: int) -> int:
    """Statements for the shape over `width` parents: two pages of width/2 each."""
    half = width // 2
    cursor_query = "query ($n: Int!) { users(first: $n) { pageInfo { endCursor } } tasks(first: $n, filter: {status: OPEN}) { pageInfo { endCursor } } }"
    cursors = (await gql(cursor_query, {"n": half}, token=token))["data"]
    after = cursors["tasks" if "tasks(first: $n" in query else "users"]["pageInfo"]["endCursor"]
    with statements.count() as counted:
        body = await gql(query, {"n": half, "after": after}, token=token)
    first_level = body["data"]["a"]["edges"] + body["data"]["b"]["edges"]
    assert len(first_level) >= min(width, 60), "the shape must really page that many parents"
    return counted.value


@pytest.mark.parametrize("shape", SHAPES)
async def test_cost_does_not_grow_with_the_number_of_parents(
    gql: GraphQLClient, statements: StatementCounter, populated: str, shape: str
) -> None:
    query, per_root = SHAPES[shape]

    narrow = await _cost(gql, statements, query, populated, width=10)
    wide = await _cost(gql, statements, query, populated, width=200)

    assert narrow == wide == 2 * per_root


async def test_total_count_runs_only_when_selected(
    gql: GraphQLClient, statements: StatementCounter, populated: str
) -> None:
    with statements.count() as without:
        await gql("{ posts(first: 5) { edges { node { title } } } }")
    with statements.count() as with_count:
        await gql("{ posts(first: 5) { totalCount edges { node { title } } } }")

    assert (without.value, with_count.value) == (1, 2)
    assert not any("count(" in sql.lower() for sql in without.statements)


async def test_only_selected_columns_are_loaded(
    gql: GraphQLClient, statements: StatementCounter, populated: str
) -> None:
    with statements.count() as titles_only:
        await gql(
            "{ posts(first: 5) { edges { node { title } } } users(first: 2) { edges { node { username } } } }"
        )
    with statements.count() as with_content:
        await gql("{ posts(first: 5) { edges { node { title content } } } }")

    assert "content" not in titles_only.statements[0]
    assert "password_hash" not in " ".join(titles_only.statements)
    assert "email" not in titles_only.statements[1]
    assert "content" in with_content.statements[0]


async def test_fragments_are_followed_when_choosing_columns(
    gql: GraphQLClient, statements: StatementCounter, populated: str
) -> None:
    query = """
      fragment Body on Post { content }
      { posts(first: 2) { edges { node { ... on Post { title } ...Body } } } }
    """
    with statements.count() as counted:
        body = await gql(query)

    assert body["data"]["posts"]["edges"][0]["node"]["content"], body
    assert "content" in counted.statements[0] and "title" in counted.statements[0]


async def test_a_deep_page_costs_what_the_first_page_costs(
    gql: GraphQLClient, statements: StatementCounter, populated: str
) -> None:
    """Keyset pages: one statement, no OFFSET, wherever in the list the page starts."""
    query = "query ($after: String) { posts(first: 100, after: $after) { edges { node { id title } } pageInfo { endCursor } } }"
    with statements.count() as first_page:
        first = await gql(query)
    after = first["data"]["posts"]["pageInfo"]["endCursor"]
    for _ in range(20):  # walk to page 22 (posts 2,101-2,200)
        after = (await gql(query, {"after": after}))["data"]["posts"]["pageInfo"]["endCursor"]
    with statements.count() as deep_page:
        deep = await gql(query, {"after": after})

    assert first_page.value == deep_page.value == 1
    assert len(deep["data"]["posts"]["edges"]) == 100
    [deep_sql], [deep_parameters] = deep_page.statements, deep_page.parameters
    if "OFFSET" in deep_sql:  # SQLAlchemy always writes "LIMIT ? OFFSET ?" on SQLite, with 0
        assert deep_sql.rstrip().endswith("OFFSET ?") and deep_parameters[-1] == 0
    assert "WHERE posts.id >" in deep_sql


async def test_a_repeated_document_is_parsed_and_validated_once(app: Starlette, gql: GraphQLClient) -> None:
    admission = app.state.admission
    documents, prepared = admission.documents.cache, admission.prepared
    query = "{ posts(first: 1) { totalCount } }"
    misses, hits = documents.misses, prepared.hits

    for _ in range(3):
        await gql(query)
    await gql(query, {"unused": 1})  # other variables: admitted again, from the parsed document

    assert documents.misses - misses == 1
    assert prepared.hits - hits == 2


def test_the_caches_are_bounded_by_bytes() -> None:
    from schema.lru import BytesLru

    cache: BytesLru[str] = BytesLru(max_bytes=100)
    for key in ("a", "b", "c"):
        cache.put(key, key, 40)
    cache.get("b")  # b becomes the most recent
    cache.put("d", "d", 40)
    cache.put("huge", "x", 101)  # larger than the whole cache: not kept

    assert len(cache) == 2 and cache.bytes == 80
    assert cache.peek("a") is None and cache.peek("c") is None and cache.peek("huge") is None
    assert cache.peek("b") == "b" and cache.peek("d") == "d"
