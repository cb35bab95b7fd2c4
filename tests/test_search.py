"""Full-text search of posts (`posts(search:)`, root and nested), on every engine's own index:
which posts match, their order, paging by rank, input that is never an error, and the index
following every write."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from db.search import INNODB_STOPWORDS, MAX_SEARCH_LENGTH
from schema.relay import to_global_id
from tests.conftest import GraphQLClient, StatementCounter
from tests.factories import make_post, make_user

# Words where the engines agree: 3 letters or more, no stop words, each in one form only (so
# stemming changes nothing) and no accents (PostgreSQL keeps them, the others fold them).
CORPUS = [
    ("ada", "Garden diary", "Tomatoes and basil planted along the fence."),
    ("ada", "Winter plans", "Seeds ordered for the garden, the garden beds dug."),
    ("bob", "Kitchen notes", "Basil pesto with garden tomatoes."),
    ("bob", "Bicycle repair", "A new chain and brake pads."),
    ("cyd", "Garden garden garden", "Everything about the garden: soil, compost, garden tools."),
]

PAGE = """query ($q: String, $first: Int, $after: String, $last: Int, $before: String, $order: PostOrder) {
  posts(search: $q, first: $first, after: $after, last: $last, before: $before, orderBy: $order) {
    totalCount edges { cursor node { title } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


async def _corpus(session: AsyncSession) -> dict[str, User]:
    users = {name: await make_user(session, username=name) for name in ("ada", "bob", "cyd")}
    for author, title, content in CORPUS:
        await make_post(session, users[author], title=title, content=content)
    return users


def _titles(connection: dict[str, Any]) -> list[str]:
    return [edge["node"]["title"] for edge in connection["edges"]]


async def _search(gql: GraphQLClient, q: str, **variables: Any) -> dict[str, Any]:
    answer = await gql(PAGE, {"q": q, **variables})
    assert "errors" not in answer, answer
    found: dict[str, Any] = answer["data"]["posts"]
    return found


async def test_a_search_finds_the_posts_holding_every_word(gql: GraphQLClient, session: AsyncSession) -> None:
    await _corpus(session)

    async def found(q: str) -> set[str]:
        page = await _search(gql, q, first=50)
        assert page["totalCount"] == len(page["edges"])
        return set(_titles(page))

    assert await found("garden") == {"Garden diary", "Winter plans", "Kitchen notes", "Garden garden garden"}
    assert await found("GARDEN tomatoes") == {"Garden diary", "Kitchen notes"}
    assert await found("basil pesto") == {"Kitchen notes"}
    assert await found("brake") == {"Bicycle repair"}
    assert await found("garden brake") == set()
    assert await found("submarine") == set()


async def test_best_matches_come_first(gql: GraphQLClient, session: AsyncSession) -> None:
    await _corpus(session)
    page = await _search(gql, "garden", first=10)
    # Six mentions, three of them in the title, beat the rest on every engine's rank (which
    # differ after that: PostgreSQL and SQLite weigh a title above the content, MariaDB cannot).
    assert _titles(page)[0] == "Garden garden garden"


async def test_other_orders_and_the_relevance_order_without_a_search(
    gql: GraphQLClient, session: AsyncSession
) -> None:
    await _corpus(session)
    by_title = await _search(gql, "garden", first=10, order={"field": "TITLE"})
    assert _titles(by_title) == ["Garden diary", "Garden garden garden", "Kitchen notes", "Winter plans"]
    refused = await gql(PAGE, {"order": {"field": "RELEVANCE"}}, errors=True)
    assert refused["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "orderBy"}


async def test_pages_by_rank_follow_one_another(gql: GraphQLClient, session: AsyncSession) -> None:
    await _corpus(session)
    everything = _titles(await _search(gql, "garden", first=10))
    seen: list[str] = []
    after = None
    while True:
        page = await _search(gql, "garden", first=1, after=after)
        seen += _titles(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == everything
    backwards: list[str] = []
    before = None
    while True:
        page = await _search(gql, "garden", last=2, before=before)
        backwards = _titles(page) + backwards
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert backwards == everything


async def test_a_users_posts_can_be_searched(
    gql: GraphQLClient, session: AsyncSession, statements: StatementCounter, compiled_reads: bool
) -> None:
    await _corpus(session)
    query = """{ users(first: 10, orderBy: {field: USERNAME}) { edges { node { username
      posts(search: "garden", first: 5) { totalCount edges { node { title } } } } } } }"""
    with statements.count() as sent:
        answer = await gql(query)
    found = {e["node"]["username"]: e["node"]["posts"] for e in answer["data"]["users"]["edges"]}
    assert {name: set(_titles(posts)) for name, posts in found.items()} == {
        "ada": {"Winter plans", "Garden diary"},
        "bob": {"Kitchen notes"},
        "cyd": {"Garden garden garden"},
    }
    assert [posts["totalCount"] for posts in found.values()] == [2, 1, 1]
    if compiled_reads:
        assert sent.value == 1, sent.statements


GARDEN = {"Garden diary", "Winter plans", "Kitchen notes", "Garden garden garden"}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ('"garden', GARDEN),  # an unclosed quote
        ("garden* -", GARDEN),  # a prefix operator, an exclusion
        ("+garden ^tomatoes", {"Garden diary", "Kitchen notes"}),
        ("title:garden NEAR(tomatoes basil)", None),  # column filters, NEAR: only words
        ("garden'; DROP TABLE posts; --", set()),  # every word counts: drop, table, posts too
        ("%_\\ garden", GARDEN),
        ("\x00garden", GARDEN),
        ("🌱garden🌱", GARDEN),
        ("AND OR NOT", None),  # stop words on two engines, words on SQLite: no error anywhere
        ("   ", set()),
        ("garden " + "b" * 150, None),  # longer than MariaDB indexes a word: there it is ignored
    ],
)
async def test_search_input_is_only_words(
    gql: GraphQLClient, session: AsyncSession, q: str, expected: set[str] | None
) -> None:
    await _corpus(session)
    page = await _search(gql, q, first=10)
    assert page["totalCount"] == len(page["edges"])
    if expected is not None:
        assert set(_titles(page)) == expected


async def test_no_words_match_nothing_and_too_long_a_search_is_refused(
    gql: GraphQLClient, session: AsyncSession
) -> None:
    await _corpus(session)
    assert (await _search(gql, "?!", first=10))["totalCount"] == 0
    refused = await gql(PAGE, {"q": "garden " * MAX_SEARCH_LENGTH}, errors=True)
    assert refused["data"] is None
    assert refused["errors"][0]["extensions"]["argument"] == "search"
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_the_index_follows_every_write(
    gql: GraphQLClient, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    users = await _corpus(session)
    token = token_for(users["bob"])
    mine = (await _search(gql, "bicycle", first=1))["edges"]
    post_id = to_global_id("Post", int(_decoded_id(mine)))
    edit = """mutation ($id: ID!) { updatePost(id: $id, input: {title: "Tandem repair"}) { __typename } }"""
    assert (await gql(edit, {"id": post_id}, token=token))["data"]["updatePost"][
        "__typename"
    ] == "PostPayload"
    assert _titles(await _search(gql, "tandem", first=5)) == ["Tandem repair"]
    assert _titles(await _search(gql, "bicycle", first=5)) == []
    assert _titles(await _search(gql, "brake", first=5)) == ["Tandem repair"]  # the content kept
    create = (
        """mutation { createPost(input: {title: "Compost heap", content: "Garden waste."}) { __typename } }"""
    )
    assert (await gql(create, token=token))["data"]["createPost"]["__typename"] == "PostPayload"
    assert "Compost heap" in _titles(await _search(gql, "compost", first=5))
    delete = "mutation ($id: ID!) { deletePost(id: $id) { __typename } }"
    assert (await gql(delete, {"id": post_id}, token=token))["data"]["deletePost"][
        "__typename"
    ] != "NotFoundError"
    assert _titles(await _search(gql, "brake", first=5)) == []
    # Deleting an account deletes its posts (a cascade in the database) and their index entries.
    await session.execute(text("DELETE FROM users WHERE username = 'cyd'"))
    await session.commit()
    assert "Garden garden garden" not in _titles(await _search(gql, "garden", first=10))


def _decoded_id(edges: list[dict[str, Any]]) -> str:
    """The row id a cursor holds (the last value of its position)."""
    [edge] = edges
    return str(orjson.loads(base64.urlsafe_b64decode(edge["cursor"] + "==="))[1][-1])


async def test_mariadb_knows_the_stop_words_we_drop(session: AsyncSession, engine_name: str) -> None:
    if engine_name != "mysql":
        pytest.skip("InnoDB's stop words")
    rows = await session.execute(text("SELECT value FROM INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD"))
    assert {row[0] for row in rows} == INNODB_STOPWORDS


async def test_postgresql_reads_the_gin_index(session: AsyncSession, engine_name: str) -> None:
    if engine_name != "postgresql":
        pytest.skip("PostgreSQL's plan")
    await session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = await session.execute(
        text("EXPLAIN SELECT id FROM posts WHERE search_vector @@ plainto_tsquery('english', 'garden')")
    )
    assert "ix_posts_search_vector" in "\n".join(row[0] for row in plan)


async def test_the_engines_differ_where_the_readme_says(
    gql: GraphQLClient, session: AsyncSession, engine_name: str
) -> None:
    ada = await make_user(session, username="ada")
    await make_post(session, ada, title="Running late", content="A café by the station.")
    await make_post(session, ada, title="An ox", content="Big animal.")

    async def finds(q: str) -> bool:
        return bool((await _search(gql, q, first=5))["edges"])

    stems, folds_accents, keeps_stop_words = {
        "postgresql": (True, False, False),
        "sqlite": (True, True, True),
        "mysql": (False, True, False),
    }[engine_name]
    assert await finds("run") is stems
    assert await finds("cafe") is folds_accents
    assert await finds("café") is True
    assert await finds("the station") is True  # a stop word is dropped or found, never required in vain
    assert await finds("the") is keeps_stop_words
    assert await finds("ox") is (engine_name != "mysql")  # InnoDB indexes words of 3 letters or more
