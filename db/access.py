"""Applying the rules of db/visibility.py to one row before a write changes it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import KeyedColumnElement

from db.errors import NotAllowed, NotFound
from db.visibility import holds
from db.where import Where


async def check_row(
    session: AsyncSession,
    *,
    kind: str,
    id_column: KeyedColumnElement[int],
    pk: int,
    visible: Where,
    allowed: Where,
    denied: str,
) -> None:
    """Raise NotFound when the row is absent or invisible to the viewer, NotAllowed when the
    viewer sees it but may not change it. One statement, evaluating both rules in SQL."""
    stmt = (
        select(holds(allowed).label("allowed"))
        .select_from(id_column.table)
        .where(id_column == pk, *visible.clauses())
    )
    row = (await session.execute(stmt, {**visible.params, **allowed.params})).first()
    if row is None:
        raise NotFound(kind, pk)
    if not row.allowed:
        raise NotAllowed(denied)
