"""A mutation of one root field, completed without graphql-core's machinery where it is simple.

graphql-core frames a one-field mutation in about 100 microseconds of Python: the root's field
collection, the serial reduce, the awaitable wrappers, the union's type resolution and the
payload's completion. A mutation's write is one statement (schema/execution/object_reads.py), so
that framing was a sixth of what a createPost costs. Here:

- the field's resolver runs as graphql-core would run it: its arguments from the coerced
  variables, then Strawberry's own wrapper (argument conversion, the resolver, its typed errors);
- its result is completed here when the selection, for the result's type, is only `__typename`,
  plain leaf fields and the payload's row, as the statement that wrote the row built its JSON
  (`linked(..., read=...)`) or else one compiled read of the row; anything else (another shape,
  a null, a value that does not serialize, a row the compiled path cannot read) is completed by
  graphql-core's executor from the same result: the resolver never runs twice.

Errors are located and propagated as graphql-core does (tests/test_root_field.py compares the
two on answers and errors). Only with compiled reads on: `COMPILED_READS=0` keeps graphql-core's
own path everywhere, the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    is_abstract_type,
)
from graphql.execution.collect_fields import FieldDetails
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from schema.declare.nodes import NodeType
from schema.execution.context import Context
from schema.execution.executor import attribute_plan, payload_link, payload_row
from schema.execution.object_reads import NOT_READ

TYPENAME = "__typename"


@dataclass(frozen=True, slots=True)
class Leaf:
    """A plain attribute printed as its scalar or enum prints it."""

    attribute: str
    type: GraphQLLeafType
    non_null: bool


@dataclass(frozen=True, slots=True)
class Row:
    """The payload's row: read by the statement that wrote it (keyed by its field node), else by
    one compiled read of the row (SQLite; a payload the write's statement could not build)."""

    node: FieldNode
    node_type: NodeType
    link: str  # the payload's attribute holding the row's id


# A response key and what it prints: the type's name, a leaf, or the written row.
Entry = tuple[str, str | Leaf | Row]


@dataclass(frozen=True, slots=True)
class RootField:
    """A mutation document's one root field, and per possible result type the entries to print
    (None: graphql-core completes a result of that type)."""

    key: str
    node: FieldNode
    field: Any  # the GraphQLField
    root: GraphQLObjectType
    shapes: dict[str, tuple[Entry, ...] | None]

    async def run(self, executor: StrawberryGraphQLCoreExecutionContext) -> tuple[ExecutionResult, bool]:
        """The operation's result, and whether it printed a row the compiled write read (the
        answer is then the compiled path's, as the request log and metrics say)."""
        path = Path(None, self.key, self.root.name)
        details = [FieldDetails(self.node, None)]
        info = executor.build_resolve_info(self.field, [self.node], self.root, path)
        return_type = self.field.type
        compiled = False
        try:
            try:
                args = (
                    get_argument_values(self.field, self.node, executor.variable_values)
                    if self.field.args or self.node.arguments
                    else {}
                )
                result = self.field.resolve(None, info, **args)
                if executor.is_awaitable(result):
                    result = await result
                value, compiled = await self._complete(result, executor.context_value)
                if value is Undefined:
                    value = executor.complete_value(return_type, details, info, path, result, None)
                    if executor.is_awaitable(value):
                        value = await value
            except Exception as raw:  # noqa: BLE001 - located and propagated as graphql-core does
                executor.handle_field_error(raw, return_type, details, path)  # raises when non-null
                value = None
        except GraphQLError as error:  # the root field was non-null: the whole answer is null
            executor.collected_errors.add(error, None)
            return executor.build_response(None), False  # type: ignore[return-value]
        return executor.build_response({self.key: value}), compiled  # type: ignore[return-value]

    async def _complete(self, result: Any, context: Context) -> tuple[Any, bool]:
        """The completed result (Undefined where graphql-core must complete it), and whether it
        holds the written row's JSON."""
        definition = getattr(type(result), "__strawberry_definition__", None)
        name: str | None = getattr(definition, "name", None)
        entries = self.shapes.get(name) if name is not None else None
        if entries is None:
            return Undefined, False
        completed: dict[str, Any] = {}
        row = False
        for key, entry in entries:
            if isinstance(entry, str):  # TYPENAME
                completed[key] = name
            elif isinstance(entry, Leaf):
                value = getattr(result, entry.attribute, None)
                if value is None:
                    if entry.non_null:
                        return Undefined, False  # graphql-core reports the violation
                    completed[key] = None
                    continue
                try:
                    coerced = entry.type.coerce_output_value(value)
                except Exception:  # noqa: BLE001 - graphql-core's path reports it properly
                    return Undefined, False
                if coerced is None or coerced is Undefined:
                    return Undefined, False
                completed[key] = coerced
            else:
                assert isinstance(entry, Row)
                found = await _row(entry, result, context)
                if found is NOT_READ:
                    return Undefined, False
                completed[key] = found
                row = True
        return completed, row


async def _row(entry: Row, result: Any, context: Context) -> Any:
    """The payload's row as its selection wants it, or NOT_READ (as executor.py's _read_object)."""
    pk, found, seen_by = payload_row(result, entry.link, entry.node)
    if pk is None:
        return NOT_READ
    if found is not NOT_READ or context.objects is None:
        return found
    return await context.objects.read(entry.node_type, [entry.node], pk, seen_by or context.viewer)


def root_field(
    schema: GraphQLSchema, operation: OperationDefinitionNode, fragments: dict[str, Any]
) -> RootField | None:
    """The mutation's one root field, or None where graphql-core runs the whole operation (more
    than one root field, a directive, a fragment at the root, no result it would print)."""
    selections = operation.selection_set.selections
    root = schema.mutation_type
    if (
        operation.operation is not OperationType.MUTATION
        or root is None
        or operation.directives
        or len(selections) != 1
        or not isinstance(selections[0], FieldNode)
        or selections[0].directives
    ):
        return None
    node = selections[0]
    field = root.fields.get(node.name.value)
    if field is None or field.resolve is None:
        return None
    named = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    if isinstance(named, GraphQLUnionType):
        possible: tuple[GraphQLObjectType, ...] = tuple(named.types)
    elif isinstance(named, GraphQLObjectType):
        possible = (named,)
    else:
        return None
    shapes = {kind.name: _shape(schema, kind, node.selection_set, fragments) for kind in possible}
    if all(shape is None for shape in shapes.values()):
        return None  # nothing it would print: graphql-core runs it all
    key = node.alias.value if node.alias else node.name.value
    return RootField(key, node, field, root, shapes)


def _shape(
    schema: GraphQLSchema,
    kind: GraphQLObjectType,
    selection_set: SelectionSetNode | None,
    fragments: dict[str, Any],
) -> tuple[Entry, ...] | None:
    """What a result of `kind` prints for the selection, in graphql-core's order; None where a
    field is not one printed here."""
    if selection_set is None:
        return None
    collected: dict[str, list[FieldNode]] = {}
    if not _collect(schema, kind, selection_set, fragments, collected):
        return None
    entries: list[Entry] = []
    for key, nodes in collected.items():
        name = nodes[0].name.value
        if any(node.name.value != name or node.arguments for node in nodes):
            return None
        if name == TYPENAME:
            entries.append((key, TYPENAME))
            continue
        if (link := payload_link(kind, name)) is not None:
            if len(nodes) != 1:  # the compiled write reads one node's selection
                return None
            entries.append((key, Row(nodes[0], *link)))
            continue
        plan = attribute_plan(kind, name)
        if plan is None or plan.kind != "leaf" or any(node.selection_set for node in nodes):
            return None
        entries.append(
            (key, Leaf(plan.attribute, plan.type, isinstance(kind.fields[name].type, GraphQLNonNull)))
        )
    return tuple(entries)


def _collect(
    schema: GraphQLSchema,
    kind: GraphQLObjectType,
    selection_set: SelectionSetNode,
    fragments: dict[str, Any],
    collected: dict[str, list[FieldNode]],
) -> bool:
    """graphql-core's field collection for one object type, in its order; False where a
    directive is there (its condition would depend on the variables) or a fragment is unknown."""
    for selection in selection_set.selections:
        if selection.directives:
            return False
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            collected.setdefault(key, []).append(selection)
            continue
        if isinstance(selection, InlineFragmentNode):
            condition, inner = selection.type_condition, selection.selection_set
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is None:
                return False
            condition, inner = fragment.type_condition, fragment.selection_set
        else:
            return False
        conditional = schema.get_type(condition.name.value) if condition is not None else kind
        applies = conditional is kind or (
            is_abstract_type(conditional) and schema.is_sub_type(conditional, kind)
        )
        if applies and not _collect(schema, kind, inner, fragments, collected):
            return False
    return True
