"""Subscription declarations: one line says which changes a field streams; the resolvers
(schema/realtime/streams.py, once per subscriber) and the shared compiled reads
(schema/realtime/multiplex.py, once per event for all subscribers) both follow it.

    post_created: Post = added(narrowed_by=(by("author_id", "owner_id", "User"),))
    task_changed: TaskChange = changed(row="task", login=True, narrowed_by=(by("task_id", "id", "Task"),))
    note_added: Note = added(login=True, narrowed_by=(parent("task_id", "Task"),))

`added` streams the created rows themselves; `changed` streams a change type (a subclass of
schema/realtime/streams.py's Change: kind, id, cursor, and the row in the field `row`), every
kind of change, resumable from a cursor with `after`. The topic is the node type's name in lower
case, as db/events.py's events name it.
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.types.field import StrawberryField
from strawberry.types.fields.resolver import StrawberryResolver

from schema.declare.fields import argument
from schema.declare.specs import SPEC, Narrowing, SubscriptionSpec

ALL_KINDS = ("created", "updated", "deleted")


def by(argument: str, event_field: str, id_of: str) -> Narrowing:
    """An optional argument: only the events of the row it names (by its global ID)."""
    return Narrowing(argument, event_field, id_of)


def parent(argument: str, id_of: str) -> Narrowing:
    """A required argument: the row the streamed rows belong to (a note's task), which must exist
    and be visible to the subscriber when it subscribes."""
    return Narrowing(argument, "parent_id", id_of, required=True)


def added(
    *, narrowed_by: tuple[Narrowing, ...] = (), login: bool = False, description: str | None = None
) -> Any:
    """The rows of the field's node type as they are created."""
    return _subscription(SubscriptionSpec(("created",), narrowed_by, None, login), description)


def changed(
    *, row: str, narrowed_by: tuple[Narrowing, ...] = (), login: bool = False, description: str | None = None
) -> Any:
    """Every change to the rows of a node type, as the field's change type (see the module doc)."""
    return _subscription(SubscriptionSpec(ALL_KINDS, narrowed_by, row, login), description)


def _subscription(spec: SubscriptionSpec, description: str | None) -> Any:
    from schema.realtime.streams import follow  # the machinery, which imports declarations

    async def resolve(root: Any, info: strawberry.Info, **arguments: Any) -> Any:
        async for value in follow(info, spec, arguments):
            yield value

    field = StrawberryField(
        base_resolver=StrawberryResolver(resolve),
        is_subscription=True,
        description=description,
        metadata={SPEC: spec},
    )
    field.arguments = [
        argument(n.argument, strawberry.ID) if n.required else argument(n.argument, strawberry.ID | None)
        for n in spec.narrowing
    ] + ([argument("after", str | None)] if spec.resumable else [])
    return field
