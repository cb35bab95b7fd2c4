"""The streams of changes that subscription fields declare (schema/declare/subscriptions.py),
answered by the resolvers: each subscriber follows the events and reads each changed row under
its own rights. This is the reference; schema/realtime/multiplex.py answers the same streams with
one read per event for all subscribers, and tests/test_subscriptions.py holds the two alike.

What a subscriber receives, on both paths:
- only events of the declared kinds, narrowed by the arguments given (an author, a task, ...);
- a created or updated row only if the subscriber may see it now (the row is read afresh);
- a deleted row (change streams only) if the subscriber could see it: public types to all, a
  private one to whoever may see its owner's rows (db/visibility.py's may_see_owned_by);
- with `after: <cursor>`, every event after that cursor first, in order, once, then live ones.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import AsyncIterator
from enum import Enum
from typing import Any

import strawberry
from graphql import GraphQLError

from db.events import BadPosition, Event, PositionExpired, ResumeUnavailable, SubscriberTooSlow
from db.visibility import Viewer, everyone, may_see_owned_by
from schema.declare.nodes import NodeType, node_type_named
from schema.declare.specs import SubscriptionSpec
from schema.errors import AuthFailure, BadInput
from schema.execution.context import Info
from schema.mutations import login_required
from schema.relay import pk_of, to_global_id


@strawberry.enum(description="What happened to the object.")
class ChangeKind(Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@strawberry.interface(description="A change to a row: what happened, to which row, and where in the stream.")
class Change:
    kind: ChangeKind
    id: strawberry.ID = strawberry.field(description="The global ID of the row that changed.")
    cursor: str = strawberry.field(
        description="Subscribe again with `after: <this>` to receive every change after this one."
    )


def encode_cursor(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadInput(f"after: malformed cursor {cursor!r}.", argument="after") from None


def stream_node_type(info: Info, spec: SubscriptionSpec) -> NodeType:
    """The node type of the streamed rows, from the field's GraphQL type."""
    return stream_node_type_of(info._raw_info.parent_type.fields[info._raw_info.field_name].type, spec)


def stream_node_type_of(field_type: Any, spec: SubscriptionSpec) -> NodeType:
    named = field_type.of_type if hasattr(field_type, "of_type") else field_type
    if spec.row is not None:
        row_type = named.fields[_camel(spec.row)].type
        named = row_type.of_type if hasattr(row_type, "of_type") else row_type
    return node_type_named(named.name)


def narrowing_of(spec: SubscriptionSpec, arguments: dict[str, Any]) -> dict[str, int]:
    """The event fields the arguments pin, with the primary keys they name."""
    pinned: dict[str, int] = {}
    for narrowing in spec.narrowing:
        value = arguments.get(narrowing.argument)
        if value is not None and value is not strawberry.UNSET:
            pinned[narrowing.event_field] = pk_of(value, narrowing.id_of, argument=_camel(narrowing.argument))
    return pinned


def wanted(spec: SubscriptionSpec, event: Event, pinned: dict[str, int]) -> bool:
    return event.kind in spec.kinds and all(getattr(event, name) == pk for name, pk in pinned.items())


def sees_gone(node_type: NodeType, viewer: Viewer, event: Event) -> bool:
    """Whether the viewer could see the row an event says was deleted."""
    if node_type.visible is everyone:
        return True
    return event.owner_id is not None and may_see_owned_by(viewer, event.owner_id)


def required_parents(spec: SubscriptionSpec, pinned: dict[str, int]) -> list[tuple[str, NodeType, int]]:
    """(argument, node type, key) of each required row, to check before subscribing."""
    return [
        (_camel(n.argument), node_type_named(n.id_of), pinned[n.event_field])
        for n in spec.narrowing
        if n.required and n.event_field in pinned
    ]


def parent_missing(argument: str, node_type: NodeType) -> BadInput:
    noun = node_type.name.lower()
    return BadInput(f"{argument}: no {noun} with that ID (or not one you may see).", argument=argument)


