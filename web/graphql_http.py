"""GraphQL over HTTP (GET and POST at /graphql), following the GraphQL-over-HTTP specification.

A transport only: it reads a request's operations from the body or the query string and writes
what the admission step (schema/admission/) and the runner (schema/execution/run.py) answer.

- POST `application/json`: one operation, or a batch (a JSON list); `multipart/form-data` for
  file uploads (the GraphQL multipart request spec), with a preflight-forcing header (CSRF).
- GET: parameters in the query string; queries only (the admission step refuses the rest with
  405). GETs are CSRF-safe: no side effects, and credentials come only from the Authorization
  header, which a browser never sends on its own to another site (there are no cookies).
- A browser asking for HTML gets GraphiQL (web/graphiql.py).
- An operation with @defer or @stream is answered in parts as `multipart/mixed` when the client
  accepts it (Apollo Client, urql), else whole.
- `Accept: application/graphql-response+json` gets that media type and 4xx for requests that
  did not run; plain `application/json` gets 200 for any well-formed GraphQL request that did
  not run, as older clients expect. A failed bearer token is 401, a spent rate limit 429 with
  Retry-After, a body over the size limit 413, whichever media type.

It is the innermost ASGI middleware (server.py): requests to /graphql never reach the router,
so a known query costs little more than its statement.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request as StarletteRequest
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.file_uploads.utils import replace_placeholders_with_files

from schema.admission.admission import Admission, Request
from schema.admission.refusals import GRAPHQL_RESPONSE, Refusal, request_error
from schema.execution.answers import send_parts
from schema.execution.run import Operations
from web.addresses import ClientAddresses
from web.headers import headers_of

log = logging.getLogger("quill.errors")

JSON = "application/json"
MULTIPART = "multipart/mixed"  # in Accept: the client takes an answer in parts (@defer, @stream)
MAX_UPLOAD_FILES = 1
# A registered operation's id: the GraphQL-over-HTTP persisted documents proposal's name, Relay's.
DOCUMENT_ID_PARAMS = ("documentId", "doc_id", "id")
# A browser sends a cross-site multipart form without asking first (a "simple" request); with one
# of these headers it must ask (CORS preflight), so a forged upload from another site is refused.
_PREFLIGHT_HEADERS = (b"apollo-require-preflight", b"x-apollo-operation-name", b"graphql-require-preflight")
_NOT_MODIFIED_HEADERS = {"cache-control", "etag", "vary"}
_TRACE_HEADERS = (b"traceparent", b"tracestate")  # W3C trace context, for the operation's span

Page = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestProblem(Exception):
    """The request cannot be read as a GraphQL request: answered with its refusal."""

    def __init__(self, refusal: Refusal) -> None:
        self.refusal = refusal


class GraphQLHTTP:
    """ASGI middleware: answers HTTP requests to `path`, hands everything else to the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        admission: Admission,
        operations: Operations,
        addresses: ClientAddresses,
        graphiql: Page,
        path: str,
        max_batch: int,
        upload_allowance: int,
        get_cache_max_age_seconds: int,
    ) -> None:
        self.app = app
        self.admission = admission
        self.operations = operations
        self.addresses = addresses
        self.graphiql = graphiql
        self.path = path
        self.max_batch = max_batch
        self.upload_allowance = upload_allowance
        self.max_age = get_cache_max_age_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) != self.path:
            await self.app(scope, receive, send)
            return
        media_type = media_type_of(scope)
        try:
            await self._handle(scope, receive, send, media_type)
        except RequestProblem as problem:
            refusal = problem.refusal
            await send_json(send, refusal.status_for(media_type), refusal.body(), media_type, refusal.headers)
        except Exception:
            error_id = uuid.uuid4().hex[:16]
            log.exception("internal error %s handling %s %s", error_id, scope["method"], scope["path"])
            body = {
                "errors": [
                    {
                        "message": "Internal server error",
                        "extensions": {"code": "INTERNAL_SERVER_ERROR", "errorId": error_id},
                    }
                ]
            }
            await send_json(send, 500, body, media_type)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, media_type: str) -> None:
        method = scope["method"]
        if method == "GET":
            params = query_string(scope)
            if "query" not in params and "text/html" in (headers_of(scope).get(b"accept") or ""):
                await self.graphiql(scope, receive, send)
                return
            payload: Any = get_payload(params)
        elif method == "POST":
            payload = await self._read_post(scope, receive)
        else:
            refusal = request_error("GraphQL over HTTP takes GET and POST.", 405, "METHOD_NOT_ALLOWED")
            await send_json(send, 405, refusal.body(), media_type, {"Allow": "GET, POST"})
            return
        uploads = isinstance(payload, _Uploads)
        if uploads:
            payload = payload.operations
        base = request_base(scope, self.addresses, "http", uploads=uploads)
        if isinstance(payload, list):
            if not payload or len(payload) > self.max_batch:
                raise RequestProblem(request_error(f"A batch must hold 1 to {self.max_batch} operations."))
            answered = [await self._one(_nth(base, i), item, media_type) for i, item in enumerate(payload)]
            await send_bytes(send, 200, b"[" + b",".join(one.body for one in answered) + b"]", media_type)
            return
        base["incremental"] = MULTIPART in (headers_of(scope).get(b"accept") or "")
        one = await self._one(base, payload, media_type)
        if one.rest is not None:
            await _send_parts(send, one)
        elif method == "GET":
            await self._send_cacheable(scope, send, one, media_type)
        else:
            await send_bytes(send, one.status, one.body, media_type, one.headers)

    async def _one(self, base: dict[str, Any], payload: Any, media_type: str) -> _Answered:
        """One operation's body, status and headers."""
        if not isinstance(payload, dict):
            refusal = request_error("The request body must be a JSON object (or a list of them).")
            return _Answered(
                orjson.dumps(refusal.body()), refusal.status_for(media_type), refusal.headers, True
            )
        admitted = await self.admission.admit(graphql_request(payload, base))
        if isinstance(admitted, Refusal):
            return _Answered(
                orjson.dumps(admitted.body()), admitted.status_for(media_type), admitted.headers, True
            )
        answer = await self.operations.run(admitted)
        await self.admission.ran(admitted)
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        return _Answered(answer.body, 200, headers, answer.has_errors, answer.rest)

    async def _read_post(self, scope: Scope, receive: Receive) -> Any:
        content_type = (headers_of(scope).get(b"content-type") or "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            return await self._read_multipart(scope, receive)
        return await read_json(scope, receive, self.admission)

    async def _read_multipart(self, scope: Scope, receive: Receive) -> _Uploads:
        """A GraphQL multipart request (files in variables): https://github.com/jaydenseric/graphql-multipart-request-spec"""
        if not any(headers_of(scope).get(name) for name in _PREFLIGHT_HEADERS):
            raise RequestProblem(
                request_error(
                    "A multipart request needs an Apollo-Require-Preflight header (protection against CSRF)."
                )
            )
        body = await read_body(
            scope, receive, self.admission, self.admission.limits.max_body_bytes + self.upload_allowance
        )
        request = StarletteRequest(scope, _replay(body))
        try:
            form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=10)
        except (MultiPartException, ValueError) as error:
            raise RequestProblem(request_error(f"The multipart body cannot be read: {error}")) from None
        operations, files_map = form.get("operations"), form.get("map")
        if not isinstance(operations, str) or not isinstance(files_map, str):
            raise RequestProblem(
                request_error("A multipart request needs the fields 'operations' and 'map'.")
            )
        files = {key: value for key, value in form.multi_items() if isinstance(value, UploadFile)}
        try:
            return _Uploads(
                replace_placeholders_with_files(orjson.loads(operations), orjson.loads(files_map), files)
            )
        except orjson.JSONDecodeError:
            raise RequestProblem(
                request_error("The multipart 'operations' or 'map' field is not valid JSON.")
            ) from None
        except (KeyError, TypeError, ValueError, IndexError):
            raise RequestProblem(
                request_error("The multipart 'map' does not match the files sent.")
            ) from None

    async def _send_cacheable(self, scope: Scope, send: Send, one: _Answered, media_type: str) -> None:
        """A GET answer with cache headers: shared caches may keep an anonymous successful answer
        (for GET_CACHE_MAX_AGE_SECONDS; by default they revalidate it with its ETag each time),
        never one given to a signed-in user or one with errors."""
        body = one.body
        headers = {**one.headers, "Vary": "Accept, Authorization"}
        if one.status != 200 or one.has_errors:
            headers["Cache-Control"] = "no-store"
        elif headers_of(scope).get(b"authorization"):
            headers["Cache-Control"] = "private, no-store"
        else:
            headers["Cache-Control"] = f"public, max-age={self.max_age}" if self.max_age > 0 else "no-cache"
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            headers["ETag"] = etag
            if etag in (headers_of(scope).get(b"if-none-match") or ""):
                unchanged = {k: v for k, v in headers.items() if k.lower() in _NOT_MODIFIED_HEADERS}
                await send_bytes(send, 304, b"", media_type, unchanged, content=False)
                return
        await send_bytes(send, one.status, body, media_type, headers)


