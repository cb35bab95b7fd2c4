"""A small GraphQL-over-SSE client (graphql-sse, both modes), as a browser's would talk, over httpx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

TOKEN_HEADER = "X-GraphQL-Event-Stream-Token"


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class Events:
    """The events of one open stream, read as they come: (event, data) pairs, the data parsed as
    JSON when it has any; ("end", None) when the server ended the stream."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        kind, data = "", ""
        try:
            async for line in self.response.aiter_lines():
                if line.startswith(":"):
                    continue  # a comment: the server's keep-alive
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line == "" and kind:
                    self._queue.put_nowait((kind, json.loads(data) if data else None))
                    kind, data = "", ""
        except httpx.HTTPError:
            pass
        self._queue.put_nowait(("end", None))

    def close(self) -> None:
        self._reader.cancel()

    async def next(self, seconds: float = 10) -> tuple[str, Any]:
        return await asyncio.wait_for(self._queue.get(), seconds)

    async def next_data(self, seconds: float = 10) -> Any:
        """The next `next` event's data; fails on anything else."""
        kind, data = await self.next(seconds)
        assert kind == "next", (kind, data)
        return data

    async def nothing_within(self, seconds: float) -> bool:
        try:
            seen = await self.next(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"expected nothing, got {seen}")

    async def until_end(self, seconds: float = 10) -> list[tuple[str, Any]]:
        """Every event left, until the server ends the stream."""
        seen: list[tuple[str, Any]] = []
        while (event := await self.next(seconds))[0] != "end":
            seen.append(event)
        return seen


@asynccontextmanager
async def _events(request: Any) -> AsyncIterator[Events]:
    async with request as response:
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        events = Events(response)
        try:
            yield events
        finally:
            events.close()


@asynccontextmanager
async def distinct(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    method: str = "POST",
    operation_name: str | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Events]:
    """One operation on a stream of its own (distinct connections mode)."""
    headers = {"Accept": "text/event-stream", **bearer(token), **(headers or {})}
    body = {"query": query, "variables": variables, "operationName": operation_name}
    if method == "GET":
        params = {"query": query, **({"variables": json.dumps(variables)} if variables else {})}
        params |= {"operationName": operation_name} if operation_name else {}
        request = client.stream("GET", "/graphql", params=params, headers=headers)
    else:
        request = client.stream("POST", "/graphql", json=body, headers=headers)
    async with _events(request) as events:
        yield events


async def reserve(client: httpx.AsyncClient, token: str | None = None) -> str:
    """A single connection mode stream's reservation token."""
    response = await client.put("/graphql", headers=bearer(token))
    assert response.status_code == 201, response.text
    return response.text


@asynccontextmanager
async def single(client: httpx.AsyncClient, stream_token: str) -> AsyncIterator[Events]:
    """The reserved stream, open."""
    headers = {"Accept": "text/event-stream", TOKEN_HEADER: stream_token}
    async with _events(client.stream("GET", "/graphql", headers=headers)) as events:
        yield events


async def post_operation(
    client: httpx.AsyncClient,
    stream_token: str,
    operation_id: str,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
) -> httpx.Response:
    """Run an operation on a reserved stream (202 when it was accepted)."""
    body = {"query": query, "variables": variables, "extensions": {"operationId": operation_id}}
    headers = {TOKEN_HEADER: stream_token, **bearer(token)}
    return await client.post("/graphql", json=body, headers=headers)


async def stop_operation(client: httpx.AsyncClient, stream_token: str, operation_id: str) -> httpx.Response:
    return await client.delete(
        "/graphql", params={"operationId": operation_id}, headers={TOKEN_HEADER: stream_token}
    )


class SilentStream:
    """An SSE client that asks for a subscription's stream and then never reads it: a raw TCP
    socket with a tiny receive window (a library client would keep reading into its buffer)."""

    def __init__(self, base_url: str, query: str) -> None:
        self.host, port = base_url.removeprefix("http://").split(":")
        self.port, self.query = int(port), query
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        from urllib.parse import quote

        from tests.ws import unread_connection

        _, self.writer = await unread_connection(self.host, self.port)
        self.writer.write(
            (
                f"GET /graphql?query={quote(self.query)} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        await self.writer.drain()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
