"""The compiled path for answers in parts (@defer, @stream): one statement per part.

A query with deferred fragments becomes several operations of the same document
(`parts_of`): the initial one, without the deferred fragments, and one per deferred fragment
that selects only the way to it (the same fields and arguments down from the root) and its own
fields. Each is planned and compiled like any query, so the initial part costs less than the
whole answer, and each deferred fragment one statement however many objects it is on.

A streamed connection (`edges @stream(initialCount: n)` on a page taken with `first`) is read
twice: its first n edges in the initial statement, through a copy of the connection asked for
`first: n` under an alias of ours (its `pageInfo.hasNextPage` says whether more follow), and the
whole page, less those n, by a statement of its own for the next part (the way to the
connection, as for a deferred fragment). Its first part therefore arrives as soon as n edges
would, without the rest of the page (bench/defer.py). Other streamed lists (a page taken with
`last`, whose first n items are not `last: n`) come whole from their part's statement and are
cut there: the first n items in that part, the rest in the next one.

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
    ArgumentNode,
    DirectiveNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLDeferDirective,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLStreamDirective,
    InlineFragmentNode,
    IntValueNode,
    NameNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution.values import get_argument_values, get_directive_values

from schema.admission.admission import Prepared
from schema.admission.increments import INCREMENTAL_DIRECTIVES
from schema.relay import DEFAULT_PAGE_SIZE

Path = tuple[str, ...]  # response keys from the root; lists on the way are expanded item by item


@dataclass(frozen=True, slots=True)
class Deferred:
    """A deferred fragment, read by a statement of its own."""

    path: Path  # to the object (or list of objects) the fragment is on
    label: str | None
    keys: tuple[str, ...]  # the response keys the fragment adds there
    prepared: Prepared  # the operation that reads only the way to the fragment, and its fields

    def pick(self, found: Any) -> dict[str, Any] | None:
        """The part's payload from what its statement found on one object it was promised for."""
        return {"data": {key: found.get(key) for key in self.keys}} if isinstance(found, dict) else None


@dataclass(frozen=True, slots=True)
class Page:
    """A streamed connection's edges: the first ones in the initial statement, through a copy of
    the connection under `alias`, then the rest of the page by a statement of its own."""

    path: Path  # to the edges
    label: str | None
    initial_count: int
    alias: str
    keys: tuple[str, ...]  # the connection's response keys, in the query's order
    prepared: Prepared  # the operation that reads the way to the connection, and its whole page

    def pick(self, found: Any) -> dict[str, Any] | None:
        """The edges after the first ones, from the whole page its statement found."""
        return {"items": found[self.initial_count :]} if isinstance(found, list) else None


@dataclass(frozen=True, slots=True)
class Streamed:
    """A streamed list that comes whole in its part's statement and is cut there."""

    path: Path  # to the list
    label: str | None
    initial_count: int


