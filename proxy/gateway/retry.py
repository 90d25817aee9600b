"""Retries: the Helicone-Retry-* policy, backoff with jitter, Retry-After, and the attempt loop.

The loop runs before anything is sent to the client, so a retry never follows a first byte.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from proxy.config import RetrySettings
from proxy.errors import HeaderError
from proxy.gateway.headers import _flag

ENABLED = "Helicone-Retry-Enabled"
NUM = "Helicone-Retry-Num"
FACTOR = "Helicone-Retry-Factor"
MIN_TIMEOUT = "Helicone-Retry-Min-Timeout"
MAX_TIMEOUT = "Helicone-Retry-Max-Timeout"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRIES = 20
MAX_TIMEOUT_MS = 600_000
# Errors before any answer arrived; an error mid-body is never retried.
RETRYABLE = (aiohttp.ClientConnectionError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Target:
    """One upstream a call may be sent to: 0 is the first choice, n the nth fallback."""

    index: int
    # Base URL; with `whole_path` the request path follows it (Helicone-Target-Url style),
    # else the path after /v1 does (the configured upstream).
    base: str
    whole_path: bool
    upstream_key: str | None
    headers: dict[str, str] = field(default_factory=dict)
    body_override: dict[str, Any] = field(default_factory=dict)
    # Statuses whose answer is dropped for the next target (unused on the last one).
    on_codes: frozenset[int] = frozenset()

    def moves_on(self, status: int) -> bool:
        return status in self.on_codes

    def url(self, raw_path: str) -> str:
        return self.base + (raw_path if self.whole_path else raw_path.removeprefix("/v1"))


Send = Callable[[Target], Awaitable[aiohttp.ClientResponse]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one call is retried."""

    num: int
    factor: float
    min_ms: int
    max_ms: int
    retry_after_cap_s: float


def _number(headers: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise HeaderError(f"{name} must be a number from {low:g} to {high:g}", name)
    return value


def parse_retry(headers: Mapping[str, str], defaults: RetrySettings) -> RetryPolicy | None:
    """The call's retry policy, None when it is not retried; HeaderError on bad values."""
    enabled = _flag(headers, ENABLED) if ENABLED in headers else defaults.enabled
    if not enabled:
        return None
    num = _number(headers, NUM, 0, MAX_RETRIES)
    if num is not None and not num.is_integer():
        raise HeaderError(f"{NUM} must be a whole number", NUM)
    factor = _number(headers, FACTOR, 1, 10)
    min_ms = _number(headers, MIN_TIMEOUT, 0, MAX_TIMEOUT_MS)
    max_ms = _number(headers, MAX_TIMEOUT, 0, MAX_TIMEOUT_MS)
    policy = RetryPolicy(
        num=defaults.num if num is None else int(num),
        factor=defaults.factor if factor is None else factor,
        min_ms=defaults.min_timeout_ms if min_ms is None else int(min_ms),
        max_ms=defaults.max_timeout_ms if max_ms is None else int(max_ms),
        retry_after_cap_s=defaults.retry_after_cap_s,
    )
    if policy.min_ms > policy.max_ms:
        raise HeaderError(f"{MIN_TIMEOUT} is above {MAX_TIMEOUT}", MIN_TIMEOUT)
    return policy


def backoff_s(policy: RetryPolicy, retry: int, rand: Callable[[], float] = random.random) -> float:
    """The wait before retry number `retry` (0-based): exponential, capped, jittered 50-100%."""
    base = min(policy.max_ms, policy.min_ms * policy.factor**retry) / 1000
    return base * (0.5 + rand() / 2)


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the upstream asked to wait (`retry-after-ms`, or `Retry-After` in seconds or as
    an HTTP date); None when it did not say or said something unreadable."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    text = raw.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def next_wait(policy: RetryPolicy, retry: int, headers: Mapping[str, str]) -> float | None:
    """Seconds before the next attempt; None: give up now (the upstream asks for longer than
    `retry_after_cap_s`)."""
    asked = retry_after_s(headers)
    if asked is None:
        return backoff_s(policy, retry)
    return None if asked > policy.retry_after_cap_s else asked


def elapsed_ms(began: float) -> float:
    """Milliseconds since `began` (a perf_counter reading), to the microsecond (round() to an
    integer and a division cost about half of round(x, 3), which goes through a decimal
    conversion)."""
    return round((time.perf_counter() - began) * 1_000_000) / 1000


def failure(exc: BaseException) -> str:
    """How an attempt that raised is logged: the error's text, cut, or its type's name."""
    return str(exc)[:200] or type(exc).__name__


async def attempt(
    targets: Sequence[Target],
    policy: RetryPolicy | None,
    send: Send,
    log: list[dict[str, Any]],
    sleep: Sleep = asyncio.sleep,
) -> tuple[aiohttp.ClientResponse, Target]:
    """Send to each target in turn, retrying each per `policy`; the answer to relay.

    A target's answer moves the call on to the next target when `target.moves_on(status)`;
    the last target's answer is always relayed. Raises the last connection error when no
    target answered. Every attempt is appended to `log` (target, status, ms, wait_ms).
    """
    error: BaseException | None = None
    tries = 1 + (policy.num if policy else 0)
    for target in targets:
        last_target = target is targets[-1]
        for n in range(tries):
            began = time.perf_counter()
            entry: dict[str, Any] = {"target": target.index}
            log.append(entry)
            try:
                response = await send(target)
            except RETRYABLE as exc:
                entry.update(status=None, ms=elapsed_ms(began), error=failure(exc))
                error = exc
                if policy is not None and n + 1 < tries:
                    wait = backoff_s(policy, n)
                    entry["wait_ms"] = round(wait * 1000)
                    await sleep(wait)
                    continue
                break
            error = None
            entry.update(status=response.status, ms=elapsed_ms(began))
            if policy is not None and n + 1 < tries and response.status in RETRY_STATUSES:
                pause = next_wait(policy, n, response.headers)
                if pause is not None:
                    entry["wait_ms"] = round(pause * 1000)
                    response.release()
                    await sleep(pause)
                    continue
            if not last_target and target.moves_on(response.status):
                response.release()
                break
            return response, target
    assert error is not None
    raise error
