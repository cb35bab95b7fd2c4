"""The read API on demo-like data: the benchmark's query texts, unchanged, and their answers."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from tests.conftest import GraphQLClient
from tests.factories import make_note, make_post, make_task, make_user

Q1 = "{ users(first: 50) { edges { node { username posts(first: 10) { edges { node { title datePosted author { username } } } } } } } }"
Q2 = "{ tasks(first: 100, filter: {status: OPEN}) { edges { node { title status owner { username } notes(first: 5) { edges { node { body } } } } } } }"
Q3 = "{ posts(first: 100) { edges { node { id title content datePosted } } pageInfo { endCursor hasNextPage } } }"
Q5 = '{ user(username: "user42") { username posts(first: 3) { edges { node { title } } } } }'


async def test_q1_nested_users_posts_authors(gql: GraphQLClient, session: AsyncSession) -> None:
    ada = await make_user(session, username="ada")
    bob = await make_user(session, username="bob")
    await make_post(session, ada, title="First")
    await make_post(session, bob, title="Second")
    await make_post(session, ada, title="Third")

    users = (await gql(Q1))["data"]["users"]["edges"]

    assert [edge["node"]["username"] for edge in users] == ["ada", "bob"]
    ada_posts = users[0]["node"]["posts"]["edges"]
    assert [edge["node"]["title"] for edge in ada_posts] == ["First", "Third"]
    assert {edge["node"]["author"]["username"] for edge in ada_posts} == {"ada"}
    assert ada_posts[0]["node"]["datePosted"].endswith("+00:00")


async def test_q5_point_lookup(gql: GraphQLClient, session: AsyncSession) -> None:
    user = await make_user(session, username="user42")
    for title in ("a", "b", "c", "d"):
        await make_post(session, user, title=title)

    result = await gql(Q5)

    assert result["data"]["user"] == {
        "username": "user42",
        "posts": {"edges": [{"node": {"title": "a"}}, {"node": {"title": "b"}}, {"node": {"title": "c"}}]},
    }


async def test_q3_flat_page(gql: GraphQLClient, session: AsyncSession) -> None:
    user = await make_user(session)
    for i in range(3):
        await make_post(session, user, title=f"t{i}", content=f"c{i}")

    posts = (await gql(Q3))["data"]["posts"]

    assert [edge["node"]["title"] for edge in posts["edges"]] == ["t0", "t1", "t2"]
    assert posts["edges"][0]["node"]["content"] == "c0"
    assert posts["pageInfo"]["hasNextPage"] is False


async def test_q2_open_tasks_with_owner_and_notes(
    gql: GraphQLClient, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    owner = await make_user(session, username="owner")
    open_task = await make_task(session, owner, title="open one")
    await make_task(session, owner, title="done one", status="done")
    await make_note(session, open_task, body="remember")

    tasks = (await gql(Q2, token=token_for(owner)))["data"]["tasks"]["edges"]

    assert tasks == [
        {
            "node": {
                "title": "open one",
                "status": "OPEN",
                "owner": {"username": "owner"},
                "notes": {"edges": [{"node": {"body": "remember"}}]},
            }
        }
    ]
