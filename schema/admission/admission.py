"""The one admission step every way into the server takes.

HTTP (POST, GET, batches, uploads, persisted ids and hashes), WebSocket (both protocols) and SSE
read a request's parts from their frames, hand them to `Admission.admit`, and render what it
answers: an `Admitted` operation, ready to run (schema/execution/run.py), or a `Refusal`
(schema/admission/refusals.py). In this order it checks:

1. the parameters' shape and sizes: the variables' bytes, then the document's, before parsing;
2. persisted queries: a hash or id becomes its text;
3. parse (with a token limit) and validate (with depth and alias limits), cached by text;
4. the allow-list, when one is configured;
5. which operation runs (the GraphQL spec: a document of several needs `operationName`), and
   whether this transport may run it (GET runs queries only, and subscriptions over SSE);
6. the variables, coerced by graphql-core (defaults filled in, `100.0` read as `100`);
7. the cost, from the coerced values (schema/admission/cost.py);
8. the viewer: the bearer token, its expiry and revocations;
9. the rate limit, charged the cost;
10. a mutation's idempotency key (`Idempotency-Key`, or `extensions.idempotencyKey`): claimed
    for this request, or the first answer given under it (db/idempotency.py);
11. the deadline: when the operation must be over.

Steps 3 to 7 depend only on the text, the operation name and the variables, so they are done
once and remembered (`Prepared`, bounded by bytes); a known request costs a dictionary lookup,
the token check and the rate limit.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
)
from graphql.execution.values import VariableValues, get_variable_values
from strawberry.types.field import StrawberryField

from db.errors import is_database_unavailable
from db.idempotency import Answered, Claimed, IdempotencyKeys, OtherRequest, Running, fingerprint, key_problem
from schema.admission.cost import TooCostly, estimated_cost
from schema.admission.documents import Documents
from schema.admission.increments import uses_increments, without_increments
from schema.admission.persisted import NOT_FOUND, OperationManifest, PersistedMiss, PersistedQueries
from schema.admission.refusals import (
    Refusal,
    authentication_failed,
    graphql_errors,
    rate_limited,
    request_error,
)
from schema.admission.tokens import ANONYMOUS_AUTHENTICATION, AccessTokens, Authentication
from schema.errors import AuthFailure
from schema.lru import BytesLru
from schema.telemetry import OperationObserver, OperationRecord

# Root fields marked so (login, register, ...) take credentials of their own: a request made of
# nothing else runs as anonymous when its bearer token failed, so a client can always log in.
TAKES_CREDENTIALS = "quill:takes-credentials"
LIVE = "live"  # the @live directive of live queries (schema/realtime/)


def takes_credentials() -> dict[str, bool]:
    return {TAKES_CREDENTIALS: True}


class RateLimiter(Protocol):
    async def charge(self, client: str, points: int) -> float | None:
        """Take `points` from the client's budget; None if granted, else seconds until it would be."""


# Request and Admitted are made for every operation and never changed after: they are not
# frozen only because a frozen dataclass's __init__ sets each field through object.__setattr__,
# 2.5 times the cost (a few microseconds a request on the point-read path).


@dataclass(slots=True)
class Request:
    """One operation as a transport read it; the raw JSON values, checked here."""

    query: Any = None
    variables: Any = None
    operation_name: Any = None
    extensions: Any = None
    document_id: Any = None
    authorization: str | None = None  # the Authorization header's value
    # A WebSocket's connection already authenticated once: checked again (expiry, revocation).
    authentication: Authentication | None = None
    address: str = "unknown"  # the client's address (web/addresses.py)
    transport: str = "http"  # "http", "websocket" or "sse"
    method: str = "POST"  # "GET" runs queries only
    # Variables that hold uploaded files (multipart) are not JSON: checked, never cached.
    uploads: bool = False
    # The caller's trace (W3C `traceparent`, `tracestate`), for the operation's span.
    trace_context: dict[str, str] | None = None
    # The transport can deliver an answer in parts (@defer, @stream): multipart/mixed over HTTP,
    # several `next` messages over WebSocket and SSE.
    incremental: bool = False
    idempotency_key: str | None = None  # the Idempotency-Key header's value


