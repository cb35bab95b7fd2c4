"""Automatic persisted queries (Apollo APQ), GET caching, and the allow-list mode."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User
from schema.admission.persisted import ManifestError, OperationManifest
from tests.conftest import StatementCounter
from tests.factories import make_user
from tests.servers import running
from tests.ws import GraphQLWS

COUNT = "query Count { posts { totalCount } }"
USERS = "query Users { users(first: 2) { edges { node { username } } } }"
ME = "query Me { me { username } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apq(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(text)}}


async def test_apq_flow_hash_then_text_then_hash(client: httpx.AsyncClient) -> None:
    unknown = await client.post("/graphql", json={"extensions": apq(COUNT)})
    registered = await client.post("/graphql", json={"query": COUNT, "extensions": apq(COUNT)})
    known = await client.post("/graphql", json={"extensions": apq(COUNT)})

    assert unknown.status_code == 200
    assert unknown.json() == {
        "errors": [{"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]
    }
    assert registered.json() == known.json() == {"data": {"posts": {"totalCount": 0}}}


async def test_apq_refuses_a_hash_that_does_not_match(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": COUNT, "extensions": apq(USERS)})
    bad_version = await client.post(
        "/graphql",
        json={"query": COUNT, "extensions": {"persistedQuery": {"version": 2, "sha256Hash": sha(COUNT)}}},
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "provided sha does not match query"
    assert bad_version.status_code == 400 and "version" in bad_version.json()["errors"][0]["message"]


async def test_apq_remembers_only_documents_that_validate(
    client: httpx.AsyncClient, statements: StatementCounter
) -> None:
    invalid = "query Invalid { posts { nope } }"
    await client.post("/graphql", json={"query": invalid, "extensions": apq(invalid)})
    with statements.count() as sent:
        again = await client.post("/graphql", json={"extensions": apq(invalid)})

    assert again.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert sent.value == 0


async def test_get_answers_carry_cache_headers_and_etags(
    client: httpx.AsyncClient, session: AsyncSession, token_for: Callable[[User], str]
) -> None:
    token = token_for(await make_user(session))
    await client.post("/graphql", json={"query": COUNT, "extensions": apq(COUNT)})
    params = {"extensions": json.dumps(apq(COUNT))}

    first = await client.get("/graphql", params=params)
    revalidated = await client.get(
        "/graphql", params=params, headers={"If-None-Match": first.headers["etag"]}
    )
    signed_in = await client.get(
        "/graphql", params={"query": ME}, headers={"Authorization": f"Bearer {token}"}
    )
    failed = await client.get("/graphql", params={"query": "{ nope }"})

    assert first.status_code == 200 and first.json() == {"data": {"posts": {"totalCount": 0}}}
    assert first.headers["cache-control"] == "no-cache"
    assert first.headers["vary"] == "Accept, Authorization"
    assert revalidated.status_code == 304 and revalidated.content == b""
    assert revalidated.headers["etag"] == first.headers["etag"]
    assert signed_in.json()["data"]["me"] is not None
    assert signed_in.headers["cache-control"] == "private, no-store" and "etag" not in signed_in.headers
    assert failed.headers["cache-control"] == "no-store"


async def test_get_max_age_and_no_mutations_by_hash(app_with: Callable[..., Any]) -> None:
    mutation = 'mutation Out { logout(input: {refreshToken: "x"}) { __typename } }'
    async with app_with(get_cache_max_age_seconds=60) as client:
        cached = await client.get("/graphql", params={"query": COUNT})
        await client.post("/graphql", json={"query": mutation, "extensions": apq(mutation)})
        by_hash = await client.get("/graphql", params={"extensions": json.dumps(apq(mutation))})

    assert cached.headers["cache-control"] == "public, max-age=60"
    assert by_hash.status_code == 405


async def test_apq_can_be_switched_off(app_with: Callable[..., Any]) -> None:
    async with app_with(persisted_queries=False) as client:
        response = await client.post("/graphql", json={"extensions": apq(COUNT)})
        plain = await client.post("/graphql", json={"query": COUNT, "extensions": apq(COUNT)})
    assert response.json()["errors"][0]["message"] == "PersistedQueryNotSupported"
    assert plain.json() == {"data": {"posts": {"totalCount": 0}}}


async def test_redis_shares_persisted_queries_between_processes(app_with: Callable[..., Any]) -> None:
    text = f"query Shared{sha(str(id(object())))[:8]} {{ posts {{ totalCount }} }}"  # new to Redis
    async with (
        app_with(redis_url="redis://127.0.0.1:6379/0") as one,
        app_with(redis_url="redis://127.0.0.1:6379/0") as two,
    ):
        await one.post("/graphql", json={"query": text, "extensions": apq(text)})
        response = await two.post("/graphql", json={"extensions": apq(text)})
    assert response.json() == {"data": {"posts": {"totalCount": 0}}}


# Allow-list mode.


def apollo_manifest(path: Path, *bodies: str) -> Path:
    operations = [
        {"id": sha(body), "name": body.split()[1], "type": body.split()[0], "body": body} for body in bodies
    ]
    path.write_text(
        json.dumps({"format": "apollo-persisted-query-manifest", "version": 1, "operations": operations})
    )
    return path


async def test_allow_list_runs_only_registered_operations(
    app_with: Callable[..., Any], tmp_path: Path, statements: StatementCounter
) -> None:
    manifest = apollo_manifest(tmp_path / "manifest.json", COUNT)
    async with app_with(operations_manifest=str(manifest)) as client:
        by_text = await client.post("/graphql", json={"query": COUNT})
        by_id = await client.post("/graphql", json={"documentId": sha(COUNT)})
        by_hash = await client.get("/graphql", params={"extensions": json.dumps(apq(COUNT))})
        with statements.count() as sent:
            other = await client.post("/graphql", json={"query": USERS})
        unknown_id = await client.post("/graphql", json={"documentId": "nope"})
        registering = await client.post("/graphql", json={"query": USERS, "extensions": apq(USERS)})

    expected = {"data": {"posts": {"totalCount": 0}}}
    assert by_text.json() == by_id.json() == by_hash.json() == expected
    assert other.json()["errors"][0]["extensions"]["code"] == "OPERATION_NOT_IN_ALLOW_LIST"
    assert "data" not in other.json() and sent.value == 0
    assert unknown_id.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert registering.json()["errors"][0]["extensions"]["code"] == "OPERATION_NOT_IN_ALLOW_LIST"


async def test_relay_manifest_and_doc_id(app_with: Callable[..., Any], tmp_path: Path) -> None:
    manifest = tmp_path / "persisted.json"
    manifest.write_text(json.dumps({"a1b2": COUNT}))
    async with app_with(operations_manifest=str(manifest)) as client:
        response = await client.post("/graphql", json={"doc_id": "a1b2", "variables": {}})
    assert response.json() == {"data": {"posts": {"totalCount": 0}}}


def test_a_broken_manifest_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "apollo-persisted-query-manifest", "operations": [{"id": 1}]}')
    with pytest.raises(ManifestError, match="string id and body"):
        OperationManifest.load(broken)
    with pytest.raises(ManifestError, match="cannot be read"):
        OperationManifest.load(tmp_path / "missing.json")


async def test_allow_list_holds_over_websocket(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "served.db"
    shutil.copy(sqlite_template, path)
    allowed = "subscription Posts { postCreated { title } }"
    manifest = apollo_manifest(tmp_path / "manifest.json", allowed)
    with running(f"sqlite:///{path}", env={"OPERATIONS_MANIFEST": str(manifest)}) as server:
        async with GraphQLWS(server.url) as ws:
            await ws.acknowledged()
            refused_id = await ws.subscribe("subscription Other { postCreated { id } }")
            refused = await ws.receive()
            await ws.subscribe(allowed)
            assert await ws.nothing_within(0.5)  # registered: it waits for events

    # An `error` message ends the operation (graphql-transport-ws sends no `complete` after it).
    assert (refused["type"], refused["id"]) == ("error", refused_id)
    assert refused["payload"][0]["extensions"]["code"] == "OPERATION_NOT_IN_ALLOW_LIST"
