"""What resolvers get (`info.context`): the operation's one session, its loaders, its viewer.

Lifecycle (the one design decision to understand): schema/execution/run.py builds a `Context`
for each operation an admitted request runs (each HTTP operation, each WebSocket or SSE
operation, and for a subscription answered by the resolvers, the subscription as a whole), and
closes its session in `finally`. The session is opened on first use and released before an
answer is sent, so no connection is ever held while a client reads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.idempotency import IdempotencyKeys
from db.passwords import Passwords
from db.session import RequestDb
from db.visibility import Viewer
from schema.admission.tokens import AccessTokens, Authentication
from settings import Settings

if TYPE_CHECKING:
    from db.engine import StatementCounter
    from db.events import Broker
    from db.replicas import Replicas
    from schema.admission.admission import RateLimiter
    from schema.execution.loaders import Loaders
    from schema.execution.object_reads import ObjectReads
    from schema.telemetry import OperationObserver


@dataclass(slots=True)
class Services:
    """The app-wide objects the server builds at start-up and resolvers may use."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    tokens: AccessTokens
    passwords: Passwords
    avatars: Any  # schema/types/avatars.py's Avatars (the machinery does not import nouns)
    broker: Broker
    # Failed logins per account (schema/types/accounts.py), whatever address they come from.
    login_attempts: RateLimiter | None = None
    # The server's own housekeeping sessions, on a connection of their own (server.py).
    housekeeping: async_sessionmaker[AsyncSession] | None = None
    # SQLite's writers of this process take turns (db/engine.py's write_turns); None elsewhere.
    write_turns: asyncio.Lock | None = None
    # What each operation did goes to the observer (logs, metrics); the counter counts its SQL.
    observer: OperationObserver | None = None
    statements: StatementCounter | None = None
    # Mutations' answers kept under their clients' Idempotency-Keys (db/idempotency.py).
    idempotency: IdempotencyKeys | None = None
    # PostgreSQL read replicas (db/replicas.py): which one a query or an event's read uses.
    replicas: Replicas | None = None


@dataclass(slots=True)
class Context:
    """Per GraphQL operation."""

    services: Services
    db: RequestDb  # this operation's only AsyncSession
    loaders: Loaders  # built per operation (per event in a subscription): caches never go stale
    authentication: Authentication
    transport: str  # "http", "websocket" or "sse"
    client: str  # who the rate limit counts: "user:7" or "ip:10.0.0.1"
    deadline: float  # time.monotonic() past which the operation is stopped
    selection_cache: dict[Any, Any] = field(default_factory=dict)
    # Payload objects read by one compiled statement (mutations, with compiled reads on).
    objects: ObjectReads | None = None

    @property
    def viewer(self) -> Viewer:
        return self.authentication.viewer

    def renew_loaders(self) -> None:
        """Forget what was loaded: a subscription's next event must see the rows as they are now."""
        self.loaders = type(self.loaders)(self.db, self.viewer)


Info = strawberry.Info[Context, None]
