"""The `quill` command line, run as an operator would: a subprocess with DATABASE_URL in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api import LOGIN, mutate
from tests.conftest import ROOT, GraphQLClient, truncate_all
from tests.servers import TEST_ENV, Server, database_env, running

pytestmark = pytest.mark.one_path  # the resolver pass skips it (pyproject.toml: markers)

QUILL = Path(sys.executable).parent / "quill"


def quill(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QUILL), *args],
        cwd=ROOT,
        env={**os.environ, **TEST_ENV, **database_env(database_url)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_brings_a_new_database_to_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"

    migrated = quill(url, "migrate")
    again = quill(url, "migrate")
    current = subprocess.run(
        [sys.executable, "-m", "alembic", "current"],
        cwd=ROOT,
        env={**os.environ, **database_env(url)},
        capture_output=True,
        text=True,
        check=False,
    )

    assert migrated.returncode == 0, migrated.stderr
    assert again.returncode == 0, again.stderr
    assert "(head)" in current.stdout


async def test_create_superuser_who_can_log_in(database_url: str, gql: GraphQLClient) -> None:
    done = quill(database_url, "create-superuser", "--email", "Root@Example.com", "--password", "s3cret-pass")

    assert done.returncode == 0, done.stderr
    assert "created superuser root <root@example.com>" in done.stdout
    payload = await mutate(gql, LOGIN, input={"usernameOrEmail": "root", "password": "s3cret-pass"})
    assert payload["user"]["isSuperuser"] is True


def test_create_superuser_applies_the_api_rules(database_url: str) -> None:
    done = quill(database_url, "create-superuser", "--email", "not-an-email", "--password", "short")

    assert done.returncode == 1
    assert "email is not a valid email address" in done.stderr
    assert "password must be 8 to 256 characters long." in done.stderr


def test_create_superuser_refuses_a_taken_email(database_url: str) -> None:
    first = quill(database_url, "create-superuser", "--email", "a@example.com", "--password", "s3cret-pass")
    second = quill(
        database_url, "create-superuser", "--email", "a@example.com", "--username", "b", "--password", "x" * 9
    )

    assert first.returncode == 0, first.stderr
    assert second.returncode == 1
    assert "exists already" in second.stderr


def test_seed_command(database_url: str) -> None:
    done = quill(database_url, "seed", "--users", "3", "--posts-per-user", "2")

    assert done.returncode == 0, done.stderr
    assert "seeded 3 users, 6 posts" in done.stderr


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Fields after the command name (which may hold spaces) start with the state, then the ppid.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


def test_serve_with_workers(postgres_database: str, tmp_path: Path) -> None:
    truncate_all(postgres_database)
    with running(postgres_database, workers=2, launcher="quill", log_path=tmp_path / "serve.log") as server:
        assert server.process is not None
        workers = _children(server.process.pid)
        answers = [
            httpx.post(f"{server.url}/graphql", json={"query": "{ users(first: 1) { totalCount } }"}).json()
            for _ in range(4)
        ]

    # uvicorn's supervisor starts the workers (and, on some Python builds, a resource tracker).
    assert len(workers) >= 2, server.log()
    assert all(answer == {"data": {"users": {"totalCount": 0}}} for answer in answers)


def test_gunicorn_with_uvicorn_workers(postgres_database: str, tmp_path: Path) -> None:
    """The deployment guide's other way: gunicorn managing uvicorn workers, stopped by SIGTERM."""
    truncate_all(postgres_database)
    server = Server(postgres_database, workers=2, launcher="gunicorn", log_path=tmp_path / "gunicorn.log")
    server.start()
    try:
        assert server.process is not None
        workers = _children(server.process.pid)
        answers = [
            httpx.post(f"{server.url}/graphql", json={"query": "{ users(first: 1) { totalCount } }"}).json()
            for _ in range(4)
        ]
    finally:
        exit_code = server.stop()

    assert len(workers) == 2, server.log()
    assert all(answer == {"data": {"users": {"totalCount": 0}}} for answer in answers)
    assert exit_code == 0, server.log()


def test_serve_in_development_says_where_to_go_and_how_to_log_in(tmp_path: Path) -> None:
    """What `make run` prints before the logs: the URLs, the demo logins, what CORS allows."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert quill(url, "migrate").returncode == 0
    assert quill(url, "seed").returncode == 0
    env = {"APP_ENV": "development", "SECRET_KEY": ""}
    with running(url, launcher="quill", env=env, log_path=tmp_path / "serve.log") as server:
        answer = httpx.post(
            f"{server.url}/graphql",
            json={
                "query": LOGIN,
                "variables": {"input": {"usernameOrEmail": "ada", "password": "demo-password"}},
            },
        ).json()
        banner = server.log()
    assert f"GraphQL   {server.url}/graphql" in banner, banner
    assert f"GraphiQL  {server.url}/graphiql" in banner, banner
    assert "Demo logins: ada, grace," in banner and "'demo-password'" in banner, banner
    assert "CORS: pages on http://localhost" in banner, banner
    assert answer["data"]["login"]["__typename"] == "AuthPayload"  # the login the banner names works
