"""One transaction per mutation: a failure leaves nothing half done, and side effects wait for commit."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from db import users
from db.errors import Conflict, unique_column
from db.models import Post, User, utcnow
from db.session import RequestDb


async def _users(session: AsyncSession) -> int:
    await session.rollback()
    return (await session.execute(select(func.count()).select_from(User))).scalar_one()


async def test_write_rolls_back_everything_when_it_raises(app: Starlette, session: AsyncSession) -> None:
    db = RequestDb(app.state.services.sessionmaker)
    ran: list[str] = []

    async def two_writes_then_a_failure() -> None:
        async with db.write() as tx:
            db.after_commit(lambda: _note(ran))
            user = await users.create_user(tx, username="ada", email="ada@example.com", password_hash="x")
            await tx.execute(
                insert(Post).values(user_id=user.id, title="t", content="c", date_posted=utcnow())
            )
            raise RuntimeError("something broke after two writes")

    with pytest.raises(RuntimeError, match="after two writes"):
        await two_writes_then_a_failure()
    await db.close()

    assert await _users(session) == 0
    assert (await session.execute(select(func.count()).select_from(Post))).scalar_one() == 0
    assert ran == []  # the after-commit side effect never ran


async def test_after_commit_runs_only_after_the_commit(app: Starlette, session: AsyncSession) -> None:
    db = RequestDb(app.state.services.sessionmaker)
    seen: list[int] = []

    async def count_users() -> None:
        async with app.state.services.sessionmaker() as other:
            seen.append((await other.execute(select(func.count()).select_from(User))).scalar_one())

    async with db.write() as tx:
        await users.create_user(tx, username="ada", email="ada@example.com", password_hash="x")
        db.after_commit(count_users)
    await db.close()

    assert seen == [1]  # another session already saw the committed row


async def _note(ran: list[str]) -> None:
    ran.append("side effect")


async def test_unique_violation_from_a_race_is_a_conflict(app: Starlette, engine_name: str) -> None:
    """Two transactions both pass the friendly check; the database's constraint decides."""
    sessionmaker = app.state.services.sessionmaker
    if engine_name == "sqlite":
        # SQLite lets one writer in at a time, so the race cannot interleave; check the mapping instead.
        async with sessionmaker() as s:
            await s.execute(
                insert(User).values(username="ada", email="a@x.io", password_hash="x", created_at=utcnow())
            )
            with pytest.raises(IntegrityError) as raised:
                await s.execute(
                    insert(User).values(
                        username="ada", email="b@x.io", password_hash="x", created_at=utcnow()
                    )
                )
        assert unique_column(raised.value) == "username"
        return

    first, second = sessionmaker(), sessionmaker()
    await users.create_user(first, username="ada", email="a@x.io", password_hash="x")
    # The second insert waits on the first's uncommitted row, then fails once it commits.
    racing = asyncio.create_task(users.create_user(second, username="ada", email="b@x.io", password_hash="x"))
    await asyncio.sleep(0.2)
    await first.commit()
    with pytest.raises(Conflict) as conflict:
        await racing
    assert conflict.value.field == "username"
    await first.close()
    await second.close()
