"""Queries answered by one SQL statement that builds the response (COMPILED_READS, on by default).

The resolvers stay the reference: a query the compiler cannot express (schema/read_plans.py says
what), a bad argument, variables that do not coerce, or a failed statement, all go to the
resolvers, which answer exactly as they would have (errors included). So the compiled path only
ever serves answers without errors, and tests/test_compiled_reads.py checks that they equal the
resolvers' answers.

Two ways in:
1. The first time: the whole Strawberry pipeline runs (parse, validate, depth/alias/token limits,
   allow-list, cost and rate limit), and `CompiledReadsExtension.on_execute` answers instead of
   graphql-core's executor. A document that got this far is remembered as known.
2. A known document in a POST: web/compiled_http.py, the innermost middleware, asks `plan_for`
   and answers without Strawberry; only what depends on the request is done again, the
   variables, the cost budget and the rate limit.

A plan (the statement and its arguments) is kept per document, operation, variables and kind of
viewer, with the viewer's id left open, so that a known query with known variables costs a
dictionary lookup before its statement runs. The database's JSON goes into the response as it
is, never decoded in Python.
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
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from db.json_reads import ReadStatements
from db.read_connections import ReadConnections, ReadFailed
from db.read_trees import MISSING_ROW, Fields, NotCompilable, looks_up_rows, params_of, reads_rows
from db.visibility import Viewer
from schema.context import Context
from schema.limits import OperationTimedOut, estimated_cost, operation_of
from schema.read_plans import ReadPlanner

if TYPE_CHECKING:
    import strawberry
    from sqlalchemy.engine import Dialect

log = logging.getLogger("quill.compiled_reads")


@dataclass(frozen=True, slots=True)
class KnownOperation:
    """A query operation that passed the whole pipeline once."""

    operation: OperationDefinitionNode
    fragments: Mapping[str, FragmentDefinitionNode]
    name: str | None


class _ViewerSlot(int):
    """Stands for the viewer's id while a plan is made for every viewer of a kind; the plan's
    arguments hold this very object where the id goes. Should it ever leak into SQL it reads as
    -1, which is nobody's id."""


VIEWER_SLOT = _ViewerSlot(-1)


@dataclass(frozen=True, slots=True)
class Plan:
    """A known query with given variables, for one kind of viewer: the statement, its arguments
    (the viewer's id at `viewer_slots`), and what the request costs."""

    fields: Fields
    sql: str
    arguments: tuple[Any, ...]
    viewer_slots: tuple[int, ...]
    cost: int
    name: str | None
    may_miss_rows: bool  # whether the answer must be checked for MISSING_ROW

    def bound(self, viewer: Viewer) -> tuple[Any, ...]:
        if not self.viewer_slots:
            return self.arguments
        arguments = list(self.arguments)
        for slot in self.viewer_slots:
            arguments[slot] = viewer.id
        return tuple(arguments)


_NOT_COMPILED = object()  # in the plan cache: these variables and this viewer go to the resolvers

# Variables past this size are planned for each request instead of being kept as a cache key.
_MAX_KEPT_VARIABLES_BYTES = 4096


def _plan_key(
    query: str, operation_name: str | None, variables: Mapping[str, Any] | None, viewer: Viewer
) -> tuple[Any, ...] | None:
    try:
        given = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS) if variables else b""
    except TypeError:  # not JSON (an upload's file): nothing to keep a plan under
        return None
    if len(given) > _MAX_KEPT_VARIABLES_BYTES:
        return None
    return (query, operation_name, viewer.kind, given)


