"""Privacy: tasks, notes and emails through every entry point; counts agree with what is visible."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from tests.conftest import GraphQLClient
from tests.factories import make_note, make_task, make_user


def gid(kind: str, pk: int) -> str:
    return base64.b64encode(f"{kind}:{pk}".encode()).decode()


@pytest.fixture
async def people(session: AsyncSession, token_for: Callable[[User], str]) -> dict[str, object]:
    ada = await make_user(session, username="ada", email="ada@example.com")
    bob = await make_user(session, username="bob", email="bob@example.com")
    root = await make_user(session, username="root", email="root@example.com", is_superuser=True)
    ada_task = await make_task(session, ada, title="ada's task")
    await make_task(session, bob, title="bob's task")
    ada_note = await make_note(session, ada_task, body="ada's note")
    return {
        "ada": token_for(ada),
        "bob": token_for(bob),
        "root": token_for(root),
        "anonymous": None,
        "ada_id": ada.id,
        "task": gid("Task", ada_task.id),
        "note": gid("Note", ada_note.id),
    }


VIEWERS = ("ada", "bob", "root", "anonymous")


@pytest.mark.parametrize(
    ("viewer", "titles"),
    [
        ("ada", ["ada's task"]),
        ("bob", ["bob's task"]),
        ("root", ["ada's task", "bob's task"]),
        ("anonymous", []),
    ],
)
async def test_tasks_root_list_and_count(
    gql: GraphQLClient, people: dict[str, Any], viewer: str, titles: list[str]
) -> None:
    query = "{ tasks { totalCount edges { node { title } } } }"
    tasks = (await gql(query, token=people[viewer]))["data"]["tasks"]
    assert [e["node"]["title"] for e in tasks["edges"]] == titles
    assert tasks["totalCount"] == len(titles)


@pytest.mark.parametrize(
    ("viewer", "visible"), [("ada", True), ("bob", False), ("root", True), ("anonymous", False)]
)
async def test_task_and_note_by_id(
    gql: GraphQLClient, people: dict[str, Any], viewer: str, visible: bool
) -> None:
    query = """query ($task: ID!, $note: ID!) {
      task(id: $task) { title }
      taskNode: node(id: $task) { id }
      noteNode: node(id: $note) { id ... on Note { body } }
      nodes(ids: [$task, $note]) { id }
    }"""
    data = (await gql(query, {"task": people["task"], "note": people["note"]}, token=people[viewer]))["data"]
    if visible:
        assert data["task"] == {"title": "ada's task"}
        assert data["noteNode"] == {"id": people["note"], "body": "ada's note"}
        assert data["nodes"] == [{"id": people["task"]}, {"id": people["note"]}]
    else:
        assert data == {"task": None, "taskNode": None, "noteNode": None, "nodes": [None, None]}


@pytest.mark.parametrize(("viewer", "count"), [("ada", 1), ("bob", 0), ("root", 1), ("anonymous", 0)])
async def test_nested_user_tasks_and_counts(
    gql: GraphQLClient, people: dict[str, Any], viewer: str, count: int
) -> None:
    query = """{ users(filter: {usernameStartsWith: "ada"}) { edges { node {
        tasks { totalCount edges { node { title notes { totalCount edges { node { body } } } } } }
    } } } }"""
    [user] = (await gql(query, token=people[viewer]))["data"]["users"]["edges"]
    tasks = user["node"]["tasks"]
    assert tasks["totalCount"] == len(tasks["edges"]) == count
    if count:
        assert tasks["edges"][0]["node"]["notes"] == {
            "totalCount": 1,
            "edges": [{"node": {"body": "ada's note"}}],
        }


@pytest.mark.parametrize(
    ("viewer", "emails"),
    [
        ("ada", ["ada@example.com", None, None]),
        ("bob", [None, "bob@example.com", None]),
        ("root", ["ada@example.com", "bob@example.com", "root@example.com"]),
        ("anonymous", [None, None, None]),
    ],
)
async def test_email_is_visible_to_its_owner_and_superusers(
    gql: GraphQLClient, people: dict[str, Any], viewer: str, emails: list[str | None]
) -> None:
    query = """query ($ada: ID!) {
      users { edges { node { email } } }
      user(id: $ada) { email }
      node(id: $ada) { ... on User { email } }
    }"""
    data = (await gql(query, {"ada": gid("User", people["ada_id"])}, token=people[viewer]))["data"]
    assert [e["node"]["email"] for e in data["users"]["edges"]] == emails
    assert data["user"]["email"] == data["node"]["email"] == emails[0]


async def test_viewers_sharing_a_cached_statement_each_see_their_own(
    gql: GraphQLClient, people: dict[str, Any]
) -> None:
    """Statements are cached by shape and the viewer's id is bound per request (db/where.py)."""
    query = "{ tasks { edges { node { title notes { edges { node { body } } } } } } me { email } }"
    for _ in range(2):
        for viewer, title, email in (
            ("ada", "ada's task", "ada@example.com"),
            ("bob", "bob's task", "bob@example.com"),
        ):
            data = (await gql(query, token=people[viewer]))["data"]
            assert [e["node"]["title"] for e in data["tasks"]["edges"]] == [title]
            assert data["me"] == {"email": email}