@dataclass(slots=True)
class Prepared:
    """What steps 3 to 7 decided for a text, operation name and variables."""

    query: str
    document: DocumentNode
    operation: OperationDefinitionNode
    fragments: Mapping[str, FragmentDefinitionNode]
    kind: OperationType
    name: str | None
    variables: VariableValues  # coerced by graphql-core (`.coerced` is the dict)
    cost: int
    takes_credentials: bool
    live: bool
    # With @defer or @stream: the operation and fragments without them, for a client that takes
    # the answer whole (schema/admission/increments.py).
    plain: tuple[OperationDefinitionNode, Mapping[str, FragmentDefinitionNode]] | None = None
    # Compiled read plans by kind of viewer, and object reads by field and kind of viewer
    # (schema/compiled/plans.py fills it).
    plans: dict[Hashable, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Admitted:
    prepared: Prepared
    authentication: Authentication
    client: str  # who the rate limit counted: "user:7" or "ip:10.0.0.1"
    deadline: float  # on time.monotonic()'s clock
    transport: str
    remember_as: str | None = None  # the APQ hash to store the text under once it ran
    trace_context: dict[str, str] | None = None
    incremental: bool = False  # answered in parts: it has @defer or @stream, and the client takes parts
    claimed: Claimed | None = None  # its idempotency key, under which its answer is to be kept
    answered: bytes | None = None  # the answer given before under its idempotency key: not run again
    address: str = "unknown"  # the client's address (a write pins its reads to the primary: db/replicas.py)


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int
    max_variables_bytes: int
    max_document_bytes: int
    max_cost: int
    operation_timeout_seconds: float
    max_prepared_bytes: int


_PARAMETERS = (("query", str), ("variables", dict), ("extensions", dict), ("operationName", str))


class Admission:
    def __init__(
        self,
        schema: GraphQLSchema,
        documents: Documents,
        limits: Limits,
        tokens: AccessTokens,
        persisted: PersistedQueries,
        *,
        manifest: OperationManifest | None = None,
        rate_limiter: RateLimiter | None = None,
        observer: OperationObserver | None = None,
        idempotency: IdempotencyKeys | None = None,
    ) -> None:
        self.schema = schema
        self.documents = documents
        self.limits = limits
        self.tokens = tokens
        self.persisted = persisted
        self.manifest = manifest
        self.rate_limiter = rate_limiter
        self.observer = observer
        self.idempotency = idempotency
        self.prepared: BytesLru[Prepared | Refusal] = BytesLru(limits.max_prepared_bytes)

    # What a transport checks before it decodes a frame.

    def frame_too_large(self, size: int, limit: int | None = None) -> Refusal | None:
        """A request body (or WebSocket frame) past the body limit (`limit`: an upload's)."""
        limit = limit if limit is not None else self.limits.max_body_bytes
        if size <= limit:
            return None
        return request_error(
            f"The request body is larger than {limit:,} bytes.", 413, "BODY_TOO_LARGE", limitBytes=limit
        )

    async def ran(self, admitted: Admitted) -> None:
        """The operation ran: a persisted query's text is remembered from now on."""
        if admitted.remember_as is not None:
            await self.persisted.remember(admitted.remember_as, admitted.prepared.query)

    async def admit(self, request: Request) -> Admitted | Refusal:
        started = time.perf_counter()
        admitted = await self._admit(request)
        if isinstance(admitted, Refusal) and self.observer is not None and self.observer.recording:
            name, kind = self._described(request)
            self.observer.operation_finished(
                OperationRecord(
                    name=name,
                    type=kind,
                    duration_seconds=time.perf_counter() - started,
                    sql_statements=0,
                    error_codes=admitted.codes,
                    transport=request.transport,
                )
            )
        return admitted

    def _described(self, request: Request) -> tuple[str | None, str | None]:
        """A refused request's operation name and type, for the logs, as far as its document says."""
        given = request.operation_name if isinstance(request.operation_name, str) else None
        checked = self.documents.cache.peek(request.query) if isinstance(request.query, str) else None
        if checked is None or checked.document is None:
            return given, None
        operations = [d for d in checked.document.definitions if isinstance(d, OperationDefinitionNode)]
        named = [op for op in operations if given is None or (op.name and op.name.value == given)]
        if len(named) != 1:
            return given, None
        return (named[0].name.value if named[0].name else None), named[0].operation.value

    async def _admit(self, request: Request) -> Admitted | Refusal:
        shaped = self._shape(request)
        if isinstance(shaped, Refusal):
            return shaped
        variables, variables_key = shaped
        try:
            query, remember_as = await self.persisted.resolve(
                request.query or None, _text(request.document_id), request.extensions
            )
        except PersistedMiss as miss:
            return _persisted_refusal(miss)
        if not isinstance(query, str) or not query.strip():
            return request_error("The request has no GraphQL query (a non-empty string).")
        limit = self.limits.max_document_bytes
        if len(query) > limit and len(query.encode()) > limit:
            return request_error(
                f"The GraphQL document is larger than {limit:,} bytes.",
                413,
                "DOCUMENT_TOO_LARGE",
                limitBytes=limit,
            )
        prepared = self._prepared(query, request.operation_name, variables, variables_key)
        if isinstance(prepared, Refusal):
            return prepared
        if request.method == "GET" and not _readable_with_get(prepared.kind, request.transport):
            return Refusal(
                (
                    {
                        "message": "Only queries (and subscriptions over SSE) may use GET; use POST.",
                        "extensions": {"code": "METHOD_NOT_ALLOWED"},
                    },
                ),
                405,
                405,
                {"Allow": "POST"},
            )
        if prepared.kind is OperationType.SUBSCRIPTION and request.transport == "http":
            return request_error(
                "Subscriptions run over a WebSocket (graphql-transport-ws) or Server-Sent Events "
                "(Accept: text/event-stream)."
            )
        authentication = self._viewer(request)
        if authentication.failure is not None and not prepared.takes_credentials:
            return authentication_failed(authentication.failure)
        client = _client(authentication, request.address)
        if self.rate_limiter is not None:
            retry_after = await self.rate_limiter.charge(client, prepared.cost)
            if retry_after is not None:
                return rate_limited(retry_after)
        claim = await self._claim(request, prepared, authentication)
        if isinstance(claim, Refusal):
            return claim
        deadline = time.monotonic() + self.limits.operation_timeout_seconds
        # An answer kept under a key is kept whole.
        incremental = request.incremental and prepared.plain is not None and claim is None
        return Admitted(
            prepared,
            authentication,
            client,
            deadline,
            request.transport,
            remember_as,
            request.trace_context,
            incremental,
            claim if isinstance(claim, Claimed) else None,
            claim.body if isinstance(claim, Answered) else None,
            request.address,
        )

    # Step 10: a mutation's idempotency key.

    async def _claim(
        self, request: Request, prepared: Prepared, authentication: Authentication
    ) -> Claimed | Answered | Refusal | None:
        """None when the request gives no key or is no mutation (reads are safe to repeat)."""
        key = request.idempotency_key
        if key is None and request.extensions:
            key = request.extensions.get("idempotencyKey")
        if key is None or prepared.kind is not OperationType.MUTATION:
            return None
        problem = key_problem(key) if isinstance(key, str) else "An Idempotency-Key is a string."
        if problem is not None:
            return request_error(problem, code="BAD_IDEMPOTENCY_KEY")
        viewer_id = authentication.viewer.id
        if viewer_id is None:
            return request_error(
                "An Idempotency-Key needs a signed-in viewer: answers are kept per viewer.",
                code="IDEMPOTENCY_KEY_NEEDS_VIEWER",
            )
        if self.idempotency is None:
            return request_error("This server keeps no idempotency keys.", code="IDEMPOTENCY_KEY_NOT_KEPT")
        given = fingerprint(prepared.query, prepared.name, request.variables)
        try:
            claim = await self.idempotency.claim(viewer_id, key, given)
        except Exception as error:
            if not is_database_unavailable(error):
                raise
            return request_error(
                "The database is unavailable; try again shortly.", 503, "DATABASE_UNAVAILABLE"
            )
        if isinstance(claim, OtherRequest):
            return request_error(
                "This Idempotency-Key was first sent with another request; a new request needs a new key.",
                422,
                "IDEMPOTENCY_KEY_REUSED",
            )
        if isinstance(claim, Running):
            return request_error(
                "The first request with this Idempotency-Key has not been answered yet; retry shortly. "
                "(If its server stopped, it may have written: read before you write again.)",
                409,
                "IDEMPOTENCY_KEY_IN_USE",
            )
        return claim

    # Step 1: the request's shape.

    def _shape(self, request: Request) -> tuple[dict[str, Any] | None, bytes | None] | Refusal:
        values = {
            "query": request.query,
            "variables": request.variables,
            "extensions": request.extensions,
            "operationName": request.operation_name,
        }
        for name, kind in _PARAMETERS:
            value = values[name]
            if value is not None and not isinstance(value, kind):
                expected = "an object" if kind is dict else "a string"
                return request_error(f"{name} must be {expected} or null.")
        variables = request.variables
        if not variables:
            return None, b""
        try:
            dumped = orjson.dumps(variables, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            # Uploaded files (multipart) are not JSON; they count towards the body limit instead.
            dumped = orjson.dumps(variables, default=lambda _: None)
            key = None
        else:
            key = None if request.uploads else dumped
        limit = self.limits.max_variables_bytes
        if len(dumped) > limit:
            return request_error(
                f"The variables are larger than {limit:,} bytes.",
                413,
                "VARIABLES_TOO_LARGE",
                limitBytes=limit,
            )
        return variables, key

    # Steps 3 to 7, once per text, operation name and variables.

    def _prepared(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None, key: bytes | None
    ) -> Prepared | Refusal:
        cache_key = (query, operation_name, key) if key is not None else None
        if cache_key is not None and (known := self.prepared.get(cache_key)) is not None:
            return known
        prepared = self._prepare(query, operation_name, variables)
        if cache_key is not None:
            self.prepared.put(cache_key, prepared, len(query) + len(key or b"") + 400)
        return prepared

    def _prepare(
        self, query: str, operation_name: str | None, variables: dict[str, Any] | None
    ) -> Prepared | Refusal:
        checked = self.documents.check(query)
        if checked.errors or checked.document is None:
            return graphql_errors(checked.errors)
        document = checked.document
        if self.manifest is not None and not self.manifest.allows(query):
            error = GraphQLError(
                "This server runs only registered operations, and this is not one of them.",
                extensions={"code": "OPERATION_NOT_IN_ALLOW_LIST"},
            )
            return graphql_errors([error])
        operation = _operation(document, operation_name)
        if isinstance(operation, Refusal):
            return operation
        coerced = get_variable_values(self.schema, operation.variable_definitions or (), variables or {})
        if isinstance(coerced, list):
            return graphql_errors([_coded(error, "BAD_USER_INPUT") for error in coerced])
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        cost = estimated_cost(self.schema, operation, fragments, coerced)
        if cost > self.limits.max_cost:
            return graphql_errors([TooCostly(cost, self.limits.max_cost)])
        return Prepared(
            query=query,
            document=document,
            operation=operation,
            fragments=fragments,
            kind=operation.operation,
            name=operation_name or (operation.name.value if operation.name else None),
            variables=coerced,
            cost=cost,
            takes_credentials=self._takes_credentials(operation),
            live=any(directive.name.value == LIVE for directive in operation.directives or ()),
            plain=without_increments(document, operation) if uses_increments(query, document) else None,
        )

    def _takes_credentials(self, operation: OperationDefinitionNode) -> bool:
        root = self.schema.get_root_type(operation.operation)
        fields = [s for s in operation.selection_set.selections if isinstance(s, FieldNode)]
        if root is None or len(fields) != len(operation.selection_set.selections) or not fields:
            return False
        for node in fields:
            definition = root.fields.get(node.name.value)
            strawberry_field = definition.extensions.get("strawberry-definition") if definition else None
            if not isinstance(strawberry_field, StrawberryField) or not strawberry_field.metadata.get(
                TAKES_CREDENTIALS
            ):
                return False
        return True

    # Step 8: the viewer.

    def _viewer(self, request: Request) -> Authentication:
        if request.authentication is not None:
            return self.tokens.still_valid(request.authentication)
        if not request.authorization:
            return ANONYMOUS_AUTHENTICATION
        return self.tokens.from_header(request.authorization)


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | Refusal:
    """The operation the request names, as the GraphQL spec selects it: by name, or the only one."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        if len(operations) == 1:
            return operations[0]
        return request_error(
            "Must provide operation name if query contains multiple operations."
            if operations
            else "Must provide an operation.",
            code="OPERATION_RESOLUTION_FAILURE",
        )
    for operation in operations:
        if operation.name and operation.name.value == name:
            return operation
    return request_error(f"Unknown operation named '{name}'.", code="OPERATION_RESOLUTION_FAILURE")


def _readable_with_get(kind: OperationType, transport: str) -> bool:
    """GET never changes anything (no CSRF can come of it): queries, and subscriptions over SSE,
    which a browser's EventSource can only open with GET."""
    return kind is OperationType.QUERY or (kind is OperationType.SUBSCRIPTION and transport == "sse")


def _client(authentication: Authentication, address: str) -> str:
    viewer_id = authentication.viewer.id
    return f"user:{viewer_id}" if viewer_id is not None else f"ip:{address}"


def _text(value: Any) -> str | None:
    return str(value) if value else None


def _coded(error: GraphQLError, code: str) -> GraphQLError:
    return GraphQLError(error.message, error.nodes, extensions={"code": code, **(error.extensions or {})})


def _persisted_refusal(miss: PersistedMiss) -> Refusal:
    error: dict[str, Any] = {"message": miss.message}
    error["extensions"] = {"code": miss.code or "BAD_REQUEST"}
    legacy = 200 if miss.message in (NOT_FOUND, "PersistedQueryNotSupported") else miss.status
    return Refusal((error,), miss.status, legacy)


__all__ = [
    "LIVE",
    "TAKES_CREDENTIALS",
    "Admission",
    "Admitted",
    "AuthFailure",
    "Limits",
    "Prepared",
    "Request",
]
