"""The declaration of a node type: the model it reads, who sees its rows, how its lists order
and filter. `@node(...)` goes on top of `@strawberry.type`; the field declarations inside the
class (schema/declare/fields.py) say what each field prints. From the two, this derives what the
rest of the server needs: the type's listing (db/pagination.py), its objects from rows, the
conditions of its filter input, its `orderBy` input, and the registry by GraphQL name that
node(id:), the loaders and the compiled planner look types up in.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import strawberry
from sqlalchemy import ColumnElement, Integer, Table, func, select
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField
from strawberry.utils.str_converters import to_camel_case

from db.models import Base, table_of
from db.pagination import AnyRow, Listing, Order
from db.search import MAX_SEARCH_LENGTH, search_rank, search_where
from db.text import starts_with
from db.visibility import Viewer, only_where, viewer_params
from db.where import Where, all_of, condition, like_escape, param
from schema.declare.specs import (
    ColumnSpec,
    Condition,
    CountCondition,
    ExpressionSpec,
    Rule,
    Spec,
    ToOneSpec,
    spec_of,
)
from schema.errors import BadInput
from schema.relay import OrderDirection, order_of, pk_of, to_global_id

T = TypeVar("T")

RELEVANCE = "RELEVANCE"  # the order of a search's best matches (searchable types only)


@dataclass(eq=False)
class NodeType:
    """A GraphQL object type backed by a table."""

    cls: type
    name: str
    table: Table
    visible: Rule
    sort: tuple[str, ...]
    filter: type | None
    order: type
    searchable: bool = False  # its lists take `search` (db/search.py; migration 0010 made the index)
    entity: bool = False  # a federation entity, keyed by its global ID (schema/federation.py)
    # Python field name -> what it reads; GraphQL field name -> Python field name.
    fields: dict[str, Spec] = field(default_factory=dict)
    graphql_names: dict[str, str] = field(default_factory=dict)

    # Rows.

    def listing(self, viewer: Viewer) -> Listing:
        """The table as a list for this kind of viewer: a column hidden by a rule reads as NULL
        where it does not hold (the viewer's id is bound with each read: `row_params`)."""
        return _listing(self, viewer.kind)

    def rows(self, viewer: Viewer) -> Where:
        """Which rows the viewer sees, with the values the listing's column rules need."""
        return self.visible(viewer) & self.row_params(viewer)

    def row_params(self, viewer: Viewer) -> Where:
        if any(isinstance(spec, ColumnSpec) and spec.rule is not None for spec in self.fields.values()):
            return Where(params=viewer_params(viewer))
        return Where()

    def node(self, row: AnyRow) -> Any:
        """The GraphQL object of a row (columns the query did not select are None)."""
        cls: Any = self.cls
        obj: Any = cls.__new__(cls)
        values = row._mapping
        attributes = obj.__dict__
        attributes["id"] = to_global_id(self.name, row.id)
        for python_name, label in _attributes(self):
            attributes[python_name] = values.get(label)
        attributes["_row"] = row
        return obj

    # Field declarations.

    def spec(self, graphql_name: str) -> Spec | None:
        python_name = self.graphql_names.get(graphql_name)
        return self.fields.get(python_name) if python_name is not None else None

    def label(self, python_name: str) -> str | None:
        """The listing column a scalar field reads (None for relations)."""
        spec = self.fields.get(python_name)
        if isinstance(spec, ColumnSpec):
            return spec.column
        if isinstance(spec, ExpressionSpec):
            return spec.label
        return None

    def links(self) -> Iterator[str]:
        for spec in self.fields.values():
            if isinstance(spec, ToOneSpec):
                yield spec.link

    # Filters.

    def where(self, viewer: Viewer, filter: Any, search: str | None = None) -> Where:
        """The rows of a list: what the viewer sees, narrowed by the filter input and the
        search (if given)."""
        where = self.rows(viewer)
        if search is not None and len(search) > MAX_SEARCH_LENGTH:
            raise BadInput(
                f"search: at most {MAX_SEARCH_LENGTH} characters, got {len(search)}.",
                argument="search",
                max=MAX_SEARCH_LENGTH,
            )
        if filter is not None:
            where = where & filter_where(self.table, filter, viewer)
        if search is not None:
            where = where & search_where(self.table.c.id, search)
        return where

    def order_of(self, order_by: Any, search: str | None = None) -> Order:
        """The ordering a list's arguments ask for: `orderBy`, else the best matches first for a
        search, else by id."""
        if order_by is None and search is not None:
            return Order(key=RELEVANCE, descending=True)
        order = order_of(order_by)
        if order.key == RELEVANCE and search is None:
            raise BadInput("orderBy: RELEVANCE needs a search.", argument="orderBy")
        return order


@functools.cache
def _listing(node_type: NodeType, kind: str) -> Listing:
    viewer = Viewer(id=None if kind == "anonymous" else 0, is_superuser=kind == "superuser")
    table = node_type.table
    columns: dict[str, ColumnElement[Any]] = {"id": table.c.id}
    for spec in node_type.fields.values():
        if isinstance(spec, ColumnSpec):
            assert spec.column is not None  # filled in by @node
            column: ColumnElement[Any] = table.c[spec.column]
            columns[spec.column] = column if spec.rule is None else only_where(spec.rule(viewer), column)
        elif isinstance(spec, ExpressionSpec):
            assert spec.label is not None
            columns[spec.label] = spec.make(*(table.c[name] for name in spec.reads))
    for link in node_type.links():
        columns[link] = table.c[link]
    ruled = any(isinstance(spec, ColumnSpec) and spec.rule is not None for spec in node_type.fields.values())
    return Listing(
        name=f"{table.name}:{kind}" if ruled else table.name,
        id=table.c.id,
        columns=columns,
        sort_keys={"ID": table.c.id, **{name.upper(): table.c[name] for name in node_type.sort}}
        | ({RELEVANCE: search_rank(table.c.id)} if node_type.searchable else {}),
    )


@functools.cache
def _attributes(node_type: NodeType) -> tuple[tuple[str, str], ...]:
    """(attribute, listing column) of every scalar field an object of the type holds."""
    found = []
    for python_name in node_type.fields:
        label = node_type.label(python_name)
        if label is not None:
            found.append((python_name, label))
    return tuple(found)


def from_row(cls: type[T], row: AnyRow) -> T:
    """The GraphQL object of a row of a declared type."""
    node_type = _BY_CLASS[cls]
    found: T = node_type.node(row)
    return found


def linked(
    obj: T, *, seen_by: Viewer | None = None, read: dict[int, Any] | None = None, **ids: int | None
) -> T:
    """`obj` (a mutation's payload, say) whose `to_one(...)` fields load the rows these ids name:
    `linked(PostPayload(), post=row.id)` for `post: Post = to_one("post")`. With `seen_by`, the
    rows are read as that viewer sees them (a login's payload shows the user as themself). `read`
    holds objects already read as the response holds them, by the id() of the first node of the
    field that selects them (schema/mutations.py's insert_linked)."""
    obj.__dict__["_row"] = ids
    if seen_by is not None:
        obj.__dict__["_seen_by"] = seen_by
    if read:
        obj.__dict__["_read"] = read
    return obj


# The registry: every declared node type, by class and by GraphQL name.

_BY_CLASS: dict[type, NodeType] = {}
_BY_NAME: dict[str, NodeType] = {}


def node_type_of(cls: type) -> NodeType | None:
    return _BY_CLASS.get(cls)


def declared(cls: type) -> NodeType:
    """The declaration of a class decorated with @node."""
    return _BY_CLASS[cls]


def node_type_named(name: str) -> NodeType:
    """The declaration of the type named `name` (KeyError when there is none: see find_node_type)."""
    return _BY_NAME[name]


def find_node_type(name: str) -> NodeType | None:
    return _BY_NAME.get(name)


def node_types() -> list[NodeType]:
    return list(_BY_NAME.values())


def entity_types() -> list[NodeType]:
    """The node types a federation subgraph offers as entities (`@node(..., entity=True)`)."""
    return [node_type for node_type in node_types() if node_type.entity]


def node(
    model: type[Base],
    *,
    visible: Rule,
    sort: tuple[str, ...] = (),
    filter: type | None = None,
    searchable: bool = False,
    plural: str | None = None,
    entity: bool = False,
) -> Callable[[type[T]], type[T]]:
    """Declare a Strawberry type (decorated first) as backed by `model`'s table.

    `visible`: the rule (db/visibility.py) that says which rows a viewer sees; `sort`: the
    columns its lists can be ordered by besides id; `filter`: the input type whose fields are
    conditions (schema/declare/fields.py); `searchable`: its lists take `search`, and can be
    ordered by RELEVANCE (db/search.py); `entity`: a federation subgraph (FEDERATION=1) offers it
    as an entity keyed by its global ID (schema/federation.py)."""

    def declare(cls: type[T]) -> type[T]:
        definition: StrawberryObjectDefinition = cls.__strawberry_definition__  # type: ignore[attr-defined]
        noun = plural or f"{definition.name.lower()}s"
        node_type = NodeType(
            cls=cls,
            name=definition.name,
            table=table_of(model),
            visible=visible,
            sort=sort,
            filter=filter,
            order=_order_input(definition.name, sort, noun, searchable),
            searchable=searchable,
            entity=entity,
        )
        for strawberry_field in definition.fields:
            spec = spec_of(strawberry_field)
            if spec is None:
                continue
            python_name = strawberry_field.python_name
            if isinstance(spec, ColumnSpec) and spec.column is None:
                spec = dataclasses.replace(spec, column=python_name)
            elif isinstance(spec, ExpressionSpec):
                spec = dataclasses.replace(spec, label=python_name)
            node_type.fields[python_name] = spec
            node_type.graphql_names[_graphql_name(strawberry_field)] = strawberry_field.python_name
        _BY_CLASS[cls] = node_type
        _BY_NAME[node_type.name] = node_type
        return cls

    return declare


def _graphql_name(strawberry_field: StrawberryField) -> str:
    return strawberry_field.graphql_name or to_camel_case(strawberry_field.python_name)


def _order_input(type_name: str, sort: tuple[str, ...], noun: str, searchable: bool) -> type:
    """The `orderBy` input of the type's lists: a field among its sort keys, and a direction."""
    names = ("ID", *(key.upper() for key in sort), *([RELEVANCE] if searchable else []))
    keys = Enum(f"{type_name}OrderField", {name: name for name in names})  # type: ignore[misc]
    fields = strawberry.enum(keys)
    namespace = {
        "__annotations__": {"field": fields, "direction": OrderDirection},
        "direction": OrderDirection.ASC,
        "__module__": __name__,
    }
    order = type(f"{type_name}Order", (), namespace)
    description = f"Sort {noun} by a field; ties are broken by id in the same direction."
    return strawberry.input(order, description=description)


# Filter inputs: each field holds a Condition (schema/declare/fields.py).


def filter_where(table: Table, filter: Any, viewer: Viewer) -> Where:
    definition: StrawberryObjectDefinition = type(filter).__strawberry_definition__
    conditions = []
    for strawberry_field in definition.fields:
        spec = spec_of(strawberry_field)
        value = getattr(filter, strawberry_field.python_name)
        if value is None:
            continue
        name = strawberry_field.python_name
        if isinstance(spec, Condition):
            argument = f"filter.{_graphql_name(strawberry_field)}"
            conditions.append(_condition(table, name, spec, value, argument))
        elif isinstance(spec, CountCondition):
            conditions.append(_count_condition(table, name, spec, value, viewer))
    return all_of(*conditions)


def _count_condition(table: Table, name: str, spec: CountCondition, value: Any, viewer: Viewer) -> Where:
    """The number of related rows the viewer may see (their own rule, so a count never tells of
    rows it hides), compared with each bound the CountFilter gives."""
    related = _BY_NAME[spec.of]
    seen = related.rows(viewer)
    link = related.table.c[spec.link]

    def counted() -> ColumnElement[int]:
        rows = select(func.count()).select_from(related.table).where(link == table.c.id, *seen.clauses())
        return rows.scalar_subquery()

    bounds = [
        (op, bound)
        for op, bound in (("at_least", value.at_least), ("at_most", value.at_most), ("equals", value.equals))
        if bound is not None
    ]

    def comparison(op: str) -> Callable[[], ColumnElement[bool]]:
        compare = {"at_least": operator.ge, "at_most": operator.le, "equals": operator.eq}[op]
        return lambda: compare(counted(), param(f"{name}_{op}", Integer()))

    return Where(
        shape=(name, related.name, spec.link, tuple(op for op, _ in bounds), seen.shape),
        params={**seen.params, **{f"{name}_{op}": bound for op, bound in bounds}},
        makers=tuple(comparison(op) for op, _ in bounds),
    )


def _condition(table: Table, name: str, spec: Condition, value: Any, argument: str) -> Where:
    column = table.c[spec.column]
    if spec.id_of is not None:
        value = pk_of(value, spec.id_of, argument=argument)
    if spec.op == "equals":
        return condition(name, value, lambda p: column == p)
    if spec.op == "contains":
        return condition(name, like_escape(value), lambda p: column.icontains(p, escape="/"))
    if spec.op == "after":
        return condition(name, value, lambda p: column > p)
    if spec.op == "before":
        return condition(name, value, lambda p: column < p)
    if spec.op == "starts_with":
        return starts_with(column, value.lower() if spec.lower else value) if value else Where()
    raise ValueError(f"unknown filter operation {spec.op!r}")
