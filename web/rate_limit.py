"""Rate limits per client: token buckets charged by query cost (schema/limits.py).

A bucket holds up to `burst` points and refills `per_second` points a second; an operation takes
its cost in points, and is refused (HTTP 429 with Retry-After) when the bucket holds fewer. The
client is the logged-in user, or the IP address of an anonymous request.

With REDIS_URL set, buckets live in Redis, updated by one Lua script, so every server process
shares them; otherwise they live in this process (bounded in the number of clients). A rate
limiter that cannot reach Redis lets requests through (and logs it): it must not take the API down.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger("quill.rate_limit")


class TokenBuckets:
    def __init__(self, *, burst: int, per_second: float, max_clients: int = 100_000) -> None:
        self.burst, self.per_second, self.max_clients = burst, per_second, max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when)

    async def charge(self, client: str, points: int) -> float | None:
        """None if granted; otherwise the seconds until the client could afford `points`."""
        now = time.monotonic()
        tokens, updated = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) * self.per_second)
        if points > tokens:
            return (points - tokens) / self.per_second
        self._buckets[client] = (tokens - points, now)
        self._buckets.move_to_end(client)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)  # the longest idle: its bucket would be full by now
        return None


# Redis's own clock, so that all processes agree; the key expires once the bucket would be full.
_CHARGE = """
local burst, per_second, points = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * per_second)
local wait = -1
if points > tokens then
  wait = (points - tokens) / per_second
else
  tokens = tokens - points
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'updated', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / per_second) + 1)
return tostring(wait)
"""


class RedisTokenBuckets:
    def __init__(self, url: str, *, burst: int, per_second: float, prefix: str = "quill:rate:") -> None:
        self.burst, self.per_second, self.prefix = burst, per_second, prefix
        self._redis = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._script = self._redis.register_script(_CHARGE)
        self._last_warning = 0.0

    async def charge(self, client: str, points: int) -> float | None:
        try:
            wait = float(
                await self._script(keys=[self.prefix + client], args=[self.burst, self.per_second, points])
            )
        except (RedisError, OSError) as exc:
            if time.monotonic() - self._last_warning > 60:
                self._last_warning = time.monotonic()
                log.warning("rate limit not applied: Redis is unreachable (%s)", exc)
            return None
        return None if wait < 0 else wait

    async def close(self) -> None:
        await self._redis.aclose()
