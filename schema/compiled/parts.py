"""The compiled path for answers in parts (@defer, @stream): one statement per part.

A query with deferred fragments becomes several operations of the same document
(`parts_of`): the initial one, without the deferred fragments, and one per deferred fragment
that selects only the way to it (the same fields and arguments down from the root) and its own
fields. Each is planned and compiled like any query, so the initial part costs less than the
whole answer, and each deferred fragment one statement however many objects it is on.

A streamed list (`@stream(initialCount: n)`) comes from its part's statement whole: the first n
items go in that part, the rest in the next one. Its first part therefore arrives when the whole
list would (bench/defer.py); a statement per page, which needs the list's arguments rewritten
for its first n items, is not done yet.

Only shapes whose parts can be matched up by their response paths are taken: object types all
the way down (no unions or interfaces on the way), fragments inline or spread at most once per
deferred fragment, and no @defer or @stream inside a deferred fragment. The rest, like a
mutation with @defer, is answered by graphql-core's incremental executor (the reference).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DirectiveNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLDeferDirective,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLStreamDirective,
    InlineFragmentNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution.values import get_directive_values

from schema.admission.admission import Prepared
from schema.admission.increments import INCREMENTAL_DIRECTIVES

Path = tuple[str, ...]  # response keys from the root; lists on the way are expanded item by item


@dataclass(frozen=True, slots=True)
class Deferred:
    path: Path  # to the object (or list of objects) the fragment is on
    label: str | None
    keys: tuple[str, ...]  # the response keys the fragment adds there
    prepared: Prepared  # the operation that reads only the way to the fragment, and its fields


@dataclass(frozen=True, slots=True)
class Streamed:
    path: Path  # to the list
    label: str | None
    initial_count: int


@dataclass(frozen=True, slots=True)
class Parts:
    initial: Prepared
    deferred: tuple[Deferred, ...]
    streamed: tuple[Streamed, ...]


class _NotInParts(Exception):
    """A shape whose parts the compiled path does not match up: the resolvers answer it."""


def parts_of(schema: GraphQLSchema, prepared: Prepared) -> Parts | None:
    """The operations of a query's parts, or None where the resolvers answer it (made once)."""
    key = ("parts",)
    if key not in prepared.plans:
        prepared.plans[key] = _parts(schema, prepared) if prepared.kind is OperationType.QUERY else None
    found: Parts | None = prepared.plans[key]
    return found


def _parts(schema: GraphQLSchema, prepared: Prepared) -> Parts | None:
    query = schema.query_type
    assert query is not None
    splitter = _Splitter(prepared)
    try:
        selections = splitter.split(prepared.operation.selection_set, query, ())
    except _NotInParts:
        return None
    initial = splitter.operation(selections)
    deferred = tuple(
        Deferred(
            path, label, keys, splitter.operation(_way_to(prepared.operation.selection_set, trail, fragment))
        )
        for path, label, keys, trail, fragment in splitter.deferred
    )
    return Parts(initial, deferred, tuple(splitter.streamed))


