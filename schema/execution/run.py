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
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import orjson
from graphql import ExecutionResult, GraphQLError, GraphQLSchema, OperationType
from graphql.execution.collect_fields import FragmentDetails
from graphql.execution.execute import create_source_event_stream, map_source_to_response_event
from graphql.execution.executor import default_field_resolver, default_type_resolver
from graphql.execution.types import ExperimentalIncrementalExecutionResults
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from db.engine import DEADLINE
from db.read_connections import ReadFailed, ReadUnreachable
from db.replicas import Replica
from db.session import RequestDb
from db.visibility import Viewer
from schema.admission.admission import Admitted, Prepared
from schema.compiled.parts import Parts as CompiledParts
from schema.compiled.parts import parts_of
from schema.compiled.plans import CompiledReads, Plan
from schema.execution.answers import (
    Answer,
    WriteNow,
    errors_answer,
    replayed_answer,
    result_answer,
    timeout_answer,
)
from schema.execution.context import Context, Services
from schema.execution.executor import FastPathExecutor
from schema.execution.incremental import LaterParts, Parts, compiled_parts
from schema.execution.loaders import Loaders
from schema.execution.masking import internal_error
from schema.execution.object_reads import ObjectReads
from schema.execution.root_field import RootField, root_field
from schema.realtime.multiplex import Hub
from schema.telemetry import OperationRecord

log = logging.getLogger("quill.execution")


