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

    async def receive_any(self, seconds: float = 10) -> dict[str, Any]:
        """The next message, whatever it is (pings and pongs included)."""
        assert self.ws is not None
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), seconds))
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


async def unread_connection(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection with a tiny receive window, set before connecting: what the server sends a
    client that does not read piles up in the server's own socket buffer within a few megabytes."""
    import socket

    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, (host, port))
    return await asyncio.open_connection(sock=raw)


class SilentSocket:
    """A WebSocket client that subscribes and then never reads what the server sends: a raw TCP
    socket that did the handshake and writes its frames by hand (a library client would keep
    reading into its own buffer)."""

    def __init__(self, base_url: str, query: str, protocol: str = TRANSPORT_WS) -> None:
        self.host, port = base_url.removeprefix("http://").split(":")
        self.port, self.query, self.protocol = int(port), query, protocol
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        import base64
        import os

        reader, writer = await unread_connection(self.host, self.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /graphql HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {self.protocol}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b" 101 " in response.split(b"\r\n", 1)[0], response
        self.writer = writer
        self.frame({"type": "connection_init", "payload": {}})
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        self.frame({"id": "1", "type": kind, "payload": {"query": self.query}})
        await writer.drain()
        # From here on nothing is read: the server's frames pile up in the socket's buffers.

    def frame(self, message: dict[str, Any]) -> None:
        import os

        assert self.writer is not None
        payload = json.dumps(message).encode()
        mask = os.urandom(4)
        header = bytearray([0x81])
        if len(payload) < 126:
            header.append(0x80 | len(payload))
        else:
            header.append(0x80 | 126)
            header += len(payload).to_bytes(2, "big")
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.writer.write(bytes(header) + mask + masked)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
