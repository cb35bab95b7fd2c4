"""Subscriptions over real WebSockets against real uvicorn processes, and the broker beneath them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import redis.asyncio as redis
from asgi_lifespan import LifespanManager
from sqlalchemy import Connection, event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from starlette.applications import Starlette

from db.events import Broker, Event, RedisStreams, SubscriberTooSlow
from db.models import Task, User, table_of
from db.session import RequestDb
from db.visibility import Viewer, can_see_task, may_see_owned_by
from schema.admission.admission import Admitted, Request
from schema.admission.tokens import ALGORITHM
from server import create_app
from settings import Settings, async_database_url
from tests.api import (
    ADD_NOTE,
    CREATE_POST,
    CREATE_TASK,
    DELETE_NOTE,
    DELETE_TASK,
    LOGIN,
    REGISTER,
    UPDATE_NOTE,
    UPDATE_TASK,
)
from tests.conftest import ROOT
from tests.factories import make_post, make_task, make_user
from tests.servers import TEST_ENV, Server, database_env
from tests.ws import LEGACY_WS, TRANSPORT_WS, GraphQLWS, close_code

tasks = table_of(Task)

POST_CREATED = (
    "subscription ($author: ID) { postCreated(authorId: $author) { id title author { username } } }"
)
TASK_CHANGED = "subscription { taskChanged { kind id task { title status owner { username } } } }"
NOTE_CHANGED = "subscription { noteChanged { kind id note { body } } }"
NOTE_ADDED = "subscription ($task: ID!) { noteAdded(taskId: $task) { body task { title } } }"


async def call(server: Server, document: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post(
            "/graphql", json={"query": document, "variables": variables}, headers=headers
        )
    body = response.json()
    assert "errors" not in body, body
    [payload] = body["data"].values()
    return payload


async def account(server: Server, username: str) -> str:
    payload = await call(
        server,
        REGISTER,
        input={"username": username, "email": f"{username}@example.com", "password": "x" * 12},
    )
    return str(payload["accessToken"])


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_post_created_over_both_protocols(server: Server, protocol: str) -> None:
    ada = await account(server, "ada")
    async with GraphQLWS(server.url, protocol=protocol) as ws:
        await ws.acknowledged()
        await ws.subscribe(POST_CREATED)
        await asyncio.sleep(0.3)  # the subscription is registered once the server ran its resolver

        created = await call(server, CREATE_POST, ada, input={"title": "Live", "content": "now"})
        data = await ws.next_data()

    assert data["postCreated"] == {
        "id": created["post"]["id"],
        "title": "Live",
        "author": {"username": "ada"},
    }


async def test_author_filter_and_refused_writes_emit_nothing(server: Server) -> None:
    ada, bob = await account(server, "ada"), await account(server, "bob")
    me = await call(server, "{ me { id } }", ada)
    async with GraphQLWS(server.url) as ws:
        await ws.acknowledged()
        await ws.subscribe(POST_CREATED, {"author": me["id"]})
        await asyncio.sleep(0.3)
        await call(server, CREATE_POST, bob, input={"title": "Not ada's", "content": "x"})
        refused = await call(server, CREATE_POST, ada, input={"title": "", "content": "x"})  # nothing written
        await call(server, CREATE_POST, ada, input={"title": "Ada's", "content": "x"})

        assert refused["__typename"] == "ValidationError"
        assert (await ws.next_data())["postCreated"]["title"] == "Ada's"
        assert await ws.nothing_within(0.5)


async def test_tasks_reach_only_their_owner_and_superusers(server: Server, database_url: str) -> None:
    ada, bob = await account(server, "ada"), await account(server, "bob")
    root = await _superuser_token(server, database_url)
    async with (
        GraphQLWS(server.url, token=ada) as ada_ws,
        GraphQLWS(server.url, token=bob) as bob_ws,
        GraphQLWS(server.url, token=root) as root_ws,
    ):
        for ws in (ada_ws, bob_ws, root_ws):
            await ws.acknowledged()
            await ws.subscribe(TASK_CHANGED)
        await asyncio.sleep(0.3)

        task = (await call(server, CREATE_TASK, ada, input={"title": "Private"}))["task"]
        await call(server, UPDATE_TASK, ada, id=task["id"], input={"status": "DONE"})
        await call(server, DELETE_TASK, ada, id=task["id"])
        await call(server, CREATE_TASK, bob, input={"title": "Bob's"})

        for ws in (ada_ws, root_ws):
            changes = [(await ws.next_data())["taskChanged"] for _ in range(3)]
            assert [c["kind"] for c in changes] == ["CREATED", "UPDATED", "DELETED"]
            assert changes[1]["task"] == {"title": "Private", "status": "DONE", "owner": {"username": "ada"}}
            assert changes[2] == {"kind": "DELETED", "id": task["id"], "task": None}
        assert (await bob_ws.next_data())["taskChanged"]["task"]["title"] == "Bob's"  # and none of ada's
        assert (await root_ws.next_data())["taskChanged"]["task"]["title"] == "Bob's"
        assert await ada_ws.nothing_within(0.3)


async def test_note_changes_reach_only_the_task_owner(server: Server) -> None:
    """noteChanged hears a note added, changed and deleted, by its task's owner only."""
    ada, bob = await account(server, "ada"), await account(server, "bob")
    task = (await call(server, CREATE_TASK, ada, input={"title": "Chores"}))["task"]
    async with GraphQLWS(server.url, token=ada) as ada_ws, GraphQLWS(server.url, token=bob) as bob_ws:
        for ws in (ada_ws, bob_ws):
            await ws.acknowledged()
            await ws.subscribe(NOTE_CHANGED)
        await asyncio.sleep(0.3)

        note = (await call(server, ADD_NOTE, ada, taskId=task["id"], input={"body": "Milk"}))["note"]
        await call(server, UPDATE_NOTE, ada, id=note["id"], input={"body": "Oat milk"})
        await call(server, DELETE_NOTE, ada, id=note["id"])

        changes = [(await ada_ws.next_data())["noteChanged"] for _ in range(3)]
        assert changes == [
            {"kind": "CREATED", "id": note["id"], "note": {"body": "Milk"}},
            {"kind": "UPDATED", "id": note["id"], "note": {"body": "Oat milk"}},
            {"kind": "DELETED", "id": note["id"], "note": None},
        ]
        assert await bob_ws.nothing_within(0.5)


