"""The /v1/{path} handler: upstream call, streaming tee, helicone-id on every answer."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from proxy.auth import KeyRing
from proxy.bodies import read_bounded
from proxy.config import CacheSettings, RetrySettings
from proxy.errors import ApiError, ClientGone, HeaderError, RateLimited
from proxy.gateway import replay
from proxy.gateway.cache import (
    CachePolicy,
    ResponseCache,
    cache_key,
    credential_digest,
    parse_cache,
    wants,
)
from proxy.gateway.exchange import Exchange
from proxy.gateway.fallbacks import Fallback, parse_fallbacks, redacted, with_override
from proxy.gateway.fallbacks import plan as fallback_plan
from proxy.gateway.headers import (
    WARNING_HEADER,
    HeliconeOptions,
    RequestHeaders,
    client_response_headers,
    helicone_options,
    new_request_id,
    redact_query,
    scan_headers,
    warning_header,
    with_upstream_key,
)
from proxy.gateway.ratelimit import RateLimiter, RatePolicy, parse_policy, segment_key
from proxy.gateway.recorder import Recorder
from proxy.gateway.retry import (
    RETRYABLE,
    RetryPolicy,
    Target,
    attempt,
    elapsed_ms,
    failure,
    parse_retry,
)
from proxy.gateway.sse import UsageChunkFilter
from proxy.state import FORWARDER
from storage.cache import CacheEntry

# Non-streamed upstream answers up to this size are read whole and sent in one write.
BUFFER_LIMIT = 1024 * 1024
# A chunk larger than this is folded into the log in slices, yielding between them.
CAPTURE_SLICE = 32 * 1024
TARGET_HEADER = "Helicone-Target-Url"
REFUSED_METHODS = frozenset({"TRACE", "CONNECT"})
ATTEMPTS_HEADER = "Relaylog-Attempts"
RATE_HEADER = "Helicone-RateLimit-Policy"
FALLBACKS_HEADER = "Helicone-Fallbacks"
FALLBACK_INDEX_HEADER = "Helicone-Fallback-Index"
# scan_headers keeps each Helicone-* header's first value by lowercased name.
FALLBACK_KEY = FALLBACKS_HEADER.lower()
RATE_KEY = RATE_HEADER.lower()
TARGET_KEY = TARGET_HEADER.lower()
USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?[^/?#]*@")

log = logging.getLogger("relaylog")


@dataclass(slots=True)
class Forwarder:
    """Everything the forward handler needs, built once by create_app."""

    session: aiohttp.ClientSession
    recorder: Recorder
    keys: KeyRing
    upstream_url: str
    upstream_key: str | None
    max_body_bytes: int
    body_timeout_s: float
    # At most this much of each body is kept for the log (recorder.max_body_bytes).
    capture_bytes: int
    # Lowercased `host` or `host:port` entries a request may name in Helicone-Target-Url.
    targets: frozenset[str]
    cache: ResponseCache
    cache_defaults: CacheSettings
    retry_defaults: RetrySettings
    limiter: RateLimiter
    # The Helicone-RateLimit-Policy of calls that send none ("" = none).
    rate_default: str
    # The Helicone-Fallbacks of calls that send none ("" = none).
    fallback_default: str
    # Statuses of the first upstream that move a call on to its fallbacks.
    fallback_codes: frozenset[int]
    # A finished exchange's cost in USD (for cents rate limits).
    cost_of: Callable[[Exchange], float | None]
    # Refuse malformed logging headers with a 400 instead of logging a warning.
    strict_headers: bool = False
    # Set when the server starts shutting down: a handler cancelled after this was cut by
    # server.shutdown_timeout_s, not by its client.
    stopping: bool = False
    # The targets of a call to the configured upstream without fallbacks (most calls), made
    # once: they depend on the settings only.
    plain_targets: list[Target] = field(default_factory=list)
    # No gateway feature is on unless a call asks for it (the default settings): a call without
    # Helicone-* headers then needs none of the feature parsers.
    features_off: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.features_off = not (
            self.cache_defaults.enabled
            or self.retry_defaults.enabled
            or self.fallback_default.strip()
            or self.rate_default.strip()
        )

    def upstream_targets(self) -> list[Target]:
        """The one target of a call without Helicone-Target-Url or fallbacks."""
        if not self.plain_targets:
            first = Target(
                index=0, base=self.upstream_url, whole_path=False, upstream_key=self.upstream_key
            )
            self.plain_targets = fallback_plan(first, [], self.fallback_codes)
        return self.plain_targets


@dataclass(slots=True)
class CallPlan:
    """The gateway features one call asked for (or got from the config's defaults)."""

    cache: CachePolicy | None
    retry: RetryPolicy | None
    fallbacks: list[Fallback] = field(default_factory=list)
    rate: RatePolicy | None = None
    rate_key: str = ""
    # Headers every answer to the call carries (rate-limit state).
    headers: dict[str, str] = field(default_factory=dict)


def _status_headers(ex: Exchange, status: int) -> dict[str, str]:
    headers = {"helicone-id": ex.id, "Helicone-Status": "success" if status < 400 else "failed"}
    if ex.warnings:
        headers[WARNING_HEADER] = warning_header(ex.warnings)
    return headers


@functools.lru_cache(maxsize=256)
def without_userinfo(url: str) -> str:
    """`url` with any `user:password@` replaced, safe to store and log (cached: it is mostly
    the configured upstream, once per call)."""
    return USERINFO.sub(r"\1***@", url)


def resolve_target(value: str, allowed: frozenset[str], header: str = TARGET_HEADER) -> str:
    """The base URL a `Helicone-Target-Url` (or fallback) names; 400 unless allowlisted."""
    try:
        url = URL(value.strip())
    except ValueError:
        url = URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise HeaderError(f"{header} must be an http(s) URL", header)
    if url.user is not None or url.password is not None:
        raise HeaderError(
            f"{header} must not carry credentials; send them in Authorization",
            header,
        )
    if url.raw_query_string or url.raw_fragment:
        raise HeaderError(f"{header} must be a base URL without query", header)
    host = url.host_subcomponent or url.host
    if not {url.host, host, f"{host}:{url.port}"} & allowed:
        raise ApiError(
            400,
            f"{header} host {host}:{url.port} is not on upstream.target_allowlist",
            code="target_not_allowed",
            param=header,
        )
    return str(url.origin()) + url.raw_path.rstrip("/")


def check_request_line(method: str, raw_path: str) -> None:
    """Refuse what no upstream API should get: TRACE / CONNECT, and dot-segments in the path.

    `..` (also percent-encoded, or with a backslash) would let a call climb out of the
    upstream's base path, e.g. to an internal route of a gateway that adds the upstream key.
    """
    if method in REFUSED_METHODS:
        raise ApiError(405, f"{method} is not forwarded", code="method_not_allowed")
    if "." not in raw_path and "%" not in raw_path:
        return  # no dot, not even a percent-encoded one
    decoded = unquote(raw_path).replace("\\", "/")
    if any(segment in (".", "..") for segment in decoded.split("/")):
        raise ApiError(400, "the path must not contain '.' or '..' segments", code="invalid_path")


def _with_stream_usage(body: bytes | None) -> bytes | None:
    """Add stream_options.include_usage to a streamed JSON body; None when not applicable."""
    if body is None:
        return None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or parsed.get("stream") is not True:
        return None
    options = parsed.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return None
    parsed["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }
    return orjson.dumps(parsed)


async def forward(request: web.Request) -> web.StreamResponse:
    """Forward one call upstream and tee its answer into the log."""
    fw: Forwarder = request.app[FORWARDER]
    start = time.perf_counter()
    # The id comes from helicone_options (Helicone-Request-Id or a new UUID); a request rejected
    # before that gets its own below, so the common path draws one UUID, not two.
    scanned = scan_headers(request.headers)
    ex = Exchange(
        id="",
        started_at=time.time(),
        method=request.method,
        path=request.path,
        query=redact_query(request.rel_url.raw_query_string) or None,
        request_headers=scanned.logged,
        request_content_type=request.headers.get("Content-Type", ""),
        capture_bytes=fw.capture_bytes,
    )
    try:
        options = helicone_options(scanned, fw.strict_headers)
        ex.id, ex.helicone = options.request_id, options
        ex.warnings = options.warnings
        fw.keys.require(options.auth, "Helicone-Auth")
        check_request_line(request.method, request.rel_url.raw_path)
        target = scanned.helicone.get(TARGET_KEY)
        if target is not None:
            ex.request_headers[TARGET_KEY] = without_userinfo(target)
            target = resolve_target(target, fw.targets)
        if not scanned.helicone and fw.features_off:
            # No cache, retry, fallbacks or rate limit: what the parsers below would find.
            plan = CallPlan(cache=None, retry=None)
            if request.body_exists:
                ex.request_body = await read_bounded(request, fw.max_body_bytes, fw.body_timeout_s)
        else:
            plan = await _plan(request, fw, ex, scanned)
        if plan.rate is not None:
            plan.rate_key = segment_key(plan.rate, options)
            plan.headers = await fw.limiter.check(plan.rate, plan.rate_key)
    except ApiError as err:
        outcome = "rate_limited" if isinstance(err, RateLimited) else "rejected"
        _record_unsent(fw, ex, start, err.status, outcome, err.message)
        err.headers.update(_status_headers(ex, err.status))
        raise
    except asyncio.CancelledError:
        # The client left while sending its body (aiohttp cancels the handler): logged too.
        of = f" of {request.content_length}" if request.content_length is not None else ""
        error = (
            f"client disconnected after {request.content.total_bytes}{of} body bytes, "
            "before the call was sent"
        )
        log.warning("%s %s: %s", ex.method, ex.path, error)
        _record_unsent(fw, ex, start, None, "client_cancelled", error)
        raise
    fw.recorder.begin(ex)
    try:
        return await _proxy(request, fw, ex, options, scanned, start, target, plan)
    finally:
        if plan.rate is not None and plan.rate.unit == "cents" and not ex.cache_hit:
            await fw.limiter.spend(plan.rate, plan.rate_key, fw.cost_of(ex))
        ex.latency_ms = elapsed_ms(start)
        fw.recorder.submit(ex)


async def _plan(
    request: web.Request, fw: Forwarder, ex: Exchange, scanned: RequestHeaders
) -> CallPlan:
    """The gateway features the call asks for (or the settings give it); reads the body."""
    fallback_header = scanned.helicone.get(FALLBACK_KEY)
    if fallback_header is not None:
        ex.request_headers[FALLBACK_KEY] = redacted(fallback_header)
    plan = CallPlan(
        cache=parse_cache(request.headers, fw.cache_defaults),
        retry=parse_retry(request.headers, fw.retry_defaults),
        fallbacks=parse_fallbacks(
            fw.fallback_default if fallback_header is None else fallback_header,
            lambda url: resolve_target(url, fw.targets, FALLBACKS_HEADER),
        ),
    )
    if request.body_exists:
        ex.request_body = await read_bounded(request, fw.max_body_bytes, fw.body_timeout_s)
    plan.rate = parse_policy(scanned.helicone.get(RATE_KEY, fw.rate_default))
    return plan


def _record_unsent(
    fw: Forwarder, ex: Exchange, start: float, status: int | None, outcome: str, error: str
) -> None:
    """Log a call that never reached the upstream."""
    ex.id = ex.id or new_request_id()
    fw.recorder.begin(ex)
    ex.status, ex.outcome, ex.error = status, outcome, error
    ex.latency_ms = elapsed_ms(start)
    fw.recorder.submit(ex)


async def _proxy(
    request: web.Request,
    fw: Forwarder,
    ex: Exchange,
    options: HeliconeOptions,
    scanned: RequestHeaders,
    start: float,
    target: str | None,
    plan: CallPlan,
) -> web.StreamResponse:
    # Raw (still percent-encoded) path and query, so the upstream sees exactly what was sent.
    # A Helicone-Target-Url is an origin the whole path goes to, as on Helicone; the configured
    # upstream key is never sent to it.
    if target is None and not plan.fallbacks:
        targets = fw.upstream_targets()
    else:
        first = Target(
            index=0,
            base=fw.upstream_url if target is None else target,
            whole_path=target is not None,
            upstream_key=fw.upstream_key if target is None else None,
        )
        targets = fallback_plan(first, plan.fallbacks, fw.fallback_codes)
    raw_path, query = request.rel_url.raw_path, request.rel_url.raw_query_string
    body = ex.request_body
    extra = dict(plan.headers)
    keep: Callable[[], Awaitable[None]] | None = None
    key = None
    if plan.cache is not None:
        key = cache_key(
            method=request.method,
            path=raw_path,
            query=query,
            upstream=targets[0].base,
            body=body,
            policy=plan.cache,
            credential=credential_digest(request.headers),
        )
    if key is not None and plan.cache is not None:
        found = await fw.cache.lookup(key, plan.cache)
        if found.hit is not None:
            served = await _serve_hit(request, ex, found.hit, start, extra)
            if served is not None:
                return served
        extra["Helicone-Cache"] = "MISS"
        policy, bucket = plan.cache, found.bucket

        async def keep() -> None:
            # Before the answer's last byte, so a call made after this one finished can hit.
            await fw.cache.keep(ex, key, policy, bucket)

    strip_usage = False
    # A cached stream keeps its usage chunk, for later clients that ask for it.
    if options.stream_usage or key is not None:
        injected = _with_stream_usage(body)
        if injected is not None:
            body, strip_usage = injected, True

    def call(to: Target) -> Awaitable[aiohttp.ClientResponse]:
        """The upstream call to `to` (to be awaited)."""
        headers = with_upstream_key(scanned, to.upstream_key)
        if to.headers:
            replaced = {name.lower() for name in to.headers}
            headers = {k: v for k, v in headers.items() if k.lower() not in replaced}
            headers.update(to.headers)
        url = to.url(raw_path) + (f"?{query}" if query else "")
        return fw.session.request(
            request.method,
            URL(url, encoded=True),
            data=with_override(body, to.body_override),
            headers=headers,
            allow_redirects=False,
        )

    try:
        if plan.retry is None and len(targets) == 1:
            # One attempt at one target (most calls): what attempt() does for it, logged the
            # same way, without its two coroutine layers around the upstream call.
            answered = targets[0]
            began = time.perf_counter()
            entry: dict[str, Any] = {"target": answered.index}
            ex.attempt_log.append(entry)
            try:
                upstream = await call(answered)
            except RETRYABLE as exc:
                entry.update(status=None, ms=elapsed_ms(began), error=failure(exc))
                raise
            entry.update(status=upstream.status, ms=elapsed_ms(began))
        else:
            upstream, answered = await attempt(targets, plan.retry, call, ex.attempt_log)
        ex.upstream_target = without_userinfo(answered.base)
        if plan.retry is not None:
            extra[ATTEMPTS_HEADER] = str(len(ex.attempt_log))
        if plan.fallbacks:
            ex.fallback_index = answered.index
            extra[FALLBACK_INDEX_HEADER] = str(answered.index)
        async with upstream:
            return await _answer(request, ex, upstream, start, strip_usage, extra, keep)
    except asyncio.CancelledError:
        # Once shutdown has begun, the cancellation is relaylog's own (shutdown_timeout_s ran
        # out); aiohttp may close the socket before or after it cancels the handler.
        if fw.stopping:
            ex.outcome = "stream_incomplete" if ex.status is not None else "upstream_unreachable"
            ex.error = "relaylog shut down before the answer ended (server.shutdown_timeout_s)"
        else:
            ex.outcome, ex.error = "client_cancelled", "client disconnected"
        raise
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise _failed(
            ex, 504, "timeout", "upstream did not answer in time", "upstream_timeout"
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        raise _failed(
            ex,
            502,
            "stream_incomplete",
            "upstream closed the connection mid-body",
            "upstream_incomplete",
            detail=str(exc),
        ) from exc
    except aiohttp.ClientError as exc:
        # The client is not told where the upstream lives; the row and the log keep the detail.
        raise _failed(
            ex,
            502,
            "upstream_unreachable",
            "upstream unreachable",
            "upstream_unreachable",
            detail=str(exc),
        ) from exc


def _failed(
    ex: Exchange, status: int, outcome: str, message: str, code: str, detail: str = ""
) -> ApiError:
    """Record an upstream failure that happened before any answer; the error the client gets."""
    ex.status, ex.outcome = status, outcome
    ex.error = f"{message}: {detail}" if detail else message
    return ApiError(status, message, code=code, headers=_status_headers(ex, status))


async def _serve_hit(
    request: web.Request,
    ex: Exchange,
    entry: CacheEntry,
    start: float,
    extra: dict[str, str],
) -> web.StreamResponse | None:
    """Answer from a cache entry in the form the client asked for; None if it cannot be."""
    stream, usage = wants(ex.request_body)
    headers = {
        **extra,
        **_status_headers(ex, entry.status),
        "Helicone-Cache": "HIT",
        "Helicone-Cache-Bucket-Idx": str(entry.bucket),
    }
    events = replay.as_events(entry, usage) if stream else None
    body = None if stream else replay.as_body(entry)
    if events is None and body is None:
        return None
    ex.status, ex.outcome = entry.status, "ok"
    ex.cache_hit, ex.cache_source_id = True, entry.source_request_id
    if body is not None:
        ex.response_content_type = entry.content_type if not entry.is_stream else "application/json"
        ex.capture(body)
        headers["Content-Type"] = ex.response_content_type
        return web.Response(body=body, status=entry.status, headers=headers)
    ex.is_stream, ex.response_content_type = True, "text/event-stream"
    headers.update({"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    response = web.StreamResponse(status=entry.status, headers=headers)
    await response.prepare(request)
    try:
        for event in events or ():
            if ex.ttft_ms is None:
                ex.ttft_ms = elapsed_ms(start)
            ex.capture(event)
            await _write(request, response, event)
        await response.write_eof()
    except (ClientGone, ConnectionResetError):
        ex.outcome, ex.error = "client_cancelled", "client disconnected mid-stream"
    return response


def _cut(request: web.Request) -> None:
    """End a started response without its terminating chunk, so the client sees the cut."""
    if request.transport is not None:
        request.transport.close()


async def _answer(
    request: web.Request,
    ex: Exchange,
    upstream: aiohttp.ClientResponse,
    start: float,
    strip_usage: bool,
    extra: dict[str, str],
    keep: Callable[[], Awaitable[None]] | None,
) -> web.StreamResponse:
    ex.status = upstream.status
    ex.upstream_request_id = upstream.headers.get("x-request-id")
    content_type = upstream.headers.get("Content-Type", "")
    ex.response_content_type = content_type
    ex.outcome = "ok" if upstream.status < 400 else "upstream_error"
    headers = client_response_headers(upstream.headers)
    headers.update(_status_headers(ex, upstream.status))
    headers.update(extra)
    ex.is_stream = "text/event-stream" in content_type
    length = upstream.content_length
    if not ex.is_stream and length is not None and length <= BUFFER_LIMIT:
        data = await upstream.read()
        ex.capture(data)
        if keep is not None:
            await keep()
        return web.Response(body=data, status=upstream.status, headers=headers)
    response = web.StreamResponse(status=upstream.status, headers=headers)
    await response.prepare(request)
    try:
        await _tee(request, response, ex, upstream, start, strip_usage, keep)
    except ClientGone:
        ex.outcome, ex.error = "client_cancelled", "client disconnected mid-stream"
    except (TimeoutError, aiohttp.ServerTimeoutError):
        ex.outcome, ex.error = "timeout", "upstream went silent mid-stream"
        _cut(request)
    except aiohttp.ClientError as exc:
        ex.outcome, ex.error = "stream_incomplete", f"upstream closed mid-stream: {exc}"
        _cut(request)
    return response


async def _tee(
    request: web.Request,
    response: web.StreamResponse,
    ex: Exchange,
    upstream: aiohttp.ClientResponse,
    start: float,
    strip_usage: bool,
    keep: Callable[[], Awaitable[None]] | None,
) -> None:
    """Pass each upstream chunk to the client as it arrives, keeping a copy for the log."""
    usage_filter = UsageChunkFilter() if strip_usage and ex.is_stream else None
    async for chunk in upstream.content.iter_any():
        if ex.ttft_ms is None and ex.is_stream:
            ex.ttft_ms = elapsed_ms(start)
        out = usage_filter.feed(chunk) if usage_filter else chunk
        try:
            if out:
                await _write(request, response, out)
        except ClientGone:
            ex.capture(chunk)
            raise
        await _capture(ex, chunk)
    if usage_filter is not None:
        rest = usage_filter.flush()
        if rest:
            await _write(request, response, rest)
    if keep is not None:
        await keep()
    try:
        await response.write_eof()
    except ConnectionResetError as exc:
        raise ClientGone from exc


async def _capture(ex: Exchange, chunk: bytes) -> None:
    """Keep `chunk` for the log; a large one is folded in slices, letting other requests run."""
    if len(chunk) <= CAPTURE_SLICE:
        ex.capture(chunk)
        return
    for at in range(0, len(chunk), CAPTURE_SLICE):
        ex.capture(chunk[at : at + CAPTURE_SLICE])
        await asyncio.sleep(0)


async def _write(request: web.Request, response: web.StreamResponse, data: bytes) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ClientGone
    try:
        await response.write(data)
    except ConnectionResetError as exc:
        raise ClientGone from exc
