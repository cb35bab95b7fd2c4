"""Running admitted operations (schema/admission/): a compiled statement where one applies, the
resolvers otherwise, each under its deadline, with its own session, errors masked, measured.

Every transport hands its admitted operations here and writes out the `Answer`; nothing here
knows how the answer travels. The document was parsed, validated and its variables coerced
by the admission step, so graphql-core's executor is built directly from those (it would
otherwise do all three again).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from graphql import ExecutionResult, GraphQLError, GraphQLSchema, OperationType
from graphql.execution.collect_fields import FragmentDetails
from graphql.execution.execute import create_source_event_stream, map_source_to_response_event
from graphql.execution.executor import default_field_resolver, default_type_resolver

from db.engine import DEADLINE
from db.session import RequestDb
from schema.admission.admission import Admitted
from schema.compiled.plans import CompiledReads
from schema.execution.context import Context, Services
from schema.execution.executor import FastPathExecutor
from schema.execution.loaders import Loaders
from schema.execution.masking import error_code, internal_error, masked
from schema.execution.object_reads import ObjectReads
from schema.telemetry import OperationRecord

log = logging.getLogger("quill.execution")


class OperationTracer(Protocol):
    def operation(self, admitted: Admitted) -> AbstractContextManager[Callable[[tuple[str, ...]], None]]:
        """A span around the operation (web/tracing.py); call what it yields with the error codes."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One operation's response as JSON bytes (`{"data": ...}` with `errors` if any)."""

    body: bytes
    codes: tuple[str, ...] = ()
    executor: str = "resolvers"
    # A subscription's stream failed with this answer's errors, which end it.
    ends: bool = False

    @property
    def has_errors(self) -> bool:
        return bool(self.codes)


def timeout_answer(seconds: float) -> Answer:
    error = {
        "message": f"The operation took longer than {seconds:g} s and was stopped; ask for less.",
        "extensions": {"code": "OPERATION_TIMEOUT", "limitSeconds": seconds},
    }
    return Answer(orjson.dumps({"data": None, "errors": [error]}), ("OPERATION_TIMEOUT",))


