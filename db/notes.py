"""Reading and writing notes. Every read applies `can_see_note`: notes are as private as their task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import pagination, tasks
from db.access import check_row
from db.models import Note, table_of, utcnow
from db.pagination import AnyRow, Listing, Order, Page, Window
from db.visibility import Viewer, can_change_note, can_see_note
from db.where import Where, all_of, condition, like_escape

notes = table_of(Note)

LISTING = Listing(
    name="notes",
    id=notes.c.id,
    columns={
        "id": notes.c.id,
        "task_id": notes.c.task_id,
        "body": notes.c.body,
        "created_at": notes.c.created_at,
    },
    sort_keys={"ID": notes.c.id, "CREATED_AT": notes.c.created_at},
)


@dataclass(frozen=True, slots=True)
class NoteFilter:
    body_contains: str | None = None
    created_after: datetime | None = None

    def where(self, viewer: Viewer) -> Where:
        conditions = [can_see_note(viewer)]
        if self.body_contains:
            conditions.append(
                condition(
                    "body_contains",
                    like_escape(self.body_contains),
                    lambda p: notes.c.body.icontains(p, escape="/"),
                )
            )
        if self.created_after is not None:
            conditions.append(
                condition("created_after", self.created_after, lambda p: notes.c.created_at > p)
            )
        return all_of(*conditions)


async def pages_by_task(
    session: AsyncSession,
    viewer: Viewer,
    task_ids: Sequence[int],
    *,
    fields: frozenset[str],
    filter: NoteFilter,
    order: Order,
    window: Window,
) -> dict[int, Page[AnyRow]]:
    return await pagination.fetch_pages(
        session,
        LISTING,
        parent=notes.c.task_id,
        parent_ids=task_ids,
        fields=fields,
        where=filter.where(viewer),
        order=order,
        window=window,
    )


async def counts_by_task(
    session: AsyncSession, viewer: Viewer, task_ids: Sequence[int], filter: NoteFilter
) -> dict[int, int]:
    return await pagination.count_per_parent(
        session, parent=notes.c.task_id, parent_ids=task_ids, where=filter.where(viewer)
    )


async def by_ids(
    session: AsyncSession, viewer: Viewer, ids: Sequence[int], fields: frozenset[str]
) -> dict[Any, AnyRow]:
    return await pagination.fetch_by(
        session, LISTING, key=notes.c.id, values=ids, fields=fields, where=can_see_note(viewer)
    )


# Writes. Each runs inside the caller's write transaction (RequestDb.write).

_ROW = tuple(LISTING.columns.values())


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
