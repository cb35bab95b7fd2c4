"""Idempotency keys: a mutation sent again with the key it was first sent with gets the first
answer, and writes nothing again.

The admission step claims the key before the mutation runs (`claim`); the run keeps its answer
under it (`keep`). A claim is one short transaction of its own, so two requests with one key
cannot both run: on every engine the primary key (viewer, key) lets one insert win, and the
other finds the row (its INSERT waits for the winner's transaction). The answer is kept in a
second transaction after the mutation's own, so a process that dies between the two leaves the
key claimed with no answer: it then answers "in use" until the retention ends, the safe side
(the write may have happened).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.engine import WRITE_TRANSACTION
from db.errors import is_foreign_key_violation
from db.models import IdempotencyKey, table_of, utcnow
from db.read_connections import PostgresReads, ReadConnections, ReadFailed, ReadTimeout, SqliteReads
from db.statements import CompiledStatement, compile_positional

keys = table_of(IdempotencyKey)

MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Claimed:
    """The key was free: this request runs, and its answer is kept under the key."""

    user_id: int
    key: str


@dataclass(frozen=True, slots=True)
class Answered:
    """The key's first request was answered: this is its response body."""

    body: bytes


@dataclass(frozen=True, slots=True)
class OtherRequest:
    """The key was first sent with a different request."""


@dataclass(frozen=True, slots=True)
class Running:
    """The key's first request has not been answered (it runs, or its process died)."""


Claim = Claimed | Answered | OtherRequest | Running


def fingerprint(query: str, operation_name: str | None, variables: Any) -> str:
    """What makes two requests the same one: the document, the operation and the variables."""
    given = orjson.dumps(
        [query, operation_name, variables], option=orjson.OPT_SORT_KEYS, default=lambda value: repr(value)
    )
    return hashlib.sha256(given).hexdigest()


