"""Validation rules beyond graphql-core's: how deep an operation nests and how many aliases a
document holds (both follow fragments, where they are spread, and remember what each fragment
adds, so a document cannot make them do exponential work); and the spec's @oneOf literal checks,
which graphql-core 3.3 leaves to execution (Strawberry has a rule of its own, but it fails on a
variable the operation does not declare)."""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInputObjectType,
    InlineFragmentNode,
    NonNullTypeNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
)


def _fragments(context: ValidationContext) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in context.document.definitions if isinstance(d, FragmentDefinitionNode)}


def depth_limit(max_depth: int) -> type[ValidationRule]:
    """Refuses an operation whose fields nest deeper than `max_depth`. Introspection fields
    (`__schema`, `__type`) do not count: GraphiQL's introspection query nests deeper than any
    data query needs to, and is priced on its own (schema/admission/cost.py)."""

    class DepthLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            fragments = _fragments(context)
            memo: dict[str, int] = {}

            def depth(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> int:
                deepest = 0
                for selection in selection_set.selections if selection_set else ():
                    if isinstance(selection, FieldNode):
                        if selection.name.value.startswith("__"):
                            continue
                        below = depth(selection.selection_set, seen) if selection.selection_set else 0
                        deepest = max(deepest, 1 + below)
                    elif isinstance(selection, InlineFragmentNode):
                        deepest = max(deepest, depth(selection.selection_set, seen))
                    elif isinstance(selection, FragmentSpreadNode):
                        name = selection.name.value
                        if name in seen or name not in fragments:
                            continue  # a cycle or an unknown fragment: other rules report it
                        if name not in memo:
                            memo[name] = depth(fragments[name].selection_set, seen | {name})
                        deepest = max(deepest, memo[name])
                return deepest

            for definition in context.document.definitions:
                if isinstance(definition, OperationDefinitionNode):
                    found = depth(definition.selection_set, frozenset())
                    if found > max_depth:
                        name = definition.name.value if definition.name else "anonymous"
                        context.report_error(
                            GraphQLError(
                                f"'{name}' exceeds maximum operation depth of {max_depth}",
                                definition,
                                extensions={"code": "QUERY_TOO_DEEP", "limit": max_depth},
                            )
                        )

    return DepthLimit


def alias_limit(max_aliases: int) -> type[ValidationRule]:
    """Refuses a document with more than `max_aliases` aliased fields (counted where spread)."""

    class AliasLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            fragments = _fragments(context)
            memo: dict[str, int] = {}

            def aliases(selection_set: SelectionSetNode | None, seen: frozenset[str]) -> int:
                total = 0
                for selection in selection_set.selections if selection_set else ():
                    if isinstance(selection, FieldNode):
                        total += (selection.alias is not None) + aliases(selection.selection_set, seen)
                    elif isinstance(selection, InlineFragmentNode):
                        total += aliases(selection.selection_set, seen)
                    elif isinstance(selection, FragmentSpreadNode):
                        name = selection.name.value
                        if name in seen or name not in fragments:
                            continue
                        if name not in memo:
                            memo[name] = aliases(fragments[name].selection_set, seen | {name})
                        total += memo[name]
                return total

            count = sum(
                aliases(d.selection_set, frozenset())
                for d in context.document.definitions
                if isinstance(d, OperationDefinitionNode)
            )
            if count > max_aliases:
                context.report_error(
                    GraphQLError(
                        f"{count} aliases found. Allowed: {max_aliases}",
                        extensions={"code": "TOO_MANY_ALIASES", "limit": max_aliases},
                    )
                )

    return AliasLimit


class OneOfInputs(ValidationRule):
    """A @oneOf input written in the document sets exactly one field, to a value that is not
    null: a literal, or a variable declared non-null (the spec's ValuesOfCorrectType)."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self.operations = [d for d in context.document.definitions if isinstance(d, OperationDefinitionNode)]
        self.nullable_variables: set[str] = set()

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        self.nullable_variables = _nullable_variables([node])

    def enter_fragment_definition(self, node: FragmentDefinitionNode, *_: Any) -> None:
        # A fragment may be spread in any operation: a variable nullable in one of them is refused.
        self.nullable_variables = _nullable_variables(self.operations)

    def enter_object_value(self, node: ObjectValueNode, *_: Any) -> None:
        input_type = get_named_type(self.context.get_input_type())
        if not isinstance(input_type, GraphQLInputObjectType) or not _is_one_of(input_type):
            return
        if len(node.fields) != 1:
            self._report(f"OneOf Input Object '{input_type.name}' must specify exactly one key.", node)
            return
        [field] = node.fields
        if isinstance(field.value, NullValueNode):
            self._report(f"Field '{input_type.name}.{field.name.value}' must be non-null.", field)
        elif isinstance(field.value, VariableNode) and field.value.name.value in self.nullable_variables:
            self._report(
                f"Variable '${field.value.name.value}' must be non-nullable to be used for "
                f"OneOf Input Object '{input_type.name}'.",
                field,
            )

    def _report(self, message: str, node: Any) -> None:
        self.context.report_error(GraphQLError(message, node))


def _is_one_of(input_type: GraphQLInputObjectType) -> bool:
    # Strawberry marks its @oneOf inputs on their definition, not graphql-core's flag.
    definition = input_type.extensions.get("strawberry-definition")
    return input_type.is_one_of or bool(getattr(definition, "is_one_of", False))


def _nullable_variables(operations: list[OperationDefinitionNode]) -> set[str]:
    return {
        definition.variable.name.value
        for operation in operations
        for definition in operation.variable_definitions or ()
        if not isinstance(definition.type, NonNullTypeNode)
    }
