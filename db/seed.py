"""Demo data, the first superuser, and large generated data sets.

    python -m db.seed                      demo data if the database is empty; first superuser if set
    python -m db.seed --users 1000 --posts-per-user 1000
                                           append generated users with posts, tasks and notes

Idempotent: demo data goes only into an empty database, and the superuser from
FIRST_SUPERUSER_EMAIL / FIRST_SUPERUSER_PASSWORD is created only when that email is not taken,
so it can run at every start-up, also after the benchmark loaded its own data.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import create_engine
from db.models import Note, Post, Task, TaskStatus, User, table_of
from db.passwords import Passwords
from settings import Settings

log = logging.getLogger("quill.seed")

DEMO_PASSWORD = "demo-password"
DEMO_USERS = ("ada", "grace", "linus", "margaret", "alan", "barbara", "dennis", "ken", "radia", "edsger")
WORDS = [
    "graph",
    "query",
    "node",
    "edge",
    "cursor",
    "page",
    "async",
    "batch",
    "loader",
    "schema",
    "index",
    "keyset",
    "window",
    "commit",
    "rollback",
    "migrate",
    "token",
    "session",
    "field",
    "type",
    "union",
    "enum",
    "scalar",
    "list",
]
STATUSES = (TaskStatus.OPEN, TaskStatus.IN_PROGRESS, TaskStatus.DONE)
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class Shape:
    """How much to generate per user."""

    users: int
    posts_per_user: int = 20
    tasks_per_user: int = 10
    notes_per_task: int = 3


async def run(settings: Settings, shape: Shape | None) -> dict[str, int]:
    """Seed the database at settings.database_url; returns how many rows of each table it added."""
    engine = create_engine(settings)
    passwords = Passwords.from_settings(settings)
    try:
        added: dict[str, int] = {}
        if shape is not None:
            added = await generate(engine, shape, await passwords.hash(DEMO_PASSWORD))
        elif await _is_empty(engine):
            demo = Shape(users=len(DEMO_USERS), posts_per_user=5, tasks_per_user=4, notes_per_task=2)
            added = await generate(engine, demo, await passwords.hash(DEMO_PASSWORD), names=DEMO_USERS)
        if await ensure_first_superuser(engine, settings, passwords):
            added["superuser"] = 1
        return added
    finally:
        await engine.dispose()


async def demo_logins(settings: Settings) -> list[str]:
    """The demo users this database has (none when it is not migrated or not reachable)."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(select(User.username).where(User.username.in_(DEMO_USERS)))
            have = set(found.scalars())
    except Exception:  # noqa: BLE001 - a banner line, not a check: the server says what is wrong
        return []
    finally:
        await engine.dispose()
    return [name for name in DEMO_USERS if name in have]


async def _is_empty(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(User))).scalar_one() == 0


async def ensure_first_superuser(engine: AsyncEngine, settings: Settings, passwords: Passwords) -> bool:
    email, password = settings.first_superuser_email, settings.first_superuser_password
    if not email or not password:
        return False
    email = email.strip().lower()
    username = (settings.first_superuser_username or email.split("@")[0]).lower()
    taken = select(User.id).where((User.email == email) | (User.username == username))
    async with engine.connect() as conn:
        if (await conn.execute(taken)).first() is not None:
            return False
    password_hash = await passwords.hash(password)
    async with engine.begin() as conn:
        await conn.execute(
            insert(User).values(
                username=username,
                email=email,
                password_hash=password_hash,
                is_superuser=True,
                created_at=datetime.now(UTC),
            )
        )
    log.info("created superuser %s <%s>", username, email)
    return True


async def generate(
    engine: AsyncEngine, shape: Shape, password_hash: str, names: Sequence[str] = ()
) -> dict[str, int]:
    """Append `shape.users` users with their posts, tasks and notes, in large batches.

    Ids are assigned here (after the current maximum of each table) so that children can
    reference parents without reading them back; PostgreSQL's sequences are moved past them.
    """
    async with engine.begin() as conn:
        starts = {table: await _next_id(conn, table) for table in (User, Post, Task, Note)}
        rows = _Rows(shape, starts, password_hash, names)
        users, posts = shape.users, shape.users * shape.posts_per_user
        tasks = shape.users * shape.tasks_per_user
        added = {
            "users": await _insert(conn, table_of(User), rows.users(), users),
            "posts": await _insert(conn, table_of(Post), rows.posts(), posts),
            "tasks": await _insert(conn, table_of(Task), rows.tasks(), tasks),
            "notes": await _insert(conn, table_of(Note), rows.notes(), tasks * shape.notes_per_task),
        }
        if conn.dialect.name == "postgresql":
            for table in ("users", "posts", "tasks", "notes"):
                sequence = f"pg_get_serial_sequence('{table}', 'id')"
                await conn.execute(text(f"SELECT setval({sequence}, (SELECT max(id) FROM {table}))"))
    return added


