"""Optimistic concurrency: posts, tasks, notes and comments carry a `version` (1 when written, one
more with every change), and their update and delete mutations take `expectedVersion`. A write
at an older version is a StaleVersionError carrying the current version, and writes nothing.
On every engine and both read paths; the last test races writers through two uvicorn workers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db.models import User
from schema.relay import to_global_id
from tests.api import REGISTER, errors
from tests.conftest import GraphQLClient
from tests.factories import make_comment, make_note, make_post, make_task, make_user
from tests.servers import Server

STALE = "... on StaleVersionError { id currentVersion }"


@dataclass(frozen=True)
class Kind:
    """One versioned type: how to make a row of it, and its update and delete mutations."""

    type_name: str
    make: Callable[[AsyncSession, User], Awaitable[Any]]
    update: str  # the update mutation's field
    input_type: str
    changed: dict[str, str]  # an input that changes the row
    shown: str  # the field the change shows in
    partial: bool = True  # may the input give no field at all (CommentInput must give the body)

    def update_document(self) -> str:
        return f"""mutation ($id: ID!, $input: {self.input_type}!, $expectedVersion: Int) {{
          {self.update}(id: $id, input: $input, expectedVersion: $expectedVersion) {{
            {errors("ValidationError", "NotFoundError")} {STALE}
            ... on {self.type_name}Payload {{ {self._field} {{ id version {self.shown} }} }} }} }}"""

    def delete_document(self) -> str:
        return f"""mutation ($id: ID!, $expectedVersion: Int) {{
          delete{self.type_name}(id: $id, expectedVersion: $expectedVersion) {{
            {errors("NotFoundError")} {STALE} ... on Delete{self.type_name}Success {{ deletedId }} }} }}"""

    @property
    def _field(self) -> str:
        return self.type_name.lower()


async def _post(session: AsyncSession, user: User) -> Any:
    return await make_post(session, user, title="First", content="First.")


async def _task(session: AsyncSession, user: User) -> Any:
    return await make_task(session, user, title="First")


async def _note(session: AsyncSession, user: User) -> Any:
    return await make_note(session, await make_task(session, user), body="First.")


async def _comment(session: AsyncSession, user: User) -> Any:
    return await make_comment(session, await make_post(session, user), user, body="First.")


KINDS = {
    "post": Kind("Post", _post, "updatePost", "UpdatePostInput", {"title": "Second"}, "title"),
    "task": Kind("Task", _task, "updateTask", "UpdateTaskInput", {"title": "Second"}, "title"),
    "note": Kind("Note", _note, "updateNote", "UpdateNoteInput", {"body": "Second."}, "body"),
    "comment": Kind("Comment", _comment, "updateComment", "CommentInput", {"body": "Second."}, "body", False),
}
kinds = pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))


@pytest.fixture
async def author(session: AsyncSession) -> User:
    return await make_user(session, username="editor", email="editor@example.com")


async def _read(gql: GraphQLClient, kind: Kind, global_id: str, token: str) -> dict[str, Any] | None:
    """The object as `node` reads it now (compiled or resolvers, as the pass runs)."""
    query = f"query ($id: ID!) {{ node(id: $id) {{ ... on {kind.type_name} {{ version {kind.shown} }} }} }}"
    node: dict[str, Any] | None = (await gql(query, {"id": global_id}, token=token))["data"]["node"]
    return node


async def _update(
    gql: GraphQLClient, kind: Kind, global_id: str, token: str, input: dict[str, str], expected: int | None
) -> dict[str, Any]:
    variables = {"id": global_id, "input": input, "expectedVersion": expected}
    payload: dict[str, Any] = (await gql(kind.update_document(), variables, token=token))["data"][kind.update]
    return payload


@kinds
async def test_a_row_starts_at_version_1_and_each_change_counts_one(
    gql: GraphQLClient, session: AsyncSession, author: User, token_for: Callable[[User], str], kind: Kind
) -> None:
    row = await kind.make(session, author)
    global_id, token = to_global_id(kind.type_name, row.id), token_for(author)
    assert (await _read(gql, kind, global_id, token) or {})["version"] == 1
    changed = await _update(gql, kind, global_id, token, kind.changed, None)
    assert changed[kind._field]["version"] == 2
    again = await _update(gql, kind, global_id, token, {kind.shown: "Third."}, None)
    assert again[kind._field]["version"] == 3
    if kind.partial:
        nothing = await _update(gql, kind, global_id, token, {}, None)  # no field given: nothing changes
        assert nothing[kind._field]["version"] == 3
    assert await _read(gql, kind, global_id, token) == {"version": 3, kind.shown: "Third."}


@kinds
async def test_an_update_at_the_expected_version_writes_and_an_older_one_writes_nothing(
    app: Starlette, gql: GraphQLClient, session: AsyncSession, author: User, token_for: Callable[[User], str],
    kind: Kind,
) -> None:  # fmt: skip
    row = await kind.make(session, author)
    global_id, token = to_global_id(kind.type_name, row.id), token_for(author)
    async with app.state.services.broker.subscribe(kind._field) as subscription:
        written = await _update(gql, kind, global_id, token, kind.changed, 1)
        assert written["__typename"] == f"{kind.type_name}Payload", written
        assert written[kind._field] == {"id": global_id, "version": 2, kind.shown: kind.changed[kind.shown]}
        announced = ["updated"]
        if kind.partial:  # an update that gives no field still checks the version it names
            # It changes nothing, so it announces nothing.
            assert (await _update(gql, kind, global_id, token, {}, 2))[kind._field]["version"] == 2
            empty = await _update(gql, kind, global_id, token, {}, 1)
            assert empty["__typename"] == "StaleVersionError"

        stale = await _update(gql, kind, global_id, token, {kind.shown: "Lost."}, 1)
        assert stale == {
            "__typename": "StaleVersionError",
            "message": f"This {kind._field} has changed since the version you edited; it is now at version 2.",
            "id": global_id,
            "currentVersion": 2,
        }
        assert await _read(gql, kind, global_id, token) == {
            "version": 2,
            kind.shown: kind.changed[kind.shown],
        }
        deleted = await gql(kind.delete_document(), {"id": global_id, "expectedVersion": 2}, token=token)
        assert deleted["data"][f"delete{kind.type_name}"]["__typename"] == f"Delete{kind.type_name}Success"
        # What was heard: the writes done, not the refused ones.
        heard: list[str] = []
        events = aiter(subscription)
        while not heard or heard[-1] != "deleted":
            event = await asyncio.wait_for(anext(events), timeout=10)
            assert event.id == row.id
            heard.append(event.kind)
        assert heard == [*announced, "deleted"]


@kinds
async def test_a_delete_at_an_older_version_deletes_nothing(
    gql: GraphQLClient, session: AsyncSession, author: User, token_for: Callable[[User], str], kind: Kind
) -> None:
    row = await kind.make(session, author)
    global_id, token = to_global_id(kind.type_name, row.id), token_for(author)
    await _update(gql, kind, global_id, token, kind.changed, None)
    delete = kind.delete_document()
    stale = (await gql(delete, {"id": global_id, "expectedVersion": 1}, token=token))["data"]
    assert stale[f"delete{kind.type_name}"]["__typename"] == "StaleVersionError"
    assert stale[f"delete{kind.type_name}"]["currentVersion"] == 2
    assert await _read(gql, kind, global_id, token) is not None
    deleted = (await gql(delete, {"id": global_id, "expectedVersion": 2}, token=token))["data"]
    assert deleted[f"delete{kind.type_name}"] == {
        "__typename": f"Delete{kind.type_name}Success",
        "deletedId": global_id,
    }
    assert await _read(gql, kind, global_id, token) is None


async def test_the_version_of_a_row_the_viewer_may_not_see_is_not_told(
    gql: GraphQLClient, session: AsyncSession, author: User, token_for: Callable[[User], str]
) -> None:
    """Someone else's task is not found, whatever version is named: the rules come first."""
    task = await make_task(session, author)
    stranger = await make_user(session, username="stranger", email="stranger@example.com")
    kind, global_id = KINDS["task"], to_global_id("Task", task.id)
    for expected in (1, 7):
        refused = await _update(gql, kind, global_id, token_for(stranger), {"title": "Mine"}, expected)
        assert refused["__typename"] == "NotFoundError"
        assert "version" not in refused["message"]


