"""The security review's points, each with its test (the entrance table is tests/test_entrances.py).

Each of these failed on the main branch before the admission step (schema/admission/) and the
fixes around it landed; the docstrings say what used to happen.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from starlette.applications import Starlette

from db.engine import DEADLINE
from db.errors import is_statement_timeout
from db.models import Post, TokenRevocation
from db.seed import Shape, generate
from settings import Settings
from tests.api import (
    ADD_NOTE,
    CHANGE_PASSWORD,
    CREATE_POST,
    CREATE_TASK,
    DELETE_ME,
    LOGIN,
    LOGOUT,
    REFRESH,
    mutate,
    register,
)
from tests.conftest import ROOT, GraphQLClient, StatementCounter
from tests.factories import make_post, make_user
from tests.servers import TEST_ENV, Server, database_env
from tests.ws import TRANSPORT_WS, GraphQLWS, SilentSocket, close_code

MODERN = {"Accept": "application/graphql-response+json"}


def pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).split(b":")[1])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# 1. Ids are never reused, on any engine.


async def test_ids_are_never_reused_and_a_deleted_accounts_token_reads_nothing(gql: GraphQLClient) -> None:
    """SQLite reused max(id) + 1 after a delete: a deleted account's token then authenticated the
    next person who registered, and a cached global ID named another object."""
    await register(gql, "first")
    gone = await register(gql, "second", password="analytical engine")  # the newest row
    post = await mutate(gql, CREATE_POST, gone["accessToken"], input={"title": "t", "content": "c"})
    deleted = await mutate(gql, DELETE_ME, gone["accessToken"], input={"password": "analytical engine"})
    assert deleted["__typename"] == "DeleteMeSuccess"

    newcomer = await register(gql, "third")
    newer_post = await mutate(
        gql, CREATE_POST, newcomer["accessToken"], input={"title": "t2", "content": "c"}
    )

    assert pk(newcomer["user"]["id"]) > pk(gone["user"]["id"])
    assert pk(newer_post["post"]["id"]) > pk(post["post"]["id"])
    for body in (
        {"query": "{ me { username } }"},
        {"query": CREATE_POST, "variables": {"input": {"title": "x", "content": "y"}}},
    ):
        refused = await gql.client.post("/graphql", json=body, headers=bearer(gone["accessToken"]))
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["extensions"]["code"] == "TOKEN_REVOKED"


async def test_a_token_naming_a_deleted_user_reads_and_writes_nothing(
    app: Starlette, gql: GraphQLClient
) -> None:
    """Even signed by the server (say, issued before revocations existed), a token whose user is
    gone is nobody: no row of anyone's is read as theirs, every write is refused."""
    first = await register(gql, "first")
    victim = await register(gql, "victim")
    await mutate(gql, CREATE_TASK, victim["accessToken"], input={"title": "private"})
    ghost_id = pk(first["user"]["id"]) + 1000  # no such user, and ids never come back
    ghost, _ = app.state.services.tokens.issue(ghost_id, is_superuser=False)

    read = await gql("{ me { username } tasks { totalCount } }", token=ghost)
    wrote = await mutate(gql, CREATE_POST, ghost, input={"title": "t", "content": "c"})

    assert read["data"] == {"me": None, "tasks": {"totalCount": 0}}
    assert wrote["reason"] == "ACCOUNT_GONE"


# 2. Long-lived connections obey the token.