async def test_note_added_needs_a_visible_task(server: Server) -> None:
    ada, bob = await account(server, "ada"), await account(server, "bob")
    task = (await call(server, CREATE_TASK, ada, input={"title": "Chores"}))["task"]
    async with GraphQLWS(server.url, token=ada) as ada_ws, GraphQLWS(server.url, token=bob) as bob_ws:
        await ada_ws.acknowledged()
        await bob_ws.acknowledged()
        await ada_ws.subscribe(NOTE_ADDED, {"task": task["id"]})
        await bob_ws.subscribe(NOTE_ADDED, {"task": task["id"]})
        refused = await bob_ws.receive()
        await asyncio.sleep(0.3)
        await call(server, ADD_NOTE, ada, taskId=task["id"], input={"body": "milk"})

        assert (await ada_ws.next_data())["noteAdded"] == {"body": "milk", "task": {"title": "Chores"}}
    assert refused["type"] in ("error", "next")
    assert "no task with that ID" in str(refused["payload"])


@pytest.mark.one_path
@pytest.mark.parametrize("token", ["not-a-token", "expired"])
async def test_a_bad_token_closes_the_connection(server: Server, token: str) -> None:
    if token == "expired":
        token = _expired_token(await account(server, "ada"))
    async with GraphQLWS(server.url, token=token) as ws:
        assert await close_code(ws) == 4403


@pytest.mark.one_path
async def test_legacy_protocol_reports_a_bad_token(server: Server) -> None:
    async with GraphQLWS(server.url, token="not-a-token", protocol=LEGACY_WS) as ws:
        message = await ws.receive()
    assert message["type"] == "connection_error"
    assert message["payload"]["reason"] == "TOKEN_INVALID"


async def test_private_subscriptions_need_a_login(server: Server) -> None:
    async with GraphQLWS(server.url) as ws:
        await ws.acknowledged()
        await ws.subscribe(TASK_CHANGED)
        message = await ws.receive()
    assert message["type"] in ("error", "next")
    assert "UNAUTHENTICATED" in str(message["payload"])


async def test_two_hundred_subscribers_receive_every_event(server: Server) -> None:
    ada = await account(server, "ada")
    clients = [GraphQLWS(server.url) for _ in range(200)]
    for client in clients:
        await client.__aenter__()
    try:
        for client in clients:
            await client.acknowledged()
            await client.subscribe(POST_CREATED)
        await asyncio.sleep(1)
        for i in range(5):
            await call(server, CREATE_POST, ada, input={"title": f"post {i}", "content": "x"})

        async def titles(client: GraphQLWS) -> list[str]:
            return [(await client.next_data(seconds=30))["postCreated"]["title"] for _ in range(5)]

        received = await asyncio.wait_for(asyncio.gather(*(titles(client) for client in clients)), timeout=60)
    finally:
        for client in clients:
            await client.__aexit__()

    assert received == [[f"post {i}" for i in range(5)]] * 200


