"""GraphQL over HTTP: GET and POST, media types and status codes, GraphiQL, masked internal errors."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.applications import Starlette

from server import create_app
from settings import Settings
from tests.factories import make_user

USERS = "{ users { edges { node { username } } } }"


async def test_get_runs_a_query(client: httpx.AsyncClient, session: AsyncSession) -> None:
    await make_user(session, username="ada")

    response = await client.get("/graphql", params={"query": USERS})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"data": {"users": {"edges": [{"node": {"username": "ada"}}]}}}


async def test_get_with_variables_and_operation_name(client: httpx.AsyncClient) -> None:
    query = "query A($n: Int) { posts(first: $n) { totalCount } } query B { __typename }"
    response = await client.get(
        "/graphql", params={"query": query, "variables": '{"n": 1}', "operationName": "A"}
    )
    assert response.json() == {"data": {"posts": {"totalCount": 0}}}


async def test_browser_gets_graphiql(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


@pytest.mark.parametrize(
    ("content", "content_type", "status", "message", "code"),
    [
        (b"{not json", "application/json", 400, "The request body is not valid JSON.", "BAD_REQUEST"),
        (
            b"query=x",
            "application/x-www-form-urlencoded",
            415,
            "Send GraphQL requests as application/json.",
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            b'{"variables": {}}',
            "application/json",
            400,
            "The request has no GraphQL query (a non-empty string).",
            "BAD_REQUEST",
        ),
        (
            b'{"query": "{ __typename }", "variables": [1]}',
            "application/json",
            400,
            "variables must be an object or null.",
            "BAD_REQUEST",
        ),
        (b"[]", "application/json", 400, "A batch must hold 1 to 10 operations.", "BAD_REQUEST"),
    ],
)
async def test_malformed_requests_are_4xx_with_a_reason(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int, message: str, code: str
) -> None:
    response = await client.post("/graphql", content=content, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.json() == {"errors": [{"message": message, "extensions": {"code": code}}]}


async def test_validation_errors_status_depends_on_accepted_media_type(client: httpx.AsyncClient) -> None:
    body = {"query": "{ nope }"}
    legacy = await client.post("/graphql", json=body)
    modern = await client.post("/graphql", json=body, headers={"Accept": "application/graphql-response+json"})

    assert legacy.status_code == 200
    assert modern.status_code == 400
    assert modern.headers["content-type"] == "application/graphql-response+json; charset=utf-8"
    for response in (legacy, modern):
        assert "data" not in response.json()
        assert "Cannot query field 'nope'" in response.json()["errors"][0]["message"]


async def test_batch_runs_each_operation(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json=[{"query": "{ __typename }"}, {"query": "{ posts { totalCount } }"}]
    )
    assert response.json() == [{"data": {"__typename": "Query"}}, {"data": {"posts": {"totalCount": 0}}}]


async def test_unexpected_errors_are_masked_and_logged_with_an_id(
    app: Starlette, client: httpx.AsyncClient, engine_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A post whose author row is gone (possible only with foreign keys off) breaks an invariant."""
    if engine_name != "sqlite":
        pytest.skip("only SQLite lets a test switch foreign keys off for one connection")
    with sqlite3.connect(app.state.engine.url.database) as raw:  # foreign keys are off by default here
        raw.execute(
            "INSERT INTO posts (title, content, user_id, date_posted) VALUES ('t', 'c', 999, '2025-01-01')"
        )

    with caplog.at_level(logging.ERROR, logger="quill.errors"):
        response = await client.post(
            "/graphql", json={"query": "{ posts { edges { node { author { username } } } } }"}
        )

    [error] = response.json()["errors"]
    assert error["message"] == "Internal server error"
    error_id = error["extensions"]["errorId"]
    assert "Traceback" not in response.text and "assert" not in response.text
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert record.exc_info is not None


async def test_statement_stats_are_off_unless_asked(client: httpx.AsyncClient) -> None:
    assert (await client.get("/__stats")).status_code == 404


async def test_statement_stats_count_what_requests_send(settings: Settings) -> None:
    # The resolvers' statements: tests/test_compiled_reads.py counts the compiled path's.
    app = create_app(replace(settings, stats_endpoint=True, compiled_reads=False))
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        before = (await client.get("/__stats")).json()["statements"]
        await client.post(
            "/graphql", json={"query": "{ posts { totalCount edges { node { author { username } } } } }"}
        )
        after = (await client.get("/__stats")).json()["statements"]
    assert after - before == 2  # the page and the count; no authors on an empty page


PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,authorization",
}


@pytest.mark.one_path  # CORS answers before either executor
@pytest.mark.parametrize(
    ("app_env", "origins", "origin", "allowed"),
    [
        ("development", (), "http://localhost:5173", True),  # Vite's dev server
        ("development", (), "http://127.0.0.1:3000", True),  # Next's
        ("development", (), "https://evil.example", False),
        ("development", (), "http://localhost.evil.example", False),
        ("production", (), "http://localhost:5173", False),  # never by default outside development
        ("production", ("https://app.example",), "https://app.example", True),
        ("development", ("https://app.example",), "http://localhost:5173", False),  # the list decides
    ],
)
async def test_cors_allows_local_frontends_in_development_only(
    settings: Settings, app_env: str, origins: tuple[str, ...], origin: str, allowed: bool
) -> None:
    app = create_app(replace(settings, app_env=app_env, cors_origins=origins, metrics=False))
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        preflight = await client.options("/graphql", headers={"Origin": origin, **PREFLIGHT})
        answer = await client.post("/graphql", json={"query": "{ __typename }"}, headers={"Origin": origin})
    assert answer.json() == {"data": {"__typename": "Query"}}  # CORS binds browsers, not the server
    assert (preflight.headers.get("access-control-allow-origin") == origin) is allowed, preflight.headers
    assert (answer.headers.get("access-control-allow-origin") == origin) is allowed
    if allowed:  # a script may read whether its mutation was answered from an idempotency key
        assert "Idempotent-Replayed" in answer.headers["access-control-expose-headers"]