@pytest.fixture
def sqlite_file(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite file of this test's own, as a URL (for servers started by the test)."""
    path = tmp_path / "served.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def live(sqlite_file: str, tmp_path: Path) -> Iterator[Server]:
    """A uvicorn process on SQLite whose access tokens live two seconds."""
    server = Server(sqlite_file, log_path=tmp_path / "live.log", env={"ACCESS_TOKEN_TTL_SECONDS": "2"})
    server.start()
    yield server
    server.stop()


async def _call(server: Server, document: str, token: str | None = None, **variables: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post(
            "/graphql",
            json={"query": document, "variables": variables},
            headers=bearer(token) if token else {},
        )
    body = response.json()
    assert "errors" not in body, body
    [payload] = body["data"].values()
    return payload


async def _account(server: Server, username: str) -> dict[str, Any]:
    from tests.api import REGISTER

    return await _call(
        server,
        REGISTER,
        input={"username": username, "email": f"{username}@example.com", "password": "x" * 12},
    )


TASKS = "subscription { taskChanged { kind task { title } } }"


@pytest.mark.one_path
async def test_a_socket_ends_when_its_token_expires(live: Server) -> None:
    """A WebSocket authenticated at connection_init kept its rights forever."""
    ada = await _account(live, "ada")
    async with GraphQLWS(live.url, token=ada["accessToken"]) as ws:
        await ws.acknowledged()
        await ws.subscribe(TASKS)
        started = time.monotonic()
        code = await close_code(ws, seconds=10)
    assert code == 4403
    assert 1 <= time.monotonic() - started < 5  # at the token's expiry, not before or long after


@pytest.mark.one_path
async def test_a_token_renewed_on_the_socket_keeps_it_open(sqlite_file: str, tmp_path: Path) -> None:
    server = Server(sqlite_file, log_path=tmp_path / "renew.log", env={"ACCESS_TOKEN_TTL_SECONDS": "3"})
    server.start()
    try:
        ada = await _account(server, "ada")
        async with GraphQLWS(server.url, token=ada["accessToken"]) as ws:
            await ws.acknowledged()
            await ws.subscribe(TASKS)
            await asyncio.sleep(1.5)
            renewed = await _call(server, REFRESH, refreshToken=ada["refreshToken"])
            await ws.send({"type": "ping", "payload": {"authorization": f"Bearer {renewed['accessToken']}"}})
            pong = await ws.receive_any()
            assert pong["type"] == "pong" and pong["payload"]["expiresAt"] > time.time() + 2
            await asyncio.sleep(2)  # past the first token's expiry
            await _call(server, CREATE_TASK, renewed["accessToken"], input={"title": "still here"})
            assert (await ws.next_data())["taskChanged"]["task"] == {"title": "still here"}
            assert await close_code(ws, seconds=10) == 4403  # at the renewed token's expiry
    finally:
        server.stop()


async def test_another_users_token_cannot_renew_a_socket(live: Server) -> None:
    ada, bob = await _account(live, "ada"), await _account(live, "bob")
    async with GraphQLWS(live.url, token=ada["accessToken"]) as ws:
        await ws.acknowledged()
        await ws.send({"type": "ping", "payload": {"authorization": f"Bearer {bob['accessToken']}"}})
        assert await close_code(ws) == 4403


@pytest.mark.one_path
async def test_revocations_close_the_users_sockets(server: Server, database_url: str) -> None:
    """After logout(everywhere), changePassword or deleteMe the socket ran queries and received
    private events as before."""
    changes: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
        "logout": (LOGOUT, lambda a: {"input": {"everywhere": True}}),
        "password": (
            CHANGE_PASSWORD,
            lambda a: {"input": {"currentPassword": "x" * 12, "newPassword": "y" * 12}},
        ),
        "deleted": (DELETE_ME, lambda a: {"input": {"password": "x" * 12}}),
    }
    for name, (document, variables) in changes.items():
        account = await _account(server, f"user-{name}")
        async with (
            GraphQLWS(server.url, token=account["accessToken"]) as ws,
            GraphQLWS(server.url) as anonymous,
        ):
            await ws.acknowledged()
            await anonymous.acknowledged()
            await ws.subscribe(TASKS)
            await anonymous.subscribe("subscription { postCreated { title } }")
            await asyncio.sleep(0.2)
            await _call(server, document, account["accessToken"], **variables(account))
            assert await close_code(ws, seconds=1.5) == 4403, name
            assert await anonymous.nothing_within(0.2)  # nobody else's socket closed


@pytest.mark.one_path
async def test_revocations_older_than_a_token_lives_are_forgotten(
    app: Starlette, session: AsyncSession
) -> None:
    """The stored revocations of logouts and password changes would otherwise only grow; one no
    token can predate any more is dropped, a recent one kept (it still ends live tokens)."""
    lifetime = timedelta(seconds=app.state.services.tokens.revocations.ttl_seconds)
    now = datetime.now(UTC)
    for user_id, age in ((901, lifetime + timedelta(minutes=2)), (902, lifetime - timedelta(minutes=2))):
        session.add(TokenRevocation(user_id=user_id, revoked_at=now - age))
    await session.commit()
    await app.state.revocations.forget_old()
    left = (
        await session.execute(select(TokenRevocation.user_id).where(TokenRevocation.user_id > 900))
    ).scalars()
    assert sorted(left) == [902]


@pytest.mark.one_path
async def test_taking_back_superuser_rights_closes_their_sockets(server: Server, database_url: str) -> None:
    """`quill superuser --revoke`: the old token said superuser; its socket ends within a second."""
    root = await _account(server, "root")
    env = {**TEST_ENV, **database_env(database_url), "PATH": "/usr/bin:/bin"}
    grant = [sys.executable, "-m", "cli", "superuser", "--username", "root", "--grant"]
    await asyncio.to_thread(subprocess.run, grant, cwd=ROOT, env=env, check=True, capture_output=True)
    assert (
        await close_code_of_new_socket(server, root["accessToken"]) == 4403
    )  # granted: the old token ends too
    fresh = await _call(server, LOGIN, input={"usernameOrEmail": "root", "password": "x" * 12})
    async with GraphQLWS(server.url, token=fresh["accessToken"]) as ws:
        await ws.acknowledged()
        await ws.subscribe(TASKS)
        revoke = [*grant[:-1], "--revoke"]
        await asyncio.to_thread(subprocess.run, revoke, cwd=ROOT, env=env, check=True, capture_output=True)
        assert await close_code(ws, seconds=3) == 4403


async def close_code_of_new_socket(server: Server, token: str) -> int | None:
    async with GraphQLWS(server.url, token=token) as ws:
        return await close_code(ws, seconds=3)


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    from tests.conftest import truncate_all

    truncate_all(postgres_database)
    return postgres_database


@pytest.mark.one_path
async def test_a_revocation_closes_sockets_on_another_process(postgres_url: str, tmp_path: Path) -> None:
    postgres_database = postgres_url
    first = Server(postgres_database, log_path=tmp_path / "a.log")
    second = Server(postgres_database, log_path=tmp_path / "b.log")
    first.start()
    second.start()
    try:
        ada = await _account(first, "ada")
        async with GraphQLWS(second.url, token=ada["accessToken"]) as ws:
            await ws.acknowledged()
            await ws.subscribe(TASKS)
            await asyncio.sleep(0.2)
            await _call(first, LOGOUT, ada["accessToken"], input={"everywhere": True})
            assert await close_code(ws, seconds=1.5) == 4403
    finally:
        first.stop()
        second.stop()


# 3. Limits from coerced input, priced at the worst case.

DEEP = (
    "query ($n: Int = 100) { users(first: $n) { edges { node { posts(first: $n) { edges { node { author { "
    "tasks(first: $n) { totalCount } } } } } } } } }"
)


@pytest.mark.parametrize("variables", [{}, {"n": 100.0}, {"n": 100}], ids=["default", "float", "int"])
async def test_costs_come_from_the_coerced_variables(
    client: httpx.AsyncClient, variables: dict[str, Any]
) -> None:
    """A variable's default or 100.0 was priced as the default page of 20 and the query ran."""
    response = await client.post("/graphql", json={"query": DEEP, "variables": variables}, headers=MODERN)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == {
        "code": "QUERY_TOO_COSTLY",
        "cost": 1_010_100,
        "limit": 20_000,
    }


async def test_aliased_pages_cannot_return_a_hundred_thousand_posts(client: httpx.AsyncClient) -> None:
    aliases = " ".join(
        f"a{i}: users(first: $n) {{ edges {{ node {{ posts(first: $n) {{ edges {{ node {{ title }} }} }} }} }} }}"
        for i in range(10)
    )
    response = await client.post(
        "/graphql", json={"query": f"query ($n: Int) {{ {aliases} }}", "variables": {"n": 100.0}}
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


async def test_introspection_is_priced(client: httpx.AsyncClient) -> None:
    """29 aliased deep __schema selections cost 0.77 s of CPU for one point."""
    deep = "__schema { types { fields { type { fields { type { name } } } } } }"
    query = "{ " + " ".join(f"s{i}: {deep}" for i in range(29)) + " }"
    response = await client.post("/graphql", json={"query": query})
    assert response.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    one = await client.post("/graphql", json={"query": "{ " + deep + " }"})
    assert "errors" not in one.json()


# 4. No client can pin the database pool.


@pytest.fixture
def small_pool(postgres_database: str, tmp_path: Path) -> Iterator[Server]:
    from tests.conftest import truncate_all

    truncate_all(postgres_database)
    env = {
        "DB_POOL_SIZE": "2",
        "DB_POOL_MAX_OVERFLOW": "0",
        "WS_SEND_TIMEOUT_SECONDS": "1",
        "COMPILED_READS": "0",  # every read takes the pool the subscriptions would pin
    }
    server = Server(postgres_database, log_path=tmp_path / "pool.log", env=env)
    server.start()
    yield server
    server.stop()


@pytest.mark.one_path
async def test_sockets_that_never_read_pin_no_connection(small_pool: Server) -> None:
    """20 anonymous postCreated subscribers that never read their sockets made every resolver
    request and mutation fail after 10 s, and /ready hang: each held its connection while its
    send waited on the client."""
    server = small_pool
    ada = await _account(server, "ada")
    silent = [SilentSocket(server.url, "subscription { postCreated { title content } }") for _ in range(20)]
    for socket in silent:
        await socket.open()
    await asyncio.sleep(0.5)
    try:
        content = "x" * 60_000  # 70 of these fill the socket's buffers many times over
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            for i in range(70):
                written = await client.post(
                    "/graphql",
                    json={
                        "query": CREATE_POST,
                        "variables": {"input": {"title": f"p{i}", "content": content}},
                    },
                    headers=bearer(ada["accessToken"]),
                )
                assert written.json()["data"]["createPost"]["__typename"] == "PostPayload"
            for _ in range(10):
                read = await client.post(
                    "/graphql",
                    json={
                        "query": "{ posts(first: 5) { totalCount edges { node { author { username } } } } }"
                    },
                )
                assert read.json()["data"]["posts"]["totalCount"] == 70
            assert (await client.get("/ready")).status_code == 200
        await asyncio.sleep(2.5)  # past WS_SEND_TIMEOUT_SECONDS: the silent sockets are dropped
    finally:
        for socket in silent:
            socket.close()
    assert server.log_path is not None
    log = server.log_path.read_text()
    assert log.count("did not read for") == 20, log[-3000:]


@pytest.fixture
def fanout_server(postgres_database: str, tmp_path: Path) -> Iterator[Server]:
    from tests.conftest import truncate_all

    truncate_all(postgres_database)
    env = {"WS_SEND_TIMEOUT_SECONDS": "1", "COMPILED_READS": "1"}
    server = Server(postgres_database, log_path=tmp_path / "fanout.log", env=env)
    server.start()
    yield server
    server.stop()


@pytest.mark.one_path  # the compiled path is asked for: it is the one that writes from the fan-out
async def test_a_silent_socket_on_a_shared_stream_is_dropped_and_the_others_get_every_event(
    fanout_server: Server,
) -> None:
    """With compiled reads, one event is written to every subscriber from the group's fan-out
    (schema/realtime/multiplex.py): a socket that stops taking frames must be left to finish
    under the watchdog, not hold up the others or lose their order."""
    server = fanout_server
    subscription = "subscription { postCreated { title content } }"
    silent = [SilentSocket(server.url, subscription) for _ in range(3)]
    try:
        ada = await _account(server, "ada")
        for socket in silent:
            await socket.open()
        async with GraphQLWS(server.url) as reader:
            await reader.acknowledged()
            await reader.subscribe(subscription)
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                for i in range(70):  # 60 KB each: 4 MB, past what the silent sockets buffer
                    variables = {"input": {"title": f"p{i}", "content": "x" * 60_000}}
                    written = await client.post(
                        "/graphql",
                        json={"query": CREATE_POST, "variables": variables},
                        headers=bearer(ada["accessToken"]),
                    )
                    assert written.json()["data"]["createPost"]["__typename"] == "PostPayload"
            titles = [(await reader.next_data())["postCreated"]["title"] for _ in range(70)]
        await asyncio.sleep(2.5)  # past WS_SEND_TIMEOUT_SECONDS: the silent sockets are dropped
    finally:
        for socket in silent:
            socket.close()
    assert titles == [f"p{i}" for i in range(70)]
    assert server.log_path is not None
    assert server.log_path.read_text().count("did not read for") == 3, server.log()


async def test_subscriptions_are_capped_per_socket_per_client_and_in_total(
    sqlite_file: str, tmp_path: Path
) -> None:
    env = {
        "WS_MAX_SUBSCRIPTIONS_PER_SOCKET": "2",
        "WS_MAX_SUBSCRIPTIONS_PER_CLIENT": "3",
        "WS_MAX_SUBSCRIPTIONS": "50",
    }
    subscription = "subscription { postCreated { title } }"
    with_server = Server(sqlite_file, log_path=tmp_path / "caps.log", env=env)
    with_server.start()
    try:
        async with GraphQLWS(with_server.url) as first, GraphQLWS(with_server.url) as second:
            for ws in (first, second):
                await ws.acknowledged()
            await first.subscribe(subscription)
            await first.subscribe(subscription)
            third_on_first = await first.subscribe(subscription)
            refused = await first.receive()
            await second.subscribe(subscription)
            fourth_of_client = await second.subscribe(subscription)
            refused_client = await second.receive()
    finally:
        with_server.stop()
    assert (refused["type"], refused["id"]) == ("error", third_on_first)
    assert refused["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
    assert "this connection holds 2" in refused["payload"][0]["message"]
    assert (refused_client["id"], refused_client["payload"][0]["extensions"]["code"]) == (
        fourth_of_client,
        "TOO_MANY_SUBSCRIPTIONS",
    )
    assert "this client holds 3" in refused_client["payload"][0]["message"]


async def test_a_failing_field_beside_siblings_that_use_the_session_keeps_its_own_error(
    gql: GraphQLClient, session: AsyncSession, caplog: pytest.LogCaptureFixture
) -> None:
    """When an operation ended while a sibling was checking out a connection, closing the session
    raised SQLAlchemy's IllegalStateChangeError, which reached the client unmasked."""
    author = await make_user(session)
    for _ in range(3):
        await make_post(session, author)
    siblings = " ".join(
        f"s{i}: posts(first: 2) {{ totalCount edges {{ node {{ author {{ username }} }} }} }}"
        for i in range(8)
    )
    query = f'{{ {siblings} bad: posts(after: "broken") {{ totalCount }} }}'
    with caplog.at_level(logging.WARNING):
        for _ in range(20):
            body = await gql(query, errors=True)
            assert {error["extensions"]["code"] for error in body["errors"]} == {"BAD_USER_INPUT"}
    assert "IllegalStateChangeError" not in caplog.text


# 5. Time limits on every transport.


async def test_websocket_queries_and_mutations_have_the_time_limit(sqlite_file: str, tmp_path: Path) -> None:
    """OPERATION_TIMEOUT_SECONDS held only over HTTP; a WebSocket query ran unbounded."""
    engine = create_async_engine(sqlite_file.replace("sqlite://", "sqlite+aiosqlite://"))
    await generate(engine, Shape(users=100, posts_per_user=1000, tasks_per_user=0, notes_per_task=0), "x")
    await engine.dispose()
    # Two counts over 100,000 titles take about 100 ms on the resolvers (50-65 ms for one, too
    # close to a 50 ms limit on a fast day): five times the limit.
    env = {"OPERATION_TIMEOUT_SECONDS": "0.02", "COMPILED_READS": "0"}
    server = Server(sqlite_file, log_path=tmp_path / "slow.log", env=env)
    server.start()
    try:
        async with GraphQLWS(server.url) as ws:
            await ws.acknowledged()
            operation = await ws.subscribe(
                '{ a: posts(filter: {titleContains: "zz"}) { totalCount }'
                ' b: posts(filter: {titleContains: "yy"}) { totalCount } }'
            )
            message = await ws.receive()
            assert (await ws.receive())["type"] == "complete"
    finally:
        server.stop()
    assert message["id"] == operation
    assert message["payload"]["errors"][0]["extensions"]["code"] == "OPERATION_TIMEOUT"


async def test_sqlite_resolver_statements_stop_at_the_deadline(app: Starlette, engine_name: str) -> None:
    """Compiled reads on SQLite were interrupted at the deadline; the resolvers' were not."""
    if engine_name != "sqlite":
        pytest.skip("PostgreSQL and MariaDB stop statements themselves (statement_timeout)")
    await generate(
        app.state.engine, Shape(users=50, posts_per_user=200, tasks_per_user=0, notes_per_task=0), "x"
    )
    token = DEADLINE.set(time.monotonic() + 0.05)
    try:
        async with app.state.services.sessionmaker() as session:
            with pytest.raises(OperationalError, match="interrupted") as stopped:
                await session.execute(text("SELECT count(*) FROM posts a, posts b WHERE a.title < b.title"))
    finally:
        DEADLINE.reset(token)
    assert is_statement_timeout(stopped.value)


# 6. Sizes bounded in bytes.


async def test_a_huge_document_is_refused_before_parsing(
    app: Starlette, client: httpx.AsyncClient, statements: StatementCounter
) -> None:
    """A 1 MB document made of one string literal was executed (the token limit never saw it)."""
    query = '{ user(username: "' + "x" * 1_000_000 + '") { id } }'
    cached = len(app.state.admission.documents.cache)
    with statements.count() as sent:
        response = await client.post("/graphql", json={"query": query}, headers=MODERN)
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"] == {
        "code": "DOCUMENT_TOO_LARGE",
        "limitBytes": 32 * 1024,
    }
    assert sent.value == 0 and len(app.state.admission.documents.cache) == cached


async def test_caches_hold_at_most_their_bytes(app_with: Callable[..., Any]) -> None:
    """100 distinct ~0.9 MB documents grew the server from 100 MB to 302 MB for good."""
    limits = {
        "document_cache_bytes": 400_000,
        "prepared_cache_bytes": 50_000,
        "persisted_query_cache_bytes": 60_000,
    }
    async with app_with(**limits) as client:
        admission = client.app.state.admission
        for i in range(100):
            padding = "#" * 9000  # a comment: bytes without tokens
            query = f"{{ posts(first: {i % 50}) {{ totalCount }} }}\n{padding}{i}"
            sha = __import__("hashlib").sha256(query.encode()).hexdigest()
            await client.post(
                "/graphql",
                json={"query": query, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}}},
            )
        assert 0 < admission.documents.cache.bytes <= 400_000
        assert 0 < admission.prepared.bytes <= 50_000
        assert 0 < admission.persisted.store._texts.bytes <= 60_000


