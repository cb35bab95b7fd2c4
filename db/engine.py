"""Engine and session factory for SQLite and PostgreSQL, and the start-up checks on the database."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util.concurrency import await_

from db.read_connections import ReadConnections
from settings import Settings

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# When the current operation must be over (time.monotonic()); schema/execution/run.py sets it.
# SQLite statements check it while they run (a progress handler), as compiled reads do.
DEADLINE: ContextVar[float | None] = ContextVar("quill_deadline", default=None)
# SQLite calls the progress handler every this many virtual machine instructions (~0.1 ms).
_PROGRESS_STEPS = 20_000

# A write transaction asks for this execution option so that SQLite takes the write lock at
# BEGIN (see _begin_sqlite_transaction); PostgreSQL ignores it.
WRITE_TRANSACTION = {"sqlite_begin": "BEGIN IMMEDIATE"}


class DatabaseNotReady(RuntimeError):
    """The database is unreachable or not migrated to head; the message says what to do."""


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def is_mysql(url: str) -> bool:
    return make_url(url).get_backend_name() in ("mysql", "mariadb")


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    kwargs: dict[str, Any] = {"echo": settings.sql_echo, "pool_pre_ping": settings.pool_pre_ping}
    if is_mysql(url):
        kwargs |= {
            "pool_size": settings.pool_size,
            "max_overflow": settings.pool_max_overflow,
            # MySQL closes connections idle past wait_timeout (8 h by default); renew them sooner.
            "pool_recycle": 1800,
            # InnoDB's default REPEATABLE READ takes gap locks on inserts into indexed tables, and
            # concurrent sign-ups then deadlock each other; PostgreSQL's default is READ COMMITTED.
            "isolation_level": "READ COMMITTED",
            "connect_args": {"connect_timeout": settings.connect_timeout_seconds},
        }
    elif is_postgres(url):
        # PostgreSQL cancels a statement that runs longer; the request gets OPERATION_TIMEOUT.
        # Behind a transaction-mode pooler that is a SET LOCAL in each transaction instead.
        # The application name says whose a session is (pg_stat_activity); PgBouncer sets it
        # on the server connection for each client that sends one, and leaves the last
        # client's otherwise.
        named = {"application_name": "quill"}
        session = {"server_settings": named | {"statement_timeout": str(settings.statement_timeout_ms)}}
        if settings.database_pooler == "transaction":
            session = {"server_settings": named, **pooler_connect_args()}
        kwargs |= {
            "pool_size": settings.pool_size,
            "max_overflow": settings.pool_max_overflow,
            "connect_args": {
                **session,
                # An unreachable database fails a request in seconds, not the driver's minute.
                "timeout": settings.connect_timeout_seconds,
            },
        }
    engine = create_async_engine(url, **kwargs)
    if is_postgres(url) and settings.database_pooler == "transaction":
        _limit_each_transaction(engine, settings.statement_timeout_ms)
    if is_sqlite(url):
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms, settings.sqlite_synchronous)
    if is_mysql(url):
        _configure_mysql(engine, settings.statement_timeout_ms)
    return engine


def pooler_connect_args() -> dict[str, Any]:
    """asyncpg through a transaction-mode pooler (PgBouncer before 1.21, which does not keep
    prepared statements): each transaction may run on another server connection, so
    - no statement is kept prepared: asyncpg's cache is off, and the statements SQLAlchemy's
      dialect prepares (it must, to read the result's columns) get names no other client uses,
      so a server connection that still holds one never refuses another client's;
    - no session setting is sent at connect (PgBouncer refuses statement_timeout as a startup
      parameter, and a session setting would stay on a connection other clients then get)."""
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__quill_{uuid.uuid4().hex}__",
    }


def _limit_each_transaction(engine: AsyncEngine, statement_timeout_ms: int) -> None:
    """The statement time limit as transaction state, which ends with the transaction (behind a
    pooler the session outlives it and passes to other clients)."""

    @event.listens_for(engine.sync_engine, "begin")
    def _set_local(conn: Connection) -> None:
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")


def _configure_mysql(engine: AsyncEngine, statement_timeout_ms: int) -> None:
    """The statement time limit of every connection: MariaDB's max_statement_time (seconds), or
    MySQL's max_execution_time (milliseconds, for SELECTs)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SET SESSION max_statement_time = {statement_timeout_ms / 1000:.3f}")
        except Exception:  # noqa: BLE001 - MySQL has no such variable
            cursor.execute(f"SET SESSION max_execution_time = {int(statement_timeout_ms)}")
        finally:
            cursor.close()


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int, synchronous: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        deadline = record.info["deadline"] = _Deadline()
        # Runs in aiosqlite's thread while a statement runs: a statement past its operation's
        # time limit is interrupted, as the asyncio timeout stops waiting for it.
        await_(dbapi_connection._connection.set_progress_handler(deadline.passed, _PROGRESS_STEPS))
        # The driver's own implicit BEGIN only starts a transaction before a write, so the
        # reads of one request would not share a snapshot; we issue BEGIN ourselves below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # SQLite ignores foreign keys (and so ON DELETE CASCADE) unless asked, per connection.
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets readers run while one writer commits.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")  # settings.py says why NORMAL
        # Wait for another writer's lock instead of failing with "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _set_deadline(conn: Connection, *args: Any) -> None:
        holder = conn.info.get("deadline")
        if holder is not None:
            holder.at = DEADLINE.get()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_sqlite_transaction(conn: Connection) -> None:
        # A deferred transaction that reads and then writes cannot wait for the lock (SQLite
        # returns SQLITE_BUSY at once to avoid a deadlock), so writes take the lock up front.
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))


