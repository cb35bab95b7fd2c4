"""A faster executor for the commonest fields: plain attributes.

graphql-core builds a path, a resolve-info object and a completion chain for every field, about
8 microseconds each; a page of 100 posts spends most of its time there, not in SQL. For a field
with no resolver, no arguments and no directives, this executor reads the attribute itself:

- a scalar or enum is serialized inline;
- a non-null object, or a non-null list of non-null objects (connections' `node`, `edges`,
  `pageInfo`), goes straight to its sub-selection.

Anything else, a null where the plan expects a value, or a value that fails to serialize, takes
graphql-core's own path, so errors, nulls and their paths stay exactly as graphql-core makes them
(tests/test_execution.py runs documents through both executors and compares). Objects and lists
are only short-cut when non-null: an error inside one then propagates to the parent in both
executors alike. With error propagation switched off by the operation, only leaves are short-cut.

In a mutation with compiled reads on, a payload's `to_one` field (the row just written) is read
by one compiled statement instead (schema/execution/object_reads.py): its value arrives as the
completed JSON, and graphql-core's path answers it whenever that read cannot.

It overrides `execute_fields` of graphql-core 3.3's executor, so pyproject.toml pins graphql-core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    FieldNode,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    get_named_type,
    is_leaf_type,
)
from graphql.pyutils import Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

from db.visibility import Viewer
from schema.declare.nodes import NodeType, find_node_type
from schema.declare.specs import ToOneSpec, spec_of
from schema.execution.object_reads import NOT_READ


@dataclass(frozen=True, slots=True)
class Plan:
    attribute: str
    kind: str  # "leaf", "object" or "objects"
    type: Any  # the leaf type, or the (item) object type


_SLOW = object()  # "take graphql-core's path for this field"

# Plans per schema: they hold the schema's own type objects, so they must never cross schemas.
_PLANS: WeakKeyDictionary[GraphQLSchema, dict[tuple[str, str], Plan | None]] = WeakKeyDictionary()
# Per schema: the fields that link a payload (not itself a node) to a node type's row.
_LINKS: WeakKeyDictionary[GraphQLSchema, dict[tuple[str, str], tuple[NodeType, str] | None]] = (
    WeakKeyDictionary()
)


def payload_link(parent_type: GraphQLObjectType, field_name: str) -> tuple[NodeType, str] | None:
    """(the node type, the payload's key for its id) of a payload's `to_one` field."""
    field_def = parent_type.fields.get(field_name)
    if field_def is None or field_def.args or find_node_type(parent_type.name) is not None:
        return None
    spec = spec_of(field_def.extensions.get("strawberry-definition"))
    target = get_named_type(field_def.type)
    node_type = find_node_type(target.name) if isinstance(target, GraphQLObjectType) else None
    if not isinstance(spec, ToOneSpec) or node_type is None:
        return None
    return node_type, spec.link


def payload_row(source: Any, key: str, node: FieldNode) -> tuple[Any, Any, Viewer | None]:
    """A payload's linked row as a compiled read takes it: its id (None where there is none to
    read: no row, or the row came with its fields), its JSON if the statement that wrote it built
    it for `node` (else NOT_READ), and the viewer it is seen as, if not the request's."""
    state = getattr(source, "__dict__", {})
    row = state.get("_row")
    if row is None or state.get("_with"):
        return None, NOT_READ, None
    pk = getattr(row, "_mapping", row).get(key)
    already = state.get("_read")
    found = already[id(node)] if already is not None and id(node) in already else NOT_READ
    return pk, found, state.get("_seen_by")


def attribute_plan(parent_type: GraphQLObjectType, field_name: str) -> Plan | None:
    field_def = parent_type.fields.get(field_name)
    if field_def is None or field_def.args:
        return None
    strawberry_field = field_def.extensions.get("strawberry-definition")
    if not isinstance(strawberry_field, StrawberryField) or not strawberry_field.is_basic_field:
        return None
    attribute, of = strawberry_field.python_name, field_def.type
    non_null = isinstance(of, GraphQLNonNull)
    inner = of.of_type if non_null else of
    if is_leaf_type(inner):
        return Plan(attribute, "leaf", inner)
    if not non_null:
        return None
    if isinstance(inner, GraphQLObjectType):
        return Plan(attribute, "object", inner)
    if isinstance(inner, GraphQLList) and isinstance(inner.of_type, GraphQLNonNull):
        item = inner.of_type.of_type
        if isinstance(item, GraphQLObjectType):
            return Plan(attribute, "objects", item)
    return None