class CompiledReads:
    def __init__(
        self,
        enabled: bool,
        reads: ReadConnections | None,
        dialect: Dialect,
        *,
        max_known: int,
        max_cost: int,
        timeout_seconds: float,
    ) -> None:
        self.reads = reads
        self.enabled = enabled and reads is not None
        self.max_known = max_known
        self.max_cost = max_cost
        self.timeout_seconds = timeout_seconds  # an operation's, when nobody set a deadline
        self.statements = ReadStatements(dialect)
        self._known: OrderedDict[tuple[str, str | None], KnownOperation] = OrderedDict()
        self._plans: OrderedDict[tuple[Any, ...], Plan | object] = OrderedDict()
        self._schema: strawberry.Schema | None = None

    def bind(self, schema: strawberry.Schema) -> None:
        """The schema whose documents this serves (built after this object, which it holds)."""
        self._schema = schema

    # Known documents.

    def known_operation(self, document: Any, operation_name: str | None) -> KnownOperation | None:
        operation = operation_of(document, operation_name)
        if operation is None or operation.operation != OperationType.QUERY:
            return None
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        name = operation_name or (operation.name.value if operation.name else None)
        return KnownOperation(operation, fragments, name)

    def remember(self, query: str, operation_name: str | None, known: KnownOperation) -> None:
        key = (query, operation_name)
        self._known[key] = known
        self._known.move_to_end(key)
        while len(self._known) > self.max_known:
            self._known.popitem(last=False)

    # Plans.

    def plan_for(
        self, query: str, operation_name: str | None, variables: Mapping[str, Any] | None, viewer: Viewer
    ) -> Plan | None:
        """The plan of a known document, or None when the pipeline must see the request (an
        unknown document, variables that do not coerce, a query over the cost budget, a shape
        the compiler does not express)."""
        if not self.enabled:
            return None
        key = _plan_key(query, operation_name, variables, viewer)
        if key is not None and (plan := self._plans.get(key)) is not None:
            self._plans.move_to_end(key)
            return plan if isinstance(plan, Plan) else None
        known = self._known.get((query, operation_name))
        if known is None:
            return None
        made = self._plan(known, variables, viewer)
        self._keep(key, made)
        return made

    def plan_known(
        self,
        query: str | None,
        operation_name: str | None,
        known: KnownOperation,
        variables: Mapping[str, Any] | None,
        viewer: Viewer,
    ) -> Plan | None:
        """A plan for a document the pipeline has just accepted; document and plan are kept."""
        plan = self._plan(known, variables, viewer)
        if plan is not None and query is not None:
            self.remember(query, operation_name, known)
            self._keep(_plan_key(query, operation_name, variables, viewer), plan)
        return plan

    def _keep(self, key: tuple[Any, ...] | None, plan: Plan | None) -> None:
        if key is None:
            return
        self._plans[key] = _NOT_COMPILED if plan is None else plan
        while len(self._plans) > 4 * self.max_known:
            self._plans.popitem(last=False)

    def _plan(
        self, known: KnownOperation, variables: Mapping[str, Any] | None, viewer: Viewer
    ) -> Plan | None:
        schema = self._schema
        assert schema is not None, "bind() the schema first"
        coerced = get_variable_values(
            schema._schema, known.operation.variable_definitions or (), dict(variables or {})
        )
        if isinstance(coerced, list):
            return None  # graphql-core reports it
        cost = estimated_cost(schema._schema, known.operation, known.fragments, variables or {})
        if cost > self.max_cost:
            return None  # the pipeline refuses it with its error
        # Planned for every viewer of this kind: the id is a slot (see _ViewerSlot).
        planned_as = viewer if viewer.id is None else Viewer(id=VIEWER_SLOT, is_superuser=viewer.is_superuser)
        planner = ReadPlanner(
            schema._schema,
            schema.config,
            schema.schema_converter.scalar_registry,
            known.fragments,
            coerced,
            planned_as,
        )
        try:
            fields = planner.root(known.operation.selection_set)
            if not reads_rows(fields):
                return None
            statement = self.statements.get(fields)
            params = params_of(fields)
            arguments = statement.arguments(params)
        except (NotCompilable, GraphQLError):
            return None
        except Exception:  # a bug here must not cost the client its answer: the resolvers give it
            log.exception("planning a compiled read failed; answering with the resolvers")
            return None
        slots = tuple(index for index, value in enumerate(arguments) if value is VIEWER_SLOT)
        if slots != tuple(
            index for index, name in enumerate(statement.names) if params.get(name) is VIEWER_SLOT
        ):
            log.warning("a bind processor changed the viewer's id; answering with the resolvers")
            return None
        return Plan(fields, statement.sql, arguments, slots, cost, known.name, looks_up_rows(fields))

    # Reading.

    async def read(self, plan: Plan, viewer: Viewer, deadline: float) -> bytes | None:
        """The response body, `{"data":...}`, or None when the statement failed (the resolvers
        answer then). Raises TimeoutError past the operation's `deadline` (time.monotonic())."""
        assert self.reads is not None
        try:
            body = await self.reads.fetch(plan.sql, plan.bound(viewer), deadline)
        except ReadFailed as error:
            if "parser stack overflow" in str(error):
                self.statements.refused(plan.fields)
                self._forget(plan)
            log.warning("compiled read failed, answering with the resolvers: %s", str(error)[:300])
            return None
        # A required row is missing: the resolvers make the error graphql-core makes of it.
        return None if plan.may_miss_rows and MISSING_ROW in body else body

    def _forget(self, plan: Plan) -> None:
        for key in [key for key, kept in self._plans.items() if kept is plan]:
            self._plans[key] = _NOT_COMPILED


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
        plan = self.reads.plan_known(
            execution.query, provided_name, known, execution.variables, context.viewer
        )
        if plan is None:
            return
        deadline = context.connection.deadline
        if deadline is None:
            deadline = time.monotonic() + self.reads.timeout_seconds
        try:
            body = await self.reads.read(plan, context.viewer, deadline)
        except TimeoutError:  # as the HTTP endpoint answers an operation it had to cancel
            timed_out = OperationTimedOut(self.reads.timeout_seconds)
            execution.result = ExecutionResult(data=None, errors=[timed_out])
            return
        if body is None:
            return
        data = orjson.Fragment(body[len(b'{"data":') : -1])  # Strawberry's result holds `data` only
        execution.result = ExecutionResult(data=data, errors=None)  # type: ignore[arg-type]
        context.connection.compiled_operations += 1
