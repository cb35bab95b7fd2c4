"""What each GraphQL operation did, for the logs and metrics: name, type, duration, SQL statements,
error codes. The schema measures; the web layer (web/observability.py) decides where it goes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from graphql import GraphQLError
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import PreExecutionError

from schema.context import ConnectionContext, Context


@dataclass(frozen=True, slots=True)
class OperationRecord:
    name: str | None
    type: str | None  # "query", "mutation", "subscription"; None when the document did not parse
    duration_seconds: float
    sql_statements: int
    error_codes: tuple[str, ...]
    transport: str  # "http" or "websocket"
    # "resolvers", or "compiled": one SQL statement built the answer (schema/compiled_reads.py).
    executor: str = "resolvers"


# Raised by Strawberry for a request it will not run (the HTTP layer answers them with a 4xx).
_REQUEST_ERRORS = (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError)


class OperationObserver(Protocol):
    def operation_finished(self, record: OperationRecord) -> None: ...


class OperationTelemetry(SchemaExtension):
    """Measures the whole operation: it runs first, so it also sees what the other extensions refused
    and the errors as the client receives them (after masking)."""

    async def on_operation(self) -> AsyncIterator[None]:
        context = self.execution_context.context
        connection = context.connection if isinstance(context, Context) else context
        assert isinstance(connection, ConnectionContext)
        services = connection.services
        if services.observer is None:
            yield
            return
        statements = [0]
        if services.statements is not None:
            # Read by the engine's statement listener, in this task and the tasks it starts.
            services.statements.current.set(statements)
        transport = connection.transport
        compiled_before = connection.compiled_operations
        started = time.perf_counter()
        codes: tuple[str, ...] = ()
        try:
            yield
            codes = self._error_codes()
        except asyncio.CancelledError:
            # Over HTTP only the operation timeout cancels; a subscription ends so when its client leaves.
            codes = ("OPERATION_TIMEOUT",) if transport == "http" else ()
            raise
        except Exception as refusal:
            codes = (_refusal_code(refusal),)
            raise
        finally:
            if services.statements is not None:
                services.statements.current.set(None)
            services.observer.operation_finished(
                OperationRecord(
                    name=self.execution_context.operation_name,
                    type=self._operation_type(),
                    duration_seconds=time.perf_counter() - started,
                    sql_statements=statements[0],
                    error_codes=codes,
                    transport=transport,
                    executor="compiled" if connection.compiled_operations > compiled_before else "resolvers",
                )
            )

    def _operation_type(self) -> str | None:
        try:
            return self.execution_context.operation_type.value
        except (RuntimeError, ValueError, KeyError):  # no document, or no such operation in it
            return None

    def _error_codes(self) -> tuple[str, ...]:
        result = self.execution_context.result
        errors = getattr(result, "errors", None) or []
        ran = result is not None and not isinstance(result, PreExecutionError)
        parsed = self.execution_context.graphql_document is not None
        return tuple(sorted({error_code(error, parsed, ran) for error in errors}))


def _refusal_code(refusal: Exception) -> str:
    """The code of an exception that ended the operation before a result (a limit refuses with a
    GraphQLError raised from an extension; Strawberry answers it as the client's error)."""
    if isinstance(refusal, GraphQLError):
        return error_code(refusal, parsed=True, ran=False)
    return "BAD_REQUEST" if isinstance(refusal, _REQUEST_ERRORS) else "INTERNAL_SERVER_ERROR"


def error_code(error: GraphQLError, parsed: bool, ran: bool) -> str:
    """The error's `extensions.code`, or the Apollo-style code of the step that refused it."""
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    if not parsed:
        return "GRAPHQL_PARSE_FAILED"
    if not ran:
        return "GRAPHQL_VALIDATION_FAILED"
    # Errors without a path are about the request (variables that do not coerce, say).
    return "BAD_USER_INPUT" if error.path is None else "UNCLASSIFIED"