async def test_two_clients_editing_one_version_one_wins(
    gql: GraphQLClient, session: AsyncSession, author: User, token_for: Callable[[User], str]
) -> None:
    """Both read version 1, both send their edit at once: one is written, the other is told the
    post is at version 2, and the winner's edit is what the post holds."""
    post = await make_post(session, author, title="Draft")
    kind, global_id, token = KINDS["post"], to_global_id("Post", post.id), token_for(author)
    answers = await asyncio.gather(
        *(_update(gql, kind, global_id, token, {"title": title}, 1) for title in ("Alice's", "Bob's"))
    )
    kinds_seen = sorted(answer["__typename"] for answer in answers)
    assert kinds_seen == ["PostPayload", "StaleVersionError"], answers
    [winner] = [answer["post"] for answer in answers if answer["__typename"] == "PostPayload"]
    [loser] = [answer for answer in answers if answer["__typename"] == "StaleVersionError"]
    assert loser["currentVersion"] == 2
    assert await _read(gql, kind, global_id, token) == {"version": 2, "title": winner["title"]}


WRITERS, EDITS = 4, 5
READ = "query ($id: ID!) { post(id: $id) { version content } }"
APPEND = f"""mutation ($id: ID!, $content: String!, $expectedVersion: Int) {{
  updatePost(id: $id, input: {{content: $content}}, expectedVersion: $expectedVersion) {{
    {errors()} {STALE} ... on PostPayload {{ post {{ version }} }} }} }}"""