async def test_websocket_frames_have_the_http_limits(sqlite_file: str, tmp_path: Path) -> None:
    env = {"MAX_BODY_BYTES": "5000", "MAX_VARIABLES_BYTES": "500"}
    server = Server(sqlite_file, log_path=tmp_path / "frames.log", env=env)
    server.start()
    try:
        async with GraphQLWS(server.url) as ws:
            await ws.acknowledged()
            operation = await ws.subscribe(
                "query ($s: String) { posts(filter: {titleContains: $s}) { totalCount } }", {"s": "y" * 800}
            )
            too_many_variables = await ws.receive()
            await ws.send(
                {
                    "id": "big",
                    "type": "subscribe",
                    "payload": {"query": "{ __typename }", "padding": "z" * 6000},
                }
            )
            code = await close_code(ws)
    finally:
        server.stop()
    assert (too_many_variables["type"], too_many_variables["id"]) == ("error", operation)
    assert too_many_variables["payload"][0]["extensions"]["code"] == "VARIABLES_TOO_LARGE"
    assert code == 1009


# 7. The GraphQL spec's operation selection.


async def test_two_operations_without_a_name_are_a_request_error(client: httpx.AsyncClient) -> None:
    """The first of them ran, on POST and GET."""
    query = "query A { __typename } query B { posts { totalCount } }"
    posted = await client.post("/graphql", json={"query": query}, headers=MODERN)
    got = await client.get("/graphql", params={"query": query}, headers=MODERN)
    for response in (posted, got):
        assert response.status_code == 400
        assert response.json() == {
            "errors": [
                {
                    "message": "Must provide operation name if query contains multiple operations.",
                    "extensions": {"code": "OPERATION_RESOLUTION_FAILURE"},
                }
            ]
        }


