"""Where compiled reads run: one statement per request, straight on the database driver.

A compiled read (schema/compiled/sql.py) is a single SELECT whose one value is the response body,
`{"data":...}`. It needs no ORM, no transaction (one statement reads one snapshot) and no
decoding, so it skips SQLAlchemy's session and connection layers, which would cost more than the
statement on a small page:
- PostgreSQL: a small asyncpg pool of its own. Its sessions run in UTC (the JSON of a timestamp is
  then the API's format, db/timestamps.py) under the statement timeout, and are returned to the
  pool without asyncpg's reset round trip: nothing here changes session state. The same pool
  runs compiled writes (`fetch_written`): one INSERT or UPDATE inside a WITH that also builds the
  payload, its own transaction, so it needs no BEGIN or COMMIT either.
- MariaDB: a small asyncmy pool of its own, in autocommit (one statement is one snapshot), whose
  sessions let JSON_ARRAYAGG build a whole page (it stops at group_concat_max_len, 1 MB by
  default, and would cut the response short). Each statement carries the operation's remaining
  time as max_statement_time, so the server stops it too.
- SQLite: one connection in the event loop's thread, read-only. A read is CPU work of a fraction
  of a millisecond, less than handing it to a thread would cost; the operation's time limit still
  holds, because a progress handler interrupts a statement that runs past it. A second one writes
  (`write_row`): a mutation's one-row write and its outbox row, one short transaction in the same
  thread. It never waits: if another writer holds SQLite's lock (this process's ORM path, or
  another process), it fails at once and the ORM path, which waits its turn, writes instead. With
  `synchronous=NORMAL` (the default) a commit in WAL mode does not wait for the disk; under FULL or
  EXTRA it would, so there the ORM path's thread does every write.

Each statement is announced to `listeners` (the statement counter, tests), as SQLAlchemy's
engine events announce the resolvers' statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import asyncmy
import asyncmy.errors
import asyncpg
from sqlalchemy.engine import URL, make_url

from db import sqlite_functions

log = logging.getLogger("quill.compiled_reads")

Listener = Callable[[str, Sequence[Any]], None]
Tracer = Callable[[str], AbstractContextManager[None]]  # a span around a statement (web/tracing.py)

# SQLite calls the progress handler every this many virtual machine instructions (~0.1 ms).
_PROGRESS_STEPS = 20_000


class ReadTimeout(TimeoutError):
    """The statement ran past the operation's time limit and was stopped."""


class ReadFailed(Exception):
    """The database refused or failed the statement; the resolvers should answer instead."""


class ReadUnreachable(ReadFailed):
    """The database could not be reached, or its connection ended (a replica stopping)."""


class DataRefused(ReadFailed):
    """A compiled write named a row that is gone (a foreign key): nothing was written."""


class ReadConnections(Protocol):
    listeners: list[Listener]
    trace: Tracer | None
    dialect: str
    available: bool  # False where the server turned out unable to run them (start() says why)
    # A list of viewer ids can be bound as rows (subscription groups); MariaDB needs 10.6's JSON_TABLE.
    viewer_lists: bool

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def fetch(self, sql: str, arguments: Sequence[Any], deadline: float) -> bytes:
        """The statement's one value, as bytes; `deadline` is on time.monotonic()'s clock.
        Raises ReadTimeout (at once if the deadline has passed) or ReadFailed."""


