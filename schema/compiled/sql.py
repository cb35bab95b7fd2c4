"""A read tree (schema/compiled/tree.py) compiled into one statement that returns the response body.

Every object and page of the tree is a scalar subquery of its parent, so the database walks
the tree itself:

    SELECT json_build_object('users', json_build_object('edges', (
      SELECT coalesce(json_agg(json_build_object('node', json_build_object('username', p0.username,
               'posts', json_build_object('edges', (SELECT ... FROM (SELECT ... FROM posts AS t1
                 WHERE t1.user_id = p0.id ORDER BY t1.id LIMIT :n1_page_size) AS p1)))))
             ORDER BY p0.id), '[]')
      FROM (SELECT t0.id, t0.username FROM users AS t0 ORDER BY t0.id LIMIT :n0_page_size) AS p0)))

- A page's rows are `LIMIT size` under the keyset predicates of db/pagination.py, so a deep page
  costs what the first page costs. What pageInfo asks for reads the same index on its own and
  builds no JSON: hasNextPage looks one row past the page (`LIMIT 1 OFFSET size`), a start or end
  cursor keeps the first or last row of the page. Nothing numbers rows (no window function).
- A to-one object is a correlated lookup per row, never a join: PostgreSQL's generic plan for a
  join to `users` hashed the whole table for every page. An object that is the row its page hangs
  from (`user.posts.author`, a `Parent`) reads that row's columns and needs no lookup at all.
- Visibility rules (db/visibility.py, through the node types' declarations) and filters arrive
  as `Where`s and go into the SQL as they are, as do the listings' column expressions (a hidden
  email reads as NULL).

Statements are compiled once per shape; each node's parameters are renamed to its number.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    FromClause,
    Integer,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.util import ClauseAdapter
from sqlalchemy.sql.visitors import replacement_traverse

from db.aggregates import group_keys, group_order, label, measure, ordered
from db.events import OUTBOX_COLUMNS, EventOf, outbox
from db.models import UtcDateTime
from db.pagination import Listing, _ordering, _position
from db.statements import CompiledStatement, NamedParameters, compile_positional
from db.visibility import VIEWER_ID, Guard
from db.where import EVERYTHING, Where
from db.writes import at_version, next_version
from schema.compiled.dialects import MAX_OBJECT_KEYS, JsonSql, KeyKind, constant
from schema.compiled.tree import (
    MISSING_ROW,
    Aggregate,
    Array,
    Column,
    Constant,
    Cursor,
    Edges,
    Fields,
    GlobalId,
    Groups,
    Measure,
    Named,
    Nested,
    Node,
    NotCompilable,
    Null,
    One,
    Page,
    PageFlag,
    Parent,
    Part,
    TotalCount,
    Value,
    shape_of,
)

Parts = tuple[tuple[str, Part], ...]
Adapt = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Row:
    """What an object's fields read: a row's columns by listing name, and the row its page hangs
    from (for `Parent`)."""

    column: Callable[[str], ColumnElement[Any]]
    parent: _Row | None = None


def _no_column(name: str) -> ColumnElement[Any]:
    raise NotCompilable(f"the root has no row to read {name!r} from")


ROOT = _Row(_no_column)


def _renamed(prefix: str, viewer: ColumnElement[Any] | None = None) -> Adapt:
    """How to give a clause's parameters names of their own (`prefix` + name), so that the rules
    of several nodes can share one statement; with `viewer`, the viewer's id is that column
    instead (a statement compiled for a list of viewers)."""

    def rename(element: Any) -> Any:
        if isinstance(element, BindParameter):
            if viewer is not None and element.key == VIEWER_ID:
                return viewer
            return bindparam(f"{prefix}{element.key}", type_=element.type, required=True)
        return None

    return lambda clause: replacement_traverse(clause, {}, rename)  # type: ignore[call-overload]


class _Builder:
    def __init__(self, json: JsonSql, viewer: ColumnElement[Any] | None = None) -> None:
        self.json = json
        self.numbers = 0
        self.viewer = viewer  # where the viewer's id is a column of a list of viewers (compile_read)

    def _next(self) -> int:
        number, self.numbers = self.numbers, self.numbers + 1
        return number

    def _source(self, listing: Listing, number: int, prefix: str) -> tuple[FromClause, Adapt]:
        """The listing's table under a name of its own, and how to move clauses onto it (their
        parameters renamed for node `number`)."""
        alias = listing.id.table.alias(f"{prefix}{number}")
        adapter = ClauseAdapter(alias)
        rename = _renamed(f"n{number}_", self.viewer)
        return alias, lambda clause: rename(adapter.traverse(clause))

    # Objects.

    def fields(self, fields: Fields, row: _Row) -> ColumnElement[Any]:
        return self.object([(key, self.value(value, row)) for key, value in fields])

    def object(self, pairs: Sequence[tuple[str, ColumnElement[Any]]]) -> ColumnElement[Any]:
        if len(pairs) > MAX_OBJECT_KEYS:
            raise NotCompilable(f"an object with more than {MAX_OBJECT_KEYS} fields")
        return self.json.object(pairs)

    def value(self, value: Value, row: _Row) -> ColumnElement[Any]:
        json = self.json
        if isinstance(value, Column):
            column = row.column(value.name)
            if value.kind == "bool":
                return json.boolean(column)
            return json.datetime(column) if value.kind == "datetime" else column
        if isinstance(value, GlobalId):
            return json.global_id(value.type_name, row.column("id"))
        if isinstance(value, Constant):
            return constant(value.text)
        if isinstance(value, Null):
            return json.null()
        if isinstance(value, Named):
            column = row.column(value.column)
            return case(*((column == constant(stored), constant(name)) for stored, name in value.names))
        if isinstance(value, Parent):
            if row.parent is None:
                raise NotCompilable("a parent object outside a nested page")
            return self.fields(value.fields, row.parent)
        if isinstance(value, One):
            return self.one(value, row)
        if isinstance(value, Array):
            return self.json.array_of([self.value(item, row) for item in value.items])
        return self.page(value, row)

    def one(self, one: One, parent: _Row) -> ColumnElement[Any]:
        number = self._next()
        alias, adapt = self._source(one.listing, number, "t")
        columns = {name: adapt(column) for name, column in one.listing.columns.items()}
        where = [adapt(clause) for clause in one.where.clauses()]
        if one.via is not None:
            where.append(columns["id"] == parent.column(one.via))
        built = self.fields(one.fields, _Row(columns.__getitem__))
        found = (
            select(built).select_from(alias).where(*where).correlate_except(alias).limit(1).scalar_subquery()
        )
        if one.via is None:
            return found  # a lookup at the root: null when there is no such row
        return func.coalesce(found, self.json.marker(MISSING_ROW.decode()))

    # Pages.

    def page(self, page: Page, parent: _Row) -> ColumnElement[Any]:
        # A root list reads no outer row, so a derived table serves it on every engine.
        correlates = self.json.correlates_derived_tables or page.via is None
        kind = _PageRows if correlates else _BoundedPageRows
        return self.parts(page.parts, kind(self, page, parent, self._next()))

    def parts(self, parts: Parts, rows: _PageRows) -> ColumnElement[Any]:
        return self.object([(key, self.part(part, rows)) for key, part in parts])

    def part(self, part: Part, rows: _PageRows) -> ColumnElement[Any]:
        if isinstance(part, Constant):
            return constant(part.text)
        if isinstance(part, TotalCount):
            return rows.total_count()
        if isinstance(part, Aggregate):
            return rows.aggregate(part)
        if isinstance(part, Edges):
            return rows.edges(part.parts)
        if isinstance(part, Nested):  # pageInfo
            return self.parts(part.parts, rows)
        if isinstance(part, PageFlag):
            return rows.flag(part.name)
        raise NotCompilable(f"{part!r} outside an edge")

    def edge(self, parts: Parts, row: _Row, cursor: Callable[[], ColumnElement[str]]) -> ColumnElement[Any]:
        pairs: list[tuple[str, ColumnElement[Any]]] = []
        for key, part in parts:
            if isinstance(part, Cursor):
                pairs.append((key, cursor()))
            elif isinstance(part, Node):
                pairs.append((key, self.fields(part.fields, row)))
            elif isinstance(part, Constant):
                pairs.append((key, constant(part.text)))
            else:
                raise NotCompilable(f"{part!r} in an edge")
        return self.object(pairs)


class _PageRows:
    """One page of a listing: the rows it shows, and the subqueries pageInfo needs, all under the
    same predicates."""

    def __init__(self, builder: _Builder, page: Page, parent: _Row, number: int) -> None:
        self.builder, self.page, self.parent, self.number = builder, page, parent, number
        self.listing = page.listing
        self.size = bindparam(f"n{number}_page_size", type_=Integer(), required=True)
        sort = self.listing.sort_column(page.order)
        self.sort_key = None if sort is self.listing.id else sort

    def _filtered(self, prefix: str, *, positioned: bool = True) -> tuple[FromClause, Adapt, list[Any]]:
        """The listing's table under a name of its own, how to move clauses onto it, and the
        page's conditions there: its filters and visibility, its parent, and (when `positioned`)
        its cursors' keyset."""
        page, listing = self.page, self.listing
        alias, adapt = self.builder._source(listing, self.number, prefix)
        where = [adapt(clause) for clause in page.where.clauses()]
        if page.via is not None:
            where.append(adapt(page.via) == self.parent.column("id"))
        if positioned:
            where += [adapt(clause) for clause in _position(listing, page.order, page.window)]
        return alias, adapt, where

    def _select(self, prefix: str, columns: Sequence[str] = ()) -> Select[Any]:
        """The page's rows in reading order (no limit yet), with their id, sort key and `columns`."""
        listing = self.listing
        alias, adapt, where = self._filtered(prefix)
        selected = [adapt(listing.columns[name]).label(name) for name in dict.fromkeys(["id", *columns])]
        sort_key = None
        if self.sort_key is not None:
            sort_key = adapt(self.sort_key).label("sort_key")
            selected.append(sort_key)
        # By the selected label: an expression (a search's rank) is then computed once per row.
        ordering = [
            clause if sort_key is not None and clause.element is sort_key else adapt(clause)
            for clause in _ordering(listing, self.page.order, self.page.window.backwards, sort_key)
        ]
        statement = select(*selected).select_from(alias).where(*where).order_by(*ordering)
        return statement.correlate_except(alias) if self.page.via is not None else statement

    def _keys(self, rows: FromClause, *, reverse: bool) -> list[ColumnElement[Any]]:
        """ORDER BY over a selection of the page: reading order, or its reverse."""
        descending = (self.page.order.descending != self.page.window.backwards) != reverse
        keys = [rows.c.sort_key] if self.sort_key is not None else []
        keys.append(rows.c.id)
        return [key.desc() if descending else key.asc() for key in keys]

    def edges(self, parts: Parts) -> ColumnElement[Any]:
        json, backwards = self.builder.json, self.page.window.backwards
        rows = self._select("t", _columns_needed(self.page)).limit(self.size).subquery(f"p{self.number}")
        presented = rows
        if backwards and json.orders_by_source:
            # Shown in the reverse of reading order; this engine aggregates in FROM order.
            presented = select(rows).order_by(*self._keys(rows, reverse=True)).subquery(f"q{self.number}")
        read: list[str] = []

        def column(name: str) -> ColumnElement[Any]:
            read.append(name)
            return presented.c[name]

        edge = self.builder.edge(parts, _Row(column, parent=self.parent), lambda: self.cursor(presented))
        reads_page = bool(read) or any(isinstance(part, Cursor) for _, part in parts)
        array = json.array(
            edge, self._keys(presented, reverse=backwards), None if reads_page else presented.c.id
        )
        return select(array).select_from(presented).scalar_subquery()

    def flag(self, name: str) -> ColumnElement[Any]:
        json, window = self.builder.json, self.page.window
        if name in ("hasNextPage", "hasPreviousPage"):
            ahead = "hasPreviousPage" if window.backwards else "hasNextPage"
            if name == ahead:  # is there a row after the page, in reading order?
                return json.boolean(self._select("h").limit(1).offset(self.size).exists())
            # The other way round the resolvers only say whether the request gave a cursor there.
            return json.truth((window.before if window.backwards else window.after) is not None)
        # startCursor is the first row shown, endCursor the last; backwards, reading order is reversed.
        # The row is picked first and its cursor made once (not made for every row, then sorted).
        last_read = (name == "endCursor") != window.backwards
        rows = self._select("s").limit(self.size).subquery(f"e{self.number}")
        end = select(rows).order_by(*self._keys(rows, reverse=last_read)).limit(1).subquery(f"k{self.number}")
        return select(self.cursor(end)).select_from(end).scalar_subquery()

    def cursor(self, rows: FromClause) -> ColumnElement[str]:
        return self.cursor_of(rows.c.sort_key if self.sort_key is not None else None, rows.c.id)

    def cursor_of(self, key: ColumnElement[Any] | None, pk: ColumnElement[int]) -> ColumnElement[str]:
        return self.builder.json.cursor(self.page.order.token, key, self.key_kind, pk)

    @property
    def key_kind(self) -> KeyKind:
        sort_type = self.sort_key.type if self.sort_key is not None else None
        if isinstance(sort_type, UtcDateTime):
            return "datetime"
        return "number" if isinstance(sort_type, Integer) else "text"

    def total_count(self) -> ColumnElement[Any]:
        alias, _, where = self._filtered("c", positioned=False)
        counted = select(func.count()).select_from(alias).where(*where)
        # Correlated to the parent's row however deep it nests (auto-correlation looks one level up).
        return counted.correlate_except(alias).scalar_subquery()

    def aggregate(self, aggregate: Aggregate) -> ColumnElement[Any]:
        """The list's aggregates as one object, from one pass over its rows (as totalCount's);
        each groupBy in it is a subquery of its own."""
        alias, adapt, where = self._filtered("a", positioned=False)

        def measured(part: Measure) -> ColumnElement[Any]:
            return measure(part.function, adapt(self.listing.columns[part.column]) if part.column else None)

        if not any(_measures_in(aggregate)):  # only groupBy: nothing to compute over the rows here
            return self._aggregated(aggregate, measured)
        built = select(self._aggregated(aggregate, measured)).select_from(alias).where(*where)
        return built.correlate_except(alias).scalar_subquery()

    def _aggregated(
        self,
        aggregate: Aggregate | Groups,
        measured: Callable[[Measure], ColumnElement[Any]],
        row: _Row = ROOT,
    ) -> ColumnElement[Any]:
        """The JSON object of an aggregate's (or a group's) parts, `measured` giving each Measure's SQL."""
        pairs: list[tuple[str, ColumnElement[Any]]] = []
        for key, part in aggregate.parts:
            if isinstance(part, Constant):
                pairs.append((key, constant(part.text)))
            elif isinstance(part, Aggregate):
                pairs.append((key, self._aggregated(part, measured, row)))
            elif isinstance(part, Groups):
                pairs.append((key, self.groups(part)))
            elif isinstance(part, Node):  # a group's key, over the group's row
                pairs.append((key, self.builder.fields(part.fields, row)))
            else:
                value = measured(part)
                pairs.append((key, self.builder.json.datetime(value) if part.kind == "datetime" else value))
        return self.builder.object(pairs)

    def groups(self, groups: Groups) -> ColumnElement[Any]:
        """A groupBy's groups as a JSON array: a subquery groups the list's rows and keeps the
        first ones in order (their keys k0.., measures, and order o0..); the objects are built
        over its rows (an engine's JSON does not survive a derived table on SQLite)."""
        if self.page.via is not None and not self.builder.json.correlates_derived_tables:
            raise NotCompilable("a nested groupBy on an engine whose derived tables cannot read the parent")
        request = groups.request
        alias, adapt, where = self._filtered(f"g{len(request.keys)}_", positioned=False)
        keys = group_keys(request.keys, lambda column: adapt(self.listing.columns[column]))
        measures: dict[str, ColumnElement[Any]] = {}
        for part in _measures_in(groups):
            column = adapt(self.listing.columns[part.column]) if part.column else None
            measures[label(part.function, part.column)] = measure(part.function, column)
        order = group_order(keys, request.by_count, request.descending)
        inner = (
            select(
                *(key.label(f"k{n}") for n, key in enumerate(keys)),
                *(value.label(name) for name, value in measures.items()),
                *(value.label(f"o{n}") for n, (value, _) in enumerate(order)),
            )
            .select_from(alias)
            .where(*where)
            .group_by(*keys)
            .order_by(*ordered(order))
            .limit(literal_column(str(int(request.first))))  # part of the shape (a checked int)
        )
        if self.page.via is not None:
            inner = inner.correlate_except(alias)
        rows = inner.subquery(f"gb{self.number}_{len(request.keys)}")
        row = _Row(lambda name: rows.c[name], parent=None)
        item = self._aggregated(groups, lambda part: rows.c[label(part.function, part.column)], row)
        shown = ordered([(rows.c[f"o{n}"], descending) for n, (_, descending) in enumerate(order)])
        return select(self.builder.json.array(item, shown, rows.c.k0)).select_from(rows).scalar_subquery()


