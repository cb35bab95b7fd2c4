"""The objects a mutation returns, read back by one compiled statement instead of the loaders.

A payload's `to_one` field (`PostPayload.post`, `AuthPayload.user`) names a row the mutation
just wrote. With compiled reads on, schema/execution/executor.py asks this for the object as the
field's sub-selection wants it: one statement (schema/compiled/plans.py's object plan, kept with
the document) builds its JSON, author and nested pages included, where the loaders would send
one statement per level. Whatever the compiled path cannot answer exactly (a shape it does not
express, a row the viewer may not see, a failed statement) goes back to graphql-core's own path,
which answers as it always did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from graphql import FieldNode

from db.visibility import Viewer

if TYPE_CHECKING:
    from schema.admission.admission import Prepared
    from schema.compiled.plans import CompiledReads
    from schema.declare.nodes import NodeType

NOT_READ = object()  # "let graphql-core resolve this field"


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
