"""The README's GraphiQL walkthrough, run as written by a newly registered user: every step's
text is read from README.md, so a step that stops working (a demo user's id, a renamed field)
fails here rather than in front of someone trying the server for the first time."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import ROOT
from tests.factories import make_task, make_user

WALKTHROUGH = re.search(r"## Walkthrough in GraphiQL\n(.*?)\n## ", (ROOT / "README.md").read_text(), re.S)


def _steps() -> tuple[list[str], str]:
    """The walkthrough's operations in order, and step 4's read-back query."""
    assert WALKTHROUGH is not None, "README.md has no walkthrough section"
    text = WALKTHROUGH.group(1)
    blocks = re.findall(r"```graphql\n(.*?)```", text, re.S)
    operations = [op.strip() for block in blocks for op in re.split(r"\n\s*\n", block) if op.strip()]
    read_back = re.search(r"Read it back: `(.*?)`", text)
    assert read_back is not None
    return operations, read_back.group(1)


async def _run(client: httpx.AsyncClient, query: str, token: str | None, **variables: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = (
        await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    ).json()
    assert "errors" not in body, (query, body)
    return body["data"]


async def test_the_walkthrough_works_as_written_for_a_new_user(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    # Someone else's task comes first, as in the demo data: an id written into the README
    # (Task 1) would be theirs, not the new user's.
    await make_task(session, await make_user(session, username="ada", email="ada@example.com"))
    (register, create_post, create_task, add_note), read_back = _steps()

    registered = (await _run(client, register, None))["register"]
    assert registered["__typename"] == "AuthPayload", registered
    token = registered["accessToken"]  # step 2: into the Headers tab
    post = (await _run(client, create_post, token))["createPost"]
    task = (await _run(client, create_task, token))["createTask"]
    note = (await _run(client, add_note, token, taskId=task["task"]["id"]))["addNote"]  # the Variables tab
    me = (await _run(client, read_back, token))["me"]

    assert post["post"]["author"]["username"] == registered["user"]["username"]
    assert note == {
        "__typename": "NotePayload",
        "note": {"body": "Ask George", "task": {"title": "Patent the idea"}},
    }
    [mine] = me["tasks"]["edges"]
    assert mine["node"]["notes"]["edges"] == [{"node": {"body": "Ask George"}}]
