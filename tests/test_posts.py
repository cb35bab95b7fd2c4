"""Post mutations: every error type and the database state after each."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Post, User
from tests.api import CREATE_POST, DELETE_POST, UPDATE_POST, mutate, register
from tests.conftest import GraphQLClient
from tests.factories import make_user


async def _titles(session: AsyncSession) -> list[str]:
    await session.rollback()
    return list((await session.execute(select(Post.title).order_by(Post.id))).scalars())


async def test_create_post(gql: GraphQLClient, session: AsyncSession) -> None:
    ada = await register(gql, "ada")

    payload = await mutate(
        gql, CREATE_POST, ada["accessToken"], input={"title": "  Hello  ", "content": "World"}
    )

    assert payload["__typename"] == "PostPayload"
    assert payload["post"]["title"] == "Hello"
    assert payload["post"]["author"] == {"username": "ada"}
    assert payload["post"]["datePosted"].endswith("+00:00")
    assert await _titles(session) == ["Hello"]


@pytest.mark.parametrize(
    ("given", "problems"),
    [
        ({"title": "", "content": "x"}, [("title", "title must not be empty.")]),
        ({"title": "   ", "content": "x"}, [("title", "title must not be empty.")]),
        (
            {"title": "x" * 101, "content": "x"},
            [("title", "title must be at most 100 characters (got 101).")],
        ),
        (
            {"title": "", "content": ""},
            [("title", "title must not be empty."), ("content", "content must not be empty.")],
        ),
    ],
)
async def test_create_post_validation(
    gql: GraphQLClient, session: AsyncSession, given: dict[str, str], problems: list[tuple[str, str]]
) -> None:
    ada = await register(gql, "ada")

    payload = await mutate(gql, CREATE_POST, ada["accessToken"], input=given)

    assert payload["__typename"] == "ValidationError"
    assert [(p["field"], p["message"]) for p in payload["fieldErrors"]] == problems
    assert await _titles(session) == []


async def test_create_post_needs_a_viewer(gql: GraphQLClient, session: AsyncSession) -> None:
    payload = await mutate(gql, CREATE_POST, input={"title": "Hello", "content": "First"})

    assert payload == {
        "__typename": "AuthenticationRequiredError",
        "message": "Log in first: send an access token as `Authorization: Bearer <token>`.",
        "reason": "NOT_LOGGED_IN",
    }
    assert await _titles(session) == []


async def test_update_post_is_partial(gql: GraphQLClient, session: AsyncSession) -> None:
    ada = await register(gql, "ada")
    post = (await mutate(gql, CREATE_POST, ada["accessToken"], input={"title": "Old", "content": "Body"}))[
        "post"
    ]

    renamed = await mutate(gql, UPDATE_POST, ada["accessToken"], id=post["id"], input={"title": "New"})
    nothing = await mutate(gql, UPDATE_POST, ada["accessToken"], id=post["id"], input={})

    assert renamed["post"] | {"datePosted": None} == post | {"title": "New", "datePosted": None}
    assert nothing["post"]["content"] == "Body"
    assert await _titles(session) == ["New"]


async def test_update_post_refuses_null(gql: GraphQLClient, session: AsyncSession) -> None:
    ada = await register(gql, "ada")
    post = (await mutate(gql, CREATE_POST, ada["accessToken"], input={"title": "Old", "content": "Body"}))[
        "post"
    ]

    payload = await mutate(
        gql, UPDATE_POST, ada["accessToken"], id=post["id"], input={"title": None, "content": "New"}
    )

    assert payload["fieldErrors"] == [{"field": "title", "message": "title must not be null."}]
    assert await _titles(session) == ["Old"]  # content did not change either


async def test_only_the_author_or_a_superuser_changes_a_post(
    gql: GraphQLClient, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    ada = await register(gql, "ada")
    bob = await register(gql, "bob")
    root = token_for(await make_user(session, username="root", is_superuser=True))
    post = (await mutate(gql, CREATE_POST, ada["accessToken"], input={"title": "Mine", "content": "Body"}))[
        "post"
    ]

    denied_update = await mutate(
        gql, UPDATE_POST, bob["accessToken"], id=post["id"], input={"title": "Stolen"}
    )
    denied_delete = await mutate(gql, DELETE_POST, bob["accessToken"], id=post["id"])

    assert denied_update == {
        "__typename": "PermissionDeniedError",
        "message": "Only the author of a post (or a superuser) may change it.",
    }
    assert denied_delete["__typename"] == "PermissionDeniedError"
    assert await _titles(session) == ["Mine"]

    moderated = await mutate(gql, UPDATE_POST, root, id=post["id"], input={"title": "Moderated"})
    assert moderated["post"]["title"] == "Moderated"
    assert moderated["post"]["author"] == {"username": "ada"}  # a superuser's edit keeps the author
    assert (await mutate(gql, DELETE_POST, root, id=post["id"]))["__typename"] == "DeletePostSuccess"
    assert await _titles(session) == []


async def test_delete_post(gql: GraphQLClient, session: AsyncSession) -> None:
    ada = await register(gql, "ada")
    post = (await mutate(gql, CREATE_POST, ada["accessToken"], input={"title": "Bye", "content": "x"}))[
        "post"
    ]

    deleted = await mutate(gql, DELETE_POST, ada["accessToken"], id=post["id"])
    again = await mutate(gql, DELETE_POST, ada["accessToken"], id=post["id"])

    assert deleted == {"__typename": "DeletePostSuccess", "deletedId": post["id"]}
    assert again == {
        "__typename": "NotFoundError",
        "message": "No post with that ID (or not one you may see).",
        "id": post["id"],
    }
    assert await _titles(session) == []


async def test_missing_post_is_not_found(gql: GraphQLClient) -> None:
    ada = await register(gql, "ada")
    missing = base64.b64encode(b"Post:4242").decode()

    payload = await mutate(gql, UPDATE_POST, ada["accessToken"], id=missing, input={"title": "x"})

    assert payload["__typename"] == "NotFoundError"
    assert payload["id"] == missing


async def test_a_wrong_kind_of_id_is_a_request_error(gql: GraphQLClient) -> None:
    ada = await register(gql, "ada")
    body = await gql(DELETE_POST, {"id": ada["user"]["id"]}, token=ada["accessToken"], errors=True)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
