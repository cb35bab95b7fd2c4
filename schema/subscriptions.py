"""Subscriptions: live posts, task boards and notes, over WebSocket (web/graphql_ws.py).

Each subscription operation has its own session (schema/extensions.py); it holds a connection
only while it reads an event's row, and fresh loaders per event, so nothing stale is served.
Every event is re-read under the subscriber's own permissions (db/visibility.py): nobody
receives another user's private task, whichever process the change happened in.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from enum import Enum

import strawberry
from graphql import GraphQLError

from db.events import Event, SubscriberTooSlow
from db.visibility import may_see_owned_by
from schema.context import Info
from schema.errors import BadInput
from schema.mutations import login_required
from schema.notes import Note
from schema.posts import Post
from schema.relay import pk_of, to_global_id
from schema.tasks import Task
from schema.tokens import AuthFailure


@strawberry.enum(description="What happened to the object.")
class ChangeKind(Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@strawberry.type(description="A post was created, changed or deleted.")
class PostChange:
    kind: ChangeKind
    id: strawberry.ID
    post: Post | None = strawberry.field(description="The post as it is now; null when it was deleted.")


@strawberry.type(description="A task was created, changed or deleted.")
class TaskChange:
    kind: ChangeKind
    id: strawberry.ID
    task: Task | None = strawberry.field(description="The task as it is now; null when it was deleted.")


async def _events(info: Info, topic: str) -> AsyncIterator[Event]:
    """The topic's events, one at a time, with a fresh start (new loaders) for each; the
    operation's session gives its connection back before the next event is awaited."""
    context = info.context
    async with context.services.broker.subscribe(topic) as subscription:
        try:
            async for event in subscription:
                context.renew_loaders()
                yield event
                # Reached when the subscriber asks for the next event: this one's answer is out.
                await context.db.release()
        except SubscriberTooSlow as too_slow:
            raise GraphQLError(str(too_slow), extensions={"code": "SUBSCRIBER_TOO_SLOW"}) from too_slow


def _optional_pk(global_id: str | None, type_name: str, argument: str) -> int | None:
    return pk_of(global_id, type_name, argument=argument) if global_id else None


@strawberry.type
class Subscription:
    @strawberry.subscription(description="New posts, by anyone or by one author.")
    async def post_created(
        self, info: Info, author_id: strawberry.ID | None = None
    ) -> AsyncGenerator[Post, None]:
        author = _optional_pk(author_id, "User", "authorId")
        async for event in _events(info, "post"):
            if event.kind == "created" and author in (None, event.owner_id):
                post = await info.context.loaders.post(info, event.id)
                if post is not None:
                    yield post

    @strawberry.subscription(
        description="Posts created, changed or deleted; by anyone, one author, or one post."
    )
    async def post_changed(
        self, info: Info, author_id: strawberry.ID | None = None, id: strawberry.ID | None = None
    ) -> AsyncGenerator[PostChange, None]:
        author, post_pk = _optional_pk(author_id, "User", "authorId"), _optional_pk(id, "Post", "id")
        async for event in _events(info, "post"):
            if author in (None, event.owner_id) and post_pk in (None, event.id):
                post = (
                    None
                    if event.kind == "deleted"
                    else await info.context.loaders.post(info, event.id, path=("post",))
                )
                if post is not None or event.kind == "deleted":
                    yield PostChange(
                        kind=ChangeKind(event.kind), id=to_global_id("Post", event.id), post=post
                    )

    @strawberry.subscription(
        description="The viewer's tasks (all tasks for a superuser) created, changed or deleted."
    )
    async def task_changed(
        self, info: Info, task_id: strawberry.ID | None = None
    ) -> AsyncGenerator[TaskChange, None]:
        if error := login_required(info):
            raise _refused(error.message, error.reason)
        task_pk = _optional_pk(task_id, "Task", "taskId")
        viewer = info.context.viewer
        async for event in _events(info, "task"):
            if task_pk not in (None, event.id):
                continue
            if event.kind == "deleted":
                # The row is gone, so the rule is checked against the owner the event carries.
                if event.owner_id is not None and may_see_owned_by(viewer, event.owner_id):
                    yield TaskChange(kind=ChangeKind.DELETED, id=to_global_id("Task", event.id), task=None)
                continue
            task = await info.context.loaders.task(info, event.id, path=("task",))  # None: not the viewer's
            if task is not None:
                yield TaskChange(kind=ChangeKind(event.kind), id=to_global_id("Task", event.id), task=task)

    @strawberry.subscription(description="Notes added to one of the viewer's tasks.")
    async def note_added(self, info: Info, task_id: strawberry.ID) -> AsyncGenerator[Note, None]:
        if error := login_required(info):
            raise _refused(error.message, error.reason)
        task_pk = pk_of(task_id, "Task", argument="taskId")
        if await info.context.loaders.task(info, task_pk, path=("task",)) is None:
            raise BadInput("taskId: no task with that ID (or not one you may see).", argument="taskId")
        await info.context.db.release()
        async for event in _events(info, "note"):
            if event.kind == "created" and event.task_id == task_pk:
                note = await info.context.loaders.note(info, event.id)
                if note is not None:
                    yield note


def _refused(message: str, reason: AuthFailure) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "UNAUTHENTICATED", "reason": reason.value})
