"""The ASGI app: `uvicorn server:app`. Wires settings, database, schema and transports; nothing imports it.

A request's way through it (README, "Layout"): uvicorn -> the middleware (request log, CORS) ->
a transport (web/graphql_http.py, web/graphql_ws.py, web/graphql_sse.py) -> the admission step
(schema/admission/) -> the runner (schema/execution/run.py: a compiled statement, or the
resolvers) -> the answer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.engine import (
    DatabaseNotReady,
    StatementCounter,
    create_engine,
    create_sessionmaker,
    is_sqlite,
    migration_problem,
    wait_for_database,
    write_turns,
)
from db.events import Broker, DatabaseLog, RedisStreams
from db.idempotency import IdempotencyKeys
from db.passwords import Passwords
from db.read_connections import ReadConnections, read_connections
from db.replicas import replicas_from
from schema import build_schema
from schema.admission.admission import Admission, Limits, RateLimiter
from schema.admission.documents import Documents
from schema.admission.persisted import (
    LocalQueryStore,
    ManifestError,
    OperationManifest,
    PersistedQueries,
    QueryStore,
    RedisQueryStore,
)
from schema.admission.tokens import AccessTokens, Revocations
from schema.compiled.plans import CompiledReads
from schema.execution.context import Services
from schema.execution.run import Operations
from schema.realtime.multiplex import Hub
from schema.realtime.revocations import RevocationListener
from schema.types.avatars import Avatars
from settings import Settings, SettingsError
from web.addresses import ClientAddresses
from web.graphiql import GraphiQLPage
from web.graphql_http import GraphQLHTTP
from web.graphql_sse import EventStreams, GraphQLSSE
from web.graphql_ws import GraphQLWebSocket, Sockets
from web.graphql_ws import Limits as SocketLimits
from web.logs import configure_logging
from web.metrics import Metrics
from web.observability import Observer, RequestLog
from web.probes import health, ready, statement_stats
from web.rate_limit import RedisTokenBuckets, TokenBuckets
from web.subscription_seats import Seats

if TYPE_CHECKING:
    from web.tracing import Tracing

log = logging.getLogger("quill")

STATIC_DIR = Path(__file__).resolve().parent / "web" / "static"


def create_app(settings: Settings | None = None) -> Starlette:
    settings = (settings or Settings.from_env()).check()
    configure_logging(settings)
    if not settings.secret_key:
        log.warning(
            "SECRET_KEY is not set: access tokens are signed with a random key that ends with this process"
        )
    engine = create_engine(settings)
    # The server's own housekeeping (revocations read from the database, the event log and its
    # relay) has connections of its own: requests never wait for it, and it is not counted as a
    # request's SQL.
    housekeeping = create_engine(replace(settings, pool_size=2, pool_max_overflow=2))
    # Behind a pooler, DATABASE_DIRECT_URL gives compiled reads a direct pool of their own.
    reads = _read_connections_for(settings)(settings.database_direct_url or settings.database_url)
    statements = StatementCounter(engine, reads)
    metrics = _metrics(settings)
    replicas = replicas_from(settings, create_engine, create_sessionmaker, _read_connections_for(settings))
    if replicas is not None:
        for replica in replicas.replicas:
            statements.watch(replica.engine, replica.reads)
        if metrics is not None:
            replicas.listeners.append(metrics.replica_checked)
    observer = Observer(metrics)
    schema = build_schema(federation=settings.federation)
    ttl = timedelta(seconds=settings.access_token_ttl_seconds)
    tokens = AccessTokens(settings.signing_key(), ttl, Revocations(ttl.total_seconds()))
    housekeeping_sessions = create_sessionmaker(housekeeping)
    sessionmaker = create_sessionmaker(engine)
    turns = write_turns(settings.database_url)
    idempotency = IdempotencyKeys(
        sessionmaker,
        timedelta(seconds=settings.idempotency_retention_seconds),
        turns,
        # The compiled path's connections are opened (lifespan, below) only where it is on.
        direct=reads if settings.compiled_reads else None,
    )
    services = Services(
        settings=settings,
        sessionmaker=sessionmaker,
        tokens=tokens,
        passwords=Passwords.from_settings(settings),
        avatars=Avatars(settings.media_dir, settings.max_avatar_bytes),
        broker=_broker(settings, housekeeping_sessions, turns),
        housekeeping=housekeeping_sessions,
        login_attempts=_login_attempts(settings),
        write_turns=turns,
        observer=observer,
        statements=statements,
        idempotency=idempotency,
        replicas=replicas,
    )
    manifest = _manifest(settings)
    persisted = PersistedQueries(_query_store(settings), manifest)
    admission = Admission(
        schema._schema,
        Documents(
            schema._schema,
            max_tokens=settings.max_tokens,
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_aliases,
            introspection=settings.introspection,
            max_cached_bytes=settings.document_cache_bytes,
        ),
        Limits(
            max_body_bytes=settings.max_body_bytes,
            max_variables_bytes=settings.max_variables_bytes,
            max_document_bytes=settings.max_document_bytes,
            max_cost=settings.max_query_nodes,
            operation_timeout_seconds=settings.operation_timeout_seconds,
            max_prepared_bytes=settings.prepared_cache_bytes,
        ),
        tokens,
        persisted,
        manifest=manifest,
        rate_limiter=_rate_limiter(settings),
        observer=observer,
        idempotency=idempotency,
    )
    compiled = CompiledReads(settings.compiled_reads, reads, engine.dialect)
    compiled.bind(schema)
    tracing = _tracing(settings, engine, reads)
    operations = Operations(
        schema,
        services,
        compiled if compiled.enabled else None,
        timeout_seconds=settings.operation_timeout_seconds,
        tracer=tracing,
    )
    stream_limits = SocketLimits(
        init_timeout_seconds=settings.ws_init_timeout_seconds,
        send_timeout_seconds=settings.ws_send_timeout_seconds,
    )
    # WebSocket and SSE subscriptions count against the same limits.
    seats = Seats(
        per_connection=settings.ws_max_subscriptions_per_socket,
        per_client=settings.ws_max_subscriptions_per_client,
        total=settings.ws_max_subscriptions,
    )
    sockets = Sockets(stream_limits, seats)
    event_streams = EventStreams(stream_limits, seats)

    def revoked(user_id: int) -> None:
        sockets.revoked(user_id)
        event_streams.revoked(user_id)

    revocations = RevocationListener(services, on_revoked=revoked)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await wait_for_database(engine, settings.database_wait_seconds)
            if problem := await migration_problem(engine):
                raise DatabaseNotReady(f"refusing to serve: {problem}")
            await services.broker.start()
            await revocations.start()
            if reads is not None and compiled.enabled:
                await reads.start()
            if replicas is not None:
                await replicas.start()
            _tune_garbage_collector()
        except DatabaseNotReady as refusal:
            app.state.startup_refusal = str(refusal)
            await engine.dispose()
            raise
        _end_subscriptions_before_exit(services.broker, operations.hub, event_streams)
        try:
            yield
        finally:
            if reads is not None:
                await reads.close()
            if replicas is not None:
                await replicas.stop()
            await revocations.stop()
            await services.broker.stop()
            await engine.dispose()
            await housekeeping.dispose()
            await persisted.close()
            if tracing is not None:
                tracing.shutdown()

    graphiql = GraphiQLPage()
    addresses = ClientAddresses(settings.trusted_proxies)
    middleware = _middleware(settings, metrics)
    middleware.append(
        Middleware(
            GraphQLWebSocket,
            admission=admission,
            operations=operations,
            tokens=tokens,
            addresses=addresses,
            sockets=sockets,
            path="/graphql",
        )
    )
    middleware.append(
        Middleware(
            GraphQLSSE,
            admission=admission,
            operations=operations,
            tokens=tokens,
            addresses=addresses,
            streams=event_streams,
            path="/graphql",
        )
    )
    middleware.append(
        Middleware(
            GraphQLHTTP,
            admission=admission,
            operations=operations,
            addresses=addresses,
            graphiql=graphiql.asgi_page,
            path="/graphql",
            max_batch=settings.max_batch,
            upload_allowance=settings.max_avatar_bytes,
            get_cache_max_age_seconds=settings.get_cache_max_age_seconds,
        )
    )
    app = Starlette(
        routes=[
            Route("/graphiql", graphiql.page),
            Route("/graphiql/assets/{name}", graphiql.asset),
            Route("/health", health),
            Route("/ready", ready),
            Mount(
                "/media", _NoSniff(StaticFiles(directory=settings.media_dir, check_dir=False)), name="media"
            ),
            Mount("/static", _NoSniff(StaticFiles(directory=STATIC_DIR)), name="static"),
            *([Route("/__stats", statement_stats)] if settings.stats_endpoint else []),
            *([Route("/metrics", metrics.endpoint)] if metrics else []),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.statements = statements
    app.state.admission = admission
    app.state.operations = operations
    app.state.schema = schema
    app.state.compiled_reads = compiled
    app.state.reads = reads
    app.state.replicas = replicas
    app.state.services = services
    app.state.sockets = sockets
    app.state.event_streams = event_streams
    app.state.revocations = revocations
    # Every way in, as the admission step names them (Request.transport): tests/test_entrances.py
    # sends each hostile request through each of them.
    app.state.transports = ("http", "websocket", "sse")
    app.state.startup_refusal = None
    app.state.ready_timeout_seconds = settings.connect_timeout_seconds
    return app


def _read_connections_for(settings: Settings) -> Callable[[str], ReadConnections | None]:
    """The compiled reads' connections to a database of these settings (the primary, a replica)."""

    def connections(url: str) -> ReadConnections | None:
        return read_connections(
            url,
            pool_size=settings.read_pool_size,
            statement_timeout_ms=settings.statement_timeout_ms,
            connect_timeout_seconds=settings.connect_timeout_seconds,
            sqlite_synchronous=settings.sqlite_synchronous,
            pooler="none" if url == settings.database_direct_url else settings.database_pooler,
        )

    return connections


