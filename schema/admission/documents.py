"""Parsed and validated documents, by text, in a cache bounded by bytes.

A text is parsed with a token limit (the parser stops at the limit, so a huge document costs
what the limit costs), then validated with the specification's rules and ours
(schema/admission/rules.py). Both outcomes are cached: a document that does not validate is
refused from the cache the next time, with the same errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    NoSchemaIntrospectionCustomRule,
    parse,
    specified_rules,
    validate,
)
from strawberry.exceptions import StrawberryInputCoercionError

from schema.admission.rules import OneOfInputs, alias_limit, depth_limit
from schema.lru import BytesLru

# A parsed document holds about this many bytes per byte of its text (graphql-core's AST nodes,
# measured on the benchmark's queries and GraphiQL's introspection query).
AST_BYTES_PER_TEXT_BYTE = 40


@dataclass(frozen=True, slots=True)
class Checked:
    """A text's document (None when it did not parse) and the errors that refuse it."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]


class Documents:
    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        max_tokens: int,
        max_depth: int,
        max_aliases: int,
        introspection: bool,
        max_cached_bytes: int,
    ) -> None:
        self.schema = schema
        self.max_tokens = max_tokens
        rules: list[type[ASTValidationRule]] = [
            *specified_rules,
            depth_limit(max_depth),
            alias_limit(max_aliases),
            OneOfInputs,
        ]
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self.rules: Sequence[type[ASTValidationRule]] = rules
        self.cache: BytesLru[Checked] = BytesLru(max_cached_bytes)

    def check(self, text: str) -> Checked:
        checked = self.cache.get(text)
        if checked is None:
            checked = self._check(text)
            self.cache.put(text, checked, len(text) * AST_BYTES_PER_TEXT_BYTE + 200)
        return checked

    def _check(self, text: str) -> Checked:
        try:
            document = parse(text, max_tokens=self.max_tokens)
        except GraphQLError as error:
            return Checked(None, (_coded(error, "GRAPHQL_PARSE_FAILED"),))
        errors = validate(self.schema, document, self.rules)
        return Checked(document, tuple(_coded(error, _validation_code(error)) for error in errors))


def _validation_code(error: GraphQLError) -> str:
    """A literal value a scalar refused to parse (a date out of range, say) is bad input, like a
    variable that does not coerce; the rest of validation is about the document."""
    refused_by_scalar = isinstance(error, StrawberryInputCoercionError) or error.original_error is not None
    return "BAD_USER_INPUT" if refused_by_scalar else "GRAPHQL_VALIDATION_FAILED"


def _coded(error: GraphQLError, code: str) -> GraphQLError:
    """The error with `extensions.code` (Apollo's codes for these steps) unless it has one."""
    if (error.extensions or {}).get("code"):
        return error
    return GraphQLError(error.message, error.nodes, error.source, error.positions, extensions={"code": code})
