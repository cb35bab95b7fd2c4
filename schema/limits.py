"""What a query may cost, decided before any SQL runs.

Depth, aliases and tokens are validation rules (Strawberry's extensions, set up in
schema/__init__.py). The cost budget needs the variables (`first: $n`), so it is checked when
execution starts: a query's cost is the number of objects it can return, each connection
counting its page size times the pages of the connections around it, as GitHub's node limit
does. `users(first: 50) { posts(first: 10) { ... } }` costs 50 + 50 x 10 = 550. The same cost
is what the rate limit charges (web/rate_limit.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)
from strawberry.extensions import SchemaExtension

from schema.context import Context
from schema.relay import DEFAULT_PAGE_SIZE

MUTATION_COST = 10  # a write costs more than the objects its payload returns
# Each of these hashes a password on purpose (tens of milliseconds of CPU): the rate limit lets a
# client make a few per second, which also keeps password guessing slow.
PASSWORD_MUTATION_COST = 500
PASSWORD_MUTATIONS = frozenset({"login", "register", "changePassword", "deleteMe"})


class RateLimiter(Protocol):
    async def charge(self, client: str, points: int) -> float | None:
        """Take `points` from the client's budget; None if granted, else seconds until it would be."""


def _page_size(field: FieldNode, variables: Mapping[str, Any]) -> int:
    size = None
    for argument in field.arguments or ():
        if argument.name.value in ("first", "last"):
            value = argument.value
            if isinstance(value, IntValueNode):
                size = int(value.value)
            elif isinstance(value, VariableNode):
                size = variables.get(value.name.value)
    return size if isinstance(size, int) and size >= 0 else DEFAULT_PAGE_SIZE


def _list_length(field: FieldNode, name: str, variables: Mapping[str, Any]) -> int:
    for argument in field.arguments or ():
        if argument.name.value == name:
            value = argument.value
            if isinstance(value, ListValueNode):
                return len(value.values)
            if isinstance(value, VariableNode) and isinstance(variables.get(value.name.value), list):
                return len(variables[value.name.value])
    return 1


class _Estimate:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
    ) -> None:
        self.schema, self.fragments, self.variables = schema, fragments, variables

    def nodes(self, parent: Any, selection_set: SelectionSetNode | None, multiplier: int) -> int:
        total = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                total += self._field(parent, selection, multiplier)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                total += self.nodes(target, selection.selection_set, multiplier)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)  # cycles were refused by validation
                if fragment is not None:
                    target = self.schema.get_type(fragment.type_condition.name.value)
                    total += self.nodes(target, fragment.selection_set, multiplier)
        return total

    def _field(self, parent: Any, field: FieldNode, multiplier: int) -> int:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        definition = parent.fields.get(field.name.value)
        if definition is None:
            return 0
        target = get_named_type(definition.type)
        if target.name.endswith("Connection"):
            inner = multiplier * _page_size(field, self.variables)
            return inner + self.nodes(target, field.selection_set, inner)
        of_type = definition.type.of_type if isinstance(definition.type, GraphQLNonNull) else definition.type
        if isinstance(of_type, GraphQLList) and field.name.value == "nodes":
            inner = multiplier * _list_length(field, "ids", self.variables)
            return inner + self.nodes(target, field.selection_set, inner)
        return self.nodes(target, field.selection_set, multiplier)


def estimated_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
) -> int:
    """The number of objects the operation can return, plus a price for each mutation field."""
    root = schema.get_root_type(operation.operation)
    nodes = _Estimate(schema, fragments, variables).nodes(root, operation.selection_set, 1)
    if operation.operation == OperationType.MUTATION:
        for selection in operation.selection_set.selections:
            name = selection.name.value if isinstance(selection, FieldNode) else ""
            nodes += PASSWORD_MUTATION_COST if name in PASSWORD_MUTATIONS else MUTATION_COST
    return max(nodes, 1)


class TooCostly(GraphQLError):
    def __init__(self, cost: int, limit: int) -> None:
        super().__init__(
            f"This query could return {cost:,} objects; the limit is {limit:,}. Ask for smaller pages "
            "(first/last) or fewer nested lists.",
            extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "limit": limit},
        )


class OperationTimedOut(GraphQLError):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"The operation took longer than {seconds:g} s and was stopped; ask for less.",
            extensions={"code": "OPERATION_TIMEOUT", "limitSeconds": seconds},
        )


class RateLimited(GraphQLError):
    def __init__(self, retry_after: float) -> None:
        seconds = max(1, round(retry_after + 0.5))
        super().__init__(
            f"Too many requests: this client's query budget is spent; retry in {seconds} s.",
            extensions={"code": "RATE_LIMITED", "retryAfter": seconds},
        )
        self.retry_after = seconds


class CostLimit(SchemaExtension):
    """Refuses an operation over the cost budget, and charges the rate limit, before it runs."""

    def __init__(self, max_nodes: int) -> None:
        self.max_nodes = max_nodes

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        document = context.graphql_document
        operation = operation_of(document, context.operation_name) if document else None
        if document is not None and operation is not None:
            fragments = {
                d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
            }
            cost = estimated_cost(context.schema._schema, operation, fragments, context.variables or {})
            if cost > self.max_nodes:
                raise TooCostly(cost, self.max_nodes)
            await self._charge(cost)
        yield

    async def _charge(self, cost: int) -> None:
        context = self.execution_context.context
        limiter = context.services.rate_limiter if isinstance(context, Context) else None
        if limiter is None:
            return
        retry_after = await limiter.charge(context.connection.client, cost)
        if retry_after is not None:
            raise RateLimited(retry_after)


def operation_of(document: Any, name: str | None) -> OperationDefinitionNode | None:
    """The operation a request names (or the document's only one); None if there is no such."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((op for op in operations if op.name and op.name.value == name), None)
