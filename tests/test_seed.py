"""The seed command: demo data once, the first superuser once, generated data sets on demand."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from db.models import Note, Post, Task, User
from db.passwords import Passwords
from db.seed import DEMO_PASSWORD, Shape, run
from settings import Settings
from tests.conftest import ROOT
from tests.servers import database_env

pytestmark = pytest.mark.one_path  # the resolver pass skips it (pyproject.toml: markers)


async def _counts(settings: Settings) -> dict[str, int]:
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        counts = {
            model.__tablename__: (await conn.execute(select(func.count()).select_from(model))).scalar_one()
            for model in (User, Post, Task, Note)
        }
    await engine.dispose()
    return counts


async def test_demo_data_only_into_an_empty_database(settings: Settings) -> None:
    first = await run(settings, None)
    second = await run(settings, None)

    assert first == {"users": 10, "posts": 50, "tasks": 40, "notes": 80}
    assert second == {}
    assert await _counts(settings) == {"users": 10, "posts": 50, "tasks": 40, "notes": 80}


async def test_demo_users_can_log_in_with_the_documented_password(settings: Settings) -> None:
    await run(settings, None)
    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        stored = (await conn.execute(select(User.password_hash).where(User.username == "ada"))).scalar_one()
    await engine.dispose()

    assert await Passwords.from_settings(settings).verify(stored, DEMO_PASSWORD)


async def test_first_superuser_is_created_once_even_on_a_loaded_database(settings: Settings) -> None:
    await run(settings, Shape(users=3, posts_per_user=1, tasks_per_user=1, notes_per_task=1))
    with_admin = replace(
        settings, first_superuser_email="Root@Example.com", first_superuser_password="s3cret-pass"
    )

    assert await run(with_admin, None) == {"superuser": 1}
    assert await run(with_admin, None) == {}

    engine = create_async_engine(settings.database_url)
    async with engine.connect() as conn:
        admin = (await conn.execute(select(User).where(User.is_superuser))).one()
    await engine.dispose()
    assert (admin.username, admin.email) == ("root", "root@example.com")


async def test_generated_users_append_after_existing_rows(settings: Settings) -> None:
    await run(settings, None)
    added = await run(settings, Shape(users=50, posts_per_user=4, tasks_per_user=2, notes_per_task=3))

    assert added == {"users": 50, "posts": 200, "tasks": 100, "notes": 300}
    assert await _counts(settings) == {"users": 60, "posts": 250, "tasks": 140, "notes": 380}


def test_command_line(database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "db.seed", "--users", "5", "--posts-per-user", "2"],
        cwd=ROOT,
        env={**database_env(database_url), "PATH": "/usr/bin:/bin", "ARGON2_MEMORY_KIB": "1024"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "seeded 5 users, 10 posts, 50 tasks, 150 notes" in done.stderr


def test_a_large_seed_shows_its_progress(database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "db.seed", "--users", "250", "--posts-per-user", "100",
         "--tasks-per-user", "1", "--notes-per-task", "0"],
        cwd=ROOT, env={**database_env(database_url), "PATH": "/usr/bin:/bin", "ARGON2_MEMORY_KIB": "1024"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("posts: ")]
    assert progress == ["posts: 20,000 of 25,000", "posts: 25,000 of 25,000"], done.stderr
    assert "users: " not in done.stderr  # a small table says nothing until the summary