def starting_position(arguments: dict[str, Any]) -> str | None:
    after = arguments.get("after")
    return decode_cursor(after) if after is not None and after is not strawberry.UNSET else None


def refused(message: str, reason: AuthFailure) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "UNAUTHENTICATED", "reason": reason.value})


def stream_error(error: Exception) -> GraphQLError:
    """What the client is told when its stream cannot start or goes on no more."""
    if isinstance(error, BadPosition):
        return GraphQLError(
            "after: not a cursor of this stream.", extensions={"code": "BAD_USER_INPUT", "argument": "after"}
        )
    if isinstance(error, PositionExpired):
        return GraphQLError(
            "after: this cursor is older than the events the server keeps; subscribe again without it.",
            extensions={"code": "CURSOR_EXPIRED", "argument": "after"},
        )
    if isinstance(error, ResumeUnavailable):
        return GraphQLError(
            "after: this server keeps no event log to resume from (set EVENT_BROKER_URL).",
            extensions={"code": "RESUME_UNAVAILABLE", "argument": "after"},
        )
    return GraphQLError(str(error), extensions={"code": "SUBSCRIBER_TOO_SLOW"})


async def follow(info: Info, spec: SubscriptionSpec, arguments: dict[str, Any]) -> AsyncIterator[Any]:
    """The resolvers' stream of a declared subscription field (the module doc says what it holds)."""
    if spec.login and (error := login_required(info)):
        raise refused(error.message, error.reason)
    node_type = stream_node_type(info, spec)
    pinned = narrowing_of(spec, arguments)
    after = starting_position(arguments)
    for argument, parent_type, pk in required_parents(spec, pinned):
        if await info.context.loaders.visible(parent_type, pk) is None:
            raise parent_missing(argument, parent_type)
    await info.context.db.release()
    row_path = (spec.row,) if spec.row is not None else ()
    change_type = _change_class(info, spec)
    async for event in events(info, node_type.name.lower(), after=after):
        if not wanted(spec, event, pinned):
            continue
        if event.kind == "deleted":
            if change_type is not None and sees_gone(node_type, info.context.viewer, event):
                yield _change(change_type, spec, node_type, event, None)
            continue
        row = await info.context.loaders.load(info, node_type, event.id, path=row_path)
        if row is None:
            continue  # not one the subscriber may see (or gone since)
        yield row if change_type is None else _change(change_type, spec, node_type, event, row)


def _change(change_type: type, spec: SubscriptionSpec, node_type: NodeType, event: Event, row: Any) -> Any:
    assert spec.row is not None
    assert event.position is not None
    return change_type(
        kind=ChangeKind(event.kind),
        id=to_global_id(node_type.name, event.id),
        cursor=encode_cursor(event.position),
        **{spec.row: row},
    )


def _change_class(info: Info, spec: SubscriptionSpec) -> type | None:
    if spec.row is None:
        return None
    field_type: Any = info._raw_info.return_type
    named = field_type.of_type if hasattr(field_type, "of_type") else field_type
    return named.extensions["strawberry-definition"].origin


async def events(info: Info, topic: str, after: str | None = None) -> AsyncIterator[Event]:
    """The topic's events (after the position `after`, if given), one at a time, each read
    afresh: its own snapshot (the transaction of the one before is over, whether it produced an
    answer or not), fresh loaders, and its own time limit. No connection is held while waiting
    for the next event."""
    context = info.context
    timeout = context.services.settings.operation_timeout_seconds
    replicas = context.services.replicas
    try:
        async with context.services.broker.subscribe(topic, after=after) as subscription:
            async for event in subscription:
                if replicas is not None:  # a replica that has replayed the event's write, or the primary
                    replica = await replicas.for_event()
                    sessions = context.services.sessionmaker if replica is None else replica.sessionmaker
                    await context.db.read_from(sessions)
                context.renew_loaders()
                context.deadline = time.monotonic() + timeout
                yield event
                await context.db.release()
    except (SubscriberTooSlow, BadPosition, PositionExpired, ResumeUnavailable) as error:
        raise stream_error(error) from error


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
