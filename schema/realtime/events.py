"""How a mutation publishes a change for subscribers (schema/realtime/streams.py, multiplex.py)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from db.events import Event
from schema.execution.context import Info


async def emit(info: Info, session: AsyncSession, event: Event) -> None:
    """Publish `event` with the mutation's transaction: only if, and when, it commits."""
    await info.context.services.broker.stage(session, event, info.context.db.after_commit)
