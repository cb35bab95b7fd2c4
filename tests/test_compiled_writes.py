"""A mutation's write on its own connection (schema/mutations.py's insert_linked and
update_linked): on PostgreSQL one statement that also builds the payload, on SQLite one short
transaction in the event loop's thread. The same answers and events as the ORM path, and the ORM
path whenever that write cannot be done exactly. On MariaDB these tests check the ORM path alike."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db.events import Event, EventOf
from db.models import Note, Post, User
from schema.relay import from_global_id, to_global_id
from tests.api import ADD_NOTE, without_keys
from tests.conftest import GraphQLClient, StatementCounter
from tests.factories import make_post, make_task, make_user

RICH = """mutation ($input: CreatePostInput!) { createPost(input: $input) { __typename
  ... on PostPayload { post { __typename id title content datePosted
    author { id username email }
    comments(first: 5) { totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } } }
  ... on Error { message } } }"""

# The payload reads posts again (the author's posts): in one statement that read would miss the
# new post (every part of a statement reads the snapshot before it), so it is read after the write.
AUTHORS_POSTS = """mutation ($input: CreatePostInput!) { createPost(input: $input) {
  ... on PostPayload { post { title author { posts(first: 10) { totalCount edges { node { title } } } } } } } }"""


@pytest.fixture
async def author(session: AsyncSession) -> User:
    return await make_user(session, username="writer", email="writer@example.com")


def _variables(title: str) -> dict[str, Any]:
    return {"input": {"title": title, "content": "Body."}}


def _without_ids(answer: Any) -> Any:
    return without_keys(answer, "id", "datePosted")


async def test_the_payload_is_the_one_the_orm_path_gives(
    gql: GraphQLClient, app_with: Callable[..., Any], author: User, token_for: Callable[[User], str]
) -> None:
    token = token_for(author)
    compiled = (await gql(RICH, _variables("Same"), token=token))["data"]
    async with app_with(compiled_reads=False) as client:
        orm = (await GraphQLClient(client)(RICH, _variables("Same"), token=token))["data"]
    assert compiled["createPost"]["__typename"] == "PostPayload"
    assert _without_ids(compiled) == _without_ids(orm)
    assert compiled["createPost"]["post"]["author"]["email"] == "writer@example.com"  # the viewer's own
    formats = {answer["createPost"]["post"]["datePosted"][19:][-6:] for answer in (compiled, orm)}
    assert formats == {"+00:00"}


async def test_a_payload_that_reads_the_written_table_again_sees_the_new_row(
    gql: GraphQLClient, session: AsyncSession, author: User, token_for: Callable[[User], str],
    statements: StatementCounter, engine_name: str, compiled_reads: bool,
) -> None:  # fmt: skip
    await make_post(session, author, title="Earlier")
    with statements.count() as counted:
        body = await gql(AUTHORS_POSTS, _variables("Newest"), token=token_for(author))
    posts = body["data"]["createPost"]["post"]["author"]["posts"]
    assert posts["totalCount"] == 2
    assert [edge["node"]["title"] for edge in posts["edges"]] == ["Earlier", "Newest"]
    if engine_name == "postgresql" and compiled_reads:  # the write (with its outbox row), then the read
        assert len(counted.statements) == 2, counted.statements
        assert counted.statements[0].startswith("WITH written AS")
        assert "INSERT" not in counted.statements[1]


async def test_a_failed_statement_writes_nothing_and_the_orm_path_writes_once(
    gql: GraphQLClient, session: AsyncSession, author: User, token_for: Callable[[User], str],
    engine_name: str,
) -> None:  # fmt: skip
    """A trigger refuses inserts from the compiled statements' connections only (their
    application_name): the statement fails, nothing is written by it, and the ORM path writes
    the post once."""
    if engine_name != "postgresql":
        pytest.skip("only PostgreSQL writes in one statement")
    await session.execute(
        text("""CREATE FUNCTION refuse_compiled() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF current_setting('application_name') = 'quill compiled reads' THEN
          RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$""")
    )
    await session.execute(
        text(
            "CREATE TRIGGER refuse_compiled BEFORE INSERT ON posts FOR EACH ROW EXECUTE FUNCTION refuse_compiled()"
        )
    )
    await session.commit()
    try:
        body = await gql(RICH, _variables("Once"), token=token_for(author))
        assert body["data"]["createPost"]["post"]["title"] == "Once"
        count = await session.scalar(select(func.count()).select_from(Post).where(Post.title == "Once"))
        assert count == 1
    finally:
        await session.execute(text("DROP TRIGGER refuse_compiled ON posts"))
        await session.execute(text("DROP FUNCTION refuse_compiled()"))
        await session.commit()


async def test_a_guarded_write_the_guard_refuses_writes_nothing_and_says_why(
    gql: GraphQLClient, session: AsyncSession, author: User, token_for: Callable[[User], str],
) -> None:  # fmt: skip
    """addNote writes only if the viewer may change the task (in the same statement, on
    PostgreSQL); refused, the ORM path's check gives the typed error."""
    other = await make_user(session, username="other", email="other@example.com")
    theirs, mine = await make_task(session, other), await make_task(session, author)
    token = token_for(author)
    refused = await gql(
        ADD_NOTE, {"taskId": to_global_id("Task", theirs.id), "input": {"body": "No."}}, token=token
    )
    added = await gql(
        ADD_NOTE, {"taskId": to_global_id("Task", mine.id), "input": {"body": "Yes."}}, token=token
    )
    assert refused["data"]["addNote"]["__typename"] == "NotFoundError"
    assert added["data"]["addNote"]["note"]["body"] == "Yes."
    notes = (await session.execute(select(Note.task_id, Note.body))).all()
    assert [tuple(note) for note in notes] == [(mine.id, "Yes.")]


