"""Migrations: up, down and up again on both engines; models equal migrations; refuse stale databases."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from db.engine import head_revision
from server import create_app
from settings import Settings, async_database_url
from tests.conftest import ENGINES, ROOT, MariaDBServer, PostgresServer, alembic, migrate

pytestmark = pytest.mark.one_path  # the resolver pass skips it (pyproject.toml: markers)


@pytest.fixture(params=ENGINES)
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, of each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"quill_migrations_{uuid.uuid4().hex[:10]}"
    if request.param == "mariadb":
        mariadb: MariaDBServer = request.getfixturevalue("mariadb_server")
        mariadb.run(f"CREATE DATABASE `{name}`")
        yield mariadb.url_for(name)
        mariadb.run(f"DROP DATABASE IF EXISTS `{name}`")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    server.run(f'CREATE DATABASE "{name}"')
    yield server.url_for(name)
    server.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_downgrade_upgrade(empty_database: str) -> None:
    for step in (("upgrade", "head"), ("downgrade", "base"), ("upgrade", "head")):
        done = alembic(empty_database, *step)
        assert done.returncode == 0, done.stderr
    current = alembic(empty_database, "current")
    assert "(head)" in current.stdout


def test_models_match_migrations(empty_database: str) -> None:
    migrate(empty_database)
    check = alembic(empty_database, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr


def test_sqlite_keeps_the_search_triggers_at_head(tmp_path: Path) -> None:
    """A later migration that rebuilds `posts` in batch mode on SQLite drops the triggers that keep
    the search index (migration 0010): it must make them again, or new posts are never found."""
    url = f"sqlite:///{tmp_path / 'head.db'}"
    migrate(url)
    with sqlite3.connect(tmp_path / "head.db") as conn:
        found = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"posts_search_insert", "posts_search_delete", "posts_search_update"} <= found


def test_status_migration_gives_existing_tasks_open(empty_database: str) -> None:
    """Revision 0002 adds tasks.status with a server default, so rows made before it read 'open'."""
    assert alembic(empty_database, "upgrade", "0001").returncode == 0

    async def insert_then_read() -> str:
        engine = create_async_engine(async_database_url(empty_database))
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, username, email, password_hash, created_at) "
                    "VALUES (1, 'old', 'old@example.com', 'x', CURRENT_TIMESTAMP)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO tasks (id, title, owner_id, created_at) VALUES (1, 'old task', 1, CURRENT_TIMESTAMP)"
                )
            )
        await engine.dispose()
        migrate(empty_database)
        engine = create_async_engine(async_database_url(empty_database))
        async with engine.connect() as conn:
            status = (await conn.execute(text("SELECT status FROM tasks WHERE id = 1"))).scalar_one()
        await engine.dispose()
        return str(status)

    assert asyncio.run(insert_then_read()) == "open"


async def test_server_refuses_database_not_at_head(tmp_path: Path, sqlite_template: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(sqlite_template, path)
    done = alembic(f"sqlite:///{path}", "downgrade", "0001")
    assert done.returncode == 0, done.stderr
    app = create_app(Settings(database_url=async_database_url(f"sqlite:///{path}"), database_wait_seconds=1))

    with pytest.raises(
        RuntimeError, match=r"database is at revision 0001 but the code needs .*alembic upgrade head"
    ):
        await LifespanManager(app).__aenter__()


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_uvicorn_prints_one_line_refusal(tmp_path: Path, log_format: str) -> None:
    """Started on an empty database, the real server exits and says what to do in one line."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "PATH": "/usr/bin:/bin",
        "LOG_FORMAT": log_format,
    }
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "server:app", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    [refusal] = [line for line in done.stderr.splitlines() if "refusing to serve" in line]
    expected = (
        f"refusing to serve: database is at revision <empty> but the code needs {head_revision()}: "
        "run `alembic upgrade head`"
    )
    if log_format == "json":
        assert json.loads(refusal) | {"time": None} == {
            "time": None,
            "level": "ERROR",
            "logger": "uvicorn.error",
            "message": expected,
        }
    else:
        assert refusal.endswith(f" ERROR uvicorn.error {expected}")
    assert "Traceback" not in done.stderr


async def test_ready_reports_database_behind_head(tmp_path: Path, sqlite_template: Path) -> None:
    """A database downgraded while the server runs makes /ready answer 503 with the reason."""
    path = tmp_path / "live.db"
    shutil.copy(sqlite_template, path)
    app = create_app(Settings(database_url=async_database_url(f"sqlite:///{path}")))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/ready")).json() == {"status": "ready"}
            assert alembic(f"sqlite:///{path}", "downgrade", "0001").returncode == 0
            response = await client.get("/ready")
            assert (await client.get("/health")).json() == {"status": "ok"}

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "run `alembic upgrade head`" in response.json()["reason"]