# 8. Text input is text on every engine; numbers and dates out of range are bad input.


async def test_nul_in_lookups_and_filters_matches_nothing(gql: GraphQLClient, session: AsyncSession) -> None:
    """U+0000 was INTERNAL_SERVER_ERROR on PostgreSQL (asyncpg: invalid byte sequence)."""
    ada = await make_user(session, username="ada")
    await make_post(session, ada, title="hello")
    token = (await register(gql, "bob"))["accessToken"]
    body = await gql(
        "query ($n: String) { user(username: $n) { id } posts(filter: {titleContains: $n}) { totalCount } "
        "users(filter: {usernameStartsWith: $n}) { totalCount } tasks(filter: {titleContains: $n}) { totalCount } }",
        {"n": "a\x00da"},
        token=token,
    )
    assert body["data"] == {
        "user": None,
        "posts": {"totalCount": 0},
        "users": {"totalCount": 0},
        "tasks": {"totalCount": 0},
    }
    login = await mutate(gql, LOGIN, input={"usernameOrEmail": "ada\x00", "password": "x\x00"})
    assert login["reason"] == "BAD_CREDENTIALS"


async def test_nul_in_writes_is_a_validation_error_naming_the_field(
    gql: GraphQLClient, session: AsyncSession
) -> None:
    """...and on SQLite it was stored."""
    token = (await register(gql, "ada"))["accessToken"]
    post = await mutate(gql, CREATE_POST, token, input={"title": "t\x00", "content": "c"})
    task = await mutate(gql, CREATE_TASK, token, input={"title": "ok", "notes": ["fine", "no\x00"]})
    assert post["fieldErrors"] == [
        {"field": "title", "message": "title must not contain the NUL character (U+0000)."}
    ]
    assert task["fieldErrors"][0]["field"] == "notes[1]"
    real = await mutate(gql, CREATE_TASK, token, input={"title": "real"})
    note = await mutate(gql, ADD_NOTE, token, taskId=real["task"]["id"], input={"body": "\x00"})
    assert note["fieldErrors"][0]["field"] == "body"
    registered = await gql.client.post(
        "/graphql",
        json={
            "query": "mutation ($i: RegisterInput!) { register(input: $i) { __typename ... on ValidationError { fieldErrors { field } } } }",
            "variables": {"i": {"username": "x\x00", "email": "a@b.example", "password": "long enough"}},
        },
    )
    assert registered.json()["data"]["register"]["fieldErrors"] == [{"field": "username"}]
    assert (await session.execute(select(Post.id))).all() == []


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (
            "query ($id: ID!) { node(id: $id) { id } }",
            {"id": base64.b64encode(b"User:18446744073709551616").decode()},
        ),
        (
            "query ($id: ID!) { post(id: $id) { id } }",
            {"id": base64.b64encode(b"Post:18446744073709551616").decode()},
        ),
        ("query ($id: ID!) { user(id: $id) { id } }", {"id": base64.b64encode(b"User:-1").decode()}),
        (
            "query ($c: String) { posts(after: $c) { totalCount } }",
            {"c": base64.urlsafe_b64encode(b'["ID:ASC",[18446744073709551616]]').decode()},
        ),
        (
            "query ($c: String) { posts(after: $c, orderBy: {field: TITLE}) { totalCount } }",
            {"c": base64.urlsafe_b64encode(b'["TITLE:ASC",["a\\u0000",5]]').decode()},
        ),
        ('{ posts(filter: {postedAfter: "0001-01-01T00:00:00+14:00"}) { totalCount } }', None),
        ('{ tasks(filter: {createdAfter: "9999-12-31T23:59:59-14:00"}) { totalCount } }', None),
    ],
    ids=[
        "node-2^64",
        "post-2^64",
        "negative-id",
        "cursor-2^64",
        "cursor-nul",
        "date-too-early",
        "date-too-late",
    ],
)
async def test_out_of_range_input_is_bad_user_input(
    client: httpx.AsyncClient, query: str, variables: Any
) -> None:
    """These were a 500 and a reset connection on the short way, an unmasked "Python int too
    large" elsewhere, and internal errors for the dates."""
    for _ in range(2):  # the first time, and from the admission's cache
        response = await client.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        errors = response.json()["errors"]
        assert {error["extensions"]["code"] for error in errors} == {"BAD_USER_INPUT"}, errors


