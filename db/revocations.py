"""Revoked access tokens, stored so that a restarted process knows them (schema/admission/tokens.py
keeps the live ones in memory; schema/realtime/revocations.py tells every process)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import TokenRevocation, table_of, utcnow

revocations = table_of(TokenRevocation)


@dataclass(frozen=True, slots=True)
class Revoked:
    user_id: int
    at: datetime
    login: str | None = None


async def revoke(session: AsyncSession, user_id: int, *, login: str | None = None) -> Revoked:
    """End the user's access tokens issued until now (with `login`, only that login's)."""
    now = utcnow()
    await session.execute(insert(revocations).values(user_id=user_id, login=login, revoked_at=now))
    return Revoked(user_id, now, login)


async def since(session: AsyncSession, moment: datetime) -> list[Revoked]:
    stmt = select(revocations.c.user_id, revocations.c.revoked_at, revocations.c.login).where(
        revocations.c.revoked_at >= moment
    )
    return [Revoked(row.user_id, row.revoked_at, row.login) for row in (await session.execute(stmt)).all()]


async def forget_older_than(session: AsyncSession, age: timedelta) -> None:
    """A revocation older than an access token's lifetime can no longer match a live token."""
    await session.execute(delete(revocations).where(revocations.c.revoked_at < utcnow() - age))
