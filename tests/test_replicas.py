"""Read replicas (db/replicas.py) against a real streaming replica (tests/replica_rig.py).

What is shown: queries read the replica (a reader who did not write sees the replica's older
state while its replay is paused), a writer reads its own writes, a lagging or stopped replica is
skipped and rejoins, /ready and the metrics say so, and a subscription event is read where its
write is visible.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from db.replica_pins import UNKNOWN, Coalesced, Pins
from server import create_app
from settings import Settings, SettingsError, async_database_url
from tests.api import CREATE_POST, REGISTER
from tests.conftest import RELIABILITY_REPORT, GraphQLClient, migrate, truncate_all
from tests.pgbouncer_rig import pgbouncer
from tests.replica_rig import ReplicaRig, RigUnavailable, replica_rig
from tests.servers import TEST_ENV, Server, free_port
from tests.test_incremental import MULTIPART, parts_of
from tests.ws import GraphQLWS

POSTS = "{ posts(first: 50) { totalCount edges { node { title } } } }"
TITLES = "{ posts(first: 50) { edges { node { title author { username } } } } }"
DEFERRED = "{ posts(first: 50) { edges { node { title } } ... @defer { totalCount } } }"


@pytest.fixture(scope="module")
def rig() -> Iterator[ReplicaRig]:
    try:
        with replica_rig() as started:
            started.primary.run("CREATE DATABASE quill")
            migrate(started.primary.url("quill"))
            yield started
    except RigUnavailable as missing:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{missing} (REQUIRE_POSTGRES=1)")
        pytest.skip(str(missing))


@pytest.fixture
def fresh(rig: ReplicaRig) -> Iterator[ReplicaRig]:
    """The rig's database emptied, replayed on the replica, and its replay running."""
    truncate_all(rig.primary.url("quill"))
    rig.replica.run("SELECT pg_wal_replay_resume()")
    asyncio.run(rig.wait_replayed())
    yield rig
    rig.replica.run("SELECT pg_wal_replay_resume()")


def replica_settings(rig: ReplicaRig, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "app_env": "test",
        "secret_key": "test-secret-" + "x" * 40,
        "database_url": async_database_url(rig.primary.url("quill")),
        "database_replica_urls": (async_database_url(rig.replica.url("quill")),),
        "replica_check_seconds": 0.05,
        "replica_max_lag_seconds": 3.0,
        "rate_limit": False,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "event_broker_url": TEST_ENV["EVENT_BROKER_URL"],
        "compiled_reads": os.environ.get("COMPILED_READS", "1") not in {"0", "false", "no", "off"},
    }
    return Settings(**(values | changes))


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(settings)
    async with LifespanManager(app):
        yield app


