"""Every hostile request through every way into the server, with the same class of answer from each.

The ways in are the transports the server wires (`app.state.transports`, server.py), each read
here through all of its doors: HTTP POST, GET, a batch, an automatic persisted query, a document
the server already knows (answered from the admission step's memory), both WebSocket
protocols, and SSE's POST and GET streams and its reserved (single connection) stream. A new transport fails `test_every_transport_is_covered` until its doors are added.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from server import create_app
from settings import Settings
from tests import sse
from tests.api import LOGOUT, REGISTER
from tests.servers import TEST_ENV, Server
from tests.ws import LEGACY_WS, TRANSPORT_WS, GraphQLWS

UNAUTHENTICATED = "unauthenticated"  # HTTP 401, a WebSocket closed with 4403
AUTH_CODES = {"TOKEN_EXPIRED", "TOKEN_INVALID", "TOKEN_REVOKED"}

ENV = {
    "MAX_DOCUMENT_BYTES": "4000",
    "MAX_VARIABLES_BYTES": "2000",
    "MAX_TOKENS": "500",
    "RATE_LIMIT": "1",
    "RATE_LIMIT_BURST": "5000",
    "RATE_LIMIT_PER_SECOND": "1000",
}


@dataclass(frozen=True)
class Case:
    name: str
    query: str
    variables: dict[str, Any] | None = None
    token: str | None = None  # "user", "expired", "invalid", "revoked"
    expected: frozenset[str] | str = frozenset()  # error codes, or UNAUTHENTICATED


def codes(*names: str) -> frozenset[str]:
    return frozenset(names)


DEEP = "{ " + "posts { edges { node { author { " * 4 + "username" + " } } } }" * 4 + " }"
INTROSPECTION = " ".join(f"s{i}: __schema {{ types {{ name }} }}" for i in range(29))
COSTLY = "query ($n: Int = 100) { users(first: $n) { edges { node { posts(first: $n) { edges { node { author { tasks(first: $n) { totalCount } } } } } } } } }"

CASES = [
    Case("a plain query", "{ posts(first: 2) { totalCount } }"),
    Case("a plain query as a user", "{ me { username } }", token="user"),
    Case(
        "a document over the size limit",
        "{ posts { totalCount } } #" + "x" * 4100,
        expected=codes("DOCUMENT_TOO_LARGE"),
    ),
    Case(
        "variables over the size limit",
        "query ($s: String) { posts(filter: {titleContains: $s}) { totalCount } }",
        {"s": "v" * 2100},
        expected=codes("VARIABLES_TOO_LARGE"),
    ),
    Case("a document that does not parse", "{ posts {", expected=codes("GRAPHQL_PARSE_FAILED")),
    Case(
        "too many tokens", "{ " + "posts { totalCount } " * 130 + "}", expected=codes("GRAPHQL_PARSE_FAILED")
    ),
    Case("a field that does not exist", "{ nope }", expected=codes("GRAPHQL_VALIDATION_FAILED")),
    Case(
        "a @oneOf input given two keys",
        '{ user(by: {id: "VXNlcjox", username: "ada"}) { username } }',
        expected=codes("GRAPHQL_VALIDATION_FAILED"),
    ),
    Case("too deep", DEEP, expected=codes("QUERY_TOO_DEEP")),
    Case(
        "too many aliases",
        "{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }",
        expected=codes("TOO_MANY_ALIASES"),
    ),
    Case("a costly default variable", COSTLY, expected=codes("QUERY_TOO_COSTLY")),
    Case("a costly float variable", COSTLY, {"n": 100.0}, expected=codes("QUERY_TOO_COSTLY")),
    Case("costly introspection", "{ " + INTROSPECTION + " }", expected=codes("QUERY_TOO_COSTLY")),
    Case(
        "two operations, no name",
        "query A { __typename } query B { __typename }",
        expected=codes("OPERATION_RESOLUTION_FAILURE"),
    ),
    Case(
        "an unknown operation name",
        "query A { __typename }",
        {"__operation": "B"},
        expected=codes("OPERATION_RESOLUTION_FAILURE"),
    ),
    Case(
        "a variable that does not coerce",
        "query ($n: Int) { posts(first: $n) { totalCount } }",
        {"n": "many"},
        expected=codes("BAD_USER_INPUT"),
    ),
    Case(
        "an ID out of range",
        "query ($id: ID!) { post(id: $id) { title } }",
        {"id": base64.b64encode(b"Post:18446744073709551616").decode()},
        expected=codes("BAD_USER_INPUT"),
    ),
    Case("a page too large", "{ posts(first: 101) { totalCount } }", expected=codes("BAD_USER_INPUT")),
    Case("an expired token", "{ me { username } }", token="expired", expected=UNAUTHENTICATED),
    Case("a forged token", "{ posts { totalCount } }", token="invalid", expected=UNAUTHENTICATED),
    Case("a revoked token", "{ me { username } }", token="revoked", expected=UNAUTHENTICATED),
    Case(
        "a spent rate limit",
        "{ users(first: 100) { edges { node { posts(first: 60) { totalCount } } } } }",
        token="user",
        expected=codes("RATE_LIMITED"),
    ),
]


def _operation_name(case: Case) -> tuple[str | None, dict[str, Any] | None]:
    variables = dict(case.variables or {})
    name = variables.pop("__operation", None)
    return name, variables or None


def _outcome_of(status: int, body: Any) -> frozenset[str] | str:
    if status == 401:
        return UNAUTHENTICATED
    found = frozenset((error.get("extensions") or {}).get("code", "?") for error in body.get("errors", []))
    return UNAUTHENTICATED if found and found <= AUTH_CODES else found


Door = Callable[[Case, str | None], Awaitable[frozenset[str] | str]]


@dataclass
class Doors:
    server: Server
    client: httpx.AsyncClient

    def _headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _body(self, case: Case) -> dict[str, Any]:
        name, variables = _operation_name(case)
        return {"query": case.query, "variables": variables, "operationName": name}

    async def post(self, case: Case, token: str | None) -> frozenset[str] | str:
        response = await self.client.post("/graphql", json=self._body(case), headers=self._headers(token))
        return _outcome_of(response.status_code, response.json())

    async def get(self, case: Case, token: str | None) -> frozenset[str] | str:
        body = self._body(case)
        params = {
            "query": body["query"],
            **({"variables": json.dumps(body["variables"])} if body["variables"] else {}),
        }
        if body["operationName"]:
            params["operationName"] = body["operationName"]
        response = await self.client.get("/graphql", params=params, headers=self._headers(token))
        return _outcome_of(response.status_code, response.json())

    async def batch(self, case: Case, token: str | None) -> frozenset[str] | str:
        response = await self.client.post(
            "/graphql", json=[self._body(case), {"query": "{ __typename }"}], headers=self._headers(token)
        )
        first, second = response.json()
        assert second == {"data": {"__typename": "Query"}} or "errors" in second
        return _outcome_of(401 if response.status_code == 401 else 200, first)

    async def persisted(self, case: Case, token: str | None) -> frozenset[str] | str:
        body = self._body(case)
        sha = hashlib.sha256(case.query.encode()).hexdigest()
        body["extensions"] = {"persistedQuery": {"version": 1, "sha256Hash": sha}}
        response = await self.client.post("/graphql", json=body, headers=self._headers(token))
        return _outcome_of(response.status_code, response.json())

    async def known(self, case: Case, token: str | None) -> frozenset[str] | str:
        """The same request a second time: answered from what the admission step remembered."""
        for _ in range(2):
            response = await self.client.post("/graphql", json=self._body(case), headers=self._headers(token))
        return _outcome_of(response.status_code, response.json())

    async def websocket(self, case: Case, token: str | None, protocol: str) -> frozenset[str] | str:
        async with GraphQLWS(self.server.url, token=token, protocol=protocol) as ws:
            assert ws.ws is not None
            try:
                first = await ws.receive_any()
            except ConnectionClosed:
                return UNAUTHENTICATED if ws.ws.close_code == 4403 else f"closed {ws.ws.close_code}"
            if first["type"] == "connection_error":
                return UNAUTHENTICATED
            assert first["type"] == "connection_ack", first
            name, variables = _operation_name(case)
            assert ws.ws is not None
            operation_id = "op"
            kind = "subscribe" if protocol == TRANSPORT_WS else "start"
            payload = {"query": case.query, "variables": variables, "operationName": name}
            await ws.send({"id": operation_id, "type": kind, "payload": payload})
            try:
                message = await ws.receive(10)
            except Exception:  # noqa: BLE001 - the server closed the socket
                return UNAUTHENTICATED if ws.ws.close_code == 4403 else f"closed {ws.ws.close_code}"
        if message["type"] == "error":
            errors = message["payload"] if isinstance(message["payload"], list) else [message["payload"]]
            return _outcome_of(200, {"errors": errors})
        return _outcome_of(200, message["payload"])

    async def sse_post(self, case: Case, token: str | None) -> frozenset[str] | str:
        return await self._sse_distinct(case, token, "POST")

    async def sse_get(self, case: Case, token: str | None) -> frozenset[str] | str:
        return await self._sse_distinct(case, token, "GET")

    async def _sse_distinct(self, case: Case, token: str | None, method: str) -> frozenset[str] | str:
        """A stream of its own: every refusal arrives as a `next` event on it."""
        name, variables = _operation_name(case)
        async with sse.distinct(
            self.client, case.query, variables, token=token, method=method, operation_name=name
        ) as events:
            [(kind, data), end] = await events.until_end()
        assert kind == "next" and end[0] == "complete"
        return _outcome_of(200, data)

    async def sse_single(self, case: Case, token: str | None) -> frozenset[str] | str:
        """A reserved stream: the reservation takes the token; refusals answer the POST itself."""
        reserved = await self.client.put("/graphql", headers=self._headers(token))
        if reserved.status_code != 201:
            return _outcome_of(reserved.status_code, reserved.json())
        stream = reserved.text
        async with sse.single(self.client, stream) as events:
            body = {**self._body(case), "extensions": {"operationId": "op"}}
            posted = await self.client.post("/graphql", json=body, headers={sse.TOKEN_HEADER: stream})
            if posted.status_code != 202:
                return _outcome_of(posted.status_code, posted.json())
            kind, data = await events.next()
        assert kind == "next" and data["id"] == "op"
        return _outcome_of(200, data["payload"])

    async def transport_ws(self, case: Case, token: str | None) -> frozenset[str] | str:
        return await self.websocket(case, token, TRANSPORT_WS)

    async def legacy_ws(self, case: Case, token: str | None) -> frozenset[str] | str:
        return await self.websocket(case, token, LEGACY_WS)


DOORS: dict[str, tuple[str, ...]] = {
    "http": ("post", "get", "batch", "persisted", "known"),
    "websocket": ("transport_ws", "legacy_ws"),
    "sse": ("sse_post", "sse_get", "sse_single"),
}


def test_every_transport_is_covered(settings: Settings) -> None:
    """A way in the server wires but this table does not send its cases through fails here."""
    app = create_app(settings)
    assert set(app.state.transports) == set(DOORS)


@pytest.fixture
def sqlite_file(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "entrances.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
async def doors(sqlite_file: str, tmp_path: Path) -> AsyncIterator[Doors]:
    server = Server(sqlite_file, log_path=tmp_path / "entrances.log", env=ENV)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            yield Doors(server, client)
    finally:
        server.stop()


async def _tokens(doors: Doors) -> dict[str, str]:
    async def account(name: str) -> dict[str, Any]:
        body = {
            "query": REGISTER,
            "variables": {"input": {"username": name, "email": f"{name}@example.com", "password": "x" * 12}},
        }
        return (await doors.client.post("/graphql", json=body)).json()["data"]["register"]

    user, revoked = await account("visitor"), await account("leaver")
    logout = {"query": LOGOUT, "variables": {"input": {"everywhere": True}}}
    assert (
        await doors.client.post(
            "/graphql", json=logout, headers={"Authorization": f"Bearer {revoked['accessToken']}"}
        )
    ).status_code == 200
    claims = jwt.decode(user["accessToken"], options={"verify_signature": False})
    expired = jwt.encode({**claims, "exp": 1}, TEST_ENV["SECRET_KEY"], algorithm="HS256")
    forged = jwt.encode(claims, "not-the-server-key-" + "q" * 40, algorithm="HS256")
    await asyncio.sleep(0.05)
    return {
        "user": user["accessToken"],
        "revoked": revoked["accessToken"],
        "expired": expired,
        "invalid": forged,
    }


async def test_every_hostile_request_gets_the_same_answer_through_every_door(doors: Doors) -> None:
    tokens = await _tokens(doors)
    seen: dict[str, dict[str, Any]] = {}
    for case in CASES:
        token = tokens[case.token] if case.token else None
        for transport, names in DOORS.items():
            for name in names:
                outcome = await getattr(doors, name)(case, token)
                seen.setdefault(case.name, {})[f"{transport}:{name}"] = outcome
    wrong = {
        case.name: {door: outcome for door, outcome in seen[case.name].items() if outcome != case.expected}
        for case in CASES
    }
    assert {name: doors_ for name, doors_ in wrong.items() if doors_} == {}, json.dumps(
        {
            name: {door: sorted(o) if isinstance(o, frozenset) else o for door, o in by_door.items()}
            for name, by_door in seen.items()
        },
        indent=1,
    )


async def test_a_plain_query_takes_the_compiled_path_through_every_door(doors: Doors, tmp_path: Path) -> None:
    """The compiled path is not a transport's: every door hands the query to the same runner."""
    plain = Case("named", "query Plain { posts(first: 2) { totalCount edges { node { title } } } }")
    for transport, names in DOORS.items():
        for name in names:
            assert await getattr(doors, name)(plain, None) == frozenset(), (transport, name)
    await asyncio.sleep(0.2)  # the socket's operation line is written as it closes
    executors: dict[str, list[str]] = {}
    for line in (tmp_path / "entrances.log").read_text().splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        for operation in entry.get("operations", [entry]):
            if operation.get("name") == "Plain":
                executors.setdefault(entry.get("transport", "http"), []).append(operation["executor"])
    expected = "compiled" if Settings.from_env().compiled_reads else "resolvers"
    # POST, GET, batch, persisted, known (twice); both socket protocols; SSE's POST, GET, single.
    counts = {transport: len(seen) for transport, seen in executors.items()}
    assert counts == {"http": 6, "websocket": 2, "sse": 3}
    assert {executor for seen in executors.values() for executor in seen} == {expected}
