"""Keyset pagination, for one list or for many parents at once, and the other list reads. No GraphQL.

A page is addressed by a sort key plus the row id (the tie-breaker), never by an OFFSET, so the
page after the millionth row costs what the first page costs. Per-parent pages ("the first 10
posts of each of these 50 users") are one statement: on PostgreSQL a LATERAL join runs the
one-parent page query for each parent, reading only its page from an index; elsewhere
ROW_NUMBER() OVER (PARTITION BY parent) numbers each parent's rows and the outer query keeps the
first n + 1 of each.

Statements are built once per shape and cached (db/where.py says why); every value is bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    FromClause,
    Integer,
    Row,
    Select,
    any_,
    bindparam,
    func,
    select,
    true,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import KeyedColumnElement

from db.timestamps import utc_text
from db.where import Where, param

if TYPE_CHECKING:
    AnyRow = Row[*tuple[Any, ...]]  # a result row of any width
    AnySelect = Select[*tuple[Any, ...]]
else:
    AnyRow = Row
    AnySelect = Select

R = TypeVar("R")

Keyset = tuple[Any, ...]  # (sort value, id), or (id,) when the order is the id itself


class InvalidKeyset(ValueError):
    """A cursor's position does not fit the ordering it claims (for example a bad timestamp)."""


@dataclass(frozen=True, slots=True)
class Order:
    key: str  # a name in Listing.sort_keys, e.g. "DATE_POSTED"
    descending: bool = False

    @property
    def token(self) -> str:
        """What a cursor records, so that it is refused under any other ordering."""
        return f"{self.key}:{'DESC' if self.descending else 'ASC'}"


@dataclass(frozen=True, slots=True)
class Window:
    """Which slice of the ordered list: first n after a position, or last n before one."""

    first: int | None = None
    after: Keyset | None = None
    last: int | None = None
    before: Keyset | None = None

    @property
    def size(self) -> int:
        size = self.last if self.last is not None else self.first
        assert size is not None, "a window needs first or last"
        return size

    @property
    def backwards(self) -> bool:
        return self.last is not None

    @property
    def shape(self) -> tuple[bool, bool, bool]:
        return (self.backwards, self.after is not None, self.before is not None)

    def params(self) -> dict[str, Any]:
        """The page's limit (one row more than it shows) and its cursors' positions."""
        return {"page_limit": self.size + 1, **self.position_params()}

    def position_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, keyset in (("after", self.after), ("before", self.before)):
            if keyset is not None:
                params[f"{name}_id"] = keyset[-1]
                if len(keyset) == 2:
                    params[f"{name}_key"] = keyset[0]
        return params


@dataclass(frozen=True, slots=True)
class Page(Generic[R]):
    rows: list[R]
    has_next: bool
    has_previous: bool


@dataclass(frozen=True, slots=True)
class Listing:
    """A table seen as an ordered list: its selectable columns and the keys it can sort by."""

    name: str  # part of every cached statement's key
    id: KeyedColumnElement[int]
    columns: Mapping[str, ColumnElement[Any]]
    # Columns, or expressions of the row (a search's rank: db/search.py).
    sort_keys: Mapping[str, ColumnElement[Any]]
    # Columns every page selects whatever the query asks for (ids the loaders need).
    always: tuple[str, ...] = field(default=("id",))

    def select_columns(self, fields: Iterable[str]) -> list[ColumnElement[Any]]:
        names = dict.fromkeys([*self.always, *(name for name in fields if name in self.columns)])
        return [self.columns[name].label(name) for name in names]

    def sort_column(self, order: Order) -> ColumnElement[Any]:
        return self.sort_keys[order.key]

    def keyset_of(self, row: AnyRow, order: Order) -> Keyset:
        if self.sort_column(order) is self.id:
            return (row.id,)
        return (row.sort_key, row.id)

    def decode_keyset(self, order: Order, values: Sequence[Any]) -> Keyset:
        """Turn a cursor's JSON values back into typed values for this ordering."""
        column = self.sort_column(order)
        expected = 1 if column is self.id else 2
        if len(values) != expected or not isinstance(values[-1], int) or isinstance(values[-1], bool):
            raise InvalidKeyset("the cursor does not hold a position in this list")
        if expected == 1:
            return (values[0],)
        python_type = column.type.python_type
        sort_value = values[0]
        try:
            if python_type is datetime:
                sort_value = datetime.fromisoformat(sort_value)
                if sort_value.tzinfo is None:
                    raise InvalidKeyset("the cursor's timestamp has no time zone")
            elif not isinstance(sort_value, python_type):
                sort_value = python_type(sort_value)
        except (TypeError, ValueError) as exc:
            raise InvalidKeyset(f"the cursor's sort value is not a {python_type.__name__}") from exc
        return (sort_value, values[1])


