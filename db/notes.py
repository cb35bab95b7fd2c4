"""Writing notes (reads are derived from the Note type's declaration: schema/types/notes.py).
Notes are as private as their task."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import tasks
from db.access import check_row
from db.models import Note, table_of, utcnow
from db.pagination import AnyRow
from db.visibility import Viewer, can_change_note, can_see_note

notes = table_of(Note)

_ROW = (notes.c.id, notes.c.task_id, notes.c.body, notes.c.created_at)


# Writes. Each runs inside the caller's write transaction (RequestDb.write).


async def add_note(session: AsyncSession, viewer: Viewer, task_id: int, *, body: str) -> AnyRow:
    await tasks.check_may_change(session, viewer, task_id)
    statement = insert(notes).values(task_id=task_id, body=body, created_at=utcnow()).returning(*_ROW)
    return (await session.execute(statement)).one()


async def insert_notes(session: AsyncSession, task_id: int, bodies: list[str]) -> list[int]:
    """Notes for a task the caller just created (so may change); returns their ids."""
    if not bodies:
        return []
    now = utcnow()
    statement = insert(notes).values(
        [{"task_id": task_id, "body": body, "created_at": now} for body in bodies]
    )
    return sorted((await session.execute(statement.returning(notes.c.id))).scalars())


async def _check_may_change(session: AsyncSession, viewer: Viewer, pk: int) -> None:
    await check_row(
        session,
        kind="note",
        id_column=notes.c.id,
        pk=pk,
        visible=can_see_note(viewer),
        allowed=can_change_note(viewer),
        denied="You may not change this note.",
    )


async def update_note(session: AsyncSession, viewer: Viewer, pk: int, changes: dict[str, Any]) -> AnyRow:
    await _check_may_change(session, viewer, pk)
    if changes:
        await session.execute(update(notes).where(notes.c.id == pk).values(**changes))
    return (await session.execute(select(*_ROW).where(notes.c.id == pk))).one()


async def delete_note(session: AsyncSession, viewer: Viewer, pk: int) -> int:
    """Delete the note; returns its task's id."""
    await _check_may_change(session, viewer, pk)
    return (
        await session.execute(delete(notes).where(notes.c.id == pk).returning(notes.c.task_id))
    ).scalar_one()
