"""@defer and @stream: the answer in parts over HTTP (multipart/mixed), WebSocket and SSE, and
whole, in one compiled statement, for a client that does not take parts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import OperationDefinitionNode, parse, print_ast
from graphql.execution.values import get_variable_values
from sqlalchemy.ext.asyncio import AsyncSession

from schema import build_schema
from schema.admission.admission import Prepared
from schema.compiled.parts import Page
from schema.compiled.parts import Parts as CompiledParts
from schema.compiled.parts import parts_of as compiled_parts_of
from settings import Settings
from tests.conftest import StatementCounter
from tests.factories import make_post, make_user
from tests.servers import Server
from tests.sse import distinct
from tests.ws import GraphQLWS

DEFERRED = "{ posts(first: 3) { edges { node { title ... @defer { author { username } } } } } }"
WHOLE = "{ posts(first: 3) { edges { node { title author { username } } } } }"
STREAMED = "{ posts(first: 3) { totalCount edges @stream(initialCount: 1) { node { title } } } }"
MULTIPART = {"Accept": "multipart/mixed; deferSpec=20220824, application/json"}


@pytest.fixture
async def three_posts(session: AsyncSession) -> None:
    ada, bob = await make_user(session, username="ada"), await make_user(session, username="bob")
    for index, author in enumerate((ada, bob, ada)):
        await make_post(session, author, title=f"Post {index}")


def parts_of(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON parts of a multipart/mixed body (boundary "-")."""
    assert response.headers["content-type"].startswith('multipart/mixed; boundary="-"'), response.headers
    text = response.text
    assert text.endswith("\r\n-----\r\n")
    chunks = text.removesuffix("\r\n-----\r\n").split("\r\n---")[1:]
    return [json.loads(chunk.split("\r\n\r\n", 1)[1]) for chunk in chunks]


def merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole answer the parts add up to, as a client assembles it (by pending id and path)."""
    data = json.loads(json.dumps(parts[0]["data"]))  # a copy: the parts stay as they came
    paths: dict[str, list[Any]] = {}
    for part in parts:
        paths |= {pending["id"]: pending["path"] for pending in part.get("pending", [])}
        for item in part.get("incremental", []):
            target: Any = data
            for key in paths[item["id"]] + item.get("subPath", []):
                target = target[key]
            if "items" in item:
                target.extend(item["items"])
            else:
                target.update(item["data"])
    return data


@pytest.mark.usefixtures("three_posts")
async def test_a_deferred_fragment_comes_after_the_first_part(client: httpx.AsyncClient) -> None:
    whole = (await client.post("/graphql", json={"query": WHOLE})).json()
    response = await client.post("/graphql", json={"query": DEFERRED}, headers=MULTIPART)
    parts = parts_of(response)

    first, *later = parts
    titles = [edge["node"]["title"] for edge in whole["data"]["posts"]["edges"]]
    assert [edge["node"] for edge in first["data"]["posts"]["edges"]] == [
        {"title": t} for t in titles
    ]  # no author yet
    assert [pending["path"] for pending in first["pending"]] == [
        ["posts", "edges", i, "node"] for i in range(3)
    ]
    assert first["hasNext"] is True and later[-1]["hasNext"] is False
    assert sorted(done["id"] for part in later for done in part.get("completed", [])) == ["0", "1", "2"]
    assert merged(parts) == whole["data"]


@pytest.mark.usefixtures("three_posts")
async def test_a_streamed_list_comes_item_by_item(client: httpx.AsyncClient) -> None:
    whole = (await client.post("/graphql", json={"query": WHOLE})).json()
    titles = [edge["node"]["title"] for edge in whole["data"]["posts"]["edges"]]
    parts = parts_of(await client.post("/graphql", json={"query": STREAMED}, headers=MULTIPART))
    assert len(parts[0]["data"]["posts"]["edges"]) == 1
    assert parts[0]["data"]["posts"]["totalCount"] == 3
    assert [edge["node"]["title"] for edge in merged(parts)["posts"]["edges"]] == titles
    # the items after the first came later (in one part here: they were ready together)
    assert sum(len(item.get("items", [])) for part in parts[1:] for item in part.get("incremental", [])) == 2


@pytest.mark.usefixtures("three_posts")
async def test_a_streamed_page_keeps_its_page_info_and_reads_its_first_edges_alone(
    client: httpx.AsyncClient, statements: StatementCounter, settings: Settings
) -> None:
    """The first part reads only the first edges, yet says what the whole page says."""
    query = "{ posts(first: 2) { totalCount pageInfo { hasNextPage endCursor } edges@ { cursor node { title } } } }"
    whole = (await client.post("/graphql", json={"query": query.replace("@", "")})).json()
    streamed = query.replace("@", " @stream(initialCount: 1)")
    with statements.count() as counted:
        parts = parts_of(await client.post("/graphql", json={"query": streamed}, headers=MULTIPART))
    first = parts[0]["data"]["posts"]
    assert list(first) == ["totalCount", "pageInfo", "edges"]  # in the query's order
    assert first["pageInfo"] == whole["data"]["posts"]["pageInfo"]  # the page's, not the first edge's
    assert first["edges"] == whole["data"]["posts"]["edges"][:1]
    assert merged(parts) == whole["data"]
    if settings.compiled_reads:
        assert counted.value == 2  # the first edge with the page's info, then the rest of the page


def split(query: str, variables: dict[str, Any] | None = None) -> CompiledParts | None:
    """The compiled path's parts of a query, as parts_of makes them."""
    graphql_schema = build_schema()._schema
    document = parse(query)
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    coerced = get_variable_values(graphql_schema, operation.variable_definitions or (), variables or {})
    assert not isinstance(coerced, list), coerced
    prepared = Prepared(
        query=query,
        document=document,
        operation=operation,
        fragments={},
        kind=operation.operation,
        name=None,
        variables=coerced,
        cost=0,
        takes_credentials=False,
        live=False,
    )
    return compiled_parts_of(graphql_schema, prepared)


