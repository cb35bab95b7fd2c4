"""Aggregates of a list's rows (count, min, max, sum, avg), as SQL both read paths share.

The resolvers select them labelled (`measures`, `fetch_measures`); the compiled planner builds
the same expressions into its JSON (schema/compiled/sql.py). Averages are rounded to
AVERAGE_DIGITS decimals and sums and averages are doubles on every engine, so the three engines
and both paths print the same numbers (PostgreSQL's and MariaDB's AVG of an integer is an exact
decimal of their own precision; SQLite's JSON prints a double with 15 digits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.schema import Column, Table

from db.models import UtcDateTime
from db.where import Where

AVERAGE_DIGITS = 6
FUNCTIONS = ("count", "min", "max", "sum", "avg")


class _Sum(FunctionElement[float]):
    type = Float()
    inherit_cache = True
    name = "quill_sum"


class _Average(FunctionElement[float]):
    type = Float()
    inherit_cache = True
    name = "quill_avg"


@compiles(_Sum)
def _sum(element: _Sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


@compiles(_Sum, "sqlite")
def _sum_sqlite(element: _Sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(sum({compiler.process(element.clauses, **kw)}) AS REAL)"


@compiles(_Sum, "postgresql")
def _sum_postgresql(element: _Sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(sum({compiler.process(element.clauses, **kw)}) AS DOUBLE PRECISION)"


@compiles(_Sum, "mysql")
def _sum_mysql(element: _Sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(SUM({compiler.process(element.clauses, **kw)}) AS DOUBLE)"


@compiles(_Average)
def _average(element: _Average, compiler: SQLCompiler, **kw: Any) -> str:
    return f"round(avg({compiler.process(element.clauses, **kw)}), {AVERAGE_DIGITS})"


@compiles(_Average, "postgresql")
def _average_postgresql(element: _Average, compiler: SQLCompiler, **kw: Any) -> str:
    inner = compiler.process(element.clauses, **kw)
    return f"CAST(round(CAST(avg({inner}) AS NUMERIC), {AVERAGE_DIGITS}) AS DOUBLE PRECISION)"


@compiles(_Average, "mysql")
def _average_mysql(element: _Average, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(ROUND(AVG({compiler.process(element.clauses, **kw)}), {AVERAGE_DIGITS}) AS DOUBLE)"


def measure(function: str, column: ColumnElement[Any] | None = None) -> ColumnElement[Any]:
    """One aggregate over the rows: `count` (of rows), or `min`/`max` (typed as the column, so a
    timestamp reads back as one), `sum` or `avg` of the column."""
    if function == "count":
        return func.count()
    assert column is not None, function
    if function == "min":
        return func.min(column, type_=column.type)
    if function == "max":
        return func.max(column, type_=column.type)
    if function == "sum":
        return _Sum(column)
    if function == "avg":
        return _Average(column)
    raise ValueError(f"unknown aggregate {function!r}")


def label(function: str, column: str | None = None) -> str:
    return function if column is None else f"{function}_{column}"


def measures(table: Table, numbers: Sequence[str], instants: Sequence[str]) -> list[ColumnElement[Any]]:
    """Every aggregate a type offers, labelled: the count, min/max of its numbers and instants,
    sum/avg of its numbers."""
    found: list[ColumnElement[Any]] = [measure("count").label(label("count"))]
    for name in (*numbers, *instants):
        found += [measure(f, table.c[name]).label(label(f, name)) for f in ("min", "max")]
    for name in numbers:
        found += [measure(f, table.c[name]).label(label(f, name)) for f in ("sum", "avg")]
    return found


async def fetch_measures(
    session: AsyncSession,
    table: Table,
    columns: list[ColumnElement[Any]],
    where: Where,
    parent: Column[int] | None = None,
    parent_ids: Sequence[int] = (),
) -> dict[int | None, dict[str, Any]]:
    """The aggregates of the rows `where` holds: of all of them (key None), or, with a `parent`
    column, of each parent's rows (one statement; a parent without rows gets the empty list's
    aggregates: a count of 0, nulls elsewhere)."""
    if parent is None:
        statement = select(*columns).select_from(table).where(*where.clauses())
        row = (await session.execute(statement, where.params)).one()
        return {None: dict(row._mapping)}
    statement = (
        select(parent.label("parent"), *columns)
        .select_from(table)
        .where(parent.in_(list(parent_ids)), *where.clauses())
        .group_by(parent)
    )
    rows = (await session.execute(statement, where.params)).all()
    found: dict[int | None, dict[str, Any]] = {row.parent: dict(row._mapping) for row in rows}
    empty: dict[str, Any] = {str(column.key): (0 if column.key == "count" else None) for column in columns}
    return {parent_id: found.get(parent_id, empty) for parent_id in parent_ids}


# Grouping: by columns (a relation's link, an enum) and by timestamps cut into UTC buckets.

BUCKETS = ("day", "week", "month")  # a week starts on Monday (ISO 8601)


class Bucket(FunctionElement[datetime]):
    """The start of the UTC day, week or month a timestamp falls in, as the column stores
    timestamps (so both read paths print it as they print the column)."""

    type = UtcDateTime()
    inherit_cache = True
    name = "quill_bucket"

    def __init__(self, unit: str, column: ColumnElement[Any]) -> None:
        assert unit in BUCKETS, unit
        self.unit = unit
        super().__init__(column)


@compiles(Bucket, "postgresql")
def _bucket_postgresql(element: Bucket, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date_trunc('{element.unit}', {compiler.process(element.clauses, **kw)}, 'UTC')"


@compiles(Bucket, "sqlite")
def _bucket_sqlite(element: Bucket, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC (db/models.py's UtcDateTime).
    column = compiler.process(element.clauses, **kw)
    if element.unit == "day":
        return f"strftime('%Y-%m-%d 00:00:00.000000', {column})"
    if element.unit == "month":
        return f"strftime('%Y-%m-01 00:00:00.000000', {column})"
    return f"strftime('%Y-%m-%d 00:00:00.000000', {column}, 'weekday 0', '-6 days')"  # back to Monday


@compiles(Bucket, "mysql")
def _bucket_mysql(element: Bucket, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    if element.unit == "day":
        return f"CAST(DATE({column}) AS DATETIME(6))"
    if element.unit == "month":
        return f"CAST(DATE_FORMAT({column}, '%%Y-%%m-01') AS DATETIME(6))"
    return f"CAST(DATE({column}) - INTERVAL WEEKDAY({column}) DAY AS DATETIME(6))"


def group_keys(
    keys: Sequence[tuple[str, str | None]], column: Callable[[str], ColumnElement[Any]]
) -> list[ColumnElement[Any]]:
    """The SQL of a groupBy's keys, (column, bucket) each: the column itself, or its bucket."""
    return [Bucket(bucket, column(name)) if bucket is not None else column(name) for name, bucket in keys]


