"""Reads compiled into one statement that returns the finished response JSON. No GraphQL here.

A read is a tree: the root's fields, each a column printed some way, a to-one object (`One`), or a
page of a list (`Page`) whose nodes are again fields. Every object and page becomes a scalar
subquery of its parent, so the database walks the tree itself:

    SELECT json_build_object('users', (
      SELECT json_build_object('edges', json_agg(... ORDER BY p.page_rank) FILTER (WHERE p.page_rank < :n))
      FROM (SELECT ..., row_number() OVER (ORDER BY id) AS page_rank FROM users AS t1
            WHERE ... ORDER BY id LIMIT :n) AS p))

- A page reads page size + 1 rows with the same keyset predicates as db/pagination.py (the
  extra row only says there is a next page), so a deep page costs what the first page costs.
- A to-one object is a correlated subquery per row, never a join: PostgreSQL's generic plan for a
  join to `users` hashed the whole table for every page.
- Visibility rules (db/visibility.py) and filters arrive as `Where`s and go into the SQL as they
  are, as do the listings' column expressions (a hidden email reads as NULL).

Statements are built and compiled once per shape; each `Where`'s parameters are renamed per node
(n3_viewer_id, ...) because one statement holds many lists.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, FromClause, Integer, bindparam, case, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import KeyedColumnElement
from sqlalchemy.sql.util import ClauseAdapter
from sqlalchemy.sql.visitors import replacement_traverse

from db.json_sql import MAX_OBJECT_KEYS, JsonSql, constant
from db.pagination import Listing, Order, Window, _ordering, _position
from db.where import Where


class NotCompilable(Exception):
    """The read has a shape this module does not turn into SQL; the caller uses the resolvers."""


# Printed where a to-one row that must exist does not (a broken invariant: the schema says
# non-null). The resolvers then answer, with the error graphql-core makes of it. PostgreSQL text
# cannot hold NUL, so real data never prints this; on SQLite it could, and costs a fallback only.
MISSING_ROW = b"\\u0000quill:missing-row"


# What a field prints.


@dataclass(frozen=True, slots=True)
class Column:
    """A listing column; `kind` says how it prints: "plain", "bool" or "datetime"."""

    name: str
    kind: str = "plain"


@dataclass(frozen=True, slots=True)
class GlobalId:
    type_name: str


@dataclass(frozen=True, slots=True)
class Constant:
    """A string known when compiling (`__typename`)."""

    text: str


@dataclass(frozen=True, slots=True)
class Null:
    """A field that is null whatever the rows (`me` for an anonymous viewer)."""


@dataclass(frozen=True, slots=True)
class Named:
    """A stored value printed by name (an enum): `names` maps stored values to names."""

    column: str
    names: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Computed:
    """A value the schema defines in SQL over the row's columns (for example a URL)."""

    key: str  # identifies `make` in the shape
    columns: tuple[str, ...]
    make: Callable[..., ColumnElement[Any]] = field(compare=False, hash=False)


@dataclass(eq=False, slots=True)
class One:
    """One row of `listing`: the row whose id the parent's column `via` holds, or (at the root,
    `via` None) the row `where` picks. Null when there is none the viewer may see."""

    listing: Listing
    where: Where
    fields: Fields
    via: str | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """An edge's cursor."""


@dataclass(frozen=True, slots=True)
class PageFlag:
    """A pageInfo field: hasNextPage, hasPreviousPage, startCursor or endCursor."""

    name: str


@dataclass(frozen=True, slots=True)
class TotalCount:
    pass


@dataclass(eq=False, slots=True)
class Node:
    """An edge's node: the row's fields."""

    fields: Fields


@dataclass(eq=False, slots=True)
class Nested:
    """A plain object around parts of the same page (an edge, pageInfo)."""

    parts: tuple[tuple[str, Part], ...]


@dataclass(eq=False, slots=True)
class Edges:
    """A list of one object per row of the page."""

    parts: tuple[tuple[str, Part], ...]


@dataclass(eq=False, slots=True)
class Page:
    """A page of `listing` (children of the parent row through `via`, a column of the listing's
    table holding the parent's id; all rows at the root), as a connection object."""

    listing: Listing
    where: Where
    order: Order
    window: Window
    parts: tuple[tuple[str, Part], ...]
    via: KeyedColumnElement[int] | None = None


Value = Column | GlobalId | Constant | Null | Named | Computed | One | Page
Part = Cursor | PageFlag | TotalCount | Node | Nested | Edges | Constant
Fields = tuple[tuple[str, Value], ...]


# The shape (what the SQL depends on) and the parameters (what it is executed with).


