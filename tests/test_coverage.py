"""Every field of the schema is answered by the compiled path, or says why only the resolvers answer it.

A field that falls back to the resolvers without anyone deciding so is 10-30x slower and no
answer shows it; this walks the built schema and fails on such a field. What counts as compiled:
- on a node type (declared with @node): `id`, and every field with a declaration the planner
  reads (column, expression, to_one, connection: schema/declare/fields.py);
- on the root types: connections, lookups, `me`, `node`/`nodes`, and subscriptions declared with
  schema/declare/subscriptions.py (whose documents tests/test_event_streams.py checks the
  compiled group takes);
- the structure of connections (edges, cursor, node, pageInfo, totalCount, aggregate and the
  objects of its aggregates: schema/declare/aggregates.py);
- on the objects mutations return (payloads, errors): plain values the resolver sets, and
  `to_one` links to the rows written.
A field marked `resolver_only(reason)` is listed with its reason; anything else fails.
"""

from __future__ import annotations

import pytest
import strawberry
from graphql import GraphQLObjectType, GraphQLSchema
from strawberry.types.field import StrawberryField

from db import models
from db.visibility import everyone
from schema import build_schema
from schema.declare import column, connection, node
from schema.declare.aggregates import AGGREGATE_OF
from schema.declare.nodes import find_node_type
from schema.declare.specs import (
    ColumnSpec,
    ConnectionSpec,
    EntitySpec,
    ExpressionSpec,
    LookupSpec,
    NodeSpec,
    ResolverOnly,
    SubscriptionSpec,
    ToOneSpec,
    ViewerSpec,
    spec_of,
)
from schema.relay import Connection, Edge, Node, PageInfo

pytestmark = pytest.mark.one_path  # the resolver pass skips it (pyproject.toml: markers)

COMPILED_ON_NODES = (ColumnSpec, ExpressionSpec, ToOneSpec, ConnectionSpec)
COMPILED_AT_THE_ROOT = (ConnectionSpec, LookupSpec, ViewerSpec, NodeSpec, EntitySpec, SubscriptionSpec)
STRUCTURE = {Connection: {"edges", "pageInfo", "totalCount"}, Edge: {"cursor", "node"}, PageInfo: None}


def coverage(schema: GraphQLSchema) -> tuple[dict[str, str], list[str]]:
    """(resolver-only fields with their reasons, fields that fall back undeclared)."""
    resolver_only: dict[str, str] = {}
    undeclared: list[str] = []
    roots = {schema.query_type, schema.subscription_type}
    for name, type_ in sorted(schema.type_map.items()):
        if name.startswith("__") or not isinstance(type_, GraphQLObjectType) or type_ is schema.mutation_type:
            continue
        structure = _structure(type_)
        node_type = find_node_type(name)
        for field_name, field in type_.fields.items():
            where = f"{name}.{field_name}"
            strawberry_field = field.extensions.get("strawberry-definition")
            spec = spec_of(strawberry_field)
            if isinstance(spec, ResolverOnly):
                resolver_only[where] = spec.reason
            elif structure is not None:
                if structure and field_name not in structure:
                    undeclared.append(where)
            elif type_ in roots:
                if not isinstance(spec, COMPILED_AT_THE_ROOT):
                    undeclared.append(where)
            elif node_type is not None:
                if field_name != "id" and not isinstance(spec, COMPILED_ON_NODES):
                    undeclared.append(where)
            elif not (isinstance(spec, ToOneSpec) or _plain_value(strawberry_field)):
                undeclared.append(where)
    return resolver_only, undeclared


def _structure(type_: GraphQLObjectType) -> set[str] | None:
    """The fields of a connection's own types; None for any other type."""
    definition = type_.extensions.get("strawberry-definition")
    origin = getattr(definition, "origin", None)
    for cls, fields in STRUCTURE.items():
        if origin is cls or getattr(getattr(definition, "concrete_of", None), "origin", None) is cls:
            return fields or set(type_.fields)
    if isinstance(origin, type) and issubclass(origin, Connection):  # a node type's own connection
        return {"edges", "pageInfo", "totalCount", "aggregate"}
    if hasattr(origin, AGGREGATE_OF):  # the planner compiles every field of an aggregate's objects
        return set(type_.fields)
    return None


def _plain_value(field: object) -> bool:
    """A value the resolver put on the object (a payload's token, an error's message)."""
    return isinstance(field, StrawberryField) and field.is_basic_field


def test_every_field_is_compiled_or_says_why_not() -> None:
    resolver_only, undeclared = coverage(build_schema()._schema)
    assert undeclared == [], f"fields that would fall back to the resolvers undeclared: {undeclared}"
    # The exceptions, in one list, each with its reason (printed with -s).
    for field, reason in resolver_only.items():
        print(f"resolver only: {field}: {reason}")
        assert reason.strip()


def test_every_field_of_the_federation_subgraph_is_compiled_or_says_why_not() -> None:
    resolver_only, undeclared = coverage(build_schema(federation=True)._schema)
    assert undeclared == [], f"fields that would fall back to the resolvers undeclared: {undeclared}"
    assert "Query._service" in resolver_only


@node(models.Post, visible=everyone)
@strawberry.type(name="Scratch")
class Scratch(Node):
    """A node type with a field that reads nothing declared (for the test of the check itself)."""

    title: str = strawberry.field(default="")  # a plain attribute: the planner cannot read it
    content: str = column()


@strawberry.type
class ScratchQuery:
    scratches: Connection[Scratch] = connection()


def test_a_field_without_a_declaration_fails_the_coverage() -> None:
    schema = strawberry.Schema(query=ScratchQuery)
    _, undeclared = coverage(schema._schema)
    assert undeclared == ["Scratch.title"]
