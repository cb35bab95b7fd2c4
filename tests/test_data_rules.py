"""Rules the database itself keeps: UTC timestamps on both engines, cascading deletes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Note, Post, Task, User
from tests.conftest import GraphQLClient
from tests.factories import make_note, make_post, make_task, make_user


async def test_timestamps_come_back_as_the_same_utc_instant(
    gql: GraphQLClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    berlin = timezone(timedelta(hours=2))
    await make_post(session, user, date_posted=datetime(2025, 7, 1, 14, 30, 15, 123456, tzinfo=berlin))

    posts = (await gql("{ posts { edges { node { datePosted } } } }"))["data"]["posts"]["edges"]

    assert posts == [{"node": {"datePosted": "2025-07-01T12:30:15.123456+00:00"}}]


async def test_deleting_a_task_deletes_its_notes(session: AsyncSession) -> None:
    user = await make_user(session)
    task = await make_task(session, user)
    await make_note(session, task)
    await make_note(session, task)

    await session.execute(delete(Task).where(Task.id == task.id))
    await session.commit()

    assert (await session.execute(select(func.count()).select_from(Note))).scalar_one() == 0


async def test_deleting_a_user_deletes_their_posts_tasks_and_notes(session: AsyncSession) -> None:
    user = await make_user(session)
    other = await make_user(session)
    await make_post(session, user)
    kept = await make_post(session, other)
    await make_note(session, await make_task(session, user))

    await session.execute(delete(User).where(User.id == user.id))
    await session.commit()

    assert (await session.execute(select(Post.id))).scalars().all() == [kept.id]
    for model in (Task, Note):
        assert (await session.execute(select(func.count()).select_from(model))).scalar_one() == 0