# 9. Forwarded addresses.


async def test_the_client_is_the_right_most_address_no_proxy_of_ours_wrote(
    app_with: Callable[..., Any],
) -> None:
    """The left-most X-Forwarded-For entry, which the client chooses, was the rate limit's key."""
    async with app_with(
        rate_limit=True,
        rate_limit_burst=100,
        rate_limit_per_second=1,
        trusted_proxies=("127.0.0.1", "10.0.0.0/8"),
    ) as client:
        query = {"query": "{ posts(first: 45) { totalCount } }"}
        statuses = []
        for spoofed in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
            headers = {"X-Forwarded-For": f"{spoofed}, 203.0.113.9, 10.1.2.3"}
            statuses.append((await client.post("/graphql", json=query, headers=headers)).status_code)
        other = await client.post("/graphql", json=query, headers={"X-Forwarded-For": "198.51.100.4"})
    assert statuses == [200, 200, 429]  # one client, 203.0.113.9, however the left end changes
    assert other.status_code == 200


async def test_failed_logins_are_limited_per_account(app_with: Callable[..., Any]) -> None:
    async with app_with(login_attempts_burst=5, login_attempt_refill_seconds=3600) as client:
        gql = GraphQLClient(client)
        await register(gql, "ada", password="the right one")
        reasons = []
        for i in range(6):
            headers = {"X-Forwarded-For": f"192.0.2.{i}"}
            body = {"query": LOGIN, "variables": {"input": {"usernameOrEmail": "ada", "password": "a guess"}}}
            reasons.append(
                (await client.post("/graphql", json=body, headers=headers)).json()["data"]["login"]["reason"]
            )
        right = await mutate(gql, LOGIN, input={"usernameOrEmail": "ada", "password": "the right one"})
        other = await mutate(gql, LOGIN, input={"usernameOrEmail": "nobody", "password": "a guess"})
    assert reasons == ["BAD_CREDENTIALS"] * 5 + ["TOO_MANY_ATTEMPTS"]
    assert right["reason"] == "TOO_MANY_ATTEMPTS"  # until the bucket refills, even with the right password
    assert other["reason"] == "BAD_CREDENTIALS"