def _nodes(fields: Fields) -> Iterator[One | Page]:
    """Every One and Page of the tree, depth first: the order that numbers their parameters."""
    for _, value in fields:
        if isinstance(value, One):
            yield value
            yield from _nodes(value.fields)
        elif isinstance(value, Page):
            yield value
            yield from _page_nodes(value.parts)


def _page_nodes(parts: tuple[tuple[str, Part], ...]) -> Iterator[One | Page]:
    for _, part in parts:
        if isinstance(part, Node):
            yield from _nodes(part.fields)
        elif isinstance(part, Nested | Edges):
            yield from _page_nodes(part.parts)


def shape_of(fields: Fields) -> Hashable:
    return tuple((key, _value_shape(value)) for key, value in fields)


def _value_shape(value: Value) -> Hashable:
    if isinstance(value, One):
        return ("one", value.listing.name, value.where.shape, value.via, shape_of(value.fields))
    if isinstance(value, Page):
        return (
            "page",
            value.listing.name,
            value.via.key if value.via is not None else None,
            value.where.shape,
            value.order,
            value.window.shape,
            _parts_shape(value.parts),
        )
    return value


def _parts_shape(parts: tuple[tuple[str, Part], ...]) -> Hashable:
    shaped: list[Hashable] = []
    for key, part in parts:
        if isinstance(part, Node):
            shaped.append((key, "node", shape_of(part.fields)))
        elif isinstance(part, Nested | Edges):
            shaped.append((key, type(part).__name__, _parts_shape(part.parts)))
        else:
            shaped.append((key, part))
    return tuple(shaped)


def params_of(fields: Fields) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for number, node in enumerate(_nodes(fields)):
        values: Mapping[str, Any] = node.where.params
        if isinstance(node, Page):
            values = {**values, **node.window.params()}
        params.update({f"n{number}_{name}": value for name, value in values.items()})
    return params


# Building the statement.


