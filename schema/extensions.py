"""Schema extensions: the operation's scope (session and loaders), the document cache, error masking."""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphql import DocumentNode, GraphQLError
from strawberry.extensions import SchemaExtension

from db.errors import is_database_unavailable, is_statement_timeout
from db.session import RequestDb
from schema.context import ConnectionContext, Context
from schema.loaders import Loaders

log = logging.getLogger("quill.errors")


class OperationScope(SchemaExtension):
    """Gives each operation its own session and loaders, and always closes the session.

    Strawberry reads `execution_context.context` after `on_operation` has started, so replacing
    it here scopes the session to this operation: one per HTTP request, one per subscription
    operation even when several share a WebSocket (tests/test_subscriptions.py checks this).
    """

    async def on_operation(self) -> AsyncIterator[None]:
        connection = self.execution_context.context
        assert isinstance(connection, ConnectionContext)
        db = RequestDb(connection.services.sessionmaker)
        self.execution_context.context = Context(
            db=db, loaders=Loaders(db, connection.viewer), viewer=connection.viewer, connection=connection
        )
        try:
            yield
        finally:
            await db.close()
            # The next operation on the same WebSocket starts again from the connection's context.
            self.execution_context.context = connection


class DocumentCache:
    """Parsed documents and their validation errors by query text, least recently used dropped."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[DocumentNode, list[GraphQLError] | None]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, query: str) -> tuple[DocumentNode, list[GraphQLError] | None] | None:
        entry = self._entries.get(query)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
            self._entries.move_to_end(query)
        return entry

    def peek(self, query: str) -> tuple[DocumentNode, list[GraphQLError] | None] | None:
        """Like get, without counting (validation asks again after parsing did)."""
        return self._entries.get(query)

    def put(self, query: str, document: DocumentNode, errors: list[GraphQLError] | None) -> None:
        self._entries[query] = (document, errors)
        self._entries.move_to_end(query)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class CachedDocuments(SchemaExtension):
    """A repeated query text is parsed and validated once (see DocumentCache)."""

    def __init__(self, cache: DocumentCache) -> None:
        self.cache = cache

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query
        if query is not None and (entry := self.cache.get(query)) is not None:
            context.graphql_document = entry[0]
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        query, document = context.query, context.graphql_document
        entry = self.cache.peek(query) if query is not None else None
        if entry is not None and entry[1] is not None:
            context.pre_execution_errors = entry[1]
        yield
        if query is not None and document is not None and (entry is None or entry[1] is None):
            self.cache.put(query, document, context.pre_execution_errors or [])


def _is_unexpected(error: GraphQLError) -> bool:
    # Errors raised on purpose are GraphQLErrors; anything else raised by a resolver is a bug.
    # Errors without a path (variable coercion, validation) are about the request itself.
    original = error.original_error
    return error.path is not None and original is not None and not isinstance(original, GraphQLError)


class MaskUnexpectedErrors(SchemaExtension):
    """A bug reaches the client as "Internal server error" plus an id; the log has the id and stack."""

    def on_operation(self) -> Iterator[None]:
        yield
        self._mask(self.execution_context.result)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        self._mask(result)
        yield

    def _mask(self, result: Any) -> None:
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [self._masked(error) if _is_unexpected(error) else error for error in errors]

    @staticmethod
    def _masked(error: GraphQLError) -> GraphQLError:
        error_id = uuid.uuid4().hex[:16]
        original = error.original_error
        assert original is not None
        if is_database_unavailable(original):
            code, message = "DATABASE_UNAVAILABLE", "The database is unavailable; try again shortly."
            log.warning("database unavailable (%s) at %s: %s", error_id, error.path, original)
        elif is_statement_timeout(original):
            code, message = (
                "OPERATION_TIMEOUT",
                "A database statement took too long and was stopped; ask for less.",
            )
            log.warning("statement timeout (%s) at %s: %s", error_id, error.path, original)
        else:
            code, message = "INTERNAL_SERVER_ERROR", "Internal server error"
            log.error("internal error %s at %s: %s", error_id, error.path, error.message, exc_info=original)
        return GraphQLError(
            message, nodes=error.nodes, path=error.path, extensions={"code": code, "errorId": error_id}
        )
