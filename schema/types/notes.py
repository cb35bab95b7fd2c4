"""The Note type, the note mutations and the noteAdded subscription. Notes are as private as their task."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from sqlalchemy import select
from strawberry import UNSET

from db import models, visibility, writes
from db.events import Event, EventOf
from db.models import table_of, utcnow
from db.visibility import can_see_note
from schema.declare import after, column, contains, node, to_one
from schema.declare.nodes import declared
from schema.declare.subscriptions import added, by, changed, parent
from schema.errors import AuthenticationRequiredError, NotFoundError, StaleVersionError, ValidationError
from schema.execution.context import Info
from schema.mutations import (
    VERSION_DOC,
    ExpectedVersion,
    insert_linked,
    signed_in,
    typed_refusals,
    update_linked,
)
from schema.realtime.events import emit
from schema.realtime.streams import Change
from schema.relay import Node, pk_of
from schema.validation import NOTE_BODY_MAX, Checker, changes

if TYPE_CHECKING:
    from schema.types.tasks import Task


@strawberry.input(description="All given conditions must hold. Timestamps without an offset are UTC.")
class NoteFilter:
    body_contains: str | None = contains("body")
    created_after: datetime | None = after("created_at")


@node(models.Note, visible=can_see_note, sort=("created_at",), filter=NoteFilter)
@strawberry.type(description="A note on a task.")
class Note(Node):
    body: str = column()
    created_at: datetime = column()
    version: int = column(description=VERSION_DOC)
    # A visible note's task is visible.
    task: Annotated[Task, strawberry.lazy("schema.types.tasks")] = to_one("task_id")


NOTES = declared(Note)
NOTE_CREATED = EventOf("note", "created", parent="task_id")
NOTE_UPDATED = EventOf("note", "updated", parent="task_id")
tasks = table_of(models.Task)


@strawberry.input
class AddNoteInput:
    body: str = strawberry.field(description="Not empty; at most 10,000 characters.")


@strawberry.input(description="Only the fields given change; null is refused.")
class UpdateNoteInput:
    body: str | None = UNSET


@strawberry.type
class NotePayload:
    note: Note = to_one("note")


@strawberry.type
class DeleteNoteSuccess:
    deleted_id: strawberry.ID


AddNoteResult = Annotated[
    NotePayload | ValidationError | NotFoundError | AuthenticationRequiredError,
    strawberry.union("AddNoteResult"),
]
UpdateNoteResult = Annotated[
    NotePayload | ValidationError | NotFoundError | StaleVersionError | AuthenticationRequiredError,
    strawberry.union("UpdateNoteResult"),
]
DeleteNoteResult = Annotated[
    DeleteNoteSuccess | NotFoundError | StaleVersionError | AuthenticationRequiredError,
    strawberry.union("DeleteNoteResult"),
]


@strawberry.type
class Mutations:
    @strawberry.mutation(description="Add a note to one of the viewer's tasks.")
    @typed_refusals
    async def add_note(self, info: Info, task_id: strawberry.ID, input: AddNoteInput) -> AddNoteResult:
        signed_in(info)
        task_pk = pk_of(task_id, "Task", argument="taskId")
        check = Checker()
        body = check.text("body", input.body, max_length=NOTE_BODY_MAX)
        check.done()
        values = {"task_id": task_pk, "body": body, "created_at": utcnow()}
        guarded_by = (visibility.TASKS, task_pk)
        return await insert_linked(
            info, NOTES, values, NOTE_CREATED, NotePayload(), "note", guarded_by=guarded_by
        )

    @strawberry.mutation(description="Change a note's body.")
    @typed_refusals
    async def update_note(
        self, info: Info, id: strawberry.ID, input: UpdateNoteInput, expected_version: ExpectedVersion = None
    ) -> UpdateNoteResult:
        signed_in(info)
        pk = pk_of(id, "Note", argument="id")
        check = Checker()
        values = changes(body=check.text("body", input.body, max_length=NOTE_BODY_MAX))
        check.done()
        return await update_linked(
            info,
            NOTES,
            visibility.NOTES,
            pk,
            values,
            NOTE_UPDATED,
            NotePayload(),
            "note",
            expected_version=expected_version,
        )

    @strawberry.mutation(description="Delete a note.")
    @typed_refusals
    async def delete_note(
        self, info: Info, id: strawberry.ID, expected_version: ExpectedVersion = None
    ) -> DeleteNoteResult:
        signed_in(info)
        pk = pk_of(id, "Note", argument="id")
        async with info.context.db.write() as session:
            row = await writes.delete_row(
                session, visibility.NOTES, info.context.viewer, pk, expected_version=expected_version
            )
            # Who may hear of a note that is gone is its task's owner (streams.py's sees_gone).
            owner_id = await session.scalar(select(tasks.c.owner_id).where(tasks.c.id == row.task_id))
            await emit(info, session, Event("note", "deleted", pk, owner_id=owner_id, parent_id=row.task_id))
        return DeleteNoteSuccess(deleted_id=id)


@strawberry.type(description="A note added, changed or deleted.")
class NoteChange(Change):
    note: Note | None = strawberry.field(description="The note as it is now; null when it was deleted.")


@strawberry.type
class Subscriptions:
    note_added: Note = added(
        login=True,
        narrowed_by=(parent("task_id", "Task"),),
        description="Notes added to one of the viewer's tasks.",
    )
    note_changed: NoteChange = changed(
        row="note",
        login=True,
        narrowed_by=(by("task_id", "parent_id", "Task"),),
        description="Notes of the viewer's tasks (all, for a superuser) added, changed or deleted.",
    )
