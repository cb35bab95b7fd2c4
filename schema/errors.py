"""Errors a client can act on.

Mutations return these as typed members of their result union; every one implements `Error`,
so `... on Error { message }` always works. Queries have no payload to put them in, so a bad
argument to a query is a top-level error with `extensions.code` = "BAD_USER_INPUT" and the
argument's name.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry
from graphql import GraphQLError


class AuthFailure(Enum):
    """Why a request has no viewer. Values are what clients read in `reason` (and `code`)."""

    NOT_LOGGED_IN = "NOT_LOGGED_IN"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    ACCOUNT_GONE = "ACCOUNT_GONE"
    BAD_CREDENTIALS = "BAD_CREDENTIALS"
    REFRESH_TOKEN_REFUSED = "REFRESH_TOKEN_REFUSED"
    TOKEN_REVOKED = "TOKEN_REVOKED"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"


FAILURE_MESSAGES = {
    AuthFailure.NOT_LOGGED_IN: "Log in first: send an access token as `Authorization: Bearer <token>`.",
    AuthFailure.TOKEN_INVALID: "The access token is not valid; log in again.",
    AuthFailure.TOKEN_EXPIRED: "The access token has expired; get a new one with refreshToken.",
    AuthFailure.TOKEN_REVOKED: (
        "The access token was revoked (logout, a new password, changed rights); log in again."
    ),
    AuthFailure.ACCOUNT_GONE: "Your account no longer exists.",
    AuthFailure.BAD_CREDENTIALS: "Wrong username, email or password.",
    AuthFailure.TOO_MANY_ATTEMPTS: (
        "Too many failed logins for this account; wait a few minutes and try again."
    ),
}

AuthenticationFailure = strawberry.enum(
    AuthFailure, name="AuthenticationFailure", description="Why there is no viewer."
)


@strawberry.interface(description="Anything that went wrong in a way the client can show or fix.")
class Error:
    message: str


@strawberry.type(description="One input field that broke a rule.")
class FieldError:
    field: str = strawberry.field(description="The input field's name, as in the schema (camelCase).")
    message: str


@strawberry.type(description="The input broke one or more rules; nothing was changed.")
class ValidationError(Error):
    field_errors: list[FieldError]


@strawberry.type(description="No such object, or not one the viewer may see.")
class NotFoundError(Error):
    id: strawberry.ID | None = None


@strawberry.type(description="The viewer is logged in but may not do this.")
class PermissionDeniedError(Error):
    pass


@strawberry.type(description="This needs a logged-in viewer, and the request has none; `reason` says why.")
class AuthenticationRequiredError(Error):
    reason: AuthenticationFailure  # type: ignore[valid-type]


@strawberry.type(
    description=(
        "The object has changed since the version the client edited (`expectedVersion`); "
        "nothing was written. Read it again, merge, and retry with `currentVersion`."
    )
)
class StaleVersionError(Error):
    # Nullable like NotFoundError's, so one selection may ask both for `id`.
    id: strawberry.ID | None = strawberry.field(description="The object's ID.")
    current_version: int = strawberry.field(description="The version the object is at now.")


@strawberry.type(description="The value is already taken (for example a username).")
class ConflictError(Error):
    field: str


def validation_error(problems: dict[str, str]) -> ValidationError:
    """One ValidationError naming every field that broke a rule."""
    fields = ", ".join(problems)
    return ValidationError(
        message=f"Invalid input: {fields}.",
        field_errors=[FieldError(field=name, message=text) for name, text in problems.items()],
    )


class Refused(Exception):
    """A mutation stops here with this typed error as its answer (schema/mutations.typed_refusals
    returns it), so a check reads as one line instead of an if and a return."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.message)
        self.error = error


class BadInput(GraphQLError):
    """A query argument the server cannot use (a page too large, a malformed cursor or ID)."""

    def __init__(self, message: str, *, argument: str, **extensions: Any) -> None:
        super().__init__(message, extensions={"code": "BAD_USER_INPUT", "argument": argument, **extensions})
