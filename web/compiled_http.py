"""The short way through /graphql for a known query: straight from the request body to one
compiled statement (schema/compiled_reads.py) and back, without Strawberry.

It takes only what it can answer exactly as the whole pipeline would: a POST of one JSON
operation with a `query` text, whose document the pipeline has accepted before, with valid or no
credentials. Everything else (GET, batches, uploads, persisted-query hashes, a bad token, an
unknown document, a spent rate limit, a failed statement) goes on to web/graphql_http.py, which
answers as ever, errors included. The middleware around /graphql (request id, log line,
metrics, body limit, CORS) is the same either way.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schema.compiled_reads import CompiledReads
from schema.context import ConnectionContext, Services
from schema.telemetry import OperationRecord
from web.graphql_http import GRAPHQL_RESPONSE, JSON, operation_timeout_answer
from web.limits import BodyTooLarge

# The endpoint's media types, as the bytes of ASGI headers.
_GRAPHQL_RESPONSE = GRAPHQL_RESPONSE.encode()
_JSON_TYPES = (JSON.encode(), _GRAPHQL_RESPONSE)
# Content-Type by whether the client asked for application/graphql-response+json.
_CONTENT_TYPES = {
    False: f"{JSON}; charset=utf-8".encode(),
    True: f"{GRAPHQL_RESPONSE}; charset=utf-8".encode(),
}


class KnownQueries:
    """ASGI middleware, the innermost: answers a POST to `path` that is a known query, and hands
    every other request on (with the body it read) to the app."""

    def __init__(self, app: ASGIApp, *, compiled: CompiledReads, services: Services, path: str) -> None:
        self.app = app
        self.compiled = compiled
        self.services = services
        self.path = path
        self.max_variables_bytes = services.settings.max_variables_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or _route_path(scope) != self.path:
            await self.app(scope, receive, send)
            return
        content_type = authorization = accept = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"authorization":
                authorization = value
            elif name == b"accept":
                accept = value
        if content_type.split(b";", 1)[0].strip().lower() not in _JSON_TYPES:
            await self.app(scope, receive, send)  # an upload, say: not read here
            return
        try:
            body, messages = await read_body(receive)
        except BodyTooLarge as too_large:
            receive = raising(too_large)  # the endpoint answers it (413)
        else:
            if await self.answer(scope, body, authorization, accept, send):
                return
            receive = replaying(messages, receive)
        await self.app(scope, receive, send)

    async def answer(
        self, scope: Scope, body: bytes, authorization: bytes, accept: bytes, send: Send
    ) -> bool:
        """Answer the request if it is a known query; False (nothing sent) when it is not."""
        deadline = time.monotonic() + self.compiled.timeout_seconds
        operation = self._operation(body)
        authentication = self.services.tokens.from_header(authorization.decode("latin-1") or None)
        if operation is None or authentication.failure is not None:
            return False
        viewer = authentication.viewer
        plan = self.compiled.plan_for(*operation, viewer)
        if plan is None:
            return False
        limiter = self.services.rate_limiter
        if limiter is not None:
            client = ConnectionContext(self.services, Request(scope), authentication).client
            if await limiter.charge(client, plan.cost) is not None:
                return False  # the pipeline is refused too, and says so with its 429
        started = time.perf_counter()
        codes: tuple[str, ...] = ()
        try:
            answer = await self.compiled.read(plan, viewer, deadline)
        except TimeoutError:
            codes = ("OPERATION_TIMEOUT",)
            answer = orjson.dumps(operation_timeout_answer(self.compiled.timeout_seconds))
        if answer is None:
            return False
        await _send_json(send, answer, _CONTENT_TYPES[_GRAPHQL_RESPONSE in accept])
        if self.services.observer is not None:
            self.services.observer.operation_finished(
                OperationRecord(
                    name=plan.name,
                    type="query",
                    duration_seconds=time.perf_counter() - started,
                    sql_statements=1,
                    error_codes=codes,
                    transport="http",
                    executor="compiled",
                )
            )
        return True

    def _operation(self, body: bytes) -> tuple[str, str | None, dict[str, Any] | None] | None:
        """(query, operation name, variables) of a body that is one plain operation, else None."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if type(payload) is not dict:
            return None
        query, variables, name = payload.get("query"), payload.get("variables"), payload.get("operationName")
        extensions = payload.get("extensions")
        if (
            type(query) is not str
            or (variables is not None and type(variables) is not dict)
            or (name is not None and type(name) is not str)
            or (extensions and (type(extensions) is not dict or "persistedQuery" in extensions))
            or (variables and len(orjson.dumps(variables)) > self.max_variables_bytes)
        ):
            return None
        return query, name, variables


async def _send_json(send: Send, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _route_path(scope: Scope) -> str:
    """The request's path below the app's root path, as Starlette's router matches it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root + "/") else path


async def read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole request body, and the messages it came in (to hand on, see `replaying`)."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    return b"".join(message.get("body", b"") for message in messages), messages


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives `messages` again, then what `receive` gives."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def raising(error: Exception) -> Receive:
    """A `receive` that fails as the first one did (a body over the size limit)."""

    async def fail() -> Message:
        raise error

    return fail
