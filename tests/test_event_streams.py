"""Durable, resumable event streams and the one read per event that answers every subscriber.

In process: how many statements an event costs. Against real uvicorn processes (the broker as the
machines run it: Redis Streams for PostgreSQL and MariaDB, the database file for SQLite): resuming
from a cursor, its typed errors, and a publisher killed right after its commit.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import orjson
import pytest
from asgi_lifespan import LifespanManager
from graphql import GraphQLField, GraphQLNonNull, GraphQLObjectType, get_named_type
from starlette.applications import Starlette

from db.events import Event
from db.models import User
from db.session import RequestDb
from db.visibility import Viewer
from schema.admission.admission import Admitted, Request
from schema.execution.answers import Answer
from schema.realtime.multiplex import Group
from schema.realtime.streams import encode_cursor
from schema.relay import to_global_id
from server import create_app
from settings import Settings, async_database_url
from tests.api import CREATE_POST, UPDATE_POST
from tests.factories import make_note, make_post, make_task, make_user
from tests.servers import Server
from tests.test_subscriptions import account, call
from tests.ws import GraphQLWS

POST_CHANGED = """subscription ($after: String) {
  postChanged(after: $after) { kind cursor post { title } } }"""


# One read per event, in process.


async def subscribe(app: Starlette, query: str, token: str | None = None) -> AsyncIterator[Answer]:
    authorization = f"Bearer {token}" if token else None
    request = Request(query=query, transport="websocket", authorization=authorization)
    admitted = await app.state.admission.admit(request)
    assert isinstance(admitted, Admitted), admitted
    stream: AsyncIterator[Answer] = await app.state.operations.subscribe(admitted)
    return stream


async def publish(app: Starlette, event: Event) -> None:
    """As a mutation does: the event staged in a write's transaction."""
    services = app.state.services
    db = RequestDb(services.sessionmaker)
    async with db.write() as session:
        await services.broker.stage(session, event, db.after_commit)
    await db.close()


def reads_of(app: Starlette) -> list[str]:
    """Every statement the compiled reads send from now on."""
    sent: list[str] = []
    app.state.reads.listeners.append(lambda sql, parameters: sent.append(sql))
    return sent


@pytest.mark.parametrize("topic", ["task", "note"])
@pytest.mark.parametrize("subscribers", [1, 12])
async def test_one_read_per_event_and_viewer_kind_however_many_subscribe(
    app: Starlette, token_for: Callable[[User], str], subscribers: int, topic: str
) -> None:
    """`subscribers` users and a superuser follow taskChanged (or noteChanged, whose rule is a
    subquery on the note's task): the users' answers depend on who asks (each sees only their own
    tasks and their notes), so their group reads once with every id bound; the superusers' group
    reads once. Two statements for the event, whatever `subscribers` is, and nobody else hears it."""
    if app.state.operations.hub is None:
        pytest.skip("COMPILED_READS=0: the resolvers answer each subscriber (schema/realtime/streams.py)")
    async with app.state.services.sessionmaker() as session:
        users = [await make_user(session) for _ in range(subscribers)]
        root = await make_user(session, is_superuser=True)
        task = await make_task(session, users[0], title="Shared")
        note = await make_note(session, task)
    field = f"{topic}Changed"
    query = {
        "task": "subscription { taskChanged { kind task { title owner { username } } } }",
        "note": "subscription { noteChanged { kind note { task { title owner { username } } } } }",
    }[topic]
    streams = [await subscribe(app, query, token_for(user)) for user in [*users, root]]
    pending = [asyncio.ensure_future(anext(stream)) for stream in streams]
    await asyncio.sleep(0.2)  # every subscriber is waiting in its group now
    sent = reads_of(app)

    if topic == "task":
        await publish(app, Event("task", "updated", task.id, users[0].id))
    else:
        await publish(app, Event("note", "updated", note.id, parent_id=task.id))
    owner, superuser = await asyncio.wait_for(asyncio.gather(pending[0], pending[-1]), 10)
    await asyncio.sleep(0.3)  # long enough for a wrong answer to reach the others
    others_answered = [future.done() for future in pending[1:-1]]
    for future, stream in zip(pending, streams, strict=True):
        future.cancel()
        with suppress(asyncio.CancelledError, StopAsyncIteration):
            await future
        await stream.aclose()  # type: ignore[attr-defined]

    shown = {"title": "Shared", "owner": {"username": users[0].username}}
    expected = (
        {"kind": "UPDATED", "task": shown}
        if topic == "task"
        else {"kind": "UPDATED", "note": {"task": shown}}
    )
    assert orjson.loads(owner.body) == {"data": {field: expected}}
    assert orjson.loads(superuser.body) == {"data": {field: expected}}
    assert not any(others_answered)  # the other users may not see the task
    assert len(sent) == 2, sent


