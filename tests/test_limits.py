"""Hostile and malformed requests are refused cheaply and clearly: depth, aliases, tokens, cost,
body and variable size, time, rate, introspection."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from graphql import FragmentDefinitionNode, OperationDefinitionNode, get_introspection_query, parse
from graphql.execution.values import get_variable_values
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette

from db.engine import create_engine
from db.errors import is_statement_timeout
from db.seed import Shape, generate
from schema import build_schema
from schema.admission.cost import estimated_cost
from settings import Settings
from tests.conftest import StatementCounter
from tests.factories import make_user

MODERN = {"Accept": "application/graphql-response+json"}


def _cost(query: str, **variables: object) -> int:
    schema = build_schema()._schema
    document = parse(query)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    coerced = get_variable_values(schema, operation.variable_definitions or (), variables)
    assert not isinstance(coerced, list), coerced
    return estimated_cost(schema, operation, fragments, coerced)


@pytest.mark.one_path  # admission: refused or priced before either executor
@pytest.mark.parametrize(
    ("query", "variables", "cost"),
    [
        (
            "{ users(first: 50) { edges { node { posts(first: 10) { edges { node { author { username } } } } } } } }",
            {},
            550,
        ),
        ("{ users { edges { node { username } } } }", {}, 20),  # first defaults to 20
        ("query ($n: Int) { posts(last: $n) { totalCount } }", {"n": 7}, 7),
        ("{ a: posts(first: 2) { totalCount } b: tasks(first: 3) { totalCount } }", {}, 5),
        ('{ nodes(ids: ["a", "b", "c"]) { ... on User { posts(first: 4) { totalCount } } } }', {}, 3 + 12),
        (
            "fragment P on User { posts(first: 5) { totalCount } } { users(first: 2) { edges { node { ...P } } } }",
            {},
            12,
        ),
        ('{ user(username: "x") { username } }', {}, 1),
        ('{ posts(search: "garden", first: 5) { totalCount } }', {}, 100 + 5),
        ("query ($q: String) { posts(search: $q, first: 5) { totalCount } }", {"q": None}, 5),
        (
            '{ users(first: 10) { edges { node { posts(search: "a", first: 2) { totalCount } } } } }',
            {},
            10 + 10 * 102,
        ),
        ("{ posts(first: 5) { aggregate { count } } }", {}, 100 + 5),
        (
            "fragment A on PostConnection { aggregate { avg { version } } } "
            "{ users(first: 10) { edges { node { posts(first: 2) { ...A totalCount } } } } }",
            {},
            10 + 10 * 102,
        ),
        # A groupBy is priced like a page of its groups (20 unless `first` says otherwise)...
        ("{ posts(first: 0) { aggregate { groupBy(by: {author: true}) { count } } } }", {}, 100 + 20),
        # ... and what each group reads, like a page's items.
        (
            "{ posts(first: 0) { aggregate { groupBy(by: {author: true}, first: 50) "
            "{ key { author { posts(first: 3) { totalCount } } } } } } }",
            {},
            100 + 50 + 50 * 3,
        ),
        ('mutation { createPost(input: {title: "t", content: "c"}) { __typename } }', {}, 10),
        ('mutation { login(input: {usernameOrEmail: "a", password: "b"}) { __typename } }', {}, 500),
    ],
)
def test_cost_counts_the_objects_a_query_can_return(
    query: str, variables: dict[str, object], cost: int
) -> None:
    assert _cost(query, **variables) == cost


@pytest.mark.one_path  # admission: refused or priced before either executor
async def test_a_query_over_budget_is_refused_before_any_sql(
    client: httpx.AsyncClient, statements: StatementCounter
) -> None:
    query = "query ($n: Int) { users(first: $n) { edges { node { posts(first: 100) { edges { node { author { tasks(first: 100) { totalCount } } } } } } } } }"
    with statements.count() as counted:
        response = await client.post(
            "/graphql", json={"query": query, "variables": {"n": 100}}, headers=MODERN
        )

    assert counted.value == 0
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert "data" not in response.json()
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": 1_010_100, "limit": 20_000}
    assert "1,010,100 objects; the limit is 20,000" in error["message"]


@pytest.mark.one_path  # admission: refused or priced before either executor
@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "{ posts { edges { node { author { posts { edges { node { author { posts { edges { node { author { posts { edges { node { title } } } } } } } } } } } } } } } }",
            "exceeds maximum operation depth of 12",
        ),
        (
            "{ " + " ".join(f"a{i}: posts {{ totalCount }}" for i in range(31)) + " }",
            "31 aliases found. Allowed: 30",
        ),
        ("{ " + "posts { totalCount } " * 700 + "}", "Document contains more than 2000 tokens"),
    ],
)
async def test_depth_aliases_and_tokens_are_limited(
    client: httpx.AsyncClient, query: str, message: str
) -> None:
    response = await client.post("/graphql", json={"query": query}, headers=MODERN)
    assert response.status_code == 400
    assert message in response.json()["errors"][0]["message"]


@pytest.mark.one_path  # admission: refused or priced before either executor
async def test_graphiql_introspection_fits_under_the_depth_limit(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": get_introspection_query(descriptions=True)})
    assert "errors" not in response.json()


@pytest.mark.one_path  # admission: refused or priced before either executor
async def test_introspection_can_be_switched_off(
    app_with: Callable[..., Any],
) -> None:
    async with app_with(introspection=False) as client:
        response = await client.post("/graphql", json={"query": "{ __schema { types { name } } }"})
        ok = await client.post("/graphql", json={"query": "{ posts { totalCount } }"})
    assert "introspection" in response.json()["errors"][0]["message"].lower()
    assert ok.json() == {"data": {"posts": {"totalCount": 0}}}


@pytest.mark.one_path  # admission: refused or priced before either executor
async def test_bodies_and_variables_over_their_limits_are_413(
    app_with: Callable[..., Any],
) -> None:
    async with app_with(max_body_bytes=2000, max_variables_bytes=500) as client:
        big_body = await client.post(
            "/graphql", json={"query": "{ posts { totalCount } }", "padding": "x" * 3000}
        )
        big_variables = await client.post(
            "/graphql",
            json={
                "query": "query ($s: String) { posts(filter: {titleContains: $s}) { totalCount } }",
                "variables": {"s": "y" * 800},
            },
        )
        lying = await client.post(
            "/graphql",
            content=b'{"query": "{ __typename }"}',
            headers={"Content-Length": "999999", "Content-Type": "application/json"},
        )
        fine = await client.post("/graphql", json={"query": "{ __typename }"})
    assert big_body.status_code == 413
    assert big_body.json()["errors"][0]["extensions"] == {"code": "BODY_TOO_LARGE", "limitBytes": 2000}
    assert big_variables.status_code == 413
    assert "variables are larger than 500 bytes" in big_variables.json()["errors"][0]["message"]
    assert lying.status_code == 413
    assert fine.status_code == 200


async def test_an_operation_over_its_time_limit_is_stopped(
    app_with: Callable[..., Any],
) -> None:
    async with app_with(operation_timeout_seconds=0.000_01) as client:
        response = await client.post("/graphql", json={"query": "{ posts { totalCount } }"})
        engine = client.app.state.engine
    [error] = response.json()["errors"]
    assert response.json()["data"] is None
    assert error["extensions"]["code"] == "OPERATION_TIMEOUT"
    assert engine.pool.checkedout() == 0


async def test_statement_timeout_is_a_clear_error(
    app_with: Callable[..., Any], engine_name: str, settings: Settings
) -> None:
    if engine_name == "sqlite":
        pytest.skip("SQLite has no statement time limit (the overall operation timeout applies)")
    # 100,000 posts: counting titles that contain "zz" reads them all, far past 10 ms.
    loader = create_engine(settings)
    await generate(loader, Shape(users=200, posts_per_user=500, tasks_per_user=0, notes_per_task=0), "x")
    await loader.dispose()
    async with app_with(statement_timeout_ms=10) as client:
        app: Starlette = client.app
        # PostgreSQL's statement_timeout, MariaDB's max_statement_time: a slow statement is cancelled.
        slow = (
            "SELECT pg_sleep(0.05)"
            if engine_name == "postgresql"
            else "SELECT count(*) FROM posts a, posts b"
        )
        async with app.state.engine.connect() as conn:
            with pytest.raises(DBAPIError) as cancelled:
                await conn.exec_driver_sql(slow)
        response = await client.post(
            "/graphql", json={"query": '{ posts(filter: {titleContains: "zz"}) { totalCount } }'}
        )
    assert is_statement_timeout(cancelled.value)
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "OPERATION_TIMEOUT"
    assert "took too long" in error["message"]


@pytest.mark.one_path  # admission: refused or priced before either executor
async def test_rate_limit_charges_by_cost_per_client(
    app_with: Callable[..., Any], settings: Settings
) -> None:
    async with app_with(rate_limit=True, rate_limit_burst=100, rate_limit_per_second=1) as client:
        app: Starlette = client.app
        async with app.state.services.sessionmaker() as session:
            ada = await make_user(session)
        token = app.state.services.tokens.issue(ada.id, is_superuser=False)[0]
        query = {"query": "{ posts(first: 45) { totalCount } }"}  # costs 45
        answers = [await client.post("/graphql", json=query) for _ in range(3)]
        as_ada = await client.post("/graphql", json=query, headers={"Authorization": f"Bearer {token}"})

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1
    [error] = answers[2].json()["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert as_ada.status_code == 200  # another client, another bucket


@pytest.mark.one_path  # admission: refused or priced before either executor
async def test_the_rate_limit_is_shared_through_redis(
    app_with: Callable[..., Any],
) -> None:
    """Two app instances (two processes in production) charge one bucket in Redis."""
    prefix_url = "redis://127.0.0.1:6379/15"
    answers = []
    changes = {
        "rate_limit": True,
        "rate_limit_burst": 100,
        "rate_limit_per_second": 1,
        "redis_url": prefix_url,
    }
    address = f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"  # a fresh client: a fresh bucket
    headers = {"X-Forwarded-For": address}
    query = {"query": "{ posts(first: 45) { totalCount } }"}
    async with app_with(**changes, trusted_proxies=("127.0.0.1",)) as first:
        answers.append(await first.post("/graphql", json=query, headers=headers))
        answers.append(await first.post("/graphql", json=query, headers=headers))
    async with app_with(**changes, trusted_proxies=("127.0.0.1",)) as second:
        answers.append(await second.post("/graphql", json=query, headers=headers))
    assert [answer.status_code for answer in answers] == [200, 200, 429]


@pytest.mark.one_path  # admission: refused or priced before either executor
async def test_an_unreachable_redis_lets_requests_through(
    app_with: Callable[..., Any],
) -> None:
    async with app_with(rate_limit=True, rate_limit_burst=1, redis_url="redis://127.0.0.1:1/0") as client:
        response = await client.post("/graphql", json={"query": "{ posts(first: 45) { totalCount } }"})
    assert response.status_code == 200


@pytest.mark.one_path  # admission: refused or priced before either executor
async def test_get_cannot_mutate_and_cookies_are_not_credentials(client: httpx.AsyncClient) -> None:
    mutation = await client.get(
        "/graphql", params={"query": 'mutation { logout(input: {refreshToken: "x"}) { __typename } }'}
    )
    with_cookie = await client.get(
        "/graphql", params={"query": "{ me { id } }"}, headers={"Cookie": "session=stolen"}
    )

    assert mutation.status_code == 405
    assert mutation.headers["allow"] == "POST"
    assert with_cookie.json() == {"data": {"me": None}}
