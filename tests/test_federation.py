"""Quill as an Apollo Federation v2 subgraph (FEDERATION=1; schema/federation.py).

Directly: `_service { sdl }` and `_entities` (batched, under the visibility rules). Through a real
Apollo gateway from npm (tests/node/federation/gateway.mjs), composing Quill with a second
subgraph that extends User: fields of both subgraphs in one answer, and entity references the
other subgraph makes, resolved by Quill.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from db.models import User
from schema.relay import to_global_id
from settings import Settings
from tests.conftest import GraphQLClient, StatementCounter
from tests.factories import make_post, make_task, make_user
from tests.servers import Server

SERVICE = "{ _service { sdl } }"
ENTITIES = """query ($representations: [_Any!]!) { _entities(representations: $representations) {
  __typename ... on User { username email } ... on Post { title author { username } }
  ... on Comment { body } } }"""


@asynccontextmanager
async def federated(settings: Settings) -> AsyncIterator[tuple[Starlette, GraphQLClient]]:
    from server import create_app

    app = create_app(replace(settings, federation=True))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, GraphQLClient(http)


def user_ref(user: User) -> dict[str, str]:
    return {"__typename": "User", "id": to_global_id("User", user.id)}


async def test_the_subgraph_sdl_keys_the_entities_and_leaves_out_what_a_gateway_does_not_take(
    settings: Settings,
) -> None:
    async with federated(settings) as (_, gql):
        sdl = (await gql(SERVICE))["data"]["_service"]["sdl"]
    assert sdl.startswith('extend schema @link(url: "https://specs.apollo.dev/federation/v2.3"')
    for name in ("User", "Post", "Comment"):
        assert f'type {name} implements Node @key(fields: "id") {{' in sdl
    assert "type Task implements Node {" in sdl  # private rows: not an entity
    assert "type Subscription" not in sdl and "directive @defer" not in sdl
    assert "_entities" not in sdl and "_Any" not in sdl


async def test_the_plain_schema_has_no_federation_fields(gql: GraphQLClient) -> None:
    body = await gql(SERVICE, errors=True)
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "_service" in body["errors"][0]["message"]


async def test_entities_are_read_in_one_statement_as_the_viewer_may_see_them(
    settings: Settings, compiled_reads: bool
) -> None:
    async with federated(settings) as (app, gql):
        async with app.state.services.sessionmaker() as session:
            ada, bob = await make_user(session, username="ada"), await make_user(session, username="bob")
            post = await make_post(session, ada, title="Hello")
            task = await make_task(session, ada, title="Private")
        representations = [
            user_ref(bob),
            {"__typename": "Post", "id": to_global_id("Post", post.id)},
            user_ref(ada),
            {"__typename": "Task", "id": to_global_id("Task", task.id)},  # not an entity: null
            {"__typename": "User", "id": to_global_id("Post", post.id)},  # a Post's ID: null
        ]
        with StatementCounter().listening(app) as counter, counter.count() as statements:
            body = await gql(ENTITIES, {"representations": representations})
    assert body["data"]["_entities"] == [
        {"__typename": "User", "username": "bob", "email": None},  # someone else's email
        {"__typename": "Post", "title": "Hello", "author": {"username": "ada"}},
        {"__typename": "User", "username": "ada", "email": None},
        None,
        None,
    ]
    # One compiled statement; on the resolvers, one per type (users, posts, the post's author).
    assert len(statements.statements) <= (1 if compiled_reads else 3)


async def test_a_representation_without_a_key_is_a_clear_error(settings: Settings) -> None:
    async with federated(settings) as (_, gql):
        body = await gql(ENTITIES, {"representations": [{"__typename": "User"}]}, errors=True)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "representations" in error["message"]


@pytest.fixture
def gateway_tools(node_tools: Path) -> Path:
    return node_tools / "federation"


@pytest.fixture
def quill_subgraph(database_url: str, tmp_path: Path) -> Iterator[Server]:
    running = Server(database_url, env={"FEDERATION": "1"}, log_path=tmp_path / "uvicorn.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@asynccontextmanager
async def gateway(tools: Path, quill: Server, featured: list[str]) -> AsyncIterator[str]:
    env = {**os.environ, "QUILL_URL": f"{quill.url}/graphql", "FEATURED_IDS": str(featured).replace("'", '"')}
    process = await asyncio.create_subprocess_exec(
        "node", "gateway.mjs", cwd=tools, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert process.stdout is not None
        said = b""
        while not (line := await asyncio.wait_for(process.stdout.readline(), 60)).startswith(b"gateway "):
            said += line
            assert line, f"the gateway stopped: {said.decode()}"  # it could not compose, say
        yield line.decode().split()[1].rstrip("/")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest.mark.one_path  # what the gateway composes and plans does not depend on the executor
async def test_a_gateway_composes_quill_with_another_subgraph(
    gateway_tools: Path, quill_subgraph: Server, token_by_api: Callable[..., Any]
) -> None:
    async with httpx.AsyncClient(base_url=quill_subgraph.url, timeout=30) as quill:
        ada = await token_by_api(quill, "ada")
        await GraphQLClient(quill)(
            'mutation { createPost(input: {title: "Federated", content: "x"}) { __typename } }',
            token=ada["token"],
        )
    featured = [ada["id"]]
    async with (
        gateway(gateway_tools, quill_subgraph, featured) as url,
        httpx.AsyncClient(timeout=30) as client,
    ):

        async def through(query: str, token: str | None = None) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = await client.post(url, json={"query": query}, headers=headers)
            body: dict[str, Any] = response.json()
            assert "errors" not in body, body
            return body["data"]

        # Quill's posts and authors, with the other subgraph's karma for each author.
        posts = await through("{ posts(first: 5) { edges { node { title author { username karma } } } } }")
        number = int(ada["number"])
        assert posts["posts"]["edges"] == [
            {"node": {"title": "Federated", "author": {"username": "ada", "karma": 10 * number}}}
        ]
        # References the other subgraph makes, resolved by Quill's _entities, as the viewer may see them.
        anonymous = await through("{ featuredAuthors { username email karma } }")
        assert anonymous == {"featuredAuthors": [{"username": "ada", "email": None, "karma": 10 * number}]}
        own = await through("{ featuredAuthors { email } }", ada["token"])
        assert own == {"featuredAuthors": [{"email": "ada@example.com"}]}


@pytest.fixture
def token_by_api() -> Callable[..., Any]:
    async def register(http: httpx.AsyncClient, username: str) -> dict[str, str]:
        from tests.api import REGISTER

        variables = {
            "input": {"username": username, "email": f"{username}@example.com", "password": "x" * 12}
        }
        body = await GraphQLClient(http)(REGISTER, variables)
        payload = body["data"]["register"]
        global_id = payload["user"]["id"]
        import base64

        number = base64.b64decode(global_id).decode().split(":")[1]
        return {"token": payload["accessToken"], "id": global_id, "number": number}

    return register