UPDATE_RICH = RICH.replace("mutation ($input: CreatePostInput!) { createPost(input: $input)", (
    "mutation ($id: ID!, $input: UpdatePostInput!) { updatePost(id: $id, input: $input)"
)).replace("... on Error { message }", "... on Error { __typename message }")  # fmt: skip


async def test_an_update_answers_as_the_orm_path_and_refuses_alike(
    gql: GraphQLClient, app_with: Callable[..., Any], session: AsyncSession, author: User,
    token_for: Callable[[User], str],
) -> None:  # fmt: skip
    """updatePost's changed row and payload, and its refusals (not the author: nothing changes;
    no such post), whether one statement writes it or the ORM path does."""
    other = await make_user(session, username="other", email="other@example.com")
    post = await make_post(session, author, title="Before")
    post_id = to_global_id("Post", post.id)

    async def update(client: GraphQLClient, title: str, user: User, pk: str = post_id) -> Any:
        variables = {"id": pk, "input": {"title": title}}
        return (await client(UPDATE_RICH, variables, token=token_for(user)))["data"]["updatePost"]

    compiled = [await update(gql, "Changed", author), await update(gql, "Theirs", other)]
    compiled.append(await update(gql, "Nobody's", author, to_global_id("Post", post.id + 1000)))
    async with app_with(compiled_reads=False) as client:
        orm_client = GraphQLClient(client)
        orm = [await update(orm_client, "Changed", author), await update(orm_client, "Theirs", other)]
        orm.append(await update(orm_client, "Nobody's", author, to_global_id("Post", post.id + 1000)))
    assert compiled == orm
    assert [answer["__typename"] for answer in compiled] == [
        "PostPayload",
        "PermissionDeniedError",
        "NotFoundError",
    ]
    assert await session.scalar(select(Post.title).where(Post.id == post.id)) == "Changed"


