"""Incremental delivery (`@defer`, `@stream`): the pieces of an operation whose answer comes in parts.

graphql-core 3.3 executes the parts (its IncrementalExecutor) and formats them as graphql-js
17.0.0-alpha.9 does: an initial result with `pending` (an id and a path per deferred fragment or
stream) and `hasNext`, then subsequent results with `incremental` (`data` or `items` for an id),
`completed` and `hasNext`. Apollo Client 4 reads that format with its `GraphQL17Alpha9Handler`.

A client that cannot take parts gets the whole answer at once (schema/admission/increments.py).
Errors in every part are masked like a whole answer's (schema/execution/masking.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from graphql import GraphQLError
from graphql.execution.types import InitialIncrementalExecutionResult, SubsequentIncrementalExecutionResult

from schema.compiled.parts import Deferred, Page, found_at, objects_at, value_at
from schema.compiled.parts import Parts as CompiledParts
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


# The compiled path's parts (schema/compiled/parts.py): the same format, built here.


class LaterParts(Parts):
    """What the compiled path's first part promised (`pending`), kept until it is delivered."""

    def __init__(self) -> None:
        super().__init__()
        self.streamed: list[tuple[str, list[Any]]] = []  # (id, the items after the first ones)
        # By the read's place in Parts.reads: [(id, path)] of the objects or lists it is promised for.
        self.reads: dict[int, list[tuple[str, list[Any]]]] = {}
        self._issued = 0

    def promise(self, path: list[Any], label: str | None) -> tuple[str, dict[str, Any]]:
        pending_id = str(self._issued)
        self._issued += 1
        self.pending.append(pending_id)
        formatted: dict[str, Any] = {"id": pending_id, "path": path}
        if label:
            formatted["label"] = label
        return pending_id, formatted

    def streamed_part(self, has_next: bool) -> bytes:
        incremental = [{"id": pending_id, "items": items} for pending_id, items in self.streamed if items]
        completed = [{"id": pending_id} for pending_id, _ in self.streamed]
        self._done([pending_id for pending_id, _ in self.streamed])
        return orjson.dumps({"incremental": incremental, "completed": completed, "hasNext": has_next})

    def read_part(self, index: int, read: Page | Deferred, answer: dict[str, Any] | None) -> bytes:
        """A later part from its statement's answer: what `read` picks at each path it was
        promised for; a path the statement no longer finds (changed in between) ends with an error."""
        instances = self.reads.pop(index)
        incremental: list[dict[str, Any]] = []
        completed: list[dict[str, Any]] = []
        data = answer.get("data") if answer and not answer.get("errors") else None
        for pending_id, at in instances:
            picked = read.pick(value_at(data, at)) if data is not None else None
            if picked is not None:
                incremental.append({"id": pending_id, **picked})
                completed.append({"id": pending_id})
            else:
                error = {
                    "message": "This part could not be read; ask again.",
                    "extensions": {"code": "PART_UNAVAILABLE"},
                }
                self.codes.add("PART_UNAVAILABLE")
                completed.append({"id": pending_id, "errors": [error]})
        self._done([pending_id for pending_id, _ in instances])
        body: dict[str, Any] = {"completed": completed, "hasNext": bool(self.reads)}
        if incremental:
            body = {"incremental": incremental, **body}
        return orjson.dumps(body)

    def stopped(self, error: dict[str, Any]) -> bytes:
        self.reads = {}
        return super().stopped(error)

    def _done(self, ids: list[str]) -> None:
        finished = set(ids)
        self.pending = [pending_id for pending_id in self.pending if pending_id not in finished]


def compiled_parts(parts: CompiledParts, data: dict[str, Any]) -> tuple[bytes, LaterParts]:
    """The first part from the initial statement's data (a streamed connection's first edges
    put in place, other streamed lists cut to their initial count), with what the later parts
    will bring."""
    later = LaterParts()
    pending: list[dict[str, Any]] = []
    for streamed in parts.streamed:
        for at, items in found_at(data, streamed.path):
            if not isinstance(items, list) or len(items) <= streamed.initial_count:
                continue
            pending_id, formatted = later.promise(at, streamed.label)
            later.streamed.append((pending_id, items[streamed.initial_count :]))
            del items[streamed.initial_count :]
            pending.append(formatted)
    for index, read in enumerate(parts.reads):  # pages first: a deferred fragment may be in one
        places = _first_edges(data, read) if isinstance(read, Page) else objects_at(data, read.path)
        for at, _ in places:
            pending_id, formatted = later.promise(at, read.label)
            later.reads.setdefault(index, []).append((pending_id, at))
            pending.append(formatted)
    return orjson.dumps({"data": data, "pending": pending, "hasNext": bool(pending)}), later


def _first_edges(data: dict[str, Any], page: Page) -> Iterator[tuple[list[Any], None]]:
    """Puts the copy's first edges into each connection of the page's path (where the query put
    the connection, its keys in the query's order) and gives the edge lists with more to come."""
    *way, connection_key, edges_key = page.path
    for at, parent in list(objects_at(data, tuple(way))):
        copy = parent.get(page.alias)
        if not isinstance(copy, dict):
            continue
        connection = {**(parent.get(connection_key) or {}), edges_key: copy[edges_key]}
        in_order = {key: connection[key] for key in page.keys if key in connection}
        rebuilt = {
            (connection_key if key == page.alias else key): (in_order if key == page.alias else value)
            for key, value in parent.items()
        }
        parent.clear()
        parent.update(rebuilt)
        if copy["pageInfo"]["hasNextPage"]:
            yield [*at, connection_key, edges_key], None