# 10. No public signing key by default: tests/test_accounts.py, and `quill serve` below.


@pytest.mark.one_path
def test_quill_serve_workers_share_the_random_development_key(sqlite_file: str, tmp_path: Path) -> None:
    env = {"APP_ENV": "development", "SECRET_KEY": ""}
    server = Server(sqlite_file, workers=2, launcher="quill", log_path=tmp_path / "serve.log", env=env)
    server.start()
    try:
        from tests.api import REGISTER

        registered = httpx.post(
            f"{server.url}/graphql",
            json={
                "query": REGISTER,
                "variables": {"input": {"username": "ada", "email": "ada@example.com", "password": "x" * 12}},
            },
        ).json()
        token = registered["data"]["register"]["accessToken"]
        # New connections land on either worker: every one accepts the token.
        answers = [
            httpx.post(
                f"{server.url}/graphql", json={"query": "{ me { username } }"}, headers=bearer(token)
            ).json()
            for _ in range(12)
        ]
    finally:
        server.stop()
    assert all(answer == {"data": {"me": {"username": "ada"}}} for answer in answers), answers
    assert server.log_path is not None and "SECRET_KEY is not set" in server.log_path.read_text()


# 12. Smaller items.


async def test_graphiql_is_served_with_a_content_security_policy(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/graphiql"),
        await client.get("/graphql", headers={"Accept": "text/html"}),
    ):
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"