@asynccontextmanager
async def client_at(app: Starlette, address: str) -> AsyncIterator[GraphQLClient]:
    """A client from its own address: a write pins its author's address to the primary."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield GraphQLClient(client)


async def register(gql: GraphQLClient, username: str) -> str:
    variables = {"input": {"username": username, "email": f"{username}@example.com", "password": "x" * 12}}
    body = await gql(REGISTER, variables)
    return str(body["data"]["register"]["accessToken"])


async def post(gql: GraphQLClient, token: str, title: str) -> None:
    body = await gql(CREATE_POST, {"input": {"title": title, "content": "x"}}, token=token)
    assert body["data"]["createPost"]["__typename"] == "PostPayload", body


def titles(body: dict[str, Any]) -> list[str]:
    return sorted(edge["node"]["title"] for edge in body["data"]["posts"]["edges"])


async def until(check: Any, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def served(app: Starlette) -> int:
    return sum(replica.reads_served for replica in app.state.replicas.replicas)


async def test_queries_read_the_replica_and_a_writer_reads_its_own_writes(fresh: ReplicaRig) -> None:
    async with (
        running(replica_settings(fresh)) as app,
        client_at(app, "10.0.0.1") as writer,
        client_at(app, "10.0.0.2") as reader,
    ):
        ada = await register(writer, "ada")
        await post(writer, ada, "before")
        await fresh.wait_replayed()
        await fresh.replica.value("SELECT pg_wal_replay_pause()")

        await post(writer, ada, "after")
        before = served(app)
        # The reader, who wrote nothing, reads the replica: its replay is paused before "after".
        assert titles(await reader(POSTS)) == ["before"]
        assert served(app) == before + 1
        # An answer in parts (@defer) reads the replica too, part by part.
        response = await reader.client.post("/graphql", json={"query": DEFERRED}, headers=MULTIPART)
        first, *rest = parts_of(response)
        deferred = [item["data"] for part in rest for item in part.get("incremental", [])]
        assert [edge["node"]["title"] for edge in first["data"]["posts"]["edges"]] == ["before"]
        assert deferred == [{"totalCount": 1}]  # the replica has one post: the primary two
        assert served(app) == before + 2
        # The writer reads its own write, on the primary, as a user and from its address.
        assert titles(await writer(POSTS, token=ada)) == ["after", "before"]
        assert titles(await writer(POSTS)) == ["after", "before"]
        assert served(app) == before + 2

        await fresh.replica.value("SELECT pg_wal_replay_resume()")
        await fresh.wait_replayed()
        await asyncio.sleep(0.2)  # a check sees the replica past the write: the pin is over
        assert titles(await reader(TITLES)) == ["after", "before"]
        assert titles(await writer(POSTS, token=ada)) == ["after", "before"]
        assert served(app) == before + 4


async def test_a_new_account_reads_itself_at_once(fresh: ReplicaRig) -> None:
    """The sign-up pins its address: the account's first query sees the account."""
    async with running(replica_settings(fresh)) as app, client_at(app, "10.0.0.3") as gql:
        await fresh.replica.value("SELECT pg_wal_replay_pause()")
        token = await register(gql, "grace")
        body = await gql("{ me { username } }", token=token)
        assert body["data"]["me"] == {"username": "grace"}


async def test_a_lagging_replica_is_skipped_and_rejoins(fresh: ReplicaRig) -> None:
    settings = replica_settings(fresh, replica_max_lag_seconds=0.3)
    async with (
        running(settings) as app,
        client_at(app, "10.0.0.1") as writer,
        client_at(app, "10.0.0.2") as reader,
    ):
        ada = await register(writer, "ada")
        await fresh.replica.value("SELECT pg_wal_replay_pause()")
        await post(writer, ada, "while paused")

        async def skipped() -> bool:
            (state,) = (await reader.client.get("/ready")).json()["replicas"]
            return not state["healthy"]

        await until(skipped)
        ready = await reader.client.get("/ready")
        assert ready.status_code == 200
        (state,) = ready.json()["replicas"]
        assert state["problem"].startswith("lagging") and state["lag_seconds"] > 0.3
        metrics = (await reader.client.get("/metrics")).text
        assert 'quill_replica_healthy{replica="127.0.0.1:' in metrics
        assert _sample(metrics, "quill_replica_healthy") == 0
        # Skipped: the reader now reads the primary, and sees the write.
        before = served(app)
        assert titles(await reader(POSTS)) == ["while paused"]
        assert served(app) == before

        await fresh.replica.value("SELECT pg_wal_replay_resume()")

        async def rejoined() -> bool:
            (state,) = (await reader.client.get("/ready")).json()["replicas"]
            return bool(state["healthy"])

        await until(rejoined)
        assert titles(await reader(POSTS)) == ["while paused"]
        assert served(app) == before + 1
        assert _sample((await reader.client.get("/metrics")).text, "quill_replica_healthy") == 1


async def test_a_stopped_replica_is_skipped_and_rejoins(fresh: ReplicaRig) -> None:
    async with running(replica_settings(fresh)) as app, client_at(app, "10.0.0.2") as reader:
        assert titles(await reader(POSTS)) == []
        fresh.stop_node(fresh.replica)
        try:
            if app.state.compiled_reads.enabled:
                # A compiled read that fails on the replica is answered by the primary at once.
                assert titles(await reader(POSTS)) == []

            async def down() -> bool:
                (state,) = (await reader.client.get("/ready")).json()["replicas"]
                return not state["healthy"] and state["problem"].startswith(("unreachable", "a read"))

            await until(down)
            before = served(app)
            for _ in range(3):
                assert titles(await reader(POSTS)) == []
            assert served(app) == before
        finally:
            fresh.start_node(fresh.replica)

        async def rejoined() -> bool:
            (state,) = (await reader.client.get("/ready")).json()["replicas"]
            return bool(state["healthy"])

        await until(rejoined, within=20)
        assert titles(await reader(POSTS)) == []
        assert served(app) == before + 1


