"""Reading and writing posts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db import pagination
from db.access import check_row
from db.errors import AccountGone, is_foreign_key_violation
from db.models import Post, table_of, utcnow
from db.pagination import AnyRow, Listing, Order, Page, Window
from db.visibility import Viewer, can_change_post
from db.where import EVERYTHING, Where, all_of, condition, like_escape

posts = table_of(Post)

LISTING = Listing(
    name="posts",
    id=posts.c.id,
    columns={
        "id": posts.c.id,
        "title": posts.c.title,
        "content": posts.c.content,
        "user_id": posts.c.user_id,
        "date_posted": posts.c.date_posted,
    },
    sort_keys={"ID": posts.c.id, "DATE_POSTED": posts.c.date_posted, "TITLE": posts.c.title},
)


@dataclass(frozen=True, slots=True)
class PostFilter:
    author_id: int | None = None
    title_contains: str | None = None
    posted_after: datetime | None = None
    posted_before: datetime | None = None

    def where(self) -> Where:
        conditions = []
        if self.author_id is not None:
            conditions.append(condition("author_id", self.author_id, lambda p: posts.c.user_id == p))
        if self.title_contains:
            conditions.append(
                condition(
                    "title_contains",
                    like_escape(self.title_contains),
                    lambda p: posts.c.title.icontains(p, escape="/"),
                )
            )
        if self.posted_after is not None:
            conditions.append(condition("posted_after", self.posted_after, lambda p: posts.c.date_posted > p))
        if self.posted_before is not None:
            conditions.append(
                condition("posted_before", self.posted_before, lambda p: posts.c.date_posted < p)
            )
        return all_of(*conditions)


async def page(
    session: AsyncSession, *, fields: frozenset[str], filter: PostFilter, order: Order, window: Window
) -> Page[AnyRow]:
    return await pagination.fetch_page(
        session, LISTING, fields=fields, where=filter.where(), order=order, window=window
    )


async def count(session: AsyncSession, filter: PostFilter) -> int:
    return await pagination.count(session, posts, filter.where())


async def pages_by_author(
    session: AsyncSession,
    author_ids: Sequence[int],
    *,
    fields: frozenset[str],
    filter: PostFilter,
    order: Order,
    window: Window,
) -> dict[int, Page[AnyRow]]:
    return await pagination.fetch_pages(
        session,
        LISTING,
        parent=posts.c.user_id,
        parent_ids=author_ids,
        fields=fields,
        where=filter.where(),
        order=order,
        window=window,
    )


async def counts_by_author(
    session: AsyncSession, author_ids: Sequence[int], filter: PostFilter
) -> dict[int, int]:
    return await pagination.count_per_parent(
        session, parent=posts.c.user_id, parent_ids=author_ids, where=filter.where()
    )


async def by_ids(session: AsyncSession, ids: Sequence[int], fields: frozenset[str]) -> dict[Any, AnyRow]:
    return await pagination.fetch_by(
        session, LISTING, key=posts.c.id, values=ids, fields=fields, where=EVERYTHING
    )


# Writes. Each runs inside the caller's write transaction (RequestDb.write).

_ROW = tuple(LISTING.columns.values())


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
