"""Settings: the URLs users paste map to the async drivers; one URL for server and Alembic."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from settings import DEFAULT_DATABASE_URL, Settings, SettingsError, async_database_url, database_url

pytestmark = pytest.mark.one_path  # the resolver pass skips it (pyproject.toml: markers)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///app.db", "sqlite+aiosqlite:///app.db"),
        ("sqlite:////var/data/app.db", "sqlite+aiosqlite:////var/data/app.db"),
        ("postgresql://user@host/db", "postgresql+asyncpg://user@host/db"),
        ("postgres://user:pw@host:5433/db", "postgresql+asyncpg://user:pw@host:5433/db"),
        ("postgresql+psycopg2://user@host/db", "postgresql+asyncpg://user@host/db"),
        ("postgresql+asyncpg://user@host/db", "postgresql+asyncpg://user@host/db"),
    ],
)
def test_plain_urls_map_to_async_drivers(given: str, expected: str) -> None:
    assert async_database_url(given) == expected


@pytest.mark.parametrize("given", ["oracle://x/y", "app.db", ""])
def test_unsupported_urls_are_refused_with_a_reason(given: str) -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        async_database_url(given)


def test_default_is_a_sqlite_file_in_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert DEFAULT_DATABASE_URL == "sqlite:///app.db"
    assert database_url() == "sqlite+aiosqlite:///app.db"


def test_environment_is_read_once_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://me@db/prod")
    monkeypatch.setenv("SQL_ECHO", "1")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")

    settings = Settings.from_env()

    assert settings.database_url == "postgresql+asyncpg://me@db/prod"
    assert settings.sql_echo is True
    assert settings.cors_origins == ("https://a.example", "https://b.example")


def test_alembic_reads_the_same_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """alembic/env.py calls settings.database_url(); alembic.ini holds no URL at all."""
    from tests.conftest import ROOT

    ini = (ROOT / "alembic.ini").read_text()
    env = (ROOT / "alembic" / "env.py").read_text()
    assert "sqlalchemy.url" not in ini
    assert re.search(r"^from settings import .*\bdatabase_url\b", env, re.M)


@pytest.mark.parametrize(("setting", "pragma"), [(None, 1), ("full", 2)])
async def test_sqlite_commits_sync_as_sqlite_synchronous_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, setting: str | None, pragma: int
) -> None:
    """NORMAL by default (WAL synced at checkpoints: settings.py says why), FULL when asked."""
    from sqlalchemy import text

    from db.engine import create_engine

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/sync.db")
    if setting is None:
        monkeypatch.delenv("SQLITE_SYNCHRONOUS", raising=False)
    else:
        monkeypatch.setenv("SQLITE_SYNCHRONOUS", setting)
    engine = create_engine(Settings.from_env().check())
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA synchronous"))).scalar() == pragma
    finally:
        await engine.dispose()


def test_an_unknown_sqlite_synchronous_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQLITE_SYNCHRONOUS", "off")
    with pytest.raises(SettingsError, match="SQLITE_SYNCHRONOUS must be NORMAL, FULL or EXTRA"):
        Settings.from_env().check()