def read_connections(
    database_url: str,
    *,
    pool_size: int,
    statement_timeout_ms: int,
    connect_timeout_seconds: float,
    sqlite_synchronous: str = "NORMAL",
    pooler: str = "none",
) -> ReadConnections | None:
    """The read connections for a database URL (async driver form), or None where compiled
    reads do not run (an in-memory SQLite database). SQLite writes in the event loop's thread
    only where a commit does not wait for the disk (`synchronous=NORMAL`)."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresReads(
            dsn,
            pool_size=pool_size,
            statement_timeout_ms=statement_timeout_ms,
            connect_timeout_seconds=connect_timeout_seconds,
            pooled=pooler == "transaction",
        )
    if backend in ("mysql", "mariadb"):
        return MariaDBReads(
            url,
            pool_size=pool_size,
            statement_timeout_ms=statement_timeout_ms,
            connect_timeout_seconds=connect_timeout_seconds,
        )
    if backend == "sqlite" and url.database and url.database != ":memory:":
        return SqliteReads(url.database, writes=sqlite_synchronous == "NORMAL")
    return None


class PostgresReads:
    dialect = "postgresql"
    available = True
    viewer_lists = True

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int,
        statement_timeout_ms: int,
        connect_timeout_seconds: float,
        pooled: bool = False,
    ) -> None:
        self.dsn, self.pool_size, self.pooled = dsn, pool_size, pooled
        self.statement_timeout_ms = statement_timeout_ms
        self.connect_timeout_seconds = connect_timeout_seconds
        self.listeners: list[Listener] = []
        self.trace: Tracer | None = None
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        session = {
            "TimeZone": "UTC",
            "statement_timeout": str(self.statement_timeout_ms),
            "application_name": "quill compiled reads",
            # One plan serves every value of a compiled statement (keyset pages, per-parent
            # limits; tests/test_deep_pages.py checks the generic plans). Left to choose,
            # PostgreSQL plans a statement with a LIMIT parameter anew on every execution,
            # about 0.1 ms of a 100-row page.
            "plan_cache_mode": "force_generic_plan",
        }
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=self.pool_size,
            # Behind a transaction-mode pooler (db/engine.py, pooler_connect_args) only what
            # PgBouncer keeps per client (TimeZone, application_name): no kept statements, so
            # no generic plans, and the operation's deadline cancels a statement that runs long.
            server_settings=pooled_settings(session) if self.pooled else session,
            statement_cache_size=0 if self.pooled else 100,
            reset=_keep_session,
            timeout=self.connect_timeout_seconds,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def renew(self) -> None:
        """After the server was down: new connections from now on (opening the pool if it never
        could be), instead of the broken ones each failing a read first."""
        if self._pool is None:
            await self.start()
        else:
            await self._pool.expire_connections()

    async def fetch(self, sql: str, arguments: Sequence[Any], deadline: float) -> bytes:
        value: bytes = await self._run(sql, arguments, deadline, "fetchval")
        return value

    async def fetch_written(self, sql: str, arguments: Sequence[Any], deadline: float) -> asyncpg.Record:
        """The one row of a statement that writes (a compiled write, schema/compiled/sql.py's
        compile_write), run on its own as a transaction of its own: it commits when it returns.
        Raises DataRefused when a foreign key names a row that is gone; ReadFailed when the
        statement failed otherwise (then it wrote nothing); ReadTimeout past the deadline."""
        try:
            return await self._run(sql, arguments, deadline, "fetchrow")
        except ReadFailed as failed:
            if isinstance(failed.__cause__, asyncpg.ForeignKeyViolationError):
                raise DataRefused(str(failed)) from failed.__cause__
            raise

    async def _run(self, sql: str, arguments: Sequence[Any], deadline: float, method: str) -> Any:
        assert self._pool is not None, "start() first"
        seconds = deadline - time.monotonic()
        if seconds <= 0:
            raise ReadTimeout()
        limited = self.pooled and self.statement_timeout_ms / 1000 < seconds
        if limited:
            # No statement_timeout in the session behind a pooler: the same limit from here (a
            # statement stopped waiting for is cancelled on the server, through PgBouncer).
            seconds = self.statement_timeout_ms / 1000
        for listener in self.listeners:
            listener(sql, arguments)
        try:
            async with asyncio.timeout(seconds):
                async with self._pool.acquire() as connection:
                    run = getattr(connection, method)
                    if self.trace is None:
                        return await run(sql, *arguments)
                    with self.trace(sql):
                        return await run(sql, *arguments)
        except TimeoutError:
            if limited:  # as PostgreSQL's statement_timeout fails it: the resolvers answer then
                raise ReadFailed("canceling statement due to statement timeout") from None
            raise ReadTimeout() from None
        except _UNREACHABLE as error:
            raise ReadUnreachable(str(error)) from error
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            raise ReadFailed(str(error)) from error


# The server is down, stopping or starting, or the connection to it broke.
_UNREACHABLE = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.CrashShutdownError,
)


def pooled_settings(session: dict[str, str]) -> dict[str, str]:
    """The session settings a transaction-mode PgBouncer takes at connect and keeps per client."""
    return {name: value for name, value in session.items() if name in ("TimeZone", "application_name")}


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to reset: these sessions only ever run single SELECTs."""