def encode_keyset_value(value: Any) -> Any:
    """JSON-friendly form of a sort value, read back by Listing.decode_keyset."""
    return utc_text(value) if isinstance(value, datetime) else value


class StatementCache:
    """Built statements by shape, least recently used dropped (the shapes a schema allows are
    many in theory and few in practice)."""

    def __init__(self, max_entries: int = 2000) -> None:
        self.max_entries = max_entries
        self._statements: OrderedDict[Hashable, AnySelect] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], AnySelect]) -> AnySelect:
        statement = self._statements.get(key)
        if statement is None:
            statement = self._statements[key] = build()
            while len(self._statements) > self.max_entries:
                self._statements.popitem(last=False)
        else:
            self._statements.move_to_end(key)
        return statement


STATEMENTS = StatementCache()


# Building statements (each called once per shape).


def _ordering(
    listing: Listing, order: Order, reverse: bool, sort_key: ColumnElement[Any] | None = None
) -> list[ColumnElement[Any]]:
    """ORDER BY the sort key, then id. `sort_key`: the selected label to order by instead of the
    key itself, so that an expression (a search's rank) is computed once per row, not twice."""
    descending = order.descending != reverse
    columns = [listing.sort_column(order)]
    if columns[0] is not listing.id:
        if sort_key is not None:
            columns[0] = sort_key
        columns.append(listing.id)
    return [column.desc() if descending else column.asc() for column in columns]


def _position(listing: Listing, order: Order, window: Window) -> list[ColumnElement[bool]]:
    """Keyset predicates: strictly after `after` and strictly before `before`, in page order."""
    sort = listing.sort_column(order)
    clauses = []
    for name, keyset, forward in (("after", window.after, True), ("before", window.before, False)):
        if keyset is None:
            continue
        key: ColumnElement[Any]
        bound: ColumnElement[Any]
        if sort is listing.id:
            key, bound = listing.id, param(f"{name}_id", listing.id.type)
        else:
            key = tuple_(sort, listing.id)
            bound = tuple_(param(f"{name}_key", sort.type), param(f"{name}_id", listing.id.type))
        clauses.append(key > bound if forward != order.descending else key < bound)
    return clauses


def _with_sort(
    listing: Listing, order: Order, fields: Iterable[str]
) -> tuple[list[ColumnElement[Any]], ColumnElement[Any] | None]:
    """The columns a page selects, with its sort key labelled `sort_key` (also returned, for
    ORDER BY), unless the order is by id."""
    columns = listing.select_columns(fields)
    sort = listing.sort_column(order)
    if sort is listing.id:
        return columns, None
    label = sort.label("sort_key")
    return [*columns, label], label


def _limit() -> Any:
    return param("page_limit", Integer())


def _one_of(column: KeyedColumnElement[Any], name: str, dialect: str) -> ColumnElement[bool]:
    """column IN (the values bound as `name`): one array parameter on PostgreSQL (one prepared
    statement whatever the count), an expanding IN list elsewhere."""
    if dialect == "postgresql":
        return column == any_(param(name, ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True, required=True))


def select_page(
    listing: Listing,
    *,
    fields: Iterable[str],
    where: Sequence[ColumnElement[bool]],
    order: Order,
    window: Window,
) -> AnySelect:
    """One page: at most window.size + 1 rows (the extra row only tells that there is more)."""
    columns, sort_key = _with_sort(listing, order, fields)
    return (
        select(*columns)
        .where(*where, *_position(listing, order, window))
        .order_by(*_ordering(listing, order, reverse=window.backwards, sort_key=sort_key))
        .limit(_limit())
    )


def select_pages_per_parent(
    listing: Listing,
    *,
    parent: KeyedColumnElement[int],
    fields: Iterable[str],
    where: Sequence[ColumnElement[bool]],
    order: Order,
    window: Window,
    dialect: str,
) -> AnySelect:
    """The page of every parent (bound as `parent_ids`); rows come back grouped by parent, in page order."""
    ordering = _ordering(listing, order, reverse=window.backwards)
    if dialect == "postgresql":
        parents = (
            func.unnest(param("parent_ids", ARRAY(Integer())))
            .table_valued("id")
            .render_derived(name="parents")
        )
        columns, _ = _with_sort(listing, order, fields)
        page = (
            select(*columns, func.row_number().over(order_by=ordering).label("page_rank"))
            .where(parent == parents.c.id, *where, *_position(listing, order, window))
            .order_by(*ordering)
            .limit(_limit())
            .lateral("page")
        )
        kept = [column for column in page.c if column.key != "page_rank"]
        return (
            select(parents.c.id.label("parent_key"), *kept)
            .select_from(parents.join(page, true()))
            .order_by(parents.c.id, page.c.page_rank)
        )
    rank = func.row_number().over(partition_by=parent, order_by=ordering)
    ranked = (
        select(*_with_sort(listing, order, fields)[0], parent.label("parent_key"), rank.label("page_rank"))
        .where(_one_of(parent, "parent_ids", dialect), *where, *_position(listing, order, window))
        .subquery()
    )
    kept = [column for column in ranked.c if column.key != "page_rank"]
    return (
        select(*kept).where(ranked.c.page_rank <= _limit()).order_by(ranked.c.parent_key, ranked.c.page_rank)
    )


