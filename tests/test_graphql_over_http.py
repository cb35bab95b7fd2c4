"""The GraphQL-over-HTTP specification, checked by the graphql-http audit suite (npm) against a
real server: every MUST passes; a SHOULD that does not is listed here and in the README."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.servers import Server

pytestmark = pytest.mark.one_path  # the resolver pass skips it (pyproject.toml: markers)

# SHOULDs this server does not meet, with the reason (none today).
KNOWN_SHOULD_WARNINGS: dict[str, str] = {}


def test_graphql_over_http_audit(node_tools: Path, database_url: str, tmp_path: Path) -> None:
    server = Server(database_url, log_path=tmp_path / "uvicorn.log")
    server.start()
    try:
        done = subprocess.run(
            ["node", "audit.mjs", f"{server.url}/graphql"],
            cwd=node_tools,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)

    failed_musts = [r for r in results if r["status"] == "error"]
    unmet_shoulds = {r["id"]: r["name"] for r in results if r["status"] == "warn"}
    print(
        f"graphql-http audit: {len(results)} audits, {len(failed_musts)} MUST failures, unmet SHOULDs: {unmet_shoulds}"
    )
    assert failed_musts == []
    assert set(unmet_shoulds) == set(KNOWN_SHOULD_WARNINGS)
    assert len(results) >= 50
