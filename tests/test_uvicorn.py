"""A real uvicorn process: data written through the API survives a restart."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api import CREATE_POST, REGISTER
from tests.servers import Server

pytestmark = pytest.mark.one_path  # the resolver pass skips it (pyproject.toml: markers)


def post(
    server: Server, query: str, variables: dict[str, object] | None = None, token: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{server.url}/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_data_survives_a_restart(database_url: str, tmp_path: Path) -> None:
    server = Server(database_url, log_path=tmp_path / "uvicorn.log")
    server.start()
    try:
        account = post(
            server, REGISTER, {"input": {"username": "ada", "email": "ada@example.com", "password": "x" * 12}}
        )
        token = account["data"]["register"]["accessToken"]
        created = post(server, CREATE_POST, {"input": {"title": "Persisted", "content": "Still here"}}, token)
        assert created["data"]["createPost"]["__typename"] == "PostPayload"
    finally:
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught: -15 is a clean stop.
        assert server.stop() in (0, -signal.SIGTERM), server.log()

    server.start()
    try:
        posts = post(server, "{ posts { edges { node { title author { username } } } } }")
    finally:
        server.stop()
    assert posts["data"]["posts"]["edges"] == [
        {"node": {"title": "Persisted", "author": {"username": "ada"}}}
    ]
