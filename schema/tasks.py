"""The Task type, the task list arguments and the root task queries. Tasks are private."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, cast

import strawberry
from strawberry import UNSET

from db import notes as note_rows
from db import tasks as task_rows
from db.events import Event
from db.models import TaskStatus as TaskStatusValue
from db.pagination import AnyRow
from schema import notes
from schema.context import Info
from schema.errors import AuthenticationRequiredError, NotFoundError, ValidationError
from schema.events import emit
from schema.mutations import login_required, typed_refusals, viewer_id
from schema.notes import Note, NoteFilter, NoteOrder
from schema.relay import (
    CONNECTION_ARGS_DOC,
    Connection,
    Node,
    OrderDirection,
    PageRequest,
    page_request,
    pk_of,
    to_global_id,
)
from schema.selection import TASK
from schema.time import as_utc
from schema.validation import MAX_NOTES_AT_ONCE, NOTE_BODY_MAX, TASK_TITLE_MAX, Checker, changes

if TYPE_CHECKING:
    from schema.users import User

TaskStatus = strawberry.enum(TaskStatusValue, name="TaskStatus", description="Where a task stands.")


@strawberry.type(description="A to-do item. Private: only its owner and superusers see it.")
class Task(Node):
    pk: strawberry.Private[int]
    owner_pk: strawberry.Private[int]
    title: str
    status: TaskStatus  # type: ignore[valid-type]
    created_at: datetime
    # The owner, when the page this task came in loaded it along (schema/loaders.py).
    owner_object: strawberry.Private[Any] = None

    @classmethod
    def from_row(cls, row: AnyRow) -> Task:
        # Columns the query did not select are absent from the row (see schema/selection.py).
        values: Any = row._asdict()
        return cls(
            id=to_global_id("Task", row.id),
            pk=row.id,
            owner_pk=values.get("owner_id"),
            title=values.get("title"),
            status=values.get("status"),
            created_at=values.get("created_at"),
        )

    @strawberry.field
    def owner(self, info: Info) -> Annotated[User, strawberry.lazy("schema.users")]:
        # Not awaited here: see Post.author.
        if self.owner_object is not None:
            return cast("User", self.owner_object)
        return cast("User", info.context.loaders.user(info, self.owner_pk))

    @strawberry.field(description=f"This task's notes. {CONNECTION_ARGS_DOC}")
    def notes(
        self,
        info: Info,
        first: int | None = UNSET,
        after: str | None = UNSET,
        last: int | None = UNSET,
        before: str | None = UNSET,
        filter: NoteFilter | None = UNSET,
        order_by: NoteOrder | None = UNSET,
    ) -> Connection[Note]:
        request = notes.notes_request(
            info, first=first, after=after, last=last, before=before, filter=filter, order_by=order_by
        )
        # Not awaited here: graphql-core awaits the loader's future (see Post.author).
        return cast(Connection[Note], info.context.loaders.notes_of_task.load((self.pk, request)))


@strawberry.enum
class TaskOrderField(Enum):
    ID = "ID"
    CREATED_AT = "CREATED_AT"
    TITLE = "TITLE"
    STATUS = "STATUS"


@strawberry.input(description="Sort tasks by a field; ties are broken by id in the same direction.")
class TaskOrder:
    field: TaskOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="All given conditions must hold. Timestamps without an offset are UTC.")
class TaskFilter:
    status: TaskStatus | None = None  # type: ignore[valid-type]
    title_contains: str | None = strawberry.field(default=None, description="Case-insensitive substring.")
    created_after: datetime | None = None

    def to_db(self) -> task_rows.TaskFilter:
        return task_rows.TaskFilter(
            status=self.status,
            title_contains=self.title_contains,
            created_after=as_utc(self.created_after),
        )


def tasks_request(
    info: Info,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    filter: TaskFilter | None,
    order_by: TaskOrder | None,
) -> PageRequest:
    return page_request(
        info,
        TASK,
        task_rows.LISTING,
        first=first,
        after=after,
        last=last,
        before=before,
        filter=filter,
        no_filter=task_rows.TaskFilter(),
        order_by=order_by,
    )


@strawberry.type
class TaskQueries:
    @strawberry.field(
        description=f"The tasks the viewer may see, in id order by default. {CONNECTION_ARGS_DOC}"
    )
    async def tasks(
        self,
        info: Info,
        first: int | None = UNSET,
        after: str | None = UNSET,
        last: int | None = UNSET,
        before: str | None = UNSET,
        filter: TaskFilter | None = UNSET,
        order_by: TaskOrder | None = UNSET,
    ) -> Connection[Task]:
        request = tasks_request(
            info, first=first, after=after, last=last, before=before, filter=filter, order_by=order_by
        )
        return await info.context.loaders.tasks_page(request)

    @strawberry.field(description="One task by its ID; null if there is none the viewer may see.")
    async def task(self, info: Info, id: strawberry.ID) -> Task | None:
        return await info.context.loaders.task(info, pk_of(id, "Task", argument="id"))


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
    task: Task


@strawberry.type
class DeleteTaskSuccess:
    deleted_id: strawberry.ID


CreateTaskResult = Annotated[
    TaskPayload | ValidationError | AuthenticationRequiredError, strawberry.union("CreateTaskResult")
]
UpdateTaskResult = Annotated[
    TaskPayload | ValidationError | NotFoundError | AuthenticationRequiredError,
    strawberry.union("UpdateTaskResult"),
]
DeleteTaskResult = Annotated[
    DeleteTaskSuccess | NotFoundError | AuthenticationRequiredError, strawberry.union("DeleteTaskResult")
]


@strawberry.type
class TaskMutations:
    @strawberry.mutation(description="Create a task owned by the viewer.")
    @typed_refusals
    async def create_task(self, info: Info, input: CreateTaskInput) -> CreateTaskResult:
        if error := login_required(info):
            return error
        check = Checker()
        title = check.text("title", input.title, max_length=TASK_TITLE_MAX)
        bodies = [
            check.text(f"notes[{i}]", body, max_length=NOTE_BODY_MAX) for i, body in enumerate(input.notes)
        ]
        if len(bodies) > MAX_NOTES_AT_ONCE:
            check.problems["notes"] = f"notes may hold at most {MAX_NOTES_AT_ONCE} notes (got {len(bodies)})."
        if invalid := check.error():
            return invalid
        async with info.context.db.write() as session:
            row = await task_rows.create_task(
                session, owner_id=viewer_id(info), title=title, status=input.status
            )
            await emit(info, session, Event("task", "created", row.id, owner_id=row.owner_id))
            for note_id in await note_rows.insert_notes(session, row.id, bodies):
                await emit(info, session, Event("note", "created", note_id, task_id=row.id))
        return TaskPayload(task=Task.from_row(row))

    @strawberry.mutation(description="Change a task's title or status. Someone else's task is not found.")
    @typed_refusals
    async def update_task(self, info: Info, id: strawberry.ID, input: UpdateTaskInput) -> UpdateTaskResult:
        if error := login_required(info):
            return error
        pk = pk_of(id, "Task", argument="id")
        check = Checker()
        values = changes(
            title=check.text("title", input.title, max_length=TASK_TITLE_MAX),
            status=check.given("status", input.status),
        )
        if invalid := check.error():
            return invalid
        async with info.context.db.write() as session:
            row = await task_rows.update_task(session, info.context.viewer, pk, values)
            await emit(info, session, Event("task", "updated", pk, owner_id=row.owner_id))
        return TaskPayload(task=Task.from_row(row))

    @strawberry.mutation(description="Delete a task and its notes.")
    @typed_refusals
    async def delete_task(self, info: Info, id: strawberry.ID) -> DeleteTaskResult:
        if error := login_required(info):
            return error
        pk = pk_of(id, "Task", argument="id")
        async with info.context.db.write() as session:
            owner_id = await task_rows.delete_task(session, info.context.viewer, pk)
            await emit(info, session, Event("task", "deleted", pk, owner_id=owner_id))
        return DeleteTaskSuccess(deleted_id=id)
