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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import orjson
from graphql import FieldNode, GraphQLError, GraphQLSchema, OperationType

from db.events import EventOf, outbox_row
from db.read_connections import DataRefused, PostgresReads, ReadConnections, ReadFailed, SqliteReads
from db.statements import CompiledStatement
from db.visibility import Viewer
from db.where import EVERYTHING
from schema.compiled.planner import ReadPlanner
from schema.compiled.sql import VIEWERS, ReadStatements, Write, compile_dml, compile_outbox
from schema.compiled.tree import MISSING_ROW, Fields, NotCompilable, looks_up_rows, params_of, reads_rows

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect

    from schema.admission.admission import Prepared
    from schema.declare.nodes import NodeType

log = logging.getLogger("quill.compiled_reads")


class _Slot(int):
    """Stands for a value a plan leaves open (the viewer's id while a plan is made for every
    viewer of a kind; the row an object read reads); the plan's arguments hold this very object
    where the value goes. Should one ever leak into SQL it reads as a negative id, nobody's."""


VIEWER_SLOT = _Slot(-1)
ROW_SLOT = _Slot(-2)
VIEWERS_SLOT = _Slot(-3)  # the list of viewers of a statement compiled for many (compile_read)


@dataclass(frozen=True, slots=True)
class Plan:
    """A known query with given variables, for one kind of viewer: the statement and its
    arguments (the viewer's id at `viewer_slots`)."""

    fields: Fields
    sql: str
    arguments: tuple[Any, ...]
    viewer_slots: tuple[int, ...]
    may_miss_rows: bool  # whether the answer must be checked for MISSING_ROW
    row_slots: tuple[int, ...] = ()
    viewers_slots: tuple[int, ...] = ()

    def bound(self, viewer: Viewer | None, row: int | None = None, viewers: Any = None) -> tuple[Any, ...]:
        if not self.viewer_slots and not self.row_slots and not self.viewers_slots:
            return self.arguments
        arguments = list(self.arguments)
        for slot in self.viewer_slots:
            assert viewer is not None
            arguments[slot] = viewer.id
        for slot in self.row_slots:
            arguments[slot] = row
        for slot in self.viewers_slots:
            arguments[slot] = viewers
        return tuple(arguments)

    @property
    def reads_the_viewer(self) -> bool:
        """Whether the answer depends on which viewer of the kind asks."""
        return bool(self.viewer_slots)