class OperationTracer(Protocol):
    def operation(self, admitted: Admitted) -> AbstractContextManager[Callable[[tuple[str, ...]], None]]:
        """A span around the operation (web/tracing.py); call what it yields with the error codes."""


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
        # Subscriptions answered together, one compiled read per event (with compiled reads on).
        self.hub = Hub(compiled, services, timeout_seconds) if compiled is not None else None

    # Queries and mutations.

    async def run(self, admitted: Admitted) -> Answer:
        if admitted.answered is not None:  # logged and counted like any operation, run or not
            answer = replayed_answer(admitted.answered)
            self._record(admitted, answer, time.perf_counter(), None)
            return answer
        if self.tracer is None:
            answer = await self._run(admitted)
        else:
            with self.tracer.operation(admitted) as finished:
                answer = await self._run(admitted)
                finished(answer.codes)
        replicas = self.services.replicas
        if replicas is not None and admitted.prepared.kind is OperationType.MUTATION:
            # Whatever it answered: a mutation with errors may still have written something.
            await replicas.wrote(_clients(admitted))
        if admitted.claimed is not None and self.services.idempotency is not None:
            # Whatever it answered, errors too: a retry must not write what this one may have.
            await self.services.idempotency.keep(admitted.claimed, answer.body)
        return answer

    async def _run(self, admitted: Admitted) -> Answer:
        if admitted.incremental:
            return await self._run_in_parts(admitted)
        prepared = admitted.prepared
        statements = self._count_statements()
        started = time.perf_counter()
        deadline_token = DEADLINE.set(admitted.deadline)
        answer = Answer(b"")
        context: Context | None = None  # made only for the resolvers: a compiled read needs none
        replica = await self._replica_for(admitted)
        try:
            # A compiled read keeps the deadline itself (db/read_connections.py, ReadTimeout).
            compiled, replica = await self._compiled_answer(admitted, replica)
            if compiled is not None:
                answer = compiled
            else:
                context = self._context(admitted, replica)
                async with asyncio.timeout(max(admitted.deadline - time.monotonic(), 0)):
                    answer = await self._answer(admitted, context)
        except TimeoutError:
            answer = timeout_answer(self.timeout_seconds)
        except Exception as bug:  # noqa: BLE001 - whatever broke outside a field is masked too
            answer = errors_answer([internal_error(bug, prepared.name)])
        finally:
            DEADLINE.reset(deadline_token)
            if context is not None:
                await context.db.close()
            self._record(admitted, answer, started, statements)
        return answer

    async def _replica_for(self, admitted: Admitted) -> Replica | None:
        """The replica a query reads from (db/replicas.py), or None for the primary."""
        replicas = self.services.replicas
        if replicas is None or admitted.prepared.kind is not OperationType.QUERY:
            return None
        return await replicas.for_query(_clients(admitted))

    async def _compiled_answer(
        self, admitted: Admitted, replica: Replica | None
    ) -> tuple[Answer | None, Replica | None]:
        """A query's answer from one compiled statement, or None where the resolvers answer it;
        and the replica the resolvers read from (None, the primary, once a replica failed)."""
        prepared, viewer, compiled = admitted.prepared, admitted.authentication.viewer, self.compiled
        if compiled is None or prepared.kind is not OperationType.QUERY:
            return None, replica
        plan = compiled.plan(prepared, viewer)
        if plan is None:
            return None, replica
        body, replica = await self._read(prepared, plan, viewer, admitted.deadline, replica)
        return (None if body is None else Answer(body, executor="compiled")), replica

    async def _read(
        self, prepared: Prepared, plan: Plan, viewer: Viewer, deadline: float, replica: Replica | None
    ) -> tuple[bytes | None, Replica | None]:
        """A compiled read on the replica (db/replicas.py) or the primary; and the replica the
        rest of the operation reads from: None (the primary) once the read failed on it."""
        compiled = self.compiled
        assert compiled is not None
        if replica is None or replica.reads is None:
            return await compiled.read(prepared, plan, viewer, deadline), replica
        try:
            return await compiled.read(prepared, plan, viewer, deadline, on=replica.reads), replica
        except ReadFailed as error:  # the primary answers: a replica down, or a recovery conflict
            if isinstance(error, ReadUnreachable):
                assert self.services.replicas is not None
                self.services.replicas.failed(replica, error)
        return await compiled.read(prepared, plan, viewer, deadline), None

    async def _answer(self, admitted: Admitted, context: Context) -> Answer:
        prepared, compiled = admitted.prepared, self.compiled
        executor = self._executor(admitted, context)
        if compiled is not None and prepared.kind is OperationType.MUTATION:
            context.objects = ObjectReads(compiled, prepared, admitted.deadline)
            if (one := self._root_field(prepared, executor)) is not None:
                ran, compiled_row = await one.run(executor)
                answer = result_answer(ran)
                if compiled_row:
                    answer.executor = "compiled"
                return answer
        result: Any = executor.execute_operation()
        if executor.is_awaitable(result):
            result = await result
        return result_answer(result)

    # Answers in parts (@defer, @stream): graphql-core's incremental executor, on the resolvers.

    async def _run_in_parts(self, admitted: Admitted) -> Answer:
        """The first part as the answer, the later ones in its `rest`: one compiled statement
        per part where schema/compiled/parts.py takes the shape, else the resolvers."""
        statements = self._count_statements()
        started = time.perf_counter()
        replica = await self._replica_for(admitted)
        try:
            compiled = await self._compiled_parts(admitted, (started, statements), replica)
        except TimeoutError:
            compiled = timeout_answer(self.timeout_seconds)
        except Exception as bug:  # noqa: BLE001 - masked like any answer's
            compiled = errors_answer([internal_error(bug, admitted.prepared.name)])
        if compiled is not None:
            if compiled.rest is None:
                self._record(admitted, compiled, started, statements)
            return compiled
        return await self._resolved_parts(admitted, started, statements, replica)

    async def _compiled_parts(
        self, admitted: Admitted, measured: tuple[float, list[int] | None], replica: Replica | None
    ) -> Answer | None:
        compiled, prepared, viewer = self.compiled, admitted.prepared, admitted.authentication.viewer
        if compiled is None or (parts := parts_of(self.schema, prepared)) is None:
            return None
        plans = [
            compiled.plan(part, viewer) for part in (parts.initial, *(read.prepared for read in parts.reads))
        ]
        if any(plan is None for plan in plans):
            return None
        body, replica = await self._read(parts.initial, plans[0], viewer, admitted.deadline, replica)  # type: ignore[arg-type]
        if body is None:
            return None
        answer = orjson.loads(body)
        if answer.get("errors") or answer.get("data") is None:
            return None  # the resolvers say what went wrong, in parts
        first, later = compiled_parts(parts, answer["data"])
        if not later.pending:
            return Answer(orjson.dumps({"data": answer["data"]}), executor="compiled")
        rest = self._compiled_later(admitted, parts, plans[1:], first, later, measured, replica)
        return Answer(first, executor="compiled", rest=rest)

    async def _compiled_later(
        self,
        admitted: Admitted,
        parts: CompiledParts,
        plans: list[Any],
        first: bytes,
        later: LaterParts,
        measured: tuple[float, list[int] | None],
        replica: Replica | None,
    ) -> AsyncIterator[bytes]:
        """The cut lists' other items, then each streamed connection's rest of the page and each
        deferred fragment, from its own statement."""
        viewer = admitted.authentication.viewer
        try:
            if later.streamed:
                yield later.streamed_part(has_next=bool(later.reads))
            for index, (read, plan) in enumerate(zip(parts.reads, plans, strict=True)):
                if index not in later.reads:
                    continue
                try:
                    body, replica = await self._read(read.prepared, plan, viewer, admitted.deadline, replica)
                except TimeoutError:
                    yield later.stopped(orjson.loads(timeout_answer(self.timeout_seconds).body)["errors"][0])
                    return
                yield later.read_part(index, read, None if body is None else orjson.loads(body))
        finally:
            self._record(admitted, Answer(first, tuple(sorted(later.codes)), "compiled"), *measured)

    async def _resolved_parts(
        self, admitted: Admitted, started: float, statements: list[int] | None, replica: Replica | None
    ) -> Answer:
        """graphql-core's incremental executor; the session lives until the last part was read,
        and gives its connection back while each part is sent."""
        deadline_token = DEADLINE.set(admitted.deadline)
        context = self._context(admitted, replica)
        executor = self._executor(admitted, context, StrawberryGraphQLCoreExecutionContext)
        try:
            async with asyncio.timeout(max(admitted.deadline - time.monotonic(), 0)):
                result: Any = executor.execute_operation()
                if executor.is_awaitable(result):
                    result = await result
        except TimeoutError:
            result = timeout_answer(self.timeout_seconds)
        except Exception as bug:  # noqa: BLE001
            result = errors_answer([internal_error(bug, admitted.prepared.name)])
        finally:
            DEADLINE.reset(deadline_token)
        if not isinstance(result, ExperimentalIncrementalExecutionResults):
            await context.db.close()
            answer = result if isinstance(result, Answer) else result_answer(result)
            self._record(admitted, answer, started, statements)
            return answer
        parts = Parts()
        first = parts.initial(result.initial_result)
        # Nothing is held while the first part is sent, even if the transport never asks for more.
        await context.db.release()
        later = self._later_parts(admitted, context, result.subsequent_results, parts, (started, statements))
        return Answer(first, tuple(sorted(parts.codes)), rest=later)

    async def _later_parts(
        self,
        admitted: Admitted,
        context: Context,
        results: AsyncGenerator[Any, None],
        parts: Parts,
        measured: tuple[float, list[int] | None],
    ) -> AsyncIterator[bytes]:
        """The later parts, until the last or the deadline (then every pending part ends with
        the timeout error)."""
        deadline_token = DEADLINE.set(admitted.deadline)
        try:
            while True:
                try:
                    step = anext(results)
                    result = await asyncio.wait_for(step, max(admitted.deadline - time.monotonic(), 0))
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    yield parts.stopped(orjson.loads(timeout_answer(self.timeout_seconds).body)["errors"][0])
                    return
                await context.db.release()  # nothing is held while the client reads
                yield parts.subsequent(result)
        finally:
            DEADLINE.reset(deadline_token)
            await results.aclose()
            await context.db.close()
            answer = Answer(b"", tuple(sorted(parts.codes)))
            self._record(admitted, answer, *measured)

    # Subscriptions (the resolvers' way: schema/realtime/ multiplexes compiled ones).

    async def subscribe(
        self, admitted: Admitted, write_now: WriteNow | None = None
    ) -> Answer | AsyncIterator[Answer]:
        """The subscription's first refusal as an answer, or its stream of answers: shared with
        the other subscribers of the document where the compiled path can (schema/realtime/
        multiplex.py), else the resolvers'. The resolvers' stream's session gives its connection
        back before each answer is handed out, and is closed when the stream ends, however it ends."""
        if self.hub is not None and (shared := await self.hub.join(admitted, write_now)) is not None:
            return shared
        context = self._context(admitted)
        executor = self._executor(admitted, context)
        try:
            source: Any = create_source_event_stream(executor)
            if executor.is_awaitable(source):
                source = await source
        except Exception as bug:  # noqa: BLE001
            await context.db.close()
            return errors_answer([internal_error(bug, admitted.prepared.name)])
        if isinstance(source, ExecutionResult):
            await context.db.close()
            return result_answer(source)
        return self._stream(admitted, context, map_source_to_response_event(executor, source))

    async def _stream(self, admitted: Admitted, context: Context, results: Any) -> AsyncIterator[Answer]:
        """The subscription's answers; an error raised by its source (a refusal when it starts, a
        subscriber too slow) is its last answer, which ends it."""
        try:
            async for result in results:
                await context.db.release()  # nothing is held while the client reads
                yield result_answer(result)
        except GraphQLError as error:
            await context.db.release()
            yield dataclasses.replace(errors_answer([error]), ends=True)
        except Exception as bug:  # noqa: BLE001
            await context.db.release()
            yield dataclasses.replace(errors_answer([internal_error(bug, admitted.prepared.name)]), ends=True)
        finally:
            await results.aclose()
            await context.db.close()

    # Pieces.

    def _context(self, admitted: Admitted, replica: Replica | None = None) -> Context:
        sessions = self.services.sessionmaker if replica is None else replica.sessionmaker
        db = RequestDb(sessions, write_turns=self.services.write_turns)
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

    def _executor(
        self,
        admitted: Admitted,
        context: Context,
        kind: type[StrawberryGraphQLCoreExecutionContext] = FastPathExecutor,
    ) -> StrawberryGraphQLCoreExecutionContext:
        """graphql-core's executor for the operation; without @defer and @stream (the whole
        answer at once) unless it is answered in parts."""
        prepared = admitted.prepared
        operation, definitions = prepared.operation, prepared.fragments
        if prepared.plain is not None and not admitted.incremental:
            operation, definitions = prepared.plain
        fragments = {name: FragmentDetails(definition, None) for name, definition in definitions.items()}
        return kind(
            self.schema,
            dict(definitions),
            fragments,
            None,
            context,
            operation,
            prepared.variables,
            default_field_resolver,
            default_type_resolver,
            default_field_resolver,
        )

    def _root_field(
        self, prepared: Prepared, executor: StrawberryGraphQLCoreExecutionContext
    ) -> RootField | None:
        """The mutation's one root field, run without graphql-core's framing (root_field.py),
        kept with the document; None where graphql-core runs the operation."""
        if executor.middleware_manager is not None:
            return None
        key = ("root field",)
        if key not in prepared.plans:
            found = root_field(self.schema, executor.operation, executor.fragment_definitions)
            prepared.plans[key] = found
        one: RootField | None = prepared.plans[key]
        return one

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
        if observer is None or not observer.recording:
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


def _clients(admitted: Admitted) -> tuple[str, ...]:
    """Who a write pins to the primary (db/replicas.py): the viewer (or the address that rate
    limits an anonymous one), and the address, for the account a sign-up has just made."""
    return (admitted.client, f"ip:{admitted.address}")