async def test_without_viewer_lists_the_resolvers_answer_viewer_dependent_documents(
    app: Starlette, token_for: Callable[[User], str]
) -> None:
    """MariaDB before 10.6 has no JSON_TABLE to bind the viewers' ids as rows: a document whose
    answer depends on the viewer is then answered per subscriber by the resolvers, not refused."""
    if app.state.operations.hub is None:
        pytest.skip("COMPILED_READS=0: no compiled group")
    app.state.reads.viewer_lists = False  # as MariaDBReads.start() decides on 10.5
    async with app.state.services.sessionmaker() as session:
        owner = await make_user(session)
        task = await make_task(session, owner, title="Mine")
    query = "subscription { taskChanged { kind task { title } } }"
    request = Request(query=query, transport="websocket", authorization=f"Bearer {token_for(owner)}")
    admitted = await app.state.admission.admit(request)
    assert isinstance(admitted, Admitted)
    assert await app.state.operations.hub.join(admitted) is None  # left to the resolvers

    stream = await subscribe(app, query, token_for(owner))
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.2)
    await publish(app, Event("task", "updated", task.id, owner.id))
    answer = await asyncio.wait_for(pending, 10)
    await stream.aclose()  # type: ignore[attr-defined]

    assert orjson.loads(answer.body) == {
        "data": {"taskChanged": {"kind": "UPDATED", "task": {"title": "Mine"}}}
    }


async def test_a_document_that_does_not_depend_on_the_viewer_is_read_once_per_kind(
    app: Starlette, token_for: Callable[[User], str]
) -> None:
    if app.state.operations.hub is None:
        pytest.skip("COMPILED_READS=0: the resolvers answer each subscriber (schema/realtime/streams.py)")
    async with app.state.services.sessionmaker() as session:
        users = [await make_user(session) for _ in range(5)]
    query = "subscription { postCreated { title author { username } } }"
    streams = [await subscribe(app, query, token_for(user)) for user in users]
    streams += [await subscribe(app, query) for _ in range(5)]  # anonymous
    pending = [asyncio.ensure_future(anext(stream)) for stream in streams]
    await asyncio.sleep(0.2)
    sent = reads_of(app)
    async with app.state.services.sessionmaker() as session:
        post = await make_post(session, users[0], title="Hello")

    await publish(app, Event("post", "created", post.id, users[0].id))
    answers = await asyncio.wait_for(asyncio.gather(*pending), 10)
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]

    bodies = {answer.body for answer in answers}
    assert [orjson.loads(body) for body in bodies] == [
        {"data": {"postCreated": {"title": "Hello", "author": {"username": users[0].username}}}}
    ]
    assert len(sent) == 2, sent  # the users' group and the anonymous group


