"""Read-your-writes for read replicas (db/replicas.py): who must read from the primary for now.

A pin is a client key ("user:7", "ip:10.0.0.1") and a position in the primary's WAL: the client's
queries go to the primary until a replica has replayed past it, and at most until the pin ends.
A process keeps its own pins in a dict. With REDIS_URL they are written to Redis too, and a query
by a client this process has not pinned looks there (one MGET), so a write through one process
is read through any other. If Redis does not answer, the query goes to the primary: never a read
that may be older than the client's own write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis.asyncio as redis

log = logging.getLogger("quill.replicas")

UNKNOWN = 2**63 - 1  # past any position: the primary answers
_PREFIX = "quill:pin:"
# Each key keeps the highest position pinned and the later end: a pin only ever grows. The
# position is stored as the text it came as (Lua's numbers would print a large one rounded).
_PIN = """
for _, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  local kept = ARGV[1]
  if held and tonumber(held) > tonumber(ARGV[1]) then kept = held end
  redis.call('SET', key, kept, 'PX', ARGV[2])
end
"""

T = TypeVar("T")


@dataclass
class _Pin:
    position: int
    until: float  # time.monotonic()


class Pins:
    def __init__(self, redis_url: str | None = None) -> None:
        self._local: dict[str, _Pin] = {}
        self._redis: Any = None
        if redis_url:
            self._redis = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
            self._script = self._redis.register_script(_PIN)

    @property
    def shared(self) -> bool:
        return self._redis is not None

    async def pin(self, keys: tuple[str, ...], position: int, seconds: float) -> None:
        until = time.monotonic() + seconds
        for key in keys:
            held = self._local.get(key)
            self._local[key] = _Pin(max(position, held.position if held else -1), until)
        if len(self._local) > 100_000:  # a flood of clients: forget the ones past their time
            now = time.monotonic()
            self._local = {key: pin for key, pin in self._local.items() if pin.until >= now}
        if self._redis is not None:
            try:
                await self._script(keys=[_PREFIX + key for key in keys], args=[position, int(seconds * 1000)])
            except redis.RedisError as error:
                log.warning(
                    "sharing a read-your-writes pin failed (%s): other processes may read older rows", error
                )

    def local_floor(self, keys: tuple[str, ...]) -> int:
        """The highest position this process pinned for these clients (-1 if none)."""
        now, floor = time.monotonic(), -1
        for key in keys:
            pin = self._local.get(key)
            if pin is not None:
                if pin.until < now:
                    del self._local[key]
                else:
                    floor = max(floor, pin.position)
        return floor

    async def shared_floor(self, keys: tuple[str, ...]) -> int:
        """The highest position any process pinned for these clients (-1 if none), UNKNOWN if
        Redis does not say."""
        if self._redis is None:
            return -1
        try:
            held = await self._redis.mget([_PREFIX + key for key in keys])
        except redis.RedisError as error:
            log.warning("reading read-your-writes pins failed (%s): reading from the primary", error)
            return UNKNOWN
        return max((int(value) for value in held if value is not None), default=-1)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


class Coalesced(Generic[T]):
    """One read shared by the callers who ask while it waits to start: each caller gets a value
    read after it asked (it joins the read that starts next, never one already under way, which
    may have begun before the caller's write committed). Under many concurrent mutations, one
    position read serves all of those that committed while the previous one ran."""

    def __init__(self, read: Callable[[], Awaitable[T]]) -> None:
        self._read = read
        self._running: asyncio.Future[T] | None = None
        self._next: asyncio.Future[T] | None = None

    async def __call__(self) -> T:
        if self._running is None:
            self._running = self._start()
            return await asyncio.shield(self._running)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._next)

    def _start(self) -> asyncio.Future[T]:
        running = asyncio.ensure_future(self._read())
        running.add_done_callback(self._finished)
        return running

    def _finished(self, done: asyncio.Future[T]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved here: callers who stopped waiting must not leave it unread
        self._running = None
        waiting, self._next = self._next, None
        if waiting is None:
            return
        self._running = self._start()
        self._running.add_done_callback(lambda read: _settle(waiting, read))


def _settle(waiting: asyncio.Future[T], read: asyncio.Future[T]) -> None:
    if waiting.done():
        return
    if read.cancelled():
        waiting.cancel()
    elif (error := read.exception()) is not None:
        waiting.set_exception(error)
    else:
        waiting.set_result(read.result())