def group_order(
    keys: Sequence[ColumnElement[Any]], by_count: bool, descending: bool
) -> list[tuple[ColumnElement[Any], bool]]:
    """How groups are listed, as (expression, descending): by their count (ties by their keys,
    ascending), or by their keys."""
    if by_count:
        return [(func.count(), descending), *((key, False) for key in keys)]
    return [(key, descending) for key in keys]


def ordered(order: Sequence[tuple[ColumnElement[Any], bool]]) -> list[ColumnElement[Any]]:
    return [value.desc() if descending else value.asc() for value, descending in order]


async def fetch_groups(
    session: AsyncSession,
    table: Table,
    keys: list[ColumnElement[Any]],
    columns: list[ColumnElement[Any]],
    where: Where,
    order: list[tuple[ColumnElement[Any], bool]],
    first: int,
    parent: Column[int] | None = None,
    parent_ids: Sequence[int] = (),
) -> dict[int | None, list[dict[str, Any]]]:
    """The first `first` groups of the rows `where` holds, in `order`: of all of them (key None)
    or of each parent's rows (one statement: a window numbers each parent's groups). `keys` are
    labelled k0, k1, ...; each group carries them and `columns` (the measures)."""
    grouped = [key.label(f"k{number}") for number, key in enumerate(keys)]
    if parent is None:
        statement = (
            select(*grouped, *columns)
            .select_from(table)
            .where(*where.clauses())
            .group_by(*keys)
            .order_by(*ordered(order))
            .limit(first)
        )
        rows = (await session.execute(statement, where.params)).all()
        return {None: [dict(row._mapping) for row in rows]}
    numbered = (
        select(
            parent.label("parent"),
            *grouped,
            *columns,
            func.row_number().over(partition_by=parent, order_by=ordered(order)).label("n"),
        )
        .select_from(table)
        .where(parent.in_(list(parent_ids)), *where.clauses())
        .group_by(parent, *keys)
        .subquery("g")
    )
    statement = select(numbered).where(numbered.c.n <= first).order_by(numbered.c.parent, numbered.c.n)
    found: dict[int | None, list[dict[str, Any]]] = {parent_id: [] for parent_id in parent_ids}
    for row in (await session.execute(statement, where.params)).all():
        found[row.parent].append(dict(row._mapping))
    return found
