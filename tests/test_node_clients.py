"""The tools frontend teams use, against a real server: Apollo Client 3 and 4 (with graphql-ws and APQ;
4 with @defer and @stream), urql with @defer,
the graphql-sse client, graphql-codegen with tsc, and GraphiQL in headless Chromium (tests/node
pins them all)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.servers import running
from web.graphiql import GraphiQLPage

pytestmark = pytest.mark.one_path  # the resolver pass skips it (pyproject.toml: markers)

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"


def node(node_tools: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", *args], cwd=node_tools, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("flow", ["apollo-flow.mjs", "apollo4/flow.mjs"], ids=["apollo3", "apollo4"])
def test_apollo_client_flow(node_tools: Path, database_url: str, tmp_path: Path, flow: str) -> None:
    with running(database_url, log_path=tmp_path / "server.log") as server:
        done = node(node_tools, flow, server.url)
    assert done.returncode == 0, done.stderr + done.stdout
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["register"] == seen["login"] == "AuthPayload"
    assert seen["registerAgain"] == {
        "__typename": "ConflictError",
        "field": "username",
        "message": "That username is taken.",
    }
    assert seen["invalidPost"]["fieldErrors"][0]["field"] == "title"
    assert seen["subscription"]["title"] == "First"
    assert seen["subscription"]["author"]["username"] == "apollo"
    # fetchMore pages merged by relayStylePagination, in order, nothing twice
    assert seen["firstPage"] == ["First", "Second"]
    assert seen["allPages"] == ["First", "Second", "Third", "Fourth", "Fifth"]
    # normalised by __typename and id: a mutation's payload updated the list in the cache
    assert seen["cacheKey"].startswith("Post:")
    assert seen["afterRename"] == "First, renamed"
    assert seen["authorsInCache"] == 1
    # APQ: hash over GET, not found, hash and text over POST, then the hash alone over GET
    assert seen["apq"]["titles"][0] == "First, renamed" and seen["apq"]["same"]
    assert seen["apq"]["requests"] == [
        {"method": "GET", "hasQuery": False},
        {"method": "POST", "hasQuery": True},
        {"method": "GET", "hasQuery": False},
    ]


def test_graphql_sse_client_in_both_modes(node_tools: Path, database_url: str, tmp_path: Path) -> None:
    """The npm graphql-sse client: a stream per operation, and one reserved stream for all."""
    with running(database_url, log_path=tmp_path / "server.log") as server:
        done = node(node_tools, "sse-flow.mjs", server.url)
    assert done.returncode == 0, done.stderr + done.stdout
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])

    for mode in ("distinct", "single"):
        name = f"sse_{mode}"
        assert seen[mode]["me"] == name
        assert seen[mode]["changes"] == [f"{name} one", f"{name} two"]
        assert seen[mode]["together"] == [f"{name} three", f"{name} post"]
    assert seen["distinct"]["invalid"] == "GRAPHQL_VALIDATION_FAILED"  # an event on the stream
    assert seen["single"]["invalid"] == 400  # the operation's own request refused
    assert seen["badToken"] == "TOKEN_INVALID"


def test_apollo_client_4_reads_defer_and_stream(node_tools: Path, database_url: str, tmp_path: Path) -> None:
    """Apollo Client 4 with its GraphQL17Alpha9Handler over multipart/mixed: the titles first,
    then the deferred authors; a streamed list whole in the end."""
    with running(database_url, log_path=tmp_path / "server.log") as server:
        done = node(node_tools, "apollo4/defer.mjs", server.url)
    assert done.returncode == 0, done.stderr + done.stdout
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])

    first, *_, last = seen["deferred"]
    assert sorted(first["titles"]) == ["One", "Three", "Two"] and first["authors"] == [None] * 3
    assert last["titles"] == first["titles"] and last["authors"] == ["deferrer"] * 3
    assert sorted(seen["streamed"]) == ["One", "Three", "Two"]


def test_urql_reads_defer(node_tools: Path, database_url: str, tmp_path: Path) -> None:
    with running(database_url, log_path=tmp_path / "server.log") as server:
        done = node(node_tools, "urql-defer.mjs", server.url)
    assert done.returncode == 0, done.stderr + done.stdout
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["deferred"] == [
        {"authors": [None] * 3, "hasNext": True},
        {"authors": ["urql"] * 3, "hasNext": False},
    ]


def test_codegen_types_compile(node_tools: Path, tmp_path: Path) -> None:
    generated = node(node_tools, "node_modules/.bin/graphql-codegen", "--config", "codegen.yml")
    assert generated.returncode == 0, generated.stdout + generated.stderr
    types = (node_tools / "generated" / "graphql.ts").read_text()
    assert "export type FeedQuery" in types and "export type PostCreatedSubscription" in types

    tsc = ["node_modules/.bin/tsc", "--noEmit", "--strict", "--skipLibCheck", "--target", "es2020"]
    compiled = node(node_tools, *tsc, "typed-usage.ts")
    assert compiled.returncode == 0, compiled.stdout

    # The types are precise: a field the operation did not select does not compile.
    wrong = node_tools / "generated" / "wrong-usage.ts"
    wrong.write_text(
        'import type { FeedQuery } from "./graphql";\n'
        "export const f = (q: FeedQuery): string => q.posts.edges[0].node.content;\n"
    )
    refused = node(node_tools, *tsc, str(wrong.relative_to(node_tools)))
    assert refused.returncode != 0 and "'content' does not exist" in refused.stdout


def test_graphiql_with_its_explorer_runs_the_default_tab_in_chromium(
    node_tools: Path, sqlite_template: Path, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install-test-deps installs Debian's chromium")
    assert GraphiQLPage().offline, "web/graphiql/node_modules is missing: run `make install` with npm"
    database = tmp_path / "served.db"
    shutil.copy(sqlite_template, database)
    seeded = subprocess.run(
        [str(Path(sys.executable).parent / "quill"), "seed"],
        cwd=ROOT,
        env={"DATABASE_URL": f"sqlite:///{database}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert seeded.returncode == 0, seeded.stderr
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "graphiql.png"
    screenshot.unlink(missing_ok=True)

    with running(f"sqlite:///{database}", log_path=tmp_path / "server.log") as server:
        done = node(node_tools, "graphiql.mjs", server.url, str(screenshot))
    assert done.returncode == 0, done.stderr + done.stdout
    seen = json.loads(done.stdout)

    assert seen["title"] == "Quill · GraphiQL"
    assert seen["elsewhere"] == []  # every file came from this server, the Explorer's too
    assert seen["consoleErrors"] == [], seen["failed"]
    # the first tab shows one of each kind of operation, and the header to set
    assert seen["operations"] == [
        "query Feed",
        "mutation Login",
        "subscription MyTaskChanges",
        "mutation AddTask",
    ]
    assert seen["explorerFields"] > 5  # the Explorer lists the root fields
    edges = seen["answer"]["data"]["posts"]["edges"]
    assert len(edges) == 5 and all(edge["node"]["author"]["username"] for edge in edges)
    # the answer is on the page (the response pane)
    assert f'"title": {json.dumps(edges[0]["node"]["title"])}' in seen["shown"]
    assert screenshot.stat().st_size > 10_000


def test_graphiql_falls_back_to_the_cdn_without_installed_assets(tmp_path: Path) -> None:
    offline, online = GraphiQLPage(), GraphiQLPage(modules=tmp_path)

    assert "unpkg.com" not in offline.html and "/graphiql/assets/graphiql.js" in offline.html
    assert not online.offline
    assert 'src="https://unpkg.com/graphiql@3.8.3/graphiql.min.js" integrity="sha384-' in online.html
