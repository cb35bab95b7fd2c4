"""Keyset pagination: per-parent pages are right, and cursors walk every ordering both ways with
no gaps and no duplicates, also through runs of equal sort keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Post, TaskStatus, User
from tests.conftest import GraphQLClient
from tests.factories import T0, make_note, make_post, make_task, make_user


async def test_nested_pages_are_per_parent(gql: GraphQLClient, session: AsyncSession) -> None:
    """Users with 0, 1, 10 and 30 posts, interleaved: each gets its own first (and last) 10."""
    users = [await make_user(session, username=f"u{count:02d}") for count in (0, 1, 10, 30)]
    titles: dict[str, list[str]] = {user.username: [] for user in users}
    for i in range(30):
        for user, count in zip(users, (0, 1, 10, 30), strict=True):
            if i < count:
                post = await make_post(session, user, title=f"{user.username}-{i:02d}")
                titles[user.username].append(post.title)
    query = """query ($first: Int, $last: Int) { users { edges { node { username
      posts(first: $first, last: $last) { totalCount edges { node { title } } pageInfo { hasNextPage hasPreviousPage } }
    } } } }"""

    firsts = (await gql(query, {"first": 10}))["data"]["users"]["edges"]
    lasts = (await gql(query, {"last": 10}))["data"]["users"]["edges"]

    for first, last in zip(firsts, lasts, strict=True):
        name = first["node"]["username"]
        mine = titles[name]
        assert [e["node"]["title"] for e in first["node"]["posts"]["edges"]] == mine[:10]
        assert [e["node"]["title"] for e in last["node"]["posts"]["edges"]] == mine[-10:]
        assert first["node"]["posts"]["totalCount"] == len(mine)
        assert first["node"]["posts"]["pageInfo"] == {"hasNextPage": len(mine) > 10, "hasPreviousPage": False}
        assert last["node"]["posts"]["pageInfo"] == {"hasNextPage": False, "hasPreviousPage": len(mine) > 10}


async def _walk(
    gql: GraphQLClient,
    query: str,
    pick: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    backwards: bool,
    token: str | None = None,
) -> list[str]:
    """Every node id, page by page (3 at a time) forwards or backwards, in list order."""
    seen: list[str] = []
    cursor = None
    while True:
        variables = {"last": 3, "before": cursor} if backwards else {"first": 3, "after": cursor}
        page = pick((await gql(query, variables, token=token))["data"])
        ids = [edge["node"]["id"] for edge in page["edges"]]
        seen = ids + seen if backwards else seen + ids
        info = page["pageInfo"]
        more = info["hasPreviousPage"] if backwards else info["hasNextPage"]
        if not more:
            return seen
        cursor = info["startCursor"] if backwards else info["endCursor"]


PAGE_ARGS = "$first: Int, $after: String, $last: Int, $before: String"
PAGE = "first: $first, after: $after, last: $last, before: $before"
PAGE_INFO = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"


@pytest.fixture
async def posts_with_ties(session: AsyncSession) -> tuple[User, list[Post]]:
    """14 posts by one author (and 6 by another), with repeated titles and repeated timestamps."""
    author = await make_user(session, username="author")
    other = await make_user(session, username="other")
    made = []
    for i in range(20):
        post = await make_post(
            session,
            author if i % 10 < 7 else other,
            title=f"title {i % 4}",
            date_posted=T0 + timedelta(hours=i % 5),
        )
        made.append(post)
    return author, made


def _expected(posts: list[Post], field: str, descending: bool) -> list[str]:
    from schema.relay import to_global_id

    key = {
        "ID": lambda p: (p.id,),
        "TITLE": lambda p: (p.title, p.id),
        "DATE_POSTED": lambda p: (p.date_posted, p.id),
    }[field]
    return [to_global_id("Post", p.id) for p in sorted(posts, key=key, reverse=descending)]


ORDERS = [(field, direction) for field in ("ID", "TITLE", "DATE_POSTED") for direction in ("ASC", "DESC")]


@pytest.mark.parametrize(("field", "direction"), ORDERS)
async def test_root_cursors_walk_every_ordering_both_ways(
    gql: GraphQLClient, posts_with_ties: tuple[User, list[Post]], field: str, direction: str
) -> None:
    _, posts = posts_with_ties
    query = f"""query ({PAGE_ARGS}) {{ posts({PAGE}, orderBy: {{field: {field}, direction: {direction}}})
      {{ edges {{ node {{ id }} }} {PAGE_INFO} }} }}"""
    expected = _expected(posts, field, direction == "DESC")

    assert await _walk(gql, query, lambda data: data["posts"], backwards=False) == expected
    assert await _walk(gql, query, lambda data: data["posts"], backwards=True) == expected


@pytest.mark.parametrize(("field", "direction"), ORDERS)
async def test_nested_cursors_walk_every_ordering_both_ways(
    gql: GraphQLClient, posts_with_ties: tuple[User, list[Post]], field: str, direction: str
) -> None:
    author, posts = posts_with_ties
    query = f"""query ({PAGE_ARGS}) {{ user(username: "author") {{ posts({PAGE}, orderBy: {{field: {field}, direction: {direction}}})
      {{ edges {{ node {{ id }} }} {PAGE_INFO} }} }} }}"""
    expected = _expected([p for p in posts if p.user_id == author.id], field, direction == "DESC")

    assert await _walk(gql, query, lambda data: data["user"]["posts"], backwards=False) == expected
    assert await _walk(gql, query, lambda data: data["user"]["posts"], backwards=True) == expected


@pytest.mark.parametrize("field", ["ID", "TITLE", "STATUS", "CREATED_AT"])
async def test_task_and_note_orderings_walk(
    gql: GraphQLClient, session: AsyncSession, token_for: Callable[[User], str], field: str
) -> None:
    owner = await make_user(session)
    tasks = []
    for i in range(11):
        status = [TaskStatus.OPEN, TaskStatus.DONE, TaskStatus.IN_PROGRESS][i % 3]
        tasks.append(
            await make_task(
                session, owner, title=f"t{i % 3}", status=status, created_at=T0 + timedelta(i % 4)
            )
        )
    for i in range(7):
        await make_note(session, tasks[0], created_at=T0 + timedelta(hours=i % 2))
    tasks_query = f"""query ({PAGE_ARGS}) {{ tasks({PAGE}, orderBy: {{field: {field}, direction: DESC}})
      {{ edges {{ node {{ id }} }} {PAGE_INFO} }} }}"""
    notes_query = f"""query ({PAGE_ARGS}) {{ tasks(first: 1) {{ edges {{ node {{
      notes({PAGE}, orderBy: {{field: {"CREATED_AT" if field == "CREATED_AT" else "ID"}}})
      {{ edges {{ node {{ id }} }} {PAGE_INFO} }} }} }} }} }}"""
    token = token_for(owner)

    forwards = await _walk(gql, tasks_query, lambda data: data["tasks"], backwards=False, token=token)
    backwards = await _walk(gql, tasks_query, lambda data: data["tasks"], backwards=True, token=token)
    notes = await _walk(
        gql,
        notes_query,
        lambda data: data["tasks"]["edges"][0]["node"]["notes"],
        backwards=False,
        token=token,
    )

    assert forwards == backwards
    assert len(set(forwards)) == len(forwards) == 11
    assert len(set(notes)) == len(notes) == 7


@pytest.mark.parametrize("field", ["USERNAME", "CREATED_AT"])
async def test_user_orderings_walk(gql: GraphQLClient, session: AsyncSession, field: str) -> None:
    for i in range(8):
        await make_user(session, username=f"name{(7 - i) % 5}-{i}", created_at=T0 + timedelta(i % 3))
    query = f"""query ({PAGE_ARGS}) {{ users({PAGE}, orderBy: {{field: {field}}}) {{ edges {{ node {{ id }} }} {PAGE_INFO} }} }}"""

    forwards = await _walk(gql, query, lambda data: data["users"], backwards=False)
    backwards = await _walk(gql, query, lambda data: data["users"], backwards=True)

    assert forwards == backwards and len(set(forwards)) == 8


async def test_a_cursor_is_refused_under_another_ordering(gql: GraphQLClient, session: AsyncSession) -> None:
    user = await make_user(session)
    for _ in range(3):
        await make_post(session, user)
    page = await gql("{ posts(first: 1, orderBy: {field: TITLE}) { pageInfo { endCursor } } }")
    cursor = page["data"]["posts"]["pageInfo"]["endCursor"]

    body = await gql(
        "query ($after: String) { posts(after: $after, orderBy: {field: DATE_POSTED}) { totalCount } }",
        {"after": cursor},
        errors=True,
    )

    [error] = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}
    assert "made for the ordering TITLE:ASC, not DATE_POSTED:ASC" in error["message"]
