"""The compiled read path answers exactly as the resolvers do, in one statement.

Two apps share each test's database: one with COMPILED_READS on, one with it off (the
reference). Every query of the corpus goes to both, as three viewers (anonymous, a user, a
superuser), and the compiled app answers it twice (the first time through Strawberry's pipeline,
then by the short way for known documents); the JSON must be equal, key order and errors included.
A failure prints the query, the variables and both answers.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import FieldNode, parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import TaskStatus, User
from db.sqlite_functions import b64, b64url
from tests.conftest import POOLED, StatementCounter
from tests.factories import make_comment, make_note, make_post, make_task, make_user, make_users_with_posts
from tests.generated import Draw, Pools, SchemaShape
from tests.pairs import Executors, Pair

pytestmark = pytest.mark.one_path  # the resolver pass skips it (pyproject.toml: markers)

T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class World:
    ada: User
    bob: User
    root: User
    tokens: dict[str, str | None]


async def make_world(session: AsyncSession, token_for: Callable[[User], str]) -> World:
    """A few users with posts, tasks and notes whose values test printing: microseconds or none,
    quotes, LIKE wildcards, non-ASCII, an avatar, equal sort keys (ties broken by id)."""
    ada = await make_user(session, username="ada", image_file="avatars/ada.png")
    bob = await make_user(session, username="bob_2")
    root = await make_user(session, username="root", is_superuser=True)
    titles = [
        'He said "hi"',
        "100% sure",
        "under_score",
        "Ünïcødé ✓ 🚀",
        "same",
        "same",
        "back\\slash",
        "tab\there",
    ]
    posts = []
    for index, title in enumerate(titles):
        for author in (ada, bob):
            moment = T + timedelta(hours=index, microseconds=0 if index % 2 else 123456)
            posts.append(await make_post(session, author, title=title, date_posted=moment))
    for index, post in enumerate(posts):
        for offset, commenter in enumerate((ada, bob, root)[: index % 4]):
            await make_comment(
                session,
                post,
                commenter,
                body=f"{commenter.username} on {post.title}",
                created_at=post.date_posted + timedelta(minutes=offset, microseconds=index % 3),
            )
    for index, status in enumerate(
        [TaskStatus.OPEN, TaskStatus.IN_PROGRESS, TaskStatus.DONE, TaskStatus.OPEN]
    ):
        for owner in (ada, bob):
            task = await make_task(
                session,
                owner,
                title=f"{owner.username} task {index}",
                status=status,
                created_at=T + timedelta(minutes=index),
            )
            for note in range(index):
                await make_note(
                    session,
                    task,
                    body=f"note {note} of {task.title}",
                    created_at=T + timedelta(seconds=note, microseconds=7),
                )
    tokens = {"anonymous": None, "ada": token_for(ada), "root": token_for(root)}
    return World(ada, bob, root, tokens)


@asynccontextmanager
async def _session(client: httpx.AsyncClient) -> AsyncIterator[AsyncSession]:
    async with client.app.state.services.sessionmaker() as session:  # type: ignore[attr-defined]
        yield session


async def _world(pair: Pair) -> World:
    async with _session(pair.compiled) as session:
        services = pair.compiled.app.state.services  # type: ignore[attr-defined]

        def token_for(user: User) -> str:
            return str(services.tokens.issue(user.id, is_superuser=user.is_superuser)[0])

        return await make_world(session, token_for)


CANONICAL = [
    "{ users(first: 50) { edges { node { username posts(first: 10) { edges { node { title datePosted author { username } } } } } } } }",
    "{ tasks(first: 100, filter: {status: OPEN}) { edges { node { title status owner { username } notes(first: 5) { edges { node { body } } } } } } }",
    "{ posts(first: 100) { edges { node { id title content datePosted } } pageInfo { endCursor hasNextPage } } }",
    '{ user(username: "ada") { username posts(first: 3) { edges { node { title } } } } }',
    '{ user(by: {username: "Ada"}) { username } byId: user(by: {id: "VXNlcjox"}) { username } }',
]

EDGE_CASES = [
    # Every field of every type, with __typename at each level.
    """{ __typename users(first: 5) { __typename totalCount edges { __typename cursor node { __typename id username email
         isSuperuser createdAt avatarUrl posts(first: 2) { totalCount edges { node { id title content datePosted
         author { id username } } } pageInfo { __typename hasNextPage hasPreviousPage startCursor endCursor } }
         tasks(first: 3) { totalCount edges { cursor node { id title status createdAt owner { username }
         notes(first: 2) { totalCount edges { cursor node { id body createdAt task { id title } } } } } } } } }
         pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }""",
    # Aliases, the same field twice merged, fragments (named, inline, on an interface), directives.
    """query { a: posts(first: 2) { edges { node { ...P } } } b: posts(first: 3, orderBy: {field: TITLE}) {
         edges { node { title ... on Node { id } ... on Post { t2: title } } } edges { cursor } }
         me { username } me { email }
         u: user(username: "ADA") { ... @include(if: true) { username } email @skip(if: true) } }
       fragment P on Post { title author { ...U } }
       fragment U on User { username avatarUrl }""",
    # Every ordering, both directions, backwards pages, empty pages.
    "{ posts(first: 4, orderBy: {field: DATE_POSTED, direction: DESC}) { edges { cursor node { title datePosted } } pageInfo { startCursor endCursor hasNextPage hasPreviousPage } } }",
    "{ posts(last: 3, orderBy: {field: TITLE}) { edges { cursor node { title } } pageInfo { startCursor endCursor hasNextPage hasPreviousPage } } }",
    "{ posts(last: 0) { edges { cursor } totalCount pageInfo { startCursor endCursor hasNextPage hasPreviousPage } } }",
    "{ posts(first: 0) { edges { cursor } pageInfo { startCursor endCursor hasNextPage hasPreviousPage } } }",
    "{ users(first: 2, orderBy: {field: USERNAME, direction: DESC}) { edges { cursor node { username } } } }",
    "{ users(last: 2, orderBy: {field: CREATED_AT}) { edges { cursor node { username createdAt } } } }",
    "{ tasks(first: 10, orderBy: {field: STATUS, direction: DESC}) { edges { cursor node { title status } } } }",
    "{ tasks(last: 3, orderBy: {field: CREATED_AT}) { edges { cursor node { notes(last: 2, orderBy: {field: CREATED_AT, direction: DESC}) { edges { cursor node { body createdAt } } } } } } }",
    # Filters, with LIKE's wildcards taken literally.
    '{ posts(first: 20, filter: {titleContains: "%"}) { totalCount edges { node { title } } } }',
    '{ posts(first: 20, filter: {titleContains: "_"}) { totalCount edges { node { title } } } }',
    '{ posts(first: 20, filter: {titleContains: "ÜNÏ", postedAfter: "2025-03-01T13:00:00"}) { totalCount edges { node { title } } } }',
    '{ posts(first: 20, filter: {postedBefore: "2025-03-01T14:00:00+01:00"}) { totalCount edges { node { datePosted } } } }',
    '{ users(filter: {usernameStartsWith: "B"}) { totalCount edges { node { username } } } }',
    '{ users(filter: {usernameStartsWith: "%"}) { totalCount } }',
    "{ tasks(filter: {status: IN_PROGRESS}) { totalCount edges { node { title } } } }",
    '{ tasks(filter: {titleContains: "TASK 3"}) { edges { node { title notes(filter: {bodyContains: "NOTE 1"}) { totalCount edges { node { body } } } } } } }',
    # Searches: by rank (the default), both ways, nested, with a filter, words the text lacks.
    '{ posts(search: "content post", first: 3) { totalCount edges { cursor node { title } } pageInfo { startCursor endCursor hasNextPage hasPreviousPage } } }',
    '{ posts(search: "POST", last: 2, orderBy: {field: RELEVANCE, direction: ASC}) { edges { cursor node { title } } pageInfo { startCursor endCursor hasNextPage hasPreviousPage } } }',
    '{ users(first: 3) { edges { node { username posts(search: "post \\"quoted\\" -not", first: 2) { totalCount edges { cursor node { title } } } } } } }',
    '{ posts(search: "post", filter: {titleContains: "a"}, orderBy: {field: DATE_POSTED}) { totalCount edges { node { title } } } }',
    '{ posts(search: "zyzzyva") { totalCount edges { cursor } pageInfo { hasNextPage } } }',
    # Only a count: one row even where the list is empty.
    "{ tasks { totalCount } users { totalCount } }",
    '{ posts(filter: {titleContains: "nothing like it"}) { totalCount pageInfo { hasNextPage } } }',
    # Lookups, null when missing or not visible.
    '{ user(username: "nobody") { username } }',
    '{ user(by: {username: "nobody"}) { username } }',
    "{ me { username email isSuperuser } }",
]

# Refused by the resolvers; the compiled app must answer with the same errors.
ERRORS = [
    "{ posts(first: 101) { totalCount } }",
    "{ posts(first: -1) { totalCount } }",
    "{ posts(first: 1, last: 1) { totalCount } }",
    '{ posts(after: "not a cursor") { totalCount } }',
    '{ posts(filter: {authorId: "nope"}) { totalCount } }',
    '{ user(id: "UG9zdDox") { username } }',
    '{ user(id: "VXNlcjox", username: "ada") { username } }',
    '{ user(by: {id: "VXNlcjox"}, username: "ada") { username } }',
    "{ user { username } }",
    "{ posts { edges { node { nope } } } }",
    "{ posts(orderBy: {field: RELEVANCE}) { totalCount } }",
    f'{{ posts(search: "{"word " * 50}") {{ totalCount }} }}',
]

# Outside what the compiler expresses: the resolvers answer, on either app.
NOT_COMPILED = [
    "{ __schema { queryType { name } } }",
    '{ node(id: "VXNlcjox") { id ... on User { username } } }',
    '{ posts(first: 1) { totalCount } nodes(ids: ["VXNlcjox"]) { id } }',
]


async def test_canonical_and_edge_cases_answer_as_the_resolvers_in_one_statement(pair: Pair) -> None:
    world = await _world(pair)
    reads = pair.compiled.app.state.compiled_reads  # type: ignore[attr-defined]
    for query in CANONICAL + EDGE_CASES:
        for viewer, token in world.tokens.items():
            refusals = reads.statements.refused_reads
            _, executor = await pair.check(query, token=token)
            # The resolvers answer `me` for nobody without SQL; and where SQLite's parser stack
            # (100 deep) refuses a statement, the shape is remembered as refused.
            reads_nothing = query is EDGE_CASES[-1] and viewer == "anonymous"
            refused = reads.statements.refused_reads > refusals
            assert executor == (
                "compiled" if pair.compiles and not (reads_nothing or refused) else "resolvers"
            ), query
            assert not refused or (pair.engine == "sqlite" and query is EDGE_CASES[0]), query


async def test_errors_are_the_resolvers_errors(pair: Pair) -> None:
    world = await _world(pair)
    for query in ERRORS:
        answer, _ = await pair.check(query, token=world.tokens["ada"])
        assert "errors" in answer, query
    for query in NOT_COMPILED:
        answer, _ = await pair.check(query, token=world.tokens["ada"])
        assert "errors" not in answer, query


async def test_a_plan_kept_for_one_user_serves_the_next_with_their_own_rights(pair: Pair) -> None:
    """Plans are kept per kind of viewer with the viewer's id left open: ada's plan, reused for
    bob, must read bob's email, tasks and `me`, not ada's."""
    world = await _world(pair)
    bob_token = pair.compiled.app.state.services.tokens.issue(world.bob.id, is_superuser=False)[0]  # type: ignore[attr-defined]
    query = """{ me { username email } users { edges { node { username email tasks { edges { node { title } } } } } }
                 tasks { totalCount edges { node { title notes { totalCount } } } } }"""
    answers = {}
    for viewer, token in (
        ("ada", world.tokens["ada"]),
        ("bob", bob_token),
        ("ada again", world.tokens["ada"]),
    ):
        answers[viewer], executor = await pair.check(query, token=token)
        assert executor == ("compiled" if pair.compiles else "resolvers")
    ada, bob = answers["ada"]["data"], answers["bob"]["data"]
    assert (ada["me"]["username"], bob["me"]["username"]) == ("ada", "bob_2")
    emails = {edge["node"]["username"]: edge["node"]["email"] for edge in bob["users"]["edges"]}
    assert emails["bob_2"] is not None and emails["ada"] is None
    assert {edge["node"]["title"] for edge in bob["tasks"]["edges"]} == {f"bob_2 task {i}" for i in range(4)}
    assert answers["ada again"] == answers["ada"]


async def test_privacy_holds_on_the_compiled_path(pair: Pair) -> None:
    world = await _world(pair)
    query = """{ users { edges { node { username email tasks { totalCount edges { node { title } } } } } }
                 tasks { totalCount edges { node { owner { username } notes { totalCount } } } } }"""
    seen = {}
    for viewer, token in world.tokens.items():
        seen[viewer], _ = await pair.check(query, token=token)
    users = {name: [edge["node"] for edge in seen[name]["data"]["users"]["edges"]] for name in seen}
    assert all(user["email"] is None and user["tasks"]["totalCount"] == 0 for user in users["anonymous"])
    assert {user["username"]: user["email"] is not None for user in users["ada"]} == {
        "ada": True,
        "bob_2": False,
        "root": False,
    }
    assert all(user["email"] is not None for user in users["root"])
    assert seen["anonymous"]["data"]["tasks"]["totalCount"] == 0
    owners = {edge["node"]["owner"]["username"] for edge in seen["ada"]["data"]["tasks"]["edges"]}
    assert owners == {"ada"}
    assert seen["root"]["data"]["tasks"]["totalCount"] == 8


async def test_lookups_by_id_follow_visibility(pair: Pair) -> None:
    world = await _world(pair)
    first_posts, _ = await pair.check(
        "{ posts(first: 1) { edges { node { id } } } tasks(first: 1) { edges { node { id } } } }",
        token=world.tokens["ada"],
    )
    post_id = first_posts["data"]["posts"]["edges"][0]["node"]["id"]
    task_id = first_posts["data"]["tasks"]["edges"][0]["node"]["id"]
    query = "query ($p: ID!, $t: ID!, $u: ID!) { post(id: $p) { title } task(id: $t) { title } user(id: $u) { username } }"
    variables = {"p": post_id, "t": task_id, "u": "VXNlcjox"}
    answers = {}
    for viewer, token in world.tokens.items():
        answers[viewer], executor = await pair.check(query, variables, token=token)
        assert executor == ("compiled" if pair.compiles else "resolvers")
    assert answers["ada"]["data"]["task"] is not None and answers["root"]["data"]["task"] is not None
    assert answers["anonymous"]["data"]["task"] is None


@pytest.mark.parametrize(
    "order",
    [
        None,
        "{field: TITLE}",
        "{field: TITLE, direction: DESC}",
        "{field: DATE_POSTED, direction: DESC}",
        "{field: ID, direction: DESC}",
    ],
)
async def test_paging_with_cursors_both_ways(pair: Pair, order: str | None) -> None:
    """Every page of every ordering, forwards with `after` and backwards with `before`, through variables."""
    await _world(pair)
    order_by = f", orderBy: {order}" if order else ""
    forwards = f"""query ($after: String) {{ posts(first: 3, after: $after{order_by}) {{ edges {{ cursor node {{ title }} }}
                   pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} }} }}"""
    backwards = f"""query ($before: String) {{ posts(last: 5, before: $before{order_by}) {{ edges {{ cursor node {{ id }} }}
                    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} }} }}"""
    pages, after = 0, None
    while True:
        answer, executor = await pair.check(forwards, {"after": after})
        assert executor == ("compiled" if pair.compiles else "resolvers")
        info = answer["data"]["posts"]["pageInfo"]
        pages += 1
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert pages == 6  # 16 posts, 3 a page
    before = None
    for _ in range(4):
        answer, _ = await pair.check(backwards, {"before": before})
        before = answer["data"]["posts"]["pageInfo"]["startCursor"]
        if before is None:
            break


PAYLOAD_SELECTIONS = {
    "Post": "id title content datePosted author { username email posts(first: 2) { totalCount edges { node { title } } } }",
    "Comment": "id body createdAt author { username } post { title author { username } comments { totalCount } }",
    "Task": "__typename id title status owner { username tasks(first: 1) { edges { cursor } } }",
    "Note": "id body task { title notes(last: 1) { edges { node { body } } pageInfo { hasPreviousPage } } }",
    "User": "id username email isSuperuser posts { totalCount }",
}
MUTATIONS = [
    ("createPost", "post", "Post", '(input: {title: "New", content: "text"})'),
    ("addComment", "comment", "Comment", '(postId: $post, input: {body: "nice"})'),
    ("createTask", "task", "Task", '(input: {title: "Mine"})'),
    ("addNote", "note", "Note", '(taskId: $task, input: {body: "a note"})'),
    ("updateMe", "user", "User", '(input: {username: "ada_renamed"})'),
]


async def test_mutation_payloads_are_read_by_one_statement_as_the_resolvers_read_them(pair: Pair) -> None:
    """A payload's object is read back by one compiled statement after the write; the same
    selection through node(id:) on the resolvers' app must answer alike."""
    world = await _world(pair)
    ada = world.tokens["ada"]
    ids, _ = await pair.check(
        "{ posts(first: 1) { edges { node { id } } } tasks(first: 1) { edges { node { id } } } }", token=ada
    )
    variables = {
        "post": ids["data"]["posts"]["edges"][0]["node"]["id"],
        "task": ids["data"]["tasks"]["edges"][0]["node"]["id"],
    }
    for field, key, type_name, arguments in MUTATIONS:
        selection = PAYLOAD_SELECTIONS[type_name]
        used = {name: value for name, value in variables.items() if f"${name}" in arguments}
        declared = ", ".join(f"${name}: ID!" for name in used)
        document = f"""mutation {f"({declared})" if declared else ""} {{ {field}{arguments} {{ __typename
                       ... on {type_name}Payload {{ {key} {{ {selection} }} }} }} }}"""
        bare = document.replace(f"{key} {{ {selection} }}", "__typename")
        with pair.statements.count() as without_read:
            await pair.post(pair.compiled, bare, used, ada)
        with pair.statements.count() as sent:
            _, answer = await pair.post(pair.compiled, document, used, ada)
        assert "errors" not in answer, answer
        payload = answer["data"][field]
        assert payload["__typename"] == f"{type_name}Payload", answer
        if pair.compiles:  # the whole object, its nested objects and pages: one statement more
            assert sent.value == without_read.value + 1, (field, sent.statements)
        node_id = payload[key]["id"]
        lookup = f"query ($id: ID!) {{ node(id: $id) {{ ... on {type_name} {{ {selection} }} }} }}"
        _, expected = await pair.post(pair.reference, lookup, {"id": node_id}, ada)
        assert payload[key] == expected["data"]["node"], (field, payload, expected)


