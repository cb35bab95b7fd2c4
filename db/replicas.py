"""PostgreSQL read replicas (DATABASE_REPLICA_URLS): which one answers a read, and when none may.

Queries go to a healthy replica, mutations to the primary. The rules, and why they are enough:
- **Health.** Every `replica_check_seconds` the primary's WAL position (LSN) is sampled, then each
  replica's replayed LSN. A replica's lag is how long ago the primary was at a position the
  replica has not replayed yet (0 when it has replayed the last sample): on an idle primary it
  stays 0, under writes it is at most one check interval when the replica keeps up. A replica
  that does not answer, is not in recovery (a promoted or mistaken primary), or lags past
  `replica_max_lag_seconds` is skipped until a later check finds it well again; `/ready` and the
  metrics say which and why. A compiled read that fails on a replica marks it down at once and
  is answered on the primary.
- **Read-your-writes.** After a mutation commits, the primary's current LSN (which is past the
  commit) is kept for its viewer and for its client address: a query by either is answered on
  the primary until a replica's replayed LSN has passed it (then by that replica). A pin lasts at
  most the lag bound plus two checks: a replica still behind by then is no longer healthy.
  With REDIS_URL, every process sees every process's pins (db/replica_pins.py).
- **Subscription events.** An event is read after its write committed, and a subscriber must see
  it: the primary's LSN is sampled when the event is read, and a replica answers only once it has
  replayed that far (it is asked again for up to `_EVENT_WAIT_SECONDS`), else the primary does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import count
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.read_connections import PostgresReads, ReadConnections
from db.replica_pins import UNKNOWN, Coalesced, Pins
from settings import Settings

log = logging.getLogger("quill.replicas")

# LSNs as numbers (bytes of WAL since 0/0), so that they compare and subtract. The primary's is
# where WAL is inserted, not where it is written: with synchronous_commit=off a commit's record
# may still be in the WAL buffers, past the written position.
_PRIMARY_LSN = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8"
_REPLICA_STATE = "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8"
# How long a subscription event's read waits for a replica to replay the event's write.
_EVENT_WAIT_SECONDS = 0.05

StateListener = Callable[["Replica"], None]  # told after each check (web/metrics.py)


@dataclass(eq=False)
class Replica:
    """One replica: its connections (the resolvers' and the compiled reads') and its last check."""

    name: str  # host:port/database, no credentials: it appears in /ready, logs and metrics
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    reads: PostgresReads | None  # None with compiled reads off
    dsn: str
    checks: asyncpg.Pool | None = None  # one connection for the checks, opened on first use
    healthy: bool = False  # not before its first check
    problem: str | None = "not checked yet"
    replayed: int = -1
    lag_seconds: float = 0.0
    reads_served: int = 0
    broken: bool = True  # its connections may be dead (not connected yet, or it was unreachable)

    def state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "healthy": self.healthy,
            "lag_seconds": round(self.lag_seconds, 3),
            **({"problem": self.problem} if self.problem else {}),
        }


@dataclass
class Replicas:
    replicas: list[Replica]
    primary_dsn: str
    max_lag_seconds: float
    check_seconds: float
    connect_timeout_seconds: float
    pooled: bool = False  # behind a transaction-mode pooler: no kept prepared statements
    pins: Pins = field(default_factory=Pins)
    listeners: list[StateListener] = field(default_factory=list)
    _samples: deque[tuple[float, int]] = field(default_factory=deque)  # (monotonic, primary LSN)
    _turn: count[int] = field(default_factory=count)
    _primary: asyncpg.Pool | None = None
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        # The primary's position as of after the caller asked, one read for many callers.
        self._position = Coalesced(self._primary_lsn)

    # Choosing.

    async def for_query(self, keys: tuple[str, ...]) -> Replica | None:
        """The replica a query by these clients reads from, or None for the primary."""
        floor = self.pins.local_floor(keys)
        if not self._eligible(floor):
            return None  # no replica is that far yet: no need to ask the other processes
        if self.pins.shared:
            floor = max(floor, await self.pins.shared_floor(keys))
        return self._pick(floor)

    async def for_event(self) -> Replica | None:
        """A replica that has replayed every write committed before now, or None (the primary)."""
        if not self._usable():
            return None
        try:
            target = await self._position()
        except Exception as error:  # noqa: BLE001 - the primary answers the read then, or says why
            log.warning("reading the primary's WAL position failed: %s", error)
            return None
        deadline = time.monotonic() + _EVENT_WAIT_SECONDS
        while (chosen := self._pick(target)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            # It may have replayed since the last check. Out of time is not out of order: only
            # the periodic checks, with their full timeout, judge a replica unreachable.
            await self._check_replicas(remaining, judge=False)
            if not any(r.healthy and r.replayed >= target for r in self.replicas):
                await asyncio.sleep(0.002)
        return chosen

    def _usable(self) -> bool:
        return any(replica.healthy for replica in self.replicas)

    def _eligible(self, floor: int) -> list[Replica]:
        return [replica for replica in self.replicas if replica.healthy and replica.replayed >= floor]

    def _pick(self, floor: int) -> Replica | None:
        """A healthy replica that has replayed past `floor`, taking turns among them."""
        eligible = self._eligible(floor)
        if not eligible:
            return None
        chosen = eligible[next(self._turn) % len(eligible)]
        chosen.reads_served += 1
        return chosen

    async def wrote(self, keys: tuple[str, ...]) -> None:
        """A mutation by these clients committed: their reads stay on the primary until a replica
        has replayed this far."""
        if not self.replicas:
            return
        try:
            lsn = await self._position()
        except Exception as error:  # noqa: BLE001 - then pin past anything a replica can have
            log.warning("reading the primary's WAL position failed: %s", error)
            lsn = UNKNOWN
        await self.pins.pin(keys, lsn, self.max_lag_seconds + 2 * self.check_seconds)

    def failed(self, replica: Replica, error: object) -> None:
        """A read on the replica failed: skip it until a check finds it well."""
        if replica.healthy:
            log.warning("replica %s failed a read (%s); reading from the primary", replica.name, error)
        replica.healthy, replica.problem = False, "a read failed; waiting for the next check"
        replica.broken = True

    # Checking.

    async def start(self) -> None:
        self._primary = await asyncpg.create_pool(
            self.primary_dsn,
            min_size=1,
            max_size=2,
            timeout=self.connect_timeout_seconds,
            statement_cache_size=self._statement_cache_size,
        )
        await self.check()  # a replica down at start-up joins once a check finds it well
        self._task = asyncio.create_task(self._keep_checking(), name="replica checks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for replica in self.replicas:
            if replica.reads is not None:
                await replica.reads.close()
            if replica.checks is not None:
                await replica.checks.close()
            await replica.engine.dispose()
        if self._primary is not None:
            await self._primary.close()
        await self.pins.close()

    async def _keep_checking(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                await self.check()
            except Exception:  # a bug must not stop the checks: the replicas would be stuck as they are
                log.exception("checking the replicas failed")

    async def check(self) -> None:
        """Sample the primary's position, then each replica's; tell the listeners."""
        now = time.monotonic()
        try:
            self._samples.append((now, await self._primary_lsn()))
        except Exception as error:  # noqa: BLE001 - without the primary's position, lag is unknown
            log.warning("reading the primary's WAL position failed: %s", error)
        # Keep what the lag bound needs, and one sample older than it.
        while len(self._samples) > 2 and now - self._samples[1][0] > self.max_lag_seconds:
            self._samples.popleft()
        await self._check_replicas(self.connect_timeout_seconds)
        for replica in self.replicas:
            for listener in self.listeners:
                listener(replica)

    async def _check_replicas(self, seconds: float, *, judge: bool = True) -> None:
        await asyncio.gather(*(self._check(replica, seconds, judge=judge) for replica in self.replicas))

    async def _check(self, replica: Replica, seconds: float, *, judge: bool = True) -> None:
        """Read the replica's state; `judge=False` (a wait of its own, shorter than a check's
        timeout): running out of that time leaves the replica as the last check found it."""
        try:
            async with asyncio.timeout(max(seconds, 0.001)):
                if replica.checks is None:
                    replica.checks = await asyncpg.create_pool(
                        replica.dsn,
                        min_size=0,
                        max_size=1,
                        timeout=self.connect_timeout_seconds,
                        statement_cache_size=self._statement_cache_size,
                    )
                in_recovery, replayed = await replica.checks.fetchrow(_REPLICA_STATE)
        except TimeoutError:
            if not judge:
                return
            replica.broken = True
            self._set(replica, False, "unreachable: TimeoutError")
            return
        except Exception as error:  # noqa: BLE001 - whatever it is, the replica is not usable
            replica.broken = True
            self._set(replica, False, f"unreachable: {type(error).__name__}")
            return
        if not in_recovery:
            self._set(replica, False, "not in recovery: it is a primary, not a replica")
            return
        replica.replayed = replayed
        replica.lag_seconds = self._lag(replayed)
        if replica.lag_seconds > self.max_lag_seconds:
            self._set(replica, False, f"lagging {replica.lag_seconds:.1f}s (limit {self.max_lag_seconds:g}s)")
            return
        if replica.broken:
            try:
                await self._reconnect(replica)
            except Exception as error:  # noqa: BLE001 - down again: a later check tries again
                self._set(replica, False, f"unreachable: {type(error).__name__}")
                return
        self._set(replica, True, None)

    async def _reconnect(self, replica: Replica) -> None:
        """New connections for a replica back from being unreachable (or not yet connected):
        the pooled ones died with it, and would each fail a read first."""
        await replica.engine.dispose()
        if replica.reads is not None:
            await replica.reads.renew()
        replica.broken = False

    def _lag(self, replayed: int) -> float:
        """Seconds since the primary was at a position the replica has not replayed (0 if none)."""
        for sampled_at, lsn in self._samples:
            if lsn > replayed:
                return time.monotonic() - sampled_at
        return 0.0

    def _set(self, replica: Replica, healthy: bool, problem: str | None) -> None:
        if healthy != replica.healthy:
            if healthy:
                log.info("replica %s is healthy: reads go to it", replica.name)
            else:
                log.warning("replica %s is skipped: %s", replica.name, problem)
        replica.healthy, replica.problem = healthy, problem

    async def _primary_lsn(self) -> int:
        assert self._primary is not None, "start() first"
        async with asyncio.timeout(self.connect_timeout_seconds):
            lsn: int = await self._primary.fetchval(_PRIMARY_LSN)
        return lsn

    @property
    def _statement_cache_size(self) -> int:
        return 0 if self.pooled else 100

    def states(self) -> list[dict[str, Any]]:
        return [replica.state() for replica in self.replicas]


def replicas_from(
    settings: Settings,
    engine_for: Callable[[Settings], AsyncEngine],
    sessionmaker_for: Callable[[AsyncEngine], async_sessionmaker[AsyncSession]],
    reads_for: Callable[[str], ReadConnections | None],
) -> Replicas | None:
    """The replicas the settings name (None without any): each gets the primary's pool settings."""
    if not settings.database_replica_urls:
        return None
    replicas = []
    for url in settings.database_replica_urls:
        engine = engine_for(replace(settings, database_url=url))
        reads = reads_for(url) if settings.compiled_reads else None
        assert reads is None or isinstance(reads, PostgresReads)
        replicas.append(Replica(_name(url), engine, sessionmaker_for(engine), reads, _dsn(url)))
    return Replicas(
        replicas,
        _dsn(settings.database_url),
        max_lag_seconds=settings.replica_max_lag_seconds,
        check_seconds=settings.replica_check_seconds,
        connect_timeout_seconds=settings.connect_timeout_seconds,
        pooled=settings.database_pooler == "transaction",
        pins=Pins(settings.redis_url),
    )


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _name(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"