def _rate_limiter(settings: Settings) -> RateLimiter | None:
    if not settings.rate_limit:
        return None
    burst, per_second = settings.rate_limit_burst, settings.rate_limit_per_second
    if settings.redis_url:
        return RedisTokenBuckets(settings.redis_url, burst=burst, per_second=per_second)
    return TokenBuckets(burst=burst, per_second=per_second)


def _login_attempts(settings: Settings) -> RateLimiter:
    burst, per_second = settings.login_attempts_burst, 1 / max(settings.login_attempt_refill_seconds, 1)
    if settings.redis_url:
        return RedisTokenBuckets(
            settings.redis_url, burst=burst, per_second=per_second, prefix="quill:logins:"
        )
    return TokenBuckets(burst=burst, per_second=per_second)


def _manifest(settings: Settings) -> OperationManifest | None:
    if not settings.operations_manifest:
        return None
    try:
        return OperationManifest.load(settings.operations_manifest)
    except ManifestError as error:
        raise SettingsError(str(error)) from None


def _query_store(settings: Settings) -> QueryStore | None:
    """Where APQ texts are kept: Redis when configured (shared by all processes), else in process."""
    if not settings.persisted_queries:
        return None
    if settings.redis_url:
        return RedisQueryStore(settings.redis_url)
    return LocalQueryStore(settings.persisted_query_cache_bytes)