def test_metrics_need_their_token_in_production(settings: Settings) -> None:
    from dataclasses import replace

    from settings import SettingsError

    with pytest.raises(SettingsError, match="METRICS_TOKEN"):
        replace(settings, app_env="production").check()
    replace(settings, app_env="production", metrics_token="scraper-token").check()
    replace(settings, app_env="production", metrics=False).check()


async def test_ready_names_no_driver_details(app_with: Callable[..., Any], engine_name: str) -> None:
    if engine_name == "sqlite":
        pytest.skip("a SQLite file is always reachable")
    async with app_with() as client:
        engine = client.app.state.engine
        await engine.dispose()  # the pool's next connection is made by a creator that fails
        engine.pool._creator = _refuse
        response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reason": "database unreachable"}


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise ConnectionRefusedError("connect to secret-host.internal:5432 as admin failed")


def test_traces_record_no_literal_values() -> None:
    from graphql import parse

    from web.tracing import redacted

    printed = redacted(
        parse(
            'mutation { login(input: {usernameOrEmail: "ada", password: "hunter2"}) { __typename } posts(first: 7) { totalCount } }'
        )
    )
    assert "hunter2" not in printed and "ada" not in printed and "7" not in printed
    assert "login" in printed and "password" in printed


@pytest.mark.one_path
async def test_the_connection_init_wait_is_a_setting(sqlite_file: str, tmp_path: Path) -> None:
    server = Server(sqlite_file, log_path=tmp_path / "init.log", env={"WS_INIT_TIMEOUT_SECONDS": "0.5"})
    server.start()
    try:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed
        from websockets.typing import Subprotocol

        started = time.monotonic()
        async with connect(
            server.url.replace("http", "ws") + "/graphql", subprotocols=[Subprotocol(TRANSPORT_WS)]
        ) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            code = ws.close_code
    finally:
        server.stop()
    assert code == 4408 and time.monotonic() - started < 5


async def test_a_persisted_query_miss_is_4xx_under_the_newer_media_type(client: httpx.AsyncClient) -> None:
    sha = "a" * 64
    body = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha}}}
    modern = await client.post("/graphql", json=body, headers=MODERN)
    legacy = await client.post("/graphql", json=body)
    assert modern.status_code == 400 and legacy.status_code == 200
    for response in (modern, legacy):
        assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
