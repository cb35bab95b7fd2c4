"""How many subscriptions this process holds, over every transport that streams (WebSocket, SSE).

One count for all of them, so a client cannot pass its limit by opening its subscriptions on
another transport: a connection (a socket, an SSE stream) holds at most `per_connection`, a
client address at most `per_client` over all its connections, the process at most `total`
(WS_MAX_SUBSCRIPTIONS_PER_SOCKET, WS_MAX_SUBSCRIPTIONS_PER_CLIENT, WS_MAX_SUBSCRIPTIONS).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Seats:
    def __init__(self, *, per_connection: int, per_client: int, total: int) -> None:
        self.per_connection, self.per_client, self.total = per_connection, per_client, total
        self.taken = 0
        self.by_client: Counter[str] = Counter()

    def refuses(self, on_connection: int, address: str) -> str | None:
        """Why one more subscription is refused to a connection holding `on_connection`, if it is."""
        if on_connection >= self.per_connection:
            return f"this connection holds {self.per_connection} subscriptions, the most it may"
        if self.by_client[address] >= self.per_client:
            return f"this client holds {self.per_client} subscriptions, the most it may"
        if self.taken >= self.total:
            return "this server holds as many subscriptions as it may; try another or later"
        return None

    @contextmanager
    def seat(self, address: str) -> Iterator[None]:
        """Hold one seat for the block's duration (the subscription's life)."""
        self.taken += 1
        self.by_client[address] += 1
        try:
            yield
        finally:
            self.taken -= 1
            self.by_client[address] -= 1
            if not self.by_client[address]:
                del self.by_client[address]


def too_many(why: str) -> list[dict[str, Any]]:
    """The errors a refused subscription is answered with, on every transport."""
    return [{"message": f"Too many subscriptions: {why}.", "extensions": {"code": "TOO_MANY_SUBSCRIPTIONS"}}]
