"""Fixtures: a migrated database per test on each engine, the app over real HTTP (httpx), counters.

Every test that takes `gql` (or `app`) runs three times: on a SQLite file, on PostgreSQL and on
MariaDB.
- SQLite: the migrations run once into a template file; each test gets a fresh copy.
- PostgreSQL and MariaDB: one database per test session (TEST_DATABASE_URL and TEST_MARIADB_URL
  name the servers, default the local services), migrated once and truncated before each test.
  If a server is unreachable its tests are skipped, unless REQUIRE_POSTGRES=1 or
  REQUIRE_MARIADB=1 (CI), where they fail.
- Redis (TEST_REDIS_URL, default redis://127.0.0.1:6379/0) carries the events of PostgreSQL and
  MariaDB between processes; its tests skip without it unless REQUIRE_REDIS=1 (CI).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncmy
import asyncmy.errors
import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from redis import Redis as SyncRedis
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db.models import Base, User
from server import create_app
from settings import Settings, async_database_url
from tests.pgbouncer_rig import pgbouncer
from tests.servers import TEST_ENV, Server, database_env

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_MARIADB_URL = "mysql://root@127.0.0.1:3306"
ENGINES = ("sqlite", "postgresql", "mariadb")
# PostgreSQL through PgBouncer in transaction mode (make test-pgbouncer).
POOLED = os.environ.get("TEST_DATABASE_POOLER") == "pgbouncer"
CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SET|SHOW|SELECT pg_advisory)", re.I)


def alembic(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the alembic command line against `url`, the way a user would."""
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env={**os.environ, **database_env(url)},
        capture_output=True,
        text=True,
        check=False,
    )


def migrate(url: str) -> None:
    done = alembic(url, "upgrade", "head")
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@dataclass(frozen=True)
class PostgresServer:
    admin_url: str  # plain URL of a database we may connect to in order to create others

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def run(self, sql: str) -> None:
        async def execute() -> None:
            conn = await asyncpg.connect(
                async_database_url(self.admin_url).replace("+asyncpg", ""), timeout=5
            )
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(execute())


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    server = PostgresServer(os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL))
    try:
        server.run("SELECT 1")
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL at {server.admin_url} is unreachable: {exc!r}"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " (REQUIRE_POSTGRES=1)")
        pytest.skip(message)
    return server


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis the event broker tests use (skipped, or failed with REQUIRE_REDIS=1, without it)."""
    url = TEST_ENV["EVENT_BROKER_URL"]
    try:
        with SyncRedis.from_url(url, socket_connect_timeout=2) as client:
            client.ping()
    except (OSError, RedisError) as exc:
        message = f"Redis at {url} is unreachable: {exc!r}"
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail(message + " (REQUIRE_REDIS=1)")
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A migrated database of our own for this test session, dropped at the end; with
    TEST_DATABASE_POOLER=pgbouncer, its URL is through a real PgBouncer in transaction mode
    (tests/pgbouncer_rig.py), as `make test-pgbouncer` runs the PostgreSQL tests."""
    name = f"quill_test_{uuid.uuid4().hex[:10]}"
    postgres_server.run(f'CREATE DATABASE "{name}"')
    url = postgres_server.url_for(name)
    try:
        migrate(url)
        if not POOLED:
            yield url
        else:
            with pgbouncer(postgres_server.admin_url) as bouncer:
                yield bouncer.url(name)
    finally:
        postgres_server.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class MariaDBServer:
    admin_url: str  # plain mysql:// URL of the server (no database)

    def url_for(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def run(self, *statements: str, database: str | None = None) -> None:
        url = make_url(self.admin_url)

        async def execute() -> None:
            conn = await asyncmy.connect(
                host=url.host or "127.0.0.1",
                port=url.port or 3306,
                user=url.username or "root",
                password=url.password or "",
                database=database,
                connect_timeout=5,
            )
            try:
                async with conn.cursor() as cursor:
                    for statement in statements:
                        await cursor.execute(statement)
            finally:
                conn.close()

        asyncio.run(execute())


@pytest.fixture(scope="session")
def mariadb_server() -> MariaDBServer:
    server = MariaDBServer(os.environ.get("TEST_MARIADB_URL", DEFAULT_MARIADB_URL))
    try:
        server.run("SELECT 1")
    except (OSError, asyncmy.errors.Error, TimeoutError) as exc:
        message = f"MariaDB at {server.admin_url} is unreachable: {exc!r}"
        if os.environ.get("REQUIRE_MARIADB") == "1":
            pytest.fail(message + " (REQUIRE_MARIADB=1)")
        pytest.skip(message)
    return server


@pytest.fixture(scope="session")
def mariadb_database(mariadb_server: MariaDBServer) -> Iterator[str]:
    """A migrated database of our own for this test session, dropped at the end."""
    name = f"quill_test_{uuid.uuid4().hex[:10]}"
    mariadb_server.run(f"CREATE DATABASE `{name}`")
    url = mariadb_server.url_for(name)
    try:
        migrate(url)
        yield url
    finally:
        mariadb_server.run(f"DROP DATABASE IF EXISTS `{name}`")


def truncate_all(url: str) -> None:
    if make_url(url).get_backend_name() in ("mysql", "mariadb"):
        names = [table.name for table in Base.metadata.sorted_tables]
        MariaDBServer(url).run(
            "SET FOREIGN_KEY_CHECKS = 0",
            *(f"TRUNCATE TABLE `{name}`" for name in names),
            "SET FOREIGN_KEY_CHECKS = 1",
            database=make_url(url).database,
        )
        return
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)

    async def truncate() -> None:
        conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"), timeout=5)
        try:
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        finally:
            await conn.close()

    asyncio.run(truncate())


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database for this test (plain URL, as a user would write it)."""
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    fixture = {"postgresql": "postgres_database", "mariadb": "mariadb_database"}[request.param]
    url: str = request.getfixturevalue(fixture)
    truncate_all(url)
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        app_env="test",
        secret_key="test-secret-" + "x" * 40,
        database_url=async_database_url(database_url),
        database_wait_seconds=5,
        media_dir=str(tmp_path / "media"),
        # Tests send many requests from one address; tests/test_limits.py turns it on.
        rate_limit=False,
        # Cheap hashing: tests hash many passwords; the cost is not what they test.
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        event_broker_url=TEST_ENV["EVENT_BROKER_URL"],
        database_pooler="transaction" if POOLED and database_url.startswith("postgres") else "none",
        # `make test` runs the suite a second time with COMPILED_READS=0 (the resolvers only).
        compiled_reads=os.environ.get("COMPILED_READS", "1").strip().lower()
        not in {"0", "false", "no", "off"},
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(settings)
    async with LifespanManager(app):
        yield app


@pytest.fixture
def app_with(settings: Settings) -> Callable[..., Any]:
    """An app with some settings changed, as `async with app_with(metrics=False) as client:`."""

    @asynccontextmanager
    async def client(**changes: object) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(replace(settings, **changes))  # type: ignore[arg-type]
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                http.app = app  # type: ignore[attr-defined]  # for tests that look inside
                yield http

    return client


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


class GraphQLClient:
    """POSTs a GraphQL request and returns the JSON body; fails the test on a non-200 or errors."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def __call__(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        errors: bool = False,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if not errors:
            assert "errors" not in body, body["errors"]
        return body


