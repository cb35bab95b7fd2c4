"""Probes for orchestrators: /health (the process answers) and /ready (it can serve)."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse

from db.engine import migration_problem

log = logging.getLogger("quill.probes")


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def statement_stats(request: Request) -> JSONResponse:
    """SQL statements sent since start (the benchmark harness's counter); on only by setting."""
    return JSONResponse({"statements": request.app.state.statements.total})


async def ready(request: Request) -> JSONResponse:
    """200 when the database answers and is at the migration head; 503 with the reason otherwise,
    within the connect timeout whatever the pool is doing, and without the driver's text (it can
    name hosts and users): that goes to the log."""
    engine: AsyncEngine = request.app.state.engine
    try:
        async with asyncio.timeout(request.app.state.ready_timeout_seconds):
            problem = await migration_problem(engine)
    except TimeoutError:
        problem = "database unreachable: no answer in time"
    except Exception as exc:  # noqa: BLE001 - any driver error means "not ready"
        log.warning("readiness check failed: %s: %s", type(exc).__name__, exc)
        problem = "database unreachable"
    if problem:
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    # Replicas skipped leave the primary answering their reads: ready still, and saying so.
    replicas = request.app.state.replicas
    return JSONResponse({"status": "ready", **({"replicas": replicas.states()} if replicas else {})})
