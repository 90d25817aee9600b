"""Feedback, session feedback and score handlers: Helicone's wire format, honest status codes."""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import orjson
from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictStr,
    StringConstraints,
    ValidationError,
)

from proxy.auth import KeyRing, feedback_keyring, proxy_keyring
from proxy.bodies import read_bounded
from proxy.errors import ApiError, envelope, method_not_allowed
from proxy.gateway.headers import is_valid_request_id
from proxy.metrics import counted
from proxy.state import RECORDER, SETTINGS, STORE
from storage.errors import StoreError

MAX_BODY_BYTES = 1024 * 1024
MAX_BATCH_ITEMS = 1000
MAX_COMMENT_BYTES = 4096
MAX_SCORE_NAME_CHARS = 128
MAX_SESSION_ID_CHARS = 1024
# Scores are stored as 64-bit floats, which hold every integer up to 2**53 exactly.
MAX_EXACT_INT = 2**53
POLL_S = 0.05
CORS_ALLOW_HEADERS = "Authorization, Content-Type"
CORS_MAX_AGE_S = "600"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BodyT = TypeVar("BodyT", bound="Body")


@dataclass(frozen=True, slots=True)
class FeedbackPolicy:
    """What the feedback endpoints enforce, built once from the settings."""

    keys: KeyRing  # reads: proxy keys only
    rating_keys: KeyRing  # feedback and score writes: proxy keys and feedback-only keys
    origins: frozenset[str]
    wait_s: float

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins


POLICY = web.AppKey("feedback_policy", FeedbackPolicy)


def _comment_fits(comment: str | None) -> str | None:
    if comment is not None and len(comment.encode()) > MAX_COMMENT_BYTES:
        raise ValueError(f"comment is longer than {MAX_COMMENT_BYTES} bytes")
    return comment


JSON_TYPES = {str: "a string", type(None): "null", list: "an array", dict: "an object"}


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return JSON_TYPES.get(type(value), "unknown")


def _score_value(value: object) -> float:
    """JSON booleans become 1/0; integers and finite floats are kept as given."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if abs(value) > MAX_EXACT_INT:
            raise ValueError("integer scores must lie within ±2**53 to be stored exactly")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("score must be a finite number")
        return value
    raise ValueError(f"score must be a number or a boolean, not {_json_type(value)}")


Comment = Annotated[StrictStr | None, AfterValidator(_comment_fits)]
ScoreName = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_SCORE_NAME_CHARS)]
ScoreValue = Annotated[float, PlainValidator(_score_value)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeedbackBody(Body):
    """`POST /v1/request/{id}/feedback`."""

    rating: StrictBool
    comment: Comment = None


class SessionFeedbackBody(Body):
    """`POST /v1/session/{id}/feedback`."""

    rating: StrictBool


class LegacyFeedbackBody(Body):
    """`POST /v1/feedback`, as sent by Helicone's old SDKs."""

    helicone_id: StrictStr = Field(alias="helicone-id")
    rating: StrictBool


class BatchItem(Body):
    """One entry of `POST /v1/feedback/batch`."""

    request_id: StrictStr
    rating: StrictBool
    comment: Comment = None


class BatchBody(Body):
    """`POST /v1/feedback/batch`; items are validated one by one."""

    items: list[Any]