@dataclass(frozen=True, slots=True)
class WritePlan:
    """A compiled write for one kind of viewer: the statement, and its parameters but the written
    values (the viewer's id under `viewer_names`). On PostgreSQL the statement also builds the
    payload, `fields` (schema/compiled/sql.py's compile_write); on SQLite it only writes
    (compile_dml), the outbox row is `outbox`, and the payload is read after the commit."""

    fields: Fields
    statement: CompiledStatement
    params: Mapping[str, Any]
    viewer_names: tuple[str, ...]
    may_miss_rows: bool
    outbox: CompiledStatement | None = None

    def arguments(self, viewer: Viewer, values: Mapping[str, Any]) -> tuple[Any, ...]:
        given = {**self.params, **{f"w_{name}": value for name, value in values.items()}}
        for name in self.viewer_names:
            given[name] = viewer.id
        return self.statement.arguments(given)


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
        if self.reads is None or not self.reads.available:
            return None
        kind = viewer.kind
        if kind in prepared.plans:
            plan: Plan | None = prepared.plans[kind]
            return plan
        plan = prepared.plans[kind] = self._plan(prepared, viewer)
        return plan

    def _plan(self, prepared: Prepared, viewer: Viewer) -> Plan | None:
        assert prepared.operation.selection_set is not None
        return self._planned(prepared, viewer, lambda planner: planner.root(prepared.operation.selection_set))

    def object_plan(
        self, prepared: Prepared, node_type: NodeType, nodes: list[FieldNode], viewer: Viewer
    ) -> Plan | None:
        """The plan that reads one row of `node_type` (its id left open) as `nodes` select it:
        a mutation's payload or a subscription event's object, read after the write. Kept with
        the document, per field and kind of viewer."""
        if not self.enabled or self.reads is None or not self.reads.available:
            return None
        return self._object_plan(prepared, node_type, nodes, viewer, for_viewers=False)

    def viewers_plan(
        self, prepared: Prepared, node_type: NodeType, nodes: list[FieldNode], viewer: Viewer
    ) -> Plan | None:
        """object_plan's read once for each viewer of a list (all of `viewer`'s kind): one
        statement answers every subscriber of a subscription (read_for_viewers)."""
        if not self.enabled or self.reads is None or not self.reads.available or not self.reads.viewer_lists:
            return None
        return self._object_plan(prepared, node_type, nodes, viewer, for_viewers=True)

    def _object_plan(
        self,
        prepared: Prepared,
        node_type: NodeType,
        nodes: list[FieldNode],
        viewer: Viewer,
        *,
        for_viewers: bool,
    ) -> Plan | None:
        key = (id(nodes[0]), viewer.kind, for_viewers)
        if key not in prepared.plans:
            prepared.plans[key] = self._planned(
                prepared,
                viewer,
                lambda planner: (("o", planner.by_id(node_type, nodes, ROW_SLOT)),),
                for_viewers=for_viewers,
            )
        plan: Plan | None = prepared.plans[key]
        return plan

    def write_plan(
        self,
        prepared: Prepared,
        node_type: NodeType,
        nodes: list[FieldNode] | None,
        viewer: Viewer,
        written: Write,
    ) -> WritePlan | None:
        """The plan that writes a row of `node_type` as `written` says and, on PostgreSQL, reads
        it back as `nodes` select it (when the payload selects it), in one statement; None where
        the engine cannot (MariaDB; SQLite whose commits wait for the disk). Where the payload
        reads what the write changes (its table again, in the snapshot from before the write),
        or on SQLite, the plan only writes (`fields` empty), and the payload is read after it.
        Kept with the document, per field, kind of viewer and write."""
        if not self.enabled or not self._writes_directly:
            return None
        key = ("write", id(nodes[0]) if nodes else None, viewer.kind, written)
        if key not in prepared.plans:
            prepared.plans[key] = self._write_plan(prepared, node_type, nodes, viewer, written)
        plan: WritePlan | None = prepared.plans[key]
        return plan

    def _write_plan(
        self,
        prepared: Prepared,
        node_type: NodeType,
        nodes: list[FieldNode] | None,
        viewer: Viewer,
        written: Write,
    ) -> WritePlan | None:
        planned_as = _planned_as(viewer)
        guard = written.guard
        only_if = guard.visible(planned_as) & guard.allowed(planned_as) if guard is not None else EVERYTHING
        guard_params = {f"g_{name}": value for name, value in only_if.params.items()}
        if isinstance(self.reads, SqliteReads):
            dialect = self.statements.dialect
            outbox = compile_outbox(dialect) if written.event is not None else None
            return _write_plan((), compile_dml(dialect, written, only_if), guard_params, outbox)
        try:
            fields: Fields = ()
            if nodes is not None:
                fields = (("o", self.planner(prepared, planned_as).written(node_type, nodes)),)
            try:
                statement = self.statements.get_write(fields, written, only_if)
            except NotCompilable as reason:  # the payload reads the written table again
                log.debug("the payload is read after the write: %s", reason)
                fields = ()
                statement = self.statements.get_write(fields, written, only_if)
        except (NotCompilable, GraphQLError) as reason:
            log.debug("written by the ORM: %s", reason)
            return None
        except Exception:  # a bug here must not cost the client its write: the ORM path makes it
            log.exception("planning a compiled write failed; writing through the ORM")
            return None
        return _write_plan(fields, statement, {**params_of(fields), **guard_params})

    @property
    def _writes_directly(self) -> bool:
        reads = self.reads
        return isinstance(reads, PostgresReads) or (isinstance(reads, SqliteReads) and reads.writes)

    async def write(
        self,
        plan: WritePlan,
        viewer: Viewer,
        values: Mapping[str, Any],
        deadline: float,
        event: EventOf | None,
    ) -> Mapping[str, Any] | None:
        """The written row's columns, on PostgreSQL with its payload's body as `data`; None when
        nothing was written (the statement failed, or the guard refused: the ORM path writes or
        says why then). Raises DataRefused (a foreign key names a row that is gone) and
        TimeoutError past the deadline. `event`: the outbox row's event (SQLite writes it)."""
        reads, arguments = self.reads, plan.arguments(viewer, values)
        try:
            if isinstance(reads, SqliteReads):
                return reads.write_row(plan.statement.sql, arguments, _outbox_row(plan, event), deadline)
            assert isinstance(reads, PostgresReads)
            return await reads.fetch_written(plan.statement.sql, arguments, deadline)
        except DataRefused:
            raise
        except ReadFailed as error:
            log.warning("compiled write failed, writing through the ORM: %s", str(error)[:300])
            return None

    def planner(self, prepared: Prepared, viewer: Viewer) -> ReadPlanner:
        """A planner over the document's fragments and variables (its field collection and
        argument decoding are graphql-core's and the resolvers' own)."""
        schema = self._schema
        assert schema is not None, "bind() the schema first"
        graphql_schema: GraphQLSchema = schema._schema
        return ReadPlanner(
            graphql_schema,
            schema.config,
            schema.schema_converter.scalar_registry,
            prepared.fragments,
            prepared.variables,
            viewer,
        )

    def _planned(
        self,
        prepared: Prepared,
        viewer: Viewer,
        make: Callable[[ReadPlanner], Fields],
        *,
        for_viewers: bool = False,
    ) -> Plan | None:
        planned_as = _planned_as(viewer)
        planner = self.planner(prepared, planned_as)
        try:
            fields = make(planner)
            if not reads_rows(fields):
                return None
            statement = self.statements.get(fields, for_viewers=for_viewers)
            params = params_of(fields)
            if for_viewers:
                params[VIEWERS] = VIEWERS_SLOT
            arguments = statement.arguments(params)
        except (NotCompilable, GraphQLError) as reason:
            log.debug("answered by the resolvers: %s", reason)
            return None
        except Exception:  # a bug here must not cost the client its answer: the resolvers give it
            log.exception("planning a compiled read failed; answering with the resolvers")
            return None
        open_values = (VIEWER_SLOT, ROW_SLOT, VIEWERS_SLOT)
        slots = {slot: tuple(i for i, value in enumerate(arguments) if value is slot) for slot in open_values}
        named = {
            slot: tuple(i for i, name in enumerate(statement.names) if params.get(name) is slot)
            for slot in open_values
        }
        if slots != named:
            log.warning("a bind processor changed an open value; answering with the resolvers")
            return None
        return Plan(
            fields,
            statement.sql,
            arguments,
            slots[VIEWER_SLOT],
            looks_up_rows(fields),
            slots[ROW_SLOT],
            slots[VIEWERS_SLOT],
        )

    async def read(
        self,
        prepared: Prepared,
        plan: Plan,
        viewer: Viewer,
        deadline: float,
        row: int | None = None,
        on: ReadConnections | None = None,
    ) -> bytes | None:
        """The response body, `{"data":...}`, or None when the statement failed (the resolvers
        answer then). Raises TimeoutError past the operation's `deadline` (time.monotonic()).
        `on` names a replica's connections (db/replicas.py): there a failure is raised
        (ReadFailed), for the caller to read from the primary instead."""
        assert self.reads is not None
        try:
            body = await (on or self.reads).fetch(plan.sql, plan.bound(viewer, row), deadline)
        except ReadFailed as error:
            if on is not None:
                raise
            if "parser stack overflow" in str(error):
                # SQLite's parser stack is 100 deep: this shape never runs there; the resolvers answer it.
                self.statements.refused(plan.fields)
                for key, kept in list(prepared.plans.items()):
                    if kept is plan:
                        prepared.plans[key] = None
            log.warning("compiled read failed, answering with the resolvers: %s", str(error)[:300])
            return None
        # A required row is missing: the resolvers make the error graphql-core makes of it.
        return None if plan.may_miss_rows and MISSING_ROW in body else body

    async def read_for_viewers(
        self,
        plan: Plan,
        viewers: Sequence[int],
        deadline: float,
        row: int,
        on: ReadConnections | None = None,
    ) -> dict[int, Any] | None:
        """Each viewer's answer (decoded) by viewer id, from one statement; None when it failed
        or a required row is missing (the resolvers answer then). `on` is as for `read`."""
        assert self.reads is not None
        ids = self.statements.json.viewer_ids(viewers)
        try:
            body = await (on or self.reads).fetch(plan.sql, plan.bound(None, row, ids), deadline)
        except ReadFailed as error:
            if on is not None:
                raise
            log.warning("compiled read failed, answering with the resolvers: %s", str(error)[:300])
            return None
        if plan.may_miss_rows and MISSING_ROW in body:
            return None
        return {viewer: answer for viewer, answer in orjson.loads(body)["data"]}


def _outbox_row(plan: WritePlan, event: EventOf | None) -> Callable[[dict[str, Any]], tuple[str, Any] | None]:
    """The outbox statement SQLite runs after the write, made of the written row."""
    outbox = plan.outbox

    def statement(row: dict[str, Any]) -> tuple[str, Any] | None:
        if outbox is None or event is None:
            return None
        return outbox.sql, outbox.arguments(outbox_row(event.of(SimpleNamespace(**row))))

    return statement


def _planned_as(viewer: Viewer) -> Viewer:
    """The viewer a plan is made for: every viewer of this kind, the id left open (see _Slot)."""
    return viewer if viewer.id is None else Viewer(id=VIEWER_SLOT, is_superuser=viewer.is_superuser)


def _write_plan(
    fields: Fields,
    statement: CompiledStatement,
    params: dict[str, Any],
    outbox: CompiledStatement | None = None,
) -> WritePlan:
    viewer_names = tuple(name for name, value in params.items() if value is VIEWER_SLOT)
    return WritePlan(fields, statement, params, viewer_names, looks_up_rows(fields), outbox)
