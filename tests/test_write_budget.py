"""What a write costs, counted in SQL statements (not BEGIN/COMMIT). Nothing more than this,
on each engine: no ORM flush, no refresh, no second read.

- PostgreSQL: one statement writes the row (only where the guard allows it), its outbox row, and
  builds the payload the client selected, in a transaction of its own: no BEGIN, no COMMIT
  (schema/execution/object_reads.py, tests/test_compiled_writes.py).
- SQLite: the write with RETURNING (the guard's rule inside it), the outbox row, in one short
  transaction of the event loop's thread; then the payload's one read.
- MariaDB (the ORM path): the guard's check where the row must be visible and the viewer's to
  change (db/writes.py), the write with RETURNING (an UPDATE has none there: a SELECT reads the
  row back), the outbox row where the event broker keeps a log, and the payload's one read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db.models import User
from schema.relay import to_global_id
from tests.conftest import GraphQLClient, StatementCounter
from tests.factories import make_comment, make_note, make_post, make_task, make_user

pytestmark = pytest.mark.one_path  # the payload's read is counted on the compiled path

CREATE_POST = """mutation ($input: CreatePostInput!) { createPost(input: $input) {
  __typename ... on PostPayload { post { id title author { username } } } } }"""
UPDATE_POST = """mutation ($id: ID!, $input: UpdatePostInput!) { updatePost(id: $id, input: $input) {
  __typename ... on PostPayload { post { id title } } } }"""
UPDATE_POST_AT = """mutation ($id: ID!, $input: UpdatePostInput!, $v: Int) {
  updatePost(id: $id, input: $input, expectedVersion: $v) { __typename ... on PostPayload { post { id version } } } }"""
ADD_NOTE = """mutation ($taskId: ID!, $input: AddNoteInput!) { addNote(taskId: $taskId, input: $input) {
  __typename ... on NotePayload { note { id body task { title } } } } }"""
ADD_COMMENT = """mutation ($postId: ID!, $input: CommentInput!) { addComment(postId: $postId, input: $input) {
  __typename ... on CommentPayload { comment { id body author { username } } } } }"""
UPDATE_TASK = """mutation ($id: ID!, $input: UpdateTaskInput!) { updateTask(id: $id, input: $input) {
  __typename ... on TaskPayload { task { id status } } } }"""
UPDATE_NOTE = """mutation ($id: ID!, $input: UpdateNoteInput!) { updateNote(id: $id, input: $input) {
  __typename ... on NotePayload { note { id body } } } }"""
UPDATE_COMMENT = """mutation ($id: ID!, $input: CommentInput!) { updateComment(id: $id, input: $input) {
  __typename ... on CommentPayload { comment { id body } } } }"""


def _outbox(app: Starlette) -> int:
    """1 where the broker keeps a log (and so can resume): it stages each event as an outbox row
    in the write's transaction (db/events.py); 0 for the log-less broker, which only delivers."""
    return 1 if app.state.services.broker.resumable else 0