async def test_sigterm_completes_open_subscriptions(server: Server) -> None:
    async with GraphQLWS(server.url) as ws:
        await ws.acknowledged()
        operation = await ws.subscribe(POST_CREATED)
        await asyncio.sleep(0.3)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)

        message = await ws.receive()
        code = await close_code(ws)

    assert message == {"id": operation, "type": "complete"}
    assert code in (1000, 1001, 1012)


# Several processes: PostgreSQL and MariaDB through Redis Streams, SQLite through its file.


@pytest.fixture
async def pg_app(postgres_url: str, redis_url: str) -> AsyncIterator[Starlette]:
    settings = Settings(
        app_env="test",
        secret_key="s" * 40,
        database_url=async_database_url(postgres_url),
        event_broker_url=redis_url,
    )
    app = create_app(settings)
    async with LifespanManager(app):
        yield app


@pytest.mark.one_path
async def test_an_event_reaches_a_subscriber_of_another_process(shared_url: str, tmp_path: Path) -> None:
    first, second = (
        Server(shared_url, log_path=tmp_path / "a.log"),
        Server(shared_url, log_path=tmp_path / "b.log"),
    )
    first.start()
    second.start()
    try:
        ada = await account(first, "ada")
        async with GraphQLWS(second.url) as ws:
            await ws.acknowledged()
            await ws.subscribe(POST_CREATED)
            await asyncio.sleep(0.3)
            await call(first, CREATE_POST, ada, input={"title": "From A", "content": "to B"})  # served by A
            data = await ws.next_data()
    finally:
        first.stop()
        second.stop()
    assert data["postCreated"]["title"] == "From A"


@pytest.mark.one_path
async def test_two_workers_deliver_to_every_subscriber(shared_url: str, tmp_path: Path) -> None:
    server = Server(shared_url, workers=2, log_path=tmp_path / "workers.log")
    server.start()
    try:
        ada = await account(server, "ada")
        clients = [GraphQLWS(server.url) for _ in range(10)]  # spread over both workers
        for client in clients:
            await client.__aenter__()
            await client.acknowledged()
            await client.subscribe(POST_CREATED)
        await asyncio.sleep(1)
        for i in range(4):  # each mutation served by either worker
            await call(server, CREATE_POST, ada, input={"title": f"w{i}", "content": "x"})
        received = [[(await c.next_data())["postCreated"]["title"] for _ in range(4)] for c in clients]
        for client in clients:
            await client.__aexit__()
    finally:
        server.stop()
    assert all(sorted(titles) == ["w0", "w1", "w2", "w3"] for titles in received)


@pytest.mark.one_path
async def test_the_reader_reconnects_when_its_connection_dies(pg_app: Starlette, redis_url: str) -> None:
    broker = pg_app.state.services.broker
    assert isinstance(broker, RedisStreams)
    reader_id = await broker._reader.client_id()
    admin = redis.Redis.from_url(redis_url)
    try:
        assert await admin.client_kill_filter(_id=reader_id) == 1
    finally:
        await admin.aclose()

    async with broker.subscribe("post") as subscription:
        db = RequestDb(pg_app.state.services.sessionmaker)
        async with db.write() as session:
            await broker.stage(session, Event("post", "created", 7, 1), db.after_commit)
        await db.close()
        event = await asyncio.wait_for(anext(aiter(subscription)), 10)

    assert (event.topic, event.kind, event.id, event.owner_id) == ("post", "created", 7, 1)
    assert event.position is not None


# The broker and the session rules, in process.


