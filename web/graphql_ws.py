"""GraphQL over WebSocket at /graphql: graphql-transport-ws (graphql-ws, Apollo Client, urql)
and the legacy graphql-ws protocol (subscriptions-transport-ws).

A transport only: it reads frames and writes answers. Each operation a frame starts goes through
the admission step (schema/admission/) with the socket's authentication, like any HTTP request;
queries, mutations and subscriptions then run in schema/execution/run.py.

The connection:
- authenticates in `connection_init`: `{"authorization": "Bearer <access token>"}`. No token is
  anonymous; a token that fails closes the connection (4403 Forbidden; on the legacy protocol
  `connection_error` first). The wait for `connection_init` is WS_INIT_TIMEOUT_SECONDS (4408).
- lives as long as its token: at the token's expiry the connection is closed with 4403, unless
  the client renewed it on the socket by then: a graphql-transport-ws `ping` whose payload is
  `{"authorization": "Bearer <new token>"}` (answered by a `pong` with `expiresAt`), or on the
  legacy protocol a second `connection_init`. The new token must be the same user's. When a
  user's tokens are revoked (logout, a new password, a deleted account, changed rights), their
  connections on every process close with 4403 within a moment.
- holds at most WS_MAX_SUBSCRIPTIONS_PER_SOCKET subscriptions, and its address at most
  WS_MAX_SUBSCRIPTIONS_PER_CLIENT over all its connections; the process at most
  WS_MAX_SUBSCRIPTIONS. Past a limit the `subscribe` is answered with an error.
- sends with a time limit (WS_SEND_TIMEOUT_SECONDS): a client that does not read its socket is
  dropped (1008), and never holds a database connection meanwhile (answers are read first,
  their connection released, then sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schema.admission.admission import Admission, Admitted, Request
from schema.admission.refusals import Refusal
from schema.admission.tokens import ANONYMOUS_AUTHENTICATION, AccessTokens, Authentication
from schema.errors import FAILURE_MESSAGES, AuthFailure
from schema.execution.answers import Answer, send_parts
from schema.execution.run import Operations
from web.addresses import ClientAddresses
from web.headers import headers_of
from web.subscription_seats import Seats, too_many
from web.token_clock import TokenClock

log = logging.getLogger("quill.websocket")

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
FORBIDDEN = 4403


@dataclass(frozen=True, slots=True)
class Limits:
    init_timeout_seconds: float
    send_timeout_seconds: float
    keep_alive_seconds: float = 15.0


class _Closed(Exception):
    """The connection is over (closed by either side): stop serving it."""


class Sockets:
    """The sockets of this process: who is connected as whom, and the subscription seats they
    share with the other streaming transports (web/subscription_seats.py)."""

    def __init__(self, limits: Limits, seats: Seats) -> None:
        self.limits, self.seats = limits, seats
        self.connections: set[_Connection] = set()
        self._watchdog: asyncio.Task[None] | None = None
        # The connections whose send is under way, by when it began: in that order, as dicts keep
        # their insertion order, so the watchdog looks only at the oldest.
        self.sending: dict[_Connection, float] = {}

    def add(self, connection: _Connection) -> None:
        self.connections.add(connection)
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch(), name="quill-websocket-send-watchdog")

    async def _watch(self) -> None:
        """Drop the connections whose send has waited past the time limit (a client that does
        not read). One task looking a few times a second, rather than a timer per frame (that
        timer was a tenth of a delivery's CPU with 10,000 subscribers). Ends with the last socket."""
        limit = self.limits.send_timeout_seconds
        while self.connections:
            await asyncio.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            for connection, since in list(self.sending.items()):
                if now - since <= limit:
                    break  # and every later one began later still
                connection.drop_stuck_send()

    def revoked(self, user_id: int) -> None:
        """A user's tokens were revoked: their connections whose token is now refused close."""
        for connection in list(self.connections):
            if connection.authentication.viewer.id == user_id:
                connection.check_token()


class GraphQLWebSocket:
    """ASGI middleware: serves WebSockets to `path`, hands everything else to the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        admission: Admission,
        operations: Operations,
        tokens: AccessTokens,
        addresses: ClientAddresses,
        sockets: Sockets,
        path: str,
    ) -> None:
        self.app = app
        self.admission, self.operations, self.tokens = admission, operations, tokens
        self.addresses, self.sockets, self.path = addresses, sockets, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        offered = scope.get("subprotocols") or []
        protocol = next((name for name in (TRANSPORT_WS, LEGACY_WS) if name in offered), None)
        if protocol is None:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 4406, "reason": "Subprotocol not acceptable"})
            return
        await send({"type": "websocket.accept", "subprotocol": protocol})
        peer = scope["client"][0] if scope.get("client") else None
        address = self.addresses.of(peer, headers_of(scope).get(b"x-forwarded-for"))
        connection = _Connection(self, protocol, address, receive, send)
        self.sockets.add(connection)
        try:
            await connection.serve()
        finally:
            self.sockets.connections.discard(connection)
            await connection.end()


class _Connection:
    def __init__(
        self, server: GraphQLWebSocket, protocol: str, address: str, receive: Receive, send: Send
    ) -> None:
        self.server, self.protocol, self.address = server, protocol, address
        self.limits = server.sockets.limits
        self._receive, self._send = receive, send
        self.authentication: Authentication = ANONYMOUS_AUTHENTICATION
        self.acknowledged = False
        self.operations: dict[str, asyncio.Task[None]] = {}
        self.subscriptions = 0
        self._send_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()  # asked once: each asking is a getpid() call
        # The task whose send is under way, and the one the watchdog (Sockets._watch) cancelled.
        self._sender: asyncio.Task[Any] | None = None
        self._stuck: asyncio.Task[Any] | None = None
        # A send _write_now began that has to wait for the socket; later frames wait for it.
        self._finishing: asyncio.Future[Any] | None = None
        self._steppable = inspect.iscoroutinefunction(send)  # an ASGI send is, as a rule
        self._closed = asyncio.Event()
        self._clock = TokenClock(self.check_token)
        self._keep_alive: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None

    @property
    def legacy(self) -> bool:
        return self.protocol == LEGACY_WS

    # The connection's life.

    async def serve(self) -> None:
        try:
            first = await asyncio.wait_for(self._next_message(), self.limits.init_timeout_seconds)
        except TimeoutError:
            await self.close(4408, "Connection initialisation timeout")
            return
        except _Closed:
            return
        try:
            await self._handle(first)
            while not self._closed.is_set():
                await self._handle(await self._next_message())
        except _Closed:
            return

    async def _next_message(self) -> dict[str, Any]:
        while True:
            receiving = asyncio.ensure_future(self._receive())
            closing = asyncio.ensure_future(self._closed.wait())
            done, _ = await asyncio.wait({receiving, closing}, return_when=asyncio.FIRST_COMPLETED)
            if receiving not in done:
                receiving.cancel()
                raise _Closed
            closing.cancel()
            message: Message = receiving.result()
            if message["type"] == "websocket.disconnect":
                self._closed.set()
                raise _Closed
            if message["type"] != "websocket.receive":
                continue
            text = message.get("text")
            if text is None:
                await self.close(4400, "Binary frames are not GraphQL messages")
                raise _Closed
            if refusal := self.server.admission.frame_too_large(len(text)):
                await self.close(1009, refusal.errors[0]["message"])
                raise _Closed
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
                await self.close(4400, "Invalid message received")
                raise _Closed
            return parsed

    async def end(self) -> None:
        """The socket is gone: stop everything that was running for it."""
        self._closed.set()
        self._clock.stop()
        if self._keep_alive is not None:
            self._keep_alive.cancel()
        if self._finishing is not None:
            self._finishing.cancel()  # a frame still waiting for the socket: nobody will read it
        for task in list(self.operations.values()):
            task.cancel()
        for task in list(self.operations.values()):
            with contextlib.suppress(BaseException):
                await task

    async def close(self, code: int, reason: str) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(Exception):
            message = {"type": "websocket.close", "code": code, "reason": reason[:120]}
            await asyncio.wait_for(self._send(message), self.limits.send_timeout_seconds)

    # Messages.

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "connection_init":
            await self._init(message.get("payload"))
        elif kind in ("subscribe", "start"):
            await self._start(message)
        elif kind in ("complete", "stop"):
            task = self.operations.get(str(message.get("id")))
            if task is not None:
                task.cancel()
        elif kind == "ping" and not self.legacy:
            await self._ping(message.get("payload"))
        elif kind == "pong" and not self.legacy:
            pass
        elif kind == "connection_terminate" and self.legacy:
            await self.close(1000, "")
        else:
            await self.close(4400, f"Unexpected message of type {kind}")

    async def _init(self, payload: Any) -> None:
        params = payload if isinstance(payload, dict) else {}
        if self.acknowledged and not self.legacy:
            await self.close(4429, "Too many initialisation requests")
            return
        authentication = self.server.tokens.from_header(_authorization(params))
        if self.acknowledged:  # the legacy protocol renews its token with another init
            await self._renew(authentication)
            return
        if authentication.failure is not None:
            if self.legacy:
                reason = authentication.failure
                await self._write(
                    {
                        "type": "connection_error",
                        "payload": {"message": FAILURE_MESSAGES[reason], "reason": reason.value},
                    }
                )
            await self.close(FORBIDDEN, "Forbidden")
            return
        self._authenticate(authentication)
        self.acknowledged = True
        await self._write({"type": "connection_ack"})
        if self.legacy:
            self._keep_alive = asyncio.create_task(self._keep_alive_loop())

    async def _ping(self, payload: Any) -> None:
        if isinstance(payload, dict) and _authorization(payload) is not None and self.acknowledged:
            renewed = await self._renew(self.server.tokens.from_header(_authorization(payload)))
            if renewed:
                expires = self.authentication.expires_at
                await self._write({"type": "pong", "payload": {"expiresAt": expires}})
            return
        await self._write({"type": "pong"})

    async def _renew(self, authentication: Authentication) -> bool:
        """Take a new token for the same user; a failed one, or another user's, closes the socket."""
        if authentication.failure is not None or authentication.viewer.id != self.authentication.viewer.id:
            await self.close(FORBIDDEN, "Forbidden: the new token is not valid for this connection")
            return False
        self._authenticate(authentication)
        return True

    def _authenticate(self, authentication: Authentication) -> None:
        self.authentication = authentication
        self._clock.watch(authentication)

    def check_token(self) -> None:
        """Close the connection if its token is no longer accepted (expired or revoked)."""
        checked = self.server.tokens.still_valid(self.authentication)
        if checked.failure is not None:
            reason = "expired" if checked.failure is AuthFailure.TOKEN_EXPIRED else "revoked"
            self._closing = asyncio.ensure_future(
                self.close(FORBIDDEN, f"Forbidden: the access token {reason}")
            )

    async def _start(self, message: dict[str, Any]) -> None:
        if not self.acknowledged:
            await self.close(4401, "Unauthorized")
            return
        operation_id = message.get("id")
        payload = message.get("payload")
        if not isinstance(operation_id, str) or not operation_id or not isinstance(payload, dict):
            await self.close(4400, "Invalid message received")
            return
        if operation_id in self.operations:
            if not self.legacy:
                await self.close(4409, f"Subscriber for {operation_id} already exists")
                return
            self.operations[operation_id].cancel()
        task = asyncio.create_task(self._guarded(operation_id, payload))
        self.operations[operation_id] = task
        task.add_done_callback(functools.partial(self._forget, operation_id))

    def _forget(self, operation_id: str, task: asyncio.Task[None]) -> None:
        if self.operations.get(operation_id) is task:
            del self.operations[operation_id]

    # Operations.

    async def _guarded(self, operation_id: str, payload: dict[str, Any]) -> None:
        try:
            await self._run(operation_id, payload)
        except _Closed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: the client gets a masked error, the log the stack trace
            log.exception("internal error serving operation %s on a WebSocket", operation_id)
            with contextlib.suppress(_Closed):
                await self._error(
                    operation_id,
                    [{"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}],
                )

    async def _run(self, operation_id: str, payload: dict[str, Any]) -> None:
        request = Request(
            query=payload.get("query"),
            variables=payload.get("variables"),
            operation_name=payload.get("operationName"),
            extensions=payload.get("extensions"),
            document_id=payload.get("documentId"),
            authentication=self.authentication,
            address=self.address,
            transport="websocket",
            method="WS",
            incremental=True,  # an answer in parts is several `next` messages
        )
        admitted = await self.server.admission.admit(request)
        if isinstance(admitted, Refusal):
            if admitted.close_code is not None:
                await self.close(admitted.close_code, "Forbidden")
                return
            await self._error(operation_id, list(admitted.errors))
            return
        if admitted.prepared.kind.value != "subscription":
            answer = await self.server.operations.run(admitted)
            await self.server.admission.ran(admitted)
            await self._next(operation_id, answer)
            await send_parts(answer.rest, lambda body: self._send_text(self._frame(operation_id, body)))
            await self._complete(operation_id)
            return
        await self._subscribe(operation_id, admitted)

    async def _subscribe(self, operation_id: str, admitted: Admitted) -> None:
        seats = self.server.sockets.seats
        if why := seats.refuses(self.subscriptions, self.address):
            await self._error(operation_id, too_many(why))
            return
        self.subscriptions += 1
        try:
            with seats.seat(self.address):
                await self._stream(operation_id, admitted)
        finally:
            self.subscriptions -= 1

    async def _stream(self, operation_id: str, admitted: Admitted) -> None:
        try:
            stream = await self.server.operations.subscribe(
                admitted, functools.partial(self._write_now, operation_id)
            )
            if isinstance(stream, Answer):
                await self._error(operation_id, orjson.loads(stream.body).get("errors", []))
                return
            try:
                async for answer in stream:
                    if answer.ends:  # graphql-transport-ws: `error` ends the operation, no `complete`
                        await self._error(operation_id, orjson.loads(answer.body).get("errors", []))
                        return
                    await self._next(operation_id, answer)
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            await self._complete(operation_id)
        except asyncio.CancelledError:
            if not self._closed.is_set() and self.legacy:
                await self._complete(operation_id)
            raise

    async def _next(self, operation_id: str, answer: Answer) -> None:
        await self._send_text(self._frame(operation_id, answer.body))

    def _frame(self, operation_id: str, body: bytes) -> str:
        kind = b"data" if self.legacy else b"next"
        return (
            b'{"id":' + orjson.dumps(operation_id) + b',"type":"' + kind + b'","payload":' + body + b"}"
        ).decode()

    def _write_now(self, operation_id: str, body: bytes) -> bool:
        """A subscription's answer written from the caller's task, without waiting (schema/
        realtime/multiplex.py's fan-out calls it for each subscriber rather than waking each
        one's task): False when another send is under way, so the subscription's task sends it.

        The ASGI send is stepped once by hand: it ends there unless the socket is backed up,
        and then a task finishes it, under the watchdog, before any later frame."""
        if self._closed.is_set():
            return True  # gone: nothing more is sent to it
        if self._send_lock.locked() or self._finishing is not None or not self._steppable:
            return False
        message = {"type": "websocket.send", "text": self._frame(operation_id, body)}
        send = cast(Coroutine[Any, Any, None], self._send(message))
        try:
            waiting_on = send.send(None)
        except StopIteration:
            return True
        except (OSError, RuntimeError):  # the socket went away under us
            self._closed.set()
            return True
        self._finishing = asyncio.ensure_future(self._finish(send, waiting_on))
        return True

    async def _finish(self, send: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        try:
            await self._watched(_resume(send, waiting_on))
        except _Closed:
            pass
        finally:
            self._finishing = None

    async def _complete(self, operation_id: str) -> None:
        await self._write({"id": operation_id, "type": "complete"})

    async def _error(self, operation_id: str, errors: list[dict[str, Any]]) -> None:
        # graphql-transport-ws sends the list; the legacy protocol one error.
        payload: Any = errors[0] if self.legacy and errors else errors
        await self._write({"id": operation_id, "type": "error", "payload": payload})

    async def _write(self, message: dict[str, Any]) -> None:
        await self._send_text(orjson.dumps(message).decode())

    async def _send_text(self, text: str) -> None:
        async with self._send_lock:
            if self._finishing is not None:
                await asyncio.wait({self._finishing})  # a frame _write_now began goes first
            if self._closed.is_set():
                raise _Closed
            await self._watched(self._send({"type": "websocket.send", "text": text}))

    async def _watched(self, sending: Awaitable[None]) -> None:
        """Await a send under the watchdog (Sockets._watch): a client that does not read for
        the time limit is dropped."""
        registry = self.server.sockets.sending
        try:
            self._sender, registry[self] = asyncio.current_task(self._loop), time.monotonic()
            try:
                await sending
            finally:
                self._sender = None
                registry.pop(self, None)
        except asyncio.CancelledError:
            task = asyncio.current_task(self._loop)
            if task is None or task is not self._stuck:
                raise
            # The watchdog's cancellation, not the caller's: this client does not read.
            task.uncancel()
            log.warning(
                "dropping a WebSocket client that did not read for %.0f s", self.limits.send_timeout_seconds
            )
            await self.close(1008, "too slow: the client does not read its socket")
            raise _Closed from None
        except (OSError, RuntimeError):  # the socket went away under us
            self._closed.set()
            raise _Closed from None

    def drop_stuck_send(self) -> None:
        """The watchdog found this connection's send waiting on the client for too long."""
        if self._sender is not None and self._stuck is None:
            self._stuck = self._sender
            self._sender.cancel()

    async def _keep_alive_loop(self) -> None:
        with contextlib.suppress(_Closed):
            while not self._closed.is_set():
                await self._write({"type": "ka"})
                await asyncio.sleep(self.limits.keep_alive_seconds)


def _authorization(params: dict[str, Any]) -> str | None:
    """The header value from the payload; the spellings clients use ("Authorization", a bare token)."""
    for key, value in params.items():
        if key.lower() == "authorization" and isinstance(value, str):
            return value
    token = params.get("authToken") or params.get("token")
    return f"Bearer {token}" if isinstance(token, str) else None


async def _resume(coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    """Run to its end a coroutine that was stepped once by hand (`coroutine.send(None)` gave
    `waiting_on`, the future it waits for, or None for a bare yield), as the task running it
    would: wait until that is done, step it again, and so on until it returns. The future is
    waited for, not awaited: its outcome is the coroutine's to collect. A cancellation of this
    task is thrown into the coroutine, where it waits."""
    while True:
        try:
            if waiting_on is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait({waiting_on})
        except asyncio.CancelledError as cancelled:
            try:
                waiting_on = coroutine.throw(cancelled)
            except StopIteration:
                return
            continue
        try:
            waiting_on = coroutine.send(None)
        except StopIteration:
            return
