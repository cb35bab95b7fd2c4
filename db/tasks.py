"""Reading and writing tasks. Every read applies `can_see_task`: tasks are private."""

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
from db.models import Task, TaskStatus, table_of, utcnow
from db.pagination import AnyRow, Listing, Order, Page, Window
from db.visibility import Viewer, can_change_task, can_see_task
from db.where import Where, all_of, condition, like_escape

tasks = table_of(Task)

LISTING = Listing(
    name="tasks",
    id=tasks.c.id,
    columns={
        "id": tasks.c.id,
        "title": tasks.c.title,
        "status": tasks.c.status,
        "owner_id": tasks.c.owner_id,
        "created_at": tasks.c.created_at,
    },
    sort_keys={
        "ID": tasks.c.id,
        "CREATED_AT": tasks.c.created_at,
        "TITLE": tasks.c.title,
        "STATUS": tasks.c.status,
    },
)


@dataclass(frozen=True, slots=True)
class TaskFilter:
    status: TaskStatus | None = None
    title_contains: str | None = None
    created_after: datetime | None = None

    def where(self, viewer: Viewer) -> Where:
        conditions = [can_see_task(viewer)]
        if self.status is not None:
            conditions.append(condition("status", self.status, lambda p: tasks.c.status == p))
        if self.title_contains:
            conditions.append(
                condition(
                    "title_contains",
                    like_escape(self.title_contains),
                    lambda p: tasks.c.title.icontains(p, escape="/"),
                )
            )
        if self.created_after is not None:
            conditions.append(
                condition("created_after", self.created_after, lambda p: tasks.c.created_at > p)
            )
        return all_of(*conditions)


async def page(
    session: AsyncSession,
    viewer: Viewer,
    *,
    fields: frozenset[str],
    filter: TaskFilter,
    order: Order,
    window: Window,
) -> Page[AnyRow]:
    return await pagination.fetch_page(
        session, LISTING, fields=fields, where=filter.where(viewer), order=order, window=window
    )


async def count(session: AsyncSession, viewer: Viewer, filter: TaskFilter) -> int:
    return await pagination.count(session, tasks, filter.where(viewer))


async def pages_by_owner(
    session: AsyncSession,
    viewer: Viewer,
    owner_ids: Sequence[int],
    *,
    fields: frozenset[str],
    filter: TaskFilter,
    order: Order,
    window: Window,
) -> dict[int, Page[AnyRow]]:
    return await pagination.fetch_pages(
        session,
        LISTING,
        parent=tasks.c.owner_id,
        parent_ids=owner_ids,
        fields=fields,
        where=filter.where(viewer),
        order=order,
        window=window,
    )


async def counts_by_owner(
    session: AsyncSession, viewer: Viewer, owner_ids: Sequence[int], filter: TaskFilter
) -> dict[int, int]:
    return await pagination.count_per_parent(
        session, parent=tasks.c.owner_id, parent_ids=owner_ids, where=filter.where(viewer)
    )


async def by_ids(
    session: AsyncSession, viewer: Viewer, ids: Sequence[int], fields: frozenset[str]
) -> dict[Any, AnyRow]:
    return await pagination.fetch_by(
        session, LISTING, key=tasks.c.id, values=ids, fields=fields, where=can_see_task(viewer)
    )


# Writes. Each runs inside the caller's write transaction (RequestDb.write).

_ROW = tuple(LISTING.columns.values())


async def create_task(session: AsyncSession, *, owner_id: int, title: str, status: TaskStatus) -> AnyRow:
    statement = (
        insert(tasks)
        .values(owner_id=owner_id, title=title, status=status, created_at=utcnow())
        .returning(*_ROW)
    )
    try:
        return (await session.execute(statement)).one()
    except IntegrityError as error:
        if is_foreign_key_violation(error):
            raise AccountGone() from error
        raise


async def check_may_change(session: AsyncSession, viewer: Viewer, pk: int) -> None:
    await check_row(
        session,
        kind="task",
        id_column=tasks.c.id,
        pk=pk,
        visible=can_see_task(viewer),
        allowed=can_change_task(viewer),
        denied="You may not change this task.",
    )


async def update_task(session: AsyncSession, viewer: Viewer, pk: int, changes: dict[str, Any]) -> AnyRow:
    await check_may_change(session, viewer, pk)
    if changes:
        await session.execute(update(tasks).where(tasks.c.id == pk).values(**changes))
    return (await session.execute(select(*_ROW).where(tasks.c.id == pk))).one()


async def delete_task(session: AsyncSession, viewer: Viewer, pk: int) -> int:
    """Delete the task and (ON DELETE CASCADE) its notes; returns its owner's id."""
    await check_may_change(session, viewer, pk)
    return (
        await session.execute(delete(tasks).where(tasks.c.id == pk).returning(tasks.c.owner_id))
    ).scalar_one()
