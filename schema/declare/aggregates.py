"""A connection's `aggregate` field: count, min, max, sum and avg over the whole list.

`posts(filter: {authorId: "..."}) { totalCount aggregate { count min { datePosted } avg { version } } }`

Each node type's connection gets a type of its own (`PostConnection`) with an `aggregate` field
of the type's own shape (`PostAggregate`), derived here from the type's declaration: its integer
columns are numbers (min, max, sum, avg), its timestamp columns instants (min, max). A column
with a visibility rule is never aggregated (a sum would tell what the rule hides). The
aggregates cover the rows the list holds (its visibility rule, filter and search), not only the
page; both read paths compute them with db/aggregates.py's SQL.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry import UNSET
from strawberry.annotation import StrawberryAnnotation
from strawberry.types.base import StrawberryOptional
from strawberry.types.enum import StrawberryEnumDefinition
from strawberry.types.field import StrawberryField
from strawberry.types.fields.resolver import StrawberryResolver

from db.aggregates import label, measures
from schema.declare.nodes import NodeType
from schema.declare.specs import ColumnSpec, ToOneSpec
from schema.errors import BadInput
from schema.relay import Connection, OrderDirection

AGGREGATE_DOC = (
    "Aggregates over every item of the list (not only this page): its filter and search apply, "
    "and only the rows the viewer may see are counted."
)
AVERAGE_DOC = "Averages, rounded to 6 decimal places; null for an empty list."
AGGREGATE_OF = "__quill_aggregate_of__"  # on the aggregate types: the node type they aggregate
GROUP_BY_DOC = (
    "The list's items in groups with the same key (a relation, an enum, or a timestamp's UTC "
    "day, week or month), each with its count and values; the first groups in `orderBy`'s order."
)
SUM_DOC = "Sums, as floats (a sum may exceed a 32-bit Int); null for an empty list."


@dataclass(frozen=True, slots=True)
class Measured:
    """What a node type aggregates: its numbers and instants."""

    numbers: tuple[Value, ...]
    instants: tuple[Value, ...]

    def columns(self, kind: str) -> tuple[str, ...]:
        return tuple(value.column for value in (self.numbers if kind == "numbers" else self.instants))


@dataclass(frozen=True, slots=True)
class Value:
    """A field that is aggregated: its names, its column, and its Python type."""

    python_name: str
    graphql_name: str
    column: str
    type: type


@functools.cache
def measured(node_type: NodeType) -> Measured:
    numbers: list[Value] = []
    instants: list[Value] = []
    for graphql_name, python_name in node_type.graphql_names.items():
        spec = node_type.fields[python_name]
        if not isinstance(spec, ColumnSpec) or spec.rule is not None or spec.column is None:
            continue
        python_type = _field_type(node_type, python_name)
        if python_type is int:
            numbers.append(Value(python_name, graphql_name, spec.column, int))
        elif python_type is datetime:
            instants.append(Value(python_name, graphql_name, spec.column, datetime))
    return Measured(tuple(numbers), tuple(instants))


def _field_type(node_type: NodeType, python_name: str) -> Any:
    definition = node_type.cls.__strawberry_definition__  # type: ignore[attr-defined]
    [found] = [f for f in definition.fields if f.python_name == python_name]
    resolved = found.type
    return resolved.of_type if isinstance(resolved, StrawberryOptional) else resolved


def measured_columns(node_type: NodeType) -> list[Any]:
    """The labelled SQL of every aggregate the type offers (the resolvers select them all)."""
    shape = measured(node_type)
    return measures(node_type.table, shape.columns("numbers"), shape.columns("instants"))


# The GraphQL types, made once per node type when the schema is built.

# A list's aggregates: called with no argument, its measures (a dict by db/aggregates.py's
# labels); with a groupBy's GroupRequest, its groups (a dict each).
Measures = Callable[..., Awaitable[Any]]


@functools.cache
def connection_type(node_type: NodeType) -> type:
    """`{Type}Connection`: the generic Connection of the node type, with `aggregate`."""
    aggregate = _aggregate_type(node_type)

    def resolve(root: Any, info: strawberry.Info) -> Any:
        return _aggregated(aggregate, root.measures)

    field = StrawberryField(
        python_name="aggregate",
        type_annotation=StrawberryAnnotation(aggregate),
        base_resolver=StrawberryResolver(resolve),
        description=AGGREGATE_DOC,
    )
    name = f"{node_type.name}Connection"
    namespace = {"aggregate": field, "__module__": __name__, "__quill_node_type__": node_type}
    cls = types.new_class(name, (Connection[node_type.cls],), {}, lambda ns: ns.update(namespace))  # type: ignore[name-defined]
    return strawberry.type(cls, name=name, description=f"A page of {node_type.name} items, Relay style.")


def _aggregated(cls: Any, measures: Measures | None) -> Any:
    obj: Any = cls.__new__(cls)
    obj.__dict__["_measures"] = measures
    return obj


def _aggregate_type(node_type: NodeType) -> type:
    fields = _measure_fields(node_type)
    if group_keys(node_type):
        fields["group_by"] = _group_by_field(node_type)
    cls = type(f"{node_type.name}Aggregate", (), {**fields, "__module__": __name__, AGGREGATE_OF: node_type})
    return strawberry.type(cls, description=f"Aggregates of a list of {node_type.name} items.")


def _measure_fields(node_type: NodeType) -> dict[str, Any]:
    """count, and min/max/sum/avg where the type has values for them: an aggregate's fields,
    and a group's."""
    shape = measured(node_type)
    extremes, numbers = _values_types(node_type)
    fields: dict[str, Any] = {"count": _measure_field("count", int, None, "How many items there are.")}
    if extremes is not None:
        values = shape.numbers + shape.instants
        fields["min"] = _measure_field("min", extremes, values, "Smallest values.")
        fields["max"] = _measure_field("max", extremes, values, "Largest values.")
    if numbers is not None:
        fields["sum"] = _measure_field("sum", numbers, shape.numbers, SUM_DOC)
        fields["avg"] = _measure_field("avg", numbers, shape.numbers, AVERAGE_DOC)
    return fields


