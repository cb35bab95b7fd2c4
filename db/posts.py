"""Writing posts (reads are derived from the Post type's declaration: schema/types/posts.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import check_row
from db.errors import AccountGone, is_foreign_key_violation
from db.models import Post, table_of, utcnow
from db.pagination import AnyRow
from db.visibility import Viewer, can_change_post
from db.where import EVERYTHING

posts = table_of(Post)

# What a write reads back: every column a Post's fields read.
_ROW = (posts.c.id, posts.c.title, posts.c.content, posts.c.user_id, posts.c.date_posted)


async def create_post(session: AsyncSession, *, author_id: int, title: str, content: str) -> AnyRow:
    statement = (
        insert(posts)
        .values(user_id=author_id, title=title, content=content, date_posted=utcnow())
        .returning(*_ROW)
    )
    try:
        return (await session.execute(statement)).one()
    except IntegrityError as error:
        if is_foreign_key_violation(error):
            raise AccountGone() from error
        raise


async def _check_may_change(session: AsyncSession, viewer: Viewer, pk: int) -> None:
    await check_row(
        session,
        kind="post",
        id_column=posts.c.id,
        pk=pk,
        visible=EVERYTHING,  # posts are public
        allowed=can_change_post(viewer),
        denied="Only the author of a post (or a superuser) may change it.",
    )


async def update_post(session: AsyncSession, viewer: Viewer, pk: int, changes: dict[str, Any]) -> AnyRow:
    await _check_may_change(session, viewer, pk)
    if changes:
        await session.execute(update(posts).where(posts.c.id == pk).values(**changes))
    return (await session.execute(select(*_ROW).where(posts.c.id == pk))).one()


async def delete_post(session: AsyncSession, viewer: Viewer, pk: int) -> int:
    """Delete the post; returns its author's id."""
    await _check_may_change(session, viewer, pk)
    return (
        await session.execute(delete(posts).where(posts.c.id == pk).returning(posts.c.user_id))
    ).scalar_one()
