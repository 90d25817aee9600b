"""The typed app keys that hold relaylog's shared state."""

from aiohttp import web

from proxy.config import Settings
from proxy.gateway.recorder import Recorder
from storage import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
RECORDER = web.AppKey("recorder", Recorder)
