"""GraphQL over Server-Sent Events at /graphql: the graphql-sse protocol, both of its modes.

A transport only, like web/graphql_http.py and web/graphql_ws.py: each operation goes through the
admission step (schema/admission/) with its request's Authorization header, and runs in
schema/execution/run.py; this module reads requests and writes events.

Distinct connections mode: a GET or POST with `Accept: text/event-stream` is one operation with
a stream of its own: a `next` event per answer, then `complete`, and the response ends. A
refusal (a document that does not validate, a token that failed, a spent rate limit) is a `next`
event with the errors, then `complete`, as the protocol asks: an EventSource cannot read the
body of a 4xx answer.

Single connection mode, for HTTP/1.1, where a browser opens at most 6 connections to a host:
- `PUT` reserves a stream for the viewer of its Authorization header: 201, with a token;
- a GET (or POST) with `Accept: text/event-stream` and the token (the header
  `X-GraphQL-Event-Stream-Token`, or the parameter `token`) opens it; one stream per token, and a
  reservation not opened within WS_INIT_TIMEOUT_SECONDS is dropped;
- a POST (or GET) with the token and `extensions.operationId` runs an operation on it: 202, and
  its answers arrive on the stream as `{"id": ..., "payload": ...}`; a refusal is answered on
  that request itself, with its 4xx status and errors. Its viewer is the reservation's (the
  request may carry the same user's token; another user's is refused);
- `DELETE ?operationId=` with the token stops an operation.
A reservation lives in the process that took the PUT: behind several processes, the requests of
one token must reach the same one (README, "Subscriptions over SSE").

Either way a stream lives as long as its token: at the token's expiry, or when the user's tokens
are revoked, each of its operations gets a `next` event with the TOKEN_EXPIRED or TOKEN_REVOKED
error, then `complete`, and the stream ends. Subscriptions take seats from the same count as the
WebSocket's (web/subscription_seats.py). A comment line every 15 s keeps proxies from closing an
idle stream; a client that does not read for WS_SEND_TIMEOUT_SECONDS is dropped; nothing holds a
database connection while a stream waits for its client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from schema.admission.admission import Admission, Admitted
from schema.admission.refusals import Refusal, authentication_failed, request_error
from schema.admission.tokens import ANONYMOUS_AUTHENTICATION, AccessTokens, Authentication
from schema.errors import FAILURE_MESSAGES, AuthFailure
from schema.execution.answers import Answer, send_parts
from schema.execution.run import Operations
from web.addresses import ClientAddresses
from web.graphql_http import (
    RequestProblem,
    get_payload,
    graphql_request,
    media_type_of,
    query_string,
    read_json,
    request_base,
    route_path,
    send_json,
)
from web.graphql_ws import Limits
from web.headers import headers_of
from web.subscription_seats import Seats, too_many
from web.token_clock import TokenClock

log = logging.getLogger("quill.sse")

EVENT_STREAM = "text/event-stream"
TOKEN_HEADER = b"x-graphql-event-stream-token"
KEEP_ALIVE = b":\n\n"  # a comment line: ignored by clients, enough for a proxy to see traffic
# Written before a reservation's stream opens, at most (then the reservation is dropped).
MAX_PENDING_BYTES = 8 * 1024 * 1024
_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on as it comes, do not buffer it
]


class _Gone(Exception):
    """The stream's client is gone, or was dropped: stop writing to it."""


class EventStreams:
    """This process's SSE streams: the reservations of single connection mode, and the open
    streams, by viewer, for revocations."""

    def __init__(self, limits: Limits, seats: Seats) -> None:
        self.limits, self.seats = limits, seats
        self.reserved: dict[str, _Stream] = {}
        self.reserved_by_client: Counter[str] = Counter()
        self.open: set[_Stream] = set()

    def reserve(self, stream: _Stream) -> str | None:
        """A token for the stream, or why it is refused (too many reservations)."""
        if self.reserved_by_client[stream.address] >= self.seats.per_client:
            return f"this client holds {self.seats.per_client} reserved streams, the most it may"
        if len(self.reserved) >= self.seats.total:
            return "this server holds as many reserved streams as it may; try another or later"
        token = secrets.token_urlsafe(24)
        stream.token = token
        self.reserved[token] = stream
        self.reserved_by_client[stream.address] += 1
        loop = asyncio.get_running_loop()
        loop.call_later(self.limits.init_timeout_seconds, self._drop_unopened, token)
        return None

    def release(self, stream: _Stream) -> None:
        self.open.discard(stream)
        if stream.token is not None and self.reserved.get(stream.token) is stream:
            del self.reserved[stream.token]
            self.reserved_by_client[stream.address] -= 1
            if not self.reserved_by_client[stream.address]:
                del self.reserved_by_client[stream.address]

    def _drop_unopened(self, token: str) -> None:
        stream = self.reserved.get(token)
        if stream is not None and not stream.opened:
            stream.end()
            for task in stream.operations.values():  # operations posted to it before it opened
                task.cancel()
            self.release(stream)

    def end_all(self) -> None:
        """The server is stopping: every stream ends (its subscriptions were completed first)."""
        for stream in [*self.open, *self.reserved.values()]:
            stream.end()

    def revoked(self, user_id: int) -> None:
        """A user's tokens were revoked: their streams whose token is now refused end."""
        for stream in [*self.open, *self.reserved.values()]:
            if stream.authentication.viewer.id == user_id:
                stream.check_token()


