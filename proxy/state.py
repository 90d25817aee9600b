"""Every web.AppKey: the typed app state create_app() sets and the handlers read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from proxy.auth import AccessPolicy
    from proxy.config import Settings
    from proxy.dashboard.render import NavItem
    from proxy.gateway.forward import Forwarder
    from proxy.gateway.recorder import Recorder
    from proxy.metrics import Metrics
    from proxy.origin import SitePolicy
    from storage import Store

# Types are named in the annotations only, so the modules that define them can import this one.
SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
POLICY: web.AppKey[AccessPolicy] = web.AppKey("access_policy")
SITE_POLICY: web.AppKey[SitePolicy] = web.AppKey("site_policy")
STORE: web.AppKey[Store] = web.AppKey("store")
RECORDER: web.AppKey[Recorder] = web.AppKey("recorder")
FORWARDER: web.AppKey[Forwarder] = web.AppKey("forwarder")
DASHBOARD_NAV: web.AppKey[tuple[NavItem, ...]] = web.AppKey("dashboard_nav")
