"""The ASGI app: `uvicorn server:app`. Wires settings, database and schema; nothing imports it."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.engine import (
    DatabaseNotReady,
    StatementCounter,
    create_engine,
    create_sessionmaker,
    is_postgres,
    migration_problem,
    wait_for_database,
)
from db.events import Broker, PostgresBroker
from db.passwords import Passwords
from db.read_connections import ReadConnections, read_connections
from schema import build_schema
from schema.avatars import Avatars
from schema.compiled_reads import CompiledReads
from schema.context import Services
from schema.extensions import DocumentCache
from schema.limits import RateLimiter
from schema.operations import ManifestError, OperationManifest
from schema.tokens import AccessTokens
from settings import Settings, SettingsError
from web.compiled_http import KnownQueries
from web.graphiql import GraphiQLPage
from web.graphql_http import GraphQLHTTP
from web.graphql_ws import GraphQLWebSocket
from web.limits import BodySizeLimit
from web.logs import configure_logging
from web.metrics import Metrics
from web.observability import Observer, RequestLog
from web.persisted_queries import LocalQueryStore, PersistedQueries, QueryStore, RedisQueryStore
from web.probes import health, ready, statement_stats
from web.rate_limit import RedisTokenBuckets, TokenBuckets

if TYPE_CHECKING:
    from web.tracing import Tracing

log = logging.getLogger("quill")


STATIC_DIR = Path(__file__).resolve().parent / "web" / "static"


def create_app(settings: Settings | None = None) -> Starlette:
    settings = (settings or Settings.from_env()).check()
    configure_logging(settings)
    engine = create_engine(settings)
    reads = read_connections(
        settings.database_url,
        pool_size=settings.read_pool_size,
        statement_timeout_ms=settings.statement_timeout_ms,
        connect_timeout_seconds=settings.connect_timeout_seconds,
    )
    statements = StatementCounter(engine, reads)
    metrics = _metrics(settings)
    services = Services(
        settings=settings,
        sessionmaker=create_sessionmaker(engine),
        tokens=AccessTokens(settings.secret_key, timedelta(seconds=settings.access_token_ttl_seconds)),
        passwords=Passwords.from_settings(settings),
        avatars=Avatars(settings.media_dir, settings.max_avatar_bytes),
        broker=_broker(settings),
        rate_limiter=_rate_limiter(settings),
        observer=Observer(metrics),
        statements=statements,
    )
    documents = DocumentCache(settings.document_cache_size)
    tracing = _tracing(settings, engine, reads)
    manifest = _manifest(settings)
    compiled = CompiledReads(
        settings.compiled_reads,
        reads,
        engine.dialect,
        max_known=settings.document_cache_size,
        max_cost=settings.max_query_nodes,
        timeout_seconds=settings.operation_timeout_seconds,
    )
    schema = build_schema(
        documents,
        settings,
        tracing=tracing.extensions() if tracing else [],
        allow_list=manifest,
        compiled=compiled,
    )
    compiled.bind(schema)
    persisted = PersistedQueries(_query_store(settings), manifest)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await wait_for_database(engine, settings.database_wait_seconds)
            if problem := await migration_problem(engine):
                raise DatabaseNotReady(f"refusing to serve: {problem}")
            await services.broker.start()
            if reads is not None and compiled.enabled:
                await reads.start()
            _tune_garbage_collector()
        except DatabaseNotReady as refusal:
            app.state.startup_refusal = str(refusal)
            await engine.dispose()
            raise
        _end_subscriptions_before_exit(services.broker)
        try:
            yield
        finally:
            if reads is not None:
                await reads.close()
            await services.broker.stop()
            await engine.dispose()
            if persisted.store is not None:
                await persisted.store.close()
            if tracing is not None:
                tracing.shutdown()

    graphiql = GraphiQLPage()
    graphql_http = GraphQLHTTP(schema, services, persisted, graphiql)
    middleware = _middleware(settings, metrics)
    if compiled.enabled and tracing is None:  # a traced operation needs the pipeline's spans
        middleware.append(Middleware(KnownQueries, compiled=compiled, services=services, path="/graphql"))
    app = Starlette(
        routes=[
            Route("/graphql", graphql_http.handle, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", GraphQLWebSocket(schema, services)),
            Route("/graphiql", graphiql.page),
            Route("/graphiql/assets/{name}", graphiql.asset),
            Route("/health", health),
            Route("/ready", ready),
            Mount("/media", StaticFiles(directory=settings.media_dir, check_dir=False), name="media"),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
            *([Route("/__stats", statement_stats)] if settings.stats_endpoint else []),
            *([Route("/metrics", metrics.endpoint)] if metrics else []),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.statements = statements
    app.state.documents = documents
    app.state.schema = schema
    app.state.compiled_reads = compiled
    app.state.reads = reads
    app.state.services = services
    app.state.startup_refusal = None
    return app


def _rate_limiter(settings: Settings) -> RateLimiter | None:
    if not settings.rate_limit:
        return None
    burst, per_second = settings.rate_limit_burst, settings.rate_limit_per_second
    if settings.redis_url:
        return RedisTokenBuckets(settings.redis_url, burst=burst, per_second=per_second)
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
    return LocalQueryStore(settings.persisted_query_cache_size)


def _broker(settings: Settings) -> Broker:
    """PostgreSQL carries events between server processes (LISTEN/NOTIFY); on SQLite and MySQL
    the events of a process reach the subscribers of that process."""
    if is_postgres(settings.database_url):
        return PostgresBroker(settings.database_url, settings.subscription_queue_size)
    return Broker(settings.subscription_queue_size)


def _end_subscriptions_before_exit(broker: Broker, grace_seconds: float = 5.0) -> None:
    """On SIGTERM uvicorn closes WebSockets at once (code 1012). Before it does, end every
    subscription, so each client receives `complete` for it: wrap uvicorn's handler, end the
    subscriptions, and hand over when they are done or the grace period is over."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        return  # not running under uvicorn (the tests drive the app in process)
    loop = asyncio.get_running_loop()

    async def drain_then_exit(signum: int, frame: FrameType | None) -> None:
        broker.end_all()
        await broker.wait_idle(grace_seconds)
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
    middleware = [
        Middleware(RequestLog, metrics=metrics),
        Middleware(_OneLineStartupFailure),
        Middleware(
            BodySizeLimit, max_bytes=settings.max_body_bytes, upload_allowance=settings.max_avatar_bytes
        ),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["*"],
            )
        )
    return middleware


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