# MariaDB's error for a statement stopped by max_statement_time.
_STATEMENT_TIMEOUT = 1969


class MariaDBReads:
    dialect = "mysql"
    available = True
    viewer_lists = True

    def __init__(
        self, url: URL, *, pool_size: int, statement_timeout_ms: int, connect_timeout_seconds: float
    ) -> None:
        self.url, self.pool_size = url, pool_size
        self.statement_timeout_ms = statement_timeout_ms
        self.connect_timeout_seconds = connect_timeout_seconds
        self.listeners: list[Listener] = []
        self.trace: Tracer | None = None
        self._pool: Any = None

    async def start(self) -> None:
        url = self.url
        self._pool = await asyncmy.create_pool(
            minsize=1,
            maxsize=self.pool_size,
            host=url.host or "127.0.0.1",
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            db=url.database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=self.connect_timeout_seconds,
            init_command="SET SESSION group_concat_max_len = 4294967295, SESSION tx_read_only = 1",
        )
        version = await self._version()
        if "mariadb" not in version.lower() or _release(version) < (10, 5):
            # MySQL lacks SET STATEMENT and MariaDB before 10.5 lacks JSON_ARRAYAGG.
            log.warning("compiled reads need MariaDB 10.5 or later, not %s: the resolvers answer", version)
            self.available = False
        self.viewer_lists = _release(version) >= (10, 6)

    async def _version(self) -> str:
        async with self._pool.acquire() as connection, connection.cursor() as cursor:
            await cursor.execute("SELECT VERSION()")
            return str((await cursor.fetchone())[0])

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None

    async def fetch(self, sql: str, arguments: Sequence[Any], deadline: float) -> bytes:
        assert self._pool is not None, "start() first"
        remaining, statement_limit = deadline - time.monotonic(), self.statement_timeout_ms / 1000
        if remaining <= 0:
            raise ReadTimeout()
        seconds = min(remaining, statement_limit)
        for listener in self.listeners:
            listener(sql, arguments)
        limited = f"SET STATEMENT max_statement_time = {seconds:.3f} FOR {sql}"
        connection = await self._connection(seconds)
        try:
            async with asyncio.timeout(seconds + 0.5), connection.cursor() as cursor:
                if self.trace is None:
                    await cursor.execute(limited, arguments)
                else:
                    with self.trace(sql):
                        await cursor.execute(limited, arguments)
                row = await cursor.fetchone()
        except BaseException as error:
            connection.close()  # mid-answer or broken: never handed out again
            if isinstance(error, TimeoutError):
                raise ReadTimeout() from None
            if _code(error) == _STATEMENT_TIMEOUT and remaining <= statement_limit:
                raise ReadTimeout() from None  # the operation's time is up
            # Past the statement limit (as on PostgreSQL): the resolvers answer, with its error.
            if isinstance(error, asyncmy.errors.Error | OSError):
                raise ReadFailed(str(error)) from error
            raise
        finally:
            self._pool.release(connection)
        return bytes(row[0])

    async def _connection(self, seconds: float) -> Any:
        try:
            async with asyncio.timeout(seconds):
                return await self._pool.acquire()
        except TimeoutError:
            raise ReadTimeout() from None
        except (asyncmy.errors.Error, OSError) as error:
            raise ReadFailed(str(error)) from error


def _release(version: str) -> tuple[int, ...]:
    numbers = version.split("-")[0].split(".")
    return tuple(int(n) for n in numbers if n.isdigit())