async def test_resuming_needs_a_log(postgres_url: str) -> None:
    """PostgreSQL without EVENT_BROKER_URL delivers in process only: `after` is refused, typed."""
    settings = Settings(app_env="test", secret_key="s" * 40, database_url=async_database_url(postgres_url))
    app = create_app(settings)
    async with LifespanManager(app):
        cursor = encode_cursor("1-0")  # well formed, as another server's would be
        stream = await subscribe(app, f'subscription {{ postChanged(after: "{cursor}") {{ kind }} }}')
        answer = await asyncio.wait_for(anext(stream), 10)
    error = orjson.loads(answer.body)["errors"][0]
    assert error["extensions"]["code"] == "RESUME_UNAVAILABLE"
    assert "EVENT_BROKER_URL" in error["message"]


# Resuming from a cursor, against real processes.


async def next_change(ws: GraphQLWS) -> dict[str, Any]:
    change: dict[str, Any] = (await ws.next_data())["postChanged"]
    return change


async def test_a_resumed_subscription_gets_every_missed_event_once_in_order_then_live(
    server: Server,
) -> None:
    ada = await account(server, "ada")
    async with GraphQLWS(server.url) as ws:
        await ws.acknowledged()
        await ws.subscribe(POST_CHANGED)
        await asyncio.sleep(0.3)
        await call(server, CREATE_POST, ada, input={"title": "p0", "content": "x"})
        seen = await next_change(ws)
    first = await call(server, CREATE_POST, ada, input={"title": "p1", "content": "x"})
    await call(server, CREATE_POST, ada, input={"title": "p2", "content": "x"})
    await call(server, UPDATE_POST, ada, id=first["post"]["id"], input={"title": "p1 again"})

    async with GraphQLWS(server.url) as ws:
        await ws.acknowledged()
        await ws.subscribe(POST_CHANGED, {"after": seen["cursor"]})
        missed = [await next_change(ws) for _ in range(3)]
        await call(server, CREATE_POST, ada, input={"title": "p3", "content": "x"})
        live = await next_change(ws)
        quiet = await ws.nothing_within(1.0)

    assert seen["kind"] == "CREATED" and seen["post"] == {"title": "p0"}
    # Each event names its row; the row is read as it is when the event is delivered.
    assert [(c["kind"], c["post"]["title"]) for c in missed] == [
        ("CREATED", "p1 again"),
        ("CREATED", "p2"),
        ("UPDATED", "p1 again"),
    ]
    assert (live["kind"], live["post"]["title"]) == ("CREATED", "p3")
    assert quiet  # nothing twice
    cursors = [seen["cursor"], *(c["cursor"] for c in missed), live["cursor"]]
    assert len(set(cursors)) == 5


async def error_of(ws: GraphQLWS, variables: dict[str, Any]) -> dict[str, Any]:
    operation = await ws.subscribe(POST_CHANGED, variables)
    message = await ws.receive()
    assert message["id"] == operation and message["type"] == "error", message
    [error] = message["payload"]
    return dict(error)


async def test_a_bad_or_expired_cursor_is_a_typed_error(database_url: str, tmp_path: Path) -> None:
    server = Server(database_url, env={"EVENT_RETENTION_SECONDS": "1"}, log_path=tmp_path / "u.log")
    server.start()
    try:
        ada = await account(server, "ada")
        async with GraphQLWS(server.url) as ws:
            await ws.acknowledged()
            await ws.subscribe(POST_CHANGED)
            await asyncio.sleep(0.3)
            await call(server, CREATE_POST, ada, input={"title": "soon gone", "content": "x"})
            cursor = (await next_change(ws))["cursor"]
            malformed = await error_of(ws, {"after": "not a cursor"})
            await asyncio.sleep(1.5)
            expired = await error_of(ws, {"after": cursor})
    finally:
        server.stop()

    assert malformed["extensions"]["code"] == "BAD_USER_INPUT"
    assert "after" in malformed["message"]
    assert expired["extensions"]["code"] == "CURSOR_EXPIRED"


