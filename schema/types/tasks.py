"""The Task type, the root task queries, the task mutations and subscriptions. Tasks are private."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import UNSET

from db import models, visibility, writes
from db.events import Event, EventOf
from db.models import TaskStatus as TaskStatusValue
from db.models import utcnow
from db.visibility import can_see_task
from schema.declare import (
    CountFilter,
    after,
    by_id,
    column,
    connection,
    contains,
    counted,
    equals,
    lookup,
    node,
    to_one,
)
from schema.declare.nodes import declared, linked, node_type_named
from schema.declare.subscriptions import by, changed
from schema.errors import AuthenticationRequiredError, NotFoundError, StaleVersionError, ValidationError
from schema.execution.context import Info
from schema.mutations import VERSION_DOC, ExpectedVersion, signed_in, typed_refusals, update_linked
from schema.realtime.events import emit
from schema.realtime.streams import Change
from schema.relay import CONNECTION_ARGS_DOC, Connection, Node, pk_of
from schema.validation import MAX_NOTES_AT_ONCE, NOTE_BODY_MAX, TASK_TITLE_MAX, Checker, changes

if TYPE_CHECKING:
    from schema.types.notes import Note
    from schema.types.users import User

TaskStatus = strawberry.enum(TaskStatusValue, name="TaskStatus", description="Where a task stands.")


@strawberry.input(description="All given conditions must hold. Timestamps without an offset are UTC.")
class TaskFilter:
    status: TaskStatus | None = equals("status")  # type: ignore[valid-type]
    title_contains: str | None = contains("title")
    created_after: datetime | None = after("created_at")
    note_count: CountFilter | None = counted("Note", "task_id", description="Tasks with so many notes.")


@node(models.Task, visible=can_see_task, sort=("created_at", "title", "status"), filter=TaskFilter)
@strawberry.type(description="A to-do item. Private: only its owner and superusers see it.")
class Task(Node):
    title: str = column()
    status: TaskStatus = column()  # type: ignore[valid-type]
    created_at: datetime = column()
    version: int = column(description=VERSION_DOC)
    owner: Annotated[User, strawberry.lazy("schema.types.users")] = to_one("owner_id")
    notes: Connection[Annotated[Note, strawberry.lazy("schema.types.notes")]] = connection(
        "task_id", description=f"This task's notes. {CONNECTION_ARGS_DOC}"
    )


TASKS = declared(Task)


@strawberry.type
class Queries:
    tasks: Connection[Task] = connection(
        description=f"The tasks the viewer may see, in id order by default. {CONNECTION_ARGS_DOC}"
    )
    task: Task | None = lookup(
        by_id(), description="One task by its ID; null if there is none the viewer may see."
    )


@strawberry.input
class CreateTaskInput:
    title: str = strawberry.field(description="1 to 255 characters (surrounding spaces are dropped).")
    status: TaskStatus = TaskStatus.OPEN  # type: ignore[valid-type]
    notes: list[str] = strawberry.field(
        default_factory=list,
        description=f"Notes created with the task, all or none (at most {MAX_NOTES_AT_ONCE}).",
    )


@strawberry.input(description="Only the fields given change; null is refused for both.")
class UpdateTaskInput:
    title: str | None = UNSET
    status: TaskStatus | None = UNSET  # type: ignore[valid-type]


@strawberry.type
class TaskPayload:
    task: Task = to_one("task")


@strawberry.type
class DeleteTaskSuccess:
    deleted_id: strawberry.ID


CreateTaskResult = Annotated[
    TaskPayload | ValidationError | AuthenticationRequiredError, strawberry.union("CreateTaskResult")
]
UpdateTaskResult = Annotated[
    TaskPayload | ValidationError | NotFoundError | StaleVersionError | AuthenticationRequiredError,
    strawberry.union("UpdateTaskResult"),
]
DeleteTaskResult = Annotated[
    DeleteTaskSuccess | NotFoundError | StaleVersionError | AuthenticationRequiredError,
    strawberry.union("DeleteTaskResult"),
]


@strawberry.type
class Mutations:
    @strawberry.mutation(description="Create a task owned by the viewer.")
    @typed_refusals
    async def create_task(self, info: Info, input: CreateTaskInput) -> CreateTaskResult:
        owner_id = signed_in(info)
        check = Checker()
        title = check.text("title", input.title, max_length=TASK_TITLE_MAX)
        bodies = [
            check.text(f"notes[{i}]", body, max_length=NOTE_BODY_MAX) for i, body in enumerate(input.notes)
        ]
        if len(bodies) > MAX_NOTES_AT_ONCE:
            check.problems["notes"] = f"notes may hold at most {MAX_NOTES_AT_ONCE} notes (got {len(bodies)})."
        check.done()
        now = utcnow()
        values = {"owner_id": owner_id, "title": title, "status": input.status, "created_at": now}
        async with info.context.db.write() as session:
            row = await writes.insert_row(session, TASKS.table, values)
            await emit(info, session, Event("task", "created", row.id, owner_id=row.owner_id))
            notes = [{"task_id": row.id, "body": body, "created_at": now} for body in bodies]
            for note in await writes.insert_rows(session, node_type_named("Note").table, notes):
                await emit(info, session, Event("note", "created", note.id, parent_id=row.id))
        return linked(TaskPayload(), task=row.id)

    @strawberry.mutation(description="Change a task's title or status. Someone else's task is not found.")
    @typed_refusals
    async def update_task(
        self, info: Info, id: strawberry.ID, input: UpdateTaskInput, expected_version: ExpectedVersion = None
    ) -> UpdateTaskResult:
        signed_in(info)
        pk = pk_of(id, "Task", argument="id")
        check = Checker()
        values = changes(
            title=check.text("title", input.title, max_length=TASK_TITLE_MAX),
            status=check.given("status", input.status),
        )
        check.done()
        updated = EventOf("task", "updated", owner="owner_id")
        return await update_linked(
            info,
            TASKS,
            visibility.TASKS,
            pk,
            values,
            updated,
            TaskPayload(),
            "task",
            expected_version=expected_version,
        )

    @strawberry.mutation(description="Delete a task and its notes.")
    @typed_refusals
    async def delete_task(
        self, info: Info, id: strawberry.ID, expected_version: ExpectedVersion = None
    ) -> DeleteTaskResult:
        signed_in(info)
        pk = pk_of(id, "Task", argument="id")
        async with info.context.db.write() as session:
            row = await writes.delete_row(
                session, visibility.TASKS, info.context.viewer, pk, expected_version=expected_version
            )
            await emit(info, session, Event("task", "deleted", pk, owner_id=row.owner_id))
        return DeleteTaskSuccess(deleted_id=id)


@strawberry.type(description="A task created, changed or deleted.")
class TaskChange(Change):
    task: Task | None = strawberry.field(description="The task as it is now; null when it was deleted.")


@strawberry.type
class Subscriptions:
    task_changed: TaskChange = changed(
        row="task",
        login=True,
        narrowed_by=(by("task_id", "id", "Task"),),
        description="The viewer's tasks (all tasks for a superuser) created, changed or deleted.",
    )