class GraphQLSSE:
    """ASGI middleware: serves the SSE requests to `path`, hands everything else on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        admission: Admission,
        operations: Operations,
        tokens: AccessTokens,
        addresses: ClientAddresses,
        streams: EventStreams,
        path: str,
    ) -> None:
        self.app = app
        self.admission, self.operations, self.tokens = admission, operations, tokens
        self.addresses, self.streams, self.path = addresses, streams, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) != self.path or not _may_be_sse(scope):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        token = headers_of(scope).get(TOKEN_HEADER) or query_string(scope).get("token") or None
        if EVENT_STREAM in (headers_of(scope).get(b"accept") or ""):
            await (
                self._distinct(scope, receive, send) if token is None else self._open(token, receive, send)
            )
        elif method == "PUT":
            await self._reserve(scope, send)
        elif method == "DELETE":
            await self._stop(token, scope, send)
        elif token is not None and method in ("GET", "POST"):
            await self._operation(token, scope, receive, send)
        else:
            await self.app(scope, receive, send)  # plain GraphQL over HTTP, with "token=" by chance

    # Distinct connections mode.

    async def _distinct(self, scope: Scope, receive: Receive, send: Send) -> None:
        base = request_base(scope, self.addresses, "sse")
        base["incremental"] = True  # an answer in parts is several `next` events
        try:
            admitted = await self._admit(base, await self._payload(scope, receive))
        except RequestProblem as problem:
            admitted = problem.refusal
        if isinstance(admitted, Refusal):
            stream = _Stream(self, ANONYMOUS_AUTHENTICATION, base["address"])
            stream.refuse("", list(admitted.errors))
        else:
            stream = _Stream(self, admitted.authentication, base["address"])
            stream.start("", admitted)
        await stream.serve(receive, send)

    async def _admit(
        self, base: dict[str, Any], payload: dict[str, Any], stream: _Stream | None = None
    ) -> Admitted | Refusal:
        """The admission step's answer; on a reserved stream, a request without a token of its
        own runs as the stream's viewer (whose token is checked again: expiry, revocation)."""
        if stream is not None and not base["authorization"]:
            base["authentication"] = stream.authentication
        return await self.admission.admit(graphql_request(payload, base))

    async def _payload(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        if scope["method"] == "GET":
            return get_payload(query_string(scope))
        if scope["method"] != "POST":
            raise RequestProblem(
                request_error("GraphQL over SSE takes GET and POST.", 405, "METHOD_NOT_ALLOWED")
            )
        payload = await read_json(scope, receive, self.admission)
        if not isinstance(payload, dict):
            raise RequestProblem(request_error("The request body must be a JSON object."))
        return payload

    # Single connection mode.

    async def _reserve(self, scope: Scope, send: Send) -> None:
        authentication = self.tokens.from_header(headers_of(scope).get(b"authorization"))
        if authentication.failure is not None:
            await self._refuse(scope, send, authentication_failed(authentication.failure))
            return
        address = request_base(scope, self.addresses, "sse")["address"]
        stream = _Stream(self, authentication, address)
        if why := self.streams.reserve(stream):
            await self._refuse(
                scope, send, request_error(f"Too many streams: {why}.", 429, "TOO_MANY_STREAMS")
            )
            return
        assert stream.token is not None
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": stream.token.encode()})

    async def _open(self, token: str, receive: Receive, send: Send) -> None:
        stream = self.streams.reserved.get(token)
        if stream is None:
            await _problem(send, 404, "No stream is reserved with this token.", "STREAM_NOT_FOUND")
        elif stream.opened:
            await _problem(send, 409, "This stream is already open.", "STREAM_ALREADY_OPEN")
        else:
            await stream.serve(receive, send)

    async def _operation(self, token: str, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self.streams.reserved.get(token)
        if stream is None:
            await _problem(send, 404, "No stream is reserved with this token.", "STREAM_NOT_FOUND")
            return
        try:
            payload = await self._payload(scope, receive)
        except RequestProblem as problem:
            await self._refuse(scope, send, problem.refusal)
            return
        extensions = payload.get("extensions")
        operation_id = extensions.get("operationId") if isinstance(extensions, dict) else None
        if not isinstance(operation_id, str) or not operation_id:
            await _problem(send, 400, "The request needs extensions.operationId (a non-empty string).")
            return
        if operation_id in stream.operations:
            await _problem(send, 409, f"An operation with the id {operation_id!r} is running.", "CONFLICT")
            return
        base = {**request_base(scope, self.addresses, "sse"), "incremental": True}
        admitted = await self._admit(base, payload, stream)
        if isinstance(admitted, Refusal):
            await self._refuse(scope, send, admitted)
        elif admitted.authentication.viewer.id != stream.authentication.viewer.id:
            await _problem(send, 403, "This stream was reserved by another viewer.", "FORBIDDEN")
        elif operation_id in stream.operations:  # the same id sent twice at once
            await _problem(send, 409, f"An operation with the id {operation_id!r} is running.", "CONFLICT")
        else:
            stream.start(operation_id, admitted)
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def _stop(self, token: str | None, scope: Scope, send: Send) -> None:
        stream = self.streams.reserved.get(token) if token is not None else None
        if stream is None:
            await _problem(send, 404, "No stream is reserved with this token.", "STREAM_NOT_FOUND")
            return
        operation_id = query_string(scope).get("operationId")
        if not operation_id:
            await _problem(send, 400, "The request needs the operationId parameter.")
            return
        if (task := stream.operations.get(operation_id)) is not None:
            task.cancel()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, scope: Scope, send: Send, refusal: Refusal) -> None:
        """A refusal answered on the request itself, with its 4xx status whatever the media type:
        a client of the protocol takes anything but 201 or 202 for a failure."""
        await send_json(send, refusal.status, refusal.body(), media_type_of(scope), refusal.headers)


class _Stream:
    """One event stream: its operations, and the response they write to once it is open (what
    they write before, in single connection mode, waits in `_pending`)."""

    def __init__(self, server: GraphQLSSE, authentication: Authentication, address: str) -> None:
        self.server, self.authentication, self.address = server, authentication, address
        self.limits = server.streams.limits
        self.token: str | None = None  # single connection mode's reservation
        self.operations: dict[str, asyncio.Task[None]] = {}
        self.subscriptions = 0
        self.opened = False
        self._send: Send | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._lock = asyncio.Lock()
        self._ended = asyncio.Event()
        self._ending: asyncio.Future[None] | None = None
        self._clock = TokenClock(self.check_token)
        self._clock.watch(authentication)

    # The response.

    async def serve(self, receive: Receive, send: Send) -> None:
        """Write the stream until it ends: its operations are over (distinct connections mode),
        the client went away, its token ended, or it was dropped."""
        self.opened = True
        streams = self.server.streams
        streams.open.add(self)
        disconnected = asyncio.ensure_future(_disconnect(receive))
        ended = asyncio.ensure_future(self._ended.wait())
        keep_alive = asyncio.ensure_future(self._keep_alive())
        try:
            async with self._lock:  # what was written before the stream opened goes first
                await send({"type": "http.response.start", "status": 200, "headers": _STREAM_HEADERS})
                self._send = send
                await self._send_now(KEEP_ALIVE + b"".join(self._pending))
                self._pending = []
            await asyncio.wait({disconnected, ended}, return_when=asyncio.FIRST_COMPLETED)
        except _Gone:
            pass
        finally:
            for task in (disconnected, ended, keep_alive):
                task.cancel()
            self.end()
            await self._stop_operations()
            streams.release(self)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.limits.send_timeout_seconds):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def write(self, chunk: bytes) -> None:
        """Send a chunk of events, or keep it until the stream opens; a client that does not read
        it within the time limit is dropped."""
        async with self._lock:
            if self._ended.is_set():
                raise _Gone
            if self._send is None:
                self._pending.append(chunk)
                self._pending_bytes += len(chunk)
                if self._pending_bytes > MAX_PENDING_BYTES:
                    self.end()
                    self.server.streams.release(self)
                    raise _Gone
                return
            await self._send_now(chunk)

    async def _send_now(self, chunk: bytes) -> None:
        """Send under the time limit (the caller holds the lock)."""
        assert self._send is not None
        try:
            async with asyncio.timeout(self.limits.send_timeout_seconds):
                await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        except TimeoutError:
            log.warning(
                "dropping an SSE client that did not read for %.0f s", self.limits.send_timeout_seconds
            )
            self.end()
            raise _Gone from None
        except (OSError, RuntimeError):  # the connection went away under us
            self.end()
            raise _Gone from None

    def end(self) -> None:
        self._ended.set()
        self._clock.stop()

    async def _keep_alive(self) -> None:
        with contextlib.suppress(_Gone):
            while True:
                await asyncio.sleep(self.limits.keep_alive_seconds)
                await self.write(KEEP_ALIVE)

    # Operations.

    def start(self, operation_id: str, admitted: Admitted) -> None:
        self._add(operation_id, asyncio.create_task(self._run(operation_id, admitted)))

    def refuse(self, operation_id: str, errors: list[dict[str, Any]]) -> None:
        """An operation refused before it ran: its errors, then `complete`."""
        self._add(operation_id, asyncio.create_task(self._refused(operation_id, errors)))

    def _add(self, operation_id: str, task: asyncio.Task[None]) -> None:
        self.operations[operation_id] = task
        task.add_done_callback(lambda done: self._forget(operation_id, done))

    async def _refused(self, operation_id: str, errors: list[dict[str, Any]]) -> None:
        with contextlib.suppress(_Gone):
            await self._errors_then_complete(operation_id, errors)

    def _forget(self, operation_id: str, task: asyncio.Task[None]) -> None:
        if self.operations.get(operation_id) is task:
            del self.operations[operation_id]
        if self.token is None and self._ending is None:
            self.end()  # distinct connections mode: the stream was this operation's

    async def _run(self, operation_id: str, admitted: Admitted) -> None:
        operations, admission = self.server.operations, self.server.admission
        try:
            if admitted.prepared.kind.value == "subscription":
                await self._subscribe(operation_id, admitted)
            else:
                answer = await operations.run(admitted)
                await admission.ran(admitted)
                await self._next(operation_id, answer.body)
                await send_parts(answer.rest, lambda body: self._next(operation_id, body))
            await self._complete(operation_id)
        except _Gone:
            pass
        except Exception:  # a bug: the client gets a masked error, the log the stack trace
            log.exception("internal error serving operation %r on an SSE stream", operation_id)
            error = {"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
            with contextlib.suppress(_Gone):
                await self._errors_then_complete(operation_id, [error])

    async def _subscribe(self, operation_id: str, admitted: Admitted) -> None:
        seats = self.server.streams.seats
        if why := seats.refuses(self.subscriptions, self.address):
            await self._next(operation_id, orjson.dumps({"errors": too_many(why)}))
            return
        self.subscriptions += 1
        try:
            with seats.seat(self.address):
                stream = await self.server.operations.subscribe(admitted)
                if isinstance(stream, Answer):
                    await self._next(operation_id, stream.body)
                    return
                try:
                    async for answer in stream:
                        await self._next(operation_id, answer.body)
                        if answer.ends:
                            return
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]
        finally:
            self.subscriptions -= 1

    async def _stop_operations(self) -> None:
        tasks = list(self.operations.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    async def _next(self, operation_id: str, body: bytes) -> None:
        await self.write(self._event(b"next", operation_id, body))

    async def _complete(self, operation_id: str) -> None:
        await self.write(self._event(b"complete", operation_id, None))

    async def _errors_then_complete(self, operation_id: str, errors: list[dict[str, Any]]) -> None:
        body = orjson.dumps({"errors": errors})
        await self.write(
            self._event(b"next", operation_id, body) + self._event(b"complete", operation_id, None)
        )

    def _event(self, kind: bytes, operation_id: str, payload: bytes | None) -> bytes:
        """An event; in single connection mode its data names the operation."""
        if self.token is None:
            data = payload if payload is not None else b""
        elif payload is None:
            data = b'{"id":' + orjson.dumps(operation_id) + b"}"
        else:
            data = b'{"id":' + orjson.dumps(operation_id) + b',"payload":' + payload + b"}"
        return b"event: " + kind + b"\ndata: " + data + b"\n\n"

    # The token's life.

    def check_token(self) -> None:
        """End the stream if its token is no longer accepted (expired or revoked)."""
        checked = self.server.tokens.still_valid(self.authentication)
        if checked.failure is not None and self._ending is None:
            self._ending = asyncio.ensure_future(self._token_ended(checked.failure))

    async def _token_ended(self, failure: AuthFailure) -> None:
        """Each operation ends with the token's error, then the stream."""
        operation_ids = list(self.operations)
        await self._stop_operations()
        error = {"message": FAILURE_MESSAGES[failure], "extensions": {"code": failure.value}}
        with contextlib.suppress(_Gone):
            for operation_id in operation_ids:
                await self._errors_then_complete(operation_id, [error])
        self.end()
        self.server.streams.release(self)


def _may_be_sse(scope: Scope) -> bool:
    """Whether a request to /graphql may be one of SSE's, at the cost of one look at its headers:
    a PUT or DELETE, an event stream asked for, or a stream's token."""
    if scope["method"] in ("PUT", "DELETE"):
        return True
    found = headers_of(scope)
    if TOKEN_HEADER in found or "text/event-stream" in found.get(b"accept", ""):
        return True
    return b"token=" in scope.get("query_string", b"")


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _problem(send: Send, status: int, message: str, code: str = "BAD_REQUEST") -> None:
    await send_json(send, status, request_error(message, status, code).body(), "application/json")
