"""Revocations reach every process: at start-up from the database (db/revocations.py), then as
events (db/events.py), which also close the revoked user's WebSockets (web/graphql_ws.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from db import revocations
from db.engine import WRITE_TRANSACTION
from db.events import Event
from schema.admission.tokens import Revocation
from schema.execution.context import Services

log = logging.getLogger("quill.revocations")


class RevocationListener:
    """Events bring a revocation at once; the database, read every `poll_seconds`, brings those no
    event carried (the `quill superuser` command, a process that died right after its commit).
    Every FORGET_EVERY_SECONDS it drops the stored revocations no live token can predate."""

    FORGET_EVERY_SECONDS = 3600.0

    def __init__(
        self, services: Services, *, on_revoked: Callable[[int], None], poll_seconds: float = 1.0
    ) -> None:
        self.services = services
        self.on_revoked = on_revoked
        self.poll_seconds = poll_seconds
        self._seen = datetime.now(UTC) - timedelta(seconds=services.tokens.revocations.ttl_seconds + 60)
        self._task: asyncio.Task[None] | None = None
        self._forgot_at = time.monotonic()  # a new process leaves the first clean-up an hour away

    async def start(self) -> None:
        await self._read()
        self.services.broker.listen("revocation", self._revoked)
        self._task = asyncio.create_task(self._poll(), name="quill-revocations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self._read()
                if time.monotonic() - self._forgot_at > self.FORGET_EVERY_SECONDS:
                    await self.forget_old()
            except Exception as error:  # noqa: BLE001 - the database is away: try again later
                log.warning("cannot read token revocations: %s", error)

    async def forget_old(self) -> None:
        """Drop the stored revocations older than an access token lives (and a minute): they can
        no longer match a token anyone holds, and the table would otherwise only grow. Every
        process does it now and then; a second DELETE of the same rows finds none."""
        self._forgot_at = time.monotonic()
        lifetime = timedelta(seconds=self.services.tokens.revocations.ttl_seconds + 60)
        sessions = self.services.housekeeping or self.services.sessionmaker
        turns = self.services.write_turns or contextlib.nullcontext()
        async with turns, sessions() as session:
            await session.connection(execution_options=WRITE_TRANSACTION)
            await revocations.forget_older_than(session, lifetime)
            await session.commit()

    async def _read(self) -> None:
        sessions = self.services.housekeeping or self.services.sessionmaker
        async with sessions() as session:
            found = await revocations.since(session, self._seen)
        tokens = self.services.tokens
        for revoked in found:
            self._seen = max(self._seen, revoked.at)
            tokens.revocations.add(Revocation(revoked.user_id, revoked.at.timestamp(), revoked.login))
            self.on_revoked(revoked.user_id)

    def _revoked(self, event: Event) -> None:
        tokens = self.services.tokens
        tokens.revocations.add(Revocation(event.id, event.at or time.time(), event.login))
        tokens.revocations.forget_expired()
        self.on_revoked(event.id)
