"""The periodic prune in serve: store.retention_days and store.body_retention_days applied."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from proxy.config import StoreSettings
from proxy.state import SETTINGS, STORE
from storage.errors import StoreError
from storage.models import utc_iso
from storage.retention import PruneReport, prune

log = logging.getLogger("relaylog.retention")
DAY_S = 86400


def cutoffs(settings: StoreSettings, now: float | None = None) -> tuple[str | None, str | None]:
    """(delete rows before, clear bodies before) as stored UTC text; None where retention is off."""
    at = time.time() if now is None else now
    before = utc_iso(at - settings.retention_days * DAY_S) if settings.retention_days else None
    bodies = (
        utc_iso(at - settings.body_retention_days * DAY_S) if settings.body_retention_days else None
    )
    return before, bodies


async def prune_now(app: web.Application) -> PruneReport | None:
    """Apply the retention settings once; None when retention is off."""
    before, bodies = cutoffs(app[SETTINGS].store)
    if before is None and bodies is None:
        return None
    report = await prune(app[STORE], before, bodies)
    if report.requests or report.bodies or report.history or report.history_bodies:
        log.info(
            "retention: deleted %d exchanges, cleared %d bodies (%d batches); "
            "earlier exchanges of reused ids: deleted %d, cleared %d bodies",
            report.requests,
            report.bodies,
            report.batches,
            report.history,
            report.history_bodies,
        )
    return report


async def _every(app: web.Application, interval_s: float) -> None:
    while True:
        try:
            await prune_now(app)
        except StoreError as exc:
            log.warning("retention: prune failed (%s); retrying in %.0fs", exc, interval_s)
        await asyncio.sleep(interval_s)


async def pruner_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the prune every store.prune_interval_s while serving, when retention is on."""
    settings = app[SETTINGS].store
    task = None
    if settings.retention_days or settings.body_retention_days:
        task = asyncio.create_task(_every(app, settings.prune_interval_s), name="relaylog-prune")
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