# Reading: the cached statement for the shape, executed with this request's values.


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def page_from_rows(rows: Sequence[R], window: Window) -> Page[R]:
    more = len(rows) > window.size
    kept = list(rows[: window.size])
    if window.backwards:
        kept.reverse()
        return Page(kept, has_next=window.before is not None, has_previous=more)
    return Page(kept, has_next=more, has_previous=window.after is not None)


async def fetch_page(
    session: AsyncSession,
    listing: Listing,
    *,
    fields: frozenset[str],
    where: Where,
    order: Order,
    window: Window,
) -> Page[AnyRow]:
    key = ("page", listing.name, fields, order, window.shape, where.shape)
    statement = STATEMENTS.get(
        key, lambda: select_page(listing, fields=fields, where=where.clauses(), order=order, window=window)
    )
    rows = (await session.execute(statement, {**where.params, **window.params()})).all()
    return page_from_rows(rows, window)


async def fetch_pages(
    session: AsyncSession,
    listing: Listing,
    *,
    parent: KeyedColumnElement[int],
    parent_ids: Sequence[int],
    fields: frozenset[str],
    where: Where,
    order: Order,
    window: Window,
) -> dict[int, Page[AnyRow]]:
    dialect = _dialect(session)
    key = ("pages", listing.name, parent.key, fields, order, window.shape, where.shape, dialect)
    statement = STATEMENTS.get(
        key,
        lambda: select_pages_per_parent(
            listing,
            parent=parent,
            fields=fields,
            where=where.clauses(),
            order=order,
            window=window,
            dialect=dialect,
        ),
    )
    params = {**where.params, **window.params(), "parent_ids": list(parent_ids)}
    grouped: dict[int, list[AnyRow]] = {parent_id: [] for parent_id in parent_ids}
    for row in (await session.execute(statement, params)).all():
        grouped[row.parent_key].append(row)
    return {parent_id: page_from_rows(group, window) for parent_id, group in grouped.items()}


async def count(session: AsyncSession, table: FromClause, where: Where) -> int:
    key = ("count", table.name, where.shape)  # type: ignore[attr-defined]
    statement = STATEMENTS.get(key, lambda: select(func.count()).select_from(table).where(*where.clauses()))
    return (await session.execute(statement, dict(where.params))).scalar_one()


async def count_per_parent(
    session: AsyncSession, *, parent: KeyedColumnElement[int], parent_ids: Sequence[int], where: Where
) -> dict[int, int]:
    dialect = _dialect(session)
    key = ("counts", parent.table.name, parent.key, where.shape, dialect)
    statement = STATEMENTS.get(
        key,
        lambda: (
            select(parent, func.count())
            .where(_one_of(parent, "parent_ids", dialect), *where.clauses())
            .group_by(parent)
        ),
    )
    counts = {parent_id: 0 for parent_id in parent_ids}
    rows = (await session.execute(statement, {**where.params, "parent_ids": list(parent_ids)})).all()
    counts.update({row[0]: row[1] for row in rows})
    return counts


async def fetch_by(
    session: AsyncSession,
    listing: Listing,
    *,
    key: KeyedColumnElement[Any],
    values: Sequence[Any],
    fields: frozenset[str],
    where: Where,
) -> dict[Any, AnyRow]:
    """Rows whose `key` is one of `values`, by key value (missing or invisible rows are absent)."""
    dialect = _dialect(session)
    cache_key = ("by", listing.name, key.key, fields, where.shape, dialect)
    statement = STATEMENTS.get(
        cache_key,
        lambda: select(*listing.select_columns(fields), key.label("lookup_key")).where(
            _one_of(key, "lookup_keys", dialect), *where.clauses()
        ),
    )
    rows = (await session.execute(statement, {**where.params, "lookup_keys": list(values)})).all()
    return {row.lookup_key: row for row in rows}
