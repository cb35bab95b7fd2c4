"""A long-lived connection's alarm for its access token's expiry (web/graphql_ws.py, web/graphql_sse.py).

A WebSocket or an SSE stream lives as long as its token: at `exp` the transport checks the token
again (it may have been renewed, or revoked meanwhile) and ends what it serves if it is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from schema.admission.tokens import Authentication


class TokenClock:
    def __init__(self, on_expiry: Callable[[], None]) -> None:
        self.on_expiry = on_expiry
        self._expires_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, authentication: Authentication) -> None:
        """Ring at this token's expiry (instead of an earlier token's); never for no expiry."""
        self.stop()
        self._expires_at = authentication.expires_at
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        if self._expires_at is not None:
            delay = max(self._expires_at - time.time(), 0) + 0.01
            self._timer = asyncio.get_running_loop().call_later(delay, self._ring)

    def _ring(self) -> None:
        if self._expires_at is not None and time.time() < self._expires_at:  # a timer may fire early
            self._schedule()
            return
        self._timer = None
        self.on_expiry()
