"""Task and note mutations: errors, partial updates, cascades, and what other users cannot do."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Note, Task, User
from tests.api import (
    ADD_NOTE,
    CREATE_TASK,
    DELETE_NOTE,
    DELETE_TASK,
    UPDATE_NOTE,
    UPDATE_TASK,
    mutate,
    register,
)
from tests.conftest import GraphQLClient
from tests.factories import make_user


async def _rows(session: AsyncSession) -> tuple[list[tuple[str, str]], list[str]]:
    await session.rollback()
    tasks = [
        (t.title, t.status.value) for t in (await session.execute(select(Task).order_by(Task.id))).scalars()
    ]
    notes = list((await session.execute(select(Note.body).order_by(Note.id))).scalars())
    return tasks, notes


async def test_create_update_delete_task_with_notes(gql: GraphQLClient, session: AsyncSession) -> None:
    ada = (await register(gql, "ada"))["accessToken"]

    task = (await mutate(gql, CREATE_TASK, ada, input={"title": "Chores"}))["task"]
    note = (await mutate(gql, ADD_NOTE, ada, taskId=task["id"], input={"body": "milk"}))["note"]
    await mutate(gql, ADD_NOTE, ada, taskId=task["id"], input={"body": "eggs"})
    started = (await mutate(gql, UPDATE_TASK, ada, id=task["id"], input={"status": "IN_PROGRESS"}))["task"]
    edited = (await mutate(gql, UPDATE_NOTE, ada, id=note["id"], input={"body": "oat milk"}))["note"]

    assert task["status"] == "OPEN" and task["owner"] == {"username": "ada"}
    assert note["task"] == {"id": task["id"], "title": "Chores"}
    assert (started["title"], started["status"]) == ("Chores", "IN_PROGRESS")
    assert edited["body"] == "oat milk"
    assert await _rows(session) == ([("Chores", "in_progress")], ["oat milk", "eggs"])

    assert (await mutate(gql, DELETE_NOTE, ada, id=note["id"]))["__typename"] == "DeleteNoteSuccess"
    assert await _rows(session) == ([("Chores", "in_progress")], ["eggs"])
    assert (await mutate(gql, DELETE_TASK, ada, id=task["id"]))["deletedId"] == task["id"]
    assert await _rows(session) == ([], [])  # its notes went with it


async def test_task_and_note_validation(gql: GraphQLClient, session: AsyncSession) -> None:
    ada = (await register(gql, "ada"))["accessToken"]
    task = (await mutate(gql, CREATE_TASK, ada, input={"title": "Chores"}))["task"]

    too_long = await mutate(gql, CREATE_TASK, ada, input={"title": "x" * 256})
    null_status = await mutate(gql, UPDATE_TASK, ada, id=task["id"], input={"status": None})
    empty_note = await mutate(gql, ADD_NOTE, ada, taskId=task["id"], input={"body": " "})
    huge_note = await mutate(gql, ADD_NOTE, ada, taskId=task["id"], input={"body": "x" * 10_001})

    assert too_long["fieldErrors"] == [
        {"field": "title", "message": "title must be at most 255 characters (got 256)."}
    ]
    assert null_status["fieldErrors"] == [{"field": "status", "message": "status must not be null."}]
    assert empty_note["fieldErrors"] == [{"field": "body", "message": "body must not be empty."}]
    assert huge_note["fieldErrors"][0]["field"] == "body"
    assert await _rows(session) == ([("Chores", "open")], [])


async def test_someone_elses_task_is_not_found(gql: GraphQLClient, session: AsyncSession) -> None:
    """Tasks are private: to anyone else they do not exist, so every attempt is NotFoundError."""
    ada = (await register(gql, "ada"))["accessToken"]
    bob = (await register(gql, "bob"))["accessToken"]
    task = (await mutate(gql, CREATE_TASK, ada, input={"title": "Secret"}))["task"]
    note = (await mutate(gql, ADD_NOTE, ada, taskId=task["id"], input={"body": "hidden"}))["note"]

    attempts = [
        await mutate(gql, UPDATE_TASK, bob, id=task["id"], input={"title": "Mine now"}),
        await mutate(gql, DELETE_TASK, bob, id=task["id"]),
        await mutate(gql, ADD_NOTE, bob, taskId=task["id"], input={"body": "sneaky"}),
        await mutate(gql, UPDATE_NOTE, bob, id=note["id"], input={"body": "changed"}),
        await mutate(gql, DELETE_NOTE, bob, id=note["id"]),
    ]

    assert [attempt["__typename"] for attempt in attempts] == ["NotFoundError"] * 5
    assert attempts[0]["id"] == task["id"] and attempts[3]["id"] == note["id"]
    assert await _rows(session) == ([("Secret", "open")], ["hidden"])


async def test_a_superuser_may_change_any_task(
    gql: GraphQLClient, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    ada = (await register(gql, "ada"))["accessToken"]
    root = token_for(await make_user(session, is_superuser=True))
    task = (await mutate(gql, CREATE_TASK, ada, input={"title": "Chores"}))["task"]

    done = await mutate(gql, UPDATE_TASK, root, id=task["id"], input={"status": "DONE"})
    note = await mutate(gql, ADD_NOTE, root, taskId=task["id"], input={"body": "checked"})

    assert done["task"]["owner"] == {"username": "ada"}
    assert note["__typename"] == "NotePayload"
    assert await _rows(session) == ([("Chores", "done")], ["checked"])


async def test_anonymous_writes_need_a_login(gql: GraphQLClient, session: AsyncSession) -> None:
    payload = await mutate(gql, CREATE_TASK, input={"title": "x"})
    assert payload["reason"] == "NOT_LOGGED_IN"
    assert (await session.execute(select(func.count()).select_from(Task))).scalar_one() == 0


async def test_a_task_created_with_notes_gets_all_or_none(gql: GraphQLClient, session: AsyncSession) -> None:
    ada = (await register(gql, "ada"))["accessToken"]

    made = await mutate(gql, CREATE_TASK, ada, input={"title": "Trip", "notes": ["tickets", "hotel"]})
    refused = await mutate(gql, CREATE_TASK, ada, input={"title": "Other", "notes": ["fine", " "]})
    too_many = await mutate(gql, CREATE_TASK, ada, input={"title": "Many", "notes": ["n"] * 21})

    assert made["__typename"] == "TaskPayload"
    assert refused["fieldErrors"] == [{"field": "notes[1]", "message": "notes[1] must not be empty."}]
    assert too_many["fieldErrors"][0]["field"] == "notes"
    assert await _rows(session) == ([("Trip", "open")], ["tickets", "hotel"])
