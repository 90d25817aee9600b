"""Rate limits: Helicone-RateLimit-Policy parsed, sliding-window counters in the store or Redis.

Exactly `quota` requests (or cents) pass per window and segment; the next call gets an
OpenAI-shaped 429 with Retry-After and the Helicone and IETF RateLimit headers.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from proxy.config import RateLimitSettings
from proxy.errors import HeaderError, RateLimited
from proxy.gateway.headers import HeliconeOptions
from storage import Store
from storage.errors import StoreError
from storage.ratelimit import WindowUsage

log = logging.getLogger("relaylog.ratelimit")

HEADER = "Helicone-RateLimit-Policy"
MIN_WINDOW_S, MAX_WINDOW_S = 60, 31_536_000
MAX_QUOTA = 1e12
SEGMENT_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
POLICY_NAME = "relaylog"
Unit = Literal["request", "cents"]


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """`quota` requests or cents per `window_s`, per segment (None: one global counter)."""

    quota: float
    window_s: int
    unit: Unit
    segment: str | None

    def __str__(self) -> str:
        text = f"{_num(self.quota)};w={self.window_s};u={self.unit}"
        return text if self.segment is None else f"{text};s={self.segment}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _bad(message: str) -> HeaderError:
    return HeaderError(f"{HEADER}: {message}", HEADER)


def parse_policy(raw: str | None) -> RatePolicy | None:
    """`quota;w=seconds[;u=request|cents][;s=user|<property>]`; HeaderError names a problem."""
    if raw is None or not raw.strip():
        return None
    head, *params = [part.strip() for part in raw.strip().split(";")]
    try:
        quota = float(head)
    except ValueError:
        raise _bad(f"quota {head[:40]!r} is not a number") from None
    if not 0 <= quota <= MAX_QUOTA:
        raise _bad(f"quota must be from 0 to {MAX_QUOTA:g}")
    values: dict[str, str] = {}
    for param in params:
        name, eq, value = param.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not eq or name not in ("w", "u", "s") or not value:
            raise _bad(f"unknown or empty parameter {param[:40]!r} (use w=, u=, s=)")
        if name in values:
            raise _bad(f"{name}= given twice")
        values[name] = value
    if "w" not in values:
        raise _bad("w=<seconds> is required")
    if not values["w"].isdigit() or not MIN_WINDOW_S <= int(values["w"]) <= MAX_WINDOW_S:
        raise _bad(f"w must be whole seconds from {MIN_WINDOW_S} to {MAX_WINDOW_S}")
    unit = values.get("u", "request").lower()
    if unit not in ("request", "cents"):
        raise _bad("u must be request or cents")
    if unit == "request" and not quota.is_integer():
        raise _bad("a request quota must be a whole number")
    segment = values.get("s")
    if segment is not None:
        segment = segment.lower()
        if not SEGMENT_RE.fullmatch(segment):
            raise _bad("s must be user or a property name")
    return RatePolicy(quota, int(values["w"]), "cents" if unit == "cents" else "request", segment)


def segment_key(policy: RatePolicy, options: HeliconeOptions) -> str:
    """The counter a call counts against; 400 when its segment value is missing."""
    value: str | None = ""
    if policy.segment == "user":
        value = options.user_id
        if value is None:
            raise _bad("s=user needs a Helicone-User-Id header")
    elif policy.segment is not None:
        value = options.properties.get(policy.segment)
        if value is None:
            raise _bad(f"s={policy.segment} needs a Helicone-Property-{policy.segment} header")
    material = orjson.dumps([policy.unit, policy.window_s, policy.segment, value])
    return hashlib.sha256(material).hexdigest()


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    headers: dict[str, str]


def decide(policy: RatePolicy, usage: WindowUsage, now: float) -> Decision:
    """Whether the call passes, and the headers that tell the client where it stands."""
    remaining = max(policy.quota - usage.used, 0)
    ends = policy.window_s if usage.oldest_at is None else usage.oldest_at + policy.window_s - now
    reset = max(math.ceil(ends), 1)
    headers = {
        "Helicone-RateLimit-Limit": _num(policy.quota),
        "Helicone-RateLimit-Remaining": _num(math.floor(remaining * 100) / 100),
        "Helicone-RateLimit-Policy": str(policy),
        "RateLimit-Policy": f'"{POLICY_NAME}";q={_num(policy.quota)};w={policy.window_s}',
        "RateLimit": f'"{POLICY_NAME}";r={math.floor(remaining)};t={reset}',
    }
    if not usage.allowed:
        headers["Retry-After"] = str(reset)
    return Decision(usage.allowed, headers)


class Counters(Protocol):
    """Where sliding-window use is counted: the store, or Redis."""

    async def take(
        self, key: str, quota: float, window_s: float, amount: float, now: float
    ) -> WindowUsage: ...

    async def add(self, key: str, amount: float, window_s: float, now: float) -> None: ...

    async def close(self) -> None: ...


class StoreCounters:
    """Counters in the log store: exact in one process, shared by replicas on PostgreSQL."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def take(
        self, key: str, quota: float, window_s: float, amount: float, now: float
    ) -> WindowUsage:
        return await self.store.ratelimit_take(key, quota, window_s, amount, now)

    async def add(self, key: str, amount: float, window_s: float, now: float) -> None:
        await self.store.ratelimit_add(key, amount, now)

    async def close(self) -> None:
        return None