async def _next_id(conn: AsyncConnection, model: Any) -> int:
    return int((await conn.execute(select(func.coalesce(func.max(model.id), 0)))).scalar_one()) + 1


async def _insert(conn: AsyncConnection, table: Table, rows: Iterator[dict[str, Any]], expected: int) -> int:
    """Insert the rows in chunks; a large seed says how far it got after each."""
    total = 0
    while chunk := list(itertools.islice(rows, CHUNK)):
        if conn.dialect.name == "postgresql":
            await _copy(conn, table, chunk)
        else:
            await conn.execute(insert(table), chunk)
        total += len(chunk)
        if expected > CHUNK:
            log.info("%s: %s of %s", table.name, f"{total:,}", f"{expected:,}")
    return total


async def _copy(conn: AsyncConnection, table: Table, chunk: list[dict[str, Any]]) -> None:
    """COPY is an order of magnitude faster than INSERT for a million rows."""
    columns = list(chunk[0])
    raw = await conn.get_raw_connection()
    records = [tuple(row[column] for column in columns) for row in chunk]
    await raw.driver_connection.copy_records_to_table(table.name, records=records, columns=columns)  # type: ignore[union-attr]


class _Rows:
    """Deterministic rows for a shape: the same arguments always give the same data."""

    def __init__(
        self, shape: Shape, starts: dict[Any, int], password_hash: str, names: Sequence[str]
    ) -> None:
        self.shape, self.password_hash, self.names = shape, password_hash, names
        self.user0, self.post0, self.task0, self.note0 = (starts[m] for m in (User, Post, Task, Note))
        rng = random.Random(20261122)
        self.sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(997)]

    def _sentence(self, n: int) -> str:
        return self.sentences[n % len(self.sentences)]

    def users(self) -> Iterator[dict[str, Any]]:
        for i in range(self.shape.users):
            user_id = self.user0 + i
            name = self.names[i] if i < len(self.names) else f"user{user_id}"
            yield {
                "id": user_id,
                "username": name,
                "email": f"{name}@example.com",
                "password_hash": self.password_hash,
                "image_file": None,
                "is_superuser": False,
                "created_at": EPOCH + timedelta(minutes=user_id),
            }

    def posts(self) -> Iterator[dict[str, Any]]:
        # Round-robin over the users, so a user's posts are scattered like real data.
        for i in range(self.shape.users * self.shape.posts_per_user):
            post_id = self.post0 + i
            yield {
                "id": post_id,
                "title": self._sentence(post_id)[:100].capitalize(),
                "content": " ".join(self._sentence(post_id + k) for k in range(4)).capitalize() + ".",
                "user_id": self.user0 + i % self.shape.users,
                "date_posted": EPOCH + timedelta(days=30, seconds=60 * post_id),
            }

    def tasks(self) -> Iterator[dict[str, Any]]:
        for i in range(self.shape.users * self.shape.tasks_per_user):
            task_id = self.task0 + i
            yield {
                "id": task_id,
                "title": self._sentence(task_id * 7).capitalize(),
                "status": STATUSES[i % 3].value,
                "owner_id": self.user0 + i % self.shape.users,
                "created_at": EPOCH + timedelta(days=60, seconds=60 * task_id),
            }

    def notes(self) -> Iterator[dict[str, Any]]:
        per_task = self.shape.notes_per_task
        for i in range(self.shape.users * self.shape.tasks_per_user * per_task):
            note_id = self.note0 + i
            task_id = self.task0 + i // per_task
            yield {
                "id": note_id,
                "task_id": task_id,
                "body": self._sentence(note_id * 13).capitalize() + ".",
                "created_at": EPOCH + timedelta(days=60, seconds=60 * task_id + i % per_task),
            }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m db.seed` and `quill seed`."""
    parser.add_argument("--users", type=int, help="generate this many users (with their posts, tasks, notes)")
    parser.add_argument("--posts-per-user", type=int, default=20)
    parser.add_argument("--tasks-per-user", type=int, default=10)
    parser.add_argument("--notes-per-task", type=int, default=3)


def execute(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    shape = None
    if args.users is not None:
        shape = Shape(args.users, args.posts_per_user, args.tasks_per_user, args.notes_per_task)
    started = time.perf_counter()
    added = asyncio.run(run(Settings.from_env(), shape))
    summary = ", ".join(f"{count} {table}" for table, count in added.items()) or "nothing (already seeded)"
    log.info("seeded %s in %.1fs", summary, time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_arguments(parser)
    execute(parser.parse_args(argv))


if __name__ == "__main__":
    main()
