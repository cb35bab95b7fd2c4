"""Which documents ask for their answer in parts (`@defer`, `@stream`), and their whole form.

A client that cannot take parts (plain `application/json` over HTTP) gets the whole answer at
once: the operation runs with the two directives taken out, which the incremental delivery
proposal allows (the directives are hints); the compiled path then answers it like any query.
How the parts are run and formatted is schema/execution/incremental.py.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    DirectiveNode,
    DocumentNode,
    FragmentDefinitionNode,
    OperationDefinitionNode,
    Visitor,
    visit,
)
from graphql.language.visitor import REMOVE

INCREMENTAL_DIRECTIVES = frozenset({"defer", "stream"})


def uses_increments(query: str, document: DocumentNode) -> bool:
    """Whether the document asks for `@defer` or `@stream` anywhere (the text is looked at first:
    nearly every document has neither)."""
    if "@defer" not in query and "@stream" not in query:
        return False
    found = False

    class Finder(Visitor):
        def enter_directive(self, node: DirectiveNode, *_: Any) -> None:
            nonlocal found
            found = found or node.name.value in INCREMENTAL_DIRECTIVES

    visit(document, Finder())
    return found


def without_increments(
    document: DocumentNode, operation: OperationDefinitionNode
) -> tuple[OperationDefinitionNode, dict[str, FragmentDefinitionNode]]:
    """The operation and its fragments with `@defer` and `@stream` taken out."""

    class Strip(Visitor):
        def enter_directive(self, node: DirectiveNode, *_: Any) -> Any:
            return REMOVE if node.name.value in INCREMENTAL_DIRECTIVES else None

    index = document.definitions.index(operation)
    stripped: DocumentNode = visit(document, Strip())
    plain = stripped.definitions[index]
    assert isinstance(plain, OperationDefinitionNode)
    fragments = {d.name.value: d for d in stripped.definitions if isinstance(d, FragmentDefinitionNode)}
    return plain, fragments
