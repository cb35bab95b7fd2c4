"""Refresh tokens: opaque random strings, stored only as SHA-256 hashes, rotated on every use.

A login starts a family. Refreshing marks the token replaced and issues the next one of the same
family. A replaced or revoked token shown again means it leaked (or the client is confused): the
whole family is revoked and that login is over. Logout revokes the family too.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import RefreshToken, User, table_of, utcnow

tokens = table_of(RefreshToken)
users = table_of(User)


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Issued:
    token: str  # the raw refresh token, shown once to the client
    family: str  # the login it belongs to (access tokens of the login carry it: `sid`)


async def issue(session: AsyncSession, user_id: int, *, ttl: timedelta, family: str | None = None) -> Issued:
    """A new refresh token for the user (a new family, a new login, unless one is given)."""
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    family = family or uuid.uuid4().hex
    await session.execute(
        insert(tokens).values(
            user_id=user_id,
            family=family,
            token_hash=_digest(raw),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return Issued(raw, family)


class Refusal(Enum):
    UNKNOWN = "This refresh token is not valid."
    EXPIRED = "This refresh token has expired; log in again."
    REVOKED = "This login has ended (logged out or revoked); log in again."
    REUSED = "This refresh token was already used, so the login was revoked for safety; log in again."


@dataclass(frozen=True, slots=True)
class Rotated:
    user_id: int
    is_superuser: bool
    issued: Issued  # the replacement


async def rotate(session: AsyncSession, raw: str, *, ttl: timedelta) -> Rotated | Refusal:
    """Exchange a refresh token for its successor. A refusal is returned, not raised, so that the
    caller's transaction commits the revocation that reuse triggers."""
    stmt = (
        select(
            tokens.c.id,
            tokens.c.user_id,
            tokens.c.family,
            tokens.c.expires_at,
            tokens.c.revoked_at,
            users.c.is_superuser,
        )
        .join(users, users.c.id == tokens.c.user_id)
        .where(tokens.c.token_hash == _digest(raw))
    )
    found = (await session.execute(stmt)).first()
    if found is None:
        return Refusal.UNKNOWN
    if found.revoked_at is not None:
        return Refusal.REVOKED
    if found.expires_at <= utcnow():
        return Refusal.EXPIRED
    # Only one of two concurrent refreshes with the same token can flip replaced_at.
    replaced = await session.execute(
        update(tokens)
        .where(tokens.c.id == found.id, tokens.c.replaced_at.is_(None), tokens.c.revoked_at.is_(None))
        .values(replaced_at=utcnow())
    )
    if replaced.rowcount != 1:  # type: ignore[attr-defined]
        await revoke_family(session, found.family)
        return Refusal.REUSED
    issued = await issue(session, found.user_id, ttl=ttl, family=found.family)
    return Rotated(user_id=found.user_id, is_superuser=found.is_superuser, issued=issued)


async def revoke_family(session: AsyncSession, family: str) -> None:
    await session.execute(
        update(tokens)
        .where(tokens.c.family == family, tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_by_token(session: AsyncSession, raw: str) -> tuple[int, str] | None:
    """Revoke the family of this token (logout); its user and family, or None if it is unknown."""
    found = (
        await session.execute(
            select(tokens.c.user_id, tokens.c.family).where(tokens.c.token_hash == _digest(raw))
        )
    ).first()
    if found is None:
        return None
    await revoke_family(session, found.family)
    return found.user_id, found.family


async def revoke_user(session: AsyncSession, user_id: int) -> None:
    """End every login of the user (password change, logout everywhere)."""
    await session.execute(
        update(tokens)
        .where(tokens.c.user_id == user_id, tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def forget_expired(session: AsyncSession, user_id: int) -> None:
    """Housekeeping at login: a user's expired tokens are of no use to anyone."""
    await session.execute(delete(tokens).where(tokens.c.user_id == user_id, tokens.c.expires_at < utcnow()))