def key_problem(key: str) -> str | None:
    """Why a client's key cannot be used, or None."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all("!" <= char <= "~" for char in key):
        return f"An Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable ASCII characters, without spaces."
    return None


class IdempotencyKeys:
    """The table of keys on the request engine. `write_turns`: SQLite's writers of this process
    take turns (db/engine.py), these short transactions too."""

    PURGE_EVERY_SECONDS = 60.0

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        retention: timedelta,
        write_turns: asyncio.Lock | None = None,
        *,
        direct: ReadConnections | None = None,
    ) -> None:
        self.sessions, self.retention, self.write_turns = sessions, retention, write_turns
        # The compiled path's own connections (db/read_connections.py), where they write: a
        # claim and a kept answer are then one statement each, with no ORM session around them
        # (on PostgreSQL and SQLite about 2 ms less each). The ORM way does the rest.
        self.direct = direct if isinstance(direct, PostgresReads | SqliteReads) else None
        self._purged_at = -math.inf  # on time.monotonic()'s clock
        self._statements: dict[str, CompiledStatement] = {}

    async def claim(self, user_id: int, key: str, fingerprint: str) -> Claim:
        """Claim `key` for the viewer's request, or say what already holds it. A key past the
        retention is free again; now and then the expired keys of everyone are dropped."""
        now = utcnow()
        cutoff = now - self.retention
        where = (keys.c.user_id == user_id, keys.c.key == key)
        values = {"user_id": user_id, "key": key, "fingerprint": fingerprint, "created_at": now}
        purge = time.monotonic() - self._purged_at > self.PURGE_EVERY_SECONDS
        if not purge and await self._directly("claim", values):
            return Claimed(user_id, key)
        async with self._write() as session:  # the key is taken, or the direct way cannot say
            if purge:
                self._purged_at = time.monotonic()
                await session.execute(delete(keys).where(keys.c.created_at < cutoff))
            try:
                if await _inserted(session, values):
                    return Claimed(user_id, key)
                found = (await session.execute(select(keys).where(*where))).one_or_none()
                if found is not None and found.created_at < cutoff:  # expired: the key is free
                    await session.execute(delete(keys).where(*where))
                    await _inserted(session, values)
                    return Claimed(user_id, key)
            except IntegrityError as error:
                if not is_foreign_key_violation(error):
                    raise
                found = None
        if found is None:
            # The viewer's account is gone (the foreign key refused the row): the mutation runs
            # and answers so; there is nothing to keep.
            return Claimed(user_id, key)
        if found.fingerprint != fingerprint:
            return OtherRequest()
        if found.answer is None:
            return Running()
        return Answered(found.answer.encode())

    async def keep(self, claimed: Claimed, body: bytes) -> None:
        """Keep the claimed request's answer for its retries."""
        values = {"user_id": claimed.user_id, "key": claimed.key, "answer": body.decode()}
        if await self._directly("keep", values):
            return
        where = (keys.c.user_id == claimed.user_id, keys.c.key == claimed.key)
        async with self._write() as session:
            await session.execute(update(keys).where(*where).values(answer=values["answer"]))

    async def _directly(self, name: str, values: dict[str, Any]) -> bool:
        """Run statement `name` on the direct connection: True when it wrote its row; False when
        it did not (the key is taken, a foreign key refused it, the lock was busy, the database
        failed it: nothing was written then) or there is no direct way."""
        direct = self.direct
        if direct is None:
            return False
        statement = self._statement(name)
        deadline = time.monotonic() + DIRECT_SECONDS
        try:
            if isinstance(direct, SqliteReads):
                if not direct.writes:
                    return False
                async with self._turn():
                    row = direct.write_row(
                        statement.sql, statement.arguments(values), _nothing_after, deadline
                    )
                return row is not None
            return (
                await direct.fetch_written(statement.sql, statement.arguments(values), deadline) is not None
            )
        except (ReadFailed, ReadTimeout):
            return False

    def _statement(self, name: str) -> CompiledStatement:
        if name not in self._statements:
            dialect = self.sessions.kw["bind"].dialect
            self._statements[name] = compile_positional(_DIRECT[name](dialect.name), dialect)
        return self._statements[name]

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction (on SQLite BEGIN IMMEDIATE, after this process's other writers)."""
        async with self._turn(), self.sessions() as session:
            await session.connection(execution_options=WRITE_TRANSACTION)
            yield session
            await session.commit()

    def _turn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.write_turns if self.write_turns is not None else contextlib.nullcontext()


DIRECT_SECONDS = 5.0  # a direct statement's time limit


def _claim_statement(dialect_name: str) -> Any:
    parameters = {name: bindparam(name, type_=keys.c[name].type) for name in CLAIM_COLUMNS}
    return _insert_once(dialect_name).values(parameters).returning(keys.c.user_id)


def _keep_statement(dialect_name: str) -> Any:
    where = (keys.c.user_id == bindparam("user_id"), keys.c.key == bindparam("key"))
    return update(keys).where(*where).values(answer=bindparam("answer")).returning(keys.c.user_id)


CLAIM_COLUMNS = ("user_id", "key", "fingerprint", "created_at")
_DIRECT = {"claim": _claim_statement, "keep": _keep_statement}


def _nothing_after(row: dict[str, Any]) -> None:
    return None


def _insert_once(dialect_name: str) -> Any:
    """An INSERT that skips a key already taken, on each engine."""
    if dialect_name == "postgresql":
        return postgresql.insert(keys).on_conflict_do_nothing()
    if dialect_name == "sqlite":
        return sqlite.insert(keys).on_conflict_do_nothing()
    return insert(keys).prefix_with("IGNORE")  # MariaDB: IGNORE also turns a foreign key refusal into no row


async def _inserted(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the key's row unless the key has one (then False); one statement on every engine,
    which waits for a concurrent claim of the same key to commit or roll back."""
    result = await session.execute(_insert_once(session.get_bind().dialect.name), values)
    return bool(result.rowcount)  # type: ignore[attr-defined]
