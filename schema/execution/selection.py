"""Look ahead at what a query selects, so the resolvers' SQL loads only what it needs.

The node type's declaration says which listing column each field reads (schema/declare/); a
resolver asks for the columns its result's selection needs, and a page also learns which to-one
objects to load with it. Fragments and inline fragments are followed whatever their type
condition, and @skip/@include are ignored: loading a column too many is harmless, one too few
is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLSchema,
    InlineFragmentNode,
    SelectionSetNode,
    get_named_type,
)

from schema.declare.nodes import NodeType, find_node_type
from schema.declare.specs import ToOneSpec

if TYPE_CHECKING:
    from schema.execution.context import Info

CONNECTION_NODE = ("edges", "node")


@dataclass(frozen=True, slots=True)
class Related:
    """A to-one object a page loads along with its rows: the field, its type, the link column
    holding its id, and the columns its own selection reads."""

    field: str
    target: NodeType
    link: str
    columns: frozenset[str]


def _fields(
    selection_sets: Iterable[SelectionSetNode | None], fragments: Mapping[str, Any]
) -> list[FieldNode]:
    found: list[FieldNode] = []
    pending = [selection_set for selection_set in selection_sets if selection_set is not None]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
                pending.append(fragments[selection.name.value].selection_set)
    return found


def _selected_names(info: Info, path: tuple[str, ...]) -> frozenset[str]:
    raw = info._raw_info
    fragments = raw.fragments
    level = _fields((node.selection_set for node in raw.field_nodes), fragments)
    for step in path:
        level = _fields((node.selection_set for node in level if node.name.value == step), fragments)
    return frozenset(node.name.value for node in level)


def _cached(info: Info, key: Any, compute: Any) -> Any:
    # Computed once per field of the query document (siblings share it): a list of 50 users
    # asking for `posts` pays for one look-ahead, not 50.
    cache = info.context.selection_cache
    key = (id(info._raw_info.field_nodes[0]), *key)
    found = cache.get(key)
    if found is None:
        found = cache[key] = compute()
    return found


def selects(info: Info, path: tuple[str, ...]) -> frozenset[str]:
    """The field names selected at `path` below this field."""
    result: frozenset[str] = _cached(info, ("names", path), lambda: _selected_names(info, path))
    return result


def columns_for(info: Info, node_type: NodeType, *, path: tuple[str, ...] = ()) -> frozenset[str]:
    """The listing columns the selection at `path` below this field reads from `node_type`."""

    def compute() -> frozenset[str]:
        columns = set()
        for name in selects(info, path):
            spec = node_type.spec(name)
            label = node_type.label(node_type.graphql_names.get(name, ""))
            if label is not None:
                columns.add(label)
            elif isinstance(spec, ToOneSpec):
                columns.add(spec.link)
        return frozenset(columns)

    result: frozenset[str] = _cached(info, ("columns", path, node_type.name), compute)
    return result


def related_for(info: Info, node_type: NodeType, *, path: tuple[str, ...]) -> tuple[Related, ...]:
    """The to-one objects selected at `path`, each with the columns its own selection reads."""

    def compute() -> tuple[Related, ...]:
        schema = info._raw_info.schema
        found = []
        for name in sorted(selects(info, path)):
            spec = node_type.spec(name)
            if not isinstance(spec, ToOneSpec):
                continue
            target = target_of(schema, node_type, name)
            columns = columns_for(info, target, path=(*path, name))
            found.append(Related(node_type.graphql_names[name], target, spec.link, columns))
        return tuple(found)

    result: tuple[Related, ...] = _cached(info, ("related", path, node_type.name), compute)
    return result


def target_of(schema: GraphQLSchema, node_type: NodeType, graphql_field: str) -> NodeType:
    """The node type a field of `node_type` returns (a to-one object, or a connection's nodes)."""
    graphql_type: Any = schema.get_type(node_type.name)
    named: Any = get_named_type(graphql_type.fields[graphql_field].type)
    if named.name.endswith("Connection"):
        named = get_named_type(get_named_type(named.fields["edges"].type).fields["node"].type)
    found = find_node_type(named.name)
    if found is None:
        raise TypeError(f"{node_type.name}.{graphql_field} returns {named.name}, which is not declared")
    return found
