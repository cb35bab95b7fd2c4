"""Probes for orchestrators: /health (the process answers) and /ready (it can serve)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse

from db.engine import migration_problem


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def statement_stats(request: Request) -> JSONResponse:
    """SQL statements sent since start (the benchmark harness's counter); on only by setting."""
    return JSONResponse({"statements": request.app.state.statements.total})


async def ready(request: Request) -> JSONResponse:
    engine: AsyncEngine = request.app.state.engine
    try:
        problem = await migration_problem(engine)
    except Exception as exc:  # noqa: BLE001 - any driver error means "not ready", and says why
        problem = f"database unreachable: {type(exc).__name__}: {exc}"
    if problem:
        return JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ready"})
