"""Every setting the server reads, from the environment, in one place.

The database URL in particular comes only from here: the server, Alembic (alembic/env.py),
the seed command and the tests all call `database_url()`, so they can never point at two
different databases.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///app.db"

# Plain URLs users paste, mapped to the async drivers SQLAlchemy needs here.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+pysqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mysql+pymysql": "mysql+asyncmy",
    "mariadb": "mariadb+asyncmy",
    "mariadb+pymysql": "mariadb+asyncmy",
}


# The environment variable `quill serve` sets for its workers to share one random development key.
DEVELOPMENT_SECRET_VARIABLE = "QUILL_DEVELOPMENT_SECRET"


class SettingsError(ValueError):
    """A setting has a value the server cannot run with; the message says which and why."""


def async_database_url(url: str) -> str:
    """Map `sqlite:///app.db` or `postgresql://u@h/db` to the async driver's URL form."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise SettingsError(f"DATABASE_URL {url!r} is not a URL (expected e.g. sqlite:///app.db)")
    scheme = _ASYNC_DRIVERS.get(scheme, scheme)
    if scheme not in _ASYNC_DRIVERS.values():
        raise SettingsError(
            f"DATABASE_URL scheme {url.partition('://')[0]!r} is not supported: "
            "use sqlite:///path.db, postgresql://user@host/db or mysql://user@host/db"
        )
    return f"{scheme}://{rest}"


def database_url() -> str:
    """The one database URL (async driver form) every part of the project uses."""
    return async_database_url(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)


def database_pooler() -> str:
    """DATABASE_POOLER: "transaction" where a transaction-mode pooler (PgBouncer) stands between
    Quill and PostgreSQL (db/engine.py says what changes), else "none"."""
    return (os.environ.get("DATABASE_POOLER") or "none").strip().lower()


def _url_or_none(name: str) -> str | None:
    value = os.environ.get(name)
    return async_database_url(value) if value else None


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {value!r}") from None


def _float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {value!r}") from None