class FastPathExecutor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, with plain attribute fields completed inline."""

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        if self.middleware_manager is not None and self.middleware_manager._middleware_resolvers:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        plans = _PLANS.get(self.schema)
        if plans is None:
            plans = _PLANS[self.schema] = {}
        objects = self.context_value.objects if self.context_value is not None else None
        links = _LINKS.setdefault(self.schema, {}) if objects is not None else None
        is_awaitable = self.is_awaitable
        results: dict[str, Any] = {}
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list in grouped_field_set.items():
                node = field_details_list[0].node
                key = (parent_type.name, node.name.value)
                if key in plans:
                    plan = plans[key]
                else:
                    plan = plans[key] = attribute_plan(parent_type, node.name.value)
                result = _SLOW
                if links is not None and not node.directives:
                    if key not in links:
                        links[key] = payload_link(parent_type, node.name.value)
                    link = links[key]
                    if link is not None:
                        result = self._read_object(
                            link,
                            parent_type,
                            source_value,
                            field_details_list,
                            path,
                            response_name,
                            position_context,
                        )
                if result is _SLOW and plan is not None and not node.arguments and not node.directives:
                    result = self._fast(
                        plan,
                        parent_type,
                        source_value,
                        path,
                        response_name,
                        field_details_list,
                        position_context,
                    )
                if result is _SLOW:
                    field_path = Path(path, response_name, parent_type.name)
                    result = self.execute_field(
                        parent_type, source_value, field_details_list, field_path, position_context
                    )
                    if result is Undefined:
                        continue
                results[response_name] = result
                if is_awaitable(result):
                    awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                # As graphql-core does: settle the awaitables siblings created, then propagate.
                self.settle_in_background([results[name] for name in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:  # as graphql-core: one awaitable needs no gathering
                results[awaitable_fields[0]] = await results[awaitable_fields[0]]
            else:
                awaited = await gather_with_cancel(*(results[name] for name in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    def _read_object(
        self,
        link: tuple[NodeType, str],
        parent_type: GraphQLObjectType,
        source_value: Any,
        field_details_list: Any,
        path: Path | None,
        response_name: str,
        position_context: Any,
    ) -> Any:
        """The linked row as one compiled read gives it, else graphql-core's own path."""
        node_type, key = link
        nodes = [details.node for details in field_details_list]
        pk, already, seen_by = payload_row(source_value, key, nodes[0])
        if pk is None:
            return _SLOW
        if already is not NOT_READ:
            return already  # read by the statement that wrote it
        context = self.context_value
        viewer = seen_by or context.viewer

        async def read() -> Any:
            found = await context.objects.read(node_type, nodes, pk, viewer)
            if found is not NOT_READ:
                return found
            field_path = Path(path, response_name, parent_type.name)
            result = self.execute_field(
                parent_type, source_value, field_details_list, field_path, position_context
            )
            return await result if self.is_awaitable(result) else result

        return read()

    def _fast(
        self,
        plan: Plan,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        response_name: str,
        field_details_list: Any,
        position_context: Any,
    ) -> Any:
        value = getattr(source_value, plan.attribute, None)
        if value is None:
            return _SLOW  # graphql-core reports the null (or the non-null violation)
        if plan.kind == "leaf":
            leaf: GraphQLLeafType = plan.type
            try:
                coerced = leaf.coerce_output_value(value)
            except Exception:  # noqa: BLE001 - graphql-core's path reports it properly
                return _SLOW
            return _SLOW if coerced is None or coerced is Undefined else coerced
        if not self.error_propagation:
            return _SLOW
        field_path = Path(path, response_name, parent_type.name)
        if plan.kind == "object":
            return self.collect_and_execute_subfields(
                plan.type, field_details_list, field_path, value, position_context
            )
        if not isinstance(value, list) or any(item is None for item in value):
            return _SLOW  # graphql-core reports a null item, or iterates something else
        return self._complete_objects(plan.type, field_details_list, field_path, value, position_context)

    def _complete_objects(
        self,
        item_type: GraphQLObjectType,
        field_details_list: Any,
        path: Path,
        items: list[Any],
        position_context: Any,
    ) -> Any:
        completed: list[Any] = []
        try:
            for index, item in enumerate(items):
                completed.append(
                    self.collect_and_execute_subfields(
                        item_type, field_details_list, path.add_key(index, None), item, position_context
                    )
                )
        except Exception:
            # An item failed at once: settle what the items before it started, then propagate.
            self.settle_in_background([item for item in completed if self.is_awaitable(item)])
            raise
        awaitable = [index for index, item in enumerate(completed) if self.is_awaitable(item)]
        if not awaitable:
            return completed

        async def get_items() -> list[Any]:
            if len(awaitable) == 1:
                completed[awaitable[0]] = await completed[awaitable[0]]
                return completed
            awaited = await gather_with_cancel(*(completed[index] for index in awaitable))
            for index, item in zip(awaitable, awaited, strict=True):
                completed[index] = item
            return completed

        return get_items()
