"""GraphQL over Server-Sent Events (graphql-sse, both modes) against a real uvicorn process.

The admission step's refusals through SSE are in tests/test_entrances.py with every other door;
the npm graphql-sse client's view is in tests/test_node_clients.py.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api import CREATE_POST, CREATE_TASK, LOGOUT, REGISTER
from tests.servers import Server
from tests.sse import (
    TOKEN_HEADER,
    SilentStream,
    bearer,
    distinct,
    post_operation,
    reserve,
    single,
    stop_operation,
)
from tests.ws import GraphQLWS

POST_CREATED = "subscription { postCreated { title author { username } } }"
TASK_CHANGED = "subscription { taskChanged { kind task { title } } }"


@pytest.fixture
def sqlite_file(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "sse.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def _server(sqlite_file: str, tmp_path: Path, **env: str) -> Iterator[Server]:
    server = Server(sqlite_file, log_path=tmp_path / "sse.log", env=env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sse_server(sqlite_file: str, tmp_path: Path) -> Iterator[Server]:
    yield from _server(sqlite_file, tmp_path)


@pytest.fixture
async def client(sse_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sse_server.url, timeout=30) as http:
        yield http


async def call(client: httpx.AsyncClient, document: str, token: str | None = None, **variables: Any) -> Any:
    body = (
        await client.post("/graphql", json={"query": document, "variables": variables}, headers=bearer(token))
    ).json()
    assert "errors" not in body, body
    [payload] = body["data"].values()
    return payload


async def account(client: httpx.AsyncClient, username: str) -> dict[str, Any]:
    data = {"username": username, "email": f"{username}@example.com", "password": "x" * 12}
    payload: dict[str, Any] = await call(client, REGISTER, input=data)
    return payload


# Distinct connections mode.


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_query_is_one_answer_then_complete(client: httpx.AsyncClient, method: str) -> None:
    async with distinct(client, "{ posts(first: 1) { totalCount } }", method=method) as events:
        assert await events.until_end() == [
            ("next", {"data": {"posts": {"totalCount": 0}}}),
            ("complete", None),
        ]


@pytest.mark.one_path  # the transport's own rules: the executor cannot change them
async def test_refusals_are_events_on_the_accepted_stream(client: httpx.AsyncClient) -> None:
    """An EventSource cannot read a 4xx body: each refusal is a `next` with its errors, then `complete`."""
    refused = {
        "{ nope }": "GRAPHQL_VALIDATION_FAILED",
        "{ posts {": "GRAPHQL_PARSE_FAILED",
        "{ posts(first: 101) { totalCount } }": "BAD_USER_INPUT",
    }
    for document, code in refused.items():
        async with distinct(client, document) as events:
            [(kind, data), end] = await events.until_end()
        assert kind == "next" and [e["extensions"]["code"] for e in data["errors"]] == [code], document
        assert end == ("complete", None)
    async with distinct(client, "{ me { username } }", token="not-a-token") as events:
        [(_, data), _] = await events.until_end()
    assert data["errors"][0]["extensions"]["code"] == "TOKEN_INVALID"
    mutation = 'mutation { createPost(input: {title: "t", content: "c"}) { __typename } }'
    async with distinct(client, mutation, method="GET") as events:
        [(_, data), _] = await events.until_end()
    assert data["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"  # GET never writes


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_subscription_hears_each_event_on_its_own_stream(
    client: httpx.AsyncClient, method: str
) -> None:
    ada = await account(client, "ada")
    async with distinct(client, POST_CREATED, method=method) as events:
        await asyncio.sleep(0.3)  # subscribed once its request was admitted
        await call(client, CREATE_POST, ada["accessToken"], input={"title": "Live", "content": "now"})
        await call(client, CREATE_POST, ada["accessToken"], input={"title": "Again", "content": "now"})
        first, second = await events.next_data(), await events.next_data()
    assert first == {"data": {"postCreated": {"title": "Live", "author": {"username": "ada"}}}}
    assert second["data"]["postCreated"]["title"] == "Again"


async def test_private_events_reach_only_their_owner(client: httpx.AsyncClient) -> None:
    ada, bob = await account(client, "ada"), await account(client, "bob")
    async with (
        distinct(client, TASK_CHANGED, token=ada["accessToken"]) as ada_events,
        distinct(client, TASK_CHANGED, token=bob["accessToken"]) as bob_events,
    ):
        await asyncio.sleep(0.3)
        await call(client, CREATE_TASK, ada["accessToken"], input={"title": "Ada's"})
        assert (await ada_events.next_data())["data"]["taskChanged"] == {
            "kind": "CREATED",
            "task": {"title": "Ada's"},
        }
        assert await bob_events.nothing_within(0.5)


# Single connection mode.


async def test_one_stream_carries_several_operations(client: httpx.AsyncClient) -> None:
    ada = await account(client, "ada")
    token = ada["accessToken"]
    stream = await reserve(client, token)
    async with single(client, stream) as events:
        assert (await post_operation(client, stream, "tasks", TASK_CHANGED)).status_code == 202
        assert (await post_operation(client, stream, "me", "{ me { username } }")).status_code == 202
        assert await events.next() == ("next", {"id": "me", "payload": {"data": {"me": {"username": "ada"}}}})
        assert await events.next() == ("complete", {"id": "me"})

        await call(client, CREATE_TASK, token, input={"title": "One"})
        kind, data = await events.next()
        assert (kind, data["id"]) == ("next", "tasks")
        assert data["payload"]["data"]["taskChanged"]["task"] == {"title": "One"}

        assert (await stop_operation(client, stream, "tasks")).status_code == 200
        await asyncio.sleep(0.2)
        await call(client, CREATE_TASK, token, input={"title": "Two"})
        assert await events.nothing_within(0.5)  # stopped: nothing more for it
        assert (await post_operation(client, stream, "again", "{ me { username } }")).status_code == 202
        assert (await events.next())[1]["id"] == "again"  # and the stream still serves


@pytest.mark.one_path  # the transport's own rules: the executor cannot change them
async def test_a_reserved_stream_refuses_what_the_protocol_refuses(client: httpx.AsyncClient) -> None:
    ada, bob = await account(client, "ada"), await account(client, "bob")
    stream = await reserve(client, ada["accessToken"])
    async with single(client, stream):
        second = await client.get("/graphql", headers={"Accept": "text/event-stream", TOKEN_HEADER: stream})
        assert second.status_code == 409  # one open stream per reservation

        invalid = await post_operation(client, stream, "bad", "{ nope }")
        assert invalid.status_code == 400  # answered on the request itself
        assert invalid.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        body = {"query": "{ me { username } }"}
        no_id = await client.post("/graphql", json=body, headers={TOKEN_HEADER: stream})
        assert no_id.status_code == 400
        other = await post_operation(client, stream, "x", "{ me { username } }", token=bob["accessToken"])
        assert other.status_code == 403  # another user's token on ada's stream
        forged = await post_operation(client, stream, "y", "{ me { username } }", token="forged")
        assert forged.status_code == 401
        assert (await post_operation(client, stream, "z", TASK_CHANGED)).status_code == 202
        duplicate = await post_operation(client, stream, "z", TASK_CHANGED)
        assert duplicate.status_code == 409

    unknown = await post_operation(client, "no-such-stream", "a", "{ me { username } }")
    assert unknown.status_code == 404
    assert (await client.put("/graphql", headers=bearer("forged"))).status_code == 401
    assert (await client.delete("/graphql", params={"operationId": "a"})).status_code == 404


@pytest.mark.one_path  # the transport's own rules: the executor cannot change them
async def test_a_reservation_not_opened_in_time_is_dropped(sqlite_file: str, tmp_path: Path) -> None:
    for server in _server(sqlite_file, tmp_path, WS_INIT_TIMEOUT_SECONDS="1"):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            stream = await reserve(client)
            await asyncio.sleep(1.5)
            late = await client.get("/graphql", headers={"Accept": "text/event-stream", TOKEN_HEADER: stream})
            assert late.status_code == 404


# The same rules as every other long-lived connection.


@pytest.mark.one_path  # the transport's own rules: the executor cannot change them
async def test_streams_end_when_their_token_expires(sqlite_file: str, tmp_path: Path) -> None:
    for server in _server(sqlite_file, tmp_path, ACCESS_TOKEN_TTL_SECONDS="2"):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            ada = await account(client, "ada")
            token = ada["accessToken"]
            stream = await reserve(client, token)
            started = time.monotonic()
            async with distinct(client, TASK_CHANGED, token=token) as own, single(client, stream) as shared:
                assert (await post_operation(client, stream, "t", TASK_CHANGED)).status_code == 202
                [(_, expired), end] = await own.until_end()
                assert expired["errors"][0]["extensions"]["code"] == "TOKEN_EXPIRED" and end[0] == "complete"
                [(_, shared_expired), shared_end] = await shared.until_end()
                assert shared_expired["id"] == "t" and shared_end == ("complete", {"id": "t"})
                assert shared_expired["payload"]["errors"][0]["extensions"]["code"] == "TOKEN_EXPIRED"
            assert 1 <= time.monotonic() - started < 5  # at the token's expiry, not before or long after


@pytest.mark.one_path  # the transport's own rules: the executor cannot change them
async def test_a_revoked_token_ends_the_users_streams(client: httpx.AsyncClient) -> None:
    ada = await account(client, "ada")
    token = ada["accessToken"]
    async with (
        distinct(client, TASK_CHANGED, token=token) as events,
        distinct(client, POST_CREATED) as others,
    ):
        await asyncio.sleep(0.3)
        assert await call(client, LOGOUT, token, input={"everywhere": True})
        [(_, revoked), end] = await events.until_end(seconds=3)
        assert revoked["errors"][0]["extensions"]["code"] == "TOKEN_REVOKED" and end[0] == "complete"
        assert await others.nothing_within(0.2)  # nobody else's stream ended


@pytest.mark.one_path  # the transport's own rules: the executor cannot change them
async def test_sse_and_websocket_subscriptions_share_one_limit(sqlite_file: str, tmp_path: Path) -> None:
    for server in _server(sqlite_file, tmp_path, WS_MAX_SUBSCRIPTIONS_PER_CLIENT="2"):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, GraphQLWS(server.url) as ws:
            await ws.acknowledged()
            await ws.subscribe(POST_CREATED)
            async with distinct(client, POST_CREATED) as held:
                await asyncio.sleep(0.3)
                async with distinct(client, POST_CREATED) as refused:
                    [(_, data), _] = await refused.until_end()
                assert data["errors"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
                assert await held.nothing_within(0.1)


@pytest.mark.one_path  # the transport's own rules: the executor cannot change them
async def test_a_client_that_does_not_read_is_dropped_and_the_others_hear_every_event(
    sqlite_file: str, tmp_path: Path
) -> None:
    subscription = "subscription { postCreated { title content } }"
    for server in _server(sqlite_file, tmp_path, WS_SEND_TIMEOUT_SECONDS="1"):
        silent = [SilentStream(server.url, subscription) for _ in range(3)]
        try:
            for stream in silent:
                await stream.open()
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                ada = await account(client, "ada")
                async with distinct(client, subscription) as reader:
                    await asyncio.sleep(0.5)
                    for i in range(70):  # 60 KB each: 4 MB, past what the silent streams buffer
                        variables = {"title": f"p{i}", "content": "x" * 60_000}
                        await call(client, CREATE_POST, ada["accessToken"], input=variables)
                    titles = [(await reader.next_data())["data"]["postCreated"]["title"] for _ in range(70)]
                await asyncio.sleep(2.5)  # past WS_SEND_TIMEOUT_SECONDS: the silent streams are dropped
                assert (await client.get("/ready")).status_code == 200
        finally:
            for stream in silent:
                stream.close()
        assert titles == [f"p{i}" for i in range(70)]
        assert server.log_path is not None
        log = server.log_path.read_text()
        assert log.count("dropping an SSE client that did not read") == 3, server.log()


@pytest.mark.one_path
async def test_sigterm_completes_subscriptions_and_ends_every_stream(
    sqlite_file: str, tmp_path: Path
) -> None:
    """uvicorn waits for HTTP responses to finish on SIGTERM; an SSE stream never finishes by
    itself, so the server ends them (after completing their subscriptions) to exit."""
    server = Server(sqlite_file, log_path=tmp_path / "sigterm.log")
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            stream = await reserve(client)
            async with distinct(client, POST_CREATED) as own, single(client, stream) as idle:
                await asyncio.sleep(0.3)
                started = time.monotonic()
                stopping = asyncio.ensure_future(asyncio.to_thread(server.stop))
                assert await own.until_end() == [("complete", None)]
                assert await idle.until_end() == []
                await stopping
                assert time.monotonic() - started < 8  # not the 20 s after which stop() kills it
    finally:
        server.stop()
