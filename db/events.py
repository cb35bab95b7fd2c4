"""Change events for subscriptions: written with the transaction that made the change, kept in
order in a log that subscribers can resume from, delivered to every server process, and fanned
out to bounded per-subscriber queues. No GraphQL in here.

- An event names a changed row (topic, kind, id, and the owner it needs for a permission check
  once the row is gone); subscribers re-read the row under their own permissions. Its
  `position` is where the log holds it: a subscriber that saw position P and comes back with it
  receives every event after P, in order, once.
- A mutation `stage`s its event as a row of the outbox table (db/models.py's EventOutbox) in its
  own transaction: the event exists if and only if the change committed, whatever happens to the
  process a moment later. Nothing takes a lock shared by all commits (PostgreSQL's NOTIFY does:
  it serializes the commits of every notifying transaction).
- Where the log lives:
  - SQLite (`DatabaseLog`): the outbox table is the log. SQLite has one writer at a time, so ids
    follow commit order; each process follows the table (woken at once by its own commits,
    every quarter second for other processes' commits) and trims it past the retention.
  - PostgreSQL and MariaDB (`RedisStreams`, with EVENT_BROKER_URL): a relay in every process
    moves outbox rows to one Redis stream (`FOR UPDATE SKIP LOCKED`, so relays share the work)
    and deletes them; the stream's entry ids are the positions. A Lua script adds an entry only
    if that outbox row was never added, so a relay that dies between XADD and its commit makes no
    duplicate. Each process reads the stream (XREAD), and the stream is trimmed past the
    retention (MINID).
  - PostgreSQL or MariaDB without a broker (`Broker`): events reach the subscribers of the
    process that made them, after the commit, and cannot be resumed.
- A subscriber that falls behind by `queue_size` events is dropped with an error (it can resume
  from the last position it saw); a publisher never waits for a subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError
from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import EventOutbox, table_of, utcnow

log = logging.getLogger("quill.events")

outbox = table_of(EventOutbox)
# Values as parameters: a statement with them inlined would be compiled anew for every event.
_ADD_TO_OUTBOX = insert(outbox)
OUTBOX_COLUMNS = ("topic", "payload", "created_at")  # what outbox_row() gives
AfterCommit = Callable[[Callable[[], Awaitable[None]]], None]  # RequestDb.after_commit
Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class Event:
    topic: str  # "post", "task", "note", "comment", or "revocation" (id: the user whose tokens were revoked)
    kind: str  # "created", "updated", "deleted" (or "revoked")
    id: int
    owner_id: int | None = None  # the post's author, the task's owner (checked once the row is gone)
    parent_id: int | None = None  # the row it belongs to: a note's task, a comment's post
    login: str | None = None  # a revocation of one login's tokens only
    at: float | None = None  # when the revocation took effect (seconds since the epoch)
    position: str | None = None  # where the log holds it; set when it is delivered

    def encode(self) -> str:
        fields = asdict(self)
        del fields["position"]
        return orjson.dumps(fields).decode()

    @classmethod
    def decode(cls, payload: str | bytes, position: str | None = None) -> Event:
        return cls(**orjson.loads(payload), position=position)


@dataclass(frozen=True, slots=True)
class EventOf:
    """The event that writing one row makes, told from the row: `owner` and `parent` name the
    row's columns that hold the event's owner_id and parent_id. The same rule gives the Event
    in Python (`of`) and, for a write compiled into one statement, its outbox row in SQL
    (`fields`, schema/compiled/sql.py)."""

    topic: str
    kind: str
    owner: str | None = None
    parent: str | None = None

    def fields(self, column: Callable[[str], Any]) -> dict[str, Any]:
        """Event's fields but position, in order: the row's values read with `column(name)`."""
        values: dict[str, Any] = {"topic": self.topic, "kind": self.kind, "id": column("id")}
        values["owner_id"] = column(self.owner) if self.owner is not None else None
        values["parent_id"] = column(self.parent) if self.parent is not None else None
        return {**values, "login": None, "at": None}

    def of(self, row: Any) -> Event:
        return Event(**self.fields(lambda name: getattr(row, name)))


def outbox_row(event: Event) -> dict[str, Any]:
    """The outbox row that carries `event` (OUTBOX_COLUMNS)."""
    return {"topic": event.topic, "payload": event.encode(), "created_at": utcnow()}


class SubscriberTooSlow(Exception):
    """The subscriber did not keep up: its queue filled and it was dropped."""


class BadPosition(ValueError):
    """A position this log never gave out."""


class PositionExpired(Exception):
    """The log no longer holds everything after this position (older than the retention)."""


class ResumeUnavailable(Exception):
    """This server keeps no log to resume from (PostgreSQL or MariaDB without EVENT_BROKER_URL)."""


OrderKey = Callable[[str], tuple[int, ...]]


class Subscription:
    """One subscriber's events: those after its starting position first (read from the log),
    then live ones from a bounded queue, each once, in the log's order."""

    def __init__(
        self,
        topic: str,
        queue_size: int,
        order_key: OrderKey,
        replay: AsyncIterator[Event] | None = None,
    ) -> None:
        self.topic = topic
        self.queue_size = queue_size
        self._order_key = order_key
        self._replay = replay
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
        last: tuple[int, ...] | None = None
        if self._replay is not None:
            async for past in self._replay:
                assert past.position is not None
                last = self._order_key(past.position)
                if past.topic == self.topic:
                    yield past
        while True:
            if self.overflowed and self._queue.empty():
                # What was queued before the overflow went out; what came after was dropped.
                raise SubscriberTooSlow(
                    f"subscriber too slow: over {self.queue_size} events waited for it; subscription ended"
                )
            event = await self._queue.get()
            if event is None:
                return
            if last is not None and event.position is not None and self._order_key(event.position) <= last:
                continue  # replayed already
            yield event


