"""Feedback, session feedback, score and request-detail handlers: Helicone's wire format."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from proxy.api.http import validate
from proxy.api.models import (
    MAX_BATCH_ITEMS,
    BatchBody,
    BatchItem,
    FeedbackBody,
    LegacyFeedbackBody,
    PropertyBody,
    ScoresBody,
    SessionFeedbackBody,
    json_type,
)
from proxy.envelopes import envelope
from proxy.errors import ApiError
from proxy.gateway.exchange import fallback_row
from proxy.gateway.headers import is_valid_request_id
from proxy.state import METRICS, RECORDER, SETTINGS, STORE
from storage.errors import StoreError
from storage.history import request_history as request_history_of
from storage.models import UNCHANGED, Unchanged
from storage.query.rows import present_unstored

MAX_SESSION_ID_CHARS = 1024
POLL_S = 0.05
# `state` in the request detail: the stored exchange, or one still being served.
LOGGED = "logged"
IN_PROGRESS = "in_progress"


def _wait_s(app: web.Application) -> float:
    """How long feedback for an unknown id waits for its exchange to be written."""
    return app[SETTINGS].feedback.wait_ms / 1000


def _check_request_id(value: str) -> str:
    if not is_valid_request_id(value):
        raise ApiError(
            400,
            "request id must be 1-128 characters from [A-Za-z0-9._:@-] "
            "starting with a letter or digit",
            code="invalid_id",
        )
    return value


def _check_session_id(value: str) -> str:
    if not 0 < len(value) <= MAX_SESSION_ID_CHARS:
        raise ApiError(
            400, f"session id must be 1-{MAX_SESSION_ID_CHARS} characters", code="invalid_id"
        )
    if "\x00" in value:
        raise ApiError(400, "session id may not contain NUL characters", code="invalid_id")
    return value


async def _poll(check: Callable[[], Awaitable[bool]], wait_s: float) -> bool:
    """Call `check` until it is true or `wait_s` has passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while not await check():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(POLL_S, remaining))
    return True


async def _missing_requests(app: web.Application, ids: Iterable[str]) -> set[str]:
    """The ids neither in flight, queued, nor stored, after waiting up to feedback.wait_ms."""
    recorder, store = app[RECORDER], app[STORE]
    missing = set(ids)

    async def all_known() -> bool:
        missing.difference_update([i for i in missing if recorder.is_pending(i)])
        if missing:
            missing.difference_update(await store.existing_ids(sorted(missing)))
        return not missing

    await _poll(all_known, _wait_s(app))
    return missing


def _not_logged(request_id: str, wait_s: float) -> ApiError:
    return ApiError(
        404,
        f"no request with id {request_id!r} was logged (waited {wait_s * 1000:.0f} ms)",
        code="unknown_request",
    )


def _comment(body: FeedbackBody | BatchItem) -> str | Unchanged | None:
    """The comment to store: absent from the body leaves the stored one as it is."""
    return body.comment if "comment" in body.model_fields_set else UNCHANGED


async def _store_feedback(
    app: web.Application, request_id: str, rating: bool, comment: str | Unchanged | None
) -> dict[str, Any]:
    if await _missing_requests(app, [request_id]):
        raise _not_logged(request_id, _wait_s(app))
    stored = await app[STORE].upsert_feedback(request_id, rating, comment)
    app[METRICS].count_rating(rating)
    return stored


async def request_feedback(request: web.Request, body: FeedbackBody) -> web.Response:
    """Rate one request; a second call changes the rating."""
    request_id = _check_request_id(request.match_info["id"])
    return envelope(await _store_feedback(request.app, request_id, body.rating, _comment(body)))


async def legacy_feedback(request: web.Request, body: LegacyFeedbackBody) -> web.Response:
    """The old `{"helicone-id", "rating"}` form of request feedback."""
    request_id = _check_request_id(body.helicone_id)
    return envelope(await _store_feedback(request.app, request_id, body.rating, UNCHANGED))


def _item_result(index: int, item: object) -> tuple[dict[str, Any], BatchItem | None]:
    """A 400 result for an invalid item, or the parsed item with an empty result."""
    request_id = item.get("request_id") if isinstance(item, dict) else None
    result: dict[str, Any] = {
        "index": index,
        "request_id": request_id if isinstance(request_id, str) else None,
    }
    try:
        if not isinstance(item, dict):
            raise ApiError(400, f"item must be a JSON object, not {json_type(item)}")
        parsed = validate(BatchItem, item)
        _check_request_id(parsed.request_id)
    except ApiError as err:
        result.update(status=err.status, data=None, error=err.message)
        return result, None
    return result, parsed