@pytest.fixture
def gql(client: httpx.AsyncClient) -> GraphQLClient:
    return GraphQLClient(client)


@pytest.fixture
def token_for(app: Starlette) -> Callable[[User], str]:
    """A valid access token for a user, signed by the app's own token service."""

    def token(user: User) -> str:
        return str(app.state.services.tokens.issue(user.id, is_superuser=user.is_superuser)[0])

    return token


@pytest.fixture
async def session(app: Starlette) -> AsyncIterator[AsyncSession]:
    """A session of the test's own on the app's database, for factories and checks."""
    async with app.state.services.sessionmaker() as session:
        yield session


@dataclass
class Counted:
    """The statements sent during one `with statements.count()` block."""

    statements: list[str] = field(default_factory=list)
    parameters: list[Any] = field(default_factory=list)

    @property
    def value(self) -> int:
        return len(self.statements)


class StatementCounter:
    """Counts the SQL statements the app sends (not BEGIN/COMMIT/ROLLBACK)."""

    def __init__(self) -> None:
        self._current: Counted | None = None

    def record(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if self._current is not None and not CONTROL.match(statement):
            self._current.statements.append(statement)
            self._current.parameters.append(parameters)

    @contextmanager
    def count(self) -> Iterator[Counted]:
        self._current = Counted()
        try:
            yield self._current
        finally:
            self._current = None

    def record_read(self, statement: str, parameters: Any) -> None:
        self.record(None, None, statement, parameters)

    @contextmanager
    def listening(self, app: Starlette) -> Iterator[StatementCounter]:
        """To the app's engine, and to the connections of its compiled reads."""
        engine, reads = app.state.engine.sync_engine, app.state.reads
        event.listen(engine, "before_cursor_execute", self.record)
        if reads is not None:
            reads.listeners.append(self.record_read)
        try:
            yield self
        finally:
            event.remove(engine, "before_cursor_execute", self.record)
            if reads is not None:
                reads.listeners.remove(self.record_read)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    """One uvicorn process on the test's database."""
    running = Server(database_url, log_path=tmp_path / "uvicorn.log")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def statements(app: Starlette) -> Iterator[StatementCounter]:
    with StatementCounter().listening(app) as counter:
        yield counter


@pytest.fixture
def engine_name(database_url: str) -> str:
    return make_url(database_url).get_backend_name()


@pytest.fixture
def compiled_reads(settings: Settings, engine_name: str) -> bool:
    """Whether the app answers queries it can compile with one statement (schema/compiled/)."""
    return settings.compiled_reads and engine_name in ("sqlite", "postgresql", "mysql")


NODE_DIR = ROOT / "tests" / "node"


@pytest.fixture(scope="session")
def node_tools() -> Path:
    """The pinned npm packages of tests/node, installed if missing; Node itself is required."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js and npm are needed for the client and protocol tests (tests/node)")
    # tests/node/apollo4 holds Apollo Client 4, which cannot share node_modules with 3;
    # tests/node/federation, the Apollo gateway and a second subgraph (tests/test_federation.py).
    for folder in (NODE_DIR, NODE_DIR / "apollo4", NODE_DIR / "federation"):
        installed = folder / "node_modules" / ".package-lock.json"  # npm writes it on every install
        lock = folder / "package-lock.json"
        if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, check=True, capture_output=True
            )
    return NODE_DIR


# Figures the load and fault tests measure, printed at the end of the run (tests/test_reliability.py).
RELIABILITY_REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RELIABILITY_REPORT:
        terminalreporter.section("reliability figures")
        for line in RELIABILITY_REPORT:
            terminalreporter.write_line(line)


@pytest.fixture
def shared_url(database_url: str, redis_url: str) -> str:
    """The test's database, emptied: events travel between processes through the broker."""
    if not database_url.startswith("sqlite"):
        truncate_all(database_url)
    return database_url


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    truncate_all(postgres_database)
    return postgres_database


from tests.pairs import pair  # noqa: E402, F401  (the fixture, for every test module)