def _code(error: BaseException) -> int | None:
    code = error.args[0] if isinstance(error, asyncmy.errors.Error) and error.args else None
    return code if isinstance(code, int) else None


class SqliteReads:
    dialect = "sqlite"
    available = True
    viewer_lists = True

    def __init__(self, path: str, *, writes: bool = True) -> None:
        self.path = path
        self.writes = writes
        self.listeners: list[Listener] = []
        self.trace: Tracer | None = None
        self._connection: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._deadline = 0.0

    async def start(self) -> None:
        sqlite_functions.available()  # registered before the connection opens, which then has them
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=512
        )
        connection.execute("PRAGMA query_only = ON")
        # A reader in WAL mode does not wait for writers; a short wait covers a checkpoint's moment.
        connection.execute("PRAGMA busy_timeout = 50")
        connection.create_function("quill_b64", 1, sqlite_functions.b64, deterministic=True)
        connection.create_function("quill_b64url", 1, sqlite_functions.b64url, deterministic=True)
        connection.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)
        self._connection = connection
        if self.writes:
            writer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            writer.execute("PRAGMA foreign_keys = ON")
            writer.execute("PRAGMA synchronous = NORMAL")
            writer.execute("PRAGMA busy_timeout = 0")  # never wait in the event loop's thread
            writer.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)
            self._writer = writer

    async def close(self) -> None:
        for connection in (self._connection, self._writer):
            if connection is not None:
                connection.close()
        self._connection = self._writer = None

    def write_row(
        self,
        sql: str,
        arguments: Sequence[Any],
        then: Callable[[dict[str, Any]], tuple[str, Sequence[Any]] | None],
        deadline: float,
    ) -> dict[str, Any] | None:
        """One transaction: the statement that writes a row and returns it (RETURNING), then the
        statement `then` makes of that row (its outbox row), if any. The row, or None when the
        statement wrote none (a guard refused). Raises DataRefused (a foreign key names a row
        that is gone), ReadFailed (nothing written: the lock is taken, say), ReadTimeout."""
        writer = self._writer
        assert writer is not None, "start() with writes first"
        if time.monotonic() >= deadline:
            raise ReadTimeout()
        self._deadline = deadline
        try:
            writer.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise ReadFailed(str(error)) from error
        try:
            for listener in self.listeners:
                listener(sql, arguments)
            cursor = writer.execute(sql, arguments)
            found = cursor.fetchone()
            row = None if found is None else dict(zip([d[0] for d in cursor.description], found, strict=True))
            following = then(row) if row is not None else None
            if following is not None:
                for listener in self.listeners:
                    listener(*following)
                writer.execute(*following)
            writer.execute("COMMIT")
        except BaseException as error:
            with contextlib.suppress(sqlite3.Error):
                writer.execute("ROLLBACK")
            if isinstance(error, sqlite3.IntegrityError) and "FOREIGN KEY" in str(error):
                raise DataRefused(str(error)) from error
            if isinstance(error, sqlite3.OperationalError) and str(error) == "interrupted":
                raise ReadTimeout() from None
            if isinstance(error, sqlite3.Error):
                raise ReadFailed(str(error)) from error
            raise
        return row

    def _past_deadline(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    async def fetch(self, sql: str, arguments: Sequence[Any], deadline: float) -> bytes:
        connection = self._connection
        assert connection is not None, "start() first"
        if time.monotonic() >= deadline:
            raise ReadTimeout()
        for listener in self.listeners:
            listener(sql, arguments)
        self._deadline = deadline
        try:
            if self.trace is None:
                row = connection.execute(sql, arguments).fetchone()
            else:
                with self.trace(sql):
                    row = connection.execute(sql, arguments).fetchone()
        except sqlite3.OperationalError as error:
            if str(error) == "interrupted":
                raise ReadTimeout() from None
            raise ReadFailed(str(error)) from error
        except sqlite3.Error as error:
            raise ReadFailed(str(error)) from error
        return row[0]