async def _call(client: httpx.AsyncClient, document: str, token: str | None, **variables: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": document, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    [answer] = body["data"].values()
    return answer


async def _appender(client: httpx.AsyncClient, token: str, post_id: str, name: str) -> int:
    """Append EDITS lines to the post's content, each read-modify-write retried until it is
    written at the version it read; the number of retries."""
    retries = 0
    for edit in range(EDITS):
        while True:
            post = await _call(client, READ, token, id=post_id)
            content = f"{post['content']}\n{name} {edit}"
            written = await _call(
                client, APPEND, token, id=post_id, content=content, expectedVersion=post["version"]
            )
            if written["__typename"] == "PostPayload":
                break
            assert written["__typename"] == "StaleVersionError", written
            assert written["currentVersion"] > post["version"]
            retries += 1
    return retries


@pytest.mark.one_path
async def test_writers_retrying_stale_edits_lose_nothing(database_url: str, tmp_path: Path) -> None:
    """WRITERS clients append to one post through two uvicorn workers, each edit at the version it
    read: every line arrives, and the version counts every edit."""
    server = Server(database_url, workers=2, log_path=tmp_path / "uvicorn.log")
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            account = await _call(
                client,
                REGISTER,
                None,
                input={"username": "ed", "email": "ed@example.com", "password": "x" * 12},
            )
            token = account["accessToken"]
            create = 'mutation { createPost(input: {title: "Log", content: "start"}) { ... on PostPayload { post { id } } } }'
            post_id = (await _call(client, create, token))["post"]["id"]
            retries = await asyncio.gather(
                *(_appender(client, token, post_id, f"w{i}") for i in range(WRITERS))
            )
            final = await _call(client, READ, token, id=post_id)
    finally:
        server.stop()
    lines = final["content"].split("\n")
    assert lines[0] == "start"
    assert sorted(lines[1:]) == sorted(f"w{i} {edit}" for i in range(WRITERS) for edit in range(EDITS))
    assert final["version"] == 1 + WRITERS * EDITS
    for i in range(WRITERS):  # each writer's lines in the order it wrote them
        assert [line for line in lines if line.startswith(f"w{i} ")] == [
            f"w{i} {edit}" for edit in range(EDITS)
        ]
    print(f"{WRITERS} writers x {EDITS} edits: {sum(retries)} stale edits retried")
