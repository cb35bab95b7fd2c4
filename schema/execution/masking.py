"""Errors as the client receives them: a bug is "Internal server error" plus an id (the log has the
id and the stack trace); a database that cannot be reached or a statement stopped at its time
limit says so; errors raised on purpose (GraphQLErrors) go out as they are."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from graphql import GraphQLError

from db.errors import is_database_unavailable, is_statement_timeout

log = logging.getLogger("quill.errors")


def _is_unexpected(error: GraphQLError) -> bool:
    # Errors raised on purpose are GraphQLErrors; anything else raised by a resolver is a bug.
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def masked(errors: Sequence[GraphQLError]) -> list[GraphQLError]:
    return [_masked(error) if _is_unexpected(error) else error for error in errors]


def _masked(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    assert original is not None
    return _replacement(original, error.path, error.nodes)


def internal_error(original: BaseException, where: Any = None) -> GraphQLError:
    """An exception that escaped outside any field (a bug in the server's own code)."""
    return _replacement(original, None, None, where)


def _replacement(original: BaseException, path: Any, nodes: Any, where: Any = None) -> GraphQLError:
    error_id = uuid.uuid4().hex[:16]
    place = path if path is not None else where
    if is_database_unavailable(original):
        code, message = "DATABASE_UNAVAILABLE", "The database is unavailable; try again shortly."
        log.warning("database unavailable (%s) at %s: %s", error_id, place, original)
    elif is_statement_timeout(original):
        code, message = (
            "OPERATION_TIMEOUT",
            "A database statement took too long and was stopped; ask for less.",
        )
        log.warning("statement timeout (%s) at %s: %s", error_id, place, original)
    else:
        code, message = "INTERNAL_SERVER_ERROR", "Internal server error"
        log.error("internal error %s at %s: %s", error_id, place, original, exc_info=original)
    return GraphQLError(message, nodes=nodes, path=path, extensions={"code": code, "errorId": error_id})


def error_code(error: GraphQLError, ran: bool) -> str:
    """The error's `extensions.code`, or the Apollo-style code of the step that produced it."""
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    # Errors without a path are about the request (variables that do not coerce, say).
    return "BAD_USER_INPUT" if error.path is None or not ran else "UNCLASSIFIED"