async def test_sqlite_never_waits_in_the_event_loop_for_another_writer(
    gql: GraphQLClient, session: AsyncSession, author: User, token_for: Callable[[User], str],
    engine_name: str, database_url: str,
) -> None:  # fmt: skip
    """Another connection holds SQLite's write lock: the event loop's writer fails at once and
    the ORM path waits its turn (busy_timeout, in its own thread), so the post is written once,
    after the lock is released, and the server answers other requests meanwhile."""
    if engine_name != "sqlite":
        pytest.skip("SQLite's own writer")
    holder = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        writing = asyncio.ensure_future(gql(RICH, _variables("Waited"), token=token_for(author)))
        await asyncio.sleep(0.3)
        assert not writing.done()
        assert (await gql("{ posts(first: 1) { totalCount } }"))["data"]["posts"]["totalCount"] == 0
    finally:
        holder.execute("COMMIT")
        holder.close()
    body = await asyncio.wait_for(writing, timeout=10)
    assert body["data"]["createPost"]["post"]["title"] == "Waited"
    assert await session.scalar(select(func.count()).select_from(Post)) == 1


async def test_sqlite_s_event_log_trims_in_turn_with_the_writers(
    app: Starlette, gql: GraphQLClient, author: User, token_for: Callable[[User], str], engine_name: str
) -> None:
    """The log's trim (a DELETE of old events) waits for the process's writers and they for it,
    and it does not run beside the first writes: a compiled write that met its lock would go the
    ORM way (this made the statement counts of a test flaky)."""
    if engine_name != "sqlite":
        pytest.skip("SQLite's own writer")
    services = app.state.services
    broker, turns = services.broker, services.write_turns
    assert turns is not None
    await gql(RICH, _variables("First"), token=token_for(author))
    await asyncio.sleep(0.1)  # the log's reader has read the event
    assert time.monotonic() - broker._trimmed_at < 60  # not trimmed at the first event: a minute in
    async with turns:
        trimming = asyncio.ensure_future(broker._trim())
        await asyncio.sleep(0.1)
        assert not trimming.done()
    await asyncio.wait_for(trimming, timeout=5)


async def test_sqlite_under_full_synchronous_writes_through_the_orm(
    app_with: Callable[..., Any], author: User, engine_name: str
) -> None:
    """Under FULL a commit waits for the disk, which must not happen in the event loop's thread."""
    if engine_name != "sqlite":
        pytest.skip("SQLite's own writer")
    async with app_with(sqlite_synchronous="FULL") as client:
        app = client.app
        assert not app.state.reads.writes
        token = str(app.state.services.tokens.issue(author.id, is_superuser=False)[0])
        body = await GraphQLClient(client)(RICH, _variables("Full"), token=token)
    assert body["data"]["createPost"]["post"]["title"] == "Full"


@pytest.mark.parametrize("broker", ["log", "no log"])
async def test_subscribers_hear_the_write_once(
    app_with: Callable[..., Any], author: User, token_for: Callable[[User], str], broker: str
) -> None:
    """Through the broker as subscribers use it: with a log (the outbox row, written by the same
    statement, relayed and read back) and without one (delivered at the commit)."""
    changes = {} if broker == "log" else {"event_broker_url": None}
    async with app_with(**changes) as client:
        services = client.app.state.services
        if services.broker.resumable != (broker == "log"):
            pytest.skip(f"this engine's broker keeps {'a' if services.broker.resumable else 'no'} log")
        token = str(services.tokens.issue(author.id, is_superuser=False)[0])
        async with services.broker.subscribe("post") as subscription:
            body = await GraphQLClient(client)(RICH, _variables("Heard"), token=token)
            _, pk = from_global_id(body["data"]["createPost"]["post"]["id"])
            events = aiter(subscription)
            heard = await asyncio.wait_for(anext(events), timeout=10)
            assert dataclasses.replace(heard, position=None) == Event(
                "post", "created", pk, owner_id=author.id
            )
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(events), timeout=0.5)  # once


def test_an_event_template_names_every_field_of_an_event() -> None:
    """EventOf builds the outbox payload in SQL from the same field list Event decodes."""
    names = list(EventOf("post", "created").fields(lambda column: None))
    assert names == [field.name for field in dataclasses.fields(Event) if field.name != "position"]
