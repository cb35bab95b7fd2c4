"""OpenTelemetry traces, on with TRACING=otlp (exported over OTLP/HTTP to
OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318) or TRACING=console (stdout).

A trace per operation: the operation span (joining the caller's trace when the request carries a
`traceparent` header, its document with every literal value replaced) and every SQL statement
under it. The service name is
OTEL_SERVICE_NAME (default "quill"); the other OTEL_* variables work as the SDK documents.
The packages are the `tracing` extra: pip install 'quill[tracing]'.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from graphql import (
    BooleanValueNode,
    DocumentNode,
    EnumValueNode,
    FloatValueNode,
    IntValueNode,
    StringValueNode,
    Visitor,
    print_ast,
    visit,
)
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from db.read_connections import ReadConnections
from schema.admission.admission import Admitted
from settings import Settings


@dataclass(frozen=True, slots=True)
class Tracing:
    provider: TracerProvider

    @classmethod
    def start(cls, settings: Settings, engine: AsyncEngine, reads: ReadConnections | None) -> Tracing:
        provider = tracer_provider(settings)
        trace_statements(engine, reads, provider)
        return cls(provider)

    @contextmanager
    def operation(self, admitted: Admitted) -> Iterator[Callable[[tuple[str, ...]], None]]:
        """The operation's span, current while it runs (so the SQL spans nest under it), joined to
        the caller's trace, named and marked as the semantic conventions for GraphQL say. Yields
        what to call with the answer's error codes."""
        prepared = admitted.prepared
        parent = propagate.extract(admitted.trace_context or {})
        kind, name = prepared.kind.value, prepared.name
        span = self.provider.get_tracer("quill").start_span(
            " ".join(part for part in (kind, name) if part), context=parent, kind=SpanKind.SERVER
        )
        span.set_attribute("graphql.operation.type", kind)
        if name:
            span.set_attribute("graphql.operation.name", name)
        span.set_attribute("graphql.document", redacted(prepared.document))
        token = otel_context.attach(trace.set_span_in_context(span, parent))

        def finished(codes: tuple[str, ...]) -> None:
            if codes:
                span.set_attribute("graphql.error_codes", list(codes))
                span.set_status(Status(StatusCode.ERROR, ", ".join(codes)))

        try:
            yield finished
        finally:
            otel_context.detach(token)
            span.end()

    def shutdown(self) -> None:
        """Sends the spans still buffered."""
        self.provider.shutdown()


def tracer_provider(settings: Settings) -> TracerProvider:
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "quill"})
    provider = TracerProvider(resource=resource)
    if settings.tracing == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    return provider


class _Redact(Visitor):
    """Every literal value of a document replaced: a password typed inline never reaches a trace."""

    def enter_string_value(self, node: StringValueNode, *_: Any) -> StringValueNode:
        return StringValueNode(value="***")

    def enter_int_value(self, node: IntValueNode, *_: Any) -> IntValueNode:
        return IntValueNode(value="0")

    def enter_float_value(self, node: FloatValueNode, *_: Any) -> FloatValueNode:
        return FloatValueNode(value="0")

    def enter_boolean_value(self, node: BooleanValueNode, *_: Any) -> BooleanValueNode:
        return node

    def enter_enum_value(self, node: EnumValueNode, *_: Any) -> EnumValueNode:
        return node


def redacted(document: DocumentNode) -> str:
    """The document's text with its literal strings and numbers replaced (variables stay names)."""
    return print_ast(visit(document, _Redact()))


def _statement_span(tracer: trace.Tracer, system: str, statement: str) -> trace.Span:
    verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
    span = tracer.start_span(verb, kind=SpanKind.CLIENT)
    span.set_attribute("db.system.name", system)
    span.set_attribute("db.query.text", statement)
    return span


def trace_statements(engine: AsyncEngine, reads: ReadConnections | None, provider: TracerProvider) -> None:
    """A span per SQL statement, a child of whatever span is current when it is sent: those of
    the engine, and the compiled reads' (db/read_connections.py)."""
    tracer = provider.get_tracer("quill.db")
    system = engine.dialect.name

    @contextmanager
    def read_span(statement: str) -> Iterator[None]:
        span = _statement_span(tracer, system, statement)
        try:
            yield
        except Exception as error:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise
        finally:
            span.end()

    if reads is not None:
        reads.trace = read_span

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        context._quill_span = _statement_span(tracer, system, statement)

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        span = getattr(context, "_quill_span", None)
        if span is not None:
            span.end()

    def failed(exception_context: Any) -> None:
        span = getattr(exception_context.execution_context, "_quill_span", None)
        if span is not None:
            span.record_exception(exception_context.original_exception)
            span.set_status(Status(StatusCode.ERROR, type(exception_context.original_exception).__name__))
            span.end()

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    event.listen(engine.sync_engine, "handle_error", failed)
