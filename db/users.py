"""Accounts: creating, changing and deleting users, and reading credentials (other reads are derived
from the User type's declaration: schema/types/users.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.errors import AccountGone, Conflict, unique_column
from db.models import User, table_of, utcnow
from db.pagination import AnyRow
from db.where import holds_nul

users = table_of(User)


# Writes. Each runs inside the caller's write transaction (RequestDb.write).


def _conflict(column: str) -> Conflict:
    if column == "username":
        return Conflict("username", "That username is taken.")
    return Conflict("email", "An account with that email address already exists.")


async def _check_free(session: AsyncSession, *, except_id: int | None = None, **values: str) -> None:
    """A friendly Conflict before writing; the unique constraints still decide races (below)."""
    for column, value in values.items():
        stmt = select(users.c.id).where(users.c[column] == value)
        if except_id is not None:
            stmt = stmt.where(users.c.id != except_id)
        if (await session.execute(stmt.limit(1))).first() is not None:
            raise _conflict(column)


async def _write(session: AsyncSession, statement: Any, *, returning: bool = True) -> AnyRow | None:
    """Runs an insert or update; with `returning`, the row its RETURNING clause gives back."""
    try:
        result = await session.execute(statement)
        return result.first() if returning else None
    except IntegrityError as error:
        column = unique_column(error)
        if column in ("username", "email"):
            raise _conflict(column) from error
        raise


# What a user reads of themself after a write (their own email included).
_OWN_ROW = (
    users.c.id,
    users.c.username,
    users.c.email,
    users.c.image_file,
    users.c.is_superuser,
    users.c.created_at,
)


async def create_user(session: AsyncSession, *, username: str, email: str, password_hash: str) -> AnyRow:
    await _check_free(session, username=username, email=email)
    statement = (
        insert(users)
        .values(username=username, email=email, password_hash=password_hash, created_at=utcnow())
        .returning(*_OWN_ROW)
    )
    row = await _write(session, statement)
    assert row is not None
    return row


async def own_row(session: AsyncSession, user_id: int) -> AnyRow:
    """The user as they see themself (email included)."""
    row = (await session.execute(select(*_OWN_ROW).where(users.c.id == user_id))).first()
    if row is None:
        raise AccountGone()
    return row


async def credentials(session: AsyncSession, login: str) -> AnyRow | None:
    """id, password_hash and is_superuser of the user with this username or email."""
    if holds_nul(login):
        return None  # nobody's name holds one (writes refuse it), and PostgreSQL cannot compare it
    column = users.c.email if "@" in login else users.c.username
    stmt = select(users.c.id, users.c.password_hash, users.c.is_superuser).where(column == login)
    return (await session.execute(stmt)).first()


async def password_hash_of(session: AsyncSession, user_id: int) -> str:
    stmt = select(users.c.password_hash).where(users.c.id == user_id)
    found = (await session.execute(stmt)).scalar_one_or_none()
    if found is None:
        raise AccountGone()
    return found


async def update_user(session: AsyncSession, user_id: int, changes: dict[str, Any]) -> AnyRow:
    """Apply `changes` (column -> value) to the user; returns the row as the user sees it."""
    if not changes:
        return await own_row(session, user_id)
    free = {column: changes[column] for column in ("username", "email") if column in changes}
    await _check_free(session, except_id=user_id, **free)
    statement = update(users).where(users.c.id == user_id).values(**changes)
    if session.get_bind().dialect.update_returning:
        row = await _write(session, statement.returning(*_OWN_ROW))
    else:  # MariaDB and MySQL: no UPDATE ... RETURNING; read the row back in the same transaction
        await _write(session, statement, returning=False)
        row = (await session.execute(select(*_OWN_ROW).where(users.c.id == user_id))).first()
    if row is None:
        raise AccountGone()
    return row


async def image_file_of(session: AsyncSession, user_id: int) -> str | None:
    row = (await session.execute(select(users.c.image_file).where(users.c.id == user_id))).first()
    if row is None:
        raise AccountGone()
    return row.image_file


async def delete_user(session: AsyncSession, user_id: int) -> str | None:
    """Delete the user (their posts, tasks, notes and tokens go with it); returns their image file."""
    statement = delete(users).where(users.c.id == user_id).returning(users.c.image_file)
    row = (await session.execute(statement)).first()
    if row is None:
        raise AccountGone()
    return row.image_file


async def set_superuser(session: AsyncSession, username: str, is_superuser: bool) -> int | None:
    """Grant or take back superuser rights; the user's id, or None when there is no such user."""
    statement = update(users).where(users.c.username == username).values(is_superuser=is_superuser)
    result = await session.execute(
        statement.returning(users.c.id) if session.get_bind().dialect.update_returning else statement
    )
    if session.get_bind().dialect.update_returning:
        return result.scalar()
    found = (await session.execute(select(users.c.id).where(users.c.username == username))).scalar()
    return found