class Broker:
    """Fans events out to this process's subscriptions. This base class is the log-less case:
    events of this process only, delivered after the commit, positions counted in memory."""

    resumable = False

    def __init__(self, queue_size: int, retention_seconds: float = 86400.0) -> None:
        self.queue_size = queue_size
        self.retention_seconds = retention_seconds
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._idle = asyncio.Event()  # set while nobody subscribes
        self._idle.set()
        self._listeners: dict[str, list[Callable[[Event], None]]] = {}
        self._counter = 0
        self.delivered = 0

    async def start(self) -> None:
        """Begin receiving events from the log (nothing to do without one)."""

    async def stop(self) -> None:
        self.end_all()

    async def stage(self, session: AsyncSession, event: Event, after_commit: AfterCommit) -> None:
        """Publish `event` if, and only when, the session's transaction commits (a resumable
        broker's outbox row is written in that transaction)."""
        if self.resumable:
            await session.execute(_ADD_TO_OUTBOX, outbox_row(event))
        after_commit(lambda: self.committed(event))

    async def committed(self, event: Event) -> None:
        """`event`'s change has been committed, with its outbox row where the broker is resumable
        (a write compiled into one statement adds that row itself: schema/compiled/sql.py)."""
        self._counter += 1
        self.deliver(replace(event, position=str(self._counter)))

    def deliver(self, event: Event) -> None:
        self.delivered += 1
        self._tell_listeners(event)
        for subscription in list(self._subscriptions.get(event.topic, ())):
            subscription.offer(event)

    def listen(self, topic: str, listener: Callable[[Event], None]) -> None:
        """Call `listener` with each event of `topic` as it arrives (the server's own bookkeeping,
        not a subscriber: it has no queue and never keeps the process from shutting down). With a
        log, this process's own events reach it twice, at the commit and from the log (a
        revocation must hold for the very next request): listeners must not mind."""
        self._listeners.setdefault(topic, []).append(listener)

    def _tell_listeners(self, event: Event) -> None:
        for listener in self._listeners.get(event.topic, ()):
            listener(event)

    def order_key(self, position: str) -> tuple[int, ...]:
        try:
            return (int(position),)
        except ValueError:
            raise BadPosition(position) from None

    def check(self, position: str) -> None:
        """Raises BadPosition, PositionExpired or ResumeUnavailable for a starting position
        (here always the last: without a log no position can be resumed from)."""
        raise ResumeUnavailable()

    def history(self, after: str) -> AsyncIterator[Event]:
        """Every event of every topic after `after`, in order (check() it first)."""
        raise ResumeUnavailable()

    @asynccontextmanager
    async def subscribe(self, topic: str, after: str | None = None) -> AsyncIterator[Subscription]:
        """Live events of `topic`, after those the log holds past `after` if given."""
        if after is not None:
            self.check(after)
        # Live events are queued from here on; the replay then reads the log up to its end, and
        # the subscription skips what both gave it.
        replay = self.history(after) if after is not None else None
        subscription = Subscription(topic, self.queue_size, self.order_key, replay)
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

    def _too_old(self, moment_ms: int) -> bool:
        return moment_ms < (time.time() - self.retention_seconds) * 1000


def _milliseconds(row: Any) -> int:
    return int(row.created_at.timestamp() * 1000)


