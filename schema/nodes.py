"""Refetching any object by its global ID: `node(id:)` and `nodes(ids:)`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import strawberry

from schema.context import Info
from schema.errors import BadInput
from schema.relay import MAX_PAGE_SIZE, Node, from_global_id

NodeLoader = Callable[[Info, int], Awaitable[Node | None]]


def _loader(info: Info, type_name: str) -> NodeLoader | None:
    loaders = info.context.loaders
    by_type: dict[str, NodeLoader] = {
        "User": loaders.user,
        "Post": loaders.post,
        "Task": loaders.task,
        "Note": loaders.note,
    }
    return by_type.get(type_name)


async def _load(info: Info, global_id: str, argument: str) -> Node | None:
    type_name, pk = from_global_id(global_id, argument=argument)
    load = _loader(info, type_name)
    # An ID of a type that has no nodes is as absent as a deleted row.
    return await load(info, pk) if load is not None else None


@strawberry.type
class NodeQueries:
    @strawberry.field(description="Any object by its global ID; null if there is none the viewer may see.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return await _load(info, id, "id")

    @strawberry.field(
        description="Several objects by global ID, in the order asked; null where one is missing."
    )
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_PAGE_SIZE:
            raise BadInput(f"ids: at most {MAX_PAGE_SIZE} IDs at once, got {len(ids)}.", argument="ids")
        # Gathered, so the loaders batch each type into one statement.
        return list(await asyncio.gather(*(_load(info, id, "ids") for id in ids)))
