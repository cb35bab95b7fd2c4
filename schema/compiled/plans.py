"""Queries answered by one SQL statement that builds the response (COMPILED_READS, on by default).

The resolvers stay the reference: a query the planner cannot express (schema/compiled/planner.py
says what), a bad argument, or a failed statement, all go to the resolvers, which answer exactly
as they would have (errors included). So the compiled path only ever serves answers without
errors, and tests/test_compiled_reads.py checks that they equal the resolvers' answers.

A plan (the statement and its arguments) is kept with the admitted document and its variables
(schema/admission's `Prepared`), one per kind of viewer with the viewer's id left open, so that
a known query with known variables costs a dictionary lookup before its statement runs. The
database's JSON goes into the response as it is, never decoded in Python.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, GraphQLSchema, OperationType

from db.read_connections import ReadConnections, ReadFailed
from db.visibility import Viewer
from schema.compiled.planner import ReadPlanner
from schema.compiled.sql import ReadStatements
from schema.compiled.tree import MISSING_ROW, Fields, NotCompilable, looks_up_rows, params_of, reads_rows

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect

    from schema.admission.admission import Prepared

log = logging.getLogger("quill.compiled_reads")


class _ViewerSlot(int):
    """Stands for the viewer's id while a plan is made for every viewer of a kind; the plan's
    arguments hold this very object where the id goes. Should it ever leak into SQL it reads as
    -1, which is nobody's id."""


VIEWER_SLOT = _ViewerSlot(-1)


@dataclass(frozen=True, slots=True)
class Plan:
    """A known query with given variables, for one kind of viewer: the statement and its
    arguments (the viewer's id at `viewer_slots`)."""

    fields: Fields
    sql: str
    arguments: tuple[Any, ...]
    viewer_slots: tuple[int, ...]
    may_miss_rows: bool  # whether the answer must be checked for MISSING_ROW

    def bound(self, viewer: Viewer) -> tuple[Any, ...]:
        if not self.viewer_slots:
            return self.arguments
        arguments = list(self.arguments)
        for slot in self.viewer_slots:
            arguments[slot] = viewer.id
        return tuple(arguments)


class CompiledReads:
    def __init__(self, enabled: bool, reads: ReadConnections | None, dialect: Dialect) -> None:
        self.reads = reads
        self.enabled = enabled and reads is not None
        self.statements = ReadStatements(dialect)
        self._schema: Any = None

    def bind(self, schema: Any) -> None:
        """The Strawberry schema whose documents this serves (its config decodes arguments)."""
        self._schema = schema

    def plan(self, prepared: Prepared, viewer: Viewer) -> Plan | None:
        """The plan of an admitted query for this kind of viewer, made once; None when the
        resolvers must answer (a shape the planner does not express, a bad argument)."""
        if not self.enabled or prepared.kind is not OperationType.QUERY:
            return None
        kind = viewer.kind
        if kind in prepared.plans:
            plan: Plan | None = prepared.plans[kind]
            return plan
        plan = prepared.plans[kind] = self._plan(prepared, viewer)
        return plan

    def _plan(self, prepared: Prepared, viewer: Viewer) -> Plan | None:
        schema = self._schema
        assert schema is not None, "bind() the schema first"
        graphql_schema: GraphQLSchema = schema._schema
        # Planned for every viewer of this kind: the id is a slot (see _ViewerSlot).
        planned_as = viewer if viewer.id is None else Viewer(id=VIEWER_SLOT, is_superuser=viewer.is_superuser)
        planner = ReadPlanner(
            graphql_schema,
            schema.config,
            schema.schema_converter.scalar_registry,
            prepared.fragments,
            prepared.variables,
            planned_as,
        )
        try:
            fields = planner.root(prepared.operation.selection_set)
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
        return Plan(fields, statement.sql, arguments, slots, looks_up_rows(fields))

    async def read(self, prepared: Prepared, plan: Plan, viewer: Viewer, deadline: float) -> bytes | None:
        """The response body, `{"data":...}`, or None when the statement failed (the resolvers
        answer then). Raises TimeoutError past the operation's `deadline` (time.monotonic())."""
        assert self.reads is not None
        try:
            body = await self.reads.fetch(plan.sql, plan.bound(viewer), deadline)
        except ReadFailed as error:
            if "parser stack overflow" in str(error):
                # SQLite's parser stack is 100 deep: this shape never runs there; the resolvers answer it.
                self.statements.refused(plan.fields)
                prepared.plans[viewer.kind] = None
            log.warning("compiled read failed, answering with the resolvers: %s", str(error)[:300])
            return None
        # A required row is missing: the resolvers make the error graphql-core makes of it.
        return None if plan.may_miss_rows and MISSING_ROW in body else body