class _Follower:
    """A task that runs `step` forever: at once when woken, else every `seconds`; failures are
    logged and retried."""

    def __init__(self, name: str, step: Callable[[], Awaitable[None]], seconds: float) -> None:
        self.name, self.step, self.seconds = name, step, seconds
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._forever(), name=self.name)

    async def stop(self, grace_seconds: float = 2.0) -> None:
        """Let a step in progress finish (cancelled inside a database transaction, asyncmy can
        leave its connection waiting on a reply until the statement time limit), then end."""
        if self._task is None:
            return
        self._stopping = True
        self.wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace_seconds)
        if not done:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _forever(self) -> None:
        while not self._stopping:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.seconds)
            self.wake.clear()
            if self._stopping:
                return
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except (SQLAlchemyError, RedisError, OSError) as error:
                log.warning("%s: %s; retrying", self.name, error)
                await asyncio.sleep(self.seconds)


class DatabaseLog(Broker):
    """SQLite: the outbox table is the log (module doc)."""

    resumable = True
    BATCH = 1000

    def __init__(
        self,
        sessions: Sessions,
        queue_size: int,
        retention_seconds: float = 86400.0,
        poll_seconds: float = 0.25,
        write_turns: asyncio.Lock | None = None,
    ) -> None:
        super().__init__(queue_size, retention_seconds)
        self._sessions = sessions
        self._write_turns = write_turns
        self._last = 0
        self._trimmed_at = 0.0
        self._follower = _Follower("quill-events-log", self._read_new, poll_seconds)

    async def start(self) -> None:
        async with self._sessions() as session:
            self._last = (await session.execute(select(func.max(outbox.c.id)))).scalar() or 0
        # The first trim a minute in, not beside the first writes (SQLite: a writer at a time).
        self._trimmed_at = time.monotonic()
        self._follower.start()

    async def stop(self) -> None:
        await super().stop()
        await self._follower.stop()

    async def committed(self, event: Event) -> None:
        """This process's listeners hear it now; the log's reader delivers it to subscribers."""
        self._tell_listeners(event)
        self._follower.wake.set()

    async def _read_new(self) -> None:
        while True:
            rows = await self._rows_after(self._last)
            for row in rows:
                self._last = row.id
                self.deliver(Event.decode(row.payload, position=f"{row.id}.{_milliseconds(row)}"))
            if len(rows) < self.BATCH:
                break
        if time.monotonic() - self._trimmed_at > 60:
            await self._trim()

    async def _rows_after(self, last: int) -> list[Any]:
        async with self._sessions() as session:
            statement = (
                select(outbox.c.id, outbox.c.payload, outbox.c.created_at)
                .where(outbox.c.id > last)
                .order_by(outbox.c.id)
                .limit(self.BATCH)
            )
            return list((await session.execute(statement)).all())

    async def _trim(self) -> None:
        self._trimmed_at = time.monotonic()
        cutoff = utcnow() - timedelta(seconds=self.retention_seconds)
        # In turn with this process's other writers (db/engine.py's write_turns): a compiled
        # write that met this DELETE's lock would go the slower ORM way instead.
        turns = self._write_turns if self._write_turns is not None else contextlib.nullcontext()
        async with turns, self._sessions() as session, session.begin():
            await session.execute(delete(outbox).where(outbox.c.created_at < cutoff))

    def order_key(self, position: str) -> tuple[int, ...]:
        pk, _, moment = position.partition(".")
        if not (pk.isdigit() and moment.isdigit()):
            raise BadPosition(position)
        return (int(pk),)

    def check(self, position: str) -> None:
        self.order_key(position)
        if self._too_old(int(position.partition(".")[2])):
            raise PositionExpired(position)

    async def history(self, after: str) -> AsyncIterator[Event]:
        last = self.order_key(after)[0]
        while True:
            rows = await self._rows_after(last)
            for row in rows:
                last = row.id
                yield Event.decode(row.payload, position=f"{row.id}.{_milliseconds(row)}")
            if len(rows) < self.BATCH:
                return


