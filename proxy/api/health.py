"""GET /healthz (the process answers) and GET /readyz (the store answers too)."""

from __future__ import annotations

from aiohttp import web

from proxy.envelopes import envelope
from proxy.errors import ApiError
from proxy.state import RECORDER, STORE
from storage.errors import StoreError


async def healthz(request: web.Request) -> web.Response:
    """Liveness: answered without touching the store."""
    return envelope({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store answers, log writes succeed and the queue is not nearly full."""
    try:
        await request.app[STORE].ping()
    except StoreError as exc:
        raise ApiError(503, f"store unreachable: {exc}") from exc
    recorder = request.app[RECORDER]
    if recorder.failing:
        raise ApiError(503, f"log writes are failing ({recorder.failed_commits} failed commits)")
    if recorder.backlogged:
        raise ApiError(
            503, f"log writer is behind: {recorder.depth} of {recorder.queue_size} rows queued"
        )
    return envelope({"status": "ready", "queue_depth": recorder.depth, "dropped": recorder.dropped})
