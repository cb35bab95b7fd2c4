"""The one database session of a GraphQL operation, shared by its resolvers one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.engine import WRITE_TRANSACTION

AfterCommit = Callable[[], Awaitable[None]]

log = logging.getLogger("quill.sessions")


class OperationFinished(RuntimeError):
    """The operation's session was closed; work still running for it (a field graphql-core settles
    in the background after a sibling failed) must not open another one."""


class RequestDb:
    """Owns an operation's only AsyncSession.

    Sibling resolvers run concurrently, and an AsyncSession allows one operation at a time, so
    every use goes through `use()` (or `write()`), which take turns on a lock. The lock is not
    reentrant: keep each block to database calls and never await a data loader inside one.
    The session is created on first use, so an operation that needs no SQL holds no connection.
    """

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, write_turns: asyncio.Lock | None = None
    ) -> None:
        self._sessionmaker = sessionmaker
        self._write_turns = write_turns
        self._session: AsyncSession | None = None
        self._lock = asyncio.Lock()
        self._after_commit: list[AfterCommit] = []
        self._closed = False

    def _current(self) -> AsyncSession:
        if self._closed:
            raise OperationFinished("this operation is over; its session is closed")
        if self._session is None:
            self._session = self._sessionmaker()
        return self._session

    @asynccontextmanager
    async def use(self) -> AsyncIterator[AsyncSession]:
        async with self._lock:
            yield self._current()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: commits when the block ends, rolls back if it raises.

        Callbacks registered with `after_commit` inside the block run only once the commit
        succeeded, so a rolled-back mutation has no side effects. With `write_turns` (SQLite:
        db/engine.py's WriteTurns), the process's writers take turns in order before they ask
        SQLite for its one write lock, instead of all polling for it at once.
        """
        async with self.turn(), self._lock:
            session = self._current()
            if session.in_transaction():
                # Only reads can be pending here; a write must not run on their old snapshot.
                await session.rollback()
            await session.connection(execution_options=WRITE_TRANSACTION)
            self._after_commit.clear()
            try:
                yield session
                await session.commit()
            except BaseException:
                self._after_commit.clear()
                await session.rollback()
                raise
            callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            await callback()

    def turn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """This writer's turn among the process's writers (SQLite; no wait elsewhere): `write()`
        takes it, and so does a write made on a connection of its own (schema/mutations.py)."""
        return self._write_turns if self._write_turns is not None else contextlib.nullcontext()

    async def read_from(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """Read through these sessions from now on (a subscription's next event, on a replica or
        the primary: db/replicas.py); the current session, if any, is closed first."""
        if sessionmaker is self._sessionmaker:
            return
        async with self._lock:
            session, self._session = self._session, None
            self._sessionmaker = sessionmaker
        if session is not None:
            await session.close()

    def after_commit(self, callback: AfterCommit) -> None:
        self._after_commit.append(callback)

    async def release(self) -> None:
        """End the current transaction so the connection goes back to the pool (kept for reuse)."""
        async with self._lock:
            if self._session is not None and self._session.in_transaction():
                await self._session.rollback()

    async def close(self) -> None:
        """Close the session (its connection goes back to the pool), after whatever a sibling
        resolver is still doing with it: graphql-core lets siblings of a failed field finish in
        the background, and closing under one that is checking out a connection would fail (and
        replace the operation's answer with SQLAlchemy's IllegalStateChangeError)."""
        self._closed = True
        session, self._session = self._session, None
        if session is None:
            return
        async with self._lock:
            try:
                await session.close()
            except Exception as error:  # noqa: BLE001 - cancelled mid-checkout: the connection is unusable
                log.warning("closing an operation's session failed (%s); discarding its connection", error)
                with contextlib.suppress(Exception):
                    await session.invalidate()
