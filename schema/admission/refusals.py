"""Why a request was not run, in a form every transport renders its own way.

HTTP answers with `status` (under `application/graphql-response+json`) or `legacy_status`
(under plain `application/json`, where a well-formed GraphQL request that did not run is 200, as
older clients expect) and `headers`; a WebSocket sends the errors as its `error` message, or
closes with `close_code` when the connection itself must end (a token that failed); SSE answers
the HTTP status before the stream begins, or an error event within it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError

from schema.errors import FAILURE_MESSAGES, AuthFailure

GRAPHQL_RESPONSE = "application/graphql-response+json"


@dataclass(frozen=True, slots=True)
class Refusal:
    errors: tuple[dict[str, Any], ...]
    status: int
    legacy_status: int
    headers: dict[str, str] = field(default_factory=dict)
    close_code: int | None = None  # WebSocket: end the connection with this code

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(
            sorted({str((error.get("extensions") or {}).get("code", "BAD_REQUEST")) for error in self.errors})
        )

    def body(self) -> dict[str, Any]:
        return {"errors": list(self.errors)}

    def status_for(self, media_type: str) -> int:
        """The HTTP status under the response's media type (see the module doc)."""
        return self.status if media_type == GRAPHQL_RESPONSE else self.legacy_status


def request_error(message: str, status: int = 400, code: str = "BAD_REQUEST", **extensions: Any) -> Refusal:
    """The request is not a GraphQL request that can run (malformed, too large): 4xx always."""
    error = {"message": message, "extensions": {"code": code, **extensions}}
    return Refusal((error,), status, status)


def graphql_errors(errors: Sequence[GraphQLError], status: int = 400) -> Refusal:
    """The document did not parse or validate, its variables did not coerce, or it costs too
    much: 400 under the newer media type, 200 under the legacy one."""
    return Refusal(tuple(dict(error.formatted) for error in errors), status, 200)


def authentication_failed(failure: AuthFailure) -> Refusal:
    """A bearer token that failed: 401, with the code a client reads to refresh its token."""
    error = {"message": FAILURE_MESSAGES[failure], "extensions": {"code": failure.value}}
    challenge = f'Bearer error="invalid_token", error_description="{failure.value}"'
    return Refusal((error,), 401, 401, {"WWW-Authenticate": challenge}, close_code=4403)


def rate_limited(retry_after: float) -> Refusal:
    seconds = max(1, round(retry_after + 0.5))
    error = {
        "message": f"Too many requests: this client's query budget is spent; retry in {seconds} s.",
        "extensions": {"code": "RATE_LIMITED", "retryAfter": seconds},
    }
    return Refusal((error,), 429, 429, {"Retry-After": str(seconds)})
