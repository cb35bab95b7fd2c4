"""A connection's `aggregate` (count, min, max, sum, avg over the whole list), on every engine
and both read paths: the values, what the list's filter, search and visibility rule leave in
it, empty lists, and what it costs in statements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Post, User
from schema.relay import to_global_id
from tests.conftest import GraphQLClient, StatementCounter
from tests.factories import T0, make_note, make_post, make_task, make_user
from tests.pairs import Pair

POSTS = """query ($author: ID, $q: String) {
  posts(filter: {authorId: $author}, search: $q, first: 1) {
    totalCount
    aggregate {
      count
      min { version datePosted }
      max { version datePosted }
      sum { version }
      avg { version }
    }
  }
}"""


async def _blog(session: AsyncSession) -> dict[str, User]:
    """ada: 3 posts at versions 1, 1 and 2; bob: 1 post, version 5."""
    ada, bob = await make_user(session, username="ada"), await make_user(session, username="bob")
    posts = [await make_post(session, ada, title=f"Garden {n}", content="soil") for n in range(3)]
    await make_post(session, bob, title="Bicycle", content="chain")
    for post, version in ((posts[2], 2),):
        await session.execute(update(Post).where(Post.id == post.id).values(version=version))
    await session.execute(update(Post).where(Post.user_id == bob.id).values(version=5))
    await session.commit()
    return {"ada": ada, "bob": bob}


@pytest.mark.one_path  # `pair` compares both paths itself
async def test_aggregates_cover_the_whole_list_not_the_page(pair: Pair, session: AsyncSession) -> None:
    await _blog(session)
    answer, executor = await pair.check(POSTS)
    posts = answer["data"]["posts"]
    assert posts["totalCount"] == posts["aggregate"]["count"] == 4
    aggregate = posts["aggregate"]
    assert aggregate["min"]["version"] == 1 and aggregate["max"]["version"] == 5
    assert aggregate["sum"] == {"version": 9.0}
    assert aggregate["avg"] == {"version": 2.25}
    assert aggregate["min"]["datePosted"] < aggregate["max"]["datePosted"]
    assert executor == ("compiled" if pair.compiles else "resolvers")


@pytest.mark.one_path  # `pair` compares both paths itself
async def test_the_filter_and_the_search_apply(pair: Pair, session: AsyncSession) -> None:
    users = await _blog(session)
    ada = to_global_id("User", users["ada"].id)
    answer, _ = await pair.check(POSTS, {"author": ada})
    aggregate = answer["data"]["posts"]["aggregate"]
    assert aggregate["count"] == 3
    assert aggregate["avg"] == {"version": 1.333333}  # 4/3, rounded to 6 places on every engine
    answer, _ = await pair.check(POSTS, {"q": "chain"})
    assert answer["data"]["posts"]["aggregate"]["sum"] == {"version": 5.0}


@pytest.mark.one_path  # `pair` compares both paths itself
async def test_an_empty_list_counts_zero_and_has_no_values(pair: Pair, session: AsyncSession) -> None:
    await _blog(session)
    answer, _ = await pair.check(POSTS, {"q": "zyzzyva"})
    aggregate = answer["data"]["posts"]["aggregate"]
    assert aggregate == {
        "count": 0,
        "min": {"version": None, "datePosted": None},
        "max": {"version": None, "datePosted": None},
        "sum": {"version": None},
        "avg": {"version": None},
    }


TASKS = """{
  tasks { aggregate { count max { createdAt } } }
  users { edges { node { username tasks { aggregate { count } } } } }
  notes: tasks { edges { node { notes { aggregate { count min { createdAt } } } } } }
}"""


@pytest.mark.one_path  # `pair` compares both paths itself
async def test_a_viewer_counts_only_the_private_rows_they_may_see(
    pair: Pair, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    ada, bob = await make_user(session, username="ada"), await make_user(session, username="bob")
    root = await make_user(session, username="root", is_superuser=True)
    for owner, tasks in ((ada, 2), (bob, 3)):
        for _ in range(tasks):
            task = await make_task(session, owner)
            await make_note(session, task, created_at=T0)
    counts = {}
    for name, token in (("anonymous", None), ("ada", token_for(ada)), ("root", token_for(root))):
        answer, _ = await pair.check(TASKS, token=token)
        data = answer["data"]
        per_user = {
            e["node"]["username"]: e["node"]["tasks"]["aggregate"]["count"] for e in data["users"]["edges"]
        }
        counts[name] = (data["tasks"]["aggregate"]["count"], per_user)
        notes = [e["node"]["notes"]["aggregate"]["count"] for e in data["notes"]["edges"]]
        assert notes == [1] * data["tasks"]["aggregate"]["count"]
    assert counts["anonymous"] == (0, {"ada": 0, "bob": 0, "root": 0})
    assert counts["ada"] == (2, {"ada": 2, "bob": 0, "root": 0})  # never bob's 3
    assert counts["root"] == (5, {"ada": 2, "bob": 3, "root": 0})


NESTED = "{ users { edges { node { posts { aggregate { count avg { version } min { datePosted } } } } } } }"


@pytest.mark.parametrize("users", [2, 6])
async def test_nested_aggregates_cost_the_same_statements_for_any_number_of_parents(
    gql: GraphQLClient, session: AsyncSession, statements: StatementCounter, compiled_reads: bool, users: int
) -> None:
    for n in range(users):
        author = await make_user(session, username=f"u{n}")
        await make_post(session, author)
    with statements.count() as sent:
        answer = await gql(NESTED)
    assert "errors" not in answer, answer
    counts = [edge["node"]["posts"]["aggregate"]["count"] for edge in answer["data"]["users"]["edges"]]
    assert counts == [1] * users
    # Compiled: the one statement. Resolvers: the users, their pages, and all their aggregates.
    assert sent.value == (1 if compiled_reads else 3), sent.statements


async def test_a_type_without_numbers_has_no_sum_or_average(gql: GraphQLClient) -> None:
    answer: Any = await gql('{ __type(name: "UserAggregate") { fields { name } } }')
    assert [f["name"] for f in answer["data"]["__type"]["fields"]] == ["count", "min", "max"]
    answer = await gql('{ __type(name: "UserExtremes") { fields { name } } }')
    # A column with a visibility rule (email) is never aggregated; users have no integer columns.
    assert [f["name"] for f in answer["data"]["__type"]["fields"]] == ["createdAt"]
