"""What the subscription fields of schema/types share: the stream of a topic's events, one
fresh start per event, and the kinds of change."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from enum import Enum

import strawberry
from graphql import GraphQLError

from db.events import Event, SubscriberTooSlow
from schema.declare.specs import resolver_only
from schema.errors import AuthFailure
from schema.execution.context import Info
from schema.relay import pk_of

# The resolvers read each event once per subscriber, under the subscriber's rights.
EACH_SUBSCRIBER_READS = resolver_only("each event is read by the resolvers, once per subscriber")


@strawberry.enum(description="What happened to the object.")
class ChangeKind(Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


async def events(info: Info, topic: str) -> AsyncIterator[Event]:
    """The topic's events, one at a time, each read afresh: its own snapshot (the transaction of
    the one before is over, whether it produced an answer or not), fresh loaders, and its own
    time limit. No connection is held while waiting for the next event."""
    context = info.context
    timeout = context.services.settings.operation_timeout_seconds
    async with context.services.broker.subscribe(topic) as subscription:
        try:
            async for event in subscription:
                context.renew_loaders()
                context.deadline = time.monotonic() + timeout
                yield event
                await context.db.release()
        except SubscriberTooSlow as too_slow:
            raise GraphQLError(str(too_slow), extensions={"code": "SUBSCRIBER_TOO_SLOW"}) from too_slow


def optional_pk(global_id: str | None, type_name: str, argument: str) -> int | None:
    return pk_of(global_id, type_name, argument=argument) if global_id else None


def refused(message: str, reason: AuthFailure) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "UNAUTHENTICATED", "reason": reason.value})
