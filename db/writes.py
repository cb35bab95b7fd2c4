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

from sqlalchemy import ColumnElement, Insert, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import check_row
from db.errors import AccountGone, NotFound, StaleVersion, WriteRefused, is_foreign_key_violation
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
    session: AsyncSession,
    guard: Guard,
    viewer: Viewer,
    pk: int,
    values: dict[str, Any],
    *,
    expected_version: int | None = None,
) -> AnyRow:
    """Change a row the viewer may change, counting one more version; the row as it is now.
    With `expected_version`, only if the row is still at that version (StaleVersion if not):
    the condition is part of the UPDATE, so of two writers that edited one version, one wins."""
    await check(session, guard, viewer, pk)
    table = guard.table
    where = _at_version(table, pk, expected_version)
    if values:
        changed = update(table).where(*where).values(**values, **next_version(table))
        if session.get_bind().dialect.update_returning:
            row = (await session.execute(changed.returning(*table.c))).one_or_none()
        else:  # MariaDB: its UPDATE has no RETURNING; rowcount counts the rows matched
            written = await session.execute(changed)
            row = None if written.rowcount == 0 else await _read(session, table, pk)  # type: ignore[attr-defined]
    else:
        row = (await session.execute(select(*table.c).where(*where))).one_or_none()
    if row is None:
        raise await _refusal(session, guard, pk)
    return row


async def delete_row(
    session: AsyncSession, guard: Guard, viewer: Viewer, pk: int, *, expected_version: int | None = None
) -> AnyRow:
    """Delete a row the viewer may delete (its children go with it: ON DELETE CASCADE); the row
    as it was. With `expected_version`, only if the row is still at that version."""
    await check(session, guard, viewer, pk)
    table = guard.table
    deleted = delete(table).where(*_at_version(table, pk, expected_version)).returning(*table.c)
    row = (await session.execute(deleted)).one_or_none()
    if row is None:
        raise await _refusal(session, guard, pk)
    return row


def _at_version(table: Table, pk: int, expected_version: int | None) -> list[ColumnElement[bool]]:
    if expected_version is None:
        return [table.c.id == pk]
    return [table.c.id == pk, at_version(table, expected_version)]


def at_version(table: Table, version: Any) -> ColumnElement[bool]:
    """The row is still at `version` (a value, or a parameter of a compiled write)."""
    return table.c.version == version


def next_version(table: Table) -> dict[str, Any]:
    """What every change of a versioned row also sets (this module's and the compiled writes)."""
    return {"version": table.c.version + 1} if "version" in table.c else {}


async def _read(session: AsyncSession, table: Table, pk: int) -> AnyRow | None:
    return (await session.execute(select(*table.c).where(table.c.id == pk))).one_or_none()


async def _refusal(session: AsyncSession, guard: Guard, pk: int) -> WriteRefused:
    """Why a row that passed the check was not written: it moved past the expected version, or
    it was deleted in between."""
    row = await _read(session, guard.table, pk)
    if row is None:
        return NotFound(guard.kind, pk)
    return StaleVersion(guard.kind, pk, row.version)