@dataclass(frozen=True, slots=True)
class Parts:
    initial: Prepared
    streamed: tuple[Streamed, ...]
    reads: tuple[Page | Deferred, ...]  # the later parts with a statement each, in their order


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
    streamed = [s for s in splitter.streamed if isinstance(s, Streamed)]
    pages = [s for s in splitter.streamed if isinstance(s, Page)]
    return Parts(initial, tuple(streamed), (*pages, *deferred))


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
        self.streamed: list[Streamed | Page] = []
        self._trail: tuple[FieldNode, ...] = ()

    def split(self, selection_set: SelectionSetNode, type_: GraphQLObjectType, path: Path) -> tuple[Any, ...]:
        kept: list[SelectionNode] = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                kept.extend(self._field(selection, type_, path))
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

    def _field(self, node: FieldNode, type_: GraphQLObjectType, path: Path) -> tuple[FieldNode, ...]:
        """The field as the initial operation asks for it: one node, or two for a connection
        whose edges are streamed (itself without them, and the copy that reads the first ones)."""
        key = node.alias.value if node.alias else node.name.value
        stream = get_directive_values(GraphQLStreamDirective, node, self.variables)
        if stream is not None and stream.get("if", True) is not False:
            if node.selection_set is not None:
                _no_increments_inside(node.selection_set, self.fragments)  # later items lack them
            self.streamed.append(
                Streamed((*path, key), stream.get("label"), int(stream.get("initialCount", 0)))
            )
        if node.selection_set is None:
            return (_without_directives(node),)
        definition = type_.fields.get(node.name.value)
        target = get_named_type(definition.type) if definition is not None else None
        if definition is None or not isinstance(target, GraphQLObjectType):
            raise _NotInParts("an abstract type or an unknown field on the way")
        outer, self._trail = self._trail, (*self._trail, node)
        try:
            selections = self.split(node.selection_set, target, (*path, key))
        finally:
            self._trail = outer
        field = dataclasses.replace(
            _without_directives(node), selection_set=SelectionSetNode(selections=selections)
        )
        return self._paged(field, definition, (*path, key)) or (field,)

    def _paged(
        self, connection: FieldNode, definition: GraphQLField, path: Path
    ) -> tuple[FieldNode, ...] | None:
        """For a connection whose `edges` are streamed, taken with `first` (or by default): itself
        without the edges (if it asks for more) and a copy, under an alias, that reads the first
        ones; the rest of the page gets an operation of its own. None for any other field."""
        assert connection.selection_set is not None
        edges = next(
            (
                (index, node)
                for index, node in enumerate(connection.selection_set.selections)
                if isinstance(node, FieldNode) and node.name.value == "edges"
            ),
            None,
        )
        if edges is None or "first" not in definition.args:
            return None
        index, edges_node = edges
        # Validation lets no other selection of these edges stand beside the streamed one.
        edges_path = (*path, edges_node.alias.value if edges_node.alias else "edges")
        place, streamed = next(
            (
                (place, s)
                for place, s in enumerate(self.streamed)
                if s.path == edges_path and isinstance(s, Streamed)
            ),
            (None, None),
        )
        arguments = get_argument_values(definition, connection, self.variables)
        first = arguments.get("first")
        if streamed is None or place is None or arguments.get("last") is not None:
            return None
        if (DEFAULT_PAGE_SIZE if first is None else first) <= streamed.initial_count:
            return None  # the page holds no more than the first part does: nothing follows
        alias = f"_quillStream{place}"
        copy = dataclasses.replace(
            connection,
            alias=NameNode(value=alias),
            arguments=_with_first(connection.arguments, streamed.initial_count),
            selection_set=SelectionSetNode(selections=(_HAS_NEXT_PAGE, edges_node)),
        )
        rest = tuple(node for i, node in enumerate(connection.selection_set.selections) if i != index)
        whole_page = dataclasses.replace(connection, selection_set=SelectionSetNode(selections=(edges_node,)))
        self.streamed[place] = Page(
            path=edges_path,
            label=streamed.label,
            initial_count=streamed.initial_count,
            alias=alias,
            keys=tuple(dict.fromkeys(_keys(connection.selection_set, self.fragments))),
            prepared=self.operation(
                _way_to(
                    self.prepared.operation.selection_set,
                    self._trail,
                    SelectionSetNode(selections=(whole_page,)),
                )
            ),
        )
        kept = dataclasses.replace(connection, selection_set=SelectionSetNode(selections=rest))
        return (kept, copy) if rest else (copy,)

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


_HAS_NEXT_PAGE = FieldNode(
    name=NameNode(value="pageInfo"),
    arguments=(),
    directives=(),
    selection_set=SelectionSetNode(
        selections=(FieldNode(name=NameNode(value="hasNextPage"), arguments=(), directives=()),)
    ),
)


def _with_first(arguments: Any, first: int) -> tuple[ArgumentNode, ...]:
    kept = tuple(argument for argument in arguments or () if argument.name.value != "first")
    return (*kept, ArgumentNode(name=NameNode(value="first"), value=IntValueNode(value=str(first))))


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