class _Builder:
    def __init__(self, json: JsonSql) -> None:
        self.json = json
        self.numbers = 0

    def _prefixed(self, number: int) -> Callable[[ColumnElement[Any]], ColumnElement[Any]]:
        def rename(element: Any) -> Any:
            if isinstance(element, BindParameter):
                return bindparam(f"n{number}_{element.key}", type_=element.type, required=True)
            return None

        return lambda clause: replacement_traverse(clause, {}, rename)  # type: ignore[call-overload]

    def _next(self) -> int:
        number, self.numbers = self.numbers, self.numbers + 1
        return number

    def fields(self, fields: Fields, row: Callable[[str], ColumnElement[Any]]) -> ColumnElement[Any]:
        if len(fields) > MAX_OBJECT_KEYS:
            raise NotCompilable(f"an object with more than {MAX_OBJECT_KEYS} fields")
        return self.json.object([(key, self.value(value, row)) for key, value in fields])

    def value(self, value: Value, row: Callable[[str], ColumnElement[Any]]) -> ColumnElement[Any]:
        json = self.json
        if isinstance(value, Column):
            column = row(value.name)
            if value.kind == "bool":
                return json.boolean(column)
            return json.datetime(column) if value.kind == "datetime" else column
        if isinstance(value, GlobalId):
            return json.global_id(value.type_name, row("id"))
        if isinstance(value, Constant):
            return constant(value.text)
        if isinstance(value, Null):
            return json.null()
        if isinstance(value, Named):
            column = row(value.column)
            return case(*((column == constant(stored), constant(name)) for stored, name in value.names))
        if isinstance(value, Computed):
            return value.make(*(row(name) for name in value.columns))
        if isinstance(value, One):
            return self.one(value, row)
        return self.page(value, row)

    def _source(
        self, listing: Listing, number: int, prefix: str = "t"
    ) -> tuple[FromClause, Callable[[Any], Any]]:
        """The listing's table under a name of its own, and how to move clauses onto it (their
        parameters renamed for node `number`)."""
        table = listing.id.table
        alias = table.alias(f"{prefix}{number}")
        adapter = ClauseAdapter(alias)
        rename = self._prefixed(number)
        return alias, lambda clause: rename(adapter.traverse(clause))

    def one(self, one: One, parent: Callable[[str], ColumnElement[Any]] | None) -> ColumnElement[Any]:
        number = self._next()
        alias, adapt = self._source(one.listing, number)
        columns = {name: adapt(column) for name, column in one.listing.columns.items()}
        where = [adapt(clause) for clause in one.where.clauses()]
        if one.via is not None:
            assert parent is not None
            where.append(columns["id"] == parent(one.via))
        built = self.fields(one.fields, lambda name: columns[name])
        found = (
            select(built).select_from(alias).where(*where).correlate_except(alias).limit(1).scalar_subquery()
        )
        if one.via is None:
            return found  # a lookup at the root: null when there is no such row
        return func.coalesce(found, self.json.marker(MISSING_ROW.decode()))

    def page(self, page: Page, parent: Callable[[str], ColumnElement[Any]] | None) -> ColumnElement[Any]:
        number = self._next()
        listing, order, window = page.listing, page.order, page.window
        alias, adapt = self._source(listing, number)
        link = []
        if page.via is not None:
            assert parent is not None
            link.append(adapt(page.via) == parent("id"))
        where = link + [adapt(clause) for clause in page.where.clauses()]
        ordering = [adapt(clause) for clause in _ordering(listing, order, reverse=window.backwards)]
        needed = _columns_needed(page)
        sort = listing.sort_column(order)
        selected = [adapt(listing.columns[name]).label(name) for name in needed]
        if sort is not listing.id:
            selected.append(adapt(sort).label("sort_key"))
        limit = bindparam(f"n{number}_page_limit", type_=Integer(), required=True)
        rows = (
            # ROWS: with the default RANGE frame PostgreSQL reads one row past the limit to look for peers.
            select(*selected, func.row_number().over(order_by=ordering, rows=(None, 0)).label("page_rank"))
            .select_from(alias)
            .where(*where, *(adapt(clause) for clause in _position(listing, order, window)))
            .order_by(*ordering)
            .limit(limit)
        )
        if page.via is not None:
            rows = rows.correlate_except(alias)
        p = rows.subquery(f"p{number}")
        rank = p.c.page_rank
        if window.backwards and self.json.name == "sqlite":
            # Page order is the reverse of reading order; SQLite aggregates in FROM order.
            p = select(p).order_by(rank.desc()).subquery(f"q{number}")
            rank = p.c.page_rank
        presented = rank.desc() if window.backwards else rank.asc()
        context = _PageContext(self, page, p, presented, rank < limit, limit, parent, number)
        built = self.parts(page.parts, context)
        if not _reads_rows(page.parts):  # only totalCount and names: one row, even for no rows
            return select(built).scalar_subquery()
        return select(built).select_from(p).scalar_subquery()

    def parts(self, parts: tuple[tuple[str, Part], ...], page: _PageContext) -> ColumnElement[Any]:
        if len(parts) > MAX_OBJECT_KEYS:
            raise NotCompilable(f"an object with more than {MAX_OBJECT_KEYS} fields")
        return self.json.object([(key, self.part(part, page)) for key, part in parts])

    def part(self, part: Part, page: _PageContext) -> ColumnElement[Any]:
        json = self.json
        if isinstance(part, Constant):
            return constant(part.text)
        if isinstance(part, TotalCount):
            return page.total_count()
        if isinstance(part, Edges):
            return json.array(self.row_parts(part.parts, page), page.presented, page.kept)
        if isinstance(part, Nested):  # pageInfo
            return self.parts(part.parts, page)
        if isinstance(part, PageFlag):
            return page.flag(part.name)
        raise NotCompilable(f"{part!r} outside an edge")

    def row_parts(self, parts: tuple[tuple[str, Part], ...], page: _PageContext) -> ColumnElement[Any]:
        """An edge: its fields read the row."""
        pairs: list[tuple[str, ColumnElement[Any]]] = []
        for key, part in parts:
            if isinstance(part, Cursor):
                pairs.append((key, page.cursor()))
            elif isinstance(part, Node):
                pairs.append((key, self.fields(part.fields, page.row)))
            elif isinstance(part, Constant):
                pairs.append((key, constant(part.text)))
            else:
                raise NotCompilable(f"{part!r} in an edge")
        if len(pairs) > MAX_OBJECT_KEYS:
            raise NotCompilable(f"an object with more than {MAX_OBJECT_KEYS} fields")
        return self.json.object(pairs)


@dataclass(slots=True)
class _PageContext:
    builder: _Builder
    page: Page
    rows: FromClause
    presented: ColumnElement[Any]
    kept: ColumnElement[bool]
    limit: BindParameter[int]
    parent: Callable[[str], ColumnElement[Any]] | None
    number: int

    def row(self, name: str) -> ColumnElement[Any]:
        return self.rows.c[name]

    def cursor(self) -> ColumnElement[str]:
        listing, order = self.page.listing, self.page.order
        sort = listing.sort_column(order)
        key = None if sort is listing.id else self.rows.c.sort_key
        kind = "datetime" if sort.type.python_type.__name__ == "datetime" else "plain"
        return self.builder.json.cursor(order.token, key, kind, self.rows.c.id)

    def flag(self, name: str) -> ColumnElement[Any]:
        json, window = self.builder.json, self.page.window
        more = func.count() >= self.limit
        if name == "hasNextPage":
            return json.truth(window.before is not None) if window.backwards else json.boolean(more)
        if name == "hasPreviousPage":
            return json.boolean(more) if window.backwards else json.truth(window.after is not None)
        last = name == "endCursor"
        return json.first(self.cursor(), self.presented_key(), self.kept, last=last)

    def presented_key(self) -> ColumnElement[Any]:
        rank = self.rows.c.page_rank
        return -rank if self.page.window.backwards else rank

    def total_count(self) -> ColumnElement[Any]:
        page = self.page
        alias, adapt = self.builder._source(page.listing, self.number, prefix="c")
        where = [adapt(clause) for clause in page.where.clauses()]
        if page.via is not None:
            assert self.parent is not None
            where.append(adapt(page.via) == self.parent("id"))
        # Correlated to the parent's row however deep it nests (auto-correlation only looks one level up).
        return select(func.count()).select_from(alias).where(*where).correlate_except(alias).scalar_subquery()


