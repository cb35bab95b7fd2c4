"""Idempotent retries: a mutation sent with an `Idempotency-Key` header (over WebSocket, the
subscribe message's `extensions.idempotencyKey`) is answered once; the same key and viewer get
that answer again without a second write, for IDEMPOTENCY_RETENTION_SECONDS. The same key with
another request is refused. Kept in the database: across app instances and transports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db.idempotency import Claimed, IdempotencyKeys, keys
from db.models import Post, User, table_of
from tests import sse
from tests.api import REGISTER
from tests.conftest import StatementCounter
from tests.factories import make_user
from tests.servers import Server
from tests.ws import GraphQLWS

posts = table_of(Post)
CREATE = """mutation ($title: String!) { createPost(input: {title: $title, content: "Once."}) {
  __typename ... on PostPayload { post { id title } } ... on Error { message } } }"""


@pytest.fixture
async def author(session: AsyncSession) -> User:
    return await make_user(session, username="retrier", email="retrier@example.com")


async def _post(
    client: httpx.AsyncClient, body: Any, token: str | None, key: str | None = "key-1"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post("/graphql", json=body, headers=headers)


async def _posts(session: AsyncSession) -> int:
    await session.rollback()  # a fresh snapshot
    return int(await session.scalar(select(func.count()).select_from(posts)) or 0)


def _create(title: str = "Retried") -> dict[str, Any]:
    return {"query": CREATE, "variables": {"title": title}}


async def test_a_retried_create_post_creates_one_post(
    client: httpx.AsyncClient, session: AsyncSession, author: User, token_for: Callable[[User], str]
) -> None:
    token = token_for(author)
    first = await _post(client, _create(), token)
    again = await _post(client, _create(), token)
    assert first.status_code == again.status_code == 200
    assert first.json()["data"]["createPost"]["__typename"] == "PostPayload"
    assert again.content == first.content  # the same answer, byte for byte
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert await _posts(session) == 1
    # Another key is another request.
    other = await _post(client, _create(), token, key="key-2")
    assert (
        other.json()["data"]["createPost"]["post"]["id"] != first.json()["data"]["createPost"]["post"]["id"]
    )
    assert await _posts(session) == 2


async def test_the_same_key_with_another_request_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, author: User, token_for: Callable[[User], str]
) -> None:
    token = token_for(author)
    await _post(client, _create("First"), token)
    refused = await _post(client, _create("Second"), token)
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert "another request" in error["message"]
    assert await _posts(session) == 1


async def test_keys_are_per_viewer(
    client: httpx.AsyncClient, session: AsyncSession, author: User, token_for: Callable[[User], str]
) -> None:
    other = await make_user(session, username="other", email="other@example.com")
    mine = await _post(client, _create(), token_for(author))
    theirs = await _post(client, _create(), token_for(other))
    assert "idempotent-replayed" not in theirs.headers
    assert (
        mine.json()["data"]["createPost"]["post"]["id"] != theirs.json()["data"]["createPost"]["post"]["id"]
    )
    assert await _posts(session) == 2


async def test_a_typed_error_is_kept_like_any_answer(
    client: httpx.AsyncClient, session: AsyncSession, author: User, token_for: Callable[[User], str]
) -> None:
    token = token_for(author)
    first = await _post(client, _create("   "), token)
    assert first.json()["data"]["createPost"]["__typename"] == "ValidationError"
    again = await _post(client, _create("   "), token)
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"


async def test_requests_sent_together_with_one_key_write_once(
    client: httpx.AsyncClient, session: AsyncSession, author: User, token_for: Callable[[User], str]
) -> None:
    """While the first runs, the others are told it runs (409); none writes a second post."""
    token = token_for(author)
    answers = await asyncio.gather(*(_post(client, _create(), token) for _ in range(6)))
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {200, 409} and statuses[0] == 200, statuses
    bodies = {answer.content for answer in answers if answer.status_code == 200}
    assert len(bodies) == 1  # the first answer, given to whoever got an answer
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_IN_USE"
    assert await _posts(session) == 1


async def test_a_batch_is_answered_again_operation_by_operation(
    client: httpx.AsyncClient, session: AsyncSession, author: User, token_for: Callable[[User], str]
) -> None:
    token = token_for(author)
    batch = [_create("One"), _create("Two")]
    first = await _post(client, batch, token)
    again = await _post(client, batch, token)
    assert [item["data"]["createPost"]["post"]["title"] for item in first.json()] == ["One", "Two"]
    assert again.content == first.content
    assert await _posts(session) == 2


async def test_a_kept_answer_outlives_the_app_and_ends_with_the_retention(
    app_with: Callable[..., Any], session: AsyncSession, author: User, token_for: Callable[[User], str]
) -> None:
    """A second app on the same database (another process, or a restart) knows the key; with
    no retention, a key is free again at once."""
    token = token_for(author)
    async with app_with() as first_app:
        first = await _post(first_app, _create(), token)
    async with app_with() as second_app:
        again = await _post(second_app, _create(), token)
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert await _posts(session) == 1
    async with app_with(idempotency_retention_seconds=0) as forgetful:
        await asyncio.sleep(0.01)
        ran_again = await _post(forgetful, _create(), token)
    assert "idempotent-replayed" not in ran_again.headers
    assert await _posts(session) == 2


@pytest.mark.parametrize(
    ("key", "token", "code"),
    [
        ("x" * 256, True, "BAD_IDEMPOTENCY_KEY"),
        ("has space", True, "BAD_IDEMPOTENCY_KEY"),
        ("key-1", False, "IDEMPOTENCY_KEY_NEEDS_VIEWER"),
    ],
    ids=["too long", "a space", "no viewer"],
)
async def test_a_key_that_cannot_be_kept_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, author: User, token_for: Callable[[User], str],
    key: str, token: bool, code: str,
) -> None:  # fmt: skip
    refused = await _post(client, _create(), token_for(author) if token else None, key=key)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["code"] == code
    assert await _posts(session) == 0


async def test_a_query_ignores_the_key(
    client: httpx.AsyncClient, author: User, token_for: Callable[[User], str]
) -> None:
    """Reads are safe to repeat: a key on a query (some clients send one on everything) changes nothing."""
    for _ in range(2):
        answer = await _post(client, {"query": "{ me { username } }"}, token_for(author))
        assert answer.json() == {"data": {"me": {"username": "retrier"}}}
        assert "idempotent-replayed" not in answer.headers


@pytest.mark.one_path
async def test_one_key_across_http_websocket_and_sse(database_url: str, tmp_path: Path) -> None:
    """Sent over HTTP, retried over WebSocket (the key in `extensions`) and over SSE (the header):
    one post, and the same answer each way."""
    server = Server(database_url, log_path=tmp_path / "uvicorn.log")
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            account = await _post(
                client,
                {
                    "query": REGISTER,
                    "variables": {
                        "input": {"username": "ws", "email": "ws@example.com", "password": "x" * 12}
                    },
                },
                None,
                key=None,
            )
            token = account.json()["data"]["register"]["accessToken"]
            first = (await _post(client, _create(), token, key="everywhere")).json()
            async with GraphQLWS(server.url, token=token) as ws:
                await ws.acknowledged()
                payload = {**_create(), "extensions": {"idempotencyKey": "everywhere"}}
                await ws.send({"id": "1", "type": "subscribe", "payload": payload})
                over_ws = await ws.receive()
                assert over_ws["type"] == "next", over_ws
                changed = {**payload, "variables": {"title": "Else"}}
                await ws.send({"id": "2", "type": "subscribe", "payload": changed})
                refused = await ws.receive()
                while refused["id"] != "2":  # the first one's `complete`
                    refused = await ws.receive()
            headers = {"Idempotency-Key": "everywhere"}
            async with sse.distinct(
                client, CREATE, {"title": "Retried"}, token=token, headers=headers
            ) as events:
                over_sse = await events.next_data()
            count = await client.post(
                "/graphql",
                json={"query": "{ me { posts { totalCount } } }"},
                headers={"Authorization": f"Bearer {token}"},
            )
    finally:
        server.stop()
    assert over_ws["payload"] == first
    assert (
        refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    )
    assert over_sse == first
    assert count.json()["data"]["me"]["posts"]["totalCount"] == 1


async def test_expired_keys_of_everyone_are_dropped_now_and_then(
    app: Starlette, session: AsyncSession, author: User
) -> None:
    """A claim past PURGE_EVERY_SECONDS since the last one drops every viewer's expired keys
    (not only the claimer's), so the table holds about a retention's worth of answers."""
    other = await make_user(session, username="quiet", email="quiet@example.com")
    store: IdempotencyKeys = app.state.services.idempotency
    await store.claim(other.id, "old", "f")
    forgetful = IdempotencyKeys(app.state.services.sessionmaker, timedelta(0), store.write_turns)
    await asyncio.sleep(0.01)
    assert isinstance(await forgetful.claim(author.id, "new", "f"), Claimed)
    await session.rollback()
    left = (await session.execute(select(keys.c.user_id, keys.c.key))).all()
    assert [tuple(row) for row in left] == [(author.id, "new")]


@pytest.mark.one_path  # counts the compiled path's statements
async def test_a_claim_and_a_kept_answer_are_one_statement_each(
    app: Starlette, client: httpx.AsyncClient, statements: StatementCounter, author: User,
    token_for: Callable[[User], str], engine_name: str,
) -> None:  # fmt: skip
    """On PostgreSQL and SQLite the key is claimed and the answer kept on the compiled path's
    own connections: one statement each beside the mutation's, none through the ORM session."""
    through_orm: list[str] = []

    def sent_by_orm(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        through_orm.append(statement)

    token = token_for(author)
    await _post(client, _create("Warm"), token, key="warm")  # the minute's purge goes first
    event.listen(app.state.engine.sync_engine, "before_cursor_execute", sent_by_orm)
    try:
        with statements.count() as keyed:
            await _post(client, _create("Keyed"), token, key="counted")
        with statements.count() as plain:
            await _post(client, _create("Plain"), token, key=None)
    finally:
        event.remove(app.state.engine.sync_engine, "before_cursor_execute", sent_by_orm)
    claims = [sql for sql in keyed.statements if "idempotency_keys" in sql]
    if engine_name not in ("postgresql", "sqlite"):  # MariaDB: the ORM session claims and keeps
        assert any("idempotency_keys" in sql for sql in through_orm)
        return
    assert len(claims) == 2 and claims[0].startswith("INSERT") and claims[1].startswith("UPDATE"), claims
    assert len(keyed.statements) == len(plain.statements) + 2
    assert not any("idempotency_keys" in sql for sql in through_orm)