async def _count(
    app: Starlette, gql: GraphQLClient, statements: StatementCounter, query: str, variables: dict[str, Any],
    token: str,
) -> tuple[list[str], int, dict[str, Any]]:  # fmt: skip
    """The statements sent, how many of them (BEGIN and COMMIT included) went through the ORM's
    engine, and the answer's data."""
    through_orm: list[str] = []
    engine = app.state.engine.sync_engine

    def sent_by_orm(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        through_orm.append(statement)

    event.listen(engine, "before_cursor_execute", sent_by_orm)
    try:
        with statements.count() as counted:
            body = await gql(query, variables, token=token)
    finally:
        event.remove(engine, "before_cursor_execute", sent_by_orm)
    assert "errors" not in body, body
    return counted.statements, len(through_orm), body["data"]


def _expected(engine_name: str, app: Starlette, *, checked: bool, update: bool = False) -> int:
    if engine_name == "postgresql":
        return 1
    if engine_name == "sqlite":
        return 1 + _outbox(app) + 1
    read_back = 1 if update else 0
    return (1 if checked else 0) + 1 + read_back + _outbox(app) + 1


@pytest.fixture
async def author(session: AsyncSession) -> User:
    return await make_user(session, username="writer", email="writer@example.com")


@dataclass(frozen=True)
class Case:
    document: str
    variables: Callable[[User, AsyncSession], Awaitable[dict[str, Any]]]
    shown: Callable[[dict[str, Any]], object]  # what the answer must show
    expected: object
    checked: bool  # MariaDB's ORM path checks the guard's row first
    update: bool = False  # and reads an updated row back (its UPDATE has no RETURNING)


async def _new_post(author: User, session: AsyncSession) -> dict[str, Any]:
    return {"input": {"title": "Counted", "content": "One insert."}}


async def _post_to_change(author: User, session: AsyncSession) -> dict[str, Any]:
    post = await make_post(session, author)
    return {"id": to_global_id("Post", post.id), "input": {"title": "Changed"}}


async def _post_at_version(author: User, session: AsyncSession) -> dict[str, Any]:
    return {**await _post_to_change(author, session), "v": 1}


async def _task_to_note(author: User, session: AsyncSession) -> dict[str, Any]:
    task = await make_task(session, author)
    return {"taskId": to_global_id("Task", task.id), "input": {"body": "Counted."}}


async def _post_to_comment(author: User, session: AsyncSession) -> dict[str, Any]:
    post = await make_post(session, author)
    return {"postId": to_global_id("Post", post.id), "input": {"body": "Counted."}}


async def _task_to_change(author: User, session: AsyncSession) -> dict[str, Any]:
    task = await make_task(session, author)
    return {"id": to_global_id("Task", task.id), "input": {"status": "DONE"}}


async def _note_to_change(author: User, session: AsyncSession) -> dict[str, Any]:
    note = await make_note(session, await make_task(session, author))
    return {"id": to_global_id("Note", note.id), "input": {"body": "Changed."}}


async def _comment_to_change(author: User, session: AsyncSession) -> dict[str, Any]:
    comment = await make_comment(session, await make_post(session, author), author)
    return {"id": to_global_id("Comment", comment.id), "input": {"body": "Changed."}}


CASES = {
    "createPost": Case(CREATE_POST, _new_post, lambda d: d["createPost"]["post"]["author"], {"username": "writer"}, checked=False),
    "updatePost": Case(UPDATE_POST, _post_to_change, lambda d: d["updatePost"]["post"]["title"], "Changed", checked=True, update=True),
    # The version's condition is part of the UPDATE: no statement more.
    "updatePost at its version": Case(UPDATE_POST_AT, _post_at_version, lambda d: d["updatePost"]["post"]["version"], 2, checked=True, update=True),
    "addNote": Case(ADD_NOTE, _task_to_note, lambda d: d["addNote"]["note"]["body"], "Counted.", checked=True),
    # The post must exist: its foreign key says so, in the INSERT itself.
    "addComment": Case(ADD_COMMENT, _post_to_comment, lambda d: d["addComment"]["comment"]["body"], "Counted.", checked=False),
    "updateTask": Case(UPDATE_TASK, _task_to_change, lambda d: d["updateTask"]["task"]["status"], "DONE", checked=True, update=True),
    "updateNote": Case(UPDATE_NOTE, _note_to_change, lambda d: d["updateNote"]["note"]["body"], "Changed.", checked=True, update=True),
    "updateComment": Case(UPDATE_COMMENT, _comment_to_change, lambda d: d["updateComment"]["comment"]["body"], "Changed.", checked=True, update=True),
}  # fmt: skip


@pytest.mark.parametrize("mutation", list(CASES))
async def test_a_write_sends_its_budget(
    app: Starlette, gql: GraphQLClient, statements: StatementCounter, session: AsyncSession,
    author: User, token_for: Callable[[User], str], engine_name: str, mutation: str,
) -> None:  # fmt: skip
    case = CASES[mutation]
    variables = await case.variables(author, session)
    sent, through_orm, data = await _count(app, gql, statements, case.document, variables, token_for(author))
    assert case.shown(data) == case.expected
    assert len(sent) == _expected(engine_name, app, checked=case.checked, update=case.update), sent
    _check_path(engine_name, sent, through_orm)


def _check_path(engine_name: str, sent: list[str], through_orm: int) -> None:
    """PostgreSQL and SQLite write on their own connections (no ORM session, no BEGIN through it);
    PostgreSQL's one statement is the write inside a WITH."""
    if engine_name == "postgresql":
        assert sent[0].startswith("WITH written AS"), sent
    if engine_name in ("postgresql", "sqlite"):
        assert through_orm == 0
    else:
        assert through_orm > 0  # MariaDB: the ORM path's transaction