def _measures_in(parts: Aggregate | Groups) -> Iterator[Measure]:
    for _, part in parts.parts:
        if isinstance(part, Measure):
            yield part
        elif isinstance(part, Aggregate):
            yield from _measures_in(part)


class _BoundedPageRows(_PageRows):
    """A nested page for an engine that refuses a derived table reading an outer row (MariaDB;
    its root lists take derived tables like the others'): the page is the rows before the first
    row past it, found by the index as hasNextPage finds it (`ORDER BY ... LIMIT 1 OFFSET size`),
    and its objects and cursors are built from those rows directly. So a page still reads what it
    shows, whatever the size of the list."""

    def _in_page(self, adapt: Adapt) -> ColumnElement[bool]:
        """Whether a row comes before the first row past the page, in reading order."""
        listing = self.listing
        # Scalar subqueries, not a derived table: they may read the outer row.
        past = self._select("x").limit(1).offset(self.size)
        past_id = past.with_only_columns(past.selected_columns.id).scalar_subquery()
        key = [adapt(listing.id)]
        bound: list[ColumnElement[Any]] = [past_id]
        if self.sort_key is not None:
            key.insert(0, adapt(self.sort_key))
            bound.insert(0, past.with_only_columns(past.selected_columns.sort_key).scalar_subquery())
        descending = self.page.order.descending != self.page.window.backwards
        row, limit = (tuple_(*key), tuple_(*bound)) if len(key) > 1 else (key[0], bound[0])
        return or_(past_id.is_(None), row > limit if descending else row < limit)

    def _rows(self, prefix: str) -> tuple[FromClause, Adapt, list[Any]]:
        alias, adapt, where = self._filtered(prefix)
        return alias, adapt, [*where, self._in_page(adapt)]

    def _ordered(self, adapt: Adapt, *, reverse: bool) -> list[ColumnElement[Any]]:
        return [adapt(clause) for clause in _ordering(self.listing, self.page.order, reverse=reverse)]

    def edges(self, parts: Parts) -> ColumnElement[Any]:
        alias, adapt, where = self._rows("t")
        read: list[str] = []

        def column(name: str) -> ColumnElement[Any]:
            read.append(name)
            return adapt(self.listing.columns[name])

        def cursor() -> ColumnElement[str]:
            key = adapt(self.sort_key) if self.sort_key is not None else None
            return self.cursor_of(key, adapt(self.listing.id))

        edge = self.builder.edge(parts, _Row(column, parent=self.parent), cursor)
        reads_page = bool(read) or any(isinstance(part, Cursor) for _, part in parts)
        shown_order = self._ordered(adapt, reverse=False)
        array = self.builder.json.array(edge, shown_order, None if reads_page else adapt(self.listing.id))
        return select(array).select_from(alias).where(*where).correlate_except(alias).scalar_subquery()

    def flag(self, name: str) -> ColumnElement[Any]:
        if name in ("hasNextPage", "hasPreviousPage"):
            return super().flag(name)
        alias, adapt, where = self._rows("s")
        last_read = (name == "endCursor") != self.page.window.backwards
        backwards = self.page.window.backwards
        key = adapt(self.sort_key) if self.sort_key is not None else None
        statement = (
            select(self.cursor_of(key, adapt(self.listing.id)))
            .select_from(alias)
            .where(*where)
            .order_by(*self._ordered(adapt, reverse=backwards != last_read))
            .limit(1)
        )
        return statement.correlate_except(alias).scalar_subquery()