def write_turns(url: str) -> asyncio.Lock | None:
    """What a process's writers queue on before they write (RequestDb.write): SQLite has one
    writer at a time, and its busy handler lets waiting writers poll for the lock with growing
    sleeps, so under many concurrent writers some wait past any timeout ("database is locked")
    while others go first again and again. A FIFO lock in the process gives them turns in order;
    writers of other processes still meet SQLite's busy timeout. Other engines need none."""
    return asyncio.Lock() if is_sqlite(url) else None


class _Deadline:
    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: float | None = None

    def passed(self) -> int:
        return 1 if self.at is not None and time.monotonic() > self.at else 0


class StatementCounter:
    """Counts the SQL statements sent through an engine and the compiled reads' connections
    (transaction control excluded): in total, and for the current request (a context variable
    the request's code reads)."""

    _CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "SET LOCAL")

    def __init__(self, engine: AsyncEngine, reads: ReadConnections | None = None) -> None:
        self.total = 0
        self.current: ContextVar[list[int] | None] = ContextVar("statements", default=None)
        self.watch(engine, reads)

    def watch(self, engine: AsyncEngine, reads: ReadConnections | None = None) -> None:
        """Count this engine's and these connections' statements too (a read replica's)."""
        event.listen(engine.sync_engine, "before_cursor_execute", self._on_engine)
        if reads is not None:
            reads.listeners.append(self._on_read)

    def _on_engine(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip()[:9].upper().startswith(self._CONTROL):
            self._count()

    def _on_read(self, statement: str, arguments: Any) -> None:
        self._count()

    def _count(self) -> None:
        self.total += 1
        if (per_request := self.current.get()) is not None:
            per_request[0] += 1


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: a mutation returns the rows it just committed.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def alembic_config() -> Config:
    """Alembic's configuration; the database URL is not in it (alembic/env.py asks settings)."""
    return Config(str(PROJECT_ROOT / "alembic.ini"))


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def migration_problem(engine: AsyncEngine) -> str | None:
    """Why this database cannot be served (one line), or None when it is at the Alembic head."""
    current, head = await current_revision(engine), head_revision()
    if current == head:
        return None
    return (
        f"database is at revision {current or '<empty>'} but the code needs {head}: "
        "run `alembic upgrade head`"
    )


async def wait_for_database(engine: AsyncEngine, timeout_seconds: float) -> None:
    """Retry connecting until the database answers, so a server started with it can wait for it."""
    deadline = time.monotonic() + timeout_seconds
    delay = 0.25
    while True:
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
            return
        except Exception as exc:
            if "unsupported startup parameter" in str(exc):  # waiting will not change that
                raise DatabaseNotReady(
                    f"the database refused a session setting ({exc}): behind PgBouncer in "
                    "transaction mode, set DATABASE_POOLER=transaction"
                ) from exc
            if time.monotonic() >= deadline:
                raise DatabaseNotReady(
                    f"database {engine.url.render_as_string(hide_password=True)} is unreachable "
                    f"after {timeout_seconds:g}s: {exc}"
                ) from exc
            log.warning("waiting for the database (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
