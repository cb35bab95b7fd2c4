"""The objects a mutation returns, read back by one compiled statement instead of the loaders.

A payload's `to_one` field (`PostPayload.post`, `AuthPayload.user`) names a row the mutation
just wrote. With compiled reads on, schema/execution/executor.py asks this for the object as the
field's sub-selection wants it: one statement (schema/compiled/plans.py's object plan, kept with
the document) builds its JSON, author and nested pages included, where the loaders would send
one statement per level. Whatever the compiled path cannot answer exactly (a shape it does not
express, a row the viewer may not see, a failed statement) goes back to graphql-core's own path,
which answers as it always did.

A mutation that inserts or changes one row can do better (`write`). On PostgreSQL one statement
writes it (with its outbox row, where the broker keeps one) and builds the payload object's JSON
from the written row, in its own transaction: one round trip where the ORM path takes four or
more (BEGIN, the guard's check, the write, COMMIT, the read). On SQLite the write and its outbox
row are one short transaction in the event loop's thread, and the payload is read after it, as
it is on PostgreSQL when the statement cannot build it. schema/mutations.py's `insert_linked`
and `update_linked` use it and fall back to the ORM path whenever it answers None.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import orjson
from graphql import FieldNode, GraphQLObjectType

from db.models import utcnow
from db.visibility import Viewer
from schema.compiled.tree import MISSING_ROW

if TYPE_CHECKING:
    from schema.admission.admission import Prepared
    from schema.compiled.plans import CompiledReads
    from schema.compiled.sql import Write
    from schema.declare.nodes import NodeType

NOT_READ = object()  # "let graphql-core resolve this field"


@dataclass(frozen=True, slots=True)
class Written:
    """A row written by a compiled write, and its payload object as the response holds it (or
    NOT_READ: graphql-core's path reads it then)."""

    row: SimpleNamespace  # the row's columns as attributes, as the ORM path's rows have them
    answer: Any


@dataclass(frozen=True, slots=True)
class ObjectReads:
    compiled: CompiledReads
    prepared: Prepared
    deadline: float

    async def read(self, node_type: NodeType, nodes: list[FieldNode], pk: int, viewer: Viewer) -> Any:
        """The object as the response holds it (decoded JSON), or NOT_READ."""
        plan = self.compiled.object_plan(self.prepared, node_type, nodes, viewer)
        if plan is None:
            return NOT_READ
        body = await self.compiled.read(self.prepared, plan, viewer, self.deadline, row=pk)
        if body is None:
            return NOT_READ
        found = orjson.loads(body)["data"]["o"]
        return NOT_READ if found is None else found  # not visible: the resolvers say what follows

    def payload_nodes(self, field_nodes: list[FieldNode], payload: str, field: str) -> list[FieldNode] | None:
        """The nodes that select `field` of the payload type named `payload` under a mutation's
        `field_nodes`, when exactly one response key selects it, without directives (the
        executor reads such a field as one object); else None (not selected, or selected in a
        way a compiled write does not read: the payload is then read after the write)."""
        key = ("payload", id(field_nodes[0]), payload, field)
        if key not in self.prepared.plans:
            self.prepared.plans[key] = self._payload_nodes(field_nodes, payload, field)
        found: list[FieldNode] | None = self.prepared.plans[key]
        return found

    def _payload_nodes(
        self, field_nodes: list[FieldNode], payload: str, field: str
    ) -> list[FieldNode] | None:
        planner = self.compiled.planner(self.prepared, Viewer(id=None))
        payload_type = planner.schema.get_type(payload)
        assert isinstance(payload_type, GraphQLObjectType)
        selecting = [
            nodes
            for nodes in planner.sub_fields(payload_type, field_nodes).values()
            if nodes[0].name.value == field
        ]
        if len(selecting) != 1 or any(node.directives for node in selecting[0]):
            return None
        return selecting[0]

    async def write(
        self,
        node_type: NodeType,
        nodes: list[FieldNode] | None,
        written: Write,
        values: dict[str, Any],
        viewer: Viewer,
        guarded_id: int | None = None,
    ) -> Written | None:
        """Write the row as `written` says and, on PostgreSQL, read it as `nodes` select it, in one
        statement (SQLite: in one short transaction of the event loop's thread, the payload read
        after it as for the ORM path); None when this cannot be done that way (nothing was
        written then). Raises DataRefused when a foreign key names a row that is gone,
        TimeoutError past the operation's deadline."""
        plan = self.compiled.write_plan(self.prepared, node_type, nodes, viewer, written)
        if plan is None:
            return None
        if written.event is not None:
            values = {**values, "announced_at": utcnow()}
        if written.guard is not None:
            values = {**values, "guard_id": guarded_id}
        record = await self.compiled.write(plan, viewer, values, self.deadline, written.event)
        if record is None:
            return None
        columns = dict(record.items())
        body = columns.pop("data", None)
        if body is None or not plan.fields:  # only written: the payload is read after it
            return Written(SimpleNamespace(**columns), NOT_READ)
        found = None if plan.may_miss_rows and MISSING_ROW in body else orjson.loads(body)["data"]["o"]
        return Written(SimpleNamespace(**columns), NOT_READ if found is None else found)