# Which columns a page's rows must carry: what its nodes print, and what the objects that read
# the page's row as their parent print (user.posts.author reads user's columns).


def _columns_needed(page: Page) -> list[str]:
    needed: dict[str, None] = {}
    for fields in _node_fields(page.parts):
        for _, value in fields:
            needed.update(dict.fromkeys(_value_columns(value)))
            if isinstance(value, Page):
                needed.update(dict.fromkeys(_parent_columns(value)))
    return list(needed)


def _parent_columns(page: Page) -> Iterator[str]:
    """The columns of the page's parent row that its nodes' `Parent` objects read."""
    for fields in _node_fields(page.parts):
        for _, value in fields:
            if isinstance(value, Parent):
                for _, inner in value.fields:
                    yield from _value_columns(inner)
                    if isinstance(inner, Page):  # hangs from the same parent row
                        yield from _parent_columns(inner)


def _node_fields(parts: Parts) -> Iterator[Fields]:
    for _, part in parts:
        if isinstance(part, Node):
            yield part.fields
        elif isinstance(part, Nested | Edges):
            yield from _node_fields(part.parts)


def _value_columns(value: Value) -> Sequence[str]:
    if isinstance(value, Column | Named):
        return (value.name if isinstance(value, Column) else value.column,)
    if isinstance(value, GlobalId | Page):
        return ("id",)
    if isinstance(value, One):
        return (value.via,) if value.via is not None else ()
    return ()


