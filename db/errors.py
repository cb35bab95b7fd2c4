"""Why a write could not happen. Raised inside a write transaction, so it rolls back; the GraphQL
layer turns each into its typed error payload (schema/mutations.py)."""

from __future__ import annotations

import re
import sqlite3

import asyncpg
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout


class WriteRefused(Exception):
    """Base: an expected reason a write did not happen."""


class NotFound(WriteRefused):
    def __init__(self, kind: str, pk: int) -> None:
        super().__init__(f"No {kind} with that ID (or not one you may see).")
        self.kind, self.pk = kind, pk


class StaleVersion(WriteRefused):
    """The row is no longer at the version the client edited: someone changed it since."""

    def __init__(self, kind: str, pk: int, current: int) -> None:
        super().__init__(
            f"This {kind} has changed since the version you edited; it is now at version {current}."
        )
        self.kind, self.pk, self.current = kind, pk, current


class NotAllowed(WriteRefused):
    def __init__(self, message: str) -> None:
        super().__init__(message)


class Conflict(WriteRefused):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class AccountGone(WriteRefused):
    """The access token is valid but its user was deleted since it was issued."""

    def __init__(self) -> None:
        super().__init__("Your account no longer exists.")


# Our naming convention names unique constraints uq_<table>_<column>; SQLite names the column.
_UNIQUE = re.compile(
    r"uq_(?P<table>[a-z_]+?)_(?P<column>[a-z]+)\b|UNIQUE constraint failed: (?P<t>\w+)\.(?P<c>\w+)"
)
_FOREIGN_KEY = re.compile(r"foreign key", re.IGNORECASE)


def unique_column(error: IntegrityError) -> str | None:
    """The column whose unique constraint the failed statement violated, if that was the cause."""
    match = _UNIQUE.search(str(error.orig))
    if match is None:
        return None
    return match.group("column") or match.group("c")


def is_foreign_key_violation(error: IntegrityError) -> bool:
    return bool(_FOREIGN_KEY.search(str(error.orig)))


def _chain(error: BaseException) -> list[BaseException]:
    """The error and everything it wraps (SQLAlchemy's .orig, Python's cause and context)."""
    found: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        pending += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return found


def is_database_unavailable(error: BaseException) -> bool:
    """The database could not be reached, or the connection to it broke."""
    for cause in _chain(error):
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(
            cause,
            OSError | ConnectionError | asyncpg.CannotConnectNowError | asyncpg.ConnectionDoesNotExistError,
        ):
            return True
        if isinstance(cause, asyncpg.InterfaceError) and "closed" in str(cause):
            return True
        if isinstance(cause, PoolTimeout):
            return True
        if _mysql_code(cause) in _MYSQL_UNAVAILABLE:
            return True
    return False


def is_statement_timeout(error: BaseException) -> bool:
    """The database cancelled a statement that ran past its time limit (PostgreSQL's
    statement_timeout, MariaDB's max_statement_time, MySQL's max_execution_time, SQLite's
    progress handler at the operation's deadline: db/engine.py)."""
    return any(
        isinstance(cause, asyncpg.QueryCanceledError)
        or _mysql_code(cause) in _MYSQL_TIMEOUT
        or (isinstance(cause, sqlite3.OperationalError) and str(cause) == "interrupted")
        for cause in _chain(error)
    )


# MySQL client errors: can't connect (2002, 2003), server gone (2006), lost connection (2013,
# 2055); server: shutting down (1053), too many connections (1040).
_MYSQL_UNAVAILABLE = frozenset({1040, 1053, 2002, 2003, 2006, 2013, 2055})
# MariaDB's max_statement_time (1969); MySQL's max_execution_time (3024).
_MYSQL_TIMEOUT = frozenset({1969, 3024})


def _mysql_code(error: BaseException) -> int | None:
    """The error number of a MySQL driver error (asyncmy: args[0])."""
    if type(error).__module__.startswith("asyncmy") and error.args and isinstance(error.args[0], int):
        return error.args[0]
    return None
