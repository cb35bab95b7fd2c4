"""Alembic environment: the async engine, the URL from settings, batch mode on SQLite."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import context
from db.engine import pooler_connect_args
from db.models import Base
from db.search import SEARCH_COLUMNS, SEARCH_INDEXES, SEARCH_TABLES
from settings import database_pooler, database_url

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Objects meant for some databases only (info={"dialects": (...)}) are ignored elsewhere,
    and so are the search indexes that migration 0010 makes outside the models."""
    if reflected and compare_to is None and _is_search_object(type_, name or ""):
        return False
    dialects = getattr(obj, "info", {}).get("dialects")
    return dialects is None or context.get_context().dialect.name in dialects


def _is_search_object(type_: str, name: str) -> bool:
    if type_ == "column":
        return name in SEARCH_COLUMNS
    if type_ == "index":
        return name in SEARCH_INDEXES
    return type_ == "table" and any(name == t or name.startswith(f"{t}_") for t in SEARCH_TABLES)


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        include_object=_include_object,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    _configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    url = database_url()
    # Through a transaction-mode pooler (DATABASE_POOLER=transaction): no kept prepared statements.
    options = {"connect_args": pooler_connect_args()} if database_pooler() == "transaction" else {}
    engine = create_async_engine(url, poolclass=pool.NullPool, **options)
    async with engine.connect() as connection:
        await connection.run_sync(_run_sync)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