# Compiling.


VIEWERS = "viewers"  # the parameter of a statement compiled for a list of viewers


def compile_read(fields: Fields, dialect: Dialect, *, for_viewers: bool = False) -> CompiledStatement:
    """The statement of a read tree. `for_viewers`: once for each viewer of a list (the
    parameter VIEWERS), as `{"data":[[viewer id, answer], ...]}`, where each answer is what the
    tree gives that viewer: a subscription's event, read once for all its subscribers."""
    json = JsonSql.for_dialect(dialect.name)
    if for_viewers:
        viewers, viewer = json.viewer_list(bindparam(VIEWERS, required=True))
        each = json.array_of([viewer, _Builder(json, viewer).fields(fields, ROOT)])
        statement = select(json.document(json.aggregate(each)).label("data")).select_from(viewers)
    else:
        statement = select(json.document(_Builder(json).fields(fields, ROOT)).label("data"))
    return _compiled(statement, dialect)


def _compiled(statement: Any, dialect: Dialect) -> CompiledStatement:
    try:
        # The list of viewers is built by the plan (schema/compiled/plans.py), not by its type.
        return compile_positional(statement, dialect, unprocessed=(VIEWERS,))
    except NamedParameters as refused:
        raise NotCompilable(str(refused)) from None


class ReadStatements:
    """Compiled statements by shape and engine, least recently used dropped; a shape the engine
    refused is remembered as None."""

    def __init__(self, dialect: Dialect, max_entries: int = 2000) -> None:
        self.dialect = dialect
        self.max_entries = max_entries
        self.refused_reads = 0  # reads the engine refused, or that had a shape it refused before
        self._compiled: OrderedDict[Hashable, CompiledStatement | None] = OrderedDict()

    @property
    def json(self) -> JsonSql:
        return JsonSql.for_dialect(self.dialect.name)

    def get(self, fields: Fields, *, for_viewers: bool = False) -> CompiledStatement:
        key = (shape_of(fields), for_viewers)
        if key in self._compiled:
            self._compiled.move_to_end(key)
            compiled = self._compiled[key]
            if compiled is None:
                self.refused_reads += 1
                raise NotCompilable("the engine refused this shape before")
            return compiled
        return self._remember(key, compile_read(fields, self.dialect, for_viewers=for_viewers))

    def get_write(self, fields: Fields, written: Write, only_if: Where = EVERYTHING) -> CompiledStatement:
        key = (shape_of(fields), written, only_if.shape)
        compiled = self._compiled.get(key)
        if compiled is not None:
            self._compiled.move_to_end(key)
            return compiled
        return self._remember(key, compile_write(fields, self.dialect, written, only_if))

    def _remember(self, key: Hashable, compiled: CompiledStatement) -> CompiledStatement:
        self._compiled[key] = compiled
        while len(self._compiled) > self.max_entries:
            self._compiled.popitem(last=False)
        return compiled

    def refused(self, fields: Fields, *, for_viewers: bool = False) -> None:
        """The engine cannot run this shape (SQLite's parser stack is 100 deep): never try it again."""
        self.refused_reads += 1
        self._compiled[(shape_of(fields), for_viewers)] = None


