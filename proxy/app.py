"""create_app(settings): routes, middlewares and cleanup contexts, the one place that wires."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from proxy.api import RESERVED, ROUTES
from proxy.api.http import mount, reserve
from proxy.auth import AccessPolicy, feedback_keyring, proxy_keyring
from proxy.config import Settings
from proxy.dashboard import setup_dashboard
from proxy.envelopes import error_middleware
from proxy.errors import FORWARD_ROUTE
from proxy.gateway.cache import ResponseCache
from proxy.gateway.exchange import to_row
from proxy.gateway.forward import Forwarder, forward
from proxy.gateway.pricing import PriceTable
from proxy.gateway.ratelimit import RateLimiter, counters_for
from proxy.gateway.recorder import BatchWriter, Recorder
from proxy.gateway.writer import ProcessWriter
from proxy.metrics import Metrics
from proxy.origin import SitePolicy, site_middleware
from proxy.retention import pruner_ctx
from proxy.state import FORWARDER, METRICS, POLICY, RECORDER, SETTINGS, SITE_POLICY, STORE
from storage import open_store


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = open_store(app[SETTINGS].store.db)
    try:
        await store.open()
    except BaseException:  # a start cancelled by a signal must not leave a connection open
        await store.close()
        raise
    app[STORE] = store
    yield
    await store.close()


async def _recorder_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS].recorder
    pricing = app[SETTINGS].pricing
    price = PriceTable.load(pricing.file, pricing.overrides)
    writer: BatchWriter | None = None
    if settings.writer == "process":
        process = ProcessWriter(app[SETTINGS].store.db, pricing.file, pricing.overrides)
        await process.start()
        writer = process
    recorder = Recorder(
        app[STORE],
        functools.partial(to_row, price=price),
        queue_size=settings.queue_size,
        batch_size=settings.batch_size,
        retry_max_s=settings.retry_max_s,
        drain_timeout_s=settings.drain_timeout_s,
        observe=app[METRICS].observe,
        writer=writer,
    )
    app[METRICS].watch(recorder)
    recorder.start()
    app[RECORDER] = recorder
    yield
    await recorder.stop()


async def _forwarder_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    upstream = settings.upstream
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=upstream.connect_timeout_s, sock_read=upstream.read_timeout_s
    )
    connector = aiohttp.TCPConnector(limit=upstream.max_connections, ttl_dns_cache=300)
    price = PriceTable.load(settings.pricing.file, settings.pricing.overrides)
    limiter = RateLimiter(counters_for(app[STORE], settings.ratelimit))
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=True, trust_env=False
    ) as session:
        app[FORWARDER] = Forwarder(
            session=session,
            recorder=app[RECORDER],
            keys=app[POLICY].proxy,
            upstream_url=upstream.url.rstrip("/"),
            upstream_key=upstream.api_key.get_secret_value() or None,
            max_body_bytes=settings.server.max_body_bytes,
            body_timeout_s=settings.server.body_timeout_s,
            capture_bytes=settings.recorder.max_body_bytes,
            targets=frozenset(host.strip().lower() for host in upstream.target_allowlist),
            cache=ResponseCache(app[STORE], settings.cache),
            cache_defaults=settings.cache,
            retry_defaults=settings.retry,
            limiter=limiter,
            rate_default=settings.ratelimit.policy,
            fallback_default=settings.fallbacks.default,
            fallback_codes=frozenset(settings.fallbacks.on_codes),
            cost_of=lambda ex: to_row(ex, price).cost_usd,
            strict_headers=settings.server.strict_headers,
        )
        try:
            yield
        finally:
            await limiter.counters.close()


async def _stopping(app: web.Application) -> None:
    """Runs when shutdown starts, before in-flight handlers are given their last seconds."""
    forwarder = app.get(FORWARDER)
    if forwarder is not None:
        forwarder.stopping = True


def create_app(settings: Settings) -> web.Application:
    """Build the relaylog application for `settings` (the upstream URL must be resolved)."""
    app = web.Application(
        middlewares=[error_middleware, site_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[SITE_POLICY] = SitePolicy.from_settings(settings)
    app[METRICS] = Metrics()
    app[POLICY] = AccessPolicy(
        proxy=proxy_keyring(settings.auth),
        feedback=feedback_keyring(settings.auth),
        origins=frozenset(settings.feedback.cors_origins),
    )
    # aiohttp unwinds these in reverse: the forwarder stops before the recorder drains,
    # and the recorder drains before the store closes.
    app.cleanup_ctx.extend([_store_ctx, _recorder_ctx, pruner_ctx, _forwarder_ctx])
    app.on_shutdown.append(_stopping)
    mount(app, ROUTES)
    reserve(app, RESERVED)
    if settings.dashboard.enabled:
        setup_dashboard(app)
    app.router.add_route("*", "/v1/{tail:.*}", forward, name=FORWARD_ROUTE)
    return app
