"""Writing tasks (reads are derived from the Task type's declaration: schema/types/tasks.py).
Every write applies `can_change_task`: tasks are private."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import check_row
from db.errors import AccountGone, is_foreign_key_violation
from db.models import Task, TaskStatus, table_of, utcnow
from db.pagination import AnyRow
from db.visibility import Viewer, can_change_task, can_see_task

tasks = table_of(Task)

_ROW = (tasks.c.id, tasks.c.title, tasks.c.status, tasks.c.owner_id, tasks.c.created_at)


# Writes. Each runs inside the caller's write transaction (RequestDb.write).


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