# Writes: a row inserted or changed and read back as a mutation's payload selects it, in one
# statement.


@dataclass(frozen=True, slots=True)
class Write:
    """What a compiled write does to one row of `table`: inserts it (`kind` "insert") or changes
    the row `w_guard_id` ("update"), its `columns` given as parameters `w_<column>`.

    `guard`: only if the viewer may change the guard's row `w_guard_id` (db/writes.py's check:
    a note's task; an updated row itself); otherwise nothing is written and the statement
    returns no row. `event` (where the broker keeps an outbox, db/events.py): also that event's
    outbox row, its payload built from the written row (parameter `w_announced_at`).
    `versioned`: an update only if the row is still at version `w_expected_version` (every
    update counts one more version, as db/writes.py's do)."""

    kind: str
    table: Table
    columns: tuple[str, ...]
    event: EventOf | None = None
    guard: Guard | None = None
    versioned: bool = False


class _WriteBuilder(_Builder):
    """Reads the tree's root object from the written row (the CTE `written`) instead of its
    table. Every part of one statement reads the snapshot from before the write, so any other
    read of the table would see the row as it was, or miss it: such a tree is NotCompilable (the
    statement then only writes, and the payload is read after it: plans.py's write_plan)."""

    def __init__(self, json: JsonSql, written: FromClause, table: Table) -> None:
        super().__init__(json)
        self.written, self.table = written, table

    def _source(self, listing: Listing, number: int, prefix: str) -> tuple[FromClause, Adapt]:
        source, adapt = super()._source(listing, number, prefix)
        if listing.id.table is not self.table:
            return source, adapt
        if number != 0:
            raise NotCompilable("the payload reads the written table again")
        alias = self.written.alias(f"{prefix}{number}")
        adapter = ClauseAdapter(alias)
        return alias, lambda clause: adapt(adapter.traverse(clause))