def _reads_rows(parts: tuple[tuple[str, Part], ...]) -> bool:
    return any(
        isinstance(part, Edges | PageFlag) or (isinstance(part, Nested) and _reads_rows(part.parts))
        for _, part in parts
    )


def _columns_needed(page: Page) -> list[str]:
    needed = dict.fromkeys(["id"])
    for _, part in page.parts:
        for fields in _node_fields(part):
            for _, value in fields:
                needed.update(dict.fromkeys(_value_columns(value)))
    return list(needed)


def _node_fields(part: Part) -> Iterator[Fields]:
    if isinstance(part, Node):
        yield part.fields
    elif isinstance(part, Nested | Edges):
        for _, inner in part.parts:
            yield from _node_fields(inner)


def _value_columns(value: Value) -> Sequence[str]:
    if isinstance(value, Column | Named):
        return (value.name if isinstance(value, Column) else value.column,)
    if isinstance(value, GlobalId | Page):
        return ("id",)
    if isinstance(value, Computed):
        return value.columns
    if isinstance(value, One):
        return (value.via,) if value.via is not None else ()
    return ()


# Compiling and running.


@dataclass(frozen=True, slots=True)
class CompiledRead:
    """A statement compiled once for a shape: its text and, in order, the parameters it takes."""

    sql: str
    names: tuple[str, ...]
    processors: Mapping[str, Callable[[Any], Any]]
    positional: bool
    constants: Mapping[str, Any]  # values SQLAlchemy bound itself (substr's positions, say)

    def arguments(self, params: Mapping[str, Any]) -> Any:
        processors, given = self.processors, {**self.constants, **params}
        values = {
            name: processors[name](given[name]) if name in processors else given[name] for name in self.names
        }
        return tuple(values[name] for name in self.names) if self.positional else values


def compile_read(fields: Fields, dialect: Dialect) -> CompiledRead:
    json = JsonSql.for_dialect(dialect.name)
    builder = _Builder(json)
    statement = select(json.document(builder.fields(fields, _no_row)).label("data"))
    compiled = statement.compile(dialect=dialect)
    positional = bool(compiled.positional)
    names = tuple(compiled.positiontup or ()) if positional else tuple(compiled.binds)
    processors: dict[str, Any] = {
        name: compiled._bind_processors[name] for name in names if name in compiled._bind_processors
    }
    constants = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
    return CompiledRead(compiled.string, names, processors, positional, constants)


def _no_row(name: str) -> ColumnElement[Any]:
    raise NotCompilable(f"the root has no row to read {name!r} from")


class ReadStatements:
    """Compiled statements by shape and engine, least recently used dropped."""

    def __init__(self, max_entries: int = 2000) -> None:
        self.max_entries = max_entries
        self._compiled: OrderedDict[Hashable, CompiledRead | None] = OrderedDict()

    def get(self, fields: Fields, dialect: Dialect) -> CompiledRead:
        key = (dialect.name, shape_of(fields))
        if key in self._compiled and self._compiled[key] is None:
            raise NotCompilable("the engine refused this shape before")
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = compile_read(fields, dialect)
            while len(self._compiled) > self.max_entries:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        return compiled

    def refused(self, fields: Fields, dialect: Dialect) -> None:
        """The engine cannot run this shape (SQLite's parser stack is 100 deep): never try it again."""
        self._compiled[(dialect.name, shape_of(fields))] = None


def reads_rows(fields: Fields) -> bool:
    """Whether the tree reads any table (without, the resolvers answer it with no SQL at all)."""
    return next(_nodes(fields), None) is not None


async def read_json(session: AsyncSession, compiled: CompiledRead, fields: Fields) -> str:
    """Run the statement; the `data` object as JSON text."""
    connection = await session.connection()
    result = await connection.exec_driver_sql(compiled.sql, compiled.arguments(params_of(fields)))
    data: str = result.scalar_one()
    return data