async def test_subscription_events_are_read_where_the_write_is_visible(
    fresh: ReplicaRig, tmp_path: Any
) -> None:
    """With the replica's replay paused, an event's read cannot be answered there: the primary
    answers it, and the subscriber gets the whole post; with replay running, the replica does."""
    env = {
        "DATABASE_REPLICA_URLS": fresh.replica.url("quill"),
        "REPLICA_CHECK_SECONDS": "0.05",
        "COMPILED_READS": os.environ.get("COMPILED_READS", "1"),
    }
    server = Server(fresh.primary.url("quill"), env=env, log_path=tmp_path / "uvicorn.log")
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            gql = GraphQLClient(http)
            ada = await register(gql, "ada")
            subscription = "subscription { postCreated { title author { username } } }"
            async with GraphQLWS(server.url) as ws:
                await ws.acknowledged()
                await ws.subscribe(subscription)
                await asyncio.sleep(0.3)  # registered once the server ran its resolver
                await post(gql, ada, "streamed")
                assert (await ws.next_data())["postCreated"] == {
                    "title": "streamed",
                    "author": {"username": "ada"},
                }
                await asyncio.sleep(0.3)  # a check publishes the count
                # Nothing else read: the event's read is what the replica answered (either executor).
                assert _sample((await http.get("/metrics")).text, "quill_replica_reads_total") >= 1
                await fresh.replica.value("SELECT pg_wal_replay_pause()")
                await post(gql, ada, "while paused")
                assert (await ws.next_data())["postCreated"] == {
                    "title": "while paused",
                    "author": {"username": "ada"},
                }
    finally:
        server.stop()


async def test_an_event_s_short_wait_for_a_replica_does_not_judge_it(fresh: ReplicaRig) -> None:
    """An event waits at most 50 ms for a replica to replay its write; when a check of the replica
    takes longer than that (here its one check connection is busy), the primary answers the event
    and the replica stays as healthy as the last full check found it (it was marked unreachable,
    sending every query to the primary: a flaky two-process test)."""
    async with running(replica_settings(fresh, replica_check_seconds=30)) as app:
        replicas = app.state.replicas
        [replica] = replicas.replicas
        await replicas.check()
        assert replica.healthy
        await fresh.replica.value("SELECT pg_wal_replay_pause()")
        try:
            async with (
                running(replica_settings(fresh)) as writer_app,
                client_at(writer_app, "10.0.0.1") as writer,
            ):
                await post(writer, await register(writer, "ada"), "not replayed")
            assert replica.checks is not None
            async with replica.checks.acquire():  # the check's one connection is busy
                assert await replicas.for_event() is None  # the primary answers the event
            assert replica.healthy and not replica.broken
        finally:
            await fresh.replica.value("SELECT pg_wal_replay_resume()")


async def test_replica_lag_after_a_write(fresh: ReplicaRig) -> None:
    """How long the replica takes to replay a createPost (reported, and bounded loosely)."""
    async with running(replica_settings(fresh)) as app, client_at(app, "10.0.0.1") as writer:
        ada = await register(writer, "ada")
        lags = []
        for index in range(30):
            await post(writer, ada, f"post {index}")
            lags.append(await fresh.wait_replayed())
    lags.sort()
    p50, p99 = statistics.median(lags), lags[-1]
    RELIABILITY_REPORT.append(
        f"replica replay after a createPost (30 writes): p50 {p50 * 1000:.1f} ms, max {p99 * 1000:.1f} ms"
    )
    assert p99 < 2.0


def test_replicas_need_postgresql() -> None:
    with pytest.raises(SettingsError, match="needs a PostgreSQL DATABASE_URL"):
        Settings(
            database_url="sqlite+aiosqlite:///x.db", database_replica_urls=("postgresql+asyncpg://h/d",)
        ).check()
    with pytest.raises(SettingsError, match="is not PostgreSQL"):
        Settings(
            database_url="postgresql+asyncpg://h/d", database_replica_urls=("sqlite+aiosqlite:///x.db",)
        ).check()