@dataclass(slots=True)  # not frozen, like Request: made per operation
class _Answered:
    body: bytes
    status: int
    headers: dict[str, str]
    has_errors: bool
    rest: AsyncIterator[bytes] | None = None  # the later parts of an answer in parts


class _Uploads:
    """The operations of a multipart request (their variables hold the uploaded files)."""

    def __init__(self, operations: Any) -> None:
        self.operations = operations


# Reading a request, for every transport that takes GraphQL over HTTP (web/graphql_sse.py too).


def query_string(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))


def get_payload(params: dict[str, str]) -> dict[str, Any]:
    """A GET request's operation, from its query string's parameters."""
    return {
        "query": params.get("query"),
        "operationName": params.get("operationName"),
        "variables": _json_param(params.get("variables"), "variables"),
        "extensions": _json_param(params.get("extensions"), "extensions"),
        **{name: params[name] for name in DOCUMENT_ID_PARAMS if params.get(name)},
    }


async def read_json(scope: Scope, receive: Receive, admission: Admission) -> Any:
    """A POST request's JSON body, refused if it is another media type, too large or not JSON."""
    content_type = (headers_of(scope).get(b"content-type") or "").split(";")[0].strip().lower()
    if content_type not in (JSON, GRAPHQL_RESPONSE):
        raise RequestProblem(
            request_error("Send GraphQL requests as application/json.", 415, "UNSUPPORTED_MEDIA_TYPE")
        )
    body = await read_body(scope, receive, admission, admission.limits.max_body_bytes)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestProblem(request_error("The request body is not valid JSON.")) from None