@functools.cache
def _values_types(node_type: NodeType) -> tuple[type | None, type | None]:
    shape = measured(node_type)
    extremes = numbers = None
    if shape.numbers or shape.instants:
        extremes = _values_type(node_type, "Extremes", (*shape.numbers, *shape.instants), None)
    if shape.numbers:
        numbers = _values_type(node_type, "Numbers", shape.numbers, float)
    return extremes, numbers


def _group_by_field(node_type: NodeType) -> StrawberryField:
    from schema.declare.fields import argument  # fields.py makes connections of these types

    group = _group_type(node_type)
    key = _group_key_type(node_type)

    async def resolve(root: Any, info: strawberry.Info, **arguments: Any) -> list[Any]:
        by, first, order_by = (_given(arguments.get(name)) for name in ("by", "first", "order_by"))
        request = group_request(node_type, by, first, order_by)
        rows = await root._measures(request)
        return [_group(group, key, row, request) for row in rows]

    field = StrawberryField(
        python_name="group_by",
        type_annotation=StrawberryAnnotation(list[group]),  # type: ignore[valid-type]
        base_resolver=StrawberryResolver(resolve),
        description=GROUP_BY_DOC,
    )
    field.arguments = [
        argument("by", _group_by_input(node_type)),
        argument("first", int | None, description=f"At most {MAX_GROUPS}; {DEFAULT_GROUPS} when omitted."),
        argument("order_by", GroupOrder | None),
    ]
    return field


def _given(value: Any) -> Any:
    return None if value is UNSET else value


def _group_type(node_type: NodeType) -> type:
    key = _group_key_type(node_type)
    fields = _measure_fields(node_type)
    annotations = {"key": key}
    namespace = {**fields, "__annotations__": annotations, "__module__": __name__, AGGREGATE_OF: node_type}
    cls = type(f"{node_type.name}Group", (), namespace)
    return strawberry.type(cls, description=f"A group of {node_type.name} items with the same key.")


def _group(cls: Any, key_cls: Any, row: dict[str, Any], request: GroupRequest) -> Any:
    """A group's object from its row: the keys (k0, k1, ...) and its measures."""
    key: Any = key_cls.__new__(key_cls)
    key.__dict__["_row"] = {column: row[f"k{n}"] for n, (column, _) in enumerate(request.keys)}
    group: Any = cls.__new__(cls)
    group.__dict__["key"] = key

    async def measures() -> dict[str, Any]:
        return row

    group.__dict__["_measures"] = measures
    return group


def _values_type(node_type: NodeType, kind: str, values: tuple[Value, ...], as_type: type | None) -> type:
    """An object of one value per field (null for an empty list); `as_type`: every value's
    type (sums and averages are floats), else the field's own."""
    namespace: dict[str, Any] = {
        "__annotations__": {value.python_name: (as_type or value.type) | None for value in values},
        "__module__": __name__,
        AGGREGATE_OF: node_type,
        **{value.python_name: strawberry.field(name=value.graphql_name, default=None) for value in values},
    }
    return strawberry.type(type(f"{node_type.name}{kind}", (), namespace))


def _measure_field(function: str, result: type, values: tuple[Value, ...] | None, doc: str) -> Any:
    async def resolve(root: Any, info: strawberry.Info) -> Any:
        found = await root._measures()
        if values is None:
            return found[label(function)]
        return result(**{value.python_name: found[label(function, value.column)] for value in values})

    return StrawberryField(
        python_name=function,
        type_annotation=StrawberryAnnotation(result),
        base_resolver=StrawberryResolver(resolve),
        description=doc,
    )


# Groups: `groupBy(by: {author: true, datePosted: MONTH}, orderBy: {field: COUNT, direction: DESC})`.

MAX_GROUPS = 1000
DEFAULT_GROUPS = 20


