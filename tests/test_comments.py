"""Comments: the noun added by one declaration (schema/types/comments.py), its guards and its
cascades, and what a read of comments costs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Comment, User
from tests.api import (
    ADD_COMMENT,
    CREATE_POST,
    DELETE_COMMENT,
    DELETE_ME,
    DELETE_POST,
    UPDATE_COMMENT,
    mutate,
    register,
)
from tests.conftest import GraphQLClient, StatementCounter
from tests.factories import make_comment, make_post, make_user
from tests.servers import Server
from tests.test_subscriptions import account, call
from tests.ws import GraphQLWS

COMMENT_ADDED = "subscription ($post: ID!) { commentAdded(postId: $post) { body author { username } } }"


async def _bodies(session: AsyncSession) -> list[str]:
    await session.rollback()
    return list((await session.execute(select(Comment.body).order_by(Comment.id))).scalars())


async def _post(gql: GraphQLClient, token: str, title: str = "Hello") -> str:
    created = await mutate(gql, CREATE_POST, token, input={"title": title, "content": "..."})
    return str(created["post"]["id"])


async def test_add_update_delete_and_read_back(gql: GraphQLClient, session: AsyncSession) -> None:
    ada = (await register(gql, "ada"))["accessToken"]
    bob = (await register(gql, "bob"))["accessToken"]
    post = await _post(gql, ada)

    added = (await mutate(gql, ADD_COMMENT, bob, postId=post, input={"body": "First!"}))["comment"]
    await mutate(gql, ADD_COMMENT, ada, postId=post, input={"body": "Thanks"})
    edited = await mutate(gql, UPDATE_COMMENT, bob, id=added["id"], input={"body": "First, and kind"})
    read = await gql(
        """query ($id: ID!, $post: ID!) { node(id: $id) { ... on Comment { body } }
             post(id: $post) { comments(first: 5) { totalCount edges { node { body author { username } } } } }
             user(username: "bob") { comments { edges { node { post { title } } } } } }""",
        {"id": added["id"], "post": post},
    )

    assert added["author"] == {"username": "bob"} and added["post"] == {"title": "Hello"}
    assert edited["comment"]["body"] == "First, and kind"
    assert read["data"] == {
        "node": {"body": "First, and kind"},
        "post": {
            "comments": {
                "totalCount": 2,
                "edges": [
                    {"node": {"body": "First, and kind", "author": {"username": "bob"}}},
                    {"node": {"body": "Thanks", "author": {"username": "ada"}}},
                ],
            }
        },
        "user": {"comments": {"edges": [{"node": {"post": {"title": "Hello"}}}]}},
    }
    deleted = await mutate(gql, DELETE_COMMENT, bob, id=added["id"])
    assert deleted == {"__typename": "DeleteCommentSuccess", "deletedId": added["id"]}
    assert await _bodies(session) == ["Thanks"]


async def test_bad_input_is_a_typed_error_and_writes_nothing(
    gql: GraphQLClient, session: AsyncSession
) -> None:
    ada = (await register(gql, "ada"))["accessToken"]
    post = await _post(gql, ada)
    missing_post = "UG9zdDo5OTk5OTk="  # Post:999999

    empty = await mutate(gql, ADD_COMMENT, ada, postId=post, input={"body": "  "})
    huge = await mutate(gql, ADD_COMMENT, ada, postId=post, input={"body": "x" * 10_001})
    nowhere = await mutate(gql, ADD_COMMENT, ada, postId=missing_post, input={"body": "hi"})
    anonymous = await mutate(gql, ADD_COMMENT, postId=post, input={"body": "hi"})
    wrong_kind = await gql(
        ADD_COMMENT, {"postId": "VXNlcjox", "input": {"body": "hi"}}, token=ada, errors=True
    )

    assert empty["fieldErrors"] == [{"field": "body", "message": "body must not be empty."}]
    assert huge["fieldErrors"][0]["field"] == "body"
    assert nowhere == {"__typename": "NotFoundError", "message": nowhere["message"], "id": missing_post}
    assert anonymous["__typename"] == "AuthenticationRequiredError"
    assert "postId" in wrong_kind["errors"][0]["message"]
    assert wrong_kind["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await _bodies(session) == []


async def test_who_may_change_and_delete(
    gql: GraphQLClient, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    """The author may change and delete; the post's author may delete (moderate) but not
    change; anyone else may do neither; a superuser may do both."""
    ada = (await register(gql, "ada"))["accessToken"]
    bob = (await register(gql, "bob"))["accessToken"]
    carol = (await register(gql, "carol"))["accessToken"]
    root = token_for(await make_user(session, username="root", is_superuser=True))
    post = await _post(gql, ada)
    first = (await mutate(gql, ADD_COMMENT, bob, postId=post, input={"body": "one"}))["comment"]["id"]
    second = (await mutate(gql, ADD_COMMENT, bob, postId=post, input={"body": "two"}))["comment"]["id"]

    outcomes = {
        "carol changes": await mutate(gql, UPDATE_COMMENT, carol, id=first, input={"body": "mine"}),
        "carol deletes": await mutate(gql, DELETE_COMMENT, carol, id=first),
        "post author changes": await mutate(gql, UPDATE_COMMENT, ada, id=first, input={"body": "ada's"}),
    }
    assert {name: outcome["__typename"] for name, outcome in outcomes.items()} == {
        "carol changes": "PermissionDeniedError",
        "carol deletes": "PermissionDeniedError",
        "post author changes": "PermissionDeniedError",
    }
    assert await _bodies(session) == ["one", "two"]

    assert (await mutate(gql, DELETE_COMMENT, ada, id=first))["__typename"] == "DeleteCommentSuccess"
    changed = await mutate(gql, UPDATE_COMMENT, root, id=second, input={"body": "moderated"})
    assert changed["comment"]["body"] == "moderated"
    assert (await mutate(gql, DELETE_COMMENT, root, id=second))["__typename"] == "DeleteCommentSuccess"
    gone = await mutate(gql, DELETE_COMMENT, root, id=second)
    assert gone == {"__typename": "NotFoundError", "message": gone["message"], "id": second}
    assert await _bodies(session) == []


async def test_comments_go_with_their_post_and_their_author(
    gql: GraphQLClient, session: AsyncSession
) -> None:
    ada = (await register(gql, "ada", password="analytical engine"))["accessToken"]
    bob = (await register(gql, "bob", password="difference engine"))["accessToken"]
    kept, dropped = await _post(gql, ada, "kept"), await _post(gql, ada, "dropped")
    for post in (kept, dropped):
        for token, body in ((ada, "ada on"), (bob, "bob on")):
            await mutate(gql, ADD_COMMENT, token, postId=post, input={"body": f"{body} {post}"})

    await mutate(gql, DELETE_POST, ada, id=dropped)
    assert await _bodies(session) == [f"ada on {kept}", f"bob on {kept}"]
    await mutate(gql, DELETE_ME, bob, input={"password": "difference engine"})
    assert await _bodies(session) == [f"ada on {kept}"]


async def test_a_page_of_comments_costs_what_one_comment_costs(
    gql: GraphQLClient, session: AsyncSession, statements: StatementCounter, compiled_reads: bool
) -> None:
    """Posts with comments and their authors: one statement compiled, one per level otherwise,
    however many posts and comments."""
    authors = [await make_user(session) for _ in range(3)]
    for index in range(30):
        post = await make_post(session, authors[index % 3])
        for commenter in authors[: 1 + index % 3]:
            await make_comment(session, post, commenter)
    query = """query ($n: Int!) { posts(first: $n) { edges { node { title comments(first: 5) {
                 edges { node { body author { username } } } } } } } }"""

    costs = []
    for width in (1, 30):
        await gql(query, {"n": width})  # the first sight of a document is planned, then kept
        with statements.count() as counted:
            body = await gql(query, {"n": width})
        assert len(body["data"]["posts"]["edges"]) == width
        costs.append(counted.value)

    assert costs == ([1, 1] if compiled_reads else [3, 3])


async def test_comment_added_reaches_subscribers_of_that_post(server: Server) -> None:
    ada, bob = await account(server, "ada"), await account(server, "bob")
    created = await call(server, CREATE_POST, ada, input={"title": "Live", "content": "now"})
    other = await call(server, CREATE_POST, ada, input={"title": "Other", "content": "now"})
    async with GraphQLWS(server.url) as ws, GraphQLWS(server.url) as nowhere:
        await ws.acknowledged()
        await nowhere.acknowledged()
        await ws.subscribe(COMMENT_ADDED, {"post": created["post"]["id"]})
        await nowhere.subscribe(COMMENT_ADDED, {"post": "UG9zdDo5OTk5OTk="})
        refused = await nowhere.receive()
        await asyncio.sleep(0.3)
        await call(server, ADD_COMMENT, bob, postId=other["post"]["id"], input={"body": "elsewhere"})
        await call(server, ADD_COMMENT, bob, postId=created["post"]["id"], input={"body": "hello"})

        assert (await ws.next_data())["commentAdded"] == {"body": "hello", "author": {"username": "bob"}}
        assert await ws.nothing_within(0.3)
    assert "no post with that ID" in str(refused["payload"])