def compile_write(
    fields: Fields, dialect: Dialect, written: Write, only_if: Where = EVERYTHING
) -> CompiledStatement:
    """One statement that writes a row (and its outbox row) and returns the row's columns and
    `data`, the response body of the read tree `fields`, whose root object (node 0) is that row.
    With a guard, `only_if` is its rule for the viewer (parameters `g_<name>`). Only PostgreSQL
    runs an INSERT or UPDATE inside a WITH."""
    if dialect.name != "postgresql":
        raise NotCompilable(f"{dialect.name} has no INSERT or UPDATE inside WITH")
    table = written.table
    written_row = _dml(written, only_if).cte("written")
    json = JsonSql.for_dialect(dialect.name)
    data = json.document(_WriteBuilder(json, written_row, table).fields(fields, ROOT))
    statement = select(*written_row.c, data.label("data")).select_from(written_row)
    if written.event is not None:
        statement = statement.add_cte(_announced(json, written.event, written_row))
    return _compiled(statement, dialect)


def compile_dml(dialect: Dialect, written: Write, only_if: Where = EVERYTHING) -> CompiledStatement:
    """The write alone, returning the written row (SQLite, where the payload is read after it
    and the outbox row is a statement of its own: compile_outbox)."""
    return _compiled(_dml(written, only_if), dialect)