class _Splitter:
    """Walks the operation, taking out the deferred fragments and noting the streamed lists."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        self.fragments = prepared.fragments
        self.variables = prepared.variables
        # (path, label, keys, the field nodes on the way, the fragment's selection set)
        self.deferred: list[
            tuple[Path, str | None, tuple[str, ...], tuple[FieldNode, ...], SelectionSetNode]
        ] = []
        self.streamed: list[Streamed] = []
        self._trail: tuple[FieldNode, ...] = ()

    def split(self, selection_set: SelectionSetNode, type_: GraphQLObjectType, path: Path) -> tuple[Any, ...]:
        kept: list[SelectionNode] = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                kept.append(self._field(selection, type_, path))
                continue
            fragment = self._fragment_of(selection, type_)
            defer = get_directive_values(GraphQLDeferDirective, selection, self.variables)
            if defer is not None and defer.get("if", True) is not False:
                _no_increments_inside(fragment, self.fragments)
                keys = tuple(_keys(fragment, self.fragments))
                self.deferred.append((path, defer.get("label"), keys, self._trail, fragment))
                continue
            split = SelectionSetNode(selections=self.split(fragment, type_, path))
            kept.append(InlineFragmentNode(type_condition=None, directives=(), selection_set=split))
        return tuple(kept)

    def _field(self, node: FieldNode, type_: GraphQLObjectType, path: Path) -> FieldNode:
        key = node.alias.value if node.alias else node.name.value
        stream = get_directive_values(GraphQLStreamDirective, node, self.variables)
        if stream is not None and stream.get("if", True) is not False:
            self.streamed.append(
                Streamed((*path, key), stream.get("label"), int(stream.get("initialCount", 0)))
            )
        if node.selection_set is None:
            return _without_directives(node)
        definition = type_.fields.get(node.name.value)
        target = get_named_type(definition.type) if definition is not None else None
        if not isinstance(target, GraphQLObjectType):
            raise _NotInParts("an abstract type or an unknown field on the way")
        outer, self._trail = self._trail, (*self._trail, node)
        try:
            selections = self.split(node.selection_set, target, (*path, key))
        finally:
            self._trail = outer
        return dataclasses.replace(
            _without_directives(node), selection_set=SelectionSetNode(selections=selections)
        )

    def _fragment_of(self, selection: Any, type_: GraphQLObjectType) -> SelectionSetNode:
        if isinstance(selection, FragmentSpreadNode):
            definition = self.fragments[selection.name.value]
            condition, selection_set = definition.type_condition, definition.selection_set
        else:
            condition, selection_set = selection.type_condition, selection.selection_set
        if condition is not None and condition.name.value != type_.name:
            raise _NotInParts("a fragment on another type")
        if any(d.name.value in ("skip", "include") for d in selection.directives or ()):
            raise _NotInParts("a fragment under @skip or @include")
        return selection_set

    def operation(self, selections: tuple[Any, ...]) -> Prepared:
        operation = dataclasses.replace(
            self.prepared.operation, selection_set=SelectionSetNode(selections=selections)
        )
        return dataclasses.replace(self.prepared, operation=operation, plans={}, plain=None)


def _way_to(
    selection_set: SelectionSetNode, trail: tuple[FieldNode, ...], fragment: SelectionSetNode
) -> tuple[Any, ...]:
    """The root selections that lead down `trail` to the fragment's own fields, nothing else."""
    selections: tuple[Any, ...] = tuple(_plain(fragment.selections))
    for node in reversed(trail):
        selections = (
            dataclasses.replace(
                _without_directives(node), selection_set=SelectionSetNode(selections=selections)
            ),
        )
    return selections


def _plain(selections: Any) -> Iterator[Any]:
    for selection in selections:
        if isinstance(selection, FieldNode):
            yield _without_directives(selection) if selection.selection_set is None else selection
        else:
            yield selection


def _without_directives(node: FieldNode) -> FieldNode:
    kept = tuple(d for d in node.directives or () if d.name.value not in INCREMENTAL_DIRECTIVES)
    return dataclasses.replace(node, directives=kept)


def _keys(selection_set: SelectionSetNode, fragments: Mapping[str, Any]) -> Iterator[str]:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection.alias.value if selection.alias else selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from _keys(selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            yield from _keys(fragments[selection.name.value].selection_set, fragments)


def _no_increments_inside(selection_set: SelectionSetNode, fragments: Mapping[str, Any]) -> None:
    for selection in selection_set.selections:
        directives: tuple[DirectiveNode, ...] = tuple(selection.directives or ())
        if any(d.name.value in INCREMENTAL_DIRECTIVES for d in directives):
            raise _NotInParts("@defer or @stream inside a deferred fragment")
        if isinstance(selection, FragmentSpreadNode):
            _no_increments_inside(fragments[selection.name.value].selection_set, fragments)
        elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set is not None:
            _no_increments_inside(selection.selection_set, fragments)


# Walking an answer's JSON.


def found_at(data: Any, path: Path) -> Iterator[tuple[list[Any], Any]]:
    """(response path, value) of every object or list at `path` in `data`, list items expanded on
    the way (and at the end for objects in a list); nulls are skipped."""
    yield from _walk(data, list(path), [])


def _walk(value: Any, keys: list[str], at: list[Any]) -> Iterator[tuple[list[Any], Any]]:
    if value is None:
        return
    if not keys:
        yield at, value
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, keys, [*at, index])
        return
    yield from _walk(value.get(keys[0]), keys[1:], [*at, keys[0]])


def objects_at(data: Any, path: Path) -> Iterator[tuple[list[Any], dict[str, Any]]]:
    """The objects a deferred fragment at `path` is on (each item, when the path ends in a list)."""
    for at, value in found_at(data, path):
        if isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    yield [*at, index], item
        elif isinstance(value, dict):
            yield at, value


def value_at(data: Any, at: list[Any]) -> Any:
    for step in at:
        if data is None:
            return None
        data = (
            data[step]
            if isinstance(step, int) and isinstance(data, list) and step < len(data)
            else (data.get(step) if isinstance(data, dict) else None)
        )
    return data