def _broker(
    settings: Settings, housekeeping: async_sessionmaker[AsyncSession], turns: asyncio.Lock | None
) -> Broker:
    """Where change events are kept and how they cross processes (db/events.py)."""
    size, retention = settings.subscription_queue_size, settings.event_retention_seconds
    if is_sqlite(settings.database_url):
        return DatabaseLog(housekeeping, size, retention, write_turns=turns)
    if settings.event_broker_url:
        return RedisStreams(settings.event_broker_url, housekeeping, settings.database_url, size, retention)
    log.warning(
        "EVENT_BROKER_URL (or REDIS_URL) is not set: subscribers see the changes made by their own "
        "process only, and cannot resume from a cursor"
    )
    return Broker(size, retention)


def _end_subscriptions_before_exit(
    broker: Broker, hub: Hub | None, streams: EventStreams, grace_seconds: float = 5.0
) -> None:
    """On SIGTERM uvicorn closes WebSockets at once (code 1012), and waits for HTTP responses to
    finish, which an SSE stream never does by itself. Before it goes on, end every subscription,
    so each client receives `complete` for it, then every SSE stream: wrap uvicorn's handler, end
    them, and hand over when they are done or the grace period is over."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        return  # not running under uvicorn (the tests drive the app in process)
    loop = asyncio.get_running_loop()

    async def drain_then_exit(signum: int, frame: FrameType | None) -> None:
        if hub is not None:
            hub.end_all()
        broker.end_all()
        await broker.wait_idle(grace_seconds)
        streams.end_all()
        previous(signum, frame)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, previous)  # a second SIGTERM goes straight to uvicorn
        loop.call_soon_threadsafe(lambda: loop.create_task(drain_then_exit(signum, frame)))

    signal.signal(signal.SIGTERM, on_sigterm)


def _tune_garbage_collector() -> None:
    """A nested page builds thousands of short-lived objects per request. Python's default cyclic
    collector then runs every 700 allocations and, under concurrent requests, keeps rescanning
    the long-lived objects of the app itself. Freeze those (the schema, the modules, the engine)
    out of its view and let the youngest generation grow larger before a collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _metrics(settings: Settings) -> Metrics | None:
    if not settings.metrics:
        return None
    return Metrics(settings.metrics_max_operation_names, settings.metrics_token)


def _tracing(settings: Settings, engine: AsyncEngine, reads: ReadConnections | None) -> Tracing | None:
    if settings.tracing == "off":
        return None
    from web.tracing import Tracing  # the optional `tracing` extra: imported only when it is on

    return Tracing.start(settings, engine, reads)


def _middleware(settings: Settings, metrics: Metrics | None) -> list[Middleware]:
    middleware = [Middleware(RequestLog, metrics=metrics), Middleware(_OneLineStartupFailure)]
    if origins := settings.cors():
        middleware.append(
            Middleware(
                CORSMiddleware,
                **origins,
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["*"],
                # What a browser's script may read of an answer beyond the plain headers.
                expose_headers=["Idempotent-Replayed", "Retry-After"],
            )
        )
    return middleware


class _NoSniff:
    """Files are served as what their name says, never as what a browser guesses from their bytes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), (b"x-content-type-options", b"nosniff")],
                }
            await send(message)

        await self.app(scope, receive, send_nosniff)


class _OneLineStartupFailure:
    """Reports a database the server refuses to serve as its one-line reason, not a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_reason(message: Message) -> None:
            refusal = scope["app"].state.startup_refusal
            if message["type"] == "lifespan.startup.failed" and refusal:
                message = {**message, "message": refusal}
            await send(message)

        await self.app(scope, receive, send_reason)


app = create_app()
