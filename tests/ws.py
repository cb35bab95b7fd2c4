"""A small GraphQL-over-WebSocket client (both protocols), as a browser's graphql-ws would talk."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


class GraphQLWS:
    def __init__(self, base_url: str, *, token: str | None = None, protocol: str = TRANSPORT_WS) -> None:
        self.url = base_url.replace("http://", "ws://") + "/graphql"
        self.token = token
        self.protocol = protocol
        self.ids = itertools.count(1)
        self.ws: ClientConnection | None = None

    async def __aenter__(self) -> GraphQLWS:
        self.ws = await connect(
            self.url, subprotocols=[Subprotocol(self.protocol)], open_timeout=10, max_size=None
        )
        payload = {"authorization": f"Bearer {self.token}"} if self.token else {}
        await self.send({"type": "connection_init", "payload": payload})
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.ws is not None
        await self.ws.close()

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def receive(self, seconds: float = 10) -> dict[str, Any]:
        """The next message that is not a keep-alive."""
        assert self.ws is not None
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), seconds))
            if message["type"] not in ("ping", "pong", "ka"):
                return message

    async def acknowledged(self) -> None:
        message = await self.receive()
        assert message["type"] == "connection_ack", message

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        operation_id = str(next(self.ids))
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send(
            {"id": operation_id, "type": kind, "payload": {"query": query, "variables": variables or {}}}
        )
        return operation_id

    async def next_data(self, seconds: float = 10) -> dict[str, Any]:
        """The data of the next result; fails on anything else."""
        message = await self.receive(seconds)
        assert message["type"] in ("next", "data"), message
        assert "errors" not in message["payload"], message
        return message["payload"]["data"]

    async def nothing_within(self, seconds: float) -> bool:
        """True when no message (but keep-alives) arrives in `seconds`."""
        try:
            message = await self.receive(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"expected nothing, got {message}")


async def close_code(ws: GraphQLWS, seconds: float = 10) -> int | None:
    """Wait until the server closes the connection; its close code."""
    assert ws.ws is not None
    try:
        while True:
            await asyncio.wait_for(ws.ws.recv(), seconds)
    except Exception:  # noqa: BLE001 - closing raises ConnectionClosed; the code is what matters
        return ws.ws.close_code
