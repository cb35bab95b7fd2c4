"""Incremental delivery (`@defer`, `@stream`): the pieces of an operation whose answer comes in parts.

graphql-core 3.3 executes the parts (its IncrementalExecutor) and formats them as graphql-js
17.0.0-alpha.9 does: an initial result with `pending` (an id and a path per deferred fragment or
stream) and `hasNext`, then subsequent results with `incremental` (`data` or `items` for an id),
`completed` and `hasNext`. Apollo Client 4 reads that format with its `GraphQL17Alpha9Handler`.

A client that cannot take parts gets the whole answer at once (schema/admission/increments.py).
Errors in every part are masked like a whole answer's (schema/execution/masking.py).
"""

from __future__ import annotations

from typing import Any

import orjson
from graphql import GraphQLError
from graphql.execution.types import InitialIncrementalExecutionResult, SubsequentIncrementalExecutionResult

from schema.execution.masking import error_code, masked


class Parts:
    """The ids still pending, and the error codes seen, over the parts of one answer."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.codes: set[str] = set()

    def initial(self, result: InitialIncrementalExecutionResult) -> bytes:
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = self._formatted(result.errors)
        self._track(result.pending, ())
        body["pending"] = [pending.formatted for pending in result.pending]
        body["hasNext"] = result.has_next
        return orjson.dumps(body)

    def subsequent(self, result: SubsequentIncrementalExecutionResult) -> bytes:
        body: dict[str, Any] = {}
        if result.pending:
            body["pending"] = [pending.formatted for pending in result.pending]
        if result.incremental:
            body["incremental"] = [
                self._with_errors(item.formatted, item.errors) for item in result.incremental
            ]
        if result.completed:
            body["completed"] = [self._with_errors(done.formatted, done.errors) for done in result.completed]
        self._track(result.pending or (), result.completed or ())
        body["hasNext"] = result.has_next
        return orjson.dumps(body)

    def stopped(self, error: dict[str, Any]) -> bytes:
        """The last part when the operation ran out of time: every pending part ends with the error."""
        self.codes.add(error["extensions"]["code"])
        completed = [{"id": pending, "errors": [error]} for pending in self.pending]
        self.pending = []
        return orjson.dumps({"completed": completed, "hasNext": False})

    def _track(self, pending: Any, completed: Any) -> None:
        self.pending += [result.id for result in pending]
        done = {result.id for result in completed}
        self.pending = [pending_id for pending_id in self.pending if pending_id not in done]

    def _with_errors(self, formatted: Any, errors: list[GraphQLError] | None) -> dict[str, Any]:
        part = dict(formatted)
        if errors:
            part["errors"] = self._formatted(errors)
        return part

    def _formatted(self, errors: list[GraphQLError]) -> list[Any]:
        shown = masked(errors)
        self.codes |= {error_code(error, ran=True) for error in shown}
        return [error.formatted for error in shown]