def printed(prepared: Prepared) -> str:
    return " ".join(print_ast(prepared.operation.selection_set).split())


def test_a_streamed_connection_is_read_as_its_first_edges_then_its_whole_page() -> None:
    parts = split(
        "query ($n: Int!) { posts(first: $n, orderBy: { field: TITLE }) { totalCount"
        " edges @stream(initialCount: 2) { node { title } } } }",
        {"n": 10},
    )
    assert parts is not None and parts.streamed == ()
    assert printed(parts.initial) == (
        "{ posts(first: $n, orderBy: { field: TITLE }) { totalCount }"
        " _quillStream0: posts(orderBy: { field: TITLE }, first: 2) { pageInfo { hasNextPage } edges { node { title } } } }"
    )
    (page,) = parts.reads
    assert isinstance(page, Page) and page.path == ("posts", "edges") and page.keys == ("totalCount", "edges")
    assert (
        printed(page.prepared)
        == "{ posts(first: $n, orderBy: { field: TITLE }) { edges { node { title } } } }"
    )


def test_a_stream_in_each_item_reads_the_way_to_its_connections() -> None:
    parts = split(
        "{ users(first: 2) { edges { node { posts(first: 3) { edges @stream { node { title } } } } } } }"
    )
    assert parts is not None
    assert printed(parts.initial) == (
        "{ users(first: 2) { edges { node { _quillStream0: posts(first: 0)"
        " { pageInfo { hasNextPage } edges { node { title } } } } } } }"
    )
    assert printed(parts.reads[0].prepared) == (
        "{ users(first: 2) { edges { node { posts(first: 3) { edges { node { title } } } } } } }"
    )


@pytest.mark.parametrize(
    "query",
    [
        "{ posts(last: 3) { edges @stream(initialCount: 1) { node { title } } } }",  # first n ≠ last n
        "{ posts(first: 3) { edges @stream(initialCount: 3) { node { title } } } }",  # nothing follows
    ],
    ids=["taken with last", "no more than the first part"],
)
def test_other_streamed_lists_come_whole_and_are_cut(query: str) -> None:
    parts = split(query)
    assert parts is not None and parts.reads == () and len(parts.streamed) == 1
    assert "_quillStream" not in printed(parts.initial)


def test_a_deferred_fragment_in_streamed_items_goes_to_the_resolvers() -> None:
    """Its later items would need their own pending fragments: graphql-core's executor answers."""
    assert split("{ posts(first: 3) { edges @stream { node { title ... @defer { body } } } } }") is None


@pytest.mark.usefixtures("three_posts")
async def test_a_client_without_multipart_gets_the_whole_answer_in_one_statement(
    client: httpx.AsyncClient, statements: StatementCounter, settings: Settings
) -> None:
    with statements.count() as counted:
        deferred = (await client.post("/graphql", json={"query": DEFERRED})).json()
        streamed = (await client.post("/graphql", json={"query": STREAMED})).json()
    assert deferred == (await client.post("/graphql", json={"query": WHOLE})).json()
    assert len(streamed["data"]["posts"]["edges"]) == 3
    if settings.compiled_reads:
        assert counted.value == 2  # one compiled statement each: the directives cost nothing


async def test_directives_that_do_not_defer_answer_in_one_part(client: httpx.AsyncClient) -> None:
    query = "{ posts(first: 1) { totalCount ... @defer(if: false) { edges { cursor } } } }"
    response = await client.post("/graphql", json={"query": query}, headers=MULTIPART)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"data": {"posts": {"totalCount": 0, "edges": []}}}