# Adds an outbox row's event to the stream unless that row was added before (KEYS[2] remembers it
# for as long as the stream keeps events), trimming entries older than ARGV[2] (ms) on the way.
_RELAY_SCRIPT = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  return redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[2], '*', 'e', ARGV[1])
end
return false
"""


class RedisStreams(Broker):
    """PostgreSQL and MariaDB: outbox rows relayed to a Redis stream (module doc)."""

    resumable = True
    BATCH = 500

    def __init__(
        self,
        url: str,
        sessions: Sessions,
        database_url: str,
        queue_size: int,
        retention_seconds: float = 86400.0,
        sweep_seconds: float = 1.0,
    ) -> None:
        super().__init__(queue_size, retention_seconds)
        self._sessions = sessions
        # Any: redis-py's types cannot tell bytes replies (decode_responses off) from str ones.
        self._redis: Any = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._reader: Any = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
        self._relay_script = self._redis.register_script(_RELAY_SCRIPT)
        self.key = stream_key(database_url)
        self._last: str | None = None
        self._relay = _Follower("quill-events-relay", self._relay_all, sweep_seconds)
        self._reading: asyncio.Task[None] | None = None
        self.following = asyncio.Event()
        self._tried = asyncio.Event()  # the reader's first attempt is over, followed or failed

    async def start(self) -> None:
        self._relay.start()
        self._reading = asyncio.create_task(self._follow(), name="quill-events-reader")
        # Start-up waits for the reader's first attempt: once the stream is followed no event
        # committed after start is missed; if Redis is unreachable, say so now and keep trying.
        with suppress(TimeoutError):
            await asyncio.wait_for(self._tried.wait(), timeout=10)
        if not self.following.is_set():
            log.warning("the event stream at %s is not reachable yet; retrying in the background", self.key)

    async def stop(self) -> None:
        await super().stop()
        await self._relay.stop()
        if self._reading is not None:
            self._reading.cancel()
            with suppress(asyncio.CancelledError):
                await self._reading
        await self._redis.aclose()
        await self._reader.aclose()

    async def committed(self, event: Event) -> None:
        """This process's listeners hear it now; the relay moves its outbox row to the stream."""
        self._tell_listeners(event)
        self._relay.wake.set()

    # The relay: outbox rows to the stream.

    async def _relay_all(self) -> None:
        while await self._relay_batch() == self.BATCH:
            pass

    async def _relay_batch(self) -> int:
        async with self._sessions() as session, session.begin():
            statement = (
                select(outbox.c.id, outbox.c.payload, outbox.c.created_at)
                .order_by(outbox.c.id)
                .limit(self.BATCH)
                .with_for_update(skip_locked=True)
            )
            rows = (await session.execute(statement)).all()
            if not rows:
                return 0
            keep_from = int((time.time() - self.retention_seconds) * 1000)
            ttl = int(self.retention_seconds) + 3600
            async with self._redis.pipeline(transaction=False) as pipe:
                for row in rows:
                    sent = f"{self.key}:sent:{row.id}:{int(row.created_at.timestamp() * 1_000_000)}"
                    await self._relay_script(
                        keys=[self.key, sent], args=[row.payload, keep_from, ttl], client=pipe
                    )
                await pipe.execute()
            await session.execute(delete(outbox).where(outbox.c.id.in_([row.id for row in rows])))
        return len(rows)

    # The reader: the stream to this process's subscribers.

    async def _follow(self) -> None:
        while True:
            try:
                if self._last is None:
                    newest = await self._reader.xrevrange(self.key, count=1)
                    self._last = newest[0][0].decode() if newest else "0-0"
                self.following.set()
                self._tried.set()
                reply = await self._reader.xread({self.key: self._last}, block=1000, count=self.BATCH)
                for _stream, entries in reply or ():
                    for entry_id, fields in entries:
                        self._last = entry_id.decode()
                        self.deliver(Event.decode(fields[b"e"], position=self._last))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                self.following.clear()
                self._tried.set()
                log.warning("reading the event stream failed (%s); retrying", error)
                await asyncio.sleep(1.0)

    def order_key(self, position: str) -> tuple[int, ...]:
        moment, _, sequence = position.partition("-")
        if not (moment.isdigit() and sequence.isdigit()):
            raise BadPosition(position)
        return (int(moment), int(sequence))

    def check(self, position: str) -> None:
        if self._too_old(self.order_key(position)[0]):
            raise PositionExpired(position)

    async def history(self, after: str) -> AsyncIterator[Event]:
        start = f"({after}"
        while True:
            entries = await self._redis.xrange(self.key, min=start, max="+", count=self.BATCH)
            for entry_id, fields in entries:
                position = entry_id.decode()
                start = f"({position}"
                yield Event.decode(fields[b"e"], position=position)
            if len(entries) < self.BATCH:
                return


def stream_key(database_url: str) -> str:
    """One stream per database: servers of different databases may share a Redis."""
    url = make_url(database_url)
    identity = f"{url.get_backend_name()}://{url.host}:{url.port}/{url.database}"
    return "quill:events:" + hashlib.sha256(identity.encode()).hexdigest()[:16]