async def test_variables_directives_and_bad_variables(pair: Pair) -> None:
    world = await _world(pair)
    query = """query Feed($n: Int = 2, $withAuthor: Boolean!, $filter: PostFilter, $order: PostOrder) {
                 posts(first: $n, filter: $filter, orderBy: $order) { edges { node { title
                   author @include(if: $withAuthor) { username } } } } }"""
    for variables in (
        {"withAuthor": True},
        {
            "n": 5,
            "withAuthor": False,
            "filter": {"titleContains": "same"},
            "order": {"field": "DATE_POSTED", "direction": "DESC"},
        },
        {"withAuthor": "yes"},  # does not coerce: the resolvers' error
        {"n": 1000, "withAuthor": True},  # over the page limit
    ):
        await pair.check(query, variables, token=world.tokens["ada"])


async def test_which_path_served_is_in_the_log_and_metrics(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    await _world(pair)
    caplog.set_level("INFO", logger="quill.request")
    await pair.check("query Named { posts(first: 1) { totalCount } }")
    executors = [
        operation["executor"]
        for record in caplog.records
        if record.name == "quill.request"
        for operation in getattr(record, "fields", {}).get("operations", [])
    ]
    expected = "compiled" if pair.compiles else "resolvers"
    assert executors == ["resolvers", expected, expected]
    metrics = (await pair.compiled.get("/metrics")).text
    assert (
        f'quill_graphql_operations_total{{executor="{expected}",operation="Named",type="query"}} 2.0'
        in metrics
    )


# A bounded corpus generated from the schema itself (tests/generated.py): every node type, field,
# list, ordering, filter and lookup the schema declares, drawn with values from the database.


async def test_generated_queries_answer_as_the_resolvers(pair: Pair) -> None:
    world = await _world(pair)
    shape = SchemaShape.of(pair.compiled.app.state.schema._schema)  # type: ignore[attr-defined]
    async with _session(pair.compiled) as session:
        draw = Draw(shape, await Pools.read(session, shape))
    drawn: list[tuple[str, str]] = []

    # The same 150 queries on every run (CI must not turn red on a draw); EXPLORE_QUERIES=500 draws
    # that many fresh ones instead, to look for new differences.
    explore = int(os.environ.get("EXPLORE_QUERIES", "0"))

    @settings(
        max_examples=explore or 150,
        derandomize=not explore,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(query=draw.queries(), viewer=st.sampled_from(sorted(world.tokens)))
    def collect(query: str, viewer: str) -> None:
        drawn.append((query, viewer))

    collect()
    assert any("(by: {" in query for query, _ in drawn), "no lookup drawn in its @oneOf form"
    assert any("search: " in query for query, _ in drawn), "no search drawn"
    assert any("Count: {" in query for query, _ in drawn), "no filter on a related count drawn"
    assert any("aggregate { " in query for query, _ in drawn), "no aggregate drawn"
    assert any("avg { " in query for query, _ in drawn), "no average drawn"
    assert any("groupBy(by: {" in query for query, _ in drawn), "no groupBy drawn"
    reads = pair.compiled.app.state.compiled_reads  # type: ignore[attr-defined]
    for query, viewer in drawn:
        refusals = reads.statements.refused_reads
        _, executor = await pair.check(query, token=world.tokens[viewer])
        # SQLite's parser stack (100 deep) may refuse a deep generated query: then the shape is
        # remembered as refused and the resolvers answer it (still equal, checked above).
        refused = pair.engine == "sqlite" and reads.statements.refused_reads > refusals
        # A query that reads no row (`nodes(ids: [])`) has no plan (plans.py: `reads_rows`), and
        # the resolvers answer it without a statement; one that reads rows always sends one.
        reads_nothing = executor == "resolvers" and pair.last_statements == 0
        # MariaDB's derived tables cannot read an outer row: the resolvers group a nested list
        # (unless that list is not there: `me` of an anonymous viewer).
        if pair.engine == "mysql" and _groups_nested(query):
            continue
        assert executor == (
            "compiled" if pair.compiles and not (refused or reads_nothing) else "resolvers"
        ), query


def _groups_nested(query: str) -> bool:
    """Whether a groupBy of the query is on a list that is not a root field."""

    def walk(selection_set: Any, depth: int) -> bool:
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                if selection.name.value == "groupBy" and depth > 2:  # root list, aggregate, groupBy
                    return True
                if walk(selection.selection_set, depth + 1):
                    return True
            elif walk(getattr(selection, "selection_set", None), depth):
                return True
        return False

    operation = parse(query).definitions[0]
    return walk(getattr(operation, "selection_set", None), 0)


async def test_timestamps_do_not_depend_on_the_database_time_zone(
    app_with: Callable[..., Any], engine_name: str, database_url: str, postgres_server: Any
) -> None:
    """PostgreSQL prints a timestamptz in the session's time zone; the compiled reads' sessions
    are UTC whatever the database's default is."""
    if engine_name != "postgresql":
        pytest.skip("a PostgreSQL setting")
    name = make_url(database_url).database
    admin = await asyncpg.connect(postgres_server.admin_url.replace("+asyncpg", ""))
    await admin.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'Asia/Tokyo'")
    try:
        async with (
            app_with(compiled_reads=True, rate_limit=False) as compiled,
            app_with(compiled_reads=False, rate_limit=False) as reference,
        ):
            pair = Pair(compiled, reference, StatementCounter(), Executors(), engine_name)
            await _world(pair)
            query = (
                "{ posts(first: 3, orderBy: {field: DATE_POSTED}) { edges { cursor node { datePosted } } } }"
            )
            expected = await pair.post(reference, query, None, None)
            for _ in range(2):  # the pipeline's way, then the short way
                assert await pair.post(compiled, query, None, None) == expected
            assert expected[1]["data"]["posts"]["edges"][0]["node"]["datePosted"].endswith("+00:00")
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" RESET timezone')
        await admin.close()


async def test_postgres_reads_run_with_one_plan_for_all_values(
    app_with: Callable[..., Any], engine_name: str
) -> None:
    """The sessions of compiled reads use generic plans (whose shapes tests/test_deep_pages.py
    checks): left to choose, PostgreSQL plans a statement with a LIMIT parameter every time."""
    if POOLED:
        pytest.skip("behind PgBouncer 1.18 no statement stays prepared: each read is planned anew")
    if engine_name != "postgresql":
        pytest.skip("a PostgreSQL setting")
    async with app_with(compiled_reads=True) as client:
        reads = client.app.state.reads
        sql = "SELECT convert_to(current_setting('plan_cache_mode'), 'UTF8')"
        assert await reads.fetch(sql, (), time.monotonic() + 5) == b"force_generic_plan"


async def test_a_deep_page_has_the_sqlite_plan_of_the_first(
    app_with: Callable[..., Any], engine_name: str, database_url: str
) -> None:
    """SQLite: the compiled statement for a page far down the list reads by the index from the
    cursor on, exactly as the first page does (PostgreSQL's plans: tests/test_deep_pages.py)."""
    if engine_name != "sqlite":
        pytest.skip("SQLite's query plan")
    query = """query ($after: String, $order: PostOrder) { posts(first: 10, after: $after, orderBy: $order) {
                 edges { node { id title datePosted } } pageInfo { endCursor hasNextPage } } }"""
    async with app_with(compiled_reads=True, rate_limit=False) as client:
        async with _session(client) as session:
            await make_users_with_posts(session, users=10, posts_each=50)
            await session.commit()
        plans = []
        for order in ({"field": "ID", "direction": "ASC"}, {"field": "DATE_POSTED", "direction": "DESC"}):
            first = await _compiled_statement(client, query, {"order": order})
            cursor = (
                await client.post("/graphql", json={"query": query, "variables": {"order": order}})
            ).json()
            after = cursor["data"]["posts"]["pageInfo"]["endCursor"]
            for _ in range(30):  # 300 posts further down
                page = await client.post(
                    "/graphql", json={"query": query, "variables": {"order": order, "after": after}}
                )
                after = page.json()["data"]["posts"]["pageInfo"]["endCursor"]
            deep = await _compiled_statement(client, query, {"order": order, "after": after})
            plans.append((_sqlite_plan(database_url, *first), _sqlite_plan(database_url, *deep)))
    for first_plan, deep_plan in plans:
        # Step for step the same, except that each read of posts starts at the cursor: a SEARCH
        # on the index the first page scans from its start (and the first page reads no more).
        assert len(first_plan) == len(deep_plan), (first_plan, deep_plan)
        for first_step, deep_step in zip(first_plan, deep_plan, strict=True):
            alias = first_step.split()[1]
            if alias in ("t0", "s0", "h0"):  # the page's rows, its end cursor's, hasNextPage's
                assert deep_step.startswith(f"SEARCH {alias} USING ") and deep_step.endswith("?)"), deep_step
            else:
                assert deep_step == first_step, (first_plan, deep_plan)


async def _compiled_statement(client: httpx.AsyncClient, query: str, variables: Any) -> tuple[str, Any]:
    with StatementCounter().listening(client.app) as counter, counter.count() as sent:  # type: ignore[attr-defined]
        response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert "errors" not in response.json()
    [statement], [parameters] = sent.statements, sent.parameters
    return statement, parameters


def _sqlite_plan(database_url: str, sql: str, parameters: Any) -> list[str]:
    connection = sqlite3.connect(make_url(database_url).database or "")
    connection.create_function("quill_b64", 1, b64, deterministic=True)
    connection.create_function("quill_b64url", 1, b64url, deterministic=True)
    try:
        return [row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, parameters)]
    finally:
        connection.close()
