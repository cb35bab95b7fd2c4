"""Small factories with explicit overrides: `await make_user(session, username="ada")`.

Each commits, so the app (with its own sessions) sees the rows at once.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Comment, Note, Post, Task, TaskStatus, User

_serial = itertools.count(1)
T0 = datetime(2025, 6, 1, tzinfo=UTC)


def _next() -> int:
    return next(_serial)


async def _save(session: AsyncSession, row: Any) -> Any:
    session.add(row)
    await session.commit()
    return row


async def make_user(session: AsyncSession, **overrides: Any) -> User:
    n = _next()
    values: dict[str, Any] = {
        "username": f"user{n}",
        "email": f"user{n}@example.com",
        "password_hash": "not-a-real-hash",
        "created_at": T0 + timedelta(minutes=n),
    }
    return await _save(session, User(**(values | overrides)))


async def make_post(session: AsyncSession, author: User, **overrides: Any) -> Post:
    n = _next()
    values: dict[str, Any] = {
        "title": f"Post {n}",
        "content": f"Content of post {n}",
        "user_id": author.id,
        "date_posted": T0 + timedelta(hours=n),
    }
    return await _save(session, Post(**(values | overrides)))


async def make_task(session: AsyncSession, owner: User, **overrides: Any) -> Task:
    n = _next()
    values: dict[str, Any] = {
        "title": f"Task {n}",
        "status": TaskStatus.OPEN,
        "owner_id": owner.id,
        "created_at": T0 + timedelta(hours=n),
    }
    return await _save(session, Task(**(values | overrides)))


async def make_note(session: AsyncSession, task: Task, **overrides: Any) -> Note:
    n = _next()
    values: dict[str, Any] = {"task_id": task.id, "body": f"Note {n}", "created_at": T0 + timedelta(hours=n)}
    return await _save(session, Note(**(values | overrides)))


async def make_comment(session: AsyncSession, post: Post, author: User, **overrides: Any) -> Comment:
    n = _next()
    values: dict[str, Any] = {
        "post_id": post.id,
        "user_id": author.id,
        "body": f"Comment {n}",
        "created_at": T0 + timedelta(minutes=n),
    }
    return await _save(session, Comment(**(values | overrides)))


async def make_users_with_posts(session: AsyncSession, *, users: int, posts_each: int) -> list[User]:
    """`users` users, each with `posts_each` posts, interleaved like real data; one commit."""
    made = [
        User(username=f"bulk{_next()}", email=f"bulk{_next()}@example.com", password_hash="x")
        for _ in range(users)
    ]
    session.add_all(made)
    await session.flush()
    for _ in range(posts_each):
        for user in made:
            n = _next()
            session.add(
                Post(
                    title=f"Post {n}",
                    content=f"Content {n}",
                    user_id=user.id,
                    date_posted=T0 + timedelta(minutes=n),
                )
            )
    await session.commit()
    return made
