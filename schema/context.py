"""What resolvers get: the operation's session, data loaders and viewer.

Lifecycle (the one design decision to understand):
1. The HTTP view or the WebSocket handler builds a `ConnectionContext` per request or socket:
   the app's services and the viewer from the bearer token. No session yet.
2. `OperationScope.on_operation` (schema/operation.py) replaces it, for this operation only,
   with a `Context` holding a fresh `RequestDb` and fresh `Loaders`, and closes the session in
   `finally`: one session per HTTP request, one per subscription operation, always closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.websockets import WebSocket

from db.events import Broker
from db.passwords import Passwords
from db.session import RequestDb
from db.visibility import Viewer
from schema.tokens import AccessTokens, Authentication
from settings import Settings

if TYPE_CHECKING:
    from db.engine import StatementCounter
    from schema.avatars import Avatars
    from schema.limits import RateLimiter
    from schema.loaders import Loaders
    from schema.telemetry import OperationObserver


@dataclass(slots=True)
class Services:
    """The app-wide objects the server builds at start-up and resolvers may use."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    tokens: AccessTokens
    passwords: Passwords
    avatars: Avatars
    broker: Broker
    rate_limiter: RateLimiter | None = None
    # What each operation did goes to the observer (logs, metrics); the counter counts its SQL.
    observer: OperationObserver | None = None
    statements: StatementCounter | None = None


@dataclass(slots=True)
class ConnectionContext:
    """Per HTTP request or per WebSocket: who is asking, and through what."""

    services: Services
    request: Request | WebSocket
    authentication: Authentication = field(default_factory=Authentication)
    # Set by Strawberry's WebSocket handlers from the connection_init payload.
    connection_params: dict[str, Any] | None = None
    # Operations the compiled read path answered (schema/compiled_reads.py), for the telemetry.
    compiled_operations: int = 0
    # When the current operation must be over (time.monotonic()), set where its time limit starts.
    deadline: float | None = None

    @property
    def viewer(self) -> Viewer:
        return self.authentication.viewer

    @property
    def transport(self) -> str:
        return "http" if isinstance(self.request, Request) else "websocket"

    @property
    def client(self) -> str:
        """Who the rate limit counts: the user, or the address of an anonymous request."""
        if self.viewer.id is not None:
            return f"user:{self.viewer.id}"
        if self.services.settings.trust_forwarded_for:
            forwarded = self.request.headers.get("x-forwarded-for", "")
            if forwarded:
                return f"ip:{forwarded.split(',')[0].strip()}"
        client = self.request.client
        return f"ip:{client.host if client else 'unknown'}"


@dataclass(slots=True)
class Context:
    """Per GraphQL operation."""

    db: RequestDb  # this operation's only AsyncSession
    loaders: Loaders  # built per operation (per event in a subscription): caches never go stale
    viewer: Viewer
    connection: ConnectionContext
    selection_cache: dict[Any, frozenset[str]] = field(default_factory=dict)

    @property
    def services(self) -> Services:
        return self.connection.services

    def renew_loaders(self) -> None:
        """Forget what was loaded: a subscription's next event must see the rows as they are now."""
        self.loaders = type(self.loaders)(self.db, self.viewer)


Info = strawberry.Info[Context, None]
