"""What bench/'s hand-written servers share (search_peer.py, aggregates_peer.py): the database
named by PEER_DB_URL (a pool of asyncpg connections on PostgreSQL, one sqlite3 connection on
SQLite), a health route for the runner to wait on, and one POST /graphql route."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

URL = os.environ.get("PEER_DB_URL", "")
IS_PG = URL.startswith("postgresql")
state: dict[str, Any] = {}  # "pool" on PostgreSQL, "sqlite" on SQLite


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    if IS_PG:
        state["pool"] = await asyncpg.create_pool(URL, min_size=4, max_size=16)
    else:
        state["sqlite"] = sqlite3.connect(URL.removeprefix("sqlite:///"), check_same_thread=False)
    yield
    if IS_PG:
        await state["pool"].close()


async def _health(request: Request) -> Response:
    return Response("ok")


def peer_app(answer: Callable[[Request], Awaitable[Response]]) -> Starlette:
    routes = [Route("/graphql", answer, methods=["POST"]), Route("/health", _health)]
    return Starlette(routes=routes, lifespan=_lifespan)
