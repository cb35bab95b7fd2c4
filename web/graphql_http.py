"""GraphQL over HTTP (GET and POST at /graphql), following the GraphQL-over-HTTP specification.

- POST with `application/json`: one operation, or a batch (a JSON list) up to a limit; a
  multipart body (GraphQL multipart request spec) for file uploads.
- GET: queries only (a mutation over GET is 405), parameters in the query string. GETs are
  CSRF-safe: they have no side effects, and credentials come only from the Authorization header,
  which a browser never sends on its own to another site (there are no cookies).
- A browser asking for HTML gets GraphiQL (web/graphiql.py).
- `Accept: application/graphql-response+json` gets that media type and 4xx for requests that
  did not run (unparsable, invalid, over the cost budget); plain `application/json` gets 200
  for any well-formed GraphQL request, as legacy clients expect. A spent rate limit is 429 with
  Retry-After either way; a body over the size limit is 413.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from strawberry.exceptions import MissingQueryError
from strawberry.file_uploads.utils import replace_placeholders_with_files
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from schema import Schema
from schema.context import ConnectionContext, Services
from schema.limits import OperationTimedOut
from web.graphiql import GraphiQLPage
from web.limits import BodyTooLarge
from web.persisted_queries import PersistedQueries, PersistedQueryError

log = logging.getLogger("quill.errors")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
MAX_UPLOAD_FILES = 1


class RequestError(Exception):
    """The HTTP request is not a GraphQL request we can run; answered with `status` and no data."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, **extensions: Any
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.extensions = status, message, headers or {}, extensions


