"""Idempotency keys: a mutation sent again with the key it was first sent with gets the first
answer, and writes nothing again.

The admission step claims the key before the mutation runs (`claim`); the run keeps its answer
under it (`keep`). A claim is one short transaction of its own, so two requests with one key
cannot both run: on every engine the primary key (viewer, key) lets one insert win, and the
other finds the row. The answer is kept in a second transaction after the mutation's own, so a
process that dies between the two leaves the key claimed with no answer: it then answers
"in use" until the retention ends, the safe side (the write may have happened).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import IdempotencyKey, table_of, utcnow

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

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        retention: timedelta,
        write_turns: asyncio.Lock | None = None,
    ) -> None:
        self.sessions, self.retention, self.write_turns = sessions, retention, write_turns

    async def claim(self, user_id: int, key: str, fingerprint: str) -> Claim:
        """Claim `key` for the viewer's request, or say what already holds it. The viewer's
        keys past the retention are dropped first, so a key may be used again after it."""
        async with self._turn(), self.sessions() as session, session.begin():
            now = utcnow()
            mine = keys.c.user_id == user_id
            await session.execute(delete(keys).where(mine, keys.c.created_at < now - self.retention))
            try:
                async with session.begin_nested():
                    values = {"user_id": user_id, "key": key, "fingerprint": fingerprint, "created_at": now}
                    await session.execute(insert(keys).values(values))
                return Claimed(user_id, key)
            except IntegrityError:
                found = (
                    await session.execute(
                        select(keys.c.fingerprint, keys.c.answer).where(mine, keys.c.key == key)
                    )
                ).one_or_none()
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
        where = (keys.c.user_id == claimed.user_id, keys.c.key == claimed.key)
        async with self._turn(), self.sessions() as session, session.begin():
            await session.execute(update(keys).where(*where).values(answer=body.decode()))

    def _turn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.write_turns if self.write_turns is not None else contextlib.nullcontext()