async def test_each_subscription_has_its_own_session_and_holds_nothing_between_events(app: Starlette) -> None:
    """Two subscriptions sharing one connection (as on one WebSocket): the resolvers open a session
    for each (per event); the compiled group (schema/realtime/multiplex.py) reads through the
    read connections and opens none. Between events, and after they end, nothing is held."""
    query = "subscription { postCreated { title } }"
    async with app.state.services.sessionmaker() as session:
        author = await make_user(session)
        post = await make_post(session, author, title="t")
    streams = []
    for _ in range(2):
        admitted = await app.state.admission.admit(Request(query=query, transport="websocket"))
        assert isinstance(admitted, Admitted)
        streams.append(await app.state.operations.subscribe(admitted))
    first, second = streams
    pending = [asyncio.ensure_future(anext(first)), asyncio.ensure_future(anext(second))]
    await asyncio.sleep(0.1)  # both are waiting for an event now
    began: list[int] = []

    def record(session: Session, transaction: object, connection: Connection) -> None:
        if connection.engine is app.state.engine.sync_engine:  # not the broker's housekeeping
            began.append(id(session))

    db = RequestDb(app.state.services.sessionmaker)
    async with db.write() as session:
        await app.state.services.broker.stage(
            session, Event("post", "created", post.id, author.id), db.after_commit
        )
    await db.close()
    event.listen(Session, "after_begin", record)
    try:
        results = await asyncio.wait_for(asyncio.gather(*pending), 10)
        waiting = [asyncio.ensure_future(anext(first)), asyncio.ensure_future(anext(second))]
        await asyncio.sleep(0.1)  # answered: both are waiting for the next event
        held_between_events = app.state.engine.pool.checkedout()
    finally:
        event.remove(Session, "after_begin", record)
    for generator, task in zip((first, second), waiting, strict=True):
        task.cancel()
        with suppress(asyncio.CancelledError, StopAsyncIteration):
            await task
        await generator.aclose()

    assert [orjson.loads(result.body) for result in results] == [
        {"data": {"postCreated": {"title": "t"}}}
    ] * 2
    assert len(set(began)) == (2 if app.state.operations.hub is None else 0)
    assert held_between_events == 0
    assert app.state.engine.pool.checkedout() == 0


async def test_a_rolled_back_write_emits_nothing(app: Starlette) -> None:
    broker: Broker = app.state.services.broker
    async with broker.subscribe("post") as subscription:
        db = RequestDb(app.state.services.sessionmaker)

        async def failing_write() -> None:
            async with db.write() as session:
                await broker.stage(session, Event("post", "created", 1, 1), db.after_commit)
                raise RuntimeError("rolled back after staging the event")

        with pytest.raises(RuntimeError, match="rolled back"):
            await failing_write()
        async with db.write() as session:
            await broker.stage(session, Event("post", "created", 2, 1), db.after_commit)
        await db.close()

        event = await asyncio.wait_for(anext(aiter(subscription)), 10)
    assert event.id == 2  # the first one never arrived


async def test_a_slow_subscriber_is_dropped_without_slowing_anyone() -> None:
    broker = Broker(queue_size=3)
    async with broker.subscribe("post") as slow, broker.subscribe("post") as fast:
        received = []
        for i in range(10):
            broker.deliver(Event("post", "created", i, 1))  # never waits
            received.append((await anext(aiter(fast))).id)
        assert received == list(range(10))
        assert slow.overflowed
        kept: list[int] = []

        async def drain() -> None:
            async for event in slow:
                kept.append(event.id)

        with pytest.raises(SubscriberTooSlow, match="subscriber too slow"):
            await drain()
        assert kept == [0, 1, 2]


@pytest.mark.parametrize(
    ("viewer", "owner"),
    [(Viewer(1), 1), (Viewer(1), 2), (Viewer(None), 1), (Viewer(3, is_superuser=True), 1)],
)
async def test_the_deleted_row_rule_agrees_with_the_sql_rule(
    session: AsyncSession, viewer: Viewer, owner: int
) -> None:
    """may_see_owned_by (for an event whose row is gone) is can_see_task, evaluated in Python."""
    for _ in range(2):
        await make_user(session)
    task = await make_task(session, await session.get_one(User, owner))
    rule = can_see_task(viewer)

    visible = await session.execute(
        select(tasks.c.id).where(tasks.c.id == task.id, *rule.clauses()), dict(rule.params)
    )

    assert (visible.first() is not None) == may_see_owned_by(viewer, owner)


def _expired_token(valid: str) -> str:
    claims = jwt.decode(valid, options={"verify_signature": False})
    return jwt.encode({**claims, "exp": 1}, TEST_ENV["SECRET_KEY"], algorithm=ALGORITHM)


async def _superuser_token(server: Server, database_url: str) -> str:
    """A superuser made by the seed command, logged in through the API."""
    env = {**TEST_ENV, **database_env(database_url), "PATH": "/usr/bin:/bin"}
    env |= {"FIRST_SUPERUSER_EMAIL": "root@example.com", "FIRST_SUPERUSER_PASSWORD": "root-password"}
    command = [sys.executable, "-m", "db.seed"]
    await asyncio.to_thread(subprocess.run, command, cwd=ROOT, env=env, check=True, capture_output=True)
    payload = await call(server, LOGIN, input={"usernameOrEmail": "root", "password": "root-password"})
    return str(payload["accessToken"])
