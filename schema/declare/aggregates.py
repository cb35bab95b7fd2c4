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
from typing import Any

import strawberry
from strawberry.annotation import StrawberryAnnotation
from strawberry.types.base import StrawberryOptional
from strawberry.types.field import StrawberryField
from strawberry.types.fields.resolver import StrawberryResolver

from db.aggregates import label, measures
from schema.declare.nodes import NodeType
from schema.declare.specs import ColumnSpec
from schema.relay import Connection

AGGREGATE_DOC = (
    "Aggregates over every item of the list (not only this page): its filter and search apply, "
    "and only the rows the viewer may see are counted."
)
AVERAGE_DOC = "Averages, rounded to 6 decimal places; null for an empty list."
AGGREGATE_OF = "__quill_aggregate_of__"  # on the aggregate types: the node type they aggregate
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

Measures = Callable[[], Awaitable[dict[str, Any]]]


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
    shape = measured(node_type)
    name = node_type.name
    fields: dict[str, Any] = {"count": _measure_field("count", int, None, "How many items the list holds.")}
    if shape.numbers or shape.instants:
        extremes = _values_type(node_type, "Extremes", (*shape.numbers, *shape.instants), None)
        fields["min"] = _measure_field("min", extremes, shape.numbers + shape.instants, "Smallest values.")
        fields["max"] = _measure_field("max", extremes, shape.numbers + shape.instants, "Largest values.")
    if shape.numbers:
        numbers = _values_type(node_type, "Numbers", shape.numbers, float)
        fields["sum"] = _measure_field("sum", numbers, shape.numbers, SUM_DOC)
        fields["avg"] = _measure_field("avg", numbers, shape.numbers, AVERAGE_DOC)
    cls = type(f"{name}Aggregate", (), {**fields, "__module__": __name__, AGGREGATE_OF: node_type})
    return strawberry.type(cls, description=f"Aggregates of a list of {name} items.")


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