class Operations:
    def __init__(
        self,
        strawberry_schema: Any,
        services: Services,
        compiled: CompiledReads | None,
        *,
        timeout_seconds: float,
        tracer: OperationTracer | None = None,
    ) -> None:
        self.schema: GraphQLSchema = strawberry_schema._schema
        self.services = services
        self.compiled = compiled
        self.timeout_seconds = timeout_seconds
        self.tracer = tracer

    # Queries and mutations.

    async def run(self, admitted: Admitted) -> Answer:
        if self.tracer is None:
            return await self._run(admitted)
        with self.tracer.operation(admitted) as finished:
            answer = await self._run(admitted)
            finished(answer.codes)
        return answer

    async def _run(self, admitted: Admitted) -> Answer:
        prepared = admitted.prepared
        statements = self._count_statements()
        started = time.perf_counter()
        context = self._context(admitted)
        deadline_token = DEADLINE.set(admitted.deadline)
        answer = Answer(b"")
        try:
            async with asyncio.timeout(max(admitted.deadline - time.monotonic(), 0)):
                answer = await self._answer(admitted, context)
        except TimeoutError:
            answer = timeout_answer(self.timeout_seconds)
        except Exception as bug:  # noqa: BLE001 - whatever broke outside a field is masked too
            answer = _errors_answer([internal_error(bug, prepared.name)])
        finally:
            DEADLINE.reset(deadline_token)
            await context.db.close()
            self._record(admitted, answer, started, statements)
        return answer

    async def _answer(self, admitted: Admitted, context: Context) -> Answer:
        prepared, viewer = admitted.prepared, admitted.authentication.viewer
        compiled = self.compiled
        if compiled is not None and prepared.kind is OperationType.QUERY:
            plan = compiled.plan(prepared, viewer)
            if plan is not None:
                body = await compiled.read(prepared, plan, viewer, admitted.deadline)
                if body is not None:
                    return Answer(body, executor="compiled")
        if compiled is not None and prepared.kind is OperationType.MUTATION:
            context.objects = ObjectReads(compiled, prepared, admitted.deadline)
        executor = self._executor(admitted, context)
        result: Any = executor.execute_operation()
        if executor.is_awaitable(result):
            result = await result
        return _result_answer(result)

    # Subscriptions (the resolvers' way: schema/realtime/ multiplexes compiled ones).

    async def subscribe(self, admitted: Admitted) -> Answer | AsyncIterator[Answer]:
        """The subscription's first refusal as an answer, or its stream of answers. The stream's
        session gives its connection back before each answer is handed out, and is closed when
        the stream ends, however it ends."""
        context = self._context(admitted)
        executor = self._executor(admitted, context)
        try:
            source: Any = create_source_event_stream(executor)
            if executor.is_awaitable(source):
                source = await source
        except Exception as bug:  # noqa: BLE001
            await context.db.close()
            return _errors_answer([internal_error(bug, admitted.prepared.name)])
        if isinstance(source, ExecutionResult):
            await context.db.close()
            return _result_answer(source)
        return self._stream(admitted, context, map_source_to_response_event(executor, source))

    async def _stream(self, admitted: Admitted, context: Context, results: Any) -> AsyncIterator[Answer]:
        """The subscription's answers; an error raised by its source (a refusal when it starts, a
        subscriber too slow) is its last answer, which ends it."""
        try:
            async for result in results:
                await context.db.release()  # nothing is held while the client reads
                yield _result_answer(result)
        except GraphQLError as error:
            await context.db.release()
            yield dataclasses.replace(_errors_answer([error]), ends=True)
        except Exception as bug:  # noqa: BLE001
            await context.db.release()
            yield dataclasses.replace(
                _errors_answer([internal_error(bug, admitted.prepared.name)]), ends=True
            )
        finally:
            await results.aclose()
            await context.db.close()

    # Pieces.

    def _context(self, admitted: Admitted) -> Context:
        db = RequestDb(self.services.sessionmaker, write_turns=self.services.write_turns)
        viewer = admitted.authentication.viewer
        return Context(
            services=self.services,
            db=db,
            loaders=Loaders(db, viewer),
            authentication=admitted.authentication,
            transport=admitted.transport,
            client=admitted.client,
            deadline=admitted.deadline,
        )

    def _executor(self, admitted: Admitted, context: Context) -> FastPathExecutor:
        prepared = admitted.prepared
        fragments = {
            name: FragmentDetails(definition, None) for name, definition in prepared.fragments.items()
        }
        return FastPathExecutor(
            self.schema,
            dict(prepared.fragments),
            fragments,
            None,
            context,
            prepared.operation,
            prepared.variables,
            default_field_resolver,
            default_type_resolver,
            default_field_resolver,
        )

    def _count_statements(self) -> list[int] | None:
        counter = self.services.statements
        if counter is None:
            return None
        statements = [0]
        # Read by the engine's statement listener, in this task and the tasks it starts.
        counter.current.set(statements)
        return statements

    def _record(
        self, admitted: Admitted, answer: Answer, started: float, statements: list[int] | None
    ) -> None:
        observer = self.services.observer
        if observer is None:
            return
        prepared = admitted.prepared
        observer.operation_finished(
            OperationRecord(
                name=prepared.name,
                type=prepared.kind.value,
                duration_seconds=time.perf_counter() - started,
                sql_statements=statements[0] if statements is not None else 0,
                error_codes=answer.codes,
                transport=admitted.transport,
                executor=answer.executor,
            )
        )


def _result_answer(result: ExecutionResult) -> Answer:
    body: dict[str, Any] = {"data": result.data}
    if not result.errors:
        return Answer(orjson.dumps(body))
    errors = masked(result.errors)
    body["errors"] = [error.formatted for error in errors]
    return Answer(orjson.dumps(body), tuple(sorted({error_code(error, ran=True) for error in errors})))


def _errors_answer(errors: list[GraphQLError]) -> Answer:
    body = {"data": None, "errors": [error.formatted for error in errors]}
    return Answer(orjson.dumps(body), tuple(sorted({error_code(error, ran=True) for error in errors})))
