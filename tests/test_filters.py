"""Filters on every list, root and nested, and that user input in them is never a pattern."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import TaskStatus, User
from schema.relay import to_global_id
from tests.conftest import GraphQLClient, StatementCounter
from tests.factories import T0, make_comment, make_note, make_post, make_task, make_user


def titles(connection: dict) -> list[str]:  # type: ignore[type-arg]
    return [edge["node"]["title"] for edge in connection["edges"]]


async def test_post_filters(gql: GraphQLClient, session: AsyncSession) -> None:
    ada = await make_user(session, username="ada")
    bob = await make_user(session, username="bob")
    await make_post(session, ada, title="Hello World", date_posted=T0)
    await make_post(session, ada, title="50% off_sale", date_posted=T0 + timedelta(days=1))
    await make_post(session, bob, title="hello again", date_posted=T0 + timedelta(days=2))
    query = "query ($f: PostFilter) { posts(filter: $f) { totalCount edges { node { title } } } }"

    async def posts(**f: object) -> list[str]:
        found = (await gql(query, {"f": f}))["data"]["posts"]
        assert found["totalCount"] == len(found["edges"])
        return titles(found)

    assert await posts(authorId=to_global_id("User", ada.id)) == ["Hello World", "50% off_sale"]
    assert await posts(titleContains="HELLO") == ["Hello World", "hello again"]
    assert await posts(titleContains="%") == ["50% off_sale"]  # a literal %, not a wildcard
    assert await posts(titleContains="f_s") == ["50% off_sale"]
    assert await posts(titleContains="o_w") == []  # _ is literal too
    assert await posts(postedAfter=(T0 + timedelta(hours=12)).isoformat()) == ["50% off_sale", "hello again"]
    assert await posts(postedBefore="2025-06-02T00:00:00") == ["Hello World"]  # no offset: UTC
    assert await posts(postedAfter="2025-06-01T03:00:00+02:00", postedBefore="2025-06-02T12:00:00Z") == [
        "50% off_sale"
    ]
    assert await posts(titleContains="hello", authorId=to_global_id("User", bob.id)) == ["hello again"]


async def test_task_and_note_filters_nested_too(
    gql: GraphQLClient, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    ada = await make_user(session, username="ada")
    chores = await make_task(session, ada, title="Chores", status=TaskStatus.OPEN, created_at=T0)
    await make_task(session, ada, title="Taxes", status=TaskStatus.DONE, created_at=T0 + timedelta(days=3))
    await make_task(
        session, ada, title="More chores", status=TaskStatus.IN_PROGRESS, created_at=T0 + timedelta(days=5)
    )
    await make_note(session, chores, body="buy milk", created_at=T0)
    await make_note(session, chores, body="buy eggs", created_at=T0 + timedelta(days=1))
    token = token_for(ada)
    query = """query ($f: TaskFilter, $n: NoteFilter) {
      tasks(filter: $f) { totalCount edges { node { title } } }
      me { tasks(filter: $f) { totalCount edges { node { title notes(filter: $n) { totalCount edges { node { body } } } } } } }
    }"""

    async def run(f: dict[str, object], n: dict[str, object] | None = None) -> tuple[list[str], list[str]]:
        data = (await gql(query, {"f": f, "n": n}, token=token))["data"]
        assert titles(data["tasks"]) == titles(data["me"]["tasks"])
        assert data["tasks"]["totalCount"] == data["me"]["tasks"]["totalCount"] == len(data["tasks"]["edges"])
        notes = [e["node"]["body"] for t in data["me"]["tasks"]["edges"] for e in t["node"]["notes"]["edges"]]
        return titles(data["tasks"]), notes

    assert (await run({"status": "OPEN"}))[0] == ["Chores"]
    assert (await run({"titleContains": "chores"}))[0] == ["Chores", "More chores"]
    assert (await run({"createdAfter": (T0 + timedelta(days=1)).isoformat()}))[0] == ["Taxes", "More chores"]
    assert await run({"status": "OPEN"}, {"bodyContains": "EGG"}) == (["Chores"], ["buy eggs"])
    assert await run({"status": "OPEN"}, {"createdAfter": (T0 + timedelta(hours=1)).isoformat()}) == (
        ["Chores"],
        ["buy eggs"],
    )


async def test_username_prefix_is_literal(gql: GraphQLClient, session: AsyncSession) -> None:
    for name in ("ada", "adam", "a_z", "abz", "bob"):
        await make_user(session, username=name)
    query = "query ($p: String) { users(filter: {usernameStartsWith: $p}) { edges { node { username } } } }"

    async def names(prefix: str) -> list[str]:
        edges = (await gql(query, {"p": prefix}))["data"]["users"]["edges"]
        return [edge["node"]["username"] for edge in edges]

    assert await names("ada") == ["ada", "adam"]
    assert await names("ADA") == ["ada", "adam"]  # usernames are lower case
    assert await names("a_") == ["a_z"]  # _ is not a wildcard
    assert await names("a*") == []  # nor is * (SQLite's GLOB)
    assert await names("a%") == []
    assert await names("") == ["ada", "adam", "a_z", "abz", "bob"]


async def test_filters_on_how_many_related_rows_count_only_what_the_viewer_sees(
    gql: GraphQLClient,
    session: AsyncSession,
    token_for: Callable[[User], str],
    statements: StatementCounter,
    compiled_reads: bool,
) -> None:
    ada = await make_user(session, username="ada")
    bob = await make_user(session, username="bob")
    cyd = await make_user(session, username="cyd")
    root = await make_user(session, username="root", is_superuser=True)
    for _ in range(3):
        await make_post(session, ada)
    first = await make_post(session, bob)
    await make_comment(session, first, ada)
    await make_comment(session, first, cyd)
    chores = await make_task(session, ada, title="Chores")
    await make_task(session, ada, title="Taxes")
    await make_task(session, bob, title="Bills")
    await make_note(session, chores, body="milk")
    query = """query ($u: UserFilter, $t: TaskFilter, $p: PostFilter) {
      users(filter: $u, orderBy: {field: USERNAME}) { totalCount edges { node { username } } }
      tasks(filter: $t, orderBy: {field: TITLE}) { edges { node { title } } }
      posts(filter: $p) { edges { node { author { username } } } }
    }"""

    async def read(token: str | None = None, **filters: object) -> dict[str, list[str]]:
        with statements.count() as sent:
            data = (await gql(query, filters, token=token))["data"]
        if compiled_reads:
            assert sent.value == 1, sent.statements
        assert data["users"]["totalCount"] == len(data["users"]["edges"])
        return {
            "users": [e["node"]["username"] for e in data["users"]["edges"]],
            "tasks": titles(data["tasks"]),
            "posts": [e["node"]["author"]["username"] for e in data["posts"]["edges"]],
        }

    assert (await read(u={"postCount": {"atLeast": 2}}))["users"] == ["ada"]
    assert (await read(u={"postCount": {"atMost": 1}}))["users"] == ["bob", "cyd", "root"]
    assert (await read(u={"postCount": {"atLeast": 1, "atMost": 1}}))["users"] == ["bob"]
    assert (await read(u={"postCount": {"equals": 0}, "usernameStartsWith": "c"}))["users"] == ["cyd"]
    assert (await read(p={"commentCount": {"atLeast": 1}}))["posts"] == ["bob"]
    # Tasks are private: a count of them is the viewer's own, or all for a superuser.
    assert (await read(u={"taskCount": {"atLeast": 1}}))["users"] == []
    assert (await read(token_for(bob), u={"taskCount": {"atLeast": 1}}))["users"] == ["bob"]
    assert (await read(token_for(root), u={"taskCount": {"atLeast": 2}}))["users"] == ["ada"]
    assert (await read(token_for(root), u={"taskCount": {"atLeast": 1}}))["users"] == ["ada", "bob"]
    # Tasks with no notes.
    assert (await read(token_for(ada), t={"noteCount": {"equals": 0}}))["tasks"] == ["Taxes"]
    assert (await read(token_for(root), t={"noteCount": {"atMost": 0}}))["tasks"] == ["Bills", "Taxes"]