@pytest.mark.one_path
async def test_events_committed_by_a_killed_process_reach_resumed_subscribers_exactly_once(
    shared_url: str, tmp_path: Path
) -> None:
    """The publisher commits three posts and is killed (SIGKILL) at once. On PostgreSQL and
    MariaDB its broker is unreachable, so nothing it committed left through it: the outbox rows
    are relayed by the other process. A subscriber resumes on the other process, and again on the
    restarted publisher: the three events, in order, once each, then live ones."""
    unreachable = {} if shared_url.startswith("sqlite") else {"EVENT_BROKER_URL": "redis://127.0.0.1:9/0"}
    publisher = Server(shared_url, env=unreachable, log_path=tmp_path / "publisher.log")
    other = Server(shared_url, log_path=tmp_path / "other.log")
    publisher.start()
    other.start()
    try:
        ada = await account(other, "ada")
        async with GraphQLWS(other.url) as ws:
            await ws.acknowledged()
            await ws.subscribe(POST_CHANGED)
            await asyncio.sleep(0.3)
            await call(other, CREATE_POST, ada, input={"title": "before", "content": "x"})
            cursor = (await next_change(ws))["cursor"]
        for title in ("k1", "k2", "k3"):
            await call(publisher, CREATE_POST, ada, input={"title": title, "content": "x"})
        publisher.stop(signal.SIGKILL)

        async with GraphQLWS(other.url) as ws:
            await ws.acknowledged()
            await ws.subscribe(POST_CHANGED, {"after": cursor})
            on_other = [(await next_change(ws))["post"]["title"] for _ in range(3)]
            other_quiet = await ws.nothing_within(1.0)

        publisher.env = {}
        publisher.start()
        async with GraphQLWS(publisher.url) as ws:
            await ws.acknowledged()
            await ws.subscribe(POST_CHANGED, {"after": cursor})
            on_restarted = [(await next_change(ws))["post"]["title"] for _ in range(3)]
            await call(other, CREATE_POST, ada, input={"title": "live", "content": "x"})
            live = (await next_change(ws))["post"]["title"]
            restarted_quiet = await ws.nothing_within(1.0)
    finally:
        publisher.stop()
        other.stop()

    assert on_other == on_restarted == ["k1", "k2", "k3"]
    assert live == "live"
    assert other_quiet and restarted_quiet


def full_document(field: GraphQLField, name: str) -> str:
    """`subscription { name(required: …) { every leaf of the change, and of its row } }`."""
    arguments = ", ".join(
        f'{argument}: "{to_global_id("Task" if "task" in argument.lower() else "Post", 1)}"'
        for argument, definition in field.args.items()
        if isinstance(definition.type, GraphQLNonNull)
    )
    return f"subscription {{ {name}{f'({arguments})' if arguments else ''} {_leaves(field.type, 2)} }}"


def _leaves(type_: Any, depth: int) -> str:
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType):
        return ""
    picked = []
    for name, field in named.fields.items():
        inner = get_named_type(field.type)
        if any(isinstance(arg.type, GraphQLNonNull) for arg in field.args.values()):
            continue
        if not isinstance(inner, GraphQLObjectType):
            picked.append(name)
        elif depth > 0 and "edges" not in inner.fields:
            picked.append(f"{name} {_leaves(field.type, depth - 1)}")
    return "{ " + " ".join(picked) + " }"


async def test_every_declared_subscription_is_answered_by_the_compiled_group(app: Starlette) -> None:
    """A subscription whose whole document would fall back to one resolver run per subscriber
    fails here (tests/test_coverage.py checks the field is declared; this, that it compiles)."""
    hub = app.state.operations.hub
    if hub is None:
        pytest.skip("COMPILED_READS=0: no compiled group")
    schema = app.state.schema._schema
    refused = []
    for name, field in schema.subscription_type.fields.items():
        document = full_document(field, name)
        admitted = await app.state.admission.admit(Request(query=document, transport="websocket"))
        assert isinstance(admitted, Admitted), (document, admitted)
        shape = hub.shape(admitted.prepared)
        if shape is None or Group(hub, admitted.prepared, shape, "anonymous", {}).plans(Viewer()) is None:
            refused.append(document)
    assert refused == []
