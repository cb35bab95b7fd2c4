"""What every mutation does the same way: demand a viewer, and turn the reasons a write was
refused (db/errors.py, raised inside the write transaction so it rolls back; Refused, raised by
a check before it) into typed errors."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from db.errors import AccountGone, Conflict, NotAllowed, NotFound
from schema.admission.tokens import Authentication
from schema.errors import (
    FAILURE_MESSAGES,
    AuthenticationRequiredError,
    AuthFailure,
    ConflictError,
    Error,
    NotFoundError,
    PermissionDeniedError,
    Refused,
)
from schema.execution.context import Info
from schema.relay import to_global_id

P = ParamSpec("P")
R = TypeVar("R")


def authentication_required(reason: AuthFailure) -> AuthenticationRequiredError:
    return AuthenticationRequiredError(message=FAILURE_MESSAGES[reason], reason=reason)


def login_required(info: Info) -> AuthenticationRequiredError | None:
    """None when the request has a viewer; otherwise the error saying why it has none."""
    return login_required_for(info.context.authentication)


def login_required_for(authentication: Authentication) -> AuthenticationRequiredError | None:
    if authentication.viewer.id is not None:
        return None
    return authentication_required(authentication.failure or AuthFailure.NOT_LOGGED_IN)


def signed_in(info: Info) -> int:
    """The viewer's id; without a viewer, the mutation answers why it has none (Refused)."""
    if error := login_required(info):
        raise Refused(error)
    user_id = info.context.viewer.id
    assert user_id is not None
    return user_id


def refusal_as_error(refused: Exception) -> Error | None:
    if isinstance(refused, NotFound):
        return NotFoundError(message=str(refused), id=to_global_id(refused.kind.capitalize(), refused.pk))
    if isinstance(refused, NotAllowed):
        return PermissionDeniedError(message=str(refused))
    if isinstance(refused, Conflict):
        return ConflictError(message=str(refused), field=refused.field)
    if isinstance(refused, AccountGone):
        return authentication_required(AuthFailure.ACCOUNT_GONE)
    return None


def typed_refusals(resolver: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Return a refused write as its typed error payload; anything else is a bug and propagates.

    Each error type a resolver can return must be a member of its result union."""

    @functools.wraps(resolver)
    async def resolve(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await resolver(*args, **kwargs)
        except Refused as refused:
            answer: Any = refused.error
            return answer
        except (NotFound, NotAllowed, Conflict, AccountGone) as refused:
            error: Any = refusal_as_error(refused)
            return error

    return resolve