async def read_body(scope: Scope, receive: Receive, admission: Admission, limit: int) -> bytes:
    """The whole body, refused as soon as it passes `limit` (an endless body is never kept)."""
    declared = headers_of(scope).get(b"content-length")
    if (
        declared is not None
        and declared.isdigit()
        and (refusal := admission.frame_too_large(int(declared), limit))
    ):
        raise RequestProblem(refusal)
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        received += len(chunk)
        if refusal := admission.frame_too_large(received, limit):
            raise RequestProblem(refusal)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def request_base(
    scope: Scope, addresses: ClientAddresses, transport: str, *, uploads: bool = False
) -> dict[str, Any]:
    """What every operation of a request shares: its viewer's header, address, transport, trace."""
    found = headers_of(scope)
    peer = scope["client"][0] if scope.get("client") else None
    trace = {name.decode(): found[name] for name in _TRACE_HEADERS if name in found}
    return {
        "authorization": found.get(b"authorization"),
        "address": addresses.of(peer, found.get(b"x-forwarded-for")),
        "transport": transport,
        "method": scope["method"],
        "uploads": uploads,
        "trace_context": trace or None,
        "idempotency_key": found.get(b"idempotency-key"),
    }


def _nth(base: dict[str, Any], index: int) -> dict[str, Any]:
    """The base of a batch's operation `index`: its idempotency key is the request's `#index`,
    so a retried batch is answered operation by operation."""
    key = base.get("idempotency_key")
    return base if key is None else {**base, "idempotency_key": f"{key}#{index}"}


def graphql_request(payload: dict[str, Any], base: dict[str, Any]) -> Request:
    """The admission step's request from one operation's JSON object and the request's base."""
    document_id = next((payload[name] for name in DOCUMENT_ID_PARAMS if payload.get(name)), None)
    return Request(
        query=payload.get("query"),
        variables=payload.get("variables"),
        operation_name=payload.get("operationName"),
        extensions=payload.get("extensions"),
        document_id=document_id,
        **base,
    )


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _json_param(value: str | None, name: str) -> Any:
    if value is None or value == "":
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise RequestProblem(request_error(f"The {name} parameter is not valid JSON.")) from None


def media_type_of(scope: Scope) -> str:
    return GRAPHQL_RESPONSE if GRAPHQL_RESPONSE in (headers_of(scope).get(b"accept") or "") else JSON


def route_path(scope: Scope) -> str:
    """The request's path below the app's root path, as Starlette's router matches it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root + "/") else path


async def _send_parts(send: Send, answer: _Answered) -> None:
    """An answer in parts as `multipart/mixed`, each part sent as it is ready (Apollo Client and
    urql read this framing; the boundary is `-`)."""
    headers = [
        (b"content-type", b'multipart/mixed; boundary="-"; deferSpec=20220824'),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    part = b"\r\ncontent-type: application/json; charset=utf-8\r\n\r\n"
    await send({"type": "http.response.body", "body": b"\r\n---" + part + answer.body, "more_body": True})
    await send_parts(
        answer.rest,
        lambda body: send(
            {"type": "http.response.body", "body": b"\r\n---" + part + body, "more_body": True}
        ),
    )
    await send({"type": "http.response.body", "body": b"\r\n-----\r\n", "more_body": False})


async def send_json(
    send: Send, status: int, body: Any, media_type: str, headers: dict[str, str] | None = None
) -> None:
    await send_bytes(send, status, orjson.dumps(body), media_type, headers or {})


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    media_type: str,
    headers: dict[str, str] | None = None,
    *,
    content: bool = True,
) -> None:
    raw = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()
    ]
    if content:
        raw += [
            (b"content-type", f"{media_type}; charset=utf-8".encode()),
            (b"content-length", str(len(body)).encode()),
        ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