@strawberry.enum(description="A span of time in UTC to group timestamps by; weeks start on Monday.")
class DateBucket(Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@strawberry.enum(description="What groups are sorted by: their count, or their keys.")
class GroupOrderField(Enum):
    COUNT = "COUNT"
    KEY = "KEY"


@strawberry.input(description="Sort groups; ties are broken by their keys, ascending.")
class GroupOrder:
    field: GroupOrderField = GroupOrderField.KEY
    direction: OrderDirection = OrderDirection.ASC


@dataclass(frozen=True, slots=True)
class GroupKey:
    """A field the rows can be grouped by: a relation (by its link), an enum, or an instant
    (by a DateBucket)."""

    python_name: str
    graphql_name: str
    column: str
    kind: str  # "relation", "enum" or "instant"
    annotation: StrawberryAnnotation  # the key's field (optional: null when not grouped by it)


@dataclass(frozen=True, slots=True)
class GroupRequest:
    """What one groupBy asks for: its keys as (column, bucket or None), order and size."""

    keys: tuple[tuple[str, str | None], ...]
    by_count: bool
    descending: bool
    first: int


@functools.cache
def group_keys(node_type: NodeType) -> tuple[GroupKey, ...]:
    definition = node_type.cls.__strawberry_definition__  # type: ignore[attr-defined]
    found = []
    for strawberry_field in definition.fields:
        spec = node_type.fields.get(strawberry_field.python_name)
        graphql_name = (
            next(g for g, p in node_type.graphql_names.items() if p == strawberry_field.python_name)
            if spec
            else ""
        )
        if isinstance(spec, ToOneSpec):
            kind, column = "relation", spec.link
        elif isinstance(spec, ColumnSpec) and spec.rule is None and spec.column is not None:
            python_type = _field_type(node_type, strawberry_field.python_name)
            if python_type is datetime:
                kind = "instant"
            elif isinstance(python_type, StrawberryEnumDefinition):
                kind = "enum"
            else:
                continue
            column = spec.column
        else:
            continue
        raw = strawberry_field.type_annotation
        assert raw is not None
        annotation = StrawberryAnnotation(
            f"{raw.raw_annotation} | None"
            if isinstance(raw.raw_annotation, str)
            else raw.raw_annotation | None,
            namespace=raw.namespace,
        )
        found.append(GroupKey(strawberry_field.python_name, graphql_name, column, kind, annotation))
    return tuple(found)


def group_request(node_type: NodeType, by: Any, first: int | None, order_by: Any) -> GroupRequest:
    """A groupBy's arguments, checked (BAD_USER_INPUT naming the argument)."""
    keys = []
    for key in group_keys(node_type):
        value = getattr(by, key.python_name, None)
        if value is None or value is False:
            continue
        keys.append((key.column, value.value if isinstance(value, DateBucket) else None))
    if not keys:
        raise BadInput("groupBy: give at least one key to group by.", argument="by")
    size = DEFAULT_GROUPS if first is None else first
    if not 0 <= size <= MAX_GROUPS:
        raise BadInput(
            f"first must be between 0 and {MAX_GROUPS}, got {size}.", argument="first", max=MAX_GROUPS
        )
    order = order_by or GroupOrder()
    return GroupRequest(
        tuple(keys), order.field is GroupOrderField.COUNT, order.direction is OrderDirection.DESC, size
    )


def _group_by_input(node_type: NodeType) -> type:
    keys = group_keys(node_type)
    annotations = {key.python_name: (DateBucket if key.kind == "instant" else bool) | None for key in keys}
    namespace: dict[str, Any] = {
        "__annotations__": annotations,
        "__module__": __name__,
        **{key.python_name: strawberry.field(name=key.graphql_name, default=None) for key in keys},
    }
    names = " and ".join(f"`{key.graphql_name}`" for key in keys)
    description = f"What to group by (one or more of {names}); a timestamp by a DateBucket."
    return strawberry.input(type(f"{node_type.name}GroupBy", (), namespace), description=description)


@functools.cache  # one type per node type: the group and its resolver both name it
def _group_key_type(node_type: NodeType) -> type:
    namespace: dict[str, Any] = {"__module__": __name__, AGGREGATE_OF: node_type}
    for key in group_keys(node_type):
        namespace[key.python_name] = StrawberryField(
            python_name=key.python_name,
            graphql_name=key.graphql_name,
            type_annotation=key.annotation,
            base_resolver=StrawberryResolver(_key_resolver(key)),
        )
    cls = type(f"{node_type.name}GroupKey", (), namespace)
    return strawberry.type(cls, description="A group's key: null where the group is not keyed by that field.")


def _key_resolver(key: GroupKey) -> Callable[..., Any]:
    if key.kind == "relation":
        spec = ToOneSpec(key.column)

        def related(root: Any, info: strawberry.Info) -> Any:
            return info.context.loaders.to_one(info, spec, root)

        return related

    def value(root: Any, info: strawberry.Info) -> Any:
        return root.__dict__["_row"].get(key.column)

    return value