def _list(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


def _trusted_proxies() -> tuple[str, ...]:
    """TRUSTED_PROXIES; the older TRUST_FORWARDED_FOR=1 means a proxy on this machine."""
    proxies = _list("TRUSTED_PROXIES")
    if not proxies and _flag("TRUST_FORWARDED_FOR"):
        return ("127.0.0.1", "::1")
    for entry in proxies:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise SettingsError(f"TRUSTED_PROXIES: {entry!r} is not an address or network") from None
    return proxies


_RANDOM_DEVELOPMENT_KEY = secrets.token_urlsafe(48)

# In development, a page served from this machine (a frontend's dev server: Vite on :5173, Next
# on :3000) may call the API without configuring CORS. Never outside development.
LOCAL_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


@dataclass(frozen=True, slots=True)
class Settings:
    # "development" (the default, for `make run`), "test" or "production".
    app_env: str = "development"
    # Signs access tokens. Outside development a missing secret stops the server; in development
    # a random one is made per start (tokens then end with the process), so no key that anyone
    # can read in this repository ever signs a token.
    secret_key: str | None = None
    access_token_ttl_seconds: int = 15 * 60
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    database_url: str = field(default_factory=database_url)
    # PostgreSQL read replicas (db/replicas.py): queries go to a healthy one, mutations and a
    # client's reads right after its own write to the primary. A replica is skipped while it
    # lags more than replica_max_lag_seconds; each is checked every replica_check_seconds.
    database_replica_urls: tuple[str, ...] = ()
    # "transaction": connections go through a transaction-mode pooler (PgBouncer): no named
    # prepared statements and no session settings (db/engine.py, pooler_connect_args).
    database_pooler: str = "none"
    # Behind such a pooler: a direct URL of the primary for the compiled reads' own small pool
    # (DB_READ_POOL_SIZE per process), which then keeps its prepared statements and generic plans.
    database_direct_url: str | None = None
    # Serve as an Apollo Federation v2 subgraph: `_service`, `_entities` (schema/federation.py).
    federation: bool = False
    replica_max_lag_seconds: float = 5.0
    replica_check_seconds: float = 0.5
    sql_echo: bool = False
    cors_origins: tuple[str, ...] = ()
    # How long start-up waits for the database (PostgreSQL in a fresh deployment comes up late).
    database_wait_seconds: int = 30
    # SQLite waits this long for another writer's lock before giving up.
    sqlite_busy_timeout_ms: int = 5000
    # WAL with NORMAL syncs the log at checkpoints, not at every commit: a commit survives the
    # process crashing, and only an OS crash or power loss can undo the last ones (never corrupt
    # the file). FULL syncs at every commit: 10-30% fewer createPosts per second here.
    sqlite_synchronous: str = "NORMAL"
    # Pool size per server process (PostgreSQL, MariaDB). Connections past pool_size are closed when given
    # back, so a steady load above it opens a connection per request: keep it above the usual
    # number of concurrent writers.
    pool_size: int = 20
    pool_max_overflow: int = 10
    # Connections per server process for compiled reads (PostgreSQL; db/read_connections.py).
    read_pool_size: int = 10
    # Test each pooled connection before use (a round trip per request). Off: a connection that
    # died with the database fails its request, and the pool is then refilled (tests/test_outage.py).
    pool_pre_ping: bool = False
    # Argon2id cost; tests lower it, production may raise it (stored hashes are upgraded at login).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # The seed command creates this superuser when both are set and the email is not taken.
    first_superuser_email: str | None = None
    first_superuser_password: str | None = None
    first_superuser_username: str | None = None
    # Hostile-query limits (schema/limits.py). The cost is the number of objects a query can return.
    max_query_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    max_query_nodes: int = 20_000
    max_batch: int = 10
    max_body_bytes: int = 1024 * 1024  # multipart uploads may add max_avatar_bytes
    max_variables_bytes: int = 64 * 1024
    # A GraphQL document's text, refused before it is parsed (GraphiQL's introspection is ~3 KB).
    max_document_bytes: int = 32 * 1024
    # Time limits: each SQL statement (PostgreSQL), and each operation as a whole.
    statement_timeout_ms: int = 5000
    connect_timeout_seconds: float = 5.0
    operation_timeout_seconds: float = 10.0
    introspection: bool = True
    # Queries answered by one SQL statement that builds the JSON (schema/compiled/).
    compiled_reads: bool = True
    # Rate limit per client (the user, or the IP address of an anonymous request).
    rate_limit: bool = True
    rate_limit_burst: int = 20_000
    rate_limit_per_second: float = 1000.0
    redis_url: str | None = None  # shares the rate limit across processes
    # Addresses (or networks) of the proxies in front of the server: behind them the client is
    # the right-most X-Forwarded-For address that is not one of them (web/addresses.py).
    trusted_proxies: tuple[str, ...] = ()
    # Failed logins per account: a bucket of this many, one back every so many seconds.
    login_attempts_burst: int = 10
    login_attempt_refill_seconds: int = 90
    # Events a subscriber may fall behind by before it is dropped (a slow client cannot slow others).
    subscription_queue_size: int = 100
    # Where change events go between processes on PostgreSQL and MariaDB (db/events.py): a Redis
    # URL for Redis Streams; by default REDIS_URL. SQLite keeps its events in its own file.
    event_broker_url: str | None = None
    # How long a subscription's cursor stays good: events are kept this long.
    event_retention_seconds: int = 24 * 3600
    # How long a mutation's answer is kept under its Idempotency-Key (db/idempotency.py).
    idempotency_retention_seconds: int = 24 * 3600
    # WebSockets (web/graphql_ws.py): the wait for connection_init, the time a send may take
    # before a client that does not read is dropped, and how many subscriptions a socket, a
    # client address and the process may hold.
    ws_init_timeout_seconds: float = 10.0
    ws_send_timeout_seconds: float = 5.0
    ws_max_subscriptions_per_socket: int = 100
    ws_max_subscriptions_per_client: int = 1000
    ws_max_subscriptions: int = 20_000
    # GET /__stats answers {"statements": n}: the benchmark harness counts SQL statements with it.
    stats_endpoint: bool = False
    # Parsed and validated documents kept (bytes, least recently used dropped first), and the
    # admission's decisions per document and variables (schema/admission/).
    document_cache_bytes: int = 32 * 1024 * 1024
    prepared_cache_bytes: int = 16 * 1024 * 1024
    # Uploaded avatars live here and are served under /media/.
    media_dir: str = "media"
    max_avatar_bytes: int = 2 * 1024 * 1024
    # Observability (web/logs.py, web/metrics.py, web/tracing.py). Logs: one JSON line per request
    # ("json") or plain text for a terminal ("text").
    log_format: str = "json"
    log_level: str = "INFO"
    # GET /metrics in the Prometheus format; with a token, only for `Authorization: Bearer <token>`.
    metrics: bool = True
    metrics_token: str | None = None
    # Operation names are chosen by clients: past this many distinct names, the rest count as "other".
    metrics_max_operation_names: int = 200
    # OpenTelemetry traces: "off", "otlp" (to OTEL_EXPORTER_OTLP_ENDPOINT) or "console" (stdout).
    tracing: str = "off"
    # Automatic persisted queries (Apollo APQ): query texts remembered by their sha256 hash.
    persisted_queries: bool = True
    persisted_query_cache_bytes: int = 16 * 1024 * 1024
    # Allow-list mode: only the operations in this manifest run (Apollo or Relay manifest format).
    operations_manifest: str | None = None
    # Cache-Control max-age of an anonymous GET query's answer (an ETag is always sent).
    get_cache_max_age_seconds: int = 0

    def signing_key(self) -> str:
        """The key that signs access tokens: SECRET_KEY, or in development one made at random
        (shared by `quill serve`'s workers through the environment)."""
        if self.secret_key:
            return self.secret_key
        return os.environ.get(DEVELOPMENT_SECRET_VARIABLE) or _RANDOM_DEVELOPMENT_KEY

    def cors(self) -> dict[str, Any]:
        """Which browser origins may call the API, as CORSMiddleware's arguments (none: empty)."""
        if self.cors_origins:
            return {"allow_origins": list(self.cors_origins)}
        if self.app_env == "development":
            return {"allow_origin_regex": LOCAL_ORIGINS}
        return {}

    def check(self) -> Settings:
        """Refuse settings the server must not run with; returns self for chaining."""
        if self.sqlite_synchronous not in {"NORMAL", "FULL", "EXTRA"}:
            raise SettingsError(
                f"SQLITE_SYNCHRONOUS must be NORMAL, FULL or EXTRA, not {self.sqlite_synchronous!r}"
            )
        if self.app_env not in {"development", "test", "production"}:
            raise SettingsError(f"APP_ENV must be development, test or production, not {self.app_env!r}")
        if self.app_env != "development" and not self.secret_key:
            raise SettingsError(
                f"SECRET_KEY must be set to a long random value when APP_ENV={self.app_env} "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )
        if self.secret_key is not None and len(self.secret_key) < 32:
            raise SettingsError("SECRET_KEY must be at least 32 characters long")
        if self.app_env == "production" and self.metrics and not self.metrics_token:
            raise SettingsError(
                "METRICS_TOKEN must be set when APP_ENV=production (scrapers send it as a bearer "
                "token), or switch /metrics off with METRICS=0"
            )
        if self.log_format not in {"json", "text"}:
            raise SettingsError(f"LOG_FORMAT must be json or text, not {self.log_format!r}")
        if self.tracing not in {"off", "otlp", "console"}:
            raise SettingsError(f"TRACING must be off, otlp or console, not {self.tracing!r}")
        if self.database_replica_urls and not self.database_url.startswith("postgresql"):
            raise SettingsError("DATABASE_REPLICA_URLS needs a PostgreSQL DATABASE_URL (replicas of it)")
        for url in self.database_replica_urls:
            if not url.startswith("postgresql"):
                raise SettingsError(f"DATABASE_REPLICA_URLS: {url.partition('://')[0]!r} is not PostgreSQL")
        if self.database_pooler not in {"none", "transaction"}:
            raise SettingsError(f"DATABASE_POOLER must be none or transaction, not {self.database_pooler!r}")
        if self.database_direct_url and not self.database_direct_url.startswith("postgresql"):
            raise SettingsError(
                "DATABASE_DIRECT_URL must be a PostgreSQL URL (the primary, not through the pooler)"
            )
        if self.database_pooler != "none" and not self.database_url.startswith("postgresql"):
            raise SettingsError("DATABASE_POOLER is for PostgreSQL (PgBouncer)")
        if self.replica_check_seconds <= 0 or self.replica_max_lag_seconds <= 0:
            raise SettingsError("REPLICA_CHECK_SECONDS and REPLICA_MAX_LAG_SECONDS must be positive")
        return self

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            app_env=os.environ.get("APP_ENV") or "development",
            secret_key=os.environ.get("SECRET_KEY") or None,
            access_token_ttl_seconds=_int("ACCESS_TOKEN_TTL_SECONDS", 15 * 60),
            refresh_token_ttl_seconds=_int("REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600),
            database_url=database_url(),
            database_pooler=database_pooler(),
            database_direct_url=_url_or_none("DATABASE_DIRECT_URL"),
            federation=_flag("FEDERATION"),
            database_replica_urls=tuple(map(async_database_url, _list("DATABASE_REPLICA_URLS"))),
            replica_max_lag_seconds=_float("REPLICA_MAX_LAG_SECONDS", 5.0),
            replica_check_seconds=_float("REPLICA_CHECK_SECONDS", 0.5),
            sql_echo=_flag("SQL_ECHO"),
            cors_origins=_list("CORS_ORIGINS"),
            database_wait_seconds=_int("DATABASE_WAIT_SECONDS", 30),
            sqlite_busy_timeout_ms=_int("SQLITE_BUSY_TIMEOUT_MS", 5000),
            sqlite_synchronous=(os.environ.get("SQLITE_SYNCHRONOUS") or "NORMAL").upper(),
            pool_size=_int("DB_POOL_SIZE", 20),
            pool_max_overflow=_int("DB_POOL_MAX_OVERFLOW", 10),
            read_pool_size=_int("DB_READ_POOL_SIZE", 10),
            pool_pre_ping=_flag("DB_POOL_PRE_PING"),
            argon2_time_cost=_int("ARGON2_TIME_COST", 3),
            argon2_memory_kib=_int("ARGON2_MEMORY_KIB", 65536),
            argon2_parallelism=_int("ARGON2_PARALLELISM", 4),
            first_superuser_email=os.environ.get("FIRST_SUPERUSER_EMAIL") or None,
            first_superuser_password=os.environ.get("FIRST_SUPERUSER_PASSWORD") or None,
            first_superuser_username=os.environ.get("FIRST_SUPERUSER_USERNAME") or None,
            document_cache_bytes=_int("DOCUMENT_CACHE_BYTES", 32 * 1024 * 1024),
            prepared_cache_bytes=_int("PREPARED_CACHE_BYTES", 16 * 1024 * 1024),
            stats_endpoint=_flag("STATS_ENDPOINT"),
            subscription_queue_size=_int("SUBSCRIPTION_QUEUE_SIZE", 100),
            ws_init_timeout_seconds=_float("WS_INIT_TIMEOUT_SECONDS", 10.0),
            ws_send_timeout_seconds=_float("WS_SEND_TIMEOUT_SECONDS", 5.0),
            ws_max_subscriptions_per_socket=_int("WS_MAX_SUBSCRIPTIONS_PER_SOCKET", 100),
            ws_max_subscriptions_per_client=_int("WS_MAX_SUBSCRIPTIONS_PER_CLIENT", 1000),
            ws_max_subscriptions=_int("WS_MAX_SUBSCRIPTIONS", 20_000),
            max_query_depth=_int("MAX_QUERY_DEPTH", 12),
            max_aliases=_int("MAX_ALIASES", 30),
            max_tokens=_int("MAX_TOKENS", 2000),
            max_query_nodes=_int("MAX_QUERY_NODES", 20_000),
            max_batch=_int("MAX_BATCH", 10),
            max_body_bytes=_int("MAX_BODY_BYTES", 1024 * 1024),
            max_variables_bytes=_int("MAX_VARIABLES_BYTES", 64 * 1024),
            max_document_bytes=_int("MAX_DOCUMENT_BYTES", 32 * 1024),
            statement_timeout_ms=_int("STATEMENT_TIMEOUT_MS", 5000),
            connect_timeout_seconds=_float("DB_CONNECT_TIMEOUT_SECONDS", 5.0),
            operation_timeout_seconds=_float("OPERATION_TIMEOUT_SECONDS", 10.0),
            introspection=_flag("INTROSPECTION", default=True),
            compiled_reads=_flag("COMPILED_READS", default=True),
            rate_limit=_flag("RATE_LIMIT", default=True),
            rate_limit_burst=_int("RATE_LIMIT_BURST", 20_000),
            rate_limit_per_second=float(_int("RATE_LIMIT_PER_SECOND", 1000)),
            redis_url=os.environ.get("REDIS_URL") or None,
            event_broker_url=os.environ.get("EVENT_BROKER_URL") or os.environ.get("REDIS_URL") or None,
            event_retention_seconds=_int("EVENT_RETENTION_SECONDS", 24 * 3600),
            idempotency_retention_seconds=_int("IDEMPOTENCY_RETENTION_SECONDS", 24 * 3600),
            trusted_proxies=_trusted_proxies(),
            login_attempts_burst=_int("LOGIN_ATTEMPTS_BURST", 10),
            login_attempt_refill_seconds=_int("LOGIN_ATTEMPT_REFILL_SECONDS", 90),
            media_dir=os.environ.get("MEDIA_DIR") or "media",
            max_avatar_bytes=_int("MAX_AVATAR_BYTES", 2 * 1024 * 1024),
            log_format=(os.environ.get("LOG_FORMAT") or "json").lower(),
            log_level=(os.environ.get("LOG_LEVEL") or "INFO").upper(),
            metrics=_flag("METRICS", default=True),
            metrics_token=os.environ.get("METRICS_TOKEN") or None,
            metrics_max_operation_names=_int("METRICS_MAX_OPERATION_NAMES", 200),
            tracing=(os.environ.get("TRACING") or "off").lower(),
            persisted_queries=_flag("PERSISTED_QUERIES", default=True),
            persisted_query_cache_bytes=_int("PERSISTED_QUERY_CACHE_BYTES", 16 * 1024 * 1024),
            operations_manifest=os.environ.get("OPERATIONS_MANIFEST") or None,
            get_cache_max_age_seconds=_int("GET_CACHE_MAX_AGE_SECONDS", 0),
        )
