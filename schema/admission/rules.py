"""Validation rules beyond the specification's: how deep an operation nests and how many
aliases a document holds. Both follow fragments (a fragment counts where it is spread) and
remember what each fragment adds, so a document cannot make them do exponential work."""

from __future__ import annotations

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
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
