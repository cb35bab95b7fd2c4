"""What a compiled read reads, as a tree (schema/compiled/planner.py builds it, schema/compiled/sql.py
turns it into SQL). No GraphQL here.

The root's fields are values: a column printed some way, a to-one object (`One`), or a page of a
list (`Page`) whose edges hold nodes, which are again fields. A tree has two halves:
- its shape (`shape_of`): what the SQL depends on, the key of the statement cache;
- its parameters (`params_of`): the values bound when the statement runs, named per node
  (`n3_viewer_id`), because one statement holds many lists.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.sql.elements import KeyedColumnElement

from db.pagination import Listing, Order, Window
from db.where import Where

if TYPE_CHECKING:
    from schema.declare.aggregates import GroupRequest


class NotCompilable(Exception):
    """The read has a shape that is not turned into SQL; the caller uses the resolvers."""


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


@dataclass(eq=False, slots=True)
class One:
    """One row of `listing`: the row whose id the parent's column `via` holds, or (at the root,
    `via` None) the row `where` picks. Null when there is none the viewer may see."""

    listing: Listing
    where: Where
    fields: Fields
    via: str | None = None


@dataclass(eq=False, slots=True)
class Parent:
    """A to-one object that is the row its page hangs from (in `user.posts`, a post's author is
    that user): its fields read the parent's row, with no lookup."""

    fields: Fields


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


@dataclass(frozen=True, slots=True)
class Measure:
    """An aggregate of the page's whole list (db/aggregates.py's `measure`): `count`, or
    min/max/sum/avg of a column of the listing (`kind` "datetime" prints as a timestamp)."""

    function: str
    column: str | None = None
    kind: str = "plain"


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A connection's `aggregate` object (and its min/max/sum/avg objects): one statement over
    the list's rows computes every Measure in it."""

    parts: tuple[tuple[str, Measure | Constant | Aggregate | Groups], ...]


@dataclass(eq=False, slots=True)
class Groups:
    """An aggregate's groupBy: the first groups of the list's rows by `request`'s keys (their
    values read as the group row's columns k0, k1, ...), each an object of `parts`: its key (a
    Node over the group row) and its measures."""

    request: GroupRequest
    parts: tuple[tuple[str, Measure | Constant | Aggregate | Node], ...]


@dataclass(eq=False, slots=True)
class Node:
    """An edge's node: the row's fields."""

    fields: Fields


@dataclass(eq=False, slots=True)
class Nested:
    """A plain object around parts of the same page (pageInfo)."""

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


@dataclass(eq=False, slots=True)
class Array:
    """A list of values known when planning (`nodes(ids:)`: one lookup per ID)."""

    items: tuple[Value, ...]


Value = Column | GlobalId | Constant | Null | Named | One | Parent | Page | Array
Part = Cursor | PageFlag | TotalCount | Aggregate | Node | Nested | Edges | Constant
Fields = tuple[tuple[str, Value], ...]


def nodes_of(fields: Fields) -> Iterator[One | Page]:
    """Every One and Page of the tree, depth first: the order that numbers their parameters."""
    for _, value in fields:
        if isinstance(value, One):
            yield value
            yield from nodes_of(value.fields)
        elif isinstance(value, Parent):
            yield from nodes_of(value.fields)
        elif isinstance(value, Page):
            yield value
            yield from _page_nodes(value.parts)
        elif isinstance(value, Array):
            yield from nodes_of(tuple(("", item) for item in value.items))


def _page_nodes(parts: tuple[tuple[str, Part], ...]) -> Iterator[One | Page]:
    for _, part in parts:
        if isinstance(part, Node):
            yield from nodes_of(part.fields)
        elif isinstance(part, Nested | Edges | Aggregate | Groups):
            yield from _page_nodes(part.parts)  # type: ignore[arg-type]


def looks_up_rows(fields: Fields) -> bool:
    """Whether the tree has a to-one lookup, whose row the schema says must exist (MISSING_ROW)."""
    return any(isinstance(node, One) and node.via is not None for node in nodes_of(fields))


def reads_rows(fields: Fields) -> bool:
    """Whether the tree reads any table (without, the resolvers answer it with no SQL at all)."""
    return next(nodes_of(fields), None) is not None


def shape_of(fields: Fields) -> Hashable:
    return tuple((key, _value_shape(value)) for key, value in fields)


def _value_shape(value: Value) -> Hashable:
    if isinstance(value, One):
        return ("one", value.listing.name, value.where.shape, value.via, shape_of(value.fields))
    if isinstance(value, Parent):
        return ("parent", shape_of(value.fields))
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
    if isinstance(value, Array):
        return ("array", tuple(_value_shape(item) for item in value.items))
    return value


def _parts_shape(parts: tuple[tuple[str, Part], ...]) -> Hashable:
    shaped: list[Hashable] = []
    for key, part in parts:
        if isinstance(part, Node):
            shaped.append((key, "node", shape_of(part.fields)))
        elif isinstance(part, Nested | Edges | Aggregate):
            shaped.append((key, type(part).__name__, _parts_shape(part.parts)))  # type: ignore[arg-type]
        elif isinstance(part, Groups):
            shaped.append((key, "groups", part.request, _parts_shape(part.parts)))  # type: ignore[arg-type]
        else:
            shaped.append((key, part))
    return tuple(shaped)


def params_of(fields: Fields) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for number, node in enumerate(nodes_of(fields)):
        values: Mapping[str, Any] = node.where.params
        if isinstance(node, Page):
            values = {**values, "page_size": node.window.size, **node.window.position_params()}
        params.update({f"n{number}_{name}": value for name, value in values.items()})
    return params
