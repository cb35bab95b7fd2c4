"""The Note type and the note list arguments. Notes are as private as their task."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, cast

import strawberry
from strawberry import UNSET

from db import notes as note_rows
from db.events import Event
from db.pagination import AnyRow
from schema.context import Info
from schema.errors import AuthenticationRequiredError, NotFoundError, ValidationError
from schema.events import emit
from schema.mutations import login_required, typed_refusals
from schema.relay import Node, OrderDirection, PageRequest, page_request, pk_of, to_global_id
from schema.selection import NOTE
from schema.time import as_utc
from schema.validation import NOTE_BODY_MAX, Checker, changes

if TYPE_CHECKING:
    from schema.tasks import Task


@strawberry.type(description="A note on a task.")
class Note(Node):
    pk: strawberry.Private[int]
    task_pk: strawberry.Private[int]
    body: str
    created_at: datetime
    # The task, when the page this note came in loaded it along (schema/loaders.py).
    task_object: strawberry.Private[Any] = None

    @classmethod
    def from_row(cls, row: AnyRow) -> Note:
        # Columns the query did not select are absent from the row (see schema/selection.py).
        values: Any = row._asdict()
        return cls(
            id=to_global_id("Note", row.id),
            pk=row.id,
            task_pk=values.get("task_id"),
            body=values.get("body"),
            created_at=values.get("created_at"),
        )

    @strawberry.field
    def task(self, info: Info) -> Annotated[Task, strawberry.lazy("schema.tasks")]:
        # Not awaited here: see Post.author. A visible note's task is visible.
        if self.task_object is not None:
            return cast("Task", self.task_object)
        return cast("Task", info.context.loaders.task(info, self.task_pk))


@strawberry.enum
class NoteOrderField(Enum):
    ID = "ID"
    CREATED_AT = "CREATED_AT"


@strawberry.input(description="Sort notes by a field; ties are broken by id in the same direction.")
class NoteOrder:
    field: NoteOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="All given conditions must hold. Timestamps without an offset are UTC.")
class NoteFilter:
    body_contains: str | None = strawberry.field(default=None, description="Case-insensitive substring.")
    created_after: datetime | None = None

    def to_db(self) -> note_rows.NoteFilter:
        return note_rows.NoteFilter(
            body_contains=self.body_contains, created_after=as_utc(self.created_after)
        )


def notes_request(
    info: Info,
    *,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    filter: NoteFilter | None,
    order_by: NoteOrder | None,
) -> PageRequest:
    return page_request(
        info,
        NOTE,
        note_rows.LISTING,
        first=first,
        after=after,
        last=last,
        before=before,
        filter=filter,
        no_filter=note_rows.NoteFilter(),
        order_by=order_by,
    )


@strawberry.input
class AddNoteInput:
    body: str = strawberry.field(description="Not empty; at most 10,000 characters.")


@strawberry.input(description="Only the fields given change; null is refused.")
class UpdateNoteInput:
    body: str | None = UNSET


@strawberry.type
class NotePayload:
    note: Note


@strawberry.type
class DeleteNoteSuccess:
    deleted_id: strawberry.ID


AddNoteResult = Annotated[
    NotePayload | ValidationError | NotFoundError | AuthenticationRequiredError,
    strawberry.union("AddNoteResult"),
]
UpdateNoteResult = Annotated[
    NotePayload | ValidationError | NotFoundError | AuthenticationRequiredError,
    strawberry.union("UpdateNoteResult"),
]
DeleteNoteResult = Annotated[
    DeleteNoteSuccess | NotFoundError | AuthenticationRequiredError, strawberry.union("DeleteNoteResult")
]


@strawberry.type
class NoteMutations:
    @strawberry.mutation(description="Add a note to one of the viewer's tasks.")
    @typed_refusals
    async def add_note(self, info: Info, task_id: strawberry.ID, input: AddNoteInput) -> AddNoteResult:
        if error := login_required(info):
            return error
        task_pk = pk_of(task_id, "Task", argument="taskId")
        check = Checker()
        body = check.text("body", input.body, max_length=NOTE_BODY_MAX)
        if invalid := check.error():
            return invalid
        async with info.context.db.write() as session:
            row = await note_rows.add_note(session, info.context.viewer, task_pk, body=body)
            await emit(info, session, Event("note", "created", row.id, task_id=task_pk))
        return NotePayload(note=Note.from_row(row))

    @strawberry.mutation(description="Change a note's body.")
    @typed_refusals
    async def update_note(self, info: Info, id: strawberry.ID, input: UpdateNoteInput) -> UpdateNoteResult:
        if error := login_required(info):
            return error
        pk = pk_of(id, "Note", argument="id")
        check = Checker()
        values = changes(body=check.text("body", input.body, max_length=NOTE_BODY_MAX))
        if invalid := check.error():
            return invalid
        async with info.context.db.write() as session:
            row = await note_rows.update_note(session, info.context.viewer, pk, values)
        return NotePayload(note=Note.from_row(row))

    @strawberry.mutation(description="Delete a note.")
    @typed_refusals
    async def delete_note(self, info: Info, id: strawberry.ID) -> DeleteNoteResult:
        if error := login_required(info):
            return error
        pk = pk_of(id, "Note", argument="id")
        async with info.context.db.write() as session:
            await note_rows.delete_note(session, info.context.viewer, pk)
        return DeleteNoteSuccess(deleted_id=id)
