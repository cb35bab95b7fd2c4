"""What a query may cost, decided before any SQL runs, from its coerced variables.

A query's cost is the number of objects it can return: each connection counts its page size
times the pages of the connections around it, as GitHub's node limit does, so
`users(first: 50) { posts(first: 10) { ... } }` costs 50 + 50 x 10 = 550. Sizes come from the
arguments as graphql-core coerces them (a variable's default filled in, `100.0` read as 100);
a size that cannot be read is priced as the largest page. `nodes(ids:)` counts its IDs, a
search adds SEARCH_COST to its list, and an `aggregate` AGGREGATE_COST to its connection (both
read every row of the list). Introspection is priced too: `__schema` answers hundreds of
objects. A mutation adds its field's price (10, or what the field declares: the ones that hash
a password cost 500, which also keeps password guessing slow under the rate limit). The same
cost is what the rate limit charges (web/rate_limit.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution.values import VariableValues, get_argument_values
from strawberry.types.field import StrawberryField

from schema.declare.aggregates import DEFAULT_GROUPS, MAX_GROUPS
from schema.relay import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

# List arguments whose length is the number of objects a field returns (nodes, _entities).
_LISTED = frozenset({"ids", "representations"})

MUTATION_COST = 10  # a write costs more than the objects its payload returns
COST = "quill:cost"  # a field's own price, in its Strawberry metadata (`metadata=price(500)`)
SCHEMA_INTROSPECTION_COST = 2000  # about the objects `__schema { types { fields ... } }` returns
TYPE_INTROSPECTION_COST = 100
# A search ranks every row that matches, however small the page: priced as a full page more, for
# each list searched (a search in each of 50 users' posts costs 50 times that).
SEARCH_COST = 100
# A connection's `aggregate` reads every row of its list, whatever the page: priced like a search.
AGGREGATE_COST = 100


def price(points: int) -> dict[str, int]:
    """Metadata for a mutation that costs more than MUTATION_COST (`strawberry.mutation(metadata=...)`)."""
    return {COST: points}


class TooCostly(GraphQLError):
    def __init__(self, cost: int, limit: int) -> None:
        super().__init__(
            f"This query could return {cost:,} objects; the limit is {limit:,}. Ask for smaller pages "
            "(first/last) or fewer nested lists.",
            extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "limit": limit},
        )


class _Estimate:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: VariableValues,
    ) -> None:
        self.schema, self.fragments, self.variables = schema, fragments, variables
        # The cost of a selection set is linear in its multiplier: each is priced once per type.
        self._memo: dict[tuple[int, str], int] = {}

    def nodes(self, parent: Any, selection_set: SelectionSetNode | None, multiplier: int) -> int:
        if selection_set is None or multiplier == 0:
            return 0
        key = (id(selection_set), getattr(parent, "name", ""))
        unit = self._memo.get(key)
        if unit is None:
            unit = self._memo[key] = self._unit(parent, selection_set)
        return unit * multiplier

    def _unit(self, parent: Any, selection_set: SelectionSetNode) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field(parent, selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                total += self.nodes(target, selection.selection_set, 1)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)  # cycles were refused by validation
                if fragment is not None:
                    target = self.schema.get_type(fragment.type_condition.name.value)
                    total += self.nodes(target, fragment.selection_set, 1)
        return total

    def _field(self, parent: Any, field: FieldNode) -> int:
        name = field.name.value
        if name == "__schema":
            return SCHEMA_INTROSPECTION_COST
        if name == "__type":
            return TYPE_INTROSPECTION_COST
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        definition = parent.fields.get(name)
        if definition is None or (name == "aggregate" and "edges" in parent.fields):
            return 0  # a connection's aggregate is priced with its connection (_aggregates)
        target = get_named_type(definition.type)
        if target.name.endswith("Connection"):
            inner = self._page_size(definition, field)
            searched = SEARCH_COST if self._searches(definition, field) else 0
            aggregated = self._aggregates(target, field.selection_set)
            return searched + aggregated + inner + self.nodes(target, field.selection_set, inner)
        of_type = definition.type.of_type if isinstance(definition.type, GraphQLNonNull) else definition.type
        if isinstance(of_type, GraphQLList) and (listed := _LISTED.intersection(definition.args)):
            inner = self._length(definition, field, min(listed))
            return inner + self.nodes(target, field.selection_set, inner)
        return self.nodes(target, field.selection_set, 1)

    def _aggregates(self, connection: Any, selection_set: SelectionSetNode | None) -> int:
        """The price of a connection's `aggregate` fields (fragments included): once per
        connection, not once per item of its page. Each reads its whole list, and its groupBy
        returns up to `first` groups, priced like a page of them."""
        if selection_set is None or "aggregate" not in getattr(connection, "fields", {}):
            return 0
        found = 0
        for field in self._named(selection_set, "aggregate"):
            aggregate = get_named_type(connection.fields["aggregate"].type)
            found += AGGREGATE_COST + self._groups(aggregate, field.selection_set)
        return found

    def _groups(self, aggregate: Any, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None or "groupBy" not in getattr(aggregate, "fields", {}):
            return 0
        definition = aggregate.fields["groupBy"]
        found = 0
        for field in self._named(selection_set, "groupBy"):
            size = self._group_count(definition, field)
            found += size + self.nodes(get_named_type(definition.type), field.selection_set, size)
        return found

    def _named(self, selection_set: SelectionSetNode, name: str) -> Iterator[FieldNode]:
        """The fields called `name` in a selection set, its fragments' included."""
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value == name:
                    yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from self._named(selection.selection_set, name)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    yield from self._named(fragment.selection_set, name)

    def _group_count(self, definition: GraphQLField, field: FieldNode) -> int:
        arguments = self._arguments(definition, field)
        size = arguments.get("first") if arguments is not None else MAX_GROUPS
        if size is None:
            return DEFAULT_GROUPS
        return size if isinstance(size, int) and 0 <= size <= MAX_GROUPS else MAX_GROUPS

    def _arguments(self, definition: GraphQLField, field: FieldNode) -> dict[str, Any] | None:
        try:
            return get_argument_values(definition, field, self.variables)
        except GraphQLError:  # the execution reports it; priced at the worst case meanwhile
            return None

    def _searches(self, definition: GraphQLField, field: FieldNode) -> bool:
        if "search" not in definition.args:
            return False
        arguments = self._arguments(definition, field)
        return arguments is None or arguments.get("search") is not None

    def _page_size(self, definition: GraphQLField, field: FieldNode) -> int:
        arguments = self._arguments(definition, field)
        if arguments is None:
            return MAX_PAGE_SIZE
        size = arguments.get("first") if arguments.get("first") is not None else arguments.get("last")
        if size is None:
            return DEFAULT_PAGE_SIZE
        return size if isinstance(size, int) and size >= 0 else MAX_PAGE_SIZE

    def _length(self, definition: GraphQLField, field: FieldNode, name: str) -> int:
        arguments = self._arguments(definition, field)
        values = arguments.get(name) if arguments is not None else None
        return len(values) if isinstance(values, list) else MAX_PAGE_SIZE


def estimated_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: VariableValues,
) -> int:
    """The number of objects the operation can return, plus the price of each mutation field."""
    root = schema.get_root_type(operation.operation)
    nodes = _Estimate(schema, fragments, variables).nodes(root, operation.selection_set, 1)
    if operation.operation == OperationType.MUTATION and root is not None:
        for selection in operation.selection_set.selections:
            if isinstance(selection, FieldNode) and (definition := root.fields.get(selection.name.value)):
                strawberry_field = definition.extensions.get("strawberry-definition")
                own = (
                    strawberry_field.metadata.get(COST)
                    if isinstance(strawberry_field, StrawberryField)
                    else None
                )
                nodes += own if isinstance(own, int) else MUTATION_COST
    return max(nodes, 1)