async def test_a_bad_defer_is_a_validation_error(client: httpx.AsyncClient) -> None:
    query = "subscription { postCreated { ... @defer { title } } }"
    body = (await client.post("/graphql", json={"query": query}, headers=MULTIPART)).json()
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


@pytest.fixture
def sqlite_server(sqlite_template: Path, tmp_path: Path) -> Any:
    import shutil

    path = tmp_path / "parts.db"
    shutil.copy(sqlite_template, path)
    server = Server(f"sqlite:///{path}", log_path=tmp_path / "parts.log")
    server.start()
    yield server
    server.stop()


async def test_parts_are_messages_over_websocket_and_events_over_sse(sqlite_server: Server) -> None:
    query = "{ posts(first: 1) { totalCount ... @defer { edges { cursor } } } }"
    async with GraphQLWS(sqlite_server.url) as ws:
        await ws.acknowledged()
        await ws.send({"id": "1", "type": "subscribe", "payload": {"query": query}})
        over_ws = [await ws.receive() for _ in range(3)]
    assert [message["type"] for message in over_ws] == ["next", "next", "complete"]
    assert over_ws[0]["payload"] == {
        "data": {"posts": {"totalCount": 0}},
        "pending": [{"id": "0", "path": ["posts"]}],
        "hasNext": True,
    }
    assert over_ws[1]["payload"] == {
        "incremental": [{"data": {"edges": []}, "id": "0"}],
        "completed": [{"id": "0"}],
        "hasNext": False,
    }
    async with (
        httpx.AsyncClient(base_url=sqlite_server.url, timeout=30) as http,
        distinct(http, query) as events,
    ):
        over_sse = await events.until_end()
    assert over_sse == [("next", over_ws[0]["payload"]), ("next", over_ws[1]["payload"]), ("complete", None)]


@pytest.mark.usefixtures("three_posts")
async def test_the_compiled_path_reads_each_part_with_one_statement(
    client: httpx.AsyncClient, statements: StatementCounter, settings: Settings
) -> None:
    """The first part without the deferred fields, then one statement per deferred fragment
    however many objects it is on; a streamed connection's rest of the page from its own."""
    two_fragments = (
        "{ posts(first: 3) { edges { node { title ... @defer { author { username } } } } }"
        ' ... @defer(label: "count") { users(first: 1) { totalCount } } }'
    )
    counted: dict[str, int] = {}
    for name, query in {"deferred": DEFERRED, "two": two_fragments, "streamed": STREAMED}.items():
        with statements.count() as count:
            parts = parts_of(await client.post("/graphql", json={"query": query}, headers=MULTIPART))
        counted[name] = count.value
        assert parts[-1]["hasNext"] is False
    labels = [
        p.get("label")
        for p in parts_of(await client.post("/graphql", json={"query": two_fragments}, headers=MULTIPART))[0][
            "pending"
        ]
    ]
    assert sorted(map(str, labels)) == ["None", "None", "None", "count"]  # in either path's order
    if settings.compiled_reads:
        assert counted == {"deferred": 2, "two": 3, "streamed": 2}


@pytest.mark.usefixtures("three_posts")
@pytest.mark.parametrize(
    ("deferred", "whole"),
    [
        ("{ ... @defer { posts(first: 2) { totalCount } } }", "{ posts(first: 2) { totalCount } }"),
        (
            "{ users(first: 2) { edges { node { username posts(first: 3) { edges @stream { node { title } } } } } } }",
            "{ users(first: 2) { edges { node { username posts(first: 3) { edges { node { title } } } } } } }",
        ),
        (
            "query ($n: Int!) { posts(first: $n) { edges { node { ...Later @defer } } } }"
            " fragment Later on Post { title author { username } }",
            "query ($n: Int!) { posts(first: $n) { edges { node { title author { username } } } } }",
        ),
        (
            "query ($n: Int!) { posts(first: $n) { edges @stream(initialCount: 1) { cursor node { title } }"
            " ... @defer { totalCount pageInfo { endCursor } } } }",
            "query ($n: Int!) { posts(first: $n) { edges { cursor node { title } } totalCount pageInfo { endCursor } } }",
        ),
    ],
    ids=[
        "all deferred",
        "a stream in each item",
        "a deferred named fragment",
        "a stream and a defer on one page",
    ],
)
async def test_parts_add_up_to_the_whole_answer(client: httpx.AsyncClient, deferred: str, whole: str) -> None:
    variables = {"n": 2}
    expected = (await client.post("/graphql", json={"query": whole, "variables": variables})).json()
    response = await client.post(
        "/graphql", json={"query": deferred, "variables": variables}, headers=MULTIPART
    )
    assert merged(parts_of(response)) == expected["data"]
