"""Refetching any object by its global ID: `node(id:)` and `nodes(ids:)`, for every declared type."""

from __future__ import annotations

import strawberry

from schema.declare import node_lookup
from schema.relay import Node


@strawberry.type
class Queries:
    node: Node | None = node_lookup(
        many=False, description="Any object by its global ID; null if there is none the viewer may see."
    )
    nodes: list[Node | None] = node_lookup(
        many=True, description="Several objects by global ID, in the order asked; null where one is missing."
    )
