"""Relay: global IDs, node(id:)/nodes(ids:), connection arguments and their errors."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from tests.conftest import GraphQLClient
from tests.factories import make_note, make_post, make_task, make_user

NODE = """
query ($id: ID!) {
  node(id: $id) {
    __typename id
    ... on User { username }
    ... on Post { title author { username } }
    ... on Task { title }
    ... on Note { body task { title } }
  }
}
"""


async def test_node_refetches_every_type(
    gql: GraphQLClient, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    user = await make_user(session, username="ada")
    token = token_for(user)
    post = await make_post(session, user, title="hello")
    task = await make_task(session, user, title="chores")
    note = await make_note(session, task, body="milk")
    users = (await gql("{ users { edges { node { id } } } }"))["data"]["users"]["edges"]
    user_id = users[0]["node"]["id"]

    assert (await gql(NODE, {"id": user_id}))["data"]["node"] == {
        "__typename": "User",
        "id": user_id,
        "username": "ada",
    }
    post_id = base64.b64encode(f"Post:{post.id}".encode()).decode()
    assert (await gql(NODE, {"id": post_id}))["data"]["node"]["author"] == {"username": "ada"}
    task_id = base64.b64encode(f"Task:{task.id}".encode()).decode()
    assert (await gql(NODE, {"id": task_id}, token=token))["data"]["node"]["title"] == "chores"
    note_id = base64.b64encode(f"Note:{note.id}".encode()).decode()
    assert (await gql(NODE, {"id": note_id}, token=token))["data"]["node"] == {
        "__typename": "Note",
        "id": note_id,
        "body": "milk",
        "task": {"title": "chores"},
    }


async def test_nodes_keeps_order_and_nulls_missing(gql: GraphQLClient, session: AsyncSession) -> None:
    user = await make_user(session, username="ada")
    post = await make_post(session, user, title="p")
    ids = [
        base64.b64encode(f"Post:{post.id}".encode()).decode(),
        base64.b64encode(b"Post:999999").decode(),
        base64.b64encode(f"User:{user.id}".encode()).decode(),
    ]

    nodes = (await gql("query ($ids: [ID!]!) { nodes(ids: $ids) { __typename } }", {"ids": ids}))["data"][
        "nodes"
    ]

    assert nodes == [{"__typename": "Post"}, None, {"__typename": "User"}]


def _cursor(token: str, values: list[object]) -> str:
    """A hand-made cursor, as a client tampering with one would send."""
    return base64.urlsafe_b64encode(json.dumps([token, values]).encode()).decode().rstrip("=")


def _posts_after(cursor: str, field: str) -> str:
    return '{ posts(after: "' + cursor + '", orderBy: {field: ' + field + "}) { totalCount } }"


@pytest.mark.parametrize(
    ("query", "argument", "message"),
    [
        ("{ posts(first: 101) { totalCount } }", "first", "first must be between 0 and 100, got 101."),
        ("{ posts(first: -1) { totalCount } }", "first", "first must be between 0 and 100, got -1."),
        ("{ posts(last: 500) { totalCount } }", "last", "last must be between 0 and 100, got 500."),
        ("{ posts(first: 1, last: 1) { totalCount } }", "first", "Pass either first or last, not both."),
        ('{ posts(after: "garbage!") { totalCount } }', "after", "after: malformed cursor 'garbage!'."),
        (
            _posts_after(_cursor("DATE_POSTED:ASC", ["soon", 1]), "DATE_POSTED"),
            "after",
            "after: the cursor's sort value is not a datetime.",
        ),
        (
            _posts_after(_cursor("ID:ASC", ["x"]), "ID"),
            "after",
            "after: the cursor does not hold a position in this list.",
        ),
        ('{ node(id: "nope") { id } }', "id", "id: 'nope' is not a valid ID."),
        ('{ post(id: "VXNlcjox") { id } }', "id", "id: expected the ID of a Post, got a User's."),
        ('{ user(id: "VXNlcjox", username: "a") { id } }', "id", "Give exactly one of by, id or username."),
        (
            '{ user(by: {id: "VXNlcjox"}, username: "a") { id } }',
            "username",
            "Give exactly one of by, id or username.",
        ),
        ('{ user(by: {id: "nope"}) { id } }', "id", "id: 'nope' is not a valid ID."),
    ],
)
async def test_bad_arguments_are_clear_typed_errors(
    gql: GraphQLClient, query: str, argument: str, message: str
) -> None:
    body = await gql(query, errors=True)

    [error] = body["errors"]
    assert error["message"] == message
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == argument


async def test_first_defaults_to_twenty_and_page_info(gql: GraphQLClient, session: AsyncSession) -> None:
    user = await make_user(session)
    for _ in range(25):
        await make_post(session, user)
    query = "query ($after: String) { posts(after: $after) { edges { cursor } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount } }"

    first = (await gql(query))["data"]["posts"]
    second = (await gql(query, {"after": first["pageInfo"]["endCursor"]}))["data"]["posts"]

    assert len(first["edges"]) == 20
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["hasPreviousPage"] is False
    assert first["pageInfo"]["startCursor"] == first["edges"][0]["cursor"]
    assert len(second["edges"]) == 5
    assert second["pageInfo"] | {"startCursor": None, "endCursor": None} == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": None,
        "endCursor": None,
    }
    assert first["totalCount"] == second["totalCount"] == 25


async def test_empty_list_has_null_cursors(gql: GraphQLClient) -> None:
    posts = await gql(
        "{ posts { edges { cursor } pageInfo { startCursor endCursor hasNextPage } totalCount } }"
    )
    assert posts["data"]["posts"] == {
        "edges": [],
        "pageInfo": {"startCursor": None, "endCursor": None, "hasNextPage": False},
        "totalCount": 0,
    }
