"""What a write costs, counted in SQL statements (not BEGIN/COMMIT): the row written with
RETURNING, the guard's check where the row must already be visible and the viewer's to change
(db/writes.py), the outbox row where the event broker keeps a log (db/events.py), and the one read
of the payload the client selected. Nothing else: no ORM flush, no refresh, no second read. On
PostgreSQL createPost, updatePost and addNote are one statement each (tests/test_compiled_writes.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db.models import User
from schema.relay import to_global_id
from tests.conftest import GraphQLClient, StatementCounter
from tests.factories import make_post, make_task, make_user

pytestmark = pytest.mark.one_path  # the payload's read is counted on the compiled path

CREATE_POST = """mutation ($input: CreatePostInput!) { createPost(input: $input) {
  __typename ... on PostPayload { post { id title author { username } } } } }"""
UPDATE_POST = """mutation ($id: ID!, $input: UpdatePostInput!) { updatePost(id: $id, input: $input) {
  __typename ... on PostPayload { post { id title } } } }"""
ADD_NOTE = """mutation ($taskId: ID!, $input: AddNoteInput!) { addNote(taskId: $taskId, input: $input) {
  __typename ... on NotePayload { note { id body task { title } } } } }"""


def _outbox(app: Starlette) -> int:
    """1 where the broker keeps a log (and so can resume): it stages each event as an outbox row
    in the write's transaction (db/events.py); 0 for the log-less broker, which only delivers."""
    return 1 if app.state.services.broker.resumable else 0


async def _count(
    gql: GraphQLClient, statements: StatementCounter, query: str, variables: dict[str, Any], token: str
) -> tuple[list[str], dict[str, Any]]:
    with statements.count() as counted:
        body = await gql(query, variables, token=token)
    assert "errors" not in body, body
    return counted.statements, body["data"]


def _written_in_one_statement(sent: list[str]) -> bool:
    """PostgreSQL: one statement writes the row (where the guard allows it) and its outbox row and
    builds the payload, in a transaction of its own: no BEGIN, no COMMIT
    (schema/execution/object_reads.py, tests/test_compiled_writes.py)."""
    return len(sent) == 1 and sent[0].startswith("WITH written AS")


@pytest.fixture
async def author(session: AsyncSession) -> User:
    return await make_user(session, username="writer", email="writer@example.com")


async def test_create_post_is_one_insert_and_one_read(
    app: Starlette, gql: GraphQLClient, statements: StatementCounter, author: User,
    token_for: Callable[[User], str], engine_name: str,
) -> None:  # fmt: skip
    variables = {"input": {"title": "Counted", "content": "One insert."}}
    sent, data = await _count(gql, statements, CREATE_POST, variables, token_for(author))
    assert data["createPost"]["post"]["author"] == {"username": "writer"}
    if engine_name == "postgresql":
        assert _written_in_one_statement(sent), sent
    else:
        assert len(sent) == 1 + _outbox(app) + 1


async def test_update_post_is_a_check_an_update_and_one_read(
    app: Starlette, gql: GraphQLClient, statements: StatementCounter, session: AsyncSession,
    author: User, token_for: Callable[[User], str], engine_name: str,
) -> None:  # fmt: skip
    post = await make_post(session, author)
    variables = {"id": to_global_id("Post", post.id), "input": {"title": "Changed"}}
    sent, data = await _count(gql, statements, UPDATE_POST, variables, token_for(author))
    assert data["updatePost"]["post"]["title"] == "Changed"
    # the guard's check, the UPDATE (with RETURNING, or then a SELECT on MariaDB, whose UPDATE has
    # no RETURNING), the outbox, the payload
    read_back = 0 if app.state.engine.dialect.update_returning else 1
    if engine_name == "postgresql":
        assert _written_in_one_statement(sent), sent
    else:
        assert len(sent) == 2 + read_back + _outbox(app) + 1


async def test_add_note_is_a_check_one_insert_and_one_read(
    app: Starlette, gql: GraphQLClient, statements: StatementCounter, session: AsyncSession,
    author: User, token_for: Callable[[User], str], engine_name: str,
) -> None:  # fmt: skip
    task = await make_task(session, author)
    variables = {"taskId": to_global_id("Task", task.id), "input": {"body": "Counted."}}
    sent, data = await _count(gql, statements, ADD_NOTE, variables, token_for(author))
    assert data["addNote"]["note"]["body"] == "Counted."
    if engine_name == "postgresql":
        assert _written_in_one_statement(sent), sent
    else:
        assert len(sent) == 2 + _outbox(app) + 1
