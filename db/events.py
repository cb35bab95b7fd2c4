"""Change events for subscriptions: published with the transaction that made the change, delivered
to every server process, fanned out to bounded per-subscriber queues. No GraphQL in here.

- An event names a changed row (topic, kind, id, and the owner it needs for a permission check
  once the row is gone); subscribers re-read the row under their own permissions.
- On PostgreSQL, `stage` runs `pg_notify` inside the mutation's transaction: PostgreSQL delivers
  the notification on commit, and never for a rolled-back transaction, to every process that
  LISTENs, this one included. Each process keeps one dedicated LISTEN connection, reopened
  automatically when it drops.
- Elsewhere (SQLite: one process), `stage` delivers in process, after the commit.
- A subscriber that falls behind by `queue_size` events is dropped with an error; a publisher
  never waits for a subscriber.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
import orjson
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger("quill.events")

CHANNEL = "quill_events"
AfterCommit = Callable[[Callable[[], Awaitable[None]]], None]  # RequestDb.after_commit


@dataclass(frozen=True, slots=True)
class Event:
    topic: str  # "post", "task", "note", or "revocation" (id: the user whose tokens were revoked)
    kind: str  # "created", "updated", "deleted" (or "revoked")
    id: int
    owner_id: int | None = None  # the post's author, the task's owner (checked once the row is gone)
    parent_id: int | None = None  # the row it belongs to: a note's task
    login: str | None = None  # a revocation of one login's tokens only
    at: float | None = None  # when the revocation took effect (seconds since the epoch)

    def encode(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def decode(cls, payload: str) -> Event:
        return cls(**orjson.loads(payload))


class SubscriberTooSlow(Exception):
    """The subscriber did not keep up: its queue filled and it was dropped."""


class Subscription:
    """One subscriber's bounded queue of events."""

    def __init__(self, topic: str, queue_size: int) -> None:
        self.topic = topic
        self.queue_size = queue_size
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=queue_size)
        self.overflowed = False

    def offer(self, event: Event) -> None:
        """Never waits: a full queue drops the subscriber instead of slowing the publisher."""
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True

    def end(self) -> None:
        """Let the subscriber finish after the events already queued (server shutdown)."""
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except asyncio.QueueFull:  # make room: shutting down, the oldest event can go
                self._queue.get_nowait()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            if self.overflowed and self._queue.empty():
                # What was queued before the overflow went out; what came after was dropped.
                waiting = self.queue_size
                raise SubscriberTooSlow(
                    f"subscriber too slow: over {waiting} events waited for it; subscription ended"
                )
            event = await self._queue.get()
            if event is None:
                return
            yield event


class Broker:
    """Fans events out to this process's subscriptions; `stage` is how a mutation publishes."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._idle = asyncio.Event()  # set while nobody subscribes
        self._idle.set()
        self._listeners: dict[str, list[Callable[[Event], None]]] = {}
        self.delivered = 0

    async def start(self) -> None:
        """Begin receiving events from other processes (nothing to do within one process)."""

    async def stop(self) -> None:
        self.end_all()

    async def stage(
        self,
        session: AsyncSession,
        event: Event,
        after_commit: AfterCommit,
    ) -> None:
        """Publish `event` if, and only when, the session's transaction commits."""

        async def deliver() -> None:
            self.deliver(event)

        after_commit(deliver)

    def deliver(self, event: Event) -> None:
        self.delivered += 1
        for listener in self._listeners.get(event.topic, ()):
            listener(event)
        for subscription in list(self._subscriptions.get(event.topic, ())):
            subscription.offer(event)

    def listen(self, topic: str, listener: Callable[[Event], None]) -> None:
        """Call `listener` with each event of `topic` as it arrives (the server's own bookkeeping,
        not a subscriber: it has no queue and never keeps the process from shutting down)."""
        self._listeners.setdefault(topic, []).append(listener)

    @asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(topic, self.queue_size)
        self._subscriptions.setdefault(topic, set()).add(subscription)
        self._idle.clear()
        try:
            yield subscription
        finally:
            self._subscriptions[topic].discard(subscription)
            if not self.subscriber_count:
                self._idle.set()

    async def wait_idle(self, seconds: float) -> None:
        """Until no subscription is left, or `seconds` have passed."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), seconds)

    def end_all(self) -> None:
        for subscriptions in self._subscriptions.values():
            for subscription in list(subscriptions):
                subscription.end()

    @property
    def subscriber_count(self) -> int:
        return sum(len(subscriptions) for subscriptions in self._subscriptions.values())


class PostgresBroker(Broker):
    """Events travel through PostgreSQL's LISTEN/NOTIFY, so they reach every server process."""

    def __init__(self, database_url: str, queue_size: int, *, retry_seconds: float = 1.0) -> None:
        super().__init__(queue_size)
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None
        self.listening = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="quill-events-listener")
        # Start-up waits for the first LISTEN, so that no event committed after start is missed.
        await asyncio.wait_for(self.listening.wait(), timeout=30)

    async def stop(self) -> None:
        await super().stop()
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def stage(
        self,
        session: AsyncSession,
        event: Event,
        after_commit: AfterCommit,
    ) -> None:
        # Inside the transaction: PostgreSQL sends it on commit, and drops it on rollback.
        await session.execute(select(func.pg_notify(CHANNEL, event.encode())))

    async def _listen_forever(self) -> None:
        while True:
            lost = asyncio.Event()
            try:
                self._connection = await asyncpg.connect(self._dsn, timeout=10)
                self._connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await self._connection.add_listener(CHANNEL, self._on_notification)
                self.listening.set()
                log.info("listening for events on %s", CHANNEL)
                await lost.wait()
                log.warning("the event listener's connection was lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever broke the connection, listen again
                log.warning("cannot listen for events (%s); retrying in %.1fs", exc, self._retry_seconds)
            finally:
                self.listening.clear()
                if self._connection is not None and not self._connection.is_closed():
                    await self._connection.close(timeout=2)
                self._connection = None
            await asyncio.sleep(self._retry_seconds)

    def _on_notification(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        try:
            event = Event.decode(payload)
        except (ValueError, TypeError):
            log.error("ignoring a malformed event: %r", payload)
            return
        self.deliver(event)

    @property
    def listener_pid(self) -> int | None:
        """The listening connection's server process (tests end it to check reconnection)."""
        return self._connection.get_server_pid() if self._connection is not None else None