class GraphQLHTTP:
    """The /graphql endpoint for HTTP requests (WebSockets go to Strawberry's handlers)."""

    def __init__(
        self, schema: Schema, services: Services, persisted: PersistedQueries, graphiql: GraphiQLPage
    ) -> None:
        self.schema = schema
        self.services = services
        self.settings = services.settings
        self.persisted = persisted
        self.graphiql = graphiql

    async def handle(self, request: Request) -> Response:
        media_type = _response_media_type(request)
        try:
            if request.method == "GET" and _wants_html(request) and "query" not in request.query_params:
                return await self.graphiql.page(request)
            payload = await self._read_payload(request)
            authentication = self.services.tokens.from_header(request.headers.get("authorization"))
            context = ConnectionContext(
                services=self.services, request=request, authentication=authentication
            )
            if isinstance(payload, list):
                if not payload or len(payload) > self.settings.max_batch:
                    raise RequestError(400, f"A batch must hold 1 to {self.settings.max_batch} operations.")
                answers = [await self._execute(request, item, context, media_type) for item in payload]
                return _json_response([body for body, _, _ in answers], 200, media_type)
            body, status, headers = await self._execute(request, payload, context, media_type)
            if request.method == "GET":
                return self._cacheable(request, body, status, media_type, headers)
            return _json_response(body, status, media_type, headers)
        except RequestError as error:
            problem: dict[str, Any] = {"message": error.message}
            if error.extensions:
                problem["extensions"] = error.extensions
            return _json_response({"errors": [problem]}, error.status, media_type, error.headers)
        except Exception:
            error_id = uuid.uuid4().hex[:16]
            log.exception("internal error %s handling %s %s", error_id, request.method, request.url.path)
            body = {"errors": [{"message": "Internal server error", "extensions": {"errorId": error_id}}]}
            return _json_response(body, 500, media_type)

    async def _execute(
        self, request: Request, payload: Any, context: ConnectionContext, media_type: str
    ) -> tuple[dict[str, Any], int, dict[str, str]]:
        params = self._graphql_params(payload)
        try:
            query, remember_as = await self.persisted.resolve(params)
        except PersistedQueryError as refusal:
            return {"errors": [refusal.error]}, refusal.status, {}
        if not isinstance(query, str) or not query.strip():
            raise RequestError(400, "The request has no GraphQL query (a non-empty string).")
        allowed = {OperationType.QUERY} if request.method == "GET" else set(OperationType)
        try:
            seconds = self.settings.operation_timeout_seconds
            context.deadline = time.monotonic() + seconds  # for what cannot be cancelled (SQLite reads)
            async with asyncio.timeout(seconds):
                result = await self.schema.execute(
                    query,
                    variable_values=params["variables"],
                    context_value=context,
                    operation_name=params["operationName"],
                    allowed_operation_types=allowed,
                    operation_extensions=params["extensions"],
                )
        except TimeoutError:
            return operation_timeout_answer(self.settings.operation_timeout_seconds), 200, {}
        except InvalidOperationTypeError as error:
            if request.method == "GET":
                raise RequestError(
                    405, "Only queries may be sent with GET; use POST.", {"Allow": "POST"}
                ) from None
            raise RequestError(400, error.as_http_error_reason(request.method)) from None
        except CannotGetOperationTypeError as error:
            raise RequestError(400, error.as_http_error_reason()) from None
        except MissingQueryError:
            raise RequestError(400, "The request has no GraphQL query.") from None
        if remember_as is not None and not isinstance(result, PreExecutionError):
            await self.persisted.remember(remember_as, query)  # only documents that validated
        return _answer(result, media_type)

    def _cacheable(
        self, request: Request, body: dict[str, Any], status: int, media_type: str, headers: dict[str, str]
    ) -> Response:
        """A GET answer with cache headers: shared caches may keep an anonymous successful answer
        (for GET_CACHE_MAX_AGE_SECONDS; by default they revalidate it with its ETag each time),
        never one given to a signed-in user or one with errors."""
        response = _json_response(body, status, media_type, headers)
        response.headers["Vary"] = "Accept, Authorization"
        if status != 200 or "errors" in body:
            response.headers["Cache-Control"] = "no-store"
            return response
        if request.headers.get("authorization"):
            response.headers["Cache-Control"] = "private, no-store"
            return response
        max_age = self.settings.get_cache_max_age_seconds
        response.headers["Cache-Control"] = f"public, max-age={max_age}" if max_age > 0 else "no-cache"
        etag = '"' + hashlib.sha256(response.body).hexdigest()[:32] + '"'
        response.headers["ETag"] = etag
        if etag in request.headers.get("if-none-match", ""):
            unchanged = {k: v for k, v in response.headers.items() if k in _NOT_MODIFIED_HEADERS}
            return Response(status_code=304, headers=unchanged)
        return response

    async def _read_payload(self, request: Request) -> Any:
        if request.method == "GET":
            params = request.query_params
            return {
                "query": params.get("query"),
                "operationName": params.get("operationName"),
                "variables": _json_param(params.get("variables"), "variables"),
                "extensions": _json_param(params.get("extensions"), "extensions"),
                **{name: params[name] for name in _DOCUMENT_ID_PARAMS if params.get(name)},
            }
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == "multipart/form-data":
                return await _read_multipart(request)
            if content_type not in (JSON, GRAPHQL_RESPONSE):
                raise RequestError(415, "Send GraphQL requests as application/json.")
            try:
                return orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                raise RequestError(400, "The request body is not valid JSON.") from None
        except BodyTooLarge as too_large:
            raise RequestError(413, str(too_large), limitBytes=too_large.limit) from None

    def _graphql_params(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise RequestError(400, "The request body must be a JSON object (or a list of them).")
        # The query may be missing here: a persisted query or document id stands for it.
        for name, kind in (("query", str), ("variables", dict), ("extensions", dict), ("operationName", str)):
            if payload.get(name) is not None and not isinstance(payload[name], kind):
                expected = "an object" if kind is dict else "a string"
                raise RequestError(400, f"{name} must be {expected} or null.")
        variables = payload.get("variables")
        # Uploaded files count towards the body limit instead (they are not JSON).
        if (
            variables
            and len(orjson.dumps(variables, default=lambda _: None)) > self.settings.max_variables_bytes
        ):
            limit = self.settings.max_variables_bytes
            raise RequestError(413, f"The variables are larger than {limit:,} bytes.", limitBytes=limit)
        names = ("query", "variables", "operationName", "extensions", *_DOCUMENT_ID_PARAMS)
        return {name: payload.get(name) for name in names}


# A registered operation's id: the GraphQL-over-HTTP persisted documents proposal's name, Relay's.
_DOCUMENT_ID_PARAMS = ("documentId", "doc_id", "id")
_NOT_MODIFIED_HEADERS = {"cache-control", "etag", "vary"}


# A browser sends a cross-site multipart form without asking first (a "simple" request); with one
# of these headers it must ask (CORS preflight), so a forged upload from another site is refused.
_PREFLIGHT_HEADERS = ("apollo-require-preflight", "x-apollo-operation-name", "graphql-require-preflight")


async def _read_multipart(request: Request) -> Any:
    """A GraphQL multipart request (files in variables): https://github.com/jaydenseric/graphql-multipart-request-spec"""
    if not any(request.headers.get(name) for name in _PREFLIGHT_HEADERS):
        raise RequestError(
            400, "A multipart request needs an Apollo-Require-Preflight header (protection against CSRF)."
        )
    try:
        form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=10)
    except (MultiPartException, ValueError) as error:
        raise RequestError(400, f"The multipart body cannot be read: {error}") from None
    operations, files_map = form.get("operations"), form.get("map")
    if not isinstance(operations, str) or not isinstance(files_map, str):
        raise RequestError(400, "A multipart request needs the fields 'operations' and 'map'.")
    files = {key: value for key, value in form.multi_items() if isinstance(value, UploadFile)}
    try:
        return replace_placeholders_with_files(orjson.loads(operations), orjson.loads(files_map), files)
    except orjson.JSONDecodeError:
        raise RequestError(400, "The multipart 'operations' or 'map' field is not valid JSON.") from None
    except (KeyError, TypeError, ValueError, IndexError):
        raise RequestError(400, "The multipart 'map' does not match the files sent.") from None


def _json_param(value: str | None, name: str) -> Any:
    if value is None or value == "":
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise RequestError(400, f"The {name} parameter is not valid JSON.") from None


def operation_timeout_answer(seconds: float) -> dict[str, Any]:
    """What a request gets when its operation ran past OPERATION_TIMEOUT_SECONDS."""
    return {"data": None, "errors": [OperationTimedOut(seconds).formatted]}


def _answer(result: ExecutionResult, media_type: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """The response body, status and headers for one executed (or refused) operation."""
    body: dict[str, Any] = {}
    ran = not isinstance(result, PreExecutionError)
    if ran:
        body["data"] = result.data
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    if result.extensions:
        body["extensions"] = result.extensions
    codes = {(error.extensions or {}).get("code") for error in result.errors or ()}
    if "RATE_LIMITED" in codes:
        retry_after = max(int((error.extensions or {}).get("retryAfter", 1)) for error in result.errors or ())
        return body, 429, {"Retry-After": str(retry_after)}
    # Only the newer media type may use 4xx for a well-formed request that did not run.
    return body, 400 if media_type == GRAPHQL_RESPONSE and not ran else 200, {}


def _response_media_type(request: Request) -> str:
    accept = request.headers.get("accept", "")
    if GRAPHQL_RESPONSE in accept:
        return GRAPHQL_RESPONSE
    return JSON


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _json_response(
    body: Any, status: int, media_type: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type=f"{media_type}; charset=utf-8", headers=headers
    )