def _sample(metrics: str, name: str) -> float:
    (line,) = [line for line in metrics.splitlines() if line.startswith(name + "{")]
    return float(line.rsplit(" ", 1)[1])


async def test_two_processes_share_the_primary_the_replica_the_broker_and_the_pins(
    fresh: ReplicaRig, tmp_path: Any, redis_url: str
) -> None:
    """The deployment guide's topology on one machine: two server processes on the same primary
    (through PgBouncer in transaction mode), replica and Redis. With the replica's replay paused,
    a write through one is read by its author through the other (the pin travels through Redis),
    a reader who did not write reads the replica's older rows there, and the write's event
    reaches the other's subscriber whole."""
    env = {
        "DATABASE_REPLICA_URLS": fresh.replica.url("quill"),
        "REPLICA_CHECK_SECONDS": "0.05",
        "REDIS_URL": redis_url,
        "DATABASE_POOLER": "transaction",
        "COMPILED_READS": os.environ.get("COMPILED_READS", "1"),
    }
    with pgbouncer(fresh.primary.url("quill"), pool_size=4) as bouncer:
        first, second = (
            Server(bouncer.url("quill"), env=env, log_path=tmp_path / f"uvicorn-{name}.log")
            for name in ("first", "second")
        )
        try:
            await asyncio.to_thread(first.start)
            await asyncio.to_thread(second.start)
            await _write_here_read_there(fresh, first, second)
        finally:
            first.stop()
            second.stop()


async def _write_here_read_there(fresh: ReplicaRig, first: Server, second: Server) -> None:
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=30) as one,
        httpx.AsyncClient(base_url=second.url, timeout=30) as other,
    ):
        writer_here, writer_there = GraphQLClient(one), GraphQLClient(other)
        ada = await register(writer_here, "ada")
        await post(writer_here, ada, "before")
        await fresh.wait_replayed()
        subscription = "subscription { postCreated { title author { username } } }"
        async with GraphQLWS(second.url) as ws:
            await ws.acknowledged()
            await ws.subscribe(subscription)
            await asyncio.sleep(0.3)  # registered once the server ran its resolver
            await fresh.replica.value("SELECT pg_wal_replay_pause()")
            await post(writer_here, ada, "after")

            assert titles(await writer_there(POSTS, token=ada)) == ["after", "before"]
            reader = await _from_another_address(second.url)
            assert titles(reader) == ["before"]  # the second process reads the replica
            created = (await ws.next_data())["postCreated"]
            assert created == {"title": "after", "author": {"username": "ada"}}


async def _from_another_address(url: str) -> dict[str, Any]:
    """POSTS from an address that wrote nothing (through a proxy the server does not trust
    either: the peer address is what counts, so a second loopback address)."""
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=url, timeout=30, transport=transport) as client:
        response = await client.post("/graphql", json={"query": POSTS})
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


async def test_a_position_read_is_shared_only_by_those_who_asked_before_it_started() -> None:
    reads: list[int] = []

    async def read() -> int:
        reads.append(len(reads) + 1)
        number = len(reads)
        await asyncio.sleep(0.02)
        return number

    position = Coalesced(read)
    first = asyncio.ensure_future(position())
    await asyncio.sleep(0.005)  # the first read is under way: these must wait for the next one
    later = await asyncio.gather(*(position() for _ in range(10)))
    assert await first == 1
    assert later == [2] * 10
    assert len(reads) == 2


async def test_without_redis_answering_a_pinned_client_may_not_read_a_replica() -> None:
    pins = Pins(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        assert await pins.shared_floor(("user:1",)) == UNKNOWN
    finally:
        await pins.close()


async def test_shared_pins_keep_the_highest_position_exactly(redis_url: str) -> None:
    pins, key = Pins(redis_url), f"user:{uuid.uuid4().hex}"
    try:
        large = 2**62 + 1  # past what a double holds exactly
        await pins.pin((key,), large, 5)
        await pins.pin((key,), 7, 5)  # an older write's position never lowers the pin
        assert await pins.shared_floor((key, "ip:nobody")) == large
    finally:
        await pins.close()
