"""Queries answered by one SQL statement that builds the response (COMPILED_READS, on by default).

The resolvers stay the reference: a query the compiler cannot express (schema/read_plans.py
says what), a bad argument, variables that do not coerce, or a failed statement, all go to
the resolvers, which answer exactly as they would have (errors included). So the compiled path
only ever serves answers without errors, and tests/test_compiled_reads.py checks that they equal
the resolvers' answers.

Two ways in:
1. The first time: the whole Strawberry pipeline runs (parse, validate, depth/alias/token limits,
   allow-list, cost and rate limit), and `CompiledReadsExtension.on_execute` answers instead of
   graphql-core's executor. A document that got this far is remembered as known.
2. A known document, over HTTP: `CompiledReads.answer` skips Strawberry and redoes only what
   depends on the request: variables, the cost budget, the rate limit, the operation's
   telemetry. This saves ~0.3 ms of per-operation pipeline, more than the statement takes.

The database's JSON goes into the response as it is (orjson.Fragment), never decoded in Python.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from graphql import FragmentDefinitionNode, GraphQLError, OperationDefinitionNode, OperationType
from graphql.execution.values import get_variable_values
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from db.json_reads import MISSING_ROW, Fields, NotCompilable, ReadStatements, read_json, reads_rows
from db.visibility import Viewer
from schema.context import ConnectionContext, Context
from schema.limits import estimated_cost, operation_of
from schema.read_plans import ReadPlanner
from schema.telemetry import OperationRecord

if TYPE_CHECKING:
    import strawberry

log = logging.getLogger("quill.compiled_reads")

ENGINES = ("postgresql", "sqlite")  # MySQL/MariaDB: the resolvers serve every query


@dataclass(frozen=True, slots=True)
class KnownOperation:
    """A query operation that passed the whole pipeline once."""

    operation: OperationDefinitionNode
    fragments: Mapping[str, FragmentDefinitionNode]
    name: str | None


class CompiledReads:
    def __init__(
        self, enabled: bool, dialect: str, *, max_known: int, max_cost: int, shortcut: bool = True
    ) -> None:
        self.enabled = enabled and dialect in ENGINES
        self.shortcut = shortcut
        self.max_known = max_known
        self.max_cost = max_cost
        self.statements = ReadStatements()
        self._known: OrderedDict[tuple[str, str | None], KnownOperation] = OrderedDict()
        self._schema: strawberry.Schema | None = None

    def bind(self, schema: strawberry.Schema) -> None:
        """The schema whose documents this serves (built after this object, which it holds)."""
        self._schema = schema

    # Planning and reading.

    def known_operation(self, document: Any, operation_name: str | None) -> KnownOperation | None:
        operation = operation_of(document, operation_name)
        if operation is None or operation.operation != OperationType.QUERY:
            return None
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        name = operation_name or (operation.name.value if operation.name else None)
        return KnownOperation(operation, fragments, name)

    def plan(
        self, known: KnownOperation, variables: Mapping[str, Any] | None, viewer: Viewer
    ) -> Fields | None:
        """The read tree, or None when the resolvers must answer (see the module doc)."""
        schema = self._schema
        assert schema is not None, "bind() the schema first"
        coerced = get_variable_values(
            schema._schema, known.operation.variable_definitions or (), dict(variables or {})
        )
        if isinstance(coerced, list):
            return None  # graphql-core reports it
        planner = ReadPlanner(
            schema._schema,
            schema.config,
            schema.schema_converter.scalar_registry,
            known.fragments,
            coerced,
            viewer,
        )
        try:
            fields = planner.root(known.operation.selection_set)
            return fields if reads_rows(fields) else None
        except (NotCompilable, GraphQLError):
            return None
        except Exception:  # a bug here must not cost the client its answer: the resolvers give it
            log.exception("planning a compiled read failed; answering with the resolvers")
            return None

    async def read(self, session: AsyncSession, fields: Fields) -> bytes | None:
        """The `data` JSON, or None (after a rollback) when the statement could not be built or failed."""
        try:
            compiled = self.statements.get(fields, session.get_bind().dialect)
            data = (await read_json(session, compiled, fields)).encode()
        except NotCompilable:
            return None
        except Exception as error:  # noqa: BLE001 - the resolvers answer, and report it as they do
            if "parser stack overflow" in str(error):
                self.statements.refused(fields, session.get_bind().dialect)
            log.warning("compiled read failed, answering with the resolvers: %s", str(error)[:300])
            await session.rollback()
            return None
        # A required row is missing: the resolvers make the error graphql-core makes of it.
        return None if MISSING_ROW in data else data

    def remember(self, query: str, operation_name: str | None, known: KnownOperation) -> None:
        key = (query, operation_name)
        self._known[key] = known
        self._known.move_to_end(key)
        while len(self._known) > self.max_known:
            self._known.popitem(last=False)

    # The short way for a known document (the HTTP endpoint calls it before Strawberry).

    async def answer(
        self,
        query: str,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
        connection: ConnectionContext,
    ) -> bytes | None:
        known = self._known.get((query, operation_name)) if self.enabled and self.shortcut else None
        if known is None:
            return None
        assert self._schema is not None
        cost = estimated_cost(self._schema._schema, known.operation, known.fragments, variables or {})
        if cost > self.max_cost:
            return None  # the resolvers' pipeline refuses it with its error
        fields = self.plan(known, variables, connection.viewer)
        if fields is None:
            return None
        services = connection.services
        limiter = services.rate_limiter
        if limiter is not None and await limiter.charge(connection.client, cost) is not None:
            return None  # refused: the pipeline asks again, is refused again, and says so
        statements = [0]
        if services.statements is not None:
            services.statements.current.set(statements)
        started = time.perf_counter()
        try:
            async with services.sessionmaker() as session:
                data = await self.read(session, fields)
        finally:
            if services.statements is not None:
                services.statements.current.set(None)
        if data is not None and services.observer is not None:
            services.observer.operation_finished(
                OperationRecord(
                    name=known.name,
                    type="query",
                    duration_seconds=time.perf_counter() - started,
                    sql_statements=statements[0],
                    error_codes=(),
                    transport=connection.transport,
                    executor="compiled",
                )
            )
        return data


class CompiledReadsExtension(SchemaExtension):
    """Answers a query with one statement instead of graphql-core's executor, when it can.

    Runs after every other extension's on_execute (the allow-list, the cost limit and the rate
    limit have agreed); only over HTTP, whose endpoint writes the JSON fragment as it is."""

    def __init__(self, reads: CompiledReads) -> None:
        self.reads = reads

    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        if self.reads.enabled and isinstance(context, Context) and context.connection.transport == "http":
            await self._answer(execution, context)
        yield

    async def _answer(self, execution: Any, context: Context) -> None:
        provided_name = execution._provided_operation_name
        known = self.reads.known_operation(execution.graphql_document, provided_name)
        if known is None:
            return
        fields = self.reads.plan(known, execution.variables, context.viewer)
        if fields is None:
            return
        async with context.db.use() as session:
            data = await self.reads.read(session, fields)
        if data is None:
            return
        execution.result = ExecutionResult(data=orjson.Fragment(data), errors=None)  # type: ignore[arg-type]
        context.connection.compiled_operations += 1
        if execution.query is not None:
            self.reads.remember(execution.query, provided_name, known)