async def feedback_batch(request: web.Request, body: BatchBody) -> web.Response:
    """Rate up to MAX_BATCH_ITEMS requests; each item gets its own status."""
    if len(body.items) > MAX_BATCH_ITEMS:
        raise ApiError(
            413,
            f"a batch holds at most {MAX_BATCH_ITEMS} items, got {len(body.items)}",
            code="batch_too_large",
        )
    checked = [_item_result(i, item) for i, item in enumerate(body.items)]
    wanted = {item.request_id for _, item in checked if item is not None}
    missing = await _missing_requests(request.app, wanted)
    store, wait_s = request.app[STORE], _wait_s(request.app)
    for result, item in checked:
        if item is None:
            continue
        if item.request_id in missing:
            result.update(status=404, data=None, error=_not_logged(item.request_id, wait_s).message)
            continue
        try:
            row = await store.upsert_feedback(item.request_id, item.rating, _comment(item))
        except StoreError as exc:
            # Each item stands alone: the answer says which ones the store took.
            result.update(status=503, data=None, error=f"store unavailable: {exc}")
            continue
        request.app[METRICS].count_rating(item.rating)
        result.update(status=200, data=row, error=None)
    results = [result for result, _ in checked]
    stored = sum(1 for r in results if r["status"] == 200)
    return envelope({"stored": stored, "failed": len(results) - stored, "results": results})


async def session_feedback(request: web.Request, body: SessionFeedbackBody) -> web.Response:
    """Rate a whole session; 404 unless one of its requests was logged."""
    session_id = _check_session_id(request.match_info["id"])
    store, wait_s = request.app[STORE], _wait_s(request.app)
    recorder = request.app[RECORDER]
    if not recorder.is_session_pending(session_id) and not await _poll(
        lambda: store.session_exists(session_id), wait_s
    ):
        raise ApiError(
            404,
            f"no request of session {session_id!r} was logged (waited {wait_s * 1000:.0f} ms)",
            code="unknown_session",
        )
    return envelope(await store.upsert_session_feedback(session_id, body.rating))


async def request_score(request: web.Request, body: ScoresBody) -> web.Response:
    """Set named scores on a request (upsert per name); 201 like Helicone."""
    request_id = _check_request_id(request.match_info["id"])
    if await _missing_requests(request.app, [request_id]):
        raise _not_logged(request_id, _wait_s(request.app))
    scores = await request.app[STORE].upsert_scores(request_id, body.scores)
    request.app[METRICS].count_scores(len(scores))
    return envelope({"request_id": request_id, "scores": scores}, status=201)


def _live_detail(app: web.Application, request_id: str) -> dict[str, Any] | None:
    """The exchange with this id as far as it got, while it is still being served."""
    recorder = app[RECORDER]
    running = recorder.serving_exchange(request_id)
    if running is None:
        return None
    try:
        row = recorder.to_row(running)
    except Exception:
        row = fallback_row(running)
    live = present_unstored(row)
    live["outcome"] = None
    return {**live, "state": IN_PROGRESS}


async def request_property(request: web.Request, body: PropertyBody) -> web.Response:
    """Helicone's property upsert on a logged request: `{"data": null, "error": null}`."""
    request_id = _check_request_id(request.match_info["id"])
    recorder, wait_s = request.app[RECORDER], _wait_s(request.app)
    if await _missing_requests(request.app, [request_id]):
        raise _not_logged(request_id, wait_s)
    if recorder.is_pending(request_id) and not await recorder.caught_up(wait_s):
        raise ApiError(503, f"request {request_id!r} is still queued for writing", code="busy")
    if recorder.serving_exchange(request_id) is not None:
        raise ApiError(
            409,
            f"request {request_id!r} is still being served; set its properties once it ends",
            code="in_progress",
        )
    if not await request.app[STORE].set_property(request_id, body.key.lower(), body.value):
        raise _not_logged(request_id, wait_s)
    return envelope(None)


async def request_detail(request: web.Request) -> web.Response:
    """The logged exchange with its feedback, scores, properties and session.

    Every exchange answered before this read is shown (the read waits for its row to be
    written, up to feedback.wait_ms); one still being served is shown as far as it got.
    """
    request_id = _check_request_id(request.match_info["id"])
    store, recorder = request.app[STORE], request.app[RECORDER]
    wait_s = _wait_s(request.app)
    await recorder.caught_up(wait_s)
    row = await store.get_request(request_id)
    if row is None:
        live = _live_detail(request.app, request_id)
        if live is not None:
            return envelope(live)
        if recorder.is_pending(request_id):
            raise ApiError(
                503,
                f"request {request_id!r} is still queued for writing after {wait_s * 1000:.0f} ms; "
                "the store is slow or failing",
                code="not_written_yet",
            )
        # It may have been written between the first lookup and the checks above.
        row = await store.get_request(request_id)
        if row is None:
            raise ApiError(
                404, f"no request with id {request_id!r} was logged", code="unknown_request"
            )
    return envelope({**row, "state": LOGGED})


async def request_history(request: web.Request) -> web.Response:
    """Earlier exchanges logged under a reused id, oldest first, with what they were given."""
    request_id = _check_request_id(request.match_info["id"])
    store = request.app[STORE]
    await request.app[RECORDER].caught_up(_wait_s(request.app))
    earlier = await request_history_of(store, request_id)
    if not earlier and not await store.request_exists(request_id):
        raise ApiError(404, f"no request with id {request_id!r} was logged", code="unknown_request")
    return envelope(earlier)