def compile_outbox(dialect: Dialect) -> CompiledStatement:
    """An outbox row (db/events.py), its values as parameters named as OUTBOX_COLUMNS."""
    values = {name: bindparam(name, type_=outbox.c[name].type, required=True) for name in OUTBOX_COLUMNS}
    return _compiled(insert(outbox).values(values), dialect)


def _dml(written: Write, only_if: Where) -> Any:
    table = written.table
    values: dict[str, ColumnElement[Any]] = {
        name: bindparam(f"w_{name}", type_=table.c[name].type, required=True) for name in written.columns
    }
    if written.kind == "update":
        assert written.guard is not None, "an update is guarded by its row"
        where = [_may_change(written.guard, only_if, correlated=True)]
        if written.versioned:
            where.append(at_version(table, bindparam("w_expected_version", type_=Integer(), required=True)))
        values.update(next_version(table))
        dml: Any = update(table).where(*where).values(values)
    elif written.guard is None:
        dml = insert(table).values(values)
    else:
        rows = select(*values.values()).where(_may_change(written.guard, only_if))
        dml = insert(table).from_select(list(values), rows)
    return dml.returning(*table.c)


def _may_change(guard: Guard, rule: Where, *, correlated: bool = False) -> ColumnElement[bool]:
    """Whether the guard's row `w_guard_id` exists and `rule` holds for it (`correlated`: as
    the condition of an UPDATE of that very table, on the row it changes)."""
    table = guard.table
    rename = _renamed("g_")
    clauses = [rename(clause) for clause in rule.clauses()]
    guard_id = bindparam("w_guard_id", type_=table.c.id.type, required=True)
    if correlated:
        return and_(table.c.id == guard_id, *clauses)
    return exists().where(table.c.id == guard_id, *clauses)


def _announced(json: JsonSql, event: EventOf, row: FromClause) -> Any:
    """The outbox row of `event` for the written `row`: its payload is Event.encode()'s JSON."""
    pairs = [
        (name, json.null() if value is None else constant(value) if isinstance(value, str) else value)
        for name, value in event.fields(lambda column: row.c[column]).items()
    ]
    announced_at = bindparam("w_announced_at", type_=outbox.c.created_at.type, required=True)
    payload = cast(json.object(pairs), Text)
    values = select(constant(event.topic), payload, announced_at).select_from(row)
    return insert(outbox).from_select(list(OUTBOX_COLUMNS), values).cte("announced")