class RateLimiter:
    """Checks calls against their policy; a failing counter backend lets the call through."""

    def __init__(self, counters: Counters, clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self.clock = clock

    async def check(self, policy: RatePolicy, key: str) -> dict[str, str]:
        """The rate-limit headers for a call that may pass; RateLimited when it may not."""
        amount = 1.0 if policy.unit == "request" else 0.0
        now = self.clock()
        try:
            usage = await self.counters.take(key, policy.quota, policy.window_s, amount, now)
        except (StoreError, OSError) as exc:
            log.warning("rate-limit counters unavailable; letting the call through: %s", exc)
            return {}
        decision = decide(policy, usage, now)
        if not decision.allowed:
            raise RateLimited(
                429,
                f"rate limit exceeded: {policy} (quota used in the last {policy.window_s}s)",
                code="rate_limit_exceeded",
                param=HEADER,
                headers=decision.headers,
            )
        return decision.headers

    async def spend(self, policy: RatePolicy, key: str, cost_usd: float | None) -> None:
        """Count a call's cost against a cents policy once the cost is known."""
        if policy.unit != "cents" or not cost_usd:
            return
        try:
            await self.counters.add(key, cost_usd * 100, policy.window_s, self.clock())
        except (StoreError, OSError) as exc:
            log.warning("rate-limit counters unavailable; cost not counted: %s", exc)


# One sliding window per key as a sorted set scored by time; members end in ":<amount>".
TAKE_LUA = """
local now, window, quota, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local items = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used, oldest = 0, nil
for i = 1, #items, 2 do
  used = used + tonumber(string.match(items[i], ':([^:]+)$'))
  if oldest == nil then oldest = items[i + 1] end
end
local allowed
if amount > 0 then allowed = used + amount <= quota else allowed = used < quota end
if allowed and amount > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. ARGV[4])
  used = used + amount
  if oldest == nil then oldest = ARGV[1] end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return {allowed and 1 or 0, tostring(used), oldest or ''}
"""
ADD_LUA = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3] .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4]) * 1000))
return 1
"""


class RedisCounters:
    """Counters in Redis (redis-py's asyncio client), for replicas at high request rates."""

    def __init__(self, url: str, prefix: str) -> None:
        try:
            from redis import asyncio as aioredis
            from redis.exceptions import RedisError
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise RuntimeError(
                "ratelimit.redis_url needs redis: pip install 'relaylog[redis]'"
            ) from exc
        self.errors: tuple[type[Exception], ...] = (RedisError,)
        self.prefix = prefix
        self.client: Any = aioredis.from_url(url)
        self._take = self.client.register_script(TAKE_LUA)
        self._add = self.client.register_script(ADD_LUA)

    async def take(
        self, key: str, quota: float, window_s: float, amount: float, now: float
    ) -> WindowUsage:
        try:
            allowed, used, oldest = await self._take(
                keys=[self.prefix + key], args=[now, window_s, quota, amount, uuid.uuid4().hex]
            )
        except self.errors as exc:
            raise StoreError(f"redis: {exc}") from exc
        return WindowUsage(bool(allowed), float(used), float(oldest) if oldest else None)

    async def add(self, key: str, amount: float, window_s: float, now: float) -> None:
        try:
            await self._add(
                keys=[self.prefix + key], args=[now, amount, uuid.uuid4().hex, window_s]
            )
        except self.errors as exc:
            raise StoreError(f"redis: {exc}") from exc

    async def close(self) -> None:
        await self.client.aclose()


def counters_for(store: Store, settings: RateLimitSettings) -> Counters:
    """Redis when `ratelimit.redis_url` is set, else the store."""
    if settings.redis_url:
        return RedisCounters(settings.redis_url, settings.redis_prefix)
    return StoreCounters(store)