class ScoresBody(Body):
    """`POST /v1/request/{id}/score`."""

    scores: dict[ScoreName, ScoreValue]


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:3]:
        where = ".".join(str(part)[:64] for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def _parse(model: type[BodyT], data: object) -> BodyT:
    if not isinstance(data, dict):
        raise ApiError(
            400, f"body must be a JSON object, not {_json_type(data)}", code="invalid_body"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, f"invalid body: {_describe(exc)}", code="invalid_body") from exc


async def _read_json(request: web.Request) -> object:
    data = await read_bounded(request, MAX_BODY_BYTES, request.app[SETTINGS].server.body_timeout_s)
    if not data.strip():
        raise ApiError(400, "body is empty; send a JSON object", code="invalid_body")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", code="invalid_body") from exc


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

    await _poll(all_known, app[POLICY].wait_s)
    return missing


def _not_logged(request_id: str, wait_s: float) -> ApiError:
    return ApiError(
        404,
        f"no request with id {request_id!r} was logged (waited {wait_s * 1000:.0f} ms)",
        code="unknown_request",
    )


async def _store_feedback(
    app: web.Application, request_id: str, rating: bool, comment: str | None
) -> dict[str, Any]:
    if await _missing_requests(app, [request_id]):
        raise _not_logged(request_id, app[POLICY].wait_s)
    return await app[STORE].upsert_feedback(request_id, rating, comment)


async def request_feedback(request: web.Request) -> web.Response:
    """Rate one request; a second call changes the rating."""
    request_id = _check_request_id(request.match_info["id"])
    body = _parse(FeedbackBody, await _read_json(request))
    return envelope(await _store_feedback(request.app, request_id, body.rating, body.comment))


async def legacy_feedback(request: web.Request) -> web.Response:
    """The old `{"helicone-id", "rating"}` form of request feedback."""
    body = _parse(LegacyFeedbackBody, await _read_json(request))
    request_id = _check_request_id(body.helicone_id)
    return envelope(await _store_feedback(request.app, request_id, body.rating, None))


def _item_result(index: int, item: object) -> tuple[dict[str, Any], BatchItem | None]:
    """A 400 result for an invalid item, or the parsed item with an empty result."""
    request_id = item.get("request_id") if isinstance(item, dict) else None
    result: dict[str, Any] = {
        "index": index,
        "request_id": request_id if isinstance(request_id, str) else None,
    }
    try:
        if not isinstance(item, dict):
            raise ApiError(400, f"item must be a JSON object, not {_json_type(item)}")
        parsed = _parse(BatchItem, item)
        _check_request_id(parsed.request_id)
    except ApiError as err:
        result.update(status=err.status, data=None, error=err.message)
        return result, None
    return result, parsed


async def feedback_batch(request: web.Request) -> web.Response:
    """Rate up to MAX_BATCH_ITEMS requests; each item gets its own status."""
    body = _parse(BatchBody, await _read_json(request))
    if len(body.items) > MAX_BATCH_ITEMS:
        raise ApiError(
            413,
            f"a batch holds at most {MAX_BATCH_ITEMS} items, got {len(body.items)}",
            code="batch_too_large",
        )
    checked = [_item_result(i, item) for i, item in enumerate(body.items)]
    wanted = {item.request_id for _, item in checked if item is not None}
    missing = await _missing_requests(request.app, wanted)
    store, wait_s = request.app[STORE], request.app[POLICY].wait_s
    for result, item in checked:
        if item is None:
            continue
        if item.request_id in missing:
            result.update(status=404, data=None, error=_not_logged(item.request_id, wait_s).message)
            continue
        row = await store.upsert_feedback(item.request_id, item.rating, item.comment)
        result.update(status=200, data=row, error=None)
    results = [result for result, _ in checked]
    stored = sum(1 for r in results if r["status"] == 200)
    return envelope({"stored": stored, "failed": len(results) - stored, "results": results})


async def session_feedback(request: web.Request) -> web.Response:
    """Rate a whole session; 404 unless one of its requests was logged."""
    session_id = _check_session_id(request.match_info["id"])
    body = _parse(SessionFeedbackBody, await _read_json(request))
    store, wait_s = request.app[STORE], request.app[POLICY].wait_s
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


async def request_score(request: web.Request) -> web.Response:
    """Set named scores on a request (upsert per name); 201 like Helicone."""
    request_id = _check_request_id(request.match_info["id"])
    body = _parse(ScoresBody, await _read_json(request))
    if await _missing_requests(request.app, [request_id]):
        raise _not_logged(request_id, request.app[POLICY].wait_s)
    scores = await request.app[STORE].upsert_scores(request_id, body.scores)
    return envelope({"request_id": request_id, "scores": scores}, status=201)


async def request_detail(request: web.Request) -> web.Response:
    """The logged exchange with its feedback, scores, properties and session."""
    request_id = _check_request_id(request.match_info["id"])
    store = request.app[STORE]
    row = await store.get_request(request_id)
    if row is None:
        if request.app[RECORDER].is_pending(request_id):
            raise ApiError(
                404,
                f"request {request_id!r} is still being served or written; retry shortly",
                code="not_written_yet",
            )
        raise ApiError(404, f"no request with id {request_id!r} was logged", code="unknown_request")
    return envelope(row)


def _cors_headers(request: web.Request) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if origin is None or not request.app[POLICY].allows_origin(origin):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _endpoint(handler: Handler, *, writes: bool) -> Handler:
    """Key check, CORS headers on every answer, and 503 when the store fails."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        cors = _cors_headers(request)
        policy = request.app[POLICY]
        keys = policy.rating_keys if writes else policy.keys
        try:
            keys.require(request.headers.get("Authorization"), "Authorization")
            response = await handler(request)
        except ApiError as err:
            err.headers.update(cors)
            raise
        except StoreError as exc:
            raise ApiError(503, f"store unavailable: {exc}", headers=cors) from exc
        response.headers.update(cors)
        return response

    return wrapped


def _preflight(methods: str) -> Handler:
    """Answer a browser's CORS preflight; no key is needed (browsers send none)."""

    async def preflight(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            return web.Response(status=204, headers={"Allow": methods})
        if not request.app[POLICY].allows_origin(origin):
            raise ApiError(
                403,
                f"origin {origin!r} may not call this endpoint; add it to feedback.cors_origins",
                code="origin_not_allowed",
            )
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": methods,
                "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
                "Access-Control-Max-Age": CORS_MAX_AGE_S,
                "Vary": "Origin",
            },
        )

    return preflight


# `{id:[^/]+}` rather than aiohttp's default `[^{}/]+`, so an id with a brace reaches the
# handler and gets a 400 instead of falling through to the forward catch-all.
ROUTES: tuple[tuple[str, str, str, Handler], ...] = (
    ("request_feedback", "/v1/request/{id:[^/]+}/feedback", "POST", request_feedback),
    ("request_score", "/v1/request/{id:[^/]+}/score", "POST", request_score),
    ("request_detail", "/v1/request/{id:[^/]+}", "GET", request_detail),
    ("session_feedback", "/v1/session/{id:[^/]+}/feedback", "POST", session_feedback),
    ("legacy_feedback", "/v1/feedback", "POST", legacy_feedback),
    ("feedback_batch", "/v1/feedback/batch", "POST", feedback_batch),
)


def add_feedback_routes(app: web.Application) -> None:
    """Register the feedback, score and request-detail routes (before the forward catch-all)."""
    settings = app[SETTINGS]
    app[POLICY] = FeedbackPolicy(
        keys=proxy_keyring(settings.auth),
        rating_keys=feedback_keyring(settings.auth),
        origins=frozenset(settings.feedback.cors_origins),
        wait_s=settings.feedback.wait_ms / 1000,
    )
    for name, path, method, handler in ROUTES:
        resource = app.router.add_resource(path, name=name)
        resource.add_route(method, counted(name, _endpoint(handler, writes=method == "POST")))
        resource.add_route("OPTIONS", _preflight(f"{method}, OPTIONS"))
        resource.add_route("*", method_not_allowed(f"{method}, OPTIONS"))
