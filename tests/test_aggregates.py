"""A connection's `aggregate` (count, min, max, sum, avg over the whole list), on every engine
and both read paths: the values, what the list's filter, search and visibility rule leave in
it, empty lists, and what it costs in statements."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
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
    assert [f["name"] for f in answer["data"]["__type"]["fields"]] == ["count", "min", "max", "groupBy"]
    answer = await gql('{ __type(name: "UserExtremes") { fields { name } } }')
    # A column with a visibility rule (email) is never aggregated; users have no integer columns.
    assert [f["name"] for f in answer["data"]["__type"]["fields"]] == ["createdAt"]


GROUPS = """query ($first: Int, $order: GroupOrder) {
  posts(first: 0) {
    aggregate {
      groupBy(by: {author: true, datePosted: MONTH}, first: $first, orderBy: $order) {
        key { author { username } datePosted }
        count
        max { datePosted }
        avg { version }
      }
    }
  }
}"""


async def _dated_posts(session: AsyncSession) -> None:
    """ada: 2 posts in June 2025, 1 in July; bob: 1 in June."""
    ada, bob = await make_user(session, username="ada"), await make_user(session, username="bob")
    for author, day in ((ada, 1), (ada, 20), (ada, 40), (bob, 5)):
        await make_post(session, author, date_posted=T0 + timedelta(days=day, hours=3))


def _keys(groups: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(g["key"]["author"]["username"], g["key"]["datePosted"], g["count"]) for g in groups]


@pytest.mark.one_path  # `pair` compares both paths itself
async def test_groups_by_a_relation_and_a_month(pair: Pair, session: AsyncSession) -> None:
    await _dated_posts(session)
    june, july = "2025-06-01T00:00:00+00:00", "2025-07-01T00:00:00+00:00"
    answer, executor = await pair.check(GROUPS)
    groups = answer["data"]["posts"]["aggregate"]["groupBy"]
    # By key: the type's keys in the order it declares them (datePosted, then author).
    assert _keys(groups) == [("ada", june, 2), ("bob", june, 1), ("ada", july, 1)]
    assert executor == ("compiled" if pair.compiles else "resolvers")
    busiest = {"order": {"field": "COUNT", "direction": "DESC"}, "first": 2}
    answer, _ = await pair.check(GROUPS, busiest)
    groups = answer["data"]["posts"]["aggregate"]["groupBy"]
    assert _keys(groups) == [("ada", june, 2), ("bob", june, 1)]  # ties by key, ascending
    assert groups[0]["max"] == {"datePosted": "2025-06-21T03:00:00+00:00"}


@pytest.mark.one_path
async def test_weeks_start_on_monday_and_days_at_midnight_utc(pair: Pair, session: AsyncSession) -> None:
    ada = await make_user(session, username="ada")
    # 2025-06-01 is a Sunday: its week began on Monday 2025-05-26.
    for day in (0, 1, 7):
        await make_post(session, ada, date_posted=T0 + timedelta(days=day, hours=23, minutes=59))
    query = """{ posts { aggregate {
      weeks: groupBy(by: {datePosted: WEEK}) { key { datePosted } count }
      days: groupBy(by: {datePosted: DAY}, orderBy: {field: KEY, direction: DESC}) { key { datePosted } count }
    } } }"""
    answer, _ = await pair.check(query)
    aggregate = answer["data"]["posts"]["aggregate"]
    assert [(g["key"]["datePosted"], g["count"]) for g in aggregate["weeks"]] == [
        ("2025-05-26T00:00:00+00:00", 1),  # Sunday June 1
        ("2025-06-02T00:00:00+00:00", 2),  # Monday June 2 and Sunday June 8
    ]
    assert [g["key"]["datePosted"] for g in aggregate["days"]] == [
        "2025-06-08T00:00:00+00:00",
        "2025-06-02T00:00:00+00:00",
        "2025-06-01T00:00:00+00:00",
    ]


@pytest.mark.one_path
async def test_groups_count_only_the_private_rows_the_viewer_may_see(
    pair: Pair, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    ada, bob = await make_user(session, username="ada"), await make_user(session, username="bob")
    for owner, tasks in ((ada, 2), (bob, 3)):
        for _ in range(tasks):
            await make_task(session, owner)
    query = "{ tasks { aggregate { groupBy(by: {owner: true, status: true}) { key { owner { username } status } count } } } }"
    answer, _ = await pair.check(query, token=token_for(ada))
    groups = answer["data"]["tasks"]["aggregate"]["groupBy"]
    assert [(g["key"]["owner"]["username"], g["key"]["status"], g["count"]) for g in groups] == [
        ("ada", "OPEN", 2)
    ]
    answer, _ = await pair.check(query)
    assert answer["data"]["tasks"]["aggregate"]["groupBy"] == []


@pytest.mark.parametrize(
    ("arguments", "argument"),
    [("by: {}", "by"), ("by: {author: false}", "by"), ("by: {author: true}, first: 1001", "first")],
)
async def test_a_bad_group_by_is_a_typed_error(gql: GraphQLClient, arguments: str, argument: str) -> None:
    answer = await gql(f"{{ posts {{ aggregate {{ groupBy({arguments}) {{ count }} }} }} }}", errors=True)
    [error] = answer["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"]["argument"] == argument


NESTED_GROUPS = "{ users { edges { node { posts { aggregate { groupBy(by: {datePosted: MONTH}) { key { datePosted } count } } } } } } }"


@pytest.mark.parametrize("users", [2, 6])
async def test_nested_groups_cost_the_same_statements_for_any_number_of_parents(
    gql: GraphQLClient,
    session: AsyncSession,
    statements: StatementCounter,
    compiled_reads: bool,
    engine_name: str,
    users: int,
) -> None:
    for n in range(users):
        await make_post(session, await make_user(session, username=f"u{n}"))
    with statements.count() as sent:
        answer = await gql(NESTED_GROUPS)
    assert "errors" not in answer, answer
    counts = [
        e["node"]["posts"]["aggregate"]["groupBy"][0]["count"] for e in answer["data"]["users"]["edges"]
    ]
    assert counts == [1] * users
    # Compiled: the one statement (MariaDB groups a nested list with the resolvers). Resolvers:
    # the users, their pages, and all their groups.
    assert sent.value == (1 if compiled_reads and engine_name != "mysql" else 3), sent.statements
