"""Rows written under the rules of db/visibility.py: insert, change and delete, one row at a time.

A `Guard` (db/visibility.py) says who may write a table's rows: a viewer who does not see a row is
told it does not exist (NotFound), one who sees it but may not change it is told why
(NotAllowed); both rules are evaluated in SQL, in one statement, before the write. Each function
runs inside the caller's write transaction (RequestDb.write), so a refusal rolls back whatever
came before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Insert, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import check_row
from db.errors import AccountGone, WriteRefused, is_foreign_key_violation
from db.pagination import AnyRow
from db.visibility import Guard, Viewer


async def check(session: AsyncSession, guard: Guard, viewer: Viewer, pk: int) -> None:
    """NotFound when the viewer does not see row `pk`, NotAllowed when they may not change it."""
    await check_row(
        session,
        kind=guard.kind,
        id_column=guard.table.c.id,
        pk=pk,
        visible=guard.visible(viewer),
        allowed=guard.allowed(viewer),
        denied=guard.denied,
    )


async def insert_row(
    session: AsyncSession,
    table: Table,
    values: dict[str, Any],
    *,
    gone: Callable[[], WriteRefused] = AccountGone,
) -> AnyRow:
    """Insert a row; the whole row back. A foreign key that names a row deleted meanwhile (the
    viewer's account, say) raises `gone()`."""
    return (await insert_rows(session, table, [values], gone=gone))[0]


async def insert_rows(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    gone: Callable[[], WriteRefused] = AccountGone,
) -> list[AnyRow]:
    if not rows:
        return []
    try:
        result = await session.execute(_insert_returning(table), list(rows))
    except IntegrityError as error:
        if is_foreign_key_violation(error):
            raise gone() from error
        raise
    return sorted(result.all(), key=lambda row: row.id)


@cache
def _insert_returning(table: Table) -> Insert:
    """A table's INSERT ... RETURNING, built once. The rows go as parameters, not as
    `.values(rows)`: a statement with its values inlined is compiled anew on every call (a fifth
    of a createPost's CPU); this one is compiled once, and SQLAlchemy batches several rows."""
    return insert(table).returning(*table.c)


async def update_row(
    session: AsyncSession, guard: Guard, viewer: Viewer, pk: int, values: dict[str, Any]
) -> AnyRow:
    """Change a row the viewer may change; the row as it is now."""
    await check(session, guard, viewer, pk)
    table = guard.table
    if values:
        changed = update(table).where(table.c.id == pk).values(**values)
        if session.get_bind().dialect.update_returning:
            return (await session.execute(changed.returning(*table.c))).one()
        await session.execute(changed)  # MariaDB: its UPDATE has no RETURNING
    return (await session.execute(select(*table.c).where(table.c.id == pk))).one()


async def delete_row(session: AsyncSession, guard: Guard, viewer: Viewer, pk: int) -> AnyRow:
    """Delete a row the viewer may delete (its children go with it: ON DELETE CASCADE); the row
    as it was."""
    await check(session, guard, viewer, pk)
    table = guard.table
    return (await session.execute(delete(table).where(table.c.id == pk).returning(*table.c))).one()
